#!/usr/bin/python3
"""PyTorch YOLOv5 v7.0's training step on a GPU: the baseline of bench/gpu/run.sh.

    python3 yolov5_step.py YOLOV5_DIR [--model s] [--img 640] [--batch 64] [--amp fp16|bf16|off]
                           [--iters 20] [--warmup 5] [--nc 80]

One iteration is what train.py does per batch (device side only, no data
loader): forward under autocast, YOLOv5's ComputeLoss on fixed random
targets, backward through a GradScaler, unscale, clip_grad_norm_(10),
scaler.step(SGD) and scaler.update(), zero_grad. Inputs are random images
already on the GPU. Prints one JSON object: median ms per iteration,
images/s from the median, peak GPU memory allocated by PyTorch.
"""
import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import time

ap = argparse.ArgumentParser()
ap.add_argument('root')
ap.add_argument('--model', default='s')
ap.add_argument('--img', type=int, default=640)
ap.add_argument('--batch', type=int, default=64)
ap.add_argument('--amp', default='fp16', choices=['fp16', 'bf16', 'off'])
ap.add_argument('--iters', type=int, default=20)
ap.add_argument('--warmup', type=int, default=5)
ap.add_argument('--nc', type=int, default=80)
ap.add_argument('--device', default='cuda:0', help='cpu only to check this script on a machine without a GPU')
a = ap.parse_args()

import importlib.util  # noqa: E402
import types  # noqa: E402

import torch  # noqa: E402


def stub_missing():
    """YOLOv5's modules import IPython's display and seaborn for plots, which a training
    step never draws; a machine without network may lack them. Give each missing one an
    empty stand-in."""
    stand_ins = {'IPython': {'get_ipython': lambda: None}, 'IPython.display': {'display': lambda *args, **kwargs: None},
                 'seaborn': {}}
    missing = {name for name in ('IPython', 'seaborn') if importlib.util.find_spec(name) is None}
    for name, attrs in stand_ins.items():
        if name.split('.')[0] in missing:
            mod = types.ModuleType(name)
            mod.__dict__.update(attrs)
            sys.modules[name] = mod


stub_missing()

sys.path.insert(0, os.path.abspath(a.root))
from models.yolo import Model  # noqa: E402  (YOLOv5's own, unmodified)
from utils.general import LOGGER  # noqa: E402
from utils.loss import ComputeLoss  # noqa: E402

LOGGER.setLevel(40)
dev = torch.device(a.device)
cuda = dev.type == 'cuda'
torch.manual_seed(0)
with contextlib.redirect_stdout(io.StringIO()):
    model = Model(os.path.join(a.root, f'models/yolov5{a.model}.yaml'), ch=3, nc=a.nc).to(dev)
hyp = {'box': 0.05, 'cls': 0.5, 'cls_pw': 1.0, 'obj': 1.0, 'obj_pw': 1.0, 'anchor_t': 4.0,
       'fl_gamma': 0.0, 'label_smoothing': 0.0}
model.hyp = hyp
model.train()
loss_fn = ComputeLoss(model)
opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.937, nesterov=True)
scaler = torch.cuda.amp.GradScaler(enabled=cuda and a.amp == 'fp16')
dtype = {'fp16': torch.float16, 'bf16': torch.bfloat16, 'off': torch.float32}[a.amp]

g = torch.Generator().manual_seed(1)
images = torch.rand(a.batch, 3, a.img, a.img, generator=g).to(dev)
per_image = 8  # targets per image: [image, class, x, y, w, h], normalised
t = torch.rand(a.batch * per_image, 6, generator=g)
t[:, 0] = torch.arange(a.batch).repeat_interleave(per_image).float()
t[:, 1] = (t[:, 1] * a.nc).floor()
t[:, 4:] = t[:, 4:] * 0.3 + 0.02
targets = t.to(dev)


def step():
    with torch.autocast(dev.type, dtype=dtype if cuda else torch.bfloat16, enabled=a.amp != 'off'):
        pred = model(images)
        loss, _ = loss_fn(pred, targets)
    scaler.scale(loss).backward()
    scaler.unscale_(opt)
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=10.0)
    scaler.step(opt)
    scaler.update()
    opt.zero_grad()


def sync():
    if cuda:
        torch.cuda.synchronize()


for _ in range(a.warmup):
    step()
sync()
if cuda:
    torch.cuda.reset_peak_memory_stats()
times = []
for _ in range(a.iters):
    t0 = time.perf_counter()
    step()
    sync()
    times.append(time.perf_counter() - t0)
med = statistics.median(times)
print(json.dumps({'impl': 'pytorch-yolov5-v7.0', 'torch': torch.__version__, 'model': f'yolov5{a.model}',
                  'img': a.img, 'batch': a.batch, 'amp': a.amp, 'iters': a.iters,
                  'median_ms': med * 1e3, 'images_per_s': a.batch / med,
                  'peak_mem_mib': torch.cuda.max_memory_allocated() / 2**20 if cuda else None}))
