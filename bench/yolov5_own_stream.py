#!/usr/bin/python3
"""Run YOLOv5 v7.0's train.py through ../shared/reference/harness/yolo_launch.py with a data
stream of its own per --seed.

Usage (the launcher's arguments, --seed required):
    /usr/bin/python3 bench/yolov5_own_stream.py YOLOV5_DIR train.py ... --seed S ...

v7.0's create_dataloader seeds the DataLoader's generator with 6148914691236517205 + RANK,
a constant: the sampler's order and every worker's random state come from it, so every
--seed trains on the same augmented batches and --seed changes only the initial weights.
This adds 1000 * (S + 1) to that seed by setting utils.dataloaders.RANK, which feeds
nothing else there (no YOLOv5 file is changed; DDP's RANK elsewhere is untouched). Used for
the acceptance runs in bench/README.md.
"""
import os

HERE = os.path.dirname(os.path.abspath(__file__))
LAUNCHER = os.path.join(HERE, '..', '..', 'shared', 'reference', 'harness', 'yolo_launch.py')
MARKER = '# ---------------------------------------------------------------- run'
PATCH = r'''
import utils.dataloaders as _dl
_dl.RANK = 1000 * (int(ARGS[ARGS.index('--seed') + 1]) + 1)
print(f'[own stream] DataLoader generator seed + {_dl.RANK}', flush=True)
'''

source = open(LAUNCHER).read()
if MARKER not in source:
    raise SystemExit(f'{LAUNCHER}: the line "{MARKER}" is missing; cannot add the seed patch')
exec(compile(source.replace(MARKER, PATCH + MARKER), LAUNCHER, 'exec'),
     {'__name__': '__main__', '__file__': LAUNCHER})
