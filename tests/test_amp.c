/*
 * test_amp.c - the --amp parser and the loss scaler (trainer/nn/amp.c)
 * against torch's GradScaler rules (torch/amp/grad_scaler.py and its
 * _amp_update_scale_ / _amp_foreach_non_finite_check_and_unscale_
 * kernels): skipped steps back the scale off, growth_interval good steps
 * in a row grow it, growth never reaches inf, products are taken in double
 * and rounded to fp32, unscaling multiplies by the fp32 inverse (which
 * differs from dividing), and the call order torch enforces.
 *
 * The expected values are worked out by hand from those rules (the
 * non-obvious fp32 roundings with numpy, noted where used). Debian 12's
 * python3-torch (1.13) cannot produce them: its _amp_update_scale_ has no
 * CPU kernel, and its GradScaler disables itself without CUDA.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "amp.h"
#include "ut.h"

static void init(struct tr_amp_scaler *scaler, enum tr_amp_mode mode,
		 const struct tr_amp_scaler_config *config)
{
	struct ut_err err = {{0}};
	if (tr_amp_scaler_init(scaler, mode, config, &err) < 0)
		fail_msg("%s", err.msg);
}

/* One iteration of YOLOv5's loop with one gradient: unscale, step, update; returns do_step. */
static int iterate(struct tr_amp_scaler *scaler, float grad)
{
	struct ut_err err = {{0}};
	int do_step = -1;
	assert_int_equal(tr_amp_unscale(scaler, &grad, 1, &err), 0);
	assert_int_equal(tr_amp_step(scaler, NULL, 0, &do_step, &err), 0);
	assert_int_equal(tr_amp_update(scaler, &err), 0);
	return do_step;
}

static void test_parse(void **state)
{
	(void)state;
	static const char *const good[] = {"off", "fp16", "bf16"};
	static const enum tr_amp_mode modes[] = {TR_AMP_OFF, TR_AMP_FP16, TR_AMP_BF16};
	static const char *const bad[] = {"", "FP16", "fp32", "fp16 ", "on", "half", "bfloat16"};
	for (int i = 0; i < 3; i++) {
		enum tr_amp_mode mode = TR_AMP_OFF;
		struct ut_err err = {{0}};
		assert_int_equal(tr_amp_parse(good[i], &mode, &err), 0);
		assert_int_equal(mode, modes[i]);
		assert_string_equal(tr_amp_mode_name(mode), good[i]);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		enum tr_amp_mode mode = TR_AMP_BF16;
		struct ut_err err = {{0}};
		assert_int_equal(tr_amp_parse(bad[i], &mode, &err), -1);
		assert_int_equal(mode, TR_AMP_BF16); /* untouched */
		assert_non_null(strstr(err.msg, "--amp"));
		assert_non_null(strstr(err.msg, "off, fp16, bf16"));
		assert_null(strchr(err.msg, '\n'));
	}
	assert_true(tr_amp_mode_scaled(TR_AMP_FP16));
	assert_false(tr_amp_mode_scaled(TR_AMP_BF16));
	assert_false(tr_amp_mode_scaled(TR_AMP_OFF));
}

/* YOLOv5's defaults; scaling the loss and unscaling exact powers of two. */
static void test_defaults_and_unscale(void **state)
{
	(void)state;
	struct tr_amp_scaler scaler;
	struct ut_err err = {{0}};
	float grads[] = {65536.0f, -32768.0f, 1.0f, 0.0f};
	int do_step = -1;

	init(&scaler, TR_AMP_FP16, NULL);
	assert_true(scaler.enabled);
	assert_true(scaler.scale == 65536.0f);
	assert_int_equal(scaler.growth_tracker, 0);
	assert_true(tr_amp_scale_loss(&scaler, 1.5f) == 98304.0f);
	assert_true(tr_amp_inv_scale(&scaler) == 0x1p-16f);
	assert_int_equal(tr_amp_unscale(&scaler, grads, 4, &err), 0);
	assert_true(grads[0] == 1.0f && grads[1] == -0.5f && grads[2] == 0x1p-16f &&
		    grads[3] == 0.0f);
	/* step after an explicit unscale does not unscale again */
	assert_int_equal(tr_amp_step(&scaler, grads, 4, &do_step, &err), 0);
	assert_int_equal(do_step, 1);
	assert_true(grads[0] == 1.0f);
	assert_int_equal(tr_amp_update(&scaler, &err), 0);
	assert_true(scaler.scale == 65536.0f);
	assert_int_equal(scaler.growth_tracker, 1);
	assert_int_equal(scaler.steps_skipped, 0);
}

