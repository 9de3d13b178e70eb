/*
 * trainer/cuda/backend.c - the CUDA backend's op table (ops.h) in C: shape
 * checks as the CPU backend's, then the launchers of kernels.cu on the
 * backend's stream; device memory and the stream through the CUDA runtime,
 * every call checked (CUDA_CHECK names file:line, the call and the error).
 *
 * Built twice (trainer/cuda/meson.build): plain, it is tr_cuda_backend_create
 * on a GPU; with TR_CUDA_EMU defined, it is tr_cuda_emu_backend_create, the
 * same ops on host memory with the kernels on the CPU emulation (emu/), for
 * the tests. Only the memory and stream calls differ between the two, and
 * the convolutions: on a GPU through cuDNN graphs (conv_graph.c: a handle on
 * the backend's stream, the plan cache and its one shared workspace); on
 * the emulation through the CPU backend's convolutions (oneDNN) on the same
 * host memory, since cuDNN needs a device. Either way the convolution's bias
 * and its gradient are this file's kernels (conv_bias_add, conv_bias_grad),
 * so a whole training step runs on the emulation with every kernel but
 * cuDNN's.
 */
#include "kernels.h"
#include "ops_check.h"
#include "tr_cuda.h"

#include <stdlib.h>
#include <string.h>

#if !defined(TR_CUDA_EMU)
#include <cuda_runtime.h>
#include <cudnn.h>

#include "conv_graph.h"

/* Any CUDA runtime call: on failure fill err with file:line, the call and the error. */
#define CUDA_CHECK(call)                                                                           \
	do {                                                                                       \
		cudaError_t cuda_rc_ = (call);                                                     \
		if (cuda_rc_ != cudaSuccess)                                                       \
			return ut_err_set(err, "%s:%d: %s: %s (%s)", __FILE__, __LINE__, #call,    \
					  cudaGetErrorString(cuda_rc_),                            \
					  cudaGetErrorName(cuda_rc_));                             \
	} while (0)
#endif

/* A launcher's return: on failure fill err with file:line, the op and the launch error. */
#define LAUNCH_CHECK(op, call)                                                                     \
	do {                                                                                       \
		int launch_rc_ = (call);                                                           \
		if (launch_rc_ != 0)                                                               \
			return ut_err_set(err, "%s:%d: %s: kernel launch: %s", __FILE__, __LINE__, \
					  op, TR_CUDA_SYM(launch_error_string)(launch_rc_));       \
	} while (0)

#if defined(TR_CUDA_EMU)
/*
 * The emulation's copy stream: upload_async queues its copies here and
 * they run at the next upload_wait or sync, as late as CUDA may run them,
 * so a caller that skips upload_wait reads stale data in the tests. A full
 * queue runs early (a copy may run any time after it is given).
 */
#define EMU_COPIES 8
struct emu_copy {
	void *dst;
	const void *src;
	size_t bytes;
};
#endif

struct cuda_state {
	int device;
	struct tr_cuda_stream stream;
	/*
	 * upload_async's copies (ops.h): on a GPU a second stream; copied is
	 * recorded on it after each copy and upload_wait makes the stream wait
	 * for it; released is recorded on the stream at each upload_wait and
	 * the copies wait for it.
	 */
#if defined(TR_CUDA_EMU)
	struct emu_copy copies[EMU_COPIES];
	int n_copies;
#else
	cudaStream_t copy_stream;
	cudaEvent_t copied, released;
#endif
	/* batch norm's and the reductions' partial sums, max pool's argmax; grown on a new shape */
	void *workspace;
	size_t workspace_bytes;
#if defined(TR_CUDA_EMU)
	struct tr_backend *host; /* the CPU backend the emulation's convolutions run on */
#else
	cudnnHandle_t cudnn;	    /* on the backend's stream */
	struct tr_cuda_convs convs; /* plan cache and the convolutions' shared workspace */
	void *staging;		    /* a weight cuDNN needs aligned (conv_weight_in) */
	size_t staging_bytes;
#endif
};

static struct cuda_state *state_of(struct tr_backend *b)
{
	return (struct cuda_state *)b->state;
}

/* ------------------------------------------------------------------------ */
/* memory and the streams                                                    */

int TR_CUDA_SYM(alloc)(struct tr_backend *b, size_t bytes, void **out, struct ut_err *err)
{
	(void)b;
	*out = NULL;
#if defined(TR_CUDA_EMU)
	*out = aligned_alloc(256, (bytes + 255) / 256 * 256);
	if (*out == NULL)
		return ut_err_set(err, "%s:%d: out of memory (%zu bytes)", __FILE__, __LINE__,
				  bytes);
#else
	CUDA_CHECK(cudaMalloc(out, bytes));
#endif
	return 0;
}

void TR_CUDA_SYM(free)(struct tr_backend *b, void *device_ptr)
{
	(void)b;
#if defined(TR_CUDA_EMU)
	free(device_ptr);
#else
	/* cudaFree only fails for a pointer it did not allocate, or after a fault sync reported */
	(void)cudaFree(device_ptr);
#endif
}

int TR_CUDA_SYM(upload)(struct tr_backend *b, void *device_dst, const void *host_src, size_t bytes,
			struct ut_err *err)
{
#if defined(TR_CUDA_EMU)
	(void)b;
	(void)err;
	memcpy(device_dst, host_src, bytes);
#else
	cudaStream_t stream = (cudaStream_t)state_of(b)->stream.handle;
	CUDA_CHECK(cudaMemcpyAsync(device_dst, host_src, bytes, cudaMemcpyHostToDevice, stream));
	CUDA_CHECK(cudaStreamSynchronize(stream));
#endif
	return 0;
}

