/*
 * run.c - the evolution loop (see run.h). One thread; children are
 * followed through a signalfd (SIGCHLD, SIGINT, SIGTERM, SIGHUP) and a poll
 * timeout that also paces the reading of each trainer's results.csv.
 */
#include "run.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "breed.h"
#include "contract.h"
#include "ga.h"
#include "plots.h"
#include "robust.h"
#include "slurm.h"

#define PROGRESS_MS 1000
#define EXPORT_INTERVAL_S 1.0
#define EV_LOG_MAX_DEFAULT (16LL << 20) /* bytes of trainer log before rotation */
enum { PRUNE_NONE, PRUNE_MEDIAN, PRUNE_ASHA };
#define ASHA_ETA 3	       /* --prune asha: keep the best third at each rung */
#define PRUNE_MIN_REFERENCES 3 /* fewer finished candidates at an epoch: no pruning */

/* Fitness at each epoch of one generation. */
struct curve {
	double *fitness;
	size_t n;
};

/* The live terminal display (only when stderr is a terminal). */
struct ev_progress {
	int tty;
	int lines; /* lines drawn last time, erased before the next log line */
	double started;
};

struct ev_slot {
	int busy;
	long generation;
	struct ev_proc proc;
	double deadline; /* timeout; 0 = none */
	double kill_at;	 /* SIGKILL after a SIGTERM; 0 = not signalled */
	int timed_out;
	long pruned_at; /* epoch at which pruning stopped it, -1 if not */
	size_t epochs_seen;
	const char *device;   /* GPU ids this slot is pinned to ("2,3"), NULL for none */
	struct ev_caplog log; /* the trainer's output, capped */
	char save_dir[PATH_MAX], log_path[PATH_MAX + 16], results_path[PATH_MAX + 16];
};

struct ev_runner {
	struct st_db *db;
	const struct st_options *opts;
	const struct ev_run_params *params;
	struct ev_template tpl;
	struct ev_breed_opts breed;
	struct st_generation *gens; /* gens[i].generation == i */
	size_t ngens, cap;
	struct ev_slot *slots;
	long nslots;
	long lag;	 /* generation i descends from 0 .. i-lag (the slots, unless --lag) */
	int stop_signal; /* first SIGINT/SIGTERM/SIGHUP received, 0 if none */
	int tripped;	 /* the circuit breaker stopped the evolution */
	char stop_reason[ST_STR]; /* why it tripped, as recorded in the database */
	long failures_in_row;	  /* candidates failed in a row, in finishing order */
	int same_error;		  /* ... all with first_error (the common error) */
	char first_error[ST_STR];
	char **devices;	      /* GPU groups of --devices ("0,1"), NULL-terminated */
	char *visible;	      /* a pinned trainer's GPUs under CUDA_VISIBLE_DEVICES: "0,1" */
	long gpus;	      /* GPUs per candidate (a group), 0 without --devices */
	struct curve *curves; /* fitness per epoch of every generation, as gens */
	int prune;	      /* PRUNE_NONE, PRUNE_MEDIAN, PRUNE_ASHA */
	int ga;		      /* population GA instead of YOLOv5's breeding */
	int robust;	      /* --algorithm robust (robust.h) */
	struct ev_robust_params robust_params;
	struct ev_ga_params ga_params;
	struct meta_hyp *ga_seeds; /* hyps of --ga-dir */
	size_t n_ga_seeds;
	struct meta_hyp *ga_pop; /* population ga_k, bred once */
	long ga_k;
	long finished_count; /* generations finished by this process */
	int budget_told;     /* the end of the budget was logged */
	double exported_at;  /* when evolve.csv and hyp_evolve.yaml were last written */
	int exports_stale;
	struct ev_progress progress;
	char host[256];
	struct ut_err *err;
};

static int is_finished(enum st_status status)
{
	return status == ST_DONE || status == ST_FAILED || status == ST_PRUNED;
}

/* A signal or the circuit breaker ends the run: launch nothing more. */
static int stopping(const struct ev_runner *run)
{
	return run->stop_signal != 0 || run->tripped;
}

/* The Slurm launcher, and the job (step) name of a generation: "ye-<run name>-g<generation>". */
static int slurm_launcher(const struct ev_runner *run)
{
	return strcmp(run->opts->launcher, "slurm") == 0;
}

static void slurm_job_name(const struct ev_runner *run, long generation, char *buf, size_t size)
{
	snprintf(buf, size, "ye-%s-g%ld", run->opts->name, generation);
}

/* ---- generations in memory --------------------------------------------------- */

static int curve_set(enum meta_space space, struct curve *curve,
		     const double (*rows)[ST_EPOCH_COLS], size_t n)
{
	double *fitness = realloc(curve->fitness, (n ? n : 1) * sizeof(*fitness));
	if (fitness == NULL)
		return -1;
	curve->fitness = fitness;
	curve->n = 0;
	for (size_t r = 0; r < n; r++) {
		size_t epoch = (size_t)rows[r][0];
		if (rows[r][0] < 0 || epoch != curve->n)
			break; /* epochs must come in order, from 0 */
		curve->fitness[curve->n++] = ev_space_fitness(space, rows[r][6], rows[r][7]);
	}
	return 0;
}

/* Every generation and the fitness curve of each from the epochs table. */
static int load_generations(struct ev_runner *run)
{
	if (st_generations_load(run->db, &run->gens, &run->ngens, run->err) != 0)
		return -1;
	run->cap = run->ngens;
	for (size_t i = 0; i < run->ngens; i++)
		if (run->gens[i].generation != (long)i)
			return ut_err_set(run->err, "%s: generation %zu is missing",
					  st_path(run->db), i);
	run->curves = calloc(run->cap ? run->cap : 1, sizeof(*run->curves));
	double *rows;
	size_t n;
	if (run->curves == NULL || st_epochs_load(run->db, -1, &rows, &n, run->err) != 0)
		return run->curves ? -1 : ut_err_set(run->err, "out of memory");
	const size_t width = 1 + ST_EPOCH_COLS;
	int rc = 0;
	for (size_t start = 0, end; rc == 0 && start < n; start = end) {
		long generation = (long)rows[start * width];
		for (end = start; end < n && (long)rows[end * width] == generation; end++)
			;
		double(*block)[ST_EPOCH_COLS] = malloc((end - start) * sizeof(*block));
		if (block == NULL) {
			rc = ut_err_set(run->err, "out of memory");
			break;
		}
		for (size_t r = start; r < end; r++)
			memcpy(block[r - start], rows + r * width + 1, sizeof(block[0]));
		if (generation >= 0 && (size_t)generation < run->ngens &&
		    curve_set(run->opts->meta.space, &run->curves[generation],
			      (const double(*)[ST_EPOCH_COLS])block, end - start) != 0)
			rc = ut_err_set(run->err, "out of memory");
		free(block);
	}
	free(rows);
	return rc;
}

static struct st_generation *append_generation(struct ev_runner *run)
{
	if (run->ngens == run->cap) {
		size_t cap = run->cap ? run->cap * 2 : 64;
		struct st_generation *grown = realloc(run->gens, cap * sizeof(*grown));
		if (grown != NULL)
			run->gens = grown;
		struct curve *curves = grown ? realloc(run->curves, cap * sizeof(*curves)) : NULL;
		if (curves == NULL)
			return NULL;
		memset(curves + run->cap, 0, (cap - run->cap) * sizeof(*curves));
		run->curves = curves;
		run->cap = cap;
	}
	struct st_generation *gen = &run->gens[run->ngens++];
	memset(gen, 0, sizeof(*gen));
	gen->generation = (long)run->ngens - 1;
	gen->population = -1;
	return gen;
}

