#!/usr/bin/env bash
# kill_resume.sh - an evolution SIGKILLed at random moments and resumed each
# time ends with exactly the table of an uninterrupted run; SIGINT stops it
# cleanly (exit 130, 'interrupted'); --resume --generations N extends a run.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

OPTS=(--epochs 4 --generations 25 --seed 7)
export FIXTURE_EPOCH_MS=30

# A random sleep of 0.1 .. 0.6 s.
random_sleep() { sleep "$(awk -v r=$((RANDOM % 501)) 'BEGIN { printf "%.3f", 0.1 + r / 1000 }')"; }

# start_bg LOG ARGS...: yolo-evolve ARGS in the background; sets BG.
start_bg() {
	local log=$1
	shift
	"$YE" "$@" >>"$log" 2>&1 &
	BG=$!
	BG_PIDS+=("$BG")
}

is_running() { kill -0 "$1" 2>/dev/null && [[ "$(awk '{ print $3 }' /proc/"$1"/stat 2>/dev/null)" != Z ]]; }

section "reference run (25 generations, epochs 4, seed 7, 30 ms per epoch)"
evolve "$WORK/ref" r "${OPTS[@]}"
check_eq "reference run exits 0" 0 "$RC"
REF=$WORK/ref/r/evolve.db
check_eq "reference: 25 done generations" "25|25" "$(sql "$REF" "SELECT count(*), sum(status = 'done') FROM generations")"
gen_dump "$REF" >ref.csv

# One interrupted run in folder $WORK/int$1; adds to KILLS and HITS.
KILLS=0
HITS=0
interrupted_run() {
	local project=$WORK/int$1
	local run=$project/k db=$project/k/evolve.db log=$WORK/int$1.log
	local kills=0 hits=0 starts=1 lingering=0
	start_bg "$log" --project "$project" --name k --data none --trainer "$TRAINER" "${OPTS[@]}"
	while :; do
		random_sleep
		if is_running "$BG"; then
			local trainers
			trainers=$(procs_matching "$run/candidates/")
			kill -KILL "$BG" 2>/dev/null || true
			RC=0
			wait "$BG" 2>/dev/null || RC=$?
			if ((RC != 137)); then
				# it ended by itself just before the kill
				((RC == 0)) && break
				fail "run $1: yolo-evolve exited $RC by itself (start $starts)"
				show_file "$log" 5
				return
			fi
			kills=$((kills + 1))
			[[ -n "$trainers" ]] && hits=$((hits + 1))
			# its trainer gets SIGTERM from the kernel (parent-death signal)
			if ! wait_gone 5 "$run/candidates/"; then
				lingering=$((lingering + 1))
				fail "run $1, kill $kills: a trainer still runs 5 s after the evolver was killed: $(procs_matching "$run/candidates/")"
				for p in $(procs_matching "$run/candidates/"); do kill -KILL "$p" 2>/dev/null || true; done
			fi
			if ((starts > 60)); then
				fail "run $1: still not finished after 60 resumes"
				return
			fi
			start_bg "$log" --resume --db "$db"
			starts=$((starts + 1))
		else
			RC=0
			wait "$BG" 2>/dev/null || RC=$?
			if ((RC != 0)); then
				fail "run $1: yolo-evolve exited $RC by itself (start $starts)"
				show_file "$log" 5
				return
			fi
			break
		fi
	done
	pass "run $1: $kills SIGKILLs ($hits while a trainer ran), $starts starts, finished by itself with exit 0"
	((lingering == 0)) && pass "run $1: after every kill the trainer was gone within 5 s"
	check_eq "run $1: PRAGMA integrity_check" ok "$(sql "$db" "PRAGMA integrity_check")"
	check_eq "run $1: generations are 0..24 without gaps, all done" "0|24|25|25" \
		"$(sql "$db" "SELECT min(generation), max(generation), count(*), sum(status = 'done') FROM generations")"
	gen_dump "$db" >"int$1.csv"
	if cmp -s ref.csv "int$1.csv"; then
		pass "run $1: the generations table equals the reference's"
	else
		fail "run $1: the generations table differs from the reference's"
		show_diff ref.csv "int$1.csv" 4
	fi
	check "run $1: evolve.csv equals the reference's" cmp -s "$WORK/ref/r/evolve.csv" "$run/evolve.csv"
	check "run $1: hyp_evolve.yaml equals the reference's" cmp -s "$WORK/ref/r/hyp_evolve.yaml" "$run/hyp_evolve.yaml"
	local retried
	retried=$(sql "$db" "SELECT count(*) FROM generations WHERE attempts > 1")
	note "run $1: $retried generations have attempts > 1; attempts total $(sql "$db" "SELECT sum(attempts) FROM generations")"
	KILLS=$((KILLS + kills))
	HITS=$((HITS + hits))
	RETRIED=$((RETRIED + retried))
}

section "SIGKILL at random moments, --resume each time"
RETRIED=0
# more runs only if the first ended before it was killed 8 times
for n in 1 2 3; do
	interrupted_run "$n"
	((KILLS >= 8)) && break
	note "only $KILLS kills so far: another interrupted run"
done
check "at least 8 SIGKILLs in all ($KILLS)" test "$KILLS" -ge 8
if ((RETRIED > 0)); then
	pass "$RETRIED generations have attempts > 1: kills hit running trainers"
