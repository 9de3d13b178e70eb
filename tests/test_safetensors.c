/*
 * test_safetensors.c - the safetensors reader, writer and checkpoints.
 *
 * Golden files: every .safetensors in tests/golden/yolov5 must read
 * with exactly the tensors, dtypes and shapes its .yaml lists, a few values
 * must equal YOLOv5's, and rewriting its tensors must reproduce the file
 * byte for byte. Then round trips of every dtype and awkward names, a list
 * of bad files (each must fail with one line naming the file and the field)
 * and checkpoints. YE_SOURCE_ROOT unset is a failure, not a skip.
 */
#include <dirent.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <yaml.h>

#include <cmocka.h>

#include "yaml_doc.h"

#include "safetensors.h"

/* --- helpers --- */

static char tmpdir[256];

static int setup_tmpdir(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_st_XXXXXX");
	return mkdtemp(tmpdir) == NULL ? -1 : 0;
}

static int remove_tmpdir(void **state)
{
	(void)state;
	struct ut_err err;
	return ut_remove_tree(tmpdir, &err);
}

static const char *golden_dir(void)
{
	static char dir[1024];
	const char *root = getenv("YE_SOURCE_ROOT");
	if (root == NULL || root[0] == '\0')
		fail_msg("YE_SOURCE_ROOT is not set (it must name the repository root)");
	snprintf(dir, sizeof(dir), "%s/tests/golden/yolov5", root);
	return dir;
}

/* Names of the golden .safetensors files (sorted), NULL-terminated. */
static char **golden_files(size_t *count)
{
	const char *dir = golden_dir();
	struct dirent **list;
	int n = scandir(dir, &list, NULL, alphasort);
	if (n < 0) {
		fail_msg("%s: cannot list", dir);
		n = 0;
	}
	char **names = calloc((size_t)n + 1, sizeof(*names));
	size_t k = 0;
	for (int i = 0; i < n; i++) {
		const char *name = list[i]->d_name;
		size_t len = strlen(name);
		if (len > 12 && strcmp(name + len - 12, ".safetensors") == 0) {
			names[k] = malloc(strlen(dir) + len + 2);
			sprintf(names[k++], "%s/%s", dir, name);
		}
		free(list[i]);
	}
	free(list);
	if (k < 8)
		fail_msg("%s: %zu .safetensors files, expected the 8 golden cases", dir, k);
	*count = k;
	return names;
}

static void free_names(char **names)
{
	for (size_t i = 0; names[i] != NULL; i++)
		free(names[i]);
	free(names);
}

/* Error messages: one line naming the file and containing want. */
static void assert_error(const struct ut_err *err, const char *file, const char *want)
{
	if (strchr(err->msg, '\n') != NULL)
		fail_msg("error spans lines: %s", err->msg);
	if (strstr(err->msg, file) == NULL)
		fail_msg("error does not name %s: %s", file, err->msg);
	if (strstr(err->msg, want) == NULL)
		fail_msg("error does not mention \"%s\": %s", want, err->msg);
}

/* --- the golden yaml (libyaml document API) --- */

static yaml_node_t *yaml_get(yaml_document_t *doc, yaml_node_t *map, const char *key)
{
	if (map == NULL || map->type != YAML_MAPPING_NODE)
		return NULL;
	for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
	     p++) {
		yaml_node_t *k = yaml_document_get_node(doc, p->key);
		if (k->type == YAML_SCALAR_NODE && strcmp((char *)k->data.scalar.value, key) == 0)
			return yaml_document_get_node(doc, p->value);
	}
	return NULL;
}

static const char *yaml_text(yaml_node_t *node)
{
	assert_non_null(node);
	assert_int_equal(node->type, YAML_SCALAR_NODE);
	return (const char *)node->data.scalar.value;
}

static void load_yaml(const char *st_path, yaml_document_t *doc)
{
	char path[1100];
	snprintf(path, sizeof(path), "%.*s.yaml", (int)(strlen(st_path) - 12), st_path);
	test_yaml_load(path, doc);
}

/* Compare every tensor of the yaml's tensors: section with the file. */
static void check_against_yaml(const char *path, const struct tr_st_file *file)
{
	yaml_document_t doc;
	load_yaml(path, &doc);
	yaml_node_t *tensors = yaml_get(&doc, yaml_document_get_root_node(&doc), "tensors");
	assert_non_null(tensors);
	assert_int_equal(tensors->type, YAML_MAPPING_NODE);
	size_t listed = 0;
	for (yaml_node_pair_t *p = tensors->data.mapping.pairs.start;
	     p < tensors->data.mapping.pairs.top; p++, listed++) {
		const char *name = yaml_text(yaml_document_get_node(&doc, p->key));
		yaml_node_t *spec = yaml_document_get_node(&doc, p->value);
		const struct tr_st_tensor *t = tr_st_find(file, name);
		if (t == NULL)
			fail_msg("%s: %s listed in the yaml is missing", path, name);
		assert_string_equal(t->name, name);
		assert_string_equal(tr_st_dtype_name(t->dtype),
				    yaml_text(yaml_get(&doc, spec, "dtype")));
		yaml_node_t *shape = yaml_get(&doc, spec, "shape");
		assert_non_null(shape);
		assert_int_equal(shape->type, YAML_SEQUENCE_NODE);
		int ndim = (int)(shape->data.sequence.items.top - shape->data.sequence.items.start);
		if (ndim != t->ndim)
			fail_msg("%s: %s has %d dims, yaml says %d", path, name, t->ndim, ndim);
		size_t numel = 1;
		for (int d = 0; d < ndim; d++) {
			const char *dim = yaml_text(
			    yaml_document_get_node(&doc, shape->data.sequence.items.start[d]));
			assert_int_equal(t->shape[d], atoll(dim));
			numel *= (size_t)atoll(dim);
		}
		assert_int_equal(t->numel, numel);
		assert_int_equal(t->nbytes, numel * tr_st_dtype_size(t->dtype));
		/* natural alignment of the data in memory */
		assert_int_equal((uintptr_t)t->data % tr_st_dtype_size(t->dtype), 0);
	}
	if (listed != tr_st_count(file))
		fail_msg("%s: %zu tensors, the yaml lists %zu", path, tr_st_count(file), listed);
	yaml_document_delete(&doc);
}

