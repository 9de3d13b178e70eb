#!/usr/bin/env bash
# cli_errors.sh - every bad input is one clear error line and exit 1 or 2,
# never a crash; --help works everywhere; shell syntax in values is inert.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# expect_error DESCRIPTION CULPRIT ARGS...: yolo-evolve ARGS exits 1 or 2 with
# exactly one "error:" line, and that line mentions CULPRIT (fixed string).
N=0
expect_error() {
	local desc=$1 culprit=$2
	shift 2
	N=$((N + 1))
	local log=$WORK/err$N.log
	run_ye "$log" "$@"
	local errors
	errors=$(grep -c '^error:' "$log" || true)
	if ((RC != 1 && RC != 2)); then
		fail "$desc: exit status $RC, expected 1 or 2"
		show_file "$log" 5
	elif [[ "$errors" != 1 ]]; then
		fail "$desc: $errors 'error:' lines, expected exactly one"
		show_file "$log" 5
	elif ! grep '^error:' "$log" | grep -qF -- "$culprit"; then
		fail "$desc: the error does not mention '$culprit': $(grep '^error:' "$log")"
	else
		pass "$desc (exit $RC): $(grep '^error:' "$log")"
	fi
}

# A new run in project Q with the fixture, plus ARGS.
RUN=(--project "$WORK/Q" --name x --data none --generations 2 --epochs 1 --trainer "$TRAINER")

section "options"
expect_error "unknown option" "--bogus" "${RUN[@]}" --bogus
expect_error "missing option value" "--epochs" "${RUN[@]}" --epochs
expect_error "--epochs abc" "abc" "${RUN[@]}" --epochs abc
expect_error "--generations 0" "generations" "${RUN[@]}" --generations 0
expect_error "--mutation-prob 2" "mutation-prob" "${RUN[@]}" --mutation-prob 2
expect_error "--parent best" "best" "${RUN[@]}" --parent best
expect_error "unexpected argument" "stray" "${RUN[@]}" stray
expect_error "--evolve-keys lr0,bogus" "bogus" "${RUN[@]}" --evolve-keys lr0,bogus

section "GPU groups (--gpus-per-candidate): exit 2, nothing created"
# expect_gpu_error DESCRIPTION CULPRIT ARGS...: expect_error, and exit 2 exactly
expect_gpu_error() {
	expect_error "$@"
	check_eq "$1: exit 2" 2 "$RC"
}
expect_gpu_error "--devices 0,1,2 --gpus-per-candidate 2" "not a multiple of 2" "${RUN[@]}" \
	--devices 0,1,2 --gpus-per-candidate 2
expect_gpu_error "--parallel 3 with 2 groups x 2" "--parallel 3 contradicts" "${RUN[@]}" \
	--devices 0,1,2,3 --gpus-per-candidate 2 --per-device 2 --parallel 3
expect_gpu_error "--gpus-per-candidate 2 without --devices" "needs --devices" "${RUN[@]}" \
	--gpus-per-candidate 2
expect_gpu_error "--batch-size 15 on 2 GPUs" "--batch-size 15" "${RUN[@]}" \
	--devices 0,1 --gpus-per-candidate 2 --batch-size 15
expect_gpu_error "--gpus-per-candidate 0" "gpus-per-candidate" "${RUN[@]}" --devices 0,1 \
	--gpus-per-candidate 0
check "nothing created by the refused GPU settings" test ! -e "$WORK/Q/x"

section "hyp.yaml"
expect_error "--hyp to a missing file" "$WORK/nothere.yaml" "${RUN[@]}" --hyp "$WORK/nothere.yaml"
sed 's/^fl_gamma: /fl_gammma: /' "$BASE_HYP" >unknown.yaml
line=$(grep -n '^fl_gammma:' unknown.yaml | cut -d: -f1)
expect_error "unknown key (names key and line)" "unknown.yaml:$line: key 'fl_gammma'" "${RUN[@]}" --hyp unknown.yaml
grep -v '^mosaic:' "$BASE_HYP" >missing.yaml
expect_error "missing key" "mosaic" "${RUN[@]}" --hyp missing.yaml
sed 's/^box: 0.05 /box: abc  /' "$BASE_HYP" >nonnum.yaml
line=$(grep -n '^box:' nonnum.yaml | cut -d: -f1)
expect_error "non-number" "nonnum.yaml:$line: key 'box'" "${RUN[@]}" --hyp nonnum.yaml
sed 's/^box: 0.05 /box: .nan  /' "$BASE_HYP" >nan.yaml
expect_error ".nan value" "nan.yaml:$line: key 'box'" "${RUN[@]}" --hyp nan.yaml
{ cat "$BASE_HYP"; echo "lr0: 0.02"; } >dup.yaml
expect_error "duplicate key" "key 'lr0'" "${RUN[@]}" --hyp dup.yaml
check "duplicate key: the message says 'duplicate'" grep -q 'duplicate' "$WORK/err$N.log"
sed 's/^lr0: 0.01 /lr0: 5.0  /' "$BASE_HYP" >oob.yaml
expect_error "out-of-bounds value" "key 'lr0'" "${RUN[@]}" --hyp oob.yaml

section "meta and templates"
printf 'momentum: [0.3, 0.9, 0.7]\n' >meta_bad.yaml
expect_error "--meta with lower > upper" "momentum" "${RUN[@]}" --meta meta_bad.yaml
expect_error "template with {foo}" "{foo}" --project "$WORK/Q" --name x --data none \
	--trainer "$FX --hyp {hyp} --epochs {foo}"
