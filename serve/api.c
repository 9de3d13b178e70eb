/*
 * api.c - JSON answers of the dashboard (see api.h) and the hyperparameter
 * importance (serve.h: sv_importance).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "api.h"
#include "serve.h"

#define FAILURES_SHOWN 10
/* How the run's space judges a candidate (README: the two spaces). */
static const char *fitness_rule(const struct sv_snapshot *snap)
{
	if (snap->opts != NULL && snap->opts->meta.space == META_SPACE_ULTRALYTICS)
		return "fitness = mAP@.5:.95 of the final epoch (Ultralytics' detection fitness)";
	return "fitness = 0.1*mAP@.5 + 0.9*mAP@.5:.95 of the final epoch";
}

static int has_fitness(const struct st_generation *g)
{
	return g->has_results && isfinite(g->fitness);
}

long sv_best_index(const struct st_generation *gens, size_t n)
{
	long best = -1;
	for (size_t i = 0; i < n; i++)
		if (gens[i].status == ST_DONE && has_fitness(&gens[i]) &&
		    (best < 0 || gens[i].fitness > gens[best].fitness))
			best = (long)i;
	return best;
}

/* cJSON prints NaN and inf as null; a missing value is null too. */
static void add_number(cJSON *obj, const char *key, int present, double value)
{
	if (present)
		cJSON_AddNumberToObject(obj, key, value);
	else
		cJSON_AddNullToObject(obj, key);
}

static char *print_and_free(cJSON *root)
{
	char *text = root ? cJSON_PrintUnformatted(root) : NULL;
	cJSON_Delete(root);
	return text;
}

/* The keys of the run's space (YOLOv5's 29, or Ultralytics' 26), in its order. */
static int space_keys(const struct sv_snapshot *snap, const int **keys)
{
	return meta_space_keys(snap->opts != NULL ? snap->opts->meta.space : META_SPACE_YOLOV5,
			       keys);
}

static void add_hyp(cJSON *obj, const struct meta_hyp *hyp, const struct sv_snapshot *snap)
{
	const int *keys;
	int nkeys = space_keys(snap, &keys);
	for (int i = 0; i < nkeys; i++)
		cJSON_AddNumberToObject(obj, meta_name(keys[i]), hyp->v[keys[i]]);
}

static cJSON *generation_json(const struct st_generation *g, const struct sv_snapshot *snap)
{
	cJSON *obj = cJSON_CreateObject();
	cJSON_AddNumberToObject(obj, "generation", (double)g->generation);
	add_number(obj, "parent", g->parent >= 0, (double)g->parent);
	cJSON_AddStringToObject(obj, "status", st_status_name(g->status));
	add_number(obj, "fitness", has_fitness(g), g->fitness);
	for (int r = 0; r < ST_RESULT_COUNT; r++)
		add_number(obj, st_result_column(r), g->has_results, g->results[r]);
	add_hyp(obj, &g->hyp, snap);
	cJSON_AddNumberToObject(obj, "epochs_done", (double)g->epochs_done);
	add_number(obj, "started_at", g->started_at > 0, g->started_at);
	add_number(obj, "finished_at", g->finished_at > 0, g->finished_at);
	add_number(obj, "seconds", g->seconds > 0, g->seconds);
	add_number(obj, "exit_status", g->has_exit_status, g->exit_status);
	cJSON_AddNumberToObject(obj, "attempts", (double)g->attempts);
	cJSON_AddStringToObject(obj, "device", g->device);
	cJSON_AddStringToObject(obj, "host", g->host);
	cJSON_AddStringToObject(obj, "error", g->error);
	return obj;
}

/* The names of the space's hyp keys (snap given) or of the results (snap NULL). */
static cJSON *name_list(const struct sv_snapshot *snap)
{
	cJSON *list = cJSON_CreateArray();
	const int *keys = NULL;
	int count = snap != NULL ? space_keys(snap, &keys) : ST_RESULT_COUNT;
	for (int i = 0; i < count; i++)
		cJSON_AddItemToArray(list, cJSON_CreateString(snap != NULL ? meta_name(keys[i])
									   : st_result_column(i)));
	return list;
}