/* --- golden files --- */

static void test_golden_read(void **state)
{
	(void)state;
	size_t count;
	char **paths = golden_files(&count);
	for (size_t i = 0; i < count; i++) {
		struct tr_st_file *file;
		struct ut_err err;
		if (tr_st_open(paths[i], &file, &err) != 0)
			fail_msg("%s", err.msg);
		check_against_yaml(paths[i], file);
		/* metadata: case = file stem, the yolov5 v7.0 commit */
		const char *base = strrchr(paths[i], '/') + 1;
		const char *name = tr_st_metadata(file, "case");
		assert_non_null(name);
		assert_int_equal(strlen(name), strlen(base) - 12);
		assert_memory_equal(name, base, strlen(name));
		assert_string_equal(tr_st_metadata(file, "yolov5_commit"),
				    "915bbf294bb74c859f0b41f1c23bc395014ea679");
		assert_null(tr_st_metadata(file, "no such key"));
		assert_null(tr_st_find(file, "no such tensor"));
		assert_null(tr_st_find(file, "__metadata__"));
		/* file order is offset order, 8-byte tensors first */
		size_t prev_size = 8, prev_end = 0;
		for (size_t k = 0; k < tr_st_count(file); k++) {
			const struct tr_st_tensor *t = tr_st_tensor_at(file, k);
			assert_int_equal(t->offset, prev_end);
			assert_true(tr_st_dtype_size(t->dtype) <= prev_size);
			prev_end = t->offset + t->nbytes;
			prev_size = tr_st_dtype_size(t->dtype);
			assert_ptr_equal(tr_st_find(file, t->name), t);
		}
		assert_null(tr_st_tensor_at(file, tr_st_count(file)));
		tr_st_close(file);
	}
	free_names(paths);
}

static double sum_f32(const struct tr_st_tensor *t)
{
	const float *v = t->data;
	double sum = 0;
	for (size_t i = 0; i < t->numel; i++)
		sum += v[i];
	return sum;
}

static double yaml_double(yaml_node_t *node)
{
	double value;
	if (ut_parse_double(yaml_text(node), &value) != 0)
		fail_msg("not a number: %s", yaml_text(node));
	return value;
}

static void test_golden_values(void **state)
{
	(void)state;
	char path[1100];
	snprintf(path, sizeof(path), "%s/model_v5n_nc2.safetensors", golden_dir());
	struct tr_st_file *file;
	struct ut_err err;
	if (tr_st_open(path, &file, &err) != 0)
		fail_msg("%s", err.msg);
	yaml_document_t doc;
	load_yaml(path, &doc);
	yaml_node_t *root = yaml_document_get_root_node(&doc);

	/* 349 state_dict entries, as the yaml says */
	size_t model = 0;
	for (size_t k = 0; k < tr_st_count(file); k++)
		model += strncmp(tr_st_tensor_at(file, k)->name, "model.", 6) == 0;
	assert_int_equal(model, 349);
	assert_int_equal(model, atol(yaml_text(yaml_get(&doc, root, "n_state_dict_entries"))));

	const struct tr_st_tensor *nbt = tr_st_find(file, "model.0.bn.num_batches_tracked");
	assert_non_null(nbt);
	assert_int_equal(nbt->dtype, TR_ST_I64);
	assert_int_equal(*(const int64_t *)nbt->data, 1);
	nbt = tr_st_find(file, "after_train_fwd/model.23.m.0.cv2.bn.num_batches_tracked");
	assert_non_null(nbt);
	assert_int_equal(*(const int64_t *)nbt->data, 2);

	/* model.24.anchors [3, 3, 2] equal anchors_grid_units exactly */
	const struct tr_st_tensor *anchors = tr_st_find(file, "model.24.anchors");
	assert_non_null(anchors);
	assert_int_equal(anchors->dtype, TR_ST_F32);
	assert_int_equal(anchors->ndim, 3);
	assert_int_equal(anchors->numel, 18);
	yaml_node_t *grid = yaml_get(&doc, root, "anchors_grid_units(model.24.anchors)");
	assert_non_null(grid);
	const float *a = anchors->data;
	size_t n = 0;
	for (yaml_node_item_t *lv = grid->data.sequence.items.start;
	     lv < grid->data.sequence.items.top; lv++) {
		yaml_node_t *level = yaml_document_get_node(&doc, *lv);
		for (yaml_node_item_t *pr = level->data.sequence.items.start;
		     pr < level->data.sequence.items.top; pr++) {
			yaml_node_t *pair = yaml_document_get_node(&doc, *pr);
			for (int c = 0; c < 2; c++, n++) {
				double want = yaml_double(yaml_document_get_node(
				    &doc, pair->data.sequence.items.start[c]));
				if (a[n] != (float)want)
					fail_msg("model.24.anchors[%zu] = %.9g, yaml %.9g", n,
						 (double)a[n], want);
			}
		}
	}
	assert_int_equal(n, 18);
	assert_true(a[0] == 1.25f && a[1] == 1.625f);

	/* the data really is the tensors: checksums from the yaml */
	const struct tr_st_tensor *decoded = tr_st_find(file, "eval_out/decoded");
	assert_non_null(decoded);
	double want = yaml_double(yaml_get(&doc, root, "eval_decoded_checksum_sum"));
	if (fabs(sum_f32(decoded) - want) > 1e-9 * fabs(want))
		fail_msg("eval_out/decoded sums to %.17g, yaml %.17g", sum_f32(decoded), want);
	yaml_node_t *sums = yaml_get(&doc, root, "train_out_checksum_sum");
	for (int i = 0; i < 3; i++) {
		char name[32];
		snprintf(name, sizeof(name), "train_out/%d", i);
		const struct tr_st_tensor *t = tr_st_find(file, name);
		assert_non_null(t);
		want =
		    yaml_double(yaml_document_get_node(&doc, sums->data.sequence.items.start[i]));
		if (fabs(sum_f32(t) - want) > 1e-9 * fabs(want) + 1e-6)
			fail_msg("%s sums to %.17g, yaml %.17g", name, sum_f32(t), want);
	}
	yaml_document_delete(&doc);
	tr_st_close(file);
}

