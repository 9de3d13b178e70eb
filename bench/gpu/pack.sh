#!/bin/bash
# bench/gpu/pack.sh BUILD_DIR YOLOV5_DIR - gather what bench/gpu/run.sh needs on a
# GPU machine into .gpu-pack.tar.gz (ignored by git; the device tool carries it), a
# gzipped .gpu-pack/ of:
#   bin/     our programs and CUDA test binaries from BUILD_DIR (a -Dcuda=enabled build)
#   lib/     the shared libraries they load that a bare CUDA machine lacks (oneDNN,
#            libyaml, cJSON, libjpeg, libpng, libgomp ...), not glibc, not CUDA's own
#   yolov5/  YOLOv5 v7.0's source (for the PyTorch baseline), without .git
#   models/, data/  our model yamls and hyps
# The GPU machine brings the CUDA 13 runtime libraries; cuDNN and NCCL come from
# its PyTorch's wheels if the toolkit lacks them (run.sh looks for both).
# Everything must stay under the device tool's 64 MiB.
set -euo pipefail
build=${1:?usage: pack.sh BUILD_DIR YOLOV5_DIR}
yolov5=${2:?usage: pack.sh BUILD_DIR YOLOV5_DIR}
root=$(cd "$(dirname "$0")/../.." && pwd)
pack=$root/.gpu-pack
[ -f "$yolov5/train.py" ] || { echo "pack.sh: $yolov5 has no train.py (give YOLOv5 v7.0's source)" >&2; exit 2; }
rm -rf "$pack"
mkdir -p "$pack/bin" "$pack/lib" "$pack/yolov5"
for exe in trainer/yolo-train trainer/yolo-val tools/gen-dataset bench/bench_model \
	tests/test_cuda_ops_gpu tests/test_cudnn_graphs tests/test_comm_nccl tests/test_cuda_step_gpu; do
	[ -x "$build/$exe" ] && cp "$build/$exe" "$pack/bin/"
done
# shared libraries outside glibc and the CUDA toolkit
for exe in "$pack"/bin/*; do
	ldd "$exe" | awk '$3 ~ /^\// {print $3}'
done | sort -u | while read -r lib; do
	case $(basename "$lib") in
	libc.so* | libm.so* | libdl.so* | libpthread.so* | librt.so* | ld-linux* | libstdc++.so* | libgcc_s.so*) ;;
	libcuda.so* | libcudart* | libcublas* | libcudnn* | libnccl* | libnvrtc* | libnvJitLink*) ;;
	*) cp -L "$lib" "$pack/lib/" ;;
	esac
done
tar -C "$yolov5" --exclude=.git -cf - . | tar -C "$pack/yolov5" -xf -
cp -r "$root/models" "$pack/models"
cp -r "$root/data/hyps" "$pack/hyps"
# The device tool carries the checkout (about 26 MB) and what `carry` names, 64 MiB in
# all: the pack travels gzipped (oneDNN alone is 40 MB, 11 MB gzipped) and run.sh
# unpacks it there.
tar -C "$root" -czf "$root/.gpu-pack.tar.gz" .gpu-pack
rm -rf "$pack"
size=$(du -sm "$root/.gpu-pack.tar.gz" | cut -f1)
echo "pack.sh: .gpu-pack.tar.gz, ${size} MiB (carry it: run's carry [\".gpu-pack.tar.gz\"])"
[ "$size" -lt 32 ] || { echo "pack.sh: .gpu-pack.tar.gz is ${size} MiB, too much beside the checkout for the device tool's 64 MiB" >&2; exit 1; }
