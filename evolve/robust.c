/*
 * robust.c - `--algorithm robust`: re-evaluation of promising candidates,
 * ranking by mean fitness, mutation in normalised coordinates (robust.h).
 */
#include "robust.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "breed.h"
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

static void mutate(const struct ev_robust_params *params, const struct meta_table *table,
		   struct ut_pcg *rng, const struct meta_hyp *parent, struct meta_hyp *child)
{
	const int *keys;
	int count = meta_space_keys(table->space, &keys);
	int movable[META_ALL], nmovable = 0, moves[META_ALL] = {0}, any = 0;
	for (int i = 0; i < count; i++)
		if (table->k[keys[i]].gain > 0 && table->k[keys[i]].upper > table->k[keys[i]].lower)
			movable[nmovable++] = keys[i];
	for (int i = 0; i < nmovable; i++)
		any |= moves[i] = ut_pcg_uniform(rng) < params->mutation_prob;
	if (!any)
		moves[ut_pcg_below(rng, (uint32_t)nmovable)] = 1;
	*child = *parent;
	for (int i = 0; i < nmovable; i++) {
		int k = movable[i];
		double step = ut_pcg_normal(rng) * params->sigma * fmin(table->k[k].gain, 1.0);
		if (!moves[i])
			continue;
		double u = fmin(1.0, fmax(0.0, to_unit(table, k, parent->v[k]) + step));
		child->v[k] = from_unit(table, k, u);
	}
	ev_constrain(table, child);
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
	struct meta_hyp parent = *base;
	if (n > 0) {
		size_t top = n < (size_t)params->top ? n : (size_t)params->top;
		double weights[EV_TOP_MAX];
		for (size_t i = 0; i < top; i++)
			weights[i] = ranked[i].mean - ranked[top - 1].mean + 1e-6;
		size_t pick = ut_pcg_choice(&rng, weights, top);
		out->parent = ranked[pick].generation;
		parent = gens[out->parent].hyp;
	}
	free(ranked);
	mutate(params, table, &rng, &parent, &out->hyp);
	return 0;
}
