#!/usr/bin/env bash
# val_cli.sh - yolo-val end to end: a run on a small synthetic dataset prints
# val.py's table and speed line; every bad input is one "error:" line naming
# the option or file, exit 2 (usage) or 1 (runtime), never a crash.
#
# Weights: the golden yolov5n nc=2 state_dict (tests/golden/yolov5) (no model_yaml stored,
# so --cfg is needed). Environment (meson sets it): YOLO_VAL, GEN_DATASET.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

: "${YOLO_VAL:?set YOLO_VAL to the built yolo-val}"
: "${GEN_DATASET:?set GEN_DATASET to the built gen-dataset}"

WEIGHTS=$YE_SOURCE_ROOT/tests/golden/yolov5/model_v5n_nc2.safetensors
CFG=$YE_SOURCE_ROOT/models/yolov5n.yaml

run_val() {
	local log=$1
	shift
	RC=0
	"$YOLO_VAL" "$@" >"$log" 2>&1 || RC=$?
}

# expect_error DESCRIPTION STATUS CULPRIT ARGS...: exit STATUS, exactly one
# "error:" line, and it mentions CULPRIT (a fixed string).
N=0
expect_error() {
	local desc=$1 status=$2 culprit=$3
	shift 3
	N=$((N + 1))
	local log=$WORK/err$N.log
	run_val "$log" "$@"
	local errors
	errors=$(grep -c '^error:' "$log" || true)
	if ((RC != status)); then
		fail "$desc: exit status $RC, expected $status"
		show_file "$log" 5
	elif [[ "$errors" != 1 ]]; then
		fail "$desc: $errors 'error:' lines, expected exactly one"
		show_file "$log" 5
	elif ! grep '^error:' "$log" | grep -qF -- "$culprit"; then
		fail "$desc: the error does not mention '$culprit': $(grep '^error:' "$log")"
	else
		pass "$desc (exit $RC): $(grep '^error:' "$log")"
	fi
}

section "datasets"
"$GEN_DATASET" "$WORK/two" --train 0 --val 6 --size 96 --classes 2 >/dev/null
"$GEN_DATASET" "$WORK/three" --train 0 --val 6 --size 96 --classes 3 >/dev/null
check "gen-dataset made two data.yaml" test -f "$WORK/two/data.yaml" -a -f "$WORK/three/data.yaml"
GOOD=(--weights "$WEIGHTS" --cfg "$CFG" --data "$WORK/two/data.yaml" --imgsz 96 --batch-size 4
	--threads 1 --workers 1)

section "a run"
run_val "$WORK/ok.log" "${GOOD[@]}"
check_eq "exit status" 0 "$RC"
header=$(printf '%22s%11s%11s%11s%11s%11s%11s' Class Images Instances P R mAP50 mAP50-95)
check "val.py's header" grep -qxF -- "$header" "$WORK/ok.log"
all=$(awk '$1 == "all" { print $2, $3 }' "$WORK/ok.log")
labels=$(cat "$WORK"/two/labels/val/*.txt | grep -c .)
check_eq "the all row: 6 images and every label" "6 $labels" "$all"
check_eq "per-class rows (nc < 50)" 2 "$(grep -cE '^ +(rectangle|ellipse) ' "$WORK/ok.log")"
check "the speed line" grep -qE '^Speed: [0-9.]+ms pre-process, [0-9.]+ms inference, [0-9.]+ms NMS per image at shape \(4, 3, 96, 96\)$' "$WORK/ok.log"
show_file "$WORK/ok.log" 6

run_val "$WORK/again.log" "${GOOD[@]}" --workers 0 --batch-size 5
check_eq "other workers and batch size: exit status" 0 "$RC"
check_eq "other workers and batch size: the same all row" \
	"$(grep -E '^ +all ' "$WORK/ok.log")" "$(grep -E '^ +all ' "$WORK/again.log")"

run_val "$WORK/single.log" --weights "$WEIGHTS" --cfg "$CFG" --data "$WORK/three/data.yaml" \
	--imgsz 96 --single-cls --threads 1
check_eq "--single-cls accepts weights of another nc" 0 "$RC"
check_eq "--single-cls: no per-class rows" 0 "$(grep -cE '^ +(rectangle|ellipse|triangle) ' "$WORK/single.log" || true)"

section "usage errors (exit 2)"
expect_error "no options" 2 "--weights"
expect_error "no --data" 2 "--data" --weights "$WEIGHTS"
expect_error "unknown option" 2 "--bogus" "${GOOD[@]}" --bogus
expect_error "needs a value" 2 "--imgsz" "${GOOD[@]}" --imgsz
expect_error "--imgsz abc" 2 "--imgsz: 'abc'" "${GOOD[@]}" --imgsz abc
expect_error "--conf-thres 2" 2 "--conf-thres" "${GOOD[@]}" --conf-thres 2
expect_error "--task bogus" 2 "--task 'bogus'" "${GOOD[@]}" --task bogus
expect_error "stray argument" 2 "stray" "${GOOD[@]}" stray
expect_error "no --cfg and no model_yaml in the weights" 2 "--cfg" --weights "$WEIGHTS" \
	--data "$WORK/two/data.yaml"

section "runtime errors (exit 1)"
expect_error "missing weights" 1 "$WORK/none.safetensors" --weights "$WORK/none.safetensors" \
	--cfg "$CFG" --data "$WORK/two/data.yaml"
printf 'not a safetensors file\n' >"$WORK/junk.safetensors"
expect_error "weights that are not safetensors" 1 "junk.safetensors" \
	--weights "$WORK/junk.safetensors" --cfg "$CFG" --data "$WORK/two/data.yaml"
expect_error "missing data.yaml" 1 "$WORK/none.yaml" "${GOOD[@]}" --data "$WORK/none.yaml"
# one line naming CUDA: "this build has no CUDA backend" without CUDA, or
# "CUDA: cannot use GPU 0: <cause>" with CUDA on a machine without a usable GPU
expect_error "--device 0 (no CUDA build, or no usable GPU)" 1 "CUDA" "${GOOD[@]}" --device 0
grep -v '^names:\|^  [0-9]:' "$WORK/two/data.yaml" >"$WORK/nonames.yaml"
expect_error "data.yaml without names" 1 "nonames.yaml" "${GOOD[@]}" --data "$WORK/nonames.yaml"
printf 'train: [unclosed\n' >"$WORK/broken.yaml"
expect_error "data.yaml that is not YAML" 1 "broken.yaml" "${GOOD[@]}" --data "$WORK/broken.yaml"
expect_error "wrong nc (weights for 2 classes, data with 3)" 1 "2 classes" "${GOOD[@]}" \
	--data "$WORK/three/data.yaml"
expect_error "no test split" 1 "test" "${GOOD[@]}" --task test
expect_error "missing --cfg file" 1 "$WORK/none.yaml" "${GOOD[@]}" --cfg "$WORK/none.yaml"

ye_finish
