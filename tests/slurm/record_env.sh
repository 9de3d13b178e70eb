#!/bin/sh
# record_env.sh OUT_FILE PROGRAM [ARGS...] - a trainer wrapper for the Slurm
# tests: write the Slurm variables and CUDA_VISIBLE_DEVICES this process
# sees (a job step has SLURM_JOB_ID and SLURM_STEP_ID) into OUT_FILE, one
# per line, sorted, then become PROGRAM (exec: the trainer keeps its pid).
out=$1
shift
{
	env | grep -E '^(SLURM_JOB_ID|SLURM_JOB_NAME|SLURM_STEP_ID|SLURM_JOB_PARTITION|CUDA_VISIBLE_DEVICES)=' | sort
	echo "CUDA_VISIBLE_DEVICES_SET=${CUDA_VISIBLE_DEVICES+yes}"
} >"$out"
exec "$@"
