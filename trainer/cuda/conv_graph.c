/*
 * conv_graph.c - convolutions as cuDNN 9 graphs (backend descriptors from
 * plain C) and the plan cache with its shared workspace; see conv_graph.h.
 *
 * Every cuDNN and CUDA runtime call goes through CUDNN_CHECK / CUDA_CHECK,
 * which put one line in err naming the call, its status string and this
 * file's line, then jump to the function's `fail:` label, where whatever
 * was created is destroyed.
 */
#include "conv_graph.h"

#include <stdlib.h>
#include <string.h>

#include <cuda_runtime.h>

/* Record a failed cuDNN call in err (and *keep); always -1. */
static int cudnn_fail(struct ut_err *err, cudnnStatus_t *keep, cudnnStatus_t status,
		      const char *call, int line)
{
	if (keep)
		*keep = status;
	return ut_err_set(err, "cuDNN: %s: %s (%s:%d)", call, cudnnGetErrorString(status), __FILE__,
			  line);
}

/* In a function with `struct ut_err *err`, `cudnnStatus_t *keep` (may be NULL) and `fail:`. */
#define CUDNN_CHECK(call)                                                                          \
	do {                                                                                       \
		cudnnStatus_t status_ = (call);                                                    \
		if (status_ != CUDNN_STATUS_SUCCESS) {                                             \
			cudnn_fail(err, keep, status_, #call, __LINE__);                           \
			goto fail;                                                                 \
		}                                                                                  \
	} while (0)

#define CUDA_CHECK(call)                                                                           \
	do {                                                                                       \
		cudaError_t cuda_status_ = (call);                                                 \
		if (cuda_status_ != cudaSuccess) {                                                 \
			ut_err_set(err, "CUDA: %s: %s (%s:%d)", #call,                             \
				   cudaGetErrorString(cuda_status_), __FILE__, __LINE__);          \
			goto fail;                                                                 \
		}                                                                                  \
	} while (0)

/* Engine configurations the heuristics are asked for; the first that plans wins. */
#define HEUR_MAX_CONFIGS 8

const char *tr_cuda_conv_kind_name(enum tr_cuda_conv_kind kind)
{
	static const char *const names[] = {"forward", "backward data", "backward filter"};
	return (unsigned)kind < 3 ? names[kind] : "?";
}

const char *tr_cuda_dtype_name(enum tr_cuda_dtype dtype)
{
	static const char *const names[] = {"fp32", "fp16", "bf16"};
	return (unsigned)dtype < 3 ? names[dtype] : "?";
}

const char *tr_cuda_layout_name(enum tr_cuda_layout layout)
{
	static const char *const names[] = {"NCHW", "NHWC"};
	return (unsigned)layout < 2 ? names[layout] : "?";
}

static cudnnDataType_t cudnn_type(enum tr_cuda_dtype dtype)
{
	static const cudnnDataType_t types[] = {CUDNN_DATA_FLOAT, CUDNN_DATA_HALF,
						CUDNN_DATA_BFLOAT16};
	return types[dtype];
}

/*
 * Strides of dims (n, c, h, w) in a layout: NCHW (c h w, h w, w, 1), or
 * channels-last NHWC (h w c, 1, w c, c). The weight [cout, cin, k, k] uses
 * the same rule (KCRS or KRSC).
 */
static void layout_strides(enum tr_cuda_layout layout, const int64_t dims[4], int64_t strides[4])
{
	if (layout == TR_CUDA_NHWC) {
		strides[1] = 1;
		strides[3] = dims[1];
		strides[2] = dims[3] * dims[1];
		strides[0] = dims[2] * dims[3] * dims[1];
	} else {
		strides[3] = 1;
		strides[2] = dims[3];
		strides[1] = dims[2] * dims[3];
		strides[0] = dims[1] * dims[2] * dims[3];
	}
}

static int make_tensor(cudnnBackendDescriptor_t *out, int64_t uid, struct tr_shape shape,
		       const struct tr_cuda_conv_key *key, cudnnStatus_t *keep, struct ut_err *err)
{
	int64_t dims[4] = {shape.n, shape.c, shape.h, shape.w}, strides[4];
	int64_t align = TR_CUDA_CONV_ALIGN;
	cudnnDataType_t type = cudnn_type(key->dtype);
	cudnnBackendDescriptor_t t = NULL;

	layout_strides(key->layout, dims, strides);
	CUDNN_CHECK(cudnnBackendCreateDescriptor(CUDNN_BACKEND_TENSOR_DESCRIPTOR, &t));
	CUDNN_CHECK(cudnnBackendSetAttribute(t, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE,
					     1, &type));
	CUDNN_CHECK(
	    cudnnBackendSetAttribute(t, CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 4, dims));
	CUDNN_CHECK(
	    cudnnBackendSetAttribute(t, CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 4, strides));
	CUDNN_CHECK(
	    cudnnBackendSetAttribute(t, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid));
	CUDNN_CHECK(cudnnBackendSetAttribute(t, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64,
					     1, &align));
	CUDNN_CHECK(cudnnBackendFinalize(t));
	*out = t;
	return 0;
fail:
	if (t)
		cudnnBackendDestroyDescriptor(t);
	return -1;
}

/* Cross-correlation (PyTorch's Conv2d), fp32 compute, symmetric padding, dilation 1. */
static int make_conv_desc(cudnnBackendDescriptor_t *out, const struct tr_conv *conv,
			  cudnnStatus_t *keep, struct ut_err *err)
{
	cudnnDataType_t compute = CUDNN_DATA_FLOAT;
	cudnnConvolutionMode_t mode = CUDNN_CROSS_CORRELATION;
	int64_t spatial = 2, dilation[2] = {1, 1}, stride[2] = {conv->stride, conv->stride};
	int64_t pad[2] = {conv->pad, conv->pad};
	cudnnBackendDescriptor_t c = NULL;

	CUDNN_CHECK(cudnnBackendCreateDescriptor(CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR, &c));
	CUDNN_CHECK(cudnnBackendSetAttribute(c, CUDNN_ATTR_CONVOLUTION_COMP_TYPE,
					     CUDNN_TYPE_DATA_TYPE, 1, &compute));
	CUDNN_CHECK(cudnnBackendSetAttribute(c, CUDNN_ATTR_CONVOLUTION_CONV_MODE,
					     CUDNN_TYPE_CONVOLUTION_MODE, 1, &mode));
	CUDNN_CHECK(cudnnBackendSetAttribute(c, CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS,
					     CUDNN_TYPE_INT64, 1, &spatial));
	CUDNN_CHECK(cudnnBackendSetAttribute(c, CUDNN_ATTR_CONVOLUTION_DILATIONS, CUDNN_TYPE_INT64,
					     2, dilation));
	CUDNN_CHECK(cudnnBackendSetAttribute(c, CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES,
					     CUDNN_TYPE_INT64, 2, stride));
	CUDNN_CHECK(cudnnBackendSetAttribute(c, CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS,
					     CUDNN_TYPE_INT64, 2, pad));
	CUDNN_CHECK(cudnnBackendSetAttribute(c, CUDNN_ATTR_CONVOLUTION_POST_PADDINGS,
					     CUDNN_TYPE_INT64, 2, pad));
	CUDNN_CHECK(cudnnBackendFinalize(c));
	*out = c;
	return 0;
fail:
	if (c)
		cudnnBackendDestroyDescriptor(c);
	return -1;
}

/*
 * The attributes of one convolution operation, by direction: its
 * descriptor type, then alpha, beta, conv, and the x, w, y slots (dx, dw,
 * dy where the direction computes or reads a gradient).
 */
struct conv_op_attrs {
	cudnnBackendDescriptorType_t type;
	cudnnBackendAttributeName_t alpha, beta, conv, x, w, y;
};

static const struct conv_op_attrs op_attrs[] = {
    [TR_CUDA_CONV_FORWARD] = {CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR,
			      CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA,
			      CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_BETA,
			      CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_CONV_DESC,
			      CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_X,
			      CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_W,
			      CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y},
    [TR_CUDA_CONV_BACKWARD_DATA] = {CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_DATA_DESCRIPTOR,
				    CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_ALPHA,
				    CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_BETA,
				    CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_CONV_DESC,
				    CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_DX,
				    CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_W,
				    CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_DY},
    [TR_CUDA_CONV_BACKWARD_FILTER] =
	{CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_FILTER_DESCRIPTOR,
	 CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_ALPHA,
	 CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_BETA,
	 CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_CONV_DESC,
	 CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_X,
	 CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_DW,
	 CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_DY},
};

/*
 * beta of a direction: 1 (accumulate) for an fp32 weight gradient, as
 * ops.h's dw += asks; 0 (assign) everywhere else, half weight gradients
 * included (the backend adds those to the fp32 master gradient).
 */
static float op_beta(const struct tr_cuda_conv_key *key)
{
	return key->kind == TR_CUDA_CONV_BACKWARD_FILTER && key->dtype == TR_CUDA_FP32 ? 1.0f
										       : 0.0f;
}

static int make_op(struct tr_cuda_conv_graph *g, cudnnStatus_t *keep, struct ut_err *err)
{
	const struct conv_op_attrs *a = &op_attrs[g->key.kind];
	float alpha = 1.0f, beta = op_beta(&g->key);
	cudnnBackendDescriptor_t op = NULL;

	CUDNN_CHECK(cudnnBackendCreateDescriptor(a->type, &op));
	CUDNN_CHECK(cudnnBackendSetAttribute(op, a->alpha, CUDNN_TYPE_FLOAT, 1, &alpha));
	CUDNN_CHECK(cudnnBackendSetAttribute(op, a->beta, CUDNN_TYPE_FLOAT, 1, &beta));
	CUDNN_CHECK(
	    cudnnBackendSetAttribute(op, a->conv, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &g->conv_desc));
	CUDNN_CHECK(
	    cudnnBackendSetAttribute(op, a->x, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &g->tensors[0]));
	CUDNN_CHECK(
	    cudnnBackendSetAttribute(op, a->w, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &g->tensors[1]));
	CUDNN_CHECK(
	    cudnnBackendSetAttribute(op, a->y, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &g->tensors[2]));
	CUDNN_CHECK(cudnnBackendFinalize(op));
	g->op = op;
	return 0;
fail:
	if (op)
		cudnnBackendDestroyDescriptor(op);
	return -1;
}

void tr_cuda_conv_graph_release(struct tr_cuda_conv_graph *g)
{
	cudnnBackendDescriptor_t *all[] = {&g->graph,	   &g->op,	   &g->conv_desc,
					   &g->tensors[0], &g->tensors[1], &g->tensors[2]};
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		if (*all[i])
			cudnnBackendDestroyDescriptor(*all[i]);
		*all[i] = NULL;
	}
}

