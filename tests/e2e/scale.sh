#!/usr/bin/env bash
# scale.sh - evolution at scale, end to end: determinism for P = 2 and 4
# with random trainer durations, median pruning decisions checked against
# SQL, the population GA, the yolov5:DIR template against a stand-in for
# YOLOv5's train.py, GPU groups (--devices, --per-device,
# --gpus-per-candidate: pinning, slots, YOLOv5's DDP launch), the live
# terminal display, capped logs, SIGTERM, umask.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

section "P = 2 and P = 4: the table does not depend on finishing order"
for p in 2 4; do
	FIXTURE_DURATION_MS=5,80 evolve "$WORK/det" "p${p}a" --epochs 2 --generations 20 --seed 5 --parallel "$p"
	rc1=$RC
	FIXTURE_DURATION_MS=5,80 evolve "$WORK/det" "p${p}b" --epochs 2 --generations 20 --seed 5 --parallel "$p"
	check_eq "P=$p: both runs exit 0" "0 0" "$rc1 $RC"
	gen_dump "$WORK/det/p${p}a/evolve.db" >"$WORK/p${p}a.csv"
	gen_dump "$WORK/det/p${p}b/evolve.db" >"$WORK/p${p}b.csv"
	check "P=$p: identical generations tables" cmp -s "$WORK/p${p}a.csv" "$WORK/p${p}b.csv"
	# the rule: a parent of generation i is among 0 .. i-P
	bad=$(sql "$WORK/det/p${p}a/evolve.db" "SELECT count(*) FROM generations WHERE parent IS NOT NULL AND parent > generation - $p")
	check_eq "P=$p: every parent is at least P generations older" 0 "$bad"
done
evolve "$WORK/det" lag --epochs 2 --generations 20 --seed 5 --parallel 2 --lag 5
check_eq "--lag 5 runs" 0 "$RC"
bad=$(sql "$WORK/det/lag/evolve.db" "SELECT count(*) FROM generations WHERE parent IS NOT NULL AND parent > generation - 5")
check_eq "--lag 5: every parent is at least 5 generations older" 0 "$bad"

section "median pruning: decisions follow the rule"
FIXTURE_CROSSING=1 evolve "$WORK/prune" p --epochs 8 --generations 40 --seed 3 --prune median --prune-warmup 2
check_eq "pruned evolution exits 0" 0 "$RC"
DB=$WORK/prune/p/evolve.db
pruned=$(sql "$DB" "SELECT count(*) FROM generations WHERE status = 'pruned'")
check "some generations were pruned ($pruned)" test "$pruned" -gt 0
# the median of the reference set (done or pruned generations before this one) at an epoch
MEDIAN_SQL="WITH f AS (SELECT e.generation AS g, e.epoch, 0.1 * e.map50 + 0.9 * e.map AS fit
                       FROM epochs e JOIN generations USING (generation)
                       WHERE status IN ('done', 'pruned')),
  below AS (SELECT c.g, c.epoch, c.fit,
                   (SELECT count(*) FROM f r WHERE r.g < c.g AND r.epoch = c.epoch) AS n,
                   (SELECT count(*) FROM f r WHERE r.g < c.g AND r.epoch = c.epoch AND r.fit > c.fit) AS above,
                   (SELECT count(*) FROM f r WHERE r.g < c.g AND r.epoch = c.epoch AND r.fit < c.fit) AS under
            FROM f c WHERE c.epoch >= 2)"
