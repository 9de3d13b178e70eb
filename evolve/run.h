/*
 * run.h - the evolution loop: breed, launch trainers on P slots, follow
 * their results.csv, record every outcome in the database, stop cleanly on
 * SIGINT/SIGTERM/SIGHUP or when the circuit breaker trips, and recover from
 * a killed evolver.
 *
 * Determinism rule (DESIGN.md): generation i is bred only once every
 * generation in 0 .. i-P has finished, and only from the done ones among
 * them, so the table depends on the seed and the trainer results alone.
 */
#ifndef EV_RUN_H
#define EV_RUN_H

#include "store.h"
#include "ut.h"

#define EV_MAX_SLOTS 4096 /* candidates at once */

#define EV_MAX_FAILURES_DEFAULT 5

#define EV_BUDGET_MAX 1000000000L /* trainer epochs (--budget) */

struct ev_run_params {
	const char *run_dir; /* where candidates/, evolve.csv, hyp_evolve.yaml go */
	double grace;	     /* seconds between SIGTERM and SIGKILL (10) */
	long long log_max;   /* bytes of trainer log before it rotates (0: 16 MiB) */
	long report_every;   /* redraw evolve.png and fitness.png every N finished (0: never) */
	/*
	 * The circuit breaker: stop when the base generation fails or this many
	 * candidates fail in a row (finishing order, this process only); 0: off.
	 */
	long max_failures;
	/*
	 * Filled (when not NULL) with the whole reason of EV_BREAKER and
	 * EV_NO_SUCCESS, the trainer's log tail on the lines after the first:
	 * err holds it escaped onto one line.
	 */
	char *report;
	size_t report_size;
};

/* How ev_run ended when it did not fail; main exits with these. */
enum ev_outcome {
	EV_FINISHED = 0,   /* every generation finished, at least one done */
	EV_BREAKER = 3,	   /* stopped by the circuit breaker (err says why) */
	EV_NO_SUCCESS = 4, /* every generation finished, none done (err says why) */
	/* 128 + signal number: stopped by SIGHUP (129), SIGINT (130) or SIGTERM (143) */
};

/*
 * Run (or continue) the evolution stored in db until opts->generations
 * generations exist and none is running, or until no new candidate fits in
 * opts->budget (see st_budget_count; candidates already started, and
 * interrupted ones, still run: their epochs are reserved). Returns an ev_outcome or 128 +
 * signal number, -1 on error (err set). A stop by signal or breaker records
 * the candidates it stopped `interrupted`: --resume reruns them. On resume
 * after a breaker stop, a failed base generation runs again (a new attempt).
 */
int ev_run(struct st_db *db, const struct st_options *opts, const struct ev_run_params *params,
	   struct ut_err *err);

/*
 * Everything about the options that can be wrong before anything runs:
 * parent method, mutation constants, trainer template, GA settings and
 * seed folder, a budget smaller than one candidate. Errors name the option.
 */
int ev_check_options(const struct st_options *opts, struct ut_err *err);

/*
 * The GPUs each candidate trains on (--gpus-per-candidate N): 1 without
 * --devices. Not a column of its own: the stored parallel is
 * GPUs / N x per_device, so N is read back from it, and a database made
 * before the option resumes with N = 1.
 */
long ev_gpus_per_candidate(const struct st_options *opts);

/*
 * Write evolve.csv and hyp_evolve.yaml (if any generation is done) into dir;
 * for an Ultralytics run tune_results.ndjson and best_hyperparameters.yaml.
 */
int ev_write_exports(struct st_db *db, const char *dir, struct ut_err *err);

#endif
