#!/usr/bin/env bash
# The tree's C code in .clang-format's style (Debian 12's clang-format 14).
#   scripts/format.sh           reformat every tracked .c/.h/.cpp/.cu file in place
#   scripts/format.sh --check   change nothing; list the files that differ
#                               with the first lines of their diff, exit 1
# Golden data kept as C headers (tests/data, tests/golden) is left as made.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
format=$(command -v clang-format-14 || command -v clang-format || true)
if [[ -z "$format" ]]; then
	echo "format: clang-format not found (apt-get install clang-format)" >&2
	exit 2
fi
mapfile -t files < <(git ls-files '*.c' '*.h' '*.cpp' '*.cu' ':!:tests/data/*' ':!:tests/golden/*')
if [[ "${1:-}" != --check ]]; then
	"$format" -i "${files[@]}"
	exit 0
fi
differ=0
for file in "${files[@]}"; do
	if ! "$format" "$file" | cmp -s - "$file"; then
		echo "format: $file differs from .clang-format (run scripts/format.sh):"
		"$format" "$file" | diff "$file" - | head -8 | sed 's/^/    /' || true
		differ=$((differ + 1))
	fi
done
if ((differ > 0)); then
	echo "format: FAILED, $differ of ${#files[@]} files differ"
	exit 1
fi
echo "format: ok, ${#files[@]} files as .clang-format says"