/* inf or nan anywhere: every gradient is still multiplied, the step is skipped, the scale halves.
 */
static void test_skip_and_backoff(void **state)
{
	(void)state;
	struct tr_amp_scaler scaler;
	struct ut_err err = {{0}};
	float grads[] = {131072.0f, INFINITY, 4.0f};
	int do_step = -1;

	init(&scaler, TR_AMP_FP16, NULL);
	assert_int_equal(iterate(&scaler, 1.0f), 1); /* growth_tracker 1 */
	/* step unscales when unscale was not called */
	assert_int_equal(tr_amp_step(&scaler, grads, 3, &do_step, &err), 0);
	assert_int_equal(do_step, 0);
	assert_true(grads[0] == 2.0f && isinf(grads[1]) && grads[2] == 0x1p-14f);
	assert_int_equal(tr_amp_update(&scaler, &err), 0);
	assert_true(scaler.scale == 32768.0f);
	assert_int_equal(scaler.growth_tracker, 0);
	assert_int_equal(scaler.steps_skipped, 1);
	/* nan, negative inf too */
	assert_int_equal(iterate(&scaler, NAN), 0);
	assert_true(scaler.scale == 16384.0f);
	assert_int_equal(iterate(&scaler, -INFINITY), 0);
	assert_true(scaler.scale == 8192.0f);
	assert_int_equal(scaler.steps_skipped, 3);
	/* the largest finite float is fine */
	assert_int_equal(iterate(&scaler, 0x1.fffffep127f), 1);
	assert_true(scaler.scale == 8192.0f);
	assert_int_equal(scaler.growth_tracker, 1);
}

/* growth_interval 2000: the 2000th good step in a row doubles the scale, one bad one resets. */
static void test_growth_interval(void **state)
{
	(void)state;
	struct tr_amp_scaler scaler;

	init(&scaler, TR_AMP_FP16, NULL);
	for (int i = 0; i < 1999; i++)
		assert_int_equal(iterate(&scaler, 1.0f), 1);
	assert_true(scaler.scale == 65536.0f);
	assert_int_equal(scaler.growth_tracker, 1999);
	iterate(&scaler, 1.0f);
	assert_true(scaler.scale == 131072.0f);
	assert_int_equal(scaler.growth_tracker, 0);
	iterate(&scaler, INFINITY);
	assert_true(scaler.scale == 65536.0f);
	for (int i = 0; i < 1000; i++)
		iterate(&scaler, 1.0f);
	iterate(&scaler, NAN); /* 1000 good steps forgotten */
	assert_true(scaler.scale == 32768.0f);
	assert_int_equal(scaler.growth_tracker, 0);
	for (int i = 0; i < 1999; i++)
		iterate(&scaler, 1.0f);
	assert_true(scaler.scale == 32768.0f);
	iterate(&scaler, 1.0f);
	assert_true(scaler.scale == 65536.0f);
}

/* A short interval, good (1) and bad (0) steps mixed: the scale and tracker after each update. */
static void test_sequence(void **state)
{
	(void)state;
	static const int good[] = {1, 1, 1, 0, 1, 0, 0, 1, 1, 1};
	static const float scales[] = {65536, 65536, 131072, 65536, 65536,
				       32768, 16384, 16384,  16384, 32768};
	static const int trackers[] = {1, 2, 0, 0, 1, 0, 0, 1, 2, 0};
	struct tr_amp_scaler_config config = {65536.0f, 2.0, 0.5, 3};
	struct tr_amp_scaler scaler;

	init(&scaler, TR_AMP_FP16, &config);
	for (int i = 0; i < 10; i++) {
		assert_int_equal(iterate(&scaler, good[i] ? 1.0f : INFINITY), good[i]);
		assert_true(scaler.scale == scales[i]);
		assert_int_equal(scaler.growth_tracker, trackers[i]);
	}
	assert_int_equal(scaler.steps_skipped, 3);
}

