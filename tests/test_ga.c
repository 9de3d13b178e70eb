/*
 * test_ga.c - YOLOv5's population GA (evolve/ga.h): schedule values worked
 * out by hand from YOLOv5's formulas, seed loading and the initial
 * population, tournament and elite selection against exact probabilities,
 * crossover structure and rate, mutation statistics and bounds, failed
 * (NaN) individuals, determinism, parameter errors.
 *
 * Needs YE_SOURCE_ROOT (the repository root) to find data/hyps.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "ga.h"
#include "meta.h"
#include "pcg.h"

/* Full path of a file of the source tree; fails when YE_SOURCE_ROOT is unset. */
static void source_path(const char *relative, char *buf, size_t size)
{
	const char *root = getenv("YE_SOURCE_ROOT");
	if (root == NULL || *root == '\0')
		fail_msg("YE_SOURCE_ROOT is not set (the repository root)");
	assert_true(snprintf(buf, size, "%s/%s", root, relative) < (int)size);
}

static struct ev_ga_params params_for(long populations)
{
	struct ev_ga_params p;
	ev_ga_defaults(&p);
	p.populations = populations;
	return p;
}

/* A table where every key evolves in [lower, upper], except `frozen` keys. */
static struct meta_table flat_table(double lower, double upper, const int *frozen, int n_frozen)
{
	struct meta_table table;
	for (int k = 0; k < META_COUNT; k++)
		table.k[k] = (struct meta_bound){1.0, lower, upper};
	for (int i = 0; i < n_frozen; i++)
		table.k[frozen[i]].gain = 0.0;
	return table;
}

/* P(the winner of a tournament of t among 0..n-1 with fitness = index is i). */
static double max_of_sample_prob(long i, long n, long t)
{
	if (i < t - 1)
		return 0.0;
	/* C(i, t-1) / C(n, t) */
	double log_p =
	    lgamma((double)i + 1) - lgamma((double)t) - lgamma((double)(i - t + 2)) -
	    (lgamma((double)n + 1) - lgamma((double)t + 1) - lgamma((double)(n - t + 1)));
	return exp(log_p);
}

/*
 * |observed - expected| within `sigmas` binomial standard deviations, plus
 * 3 counts of slack for rare outcomes (expected counts near 0).
 */
static void assert_frequency(long hits, long trials, double expected, double sigmas,
			     const char *what)
{
	double observed = (double)hits / (double)trials;
	double sd = sqrt(expected * (1 - expected) / (double)trials);
	if (fabs(observed - expected) > sigmas * sd + 3.0 / (double)trials)
		fail_msg("%s: observed %.5f, expected %.5f (sd %.5f, %ld trials)", what, observed,
			 expected, sd, trials);
}

static void test_defaults(void **state)
{
	(void)state;
	struct ev_ga_params p;
	ev_ga_defaults(&p);
	assert_int_equal(p.pop_size, 50);
	assert_true(p.mutation_min == 0.01 && p.mutation_max == 0.5);
	assert_true(p.crossover_min == 0.5 && p.crossover_max == 1.0);
	assert_true(p.step == 0.1);
	assert_int_equal(p.elite_min, 2);
	assert_int_equal(p.elite_max, 5);
	assert_int_equal(p.tournament_min, 2);
	assert_int_equal(p.tournament_max, 10);
}

struct schedule_row {
	long k;
	long elite, tournament;
	double crossover, mutation;
};

static void check_schedule(long populations, const struct schedule_row *rows, size_t n)
{
	struct ev_ga_params p = params_for(populations);
	for (size_t i = 0; i < n; i++) {
		const struct schedule_row *row = &rows[i];
		if (ev_ga_elite_size(&p, row->k) != row->elite ||
		    ev_ga_tournament_size(&p, row->k) != row->tournament ||
		    fabs(ev_ga_crossover_rate(&p, row->k) - row->crossover) > 1e-12 ||
		    fabs(ev_ga_mutation_rate(&p, row->k) - row->mutation) > 1e-12)
			fail_msg("populations %ld, k %ld: elite %ld tournament %ld crossover %.17g "
				 "mutation %.17g; wanted %ld %ld %g %g",
				 populations, row->k, ev_ga_elite_size(&p, row->k),
				 ev_ga_tournament_size(&p, row->k),
				 ev_ga_crossover_rate(&p, row->k), ev_ga_mutation_rate(&p, row->k),
				 row->elite, row->tournament, row->crossover, row->mutation);
	}
}

/*
 * populations = 10 (k / (populations / 10) = k):
 *   k=0: elite 2 + int(3 * 0.0) = 2, tournament int(10 - 0) = 10,
 *        crossover min(1, 1 - 0) = 1, mutation min(0.5, 0.5 - 0) = 0.5
 *   k=2: 2 + int(0.6) = 2, int(10 - 2) = 8, 1 - 0.2 = 0.8, 0.5 - 0.2 = 0.3
 *   k=5: 2 + int(1.5) = 3, int(10 - 5) = 5, max(0.5, 0.5) = 0.5, max(0.01, 0) = 0.01
 *   k=9: 2 + int(2.7) = 4, max(2, int(10 - 9)) = 2, max(0.5, 0.1) = 0.5,
 *        max(0.01, -0.4) = 0.01
 */
