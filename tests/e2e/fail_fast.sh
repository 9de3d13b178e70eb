#!/usr/bin/env bash
# fail_fast.sh - an evolution that cannot work stops at once (issue 19):
# pre-flight checks (missing, unreadable, malformed inputs: exit 2, one
# line, nothing created), the circuit breaker (the base fails, or K
# candidates in a row: exit 3 with the reason, recorded in the database,
# and --resume after the fix goes on), exit status 4 when nothing
# succeeded, SIGHUP (exit 129, candidates interrupted; ignored under
# nohup), and `status` on the database of a SIGKILLed evolver (no
# "running" rows, and the database is not written).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# expect_refused DESCRIPTION CULPRIT ARGS...: a new evolution (or import) in a project of
# its own exits 2 with exactly one line, an "error:" line naming CULPRIT
# (fixed string), and makes nothing: no project folder, no database.
N=0
expect_refused() {
	local desc=$1 culprit=$2
	shift 2
	N=$((N + 1))
	local project=$WORK/refused$N log=$WORK/refused$N.log
	run_ye "$log" "$@" --project "$project" --name r --generations 3 --epochs 1
	local lines errors
	lines=$(wc -l <"$log")
	errors=$(grep -c '^error:' "$log" || true)
	if ((RC != 2)); then
		fail "$desc: exit status $RC, expected 2"
		show_file "$log" 5
	elif [[ "$lines" != 1 || "$errors" != 1 ]]; then
		fail "$desc: $lines lines ($errors 'error:'), expected exactly one error line"
		show_file "$log" 5
	elif ! grep -qF -- "$culprit" "$log"; then
		fail "$desc: the error does not name '$culprit': $(cat "$log")"
	elif [[ -e "$project" ]]; then
		fail "$desc: $project was created"
	else
		pass "$desc: $(cut -c1-150 "$log")"
	fi
}

# error_block LOG: the "error: circuit breaker" line and the log tail lines indented below it.
error_block() { awk '/^error: / { on = 1; print; next } on && /^    / { print; next } { on = 0 }' "$1"; }

GOOD_DATA=$WORK/data.yaml
mkdir -p "$WORK/dataset/images"
printf 'path: %s\ntrain: images\nval: images\nnames: [thing]\n' "$WORK/dataset" >"$GOOD_DATA"
# the fixture with the files the native trainer would get
TPL_FILES="$FX --hyp {hyp} --data {data} --cfg {cfg} --weights {weights} --epochs {epochs} --save-dir {save_dir} --seed {seed}"
CFG=$YE_SOURCE_ROOT/models/yolov5n.yaml

section "no --data: exit 2 at once, one line, nothing made"
mkdir -p "$WORK/empty"
t0=$(date +%s%N)
RC=0
(cd "$WORK/empty" && "$YE" --generations 300) >"$WORK/nodata.log" 2>&1 || RC=$?
ms=$((($(date +%s%N) - t0) / 1000000))
check_eq "yolo-evolve --generations 300 without --data exits 2" 2 "$RC"
check_eq "with one line" 1 "$(wc -l <"$WORK/nodata.log")"
check "that names --data" grep -q '^error: --data is required' "$WORK/nodata.log"
check "at once (${ms} ms)" test "$ms" -lt 2000
check_eq "and the folder stays empty" "" "$(ls -A "$WORK/empty")"
echo "not read: --data is checked first" >"$WORK/old.csv"
expect_refused "import without --data" "--data" import "$WORK/old.csv" --trainer "$TRAINER"

section "inputs the trainer gets: missing, unreadable, malformed"
expect_refused "--data missing" "--data '$WORK/nothere.yaml': No such file" \
	--data "$WORK/nothere.yaml" --cfg "$CFG" --trainer "$TPL_FILES"
expect_refused "--data a folder" "is a folder" --data "$WORK/dataset" --cfg "$CFG" --trainer "$TPL_FILES"
printf 'train: [a\nval: b\n' >"$WORK/broken.yaml"
expect_refused "--data not YAML (names file and line)" "broken.yaml':2: not YAML" \
	--data "$WORK/broken.yaml" --cfg "$CFG" --trainer "$TPL_FILES"
