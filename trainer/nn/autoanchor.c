/*
 * autoanchor.c - YOLOv5 v7.0's anchor fit check, k-means and anchor
 * evolution (utils/autoanchor.py). See autoanchor.h for the contracts.
 *
 * The ratio metric is evaluated in float32, one operation at a time, so the
 * check reproduces torch's numbers exactly; sums of fitness run in double
 * (torch's float32 reduction order is not reproducible anyway, and the
 * fitness only has to rank anchor sets). k-means runs in double, as scipy's.
 */
#include "autoanchor.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define KMEANS_STARTS 30   /* scipy kmeans(iter=30) */
#define KMEANS_THRESH 1e-5 /* scipy's default: stop when distortion falls less */
#define MUTATION_PROB 0.9
#define MUTATION_SIGMA 0.1
#define RECOMPUTE_BPR 0.98 /* check_anchors keeps anchors recalling more */

size_t tr_anchor_label_total(const struct tr_anchor_dataset *dataset)
{
	size_t total = 0;
	for (size_t i = 0; i < dataset->n_images; i++)
		total += dataset->label_counts[i];
	return total;
}

void tr_anchor_label_wh(const struct tr_anchor_dataset *dataset, int imgsz, const double *scale,
			float *wh)
{
	size_t label = 0;
	for (size_t i = 0; i < dataset->n_images; i++) {
		const double *shape = dataset->shapes_wh + 2 * i;
		double longest = fmax(shape[0], shape[1]);
		/* numpy: imgsz * shapes / max, then * scale, then label * that */
		double side[2];
		for (int d = 0; d < 2; d++) {
			side[d] = (double)imgsz * shape[d] / longest;
			if (scale != NULL)
				side[d] *= scale[i];
		}
		for (size_t j = 0; j < dataset->label_counts[i]; j++, label++)
			for (int d = 0; d < 2; d++)
				wh[2 * label + d] =
				    (float)((double)dataset->labels_wh[2 * label + d] * side[d]);
	}
}

void tr_anchor_draw_scale(struct ut_pcg *rng, size_t n, double *scale)
{
	for (size_t i = 0; i < n; i++)
		scale[i] = 0.9 + 0.2 * ut_pcg_uniform(rng);
}

/* x for one label and one anchor: min over sides of min(r, 1/r), float32. */
static float ratio_metric(const float *wh, const float *anchor)
{
	float worst = FLT_MAX;
	for (int d = 0; d < 2; d++) {
		float r = wh[d] / anchor[d];
		float inverse = 1.0f / r;
		float x = r < inverse ? r : inverse;
		if (x < worst)
			worst = x;
	}
	return worst;
}

void tr_anchor_check(const float *wh, size_t n_labels, const float *anchors, size_t n_anchors,
		     double thr, float *best_ratio, struct tr_anchor_fit *fit)
{
	float threshold = (float)(1.0 / thr);
	size_t recalled = 0, above = 0;
	for (size_t j = 0; j < n_labels; j++) {
		float best = -FLT_MAX;
		for (size_t a = 0; a < n_anchors; a++) {
			float x = ratio_metric(wh + 2 * j, anchors + 2 * a);
			above += x > threshold;
			if (x > best)
				best = x;
		}
		recalled += best > threshold;
		if (best_ratio != NULL)
			best_ratio[j] = best;
	}
	/* float32 means of exact integer sums, as torch's .float().mean() */
	fit->bpr = n_labels ? (double)((float)recalled / (float)n_labels) : 0.0;
	fit->aat = n_labels ? (double)((float)above / (float)n_labels) : 0.0;
}

double tr_anchor_fitness(const float *wh, size_t n_labels, const float *anchors, size_t n_anchors,
			 double thr)
{
	float threshold = (float)(1.0 / thr);
	double sum = 0.0;
	for (size_t j = 0; j < n_labels; j++) {
		float best = -FLT_MAX;
		for (size_t a = 0; a < n_anchors; a++) {
			float x = ratio_metric(wh + 2 * j, anchors + 2 * a);
			if (x > best)
				best = x;
		}
		if (best > threshold)
			sum += best;
	}
	return n_labels ? sum / (double)n_labels : 0.0;
}

/* --- k-means (scipy.cluster.vq.kmeans on whitened points) --- */

