/*
 * trainer/cuda/backend.c - the CUDA backend's op table (ops.h) in C: shape
 * checks as the CPU backend's, then the launchers of kernels.cu on the
 * backend's stream; device memory and the stream through the CUDA runtime,
 * every call checked (CUDA_CHECK names file:line, the call and the error).
 *
 * Built twice (trainer/cuda/meson.build): plain, it is tr_cuda_backend_create
 * on a GPU; with TR_CUDA_EMU defined, it is tr_cuda_emu_backend_create, the
 * same ops on host memory with the kernels on the CPU emulation (emu/), for
 * the tests. Only the memory and stream calls differ between the two.
 */
#include "kernels.h"
#include "tr_cuda.h"

#include <stdlib.h>
#include <string.h>

#if !defined(TR_CUDA_EMU)
#include <cuda_runtime.h>

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

struct cuda_state {
	int device;
	struct tr_cuda_stream stream;
	void *workspace; /* batch norm's partial sums, max pool's argmax; grown on a new shape */
	size_t workspace_bytes;
};

static struct cuda_state *state_of(struct tr_backend *b)
{
	return (struct cuda_state *)b->state;
}

/* ------------------------------------------------------------------------ */
/* memory and the stream                                                     */

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

int TR_CUDA_SYM(sync)(struct tr_backend *b, struct ut_err *err)
{
#if defined(TR_CUDA_EMU)
	(void)b;
	(void)err;
#else
	CUDA_CHECK(cudaStreamSynchronize((cudaStream_t)state_of(b)->stream.handle));
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
/* checks (the CPU backend's messages)                                       */

static int same_shape(struct tr_shape a, struct tr_shape b)
{
	return a.n == b.n && a.c == b.c && a.h == b.h && a.w == b.w;
}

static int shape_error(struct ut_err *err, const char *op, const char *what, struct tr_shape got,
		       struct tr_shape want)
{
	return ut_err_set(err, "%s: %s has shape %dx%dx%dx%d, expected %dx%dx%dx%d", op, what,
			  got.n, got.c, got.h, got.w, want.n, want.c, want.h, want.w);
}

/* ------------------------------------------------------------------------ */
/* convolutions: cuDNN graphs, not built yet                                 */

static int conv_missing(const char *op, struct ut_err *err)
{
	return ut_err_set(err,
			  "%s: the CUDA backend has no convolutions yet (cuDNN graphs are not "
			  "built); use --device cpu",
			  op);
}

static int cuda_conv_forward(struct tr_backend *b, const struct tr_conv *conv,
			     const struct tr_tensor *x, const float *w, const float *bias,
			     struct tr_tensor *y, struct ut_err *err)
{
	return conv_missing("conv_forward", err);
}

static int cuda_conv_backward_data(struct tr_backend *b, const struct tr_conv *conv,
				   const struct tr_tensor *dy, const float *w, struct tr_tensor *dx,
				   struct ut_err *err)
{
	return conv_missing("conv_backward_data", err);
}

static int cuda_conv_backward_filter(struct tr_backend *b, const struct tr_conv *conv,
				     const struct tr_tensor *x, const struct tr_tensor *dy,
				     float *dw, float *dbias, struct ut_err *err)
{
	return conv_missing("conv_backward_filter", err);
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
	if (!same_shape(s, y->shape))
		return shape_error(err, "bn_forward_train", "output", y->shape, s);
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
	if (!same_shape(s, y->shape))
		return shape_error(err, "bn_forward_eval", "output", y->shape, s);
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
	if (!same_shape(dy->shape, s))
		return shape_error(err, "bn_backward", "dy", dy->shape, s);
	if (!same_shape(dx->shape, s))
		return shape_error(err, "bn_backward", "dx", dx->shape, s);
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

/* ------------------------------------------------------------------------ */
/* elementwise: SiLU, add (outputs may alias inputs)                         */

static int cuda_silu_forward(struct tr_backend *b, const struct tr_tensor *x, struct tr_tensor *y,
			     struct ut_err *err)
{
	if (!same_shape(x->shape, y->shape))
		return shape_error(err, "silu_forward", "y", y->shape, x->shape);
	LAUNCH_CHECK("silu_forward", TR_CUDA_SYM(silu_forward)(&state_of(b)->stream, x->data,
							       y->data, tr_shape_numel(x->shape)));
	return 0;
}

static int cuda_silu_backward(struct tr_backend *b, const struct tr_tensor *x,
			      const struct tr_tensor *dy, struct tr_tensor *dx, struct ut_err *err)
{
	if (!same_shape(x->shape, dy->shape))
		return shape_error(err, "silu_backward", "dy", dy->shape, x->shape);
	if (!same_shape(x->shape, dx->shape))
		return shape_error(err, "silu_backward", "dx", dx->shape, x->shape);
	LAUNCH_CHECK("silu_backward",
		     TR_CUDA_SYM(silu_backward)(&state_of(b)->stream, x->data, dy->data, dx->data,
						tr_shape_numel(x->shape)));
	return 0;
}

static int cuda_add_forward(struct tr_backend *b, const struct tr_tensor *a,
			    const struct tr_tensor *x, struct tr_tensor *y, struct ut_err *err)
{
	if (!same_shape(a->shape, x->shape))
		return shape_error(err, "add_forward", "second input", x->shape, a->shape);
	if (!same_shape(a->shape, y->shape))
		return shape_error(err, "add_forward", "output", y->shape, a->shape);
	LAUNCH_CHECK("add_forward", TR_CUDA_SYM(add_forward)(&state_of(b)->stream, a->data, x->data,
							     y->data, tr_shape_numel(a->shape)));
	return 0;
}

/* ------------------------------------------------------------------------ */
/* max pool k x k, stride 1, pad k/2, -inf padding (PyTorch's first max wins) */

static int pool_check(const char *op, int k, struct tr_shape x, struct tr_shape y,
		      struct ut_err *err)
{
	if (k < 1 || k % 2 == 0)
		return ut_err_set(err, "%s: kernel %d (must be odd for pad k/2, stride 1)", op, k);
	if (!same_shape(x, y))
		return shape_error(err, op, "output", y, x);
	return 0;
}

static int cuda_maxpool_forward(struct tr_backend *b, int k, const struct tr_tensor *x,
				struct tr_tensor *y, struct ut_err *err)
{
	struct tr_shape s = x->shape;
	if (pool_check("maxpool_forward", k, s, y->shape, err) != 0)
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
	if (pool_check("maxpool_backward", k, s, dy->shape, err) != 0 ||
	    pool_check("maxpool_backward", k, s, dx->shape, err) != 0 ||
	    workspace_reserve(b, tr_shape_numel(s) * sizeof(int), err) != 0)
		return -1;
	LAUNCH_CHECK("maxpool_backward", TR_CUDA_SYM(maxpool_backward)(
					     &state_of(b)->stream, k, x->data, dy->data, dx->data,
					     s.n * s.c, s.h, s.w, (int *)state_of(b)->workspace));
	return 0;
}

/* ------------------------------------------------------------------------ */
/* nearest 2x upsample                                                       */

static int up_check(const char *op, struct tr_shape small, struct tr_shape big, struct ut_err *err)
{
	struct tr_shape want = {small.n, small.c, 2 * small.h, 2 * small.w};
	if (!same_shape(big, want))
		return shape_error(err, op, "upsampled tensor", big, want);
	return 0;
}

static int cuda_upsample2x_forward(struct tr_backend *b, const struct tr_tensor *x,
				   struct tr_tensor *y, struct ut_err *err)
{
	struct tr_shape s = x->shape;
	if (up_check("upsample2x_forward", s, y->shape, err) != 0)
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
	if (up_check("upsample2x_backward", s, dy->shape, err) != 0)
		return -1;
	LAUNCH_CHECK("upsample2x_backward",
		     TR_CUDA_SYM(upsample2x_backward)(&state_of(b)->stream, dy->data, dx->data,
						      s.n * s.c, s.h, s.w));
	return 0;
}

/* ------------------------------------------------------------------------ */
/* concat / split along channels                                             */

static int concat_check(const char *op, const struct tr_tensor *const *parts, int count,
			struct tr_shape whole, struct ut_err *err)
{
	int channels = 0;
	if (count < 1)
		return ut_err_set(err, "%s: %d inputs", op, count);
	for (int i = 0; i < count; i++) {
		struct tr_shape s = parts[i]->shape;
		if (s.n != whole.n || s.h != whole.h || s.w != whole.w)
			return ut_err_set(err, "%s: input %d is %dx%dx%dx%d, output %dx%dx%dx%d",
					  op, i, s.n, s.c, s.h, s.w, whole.n, whole.c, whole.h,
					  whole.w);
		channels += s.c;
	}
	if (channels != whole.c)
		return ut_err_set(err, "%s: inputs have %d channels in all, output %d", op,
				  channels, whole.c);
	return 0;
}

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
	if (concat_check("concat_forward", xs, count, y->shape, err) != 0)
		return -1;
	return concat_copy(b, "concat_forward", xs, count, y->data, y->shape, 1, err);
}

static int cuda_concat_backward(struct tr_backend *b, const struct tr_tensor *dy,
				struct tr_tensor *const *dxs, int count, struct ut_err *err)
{
	const struct tr_tensor *const *parts = (const struct tr_tensor *const *)dxs;
	if (concat_check("concat_backward", parts, count, dy->shape, err) != 0)
		return -1;
	return concat_copy(b, "concat_backward", parts, count, dy->data, dy->shape, 0, err);
}

/* ------------------------------------------------------------------------ */
/* Detect decode (inference)                                                 */

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
    .conv_forward = cuda_conv_forward,
    .conv_backward_data = cuda_conv_backward_data,
    .conv_backward_filter = cuda_conv_backward_filter,
    .bn_forward_train = cuda_bn_forward_train,
    .bn_forward_eval = cuda_bn_forward_eval,
    .bn_backward = cuda_bn_backward,
    .silu_forward = cuda_silu_forward,
    .silu_backward = cuda_silu_backward,
    .maxpool_forward = cuda_maxpool_forward,
    .maxpool_backward = cuda_maxpool_backward,
    .upsample2x_forward = cuda_upsample2x_forward,
    .upsample2x_backward = cuda_upsample2x_backward,
    .concat_forward = cuda_concat_forward,
    .concat_backward = cuda_concat_backward,
    .add_forward = cuda_add_forward,
    .detect_decode = cuda_detect_decode,
};

static void cuda_destroy(struct tr_backend *b)
{
	struct cuda_state *st = state_of(b);
	TR_CUDA_SYM(free)(b, st->workspace);
#if !defined(TR_CUDA_EMU)
	/* nothing to report to: a stream that fails to go is the driver's to clean up */
	if (st->stream.handle != NULL)
		(void)cudaStreamDestroy((cudaStream_t)st->stream.handle);
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

/* Select the device and create the backend's stream. */
static int stream_init(struct cuda_state *st, struct ut_err *err)
{
	cudaStream_t stream = NULL;
	CUDA_CHECK(cudaSetDevice(st->device));
	CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
	st->stream.handle = stream;
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
