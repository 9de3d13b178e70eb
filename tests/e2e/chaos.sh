#!/usr/bin/env bash
# chaos.sh - the chaos test. Evolutions with P = 1 and P = 3 slots are
# SIGKILLed at least 20 times each and resumed with --resume --db each time.
# The kills are a shuffled mix of external SIGKILLs at random moments and
# self-kills through YE_CRASH_AT at the three crash points (inside a database
# transaction before COMMIT, right after a trainer started, between a result's
# commit and the exports); the last kill of each run lands right after the
# commit of the last generation. In half of the lives (at random) the
# trainers ignore SIGTERM, so they outlive the killed evolver and only the
# resume can stop them.
# Checked after every kill: the database (a copy) is intact and has lost or
# changed no finished result; the killed evolver's trainers are gone within
# a few seconds of the resume's start. Throughout: no save_dir ever has two
# trainers at once, never more than P trainers run. At the end: the database
# is intact, generations 0..29 are all there once, and the table, evolve.csv
# and hyp_evolve.yaml equal an uninterrupted run's.
# Last, a trainer's own child that outlives the evolver (a wrapper script
# that does not exec) must be stopped by the resume too.
#
# CHAOS_SEED=N replays a run's choice of kills (printed at the start).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

GENS=30
OPTS=(--epochs 3 --generations "$GENS" --seed 11)
export FIXTURE_DURATION_MS=20,120
DECK_EACH=6   # kills of each kind per run, plus the final one
ORPHAN_WAIT=3 # seconds a killed evolver's trainer may outlive the resume's start
GRACE=0.3     # --grace of every life: SIGTERM to SIGKILL for orphans that ignore SIGTERM

SEED=${CHAOS_SEED:-$(((RANDOM << 15 | RANDOM) % 1000000))}
RANDOM=$SEED
note "chaos seed $SEED (replay the choice of kills with CHAOS_SEED=$SEED)"

# The trainer: the fixture (exec: one process per trainer). With
# CHAOS_IGNORE_TERM set (in the evolver's environment, so per life) it ignores
# SIGTERM and writes its output to /dev/null, not to the evolver's pipe: it
# survives the evolver's death (parent-death signal, SIGPIPE) and runs on.
cat >"$WORK/trainer.sh" <<EOF
#!/usr/bin/env bash
if [[ -n "\${CHAOS_IGNORE_TERM:-}" ]]; then
	trap "" TERM
	exec "$FX" "\$@" >/dev/null 2>&1
fi
exec "$FX" "\$@"
EOF
chmod +x "$WORK/trainer.sh"
TPL="$WORK/trainer.sh --hyp {hyp} --epochs {epochs} --save-dir {save_dir} --seed {seed}"

# rand LO HI: a random integer in [LO, HI].
rand() { echo $(($1 + RANDOM % ($2 - $1 + 1))); }
ms_sleep() { sleep "$(awk -v m="$1" 'BEGIN { printf "%.3f", (m > 0 ? m : 0) / 1000 }')"; }
now_ms() { date +%s%3N; }

# start_bg LOG ARGS...: yolo-evolve ARGS in the background; sets BG.
start_bg() {
	local log=$1
	shift
	"$YE" "$@" >>"$log" 2>&1 &
	BG=$!
	BG_PIDS+=("$BG")
}

is_running() { kill -0 "$1" 2>/dev/null && [[ "$(awk '{ print $3 }' /proc/"$1"/stat 2>/dev/null)" != Z ]]; }

# "pid:starttime" of each live process whose command line contains PATTERN.
proc_ids() {
	local pid start
	for pid in $(procs_matching "$1"); do
		start=$(awk '{ sub(/.*\) /, ""); if ($1 != "Z") print $20 }' /proc/"$pid"/stat 2>/dev/null || true)
		if [[ -n "$start" ]]; then echo "$pid:$start"; fi
	done
	return 0
}

# still_alive ID...: those of the "pid:starttime" IDs that still run (not zombies).
still_alive() {
	local id pid start
	for id in "$@"; do
		pid=${id%%:*}
		start=$(awk '{ sub(/.*\) /, ""); if ($1 != "Z") print $20 }' /proc/"$pid"/stat 2>/dev/null || true)
		if [[ "$start" == "${id#*:}" ]]; then echo "$id"; fi
	done
	return 0
}

