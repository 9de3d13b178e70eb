#!/usr/bin/env bash
# Bookkeeping overhead per generation: yolo-evolve running N generations with
# a trainer that finishes at once (the fixture trainer, 1 epoch, no sleep),
# against the same N trainer runs started by a plain fork/exec loop, in the
# same invocation, alternating, 3 rounds; medians are reported.
#   bench/bookkeeping.sh [BUILD_DIR] [N]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-$root/build}
n=${2:-1000}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fixture=$build/tests/fixture_trainer
hyp=$root/data/hyps/hyp.scratch-low.yaml

now() { date +%s.%N; }
evolve_run() {
	local start end
	start=$(now)
	"$build/evolve/yolo-evolve" --generations "$n" --epochs 1 --data none --quiet --report-every 0 \
		--project "$work/evolve$1" --name exp --seed 1 \
		--trainer "$fixture --hyp {hyp} --epochs {epochs} --save-dir {save_dir}" >/dev/null
	end=$(now)
	echo "$end - $start" | bc
}
baseline_run() {
	local start end
	mkdir -p "$work/base$1"
	start=$(now)
	"$build/bench/spawn_loop" "$n" "$fixture" --hyp "$hyp" --epochs 1 --save-dir "$work/base$1/g{i}" >/dev/null
	end=$(now)
	echo "$end - $start" | bc
}
median() { printf '%s\n' "$@" | sort -g | sed -n 2p; }

evolve_times=() base_times=()
for round in 1 2 3; do
	base_times+=("$(baseline_run $round)")
	evolve_times+=("$(evolve_run $round)")
done
e=$(median "${evolve_times[@]}")
b=$(median "${base_times[@]}")
printf 'generations: %d\n' "$n"
printf 'yolo-evolve:        %.3f s  (%.2f ms per generation)  runs: %s\n' "$e" "$(echo "$e * 1000 / $n" | bc -l)" "${evolve_times[*]}"
printf 'fork/exec baseline: %.3f s  (%.2f ms per generation)  runs: %s\n' "$b" "$(echo "$b * 1000 / $n" | bc -l)" "${base_times[*]}"
printf 'ratio yolo-evolve / baseline: %.2f\n' "$(echo "$e / $b" | bc -l)"
printf 'bookkeeping overhead: %.2f ms per generation\n' "$(echo "($e - $b) * 1000 / $n" | bc -l)"
