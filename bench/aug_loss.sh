#!/usr/bin/env bash
# bench/aug_loss.sh - the data pipelines compared where it matters: one
# fixed model's loss on yolo-train's augmented training batches and on
# YOLOv5 v7.0's (create_dataloader with augment=True, shuffle=True).
#
# usage: bench/aug_loss.sh BUILD_DIR YOLOV5_CHECKOUT WEIGHTS.pt [BATCHES]
#
# WEIGHTS.pt is a YOLOv5 training checkpoint of yolov5n for the 2 classes
# of ../shared/datasets/thermal-dogs-people (its EMA is used; converted
# with scripts/yolov5_to_safetensors.py for our side). The model runs in
# eval mode, so a batch's loss depends on the batch alone; ComputeLoss
# uses hyp.scratch-low scaled as train.py scales it (320, 3 levels, 2
# classes). Each side draws BATCHES batches of 16 at 320 (epochs chained,
# default 200) and prints the mean box, obj and cls loss with its standard
# error, and the mean targets per batch. The random streams differ (PCG
# against torch/numpy/random), so the means should agree within a few
# standard errors, not digit for digit. (YOLOv5 v7.0's loader seeds its
# sampler and workers from a fixed generator: its stream is the same for
# every --seed.)
set -euo pipefail
usage="usage: aug_loss.sh BUILD_DIR YOLOV5_CHECKOUT WEIGHTS.pt [BATCHES]"
build=${1:?$usage}
yolov5=${2:?$usage}
weights=${3:?$usage}
batches=${4:-200}
root=$(cd "$(dirname "$0")/.." && pwd)
shared=$root/../shared
py=/usr/bin/python3
work=$(mktemp -d /tmp/aug-loss.XXXXXX)
trap 'rm -rf "$work"' EXIT
dataset=$shared/datasets/thermal-dogs-people
hyp=$shared/reference/training/A_low_s0/hyp.yaml
# Each side gets its own copy of the images, so neither writes a label cache into the shared set.
mkdir -p "$work/data/images" "$work/data/labels"
cp -r "$dataset/images/train" "$work/data/images/"
cp -r "$dataset/labels/train" "$work/data/labels/"
printf 'path: %s\ntrain: images/train\nval: images/train\nnc: 2\nnames: [dog, person]\n' \
	"$work/data" >"$work/data.yaml"
"$py" "$root/scripts/yolov5_to_safetensors.py" --yolov5 "$yolov5" "$weights" \
	"$work/weights.safetensors" >/dev/null

echo "== yolo-train's loader =="
# passive OpenMP waiting, as yolo-train sets it: spinning threads starve the loader on few cores
OMP_WAIT_POLICY=PASSIVE "$build/bench/bench_aug_loss" "$root/models/yolov5n.yaml" "$work/weights.safetensors" \
	"$work/data.yaml" "$hyp" 320 16 "$batches" 0 2
echo "== YOLOv5's loader =="
(cd "$yolov5" && "$py" - "$weights" "$work/data/images/train" "$hyp" "$batches" <<'EOF'
import math
import sys
import types

import torch
import yaml

tb = types.ModuleType('torch.utils.tensorboard')  # YOLOv5 imports it; Debian has no tensorboard
tb.SummaryWriter = object
sys.modules['torch.utils.tensorboard'] = tb
sys.path.insert(0, '.')
from utils.dataloaders import create_dataloader  # noqa: E402
from utils.general import init_seeds  # noqa: E402
from utils.loss import ComputeLoss  # noqa: E402

weights, train, hyp_path, batches = sys.argv[1:5]
batches = int(batches)
torch.set_num_threads(2)
init_seeds(1, deterministic=True)
ckpt = torch.load(weights, map_location='cpu')
model = (ckpt.get('ema') or ckpt['model']).float().eval()
hyp = yaml.safe_load(open(hyp_path))
nl, nc, imgsz = 3, 2, 320
hyp['box'] *= 3 / nl
hyp['cls'] *= nc / 80 * 3 / nl
hyp['obj'] *= (imgsz / 640) ** 2 * 3 / nl
hyp['label_smoothing'] = 0.0
model.hyp, model.nc = hyp, nc
loss = ComputeLoss(model)
loader, _ = create_dataloader(train, imgsz, 16, 32, False, hyp=hyp, augment=True, workers=2,
                              shuffle=True, prefix='')
rows = []
while len(rows) < batches:
    for imgs, targets, _, _ in loader:
        with torch.no_grad():
            items = loss(model(imgs.float() / 255)[1], targets)[1]
        rows.append([float(v) for v in items] + [targets.shape[0]])
        if len(rows) == batches:
            break
for k, name in enumerate(('box', 'obj', 'cls', 'targets/batch')):
    v = [r[k] for r in rows]
    m = sum(v) / len(v)
    sd = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1))
    print(f'{name:<14} {m:.6g} se {sd / math.sqrt(len(v)):.3g}')
EOF
)
