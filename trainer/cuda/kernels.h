/*
 * trainer/cuda/kernels.h - the extern "C" launchers of the CUDA kernels
 * (kernels.cu), one per op of ops.h that is not a convolution (and a
 * convolution's bias and dbias), in the order and with the names of
 * trainer/cpu/ops.c. backend.c calls them on
 * device pointers; the tests call the same source compiled as host C++ on
 * the CPU emulation (emu/), whose launchers are named tr_cuda_emu_* so
 * that both builds can be linked into one program.
 *
 * Every launcher returns 0 or the launch's error code (see
 * tr_cuda_launch_error_string); a launch is asynchronous on a GPU, so a
 * kernel's own faults surface at the next synchronisation. Shapes are
 * NCHW, hw = h * w; counts are elements. Outputs ASSIGN, parameter
 * gradients ACCUMULATE, as in ops.h.
 */
#ifndef TR_CUDA_KERNELS_H
#define TR_CUDA_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A stream to launch on: a cudaStream_t on a GPU; thread-order seeds in the emulation. */
struct tr_cuda_stream {
	void *handle;	   /* cudaStream_t (NULL: the default stream) */
	uint64_t seed;	   /* emulation: thread orders derive from (seed, launches) */
	uint64_t launches; /* emulation: launches so far */
};

/* The public names of the two builds of the CUDA sources. */
#if defined(TR_CUDA_EMU)
#define TR_CUDA_SYM(name) tr_cuda_emu_##name
#else
#define TR_CUDA_SYM(name) tr_cuda_##name
#endif

/* A launcher's nonzero return as text. */
const char *TR_CUDA_SYM(launch_error_string)(int rc);

/*
 * Batch norm's reductions sum each channel in chunks of this many values,
 * one block a chunk, into a device workspace of
 * tr_cuda_bn_workspace_bytes (8-byte aligned).
 */
#define TR_CUDA_BN_CHUNK 4096

static inline size_t tr_cuda_bn_chunks(size_t count_per_channel)
{
	return (count_per_channel + TR_CUDA_BN_CHUNK - 1) / TR_CUDA_BN_CHUNK;
}

static inline size_t tr_cuda_bn_workspace_bytes(int channels, size_t count_per_channel)
{
	return ((size_t)channels * tr_cuda_bn_chunks(count_per_channel) * 2 +
		(size_t)channels * 4) *
	       sizeof(double);
}

/*
 * A convolution's bias (cuDNN's graphs have none): y [n, c, hw] += bias[c];
 * and its gradient dbias[c] += the sum of dy [n, c, hw] over n and hw, in
 * double as batch norm's sums (same chunks, same workspace size), rounded
 * to float once.
 */
int TR_CUDA_SYM(conv_bias_add)(struct tr_cuda_stream *s, float *y, const float *bias, int n, int c,
			       int hw);
int TR_CUDA_SYM(conv_bias_grad)(struct tr_cuda_stream *s, const float *dy, float *dbias, int n,
				int c, int hw, void *workspace);

/* Train-mode batch norm: see ops.h bn_forward_train. */
struct tr_cuda_bn_train {
	const float *x, *gamma, *beta;
	float *y, *running_mean, *running_var, *save_mean, *save_invstd;
	void *workspace; /* tr_cuda_bn_workspace_bytes(c, n * hw) */
	float eps, momentum;
	int n, c, hw;
};
int TR_CUDA_SYM(bn_forward_train)(struct tr_cuda_stream *s, const struct tr_cuda_bn_train *a);

/* Eval-mode batch norm with running statistics. */
struct tr_cuda_bn_eval {
	const float *x, *gamma, *beta, *running_mean, *running_var;
	float *y;
	float eps;
	int n, c, hw;
};
int TR_CUDA_SYM(bn_forward_eval)(struct tr_cuda_stream *s, const struct tr_cuda_bn_eval *a);

/* Batch norm backward: dx = ..., dgamma += ..., dbeta += ...; dx may alias dy. */
struct tr_cuda_bn_grad {
	const float *x, *dy, *gamma, *save_mean, *save_invstd;
	float *dx, *dgamma, *dbeta;
	void *workspace; /* tr_cuda_bn_workspace_bytes(c, n * hw) */
	int n, c, hw;
};
int TR_CUDA_SYM(bn_backward)(struct tr_cuda_stream *s, const struct tr_cuda_bn_grad *a);

