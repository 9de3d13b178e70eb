#!/usr/bin/env bash
# start.sh - start a private one-node Slurm cluster (munged + slurmctld +
# slurmd) for yolo-evolve's tests, all of its state under STATE_DIR, on
# 127.0.0.1 only. A single-node setup with no accounting daemon.
#
# usage: tests/slurm/start.sh STATE_DIR
#   then: source STATE_DIR/env.sh   (sets SLURM_CONF: srun/squeue/scancel work)
#
# Idempotent: if the cluster under STATE_DIR is already up and answering it
# only rewrites env.sh. Stop it with tests/slurm/stop.sh STATE_DIR.
#
# Tunables (environment):
#   YE_SLURM_CPUS       CPUs to declare              (default 4)
#   YE_SLURM_GPUS       fake GPUs (GRES gpu)         (default 2; 0 = none)
#   YE_SLURM_MEM_MB     RealMemory to declare        (default 1024)
#   YE_SLURM_PORT_BASE  slurmctld port; slurmd = +1, srun = +10..+59
#                       (default: the first free base of 16900, 16960, ...,
#                       so several clusters can run side by side)
#   YE_SLURM_TIMEOUT    seconds to wait for each daemon (default 30)
#
# Needs: Debian/Ubuntu packages slurm-wlm munge; root (slurmd starts steps as
# the submitting user). No systemd: the daemons are started directly.
set -euo pipefail

STATE=${1:?usage: start.sh STATE_DIR}
mkdir -p "$STATE"
STATE=$(cd "$STATE" && pwd -P)
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
TPL=$HERE/templates

CPUS=${YE_SLURM_CPUS:-4}
GPUS=${YE_SLURM_GPUS:-2}
MEM_MB=${YE_SLURM_MEM_MB:-1024}
WAIT=${YE_SLURM_TIMEOUT:-30}
NODE=localhost # "localhost" always matches SlurmctldHost, whatever the hostname