static void test_schedule_10(void **state)
{
	(void)state;
	static const struct schedule_row rows[] = {
	    {0, 2, 10, 1.0, 0.5},
	    {2, 2, 8, 0.8, 0.3},
	    {5, 3, 5, 0.5, 0.01},
	    {9, 4, 2, 0.5, 0.01},
	};
	check_schedule(10, rows, UT_ARRAY_LEN(rows));
}

/*
 * populations = 100 (k / (populations / 10) = k / 10):
 *   k=0:  2, 10, 1.0, 0.5
 *   k=25: 2 + int(0.75) = 2, int(10 - 2.5) = 7, 1 - 0.25 = 0.75, 0.5 - 0.25 = 0.25
 *   k=50: 2 + int(1.5) = 3, int(10 - 5) = 5, 0.5, max(0.01, 0) = 0.01
 *   k=99: 2 + int(2.97) = 4, max(2, int(0.1)) = 2, max(0.5, 0.01) = 0.5, 0.01
 */
static void test_schedule_100(void **state)
{
	(void)state;
	static const struct schedule_row rows[] = {
	    {0, 2, 10, 1.0, 0.5},
	    {25, 2, 7, 0.75, 0.25},
	    {50, 3, 5, 0.5, 0.01},
	    {99, 4, 2, 0.5, 0.01},
	};
	check_schedule(100, rows, UT_ARRAY_LEN(rows));
}

/* A small population caps the tournament: min(tournament_max, pop_size). */
static void test_schedule_small_population(void **state)
{
	(void)state;
	struct ev_ga_params p = params_for(10);
	p.pop_size = 6;
	assert_int_equal(ev_ga_tournament_size(&p, 0), 6);
	assert_int_equal(ev_ga_tournament_size(&p, 3), 3);
	assert_int_equal(ev_ga_tournament_size(&p, 7), 2);
	p.tournament_min = 4;
	assert_int_equal(ev_ga_tournament_size(&p, 3), 4);
}

static void test_genes_follow_gain(void **state)
{
	(void)state;
	struct meta_table table;
	meta_table_default(&table);
	int genes[META_COUNT];
	int n = ev_ga_genes(&table, genes);
	assert_int_equal(n, META_COUNT - 4); /* iou_t, fl_gamma, perspective, fliplr */
	for (int g = 1; g < n; g++)
		assert_true(genes[g - 1] < genes[g]);
	for (int g = 0; g < n; g++)
		assert_true(table.k[genes[g]].gain > 0);
	struct ut_err err;
	assert_int_equal(meta_table_restrict(&table, "mosaic,lr0", &err), 0);
	n = ev_ga_genes(&table, genes);
	assert_int_equal(n, 2);
	assert_int_equal(genes[0], META_lr0);
	assert_int_equal(genes[1], META_mosaic);
}

static void base_hyp(const struct meta_table *table, struct meta_hyp *base)
{
	char path[4096];
	struct ut_err err;
	source_path("data/hyps/hyp.scratch-low.yaml", path, sizeof(path));
	if (meta_hyp_read(path, table, base, &err) != 0)
		fail_msg("%s", err.msg);
	/* frozen keys unlike any seed file's, so their source is visible */
	base->v[META_iou_t] = 0.33;
	base->v[META_fl_gamma] = 0.5;
	base->v[META_perspective] = 0.0005;
	base->v[META_fliplr] = 0.25;
}

static void test_load_seeds_and_initial(void **state)
{
	(void)state;
	struct meta_table table;
	meta_table_default(&table);
	char dir[4096];
	source_path("data/hyps", dir, sizeof(dir));
	struct meta_hyp *seeds;
	size_t n;
	struct ut_err err;
	if (ev_ga_load_seeds(dir, &table, &seeds, &n, &err) != 0)
		fail_msg("%s", err.msg);
	assert_int_equal(n, 3);
	static const char *const sorted[] = {"hyp.scratch-high.yaml", "hyp.scratch-low.yaml",
					     "hyp.scratch-med.yaml"};
	for (size_t i = 0; i < 3; i++) {
		char path[4096];
		struct meta_hyp expected;
		assert_true(snprintf(path, sizeof(path), "%s/%s", dir, sorted[i]) <
			    (int)sizeof(path));
		assert_int_equal(meta_hyp_read(path, &table, &expected, &err), 0);
		assert_memory_equal(&seeds[i], &expected, sizeof(expected));
	}

	struct meta_hyp base;
	base_hyp(&table, &base);
	struct ev_ga_params p = params_for(10);
	struct meta_hyp population[50];
	assert_int_equal(ev_ga_initial(&p, &table, &base, seeds, n, 42, population, &err), 0);
	/* YOLOv5 prepends each seed in turn: the last loaded comes first */
	for (int i = 0; i < 3; i++) {
		const struct meta_hyp *seed = &seeds[2 - i];
		for (int k = 0; k < META_COUNT; k++) {
			double wanted = table.k[k].gain > 0 ? seed->v[k] : base.v[k];
			if (population[i].v[k] != wanted)
				fail_msg("individual %d key %s: %g, wanted %g", i, meta_name(k),
					 population[i].v[k], wanted);
		}
	}
	/* the rest are random, not copies of a seed */
	for (int i = 3; i < 50; i++)
		for (int s = 0; s < 3; s++)
			assert_true(population[i].v[META_lr0] != seeds[s].v[META_lr0]);
	free(seeds);
}

