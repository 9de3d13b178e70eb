/*
 * surrogate.c - kernel regression of real learning curves (surrogate.h):
 * reading the curve table, choosing the bandwidth by leave-one-out
 * cross-validation, answering a hyp set epoch by epoch.
 */
#include "surrogate.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Columns of the table besides the hyp keys. */
enum { COL_GENERATION, COL_EPOCH, COL_PRECISION, COL_RECALL, COL_MAP50, COL_MAP, COL_OTHER };

struct sg_table {
	int runs, epochs;
	double (*points)[META_COUNT]; /* [runs]: normalised hyps, NaN where unused */
	struct sg_metrics *metrics;   /* [runs * epochs] */
	double scale[META_COUNT]; /* relevance of each key: its coordinate is multiplied by it */
	double bandwidth, rmse, r2, r2_isotropic;
};

void sg_normalise(const struct meta_hyp *hyp, const struct meta_table *table, double u[META_COUNT])
{
	for (int k = 0; k < META_COUNT; k++) {
		const struct meta_bound *b = &table->k[k];
		double v = hyp->v[k], x;
		if (b->gain <= 0 || !(b->upper > b->lower))
			x = NAN;
		else if (k == META_lr0)
			x = (log10(fmax(v, b->lower)) - log10(b->lower)) /
			    (log10(b->upper) - log10(b->lower));
		else
			x = (v - b->lower) / (b->upper - b->lower);
		u[k] = isnan(x) ? x : fmin(1.0, fmax(0.0, x));
	}
}

static double fitness_of(const struct sg_metrics *m)
{
	return 0.1 * m->map50 + 0.9 * m->map;
}

/* Squared distance over the keys both points use, each key's difference times its scale. */
static double distance2(const double *scale, const double *a, const double *b)
{
	double d = 0;
	for (int k = 0; k < META_COUNT; k++)
		if (!isnan(a[k]) && !isnan(b[k]))
			d += scale[k] * scale[k] * (a[k] - b[k]) * (a[k] - b[k]);
	return d;
}

/*
 * Kernel weights of every run for squared distances d2[runs] (runs equal to
 * `skip` get 0), shifted by the smallest distance so that they never all
 * underflow. Returns their sum.
 */
static double weights(const double *d2, int runs, int skip, double bandwidth, double *w)
{
	double least = INFINITY, sum = 0;
	for (int i = 0; i < runs; i++)
		if (i != skip && d2[i] < least)
			least = d2[i];
	for (int i = 0; i < runs; i++) {
		w[i] = i == skip ? 0 : exp(-(d2[i] - least) / (2 * bandwidth * bandwidth));
		sum += w[i];
	}
	return sum;
}

/* Leave-one-out squared error of the final fitness at one bandwidth; d2 is [runs * runs]. */
static double loo_error(const struct sg_table *t, const double *d2, double bandwidth, double *w)
{
	double error = 0;
	for (int i = 0; i < t->runs; i++) {
		double sum = weights(d2 + (size_t)i * t->runs, t->runs, i, bandwidth, w), guess = 0;
		for (int j = 0; j < t->runs; j++)
			guess +=
			    w[j] * fitness_of(&t->metrics[(size_t)j * t->epochs + t->epochs - 1]);
		double truth = fitness_of(&t->metrics[(size_t)i * t->epochs + t->epochs - 1]);
		error += (guess / sum - truth) * (guess / sum - truth);
	}
	return error;
}

/* The bandwidth of least leave-one-out error on a geometric grid from 0.02 to 20 (*error). */
static double best_bandwidth(const struct sg_table *t, const double *d2, double *w, double *error)
{
	double best = INFINITY, bandwidth = 1;
	for (int step = 0; step <= 30; step++) {
		double h = 0.02 * pow(10.0, step / 10.0), e = loo_error(t, d2, h, w);
		if (e < best) {
			best = e;
			bandwidth = h;
		}
	}
	*error = best;
	return bandwidth;
}

/* 1 - error / (the final fitness's sum of squares around its mean). */
static double r_squared(const struct sg_table *t, double error)
{
	double mean = 0, spread = 0;
	for (int i = 0; i < t->runs; i++)
		mean += fitness_of(&t->metrics[(size_t)i * t->epochs + t->epochs - 1]) / t->runs;
	for (int i = 0; i < t->runs; i++) {
		double f = fitness_of(&t->metrics[(size_t)i * t->epochs + t->epochs - 1]);
		spread += (f - mean) * (f - mean);
	}
	return spread > 0 ? 1.0 - error / spread : 0.0;
}

/*
 * Fit the key scales and the bandwidth by leave-one-out error of the final
 * fitness: all scales 1 and the best bandwidth first, then two sweeps of
 * coordinate descent over each key's scale in {0, 0.25, 0.5, 1, 2, 4}
 * (0: the key does not matter), the bandwidth chosen again after each.
 * diff is [META_COUNT][runs * runs]: per key, the squared coordinate differences.
 */
