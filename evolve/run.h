/*
 * run.h - the evolution loop: breed, launch trainers on P slots, follow
 * their results.csv, record every outcome in the database, stop cleanly on
 * SIGINT/SIGTERM, and recover from a killed evolver.
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

struct ev_run_params {
	const char *run_dir; /* where candidates/, evolve.csv, hyp_evolve.yaml go */
	double grace;        /* seconds between SIGTERM and SIGKILL (10) */
	long long log_max;   /* bytes of trainer log before it rotates (0: 16 MiB) */
	long report_every;   /* redraw evolve.png and fitness.png every N finished (0: never) */
};

/*
 * Run (or continue) the evolution stored in db until opts->generations
 * generations exist and none is running. Returns 0 when finished, 128 +
 * signal number when stopped by SIGINT/SIGTERM, -1 on error (err set).
 */
int ev_run(struct st_db *db, const struct st_options *opts,
	   const struct ev_run_params *params, struct ut_err *err);

/*
 * Everything about the options that can be wrong before anything runs:
 * parent method, mutation constants, trainer template, GA settings and
 * seed folder. Errors name the option.
 */
int ev_check_options(const struct st_options *opts, struct ut_err *err);

/* Write evolve.csv and hyp_evolve.yaml (if any generation is done) into dir. */
int ev_write_exports(struct st_db *db, const char *dir, struct ut_err *err);

#endif
