/*
 * test_model.c - YOLOv5 models from yaml (trainer/nn/model.c) against YOLOv5
 * v7.0 itself: parameter counts of the five P5 models, yolov5s layer by
 * layer, every state_dict name and shape of the golden yolov5n nc=2 model
 * (tests/golden/yolov5/model_v5n_nc2), strides, anchors, the
 * deterministic initial state, the statistics of the random init, and
 * errors that name the yaml row at fault.
 *
 * Needs YE_SOURCE_ROOT (the repository root); fails when it is unset.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include <cmocka.h>

#include "yaml_doc.h"

#include "model.h"
#include "pcg.h"
#include "safetensors.h"
#include "ut.h"

/* ---- paths and files ---- */

static void env_path(const char *variable, const char *relative, char *buf, size_t size)
{
	const char *root = getenv(variable);
	if (root == NULL || *root == '\0')
		fail_msg("%s is not set", variable);
	assert_true(snprintf(buf, size, "%s/%s", root, relative) < (int)size);
}

static struct tr_model *load_model(const char *name, int nc)
{
	char path[1024], relative[64];
	struct ut_err err = {{0}};
	struct tr_model *model = NULL;
	snprintf(relative, sizeof(relative), "models/%s.yaml", name);
	env_path("YE_SOURCE_ROOT", relative, path, sizeof(path));
	if (tr_model_from_file(path, nc, &model, &err))
		fail_msg("%s", err.msg);
	return model;
}

/* The golden yaml as a libyaml document. */
struct golden_yaml {
	yaml_document_t doc;
	yaml_node_t *root;
};

static void golden_yaml_load(struct golden_yaml *golden)
{
	char path[1024];
	env_path("YE_SOURCE_ROOT", "tests/golden/yolov5/model_v5n_nc2.yaml", path, sizeof(path));
	test_yaml_load(path, &golden->doc);
	golden->root = yaml_document_get_root_node(&golden->doc);
	assert_non_null(golden->root);
}

static yaml_node_t *yget(struct golden_yaml *golden, yaml_node_t *map, const char *key)
{
	assert_int_equal(map->type, YAML_MAPPING_NODE);
	for (yaml_node_pair_t *pair = map->data.mapping.pairs.start;
	     pair < map->data.mapping.pairs.top; pair++) {
		yaml_node_t *k = yaml_document_get_node(&golden->doc, pair->key);
		if (!strcmp((const char *)k->data.scalar.value, key))
			return yaml_document_get_node(&golden->doc, pair->value);
	}
	fail_msg("golden yaml has no %s", key);
	return NULL;
}

static int ylen(yaml_node_t *seq)
{
	assert_int_equal(seq->type, YAML_SEQUENCE_NODE);
	return (int)(seq->data.sequence.items.top - seq->data.sequence.items.start);
}

static yaml_node_t *yitem(struct golden_yaml *golden, yaml_node_t *seq, int i)
{
	return yaml_document_get_node(&golden->doc, seq->data.sequence.items.start[i]);
}

static double ynumber(yaml_node_t *node)
{
	assert_int_equal(node->type, YAML_SCALAR_NODE);
	return atof((const char *)node->data.scalar.value);
}

/*
 * A minimal safetensors reader for the golden file (the format is in
 * tests/golden/README.md): finds one tensor's bytes by name.
 */
struct golden_st {
	char *file;
	size_t len, header_len;
};

static void golden_st_load(struct golden_st *st)
{
	char path[1024];
	struct ut_err err = {{0}};
	env_path("YE_SOURCE_ROOT", "tests/golden/yolov5/model_v5n_nc2.safetensors", path,
		 sizeof(path));
	if (ut_read_file(path, &st->file, &st->len, &err))
		fail_msg("%s", err.msg);
	uint64_t header = 0;
	for (int i = 7; i >= 0; i--)
		header = header << 8 | (unsigned char)st->file[i];
	assert_true(header + 8 <= st->len);
	st->header_len = (size_t)header;
}

static const void *golden_st_get(const struct golden_st *st, const char *name, size_t bytes)
{
	char key[160];
	snprintf(key, sizeof(key), "\"%s\":", name);
	const char *entry = strstr(st->file + 8, key);
	assert_non_null(entry);
	const char *offsets = strstr(entry, "\"data_offsets\":[");
	assert_non_null(offsets);
	unsigned long long begin, end;
	assert_int_equal(sscanf(offsets, "\"data_offsets\":[%llu,%llu]", &begin, &end), 2);
	assert_int_equal(end - begin, bytes);
	assert_true(8 + st->header_len + end <= st->len);
	return st->file + 8 + st->header_len + begin;
}

/* ---- parameter counts and layers ---- */

static void test_param_counts_nc80(void **state)
{
	(void)state;
	static const struct {
		const char *name;
		int64_t params;
	} expected[] = {{"yolov5n", 1872157},
			{"yolov5s", 7235389},
			{"yolov5m", 21190557},
			{"yolov5l", 46563709},
			{"yolov5x", 86749405}};
	for (size_t i = 0; i < UT_ARRAY_LEN(expected); i++) {
		struct tr_model *model = load_model(expected[i].name, 0);
		assert_int_equal(model->nc, 80);
		assert_int_equal(tr_model_num_params(model), expected[i].params);
		int64_t by_layer = 0;
		for (int l = 0; l < model->nlayers; l++)
			by_layer += model->layers[l].nparams;
		assert_int_equal(by_layer, expected[i].params);
		tr_model_free(model);
	}
}