# wait_ids_gone SECONDS ID...: wait until none of the IDs runs; 0 if so.
wait_ids_gone() {
	local deadline=$(($(now_ms) + $1 * 1000))
	shift
	while [[ -n "$(still_alive "$@")" ]]; do
		(($(now_ms) < deadline)) || return 1
		sleep 0.02
	done
	return 0
}

# sampler PATTERN OUT: every 30 ms, the --save-dir of each process whose
# command line holds PATTERN; appends "COUNT DUPLICATED-SAVE-DIRS..." to OUT.
sampler() {
	local pat=$1 out=$2
	while :; do
		pgrep -af -- "$pat" 2>/dev/null |
			awk -v pat="$pat" '{ for (i = 2; i < NF; i++) if ($i == "--save-dir" && index($(i + 1), pat) == 1) print $(i + 1) }' |
			sort | uniq -c | awk '{ n += $1; if ($1 > 1) d = d " " $2 } END { print n + 0 d }' >>"$out" || true
		sleep 0.03
	done
}

# snapshot_check DB REF: copy DB with its WAL (the original stays untouched
# for the resume) and print "INTEGRITY|FINISHED|WRONG": integrity_check of the
# copy, its finished generations, and how many of those differ from REF's.
snapshot_check() {
	local snap=$WORK/snap
	rm -rf "$snap"
	mkdir "$snap"
	cp "$1" "$snap/e.db"
	if [[ -e "$1-wal" ]]; then cp "$1-wal" "$snap/e.db-wal"; fi
	sqlite3 -batch "$snap/e.db" "ATTACH '$2' AS ref;
		SELECT (SELECT group_concat(integrity_check, ' ') FROM pragma_integrity_check) || '|' ||
		(SELECT count(*) FROM main.generations WHERE status IN ('done', 'failed', 'pruned')) || '|' ||
		(SELECT count(*) FROM main.generations g LEFT JOIN ref.generations r USING (generation)
		 WHERE g.status IN ('done', 'failed', 'pruned') AND (r.generation IS NULL OR g.status IS NOT r.status
		 OR g.fitness IS NOT r.fitness OR g.map50 IS NOT r.map50 OR g.map IS NOT r.map
		 OR g.precision IS NOT r.precision OR g.recall IS NOT r.recall OR g.lr0 IS NOT r.lr0
		 OR g.parent IS NOT r.parent))" 2>&1 | tr '\n' ' ' | sed 's/ $//'
}

# Bash reports every SIGKILLed background job ("... Killed ..."); drop that noise.
# (and procs_matching's race with a trainer that just ended).
quiet_kills() { grep -v --line-buffered -E ' Killed |/cmdline: No such file' >&2 || true; }

# ---------------------------------------------------------------------------
section "reference runs (30 generations, epochs 3, seed 11, trainers of 20-120 ms)"
declare -A TG_MS
for P in 1 3; do
	t0=$(now_ms)
	run_ye "$WORK/ref$P.log" --project "$WORK/ref$P" --name r --data none --trainer "$TPL" --quiet \
		"${OPTS[@]}" --parallel "$P"
	TG_MS[$P]=$((($(now_ms) - t0) / GENS))
	check_eq "P=$P: reference run exits 0" 0 "$RC"
	if ((RC != 0)); then show_file "$WORK/ref$P.log"; fi
	check_eq "P=$P: reference has $GENS done generations" "$GENS|$GENS" \
		"$(sql "$WORK/ref$P/r/evolve.db" "SELECT count(*), sum(status = 'done') FROM generations")"
	gen_dump "$WORK/ref$P/r/evolve.db" >"ref$P.csv"
	note "P=$P: $((TG_MS[$P] * GENS)) ms, about ${TG_MS[$P]} ms per generation"
done

