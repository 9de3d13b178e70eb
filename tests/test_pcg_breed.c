/*
 * test_pcg_breed.c - PCG32 against the published reference outputs, the
 * draws built on it, and YOLOv5 breeding: mutation statistics against the
 * formula, frozen keys, bounds, rounding, parent selection frequencies.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "breed.h"
#include "pcg.h"

/* pcg32-demo (pcg-c-basic), seeded with initstate 42, initseq 54 */
static void test_pcg_reference_outputs(void **state)
{
	(void)state;
	static const uint32_t round1[] = {0xa15c02b7, 0x7b47f409, 0xba1d3330,
					  0x83d2f293, 0xbfa4784b, 0xcbed606e};
	struct ut_pcg rng;
	ut_pcg_seed(&rng, 42, 54);
	for (size_t i = 0; i < 6; i++)
		assert_int_equal(ut_pcg_next(&rng), round1[i]);
}

static void test_pcg_save_restore(void **state)
{
	(void)state;
	struct ut_pcg rng;
	ut_pcg_stream(&rng, 12345, 17, UT_PCG_BREED);
	for (int i = 0; i < 100; i++)
		ut_pcg_next(&rng);
	struct ut_pcg saved = rng; /* the whole state is two integers */
	uint32_t expected[50];
	for (int i = 0; i < 50; i++)
		expected[i] = ut_pcg_next(&rng);
	struct ut_pcg restored = {saved.state, saved.inc};
	for (int i = 0; i < 50; i++)
		assert_int_equal(ut_pcg_next(&restored), expected[i]);
}

static void test_pcg_streams_differ(void **state)
{
	(void)state;
	struct ut_pcg a, b, c, a2;
	ut_pcg_stream(&a, 1, 5, UT_PCG_BREED);
	ut_pcg_stream(&b, 1, 6, UT_PCG_BREED);
	ut_pcg_stream(&c, 1, 5, UT_PCG_GA);
	ut_pcg_stream(&a2, 1, 5, UT_PCG_BREED);
	int same_ab = 0, same_ac = 0;
	for (int i = 0; i < 64; i++) {
		uint32_t x = ut_pcg_next(&a);
		same_ab += x == ut_pcg_next(&b);
		same_ac += x == ut_pcg_next(&c);
		assert_int_equal(x, ut_pcg_next(&a2));
	}
	assert_true(same_ab < 2);
	assert_true(same_ac < 2);
}

static void test_pcg_uniform_normal_moments(void **state)
{
	(void)state;
	struct ut_pcg rng;
	ut_pcg_seed(&rng, 7, 7);
	const int n = 200000;
	double sum_u = 0, sum_n = 0, sum_n2 = 0;
	for (int i = 0; i < n; i++) {
		double u = ut_pcg_uniform(&rng);
		assert_true(u >= 0 && u < 1);
		sum_u += u;
		double z = ut_pcg_normal(&rng);
		assert_true(isfinite(z));
		sum_n += z;
		sum_n2 += z * z;
	}
	assert_true(fabs(sum_u / n - 0.5) < 0.005);
	assert_true(fabs(sum_n / n) < 0.01);
	assert_true(fabs(sum_n2 / n - 1.0) < 0.02);
}

static void test_pcg_below_and_choice(void **state)
{
	(void)state;
	struct ut_pcg rng;
	ut_pcg_seed(&rng, 3, 9);
	int counts[7] = {0};
	for (int i = 0; i < 70000; i++) {
		uint32_t v = ut_pcg_below(&rng, 7);
		assert_true(v < 7);
		counts[v]++;
	}
	for (int i = 0; i < 7; i++)
		assert_true(abs(counts[i] - 10000) < 500);
	const double weights[] = {1, 0, 3, 6};
	int picks[4] = {0};
	for (int i = 0; i < 100000; i++)
		picks[ut_pcg_choice(&rng, weights, 4)]++;
	assert_int_equal(picks[1], 0);
	assert_true(fabs(picks[0] / 1e5 - 0.1) < 0.005);
	assert_true(fabs(picks[2] / 1e5 - 0.3) < 0.006);
	assert_true(fabs(picks[3] / 1e5 - 0.6) < 0.006);
	const double bad[] = {1, NAN};
	assert_int_equal(ut_pcg_choice(&rng, bad, 2), 0);
}