char *sv_json_generations(const struct sv_snapshot *snap)
{
	cJSON *root = cJSON_CreateObject();
	cJSON_AddStringToObject(root, "run", snap->name);
	cJSON_AddItemToObject(root, "hyp_keys", name_list(snap));
	cJSON_AddItemToObject(root, "result_keys", name_list(NULL));
	cJSON *mutable_keys = cJSON_AddArrayToObject(root, "mutable_keys");
	const int *keys;
	int nkeys = space_keys(snap, &keys);
	for (int i = 0; snap->opts != NULL && i < nkeys; i++)
		if (snap->opts->meta.k[keys[i]].gain > 0)
			cJSON_AddItemToArray(mutable_keys, cJSON_CreateString(meta_name(keys[i])));
	cJSON *list = cJSON_AddArrayToObject(root, "generations");
	for (size_t i = 0; i < snap->n; i++)
		cJSON_AddItemToArray(list, generation_json(&snap->gens[i], snap));
	return print_and_free(root);
}

static void add_counts(cJSON *root, const struct sv_snapshot *snap)
{
	size_t counts[ST_STATUS_COUNT] = {0};
	double seconds = 0, epochs = 0;
	for (size_t i = 0; i < snap->n; i++) {
		counts[snap->gens[i].status]++;
		seconds += snap->gens[i].seconds;
		epochs += (double)snap->gens[i].epochs_done;
	}
	cJSON *obj = cJSON_AddObjectToObject(root, "counts");
	for (int s = 0; s < ST_STATUS_COUNT; s++)
		cJSON_AddNumberToObject(obj, st_status_name((enum st_status)s), (double)counts[s]);
	cJSON_AddNumberToObject(root, "candidates", (double)snap->n);
	cJSON_AddNumberToObject(root, "trainer_seconds", seconds);
	cJSON_AddNumberToObject(root, "trainer_epochs", epochs);
	/* --budget: null when none; what is left after the running candidates' epochs */
	long budget = snap->opts != NULL ? snap->opts->budget : 0;
	long spent = 0, reserved = 0;
	if (budget > 0)
		st_budget_count(snap->gens, snap->n, snap->opts->epochs, &spent, &reserved);
	long left = budget - spent - reserved;
	if (budget > 0) {
		cJSON_AddNumberToObject(root, "budget", (double)budget);
		cJSON_AddNumberToObject(root, "budget_left", (double)(left > 0 ? left : 0));
	} else {
		cJSON_AddNullToObject(root, "budget");
		cJSON_AddNullToObject(root, "budget_left");
	}
}

/*
 * Time left: the mean trainer time of the finished candidates times the
 * candidates still to run, over the parallel slots. Unknown (null) before
 * anything finished, without a running evolver, or when nothing is left.
 */
static void add_eta(cJSON *root, const struct sv_snapshot *snap)
{
	double total = 0;
	size_t finished = 0, started = 0;
	for (size_t i = 0; i < snap->n; i++) {
		const struct st_generation *g = &snap->gens[i];
		if (g->status == ST_DONE || g->status == ST_PRUNED || g->status == ST_FAILED) {
			started++;
			if (g->seconds > 0) {
				total += g->seconds;
				finished++;
			}
		}
	}
	long target = snap->opts ? snap->opts->generations : 0;
	long slots = snap->opts && snap->opts->parallel > 0 ? snap->opts->parallel : 1;
	double left = (double)target - (double)started;
	int known = snap->writer != 0 && finished > 0 && left > 0;
	add_number(root, "eta_seconds", known,
		   known ? total / (double)finished * left / (double)slots : 0);
	cJSON_AddNumberToObject(root, "generations_left", left > 0 ? left : 0);
}

