/*
 * trainer/cpu/ops.c - the CPU backend, the specification of every op in
 * ops.h: convolutions through oneDNN's C API, everything else in plain C
 * with OpenMP.
 *
 * Convolution primitives are created the first time a (kind, conv, input
 * shape) appears and cached in the backend state with the memory objects and
 * reorders they need; the buffers they share (reordered tensors, oneDNN's
 * scratchpad) grow only when a new shape appears, so a steady-state training
 * step allocates nothing.
 *
 * Determinism: every reduction runs per channel (or per plane) in a fixed
 * order inside one thread, so results are bit-identical from run to run for
 * a given thread count. A backend is used by one thread at a time. The hot
 * element-wise loops are vectorised (see "vector kernels") without changing
 * that.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "cpu.h"
#include "formula.h"
#include "ops_check.h"

#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_debug.h>

/* Below this many elements an elementwise op runs on one thread. */
#define PAR_MIN 32768

/* Any dnnl call: on failure fill err with file:line, the call and the status. */
#define DNNL_CHECK(call)                                                                           \
	do {                                                                                       \
		dnnl_status_t status_ = (call);                                                    \
		if (status_ != dnnl_success)                                                       \
			return ut_err_set(err, "%s:%d: %s: %s", __FILE__, __LINE__, #call,         \
					  dnnl_status2str(status_));                               \
	} while (0)

/* ------------------------------------------------------------------------ */
/* backend state                                                             */

enum conv_kind { CONV_FWD, CONV_BWD_DATA, CONV_BWD_WEIGHTS };

#define CONV_PORTS 4

/*
 * One tensor argument of a convolution primitive. user is the caller's
 * plain-layout buffer (handle set per call); prim, when not NULL, is the
 * layout the primitive chose, held in the shared workspace ws[slot] and
 * connected to user by reorder. An accumulating output (dw, dbias) always
 * goes through prim and a reorder with a sum post-op, so the caller's
 * buffer receives += rather than =.
 */
struct conv_port {
	int arg;
	int is_output, accumulate;
	dnnl_memory_t user, prim;
	dnnl_primitive_t reorder;
};

struct conv_prim {
	enum conv_kind kind;
	struct tr_conv conv;
	int n, h, w, has_bias;
	dnnl_primitive_desc_t hint_pd, pd;
	dnnl_primitive_t prim;
	dnnl_memory_t scratch;
	int nports;
	struct conv_port port[CONV_PORTS];
};

struct cpu_state {
	int threads;
	enum tr_cpu_layout layout; /* see cpu.h */
	dnnl_engine_t engine;
	dnnl_stream_t stream;
	struct conv_prim *prims;
	int nprims, capprims;
	void *ws[CONV_PORTS]; /* shared across primitives: one op runs at a time */
	size_t ws_bytes[CONV_PORTS];
	void *scratch;
	size_t scratch_bytes;
	void *pool; /* max pool's per-thread scratch */
	size_t pool_bytes;
};

static struct cpu_state *state_of(struct tr_backend *b)
{
	return (struct cpu_state *)b->state;
}

void tr_backend_destroy(struct tr_backend *b)
{
	if (b != NULL && b->destroy != NULL)
		b->destroy(b);
}

/* Make buf hold at least bytes (64-byte aligned); contents are not kept. */
static int grow_buffer(void **buf, size_t *cap, size_t bytes, struct ut_err *err)
{
	if (bytes <= *cap)
		return 0;
	size_t rounded = (bytes + 63) / 64 * 64;
	void *fresh = aligned_alloc(64, rounded);
	if (fresh == NULL)
		return ut_err_set(err, "%s:%d: out of memory (%zu bytes)", __FILE__, __LINE__,
				  rounded);
	free(*buf);
	*buf = fresh;
	*cap = rounded;
	return 0;
}

static void conv_prim_release(struct conv_prim *p)
{
	for (int i = 0; i < p->nports; i++) {
		struct conv_port *port = &p->port[i];
		if (port->reorder != NULL)
			dnnl_primitive_destroy(port->reorder);
		if (port->prim != NULL)
			dnnl_memory_destroy(port->prim);
		if (port->user != NULL)
			dnnl_memory_destroy(port->user);
	}
	if (p->scratch != NULL)
		dnnl_memory_destroy(p->scratch);
	if (p->prim != NULL)
		dnnl_primitive_destroy(p->prim);
	if (p->pd != NULL)
		dnnl_primitive_desc_destroy(p->pd);
	if (p->hint_pd != NULL)
		dnnl_primitive_desc_destroy(p->hint_pd);
	memset(p, 0, sizeof(*p));
}

static void cpu_destroy(struct tr_backend *b)
{
	struct cpu_state *st = state_of(b);
	if (st != NULL) {
		for (int i = 0; i < st->nprims; i++)
			conv_prim_release(&st->prims[i]);
		free(st->prims);
		for (int i = 0; i < CONV_PORTS; i++)
			free(st->ws[i]);
		free(st->scratch);
		free(st->pool);
		if (st->stream != NULL)
			dnnl_stream_destroy(st->stream);
		if (st->engine != NULL)
			dnnl_engine_destroy(st->engine);
		free(st);
	}
	free(b);
}

/* ------------------------------------------------------------------------ */
/* memory: device memory is host memory                                      */

static int cpu_alloc(struct tr_backend *b, size_t bytes, void **out, struct ut_err *err)
{
	(void)b;
	size_t rounded = (bytes + 63) / 64 * 64;
	*out = aligned_alloc(64, rounded ? rounded : 64);
	if (*out == NULL)
		return ut_err_set(err, "%s:%d: out of memory (%zu bytes)", __FILE__, __LINE__,
				  rounded);
	return 0;
}

static void cpu_free(struct tr_backend *b, void *ptr)
{
	(void)b;
	free(ptr);
}

static int cpu_memset(struct tr_backend *b, void *dst, int value, size_t bytes, struct ut_err *err)
{
	(void)b;
	(void)err;
	memset(dst, value, bytes);
	return 0;
}

/* upload and download: the same memcpy, the direction only documents the caller's intent */
static int cpu_upload(struct tr_backend *b, void *dst_dev, const void *src_host, size_t bytes,
		      struct ut_err *err)
{
	(void)b;
	(void)err;
	if (bytes > 0)
		memcpy(dst_dev, src_host, bytes);
	return 0;
}

static int cpu_download(struct tr_backend *b, void *dst_host, const void *src_dev, size_t bytes,
			struct ut_err *err)
{
	return cpu_upload(b, dst_host, src_dev, bytes, err);
}

/* every CPU op has finished when it returns */
static int cpu_sync(struct tr_backend *b, struct ut_err *err)
{
	(void)b;
	(void)err;
	return 0;
}

/* pinned memory is plain memory: nothing to pin without a device */
static int cpu_host_alloc(struct tr_backend *b, size_t bytes, void **out, struct ut_err *err)
{
	return cpu_alloc(b, bytes, out, err);
}

static void cpu_host_free(struct tr_backend *b, void *ptr)
{
	cpu_free(b, ptr);
}

/* the copy is done when it returns, so ops.h's ordering and reuse rules hold at once */
static int cpu_upload_async(struct tr_backend *b, void *dst_dev, const void *src_pinned,
			    size_t bytes, struct ut_err *err)
{
	return cpu_upload(b, dst_dev, src_pinned, bytes, err);
}

static int cpu_upload_wait(struct tr_backend *b, struct ut_err *err)
{
	(void)b;
	(void)err;
	return 0;
}

/* ------------------------------------------------------------------------ */
/* convolution primitives                                                    */

struct conv_descs {
	dnnl_memory_desc_t src, wei, bias, dst;		/* layouts offered to oneDNN */
	dnnl_memory_desc_t src_u, wei_u, bias_u, dst_u; /* the caller's plain layouts */
	dnnl_dims_t strides, pad_l, pad_r;
};

