/*
 * test_train.c - the pure parts of train.c: model.half().float() rounding
 * and increment_path. The training run itself is tested end to end
 * (tests/e2e/train_e2e.sh).
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "ops.h"
#include "pcg.h"
#include "safetensors.h"
#include "train.h"

/* An IEEE half's value, decoded independently of the code under test. */
static double half_value(uint16_t bits)
{
	int sign = bits >> 15, exponent = (bits >> 10) & 31, mantissa = bits & 1023;
	double v;
	if (exponent == 0)
		v = ldexp(mantissa, -24);
	else if (exponent == 31)
		v = mantissa ? NAN : INFINITY;
	else
		v = ldexp(1024 + mantissa, exponent - 25);
	return sign ? -v : v;
}

/* Every finite half value comes back unchanged. */
static void test_halves_are_fixed_points(void **state)
{
	(void)state;
	for (uint32_t bits = 0; bits < 65536; bits++) {
		double v = half_value((uint16_t)bits);
		if (!isfinite(v))
			continue;
		assert_true((double)tr_round_to_half((float)v) == v);
	}
}

/* Any float rounds to the nearest half, ties to the even mantissa. */
static void test_rounds_to_nearest_even(void **state)
{
	(void)state;
	/* the halves sorted by value: the positive ones in bit order */
	struct ut_pcg rng;
	ut_pcg_seed(&rng, 7, 1);
	for (int i = 0; i < 200000; i++) {
		uint32_t lo = ut_pcg_below(&rng, 0x7bff); /* below the largest finite half */
		double a = half_value((uint16_t)lo), b = half_value((uint16_t)(lo + 1));
		double frac = ut_pcg_uniform(&rng);
		if (i % 7 == 0)
			frac = 0.5; /* a tie */
		float x = (float)(a + (b - a) * frac);
		double got = tr_round_to_half(x);
		double da = fabs((double)x - a), db = fabs(b - (double)x);
		double want = da < db ? a : db < da ? b : ((lo & 1) == 0 ? a : b);
		assert_true(got == want);
		assert_true((double)tr_round_to_half(-x) == -want);
	}
	assert_true(isinf(tr_round_to_half(65520.0f)));
	assert_true(tr_round_to_half(65519.0f) == 65504.0f);
	assert_true(tr_round_to_half(1e-9f) == 0.0f);
	assert_true(isnan(tr_round_to_half(NAN)));
}

static void test_increment_path(void **state)
{
	(void)state;
	char dir[] = "/tmp/ye-train-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char base[256], got[300], want[300];
	snprintf(base, sizeof(base), "%s/exp", dir);
	tr_train_increment_path(base, false, got, sizeof(got));
	assert_string_equal(got, base); /* free */
	assert_int_equal(mkdir(base, 0777), 0);
	tr_train_increment_path(base, true, got, sizeof(got));
	assert_string_equal(got, base); /* exist_ok */
	tr_train_increment_path(base, false, got, sizeof(got));
	snprintf(want, sizeof(want), "%s2", base);
	assert_string_equal(got, want);
	assert_int_equal(mkdir(want, 0777), 0);
	tr_train_increment_path(base, false, got, sizeof(got));
	snprintf(want, sizeof(want), "%s3", base);
	assert_string_equal(got, want);
	snprintf(want, sizeof(want), "%s2", base);
	rmdir(want);
	rmdir(base);
	rmdir(dir);
}