/* parse_model's printout for yolov5s, and output shapes of a real forward (YOLOv5 v7.0). */
static void test_yolov5s_layers(void **state)
{
	(void)state;
	static const int64_t params[25] = {
	    3520,   18560,  18816,  73984,  115712, 295424,  625152, 1180672, 1182720,
	    656896, 131584, 0,	    0,	    361984, 33024,   0,	     0,	      90880,
	    147712, 0,	    296448, 590336, 0,	    1182720, 229245};
	static const int cout[24] = {32,  64,  64,  128, 128, 256, 256, 512, 512, 512, 256, 256,
				     512, 256, 128, 128, 256, 128, 128, 256, 256, 256, 512, 512};
	static const int stride[24] = {2,  4,  4,  8, 8, 16, 16, 32, 32, 32, 32, 16,
				       16, 16, 16, 8, 8, 8,  16, 16, 16, 32, 32, 32};
	static const enum tr_layer_type types[25] = {
	    TR_LAYER_CONV,     TR_LAYER_CONV,	  TR_LAYER_C3,	   TR_LAYER_CONV, TR_LAYER_C3,
	    TR_LAYER_CONV,     TR_LAYER_C3,	  TR_LAYER_CONV,   TR_LAYER_C3,	  TR_LAYER_SPPF,
	    TR_LAYER_CONV,     TR_LAYER_UPSAMPLE, TR_LAYER_CONCAT, TR_LAYER_C3,	  TR_LAYER_CONV,
	    TR_LAYER_UPSAMPLE, TR_LAYER_CONCAT,	  TR_LAYER_C3,	   TR_LAYER_CONV, TR_LAYER_CONCAT,
	    TR_LAYER_C3,       TR_LAYER_CONV,	  TR_LAYER_CONCAT, TR_LAYER_C3,	  TR_LAYER_DETECT};
	struct tr_model *model = load_model("yolov5s", 0);
	assert_int_equal(model->nlayers, 25);
	for (int i = 0; i < 25; i++) {
		assert_int_equal(model->layers[i].type, types[i]);
		assert_int_equal(model->layers[i].nparams, params[i]);
		if (i < 24) {
			assert_int_equal(model->layers[i].cout, cout[i]);
			assert_int_equal(model->layers[i].stride, stride[i]);
		}
	}
	assert_int_equal(model->layers[9].cout, 512); /* the 10th layer */
	assert_int_equal(model->layers[0].from[0], TR_FROM_INPUT);
	assert_int_equal(model->layers[12].nfrom, 2);
	assert_int_equal(model->layers[12].from[0], 11);
	assert_int_equal(model->layers[12].from[1], 6);
	assert_int_equal(model->layers[24].nfrom, 3);
	assert_int_equal(model->layers[24].from[2], 23);
	/* depth: 3, 6, 9 bottlenecks scaled by 0.33; the head's C3 have no shortcut */
	assert_int_equal(model->layers[2].bottlenecks, 1);
	assert_int_equal(model->layers[4].bottlenecks, 2);
	assert_int_equal(model->layers[6].bottlenecks, 3);
	assert_true(model->layers[6].shortcut);
	assert_false(model->layers[13].shortcut);
	assert_int_equal(model->layers[0].nconv, 1);
	assert_int_equal(model->convs[model->layers[0].conv0].conv.k, 6);
	assert_int_equal(model->convs[model->layers[0].conv0].conv.pad, 2);
	assert_int_equal(model->layers[6].nconv, 9);
	assert_int_equal(model->layers[9].pool_k, 5);
	assert_int_equal(model->detect.no, 85);
	assert_int_equal(model->detect.heads[0].conv.cout, 255);
	assert_int_equal(model->detect.heads[2].conv.cin, 512);

	struct ut_buf text = {0};
	assert_int_equal(tr_model_describe(model, &text), 0);
	assert_non_null(strstr(text.data, "7235389 parameters"));
	ut_buf_free(&text);
	tr_model_free(model);
}

/* Python's round() is half-to-even; yolov5x scales 3, 6, 9 by 1.33 to 4, 8, 12. */
static void test_depth_rounding(void **state)
{
	(void)state;
	struct tr_model *model = load_model("yolov5x", 0);
	assert_int_equal(model->layers[2].bottlenecks, 4);
	assert_int_equal(model->layers[4].bottlenecks, 8);
	assert_int_equal(model->layers[6].bottlenecks, 12);
	assert_int_equal(model->layers[0].cout, 80);
	tr_model_free(model);
	model = load_model("yolov5m", 0);
	assert_int_equal(model->layers[6].bottlenecks, 6);
	assert_int_equal(model->layers[0].cout, 48);
	tr_model_free(model);
}

/*
 * make_divisible rounds c * width up to a multiple of 8, except a width
 * equal to parse_model's no = na * (nc + 5) (here 2 * 8 = 16), kept as is.
 */
static void test_width_rounding(void **state)
{
	(void)state;
	static const char text[] =
	    "nc: 3\n"
	    "depth_multiple: 0.5\n"
	    "width_multiple: 0.3\n"
	    "anchors: [[10,13, 16,30]]\n"
	    "backbone: [[-1, 1, Conv, [64, 3, 2]], [-1, 1, Conv, [16, 3, 2]],\n"
	    "           [-1, 5, C3, [100]], [-1, 2, C3, [40, False, 1, 0.25]]]\n"
	    "head: [[[3], 1, Detect, [nc, anchors]]]\n";
	struct tr_model *model = NULL;
	struct ut_err err = {{0}};
	if (tr_model_from_text(text, strlen(text), "width.yaml", 0, &model, &err))
		fail_msg("%s", err.msg);
	assert_int_equal(model->layers[0].cout, 24);	   /* ceil(19.2 / 8) * 8 */
	assert_int_equal(model->layers[1].cout, 16);	   /* == no: not scaled */
	assert_int_equal(model->layers[2].cout, 32);	   /* ceil(30 / 8) * 8 */
	assert_int_equal(model->layers[2].bottlenecks, 2); /* round(2.5) = 2 */
	assert_int_equal(model->layers[3].bottlenecks, 1);
	assert_int_equal(model->convs[model->layers[3].conv0].conv.cout, 4); /* int(16 * 0.25) */
	assert_false(model->layers[3].shortcut);
	assert_int_equal(model->detect.stride[0], 4);
	tr_model_free(model);
}

/* ---- the golden yolov5n nc=2 model ---- */