/* Breed the next generation if the determinism rule allows it now. */
static struct st_generation *breed_yolov5(struct ev_runner *run)
{
	long next = (long)run->ngens;
	if (next >= run->opts->generations)
		return NULL;
	long horizon = next - run->lag; /* generations 0 .. horizon are parents */
	for (long j = 0; j <= horizon; j++)
		if (!is_finished(run->gens[j].status))
			return NULL;
	struct ev_scored *pool = malloc((size_t)(horizon > 0 ? horizon + 1 : 1) * sizeof(*pool));
	if (pool == NULL) {
		ut_err_set(run->err, "out of memory");
		return NULL;
	}
	size_t n = 0;
	for (long j = 0; j <= horizon; j++) {
		const struct st_generation *g = &run->gens[j];
		if (g->status == ST_DONE && g->has_results && isfinite(g->fitness))
			pool[n++] = (struct ev_scored){g->generation, g->fitness, g->hyp};
	}
	struct meta_hyp child;
	long parent;
	int rc = ev_breed(&run->breed, &run->opts->meta, &run->opts->base, pool, n, run->opts->seed,
			  next, &child, &parent, run->err);
	free(pool);
	if (rc != 0)
		return NULL;
	struct st_generation *gen = append_generation(run);
	if (gen == NULL) {
		ut_err_set(run->err, "out of memory");
		return NULL;
	}
	gen->hyp = child;
	gen->parent = parent;
	gen->status = ST_PENDING;
	gen->seed = run->opts->seed;
	return gen;
}

/*
 * Population k of the GA is bred in one piece once population k-1 has
 * finished; its members then run in parallel. Ranking uses our fitness
 * (YOLOv5's GA ranks by mAP@.5 alone). Failed and pruned members rank last.
 */
static int ga_population(struct ev_runner *run, long k)
{
	const long size = run->ga_params.pop_size;
	if (k == 0)
		return ev_ga_initial(&run->ga_params, &run->opts->meta, &run->opts->base,
				     run->ga_seeds, run->n_ga_seeds, run->opts->seed, run->ga_pop,
				     run->err);
	struct meta_hyp *previous = malloc((size_t)size * sizeof(*previous));
	double *fitness = malloc((size_t)size * sizeof(*fitness));
	int rc = previous && fitness ? 0 : ut_err_set(run->err, "out of memory");
	for (long m = 0; rc == 0 && m < size; m++) {
		const struct st_generation *g = &run->gens[(k - 1) * size + m];
		previous[m] = g->hyp;
		fitness[m] = g->status == ST_DONE && g->has_results ? g->fitness : NAN;
	}
	if (rc == 0)
		rc = ev_ga_next(&run->ga_params, &run->opts->meta, k - 1, previous, fitness,
				run->opts->seed, run->ga_pop, run->err);
	free(previous);
	free(fitness);
	return rc;
}

static struct st_generation *breed_ga(struct ev_runner *run)
{
	long next = (long)run->ngens;
	const long size = run->ga_params.pop_size;
	if (next >= run->opts->generations)
		return NULL;
	long k = next / size;
	for (long j = (k - 1) * size; k > 0 && j < k * size; j++)
		if (!is_finished(run->gens[j].status))
			return NULL;
	if (run->ga_k != k) {
		if (ga_population(run, k) != 0)
			return NULL;
		run->ga_k = k;
	}
	struct st_generation *gen = append_generation(run);
	if (gen == NULL) {
		ut_err_set(run->err, "out of memory");
		return NULL;
	}
	gen->hyp = run->ga_pop[next % size];
	gen->parent = -1;
	gen->population = k;
	gen->status = ST_PENDING;
	gen->seed = run->opts->seed;
	return gen;
}

/* --algorithm robust: the same determinism rule as YOLOv5's breeding (robust.h). */
static struct st_generation *breed_robust(struct ev_runner *run)
{
	long next = (long)run->ngens;
	if (next >= run->opts->generations)
		return NULL;
	long horizon = next - run->lag;
	for (long j = 0; j <= horizon; j++)
		if (!is_finished(run->gens[j].status))
			return NULL;
	struct st_generation bred;
	memset(&bred, 0, sizeof(bred));
	if (ev_robust_next(&run->robust_params, &run->opts->meta, &run->opts->base, run->gens,
			   run->ngens, horizon, run->opts->seed, &bred, run->err) != 0)
		return NULL;
	struct st_generation *gen = append_generation(run);
	if (gen == NULL) {
		ut_err_set(run->err, "out of memory");
		return NULL;
	}
	gen->hyp = bred.hyp;
	gen->parent = bred.parent;
	gen->reevaluation = bred.reevaluation;
	gen->reevaluates = bred.reevaluates;
	gen->seed = bred.seed;
	gen->status = ST_PENDING;
	return gen;
}

static struct st_generation *breed_next(struct ev_runner *run)
{
	if (run->robust)
		return breed_robust(run);
	return run->ga ? breed_ga(run) : breed_yolov5(run);
}

/* ---- launching ---------------------------------------------------------------- */

static int prepare_save_dir(struct ev_runner *run, struct ev_slot *slot,
			    const struct st_generation *gen)
{
	char candidates[PATH_MAX];
	snprintf(candidates, sizeof(candidates), "%s/candidates", run->params->run_dir);
	if (ut_mkdirs(candidates, run->err) != 0)
		return -1;
	snprintf(slot->save_dir, sizeof(slot->save_dir), "%s/g%05ld", candidates, gen->generation);
	struct stat st;
	if (lstat(slot->save_dir, &st) == 0) {
		/* keep what an earlier attempt left, under its own name */
		char old[PATH_MAX + 32];
		snprintf(old, sizeof(old), "%s.attempt%ld", slot->save_dir, gen->attempts);
		if (ut_remove_tree(old, run->err) != 0)
			return -1;
		if (rename(slot->save_dir, old) != 0)
			return ut_err_set(run->err, "%s: %s", slot->save_dir, strerror(errno));
	}
	if (ut_mkdirs(slot->save_dir, run->err) != 0)
		return -1;
	snprintf(slot->log_path, sizeof(slot->log_path), "%s/train.log", slot->save_dir);
	snprintf(slot->results_path, sizeof(slot->results_path), "%s/results.csv", slot->save_dir);
	return 0;
}

/* The CPUs this process may use, divided among the slots (at least 1 each). */
static int cpu_share(long slots)
{
	cpu_set_t set;
	long cpus = sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set) : 1;
	long share = cpus / (slots > 0 ? slots : 1);
	return share > 0 ? (int)share : 1;
}

/*
 * {device} of a slot's trainer. A pinned trainer sees its group under
 * CUDA_VISIBLE_DEVICES as GPUs 0 .. N-1, except YOLOv5's train.py run
 * here: its select_device writes --device into CUDA_VISIBLE_DEVICES before
 * CUDA starts, so it must be given the group's own ids (given "0" it would
 * train on the machine's GPU 0). Under Slurm, Slurm sets
 * CUDA_VISIBLE_DEVICES to the GPUs it gives the step: 0 .. N-1 for all.
 */
static const char *trainer_device(const struct ev_runner *run, const struct ev_slot *slot)
{
	if (slot->device == NULL)
		return run->opts->device;
	if (!slurm_launcher(run) && strncmp(run->opts->trainer, "yolov5:", 7) == 0)
		return slot->device;
	return run->visible;
}

