#!/usr/bin/env bash
# ddp_e2e.sh - yolo-train's DDP (one process, a thread per rank) on the CPU
# backend: YE_DDP_CPU_RANKS=N ranks with the thread communicator, on a tiny
# generated dataset of 21 images (odd, so DistributedSampler pads):
#   - 1 rank through the DDP machinery equals a plain run byte for byte;
#   - 2 and 4 ranks finish, rank 0 alone writes results.csv and weights,
#     every rank holds the same parameters after every optimizer step (the
#     per-rank checksums of YE_LOG_LEVEL=debug), and each epoch's images
#     are exactly the union of the ranks' shards, padding included;
#   - --sync-bn runs (and changes the result);
#   - YOLOv5's DDP refusals (--image-weights, a batch not divisible by
#     WORLD_SIZE) and --device 0,1 without a GPU: one line, exit 1, nothing
#     written;
#   - a NaN loss on the ranks ends the run with one error line, no rank
#     left waiting;
#   - a DDP run stopped by SIGTERM (143) or killed by SIGKILL resumes with
#     --resume to the same results.csv and last.safetensors as an
#     unstopped one.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
: "${YOLO_TRAIN:?set YOLO_TRAIN to the built yolo-train}"
: "${GEN_DATASET:?set GEN_DATASET to the built gen-dataset}"

YT=$YOLO_TRAIN
CFG=$YE_SOURCE_ROOT/models/yolov5n.yaml
N_TRAIN=21
unset YE_DDP_CPU_RANKS YE_LOG_LEVEL

section "a tiny dataset"
"$GEN_DATASET" "$WORK/data" --train $N_TRAIN --val 8 --size 64 --classes 2 --seed 5 >/dev/null
check "gen-dataset wrote data.yaml" test -s "$WORK/data/data.yaml"
DATA=$WORK/data/data.yaml

# train RANKS NAME EPOCHS [more options]: a run in $WORK/runs/NAME with RANKS CPU
# ranks ("" = a plain run), debug log in $WORK/NAME.log; sets RC.
train() {
	local ranks=$1 name=$2 epochs=$3
	shift 3
	RC=0
	YE_DDP_CPU_RANKS=$ranks YE_LOG_LEVEL=debug "$YT" --data "$DATA" --hyp "$BASE_HYP" \
		--cfg "$CFG" --epochs "$epochs" --batch-size 8 --imgsz 64 --workers 2 --threads 1 \
		--project "$WORK/runs" --name "$name" --seed 1 "$@" >"$WORK/$name.log" 2>&1 || RC=$?
}
rows() { { tail -n +2 "$1" 2>/dev/null || true; } | wc -l; }
same_run() { cmp -s "$1/results.csv" "$2/results.csv" &&
	cmp -s "$1/weights/last.safetensors" "$2/weights/last.safetensors"; }

# steps_agree LOG WORLD: every optimizer step logged by all WORLD ranks with one checksum.
steps_agree() {
	awk -v world="$2" '
		$2 == "ddp:" && $5 == "step" { n[$6]++; if (!($6 in first)) first[$6] = $8
			else if (first[$6] != $8) bad = 1 }
		END { for (s in n) { steps++; if (n[s] != world) bad = 1 }
		      if (steps == 0) bad = 1; print steps " steps"; exit bad }' "$1"
}

# shards_cover LOG WORLD EPOCHS [SHUFFLE]: per epoch, the ranks' images are
# ceil(n / world) each, together every image with only the padding (total - n)
# repeated; with SHUFFLE (1, the default) rank 0's order changes from epoch 0 to 1.
shards_cover() {
	awk -v world="$2" -v epochs="$3" -v shuffle="${4:-1}" -v n=$N_TRAIN '
		$2 == "ddp:" && $5 == "epoch" {
			for (i = 10; i <= NF; i++) { count[$6 " " $i]++; per_rank[$6 " " $4]++; total[$6]++ }
			if ($4 == 0) order[$6] = order[$6] " " substr($0, index($0, "items"))
		}
		END {
			per = int((n + world - 1) / world)
			for (e = 0; e < epochs; e++) {
				if (total[e] != per * world) { print "epoch " e ": " total[e] " images"; bad = 1 }
				for (r = 0; r < world; r++)
					if (per_rank[e " " r] != per) { print "epoch " e " rank " r ": " per_rank[e " " r]; bad = 1 }
				repeated = 0
				for (i = 0; i < n; i++) {
					c = count[e " " i]
					if (c < 1) { print "epoch " e ": image " i " missing"; bad = 1 }
					if (c > 1) repeated += c - 1
				}
				if (repeated != per * world - n) { print "epoch " e ": " repeated " repeats"; bad = 1 }
			}
			if (epochs > 1 && (order[0] == order[1]) == (shuffle == 1)) {
				print "shuffle " shuffle ": epoch 1 against epoch 0"; bad = 1 }
			exit bad
		}' "$1"
}