static void test_golden_tensor_names_and_shapes(void **state)
{
	(void)state;
	struct golden_yaml golden;
	golden_yaml_load(&golden);
	struct tr_model *model = load_model("yolov5n", 2);
	yaml_node_t *tensors = yget(&golden, golden.root, "tensors");
	int matched = 0;
	for (yaml_node_pair_t *pair = tensors->data.mapping.pairs.start;
	     pair < tensors->data.mapping.pairs.top; pair++) {
		const char *name =
		    (const char *)yaml_document_get_node(&golden.doc, pair->key)->data.scalar.value;
		if (strncmp(name, "model.", 6))
			continue;
		assert_true(matched < model->ntensors);
		const struct tr_tensor_spec *t = &model->tensors[matched];
		if (strcmp(t->name, name))
			fail_msg("state_dict entry %d: golden %s, ours %s", matched, name, t->name);
		yaml_node_t *shape =
		    yget(&golden, yaml_document_get_node(&golden.doc, pair->value), "shape");
		if (t->kind == TR_TENSOR_COUNTER) {
			/* 0-d in PyTorch; the golden file stores it as [1] */
			assert_int_equal(t->ndim, 0);
			assert_int_equal(ylen(shape), 1);
			assert_int_equal((int)ynumber(yitem(&golden, shape, 0)), 1);
		} else {
			if (t->ndim != ylen(shape))
				fail_msg("%s: golden rank %d, ours %d", name, ylen(shape), t->ndim);
			for (int d = 0; d < t->ndim; d++)
				if (t->shape[d] != (int)ynumber(yitem(&golden, shape, d)))
					fail_msg("%s: dim %d differs", name, d);
		}
		matched++;
	}
	assert_int_equal(matched, 349);
	assert_int_equal(model->ntensors, 349);
	assert_int_equal(tr_model_num_params(model),
			 (int64_t)ynumber(yget(&golden, golden.root, "n_params")));
	assert_int_equal(tr_model_num_params(model), 1766623);
	tr_model_free(model);
	yaml_document_delete(&golden.doc);
}

static void test_golden_strides_and_anchors(void **state)
{
	(void)state;
	struct golden_yaml golden;
	golden_yaml_load(&golden);
	struct tr_model *model = load_model("yolov5n", 2);
	const struct tr_detect *det = &model->detect;
	assert_int_equal(det->nl, 3);
	assert_int_equal(det->na, (int)ynumber(yget(&golden, golden.root, "na")));
	assert_int_equal(det->no, (int)ynumber(yget(&golden, golden.root, "no")));
	yaml_node_t *strides = yget(&golden, golden.root, "strides");
	assert_int_equal(ylen(strides), 3);
	for (int l = 0; l < 3; l++)
		assert_int_equal(det->stride[l], (int)ynumber(yitem(&golden, strides, l)));
	assert_int_equal(det->stride[0], 8);
	assert_int_equal(det->stride[1], 16);
	assert_int_equal(det->stride[2], 32);
	yaml_node_t *grid = yget(&golden, golden.root, "anchors_grid_units(model.24.anchors)");
	for (int l = 0; l < 3; l++)
		for (int a = 0; a < 3; a++)
			for (int j = 0; j < 2; j++) {
				yaml_node_t *pair = yitem(&golden, yitem(&golden, grid, l), a);
				assert_float_equal(
				    model->tensors[det->anchors_tensor].data[(l * 3 + a) * 2 + j],
				    ynumber(yitem(&golden, pair, j)), 0);
			}
	tr_model_free(model);
	yaml_document_delete(&golden.doc);
}

/*
 * Every buffer (BN running stats and counters, anchors) as YOLOv5 leaves it
 * after construction, bit for bit, and the golden random weights inside
 * the bounds our init draws from.
 */
static void test_golden_initial_state(void **state)
{
	(void)state;
	struct golden_st st;
	golden_st_load(&st);
	struct tr_model *model = load_model("yolov5n", 2);
	for (int i = 0; i < model->ntensors; i++) {
		const struct tr_tensor_spec *t = &model->tensors[i];
		if (t->kind == TR_TENSOR_COUNTER) {
			int64_t count;
			memcpy(&count, golden_st_get(&st, t->name, 8), 8);
			assert_int_equal(*t->counter, count);
		} else if (t->kind == TR_TENSOR_BUFFER) {
			assert_memory_equal(t->data, golden_st_get(&st, t->name, t->numel * 4),
					    t->numel * 4);
		}
	}
	for (int i = 0; i < model->nconvs; i++) {
		const struct tr_convbn *cb = &model->convs[i];
		const struct tr_tensor_spec *t = &model->tensors[cb->tensor0];
		const float *golden = golden_st_get(&st, t->name, t->numel * 4);
		double bound = 1.0 / sqrt((double)cb->conv.cin * cb->conv.k * cb->conv.k);
		float largest = 0;
		for (size_t j = 0; j < t->numel; j++)
			largest = fmaxf(largest, fabsf(golden[j]));
		assert_true(largest <= bound);
		if (t->numel > 1000)
			assert_true(largest > 0.98 * bound);
		const float *gamma = golden_st_get(&st, t[1].name, t[1].numel * 4);
		const float *beta = golden_st_get(&st, t[2].name, t[2].numel * 4);
		for (int c = 0; c < cb->conv.cout; c++) {
			assert_float_equal(gamma[c], t[1].data[c], 0);
			assert_float_equal(beta[c], t[2].data[c], 0);
		}
	}
	/* golden Detect biases minus our prior lie within the default bias bound */
	const struct tr_detect *det = &model->detect;
	tr_detect_bias_prior(model); /* the biases were zero: now they hold the prior alone */
	for (int l = 0; l < det->nl; l++) {
		const struct tr_tensor_spec *bias = &model->tensors[det->heads[l].tensor0 + 1];
		const float *golden = golden_st_get(&st, bias->name, bias->numel * 4);
		double bound = 1.0 / sqrt((double)det->heads[l].conv.cin);
		for (size_t j = 0; j < bias->numel; j++)
			assert_true(fabs((double)golden[j] - bias->data[j]) <= bound + 1e-6);
	}
	tr_model_free(model);
	free(st.file);
}

/* Copy every model.* tensor of the golden file into the model. */
static void load_golden_state(struct tr_model *model, const struct golden_st *st)
{
	for (int i = 0; i < model->ntensors; i++) {
		const struct tr_tensor_spec *t = &model->tensors[i];
		if (t->kind == TR_TENSOR_COUNTER)
			memcpy(t->counter, golden_st_get(st, t->name, 8), 8);
		else
			memcpy(t->data, golden_st_get(st, t->name, t->numel * 4), t->numel * 4);
	}
}