/* A file's tensors and metadata as writer entries, in file order. */
static void file_entries(const struct tr_st_file *file, struct tr_st_entry **tensors,
			 struct tr_st_meta **meta)
{
	*tensors = calloc(tr_st_count(file) + 1, sizeof(**tensors));
	*meta = calloc(tr_st_metadata_count(file) + 1, sizeof(**meta));
	for (size_t k = 0; k < tr_st_count(file); k++) {
		const struct tr_st_tensor *t = tr_st_tensor_at(file, k);
		(*tensors)[k] = (struct tr_st_entry){t->name, t->dtype, t->ndim, t->shape, t->data};
	}
	for (size_t k = 0; k < tr_st_metadata_count(file); k++)
		assert_int_equal(tr_st_metadata_at(file, k, &(*meta)[k].key, &(*meta)[k].value), 0);
}

static void assert_same_files(const struct tr_st_file *a, const struct tr_st_file *b)
{
	assert_int_equal(tr_st_count(a), tr_st_count(b));
	for (size_t k = 0; k < tr_st_count(a); k++) {
		const struct tr_st_tensor *x = tr_st_tensor_at(a, k), *y = tr_st_tensor_at(b, k);
		assert_string_equal(x->name, y->name);
		assert_int_equal(x->dtype, y->dtype);
		assert_int_equal(x->ndim, y->ndim);
		assert_memory_equal(x->shape, y->shape, sizeof(x->shape));
		assert_int_equal(x->offset, y->offset);
		assert_int_equal(x->nbytes, y->nbytes);
		if (x->nbytes > 0)
			assert_memory_equal(x->data, y->data, x->nbytes);
	}
	assert_int_equal(tr_st_metadata_count(a), tr_st_metadata_count(b));
	for (size_t k = 0; k < tr_st_metadata_count(a); k++) {
		const char *ka, *va, *kb, *vb;
		assert_int_equal(tr_st_metadata_at(a, k, &ka, &va), 0);
		assert_int_equal(tr_st_metadata_at(b, k, &kb, &vb), 0);
		assert_string_equal(ka, kb);
		assert_string_equal(va, vb);
	}
	const char *key, *value;
	assert_int_equal(tr_st_metadata_at(a, tr_st_metadata_count(a), &key, &value), -1);
}

/* Rewriting a golden file's tensors gives the same bytes, and reads back the same. */
static void test_golden_rewrite(void **state)
{
	(void)state;
	size_t count;
	char **paths = golden_files(&count);
	for (size_t i = 0; i < count; i++) {
		struct tr_st_file *file = NULL, *back = NULL;
		struct ut_err err;
		char *orig = NULL, *image = NULL;
		size_t orig_len = 0, image_len = 0;
		if (tr_st_open(paths[i], &file, &err) != 0 ||
		    ut_read_file(paths[i], &orig, &orig_len, &err) != 0)
			fail_msg("%s", err.msg);
		struct tr_st_entry *tensors;
		struct tr_st_meta *meta;
		file_entries(file, &tensors, &meta);
		if (tr_st_serialize(tensors, tr_st_count(file), meta, tr_st_metadata_count(file),
				    &image, &image_len, &err) != 0)
			fail_msg("%s", err.msg);
		if (image_len != orig_len || memcmp(image, orig, orig_len) != 0)
			fail_msg("%s: rewritten image differs (%zu vs %zu bytes)", paths[i],
				 image_len, orig_len);
		char out[512];
		snprintf(out, sizeof(out), "%s/rewrite.safetensors", tmpdir);
		if (tr_st_write(out, tensors, tr_st_count(file), meta, tr_st_metadata_count(file),
				&err) != 0 ||
		    tr_st_open(out, &back, &err) != 0)
			fail_msg("%s", err.msg);
		assert_same_files(file, back);
		tr_st_close(back);
		free(image);
		free(orig);
		free(tensors);
		free(meta);
		tr_st_close(file);
	}
	free_names(paths);
}

/* --- round trip --- */

