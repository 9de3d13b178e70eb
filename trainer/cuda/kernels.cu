/*
 * trainer/cuda/kernels.cu - the CUDA kernels of every op in ops.h that is
 * not a convolution, plus a convolution's bias and its gradient (cuDNN's
 * graphs do the rest, called from C), and their extern "C" launchers
 * (kernels.h), in the section order and with the op names of
 * trainer/cpu/ops.c, which is the specification. Built twice: by nvcc for
 * the GPU (--fmad=false) and, via kernels_emu.cpp, as host C++ on the CPU
 * emulation (emu/) for the tests.
 *
 * Matching the CPU: each element goes through the same IEEE operations in
 * the same order as trainer/cpu/ops.c (formula.h for SiLU, the optimizer,
 * the loss scaler's unscale, the EMA, the loss's objectness cell, bilinear
 * sampling, input bytes, half rounding and the half-precision casts, whose
 * integer formulas are used rather than __float2half_rn and friends, which
 * round the same but give NaN other bits; the same double-precision
 * per-channel algebra for batch norm), so element-wise ops, pooling,
 * upsampling, concat, Detect's permute and decode, the optimizer, the
 * unscale (its inf/nan flag a count summed exactly), resize, collate and
 * the casts are bit-identical where the math library agrees. Batch norm's
 * statistics, dbias, sum_squares and the dense objectness loss are sums in
 * double in a different (but fixed) order, so they agree to double rounding
 * and the outputs to about an ulp (equal bits at every shape test_cuda_ops
 * tries but for those double sums, within 1.1e-13 relative).
 *
 * Determinism: no float atomics. A reduction cuts each channel into fixed
 * chunks; a block sums a chunk (each thread a fixed stride, then a fixed
 * tree: warp shuffles, then warp 0 over the warp sums), and one block a
 * channel sums the chunks the same way. Max pool's backward gathers (each
 * input sums the outputs that chose it, in output order) instead of
 * scattering.
 */
#include "launch.h"

#include "formula.h"

#include <math.h>

/*
 * TR_CUDA_MUTANT (tests/meson.build only) plants a known bug so that the
 * parity test shows it fails: 1 drops a __syncthreads, 2 slips an index.
 */
#ifndef TR_CUDA_MUTANT
#define TR_CUDA_MUTANT 0
#endif

#define FULL_MASK 0xffffffffu
/* Threads of an element-wise block, and at most this many blocks (grid-stride loops). */
#define EW_THREADS 256
#define EW_MAX_BLOCKS 4096
/* Threads of a per-channel reduction block (a multiple of 32). */
#define BN_THREADS 256

/* A grid covering count elements, EW_THREADS a block, grid-stride beyond EW_MAX_BLOCKS. */
static dim3 ew_grid(size_t count)
{
	size_t blocks = (count + EW_THREADS - 1) / EW_THREADS;
	if (blocks > EW_MAX_BLOCKS)
		blocks = EW_MAX_BLOCKS;
	return dim3(blocks == 0 ? 1u : (unsigned)blocks);
}

/* The first element of this thread in a grid-stride loop, and the stride. */
__device__ static size_t ew_first(void)
{
	return (size_t)blockIdx.x * blockDim.x + threadIdx.x;
}

__device__ static size_t ew_stride(void)
{
	return (size_t)gridDim.x * blockDim.x;
}

extern "C" const char *TR_CUDA_SYM(launch_error_string)(int rc)
{
#if defined(__CUDACC__)
	return cudaGetErrorString((cudaError_t)rc);
#else
	return tr_emu::status_string(rc);
#endif
}

/* ------------------------------------------------------------------------ */
/* batch norm                                                                */

/*
 * The sum of v over the block, the same tree every time, returned to every
 * thread. blockDim.x is a multiple of 32; scratch holds 33 doubles. Ends
 * with a barrier, so scratch can be reused at once.
 */
__device__ static double block_sum(double v, double *scratch)
{
	unsigned lane = threadIdx.x % 32, warp = threadIdx.x / 32;
	for (unsigned d = 16; d > 0; d /= 2)
		v += __shfl_down_sync(FULL_MASK, v, d);
	if (lane == 0)
		scratch[warp] = v;
#if TR_CUDA_MUTANT != 1 /* tests only: the race the parity test must catch */
	__syncthreads();
#endif
	if (warp == 0) {
		v = lane < blockDim.x / 32 ? scratch[lane] : 0.0;
		for (unsigned d = 16; d > 0; d /= 2)
			v += __shfl_down_sync(FULL_MASK, v, d);
		if (lane == 0)
			scratch[32] = v;
	}
	__syncthreads();
	double total = scratch[32];
	__syncthreads();
	return total;
}

/* Element i of channel c's n * hw values in NCHW. */
__device__ static size_t channel_at(size_t i, int c, int channels, size_t hw)
{
	return (i / hw * (size_t)channels + (size_t)c) * hw + i % hw;
}

/*
 * Batch norm in passes, so that a channel of millions of values is summed
 * by many blocks and the result still does not depend on the GPU: the
 * channel is cut into fixed chunks of TR_CUDA_BN_CHUNK values; one block a
 * (chunk, channel) writes the chunk's partial sums to the workspace; then
 * one block a channel sums its chunks' partials (both in fixed trees) and
 * derives the channel's coefficients; then an element-wise pass applies
 * them. Workspace (doubles): partial[c][chunks][2], then stat[c][4].
 */
enum bn_sum { BN_SUM_X, BN_SUM_SQDEV, BN_SUM_GRAD, BN_SUM_X_SQDEV };

struct bn_partial_args {
	const float *x, *dy, *save_mean;
	double *workspace;
	int channels;
	size_t hw, count, chunks;
	enum bn_sum what;
	const double *mean; /* bn_channel_sums: the means in double (else NULL) */
};

__device__ static double *bn_stat(double *workspace, size_t chunks, int channels, int c)
{
	return workspace + (size_t)channels * chunks * 2 + (size_t)c * 4;
}