/*
 * Largest error relative to the tensor's scale: max |ours - golden| over
 * max |golden| (elementwise relative error is meaningless near zero).
 */
static double scaled_error(const float *ours, const float *golden, size_t count)
{
	double worst = 0, scale = 0;
	for (size_t i = 0; i < count; i++) {
		if (!isfinite(ours[i]))
			return INFINITY;
		worst = fmax(worst, fabs((double)ours[i] - golden[i]));
		scale = fmax(scale, fabs((double)golden[i]));
	}
	return worst / (scale > 0 ? scale : 1);
}

static void expect_close(const char *what, const float *ours, const float *golden, size_t count,
			 double tolerance)
{
	double error = scaled_error(ours, golden, count), elementwise = 0;
	for (size_t i = 0; i < count; i++) /* for the record: values away from zero */
		if (fabsf(golden[i]) >= 1e-2f)
			elementwise = fmax(elementwise, fabs((double)ours[i] - golden[i]) /
							    fabs((double)golden[i]));
	print_message("%-32s scaled error %.3g, elementwise (|golden| >= 0.01) %.3g\n", what, error,
		      elementwise);
	if (!(error <= tolerance))
		fail_msg("%s: scaled error %g > %g", what, error, tolerance);
}

/*
 * The forward pass on the CPU backend against YOLOv5 itself: train mode
 * (raw level outputs, BN running statistics after the update) and eval
 * mode from the initial state (raw outputs and the decoded boxes).
 */
static void test_golden_forward(void **state)
{
	(void)state;
	enum { BATCH = 2, SIZE = 320 };
	struct golden_st st;
	struct ut_err err = {{0}};
	struct tr_backend *cpu = NULL;
	golden_st_load(&st);
	struct tr_model *model = load_model("yolov5n", 2);
	if (tr_cpu_backend_create(1, &cpu, &err) ||
	    tr_model_plan(model, cpu, BATCH, SIZE, SIZE, &err))
		fail_msg("%s", err.msg);
	load_golden_state(model, &st);
	if (tr_model_upload(model, &err))
		fail_msg("%s", err.msg);
	const float *images = golden_st_get(&st, "input/x", (size_t)BATCH * 3 * SIZE * SIZE * 4);
	if (tr_model_forward(model, cpu, images, BATCH, SIZE, SIZE, 1, &err))
		fail_msg("%s", err.msg);
	const struct tr_detect *det = &model->detect;
	for (int l = 0; l < det->nl; l++) {
		char name[64];
		int cells = (SIZE / det->stride[l]) * (SIZE / det->stride[l]);
		size_t count = (size_t)BATCH * det->na * cells * det->no;
		snprintf(name, sizeof(name), "train_out/%d", l);
		expect_close(name, det->outputs[l], golden_st_get(&st, name, count * 4), count,
			     1e-4);
	}
	double worst_mean = 0, worst_var = 0;
	for (int i = 0; i < model->nconvs; i++) {
		const struct tr_convbn *cb = &model->convs[i];
		const struct tr_tensor_spec *t = &model->tensors[cb->tensor0];
		char name[160];
		size_t bytes = (size_t)cb->conv.cout * 4;
		snprintf(name, sizeof(name), "after_train_fwd/%s", t[3].name);
		worst_mean =
		    fmax(worst_mean, scaled_error(cb->running_mean, golden_st_get(&st, name, bytes),
						  (size_t)cb->conv.cout));
		snprintf(name, sizeof(name), "after_train_fwd/%s", t[4].name);
		worst_var =
		    fmax(worst_var, scaled_error(cb->running_var, golden_st_get(&st, name, bytes),
						 (size_t)cb->conv.cout));
		snprintf(name, sizeof(name), "after_train_fwd/%s", t[5].name);
		int64_t count;
		memcpy(&count, golden_st_get(&st, name, 8), 8);
		assert_int_equal(*cb->num_batches_tracked, count);
	}
	print_message("%-32s scaled error %.3g\n", "after_train_fwd/*.running_mean", worst_mean);
	print_message("%-32s scaled error %.3g\n", "after_train_fwd/*.running_var", worst_var);
	assert_true(worst_mean <= 1e-4);
	assert_true(worst_var <= 1e-4);

	load_golden_state(model, &st); /* eval from the initial state, as the golden deepcopy */
	if (tr_model_upload(model, &err) ||
	    tr_model_forward(model, cpu, images, BATCH, SIZE, SIZE, 0, &err))
		fail_msg("%s", err.msg);
	for (int l = 0; l < det->nl; l++) {
		char name[64];
		int cells = (SIZE / det->stride[l]) * (SIZE / det->stride[l]);
		size_t count = (size_t)BATCH * det->na * cells * det->no;
		snprintf(name, sizeof(name), "eval_out/raw/%d", l);
		expect_close(name, det->outputs[l], golden_st_get(&st, name, count * 4), count,
			     1e-4);
	}
	assert_int_equal(det->cells, 6300);
	size_t count = (size_t)BATCH * det->cells * det->no;
	expect_close("eval_out/decoded", det->decoded,
		     golden_st_get(&st, "eval_out/decoded", count * 4), count, 1e-4);
	tr_model_free(model); /* before its backend */
	tr_backend_destroy(cpu);
	free(st.file);
}

/* A float32 tensor of an open safetensors file, with its element count checked. */
static const float *st_floats(const struct tr_st_file *file, const char *name, size_t count)
{
	const struct tr_st_tensor *t = tr_st_find(file, name);
	if (t == NULL)
		fail_msg("golden file has no %s", name);
	if (t->dtype != TR_ST_F32 || t->numel != count)
		fail_msg("%s: expected %zu float32 values, found %zu of %s", name, count, t->numel,
			 tr_st_dtype_name(t->dtype));
	return t->data;
}

