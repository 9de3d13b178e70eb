#!/bin/sh
# bench/bench_model.sh - forward + backward of whole YOLOv5 models (train
# mode, batch 8, no loss, no optimizer) on our CPU backend next to YOLOv5's
# own PyTorch model, in the same run.
# usage: bench/bench_model.sh BENCH_MODEL_BINARY [YOLOV5_CHECKOUT] [threads] [iterations]
# The same work on both sides: images in [0, 1), nc = 80, "loss" =
# sum(outputs * r) for a fixed random r (ours is handed dLoss/d outputs = r),
# gradients zeroed each iteration. Figures are medians over the iterations
# after 2 warm-up ones. PyTorch is skipped when the checkout is not given or
# /usr/bin/python3 has no torch. The ratio is ours / torch img/s (above 1:
# we are faster).
set -eu
bin=${1:?usage: bench_model.sh BENCH_MODEL_BINARY [YOLOV5_CHECKOUT] [threads] [iterations]}
yolov5=${2:-}
threads=${3:-2}
iterations=${4:-5}
root=$(cd "$(dirname "$0")/.." && pwd)
batch=8
torch_ok=0
if [ -n "$yolov5" ] && [ -f "$yolov5/models/yolo.py" ] &&
	/usr/bin/python3 -c 'import torch' 2>/dev/null; then
	torch_ok=1
else
	echo "torch: skipped (no YOLOv5 checkout given, or no torch in /usr/bin/python3)"
fi

torch_ips() { # model size -> img/s
	/usr/bin/python3 - "$yolov5" "$1" "$2" "$batch" "$threads" "$iterations" <<'PY'
import contextlib, io, os, statistics, sys, time
root, model_name, size, batch, threads, iters = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:])
import torch
torch.set_num_threads(threads)
sys.path.insert(0, os.path.abspath(root))
from models.yolo import Model
from utils.general import LOGGER
LOGGER.setLevel(40)
torch.manual_seed(0)
with contextlib.redirect_stdout(io.StringIO()):
    model = Model(os.path.join(root, f'models/{model_name}.yaml'), ch=3, nc=80)
model.train()
x = torch.rand(batch, 3, size, size)
r = [torch.rand(batch, 3, size // s, size // s, 85) for s in (8, 16, 32)]
def step():
    model.zero_grad(set_to_none=False)
    out = model(x)
    loss = sum((o * ri).sum() for o, ri in zip(out, r))
    loss.backward()
for _ in range(2):
    step()
times = []
for _ in range(iters):
    t = time.perf_counter()
    step()
    times.append(time.perf_counter() - t)
print('%.2f' % (batch / statistics.median(times)))
PY
}

echo "| model | img | batch | threads | ours img/s | torch img/s | ours / torch |"
echo "|---|---|---|---|---|---|---|"
for model in yolov5n yolov5s; do
	for size in 320 640; do
		line=$("$bin" "$root/models/$model.yaml" "$size" "$batch" "$threads" "$iterations" 2)
		ours=$(echo "$line" | sed -n 's/.*img_per_s=\([0-9.]*\).*/\1/p')
		if [ "$torch_ok" = 1 ]; then
			theirs=$(torch_ips "$model" "$size")
			ratio=$(echo "$ours $theirs" | awk '{printf "%.2f", $1 / $2}')
		else
			theirs=-
			ratio=-
		fi
		echo "| $model | $size | $batch | $threads | $ours | $theirs | $ratio |"
	done
done