static int conv_descs_init(const struct cpu_state *st, const struct conv_prim *p,
			   struct conv_descs *d, struct ut_err *err)
{
	const struct tr_conv *c = &p->conv;
	struct tr_shape out = tr_conv_out_shape(c, (struct tr_shape){p->n, c->cin, p->h, p->w});
	dnnl_dims_t src = {p->n, c->cin, p->h, p->w};
	dnnl_dims_t wei = {c->cout, c->cin, c->k, c->k};
	dnnl_dims_t bias = {c->cout};
	dnnl_dims_t dst = {out.n, out.c, out.h, out.w};
	int any = st->layout == TR_CPU_LAYOUT_ANY || (st->layout == TR_CPU_LAYOUT_AUTO && c->k > 1);
	dnnl_format_tag_t act = any ? dnnl_format_tag_any : dnnl_nchw;
	dnnl_format_tag_t flt = any ? dnnl_format_tag_any : dnnl_oihw;
	DNNL_CHECK(dnnl_memory_desc_init_by_tag(&d->src, 4, src, dnnl_f32, act));
	DNNL_CHECK(dnnl_memory_desc_init_by_tag(&d->wei, 4, wei, dnnl_f32, flt));
	DNNL_CHECK(dnnl_memory_desc_init_by_tag(&d->bias, 1, bias, dnnl_f32, dnnl_a));
	DNNL_CHECK(dnnl_memory_desc_init_by_tag(&d->dst, 4, dst, dnnl_f32, act));
	DNNL_CHECK(dnnl_memory_desc_init_by_tag(&d->src_u, 4, src, dnnl_f32, dnnl_nchw));
	DNNL_CHECK(dnnl_memory_desc_init_by_tag(&d->wei_u, 4, wei, dnnl_f32, dnnl_oihw));
	DNNL_CHECK(dnnl_memory_desc_init_by_tag(&d->bias_u, 1, bias, dnnl_f32, dnnl_a));
	DNNL_CHECK(dnnl_memory_desc_init_by_tag(&d->dst_u, 4, dst, dnnl_f32, dnnl_nchw));
	for (int i = 0; i < 2; i++) {
		d->strides[i] = c->stride;
		d->pad_l[i] = c->pad;
		/* PyTorch pads both sides by pad and floors the output size */
		d->pad_r[i] = (dst[2 + i] - 1) * c->stride + c->k - (src[2 + i] + c->pad);
	}
	return 0;
}

/* The descriptors and primitive descriptors (hint_pd, pd) of one kind. */
static int conv_pd_create(struct cpu_state *st, struct conv_prim *p, const struct conv_descs *d,
			  struct ut_err *err)
{
	dnnl_primitive_attr_t attr = NULL;
	dnnl_convolution_desc_t fwd, bwd;
	int rc = 0;
	DNNL_CHECK(dnnl_primitive_attr_create(&attr));
	dnnl_status_t s = dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
	const dnnl_memory_desc_t *bias = p->has_bias ? &d->bias : NULL;
	if (s == dnnl_success)
		s = dnnl_convolution_forward_desc_init(
		    &fwd, dnnl_forward_training, dnnl_convolution_direct, &d->src, &d->wei, bias,
		    &d->dst, d->strides, d->pad_l, d->pad_r);
	if (s == dnnl_success && p->kind == CONV_FWD)
		s = dnnl_primitive_desc_create(&p->pd, &fwd, attr, st->engine, NULL);
	else if (s == dnnl_success) {
		s = dnnl_primitive_desc_create(&p->hint_pd, &fwd, NULL, st->engine, NULL);
		if (s == dnnl_success && p->kind == CONV_BWD_DATA)
			s = dnnl_convolution_backward_data_desc_init(
			    &bwd, dnnl_convolution_direct, &d->src, &d->wei, &d->dst, d->strides,
			    d->pad_l, d->pad_r);
		else if (s == dnnl_success)
			s = dnnl_convolution_backward_weights_desc_init(
			    &bwd, dnnl_convolution_direct, &d->src, &d->wei, bias, &d->dst,
			    d->strides, d->pad_l, d->pad_r);
		if (s == dnnl_success)
			s = dnnl_primitive_desc_create(&p->pd, &bwd, attr, st->engine, p->hint_pd);
	}
	if (s != dnnl_success)
		rc = ut_err_set(err,
				"%s:%d: convolution primitive descriptor (kind %d, %dx%d s%d p%d, "
				"%d->%d, input %dx%dx%dx%d): %s",
				__FILE__, __LINE__, (int)p->kind, p->conv.k, p->conv.k,
				p->conv.stride, p->conv.pad, p->conv.cin, p->conv.cout, p->n,
				p->conv.cin, p->h, p->w, dnnl_status2str(s));
	dnnl_primitive_attr_destroy(attr);
	return rc;
}

/*
 * The arguments of each kind of convolution, in the order of their shared
 * workspace slots: which oneDNN argument, how to query its layout, which of
 * the caller's plain layouts it has, and whether it is an output that
 * assigns or accumulates.
 */
enum user_layout { USER_SRC, USER_WEI, USER_BIAS, USER_DST };

struct port_spec {
	int arg;
	dnnl_query_t query;
	int index;
	enum user_layout user;
	int is_output, accumulate, bias_only;
};

static const struct port_spec port_specs[3][CONV_PORTS] = {
    [CONV_FWD] =
	{
	    {DNNL_ARG_SRC, dnnl_query_src_md, 0, USER_SRC, 0, 0, 0},
	    {DNNL_ARG_WEIGHTS, dnnl_query_weights_md, 0, USER_WEI, 0, 0, 0},
	    {DNNL_ARG_DST, dnnl_query_dst_md, 0, USER_DST, 1, 0, 0},
	    {DNNL_ARG_BIAS, dnnl_query_weights_md, 1, USER_BIAS, 0, 0, 1},
	},
    [CONV_BWD_DATA] =
	{
	    {DNNL_ARG_DIFF_DST, dnnl_query_diff_dst_md, 0, USER_DST, 0, 0, 0},
	    {DNNL_ARG_WEIGHTS, dnnl_query_weights_md, 0, USER_WEI, 0, 0, 0},
	    {DNNL_ARG_DIFF_SRC, dnnl_query_diff_src_md, 0, USER_SRC, 1, 0, 0},
	    {0, dnnl_query_undef, 0, USER_SRC, 0, 0, 2},
	},
    [CONV_BWD_WEIGHTS] =
	{
	    {DNNL_ARG_SRC, dnnl_query_src_md, 0, USER_SRC, 0, 0, 0},
	    {DNNL_ARG_DIFF_DST, dnnl_query_diff_dst_md, 0, USER_DST, 0, 0, 0},
	    {DNNL_ARG_DIFF_WEIGHTS, dnnl_query_diff_weights_md, 0, USER_WEI, 1, 1, 0},
	    {DNNL_ARG_DIFF_BIAS, dnnl_query_diff_weights_md, 1, USER_BIAS, 1, 1, 1},
	},
};

/* A reorder between two layouts; with accumulate, dst += reorder(src). */
static int reorder_create(struct cpu_state *st, const dnnl_memory_desc_t *from,
			  const dnnl_memory_desc_t *to, int accumulate, dnnl_primitive_t *out,
			  struct ut_err *err)
{
	dnnl_primitive_attr_t attr = NULL;
	dnnl_post_ops_t post = NULL;
	dnnl_primitive_desc_t rpd = NULL;
	DNNL_CHECK(dnnl_primitive_attr_create(&attr));
	dnnl_status_t s = dnnl_success;
	if (accumulate) {
		s = dnnl_post_ops_create(&post);
		if (s == dnnl_success)
			s = dnnl_post_ops_append_sum(post, 1.0f);
		if (s == dnnl_success)
			s = dnnl_primitive_attr_set_post_ops(attr, post);
	}
	if (s == dnnl_success)
		s = dnnl_reorder_primitive_desc_create(&rpd, from, st->engine, to, st->engine,
						       attr);
	if (s == dnnl_success)
		s = dnnl_primitive_create(out, rpd);
	if (rpd != NULL)
		dnnl_primitive_desc_destroy(rpd);
	if (post != NULL)
		dnnl_post_ops_destroy(post);
	dnnl_primitive_attr_destroy(attr);
	if (s != dnnl_success)
		return ut_err_set(err, "%s:%d: reorder primitive: %s", __FILE__, __LINE__,
				  dnnl_status2str(s));
	return 0;
}