expect_error "template without {hyp}" "{hyp}" --project "$WORK/Q" --name x --data none \
	--trainer "$FX --epochs {epochs} --save-dir {save_dir}"
expect_error "trainer path that does not exist" "/nonexistent/no_such_trainer" \
	--project "$WORK/Q" --name x --data none --trainer "/nonexistent/no_such_trainer --hyp {hyp}"
expect_error "trainer program not on PATH" "no_such_trainer_xyz" --project "$WORK/Q" --name np \
	--data none --generations 3 --trainer "no_such_trainer_xyz --hyp {hyp} --save-dir {save_dir}"
if [[ -f Q/np/evolve.db ]]; then
	check_eq "trainer not on PATH: no 'running' rows left" 0 \
		"$(sql Q/np/evolve.db "SELECT count(*) FROM generations WHERE status = 'running'")"
	check_eq "trainer not on PATH: no 'done' rows" 0 \
		"$(sql Q/np/evolve.db "SELECT count(*) FROM generations WHERE status = 'done'")"
else
	pass "trainer not on PATH: no database was made"
fi

section "databases"
expect_error "--resume on a missing db" "$WORK/none/evolve.db" --resume --db "$WORK/none/evolve.db"
check "--resume on a missing db creates nothing" test ! -e "$WORK/none"
expect_error "--name ../x refused" "../x" --project "$WORK/Q" --name ../x --data none \
	--trainer "$TRAINER"
check "--name ../x made nothing outside the project" test ! -e "$WORK/x"
expect_error "status on a missing db" "$WORK/missing.db" status --db "$WORK/missing.db"
expect_error "export on a missing db" "$WORK/missing.db" export --db "$WORK/missing.db" --csv -
check "status/export on a missing db create nothing" test ! -e "$WORK/missing.db"
expect_error "import of a missing file" "$WORK/nothere.csv" import "$WORK/nothere.csv" \
	--project "$WORK/Q" --name imp --trainer "$TRAINER"
check "import of a missing file makes no database" test ! -e "$WORK/Q/imp/evolve.db"

section "a database in use"
# a slow evolution holds the database ...
FIXTURE_EPOCH_MS=400 "$YE" --project "$WORK/L" --name run --data none --generations 3 --epochs 3 \
	--trainer "$TRAINER" --quiet >lock_first.log 2>&1 &
FIRST=$!
BG_PIDS+=("$FIRST")
DB=$WORK/L/run/evolve.db
if wait_sql 20 "$DB" "SELECT count(*) FROM generations WHERE status = 'running'"; then
	expect_error "export without --best/--csv" "--best" export --db "$DB"
	expect_error "second yolo-evolve --resume on a database in use" "in use" --resume --db "$DB"
	expect_error "second new run into the same folder" "$DB" --project "$WORK/L" --name run \
		--exist-ok --data none --trainer "$TRAINER"
	run_ye status_busy.log status --db "$DB"
	check_eq "status works while the evolution runs" 0 "$RC"
	check "the first run is still going" kill -0 "$FIRST"
	kill -INT "$FIRST"
	if wait_pid_exit 15 "$FIRST"; then
		check_eq "first run stopped by SIGINT exits 130" 130 "$RC"
	else
		fail "first run did not stop within 15 s of SIGINT"
	fi
else
	fail "the slow evolution never recorded a running generation"
	show_file lock_first.log
fi

section "--help"
for cmd in "" status export import; do
	run_ye help.log $cmd --help
	if ((RC == 0)) && grep -q usage help.log; then
		pass "yolo-evolve $cmd --help exits 0 with a usage text"
	else
		fail "yolo-evolve $cmd --help: exit $RC"
	fi
done

section "shell syntax in values is inert"
# the files exist (the pre-flight checks read them) under names that are shell syntax
printf 'train: images/train\nval: images/val\nnames: [a]\n' >"$WORK/\$(touch pwned)"
printf 'nc: 1\n' >"$WORK/; touch pwned_cfg"
run_ye pwn.log --project "$WORK/\$(touch pwned_project)" --name '$(touch pwned_name)' \
	--data '$(touch pwned)' --device '`touch pwned_device`' --cfg '; touch pwned_cfg' \
	--generations 2 --epochs 1 --quiet \
	--trainer "$FX --hyp {hyp} --data {data} --cfg {cfg} --device {device} --epochs {epochs} --save-dir {save_dir} --name {name}"
check_eq "evolution with \$(...) in --data, --name, --project, --device, --cfg exits 0" 0 "$RC"
found=$(find "$WORK" -name 'pwned*' | head -3)
check_eq "no file named pwned* appeared anywhere" "" "$found"
opt="$WORK/\$(touch pwned_project)/\$(touch pwned_name)/candidates/g00000/opt.yaml"
if [[ -f "$opt" ]] && grep -qF "data: '$WORK/\$(touch pwned)'" "$opt" &&
	grep -qF "cfg: '$WORK/; touch pwned_cfg'" "$opt"; then
	pass "the trainer got --data '$WORK/\$(touch pwned)' and --cfg literally"
else
	fail "the trainer did not get --data literally (opt.yaml: ${opt:-none})"
fi

ye_finish