int TR_CUDA_SYM(download)(struct tr_backend *b, void *host_dst, const void *device_src,
			  size_t bytes, struct ut_err *err)
{
#if defined(TR_CUDA_EMU)
	(void)b;
	(void)err;
	memcpy(host_dst, device_src, bytes);
#else
	cudaStream_t stream = (cudaStream_t)state_of(b)->stream.handle;
	CUDA_CHECK(cudaMemcpyAsync(host_dst, device_src, bytes, cudaMemcpyDeviceToHost, stream));
	CUDA_CHECK(cudaStreamSynchronize(stream));
#endif
	return 0;
}

/* ops.h's memset: bytes at dst set to value, in stream order */
static int cuda_memset(struct tr_backend *b, void *dst, int value, size_t bytes, struct ut_err *err)
{
#if defined(TR_CUDA_EMU)
	(void)b;
	(void)err;
	memset(dst, value, bytes);
#else
	CUDA_CHECK(cudaMemsetAsync(dst, value, bytes, (cudaStream_t)state_of(b)->stream.handle));
#endif
	return 0;
}

#if defined(TR_CUDA_EMU)
/* The emulated copy stream catches up: every queued copy, in the order given. */
static void emu_copies_run(struct cuda_state *st)
{
	for (int k = 0; k < st->n_copies; k++)
		memcpy(st->copies[k].dst, st->copies[k].src, st->copies[k].bytes);
	st->n_copies = 0;
}
#endif

/* both streams: the copies too */
int TR_CUDA_SYM(sync)(struct tr_backend *b, struct ut_err *err)
{
#if defined(TR_CUDA_EMU)
	(void)err;
	emu_copies_run(state_of(b));
#else
	CUDA_CHECK(cudaStreamSynchronize(state_of(b)->copy_stream));
	CUDA_CHECK(cudaStreamSynchronize((cudaStream_t)state_of(b)->stream.handle));
#endif
	return 0;
}

/* ops.h's host_alloc: page-locked host memory (cudaHostAlloc: page-aligned) */
static int cuda_host_alloc(struct tr_backend *b, size_t bytes, void **out, struct ut_err *err)
{
	(void)b;
	*out = NULL;
#if defined(TR_CUDA_EMU)
	size_t rounded = (bytes + 63) / 64 * 64;
	*out = aligned_alloc(64, rounded ? rounded : 64);
	if (*out == NULL)
		return ut_err_set(err, "%s:%d: out of memory (%zu bytes)", __FILE__, __LINE__,
				  bytes);
#else
	CUDA_CHECK(cudaHostAlloc(out, bytes ? bytes : 1, cudaHostAllocDefault));
#endif
	return 0;
}

static void cuda_host_free(struct tr_backend *b, void *ptr)
{
	(void)b;
#if defined(TR_CUDA_EMU)
	free(ptr);
#else
	/* as cudaFree: fails only for a pointer it did not allocate, or after a fault */
	if (ptr != NULL)
		(void)cudaFreeHost(ptr);
#endif
}

/* ops.h's upload_async: on the copy stream, after the ops before the last upload_wait */
static int cuda_upload_async(struct tr_backend *b, void *dst_dev, const void *src_pinned,
			     size_t bytes, struct ut_err *err)
{
	struct cuda_state *st = state_of(b);
#if defined(TR_CUDA_EMU)
	(void)err;
	if (st->n_copies == EMU_COPIES)
		emu_copies_run(st);
	st->copies[st->n_copies++] = (struct emu_copy){dst_dev, src_pinned, bytes};
#else
	CUDA_CHECK(cudaStreamWaitEvent(st->copy_stream, st->released, 0));
	CUDA_CHECK(
	    cudaMemcpyAsync(dst_dev, src_pinned, bytes, cudaMemcpyHostToDevice, st->copy_stream));
	CUDA_CHECK(cudaEventRecord(st->copied, st->copy_stream));
#endif
	return 0;
}

/* ops.h's upload_wait: the stream waits for the copies given so far; the next copies wait for it */
static int cuda_upload_wait(struct tr_backend *b, struct ut_err *err)
{
	struct cuda_state *st = state_of(b);
#if defined(TR_CUDA_EMU)
	(void)err;
	emu_copies_run(st);
#else
	cudaStream_t stream = (cudaStream_t)st->stream.handle;
	CUDA_CHECK(cudaStreamWaitEvent(stream, st->copied, 0));
	CUDA_CHECK(cudaEventRecord(st->released, stream));
#endif
	return 0;
}

/*
 * The backend's workspace, at least bytes (its contents are not kept). It
 * grows only when a larger shape appears, so a steady training step
 * allocates nothing; cudaFree waits for the kernels still using the old one.
 */
static int workspace_reserve(struct tr_backend *b, size_t bytes, struct ut_err *err)
{
	struct cuda_state *st = state_of(b);
	if (bytes <= st->workspace_bytes)
		return 0;
	TR_CUDA_SYM(free)(b, st->workspace);
	st->workspace = NULL;
	st->workspace_bytes = 0;
	if (TR_CUDA_SYM(alloc)(b, bytes, &st->workspace, err) != 0)
		return -1;
	st->workspace_bytes = bytes;
	return 0;
}

/* ------------------------------------------------------------------------ */
/* convolutions: cuDNN graphs (the emulation: the CPU backend's), bias kernels */

#if !defined(TR_CUDA_EMU)
/* The number of weights of a convolution, [cout, cin, k, k]. */
static size_t conv_weights(const struct tr_conv *conv)
{
	return (size_t)conv->cout * (size_t)conv->cin * (size_t)conv->k * (size_t)conv->k;
}

/*
 * cuDNN is promised TR_CUDA_CONV_ALIGN-aligned pointers (conv_graph.h).
 * Activations are (the model plans 64-byte slices), but the model packs its
 * parameters back to back, so a weight after Detect's odd-sized bias is
 * only float-aligned: such a weight, or weight gradient, goes through the
 * backend's staging buffer (grown like the workspace), copied in stream
 * order. *use is what to hand cuDNN: w itself when aligned.
 */
