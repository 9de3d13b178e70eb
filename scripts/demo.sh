#!/usr/bin/env bash
# The main job: a short, real evolution on the CPU. gen-dataset draws a
# small detection dataset (shapes on textured backgrounds, exact boxes), and
# yolo-evolve breeds hyperparameters for yolov5n on it, each candidate a
# real yolo-train run (YOLOv5 v7.0's training and validation in C).
#
# Knobs (environment): GENERATIONS (6), EPOCHS (20), PARALLEL (2), DEMO_DIR.
# Swap --trainer for yolov5:/path/to/yolov5 to drive real YOLOv5 instead.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${BUILD:-$root/build}
out=${DEMO_DIR:-$root/runs/demo}
rm -rf "$out"
mkdir -p "$out"
echo "== a generated dataset: shapes (one class), 256 train / 64 val images of 128 px =="
"$build/tools/gen-dataset" "$out/data" --train 256 --val 64 --size 128 --classes 1 --seed 0
echo
echo "== evolving yolov5n hyperparameters (each candidate trains ${EPOCHS:-20} epochs at 128 px) =="
"$build/evolve/yolo-evolve" --generations "${GENERATIONS:-6}" --epochs "${EPOCHS:-20}" \
	--parallel "${PARALLEL:-2}" --batch-size 16 --imgsz 128 --seed 1 \
	--cfg "$root/models/yolov5n.yaml" --data "$out/data/data.yaml" \
	--project "$out" --name evolve
echo
echo "== best hyperparameters ($out/evolve/hyp_evolve.yaml) =="
head -n 12 "$out/evolve/hyp_evolve.yaml"
echo
echo "== the history is plain SQLite =="
sqlite3 -header -column "$out/evolve/evolve.db" \
	"SELECT generation, parent, round(map50, 3) AS map50, round(fitness, 4) AS fitness,
	        round(seconds, 1) AS seconds, lr0, momentum, mosaic FROM generations ORDER BY generation"
echo
echo "plots: $out/evolve/evolve.png and $out/evolve/fitness.png; more: yolo-evolve status --db $out/evolve/evolve.db"
echo "a candidate's own files: $out/evolve/candidates/g00000/ (results.csv, weights/best.safetensors)"
