/*
 * model_yaml.c - YOLOv5 v7.0's parse_model in C: reads a model yaml with
 * libyaml, builds the layer graph with YOLOv5's channel and depth rounding,
 * names every tensor as YOLOv5's state_dict does, then has the memory
 * allocated (model.c) and sets strides, anchors and BN as YOLOv5's
 * constructor leaves them.
 *
 * Building happens in four steps: parse rows into layers (which registers
 * each tensor's name, kind and shape), allocate one block per tensor kind,
 * bind the named pointers into the blocks, then set strides, anchors and the
 * deterministic initial state.
 */
#include "model.h"
#include "model_build.h"

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#define MAX_ARGS 8

/* A yaml row argument after YOLOv5's eval(): None, a bool, a number, a string or a list. */
enum arg_kind { ARG_NONE, ARG_BOOL, ARG_NUMBER, ARG_STRING, ARG_LIST };

struct arg {
	enum arg_kind kind;
	double number; /* ARG_BOOL (0/1) and ARG_NUMBER */
	bool is_int;
	const char *text;  /* ARG_STRING */
	yaml_node_t *list; /* ARG_LIST */
};

/* One [from, number, module, args] row, with what the error messages need. */
struct row {
	int index;	     /* layer index over backbone + head */
	const char *section; /* "backbone" or "head" */
	int section_row;
	int line;
	int nfrom;
	int from[TR_MAX_FROM]; /* as written (relative or absolute) */
	int number;
	const char *module;
	int nargs;
	struct arg args[MAX_ARGS];
};

struct builder {
	struct tr_model *model;
	yaml_document_t *doc;
	yaml_node_t *anchors; /* the top-level anchors node */
	int na_top, no_top;   /* parse_model's na and no, from the top-level anchors */
	int cap_layers, cap_convs, cap_tensors;
	float *anchors_px; /* Detect's anchors in pixels, [nl, na, 2] */
	int anchors_count; /* > 0: Model(anchors=N) replaced the yaml's anchors by this count */
	struct ut_err *err;
};

/* ---- errors ---- */

