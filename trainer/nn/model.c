/*
 * model.c - a YOLOv5 model's memory and runs (the graph comes from
 * model_yaml.c): one allocation per tensor kind, the initial weights of a
 * freshly built YOLOv5 Model, the activation plan, and the forward pass
 * (train and eval mode) and backward pass on a backend's op table.
 */
#include "model.h"
#include "model_build.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define ALIGNMENT 64

/* ---- memory ---- */

static float *alloc_floats(size_t count)
{
	size_t bytes = (count * sizeof(float) + ALIGNMENT - 1) / ALIGNMENT * ALIGNMENT;
	float *block = aligned_alloc(ALIGNMENT, bytes ? bytes : ALIGNMENT);
	if (block)
		memset(block, 0, bytes);
	return block;
}

/* count zeroed floats of device memory on the model's backend */
static int device_floats(struct tr_model *m, size_t count, float **out, struct ut_err *err)
{
	const struct tr_ops *ops = m->backend->ops;
	void *block;
	*out = NULL;
	if (ops->alloc(m->backend, count * sizeof(float), &block, err) != 0)
		return -1;
	if (ops->memset(m->backend, block, 0, count * sizeof(float), err) != 0) {
		ops->free(m->backend, block);
		return -1;
	}
	*out = block;
	return 0;
}

static void device_free(struct tr_model *m, float **block)
{
	if (*block != NULL)
		m->backend->ops->free(m->backend, *block);
	*block = NULL;
}

int tr_model_allocate(struct tr_model *m, struct ut_err *err)
{
	m->host_params = alloc_floats(m->nparam_values);
	m->host_buffers = alloc_floats(m->nbuffer_values);
	m->counters = calloc(m->ncounter_values ? m->ncounter_values : 1, sizeof(int64_t));
	if (!m->host_params || !m->host_buffers || !m->counters)
		return ut_err_set(err, "%s: out of memory for %zu parameters", m->source,
				  m->nparam_values);
	for (int i = 0; i < m->ntensors; i++) {
		struct tr_tensor_spec *t = &m->tensors[i];
		if (t->kind == TR_TENSOR_PARAM)
			t->data = m->host_params + t->offset;
		else if (t->kind == TR_TENSOR_BUFFER)
			t->data = m->host_buffers + t->offset;
		else
			t->counter = m->counters + t->offset;
	}
	for (int i = 0; i < m->nconvs; i++)
		m->convs[i].num_batches_tracked = m->tensors[m->convs[i].tensor0 + 5].counter;
	return 0;
}

/* Every named pointer into the device blocks (grads may be NULL: no gradient pointers). */
static void point_to_device(struct tr_model *m)
{
	for (int i = 0; i < m->ntensors; i++) {
		struct tr_tensor_spec *t = &m->tensors[i];
		if (t->kind == TR_TENSOR_PARAM)
			t->grad = m->grads ? m->grads + t->offset : NULL;
	}
	for (int i = 0; i < m->nconvs; i++) {
		struct tr_convbn *cb = &m->convs[i];
		const struct tr_tensor_spec *t = &m->tensors[cb->tensor0];
		cb->weight = m->params + t[0].offset;
		cb->grad_weight = t[0].grad;
		cb->gamma = m->params + t[1].offset;
		cb->grad_gamma = t[1].grad;
		cb->beta = m->params + t[2].offset;
		cb->grad_beta = t[2].grad;
		cb->running_mean = m->buffers + t[3].offset;
		cb->running_var = m->buffers + t[4].offset;
	}
	struct tr_detect *det = &m->detect;
	det->anchors = m->buffers + m->tensors[det->anchors_tensor].offset;
	for (int l = 0; l < det->nl; l++) {
		struct tr_detect_head *head = &det->heads[l];
		const struct tr_tensor_spec *t = &m->tensors[head->tensor0];
		head->weight = m->params + t[0].offset;
		head->grad_weight = t[0].grad;
		head->bias = m->params + t[1].offset;
		head->grad_bias = t[1].grad;
	}
}

/*
 * Put the state on backend the first time (parameters and buffers, uploaded
 * from the host mirror), and the gradients when asked and not there yet.
 */
static int attach(struct tr_model *m, struct tr_backend *backend, bool gradients,
		  struct ut_err *err)
{
	if (backend == NULL)
		return ut_err_set(err, "%s: no backend", m->source);
	if (m->backend != NULL && m->backend != backend)
		return ut_err_set(err, "%s: the model lives on another backend", m->source);
	bool fresh = m->backend == NULL;
	m->backend = backend;
	if (fresh && (device_floats(m, m->nparam_values, &m->params, err) != 0 ||
		      device_floats(m, m->nbuffer_values, &m->buffers, err) != 0))
		return -1;
	if (gradients && m->grads == NULL &&
	    device_floats(m, m->nparam_values, &m->grads, err) != 0)
		return -1;
	point_to_device(m);
	return fresh ? tr_model_upload(m, err) : 0;
}

int tr_model_upload(struct tr_model *m, struct ut_err *err)
{
	if (m->backend == NULL)
		return ut_err_set(err, "%s: upload before tr_model_plan", m->source);
	const struct tr_ops *ops = m->backend->ops;
	if (ops->upload(m->backend, m->params, m->host_params, m->nparam_values * sizeof(float),
			err) != 0 ||
	    ops->upload(m->backend, m->buffers, m->host_buffers, m->nbuffer_values * sizeof(float),
			err) != 0)
		return -1;
	return 0;
}

