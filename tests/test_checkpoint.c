/*
 * test_checkpoint.c - model tensors to and from safetensors: YOLOv5's own
 * weights (the golden state_dict) load into our yolov5n; save and load
 * round-trip every tensor bit for bit; a file for another model, a
 * truncated file and a missing tensor are refused without touching the
 * model.
 */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "checkpoint.h"

static char tmpdir[PATH_MAX];

static const char *env(const char *name)
{
	const char *value = getenv(name);
	if (value == NULL) {
		fprintf(stderr, "%s is not set\n", name);
		exit(1);
	}
	return value;
}

static struct tr_model *yolov5n(int nc)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/models/yolov5n.yaml", env("YE_SOURCE_ROOT"));
	struct tr_model *model;
	struct ut_err err;
	if (tr_model_from_file(path, nc, &model, &err) != 0)
		fail_msg("%s", err.msg);
	return model;
}

static void golden_path(char *buf, size_t size)
{
	snprintf(buf, size, "%s/tests/golden/yolov5/model_v5n_nc2.safetensors",
		 env("YE_SOURCE_ROOT"));
}

/* Every model tensor equals the file's. */
static void assert_model_equals_file(const struct tr_model *model, const char *path)
{
	struct tr_st_file *file;
	struct ut_err err;
	assert_int_equal(tr_st_open(path, &file, &err), 0);
	for (int t = 0; t < model->ntensors; t++) {
		const struct tr_tensor_spec *spec = &model->tensors[t];
		const struct tr_st_tensor *stored = tr_st_find(file, spec->name);
		assert_non_null(stored);
		const void *ours = spec->kind == TR_TENSOR_COUNTER ? (const void *)spec->counter
								   : (const void *)spec->data;
		assert_memory_equal(ours, stored->data, stored->nbytes);
	}
	tr_st_close(file);
}

static void test_load_yolov5_weights(void **state)
{
	(void)state;
	struct tr_model *model = yolov5n(2);
	char path[PATH_MAX];
	golden_path(path, sizeof(path));
	struct ut_err err;
	assert_int_equal(tr_model_load(model, path, &err), 0);
	assert_model_equals_file(model, path);
	assert_int_equal(*tr_model_find(model, "model.0.bn.num_batches_tracked")->counter, 1);
	tr_model_free(model);
}

static void test_save_load_round_trip(void **state)
{
	(void)state;
	struct tr_model *model = yolov5n(2);
	struct ut_pcg rng;
	ut_pcg_seed(&rng, 5, 7);
	tr_model_init(model, &rng);
	*tr_model_find(model, "model.3.bn.num_batches_tracked")->counter = 12345;
	char path[PATH_MAX + 32];
	snprintf(path, sizeof(path), "%s/ckpt.safetensors", tmpdir);
	struct tr_ckpt_info info = {.epoch = 7,
				    .best_fitness = 0.1 + 0.2,
				    .ema_updates = 99,
				    .model_yaml = "nc: 2\n",
				    .hyp = "lr0: 0.01\n"};
	struct ut_err err;
	assert_int_equal(tr_model_save(model, path, &info, &err), 0);
	struct tr_model *copy = yolov5n(2);
	assert_int_equal(tr_model_load(copy, path, &err), 0);
	assert_memory_equal(copy->host_params, model->host_params,
			    model->nparam_values * sizeof(float));
	assert_memory_equal(copy->host_buffers, model->host_buffers,
			    model->nbuffer_values * sizeof(float));
	assert_memory_equal(copy->counters, model->counters,
			    model->ncounter_values * sizeof(int64_t));
	struct tr_ckpt_info back;
	struct tr_st_file *file;
	assert_int_equal(tr_ckpt_read(path, &back, &file, &err), 0);
	assert_int_equal(back.epoch, 7);
	assert_true(back.best_fitness == 0.1 + 0.2);
	assert_int_equal(back.ema_updates, 99);
	tr_st_close(file);
	/* a plain state_dict file as well */
	snprintf(path, sizeof(path), "%s/plain.safetensors", tmpdir);
	assert_int_equal(tr_model_save(model, path, NULL, &err), 0);
	assert_model_equals_file(model, path);
	tr_model_free(copy);
	tr_model_free(model);
}

/* A refused file leaves every tensor as it was. */
static void assert_refused(struct tr_model *model, const char *path, const char *expect)
{
	float *before = malloc(model->nparam_values * sizeof(float));
	assert_non_null(before);
	memcpy(before, model->host_params, model->nparam_values * sizeof(float));
	struct ut_err err;
	assert_int_equal(tr_model_load(model, path, &err), -1);
	if (strstr(err.msg, expect) == NULL)
		fail_msg("'%s' does not mention '%s'", err.msg, expect);
	assert_null(strchr(err.msg, '\n'));
	assert_memory_equal(before, model->host_params, model->nparam_values * sizeof(float));
	free(before);
}

static void test_refuses_bad_files(void **state)
{
	(void)state;
	char path[PATH_MAX];
	golden_path(path, sizeof(path));
	struct tr_model *model80 = yolov5n(80);
	assert_refused(model80, path, "model.24.m.0.weight");
	tr_model_free(model80);

	struct tr_model *model = yolov5n(2);
	/* a truncated copy of the golden file */
	char *bytes;
	size_t len;
	assert_int_equal(ut_read_file(path, &bytes, &len, NULL), 0);
	char cut[PATH_MAX + 32];
	snprintf(cut, sizeof(cut), "%s/cut.safetensors", tmpdir);
	assert_int_equal(ut_write_file_atomic(cut, bytes, len / 2, NULL), 0);
	free(bytes);
	assert_refused(model, cut, "cut.safetensors");
	/* a file without one tensor */
	struct tr_model *source = yolov5n(2);
	struct tr_st_entry entry = {"model.0.conv.weight", TR_ST_F32, 1, (int64_t[]){1},
				    source->host_params};
	char partial[PATH_MAX + 32];
	snprintf(partial, sizeof(partial), "%s/partial.safetensors", tmpdir);
	assert_int_equal(tr_st_write(partial, &entry, 1, NULL, 0, NULL), 0);
	assert_refused(model, partial, "model.0.conv.weight");
	tr_model_free(source);
	tr_model_free(model);
}

static int setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "%s/ye_ckpt_XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	return mkdtemp(tmpdir) == NULL ? -1 : 0;
}

static int teardown(void **state)
{
	(void)state;
	return ut_remove_tree(tmpdir, NULL);
}

int main(void)
{
	env("YE_SOURCE_ROOT");
	env("YE_SOURCE_ROOT");
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_load_yolov5_weights),
	    cmocka_unit_test(test_save_load_round_trip),
	    cmocka_unit_test(test_refuses_bad_files),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
