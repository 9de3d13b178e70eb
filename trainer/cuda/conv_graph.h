/*
 * conv_graph.h - the CUDA backend's convolutions through cuDNN 9's graph API
 * (the backend-descriptor C calls of cudnn_graph.h: create, set attributes,
 * finalize, execute), not the deprecated cudnnConvolutionForward family.
 *
 * One 2-D convolution of struct tr_conv (groups 1, dilation 1, square
 * kernel) becomes, for each direction, a graph of one operation:
 *   forward          y[n, cout, oh, ow]  = conv(x[n, cin, h, w], w[cout, cin, k, k])
 *   backward data    dx[n, cin, h, w]    = conv_transpose(dy[n, cout, oh, ow], w)
 *   backward filter  dw[cout, cin, k, k] = corr(x, dy)  (+= for fp32, see below)
 * with I/O in fp32, fp16 or bf16 and fp32 compute (torch.cuda.amp's
 * convolutions: half inputs, float accumulation).
 *
 * A graph is built and its operation graph finalized on the host alone: no
 * handle, no device (so every shape, layout and type can be checked on a
 * machine without a GPU; a wrong output shape fails finalize with
 * CUDNN_STATUS_BAD_PARAM). Planning (engine heuristics, an execution plan)
 * and execution need a cudnnHandle_t on a GPU; without one they fail with
 * one line naming cuDNN and its status.
 *
 * struct tr_cuda_convs is the plan cache the backend owns (no global
 * state): one entry per (direction, conv, input shape, dtype, layout), so
 * each shape is built and planned once, and ONE device workspace sized to
 * the largest plan's need, shared by every layer (darknet's idea). The
 * workspace grows, with cudaMalloc, only when a new shape's plan needs
 * more, so after the first step nothing is allocated.
 *
 * Bias is separate: the forward graph has no bias and the backward-filter
 * graph no dbias; the backend adds bias and sums dy over (n, h, w) with
 * its own kernels (YOLOv5's Conv blocks have no bias; only Detect's three
 * 1x1 heads do).
 *
 * A tutorial in five lines:
 *   struct tr_cuda_convs convs;
 *   tr_cuda_convs_init(&convs);
 *   tr_cuda_conv_forward(&convs, handle, &(struct tr_cuda_conv_key){TR_CUDA_CONV_FORWARD,
 *                        conv, x_shape, TR_CUDA_FP16, TR_CUDA_NCHW}, x, w, y, &err);
 *   tr_cuda_convs_release(&convs);
 */
#ifndef TR_CUDA_CONV_GRAPH_H
#define TR_CUDA_CONV_GRAPH_H

#include <stddef.h>
#include <stdint.h>

#include <cudnn.h>

#include "ops.h"
#include "ut.h"

enum tr_cuda_conv_kind {
	TR_CUDA_CONV_FORWARD,
	TR_CUDA_CONV_BACKWARD_DATA,
	TR_CUDA_CONV_BACKWARD_FILTER,
};

/* The I/O type of x, w, y (and their gradients); compute is always fp32. */
enum tr_cuda_dtype {
	TR_CUDA_FP32,
	TR_CUDA_FP16,
	TR_CUDA_BF16,
};

/*
 * Memory layout of the activations and the weight. cuDNN's dimensions are
 * always (n, c, h, w) and (cout, cin, k, k); the layout is only the strides.
 *   NCHW: contiguous NCHW activations and [cout][cin][k][k] weights, what
 *         ops.h and the CPU backend use, so tensors cross between the
 *         backends without a transpose. The default.
 *   NHWC: channels-last activations and [cout][k][k][cin] weights. Tensor
 *         cores read this natively in fp16/bf16 (cuDNN's NCHW half engines
 *         transpose internally or pick slower kernels), so it is the layout
 *         to measure for AMP; choosing it also means the other kernels and
 *         the host mirror follow channels-last.
 */
