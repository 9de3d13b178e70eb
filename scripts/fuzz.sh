#!/usr/bin/env bash
# Build the libFuzzer targets (clang, ASan + UBSan) and run each for a
# bounded time on a copy of its seed corpus. A crash, leak or timeout
# fails. Prints executions per target.
#   scripts/fuzz.sh [SECONDS_PER_TARGET]   (default 20)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
seconds=${1:-20}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
flags=(-g -O1 -std=c11 -D_GNU_SOURCE -DYE_VERSION='"fuzz"' -fsanitize=fuzzer,address,undefined
	-fno-sanitize-recover=undefined -I"$root/util" -I"$root/meta" -I"$root/store" -I"$root/evolve" -I"$root/trainer/io" -I"$root/trainer/data")
common=("$root/util/ut.c" "$root/meta/meta.c")
store=("$root/store/store.c" "$root/store/csvio.c")
declare -A sources=(
	[hyp]="${common[*]}"
	[meta]="${common[*]}"
	[results_csv]="${common[*]} ${store[*]} $root/evolve/contract.c"
	[evolve_csv]="${common[*]} ${store[*]}"
	[tuner]="${common[*]} ${store[*]} $root/store/tunerio.c"
	[safetensors]="$root/util/ut.c $root/trainer/io/safetensors.c"
	[data_yaml]="$root/util/ut.c $root/trainer/data/dataset.c"
	[labels]="$root/util/ut.c $root/trainer/data/dataset.c"
	[cli]="$root/util/ut.c $root/util/cli.c"
)
declare -A corpus=([hyp]=hyp [meta]=meta [results_csv]=results [evolve_csv]=evolve_csv [tuner]=tuner [safetensors]=safetensors [data_yaml]=data_yaml [labels]=labels [cli]=cli)
status=0
for target in hyp meta results_csv evolve_csv tuner safetensors data_yaml labels cli; do
	# shellcheck disable=SC2086
	clang "${flags[@]}" "$root/tests/fuzz/fuzz_$target.c" ${sources[$target]} \
		-lyaml -lsqlite3 -lcsv -lcjson -ljpeg -lpng -lm -o "$work/fuzz_$target"
	cp -r "$root/tests/fuzz/corpus/${corpus[$target]}" "$work/corpus_$target"
	if (cd "$work" && "./fuzz_$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
		"corpus_$target" >"fuzz_$target.log" 2>&1); then
		runs=$(grep -oE 'Done [0-9]+ runs' "$work/fuzz_$target.log" | grep -oE '[0-9]+' || echo '?')
		echo "fuzz $target: ok, $runs executions in ${seconds}s"
	else
		echo "fuzz $target: FAILED; libFuzzer's report:"
		grep -vE '^#[0-9]+|^INFO: |^MS: [0-9]+ ' "$work/fuzz_$target.log" | tail -60 | sed 's/^/    /'
		for input in "$work"/crash-* "$work"/leak-* "$work"/timeout-* "$work"/oom-*; do
			[ -e "$input" ] || continue
			cp "$input" "$root/tests/fuzz/"
			echo "fuzz $target: crashing input saved as tests/fuzz/$(basename "$input")" \
				"(replay: build the target as above and run it on that file; keep it in" \
				"tests/fuzz/corpus/${corpus[$target]}/ once fixed)"
		done
		status=1
	fi
done
exit $status