/* --multi-scale's resize against torch's F.interpolate (tests/data/bilinear_golden.py). */
static void test_bilinear_matches_torch(void **state)
{
	(void)state;
	char path[4096];
	snprintf(path, sizeof(path), "%s/tests/data/bilinear.safetensors",
		 getenv("YE_SOURCE_ROOT"));
	struct tr_st_file *file;
	struct ut_err err;
	assert_int_equal(tr_st_open(path, &file, &err), 0);
	struct tr_backend *cpu = NULL;
	if (tr_cpu_backend_create(2, &cpu, &err) != 0)
		fail_msg("%s", err.msg);
	const struct tr_st_tensor *in = tr_st_find(file, "input");
	assert_non_null(in);
	int planes = (int)(in->shape[0] * in->shape[1]), ih = (int)in->shape[2],
	    iw = (int)in->shape[3];
	static const int sizes[][2] = {{8, 11}, {3, 4}, {12, 20}};
	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		char name[32];
		snprintf(name, sizeof(name), "out_%dx%d", sizes[k][0], sizes[k][1]);
		const struct tr_st_tensor *want = tr_st_find(file, name);
		assert_non_null(want);
		float *got = malloc(want->numel * sizeof(float));
		tr_resize_bilinear(in->data, planes, ih, iw, got, sizes[k][0], sizes[k][1]);
		const float *ref = want->data;
		for (size_t i = 0; i < want->numel; i++)
			assert_true(fabsf(got[i] - ref[i]) <= 1e-6f);
		/* the backend's op, what training runs: the same bits */
		float *op = malloc(want->numel * sizeof(float));
		struct tr_tensor x = {(float *)in->data, {1, planes, ih, iw}};
		struct tr_tensor y = {op, {1, planes, sizes[k][0], sizes[k][1]}};
		if (cpu->ops->resize_bilinear(cpu, &x, &y, &err) != 0)
			fail_msg("%s", err.msg);
		assert_memory_equal(op, got, want->numel * sizeof(float));
		free(op);
		free(got);
	}
	/* the same size is a copy */
	float *same = malloc(in->numel * sizeof(float));
	tr_resize_bilinear(in->data, planes, ih, iw, same, ih, iw);
	assert_memory_equal(same, in->data, in->numel * sizeof(float));
	free(same);
	tr_backend_destroy(cpu);
	tr_st_close(file);
}

/*
 * --quad's collate op against collate_fn4 written out here: quad 0 tiled
 * (four floats images), quad 1 image 4 upsampled (tr_resize_bilinear on its
 * bytes, truncated to bytes, / 255).
 */
static void test_quad_collate(void **state)
{
	(void)state;
	enum { N = 8, C = 3, H = 5, W = 6 };
	static uint8_t bytes[N * C * H * W];
	static float floats[N * C * H * W], got[N / 4 * C * 4 * H * W], want[N / 4 * C * 4 * H * W];
	struct ut_pcg rng;
	ut_pcg_seed(&rng, 5, 9);
	for (size_t i = 0; i < sizeof(bytes); i++) {
		bytes[i] = (uint8_t)ut_pcg_below(&rng, 256);
		floats[i] = (float)bytes[i] / 255.0f;
	}
	const size_t plane = H * W, big = 4 * plane;
	for (int k = 0; k < 4; k++) /* quad 0: tiled */
		for (int c = 0; c < C; c++)
			for (int y = 0; y < H; y++)
				for (int x = 0; x < W; x++)
					want[c * big + ((k & 1) * H + y) * 2 * W + (k >> 1) * W +
					     x] = floats[((k * C + c) * H + y) * W + x];
	static float src[C * H * W];
	for (size_t i = 0; i < C * plane; i++) /* quad 1: image 4 upsampled */
		src[i] = bytes[4 * C * plane + i];
	tr_resize_bilinear(src, C, H, W, want + C * big, 2 * H, 2 * W);
	for (size_t i = 0; i < C * big; i++)
		want[C * big + i] = (float)(uint8_t)want[C * big + i] / 255.0f;
	struct ut_err err;
	struct tr_backend *cpu = NULL;
	if (tr_cpu_backend_create(2, &cpu, &err) != 0)
		fail_msg("%s", err.msg);
	const uint8_t upsample[2] = {0, 1};
	struct tr_tensor images = {floats, {N, C, H, W}};
	if (cpu->ops->quad_collate(cpu, bytes, &images, upsample, got, &err) != 0)
		fail_msg("%s", err.msg);
	assert_memory_equal(got, want, sizeof(got));
	struct tr_tensor three = {floats, {3, C, H, W}};
	assert_int_equal(cpu->ops->quad_collate(cpu, bytes, &three, upsample, got, &err), -1);
	tr_backend_destroy(cpu);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_quad_collate),
	    cmocka_unit_test(test_halves_are_fixed_points),
	    cmocka_unit_test(test_rounds_to_nearest_even),
	    cmocka_unit_test(test_increment_path),
	    cmocka_unit_test(test_bilinear_matches_torch),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