/* ---- breeding ----------------------------------------------------------- */

static void scratch_low(struct meta_hyp *hyp)
{
	static const double values[META_COUNT] = {
	    0.01,  0.01, 0.937, 0.0005, 3.0, 0.8, 0.1, 0.05, 0.5, 1.0, 1.0, 1.0, 0.2, 4.0, 0.0,
	    0.015, 0.7,	 0.4,	0.0,	0.1, 0.5, 0.0, 0.0,  0.0, 0.5, 1.0, 0.0, 0.0, 3.0};
	memcpy(hyp->v, values, sizeof(values));
	for (int k = META_COUNT; k < META_ALL; k++)
		hyp->v[k] = NAN; /* not YOLOv5 keys */
}

static void test_fitness(void **state)
{
	(void)state;
	assert_true(fabs(ev_fitness(0.5, 0.3) - (0.05 + 0.27)) < 1e-15);
	/* YOLOv5's own numbers: evolve.csv row 0 of the reference run */
	assert_true(fabs(ev_fitness(0.0061939, 0.0014991) - 0.00196858) < 1e-8);
}

/* Ultralytics' detection fitness (8.4.x DetMetrics): mAP@.5:.95 alone. */
static void test_space_fitness(void **state)
{
	(void)state;
	assert_true(ev_space_fitness(META_SPACE_ULTRALYTICS, 0.5, 0.3) == 0.3);
	assert_true(ev_space_fitness(META_SPACE_YOLOV5, 0.5, 0.3) == ev_fitness(0.5, 0.3));
}

/*
 * Breeding in the Ultralytics space: only its 26 keys move, inside its
 * bounds, close_mosaic stays whole, keys outside it stay NaN; deterministic.
 */
static void test_breed_ultralytics(void **state)
{
	(void)state;
	struct ev_breed_opts opts;
	ev_breed_opts_default(&opts);
	struct meta_table table;
	meta_table_default_space(&table, META_SPACE_ULTRALYTICS);
	struct meta_hyp base, child, again;
	meta_hyp_ultralytics_base(&base);
	struct ev_scored pool[2] = {{0, 0.25, base}, {1, 0.5, base}};
	pool[1].hyp.v[META_close_mosaic] = 3;
	const int *keys;
	int count = meta_space_keys(META_SPACE_ULTRALYTICS, &keys);
	int moved[META_ALL] = {0};
	for (long g = 2; g < 60; g++) {
		long parent = -1;
		struct ev_scored copy[2] = {pool[0], pool[1]};
		assert_int_equal(
		    ev_breed(&opts, &table, &base, copy, 2, 9, g, &child, &parent, NULL), 0);
		assert_true(parent == 0 || parent == 1);
		for (int i = 0; i < count; i++) {
			int k = keys[i];
			assert_true(child.v[k] >= table.k[k].lower &&
				    child.v[k] <= table.k[k].upper);
			moved[k] |= child.v[k] != pool[parent].hyp.v[k];
		}
		assert_true(child.v[META_close_mosaic] == round(child.v[META_close_mosaic]));
		for (int k = 0; k < META_ALL; k++)
			if (meta_space_find(META_SPACE_ULTRALYTICS, meta_name(k)) < 0)
				assert_true(isnan(child.v[k]));
		assert_int_equal(meta_hyp_space(&child), META_SPACE_ULTRALYTICS);
		struct ev_scored copy2[2] = {pool[0], pool[1]};
		assert_int_equal(
		    ev_breed(&opts, &table, &base, copy2, 2, 9, g, &again, &parent, NULL), 0);
		assert_memory_equal(&child, &again, sizeof(child));
	}
	assert_true(moved[META_lr0] && moved[META_dfl] && moved[META_box]);
}