# a candidate is below the median when more than half of the references beat it
early=$(sql "$DB" "$MEDIAN_SQL SELECT count(*) FROM below b JOIN generations g ON g.generation = b.g
                    WHERE n >= 3 AND above * 2 > n AND (g.status = 'done' OR b.epoch < g.epochs_done - 1)")
check_eq "no candidate ran on past an epoch where it was below the median" 0 "$early"
wrong=$(sql "$DB" "$MEDIAN_SQL SELECT count(*) FROM below b JOIN generations g ON g.generation = b.g
                    WHERE g.status = 'pruned' AND b.epoch = g.epochs_done - 1 AND NOT (n >= 3 AND above * 2 >= n)")
check_eq "every pruned candidate was below the median at its last epoch" 0 "$wrong"
check_eq "pruned rows keep only their epochs up to the pruning" 0 \
	"$(sql "$DB" "SELECT count(*) FROM epochs JOIN generations USING (generation) WHERE status = 'pruned' AND epoch >= epochs_done")"
check_eq "no pruned generation is a parent" 0 \
	"$(sql "$DB" "SELECT count(*) FROM generations WHERE parent IN (SELECT generation FROM generations WHERE status = 'pruned')")"
FIXTURE_CROSSING=1 evolve "$WORK/prune" q --epochs 8 --generations 40 --seed 3 --prune median --prune-warmup 2 --parallel 3
FIXTURE_CROSSING=1 FIXTURE_DURATION_MS=5,60 evolve "$WORK/prune" r --epochs 8 --generations 40 --seed 3 --prune median --prune-warmup 2 --parallel 3
gen_dump "$WORK/prune/q/evolve.db" >"$WORK/q.csv"
gen_dump "$WORK/prune/r/evolve.db" >"$WORK/r.csv"
check "pruning decisions do not depend on timing (P = 3, two runs)" cmp -s "$WORK/q.csv" "$WORK/r.csv"

section "population GA"
evolve "$WORK/ga" g --algorithm ga --population 6 --ga-dir "$YE_SOURCE_ROOT/data/hyps" --generations 24 --epochs 2 --seed 4 --parallel 3
check_eq "GA evolution exits 0" 0 "$RC"
DB=$WORK/ga/g/evolve.db
check_eq "4 populations of 6" "0|6,1|6,2|6,3|6" "$(sql "$DB" "SELECT group_concat(population || '|' || n) FROM (SELECT population, count(*) AS n FROM generations GROUP BY population ORDER BY population)")"
check_eq "the GA keeps keys inside their bounds" 0 \
	"$(sql "$DB" "SELECT count(*) FROM generations WHERE lr0 < 1e-5 OR lr0 > 0.1 OR momentum < 0.6 OR momentum > 0.98 OR mosaic < 0 OR mosaic > 1")"
check_eq "frozen keys keep the base value" 1 "$(sql "$DB" "SELECT count(DISTINCT iou_t || fl_gamma || perspective || fliplr) FROM generations")"
evolve "$WORK/ga" h --algorithm ga --population 6 --ga-dir "$YE_SOURCE_ROOT/data/hyps" --generations 24 --epochs 2 --seed 4 --parallel 2
check "the GA table is the same for P = 2 and P = 3" cmp -s <(gen_dump "$DB") <(gen_dump "$WORK/ga/h/evolve.db")
seeds=$(sql "$DB" "SELECT count(*) FROM generations WHERE population = 0 AND lr0 = 0.01 AND momentum = 0.937")
check_eq "the 3 hyp files seed population 0" 3 "$seeds"

section "yolov5:DIR drives YOLOv5's train.py command line"
mkdir -p "$WORK/yolov5/models"
echo "# stand-in: never run by Python here" >"$WORK/yolov5/train.py"
# --cfg yolov5n.yaml is found in DIR/models as YOLOv5 finds it; data.yaml must be one
cp "$YE_SOURCE_ROOT/models/yolov5n.yaml" "$WORK/yolov5/models/"
printf 'path: %s\ntrain: images/train\nval: images/val\nnames: [a]\n' "$WORK" >"$WORK/data.yaml"
# a stand-in interpreter: drops the script and runs the fixture with YOLOv5's argv
cat >"$WORK/fake-python" <<EOS
#!/usr/bin/env bash
[[ "\$1" == "$WORK/yolov5/train.py" ]] || { echo "unexpected script \$1" >&2; exit 3; }
shift
printf '%s\n' "\$@" >"\$PWD/argv.txt"
exec "$FX" "\$@"
EOS
chmod +x "$WORK/fake-python"
run_ye "$WORK/y5.log" --project "$WORK/y5" --name e --data "$WORK/data.yaml" --cfg yolov5n.yaml --weights '' \
	--epochs 2 --generations 3 --imgsz 320 --batch-size 8 --device cpu --quiet \
	--trainer "yolov5:$WORK/yolov5" --python "$WORK/fake-python"
check_eq "yolov5:DIR evolution exits 0" 0 "$RC"
check_eq "3 done generations" 3 "$(sql "$WORK/y5/e/evolve.db" "SELECT count(*) FROM generations WHERE status = 'done'")"
argv=$(tr '\n' ' ' <"$WORK/y5/e/candidates/g00001/argv.txt")
expect="--hyp $WORK/y5/e/candidates/g00001/evolve_hyp.yaml --data $WORK/data.yaml --cfg yolov5n.yaml --weights  --epochs 2 --batch-size 8 --img 320 --device cpu --project $WORK/y5/e/candidates --name g00001 --exist-ok "
check_eq "YOLOv5's argv, exactly" "$expect" "$argv"
check "results.csv found in project/name as YOLOv5 writes it" test -s "$WORK/y5/e/candidates/g00001/results.csv"

section "GPU groups: --devices 0,1,2,3 --per-device 2 --gpus-per-candidate 2"
# The trainer behind tests/slurm/record_env.sh, which writes the
# CUDA_VISIBLE_DEVICES it gets into save_dir/slurm_env.txt; {device} lands in opt.yaml.
GTRAINER="$YE_SOURCE_ROOT/tests/slurm/record_env.sh {save_dir}/slurm_env.txt $TRAINER --device {device}"
cvd_of() { sed -n 's/^CUDA_VISIBLE_DEVICES=//p' "$1/slurm_env.txt" 2>/dev/null | head -n 1; }
dev_of() { sed -n "s/^device: '\{0,1\}\([^']*\)'\{0,1\}\$/\1/p" "$1/opt.yaml" 2>/dev/null; }
# gpu_check NAME GROUPS DEVICE: every candidate of run NAME was pinned to one of
# GROUPS (space-separated), recorded with it, and given --device DEVICE
gpu_check() {
	local name=$1 groups=" $2 " device=$3 dir g bad=0 db=$WORK/gpu/$1/evolve.db
	for dir in "$WORK/gpu/$name"/candidates/g*; do
		g=$(basename "$dir")
		local cvd dev rec
		cvd=$(cvd_of "$dir") dev=$(dev_of "$dir")
		rec=$(sql "$db" "SELECT device FROM generations WHERE generation = $((10#${g#g}))")
		if [[ "$groups" != *" $cvd "* || "$dev" != "$device" || "$rec" != "$cvd" ]]; then
			bad=$((bad + 1))
			note "$name/$g: CUDA_VISIBLE_DEVICES='$cvd' --device '$dev' recorded device '$rec'"
		fi
	done
	check_eq "$name: every candidate pinned to one of {$2}, recorded so, --device $device" 0 "$bad"
}
# most_at_once DB [DEVICE]: the most candidates (of DEVICE) running at one time
most_at_once() {
	local same=${2:+"AND b.device = '$2'"}
	sql "$1" "SELECT max(n) FROM (SELECT (SELECT count(*) FROM generations b WHERE
		b.started_at <= a.started_at AND a.started_at < b.finished_at $same) AS n
		FROM generations a ${2:+WHERE a.device = '$2'})"
}
FIXTURE_DURATION_MS=300,400 run_ye "$WORK/gpu2.log" --project "$WORK/gpu" --name n2 --data none \
	--trainer "$GTRAINER" --quiet --epochs 2 --generations 8 --seed 5 \
	--devices 0,1,2,3 --per-device 2 --gpus-per-candidate 2