static struct tr_st_file *open_golden(const char *relative)
{
	char path[1024];
	struct ut_err err = {{0}};
	struct tr_st_file *file = NULL;
	env_path("YE_SOURCE_ROOT", relative, path, sizeof(path));
	if (tr_st_open(path, &file, &err))
		fail_msg("%s", err.msg);
	return file;
}

/*
 * The backward pass against YOLOv5's loss.backward() (golden loss_v5n_nc2):
 * the golden weights and images, one train-mode forward, then the backward
 * pass from dLoss/d(raw Detect outputs) = grad_p/l, and every one of the
 * 177 parameter gradients compared with grad/<key>. Then a second backward
 * of the same forward must double every gradient (they accumulate).
 */
static void test_golden_backward(void **state)
{
	(void)state;
	enum { BATCH = 2, SIZE = 320 };
	struct ut_err err = {{0}};
	struct tr_backend *cpu = NULL;
	struct tr_st_file *weights = open_golden("tests/golden/yolov5/model_v5n_nc2.safetensors");
	struct tr_st_file *loss = open_golden("tests/golden/yolov5/loss_v5n_nc2.safetensors");
	struct tr_model *model = load_model("yolov5n", 2);
	if (tr_cpu_backend_create(1, &cpu, &err) ||
	    tr_model_plan(model, cpu, BATCH, SIZE, SIZE, &err))
		fail_msg("%s", err.msg);
	for (int i = 0; i < model->ntensors; i++) {
		const struct tr_tensor_spec *t = &model->tensors[i];
		if (t->kind == TR_TENSOR_COUNTER) {
			const struct tr_st_tensor *c = tr_st_find(weights, t->name);
			assert_non_null(c);
			assert_int_equal(c->dtype, TR_ST_I64);
			memcpy(t->counter, c->data, 8);
		} else {
			memcpy(t->data, st_floats(weights, t->name, t->numel), t->numel * 4);
		}
	}
	if (tr_model_upload(model, &err))
		fail_msg("%s", err.msg);
	const float *images = st_floats(weights, "input/x", (size_t)BATCH * 3 * SIZE * SIZE);
	const struct tr_detect *det = &model->detect;
	const float *dout[TR_MAX_LEVELS];
	for (int l = 0; l < det->nl; l++) {
		char name[32];
		int cells = (SIZE / det->stride[l]) * (SIZE / det->stride[l]);
		snprintf(name, sizeof(name), "grad_p/%d", l);
		dout[l] = st_floats(loss, name, (size_t)BATCH * det->na * cells * det->no);
	}

	/* no train forward yet: refused */
	assert_int_equal(tr_model_backward(model, cpu, dout, &err), -1);
	assert_non_null(strstr(err.msg, "train-mode forward"));

	memset(model->grads, 0, model->nparam_values * sizeof(float));
	if (tr_model_forward(model, cpu, images, BATCH, SIZE, SIZE, 1, &err) ||
	    tr_model_backward(model, cpu, dout, &err))
		fail_msg("%s", err.msg);
	double worst = 0;
	const char *worst_name = "";
	int compared = 0;
	for (int i = 0; i < model->ntensors; i++) {
		const struct tr_tensor_spec *t = &model->tensors[i];
		if (t->kind != TR_TENSOR_PARAM)
			continue;
		char name[TR_NAME_LEN + 8];
		snprintf(name, sizeof(name), "grad/%s", t->name);
		double error = scaled_error(t->grad, st_floats(loss, name, t->numel), t->numel);
		if (!(error <= 1e-4))
			fail_msg("%s: scaled error %g > 1e-4", name, error);
		if (error > worst) {
			worst = error;
			worst_name = t->name;
		}
		compared++;
	}
	assert_int_equal(compared, 177);
	print_message("%-32s worst scaled error %.3g (%s)\n", "grad/* (177 parameters)", worst,
		      worst_name);

	/* a second backward of the same forward adds the same gradients again */
	float *first = malloc(model->nparam_values * sizeof(float));
	assert_non_null(first);
	memcpy(first, model->grads, model->nparam_values * sizeof(float));
	if (tr_model_backward(model, cpu, dout, &err))
		fail_msg("%s", err.msg);
	for (size_t i = 0; i < model->nparam_values; i++)
		assert_float_equal(model->grads[i], 2 * first[i], 1e-6 * fabsf(first[i]) + 1e-12);
	free(first);

	/* an eval forward cannot be differentiated */
	if (tr_model_forward(model, cpu, images, 1, SIZE, SIZE, 0, &err))
		fail_msg("%s", err.msg);
	assert_int_equal(tr_model_backward(model, cpu, dout, &err), -1);
	tr_model_free(model); /* before its backend */
	tr_backend_destroy(cpu);
	tr_st_close(loss);
	tr_st_close(weights);
}

/*
 * Finite differences on a small network with what yolov5n lacks: a layer
 * output with three consumers (3: Conv 4, Conv 8 and Detect), a layer
 * nothing consumes (8), and C3 with and without shortcut, Upsample and
 * Concat. For "loss" = sum(outputs * r), the directional derivative along
 * a random direction over one layer's parameters at a time, by central
 * differences in train mode, must match the gradient's projection. No
 * SPPF here: on maps this small its max pools have near-ties that a step
 * of h flips, which spoils central differences by several percent (the
 * golden test covers SPPF).
 */