/* Mutation factors follow v = (g*(U<mp)*N*U1*s + 1).clip(0.3, 3). */
static void test_mutation_statistics(void **state)
{
	(void)state;
	struct meta_table table;
	meta_table_default(&table);
	struct ev_breed_opts opts;
	ev_breed_opts_default(&opts);
	struct ut_pcg rng;
	ut_pcg_seed(&rng, 99, 1);
	const int n = 40000;
	long mutated = 0, genes = 0;
	double sq_lr0 = 0, sq_momentum = 0;
	long n_lr0 = 0, n_momentum = 0;
	for (int i = 0; i < n; i++) {
		double v[META_ALL];
		ev_mutation_factors(&opts, &table, &rng, v);
		int changed = 0;
		for (int k = 0; k < META_COUNT; k++) {
			assert_true(v[k] >= 0.3 && v[k] <= 3.0);
			if (table.k[k].gain == 0) {
				assert_true(v[k] == 1.0); /* frozen */
				continue;
			}
			genes++;
			mutated += v[k] != 1.0;
			changed |= v[k] != 1.0;
		}
		assert_true(changed);
		if (v[META_lr0] != 1.0) {
			sq_lr0 += (v[META_lr0] - 1) * (v[META_lr0] - 1);
			n_lr0++;
		}
		if (v[META_momentum] != 1.0) {
			sq_momentum += (v[META_momentum] - 1) * (v[META_momentum] - 1);
			n_momentum++;
		}
	}
	/* fraction mutated = mp (the redraw of all-ones draws is negligible) */
	assert_true(fabs((double)mutated / genes - 0.8) < 0.01);
	/* E[(g N U1 s)^2] = g^2 s^2 E[N^2] E[U1^2] = g^2 * 0.04 / 3 */
	assert_true(fabs(sq_lr0 / n_lr0 / (0.04 / 3) - 1) < 0.05);
	assert_true(fabs(sq_momentum / n_momentum / (0.09 * 0.04 / 3) - 1) < 0.05);
}

static void test_mutation_redraws_until_change(void **state)
{
	(void)state;
	struct meta_table table;
	meta_table_default(&table);
	struct ev_breed_opts opts;
	ev_breed_opts_default(&opts);
	opts.mutation_prob = 1e-3; /* most draws change nothing and are redrawn */
	struct ut_pcg rng;
	ut_pcg_seed(&rng, 5, 5);
	for (int i = 0; i < 200; i++) {
		double v[META_ALL];
		ev_mutation_factors(&opts, &table, &rng, v);
		int changed = 0;
		for (int k = 0; k < META_COUNT; k++)
			changed |= v[k] != 1.0;
		assert_true(changed);
	}
}

static void test_breed_generation0_is_base(void **state)
{
	(void)state;
	struct meta_table table;
	meta_table_default(&table);
	struct ev_breed_opts opts;
	ev_breed_opts_default(&opts);
	struct meta_hyp base, child;
	scratch_low(&base);
	long parent = 99;
	assert_int_equal(ev_breed(&opts, &table, &base, NULL, 0, 1, 0, &child, &parent, NULL), 0);
	assert_memory_equal(&child, &base, sizeof(base));
	assert_int_equal(parent, -1);
	/* with nothing finished yet a later generation mutates the base */
	assert_int_equal(ev_breed(&opts, &table, &base, NULL, 0, 1, 1, &child, &parent, NULL), 0);
	assert_int_equal(parent, -1);
	assert_memory_not_equal(&child, &base, sizeof(base));
}

static int has_5_decimals(double x)
{
	return ut_round5(x) == x;
}

