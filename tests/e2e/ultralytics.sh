#!/usr/bin/env bash
# ultralytics.sh - yolo-evolve drives the real ultralytics package (YOLOv8 /
# YOLO11 training) offline on the CPU: a tiny model yaml trained from scratch
# on a gen-dataset dataset, 2 epochs per candidate, 3 generations, 2 at once,
# the evolver SIGKILLed while trainers run and --resume'd; then the database
# (space, Ultralytics keys, dfl results, epochs), the fitness, the run
# folder's files and `export --best` (a cfg the package accepts) are checked,
# and the Tuner's files go both ways: the package's own Tuner writes a
# tune_results.ndjson that is imported, exported back equal and continued,
# and the Tuner resumes from our export.
#
# The package comes from a cached venv over Debian's torch
# ($HOME/.cache/yolo-evolve-test-venv/ultralytics-VERSION, or
# $YE_ULTRALYTICS_VENV); it is installed with pip on the first run. No
# package, no pass: this test fails (never skips) when it cannot be had.
# Once it is there the rest runs without a network (a network namespace of
# its own where unshare can make one), so a download would fail the test.
UL_VERSION=8.4.190
VENV=${YE_ULTRALYTICS_VENV:-$HOME/.cache/yolo-evolve-test-venv/ultralytics-$UL_VERSION}
PY=$VENV/bin/python

if [[ -z "${YE_UL_STAGE:-}" ]]; then
	if ! "$PY" -c "import ultralytics" >/dev/null 2>&1; then
		echo "installing ultralytics $UL_VERSION into $VENV (once)"
		rm -rf -- "$VENV"
		mkdir -p "$(dirname "$VENV")"
		log=$(mktemp)
		if ! /usr/bin/python3 -m venv --system-site-packages "$VENV" >"$log" 2>&1 ||
			! "$VENV/bin/pip" install -q --no-deps "ultralytics==$UL_VERSION" ultralytics-thop polars \
				>>"$log" 2>&1; then
			echo "FAIL - cannot install ultralytics $UL_VERSION (Debian's python3-torch etc. come from scripts/install-deps.sh)"
			tail -n 8 "$log" | sed 's/^/       | /'
			rm -f -- "$log"
			exit 1
		fi
		rm -f -- "$log"
	fi
	if unshare -n true 2>/dev/null; then
		exec env YE_UL_STAGE=nonet unshare -n bash "$0" "$@"
	fi
	export YE_UL_STAGE=net
fi

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
: "${GEN_DATASET:?set GEN_DATASET to the built gen-dataset}"
# nothing may reach the network while training: no hub, no assets, no fonts
export YOLO_OFFLINE=1 YOLO_CONFIG_DIR=$WORK/ultralytics-config OMP_NUM_THREADS=1

section "the ultralytics package $UL_VERSION"
if [[ "$YE_UL_STAGE" == nonet ]]; then
	note "running in a network namespace of its own: no network at all"
else
	note "unshare cannot make a network namespace here: relying on YOLO_OFFLINE=1"
fi
check_eq "ultralytics imports, version $UL_VERSION" "$UL_VERSION" \
	"$("$PY" -c 'import ultralytics; print(ultralytics.__version__)' 2>"$WORK/import.log" | tail -n 1)"

section "options: the space follows the trainer; contradictions are errors"
run_ye "$WORK/e1.log" --project "$WORK/bad" --data none --space yolov8
check_eq "--space yolov8: exit 2" 2 "$RC"
check "... naming the choices" grep -q "use yolov5 or ultralytics" "$WORK/e1.log"
run_ye "$WORK/e2.log" --project "$WORK/bad" --data none --space ultralytics
check_eq "--space ultralytics with the native trainer: exit 2" 2 "$RC"
check "... saying the trainer takes yolov5" grep -q "takes the yolov5 space" "$WORK/e2.log"
run_ye "$WORK/e3.log" --project "$WORK/bad" --data none --trainer "ultralytics:$PY" --cfg x.yaml \
	--algorithm ga
check_eq "--algorithm ga with the ultralytics space: exit 2" 2 "$RC"
run_ye "$WORK/e4.log" --project "$WORK/bad" --data none --trainer "ultralytics:$PY"
check "no --cfg or --weights for the ultralytics trainer: an error saying so" \
	grep -q "required by the ultralytics trainer" "$WORK/e4.log"
check "nothing made for them" test ! -e "$WORK/bad"

