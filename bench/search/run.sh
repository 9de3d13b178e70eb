#!/usr/bin/env bash
# run.sh - how well a search algorithm does for the trainer epochs it spends
# (issue 16). For every synthetic objective of synth_trainer and every seed,
# one real yolo-evolve evolution with the synthetic trainer; its
# recommendation (`export --best`) is scored by its noise-free fitness
# (synth_trainer --truth). Also the quality it had reached at 1/3 and 1/2
# of the epochs it spent: the best single run among the candidates finished
# by then (YOLOv5's rule; the final column is `export --best` for any
# algorithm). Prints median [quartiles] over the seeds per objective.
#
#   bench/search/run.sh [options] [-- more yolo-evolve options]
#     -a ALGORITHM   --algorithm (yolov5)
#     -g N           --generations (150)
#     -e N           --epochs per candidate (10)
#     -p P           --parallel (1: YOLOv5's serial loop)
#     -n SEEDS       seeds FIRST .. FIRST + SEEDS - 1 (20)
#     -s FIRST       the first seed (1)
#     -o "A B ..."   objectives (bowl ridge modes flat; also table: the real-curve surrogate)
#     -T FILE        the curve table of the table objective (bench/search/curves/table.csv)
#     -b DIR         build folder (build)
#     -t FILE        also keep the per-run rows (TSV) in FILE
# Runs in a tmpfs folder when /dev/shm exists; run it under `nice`.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
algorithm=yolov5 generations=150 epochs=10 parallel=1 seeds=20 first=1
objectives="bowl ridge modes flat" build=$root/build tsv="" table=$root/bench/search/curves/table.csv
while getopts "a:g:e:p:n:s:o:b:t:T:" opt; do
	case $opt in
	a) algorithm=$OPTARG ;;
	g) generations=$OPTARG ;;
	e) epochs=$OPTARG ;;
	p) parallel=$OPTARG ;;
	n) seeds=$OPTARG ;;
	s) first=$OPTARG ;;
	o) objectives=$OPTARG ;;
	b) build=$OPTARG ;;
	t) tsv=$OPTARG ;;
	T) table=$OPTARG ;;
	*) exit 2 ;;
	esac
done
shift $((OPTIND - 1))
ye=$build/evolve/yolo-evolve st=$build/bench/synth_trainer
for exe in "$ye" "$st"; do
	[[ -x $exe ]] || { echo "run.sh: $exe not built (ninja -C $build)" >&2; exit 2; }
done
command -v sqlite3 >/dev/null || { echo "run.sh: sqlite3 not found" >&2; exit 2; }
work=$(mktemp -d "$([[ -d /dev/shm ]] && echo /dev/shm || echo "${TMPDIR:-/tmp}")/ye-search.XXXXXX")
trap 'rm -rf "$work"' EXIT
rows=$work/rows.tsv
hyp_cols=lr0,lrf,momentum,weight_decay,warmup_epochs,warmup_momentum,warmup_bias_lr,box,cls,cls_pw,obj,obj_pw,iou_t,anchor_t,fl_gamma,hsv_h,hsv_s,hsv_v,degrees,translate,scale,shear,perspective,flipud,fliplr,mosaic,mixup,copy_paste,anchors