static int spawn_trainer(struct ev_runner *run, struct ev_slot *slot,
			 const struct st_generation *gen)
{
	char hyp_path[PATH_MAX + 32], project[PATH_MAX], name[32];
	snprintf(hyp_path, sizeof(hyp_path), "%s/evolve_hyp.yaml", slot->save_dir);
	snprintf(project, sizeof(project), "%s/candidates", run->params->run_dir);
	snprintf(name, sizeof(name), "g%05ld", gen->generation);
	char header[128];
	snprintf(header, sizeof(header), "# yolo-evolve generation %ld\n", gen->generation);
	if (meta_hyp_save(hyp_path, &gen->hyp, header, run->err) != 0)
		return -1;
	const struct st_options *o = run->opts;
	struct ev_vars vars = {.hyp = hyp_path,
			       .data = o->data,
			       .cfg = o->cfg,
			       .weights = o->weights,
			       .device = trainer_device(run, slot),
			       .project = project,
			       .name = name,
			       .save_dir = slot->save_dir,
			       .epochs = o->epochs,
			       .batch = o->batch,
			       .imgsz = o->imgsz,
			       .seed = gen->seed};
	char **argv;
	if (ev_template_expand(&run->tpl, &vars, &argv, run->err) != 0)
		return -1;
	if (slurm_launcher(run)) {
		char job_name[ST_STR + 32];
		slurm_job_name(run, gen->generation, job_name, sizeof(job_name));
		struct ev_slurm_job job = {.slurm_args = o->slurm_args,
					   .gpus = slot->device != NULL ? (int)run->gpus : 0,
					   .submit = o->slurm_submit != 0,
					   .job_name = job_name};
		char **wrapped;
		int wrc = ev_slurm_wrap(&job, argv, &wrapped, run->err);
		ev_argv_free(argv);
		if (wrc != 0)
			return -1;
		argv = wrapped;
	}
	char pin[64 + ST_STR], threads[64];
	char *env[3] = {NULL, NULL, NULL};
	int nenv = 0;
	snprintf(pin, sizeof(pin), "CUDA_VISIBLE_DEVICES=%s", slot->device ? slot->device : "");
	if (slot->device != NULL)
		env[nenv++] = pin;
	if (!slurm_launcher(run) && getenv("OMP_NUM_THREADS") == NULL) {
		/* candidates side by side share the CPUs instead of each taking all of them */
		snprintf(threads, sizeof(threads), "OMP_NUM_THREADS=%d", cpu_share(run->nslots));
		env[nenv++] = threads;
	}
	long long cap = run->params->log_max > 0 ? run->params->log_max : EV_LOG_MAX_DEFAULT;
	int rc = ev_caplog_open(&slot->log, slot->log_path, cap, run->err);
	if (rc == 0)
		rc = ev_proc_spawn(argv, slot->save_dir, NULL, nenv > 0 ? env : NULL, 1,
				   &slot->proc, run->err);
	if (rc != 0)
		ev_caplog_close(&slot->log);
	ev_argv_free(argv);
	return rc;
}

struct start_record {
	struct st_generation *gen;
	struct ut_err *err;
};

static int write_start(struct st_db *db, void *arg)
{
	struct start_record *rec = arg;
	if (st_epochs_clear(db, rec->gen->generation, rec->err) != 0)
		return -1;
	return st_generation_put(db, rec->gen, rec->err);
}

static void close_output(struct ev_slot *slot);

/* Start generation gen on a free slot and record it as running. */
static int launch(struct ev_runner *run, struct ev_slot *slot, struct st_generation *gen)
{
	const char *device = slot->device;
	memset(slot, 0, sizeof(*slot));
	slot->device = device;
	slot->pruned_at = -1;
	slot->generation = gen->generation;
	if (prepare_save_dir(run, slot, gen) != 0)
		return -1;
	gen->status = ST_RUNNING;
	gen->attempts++;
	gen->started_at = ut_now();
	gen->finished_at = gen->seconds = 0;
	gen->has_results = gen->has_exit_status = 0;
	gen->pid = 0;
	gen->epochs_done = 0;
	gen->error[0] = '\0';
	snprintf(gen->save_dir, sizeof(gen->save_dir), "%s", slot->save_dir);
	snprintf(gen->host, sizeof(gen->host), "%s", run->host);
	snprintf(gen->device, sizeof(gen->device), "%s",
		 slot->device ? slot->device : run->opts->device);
	/*
	 * Record, then spawn: an attempt is in the database before it can run.
	 * The trainer's pid goes to save_dir/trainer.pid at once (no extra
	 * transaction) and into the row with its first epoch; a resume after a
	 * kill finds the orphan through either.
	 */
	if (st_transaction(run->db, write_start, &(struct start_record){gen, run->err}, run->err) !=
	    0)
		return -1;
	if (spawn_trainer(run, slot, gen) != 0) {
		gen->status = ST_INTERRUPTED;
		snprintf(gen->error, sizeof(gen->error), "%s", run->err->msg);
		struct ut_err ignored;
		st_generation_put(run->db, gen, &ignored);
		return -1;
	}
	gen->pid = slot->proc.pid;
	gen->pid_start = slot->proc.start_ticks;
	ut_crash_point("spawned");
	char pidfile[PATH_MAX + 16], text[64];
	snprintf(pidfile, sizeof(pidfile), "%s/trainer.pid", slot->save_dir);
	int len = snprintf(text, sizeof(text), "%ld %lld\n", (long)gen->pid, gen->pid_start);
	if (ut_write_file_atomic(pidfile, text, (size_t)len, run->err) != 0 ||
	    ev_proc_release(&slot->proc, run->err) != 0) {
		kill(-slot->proc.pid, SIGKILL);
		waitpid(slot->proc.pid, NULL, 0);
		close_output(slot);
		gen->status = ST_INTERRUPTED;
		snprintf(gen->error, sizeof(gen->error), "%s", run->err->msg);
		struct ut_err ignored;
		st_generation_put(run->db, gen, &ignored);
		return -1;
	}
	slot->busy = 1;
	if (run->opts->timeout > 0)
		slot->deadline = gen->started_at + run->opts->timeout;
	if (gen->reevaluation)
		ut_log(
		    UT_LOG_INFO,
		    "generation %ld: started (re-evaluates generation %ld, seed %llu, attempt %ld, "
		    "pid %ld)",
		    gen->generation, gen->reevaluates, (unsigned long long)gen->seed, gen->attempts,
		    (long)slot->proc.pid);
	else if (gen->parent >= 0)
		ut_log(UT_LOG_INFO, "generation %ld: started (parent %ld, attempt %ld, pid %ld)",
		       gen->generation, gen->parent, gen->attempts, (long)slot->proc.pid);
	else
		ut_log(UT_LOG_INFO, "generation %ld: started (%s, attempt %ld, pid %ld)",
		       gen->generation, gen->generation == 0 ? "base hyp" : "mutated base hyp",
		       gen->attempts, (long)slot->proc.pid);
	return 0;
}

static struct ev_slot *free_slot(struct ev_runner *run)
{
	for (long s = 0; s < run->nslots; s++)
		if (!run->slots[s].busy)
			return &run->slots[s];
	return NULL;
}

/*
 * Does one more candidate fit in the budget (--budget)? What finished
 * counts as trained, what runs or waits to rerun as its whole --epochs, so
 * the evolution never spends more than the budget, and the candidates it
 * launches depend on the trainer results only (not on P or timing).
 */
static int budget_allows(struct ev_runner *run)
{
	long budget = run->opts->budget;
	if (budget <= 0)
		return 1;
	long spent, reserved;
	st_budget_count(run->gens, run->ngens, run->opts->epochs, &spent, &reserved);
	if (spent + reserved + run->opts->epochs <= budget)
		return 1;
	if (!run->budget_told && reserved == 0) {
		ut_log(
		    UT_LOG_INFO,
		    "budget: %ld of %ld trainer epochs spent; a candidate of %ld epochs does not "
		    "fit: launching nothing more",
		    spent, budget, run->opts->epochs);
		run->budget_told = 1;
	}
	return 0;
}

