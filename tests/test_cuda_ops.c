/*
 * test_cuda_ops.c - every op of the CUDA backend, its kernels run on the
 * CPU emulation of CUDA (tr_cuda_emu_backend_create), against the CPU
 * backend (the specification), at yolov5n's shapes for batch 2 at 128 px,
 * under two thread-order seeds. Inputs go through the backend's upload,
 * results come back through download. The emulation's convolutions are the
 * CPU backend's own (no cuDNN without a device), so what is checked of them
 * here is the bias and its gradient (this backend's kernels) and the
 * shape checks; on a GPU (below) cuDNN's are compared too. Every function
 * pointer of the op tables is checked to be set.
 *
 * Built a second time with TEST_ON_GPU (test 'cuda_ops_gpu'): the same
 * checks on GPU 0 through tr_cuda_backend_create, the nvcc-built kernels.
 * Without a usable GPU it checks that the backend refuses in one line
 * naming CUDA, and exits 77 (skipped).
 *
 * Tolerances, per op (|cuda - cpu| <= atol + rtol |cpu|), and why:
 *   exact (0): SiLU forward/backward (formula.h on both sides), add, max
 *     pool forward/backward (same first-max rule; the backward gathers in
 *     the order the CPU scatters), upsample forward/backward, concat and
 *     split, batch norm eval (the same double algebra per element), and
 *     Detect's decode (the same expf on the emulation; a GPU's expf may
 *     differ by 2 ulp, to be stated by the GPU run);
 *   rtol 1e-5, atol 1e-6: batch norm train forward and backward (output,
 *     saved and running statistics, dx, dgamma, dbeta): the per-channel
 *     sums are in double in another order than the CPU's, so they differ
 *     in double rounding, then by an ulp once rounded to float; near zero
 *     an ulp of the shift term, hence the small atol. (Measured: 0 at
 *     every shape and seed here, all bits equal.)
 *   --sync-bn's passes: bn_channel_sums (per-channel double sums) within
 *     n DBL_EPSILON times the channel's sum of |terms| for n values a
 *     channel (any summation order's bound; measured 3.4e-14 at n = 8192,
 *     2.5e-16 for the sums with dy), bn_channel_affine exact (0);
 *   exact (0), too: Detect's permute forward and backward, the optimizer
 *     update (SGD with Nesterov, Adam, AdamW: formula.h), scale, the EMA,
 *     bilinear resize, --quad's collate, images_to_float, round_half, the
 *     half-precision casts (bits compared, NaNs included), and
 *     the dense objectness loss's gradient rows (formula.h per cell);
 *   rtol 1e-12: the double sums of sum_squares and loss_obj_dense (a fixed
 *     tree of chunks on the GPU backend, index order on the CPU: double
 *     rounding apart; measured below 1e-15);
 *   rtol 1e-5, atol 1e-7: conv forward with bias (the CPU adds the bias
 *     inside oneDNN's accumulation, this backend after rounding the
 *     convolution; on the emulation the convolution itself is the CPU's);
 *   dbias: exact against the test's own double sum of dy rounded once
 *     (what the kernel computes), and rtol 1e-5, atol 1e-7 per value summed
 *     against the CPU, whose oneDNN sums in float: measured 1.5e-5 over
 *     512 values of |dy| <= 1 a channel, 2.8e-4 over 8192.
 *   on a GPU only, Detect's decode: rtol 2e-6, atol 1e-6 (CUDA's expf is
 *     within 2 ulp of glibc's; the box terms square the sigmoid); the dense
 *     objectness (logf, expf, powf: a few ulp) rtol 1e-5 on the gradient
 *     rows and 1e-6 on the sum; convolutions (cuDNN's fp32 algorithms
 *     against oneDNN's, TF32 off) rtol 1e-4, atol 2e-4 (float sums of up
 *     to 8192 products of values <= 1: oneDNN alone moves dw by 4.3e-5
 *     between thread counts). Not yet measured on a device.
 * Every comparison prints the largest differences it saw.
 *
 * Teeth: the 'cuda_ops_mutant1' and 'cuda_ops_mutant2' tests run this
 * program against kernels.cu built with TR_CUDA_MUTANT = 1 (block_sum
 * loses a __syncthreads: batch norm's sums race) and 2 (upsample's
 * backward reads one wrong index), and must fail.
 */
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kernels.h"
#include "tr_cuda.h"

#if !defined(TEST_ON_GPU)
#include <pthread.h>

#include "comm.h"
#include "syncbn.h"
#endif

#if defined(TEST_ON_GPU)
#define GPU_FN(name) tr_cuda_##name
#define DECODE_RTOL 2e-6
#define DECODE_ATOL 1e-6
#define OBJ_RTOL 1e-5
#define OBJ_ATOL 1e-9
#define OBJ_SUM_RTOL 1e-6
#define CONV_RTOL 1e-4
#define CONV_ATOL 2e-4
#else
#define GPU_FN(name) tr_cuda_emu_##name
#define DECODE_RTOL 0
#define DECODE_ATOL 0
#define OBJ_RTOL 0
#define OBJ_ATOL 0
#define OBJ_SUM_RTOL 1e-12
#define CONV_RTOL 1e-5
#define CONV_ATOL 1e-7
#endif
#define SUM_RTOL 1e-11
#define DBIAS_RTOL 1e-5
#define DBIAS_ATOL_PER_VALUE 1e-7

/* Thread-order seeds of the emulation: every test runs under each. */
static const uint64_t seeds[] = {1, 0x5eed5eedULL};
#define NSEEDS (sizeof(seeds) / sizeof(seeds[0]))

#define BN_RTOL 1e-5
#define BN_ATOL 1e-6

/* The two backends of a comparison. */
struct pair {
	struct tr_backend *cpu, *gpu;
};

static struct pair pair_create(uint64_t seed)
{
	struct pair p = {NULL, NULL};
	struct ut_err err = {{0}};
	/* one thread, as the emulation's own CPU backend: oneDNN's weight gradient sums
	 * depend on the thread count */
	if (tr_cpu_backend_create(1, &p.cpu, &err) != 0)
		fail_msg("tr_cpu_backend_create: %s", err.msg);
#if defined(TEST_ON_GPU)
	(void)seed;
	if (tr_cuda_backend_create(0, &p.gpu, &err) != 0)
		fail_msg("tr_cuda_backend_create: %s", err.msg);
#else
	if (tr_cuda_emu_backend_create(seed, &p.gpu, &err) != 0)
		fail_msg("tr_cuda_emu_backend_create: %s", err.msg);
#endif
	return p;
}

static void pair_destroy(struct pair *p)
{
	tr_backend_destroy(p->cpu);
	tr_backend_destroy(p->gpu);
}

