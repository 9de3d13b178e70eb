/*
 * test_ops.c - the CPU backend's ops (trainer/nn/ops.h), which are the
 * specification every other backend is compared against:
 *   - forward values against naive double-precision C references
 *     (convolution with YOLOv5's kernel/stride/pad combinations, max pool,
 *     batch norm with hand-computed statistics);
 *   - every backward against central finite differences of the double
 *     loss L = sum(y * r) with a fixed random r (so dL/dy = r);
 *   - parameter gradients accumulate (+=), activations assign (=);
 *   - PyTorch's conventions: running_var from the unbiased variance,
 *     max pool ties go to the first maximum in scan order, -inf padding;
 *   - Detect's inference decode against YOLOv5 v7.0's formulas;
 *   - the half-precision casts against torch's bits
 *     (tests/golden/half/casts.txt, tests/golden/make_half_golden.py), and
 *     every 16-bit pattern of both formats read back and cast again;
 *   - bit-identical results from two runs on two backends;
 *   - shape errors are reported, not crashed on.
 *
 * Tolerances (stated once): forward checks |ours - ref| <= 1e-5 + 1e-5 |ref|
 * (float32 against double); gradient checks |analytic - fd| <=
 * FD_TOL * max(1, |fd|), FD_TOL = 1e-3, with steps of 1e-2 (1e-3 for max
 * pool, whose inputs are spaced 0.01 or more apart so no step crosses a
 * tie). A wrong formula gives errors of order 1.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cpu/cpu.h"

#define FD_TOL 1e-3
#define FWD_ATOL 1e-5
#define FWD_RTOL 1e-5

/* ------------------------------------------------------------------------ */
/* helpers                                                                   */

struct rng {
	uint64_t state;
};

/* Uniform in [-1, 1) (PCG-style LCG, top bits). */
static float rng_uniform(struct rng *rng)
{
	rng->state = rng->state * 6364136223846793005ULL + 1442695040888963407ULL;
	return (float)((double)(rng->state >> 40) / (double)(1ULL << 24) * 2.0 - 1.0);
}

static float *rand_buf(size_t len, struct rng *rng)
{
	float *p = malloc(len * sizeof(*p));
	assert_non_null(p);
	for (size_t i = 0; i < len; i++)
		p[i] = rng_uniform(rng);
	return p;
}

static float *zero_buf(size_t len)
{
	float *p = calloc(len, sizeof(*p));
	assert_non_null(p);
	return p;
}

static float *copy_buf(const float *src, size_t len)
{
	float *p = malloc(len * sizeof(*p));
	assert_non_null(p);
	memcpy(p, src, len * sizeof(*p));
	return p;
}

static struct tr_backend *backend_layout(enum tr_cpu_layout layout)
{
	struct tr_backend *b = NULL;
	struct ut_err err = {{0}};
	int rc = layout == TR_CPU_LAYOUT_AUTO ? tr_cpu_backend_create(2, &b, &err)
					      : tr_cpu_backend_create_layout(2, layout, &b, &err);
	if (rc != 0)
		fail_msg("tr_cpu_backend_create: %s", err.msg);
	return b;
}

/* The default backend (TR_CPU_LAYOUT_AUTO). */
static struct tr_backend *backend(void)
{
	return backend_layout(TR_CPU_LAYOUT_AUTO);
}

/* Convolution tests run on every layout: each is a different oneDNN path. */
static const enum tr_cpu_layout layouts[] = {TR_CPU_LAYOUT_AUTO, TR_CPU_LAYOUT_PLAIN,
					     TR_CPU_LAYOUT_ANY};