/* Launch what may run now: interrupted generations first, then new ones. */
static int launch_ready(struct ev_runner *run)
{
	struct ev_slot *slot;
	while (!stopping(run) && (slot = free_slot(run)) != NULL) {
		struct st_generation *gen = NULL;
		for (size_t i = 0; i < run->ngens && gen == NULL; i++)
			if (run->gens[i].status == ST_INTERRUPTED ||
			    run->gens[i].status == ST_PENDING)
				gen = &run->gens[i];
		if (gen == NULL) {
			if (!budget_allows(run))
				return 0;
			run->err->msg[0] = '\0';
			gen = breed_next(run);
			if (gen == NULL)
				return run->err->msg[0] ? -1 : 0;
		}
		if (launch(run, slot, gen) != 0)
			return -1;
	}
	return 0;
}

/* ---- pruning ---------------------------------------------------------------------- */

/* The fitness of a results.csv row, as the run's space defines it. */
static double row_fitness(const struct ev_runner *run, const double row[ST_EPOCH_COLS])
{
	return ev_space_fitness(run->opts->meta.space, row[6], row[7]);
}

static int by_value(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/*
 * --prune asha: is the 0-based epoch a rung, round(epochs / ETA^k) - 1 for
 * some k >= 1, that trains more than a tenth of the epochs (a grace period,
 * as Ray Tune's ASHA has: the first epochs rank runs by noise)? 10 epochs:
 * epoch 2 (epoch 0 trains 1); 9: 0 and 2; 30: 9; 300: 32 and 99.
 */
static int asha_rung(long epoch, long epochs)
{
	if ((epoch + 1) * 10 <= epochs)
		return 0;
	for (double at = (double)epochs / ASHA_ETA; at >= 0.5; at /= ASHA_ETA)
		if (lround(at) - 1 == epoch)
			return 1;
	return 0;
}

/* The q-quantile (0 .. 1, linear interpolation) of n sorted values. */
static double sorted_quantile(const double *sorted, size_t n, double q)
{
	double at = q * (double)(n - 1);
	size_t low = (size_t)at;
	if (low + 1 >= n)
		return sorted[n - 1];
	return sorted[low] + (at - (double)low) * (sorted[low + 1] - sorted[low]);
}

/*
 * The first epoch >= the warmup at which this candidate's fitness is below
 * the median fitness, at that epoch, of the finished (done or pruned)
 * generations among 0 .. g-P: the same reference set as breeding, so the
 * decision depends on results only, never on timing. -1: keep going.
 * --prune asha looks at the rungs only (asha_rung; --prune-warmup does not
 * apply) and keeps the best 1/ASHA_ETA there (successive halving,
 * asynchronous); it never stops a re-evaluation (robust's), which was bred
 * to be trained in full.
 */
static long prune_epoch(const struct ev_runner *run, long generation,
			const double (*rows)[ST_EPOCH_COLS], size_t nrows, double *median_out)
{
	long horizon = generation - run->lag;
	if (run->prune == PRUNE_NONE || horizon < 0)
		return -1;
	if (run->prune == PRUNE_ASHA && run->gens[generation].reevaluation)
		return -1;
	double *refs = malloc((size_t)(horizon + 1) * sizeof(*refs));
	if (refs == NULL)
		return -1;
	long found = -1;
	for (size_t r = 0; r < nrows && found < 0; r++) {
		long epoch = (long)rows[r][0];
		if (epoch < 0 || (run->prune == PRUNE_MEDIAN && epoch < run->opts->prune_warmup))
			continue;
		if (run->prune == PRUNE_ASHA && !asha_rung(epoch, run->opts->epochs))
			continue;
		size_t n = 0;
		for (long j = 0; j <= horizon; j++) {
			const struct st_generation *g = &run->gens[j];
			if ((g->status == ST_DONE || g->status == ST_PRUNED) &&
			    (size_t)epoch < run->curves[j].n)
				refs[n++] = run->curves[j].fitness[epoch];
		}
		if (n < PRUNE_MIN_REFERENCES)
			continue;
		qsort(refs, n, sizeof(*refs), by_value);
		double median = run->prune == PRUNE_ASHA
				    ? sorted_quantile(refs, n, 1.0 - 1.0 / ASHA_ETA)
				: n % 2 ? refs[n / 2]
					: 0.5 * (refs[n / 2 - 1] + refs[n / 2]);
		if (row_fitness(run, rows[r]) < median) {
			found = (long)r;
			*median_out = median;
		}
	}
	free(refs);
	return found;
}

/* ---- following and finishing ---------------------------------------------------- */

struct epoch_batch {
	long generation;
	const struct ev_results *res;
	size_t from;
	struct st_generation *gen; /* written too, if not NULL */
	struct ut_err *err;
};

static int write_epochs(struct st_db *db, void *arg)
{
	struct epoch_batch *batch = arg;
	for (size_t r = batch->from; r < batch->res->nrows; r++)
		if (st_epoch_put(db, batch->generation, batch->res->rows[r], batch->err) != 0)
			return -1;
	if (batch->gen != NULL)
		return st_generation_put(db, batch->gen, batch->err);
	return 0;
}

/* Record new epoch rows of a running trainer. */
static int follow(struct ev_runner *run, struct ev_slot *slot)
{
	struct ev_results res;
	if (ev_results_read(slot->results_path, &res, run->err) != 0)
		return -1;
	int rc = 0;
	double median;
	long cut = slot->pruned_at >= 0
		       ? -1
		       : prune_epoch(run, slot->generation,
				     (const double(*)[ST_EPOCH_COLS])res.rows, res.nrows, &median);
	if (cut >= 0) {
		/* rows past the pruning epoch are never recorded */
		res.nrows = (size_t)cut + 1;
		slot->pruned_at = cut;
		kill(-slot->proc.pid, SIGTERM);
		slot->kill_at = ut_now() + run->params->grace;
		ut_log(UT_LOG_DEBUG,
		       "generation %ld: pruning at epoch %ld (fitness %.5f < median %.5f)",
		       slot->generation, cut, row_fitness(run, res.rows[cut]), median);
	}
	if (slot->pruned_at >= 0 && res.nrows > (size_t)slot->pruned_at + 1)
		res.nrows = (size_t)slot->pruned_at + 1;
	if (res.nrows > slot->epochs_seen) {
		struct st_generation *gen = &run->gens[slot->generation];
		gen->epochs_done = (long)res.nrows;
		struct epoch_batch batch = {slot->generation, &res, slot->epochs_seen, gen,
					    run->err};
		rc = st_transaction(run->db, write_epochs, &batch, run->err);
		if (rc == 0) {
			const double *last = res.rows[res.nrows - 1];
			ut_log(UT_LOG_INFO, "generation %ld: epoch %.0f/%ld fitness %.5f",
			       slot->generation, last[0] + 1, run->opts->epochs,
			       row_fitness(run, last));
			slot->epochs_seen = res.nrows;
		}
	}
	ev_results_free(&res);
	return rc;
}

static int is_retryable(const struct ev_slot *slot, int status)
{
	/* crashes are retried; a clean failure exit or a timeout is an answer */
	return !slot->timed_out && WIFSIGNALED(status);
}

static void describe_failure(struct ev_slot *slot, int status, const struct ev_results *res,
			     struct st_generation *gen, double timeout)
{
	char what[128], tail[512];
	ev_describe_status(status, what, sizeof(what));
	ev_log_tail(slot->log_path, tail, sizeof(tail));
	if (slot->timed_out)
		snprintf(what, sizeof(what), "timeout after %.0f s", timeout);
	else if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		snprintf(what, sizeof(what), "%s", res->problem);
	snprintf(gen->error, sizeof(gen->error), "%s%s%s", what, tail[0] ? "; log: " : "", tail);
}

/* ---- the circuit breaker ----------------------------------------------------------- */

static void signal_all(struct ev_runner *run, int sig);
static int busy_slots(const struct ev_runner *run);

/*
 * Stop as on SIGTERM, for a reason: launch nothing more, stop the running
 * trainers (recorded `interrupted`, rerun by --resume) and record why.
 */
static int trip(struct ev_runner *run, const char *what, const char *error)
{
	run->tripped = 1;
	size_t len = strlen(error);
	while (len > 0 && error[len - 1] == '\n')
		len--; /* a log tail ends with its last newline */
	snprintf(run->stop_reason, sizeof(run->stop_reason), "%s: %.*s", what, (int)len, error);
	int busy = busy_slots(run);
	ut_log(UT_LOG_WARN, "circuit breaker: %s; launching nothing more%s", what,
	       busy ? ", stopping the running trainers" : "");
	signal_all(run, SIGTERM);
	return st_stop_write(run->db, run->stop_reason, run->err);
}

/*
 * Count a finished candidate: a failure extends the run of failures, any
 * other result ends it. The breaker trips when the base hyp itself fails
 * (nothing can work: every later candidate descends from it) or after
 * max_failures failures in a row.
 */
static int count_failure(struct ev_runner *run, const struct st_generation *gen)
{
	if (gen->status != ST_FAILED) {
		run->failures_in_row = 0;
		return 0;
	}
	if (run->failures_in_row++ == 0) {
		snprintf(run->first_error, sizeof(run->first_error), "%s", gen->error);
		run->same_error = 1;
	} else if (strcmp(run->first_error, gen->error) != 0) {
		run->same_error = 0;
	}
	long limit = run->params->max_failures;
	if (limit <= 0 || run->tripped)
		return 0;
	char what[160];
	if (gen->generation == 0 && gen->parent < 0 && gen->population < 0)
		snprintf(what, sizeof(what), "generation 0 (the base hyp) failed");
	else if (run->failures_in_row >= limit)
		snprintf(what, sizeof(what),
			 "%ld candidates failed in a row (the last: generation %ld)%s",
			 run->failures_in_row, gen->generation,
			 run->same_error ? ", all with the same error" : "");
	else
		return 0;
	return trip(run, what, gen->error);
}

/* A trainer ended: decide its status and record everything in one transaction. */
static int finish(struct ev_runner *run, struct ev_slot *slot, int status)
{
	struct st_generation *gen = &run->gens[slot->generation];
	struct ev_results res;
	if (ev_results_read(slot->results_path, &res, run->err) != 0)
		return -1;
	gen->finished_at = ut_now();
	gen->seconds = gen->finished_at - gen->started_at;
	gen->has_exit_status = 1;
	gen->exit_status = ev_exit_code(status);
	gen->epochs_done = (long)res.nrows;
	gen->pid = 0;
	int clean = WIFEXITED(status) && WEXITSTATUS(status) == 0 && !slot->timed_out;
	double median = 0;
	long cut = prune_epoch(run, slot->generation, (const double(*)[ST_EPOCH_COLS])res.rows,
			       res.nrows, &median);
	if (cut >= 0) {
		res.nrows = (size_t)cut + 1;
		gen->status = ST_PRUNED;
		gen->has_results = 1;
		gen->epochs_done = cut + 1;
		ev_results_pick(res.rows[cut], gen->results);
		gen->fitness = ev_space_fitness(run->opts->meta.space, gen->results[ST_R_map50],
						gen->results[ST_R_map]);
		snprintf(gen->error, sizeof(gen->error),
			 "pruned at epoch %ld: fitness %.5f < median %.5f", cut, gen->fitness,
			 median);
	} else if (stopping(run) && !clean) {
		gen->status = ST_INTERRUPTED;
		if (run->stop_signal)
			snprintf(gen->error, sizeof(gen->error), "interrupted by SIG%s",
				 sigabbrev_np(run->stop_signal));
		else
			snprintf(gen->error, sizeof(gen->error), "stopped by the circuit breaker");
	} else if (clean && res.complete) {
		gen->status = ST_DONE;
		gen->has_results = 1;
		ev_results_pick(res.rows[res.nrows - 1], gen->results);
		gen->fitness = ev_space_fitness(run->opts->meta.space, gen->results[ST_R_map50],
						gen->results[ST_R_map]);
		gen->error[0] = '\0';
	} else {
		gen->status = ST_FAILED;
		describe_failure(slot, status, &res, gen, run->opts->timeout);
	}
	struct epoch_batch batch = {slot->generation, &res, slot->epochs_seen, gen, run->err};
	int rc = st_transaction(run->db, write_epochs, &batch, run->err);
	if (rc == 0 && curve_set(run->opts->meta.space, &run->curves[slot->generation],
				 (const double(*)[ST_EPOCH_COLS])res.rows, res.nrows) != 0)
		rc = ut_err_set(run->err, "out of memory");
	ev_results_free(&res);
	slot->busy = 0;
	if (rc != 0)
		return -1;
	if (gen->status == ST_DONE)
		ut_log(
		    UT_LOG_INFO,
		    "generation %ld: done, fitness %.5f (mAP@.5 %.5f, mAP@.5:.95 %.5f) in %.1f s",
		    gen->generation, gen->fitness, gen->results[ST_R_map50], gen->results[ST_R_map],
		    gen->seconds);
	else
		ut_log(gen->status == ST_PRUNED ? UT_LOG_INFO : UT_LOG_WARN,
		       "generation %ld: %s: %s", gen->generation, st_status_name(gen->status),
		       gen->error);
	if (gen->status == ST_FAILED && is_retryable(slot, status) &&
	    gen->attempts <= run->opts->retries && !stopping(run)) {
		ut_log(UT_LOG_INFO, "generation %ld: retrying (%ld of %ld retries)",
		       gen->generation, gen->attempts, run->opts->retries);
		gen->status = ST_INTERRUPTED;
		return st_generation_put(run->db, gen, run->err);
	}
	if (gen->status == ST_INTERRUPTED)
		return 0;
	if (count_failure(run, gen) != 0)
		return -1;
	ut_crash_point("finished");
	/* evolve.csv grows with the run: rewrite it at most once a second (and at the end) */
	if (ut_now() - run->exported_at >= EXPORT_INTERVAL_S) {
		if (ev_write_exports(run->db, run->params->run_dir, run->err) != 0)
			return -1;
		run->exported_at = ut_now();
		run->exports_stale = 0;
	} else {
		run->exports_stale = 1;
	}
	run->finished_count++;
	if (run->params->report_every > 0 && run->finished_count % run->params->report_every == 0) {
		struct ut_err plot_err;
		if (rp_write_plots(run->db, run->params->run_dir, &plot_err) != 0)
			ut_log(UT_LOG_WARN, "plots: %s", plot_err.msg);
	}
	return 0;
}

static struct ev_slot *slot_of(struct ev_runner *run, pid_t pid)
{
	for (long s = 0; s < run->nslots; s++)
		if (run->slots[s].busy && run->slots[s].proc.pid == pid)
			return &run->slots[s];
	return NULL;
}

/* Take the last of the trainer's output and close its pipe and log. */
static void close_output(struct ev_slot *slot)
{
	if (slot->proc.out_fd >= 0) {
		ev_caplog_pump(&slot->log, slot->proc.out_fd);
		close(slot->proc.out_fd);
		slot->proc.out_fd = -1;
	}
	ev_caplog_close(&slot->log);
}

static int reap(struct ev_runner *run)
{
	int status;
	pid_t pid;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		struct ev_slot *slot = slot_of(run, pid);
		if (slot == NULL)
			continue;
		/* the group may still hold children of the trainer */
		kill(-pid, SIGKILL);
		close_output(slot);
		if (slurm_launcher(run)) {
			/* a srun killed by a signal (SIGKILL) could not end its step or job */
			if (WIFSIGNALED(status)) {
				char job_name[ST_STR + 32];
				slurm_job_name(run, slot->generation, job_name, sizeof(job_name));
				ev_slurm_cancel(job_name);
			}
			status = ev_slurm_wait_status(status);
		}
		if (finish(run, slot, status) != 0)
			return -1;
	}
	return 0;
}

