/*
 * robust.c - `--algorithm robust`: re-evaluation of promising candidates,
 * ranking by mean fitness, mutation in normalised coordinates (robust.h).
 */
#include "robust.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "breed.h"
#include "gp.h"
#include "pcg.h"

void ev_robust_defaults(struct ev_robust_params *params)
{
	params->top = 5;
	/*
	 * Measured on bench/search (50 generations x 10 epochs, 20 seeds): the
	 * best one up to 2 evaluations beat the best 3 up to 3, and 1 up to 3,
	 * on every objective; steps of 0.05 or 0.2, mutation_prob 0.3 and
	 * difference (DE) steps did worse (bench/search/README.md).
	 */
	params->reevaluate_top = 1;
	params->evaluations = 2;
	params->mutation_prob = 0.5;
	params->sigma = 0.1;
	params->big_prob = 0;
	params->big_sigma = 0.3;
	params->cov_prob = 0;
	params->cov_elite = 0.2;
	params->cov_after = 20;
	params->screen = 0;
	params->screen_kappa = 1.0;
	params->model_points = 100;
	params->relevance = 0;
}

void ev_halving_defaults(struct ev_robust_params *params)
{
	/* measured with successive halving on bench/search: it lifts ridge and modes past YOLOv5's
	 */
	params->cov_prob = 0.5;
	/*
	 * Measured on bench/search (seeds 21-60, 1000 epochs): a quarter of the
	 * steps at 0.3 lifted modes (the far mode found more often), bowl and
	 * ridge; with successive halving a long step that lands badly costs
	 * only its first rung.
	 */
	params->big_prob = 0.25;
}

void ev_guided_defaults(struct ev_robust_params *params)
{
	ev_halving_defaults(params);
	/*
	 * Measured on bench/search (40 seeds): no pruning (early epochs rank
	 * real learning curves backwards), the model choosing among 16
	 * proposals; one length scale, as a weight per key cost the real-curve
	 * surrogate (bench/search/README.md, "--algorithm guided").
	 */
	params->screen = 16; /* kappa 1, 100 points, one length scale: robust's defaults */
}

uint64_t ev_robust_seed(uint64_t seed, long generation)
{
	struct ut_pcg rng;
	ut_pcg_stream(&rng, seed, generation, UT_PCG_TRAIN_SEED);
	return ut_pcg_next(&rng) & 0x7fffffffu;
}

/* A candidate: an original generation and the mean of its done evaluations. */
struct candidate {
	long generation;
	long evaluations; /* done */
	long planned;	  /* bred after the horizon, results not yet usable */
	double sum, mean;
};

static int by_mean_desc(const void *a, const void *b)
{
	const struct candidate *x = a, *y = b;
	if (x->mean != y->mean)
		return x->mean > y->mean ? -1 : 1;
	return (x->generation > y->generation) - (x->generation < y->generation);
}

static int usable(const struct st_generation *g)
{
	return g->status == ST_DONE && g->has_results && isfinite(g->fitness);
}

/*
 * The candidates with at least one done evaluation among 0 .. horizon,
 * best mean first; *n of them. Returns NULL on out of memory.
 */
static struct candidate *rank(const struct st_generation *gens, size_t ngens, long horizon,
			      size_t *n)
{
	struct candidate *all = calloc(ngens ? ngens : 1, sizeof(*all));
	if (all == NULL)
		return NULL;
	for (size_t j = 0; j < ngens; j++)
		all[j].generation = (long)j;
	for (size_t j = 0; j < ngens; j++) {
		const struct st_generation *g = &gens[j];
		long original = g->reevaluation ? g->reevaluates : (long)j;
		if (original < 0 || (size_t)original >= ngens)
			continue;
		if ((long)j > horizon) {
			all[original].planned += g->reevaluation;
			continue;
		}
		if (usable(g)) {
			all[original].sum += g->fitness;
			all[original].evaluations++;
		}
	}
	*n = 0;
	for (size_t j = 0; j < ngens; j++) {
		/* an original that failed or was pruned is no candidate, whatever its reruns */
		if (all[j].evaluations == 0 || gens[j].reevaluation || !usable(&gens[j]))
			continue;
		all[j].mean = all[j].sum / (double)all[j].evaluations;
		all[(*n)++] = all[j];
	}
	qsort(all, *n, sizeof(*all), by_mean_desc);
	return all;
}

/* Normalised coordinate of key k and back (lr0, with a positive lower bound, on a log scale). */
static int log_scale(const struct meta_table *table, int k)
{
	return k == META_lr0 && table->k[k].lower > 0;
}

static double to_unit(const struct meta_table *table, int k, double v)
{
	const struct meta_bound *b = &table->k[k];
	if (!(b->upper > b->lower))
		return 0;
	if (log_scale(table, k))
		return (log(fmax(v, b->lower)) - log(b->lower)) / (log(b->upper) - log(b->lower));
	return (v - b->lower) / (b->upper - b->lower);
}