static void test_load_seeds_empty_and_errors(void **state)
{
	(void)state;
	struct meta_table table;
	meta_table_default(&table);
	char dir[] = "/tmp/test_ga_XXXXXX";
	assert_non_null(mkdtemp(dir));
	struct meta_hyp dummy;
	struct meta_hyp *seeds = &dummy; /* must be reset */
	size_t n = 99;
	struct ut_err err;
	assert_int_equal(ev_ga_load_seeds(dir, &table, &seeds, &n, &err), 0);
	assert_int_equal(n, 0);
	assert_null(seeds);

	/* other suffixes are ignored; a bad .yaml is an error naming the file */
	char path[4096];
	snprintf(path, sizeof(path), "%s/notes.yml", dir);
	FILE *file = fopen(path, "w");
	assert_non_null(file);
	fputs("lr0: oops\n", file);
	fclose(file);
	assert_int_equal(ev_ga_load_seeds(dir, &table, &seeds, &n, &err), 0);
	assert_int_equal(n, 0);

	snprintf(path, sizeof(path), "%s/broken.yaml", dir);
	file = fopen(path, "w");
	assert_non_null(file);
	fputs("lr0: 0.01\n", file);
	fclose(file);
	assert_int_equal(ev_ga_load_seeds(dir, &table, &seeds, &n, &err), -1);
	assert_non_null(strstr(err.msg, "broken.yaml"));
	assert_int_equal(n, 0);
	assert_null(seeds);
	unlink(path);
	snprintf(path, sizeof(path), "%s/notes.yml", dir);
	unlink(path);
	rmdir(dir);

	assert_int_equal(ev_ga_load_seeds("/nonexistent/ga/seeds", &table, &seeds, &n, &err), -1);
	assert_non_null(strstr(err.msg, "/nonexistent/ga/seeds"));
}

/* Random genes lie inside their bounds and are uniform; frozen keys are the base's. */
static void test_initial_random_uniform(void **state)
{
	(void)state;
	struct meta_table table;
	meta_table_default(&table);
	struct meta_hyp base;
	base_hyp(&table, &base);
	struct ev_ga_params p = params_for(10);
	p.pop_size = 20000;
	struct meta_hyp *population = malloc((size_t)p.pop_size * sizeof(*population));
	assert_non_null(population);
	struct ut_err err;
	assert_int_equal(ev_ga_initial(&p, &table, &base, NULL, 0, 7, population, &err), 0);
	for (int k = 0; k < META_COUNT; k++) {
		const struct meta_bound *bound = &table.k[k];
		double sum = 0, sum_sq = 0;
		for (long i = 0; i < p.pop_size; i++) {
			double value = population[i].v[k];
			if (bound->gain == 0) {
				assert_true(value == base.v[k]);
				continue;
			}
			assert_true(value >= bound->lower && value <= bound->upper);
			double unit = (value - bound->lower) / (bound->upper - bound->lower);
			sum += unit;
			sum_sq += unit * unit;
		}
		if (bound->gain == 0)
			continue;
		double mean = sum / (double)p.pop_size;
		double variance = sum_sq / (double)p.pop_size - mean * mean;
		/* U(0,1): mean 1/2 (sd of the mean 0.002), variance 1/12 */
		if (fabs(mean - 0.5) > 0.01 || fabs(variance - 1.0 / 12) > 0.005)
			fail_msg("%s: unit mean %g variance %g", meta_name(k), mean, variance);
	}
	free(population);
}