/*
 * SyncBatchNorm's passes (ops.h bn_channel_sums, bn_channel_affine):
 * sums [2c] = per channel sum x and sum (x - mean)^2 (dy NULL) or sum dy
 * and sum dy (x - mean), in double with mean [c] doubles; out = coef[c] dy
 * + coef[c + C] x + coef[2C + c] (x coef[C + c] + coef[2C + c] without dy),
 * out may alias x or dy.
 */
struct tr_cuda_bn_sums {
	const float *x, *dy; /* dy may be NULL */
	const double *mean;
	double *sums;
	void *workspace; /* tr_cuda_bn_workspace_bytes(c, n * hw) */
	int n, c, hw;
};
int TR_CUDA_SYM(bn_channel_sums)(struct tr_cuda_stream *s, const struct tr_cuda_bn_sums *a);
struct tr_cuda_bn_affine {
	const float *x, *dy, *coef; /* dy may be NULL */
	float *out;
	int n, c, hw;
};
int TR_CUDA_SYM(bn_channel_affine)(struct tr_cuda_stream *s, const struct tr_cuda_bn_affine *a);

/* y = silu(x), dx = silu'(x) dy over count elements (formula.h); may alias. */
int TR_CUDA_SYM(silu_forward)(struct tr_cuda_stream *s, const float *x, float *y, size_t count);
int TR_CUDA_SYM(silu_backward)(struct tr_cuda_stream *s, const float *x, const float *dy, float *dx,
			       size_t count);

/* y = a + x over count elements; y may alias a or x. */
int TR_CUDA_SYM(add_forward)(struct tr_cuda_stream *s, const float *a, const float *x, float *y,
			     size_t count);

/* k x k max pool, stride 1, pad k / 2, over planes of h x w (first max wins). */
int TR_CUDA_SYM(maxpool_forward)(struct tr_cuda_stream *s, int k, const float *x, float *y,
				 int planes, int h, int w);
/*
 * dx = the sum of the dy routed to each input, without atomics: each
 * output's argmax goes to argmax_workspace (planes * h * w ints), then each
 * input gathers the outputs that chose it.
 */
int TR_CUDA_SYM(maxpool_backward)(struct tr_cuda_stream *s, int k, const float *x, const float *dy,
				  float *dx, int planes, int h, int w, int *argmax_workspace);

/* y [planes, 2h, 2w] from x [planes, h, w], and the sum of the 4 copies back. */
int TR_CUDA_SYM(upsample2x_forward)(struct tr_cuda_stream *s, const float *x, float *y, int planes,
				    int h, int w);
int TR_CUDA_SYM(upsample2x_backward)(struct tr_cuda_stream *s, const float *dy, float *dx,
				     int planes, int h, int w);

/*
 * One part of a channel concat: whole [n, whole_c, hw] channels
 * [c0, c0 + part_c) from (to_whole) or to part [n, part_c, hw].
 */
int TR_CUDA_SYM(concat_copy)(struct tr_cuda_stream *s, float *part, float *whole, int n, int part_c,
			     int whole_c, int c0, int hw, int to_whole);

/*
 * Detect's permute: rows [planes, hw, no] from (to_rows) or to planar
 * [planes, no, hw], planes = n * na (ops.h detect_permute_forward/backward).
 */
int TR_CUDA_SYM(detect_permute)(struct tr_cuda_stream *s, float *planar, float *rows, int planes,
				int no, int hw, int to_rows);

/* Detect's decode of one level (ops.h struct tr_detect_level); anchors travel by value. */
#define TR_CUDA_MAX_ANCHORS 16
struct tr_cuda_detect {
	const float *x;
	float *out;
	float anchors[2 * TR_CUDA_MAX_ANCHORS]; /* [na][2] pixels */
	float stride;
	int n, na, no, h, w, rows, row0;
};
int TR_CUDA_SYM(detect_decode)(struct tr_cuda_stream *s, const struct tr_cuda_detect *a);

/* ops.h optim_update over count floats: tr_f_sgd_update (slot1 unused) or tr_f_adam_update. */
struct tr_f_optim;
int TR_CUDA_SYM(optim_update)(struct tr_cuda_stream *s, const struct tr_f_optim *step, float *param,
			      const float *grad, float *slot0, float *slot1, size_t count);

