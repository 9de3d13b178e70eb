/*
 * ops.h - the operations a YOLOv5 network needs, forward and backward, as
 * one table of function pointers per backend (trainer/cpu/ is the
 * specification; trainer/cuda/ must match it within stated tolerances).
 *
 * Conventions, on every backend:
 *   - tensors are float32 NCHW, contiguous; shapes are in struct tr_shape;
 *   - tensors live in the backend's DEVICE memory (alloc; see the memory
 *     ops), which host code reaches only through upload and download;
 *   - forward ops and data gradients ASSIGN their output (y = ..., dx = ...),
 *     parameter gradients ACCUMULATE (dw += ..., dgamma += ...), so zeroing
 *     the gradients of a step is one memset;
 *   - every op returns 0, or -1 with a message in err; none allocates in
 *     the training step except through the backend's own planned workspace
 *     (a convolution plans its primitive and grows that workspace the first
 *     time its shape appears, so the first step is the slow one); alloc is
 *     for planning, before the first step;
 *   - outputs must not alias inputs, except where an op says so;
 *   - a backend is used by one thread at a time.
 *
 * Half precision (the road to --amp on GPUs, amp.h): memory is untyped, so
 * a half buffer is device memory from alloc holding uint16_t bit patterns,
 * two bytes a value, float16 (IEEE binary16) or bfloat16 as the op that
 * writes or reads it says in its name. The casts (float_to_fp16 and back,
 * float_to_bf16 and back) take flat (pointer, count) arrays, as
 * images_to_float takes its bytes; struct tr_tensor stays float32. When
 * ops take half NCHW tensors, they get their own view type (uint16_t data
 * and a shape) rather than a dtype field on tr_tensor, so a float op handed
 * half data is a compile error, not a run-time check in every op.
 *
 * A tutorial in eight lines:
 *   struct tr_backend *be;
 *   tr_backend_create("cpu", threads, &be, &err);
 *   be->ops->alloc(be, bytes_x, (void **)&x.data, &err);  // and w, y
 *   be->ops->upload(be, x.data, host_x, bytes_x, &err);
 *   be->ops->conv_forward(be, &conv, &x, w, NULL, &y, &err);
 *   be->ops->download(be, host_y, y.data, bytes_y, &err);
 *   be->ops->free(be, x.data);                             // and w, y
 *   tr_backend_destroy(be);
 * (Batches that stream in use host_alloc'ed buffers, upload_async and
 * upload_wait instead of upload; see the memory ops.)
 */
#ifndef TR_OPS_H
#define TR_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "formula.h"
#include "ut.h"

struct tr_shape {
	int n, c, h, w;
};

static inline size_t tr_shape_numel(struct tr_shape s)
{
	return (size_t)s.n * (size_t)s.c * (size_t)s.h * (size_t)s.w;
}

/* A view of float32 NCHW data owned elsewhere. */
struct tr_tensor {
	float *data;
	struct tr_shape shape;
};

/* A 2-D convolution, groups = 1, square kernel, dilation 1. */
struct tr_conv {
	int cin, cout, k, stride, pad;
};

/* Output shape of a convolution applied to in (PyTorch: floor((h + 2 pad - k) / stride) + 1). */
struct tr_shape tr_conv_out_shape(const struct tr_conv *conv, struct tr_shape in);

/*
 * One level of YOLOv5's Detect at inference: x [n, na * no, h, w] is the
 * level's 1x1 convolution output, no = nc + 5. Decoding writes rows
 * [row0, row0 + na * h * w) of out [n, rows, no], row row0 + (a * h + y) * w
 * + x for anchor a at cell (y, x), as YOLOv5 v7.0's Detect.forward in eval
 * mode: s = sigmoid(everything); box x, y = (2 s + cell - 0.5) * stride; box
 * w, h = (2 s)^2 * (anchor * stride), in pixels; objectness and classes = s.
 */
struct tr_detect_level {
	int na, no;
	const float *anchors; /* [na][2]: anchor width, height in grid units, device memory */
	float stride;
	int rows, row0;
};

struct tr_backend;