int tr_cuda_conv_graph_build_shaped(const struct tr_cuda_conv_key *key, struct tr_shape out,
				    struct tr_cuda_conv_graph *g, struct ut_err *err)
{
	cudnnStatus_t *keep = &g->status;
	const struct tr_conv *conv = &key->conv;
	struct tr_shape wshape = {conv->cout, conv->cin, conv->k, conv->k};

	memset(g, 0, sizeof(*g));
	g->key = *key;
	g->out = out;
	g->status = CUDNN_STATUS_SUCCESS;
	if ((unsigned)key->kind > TR_CUDA_CONV_BACKWARD_FILTER ||
	    (unsigned)key->dtype > TR_CUDA_BF16 || (unsigned)key->layout > TR_CUDA_NHWC) {
		g->status = CUDNN_STATUS_BAD_PARAM;
		return ut_err_set(err,
				  "cuDNN graph: key with an unknown direction, type or layout");
	}
	if (make_tensor(&g->tensors[0], TR_CUDA_UID_X, key->in, key, keep, err) < 0 ||
	    make_tensor(&g->tensors[1], TR_CUDA_UID_W, wshape, key, keep, err) < 0 ||
	    make_tensor(&g->tensors[2], TR_CUDA_UID_Y, out, key, keep, err) < 0 ||
	    make_conv_desc(&g->conv_desc, conv, keep, err) < 0 || make_op(g, keep, err) < 0)
		goto fail;
	/* no CUDNN_ATTR_OPERATIONGRAPH_HANDLE (deprecated in cuDNN 9): no device needed */
	CUDNN_CHECK(
	    cudnnBackendCreateDescriptor(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR, &g->graph));
	CUDNN_CHECK(cudnnBackendSetAttribute(g->graph, CUDNN_ATTR_OPERATIONGRAPH_OPS,
					     CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &g->op));
	CUDNN_CHECK(cudnnBackendFinalize(g->graph));
	return 0;
fail:
	tr_cuda_conv_graph_release(g);
	return -1;
}