struct kmeans_work {
	const double *points; /* [n][2] whitened */
	size_t n;
	size_t *code;	 /* [n] nearest centroid */
	double *sums;	 /* [k][2] */
	size_t *members; /* [k] */
	struct ut_pcg *rng;
};

/* Nearest centroid of every point; returns the mean distance. */
static double assign(struct kmeans_work *w, const double *book, size_t k)
{
	double total = 0.0;
	for (size_t i = 0; i < w->n; i++) {
		const double *p = w->points + 2 * i;
		double best = DBL_MAX;
		for (size_t c = 0; c < k; c++) {
			double dx = p[0] - book[2 * c], dy = p[1] - book[2 * c + 1];
			double d2 = dx * dx + dy * dy;
			if (d2 < best) {
				best = d2;
				w->code[i] = c;
			}
		}
		total += sqrt(best);
	}
	return total / (double)w->n;
}

/* Move centroids to their members' means, dropping empty ones; new k. */
static size_t update_means(struct kmeans_work *w, double *book, size_t k)
{
	memset(w->sums, 0, 2 * k * sizeof(*w->sums));
	memset(w->members, 0, k * sizeof(*w->members));
	for (size_t i = 0; i < w->n; i++) {
		size_t c = w->code[i];
		w->sums[2 * c] += w->points[2 * i];
		w->sums[2 * c + 1] += w->points[2 * i + 1];
		w->members[c]++;
	}
	size_t kept = 0;
	for (size_t c = 0; c < k; c++) {
		if (w->members[c] == 0)
			continue;
		book[2 * kept] = w->sums[2 * c] / (double)w->members[c];
		book[2 * kept + 1] = w->sums[2 * c + 1] / (double)w->members[c];
		kept++;
	}
	return kept;
}

/*
 * One start: k distinct points at random, Lloyd's iterations until the mean
 * distance falls by thresh or less. Returns the centroid count left in book
 * and the mean distance of the last assignment in *distortion.
 */
static size_t kmeans_once(struct kmeans_work *w, size_t k, double *book, size_t *order,
			  double *distortion)
{
	for (size_t i = 0; i < w->n; i++)
		order[i] = i;
	for (size_t c = 0; c < k; c++) { /* partial Fisher-Yates */
		size_t pick = c + ut_pcg_below(w->rng, (uint32_t)(w->n - c));
		size_t swap = order[c];
		order[c] = order[pick];
		order[pick] = swap;
		book[2 * c] = w->points[2 * order[c]];
		book[2 * c + 1] = w->points[2 * order[c] + 1];
	}
	double previous = INFINITY, current = INFINITY;
	double change = INFINITY;
	while (change > KMEANS_THRESH && k > 0) {
		current = assign(w, book, k);
		k = update_means(w, book, k);
		change = previous - current;
		previous = current;
	}
	*distortion = current;
	return k;
}

/*
 * k centroids (in pixels) of the labels into book, best of KMEANS_STARTS
 * starts; returns how many the best start kept (< k means failure), or
 * (size_t)-1 out of memory.
 */
static size_t kmeans_pixels(const float *wh, size_t n, size_t k, struct ut_pcg *rng, double *book)
{
	double mean[2] = {0, 0}, sigma[2] = {0, 0};
	for (size_t i = 0; i < n; i++)
		for (int d = 0; d < 2; d++)
			mean[d] += wh[2 * i + d];
	for (int d = 0; d < 2; d++)
		mean[d] /= (double)n;
	for (size_t i = 0; i < n; i++)
		for (int d = 0; d < 2; d++)
			sigma[d] += (wh[2 * i + d] - mean[d]) * (wh[2 * i + d] - mean[d]);
	for (int d = 0; d < 2; d++) /* numpy std: population, ddof 0 */
		sigma[d] = sqrt(sigma[d] / (double)n);
	if (!(sigma[0] > 0) || !(sigma[1] > 0))
		return 0; /* scipy whitening would divide by zero: YOLOv5 falls back */

	double *points = malloc(2 * n * sizeof(*points));
	size_t *code = malloc(n * sizeof(*code));
	size_t *order = malloc(n * sizeof(*order));
	double *sums = malloc(2 * k * sizeof(*sums));
	size_t *members = malloc(k * sizeof(*members));
	double *trial = malloc(2 * k * sizeof(*trial));
	size_t best_k = (size_t)-1;
	if (points && code && order && sums && members && trial) {
		for (size_t i = 0; i < n; i++)
			for (int d = 0; d < 2; d++)
				points[2 * i + d] = wh[2 * i + d] / sigma[d];
		struct kmeans_work w = {points, n, code, sums, members, rng};
		double best = INFINITY;
		best_k = 0;
		for (int start = 0; start < KMEANS_STARTS; start++) {
			double distortion;
			size_t kept = kmeans_once(&w, k, trial, order, &distortion);
			if (distortion < best) {
				best = distortion;
				best_k = kept;
				memcpy(book, trial, 2 * kept * sizeof(*book));
			}
		}
		for (size_t c = 0; c < best_k; c++)
			for (int d = 0; d < 2; d++)
				book[2 * c + d] *= sigma[d];
	}
	free(points);
	free(code);
	free(order);
	free(sums);
	free(members);
	free(trial);
	return best_k;
}

