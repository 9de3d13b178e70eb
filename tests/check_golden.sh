#!/usr/bin/env bash
# check_golden.sh - the test data and golden values are the ones recorded in
# tests/golden/SHA256SUMS: every listed file present and unchanged, and no
# data file under tests/golden or tests/data (the *.py scripts that made
# some of them excepted) that the list does not name (a new
# golden must be added to the list on purpose). Exits 1 on any difference.
#   tests/check_golden.sh            check
#   tests/check_golden.sh --update   rewrite the list from the files (then review git diff)
set -euo pipefail
tests=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$tests"
sums=golden/SHA256SUMS
listed_files() { find golden data -type f ! -path "$sums" ! -name README.md ! -name "*.py" -print0 | LC_ALL=C sort -z; }
if [[ "${1:-}" == --update ]]; then
	listed_files | xargs -0 sha256sum >"$sums"
	echo "wrote $sums ($(wc -l <"$sums") files)"
	exit 0
fi
status=0
if ! sha256sum --check --strict --quiet "$sums"; then
	echo "FAIL - a golden file differs from $sums (above); regenerate it on purpose and run tests/check_golden.sh --update"
	status=1
fi
unlisted=$(comm -23 <(listed_files | tr '\0' '\n') <(awk '{ print substr($0, 67) }' "$sums" | LC_ALL=C sort))
if [[ -n "$unlisted" ]]; then
	echo "FAIL - files under tests/golden or tests/data missing from $sums:"
	echo "$unlisted" | sed 's/^/       /'
	status=1
fi
((status == 0)) && echo "ok   - $(wc -l <"$sums") golden and data files match $sums"
exit $status