static void test_param_errors(void **state)
{
	(void)state;
	struct meta_table table;
	meta_table_default(&table);
	struct meta_hyp base;
	base_hyp(&table, &base);
	struct meta_hyp population[50], next[50];
	double fitness[50] = {0};
	struct ut_err err;
	struct ev_ga_params p = params_for(10);

	assert_int_equal(ev_ga_check(&p, &table, &err), 0);
	struct meta_hyp seeds[51];
	for (int i = 0; i < 51; i++)
		seeds[i] = base;
	assert_int_equal(ev_ga_initial(&p, &table, &base, seeds, 51, 1, population, &err), -1);
	assert_non_null(strstr(err.msg, "51 seed"));
	assert_int_equal(ev_ga_initial(&p, &table, &base, seeds, 50, 1, population, &err), 0);

	assert_int_equal(ev_ga_next(&p, &table, 10, population, fitness, 1, next, &err), -1);
	assert_int_equal(ev_ga_next(&p, &table, -1, population, fitness, 1, next, &err), -1);
	assert_int_equal(ev_ga_next(&p, &table, 9, population, fitness, 1, next, &err), 0);

	struct ev_ga_params bad = p;
	bad.pop_size = 1;
	assert_int_equal(ev_ga_check(&bad, &table, &err), -1);
	bad = p;
	bad.populations = 0;
	assert_int_equal(ev_ga_check(&bad, &table, &err), -1);
	bad = p;
	bad.mutation_max = 1.5;
	assert_int_equal(ev_ga_check(&bad, &table, &err), -1);
	bad = p;
	bad.crossover_min = 0.9;
	bad.crossover_max = 0.8;
	assert_int_equal(ev_ga_check(&bad, &table, &err), -1);
	bad = p;
	bad.step = NAN;
	assert_int_equal(ev_ga_check(&bad, &table, &err), -1);
	bad = p;
	bad.elite_max = 51;
	assert_int_equal(ev_ga_check(&bad, &table, &err), -1);
	bad = p;
	bad.pop_size = 3;
	bad.elite_max = 3;
	bad.tournament_min = 4;
	bad.tournament_max = 4;
	assert_int_equal(ev_ga_check(&bad, &table, &err), -1);

	struct meta_table frozen = table;
	for (int k = 0; k < META_COUNT; k++)
		frozen.k[k].gain = 0;
	assert_int_equal(ev_ga_check(&p, &frozen, &err), -1);
	assert_non_null(strstr(err.msg, "gain"));
}

/* Fitness = index: tournament winners follow P(max of t distinct = i). */
static void check_selection_distribution(long populations, long k)
{
	struct ev_ga_params p = params_for(populations);
	long n = p.pop_size, t = ev_ga_tournament_size(&p, k), elite = ev_ga_elite_size(&p, k);
	double fitness[50];
	for (long i = 0; i < n; i++)
		fitness[i] = (double)i;
	long wins[50] = {0}, trials = 0;
	struct ut_pcg rng;
	ut_pcg_stream(&rng, 2024, k, UT_PCG_GA);
	struct ut_err err;
	for (int round = 0; round < 3000; round++) {
		long selected[50];
		assert_int_equal(ev_ga_select(&p, k, fitness, &rng, selected, &err), 0);
		for (long i = 0; i < n - elite; i++) {
			assert_true(selected[i] >= 0 && selected[i] < n);
			wins[selected[i]]++;
			trials++;
		}
		/* the elite closes the list, in index order */
		for (long e = 0; e < elite; e++)
			assert_int_equal(selected[n - elite + e], n - elite + e);
	}
	double mean = 0, expected_mean = 0;
	for (long i = 0; i < n; i++) {
		double expected = max_of_sample_prob(i, n, t);
		if (expected == 0.0)
			assert_int_equal(wins[i], 0);
		char what[64];
		snprintf(what, sizeof(what), "t=%ld winner %ld", t, i);
		assert_frequency(wins[i], trials, expected, 5.0, what);
		mean += (double)i * (double)wins[i] / (double)trials;
		expected_mean += (double)i * expected;
	}
	/* E[max of t among 0..n-1] = t (n + 1) / (t + 1) - 1 */
	assert_true(fabs(expected_mean - ((double)t * (double)(n + 1) / (double)(t + 1) - 1)) <
		    1e-9);
	assert_true(fabs(mean - expected_mean) < 0.1);
}

static void test_selection_statistics(void **state)
{
	(void)state;
	check_selection_distribution(10, 0); /* t = 10, elite 2 */
	check_selection_distribution(10, 5); /* t = 5, elite 3 */
	check_selection_distribution(10, 9); /* t = 2, elite 4 */
}

/* Whatever the fitness, the elite_size best close the selected list. */
static void test_elite_always_selected(void **state)
{
	(void)state;
	struct ev_ga_params p = params_for(10);
	struct ut_pcg shuffle, rng;
	ut_pcg_stream(&shuffle, 5, 0, UT_PCG_BREED);
	ut_pcg_stream(&rng, 5, 1, UT_PCG_GA);
	struct ut_err err;
	for (int round = 0; round < 200; round++) {
		long k = round % 10;
		long elite = ev_ga_elite_size(&p, k);
		double fitness[50];
		for (int i = 0; i < 50; i++)
			fitness[i] = ut_pcg_uniform(&shuffle);
		long selected[50];
		assert_int_equal(ev_ga_select(&p, k, fitness, &rng, selected, &err), 0);
		/* the elite-th best value */
		double sorted[50];
		memcpy(sorted, fitness, sizeof(sorted));
		for (int i = 1; i < 50; i++)
			for (int j = i; j > 0 && sorted[j - 1] < sorted[j]; j--) {
				double swap = sorted[j];
				sorted[j] = sorted[j - 1];
				sorted[j - 1] = swap;
			}
		double threshold = sorted[elite - 1];
		long previous = -1;
		for (long e = 50 - elite; e < 50; e++) {
			assert_true(fitness[selected[e]] >= threshold);
			assert_true(selected[e] > previous);
			previous = selected[e];
		}
	}
}