int tr_model_download(struct tr_model *m, struct ut_err *err)
{
	if (m->backend == NULL)
		return 0; /* the mirror is the only copy */
	const struct tr_ops *ops = m->backend->ops;
	if (ops->download(m->backend, m->host_params, m->params, m->nparam_values * sizeof(float),
			  err) != 0 ||
	    ops->download(m->backend, m->host_buffers, m->buffers,
			  m->nbuffer_values * sizeof(float), err) != 0)
		return -1;
	return 0;
}

void tr_model_free(struct tr_model *model)
{
	if (!model)
		return;
	if (model->backend != NULL) {
		device_free(model, &model->params);
		device_free(model, &model->grads);
		device_free(model, &model->buffers);
		device_free(model, &model->acts);
		device_free(model, &model->act_grads);
		device_free(model, &model->input);
		if (model->input_u8 != NULL)
			model->backend->ops->free(model->backend, model->input_u8);
	}
	free(model->host_params);
	free(model->host_buffers);
	free(model->counters);
	free(model->tensors);
	free(model->convs);
	free(model->layers);
	free(model);
}

/* ---- initialisation ---- */

/* BN as YOLOv5's constructor leaves it (see model.h), in the host mirror. */
void tr_model_reset_batchnorm(struct tr_model *m)
{
	for (int i = 0; i < m->nconvs; i++) {
		struct tr_convbn *cb = &m->convs[i];
		const struct tr_tensor_spec *t = &m->tensors[cb->tensor0];
		for (int c = 0; c < cb->conv.cout; c++) {
			t[1].data[c] = 1.0f; /* gamma */
			t[2].data[c] = 0.0f; /* beta */
			t[3].data[c] = 0.0f; /* running_mean */
			t[4].data[c] = 0.9f; /* running_var */
		}
		*t[5].counter = 1;
	}
}

/* PyTorch's Conv2d default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (kaiming_uniform, a = sqrt(5)). */
static void fill_uniform(float *values, size_t count, int fan_in, struct ut_pcg *rng)
{
	double bound = 1.0 / sqrt((double)fan_in);
	for (size_t i = 0; i < count; i++)
		values[i] = (float)(bound * (2.0 * ut_pcg_uniform(rng) - 1.0));
}

void tr_detect_bias_prior(struct tr_model *model)
{
	const struct tr_detect *det = &model->detect;
	double cls = log(0.6 / (det->nc - 0.99999));
	for (int l = 0; l < det->nl; l++) {
		double cells = 640.0 / det->stride[l];
		double obj = log(8.0 / (cells * cells));
		for (int a = 0; a < det->na; a++) {
			float *bias = model->tensors[det->heads[l].tensor0 + 1].data + a * det->no;
			bias[4] += (float)obj;
			for (int c = 0; c < det->nc; c++)
				bias[5 + c] += (float)cls;
		}
	}
}

void tr_model_init(struct tr_model *model, struct ut_pcg *rng)
{
	for (int i = 0; i < model->nconvs; i++) {
		const struct tr_conv *conv = &model->convs[i].conv;
		int fan_in = conv->cin * conv->k * conv->k;
		fill_uniform(model->tensors[model->convs[i].tensor0].data,
			     (size_t)conv->cout * fan_in, fan_in, rng);
	}
	const struct tr_detect *det = &model->detect;
	for (int l = 0; l < det->nl; l++) {
		const struct tr_detect_head *head = &det->heads[l];
		int fan_in = head->conv.cin;
		const struct tr_tensor_spec *t = &model->tensors[head->tensor0];
		fill_uniform(t[0].data, (size_t)head->conv.cout * fan_in, fan_in, rng);
		fill_uniform(t[1].data, (size_t)head->conv.cout, fan_in, rng);
	}
	tr_model_reset_batchnorm(model);
	tr_detect_bias_prior(model);
}

/* ---- activations ---- */

/*
 * Walks the network handing out slices of two blocks, the activations and
 * their gradients: first with the bases NULL to count, then with the
 * blocks to set every pointer. largest is the biggest slice, the size of
 * the scratch slice at the end of the gradient block.
 */
struct region {
	float *base;
	size_t used;
};

struct planner {
	const struct tr_model *model;
	struct region acts, grads;
	size_t largest;
};

/* count floats at the given stride, for the largest batch and image */
static float *take(struct planner *p, struct region *r, int channels, int stride)
{
	const struct tr_model *m = p->model;
	size_t count = (size_t)m->max_batch * (size_t)channels * (size_t)(m->max_height / stride) *
		       (size_t)(m->max_width / stride);
	float *slice = r->base ? r->base + r->used : NULL;
	r->used += (count + 15) / 16 * 16; /* keep every slice 64-byte aligned */
	if (count > p->largest)
		p->largest = count;
	return slice;
}

