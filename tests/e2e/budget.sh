#!/usr/bin/env bash
# budget.sh - --budget EPOCHS: the evolver launches a candidate only while
# its epochs fit in the trainer epochs left (finished candidates count what
# they trained, pruned and failed ones included; running and interrupted
# ones their whole --epochs), so it never spends more than the budget; the
# same candidates run at any --parallel timing and across SIGKILL +
# --resume; --resume keeps the budget and --resume --budget changes it;
# status shows it; bad values are one line and exit 2, nothing created.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

P=$WORK/runs

# spent DB: "candidates|epochs trained|budget"
spent() { sql "$1" "SELECT count(*), sum(epochs_done), (SELECT budget FROM evolution) FROM generations"; }

section "the budget reached exactly (epochs 4, budget 20: 5 candidates)"
run_ye one.log --project "$P" --name one --data none --trainer "$TRAINER" --epochs 4 \
	--generations 100 --seed 3 --budget 20
check_eq "exits 0" 0 "$RC"
check_eq "5 candidates, 20 epochs trained, budget recorded" "5|20|20" "$(spent "$P/one/evolve.db")"
check "the end of the budget is logged" grep -q "20 of 20 trainer epochs spent.*launching nothing more" one.log
check "the summary shows the budget" grep -q "^budget: 20 of 20 trainer epochs spent, 0 left" one.log

section "a budget that is no multiple of --epochs is never passed (22: still 5)"
evolve "$P" odd --epochs 4 --generations 100 --seed 3 --budget 22
check_eq "exits 0" 0 "$RC"
check_eq "5 candidates, 20 epochs" "5|20|22" "$(spent "$P/odd/evolve.db")"
check "the same table as budget 20" cmp -s <(gen_dump "$P/one/evolve.db") <(gen_dump "$P/odd/evolve.db")

section "--generations still caps a budget that is not reached"
evolve "$P" cap --epochs 4 --generations 3 --seed 3 --budget 100
check_eq "3 candidates, 12 epochs" "3|12|100" "$(spent "$P/cap/evolve.db")"

section "the GA too (population 6): 5 candidates in 20 epochs"
evolve "$P" ga --algorithm ga --population 6 --epochs 4 --generations 100 --seed 3 --budget 20
check_eq "exits 0" 0 "$RC"
check_eq "5 candidates, 20 epochs" "5|20|20" "$(spent "$P/ga/evolve.db")"

section "--parallel 3 with random durations: the same candidates, never over the budget"
FIXTURE_DURATION_MS=5,80 evolve "$P" par1 --epochs 4 --generations 100 --seed 5 --budget 30 --parallel 3
check_eq "run 1 exits 0" 0 "$RC"
FIXTURE_DURATION_MS=5,80 evolve "$P" par2 --epochs 4 --generations 100 --seed 5 --budget 30 --parallel 3
check_eq "run 2 exits 0" 0 "$RC"
check_eq "7 candidates, 28 epochs (30 has no room for an 8th)" "7|28|30" "$(spent "$P/par1/evolve.db")"
check "the two runs have the same table" cmp -s <(gen_dump "$P/par1/evolve.db") <(gen_dump "$P/par2/evolve.db")

section "pruned candidates count what they trained; the room they leave is used"
PRUNE=(--epochs 6 --generations 100 --seed 11 --parallel 2 --prune median --prune-warmup 1 --budget 90)
FIXTURE_CROSSING=1 FIXTURE_NOISE=0.02 evolve "$P" pr1 "${PRUNE[@]}"
check_eq "exits 0" 0 "$RC"
pruned=$(sql "$P/pr1/evolve.db" "SELECT count(*) FROM generations WHERE status = 'pruned'")
IFS='|' read -r n used budget <<<"$(spent "$P/pr1/evolve.db")"
note "$n candidates ($pruned pruned), $used of $budget epochs"
check "some candidates were pruned ($pruned)" test "$pruned" -gt 0
check "more than 15 candidates ran in 90 epochs ($n)" test "$n" -gt 15
check "never more than the budget ($used <= 90)" test "$used" -le 90
check "no room left for another candidate (90 - $used < 6)" test $((90 - used)) -lt 6
check_eq "epochs_done agrees with the epochs table" "$used" \
	"$(sql "$P/pr1/evolve.db" "SELECT count(*) FROM epochs")"
FIXTURE_CROSSING=1 FIXTURE_NOISE=0.02 FIXTURE_DURATION_MS=5,60 evolve "$P" pr2 "${PRUNE[@]}"
check "with random durations: the same table" cmp -s <(gen_dump "$P/pr1/evolve.db") <(gen_dump "$P/pr2/evolve.db")

