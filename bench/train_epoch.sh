#!/usr/bin/env bash
# bench/train_epoch.sh - seconds per training epoch, yolo-train next to
# YOLOv5 v7.0's train.py, in the same invocation, on the same data and
# settings as ../shared/reference/training (yolov5n from scratch, 320,
# batch 16, hyp.scratch-low, 2 threads, 2 loader workers, seed 0).
#
# usage: bench/train_epoch.sh BUILD_DIR [YOLOV5_CHECKOUT] [EPOCHS]
#
# An epoch's time is the gap between two consecutive results.csv rows
# (training, validation and checkpoint saving included), watched every
# 50 ms; the median over epochs 1 .. EPOCHS-1 is printed (epoch 0 carries
# the start-up). YOLOv5 runs through ../shared/reference/harness/yolo_launch.py
# with /usr/bin/python3 (Debian python3-torch); it is skipped when no
# checkout is given. The ratio is YOLOv5's seconds / ours (above 1: we are
# faster).
set -euo pipefail
build=${1:?usage: train_epoch.sh BUILD_DIR [YOLOV5_CHECKOUT] [EPOCHS]}
yolov5=${2:-}
epochs=${3:-6}
root=$(cd "$(dirname "$0")/.." && pwd)
shared=$root/../shared
data=$shared/datasets/thermal-dogs-people/data.yaml
hyp=$shared/reference/training/A_low_s0/hyp.yaml
work=$(mktemp -d /tmp/train-epoch.XXXXXX)
trap 'rm -rf "$work"' EXIT

# watch CSV PID: print the time at which each new row of CSV appeared
watch_rows() {
	local csv=$1 pid=$2 seen=1 n
	while kill -0 "$pid" 2>/dev/null; do
		n=$( { wc -l <"$csv"; } 2>/dev/null || echo 0)
		while ((n > seen)); do
			date +%s.%N
			seen=$((seen + 1))
		done
		sleep 0.05
	done
}

# median of the gaps between consecutive times, skipping the first row
median_gap() {
	awk 'NR > 1 { print $1 - prev } { prev = $1 }' "$1" | tail -n +2 | sort -g |
		awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

"$build/trainer/yolo-train" --weights '' --cfg "$root/models/yolov5n.yaml" --hyp "$hyp" \
	--data "$data" --imgsz 320 --batch-size 16 --epochs "$epochs" --workers 2 --threads 2 \
	--seed 0 --project "$work" --name ours >"$work/ours.log" 2>&1 &
pid=$!
watch_rows "$work/ours/results.csv" "$pid" >"$work/ours.times"
wait "$pid"
ours=$(median_gap "$work/ours.times")
echo "yolo-train: ${ours} s/epoch (median of epochs 1-$((epochs - 1)))"

if [[ -n "$yolov5" && -f "$yolov5/train.py" ]]; then
	# YOLOv5 resolves a relative `path:` against its own folder: give it an absolute one
	sed "s|^path: .*|path: $(dirname "$data")|" "$data" >"$work/data.yaml"
	data=$work/data.yaml
	YREF_THREADS=2 /usr/bin/python3 "$shared/reference/harness/yolo_launch.py" "$yolov5" train.py \
		--weights '' --cfg models/yolov5n.yaml --hyp "$hyp" --data "$data" --img 320 --batch 16 \
		--epochs "$epochs" --workers 2 --device cpu --seed 0 --noplots --project "$work" \
		--name yolov5 --exist-ok >"$work/yolov5.log" 2>&1 &
	pid=$!
	watch_rows "$work/yolov5/results.csv" "$pid" >"$work/yolov5.times"
	wait "$pid"
	theirs=$(median_gap "$work/yolov5.times")
	echo "YOLOv5 train.py: ${theirs} s/epoch"
	awk -v a="$theirs" -v b="$ours" 'BEGIN { printf "ratio (YOLOv5 s / ours s): %.2f\n", a / b }'
else
	echo "YOLOv5: skipped (no checkout given)"
fi