/* Connect argument slot: user memory, and prim memory + reorder when needed. */
static int conv_port_init(struct cpu_state *st, struct conv_prim *p, int slot,
			  const struct port_spec *spec, const dnnl_memory_desc_t *user_md,
			  struct ut_err *err)
{
	struct conv_port *port = &p->port[slot];
	port->arg = spec->arg;
	port->is_output = spec->is_output;
	port->accumulate = spec->accumulate;
	const dnnl_memory_desc_t *prim_md =
	    dnnl_primitive_desc_query_md(p->pd, spec->query, spec->index);
	if (prim_md == NULL)
		return ut_err_set(err, "%s:%d: dnnl_primitive_desc_query_md(%d, %d) failed",
				  __FILE__, __LINE__, (int)spec->query, spec->index);
	DNNL_CHECK(dnnl_memory_create(&port->user, user_md, st->engine, DNNL_MEMORY_NONE));
	if (!spec->accumulate && dnnl_memory_desc_equal(prim_md, user_md))
		return 0;
	if (grow_buffer(&st->ws[slot], &st->ws_bytes[slot], dnnl_memory_desc_get_size(prim_md),
			err) != 0)
		return -1;
	DNNL_CHECK(dnnl_memory_create(&port->prim, prim_md, st->engine, DNNL_MEMORY_NONE));
	if (spec->is_output)
		return reorder_create(st, prim_md, user_md, spec->accumulate, &port->reorder, err);
	return reorder_create(st, user_md, prim_md, 0, &port->reorder, err);
}

static int conv_prim_build(struct cpu_state *st, struct conv_prim *p, struct ut_err *err)
{
	struct conv_descs d;
	if (conv_descs_init(st, p, &d, err) != 0 || conv_pd_create(st, p, &d, err) != 0)
		return -1;
	const dnnl_memory_desc_t *user_md[] = {
	    [USER_SRC] = &d.src_u,
	    [USER_WEI] = &d.wei_u,
	    [USER_BIAS] = &d.bias_u,
	    [USER_DST] = &d.dst_u,
	};
	for (int slot = 0; slot < CONV_PORTS; slot++) {
		const struct port_spec *spec = &port_specs[p->kind][slot];
		if (spec->bias_only == 2 || (spec->bias_only && !p->has_bias))
			break;
		p->nports = slot + 1;
		if (conv_port_init(st, p, slot, spec, user_md[spec->user], err) != 0)
			return -1;
	}
	const dnnl_memory_desc_t *scratch_md =
	    dnnl_primitive_desc_query_md(p->pd, dnnl_query_scratchpad_md, 0);
	if (scratch_md == NULL)
		return ut_err_set(err, "%s:%d: no scratchpad descriptor", __FILE__, __LINE__);
	size_t scratch_bytes = dnnl_memory_desc_get_size(scratch_md);
	if (grow_buffer(&st->scratch, &st->scratch_bytes, scratch_bytes ? scratch_bytes : 64,
			err) != 0)
		return -1;
	DNNL_CHECK(dnnl_memory_create(&p->scratch, scratch_md, st->engine, DNNL_MEMORY_NONE));
	DNNL_CHECK(dnnl_primitive_create(&p->prim, p->pd));
	return 0;
}

/* The cached primitive for (kind, conv, input shape, bias), built on first use. */
static int conv_prim_get(struct cpu_state *st, enum conv_kind kind, const struct tr_conv *conv,
			 struct tr_shape in, int has_bias, struct conv_prim **out,
			 struct ut_err *err)
{
	/*
	 * oneDNN's OpenMP runtime takes the calling thread's thread count, both
	 * when it plans a primitive and when it runs one: set it for both.
	 */
	omp_set_num_threads(st->threads);
	for (int i = 0; i < st->nprims; i++) {
		struct conv_prim *p = &st->prims[i];
		if (p->kind == kind && p->n == in.n && p->h == in.h && p->w == in.w &&
		    p->has_bias == has_bias && p->conv.cin == conv->cin &&
		    p->conv.cout == conv->cout && p->conv.k == conv->k &&
		    p->conv.stride == conv->stride && p->conv.pad == conv->pad) {
			*out = p;
			return 0;
		}
	}
	if (st->nprims == st->capprims) {
		int cap = st->capprims ? 2 * st->capprims : 64;
		struct conv_prim *grown = realloc(st->prims, (size_t)cap * sizeof(*grown));
		if (grown == NULL)
			return ut_err_set(err, "%s:%d: out of memory", __FILE__, __LINE__);
		st->prims = grown;
		st->capprims = cap;
	}
	struct conv_prim *p = &st->prims[st->nprims];
	memset(p, 0, sizeof(*p));
	p->kind = kind;
	p->conv = *conv;
	p->n = in.n;
	p->h = in.h;
	p->w = in.w;
	p->has_bias = has_bias;
	if (conv_prim_build(st, p, err) != 0) {
		conv_prim_release(p);
		return -1;
	}
	st->nprims++;
	*out = p;
	return 0;
}

/* Run a cached primitive on the caller's buffers, one per port (in port order). */
static int conv_prim_run(struct cpu_state *st, struct conv_prim *p, void *const data[CONV_PORTS],
			 struct ut_err *err)
{
	dnnl_exec_arg_t args[CONV_PORTS + 1];
	for (int i = 0; i < p->nports; i++) {
		struct conv_port *port = &p->port[i];
		DNNL_CHECK(dnnl_memory_set_data_handle(port->user, data[i]));
		args[i].arg = port->arg;
		args[i].memory = port->user;
		if (port->prim == NULL)
			continue;
		DNNL_CHECK(dnnl_memory_set_data_handle(port->prim, st->ws[i]));
		args[i].memory = port->prim;
		if (!port->is_output) {
			dnnl_exec_arg_t r[2] = {{DNNL_ARG_FROM, port->user},
						{DNNL_ARG_TO, port->prim}};
			DNNL_CHECK(dnnl_primitive_execute(port->reorder, st->stream, 2, r));
		}
	}
	DNNL_CHECK(dnnl_memory_set_data_handle(p->scratch, st->scratch));
	args[p->nports].arg = DNNL_ARG_SCRATCHPAD;
	args[p->nports].memory = p->scratch;
	DNNL_CHECK(dnnl_primitive_execute(p->prim, st->stream, p->nports + 1, args));
	for (int i = 0; i < p->nports; i++) {
		struct conv_port *port = &p->port[i];
		if (port->prim == NULL || !port->is_output)
			continue;
		dnnl_exec_arg_t r[2] = {{DNNL_ARG_FROM, port->prim}, {DNNL_ARG_TO, port->user}};
		DNNL_CHECK(dnnl_primitive_execute(port->reorder, st->stream, 2, r));
	}
	DNNL_CHECK(dnnl_stream_wait(st->stream));
	return 0;
}

static int cpu_conv_forward(struct tr_backend *b, const struct tr_conv *conv,
			    const struct tr_tensor *x, const float *w, const float *bias,
			    struct tr_tensor *y, struct ut_err *err)
{
	struct cpu_state *st = state_of(b);
	struct conv_prim *p;
	if (tr_conv_check("conv_forward", conv, x->shape, y->shape, err) != 0 ||
	    conv_prim_get(st, CONV_FWD, conv, x->shape, bias != NULL, &p, err) != 0)
		return -1;
	/* oneDNN only reads its inputs; the casts drop const for its void * API */
	void *const data[CONV_PORTS] = {(void *)x->data, (void *)w, y->data, (void *)bias};
	return conv_prim_run(st, p, data, err);
}

static int cpu_conv_backward_data(struct tr_backend *b, const struct tr_conv *conv,
				  const struct tr_tensor *dy, const float *w, struct tr_tensor *dx,
				  struct ut_err *err)
{
	struct cpu_state *st = state_of(b);
	struct conv_prim *p;
	if (tr_conv_check("conv_backward_data", conv, dx->shape, dy->shape, err) != 0 ||
	    conv_prim_get(st, CONV_BWD_DATA, conv, dx->shape, 0, &p, err) != 0)
		return -1;
	void *const data[CONV_PORTS] = {(void *)dy->data, (void *)w, dx->data, NULL};
	return conv_prim_run(st, p, data, err);
}

static int cpu_conv_backward_filter(struct tr_backend *b, const struct tr_conv *conv,
				    const struct tr_tensor *x, const struct tr_tensor *dy,
				    float *dw, float *dbias, struct ut_err *err)
{
	struct cpu_state *st = state_of(b);
	struct conv_prim *p;
	if (tr_conv_check("conv_backward_filter", conv, x->shape, dy->shape, err) != 0 ||
	    conv_prim_get(st, CONV_BWD_WEIGHTS, conv, x->shape, dbias != NULL, &p, err) != 0)
		return -1;
	void *const data[CONV_PORTS] = {(void *)x->data, (void *)dy->data, dw, dbias};
	return conv_prim_run(st, p, data, err);
}

/* ------------------------------------------------------------------------ */
/* vector kernels                                                            */

