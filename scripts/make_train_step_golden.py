#!/usr/bin/python3
"""Make tests/data/train_step_golden.safetensors: what YOLOv5 v7.0's own train.py does in
its first optimizer step, for tests/test_train_step.c.

Usage:
    /usr/bin/python3 scripts/make_train_step_golden.py YOLOV5_DIR OUT.safetensors [SHARED_DIR]

SHARED_DIR defaults to ../shared next to this checkout. The run: unmodified train.py,
through SHARED_DIR/reference/harness/yolo_launch.py (offline, tensorboard stubbed, 1 torch
thread), started from SHARED_DIR/reference/golden/model_v5n_nc2.safetensors (saved as a
checkpoint and given as --weights with --cfg models/yolov5n.yaml), on the first N_IMAGES
images of thermal-dogs-people's train split (a .txt list used as both train and val), hyp
scratch-low with every augmentation at 0, --img IMGSZ --batch-size BATCH --epochs 1 --rect
--noautoanchor --workers 0 --seed 0. Two batches, so two optimizer steps (warmup's
accumulate is 1 there) and two EMA updates: the first step moves only the biases (the
weights' warmup lr starts at 0), the second all parameters. The batches are the
letterboxed images with no random draw, which yolo-train's loader reproduces byte for byte.

The launcher's code is run with three hooks added (no YOLOv5 file changes): ModelEMA.update
keeps its EMA, smart_optimizer keeps the optimizer, and at on_train_batch_end of the last
iteration the model, EMA and SGD momentum buffers are captured in float32.

Stored, for each state_dict entry k (num_batches_tracked excepted) and each of
  model/k     model after the step - model.half().float() of the initial weights
  ema/k       EMA after its update - the initial weights (ModelEMA copies them before
              train.py rounds the model to half)
  momentum/k  SGD's momentum buffer after the step (parameters only): grad + decay * w
the F32 values at SAMPLES evenly spaced indices (i * (numel // count) for i < count, count =
min(numel, SAMPLES)) and, as <group>_norm/k (F64 [1]), the L2 norm of the whole tensor.
Also, from results.csv row 0 (5 significant digits as written), train F64 [3] (the mean
box, obj, cls loss of the two batches) and val F64 [3] (the EMA model's validation losses).
P, R and mAP are left out: for a model two steps from its initialisation they hang on the
order of near-equal confidences (rounding the same EMA to half moves val.py's mAP@.5 from
0.064 to 0.126), so they are no check of the code. Metadata: the settings, the image list, the YOLOv5 commit and torch.
"""
import csv
import hashlib
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from make_val_golden import write_safetensors  # noqa: E402

N_IMAGES = 16
BATCH = 8
IMGSZ = 160
SAMPLES = 256
ZERO_AUG = ('hsv_h', 'hsv_s', 'hsv_v', 'degrees', 'translate', 'scale', 'shear', 'perspective',
            'flipud', 'fliplr', 'mosaic', 'mixup', 'copy_paste')
MARKER = '# ---------------------------------------------------------------- run'

# Added to the launcher's code before it runs train.py (names it defines: os, torch, Callbacks).
HOOKS = r'''
import numpy as _np
import utils.torch_utils as _tu
_OUT = os.environ['YE_STEP_OUT']
_held = {}
_ema_update = _tu.ModelEMA.update
def _update(self, model):
    _held['ema'] = self
    return _ema_update(self, model)
_tu.ModelEMA.update = _update
_smart = _tu.smart_optimizer
def _optimizer(*a, **k):
    _held['optimizer'] = _smart(*a, **k)
    return _held['optimizer']
_tu.smart_optimizer = _optimizer
_cb_run = Callbacks.run
def _capture(self, hook, *a, **k):
    if hook == 'on_train_batch_end' and int(a[1]) == int(os.environ['YE_STEP_LAST']):
        model = a[0]
        out = {}
        for name, v in model.state_dict().items():
            out['model/' + name] = v.detach().float().numpy().copy()
        for name, v in _held['ema'].ema.state_dict().items():
            out['ema/' + name] = v.detach().float().numpy().copy()
        state = _held['optimizer'].state
        for name, p in model.named_parameters():
            out['momentum/' + name] = state[p]['momentum_buffer'].detach().float().numpy().copy()
        _np.savez(os.path.join(_OUT, 'step.npz'), **out)
    return _cb_run(self, hook, *a, **k)
Callbacks.run = _capture
'''


