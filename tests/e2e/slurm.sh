#!/usr/bin/env bash
# slurm.sh - the Slurm launcher against a real one-node Slurm (4 CPUs, 2 fake
# GPUs) that this script starts (tests/slurm/start.sh) in a temporary folder
# and stops at exit: candidates run as srun job steps of an allocation
# (concurrently, one GPU each, CUDA_VISIBLE_DEVICES set by Slurm; two each
# with --gpus-per-candidate 2) or as jobs
# of their own (--slurm-submit, or no allocation); the results equal a local
# run's; SIGINT, SIGINT twice, and SIGKILL of the evolver leave no step or
# job behind, the generations are 'interrupted' and --resume completes.
# Exit 77 (skipped) only when Slurm is not installed (apt-get install
# slurm-wlm munge); anything else that goes wrong is a failure.
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

export PATH=$PATH:/usr/sbin:/sbin
missing=()
for b in munged munge unmunge slurmctld slurmd srun salloc squeue scancel scontrol sinfo; do
	command -v "$b" >/dev/null || missing+=("$b")
done
if ((${#missing[@]} > 0)); then
	echo "SKIP: Slurm is not installed (missing ${missing[*]}; apt-get install slurm-wlm munge)"
	exit 77
fi

# Whatever Slurm this script itself may run under is not the one under test.
for v in $(compgen -v SLURM_) $(compgen -v SRUN_); do unset "$v"; done
unset CUDA_VISIBLE_DEVICES

SLURM_TOOLS=$YE_SOURCE_ROOT/tests/slurm
# Outside $WORK: ye_cleanup kills every process with $WORK in its command line.
STATE=$(mktemp -d /tmp/ye-slurm.XXXXXX)
slurm_down() { "$SLURM_TOOLS/stop.sh" "$STATE" --purge >/dev/null 2>&1 || true; }
trap 'slurm_down; ye_cleanup' EXIT

show_slurm_logs() {
	local f
	for f in "$STATE"/log/slurmctld.log "$STATE"/log/slurmd.log; do
		note "--- $f"
		show_file "$f" 15
	done
}

# The trainer: the fixture, behind a wrapper that records the Slurm
# variables and CUDA_VISIBLE_DEVICES it sees into save_dir/slurm_env.txt.
STRAINER="$SLURM_TOOLS/record_env.sh {save_dir}/slurm_env.txt $TRAINER"
OPTS=(--data none --trainer "$STRAINER" --quiet --epochs 3 --seed 5 --grace 3)

# env_of DIR KEY: the value KEY had in candidate folder DIR ("" if none).
env_of() { sed -n "s/^$2=//p" "$1/slurm_env.txt" 2>/dev/null | head -n 1; }

# alloc ARGS...: a Slurm allocation with no shell; prints its job id.
alloc() { salloc --no-shell "$@" 2>&1 | sed -n 's/.*Granted job allocation \([0-9][0-9]*\).*/\1/p'; }

# Our jobs and steps named ye-NAME-g* (all users' are root's here).
ye_steps() { squeue -h -s -o '%i %j' 2>/dev/null | awk -v p="ye-$1-g" 'index($2, p) == 1' || true; }
ye_jobs() { squeue -h -o '%i %j' 2>/dev/null | awk -v p="ye-$1-g" 'index($2, p) == 1' || true; }

# wait_until SECONDS COMMAND...: poll every 0.1 s.
wait_until() {
	local deadline=$((SECONDS + $1))
	shift
	until "$@"; do
		((SECONDS < deadline)) || return 1
		sleep 0.1
	done
}
none_left() { [[ -z "$(ye_steps "$1")$(ye_jobs "$1")" ]]; }
# count_is N COMMAND...: the command prints N lines (evaluated at each call).
count_is() {
	local n=$1
	shift
	[[ $("$@" | wc -l) -eq $n ]]
}

# start_bg LOG ARGS...: yolo-evolve ARGS in the background; sets BG.
start_bg() {
	local log=$1
	shift
	"$YE" "$@" >>"$log" 2>&1 &
	BG=$!
	BG_PIDS+=("$BG")
}

section "a one-node Slurm: 4 CPUs, 2 fake GPUs"
t0=$(date +%s.%N)
if ! "$SLURM_TOOLS/start.sh" "$STATE" >"$WORK/start.log" 2>&1; then
	fail "tests/slurm/start.sh $STATE"
	show_file "$WORK/start.log" 30
	ye_finish
fi
# shellcheck disable=SC1091
source "$STATE/env.sh"
pass "cluster up in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }') s"
check "start.sh again: already running, exit 0" "$SLURM_TOOLS/start.sh" "$STATE"
node=$(scontrol show node localhost)
check "the node has 4 CPUs" grep -q 'CPUTot=4' <<<"$node"
check "the node has gres gpu:2" grep -q 'Gres=gpu:2' <<<"$node"

section "reference: the same evolution with the local launcher (--devices 0,1)"
run_ye "$WORK/ref.log" --project "$WORK/ref" --name exp "${OPTS[@]}" --devices 0,1 --generations 6
check_eq "local run exits 0" 0 "$RC"
gen_dump "$WORK/ref/exp/evolve.db" >"$WORK/ref.csv"
check_eq "local run: no Slurm variables in the trainers" "" \
	"$(cat "$WORK"/ref/exp/candidates/g*/slurm_env.txt | grep '^SLURM_' || true)"

section "job steps inside an allocation (-n4 --gres=gpu:2), --devices 0,1"
JOB=$(alloc -N1 -n4 --gres=gpu:2 --job-name=evolver)
check "salloc --no-shell granted an allocation ($JOB)" test -n "$JOB"
export SLURM_JOB_ID=$JOB
run_ye "$WORK/in.log" --project "$WORK/in" --name exp "${OPTS[@]}" --launcher slurm --devices 0,1 \
	--generations 6
check_eq "slurm run exits 0" 0 "$RC"
[[ $RC == 0 ]] || { show_file "$WORK/in.log" 10; show_slurm_logs; }
D=$WORK/in/exp/evolve.db
check_eq "6 generations done" "6|6" "$(sql "$D" "SELECT count(*), sum(status = 'done') FROM generations")"
gen_dump "$D" >"$WORK/in.csv"
check "the table equals the local run's" cmp -s "$WORK/ref.csv" "$WORK/in.csv"
cmp -s "$WORK/ref.csv" "$WORK/in.csv" || show_diff "$WORK/ref.csv" "$WORK/in.csv"
bad=0 steps=()
for dir in "$WORK"/in/exp/candidates/g0000[0-5]; do
	jid=$(env_of "$dir" SLURM_JOB_ID) sid=$(env_of "$dir" SLURM_STEP_ID) cvd=$(env_of "$dir" CUDA_VISIBLE_DEVICES)
	if [[ $jid != "$JOB" || ! $sid =~ ^[0-9]+$ || ! $cvd =~ ^[01]$ ]]; then
		bad=$((bad + 1))
		note "$(basename "$dir"): SLURM_JOB_ID='$jid' SLURM_STEP_ID='$sid' CUDA_VISIBLE_DEVICES='$cvd'"
	fi
	steps+=("$sid")
done
check_eq "every candidate ran as a step of job $JOB with CUDA_VISIBLE_DEVICES 0 or 1" 0 "$bad"
check_eq "6 different steps" 6 "$(printf '%s\n' "${steps[@]}" | sort -u | wc -l)"
check_eq "no step left" "" "$(ye_steps exp)"

section "a candidate on 2 GPUs (--gpus-per-candidate 2): each step asks for both"
run_ye "$WORK/ddp.log" --project "$WORK/in" --name ddp "${OPTS[@]}" --launcher slurm --devices 0,1 \
	--gpus-per-candidate 2 --generations 3
check_eq "slurm run with --gpus-per-candidate 2 exits 0" 0 "$RC"
[[ $RC == 0 ]] || { show_file "$WORK/ddp.log" 10; show_slurm_logs; }
check_eq "3 generations done on device 0,1" "3|3|3" \
	"$(sql "$WORK/in/ddp/evolve.db" "SELECT count(*), sum(status = 'done'), sum(device = '0,1') FROM generations")"
bad=0
for dir in "$WORK"/in/ddp/candidates/g0000[0-2]; do
	jid=$(env_of "$dir" SLURM_JOB_ID) cvd=$(env_of "$dir" CUDA_VISIBLE_DEVICES)
	if [[ $jid != "$JOB" || $cvd != 0,1 ]]; then
		bad=$((bad + 1))
		note "$(basename "$dir"): SLURM_JOB_ID='$jid' CUDA_VISIBLE_DEVICES='$cvd'"
	fi
done
check_eq "every candidate a step of job $JOB given both GPUs by Slurm (--gres=gpu:2)" 0 "$bad"

section "SIGINT while 2 candidates run as steps: the steps end, 'interrupted', --resume completes"
# cancel_run NAME SIGNALS...: start a slow run of 6 generations in the current
# allocation, wait for 2 concurrent steps, send the signals, check the steps
# end within 5 s and the generations are 'interrupted'; then --resume.
cancel_run() {
	local name=$1 project=$WORK/c_$1
	shift
	local db=$project/$name/evolve.db log=$WORK/c_$name.log
	FIXTURE_EPOCH_MS=2000 start_bg "$log" --project "$project" --name "$name" "${OPTS[@]}" \
		--launcher slurm --devices 0,1 --generations 6
	if ! wait_until 30 count_is 2 ye_steps "$name"; then
		fail "$name: 2 steps did not start within 30 s: $(ye_steps "$name" | tr '\n' ' ')"
		show_file "$log" 10
		show_slurm_logs
		return
	fi
	pass "$name: 2 candidates run side by side as steps $(ye_steps "$name" | awk '{ printf "%s ", $1 }')of job $JOB, named $(ye_steps "$name" | awk '{ printf "%s ", $2 }')"
	local sig
	for sig in "$@"; do
		kill -s "$sig" "$BG" 2>/dev/null || true
	done
	local expect=130
	[[ $* == KILL ]] && expect=137
	if wait_pid_exit 30 "$BG"; then
		check_eq "$name: yolo-evolve exits $expect after SIG$*" "$expect" "$RC"
	else
		fail "$name: yolo-evolve still runs 30 s after SIG$*"
		kill -KILL "$BG" 2>/dev/null || true
	fi
	local t=$SECONDS
	if wait_until 5 none_left "$name"; then
		pass "$name: no step or job left ($((SECONDS - t)) s after the evolver ended)"
	else
		fail "$name: steps still there 5 s after the evolver ended: $(ye_steps "$name" | tr '\n' ' ')"
		show_file "$log" 10
	fi
	check "$name: no trainer process left" wait_gone 5 "$project/"
	if [[ $* == KILL ]]; then
		check_eq "$name: 2 generations still 'running' in the database (the evolver was killed)" 2 \
			"$(sql "$db" "SELECT count(*) FROM generations WHERE status = 'running'")"
	else
		check_eq "$name: 2 generations 'interrupted'" 2 \
			"$(sql "$db" "SELECT count(*) FROM generations WHERE status = 'interrupted'")"
	fi
	run_ye "$WORK/c_$name.resume.log" --resume --db "$db" --quiet
	check_eq "$name: --resume exits 0" 0 "$RC"
	[[ $RC == 0 ]] || show_file "$WORK/c_$name.resume.log" 10
	gen_dump "$db" >"$WORK/c_$name.csv"
	check "$name: after --resume the table equals the uninterrupted run's" cmp -s "$WORK/ref.csv" "$WORK/c_$name.csv"
	cmp -s "$WORK/ref.csv" "$WORK/c_$name.csv" || show_diff "$WORK/ref.csv" "$WORK/c_$name.csv"
	check_eq "$name: nothing of it left in Slurm" "" "$(ye_steps "$name")$(ye_jobs "$name")"
}
cancel_run int INT

section "SIGINT twice (the trainers are killed at once): the steps end too"
cancel_run int2 INT INT

section "SIGKILL of the evolver: srun gets the parent-death SIGTERM and ends its step"
cancel_run kill KILL
scancel "$JOB"
unset SLURM_JOB_ID

section "--slurm-submit inside an allocation: each candidate a job of its own"
JOB2=$(alloc -N1 -n1 --job-name=evolver2)
check "an allocation without GPUs for the evolver ($JOB2)" test -n "$JOB2"
SLURM_JOB_ID=$JOB2 SLURM_JOBID=$JOB2 SLURM_NTASKS=1 SLURM_NNODES=1 \
	run_ye "$WORK/sub.log" --project "$WORK/sub" --name sub "${OPTS[@]}" --launcher slurm --slurm-submit \
	--devices 0,1 --generations 4
check_eq "submit run exits 0" 0 "$RC"
[[ $RC == 0 ]] || { show_file "$WORK/sub.log" 10; show_slurm_logs; }
check_eq "4 generations done" "4|4" \
	"$(sql "$WORK/sub/sub/evolve.db" "SELECT count(*), sum(status = 'done') FROM generations")"
bad=0 jobs=()
for g in 0 1 2 3; do
	dir=$WORK/sub/sub/candidates/g0000$g
	jid=$(env_of "$dir" SLURM_JOB_ID) jname=$(env_of "$dir" SLURM_JOB_NAME) cvd=$(env_of "$dir" CUDA_VISIBLE_DEVICES)
	if [[ ! $jid =~ ^[0-9]+$ || $jid == "$JOB2" || $jname != "ye-sub-g$g" || ! $cvd =~ ^[01]$ ]]; then
		bad=$((bad + 1))
		note "g0000$g: SLURM_JOB_ID='$jid' SLURM_JOB_NAME='$jname' CUDA_VISIBLE_DEVICES='$cvd'"
	fi
	jobs+=("$jid")
done
check_eq "every candidate was a job of its own named ye-sub-gN, not a step of $JOB2, with a GPU" 0 "$bad"
check_eq "4 different jobs" 4 "$(printf '%s\n' "${jobs[@]}" | sort -u | wc -l)"
# cancelling jobs of their own
FIXTURE_EPOCH_MS=2000 SLURM_JOB_ID=$JOB2 start_bg "$WORK/subc.log" --project "$WORK/subc" --name subc \
	"${OPTS[@]}" --launcher slurm --slurm-submit --devices 0,1 --generations 4
if wait_until 30 count_is 2 ye_jobs subc; then
	pass "submit: 2 candidate jobs run: $(ye_jobs subc | tr '\n' ' ')"
	kill -INT "$BG"
	wait_pid_exit 30 "$BG" || kill -KILL "$BG"
	check_eq "submit: yolo-evolve exits 130 after SIGINT" 130 "${RC:-}"
	check "submit: no job left within 5 s" wait_until 5 none_left subc
else
	fail "submit: 2 jobs did not start within 30 s: $(ye_jobs subc | tr '\n' ' ')"
	show_file "$WORK/subc.log" 10
fi
scancel "$JOB2"

section "outside any allocation, no GPUs asked: jobs of their own, no CUDA_VISIBLE_DEVICES"
run_ye "$WORK/out.log" --project "$WORK/out" --name out "${OPTS[@]}" --launcher slurm --parallel 2 \
	--generations 3
check_eq "run exits 0" 0 "$RC"
[[ $RC == 0 ]] || { show_file "$WORK/out.log" 10; show_slurm_logs; }
bad=0
for g in 0 1 2; do
	dir=$WORK/out/out/candidates/g0000$g
	jid=$(env_of "$dir" SLURM_JOB_ID) set=$(env_of "$dir" CUDA_VISIBLE_DEVICES_SET)
	if [[ ! $jid =~ ^[0-9]+$ || -n $set ]]; then
		bad=$((bad + 1))
		note "g0000$g: SLURM_JOB_ID='$jid' CUDA_VISIBLE_DEVICES set='$set'"
	fi
done
check_eq "every candidate a Slurm job without CUDA_VISIBLE_DEVICES" 0 "$bad"

section "a trainer that crashes in its step is recorded with its signal"
FIXTURE_MODE=crash run_ye "$WORK/crash.log" --project "$WORK/crash" --name crash "${OPTS[@]}" \
	--launcher slurm --generations 2 --max-failures 0
check_eq "run exits 4 (no candidate succeeded)" 4 "$RC"
check_eq "2 generations 'failed' with SIGSEGV and exit_status 139" "2|2|2" \
	"$(sql "$WORK/crash/crash/evolve.db" "SELECT count(*), sum(status = 'failed' AND instr(error, 'SIGSEGV') > 0), sum(exit_status = 139) FROM generations")"
note "$(sql "$WORK/crash/crash/evolve.db" "SELECT error FROM generations LIMIT 1" | tr '\n' ' ' | head -c 150)"

section "bad --slurm-args"
run_ye "$WORK/bad.log" --project "$WORK/bad" --name bad "${OPTS[@]}" --launcher slurm \
	--slurm-args "--comment='unterminated" --generations 1
check "exits non-zero" test "$RC" != 0
check "one error line naming --slurm-args" grep -q -- '--slurm-args' "$WORK/bad.log"
check "no run folder created" test ! -e "$WORK/bad/bad/evolve.db"
check_eq "nothing left in Slurm" "" "$(squeue -h -o %i)"

((FAILS > 0)) && show_slurm_logs
ye_finish
