#!/usr/bin/env bash
# bench/train_parity.sh - yolo-train and YOLOv5 v7.0's train.py from the
# same initial weights on the same batches: the whole training step
# (forward, loss, backward, accumulation, warmup, SGD, EMA, validation)
# compared epoch by epoch, with YOLOv5's own thread-count spread as the
# noise floor.
#
# usage: bench/train_parity.sh BUILD_DIR YOLOV5_CHECKOUT [EPOCHS] [THREADS...]
#
# The data are ../shared/datasets/thermal-dogs-people at 320, batch 16,
# hyp.scratch-low with every augmentation set to 0 and --rect (train.py
# then turns shuffling off and mosaic off), --noautoanchor: both trainers
# see the same images in the same order. The initial weights are YOLOv5's
# own seed-0 model (init_seeds(1) then Model(yolov5n.yaml, nc=2), as
# train.py builds it), saved as a checkpoint for train.py and converted
# with scripts/yolov5_to_safetensors.py for yolo-train. Each trainer runs
# once per thread count (default 1 and 2). Training is chaotic (a 1e-7
# change grows), so the check is not equality: the spread between
# yolo-train and YOLOv5 at the same thread count should be no wider than
# the spread between YOLOv5's own runs at different thread counts.
# KEEP=1 keeps the runs (the folder is printed).
set -euo pipefail
build=${1:?usage: train_parity.sh BUILD_DIR YOLOV5_CHECKOUT [EPOCHS] [THREADS...]}
yolov5=${2:?usage: train_parity.sh BUILD_DIR YOLOV5_CHECKOUT [EPOCHS] [THREADS...]}
epochs=${3:-10}
shift $(($# < 3 ? $# : 3))
threads=("$@")
((${#threads[@]})) || threads=(1 2)
root=$(cd "$(dirname "$0")/.." && pwd)
shared=$root/../shared
py=/usr/bin/python3
work=$(mktemp -d /tmp/train-parity.XXXXXX)
if [[ -n ${KEEP:-} ]]; then echo "runs kept in $work"; else trap 'rm -rf "$work"' EXIT; fi

data=$shared/datasets/thermal-dogs-people/data.yaml
# YOLOv5 resolves a relative `path:` against its own folder: give it an absolute one
sed "s|^path: .*|path: $(dirname "$data")|" "$data" >"$work/data.yaml"
sed -E 's/^(hsv_h|hsv_s|hsv_v|degrees|translate|scale|shear|perspective|flipud|fliplr|mosaic|mixup|copy_paste): .*/\1: 0.0/' \
	"$shared/reference/training/A_low_s0/hyp.yaml" >"$work/hyp.yaml"

(cd "$yolov5" && "$py" - "$work/init.pt" <<'EOF' >/dev/null)
import sys
import torch
from models.yolo import Model
from utils.general import init_seeds
init_seeds(1, deterministic=True)  # train.py: init_seeds(opt.seed + 1 + RANK)
model = Model('models/yolov5n.yaml', ch=3, nc=2)
torch.save({'model': model, 'ema': None, 'epoch': -1}, sys.argv[1])
EOF
"$py" "$root/scripts/yolov5_to_safetensors.py" --yolov5 "$yolov5" --key model "$work/init.pt" \
	"$work/init.safetensors" >/dev/null

common=(--cfg models/yolov5n.yaml --hyp "$work/hyp.yaml" --data "$work/data.yaml" --batch-size 16
	--epochs "$epochs" --rect --noautoanchor --workers 0 --seed 0 --project "$work")
for t in "${threads[@]}"; do
	YREF_THREADS=$t "$py" "$shared/reference/harness/yolo_launch.py" "$yolov5" train.py \
		--weights "$work/init.pt" --img 320 --device cpu --noplots --name "y5-$t" \
		"${common[@]}" >"$work/y5-$t.log" 2>&1 ||
		{ tail -n 20 "$work/y5-$t.log"; exit 1; }
	(cd "$root" && "$build/trainer/yolo-train" --weights "$work/init.safetensors" --imgsz 320 \
		--threads "$t" --name "ours-$t" "${common[@]}" >"$work/ours-$t.log" 2>&1) ||
		{ tail -n 20 "$work/ours-$t.log"; exit 1; }
done

# The columns compared: train box/obj/cls (2-4), val box/obj/cls (9-11).
cols="2 3 4 9 10 11"
names=(train/box train/obj train/cls val/box val/obj val/cls)
# table TITLE A B: the compared columns of two results.csv side by side, A/B
table() {
	printf '\nper epoch: %s\n%5s' "$1" epoch
	for n in "${names[@]}"; do printf '%22s' "$n"; done
	printf '\n'
	paste -d, "$2" "$3" | tail -n +2 | tr -d ' ' | awk -F, -v cols="$cols" '
		{ n = split(cols, c, " "); printf "%5d", $1
		  for (k = 1; k <= n; k++) printf "%11.5g/%-10.5g", $(c[k]), $(c[k] + 14); printf "\n" }'
}
# maxrel A B: the largest |a - b| / |b| over the compared columns and all epochs, in %
maxrel() {
	paste -d, "$1" "$2" | tail -n +2 | tr -d ' ' | awk -F, -v cols="$cols" '
		{ n = split(cols, c, " ")
		  for (k = 1; k <= n; k++) { d = $(c[k]) - $(c[k] + 14); if (d < 0) d = -d
		    r = d / ($(c[k] + 14) < 0 ? -$(c[k] + 14) : $(c[k] + 14)); if (r > m) m = r } }
		END { printf "%.2f", 100 * m }'
}
csv() { echo "$work/$1/results.csv"; }
for t in "${threads[@]}"; do
	table "yolo-train / YOLOv5 at $t thread(s)" "$(csv "ours-$t")" "$(csv "y5-$t")"
done
for ((i = 1; i < ${#threads[@]}; i++)); do
	table "YOLOv5 at ${threads[i]} / at ${threads[0]} thread(s)" "$(csv "y5-${threads[i]}")" \
		"$(csv "y5-${threads[0]}")"
done
printf '\nlargest relative difference over %s epochs, train and val losses:\n' "$epochs"
for t in "${threads[@]}"; do
	printf '  yolo-train vs YOLOv5, %s thread(s): %s %%\n' "$t" \
		"$(maxrel "$(csv "ours-$t")" "$(csv "y5-$t")")"
done
for ((i = 1; i < ${#threads[@]}; i++)); do
	a=${threads[0]} b=${threads[i]}
	printf '  YOLOv5 %s vs %s threads (noise floor): %s %%\n' "$a" "$b" \
		"$(maxrel "$(csv "y5-$b")" "$(csv "y5-$a")")"
	printf '  yolo-train %s vs %s threads: %s %%\n' "$a" "$b" \
		"$(maxrel "$(csv "ours-$b")" "$(csv "ours-$a")")"
done
