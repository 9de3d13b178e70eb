#!/usr/bin/python3
"""Write tests/data/resize_area.bin: cv2.resize(..., INTER_AREA) outputs.

Each case: int32 little-endian src_w src_h dst_w dst_h, then the dst bytes
(HWC BGR). The source pixels are not stored: byte i of the HWC source is
((i * 2654435761) >> 13) & 255, which test_loader.c recomputes. Cases are
load_image shrinks (long side to imgsz), integer factors 2..5 and odd
widths. Run with the Python that has cv2 4.6: /usr/bin/python3 resize_area.py
"""
import struct
import sys

import cv2
import numpy as np

cases = [(200, 150, 64, 48), (120, 90, 64, 48), (81, 61, 64, 48), (100, 30, 64, 19),
         (200, 100, 100, 50), (70, 34, 35, 17), (96, 72, 32, 24), (128, 40, 64, 20),
         (99, 13, 33, 13), (35, 35, 7, 7), (20, 60, 4, 12), (133, 101, 64, 48),
         (250, 188, 64, 48), (321, 17, 320, 16), (65, 64, 64, 63), (51, 97, 33, 64),
         (160, 107, 64, 42), (107, 160, 42, 64), (150, 113, 96, 72), (97, 89, 31, 28),
         (3, 3, 1, 1), (7, 5, 2, 1)]
out = bytearray()
for sw, sh, dw, dh in cases:
    i = np.arange(sh * sw * 3, dtype=np.uint64)
    src = ((i * np.uint64(2654435761)) >> np.uint64(13)).astype(np.uint8).reshape(sh, sw, 3)
    dst = cv2.resize(src, (dw, dh), interpolation=cv2.INTER_AREA)
    out += struct.pack('<4i', sw, sh, dw, dh) + dst.tobytes()
path = sys.argv[1] if len(sys.argv) > 1 else 'resize_area.bin'
open(path, 'wb').write(out)
print(f'{len(cases)} cases, {len(out)} bytes, cv2 {cv2.__version__}')