/*
 * Block (chunk, channel): the chunk's sum of x (BN_SUM_X), of (x - mean)^2
 * with the mean in stat[c][0] (BN_SUM_SQDEV), of dy and dy (x - mean)
 * with the saved mean or a.mean (BN_SUM_GRAD), or of x and (x - mean)^2
 * with a.mean (BN_SUM_X_SQDEV), as the CPU's double expressions.
 */
__global__ static void bn_partial_kernel(struct bn_partial_args a)
{
	__shared__ double scratch[33];
	int c = (int)blockIdx.y;
	size_t chunk = blockIdx.x, lo = chunk * TR_CUDA_BN_CHUNK;
	size_t hi = lo + TR_CUDA_BN_CHUNK < a.count ? lo + TR_CUDA_BN_CHUNK : a.count;
	double mean = 0, first = 0, second = 0;
	if (a.mean != NULL)
		mean = a.mean[c];
	else if (a.what == BN_SUM_SQDEV)
		mean = bn_stat(a.workspace, a.chunks, a.channels, c)[0];
	else if (a.what == BN_SUM_GRAD)
		mean = a.save_mean[c];
	for (size_t i = lo + threadIdx.x; i < hi; i += blockDim.x) {
		size_t at = channel_at(i, c, a.channels, a.hw);
		if (a.what == BN_SUM_X) {
			first += a.x[at];
		} else if (a.what == BN_SUM_SQDEV) {
			double d = a.x[at] - mean;
			first += d * d;
		} else if (a.what == BN_SUM_X_SQDEV) {
			double d = a.x[at] - mean;
			first += a.x[at];
			second += d * d;
		} else {
			first += a.dy[at];
			second += a.dy[at] * (a.x[at] - mean);
		}
	}
	first = block_sum(first, scratch);
	if (a.what == BN_SUM_GRAD || a.what == BN_SUM_X_SQDEV)
		second = block_sum(second, scratch);
	if (threadIdx.x == 0) {
		double *partial = a.workspace + ((size_t)c * a.chunks + chunk) * 2;
		partial[0] = first;
		partial[1] = second;
	}
}

/* In block c: the sums over all chunks of channel c's two partials, to every thread. */
__device__ static void bn_chunk_totals(const double *workspace, size_t chunks, int c, double *first,
				       double *second, double *scratch)
{
	const double *partial = workspace + (size_t)c * chunks * 2;
	double a = 0, b = 0;
	for (size_t k = threadIdx.x; k < chunks; k += blockDim.x) {
		a += partial[2 * k];
		b += partial[2 * k + 1];
	}
	*first = block_sum(a, scratch);
	*second = block_sum(b, scratch);
}

/*
 * Block c after BN_SUM_X (with_var = 0): stat[c][0] = mean. After
 * BN_SUM_SQDEV (with_var = 1): saved and running statistics, and the
 * channel's float scale and shift in stat[c][2], stat[c][3].
 */
__global__ static void bn_train_stats_kernel(struct tr_cuda_bn_train a, size_t chunks, int with_var)
{
	__shared__ double scratch[33];
	int c = (int)blockIdx.x;
	size_t count = (size_t)a.n * (size_t)a.hw;
	double *workspace = (double *)a.workspace, total, unused;
	double *stat = bn_stat(workspace, chunks, a.c, c);
	bn_chunk_totals(workspace, chunks, c, &total, &unused, scratch);
	if (threadIdx.x != 0)
		return;
	if (!with_var) {
		stat[0] = total / (double)count;
		return;
	}
	double mean = stat[0], sq = total;
	double var = sq / (double)count; /* biased: normalisation */
	double invstd = 1.0 / sqrt(var + a.eps);
	double unbiased = sq / (double)(count - 1); /* running_var, as PyTorch */
	a.save_mean[c] = (float)mean;
	a.save_invstd[c] = (float)invstd;
	a.running_mean[c] = (float)((1.0 - a.momentum) * a.running_mean[c] + a.momentum * mean);
	a.running_var[c] = (float)((1.0 - a.momentum) * a.running_var[c] + a.momentum * unbiased);
	double scale = a.gamma[c] * invstd;
	stat[2] = (float)scale;
	stat[3] = (float)(a.beta[c] - mean * scale);
}

/* y = x * scale + shift with channel c's float coefficients from stat[c] */
__global__ static void bn_train_apply_kernel(struct tr_cuda_bn_train a, size_t chunks)
{
	size_t hw = (size_t)a.hw, total = (size_t)a.n * (size_t)a.c * hw;
	for (size_t i = ew_first(); i < total; i += ew_stride()) {
		int c = (int)(i / hw % (size_t)a.c);
		const double *stat = bn_stat((double *)a.workspace, chunks, a.c, c);
		a.y[i] = a.x[i] * (float)stat[2] + (float)stat[3];
	}
}

/* The launches of one reduction pass over every (chunk, channel). */
static int bn_partial(struct tr_cuda_stream *s, struct bn_partial_args p)
{
	return TR_CUDA_LAUNCH(bn_partial_kernel, dim3((unsigned)p.chunks, (unsigned)p.channels),
			      dim3(BN_THREADS), 0, s, p);
}

extern "C" int TR_CUDA_SYM(bn_forward_train)(struct tr_cuda_stream *s,
					     const struct tr_cuda_bn_train *a)
{
	size_t count = (size_t)a->n * (size_t)a->hw;
	size_t chunks = tr_cuda_bn_chunks(count), total = count * (size_t)a->c;
	struct bn_partial_args p = {a->x,     NULL,	     NULL,  (double *)a->workspace,
				    a->c,     (size_t)a->hw, count, chunks,
				    BN_SUM_X, NULL};
	int rc = bn_partial(s, p);
	if (rc == 0)
		rc = TR_CUDA_LAUNCH(bn_train_stats_kernel, dim3((unsigned)a->c), dim3(BN_THREADS),
				    0, s, *a, chunks, 0);
	p.what = BN_SUM_SQDEV;
	if (rc == 0)
		rc = bn_partial(s, p);
	if (rc == 0)
		rc = TR_CUDA_LAUNCH(bn_train_stats_kernel, dim3((unsigned)a->c), dim3(BN_THREADS),
				    0, s, *a, chunks, 1);
	if (rc == 0)
		rc = TR_CUDA_LAUNCH(bn_train_apply_kernel, ew_grid(total), dim3(EW_THREADS), 0, s,
				    *a, chunks);
	return rc;
}