static void plan_convbn(struct planner *p, struct tr_convbn *cb, int stride)
{
	struct region *r = &p->acts;
	cb->conv_out = take(p, r, cb->conv.cout, stride);
	cb->bn_out = take(p, r, cb->conv.cout, stride);
	cb->out = take(p, r, cb->conv.cout, stride);
	cb->save_mean = r->base ? r->base + r->used : NULL;
	cb->save_invstd = r->base ? r->base + r->used + cb->conv.cout : NULL;
	r->used += (2 * (size_t)cb->conv.cout + 15) / 16 * 16;
	cb->grad = take(p, &p->grads, cb->conv.cout, stride);
}

static void plan_detect(struct planner *p, struct tr_detect *det)
{
	int largest = 0;
	for (int l = 0; l < det->nl; l++) {
		det->raw[l] = take(p, &p->acts, det->heads[l].conv.cout, det->stride[l]);
		det->outputs[l] = take(p, &p->acts, det->heads[l].conv.cout, det->stride[l]);
		if (det->stride[l] < det->stride[largest])
			largest = l;
	}
	det->decoded = p->acts.base ? p->acts.base + p->acts.used : NULL;
	for (int l = 0; l < det->nl; l++)
		take(p, &p->acts, det->heads[l].conv.cout, det->stride[l]);
	det->grad_raw = take(p, &p->grads, det->heads[largest].conv.cout, det->stride[largest]);
}

static void plan_layer(struct planner *p, struct tr_model *m, struct tr_layer *layer)
{
	struct tr_convbn *convs = m->convs + layer->conv0;
	int hidden = layer->nconv ? convs[0].conv.cout : 0, s = layer->stride;
	for (int i = 0; i < layer->nconv; i++)
		plan_convbn(p, &convs[i], s);
	layer->inner = layer->cat = layer->grad_cat = layer->grad_inner = NULL;
	switch (layer->type) {
	case TR_LAYER_CONV:
		layer->out = convs[0].out;
		layer->grad = convs[0].grad;
		break;
	case TR_LAYER_C3:
		if (layer->shortcut) {
			layer->inner = take(p, &p->acts, layer->bottlenecks * hidden, s);
			layer->grad_inner = take(p, &p->grads, hidden, s);
		}
		layer->cat = take(p, &p->acts, 2 * hidden, s);
		layer->grad_cat = take(p, &p->grads, 2 * hidden, s);
		layer->out = convs[2].out;
		layer->grad = convs[2].grad;
		break;
	case TR_LAYER_SPPF:
		layer->inner = take(p, &p->acts, 3 * hidden, s);
		layer->cat = take(p, &p->acts, 4 * hidden, s);
		layer->grad_inner = take(p, &p->grads, 3 * hidden, s);
		layer->grad_cat = take(p, &p->grads, 4 * hidden, s);
		layer->out = convs[1].out;
		layer->grad = convs[1].grad;
		break;
	case TR_LAYER_UPSAMPLE:
	case TR_LAYER_CONCAT:
		layer->out = take(p, &p->acts, layer->cout, s);
		layer->grad = take(p, &p->grads, layer->cout, s);
		break;
	case TR_LAYER_DETECT:
		layer->out = layer->grad = NULL;
		plan_detect(p, &m->detect);
		break;
	}
}

static void plan_all(struct planner *p, struct tr_model *model)
{
	for (int i = 0; i < model->nlayers; i++)
		plan_layer(p, model, &model->layers[i]);
	model->scratch = p->grads.base ? p->grads.base + p->grads.used : NULL;
	p->grads.used += (p->largest + 15) / 16 * 16;
}

/* The plan of tr_model_plan; without gradients for a model that only infers. */
static int plan_model(struct tr_model *model, struct tr_backend *backend, int max_batch,
		      int max_height, int max_width, bool gradients, struct ut_err *err)
{
	model->max_stride = 1;
	for (int i = 0; i < model->nlayers; i++)
		if (model->layers[i].stride > model->max_stride)
			model->max_stride = model->layers[i].stride;
	if (max_batch < 1 || max_height < 1 || max_width < 1 || max_height % model->max_stride ||
	    max_width % model->max_stride)
		return ut_err_set(err,
				  "%s: cannot plan for batch %d of %dx%d images (sizes must be "
				  "multiples of %d)",
				  model->source, max_batch, max_height, max_width,
				  model->max_stride);
	model->max_batch = max_batch;
	model->max_height = max_height;
	model->max_width = max_width;
	model->fwd_train = 0;
	if (attach(model, backend, gradients, err) != 0)
		return -1;
	struct planner p = {.model = model};
	plan_all(&p, model);
	device_free(model, &model->acts);
	device_free(model, &model->act_grads);
	model->nact_values = p.acts.used;
	model->nact_grad_values = gradients ? p.grads.used : 0;
	if (device_floats(model, p.acts.used, &model->acts, err) != 0 ||
	    (gradients && device_floats(model, p.grads.used, &model->act_grads, err) != 0))
		return ut_err_set(err, "%s: out of memory for %zu activations and %zu gradients",
				  model->source, p.acts.used, p.grads.used);
	size_t input = (size_t)max_batch * model->in_channels * max_height * max_width;
	device_free(model, &model->input);
	if (model->input_u8 != NULL)
		backend->ops->free(backend, model->input_u8);
	model->input_u8 = NULL;
	void *bytes;
	if (device_floats(model, input, &model->input, err) != 0 ||
	    backend->ops->alloc(backend, input, &bytes, err) != 0)
		return -1;
	model->input_u8 = bytes;
	p = (struct planner){
	    .model = model, .acts = {.base = model->acts}, .grads = {.base = model->act_grads}};
	plan_all(&p, model);
	return 0;
}