static void add_best(cJSON *root, const struct sv_snapshot *snap)
{
	long best = sv_best_index(snap->gens, snap->n);
	struct st_recommendation rec;
	int by_mean = st_recommend(snap->gens, snap->n, &rec) == 0 && rec.by_mean && rec.index >= 0;
	if (by_mean)
		best = rec.index; /* re-evaluations (--algorithm robust): export --best's choice */
	if (best < 0) {
		cJSON_AddNullToObject(root, "best");
		return;
	}
	const struct st_generation *g = &snap->gens[best];
	cJSON *obj = cJSON_AddObjectToObject(root, "best");
	cJSON_AddNumberToObject(obj, "generation", (double)g->generation);
	cJSON_AddNumberToObject(obj, "fitness", by_mean ? rec.mean : g->fitness);
	char judged[200];
	if (by_mean)
		snprintf(
		    judged, sizeof(judged),
		    "highest mean %s over %ld evaluations with other seeds (sd %.5f), among the "
		    "most evaluated candidates",
		    fitness_rule(snap), rec.evaluations, rec.sd);
	else
		snprintf(judged, sizeof(judged), "highest %s among done candidates",
			 fitness_rule(snap));
	cJSON_AddStringToObject(obj, "judged", judged);
	cJSON *results = cJSON_AddObjectToObject(obj, "results");
	for (int r = 0; r < ST_RESULT_COUNT; r++)
		cJSON_AddNumberToObject(results, st_result_column(r), g->results[r]);
	add_hyp(cJSON_AddObjectToObject(obj, "hyp"), &g->hyp, snap);
	cJSON *changed = cJSON_AddArrayToObject(obj, "changed_keys");
	const int *keys;
	int nkeys = space_keys(snap, &keys);
	for (int i = 0; snap->opts != NULL && i < nkeys; i++)
		if (g->hyp.v[keys[i]] != snap->opts->base.v[keys[i]])
			cJSON_AddItemToArray(changed, cJSON_CreateString(meta_name(keys[i])));
}

/* Columns of results.csv drawn as a running candidate's live curve. */
enum { EPOCH_COL = 0, MAP50_COL = 6, MAP_COL = 7 };

static void add_running(cJSON *root, const struct sv_snapshot *snap)
{
	cJSON *list = cJSON_AddArrayToObject(root, "running");
	const size_t width = 1 + ST_EPOCH_COLS;
	for (size_t i = 0; i < snap->n; i++) {
		const struct st_generation *g = &snap->gens[i];
		if (g->status != ST_RUNNING)
			continue;
		cJSON *obj = cJSON_CreateObject();
		cJSON_AddNumberToObject(obj, "generation", (double)g->generation);
		add_number(obj, "parent", g->parent >= 0, (double)g->parent);
		cJSON_AddNumberToObject(obj, "epochs_done", (double)g->epochs_done);
		add_number(obj, "started_at", g->started_at > 0, g->started_at);
		add_number(obj, "elapsed", g->started_at > 0, snap->now - g->started_at);
		cJSON_AddStringToObject(obj, "host", g->host);
		cJSON_AddStringToObject(obj, "device", g->device);
		cJSON *curve = cJSON_AddArrayToObject(obj, "curve");
		for (size_t r = 0; r < snap->running_rows; r++) {
			const double *row = &snap->running_epochs[r * width];
			if ((long)row[0] != g->generation)
				continue;
			double point[3] = {row[1 + EPOCH_COL], row[1 + MAP50_COL],
					   row[1 + MAP_COL]};
			cJSON_AddItemToArray(curve, cJSON_CreateDoubleArray(point, 3));
		}
		cJSON_AddItemToArray(list, obj);
	}
}