check_eq "N = 2, K = 2 on 4 GPUs: exit 0" 0 "$RC"
check_eq "4 slots: parallel 4 in the database" 4 "$(sql "$WORK/gpu/n2/evolve.db" "SELECT parallel FROM evolution")"
gpu_check n2 "0,1 2,3" "0,1"
check_eq "4 candidates ran at once" 4 "$(most_at_once "$WORK/gpu/n2/evolve.db")"
for group in 0,1 2,3; do
	check_eq "at most K = 2 at once on GPUs $group" 2 "$(most_at_once "$WORK/gpu/n2/evolve.db" "$group")"
done
run_ye "$WORK/gpu2r.log" --resume --project "$WORK/gpu" --name n2 --generations 12 --quiet
check_eq "--resume --generations 12: exit 0" 0 "$RC"
gpu_check n2 "0,1 2,3" "0,1"
for group in 0,1 2,3; do
	check_eq "after --resume: 6 candidates on GPUs $group" 6 \
		"$(sql "$WORK/gpu/n2/evolve.db" "SELECT count(*) FROM generations WHERE device = '$group'")"
done
gen_dump "$WORK/gpu/n2/evolve.db" >"$WORK/gpu-n2.csv"
evolve "$WORK/gpu" p4 --epochs 2 --generations 12 --seed 5 --parallel 4 --trainer "$GTRAINER"
gen_dump "$WORK/gpu/p4/evolve.db" >"$WORK/gpu-p4.csv"
check "the same generations as --parallel 4 without GPUs" cmp -s "$WORK/gpu-n2.csv" "$WORK/gpu-p4.csv"
run_ye "$WORK/gpu1.log" --project "$WORK/gpu" --name n1 --data none --trainer "$GTRAINER" --quiet \
	--epochs 1 --generations 4 --devices 0,1 --per-device 2
