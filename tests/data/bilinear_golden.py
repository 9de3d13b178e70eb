#!/usr/bin/python3
"""Golden for yolo-train's --multi-scale resize: torch.nn.functional.interpolate
(mode='bilinear', align_corners=False), as train.py calls it, on a seeded
random [1, 2, 5, 7] input, to three sizes. Writes bilinear.safetensors (F32)
next to this script. Run with Debian's /usr/bin/python3 (python3-torch)."""
import json, os, struct
import torch
import torch.nn.functional as F

torch.manual_seed(0)
x = torch.rand(1, 2, 5, 7)
tensors = {'input': x}
for h, w in [(8, 11), (3, 4), (12, 20)]:
    tensors[f'out_{h}x{w}'] = F.interpolate(x, size=(h, w), mode='bilinear', align_corners=False)
header, blobs, offset = {}, [], 0
for name, t in tensors.items():
    data = t.contiguous().numpy().astype('<f4').tobytes()
    header[name] = {'dtype': 'F32', 'shape': list(t.shape), 'data_offsets': [offset, offset + len(data)]}
    blobs.append(data)
    offset += len(data)
text = json.dumps(header, separators=(',', ':')).encode()
text += b' ' * (-len(text) % 8)
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'bilinear.safetensors')
with open(path, 'wb') as f:
    f.write(struct.pack('<Q', len(text)) + text + b''.join(blobs))
print(path)