static void test_backward_finite_differences(void **state)
{
	(void)state;
	static const char text[] = "nc: 1\n"
				   "depth_multiple: 1.0\n"
				   "width_multiple: 1.0\n"
				   "anchors: [[10,13, 16,30], [30,61, 62,45]]\n"
				   "backbone:\n"
				   "  [[-1, 1, Conv, [8, 3, 2]],\n"
				   "   [-1, 1, C3, [8]],\n"
				   "   [-1, 1, Conv, [16, 3, 2]],\n"
				   "   [-1, 1, Conv, [16, 1, 1]],\n"
				   "   [-1, 1, Conv, [8, 1, 1]],\n"
				   "  ]\n"
				   "head:\n"
				   "  [[-1, 1, nn.Upsample, [None, 2, 'nearest']],\n"
				   "   [[-1, 1], 1, Concat, [1]],\n"
				   "   [-1, 2, C3, [8, False]],\n"
				   "   [3, 1, Conv, [8, 1, 1]],\n"
				   "   [[7, 3], 1, Detect, [nc, anchors]],\n"
				   "  ]\n";
	enum { BATCH = 2, SIZE = 32 };
	struct tr_model *model = NULL;
	struct tr_backend *cpu = NULL;
	struct ut_err err = {{0}};
	struct ut_pcg rng;
	if (tr_model_from_text(text, strlen(text), "fd.yaml", 0, &model, &err) ||
	    tr_cpu_backend_create(1, &cpu, &err) ||
	    tr_model_plan(model, cpu, BATCH, SIZE, SIZE, &err))
		fail_msg("%s", err.msg);
	ut_pcg_seed(&rng, 3, 5);
	tr_model_init(model, &rng);
	/* BN weights and biases away from 1 and 0, so their gradients are not special */
	for (int i = 0; i < model->nconvs; i++) {
		const struct tr_tensor_spec *t = &model->tensors[model->convs[i].tensor0];
		for (int c = 0; c < model->convs[i].conv.cout; c++) {
			t[1].data[c] = (float)(0.5 + ut_pcg_uniform(&rng));
			t[2].data[c] = (float)(ut_pcg_uniform(&rng) - 0.5);
		}
	}
	if (tr_model_upload(model, &err))
		fail_msg("%s", err.msg);
	static float images[BATCH * 3 * SIZE * SIZE];
	for (size_t i = 0; i < UT_ARRAY_LEN(images); i++)
		images[i] = (float)ut_pcg_uniform(&rng);
	const struct tr_detect *det = &model->detect;
	float *r[TR_MAX_LEVELS];
	size_t counts[TR_MAX_LEVELS];
	for (int l = 0; l < det->nl; l++) {
		int cells = (SIZE / det->stride[l]) * (SIZE / det->stride[l]);
		counts[l] = (size_t)BATCH * det->na * cells * det->no;
		r[l] = malloc(counts[l] * sizeof(float));
		assert_non_null(r[l]);
		for (size_t i = 0; i < counts[l]; i++)
			r[l][i] = (float)(2 * ut_pcg_uniform(&rng) - 1);
	}
	memset(model->grads, 0, model->nparam_values * sizeof(float));
	if (tr_model_forward(model, cpu, images, BATCH, SIZE, SIZE, 1, &err) ||
	    tr_model_backward(model, cpu, (const float *const *)r, &err))
		fail_msg("%s", err.msg);
	assert_false(model->layers[8].grad_written); /* the unused layer */
	float *direction = calloc(model->nparam_values, sizeof(float));
	assert_non_null(direction);
	double worst = 0;
	for (int i = 0; i < model->nlayers; i++) {
		const struct tr_layer *layer = &model->layers[i];
		if (layer->nparams == 0)
			continue;
		/* the layer's parameters are a contiguous run of the block */
		size_t first = SIZE_MAX, last = 0;
		for (int t = 0; t < model->ntensors; t++) {
			const struct tr_tensor_spec *spec = &model->tensors[t];
			char prefix[32];
			snprintf(prefix, sizeof(prefix), "model.%d.", i);
			if (spec->kind != TR_TENSOR_PARAM ||
			    strncmp(spec->name, prefix, strlen(prefix)))
				continue;
			first = spec->offset < first ? spec->offset : first;
			last =
			    spec->offset + spec->numel > last ? spec->offset + spec->numel : last;
		}
		double projected = 0, h = 1e-3, loss[2];
		memset(direction, 0, model->nparam_values * sizeof(float));
		for (size_t j = first; j < last; j++) {
			direction[j] = (float)(2 * ut_pcg_uniform(&rng) - 1);
			projected += (double)direction[j] * model->grads[j];
		}
		for (int side = 0; side < 2; side++) {
			float *saved = malloc((last - first) * sizeof(float));
			assert_non_null(saved);
			memcpy(saved, model->params + first, (last - first) * sizeof(float));
			for (size_t j = first; j < last; j++)
				model->params[j] += (float)((side ? -h : h) * direction[j]);
			if (tr_model_forward(model, cpu, images, BATCH, SIZE, SIZE, 1, &err))
				fail_msg("%s", err.msg);
			memcpy(model->params + first, saved, (last - first) * sizeof(float));
			free(saved);
			loss[side] = 0;
			for (int l = 0; l < det->nl; l++)
				for (size_t k = 0; k < counts[l]; k++)
					loss[side] += (double)det->outputs[l][k] * r[l][k];
		}
		double numeric = (loss[0] - loss[1]) / (2 * h);
		double error = fabs(numeric - projected) / fmax(fabs(projected), 1e-3);
		if (i == 8)
			assert_true(projected == 0 && fabs(numeric) < 1e-6);
		else if (!(error <= 1e-2))
			fail_msg("layer %d: finite difference %.6g, gradient %.6g", i, numeric,
				 projected);
		worst = fmax(worst, i == 8 ? 0 : error);
	}
	print_message("%-32s worst relative error %.3g\n", "finite differences per layer", worst);
	free(direction);
	for (int l = 0; l < det->nl; l++)
		free(r[l]);
	tr_model_free(model); /* before its backend */
	tr_backend_destroy(cpu);
}

/* Plans outside the largest stride, forwards outside the plan. */
static void test_plan_limits(void **state)
{
	(void)state;
	struct ut_err err = {{0}};
	struct tr_model *model = load_model("yolov5n", 2);
	struct tr_backend *cpu = NULL, *other = NULL;
	if (tr_cpu_backend_create(1, &cpu, &err) || tr_cpu_backend_create(1, &other, &err))
		fail_msg("%s", err.msg);
	assert_int_equal(tr_model_plan(model, cpu, 1, 300, 320, &err), -1);
	assert_non_null(strstr(err.msg, "multiples of 32"));
	assert_int_equal(tr_model_plan(model, cpu, 1, 64, 64, &err), 0);
	assert_int_equal(tr_model_plan(model, other, 1, 64, 64, &err), -1);
	assert_non_null(strstr(err.msg, "another backend"));
	static float images[2 * 3 * 64 * 64];
	assert_int_equal(tr_model_forward(model, cpu, images, 2, 64, 64, 1, &err), -1);
	assert_non_null(strstr(err.msg, "outside the plan"));
	assert_int_equal(tr_model_forward(model, other, images, 1, 64, 64, 1, &err), -1);
	assert_non_null(strstr(err.msg, "not planned on"));
	tr_model_free(model); /* before its backend */
	tr_backend_destroy(other);
	tr_backend_destroy(cpu);
}