static void test_round_trip(void **state)
{
	(void)state;
	const double f64[3] = {1.0 / 3.0, -0.0, 1e308};
	const float f32[2][3] = {{1.5f, -2.25f, 1e-30f}, {3.0f, 0.1f, -7.0f}};
	const uint16_t f16[2] = {0x3c00, 0xc000};
	const uint16_t bf16[3] = {0x3f80, 0x4000, 0xbf80};
	const int64_t i64 = -5;
	const uint8_t u8[5] = {0, 1, 1, 0, 255};
	const int64_t shape2x3[] = {2, 3}, shape3[] = {3}, shape2[] = {2}, shape5[] = {5},
		      shape0[] = {4, 0, 2}, shape1x1[] = {1, 1};
	const struct tr_st_entry tensors[] = {
	    {"u8 first given", TR_ST_U8, 1, shape5, u8},
	    {"model.0.conv.weight", TR_ST_F32, 2, shape2x3, f32},
	    {"quote\" back\\slash\nnewline\ttab\x01\x7f", TR_ST_F64, 1, shape3, f64},
	    {"half", TR_ST_F16, 1, shape2, f16},
	    {"utf8 \xc3\xa9t\xc3\xa9", TR_ST_BF16, 1, shape3, bf16},
	    {"scalar", TR_ST_I64, 0, NULL, &i64},
	    {"empty", TR_ST_F32, 3, shape0, NULL},
	    {"one", TR_ST_F32, 2, shape1x1, &f32[1][1]},
	};
	const struct tr_st_meta meta[] = {
	    {"model_yaml", "nc: 2\nanchors:\n  - [10, 13]\n"},
	    {"quote\"key", "back\\slash \xc3\xa9"},
	    {"empty", ""},
	};
	char path[512];
	snprintf(path, sizeof(path), "%s/round.safetensors", tmpdir);
	struct ut_err err;
	struct tr_st_file *file;
	if (tr_st_write(path, tensors, UT_ARRAY_LEN(tensors), meta, UT_ARRAY_LEN(meta), &err) !=
		0 ||
	    tr_st_open(path, &file, &err) != 0)
		fail_msg("%s", err.msg);
	assert_int_equal(tr_st_count(file), UT_ARRAY_LEN(tensors));
	for (size_t k = 0; k < UT_ARRAY_LEN(tensors); k++) {
		const struct tr_st_entry *e = &tensors[k];
		const struct tr_st_tensor *t = tr_st_find(file, e->name);
		if (t == NULL)
			fail_msg("tensor %zu lost", k);
		assert_int_equal(t->dtype, e->dtype);
		assert_int_equal(t->ndim, e->ndim);
		size_t numel = 1;
		for (int d = 0; d < e->ndim; d++) {
			assert_int_equal(t->shape[d], e->shape[d]);
			numel *= (size_t)e->shape[d];
		}
		assert_int_equal(t->numel, numel);
		assert_int_equal((uintptr_t)t->data % tr_st_dtype_size(t->dtype), 0);
		if (numel > 0)
			assert_memory_equal(t->data, e->data, numel * tr_st_dtype_size(e->dtype));
	}
	/* layout: 8-byte (F64, I64 in given order), 4, 2 (F16, BF16), 1 */
	static const char *const order[] = {"quote\"", "scalar", "model.0", "empty",
					    "one",     "half",	 "utf8",    "u8"};
	for (size_t k = 0; k < UT_ARRAY_LEN(order); k++)
		assert_memory_equal(tr_st_tensor_at(file, k)->name, order[k], strlen(order[k]));
	for (size_t k = 0; k < UT_ARRAY_LEN(meta); k++)
		assert_string_equal(tr_st_metadata(file, meta[k].key), meta[k].value);

	/* the file image: padded header, serialize gives the same bytes */
	char *disk, *image;
	size_t disk_len, image_len;
	assert_int_equal(ut_read_file(path, &disk, &disk_len, &err), 0);
	assert_int_equal(tr_st_serialize(tensors, UT_ARRAY_LEN(tensors), meta, UT_ARRAY_LEN(meta),
					 &image, &image_len, &err),
			 0);
	assert_int_equal(image_len, disk_len);
	assert_memory_equal(image, disk, disk_len);
	uint64_t header_len;
	memcpy(&header_len, disk, 8);
	assert_int_equal(header_len % 8, 0);
	assert_int_equal(disk[8], '{');
	/* non-ASCII control bytes escaped as Python does */
	assert_non_null(memmem(disk, disk_len, "\\u0001\\u007f", 12));
	free(disk);
	free(image);
	tr_st_close(file);

	/* nothing at all, and metadata only */
	assert_int_equal(tr_st_serialize(NULL, 0, NULL, 0, &image, &image_len, &err), 0);
	assert_int_equal(image_len, 16);
	assert_memory_equal(image + 8, "{}      ", 8);
	assert_int_equal(tr_st_parse(image, image_len, "empty", &file, &err), 0);
	assert_int_equal(tr_st_count(file), 0);
	assert_null(tr_st_find(file, "x"));
	tr_st_close(file);
	free(image);
	assert_int_equal(tr_st_serialize(NULL, 0, meta, 1, &image, &image_len, &err), 0);
	assert_int_equal(tr_st_parse(image, image_len, "meta", &file, &err), 0);
	assert_string_equal(tr_st_metadata(file, "model_yaml"), meta[0].value);
	tr_st_close(file);
	free(image);
}

