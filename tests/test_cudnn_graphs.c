/*
 * test_cudnn_graphs.c - every convolution of YOLOv5 n, s, m, l and x at
 * 640x640 (batch 16) as a cuDNN graph (trainer/cuda/conv_graph.c):
 * forward, backward data and backward filter, in fp32, fp16 and bf16, in
 * the NCHW and NHWC layouts; each operation graph must finalize. This
 * checks shapes, layouts and types on a machine without a GPU: building
 * and finalizing an operation graph needs neither a handle nor a device.
 *
 * Teeth: a wrong output shape (one row too many, one channel too many)
 * must fail finalize with CUDNN_STATUS_BAD_PARAM, and so must a weight
 * whose input channels disagree with x. The plan cache must build each
 * distinct key once. The engine policy (deterministic, no TF32 for fp32)
 * is checked on cuDNN's engine list, which needs no device. Planning (heuristics, execution plan)
 * needs a device: where cudnnCreate fails (here: CUDNN_STATUS_NOT_INITIALIZED, no driver) the test
 * checks that planning and execution fail cleanly, with one line naming cuDNN; where it succeeds (a
 * GPU machine) it plans yolov5n's convolutions for real.
 *
 * Needs YE_SOURCE_ROOT (the repository root); fails when it is unset.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "conv_graph.h"
#include "model.h"
#include "ut.h"

#define BATCH 16
#define IMAGE 640

static struct tr_model *load_model(const char *name)
{
	char path[1024];
	struct ut_err err = {{0}};
	struct tr_model *model = NULL;
	const char *root = getenv("YE_SOURCE_ROOT");
	if (root == NULL || *root == '\0')
		fail_msg("YE_SOURCE_ROOT is not set");
	assert_true(snprintf(path, sizeof(path), "%s/models/%s.yaml", root, name) <
		    (int)sizeof(path));
	if (tr_model_from_file(path, 0, &model, &err))
		fail_msg("%s", err.msg);
	return model;
}

/* A convolution of the model and the input shape it sees at BATCH x 3 x IMAGE x IMAGE. */
struct conv_site {
	struct tr_conv conv;
	struct tr_shape in;
};

/*
 * Every convolution of model with its input shape: each Conv block sees
 * its layer's input at the stride of the layer it comes from (the convs
 * inside C3 and SPPF have stride 1, so all of a layer's blocks see that
 * size), each Detect head its level's stride. Returns the count; *out is
 * malloc'ed.
 */
static int conv_sites(const struct tr_model *model, struct conv_site **out)
{
	int count = 0;
	struct conv_site *sites =
	    calloc((size_t)model->nconvs + (size_t)model->detect.nl, sizeof(*sites));
	assert_non_null(sites);
	for (int i = 0; i < model->nlayers; i++) {
		const struct tr_layer *layer = &model->layers[i];
		int from = layer->from[0];
		int in_stride = from == TR_FROM_INPUT ? 1 : model->layers[from].stride;
		for (int j = layer->conv0; j < layer->conv0 + layer->nconv; j++) {
			const struct tr_conv *conv = &model->convs[j].conv;
			int size = IMAGE / in_stride;
			/* a block's own input channels: cv1 of a layer sees the layer's cin */
			sites[count].conv = *conv;
			sites[count].in = (struct tr_shape){BATCH, conv->cin, size, size};
			if (layer->type == TR_LAYER_CONV)
				assert_int_equal(tr_conv_out_shape(conv, sites[count].in).h,
						 IMAGE / layer->stride);
			count++;
		}
	}
	assert_int_equal(count, model->nconvs);
	for (int l = 0; l < model->detect.nl; l++) {
		int size = IMAGE / model->detect.stride[l];
		sites[count].conv = model->detect.heads[l].conv;
		sites[count].in = (struct tr_shape){BATCH, sites[count].conv.cin, size, size};
		count++;
	}
	*out = sites;
	return count;
}

static const char *const models[] = {"yolov5n", "yolov5s", "yolov5m", "yolov5l", "yolov5x"};
static const enum tr_cuda_conv_kind kinds[] = {TR_CUDA_CONV_FORWARD, TR_CUDA_CONV_BACKWARD_DATA,
					       TR_CUDA_CONV_BACKWARD_FILTER};
static const enum tr_cuda_dtype dtypes[] = {TR_CUDA_FP32, TR_CUDA_BF16, TR_CUDA_FP16};
static const enum tr_cuda_layout layouts[] = {TR_CUDA_NCHW, TR_CUDA_NHWC};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static void fail_key(const struct tr_cuda_conv_key *key, const char *model, const char *msg)
{
	fail_msg("%s: %s %s %s conv %dx%d/%d %d->%d at [%d,%d,%d,%d]: %s", model,
		 tr_cuda_conv_kind_name(key->kind), tr_cuda_dtype_name(key->dtype),
		 tr_cuda_layout_name(key->layout), key->conv.k, key->conv.k, key->conv.stride,
		 key->conv.cin, key->conv.cout, key->in.n, key->in.c, key->in.h, key->in.w, msg);
}