int tr_model_plan(struct tr_model *model, struct tr_backend *backend, int max_batch, int max_height,
		  int max_width, struct ut_err *err)
{
	return plan_model(model, backend, max_batch, max_height, max_width, true, err);
}

int tr_model_plan_inference(struct tr_model *model, struct tr_backend *backend, int max_batch,
			    int max_height, int max_width, struct ut_err *err)
{
	return plan_model(model, backend, max_batch, max_height, max_width, false, err);
}

/* ---- forward ---- */

struct forward {
	struct tr_model *model;
	struct tr_backend *backend;
	const struct tr_ops *ops;
	int batch, height, width, train;
	struct tr_tensor image;
	struct ut_err *err;
};

static struct tr_tensor view(const struct forward *f, float *data, int channels, int stride)
{
	return (struct tr_tensor){
	    .data = data, .shape = {f->batch, channels, f->height / stride, f->width / stride}};
}

static struct tr_tensor layer_input(const struct forward *f, int from)
{
	if (from == TR_FROM_INPUT)
		return f->image;
	const struct tr_layer *in = &f->model->layers[from];
	return view(f, in->out, in->cout, in->stride);
}

/* y = silu(bn(conv(x))); out receives a view of y */
static int convbn_forward(struct forward *f, struct tr_convbn *cb, const struct tr_tensor *x,
			  int stride, struct tr_tensor *out)
{
	struct tr_backend *be = f->backend;
	struct tr_tensor conv_out = view(f, cb->conv_out, cb->conv.cout, stride);
	struct tr_tensor bn_out = view(f, cb->bn_out, cb->conv.cout, stride);
	*out = view(f, cb->out, cb->conv.cout, stride);
	if (f->ops->conv_forward(be, &cb->conv, x, cb->weight, NULL, &conv_out, f->err))
		return -1;
	if (f->train) {
		if (f->ops->bn_forward_train(be, &conv_out, cb->gamma, cb->beta, TR_BN_EPS,
					     TR_BN_MOMENTUM, cb->running_mean, cb->running_var,
					     cb->save_mean, cb->save_invstd, &bn_out, f->err))
			return -1;
		++*cb->num_batches_tracked;
	} else if (f->ops->bn_forward_eval(be, &conv_out, cb->gamma, cb->beta, TR_BN_EPS,
					   cb->running_mean, cb->running_var, &bn_out, f->err)) {
		return -1;
	}
	return f->ops->silu_forward(be, &bn_out, out, f->err);
}

/* C3: cv3(cat(m(cv1(x)), cv2(x))), m = bottlenecks t -> t + cv2(cv1(t)) (or without the add) */
static int c3_forward(struct forward *f, struct tr_layer *layer, const struct tr_tensor *x)
{
	struct tr_convbn *convs = f->model->convs + layer->conv0;
	int hidden = convs[0].conv.cout, s = layer->stride;
	struct tr_tensor chain, side, inner, out;
	if (convbn_forward(f, &convs[0], x, s, &chain) || convbn_forward(f, &convs[1], x, s, &side))
		return -1;
	for (int j = 0; j < layer->bottlenecks; j++) {
		struct tr_convbn *pair = convs + 3 + 2 * j;
		struct tr_tensor mid, t;
		if (convbn_forward(f, &pair[0], &chain, s, &mid) ||
		    convbn_forward(f, &pair[1], &mid, s, &t))
			return -1;
		if (layer->shortcut) {
			inner =
			    view(f, layer->inner + (size_t)j * tr_shape_numel(t.shape), hidden, s);
			if (f->ops->add_forward(f->backend, &chain, &t, &inner, f->err))
				return -1;
			t = inner;
		}
		chain = t;
	}
	struct tr_tensor cat = view(f, layer->cat, 2 * hidden, s);
	const struct tr_tensor *parts[2] = {&chain, &side};
	if (f->ops->concat_forward(f->backend, parts, 2, &cat, f->err))
		return -1;
	return convbn_forward(f, &convs[2], &cat, s, &out);
}

/* SPPF: cv2(cat(y0, y1, y2, y3)), y0 = cv1(x), y(i+1) = maxpool(yi) */
static int sppf_forward(struct forward *f, struct tr_layer *layer, const struct tr_tensor *x)
{
	struct tr_convbn *convs = f->model->convs + layer->conv0;
	int hidden = convs[0].conv.cout, s = layer->stride;
	struct tr_tensor pooled[4], out;
	if (convbn_forward(f, &convs[0], x, s, &pooled[0]))
		return -1;
	for (int i = 1; i < 4; i++) {
		pooled[i] = view(
		    f, layer->inner + (size_t)(i - 1) * tr_shape_numel(pooled[0].shape), hidden, s);
		if (f->ops->maxpool_forward(f->backend, layer->pool_k, &pooled[i - 1], &pooled[i],
					    f->err))
			return -1;
	}
	struct tr_tensor cat = view(f, layer->cat, 4 * hidden, s);
	const struct tr_tensor *parts[4] = {&pooled[0], &pooled[1], &pooled[2], &pooled[3]};
	if (f->ops->concat_forward(f->backend, parts, 4, &cat, f->err))
		return -1;
	return convbn_forward(f, &convs[1], &cat, s, &out);
}

