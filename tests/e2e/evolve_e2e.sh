#!/usr/bin/env bash
# evolve_e2e.sh - whole evolutions with the fixture trainer: improvement,
# bounds, determinism, parent methods, failures of every kind, retries,
# the YOLOv5 files, export and status, --evolve-keys.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

P=$WORK/runs

# Show the log of an evolution that should have worked.
show_log() { show_file "$WORK/$1.log"; }

section "(a) 40 generations improve fitness within the bounds"
evolve "$P" a --epochs 3 --generations 40 --seed 3
check_eq "evolution a exits 0" 0 "$RC" || show_log a
A=$P/a/evolve.db
check_eq "40 generations, all 'done'" "40|40" \
	"$(sql "$A" "SELECT count(*), sum(status = 'done') FROM generations")"
check_eq "generations are 0..39" "0|39|40" \
	"$(sql "$A" "SELECT min(generation), max(generation), count(DISTINCT generation) FROM generations")"
f0=$(sql "$A" "SELECT fitness FROM generations WHERE generation = 0")
f30=$(sql "$A" "SELECT max(fitness) FROM generations WHERE generation BETWEEN 30 AND 39")
if num_gt "$f30" "$(awk -v f="$f0" 'BEGIN { print 1.5 * f }')"; then
	pass "best fitness of generations 30-39 ($f30) > 1.5 x generation 0's ($f0)"
else
	fail "best fitness of generations 30-39 ($f30) is not clearly above generation 0's ($f0)"
fi
check_eq "generation 0 has parent NULL" "1" \
	"$(sql "$A" "SELECT parent IS NULL FROM generations WHERE generation = 0")"
check_eq "every later generation has a done parent bred before it" 0 \
	"$(sql "$A" "SELECT count(*) FROM generations g WHERE generation > 0 AND (parent IS NULL
	   OR parent >= generation OR parent NOT IN (SELECT generation FROM generations WHERE status = 'done'))")"
bad=""
for k in "${HYP_KEYS[@]}"; do
	want=$(yaml_value "$BASE_HYP" "$k")
	[[ -z "$want" && "$k" == anchors ]] && want=3
	got=$(sql "$A" "SELECT \"$k\" FROM generations WHERE generation = 0")
	num_eq "$want" "$got" || bad+=" $k=$got(yaml $want)"
done
check_eq "generation 0 has the hyp values of hyp.scratch-low.yaml" "" "$bad"
check_eq "lr0 within [1e-5, 0.1] and momentum within [0.6, 0.98] in every generation" 0 \
	"$(sql "$A" "SELECT count(*) FROM generations WHERE lr0 NOT BETWEEN 1e-5 AND 0.1
	   OR momentum NOT BETWEEN 0.6 AND 0.98 OR anchors NOT BETWEEN 2 AND 10
	   OR box NOT BETWEEN 0.02 AND 0.2 OR degrees NOT BETWEEN 0 AND 45")"
# all keys against the meta table stored in the database ("key: [gain, lower, upper]")
bad=""
while read -r k lo hi; do
	n=$(sql "$A" "SELECT count(*) FROM generations WHERE \"$k\" < $lo OR \"$k\" > $hi")
	[[ "$n" == 0 ]] || bad+=" $k($n outside [$lo, $hi])"
done < <(sql "$A" "SELECT meta FROM evolution" | tr -d '[],' | awk 'NF == 4 { sub(/:$/, "", $1); print $1, $3, $4 }')
nkeys=$(sql "$A" "SELECT meta FROM evolution" | grep -c ': \[' || true)
check_eq "the stored meta table has 29 keys" 29 "$nkeys"
check_eq "every key of every generation within its stored bounds" "" "$bad"
check_eq "frozen keys (iou_t, fl_gamma, perspective, fliplr) never change" "1|1|1|1|0.2|0.0|0.0|0.5" \
	"$(sql "$A" "SELECT count(DISTINCT iou_t), count(DISTINCT fl_gamma), count(DISTINCT perspective),
	   count(DISTINCT fliplr), min(iou_t), min(fl_gamma), min(perspective), min(fliplr) FROM generations")"
