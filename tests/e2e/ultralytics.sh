#!/usr/bin/env bash
# ultralytics.sh - yolo-evolve drives the real ultralytics package (YOLOv8 /
# YOLO11 training) offline on the CPU: a tiny model yaml trained from scratch
# on a gen-dataset dataset, 2 epochs per candidate, 3 generations, 2 at once,
# the evolver SIGKILLed while trainers run and --resume'd; then the database
# (space, Ultralytics keys, dfl results, epochs), the fitness and
# `export --best` (a cfg the package accepts) are checked.
#
# The package comes from a cached venv over Debian's torch
# ($HOME/.cache/yolo-evolve-test-venv/ultralytics-VERSION, or
# $YE_ULTRALYTICS_VENV); it is installed with pip on the first run. No
# package, no pass: this test fails (never skips) when it cannot be had.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
: "${GEN_DATASET:?set GEN_DATASET to the built gen-dataset}"

UL_VERSION=8.4.190
VENV=${YE_ULTRALYTICS_VENV:-$HOME/.cache/yolo-evolve-test-venv/ultralytics-$UL_VERSION}
PY=$VENV/bin/python
# nothing may reach the network while training: no hub, no assets, no fonts
export YOLO_OFFLINE=1 YOLO_CONFIG_DIR=$WORK/ultralytics-config OMP_NUM_THREADS=1

section "the ultralytics package $UL_VERSION"
if ! "$PY" -c "import ultralytics" >/dev/null 2>&1; then
	note "installing it into $VENV (once)"
	rm -rf -- "$VENV"
	mkdir -p "$(dirname "$VENV")"
	if ! /usr/bin/python3 -m venv --system-site-packages "$VENV" >"$WORK/venv.log" 2>&1 ||
		! "$VENV/bin/pip" install -q --no-deps "ultralytics==$UL_VERSION" ultralytics-thop polars \
			>>"$WORK/venv.log" 2>&1; then
		fail "cannot install ultralytics $UL_VERSION (needs Debian's python3-torch etc.: scripts/install-deps.sh)"
		show_file "$WORK/venv.log"
		ye_finish
	fi
fi
check_eq "ultralytics imports, version $UL_VERSION" "$UL_VERSION" \
	"$("$PY" -c 'import ultralytics; print(ultralytics.__version__)' 2>"$WORK/import.log")"

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

section "export --best: a cfg the package takes"
run_ye "$WORK/export.log" export --db "$DB" --best "$WORK/best.yaml"
check_eq "export --best exits 0" 0 "$RC"
check_eq "26 keys, the Tuner's space" 26 "$(grep -c '^[a-z_0-9]*: ' "$WORK/best.yaml")"
check_eq "close_mosaic written as an integer" 1 "$(grep -c '^close_mosaic: [0-9]*$' "$WORK/best.yaml")"
check "the package's get_cfg accepts it (yolo train cfg=...)" \
	"$PY" -c "import sys; from ultralytics.cfg import get_cfg; get_cfg(sys.argv[1])" "$WORK/best.yaml"
run_ye "$WORK/csv.log" export --db "$DB" --csv "$WORK/evolve.csv"
check "export --csv (YOLOv5's evolve.csv) refuses the ultralytics space" test "$RC" -ne 0

ye_finish