static int detect_forward(struct forward *f, struct tr_layer *layer)
{
	struct tr_detect *det = &f->model->detect;
	det->cells = 0;
	for (int l = 0; l < det->nl; l++)
		det->cells += det->na * (f->height / det->stride[l]) * (f->width / det->stride[l]);
	int first = 0;
	for (int l = 0; l < det->nl; l++) {
		struct tr_detect_head *head = &det->heads[l];
		struct tr_tensor x = layer_input(f, layer->from[l]);
		struct tr_tensor raw = view(f, det->raw[l], head->conv.cout, det->stride[l]);
		if (f->ops->conv_forward(f->backend, &head->conv, &x, head->weight, head->bias,
					 &raw, f->err) ||
		    f->ops->detect_permute_forward(f->backend, det->na, &raw, det->outputs[l],
						   f->err))
			return -1;
		struct tr_detect_level level = {.na = det->na,
						.no = det->no,
						.anchors = det->anchors + (size_t)l * det->na * 2,
						.stride = (float)det->stride[l],
						.rows = det->cells,
						.row0 = first};
		if (!f->train &&
		    f->ops->detect_decode(f->backend, &level, &raw, det->decoded, f->err))
			return -1;
		first += det->na * raw.shape.h * raw.shape.w;
	}
	return 0;
}

static int layer_forward(struct forward *f, struct tr_layer *layer)
{
	struct tr_tensor x = layer_input(f, layer->from[0]), out;
	switch (layer->type) {
	case TR_LAYER_CONV:
		return convbn_forward(f, &f->model->convs[layer->conv0], &x, layer->stride, &out);
	case TR_LAYER_C3:
		return c3_forward(f, layer, &x);
	case TR_LAYER_SPPF:
		return sppf_forward(f, layer, &x);
	case TR_LAYER_UPSAMPLE:
		out = view(f, layer->out, layer->cout, layer->stride);
		return f->ops->upsample2x_forward(f->backend, &x, &out, f->err);
	case TR_LAYER_CONCAT: {
		struct tr_tensor inputs[TR_MAX_FROM];
		const struct tr_tensor *parts[TR_MAX_FROM];
		for (int i = 0; i < layer->nfrom; i++) {
			inputs[i] = layer_input(f, layer->from[i]);
			parts[i] = &inputs[i];
		}
		out = view(f, layer->out, layer->cout, layer->stride);
		return f->ops->concat_forward(f->backend, parts, layer->nfrom, &out, f->err);
	}
	case TR_LAYER_DETECT:
		return detect_forward(f, layer);
	}
	return ut_err_set(f->err, "layer type %d", (int)layer->type);
}

int tr_model_forward(struct tr_model *model, struct tr_backend *backend, const float *images,
		     int batch, int height, int width, int train, struct ut_err *err)
{
	if (!model->acts)
		return ut_err_set(err, "%s: forward before tr_model_plan", model->source);
	if (backend != model->backend)
		return ut_err_set(err, "%s: forward on a backend the model is not planned on",
				  model->source);
	if (batch < 1 || batch > model->max_batch || height < 1 || height > model->max_height ||
	    width < 1 || width > model->max_width || height % model->max_stride ||
	    width % model->max_stride)
		return ut_err_set(err,
				  "%s: batch %d of %dx%d images outside the plan (%d of %dx%d, "
				  "multiples of %d)",
				  model->source, batch, height, width, model->max_batch,
				  model->max_height, model->max_width, model->max_stride);
	struct forward f = {.model = model,
			    .backend = backend,
			    .ops = backend->ops,
			    .batch = batch,
			    .height = height,
			    .width = width,
			    .train = train,
			    .err = err};
	f.image = (struct tr_tensor){.data = (float *)images,
				     .shape = {batch, model->in_channels, height, width}};
	model->fwd_train = 0; /* until this pass has finished */
	for (int i = 0; i < model->nlayers; i++) {
		if (layer_forward(&f, &model->layers[i])) {
			char what[UT_ERR_LEN];
			snprintf(what, sizeof(what), "%s", err ? err->msg : "");
			return ut_err_set(err, "%s: forward of layer %d: %s", model->source, i,
					  what);
		}
	}
	model->fwd_batch = batch;
	model->fwd_height = height;
	model->fwd_width = width;
	model->fwd_train = train;
	model->fwd_images = images;
	return 0;
}

/* ---- backward ---- */

/*
 * The backward pass walks the layers in reverse. Every layer with an
 * output gradient (layer->grad) receives it from its consumers, which come
 * later in the network and so run first: the first consumer assigns it,
 * later ones write their part into model->scratch and add it
 * (grad_input_begin / grad_input_end). Inside a Conv block the gradient
 * goes through SiLU and BN in place in cb->grad.
 */

/* Where the gradient of layer input `from` goes: its grad, or scratch when that already holds
 * another consumer's part. NULL data for the image (its gradient is not needed). */