/*
 * Factors that are not powers of two: products in double rounded to fp32
 * (numpy: float32(float(675) * 0.3) = 202.5, where fp32 math gives
 * 202.50002), and unscaling by the fp32 inverse of 202.5, 0x1.43a274p-8,
 * which gives 3 -> 0x1.e573aep-7 where 3 / 202.5 in fp32 is 0x1.e573acp-7.
 */
static void test_rounding(void **state)
{
	(void)state;
	struct tr_amp_scaler_config config = {1000.0f, 1.5, 0.3, 1};
	struct tr_amp_scaler scaler;
	struct ut_err err = {{0}};
	float grads[] = {3.0f, 7.0f, 0.1f};

	init(&scaler, TR_AMP_FP16, &config);
	iterate(&scaler, 1.0f);
	assert_true(scaler.scale == 1500.0f);
	iterate(&scaler, 1.0f);
	assert_true(scaler.scale == 2250.0f);
	iterate(&scaler, NAN);
	assert_true(scaler.scale == 675.0f);
	iterate(&scaler, NAN);
	assert_true(scaler.scale == 202.5f);
	assert_true(tr_amp_inv_scale(&scaler) == 0x1.43a274p-8f);
	assert_int_equal(tr_amp_unscale(&scaler, grads, 3, &err), 0);
	assert_true(grads[0] == 0x1.e573aep-7f);
	assert_true(grads[1] == 0x1.1b2e26p-5f);
	assert_true(grads[2] == 0x1.02e85ep-11f);
}

/* Growth stops below inf; backoff goes down to the smallest subnormal, then 0. */
static void test_limits(void **state)
{
	(void)state;
	struct tr_amp_scaler_config top = {0x1p127f, 1.5, 0.5, 1};
	struct tr_amp_scaler scaler;

	init(&scaler, TR_AMP_FP16, &top);
	iterate(&scaler, 1.0f);
	assert_true(scaler.scale == 0x1.8p127f);
	iterate(&scaler, 1.0f); /* 2.25 * 2^127 overflows: kept, tracker reset */
	assert_true(scaler.scale == 0x1.8p127f);
	assert_int_equal(scaler.growth_tracker, 0);

	init(&scaler, TR_AMP_FP16, NULL);
	for (int i = 0; i < 16 + 149; i++)
		iterate(&scaler, INFINITY);
	assert_true(scaler.scale == 0x1p-149f);
	iterate(&scaler, INFINITY); /* 2^-150 rounds to even: 0 */
	assert_true(scaler.scale == 0.0f);
}

