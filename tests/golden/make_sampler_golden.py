#!/usr/bin/python3
"""Golden index lists of torch's DistributedSampler and randperm for test_sampler.

Run with Debian 12's python3-torch (1.13): /usr/bin/python3 tests/golden/make_sampler_golden.py
It writes tests/golden/sampler/distributed_sampler.txt, one case a line:
  sampler N WORLD RANK EPOCH SEED SHUFFLE: i0 i1 ...   list(iter(sampler)) after set_epoch(EPOCH)
  randperm N SEED: p0 p1 ...                           torch.randperm(N, generator=g), g.manual_seed(SEED)
The sampler is built as YOLOv5 v7.0's create_dataloader builds it for DDP:
DistributedSampler(dataset, shuffle=shuffle) (seed left at its default 0 except
where a case sets it), with num_replicas and rank given instead of read from a
process group.
"""
import os
import sys

import torch
from torch.utils.data.distributed import DistributedSampler


class Sized:
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n


SAMPLER_CASES = [  # n, world, rank, epoch, seed, shuffle
    (10, 2, 0, 0, 0, True), (10, 2, 1, 0, 0, True), (10, 2, 1, 3, 0, True),
    (11, 4, 0, 1, 0, True), (11, 4, 3, 1, 0, True), (13, 4, 2, 7, 0, True),
    (3, 4, 3, 0, 0, True), (2, 5, 4, 2, 0, True), (128, 2, 1, 39, 0, True),
    (142, 4, 1, 5, 0, True), (142, 4, 2, 5, 0, False), (7, 3, 2, 0, 0, False),
    (1000, 8, 5, 12, 0, True), (50, 2, 0, 4, 12345, True), (1, 2, 1, 0, 0, True),
]
RANDPERM_CASES = [(1, 0), (2, 1), (10, 0), (100, 7), (5000, 3), (37, 2**32 + 5)]


def main():
    out_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sampler")
    lines = []
    for n, world, rank, epoch, seed, shuffle in SAMPLER_CASES:
        s = DistributedSampler(Sized(n), num_replicas=world, rank=rank, shuffle=shuffle, seed=seed)
        s.set_epoch(epoch)
        got = " ".join(str(i) for i in iter(s))
        lines.append(f"sampler {n} {world} {rank} {epoch} {seed} {int(shuffle)}: {got}")
    for n, seed in RANDPERM_CASES:
        g = torch.Generator()
        g.manual_seed(seed)
        got = " ".join(str(i) for i in torch.randperm(n, generator=g).tolist())
        lines.append(f"randperm {n} {seed}: {got}")
    with open(os.path.join(out_dir, "distributed_sampler.txt"), "w") as f:
        f.write(f"# torch {torch.__version__}, tests/golden/make_sampler_golden.py\n")
        f.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
