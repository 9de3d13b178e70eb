/*
 * test_gp.c - the Gaussian-process model of `--algorithm guided`
 * (evolve/gp.h): the Cholesky factor, predictions of a smooth function from
 * noisy samples (error against the noise-free function, the spread small
 * at the data and large far from it), relevance weights that find the keys
 * that matter, and the cases with no model.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gp.h"
#include "pcg.h"

#define D 6

/* The function the tests sample: only keys 0 and 1 of D matter. */
static double truth(const double *u)
{
	return 0.4 - 0.8 * (u[0] - 0.7) * (u[0] - 0.7) - 0.4 * (u[1] - 0.3) * (u[1] - 0.3);
}

/* n points uniform in [0, 1]^D with truth + noise * N(0, 1). */
static void sample(uint64_t seed, int n, double noise, double *x, double *y)
{
	struct ut_pcg rng;
	ut_pcg_seed(&rng, seed, 54);
	for (int i = 0; i < n; i++) {
		for (int q = 0; q < D; q++)
			x[i * D + q] = ut_pcg_uniform(&rng);
		y[i] = truth(x + i * D) + noise * ut_pcg_normal(&rng);
	}
}

/* Root mean squared error of the model's mean against truth at 200 fresh points. */
static double rmse(struct ev_gp *gp, uint64_t seed)
{
	double x[200 * D], y[200], sum = 0;
	sample(seed, 200, 0, x, y);
	for (int i = 0; i < 200; i++) {
		double mean, sd;
		ev_gp_predict(gp, x + i * D, &mean, &sd);
		sum += (mean - y[i]) * (mean - y[i]);
	}
	return sqrt(sum / 200);
}

static void cholesky(void **state)
{
	(void)state;
	const double a[9] = {4, 2, -2, 2, 10, 4, -2, 4, 9};
	double l[9], back[9] = {0};
	assert_int_equal(ev_cholesky(a, 3, l), 0);
	for (int i = 0; i < 3; i++)
		for (int j = 0; j < 3; j++) {
			for (int k = 0; k < 3; k++)
				back[i * 3 + j] += l[i * 3 + k] * l[j * 3 + k];
			assert_true(fabs(back[i * 3 + j] - a[i * 3 + j]) < 1e-12);
			if (j > i)
				assert_true(l[i * 3 + j] == 0);
		}
	const double indefinite[4] = {1, 2, 2, 1};
	assert_int_equal(ev_cholesky(indefinite, 2, l), -1);
}

static void predicts_smooth_function(void **state)
{
	(void)state;
	enum { N = 80 };
	double x[N * D], y[N], sd_y = 0, mean_y = 0;
	sample(1, N, 0.02, x, y);
	for (int i = 0; i < N; i++)
		mean_y += y[i] / N;
	for (int i = 0; i < N; i++)
		sd_y += (y[i] - mean_y) * (y[i] - mean_y) / N;
	sd_y = sqrt(sd_y);
	struct ut_err err = {0};
	struct ev_gp gp;
	assert_int_equal(ev_gp_fit(&gp, x, y, N, D, 0, &err), 1);
	/* the model explains most of the spread: its error a fraction of the data's sd */
	double e = rmse(&gp, 2);
	assert_true(e < 0.5 * sd_y);
	/* at a data point the spread is small, far outside the data it is about the data's sd */
	double mean, sd_at, sd_far;
	ev_gp_predict(&gp, x, &mean, &sd_at);
	double far[D] = {5, -5, 5, -5, 5, -5};
	ev_gp_predict(&gp, far, &mean, &sd_far);
	assert_true(sd_at < 0.5 * sd_far);
	assert_true(fabs(sd_far - sd_y) < 0.01 * sd_y);
	assert_true(fabs(mean - mean_y) < 1e-6); /* far away: the data's mean */
	ev_gp_free(&gp);
}

static void relevance_finds_keys(void **state)
{
	(void)state;
	enum { N = 60 };
	double x[N * D], y[N];
	sample(3, N, 0.02, x, y);
	struct ut_err err = {0};
	struct ev_gp plain, weighed;
	assert_int_equal(ev_gp_fit(&plain, x, y, N, D, 0, &err), 1);
	assert_int_equal(ev_gp_fit(&weighed, x, y, N, D, 1, &err), 1);
	/* keys 0 and 1 weigh more than any of the four that do not matter */
	for (int q = 2; q < D; q++) {
		assert_true(weighed.weight[q] < weighed.weight[0]);
		assert_true(weighed.weight[q] < weighed.weight[1]);
	}
	for (int q = 0; q < D; q++)
		assert_true(plain.weight[q] == 1);
	/* and it predicts better than one scale for all keys */
	assert_true(rmse(&weighed, 4) < rmse(&plain, 4));
	ev_gp_free(&plain);
	ev_gp_free(&weighed);
}

static void no_model(void **state)
{
	(void)state;
	double x[3 * D] = {0}, y[3] = {0.5, 0.5, 0.5};
	struct ut_err err = {0};
	struct ev_gp gp;
	assert_int_equal(ev_gp_fit(&gp, x, y, 3, D, 1, &err), 0); /* all equal */
	ev_gp_free(&gp);
	assert_int_equal(ev_gp_fit(&gp, x, y, 1, D, 1, &err), 0); /* one point */
	ev_gp_free(&gp);
	y[1] = NAN;
	assert_int_equal(ev_gp_fit(&gp, x, y, 3, D, 1, &err), 0); /* not finite */
	ev_gp_free(&gp);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(cholesky), cmocka_unit_test(predicts_smooth_function),
	    cmocka_unit_test(relevance_finds_keys), cmocka_unit_test(no_model)};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