section "3 generations, 2 at once, SIGKILL and --resume"
"$GEN_DATASET" "$WORK/ds" --train 16 --val 8 --size 64 --classes 2 >"$WORK/gen.log" 2>&1
CFG=$YE_SOURCE_ROOT/tests/data/ultralytics/tiny-detector.yaml
DB=$WORK/runs/ul/evolve.db
OPTS=(--project "$WORK/runs" --name ul --data "$WORK/ds/data.yaml" --cfg "$CFG"
	--trainer "ultralytics:$PY" --epochs 2 --batch 8 --imgsz 64 --device cpu
	--generations 3 --parallel 2 --seed 5 --quiet)
"$YE" "${OPTS[@]}" >"$WORK/first.log" 2>&1 &
BG=$!
BG_PIDS+=("$BG")
# kill the evolver once a trainer of its has written an epoch
deadline=$((SECONDS + 120))
until compgen -G "$WORK/runs/ul/candidates/g0000*/results.csv" >/dev/null; do
	((SECONDS < deadline)) && kill -0 "$BG" 2>/dev/null || break
	sleep 0.2
done
RC=0
kill -KILL "$BG" 2>/dev/null || true
wait "$BG" 2>/dev/null || RC=$?
check_eq "the evolver was SIGKILLed while training" 137 "$RC"
check "its trainers end with it" wait_gone 20 "$WORK/runs/ul/candidates/"
run_ye "$WORK/resume.log" --resume --db "$DB" --quiet
check_eq "--resume finishes the evolution" 0 "$RC"
((RC == 0)) || show_file "$WORK/resume.log" 20
for g in 0 1 2; do
	[[ $RC == 0 ]] || show_file "$WORK/runs/ul/candidates/g0000$g/train.log" 10
done

section "the database holds the Ultralytics space and metrics"
check_eq "evolution.space" ultralytics "$(sql "$DB" "SELECT space FROM evolution")"
check_eq "3 done generations" "3|3" "$(sql "$DB" "SELECT count(*), sum(status = 'done') FROM generations")"
check_eq "Ultralytics keys stored, YOLOv5-only keys NULL" 3 \
	"$(sql "$DB" "SELECT count(*) FROM generations WHERE dfl IS NOT NULL AND bgr IS NOT NULL
		AND cutmix IS NOT NULL AND close_mosaic IS NOT NULL AND obj IS NULL AND anchors IS NULL")"
check_eq "val_dfl stored (from val/dfl_loss), val_obj NULL" 3 \
	"$(sql "$DB" "SELECT count(*) FROM generations WHERE val_dfl IS NOT NULL AND val_obj IS NULL
		AND val_box IS NOT NULL AND map IS NOT NULL")"
check_eq "fitness is mAP50-95 (DetMetrics.fitness)" 3 \
	"$(sql "$DB" "SELECT count(*) FROM generations WHERE abs(fitness - map) < 1e-12")"
check_eq "generation 0 trains default.yaml's values" "0.01|1.5|10.0|0.937" \
	"$(sql "$DB" "SELECT lr0, dfl, close_mosaic, momentum FROM generations WHERE generation = 0")"
check_eq "the others are mutated" 2 \
	"$(sql "$DB" "SELECT count(*) FROM generations g, generations b WHERE b.generation = 0
		AND g.generation > 0 AND (g.lr0 != b.lr0 OR g.box != b.box OR g.hsv_s != b.hsv_s)")"
check_eq "epochs: 2 per generation, epoch 0 and 1, dfl columns filled" "6|0|1|6" \
	"$(sql "$DB" "SELECT count(*), min(epoch), max(epoch), sum(train_dfl IS NOT NULL
		AND val_dfl IS NOT NULL AND train_obj IS NULL) FROM epochs")"
check_eq "the candidate's hyp.yaml reached the package (args.yaml)" \
	"$(sql "$DB" "SELECT printf('%g', lr0) FROM generations WHERE generation = 2")" \
	"$("$PY" -c "import yaml,sys; print('%g' % yaml.safe_load(open(sys.argv[1]))['lr0'])" \
		"$WORK/runs/ul/candidates/g00002/args.yaml")"

check "the run folder: the Tuner's tune_results.ndjson (3 records) and best_hyperparameters.yaml" \
	test "$(wc -l <"$WORK/runs/ul/tune_results.ndjson")" = 3 -a -s "$WORK/runs/ul/best_hyperparameters.yaml"
check "... and no YOLOv5 evolve.csv" test ! -e "$WORK/runs/ul/evolve.csv"
check "... and its plots (evolve.png over the Ultralytics keys, fitness.png)" \
	test -s "$WORK/runs/ul/evolve.png" -a -s "$WORK/runs/ul/fitness.png"