static int conv_weight_in(struct tr_backend *b, const float *w, size_t count, const float **use,
			  struct ut_err *err)
{
	struct cuda_state *st = state_of(b);
	size_t bytes = count * sizeof(float);
	*use = w;
	if ((uintptr_t)w % TR_CUDA_CONV_ALIGN == 0)
		return 0;
	if (bytes > st->staging_bytes) {
		TR_CUDA_SYM(free)(b, st->staging);
		st->staging = NULL;
		st->staging_bytes = 0;
		if (TR_CUDA_SYM(alloc)(b, bytes, &st->staging, err) != 0)
			return -1;
		st->staging_bytes = bytes;
	}
	CUDA_CHECK(cudaMemcpyAsync(st->staging, w, bytes, cudaMemcpyDeviceToDevice,
				   (cudaStream_t)st->stream.handle));
	*use = st->staging;
	return 0;
}

/* After conv_weight_in staged a weight gradient (use != dw): copy the result back to dw. */
static int conv_weight_out(struct tr_backend *b, float *dw, const float *use, size_t count,
			   struct ut_err *err)
{
	if (use == dw)
		return 0;
	CUDA_CHECK(cudaMemcpyAsync(dw, use, count * sizeof(float), cudaMemcpyDeviceToDevice,
				   (cudaStream_t)state_of(b)->stream.handle));
	return 0;
}

/* The plan-cache key of an fp32 NCHW convolution (ops.h's tensors) on input shape in. */
static struct tr_cuda_conv_key conv_key(enum tr_cuda_conv_kind kind, const struct tr_conv *conv,
					struct tr_shape in)
{
	struct tr_cuda_conv_key key = {kind, *conv, in, TR_CUDA_FP32, TR_CUDA_NCHW};
	return key;
}
#endif

/* y = conv(x, w), then y += bias[c] (a kernel: the graph has no bias) */
static int cuda_conv_forward(struct tr_backend *b, const struct tr_conv *conv,
			     const struct tr_tensor *x, const float *w, const float *bias,
			     struct tr_tensor *y, struct ut_err *err)
{
	struct cuda_state *st = state_of(b);
	struct tr_shape out = y->shape;
	if (tr_conv_check("conv_forward", conv, x->shape, out, err) != 0)
		return -1;
#if defined(TR_CUDA_EMU)
	if (st->host->ops->conv_forward(st->host, conv, x, w, NULL, y, err) != 0)
		return -1;
#else
	struct tr_cuda_conv_key key = conv_key(TR_CUDA_CONV_FORWARD, conv, x->shape);
	const float *aligned_w;
	if (conv_weight_in(b, w, conv_weights(conv), &aligned_w, err) != 0 ||
	    tr_cuda_conv_forward(&st->convs, st->cudnn, &key, x->data, aligned_w, y->data, err) !=
		0)
		return -1;
#endif
	if (bias != NULL)
		LAUNCH_CHECK("conv_forward",
			     TR_CUDA_SYM(conv_bias_add)(&st->stream, y->data, bias, out.n, out.c,
							out.h * out.w));
	return 0;
}

/* dx = conv_transpose(dy, w) */
static int cuda_conv_backward_data(struct tr_backend *b, const struct tr_conv *conv,
				   const struct tr_tensor *dy, const float *w, struct tr_tensor *dx,
				   struct ut_err *err)
{
	struct cuda_state *st = state_of(b);
	if (tr_conv_check("conv_backward_data", conv, dx->shape, dy->shape, err) != 0)
		return -1;
#if defined(TR_CUDA_EMU)
	return st->host->ops->conv_backward_data(st->host, conv, dy, w, dx, err);
#else
	struct tr_cuda_conv_key key = conv_key(TR_CUDA_CONV_BACKWARD_DATA, conv, dx->shape);
	const float *aligned_w;
	if (conv_weight_in(b, w, conv_weights(conv), &aligned_w, err) != 0)
		return -1;
	return tr_cuda_conv_backward_data(&st->convs, st->cudnn, &key, dy->data, aligned_w,
					  dx->data, err);
#endif
}

/* dw += corr(x, dy) (the graph's beta = 1); dbias += the sum of dy over n, h, w (a kernel) */
static int cuda_conv_backward_filter(struct tr_backend *b, const struct tr_conv *conv,
				     const struct tr_tensor *x, const struct tr_tensor *dy,
				     float *dw, float *dbias, struct ut_err *err)
{
	struct cuda_state *st = state_of(b);
	struct tr_shape out = dy->shape;
	if (tr_conv_check("conv_backward_filter", conv, x->shape, out, err) != 0)
		return -1;
#if defined(TR_CUDA_EMU)
	if (st->host->ops->conv_backward_filter(st->host, conv, x, dy, dw, NULL, err) != 0)
		return -1;
#else
	struct tr_cuda_conv_key key = conv_key(TR_CUDA_CONV_BACKWARD_FILTER, conv, x->shape);
	const float *aligned_dw;
	size_t count = conv_weights(conv);
	if (conv_weight_in(b, dw, count, &aligned_dw, err) != 0 ||
	    tr_cuda_conv_backward_filter(&st->convs, st->cudnn, &key, x->data, dy->data,
					 (float *)aligned_dw, err) != 0 ||
	    conv_weight_out(b, dw, aligned_dw, count, err) != 0)
		return -1;
#endif
	if (dbias == NULL)
		return 0;
	size_t per_channel = (size_t)out.n * (size_t)out.h * (size_t)out.w;
	if (workspace_reserve(b, tr_cuda_bn_workspace_bytes(out.c, per_channel), err) != 0)
		return -1;
	LAUNCH_CHECK("conv_backward_filter",
		     TR_CUDA_SYM(conv_bias_grad)(&st->stream, dy->data, dbias, out.n, out.c,
						 out.h * out.w, st->workspace));
	return 0;
}

/* ------------------------------------------------------------------------ */
/* batch norm                                                                */