int tr_cuda_conv_graph_build(const struct tr_cuda_conv_key *key, struct tr_cuda_conv_graph *g,
			     struct ut_err *err)
{
	/* forward and backward filter: x is the input; backward data: dx is, dy the output */
	return tr_cuda_conv_graph_build_shaped(key, tr_conv_out_shape(&key->conv, key->in), g, err);
}

/* ---- the plan cache ---- */

static int key_equal(const struct tr_cuda_conv_key *a, const struct tr_cuda_conv_key *b)
{
	return a->kind == b->kind && a->dtype == b->dtype && a->layout == b->layout &&
	       a->conv.cin == b->conv.cin && a->conv.cout == b->conv.cout &&
	       a->conv.k == b->conv.k && a->conv.stride == b->conv.stride &&
	       a->conv.pad == b->conv.pad && a->in.n == b->in.n && a->in.c == b->in.c &&
	       a->in.h == b->in.h && a->in.w == b->in.w;
}

/* FNV-1a over the key's fields (not its bytes: padding is not cleared). */
static uint64_t key_hash(const struct tr_cuda_conv_key *key)
{
	const int64_t fields[] = {key->kind,	  key->dtype,  key->layout,	 key->conv.cin,
				  key->conv.cout, key->conv.k, key->conv.stride, key->conv.pad,
				  key->in.n,	  key->in.c,   key->in.h,	 key->in.w};
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		h ^= (uint64_t)fields[i];
		h *= 1099511628211ull;
	}
	return h;
}

