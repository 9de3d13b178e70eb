#!/usr/bin/python3
"""Write a YOLOv5 checkpoint's model state_dict as a .safetensors file for yolo-train.

Usage:
    /usr/bin/python3 scripts/yolov5_to_safetensors.py [--yolov5 DIR] [--key auto|ema|model]
        [--keep-dtype] [--check] IN.pt OUT.safetensors

IN.pt is what YOLOv5 v7.0's train.py saves ({'model': ..., 'ema': ..., 'epoch': ...,
'best_fitness': ...}), a pickled Model, or a plain state_dict. Unpickling a Model needs
YOLOv5's source: pass its checkout as --yolov5 (e.g. `git -C <mirror> archive v7.0 | tar -x`).
--key picks the model in a training checkpoint: 'auto' takes 'ema' when it is set, else
'model', as YOLOv5's attempt_load does.

Tensor names are YOLOv5's own state_dict keys (model.0.conv.weight, model.0.bn.running_var,
model.0.bn.num_batches_tracked, model.24.m.0.bias, model.24.anchors, ...). YOLOv5 saves
checkpoints in half precision; floating tensors are written as F32 unless --keep-dtype
(then F16/BF16/F64 stay). int64 -> I64, bool/uint8 -> U8.

The file is standard safetensors, laid out as ../shared/reference/make_golden.py's writer
does and as yolo-train's reader requires: u64 little-endian header length N, N bytes of
compact JSON space-padded to a multiple of 8, then the data with 8-byte tensors first, then
4, 2, 1 (so each is naturally aligned and they tile the data section). Metadata:
source, yolov5_key, torch, and when the checkpoint has them epoch, best_fitness and
model_yaml (the model's yaml dict as YAML text, when PyYAML is available). It is written
to a temporary file and renamed. --check reads the file back and compares every tensor.

This script is a tool for use by hand and in the reference tests; it needs torch and
numpy, not the `safetensors` package.
"""
import argparse
import json
import os
import struct
import sys
import types

import numpy as np
import torch

# torch dtype -> (safetensors dtype, element size)
DTYPES = {
    torch.float64: ('F64', 8),
    torch.float32: ('F32', 4),
    torch.float16: ('F16', 2),
    torch.bfloat16: ('BF16', 2),
    torch.int64: ('I64', 8),
    torch.uint8: ('U8', 1),
    torch.bool: ('U8', 1),
}


def stub_tensorboard():
    """YOLOv5 v7.0 imports SummaryWriter unconditionally; Debian has no tensorboard."""
    try:
        import torch.utils.tensorboard  # noqa: F401
    except Exception:
        tb = types.ModuleType('torch.utils.tensorboard')

        class SummaryWriter:  # no-op stand-in
            def __init__(self, *a, **k):
                pass

            def __getattr__(self, name):
                return lambda *a, **k: None

        tb.SummaryWriter = SummaryWriter
        sys.modules['torch.utils.tensorboard'] = tb


def pick_model(ckpt, key):
    """(state_dict, chosen key, checkpoint dict or None, Module or None) from torch.load."""
    if isinstance(ckpt, torch.nn.Module):
        return ckpt.state_dict(), 'module', None, ckpt
    if not isinstance(ckpt, dict):
        sys.exit(f'unsupported checkpoint object {type(ckpt).__name__}')
    if all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        return ckpt, 'state_dict', None, None
    if key == 'auto':
        key = 'ema' if ckpt.get('ema') is not None else 'model'
    model = ckpt.get(key)
    if model is None:
        sys.exit(f'checkpoint has no {key!r} model (keys: {sorted(ckpt)})')
    state = model.state_dict() if isinstance(model, torch.nn.Module) else model
    return state, key, ckpt, model if isinstance(model, torch.nn.Module) else None


def tensor_bytes(t):
    """Raw little-endian bytes of a CPU tensor."""
    t = t.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:
        a = t.view(torch.int16).numpy()
    elif t.dtype == torch.bool:
        a = t.to(torch.uint8).numpy()
    else:
        a = t.numpy()
    return a.astype(a.dtype.newbyteorder('<'), copy=False).tobytes()


