# lib.sh - helpers shared by the end-to-end tests (sourced, never run).
#
# Environment (meson sets it): YOLO_EVOLVE, FIXTURE_TRAINER, YE_SOURCE_ROOT.
# Each script gets its own temporary folder $WORK, removed at exit together
# with every process the script started there. Checks print
# "ok   - ..." or "FAIL - ..."; ye_finish exits 1 if any check failed.

set -eEuo pipefail

: "${YOLO_EVOLVE:?set YOLO_EVOLVE to the built yolo-evolve}"
: "${FIXTURE_TRAINER:?set FIXTURE_TRAINER to the built fixture_trainer}"
: "${YE_SOURCE_ROOT:?set YE_SOURCE_ROOT to the repository root}"

YE=$YOLO_EVOLVE
YE_DEFAULT=$YOLO_EVOLVE # the same program; the name says a test relies on its default algorithm
FX=$FIXTURE_TRAINER
TRAINER="$FX --hyp {hyp} --epochs {epochs} --save-dir {save_dir} --seed {seed}"
BASE_HYP=$YE_SOURCE_ROOT/data/hyps/hyp.scratch-low.yaml
REF_OUT=$YE_SOURCE_ROOT/tests/golden/yolov5-outputs # real YOLOv5 v7.0 output files

# The 29 hyperparameters in meta/meta_table.h order (database columns).
HYP_KEYS=(lr0 lrf momentum weight_decay warmup_epochs warmup_momentum warmup_bias_lr box cls
	cls_pw obj obj_pw iou_t anchor_t fl_gamma hsv_h hsv_s hsv_v degrees translate scale shear
	perspective flipud fliplr mosaic mixup copy_paste anchors)
HYP_COLS=$(IFS=,; echo "${HYP_KEYS[*]}")
# The columns that must not depend on timing, interruptions or the folder.
DET_COLS="generation,parent,status,precision,recall,map50,map,val_box,val_obj,val_cls,fitness,$HYP_COLS"

# Keep the fixture quiet and fast unless a test asks otherwise.
unset FIXTURE_MODE FIXTURE_FAIL_IF FIXTURE_CRASH_ONCE FIXTURE_EPOCH_MS FIXTURE_DURATION_MS \
	FIXTURE_LOG_BYTES FIXTURE_NOISE FIXTURE_FAIL_EPOCHS 2>/dev/null || true

YE_T0=$(date +%s.%N)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ye-e2e.XXXXXX")
FAILS=0
CHECKS=0
BG_PIDS=()

ye_cleanup() {
	local p
	for p in "${BG_PIDS[@]}"; do
		kill -KILL "$p" 2>/dev/null || true
	done
	# trainers left by this script are recognised by $WORK in their command line
	local left
	left=$(pgrep -f -- "$WORK" 2>/dev/null || true)
	for p in $left; do
		kill -KILL "$p" 2>/dev/null || true
	done
	wait 2>/dev/null || true
	rm -rf -- "$WORK"
}
trap ye_cleanup EXIT
trap 'echo "FAIL - unexpected error (exit $?) at line $LINENO: $BASH_COMMAND"; exit 1' ERR

cd "$WORK"

section() { printf '\n## %s\n' "$*"; }
pass() { CHECKS=$((CHECKS + 1)); echo "ok   - $*"; }
fail() { CHECKS=$((CHECKS + 1)); FAILS=$((FAILS + 1)); echo "FAIL - $*"; }
note() { echo "       $*"; }

# show_diff A B [LINES]: the first lines of diff A B, indented (never fails).
show_diff() {
	{ diff "$1" "$2" || true; } | head -n "${3:-8}" | cut -c1-160 | sed 's/^/       | /' || true
}

# show_file FILE [LINES]: the last lines of FILE, indented (never fails).
show_file() { tail -n "${2:-8}" "$1" 2>/dev/null | cut -c1-200 | sed 's/^/       | /' || true; }