printf 'train: images\nnames: [a]\n' >"$WORK/noval.yaml"
expect_refused "--data without val:" "no 'val:'" --data "$WORK/noval.yaml" --cfg "$CFG" --trainer "$TPL_FILES"
printf 'path: %s\ntrain: images\nval: images\nnames: [a]\n' "$WORK/gone" >"$WORK/badroot.yaml"
expect_refused "--data whose path: does not exist" "no such folder" \
	--data "$WORK/badroot.yaml" --cfg "$CFG" --trainer "$TPL_FILES"
: >"$WORK/empty.yaml"
expect_refused "--data an empty file" "the file is empty" --data "$WORK/empty.yaml" --cfg "$CFG" \
	--trainer "$TPL_FILES"
expect_refused "--data with a newline: quoted, still one line" "'$WORK/two\\nlines.yaml'" \
	--data "$WORK/two"$'\n'"lines.yaml" --cfg "$CFG" --trainer "$TPL_FILES"
expect_refused "--cfg missing" "--cfg '$WORK/nomodel.yaml'" --data "$GOOD_DATA" --cfg "$WORK/nomodel.yaml" \
	--trainer "$TPL_FILES"
printf 'a: [1\n' >"$WORK/badmodel.yaml"
expect_refused "--cfg not YAML" "badmodel.yaml'" --data "$GOOD_DATA" --cfg "$WORK/badmodel.yaml" \
	--trainer "$TPL_FILES"
expect_refused "--weights missing" "--weights '$WORK/w.safetensors'" --data "$GOOD_DATA" --cfg "$CFG" \
	--weights "$WORK/w.safetensors" --trainer "$TPL_FILES"
expect_refused "native without --cfg or --weights" "--cfg or --weights" --data "$GOOD_DATA"
if [[ $(id -u) -ne 0 ]]; then
	cp "$GOOD_DATA" "$WORK/secret.yaml"
	chmod 000 "$WORK/secret.yaml"
	expect_refused "--data unreadable" "Permission denied" --data "$WORK/secret.yaml" --cfg "$CFG" \
		--trainer "$TPL_FILES"
else
	note "running as root: an unreadable file cannot be made (the folder case stands in)"
fi
# a template of your own without {data}: --data is not read
run_ye "$WORK/nonedata.log" --project "$WORK/nd" --name r --data none --generations 1 --epochs 1 \
	--trainer "$TRAINER" --quiet
check_eq "a template without {data} takes --data none (exit 0)" 0 "$RC"

section "files the evolver reads"
expect_refused "--hyp missing" "--hyp '$WORK/nohyp.yaml'" --data none --trainer "$TRAINER" \
	--hyp "$WORK/nohyp.yaml"
expect_refused "--hyp a folder" "--hyp '$WORK/dataset'" --data none --trainer "$TRAINER" --hyp "$WORK/dataset"
expect_refused "--meta missing" "--meta '$WORK/nometa.yaml'" --data none --trainer "$TRAINER" \
	--meta "$WORK/nometa.yaml"
expect_refused "--db in a folder that does not exist" "--db '$WORK/nofolder/e.db'" --data none \
	--trainer "$TRAINER" --db "$WORK/nofolder/e.db"

section "the trainer program"
expect_refused "template program not on PATH" "'no_such_trainer_xyz' not found on PATH" --data none \
	--trainer "no_such_trainer_xyz --hyp {hyp}"
expect_refused "template program not executable" "is not an executable file" --data none \
	--trainer "$GOOD_DATA --hyp {hyp}"
mkdir -p "$WORK/yolov5/models"
expect_refused "yolov5:DIR without train.py" "no train.py" --data "$GOOD_DATA" --trainer "yolov5:$WORK/yolov5"
echo "# stand-in" >"$WORK/yolov5/train.py"
expect_refused "yolov5:DIR with --python not on PATH" "--python 'no_such_python'" --data "$GOOD_DATA" \
	--trainer "yolov5:$WORK/yolov5" --python no_such_python
printf 'path: ../datasets/x\ntrain: images\nval: images\nnames: [a]\n' >"$WORK/relative.yaml"
expect_refused "yolov5:DIR and a relative path: in data.yaml" "YOLOv5 resolves it against its own folder" \
	--data "$WORK/relative.yaml" --trainer "yolov5:$WORK/yolov5" --python "$FX"