section "status shows the budget"
"$YE" status --db "$P/one/evolve.db" >status.txt 2>&1
check "status: 'budget: 20 of 20 trainer epochs spent, 0 left'" grep -q "^budget: 20 of 20 trainer epochs spent, 0 left" status.txt
check "status: the budget is spent" grep -q "the budget is spent" status.txt
"$YE" status --db "$P/cap/evolve.db" >status_cap.txt 2>&1
check "status of a run under its budget: '12 of 100 ... 88 left'" grep -q "^budget: 12 of 100 trainer epochs spent, 88 left$" status_cap.txt
"$YE" status --db "$P/par1/evolve.db" >/dev/null 2>&1
evolve "$P" nob --epochs 2 --generations 2 --seed 3
"$YE" status --db "$P/nob/evolve.db" >status_nob.txt 2>&1
check "no budget: no budget line" bash -c "! grep -q '^budget' status_nob.txt"

section "--resume keeps the budget; --resume --budget extends it"
run_ye resume1.log --resume --db "$P/one/evolve.db" --quiet
check_eq "resume without --budget exits 0" 0 "$RC"
check_eq "nothing more ran" "5|20|20" "$(spent "$P/one/evolve.db")"
run_ye resume2.log --resume --db "$P/one/evolve.db" --budget 28 --quiet
check_eq "resume --budget 28 exits 0" 0 "$RC"
check_eq "7 candidates, 28 epochs" "7|28|28" "$(spent "$P/one/evolve.db")"
evolve "$P" ref28 --epochs 4 --generations 100 --seed 3 --budget 28
check "equals a run given 28 at once" cmp -s <(gen_dump "$P/one/evolve.db") <(gen_dump "$P/ref28/evolve.db")

section "SIGKILL at random moments + --resume (parallel 2, budget 40)"
KOPTS=(--epochs 4 --generations 100 --seed 21 --parallel 2 --budget 40)
FIXTURE_EPOCH_MS=40 evolve "$P" kref "${KOPTS[@]}"
check_eq "reference exits 0" 0 "$RC"
check_eq "reference: 10 candidates, 40 epochs" "10|40|40" "$(spent "$P/kref/evolve.db")"
db=$P/k/evolve.db
export FIXTURE_EPOCH_MS=40
"$YE" --project "$P" --name k --data none --trainer "$TRAINER" --quiet "${KOPTS[@]}" >>k.log 2>&1 &
BG=$!
BG_PIDS+=("$BG")
# a kill before the database holds its first candidate would leave nothing to resume
wait_sql 10 "$db" "SELECT count(*) FROM generations" || fail "no candidate started within 10 s"
kills=0
for _ in $(seq 1 60); do
	sleep "$(awk -v r=$((RANDOM % 300)) 'BEGIN { printf "%.3f", 0.05 + r / 1000 }')"
	if ! kill -0 "$BG" 2>/dev/null; then
		RC=0
		wait "$BG" 2>/dev/null || RC=$?
		break
	fi
	kill -KILL "$BG" 2>/dev/null || true
	wait "$BG" 2>/dev/null || true
	kills=$((kills + 1))
	wait_gone 5 "$P/k/candidates/" || true
	"$YE" --resume --db "$db" --quiet >>k.log 2>&1 &
	BG=$!
	BG_PIDS+=("$BG")
done
wait_pid_exit 60 "$BG" || fail "the last resume did not end"
unset FIXTURE_EPOCH_MS
note "$kills SIGKILLs"
check "killed at least 3 times ($kills)" test "$kills" -ge 3
check_eq "the last run exits 0" 0 "$RC"
check_eq "10 candidates, 40 epochs" "10|40|40" "$(spent "$db")"
check "the table equals the uninterrupted run's" cmp -s <(gen_dump "$P/kref/evolve.db") <(gen_dump "$db")

section "bad values: one line, exit 2, nothing created"
for bad in -1 abc 1.5 "" 10x 99999999999; do
	run_ye bad.log --project "$P" --name bad --data none --trainer "$TRAINER" --budget "$bad"
	check_eq "--budget '$bad' exits 2" 2 "$RC"
	check_eq "--budget '$bad': one line" 1 "$(wc -l <bad.log)"
	check "--budget '$bad': the line names --budget" grep -q -- "--budget" bad.log
done
note "e.g. $(cat bad.log)"
run_ye small.log --project "$P" --name bad --data none --trainer "$TRAINER" --epochs 10 --budget 9
check_eq "--budget 9 with --epochs 10 exits 2" 2 "$RC"
check "... and says no candidate fits" grep -q "no candidate fits" small.log
check "no run folder was made" test ! -e "$P/bad"
run_ye rbad.log --resume --db "$P/one/evolve.db" --budget -5
check_eq "--resume --budget -5 exits 2" 2 "$RC"
check_eq "... the stored budget is kept" 28 "$(sql "$P/one/evolve.db" "SELECT budget FROM evolution")"

ye_finish