check_eq "N = 1 (default), K = 2 on 2 GPUs: exit 0" 0 "$RC"
gpu_check n1 "0 1" "0"

section "GPU groups with yolov5:DIR: torch.distributed.run, the group's own ids"
# a stand-in interpreter for YOLOv5's DDP launch: checks the launch words, runs the fixture
cat >"$WORK/fake-torchrun" <<EOS
#!/usr/bin/env bash
launch="-m torch.distributed.run --nnodes 1 --nproc_per_node 2 --rdzv_backend c10d"
launch+=" --rdzv_endpoint localhost:0 $WORK/yolov5/train.py"
[[ "\${*:1:11}" == "\$launch" ]] || { echo "unexpected launch: \$*" >&2; exit 3; }
shift 11
{ printf '%s\n' "\$@"; echo "CUDA_VISIBLE_DEVICES=\$CUDA_VISIBLE_DEVICES"; } >"\$PWD/argv.txt"
exec "$FX" "\$@"
EOS
chmod +x "$WORK/fake-torchrun"
run_ye "$WORK/y5ddp.log" --project "$WORK/y5" --name ddp --data "$WORK/data.yaml" --cfg yolov5n.yaml \
	--weights '' --epochs 2 --generations 4 --imgsz 320 --batch-size 8 --quiet \
	--trainer "yolov5:$WORK/yolov5" --python "$WORK/fake-torchrun" \
	--devices 0,1,2,3 --gpus-per-candidate 2
check_eq "yolov5:DIR on 2 groups of 2: exit 0" 0 "$RC"
check_eq "4 done generations" 4 "$(sql "$WORK/y5/ddp/evolve.db" "SELECT count(*) FROM generations WHERE status = 'done'")"
bad=0
for g in 0 1 2 3; do
	dir=$WORK/y5/ddp/candidates/g0000$g
	dev=$(sed -n '/^--device$/{n;p}' "$dir/argv.txt") cvd=$(sed -n 's/^CUDA_VISIBLE_DEVICES=//p' "$dir/argv.txt")
	# YOLOv5's select_device writes --device into CUDA_VISIBLE_DEVICES: the two must agree
	if [[ ("$dev" != 0,1 && "$dev" != 2,3) || "$dev" != "$cvd" ]]; then
		bad=$((bad + 1))
		note "g0000$g: --device '$dev' CUDA_VISIBLE_DEVICES='$cvd'"
	fi
done
check_eq "each YOLOv5 candidate: --device = CUDA_VISIBLE_DEVICES = its group" 0 "$bad"