# ---------------------------------------------------------------------------
# chaos_run P: the interrupted run with P slots, in $WORK/chaosP; sets
# KILLED[kind,P] and TOTAL_KILLS[P].
declare -A KILLED TOTAL_KILLS
chaos_run() {
	local P=$1
	local project=$WORK/chaos$P
	local run=$project/c
	local db=$run/evolve.db log=$WORK/chaos$P.log ref=$WORK/ref$P/r/evolve.db
	local cand=$run/candidates/
	local kinds=(external transaction spawned finished)
	local deck=() k i j tmp
	for k in "${kinds[@]}"; do
		for ((i = 0; i < DECK_EACH; i++)); do deck+=("$k"); done
	done
	for ((i = ${#deck[@]} - 1; i > 0; i--)); do
		j=$((RANDOM % (i + 1)))
		tmp=${deck[i]} deck[i]=${deck[j]} deck[j]=$tmp
	done
	# the first life creates the evolution: end it at a crash point after that
	for ((i = 0; i < ${#deck[@]}; i++)); do
		if [[ ${deck[i]} == spawned || ${deck[i]} == finished ]]; then
			tmp=${deck[0]} deck[0]=${deck[i]} deck[i]=$tmp
			break
		fi
	done
	deck+=(last)
	for k in "${kinds[@]}"; do KILLED[$k,$P]=0; done
	local kills=0 starts=0 finished=0 remaining=$GENS life kind n sleep_ms a100 left ignore
	local orphans=() orphans_left=0 orphans_stopped=0 lingering=0 snap_bad=0 lost=0 wrong=0 hits=0
	local trace="" life_t0 what got before integrity n_wrong args
	: >"$WORK/sample$P"
	sampler "$cand" "$WORK/sample$P" &
	local sampler_pid=$!
	BG_PIDS+=("$sampler_pid")
	for ((life = 0; ; life++)); do
		kind=${deck[life]:-none}
		if ((remaining == 0)); then kind=none; fi # all finished: no kill can land any more
		left=$((${#deck[@]} - life)) # kills still planned, this one included
		# generations a life may finish, x100: what is left over the kills left
		a100=0
		if ((left > 1 && remaining > 1)); then a100=$(((remaining - 1) * 100 / (left - 1))); fi
		n=0 sleep_ms=0
		case $kind in
		external)
			# near the end the last trainers may all finish at once: kill early
			if ((remaining <= 2 * P)); then
				sleep_ms=$(rand 5 15)
			else
				sleep_ms=$(rand 10 $((30 + 2 * a100 * TG_MS[$P] / 100)))
			fi
			;;
		transaction) n=$(rand 1 $((1 + 6 * a100 / 100))) ;;
		spawned) n=$(rand 1 $((P + 2 * a100 / 100))) ;;
		finished) n=$(rand 1 $((1 + 2 * a100 / 100))) ;;
		last) kind=finished n=$remaining ;;
		esac
		# a crash point must be reached before the run ends
		if [[ $kind == transaction ]] && ((n > 2 * remaining)); then n=$((2 * remaining)); fi
		if [[ $kind == spawned ]] && ((n > remaining)); then n=$remaining; fi
		if [[ $kind == finished && ${deck[life]} != last ]] && ((n >= remaining)); then kind=spawned n=1; fi
		args=(--resume --db "$db" --grace "$GRACE" --quiet)
		if ((life == 0)); then
			args=(--project "$project" --name c --data none --trainer "$TPL" --quiet "${OPTS[@]}"
				--parallel "$P" --grace "$GRACE")
		fi
		ignore=$((RANDOM % 2))
		if [[ $kind == none ]]; then ignore=0; fi
		if ((ignore)); then export CHAOS_IGNORE_TERM=1; else unset CHAOS_IGNORE_TERM; fi
		starts=$((starts + 1))
		life_t0=$(now_ms)
		if [[ $kind == none || $kind == external ]]; then
			start_bg "$log" "${args[@]}"
		else
			YE_CRASH_AT=$kind:$n start_bg "$log" "${args[@]}"
		fi
		unset CHAOS_IGNORE_TERM
		# the killed evolver's trainers: gone within ORPHAN_WAIT s of this start
		if ((${#orphans[@]} > 0)); then
			if wait_ids_gone "$ORPHAN_WAIT" "${orphans[@]}"; then
				orphans_stopped=$((orphans_stopped + ${#orphans[@]}))
			else
				lingering=$((lingering + 1))
				fail "P=$P, after kill $kills: trainer(s) of the killed evolver still run $ORPHAN_WAIT s after the resume started: $(still_alive "${orphans[@]}" | tr '\n' ' ')"
				for k in $(still_alive "${orphans[@]}"); do kill -KILL "${k%%:*}" 2>/dev/null || true; done
			fi
			orphans=()
		fi
		if [[ $kind == external ]]; then
			ms_sleep $((sleep_ms - ($(now_ms) - life_t0)))
			if is_running "$BG"; then
				if [[ -n "$(procs_matching "$cand")" ]]; then hits=$((hits + 1)); fi
				kill -KILL "$BG" 2>/dev/null || true
			fi
			RC=0
			wait "$BG" 2>/dev/null || RC=$?
		elif ! wait_pid_exit 60 "$BG"; then
			fail "P=$P: yolo-evolve (start $starts, $kind:$n) still runs after 60 s"
			kill -KILL "$BG" 2>/dev/null || true
			wait "$BG" 2>/dev/null || true
			break
		fi
		[[ $kind == external ]] && what="e${sleep_ms}ms" || what="${kind:0:1}$n"
		if ((ignore)); then what+="*"; fi
		if ((RC == 0)); then
			if [[ $kind != none ]]; then note "P=$P: start $starts ($what) ended by itself with exit 0"; fi
			break
		fi
		if ((RC != 137)) || [[ $kind == none ]]; then
			fail "P=$P: yolo-evolve exited $RC by itself (start $starts, $what)"
			show_file "$log" 5
			break
		fi
		kills=$((kills + 1))
		KILLED[$kind,$P]=$((KILLED[$kind,$P] + 1))
		trace+=" $what"
		# what the kill left running (stopped by the kernel or by the resume)
		sleep 0.02
		mapfile -t orphans < <(proc_ids "$cand")
		orphans_left=$((orphans_left + ${#orphans[@]}))
		# the database as the resume will find it, checked on a copy
		before=$finished
		got=$(snapshot_check "$db" "$ref" || true)
		IFS='|' read -r integrity finished n_wrong <<<"$got"
		if [[ "$integrity" != ok || ! "$finished" =~ ^[0-9]+$ ]]; then
			snap_bad=$((snap_bad + 1))
			fail "P=$P, kill $kills ($what): the killed database: $got"
			finished=$before
		fi
		if ((finished < before)); then
			lost=$((lost + 1))
			fail "P=$P, kill $kills ($what): finished generations went from $before to $finished"
		fi
		if [[ "$n_wrong" != 0 ]]; then
			wrong=$((wrong + 1))
			fail "P=$P, kill $kills ($what): $n_wrong finished generation(s) differ from the reference"
		fi
		remaining=$((GENS - finished))
		if ((starts > 80)); then
			fail "P=$P: still not finished after 80 starts"
			break
		fi
	done
	kill "$sampler_pid" 2>/dev/null || true
	wait "$sampler_pid" 2>/dev/null || true
	note "P=$P kills in order (e = external after ms; t/s/f = YE_CRASH_AT transaction/spawned/finished:N; * = trainers ignored SIGTERM):"
	fold -w 120 -s <<<"${trace# }" | sed 's/^/         /'
	TOTAL_KILLS[$P]=$kills
	check "P=$P: at least 20 SIGKILLs survived ($kills, $starts starts)" test "$kills" -ge 20
	for k in "${kinds[@]}"; do
		check "P=$P: kills of kind '$k': ${KILLED[$k,$P]} (at least 1)" test "${KILLED[$k,$P]}" -ge 1
	done
	note "P=$P: $hits external kills landed while a trainer ran; $orphans_left trainer(s) outlived their evolver;" \
		"resumes logged 'stopping orphaned trainer' $(grep -c 'stopping orphaned trainer' "$log" || true) times"
	if ((lingering == 0)); then
		pass "P=$P: after every kill the killed evolver's trainers were gone within $ORPHAN_WAIT s of the resume's start ($orphans_stopped outlived the evolver)"
	fi
	check "P=$P: no trainer left when the run ended" wait_gone 3 "$cand"
	((snap_bad == 0)) && pass "P=$P: integrity_check ok after each of the $kills kills (on a copy)"
	((lost == 0)) && pass "P=$P: the count of finished generations never went down across kills"
	((wrong == 0)) && pass "P=$P: after every kill, every finished generation equals the reference's"
	local samples dups maxp
	samples=$(wc -l <"$WORK/sample$P")
	dups=$(awk 'NF > 1 { $1 = ""; print }' "$WORK/sample$P" | tr ' ' '\n' | sed '/^$/d' | sort -u | tr '\n' ' ')
	maxp=$(awk '$1 > m { m = $1 } END { print m + 0 }' "$WORK/sample$P")
	check_eq "P=$P: no save_dir had two trainers at once ($samples ps samples)" "" "$dups"
	check "P=$P: never more than $P trainer(s) at once (at most $maxp seen)" test "$maxp" -le "$P"
	# the end state
	check_eq "P=$P: PRAGMA integrity_check" ok "$(sql "$db" "PRAGMA integrity_check")"
	check_eq "P=$P: generations 0..$((GENS - 1)), each once, all done" "0|$((GENS - 1))|$GENS|$GENS|$GENS" \
		"$(sql "$db" "SELECT min(generation), max(generation), count(*), count(DISTINCT generation), sum(status = 'done') FROM generations")"
	check_eq "P=$P: every done result of the reference is present and equal" \
		"$(sql "$ref" "SELECT count(*) FROM generations WHERE status = 'done'")" \
		"$(sql "$db" "ATTACH '$ref' AS ref; SELECT count(*) FROM ref.generations r JOIN main.generations g USING (generation)
		   WHERE r.status = 'done' AND g.status = 'done' AND g.fitness = r.fitness AND g.map50 = r.map50
		   AND g.map = r.map AND g.precision = r.precision AND g.recall = r.recall")"
	gen_dump "$db" >"chaos$P.csv"
	if cmp -s "ref$P.csv" "chaos$P.csv"; then
		pass "P=$P: the generations table (deterministic columns) equals the reference's"
	else
		fail "P=$P: the generations table differs from the reference's"
		show_diff "ref$P.csv" "chaos$P.csv" 6
	fi
	if cmp -s "$WORK/ref$P/r/evolve.csv" "$run/evolve.csv"; then
		pass "P=$P: evolve.csv equals the reference's"
	else
		fail "P=$P: evolve.csv differs from the reference's ($(($(wc -l <"$run/evolve.csv") - 1)) rows, reference $(($(wc -l <"$WORK/ref$P/r/evolve.csv") - 1)))"
	fi
	check "P=$P: hyp_evolve.yaml equals the reference's" cmp -s "$WORK/ref$P/r/hyp_evolve.yaml" "$run/hyp_evolve.yaml"
	local retried
	retried=$(sql "$db" "SELECT count(*) FROM generations WHERE attempts > 1")
	check "P=$P: $retried generation(s) have attempts > 1 (attempts in all: $(sql "$db" "SELECT sum(attempts) FROM generations"))" \
		test "$retried" -ge 1
}

for P in 1 3; do
	section "P=$P: SIGKILL at least 20 times (external and at the crash points), --resume each time"
	chaos_run "$P" 2> >(quiet_kills)
done

# ---------------------------------------------------------------------------
section "a trainer's child that outlives the evolver is stopped by the resume"
# The trainer is a wrapper script that runs the fixture as its child (no
# exec). When the evolver dies, the parent-death signal ends the wrapper, the
# process whose pid the evolver recorded, but not the fixture, which goes on
# in the same process group. The killed evolver runs under a child subreaper
# that reaps the wrapper at once (as an init that reaps does), so its pid is
# really gone when the resume looks for it.
printf '#!/usr/bin/env bash\n"%s" "$@"\n' "$FX" >"$WORK/grandchild.sh"
chmod +x "$WORK/grandchild.sh"
cat >"$WORK/subreaper.py" <<'PYEOF'
import ctypes, os, sys, time
# subreaper.py PIDFILE ARGV...: run ARGV as a child subreaper that reaps every
# orphan at once; exit 1 s after ARGV ends, with its status (128 + signal).
ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
with open(sys.argv[1], "w") as f:
    f.write(str(pid))
code, end = None, None
while end is None or time.time() < end:
    try:
        p, status = os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        p = 0
    if p == pid:
        code = os.waitstatus_to_exitcode(status)
        code = 128 - code if code < 0 else code
        end = time.time() + 1.0
    if p == 0:
        time.sleep(0.005)
sys.exit(code)
PYEOF
grandchild_case() {
	local project=$WORK/orphan
	local run=$project/o log=$WORK/orphan.log cand=$project/o/candidates/
	local tpl="$WORK/grandchild.sh --hyp {hyp} --epochs {epochs} --save-dir {save_dir} --seed {seed}"
	export FIXTURE_EPOCH_MS=5000 # 15 s trainers: only a kill ends them in time
	unset FIXTURE_DURATION_MS
	python3 "$WORK/subreaper.py" "$WORK/orphan.pid" "$YE" --project "$project" --name o --data none \
		--trainer "$tpl" --quiet --epochs 3 --generations 2 --seed 5 >>"$log" 2>&1 &
	local reaper=$!
	BG_PIDS+=("$reaper")
	local deadline=$((SECONDS + 10))
	until [[ -s $cand/g00000/trainer.pid && -s $WORK/orphan.pid ]] || ((SECONDS > deadline)); do sleep 0.02; done
	sleep 0.3 # the wrapper has started the fixture
	kill -KILL "$(cat "$WORK/orphan.pid")" 2>/dev/null || true
	RC=0
	wait "$reaper" 2>/dev/null || RC=$?
	if ((RC != 137)); then
		fail "orphan: the evolver was not killed (exit $RC)"
		show_file "$log" 4
		return
	fi
	local leader before after new
	leader=$(awk '{ print $1 }' "$cand/g00000/trainer.pid")
	mapfile -t before < <(proc_ids "$cand")
	if ((${#before[@]} == 0)); then
		fail "orphan: no trainer process outlived the evolver (the case tests nothing)"
		return
	fi
	note "orphan: recorded trainer pid $leader is $([[ -e /proc/$leader ]] && echo 'still there' || echo gone);" \
		"${#before[@]} process(es) of generation 0 outlived the evolver"
	start_bg "$log" --resume --db "$run/evolve.db" --grace 1
	local resume=$BG
	if wait_ids_gone "$ORPHAN_WAIT" "${before[@]}"; then
		pass "orphan: the resume stopped the trainer's surviving child within $ORPHAN_WAIT s"
	else
		fail "orphan: the trainer's child ($(still_alive "${before[@]}" | tr '\n' ' ' | sed 's/ $//')) still runs $ORPHAN_WAIT s after the resume started"
		mapfile -t after < <(proc_ids "$cand")
		new=$(printf '%s\n' "${after[@]}" | grep -vxF -f <(printf '%s\n' "${before[@]}") || true)
		if [[ -n "$new" ]]; then
			fail "orphan: generation 0 now runs twice: the orphan beside the resume's new attempt (same --save-dir)"
		fi
	fi
	kill -KILL "$resume" 2>/dev/null || true
	wait "$resume" 2>/dev/null || true
	for k in $(procs_matching "$project/"); do kill -KILL "$k" 2>/dev/null || true; done
	unset FIXTURE_EPOCH_MS
}
if command -v python3 >/dev/null; then
	grandchild_case 2> >(quiet_kills)
else
	note "python3 not found: the orphaned-child case is skipped"
fi

section "summary"
for P in 1 3; do
	note "P=$P: ${TOTAL_KILLS[$P]:-0} kills survived: external ${KILLED[external,$P]:-0}, transaction ${KILLED[transaction,$P]:-0}, spawned ${KILLED[spawned,$P]:-0}, finished ${KILLED[finished,$P]:-0}"
done

ye_finish