static double from_unit(const struct meta_table *table, int k, double u)
{
	const struct meta_bound *b = &table->k[k];
	if (log_scale(table, k))
		return exp(log(b->lower) + u * (log(b->upper) - log(b->lower)));
	return b->lower + u * (b->upper - b->lower);
}

/* The keys that can move (gain > 0, upper > lower) in the table's space; their count. */
static int movable_keys(const struct meta_table *table, int movable[META_ALL])
{
	const int *keys;
	int count = meta_space_keys(table->space, &keys), n = 0;
	for (int i = 0; i < count; i++)
		if (table->k[keys[i]].gain > 0 && table->k[keys[i]].upper > table->k[keys[i]].lower)
			movable[n++] = keys[i];
	return n;
}

/* The normalised coordinates u[0 .. n) of hyp's movable keys. */
static void unit_coords(const struct meta_table *table, const int *movable, int n,
			const struct meta_hyp *hyp, double *u)
{
	for (int i = 0; i < n; i++)
		u[i] = to_unit(table, movable[i], hyp->v[movable[i]]);
}

/*
 * A covariance-shaped step: the child is the parent plus L z, z ~ N(0, I),
 * L the Cholesky factor of the covariance of the best `elite` candidates'
 * normalised coordinates (plus (sigma / 4)^2 on the diagonal, so that no
 * direction closes), so it moves along the directions in which good
 * candidates differ (a curved valley's). Returns -1 (child untouched) if the
 * factor does not exist.
 */
static int covariance_step(const struct ev_robust_params *params, const struct meta_table *table,
			   struct ut_pcg *rng, const struct st_generation *gens,
			   const struct candidate *elite, size_t nelite,
			   const struct meta_hyp *parent, struct meta_hyp *child)
{
	int movable[META_ALL], n = movable_keys(table, movable);
	double mean[META_ALL] = {0}, cov[META_ALL * META_ALL] = {0}, l[META_ALL * META_ALL];
	double u[EV_TOP_MAX * 8][META_ALL];
	if (nelite > EV_TOP_MAX * 8)
		nelite = EV_TOP_MAX * 8;
	for (size_t e = 0; e < nelite; e++) {
		unit_coords(table, movable, n, &gens[elite[e].generation].hyp, u[e]);
		for (int i = 0; i < n; i++)
			mean[i] += u[e][i] / (double)nelite;
	}
	for (size_t e = 0; e < nelite; e++)
		for (int i = 0; i < n; i++)
			for (int j = 0; j <= i; j++)
				cov[i * n + j] += (u[e][i] - mean[i]) * (u[e][j] - mean[j]) /
						  (double)(nelite - 1);
	for (int i = 0; i < n; i++) {
		cov[i * n + i] += 0.0625 * params->sigma * params->sigma;
		for (int j = 0; j < i; j++)
			cov[j * n + i] = cov[i * n + j];
	}
	if (ev_cholesky(cov, n, l) != 0)
		return -1;
	double z[META_ALL];
	for (int i = 0; i < n; i++)
		z[i] = ut_pcg_normal(rng);
	*child = *parent;
	for (int i = 0; i < n; i++) {
		double step = 0;
		for (int j = 0; j <= i; j++)
			step += l[i * n + j] * z[j];
		int k = movable[i];
		double x = fmin(1.0, fmax(0.0, to_unit(table, k, parent->v[k]) + step));
		child->v[k] = from_unit(table, k, x);
	}
	ev_constrain(table, child);
	return 0;
}

static void mutate(const struct ev_robust_params *params, const struct meta_table *table,
		   struct ut_pcg *rng, const struct meta_hyp *parent, struct meta_hyp *child)
{
	int movable[META_ALL], nmovable = movable_keys(table, movable), moves[META_ALL] = {0},
			       any = 0;
	for (int i = 0; i < nmovable; i++)
		any |= moves[i] = ut_pcg_uniform(rng) < params->mutation_prob;
	if (!any)
		moves[ut_pcg_below(rng, (uint32_t)nmovable)] = 1;
	*child = *parent;
	double sigma = params->sigma;
	if (params->big_prob > 0 && ut_pcg_uniform(rng) < params->big_prob)
		sigma = params->big_sigma;
	for (int i = 0; i < nmovable; i++) {
		int k = movable[i];
		double step = ut_pcg_normal(rng) * sigma * fmin(table->k[k].gain, 1.0);
		if (!moves[i])
			continue;
		double u = fmin(1.0, fmax(0.0, to_unit(table, k, parent->v[k]) + step));
		child->v[k] = from_unit(table, k, u);
	}
	ev_constrain(table, child);
}

/*
 * One proposal: a parent drawn from the best `top` by mean (YOLOv5's
 * weights), then a covariance step (with probability cov_prob, once there
 * are enough candidates) or a key-by-key mutation. Sets out->hyp and
 * out->parent.
 */