__global__ static void bn_forward_eval_kernel(struct tr_cuda_bn_eval a)
{
	size_t hw = (size_t)a.hw, count = (size_t)a.n * (size_t)a.c * hw;
	for (size_t i = ew_first(); i < count; i += ew_stride()) {
		int c = (int)(i / hw % (size_t)a.c);
		double scale = a.gamma[c] / sqrt((double)a.running_var[c] + a.eps);
		float scale_f = (float)scale,
		      shift_f = (float)(a.beta[c] - a.running_mean[c] * scale);
		a.y[i] = a.x[i] * scale_f + shift_f;
	}
}

extern "C" int TR_CUDA_SYM(bn_forward_eval)(struct tr_cuda_stream *s,
					    const struct tr_cuda_bn_eval *a)
{
	size_t count = (size_t)a->n * (size_t)a->c * (size_t)a->hw;
	return TR_CUDA_LAUNCH(bn_forward_eval_kernel, ew_grid(count), dim3(EW_THREADS), 0, s, *a);
}

/*
 * Block c after BN_SUM_GRAD: dgamma += sum(dy * xhat), dbeta += sum(dy),
 * and dx = k dy + a x + d folded as the CPU does, k, a, d in stat[c][0..2].
 */
__global__ static void bn_grad_stats_kernel(struct tr_cuda_bn_grad a, size_t chunks)
{
	__shared__ double scratch[33];
	int c = (int)blockIdx.x;
	size_t count = (size_t)a.n * (size_t)a.hw;
	double *stat = bn_stat((double *)a.workspace, chunks, a.c, c), sum_dy, sum_dy_xc;
	bn_chunk_totals((double *)a.workspace, chunks, c, &sum_dy, &sum_dy_xc, scratch);
	if (threadIdx.x != 0)
		return;
	double mean = a.save_mean[c], invstd = a.save_invstd[c];
	double sum_dy_xhat = sum_dy_xc * invstd;
	a.dgamma[c] += (float)sum_dy_xhat;
	a.dbeta[c] += (float)sum_dy;
	double k = a.gamma[c] * invstd;
	double mean_dy = sum_dy / (double)count;
	double mean_dy_xhat = sum_dy_xhat / (double)count;
	stat[0] = (float)k;
	stat[1] = (float)(-k * mean_dy_xhat * invstd);
	stat[2] = (float)(k * (-mean_dy + mean_dy_xhat * invstd * mean));
}

/* dx = k dy + a x + d per element; in place over dy is fine (same index) */
__global__ static void bn_grad_apply_kernel(struct tr_cuda_bn_grad a, size_t chunks)
{
	size_t hw = (size_t)a.hw, total = (size_t)a.n * (size_t)a.c * hw;
	for (size_t i = ew_first(); i < total; i += ew_stride()) {
		int c = (int)(i / hw % (size_t)a.c);
		const double *stat = bn_stat((double *)a.workspace, chunks, a.c, c);
		a.dx[i] = (float)stat[0] * a.dy[i] + (float)stat[1] * a.x[i] + (float)stat[2];
	}
}

extern "C" int TR_CUDA_SYM(bn_backward)(struct tr_cuda_stream *s, const struct tr_cuda_bn_grad *a)
{
	size_t count = (size_t)a->n * (size_t)a->hw;
	size_t chunks = tr_cuda_bn_chunks(count), total = count * (size_t)a->c;
	struct bn_partial_args p = {
	    a->x,   a->dy,	 a->save_mean, (double *)a->workspace, a->c, (size_t)a->hw, count,
	    chunks, BN_SUM_GRAD, NULL};
	int rc = bn_partial(s, p);
	if (rc == 0)
		rc = TR_CUDA_LAUNCH(bn_grad_stats_kernel, dim3((unsigned)a->c), dim3(BN_THREADS), 0,
				    s, *a, chunks);
	if (rc == 0)
		rc = TR_CUDA_LAUNCH(bn_grad_apply_kernel, ew_grid(total), dim3(EW_THREADS), 0, s,
				    *a, chunks);
	return rc;
}

/* Block c: sums[c], sums[channels + c] = channel c's two partials summed over its chunks. */
__global__ static void bn_channel_totals_kernel(const double *workspace, size_t chunks,
						int channels, double *sums)
{
	__shared__ double scratch[33];
	int c = (int)blockIdx.x;
	double first, second;
	bn_chunk_totals(workspace, chunks, c, &first, &second, scratch);
	if (threadIdx.x == 0) {
		sums[c] = first;
		sums[channels + c] = second;
	}
}

/*
 * SyncBatchNorm's sums: the (chunk, channel) partials of x and (x - mean)^2,
 * or of dy and dy (x - mean), with the double means, then each channel's
 * two totals to sums. Same chunks and trees as bn_forward_train.
 */
extern "C" int TR_CUDA_SYM(bn_channel_sums)(struct tr_cuda_stream *s,
					    const struct tr_cuda_bn_sums *a)
{
	size_t count = (size_t)a->n * (size_t)a->hw, chunks = tr_cuda_bn_chunks(count);
	struct bn_partial_args p = {a->x,
				    a->dy,
				    NULL,
				    (double *)a->workspace,
				    a->c,
				    (size_t)a->hw,
				    count,
				    chunks,
				    a->dy != NULL ? BN_SUM_GRAD : BN_SUM_X_SQDEV,
				    a->mean};
	int rc = bn_partial(s, p);
	if (rc == 0)
		rc =
		    TR_CUDA_LAUNCH(bn_channel_totals_kernel, dim3((unsigned)a->c), dim3(BN_THREADS),
				   0, s, (const double *)a->workspace, chunks, a->c, a->sums);
	return rc;
}

