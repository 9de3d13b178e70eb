#!/usr/bin/python3
"""Make tests/data/val_golden.safetensors: val.py's per-image mapping and metrics, computed by
YOLOv5 v7.0's own functions, for tests/test_val.c.

Usage:
    /usr/bin/python3 scripts/make_val_golden.py YOLOV5_DIR tests/data/val_golden.safetensors

One batch of N_IMAGES letterboxed images (height x width as a rect batch) with random
normalised targets and random post-NMS detections (x1, y1, x2, y2, conf, cls in the
letterboxed image) is put through val.py's loop exactly as run() does it: targets to
pixels, per image scale_boxes of the detections and of xywh2xyxy(labels) with the image's
ratio_pad, process_batch, the stats tuples (empty detections keep only the label classes),
then ap_per_class and the means. The same is done with single_cls (classes set to 0).
Images 1, 3 and 5 are the edge cases: no detections, no labels, neither.

Tensors (F32 unless said): targets [nt, 6]; info [n, 6] F64 (h0, w0, ratio_h, ratio_w,
pad_w, pad_h); dets.<i> [n_i, 6] and predn.<i> (scaled) [n_i, 6]; labelsn.<i> [nl_i, 5];
correct.<i> U8 [n_i, 10]; for each variant V in (multi, single): V.summary F64 [4]
(mp, mr, map50, map), V.ap_class I64, V.p, V.r, V.ap50, V.ap F64 [k], V.maps F64 [nc],
V.nt I64 [nc]. Metadata: height, width, nc, and V.table, val.py's printed table.
"""
import json
import os
import struct
import sys
import types

import numpy as np
import torch

N_IMAGES = 7
NC = 3
HEIGHT, WIDTH = 256, 320


def import_yolov5(root):
    sys.path.insert(0, root)
    tb = types.ModuleType('torch.utils.tensorboard')

    class SummaryWriter:  # YOLOv5 imports it unconditionally; Debian has no tensorboard
        def __init__(self, *a, **k):
            pass

    tb.SummaryWriter = SummaryWriter
    sys.modules['torch.utils.tensorboard'] = tb
    import val
    from utils import general, metrics
    return val.process_batch, general.scale_boxes, general.xywh2xyxy, metrics.ap_per_class