log() { echo "[ye-slurm] $*" >&2; }
die() {
	log "ERROR: $*"
	local f
	for f in "$STATE"/log/*.log; do
		[[ -f $f ]] && { log "--- tail $f"; tail -n 20 "$f" >&2; }
	done
	"$HERE/stop.sh" "$STATE" >/dev/null 2>&1 || true # leave nothing half-started
	exit 1
}

export PATH=$PATH:/usr/sbin:/sbin # the daemons live there; CI PATHs may lack it
[[ $(id -u) == 0 ]] || die "must run as root"
# munged's socket path must fit a sockaddr_un (108 bytes)
((${#STATE} <= 80)) || die "STATE_DIR path too long for the munge socket (${#STATE} > 80 characters)"
for b in munged munge unmunge slurmctld slurmd scontrol sinfo srun; do
	command -v "$b" >/dev/null || die "$b not found (apt-get install slurm-wlm munge)"
done

export SLURM_CONF=$STATE/etc/slurm.conf
alive() { local p; [[ -s $1 ]] && p=$(<"$1") && [[ -n $p ]] && kill -0 "$p" 2>/dev/null; }
write_env() {
	printf 'export SLURM_CONF=%q\n' "$SLURM_CONF" >"$STATE/env.sh"
	cat "$STATE/env.sh"
}

# ---- already running? --------------------------------------------------------
if alive "$STATE/run/munged.pid" && alive "$STATE/run/slurmctld.pid" && alive "$STATE/run/slurmd.pid" &&
	timeout 5 scontrol ping 2>/dev/null | grep -q UP; then
	log "already running under $STATE"
	write_env
	exit 0
fi
# Leftovers of a crash or a half start: stop whatever of ours still runs.
"$HERE/stop.sh" "$STATE" >/dev/null 2>&1 || true

T0=$(date +%s.%N)

# ---- ports --------------------------------------------------------------------
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if [[ -n ${YE_SLURM_PORT_BASE:-} ]]; then
	PORT=$YE_SLURM_PORT_BASE
	for p in "$PORT" $((PORT + 1)); do
		port_busy "$p" && die "port $p on 127.0.0.1 is in use; pick another YE_SLURM_PORT_BASE"
	done
else
	PORT=
	for ((b = 16900; b < 16900 + 60 * 40; b += 60)); do
		if ! port_busy "$b" && ! port_busy $((b + 1)); then
			PORT=$b
			break
		fi
	done
	[[ -n $PORT ]] || die "no free port pair in 16900..19300"
fi

# ---- folders and configuration ------------------------------------------------
mkdir -p "$STATE"/{etc,run,log,ctld,slurmd,munge,munge-run,dev}
# munged refuses group/world-writable folders; clients need the socket
# folder world-executable, the key folder stays private.
chmod 700 "$STATE/munge"
chmod 755 "$STATE" "$STATE/run" "$STATE/log" "$STATE/munge-run"
rm -f "$STATE"/dev/nvidia*
for ((i = 0; i < GPUS; i++)); do ln -sfn /dev/null "$STATE/dev/nvidia$i"; done

render() {
	sed -e "s#@STATE@#$STATE#g" -e "s#@CTLD_PORT@#$PORT#g" -e "s#@SLURMD_PORT@#$((PORT + 1))#g" \
		-e "s#@SRUN_PORT_MIN@#$((PORT + 10))#g" -e "s#@SRUN_PORT_MAX@#$((PORT + 59))#g" \
		-e "s#@NODE_NAME@#$NODE#g" -e "s#@CPUS@#$CPUS#g" -e "s#@MEM_MB@#$MEM_MB#g" \
		-e "s#@GPUS@#$GPUS#g" -e "s#@GPU_MAX_IDX@#$((GPUS - 1))#g" "$1"
}
render "$TPL/slurm.conf.in" >"$STATE/etc/slurm.conf"
if ((GPUS > 0)); then
	render "$TPL/gres.conf.in" >"$STATE/etc/gres.conf"
else
	sed -i -e 's/ Gres=gpu:0//' -e 's/^GresTypes=gpu/#GresTypes=gpu/' "$STATE/etc/slurm.conf"
	echo "AutoDetect=off" >"$STATE/etc/gres.conf"
fi
# Inert (no cgroup plugin), but present so nothing reads /etc/slurm/cgroup.conf.
printf 'CgroupPlugin=autodetect\nCgroupAutomount=no\n' >"$STATE/etc/cgroup.conf"

# ---- munge --------------------------------------------------------------------
if [[ ! -s $STATE/munge/munge.key ]]; then
	if command -v mungekey >/dev/null; then
		mungekey --create --keyfile="$STATE/munge/munge.key" --force
	else
		dd if=/dev/urandom of="$STATE/munge/munge.key" bs=1 count=1024 status=none
	fi
fi
chmod 400 "$STATE/munge/munge.key"
SOCK=$STATE/munge-run/munge.socket
munged --force --socket="$SOCK" --key-file="$STATE/munge/munge.key" \
	--pid-file="$STATE/run/munged.pid" --log-file="$STATE/log/munged.log" \
	--seed-file="$STATE/munge/munged.seed" || die "munged failed to start"
for _ in $(seq $((WAIT * 20))); do [[ -S $SOCK ]] && break; sleep 0.05; done
munge -S "$SOCK" -n </dev/null | unmunge -S "$SOCK" >/dev/null || die "munge round trip failed"

# ---- slurmctld ----------------------------------------------------------------
# -i: ignore saved state it cannot recover (a crashed earlier run).
slurmctld -f "$SLURM_CONF" -i || die "slurmctld failed to start"
for _ in $(seq $((WAIT * 20))); do
	scontrol ping 2>/dev/null | grep -q UP && break
	alive "$STATE/run/slurmctld.pid" || { sleep 0.3; alive "$STATE/run/slurmctld.pid" || break; }
	sleep 0.05
done
scontrol ping 2>/dev/null | grep -q UP || die "slurmctld not answering"

# ---- slurmd -------------------------------------------------------------------
# -N: the node name is not the machine's hostname.
slurmd -f "$SLURM_CONF" -N "$NODE" || die "slurmd failed to start"
st=
for _ in $(seq $((WAIT * 20))); do
	st=$(sinfo -h -n "$NODE" -o %T 2>/dev/null || true)
	case $st in idle* | mix* | alloc*) break ;; esac
	sleep 0.05
done
case $st in idle* | mix* | alloc*) ;; *) die "node $NODE not idle (state: ${st:-?})" ;; esac

log "up in $(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }') s under $STATE" \
	"(ctld port $PORT, cpus $CPUS, gpus $GPUS)"
write_env