/* out = k dy + m x + d, or x m + d without dy, with channel c's coef[c], coef[C + c], coef[2C + c]
 */
__global__ static void bn_channel_affine_kernel(struct tr_cuda_bn_affine a)
{
	size_t hw = (size_t)a.hw, total = (size_t)a.n * (size_t)a.c * hw;
	for (size_t i = ew_first(); i < total; i += ew_stride()) {
		int c = (int)(i / hw % (size_t)a.c);
		float k = a.coef[c], m = a.coef[a.c + c], d = a.coef[2 * a.c + c];
		if (a.dy != NULL)
			a.out[i] = k * a.dy[i] + m * a.x[i] + d;
		else
			a.out[i] = a.x[i] * m + d;
	}
}

extern "C" int TR_CUDA_SYM(bn_channel_affine)(struct tr_cuda_stream *s,
					      const struct tr_cuda_bn_affine *a)
{
	size_t total = (size_t)a->n * (size_t)a->c * (size_t)a->hw;
	return TR_CUDA_LAUNCH(bn_channel_affine_kernel, ew_grid(total), dim3(EW_THREADS), 0, s, *a);
}

/* ------------------------------------------------------------------------ */
/* convolutions: the bias and its gradient (cuDNN does the rest, from C)     */

/*
 * Here rather than first, as in cpu/ops.c, because the gradient is batch
 * norm's per-channel sum of x (bn_partial, BN_SUM_X) over dy.
 */

/* y[n][c][hw] += bias[c], one thread an element */
__global__ static void conv_bias_add_kernel(float *y, const float *bias, int channels, size_t hw,
					    size_t count)
{
	for (size_t i = ew_first(); i < count; i += ew_stride())
		y[i] += bias[i / hw % (size_t)channels];
}

extern "C" int TR_CUDA_SYM(conv_bias_add)(struct tr_cuda_stream *s, float *y, const float *bias,
					  int n, int c, int hw)
{
	size_t count = (size_t)n * (size_t)c * (size_t)hw;
	return TR_CUDA_LAUNCH(conv_bias_add_kernel, ew_grid(count), dim3(EW_THREADS), 0, s, y, bias,
			      c, (size_t)hw, count);
}

/* Block c: dbias[c] += the sum of channel c's chunk partials, rounded to float once. */
__global__ static void conv_bias_grad_kernel(const double *workspace, size_t chunks, float *dbias)
{
	__shared__ double scratch[33];
	int c = (int)blockIdx.x;
	double total, unused;
	bn_chunk_totals(workspace, chunks, c, &total, &unused, scratch);
	if (threadIdx.x == 0)
		dbias[c] += (float)total;
}