static void test_writer_errors(void **state)
{
	(void)state;
	const float value[2] = {1, 2};
	const int64_t two[] = {2}, negative[] = {-1}, huge[] = {INT64_MAX, INT64_MAX};
	struct ut_err err;
	char path[512];
	snprintf(path, sizeof(path), "%s/bad_write.safetensors", tmpdir);
	const struct {
		struct tr_st_entry tensors[2];
		size_t count;
		struct tr_st_meta meta[2];
		size_t meta_count;
		const char *want;
	} cases[] = {
	    {{{"a", TR_ST_F32, 1, two, value}, {"a", TR_ST_F32, 1, two, value}},
	     2,
	     {{0}},
	     0,
	     "tensor \"a\": duplicate"},
	    {{{"", TR_ST_F32, 1, two, value}}, 1, {{0}}, 0, "empty name"},
	    {{{"__metadata__", TR_ST_F32, 1, two, value}}, 1, {{0}}, 0, "__metadata__"},
	    {{{"neg", TR_ST_F32, 1, negative, value}},
	     1,
	     {{0}},
	     0,
	     "tensor \"neg\": shape[0] = -1"},
	    {{{"huge", TR_ST_F32, 2, huge, value}}, 1, {{0}}, 0, "tensor \"huge\""},
	    {{{"dtype", (enum tr_st_dtype)42, 1, two, value}},
	     1,
	     {{0}},
	     0,
	     "tensor \"dtype\": bad dtype"},
	    {{{"nodata", TR_ST_F32, 1, two, NULL}}, 1, {{0}}, 0, "tensor \"nodata\": no data"},
	    {{{"dims", TR_ST_F32, TR_ST_MAX_DIMS + 1, two, value}},
	     1,
	     {{0}},
	     0,
	     "tensor \"dims\": bad ndim"},
	    {{{0}}, 0, {{"k", "1"}, {"k", "2"}}, 2, "metadata key \"k\": duplicate"},
	    {{{0}}, 0, {{"k", NULL}}, 1, "metadata entry 0"},
	};
	for (size_t i = 0; i < UT_ARRAY_LEN(cases); i++) {
		if (tr_st_write(path, cases[i].tensors, cases[i].count, cases[i].meta,
				cases[i].meta_count, &err) == 0)
			fail_msg("case %zu written", i);
		assert_error(&err, path, cases[i].want);
		assert_int_equal(access(path, F_OK), -1); /* nothing left behind */
	}
	/* a folder that does not exist */
	char missing[600];
	snprintf(missing, sizeof(missing), "%s/no/such/dir/x.safetensors", tmpdir);
	const struct tr_st_entry ok = {"a", TR_ST_F32, 1, two, value};
	assert_int_equal(tr_st_write(missing, &ok, 1, NULL, 0, &err), -1);
	assert_error(&err, missing, "No such file");
	/* the temporary files were cleaned up */
	struct dirent **list;
	int n = scandir(tmpdir, &list, NULL, NULL);
	for (int i = 0; i < n; i++) {
		if (strstr(list[i]->d_name, ".tmp") != NULL)
			fail_msg("left behind: %s", list[i]->d_name);
		free(list[i]);
	}
	free(list);
}

/* --- bad files --- */

/* Write 8-byte length (or length_override), header padded with spaces to
 * 8 unless raw, then data_len bytes; open it; insist on failure naming want. */
static void expect_bad(const char *header, int raw, uint64_t length_override, size_t data_len,
		       const char *want)
{
	static int serial;
	char path[512];
	snprintf(path, sizeof(path), "%s/bad%d.safetensors", tmpdir, serial++);
	struct ut_buf buf = {0};
	size_t hlen = strlen(header);
	size_t padded = raw ? hlen : (hlen + 7) / 8 * 8;
	uint64_t len = length_override != 0 ? length_override : padded;
	uint8_t bytes[8];
	for (int i = 0; i < 8; i++)
		bytes[i] = (uint8_t)(len >> (8 * i));
	assert_int_equal(ut_buf_append(&buf, (const char *)bytes, 8), 0);
	assert_int_equal(ut_buf_append(&buf, header, hlen), 0);
	for (size_t i = hlen; i < padded; i++)
		assert_int_equal(ut_buf_append(&buf, " ", 1), 0);
	for (size_t i = 0; i < data_len; i++)
		assert_int_equal(ut_buf_append(&buf, "\x11", 1), 0);
	struct ut_err err;
	assert_int_equal(ut_write_file_atomic(path, buf.data, buf.len, &err), 0);
	struct tr_st_file *file = (struct tr_st_file *)&err; /* must become NULL */
	if (tr_st_open(path, &file, &err) == 0)
		fail_msg("accepted: %s", header);
	assert_null(file);
	assert_error(&err, path, want);
	ut_buf_free(&buf);
}

#define T(name, dtype, shape, offsets)                                                             \
	"\"" name "\":{\"dtype\":\"" dtype "\",\"shape\":" shape ",\"data_offsets\":" offsets "}"