static void signal_all(struct ev_runner *run, int sig)
{
	for (long s = 0; s < run->nslots; s++) {
		struct ev_slot *slot = &run->slots[s];
		if (!slot->busy)
			continue;
		kill(-slot->proc.pid, sig);
		if (sig == SIGTERM && slot->kill_at == 0)
			slot->kill_at = ut_now() + run->params->grace;
	}
}

/* Timeouts and the SIGKILL that follows an ignored SIGTERM. */
static double check_deadlines(struct ev_runner *run)
{
	double now = ut_now(), next = now + PROGRESS_MS / 1000.0;
	for (long s = 0; s < run->nslots; s++) {
		struct ev_slot *slot = &run->slots[s];
		if (!slot->busy)
			continue;
		if (slot->deadline > 0 && now >= slot->deadline && !slot->timed_out) {
			slot->timed_out = 1;
			kill(-slot->proc.pid, SIGTERM);
			slot->kill_at = now + run->params->grace;
			ut_log(UT_LOG_WARN, "generation %ld: timeout, stopping the trainer",
			       slot->generation);
		}
		if (slot->kill_at > 0 && now >= slot->kill_at)
			kill(-slot->proc.pid, SIGKILL);
		if (slot->deadline > 0 && !slot->timed_out)
			next = fmin(next, slot->deadline);
		if (slot->kill_at > 0 && now < slot->kill_at)
			next = fmin(next, slot->kill_at);
	}
	return next;
}