/*
 * The hot element-wise loops are written as plain C that gcc vectorises
 * (#pragma omp simd), and compiled twice (target_clones): for AVX2 and for
 * baseline x86-64, picked at load time. With -ffp-contract=off both clones
 * do the same IEEE operations on each element, so they give the same bits,
 * and an element's result does not depend on where it falls in a vector.
 */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define VEC_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define VEC_CLONES
#endif

/* y = x * sigmoid(x) over len floats */
VEC_CLONES static void silu_forward_range(const float *x, float *y, ptrdiff_t len)
{
#pragma omp simd
	for (ptrdiff_t i = 0; i < len; i++)
		y[i] = tr_f_silu(x[i]);
}

/* dx = dy * s * (1 + x * (1 - s)), s = sigmoid(x); dx may be dy */
VEC_CLONES static void silu_backward_range(const float *x, const float *dy, float *dx,
					   ptrdiff_t len)
{
#pragma omp simd
	for (ptrdiff_t i = 0; i < len; i++)
		dx[i] = tr_f_silu_grad(x[i], dy[i]);
}

/* y = a + x; y may be a or x */
VEC_CLONES static void add_range(const float *a, const float *x, float *y, ptrdiff_t len)
{
#pragma omp simd
	for (ptrdiff_t i = 0; i < len; i++)
		y[i] = a[i] + x[i];
}

/*
 * The part [*lo, *hi) of len elements that thread t of nt takes: equal
 * runs of whole 64-byte lines, the last thread taking what is left.
 */
static void thread_range(ptrdiff_t len, int t, int nt, ptrdiff_t *lo, ptrdiff_t *hi)
{
	ptrdiff_t per = (len / nt + 15) / 16 * 16;
	*lo = per * t < len ? per * t : len;
	*hi = t == nt - 1 || per * (t + 1) > len ? len : per * (t + 1);
}

/* ------------------------------------------------------------------------ */
/* batch norm                                                                */

/* Sum of a plane in double, in a fixed order (8 lanes, then the lanes). */
VEC_CLONES static double plane_sum(const float *p, size_t len)
{
	double lane[8] = {0};
	size_t i = 0;
	for (; i + 8 <= len; i += 8)
		for (int l = 0; l < 8; l++)
			lane[l] += p[i + l];
	double total = 0;
	for (; i < len; i++)
		total += p[i];
	for (int l = 0; l < 8; l++)
		total += lane[l];
	return total;
}

/* Sum of (p - mean)^2 over a plane, same order as plane_sum. */
VEC_CLONES static double plane_sq_dev(const float *p, size_t len, double mean)
{
	double lane[8] = {0};
	size_t i = 0;
	for (; i + 8 <= len; i += 8)
		for (int l = 0; l < 8; l++) {
			double d = p[i + l] - mean;
			lane[l] += d * d;
		}
	double total = 0;
	for (; i < len; i++) {
		double d = p[i] - mean;
		total += d * d;
	}
	for (int l = 0; l < 8; l++)
		total += lane[l];
	return total;
}

/* Sum of dy and of dy * (x - mean) over a plane. */
VEC_CLONES static void plane_dot(const float *dy, const float *x, size_t len, double mean,
				 double *sum_dy, double *sum_dy_xc)
{
	double a[8] = {0}, b[8] = {0};
	size_t i = 0;
	for (; i + 8 <= len; i += 8)
		for (int l = 0; l < 8; l++) {
			a[l] += dy[i + l];
			b[l] += dy[i + l] * (x[i + l] - mean);
		}
	double ta = 0, tb = 0;
	for (; i < len; i++) {
		ta += dy[i];
		tb += dy[i] * (x[i] - mean);
	}
	for (int l = 0; l < 8; l++) {
		ta += a[l];
		tb += b[l];
	}
	*sum_dy += ta;
	*sum_dy_xc += tb;
}

/* out = k * dy + a * x + d over a plane; out may be dy */
VEC_CLONES static void plane_axpbyc(const float *dy, const float *x, float *out, size_t len,
				    float k, float a, float d)
{
#pragma omp simd
	for (size_t i = 0; i < len; i++)
		out[i] = k * dy[i] + a * x[i] + d;
}

/* y[n,c,:,:] = x[n,c,:,:] * scale[c] + shift[c], for one channel */
VEC_CLONES static void channel_affine(const float *x, float *y, struct tr_shape s, int c,
				      float scale, float shift)
{
	size_t hw = (size_t)s.h * s.w;
	for (int n = 0; n < s.n; n++) {
		size_t off = ((size_t)n * s.c + c) * hw;
#pragma omp simd
		for (size_t i = 0; i < hw; i++)
			y[off + i] = x[off + i] * scale + shift;
	}
}

static int bn_check(const char *op, const struct tr_tensor *x, const struct tr_tensor *y,
		    struct ut_err *err)
{
	if (!tr_shape_same(x->shape, y->shape))
		return tr_shape_error(err, op, "output", y->shape, x->shape);
	return 0;
}

/* x, y: [n,c,h,w]; gamma, beta, running_*, save_*: [c] */
static int cpu_bn_forward_train(struct tr_backend *b, const struct tr_tensor *x, const float *gamma,
				const float *beta, float eps, float momentum, float *running_mean,
				float *running_var, float *save_mean, float *save_invstd,
				struct tr_tensor *y, struct ut_err *err)
{
	struct cpu_state *st = state_of(b);
	struct tr_shape s = x->shape;
	size_t hw = (size_t)s.h * s.w, count = (size_t)s.n * hw;
	if (bn_check("bn_forward_train", x, y, err) != 0)
		return -1;
	if (count < 2)
		return ut_err_set(
		    err, "bn_forward_train: %zu value per channel (training needs 2 or more)",
		    count);
#pragma omp parallel for num_threads(st->threads) schedule(static) if (count * s.c > PAR_MIN)
	for (int c = 0; c < s.c; c++) {
		double sum = 0, sq = 0;
		for (int n = 0; n < s.n; n++)
			sum += plane_sum(x->data + ((size_t)n * s.c + c) * hw, hw);
		double mean = sum / (double)count;
		for (int n = 0; n < s.n; n++)
			sq += plane_sq_dev(x->data + ((size_t)n * s.c + c) * hw, hw, mean);
		double var = sq / (double)count; /* biased: normalisation */
		double invstd = 1.0 / sqrt(var + eps);
		double unbiased = sq / (double)(count - 1); /* running_var, as PyTorch */
		save_mean[c] = (float)mean;
		save_invstd[c] = (float)invstd;
		running_mean[c] = (float)((1.0 - momentum) * running_mean[c] + momentum * mean);
		running_var[c] = (float)((1.0 - momentum) * running_var[c] + momentum * unbiased);
		double scale = gamma[c] * invstd;
		channel_affine(x->data, y->data, s, c, (float)scale,
			       (float)(beta[c] - mean * scale));
	}
	return 0;
}

static int cpu_bn_forward_eval(struct tr_backend *b, const struct tr_tensor *x, const float *gamma,
			       const float *beta, float eps, const float *running_mean,
			       const float *running_var, struct tr_tensor *y, struct ut_err *err)
{
	struct cpu_state *st = state_of(b);
	struct tr_shape s = x->shape;
	if (bn_check("bn_forward_eval", x, y, err) != 0)
		return -1;
#pragma omp parallel for num_threads(st->threads) schedule(static) if (tr_shape_numel(s) > PAR_MIN)
	for (int c = 0; c < s.c; c++) {
		double scale = gamma[c] / sqrt((double)running_var[c] + eps);
		channel_affine(x->data, y->data, s, c, (float)scale,
			       (float)(beta[c] - running_mean[c] * scale));
	}
	return 0;
}

/*
 * dx = gamma * invstd * (dy - mean(dy) - xhat * mean(dy * xhat)), with the
 * batch statistics of the forward pass; dgamma += sum(dy * xhat); dbeta +=
 * sum(dy). dx may alias dy (each channel is reduced before it is written).
 */