/*
 * Every convolution of the five models, every direction, type and layout:
 * built on its own (every conv, repeats included) and through one plan
 * cache (each distinct key once, and found, not rebuilt, the second time).
 */
static void test_every_conv_finalizes(void **state)
{
	(void)state;
	struct tr_cuda_convs convs;
	size_t finalized = 0, lookups = 0;

	tr_cuda_convs_init(&convs);
	for (size_t m = 0; m < COUNT(models); m++) {
		struct tr_model *model = load_model(models[m]);
		struct conv_site *sites;
		int nsites = conv_sites(model, &sites);
		size_t model_graphs = 0;
		for (int s = 0; s < nsites; s++)
			for (size_t k = 0; k < COUNT(kinds); k++)
				for (size_t d = 0; d < COUNT(dtypes); d++)
					for (size_t l = 0; l < COUNT(layouts); l++) {
						struct tr_cuda_conv_key key = {
						    kinds[k], sites[s].conv, sites[s].in, dtypes[d],
						    layouts[l]};
						struct tr_cuda_conv_graph g;
						struct tr_cuda_conv_entry *e = NULL;
						struct ut_err err = {{0}};
						if (tr_cuda_conv_graph_build(&key, &g, &err) < 0)
							fail_key(&key, models[m], err.msg);
						assert_int_equal(g.status, CUDNN_STATUS_SUCCESS);
						tr_cuda_conv_graph_release(&g);
						model_graphs++;
						if (tr_cuda_convs_graph(&convs, &key, &e, &err) < 0)
							fail_key(&key, models[m], err.msg);
						assert_non_null(e->graph.graph);
						lookups++;
					}
		printf("%s: %d convolutions, %zu graphs finalized\n", models[m], nsites,
		       model_graphs);
		finalized += model_graphs;
		free(sites);
		tr_model_free(model);
	}
	size_t unique = convs.count;
	assert_int_equal(convs.graphs_built, unique);
	assert_true(unique < lookups); /* the models repeat shapes: the cache saved builds */
	/* the second pass over yolov5s finds every key and builds nothing */
	struct tr_model *model = load_model("yolov5s");
	struct conv_site *sites;
	int nsites = conv_sites(model, &sites);
	for (int s = 0; s < nsites; s++) {
		struct tr_cuda_conv_key key = {TR_CUDA_CONV_BACKWARD_FILTER, sites[s].conv,
					       sites[s].in, TR_CUDA_FP16, TR_CUDA_NHWC};
		struct tr_cuda_conv_entry *e = NULL;
		struct ut_err err = {{0}};
		assert_int_equal(tr_cuda_convs_graph(&convs, &key, &e, &err), 0);
		assert_int_equal(e->graph.key.conv.cin, key.conv.cin);
		assert_int_equal(e->graph.key.in.h, key.in.h);
	}
	assert_int_equal(convs.graphs_built, unique);
	assert_int_equal(convs.count, unique);
	free(sites);
	tr_model_free(model);
	printf("cuDNN graphs finalized: %zu (5 models x every conv x 3 directions x 3 types x "
	       "2 layouts); plan cache: %zu distinct keys for %zu lookups\n",
	       finalized, unique, lookups);
	tr_cuda_convs_release(&convs);
}

/* Build key with output shape out; it must fail finalize with BAD_PARAM, said in err. */
static void expect_bad_param(const struct tr_cuda_conv_key *key, struct tr_shape out)
{
	struct tr_cuda_conv_graph g;
	struct ut_err err = {{0}};
	if (tr_cuda_conv_graph_build_shaped(key, out, &g, &err) == 0) {
		tr_cuda_conv_graph_release(&g);
		fail_key(key, "wrong shape", "finalized, expected CUDNN_STATUS_BAD_PARAM");
	}
	if (g.status != CUDNN_STATUS_BAD_PARAM)
		fail_key(key, "wrong shape", err.msg);
	assert_non_null(strstr(err.msg, "cuDNN"));
	assert_non_null(strstr(err.msg, "CUDNN_STATUS_BAD_PARAM"));
	assert_null(strchr(err.msg, '\n'));
	assert_null(g.graph);
}