static struct tr_tensor grad_input_begin(const struct forward *f, int from, float *scratch,
					 int *accumulate)
{
	*accumulate = 0;
	if (from == TR_FROM_INPUT)
		return (struct tr_tensor){.data = NULL, .shape = f->image.shape};
	struct tr_layer *in = &f->model->layers[from];
	struct tr_tensor target = view(f, in->grad, in->cout, in->stride);
	if (in->grad_written) {
		*accumulate = 1;
		target.data = scratch;
	} else {
		in->grad_written = 1;
	}
	return target;
}

/* With accumulate, add the part in target (scratch) to the input's grad. */
static int grad_input_end(struct forward *f, int from, const struct tr_tensor *target,
			  int accumulate)
{
	if (!accumulate)
		return 0;
	const struct tr_layer *in = &f->model->layers[from];
	struct tr_tensor grad = view(f, in->grad, in->cout, in->stride);
	return f->ops->add_forward(f->backend, &grad, target, &grad, f->err);
}

/*
 * Conv block backward: dy = dLoss/d cb->out (may be cb->grad itself) through
 * SiLU and BN into cb->grad, then grad_weight += corr(x, cb->grad) and, when
 * dx->data is not NULL, dx = conv_transpose(cb->grad). x is the block's
 * input [n, cin, h * conv stride, w * conv stride]; stride its output's.
 */
static int convbn_backward(struct forward *f, struct tr_convbn *cb, const struct tr_tensor *dy,
			   const struct tr_tensor *x, int stride, struct tr_tensor *dx)
{
	struct tr_backend *be = f->backend;
	struct tr_tensor bn_out = view(f, cb->bn_out, cb->conv.cout, stride);
	struct tr_tensor conv_out = view(f, cb->conv_out, cb->conv.cout, stride);
	struct tr_tensor grad = view(f, cb->grad, cb->conv.cout, stride);
	if (f->ops->silu_backward(be, &bn_out, dy, &grad, f->err) ||
	    f->ops->bn_backward(be, &conv_out, &grad, cb->gamma, cb->save_mean, cb->save_invstd,
				&grad, cb->grad_gamma, cb->grad_beta, f->err) ||
	    f->ops->conv_backward_filter(be, &cb->conv, x, &grad, cb->grad_weight, NULL, f->err))
		return -1;
	if (dx->data == NULL)
		return 0;
	return f->ops->conv_backward_data(be, &cb->conv, &grad, cb->weight, dx, f->err);
}

/* A Conv block whose input is layer input `from` (Conv layers, C3 cv1/cv2, SPPF cv1). */
static int convbn_backward_to_input(struct forward *f, struct tr_convbn *cb,
				    const struct tr_tensor *dy, int from, int stride)
{
	struct tr_tensor x = layer_input(f, from);
	int accumulate;
	struct tr_tensor dx = grad_input_begin(f, from, f->model->scratch, &accumulate);
	if (convbn_backward(f, cb, dy, &x, stride, &dx))
		return -1;
	return grad_input_end(f, from, &dx, accumulate);
}

/*
 * C3 backward. Forward: c0 = cv1(x), c(j+1) = c(j) + t(j) (or t(j) without
 * shortcut), t(j) = m.j.cv2(m.j.cv1(c(j))), out = cv3(cat(c(B), cv2(x))).
 * With shortcut, grad_inner holds dLoss/d c(j+1) and collects dLoss/d c(j).
 */
static int c3_backward(struct forward *f, struct tr_layer *layer)
{
	struct tr_model *m = f->model;
	struct tr_convbn *convs = m->convs + layer->conv0;
	int hidden = convs[0].conv.cout, s = layer->stride, nb = layer->bottlenecks;
	size_t plane = (size_t)f->batch * hidden * (f->height / s) * (f->width / s);
	struct tr_tensor grad = view(f, layer->grad, layer->cout, s);
	struct tr_tensor cat = view(f, layer->cat, 2 * hidden, s);
	struct tr_tensor grad_cat = view(f, layer->grad_cat, 2 * hidden, s);
	if (convbn_backward(f, &convs[2], &grad, &cat, s, &grad_cat))
		return -1;
	/* dLoss/d c(B): the chain buffer, the last bottleneck's grad, or cv1's grad */
	float *grad_chain = nb == 0	      ? convs[0].grad
			    : layer->shortcut ? layer->grad_inner
					      : convs[3 + 2 * (nb - 1) + 1].grad;
	struct tr_tensor dchain = view(f, grad_chain, hidden, s);
	struct tr_tensor dside = view(f, convs[1].grad, hidden, s);
	struct tr_tensor *parts[2] = {&dchain, &dside};
	if (f->ops->concat_backward(f->backend, &grad_cat, parts, 2, f->err))
		return -1;
	for (int j = nb - 1; j >= 0; j--) {
		struct tr_convbn *pair = convs + 3 + 2 * j;
		struct tr_tensor mid = view(f, pair[0].out, hidden, s);
		struct tr_tensor dmid = view(f, pair[0].grad, hidden, s);
		/* c(j): cv1's output, or the previous bottleneck's */
		float *chain_in = j == 0	    ? convs[0].out
				  : layer->shortcut ? layer->inner + (size_t)(j - 1) * plane
						    : pair[-1].out;
		struct tr_tensor c = view(f, chain_in, hidden, s);
		if (!layer->shortcut) {
			struct tr_tensor dt = view(f, pair[1].grad, hidden, s);
			struct tr_tensor dc =
			    view(f, j == 0 ? convs[0].grad : pair[-1].grad, hidden, s);
			if (convbn_backward(f, &pair[1], &dt, &mid, s, &dmid) ||
			    convbn_backward(f, &pair[0], &dmid, &c, s, &dc))
				return -1;
			continue;
		}
		struct tr_tensor dnext = view(f, layer->grad_inner, hidden, s);
		struct tr_tensor part = view(f, m->scratch, hidden, s);
		struct tr_tensor dc = j == 0 ? view(f, convs[0].grad, hidden, s) : dnext;
		if (convbn_backward(f, &pair[1], &dnext, &mid, s, &dmid) ||
		    convbn_backward(f, &pair[0], &dmid, &c, s, &part) ||
		    f->ops->add_forward(f->backend, &dnext, &part, &dc, f->err))
			return -1;
	}
	struct tr_tensor dcv2 = view(f, convs[1].grad, hidden, s);
	struct tr_tensor dcv1 = view(f, convs[0].grad, hidden, s);
	if (convbn_backward_to_input(f, &convs[1], &dcv2, layer->from[0], s))
		return -1;
	return convbn_backward_to_input(f, &convs[0], &dcv1, layer->from[0], s);
}