# YOLOv5's own data/*.yaml resolve path: against its folder on purpose
mkdir -p "$WORK/yolov5/data" "$WORK/datasets/x"
cp "$WORK/relative.yaml" "$WORK/yolov5/data/own.yaml"
cp "$CFG" "$WORK/yolov5/models/"
cat >"$WORK/fake-python" <<EOS
#!/usr/bin/env bash
shift
exec "$FX" "\$@"
EOS
chmod +x "$WORK/fake-python"
run_ye "$WORK/y5own.log" --project "$WORK/y5own" --name r --data own.yaml --cfg yolov5n.yaml \
	--weights yolov5s.pt --trainer "yolov5:$WORK/yolov5" --python "$WORK/fake-python" \
	--generations 1 --epochs 1 --quiet
check_eq "yolov5:DIR: its own data/own.yaml, models/yolov5n.yaml and release weights by name pass (exit 0)" 0 "$RC"
[[ "$RC" == 0 ]] || show_file "$WORK/y5own.log" 3

section "a trainer that always fails: the breaker stops after the base"
FIXTURE_MODE=fail evolve "$WORK/b" always --generations 300 --epochs 2 --parallel 1
DB=$WORK/b/always/evolve.db
check_eq "exit status 3 (the circuit breaker)" 3 "$RC"
check_eq "only generation 0 ran, failed" "1|1" "$(sql "$DB" "SELECT count(*), sum(status = 'failed') FROM generations")"
error_block "$WORK/always.log" >"$WORK/always.err"
check "the error gives the reason" \
	grep -q '^error: circuit breaker: generation 0 (the base hyp) failed: exit status 1; log: ' "$WORK/always.err"
check "and the trainer's own error, from its log" grep -q '^    fixture_trainer: error: simulated training failure' \
	"$WORK/always.err"
check "and how to go on" grep -q "yolo-evolve --resume --db" "$WORK/always.log"
check "the reason is in the database" test -n "$(sql "$DB" "SELECT stop_reason FROM evolution WHERE stop_reason LIKE 'generation 0 (the base hyp) failed: exit status 1; log: %simulated training failure%' AND stopped_at IS NOT NULL")"
run_ye "$WORK/always_status.log" status --db "$DB"
check "status shows the reason" grep -q "stopped by the circuit breaker: generation 0" "$WORK/always_status.log"

section "a trainer that fails after 3 epochs"
FIXTURE_MODE=fail FIXTURE_FAIL_EPOCHS=3 evolve "$WORK/b" late --generations 20 --epochs 5
DB=$WORK/b/late/evolve.db
check_eq "exit status 3" 3 "$RC"
check_eq "generation 0 failed after 3 epochs, all 3 recorded" "failed|3|3" \
	"$(sql "$DB" "SELECT status, epochs_done, (SELECT count(*) FROM epochs WHERE generation = 0) FROM generations")"

section "the base fails, the cause is fixed, --resume goes on"
# generation 0 fails at once; the others (side by side) are slow and get stopped
cat >"$WORK/flaky.sh" <<EOS
#!/usr/bin/env bash
if [[ ! -e "$WORK/fixed" && "\$*" == *g00000* ]]; then
	echo "RuntimeError: CUDA out of memory" >&2
	exit 1
fi
exec "$FX" "\$@"
EOS
chmod +x "$WORK/flaky.sh"
FLAKY="$WORK/flaky.sh --hyp {hyp} --epochs {epochs} --save-dir {save_dir} --seed {seed}"
FIXTURE_EPOCH_MS=300 run_ye "$WORK/base.log" --project "$WORK/b" --name base --data none --trainer "$FLAKY" \
	--generations 6 --epochs 10 --parallel 2 --grace 5 --quiet
DB=$WORK/b/base/evolve.db
check_eq "exit status 3" 3 "$RC"
check_eq "generation 0 failed, generation 1 (beside it) stopped and recorded interrupted" \
	"0|failed|1,1|interrupted|1" \
	"$(sql "$DB" "SELECT group_concat(generation || '|' || status || '|' || attempts) FROM generations")"
check_eq "generation 1's error says the breaker stopped it" "stopped by the circuit breaker" \
	"$(sql "$DB" "SELECT error FROM generations WHERE generation = 1")"
check "the error line carries the trainer's message" grep -q "^error: circuit breaker: .*CUDA out of memory" "$WORK/base.log"
check "no trainer left running" wait_gone 5 "$WORK/b/base/"
touch "$WORK/fixed"
run_ye "$WORK/base_resume.log" --resume --db "$DB" --quiet
check_eq "--resume after the fix exits 0" 0 "$RC"
[[ "$RC" == 0 ]] || show_file "$WORK/base_resume.log"
check_eq "6 generations done; the base on its second attempt" "6|6|2" \
	"$(sql "$DB" "SELECT count(*), sum(status = 'done'), (SELECT attempts FROM generations WHERE generation = 0) FROM generations")"
