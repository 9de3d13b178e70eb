#!/usr/bin/env bash
# search_bench.sh - bench/search's synthetic trainer keeps the trainer
# contract (results.csv with YOLOv5's 14 columns row by row, exit 0; SIGTERM
# ends it with 143; the same hyp and seed give the same bytes, another seed
# other noise; a bad hyp or objective exits 2), its --truth is the noise-free
# final value (the rows scatter around it), and bench/search/run.sh prints
# its table through the real yolo-evolve.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
: "${SYNTH_TRAINER:?set SYNTH_TRAINER to the built synth_trainer}"
ST=$SYNTH_TRAINER

section "the trainer contract"
"$ST" --hyp "$BASE_HYP" --epochs 5 --save-dir a --seed 1 --objective bowl >a.out
check_eq "exit 0, 5 rows and a header" 6 "$(wc -l <a/results.csv)"
"$FX" --hyp "$BASE_HYP" --epochs 1 --save-dir fx >/dev/null
check_eq "YOLOv5's header (the fixture trainer's)" "$(head -1 fx/results.csv)" "$(head -1 a/results.csv)"
check_eq "14 columns" 14 "$(awk -F, 'NR == 2 { print NF }' a/results.csv)"
"$ST" --hyp "$BASE_HYP" --epochs 5 --save-dir b --seed 1 --objective bowl >/dev/null
check "the same hyp and seed: the same bytes" cmp -s a/results.csv b/results.csv
"$ST" --hyp "$BASE_HYP" --epochs 5 --save-dir c --seed 2 --objective bowl >/dev/null
check "another seed: other noise" bash -c "! cmp -s a/results.csv c/results.csv"
SYNTH_EPOCH_MS=200 "$ST" --hyp "$BASE_HYP" --epochs 50 --save-dir d --seed 1 >/dev/null &
pid=$!
BG_PIDS+=("$pid")
sleep 0.5
kill -TERM "$pid"
RC=0
wait "$pid" || RC=$?
check_eq "SIGTERM: exit 143" 143 "$RC"
rows=$(($(wc -l <d/results.csv) - 1))
check "SIGTERM: stopped early ($rows rows of 50)" test "$rows" -lt 50
RC=0
"$ST" --hyp "$BASE_HYP" --epochs 5 --save-dir e --objective nope 2>err.txt || RC=$?
check_eq "an unknown objective exits 2" 2 "$RC"
check "... naming it" grep -q "unknown objective 'nope'" err.txt

section "the noise-free value"
for objective in bowl ridge modes flat; do
	truth=$("$ST" --truth --hyp "$BASE_HYP" --epochs 10 --objective "$objective")
	SYNTH_NOISE=0 "$ST" --hyp "$BASE_HYP" --epochs 10 --save-dir "n$objective" --objective "$objective" >/dev/null
	last=$(awk -F, 'END { printf "%.4f", 0.1 * $7 + 0.9 * $8 }' "n$objective/results.csv")
	check "$objective: --truth $truth is the last row's fitness without run noise ($last)" \
		awk -v a="$truth" -v b="$last" 'BEGIN { exit !(a - b < 0.01 && b - a < 0.01) }'
done
mean=$(for s in $(seq 1 40); do
	"$ST" --hyp "$BASE_HYP" --epochs 10 --save-dir "m$s" --seed "$s" >/dev/null
	awk -F, 'END { print 0.1 * $7 + 0.9 * $8 }' "m$s/results.csv"
done | awk '{ s += $1 } END { printf "%.4f", s / NR }')
truth=$("$ST" --truth --hyp "$BASE_HYP")
check "40 seeds scatter around the truth (mean $mean, truth $truth, within 10 %)" \
	awk -v a="$mean" -v b="$truth" 'BEGIN { exit !(a > 0.9 * b && a < 1.1 * b) }'
keys=$(awk -F': *' '/^[a-z0-9_]+:/ { k = k sep $1; sep = "," } END { print k }' "$BASE_HYP")
values=$(awk -F': *' '/^[a-z0-9_]+:/ { sub(/ *#.*/, "", $2); v = v sep $2; sep = "," } END { print v }' "$BASE_HYP")
check_eq "--truth-csv: a value per row, the base's as --truth" "$truth|$truth" \
	"$(printf '%s\n%s\n%s\n' "$keys" "$values" "$values" | "$ST" --truth-csv --epochs 10 | paste -sd'|')"
RC=0
printf 'lr0,momentum\n0.01,0.9\n' | "$ST" --truth-csv 2>err.txt >/dev/null || RC=$?
check_eq "--truth-csv without every mutable key exits 2" 2 "$RC"
check "... naming the first missing column" grep -q "no column 'lrf'" err.txt

section "the table objective (real curves, kernel regression)"
TABLE=$YE_SOURCE_ROOT/bench/search/curves/table.csv
RC=0
"$ST" --hyp "$BASE_HYP" --epochs 5 --save-dir t0 --objective table 2>err.txt || RC=$?
check_eq "--objective table without --table exits 2" 2 "$RC"
"$ST" --hyp "$BASE_HYP" --epochs 20 --save-dir t1 --seed 1 --objective table --table "$TABLE" >/dev/null
check_eq "20 rows and a header" 21 "$(wc -l <t1/results.csv)"
"$ST" --hyp "$BASE_HYP" --epochs 20 --save-dir t2 --seed 1 --objective table --table "$TABLE" >/dev/null
check "the same hyp and seed: the same bytes" cmp -s t1/results.csv t2/results.csv
truth=$("$ST" --truth --hyp "$BASE_HYP" --epochs 20 --objective table --table "$TABLE")
SYNTH_NOISE=0 "$ST" --hyp "$BASE_HYP" --epochs 20 --save-dir t3 --objective table --table "$TABLE" >/dev/null
last=$(awk -F, 'END { printf "%.4f", 0.1 * $7 + 0.9 * $8 }' t3/results.csv)
check "--truth $truth is the last row's fitness without run noise ($last)" \
	awk -v a="$truth" -v b="$last" 'BEGIN { exit !(a - b < 0.01 && b - a < 0.01) }'
run=$(awk -F, 'NR == 2 { print $1 }' "$TABLE")
awk -F, -v g="$run" 'NR == 1 || ($1 == g && ++n == 1)' "$TABLE" | cut -d, -f2-30 >row.csv
near=$("$ST" --truth-csv --epochs 20 --objective table --table "$TABLE" <row.csv)
check "a run of the table is answered near its own final fitness ($near)" \
	awk -v a="$near" 'BEGIN { exit !(a >= 0 && a < 1) }'
head -1 "$TABLE" >bad.csv
awk -F, 'NR > 1 && $31 != 5 && ++n <= 40' "$TABLE" >>bad.csv
RC=0
"$ST" --truth --hyp "$BASE_HYP" --objective table --table bad.csv 2>err.txt || RC=$?
check_eq "a run with an epoch missing exits 2" 2 "$RC"
check "... naming the line" grep -q "bad.csv:[0-9]*: run .*: epoch 6, expected 5" err.txt

section "bench/search/run.sh through yolo-evolve"
build=$(cd "$(dirname "$YOLO_EVOLVE")/.." && pwd)
bash "$YE_SOURCE_ROOT/bench/search/run.sh" -b "$build" -g 6 -n 2 -o "bowl flat table" >table.txt 2>&1 || true
check "a row per objective" test "$(grep -c '^| \(bowl\|flat\|table\) ' table.txt)" -eq 3
check "60 trainer epochs spent per run" grep -q '| 60 \[60, 60\]' table.txt
show_file table.txt 3

ye_finish
