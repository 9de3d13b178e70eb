/*
 * breed.c - parent selection and mutation as YOLOv5 v7.0 does it (breed.h).
 */
#include "breed.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

double ev_fitness(double map50, double map)
{
	return 0.1 * map50 + 0.9 * map;
}

double ev_space_fitness(enum meta_space space, double map50, double map)
{
	/* Ultralytics' DetMetrics.fitness weighs [P, R, mAP50, mAP50-95] by [0, 0, 0, 1] */
	return space == META_SPACE_ULTRALYTICS ? map : ev_fitness(map50, map);
}

void ev_breed_opts_default(struct ev_breed_opts *opts)
{
	opts->parent = EV_PARENT_SINGLE;
	opts->top = 5;
	opts->mutation_prob = 0.8;
	opts->sigma = 0.2;
}

static const char *const parent_names[] = {"single", "weighted"};

int ev_parent_parse(const char *name, enum ev_parent *out)
{
	for (size_t i = 0; i < UT_ARRAY_LEN(parent_names); i++) {
		if (strcmp(name, parent_names[i]) == 0) {
			*out = (enum ev_parent)i;
			return 0;
		}
	}
	return -1;
}

const char *ev_parent_name(enum ev_parent parent)
{
	return parent_names[parent];
}

/* Best first; equal fitness keeps the older generation first. */
static int by_fitness_desc(const void *a, const void *b)
{
	const struct ev_scored *x = a, *y = b;
	if (x->fitness != y->fitness)
		return x->fitness > y->fitness ? -1 : 1;
	return (x->generation > y->generation) - (x->generation < y->generation);
}

void ev_mutation_factors(const struct ev_breed_opts *opts, const struct meta_table *table,
			 struct ut_pcg *rng, double v[META_ALL])
{
	const int *keys;
	int count = meta_space_keys(table->space, &keys);
	int changed = 0;
	for (int k = 0; k < META_ALL; k++)
		v[k] = 1.0;
	while (!changed) {
		/* same draw layout as YOLOv5: ng uniforms, ng normals, one scalar (ng: the space's
		 * keys) */
		double mutate[META_ALL], normal[META_ALL];
		for (int i = 0; i < count; i++)
			mutate[keys[i]] = ut_pcg_uniform(rng) < opts->mutation_prob ? 1.0 : 0.0;
		for (int i = 0; i < count; i++)
			normal[keys[i]] = ut_pcg_normal(rng);
		double scale = ut_pcg_uniform(rng);
		for (int i = 0; i < count; i++) {
			int k = keys[i];
			double factor =
			    table->k[k].gain * mutate[k] * normal[k] * scale * opts->sigma + 1.0;
			v[k] = fmin(fmax(factor, 0.3), 3.0);
			if (v[k] != 1.0)
				changed = 1;
		}
	}
}

void ev_constrain(const struct meta_table *table, struct meta_hyp *hyp)
{
	/*
	 * YOLOv5 clamps, then rounds; rounding first keeps a bound that is not
	 * a multiple of 1e-5 (possible with a user meta.yaml) from being
	 * crossed. With YOLOv5's own bounds both orders agree.
	 */
	const int *keys;
	int count = meta_space_keys(table->space, &keys);
	for (int i = 0; i < count; i++) {
		int k = keys[i];
		/* Ultralytics' integer keys (close_mosaic) round to whole numbers, as its Tuner
		 * does */
		double value = k == META_close_mosaic ? round(hyp->v[k]) : ut_round5(hyp->v[k]);
		value = fmax(value, table->k[k].lower);
		hyp->v[k] = fmin(value, table->k[k].upper);
	}
}

/* Choose the parent hyp among the top candidates of a sorted pool. */
static void select_parent(const struct ev_breed_opts *opts, struct ut_pcg *rng,
			  const struct ev_scored *top, size_t n, struct meta_hyp *parent_hyp,
			  long *parent)
{
	double weights[EV_TOP_MAX];
	double lowest = top[n - 1].fitness;
	for (size_t i = 0; i < n; i++)
		weights[i] = top[i].fitness - lowest + 1e-6;
	if (opts->parent == EV_PARENT_SINGLE || n == 1) {
		size_t pick = ut_pcg_choice(rng, weights, n);
		*parent_hyp = top[pick].hyp;
		*parent = top[pick].generation;
		return;
	}
	double total = 0;
	for (size_t i = 0; i < n; i++)
		total += weights[i];
	for (int k = 0; k < META_ALL; k++) {
		double sum = 0;
		for (size_t i = 0; i < n; i++)
			sum += top[i].hyp.v[k] * weights[i];
		parent_hyp->v[k] = sum / total;
	}
	*parent = top[0].generation;
}

int ev_breed(const struct ev_breed_opts *opts, const struct meta_table *table,
	     const struct meta_hyp *base, struct ev_scored *pool, size_t n, uint64_t seed,
	     long generation, struct meta_hyp *child, long *parent, struct ut_err *err)
{
	*parent = -1;
	if (generation == 0) {
		*child = *base;
		return 0;
	}
	int any_gain = 0;
	for (int k = 0; k < META_ALL; k++)
		if (table->k[k].gain != 0)
			any_gain = 1;
	if (!any_gain)
		return ut_err_set(err, "no hyperparameter can mutate: every gain is 0");
	if (!(opts->sigma > 0) || !(opts->mutation_prob > 0) || opts->top < 1)
		return ut_err_set(
		    err, "mutation needs sigma > 0, mutation probability > 0 and top >= 1");

	struct ut_pcg rng;
	ut_pcg_stream(&rng, seed, generation, UT_PCG_BREED);
	struct meta_hyp parent_hyp = *base;
	if (n > 0) {
		qsort(pool, n, sizeof(*pool), by_fitness_desc);
		size_t top = n < (size_t)opts->top ? n : (size_t)opts->top;
		select_parent(opts, &rng, pool, top, &parent_hyp, parent);
	}
	double v[META_ALL];
	ev_mutation_factors(opts, table, &rng, v);
	for (int k = 0; k < META_ALL; k++)
		child->v[k] = parent_hyp.v[k] * v[k];
	ev_constrain(table, child);
	return 0;
}