static void add_failures(cJSON *root, const struct sv_snapshot *snap)
{
	cJSON *list = cJSON_AddArrayToObject(root, "failures");
	size_t shown = 0;
	for (size_t i = snap->n; i-- > 0 && shown < FAILURES_SHOWN;) {
		const struct st_generation *g = &snap->gens[i];
		if (g->status != ST_FAILED && g->status != ST_INTERRUPTED)
			continue;
		cJSON *obj = cJSON_CreateObject();
		cJSON_AddNumberToObject(obj, "generation", (double)g->generation);
		cJSON_AddStringToObject(obj, "status", st_status_name(g->status));
		cJSON_AddNumberToObject(obj, "attempts", (double)g->attempts);
		add_number(obj, "exit_status", g->has_exit_status, g->exit_status);
		cJSON_AddStringToObject(obj, "error", g->error);
		cJSON_AddItemToArray(list, obj);
		shown++;
	}
}

char *sv_json_overview(const struct sv_snapshot *snap)
{
	cJSON *root = cJSON_CreateObject();
	cJSON_AddStringToObject(root, "run", snap->name);
	cJSON_AddStringToObject(root, "path", snap->path);
	cJSON_AddNumberToObject(root, "now", snap->now);
	const struct st_options *o = snap->opts;
	add_number(root, "target_generations", o != NULL, o ? (double)o->generations : 0);
	add_number(root, "epochs", o != NULL, o ? (double)o->epochs : 0);
	add_number(root, "parallel", o != NULL, o ? (double)o->parallel : 0);
	cJSON_AddStringToObject(root, "algorithm", o ? o->algorithm : "");
	cJSON_AddStringToObject(root, "fitness_rule", fitness_rule(snap));
	cJSON *writer = cJSON_AddObjectToObject(root, "evolver");
	cJSON_AddStringToObject(writer, "state",
				snap->writer == 1   ? "running"
				: snap->writer == 0 ? "gone"
						    : "unknown");
	add_number(writer, "pid", snap->writer_pid > 0, (double)snap->writer_pid);
	cJSON_AddStringToObject(root, "stop_reason", snap->stop_reason);
	add_counts(root, snap);
	add_eta(root, snap);
	add_best(root, snap);
	add_running(root, snap);
	add_failures(root, snap);
	return print_and_free(root);
}

char *sv_json_importance(const struct sv_snapshot *snap)
{
	size_t n = 0;
	const int *keys;
	int nkeys = space_keys(snap, &keys);
	double *x = malloc((snap->n ? snap->n : 1) * (size_t)nkeys * sizeof(*x));
	double *y = malloc((snap->n ? snap->n : 1) * sizeof(*y));
	if (x == NULL || y == NULL) {
		free(x);
		free(y);
		return NULL;
	}
	for (size_t i = 0; i < snap->n; i++) {
		const struct st_generation *g = &snap->gens[i];
		if (g->status != ST_DONE || !has_fitness(g))
			continue;
		for (int j = 0; j < nkeys; j++)
			x[n * (size_t)nkeys + (size_t)j] = g->hyp.v[keys[j]];
		y[n++] = g->fitness;
	}
	double importance[META_ALL];
	sv_importance(x, y, n, nkeys, importance);
	free(x);
	free(y);
	cJSON *root = cJSON_CreateObject();
	cJSON_AddStringToObject(root, "run", snap->name);
	cJSON_AddStringToObject(root, "method",
				"first-order variance decomposition (fANOVA-style)");
	cJSON_AddStringToObject(
	    root, "explain",
	    "Share of the fitness variance of the done candidates that each hyperparameter "
	    "explains alone: its values cut into equal-count bins, the variance of the bin means "
	    "over the total (adjusted eta squared, 0 = no effect); keys that never changed are "
	    "left out.");
	cJSON_AddNumberToObject(root, "candidates", (double)n);
	cJSON *list = cJSON_AddArrayToObject(root, "importance");
	int order[META_ALL], count = 0; /* indexes into keys */
	for (int i = 0; i < nkeys; i++)
		if (importance[i] >= 0)
			order[count++] = i;
	for (int a = 1; a < count; a++) /* insertion sort, largest first */
		for (int b = a; b > 0 && importance[order[b]] > importance[order[b - 1]]; b--) {
			int swap = order[b];
			order[b] = order[b - 1];
			order[b - 1] = swap;
		}
	for (int i = 0; i < count; i++) {
		cJSON *obj = cJSON_CreateObject();
		cJSON_AddStringToObject(obj, "key", meta_name(keys[order[i]]));
		cJSON_AddNumberToObject(obj, "importance", importance[order[i]]);
		cJSON_AddItemToArray(list, obj);
	}
	return print_and_free(root);
}

