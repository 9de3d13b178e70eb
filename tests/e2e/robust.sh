#!/usr/bin/env bash
# robust.sh - --algorithm robust (issue 16): re-evaluations are rows of their
# own, linked by `reevaluates` to a done original with the same hyp and
# another trainer seed; every generation has its own seed; keys at 0 in the
# base can move; export --best names the best mean among the most evaluated
# candidates; the table depends on the seed and the results only (random
# durations, SIGKILL + --resume); --budget holds; --prune asha stops
# candidates at its rungs only, never a re-evaluation, deterministically;
# --algorithm guided (robust's breeding screened by a Gaussian-process
# model) keeps the same determinism.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

P=$WORK/runs
export FIXTURE_NOISE=0.03
OPTS=(--algorithm robust --epochs 3 --generations 40 --seed 4)

section "a robust evolution (40 generations, P = 1)"
evolve "$P" one "${OPTS[@]}"
check_eq "exits 0" 0 "$RC"
db=$P/one/evolve.db
reev=$(sql "$db" "SELECT count(*) FROM generations WHERE reevaluates IS NOT NULL")
note "$reev re-evaluation rows of 40"
check "some generations are re-evaluations ($reev)" test "$reev" -gt 0
check_eq "each re-evaluates an earlier done original with the same hyp, another seed, no parent" 0 \
	"$(sql "$db" "SELECT count(*) FROM generations r LEFT JOIN generations o ON o.generation = r.reevaluates
		WHERE r.reevaluates IS NOT NULL AND (o.generation IS NULL OR o.reevaluates IS NOT NULL
		OR o.generation >= r.generation OR o.status != 'done' OR o.lr0 != r.lr0 OR o.mixup != r.mixup
		OR o.seed = r.seed OR r.parent IS NOT NULL)")"
check_eq "no candidate has more than 2 evaluations (the default)" 0 \
	"$(sql "$db" "SELECT count(*) FROM (SELECT reevaluates, count(*) AS n FROM generations
		WHERE reevaluates IS NOT NULL GROUP BY reevaluates HAVING n > 1)")"
check_eq "every generation has its own trainer seed" 40 "$(sql "$db" "SELECT count(DISTINCT seed) FROM generations")"
check "keys that are 0 in the base moved (mixup, degrees, copy_paste, shear, flipud)" test \
	"$(sql "$db" "SELECT count(*) FROM generations WHERE mixup > 0 OR degrees > 0 OR copy_paste > 0 OR shear > 0 OR flipud > 0")" -gt 0
"$YE" export --db "$db" --best best.yaml
best=$(awk '/^# Best generation:/ { print $4 }' best.yaml)
want=$(sql "$db" "WITH c AS (SELECT coalesce(reevaluates, generation) AS g, avg(fitness) AS m, count(*) AS n
		FROM generations WHERE status = 'done' GROUP BY 1)
	SELECT g FROM c WHERE n = (SELECT max(n) FROM c) ORDER BY m DESC, g LIMIT 1")
check_eq "export --best: the best mean among the most evaluated candidates" "$want" "$best"
check "export --best says how it judged" grep -q "^# Judged by the mean fitness of its 2 evaluations" best.yaml
"$YE" status --db "$db" >status.txt 2>&1
check "status names the recommendation and its evaluations" \
	grep -q "^recommended (export --best): generation $best, mean fitness .* over its 2 evaluations" status.txt
check_eq "best.yaml's lr0 is that generation's" "$(sql "$db" "SELECT lr0 FROM generations WHERE generation = $best")" \
	"$(yaml_value best.yaml lr0)"

section "the same table whatever the timing (P = 3, random durations)"
FIXTURE_DURATION_MS=5,60 evolve "$P" p1 "${OPTS[@]}" --parallel 3
check_eq "run 1 exits 0" 0 "$RC"
FIXTURE_DURATION_MS=5,60 evolve "$P" p2 "${OPTS[@]}" --parallel 3
check_eq "run 2 exits 0" 0 "$RC"
dump() { sqlite3 -batch -csv "$1" "SELECT $DET_COLS, reevaluates, seed FROM generations ORDER BY generation"; }
check "the two tables are equal (reevaluates and seed included)" cmp -s <(dump "$P/p1/evolve.db") <(dump "$P/p2/evolve.db")