/* Run an op whose last argument is &ok_err; fail the test with its message. */
#define OK(...)                                                                                    \
	do {                                                                                       \
		struct ut_err ok_err = {{0}};                                                      \
		if ((__VA_ARGS__) != 0)                                                            \
			fail_msg("%s failed: %s", #__VA_ARGS__, ok_err.msg);                       \
	} while (0)

/* Uniform in [-scale, scale) from a 64-bit LCG (top bits). */
static float uniform(uint64_t *state, float scale)
{
	*state = *state * 6364136223846793005ULL + 1442695040888963407ULL;
	return (float)((double)(*state >> 40) / (double)(1ULL << 24) * 2.0 - 1.0) * scale;
}

/* A host buffer of len values, uniform in [-scale, scale). */
static float *host_rand(size_t len, uint64_t *state, float scale)
{
	float *p = malloc(len * sizeof(*p));
	assert_non_null(p);
	for (size_t i = 0; i < len; i++)
		p[i] = uniform(state, scale);
	return p;
}

/* Device memory holding a copy of host[len]. */
static float *dev_copy(struct tr_backend *gpu, const float *host, size_t len)
{
	void *d = NULL;
	OK(GPU_FN(alloc)(gpu, len * sizeof(float), &d, &ok_err));
	OK(GPU_FN(upload)(gpu, d, host, len * sizeof(float), &ok_err));
	return d;
}

/* Device memory of len floats (contents: whatever was there). */
static float *dev_alloc(struct tr_backend *gpu, size_t len)
{
	void *d = NULL;
	OK(GPU_FN(alloc)(gpu, len * sizeof(float), &d, &ok_err));
	return d;
}

/* A host copy of device memory, after the stream has finished. */
static float *dev_fetch(struct tr_backend *gpu, const float *dev, size_t len)
{
	float *h = malloc(len * sizeof(*h));
	assert_non_null(h);
	OK(GPU_FN(sync)(gpu, &ok_err));
	OK(GPU_FN(download)(gpu, h, dev, len * sizeof(float), &ok_err));
	return h;
}

/*
 * Fail unless |got - want| <= atol + rtol |want| everywhere (NaN only
 * matching NaN); print the largest absolute and relative differences.
 */
static void compare(const char *what, const float *got, const float *want, size_t len, double rtol,
		    double atol)
{
	double worst_abs = 0, worst_rel = 0;
	for (size_t i = 0; i < len; i++) {
		if (isnan(want[i]) || isnan(got[i])) {
			if (!(isnan(want[i]) && isnan(got[i])))
				fail_msg("%s[%zu]: cuda %.9g, cpu %.9g", what, i, got[i], want[i]);
			continue;
		}
		double diff = fabs((double)got[i] - (double)want[i]);
		double rel = want[i] != 0 ? diff / fabs(want[i]) : diff;
		worst_abs = diff > worst_abs ? diff : worst_abs;
		worst_rel = rel > worst_rel ? rel : worst_rel;
		if (diff > atol + rtol * fabs(want[i]))
			fail_msg("%s[%zu]: cuda %.9g, cpu %.9g (|diff| %.3g > %.3g + %.3g |cpu|)",
				 what, i, got[i], want[i], diff, atol, rtol);
	}
	print_message("# %-28s %8zu values: max |diff| %.3g, max rel %.3g\n", what, len, worst_abs,
		      worst_rel);
}

/* compare() of device memory against a host result. */
static void compare_dev(struct tr_backend *gpu, const char *what, const float *dev,
			const float *want, size_t len, double rtol, double atol)
{
	float *got = dev_fetch(gpu, dev, len);
	compare(what, got, want, len, rtol, atol);
	free(got);
}

/* The activation shapes of yolov5n at 128 px, batch 2 (Conv/C3 outputs per stage). */
static const struct tr_shape stages[] = {
    {2, 16, 64, 64}, {2, 32, 32, 32}, {2, 64, 16, 16}, {2, 128, 8, 8}, {2, 256, 4, 4},
};
#define NSTAGES (sizeof(stages) / sizeof(stages[0]))

/* ------------------------------------------------------------------------ */
/* batch norm                                                                */

static void bn_train_one(uint64_t seed, struct tr_shape s)
{
	struct pair p = pair_create(seed);
	uint64_t r = seed ^ (uint64_t)s.c;
	size_t len = tr_shape_numel(s), c = (size_t)s.c;
	float *x = host_rand(len, &r, 3.0f), *gamma = host_rand(c, &r, 1.5f);
	float *beta = host_rand(c, &r, 1.0f), *rmean = host_rand(c, &r, 0.5f);
	float *rvar = host_rand(c, &r, 0.5f);
	for (size_t i = 0; i < c; i++)
		rvar[i] += 1.0f;
	for (size_t i = 0; i < len; i++) /* an offset per channel, as real activations have */
		x[i] += (float)(i / ((size_t)s.h * s.w) % c) * 0.25f;
	float *dx = dev_copy(p.gpu, x, len), *dgamma = dev_copy(p.gpu, gamma, c);
	float *dbeta = dev_copy(p.gpu, beta, c), *drmean = dev_copy(p.gpu, rmean, c);
	float *drvar = dev_copy(p.gpu, rvar, c), *dy = dev_alloc(p.gpu, len);
	float *dsmean = dev_alloc(p.gpu, c), *dsinv = dev_alloc(p.gpu, c);
	float *y = malloc(len * sizeof(*y)), *smean = malloc(c * sizeof(float));
	float *sinv = malloc(c * sizeof(float));
	assert_true(y != NULL && smean != NULL && sinv != NULL);
	struct tr_tensor tx = {x, s}, ty = {y, s}, gx = {dx, s}, gy = {dy, s};
	OK(p.cpu->ops->bn_forward_train(p.cpu, &tx, gamma, beta, 1e-3f, 0.03f, rmean, rvar, smean,
					sinv, &ty, &ok_err));
	OK(p.gpu->ops->bn_forward_train(p.gpu, &gx, dgamma, dbeta, 1e-3f, 0.03f, drmean, drvar,
					dsmean, dsinv, &gy, &ok_err));
	compare_dev(p.gpu, "bn_forward_train y", dy, y, len, BN_RTOL, BN_ATOL);
	compare_dev(p.gpu, "bn_forward_train save_mean", dsmean, smean, c, BN_RTOL, BN_ATOL);
	compare_dev(p.gpu, "bn_forward_train save_invstd", dsinv, sinv, c, BN_RTOL, BN_ATOL);
	compare_dev(p.gpu, "bn_forward_train running_mean", drmean, rmean, c, BN_RTOL, BN_ATOL);
	compare_dev(p.gpu, "bn_forward_train running_var", drvar, rvar, c, BN_RTOL, BN_ATOL);

	/* eval with the running statistics just updated (the same on both sides) */
	OK(GPU_FN(upload)(p.gpu, drmean, rmean, c * sizeof(float), &ok_err));
	OK(GPU_FN(upload)(p.gpu, drvar, rvar, c * sizeof(float), &ok_err));
	OK(p.cpu->ops->bn_forward_eval(p.cpu, &tx, gamma, beta, 1e-3f, rmean, rvar, &ty, &ok_err));
	OK(p.gpu->ops->bn_forward_eval(p.gpu, &gx, dgamma, dbeta, 1e-3f, drmean, drvar, &gy,
				       &ok_err));
	compare_dev(p.gpu, "bn_forward_eval y", dy, y, len, 0, 0);

	free(x), free(gamma), free(beta), free(rmean), free(rvar), free(y), free(smean), free(sinv);
	float *devs[] = {dx, dgamma, dbeta, drmean, drvar, dy, dsmean, dsinv};
	for (size_t i = 0; i < sizeof(devs) / sizeof(devs[0]); i++)
		GPU_FN(free)(p.gpu, devs[i]);
	pair_destroy(&p);
}

/* Several chunks a channel (kernels.h TR_CUDA_BN_CHUNK), the last one partial. */
static const struct tr_shape bn_chunked = {2, 8, 96, 96};

static void test_bn_forward(void **state)
{
	(void)state;
	for (size_t k = 0; k < NSEEDS; k++) {
		for (size_t i = 0; i < NSTAGES; i++)
			bn_train_one(seeds[k], stages[i]);
		bn_train_one(seeds[k], bn_chunked);
	}
}

/* dx (in place over dy on both backends), dgamma and dbeta accumulating onto nonzero values */
static void bn_backward_one(uint64_t seed, struct tr_shape s)
{
	struct pair p = pair_create(seed);
	uint64_t r = seed * 3 + (uint64_t)s.c;
	size_t len = tr_shape_numel(s), c = (size_t)s.c;
	float *x = host_rand(len, &r, 2.0f), *dy = host_rand(len, &r, 1.0f);
	float *gamma = host_rand(c, &r, 1.5f), *smean = host_rand(c, &r, 0.2f);
	float *sinv = host_rand(c, &r, 0.5f), *dgamma = host_rand(c, &r, 1.0f);
	float *dbeta = host_rand(c, &r, 1.0f);
	for (size_t i = 0; i < c; i++)
		sinv[i] += 1.0f;
	float *gx = dev_copy(p.gpu, x, len), *gdy = dev_copy(p.gpu, dy, len);
	float *ggamma = dev_copy(p.gpu, gamma, c), *gsmean = dev_copy(p.gpu, smean, c);
	float *gsinv = dev_copy(p.gpu, sinv, c), *gdgamma = dev_copy(p.gpu, dgamma, c);
	float *gdbeta = dev_copy(p.gpu, dbeta, c);
	struct tr_tensor tx = {x, s}, tdy = {dy, s}, ux = {gx, s}, udy = {gdy, s};
	OK(p.cpu->ops->bn_backward(p.cpu, &tx, &tdy, gamma, smean, sinv, &tdy, dgamma, dbeta,
				   &ok_err));
	OK(p.gpu->ops->bn_backward(p.gpu, &ux, &udy, ggamma, gsmean, gsinv, &udy, gdgamma, gdbeta,
				   &ok_err));
	compare_dev(p.gpu, "bn_backward dx (in place)", gdy, dy, len, BN_RTOL, BN_ATOL);
	compare_dev(p.gpu, "bn_backward dgamma (+=)", gdgamma, dgamma, c, BN_RTOL, BN_ATOL);
	compare_dev(p.gpu, "bn_backward dbeta (+=)", gdbeta, dbeta, c, BN_RTOL, BN_ATOL);
	free(x), free(dy), free(gamma), free(smean), free(sinv), free(dgamma), free(dbeta);
	float *devs[] = {gx, gdy, ggamma, gsmean, gsinv, gdgamma, gdbeta};
	for (size_t i = 0; i < sizeof(devs) / sizeof(devs[0]); i++)
		GPU_FN(free)(p.gpu, devs[i]);
	pair_destroy(&p);
}

static void test_bn_backward(void **state)
{
	(void)state;
	for (size_t k = 0; k < NSEEDS; k++) {
		for (size_t i = 0; i < NSTAGES; i++)
			bn_backward_one(seeds[k], stages[i]);
		bn_backward_one(seeds[k], bn_chunked);
	}
}

/*
 * --sync-bn's passes (bn_channel_sums, bn_channel_affine): the sums of x
 * and (x - mean)^2 (forward) and of dy and dy (x - mean) (backward) about
 * given double means, against the CPU's with |diff| <= n DBL_EPSILON times
 * the channel's sum of |terms|, n its values (the bound of summing n
 * doubles in any order: the CPU adds in index order, this backend in a
 * tree; measured: 3.4e-14 for n = 8192, 2.5e-16 with dy); the
 * folded affine y = x a + d and dx = k dy + a x + d (in place over dy):
 * exact, the same float operations per element.
 */
static void compare_sums(const char *what, struct tr_backend *gpu, const double *dev,
			 const double *want, const double *magnitude, size_t len, size_t terms)
{
	double *got = malloc(len * sizeof(*got)), worst = 0, rtol = (double)terms * DBL_EPSILON;
	assert_non_null(got);
	OK(GPU_FN(sync)(gpu, &ok_err));
	OK(GPU_FN(download)(gpu, got, dev, len * sizeof(*got), &ok_err));
	for (size_t i = 0; i < len; i++) {
		double rel = fabs(got[i] - want[i]) / magnitude[i];
		worst = rel > worst ? rel : worst;
		if (!(rel <= rtol))
			fail_msg("%s[%zu]: cuda %.17g, cpu %.17g (%.3g of the sum of |terms|)",
				 what, i, got[i], want[i], rel);
	}
	print_message("# %-28s %8zu values: max |diff| / sum |terms| %.3g\n", what, len, worst);
	free(got);
}

/* The sums of |terms| that bound bn_channel_sums' rounding, per output, over channels of x. */
static void sums_magnitude(struct tr_shape s, const float *x, const float *dy, const double *mean,
			   double *magnitude)
{
	size_t hw = (size_t)s.h * s.w, c = (size_t)s.c;
	for (size_t k = 0; k < 2 * c; k++)
		magnitude[k] = 1e-300;
	for (size_t i = 0; i < tr_shape_numel(s); i++) {
		size_t ch = i / hw % c;
		double xc = (double)x[i] - mean[ch];
		magnitude[ch] += fabs(dy != NULL ? dy[i] : x[i]);
		magnitude[c + ch] += fabs(dy != NULL ? dy[i] * xc : xc * xc);
	}
}

static void bn_channel_one(uint64_t seed, struct tr_shape s)
{
	struct pair p = pair_create(seed);
	uint64_t r = seed * 5 + (uint64_t)s.c;
	size_t len = tr_shape_numel(s), c = (size_t)s.c;
	float *x = host_rand(len, &r, 3.0f), *dy = host_rand(len, &r, 1.0f);
	float *coef = host_rand(3 * c, &r, 1.5f);
	double *mean = malloc(c * sizeof(*mean)), *sums = malloc(2 * c * sizeof(*sums));
	double *magnitude = malloc(2 * c * sizeof(*magnitude));
	float *y = malloc(len * sizeof(*y));
	assert_true(mean != NULL && sums != NULL && magnitude != NULL && y != NULL);
	for (size_t i = 0; i < len; i++) /* an offset per channel, as real activations have */
		x[i] += (float)(i / ((size_t)s.h * s.w) % c) * 0.25f;
	for (size_t k = 0; k < c; k++) /* near the channel's mean, as --sync-bn's are */
		mean[k] = (double)k * 0.25 + uniform(&r, 0.1f);
	float *gx = dev_copy(p.gpu, x, len), *gdy = dev_copy(p.gpu, dy, len);
	float *gcoef = dev_copy(p.gpu, coef, 3 * c), *gy = dev_alloc(p.gpu, len);
	void *gmean = NULL, *gsums = NULL;
	OK(GPU_FN(alloc)(p.gpu, c * sizeof(double), &gmean, &ok_err));
	OK(GPU_FN(alloc)(p.gpu, 2 * c * sizeof(double), &gsums, &ok_err));
	OK(GPU_FN(upload)(p.gpu, gmean, mean, c * sizeof(double), &ok_err));
	struct tr_tensor tx = {x, s}, tdy = {dy, s}, ty = {y, s};
	struct tr_tensor ux = {gx, s}, udy = {gdy, s}, uy = {gy, s};

	OK(p.cpu->ops->bn_channel_sums(p.cpu, &tx, NULL, mean, sums, &ok_err));
	OK(p.gpu->ops->bn_channel_sums(p.gpu, &ux, NULL, gmean, gsums, &ok_err));
	sums_magnitude(s, x, NULL, mean, magnitude);
	compare_sums("bn_channel_sums x, (x-m)^2", p.gpu, gsums, sums, magnitude, 2 * c, len / c);

	OK(p.cpu->ops->bn_channel_sums(p.cpu, &tx, &tdy, mean, sums, &ok_err));
	OK(p.gpu->ops->bn_channel_sums(p.gpu, &ux, &udy, gmean, gsums, &ok_err));
	sums_magnitude(s, x, dy, mean, magnitude);
	compare_sums("bn_channel_sums dy, dy(x-m)", p.gpu, gsums, sums, magnitude, 2 * c, len / c);

	OK(p.cpu->ops->bn_channel_affine(p.cpu, &tx, NULL, coef, &ty, &ok_err));
	OK(p.gpu->ops->bn_channel_affine(p.gpu, &ux, NULL, gcoef, &uy, &ok_err));
	compare_dev(p.gpu, "bn_channel_affine y", gy, y, len, 0, 0);

	OK(p.cpu->ops->bn_channel_affine(p.cpu, &tx, &tdy, coef, &tdy, &ok_err));
	OK(p.gpu->ops->bn_channel_affine(p.gpu, &ux, &udy, gcoef, &udy, &ok_err));
	compare_dev(p.gpu, "bn_channel_affine dx (= dy)", gdy, dy, len, 0, 0);

	free(x), free(dy), free(coef), free(mean), free(sums), free(magnitude), free(y);
	void *devs[] = {gx, gdy, gcoef, gy, gmean, gsums};
	for (size_t i = 0; i < sizeof(devs) / sizeof(devs[0]); i++)
		GPU_FN(free)(p.gpu, devs[i]);
	pair_destroy(&p);
}

static void test_bn_channel(void **state)
{
	(void)state;
	for (size_t k = 0; k < NSEEDS; k++) {
		for (size_t i = 0; i < NSTAGES; i++)
			bn_channel_one(seeds[k], stages[i]);
		bn_channel_one(seeds[k], bn_chunked);
	}
}

#if !defined(TEST_ON_GPU)
/*
 * --sync-bn's wrapper (syncbn.h) over emulated CUDA ranks against the same
 * wrapper over CPU ranks: 2 ranks as threads with the thread communicator
 * (the emulation's device memory is host memory, which it takes), each on
 * its half of the batch, BN forward then backward (dx in place over dy),
 * twice so that the running statistics and dgamma, dbeta accumulate.
 * Tolerance BN_RTOL, BN_ATOL as bn_forward_train's (the double sums'
 * order); on a GPU this is NCCL's, two devices (not run: cuda_ops_gpu
 * skips it).
 */
enum { SYNC_WORLD = 2 };

struct sync_rank {
	struct tr_comm *comm;
	uint64_t seed;		     /* 0: the CPU backend, else the emulation's thread orders */
	struct tr_shape shape;	     /* this rank's shard */
	const float *x, *dy, *param; /* shard x, dy; param [6][c]: gamma, beta, rm, rv, dg, db */
	float *y, *dx, *stat;	     /* shard y, dx; stat [6][c]: mean, invstd, rm, rv, dg, db */
	int rc;
	struct ut_err err;
};

static void *sync_rank_run(void *arg)
{
	struct sync_rank *job = arg;
	struct tr_backend *inner = NULL, *bn = NULL;
	size_t len = tr_shape_numel(job->shape), c = (size_t)job->shape.c;
	void *dev[6] = {NULL};
	float *p[6] = {NULL}; /* x, dy, y, gamma, beta, stats [6][c] */
	job->rc = job->seed == 0 ? tr_cpu_backend_create(1, &inner, &job->err)
				 : tr_cuda_emu_backend_create(job->seed, &inner, &job->err);
	if (job->rc == 0)
		job->rc = tr_syncbn_backend_create(inner, job->comm, (int)c, &bn, &job->err);
	size_t sizes[] = {len, len, len, c, c, 6 * c};
	for (int k = 0; k < 6 && job->rc == 0; k++) {
		job->rc = bn->ops->alloc(bn, sizes[k] * sizeof(float), &dev[k], &job->err);
		p[k] = dev[k];
	}
	const float *from[] = {job->x, job->dy, NULL, job->param, job->param + c, job->param};
	for (int k = 0; k < 6 && job->rc == 0; k++)
		if (from[k] != NULL && k != 5)
			job->rc =
			    bn->ops->upload(bn, p[k], from[k], sizes[k] * sizeof(float), &job->err);
	if (job->rc == 0) /* running mean, var, dgamma, dbeta from param[2..5]; mean, invstd 0 */
		job->rc = bn->ops->memset(bn, p[5], 0, 2 * c * sizeof(float), &job->err) ||
			  bn->ops->upload(bn, p[5] + 2 * c, job->param + 2 * c,
					  4 * c * sizeof(float), &job->err);
	struct tr_tensor x = {p[0], job->shape}, dy = {p[1], job->shape}, y = {p[2], job->shape};
	float *mean = p[5], *invstd = p[5] + c, *rm = p[5] + 2 * c, *rv = p[5] + 3 * c;
	for (int step = 0; step < 2 && job->rc == 0; step++) {
		job->rc = bn->ops->bn_forward_train(bn, &x, p[3], p[4], 1e-3f, 0.03f, rm, rv, mean,
						    invstd, &y, &job->err);
		if (job->rc == 0)
			job->rc = bn->ops->bn_backward(bn, &y, &dy, p[3], mean, invstd, &dy,
						       p[5] + 4 * c, p[5] + 5 * c, &job->err);
	}
	if (job->rc == 0)
		job->rc = bn->ops->sync(bn, &job->err) ||
			  bn->ops->download(bn, job->y, p[2], len * sizeof(float), &job->err) ||
			  bn->ops->download(bn, job->dx, p[1], len * sizeof(float), &job->err) ||
			  bn->ops->download(bn, job->stat, p[5], 6 * c * sizeof(float), &job->err);
	if (job->rc != 0)
		tr_comm_abort(job->comm);
	for (int k = 0; k < 6; k++)
		if (bn != NULL)
			bn->ops->free(bn, dev[k]);
	tr_backend_destroy(bn);
	tr_backend_destroy(inner);
	return NULL;
}

/* The whole batch's y, dx and each rank's statistics, over SYNC_WORLD ranks of one kind. */
static void sync_run(uint64_t seed, struct tr_shape whole, const float *x, const float *dy,
		     const float *param, float *y, float *dx, float *stat)
{
	struct tr_comm *comms[SYNC_WORLD];
	pthread_t threads[SYNC_WORLD];
	struct sync_rank jobs[SYNC_WORLD];
	struct ut_err err = {{0}};
	struct tr_shape shard = whole;
	shard.n = whole.n / SYNC_WORLD;
	size_t per = tr_shape_numel(shard), c = (size_t)whole.c;
	if (tr_comm_thread_create(SYNC_WORLD, comms, &err) != 0)
		fail_msg("tr_comm_thread_create: %s", err.msg);
	for (int r = 0; r < SYNC_WORLD; r++) {
		jobs[r] = (struct sync_rank){.comm = comms[r],
					     .seed = seed == 0 ? 0 : seed + (uint64_t)r,
					     .shape = shard,
					     .x = x + r * per,
					     .dy = dy + r * per,
					     .param = param,
					     .y = y + r * per,
					     .dx = dx + r * per,
					     .stat = stat + r * 6 * c};
		assert_int_equal(pthread_create(&threads[r], NULL, sync_rank_run, &jobs[r]), 0);
	}
	for (int r = 0; r < SYNC_WORLD; r++)
		assert_int_equal(pthread_join(threads[r], NULL), 0);
	for (int r = 0; r < SYNC_WORLD; r++) {
		if (jobs[r].rc != 0)
			fail_msg("sync-bn rank %d: %s", r, jobs[r].err.msg);
		tr_comm_destroy(comms[r]);
	}
}

static void sync_bn_one(uint64_t seed, struct tr_shape s)
{
	uint64_t r = seed * 7 + (uint64_t)s.c;
	size_t len = tr_shape_numel(s), c = (size_t)s.c;
	float *x = host_rand(len, &r, 3.0f), *dy = host_rand(len, &r, 1.0f);
	float *param = host_rand(6 * c, &r, 1.0f);
	for (size_t i = 0; i < len; i++)
		x[i] += (float)(i / ((size_t)s.h * s.w) % c) * 0.25f;
	for (size_t k = 0; k < c; k++)
		param[3 * c + k] += 1.5f; /* running_var > 0 */
	float *out[2][3];
	for (int kind = 0; kind < 2; kind++) {
		out[kind][0] = malloc(len * sizeof(float));
		out[kind][1] = malloc(len * sizeof(float));
		out[kind][2] = malloc(SYNC_WORLD * 6 * c * sizeof(float));
		assert_true(out[kind][0] != NULL && out[kind][1] != NULL && out[kind][2] != NULL);
		sync_run(kind == 0 ? 0 : seed, s, x, dy, param, out[kind][0], out[kind][1],
			 out[kind][2]);
	}
	compare("sync-bn y", out[1][0], out[0][0], len, BN_RTOL, BN_ATOL);
	compare("sync-bn dx (in place)", out[1][1], out[0][1], len, BN_RTOL, BN_ATOL);
	compare("sync-bn statistics, dg, db", out[1][2], out[0][2], SYNC_WORLD * 6 * c, BN_RTOL,
		BN_ATOL);
	for (int kind = 0; kind < 2; kind++)
		free(out[kind][0]), free(out[kind][1]), free(out[kind][2]);
	free(x), free(dy), free(param);
}

static void test_sync_bn(void **state)
{
	(void)state;
	for (size_t k = 0; k < NSEEDS; k++) {
		for (size_t i = 0; i < NSTAGES; i++)
			sync_bn_one(seeds[k], stages[i]);
		sync_bn_one(seeds[k], bn_chunked);
	}
}
#else
/* On GPUs the ranks' communicator is NCCL's, with a device each: not one GPU's test. */
static void test_sync_bn(void **state)
{
	(void)state;
	skip();
}
#endif

/* ------------------------------------------------------------------------ */
/* elementwise: SiLU, add (outputs may alias inputs)                         */

static void elementwise_one(uint64_t seed, struct tr_shape s)
{
	struct pair p = pair_create(seed);
	uint64_t r = seed + (uint64_t)s.c;
	size_t len = tr_shape_numel(s);
	float *x = host_rand(len, &r, 12.0f), *dy = host_rand(len, &r, 1.0f);
	float *a = host_rand(len, &r, 2.0f);
	x[0] = 100.0f, x[1] = -100.0f, x[2] = 0.0f, x[3] = -0.0f; /* exp's clamps */
	float *gx = dev_copy(p.gpu, x, len), *gdy = dev_copy(p.gpu, dy, len);
	float *ga = dev_copy(p.gpu, a, len), *gy = dev_alloc(p.gpu, len);
	float *y = malloc(len * sizeof(*y)), *dx = malloc(len * sizeof(*dx));
	assert_true(y != NULL && dx != NULL);
	struct tr_tensor tx = {x, s}, ty = {y, s}, tdy = {dy, s}, tdx = {dx, s}, ta = {a, s};
	struct tr_tensor ux = {gx, s}, uy = {gy, s}, udy = {gdy, s}, ua = {ga, s};

	OK(p.cpu->ops->silu_forward(p.cpu, &tx, &ty, &ok_err));
	OK(p.gpu->ops->silu_forward(p.gpu, &ux, &uy, &ok_err));
	compare_dev(p.gpu, "silu_forward", gy, y, len, 0, 0);

	OK(p.cpu->ops->silu_backward(p.cpu, &tx, &tdy, &tdx, &ok_err));
	OK(p.gpu->ops->silu_backward(p.gpu, &ux, &udy, &udy, &ok_err)); /* in place */
	compare_dev(p.gpu, "silu_backward (dx = dy)", gdy, dx, len, 0, 0);

	OK(p.cpu->ops->add_forward(p.cpu, &ta, &tx, &ty, &ok_err));
	OK(p.gpu->ops->add_forward(p.gpu, &ua, &ux, &ua, &ok_err)); /* y = a */
	compare_dev(p.gpu, "add_forward (y = a)", ga, y, len, 0, 0);

	OK(p.cpu->ops->silu_forward(p.cpu, &tx, &tx, &ok_err)); /* in place on both */
	OK(p.gpu->ops->silu_forward(p.gpu, &ux, &ux, &ok_err));
	compare_dev(p.gpu, "silu_forward (y = x)", gx, x, len, 0, 0);

	free(x), free(dy), free(a), free(y), free(dx);
	GPU_FN(free)(p.gpu, gx), GPU_FN(free)(p.gpu, gdy);
	GPU_FN(free)(p.gpu, ga), GPU_FN(free)(p.gpu, gy);
	pair_destroy(&p);
}

static void test_elementwise(void **state)
{
	(void)state;
	for (size_t k = 0; k < NSEEDS; k++)
		for (size_t i = 0; i < NSTAGES; i++)
			elementwise_one(seeds[k], stages[i]);
}

/* ------------------------------------------------------------------------ */
/* max pool k x k, stride 1, pad k/2, -inf padding (PyTorch's first max wins) */

/*
 * x quantised to a few levels, so windows hold ties (the first max must
 * win), plus a NaN and -inf; SPPF's k = 5 on its 4x4 planes and k = 3, 5
 * on a 16x16 plane.
 */
static void maxpool_one(uint64_t seed, int k, struct tr_shape s)
{
	struct pair p = pair_create(seed);
	uint64_t r = seed + (uint64_t)(k * 100 + s.h);
	size_t len = tr_shape_numel(s);
	float *x = host_rand(len, &r, 2.0f), *dy = host_rand(len, &r, 1.0f);
	for (size_t i = 0; i < len; i++)
		x[i] = roundf(x[i] * 2.0f) / 2.0f;
	x[5] = NAN;
	x[len / 2] = -INFINITY;
	float *gx = dev_copy(p.gpu, x, len), *gdy = dev_copy(p.gpu, dy, len);
	float *gy = dev_alloc(p.gpu, len);
	float *y = malloc(len * sizeof(*y)), *dx = malloc(len * sizeof(*dx));
	assert_true(y != NULL && dx != NULL);
	struct tr_tensor tx = {x, s}, ty = {y, s}, tdy = {dy, s}, tdx = {dx, s};
	struct tr_tensor ux = {gx, s}, uy = {gy, s}, udy = {gdy, s};
	OK(p.cpu->ops->maxpool_forward(p.cpu, k, &tx, &ty, &ok_err));
	OK(p.gpu->ops->maxpool_forward(p.gpu, k, &ux, &uy, &ok_err));
	compare_dev(p.gpu, "maxpool_forward", gy, y, len, 0, 0);
	float *gdx = dev_alloc(p.gpu, len);
	struct tr_tensor udx = {gdx, s};
	OK(p.cpu->ops->maxpool_backward(p.cpu, k, &tx, &ty, &tdy, &tdx, &ok_err));
	OK(p.gpu->ops->maxpool_backward(p.gpu, k, &ux, &uy, &udy, &udx, &ok_err));
	compare_dev(p.gpu, "maxpool_backward", gdx, dx, len, 0, 0);
	free(x), free(dy), free(y), free(dx);
	GPU_FN(free)(p.gpu, gx), GPU_FN(free)(p.gpu, gdy), GPU_FN(free)(p.gpu, gy);
	GPU_FN(free)(p.gpu, gdx);
	pair_destroy(&p);
}

static void test_maxpool(void **state)
{
	(void)state;
	for (size_t i = 0; i < NSEEDS; i++) {
		maxpool_one(seeds[i], 5, (struct tr_shape){2, 128, 4, 4});
		maxpool_one(seeds[i], 5, (struct tr_shape){2, 8, 16, 16});
		maxpool_one(seeds[i], 3, (struct tr_shape){2, 8, 16, 16});
	}
}

/* ------------------------------------------------------------------------ */
/* nearest 2x upsample                                                       */

static void upsample_one(uint64_t seed, struct tr_shape s)
{
	struct pair p = pair_create(seed);
	uint64_t r = seed + (uint64_t)s.c;
	struct tr_shape big = {s.n, s.c, 2 * s.h, 2 * s.w};
	size_t len = tr_shape_numel(s), blen = tr_shape_numel(big);
	float *x = host_rand(len, &r, 2.0f), *dy = host_rand(blen, &r, 1.0f);
	float *gx = dev_copy(p.gpu, x, len), *gdy = dev_copy(p.gpu, dy, blen);
	float *gy = dev_alloc(p.gpu, blen);
	float *y = malloc(blen * sizeof(*y)), *dx = malloc(len * sizeof(*dx));
	assert_true(y != NULL && dx != NULL);
	struct tr_tensor tx = {x, s}, ty = {y, big}, tdy = {dy, big}, tdx = {dx, s};
	struct tr_tensor ux = {gx, s}, uy = {gy, big}, udy = {gdy, big};
	OK(p.cpu->ops->upsample2x_forward(p.cpu, &tx, &ty, &ok_err));
	OK(p.gpu->ops->upsample2x_forward(p.gpu, &ux, &uy, &ok_err));
	compare_dev(p.gpu, "upsample2x_forward", gy, y, blen, 0, 0);
	OK(p.cpu->ops->upsample2x_backward(p.cpu, &tdy, &tdx, &ok_err));
	OK(p.gpu->ops->upsample2x_backward(p.gpu, &udy, &ux, &ok_err));
	compare_dev(p.gpu, "upsample2x_backward", gx, dx, len, 0, 0);
	free(x), free(dy), free(y), free(dx);
	GPU_FN(free)(p.gpu, gx), GPU_FN(free)(p.gpu, gdy), GPU_FN(free)(p.gpu, gy);
	pair_destroy(&p);
}

static void test_upsample(void **state)
{
	(void)state;
	for (size_t i = 0; i < NSEEDS; i++) {
		upsample_one(seeds[i], (struct tr_shape){2, 128, 4, 4}); /* P5 -> P4 */
		upsample_one(seeds[i], (struct tr_shape){2, 64, 8, 8});	 /* P4 -> P3 */
	}
}

/* ------------------------------------------------------------------------ */
/* concat / split along channels                                             */

/* parts of cs[0..count) channels at h x w: concat forward, then split back from a random dy */
static void concat_one(uint64_t seed, const int *cs, int count, int h)
{
	struct pair p = pair_create(seed);
	uint64_t r = seed + (uint64_t)(count * 1000 + h);
	struct tr_tensor tparts[4], uparts[4];
	const struct tr_tensor *tin[4], *uin[4];
	struct tr_tensor *tout[4], *uout[4];
	int total = 0;
	for (int i = 0; i < count; i++) {
		struct tr_shape s = {2, cs[i], h, h};
		tparts[i] = (struct tr_tensor){host_rand(tr_shape_numel(s), &r, 1.0f), s};
		uparts[i] =
		    (struct tr_tensor){dev_copy(p.gpu, tparts[i].data, tr_shape_numel(s)), s};
		tin[i] = &tparts[i], uin[i] = &uparts[i];
		tout[i] = &tparts[i], uout[i] = &uparts[i];
		total += cs[i];
	}
	struct tr_shape ws = {2, total, h, h};
	size_t wlen = tr_shape_numel(ws);
	float *y = malloc(wlen * sizeof(*y)), *gy = dev_alloc(p.gpu, wlen);
	assert_non_null(y);
	struct tr_tensor ty = {y, ws}, uy = {gy, ws};
	OK(p.cpu->ops->concat_forward(p.cpu, tin, count, &ty, &ok_err));
	OK(p.gpu->ops->concat_forward(p.gpu, uin, count, &uy, &ok_err));
	compare_dev(p.gpu, "concat_forward", gy, y, wlen, 0, 0);
	for (size_t i = 0; i < wlen; i++)
		y[i] = uniform(&r, 1.0f);
	OK(GPU_FN(upload)(p.gpu, gy, y, wlen * sizeof(float), &ok_err));
	OK(p.cpu->ops->concat_backward(p.cpu, &ty, tout, count, &ok_err));
	OK(p.gpu->ops->concat_backward(p.gpu, &uy, uout, count, &ok_err));
	for (int i = 0; i < count; i++) {
		compare_dev(p.gpu, "concat_backward part", uparts[i].data, tparts[i].data,
			    tr_shape_numel(tparts[i].shape), 0, 0);
		free(tparts[i].data);
		GPU_FN(free)(p.gpu, uparts[i].data);
	}
	free(y);
	GPU_FN(free)(p.gpu, gy);
	pair_destroy(&p);
}

static void test_concat(void **state)
{
	(void)state;
	const int sppf[] = {128, 128, 128, 128}, head[] = {64, 64}, c3[] = {32, 32};
	for (size_t i = 0; i < NSEEDS; i++) {
		concat_one(seeds[i], sppf, 4, 4);
		concat_one(seeds[i], head, 2, 16);
		concat_one(seeds[i], c3, 2, 32);
	}
}

/* ------------------------------------------------------------------------ */
/* Detect decode (inference)                                                 */

/* yolov5n's three levels (80 classes) at 128 px into one [2, rows, 85] output */
static void test_detect_decode(void **state)
{
	(void)state;
	const int na = 3, no = 85, n = 2;
	const float anchors_px[3][6] = {
	    {10, 13, 16, 30, 33, 23}, {30, 61, 62, 45, 59, 119}, {116, 90, 156, 198, 373, 326}};
	const int sizes[3] = {16, 8, 4};
	const float strides[3] = {8, 16, 32};
	float anchors[3][6]; /* grid units, as the model keeps them */
	for (int l = 0; l < 3; l++)
		for (int i = 0; i < 6; i++)
			anchors[l][i] = anchors_px[l][i] / strides[l];
	int rows = 0;
	for (int l = 0; l < 3; l++)
		rows += na * sizes[l] * sizes[l];
	size_t out_len = (size_t)n * (size_t)rows * (size_t)no;
	for (size_t k = 0; k < NSEEDS; k++) {
		struct pair p = pair_create(seeds[k]);
		uint64_t r = seeds[k];
		float *out = host_rand(out_len, &r, 1.0f);
		float *gout = dev_copy(p.gpu, out, out_len);
		int row0 = 0;
		for (int l = 0; l < 3; l++) {
			struct tr_shape s = {n, na * no, sizes[l], sizes[l]};
			float *x = host_rand(tr_shape_numel(s), &r, 6.0f);
			float *gx = dev_copy(p.gpu, x, tr_shape_numel(s));
			float *ganchors = dev_copy(p.gpu, anchors[l], 2 * (size_t)na);
			struct tr_detect_level level = {na, no, anchors[l], strides[l], rows, row0};
			struct tr_detect_level glevel = {na, no, ganchors, strides[l], rows, row0};
			struct tr_tensor tx = {x, s}, ux = {gx, s};
			OK(p.cpu->ops->detect_decode(p.cpu, &level, &tx, out, &ok_err));
			OK(p.gpu->ops->detect_decode(p.gpu, &glevel, &ux, gout, &ok_err));
			GPU_FN(free)(p.gpu, ganchors);
			row0 += na * sizes[l] * sizes[l];
			free(x);
			GPU_FN(free)(p.gpu, gx);
		}
		compare_dev(p.gpu, "detect_decode", gout, out, out_len, DECODE_RTOL, DECODE_ATOL);
		free(out);
		GPU_FN(free)(p.gpu, gout);
		pair_destroy(&p);
	}
}

/* ------------------------------------------------------------------------ */
/* convolutions: the bias and its gradient                                   */

/*
 * Device memory holding host[len] one float past a 256-byte boundary, as a
 * model's weight after Detect's odd-sized bias is (the CUDA backend stages
 * such weights for cuDNN); *base is what to free.
 */
static float *dev_copy_misaligned(struct tr_backend *gpu, const float *host, size_t len,
				  float **base)
{
	*base = dev_alloc(gpu, len + 1);
	OK(GPU_FN(upload)(gpu, *base + 1, host, len * sizeof(float), &ok_err));
	return *base + 1;
}

/*
 * Each direction of a convolution: forward with bias, backward data, and
 * backward filter with dw and dbias accumulating onto nonzero values; with
 * misaligned, w and dw sit one float past an aligned address.
 */
static void conv_one(uint64_t seed, struct tr_conv conv, struct tr_shape in, int misaligned)
{
	struct pair p = pair_create(seed);
	uint64_t r = seed + (uint64_t)conv.cout;
	struct tr_shape out = tr_conv_out_shape(&conv, in);
	size_t xlen = tr_shape_numel(in), ylen = tr_shape_numel(out);
	size_t wlen = (size_t)conv.cout * conv.cin * conv.k * conv.k, blen = (size_t)conv.cout;
	float *x = host_rand(xlen, &r, 1.0f), *w = host_rand(wlen, &r, 0.3f);
	float *bias = host_rand(blen, &r, 1.0f), *dy = host_rand(ylen, &r, 1.0f);
	float *dw = host_rand(wlen, &r, 0.1f), *dbias = host_rand(blen, &r, 0.1f);
	float *y = malloc(ylen * sizeof(float)), *dx = malloc(xlen * sizeof(float));
	assert_true(y != NULL && dx != NULL);
	float *wbase = NULL, *dwbase = NULL;
	float *gx = dev_copy(p.gpu, x, xlen), *gbias = dev_copy(p.gpu, bias, blen);
	float *gw = misaligned ? dev_copy_misaligned(p.gpu, w, wlen, &wbase)
			       : (wbase = dev_copy(p.gpu, w, wlen));
	float *gdw = misaligned ? dev_copy_misaligned(p.gpu, dw, wlen, &dwbase)
				: (dwbase = dev_copy(p.gpu, dw, wlen));
	float *gdy = dev_copy(p.gpu, dy, ylen), *gdbias = dev_copy(p.gpu, dbias, blen);
	float *gy = dev_alloc(p.gpu, ylen), *gdx = dev_alloc(p.gpu, xlen);
	struct tr_tensor tx = {x, in}, ty = {y, out}, tdy = {dy, out}, tdx = {dx, in};
	struct tr_tensor ux = {gx, in}, uy = {gy, out}, udy = {gdy, out}, udx = {gdx, in};
	OK(p.cpu->ops->conv_forward(p.cpu, &conv, &tx, w, bias, &ty, &ok_err));
	OK(p.gpu->ops->conv_forward(p.gpu, &conv, &ux, gw, gbias, &uy, &ok_err));
	compare_dev(p.gpu, "conv_forward (+ bias)", gy, y, ylen, CONV_RTOL, CONV_ATOL);
	OK(p.cpu->ops->conv_backward_data(p.cpu, &conv, &tdy, w, &tdx, &ok_err));
	OK(p.gpu->ops->conv_backward_data(p.gpu, &conv, &udy, gw, &udx, &ok_err));
	compare_dev(p.gpu, "conv_backward_data", gdx, dx, xlen, CONV_RTOL, CONV_ATOL);
	/* dbias: the double sum of dy rounded once, added to the old value in float */
	float *exact = malloc(blen * sizeof(float));
	assert_non_null(exact);
	size_t ohw = (size_t)out.h * out.w;
	for (size_t c = 0; c < blen; c++) {
		double sum = 0;
		for (int n = 0; n < out.n; n++)
			for (size_t i = 0; i < ohw; i++)
				sum += dy[((size_t)n * blen + c) * ohw + i];
		exact[c] = dbias[c] + (float)sum;
	}
	OK(p.cpu->ops->conv_backward_filter(p.cpu, &conv, &tx, &tdy, dw, dbias, &ok_err));
	OK(p.gpu->ops->conv_backward_filter(p.gpu, &conv, &ux, &udy, gdw, gdbias, &ok_err));
	compare_dev(p.gpu, "conv_backward_filter dw (+=)", gdw, dw, wlen, CONV_RTOL, CONV_ATOL);
	compare_dev(p.gpu, "dbias (+=) vs double sum", gdbias, exact, blen, 0, 0);
	compare_dev(p.gpu, "dbias (+=) vs cpu", gdbias, dbias, blen, DBIAS_RTOL,
		    DBIAS_ATOL_PER_VALUE * (double)((size_t)out.n * ohw));
	free(exact);
	free(x), free(w), free(bias), free(dy), free(dw), free(dbias), free(y), free(dx);
	float *devs[] = {gx, wbase, gbias, gdy, dwbase, gdbias, gy, gdx};
	for (size_t i = 0; i < sizeof(devs) / sizeof(devs[0]); i++)
		GPU_FN(free)(p.gpu, devs[i]);
	pair_destroy(&p);
}

static void test_conv(void **state)
{
	(void)state;
	for (size_t k = 0; k < NSEEDS; k++) {
		conv_one(seeds[k], (struct tr_conv){64, 255, 1, 1, 0}, stages[2], 0); /* Detect */
		conv_one(seeds[k], (struct tr_conv){128, 255, 1, 1, 0}, stages[3], 1);
		conv_one(seeds[k], (struct tr_conv){32, 64, 3, 2, 1}, stages[1], 0);
		conv_one(seeds[k], (struct tr_conv){16, 16, 3, 1, 1}, stages[0], 1);
		/* dbias over 2 chunks a channel (TR_CUDA_BN_CHUNK), the last one partial */
		conv_one(seeds[k], (struct tr_conv){8, 4, 1, 1, 0}, (struct tr_shape){2, 8, 48, 48},
			 0);
	}
}

/* ------------------------------------------------------------------------ */
/* Detect: permute forward and backward                                      */

static void test_detect_permute(void **state)
{
	(void)state;
	const int na = 3, sizes[3] = {16, 8, 4};
	for (size_t k = 0; k < NSEEDS; k++)
		for (int l = 0; l < 3; l++) {
			struct pair p = pair_create(seeds[k]);
			uint64_t r = seeds[k] + (uint64_t)l;
			struct tr_shape s = {2, na * 85, sizes[l], sizes[l]};
			size_t len = tr_shape_numel(s);
			float *raw = host_rand(len, &r, 4.0f), *dout = host_rand(len, &r, 1.0f);
			float *out = malloc(len * sizeof(float)),
			      *draw = malloc(len * sizeof(float));
			assert_true(out != NULL && draw != NULL);
			float *graw = dev_copy(p.gpu, raw, len),
			      *gdout = dev_copy(p.gpu, dout, len);
			float *gout = dev_alloc(p.gpu, len), *gdraw = dev_alloc(p.gpu, len);
			struct tr_tensor traw = {raw, s}, tdraw = {draw, s};
			struct tr_tensor uraw = {graw, s}, udraw = {gdraw, s};
			OK(p.cpu->ops->detect_permute_forward(p.cpu, na, &traw, out, &ok_err));
			OK(p.gpu->ops->detect_permute_forward(p.gpu, na, &uraw, gout, &ok_err));
			compare_dev(p.gpu, "detect_permute_forward", gout, out, len, 0, 0);
			OK(p.cpu->ops->detect_permute_backward(p.cpu, na, dout, &tdraw, &ok_err));
			OK(p.gpu->ops->detect_permute_backward(p.gpu, na, gdout, &udraw, &ok_err));
			compare_dev(p.gpu, "detect_permute_backward", gdraw, draw, len, 0, 0);
			free(raw), free(dout), free(out), free(draw);
			GPU_FN(free)(p.gpu, graw), GPU_FN(free)(p.gpu, gdout);
			GPU_FN(free)(p.gpu, gout), GPU_FN(free)(p.gpu, gdraw);
			pair_destroy(&p);
		}
}

/* ------------------------------------------------------------------------ */
/* optimizer: update, gradient norm, EMA                                     */

/* Three steps of one optimizer on n values: param and both slots compared after each. */
static void optim_one(uint64_t seed, const struct tr_f_optim *step, size_t n)
{
	struct pair p = pair_create(seed);
	uint64_t r = seed + (uint64_t)step->adam * 7 + (uint64_t)step->decoupled;
	float *param = host_rand(n, &r, 1.0f), *grad = host_rand(n, &r, 0.1f);
	float *slot0 = calloc(n, sizeof(float)), *slot1 = calloc(n, sizeof(float));
	assert_true(slot0 != NULL && slot1 != NULL);
	float *gparam = dev_copy(p.gpu, param, n), *ggrad = dev_copy(p.gpu, grad, n);
	float *gslot0 = dev_copy(p.gpu, slot0, n), *gslot1 = dev_copy(p.gpu, slot1, n);
	for (int i = 0; i < 3; i++) {
		OK(p.cpu->ops->optim_update(p.cpu, step, param, grad, slot0,
					    step->adam ? slot1 : NULL, n, &ok_err));
		OK(p.gpu->ops->optim_update(p.gpu, step, gparam, ggrad, gslot0,
					    step->adam ? gslot1 : NULL, n, &ok_err));
	}
	compare_dev(p.gpu, step->adam ? "optim_update Adam param" : "optim_update SGD param",
		    gparam, param, n, 0, 0);
	compare_dev(p.gpu, "optim_update slot0", gslot0, slot0, n, 0, 0);
	compare_dev(p.gpu, "optim_update slot1", gslot1, slot1, n, 0, 0);
	free(param), free(grad), free(slot0), free(slot1);
	GPU_FN(free)(p.gpu, gparam), GPU_FN(free)(p.gpu, ggrad);
	GPU_FN(free)(p.gpu, gslot0), GPU_FN(free)(p.gpu, gslot1);
	pair_destroy(&p);
}

static void test_optim_update(void **state)
{
	(void)state;
	/* the scalars of tr_optim_step_scalars for lr 0.01, momentum 0.937, decay 5e-4, step 3 */
	const struct tr_f_optim sgd = {
	    .has_decay = 1, .lr = 0.01f, .momentum = 0.937f, .decay = 5e-4f};
	const struct tr_f_optim sgd_plain = {.lr = 0.01f, .momentum = 0.8f};
	const float b1 = 0.937f, b2 = 0.999f;
	const struct tr_f_optim adam = {.adam = 1,
					.has_decay = 1,
					.decay = 5e-4f,
					.step_size = 0.01f / (1.0f - b1 * b1 * b1),
					.bc2_sqrt = sqrtf(1.0f - b2 * b2 * b2),
					.b1 = b1,
					.one_minus_b1 = 1.0f - b1,
					.b2 = b2,
					.one_minus_b2 = 1.0f - b2,
					.eps = 1e-8f};
	struct tr_f_optim adamw = adam;
	adamw.decoupled = 1;
	adamw.shrink = 1.0f - 0.01f * 5e-4f;
	for (size_t k = 0; k < NSEEDS; k++) {
		optim_one(seeds[k], &sgd, 70001);
		optim_one(seeds[k], &sgd_plain, 1000);
		optim_one(seeds[k], &adam, 70001);
		optim_one(seeds[k], &adamw, 1000);
	}
}

/*
 * The loss scaler's unscale on n values with inv_scale, poisoned at the
 * indices of poison (inf, nan, -inf in turn): the values bit for bit and
 * found_inf as the CPU's, and found_inf as it must be (the op assigns it).
 */
static void amp_unscale_one(uint64_t seed, size_t n, float inv_scale, const size_t *poison,
			    size_t npoison)
{
	const float bad[] = {INFINITY, NAN, -INFINITY};
	struct pair p = pair_create(seed);
	uint64_t r = seed + n + npoison;
	size_t room = n ? n : 1;
	float *x = host_rand(room, &r, 3e4f);
	for (size_t i = 0; i < npoison; i++)
		x[poison[i]] = bad[i % 3];
	float *gx = dev_copy(p.gpu, x, room);
	int want = -1, got = -1;
	OK(p.cpu->ops->amp_unscale(p.cpu, x, inv_scale, n, &want, &ok_err));
	OK(p.gpu->ops->amp_unscale(p.gpu, gx, inv_scale, n, &got, &ok_err));
	print_message("# amp_unscale n %zu inv_scale %g, %zu inf/nan (first at %zu): found_inf "
		      "cuda %d, cpu %d\n",
		      n, (double)inv_scale, npoison, npoison ? poison[0] : 0, got, want);
	assert_int_equal(want, npoison > 0);
	assert_int_equal(got, want);
	float *back = dev_fetch(p.gpu, gx, room);
	if (memcmp(back, x, n * sizeof(float)) != 0) /* NaN's bits too: both keep the input's */
		compare("amp_unscale", back, x, n, 0, 0);
	free(back), free(x);
	GPU_FN(free)(p.gpu, gx);
	pair_destroy(&p);
}

/*
 * amp_unscale over one chunk, 13 (the last partial: 100003 values) and
 * none, at YOLOv5's first inv_scale 2^-16, at exactly 1 (no multiply) and
 * at 1/3 (a rounding multiply); inf and nan alone in the first, a middle
 * or the last block, and in several at once.
 */
static void test_amp_unscale(void **state)
{
	(void)state;
	const size_t n = 100003, chunk = TR_CUDA_SUM_CHUNK;
	const size_t first[] = {3}, middle[] = {5 * chunk + 17}, last[] = {n - 1};
	const size_t many[] = {n - 1, 5 * chunk + 17, 3, 9 * chunk};
	const float inv_scales[] = {1.0f / 65536.0f, 1.0f, (float)(1.0 / 3.0)};
	for (size_t k = 0; k < NSEEDS; k++)
		for (size_t i = 0; i < sizeof(inv_scales) / sizeof(inv_scales[0]); i++) {
			float inv = inv_scales[i];
			amp_unscale_one(seeds[k], n, inv, NULL, 0);
			amp_unscale_one(seeds[k], n, inv, first, 1);
			amp_unscale_one(seeds[k], n, inv, middle, 1);
			amp_unscale_one(seeds[k], n, inv, last, 1);
			amp_unscale_one(seeds[k], n, inv, many, 4);
			amp_unscale_one(seeds[k], chunk, inv, (const size_t[]){chunk - 1}, 1);
			amp_unscale_one(seeds[k], 1, inv, NULL, 0);
			amp_unscale_one(seeds[k], 0, inv, NULL, 0);
		}
}

/* Fail unless |got - want| <= rtol |want|; print the relative difference. */
static void compare_double(const char *what, double got, double want, double rtol)
{
	double rel = want != 0 ? fabs(got - want) / fabs(want) : fabs(got);
	print_message("# %-28s cuda %.17g, cpu %.17g: rel %.3g\n", what, got, want, rel);
	if (rel > rtol)
		fail_msg("%s: cuda %.17g, cpu %.17g (rel %.3g > %.3g)", what, got, want, rel, rtol);
}

/* sum_squares over one chunk, several (the last partial) and none; then scale and the EMA */
static void test_norm_scale_ema(void **state)
{
	(void)state;
	const size_t lens[] = {1, 8192, 100003, 0};
	for (size_t k = 0; k < NSEEDS; k++)
		for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
			struct pair p = pair_create(seeds[k]);
			uint64_t r = seeds[k] + i;
			size_t n = lens[i], room = n ? n : 1;
			float *x = host_rand(room, &r, 3.0f), *model = host_rand(room, &r, 1.0f);
			float *gx = dev_copy(p.gpu, x, room),
			      *gmodel = dev_copy(p.gpu, model, room);
			double want = -1, got = -2;
			OK(p.cpu->ops->sum_squares(p.cpu, x, n, &want, &ok_err));
			OK(p.gpu->ops->sum_squares(p.gpu, gx, n, &got, &ok_err));
			compare_double("sum_squares", got, want, SUM_RTOL);
			OK(p.cpu->ops->scale(p.cpu, x, 0.37f, n, &ok_err));
			OK(p.gpu->ops->scale(p.gpu, gx, 0.37f, n, &ok_err));
			compare_dev(p.gpu, "scale", gx, x, room, 0, 0);
			const double d = 0.9999 * (1.0 - exp(-3.0 / 2000.0));
			OK(p.cpu->ops->ema_update(p.cpu, x, model, (float)d, (float)(1.0 - d), n,
						  &ok_err));
			OK(p.gpu->ops->ema_update(p.gpu, gx, gmodel, (float)d, (float)(1.0 - d), n,
						  &ok_err));
			compare_dev(p.gpu, "ema_update", gx, x, room, 0, 0);
			free(x), free(model);
			GPU_FN(free)(p.gpu, gx), GPU_FN(free)(p.gpu, gmodel);
			pair_destroy(&p);
		}
}