static int cpu_bn_backward(struct tr_backend *b, const struct tr_tensor *x,
			   const struct tr_tensor *dy, const float *gamma, const float *save_mean,
			   const float *save_invstd, struct tr_tensor *dx, float *dgamma,
			   float *dbeta, struct ut_err *err)
{
	struct cpu_state *st = state_of(b);
	struct tr_shape s = x->shape;
	size_t hw = (size_t)s.h * s.w, count = (size_t)s.n * hw;
	if (!tr_shape_same(dy->shape, s))
		return tr_shape_error(err, "bn_backward", "dy", dy->shape, s);
	if (!tr_shape_same(dx->shape, s))
		return tr_shape_error(err, "bn_backward", "dx", dx->shape, s);
#pragma omp parallel for num_threads(st->threads) schedule(static) if (count * s.c > PAR_MIN)
	for (int c = 0; c < s.c; c++) {
		double mean = save_mean[c], invstd = save_invstd[c];
		double sum_dy = 0, sum_dy_xc = 0;
		for (int n = 0; n < s.n; n++) {
			size_t off = ((size_t)n * s.c + c) * hw;
			plane_dot(dy->data + off, x->data + off, hw, mean, &sum_dy, &sum_dy_xc);
		}
		double sum_dy_xhat = sum_dy_xc * invstd;
		dgamma[c] += (float)sum_dy_xhat;
		dbeta[c] += (float)sum_dy;
		/* dx = k * dy + a * x + d, folded per channel */
		double k = gamma[c] * invstd;
		double mean_dy = sum_dy / (double)count;
		double mean_dy_xhat = sum_dy_xhat / (double)count;
		float kf = (float)k, af = (float)(-k * mean_dy_xhat * invstd);
		float df = (float)(k * (-mean_dy + mean_dy_xhat * invstd * mean));
		for (int n = 0; n < s.n; n++) {
			size_t off = ((size_t)n * s.c + c) * hw;
			plane_axpbyc(dy->data + off, x->data + off, dx->data + off, hw, kf, af, df);
		}
	}
	return 0;
}

/*
 * SyncBatchNorm's sums (ops.h bn_channel_sums): one plain loop a channel
 * in index order, as syncbn.c summed on the host before these ops, so
 * --sync-bn on CPU ranks keeps its bits (not plane_sum's 8 lanes).
 */
static void channel_sums(const float *x, const float *dy, struct tr_shape s, int c, double mean,
			 double *first, double *second)
{
	size_t hw = (size_t)s.h * s.w;
	double a = 0, b = 0;
	for (int n = 0; n < s.n; n++) {
		size_t off = ((size_t)n * s.c + c) * hw;
		if (dy == NULL) {
			for (size_t i = 0; i < hw; i++) {
				double d = (double)x[off + i] - mean;
				a += x[off + i];
				b += d * d;
			}
		} else {
			for (size_t i = 0; i < hw; i++) {
				a += dy[off + i];
				b += (double)dy[off + i] * ((double)x[off + i] - mean);
			}
		}
	}
	*first = a;
	*second = b;
}

/* x, dy: [n,c,h,w] (dy may be NULL); mean: [c]; sums: [2c] */
static int cpu_bn_channel_sums(struct tr_backend *b, const struct tr_tensor *x,
			       const struct tr_tensor *dy, const double *mean, double *sums,
			       struct ut_err *err)
{
	struct cpu_state *st = state_of(b);
	struct tr_shape s = x->shape;
	if (tr_bn_channel_check("bn_channel_sums", x, dy, NULL, err) != 0)
		return -1;
	const float *dy_data = dy != NULL ? dy->data : NULL;
#pragma omp parallel for num_threads(st->threads) schedule(static) if (tr_shape_numel(s) > PAR_MIN)
	for (int c = 0; c < s.c; c++)
		channel_sums(x->data, dy_data, s, c, mean[c], &sums[c], &sums[s.c + c]);
	return 0;
}

/* out = k dy + a x + d, or x a + d without dy, per channel; coef: [3c] = k, a, d */
static int cpu_bn_channel_affine(struct tr_backend *b, const struct tr_tensor *x,
				 const struct tr_tensor *dy, const float *coef,
				 struct tr_tensor *out, struct ut_err *err)
{
	struct cpu_state *st = state_of(b);
	struct tr_shape s = x->shape;
	size_t hw = (size_t)s.h * s.w;
	if (tr_bn_channel_check("bn_channel_affine", x, dy, out, err) != 0)
		return -1;
#pragma omp parallel for num_threads(st->threads) schedule(static) if (tr_shape_numel(s) > PAR_MIN)
	for (int c = 0; c < s.c; c++) {
		float k = coef[c], a = coef[s.c + c], d = coef[2 * s.c + c];
		if (dy == NULL) {
			channel_affine(x->data, out->data, s, c, a, d);
			continue;
		}
		for (int n = 0; n < s.n; n++) {
			size_t off = ((size_t)n * s.c + c) * hw;
			plane_axpbyc(dy->data + off, x->data + off, out->data + off, hw, k, a, d);
		}
	}
	return 0;
}

/* ------------------------------------------------------------------------ */
/* elementwise: SiLU, add (outputs may alias inputs)                         */

static int cpu_silu_forward(struct tr_backend *b, const struct tr_tensor *x, struct tr_tensor *y,
			    struct ut_err *err)
{
	struct cpu_state *st = state_of(b);
	if (!tr_shape_same(x->shape, y->shape))
		return tr_shape_error(err, "silu_forward", "y", y->shape, x->shape);
	ptrdiff_t len = (ptrdiff_t)tr_shape_numel(x->shape);
#pragma omp parallel num_threads(st->threads) if (len > PAR_MIN)
	{
		ptrdiff_t lo, hi;
		thread_range(len, omp_get_thread_num(), omp_get_num_threads(), &lo, &hi);
		silu_forward_range(x->data + lo, y->data + lo, hi - lo);
	}
	return 0;
}

/* d silu / dx = s * (1 + x * (1 - s)), s = sigmoid(x) */
static int cpu_silu_backward(struct tr_backend *b, const struct tr_tensor *x,
			     const struct tr_tensor *dy, struct tr_tensor *dx, struct ut_err *err)
{
	struct cpu_state *st = state_of(b);
	if (!tr_shape_same(x->shape, dy->shape))
		return tr_shape_error(err, "silu_backward", "dy", dy->shape, x->shape);
	if (!tr_shape_same(x->shape, dx->shape))
		return tr_shape_error(err, "silu_backward", "dx", dx->shape, x->shape);
	ptrdiff_t len = (ptrdiff_t)tr_shape_numel(x->shape);
#pragma omp parallel num_threads(st->threads) if (len > PAR_MIN)
	{
		ptrdiff_t lo, hi;
		thread_range(len, omp_get_thread_num(), omp_get_num_threads(), &lo, &hi);
		silu_backward_range(x->data + lo, dy->data + lo, dx->data + lo, hi - lo);
	}
	return 0;
}

static int cpu_add_forward(struct tr_backend *b, const struct tr_tensor *a,
			   const struct tr_tensor *x, struct tr_tensor *y, struct ut_err *err)
{
	struct cpu_state *st = state_of(b);
	if (!tr_shape_same(a->shape, x->shape))
		return tr_shape_error(err, "add_forward", "second input", x->shape, a->shape);
	if (!tr_shape_same(a->shape, y->shape))
		return tr_shape_error(err, "add_forward", "output", y->shape, a->shape);
	ptrdiff_t len = (ptrdiff_t)tr_shape_numel(a->shape);
#pragma omp parallel num_threads(st->threads) if (len > PAR_MIN)
	{
		ptrdiff_t lo, hi;
		thread_range(len, omp_get_thread_num(), omp_get_num_threads(), &lo, &hi);
		add_range(a->data + lo, x->data + lo, y->data + lo, hi - lo);
	}
	return 0;
}

/* ------------------------------------------------------------------------ */
/* max pool k x k, stride 1, pad k/2, -inf padding (PyTorch's first max wins) */

/*
 * The index in the plane of each output's max, as PyTorch's scan of the
 * window row by row picks it: the first max, except that a NaN replaces
 * whatever came before it. Separable: a row pass keeps each row's max over
 * the window's columns and its column (rmax, rcol), then a column pass
 * takes the first max over the window's rows, which is the first in the
 * row-by-row order. 2k comparisons an output rather than k^2.
 */
static void pool_plane_argmax(const float *in, int h, int w, int k, float *rmax, int *rcol,
			      int *arg)
{
	int r = k / 2;
	for (int i = 0; i < h; i++)
		for (int j = 0; j < w; j++) {
			int j0 = j - r < 0 ? 0 : j - r, j1 = j - r + k > w ? w : j - r + k;
			const float *row = in + (size_t)i * w;
			float max = -INFINITY;
			int best = j0;
			for (int jj = j0; jj < j1; jj++)
				if (row[jj] > max || isnan(row[jj])) {
					max = row[jj];
					best = jj;
				}
			rmax[(size_t)i * w + j] = max;
			rcol[(size_t)i * w + j] = best;
		}
	for (int i = 0; i < h; i++) {
		int i0 = i - r < 0 ? 0 : i - r, i1 = i - r + k > h ? h : i - r + k;
		for (int j = 0; j < w; j++) {
			int j0 = j - r < 0 ? 0 : j - r;
			float max = -INFINITY;
			int best = i0 * w + j0;
			for (int ii = i0; ii < i1; ii++) {
				float v = rmax[(size_t)ii * w + j];
				if (v > max || isnan(v)) {
					max = v;
					best = ii * w + rcol[(size_t)ii * w + j];
				}
			}
			arg[(size_t)i * w + j] = best;
		}
	}
}