static void test_elite_ties_and_failures(void **state)
{
	(void)state;
	struct ev_ga_params p = params_for(10);
	struct ut_pcg rng;
	ut_pcg_stream(&rng, 9, 1, UT_PCG_GA);
	struct ut_err err;
	double fitness[50];
	long selected[50];

	/* all equal: exactly 2 elite, the lowest indices */
	for (int i = 0; i < 50; i++)
		fitness[i] = 0.25;
	assert_int_equal(ev_ga_select(&p, 0, fitness, &rng, selected, &err), 0);
	assert_int_equal(selected[48], 0);
	assert_int_equal(selected[49], 1);

	/* failed ones at the top indices are never elite */
	for (int i = 0; i < 50; i++)
		fitness[i] = i >= 47 ? NAN : (double)i;
	assert_int_equal(ev_ga_select(&p, 0, fitness, &rng, selected, &err), 0);
	assert_int_equal(selected[48], 45);
	assert_int_equal(selected[49], 46);

	/* one success: it is elite, the lowest failed index fills the rest */
	for (int i = 0; i < 50; i++)
		fitness[i] = i == 7 ? -1.0 : NAN;
	assert_int_equal(ev_ga_select(&p, 0, fitness, &rng, selected, &err), 0);
	assert_int_equal(selected[48], 0);
	assert_int_equal(selected[49], 7);
	/* and it wins every tournament it enters: P = t / n = 10 / 50 */
	long wins = 0, trials = 0;
	for (int round = 0; round < 2000; round++) {
		assert_int_equal(ev_ga_select(&p, 0, fitness, &rng, selected, &err), 0);
		for (int i = 0; i < 48; i++)
			wins += selected[i] == 7;
		trials += 48;
	}
	assert_frequency(wins, trials, 0.2, 5.0, "lone success");
}

/* NaN never wins unless every contestant failed. */
static void test_failed_tournaments(void **state)
{
	(void)state;
	struct ev_ga_params p = params_for(10);
	long t = ev_ga_tournament_size(&p, 0); /* 10 */
	struct ut_pcg rng;
	ut_pcg_stream(&rng, 77, 1, UT_PCG_GA);
	struct ut_err err;
	double fitness[50];
	long selected[50];

	/* 9 failures (< t) at the best indices: never a failed winner */
	for (int i = 0; i < 50; i++)
		fitness[i] = i >= 41 ? NAN : (double)i;
	for (int round = 0; round < 2000; round++) {
		assert_int_equal(ev_ga_select(&p, 0, fitness, &rng, selected, &err), 0);
		for (int i = 0; i < 50; i++)
			assert_false(isnan(fitness[selected[i]]));
	}

	/* 40 failures: a failed winner exactly when all t contestants failed */
	for (int i = 0; i < 50; i++)
		fitness[i] = i >= 10 ? NAN : (double)i;
	double all_failed = exp(lgamma(41) - lgamma(41 - (double)t) - lgamma(51) +
				lgamma(51 - (double)t)); /* C(40,t)/C(50,t) */
	long failed_wins = 0, trials = 0;
	for (int round = 0; round < 3000; round++) {
		assert_int_equal(ev_ga_select(&p, 0, fitness, &rng, selected, &err), 0);
		for (int i = 0; i < 48; i++)
			failed_wins += isnan(fitness[selected[i]]);
		trials += 48;
		assert_int_equal(selected[48], 8);
		assert_int_equal(selected[49], 9);
	}
	assert_frequency(failed_wins, trials, all_failed, 5.0, "all-failed tournaments");

	/* all failed: the first drawn wins, uniform over the population */
	for (int i = 0; i < 50; i++)
		fitness[i] = NAN;
	long counts[50] = {0};
	trials = 0;
	for (int round = 0; round < 2000; round++) {
		assert_int_equal(ev_ga_select(&p, 0, fitness, &rng, selected, &err), 0);
		for (int i = 0; i < 48; i++)
			counts[selected[i]]++;
		trials += 48;
	}
	for (int i = 0; i < 50; i++)
		assert_frequency(counts[i], trials, 1.0 / 50, 5.0, "all failed");
}

/*
 * Crossover with markers: gene g of individual i is (i + 1) + g / 100, so
 * every child gene tells which individual and which position it came from.
 * No mutation. Returns how many children switched parent, and counts
 * switch points in points[1 .. ngenes).
 */