void tr_cuda_convs_init(struct tr_cuda_convs *convs)
{
	memset(convs, 0, sizeof(*convs));
	convs->deterministic = 1;
	convs->allow_tf32 = 0;
}

static void entry_release_plan(struct tr_cuda_conv_entry *e)
{
	if (e->plan)
		cudnnBackendDestroyDescriptor(e->plan);
	if (e->engine_config)
		cudnnBackendDestroyDescriptor(e->engine_config);
	e->plan = e->engine_config = NULL;
	e->workspace_bytes = 0;
}

static void entry_release(struct tr_cuda_conv_entry *e)
{
	entry_release_plan(e);
	tr_cuda_conv_graph_release(&e->graph);
}

void tr_cuda_convs_release(struct tr_cuda_convs *convs)
{
	for (size_t i = 0; i < convs->capacity; i++)
		if (convs->entries[i].graph.graph)
			entry_release(&convs->entries[i]);
	free(convs->entries);
	if (convs->workspace)
		cudaFree(convs->workspace);
	memset(convs, 0, sizeof(*convs));
}

/* The slot of key: its entry, or the empty slot where it belongs. */
static struct tr_cuda_conv_entry *slot_of(struct tr_cuda_conv_entry *entries, size_t capacity,
					  const struct tr_cuda_conv_key *key)
{
	size_t i = (size_t)key_hash(key) & (capacity - 1);
	while (entries[i].graph.graph && !key_equal(&entries[i].graph.key, key))
		i = (i + 1) & (capacity - 1);
	return &entries[i];
}

/* Double the table (16 slots at first), moving every entry. */
static int grow_table(struct tr_cuda_convs *convs, struct ut_err *err)
{
	size_t capacity = convs->capacity ? 2 * convs->capacity : 16;
	struct tr_cuda_conv_entry *entries = calloc(capacity, sizeof(*entries));
	if (!entries)
		return ut_err_set(err, "cuDNN plan cache: out of memory for %zu entries", capacity);
	for (size_t i = 0; i < convs->capacity; i++)
		if (convs->entries[i].graph.graph)
			*slot_of(entries, capacity, &convs->entries[i].graph.key) =
			    convs->entries[i];
	free(convs->entries);
	convs->entries = entries;
	convs->capacity = capacity;
	return 0;
}

int tr_cuda_convs_graph(struct tr_cuda_convs *convs, const struct tr_cuda_conv_key *key,
			struct tr_cuda_conv_entry **out, struct ut_err *err)
{
	struct tr_cuda_conv_entry *e;