def convert(state, keep_dtype):
    """name -> tensor, floating tensors as float32 unless keep_dtype."""
    out = {}
    for name, t in state.items():
        if not isinstance(t, torch.Tensor):
            sys.exit(f'{name}: not a tensor ({type(t).__name__})')
        if t.is_floating_point() and not keep_dtype:
            t = t.float()
        if t.dtype not in DTYPES:
            sys.exit(f'{name}: dtype {t.dtype} has no safetensors equivalent here')
        out[name] = t
    return out


def write_safetensors(path, tensors, metadata):
    """Layout as make_golden.py: 8-byte tensors first (stable), compact JSON, space padding."""
    items = sorted(tensors.items(), key=lambda kv: -DTYPES[kv[1].dtype][1])
    header, blobs, offset = {}, [], 0
    for name, t in items:
        b = tensor_bytes(t)
        header[name] = {'dtype': DTYPES[t.dtype][0], 'shape': list(t.shape),
                        'data_offsets': [offset, offset + len(b)]}
        offset += len(b)
        blobs.append(b)
    if metadata:
        header['__metadata__'] = {str(k): str(v) for k, v in metadata.items()}
    h = json.dumps(header, separators=(',', ':')).encode()
    h += b' ' * ((8 - len(h) % 8) % 8)
    tmp = f'{path}.tmp{os.getpid()}'
    with open(tmp, 'wb') as f:
        f.write(struct.pack('<Q', len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def check(path, tensors, metadata):
    """Read the file back (independently of the writer) and compare."""
    with open(path, 'rb') as f:
        blob = f.read()
    n = struct.unpack('<Q', blob[:8])[0]
    assert n % 8 == 0 and 8 + n <= len(blob), 'bad header length'
    header = json.loads(blob[8:8 + n])
    assert header.pop('__metadata__', {}) == {k: str(v) for k, v in metadata.items()}
    assert set(header) == set(tensors), 'tensor names differ'
    end = 0
    for name, e in sorted(header.items(), key=lambda kv: kv[1]['data_offsets']):
        b, e_ = e['data_offsets']
        assert b == end, f'{name}: offsets do not tile'
        end = e_
        t = tensors[name]
        assert e['shape'] == list(t.shape) and e['dtype'] == DTYPES[t.dtype][0], name
        assert blob[8 + n + b:8 + n + e_] == tensor_bytes(t), f'{name}: data differs'
    assert 8 + n + end == len(blob), 'trailing bytes'
    print(f'{path}: checked {len(header)} tensors')


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('input')
    ap.add_argument('output')
    ap.add_argument('--yolov5', help='YOLOv5 source folder (to unpickle its Model class)')
    ap.add_argument('--key', choices=('auto', 'ema', 'model'), default='auto')
    ap.add_argument('--keep-dtype', action='store_true', help='keep half/double floats')
    ap.add_argument('--check', action='store_true', help='read the output back and compare')
    args = ap.parse_args()
    if args.yolov5:
        sys.path.insert(0, os.path.abspath(args.yolov5))
        stub_tensorboard()
    ckpt = torch.load(args.input, map_location='cpu')
    state, key, info, model = pick_model(ckpt, args.key)
    tensors = convert(state, args.keep_dtype)
    metadata = {'source': os.path.basename(args.input), 'yolov5_key': key,
                'torch': torch.__version__}
    if info is not None:
        for k in ('epoch', 'best_fitness'):
            if info.get(k) is not None:
                v = info[k]
                metadata[k] = repr(float(v)) if k == 'best_fitness' else str(int(v))
    if model is not None and isinstance(getattr(model, 'yaml', None), dict):
        try:
            import yaml
            metadata['model_yaml'] = yaml.safe_dump(model.yaml, sort_keys=False)
        except ImportError:
            pass
    write_safetensors(args.output, tensors, metadata)
    print(f'{args.output}: {len(tensors)} tensors from {args.input} ({key})')
    if args.check:
        check(args.output, tensors, metadata)


if __name__ == '__main__':
    main()