/* x, y: [n,c,h,w]; gamma, beta, running_*, save_*: [c] */
static int cuda_bn_forward_train(struct tr_backend *b, const struct tr_tensor *x,
				 const float *gamma, const float *beta, float eps, float momentum,
				 float *running_mean, float *running_var, float *save_mean,
				 float *save_invstd, struct tr_tensor *y, struct ut_err *err)
{
	struct tr_shape s = x->shape;
	size_t count = (size_t)s.n * (size_t)s.h * (size_t)s.w;
	if (!tr_shape_same(s, y->shape))
		return tr_shape_error(err, "bn_forward_train", "output", y->shape, s);
	if (count < 2)
		return ut_err_set(
		    err, "bn_forward_train: %zu value per channel (training needs 2 or more)",
		    count);
	if (workspace_reserve(b, tr_cuda_bn_workspace_bytes(s.c, count), err) != 0)
		return -1;
	struct tr_cuda_bn_train a = {
	    .x = x->data,
	    .gamma = gamma,
	    .beta = beta,
	    .y = y->data,
	    .running_mean = running_mean,
	    .running_var = running_var,
	    .save_mean = save_mean,
	    .save_invstd = save_invstd,
	    .workspace = state_of(b)->workspace,
	    .eps = eps,
	    .momentum = momentum,
	    .n = s.n,
	    .c = s.c,
	    .hw = s.h * s.w,
	};
	LAUNCH_CHECK("bn_forward_train", TR_CUDA_SYM(bn_forward_train)(&state_of(b)->stream, &a));
	return 0;
}

static int cuda_bn_forward_eval(struct tr_backend *b, const struct tr_tensor *x, const float *gamma,
				const float *beta, float eps, const float *running_mean,
				const float *running_var, struct tr_tensor *y, struct ut_err *err)
{
	struct tr_shape s = x->shape;
	if (!tr_shape_same(s, y->shape))
		return tr_shape_error(err, "bn_forward_eval", "output", y->shape, s);
	struct tr_cuda_bn_eval a = {
	    .x = x->data,
	    .gamma = gamma,
	    .beta = beta,
	    .running_mean = running_mean,
	    .running_var = running_var,
	    .y = y->data,
	    .eps = eps,
	    .n = s.n,
	    .c = s.c,
	    .hw = s.h * s.w,
	};
	LAUNCH_CHECK("bn_forward_eval", TR_CUDA_SYM(bn_forward_eval)(&state_of(b)->stream, &a));
	return 0;
}

/* dx = ..., dgamma += ..., dbeta += ...; dx may alias dy */
static int cuda_bn_backward(struct tr_backend *b, const struct tr_tensor *x,
			    const struct tr_tensor *dy, const float *gamma, const float *save_mean,
			    const float *save_invstd, struct tr_tensor *dx, float *dgamma,
			    float *dbeta, struct ut_err *err)
{
	struct tr_shape s = x->shape;
	if (!tr_shape_same(dy->shape, s))
		return tr_shape_error(err, "bn_backward", "dy", dy->shape, s);
	if (!tr_shape_same(dx->shape, s))
		return tr_shape_error(err, "bn_backward", "dx", dx->shape, s);
	if (workspace_reserve(b, tr_cuda_bn_workspace_bytes(s.c, (size_t)s.n * s.h * s.w), err) !=
	    0)
		return -1;
	struct tr_cuda_bn_grad a = {
	    .x = x->data,
	    .dy = dy->data,
	    .gamma = gamma,
	    .save_mean = save_mean,
	    .save_invstd = save_invstd,
	    .dx = dx->data,
	    .dgamma = dgamma,
	    .dbeta = dbeta,
	    .workspace = state_of(b)->workspace,
	    .n = s.n,
	    .c = s.c,
	    .hw = s.h * s.w,
	};
	LAUNCH_CHECK("bn_backward", TR_CUDA_SYM(bn_backward)(&state_of(b)->stream, &a));
	return 0;
}

/* x, dy: [n,c,h,w] (dy may be NULL); mean: [c] doubles; sums: [2c] doubles */
static int cuda_bn_channel_sums(struct tr_backend *b, const struct tr_tensor *x,
				const struct tr_tensor *dy, const double *mean, double *sums,
				struct ut_err *err)
{
	struct tr_shape s = x->shape;
	if (tr_bn_channel_check("bn_channel_sums", x, dy, NULL, err) != 0)
		return -1;
	if (workspace_reserve(b, tr_cuda_bn_workspace_bytes(s.c, (size_t)s.n * s.h * s.w), err) !=
	    0)
		return -1;
	struct tr_cuda_bn_sums a = {
	    .x = x->data,
	    .dy = dy != NULL ? dy->data : NULL,
	    .mean = mean,
	    .sums = sums,
	    .workspace = state_of(b)->workspace,
	    .n = s.n,
	    .c = s.c,
	    .hw = s.h * s.w,
	};
	LAUNCH_CHECK("bn_channel_sums", TR_CUDA_SYM(bn_channel_sums)(&state_of(b)->stream, &a));
	return 0;
}

/* out = k dy + a x + d, or x a + d without dy, per channel; coef: [3c] = k, a, d */
static int cuda_bn_channel_affine(struct tr_backend *b, const struct tr_tensor *x,
				  const struct tr_tensor *dy, const float *coef,
				  struct tr_tensor *out, struct ut_err *err)
{
	struct tr_shape s = x->shape;
	if (tr_bn_channel_check("bn_channel_affine", x, dy, out, err) != 0)
		return -1;
	struct tr_cuda_bn_affine a = {
	    .x = x->data,
	    .dy = dy != NULL ? dy->data : NULL,
	    .coef = coef,
	    .out = out->data,
	    .n = s.n,
	    .c = s.c,
	    .hw = s.h * s.w,
	};
	LAUNCH_CHECK("bn_channel_affine", TR_CUDA_SYM(bn_channel_affine)(&state_of(b)->stream, &a));
	return 0;
}

