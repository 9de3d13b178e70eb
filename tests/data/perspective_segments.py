#!/usr/bin/python3
"""Write tests/data/perspective_segments.bin: YOLOv5 v7.0's random_perspective
with polygon segments (load_mosaic's call) and the same call without them.

Runs /tmp/yolov5's own utils.augmentations.random_perspective (commit of
tests/golden/yolov5/augment.yaml) with random.uniform replaced by
lo + frac * (hi - lo) for fixed fractions, on a 96x96 canvas with border
(-24, -24) as a mosaic of s = 48 has it. Source byte i of the HWC canvas is
((i * 2654435761) >> 13) & 255 (not stored; the test recomputes it).

Little-endian layout: int32 cases; per case: int32 width height border
use_segments n_targets n_segments; float64 degrees translate scale shear
perspective; float64 draws[8] (random.uniform values in call order);
float32 targets[n][5] (cls x1 y1 x2 y2); per segment int32 points then
float32 xy[points][2]; int32 n_out; float32 out_targets[n_out][5]; the
output image bytes (HWC BGR, (h + 2 border) x (w + 2 border)).
Run with the Python that has cv2 4.6: /usr/bin/python3 perspective_segments.py [out]
"""
import random
import struct
import sys

import numpy as np

sys.path.insert(0, '/tmp/yolov5')
from utils import augmentations  # noqa: E402

SIZE, BORDER = 96, -24


def polygons():
    tri = [(30, 28), (62, 34), (41, 66)]
    c, half, a = np.array([58.0, 60.0]), np.array([14.0, 6.0]), np.radians(30)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * half
    rect = corners @ rot.T + c
    # mostly outside the 48x48 window: its visible part's box is 7% (case 1)
    # and 2% (case 2) of its box times s^2, so area_thr 0.01 keeps it, 0.10 not
    hexa = [(0, 27), (9, 1), (26, 0), (30, 17), (23, 27), (9, 33)]
    gone = [(0, 0), (10, 0), (0, 12)]  # never visible
    seven = [(70, 70), (80, 64), (92, 74), (94, 88), (84, 94), (72, 90), (66, 80)]
    corner = [(0, 0), (31, 0), (0, 31)]  # its tip alone shows: kept at 1%, not 10%
    polys = [tri, rect, hexa, gone, seven, corner]
    return [np.clip(np.array(p, dtype=np.float32), 0, SIZE) for p in polys]


def run(case):
    n = SIZE * SIZE * 3
    i = np.arange(n, dtype=np.uint64)
    im = ((i * np.uint64(2654435761)) >> np.uint64(13)).astype(np.uint8).reshape(SIZE, SIZE, 3)
    segs = polygons()
    targets = np.array([[k % 3, s[:, 0].min(), s[:, 1].min(), s[:, 0].max(), s[:, 1].max()]
                        for k, s in enumerate(segs)], dtype=np.float32)
    hyp = case['hyp']
    ranges = [(-hyp[4], hyp[4])] * 2 + [(-hyp[0], hyp[0]), (1 - hyp[2], 1 + hyp[2])] + \
        [(-hyp[3], hyp[3])] * 2 + [(0.5 - hyp[1], 0.5 + hyp[1])] * 2
    draws = [lo + f * (hi - lo) for (lo, hi), f in zip(ranges, case['frac'])]
    queue = list(draws)
    saved = random.uniform
    random.uniform = lambda lo, hi: queue.pop(0)
    try:
        given = [s.copy() for s in segs] if case['segments'] else ()
        out, kept = augmentations.random_perspective(im, targets.copy(), given, *hyp,
                                                     border=(BORDER, BORDER))
    finally:
        random.uniform = saved
    assert not queue and kept.dtype == np.float32 and out.dtype == np.uint8
    blob = struct.pack('<6i', SIZE, SIZE, BORDER, int(case['segments']), len(targets),
                       len(segs) if case['segments'] else 0)
    blob += struct.pack('<5d', *hyp) + struct.pack('<8d', *draws) + targets.tobytes()
    if case['segments']:
        for s in segs:
            blob += struct.pack('<i', len(s)) + s.tobytes()
    blob += struct.pack('<i', len(kept)) + kept.tobytes() + out.tobytes()
    print(case['name'], 'kept', kept.tolist())
    return blob


# degrees translate scale shear perspective
CASES = [
    dict(name='affine+segments', segments=True, hyp=(10, 0.1, 0.5, 2, 0.0),
         frac=(0.5, 0.5, 0.7, 0.35, 0.6, 0.3, 0.45, 0.55)),
    dict(name='perspective+segments', segments=True, hyp=(10, 0.1, 0.5, 2, 0.002),
         frac=(0.8, 0.3, 0.2, 0.4, 0.35, 0.7, 0.6, 0.4)),
    dict(name='affine, boxes only', segments=False, hyp=(10, 0.1, 0.5, 2, 0.0),
         frac=(0.5, 0.5, 0.7, 0.35, 0.6, 0.3, 0.45, 0.55)),
]
blob = struct.pack('<i', len(CASES)) + b''.join(run(c) for c in CASES)
path = sys.argv[1] if len(sys.argv) > 1 else 'perspective_segments.bin'
open(path, 'wb').write(blob)
print(f'{len(CASES)} cases, {len(blob)} bytes')
