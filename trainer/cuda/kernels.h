/*
 * trainer/cuda/kernels.h - the extern "C" launchers of the CUDA kernels
 * (kernels.cu), one per op of ops.h that is not a convolution, in the
 * order and with the names of trainer/cpu/ops.c. backend.c calls them on
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

#ifdef __cplusplus
}
#endif

#endif