/* ------------------------------------------------------------------------ */
/* the loss's dense objectness                                               */

/* a level of 2 x 3 x 48 x 48 cells of 85 (two sum chunks, the last partial), plain BCE and focal,
 * with and without gradient rows */
static void test_loss_obj_dense(void **state)
{
	(void)state;
	const struct tr_f_bce kinds[] = {{1.0f, 0.0f}, {1.3f, 1.5f}};
	const size_t cells = 2 * 3 * 48 * 48;
	const int width = 85;
	for (size_t k = 0; k < NSEEDS; k++)
		for (size_t i = 0; i < 2; i++) {
			struct pair p = pair_create(seeds[k]);
			uint64_t r = seeds[k] + i;
			size_t len = cells * width;
			float *pred = host_rand(len, &r, 8.0f), *grad = host_rand(len, &r, 1.0f);
			float *gpred = dev_copy(p.gpu, pred, len),
			      *ggrad = dev_copy(p.gpu, grad, len);
			double want = -1, got = -2;
			const double scale = 0.7 * 1.0 / 2.0;
			OK(p.cpu->ops->loss_obj_dense(p.cpu, &kinds[i], scale, pred, grad, cells,
						      width, &want, &ok_err));
			OK(p.gpu->ops->loss_obj_dense(p.gpu, &kinds[i], scale, gpred, ggrad, cells,
						      width, &got, &ok_err));
			compare_double("loss_obj_dense sum", got, want, OBJ_SUM_RTOL);
			compare_dev(p.gpu, "loss_obj_dense grad rows", ggrad, grad, len, OBJ_RTOL,
				    OBJ_ATOL);
			OK(p.gpu->ops->loss_obj_dense(p.gpu, &kinds[i], scale, gpred, NULL, cells,
						      width, &got, &ok_err));
			compare_double("loss_obj_dense sum (no grad)", got, want, OBJ_SUM_RTOL);
			free(pred), free(grad);
			GPU_FN(free)(p.gpu, gpred), GPU_FN(free)(p.gpu, ggrad);
			pair_destroy(&p);
		}
}