static long crossover_run(double rate, int rounds, long *points)
{
	static const int frozen[] = {META_iou_t, META_fliplr};
	struct meta_table table = flat_table(0.0, 1000.0, frozen, 2);
	int genes[META_COUNT];
	int ngenes = ev_ga_genes(&table, genes);
	struct ev_ga_params p = params_for(10);
	p.mutation_min = p.mutation_max = 0.0;
	p.crossover_min = p.crossover_max = rate;
	struct meta_hyp population[50], next[50];
	double fitness[50];
	for (int i = 0; i < 50; i++) {
		fitness[i] = 1.0;
		for (int k = 0; k < META_COUNT; k++)
			population[i].v[k] = 777.0;
		for (int g = 0; g < ngenes; g++)
			population[i].v[genes[g]] = (i + 1) + g / 100.0;
	}
	long switched = 0;
	struct ut_err err;
	for (int round = 0; round < rounds; round++) {
		assert_int_equal(
		    ev_ga_next(&p, &table, 0, population, fitness, (uint64_t)round, next, &err), 0);
		for (int c = 0; c < 50; c++) {
			const struct meta_hyp *child = &next[c];
			assert_true(child->v[META_iou_t] == 777.0);
			assert_true(child->v[META_fliplr] == 777.0);
			int first = (int)floor(child->v[genes[0]]) - 1;
			int point = 0, second = first;
			for (int g = 0; g < ngenes; g++) {
				int from = (int)floor(child->v[genes[g]]) - 1;
				assert_true(from >= 0 && from < 50);
				/* the gene keeps its position */
				assert_true(child->v[genes[g]] == population[from].v[genes[g]]);
				if (from != second) {
					/* one switch only, from parent 1 to parent 2 */
					assert_int_equal(point, 0);
					point = g;
					second = from;
				}
			}
			if (point > 0) {
				switched++;
				points[point]++;
			}
		}
	}
	return switched;
}

static void test_crossover(void **state)
{
	(void)state;
	long points[META_COUNT] = {0};
	int rounds = 400;
	long total = 50L * rounds;
	assert_int_equal(crossover_run(0.0, 50, points), 0);
	long always = crossover_run(1.0, rounds, points);
	/*
	 * Equal fitness: each tournament is won by its first contestant, so the
	 * selected list is 48 uniform indices plus the elite {0, 1}. Two draws
	 * from it name the same individual with P = 1/50 (same slot) +
	 * 49/50 * 1/50 * (1 - 2/2450) (two slots, not the two elite ones); a
	 * crossover between different individuals always shows a switch.
	 */
	double differ = 1.0 - (1.0 / 50 + 49.0 / 50 * (1.0 / 50) * (1.0 - 2.0 / 2450));
	assert_frequency(always, total, differ, 5.0, "crossover at rate 1");
	int ngenes = META_COUNT - 2;
	/* point uniform in 1 .. ngenes - 1; point 0 is impossible */
	assert_int_equal(points[0], 0);
	for (int g = 1; g < ngenes; g++)
		assert_frequency(points[g], always, 1.0 / (ngenes - 1), 5.0, "crossover point");
	memset(points, 0, sizeof(points));
	long half = crossover_run(0.5, rounds, points);
	assert_frequency(half, total, 0.5 * differ, 5.0, "crossover at rate 0.5");
}

/* Identical individuals at mid-range, no crossover: every change is a mutation. */
static void test_mutation_statistics(void **state)
{
	(void)state;
	static const int frozen[] = {META_box};
	struct meta_table table = flat_table(0.0, 10.0, frozen, 1);
	struct ev_ga_params p = params_for(10);
	p.crossover_min = p.crossover_max = 0.0;
	p.mutation_min = p.mutation_max = 0.3;
	struct meta_hyp population[50], next[50];
	double fitness[50];
	for (int i = 0; i < 50; i++) {
		fitness[i] = (double)i;
		for (int k = 0; k < META_COUNT; k++)
			population[i].v[k] = 5.0;
	}
	long mutated = 0, genes_seen = 0;
	double sum = 0, sum_abs = 0;
	struct ut_err err;
	for (int round = 0; round < 200; round++) {
		assert_int_equal(
		    ev_ga_next(&p, &table, 3, population, fitness, (uint64_t)round, next, &err), 0);
		for (int c = 0; c < 50; c++) {
			assert_true(next[c].v[META_box] == 5.0);
			for (int k = 0; k < META_COUNT; k++) {
				if (k == META_box)
					continue;
				double delta = next[c].v[k] - 5.0;
				assert_true(fabs(delta) <= 0.1 + 1e-12);
				genes_seen++;
				if (delta != 0) {
					mutated++;
					sum += delta;
					sum_abs += fabs(delta);
				}
			}
		}
	}
	assert_frequency(mutated, genes_seen, 0.3, 5.0, "mutated genes");
	/* steps uniform on (-0.1, 0.1): mean 0, mean |step| 0.05 */
	assert_true(fabs(sum / (double)mutated) < 0.002);
	assert_true(fabs(sum_abs / (double)mutated - 0.05) < 0.002);
}