static int compare_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* YOLOv5's fallback start: 2k sorted uniforms, paired, times imgsz. */
static void random_start(struct ut_pcg *rng, size_t k, int imgsz, double *book)
{
	for (size_t i = 0; i < 2 * k; i++)
		book[i] = ut_pcg_uniform(rng);
	qsort(book, 2 * k, sizeof(*book), compare_double);
	for (size_t i = 0; i < 2 * k; i++)
		book[i] *= imgsz;
}

/* Sort [k][2] anchors by area, small first (stable, as argsort ties do not matter). */
static void sort_by_area(double *book, size_t k)
{
	for (size_t i = 1; i < k; i++) {
		double w = book[2 * i], h = book[2 * i + 1];
		size_t j = i;
		while (j > 0 && book[2 * (j - 1)] * book[2 * (j - 1) + 1] > w * h) {
			book[2 * j] = book[2 * (j - 1)];
			book[2 * j + 1] = book[2 * (j - 1) + 1];
			j--;
		}
		book[2 * j] = w;
		book[2 * j + 1] = h;
	}
}

static double fitness_of(const float *wh, size_t n, const double *book, float *scratch, size_t k,
			 double thr)
{
	for (size_t i = 0; i < 2 * k; i++)
		scratch[i] = (float)book[i];
	return tr_anchor_fitness(wh, n, scratch, k, thr);
}

/* One mutation factor per size; redrawn until at least one differs from 1. */
static void draw_mutation(struct ut_pcg *rng, size_t count, double *factor)
{
	int changed = 0;
	while (!changed) {
		for (size_t i = 0; i < count; i++)
			factor[i] = ut_pcg_uniform(rng) < MUTATION_PROB;
		double amount = ut_pcg_uniform(rng);
		for (size_t i = 0; i < count; i++) {
			double normal = ut_pcg_normal(rng);
			double v = factor[i] * amount * normal * MUTATION_SIGMA + 1.0;
			factor[i] = fmin(fmax(v, 0.3), 3.0);
			changed |= factor[i] != 1.0;
		}
	}
}

/* The genetic evolution of book ([k][2] pixels) over kept labels wh. */
static int evolve(const struct tr_anchor_kmeans_params *p, const float *wh, size_t n, double *book,
		  double *fitness)
{
	size_t count = 2 * p->n_anchors;
	double *factor = malloc(count * sizeof(*factor));
	double *mutant = malloc(count * sizeof(*mutant));
	float *scratch = malloc(count * sizeof(*scratch));
	if (!factor || !mutant || !scratch) {
		free(factor);
		free(mutant);
		free(scratch);
		return -1;
	}
	double best = fitness_of(wh, n, book, scratch, p->n_anchors, p->thr);
	if (p->fitness_history)
		p->fitness_history[0] = best;
	for (int generation = 0; generation < p->generations; generation++) {
		draw_mutation(p->rng, count, factor);
		for (size_t i = 0; i < count; i++)
			mutant[i] = fmax(book[i] * factor[i], 2.0);
		double candidate = fitness_of(wh, n, mutant, scratch, p->n_anchors, p->thr);
		if (candidate > best) {
			best = candidate;
			memcpy(book, mutant, count * sizeof(*book));
		}
		if (p->fitness_history)
			p->fitness_history[generation + 1] = best;
	}
	*fitness = best;
	free(factor);
	free(mutant);
	free(scratch);
	return 0;
}