/* Run an op whose last argument is &ok_err; fail the test with its message. */
#define OK(...)                                                                                    \
	do {                                                                                       \
		struct ut_err ok_err = {{0}};                                                      \
		if ((__VA_ARGS__) != 0)                                                            \
			fail_msg("%s failed: %s", #__VA_ARGS__, ok_err.msg);                       \
	} while (0)

static void assert_close_fwd(const char *what, const float *got, const double *want, size_t len)
{
	double worst = 0;
	for (size_t i = 0; i < len; i++) {
		double diff = fabs(got[i] - want[i]);
		if (diff > FWD_ATOL + FWD_RTOL * fabs(want[i]))
			fail_msg("%s[%zu] = %.9g, reference %.9g", what, i, got[i], want[i]);
		worst = diff > worst ? diff : worst;
	}
	print_message("  %s: max abs diff %.3g over %zu values\n", what, worst, len);
}

/*
 * A finite-difference problem: forward(ctx) recomputes y from the inputs
 * that check_grad perturbs in place; L = sum(y * r) in double.
 */
struct fd_case {
	void *ctx;
	void (*forward)(void *ctx);
	const float *y;
	size_t ylen;
	const float *r;
};

static double fd_loss(const struct fd_case *c)
{
	c->forward(c->ctx);
	double total = 0;
	for (size_t i = 0; i < c->ylen; i++)
		total += (double)c->y[i] * (double)c->r[i];
	return total;
}

static void check_grad(const char *what, const struct fd_case *c, float *input, size_t len,
		       const float *analytic, double step)
{
	double worst = 0;
	for (size_t i = 0; i < len; i++) {
		float saved = input[i];
		float up = (float)(saved + step), down = (float)(saved - step);
		input[i] = up;
		double loss_up = fd_loss(c);
		input[i] = down;
		double loss_down = fd_loss(c);
		input[i] = saved;
		double fd = (loss_up - loss_down) / ((double)up - (double)down);
		double rel = fabs(analytic[i] - fd) / fmax(1.0, fabs(fd));
		if (rel > FD_TOL)
			fail_msg("%s[%zu]: analytic %.7g, finite difference %.7g", what, i,
				 analytic[i], fd);
		worst = rel > worst ? rel : worst;
	}
	c->forward(c->ctx);
	print_message("  %s: max rel error %.3g over %zu values\n", what, worst, len);
}

/* ------------------------------------------------------------------------ */
/* convolution                                                               */

/* y[n,co,oh,ow] = bias[co] + sum x[n,ci,oh*s-p+i,ow*s-p+j] w[co,ci,i,j] */
static double *conv_reference(const struct tr_conv *cv, struct tr_shape in, const float *x,
			      const float *w, const float *bias)
{
	struct tr_shape out = tr_conv_out_shape(cv, in);
	double *y = calloc(tr_shape_numel(out), sizeof(*y));
	assert_non_null(y);
	for (int n = 0; n < out.n; n++)
		for (int co = 0; co < out.c; co++)
			for (int oh = 0; oh < out.h; oh++)
				for (int ow = 0; ow < out.w; ow++) {
					double acc = bias ? bias[co] : 0.0;
					for (int ci = 0; ci < in.c; ci++)
						for (int i = 0; i < cv->k; i++)
							for (int j = 0; j < cv->k; j++) {
								int ih =
								    oh * cv->stride - cv->pad + i;
								int iw =
								    ow * cv->stride - cv->pad + j;
								if (ih < 0 || iw < 0 ||
								    ih >= in.h || iw >= in.w)
									continue;
								acc +=
								    (double)
									x[((size_t)(n * in.c + ci) *
									       in.h +
									   ih) *
									      in.w +
									  iw] *
								    w[((size_t)(co * in.c + ci) *
									   cv->k +
								       i) *
									  cv->k +
								      j];
							}
					y[((size_t)(n * out.c + co) * out.h + oh) * out.w + ow] =
					    acc;
				}
	return y;
}

struct conv_case {
	const char *name;
	struct tr_conv conv;
	struct tr_shape in;
	int bias;
};

/* YOLOv5's first layer (k6 s2 p2), 1x1, 3x3 s1 and s2, a Detect 1x1 with bias, odd sizes. */
static const struct conv_case conv_cases[] = {
    {"k6s2p2", {3, 4, 6, 2, 2}, {2, 3, 10, 10}, 0}, /* YOLOv5's first layer */
    {"k1s1p0", {5, 6, 1, 1, 0}, {2, 5, 7, 6}, 0},   /* C3's 1x1 */
    {"k3s1p1", {4, 5, 3, 1, 1}, {2, 4, 7, 9}, 0},   /* bottleneck 3x3 */
    {"k3s2p1", {4, 3, 3, 2, 1}, {2, 4, 9, 8}, 0},   /* downsampling, odd and even sizes */
    {"k1bias", {6, 7, 1, 1, 0}, {2, 6, 5, 5}, 1},   /* Detect */
    {"k3bias", {3, 4, 3, 2, 1}, {1, 3, 6, 7}, 1},   /* bias on a blocked layout */
    {"k1s2p0", {4, 3, 1, 2, 0}, {1, 4, 8, 8}, 0},   /* negative right padding in oneDNN */
    {"k2s2p0", {2, 3, 2, 2, 0}, {2, 2, 7, 9}, 1},   /* even kernel, floored output */
};

static void conv_forward_reference(enum tr_cpu_layout layout)
{
	struct tr_backend *b = backend_layout(layout);
	struct rng rng = {1};
	print_message(" layout %d\n", (int)layout);
	for (size_t t = 0; t < UT_ARRAY_LEN(conv_cases); t++) {
		const struct conv_case *cc = &conv_cases[t];
		struct tr_shape out = tr_conv_out_shape(&cc->conv, cc->in);
		size_t wlen = (size_t)cc->conv.cout * cc->conv.cin * cc->conv.k * cc->conv.k;
		float *x = rand_buf(tr_shape_numel(cc->in), &rng), *w = rand_buf(wlen, &rng);
		float *bias = cc->bias ? rand_buf((size_t)cc->conv.cout, &rng) : NULL;
		float *y = rand_buf(tr_shape_numel(out), &rng);
		struct tr_tensor tx = {x, cc->in}, ty = {y, out};
		OK(b->ops->conv_forward(b, &cc->conv, &tx, w, bias, &ty, &ok_err));
		double *ref = conv_reference(&cc->conv, cc->in, x, w, bias);
		assert_close_fwd(cc->name, y, ref, tr_shape_numel(out));
		free(ref);
		free(x);
		free(w);
		free(bias);
		free(y);
	}
	tr_backend_destroy(b);
}

static void test_conv_forward_reference(void **state)
{
	(void)state;
	for (size_t i = 0; i < UT_ARRAY_LEN(layouts); i++)
		conv_forward_reference(layouts[i]);
}

struct conv_fd {
	struct tr_backend *b;
	const struct tr_conv *conv;
	struct tr_tensor x, y;
	float *w, *bias;
};

static void conv_fd_forward(void *ctx)
{
	struct conv_fd *c = ctx;
	OK(c->b->ops->conv_forward(c->b, c->conv, &c->x, c->w, c->bias, &c->y, &ok_err));
}

static void conv_gradients(enum tr_cpu_layout layout)
{
	struct tr_backend *b = backend_layout(layout);
	struct rng rng = {2};
	for (size_t t = 0; t < UT_ARRAY_LEN(conv_cases); t++) {
		const struct conv_case *cc = &conv_cases[t];
		print_message(" %s, layout %d\n", cc->name, (int)layout);
		struct tr_shape out = tr_conv_out_shape(&cc->conv, cc->in);
		size_t xlen = tr_shape_numel(cc->in), ylen = tr_shape_numel(out);
		size_t wlen = (size_t)cc->conv.cout * cc->conv.cin * cc->conv.k * cc->conv.k;
		struct conv_fd c = {b,
				    &cc->conv,
				    {rand_buf(xlen, &rng), cc->in},
				    {zero_buf(ylen), out},
				    rand_buf(wlen, &rng),
				    cc->bias ? rand_buf((size_t)cc->conv.cout, &rng) : NULL};
		float *r = rand_buf(ylen, &rng);
		float *dx = rand_buf(xlen, &rng); /* garbage: data gradients assign */
		float *dw = zero_buf(wlen),
		      *dbias = cc->bias ? zero_buf((size_t)cc->conv.cout) : NULL;
		struct tr_tensor tdy = {r, out}, tdx = {dx, cc->in};
		conv_fd_forward(&c);
		OK(b->ops->conv_backward_data(b, &cc->conv, &tdy, c.w, &tdx, &ok_err));
		OK(b->ops->conv_backward_filter(b, &cc->conv, &c.x, &tdy, dw, dbias, &ok_err));
		struct fd_case fd = {&c, conv_fd_forward, c.y.data, ylen, r};
		check_grad("conv dx", &fd, c.x.data, xlen, dx, 1e-2);
		check_grad("conv dw", &fd, c.w, wlen, dw, 1e-2);
		if (cc->bias)
			check_grad("conv dbias", &fd, c.bias, (size_t)cc->conv.cout, dbias, 1e-2);
		free(c.x.data);
		free(c.y.data);
		free(c.w);
		free(c.bias);
		free(r);
		free(dx);
		free(dw);
		free(dbias);
	}
	tr_backend_destroy(b);
}

static void test_conv_gradients(void **state)
{
	(void)state;
	for (size_t i = 0; i < UT_ARRAY_LEN(layouts); i++)
		conv_gradients(layouts[i]);
}

/* dw and dbias accumulate: twice the call, exactly twice the gradient; a prior value is kept. */
static void conv_filter_accumulates(enum tr_cpu_layout layout)
{
	struct tr_backend *b = backend_layout(layout);
	struct rng rng = {3};
	struct tr_conv cv = {8, 16, 3, 1, 1};
	struct tr_shape in = {2, 8, 12, 12}, out = tr_conv_out_shape(&cv, in);
	size_t wlen = 16 * 8 * 9;
	float *x = rand_buf(tr_shape_numel(in), &rng), *dy = rand_buf(tr_shape_numel(out), &rng);
	float *once = zero_buf(wlen), *twice = zero_buf(wlen), *shifted = zero_buf(wlen);
	float *db_once = zero_buf(16), *db_twice = zero_buf(16);
	struct tr_tensor tx = {x, in}, tdy = {dy, out};
	OK(b->ops->conv_backward_filter(b, &cv, &tx, &tdy, once, db_once, &ok_err));
	OK(b->ops->conv_backward_filter(b, &cv, &tx, &tdy, twice, db_twice, &ok_err));
	OK(b->ops->conv_backward_filter(b, &cv, &tx, &tdy, twice, db_twice, &ok_err));
	for (size_t i = 0; i < wlen; i++) {
		shifted[i] = 1.5f;
		assert_true(twice[i] == 2.0f * once[i]);
	}
	for (int i = 0; i < 16; i++)
		assert_true(db_twice[i] == 2.0f * db_once[i]);
	OK(b->ops->conv_backward_filter(b, &cv, &tx, &tdy, shifted, NULL, &ok_err));
	for (size_t i = 0; i < wlen; i++)
		assert_float_equal(shifted[i], 1.5f + once[i], 1e-5);
	free(x);
	free(dy);
	free(once);
	free(twice);
	free(shifted);
	free(db_once);
	free(db_twice);
	tr_backend_destroy(b);
}

static void test_conv_filter_accumulates(void **state)
{
	(void)state;
	for (size_t i = 0; i < UT_ARRAY_LEN(layouts); i++)
		conv_filter_accumulates(layouts[i]);
}

/* ------------------------------------------------------------------------ */
/* batch norm                                                                */

/* One channel of four values, hand-computed; a second channel constant. */
static void test_bn_running_stats(void **state)
{
	(void)state;
	struct tr_backend *b = backend();
	/* x[n=2, c=2, 1, 2]: channel 0 = {1, 2, 3, 4}, channel 1 = {5, 5, 5, 5} */
	float x[8] = {1, 2, 5, 5, 3, 4, 5, 5}, y[8];
	float gamma[2] = {2.0f, 1.0f}, beta[2] = {0.5f, -1.0f};
	float rmean[2] = {0.5f, 1.0f}, rvar[2] = {2.0f, 3.0f}, smean[2], sinv[2];
	struct tr_tensor tx = {x, {2, 2, 1, 2}}, ty = {y, {2, 2, 1, 2}};
	OK(b->ops->bn_forward_train(b, &tx, gamma, beta, 1e-3f, 0.03f, rmean, rvar, smean, sinv,
				    &ty, &ok_err));
	/* channel 0: mean 2.5, biased var 1.25 (normalises), unbiased 5/3 (running) */
	assert_float_equal(smean[0], 2.5f, 1e-6);
	assert_float_equal(sinv[0], 1.0 / sqrt(1.25 + 1e-3), 1e-6);
	assert_float_equal(rmean[0], 0.97 * 0.5 + 0.03 * 2.5, 1e-6);
	assert_float_equal(rvar[0], 0.97 * 2.0 + 0.03 * (5.0 / 3.0), 1e-6);
	/* channel 1: variance 0 */
	assert_float_equal(rmean[1], 0.97 * 1.0 + 0.03 * 5.0, 1e-6);
	assert_float_equal(rvar[1], 0.97 * 3.0, 1e-6);
	const float ch0[4] = {1, 2, 3, 4};
	const size_t at0[4] = {0, 1, 4, 5};
	for (int i = 0; i < 4; i++)
		assert_float_equal(y[at0[i]], 2.0 * (ch0[i] - 2.5) / sqrt(1.25 + 1e-3) + 0.5, 1e-5);
	assert_float_equal(y[2], -1.0f, 1e-6);
	/* eval mode with the updated running statistics */
	OK(b->ops->bn_forward_eval(b, &tx, gamma, beta, 1e-3f, rmean, rvar, &ty, &ok_err));
	for (int i = 0; i < 4; i++)
		assert_float_equal(y[at0[i]],
				   2.0 * (ch0[i] - rmean[0]) / sqrt((double)rvar[0] + 1e-3) + 0.5,
				   1e-5);
	/* one value per channel cannot be trained on (PyTorch refuses too) */
	struct tr_tensor one = {x, {1, 2, 1, 1}}, yone = {y, {1, 2, 1, 1}};
	struct ut_err err = {{0}};
	assert_int_equal(b->ops->bn_forward_train(b, &one, gamma, beta, 1e-3f, 0.03f, rmean, rvar,
						  smean, sinv, &yone, &err),
			 -1);
	assert_true(strlen(err.msg) > 0);
	tr_backend_destroy(b);
}

struct bn_fd {
	struct tr_backend *b;
	struct tr_tensor x, y;
	float *gamma, *beta, *rmean, *rvar, *smean, *sinv;
};

static void bn_fd_forward(void *ctx)
{
	struct bn_fd *c = ctx;
	OK(c->b->ops->bn_forward_train(c->b, &c->x, c->gamma, c->beta, 1e-3f, 0.03f, c->rmean,
				       c->rvar, c->smean, c->sinv, &c->y, &ok_err));
}

static void test_bn_gradients(void **state)
{
	(void)state;
	struct tr_backend *b = backend();
	struct rng rng = {4};
	struct tr_shape s = {3, 4, 3, 5};
	size_t len = tr_shape_numel(s);
	struct bn_fd c = {b,
			  {rand_buf(len, &rng), s},
			  {zero_buf(len), s},
			  rand_buf(4, &rng),
			  rand_buf(4, &rng),
			  zero_buf(4),
			  zero_buf(4),
			  zero_buf(4),
			  zero_buf(4)};
	for (int i = 0; i < 4; i++) {
		c.rvar[i] = 1.0f;
		c.gamma[i] += 1.5f;
	}
	float *r = rand_buf(len, &rng), *dx = rand_buf(len, &rng);
	float *dgamma = zero_buf(4), *dbeta = zero_buf(4);
	float *dgamma2 = zero_buf(4), *dbeta2 = zero_buf(4);
	struct tr_tensor tdy = {r, s}, tdx = {dx, s};
	bn_fd_forward(&c);
	OK(b->ops->bn_backward(b, &c.x, &tdy, c.gamma, c.smean, c.sinv, &tdx, dgamma, dbeta,
			       &ok_err));
	/* accumulate: twice the call, exactly twice */
	OK(b->ops->bn_backward(b, &c.x, &tdy, c.gamma, c.smean, c.sinv, &tdx, dgamma2, dbeta2,
			       &ok_err));
	OK(b->ops->bn_backward(b, &c.x, &tdy, c.gamma, c.smean, c.sinv, &tdx, dgamma2, dbeta2,
			       &ok_err));
	for (int i = 0; i < 4; i++) {
		assert_true(dgamma2[i] == 2.0f * dgamma[i]);
		assert_true(dbeta2[i] == 2.0f * dbeta[i]);
	}
	struct fd_case fd = {&c, bn_fd_forward, c.y.data, len, r};
	check_grad("bn dx", &fd, c.x.data, len, dx, 1e-2);
	check_grad("bn dgamma", &fd, c.gamma, 4, dgamma, 1e-2);
	check_grad("bn dbeta", &fd, c.beta, 4, dbeta, 1e-2);
	/* dx may alias dy */
	float *alias = copy_buf(r, len);
	struct tr_tensor talias = {alias, s};
	OK(b->ops->bn_backward(b, &c.x, &talias, c.gamma, c.smean, c.sinv, &talias, dgamma, dbeta,
			       &ok_err));
	assert_memory_equal(alias, dx, len * sizeof(float));
	free(alias);
	free(c.x.data);
	free(c.y.data);
	free(c.gamma);
	free(c.beta);
	free(c.rmean);
	free(c.rvar);
	free(c.smean);
	free(c.sinv);
	free(r);
	free(dx);
	free(dgamma);
	free(dbeta);
	free(dgamma2);
	free(dbeta2);
	tr_backend_destroy(b);
}

/* ------------------------------------------------------------------------ */
/* SiLU, add, upsample, concat                                               */

struct unary_fd {
	struct tr_backend *b;
	struct tr_tensor x, y;
	int k; /* max pool kernel */
};

static void silu_fd_forward(void *ctx)
{
	struct unary_fd *c = ctx;
	OK(c->b->ops->silu_forward(c->b, &c->x, &c->y, &ok_err));
}

static void test_silu(void **state)
{
	(void)state;
	struct tr_backend *b = backend();
	struct rng rng = {5};
	struct tr_shape s = {2, 3, 4, 5};
	size_t len = tr_shape_numel(s);
	struct unary_fd c = {b, {rand_buf(len, &rng), s}, {zero_buf(len), s}, 0};
	for (size_t i = 0; i < len; i++)
		c.x.data[i] *= 4.0f;
	c.x.data[0] = -100.0f; /* exp overflow side */
	c.x.data[1] = 100.0f;
	silu_fd_forward(&c);
	double *ref = malloc(len * sizeof(*ref));
	assert_non_null(ref);
	for (size_t i = 0; i < len; i++)
		ref[i] = c.x.data[i] / (1.0 + exp(-(double)c.x.data[i]));
	assert_close_fwd("silu y", c.y.data, ref, len);
	free(ref);
	float *r = rand_buf(len, &rng), *dx = zero_buf(len);
	struct tr_tensor tdy = {r, s}, tdx = {dx, s};
	OK(b->ops->silu_backward(b, &c.x, &tdy, &tdx, &ok_err));
	struct fd_case fd = {&c, silu_fd_forward, c.y.data, len, r};
	check_grad("silu dx", &fd, c.x.data, len, dx, 1e-2);
	free(c.x.data);
	free(c.y.data);
	free(r);
	free(dx);
	tr_backend_destroy(b);
}

/*
 * SiLU on a tensor large enough to be split across threads, over a wide
 * range (the vectorised exp clamps its argument) and with a NaN: forward
 * and exact backward against double precision.
 */
static void test_silu_wide(void **state)
{
	(void)state;
	struct tr_backend *b = backend();
	struct rng rng = {15};
	struct tr_shape s = {2, 8, 64, 65};
	size_t len = tr_shape_numel(s);
	float *x = rand_buf(len, &rng), *y = zero_buf(len), *dy = rand_buf(len, &rng);
	float *dx = zero_buf(len);
	for (size_t i = 0; i < len; i++)
		x[i] = (x[i] - 0.5f) * 240.0f;
	x[7] = NAN;
	struct tr_tensor tx = {x, s}, ty = {y, s}, tdy = {dy, s}, tdx = {dx, s};
	OK(b->ops->silu_forward(b, &tx, &ty, &ok_err));
	OK(b->ops->silu_backward(b, &tx, &tdy, &tdx, &ok_err));
	assert_true(isnan(y[7]) && isnan(dx[7]));
	x[7] = y[7] = dy[7] = dx[7] = 0.0f;
	double *ref = malloc(len * sizeof(*ref)), *dref = malloc(len * sizeof(*dref));
	assert_non_null(ref);
	assert_non_null(dref);
	for (size_t i = 0; i < len; i++) {
		double v = x[i], sig = 1.0 / (1.0 + exp(-v));
		ref[i] = v * sig;
		dref[i] = dy[i] * sig * (1.0 + v * (1.0 - sig));
	}
	assert_close_fwd("silu y", y, ref, len);
	assert_close_fwd("silu dx", dx, dref, len);
	free(ref);
	free(dref);
	free(x);
	free(y);
	free(dy);
	free(dx);
	tr_backend_destroy(b);
}

static void test_add(void **state)
{
	(void)state;
	struct tr_backend *b = backend();
	struct rng rng = {6};
	struct tr_shape s = {2, 3, 5, 7};
	size_t len = tr_shape_numel(s);
	float *a = rand_buf(len, &rng), *x = rand_buf(len, &rng), *y = zero_buf(len);
	struct tr_tensor ta = {a, s}, tx = {x, s}, ty = {y, s};
	OK(b->ops->add_forward(b, &ta, &tx, &ty, &ok_err));
	for (size_t i = 0; i < len; i++)
		assert_true(y[i] == a[i] + x[i]);
	/* in place, as gradient sums use it: a += x */
	OK(b->ops->add_forward(b, &ta, &tx, &ta, &ok_err));
	assert_memory_equal(a, y, len * sizeof(float));
	struct tr_tensor bad = {x, {2, 3, 5, 6}};
	struct ut_err err = {{0}};
	assert_int_equal(b->ops->add_forward(b, &ta, &bad, &ty, &err), -1);
	assert_non_null(strstr(err.msg, "add_forward"));
	free(a);
	free(x);
	free(y);
	tr_backend_destroy(b);
}

static void up_fd_forward(void *ctx)
{
	struct unary_fd *c = ctx;
	OK(c->b->ops->upsample2x_forward(c->b, &c->x, &c->y, &ok_err));
}

static void test_upsample(void **state)
{
	(void)state;
	struct tr_backend *b = backend();
	struct rng rng = {7};
	struct tr_shape s = {2, 3, 3, 4}, big = {2, 3, 6, 8};
	size_t len = tr_shape_numel(s), blen = tr_shape_numel(big);
	struct unary_fd c = {b, {rand_buf(len, &rng), s}, {zero_buf(blen), big}, 0};
	up_fd_forward(&c);
	for (int p = 0; p < 6; p++)
		for (int i = 0; i < 6; i++)
			for (int j = 0; j < 8; j++)
				assert_true(c.y.data[(p * 6 + i) * 8 + j] ==
					    c.x.data[(p * 3 + i / 2) * 4 + j / 2]);
	float *r = rand_buf(blen, &rng), *dx = rand_buf(len, &rng);
	struct tr_tensor tdy = {r, big}, tdx = {dx, s};
	OK(b->ops->upsample2x_backward(b, &tdy, &tdx, &ok_err));
	struct fd_case fd = {&c, up_fd_forward, c.y.data, blen, r};
	check_grad("upsample dx", &fd, c.x.data, len, dx, 1e-2);
	free(c.x.data);
	free(c.y.data);
	free(r);
	free(dx);
	tr_backend_destroy(b);
}

struct concat_fd {
	struct tr_backend *b;
	struct tr_tensor parts[3], y;
};

static void concat_fd_forward(void *ctx)
{
	struct concat_fd *c = ctx;
	const struct tr_tensor *xs[3] = {&c->parts[0], &c->parts[1], &c->parts[2]};
	OK(c->b->ops->concat_forward(c->b, xs, 3, &c->y, &ok_err));
}

static void test_concat(void **state)
{
	(void)state;
	struct tr_backend *b = backend();
	struct rng rng = {8};
	const int channels[3] = {2, 3, 1};
	struct concat_fd c = {.b = b};
	struct tr_tensor dparts[3];
	struct tr_tensor *dxs[3];
	for (int i = 0; i < 3; i++) {
		struct tr_shape s = {2, channels[i], 3, 4};
		c.parts[i] = (struct tr_tensor){rand_buf(tr_shape_numel(s), &rng), s};
		dparts[i] = (struct tr_tensor){rand_buf(tr_shape_numel(s), &rng), s};
		dxs[i] = &dparts[i];
	}
	struct tr_shape whole = {2, 6, 3, 4};
	size_t len = tr_shape_numel(whole);
	c.y = (struct tr_tensor){zero_buf(len), whole};
	concat_fd_forward(&c);
	/* sample 1, channel 2 is part 1's channel 0 */
	assert_memory_equal(c.y.data + (1 * 6 + 2) * 12, c.parts[1].data + (1 * 3 + 0) * 12,
			    12 * sizeof(float));
	float *r = rand_buf(len, &rng);
	struct tr_tensor tdy = {r, whole};
	OK(b->ops->concat_backward(b, &tdy, dxs, 3, &ok_err));
	struct fd_case fd = {&c, concat_fd_forward, c.y.data, len, r};
	for (int i = 0; i < 3; i++)
		check_grad("concat dx", &fd, c.parts[i].data, tr_shape_numel(c.parts[i].shape),
			   dparts[i].data, 1e-2);
	const struct tr_tensor *xs[3] = {&c.parts[0], &c.parts[1], &c.parts[2]};
	struct tr_tensor small = {c.y.data, {2, 5, 3, 4}};
	struct ut_err err = {{0}};
	assert_int_equal(b->ops->concat_forward(b, xs, 3, &small, &err), -1);
	for (int i = 0; i < 3; i++) {
		free(c.parts[i].data);
		free(dparts[i].data);
	}
	free(c.y.data);
	free(r);
	tr_backend_destroy(b);
}

/* ------------------------------------------------------------------------ */
/* max pool                                                                  */

static void pool_fd_forward(void *ctx)
{
	struct unary_fd *c = ctx;
	OK(c->b->ops->maxpool_forward(c->b, c->k, &c->x, &c->y, &ok_err));
}

/* Inputs 0.01 apart in a shuffled order: no ties, no step crosses one. */
static float *distinct_buf(size_t len, struct rng *rng)
{
	float *p = malloc(len * sizeof(*p));
	assert_non_null(p);
	for (size_t i = 0; i < len; i++)
		p[i] = 0.01f * (float)i - 0.005f * (float)len;
	for (size_t i = len - 1; i > 0; i--) {
		size_t j = (size_t)((rng_uniform(rng) + 1.0f) * 0.5f * (float)(i + 1)) % (i + 1);
		float t = p[i];
		p[i] = p[j];
		p[j] = t;
	}
	return p;
}

static void test_maxpool(void **state)
{
	(void)state;
	struct tr_backend *b = backend();
	struct rng rng = {9};
	const int kernels[] = {3, 5};
	for (size_t t = 0; t < UT_ARRAY_LEN(kernels); t++) {
		int k = kernels[t], r2 = k / 2;
		struct tr_shape s = {2, 2, 6, 7};
		size_t len = tr_shape_numel(s);
		struct unary_fd c = {b, {distinct_buf(len, &rng), s}, {zero_buf(len), s}, k};
		pool_fd_forward(&c);
		double *ref = malloc(len * sizeof(*ref));
		assert_non_null(ref);
		for (int p = 0; p < 4; p++)
			for (int i = 0; i < 6; i++)
				for (int j = 0; j < 7; j++) {
					double m = -INFINITY;
					for (int ii = i - r2; ii <= i + r2; ii++)
						for (int jj = j - r2; jj <= j + r2; jj++)
							if (ii >= 0 && jj >= 0 && ii < 6 && jj < 7)
								m = fmax(m,
									 c.x.data[(p * 6 + ii) * 7 +
										  jj]);
					ref[(p * 6 + i) * 7 + j] = m;
				}
		assert_close_fwd(k == 3 ? "maxpool3 y" : "maxpool5 y", c.y.data, ref, len);
		free(ref);
		float *r = rand_buf(len, &rng), *dx = rand_buf(len, &rng);
		struct tr_tensor tdy = {r, s}, tdx = {dx, s};
		OK(b->ops->maxpool_backward(b, k, &c.x, &c.y, &tdy, &tdx, &ok_err));
		struct fd_case fd = {&c, pool_fd_forward, c.y.data, len, r};
		check_grad("maxpool dx", &fd, c.x.data, len, dx, 1e-3);
		free(c.x.data);
		free(c.y.data);
		free(r);
		free(dx);
	}
	tr_backend_destroy(b);
}

/* Ties go to the first maximum in scan order, padding never wins (PyTorch). */
static void test_maxpool_ties_and_padding(void **state)
{
	(void)state;
	struct tr_backend *b = backend();
	float x[9] = {0}, y[9], dy[9], dx[9];
	for (int i = 0; i < 9; i++)
		dy[i] = 1.0f;
	struct tr_shape s = {1, 1, 3, 3};
	struct tr_tensor tx = {x, s}, ty = {y, s}, tdy = {dy, s}, tdx = {dx, s};
	OK(b->ops->maxpool_backward(b, 3, &tx, &ty, &tdy, &tdx, &ok_err));
	/* (0,0) wins (0,0),(0,1),(1,0),(1,1); (0,1) wins (0,2),(1,2); (1,0) wins (2,0),(2,1) */
	const float want_first[9] = {4, 2, 0, 2, 1, 0, 0, 0, 0};
	assert_memory_equal(dx, want_first, sizeof(dx));
	/* all negative: padding is -inf, so the max is a real value */
	for (int i = 0; i < 9; i++)
		x[i] = -5.0f - (float)i;
	OK(b->ops->maxpool_forward(b, 3, &tx, &ty, &ok_err));
	assert_true(y[8] == -5.0f - 4.0f);
	assert_true(y[0] == -5.0f);
	tr_backend_destroy(b);
}

/* ------------------------------------------------------------------------ */
/* Detect decode                                                             */

/*
 * The optimizer ops against formula.h's per-element updates (the CPU op must
 * be exactly that loop, threads or not), and the norm, scale and EMA ops.
 */
static void test_optimizer_ops(void **state)
{
	(void)state;
	struct tr_backend *b = backend();
	struct rng rng = {13};
	const size_t n = 70000; /* above the threading threshold */
	float *param = rand_buf(n, &rng), *grad = rand_buf(n, &rng);
	float *slot0 = rand_buf(n, &rng), *slot1 = rand_buf(n, &rng);
	float *want[4];
	for (int i = 0; i < 4; i++)
		want[i] = malloc(n * sizeof(float));
	for (size_t k = 0; k < n; k++)
		slot1[k] = fabsf(slot1[k]);
	const struct tr_f_optim steps[] = {
	    {.adam = 0, .has_decay = 1, .lr = 0.01f, .momentum = 0.937f, .decay = 5e-4f},
	    {.adam = 1,
	     .decoupled = 1,
	     .has_decay = 1,
	     .decay = 5e-4f,
	     .step_size = 0.02f,
	     .bc2_sqrt = 0.03f,
	     .b1 = 0.9f,
	     .one_minus_b1 = 0.1f,
	     .b2 = 0.999f,
	     .one_minus_b2 = 0.001f,
	     .eps = 1e-8f,
	     .shrink = 0.99999f},
	};
	for (size_t c = 0; c < UT_ARRAY_LEN(steps); c++) {
		const struct tr_f_optim *st = &steps[c];
		memcpy(want[0], param, n * sizeof(float));
		memcpy(want[2], slot0, n * sizeof(float));
		memcpy(want[3], slot1, n * sizeof(float));
		for (size_t k = 0; k < n; k++) {
			if (st->adam)
				tr_f_adam_update(st, &want[0][k], grad[k], &want[2][k],
						 &want[3][k]);
			else
				tr_f_sgd_update(st, &want[0][k], grad[k], &want[2][k]);
		}
		OK(b->ops->optim_update(b, st, param, grad, slot0, st->adam ? slot1 : NULL, n,
					&ok_err));
		assert_memory_equal(param, want[0], n * sizeof(float));
		assert_memory_equal(slot0, want[2], n * sizeof(float));
		assert_memory_equal(slot1, want[3], n * sizeof(float));
	}
	struct ut_err err = {{0}};
	assert_int_equal(b->ops->optim_update(b, &steps[1], param, grad, slot0, NULL, n, &err), -1);
	double sum = 0, got;
	for (size_t k = 0; k < n; k++)
		sum += (double)grad[k] * grad[k];
	OK(b->ops->sum_squares(b, grad, n, &got, &ok_err));
	assert_true(got == sum);
	memcpy(want[1], grad, n * sizeof(float));
	OK(b->ops->scale(b, grad, 0.25f, n, &ok_err));
	for (size_t k = 0; k < n; k++)
		assert_true(grad[k] == want[1][k] * 0.25f);
	memcpy(want[0], param, n * sizeof(float));
	OK(b->ops->ema_update(b, param, grad, 0.9f, 0.1f, n, &ok_err));
	for (size_t k = 0; k < n; k++)
		assert_true(param[k] == want[0][k] * 0.9f + 0.1f * grad[k]);
	for (int i = 0; i < 4; i++)
		free(want[i]);
	free(param);
	free(grad);
	free(slot0);
	free(slot1);
	tr_backend_destroy(b);
}

/*
 * The loss scaler's unscale (amp_unscale) against formula.h's
 * tr_f_amp_unscale loop, threaded (2 threads, n above the threshold): the
 * values bit for bit, found_inf assigned (0 on clean input, whatever it
 * held), set by an inf or a nan in either thread's half, and a bad
 * inv_scale refused.
 */
static void test_amp_unscale(void **state)
{
	(void)state;
	struct tr_backend *b = backend();
	struct rng rng = {17};
	const size_t n = 70000;
	const size_t where[] = {(size_t)-1, 5, n - 1};
	const float bad[] = {0.0f, NAN, INFINITY};
	const float inv_scales[] = {1.0f / 65536.0f, 1.0f, 0.3f};
	float *grad = rand_buf(n, &rng), *want = malloc(n * sizeof(float));
	assert_non_null(want);
	for (size_t w = 0; w < UT_ARRAY_LEN(where); w++)
		for (size_t i = 0; i < UT_ARRAY_LEN(inv_scales); i++) {
			float *x = copy_buf(grad, n);
			if (where[w] < n)
				x[where[w]] = bad[w];
			int want_found = 0, found = 7;
			for (size_t k = 0; k < n; k++)
				want[k] = tr_f_amp_unscale(x[k], inv_scales[i], &want_found);
			OK(b->ops->amp_unscale(b, x, inv_scales[i], n, &found, &ok_err));
			assert_int_equal(found, where[w] < n);
			assert_int_equal(found, want_found);
			assert_memory_equal(x, want, n * sizeof(float));
			free(x);
		}
	struct ut_err err = {{0}};
	int found = 0;
	assert_int_equal(b->ops->amp_unscale(b, grad, -1.0f, n, &found, &err), -1);
	assert_string_equal(err.msg, "amp_unscale: inv_scale -1 (must be positive and finite)");
	assert_int_equal(b->ops->amp_unscale(b, grad, 1.0f, n, NULL, &err), -1);
	free(grad);
	free(want);
	tr_backend_destroy(b);
}

/* Input bytes to floats and the half rounding, element by element as formula.h says. */
static void test_conversion_ops(void **state)
{
	(void)state;
	struct tr_backend *b = backend();
	const size_t n = 40000;
	uint8_t *bytes = malloc(n);
	float *floats = malloc(n * sizeof(float)), *x = malloc(n * sizeof(float));
	assert_true(bytes && floats && x);
	for (size_t k = 0; k < n; k++) {
		bytes[k] = (uint8_t)(k * 7);
		x[k] = ((float)k - 20000.0f) * 3.3e-3f;
	}
	x[0] = 1e-9f;	  /* below half's subnormals: 0 */
	x[1] = 65519.0f;  /* the largest half */
	x[2] = -65520.0f; /* past it: -inf */
	OK(b->ops->images_to_float(b, bytes, floats, n, &ok_err));
	for (size_t k = 0; k < n; k++)
		assert_true(floats[k] == (float)bytes[k] / 255.0f);
	memcpy(floats, x, n * sizeof(float));
	OK(b->ops->round_half(b, x, n, &ok_err));
	for (size_t k = 0; k < n; k++)
		assert_true(x[k] == tr_f_round_to_half(floats[k]));
	assert_true(x[0] == 0.0f && x[1] == 65504.0f && isinf(x[2]) && x[2] < 0);
	assert_true(x[20001] == 0x1.b08p-9f); /* 3.3e-3 to 11 significant bits */
	free(bytes);
	free(floats);
	free(x);
	tr_backend_destroy(b);
}

/* ------------------------------------------------------------------------ */
/* half-precision casts                                                      */

#define HALF_CASTS 735	   /* "cast" lines of tests/golden/half/casts.txt */
#define HALF_PATTERNS 1848 /* "back" lines */

/* torch's bits (tests/golden/make_half_golden.py): per cast line and per back line. */
struct half_golden {
	float input[HALF_CASTS];
	uint16_t fp16[HALF_CASTS], bf16[HALF_CASTS];
	uint32_t fp16_back[HALF_CASTS], bf16_back[HALF_CASTS];
	uint16_t pattern[HALF_PATTERNS];
	uint32_t pattern_fp16[HALF_PATTERNS], pattern_bf16[HALF_PATTERNS];
};

static void half_golden_read(struct half_golden *g)
{
	char path[4096], line[256];
	const char *root = getenv("YE_SOURCE_ROOT");
	if (root == NULL || *root == '\0')
		fail_msg("YE_SOURCE_ROOT is not set");
	snprintf(path, sizeof(path), "%s/tests/golden/half/casts.txt", root);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		fail_msg("cannot open %s", path);
	int casts = 0, patterns = 0;
	while (fgets(line, sizeof(line), f) != NULL) {
		unsigned in, h, b, hb, bb;
		if (line[0] == '#')
			continue;
		if (sscanf(line, "cast %x %x %x %x %x", &in, &h, &b, &hb, &bb) == 5) {
			assert_true(casts < HALF_CASTS);
			g->input[casts] = tr_f_from_bits(in);
			g->fp16[casts] = (uint16_t)h, g->bf16[casts] = (uint16_t)b;
			g->fp16_back[casts] = hb, g->bf16_back[casts] = bb;
			casts++;
		} else if (sscanf(line, "back %x %x %x", &in, &hb, &bb) == 3) {
			assert_true(patterns < HALF_PATTERNS);
			g->pattern[patterns] = (uint16_t)in;
			g->pattern_fp16[patterns] = hb, g->pattern_bf16[patterns] = bb;
			patterns++;
		} else {
			fail_msg("%s: unreadable line: %s", path, line);
		}
	}
	fclose(f);
	assert_int_equal(casts, HALF_CASTS);
	assert_int_equal(patterns, HALF_PATTERNS);
}

/* Fail unless got[] has the bits of want[]; name the first case that differs. */
static void assert_bits16(const char *what, const uint16_t *got, const uint16_t *want,
			  const float *input, size_t len)
{
	for (size_t k = 0; k < len; k++)
		if (got[k] != want[k])
			fail_msg("%s[%zu] of %a (bits %08x): %04x, torch %04x", what, k,
				 (double)input[k], tr_f_to_bits(input[k]), got[k], want[k]);
	print_message("  %s: %zu values, torch's bits\n", what, len);
}

static void assert_bits32(const char *what, const float *got, const uint32_t *want,
			  const uint16_t *input, size_t len)
{
	for (size_t k = 0; k < len; k++)
		if (tr_f_to_bits(got[k]) != want[k])
			fail_msg("%s[%zu] of %04x: %08x, torch %08x", what, k, input[k],
				 tr_f_to_bits(got[k]), want[k]);
	print_message("  %s: %zu values, torch's bits\n", what, len);
}

/* The four casts against torch 1.13's bits, every case of the golden file (NaNs included). */
static void test_half_casts_golden(void **state)
{
	(void)state;
	struct tr_backend *b = backend();
	struct half_golden *g = malloc(sizeof(*g));
	uint16_t *half = malloc(HALF_PATTERNS * sizeof(uint16_t));
	float *back = malloc(HALF_PATTERNS * sizeof(float));
	assert_true(g != NULL && half != NULL && back != NULL);
	half_golden_read(g);
	OK(b->ops->float_to_fp16(b, g->input, half, HALF_CASTS, &ok_err));
	assert_bits16("float_to_fp16", half, g->fp16, g->input, HALF_CASTS);
	OK(b->ops->fp16_to_float(b, half, back, HALF_CASTS, &ok_err));
	assert_bits32("fp16_to_float(float_to_fp16)", back, g->fp16_back, half, HALF_CASTS);
	OK(b->ops->float_to_bf16(b, g->input, half, HALF_CASTS, &ok_err));
	assert_bits16("float_to_bf16", half, g->bf16, g->input, HALF_CASTS);
	OK(b->ops->bf16_to_float(b, half, back, HALF_CASTS, &ok_err));
	assert_bits32("bf16_to_float(float_to_bf16)", back, g->bf16_back, half, HALF_CASTS);
	OK(b->ops->fp16_to_float(b, g->pattern, back, HALF_PATTERNS, &ok_err));
	assert_bits32("fp16_to_float", back, g->pattern_fp16, g->pattern, HALF_PATTERNS);
	OK(b->ops->bf16_to_float(b, g->pattern, back, HALF_PATTERNS, &ok_err));
	assert_bits32("bf16_to_float", back, g->pattern_bf16, g->pattern, HALF_PATTERNS);
	free(g);
	free(half);
	free(back);
	tr_backend_destroy(b);
}

/* The value of float16 bits h in double, from the format's definition (finite h). */
static double fp16_value(uint16_t h)
{
	int exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ff;
	double magnitude =
	    exponent == 0 ? ldexp(mantissa, -24) : ldexp(1024 + mantissa, exponent - 25);
	return (h & 0x8000) ? -magnitude : magnitude;
}

/*
 * Every one of the 65536 bit patterns of each format, more than the golden
 * file holds: read back to float, the value the format defines (NaNs: a
 * quiet NaN of the same sign), and cast again, the same bits (float16 and
 * bfloat16 values are all floats, so each is its own nearest). In parallel
 * (n above the backend's threshold), as a real tensor is cast.
 */
static void test_half_casts_all_patterns(void **state)
{
	(void)state;
	struct tr_backend *b = backend();
	const size_t n = 65536;
	uint16_t *patterns = malloc(n * sizeof(uint16_t)), *again = malloc(n * sizeof(uint16_t));
	float *values = malloc(n * sizeof(float));
	assert_true(patterns != NULL && again != NULL && values != NULL);
	for (size_t k = 0; k < n; k++)
		patterns[k] = (uint16_t)k;
	OK(b->ops->fp16_to_float(b, patterns, values, n, &ok_err));
	OK(b->ops->float_to_fp16(b, values, again, n, &ok_err));
	for (size_t k = 0; k < n; k++) {
		int nan = (k & 0x7c00) == 0x7c00 && (k & 0x3ff) != 0;
		int inf = (k & 0x7fff) == 0x7c00;
		if (nan) {
			assert_true(isnan(values[k]) && (tr_f_to_bits(values[k]) & 0x400000u));
			assert_true((signbit(values[k]) != 0) == ((k & 0x8000) != 0));
			assert_true(again[k] == ((k & 0x8000) | 0x7e00));
			continue;
		}
		if (inf)
			assert_true(isinf(values[k]) &&
				    (signbit(values[k]) != 0) == ((k & 0x8000) != 0));
		else if ((double)values[k] != fp16_value((uint16_t)k) ||
			 (signbit(values[k]) != 0) != ((k & 0x8000) != 0))
			fail_msg("fp16 %04zx: %a, want %a", k, (double)values[k],
				 fp16_value((uint16_t)k));
		if (again[k] != k)
			fail_msg("fp16 %04zx: read back and cast again to %04x", k, again[k]);
	}
	OK(b->ops->bf16_to_float(b, patterns, values, n, &ok_err));
	OK(b->ops->float_to_bf16(b, values, again, n, &ok_err));
	for (size_t k = 0; k < n; k++) {
		assert_true(tr_f_to_bits(values[k]) == (uint32_t)k << 16);
		if (isnan(values[k]))
			assert_true(again[k] == 0xffff);
		else if (again[k] != k)
			fail_msg("bf16 %04zx: read back and cast again to %04x", k, again[k]);
	}
	free(patterns);
	free(again);
	free(values);
	tr_backend_destroy(b);
}

/*
 * The casts' refusals: a missing buffer, overlapping buffers; n = 0 is
 * nothing to do. One untyped 64-byte buffer from alloc, viewed as floats
 * and as halves, as device memory is.
 */
static void test_half_casts_refused(void **state)
{
	(void)state;
	struct tr_backend *b = backend();
	struct ut_err err = {{0}};
	unsigned char *mem = NULL;
	OK(b->ops->alloc(b, 64, (void **)&mem, &ok_err));
	OK(b->ops->memset(b, mem, 0, 64, &ok_err));
	float *x = (float *)mem;
	uint16_t *y = (uint16_t *)(mem + 32);
	assert_int_equal(b->ops->float_to_fp16(b, x, NULL, 8, &err), -1);
	assert_string_equal(err.msg, "float_to_fp16: y is NULL for 8 values");
	assert_int_equal(b->ops->bf16_to_float(b, NULL, x, 3, &err), -1);
	assert_string_equal(err.msg, "bf16_to_float: x is NULL for 3 values");
	/* in place: the halves would overwrite floats not yet read */
	assert_int_equal(b->ops->float_to_bf16(b, x, (uint16_t *)mem, 8, &err), -1);
	assert_string_equal(err.msg,
			    "float_to_bf16: x and y overlap (a cast does not run in place)");
	assert_int_equal(b->ops->fp16_to_float(b, (uint16_t *)(mem + 14), x, 4, &err), -1);
	assert_non_null(strstr(err.msg, "fp16_to_float: x and y overlap"));
	/* adjacent is fine (8 floats, then 16 halves), and so is nothing at all */
	OK(b->ops->float_to_fp16(b, x, y, 8, &ok_err));
	OK(b->ops->fp16_to_float(b, y, x, 8, &ok_err));
	OK(b->ops->float_to_fp16(b, NULL, NULL, 0, &ok_err));
	for (int k = 0; k < 8; k++)
		assert_true(y[k] == 0 && x[k] == 0.0f);
	b->ops->free(b, mem);
	tr_backend_destroy(b);
}

/* Detect's permute and its backward: out[n, a, y, x, o] = raw[n, a * no + o, y, x], and back. */
static void test_detect_permute(void **state)
{
	(void)state;
	struct tr_backend *b = backend();
	struct rng rng = {12};
	const int na = 3, no = 7;
	struct tr_shape s = {2, na * no, 4, 5};
	size_t count = tr_shape_numel(s);
	float *raw = rand_buf(count, &rng), *out = rand_buf(count, &rng);
	float *back = rand_buf(count, &rng);
	struct tr_tensor traw = {raw, s}, tback = {back, s};
	OK(b->ops->detect_permute_forward(b, na, &traw, out, &ok_err));
	for (int n = 0; n < s.n; n++)
		for (int a = 0; a < na; a++)
			for (int y = 0; y < s.h; y++)
				for (int x = 0; x < s.w; x++)
					for (int o = 0; o < no; o++) {
						size_t to =
						    ((((size_t)n * na + a) * s.h + y) * s.w + x) *
							no +
						    o;
						size_t from =
						    (((size_t)n * s.c + a * no + o) * s.h + y) *
							s.w +
						    x;
						assert_true(out[to] == raw[from]);
					}
	OK(b->ops->detect_permute_backward(b, na, out, &tback, &ok_err));
	assert_memory_equal(back, raw, count * sizeof(float));
	struct tr_tensor odd = {raw, {2, 20, 4, 5}};
	struct ut_err err = {{0}};
	assert_int_equal(b->ops->detect_permute_forward(b, na, &odd, out, &err), -1);
	assert_non_null(strstr(err.msg, "20 channels"));
	free(raw);
	free(out);
	free(back);
	tr_backend_destroy(b);
}

/* Two levels into one output, against YOLOv5 v7.0's formulas in double. */
static void test_detect_decode(void **state)
{
	(void)state;
	struct tr_backend *b = backend();
	struct rng rng = {11};
	const int na = 3, no = 7, n = 2;
	const float anchors[2][6] = {{10, 13, 16, 30, 33, 23}, {30, 61, 62, 45, 59, 119}};
	const struct tr_shape shapes[2] = {{n, na * no, 4, 6}, {n, na * no, 2, 3}};
	const float strides[2] = {8, 16};
	int rows = na * (4 * 6 + 2 * 3);
	float *out = rand_buf((size_t)n * rows * no, &rng);
	float *x[2];
	int row0 = 0;
	for (int l = 0; l < 2; l++) {
		x[l] = rand_buf(tr_shape_numel(shapes[l]), &rng);
		for (size_t i = 0; i < tr_shape_numel(shapes[l]); i++)
			x[l][i] *= 4.0f;
		float grid[6]; /* the op takes anchors in grid units */
		for (int j = 0; j < 6; j++)
			grid[j] = anchors[l][j] / strides[l];
		struct tr_detect_level level = {na, no, grid, strides[l], rows, row0};
		struct tr_tensor tx = {x[l], shapes[l]};
		OK(b->ops->detect_decode(b, &level, &tx, out, &ok_err));
		row0 += na * shapes[l].h * shapes[l].w;
	}
	double *ref = malloc((size_t)n * rows * no * sizeof(*ref));
	assert_non_null(ref);
	row0 = 0;
	for (int l = 0; l < 2; l++) {
		struct tr_shape s = shapes[l];
		for (int i = 0; i < n; i++)
			for (int a = 0; a < na; a++)
				for (int gy = 0; gy < s.h; gy++)
					for (int gx = 0; gx < s.w; gx++) {
						int row = row0 + (a * s.h + gy) * s.w + gx;
						double *r = ref + ((size_t)i * rows + row) * no;
						for (int k = 0; k < no; k++) {
							double v =
							    x[l][(((size_t)i * s.c + a * no + k) *
								      s.h +
								  gy) *
								     s.w +
								 gx];
							r[k] = 1.0 / (1.0 + exp(-v));
						}
						r[0] = (r[0] * 2 + gx - 0.5) * strides[l];
						r[1] = (r[1] * 2 + gy - 0.5) * strides[l];
						r[2] = 4 * r[2] * r[2] * anchors[l][2 * a];
						r[3] = 4 * r[3] * r[3] * anchors[l][2 * a + 1];
					}
		row0 += na * s.h * s.w;
	}
	/* boxes are in pixels (up to ~4 * 119): a relative tolerance */
	for (size_t i = 0; i < (size_t)n * rows * no; i++)
		if (fabs(out[i] - ref[i]) > 1e-5 + 1e-6 * fabs(ref[i]) * 4)
			fail_msg("decode[%zu] = %.9g, reference %.9g", i, out[i], ref[i]);
	struct tr_detect_level bad = {na, no, anchors[0], 8, 10, 0};
	struct tr_tensor tx = {x[0], shapes[0]};
	struct ut_err err = {{0}};
	assert_int_equal(b->ops->detect_decode(b, &bad, &tx, out, &err), -1);
	free(ref);
	free(out);
	free(x[0]);
	free(x[1]);
	tr_backend_destroy(b);
}

/* ------------------------------------------------------------------------ */
/* determinism and errors                                                    */

/* A small layer, forward and backward, into out (concatenated results). */
static void run_layer(struct tr_backend *b, float *out)
{
	struct rng rng = {10};
	struct tr_conv cv = {16, 32, 3, 2, 1};
	struct tr_shape in = {4, 16, 40, 40}, mid = tr_conv_out_shape(&cv, in);
	size_t xlen = tr_shape_numel(in), ylen = tr_shape_numel(mid), wlen = 32 * 16 * 9;
	float *x = rand_buf(xlen, &rng), *w = rand_buf(wlen, &rng), *r = rand_buf(ylen, &rng);
	float *y = out, *z = out + ylen, *dz = out + 2 * ylen, *dy = out + 3 * ylen;
	float *dx = out + 4 * ylen, *dw = dx + xlen, *stats = dw + wlen;
	float *gamma = stats, *beta = stats + 32, *rm = stats + 64, *rv = stats + 96;
	float *sm = stats + 128, *si = stats + 160, *dg = stats + 192, *db = stats + 224;
	for (int c = 0; c < 32; c++) {
		gamma[c] = 1.0f, beta[c] = 0.0f, rm[c] = 0.0f, rv[c] = 1.0f;
		dg[c] = 0.0f, db[c] = 0.0f;
	}
	memset(dw, 0, wlen * sizeof(float));
	struct tr_tensor tx = {x, in}, ty = {y, mid}, tz = {z, mid}, tr = {r, mid};
	struct tr_tensor tdz = {dz, mid}, tdy = {dy, mid}, tdx = {dx, in};
	OK(b->ops->conv_forward(b, &cv, &tx, w, NULL, &ty, &ok_err));
	OK(b->ops->bn_forward_train(b, &ty, gamma, beta, 1e-3f, 0.03f, rm, rv, sm, si, &tz,
				    &ok_err));
	OK(b->ops->silu_backward(b, &tz, &tr, &tdz, &ok_err));
	OK(b->ops->bn_backward(b, &ty, &tdz, gamma, sm, si, &tdy, dg, db, &ok_err));
	OK(b->ops->conv_backward_data(b, &cv, &tdy, w, &tdx, &ok_err));
	OK(b->ops->conv_backward_filter(b, &cv, &tx, &tdy, dw, NULL, &ok_err));
	free(x);
	free(w);
	free(r);
}

static void test_determinism(void **state)
{
	(void)state;
	size_t len = 4 * (4 * 32 * 20 * 20) + 4 * 16 * 40 * 40 + 32 * 16 * 9 + 256;
	float *first = zero_buf(len), *second = zero_buf(len);
	struct tr_backend *b1 = backend(), *b2 = backend();
	run_layer(b1, first);
	run_layer(b2, second);
	assert_memory_equal(first, second, len * sizeof(float));
	run_layer(b1, second); /* the cached primitives give the same bits */
	assert_memory_equal(first, second, len * sizeof(float));
	tr_backend_destroy(b1);
	tr_backend_destroy(b2);
	free(first);
	free(second);
}

static void test_conv_errors(void **state)
{
	(void)state;
	struct tr_backend *b = backend();
	float buf[4 * 3 * 8 * 8] = {0};
	struct tr_conv cv = {3, 4, 3, 1, 1};
	struct tr_tensor x = {buf, {1, 3, 8, 8}}, wrong_c = {buf, {1, 2, 8, 8}};
	struct tr_tensor y_bad = {buf, {1, 4, 7, 8}};
	struct ut_err err = {{0}};
	assert_int_equal(b->ops->conv_forward(b, &cv, &wrong_c, buf, NULL, &y_bad, &err), -1);
	assert_non_null(strstr(err.msg, "channels"));
	assert_int_equal(b->ops->conv_forward(b, &cv, &x, buf, NULL, &y_bad, &err), -1);
	assert_non_null(strstr(err.msg, "output"));
	struct tr_shape out =
	    tr_conv_out_shape(&(struct tr_conv){3, 16, 6, 2, 2}, (struct tr_shape){2, 3, 320, 320});
	assert_int_equal(out.h, 160);
	assert_int_equal(out.w, 160);
	assert_int_equal(out.c, 16);
	tr_backend_destroy(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_conv_forward_reference),
	    cmocka_unit_test(test_conv_gradients),
	    cmocka_unit_test(test_conv_filter_accumulates),
	    cmocka_unit_test(test_conv_errors),
	    cmocka_unit_test(test_bn_running_stats),
	    cmocka_unit_test(test_bn_gradients),
	    cmocka_unit_test(test_silu),
	    cmocka_unit_test(test_silu_wide),
	    cmocka_unit_test(test_add),
	    cmocka_unit_test(test_upsample),
	    cmocka_unit_test(test_concat),
	    cmocka_unit_test(test_maxpool),
	    cmocka_unit_test(test_maxpool_ties_and_padding),
	    cmocka_unit_test(test_optimizer_ops),
	    cmocka_unit_test(test_amp_unscale),
	    cmocka_unit_test(test_conversion_ops),
	    cmocka_unit_test(test_half_casts_golden),
	    cmocka_unit_test(test_half_casts_all_patterns),
	    cmocka_unit_test(test_half_casts_refused),
	    cmocka_unit_test(test_detect_permute),
	    cmocka_unit_test(test_detect_decode),
	    cmocka_unit_test(test_determinism),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