/* ------------------------------------------------------------------------ */
/* elementwise: SiLU, add (outputs may alias inputs)                         */

static int cuda_silu_forward(struct tr_backend *b, const struct tr_tensor *x, struct tr_tensor *y,
			     struct ut_err *err)
{
	if (!tr_shape_same(x->shape, y->shape))
		return tr_shape_error(err, "silu_forward", "y", y->shape, x->shape);
	LAUNCH_CHECK("silu_forward", TR_CUDA_SYM(silu_forward)(&state_of(b)->stream, x->data,
							       y->data, tr_shape_numel(x->shape)));
	return 0;
}

static int cuda_silu_backward(struct tr_backend *b, const struct tr_tensor *x,
			      const struct tr_tensor *dy, struct tr_tensor *dx, struct ut_err *err)
{
	if (!tr_shape_same(x->shape, dy->shape))
		return tr_shape_error(err, "silu_backward", "dy", dy->shape, x->shape);
	if (!tr_shape_same(x->shape, dx->shape))
		return tr_shape_error(err, "silu_backward", "dx", dx->shape, x->shape);
	LAUNCH_CHECK("silu_backward",
		     TR_CUDA_SYM(silu_backward)(&state_of(b)->stream, x->data, dy->data, dx->data,
						tr_shape_numel(x->shape)));
	return 0;
}

static int cuda_add_forward(struct tr_backend *b, const struct tr_tensor *a,
			    const struct tr_tensor *x, struct tr_tensor *y, struct ut_err *err)
{
	if (!tr_shape_same(a->shape, x->shape))
		return tr_shape_error(err, "add_forward", "second input", x->shape, a->shape);
	if (!tr_shape_same(a->shape, y->shape))
		return tr_shape_error(err, "add_forward", "output", y->shape, a->shape);
	LAUNCH_CHECK("add_forward", TR_CUDA_SYM(add_forward)(&state_of(b)->stream, a->data, x->data,
							     y->data, tr_shape_numel(a->shape)));
	return 0;
}

/* ------------------------------------------------------------------------ */
/* max pool k x k, stride 1, pad k/2, -inf padding (PyTorch's first max wins) */

static int cuda_maxpool_forward(struct tr_backend *b, int k, const struct tr_tensor *x,
				struct tr_tensor *y, struct ut_err *err)
{
	struct tr_shape s = x->shape;
	if (tr_pool_check("maxpool_forward", k, s, y->shape, err) != 0)
		return -1;
	LAUNCH_CHECK("maxpool_forward",
		     TR_CUDA_SYM(maxpool_forward)(&state_of(b)->stream, k, x->data, y->data,
						  s.n * s.c, s.h, s.w));
	return 0;
}

static int cuda_maxpool_backward(struct tr_backend *b, int k, const struct tr_tensor *x,
				 const struct tr_tensor *y, const struct tr_tensor *dy,
				 struct tr_tensor *dx, struct ut_err *err)
{
	(void)y; /* the argmax is found again in x, as on the CPU */
	struct tr_shape s = x->shape;
	if (tr_pool_check("maxpool_backward", k, s, dy->shape, err) != 0 ||
	    tr_pool_check("maxpool_backward", k, s, dx->shape, err) != 0 ||
	    workspace_reserve(b, tr_shape_numel(s) * sizeof(int), err) != 0)
		return -1;
	LAUNCH_CHECK("maxpool_backward", TR_CUDA_SYM(maxpool_backward)(
					     &state_of(b)->stream, k, x->data, dy->data, dx->data,
					     s.n * s.c, s.h, s.w, (int *)state_of(b)->workspace));
	return 0;
}

/* ------------------------------------------------------------------------ */
/* nearest 2x upsample                                                       */

static int cuda_upsample2x_forward(struct tr_backend *b, const struct tr_tensor *x,
				   struct tr_tensor *y, struct ut_err *err)
{
	struct tr_shape s = x->shape;
	if (tr_upsample_check("upsample2x_forward", s, y->shape, err) != 0)
		return -1;
	LAUNCH_CHECK("upsample2x_forward",
		     TR_CUDA_SYM(upsample2x_forward)(&state_of(b)->stream, x->data, y->data,
						     s.n * s.c, s.h, s.w));
	return 0;
}

static int cuda_upsample2x_backward(struct tr_backend *b, const struct tr_tensor *dy,
				    struct tr_tensor *dx, struct ut_err *err)
{
	struct tr_shape s = dx->shape;
	if (tr_upsample_check("upsample2x_backward", s, dy->shape, err) != 0)
		return -1;
	LAUNCH_CHECK("upsample2x_backward",
		     TR_CUDA_SYM(upsample2x_backward)(&state_of(b)->stream, dy->data, dx->data,
						      s.n * s.c, s.h, s.w));
	return 0;
}

/* ------------------------------------------------------------------------ */
/* concat / split along channels                                             */

/* Copy each part to or from its channel range of whole (one launch a part). */
static int concat_copy(struct tr_backend *b, const char *op, const struct tr_tensor *const *parts,
		       int count, float *whole, struct tr_shape ws, int to_whole,
		       struct ut_err *err)
{
	int c0 = 0;
	for (int i = 0; i < count; i++) {
		LAUNCH_CHECK(op, TR_CUDA_SYM(concat_copy)(&state_of(b)->stream, parts[i]->data,
							  whole, ws.n, parts[i]->shape.c, ws.c, c0,
							  ws.h * ws.w, to_whole));
		c0 += parts[i]->shape.c;
	}
	return 0;
}

static int cuda_concat_forward(struct tr_backend *b, const struct tr_tensor *const *xs, int count,
			       struct tr_tensor *y, struct ut_err *err)
{
	if (tr_concat_check("concat_forward", xs, count, y->shape, err) != 0)
		return -1;
	return concat_copy(b, "concat_forward", xs, count, y->data, y->shape, 1, err);
}

