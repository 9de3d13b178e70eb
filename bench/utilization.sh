#!/usr/bin/env bash
# Slot utilisation: busy slot-seconds / (P x wall) for P = 1, 2, 8 with a
# trainer that takes a random 0.5-1.5 s (the fixture trainer,
# FIXTURE_DURATION_MS=500,1500), 8 rounds of candidates per P; with the
# default lag (= P, DESIGN.md's rule) and larger --lag values.
#   bench/utilization.sh [BUILD_DIR] [ROUNDS]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-$root/build}
rounds=${2:-8}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf '%4s %5s %12s %10s %16s %12s\n' P lag generations wall_s busy_slot_s utilisation
for run in 1:1 2:2 8:8 2:4 8:16 8:24; do
	p=${run%:*} lag=${run#*:}
	n=$((p * rounds))
	start=$(date +%s.%N)
	FIXTURE_DURATION_MS=500,1500 "$build/evolve/yolo-evolve" --generations "$n" --epochs 1 \
		--parallel "$p" --lag "$lag" --data none --quiet --report-every 0 --project "$work" --name "p$p-l$lag" \
		--trainer "$build/tests/fixture_trainer --hyp {hyp} --epochs {epochs} --save-dir {save_dir}" >/dev/null
	end=$(date +%s.%N)
	busy=$(sqlite3 "$work/p$p-l$lag/evolve.db" "SELECT sum(seconds) FROM generations")
	awk -v p="$p" -v l="$lag" -v n="$n" -v s="$start" -v e="$end" -v b="$busy" \
		'BEGIN { w = e - s; printf "%4d %5d %12d %10.2f %16.2f %12.3f\n", p, l, n, w, b, b / (p * w) }'
done
