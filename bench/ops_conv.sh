#!/bin/sh
# bench/ops_conv.sh - convolution forward + backward (data and filter) on the
# CPU backend against PyTorch on the same machine in the same run.
# usage: bench/ops_conv.sh BENCH_CONV_BINARY [threads]
# Default layer: YOLOv5s-like 3x3 64->64 at 80x80, batch 8. PyTorch is timed
# only when /usr/bin/python3 has torch; the ratio printed is torch_ms / ours
# (above 1: we are faster) for our default layout (auto), from the fastest
# of 20 iterations on each side (the least disturbed by other processes).
set -eu
bin=${1:?usage: ops_conv.sh BENCH_CONV_BINARY [threads]}
threads=${2:-2}
ours=$("$bin" "$threads" 8 64 64 80 3 1 1 20)
echo "$ours" | sed 's/^/ours: /'
best=$(echo "$ours" | sed -n 's/^layout=auto ms=\([0-9.]*\).*/\1/p')
if ! /usr/bin/python3 -c 'import torch' 2>/dev/null; then
	echo "torch: not available, no ratio"
	exit 0
fi
torch_ms=$(/usr/bin/python3 - "$threads" <<'PY'
import sys, time, torch
torch.set_num_threads(int(sys.argv[1]))
torch.manual_seed(0)
x = torch.randn(8, 64, 80, 80, requires_grad=True)
w = torch.randn(64, 64, 3, 3, requires_grad=True)
dy = torch.randn(8, 64, 80, 80)
def step():
    y = torch.nn.functional.conv2d(x, w, None, 1, 1)
    y.backward(dy)
for _ in range(3):
    step()
times = []
for _ in range(20):
    t = time.perf_counter()
    step()
    times.append((time.perf_counter() - t) * 1e3)
times.sort()
print("%.3f median=%.3f" % (times[0], times[len(times) // 2]))
PY
)
echo "torch: layout=torch ms=$torch_ms"
echo "ratio torch/ours (fastest iterations, auto layout): $(echo "${torch_ms%% *} $best" | awk '{printf "%.2f", $1 / $2}')"