static int cuda_concat_backward(struct tr_backend *b, const struct tr_tensor *dy,
				struct tr_tensor *const *dxs, int count, struct ut_err *err)
{
	const struct tr_tensor *const *parts = (const struct tr_tensor *const *)dxs;
	if (tr_concat_check("concat_backward", parts, count, dy->shape, err) != 0)
		return -1;
	return concat_copy(b, "concat_backward", parts, count, dy->data, dy->shape, 0, err);
}

/* ------------------------------------------------------------------------ */
/* Detect: permute and decode                                                */

static int cuda_detect_permute_forward(struct tr_backend *b, int na, const struct tr_tensor *raw,
				       float *out, struct ut_err *err)
{
	struct tr_shape s = raw->shape;
	if (tr_detect_check("detect_permute_forward", na, s, err) != 0)
		return -1;
	LAUNCH_CHECK("detect_permute_forward",
		     TR_CUDA_SYM(detect_permute)(&state_of(b)->stream, raw->data, out, s.n * na,
						 s.c / na, s.h * s.w, 1));
	return 0;
}

static int cuda_detect_permute_backward(struct tr_backend *b, int na, const float *dout,
					struct tr_tensor *draw, struct ut_err *err)
{
	struct tr_shape s = draw->shape;
	if (tr_detect_check("detect_permute_backward", na, s, err) != 0)
		return -1;
	/* the kernel only reads rows when it writes planar: the cast drops const for one signature
	 */
	LAUNCH_CHECK("detect_permute_backward",
		     TR_CUDA_SYM(detect_permute)(&state_of(b)->stream, draw->data, (float *)dout,
						 s.n * na, s.c / na, s.h * s.w, 0));
	return 0;
}

/*
 * See struct tr_detect_level in ops.h: level->anchors are grid units in
 * device memory. The kernel takes pixel anchors by value, made here as the
 * CPU backend makes them (anchor * stride in float), so both decode alike.
 */
static int cuda_detect_decode(struct tr_backend *b, const struct tr_detect_level *level,
			      const struct tr_tensor *x, float *out, struct ut_err *err)
{
	struct tr_shape s = x->shape;
	int na = level->na, no = level->no;
	if (na < 1 || no < 6 || s.c != na * no)
		return ut_err_set(err, "detect_decode: %d channels for %d anchors x %d outputs",
				  s.c, na, no);
	if (na > TR_CUDA_MAX_ANCHORS)
		return ut_err_set(err, "detect_decode: %d anchors (the CUDA backend takes %d)", na,
				  TR_CUDA_MAX_ANCHORS);
	if (level->row0 < 0 || level->row0 + na * s.h * s.w > level->rows)
		return ut_err_set(err, "detect_decode: rows %d..%d outside %d", level->row0,
				  level->row0 + na * s.h * s.w, level->rows);
	struct tr_cuda_detect a = {
	    .x = x->data,
	    .out = out,
	    .stride = level->stride,
	    .n = s.n,
	    .na = na,
	    .no = no,
	    .h = s.h,
	    .w = s.w,
	    .rows = level->rows,
	    .row0 = level->row0,
	};
	float grid[2 * TR_CUDA_MAX_ANCHORS];
	if (TR_CUDA_SYM(download)(b, grid, level->anchors, 2 * (size_t)na * sizeof(float), err) !=
	    0)
		return -1;
	for (int k = 0; k < 2 * na; k++)
		a.anchors[k] = grid[k] * level->stride;
	LAUNCH_CHECK("detect_decode", TR_CUDA_SYM(detect_decode)(&state_of(b)->stream, &a));
	return 0;
}

/* ------------------------------------------------------------------------ */
/* optimizer: update, amp unscale, gradient norm, EMA (formula.h per element) */

static int cuda_optim_update(struct tr_backend *b, const struct tr_f_optim *step, float *param,
			     const float *grad, float *slot0, float *slot1, size_t n,
			     struct ut_err *err)
{
	if (step->adam && slot1 == NULL)
		return ut_err_set(err, "optim_update: Adam needs exp_avg_sq (slot1)");
	LAUNCH_CHECK("optim_update", TR_CUDA_SYM(optim_update)(&state_of(b)->stream, step, param,
							       grad, slot0, slot1, n));
	return 0;
}

/*
 * The values as the CPU's, bit for bit; the count of inf and nan values
 * summed per chunk, then over the chunks (kernels.h TR_CUDA_SUM_CHUNK), and
 * downloaded: one double, which waits for the stream.
 */
static int cuda_amp_unscale(struct tr_backend *b, float *x, float inv_scale, size_t n,
			    int *found_inf, struct ut_err *err)
{
	struct cuda_state *st = state_of(b);
	if (tr_amp_unscale_check("amp_unscale", inv_scale, found_inf, err) != 0 ||
	    workspace_reserve(b, tr_cuda_sum_workspace_bytes(n), err) != 0)
		return -1;
	double *partial = (double *)st->workspace, nonfinite = 0;
	LAUNCH_CHECK("amp_unscale",
		     TR_CUDA_SYM(amp_unscale)(&st->stream, x, inv_scale, n, partial));
	if (TR_CUDA_SYM(download)(b, &nonfinite, partial + tr_cuda_sum_chunks(n), sizeof(nonfinite),
				  err) != 0)
		return -1;
	*found_inf = nonfinite > 0;
	return 0;
}

/*
 * The sum in double in a fixed tree (kernels.h TR_CUDA_SUM_CHUNK), not the
 * CPU's index order: equal to double rounding, not bit for bit. *out is
 * host memory: the total is downloaded, which waits for the stream.
 */
static int cuda_sum_squares(struct tr_backend *b, const float *x, size_t n, double *out,
			    struct ut_err *err)
{
	struct cuda_state *st = state_of(b);
	if (workspace_reserve(b, tr_cuda_sum_workspace_bytes(n), err) != 0)
		return -1;
	double *partial = (double *)st->workspace;
	LAUNCH_CHECK("sum_squares", TR_CUDA_SYM(sum_squares)(&st->stream, x, n, partial));
	return TR_CUDA_SYM(download)(b, out, partial + tr_cuda_sum_chunks(n), sizeof(*out), err);
}