enum tr_cuda_layout {
	TR_CUDA_NCHW,
	TR_CUDA_NHWC,
};

/*
 * What a graph and its plan are built for. `in` is the convolution's
 * input shape (x for forward and backward filter, dx for backward data);
 * in.c must equal conv.cin. Keys are compared field by field, so clear
 * padding is not needed.
 */
struct tr_cuda_conv_key {
	enum tr_cuda_conv_kind kind;
	struct tr_conv conv;
	struct tr_shape in;
	enum tr_cuda_dtype dtype;
	enum tr_cuda_layout layout;
};

/* The tensors of a graph, by the unique ids of its variant pack. */
enum {
	TR_CUDA_UID_X = 1, /* x, or dx for backward data */
	TR_CUDA_UID_W = 2, /* w, or dw for backward filter */
	TR_CUDA_UID_Y = 3, /* y, or dy for the backwards */
	TR_CUDA_CONV_TENSORS = 3,
};

/* Byte alignment promised to cuDNN for every data pointer (cudaMalloc gives 256). */
#define TR_CUDA_CONV_ALIGN 16

/*
 * One finalized operation graph and the descriptors it references (kept
 * alive with it, destroyed together). status is the cuDNN status of the
 * last call that failed while building it (CUDNN_STATUS_SUCCESS otherwise),
 * so a caller can tell BAD_PARAM from NOT_SUPPORTED.
 */
struct tr_cuda_conv_graph {
	struct tr_cuda_conv_key key;
	struct tr_shape out; /* y for forward and backward filter, dy for backward data */
	cudnnBackendDescriptor_t tensors[TR_CUDA_CONV_TENSORS]; /* x, w, y */
	cudnnBackendDescriptor_t conv_desc, op, graph;
	cudnnStatus_t status;
};

/*
 * Build and finalize the operation graph of key, with the output shape
 * tr_conv_out_shape gives. No handle and no device are needed. Returns 0,
 * or -1 with one line naming cuDNN, the call, its status string and the
 * source line in err (g->status holds the status; g holds no descriptor).
 * Release a built graph with tr_cuda_conv_graph_release.
 */
int tr_cuda_conv_graph_build(const struct tr_cuda_conv_key *key, struct tr_cuda_conv_graph *g,
			     struct ut_err *err);
/*
 * The same with the output shape given (y, or dy for backward data): for
 * tests, where a shape that disagrees with the convolution must fail
 * finalize (CUDNN_STATUS_BAD_PARAM).
 */
int tr_cuda_conv_graph_build_shaped(const struct tr_cuda_conv_key *key, struct tr_shape out,
				    struct tr_cuda_conv_graph *g, struct ut_err *err);
/* Destroy g's descriptors (any may be NULL); g is left empty. */
void tr_cuda_conv_graph_release(struct tr_cuda_conv_graph *g);

/* One cache entry: a finalized graph, and its execution plan once planned. */
struct tr_cuda_conv_entry {
	struct tr_cuda_conv_graph graph;
	cudnnBackendDescriptor_t engine_config, plan; /* NULL until planned on a GPU */
	int64_t workspace_bytes;		      /* the plan's need */
};

/*
 * The plan cache and the shared workspace, owned by the backend. An open
 * addressing table of entries (power-of-two capacity, at most half full).
 */
struct tr_cuda_convs {
	/*
	 * Which engines planning accepts, PyTorch's torch.backends.cudnn flags:
	 * deterministic (1: YOLOv5 v7.0's init_seeds(deterministic=True) sets
	 * cudnn.deterministic) rejects engines cuDNN notes as nondeterministic;
	 * allow_tf32 (0, so fp32 matches the CPU backend within 1e-5; PyTorch's
	 * own default for convolutions is 1) admits tensor-core (TF32) engines
	 * for fp32 I/O. Engines that down-convert inputs or reduce in less than
	 * fp32 are never taken: the graphs promise fp32 compute.
	 */
	int deterministic, allow_tf32;
	struct tr_cuda_conv_entry *entries;
	size_t capacity, count;
	size_t graphs_built, plans_built; /* counters for tests and logs */
	void *workspace;		  /* device memory, cudaMalloc'ed */
	size_t workspace_bytes;		  /* its size: the largest plan's need */
};