section "--weights: a candidate starts from a .pt"
PT=$(ls "$WORK"/runs/ul/candidates/g0000*/weights/last.pt 2>/dev/null | head -1)
check "the candidates saved weights (weights/last.pt)" test -s "$PT"
run_ye "$WORK/w.log" --project "$WORK/runs" --name w --data "$WORK/ds/data.yaml" --weights "$PT" \
	--trainer "ultralytics:$PY" --epochs 1 --batch 8 --imgsz 64 --device cpu --generations 1 --quiet
check_eq "a 1-generation evolution from --weights (no --cfg) is done" "0|done" \
	"$RC|$(sql "$WORK/runs/w/evolve.db" "SELECT status FROM generations" 2>/dev/null || true)"
((RC == 0)) || show_file "$WORK/runs/w/candidates/g00000/train.log" 10

section "export --best: a cfg the package takes"
run_ye "$WORK/export.log" export --db "$DB" --best "$WORK/best.yaml"
check_eq "export --best exits 0" 0 "$RC"
check_eq "26 keys, the Tuner's space" 26 "$(grep -c '^[a-z_0-9]*: ' "$WORK/best.yaml")"
check_eq "close_mosaic written as an integer" 1 "$(grep -c '^close_mosaic: [0-9]*$' "$WORK/best.yaml")"
check "the package's get_cfg accepts it (yolo train cfg=...)" \
	"$PY" -c "import sys; from ultralytics.cfg import get_cfg; get_cfg(sys.argv[1])" "$WORK/best.yaml"
run_ye "$WORK/csv.log" export --db "$DB" --csv "$WORK/evolve.csv"
check_eq "export --csv (YOLOv5's evolve.csv) refuses the ultralytics space: exit 1" 1 "$RC"
check "... saying why" grep -q "has the ultralytics space" "$WORK/csv.log"

section "the Tuner's files: import, export, round trip, and back to the Tuner"
# the package's own Tuner, 2 iterations of 1 epoch: a genuine tune_results.ndjson
cat >"$WORK/tune.py" <<'PY'
import sys
from ultralytics import YOLO
cfg, data, project, iterations, resume = sys.argv[1:6]
YOLO(cfg).tune(data=data, epochs=1, iterations=int(iterations), imgsz=64, batch=8, device="cpu",
               plots=False, save=False, workers=0, project=project, name="tune", resume=resume == "1")
PY
"$PY" "$WORK/tune.py" "$CFG" "$WORK/ds/data.yaml" "$WORK/tuner" 2 0 >"$WORK/tune.log" 2>&1 || true
TUNE=$WORK/tuner/tune/tune_results.ndjson
check_eq "the package's Tuner wrote 2 records" 2 "$(wc -l <"$TUNE" 2>/dev/null || echo none)"
[[ -s "$TUNE" ]] || show_file "$WORK/tune.log" 15
IMP=(--data "$WORK/ds/data.yaml" --cfg "$CFG" --trainer "ultralytics:$PY" --epochs 1 --batch 8
	--imgsz 64 --device cpu --project "$WORK/runs" --quiet)
run_ye "$WORK/import.log" import "$TUNE" --name imp "${IMP[@]}"
check_eq "import tune_results.ndjson exits 0" 0 "$RC"
IDB=$WORK/runs/imp/evolve.db
check_eq "2 done generations, space ultralytics" "2|2|ultralytics" \
	"$(sql "$IDB" "SELECT count(*), sum(status = 'done'), (SELECT space FROM evolution) FROM generations")"
run_ye "$WORK/export2.log" export --db "$IDB" --ndjson "$WORK/back.ndjson" --tune-csv "$WORK/back.csv"
check_eq "export --ndjson --tune-csv exits 0" 0 "$RC"
run_ye "$WORK/export4.log" export --db "$DB" --ndjson "$WORK/main.ndjson"
check_eq "export --ndjson of the evolved run: its 3 done generations" "0|3" "$RC|$(wc -l <"$WORK/main.ndjson")"
cat >"$WORK/same.py" <<'PY'
import json, sys
a = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
b = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
assert len(a) == len(b), (len(a), len(b))
for x, y in zip(a, b):
    assert x["iteration"] == y["iteration"] and x["fitness"] == y["fitness"], (x, y)
    assert x["hyperparameters"] == y["hyperparameters"], (x["hyperparameters"], y["hyperparameters"])
    assert list(x["datasets"]) == list(y["datasets"]), (x["datasets"], y["datasets"])
    for name in x["datasets"]:
        assert x["datasets"][name] == y["datasets"][name], (x["datasets"], y["datasets"])
PY
check "the round trip gives the Tuner's records back (iterations, fitness, hyps, metrics)" \
	"$PY" "$WORK/same.py" "$TUNE" "$WORK/back.ndjson"