	if (convs->capacity) {
		e = slot_of(convs->entries, convs->capacity, key);
		if (e->graph.graph) {
			*out = e;
			return 0;
		}
	}
	if (2 * (convs->count + 1) > convs->capacity && grow_table(convs, err) < 0)
		return -1;
	e = slot_of(convs->entries, convs->capacity, key);
	if (tr_cuda_conv_graph_build(key, &e->graph, err) < 0) {
		memset(e, 0, sizeof(*e));
		return -1;
	}
	convs->count++;
	convs->graphs_built++;
	*out = e;
	return 0;
}

int tr_cuda_conv_engine_accepted(const struct tr_cuda_convs *convs, enum tr_cuda_dtype dtype,
				 cudnnBackendDescriptor_t engine, int *accepted, struct ut_err *err)
{
	cudnnStatus_t *keep = NULL;
	cudnnBackendNumericalNote_t notes[CUDNN_NUMERICAL_NOTE_TYPE_COUNT];
	int64_t count = 0;

	*accepted = 0;
	CUDNN_CHECK(cudnnBackendGetAttribute(engine, CUDNN_ATTR_ENGINE_NUMERICAL_NOTE,
					     CUDNN_TYPE_NUMERICAL_NOTE,
					     CUDNN_NUMERICAL_NOTE_TYPE_COUNT, &count, notes));
	*accepted = 1;
	for (int64_t i = 0; i < count; i++) {
		switch (notes[i]) {
		case CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC:
			*accepted &= !convs->deterministic;
			break;
		case CUDNN_NUMERICAL_NOTE_TENSOR_CORE: /* on fp32 I/O: TF32 */
			*accepted &= dtype != TR_CUDA_FP32 || convs->allow_tf32;
			break;
		case CUDNN_NUMERICAL_NOTE_DOWN_CONVERT_INPUTS:
		case CUDNN_NUMERICAL_NOTE_REDUCED_PRECISION_REDUCTION:
			*accepted = 0; /* not the fp32 compute the graph asks for */
			break;
		default:
			break;
		}
	}
	return 0;
fail:
	return -1;
}

/* Whether the engine of a heuristics config passes the policy. */
static int config_accepted(const struct tr_cuda_convs *convs, enum tr_cuda_dtype dtype,
			   cudnnBackendDescriptor_t config, int *accepted, struct ut_err *err)
{
	cudnnStatus_t *keep = NULL;
	cudnnBackendDescriptor_t engine = NULL;
	int64_t returned = 0;
	int rc = -1;

	CUDNN_CHECK(cudnnBackendCreateDescriptor(CUDNN_BACKEND_ENGINE_DESCRIPTOR, &engine));
	CUDNN_CHECK(cudnnBackendGetAttribute(config, CUDNN_ATTR_ENGINECFG_ENGINE,
					     CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &returned, &engine));
	rc = tr_cuda_conv_engine_accepted(convs, dtype, engine, accepted, err);
fail:
	if (engine)
		cudnnBackendDestroyDescriptor(engine);
	return rc;
}

/* The execution plan of one engine config on handle's device, or NULL with err. */
static cudnnBackendDescriptor_t plan_config(cudnnBackendDescriptor_t config, cudnnHandle_t handle,
					    struct ut_err *err)
{
	cudnnStatus_t *keep = NULL;
	cudnnBackendDescriptor_t plan = NULL;

	CUDNN_CHECK(cudnnBackendCreateDescriptor(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR, &plan));
	CUDNN_CHECK(cudnnBackendSetAttribute(plan, CUDNN_ATTR_EXECUTION_PLAN_HANDLE,
					     CUDNN_TYPE_HANDLE, 1, &handle));
	CUDNN_CHECK(cudnnBackendSetAttribute(plan, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG,
					     CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &config));
	CUDNN_CHECK(cudnnBackendFinalize(plan));
	return plan;
fail:
	if (plan)
		cudnnBackendDestroyDescriptor(plan);
	return NULL;
}

/* "no engine" in err, with cuDNN's reason for the first engine it refused if it gave one. */
static void no_engine(const struct tr_cuda_conv_key *key, const char *why, int line,
		      struct ut_err *err)
{
	char detail[512] = "";
	const char *reason;
	int reason_len;