/* ---- initialisation ---- */

static void test_init_statistics(void **state)
{
	(void)state;
	struct tr_model *model = load_model("yolov5s", 0);
	struct ut_pcg rng;
	ut_pcg_seed(&rng, 7, 11);
	tr_model_init(model, &rng);
	for (int i = 0; i < model->nconvs; i++) {
		const struct tr_convbn *cb = &model->convs[i];
		const struct tr_tensor_spec *t = &model->tensors[cb->tensor0]; /* host mirror */
		const float *weight = t[0].data;
		size_t fan_in = (size_t)cb->conv.cin * cb->conv.k * cb->conv.k;
		size_t count = fan_in * (size_t)cb->conv.cout;
		double bound = 1.0 / sqrt((double)fan_in), sum = 0, squares = 0, largest = 0;
		for (size_t j = 0; j < count; j++) {
			sum += weight[j];
			squares += (double)weight[j] * weight[j];
			largest = fmax(largest, fabs(weight[j]));
		}
		assert_true(largest <= bound);
		if (count >= 100000) {
			/* U(-b, b): mean 0, variance b^2 / 3 */
			double mean = sum / count, variance = squares / count - mean * mean;
			assert_true(fabs(mean) < 0.01 * bound);
			assert_true(fabs(variance / (bound * bound / 3) - 1) < 0.02);
			assert_true(largest > 0.999 * bound);
		}
		for (int c = 0; c < cb->conv.cout; c++) {
			assert_float_equal(t[1].data[c], 1, 0);
			assert_float_equal(t[2].data[c], 0, 0);
			assert_float_equal(t[3].data[c], 0, 0);
			assert_float_equal(t[4].data[c], 0.9f, 0);
		}
		assert_int_equal(*cb->num_batches_tracked, 1);
	}
	const struct tr_detect *det = &model->detect;
	for (int l = 0; l < det->nl; l++) {
		double bound = 1.0 / sqrt((double)det->heads[l].conv.cin);
		double obj = log(8.0 / pow(640.0 / det->stride[l], 2)),
		       cls = log(0.6 / (80 - 0.99999));
		for (int a = 0; a < det->na; a++)
			for (int o = 0; o < det->no; o++) {
				double prior = o == 4 ? obj : o >= 5 ? cls : 0;
				double drawn = model->tensors[det->heads[l].tensor0 + 1]
						   .data[a * det->no + o] -
					       prior;
				assert_true(fabs(drawn) <= bound + 1e-6);
			}
	}
	/* the same seed gives the same weights; another seed others */
	struct tr_model *again = load_model("yolov5s", 0);
	ut_pcg_seed(&rng, 7, 11);
	tr_model_init(again, &rng);
	assert_memory_equal(model->host_params, again->host_params,
			    model->nparam_values * sizeof(float));
	ut_pcg_seed(&rng, 8, 11);
	tr_model_init(again, &rng);
	assert_memory_not_equal(model->host_params, again->host_params,
				model->nparam_values * sizeof(float));
	tr_model_free(again);
	tr_model_free(model);
}

/* With the biases zeroed, the Detect prior alone: obj log(8 / (640 / s)^2), cls log(0.6 / (nc -
 * 0.99999)). */
static void test_detect_bias_prior(void **state)
{
	(void)state;
	struct tr_model *model = load_model("yolov5n", 2);
	const struct tr_detect *det = &model->detect;
	tr_detect_bias_prior(model);
	for (int l = 0; l < det->nl; l++) {
		double cells = 640.0 / det->stride[l];
		for (int a = 0; a < det->na; a++) {
			const float *bias =
			    model->tensors[det->heads[l].tensor0 + 1].data + a * det->no;
			for (int o = 0; o < 4; o++)
				assert_float_equal(bias[o], 0, 0);
			assert_float_equal(bias[4], (float)log(8.0 / (cells * cells)), 0);
			assert_float_equal(bias[5], (float)log(0.6 / (2 - 0.99999)), 0);
			assert_float_equal(bias[6], (float)log(0.6 / (2 - 0.99999)), 0);
		}
	}
	assert_float_equal(model->tensors[det->heads[0].tensor0 + 1].data[4], -6.684612f, 1e-5);
	assert_float_equal(model->tensors[det->heads[2].tensor0 + 1].data[5], -0.5108356f, 1e-6);
	tr_model_free(model);
}

/* ---- yaml variants and errors ---- */

static const char small_header[] = "nc: 3\n"
				   "depth_multiple: 1.0\n"
				   "width_multiple: 1.0\n";

/* A three-layer model whose head row is `head_row`. */
static int build_small(const char *anchors, const char *head_row, struct tr_model **model,
		       struct ut_err *err)
{
	char text[2048];
	snprintf(text, sizeof(text),
		 "%s"					    /* lines 1-3 */
		 "anchors: %s\n"			    /* 4 */
		 "backbone:\n"				    /* 5 */
		 "  [[-1, 1, Conv, [16, 3, 2]],\n"	    /* 6: layer 0 */
		 "   [-1, 1, Conv, [32, 3, 2]],\n"	    /* 7: layer 1 */
		 "  ]\n"				    /* 8 */
		 "head:\n"				    /* 9 */
		 "  [%s,\n"				    /* 10: layer 2 */
		 "   [[1, 2], 1, Detect, [nc, anchors]],\n" /* 11: layer 3 */
		 "  ]\n",
		 small_header, anchors, head_row);
	return tr_model_from_text(text, strlen(text), "small.yaml", 0, model, err);
}

static void expect_error(const char *anchors, const char *head_row, const char *where,
			 const char *what)
{
	struct tr_model *model = NULL;
	struct ut_err err = {{0}};
	assert_int_equal(build_small(anchors, head_row, &model, &err), -1);
	assert_null(model);
	if (!strstr(err.msg, where) || !strstr(err.msg, what))
		fail_msg("error '%s' should name '%s' and say '%s'", err.msg, where, what);
	assert_null(strchr(err.msg, '\n'));
}