section "a plain run, and 1 rank through the DDP machinery"
train "" plain 2
check_eq "plain: exit status 0" 0 "$RC"
train 1 rank1 2
check_eq "1 rank: exit status 0" 0 "$RC"
[[ $RC == 0 ]] || show_file "$WORK/rank1.log" 6
check "1 rank: results.csv and last.safetensors byte-identical to the plain run" \
	same_run "$WORK/runs/plain" "$WORK/runs/rank1"
check "1 rank: its step checksums were logged" steps_agree "$WORK/rank1.log" 1

for world in 2 4; do
	section "$world ranks"
	train "$world" "ddp$world" 2
	R=$WORK/runs/ddp$world
	check_eq "$world ranks: exit status 0" 0 "$RC"
	[[ $RC == 0 ]] || show_file "$WORK/ddp$world.log" 6
	for f in hyp.yaml opt.yaml results.csv weights/last.safetensors weights/best.safetensors; do
		check "$world ranks: rank 0 wrote $f" test -s "$R/$f"
	done
	check_eq "$world ranks: results.csv has one row per epoch" 2 "$(rows "$R/results.csv")"
	check_eq "$world ranks: only rank 0 reports the end" 1 \
		"$(grep -c "epochs completed" "$WORK/ddp$world.log" || true)"
	check_eq "$world ranks: the log names the per-rank batch" 1 \
		"$(grep -c "DDP: $world ranks of $((8 / world)) images per batch" "$WORK/ddp$world.log" || true)"
	check "$world ranks: every rank has the same parameters after every optimizer step" \
		steps_agree "$WORK/ddp$world.log" "$world"
	check "$world ranks: each epoch's images are the union of the shards, padding included" \
		shards_cover "$WORK/ddp$world.log" "$world" 2
	shards_cover "$WORK/ddp$world.log" "$world" 2 | head -3 | sed 's/^/       /' || true
	check "$world ranks: the result is not the plain run's" \
		bash -c "! cmp -s '$WORK/runs/plain/results.csv' '$R/results.csv'"
done

section "--rect: no shuffle, each rank's batch in the largest rect shape of its images"
train 2 rect 2 --rect
check_eq "--rect: exit status 0" 0 "$RC"
[[ $RC == 0 ]] || show_file "$WORK/rect.log" 6
check "--rect: every rank has the same parameters after every step" steps_agree "$WORK/rect.log" 2
check "--rect: the shards cover the images, the same order every epoch" \
	shards_cover "$WORK/rect.log" 2 2 0

section "the same seed, the same bytes"
train 2 ddp2again 2
check "2 ranks twice: results.csv and last.safetensors identical" \
	same_run "$WORK/runs/ddp2" "$WORK/runs/ddp2again"

section "--sync-bn"
train 2 syncbn 2 --sync-bn
check_eq "--sync-bn: exit status 0" 0 "$RC"
[[ $RC == 0 ]] || show_file "$WORK/syncbn.log" 6
check "--sync-bn: every rank has the same parameters after every step" \
	steps_agree "$WORK/syncbn.log" 2
check "--sync-bn: BN over both shards changes the result" \
	bash -c "! cmp -s '$WORK/runs/ddp2/results.csv' '$WORK/runs/syncbn/results.csv'"
train 1 syncbn1 2 --sync-bn
check "--sync-bn over 1 rank equals the plain run" same_run "$WORK/runs/plain" "$WORK/runs/syncbn1"