	cudnnGetLastErrorString(detail, sizeof(detail));
	reason = strstr(detail, "Reason: ");
	reason_len = reason ? (int)strcspn(reason, "\n") : 0;
	ut_err_set(err, "cuDNN: %s for the %s %s convolution %dx%d/%d %d->%d: %s%s%.*s%s (%s:%d)",
		   why, tr_cuda_dtype_name(key->dtype), tr_cuda_conv_kind_name(key->kind),
		   key->conv.k, key->conv.k, key->conv.stride, key->conv.cin, key->conv.cout,
		   cudnnGetErrorString(CUDNN_STATUS_NOT_SUPPORTED), reason ? " (" : "", reason_len,
		   reason ? reason : "", reason ? ")" : "", __FILE__, line);
}

/*
 * The heuristics' engine configurations (mode A, best first): the first
 * that passes the policy and whose execution plan finalizes on handle's
 * device becomes e's plan, with its workspace need.
 */
static int plan_entry(const struct tr_cuda_convs *convs, struct tr_cuda_conv_entry *e,
		      cudnnHandle_t handle, struct ut_err *err)
{
	cudnnStatus_t *keep = NULL;
	cudnnBackendDescriptor_t heur = NULL, configs[HEUR_MAX_CONFIGS] = {NULL};
	cudnnBackendHeurMode_t mode = CUDNN_HEUR_MODE_A;
	int64_t count = 0, returned = 0, rejected = 0;
	int rc = -1;

	CUDNN_CHECK(cudnnBackendCreateDescriptor(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR, &heur));
	CUDNN_CHECK(cudnnBackendSetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH,
					     CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &e->graph.graph));
	CUDNN_CHECK(cudnnBackendSetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE,
					     1, &mode));
	CUDNN_CHECK(cudnnBackendFinalize(heur));
	for (int i = 0; i < HEUR_MAX_CONFIGS; i++)
		CUDNN_CHECK(
		    cudnnBackendCreateDescriptor(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR, &configs[i]));
	CUDNN_CHECK(cudnnBackendGetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS,
					     CUDNN_TYPE_BACKEND_DESCRIPTOR, HEUR_MAX_CONFIGS,
					     &count, configs));
	if (count == 0) {
		no_engine(&e->graph.key, "heuristics found no engine", __LINE__, err);
		goto fail;
	}
	for (int64_t i = 0; i < count && !e->plan; i++) {
		int accepted = 0;
		if (config_accepted(convs, e->graph.key.dtype, configs[i], &accepted, err) < 0)
			goto fail;
		if (!accepted) {
			rejected++;
			continue;
		}
		/* a failed plan leaves its line in err: reported if no later engine plans */
		e->plan = plan_config(configs[i], handle, err);
		if (e->plan) {
			e->engine_config = configs[i];
			configs[i] = NULL;
		}
	}
	if (!e->plan) {
		if (rejected == count)
			no_engine(&e->graph.key,
				  "every engine the heuristics offer is nondeterministic or TF32",
				  __LINE__, err);
		goto fail;
	}
	CUDNN_CHECK(cudnnBackendGetAttribute(e->plan, CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE,
					     CUDNN_TYPE_INT64, 1, &returned, &e->workspace_bytes));
	rc = 0;
fail:
	if (rc < 0)
		entry_release_plan(e);
	for (int i = 0; i < HEUR_MAX_CONFIGS; i++)
		if (configs[i])
			cudnnBackendDestroyDescriptor(configs[i]);
	if (heur)
		cudnnBackendDestroyDescriptor(heur);
	return rc;
}

/* Grow the shared workspace to bytes if it is smaller (the old one is freed: cudaFree syncs). */
static int reserve_workspace(struct tr_cuda_convs *convs, size_t bytes, struct ut_err *err)
{
	void *workspace = NULL;

	if (bytes <= convs->workspace_bytes)
		return 0;
	if (convs->workspace) {
		CUDA_CHECK(cudaFree(convs->workspace));
		convs->workspace = NULL;
		convs->workspace_bytes = 0;
	}
	CUDA_CHECK(cudaMalloc(&workspace, bytes));
	convs->workspace = workspace;
	convs->workspace_bytes = bytes;
	return 0;
fail:
	return -1;
}

