#!/bin/sh
# bench/loader.sh - training batches per second of our data loader
# (trainer/data/loader.c) next to YOLOv5 v7.0's own create_dataloader, in the
# same run, on the same data and hyp: mosaic on, augment on, batch 16,
# imgsz 320 and 640, 1 and 2 workers.
# usage: bench/loader.sh BENCH_LOADER_BINARY [YOLOV5_CHECKOUT] [DATA_YAML] [HYP_YAML] [batches]
# Both sides time `batches` batches after the first one (worker start-up
# and cold caches excluded), epochs chained (YOLOv5's InfiniteDataLoader
# keeps its workers; ours restarts its threads per epoch, which is counted).
# The ratio is ours / YOLOv5 batches/s (above 1: we are faster). YOLOv5 is
# skipped when the checkout is not given or /usr/bin/python3 lacks torch.
set -eu
bin=${1:?usage: loader.sh BENCH_LOADER_BINARY [YOLOV5_CHECKOUT] [DATA_YAML] [HYP_YAML] [batches]}
yolov5=${2:-}
root=$(cd "$(dirname "$0")/.." && pwd)
data=${3:-/work/shared/datasets/thermal-dogs-people/data.yaml}
hyp=${4:-$root/data/hyps/hyp.scratch-low.yaml}
batches=${5:-30}
batch=16
torch_ok=0
if [ -n "$yolov5" ] && [ -f "$yolov5/utils/dataloaders.py" ] &&
	/usr/bin/python3 -c 'import torch, cv2' 2>/dev/null; then
	torch_ok=1
else
	echo "YOLOv5: skipped (no checkout given, or no torch/cv2 in /usr/bin/python3)"
fi

yolov5_bps() { # imgsz workers -> batches/s
	YOLOv5_AUTOINSTALL=false YOLOV5_CONFIG_DIR=${TMPDIR:-/tmp}/yolov5-bench-config \
	/usr/bin/python3 - "$yolov5" "$data" "$hyp" "$1" "$batch" "$2" "$batches" <<'PY'
import contextlib, io, os, sys, time
root, data, hyp_path = sys.argv[1:4]
imgsz, batch, workers, batches = map(int, sys.argv[4:])
sys.path.insert(0, os.path.abspath(root))
import yaml
from utils.dataloaders import create_dataloader
from utils.general import LOGGER
LOGGER.setLevel(40)
with open(hyp_path) as f:
    hyp = yaml.safe_load(f)
with open(data) as f:
    d = yaml.safe_load(f)
# our reading of `path:` (relative to the yaml's folder; YOLOv5 would take its own)
train = os.path.join(os.path.dirname(os.path.abspath(data)), d.get('path') or '.', d['train'])
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    loader, _ = create_dataloader(train, imgsz, batch, 32, hyp=hyp, augment=True,
                                  workers=workers, shuffle=True)
def batches_forever():
    while True:  # InfiniteDataLoader keeps its workers across epochs
        yield from loader
it = batches_forever()
next(it)
start = time.perf_counter()
for _ in range(batches):
    next(it)
print(f'{batches / (time.perf_counter() - start):.3f}')
PY
}

echo "data loader, training batches/s: batch $batch, mosaic per $(basename "$hyp"), $(nproc) cores"
printf '%-6s %-8s %10s %10s %8s\n' imgsz workers ours yolov5 ratio
for imgsz in 320 640; do
	for workers in 1 2; do
		ours=$("$bin" "$data" "$hyp" "$imgsz" "$batch" "$workers" "$batches" | awk '{print $2}')
		if [ "$torch_ok" = 1 ]; then
			ref=$(yolov5_bps "$imgsz" "$workers")
			ratio=$(awk -v a="$ours" -v b="$ref" 'BEGIN { printf "%.2f", a / b }')
		else
			ref=-
			ratio=-
		fi
		printf '%-6s %-8s %10s %10s %8s\n' "$imgsz" "$workers" "$ours" "$ref" "$ratio"
	done
done
