/*
 * test_dataset.c - trainer/data/dataset.c: data.yaml, the thermal-dogs-people
 * subset in tests/data (counts as tests/golden/README.md lists them), every
 * bad-input case of tests/data/dataset (one fixture file each), the label
 * cache (created, hit, invalidated) and EXIF orientation. YE_SOURCE_ROOT
 * unset is a failure, not a skip.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "dataset.h"

static const char *env_dir(const char *name)
{
	const char *value = getenv(name);
	if (value == NULL || value[0] == '\0')
		fail_msg("%s is not set", name);
	return value;
}

static void run(const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	assert_int_equal(system(cmd), 0);
}

/* A fresh temporary copy of the fixture folder (the cache is written there). */
static void fixture_copy(char *dir, size_t size)
{
	snprintf(dir, size, "/tmp/test_dataset_XXXXXX");
	assert_non_null(mkdtemp(dir));
	run("cp -r '%s/tests/data/dataset/.' '%s/'", env_dir("YE_SOURCE_ROOT"), dir);
}

static bool has_message(const struct tr_data_split *split, const char *a, const char *b)
{
	for (int i = 0; i < split->n_messages; i++)
		if (strstr(split->messages[i], a) != NULL && strstr(split->messages[i], b) != NULL)
			return true;
	return false;
}

static const struct tr_data_item *find_item(const struct tr_data_split *split, const char *name)
{
	for (int i = 0; i < split->n_items; i++)
		if (strstr(split->items[i].image_path, name) != NULL)
			return &split->items[i];
	return NULL;
}

static void test_thermal(void **state)
{
	(void)state;
	char path[1024];
	snprintf(path, sizeof(path), "%s/tests/data/thermal-dogs-people/data.yaml",
		 env_dir("YE_SOURCE_ROOT"));
	struct tr_data_yaml yaml;
	struct ut_err err;
	if (tr_data_yaml_load(path, &yaml, &err) != 0)
		fail_msg("%s", err.msg);
	assert_int_equal(yaml.nc, 2);
	assert_string_equal(yaml.names[0], "dog");
	assert_string_equal(yaml.names[1], "person");
	assert_int_equal(yaml.n_train, 1);
	assert_non_null(strstr(yaml.train[0], "thermal-dogs-people/images/train"));
	assert_int_equal(yaml.n_test, 1);
	static const struct {
		int images, empty;
		long labels;
	} expect[3] = {{16, 3, 18}, {6, 3, 3}, {6, 1, 8}}; /* tests/golden/README.md */
	char **sources[3] = {yaml.train, yaml.val, yaml.test};
	int n_sources[3] = {yaml.n_train, yaml.n_val, yaml.n_test};
	for (int s = 0; s < 3; s++) {
		struct tr_data_split split;
		/* no label cache written into the source tree */
		struct tr_data_open_opts opts = {.nc = yaml.nc, .use_cache = false};
		if (tr_data_split_open((const char *const *)sources[s], n_sources[s], &opts, &split,
				       &err) != 0)
			fail_msg("%s", err.msg);
		assert_int_equal(split.n_items, expect[s].images);
		assert_int_equal(split.summary.found, expect[s].images);
		assert_int_equal(split.summary.corrupt, 0);
		assert_int_equal(split.summary.missing, 0);
		assert_int_equal(split.summary.empty, expect[s].empty);
		assert_int_equal(split.summary.labels, expect[s].labels);
		char line[128];
		tr_data_summary_format(&split.summary, line, sizeof(line));
		print_message("thermal split %d: %s, %ld labels\n", s, line, split.summary.labels);
		assert_int_equal(split.items[0].width, 416);
		assert_int_equal(split.items[0].height, 416);
		if (s == 0) {
			struct tr_image im;
			if (tr_data_image_load(split.items[0].image_path, &im, &err) != 0)
				fail_msg("%s", err.msg);
			assert_int_equal(im.width, 416);
			assert_int_equal(im.height, 416);
			free(im.data);
		}
		tr_data_split_free(&split);
	}
	tr_data_yaml_free(&yaml);
}

static void open_fixture(const char *dir, struct tr_data_split *split)
{
	char yaml_path[1024];
	snprintf(yaml_path, sizeof(yaml_path), "%s/data.yaml", dir);
	struct tr_data_yaml yaml;
	struct ut_err err;
	if (tr_data_yaml_load(yaml_path, &yaml, &err) != 0)
		fail_msg("%s", err.msg);
	struct tr_data_open_opts opts = {.nc = yaml.nc, .use_cache = true};
	if (tr_data_split_open((const char *const *)yaml.train, yaml.n_train, &opts, split, &err) !=
	    0)
		fail_msg("%s", err.msg);
	tr_data_yaml_free(&yaml);
}