check_eq "the first attempt's folder is kept" 1 "$(ls -d "$WORK/b/base/candidates/g00000.attempt1" | wc -l)"
check_eq "the stop record is cleared" 1 "$(sql "$DB" "SELECT stop_reason IS NULL AND stopped_at IS NULL FROM evolution")"

section "5 candidates in a row fail: the breaker stops, --resume goes on"
# the base works, every other candidate fails with the same error
cat >"$WORK/oom.sh" <<EOS
#!/usr/bin/env bash
if [[ ! -e "$WORK/oom_fixed" && "\$*" != *g00000* ]]; then
	echo "RuntimeError: CUDA out of memory" >&2
	exit 1
fi
exec "$FX" "\$@"
EOS
chmod +x "$WORK/oom.sh"
OOM="$WORK/oom.sh --hyp {hyp} --epochs {epochs} --save-dir {save_dir} --seed {seed}"
run_ye "$WORK/row.log" --project "$WORK/b" --name row --data none --trainer "$OOM" --generations 20 \
	--epochs 2 --quiet
DB=$WORK/b/row/evolve.db
check_eq "exit status 3" 3 "$RC"
check_eq "stopped after 6 generations: the base done, 5 failed" "6|1|5" \
	"$(sql "$DB" "SELECT count(*), sum(status = 'done'), sum(status = 'failed') FROM generations")"
check "the database says why" test -n "$(sql "$DB" "SELECT 1 FROM evolution WHERE stop_reason LIKE '5 candidates failed in a row (the last: generation 5), all with the same error: exit status 1; log: RuntimeError: CUDA out of memory%'")"
check "so does the error line" grep -q "^error: circuit breaker: 5 candidates failed in a row.*CUDA out of memory" "$WORK/row.log"
touch "$WORK/oom_fixed"
run_ye "$WORK/row_resume.log" --resume --db "$DB" --quiet
check_eq "--resume after the fix exits 0" 0 "$RC"
check_eq "20 generations; the 5 failures stay recorded" "20|15|5" \
	"$(sql "$DB" "SELECT count(*), sum(status = 'done'), sum(status = 'failed') FROM generations")"
rm "$WORK/oom_fixed"
run_ye "$WORK/row3.log" --project "$WORK/b" --name row3 --data none --trainer "$OOM" --generations 20 \
	--epochs 2 --quiet --max-failures 3
check_eq "--max-failures 3: exit 3 after 3 failures in a row" "3|4" \
	"$RC|$(sql "$WORK/b/row3/evolve.db" "SELECT count(*) FROM generations")"
run_ye "$WORK/row0.log" --project "$WORK/b" --name row0 --data none --trainer "$OOM" --generations 12 \
	--epochs 2 --quiet --max-failures 0
check_eq "--max-failures 0: all 12 run (11 failed), exit 0 (the base succeeded)" "0|12|11" \
	"$RC|$(sql "$WORK/b/row0/evolve.db" "SELECT count(*), sum(status = 'failed') FROM generations")"
check_eq "and nothing is recorded as a stop" 1 "$(sql "$WORK/b/row0/evolve.db" "SELECT stop_reason IS NULL FROM evolution")"

section "nothing succeeded: exit 4"
FIXTURE_MODE=fail evolve "$WORK/b" none --generations 3 --epochs 1 --max-failures 0
check_eq "every candidate failed, breaker off: exit 4" "4|3" \
	"$RC|$(sql "$WORK/b/none/evolve.db" "SELECT count(*) FROM generations WHERE status = 'failed'")"
check "the error says no candidate succeeded" grep -q "^error: no candidate succeeded" "$WORK/none.log"

section "SIGHUP stops cleanly"
# (1 s epochs: both candidates must be seen running together even on a loaded machine;
# env --default-signal: SIGHUP as a terminal would deliver it, also when this test itself
# runs under nohup, whose ignored SIGHUP yolo-evolve would keep, as the next check shows)
FIXTURE_EPOCH_MS=1000 env --default-signal=HUP "$YE" --project "$WORK/h" --name hup --data none --trainer "$TRAINER" --quiet \
	--generations 6 --epochs 10 --parallel 2 >"$WORK/hup.log" 2>&1 &
