#!/usr/bin/env bash
# Per-candidate overhead of the Slurm launcher: N generations (default 30)
# with a trainer that finishes at once (the fixture trainer, 1 epoch, no
# sleep), one candidate at a time, with the same invocation through
# --launcher local, --launcher slurm inside an allocation (each candidate an
# srun job step), and --launcher slurm outside any allocation (each
# candidate a job of its own, what --slurm-submit does). Alternating,
# ROUNDS rounds (default 3), medians reported. Starts a private one-node
# Slurm (tests/slurm/start.sh; root, Debian packages slurm-wlm munge) and
# stops it at exit.
#   bench/slurm_overhead.sh [BUILD_DIR] [N] [ROUNDS]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-$root/build}
n=${2:-30}
rounds=${3:-3}
export PATH=$PATH:/usr/sbin:/sbin
for v in $(compgen -v SLURM_); do unset "$v"; done
work=$(mktemp -d)
state=$(mktemp -d /tmp/ye-slurm-bench.XXXXXX)
trap '"$root/tests/slurm/stop.sh" "$state" --purge >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
"$root/tests/slurm/start.sh" "$state" >/dev/null
# shellcheck disable=SC1091
source "$state/env.sh"
# One CPU for the steps (one candidate at a time): the other 3 stay free for
# the candidates that are jobs of their own.
job=$(salloc --no-shell -N1 -n1 --job-name=bench 2>&1 |
	sed -n 's/.*Granted job allocation \([0-9][0-9]*\).*/\1/p')
[[ -n $job ]] || { echo "salloc failed" >&2; exit 1; }

now() { date +%s.%N; }
# run KIND ROUND: wall seconds of one evolution
run() {
	local kind=$1 round=$2 start end
	local -a extra=() env=()
	case $kind in
	local) ;;
	step) extra=(--launcher slurm) env=(SLURM_JOB_ID="$job") ;;
	job) extra=(--launcher slurm) ;;
	esac
	start=$(now)
	timeout 600 env "${env[@]}" "$build/evolve/yolo-evolve" --generations "$n" --epochs 1 --data none --quiet \
		--report-every 0 --project "$work/$kind$round" --name exp --seed 1 "${extra[@]}" \
		--trainer "$build/tests/fixture_trainer --hyp {hyp} --epochs {epochs} --save-dir {save_dir}" \
		>"$work/$kind$round.log" 2>&1 || { echo "$kind run failed:" >&2; tail "$work/$kind$round.log" >&2; exit 1; }
	end=$(now)
	local ok
	ok=$(sqlite3 "$work/$kind$round/exp/evolve.db" "SELECT count(*) FROM generations WHERE status = 'done'")
	[[ $ok == "$n" ]] || { echo "$kind run: $ok of $n done" >&2; exit 1; }
	awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f", b - a }'
}
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# shellcheck disable=SC2086 # the times lists are split on purpose
declare -A times
for round in $(seq "$rounds"); do
	for kind in local step job; do
		times[$kind]+="$(run "$kind" "$round") "
	done
done
scancel "$job"
# shellcheck disable=SC2086
l=$(median ${times[local]}) s=$(median ${times[step]}) j=$(median ${times[job]})
printf 'generations: %d, one at a time, rounds: %d (median)\n' "$n" "$rounds"
for kind in local step job; do
	# shellcheck disable=SC2086
	t=$(median ${times[$kind]})
	case $kind in
	local) label="local (fork/exec)" ;;
	step) label="slurm, job steps" ;;
	job) label="slurm, own jobs" ;;
	esac
	printf '%-20s %8.3f s  %8.1f ms per candidate   runs: %s\n' "$label" "$t" \
		"$(echo "$t * 1000 / $n" | bc -l)" "${times[$kind]}"
done
printf 'job steps - local:   %8.1f ms per candidate (ratio %.2f)\n' \
	"$(echo "($s - $l) * 1000 / $n" | bc -l)" "$(echo "$s / $l" | bc -l)"
printf 'own jobs  - local:   %8.1f ms per candidate (ratio %.2f)\n' \
	"$(echo "($j - $l) * 1000 / $n" | bc -l)" "$(echo "$j / $l" | bc -l)"