/* Genes at their bounds with large steps: always clamped into [lower, upper]. */
static void test_mutation_bounds(void **state)
{
	(void)state;
	struct meta_table table;
	meta_table_default(&table);
	struct meta_hyp base;
	base_hyp(&table, &base);
	struct ev_ga_params p = params_for(10);
	p.mutation_min = p.mutation_max = 1.0;
	p.step = 50.0;
	struct meta_hyp population[50], next[50];
	double fitness[50];
	for (int i = 0; i < 50; i++) {
		population[i] = base;
		fitness[i] = (double)(i % 7);
		for (int k = 0; k < META_COUNT; k++)
			if (table.k[k].gain > 0)
				population[i].v[k] = i % 2 ? table.k[k].upper : table.k[k].lower;
	}
	struct ut_err err;
	long at_bound = 0, total = 0;
	for (int round = 0; round < 100; round++) {
		assert_int_equal(ev_ga_next(&p, &table, round % 10, population, fitness,
					    (uint64_t)round, next, &err),
				 0);
		for (int c = 0; c < 50; c++) {
			assert_int_equal(meta_hyp_check(&next[c], &table, "child", &err), 0);
			for (int k = 0; k < META_COUNT; k++) {
				if (table.k[k].gain == 0) {
					assert_true(next[c].v[k] == base.v[k]);
					continue;
				}
				total++;
				at_bound += next[c].v[k] == table.k[k].lower ||
					    next[c].v[k] == table.k[k].upper;
			}
		}
	}
	/* a step of +/-50 leaves almost every narrow range: clamping does happen */
	assert_true(at_bound > total / 2);
}

/* Default params on a random population: children stay valid hyps. */
static void test_next_default_valid(void **state)
{
	(void)state;
	struct meta_table table;
	meta_table_default(&table);
	struct meta_hyp base;
	base_hyp(&table, &base);
	struct ev_ga_params p = params_for(20);
	struct meta_hyp population[50], next[50];
	double fitness[50];
	struct ut_err err;
	assert_int_equal(ev_ga_initial(&p, &table, &base, NULL, 0, 11, population, &err), 0);
	for (long k = 0; k < p.populations; k++) {
		for (int i = 0; i < 50; i++)
			fitness[i] = i % 5 == 0 ? NAN : population[i].v[META_mosaic];
		assert_int_equal(ev_ga_next(&p, &table, k, population, fitness, 11, next, &err), 0);
		for (int c = 0; c < 50; c++) {
			assert_int_equal(meta_hyp_check(&next[c], &table, "child", &err), 0);
			for (int key = 0; key < META_COUNT; key++)
				if (table.k[key].gain == 0)
					assert_true(next[c].v[key] == base.v[key]);
		}
		memcpy(population, next, sizeof(next));
	}
}

static void test_determinism(void **state)
{
	(void)state;
	struct meta_table table;
	meta_table_default(&table);
	struct meta_hyp base;
	base_hyp(&table, &base);
	struct ev_ga_params p = params_for(10);
	struct meta_hyp a[50], b[50], c[50];
	struct ut_err err;
	assert_int_equal(ev_ga_initial(&p, &table, &base, NULL, 0, 3, a, &err), 0);
	assert_int_equal(ev_ga_initial(&p, &table, &base, NULL, 0, 3, b, &err), 0);
	assert_int_equal(ev_ga_initial(&p, &table, &base, NULL, 0, 4, c, &err), 0);
	assert_memory_equal(a, b, sizeof(a));
	assert_memory_not_equal(a, c, sizeof(a));

	double fitness[50];
	for (int i = 0; i < 50; i++)
		fitness[i] = a[i].v[META_lr0];
	struct meta_hyp saved[50];
	memcpy(saved, a, sizeof(a));
	struct meta_hyp next1[50], next2[50], other_seed[50], other_k[50];
	assert_int_equal(ev_ga_next(&p, &table, 0, a, fitness, 3, next1, &err), 0);
	assert_int_equal(ev_ga_next(&p, &table, 0, a, fitness, 3, next2, &err), 0);
	assert_int_equal(ev_ga_next(&p, &table, 0, a, fitness, 4, other_seed, &err), 0);
	assert_int_equal(ev_ga_next(&p, &table, 1, a, fitness, 3, other_k, &err), 0);
	assert_memory_equal(a, saved, sizeof(a)); /* the population is read only */
	assert_memory_equal(next1, next2, sizeof(next1));
	assert_memory_not_equal(next1, other_seed, sizeof(next1));
	assert_memory_not_equal(next1, other_k, sizeof(next1));

	/* same results, same lineage: a second population bred twice agrees */
	double fitness2[50];
	for (int i = 0; i < 50; i++)
		fitness2[i] = next1[i].v[META_momentum];
	assert_int_equal(ev_ga_next(&p, &table, 1, next1, fitness2, 3, b, &err), 0);
	assert_int_equal(ev_ga_next(&p, &table, 1, next2, fitness2, 3, c, &err), 0);
	assert_memory_equal(b, c, sizeof(b));
}

