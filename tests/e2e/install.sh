#!/usr/bin/env bash
# install.sh - `meson install` gives a working yolo-evolve anywhere: the
# programs, the model yamls and the hyp files land under the prefix, and the
# installed programs find their shipped files there (relocated: installed
# with --destdir into a temporary folder, so the configured prefix does not
# exist), never in the source tree. Then the installed yolo-evolve --help and
# a 1-generation evolution with the installed native trainer on a tiny
# generated dataset, run from a folder outside the source tree.
# Environment (meson sets it): YE_BUILD_ROOT and lib.sh's.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

: "${YE_BUILD_ROOT:?set YE_BUILD_ROOT to the meson build folder}"

section "meson install --destdir"
DEST=$WORK/dest
if meson install -C "$YE_BUILD_ROOT" --no-rebuild --quiet --destdir "$DEST" >install.log 2>&1; then
	pass "meson install exits 0"
else
	fail "meson install exits 0"
	show_file install.log 20
	ye_finish
fi
BIN=$(dirname "$(find "$DEST" -path '*/bin/yolo-evolve' -type f | head -1)")
PREFIX=$(dirname "$BIN")
note "installed under $PREFIX"
for program in yolo-evolve yolo-train yolo-val gen-dataset; do
	check "bin/$program installed and executable" test -x "$BIN/$program"
done
SHARE=$PREFIX/share/yolo-evolve
for model in yolov5n yolov5s yolov5m yolov5l yolov5x; do
	check "share/yolo-evolve/models/$model.yaml installed" cmp -s "$SHARE/models/$model.yaml" \
		"$YE_SOURCE_ROOT/models/$model.yaml"
done
for hyp in "$YE_SOURCE_ROOT"/data/hyps/*.yaml; do
	check "share/yolo-evolve/data/hyps/$(basename "$hyp") installed" cmp -s \
		"$SHARE/data/hyps/$(basename "$hyp")" "$hyp"
done

for file in yolo_evolve_train.py hyp.ultralytics.yaml; do
	check "share/yolo-evolve/data/ultralytics/$file installed" cmp -s \
		"$SHARE/data/ultralytics/$file" "$YE_SOURCE_ROOT/data/ultralytics/$file"
done

section "the installed programs run from anywhere"
mkdir -p "$WORK/elsewhere"
cd "$WORK/elsewhere"
RC=0
"$BIN/yolo-evolve" --help >help.out 2>&1 || RC=$?
check_eq "yolo-evolve --help exits 0" 0 "$RC"
check "yolo-evolve --help lists --generations" grep -q -- '--generations' help.out
"$BIN/gen-dataset" data --train 8 --val 4 --size 64 --classes 2 --seed 1 >/dev/null
RC=0
"$BIN/yolo-evolve" --generations 1 --data data/data.yaml --cfg yolov5n.yaml --epochs 1 \
	--imgsz 64 --batch-size 4 --project runs --name inst --quiet >evolve.log 2>&1 || RC=$?
check_eq "a 1-generation evolution with the installed native trainer exits 0" 0 "$RC"
((RC == 0)) || show_file evolve.log 20
DB=runs/inst/evolve.db
check_eq "its one candidate is done" "done" "$(sql "$DB" "SELECT status FROM generations WHERE generation = 0" 2>/dev/null || true)"
hyp_path=$(sql "$DB" "SELECT hyp_path FROM evolution" 2>/dev/null || true)
check_eq "the default hyp came from the install prefix" "$SHARE/data/hyps/hyp.scratch-low.yaml" "$hyp_path"
OPT=$(find runs/inst/candidates -name opt.yaml | head -1)
cfg_used=$(awk '$1 == "cfg:" { gsub(/\x27/, "", $2); print $2 }' "$OPT" 2>/dev/null || true)
check_eq "the trainer read yolov5n.yaml from the install prefix" "$SHARE/models/yolov5n.yaml" "$cfg_used"
check "no path under the source tree in the run's records" \
	bash -c "! grep -rqF -- '$YE_SOURCE_ROOT/' runs/inst/candidates '$OPT'"

section "the installed ultralytics trainer runs the installed launcher"
# a stand-in interpreter: records what it runs and answers as the package would
cat >fake-python <<'SH'
#!/usr/bin/env bash
launcher=$1
shift
while (($#)); do
	case $1 in
	--project) project=$2 ;;
	--name) name=$2 ;;
	--hyp) hyp=$2 ;;
	esac
	shift
done
mkdir -p "$project/$name"
echo "$launcher" >"$project/$name/launcher.txt"
cp "$hyp" "$project/$name/hyp_seen.yaml"
printf '%s\n' "epoch,time,train/box_loss,train/cls_loss,train/dfl_loss,metrics/precision(B),metrics/recall(B),metrics/mAP50(B),metrics/mAP50-95(B),val/box_loss,val/cls_loss,val/dfl_loss,lr/pg0,lr/pg1,lr/pg2" \
	"1,0.5,1.5,1.25,1.125,0.5,0.25,0.375,0.125,1,2,0.75,0.01,0.01,0.01" >"$project/$name/results.csv"
SH
chmod +x fake-python
RC=0
"$BIN/yolo-evolve" --generations 1 --data data/data.yaml --cfg tiny.yaml --trainer "ultralytics:$PWD/fake-python" \
	--epochs 1 --imgsz 64 --batch-size 4 --project runs --name ul --quiet >ul.log 2>&1 || RC=$?
check_eq "a 1-generation ultralytics evolution exits 0" 0 "$RC"
((RC == 0)) || show_file ul.log 10
check_eq "its launcher is the installed one" "$SHARE/data/ultralytics/yolo_evolve_train.py" \
	"$(cat runs/ul/candidates/g00000/launcher.txt 2>/dev/null || true)"
check_eq "its base hyp is the installed hyp.ultralytics.yaml" "$SHARE/data/ultralytics/hyp.ultralytics.yaml" \
	"$(sql runs/ul/evolve.db "SELECT hyp_path FROM evolution" 2>/dev/null || true)"
check "the candidate got the Ultralytics keys (dfl, close_mosaic 10), no YOLOv5 ones" \
	bash -c "grep -qx 'dfl: 1.5' runs/ul/candidates/g00000/hyp_seen.yaml &&
		grep -qx 'close_mosaic: 10' runs/ul/candidates/g00000/hyp_seen.yaml &&
		! grep -q '^obj:' runs/ul/candidates/g00000/hyp_seen.yaml"
check_eq "its results: fitness = mAP50-95, val_dfl" "done|0.125|0.75" \
	"$(sql runs/ul/evolve.db "SELECT status, fitness, val_dfl FROM generations" 2>/dev/null || true)"

section "yolo-train and yolo-val find the shipped files by name"
RC=0
"$BIN/yolo-train" --data data/data.yaml --cfg models/yolov5n.yaml --epochs 1 --imgsz 64 \
	--batch-size 4 --project train --name t >train.log 2>&1 || RC=$?
check_eq "yolo-train --cfg models/yolov5n.yaml without --hyp exits 0" 0 "$RC"
check_eq "its hyp is the installed hyp.scratch-low.yaml" "'$SHARE/data/hyps/hyp.scratch-low.yaml'" \
	"$(awk '$1 == "hyp:" { print $2 }' train/t/opt.yaml)"
RC=0
"$BIN/yolo-val" --weights train/t/weights/last.safetensors --cfg yolov5n.yaml --data data/data.yaml \
	--imgsz 64 >val.log 2>&1 || RC=$?
check_eq "yolo-val --cfg yolov5n.yaml exits 0" 0 "$RC"
((RC == 0)) || show_file val.log 10

ye_finish