/* Children always sit inside the bounds, rounded; frozen keys never move. */
static void test_breed_bounds_and_frozen(void **state)
{
	(void)state;
	struct meta_table table;
	meta_table_default(&table);
	struct ev_breed_opts opts;
	ev_breed_opts_default(&opts);
	opts.sigma = 2.0; /* large steps hit the bounds often */
	struct meta_hyp base;
	scratch_low(&base);
	struct ev_scored pool[3];
	for (int i = 0; i < 3; i++) {
		pool[i].generation = i;
		pool[i].fitness = i < 2 ? 0.3 : 0.1; /* the two bound-hugging parents win */
		for (int k = 0; k < META_COUNT; k++)
			pool[i].hyp.v[k] = i == 0   ? table.k[k].lower
					   : i == 1 ? table.k[k].upper
						    : base.v[k];
	}
	int at_lower = 0, at_upper = 0;
	for (long g = 1; g < 3000; g++) {
		struct meta_hyp child;
		long parent;
		assert_int_equal(
		    ev_breed(&opts, &table, &base, pool, 3, 11, g, &child, &parent, NULL), 0);
		assert_true(parent >= 0 && parent < 3);
		const struct ev_scored *from = NULL; /* ev_breed sorted the pool */
		for (int i = 0; i < 3; i++)
			if (pool[i].generation == parent)
				from = &pool[i];
		assert_non_null(from);
		for (int k = 0; k < META_COUNT; k++) {
			assert_true(child.v[k] >= table.k[k].lower &&
				    child.v[k] <= table.k[k].upper);
			assert_true(has_5_decimals(child.v[k]));
			if (table.k[k].gain == 0)
				assert_true(child.v[k] == from->hyp.v[k]);
		}
		at_lower += child.v[META_lr0] == table.k[META_lr0].lower;
		at_upper += child.v[META_lr0] == table.k[META_lr0].upper;
	}
	assert_true(at_lower > 0 && at_upper > 0);
}

/* The parent is one of the top n, chosen with w = f - min(f) + 1e-6. */
static void test_breed_parent_frequencies(void **state)
{
	(void)state;
	struct meta_table table;
	meta_table_default(&table);
	struct ev_breed_opts opts;
	ev_breed_opts_default(&opts);
	struct meta_hyp base;
	scratch_low(&base);
	const double fitness[7] = {0.30, 0.10, 0.50, 0.20, 0.05, 0.40, 0.01};
	long picks[7] = {0};
	const int n = 20000;
	for (long g = 1; g <= n; g++) {
		struct ev_scored pool[7];
		for (int i = 0; i < 7; i++)
			pool[i] = (struct ev_scored){i, fitness[i], base};
		struct meta_hyp child;
		long parent;
		assert_int_equal(
		    ev_breed(&opts, &table, &base, pool, 7, 3, g, &child, &parent, NULL), 0);
		picks[parent]++;
	}
	/* top 5: 0.5, 0.4, 0.3, 0.2, 0.1; weights 0.4, 0.3, 0.2, 0.1, ~0 of 1.0 */
	assert_int_equal(picks[4], 0);
	assert_int_equal(picks[6], 0);
	assert_true(fabs(picks[2] / (double)n - 0.4) < 0.015);
	assert_true(fabs(picks[5] / (double)n - 0.3) < 0.015);
	assert_true(fabs(picks[0] / (double)n - 0.2) < 0.015);
	assert_true(fabs(picks[3] / (double)n - 0.1) < 0.01);
	assert_true(picks[1] < n / 1000);
}

/* Weighted parent: the w-weighted mean of the top n, then mutated. */
static void test_breed_weighted_mean(void **state)
{
	(void)state;
	struct meta_table table;
	meta_table_default(&table);
	struct ev_breed_opts opts;
	ev_breed_opts_default(&opts);
	opts.parent = EV_PARENT_WEIGHTED;
	struct meta_hyp base;
	scratch_low(&base);
	struct ev_scored pool[2] = {{4, 0.3, base}, {9, 0.1, base}};
	pool[0].hyp.v[META_lr0] = 0.02;
	pool[1].hyp.v[META_lr0] = 0.01;
	struct meta_hyp child;
	long parent;
	assert_int_equal(ev_breed(&opts, &table, &base, pool, 2, 8, 12, &child, &parent, NULL), 0);
	assert_int_equal(parent, 4);
	/* replay the generation's stream: no draw is spent on a weighted parent */
	struct ut_pcg rng;
	ut_pcg_stream(&rng, 8, 12, UT_PCG_BREED);
	double v[META_ALL];
	ev_mutation_factors(&opts, &table, &rng, v);
	double w0 = 0.2 + 1e-6, w1 = 1e-6;
	double mean = (0.02 * w0 + 0.01 * w1) / (w0 + w1);
	assert_true(child.v[META_lr0] == ut_round5(mean * v[META_lr0]));
	assert_true(child.v[META_momentum] == ut_round5(fmin(0.98, 0.937 * v[META_momentum])));
}

