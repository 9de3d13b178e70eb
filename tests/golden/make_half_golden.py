#!/usr/bin/python3
"""Golden bit patterns of torch's float32 -> float16 / bfloat16 casts and back, for test_half.

Run with Debian 12's python3-torch (1.13): /usr/bin/python3 tests/golden/make_half_golden.py
It writes tests/golden/half/casts.txt, hexadecimal bit patterns, one case a line:
  cast F32 F16 BF16 F16F32 BF16F32   x = the float32 of bits F32; x.half() has bits F16,
                                     x.bfloat16() BF16, x.half().float() F16F32 and
                                     x.bfloat16().float() BF16F32
  back P F16F32 BF16F32              the float32 bits of the float16 and of the bfloat16
                                     of bits P, .float()
Every conversion is one call on a 1-D tensor of all the cases (torch's vectorised CPU
kernel; torch 1.13's 0-dim scalar path differs on NaN: it casts NaN to bfloat16 0x7fc0
where the tensor kernel gives 0xffff), torch.set_num_threads(1).

The float32 cases: zeros, infinities, NaNs (payloads, signalling, negative); for each
format its largest finite value, the overflow threshold and its neighbours; every tie
(the midpoint of two neighbours) and the floats just below and above it, around values
chosen across the whole range (float16 subnormals and bfloat16's float32 subnormals
included); underflow to zero; random normals at scales from 1e-8 to 1e30; random bit
patterns. Duplicates are dropped, the order is kept.
"""
import os
import sys

import numpy as np
import torch

F32 = np.float32


def bits_to_f32(bits):
    return np.array(bits, dtype=np.uint32).view(np.float32)


def f32_to_bits(values):
    return np.array(values, dtype=np.float32).view(np.uint32)


def neighbours(value):
    """value and the float32s just below and above it."""
    v = F32(value)
    with np.errstate(over="ignore"):  # past the largest float32: inf, wanted
        return [np.nextafter(v, F32(-np.inf)), v, np.nextafter(v, F32(np.inf))]


def ties(lo_bits, hi_bits, fmt_to_f32):
    """The midpoint of two neighbouring half values (exact in float32) and its neighbours."""
    lo, hi = fmt_to_f32(lo_bits), fmt_to_f32(hi_bits)
    mid = F32((np.float64(lo) + np.float64(hi)) / 2)
    assert np.float64(mid) == (np.float64(lo) + np.float64(hi)) / 2
    return neighbours(mid)


def fp16_value(bits):
    return np.array([bits], dtype=np.uint16).view(np.float16).astype(np.float32)[0]


def bf16_value(bits):
    return bits_to_f32([bits << 16])[0]