/* Every conv of yolov5n, every direction and type: a wrong output shape fails finalize. */
static void test_wrong_shape_fails(void **state)
{
	(void)state;
	struct tr_model *model = load_model("yolov5n");
	struct conv_site *sites;
	int nsites = conv_sites(model, &sites);
	int checked = 0;
	for (int s = 0; s < nsites; s++)
		for (size_t k = 0; k < COUNT(kinds); k++)
			for (size_t d = 0; d < COUNT(dtypes); d++) {
				struct tr_cuda_conv_key key = {kinds[k], sites[s].conv, sites[s].in,
							       dtypes[d], TR_CUDA_NCHW};
				struct tr_shape out = tr_conv_out_shape(&key.conv, key.in);
				struct tr_shape taller = out, wider_c = out;
				taller.h++;
				wider_c.c++;
				expect_bad_param(&key, taller);
				expect_bad_param(&key, wider_c);
				/* x with one channel more than the weight expects */
				struct tr_cuda_conv_key bad_in = key;
				bad_in.in.c++;
				expect_bad_param(&bad_in, out);
				checked += 3;
			}
	printf("wrong shapes rejected with CUDNN_STATUS_BAD_PARAM: %d\n", checked);
	free(sites);
	tr_model_free(model);
}

/* A note among an engine's numerical notes? */
static int has_note(cudnnBackendDescriptor_t engine, cudnnBackendNumericalNote_t note)
{
	cudnnBackendNumericalNote_t notes[CUDNN_NUMERICAL_NOTE_TYPE_COUNT];
	int64_t count = 0;
	assert_int_equal(cudnnBackendGetAttribute(engine, CUDNN_ATTR_ENGINE_NUMERICAL_NOTE,
						  CUDNN_TYPE_NUMERICAL_NOTE,
						  CUDNN_NUMERICAL_NOTE_TYPE_COUNT, &count, notes),
			 CUDNN_STATUS_SUCCESS);
	for (int64_t i = 0; i < count; i++)
		if (notes[i] == note)
			return 1;
	return 0;
}

/*
 * The engine policy, on every engine of cuDNN's list that finalizes
 * without a device (by global index; heuristics need a device, the list
 * does not), for yolov5n's first 3x3 stride-2 conv and a 1x1 conv, every
 * direction and type: with the default policy no nondeterministic engine
 * and no fp32 tensor-core (TF32) engine is accepted; with
 * deterministic = 0 and allow_tf32 = 1 those are. The list must hold
 * engines of both kinds, or the check has no teeth.
 */
static void test_engine_policy(void **state)
{
	(void)state;
	static const struct tr_conv convs_checked[] = {{16, 32, 3, 2, 1}, {64, 32, 1, 1, 0}};
	struct tr_cuda_convs strict, relaxed;
	int engines = 0, nondeterministic = 0, tf32 = 0, accepted_default = 0;

	tr_cuda_convs_init(&strict);
	tr_cuda_convs_init(&relaxed);
	assert_int_equal(strict.deterministic, 1);
	assert_int_equal(strict.allow_tf32, 0);
	relaxed.deterministic = 0;
	relaxed.allow_tf32 = 1;
	for (size_t c = 0; c < COUNT(convs_checked); c++)
		for (size_t k = 0; k < COUNT(kinds); k++)
			for (size_t d = 0; d < COUNT(dtypes); d++) {
				struct tr_shape in = {BATCH, convs_checked[c].cin, 160, 160};
				struct tr_cuda_conv_key key = {kinds[k], convs_checked[c], in,
							       dtypes[d], TR_CUDA_NCHW};
				struct tr_cuda_conv_graph g;
				struct ut_err err = {{0}};
				int64_t total = 0, returned = 0;
				if (tr_cuda_conv_graph_build(&key, &g, &err) < 0)
					fail_key(&key, "policy", err.msg);
				assert_int_equal(cudnnBackendGetAttribute(
						     g.graph,
						     CUDNN_ATTR_OPERATIONGRAPH_ENGINE_GLOBAL_COUNT,
						     CUDNN_TYPE_INT64, 1, &returned, &total),
						 CUDNN_STATUS_SUCCESS);
				for (int64_t i = 0; i < total; i++) {
					cudnnBackendDescriptor_t engine = NULL;
					int strict_ok = -1, relaxed_ok = -1;
					assert_int_equal(
					    cudnnBackendCreateDescriptor(
						CUDNN_BACKEND_ENGINE_DESCRIPTOR, &engine),
					    CUDNN_STATUS_SUCCESS);
					cudnnBackendSetAttribute(
					    engine, CUDNN_ATTR_ENGINE_OPERATION_GRAPH,
					    CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &g.graph);
					cudnnBackendSetAttribute(engine,
								 CUDNN_ATTR_ENGINE_GLOBAL_INDEX,
								 CUDNN_TYPE_INT64, 1, &i);
					if (cudnnBackendFinalize(engine) != CUDNN_STATUS_SUCCESS) {
						cudnnBackendDestroyDescriptor(
						    engine); /* needs a GPU */
						continue;
					}
					engines++;
					assert_int_equal(
					    tr_cuda_conv_engine_accepted(&strict, key.dtype, engine,
									 &strict_ok, &err),
					    0);
					assert_int_equal(
					    tr_cuda_conv_engine_accepted(&relaxed, key.dtype,
									 engine, &relaxed_ok, &err),
					    0);
					int nd =
					    has_note(engine, CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC);
					int tc = key.dtype == TR_CUDA_FP32 &&
						 has_note(engine, CUDNN_NUMERICAL_NOTE_TENSOR_CORE);
					nondeterministic += nd;
					tf32 += tc;
					accepted_default += strict_ok;
					if (nd || tc)
						assert_int_equal(strict_ok, 0);
					if (strict_ok)
						assert_int_equal(relaxed_ok, 1);
					if ((nd || tc) &&
					    !has_note(engine,
						      CUDNN_NUMERICAL_NOTE_DOWN_CONVERT_INPUTS) &&
					    !has_note(
						engine,
						CUDNN_NUMERICAL_NOTE_REDUCED_PRECISION_REDUCTION))
						assert_int_equal(relaxed_ok, 1);
					cudnnBackendDestroyDescriptor(engine);
				}
				tr_cuda_conv_graph_release(&g);
			}
	printf("engines finalized without a device: %d; nondeterministic %d, fp32 tensor-core "
	       "(TF32) %d, accepted by the default policy %d\n",
	       engines, nondeterministic, tf32, accepted_default);
	assert_true(nondeterministic > 0);
	assert_true(tf32 > 0);
	assert_true(accepted_default > 0);
}