static void test_breed_deterministic_and_order_free(void **state)
{
	(void)state;
	struct meta_table table;
	meta_table_default(&table);
	struct ev_breed_opts opts;
	ev_breed_opts_default(&opts);
	struct meta_hyp base;
	scratch_low(&base);
	struct ev_scored a[4], b[4];
	for (int i = 0; i < 4; i++) {
		a[i] = (struct ev_scored){i, 0.1 + 0.05 * i, base};
		a[i].hyp.v[META_lr0] = 0.01 + 0.001 * i;
		b[3 - i] = a[i];
	}
	struct meta_hyp x, y;
	long px, py;
	assert_int_equal(ev_breed(&opts, &table, &base, a, 4, 42, 10, &x, &px, NULL), 0);
	assert_int_equal(ev_breed(&opts, &table, &base, b, 4, 42, 10, &y, &py, NULL), 0);
	assert_memory_equal(&x, &y, sizeof(x));
	assert_int_equal(px, py);
	assert_int_equal(ev_breed(&opts, &table, &base, a, 4, 43, 10, &y, &py, NULL), 0);
	assert_memory_not_equal(&x, &y, sizeof(x));
}

static void test_breed_rejects_impossible_mutation(void **state)
{
	(void)state;
	struct meta_table table;
	meta_table_default(&table);
	struct ev_breed_opts opts;
	ev_breed_opts_default(&opts);
	struct meta_hyp base, child;
	scratch_low(&base);
	long parent;
	struct ut_err err;
	for (int k = 0; k < META_COUNT; k++)
		table.k[k].gain = 0;
	assert_int_equal(ev_breed(&opts, &table, &base, NULL, 0, 1, 3, &child, &parent, &err), -1);
	assert_non_null(strstr(err.msg, "gain"));
	meta_table_default(&table);
	opts.sigma = 0;
	assert_int_equal(ev_breed(&opts, &table, &base, NULL, 0, 1, 3, &child, &parent, &err), -1);
	assert_non_null(strstr(err.msg, "sigma"));
}

static void test_constrain_rounds_like_python(void **state)
{
	(void)state;
	struct meta_table table;
	meta_table_default(&table);
	struct meta_hyp hyp;
	scratch_low(&hyp);
	hyp.v[META_lr0] = 0.0123456789;
	hyp.v[META_momentum] = 0.99; /* above 0.98 */
	hyp.v[META_box] = 0.001;     /* below 0.02 */
	ev_constrain(&table, &hyp);
	assert_true(hyp.v[META_lr0] == 0.01235);
	assert_true(hyp.v[META_momentum] == 0.98);
	assert_true(hyp.v[META_box] == 0.02);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_pcg_reference_outputs),
	    cmocka_unit_test(test_pcg_save_restore),
	    cmocka_unit_test(test_pcg_streams_differ),
	    cmocka_unit_test(test_pcg_uniform_normal_moments),
	    cmocka_unit_test(test_pcg_below_and_choice),
	    cmocka_unit_test(test_fitness),
	    cmocka_unit_test(test_mutation_statistics),
	    cmocka_unit_test(test_mutation_redraws_until_change),
	    cmocka_unit_test(test_breed_generation0_is_base),
	    cmocka_unit_test(test_breed_bounds_and_frozen),
	    cmocka_unit_test(test_breed_parent_frequencies),
	    cmocka_unit_test(test_breed_weighted_mean),
	    cmocka_unit_test(test_breed_deterministic_and_order_free),
	    cmocka_unit_test(test_breed_rejects_impossible_mutation),
	    cmocka_unit_test(test_constrain_rounds_like_python),
	    cmocka_unit_test(test_space_fitness),
	    cmocka_unit_test(test_breed_ultralytics),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