static void fit_scales(struct sg_table *t, const double *diff, double *d2, double *trial, double *w)
{
	static const double values[] = {0, 0.25, 0.5, 1, 2, 4};
	size_t nn = (size_t)t->runs * (size_t)t->runs;
	double error;
	t->bandwidth = best_bandwidth(t, d2, w, &error);
	t->r2_isotropic = r_squared(t, error);
	for (int sweep = 0; sweep < 2; sweep++) {
		for (int k = 0; k < META_COUNT; k++) {
			if (isnan(t->points[0][k]))
				continue;
			const double *dk = diff + (size_t)k * nn;
			double old = t->scale[k] * t->scale[k], pick = t->scale[k];
			for (size_t v = 0; v < sizeof(values) / sizeof(values[0]); v++) {
				double now = values[v] * values[v];
				for (size_t ij = 0; ij < nn; ij++)
					trial[ij] = d2[ij] + (now - old) * dk[ij];
				double e = loo_error(t, trial, t->bandwidth, w);
				if (e < error) {
					error = e;
					pick = values[v];
				}
			}
			for (size_t ij = 0; ij < nn; ij++)
				d2[ij] += (pick * pick - old) * dk[ij];
			t->scale[k] = pick;
		}
		t->bandwidth = best_bandwidth(t, d2, w, &error);
	}
	t->rmse = sqrt(error / t->runs);
	t->r2 = r_squared(t, error);
}

/* Choose the key scales and the bandwidth (fit_scales) with the memory it needs. */
static int choose_bandwidth(struct sg_table *t, struct ut_err *err)
{
	size_t n = (size_t)t->runs, nn = n * n;
	double *diff = calloc((size_t)META_COUNT * nn, sizeof(*diff));
	double *d2 = calloc(nn, sizeof(*d2)), *trial = malloc(nn * sizeof(*trial));
	double *w = malloc(n * sizeof(*w));
	if (diff == NULL || d2 == NULL || trial == NULL || w == NULL) {
		free(diff);
		free(d2);
		free(trial);
		free(w);
		return ut_err_set(err, "out of memory");
	}
	for (int k = 0; k < META_COUNT; k++) {
		t->scale[k] = 1;
		if (isnan(t->points[0][k]))
			continue;
		for (size_t i = 0; i < n; i++)
			for (size_t j = 0; j < n; j++) {
				double d = t->points[i][k] - t->points[j][k];
				diff[(size_t)k * nn + i * n + j] = d * d;
				d2[i * n + j] += d * d;
			}
	}
	fit_scales(t, diff, d2, trial, w);
	free(diff);
	free(d2);
	free(trial);
	free(w);
	return 0;
}

/* Column roles of the header line; every hyp key of the meta table with a gain must be there. */
static int read_header(char *line, const struct meta_table *table, int *role, int *ncols,
		       struct ut_err *err)
{
	static const char *const names[] = {"generation", "epoch", "precision",
					    "recall",	  "map50", "map"};
	int seen[META_COUNT] = {0}, c = 0;
	char *save = NULL;
	for (char *cell = strtok_r(line, ",\r\n", &save); cell != NULL && c < 256;
	     cell = strtok_r(NULL, ",\r\n", &save), c++) {
		int key = meta_find(cell);
		role[c] = COL_OTHER;
		for (int r = 0; r < COL_OTHER; r++)
			if (strcmp(cell, names[r]) == 0)
				role[c] = r;
		if (role[c] == COL_OTHER && key >= 0 && key < META_COUNT) {
			role[c] = COL_OTHER + 1 + key;
			seen[key] = 1;
		}
	}
	*ncols = c;
	for (int k = 0; k < META_COUNT; k++)
		if (table->k[k].gain > 0 && table->k[k].upper > table->k[k].lower && !seen[k])
			return ut_err_set(err, "no column '%s'", meta_name(k));
	return 0;
}

/* Grow *array (of `size`-byte items, capacity *cap) to hold `need` items. */
static int reserve(void **array, size_t size, size_t need, size_t *cap)
{
	if (need <= *cap)
		return 0;
	size_t more = *cap ? *cap * 2 : 256;
	void *grown = realloc(*array, more * size);
	if (grown == NULL)
		return -1;
	*array = grown;
	*cap = more;
	return 0;
}

/*
 * The data rows, appended in order: runs grouped, each with epochs 0 .. E-1,
 * E taken from the first run, so run i's epoch e is metrics[i * E + e].
 */