/* Per-thread scratch of pool_plane_argmax for planes of hw, grown on a new shape. */
static int pool_scratch(struct cpu_state *st, size_t hw, struct ut_err *err)
{
	size_t per_thread = hw * (sizeof(float) + 2 * sizeof(int));
	return grow_buffer(&st->pool, &st->pool_bytes, per_thread * (size_t)st->threads, err);
}

/* Run pool_plane_argmax on the plane with thread t's scratch. */
static const int *pool_argmax(struct cpu_state *st, const float *in, struct tr_shape s, int k)
{
	size_t hw = (size_t)s.h * s.w;
	char *base = (char *)st->pool +
		     (size_t)omp_get_thread_num() * hw * (sizeof(float) + 2 * sizeof(int));
	float *rmax = (float *)base;
	int *rcol = (int *)(rmax + hw), *arg = rcol + hw;
	pool_plane_argmax(in, s.h, s.w, k, rmax, rcol, arg);
	return arg;
}

static int cpu_maxpool_forward(struct tr_backend *b, int k, const struct tr_tensor *x,
			       struct tr_tensor *y, struct ut_err *err)
{
	struct cpu_state *st = state_of(b);
	struct tr_shape s = x->shape;
	if (tr_pool_check("maxpool_forward", k, s, y->shape, err) != 0)
		return -1;
	int planes = s.n * s.c;
	size_t hw = (size_t)s.h * s.w;
	if (pool_scratch(st, hw, err) != 0)
		return -1;
#pragma omp parallel for num_threads(st->threads)                                                  \
    schedule(static) if (tr_shape_numel(s) > PAR_MIN / 8)
	for (int p = 0; p < planes; p++) {
		const float *in = x->data + (size_t)p * hw;
		float *out = y->data + (size_t)p * hw;
		const int *arg = pool_argmax(st, in, s, k);
		for (size_t i = 0; i < hw; i++)
			out[i] = in[arg[i]];
	}
	return 0;
}

/* dx = 0, then dx[argmax] += dy per output, plane by plane (no races) */
static int cpu_maxpool_backward(struct tr_backend *b, int k, const struct tr_tensor *x,
				const struct tr_tensor *y, const struct tr_tensor *dy,
				struct tr_tensor *dx, struct ut_err *err)
{
	struct cpu_state *st = state_of(b);
	struct tr_shape s = x->shape;
	if (tr_pool_check("maxpool_backward", k, s, y->shape, err) != 0 ||
	    tr_pool_check("maxpool_backward", k, s, dy->shape, err) != 0 ||
	    tr_pool_check("maxpool_backward", k, s, dx->shape, err) != 0)
		return -1;
	int planes = s.n * s.c;
	size_t hw = (size_t)s.h * s.w;
	if (pool_scratch(st, hw, err) != 0)
		return -1;
#pragma omp parallel for num_threads(st->threads)                                                  \
    schedule(static) if (tr_shape_numel(s) > PAR_MIN / 8)
	for (int p = 0; p < planes; p++) {
		const float *in = x->data + (size_t)p * hw, *grad = dy->data + (size_t)p * hw;
		float *out = dx->data + (size_t)p * hw;
		const int *arg = pool_argmax(st, in, s, k);
		memset(out, 0, hw * sizeof(*out));
		for (size_t i = 0; i < hw; i++)
			out[arg[i]] += grad[i];
	}
	return 0;
}

/* ------------------------------------------------------------------------ */
/* nearest 2x upsample                                                       */

/* y[n,c,2h,2w]: y[i][j] = x[i/2][j/2] */
static int cpu_upsample2x_forward(struct tr_backend *b, const struct tr_tensor *x,
				  struct tr_tensor *y, struct ut_err *err)
{
	struct cpu_state *st = state_of(b);
	struct tr_shape s = x->shape;
	if (tr_upsample_check("upsample2x_forward", s, y->shape, err) != 0)
		return -1;
	int planes = s.n * s.c, ow = 2 * s.w;
	size_t hw = (size_t)s.h * s.w;
#pragma omp parallel for num_threads(st->threads)                                                  \
    schedule(static) if (tr_shape_numel(s) > PAR_MIN / 4)
	for (int p = 0; p < planes; p++) {
		const float *in = x->data + (size_t)p * hw;
		float *out = y->data + (size_t)p * hw * 4;
		for (int i = 0; i < 2 * s.h; i++)
			for (int j = 0; j < ow; j++)
				out[(size_t)i * ow + j] = in[(size_t)(i / 2) * s.w + j / 2];
	}
	return 0;
}

/* dx[i][j] = dy[2i][2j] + dy[2i][2j+1] + dy[2i+1][2j] + dy[2i+1][2j+1] */
static int cpu_upsample2x_backward(struct tr_backend *b, const struct tr_tensor *dy,
				   struct tr_tensor *dx, struct ut_err *err)
{
	struct cpu_state *st = state_of(b);
	struct tr_shape s = dx->shape;
	if (tr_upsample_check("upsample2x_backward", s, dy->shape, err) != 0)
		return -1;
	int planes = s.n * s.c, ow = 2 * s.w;
	size_t hw = (size_t)s.h * s.w;
#pragma omp parallel for num_threads(st->threads)                                                  \
    schedule(static) if (tr_shape_numel(s) > PAR_MIN / 4)
	for (int p = 0; p < planes; p++) {
		const float *g = dy->data + (size_t)p * hw * 4;
		float *out = dx->data + (size_t)p * hw;
		for (int i = 0; i < s.h; i++)
			for (int j = 0; j < s.w; j++) {
				const float *top = g + (size_t)(2 * i) * ow + 2 * j;
				out[(size_t)i * s.w + j] = top[0] + top[1] + top[ow] + top[ow + 1];
			}
	}
	return 0;
}

/* ------------------------------------------------------------------------ */
/* concat / split along channels                                             */

/* Copy each part to or from its channel range of whole, per sample. */
static void concat_copy(struct cpu_state *st, const struct tr_tensor *const *parts, int count,
			float *whole, struct tr_shape ws, int to_whole)
{
	size_t hw = (size_t)ws.h * ws.w;
#pragma omp parallel for num_threads(st->threads) schedule(static) if (tr_shape_numel(ws) > PAR_MIN)
	for (int n = 0; n < ws.n; n++) {
		size_t c0 = 0;
		for (int i = 0; i < count; i++) {
			size_t len = (size_t)parts[i]->shape.c * hw;
			float *part = parts[i]->data + (size_t)n * len;
			float *slice = whole + ((size_t)n * ws.c + c0) * hw;
			if (to_whole)
				memcpy(slice, part, len * sizeof(float));
			else
				memcpy(part, slice, len * sizeof(float));
			c0 += (size_t)parts[i]->shape.c;
		}
	}
}

static int cpu_concat_forward(struct tr_backend *b, const struct tr_tensor *const *xs, int count,
			      struct tr_tensor *y, struct ut_err *err)
{
	if (tr_concat_check("concat_forward", xs, count, y->shape, err) != 0)
		return -1;
	concat_copy(state_of(b), xs, count, y->data, y->shape, 1);
	return 0;
}

