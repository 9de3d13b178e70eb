#!/usr/bin/env bash
# valgrind_train.sh - a short yolo-train run (1 epoch of 8 tiny images, with
# validation and checkpoints) and a --resume of it are valgrind clean: no
# invalid access, no use of uninitialised values, no definite or indirect
# leak. oneDNN's JIT kernels over-read oneDNN's own buffers with vector
# loads; tests/valgrind/onednn-jit.supp suppresses only errors whose top
# frame is JIT code (no object file). Skipped (77) without valgrind.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
: "${YOLO_TRAIN:?set YOLO_TRAIN to the built yolo-train}"
: "${GEN_DATASET:?set GEN_DATASET to the built gen-dataset}"
if ! command -v valgrind >/dev/null; then
	echo "valgrind not installed: skipped"
	exit 77
fi
# set, so yolo-train does not re-exec itself (out of valgrind's sight) to set it
export OMP_WAIT_POLICY=PASSIVE
VG=(valgrind --error-exitcode=9 --leak-check=full --errors-for-leak-kinds=definite,indirect
	--suppressions="$YE_SOURCE_ROOT/tests/valgrind/onednn-jit.supp")
"$GEN_DATASET" "$WORK/data" --train 8 --val 4 --size 64 --classes 2 --seed 1 >/dev/null

section "yolo-train under valgrind"
RC=0
"${VG[@]}" "$YOLO_TRAIN" --data "$WORK/data/data.yaml" --hyp "$BASE_HYP" \
	--cfg "$YE_SOURCE_ROOT/models/yolov5n.yaml" --epochs 2 --batch-size 4 --imgsz 64 --workers 2 \
	--threads 1 --noval --project "$WORK/runs" --name vg >"$WORK/vg.log" 2>&1 &
pid=$!
BG_PIDS+=("$pid")
deadline=$((SECONDS + 600))
until [[ -s $WORK/runs/vg/weights/last.safetensors ]] || ! kill -0 "$pid" 2>/dev/null ||
	((SECONDS > deadline)); do sleep 0.2; done
kill -TERM "$pid" 2>/dev/null || true # stop in epoch 1: the signal path runs too
wait_pid_exit 600 "$pid" || fail "yolo-train under valgrind did not stop"
check "stopped by SIGTERM (143), no valgrind error (9)" test "$RC" = 143
grep -E "ERROR SUMMARY|definitely lost|indirectly lost" "$WORK/vg.log" | sed 's/^/       /'
[[ $RC == 143 ]] || show_file "$WORK/vg.log" 30

section "yolo-train --resume under valgrind"
RC=0
"${VG[@]}" "$YOLO_TRAIN" --resume "$WORK/runs/vg/weights/last.safetensors" >"$WORK/vg2.log" 2>&1 || RC=$?
check_eq "resume finished, no valgrind error" 0 "$RC"
grep -E "ERROR SUMMARY|definitely lost|indirectly lost" "$WORK/vg2.log" | sed 's/^/       /'
[[ $RC == 0 ]] || show_file "$WORK/vg2.log" 30

ye_finish