# check DESCRIPTION COMMAND...: pass if the command succeeds.
check() {
	local desc=$1
	shift
	if "$@"; then pass "$desc"; else fail "$desc"; fi
}

# check_eq DESCRIPTION EXPECTED ACTUAL
check_eq() {
	if [[ "$2" == "$3" ]]; then
		pass "$1"
	else
		fail "$1 (expected '$2', got '$3')"
	fi
}

# run_ye LOG ARGS...: run yolo-evolve, output (stdout+stderr) to LOG; sets RC.
run_ye() {
	local log=$1
	shift
	RC=0
	"$YE" "$@" >"$log" 2>&1 || RC=$?
}

# Run an evolution with the fixture trainer: evolve PROJECT NAME [more options].
evolve() {
	local project=$1 name=$2
	shift 2
	run_ye "$WORK/$name.log" --project "$project" --name "$name" --data none --trainer "$TRAINER" \
		--quiet "$@"
}

sql() { sqlite3 -batch -bail "$1" "$2"; }

# The deterministic columns of the generations table as CSV.
gen_dump() { sqlite3 -batch -bail -csv "$1" "SELECT $DET_COLS FROM generations ORDER BY generation"; }

# Numeric equality as strtod sees it.
num_eq() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 == b + 0) }'; }
num_gt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 > b + 0) }'; }

# Value of KEY in a hyp.yaml ("key: value  # comment" lines), empty if absent.
yaml_value() {
	awk -v k="$2" '{ sub(/#.*/, "") } $1 == k ":" { print $2; exit }' "$1"
}

# Processes whose command line contains PATTERN (a fixed string).
procs_matching() {
	local pid
	for pid in $(pgrep -f -- "$1" 2>/dev/null || true); do
		[[ -r /proc/$pid/cmdline ]] || continue
		if tr '\0' ' ' </proc/"$pid"/cmdline 2>/dev/null | grep -qF -- "$1"; then
			echo "$pid"
		fi
	done
}

# wait_gone SECONDS PATTERN: wait until no process matches; 0 if none left.
wait_gone() {
	local deadline=$((SECONDS + $1))
	while [[ -n "$(procs_matching "$2")" ]]; do
		((SECONDS < deadline)) || return 1
		sleep 0.05
	done
	return 0
}

# wait_pid_exit SECONDS PID: wait for a background child; sets RC to its exit
# status, or returns 1 (RC unset) if it is still running after SECONDS.
wait_pid_exit() {
	local deadline
	deadline=$(awk -v s="$1" -v n="$(date +%s.%N)" 'BEGIN { printf "%.3f", n + s }')
	while kill -0 "$2" 2>/dev/null; do
		if awk -v d="$deadline" -v n="$(date +%s.%N)" 'BEGIN { exit !(n > d) }'; then
			# a zombie counts as exited
			[[ "$(awk '{ print $3 }' /proc/"$2"/stat 2>/dev/null)" == Z ]] && break
			return 1
		fi
		sleep 0.02
	done
	RC=0
	wait "$2" 2>/dev/null || RC=$?
	return 0
}

# wait_sql SECONDS DB QUERY: wait until QUERY returns a non-empty, non-zero answer.
wait_sql() {
	local deadline=$((SECONDS + $1)) out
	while :; do
		out=$(sqlite3 -batch "$2" "$3" 2>/dev/null || true)
		[[ -n "$out" && "$out" != 0 ]] && return 0
		((SECONDS < deadline)) || return 1
		sleep 0.05
	done
}

elapsed() { awk -v a="$YE_T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

ye_finish() {
	echo
	if ((FAILS > 0)); then
		echo "$(basename "$0"): $FAILS of $CHECKS checks FAILED ($(elapsed) s)"
		exit 1
	fi
	echo "$(basename "$0"): all $CHECKS checks passed ($(elapsed) s)"
	exit 0
}