section "live display on a terminal"
FIXTURE_EPOCH_MS=40 script -qec "$YE --project $WORK/tty --name t --data none --trainer '$TRAINER' --generations 6 --epochs 3 --parallel 2" "$WORK/tty.typescript" >/dev/null </dev/null
check "the display shows the slots" grep -qa "slot 1: generation" "$WORK/tty.typescript"
check "and the totals with the best so far" grep -qaE "finished  best [0-9.]+ \(generation" "$WORK/tty.typescript"
check "it redraws in place (cursor up, clear)" grep -qa $'\033\\[3A\033\\[J' "$WORK/tty.typescript"
"$YE" --project "$WORK/tty" --name p --data none --trainer "$TRAINER" --generations 3 --epochs 2 >"$WORK/plain.log" 2>&1
check "not a terminal: plain log lines, no escapes" bash -c "! grep -qa $'\033' '$WORK/plain.log' && grep -q 'generation 2: done' '$WORK/plain.log'"

section "capped trainer logs"
FIXTURE_MODE=log FIXTURE_LOG_BYTES=5000000 evolve "$WORK/logs" l --generations 1 --epochs 1 --log-max 1
check_eq "a 5 MB log does not stop the run" 0 "$RC"
L=$WORK/logs/l/candidates/g00000
size=$(stat -c %s "$L/train.log")
old=$(stat -c %s "$L/train.log.1" 2>/dev/null || echo 0)
check "train.log stays under 1 MiB ($size bytes)" test "$size" -le 1048576
check "one rotated part is kept ($old bytes)" test "$old" -eq 1048576
check "the end of the output is in train.log" grep -q "epoch 1/1" "$L/train.log"

section "reports"
run_ye "$WORK/report.log" report --db "$WORK/det/p2a/evolve.db" --out "$WORK/report"
check_eq "yolo-evolve report exits 0" 0 "$RC"
for f in evolve.png fitness.png; do
	check "$f is a PNG" bash -c "head -c 8 '$WORK/report/$f' | od -An -tx1 | grep -q '89 50 4e 47 0d 0a 1a 0a'"
done
check "report refreshes evolve.csv and hyp_evolve.yaml" test -s "$WORK/report/evolve.csv" -a -s "$WORK/report/hyp_evolve.yaml"
check "report prints the top generations" grep -q "largest changes from the base hyp" "$WORK/report.log"
check "run folders get the plots at the end of a run" test -s "$WORK/det/p2a/evolve.png" -a -s "$WORK/det/p2a/fitness.png"
FIXTURE_MODE=fail evolve "$WORK/rep" allfail --generations 2 --epochs 1 --max-failures 0
run_ye "$WORK/report2.log" report --db "$WORK/rep/allfail/evolve.db"
check_eq "a report of failures only still works" 0 "$RC"
check "and says nothing finished" grep -q "no generation has finished successfully yet" "$WORK/report2.log"

section "SIGTERM and umask"
FIXTURE_EPOCH_MS=300 "$YE" --project "$WORK/term" --name t --data none --trainer "$TRAINER" --generations 5 --epochs 5 --quiet >"$WORK/term.log" 2>&1 &
pid=$!
BG_PIDS+=("$pid")
wait_sql 10 "$WORK/term/t/evolve.db" "SELECT count(*) FROM generations WHERE status = 'running'" || true
kill -TERM "$pid"
if wait_pid_exit 15 "$pid"; then check_eq "SIGTERM: exit 143" 143 "$RC"; else fail "SIGTERM: still running"; fi
check_eq "the running generation is interrupted" interrupted "$(sql "$WORK/term/t/evolve.db" "SELECT status FROM generations ORDER BY generation DESC LIMIT 1")"
(umask 077 && "$YE" --project "$WORK/mask" --name u --data none --trainer "$TRAINER" --generations 1 --epochs 1 --quiet)
check_eq "umask 077: the database is private" 600 "$(stat -c %a "$WORK/mask/u/evolve.db")"
check_eq "umask 077: so is evolve.csv" 600 "$(stat -c %a "$WORK/mask/u/evolve.csv")"
(umask 022 && "$YE" --project "$WORK/mask" --name v --data none --trainer "$TRAINER" --generations 1 --epochs 1 --quiet)
check_eq "umask 022: readable by all" 644 "$(stat -c %a "$WORK/mask/v/evolve.db")"

ye_finish
