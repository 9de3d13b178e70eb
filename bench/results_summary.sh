#!/usr/bin/env bash
# bench/results_summary.sh - the acceptance columns of YOLOv5-format
# results.csv files (yolo-train's or train.py's), one row per file:
# final-epoch train and val losses (box / obj / cls), final mAP@.5 and
# mAP@.5:.95, the first epochs at which mAP@.5 passes 0.1 / 0.3 / 0.5
# ("-": never), and the best mAP@.5. Then, per label, the mean and sample
# standard deviation of the final mAP@.5 and of each final loss.
#
# usage: bench/results_summary.sh LABEL=RESULTS.csv [LABEL=RESULTS.csv ...]
#   e.g. bench/results_summary.sh yolov5=/tmp/y5/s0/results.csv ours=runs/s0/results.csv
set -euo pipefail
(($#)) || { echo "usage: results_summary.sh LABEL=RESULTS.csv ..." >&2; exit 2; }
printf '%-8s %-40s %6s %-28s %-28s %-15s %-12s %s\n' label file epochs \
	"train box/obj/cls" "val box/obj/cls" "mAP50 / 50-95" "first .1/.3/.5" best
for arg in "$@"; do
	label=${arg%%=*} file=${arg#*=}
	[[ -s $file ]] || { echo "$file: missing or empty" >&2; exit 1; }
	tail -n +2 "$file" | tr -d ' ' | awk -F, -v label="$label" -v file="$file" '
		{ n++; for (k = 1; k <= 14; k++) last[k] = $k
		  for (t = 1; t <= 3; t++) if (!(t in first) && $7 > t * 0.2 - 0.1) first[t] = $1
		  if ($7 > best) best = $7 }
		END {
		  f = ""; for (t = 1; t <= 3; t++) f = f (t > 1 ? "/" : "") ((t in first) ? first[t] : "-")
		  name = file; if (length(name) > 40) name = "..." substr(name, length(name) - 36)
		  printf "%-8s %-40s %6d %-28s %-28s %-15s %-12s %.3f\n", label, name, n,
		    sprintf("%.5f/%.5f/%.5f", last[2], last[3], last[4]),
		    sprintf("%.5f/%.5f/%.5f", last[9], last[10], last[11]),
		    sprintf("%.3f / %.3f", last[7], last[8]), f, best
		  printf "%s %s %s %s %s %s %s %s\n", label, last[7], last[2], last[3], last[4],
		    last[9], last[10], last[11] > "/dev/stderr" }' 2>>"${TMPDIR:-/tmp}/results_summary.$$"
done
printf '\n%-8s %3s %-15s %s\n' label n "mAP50 mean/sd" "final losses mean (sd): train box, obj, cls; val box, obj, cls"
awk '{ n[$1]++; for (k = 2; k <= 8; k++) { s[$1, k] += $k; q[$1, k] += $k * $k } }
	END { for (l in n) {
		line = ""
		for (k = 2; k <= 8; k++) {
			m = s[l, k] / n[l]; v = n[l] > 1 ? (q[l, k] - n[l] * m * m) / (n[l] - 1) : 0
			sd = v > 0 ? sqrt(v) : 0
			if (k == 2) head = sprintf("%.3f / %.3f", m, sd)
			else line = line sprintf(" %.5f (%.5f)", m, sd)
		}
		printf "%-8s %3d %-15s%s\n", l, n[l], head, line } }' "${TMPDIR:-/tmp}/results_summary.$$" | sort
rm -f "${TMPDIR:-/tmp}/results_summary.$$"