/* An empty cache (allocates nothing), deterministic, no TF32. */
void tr_cuda_convs_init(struct tr_cuda_convs *convs);
/* Destroy every graph and plan, free the table and the device workspace. */
void tr_cuda_convs_release(struct tr_cuda_convs *convs);

/*
 * The entry of key with its operation graph finalized: built the first
 * time key is seen, found afterwards. Needs no handle. *out points into
 * the cache (valid until the next insertion). Returns 0 or -1 with err.
 */
int tr_cuda_convs_graph(struct tr_cuda_convs *convs, const struct tr_cuda_conv_key *key,
			struct tr_cuda_conv_entry **out, struct ut_err *err);

/*
 * Whether a finalized engine descriptor passes convs's policy for dtype
 * I/O (its numerical notes, see struct tr_cuda_convs): *accepted 1 or 0.
 * Needs no device. Returns 0, or -1 with err when the notes cannot be read.
 */
int tr_cuda_conv_engine_accepted(const struct tr_cuda_convs *convs, enum tr_cuda_dtype dtype,
				 cudnnBackendDescriptor_t engine, int *accepted,
				 struct ut_err *err);

/*
 * The entry of key, planned: operation graph, engine heuristics (mode A),
 * the first engine configuration that passes the policy and whose
 * execution plan finalizes, and the
 * shared workspace grown to the plan's need if it is larger. Done once per
 * key; later calls only look up. Needs a handle on a GPU; without a device
 * the heuristics or the plan fail and it returns -1 with one line naming
 * cuDNN and the status.
 */
int tr_cuda_convs_plan(struct tr_cuda_convs *convs, cudnnHandle_t handle,
		       const struct tr_cuda_conv_key *key, struct tr_cuda_conv_entry **out,
		       struct ut_err *err);

/*
 * Run key's convolution (planning it first if needed) on the stream of
 * handle, with the shared workspace. Device pointers, TR_CUDA_CONV_ALIGN
 * aligned, holding key->dtype in key->layout:
 *   forward:         y = conv(x, w)             (key->in is x's shape)
 *   backward data:   dx = conv_transpose(dy, w) (key->in is dx's shape)
 *   backward filter: dw = corr(x, dy), += for fp32 (ops.h: parameter
 *                    gradients accumulate); for fp16/bf16 it assigns dw, a
 *                    half copy the backend adds to the fp32 master
 *                    gradient, as autocast's weight cast does.
 * key->kind is ignored: each function sets its own direction. Returns 0
 * or -1 with one line naming cuDNN and the status.
 */
int tr_cuda_conv_forward(struct tr_cuda_convs *convs, cudnnHandle_t handle,
			 const struct tr_cuda_conv_key *key, const void *x, const void *w, void *y,
			 struct ut_err *err);
int tr_cuda_conv_backward_data(struct tr_cuda_convs *convs, cudnnHandle_t handle,
			       const struct tr_cuda_conv_key *key, const void *dy, const void *w,
			       void *dx, struct ut_err *err);
int tr_cuda_conv_backward_filter(struct tr_cuda_convs *convs, cudnnHandle_t handle,
				 const struct tr_cuda_conv_key *key, const void *x, const void *dy,
				 void *dw, struct ut_err *err);

/* "forward", "backward data", "backward filter"; "fp32", "fp16", "bf16"; "NCHW", "NHWC". */
const char *tr_cuda_conv_kind_name(enum tr_cuda_conv_kind kind);
const char *tr_cuda_dtype_name(enum tr_cuda_dtype dtype);
const char *tr_cuda_layout_name(enum tr_cuda_layout layout);

#endif
