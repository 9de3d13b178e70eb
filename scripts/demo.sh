#!/usr/bin/env bash
# The main job: a short, real evolution on a demo setting.
#
# Until the native trainer (yolo-train) lands, the trainer here is the
# fixture trainer from tests/: it writes YOLOv5's results.csv from a known
# smooth function of the hyperparameters (see tests/fixture_trainer.c), so
# the whole evolver runs for real: breeding, database, subprocesses, resume,
# exports. Swap --trainer for yolov5:/path/to/yolov5 to drive real YOLOv5.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${BUILD:-$root/build}
out=${DEMO_DIR:-$root/runs/demo}
rm -rf "$out"
mkdir -p "$out"
export FIXTURE_EPOCH_MS=${FIXTURE_EPOCH_MS:-20}
"$build/evolve/yolo-evolve" --generations "${GENERATIONS:-40}" --epochs 5 --parallel 2 \
	--seed 1 --data demo --project "$out" --name evolve \
	--trainer "$build/tests/fixture_trainer --hyp {hyp} --epochs {epochs} --save-dir {save_dir} --seed {seed}" \
	--quiet
echo
echo "== best hyperparameters ($out/evolve/hyp_evolve.yaml) =="
head -n 12 "$out/evolve/hyp_evolve.yaml"
echo
echo "== the history is plain SQLite =="
sqlite3 -header -column "$out/evolve/evolve.db" \
	"SELECT generation, parent, round(fitness, 5) AS fitness, lr0, momentum, mosaic FROM best LIMIT 5"
echo
echo "plots: $out/evolve/evolve.png and $out/evolve/fitness.png; more: yolo-evolve status --db $out/evolve/evolve.db"
