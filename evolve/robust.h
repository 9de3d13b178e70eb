/*
 * robust.h - `--algorithm robust` (issue 16, first part): breeding for
 * noisy fitness. YOLOv5's evolution ranks single runs, so a lucky run stays
 * a parent and becomes the recommendation; its multiplicative mutation can
 * never move a key that is 0 in the base (mixup, degrees, ...). Here:
 *
 *  - a candidate is its hyp with every evaluation of it: its original row
 *    and the rows that re-evaluate it (trained again with another trainer
 *    seed, rows of their own linked by `reevaluates`), ranked by the mean
 *    fitness of its done evaluations;
 *  - before breeding, the first of the best `reevaluate_top` candidates
 *    with fewer than `evaluations` evaluations (done, or bred and not yet
 *    in the horizon) is re-evaluated instead;
 *  - otherwise the parent is drawn from the best `top` candidates by mean
 *    (YOLOv5's weights, mean - min + 1e-6) and mutated in normalised
 *    coordinates u = (v - lower) / (upper - lower) (lr0 on a log10 scale):
 *    each key with gain > 0 moves with probability mutation_prob (at least
 *    one), u += N(0, 1) * sigma * min(gain, 1), clipped to [0, 1], so a key
 *    at 0 can leave it (halving: sometimes with a longer step, big_sigma);
 *  - every generation has its own trainer seed (ev_robust_seed);
 *  - optionally (cov_prob > 0; `--algorithm halving` sets it, see
 *    ev_halving_defaults) a covariance-shaped step drawn from the spread of
 *    the best candidates instead of the key-by-key one.
 * `--algorithm halving` is this breeding with `--prune asha` (run.c).
 *
 * The same determinism rule as YOLOv5's breeding: generation `next` sees
 * the results of generations 0 .. horizon only (all finished), and the
 * hyps of the generations bred after the horizon (not their results).
 */
#ifndef EV_ROBUST_H
#define EV_ROBUST_H

#include <stddef.h>
#include <stdint.h>

#include "meta.h"
#include "store.h"

struct ev_robust_params {
	int top;	      /* parents come from the best `top` candidates by mean (5) */
	int reevaluate_top;   /* the best this many are re-evaluated ... (1) */
	int evaluations;      /* ... until they have this many evaluations (2) */
	double mutation_prob; /* probability that a key moves (0.5) */
	double sigma;	      /* step in normalised units (0.1) */
	/*
	 * Long steps (big_prob 0: never): with probability big_prob a child's
	 * key-by-key step has scale big_sigma instead of sigma, so a search
	 * that refines around its best also leaves for another region now
	 * and then.
	 */
	double big_prob, big_sigma;
	/*
	 * Covariance-shaped steps (0: never): with probability cov_prob, once
	 * cov_after candidates exist, the step is drawn from the covariance of
	 * the best cov_elite fraction of them instead of key by key.
	 */
	double cov_prob, cov_elite;
	int cov_after;
	/*
	 * Screening (screen 0 or 1: never): a Gaussian-process model (gp.h) of
	 * the latest model_points done evaluations rates `screen` proposals
	 * by mean + screen_kappa sd and the best is bred.
	 */
	int screen;
	double screen_kappa;
	int model_points;
	int relevance; /* the model weighs keys by relevance (gp.h) */
};

void ev_robust_defaults(struct ev_robust_params *params);

/*
 * `--algorithm halving`'s changes to robust's parameters (the caller set
 * them first): covariance steps half the time, from the best fifth, after
 * 20 candidates; a quarter of the key-by-key steps long, scale 0.3
 * (bench/search/README.md).
 */
void ev_halving_defaults(struct ev_robust_params *params);

/*
 * `--algorithm guided`'s parameters (the caller set robust's first):
 * halving's proposals (covariance and long steps), no pruning, and each
 * child the best of 16 proposals by the model's mean + sd (gp.h), the
 * model of the latest 100 evaluations (bench/search/README.md).
 */
void ev_guided_defaults(struct ev_robust_params *params);

/* The trainer seed of a generation: its own PCG stream's first draw, 31 bits. */
uint64_t ev_robust_seed(uint64_t seed, long generation);

/*
 * Breed generation `next` (== ngens) of the evolution seeded `seed`:
 * gens[j].generation == j for j < ngens, and every generation 0 .. horizon
 * is finished. Fills out->hyp, out->parent (-1: the base),
 * out->reevaluation and out->reevaluates, out->seed; nothing else.
 * Returns -1 (with err) if no key can mutate or memory runs out.
 */
int ev_robust_next(const struct ev_robust_params *params, const struct meta_table *table,
		   const struct meta_hyp *base, const struct st_generation *gens, size_t ngens,
		   long horizon, uint64_t seed, struct st_generation *out, struct ut_err *err);

#endif