# kill_resume NAME OPTIONS...: a reference run, then the same run SIGKILLed at
# random moments and resumed until it ends; the tables must be equal.
kill_resume() {
	local name=$1
	shift
	FIXTURE_EPOCH_MS=15 evolve "$P" "${name}ref" "$@"
	check_eq "reference exits 0" 0 "$RC"
	export FIXTURE_EPOCH_MS=15
	"$YE" --project "$P" --name "$name" --data none --trainer "$TRAINER" --quiet "$@" >>"$name.log" 2>&1 &
	BG=$!
	BG_PIDS+=("$BG")
	# a kill before the database holds its first candidate would leave nothing to resume
	wait_sql 10 "$P/$name/evolve.db" "SELECT count(*) FROM generations" || fail "no candidate started within 10 s"
	kills=0
	for _ in $(seq 1 30); do
		sleep "$(awk -v r=$((RANDOM % 250)) 'BEGIN { printf "%.3f", 0.05 + r / 1000 }')"
		if ! kill -0 "$BG" 2>/dev/null; then
			break
		fi
		kill -KILL "$BG" 2>/dev/null || true
		wait "$BG" 2>/dev/null || true
		kills=$((kills + 1))
		wait_gone 5 "$P/$name/candidates/" || true
		"$YE" --resume --db "$P/$name/evolve.db" --quiet >>"$name.log" 2>&1 &
		BG=$!
		BG_PIDS+=("$BG")
	done
	wait_pid_exit 60 "$BG" || fail "the last resume did not end"
	unset FIXTURE_EPOCH_MS
	note "$kills SIGKILLs"
	check "killed at least 3 times ($kills)" test "$kills" -ge 3
	check_eq "the last run exits 0" 0 "$RC"
	check "the table equals the uninterrupted run's" cmp -s <(dump "$P/${name}ref/evolve.db") <(dump "$P/$name/evolve.db")
}

section "SIGKILL at random moments + --resume (P = 2)"
kill_resume k "${OPTS[@]}" --parallel 2

section "--budget holds for robust"
evolve "$P" bud "${OPTS[@]}" --budget 30 --generations 100
check_eq "exits 0" 0 "$RC"
check_eq "10 candidates, 30 epochs" "10|30" "$(sql "$P/bud/evolve.db" "SELECT count(*), sum(epochs_done) FROM generations")"

section "--prune asha: rungs, re-evaluations kept, the same table whatever the timing"
AOPTS=("${OPTS[@]}" --epochs 9 --generations 40 --prune asha --prune-warmup 0 --parallel 3)
FIXTURE_DURATION_MS=5,60 evolve "$P" a1 "${AOPTS[@]}"
check_eq "run 1 exits 0" 0 "$RC"
FIXTURE_DURATION_MS=5,60 evolve "$P" a2 "${AOPTS[@]}"
check_eq "run 2 exits 0" 0 "$RC"
db=$P/a1/evolve.db
pruned=$(sql "$db" "SELECT count(*) FROM generations WHERE status = 'pruned'")
note "$pruned pruned of 40"
check "some candidates were pruned ($pruned)" test "$pruned" -gt 0
check_eq "only at the rungs of 9 epochs (epochs 0 and 2: 1 or 3 trained)" 0 \
	"$(sql "$db" "SELECT count(*) FROM generations WHERE status = 'pruned' AND epochs_done NOT IN (1, 3)")"
check_eq "no re-evaluation is pruned" 0 \
	"$(sql "$db" "SELECT count(*) FROM generations WHERE status = 'pruned' AND reevaluates IS NOT NULL")"
check "the two tables are equal" cmp -s <(dump "$P/a1/evolve.db") <(dump "$P/a2/evolve.db")
evolve "$P" abud "${AOPTS[@]}" --budget 60 --generations 200
check_eq "with --budget 60: exits 0" 0 "$RC"
check "... and spends at most 60 epochs" test "$(sql "$P/abud/evolve.db" "SELECT sum(epochs_done) FROM generations")" -le 60