/* ------------------------------------------------------------------------ */
/* bilinear resize, --quad's collate                                         */

static void resize_one(uint64_t seed, struct tr_shape in, int oh, int ow)
{
	struct pair p = pair_create(seed);
	uint64_t r = seed + (uint64_t)(oh * 1000 + ow);
	struct tr_shape out = {in.n, in.c, oh, ow};
	size_t ilen = tr_shape_numel(in), olen = tr_shape_numel(out);
	float *x = host_rand(ilen, &r, 1.0f), *y = malloc(olen * sizeof(float));
	assert_non_null(y);
	float *gx = dev_copy(p.gpu, x, ilen), *gy = dev_alloc(p.gpu, olen);
	struct tr_tensor tx = {x, in}, ty = {y, out}, ux = {gx, in}, uy = {gy, out};
	OK(p.cpu->ops->resize_bilinear(p.cpu, &tx, &ty, &ok_err));
	OK(p.gpu->ops->resize_bilinear(p.gpu, &ux, &uy, &ok_err));
	compare_dev(p.gpu, "resize_bilinear", gy, y, olen, 0, 0);
	free(x), free(y);
	GPU_FN(free)(p.gpu, gx), GPU_FN(free)(p.gpu, gy);
	pair_destroy(&p);
}

static void test_resize_bilinear(void **state)
{
	(void)state;
	for (size_t k = 0; k < NSEEDS; k++) {
		resize_one(seeds[k], (struct tr_shape){2, 3, 64, 64}, 96, 80); /* up */
		resize_one(seeds[k], (struct tr_shape){2, 3, 64, 64}, 32, 48); /* down */
		resize_one(seeds[k], (struct tr_shape){1, 2, 1, 5}, 3, 7);     /* one row */
	}
}

