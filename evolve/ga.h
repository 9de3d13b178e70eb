/*
 * ga.h - the population genetic algorithm of current YOLOv5
 * (`train.py --evolve_population`), as pure, reproducible operators.
 *
 * A run evaluates `populations` populations of `pop_size` individuals each.
 * Population 0 is the seed hyps (every *.yaml of a folder) followed by
 * random individuals, each gene uniform in [lower, upper]. Once population k
 * has been evaluated, population k + 1 is bred from it:
 *   1. selection: pop_size - elite tournaments, each over tournament_size
 *      distinct individuals drawn at random, won by the fittest; then the
 *      elite (the `elite` best individuals) joins the selected list;
 *   2. pop_size children, each from two parents drawn uniformly from the
 *      selected list: with probability crossover_rate a single-point
 *      crossover (genes before the point from parent 1, the rest from
 *      parent 2), else a copy of parent 1;
 *   3. mutation: each gene, with probability mutation_rate, moves by
 *      uniform(-step, step) and is clamped to [lower, upper].
 * Elite size, tournament size, crossover rate and mutation rate follow
 * YOLOv5's schedules in k / populations (ev_ga_elite_size and friends).
 *
 * The genes are the keys with gain > 0, in table order. This differs from
 * YOLOv5, whose GA has its own True/False flag per key and by default evolves
 * only the augmentation keys (hsv_h .. copy_paste): here every key whose gain
 * is > 0 evolves (in the default table, YOLOv5 v7.0's gains, all but
 * iou_t, fl_gamma, perspective and fliplr), and --evolve-keys restricts that
 * set. Keys with gain 0 keep the base hyp's value in every individual.
 *
 * Other differences from YOLOv5, all for determinism or robustness:
 *   - randomness is our PCG, one stream per population (ut_pcg_stream with
 *     UT_PCG_GA and the population index), so population k + 1 is a pure
 *     function of the evolution seed and population k and its fitness;
 *   - seed files are read in sorted name order (YOLOv5: os.listdir order);
 *   - a failed individual (fitness NaN) ranks below every other one;
 *   - the elite is exactly `elite` individuals, ties going to the lower
 *     index (YOLOv5 takes every individual whose fitness equals one of the
 *     `elite` best values, which can be more on ties);
 *   - with a single gene, crossover is skipped (YOLOv5 would fail drawing
 *     a point in 1..0);
 *   - parameters YOLOv5 would crash on (pop_size < 2, more seeds than
 *     pop_size, tournaments larger than the population) are errors.
 * Which score is the fitness is the caller's choice: YOLOv5's GA ranks by
 * mAP@0.5 alone (results[2]), not by ev_fitness.
 *
 * Values are not rounded (YOLOv5's GA does not round either).
 */
#ifndef EV_GA_H
#define EV_GA_H

#include <stddef.h>
#include <stdint.h>

#include "meta.h"
#include "pcg.h"

/* Largest population (draws of indices use 32-bit bounds). */
#define EV_GA_POP_MAX 1000000L

struct ev_ga_params {
	long pop_size;			     /* individuals per population (50) */
	long populations;		     /* populations the run evaluates (YOLOv5's --evolve) */
	double mutation_min, mutation_max;   /* per-gene mutation rate (0.01 .. 0.5) */
	double crossover_min, crossover_max; /* crossover probability (0.5 .. 1.0) */
	double step;			     /* mutation moves by uniform(-step, step) (0.1) */
	long elite_min, elite_max;	     /* elite size (2 .. 5) */
	long tournament_min, tournament_max; /* tournament size (2 .. 10) */
};

/* YOLOv5's GA constants; populations is set to 0 (the caller sets it). */
void ev_ga_defaults(struct ev_ga_params *p);

/*
 * Check params against the table: pop_size in 2 .. EV_GA_POP_MAX,
 * populations >= 1, rates in [0, 1] with min <= max, step finite and >= 0,
 * 0 <= elite_min <= elite_max <= pop_size, max(2, tournament_min) <=
 * pop_size and tournament_min <= tournament_max, and at least one key with
 * gain > 0. ev_ga_initial and ev_ga_next call it.
 */
int ev_ga_check(const struct ev_ga_params *p, const struct meta_table *table, struct ut_err *err);

/*
 * Schedules for population k of p->populations, exactly YOLOv5's
 * floating-point formulas (int() truncates toward zero):
 *   elite       = elite_min + int((elite_max - elite_min) * (k / populations))
 *   tournament  = max(max(2, tournament_min),
 *                     int(min(tournament_max, pop_size) - k / (populations / 10)))
 *   crossover   = max(crossover_min, min(crossover_max, crossover_max - k / populations))
 *   mutation    = max(mutation_min, min(mutation_max, mutation_max - k / populations))
 */
long ev_ga_elite_size(const struct ev_ga_params *p, long k);
long ev_ga_tournament_size(const struct ev_ga_params *p, long k);
double ev_ga_crossover_rate(const struct ev_ga_params *p, long k);
double ev_ga_mutation_rate(const struct ev_ga_params *p, long k);

/* The evolving keys (gain > 0) in table order; returns how many. */
int ev_ga_genes(const struct meta_table *table, int genes[META_COUNT]);

/*
 * Read every file of `dir` whose name ends in ".yaml", in strcmp order of
 * the names, with meta_hyp_read (its errors name the file). *out is a
 * malloc'ed array of *n hyps for the caller to free(); an empty folder gives
 * *n = 0 and *out = NULL.
 */
int ev_ga_load_seeds(const char *dir, const struct meta_table *table, struct meta_hyp **out,
		     size_t *n, struct ut_err *err);

/*
 * Population 0 into out[0 .. pop_size): the seeds first, in reverse order
 * (YOLOv5 prepends them one at a time, so the last loaded comes first),
 * then pop_size - n_seeds random individuals, each gene uniform in
 * [lower, upper]. Every individual takes the keys with gain 0 from base,
 * seeds included. Draws come from the stream of population 0. Error if
 * n_seeds > pop_size or ev_ga_check fails.
 */
int ev_ga_initial(const struct ev_ga_params *p, const struct meta_table *table,
		  const struct meta_hyp *base, const struct meta_hyp *seeds, size_t n_seeds,
		  uint64_t seed, struct meta_hyp *out, struct ut_err *err);

/*
 * Selection for breeding from population k (exposed for tests): fills
 * selected[0 .. pop_size) with pop_size - elite tournament winners, in draw
 * order, then the elite indices in increasing order. A tournament samples
 * tournament_size distinct indices; the winner is the best fitness, NaN
 * ranking below everything and ties going to the earlier in sample order.
 * The elite is the elite_size best, ties going to the lower index. params
 * must have passed ev_ga_check and 0 <= k < populations.
 */
int ev_ga_select(const struct ev_ga_params *p, long k, const double *fitness, struct ut_pcg *rng,
		 long *selected, struct ut_err *err);

/*
 * Breed population k + 1 into next[0 .. pop_size) from population k
 * (pop[0 .. pop_size), evaluated, fitness NaN for a failed individual):
 * ev_ga_select, then for each child two parents drawn uniformly from the
 * selected list, crossover and mutation as described above. Keys with
 * gain 0 are copied from parent 1 (every individual carries the base's
 * values there). Draws come from the stream of population k + 1. Error if
 * ev_ga_check fails or k is outside 0 .. populations - 1.
 */
int ev_ga_next(const struct ev_ga_params *p, const struct meta_table *table, long k,
	       const struct meta_hyp *pop, const double *fitness, uint64_t seed,
	       struct meta_hyp *next, struct ut_err *err);

#endif