static void propose(const struct ev_robust_params *params, const struct meta_table *table,
		    const struct meta_hyp *base, const struct st_generation *gens,
		    const struct candidate *ranked, size_t n, struct ut_pcg *rng,
		    struct st_generation *out)
{
	struct meta_hyp parent = *base;
	out->parent = -1;
	if (n > 0) {
		size_t top = n < (size_t)params->top ? n : (size_t)params->top;
		double weights[EV_TOP_MAX];
		for (size_t i = 0; i < top; i++)
			weights[i] = ranked[i].mean - ranked[top - 1].mean + 1e-6;
		size_t pick = ut_pcg_choice(rng, weights, top);
		out->parent = ranked[pick].generation;
		parent = gens[out->parent].hyp;
	}
	size_t elite = (size_t)(params->cov_elite * (double)n);
	if (params->cov_prob > 0 && n >= (size_t)params->cov_after && elite >= 3 &&
	    ut_pcg_uniform(rng) < params->cov_prob &&
	    covariance_step(params, table, rng, gens, ranked, elite, &parent, &out->hyp) == 0)
		return;
	mutate(params, table, rng, &parent, &out->hyp);
}

/*
 * Screening: the model (gp.h) of the latest model_points done evaluations
 * among 0 .. horizon (originals and re-evaluations alike, each a noisy run)
 * rates `screen` proposals by mean + screen_kappa sd; the best is bred
 * (the first on a tie). Returns 1 when it bred, 0 when there is no model
 * yet (fewer than 10 evaluations, or all equal), -1 with err on out of
 * memory.
 */
static int screened(const struct ev_robust_params *params, const struct meta_table *table,
		    const struct meta_hyp *base, const struct st_generation *gens, size_t ngens,
		    long horizon, const struct candidate *ranked, size_t n, struct ut_pcg *rng,
		    struct st_generation *out, struct ut_err *err)
{
	int movable[META_ALL], d = movable_keys(table, movable), count = 0;
	long last = horizon < (long)ngens - 1 ? horizon : (long)ngens - 1;
	for (long j = last; j >= 0 && count < params->model_points; j--)
		count += usable(&gens[j]);
	if (count < 10)
		return 0;
	double *x = malloc((size_t)count * (size_t)d * sizeof(*x)),
	       *y = malloc((size_t)count * sizeof(*y));
	if (x == NULL || y == NULL) {
		free(x);
		free(y);
		return ut_err_set(err, "out of memory");
	}
	int i = 0;
	for (long j = last; j >= 0 && i < count; j--) {
		if (!usable(&gens[j]))
			continue;
		unit_coords(table, movable, d, &gens[j].hyp, x + i * d);
		y[i++] = gens[j].fitness;
	}
	struct ev_gp gp;
	int rc = ev_gp_fit(&gp, x, y, count, d, params->relevance, err);
	free(x);
	free(y);
	if (rc <= 0) {
		ev_gp_free(&gp);
		return rc;
	}
	double best = -INFINITY, u[META_ALL];
	for (int c = 0; c < params->screen; c++) {
		struct st_generation proposal = *out;
		propose(params, table, base, gens, ranked, n, rng, &proposal);
		unit_coords(table, movable, d, &proposal.hyp, u);
		double mean, sd;
		ev_gp_predict(&gp, u, &mean, &sd);
		if (mean + params->screen_kappa * sd > best) {
			best = mean + params->screen_kappa * sd;
			out->hyp = proposal.hyp;
			out->parent = proposal.parent;
		}
	}
	ev_gp_free(&gp);
	return 1;
}

int ev_robust_next(const struct ev_robust_params *params, const struct meta_table *table,
		   const struct meta_hyp *base, const struct st_generation *gens, size_t ngens,
		   long horizon, uint64_t seed, struct st_generation *out, struct ut_err *err)
{
	long next = (long)ngens;
	out->parent = -1;
	out->reevaluation = 0;
	out->reevaluates = 0;
	out->seed = ev_robust_seed(seed, next);
	out->hyp = *base;
	if (next == 0)
		return 0;
	int movable = 0;
	for (int k = 0; k < META_ALL; k++)
		movable |= table->k[k].gain > 0 && table->k[k].upper > table->k[k].lower;
	if (!movable)
		return ut_err_set(err, "no hyperparameter can mutate: every gain is 0");
	size_t n;
	struct candidate *ranked = rank(gens, ngens, horizon, &n);
	if (ranked == NULL)
		return ut_err_set(err, "out of memory");
	for (size_t r = 0; r < n && r < (size_t)params->reevaluate_top; r++) {
		if (ranked[r].evaluations + ranked[r].planned < params->evaluations) {
			out->reevaluation = 1;
			out->reevaluates = ranked[r].generation;
			out->hyp = gens[ranked[r].generation].hyp;
			free(ranked);
			return 0;
		}
	}
	struct ut_pcg rng;
	ut_pcg_stream(&rng, seed, next, UT_PCG_BREED);
	int rc = params->screen > 1 ? screened(params, table, base, gens, ngens, horizon, ranked, n,
					       &rng, out, err)
				    : 0;
	if (rc == 0)
		propose(params, table, base, gens, ranked, n, &rng, out);
	free(ranked);
	return rc < 0 ? -1 : 0;
}