/* Device memory holding a copy of len host bytes. */
static uint8_t *dev_bytes(struct tr_backend *gpu, const uint8_t *host, size_t len)
{
	void *d = NULL;
	OK(GPU_FN(alloc)(gpu, len, &d, &ok_err));
	OK(GPU_FN(upload)(gpu, d, host, len, &ok_err));
	return d;
}

/* images_to_float (bytes of every value), quad_collate (one quad upsampled, one tiled) */
static void test_images_quad(void **state)
{
	(void)state;
	struct tr_shape s = {8, 3, 16, 12};
	size_t len = tr_shape_numel(s), olen = len; /* n / 4 quads of 4 h w: as many values */
	const uint8_t upsample[2] = {1, 0};
	for (size_t k = 0; k < NSEEDS; k++) {
		struct pair p = pair_create(seeds[k]);
		uint64_t r = seeds[k];
		uint8_t *bytes = malloc(len);
		float *images = malloc(len * sizeof(float)), *out = malloc(olen * sizeof(float));
		assert_true(bytes != NULL && images != NULL && out != NULL);
		for (size_t i = 0; i < len; i++)
			bytes[i] = (uint8_t)(i < 256 ? i : (uniform(&r, 1.0f) + 1.0f) * 127.9f);
		uint8_t *gbytes = dev_bytes(p.gpu, bytes, len);
		float *gimages = dev_alloc(p.gpu, len), *gout = dev_alloc(p.gpu, olen);
		OK(p.cpu->ops->images_to_float(p.cpu, bytes, images, len, &ok_err));
		OK(p.gpu->ops->images_to_float(p.gpu, gbytes, gimages, len, &ok_err));
		compare_dev(p.gpu, "images_to_float", gimages, images, len, 0, 0);
		struct tr_tensor ti = {images, s}, ui = {gimages, s};
		OK(p.cpu->ops->quad_collate(p.cpu, bytes, &ti, upsample, out, &ok_err));
		OK(p.gpu->ops->quad_collate(p.gpu, gbytes, &ui, upsample, gout, &ok_err));
		compare_dev(p.gpu, "quad_collate", gout, out, olen, 0, 0);
		free(bytes), free(images), free(out);
		GPU_FN(free)
		(p.gpu, gbytes), GPU_FN(free)(p.gpu, gimages), GPU_FN(free)(p.gpu, gout);
		pair_destroy(&p);
	}
}