static void test_bad_inputs(void **state)
{
	(void)state;
	char dir[64];
	fixture_copy(dir, sizeof(dir));
	struct tr_data_split split;
	open_fixture(dir, &split);
	assert_int_equal(split.summary.images, 12);
	assert_int_equal(split.n_items, 5);
	assert_int_equal(split.summary.found, 9);
	assert_int_equal(split.summary.missing, 1);
	assert_int_equal(split.summary.empty, 1);
	assert_int_equal(split.summary.corrupt, 7);
	assert_int_equal(split.summary.duplicates, 1);
	assert_int_equal(split.summary.labels, 6);
	assert_true(has_message(&split, "corrupt.jpg", "corrupt JPEG"));
	assert_true(has_message(&split, "tiny.png", "(5, 5) <10 pixels"));
	assert_true(
	    has_message(&split, "four_cols.txt", "labels require 5 columns, 4 columns detected"));
	assert_true(has_message(&split, "class_oob.txt", "exceeds nc=2"));
	assert_true(has_message(&split, "negative.txt", "negative label values"));
	assert_true(has_message(&split, "over_one.txt", "non-normalized"));
	assert_true(has_message(&split, "not_number.txt", "could not convert"));
	assert_true(has_message(&split, "dups.jpg", "1 duplicate labels removed"));
	assert_int_equal(split.n_messages, 8); /* each bad file once */

	const struct tr_data_item *bg = find_item(&split, "background.bmp");
	assert_non_null(bg);
	assert_int_equal(bg->labels.n_labels, 0);
	assert_int_equal(bg->width, 12);
	assert_int_equal(bg->height, 10);
	const struct tr_data_item *dups = find_item(&split, "dups.jpg");
	assert_int_equal(dups->labels.n_labels, 2);
	assert_int_equal(dups->labels.labels[0].cls, 0); /* np.unique order */
	assert_int_equal(dups->labels.labels[1].cls, 1);
	const struct tr_data_item *seg = find_item(&split, "seg.png");
	assert_non_null(seg->labels.seg_start);
	assert_int_equal(seg->labels.n_labels, 2);
	/* file order (no duplicates); the 5-column row becomes a 2-point polygon */
	const struct tr_data_label *poly = &seg->labels.labels[0];
	assert_int_equal(poly->cls, 1);
	assert_float_equal(poly->x, (0.1f + 0.5f) / 2, 1e-7);
	assert_float_equal(poly->y, (0.2f + 0.8f) / 2, 1e-7);
	assert_float_equal(poly->w, 0.5f - 0.1f, 1e-7);
	assert_float_equal(poly->h, 0.8f - 0.2f, 1e-7);
	assert_int_equal(seg->labels.seg_start[1] - seg->labels.seg_start[0], 3);
	assert_float_equal(seg->labels.labels[1].x, (0.5f + 0.2f) / 2, 1e-7);
	assert_float_equal(seg->labels.labels[1].w, 0.5f - 0.2f, 1e-7);
	const struct tr_data_item *ex = find_item(&split, "exif6.jpg");
	assert_int_equal(ex->width, 16);
	assert_int_equal(ex->height, 32);
	tr_data_split_free(&split);
	run("rm -rf '%s'", dir);
}

static void test_images(void **state)
{
	(void)state;
	char path[1024];
	struct tr_image im;
	struct ut_err err;
	const char *root = env_dir("YE_SOURCE_ROOT");
	snprintf(path, sizeof(path), "%s/tests/data/dataset/images/train/exif6.jpg", root);
	if (tr_data_image_load(path, &im, &err) != 0)
		fail_msg("%s", err.msg);
	/* stored 32x16 red|blue; orientation 6 shows it 16x32, red on top */
	assert_int_equal(im.width, 16);
	assert_int_equal(im.height, 32);
	const uint8_t *top = im.data + (4 * 16 + 8) * 3, *bottom = im.data + (28 * 16 + 8) * 3;
	assert_true(top[2] > 200 && top[0] < 50);	/* BGR: red */
	assert_true(bottom[0] > 200 && bottom[2] < 50); /* blue */
	free(im.data);
	snprintf(path, sizeof(path), "%s/tests/data/dataset/images/train/seg.png", root);
	if (tr_data_image_load(path, &im, &err) != 0)
		fail_msg("%s", err.msg);
	assert_int_equal(im.width, 16);
	assert_int_equal(im.height, 12);
	assert_int_equal(im.data[0], 30); /* RGBA (10,20,30,128): alpha dropped, BGR */
	assert_int_equal(im.data[1], 20);
	assert_int_equal(im.data[2], 10);
	free(im.data);
	snprintf(path, sizeof(path), "%s/tests/data/dataset/images/train/background.bmp", root);
	if (tr_data_image_load(path, &im, &err) != 0)
		fail_msg("%s", err.msg);
	assert_int_equal(im.width, 12);
	assert_int_equal(im.height, 10);
	assert_int_equal(im.data[(9 * 12 + 11) * 3 + 0], 10);
	assert_int_equal(im.data[(9 * 12 + 11) * 3 + 2], 200);
	free(im.data);
	snprintf(path, sizeof(path), "%s/tests/data/dataset/images/train/corrupt.jpg", root);
	assert_int_equal(tr_data_image_load(path, &im, &err), -1);
	assert_non_null(strstr(err.msg, "corrupt.jpg"));
}

