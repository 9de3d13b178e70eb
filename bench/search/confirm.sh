#!/usr/bin/env bash
# confirm.sh - the real confirmation of issue 16: a search algorithm against
# `--algorithm yolov5` with real yolo-train candidates at small scale.
#
#   bench/search/confirm.sh BIN DATA.yaml WORK STEP [seeds...]
#     BIN    an installed build's bin/ (yolo-evolve, yolo-train; share/ beside it)
#     DATA   the dataset yaml (e.g. gen-dataset's, 128 px: bench/search/curves/README.md)
#     WORK   folder for the evolutions, the scoring runs and their logs
#     STEP   yolov5     YOLOv5's evolution, GENERATIONS x EPOCHS trainer epochs, per seed
#            ALGORITHM  e.g. halving: --budget GENERATIONS x EPOCHS / 3, per seed
#            score      retrain each evolution's `export --best` and the base hyp with
#                       every seed of SCORE_SEEDS, EPOCHS epochs each
#            table      print the results as a markdown table
#     seeds  the evolution seeds (1 2 3)
# Environment: GENERATIONS (12), EPOCHS (20), IMGSZ (128), JOBS (2 evolutions or
# scoring runs at once, each trainer with OMP_NUM_THREADS=1), SCORE_SEEDS (101 102).
# Steps resume: finished work is kept, an evolution goes on with --resume (to more
# GENERATIONS, or a larger budget, if they grew).
set -euo pipefail
(($# >= 4)) || { sed -n '2,18p' "$0" >&2; exit 2; }
bin=$(cd "$1" && pwd) data=$2 work=$3 step=$4
shift 4
seeds=${*:-1 2 3}
generations=${GENERATIONS:-12} epochs=${EPOCHS:-20} imgsz=${IMGSZ:-128} jobs=${JOBS:-2}
score_seeds=${SCORE_SEEDS:-101 102}
share=$bin/../share/yolo-evolve
base_hyp=$share/data/hyps/hyp.scratch-low.yaml cfg=$share/models/yolov5n.yaml
export OMP_NUM_THREADS=1
mkdir -p "$work/score"

# the fitness (0.1 mAP@.5 + 0.9 mAP@.5:.95) of a results.csv's last row
final_fitness() {
	awk -F, 'NR > 1 { f = 0.1 * $7 + 0.9 * $8 } END { if (NR > 1) printf "%.4f", f; else print "nan" }' "$1"
}

# the evolutions, for the table: WORK/ALGORITHM-SEED.yaml, in order
evolutions() {
	(cd "$work" && ls -- *-[0-9]*.yaml 2>/dev/null | sed 's/\.yaml$//' | sort -V)
}

case $step in
_evolve) # ALGORITHM SEED: one evolution (a worker of the steps below)
	algorithm=$1 seed=$2 name=$1-$2 db=$work/$1-$2/evolve.db
	if [[ $algorithm == yolov5 ]]; then
		plan=(--generations "$generations")
	else
		plan=(--generations $((generations * 10)) --budget $((generations * epochs / 3)))
	fi
	if [[ -f $db ]]; then
		"$bin/yolo-evolve" --resume --db "$db" "${plan[@]}" >>"$work/$name.log" 2>&1 || true
	else
		"$bin/yolo-evolve" --project "$work" --name "$name" --algorithm "$algorithm" --seed "$seed" \
			--data "$data" --cfg "$cfg" --hyp "$base_hyp" --trainer native --epochs "$epochs" \
			--imgsz "$imgsz" --batch-size 16 --parallel 1 --report-every 0 "${plan[@]}" \
			>"$work/$name.log" 2>&1 || true
	fi
	"$bin/yolo-evolve" export --db "$db" --best "$work/$name.yaml" >/dev/null
	;;
_score) # NAME SEED: retrain WORK/NAME.yaml (NAME base: the base hyp) with SEED
	name=$1 seed=$2 hyp=$work/$1.yaml out=$work/score/$1-s$2
	[[ $name == base ]] && hyp=$base_hyp
	[[ -f $out.done ]] && exit 0
	rm -rf "$out"
	"$bin/yolo-train" --data "$data" --cfg "$cfg" --hyp "$hyp" --epochs "$epochs" --imgsz "$imgsz" \
		--batch-size 16 --seed "$seed" --project "$work/score" --name "$name-s$seed" --exist-ok \
		>"$out.log" 2>&1 && touch "$out.done"
	;;
score)
	for n in base $(evolutions); do for s in $score_seeds; do echo "$n $s"; done; done |
		xargs -P "$jobs" -L 1 "$0" "$bin" "$data" "$work" _score
	;;
table)
	echo "| evolution | trainer epochs | recommended: generation, observed fitness | retrained (seeds ${score_seeds// /, }) | mean |"
	echo "|---|---|---|---|---|"
	for n in base $(evolutions); do
		spent=- observed=-
		if [[ $n != base ]]; then
			db=$work/$n/evolve.db
			spent=$(sqlite3 -readonly "$db" "SELECT sum(epochs_done) FROM generations")
			g=$(sed -n 's/^# Best generation: //p' "$work/$n.yaml")
			observed=$(sqlite3 -readonly "$db" "SELECT printf('%d, %.4f (%d run%s)', $g, avg(fitness),
				count(*), CASE count(*) WHEN 1 THEN '' ELSE 's' END) FROM generations
				WHERE status = 'done' AND (generation = $g OR reevaluates = $g)")
		fi
		fits=() sum=0
		for s in $score_seeds; do
			f=$(final_fitness "$work/score/$n-s$s/results.csv" 2>/dev/null || echo nan)
			fits+=("$f") sum=$(awk -v a="$sum" -v b="$f" 'BEGIN { print a + b }')
		done
		printf '| %s | %s | %s | %s | %.4f |\n' "$n" "$spent" "$observed" "${fits[*]}" \
			"$(awk -v a="$sum" -v k="${#fits[@]}" 'BEGIN { print a / k }')"
	done
	;;
*)
	for s in $seeds; do echo "$step $s"; done |
		xargs -P "$jobs" -L 1 "$0" "$bin" "$data" "$work" _evolve
	;;
esac
