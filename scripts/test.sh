#!/usr/bin/env bash
# Check the format (.clang-format), build with warnings as errors and run
# every test; then the unit (and cuda) tests again under AddressSanitizer and
# UndefinedBehaviorSanitizer, and the fuzzers. Ends with a
# "N passed, N failed" line; exits non-zero if anything failed.
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
passed=0
failed=0

count() { # add the Ok/Fail counts of a meson test log to the totals
	local log=$1 ok fail
	ok=$(grep -E '^Ok: ' "$log" | awk '{print $2}' | tail -1)
	fail=$(grep -E '^(Fail|Unexpected Pass|Timeout): ' "$log" | awk '{s += $NF} END {print s + 0}')
	passed=$((passed + ${ok:-0}))
	failed=$((failed + ${fail:-0}))
}

run_suite() { # name, build dir, meson setup options..., -- meson test options...
	local name=$1 dir=$2
	shift 2
	local setup=() testopts=()
	while (($#)) && [ "$1" != -- ]; do setup+=("$1"); shift; done
	(($#)) && shift
	testopts=("$@")
	echo "== $name =="
	if ! { [ -d "$dir" ] || meson setup "$dir" "${setup[@]}" >/dev/null; } || ! ninja -C "$dir" >"$dir.build.log" 2>&1; then
		cat "$dir.build.log" 2>/dev/null | tail -40
		echo "build failed: $name"
		failed=$((failed + 1))
		return
	fi
	meson test -C "$dir" --print-errorlogs "${testopts[@]}" 2>&1 | tee "$dir.test.log" | grep -vE '^ *[0-9]+/[0-9]+ .* OK '
	count "$dir.test.log"
}

echo "== format (scripts/format.sh --check) =="
if bash scripts/format.sh --check; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
# With the CUDA toolkit (nvcc on PATH) the CUDA backend must build: -Dcuda=enabled
# makes a missing piece fail here instead of quietly leaving the backend out. Its
# checks (suite cuda: kernels on the CPU emulation, cuDNN graphs) need no GPU.
cuda=(-Dcuda=disabled)
suites=(--suite unit)
if command -v nvcc >/dev/null; then
	cuda=(-Dcuda=enabled)
	suites+=(--suite cuda)
fi
echo "CUDA backend: ${cuda[*]}"
run_suite "all tests (-Werror)" build-ci -Dwerror=true "${cuda[@]}" --
run_suite "unit and cuda tests under ASan+UBSan" build-asan -Dwerror=true -Db_sanitize=address,undefined -Db_lundef=false "${cuda[@]}" -- "${suites[@]}"
echo "== fuzzing (libFuzzer, ${FUZZ_SECONDS:-20} s per target) =="
fuzz_log=$(mktemp)
bash scripts/fuzz.sh "${FUZZ_SECONDS:-20}" 2>&1 | tee "$fuzz_log"
fuzz_rc=${PIPESTATUS[0]}
fuzz_failed=$(grep -cE '^fuzz .*: FAILED' "$fuzz_log")
passed=$((passed + $(grep -cE '^fuzz .*: ok' "$fuzz_log")))
if ((fuzz_rc != 0 && fuzz_failed == 0)); then
	echo "fuzzing did not run to the end (scripts/fuzz.sh exit $fuzz_rc)"
	fuzz_failed=1
fi
failed=$((failed + fuzz_failed))
rm -f "$fuzz_log"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