/* SPPF backward: pool i's gradient adds its share to pool i - 1's, down to cv1's output. */
static int sppf_backward(struct forward *f, struct tr_layer *layer)
{
	struct tr_model *m = f->model;
	struct tr_convbn *convs = m->convs + layer->conv0;
	int hidden = convs[0].conv.cout, s = layer->stride;
	size_t plane = (size_t)f->batch * hidden * (f->height / s) * (f->width / s);
	struct tr_tensor grad = view(f, layer->grad, layer->cout, s);
	struct tr_tensor cat = view(f, layer->cat, 4 * hidden, s);
	struct tr_tensor grad_cat = view(f, layer->grad_cat, 4 * hidden, s);
	struct tr_tensor pooled[4], dpooled[4], part = view(f, m->scratch, hidden, s);
	struct tr_tensor *parts[4];
	pooled[0] = view(f, convs[0].out, hidden, s);
	dpooled[0] = view(f, convs[0].grad, hidden, s);
	for (int i = 1; i < 4; i++) {
		pooled[i] = view(f, layer->inner + (size_t)(i - 1) * plane, hidden, s);
		dpooled[i] = view(f, layer->grad_inner + (size_t)(i - 1) * plane, hidden, s);
	}
	for (int i = 0; i < 4; i++)
		parts[i] = &dpooled[i];
	if (convbn_backward(f, &convs[1], &grad, &cat, s, &grad_cat) ||
	    f->ops->concat_backward(f->backend, &grad_cat, parts, 4, f->err))
		return -1;
	for (int i = 3; i >= 1; i--)
		if (f->ops->maxpool_backward(f->backend, layer->pool_k, &pooled[i - 1], &pooled[i],
					     &dpooled[i], &part, f->err) ||
		    f->ops->add_forward(f->backend, &dpooled[i - 1], &part, &dpooled[i - 1],
					f->err))
			return -1;
	return convbn_backward_to_input(f, &convs[0], &dpooled[0], layer->from[0], s);
}

/* Concat backward: split the gradient among the inputs (adding where one already has some). */
static int concat_backward(struct forward *f, struct tr_layer *layer)
{
	struct tr_tensor grad = view(f, layer->grad, layer->cout, layer->stride);
	struct tr_tensor targets[TR_MAX_FROM];
	struct tr_tensor *parts[TR_MAX_FROM];
	int accumulate[TR_MAX_FROM];
	float *scratch = f->model->scratch;
	for (int i = 0; i < layer->nfrom; i++) {
		targets[i] = grad_input_begin(f, layer->from[i], scratch, &accumulate[i]);
		if (targets[i].data == NULL)
			return ut_err_set(f->err, "Concat of the image itself has no backward");
		if (accumulate[i])
			scratch += tr_shape_numel(targets[i].shape);
		parts[i] = &targets[i];
	}
	if (f->ops->concat_backward(f->backend, &grad, parts, layer->nfrom, f->err))
		return -1;
	for (int i = 0; i < layer->nfrom; i++)
		if (grad_input_end(f, layer->from[i], &targets[i], accumulate[i]))
			return -1;
	return 0;
}

static int upsample_backward(struct forward *f, struct tr_layer *layer)
{
	struct tr_tensor grad = view(f, layer->grad, layer->cout, layer->stride);
	int accumulate;
	struct tr_tensor dx = grad_input_begin(f, layer->from[0], f->model->scratch, &accumulate);
	if (dx.data == NULL)
		return ut_err_set(f->err, "Upsample of the image itself has no backward");
	if (f->ops->upsample2x_backward(f->backend, &grad, &dx, f->err))
		return -1;
	return grad_input_end(f, layer->from[0], &dx, accumulate);
}