/* Labels with a side of 2 pixels or more, into kept; counts into result. */
static size_t filter_labels(const struct tr_anchor_kmeans_params *p, float *kept,
			    struct tr_anchor_kmeans_result *result)
{
	size_t n = 0;
	result->n_small = 0;
	for (size_t j = 0; j < p->n_labels; j++) {
		const float *wh = p->wh0 + 2 * j;
		result->n_small += wh[0] < 3.0f || wh[1] < 3.0f;
		if (wh[0] >= 2.0f || wh[1] >= 2.0f) {
			kept[2 * n] = wh[0];
			kept[2 * n + 1] = wh[1];
			n++;
		}
	}
	result->n_kept = n;
	return n;
}

int tr_anchor_kmeans(const struct tr_anchor_kmeans_params *params, float *anchors,
		     struct tr_anchor_kmeans_result *result, struct ut_err *err)
{
	size_t k = params->n_anchors;
	if (k == 0)
		return ut_err_set(err, "autoanchor: no anchors asked for");
	float *wh = malloc((params->n_labels ? params->n_labels : 1) * 2 * sizeof(*wh));
	double *book = malloc(2 * k * sizeof(*book));
	if (!wh || !book) {
		free(wh);
		free(book);
		return ut_err_set(err, "autoanchor: out of memory for %zu labels",
				  params->n_labels);
	}
	int rc = 0;
	size_t n = filter_labels(params, wh, result);
	if (result->n_small)
		ut_log(UT_LOG_WARN,
		       "AutoAnchor: WARNING extremely small objects found: %zu of %zu labels are "
		       "<3 pixels in size",
		       result->n_small, params->n_labels);
	if (n == 0) {
		rc = ut_err_set(err, "autoanchor: no label of 2 pixels or more among %zu",
				params->n_labels);
		goto done;
	}
	ut_log(UT_LOG_INFO, "AutoAnchor: Running kmeans for %zu anchors on %zu points...", k, n);
	size_t got = k <= n ? kmeans_pixels(wh, n, k, params->rng, book) : 0;
	if (got == (size_t)-1) {
		rc = ut_err_set(err, "autoanchor: out of memory for k-means on %zu labels", n);
		goto done;
	}
	result->random_start = got != k;
	if (result->random_start) {
		ut_log(UT_LOG_WARN, "AutoAnchor: switching strategies from kmeans to random init");
		random_start(params->rng, k, params->imgsz, book);
	}
	sort_by_area(book, k);
	if (evolve(params, wh, n, book, &result->fitness) != 0) {
		rc = ut_err_set(err, "autoanchor: out of memory for the anchor evolution");
		goto done;
	}
	sort_by_area(book, k);
	for (size_t i = 0; i < 2 * k; i++)
		anchors[i] = (float)book[i];
done:
	free(wh);
	free(book);
	return rc;
}

/* check_anchor_order: reverse the levels if their mean areas run against the strides. */
static int order_by_stride(float *anchors, int n_levels, int per_level, const double *strides)
{
	size_t level_size = 2 * (size_t)per_level;
	double first = 0.0, last = 0.0;
	for (int a = 0; a < per_level; a++) {
		const float *lo = anchors + 2 * a;
		const float *hi = anchors + (size_t)(n_levels - 1) * level_size + 2 * a;
		first += (double)(lo[0] * lo[1]);
		last += (double)(hi[0] * hi[1]);
	}
	double area_delta = (last - first) / per_level;
	double stride_delta = strides[n_levels - 1] - strides[0];
	if (area_delta == 0.0 || (area_delta > 0) == (stride_delta > 0))
		return 0;
	for (int lo = 0, hi = n_levels - 1; lo < hi; lo++, hi--)
		for (size_t i = 0; i < level_size; i++) {
			float swap = anchors[(size_t)lo * level_size + i];
			anchors[(size_t)lo * level_size + i] = anchors[(size_t)hi * level_size + i];
			anchors[(size_t)hi * level_size + i] = swap;
		}
	ut_log(UT_LOG_INFO, "AutoAnchor: Reversing anchor order");
	return 1;
}