def read_safetensors(path):
    with open(path, 'rb') as f:
        n = struct.unpack('<Q', f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    types = {'F32': np.float32, 'F64': np.float64, 'I64': np.int64, 'U8': np.uint8}
    out = {}
    for name, e in header.items():
        if name != '__metadata__':
            b, end = e['data_offsets']
            out[name] = np.frombuffer(data[b:end], dtype=types[e['dtype']]).reshape(e['shape'])
    return out


def save_init(yolov5, init_st, out_pt):
    """The shared initial weights as a checkpoint train.py can load with --weights."""
    code = r'''
import sys, numpy as np, torch
sys.path.insert(0, sys.argv[1])
sys.path.insert(0, sys.argv[4])
from make_train_step_golden import read_safetensors
from models.yolo import Model
state = read_safetensors(sys.argv[2])
model = Model(sys.argv[1] + '/models/yolov5n.yaml', ch=3, nc=2)
sd = {k: torch.from_numpy(state[k].copy()) for k in model.state_dict()}
model.load_state_dict(sd)
torch.save({'model': model, 'epoch': -1}, sys.argv[3])
'''
    subprocess.run([sys.executable, '-c', code, yolov5, init_st, out_pt, HERE], check=True,
                   capture_output=True)


def samples(a):
    flat = a.reshape(-1)
    count = min(flat.size, SAMPLES)
    stride = flat.size // count
    return flat[np.arange(count) * stride].astype(np.float32)


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    yolov5, out = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    shared = os.path.abspath(sys.argv[3] if len(sys.argv) == 4 else os.path.join(HERE, '..', '..', 'shared'))
    launcher = os.path.join(shared, 'reference', 'harness', 'yolo_launch.py')
    init_st = os.path.join(shared, 'reference', 'golden', 'model_v5n_nc2.safetensors')
    dataset = os.path.join(shared, 'datasets', 'thermal-dogs-people')
    source = open(launcher).read()
    if MARKER not in source:
        sys.exit(f'{launcher}: the line "{MARKER}" is missing; cannot add the hooks')
    work = tempfile.mkdtemp(prefix='train-step-golden-')
    train_dir = os.path.join(dataset, 'images', 'train')
    images = sorted(f for f in os.listdir(train_dir) if f.endswith('.jpg'))[:N_IMAGES]
    with open(os.path.join(work, 'list.txt'), 'w') as f:
        f.writelines(os.path.join(train_dir, name) + '\n' for name in images)
    with open(os.path.join(work, 'data.yaml'), 'w') as f:
        f.write(f"path: {work}\ntrain: list.txt\nval: list.txt\nnc: 2\nnames: ['dog', 'person']\n")
    hyp_lines = []
    for line in open(os.path.join(shared, 'reference', 'training', 'A_low_s0', 'hyp.yaml')):
        key = line.split(':')[0].strip()
        hyp_lines.append(f'{key}: 0.0\n' if key in ZERO_AUG else line)
    with open(os.path.join(work, 'hyp.yaml'), 'w') as f:
        f.writelines(hyp_lines)
    save_init(yolov5, init_st, os.path.join(work, 'init.pt'))

    with open(os.path.join(work, 'launch.py'), 'w') as f:
        f.write(source.replace(MARKER, HOOKS + MARKER))
    args = ['--weights', os.path.join(work, 'init.pt'), '--cfg', 'models/yolov5n.yaml',
            '--hyp', os.path.join(work, 'hyp.yaml'), '--data', os.path.join(work, 'data.yaml'),
            '--img', str(IMGSZ), '--batch-size', str(BATCH), '--epochs', '1', '--rect',
            '--noautoanchor', '--workers', '0', '--seed', '0', '--device', 'cpu', '--noplots',
            '--project', work, '--name', 'run']
    env = dict(os.environ, YREF_THREADS='1', YE_STEP_OUT=work, YE_STEP_LAST=str(N_IMAGES // BATCH - 1))
    run = subprocess.run([sys.executable, os.path.join(work, 'launch.py'), yolov5, 'train.py'] + args,
                         env=env, capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f'train.py failed ({run.returncode}):\n' + (run.stdout + run.stderr)[-3000:])

    step = np.load(os.path.join(work, 'step.npz'))
    init = read_safetensors(init_st)
    tensors = {}
    for key in step.files:
        group, _, name = key.partition('/')
        if group not in ('model', 'ema', 'momentum') or name.endswith('num_batches_tracked'):
            continue
        start = init[name].astype(np.float64)
        if group == 'model':
            start = init[name].astype(np.float16).astype(np.float64)
        value = step[key].astype(np.float64)
        delta = value if group == 'momentum' else value - start
        tensors[key] = samples(delta)
        tensors[f'{group}_norm/{name}'] = np.array([np.linalg.norm(delta)], dtype=np.float64)
    with open(os.path.join(work, 'run', 'results.csv')) as f:
        row = [float(v) for v in list(csv.reader(f))[1]]
    tensors['train'] = np.array(row[1:4], dtype=np.float64)
    tensors['val'] = np.array(row[8:11], dtype=np.float64)

    commit = subprocess.run(['git', '-C', yolov5, 'rev-parse', 'HEAD'], capture_output=True,
                            text=True).stdout.strip() or 'unknown'
    import torch
    with open(init_st, 'rb') as f:
        init_sha = hashlib.sha256(f.read()).hexdigest()
    metadata = {'case': 'train_step', 'yolov5_commit': commit, 'torch': torch.__version__,
                'imgsz': str(IMGSZ), 'batch_size': str(BATCH), 'samples': str(SAMPLES),
                'images': ','.join(images), 'zero_hyps': ','.join(ZERO_AUG),
                'init': 'reference/golden/model_v5n_nc2.safetensors', 'init_sha256': init_sha}
    write_safetensors(out, tensors, metadata)
    print(f'{out}: {len(tensors)} tensors; train {row[1:4]}; val {row[8:11]}; work folder {work}')


if __name__ == '__main__':
    main()