/* round_half on random weights and the edges: ties, half subnormals, overflow, inf, NaN, zeros */
static void test_round_half(void **state)
{
	(void)state;
	const float edges[] = {0.0f,	 -0.0f,	   INFINITY,	   -INFINITY,	    NAN,
			       65504.0f, 65519.0f, 65520.0f,	   -7e4f,	    6e-8f,
			       -3e-8f,	 1e-10f,   1.00048828125f, 1.000732421875f, 2049.0f,
			       2051.0f,	 5.96e-8f};
	const size_t n = 20000, ne = sizeof(edges) / sizeof(edges[0]);
	for (size_t k = 0; k < NSEEDS; k++) {
		struct pair p = pair_create(seeds[k]);
		uint64_t r = seeds[k];
		float *x = host_rand(n, &r, 2.0f);
		memcpy(x, edges, sizeof(edges));
		for (size_t i = ne; i < n; i += 3)
			x[i] *= (float)(1u << (i % 24)) * 1e-4f;
		float *gx = dev_copy(p.gpu, x, n);
		OK(p.cpu->ops->round_half(p.cpu, x, n, &ok_err));
		OK(p.gpu->ops->round_half(p.gpu, gx, n, &ok_err));
		compare_dev(p.gpu, "round_half", gx, x, n, 0, 0);
		free(x);
		GPU_FN(free)(p.gpu, gx);
		pair_destroy(&p);
	}
}