char *sv_json_epochs(long generation, const double *rows, size_t n)
{
	cJSON *root = cJSON_CreateObject();
	cJSON_AddNumberToObject(root, "generation", (double)generation);
	cJSON *columns = cJSON_AddArrayToObject(root, "columns");
	for (int c = 0; c < ST_EPOCH_COLS; c++)
		cJSON_AddItemToArray(columns, cJSON_CreateString(st_epoch_csv_names[c]));
	cJSON *list = cJSON_AddArrayToObject(root, "rows");
	const size_t width = 1 + ST_EPOCH_COLS;
	for (size_t r = 0; r < n; r++)
		cJSON_AddItemToArray(list,
				     cJSON_CreateDoubleArray(&rows[r * width + 1], ST_EPOCH_COLS));
	return print_and_free(root);
}

/* ---- importance ---- */

struct keyed {
	double x, y;
};

static int by_x(const void *a, const void *b)
{
	const struct keyed *p = a, *q = b;
	return (p->x > q->x) - (p->x < q->x);
}

/*
 * Adjusted eta^2 of y grouped by x cut into about `bins` equal-count bins
 * (equal x values never split across bins): (SSB - (B-1) MSW) / SST,
 * clamped to [0, 1]; the adjustment keeps a key with no effect near 0
 * however few candidates there are.
 */
static double eta_squared(struct keyed *pts, size_t n, size_t bins)
{
	qsort(pts, n, sizeof(*pts), by_x);
	double mean = 0;
	for (size_t i = 0; i < n; i++)
		mean += pts[i].y;
	mean /= (double)n;
	double sst = 0, ssb = 0;
	for (size_t i = 0; i < n; i++)
		sst += (pts[i].y - mean) * (pts[i].y - mean);
	if (sst <= 0)
		return 0;
	size_t groups = 0, start = 0;
	while (start < n) {
		size_t end = start + (n + bins - 1) / bins;
		if (end > n)
			end = n;
		while (end < n && pts[end].x == pts[end - 1].x)
			end++;
		double sum = 0;
		for (size_t i = start; i < end; i++)
			sum += pts[i].y;
		double bin_mean = sum / (double)(end - start);
		ssb += (double)(end - start) * (bin_mean - mean) * (bin_mean - mean);
		groups++;
		start = end;
	}
	if (groups < 2)
		return 0;
	double msw = n > groups ? (sst - ssb) / (double)(n - groups) : 0;
	double eta = (ssb - (double)(groups - 1) * msw) / sst;
	return eta < 0 ? 0 : eta > 1 ? 1 : eta;
}

void sv_importance(const double *x, const double *y, size_t n, int nkeys, double *importance)
{
	size_t bins = (size_t)lround(sqrt((double)n));
	bins = bins < 2 ? 2 : bins > 10 ? 10 : bins;
	struct keyed *pts = n >= 2 ? malloc(n * sizeof(*pts)) : NULL;
	for (int k = 0; k < nkeys; k++) {
		importance[k] = -1;
		if (pts == NULL)
			continue;
		int varies = 0;
		for (size_t i = 0; i < n; i++) {
			pts[i].x = x[i * (size_t)nkeys + (size_t)k];
			pts[i].y = y[i];
			varies |= pts[i].x != pts[0].x;
		}
		if (varies)
			importance[k] = eta_squared(pts, n, bins);
	}
	free(pts);
}