static int busy_slots(const struct ev_runner *run)
{
	int n = 0;
	for (long s = 0; s < run->nslots; s++)
		n += run->slots[s].busy;
	return n;
}

static int handle_signal(struct ev_runner *run, int sfd)
{
	struct signalfd_siginfo info;
	while (read(sfd, &info, sizeof(info)) == (ssize_t)sizeof(info)) {
		int sig = (int)info.ssi_signo;
		if (sig == SIGCHLD)
			continue; /* reaped below */
		if (run->stop_signal == 0) {
			run->stop_signal = sig;
			ut_log(UT_LOG_WARN,
			       "SIG%s: stopping; running trainers get SIGTERM (again to kill now)",
			       sigabbrev_np(sig));
			signal_all(run, SIGTERM);
		} else {
			ut_log(UT_LOG_WARN, "SIG%s again: killing the trainers", sigabbrev_np(sig));
			signal_all(run, SIGKILL);
		}
	}
	return reap(run);
}

/* ---- recovery ------------------------------------------------------------------- */

/* The pid a trainer was started with, from its save_dir (see launch). */
static void read_pidfile(struct st_generation *gen)
{
	char path[ST_STR + 16];
	snprintf(path, sizeof(path), "%s/trainer.pid", gen->save_dir);
	FILE *f = gen->save_dir[0] ? fopen(path, "r") : NULL;
	if (f == NULL)
		return;
	long pid;
	long long start;
	if (fscanf(f, "%ld %lld", &pid, &start) == 2 && pid > 0) {
		gen->pid = pid;
		gen->pid_start = start;
	}
	fclose(f);
}

/* Generations left running by a killed evolver: stop their trainers, rerun them. */
static int recover(struct ev_runner *run)
{
	for (size_t i = 0; i < run->ngens; i++) {
		struct st_generation *gen = &run->gens[i];
		if (gen->status != ST_RUNNING && gen->status != ST_PENDING)
			continue;
		if (gen->pid <= 0)
			read_pidfile(gen);
		if (gen->pid > 0) {
			struct ev_proc orphan = {(pid_t)gen->pid, gen->pid_start, -1, -1, -1, ""};
			if (ev_proc_group_alive(&orphan)) {
				ut_log(UT_LOG_WARN,
				       "generation %ld: stopping orphaned trainer pid %ld",
				       gen->generation, gen->pid);
				ev_proc_stop_orphan(&orphan, run->params->grace);
			}
		}
		if (slurm_launcher(run)) {
			/* a step or job whose srun was killed along with the evolver */
			char job_name[ST_STR + 32];
			slurm_job_name(run, gen->generation, job_name, sizeof(job_name));
			ev_slurm_cancel(job_name);
		}
		gen->status = ST_INTERRUPTED;
		gen->pid = 0;
		snprintf(gen->error, sizeof(gen->error), "the evolver stopped while it ran");
		if (st_generation_put(run->db, gen, run->err) != 0)
			return -1;
		ut_log(UT_LOG_INFO,
		       "generation %ld: was running when the evolver stopped; it runs again",
		       gen->generation);
	}
	return 0;
}

/* ---- the terminal display ------------------------------------------------------- */

static void progress_clear(struct ev_progress *progress)
{
	if (!progress->tty || progress->lines == 0)
		return;
	fprintf(stderr, "\033[%dA\033[J", progress->lines);
	progress->lines = 0;
}

/* One line per slot, then the totals; redrawn after every event. */
static void progress_draw(struct ev_runner *run)
{
	struct ev_progress *progress = &run->progress;
	if (!progress->tty)
		return;
	size_t done = 0, failed = 0, pruned = 0, best = SIZE_MAX;
	double seconds = 0;
	for (size_t i = 0; i < run->ngens; i++) {
		const struct st_generation *g = &run->gens[i];
		done += g->status == ST_DONE;
		failed += g->status == ST_FAILED;
		pruned += g->status == ST_PRUNED;
		if (is_finished(g->status))
			seconds += g->seconds;
		if (g->status == ST_DONE &&
		    (best == SIZE_MAX || g->fitness > run->gens[best].fitness))
			best = i;
	}
	for (long s = 0; s < run->nslots; s++) {
		const struct ev_slot *slot = &run->slots[s];
		fprintf(stderr, "\033[K  slot %ld%s%s: ", s, slot->device ? " gpu " : "",
			slot->device ? slot->device : "");
		if (!slot->busy) {
			fprintf(stderr, "idle\n");
			continue;
		}
		const struct curve *c = &run->curves[slot->generation];
		fprintf(stderr, "generation %ld  epoch %zu/%ld  fitness %.5f\n", slot->generation,
			slot->epochs_seen, run->opts->epochs, c->n ? c->fitness[c->n - 1] : 0.0);
	}
	size_t finished = done + failed + pruned;
	double eta = finished ? seconds / (double)finished *
				    (double)(run->opts->generations - (long)finished) /
				    (double)run->nslots
			      : 0;
	char best_text[64] = "none yet";
	if (best != SIZE_MAX)
		snprintf(best_text, sizeof(best_text), "%.5f (generation %zu)",
			 run->gens[best].fitness, best);
	fprintf(stderr, "\033[K  %zu/%ld finished  best %s  failed %zu  pruned %zu  ETA %.0f min\n",
		finished, run->opts->generations, best_text, failed, pruned, eta / 60);
	progress->lines = (int)run->nslots + 1;
}

/* ---- the loop ------------------------------------------------------------------- */

