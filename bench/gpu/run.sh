#!/bin/bash
# bench/gpu/run.sh - everything the CUDA backend must show on a GPU machine, in one
# run of under 8 minutes (each stage under `timeout`), for the device tool:
#
#   here:    meson setup build-gpu -Dcuda=enabled -Dbuildtype=release && ninja -C build-gpu
#            bash bench/gpu/pack.sh build-gpu /path/to/yolov5-v7.0-source
#   device:  bash bench/gpu/run.sh          (carry .gpu-pack.tar.gz; results in $OUT)
#
# Stages, most important first (a stage that would pass the time budget is recorded
# as "no time left"): the machine (nvidia-smi, nvcc); op parity GPU vs CPU in fp32
# (test_cuda_ops_gpu: every op of the table, cuDNN's convolutions included, against
# the CPU backend); one yolov5n training step GPU vs CPU (test_cuda_step_gpu: loss,
# every gradient, parameters after SGD, EMA); forward + backward of yolov5s at 640,
# batch 64, ours in fp32 (bench_model --device 0; the CUDA backend has no AMP yet)
# next to PyTorch YOLOv5 v7.0 in fp32 and with AMP in the same run; NCCL all-reduce
# (test_comm_nccl); cuDNN graphs (test_cudnn_graphs); compute-sanitizer memcheck and
# racecheck over test_cuda_ops_gpu. bf16 op parity is not built yet. A stage whose
# program is not in the pack is recorded as "missing", never skipped silently. Output: $OUT/results.json (one object per stage: name, rc,
# seconds, status, the last lines of its output) and $OUT/log.txt (everything).
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
pack=$root/.gpu-pack
OUT=${OUT:-$root/gpu-out}
mkdir -p "$OUT"
log=$OUT/log.txt
records=$OUT/records.ndjson
: >"$log"
: >"$records"
[ -d "$pack/bin" ] || [ ! -f "$root/.gpu-pack.tar.gz" ] || tar -C "$root" -xzf "$root/.gpu-pack.tar.gz"
[ -d "$pack/bin" ] || { echo "run.sh: no .gpu-pack (run bench/gpu/pack.sh first and carry .gpu-pack.tar.gz)" | tee -a "$log"; exit 2; }

# cuDNN and NCCL: the toolkit's, else the ones PyTorch's wheels bring
extra=
for mod in cudnn nccl cublas; do
	d=$(python3 -c "import nvidia.$mod, os; print(os.path.join(list(nvidia.$mod.__path__)[0], 'lib'))" 2>/dev/null) && extra=$extra:$d
done
export LD_LIBRARY_PATH=$pack/lib$extra:${LD_LIBRARY_PATH:-}
export PATH=$pack/bin:$PATH
budget=${GPU_BENCH_SECONDS:-470} # the whole run stays under 8 minutes
SECONDS=0

# stage NAME SECONDS NEEDS COMMAND...: run COMMAND under timeout, keep its output,
# record it; NEEDS lists the programs (comma-separated) without which it is "missing"
stage() {
	local name=$1 limit=$2 needs=$3 prog
	shift 3
	if [ $((SECONDS + limit)) -gt "$budget" ]; then
		printf '{"name": "%s", "status": "no time left", "budget_s": %d}\n' "$name" "$budget" >>"$records"
		echo "== $name: not started, would pass the ${budget} s budget" >>"$log"
		return
	fi
	for prog in ${needs//,/ }; do
		if ! command -v "$prog" >/dev/null 2>&1; then
			printf '{"name": "%s", "status": "missing", "program": "%s"}\n' "$name" "$prog" >>"$records"
			echo "== $name: missing ($prog)" >>"$log"
			return
		fi
	done
	echo "== $name: $*" >>"$log"
	local t0 t1 rc out
	out=$(mktemp)
	t0=$(date +%s.%N)
	timeout --kill-after=10 "$limit" "$@" >"$out" 2>&1
	rc=$?
	t1=$(date +%s.%N)
	cat "$out" >>"$log"
	python3 - "$name" "$rc" "$t0" "$t1" "$out" >>"$records" <<'PY'
import json, sys
name, rc, t0, t1, path = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
lines = open(path, errors='replace').read().splitlines()
status = 'ok' if rc == 0 else 'skipped' if rc == 77 else ('timeout' if rc in (124, 137) else 'failed')
json_lines = []
for line in lines:
    try:
        json_lines.append(json.loads(line))
    except ValueError:
        pass
print(json.dumps({'name': name, 'status': status, 'rc': rc, 'seconds': round(t1 - t0, 2),
                  'results': [j for j in json_lines if isinstance(j, dict)], 'tail': lines[-15:]}))
PY
	rm -f "$out"
}

# the tests find models/ (yolov5n.yaml) under YE_SOURCE_ROOT: the pack's copy
src_env="YE_SOURCE_ROOT=$pack"
stage machine 30 nvidia-smi nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
stage nvcc 10 nvcc nvcc --version
stage ops_fp32 90 test_cuda_ops_gpu env "$src_env" test_cuda_ops_gpu
stage step_v5n 90 test_cuda_step_gpu env "$src_env" test_cuda_step_gpu
stage ours_v5s_640_b64_fp32 90 bench_model bench_model "$pack/models/yolov5s.yaml" 640 64 16 20 5 --device 0
stage pytorch_v5s_640_b64_fp32 90 python3 python3 "$root/bench/gpu/yolov5_step.py" "$pack/yolov5" --model s --img 640 --batch 64 --amp off
stage pytorch_v5s_640_b64_fp16 90 python3 python3 "$root/bench/gpu/yolov5_step.py" "$pack/yolov5" --model s --img 640 --batch 64 --amp fp16
stage nccl 30 test_comm_nccl test_comm_nccl
stage cudnn_graphs 60 test_cudnn_graphs env "$src_env" test_cudnn_graphs
stage memcheck 120 compute-sanitizer,test_cuda_ops_gpu compute-sanitizer --tool memcheck --error-exitcode 1 "$pack/bin/test_cuda_ops_gpu"
stage racecheck 120 compute-sanitizer,test_cuda_ops_gpu compute-sanitizer --tool racecheck --error-exitcode 1 "$pack/bin/test_cuda_ops_gpu"
stage pytorch_v5s_640_b64_bf16 90 python3 python3 "$root/bench/gpu/yolov5_step.py" "$pack/yolov5" --model s --img 640 --batch 64 --amp bf16

python3 - "$records" "$OUT/results.json" <<'PY'
import json, sys
stages = [json.loads(line) for line in open(sys.argv[1])]
json.dump({'stages': stages}, open(sys.argv[2], 'w'), indent=1)
for s in stages:
    print(f"{s['name']:28} {s['status']:8} {s.get('seconds', '')}")
PY
rm -f "$records"