static void test_bad_headers(void **state)
{
	(void)state;
	const char *good_a = T("a", "F32", "[2]", "[8,16]");
	const char *good_b = T("b", "I64", "[1]", "[0,8]");
	char header[1024];
	snprintf(header, sizeof(header), "{%s,%s}", good_a, good_b);
	/* sanity: the good one is good */
	struct ut_buf buf = {0};
	uint64_t len = (strlen(header) + 7) / 8 * 8;
	ut_buf_append(&buf, (const char *)&len, 8);
	ut_buf_append(&buf, header, strlen(header));
	while (buf.len < 8 + len)
		ut_buf_append(&buf, " ", 1);
	ut_buf_append(&buf, "0123456789abcdef", 16);
	struct tr_st_file *file;
	struct ut_err err;
	if (tr_st_parse(buf.data, buf.len, "good", &file, &err) != 0)
		fail_msg("%s", err.msg);
	tr_st_close(file);
	ut_buf_free(&buf);

	expect_bad("{}", 0, 4096, 0, "header length 4096 exceeds");
	expect_bad("{}", 0, UINT64_MAX, 0, "exceeds");
	expect_bad("{}", 1, 0, 0, "not a multiple of 8 (header not space-padded)");
	expect_bad("not json", 0, 0, 0, "does not start with '{'");
	expect_bad("{\"a\":}", 0, 0, 0, "not valid JSON");
	expect_bad("{\"a\":1,", 0, 0, 0, "not valid JSON");
	expect_bad("{\"a\"\x01:1}", 0, 0, 0, "control byte 0x01");
	expect_bad("{} {}", 0, 0, 0, "other than space padding");
	expect_bad("{}\n", 0, 0, 0, "other than space padding");
	expect_bad("{\"a\":[1]}", 0, 0, 0, "tensor \"a\": entry is not an object");
	expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 0, 0, 4,
		   "tensor \"a\": missing data_offsets");
	expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}", 0, 0,
		   4, "tensor \"a\": unknown field \"x\"");
	expect_bad(
	    "{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 0,
	    0, 4, "tensor \"a\": duplicate field dtype");
	expect_bad("{" T("a", "F31", "[1]", "[0,4]") "}", 0, 0, 4,
		   "tensor \"a\": dtype \"F31\" is not one of");
	expect_bad("{\"a\":{\"dtype\":7,\"shape\":[1],\"data_offsets\":[0,4]}}", 0, 0, 4,
		   "tensor \"a\": dtype (not a string)");
	expect_bad("{" T("a", "F32", "[-1]", "[0,4]") "}", 0, 0, 4,
		   "tensor \"a\": shape[0] is not a non-negative integer");
	expect_bad("{" T("a", "F32", "[1.5]", "[0,4]") "}", 0, 0, 4,
		   "tensor \"a\": shape[0] is not");
	expect_bad("{" T("a", "F32", "[1,\"2\"]", "[0,8]") "}", 0, 0, 8,
		   "tensor \"a\": shape[1] is not");
	expect_bad("{" T("a", "F32", "2", "[0,8]") "}", 0, 0, 8,
		   "tensor \"a\": shape is not a list");
	expect_bad("{" T("a", "F32", "[1,1,1,1,1,1,1,1,1]", "[0,4]") "}", 0, 0, 4,
		   "tensor \"a\": shape has 9 dimensions");
	expect_bad("{" T("a", "U8", "[4294967296,4294967296,4294967296]", "[0,4]") "}", 0, 0, 4,
		   "tensor \"a\": shape has too many elements");
	expect_bad("{" T("a", "F32", "[1]", "[0]") "}", 0, 0, 4,
		   "tensor \"a\": data_offsets is not a list of 2");
	expect_bad("{" T("a", "F32", "[1]", "[0,-4]") "}", 0, 0, 4,
		   "tensor \"a\": data_offsets is not");
	expect_bad("{" T("a", "F32", "[1]", "[0,1e300]") "}", 0, 0, 4,
		   "tensor \"a\": data_offsets is not");
	expect_bad("{" T("a", "F32", "[1]", "[0,8]") "}", 0, 0, 4,
		   "tensor \"a\": data_offsets [0, 8] out of the 4-byte");
	expect_bad("{" T("a", "F32", "[1]", "[4,0]") "}", 0, 0, 4,
		   "tensor \"a\": data_offsets [4, 0] out of");
	expect_bad("{" T("a", "F32", "[2]", "[0,4]") "}", 0, 0, 8,
		   "tensor \"a\": data_offsets [0, 4] hold 4 bytes, shape and dtype need 2 x 4");
	expect_bad("{" T("a", "U8", "[1]", "[0,1]") "," T("b", "F32", "[1]", "[1,5]") "}", 0, 0, 5,
		   "tensor \"b\": data_offsets [1, 5] not aligned");
	expect_bad("{" T("a", "F32", "[2]", "[0,8]") "," T("b", "F32", "[2]", "[4,12]") "}", 0, 0,
		   12, "tensor \"b\": data_offsets [4, 12] overlap tensor \"a\"");
	expect_bad("{" T("a", "F32", "[1]", "[0,4]") "," T("b", "F32", "[1]", "[8,12]") "}", 0, 0,
		   12, "tensor \"b\": data_offsets [8, 12] leave a hole after tensor \"a\"");
	expect_bad("{" T("a", "F32", "[1]", "[4,8]") "}", 0, 0, 8,
		   "tensor \"a\": data_offsets start at 4");
	expect_bad("{" T("a", "F32", "[1]", "[0,4]") "}", 0, 0, 12,
		   "data section has 12 bytes but the tensors cover 4");
	expect_bad("{" T("a", "F32", "[1]", "[0,4]") "," T("a", "F32", "[1]", "[4,8]") "}", 0, 0, 8,
		   "tensor \"a\": duplicate name");
	expect_bad("{" T("", "F32", "[1]", "[0,4]") "}", 0, 0, 4, "tensor \"\": empty name");
	expect_bad("{" T("a\\nb", "F32", "[1]", "[0,4]") "," T("a\\nb", "F32", "[1]", "[4,8]") "}",
		   0, 0, 8, "tensor \"a\\nb\": duplicate name");
	expect_bad("{\"__metadata__\":[]}", 0, 0, 0, "__metadata__ is not an object");
	expect_bad("{\"__metadata__\":{\"k\":1}}", 0, 0, 0,
		   "__metadata__ key \"k\": value is not a string");
	expect_bad("{\"__metadata__\":{\"\":\"v\"}}", 0, 0, 0, "__metadata__ has an empty key");
	expect_bad("{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0, 0, 0,
		   "__metadata__ key \"k\": duplicate key");
	expect_bad("{\"__metadata__\":{},\"__metadata__\":{}}", 0, 0, 0, "duplicate __metadata__");
}