static int loop(struct ev_runner *run, int sfd)
{
	for (;;) {
		progress_clear(&run->progress);
		if (st_check_file(run->db, run->err) != 0 || launch_ready(run) != 0)
			return -1;
		if (busy_slots(run) == 0)
			return 0;
		progress_draw(run);
		double next = check_deadlines(run);
		int wait_ms = (int)fmax(0, ceil((next - ut_now()) * 1000));
		struct pollfd fds[1 + EV_MAX_SLOTS];
		long owner[1 + EV_MAX_SLOTS];
		nfds_t nfds = 1;
		fds[0] = (struct pollfd){.fd = sfd, .events = POLLIN};
		for (long s = 0; s < run->nslots && nfds < UT_ARRAY_LEN(fds); s++) {
			if (run->slots[s].busy && run->slots[s].proc.out_fd >= 0) {
				owner[nfds] = s;
				fds[nfds++] = (struct pollfd){.fd = run->slots[s].proc.out_fd,
							      .events = POLLIN};
			}
		}
		int ready = poll(fds, nfds, wait_ms);
		if (ready < 0 && errno != EINTR)
			return ut_err_set(run->err, "poll: %s", strerror(errno));
		for (nfds_t i = 1; ready > 0 && i < nfds; i++) {
			struct ev_slot *slot = &run->slots[owner[i]];
			if (fds[i].revents && ev_caplog_pump(&slot->log, slot->proc.out_fd) == 0) {
				close(slot->proc
					  .out_fd); /* end of output; the exit comes by SIGCHLD */
				slot->proc.out_fd = -1;
			}
		}
		progress_clear(&run->progress);
		if (handle_signal(run, sfd) != 0)
			return -1;
		for (long s = 0; s < run->nslots; s++)
			if (run->slots[s].busy && follow(run, &run->slots[s]) != 0)
				return -1;
	}
}

/* A file the run folder holds, refreshed after every generation. */
struct ev_export {
	const char *name;
	int (*write)(struct st_db *db, FILE *out, struct ut_err *err);
	int needs_done; /* only once a generation is done (no file until then) */
};

/* YOLOv5's files, or for an Ultralytics run the Tuner's (evolve.csv is YOLOv5's). */
static const struct ev_export yolov5_exports[] = {{"evolve.csv", st_export_evolve_csv, 0},
						  {"hyp_evolve.yaml", st_export_hyp_evolve, 1}};
static const struct ev_export ultralytics_exports[] = {
    {"tune_results.ndjson", st_export_tuner_ndjson, 0},
    {"best_hyperparameters.yaml", st_export_hyp_evolve, 1}};

int ev_write_exports(struct st_db *db, const char *dir, struct ut_err *err)
{
	int ultralytics = st_space(db) == META_SPACE_ULTRALYTICS;
	const struct ev_export *exports = ultralytics ? ultralytics_exports : yolov5_exports;
	for (size_t i = 0; i < 2; i++) {
		char *text = NULL;
		size_t len = 0;
		char path[PATH_MAX + 32];
		FILE *mem = open_memstream(&text, &len);
		if (mem == NULL)
			return ut_err_set(err, "out of memory");
		struct ut_err ignored;
		int rc = exports[i].write(db, mem, exports[i].needs_done ? &ignored : err);
		fclose(mem);
		snprintf(path, sizeof(path), "%s/%s", dir, exports[i].name);
		if (rc == 0)
			rc = ut_write_file_atomic(path, text, len, err);
		else if (exports[i].needs_done)
			rc = 0; /* nothing done yet */
		free(text);
		if (rc != 0)
			return -1;
	}
	return 0;
}

static int ga_setup(struct ev_runner *run)
{
	run->ga = strcmp(run->opts->algorithm, "ga") == 0;
	run->ga_k = -1;
	if (!run->ga)
		return 0;
	ev_ga_defaults(&run->ga_params);
	run->ga_params.pop_size = run->opts->population;
	run->ga_params.populations =
	    (run->opts->generations + run->opts->population - 1) / run->opts->population;
	if (ev_ga_check(&run->ga_params, &run->opts->meta, run->err) != 0)
		return -1;
	if (run->opts->ga_dir[0] != '\0' &&
	    ev_ga_load_seeds(run->opts->ga_dir, &run->opts->meta, &run->ga_seeds, &run->n_ga_seeds,
			     run->err) != 0)
		return -1;
	run->ga_pop = calloc((size_t)run->ga_params.pop_size, sizeof(*run->ga_pop));
	return run->ga_pop ? 0 : ut_err_set(run->err, "out of memory");
}

long ev_gpus_per_candidate(const struct st_options *opts)
{
	long ids = opts->devices[0] != '\0';
	for (const char *p = opts->devices; *p; p++)
		ids += *p == ',';
	if (ids == 0 || opts->parallel < 1 || ids * opts->per_device % opts->parallel != 0)
		return 1;
	long n = ids * opts->per_device / opts->parallel;
	return n >= 1 && ids % n == 0 ? n : 1;
}

/*
 * --devices cut into groups of N = ev_gpus_per_candidate consecutive ids
 * ("0,1,2,3" with N = 2: "0,1" and "2,3"); slot s runs on group s % groups,
 * so with K per group every group gets K slots. run->visible is what a
 * pinned trainer calls its GPUs under CUDA_VISIBLE_DEVICES: "0,1,..,N-1".
 */
static int split_devices(struct ev_runner *run)
{
	const char *text = run->opts->devices;
	if (text[0] == '\0')
		return 0;
	long n = ev_gpus_per_candidate(run->opts);
	size_t ids = 1;
	for (const char *p = text; *p; p++)
		ids += *p == ',';
	size_t groups = ids / (size_t)n;
	run->devices = calloc(groups + 1, sizeof(*run->devices));
	size_t visible_size = (size_t)n * 12; /* "4095," at most per id */
	run->visible = calloc(visible_size, 1);
	if (run->devices == NULL || run->visible == NULL)
		return -1;
	const char *p = text;
	for (size_t g = 0; g < groups; g++) {
		const char *end = p;
		for (long i = 0; i < n; i++)
			end += strcspn(end, ",") + (i + 1 < n);
		run->devices[g] = strndup(p, (size_t)(end - p));
		if (run->devices[g] == NULL)
			return -1;
		p = end + (*end == ',');
	}
	for (long i = 0, len = 0; i < n; i++)
		len += snprintf(run->visible + len, visible_size - (size_t)len, "%s%ld",
				i > 0 ? "," : "", i);
	for (long s = 0; s < run->nslots; s++)
		run->slots[s].device = run->devices[(size_t)s % groups];
	run->gpus = n;
	return 0;
}