static int cuda_scale(struct tr_backend *b, float *x, float factor, size_t n, struct ut_err *err)
{
	LAUNCH_CHECK("scale", TR_CUDA_SYM(scale)(&state_of(b)->stream, x, factor, n));
	return 0;
}

static int cuda_ema_update(struct tr_backend *b, float *ema, const float *model, float keep,
			   float take, size_t n, struct ut_err *err)
{
	LAUNCH_CHECK("ema_update",
		     TR_CUDA_SYM(ema_update)(&state_of(b)->stream, ema, model, keep, take, n));
	return 0;
}

/* ------------------------------------------------------------------------ */
/* the loss's dense objectness                                               */

/* The sum as sum_squares's (a fixed tree in double); the gradient rows exactly the CPU's. */
static int cuda_loss_obj_dense(struct tr_backend *b, const struct tr_f_bce *bce, double scale,
			       const float *pred, float *grad, size_t cells, int width,
			       double *obj_sum, struct ut_err *err)
{
	struct cuda_state *st = state_of(b);
	if (width < 6)
		return ut_err_set(err, "loss_obj_dense: rows of %d values (need nc + 5)", width);
	if (workspace_reserve(b, tr_cuda_sum_workspace_bytes(cells), err) != 0)
		return -1;
	double *partial = (double *)st->workspace;
	LAUNCH_CHECK("loss_obj_dense", TR_CUDA_SYM(loss_obj_dense)(&st->stream, bce, scale, pred,
								   grad, cells, width, partial));
	return TR_CUDA_SYM(download)(b, obj_sum, partial + tr_cuda_sum_chunks(cells),
				     sizeof(*obj_sum), err);
}

/* ------------------------------------------------------------------------ */
/* bilinear resize, --quad's collate                                         */

static int cuda_resize_bilinear(struct tr_backend *b, const struct tr_tensor *x,
				struct tr_tensor *y, struct ut_err *err)
{
	struct tr_shape in = x->shape, out = y->shape;
	if (in.n != out.n || in.c != out.c || in.h < 1 || in.w < 1 || out.h < 1 || out.w < 1)
		return ut_err_set(err, "resize_bilinear: %dx%dx%dx%d to %dx%dx%dx%d", in.n, in.c,
				  in.h, in.w, out.n, out.c, out.h, out.w);
	LAUNCH_CHECK("resize_bilinear",
		     TR_CUDA_SYM(resize_bilinear)(&state_of(b)->stream, x->data, y->data,
						  in.n * in.c, in.h, in.w, out.h, out.w));
	return 0;
}

/* One launch a quad: upsample is a host array, its flag goes by value. */
static int cuda_quad_collate(struct tr_backend *b, const uint8_t *bytes,
			     const struct tr_tensor *images, const uint8_t *upsample, float *out,
			     struct ut_err *err)
{
	struct tr_shape s = images->shape;
	if (tr_quad_check("quad_collate", s, err) != 0)
		return -1;
	for (int q = 0; q < s.n / 4; q++)
		LAUNCH_CHECK("quad_collate",
			     TR_CUDA_SYM(quad_collate)(&state_of(b)->stream, bytes, images->data,
						       out, q, upsample[q] != 0, s.c, s.h, s.w));
	return 0;
}

/* ------------------------------------------------------------------------ */
/* conversions: input bytes, half rounding, half-precision casts             */

static int cuda_images_to_float(struct tr_backend *b, const uint8_t *x, float *y, size_t n,
				struct ut_err *err)
{
	LAUNCH_CHECK("images_to_float",
		     TR_CUDA_SYM(images_to_float)(&state_of(b)->stream, x, y, n));
	return 0;
}

static int cuda_round_half(struct tr_backend *b, float *x, size_t n, struct ut_err *err)
{
	LAUNCH_CHECK("round_half", TR_CUDA_SYM(round_half)(&state_of(b)->stream, x, n));
	return 0;
}

/*
 * The half-precision casts: checked as the CPU's, then one launch. One
 * function each, spelled once: CAST(name, in, out), as cpu/ops.c.
 */