static int row_error(const struct builder *b, const struct row *row, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int row_error(const struct builder *b, const struct row *row, const char *fmt, ...)
{
	char what[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	return ut_err_set(b->err, "%s:%d: layer %d (%s row %d): %s", b->model->source, row->line,
			  row->index, row->section, row->section_row, what);
}

static int node_line(const yaml_node_t *node)
{
	return (int)node->start_mark.line + 1;
}

/* ---- growing tables (construction time only) ---- */

static int grow(void **items, int *cap, int count, size_t size)
{
	if (count < *cap)
		return 0;
	int cap_new = *cap ? *cap * 2 : 64;
	void *grown = realloc(*items, (size_t)cap_new * size);
	if (!grown)
		return -1;
	*items = grown;
	*cap = cap_new;
	return 0;
}

static int add_tensor(struct builder *b, enum tr_tensor_kind kind, int ndim, const int *shape,
		      const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Register one state_dict entry; returns its index in the table, or -1. */
static int add_tensor(struct builder *b, enum tr_tensor_kind kind, int ndim, const int *shape,
		      const char *fmt, ...)
{
	struct tr_model *m = b->model;
	if (grow((void **)&m->tensors, &b->cap_tensors, m->ntensors, sizeof(*m->tensors)))
		return ut_err_set(b->err, "%s: out of memory", m->source);
	struct tr_tensor_spec *t = &m->tensors[m->ntensors];
	memset(t, 0, sizeof(*t));
	va_list ap;
	va_start(ap, fmt);
	int len = vsnprintf(t->name, sizeof(t->name), fmt, ap);
	va_end(ap);
	if (len < 0 || (size_t)len >= sizeof(t->name))
		return ut_err_set(b->err, "%s: tensor name too long: %s...", m->source, t->name);
	t->kind = kind;
	t->ndim = ndim;
	t->numel = 1;
	for (int d = 0; d < ndim; d++) {
		t->shape[d] = shape[d];
		t->numel *= (size_t)shape[d];
	}
	size_t *total = kind == TR_TENSOR_PARAM	   ? &m->nparam_values
			: kind == TR_TENSOR_BUFFER ? &m->nbuffer_values
						   : &m->ncounter_values;
	t->offset = *total;
	*total += t->numel;
	return m->ntensors++;
}

/*
 * Register a Conv block (conv without bias, BN, SiLU) named prefix.conv.*,
 * prefix.bn.*; returns its index in model->convs, or -1.
 */
static int add_convbn(struct builder *b, const char *prefix, int cin, int cout, int k, int stride,
		      int pad)
{
	struct tr_model *m = b->model;
	if (grow((void **)&m->convs, &b->cap_convs, m->nconvs, sizeof(*m->convs)))
		return ut_err_set(b->err, "%s: out of memory", m->source);
	struct tr_convbn *cb = &m->convs[m->nconvs];
	memset(cb, 0, sizeof(*cb));
	cb->conv = (struct tr_conv){.cin = cin, .cout = cout, .k = k, .stride = stride, .pad = pad};
	int wshape[4] = {cout, cin, k, k};
	cb->tensor0 = add_tensor(b, TR_TENSOR_PARAM, 4, wshape, "%s.conv.weight", prefix);
	if (cb->tensor0 < 0 ||
	    add_tensor(b, TR_TENSOR_PARAM, 1, &cout, "%s.bn.weight", prefix) < 0 ||
	    add_tensor(b, TR_TENSOR_PARAM, 1, &cout, "%s.bn.bias", prefix) < 0 ||
	    add_tensor(b, TR_TENSOR_BUFFER, 1, &cout, "%s.bn.running_mean", prefix) < 0 ||
	    add_tensor(b, TR_TENSOR_BUFFER, 1, &cout, "%s.bn.running_var", prefix) < 0 ||
	    add_tensor(b, TR_TENSOR_COUNTER, 0, NULL, "%s.bn.num_batches_tracked", prefix) < 0)
		return -1;
	return m->nconvs++;
}

/* ---- yaml scalars and arguments ---- */

static bool is_plain(const yaml_node_t *node)
{
	return node->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
}

static const char *scalar_text(const yaml_node_t *node)
{
	return (const char *)node->data.scalar.value;
}

static bool text_in(const char *text, const char *const *words)
{
	for (; *words; words++)
		if (!strcmp(text, *words))
			return true;
	return false;
}

/* Parse a whole string as a number; is_int when it is a decimal integer. */
static bool parse_number(const char *text, double *value, bool *is_int)
{
	long integer;
	if (!ut_parse_long(text, -1000000000L, 1000000000L, &integer)) {
		*value = (double)integer;
		*is_int = true;
		return true;
	}
	*is_int = false;
	return ut_parse_double(text, value) == 0;
}

/* An integer scalar node (a yaml int), as PyYAML would read it. */
static bool node_int(const yaml_node_t *node, int *out)
{
	double value;
	bool is_int;
	if (!node || node->type != YAML_SCALAR_NODE ||
	    !parse_number(scalar_text(node), &value, &is_int) || !is_int)
		return false;
	*out = (int)value;
	return true;
}

static bool node_number(const yaml_node_t *node, double *out)
{
	bool is_int;
	return node && node->type == YAML_SCALAR_NODE &&
	       parse_number(scalar_text(node), out, &is_int);
}

static int seq_len(const yaml_node_t *node)
{
	return (int)(node->data.sequence.items.top - node->data.sequence.items.start);
}

static yaml_node_t *seq_item(const struct builder *b, const yaml_node_t *node, int i)
{
	return yaml_document_get_node(b->doc, node->data.sequence.items.start[i]);
}

/*
 * What YOLOv5 sees in an argument: PyYAML's typing of the scalar, then
 * eval() of strings, where 'nc' and 'anchors' name parse_model's variables.
 */
static void read_arg(const struct builder *b, yaml_node_t *node, struct arg *arg)
{
	static const char *const nulls[] = {"~", "null", "Null", "NULL", "", NULL};
	static const char *const trues[] = {"true", "True", "TRUE", "yes", "Yes",
					    "YES",  "on",   "On",   "ON",  NULL};
	static const char *const falses[] = {"false", "False", "FALSE", "no",  "No",
					     "NO",    "off",   "Off",	"OFF", NULL};
	memset(arg, 0, sizeof(*arg));
	if (node->type != YAML_SCALAR_NODE) {
		arg->kind = node->type == YAML_SEQUENCE_NODE ? ARG_LIST : ARG_STRING;
		arg->list = node;
		arg->text = "<mapping>";
		return;
	}
	const char *text = scalar_text(node);
	if (!strcmp(text, "None") || (is_plain(node) && text_in(text, nulls))) {
		arg->kind = ARG_NONE;
	} else if (!strcmp(text, "True") || (is_plain(node) && text_in(text, trues))) {
		arg->kind = ARG_BOOL;
		arg->number = 1;
	} else if (!strcmp(text, "False") || (is_plain(node) && text_in(text, falses))) {
		arg->kind = ARG_BOOL;
	} else if (parse_number(text, &arg->number, &arg->is_int)) {
		arg->kind = ARG_NUMBER;
	} else if (!strcmp(text, "nc")) {
		arg->kind = ARG_NUMBER;
		arg->number = b->model->nc;
		arg->is_int = true;
	} else if (!strcmp(text, "anchors") && b->anchors_count > 0) {
		arg->kind = ARG_NUMBER;
		arg->number = b->anchors_count;
		arg->is_int = true;
	} else if (!strcmp(text, "anchors")) {
		read_arg(b, b->anchors, arg);
	} else {
		arg->kind = ARG_STRING;
		arg->text = text;
	}
}

/* Argument i as an int, def when absent. */
static int arg_int(const struct builder *b, const struct row *row, int i, int def, int *out)
{
	if (i >= row->nargs) {
		*out = def;
		return 0;
	}
	const struct arg *arg = &row->args[i];
	if (arg->kind != ARG_NUMBER || !arg->is_int)
		return row_error(b, row, "%s argument %d must be an integer", row->module, i);
	*out = (int)arg->number;
	return 0;
}

/* ---- modules ---- */

/* YOLOv5's make_divisible(c * width_multiple, 8), except for the Detect width no. */
static int scale_channels(const struct builder *b, int channels)
{
	if (channels == b->no_top)
		return channels;
	return (int)ceil((double)channels * b->model->width_multiple / 8.0) * 8;
}

/* Argument 0 of Conv, C3 and SPPF: the output channels, width-scaled. */
static int out_channels(const struct builder *b, const struct row *row, int *cout)
{
	int written = 0;
	if (row->nargs < 1)
		return row_error(b, row, "%s needs its output channels as argument 0", row->module);
	if (arg_int(b, row, 0, 0, &written))
		return -1;
	if (written < 1)
		return row_error(b, row, "%s output channels must be positive", row->module);
	*cout = scale_channels(b, written);
	return 0;
}

static int require_single_input(const struct builder *b, const struct row *row)
{
	if (row->nfrom != 1)
		return row_error(b, row, "%s takes one input, not a list of %d", row->module,
				 row->nfrom);
	return 0;
}

static int require_once(const struct builder *b, const struct row *row)
{
	if (row->number != 1)
		return row_error(b, row, "%s cannot be repeated (number %d)", row->module,
				 row->number);
	return 0;
}

/* Conv: [c2, k = 1, s = 1, p = None (k / 2), g = 1, d = 1, act = True] */
static int build_conv(struct builder *b, const struct row *row, struct tr_layer *layer)
{
	int k = 1, stride = 1, pad = 0, groups = 1, dilation = 1;
	if (require_single_input(b, row) || require_once(b, row) ||
	    out_channels(b, row, &layer->cout) || arg_int(b, row, 1, 1, &k) ||
	    arg_int(b, row, 2, 1, &stride))
		return -1;
	if (row->nargs > 3 && row->args[3].kind == ARG_NONE)
		pad = k / 2;
	else if (arg_int(b, row, 3, k / 2, &pad))
		return -1;
	if (arg_int(b, row, 4, 1, &groups) || arg_int(b, row, 5, 1, &dilation))
		return -1;
	if (k < 1 || stride < 1 || pad < 0)
		return row_error(b, row, "Conv needs k >= 1, s >= 1, p >= 0");
	if (groups != 1 || dilation != 1)
		return row_error(b, row,
				 "Conv with groups or dilation other than 1 is not supported");
	if (row->nargs > 6 && !(row->args[6].kind == ARG_BOOL && row->args[6].number == 1))
		return row_error(b, row,
				 "Conv activations other than the default SiLU are not supported");
	if (row->nargs > 7)
		return row_error(b, row, "Conv takes at most 7 arguments");
	char prefix[TR_NAME_LEN];
	snprintf(prefix, sizeof(prefix), "model.%d", row->index);
	layer->conv0 = add_convbn(b, prefix, layer->cin, layer->cout, k, stride, pad);
	layer->nconv = 1;
	layer->stride *= stride;
	return layer->conv0 < 0 ? -1 : 0;
}

/* C3: [c2, shortcut = True, g = 1, e = 0.5], the row's number = bottlenecks. */
static int build_c3(struct builder *b, const struct row *row, struct tr_layer *layer)
{
	int groups = 1;
	double expansion = 0.5;
	layer->shortcut = 1;
	if (require_single_input(b, row) || out_channels(b, row, &layer->cout))
		return -1;
	if (row->nargs > 1) {
		const struct arg *arg = &row->args[1];
		if (arg->kind != ARG_BOOL && !(arg->kind == ARG_NUMBER && arg->is_int))
			return row_error(b, row, "C3 argument 1 (shortcut) must be True or False");
		layer->shortcut = arg->number != 0;
	}
	if (arg_int(b, row, 2, 1, &groups))
		return -1;
	if (groups != 1)
		return row_error(b, row, "C3 with groups other than 1 is not supported");
	if (row->nargs > 3) {
		if (row->args[3].kind != ARG_NUMBER || row->args[3].number <= 0)
			return row_error(b, row,
					 "C3 argument 3 (expansion) must be a positive number");
		expansion = row->args[3].number;
	}
	if (row->nargs > 4)
		return row_error(b, row, "C3 takes at most 4 arguments");
	int hidden = (int)((double)layer->cout * expansion);
	if (hidden < 1)
		return row_error(b, row, "C3 hidden channels round to 0");
	layer->bottlenecks = layer->repeats;
	char prefix[TR_NAME_LEN];
	snprintf(prefix, sizeof(prefix), "model.%d.cv1", row->index);
	layer->conv0 = add_convbn(b, prefix, layer->cin, hidden, 1, 1, 0);
	snprintf(prefix, sizeof(prefix), "model.%d.cv2", row->index);
	if (layer->conv0 < 0 || add_convbn(b, prefix, layer->cin, hidden, 1, 1, 0) < 0)
		return -1;
	snprintf(prefix, sizeof(prefix), "model.%d.cv3", row->index);
	if (add_convbn(b, prefix, 2 * hidden, layer->cout, 1, 1, 0) < 0)
		return -1;
	for (int j = 0; j < layer->bottlenecks; j++) {
		snprintf(prefix, sizeof(prefix), "model.%d.m.%d.cv1", row->index, j);
		if (add_convbn(b, prefix, hidden, hidden, 1, 1, 0) < 0)
			return -1;
		snprintf(prefix, sizeof(prefix), "model.%d.m.%d.cv2", row->index, j);
		if (add_convbn(b, prefix, hidden, hidden, 3, 1, 1) < 0)
			return -1;
	}
	layer->nconv = 3 + 2 * layer->bottlenecks;
	return 0;
}

/* SPPF: [c2, k = 5] */
static int build_sppf(struct builder *b, const struct row *row, struct tr_layer *layer)
{
	if (require_single_input(b, row) || require_once(b, row) ||
	    out_channels(b, row, &layer->cout) || arg_int(b, row, 1, 5, &layer->pool_k))
		return -1;
	if (layer->pool_k < 1 || layer->pool_k % 2 == 0)
		return row_error(b, row, "SPPF pool size must be odd and positive");
	if (row->nargs > 2)
		return row_error(b, row, "SPPF takes at most 2 arguments");
	int hidden = layer->cin / 2;
	if (hidden < 1)
		return row_error(b, row, "SPPF needs at least 2 input channels");
	char prefix[TR_NAME_LEN];
	snprintf(prefix, sizeof(prefix), "model.%d.cv1", row->index);
	layer->conv0 = add_convbn(b, prefix, layer->cin, hidden, 1, 1, 0);
	snprintf(prefix, sizeof(prefix), "model.%d.cv2", row->index);
	if (layer->conv0 < 0 || add_convbn(b, prefix, 4 * hidden, layer->cout, 1, 1, 0) < 0)
		return -1;
	layer->nconv = 2;
	return 0;
}

/* nn.Upsample: [None, 2, 'nearest'] only (size None, scale 2, nearest). */
static int build_upsample(struct builder *b, const struct row *row, struct tr_layer *layer)
{
	if (require_single_input(b, row) || require_once(b, row))
		return -1;
	bool size_none = row->nargs < 1 || row->args[0].kind == ARG_NONE;
	bool scale2 = row->nargs > 1 && row->args[1].kind == ARG_NUMBER && row->args[1].number == 2;
	bool nearest = row->nargs < 3 ||
		       (row->args[2].kind == ARG_STRING && !strcmp(row->args[2].text, "nearest"));
	if (!size_none || !scale2 || !nearest || row->nargs > 3)
		return row_error(b, row, "only nn.Upsample [None, 2, 'nearest'] is supported");
	if (layer->stride % 2)
		return row_error(b, row, "nn.Upsample of a stride-%d input", layer->stride);
	layer->cout = layer->cin;
	layer->stride /= 2;
	return 0;
}

/* Concat: [1] (channels); cin already holds the sum over the inputs. */
static int build_concat(struct builder *b, const struct row *row, struct tr_layer *layer)
{
	int dim = 1;
	if (require_once(b, row) || arg_int(b, row, 0, 1, &dim))
		return -1;
	if (dim != 1 || row->nargs > 1)
		return row_error(b, row, "only Concat [1] (along channels) is supported");
	if (row->nfrom < 2)
		return row_error(b, row, "Concat needs a list of at least 2 inputs");
	for (int i = 1; i < row->nfrom; i++) {
		int stride = b->model->layers[layer->from[i]].stride;
		if (stride != b->model->layers[layer->from[0]].stride)
			return row_error(b, row, "Concat of inputs with strides %d and %d",
					 b->model->layers[layer->from[0]].stride, stride);
	}
	layer->cout = layer->cin;
	return 0;
}

/* The Detect anchors argument: a list of flat (w, h) lists per level, or a count per level. */
static int detect_anchors(struct builder *b, const struct row *row, const struct arg *arg,
			  struct tr_detect *det)
{
	if (arg->kind == ARG_NUMBER && arg->is_int && arg->number >= 1) {
		/* YOLOv5 then uses the placeholder anchors 0, 1, 2, ... on every level. */
		det->nl = row->nfrom;
		det->na = (int)arg->number;
		b->anchors_px = calloc((size_t)det->nl * det->na * 2, sizeof(float));
		if (!b->anchors_px)
			return row_error(b, row, "out of memory");
		for (int l = 0; l < det->nl; l++)
			for (int j = 0; j < 2 * det->na; j++)
				b->anchors_px[l * 2 * det->na + j] = (float)j;
		return 0;
	}
	if (arg->kind != ARG_LIST || seq_len(arg->list) < 1)
		return row_error(b, row, "Detect anchors must be a list per level or a count");
	det->nl = seq_len(arg->list);
	if (det->nl > TR_MAX_LEVELS)
		return row_error(b, row, "Detect has more than %d levels", TR_MAX_LEVELS);
	for (int l = 0; l < det->nl; l++) {
		yaml_node_t *level = seq_item(b, arg->list, l);
		if (level->type != YAML_SEQUENCE_NODE || seq_len(level) < 2 || seq_len(level) % 2)
			return row_error(b, row,
					 "Detect anchors level %d must be a list of w, h pairs", l);
		if (l == 0) {
			det->na = seq_len(level) / 2;
			b->anchors_px = calloc((size_t)det->nl * det->na * 2, sizeof(float));
			if (!b->anchors_px)
				return row_error(b, row, "out of memory");
		} else if (seq_len(level) != 2 * det->na) {
			return row_error(b, row,
					 "Detect anchors level %d has %d values, level 0 has %d", l,
					 seq_len(level), 2 * det->na);
		}
		for (int j = 0; j < 2 * det->na; j++) {
			double value;
			if (!node_number(seq_item(b, level, j), &value) || value <= 0)
				return row_error(
				    b, row, "Detect anchor %d of level %d is not a positive number",
				    j, l);
			b->anchors_px[l * 2 * det->na + j] = (float)value;
		}
	}
	return 0;
}

/* Detect: [nc, anchors] (names of the yaml's values, or literals), one input per level. */
static int build_detect(struct builder *b, const struct row *row, struct tr_layer *layer)
{
	struct tr_model *m = b->model;
	struct tr_detect *det = &m->detect;
	int nc = 0;
	if (require_once(b, row) || arg_int(b, row, 0, 80, &nc))
		return -1;
	if (row->index == 0)
		return row_error(b, row, "Detect cannot take the image itself");
	if (row->nargs < 2 || row->nargs > 3)
		return row_error(b, row, "Detect takes [nc, anchors]");
	if (nc < 1)
		return row_error(b, row, "Detect needs nc >= 1");
	if (detect_anchors(b, row, &row->args[1], det))
		return -1;
	if (det->nl != row->nfrom)
		return row_error(b, row, "Detect has %d anchor levels but %d inputs", det->nl,
				 row->nfrom);
	det->layer = row->index;
	det->nc = nc;
	det->no = nc + 5;
	int ashape[3] = {det->nl, det->na, 2};
	det->anchors_tensor =
	    add_tensor(b, TR_TENSOR_BUFFER, 3, ashape, "model.%d.anchors", row->index);
	if (det->anchors_tensor < 0)
		return -1;
	for (int l = 0; l < det->nl; l++) {
		const struct tr_layer *in = &m->layers[layer->from[l]];
		struct tr_detect_head *head = &det->heads[l];
		head->conv = (struct tr_conv){
		    .cin = in->cout, .cout = det->na * det->no, .k = 1, .stride = 1, .pad = 0};
		int wshape[4] = {head->conv.cout, head->conv.cin, 1, 1};
		head->tensor0 = add_tensor(b, TR_TENSOR_PARAM, 4, wshape, "model.%d.m.%d.weight",
					   row->index, l);
		if (head->tensor0 < 0 || add_tensor(b, TR_TENSOR_PARAM, 1, &head->conv.cout,
						    "model.%d.m.%d.bias", row->index, l) < 0)
			return -1;
		det->stride[l] = in->stride;
	}
	layer->cout = det->na * det->no;
	return 0;
}

struct module_entry {
	const char *name;
	enum tr_layer_type type;
	int (*build)(struct builder *b, const struct row *row, struct tr_layer *layer);
};

static const struct module_entry modules[] = {
    {"Conv", TR_LAYER_CONV, build_conv},
    {"C3", TR_LAYER_C3, build_c3},
    {"SPPF", TR_LAYER_SPPF, build_sppf},
    {"nn.Upsample", TR_LAYER_UPSAMPLE, build_upsample},
    {"torch.nn.Upsample", TR_LAYER_UPSAMPLE, build_upsample},
    {"Concat", TR_LAYER_CONCAT, build_concat},
    {"Detect", TR_LAYER_DETECT, build_detect},
};

static const struct module_entry *find_module(const char *name)
{
	for (size_t i = 0; i < UT_ARRAY_LEN(modules); i++)
		if (!strcmp(modules[i].name, name))
			return &modules[i];
	return NULL;
}

/* ---- rows ---- */

/* Split a yaml row into struct row: [from, number, module, args]. */
static int read_row(struct builder *b, yaml_node_t *node, struct row *row)
{
	row->line = node_line(node);
	if (node->type != YAML_SEQUENCE_NODE || seq_len(node) != 4)
		return row_error(b, row, "a row must be [from, number, module, args]");
	yaml_node_t *from = seq_item(b, node, 0);
	yaml_node_t *number = seq_item(b, node, 1);
	yaml_node_t *module = seq_item(b, node, 2);
	yaml_node_t *args = seq_item(b, node, 3);
	if (from->type == YAML_SEQUENCE_NODE) {
		row->nfrom = seq_len(from);
		if (row->nfrom < 1 || row->nfrom > TR_MAX_FROM)
			return row_error(b, row, "from must list 1 to %d layers", TR_MAX_FROM);
		for (int i = 0; i < row->nfrom; i++)
			if (!node_int(seq_item(b, from, i), &row->from[i]))
				return row_error(b, row, "from must hold layer indices");
	} else {
		row->nfrom = 1;
		if (!node_int(from, &row->from[0]))
			return row_error(b, row, "from must be a layer index or a list of them");
	}
	if (!node_int(number, &row->number) || row->number < 1)
		return row_error(b, row, "number must be a positive integer");
	if (module->type != YAML_SCALAR_NODE)
		return row_error(b, row, "module must be a name");
	row->module = scalar_text(module);
	if (args->type != YAML_SEQUENCE_NODE)
		return row_error(b, row, "args must be a list");
	row->nargs = seq_len(args);
	if (row->nargs > MAX_ARGS)
		return row_error(b, row, "more than %d args", MAX_ARGS);
	for (int i = 0; i < row->nargs; i++)
		read_arg(b, seq_item(b, args, i), &row->args[i]);
	return 0;
}

/* Resolve from (relative indices count back from this layer), sum the input channels. */
static int connect_inputs(struct builder *b, const struct row *row, struct tr_layer *layer)
{
	struct tr_model *m = b->model;
	layer->nfrom = row->nfrom;
	layer->cin = 0;
	for (int i = 0; i < row->nfrom; i++) {
		int from = row->from[i];
		if (row->index == 0) {
			if (from != -1 || row->nfrom != 1)
				return row_error(b, row,
						 "the first layer must take from -1 (the image)");
			layer->from[0] = TR_FROM_INPUT;
			layer->cin = m->in_channels;
			layer->stride = 1;
			return 0;
		}
		int resolved = from < 0 ? row->index + from : from;
		if (resolved < 0 || resolved >= row->index)
			return row_error(b, row, "from index %d is not an earlier layer", from);
		const struct tr_layer *in = &m->layers[resolved];
		if (in->type == TR_LAYER_DETECT)
			return row_error(b, row, "from index %d is the Detect layer", from);
		layer->from[i] = resolved;
		layer->stride = in->stride;
		layer->cin += in->cout;
	}
	return 0;
}

/* Depth scaling: max(round(n * depth_multiple), 1) when n > 1; round() is half-to-even. */
static int scale_depth(const struct tr_model *m, int number)
{
	if (number <= 1)
		return number;
	int scaled = (int)nearbyint((double)number * m->depth_multiple);
	return scaled > 1 ? scaled : 1;
}

static int build_row(struct builder *b, yaml_node_t *node, struct row *row)
{
	struct tr_model *m = b->model;
	if (read_row(b, node, row))
		return -1;
	const struct module_entry *entry = find_module(row->module);
	char q[UT_QUOTE_LEN];
	if (!entry)
		return row_error(b, row, "unknown module '%s'",
				 ut_quote(row->module, q, sizeof(q)));
	if (m->nlayers > 0 && m->layers[m->nlayers - 1].type == TR_LAYER_DETECT)
		return row_error(b, row, "Detect must be the last layer");
	if (grow((void **)&m->layers, &b->cap_layers, m->nlayers, sizeof(*m->layers)))
		return row_error(b, row, "out of memory");
	struct tr_layer *layer = &m->layers[m->nlayers];
	memset(layer, 0, sizeof(*layer));
	layer->type = entry->type;
	layer->line = row->line;
	layer->repeats = scale_depth(m, row->number);
	if (connect_inputs(b, row, layer))
		return -1;
	int first_tensor = m->ntensors;
	if (entry->build(b, row, layer))
		return -1;
	for (int t = first_tensor; t < m->ntensors; t++)
		if (m->tensors[t].kind == TR_TENSOR_PARAM)
			layer->nparams += (int64_t)m->tensors[t].numel;
	m->nlayers++;
	return 0;
}

static int build_section(struct builder *b, yaml_node_t *section, const char *name)
{
	if (section->type != YAML_SEQUENCE_NODE)
		return ut_err_set(b->err, "%s:%d: %s must be a list of rows", b->model->source,
				  node_line(section), name);
	for (int i = 0; i < seq_len(section); i++) {
		struct row row = {.index = b->model->nlayers, .section = name, .section_row = i};
		if (build_row(b, seq_item(b, section, i), &row))
			return -1;
	}
	return 0;
}

/* ---- top level ---- */

static yaml_node_t *map_get(const struct builder *b, const yaml_node_t *map, const char *key)
{
	for (yaml_node_pair_t *pair = map->data.mapping.pairs.start;
	     pair < map->data.mapping.pairs.top; pair++) {
		yaml_node_t *k = yaml_document_get_node(b->doc, pair->key);
		if (k->type == YAML_SCALAR_NODE && !strcmp(scalar_text(k), key))
			return yaml_document_get_node(b->doc, pair->value);
	}
	return NULL;
}

/* nc, depth_multiple, width_multiple, anchors, ch, activation. */
static int read_header(struct builder *b, yaml_node_t *root, int nc)
{
	struct tr_model *m = b->model;
	yaml_node_t *node = map_get(b, root, "nc");
	if (nc > 0)
		m->nc = nc;
	else if (!node_int(node, &m->nc) || m->nc < 1)
		return ut_err_set(b->err, "%s: nc must be a positive integer", m->source);
	if (!node_number(map_get(b, root, "depth_multiple"), &m->depth_multiple) ||
	    m->depth_multiple <= 0)
		return ut_err_set(b->err, "%s: depth_multiple must be a positive number",
				  m->source);
	if (!node_number(map_get(b, root, "width_multiple"), &m->width_multiple) ||
	    m->width_multiple <= 0)
		return ut_err_set(b->err, "%s: width_multiple must be a positive number",
				  m->source);
	m->in_channels = 3;
	node = map_get(b, root, "ch");
	if (node && (!node_int(node, &m->in_channels) || m->in_channels < 1))
		return ut_err_set(b->err, "%s: ch must be a positive integer", m->source);
	node = map_get(b, root, "activation");
	if (node && !(node->type == YAML_SCALAR_NODE && !strcmp(scalar_text(node), "nn.SiLU()")))
		return ut_err_set(b->err,
				  "%s:%d: only the default activation nn.SiLU() is supported",
				  m->source, node_line(node));
	b->anchors = map_get(b, root, "anchors");
	if (!b->anchors)
		return ut_err_set(b->err, "%s: missing anchors", m->source);
	if (b->anchors_count > 0)
		b->na_top = b->anchors_count;
	else if (b->anchors->type == YAML_SEQUENCE_NODE && seq_len(b->anchors) > 0 &&
		 seq_item(b, b->anchors, 0)->type == YAML_SEQUENCE_NODE)
		b->na_top = seq_len(seq_item(b, b->anchors, 0)) / 2;
	else if (!node_int(b->anchors, &b->na_top) || b->na_top < 1)
		return ut_err_set(b->err, "%s:%d: anchors must be a list per level or a count",
				  m->source, node_line(b->anchors));
	b->no_top = b->na_top * (m->nc + 5);
	return 0;
}

/*
 * Anchors in grid units, after YOLOv5's check_anchor_order (levels reversed
 * when the mean anchor area falls while the stride grows).
 */
static void set_anchors(struct tr_model *m, const float *anchors_px)
{
	struct tr_detect *det = &m->detect;
	int per_level = det->na * 2;
	double first = 0, last = 0;
	for (int a = 0; a < det->na; a++) {
		first += (double)anchors_px[2 * a] * anchors_px[2 * a + 1] / det->na;
		last += (double)anchors_px[(det->nl - 1) * per_level + 2 * a] *
			anchors_px[(det->nl - 1) * per_level + 2 * a + 1] / det->na;
	}
	double area_delta = last - first;
	int stride_delta = det->stride[det->nl - 1] - det->stride[0];
	bool reverse = area_delta != 0 && (area_delta > 0) != (stride_delta > 0);
	float *anchors = m->tensors[det->anchors_tensor].data; /* host mirror */
	for (int l = 0; l < det->nl; l++) {
		int source = reverse ? det->nl - 1 - l : l;
		for (int j = 0; j < per_level; j++)
			anchors[l * per_level + j] =
			    anchors_px[source * per_level + j] / (float)det->stride[l];
	}
}

int tr_model_from_text(const char *text, size_t len, const char *source, int nc,
		       struct tr_model **out, struct ut_err *err)
{
	return tr_model_from_text_anchors(text, len, source, nc, 0, out, err);
}

int tr_model_from_text_anchors(const char *text, size_t len, const char *source, int nc,
			       int anchors_count, struct tr_model **out, struct ut_err *err)
{
	*out = NULL;
	struct tr_model *m = calloc(1, sizeof(*m));
	if (!m)
		return ut_err_set(err, "%s: out of memory", source);
	snprintf(m->source, sizeof(m->source), "%s", source);
	struct builder b = {.model = m, .anchors_count = anchors_count, .err = err};
	yaml_parser_t parser;
	yaml_document_t doc;
	int rc = -1;
	if (!yaml_parser_initialize(&parser)) {
		free(m);
		return ut_err_set(err, "%s: cannot start the yaml parser", source);
	}
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
	if (!yaml_parser_load(&parser, &doc)) {
		ut_err_set(err, "%s:%zu:%zu: %s", source, parser.problem_mark.line + 1,
			   parser.problem_mark.column + 1,
			   parser.problem ? parser.problem : "invalid yaml");
		yaml_parser_delete(&parser);
		free(m);
		return -1;
	}
	b.doc = &doc;
	yaml_node_t *root = yaml_document_get_root_node(&doc);
	yaml_node_t *backbone, *head;
	if (!root || root->type != YAML_MAPPING_NODE) {
		ut_err_set(err, "%s: a model yaml must be a mapping", source);
	} else if (read_header(&b, root, nc) == 0) {
		backbone = map_get(&b, root, "backbone");
		head = map_get(&b, root, "head");
		if (!backbone || !head)
			ut_err_set(err, "%s: missing %s", source, backbone ? "head" : "backbone");
		else if (build_section(&b, backbone, "backbone") == 0 &&
			 build_section(&b, head, "head") == 0)
			rc = 0;
	}
	if (rc == 0 && (m->nlayers == 0 || m->layers[m->nlayers - 1].type != TR_LAYER_DETECT))
		rc = ut_err_set(err, "%s: the last layer must be Detect", source);
	if (rc == 0 && tr_model_allocate(m, err) == 0) {
		set_anchors(m, b.anchors_px);
		tr_model_reset_batchnorm(m);
	} else {
		rc = -1;
	}
	free(b.anchors_px);
	yaml_document_delete(&doc);
	yaml_parser_delete(&parser);
	if (rc) {
		tr_model_free(m);
		return -1;
	}
	*out = m;
	return 0;
}

int tr_model_from_file(const char *path, int nc, struct tr_model **out, struct ut_err *err)
{
	char *text;
	size_t len;
	*out = NULL;
	if (ut_read_file(path, &text, &len, err))
		return -1;
	int rc = tr_model_from_text(text, len, path, nc, out, err);
	free(text);
	return rc;
}