def write_safetensors(path, tensors, metadata):
    """Our reader's layout: 8-byte elements first, then 4, then 1; header space-padded."""
    codes = {np.dtype('float64'): 'F64', np.dtype('int64'): 'I64',
             np.dtype('float32'): 'F32', np.dtype('uint8'): 'U8'}
    order = sorted(tensors, key=lambda k: -tensors[k].dtype.itemsize)
    header, blobs, offset = {}, [], 0
    for name in order:
        a = np.ascontiguousarray(tensors[name])
        b = a.tobytes()
        header[name] = {'dtype': codes[a.dtype], 'shape': list(a.shape),
                        'data_offsets': [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    header['__metadata__'] = metadata
    text = json.dumps(header, separators=(',', ':')).encode()
    text += b' ' * (-len(text) % 8)
    with open(path + '.tmp', 'wb') as f:
        f.write(struct.pack('<Q', len(text)) + text + b''.join(blobs))
    os.replace(path + '.tmp', path)


def make_inputs(rng):
    """Random letterbox geometry, targets and detections per image."""
    info, targets, dets = [], [], []
    for i in range(N_IMAGES):
        h0, w0 = int(rng.integers(200, 900)), int(rng.integers(200, 900))
        r = min(HEIGHT / h0, WIDTH / w0)
        h, w = round(h0 * r), round(w0 * r)
        pad_w, pad_h = (WIDTH - w) / 2, (HEIGHT - h) / 2
        info.append((h0, w0, h / h0, w / w0, pad_w, pad_h))
        nl = 0 if i in (3, 5) else int(rng.integers(1, 7))
        boxes = []
        for _ in range(nl):
            bw, bh = rng.uniform(0.05, 0.5) * w, rng.uniform(0.05, 0.5) * h
            cx = pad_w + rng.uniform(0, w - bw) + bw / 2
            cy = pad_h + rng.uniform(0, h - bh) + bh / 2
            cls = int(rng.integers(0, NC))
            targets.append((i, cls, cx / WIDTH, cy / HEIGHT, bw / WIDTH, bh / HEIGHT))
            boxes.append((cls, cx, cy, bw, bh))
        nd = 0 if i in (1, 5) else int(rng.integers(5, 40))
        d = []
        for k in range(nd):
            if boxes and k < 2 * len(boxes):  # near a label: true positives at some IoUs
                cls, cx, cy, bw, bh = boxes[k % len(boxes)]
                cx += rng.normal(0, 0.1) * bw
                cy += rng.normal(0, 0.1) * bh
                bw *= rng.uniform(0.7, 1.3)
                bh *= rng.uniform(0.7, 1.3)
                if rng.uniform() < 0.2:
                    cls = int(rng.integers(0, NC))
            else:  # anywhere, even over the padding and the border
                bw, bh = rng.uniform(5, 120), rng.uniform(5, 120)
                cx, cy = rng.uniform(-10, WIDTH + 10), rng.uniform(-10, HEIGHT + 10)
                cls = int(rng.integers(0, NC))
            conf = rng.uniform(0.001, 1) if k != 3 else 0.5  # a tie or two across images
            d.append((cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2, conf, cls))
        dets.append(np.array(d, dtype=np.float32).reshape(-1, 6))
    return info, np.array(targets, dtype=np.float32).reshape(-1, 6), dets


def run_val(fns, info, targets_np, dets, single_cls):
    """val.py run()'s loop and summary for one batch; returns tensors, and the table."""
    process_batch, scale_boxes, xywh2xyxy, ap_per_class = fns
    nc = 1 if single_cls else NC
    iouv = torch.linspace(0.5, 0.95, 10)
    targets = torch.from_numpy(targets_np.copy())
    if single_cls:
        targets[:, 1] = 0
    targets[:, 2:] *= torch.tensor((WIDTH, HEIGHT, WIDTH, HEIGHT))
    stats, per_image = [], []
    for si in range(N_IMAGES):
        pred = torch.from_numpy(dets[si].copy())
        labels = targets[targets[:, 0] == si, 1:]
        nl, npr = labels.shape[0], pred.shape[0]
        h0, w0, rh, rw, pw, ph = info[si]
        shape, ratio_pad = (h0, w0), ((rh, rw), (pw, ph))
        correct = torch.zeros(npr, 10, dtype=torch.bool)
        tbox = xywh2xyxy(labels[:, 1:5])
        scale_boxes((HEIGHT, WIDTH), tbox, shape, ratio_pad)
        labelsn = torch.cat((labels[:, 0:1], tbox), 1)
        if npr == 0:
            if nl:
                stats.append((correct, *torch.zeros((2, 0)), labels[:, 0]))
            per_image.append((pred, labelsn, correct))
            continue
        if single_cls:
            pred[:, 5] = 0
        predn = pred.clone()
        scale_boxes((HEIGHT, WIDTH), predn[:, :4], shape, ratio_pad)
        if nl:
            correct = process_batch(predn, labelsn, iouv)
        stats.append((correct, pred[:, 4], pred[:, 5], labels[:, 0]))
        per_image.append((predn, labelsn, correct))
    stats = [torch.cat(x, 0).numpy() for x in zip(*stats)]
    mp = mr = map50 = map_ = 0.0
    p = r = ap50 = ap = np.zeros(0)
    ap_class = np.zeros(0, dtype=np.int64)
    if len(stats) and stats[0].any():
        _, _, p, r, _, ap, ap_class = ap_per_class(*stats, plot=False, names={c: str(c) for c in range(nc)})
        ap50, ap = ap[:, 0], ap.mean(1)
        mp, mr, map50, map_ = p.mean(), r.mean(), ap50.mean(), ap.mean()
    nt = np.bincount(stats[3].astype(int), minlength=nc)
    maps = np.zeros(nc) + map_
    for i, c in enumerate(ap_class):
        maps[c] = ap[i]
    pf = '%22s' + '%11i' * 2 + '%11.3g' * 4
    lines = [('%22s' + '%11s' * 6) % ('Class', 'Images', 'Instances', 'P', 'R', 'mAP50', 'mAP50-95'),
             pf % ('all', N_IMAGES, nt.sum(), mp, mr, map50, map_)]
    if nc > 1:
        for i, c in enumerate(ap_class):
            lines.append(pf % (f'class{c}', N_IMAGES, nt[c], p[i], r[i], ap50[i], ap[i]))
    out = {'summary': np.array([mp, mr, map50, map_], dtype=np.float64),
           'ap_class': np.asarray(ap_class, dtype=np.int64), 'p': np.asarray(p, np.float64),
           'r': np.asarray(r, np.float64), 'ap50': np.asarray(ap50, np.float64),
           'ap': np.asarray(ap, np.float64), 'maps': maps.astype(np.float64),
           'nt': nt.astype(np.int64)}
    return out, per_image, '\n'.join(lines) + '\n'


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    fns = import_yolov5(sys.argv[1])
    rng = np.random.default_rng(20261127)
    info, targets, dets = make_inputs(rng)
    tensors = {'targets': targets, 'info': np.array(info, dtype=np.float64)}
    metadata = {'height': str(HEIGHT), 'width': str(WIDTH), 'nc': str(NC),
                'n_images': str(N_IMAGES)}
    for variant, single in (('multi', False), ('single', True)):
        out, per_image, table = run_val(fns, info, targets, dets, single)
        for k, v in out.items():
            tensors[f'{variant}.{k}'] = v
        metadata[f'{variant}.table'] = table
        if not single:
            for si, (predn, labelsn, correct) in enumerate(per_image):
                tensors[f'dets.{si}'] = dets[si]
                tensors[f'predn.{si}'] = predn.numpy().astype(np.float32)
                tensors[f'labelsn.{si}'] = labelsn.numpy().astype(np.float32)
                tensors[f'correct.{si}'] = correct.numpy().astype(np.uint8)
    write_safetensors(sys.argv[2], tensors, metadata)


if __name__ == '__main__':
    main()
