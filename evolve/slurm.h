/*
 * slurm.h - the Slurm launcher: a trainer argv rewritten to run as a Slurm
 * job step through srun (never through a shell), and the clean-up of steps
 * whose srun was killed.
 *
 * Inside an allocation (SLURM_JOB_ID or SLURM_JOBID set, e.g. under salloc
 * or in an sbatch script) each candidate is a step of that job:
 *     srun --ntasks=1 --nodes=1 --exact [--gres=gpu:N] --job-name=NAME
 *          [slurm_args...] -- TRAINER ARGV...
 * (--exact: a step gets only what it asks for, so steps run side by side).
 * Outside an allocation, or with submit, srun allocates a job of its own;
 * with submit inside an allocation the variables that tie srun to the
 * current job are removed first (see ev_slurm_wrap), by running it through
 *     env -u SLURM_JOB_ID -u ... srun ...
 * The user's slurm_args come after ours, so they may override them
 * (e.g. --nodes, --ntasks); they must be srun options (a stray word
 * would become the program srun runs).
 *
 * Stopping: SIGTERM (or SIGINT twice) to srun makes it cancel the step at
 * once ("forcing job termination": the tasks get SIGKILL, the step and,
 * for a job of its own, the allocation end within a second), so the
 * evolver's SIGTERM to the srun process group is enough. A srun killed
 * with SIGKILL cannot clean up: its step (inside an allocation) or its job
 * (--slurm-submit) keeps running; ev_slurm_cancel() removes it by name.
 * The kernel's parent-death SIGTERM reaches srun like any SIGTERM.
 *
 * On a real cluster: the candidate's folder must be on a file system the
 * compute node shares (srun starts the trainer in srun's working folder,
 * the save_dir); where memory is a consumable resource a step asks for all
 * of the job's memory unless told otherwise, so steps would run one at a
 * time: pass --slurm-args '--mem=16G' (or --mem-per-cpu). With submit the
 * surrounding job's settings (-c, --mem, partition...) are not inherited:
 * give them in slurm_args (SLURM_ACCOUNT, SLURM_PARTITION, SLURM_QOS,
 * SLURM_RESERVATION, SLURM_CLUSTERS, SLURM_WCKEY, SLURM_TIMELIMIT and
 * SLURM_CONF set by the user are kept).
 *
 * Exit status: srun exits with the task's exit code, and with 128 + N when
 * the task died by signal N; ev_slurm_wait_status() turns the latter back
 * into a "killed by signal" wait status.
 */
#ifndef EV_SLURM_H
#define EV_SLURM_H

#include "ut.h"

struct ev_slurm_job {
	const char
	    *slurm_args; /* extra srun options, split like a shell (no expansion); NULL = none */
	int gpus;	 /* > 0: ask --gres=gpu:GPUS (a DDP candidate's N); 0: none */
	int submit;	 /* 1: a job of its own even inside an allocation */
	const char *job_name; /* --job-name (step name inside an allocation); NULL = none */
};

/*
 * The srun command line that runs argv as a one-task Slurm job step: a
 * NULL-terminated malloc'ed argv (free with ev_argv_free from contract.h).
 * Reads the environment (SLURM_JOB_ID, and for submit every SLURM_*
 * variable) at the time of the call. Errors (bad quoting in slurm_args)
 * are one line naming --slurm-args.
 */
int ev_slurm_wrap(const struct ev_slurm_job *job, char *const argv[], char ***out,
		  struct ut_err *err);

/* Check --slurm-args alone (for option parsing): 0, or -1 with the error. */
int ev_slurm_check_args(const char *slurm_args, struct ut_err *err);

/*
 * Cancel this user's Slurm jobs and job steps named job_name (squeue, then
 * scancel; argv, no shell; each command is given at most 10 s). Returns
 * how many were cancelled (0: none left, nothing done), or -1 if squeue or
 * scancel could not be run or failed. Blocks while they run: call it only
 * on the rare paths where a srun was killed with SIGKILL.
 */
int ev_slurm_cancel(const char *job_name);

/*
 * srun's exit status with "exit 128 + N" (N = 1 .. 64) turned back into
 * "killed by signal N", so that a trainer that died by SIGSEGV is recorded
 * as such; other statuses are returned unchanged.
 */
int ev_slurm_wait_status(int status);

#endif
