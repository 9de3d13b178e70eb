#!/usr/bin/env bash
# env_faults.sh - the environment fails under a running evolution: the disk
# fills up, the database is read-only, deleted or replaced, the run folder
# cannot be written. Each gives a clear one-line error and a non-zero exit;
# the database stays consistent and no finished result is lost; after the
# fault is fixed, --resume finishes the run. Needs root (mount); exit 77
# (skipped) otherwise.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [[ $(id -u) -ne 0 ]] || ! mount -t tmpfs -o size=1m tmpfs "$WORK" 2>/dev/null; then
	echo "skipped: needs root to mount a small tmpfs and read-only bind mounts"
	exit 77
fi
umount "$WORK"
MOUNTS=()
unmount_all() {
	local m
	for m in "${MOUNTS[@]}"; do umount -l "$m" 2>/dev/null || true; done
}
trap 'unmount_all; ye_cleanup' EXIT

done_count() { sql "$1" "SELECT count(*) FROM generations WHERE status = 'done'"; }

section "disk full"
mkdir -p "$WORK/small"
mount -t tmpfs -o size=600k tmpfs "$WORK/small"
MOUNTS+=("$WORK/small")
# each candidate writes ~200 kB of log: the disk fills after a few of them
export FIXTURE_MODE=log FIXTURE_LOG_BYTES=200000
evolve "$WORK/small" full --generations 40 --epochs 2
unset FIXTURE_MODE FIXTURE_LOG_BYTES
check "exit status is 1 (got $RC)" test "$RC" -eq 1
show_file "$WORK/full.log" 2
check "one clear error naming the database or a file" grep -qE "^error: .*(full|space)" "$WORK/full.log"
cp "$WORK/small/full/evolve.db"* "$WORK/" 2>/dev/null || true
check "integrity_check is ok" test "$(sql "$WORK/evolve.db" 'PRAGMA integrity_check')" = ok
kept=$(done_count "$WORK/evolve.db")
check "finished generations were kept ($kept)" test "$kept" -ge 1
# a row may stay 'running' when even that update found no space: resume recovers it
check "no trainer of the run is left alive" wait_gone 10 "$WORK/small/"
mount -o remount,size=64m "$WORK/small"
run_ye "$WORK/full-resume.log" --resume --db "$WORK/small/full/evolve.db" --quiet
check "after room is made, --resume finishes (exit $RC)" test "$RC" -eq 0
check "all 40 generations are done" test "$(done_count "$WORK/small/full/evolve.db")" -eq 40
resumed_first=$(sql "$WORK/small/full/evolve.db" "SELECT count(*) FROM generations WHERE status = 'done' AND generation < $kept")
check "the results finished before the fault are still there" test "$resumed_first" -eq "$kept"

section "read-only database"
evolve "$WORK/ro" exp --generations 4 --epochs 1
mkdir -p "$WORK/ro-view"
mount --bind "$WORK/ro" "$WORK/ro-view"
MOUNTS+=("$WORK/ro-view")
mount -o remount,ro,bind "$WORK/ro-view"
run_ye "$WORK/ro.log" --resume --db "$WORK/ro-view/exp/evolve.db" --generations 8
check "a read-only database is refused (exit $RC)" test "$RC" -eq 1
check "with a one-line error naming it" grep -qE "^error: .*ro-view/exp/evolve.db" "$WORK/ro.log"
show_file "$WORK/ro.log" 2
run_ye "$WORK/ro-status.log" status --db "$WORK/ro-view/exp/evolve.db"
check "status still reads it (exit $RC)" test "$RC" -eq 0

section "database deleted or replaced while running"
for fault in deleted replaced; do
	FIXTURE_EPOCH_MS=40 "$YE" --project "$WORK/$fault" --name exp --data none --trainer "$TRAINER" \
		--quiet --generations 200 --epochs 3 >"$WORK/$fault.log" 2>&1 &
	pid=$!
	BG_PIDS+=("$pid")
	wait_sql 20 "$WORK/$fault/exp/evolve.db" "SELECT count(*) FROM generations WHERE status = 'done'" || true
	if [[ $fault == deleted ]]; then
		rm -f "$WORK/$fault/exp/evolve.db"
	else
		cp "$WORK/ro/exp/evolve.db" "$WORK/other.db"
		mv "$WORK/other.db" "$WORK/$fault/exp/evolve.db"
	fi
	if wait_pid_exit 20 "$pid"; then
		check "the evolver stops with exit 1 when its database is $fault (got $RC)" test "$RC" -eq 1
	else
		fail "the evolver goes on although its database was $fault"
	fi
	check "the error says the database was $fault" grep -qE "^error: .*evolve.db: $fault" "$WORK/$fault.log"
	check "no trainer is left running" wait_gone 10 "$WORK/$fault/"
done

section "run folder cannot be written"
evolve "$WORK/rw" exp --generations 2 --epochs 1
mkdir -p "$WORK/rw-view"
mount --bind "$WORK/rw/exp/candidates" "$WORK/rw/exp/candidates"
MOUNTS+=("$WORK/rw/exp/candidates")
mount -o remount,ro,bind "$WORK/rw/exp/candidates"
run_ye "$WORK/rw.log" --resume --db "$WORK/rw/exp/evolve.db" --generations 4
check "an unwritable candidates folder stops the run (exit $RC)" test "$RC" -eq 1
check "with an error naming the folder" grep -qE "^error: .*candidates" "$WORK/rw.log"
show_file "$WORK/rw.log" 2
check "the database is consistent" test "$(sql "$WORK/rw/exp/evolve.db" 'PRAGMA integrity_check')" = ok
check "the 2 finished generations are kept" test "$(done_count "$WORK/rw/exp/evolve.db")" -eq 2
check "and nothing is left running" test "$(sql "$WORK/rw/exp/evolve.db" "SELECT count(*) FROM generations WHERE status = 'running'")" -eq 0
umount "$WORK/rw/exp/candidates"
run_ye "$WORK/rw-resume.log" --resume --db "$WORK/rw/exp/evolve.db" --generations 4 --quiet
check "once writable again, --resume finishes (exit $RC)" test "$RC" -eq 0
check "4 generations done" test "$(done_count "$WORK/rw/exp/evolve.db")" -eq 4

ye_finish
