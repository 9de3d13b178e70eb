/*
 * summary.c - terminal summaries of an evolution (see reports.h).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "reports.h"

#define TOP_ROWS 5
#define DIFF_KEYS 3

struct overview {
	struct st_generation *gens;
	size_t n;
	size_t counts[ST_STATUS_COUNT];
	double trainer_seconds;
	long target;
	long budget, epochs; /* --budget (0: none) and --epochs of the evolution */
	struct meta_hyp base;
	int writer;	 /* an evolver holds the database: 1, none: 0, unknown: -1 */
	long writer_pid; /* its pid, 0 if unknown */
	size_t stale;	 /* rows it left `running` that are shown as interrupted */
	char stop_reason[ST_STR];
};

size_t rp_show_stale_as_interrupted(struct st_generation *gens, size_t n, int writer)
{
	size_t stale = 0;
	if (writer != 0)
		return 0;
	for (size_t i = 0; i < n; i++) {
		struct st_generation *g = &gens[i];
		if (g->status != ST_RUNNING && g->status != ST_PENDING)
			continue;
		g->status = ST_INTERRUPTED;
		snprintf(g->error, sizeof(g->error), "its evolver is gone; --resume reruns it");
		stale++;
	}
	return stale;
}

static int load_overview(struct st_db *db, struct overview *ov, FILE *out)
{
	memset(ov, 0, sizeof(*ov));
	struct ut_err err;
	struct st_options *opts = calloc(1, sizeof(*opts));
	int found = 0;
	if (opts == NULL || st_options_read(db, opts, &found, &err) != 0 ||
	    st_generations_load(db, &ov->gens, &ov->n, &err) != 0) {
		fprintf(out, "error: %s\n", opts ? err.msg : "out of memory");
		free(opts);
		return -1;
	}
	if (found) {
		ov->target = opts->generations;
		ov->budget = opts->budget;
		ov->epochs = opts->epochs;
		ov->base = opts->base;
	}
	free(opts);
	if (st_stop_read(db, ov->stop_reason, sizeof(ov->stop_reason), &err) != 0) {
		fprintf(out, "error: %s\n", err.msg);
		free(ov->gens);
		return -1;
	}
	ov->writer = st_writer_alive(db, &ov->writer_pid);
	ov->stale = rp_show_stale_as_interrupted(ov->gens, ov->n, ov->writer);
	for (size_t i = 0; i < ov->n; i++) {
		ov->counts[ov->gens[i].status]++;
		ov->trainer_seconds += ov->gens[i].seconds;
	}
	return 0;
}

static int by_fitness(const void *a, const void *b)
{
	const struct st_generation *x = *(const struct st_generation *const *)a;
	const struct st_generation *y = *(const struct st_generation *const *)b;
	if (x->fitness != y->fitness)
		return x->fitness > y->fitness ? -1 : 1;
	return (x->generation > y->generation) - (x->generation < y->generation);
}

/* The keys that differ most (relative) from the base hyp, as "key=value" text. */
static void describe_changes(const struct meta_hyp *hyp, const struct meta_hyp *base, char *buf,
			     size_t size)
{
	int used[META_ALL] = {0}; /* keys outside the space are NaN: never "changed" */
	size_t len = 0;
	buf[0] = '\0';
	for (int pick = 0; pick < DIFF_KEYS; pick++) {
		int best = -1;
		double best_change = 0;
		for (int k = 0; k < META_ALL; k++) {
			double scale = fmax(fabs(base->v[k]), 1e-3);
			double change = fabs(hyp->v[k] - base->v[k]) / scale;
			if (!used[k] && change > best_change) {
				best_change = change;
				best = k;
			}
		}
		if (best < 0)
			break;
		used[best] = 1;
		len += (size_t)snprintf(buf + len, len < size ? size - len : 0, "%s%s=%.5g",
					pick ? " " : "", meta_name(best), hyp->v[best]);
	}
	if (buf[0] == '\0')
		snprintf(buf, size, "(base hyp)");
}

static void print_top(const struct overview *ov, FILE *out)
{
	const struct st_generation **done = malloc((ov->n ? ov->n : 1) * sizeof(*done));
	if (done == NULL)
		return;
	size_t n = 0;
	for (size_t i = 0; i < ov->n; i++)
		if (ov->gens[i].status == ST_DONE)
			done[n++] = &ov->gens[i];
	qsort(done, n, sizeof(*done), by_fitness);
	if (n == 0) {
		fprintf(out, "no generation has finished successfully yet\n");
		free(done);
		return;
	}
	fprintf(out, "%10s %8s %9s %9s %9s %9s  %s\n", "generation", "fitness", "P", "R", "mAP@.5",
		"mAP@.5:.95", "largest changes from the base hyp");
	for (size_t i = 0; i < n && i < TOP_ROWS; i++) {
		const struct st_generation *g = done[i];
		char changes[256];
		describe_changes(&g->hyp, &ov->base, changes, sizeof(changes));
		fprintf(out, "%10ld %8.5f %9.5f %9.5f %9.5f %9.5f  %s\n", g->generation, g->fitness,
			g->results[ST_R_precision], g->results[ST_R_recall], g->results[ST_R_map50],
			g->results[ST_R_map], changes);
	}
	free(done);
}