int tr_cuda_convs_plan(struct tr_cuda_convs *convs, cudnnHandle_t handle,
		       const struct tr_cuda_conv_key *key, struct tr_cuda_conv_entry **out,
		       struct ut_err *err)
{
	struct tr_cuda_conv_entry *e;

	if (tr_cuda_convs_graph(convs, key, &e, err) < 0)
		return -1;
	if (!e->plan) {
		if (plan_entry(convs, e, handle, err) < 0)
			return -1;
		convs->plans_built++;
	}
	/* a no-op once grown; checked every time so a failed cudaMalloc is retried */
	if (reserve_workspace(convs, (size_t)e->workspace_bytes, err) < 0)
		return -1;
	*out = e;
	return 0;
}

/*
 * Run key's plan with the three device pointers in uid order (x, w, y:
 * for the backwards dx or dw in the slot of what they differentiate). The
 * variant pack is a host descriptor made per call: cuDNN allocates no
 * device memory for it.
 */
static int conv_execute(struct tr_cuda_convs *convs, cudnnHandle_t handle,
			const struct tr_cuda_conv_key *key, enum tr_cuda_conv_kind kind,
			void *const pointers[TR_CUDA_CONV_TENSORS], struct ut_err *err)
{
	cudnnStatus_t *keep = NULL;
	struct tr_cuda_conv_key k = *key;
	struct tr_cuda_conv_entry *e;
	cudnnBackendDescriptor_t pack = NULL;
	int64_t uids[TR_CUDA_CONV_TENSORS] = {TR_CUDA_UID_X, TR_CUDA_UID_W, TR_CUDA_UID_Y};
	void *data[TR_CUDA_CONV_TENSORS] = {pointers[0], pointers[1], pointers[2]};
	void *workspace;
	int rc = -1;

	k.kind = kind;
	if (tr_cuda_convs_plan(convs, handle, &k, &e, err) < 0)
		return -1;
	workspace = convs->workspace;
	CUDNN_CHECK(cudnnBackendCreateDescriptor(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR, &pack));
	CUDNN_CHECK(cudnnBackendSetAttribute(pack, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS,
					     CUDNN_TYPE_INT64, TR_CUDA_CONV_TENSORS, uids));
	CUDNN_CHECK(cudnnBackendSetAttribute(pack, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS,
					     CUDNN_TYPE_VOID_PTR, TR_CUDA_CONV_TENSORS, data));
	CUDNN_CHECK(cudnnBackendSetAttribute(pack, CUDNN_ATTR_VARIANT_PACK_WORKSPACE,
					     CUDNN_TYPE_VOID_PTR, 1, &workspace));
	CUDNN_CHECK(cudnnBackendFinalize(pack));
	CUDNN_CHECK(cudnnBackendExecute(handle, e->plan, pack));
	rc = 0;
fail:
	if (pack)
		cudnnBackendDestroyDescriptor(pack);
	return rc;
}

int tr_cuda_conv_forward(struct tr_cuda_convs *convs, cudnnHandle_t handle,
			 const struct tr_cuda_conv_key *key, const void *x, const void *w, void *y,
			 struct ut_err *err)
{
	void *const pointers[] = {(void *)x, (void *)w, y};
	return conv_execute(convs, handle, key, TR_CUDA_CONV_FORWARD, pointers, err);
}

int tr_cuda_conv_backward_data(struct tr_cuda_convs *convs, cudnnHandle_t handle,
			       const struct tr_cuda_conv_key *key, const void *dy, const void *w,
			       void *dx, struct ut_err *err)
{
	void *const pointers[] = {dx, (void *)w, (void *)dy};
	return conv_execute(convs, handle, key, TR_CUDA_CONV_BACKWARD_DATA, pointers, err);
}

int tr_cuda_conv_backward_filter(struct tr_cuda_convs *convs, cudnnHandle_t handle,
				 const struct tr_cuda_conv_key *key, const void *x, const void *dy,
				 void *dw, struct ut_err *err)
{
	void *const pointers[] = {(void *)x, dw, (void *)dy};
	return conv_execute(convs, handle, key, TR_CUDA_CONV_BACKWARD_FILTER, pointers, err);
}