/*
 * Planning needs a device. Without one (cudnnCreate fails here with
 * NOT_INITIALIZED) planning with no handle must fail cleanly: -1, one
 * line naming cuDNN, the graph kept in the cache, no plan, no workspace.
 * With one, yolov5n's convolutions plan and the workspace is the largest
 * need.
 */
static void test_plan(void **state)
{
	(void)state;
	cudnnHandle_t handle = NULL;
	cudnnStatus_t created = cudnnCreate(&handle);
	struct tr_cuda_convs convs;
	struct tr_model *model = load_model("yolov5n");
	struct conv_site *sites;
	int nsites = conv_sites(model, &sites);

	tr_cuda_convs_init(&convs);
	if (created != CUDNN_STATUS_SUCCESS) {
		struct tr_cuda_conv_key key = {TR_CUDA_CONV_FORWARD, sites[0].conv, sites[0].in,
					       TR_CUDA_FP32, TR_CUDA_NCHW};
		struct tr_cuda_conv_entry *e = NULL;
		struct ut_err err = {{0}};
		printf("cudnnCreate: %s (no device): planning must fail cleanly\n",
		       cudnnGetErrorString(created));
		assert_int_equal(tr_cuda_convs_plan(&convs, NULL, &key, &e, &err), -1);
		printf("  %s\n", err.msg);
		assert_non_null(strstr(err.msg, "cuDNN"));
		assert_non_null(strstr(err.msg, "CUDNN_STATUS_"));
		assert_null(strchr(err.msg, '\n'));
		assert_int_equal(convs.count, 1);
		assert_int_equal(convs.plans_built, 0);
		assert_null(convs.workspace);
		memset(&err, 0, sizeof(err));
		assert_int_equal(tr_cuda_conv_forward(&convs, NULL, &key, NULL, NULL, NULL, &err),
				 -1);
		assert_non_null(strstr(err.msg, "cuDNN"));
	} else {
		size_t largest = 0;
		for (int s = 0; s < nsites; s++)
			for (size_t k = 0; k < COUNT(kinds); k++) {
				struct tr_cuda_conv_key key = {kinds[k], sites[s].conv, sites[s].in,
							       TR_CUDA_FP16, TR_CUDA_NCHW};
				struct tr_cuda_conv_entry *e = NULL;
				struct ut_err err = {{0}};
				if (tr_cuda_convs_plan(&convs, handle, &key, &e, &err) < 0)
					fail_key(&key, "yolov5n", err.msg);
				if ((size_t)e->workspace_bytes > largest)
					largest = (size_t)e->workspace_bytes;
			}
		printf("yolov5n fp16: %zu plans, shared workspace %zu bytes\n", convs.plans_built,
		       convs.workspace_bytes);
		assert_int_equal(convs.plans_built, convs.count);
		assert_int_equal(convs.workspace_bytes, largest);
		cudnnDestroy(handle);
	}
	tr_cuda_convs_release(&convs);
	free(sites);
	tr_model_free(model);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_wrong_shape_fails),
	    cmocka_unit_test(test_engine_policy),
	    cmocka_unit_test(test_plan),
	    cmocka_unit_test(test_every_conv_finalizes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
