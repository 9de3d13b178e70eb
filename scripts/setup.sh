#!/usr/bin/env bash
# One command for a fresh Debian 12 machine (as root):
#   scripts/setup.sh demo   install, build, run a short real evolution (the main job)
#   scripts/setup.sh test   install, build, run the whole test suite
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
what=${1:-}
case "$what" in
demo | test) ;;
*)
	echo "usage: scripts/setup.sh demo|test" >&2
	exit 2
	;;
esac
bash scripts/install-deps.sh
if [ "$what" = demo ]; then
	[ -d build ] || meson setup build >/dev/null
	ninja -C build
	exec bash scripts/demo.sh
fi
exec bash scripts/test.sh