/* Is there a budget, and no room left in it for another candidate? */
static int budget_spent(const struct overview *ov)
{
	long spent, reserved;
	st_budget_count(ov->gens, ov->n, ov->epochs, &spent, &reserved);
	return ov->budget > 0 && spent + reserved + ov->epochs > ov->budget;
}

/* Trainer epochs spent against --budget (a line only when there is a budget). */
static void print_budget(const struct overview *ov, FILE *out)
{
	if (ov->budget <= 0)
		return;
	long spent, reserved;
	st_budget_count(ov->gens, ov->n, ov->epochs, &spent, &reserved);
	long left = ov->budget - spent - reserved;
	fprintf(out, "budget: %ld of %ld trainer epochs spent", spent, ov->budget);
	if (reserved > 0)
		fprintf(out, ", %ld reserved by running or interrupted candidates", reserved);
	fprintf(out, ", %ld left%s\n", left > 0 ? left : 0,
		left < ov->epochs ? " (no room for another candidate)" : "");
}

/*
 * With re-evaluations (--algorithm robust) the recommendation is a mean,
 * not the best single run the table below shows: say which and why.
 */
static void print_recommendation(const struct overview *ov, FILE *out)
{
	struct st_recommendation rec;
	if (st_recommend(ov->gens, ov->n, &rec) != 0 || !rec.by_mean || rec.index < 0)
		return;
	fprintf(out,
		"recommended (export --best): generation %ld, mean fitness %.5f +- %.5f (sd) over "
		"its %ld evaluations with other seeds; the table ranks single runs\n",
		ov->gens[rec.index].generation, rec.mean, rec.sd, rec.evaluations);
}

int rp_print_summary(struct st_db *db, FILE *out)
{
	struct overview ov;
	if (load_overview(db, &ov, out) != 0)
		return -1;
	fprintf(out,
		"%zu of %ld generations: %zu done, %zu failed, %zu pruned, %zu running, %zu "
		"interrupted; trainer time %.1f s\n",
		ov.n, ov.target, ov.counts[ST_DONE], ov.counts[ST_FAILED], ov.counts[ST_PRUNED],
		ov.counts[ST_RUNNING], ov.counts[ST_INTERRUPTED], ov.trainer_seconds);
	print_budget(&ov, out);
	print_recommendation(&ov, out);
	print_top(&ov, out);
	free(ov.gens);
	return 0;
}

/* Text that may end with a trainer's log tail: its lines after the first indented. */
static void print_indented(FILE *out, const char *text)
{
	for (const char *p = text; *p; p++) {
		if (*p != '\n')
			fputc(*p, out);
		else if (p[1] != '\0')
			fputs("\n    ", out);
	}
	fputc('\n', out);
}

int rp_print_status(struct st_db *db, FILE *out)
{
	if (rp_print_summary(db, out) != 0)
		return -1;
	struct overview ov;
	if (load_overview(db, &ov, out) != 0)
		return -1;
	if (ov.writer == 1 && ov.writer_pid > 0)
		fprintf(out, "evolver: pid %ld is running this evolution\n", ov.writer_pid);
	else if (ov.writer == 1)
		fprintf(out, "evolver: running\n");
	else if (ov.writer == 0 && ov.counts[ST_INTERRUPTED] == 0 && (long)ov.n < ov.target &&
		 budget_spent(&ov))
		fprintf(out, "evolver: none is running; the budget is spent (--resume --budget "
			     "EPOCHS continues)\n");
	else if (ov.writer == 0 && ((long)ov.n < ov.target || ov.counts[ST_INTERRUPTED] > 0))
		fprintf(out, "evolver: none is running; yolo-evolve --resume continues\n");
	else if (ov.writer == 0)
		fprintf(out, "evolver: none is running\n");
	if (ov.stop_reason[0] != '\0') {
		fprintf(out, "stopped by the circuit breaker: ");
		print_indented(out, ov.stop_reason);
	}
	for (size_t i = 0; i < ov.n; i++) {
		const struct st_generation *g = &ov.gens[i];
		if (g->status == ST_RUNNING)
			fprintf(out, "running: generation %ld, epoch %ld, pid %ld on %s\n",
				g->generation, g->epochs_done, g->pid, g->host);
	}
	if (ov.stale > 0)
		fprintf(out,
			"interrupted: %zu generation(s) left running by an evolver that is gone; "
			"--resume reruns them\n",
			ov.stale);
	size_t shown = 0;
	for (size_t i = ov.n; i-- > 0 && shown < 5;) {
		const struct st_generation *g = &ov.gens[i];
		if (g->status != ST_FAILED)
			continue;
		fprintf(out, "failed: generation %ld (attempts %ld): %.160s\n", g->generation,
			g->attempts, g->error);
		shown++;
	}
	free(ov.gens);
	return 0;
}