static int read_rows(FILE *in, const char *path, const struct meta_table *table, const int *role,
		     int ncols, struct sg_table *t, struct ut_err *err)
{
	char line[8192];
	size_t run_cap = 0, row_cap = 0, rows = 0;
	int lineno = 1;
	long run_generation = -1, expected = 0, epochs = 0;
	struct meta_hyp hyp;
	while (fgets(line, sizeof(line), in) != NULL) {
		lineno++;
		double value[COL_OTHER] = {0};
		for (int k = 0; k < META_ALL; k++)
			hyp.v[k] = NAN;
		char *save = NULL;
		int c = 0;
		for (char *cell = strtok_r(line, ",\r\n", &save); cell != NULL && c < ncols;
		     cell = strtok_r(NULL, ",\r\n", &save), c++) {
			if (role[c] < COL_OTHER)
				value[role[c]] = strtod(cell, NULL);
			else if (role[c] > COL_OTHER)
				hyp.v[role[c] - COL_OTHER - 1] = strtod(cell, NULL);
		}
		if (c != ncols)
			return ut_err_set(err, "%s:%d: %d cells, the header has %d", path, lineno,
					  c, ncols);
		long generation = (long)value[COL_GENERATION], epoch = (long)value[COL_EPOCH];
		if (generation != run_generation) {
			if (run_generation >= 0 && epochs == 0)
				epochs = expected;
			if (run_generation >= 0 && expected != epochs)
				return ut_err_set(err, "%s:%d: run %ld has %ld epochs, not %ld",
						  path, lineno, run_generation, expected, epochs);
			if (reserve((void **)&t->points, sizeof(*t->points), (size_t)t->runs + 1,
				    &run_cap) != 0)
				return ut_err_set(err, "out of memory");
			sg_normalise(&hyp, table, t->points[t->runs++]);
			run_generation = generation;
			expected = 0;
		}
		if (epoch != expected)
			return ut_err_set(err, "%s:%d: run %ld: epoch %ld, expected %ld", path,
					  lineno, generation, epoch, expected);
		if (reserve((void **)&t->metrics, sizeof(*t->metrics), rows + 1, &row_cap) != 0)
			return ut_err_set(err, "out of memory");
		t->metrics[rows++] = (struct sg_metrics){value[COL_PRECISION], value[COL_RECALL],
							 value[COL_MAP50], value[COL_MAP]};
		expected++;
	}
	if (run_generation >= 0 && epochs == 0)
		epochs = expected;
	if (run_generation < 0 || expected != epochs)
		return ut_err_set(err, "%s: no runs, or the last run has %ld epochs, not %ld", path,
				  expected, epochs);
	t->epochs = (int)epochs;
	return 0;
}

int sg_table_load(const char *path, const struct meta_table *table, struct sg_table **out,
		  struct ut_err *err)
{
	FILE *in = fopen(path, "r");
	if (in == NULL)
		return ut_err_set(err, "%s: %s", path, strerror(errno));
	struct sg_table *t = calloc(1, sizeof(*t));
	char header[8192];
	int role[256], ncols = 0, rc = 0;
	if (t == NULL)
		rc = ut_err_set(err, "out of memory");
	else if (fgets(header, sizeof(header), in) == NULL)
		rc = ut_err_set(err, "%s: empty", path);
	else if (read_header(header, table, role, &ncols, err) != 0)
		rc = ut_err_set(err, "%s: %s", path, err->msg);
	else
		rc = read_rows(in, path, table, role, ncols, t, err);
	fclose(in);
	if (rc == 0 && t->runs < 3)
		rc = ut_err_set(err, "%s: %d runs, at least 3 needed", path, t->runs);
	if (rc == 0)
		rc = choose_bandwidth(t, err);
	if (rc != 0) {
		sg_table_free(t);
		return -1;
	}
	*out = t;
	return 0;
}

void sg_table_free(struct sg_table *t)
{
	if (t == NULL)
		return;
	free(t->points);
	free(t->metrics);
	free(t);
}

int sg_table_runs(const struct sg_table *t)
{
	return t->runs;
}

int sg_table_epochs(const struct sg_table *t)
{
	return t->epochs;
}

void sg_table_fit(const struct sg_table *t, struct sg_fit *fit)
{
	fit->bandwidth = t->bandwidth;
	fit->rmse = t->rmse;
	fit->r2 = t->r2;
	fit->r2_isotropic = t->r2_isotropic;
	memcpy(fit->scale, t->scale, sizeof(fit->scale));
}

void sg_table_predict(const struct sg_table *t, const double u[META_COUNT], long epoch, long epochs,
		      struct sg_metrics *out)
{
	long e = lround((double)(epoch + 1) * t->epochs / (double)(epochs > 0 ? epochs : 1)) - 1;
	e = e < 0 ? 0 : e >= t->epochs ? t->epochs - 1 : e;
	double least = INFINITY, sum = 0;
	for (int i = 0; i < t->runs; i++)
		least = fmin(least, distance2(t->scale, u, t->points[i]));
	*out = (struct sg_metrics){0};
	for (int i = 0; i < t->runs; i++) {
		double w = exp(-(distance2(t->scale, u, t->points[i]) - least) /
			       (2 * t->bandwidth * t->bandwidth));
		const struct sg_metrics *m = &t->metrics[(size_t)i * t->epochs + (size_t)e];
		out->precision += w * m->precision;
		out->recall += w * m->recall;
		out->map50 += w * m->map50;
		out->map += w * m->map;
		sum += w;
	}
	out->precision /= sum;
	out->recall /= sum;
	out->map50 /= sum;
	out->map /= sum;
}