static void test_cache(void **state)
{
	(void)state;
	char dir[64];
	fixture_copy(dir, sizeof(dir));
	char cache[256];
	snprintf(cache, sizeof(cache), "%s/labels/train.yecache", dir);
	struct tr_data_split split;
	struct stat st;
	open_fixture(dir, &split);
	assert_false(split.cache_hit);
	assert_true(split.cache_written);
	assert_string_equal(split.cache_path, cache);
	assert_int_equal(stat(cache, &st), 0);
	struct tr_data_summary first = split.summary;
	tr_data_split_free(&split);

	open_fixture(dir, &split); /* hit: same items, counts and messages */
	assert_true(split.cache_hit);
	assert_false(split.cache_written);
	assert_memory_equal(&split.summary, &first, sizeof(first));
	assert_int_equal(split.n_items, 5);
	assert_int_equal(split.n_messages, 8);
	assert_true(has_message(&split, "four_cols.txt", "4 columns detected"));
	assert_int_equal(find_item(&split, "seg.png")->labels.seg_start[2], 5);
	tr_data_split_free(&split);

	/* a label file changes size: rebuilt, and the fix is seen */
	run("echo '0 0.5 0.5 0.2 0.2' > '%s/labels/train/four_cols.txt'", dir);
	open_fixture(dir, &split);
	assert_false(split.cache_hit);
	assert_int_equal(split.n_items, 6);
	tr_data_split_free(&split);
	open_fixture(dir, &split);
	assert_true(split.cache_hit);
	tr_data_split_free(&split);

	/* a file added, then removed */
	run("cp '%s/images/train/good.jpg' '%s/images/train/good2.jpg'", dir, dir);
	open_fixture(dir, &split);
	assert_false(split.cache_hit);
	assert_int_equal(split.n_items, 7);
	assert_int_equal(split.summary.missing, 2);
	tr_data_split_free(&split);
	run("rm '%s/images/train/good2.jpg'", dir);
	open_fixture(dir, &split);
	assert_false(split.cache_hit);
	assert_int_equal(split.n_items, 6);
	tr_data_split_free(&split);

	/* a damaged cache is rebuilt, not trusted */
	run("printf 'YECACHE\\ngarbage' > '%s'", cache);
	open_fixture(dir, &split);
	assert_false(split.cache_hit);
	assert_true(split.cache_written);
	tr_data_split_free(&split);
	run("rm -rf '%s'", dir);
}

static void expect_yaml_error(const char *text, const char *needle)
{
	struct tr_data_yaml yaml;
	struct ut_err err;
	int rc = tr_data_yaml_parse(text, strlen(text), "/d/data.yaml", &yaml, &err);
	if (rc == 0)
		fail_msg("accepted: %s", text);
	if (strstr(err.msg, needle) == NULL)
		fail_msg("'%s' lacks '%s'", err.msg, needle);
}

static void test_yaml(void **state)
{
	(void)state;
	struct tr_data_yaml yaml;
	struct ut_err err;
	const char *text =
	    "path: ../sets/x\ntrain: [a/images, b.txt]\nval: /abs/val\ntest:\nnames: [p, q, r]\n";
	if (tr_data_yaml_parse(text, strlen(text), "/d/cfg/data.yaml", &yaml, &err) != 0)
		fail_msg("%s", err.msg);
	assert_string_equal(yaml.root, "/d/sets/x");
	assert_int_equal(yaml.n_train, 2);
	assert_string_equal(yaml.train[0], "/d/sets/x/a/images");
	assert_string_equal(yaml.train[1], "/d/sets/x/b.txt");
	assert_string_equal(yaml.val[0], "/abs/val");
	assert_int_equal(yaml.n_test, 0);
	assert_int_equal(yaml.nc, 3);
	tr_data_yaml_free(&yaml);
	text = "train: t\nval: v\nnames:\n  1: b\n  0: a\n";
	if (tr_data_yaml_parse(text, strlen(text), "/d/data.yaml", &yaml, &err) != 0)
		fail_msg("%s", err.msg);
	assert_string_equal(yaml.root, "/d");
	assert_string_equal(yaml.names[0], "a");
	assert_string_equal(yaml.names[1], "b");
	tr_data_yaml_free(&yaml);

	expect_yaml_error("val: v\nnames: [a]\n", "'train:' field missing");
	expect_yaml_error("train: t\nval: v\nnames: [a, b]\nnc: 3\n",
			  "/d/data.yaml:4: nc: nc is 3 but names has 2");
	expect_yaml_error("train: t\nval: v\nnames: {0: a, 2: b}\n",
			  "data.yaml:3: names: keys must be");
	expect_yaml_error("train: t\nval: v\nnames: 7\n", "names: expected a list");
	expect_yaml_error("train: {a: 1}\nval: v\nnames: [a]\n", ":1: train:");
	expect_yaml_error("train: t\ntrain: u\nval: v\nnames: [a]\n", ":2: train: duplicate key");
	expect_yaml_error("train: [t\n", "data.yaml:");
}