section "--algorithm halving: robust's breeding with --prune asha, SIGKILL + --resume mid-rung"
evolve "$P" h1 --algorithm halving --epochs 9 --generations 30 --seed 4 --parallel 2
check_eq "exits 0" 0 "$RC"
check_eq "it records --prune asha" asha "$(sql "$P/h1/evolve.db" "SELECT prune FROM evolution")"
check "it prunes" test "$(sql "$P/h1/evolve.db" "SELECT count(*) FROM generations WHERE status = 'pruned'")" -gt 0
check "and re-evaluates" test "$(sql "$P/h1/evolve.db" "SELECT count(*) FROM generations WHERE reevaluates IS NOT NULL")" -gt 0
RC=0
"$YE" --project "$P" --name h2 --data none --trainer "$TRAINER" --algorithm halving --prune median \
	--generations 2 --quiet 2>err.txt || RC=$?
check_eq "--prune median with halving exits 2" 2 "$RC"
check "... saying why" grep -q "halving prunes with asha" err.txt
kill_resume hk --algorithm halving --epochs 9 --generations 40 --seed 4 --parallel 2

section "--algorithm guided: the model's choice, the same table whatever the timing and across SIGKILL + --resume"
GOPTS=(--algorithm guided --epochs 3 --generations 40 --seed 4)
FIXTURE_DURATION_MS=5,60 evolve "$P" g1 "${GOPTS[@]}" --parallel 3
check_eq "run 1 exits 0, records guided, no pruning" "0|guided|none" \
	"$RC|$(sql "$P/g1/evolve.db" "SELECT algorithm, prune FROM evolution")"
FIXTURE_DURATION_MS=5,60 evolve "$P" g2 "${GOPTS[@]}" --parallel 3
check_eq "run 2 exits 0" 0 "$RC"
check "the two tables are equal" cmp -s <(dump "$P/g1/evolve.db") <(dump "$P/g2/evolve.db")
check "it re-evaluates" test "$(sql "$P/g1/evolve.db" "SELECT count(*) FROM generations WHERE reevaluates IS NOT NULL")" -gt 0
# at P = 3 generation i is bred from 0 .. i-6 (lag 2P)
check_eq "guided's lag is 2P: every parent and re-evaluated candidate at least 6 generations older" 0 \
	"$(sql "$P/g1/evolve.db" "SELECT count(*) FROM generations WHERE coalesce(parent, reevaluates) > generation - 6")"
check "... and some exactly 6" test \
	"$(sql "$P/g1/evolve.db" "SELECT count(*) FROM generations WHERE coalesce(parent, reevaluates) = generation - 6")" -gt 0
kill_resume gk "${GOPTS[@]}" --parallel 2

section "halving's lag is 3P; the default stays yolov5"
RC=0
FIXTURE_DURATION_MS=5,60 "$YE_DEFAULT" --project "$P" --name d1 --data none --trainer "$TRAINER" --quiet \
	--algorithm halving --epochs 9 --generations 30 --seed 4 --parallel 2 >d1.log 2>&1 || RC=$?
check_eq "halving: exits 0, records asha" "0|halving|asha" \
	"$RC|$(sql "$P/d1/evolve.db" "SELECT algorithm, prune FROM evolution")"
# at P = 2 generation i is bred from 0 .. i-6: its parent or the candidate it re-evaluates is older
check_eq "every parent and re-evaluated candidate at least 6 generations older" 0 \
	"$(sql "$P/d1/evolve.db" "SELECT count(*) FROM generations WHERE coalesce(parent, reevaluates) > generation - 6")"
check "... and some exactly 6 (the lag is not larger)" test \
	"$(sql "$P/d1/evolve.db" "SELECT count(*) FROM generations WHERE coalesce(parent, reevaluates) = generation - 6")" -gt 0
"$YE_DEFAULT" --project "$P" --name d2 --data none --trainer "$TRAINER" --quiet --generations 2 --epochs 1 \
	>d2.log 2>&1 || true
check_eq "no --algorithm: yolov5" yolov5 "$(sql "$P/d2/evolve.db" "SELECT algorithm FROM evolution")"

ye_finish