struct tr_ops {
	const char *name;
	/*
	 * Memory. A pointer from alloc is DEVICE memory: only ops read or write
	 * it, host code moves data in and out with upload and download (on the
	 * CPU backend device memory is host memory and upload/download are
	 * memcpy, but code that must also run on a GPU does not rely on that).
	 * Every tensor and parameter pointer passed to an op below is device
	 * memory unless the op says otherwise. alloc returns 64-byte aligned
	 * memory of unspecified contents (bytes 0 still gives a pointer to
	 * free); free takes NULL. memset sets bytes at dst to the byte value.
	 * upload returns once src_host may be reused, download once dst_host
	 * holds the data; sync waits until all work given to the backend has
	 * finished.
	 */
	int (*alloc)(struct tr_backend *b, size_t bytes, void **out, struct ut_err *err);
	void (*free)(struct tr_backend *b, void *ptr);
	int (*memset)(struct tr_backend *b, void *dst, int value, size_t bytes, struct ut_err *err);
	int (*upload)(struct tr_backend *b, void *dst_dev, const void *src_host, size_t bytes,
		      struct ut_err *err);
	int (*download)(struct tr_backend *b, void *dst_host, const void *src_dev, size_t bytes,
			struct ut_err *err);
	int (*sync)(struct tr_backend *b, struct ut_err *err);
	/*
	 * Pinned host memory and asynchronous uploads, so a batch's copy to
	 * the device overlaps the compute of the batch before it (YOLOv5's
	 * pin_memory=True with non_blocking copies).
	 *
	 * host_alloc returns 64-byte aligned HOST memory of unspecified
	 * contents that upload_async can copy from without staging
	 * (cudaHostAlloc on a GPU, page-locked; plain memory on the CPU
	 * backend); host code reads and writes it as any memory. host_free
	 * takes NULL. Pinned memory is scarce: allocate a few buffers once.
	 *
	 * upload_async queues the copy of bytes from src_pinned (host_alloc
	 * memory; other host memory works but may not overlap) to dst_dev
	 * on the backend's copy stream and may return before it is done.
	 * The copy starts only after every op given before the most recent
	 * upload_wait has finished (so dst_dev may be memory that those ops
	 * read: two device buffers filled in turn, each waited on once
	 * before its reader, never see a copy overtake the reader of the
	 * batch before); copies run in the order given.
	 *
	 * upload_wait orders, without blocking the host: every op given after
	 * it sees the data of every upload_async given before it. That is
	 * the only way ops see it: an op given before upload_wait may read
	 * dst_dev before, during or after the copy (stale data), and so may
	 * download.
	 *
	 * Reuse of src_pinned: the host may rewrite or free it only once an
	 * upload_wait given after the upload_async, and then a sync or a
	 * download, have returned (they wait for the copy); before that the
	 * copy may still read it and carry the new bytes.
	 *
	 * The CPU backend copies at once (upload_async is memcpy, upload_wait
	 * does nothing), which satisfies these rules trivially; the emulated
	 * CUDA backend defers each copy to the next upload_wait or sync, so a
	 * caller that breaks a rule reads stale or later data in the tests.
	 */
	int (*host_alloc)(struct tr_backend *b, size_t bytes, void **out, struct ut_err *err);
	void (*host_free)(struct tr_backend *b, void *ptr);
	int (*upload_async)(struct tr_backend *b, void *dst_dev, const void *src_pinned,
			    size_t bytes, struct ut_err *err);
	int (*upload_wait)(struct tr_backend *b, struct ut_err *err);
	/* y[n,cout,oh,ow] = conv(x, w[cout,cin,k,k]) + bias[cout] (bias may be NULL) */
	int (*conv_forward)(struct tr_backend *b, const struct tr_conv *conv,
			    const struct tr_tensor *x, const float *w, const float *bias,
			    struct tr_tensor *y, struct ut_err *err);
	/* dx = conv_transpose(dy, w) */
	int (*conv_backward_data)(struct tr_backend *b, const struct tr_conv *conv,
				  const struct tr_tensor *dy, const float *w, struct tr_tensor *dx,
				  struct ut_err *err);
	/* dw += corr(x, dy); dbias += sum(dy) over n, h, w (dbias may be NULL) */
	int (*conv_backward_filter)(struct tr_backend *b, const struct tr_conv *conv,
				    const struct tr_tensor *x, const struct tr_tensor *dy,
				    float *dw, float *dbias, struct ut_err *err);
	/*
	 * Train-mode batch norm over (n, h, w) per channel: y = gamma * xhat +
	 * beta with batch statistics; saves mean and 1/sqrt(var + eps) for the
	 * backward pass; updates running_mean/var with momentum (PyTorch's
	 * convention: r = (1 - m) r + m * batch, running_var from the unbiased
	 * batch variance). Needs n * h * w >= 2, as PyTorch does.
	 */
	int (*bn_forward_train)(struct tr_backend *b, const struct tr_tensor *x, const float *gamma,
				const float *beta, float eps, float momentum, float *running_mean,
				float *running_var, float *save_mean, float *save_invstd,
				struct tr_tensor *y, struct ut_err *err);
	/* Eval-mode batch norm with the running statistics. */
	int (*bn_forward_eval)(struct tr_backend *b, const struct tr_tensor *x, const float *gamma,
			       const float *beta, float eps, const float *running_mean,
			       const float *running_var, struct tr_tensor *y, struct ut_err *err);
	/* dx = ..., dgamma += ..., dbeta += ... (train-mode statistics); dx may alias dy */
	int (*bn_backward)(struct tr_backend *b, const struct tr_tensor *x,
			   const struct tr_tensor *dy, const float *gamma, const float *save_mean,
			   const float *save_invstd, struct tr_tensor *dx, float *dgamma,
			   float *dbeta, struct ut_err *err);
	/*
	 * SyncBatchNorm's per-element passes (trainer/nn/syncbn.c), which
	 * all-reduces the sums and folds the coefficients between them.
	 * bn_channel_sums, per channel c of x [n, C, h, w], in double into sums
	 * [2 * C]: without dy (NULL), sums[c] = sum x and sums[C + c] = sum (x -
	 * mean[c])^2; with dy (x's shape), sums[c] = sum dy and sums[C + c] =
	 * sum dy (x - mean[c]). mean [C] is doubles, sums ASSIGNED; the CPU adds
	 * in index order (n, then h * w), another backend may round the sums
	 * differently.
	 */
	int (*bn_channel_sums)(struct tr_backend *b, const struct tr_tensor *x,
			       const struct tr_tensor *dy, const double *mean, double *sums,
			       struct ut_err *err);
	/*
	 * out = coef[c] * dy + coef[C + c] * x + coef[2C + c] per channel c of x
	 * [n, C, h, w] (BN's dx folded), or without dy (NULL) out = x * coef[C +
	 * c] + coef[2C + c] (BN's y folded); coef [3 * C] floats. out may alias
	 * x or dy.
	 */
	int (*bn_channel_affine)(struct tr_backend *b, const struct tr_tensor *x,
				 const struct tr_tensor *dy, const float *coef,
				 struct tr_tensor *out, struct ut_err *err);
	/* y = x * sigmoid(x); dx = dy * d silu(x) / dx; y may alias x, dx may alias dy */
	int (*silu_forward)(struct tr_backend *b, const struct tr_tensor *x, struct tr_tensor *y,
			    struct ut_err *err);
	int (*silu_backward)(struct tr_backend *b, const struct tr_tensor *x,
			     const struct tr_tensor *dy, struct tr_tensor *dx, struct ut_err *err);
	/*
	 * max pool k x k (k odd), stride 1, pad k/2 with -inf (SPPF uses k = 5);
	 * backward routes dy to the argmax, the first maximum in row-major window
	 * order on ties, as PyTorch's CPU kernel does. y is the forward's output
	 * (cuDNN's pooling backward takes it; the CPU finds the argmax in x).
	 */
	int (*maxpool_forward)(struct tr_backend *b, int k, const struct tr_tensor *x,
			       struct tr_tensor *y, struct ut_err *err);
	int (*maxpool_backward)(struct tr_backend *b, int k, const struct tr_tensor *x,
				const struct tr_tensor *y, const struct tr_tensor *dy,
				struct tr_tensor *dx, struct ut_err *err);
	/* nearest-neighbour 2x upsample and its backward (sum of the 4 copies) */
	int (*upsample2x_forward)(struct tr_backend *b, const struct tr_tensor *x,
				  struct tr_tensor *y, struct ut_err *err);
	int (*upsample2x_backward)(struct tr_backend *b, const struct tr_tensor *dy,
				   struct tr_tensor *dx, struct ut_err *err);
	/* y = concat(xs[0..count), channels); backward splits dy into dxs */
	int (*concat_forward)(struct tr_backend *b, const struct tr_tensor *const *xs, int count,
			      struct tr_tensor *y, struct ut_err *err);
	int (*concat_backward)(struct tr_backend *b, const struct tr_tensor *dy,
			       struct tr_tensor *const *dxs, int count, struct ut_err *err);
	/*
	 * y = a + x (residual); its backward is the identity on both inputs. y
	 * may alias a or x, so it also sums the gradients of a tensor used twice.
	 */
	int (*add_forward)(struct tr_backend *b, const struct tr_tensor *a,
			   const struct tr_tensor *x, struct tr_tensor *y, struct ut_err *err);
	/*
	 * Detect's layout of one level: raw [n, na * no, h, w], the level's 1x1
	 * conv output, to out [n, na, h, w, no] (YOLOv5's view + permute), and
	 * back for the gradient: dout [n, na, h, w, no] to draw [n, na * no, h, w].
	 */
	int (*detect_permute_forward)(struct tr_backend *b, int na, const struct tr_tensor *raw,
				      float *out, struct ut_err *err);
	int (*detect_permute_backward)(struct tr_backend *b, int na, const float *dout,
				       struct tr_tensor *draw, struct ut_err *err);
	/* Detect's eval-mode decode of one output level (inference only, no backward). */
	int (*detect_decode)(struct tr_backend *b, const struct tr_detect_level *level,
			     const struct tr_tensor *x, float *out, struct ut_err *err);
	/*
	 * The optimizer over flat float arrays (optim.h makes the scalars). One
	 * step on the n floats of a tensor: per element tr_f_sgd_update
	 * (slot0 the momentum buffer; slot1 unused, may be NULL) or
	 * tr_f_adam_update (slot0 exp_avg, slot1 exp_avg_sq) of formula.h.
	 */
	int (*optim_update)(struct tr_backend *b, const struct tr_f_optim *step, float *param,
			    const float *grad, float *slot0, float *slot1, size_t n,
			    struct ut_err *err);
	/*
	 * The loss scaler's unscale_ (amp.h, torch's
	 * _amp_foreach_non_finite_check_and_unscale_): x[k] =
	 * tr_f_amp_unscale(x[k], inv_scale) over n floats (formula.h: every
	 * value multiplied, none when inv_scale is exactly 1), and *found_inf
	 * (host) = 1 when any x[k] was inf or nan before, else 0. inv_scale is
	 * positive and finite. A backend reduces the flag without atomics; the
	 * values are the CPU's bit for bit.
	 */
	int (*amp_unscale)(struct tr_backend *b, float *x, float inv_scale, size_t n,
			   int *found_inf, struct ut_err *err);
	/*
	 * *out (host) = the sum of x[k]^2 over n floats in double (gradient-norm
	 * clipping: the CPU adds in index order, another backend may round the
	 * sum differently).
	 */
	int (*sum_squares)(struct tr_backend *b, const float *x, size_t n, double *out,
			   struct ut_err *err);
	/* x[k] *= factor over n floats */
	int (*scale)(struct tr_backend *b, float *x, float factor, size_t n, struct ut_err *err);
	/* ema[k] = tr_f_ema_update(ema[k], model[k], keep, take) over n floats (ModelEMA) */
	int (*ema_update)(struct tr_backend *b, float *ema, const float *model, float keep,
			  float take, size_t n, struct ut_err *err);
	/*
	 * The loss's dense part on one level's outputs pred [cells, width] (width
	 * = nc + 5, YOLOv5's [n, na, ny, nx, no] flattened): *obj_sum (host) =
	 * the sum in double, in cell order, of tr_f_obj_cell over every cell,
	 * which also assigns every gradient row when grad is not NULL. The loss
	 * then corrects the few matched cells itself (tr_loss_compute_on).
	 */
	int (*loss_obj_dense)(struct tr_backend *b, const struct tr_f_bce *bce, double scale,
			      const float *pred, float *grad, size_t cells, int width,
			      double *obj_sum, struct ut_err *err);
	/*
	 * Bilinear resize (PyTorch's align_corners=False, --multi-scale): y [n,
	 * c, oh, ow] from x [n, c, ih, iw], each value tr_f_bilinear at the
	 * sources of tr_f_bilinear_source (formula.h).
	 */
	int (*resize_bilinear)(struct tr_backend *b, const struct tr_tensor *x, struct tr_tensor *y,
			       struct ut_err *err);
	/*
	 * --quad's collate_fn4 images: out [n / 4, c, 2h, 2w] from a batch's
	 * bytes and their floats / 255, both [n, c, h, w] (images->shape). Quad q
	 * is image 4q upsampled 2x when upsample[q] (a host array): bilinear on
	 * its bytes, truncated to a byte as .type(uint8) does, then / 255; else
	 * the floats of images 4q .. 4q + 3 tiled, the first top left, the second
	 * below it, the third top right, the fourth below that.
	 */
	int (*quad_collate)(struct tr_backend *b, const uint8_t *bytes,
			    const struct tr_tensor *images, const uint8_t *upsample, float *out,
			    struct ut_err *err);
	/* y[k] = tr_f_u8_to_float(x[k]) = x[k] / 255 over n values (the loader's bytes) */
	int (*images_to_float)(struct tr_backend *b, const uint8_t *x, float *y, size_t n,
			       struct ut_err *err);
	/* x[k] = tr_f_round_to_half(x[k]) over n floats (model.half().float()) */
	int (*round_half)(struct tr_backend *b, float *x, size_t n, struct ut_err *err);
	/*
	 * Half-precision casts over n values (formula.h, torch's CPU casts bit
	 * for bit): float_to_fp16 y[k] = tr_f_fp16_from_float(x[k]) (x.half(),
	 * round to nearest even), fp16_to_float y[k] = tr_f_fp16_to_float(x[k])
	 * (exact), and the same for bfloat16. y must not overlap x; x and y may
	 * be NULL when n is 0.
	 */
	int (*float_to_fp16)(struct tr_backend *b, const float *x, uint16_t *y, size_t n,
			     struct ut_err *err);
	int (*fp16_to_float)(struct tr_backend *b, const uint16_t *x, float *y, size_t n,
			     struct ut_err *err);
	int (*float_to_bf16)(struct tr_backend *b, const float *x, uint16_t *y, size_t n,
			     struct ut_err *err);
	int (*bf16_to_float)(struct tr_backend *b, const uint16_t *x, float *y, size_t n,
			     struct ut_err *err);
};

/* A backend: its op table and private state behind an opaque pointer. */
struct tr_backend {
	const struct tr_ops *ops;
	void *state;
	void (*destroy)(struct tr_backend *b);
};

/* The CPU backend (oneDNN for convolutions, plain C + OpenMP for the rest). */
int tr_cpu_backend_create(int threads, struct tr_backend **out, struct ut_err *err);
void tr_backend_destroy(struct tr_backend *b);

/*
 * The backend of a --device value: "" or "cpu" the CPU backend with
 * `threads` threads; GPU ids are refused in a build without CUDA, with one
 * line naming CUDA. tr_backend_check_device only checks (before anything
 * is written).
 */
int tr_backend_check_device(const char *device, struct ut_err *err);
int tr_backend_create(const char *device, int threads, struct tr_backend **out, struct ut_err *err);

#endif