/* Label sizes with and without the scale draw; both malloc'ed. */
static int label_sizes(const struct tr_anchor_auto_params *p, size_t n, float **scaled,
		       float **unscaled, struct ut_err *err)
{
	size_t n_images = p->dataset->n_images;
	*scaled = malloc((n ? n : 1) * 2 * sizeof(**scaled));
	*unscaled = malloc((n ? n : 1) * 2 * sizeof(**unscaled));
	double *drawn = p->scale ? NULL : malloc((n_images ? n_images : 1) * sizeof(*drawn));
	if (!*scaled || !*unscaled || (!p->scale && !drawn)) {
		free(drawn);
		return ut_err_set(err, "autoanchor: out of memory for %zu labels", n);
	}
	if (drawn)
		tr_anchor_draw_scale(p->rng, n_images, drawn);
	tr_anchor_label_wh(p->dataset, p->imgsz, p->scale ? p->scale : drawn, *scaled);
	tr_anchor_label_wh(p->dataset, p->imgsz, NULL, *unscaled);
	free(drawn);
	return 0;
}

int tr_anchor_autoanchor(const struct tr_anchor_auto_params *params, float *anchors_px,
			 struct tr_anchor_auto_result *result, struct ut_err *err)
{
	memset(result, 0, sizeof(*result));
	if (params->n_levels < 1 || params->per_level < 1)
		return ut_err_set(err, "autoanchor: %d levels of %d anchors", params->n_levels,
				  params->per_level);
	size_t k = (size_t)params->n_levels * (size_t)params->per_level;
	size_t n = tr_anchor_label_total(params->dataset);
	float *wh = NULL, *wh0 = NULL, *evolved = NULL;
	int rc = label_sizes(params, n, &wh, &wh0, err);
	if (rc != 0)
		goto done;
	tr_anchor_check(wh, n, anchors_px, k, params->thr, NULL, &result->before);
	ut_log(UT_LOG_INFO, "AutoAnchor: %.2f anchors/target, %.3f Best Possible Recall (BPR). %s",
	       result->before.aat, result->before.bpr,
	       result->before.bpr > RECOMPUTE_BPR ? "Current anchors are a good fit to dataset"
						  : "Anchors are a poor fit to dataset, attempting "
						    "to improve...");
	if (result->before.bpr > RECOMPUTE_BPR)
		goto done;
	result->kmeans_ran = 1;
	evolved = malloc(2 * k * sizeof(*evolved));
	if (evolved == NULL) {
		rc = ut_err_set(err, "autoanchor: out of memory");
		goto done;
	}
	struct tr_anchor_kmeans_params kp = {
	    wh0, n, k, params->imgsz, params->thr, params->generations, params->rng, NULL};
	rc = tr_anchor_kmeans(&kp, evolved, &result->kmeans, err);
	if (rc != 0)
		goto done;
	struct tr_anchor_fit after;
	tr_anchor_check(wh, n, evolved, k, params->thr, NULL, &after);
	result->new_bpr = after.bpr;
	if (after.bpr > result->before.bpr) {
		memcpy(anchors_px, evolved, 2 * k * sizeof(*evolved));
		result->replaced = 1;
		result->reversed = order_by_stride(anchors_px, params->n_levels, params->per_level,
						   params->strides);
		ut_log(UT_LOG_INFO, "AutoAnchor: Done (optional: update model *.yaml to use these "
				    "anchors in the future)");
	} else {
		ut_log(UT_LOG_INFO, "AutoAnchor: Done (original anchors better than new anchors, "
				    "proceeding with original anchors)");
	}
done:
	free(wh);
	free(wh0);
	free(evolved);
	return rc;
}

int tr_anchor_count(double hyp_anchors, int yaml_per_level)
{
	if (!(hyp_anchors > 0)) /* 0, negative, NaN: Python's `if anchors:` or absent */
		return yaml_per_level;
	if (hyp_anchors > 1e6)
		hyp_anchors = 1e6;
	int count = (int)nearbyint(hyp_anchors); /* default rounding: half to even */
	return count < 1 ? 1 : count;
}

void tr_anchor_placeholder(int n_levels, int per_level, float *anchors_px)
{
	for (int level = 0; level < n_levels; level++)
		for (int i = 0; i < 2 * per_level; i++)
			anchors_px[(size_t)level * 2 * per_level + (size_t)i] = (float)i;
}