bad=""
for k in "${HYP_KEYS[@]}"; do
	n=$(sql "$A" "SELECT count(*) FROM generations
	    WHERE abs(\"$k\" * 100000 - round(\"$k\" * 100000)) > 1e-6 * max(1, abs(\"$k\" * 100000))")
	[[ "$n" == 0 ]] || bad+=" $k($n)"
done
check_eq "every hyp value has at most 5 decimals" "" "$bad"
check_eq "more than one distinct value of lr0 and of mosaic" "1" \
	"$(sql "$A" "SELECT count(DISTINCT lr0) > 1 AND count(DISTINCT mosaic) > 1 FROM generations")"

section "(b) same seed, same table; another seed, another table"
evolve "$P" b --epochs 3 --generations 40 --seed 3
check_eq "evolution b (seed 3 again, other folder) exits 0" 0 "$RC"
gen_dump "$A" >a.csv
gen_dump "$P/b/evolve.db" >b.csv
if cmp -s a.csv b.csv; then
	pass "seed 3 twice: identical generations tables ($(wc -l <a.csv) rows)"
else
	fail "seed 3 twice: the generations tables differ"
	show_diff a.csv b.csv 4
fi
evolve "$P" c --epochs 3 --generations 40 --seed 4
check_eq "evolution c (seed 4) exits 0" 0 "$RC"
gen_dump "$P/c/evolve.db" >c.csv
if cmp -s a.csv c.csv; then fail "seed 3 and seed 4 give the same table"; else pass "seed 4 gives a different table"; fi
check_eq "seeds 3 and 4 share generation 0's hyp" \
	"$(sql "$A" "SELECT $HYP_COLS FROM generations WHERE generation = 0")" \
	"$(sql "$P/c/evolve.db" "SELECT $HYP_COLS FROM generations WHERE generation = 0")"

section "(c) --parent weighted"
evolve "$P" w --epochs 3 --generations 12 --seed 5 --parent weighted
check_eq "evolution with --parent weighted exits 0" 0 "$RC" || show_log w
W=$P/w/evolve.db
check_eq "the evolution stores parent method 'weighted'" weighted "$(sql "$W" "SELECT parent FROM evolution")"
check_eq "12 done generations" "12|12" "$(sql "$W" "SELECT count(*), sum(status = 'done') FROM generations")"
check_eq "generations 1..11 store an earlier done parent" 11 \
	"$(sql "$W" "SELECT count(*) FROM generations WHERE generation > 0 AND parent >= 0 AND parent < generation
	   AND parent IN (SELECT generation FROM generations WHERE status = 'done')")"
gen_dump "$W" >w.csv
evolve "$P" s --epochs 3 --generations 12 --seed 5
gen_dump "$P/s/evolve.db" >s.csv
if cmp -s w.csv s.csv; then fail "--parent weighted bred exactly as single"; else pass "--parent weighted breeds differently from single"; fi

section "(d) failing candidates are recorded and never parents"
# --max-failures 0: the circuit breaker (fail_fast.sh) would stop a long run of failures
FIXTURE_FAIL_IF='lr0>0.0105' FIXTURE_MODE=fail evolve "$P" d --epochs 3 --generations 25 --seed 3 \
	--max-failures 0
check_eq "evolution with failing candidates exits 0" 0 "$RC" || show_log d
D=$P/d/evolve.db
check_eq "all 25 generations finished (done or failed)" "25|25" \
	"$(sql "$D" "SELECT count(*), sum(status IN ('done', 'failed')) FROM generations")"
nfail=$(sql "$D" "SELECT count(*) FROM generations WHERE status = 'failed'")
check "some generations failed ($nfail)" test "$nfail" -gt 0
check "some generations are done" test "$(sql "$D" "SELECT count(*) FROM generations WHERE status = 'done'")" -gt 0
check_eq "failed generations are exactly those with lr0 > 0.0105" 0 \
	"$(sql "$D" "SELECT count(*) FROM generations WHERE (status = 'failed') != (lr0 > 0.0105)")"
check_eq "every failed generation has exit_status 1" 0 \
	"$(sql "$D" "SELECT count(*) FROM generations WHERE status = 'failed' AND exit_status IS NOT 1")"
check_eq "every failed error holds the exit status and the log tail" 0 \
	"$(sql "$D" "SELECT count(*) FROM generations WHERE status = 'failed' AND NOT (error LIKE '%exit status 1%'
	   AND error LIKE '%simulated training failure%')")"
note "e.g. $(sql "$D" "SELECT error FROM generations WHERE status = 'failed' LIMIT 1" | tr "\n" " " | head -c 160)"
check_eq "no failed generation is ever a parent" "" \
	"$(sql "$D" "SELECT generation FROM generations WHERE parent IN (SELECT generation FROM generations WHERE status = 'failed')")"
check_eq "failed generations have no fitness" 0 \
	"$(sql "$D" "SELECT count(*) FROM generations WHERE status = 'failed' AND fitness IS NOT NULL")"
best_sql=$(sql "$D" "SELECT generation FROM best LIMIT 1")
best_yaml=$(sed -n 's/^# Best generation: //p' "$P/d/hyp_evolve.yaml")
check_eq "with failures, hyp_evolve.yaml's best generation equals SQL's" "$best_sql" "$best_yaml"
check_eq "with failures, evolve.csv holds a row per done generation" \
	"$(($(sql "$D" "SELECT count(*) FROM generations WHERE status = 'done'") + 1))" "$(wc -l <"$P/d/evolve.csv")"

section "(e) crash, nan, garbage, noresults, truncated, hang"
# every candidate fails: with the circuit breaker off, the evolution goes on to the end
# and says, by exit status 4, that nothing succeeded
# mode  pattern-in-error  expected-exit-status (empty: any)
while read -r mode pattern code; do
	FIXTURE_MODE=$mode evolve "$P" "m_$mode" --epochs 2 --generations 2 --seed 1 --max-failures 0
	M=$P/m_$mode/evolve.db
	if [[ "$RC" != 4 ]]; then
		fail "mode $mode: the evolution exits $RC"
		show_log "m_$mode"
		continue
	fi
	check_eq "mode $mode: 2 generations, both 'failed'" "2|2" \
		"$(sql "$M" "SELECT count(*), sum(status = 'failed') FROM generations")"
	check_eq "mode $mode: the errors mention '$pattern'" 0 \
		"$(sql "$M" "SELECT count(*) FROM generations WHERE error IS NULL OR instr(error, '$pattern') = 0")"
	if [[ -n "$code" ]]; then
		check_eq "mode $mode: exit_status $code" "$code|$code" \
			"$(sql "$M" "SELECT min(exit_status), max(exit_status) FROM generations")"
	fi
	note "$mode: $(sql "$M" "SELECT error FROM generations LIMIT 1" | tr "\n" " " | head -c 150)"
done <<'EOF'
crash SIGSEGV 139
nan finite 0
garbage results.csv 0
noresults results.csv 0
truncated results.csv 0
EOF
t0=$SECONDS
FIXTURE_MODE=hang evolve "$P" m_hang --epochs 2 --generations 2 --seed 1 --timeout 2 --grace 1 \
	--max-failures 0
check_eq "mode hang with --timeout 2: the evolution exits 4 (no success)" 4 "$RC"
check_eq "mode hang: 2 generations 'failed' with 'timeout'" "2|2" \
	"$(sql "$P/m_hang/evolve.db" "SELECT count(*), sum(status = 'failed' AND error LIKE '%timeout%') FROM generations")"
check "mode hang: took under 12 s ($((SECONDS - t0)) s)" test $((SECONDS - t0)) -lt 12
check "mode hang: no trainer left running" wait_gone 3 "$P/m_hang/"
note "hang: $(sql "$P/m_hang/evolve.db" "SELECT error FROM generations LIMIT 1" | tr "\n" " " | head -c 150)"

section "(f) --retries 1 reruns a crashed candidate"
mkdir -p "$WORK/crashed"
FIXTURE_MODE=crash FIXTURE_CRASH_ONCE=$WORK/crashed evolve "$P" f --epochs 2 --generations 6 --seed 2 --retries 1
check_eq "evolution with --retries 1 exits 0" 0 "$RC" || show_log f
check_eq "every generation done with attempts = 2" "6|6|6" \
	"$(sql "$P/f/evolve.db" "SELECT count(*), sum(status = 'done'), sum(attempts = 2) FROM generations")"
check "the first attempt's folder is kept (g00000.attempt1)" test -d "$P/f/candidates/g00000.attempt1"
FIXTURE_MODE=crash evolve "$P" f2 --epochs 2 --generations 2 --seed 2 --retries 1 --max-failures 0
check_eq "a candidate crashing every time: failed after 2 attempts" "2|2" \
	"$(sql "$P/f2/evolve.db" "SELECT sum(status = 'failed'), sum(attempts = 2) FROM generations")"

section "(g) evolve.csv and hyp_evolve.yaml in the run folder"
check "evolve.csv and hyp_evolve.yaml exist" test -f "$P/a/evolve.csv" -a -f "$P/a/hyp_evolve.yaml"
if cmp -s <(head -n 1 "$P/a/evolve.csv") <(head -n 1 "$REF_OUT/evolve.csv"); then
	pass "evolve.csv header is byte-identical to YOLOv5's"
else
	fail "evolve.csv header differs from YOLOv5's"
fi
check_eq "evolve.csv has a row per generation" 41 "$(wc -l <"$P/a/evolve.csv")"
best_sql=$(sql "$A" "SELECT generation FROM best LIMIT 1")
best_max=$(sql "$A" "SELECT generation FROM generations WHERE status = 'done' ORDER BY fitness DESC, generation LIMIT 1")
best_yaml=$(sed -n 's/^# Best generation: //p' "$P/a/hyp_evolve.yaml")
check_eq "the 'best' view is the fittest done generation" "$best_max" "$best_sql"
check_eq "hyp_evolve.yaml '# Best generation:' equals the SQL best" "$best_sql" "$best_yaml"
check_eq "hyp_evolve.yaml '# Last generation:' is 39" 39 "$(sed -n 's/^# Last generation: //p' "$P/a/hyp_evolve.yaml")"
lr_yaml=$(yaml_value "$P/a/hyp_evolve.yaml" lr0)
lr_sql=$(sql "$A" "SELECT lr0 FROM best LIMIT 1")
check "hyp_evolve.yaml lr0 ($lr_yaml) is the best generation's ($lr_sql)" num_eq "$lr_yaml" "$lr_sql"

section "(h) export reproduces the run folder's files"
run_ye export.log export --db "$A" --best "$WORK/x.yaml" --csv "$WORK/y.csv"
check_eq "export --best x.yaml --csv y.csv exits 0" 0 "$RC"
check "exported x.yaml equals hyp_evolve.yaml" cmp -s "$WORK/x.yaml" "$P/a/hyp_evolve.yaml"
check "exported y.csv equals evolve.csv" cmp -s "$WORK/y.csv" "$P/a/evolve.csv"
run_ye export2.log export --project "$P" --name a --csv -
check "export --project/--name --csv - prints evolve.csv" cmp -s "$WORK/export2.log" "$P/a/evolve.csv"

section "(i) status"
run_ye status.log status --db "$A"
check_eq "status exits 0" 0 "$RC"
check "status prints the done count (40 done)" grep -q '40 done' status.log
run_ye status_d.log status --db "$D"
check "status of (d) prints its failed count ($nfail failed)" grep -q "$nfail failed" status_d.log

section "(j) --evolve-keys lr0,momentum"
evolve "$P" j --epochs 3 --generations 15 --seed 3 --evolve-keys lr0,momentum
check_eq "evolution with --evolve-keys exits 0" 0 "$RC" || show_log j
J=$P/j/evolve.db
changed=""
for k in "${HYP_KEYS[@]}"; do
	n=$(sql "$J" "SELECT count(*) FROM generations g, generations g0 WHERE g0.generation = 0
	    AND g.\"$k\" != g0.\"$k\"")
	[[ "$n" == 0 ]] || changed+="$k "
done
check_eq "only lr0 and momentum ever differ from generation 0" "lr0 momentum " "$changed"

section "(k) --parallel 3: same table whatever the finishing order"
FIXTURE_DURATION_MS=5,60 evolve "$P" k1 --epochs 2 --generations 16 --seed 9 --parallel 3
rc1=$RC
FIXTURE_DURATION_MS=5,60 evolve "$P" k2 --epochs 2 --generations 16 --seed 9 --parallel 3
check_eq "two --parallel 3 runs with random trainer durations exit 0" "0 0" "$rc1 $RC"
gen_dump "$P/k1/evolve.db" >k1.csv
gen_dump "$P/k2/evolve.db" >k2.csv
check_eq "16 done generations" "16|16" \
	"$(sql "$P/k1/evolve.db" "SELECT count(*), sum(status = 'done') FROM generations")"
if cmp -s k1.csv k2.csv; then
	pass "the two --parallel 3 runs have identical tables"
else
	fail "the two --parallel 3 runs differ"
	show_diff k1.csv k2.csv 4
fi
check_eq "generation i descends only from generations <= i - 3" 0 \
	"$(sql "$P/k1/evolve.db" "SELECT count(*) FROM generations WHERE parent > generation - 3")"

ye_finish