/*
 * Population k + 1 draws from its own stream: with schedules that do not
 * depend on k, breeding from k = 0 and k = 1 still differs, and the
 * children come from the selection made on stream (seed, k + 1).
 */
static void test_stream_per_population(void **state)
{
	(void)state;
	struct meta_table table;
	meta_table_default(&table);
	struct meta_hyp base;
	base_hyp(&table, &base);
	struct ev_ga_params p = params_for(10);
	p.elite_min = p.elite_max = 3;
	p.tournament_min = p.tournament_max = 2;
	p.crossover_min = p.crossover_max = 0.0;
	p.mutation_min = p.mutation_max = 0.0;
	struct meta_hyp population[50], from0[50], from1[50];
	double fitness[50];
	struct ut_err err;
	assert_int_equal(ev_ga_initial(&p, &table, &base, NULL, 0, 21, population, &err), 0);
	for (int i = 0; i < 50; i++)
		fitness[i] = population[i].v[META_lr0];
	assert_int_equal(ev_ga_next(&p, &table, 0, population, fitness, 21, from0, &err), 0);
	assert_int_equal(ev_ga_next(&p, &table, 1, population, fitness, 21, from1, &err), 0);
	assert_memory_not_equal(from0, from1, sizeof(from0));

	for (long k = 0; k < 2; k++) {
		const struct meta_hyp *next = k == 0 ? from0 : from1;
		struct ut_pcg rng;
		ut_pcg_stream(&rng, 21, k + 1, UT_PCG_GA);
		long selected[50];
		assert_int_equal(ev_ga_select(&p, k, fitness, &rng, selected, &err), 0);
		for (int c = 0; c < 50; c++) {
			int found = 0;
			for (int j = 0; j < 50 && !found; j++)
				found = memcmp(&next[c], &population[selected[j]],
					       sizeof(next[c])) == 0;
			assert_true(found);
		}
	}
}

/* No crossover, no mutation: every child is a copy of a selected individual. */
static void test_copies_without_variation(void **state)
{
	(void)state;
	struct meta_table table;
	meta_table_default(&table);
	struct meta_hyp base;
	base_hyp(&table, &base);
	struct ev_ga_params p = params_for(10);
	p.crossover_min = p.crossover_max = 0.0;
	p.mutation_min = p.mutation_max = 0.0;
	struct meta_hyp population[50], next[50];
	double fitness[50];
	struct ut_err err;
	assert_int_equal(ev_ga_initial(&p, &table, &base, NULL, 0, 5, population, &err), 0);
	for (int i = 0; i < 50; i++)
		fitness[i] = i < 40 ? NAN : (double)i; /* 10 successes, 40 failures */
	long from_failed = 0;
	int rounds = 400;
	for (int round = 0; round < rounds; round++) {
		assert_int_equal(
		    ev_ga_next(&p, &table, 9, population, fitness, (uint64_t)round, next, &err), 0);
		for (int c = 0; c < 50; c++) {
			int source = -1;
			for (int i = 0; i < 50 && source < 0; i++)
				if (memcmp(&next[c], &population[i], sizeof(next[c])) == 0)
					source = i;
			assert_true(source >= 0);
			from_failed += source < 40;
		}
	}
	/*
	 * k = 9: tournaments of 2, elite 4. A failed parent needs a tournament
	 * of two failures: P = (40/50)(39/49), over 46 of 50 selected slots.
	 * Children of one population share a selected list, so the spread is
	 * wider than binomial: 7 binomial sd.
	 */
	double expected = (46.0 / 50.0) * (40.0 / 50.0) * (39.0 / 49.0);
	assert_frequency(from_failed, 50L * rounds, expected, 7.0, "children of failures");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_defaults),
	    cmocka_unit_test(test_schedule_10),
	    cmocka_unit_test(test_schedule_100),
	    cmocka_unit_test(test_schedule_small_population),
	    cmocka_unit_test(test_genes_follow_gain),
	    cmocka_unit_test(test_load_seeds_and_initial),
	    cmocka_unit_test(test_load_seeds_empty_and_errors),
	    cmocka_unit_test(test_initial_random_uniform),
	    cmocka_unit_test(test_param_errors),
	    cmocka_unit_test(test_selection_statistics),
	    cmocka_unit_test(test_elite_always_selected),
	    cmocka_unit_test(test_elite_ties_and_failures),
	    cmocka_unit_test(test_failed_tournaments),
	    cmocka_unit_test(test_crossover),
	    cmocka_unit_test(test_mutation_statistics),
	    cmocka_unit_test(test_mutation_bounds),
	    cmocka_unit_test(test_next_default_valid),
	    cmocka_unit_test(test_determinism),
	    cmocka_unit_test(test_stream_per_population),
	    cmocka_unit_test(test_copies_without_variation),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
