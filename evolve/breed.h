/*
 * breed.h - YOLOv5 v7.0's hyperparameter breeding, made reproducible.
 *
 * Generation 0 is the base hyp unchanged. A later generation takes the top
 * n = min(top, done) finished candidates by fitness, picks a parent
 * (`single`: weighted random choice with w = f - min(f) + 1e-6; `weighted`:
 * the w-weighted mean), and mutates every key:
 *   v = (gain * (U < mp) * N(0,1) * U1 * sigma + 1).clip(0.3, 3.0)
 * redrawn until some v != 1; child = parent * v, clamped to [lower, upper]
 * and rounded to 5 decimals. With no finished candidate yet the base hyp is
 * mutated. All draws come from the generation's own PCG stream.
 */
#ifndef EV_BREED_H
#define EV_BREED_H

#include <stddef.h>
#include <stdint.h>

#include "meta.h"
#include "pcg.h"

enum ev_parent { EV_PARENT_SINGLE, EV_PARENT_WEIGHTED };

#define EV_TOP_MAX 1000

struct ev_breed_opts {
	enum ev_parent parent;
	int top;	      /* how many of the best may be parents (5), <= EV_TOP_MAX */
	double mutation_prob; /* mp, probability that a key mutates (0.8) */
	double sigma;	      /* s, mutation scale (0.2) */
};

/* A finished candidate that may become a parent. */
struct ev_scored {
	long generation;
	double fitness;
	struct meta_hyp hyp;
};

/* YOLOv5's fitness: 0.1 * mAP@.5 + 0.9 * mAP@.5:.95. */
double ev_fitness(double map50, double map);
/*
 * The fitness of a space: YOLOv5's above, or for Ultralytics what the
 * package's detection metrics call fitness (8.4.x: mAP@.5:.95 alone).
 */
double ev_space_fitness(enum meta_space space, double map50, double map);

/* Set the YOLOv5 defaults (single, 5, 0.8, 0.2). */
void ev_breed_opts_default(struct ev_breed_opts *opts);

/* Parse "single" / "weighted"; -1 if neither. */
int ev_parent_parse(const char *name, enum ev_parent *out);
const char *ev_parent_name(enum ev_parent parent);

/*
 * Breed generation `generation` of the evolution seeded `seed`. `pool` holds
 * the done candidates it may descend from (any order; sorted in place).
 * Writes the child and its parent generation (-1 for none: the base, or a
 * weighted mean's contributors, whose best member is reported instead).
 * Returns -1 (with err) if no key can mutate.
 */
int ev_breed(const struct ev_breed_opts *opts, const struct meta_table *table,
	     const struct meta_hyp *base, struct ev_scored *pool, size_t n, uint64_t seed,
	     long generation, struct meta_hyp *child, long *parent, struct ut_err *err);

/* Multiply-and-clip mutation factors for one generation (exposed for tests). */
void ev_mutation_factors(const struct ev_breed_opts *opts, const struct meta_table *table,
			 struct ut_pcg *rng, double v[META_ALL]);

/* Round every key to 5 decimals and clamp it to its bounds. */
void ev_constrain(const struct meta_table *table, struct meta_hyp *hyp);

#endif