section "refusals: one line, exit 1, nothing written"
# refused NAME EXPECTED-TEXT: the run refused with one line holding the text, no run folder
refused() {
	check_eq "$1: exit status 1" 1 "$RC"
	check_eq "$1: one line" 1 "$(wc -l <"$WORK/$1.log")"
	check "$1: the line says '$2'" grep -qF -- "$2" "$WORK/$1.log"
	check "$1: no run folder" test ! -e "$WORK/runs/$1"
}
train 2 imgweights 2 --image-weights
refused imgweights "--image-weights argument is not compatible with DDP training"
train 4 batch6 2 --batch-size 6
refused batch6 "must be a multiple of WORLD_SIZE 4"
train "" gpus 2 --device 0,1
refused gpus "CUDA"

section "an error on a rank ends every rank (the communicator is aborted)"
sed -e 's/^lr0:.*/lr0: 1.0e+30/' -e 's/^warmup_bias_lr:.*/warmup_bias_lr: 1.0e+30/' "$BASE_HYP" >"$WORK/nan.yaml"
YE_DDP_CPU_RANKS=4 "$YT" --data "$DATA" --hyp "$WORK/nan.yaml" --cfg "$CFG" --epochs 2 \
	--batch-size 8 --imgsz 64 --workers 1 --threads 1 --project "$WORK/runs" --name nan \
	>"$WORK/nan.log" 2>&1 &
pid=$!
BG_PIDS+=("$pid")
wait_pid_exit 120 "$pid" || fail "NaN: the ranks still run 120 s later (a rank waits forever?)"
check_eq "NaN: exit status 1" 1 "$RC"
check "NaN: the one error line names the rank's epoch, batch and loss" \
	grep -qE "^yolo-train: (rank [1-3]: )?epoch 0 batch [0-9]+: the loss is" "$WORK/nan.log"
check_eq "NaN: one error line" 1 "$(grep -c "^yolo-train:" "$WORK/nan.log" || true)"

section "a stopped or killed DDP run resumes to the same results"
train 2 whole 6
check_eq "the unstopped 6-epoch run: exit status 0" 0 "$RC"
# stop_run NAME SIGNAL DELAY: start a 6-epoch 2-rank run, send SIGNAL DELAY seconds
# after its first epoch is saved (a results.csv row and last.safetensors); sets RC.
stop_run() {
	local name=$1 signal=$2 delay=$3
	YE_DDP_CPU_RANKS=2 "$YT" --data "$DATA" --hyp "$BASE_HYP" --cfg "$CFG" --epochs 6 \
		--batch-size 8 --imgsz 64 --workers 2 --threads 1 --project "$WORK/runs" \
		--name "$name" --seed 1 >"$WORK/$name.log" 2>&1 &
	local pid=$! deadline=$((SECONDS + 240))
	BG_PIDS+=("$pid")
	while { (($(rows "$WORK/runs/$name/results.csv") < 1)) ||
		[[ ! -s "$WORK/runs/$name/weights/last.safetensors" ]]; } && ((SECONDS < deadline)); do
		sleep 0.02
	done
	sleep "$delay"
	kill -"$signal" "$pid" 2>/dev/null || true
	wait_pid_exit 60 "$pid" || fail "$name: still running 60 s after SIG$signal"
}
# resumes NAME: --resume (2 ranks again) ends where the unstopped run did
resumes() {
	local rc=0
	YE_DDP_CPU_RANKS=2 "$YT" --resume "$WORK/runs/$1/weights/last.safetensors" \
		>"$WORK/$1.resume.log" 2>&1 || rc=$?
	check_eq "$1: --resume exit status 0" 0 "$rc"
	[[ $rc == 0 ]] || show_file "$WORK/$1.resume.log" 6
	check "$1: results.csv and last.safetensors equal the unstopped run's" \
		same_run "$WORK/runs/whole" "$WORK/runs/$1"
	show_diff "$WORK/runs/whole/results.csv" "$WORK/runs/$1/results.csv"
}
stop_run term TERM 0
check_eq "SIGTERM: exit status 143" 143 "$RC"
check "SIGTERM: stopped before the last epoch" num_gt 6 "$(rows "$WORK/runs/term/results.csv")"
resumes term
stop_run kill KILL 0.$((RANDOM % 4))
check_eq "SIGKILL: exit status 137" 137 "$RC"
if (($(rows "$WORK/runs/kill/results.csv") < 6)); then
	resumes kill
else
	note "SIGKILL came after the last epoch; nothing to resume"
fi

ye_finish