static void test_labels(void **state)
{
	(void)state;
	struct tr_data_labels lb;
	struct ut_err err;
	const char *ok = "\n0 0.5 0.5 1 1\r\n\n  1   0 0 0 0  \n";
	assert_int_equal(tr_data_labels_parse(ok, strlen(ok), 2, &lb, &err), 0);
	assert_int_equal(lb.n_labels, 2);
	assert_null(lb.seg_start);
	tr_data_labels_free(&lb);
	static const struct {
		const char *text, *reason;
	} bad[] = {
	    {"0 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2\n", "different numbers of columns"},
	    {"0 0.5 0.5 0.2 0.2 0.1\n", "6 columns detected"},
	    {"0.5 0.5 0.5 0.2 0.2\n", "not an integer"},
	    {"0 nan 0.5 0.2 0.2\n", "negative label values"},
	    {"0 inf 0.5 0.2 0.2\n", "non-normalized"},
	    {"0 0x1 0.5 0.2 0.2\n", "could not convert"},
	    {"0 0.1 0.1 0.2 0.2 0.3\n1 0.1 0.1 0.2 0.2 0.3 0.3\n", "not whole x y pairs"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(
		    tr_data_labels_parse(bad[i].text, strlen(bad[i].text), 2, &lb, &err), -1);
		if (strstr(err.msg, bad[i].reason) == NULL)
			fail_msg("'%s' gave '%s'", bad[i].text, err.msg);
	}
	char *p = tr_data_label_path("/a/images/b/images/c.d/x.jpg");
	assert_string_equal(p, "/a/images/b/labels/c.d/x.txt");
	free(p);
	p = tr_data_label_path("/a/img/x.png");
	assert_string_equal(p, "/a/img/x.txt");
	free(p);
}

static void test_errors(void **state)
{
	(void)state;
	char dir[64];
	fixture_copy(dir, sizeof(dir));
	struct tr_data_split split;
	struct ut_err err;
	struct tr_data_open_opts opts = {.nc = 2, .use_cache = true};
	char src[256];
	snprintf(src, sizeof(src), "%s/nowhere", dir);
	const char *sources[1] = {src};
	assert_int_equal(tr_data_split_open(sources, 1, &opts, &split, &err), -1);
	assert_non_null(strstr(err.msg, "does not exist"));
	/* only bad images: an error, not an empty dataset */
	run("mkdir -p '%s/only/images' '%s/only/labels' && cp '%s/images/train/corrupt.jpg' "
	    "'%s/images/train/tiny.png' '%s/only/images/'",
	    dir, dir, dir, dir, dir);
	snprintf(src, sizeof(src), "%s/only/images", dir);
	assert_int_equal(tr_data_split_open(sources, 1, &opts, &split, &err), -1);
	assert_non_null(strstr(err.msg, "no usable images"));
	/* a .txt list, relative to its folder */
	run("printf './images/train/good.jpg\\nimages/train/dups.jpg\\nnotes.md\\n' > "
	    "'%s/list.txt'",
	    dir);
	snprintf(src, sizeof(src), "%s/list.txt", dir);
	if (tr_data_split_open(sources, 1, &opts, &split, &err) != 0)
		fail_msg("%s", err.msg);
	assert_int_equal(split.n_items, 2);
	assert_int_equal(split.summary.labels, 4);
	tr_data_split_free(&split);
	run("rm -rf '%s'", dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_yaml),    cmocka_unit_test(test_labels),
	    cmocka_unit_test(test_images),  cmocka_unit_test(test_bad_inputs),
	    cmocka_unit_test(test_cache),   cmocka_unit_test(test_errors),
	    cmocka_unit_test(test_thermal),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