/* Every prefix of a real file, and a few lies in its length field, fail cleanly. */
static void test_truncated(void **state)
{
	(void)state;
	char src[1100];
	snprintf(src, sizeof(src), "%s/autoanchor.safetensors", golden_dir());
	char *image;
	size_t len;
	struct ut_err err;
	if (ut_read_file(src, &image, &len, &err) != 0)
		fail_msg("%s", err.msg);
	uint64_t header_len;
	memcpy(&header_len, image, 8);
	const size_t cuts[] = {0,
			       1,
			       7,
			       8,
			       9,
			       8 + (size_t)header_len / 2,
			       8 + (size_t)header_len - 1,
			       8 + (size_t)header_len,
			       8 + (size_t)header_len + 1,
			       len / 2,
			       len - 4,
			       len - 1};
	static const char *const wants[] = {"too short",  "too short",	"too short",  "exceeds",
					    "exceeds",	  "exceeds",	"exceeds",    "out of the",
					    "out of the", "out of the", "out of the", "out of the"};
	char path[512];
	snprintf(path, sizeof(path), "%s/truncated.safetensors", tmpdir);
	for (size_t i = 0; i < UT_ARRAY_LEN(cuts); i++) {
		struct tr_st_file *file;
		assert_int_equal(ut_write_file_atomic(path, image, cuts[i], &err), 0);
		if (tr_st_open(path, &file, &err) == 0)
			fail_msg("truncated at %zu accepted", cuts[i]);
		assert_error(&err, path, wants[i]);
	}
	/* every prefix, in memory */
	for (size_t cut = 0; cut < len; cut += cut < 8 + header_len + 64 ? 1 : 997) {
		struct tr_st_file *file;
		char *copy = malloc(cut + 1);
		memcpy(copy, image, cut);
		if (tr_st_parse(copy, cut, "prefix", &file, &err) == 0)
			fail_msg("prefix of %zu bytes accepted", cut);
		assert_error(&err, "prefix", "");
		free(copy);
	}
	/* a longer file: trailing data */
	char *longer = malloc(len + 8);
	memcpy(longer, image, len);
	memset(longer + len, 0, 8);
	struct tr_st_file *file;
	assert_int_equal(tr_st_parse(longer, len + 8, "longer", &file, &err), -1);
	assert_error(&err, "longer", "trailing bytes");
	free(longer);
	/* not a file */
	assert_int_equal(tr_st_open(tmpdir, &file, &err), -1);
	assert_error(&err, tmpdir, "not a regular file");
	snprintf(path, sizeof(path), "%s/missing.safetensors", tmpdir);
	assert_int_equal(tr_st_open(path, &file, &err), -1);
	assert_error(&err, path, "No such file");
	free(image);
}

/* --- checkpoints --- */