/*
 * The flat reductions sum in double over chunks of this many values, one
 * block a chunk, then one block over the chunks' partial sums. Their
 * workspace holds tr_cuda_sum_workspace_bytes: the partials, then the
 * total at index tr_cuda_sum_chunks(count) (download it from there).
 */
#define TR_CUDA_SUM_CHUNK 8192

static inline size_t tr_cuda_sum_chunks(size_t count)
{
	size_t chunks = (count + TR_CUDA_SUM_CHUNK - 1) / TR_CUDA_SUM_CHUNK;
	return chunks == 0 ? 1 : chunks;
}

static inline size_t tr_cuda_sum_workspace_bytes(size_t count)
{
	return (tr_cuda_sum_chunks(count) + 1) * sizeof(double);
}

/*
 * The loss scaler's unscale (ops.h amp_unscale): x[k] = tr_f_amp_unscale(x[k],
 * inv_scale) over count floats in place, and the number of values that were
 * inf or nan, in double, to workspace[tr_cuda_sum_chunks(count)] (the flat
 * reductions' chunks and workspace).
 */
int TR_CUDA_SYM(amp_unscale)(struct tr_cuda_stream *s, float *x, float inv_scale, size_t count,
			     double *workspace);

/* The sum of x[k]^2 over count floats, in double, to workspace[tr_cuda_sum_chunks(count)]. */
int TR_CUDA_SYM(sum_squares)(struct tr_cuda_stream *s, const float *x, size_t count,
			     double *workspace);

/* x[k] *= factor; ema[k] = tr_f_ema_update(ema[k], model[k], keep, take); over count floats. */
int TR_CUDA_SYM(scale)(struct tr_cuda_stream *s, float *x, float factor, size_t count);
int TR_CUDA_SYM(ema_update)(struct tr_cuda_stream *s, float *ema, const float *model, float keep,
			    float take, size_t count);

/*
 * ops.h loss_obj_dense: tr_f_obj_cell over cells rows of width floats
 * (grad rows assigned when grad is not NULL), the sum in double to
 * workspace[tr_cuda_sum_chunks(cells)].
 */
struct tr_f_bce;
int TR_CUDA_SYM(loss_obj_dense)(struct tr_cuda_stream *s, const struct tr_f_bce *bce, double scale,
				const float *pred, float *grad, size_t cells, int width,
				double *workspace);

/* y [planes, oh, ow] = bilinear resize of x [planes, ih, iw] (formula.h, align_corners off). */
int TR_CUDA_SYM(resize_bilinear)(struct tr_cuda_stream *s, const float *x, float *y, int planes,
				 int ih, int iw, int oh, int ow);

/*
 * Quad q of ops.h quad_collate: out [n / 4, c, 2h, 2w] at quad q, from
 * bytes and images [n, c, h, w]; upsample is the quad's host flag.
 */
int TR_CUDA_SYM(quad_collate)(struct tr_cuda_stream *s, const uint8_t *bytes, const float *images,
			      float *out, int q, int upsample, int c, int h, int w);

/* y[k] = x[k] / 255 (tr_f_u8_to_float); x[k] = tr_f_round_to_half(x[k]); over count values. */
int TR_CUDA_SYM(images_to_float)(struct tr_cuda_stream *s, const uint8_t *x, float *y,
				 size_t count);
int TR_CUDA_SYM(round_half)(struct tr_cuda_stream *s, float *x, size_t count);

/* The half-precision casts of ops.h over count values: y[k] = formula.h's cast of x[k]. */
int TR_CUDA_SYM(float_to_fp16)(struct tr_cuda_stream *s, const float *x, uint16_t *y, size_t count);
int TR_CUDA_SYM(fp16_to_float)(struct tr_cuda_stream *s, const uint16_t *x, float *y, size_t count);
int TR_CUDA_SYM(float_to_bf16)(struct tr_cuda_stream *s, const float *x, uint16_t *y, size_t count);
int TR_CUDA_SYM(bf16_to_float)(struct tr_cuda_stream *s, const uint16_t *x, float *y, size_t count);

#ifdef __cplusplus
}
#endif

#endif