pid=$!
BG_PIDS+=("$pid")
DB=$WORK/h/hup/evolve.db
if wait_sql 20 "$DB" "SELECT count(*) = 2 FROM generations WHERE status = 'running' AND epochs_done > 0"; then
	kill -HUP "$pid"
	if wait_pid_exit 15 "$pid"; then
		check_eq "SIGHUP: exit 129" 129 "$RC"
	else
		fail "SIGHUP: still running 15 s later"
	fi
	check_eq "both candidates recorded interrupted by SIGHUP" "2|2" \
		"$(sql "$DB" "SELECT count(*), sum(status = 'interrupted' AND error = 'interrupted by SIGHUP') FROM generations")"
	check "no trainer left running" wait_gone 5 "$WORK/h/hup/"
	run_ye "$WORK/hup_resume.log" --resume --db "$DB" --quiet
	check_eq "--resume finishes (exit 0, 6 done)" "0|6" \
		"$RC|$(sql "$DB" "SELECT count(*) FROM generations WHERE status = 'done'")"
else
	fail "the evolution never had two running candidates"
	show_file "$WORK/hup.log"
fi
# under nohup the hangup is ignored, as nohup promises
FIXTURE_EPOCH_MS=300 nohup "$YE" --project "$WORK/h" --name nohup --data none --trainer "$TRAINER" --quiet \
	--generations 3 --epochs 10 >"$WORK/nohup.log" 2>&1 &
pid=$!
BG_PIDS+=("$pid")
if wait_sql 20 "$WORK/h/nohup/evolve.db" "SELECT count(*) FROM generations WHERE status = 'running' AND epochs_done > 0"; then
	kill -HUP "$pid"
	sleep 1
	check "under nohup, SIGHUP is ignored" kill -0 "$pid"
	kill -TERM "$pid"
	if wait_pid_exit 15 "$pid"; then check_eq "then SIGTERM: exit 143" 143 "$RC"; else fail "nohup run: still running"; fi
else
	fail "the nohup evolution never ran a candidate"
fi

section "status of a SIGKILLed evolver's database"
FIXTURE_EPOCH_MS=1000 "$YE" --project "$WORK/k" --name dead --data none --trainer "$TRAINER" --quiet \
	--generations 6 --epochs 10 --parallel 2 >"$WORK/dead.log" 2>&1 &
pid=$!
BG_PIDS+=("$pid")
DB=$WORK/k/dead/evolve.db
if wait_sql 20 "$DB" "SELECT count(*) = 2 FROM generations WHERE status = 'running'"; then
	run_ye "$WORK/live_status.log" status --db "$DB"
	check "while it runs, status says 2 running" grep -q " 2 running, " "$WORK/live_status.log"
	kill -KILL "$pid"
	wait_pid_exit 10 "$pid" || true
	wait_gone 10 "$WORK/k/dead/" || true
	check_eq "the database still has 2 'running' rows" 2 \
		"$(sqlite3 "file:$DB?mode=ro" "SELECT count(*) FROM generations WHERE status = 'running'")"
	before=$(sha256sum "$DB" "$DB-wal" 2>/dev/null)
	run_ye "$WORK/dead_status.log" status --db "$DB"
	after=$(sha256sum "$DB" "$DB-wal" 2>/dev/null)
	check_eq "status exits 0" 0 "$RC"
	check "status shows 0 running, 2 interrupted" grep -q " 0 running, 2 interrupted" "$WORK/dead_status.log"
	check "and no 'running:' line" bash -c "! grep -q '^running:' '$WORK/dead_status.log'"
	check "and says --resume reruns them" grep -q "left running by an evolver that is gone; --resume reruns them" \
		"$WORK/dead_status.log"
	check_eq "the database files are unchanged (sha256)" "$before" "$after"
	run_ye "$WORK/dead_report.log" report --db "$DB" --out "$WORK/dead_report"
	check "report's summary shows no running row either" grep -q " 0 running, 2 interrupted" "$WORK/dead_report.log"
	check_eq "the database files are still unchanged" "$before" "$(sha256sum "$DB" "$DB-wal" 2>/dev/null)"
else
	fail "the evolution never had two running candidates"
	show_file "$WORK/dead.log"
fi

ye_finish