/* The call order torch enforces: each misuse is an error, and changes nothing. */
static void test_order(void **state)
{
	(void)state;
	struct tr_amp_scaler scaler;
	struct ut_err err = {{0}};
	float grad = 65536.0f;
	int do_step = -1;

	init(&scaler, TR_AMP_FP16, NULL);
	assert_int_equal(tr_amp_update(&scaler, &err), -1); /* no inf check yet */
	assert_non_null(strstr(err.msg, "update"));
	assert_int_equal(tr_amp_unscale(&scaler, &grad, 1, &err), 0);
	assert_int_equal(tr_amp_unscale(&scaler, &grad, 1, &err), -1);
	assert_non_null(strstr(err.msg, "twice"));
	assert_true(grad == 1.0f); /* not unscaled twice */
	assert_int_equal(tr_amp_step(&scaler, &grad, 1, &do_step, &err), 0);
	assert_int_equal(tr_amp_step(&scaler, &grad, 1, &do_step, &err), -1);
	assert_non_null(strstr(err.msg, "step"));
	assert_int_equal(tr_amp_unscale(&scaler, &grad, 1, &err), -1);
	assert_non_null(strstr(err.msg, "after step"));
	assert_int_equal(tr_amp_record_unscaled(&scaler, 1, &err), -1);
	assert_int_equal(tr_amp_update(&scaler, &err), 0);
	assert_true(scaler.scale == 65536.0f); /* the recorded check was the good one */
	/* update right after unscale, without step, is allowed (torch's found_inf is recorded) */
	assert_int_equal(tr_amp_record_unscaled(&scaler, 1, &err), 0);
	assert_int_equal(tr_amp_update(&scaler, &err), 0);
	assert_true(scaler.scale == 32768.0f);
	/* bad configurations */
	struct tr_amp_scaler_config bad[] = {
	    {65536.0f, 1.0, 0.5, 2000}, {65536.0f, 2.0, 1.0, 2000}, {0.0f, 2.0, 0.5, 2000},
	    {INFINITY, 2.0, 0.5, 2000}, {65536.0f, 2.0, 0.5, 0},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(tr_amp_scaler_init(&scaler, TR_AMP_FP16, &bad[i], &err), -1);
		assert_non_null(strstr(err.msg, "loss scaler"));
	}
}

/* bf16 and off: the identity; inf gradients are not even looked at, every step runs. */
static void test_disabled(void **state)
{
	(void)state;
	enum tr_amp_mode modes[] = {TR_AMP_BF16, TR_AMP_OFF};
	for (int m = 0; m < 2; m++) {
		struct tr_amp_scaler scaler;
		struct ut_err err = {{0}};
		float grads[] = {3.0f, INFINITY};
		int do_step = -1;
		init(&scaler, modes[m], NULL);
		assert_false(scaler.enabled);
		assert_true(tr_amp_scale_loss(&scaler, 1.5f) == 1.5f);
		assert_true(tr_amp_inv_scale(&scaler) == 1.0f);
		assert_int_equal(tr_amp_update(&scaler, &err), 0);
		assert_int_equal(tr_amp_unscale(&scaler, grads, 2, &err), 0);
		assert_int_equal(tr_amp_unscale(&scaler, grads, 2, &err), 0);
		assert_true(grads[0] == 3.0f);
		assert_int_equal(tr_amp_step(&scaler, grads, 2, &do_step, &err), 0);
		assert_int_equal(do_step, 1);
		assert_int_equal(tr_amp_step(&scaler, grads, 2, &do_step, &err), 0);
		assert_int_equal(tr_amp_update(&scaler, &err), 0);
		assert_true(scaler.scale == 65536.0f);
		assert_int_equal(scaler.steps_skipped, 0);
	}
}

/* The per-element rule a device kernel uses: multiply unless inv is exactly 1, flag non-finite. */
static void test_unscale_value(void **state)
{
	(void)state;
	int found = 0;
	assert_true(tr_amp_unscale_value(3.0f, 0.5f, &found) == 1.5f);
	assert_int_equal(found, 0);
	assert_true(isnan(tr_amp_unscale_value(NAN, 1.0f, &found)));
	assert_int_equal(found, 1);
	found = 0;
	assert_true(isinf(tr_amp_unscale_value(-INFINITY, 0.5f, &found)));
	assert_int_equal(found, 1);
	/* a finite gradient that overflows after the multiply is not flagged, as in torch */
	found = 0;
	assert_true(isinf(tr_amp_unscale_value(0x1p127f, 4.0f, &found)));
	assert_int_equal(found, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse),
	    cmocka_unit_test(test_defaults_and_unscale),
	    cmocka_unit_test(test_skip_and_backoff),
	    cmocka_unit_test(test_growth_interval),
	    cmocka_unit_test(test_sequence),
	    cmocka_unit_test(test_rounding),
	    cmocka_unit_test(test_limits),
	    cmocka_unit_test(test_order),
	    cmocka_unit_test(test_disabled),
	    cmocka_unit_test(test_unscale_value),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