/* Detect backward: dout[l] [n, na, ny, nx, no] to grad_raw [n, na * no, ny, nx], then the conv. */
static int detect_backward(struct forward *f, struct tr_layer *layer, const float *const *dout)
{
	struct tr_detect *det = &f->model->detect;
	for (int l = 0; l < det->nl; l++) {
		struct tr_detect_head *head = &det->heads[l];
		struct tr_tensor draw = view(f, det->grad_raw, head->conv.cout, det->stride[l]);
		if (f->ops->detect_permute_backward(f->backend, det->na, dout[l], &draw, f->err))
			return -1;
		struct tr_tensor x = layer_input(f, layer->from[l]);
		if (f->ops->conv_backward_filter(f->backend, &head->conv, &x, &draw,
						 head->grad_weight, head->grad_bias, f->err))
			return -1;
		int accumulate;
		struct tr_tensor dx =
		    grad_input_begin(f, layer->from[l], f->model->scratch, &accumulate);
		if (dx.data != NULL && (f->ops->conv_backward_data(f->backend, &head->conv, &draw,
								   head->weight, &dx, f->err) ||
					grad_input_end(f, layer->from[l], &dx, accumulate)))
			return -1;
	}
	return 0;
}

static int layer_backward(struct forward *f, struct tr_layer *layer, const float *const *dout)
{
	if (layer->type == TR_LAYER_DETECT)
		return detect_backward(f, layer, dout);
	if (!layer->grad_written) /* nothing consumes its output: no gradient flows */
		return 0;
	switch (layer->type) {
	case TR_LAYER_CONV: {
		struct tr_convbn *cb = &f->model->convs[layer->conv0];
		struct tr_tensor grad = view(f, layer->grad, layer->cout, layer->stride);
		return convbn_backward_to_input(f, cb, &grad, layer->from[0], layer->stride);
	}
	case TR_LAYER_C3:
		return c3_backward(f, layer);
	case TR_LAYER_SPPF:
		return sppf_backward(f, layer);
	case TR_LAYER_UPSAMPLE:
		return upsample_backward(f, layer);
	case TR_LAYER_CONCAT:
		return concat_backward(f, layer);
	case TR_LAYER_DETECT:
		break;
	}
	return ut_err_set(f->err, "layer type %d", (int)layer->type);
}

int tr_model_backward(struct tr_model *model, struct tr_backend *backend, const float *const *dout,
		      struct ut_err *err)
{
	if (!model->acts || !model->act_grads || !model->fwd_train)
		return ut_err_set(err, "%s: backward needs a train-mode forward pass first",
				  model->source);
	if (backend != model->backend)
		return ut_err_set(err, "%s: backward on a backend the model is not planned on",
				  model->source);
	struct forward f = {.model = model,
			    .backend = backend,
			    .ops = backend->ops,
			    .batch = model->fwd_batch,
			    .height = model->fwd_height,
			    .width = model->fwd_width,
			    .train = 1,
			    .err = err};
	f.image = (struct tr_tensor){.data = (float *)model->fwd_images,
				     .shape = {f.batch, model->in_channels, f.height, f.width}};
	for (int i = 0; i < model->nlayers; i++)
		model->layers[i].grad_written = 0;
	for (int i = model->nlayers - 1; i >= 0; i--) {
		if (layer_backward(&f, &model->layers[i], dout)) {
			char what[UT_ERR_LEN];
			snprintf(what, sizeof(what), "%s", err ? err->msg : "");
			return ut_err_set(err, "%s: backward of layer %d: %s", model->source, i,
					  what);
		}
	}
	return 0;
}

/* ---- queries ---- */

int64_t tr_model_num_params(const struct tr_model *model)
{
	return (int64_t)model->nparam_values;
}

struct tr_tensor_spec *tr_model_find(const struct tr_model *model, const char *name)
{
	for (int i = 0; i < model->ntensors; i++)
		if (!strcmp(model->tensors[i].name, name))
			return &model->tensors[i];
	return NULL;
}

static const char *layer_type_name(enum tr_layer_type type)
{
	static const char *const names[] = {
	    [TR_LAYER_CONV] = "Conv",	  [TR_LAYER_C3] = "C3",
	    [TR_LAYER_SPPF] = "SPPF",	  [TR_LAYER_UPSAMPLE] = "Upsample",
	    [TR_LAYER_CONCAT] = "Concat", [TR_LAYER_DETECT] = "Detect",
	};
	return names[type];
}

int tr_model_describe(const struct tr_model *model, struct ut_buf *out)
{
	if (ut_buf_printf(out, "%3s %18s %3s %10s  %-10s %6s %6s\n", "", "from", "n", "params",
			  "module", "cout", "stride"))
		return -1;
	for (int i = 0; i < model->nlayers; i++) {
		const struct tr_layer *layer = &model->layers[i];
		char from[96] = "";
		size_t used = 0;
		for (int j = 0; j < layer->nfrom && used < sizeof(from); j++)
			used += (size_t)snprintf(from + used, sizeof(from) - used, "%s%d",
						 j ? "," : "", layer->from[j]);
		if (ut_buf_printf(out, "%3d %18s %3d %10lld  %-10s %6d %6d\n", i, from,
				  layer->repeats, (long long)layer->nparams,
				  layer_type_name(layer->type), layer->cout, layer->stride))
			return -1;
	}
	return ut_buf_printf(out, "%d layers, %lld parameters\n", model->nlayers,
			     (long long)tr_model_num_params(model));
}