# one_run OBJECTIVE SEED: a row "objective seed epochs quality q_third q_half"
one_run() {
	local objective=$1 seed=$2 name=$1-$2
	shift 2
	local trainer="$st --hyp {hyp} --epochs {epochs} --save-dir {save_dir} --seed {seed} --objective $objective --table $table"
	"$ye" --project "$work" --name "$name" --data none --trainer "$trainer" --algorithm "$algorithm" \
		--generations "$generations" --epochs "$epochs" --parallel "$parallel" --seed "$seed" \
		--report-every 0 --quiet "$@" >"$work/$name.log" 2>&1 || {
		echo "run.sh: $name: yolo-evolve failed:" >&2
		tail -3 "$work/$name.log" >&2
		exit 1
	}
	local db=$work/$name/evolve.db
	"$ye" export --db "$db" --best "$work/$name.yaml" >/dev/null 2>&1
	local quality spent
	quality=$("$st" --truth --epochs "$epochs" --objective "$objective" --table "$table" --hyp "$work/$name.yaml")
	spent=$(sqlite3 -batch "$db" "SELECT sum(epochs_done) FROM generations")
	# finishing order, cumulative epochs, observed fitness, noise-free fitness of each candidate
	sqlite3 -batch -csv "$db" "SELECT sum(epochs_done) OVER (ORDER BY finished_at, generation),
		CASE WHEN status = 'done' THEN fitness ELSE -1 END FROM generations
		WHERE status IN ('done', 'failed', 'pruned') ORDER BY finished_at, generation" >"$work/$name.cum"
	sqlite3 -batch -csv -header "$db" "SELECT $hyp_cols FROM generations
		WHERE status IN ('done', 'failed', 'pruned') ORDER BY finished_at, generation" |
		"$st" --truth-csv --epochs "$epochs" --objective "$objective" --table "$table" >"$work/$name.truth"
	# the best observed candidate among those finished within a third, a half of the epochs spent
	paste -d, "$work/$name.cum" "$work/$name.truth" | awk -F, -v spent="$spent" \
		-v o="$objective" -v s="$seed" -v q="$quality" '
		function upto(limit,    i, best, pick) {
			best = -2; pick = 0
			for (i = 1; i <= n; i++)
				if (cum[i] <= limit && fit[i] > best) { best = fit[i]; pick = truth[i] }
			return pick
		}
		{ n++; cum[n] = $1; fit[n] = $2; truth[n] = $3 }
		END { printf "%s\t%s\t%d\t%.5f\t%.5f\t%.5f\n", o, s, spent, q, upto(spent / 3), upto(spent / 2) }'
}

for objective in $objectives; do
	for seed in $(seq "$first" $((first + seeds - 1))); do
		one_run "$objective" "$seed" "$@" >>"$rows"
	done
done
[[ -n $tsv ]] && cp "$rows" "$tsv"

# quartiles: "median [q1, q3]" of column $2 of rows of objective $1 (linear interpolation)
stats() {
	awk -F'\t' -v o="$1" -v c="$2" '$1 == o { print $c }' "$rows" | sort -g | awk '
		{ v[NR] = $1 }
		function q(p,    h, l) { h = (NR - 1) * p + 1; l = int(h); return v[l] + (h - l) * (v[l + 1 < NR ? l + 1 : NR] - v[l]) }
		END { printf "%.4f [%.4f, %.4f]", q(0.5), q(0.25), q(0.75) }'
}

echo "algorithm $algorithm, $generations generations x $epochs epochs, --parallel $parallel, seeds $first-$((first + seeds - 1))${*:+, options: $*}"
echo "noise-free fitness (0.1 mAP@.5 + 0.9 mAP@.5:.95 at epoch $epochs) of the recommendation: median [quartiles]"
printf '| %-9s | %6s | %6s | %-24s | %-24s | %-24s | %-22s |\n' objective base best "at 1/3 of the epochs" \
	"at 1/2 of the epochs" "at the end (export --best)" "trainer epochs"
printf '|%s|%s|%s|%s|%s|%s|%s|\n' ----------- -------- -------- -------------------------- -------------------------- \
	-------------------------- ------------------------
"$st" --describe --epochs "$epochs" --table "$table" >"$work/describe"
for objective in $objectives; do
	read -r base best < <(awk -v o="$objective" '$1 == o { print $2, $3 }' "$work/describe")
	printf '| %-9s | %6.4f | %6.4f | %-24s | %-24s | %-24s | %-22s |\n' "$objective" "$base" "$best" \
		"$(stats "$objective" 5)" "$(stats "$objective" 6)" "$(stats "$objective" 4)" \
		"$(stats "$objective" 3 | sed 's/\.0000//g')"
done
