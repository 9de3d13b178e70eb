/*
 * api.h - the JSON answers of `yolo-evolve serve` (built with cJSON, so
 * every string from a database is escaped) from one snapshot of a run.
 * Internal to serve/.
 */
#ifndef SV_API_H
#define SV_API_H

#include <stddef.h>

#include "store.h"

/* What one read of a database holds; running rows of a dead evolver already shown as interrupted.
 */
struct sv_snapshot {
	const char *name, *path; /* the run as the page names it */
	struct st_generation *gens;
	size_t n;
	struct st_options *opts; /* NULL: no evolution row yet */
	int writer;		 /* st_writer_alive */
	long writer_pid;
	char stop_reason[ST_STR];
	double now;
	double *running_epochs; /* epochs rows (1 + ST_EPOCH_COLS) of the running candidates */
	size_t running_rows;
};

/* Each returns a malloc'ed NUL-terminated JSON text, or NULL when out of memory. */
char *sv_json_generations(const struct sv_snapshot *snap);
char *sv_json_overview(const struct sv_snapshot *snap);
char *sv_json_importance(const struct sv_snapshot *snap);
char *sv_json_epochs(long generation, const double *rows, size_t n);

/* Index of the best done candidate (highest finite fitness, first on ties), or -1. */
long sv_best_index(const struct st_generation *gens, size_t n);

#endif