/*
 * Fail unless len bytes of device memory dev equal want's; name the first
 * differing value of value_size bytes.
 */
static void compare_bits(struct tr_backend *gpu, const char *what, const void *dev,
			 const void *want, size_t value_size, size_t len)
{
	size_t bytes = len * value_size;
	unsigned char *got = malloc(bytes + 1);
	assert_non_null(got);
	OK(GPU_FN(sync)(gpu, &ok_err));
	OK(GPU_FN(download)(gpu, got, dev, bytes, &ok_err));
	for (size_t k = 0; k < len; k++)
		if (memcmp(got + k * value_size, (const unsigned char *)want + k * value_size,
			   value_size) != 0)
			fail_msg("%s[%zu] of %zu: bits differ from the cpu's", what, k, len);
	print_message("# %-28s %8zu values: all bits equal\n", what, len);
	free(got);
}

/* 32 random bits from the uniform's LCG (its top bits). */
static uint32_t random_bits(uint64_t *state)
{
	*state = *state * 6364136223846793005ULL + 1442695040888963407ULL;
	return (uint32_t)(*state >> 32);
}

/*
 * The floats a cast test converts, n of them: the edges of both formats,
 * then random values at scales 2^-30 .. 2^20 and, one in five, random bit
 * patterns (NaNs, infinities, subnormals, anything).
 */
static float *cast_floats(size_t n, uint64_t *r)
{
	static const float edges[] = {
	    0.0f,     -0.0f,	INFINITY,	-INFINITY,   NAN,	   -NAN,
	    65504.0f, 65519.0f, 65520.0f,	-7e4f,	     0x1p-24f,	   0x1p-25f,
	    0x1p-14f, 1e-40f,	1.00048828125f, 1.00390625f, 3.4028235e38f};
	float *x = host_rand(n, r, 1.0f);
	for (size_t i = 0; i < n; i++) {
		if (i < sizeof(edges) / sizeof(edges[0]))
			x[i] = edges[i];
		else if (i % 5 == 0)
			x[i] = tr_f_from_bits(random_bits(r));
		else
			x[i] = ldexpf(x[i], (int)(i % 51) - 30);
	}
	return x;
}

