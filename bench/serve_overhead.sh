#!/usr/bin/env bash
# The dashboard's cost to a running evolution (issue 17): seconds per
# generation of yolo-evolve with the fixture trainer (EPOCHS epochs of
# EPOCH_MS ms each), alone; with `yolo-evolve serve` on its database and a
# page-like client (overview + generations every 100 ms, i.e. 20 requests/s,
# ten browser tabs' worth); with wrk paced to about 1000 requests/s (4
# connections, a 3 ms pause before each request: the issue's load); and with
# the server flooded by wrk (1 thread, 4 connections, as fast as it
# answers; on a 2-core machine wrk itself then takes a core from the
# evolver). Rounds alternate; medians reported.
#   bench/serve_overhead.sh [BUILD_DIR] [GENERATIONS] [ROUNDS]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-$root/build}
n=${2:-30}
rounds=${3:-3}
epochs=${EPOCHS:-5}
export FIXTURE_EPOCH_MS=${EPOCH_MS:-20} no_proxy='*' NO_PROXY='*'
ye=$build/evolve/yolo-evolve
fixture=$build/tests/fixture_trainer
work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
now() { date +%s.%N; }

# run MODE ROUND: seconds for n generations; MODE none | poll | wrk
run() {
	local mode=$1 dir=$work/$1$2 start end port load=
	"$ye" --project "$dir" --name exp --data none --quiet --report-every 0 --seed 1 \
		--generations 1 --epochs "$epochs" \
		--trainer "$fixture --hyp {hyp} --epochs {epochs} --save-dir {save_dir}" >/dev/null
	if [[ $mode != none ]]; then
		: >"$dir/serve.log"
		"$ye" serve --db "$dir/exp/evolve.db" --port 0 >"$dir/serve.log" 2>&1 &
		pids+=($!)
		local server=$!
		until port=$(sed -n 's|.*http://[^ ]*:\([0-9][0-9]*\)/.*|\1|p' "$dir/serve.log") && [[ -n $port ]]; do sleep 0.02; done
		if [[ $mode == poll ]]; then
			(while :; do
				curl -s -o /dev/null "http://127.0.0.1:$port/api/overview"
				curl -s -o /dev/null "http://127.0.0.1:$port/api/generations"
				sleep 0.1
			done) &
		elif [[ $mode == wrk1k ]]; then
			echo 'function delay() return 3 end' >"$work/pace.lua"
			wrk -t1 -c4 -d600s -s "$work/pace.lua" "http://127.0.0.1:$port/api/generations" >"$dir/wrk.log" 2>&1 &
		else
			wrk -t1 -c4 -d600s "http://127.0.0.1:$port/api/generations" >"$dir/wrk.log" 2>&1 &
		fi
		load=$!
		pids+=("$load")
	fi
	start=$(now)
	"$ye" --resume --db "$dir/exp/evolve.db" --generations $((n + 1)) --quiet --report-every 0 >/dev/null
	end=$(now)
	if [[ -n $load ]]; then
		# wrk prints its totals on SIGINT; the poll loop (a background subshell ignores SIGINT) takes TERM
		kill "-$([[ $mode == poll ]] && echo TERM || echo INT)" "$load" 2>/dev/null || true
		wait "$load" 2>/dev/null || true
		kill "$server" 2>/dev/null || true
		wait "$server" 2>/dev/null || true
	fi
	if [[ -s $dir/wrk.log ]]; then # requests over the evolution's time
		awk -v t="$(echo "$end - $start" | bc)" '/requests in/ { r = $1 } END { printf "%d\n", r / t }' "$dir/wrk.log" >>"$work/rate.$mode"
	fi
	echo "$end - $start" | bc
}
median() { printf '%s\n' "$@" | sort -g | sed -n "$(( ($# + 1) / 2 ))p"; }

declare -A times
for ((round = 1; round <= rounds; round++)); do
	for mode in none poll wrk1k wrk; do
		times[$mode]+="$(run $mode $round) "
	done
done
none=$(median ${times[none]})
printf 'generations: %d, %d epochs of %d ms each (fixture trainer), %d rounds\n' "$n" "$epochs" "$FIXTURE_EPOCH_MS" "$rounds"
for mode in none poll wrk1k wrk; do
	m=$(median ${times[$mode]})
	printf '%-28s %.3f s  (%.1f ms per generation)  runs: %s ratio to alone: %.3f\n' \
		"$(case $mode in none) echo 'evolver alone:' ;; poll) echo 'with serve + 20 req/s poll:' ;; wrk1k) echo 'with serve + wrk ~1000 req/s:' ;; wrk) echo 'with serve + wrk flood:' ;; esac)" \
		"$m" "$(echo "$m * 1000 / $n" | bc -l)" "${times[$mode]}" "$(echo "$m / $none" | bc -l)"
done
for mode in wrk1k wrk; do
	[[ -s $work/rate.$mode ]] && printf '%s served: %s requests/s (per round)\n' "$mode" "$(tr '\n' ' ' <"$work/rate.$mode")"
done