extern "C" int TR_CUDA_SYM(conv_bias_grad)(struct tr_cuda_stream *s, const float *dy, float *dbias,
					   int n, int c, int hw, void *workspace)
{
	size_t count = (size_t)n * (size_t)hw, chunks = tr_cuda_bn_chunks(count);
	struct bn_partial_args p = {
	    dy, NULL, NULL, (double *)workspace, c, (size_t)hw, count, chunks, BN_SUM_X, NULL};
	int rc = bn_partial(s, p);
	if (rc == 0)
		rc = TR_CUDA_LAUNCH(conv_bias_grad_kernel, dim3((unsigned)c), dim3(BN_THREADS), 0,
				    s, (const double *)workspace, chunks, dbias);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* elementwise: SiLU, add (outputs may alias inputs)                         */

__global__ static void silu_forward_kernel(const float *x, float *y, size_t count)
{
	for (size_t i = ew_first(); i < count; i += ew_stride())
		y[i] = tr_f_silu(x[i]);
}

extern "C" int TR_CUDA_SYM(silu_forward)(struct tr_cuda_stream *s, const float *x, float *y,
					 size_t count)
{
	return TR_CUDA_LAUNCH(silu_forward_kernel, ew_grid(count), dim3(EW_THREADS), 0, s, x, y,
			      count);
}

__global__ static void silu_backward_kernel(const float *x, const float *dy, float *dx,
					    size_t count)
{
	for (size_t i = ew_first(); i < count; i += ew_stride())
		dx[i] = tr_f_silu_grad(x[i], dy[i]);
}

extern "C" int TR_CUDA_SYM(silu_backward)(struct tr_cuda_stream *s, const float *x, const float *dy,
					  float *dx, size_t count)
{
	return TR_CUDA_LAUNCH(silu_backward_kernel, ew_grid(count), dim3(EW_THREADS), 0, s, x, dy,
			      dx, count);
}

__global__ static void add_forward_kernel(const float *a, const float *x, float *y, size_t count)
{
	for (size_t i = ew_first(); i < count; i += ew_stride())
		y[i] = a[i] + x[i];
}

extern "C" int TR_CUDA_SYM(add_forward)(struct tr_cuda_stream *s, const float *a, const float *x,
					float *y, size_t count)
{
	return TR_CUDA_LAUNCH(add_forward_kernel, ew_grid(count), dim3(EW_THREADS), 0, s, a, x, y,
			      count);
}

/* ------------------------------------------------------------------------ */
/* max pool k x k, stride 1, pad k/2, -inf padding (PyTorch's first max wins) */

/*
 * The index in the plane of output (i, j)'s max: the window scanned row by
 * row, the first max kept, except that a NaN replaces whatever came before
 * (the CPU's separable scan picks the same one).
 */
__device__ static int pool_argmax(const float *plane, int h, int w, int k, int i, int j)
{
	int r = k / 2;
	int i0 = i - r < 0 ? 0 : i - r, i1 = i - r + k > h ? h : i - r + k;
	int j0 = j - r < 0 ? 0 : j - r, j1 = j - r + k > w ? w : j - r + k;
	float max = tr_f_from_bits(0xff800000u); /* -inf */
	int best = i0 * w + j0;
	for (int ii = i0; ii < i1; ii++)
		for (int jj = j0; jj < j1; jj++) {
			float v = plane[ii * w + jj];
			if (v > max || v != v) {
				max = v;
				best = ii * w + jj;
			}
		}
	return best;
}

__global__ static void maxpool_forward_kernel(int k, const float *x, float *y, int planes, int h,
					      int w)
{
	size_t hw = (size_t)h * (size_t)w, count = (size_t)planes * hw;
	for (size_t i = ew_first(); i < count; i += ew_stride()) {
		const float *plane = x + i / hw * hw;
		int cell = (int)(i % hw);
		y[i] = plane[pool_argmax(plane, h, w, k, cell / w, cell % w)];
	}
}

extern "C" int TR_CUDA_SYM(maxpool_forward)(struct tr_cuda_stream *s, int k, const float *x,
					    float *y, int planes, int h, int w)
{
	size_t count = (size_t)planes * (size_t)h * (size_t)w;
	return TR_CUDA_LAUNCH(maxpool_forward_kernel, ew_grid(count), dim3(EW_THREADS), 0, s, k, x,
			      y, planes, h, w);
}

/* argmax[i] = the index in its plane of output i's max */
__global__ static void maxpool_argmax_kernel(int k, const float *x, int *argmax, int planes, int h,
					     int w)
{
	size_t hw = (size_t)h * (size_t)w, count = (size_t)planes * hw;
	for (size_t i = ew_first(); i < count; i += ew_stride()) {
		int cell = (int)(i % hw);
		argmax[i] = pool_argmax(x + i / hw * hw, h, w, k, cell / w, cell % w);
	}
}

/*
 * dx at each input: the sum of dy over the outputs whose window holds it and
 * chose it, in output order (the order the CPU's scatter adds them in).
 */
__global__ static void maxpool_gather_kernel(int k, const int *argmax, const float *dy, float *dx,
					     int planes, int h, int w)
{
	size_t hw = (size_t)h * (size_t)w, count = (size_t)planes * hw;
	int r = k / 2;
	for (size_t i = ew_first(); i < count; i += ew_stride()) {
		const int *chosen = argmax + i / hw * hw;
		const float *grad = dy + i / hw * hw;
		int cell = (int)(i % hw), pi = cell / w, pj = cell % w;
		int i0 = pi - r < 0 ? 0 : pi - r, i1 = pi + r + 1 > h ? h : pi + r + 1;
		int j0 = pj - r < 0 ? 0 : pj - r, j1 = pj + r + 1 > w ? w : pj + r + 1;
		float sum = 0.0f;
		for (int oi = i0; oi < i1; oi++)
			for (int oj = j0; oj < j1; oj++)
				if (chosen[oi * w + oj] == cell)
					sum += grad[oi * w + oj];
		dx[i] = sum;
	}
}

extern "C" int TR_CUDA_SYM(maxpool_backward)(struct tr_cuda_stream *s, int k, const float *x,
					     const float *dy, float *dx, int planes, int h, int w,
					     int *argmax_workspace)
{
	size_t count = (size_t)planes * (size_t)h * (size_t)w;
	int rc = TR_CUDA_LAUNCH(maxpool_argmax_kernel, ew_grid(count), dim3(EW_THREADS), 0, s, k, x,
				argmax_workspace, planes, h, w);
	if (rc == 0)
		rc = TR_CUDA_LAUNCH(maxpool_gather_kernel, ew_grid(count), dim3(EW_THREADS), 0, s,
				    k, argmax_workspace, dy, dx, planes, h, w);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* nearest 2x upsample                                                       */

/* y[p][i][j] = x[p][i/2][j/2], one thread an output */
__global__ static void upsample2x_forward_kernel(const float *x, float *y, int planes, int h, int w)
{
	size_t ow = 2 * (size_t)w, ohw = 4 * (size_t)h * (size_t)w, count = (size_t)planes * ohw;
	for (size_t i = ew_first(); i < count; i += ew_stride()) {
		size_t p = i / ohw, row = i % ohw / ow, col = i % ow;
		y[i] = x[(p * (size_t)h + row / 2) * (size_t)w + col / 2];
	}
}

extern "C" int TR_CUDA_SYM(upsample2x_forward)(struct tr_cuda_stream *s, const float *x, float *y,
					       int planes, int h, int w)
{
	size_t count = 4 * (size_t)planes * (size_t)h * (size_t)w;
	return TR_CUDA_LAUNCH(upsample2x_forward_kernel, ew_grid(count), dim3(EW_THREADS), 0, s, x,
			      y, planes, h, w);
}

/* dx[i][j] = dy[2i][2j] + dy[2i][2j+1] + dy[2i+1][2j] + dy[2i+1][2j+1], one thread an input */
__global__ static void upsample2x_backward_kernel(const float *dy, float *dx, int planes, int h,
						  int w)
{
	size_t hw = (size_t)h * (size_t)w, ow = 2 * (size_t)w, count = (size_t)planes * hw;
	for (size_t i = ew_first(); i < count; i += ew_stride()) {
		size_t p = i / hw, row = i % hw / (size_t)w, col = i % (size_t)w;
		const float *top = dy + p * 4 * hw + 2 * row * ow + 2 * col;
#if TR_CUDA_MUTANT == 2 /* tests only: the index slip the parity test must catch */
		dx[i] = top[0] + top[1] + top[ow] + top[1];
#else
		dx[i] = top[0] + top[1] + top[ow] + top[ow + 1];
#endif
	}
}

extern "C" int TR_CUDA_SYM(upsample2x_backward)(struct tr_cuda_stream *s, const float *dy,
						float *dx, int planes, int h, int w)
{
	size_t count = (size_t)planes * (size_t)h * (size_t)w;
	return TR_CUDA_LAUNCH(upsample2x_backward_kernel, ew_grid(count), dim3(EW_THREADS), 0, s,
			      dy, dx, planes, h, w);
}

/* ------------------------------------------------------------------------ */
/* concat / split along channels                                             */

/* One thread an element of part [n, part_c, hw]; whole is [n, whole_c, hw] from channel c0. */
__global__ static void concat_copy_kernel(float *part, float *whole, int n, int part_c, int whole_c,
					  int c0, int hw, int to_whole)
{
	size_t len = (size_t)part_c * (size_t)hw, count = (size_t)n * len;
	for (size_t i = ew_first(); i < count; i += ew_stride()) {
		size_t at = (i / len * (size_t)whole_c + (size_t)c0) * (size_t)hw + i % len;
		if (to_whole)
			whole[at] = part[i];
		else
			part[i] = whole[at];
	}
}

extern "C" int TR_CUDA_SYM(concat_copy)(struct tr_cuda_stream *s, float *part, float *whole, int n,
					int part_c, int whole_c, int c0, int hw, int to_whole)
{
	size_t count = (size_t)n * (size_t)part_c * (size_t)hw;
	return TR_CUDA_LAUNCH(concat_copy_kernel, ew_grid(count), dim3(EW_THREADS), 0, s, part,
			      whole, n, part_c, whole_c, c0, hw, to_whole);
}

/* ------------------------------------------------------------------------ */
/* Detect: permute and decode                                                */

/*
 * One thread an element of rows [planes, hw, no]: copied from (to_rows) or
 * to planar [planes, no, hw], plane p = image * na + anchor.
 */
__global__ static void detect_permute_kernel(float *planar, float *rows, size_t planes, int no,
					     size_t hw, int to_rows)
{
	size_t per_plane = (size_t)no * hw, count = planes * per_plane;
	for (size_t i = ew_first(); i < count; i += ew_stride()) {
		size_t p = i / per_plane, cell = i % per_plane / (size_t)no;
		size_t o = i % (size_t)no;
		size_t at = p * per_plane + o * hw + cell;
		if (to_rows)
			rows[i] = planar[at];
		else
			planar[at] = rows[i];
	}
}

extern "C" int TR_CUDA_SYM(detect_permute)(struct tr_cuda_stream *s, float *planar, float *rows,
					   int planes, int no, int hw, int to_rows)
{
	size_t count = (size_t)planes * (size_t)no * (size_t)hw;
	return TR_CUDA_LAUNCH(detect_permute_kernel, ew_grid(count), dim3(EW_THREADS), 0, s, planar,
			      rows, (size_t)planes, no, (size_t)hw, to_rows);
}

/* The CPU's sigmoid (expf, not formula.h's exp: the decode's CPU spec uses libm). */
__device__ static float decode_sigmoid(float v)
{
	return 1.0f / (1.0f + expf(-v));
}

/* One thread an input value x[n][a * no + k][cell]; see ops.h struct tr_detect_level. */
__global__ static void detect_decode_kernel(struct tr_cuda_detect a)
{
	size_t hw = (size_t)a.h * (size_t)a.w, per_plane = (size_t)a.no * hw;
	size_t count = (size_t)a.n * (size_t)a.na * per_plane;
	for (size_t i = ew_first(); i < count; i += ew_stride()) {
		size_t p = i / per_plane, cell = i % hw;
		int k = (int)(i % per_plane / hw), n = (int)(p / (size_t)a.na),
		    anchor = (int)(p % (size_t)a.na);
		float v = decode_sigmoid(a.x[i]);
		if (k == 0)
			v = (v * 2.0f + ((float)(cell % (size_t)a.w) - 0.5f)) * a.stride;
		else if (k == 1)
			v = (v * 2.0f + ((float)(cell / (size_t)a.w) - 0.5f)) * a.stride;
		else if (k == 2)
			v = (v * 2.0f) * (v * 2.0f) * a.anchors[2 * anchor];
		else if (k == 3)
			v = (v * 2.0f) * (v * 2.0f) * a.anchors[2 * anchor + 1];
		size_t row =
		    (size_t)n * (size_t)a.rows + (size_t)a.row0 + (size_t)anchor * hw + cell;
		a.out[row * (size_t)a.no + (size_t)k] = v;
	}
}

extern "C" int TR_CUDA_SYM(detect_decode)(struct tr_cuda_stream *s, const struct tr_cuda_detect *a)
{
	size_t count = (size_t)a->n * (size_t)a->na * (size_t)a->no * (size_t)a->h * (size_t)a->w;
	return TR_CUDA_LAUNCH(detect_decode_kernel, ew_grid(count), dim3(EW_THREADS), 0, s, *a);
}

/* ------------------------------------------------------------------------ */
/* optimizer: update, amp unscale, gradient norm, EMA (formula.h per element) */

/* One element a thread: tr_f_sgd_update or tr_f_adam_update, as the CPU loop. */
__global__ static void optim_update_kernel(struct tr_f_optim step, float *param, const float *grad,
					   float *slot0, float *slot1, size_t count)
{
	for (size_t k = ew_first(); k < count; k += ew_stride()) {
		if (step.adam)
			tr_f_adam_update(&step, &param[k], grad[k], &slot0[k], &slot1[k]);
		else
			tr_f_sgd_update(&step, &param[k], grad[k], &slot0[k]);
	}
}

extern "C" int TR_CUDA_SYM(optim_update)(struct tr_cuda_stream *s, const struct tr_f_optim *step,
					 float *param, const float *grad, float *slot0,
					 float *slot1, size_t count)
{
	return TR_CUDA_LAUNCH(optim_update_kernel, ew_grid(count), dim3(EW_THREADS), 0, s, *step,
			      param, grad, slot0, slot1, count);
}

/*
 * The flat reductions (amp_unscale's inf/nan count, sum_squares,
 * loss_obj_dense) in two passes, as batch norm's: block b sums the values
 * of chunk b (TR_CUDA_SUM_CHUNK values, each thread a fixed stride, then
 * block_sum's tree) into partial[b]; one block then sums the partials the
 * same way into partial[chunks]. The order is fixed by the chunk size and
 * the block size, not by the GPU.
 */
__global__ static void sum_partials_kernel(double *partial, size_t chunks)
{
	__shared__ double scratch[33];
	double v = 0;
	for (size_t k = threadIdx.x; k < chunks; k += blockDim.x)
		v += partial[k];
	v = block_sum(v, scratch);
	if (threadIdx.x == 0)
		partial[chunks] = v;
}

/*
 * The loss scaler's unscale: every value of the chunk multiplied in place
 * (tr_f_amp_unscale, as the CPU loop), and partial[chunk] = how many of
 * them were inf or nan. sum_partials_kernel then adds the chunks' counts,
 * so an inf in any block reaches the total, without atomics.
 */
__global__ static void amp_unscale_kernel(float *x, float inv_scale, size_t count, double *partial)
{
	__shared__ double scratch[33];
	size_t lo = (size_t)blockIdx.x * TR_CUDA_SUM_CHUNK;
	size_t hi = lo + TR_CUDA_SUM_CHUNK < count ? lo + TR_CUDA_SUM_CHUNK : count;
	double nonfinite = 0;
	for (size_t k = lo + threadIdx.x; k < hi; k += blockDim.x) {
		int found = 0;
		x[k] = tr_f_amp_unscale(x[k], inv_scale, &found);
		nonfinite += found;
	}
	nonfinite = block_sum(nonfinite, scratch);
	if (threadIdx.x == 0)
		partial[blockIdx.x] = nonfinite;
}

extern "C" int TR_CUDA_SYM(amp_unscale)(struct tr_cuda_stream *s, float *x, float inv_scale,
					size_t count, double *workspace)
{
	size_t chunks = tr_cuda_sum_chunks(count);
	int rc = TR_CUDA_LAUNCH(amp_unscale_kernel, dim3((unsigned)chunks), dim3(BN_THREADS), 0, s,
				x, inv_scale, count, workspace);
	if (rc == 0)
		rc = TR_CUDA_LAUNCH(sum_partials_kernel, dim3(1), dim3(BN_THREADS), 0, s, workspace,
				    chunks);
	return rc;
}

/* partial[chunk] = the sum of x[k]^2 in double over the chunk */
__global__ static void sum_squares_kernel(const float *x, size_t count, double *partial)
{
	__shared__ double scratch[33];
	size_t lo = (size_t)blockIdx.x * TR_CUDA_SUM_CHUNK;
	size_t hi = lo + TR_CUDA_SUM_CHUNK < count ? lo + TR_CUDA_SUM_CHUNK : count;
	double v = 0;
	for (size_t k = lo + threadIdx.x; k < hi; k += blockDim.x)
		v += (double)x[k] * (double)x[k];
	v = block_sum(v, scratch);
	if (threadIdx.x == 0)
		partial[blockIdx.x] = v;
}

extern "C" int TR_CUDA_SYM(sum_squares)(struct tr_cuda_stream *s, const float *x, size_t count,
					double *workspace)
{
	size_t chunks = tr_cuda_sum_chunks(count);
	int rc = TR_CUDA_LAUNCH(sum_squares_kernel, dim3((unsigned)chunks), dim3(BN_THREADS), 0, s,
				x, count, workspace);
	if (rc == 0)
		rc = TR_CUDA_LAUNCH(sum_partials_kernel, dim3(1), dim3(BN_THREADS), 0, s, workspace,
				    chunks);
	return rc;
}

__global__ static void scale_kernel(float *x, float factor, size_t count)
{
	for (size_t k = ew_first(); k < count; k += ew_stride())
		x[k] *= factor;
}

extern "C" int TR_CUDA_SYM(scale)(struct tr_cuda_stream *s, float *x, float factor, size_t count)
{
	return TR_CUDA_LAUNCH(scale_kernel, ew_grid(count), dim3(EW_THREADS), 0, s, x, factor,
			      count);
}

__global__ static void ema_update_kernel(float *ema, const float *model, float keep, float take,
					 size_t count)
{
	for (size_t k = ew_first(); k < count; k += ew_stride())
		ema[k] = tr_f_ema_update(ema[k], model[k], keep, take);
}

extern "C" int TR_CUDA_SYM(ema_update)(struct tr_cuda_stream *s, float *ema, const float *model,
				       float keep, float take, size_t count)
{
	return TR_CUDA_LAUNCH(ema_update_kernel, ew_grid(count), dim3(EW_THREADS), 0, s, ema, model,
			      keep, take, count);
}

/* ------------------------------------------------------------------------ */
/* the loss's dense objectness                                               */

/*
 * partial[chunk] = the sum in double of tr_f_obj_cell over the chunk's
 * cells, each thread a cell at a time, which also assigns its gradient row
 * when grad is not NULL.
 */
__global__ static void loss_obj_dense_kernel(struct tr_f_bce bce, double scale, const float *pred,
					     float *grad, size_t cells, int width, double *partial)
{
	__shared__ double scratch[33];
	size_t lo = (size_t)blockIdx.x * TR_CUDA_SUM_CHUNK;
	size_t hi = lo + TR_CUDA_SUM_CHUNK < cells ? lo + TR_CUDA_SUM_CHUNK : cells;
	double v = 0;
	for (size_t c = lo + threadIdx.x; c < hi; c += blockDim.x)
		v += tr_f_obj_cell(&bce, scale, pred + c * (size_t)width,
				   grad != NULL ? grad + c * (size_t)width : NULL, width);
	v = block_sum(v, scratch);
	if (threadIdx.x == 0)
		partial[blockIdx.x] = v;
}

extern "C" int TR_CUDA_SYM(loss_obj_dense)(struct tr_cuda_stream *s, const struct tr_f_bce *bce,
					   double scale, const float *pred, float *grad,
					   size_t cells, int width, double *workspace)
{
	size_t chunks = tr_cuda_sum_chunks(cells);
	int rc = TR_CUDA_LAUNCH(loss_obj_dense_kernel, dim3((unsigned)chunks), dim3(BN_THREADS), 0,
				s, *bce, scale, pred, grad, cells, width, workspace);
	if (rc == 0)
		rc = TR_CUDA_LAUNCH(sum_partials_kernel, dim3(1), dim3(BN_THREADS), 0, s, workspace,
				    chunks);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* bilinear resize, --quad's collate                                         */

/* One thread an output value of y [planes, oh, ow] from x [planes, ih, iw]. */
__global__ static void resize_bilinear_kernel(const float *x, float *y, size_t planes, int ih,
					      int iw, int oh, int ow)
{
	size_t in_hw = (size_t)ih * (size_t)iw, out_hw = (size_t)oh * (size_t)ow;
	size_t count = planes * out_hw;
	for (size_t k = ew_first(); k < count; k += ew_stride()) {
		int i = (int)(k % out_hw / (size_t)ow), j = (int)(k % (size_t)ow);
		int y0, y1, x0, x1;
		float ly, lx;
		tr_f_bilinear_source(i, ih, oh, &y0, &y1, &ly);
		tr_f_bilinear_source(j, iw, ow, &x0, &x1, &lx);
		y[k] = tr_f_bilinear(x + k / out_hw * in_hw, iw, y0, y1, ly, x0, x1, lx);
	}
}

extern "C" int TR_CUDA_SYM(resize_bilinear)(struct tr_cuda_stream *s, const float *x, float *y,
					    int planes, int ih, int iw, int oh, int ow)
{
	size_t count = (size_t)planes * (size_t)oh * (size_t)ow;
	return TR_CUDA_LAUNCH(resize_bilinear_kernel, ew_grid(count), dim3(EW_THREADS), 0, s, x, y,
			      (size_t)planes, ih, iw, oh, ow);
}

/*
 * One thread an output value of quad q, out [c, 2h, 2w]: with upsample,
 * image 4q's bytes bilinear 2x, truncated to a byte, / 255; else the
 * floats of image 4q + k, k = (row >= h) + 2 (column >= w).
 */
__global__ static void quad_collate_kernel(const uint8_t *bytes, const float *images, float *out,
					   int q, int upsample, int c, int h, int w)
{
	size_t plane = (size_t)h * (size_t)w, big = 4 * plane, count = (size_t)c * big;
	for (size_t k = ew_first(); k < count; k += ew_stride()) {
		int channel = (int)(k / big), i = (int)(k % big / (2 * (size_t)w));
		int j = (int)(k % (2 * (size_t)w));
		if (upsample) {
			const uint8_t *src = bytes + ((size_t)4 * q * c + channel) * plane;
			int y0, y1, x0, x1;
			float ly, lx;
			tr_f_bilinear_source(i, h, 2 * h, &y0, &y1, &ly);
			tr_f_bilinear_source(j, w, 2 * w, &x0, &x1, &lx);
			float value = tr_f_bilinear_u8(src, w, y0, y1, ly, x0, x1, lx);
			out[k] = tr_f_u8_to_float((uint8_t)value);
		} else {
			int below = i >= h, right = j >= w, image = 4 * q + below + 2 * right;
			const float *src = images + ((size_t)image * c + channel) * plane;
			out[k] = src[(size_t)(i - below * h) * w + (j - right * w)];
		}
	}
}

extern "C" int TR_CUDA_SYM(quad_collate)(struct tr_cuda_stream *s, const uint8_t *bytes,
					 const float *images, float *out, int q, int upsample,
					 int c, int h, int w)
{
	size_t count = 4 * (size_t)c * (size_t)h * (size_t)w;
	return TR_CUDA_LAUNCH(quad_collate_kernel, ew_grid(count), dim3(EW_THREADS), 0, s, bytes,
			      images, out + (size_t)q * count, q, upsample, c, h, w);
}

/* ------------------------------------------------------------------------ */
/* conversions: input bytes, half rounding, half-precision casts             */

__global__ static void images_to_float_kernel(const uint8_t *x, float *y, size_t count)
{
	for (size_t k = ew_first(); k < count; k += ew_stride())
		y[k] = tr_f_u8_to_float(x[k]);
}

extern "C" int TR_CUDA_SYM(images_to_float)(struct tr_cuda_stream *s, const uint8_t *x, float *y,
					    size_t count)
{
	return TR_CUDA_LAUNCH(images_to_float_kernel, ew_grid(count), dim3(EW_THREADS), 0, s, x, y,
			      count);
}

__global__ static void round_half_kernel(float *x, size_t count)
{
	for (size_t k = ew_first(); k < count; k += ew_stride())
		x[k] = tr_f_round_to_half(x[k]);
}

extern "C" int TR_CUDA_SYM(round_half)(struct tr_cuda_stream *s, float *x, size_t count)
{
	return TR_CUDA_LAUNCH(round_half_kernel, ew_grid(count), dim3(EW_THREADS), 0, s, x, count);
}

/*
 * The half-precision casts: formula.h's, value by value (ops.h). One kernel
 * and launcher each, spelled once: CAST(name, in, out, formula).
 */
#define CAST(name, in_t, out_t, formula)                                                           \
	__global__ static void name##_kernel(const in_t *x, out_t *y, size_t count)                \
	{                                                                                          \
		for (size_t k = ew_first(); k < count; k += ew_stride())                           \
			y[k] = formula(x[k]);                                                      \
	}                                                                                          \
	extern "C" int TR_CUDA_SYM(name)(struct tr_cuda_stream * s, const in_t *x, out_t *y,       \
					 size_t count)                                             \
	{                                                                                          \
		return TR_CUDA_LAUNCH(name##_kernel, ew_grid(count), dim3(EW_THREADS), 0, s, x, y, \
				      count);                                                      \
	}
CAST(float_to_fp16, float, uint16_t, tr_f_fp16_from_float)
CAST(fp16_to_float, uint16_t, float, tr_f_fp16_to_float)
CAST(float_to_bf16, float, uint16_t, tr_f_bf16_from_float)
CAST(bf16_to_float, uint16_t, float, tr_f_bf16_to_float)
#undef CAST
