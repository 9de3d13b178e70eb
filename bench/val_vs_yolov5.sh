#!/usr/bin/env bash
# val_vs_yolov5.sh - yolo-val against YOLOv5 v7.0's val.py on the same weights and data:
# the table rows (all and per class) side by side, and a check that P, R, mAP@.5 and
# mAP@.5:.95 agree within TOL (0.002). Not part of CI: it needs /usr/bin/python3 with
# torch, a YOLOv5 v7.0 checkout and a trained YOLOv5 checkpoint.
#
#	bench/val_vs_yolov5.sh BEST.pt DATA.yaml [YOLOV5_DIR]
#
# Environment: YOLO_VAL (default build/trainer/yolo-val), IMG (320), BATCH (32), TOL (0.002),
# THREADS (2). The dataset is copied (images and labels of the val split) to a temporary
# folder first, so neither program writes its label cache into the original (both use
# labels/val.cache, in different formats).
set -euo pipefail

[[ $# -ge 2 ]] || { sed -n '2,12p' "$0"; exit 2; }
PT=$(realpath "$1")
DATA=$(realpath "$2")
YOLOV5=$(realpath "${3:-/tmp/yolov5}")
ROOT=$(cd "$(dirname "$0")/.." && pwd)
YOLO_VAL=${YOLO_VAL:-$ROOT/build/trainer/yolo-val}
IMG=${IMG:-320}
BATCH=${BATCH:-32}
TOL=${TOL:-0.002}
THREADS=${THREADS:-2}
HARNESS=$ROOT/../shared/reference/harness/yolo_launch.py
PY=/usr/bin/python3

WORK=$(mktemp -d "${TMPDIR:-/tmp}/val-vs-yolov5.XXXXXX")
trap 'rm -rf -- "$WORK"' EXIT

# the val split, copied; data.yaml with an absolute path (YOLOv5 resolves a relative one
# against its own checkout)
"$PY" - "$DATA" "$WORK/data" <<'EOF'
import os, shutil, sys, yaml
src, dst = sys.argv[1], sys.argv[2]
d = yaml.safe_load(open(src))
root = d.get('path') or '.'
root = root if os.path.isabs(root) else os.path.normpath(os.path.join(os.path.dirname(src), root))
val = d['val'] if isinstance(d['val'], str) else d['val'][0]
images = val if os.path.isabs(val) else os.path.join(root, val)
labels = images.replace(os.sep + 'images' + os.sep, os.sep + 'labels' + os.sep, 1)
shutil.copytree(images, os.path.join(dst, 'images', 'val'))
if os.path.isdir(labels):
    shutil.copytree(labels, os.path.join(dst, 'labels', 'val'),
                    ignore=shutil.ignore_patterns('*.cache'))
names = d['names']
names = [names[k] for k in sorted(names)] if isinstance(names, dict) else list(names)
with open(os.path.join(dst, 'data.yaml'), 'w') as f:
    yaml.safe_dump({'path': dst, 'train': 'images/val', 'val': 'images/val',
                    'nc': len(names), 'names': names}, f, sort_keys=False)
EOF

"$PY" "$ROOT/scripts/yolov5_to_safetensors.py" --yolov5 "$YOLOV5" "$PT" "$WORK/best.safetensors" \
	>/dev/null

# val.py's non_max_suppression gives up after 0.5 + 0.05 * batch seconds per batch and leaves
# the rest of the batch without detections: on a loaded CPU that alone changes the metrics.
# When that happens val.py runs again with the clock frozen inside non_max_suppression only
# (a wrapper; no YOLOv5 file is changed), and the comparison uses that run.
cat >"$WORK/val_no_nms_limit.py" <<'EOF'
import os, runpy, sys, time, types
import utils.general as general
original = general.non_max_suppression
frozen = types.SimpleNamespace(time=lambda: 0.0)
def non_max_suppression(*args, **kwargs):
    general.time = frozen
    try:
        return original(*args, **kwargs)
    finally:
        general.time = time
general.non_max_suppression = non_max_suppression
script = os.path.join(os.getcwd(), 'val.py')
sys.argv[0] = script
runpy.run_path(script, run_name='__main__')
EOF
run_valpy() {
	YREF_THREADS=$THREADS "$PY" "$HARNESS" "$YOLOV5" "$1" --weights "$PT" \
		--data "$WORK/data/data.yaml" --img "$IMG" --batch "$BATCH" --device cpu \
		--project "$WORK/runs" --name ref --exist-ok >"$WORK/ref.log" 2>&1 ||
		{ tail -20 "$WORK/ref.log"; exit 1; }
}

echo "weights $PT, data $DATA, --img $IMG --batch $BATCH"
run_valpy val.py
if grep -q 'NMS time limit' "$WORK/ref.log"; then
	echo "note: val.py hit its NMS time limit $(grep -c 'NMS time limit' "$WORK/ref.log") times;" \
		"the rows of that run:"
	tr '\r' '\n' <"$WORK/ref.log" | sed 's/\x1b\[[0-9;]*m//g' | grep -E '^ +[^ ]+ +[0-9]+ +[0-9]+ ' |
		sed 's/^/    /'
	echo "note: val.py again with no NMS time limit, compared below"
	run_valpy "$WORK/val_no_nms_limit.py"
fi
"$YOLO_VAL" --weights "$WORK/best.safetensors" --data "$WORK/data/data.yaml" --imgsz "$IMG" \
	--batch-size "$BATCH" --threads "$THREADS" >"$WORK/ours.log" 2>&1 ||
	{ tail -20 "$WORK/ours.log"; exit 1; }

# the table rows (ANSI colours and tqdm's carriage returns removed): class images labels p r map50 map
rows() { tr '\r' '\n' <"$1" | sed 's/\x1b\[[0-9;]*m//g' | awk 'NF == 7 && $2 ~ /^[0-9]+$/ && $3 ~ /^[0-9]+$/'; }
rows "$WORK/ref.log" >"$WORK/ref.rows"
rows "$WORK/ours.log" >"$WORK/ours.rows"
[[ -s "$WORK/ref.rows" ]] || { echo "no table in val.py's output"; tail -5 "$WORK/ref.log"; exit 1; }

printf '%-10s %-9s %8s %8s %8s %8s\n' class program P R mAP50 mAP50-95
fails=0
while read -r cls images labels p r m50 m; do
	read -r ocls oimages olabels op or om50 om < <(awk -v c="$cls" '$1 == c' "$WORK/ours.rows")
	if [[ -z "${ocls:-}" ]]; then
		echo "$cls: no row in yolo-val's output"
		fails=$((fails + 1))
		continue
	fi
	printf '%-10s %-9s %8s %8s %8s %8s   (%s images, %s labels)\n' "$cls" val.py "$p" "$r" "$m50" "$m" \
		"$images" "$labels"
	printf '%-10s %-9s %8s %8s %8s %8s   (%s images, %s labels)\n' "" yolo-val "$op" "$or" "$om50" \
		"$om" "$oimages" "$olabels"
	if ! awk -v t="$TOL" -v a="$p $r $m50 $m" -v b="$op $or $om50 $om" 'BEGIN {
		split(a, x, " "); split(b, y, " ");
		for (i = 1; i <= 4; i++) { d = x[i] - y[i]; if (d < 0) d = -d; if (d > t) exit 1 }
	}' || [[ "$images $labels" != "$oimages $olabels" ]]; then
		echo "           ^ differs by more than $TOL"
		fails=$((fails + 1))
	fi
	ocls=
done <"$WORK/ref.rows"
if grep -q 'NMS time limit' "$WORK/ref.log"; then
	echo "note: val.py hit its NMS time limit even so"
fi
echo "val.py:   $(tr '\r' '\n' <"$WORK/ref.log" | grep '^Speed:')"
echo "yolo-val: $(grep '^Speed:' "$WORK/ours.log")"
if ((fails > 0)); then
	echo "FAIL: $fails rows differ"
	exit 1
fi
echo "ok: every row within $TOL"