else
	fail "no generation has attempts > 1: no kill hit a running trainer (make the kill timing denser)"
fi

section "SIGKILL while the evolution is being created (0-8 ms after the start)"
# Whatever the moment, the folder must either resume or take a new run.
stuck=0
states=""
for i in $(seq 1 40); do
	cdir=$WORK/create$i
	start_bg "$WORK/create.log" --project "$cdir" --name k --data none --trainer "$TRAINER" \
		--epochs 1 --generations 2 --quiet
	sleep "0.00$((RANDOM % 9))"
	kill -KILL "$BG" 2>/dev/null || true
	wait "$BG" 2>/dev/null || true
	wait_gone 5 "$cdir/" || true
	[[ -e "$cdir/k/evolve.db" ]] || continue
	run_ye "$WORK/create_resume.log" --resume --db "$cdir/k/evolve.db" --quiet
	((RC == 0)) && continue
	run_ye "$WORK/create_new.log" --project "$cdir" --name k --exist-ok --data none \
		--trainer "$TRAINER" --epochs 1 --generations 2 --quiet
	((RC == 0)) && continue
	stuck=$((stuck + 1))
	states="$(grep -h '^error:' "$WORK/create_resume.log" "$WORK/create_new.log" | tr '\n' ' ')"
done
if ((stuck == 0)); then
	pass "40 kills during creation: every folder resumed or took a new run"
else
	fail "$stuck of 40 kills during creation left a database that neither resumes nor can be recreated: $states"
fi

section "SIGINT stops cleanly; --resume finishes; --resume --generations extends"
unset FIXTURE_EPOCH_MS
SOPTS=(--epochs 3 --seed 11)
evolve "$WORK/ref" s "${SOPTS[@]}" --generations 6
check_eq "reference run of 6 generations exits 0" 0 "$RC"
evolve "$WORK/ref" s10 "${SOPTS[@]}" --generations 10
check_eq "reference run of 10 generations exits 0" 0 "$RC"
SDB=$WORK/sig/s/evolve.db
FIXTURE_EPOCH_MS=400 start_bg "$WORK/sig.log" --project "$WORK/sig" --name s --data none \
	--trainer "$TRAINER" "${SOPTS[@]}" --generations 6 --grace 3
SIG_PID=$BG
if wait_sql 30 "$SDB" "SELECT count(*) FROM generations WHERE generation = 1 AND status = 'running'"; then
	sleep 0.5 # inside an epoch of generation 1
	t0=$(date +%s.%N)
	kill -INT "$SIG_PID"
	if wait_pid_exit 4 "$SIG_PID"; then
		took=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
		check_eq "SIGINT: yolo-evolve exits 130 (after $took s, grace 3 s)" 130 "$RC"
	else
		fail "SIGINT: yolo-evolve still runs 4 s later (grace 3 s)"
		kill -KILL "$SIG_PID" 2>/dev/null || true
	fi
	check_eq "SIGINT: generation 0 done, generation 1 'interrupted', nothing else" "0|done;1|interrupted" \
		"$(sql "$SDB" "SELECT group_concat(generation || '|' || status, ';') FROM (SELECT * FROM generations ORDER BY generation)")"
	check "SIGINT: the interrupted generation's error names SIGINT" \
		grep -q INT <<<"$(sql "$SDB" "SELECT error FROM generations WHERE generation = 1")"
	check "SIGINT: no trainer left running" wait_gone 2 "$WORK/sig/s/candidates/"
	check_eq "SIGINT: PRAGMA integrity_check" ok "$(sql "$SDB" "PRAGMA integrity_check")"
	run_ye "$WORK/sig_resume.log" --resume --db "$SDB" --quiet
	check_eq "--resume after SIGINT exits 0" 0 "$RC"
	gen_dump "$SDB" >sig.csv
	gen_dump "$WORK/ref/s/evolve.db" >ref_s.csv
	check "after SIGINT and --resume the table equals the reference's" cmp -s ref_s.csv sig.csv
	check_eq "the interrupted generation ran twice" 2 \
		"$(sql "$SDB" "SELECT attempts FROM generations WHERE generation = 1")"
	run_ye "$WORK/sig_more.log" --resume --db "$SDB" --generations 10 --quiet
	check_eq "--resume --generations 10 exits 0" 0 "$RC"
	check_eq "--resume --generations 10: 10 done generations" "10|10" \
		"$(sql "$SDB" "SELECT count(*), sum(status = 'done') FROM generations")"
	check_eq "--resume --generations 10 stores the new total" 10 "$(sql "$SDB" "SELECT generations FROM evolution")"
	gen_dump "$SDB" >sig10.csv
	gen_dump "$WORK/ref/s10/evolve.db" >ref_s10.csv
	check "the extended table equals a 10-generation reference run's" cmp -s ref_s10.csv sig10.csv
	run_ye "$WORK/sig_again.log" --resume --db "$SDB" --quiet
	check_eq "--resume of a finished evolution exits 0 and adds nothing" "0 10" \
		"$RC $(sql "$SDB" "SELECT count(*) FROM generations")"
else
	fail "the slow run never started generation 1"
	show_file "$WORK/sig.log" 5
fi

ye_finish