static void test_small_model_and_anchor_count(void **state)
{
	(void)state;
	static const char two_levels[] = "[[10,13, 16,30], [30,61, 62,45]]";
	struct tr_model *model = NULL;
	struct ut_err err = {{0}};
	assert_int_equal(build_small(two_levels, "[-1, 1, Conv, [32, 3, 2]]", &model, &err), 0);
	assert_int_equal(model->detect.na, 2);
	assert_int_equal(model->detect.stride[0], 4);
	assert_int_equal(model->detect.stride[1], 8);
	assert_float_equal(model->tensors[model->detect.anchors_tensor].data[0], 2.5f, 0);
	assert_float_equal(model->tensors[model->detect.anchors_tensor].data[7], 45.0f / 8, 0);
	assert_int_equal(model->detect.heads[0].conv.cout, 2 * 8);
	tr_model_free(model);

	/* anchors as a count: YOLOv5's placeholder anchors 0, 1, 2, ... per level */
	assert_int_equal(build_small("3", "[-1, 1, Conv, [32, 3, 2]]", &model, &err), 0);
	assert_int_equal(model->detect.na, 3);
	assert_int_equal(model->detect.nl, 2);
	for (int j = 0; j < 6; j++) {
		assert_float_equal(model->tensors[model->detect.anchors_tensor].data[j], j / 4.0f,
				   0);
		assert_float_equal(model->tensors[model->detect.anchors_tensor].data[6 + j],
				   j / 8.0f, 0);
	}
	tr_model_free(model);

	/* levels given smallest-area last are reversed, as check_anchor_order does */
	assert_int_equal(build_small("[[30,61, 62,45], [10,13, 16,30]]",
				     "[-1, 1, Conv, [32, 3, 2]]", &model, &err),
			 0);
	assert_float_equal(model->tensors[model->detect.anchors_tensor].data[0], 10.0f / 4, 0);
	assert_float_equal(model->tensors[model->detect.anchors_tensor].data[4], 30.0f / 8, 0);
	tr_model_free(model);
}

static void test_errors_name_the_row(void **state)
{
	(void)state;
	static const char anchors[] = "[[10,13], [30,61]]";
	expect_error(anchors, "[-1, 1, Foo, [32]]", "small.yaml:10: layer 2 (head row 0)",
		     "unknown module 'Foo'");
	expect_error(anchors, "[-1, 1, Conv]", "small.yaml:10: layer 2 (head row 0)",
		     "[from, number, module, args]");
	expect_error(anchors, "[5, 1, Conv, [32, 3, 2]]", "small.yaml:10: layer 2", "from index 5");
	expect_error(anchors, "[-3, 1, Conv, [32, 3, 2]]", "layer 2", "from index -3");
	expect_error(anchors, "[-1, 0, Conv, [32, 3, 2]]", "layer 2", "number");
	expect_error(anchors, "[-1, 1, Conv, []]", "layer 2", "output channels");
	expect_error(anchors, "[-1, 1, Conv, [32, 3, 2, None, 2]]", "layer 2", "groups");
	expect_error(anchors, "[-1, 1, nn.Upsample, [None, 3, 'nearest']]", "layer 2", "Upsample");
	expect_error(anchors, "[[-1, 0], 1, Concat, [1]]", "layer 2", "strides");
	expect_error(anchors, "[[-1, 0], 1, Conv, [32]]", "layer 2", "one input");
	expect_error(anchors, "[[0, 1], 1, Detect, [nc, anchors]]", "small.yaml:11: layer 3",
		     "Detect must be the last layer");
	expect_error("[[10,13, 16,30], [30,61]]", "[-1, 1, Conv, [32, 3, 2]]",
		     "small.yaml:11: layer 3", "level 1");

	struct tr_model *model = NULL;
	struct ut_err err = {{0}};
	static const char broken[] = "nc: 3\nbackbone: [[-1, 1, Conv\n";
	assert_int_equal(tr_model_from_text(broken, strlen(broken), "broken.yaml", 0, &model, &err),
			 -1);
	assert_non_null(strstr(err.msg, "broken.yaml:"));
	static const char no_depth[] =
	    "nc: 3\nwidth_multiple: 1\nanchors: 3\nbackbone: []\nhead: []\n";
	assert_int_equal(
	    tr_model_from_text(no_depth, strlen(no_depth), "nodepth.yaml", 0, &model, &err), -1);
	assert_non_null(strstr(err.msg, "nodepth.yaml: depth_multiple"));
	static const char detect_first[] =
	    "nc: 3\ndepth_multiple: 1\nwidth_multiple: 1\n"
	    "anchors: 3\nbackbone: []\nhead: [[-1, 1, Detect, [nc, 3]]]\n";
	assert_int_equal(
	    tr_model_from_text(detect_first, strlen(detect_first), "first.yaml", 0, &model, &err),
	    -1);
	assert_non_null(strstr(err.msg, "first.yaml:6: layer 0 (head row 0)"));
	assert_int_equal(tr_model_from_file("/nonexistent/model.yaml", 0, &model, &err), -1);
	assert_null(model);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_param_counts_nc80),
	    cmocka_unit_test(test_yolov5s_layers),
	    cmocka_unit_test(test_depth_rounding),
	    cmocka_unit_test(test_width_rounding),
	    cmocka_unit_test(test_golden_tensor_names_and_shapes),
	    cmocka_unit_test(test_golden_strides_and_anchors),
	    cmocka_unit_test(test_golden_initial_state),
	    cmocka_unit_test(test_golden_forward),
	    cmocka_unit_test(test_golden_backward),
	    cmocka_unit_test(test_backward_finite_differences),
	    cmocka_unit_test(test_plan_limits),
	    cmocka_unit_test(test_init_statistics),
	    cmocka_unit_test(test_detect_bias_prior),
	    cmocka_unit_test(test_small_model_and_anchor_count),
	    cmocka_unit_test(test_errors_name_the_row),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