static int setup(struct ev_runner *run, int *sfd)
{
	ev_breed_opts_default(&run->breed);
	if (ev_parent_parse(run->opts->parent, &run->breed.parent) != 0)
		return ut_err_set(run->err, "%s: unknown parent method '%s'", st_path(run->db),
				  run->opts->parent);
	run->breed.top = (int)run->opts->top;
	run->breed.mutation_prob = run->opts->mutation_prob;
	run->breed.sigma = run->opts->sigma;
	if (ev_template_parse(run->opts->trainer, run->opts->python, &run->tpl, run->err) != 0 ||
	    ev_template_ddp(&run->tpl, run->opts->trainer, ev_gpus_per_candidate(run->opts),
			    run->err) != 0)
		return -1;
	run->nslots = run->opts->parallel > 0 ? run->opts->parallel : 1;
	/*
	 * The lag: --lag, at least P. halving's default is 3P: its pruned
	 * candidates free their slots early, and with lag 2P the slots were 93 %
	 * busy at P = 8, 96 % with 3P (bench/search/README.md). guided's is 2P,
	 * where YOLOv5's breeding is 95 % busy too (bench/README.md). One slot
	 * is always busy, so P = 1 keeps lag 1 (YOLOv5's serial loop).
	 */
	long lag = run->opts->lag;
	if (lag == 0 && run->nslots > 1 && strcmp(run->opts->algorithm, "halving") == 0)
		lag = 3 * run->nslots;
	if (lag == 0 && run->nslots > 1 && strcmp(run->opts->algorithm, "guided") == 0)
		lag = 2 * run->nslots;
	run->lag = lag > run->nslots ? lag : run->nslots;
	run->slots = calloc((size_t)run->nslots, sizeof(*run->slots));
	if (run->slots == NULL || split_devices(run) != 0)
		return ut_err_set(run->err, "out of memory");
	run->prune = strcmp(run->opts->prune, "median") == 0 ? PRUNE_MEDIAN
		     : strcmp(run->opts->prune, "asha") == 0 ? PRUNE_ASHA
							     : PRUNE_NONE;
	run->robust = strcmp(run->opts->algorithm, "robust") == 0 ||
		      strcmp(run->opts->algorithm, "halving") == 0 ||
		      strcmp(run->opts->algorithm, "guided") == 0;
	ev_robust_defaults(&run->robust_params);
	run->robust_params.top = (int)run->opts->top;
	if (strcmp(run->opts->algorithm, "halving") == 0)
		ev_halving_defaults(&run->robust_params);
	if (strcmp(run->opts->algorithm, "guided") == 0)
		ev_guided_defaults(&run->robust_params);
	if (ga_setup(run) != 0)
		return -1;
	run->progress.tty = isatty(STDERR_FILENO) && getenv("YE_NO_PROGRESS") == NULL;
	run->progress.started = ut_now();
	if (gethostname(run->host, sizeof(run->host)) != 0)
		snprintf(run->host, sizeof(run->host), "unknown");
	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	/*
	 * A hangup (the terminal or ssh session went away) stops like SIGTERM.
	 * Under nohup SIGHUP is ignored and must stay so: Linux queues a blocked
	 * signal even when it is ignored, so blocking it would bring it to us.
	 */
	struct sigaction hup;
	if (sigaction(SIGHUP, NULL, &hup) == 0 && hup.sa_handler != SIG_IGN)
		sigaddset(&mask, SIGHUP);
	if (sigprocmask(SIG_BLOCK, &mask, NULL) != 0)
		return ut_err_set(run->err, "sigprocmask: %s", strerror(errno));
	*sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (*sfd < 0)
		return ut_err_set(run->err, "signalfd: %s", strerror(errno));
	return 0;
}

/*
 * A resume after the breaker stopped the evolution: the cause is presumably
 * fixed, so the record goes and the count starts again; a failed base
 * generation runs again (nothing was bred from it), as another attempt.
 */
static int reset_breaker(struct ev_runner *run)
{
	char reason[ST_STR];
	if (st_stop_read(run->db, reason, sizeof(reason), run->err) != 0)
		return -1;
	if (reason[0] == '\0')
		return 0;
	ut_log(UT_LOG_INFO, "the circuit breaker had stopped this evolution; continuing");
	if (run->ngens > 0 && run->gens[0].status == ST_FAILED && run->gens[0].parent < 0 &&
	    run->gens[0].population < 0) {
		run->gens[0].status = ST_INTERRUPTED;
		if (st_generation_put(run->db, &run->gens[0], run->err) != 0)
			return -1;
		ut_log(UT_LOG_INFO, "generation 0 (the base hyp) runs again");
	}
	return st_stop_write(run->db, NULL, run->err);
}

/* Why the run ended badly: err gets it on one line, params->report whole (log tail lines). */
static void tell(const struct ev_runner *run, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void tell(const struct ev_runner *run, const char *fmt, ...)
{
	char text[UT_ERR_LEN * 2];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	ut_err_set(run->err, "%s", text);
	if (run->params->report != NULL && run->params->report_size > 0)
		snprintf(run->params->report, run->params->report_size, "%s", text);
}

/* How a run that did not fail ended (see enum ev_outcome); err says why if not finished. */
static int outcome(const struct ev_runner *run)
{
	if (run->tripped) {
		tell(run, "circuit breaker: %s", run->stop_reason);
		return EV_BREAKER;
	}
	if (run->stop_signal)
		return 128 + run->stop_signal;
	const struct st_generation *failed = NULL;
	for (size_t i = 0; i < run->ngens; i++) {
		if (run->gens[i].status == ST_DONE)
			return EV_FINISHED;
		if (run->gens[i].status == ST_FAILED)
			failed = &run->gens[i];
	}
	if (failed != NULL)
		tell(run, "no candidate succeeded; the last failure, generation %ld: %s",
		     failed->generation, failed->error);
	else
		tell(run, "no candidate succeeded");
	return EV_NO_SUCCESS;
}

int ev_check_options(const struct st_options *opts, struct ut_err *err)
{
	struct ev_runner run = {.opts = opts, .err = err};
	struct ev_breed_opts breed;
	ev_breed_opts_default(&breed);
	int rc = 0;
	if (ev_parent_parse(opts->parent, &breed.parent) != 0)
		rc = ut_err_set(err, "--parent '%s': use single or weighted", opts->parent);
	else if (!(opts->sigma > 0) || !(opts->mutation_prob > 0))
		rc = ut_err_set(err, "--sigma and --mutation-prob must be > 0");
	if (rc == 0 && ev_template_parse(opts->trainer, opts->python, &run.tpl, err) != 0)
		rc = -1;
	int any_gain = 0;
	for (int k = 0; k < META_ALL; k++)
		any_gain |= opts->meta.k[k].gain > 0;
	if (rc == 0 && !any_gain)
		rc = ut_err_set(
		    err,
		    "no hyperparameter can mutate: every gain is 0 (see --meta, --evolve-keys)");
	if (rc == 0)
		rc = ga_setup(&run);
	if (rc == 0 && opts->budget > 0 && opts->budget < opts->epochs)
		rc = ut_err_set(err, "--budget %ld is less than --epochs %ld: no candidate fits",
				opts->budget, opts->epochs);
	ev_template_free(&run.tpl);
	free(run.ga_seeds);
	free(run.ga_pop);
	return rc;
}

int ev_run(struct st_db *db, const struct st_options *opts, const struct ev_run_params *params,
	   struct ut_err *err)
{
	struct ev_runner run = {.db = db, .opts = opts, .params = params, .err = err};
	int sfd = -1;
	int rc = setup(&run, &sfd);
	if (rc == 0)
		rc = load_generations(&run);
	if (rc == 0)
		rc = recover(&run);
	if (rc == 0)
		rc = reset_breaker(&run);
	if (rc == 0)
		rc = loop(&run, sfd);
	if (rc != 0 && busy_slots(&run) > 0) {
		/* an error ends the run: stop trainers, keep what finished */
		struct ut_err saved = *err;
		signal_all(&run, SIGKILL);
		run.stop_signal = SIGTERM;
		while (busy_slots(&run) > 0 && reap(&run) == 0)
			poll(NULL, 0, 10);
		*err = saved;
	}
	if (rc == 0 || run.exports_stale) {
		/* also after a resume that had nothing left to run */
		struct ut_err export_err;
		if (ev_write_exports(db, params->run_dir, &export_err) != 0 && rc == 0)
			rc = ut_err_set(err, "%s", export_err.msg);
	}
	if (rc == 0)
		rc = outcome(&run);
	if (sfd >= 0)
		close(sfd);
	progress_clear(&run.progress);
	ev_template_free(&run.tpl);
	free(run.slots);
	for (char **d = run.devices; d != NULL && *d != NULL; d++)
		free(*d);
	free(run.devices);
	free(run.visible);
	for (size_t i = 0; run.curves != NULL && i < run.ngens; i++)
		free(run.curves[i].fitness);
	free(run.curves);
	free(run.ga_seeds);
	free(run.ga_pop);
	free(run.gens);
	return rc;
}