def cases():
    rng = np.random.RandomState(0)
    out = [F32(0.0), F32(-0.0), F32(np.inf), F32(-np.inf)]
    out += list(bits_to_f32([0x7FC00000, 0xFFC00000, 0x7F800001, 0x7FFFFFFF, 0xFF812345,
                             0x7FA00000, 0x7FC00001, 0xFFFFFFFF]))
    # float16: largest finite 65504, overflow from 65520 (the tie with 65536) up
    for v in [65504.0, 65519.0, 65520.0, 65536.0, 1e5, 3.4028235e38]:
        out += neighbours(v) + [F32(-v)]
    # float16 subnormals and underflow: 2^-24 the smallest, 2^-25 the tie with 0, 2^-14 the
    # smallest normal
    for v in [2.0**-24, 2.0**-25, 3 * 2.0**-25, 2.0**-14, 2.0**-14 - 2.0**-25, 1e-10, 1e-40,
              1e-45, 6e-8, 3e-8]:
        out += neighbours(v) + [F32(-v)]
    # bfloat16: largest finite 0x7f7f, float32 subnormals
    for b in [0x7F7F7FFF, 0x7F7F8000, 0x7F7FFFFF, 0x00000001, 0x00008000, 0x00018000,
              0x007FFFFF, 0x00800000, 0x807FFFFF]:
        out += list(bits_to_f32([b]))
    # ties around chosen half values of each format, both parities, both signs
    f16_bits = [0x0000, 0x0001, 0x0002, 0x0003, 0x01FF, 0x03FE, 0x03FF, 0x0400, 0x0401,
                0x3BFF, 0x3C00, 0x3C01, 0x3C02, 0x4000, 0x5A3B, 0x7BFE]
    f16_bits += list(rng.randint(0, 0x7BFF, size=24))
    for b in f16_bits:
        for t in ties(int(b), int(b) + 1, fp16_value):
            out += [t, F32(-t)]
    bf16_bits = [0x0000, 0x0001, 0x007F, 0x0080, 0x3F7F, 0x3F80, 0x3F81, 0x3F82, 0x4049,
                 0x7F7E]
    bf16_bits += list(rng.randint(0, 0x7F7F, size=24))
    for b in bf16_bits:
        for t in ties(int(b), int(b) + 1, bf16_value):
            out += [t, F32(-t)]
    for scale in [1e-8, 1e-6, 1e-4, 1e-2, 1.0, 1e2, 1e4, 6e4, 1e6, 1e30]:
        out += list((rng.randn(16) * scale).astype(np.float32))
    out += list(bits_to_f32(rng.randint(0, 2**32, size=64, dtype=np.uint64)))
    seen, unique = set(), []
    for v in out:
        b = int(f32_to_bits([v])[0])
        if b not in seen:
            seen.add(b)
            unique.append(b)
    return unique


def back_patterns():
    """16-bit patterns to read back: a stride over all of them, subnormals, the largest
    finite values, infinities and NaNs of both formats, both signs."""
    pats = list(range(0, 65536, 61))
    pats += list(range(0, 40)) + list(range(0x03E0, 0x0420))
    pats += [0x7BFF, 0x7C00, 0x7C01, 0x7D55, 0x7DFF, 0x7E00, 0x7E01, 0x7FFF]
    pats += [0x007F, 0x0080, 0x7F7F, 0x7F80, 0x7F81, 0x7FA0, 0x7FC0, 0x7FC1, 0x7FFF]
    pats += [p | 0x8000 for p in pats]
    return sorted(set(pats))


def main():
    torch.set_num_threads(1)
    inputs = cases()
    x = torch.from_numpy(bits_to_f32(inputs).copy())
    half = x.half()
    bf16 = x.bfloat16()
    h_bits = half.view(torch.int16).numpy().view(np.uint16)
    b_bits = bf16.view(torch.int16).numpy().view(np.uint16)
    h_back = half.float().numpy().view(np.uint32)
    b_back = bf16.float().numpy().view(np.uint32)
    pats = back_patterns()
    p16 = torch.from_numpy(np.array(pats, dtype=np.uint16).view(np.int16).copy())
    ph_back = p16.view(torch.float16).float().numpy().view(np.uint32)
    pb_back = p16.view(torch.bfloat16).float().numpy().view(np.uint32)
    out_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "half")
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "casts.txt"), "w") as f:
        f.write(f"# torch {torch.__version__}, /usr/bin/python3 tests/golden/make_half_golden.py\n")
        f.write("# cast F32 F16 BF16 F16F32 BF16F32 | back P F16F32 BF16F32 (hex bits)\n")
        for i, b in enumerate(inputs):
            f.write(f"cast {b:08x} {h_bits[i]:04x} {b_bits[i]:04x} {h_back[i]:08x} "
                    f"{b_back[i]:08x}\n")
        for i, p in enumerate(pats):
            f.write(f"back {p:04x} {ph_back[i]:08x} {pb_back[i]:08x}\n")
    print(f"{len(inputs)} casts, {len(pats)} patterns read back")
    return 0


if __name__ == "__main__":
    sys.exit(main())