static int cpu_concat_backward(struct tr_backend *b, const struct tr_tensor *dy,
			       struct tr_tensor *const *dxs, int count, struct ut_err *err)
{
	const struct tr_tensor *const *parts = (const struct tr_tensor *const *)dxs;
	if (tr_concat_check("concat_backward", parts, count, dy->shape, err) != 0)
		return -1;
	concat_copy(state_of(b), parts, count, dy->data, dy->shape, 0);
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Detect: permute and decode                                                */

/*
 * Copy between [n, na * no, h, w] (planar) and [n, na, h, w, no] (rows),
 * one (image, anchor) plane at a time.
 */
static void detect_permute(struct cpu_state *st, int na, struct tr_shape s, float *planar,
			   float *rows, int to_rows)
{
	int no = s.c / na, planes = s.n * na;
	size_t hw = (size_t)s.h * s.w;
#pragma omp parallel for num_threads(st->threads) schedule(static) if (tr_shape_numel(s) > PAR_MIN)
	for (int p = 0; p < planes; p++) {
		float *from = planar + (size_t)p * no * hw, *to = rows + (size_t)p * hw * no;
		for (size_t cell = 0; cell < hw; cell++)
			for (int o = 0; o < no; o++) {
				if (to_rows)
					to[cell * no + o] = from[(size_t)o * hw + cell];
				else
					from[(size_t)o * hw + cell] = to[cell * no + o];
			}
	}
}

static int cpu_detect_permute_forward(struct tr_backend *b, int na, const struct tr_tensor *raw,
				      float *out, struct ut_err *err)
{
	if (tr_detect_check("detect_permute_forward", na, raw->shape, err) != 0)
		return -1;
	detect_permute(state_of(b), na, raw->shape, raw->data, out, 1);
	return 0;
}

static int cpu_detect_permute_backward(struct tr_backend *b, int na, const float *dout,
				       struct tr_tensor *draw, struct ut_err *err)
{
	if (tr_detect_check("detect_permute_backward", na, draw->shape, err) != 0)
		return -1;
	detect_permute(state_of(b), na, draw->shape, draw->data, (float *)dout, 0);
	return 0;
}

/* See struct tr_detect_level in ops.h for the layout and the formulas. */
static int cpu_detect_decode(struct tr_backend *b, const struct tr_detect_level *level,
			     const struct tr_tensor *x, float *out, struct ut_err *err)
{
	struct cpu_state *st = state_of(b);
	struct tr_shape s = x->shape;
	int na = level->na, no = level->no;
	if (na < 1 || no < 6 || s.c != na * no)
		return ut_err_set(err, "detect_decode: %d channels for %d anchors x %d outputs",
				  s.c, na, no);
	if (level->row0 < 0 || level->row0 + na * s.h * s.w > level->rows)
		return ut_err_set(err, "detect_decode: rows %d..%d outside %d", level->row0,
				  level->row0 + na * s.h * s.w, level->rows);
	size_t hw = (size_t)s.h * s.w;
	int planes = s.n * na;
#pragma omp parallel for num_threads(st->threads) schedule(static) if (tr_shape_numel(s) > PAR_MIN)
	for (int p = 0; p < planes; p++) {
		int n = p / na, a = p % na;
		const float *in = x->data + (size_t)p * no * hw; /* channels a * no .. */
		float *rows = out + ((size_t)n * level->rows + level->row0 + (size_t)a * hw) * no;
		float aw = level->anchors[2 * a] * level->stride;
		float ah = level->anchors[2 * a + 1] * level->stride;
		for (size_t cell = 0; cell < hw; cell++) {
			float *row = rows + cell * no;
			for (int k = 0; k < no; k++)
				row[k] = tr_f_sigmoid(in[(size_t)k * hw + cell]);
			float gx = (float)(cell % (size_t)s.w) - 0.5f;
			float gy = (float)(cell / (size_t)s.w) - 0.5f;
			row[0] = (row[0] * 2.0f + gx) * level->stride;
			row[1] = (row[1] * 2.0f + gy) * level->stride;
			row[2] = (row[2] * 2.0f) * (row[2] * 2.0f) * aw;
			row[3] = (row[3] * 2.0f) * (row[3] * 2.0f) * ah;
		}
	}
	return 0;
}

/* ------------------------------------------------------------------------ */
/* optimizer: update, amp unscale, gradient norm, EMA (formula.h per element) */

static int cpu_optim_update(struct tr_backend *b, const struct tr_f_optim *step, float *param,
			    const float *grad, float *slot0, float *slot1, size_t n,
			    struct ut_err *err)
{
	if (step->adam && slot1 == NULL)
		return ut_err_set(err, "optim_update: Adam needs exp_avg_sq (slot1)");
	ptrdiff_t len = (ptrdiff_t)n;
#pragma omp parallel for num_threads(state_of(b)->threads) schedule(static) if (len > PAR_MIN)
	for (ptrdiff_t k = 0; k < len; k++) {
		if (step->adam)
			tr_f_adam_update(step, &param[k], grad[k], &slot0[k], &slot1[k]);
		else
			tr_f_sgd_update(step, &param[k], grad[k], &slot0[k]);
	}
	return 0;
}

/* every value multiplied in place; the flag is an OR, so the thread count cannot change it */
static int cpu_amp_unscale(struct tr_backend *b, float *x, float inv_scale, size_t n,
			   int *found_inf, struct ut_err *err)
{
	if (tr_amp_unscale_check("amp_unscale", inv_scale, found_inf, err) != 0)
		return -1;
	ptrdiff_t len = (ptrdiff_t)n;
	int found = 0;
#pragma omp parallel for num_threads(state_of(b)->threads) schedule(static) if (len > PAR_MIN)     \
    reduction(|                                                                                    \
	      : found)
	for (ptrdiff_t k = 0; k < len; k++)
		x[k] = tr_f_amp_unscale(x[k], inv_scale, &found);
	*found_inf = found;
	return 0;
}

/* one thread, index order: the sum's rounding must not depend on the thread count */
static int cpu_sum_squares(struct tr_backend *b, const float *x, size_t n, double *out,
			   struct ut_err *err)
{
	(void)b;
	(void)err;
	double sum = 0.0;
	for (size_t k = 0; k < n; k++)
		sum += (double)x[k] * (double)x[k];
	*out = sum;
	return 0;
}

static int cpu_scale(struct tr_backend *b, float *x, float factor, size_t n, struct ut_err *err)
{
	(void)err;
	ptrdiff_t len = (ptrdiff_t)n;
#pragma omp parallel for num_threads(state_of(b)->threads) schedule(static) if (len > PAR_MIN)
	for (ptrdiff_t k = 0; k < len; k++)
		x[k] *= factor;
	return 0;
}

static int cpu_ema_update(struct tr_backend *b, float *ema, const float *model, float keep,
			  float take, size_t n, struct ut_err *err)
{
	(void)err;
	ptrdiff_t len = (ptrdiff_t)n;
#pragma omp parallel for num_threads(state_of(b)->threads) schedule(static) if (len > PAR_MIN)
	for (ptrdiff_t k = 0; k < len; k++)
		ema[k] = tr_f_ema_update(ema[k], model[k], keep, take);
	return 0;
}

/* ------------------------------------------------------------------------ */
/* the loss's dense objectness                                               */

/* one thread, cell order: the sum's rounding must not depend on the thread count */
static int cpu_loss_obj_dense(struct tr_backend *b, const struct tr_f_bce *bce, double scale,
			      const float *pred, float *grad, size_t cells, int width,
			      double *obj_sum, struct ut_err *err)
{
	(void)b;
	if (width < 6)
		return ut_err_set(err, "loss_obj_dense: rows of %d values (need nc + 5)", width);
	double sum = 0.0;
	for (size_t c = 0; c < cells; c++)
		sum += tr_f_obj_cell(bce, scale, pred + c * width,
				     grad != NULL ? grad + c * width : NULL, width);
	*obj_sum = sum;
	return 0;
}

/* ------------------------------------------------------------------------ */
/* bilinear resize, --quad's collate                                         */

static int cpu_resize_bilinear(struct tr_backend *b, const struct tr_tensor *x, struct tr_tensor *y,
			       struct ut_err *err)
{
	struct tr_shape in = x->shape, out = y->shape;
	if (in.n != out.n || in.c != out.c || in.h < 1 || in.w < 1 || out.h < 1 || out.w < 1)
		return ut_err_set(err, "resize_bilinear: %dx%dx%dx%d to %dx%dx%dx%d", in.n, in.c,
				  in.h, in.w, out.n, out.c, out.h, out.w);
	int planes = in.n * in.c;
	size_t in_hw = (size_t)in.h * in.w, out_hw = (size_t)out.h * out.w;
#pragma omp parallel for num_threads(state_of(b)->threads)                                         \
    schedule(static) if (tr_shape_numel(out) > PAR_MIN)
	for (int p = 0; p < planes; p++) {
		const float *src = x->data + (size_t)p * in_hw;
		float *dst = y->data + (size_t)p * out_hw;
		for (int i = 0; i < out.h; i++) {
			int y0, y1;
			float ly;
			tr_f_bilinear_source(i, in.h, out.h, &y0, &y1, &ly);
			for (int j = 0; j < out.w; j++) {
				int x0, x1;
				float lx;
				tr_f_bilinear_source(j, in.w, out.w, &x0, &x1, &lx);
				dst[(size_t)i * out.w + j] =
				    tr_f_bilinear(src, in.w, y0, y1, ly, x0, x1, lx);
			}
		}
	}
	return 0;
}

/* One plane of a quad: image 4q's bytes upsampled 2x, truncated, / 255. */
static void quad_upsample_plane(const uint8_t *src, int h, int w, float *dst)
{
	for (int i = 0; i < 2 * h; i++) {
		int y0, y1;
		float ly;
		tr_f_bilinear_source(i, h, 2 * h, &y0, &y1, &ly);
		for (int j = 0; j < 2 * w; j++) {
			int x0, x1;
			float lx;
			tr_f_bilinear_source(j, w, 2 * w, &x0, &x1, &lx);
			float value = tr_f_bilinear_u8(src, w, y0, y1, ly, x0, x1, lx);
			dst[(size_t)i * 2 * w + j] = tr_f_u8_to_float((uint8_t)value);
		}
	}
}

static int cpu_quad_collate(struct tr_backend *b, const uint8_t *bytes,
			    const struct tr_tensor *images, const uint8_t *upsample, float *out,
			    struct ut_err *err)
{
	struct tr_shape s = images->shape;
	if (tr_quad_check("quad_collate", s, err) != 0)
		return -1;
	int planes = s.n / 4 * s.c;
	size_t plane = (size_t)s.h * s.w, big = 4 * plane;
#pragma omp parallel for num_threads(state_of(b)->threads)                                         \
    schedule(static) if (planes * big > PAR_MIN)
	for (int p = 0; p < planes; p++) {
		int q = p / s.c, c = p % s.c;
		float *dst = out + (size_t)p * big;
		if (upsample[q]) {
			quad_upsample_plane(bytes + ((size_t)4 * q * s.c + c) * plane, s.h, s.w,
					    dst);
			continue;
		}
		for (int k = 0; k < 4; k++) {
			const float *src = images->data + ((size_t)(4 * q + k) * s.c + c) * plane;
			int oy = (k & 1) * s.h, ox = (k >> 1) * s.w;
			for (int y = 0; y < s.h; y++)
				memcpy(dst + (size_t)(oy + y) * 2 * s.w + ox, src + (size_t)y * s.w,
				       (size_t)s.w * sizeof(float));
		}
	}
	return 0;
}

/* ------------------------------------------------------------------------ */
/* conversions: input bytes, half rounding, half-precision casts             */

static int cpu_images_to_float(struct tr_backend *b, const uint8_t *x, float *y, size_t n,
			       struct ut_err *err)
{
	(void)err;
	ptrdiff_t len = (ptrdiff_t)n;
#pragma omp parallel for num_threads(state_of(b)->threads) schedule(static) if (len > PAR_MIN)
	for (ptrdiff_t k = 0; k < len; k++)
		y[k] = tr_f_u8_to_float(x[k]);
	return 0;
}

static int cpu_round_half(struct tr_backend *b, float *x, size_t n, struct ut_err *err)
{
	(void)err;
	ptrdiff_t len = (ptrdiff_t)n;
#pragma omp parallel for num_threads(state_of(b)->threads) schedule(static) if (len > PAR_MIN)
	for (ptrdiff_t k = 0; k < len; k++)
		x[k] = tr_f_round_to_half(x[k]);
	return 0;
}

/*
 * The half-precision casts: formula.h's, value by value (ops.h). One
 * function each, spelled once: CAST(name, in, out, formula), as kernels.cu.
 */
/* (unformatted: _Pragma takes one string literal, which the formatter would split) */
/* clang-format off */
#define CAST(name, in_t, out_t, formula)                                                           \
	static int cpu_##name(struct tr_backend *b, const in_t *x, out_t *y, size_t n,             \
			      struct ut_err *err)                                                  \
	{                                                                                          \
		if (tr_cast_check(#name, x, sizeof(*x), y, sizeof(*y), n, err) != 0)               \
			return -1;                                                                 \
		ptrdiff_t len = (ptrdiff_t)n;                                                      \
		_Pragma("omp parallel for num_threads(state_of(b)->threads) schedule(static) if (len > PAR_MIN)") \
		for (ptrdiff_t k = 0; k < len; k++)                                                \
			y[k] = formula(x[k]);                                                      \
		return 0;                                                                          \
	}
/* clang-format on */
CAST(float_to_fp16, float, uint16_t, tr_f_fp16_from_float)
CAST(fp16_to_float, uint16_t, float, tr_f_fp16_to_float)
CAST(float_to_bf16, float, uint16_t, tr_f_bf16_from_float)
CAST(bf16_to_float, uint16_t, float, tr_f_bf16_to_float)
#undef CAST

/* ------------------------------------------------------------------------ */
/* the table and the constructor                                             */

static const struct tr_ops cpu_ops = {
    .name = "cpu",
    .alloc = cpu_alloc,
    .free = cpu_free,
    .memset = cpu_memset,
    .upload = cpu_upload,
    .download = cpu_download,
    .sync = cpu_sync,
    .host_alloc = cpu_host_alloc,
    .host_free = cpu_host_free,
    .upload_async = cpu_upload_async,
    .upload_wait = cpu_upload_wait,
    .conv_forward = cpu_conv_forward,
    .conv_backward_data = cpu_conv_backward_data,
    .conv_backward_filter = cpu_conv_backward_filter,
    .bn_forward_train = cpu_bn_forward_train,
    .bn_forward_eval = cpu_bn_forward_eval,
    .bn_backward = cpu_bn_backward,
    .bn_channel_sums = cpu_bn_channel_sums,
    .bn_channel_affine = cpu_bn_channel_affine,
    .silu_forward = cpu_silu_forward,
    .silu_backward = cpu_silu_backward,
    .maxpool_forward = cpu_maxpool_forward,
    .maxpool_backward = cpu_maxpool_backward,
    .upsample2x_forward = cpu_upsample2x_forward,
    .upsample2x_backward = cpu_upsample2x_backward,
    .concat_forward = cpu_concat_forward,
    .concat_backward = cpu_concat_backward,
    .add_forward = cpu_add_forward,
    .detect_permute_forward = cpu_detect_permute_forward,
    .detect_permute_backward = cpu_detect_permute_backward,
    .detect_decode = cpu_detect_decode,
    .optim_update = cpu_optim_update,
    .amp_unscale = cpu_amp_unscale,
    .sum_squares = cpu_sum_squares,
    .scale = cpu_scale,
    .ema_update = cpu_ema_update,
    .loss_obj_dense = cpu_loss_obj_dense,
    .resize_bilinear = cpu_resize_bilinear,
    .quad_collate = cpu_quad_collate,
    .images_to_float = cpu_images_to_float,
    .round_half = cpu_round_half,
    .float_to_fp16 = cpu_float_to_fp16,
    .fp16_to_float = cpu_fp16_to_float,
    .float_to_bf16 = cpu_float_to_bf16,
    .bf16_to_float = cpu_bf16_to_float,
};

int tr_cpu_backend_create_layout(int threads, enum tr_cpu_layout layout, struct tr_backend **out,
				 struct ut_err *err)
{
	if (threads < 1)
		return ut_err_set(err, "cpu backend: %d threads", threads);
	struct tr_backend *b = calloc(1, sizeof(*b));
	struct cpu_state *st = calloc(1, sizeof(*st));
	if (b == NULL || st == NULL) {
		free(b);
		free(st);
		return ut_err_set(err, "%s:%d: out of memory", __FILE__, __LINE__);
	}
	b->ops = &cpu_ops;
	b->state = st;
	b->destroy = cpu_destroy;
	st->threads = threads;
	st->layout = layout;
	dnnl_status_t s = dnnl_engine_create(&st->engine, dnnl_cpu, 0);
	if (s == dnnl_success)
		s = dnnl_stream_create(&st->stream, st->engine, dnnl_stream_default_flags);
	if (s != dnnl_success) {
		cpu_destroy(b);
		return ut_err_set(err, "%s:%d: oneDNN CPU engine: %s", __FILE__, __LINE__,
				  dnnl_status2str(s));
	}
	*out = b;
	return 0;
}

int tr_cpu_backend_create(int threads, struct tr_backend **out, struct ut_err *err)
{
	return tr_cpu_backend_create_layout(threads, TR_CPU_LAYOUT_AUTO, out, err);
}