/* The four casts at sizes of 0, 1, a block, several blocks, and past the grid. */
static void test_half_casts(void **state)
{
	(void)state;
	const size_t sizes[] = {0, 1, 255, 256, 257, 3 * 256 + 5, 65536 + 7, 4096 * 256 + 1001};
	for (size_t k = 0; k < NSEEDS; k++) {
		struct pair p = pair_create(seeds[k]);
		uint64_t r = seeds[k];
		for (size_t j = 0; j < sizeof(sizes) / sizeof(sizes[0]); j++) {
			size_t n = sizes[j];
			float *x = cast_floats(n, &r), *y = malloc(n * sizeof(float) + 1);
			uint16_t *h = malloc(n * sizeof(uint16_t) + 1);
			assert_true(y != NULL && h != NULL);
			for (size_t i = 0; i < n; i++)
				h[i] = (uint16_t)(i * 40503u); /* every pattern once in 65536 */
			float *gx = dev_copy(p.gpu, x, n), *gy = dev_alloc(p.gpu, n);
			uint16_t *gh =
			    (uint16_t *)dev_bytes(p.gpu, (const uint8_t *)h, n * sizeof(uint16_t));
			OK(p.cpu->ops->fp16_to_float(p.cpu, h, y, n, &ok_err));
			OK(p.gpu->ops->fp16_to_float(p.gpu, gh, gy, n, &ok_err));
			compare_bits(p.gpu, "fp16_to_float", gy, y, sizeof(float), n);
			OK(p.cpu->ops->bf16_to_float(p.cpu, h, y, n, &ok_err));
			OK(p.gpu->ops->bf16_to_float(p.gpu, gh, gy, n, &ok_err));
			compare_bits(p.gpu, "bf16_to_float", gy, y, sizeof(float), n);
			OK(p.cpu->ops->float_to_fp16(p.cpu, x, h, n, &ok_err));
			OK(p.gpu->ops->float_to_fp16(p.gpu, gx, gh, n, &ok_err));
			compare_bits(p.gpu, "float_to_fp16", gh, h, sizeof(uint16_t), n);
			OK(p.cpu->ops->float_to_bf16(p.cpu, x, h, n, &ok_err));
			OK(p.gpu->ops->float_to_bf16(p.gpu, gx, gh, n, &ok_err));
			compare_bits(p.gpu, "float_to_bf16", gh, h, sizeof(uint16_t), n);
			free(x), free(y), free(h);
			GPU_FN(free)(p.gpu, gx), GPU_FN(free)(p.gpu, gy), GPU_FN(free)(p.gpu, gh);
		}
		pair_destroy(&p);
	}
}

/* ------------------------------------------------------------------------ */
/* the table                                                                 */

/* Every op of ops.h, by name: a new op makes OPS_LISTED disagree with the struct's size. */
#define OPS_LIST(X)                                                                                \
	X(alloc)                                                                                   \
	X(free)                                                                                    \
	X(memset)                                                                                  \
	X(upload)                                                                                  \
	X(download)                                                                                \
	X(sync)                                                                                    \
	X(host_alloc)                                                                              \
	X(host_free)                                                                               \
	X(upload_async)                                                                            \
	X(upload_wait)                                                                             \
	X(conv_forward)                                                                            \
	X(conv_backward_data)                                                                      \
	X(conv_backward_filter)                                                                    \
	X(bn_forward_train)                                                                        \
	X(bn_forward_eval)                                                                         \
	X(bn_backward)                                                                             \
	X(bn_channel_sums)                                                                         \
	X(bn_channel_affine)                                                                       \
	X(silu_forward)                                                                            \
	X(silu_backward)                                                                           \
	X(maxpool_forward)                                                                         \
	X(maxpool_backward)                                                                        \
	X(upsample2x_forward)                                                                      \
	X(upsample2x_backward)                                                                     \
	X(concat_forward)                                                                          \
	X(concat_backward)                                                                         \
	X(add_forward)                                                                             \
	X(detect_permute_forward)                                                                  \
	X(detect_permute_backward)                                                                 \
	X(detect_decode)                                                                           \
	X(optim_update)                                                                            \
	X(amp_unscale)                                                                             \
	X(sum_squares)                                                                             \
	X(scale)                                                                                   \
	X(ema_update)                                                                              \
	X(loss_obj_dense)                                                                          \
	X(resize_bilinear)                                                                         \
	X(quad_collate)                                                                            \
	X(images_to_float)                                                                         \
	X(round_half)                                                                              \
	X(float_to_fp16)                                                                           \
	X(fp16_to_float)                                                                           \
	X(float_to_bf16)                                                                           \
	X(bf16_to_float)

#define OPS_COUNT_ONE(name) +1
#define OPS_LISTED (0 OPS_LIST(OPS_COUNT_ONE))
_Static_assert(sizeof(struct tr_ops) == sizeof(const char *) + OPS_LISTED * sizeof(void (*)(void)),
	       "struct tr_ops has an op that OPS_LIST does not name: add it");

/* Fail if any op of ops's table is NULL, naming it. */
static void check_table(const char *backend, const struct tr_ops *ops)
{
	int missing = 0;
#define OPS_CHECK_ONE(name)                                                                        \
	if (ops->name == NULL) {                                                                   \
		print_error("%s: op %s is NULL\n", backend, #name);                                \
		missing++;                                                                         \
	}
	OPS_LIST(OPS_CHECK_ONE)
#undef OPS_CHECK_ONE
	if (missing)
		fail_msg("%s: %d ops of %d are NULL", backend, missing, OPS_LISTED);
	print_message("# %s: all %d ops set\n", backend, OPS_LISTED);
}

static void test_table_complete(void **state)
{
	(void)state;
	struct pair p = pair_create(1);
	check_table(p.cpu->ops->name, p.cpu->ops);
	check_table(p.gpu->ops->name, p.gpu->ops);
	pair_destroy(&p);
}
/* ------------------------------------------------------------------------ */
/* errors                                                                    */

/* Shape errors are the CPU backend's, in one line. */
static void test_errors(void **state)
{
	(void)state;
	struct pair p = pair_create(1);
	struct ut_err err = {{0}};
	float *buf = dev_alloc(p.gpu, 64);
	struct tr_tensor a = {buf, {1, 2, 4, 4}}, b = {buf, {1, 2, 4, 2}};
	assert_int_equal(p.gpu->ops->silu_forward(p.gpu, &a, &b, &err), -1);
	assert_non_null(strstr(err.msg, "silu_forward: y has shape 1x2x4x2, expected 1x2x4x4"));
	assert_int_equal(p.gpu->ops->maxpool_forward(p.gpu, 4, &a, &a, &err), -1);
	assert_non_null(strstr(err.msg, "kernel 4"));
	struct tr_conv conv = {2, 2, 1, 1, 0};
	assert_int_equal(p.gpu->ops->conv_forward(p.gpu, &conv, &a, buf, NULL, &b, &err), -1);
	assert_non_null(
	    strstr(err.msg, "conv_forward: output has shape 1x2x4x2, expected 1x2x4x4"));
	assert_null(strchr(err.msg, '\n'));
	struct tr_conv wide = {3, 2, 1, 1, 0};
	assert_int_equal(p.gpu->ops->conv_backward_filter(p.gpu, &wide, &a, &a, buf, NULL, &err),
			 -1);
	assert_non_null(strstr(err.msg, "input has 2 channels, convolution expects 3"));
	assert_int_equal(p.gpu->ops->loss_obj_dense(p.gpu, &(struct tr_f_bce){1.0f, 0.0f}, 1.0, buf,
						    NULL, 1, 5, NULL, &err),
			 -1);
	assert_non_null(strstr(err.msg, "rows of 5 values"));
	assert_int_equal(p.gpu->ops->bn_channel_affine(p.gpu, &a, NULL, buf, &b, &err), -1);
	assert_non_null(
	    strstr(err.msg, "bn_channel_affine: output has shape 1x2x4x2, expected 1x2x4x4"));
	assert_int_equal(p.gpu->ops->bn_channel_sums(p.gpu, &a, &b, NULL, NULL, &err), -1);
	assert_non_null(strstr(err.msg, "bn_channel_sums: dy has shape 1x2x4x2, expected 1x2x4x4"));
	int found = 0;
	assert_int_equal(p.gpu->ops->amp_unscale(p.gpu, buf, 0.0f, 64, &found, &err), -1);
	assert_non_null(strstr(err.msg, "amp_unscale: inv_scale 0 (must be positive and finite)"));
	assert_int_equal(p.cpu->ops->amp_unscale(p.cpu, buf, INFINITY, 64, &found, &err), -1);
	assert_non_null(strstr(err.msg, "amp_unscale: inv_scale inf"));
	/* the casts refuse as the CPU does: a missing buffer, overlapping buffers */
	assert_int_equal(p.gpu->ops->float_to_fp16(p.gpu, buf, NULL, 16, &err), -1);
	assert_string_equal(err.msg, "float_to_fp16: y is NULL for 16 values");
	assert_int_equal(p.gpu->ops->float_to_bf16(p.gpu, buf, (uint16_t *)buf + 30, 16, &err), -1);
	assert_string_equal(err.msg,
			    "float_to_bf16: x and y overlap (a cast does not run in place)");
	assert_int_equal(p.gpu->ops->bf16_to_float(p.gpu, (uint16_t *)(buf + 8), buf, 16, &err),
			 -1);
	assert_non_null(strstr(err.msg, "bf16_to_float: x and y overlap"));
	OK(p.gpu->ops->fp16_to_float(p.gpu, NULL, NULL, 0, &ok_err));
	GPU_FN(free)(p.gpu, buf);
	pair_destroy(&p);
}

int main(void)
{
#if defined(TEST_ON_GPU)
	struct tr_backend *probe = NULL;
	struct ut_err err = {{0}};
	if (tr_cuda_backend_create(0, &probe, &err) != 0) {
		/* the refusal --device 0 shows: one line, naming CUDA */
		if (strstr(err.msg, "CUDA") == NULL || strchr(err.msg, '\n') != NULL) {
			fprintf(stderr, "refusal without a GPU is not one line naming CUDA: %s\n",
				err.msg);
			return 1;
		}
		printf("# no usable GPU, skipped: %s\n", err.msg);
		return 77;
	}
	tr_backend_destroy(probe);
#endif
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_bn_forward),
	    cmocka_unit_test(test_bn_backward),
	    cmocka_unit_test(test_bn_channel),
	    cmocka_unit_test(test_sync_bn),
	    cmocka_unit_test(test_elementwise),
	    cmocka_unit_test(test_maxpool),
	    cmocka_unit_test(test_upsample),
	    cmocka_unit_test(test_concat),
	    cmocka_unit_test(test_detect_decode),
	    cmocka_unit_test(test_errors),
	    cmocka_unit_test(test_conv),
	    cmocka_unit_test(test_detect_permute),
	    cmocka_unit_test(test_optim_update),
	    cmocka_unit_test(test_amp_unscale),
	    cmocka_unit_test(test_norm_scale_ema),
	    cmocka_unit_test(test_loss_obj_dense),
	    cmocka_unit_test(test_resize_bilinear),
	    cmocka_unit_test(test_images_quad),
	    cmocka_unit_test(test_round_half),
	    cmocka_unit_test(test_half_casts),
	    cmocka_unit_test(test_table_complete),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