static void test_checkpoint(void **state)
{
	(void)state;
	const float weight[4] = {0.5f, -1, 2, 3}, momentum[4] = {0.01f, 0.02f, 0.03f, 0.04f};
	const float bias[2] = {1, 2}, bias_m[2] = {0, 0};
	const int64_t nbt = 7, wshape[] = {2, 2}, bshape[] = {2}, nshape[] = {1};
	char mname[256], bname[256];
	struct ut_err err;
	assert_int_equal(
	    tr_ckpt_optimizer_name(mname, sizeof(mname), "model.0.conv.weight", "momentum", &err),
	    0);
	assert_string_equal(mname, "optimizer.model.0.conv.weight.momentum");
	assert_int_equal(
	    tr_ckpt_optimizer_name(bname, sizeof(bname), "model.24.m.0.bias", "momentum", &err), 0);
	char tiny[8];
	assert_int_equal(
	    tr_ckpt_optimizer_name(tiny, sizeof(tiny), "model.0.conv.weight", "momentum", &err),
	    -1);
	const struct tr_st_entry tensors[] = {
	    {"model.0.conv.weight", TR_ST_F32, 2, wshape, weight},
	    {"model.0.bn.num_batches_tracked", TR_ST_I64, 1, nshape, &nbt},
	    {"model.24.m.0.bias", TR_ST_F32, 1, bshape, bias},
	    {mname, TR_ST_F32, 2, wshape, momentum},
	    {bname, TR_ST_F32, 1, bshape, bias_m},
	};
	const struct tr_ckpt_info info = {
	    .epoch = 41,
	    .best_fitness = 0.1 + 0.2,
	    .ema_updates = 12345,
	    .model_yaml = "nc: 2\ndepth_multiple: 0.33\n",
	    .hyp = "lr0: 0.01\nmomentum: 0.937\n",
	};
	const struct tr_st_meta extra[] = {{"optimizer", "SGD"}};
	char path[512];
	snprintf(path, sizeof(path), "%s/last.safetensors", tmpdir);
	if (tr_ckpt_write(path, &info, tensors, UT_ARRAY_LEN(tensors), extra, 1, &err) != 0)
		fail_msg("%s", err.msg);
	struct tr_ckpt_info back;
	struct tr_st_file *file;
	if (tr_ckpt_read(path, &back, &file, &err) != 0)
		fail_msg("%s", err.msg);
	assert_int_equal(back.epoch, 41);
	assert_true(back.best_fitness == 0.1 + 0.2); /* bit exact */
	assert_int_equal(back.ema_updates, 12345);
	assert_string_equal(back.model_yaml, info.model_yaml);
	assert_string_equal(back.hyp, info.hyp);
	assert_string_equal(tr_st_metadata(file, "format"), TR_CKPT_FORMAT);
	assert_string_equal(tr_st_metadata(file, "best_fitness"), "0.30000000000000004");
	assert_string_equal(tr_st_metadata(file, "optimizer"), "SGD");
	const struct tr_st_tensor *m = tr_st_find(file, mname);
	assert_non_null(m);
	assert_memory_equal(m->data, momentum, sizeof(momentum));
	assert_int_equal(*(const int64_t *)tr_st_find(file, "model.0.bn.num_batches_tracked")->data,
			 7);
	tr_st_close(file);

	/* extra metadata may not shadow the info keys; best_fitness must be finite */
	const struct tr_st_meta clash[] = {{"epoch", "3"}};
	assert_int_equal(tr_ckpt_write(path, &info, tensors, UT_ARRAY_LEN(tensors), clash, 1, &err),
			 -1);
	assert_error(&err, path, "metadata key \"epoch\": duplicate");
	struct tr_ckpt_info nan_info = info;
	nan_info.best_fitness = NAN;
	assert_int_equal(tr_ckpt_write(path, &nan_info, tensors, 1, NULL, 0, &err), -1);
	assert_error(&err, path, "best_fitness");

	/* bad optimizer tensors */
	const int64_t other[] = {4};
	struct tr_st_entry bad[UT_ARRAY_LEN(tensors)];
	memcpy(bad, tensors, sizeof(bad));
	bad[3].ndim = 1;
	bad[3].shape = other; /* same bytes, wrong shape */
	assert_int_equal(tr_ckpt_write(path, &info, bad, UT_ARRAY_LEN(bad), NULL, 0, &err), 0);
	assert_int_equal(tr_ckpt_read(path, &back, &file, &err), -1);
	assert_null(file);
	assert_error(&err, path,
		     "tensor \"optimizer.model.0.conv.weight.momentum\": dtype or shape differs");
	memcpy(bad, tensors, sizeof(bad));
	bad[3].name = "optimizer.model.9.conv.weight.momentum";
	assert_int_equal(tr_ckpt_write(path, &info, bad, UT_ARRAY_LEN(bad), NULL, 0, &err), 0);
	assert_int_equal(tr_ckpt_read(path, &back, &file, &err), -1);
	assert_error(&err, path,
		     "tensor \"optimizer.model.9.conv.weight.momentum\": no parameter tensor");
	bad[3].name = "optimizer.model.0.conv.weight.velocity";
	assert_int_equal(tr_ckpt_write(path, &info, bad, UT_ARRAY_LEN(bad), NULL, 0, &err), 0);
	assert_int_equal(tr_ckpt_read(path, &back, &file, &err), -1);
	assert_error(&err, path, "velocity\": not optimizer.<param>");

	/* bad metadata */
	const struct {
		const char *key, *value, *want;
	} metas[] = {
	    {"format", "yolo-evolve-checkpoint-2",
	     "metadata format is \"yolo-evolve-checkpoint-2\""},
	    {"epoch", "1.5", "metadata epoch \"1.5\""},
	    {"epoch", "-2", "metadata epoch \"-2\""},
	    {"best_fitness", "nan", "metadata best_fitness \"nan\""},
	    {"ema_updates", "-1", "metadata ema_updates \"-1\""},
	    {"hyp", NULL, "metadata hyp missing"},
	};
	static const char *const keys[] = {"format",	  "epoch",	"best_fitness",
					   "ema_updates", "model_yaml", "hyp"};
	for (size_t i = 0; i < UT_ARRAY_LEN(metas); i++) {
		struct tr_st_meta meta[6];
		size_t n = 0;
		const char *good[] = {TR_CKPT_FORMAT, "3", "0.5", "10", "nc: 2\n", "lr0: 0.01\n"};
		for (size_t k = 0; k < 6; k++) {
			if (strcmp(keys[k], metas[i].key) == 0 && metas[i].value == NULL)
				continue;
			meta[n++] = (struct tr_st_meta){
			    keys[k], strcmp(keys[k], metas[i].key) == 0 ? metas[i].value : good[k]};
		}
		assert_int_equal(tr_st_write(path, tensors, 3, meta, n, &err), 0);
		assert_int_equal(tr_ckpt_read(path, &back, &file, &err), -1);
		assert_error(&err, path, metas[i].want);
	}
	/* a golden file is no checkpoint */
	char golden[1100];
	snprintf(golden, sizeof(golden), "%s/nms.safetensors", golden_dir());
	assert_int_equal(tr_ckpt_read(golden, &back, &file, &err), -1);
	assert_error(&err, golden, "metadata format missing");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_golden_read),	   cmocka_unit_test(test_golden_values),
	    cmocka_unit_test(test_golden_rewrite), cmocka_unit_test(test_round_trip),
	    cmocka_unit_test(test_writer_errors),  cmocka_unit_test(test_bad_headers),
	    cmocka_unit_test(test_truncated),	   cmocka_unit_test(test_checkpoint),
	};
	return cmocka_run_group_tests(tests, setup_tmpdir, remove_tmpdir);
}