#define CAST(name, in_t, out_t)                                                                    \
	static int cuda_##name(struct tr_backend *b, const in_t *x, out_t *y, size_t n,            \
			       struct ut_err *err)                                                 \
	{                                                                                          \
		if (tr_cast_check(#name, x, sizeof(*x), y, sizeof(*y), n, err) != 0)               \
			return -1;                                                                 \
		LAUNCH_CHECK(#name, TR_CUDA_SYM(name)(&state_of(b)->stream, x, y, n));             \
		return 0;                                                                          \
	}
CAST(float_to_fp16, float, uint16_t)
CAST(fp16_to_float, uint16_t, float)
CAST(float_to_bf16, float, uint16_t)
CAST(bf16_to_float, uint16_t, float)
#undef CAST

/* ------------------------------------------------------------------------ */
/* the table and the constructor                                             */

static const struct tr_ops cuda_ops = {
#if defined(TR_CUDA_EMU)
    .name = "cuda-emu",
#else
    .name = "cuda",
#endif
    .alloc = TR_CUDA_SYM(alloc),
    .free = TR_CUDA_SYM(free),
    .memset = cuda_memset,
    .upload = TR_CUDA_SYM(upload),
    .download = TR_CUDA_SYM(download),
    .sync = TR_CUDA_SYM(sync),
    .host_alloc = cuda_host_alloc,
    .host_free = cuda_host_free,
    .upload_async = cuda_upload_async,
    .upload_wait = cuda_upload_wait,
    .conv_forward = cuda_conv_forward,
    .conv_backward_data = cuda_conv_backward_data,
    .conv_backward_filter = cuda_conv_backward_filter,
    .bn_forward_train = cuda_bn_forward_train,
    .bn_forward_eval = cuda_bn_forward_eval,
    .bn_backward = cuda_bn_backward,
    .bn_channel_sums = cuda_bn_channel_sums,
    .bn_channel_affine = cuda_bn_channel_affine,
    .silu_forward = cuda_silu_forward,
    .silu_backward = cuda_silu_backward,
    .maxpool_forward = cuda_maxpool_forward,
    .maxpool_backward = cuda_maxpool_backward,
    .upsample2x_forward = cuda_upsample2x_forward,
    .upsample2x_backward = cuda_upsample2x_backward,
    .concat_forward = cuda_concat_forward,
    .concat_backward = cuda_concat_backward,
    .add_forward = cuda_add_forward,
    .detect_permute_forward = cuda_detect_permute_forward,
    .detect_permute_backward = cuda_detect_permute_backward,
    .detect_decode = cuda_detect_decode,
    .optim_update = cuda_optim_update,
    .amp_unscale = cuda_amp_unscale,
    .sum_squares = cuda_sum_squares,
    .scale = cuda_scale,
    .ema_update = cuda_ema_update,
    .loss_obj_dense = cuda_loss_obj_dense,
    .resize_bilinear = cuda_resize_bilinear,
    .quad_collate = cuda_quad_collate,
    .images_to_float = cuda_images_to_float,
    .round_half = cuda_round_half,
    .float_to_fp16 = cuda_float_to_fp16,
    .fp16_to_float = cuda_fp16_to_float,
    .float_to_bf16 = cuda_float_to_bf16,
    .bf16_to_float = cuda_bf16_to_float,
};

static void cuda_destroy(struct tr_backend *b)
{
	struct cuda_state *st = state_of(b);
	TR_CUDA_SYM(free)(b, st->workspace);
#if defined(TR_CUDA_EMU)
	tr_backend_destroy(st->host);
#else
	TR_CUDA_SYM(free)(b, st->staging);
	tr_cuda_convs_release(&st->convs);
	/* nothing to report to: a handle or stream that fails to go is the driver's to clean up */
	if (st->cudnn != NULL)
		(void)cudnnDestroy(st->cudnn);
	if (st->stream.handle != NULL)
		(void)cudaStreamDestroy((cudaStream_t)st->stream.handle);
	if (st->copy_stream != NULL)
		(void)cudaStreamDestroy(st->copy_stream);
	if (st->copied != NULL)
		(void)cudaEventDestroy(st->copied);
	if (st->released != NULL)
		(void)cudaEventDestroy(st->released);
#endif
	free(st);
	free(b);
}

/* A backend with its table and a zeroed state; the caller fills the stream. */
static int backend_new(int device, struct tr_backend **out, struct ut_err *err)
{
	struct tr_backend *b = calloc(1, sizeof(*b));
	struct cuda_state *st = calloc(1, sizeof(*st));
	if (b == NULL || st == NULL) {
		free(b);
		free(st);
		return ut_err_set(err, "%s:%d: out of memory", __FILE__, __LINE__);
	}
	st->device = device;
#if !defined(TR_CUDA_EMU)
	tr_cuda_convs_init(&st->convs);
#endif
	b->ops = &cuda_ops;
	b->state = st;
	b->destroy = cuda_destroy;
	*out = b;
	return 0;
}

#if defined(TR_CUDA_EMU)

int tr_cuda_emu_backend_create(uint64_t seed, struct tr_backend **out, struct ut_err *err)
{
	*out = NULL;
	if (backend_new(0, out, err) != 0)
		return -1;
	state_of(*out)->stream.seed = seed;
	/* one thread: the convolutions' bits must not depend on the machine's cores */
	if (tr_cpu_backend_create(1, &state_of(*out)->host, err) != 0) {
		cuda_destroy(*out);
		*out = NULL;
		return -1;
	}
	return 0;
}

#else

int tr_cuda_device_check(int device, struct ut_err *err)
{
	int count = 0;
	cudaError_t rc = cudaGetDeviceCount(&count);
	if (rc != cudaSuccess)
		return ut_err_set(err, "CUDA: cannot use GPU %d: %s (%s)", device,
				  cudaGetErrorString(rc), cudaGetErrorName(rc));
	if (device < 0 || device >= count)
		return ut_err_set(err, "CUDA: no GPU %d (this machine has %d)", device, count);
	return 0;
}

/*
 * Select the device, create the backend's stream and a cuDNN handle on it,
 * and the copy stream with its two events (no timing: they only order).
 */
static int stream_init(struct cuda_state *st, struct ut_err *err)
{
	cudaStream_t stream = NULL;
	CUDA_CHECK(cudaSetDevice(st->device));
	CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
	st->stream.handle = stream;
	CUDA_CHECK(cudaStreamCreateWithFlags(&st->copy_stream, cudaStreamNonBlocking));
	CUDA_CHECK(cudaEventCreateWithFlags(&st->copied, cudaEventDisableTiming));
	CUDA_CHECK(cudaEventCreateWithFlags(&st->released, cudaEventDisableTiming));
	cudnnStatus_t status = cudnnCreate(&st->cudnn);
	if (status == CUDNN_STATUS_SUCCESS)
		status = cudnnSetStream(st->cudnn, stream);
	if (status != CUDNN_STATUS_SUCCESS)
		return ut_err_set(err, "%s:%d: cuDNN: cannot start on GPU %d: %s", __FILE__,
				  __LINE__, st->device, cudnnGetErrorString(status));
	return 0;
}

int tr_cuda_backend_create(int device, struct tr_backend **out, struct ut_err *err)
{
	*out = NULL;
	if (tr_cuda_device_check(device, err) != 0 || backend_new(device, out, err) != 0)
		return -1;
	if (stream_init(state_of(*out), err) != 0) {
		cuda_destroy(*out);
		*out = NULL;
		return -1;
	}
	return 0;
}

#endif
