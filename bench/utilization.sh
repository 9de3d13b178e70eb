#!/usr/bin/env bash
# Slot utilisation: busy slot-seconds / (P x wall) for P = 1, 2, 8 with a
# trainer that takes a random 0.5-1.5 s (the fixture trainer,
# FIXTURE_DURATION_MS=500,1500), 8 rounds of candidates per P (16 for
# halving, whose pruned candidates end early); YOLOv5's breeding with the
# default lag (= P, DESIGN.md's rule) and larger --lag values, then
# halving with its default lag (3P) and 2P, and guided with its default lag
# (2P) and 3P. Halving's rows train 9 epochs, so that its rung after 3
# epochs can stop a candidate.
#   bench/utilization.sh [BUILD_DIR] [ROUNDS]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-$root/build}
rounds=${2:-8}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf '%-8s %4s %8s %12s %10s %16s %12s\n' algorithm P lag generations wall_s busy_slot_s utilisation
# P:LAG:ALGORITHM:EPOCHS (LAG -: the algorithm's default)
for run in 1:-:yolov5:1 2:-:yolov5:1 8:-:yolov5:1 2:4:yolov5:1 8:16:yolov5:1 8:24:yolov5:1 \
	8:-:halving:9 8:16:halving:9 8:-:guided:1 8:24:guided:1; do
	IFS=: read -r p lag algorithm epochs <<<"$run"
	n=$((p * rounds))
	[[ $algorithm == halving ]] && n=$((2 * n))
	lag_opt=() shown=$lag
	if [[ $lag == - ]]; then
		shown="($p)"
		[[ $algorithm == halving && $p -gt 1 ]] && shown="($((3 * p)))"
		[[ $algorithm == guided && $p -gt 1 ]] && shown="($((2 * p)))"
	else
		lag_opt=(--lag "$lag")
	fi
	name=$algorithm-p$p-l$lag
	start=$(date +%s.%N)
	FIXTURE_DURATION_MS=500,1500 "$build/evolve/yolo-evolve" --algorithm "$algorithm" --generations "$n" \
		--epochs "$epochs" --parallel "$p" "${lag_opt[@]}" --data none --quiet --report-every 0 \
		--project "$work" --name "$name" \
		--trainer "$build/tests/fixture_trainer --hyp {hyp} --epochs {epochs} --save-dir {save_dir}" >/dev/null
	end=$(date +%s.%N)
	busy=$(sqlite3 "$work/$name/evolve.db" "SELECT sum(seconds) FROM generations")
	awk -v a="$algorithm" -v p="$p" -v l="$shown" -v n="$n" -v s="$start" -v e="$end" -v b="$busy" \
		'BEGIN { w = e - s; printf "%-8s %4d %8s %12d %10.2f %16.2f %12.3f\n", a, p, l, n, w, b, b / (p * w) }'
done