cat >"$WORK/csvform.py" <<'PY'
import sys, numpy as np
from ultralytics.engine.tuner import Tuner
cfg, data, project, path = sys.argv[1:5]
space = list(Tuner(args=dict(model=cfg, data=data, project=project, name="probe")).space)
header = open(path).readline().strip()
assert header == ",".join(["fitness", *space]), (header, space)
x = np.loadtxt(path, ndmin=2, delimiter=",", skiprows=1)  # as the 8.3 Tuner reads it
assert x.shape == (2, 1 + len(space)), x.shape
PY
check "tune_results.csv: the Tuner's header (its space) and numbers np.loadtxt reads" \
	"$PY" "$WORK/csvform.py" "$CFG" "$WORK/ds/data.yaml" "$WORK/probe" "$WORK/back.csv"
run_ye "$WORK/import3.log" import "$WORK/back.csv" --name impcsv "${IMP[@]}"
check_eq "import tune_results.csv: the same hyps as from the ndjson" \
	"$(sql "$IDB" "SELECT group_concat(lr0 || '/' || box || '/' || close_mosaic) FROM generations")" \
	"$(sql "$WORK/runs/impcsv/evolve.db" "SELECT group_concat(lr0 || '/' || box || '/' || close_mosaic) FROM generations")"
run_ye "$WORK/continue.log" --resume --db "$IDB" --generations 3 --quiet
check_eq "the imported Tuner run continues in yolo-evolve (generation 2 done)" "0|done" \
	"$RC|$(sql "$IDB" "SELECT status FROM generations WHERE generation = 2")"
# and back: the Tuner resumes from our file
mkdir -p "$WORK/tuner2/tune"
run_ye "$WORK/export3.log" export --db "$IDB" --ndjson "$WORK/tuner2/tune/tune_results.ndjson"
"$PY" "$WORK/tune.py" "$CFG" "$WORK/ds/data.yaml" "$WORK/tuner2" 4 1 >"$WORK/tune2.log" 2>&1 || true
check_eq "the package's Tuner resumes from our tune_results.ndjson (3 + 1 records)" 4 \
	"$(wc -l <"$WORK/tuner2/tune/tune_results.ndjson")"
check "... and names its best_hyperparameters.yaml" test -s "$WORK/tuner2/tune/best_hyperparameters.yaml"

section "pruning reads Ultralytics' results.csv epoch by epoch (a stand-in interpreter)"
# answers like the package, slowly: mAP50-95 grows with the epoch and lr0
cat >"$WORK/slow-python" <<'SH'
#!/usr/bin/env bash
shift
while (($#)); do
	case $1 in
	--project) project=$2 ;;
	--name) name=$2 ;;
	--hyp) hyp=$2 ;;
	--epochs) epochs=$2 ;;
	esac
	shift
done
lr0=$(awk '$1 == "lr0:" { print $2 }' "$hyp")
mkdir -p "$project/$name"
out=$project/$name/results.csv
echo "epoch,time,train/box_loss,train/cls_loss,train/dfl_loss,metrics/precision(B),metrics/recall(B),metrics/mAP50(B),metrics/mAP50-95(B),val/box_loss,val/cls_loss,val/dfl_loss,lr/pg0,lr/pg1,lr/pg2" >"$out"
for ((e = 1; e <= epochs; e++)); do
	map=$(awk -v l="$lr0" -v e="$e" 'BEGIN { printf "%.6g", l * 10 * e / 6 }')
	echo "$e,0.1,1,1,1,0.5,0.5,0.9,$map,1,1,0.5,0.01,0.01,0.01" >>"$out"
	sleep 0.15
done
SH
chmod +x "$WORK/slow-python"
PDB=$WORK/runs/prune/evolve.db
run_ye "$WORK/prune.log" --project "$WORK/runs" --name prune --data "$WORK/ds/data.yaml" --cfg "$CFG" \
	--trainer "ultralytics:$WORK/slow-python" --epochs 6 --generations 10 --seed 11 --prune median \
	--prune-warmup 1 --quiet
check_eq "the evolution with --prune median exits 0" 0 "$RC"
check "some candidates were pruned" \
	test "$(sql "$PDB" "SELECT count(*) FROM generations WHERE status = 'pruned'")" -ge 1
check_eq "a pruned candidate's fitness is its mAP50-95 at the cut (Ultralytics' fitness)" 0 \
	"$(sql "$PDB" "SELECT count(*) FROM generations WHERE status = 'pruned' AND (fitness != map
		OR error NOT LIKE 'pruned at epoch %median%')")"
check_eq "its epochs stop at the cut" 0 \
	"$(sql "$PDB" "SELECT count(*) FROM generations g WHERE status = 'pruned' AND
		(SELECT max(epoch) + 1 FROM epochs e WHERE e.generation = g.generation) != g.epochs_done")"

ye_finish
