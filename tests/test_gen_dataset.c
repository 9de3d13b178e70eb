/*
 * test_gen_dataset.c - the synthetic shapes dataset (tools/gen_dataset.h):
 * boxes are the exact bounds of each object's drawn pixels, shapes are big
 * enough to learn, the files on disk are complete and parse as YOLO labels,
 * PNGs read back to the generated pixels, and the same seed gives the same
 * bytes (another seed does not).
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

#include <cmocka.h>

#include "gen_dataset.h"

static void must(int rc, const struct ut_err *err)
{
	if (rc != 0)
		fail_msg("%s", err->msg);
}

static void test_boxes_tight_and_sizes(void **state)
{
	(void)state;
	const int sizes[] = {128, 320};
	int objects = 0, per_class[TR_GEN_MAX_CLASSES] = {0};
	for (int k = 0; k < 2; k++) {
		int size = sizes[k];
		for (long index = 0; index < 40; index++) {
			struct ut_err err;
			struct tr_gen_sample s;
			must(tr_gen_sample(5, TR_GEN_TRAIN, index, size, 6, &s, &err), &err);
			assert_true(s.n >= 1 && s.n <= TR_GEN_MAX_OBJECTS);
			for (int i = 0; i < s.n; i++) {
				const struct tr_gen_object *o = &s.objects[i];
				int xmin = size, ymin = size, xmax = -1, ymax = -1;
				for (int y = 0; y < size; y++)
					for (int x = 0; x < size; x++)
						if (s.object_map[(size_t)y * size + x] == i + 1) {
							xmin = x < xmin ? x : xmin,
							xmax = x > xmax ? x : xmax;
							ymin = y < ymin ? y : ymin,
							ymax = y > ymax ? y : ymax;
						}
				if (xmin != o->x1 || ymin != o->y1 || xmax + 1 != o->x2 ||
				    ymax + 1 != o->y2)
					fail_msg("image %ld object %d: pixels [%d,%d)x[%d,%d), box "
						 "[%d,%d)x[%d,%d)",
						 index, i, xmin, xmax + 1, ymin, ymax + 1, o->x1,
						 o->x2, o->y1, o->y2);
				double fw = (double)(o->x2 - o->x1) / size,
				       fh = (double)(o->y2 - o->y1) / size;
				if (fw < 0.08 || fh < 0.08 || fw > 0.46 || fh > 0.46)
					fail_msg("image %ld object %d is %.2f x %.2f of the image",
						 index, i, fw, fh);
				assert_true(o->cls >= 0 && o->cls < 6);
				per_class[o->cls]++;
				objects++;
			}
			for (size_t p = 0; p < (size_t)size * size; p++)
				assert_true(s.object_map[p] <= s.n);
			tr_gen_sample_free(&s);
		}
	}
	assert_true(objects > 80 * 1.5);
	for (int c = 0; c < 6; c++)
		assert_true(per_class[c] > 5);
}

/* Filled shapes stand out: mean colour distance to the ground is large. */
static void test_contrast(void **state)
{
	(void)state;
	struct ut_err err;
	struct tr_gen_sample s;
	must(tr_gen_sample(1, TR_GEN_VAL, 3, 256, 3, &s, &err), &err);
	double in[3] = {0}, out[3] = {0};
	long nin = 0, nout = 0;
	for (size_t p = 0; p < 256 * 256; p++) {
		for (int c = 0; c < 3; c++)
			*(s.object_map[p] ? &in[c] : &out[c]) += s.image.data[3 * p + c];
		*(s.object_map[p] ? &nin : &nout) += 1;
	}
	double distance = 0;
	for (int c = 0; c < 3; c++)
		distance += fabs(in[c] / nin - out[c] / nout);
	assert_true(nin > 0 && nout > 0);
	if (distance < 100)
		fail_msg("objects differ from the background by %.1f grey levels in all", distance);
	tr_gen_sample_free(&s);
}

static void test_same_seed_same_sample(void **state)
{
	(void)state;
	struct ut_err err;
	struct tr_gen_sample a, b, c;
	must(tr_gen_sample(9, TR_GEN_TRAIN, 4, 160, 3, &a, &err), &err);
	must(tr_gen_sample(9, TR_GEN_TRAIN, 4, 160, 3, &b, &err), &err);
	must(tr_gen_sample(9, TR_GEN_VAL, 4, 160, 3, &c, &err), &err);
	assert_memory_equal(a.image.data, b.image.data, 160 * 160 * 3);
	assert_int_equal(a.n, b.n);
	assert_memory_equal(a.objects, b.objects, sizeof(a.objects[0]) * (size_t)a.n);
	assert_true(memcmp(a.image.data, c.image.data, 160 * 160 * 3) != 0);
	tr_gen_sample_free(&a);
	tr_gen_sample_free(&b);
	tr_gen_sample_free(&c);
	assert_int_equal(tr_gen_sample(9, TR_GEN_TRAIN, 0, 16, 3, &a, &err), -1);
	assert_int_equal(tr_gen_sample(9, TR_GEN_TRAIN, 0, 128, 7, &a, &err), -1);
}

static char *read_all(const char *path, size_t *len)
{
	char *text = NULL;
	struct ut_err err;
	if (ut_read_file(path, &text, len, &err) != 0)
		fail_msg("%s", err.msg);
	return text;
}

/* Parse one label file; check its rows against the regenerated sample. */
static void check_labels(const char *path, const struct tr_gen_sample *s, int classes)
{
	size_t len;
	char *text = read_all(path, &len);
	int rows = 0;
	for (char *line = strtok(text, "\n"); line != NULL; line = strtok(NULL, "\n")) {
		double v[6];
		int cls, fields = sscanf(line, "%d %lf %lf %lf %lf %lf", &cls, &v[0], &v[1], &v[2],
					 &v[3], &v[4]);
		if (fields != 5)
			fail_msg("%s: '%s' does not have 5 columns", path, line);
		assert_true(cls >= 0 && cls < classes);
		for (int k = 0; k < 4; k++)
			assert_true(v[k] > 0 && v[k] <= 1);
		assert_true(v[0] - v[2] / 2 >= -1e-6 && v[0] + v[2] / 2 <= 1 + 1e-6);
		assert_true(v[1] - v[3] / 2 >= -1e-6 && v[1] + v[3] / 2 <= 1 + 1e-6);
		assert_true(rows < s->n);
		const struct tr_gen_object *o = &s->objects[rows];
		double size = s->image.width;
		assert_int_equal(cls, o->cls);
		assert_true(fabs((v[0] - v[2] / 2) * size - o->x1) < 0.01);
		assert_true(fabs((v[0] + v[2] / 2) * size - o->x2) < 0.01);
		assert_true(fabs((v[1] - v[3] / 2) * size - o->y1) < 0.01);
		assert_true(fabs((v[1] + v[3] / 2) * size - o->y2) < 0.01);
		rows++;
	}
	assert_int_equal(rows, s->n);
	free(text);
}

static void check_dataset(const char *root, const struct tr_gen_opts *opts)
{
	const char *splits[2] = {"train", "val"};
	const int counts[2] = {opts->train, opts->val};
	char path[4096];
	struct ut_err err;
	for (int split = 0; split < 2; split++) {
		for (long i = 0; i < counts[split]; i++) {
			struct tr_gen_sample s;
			must(tr_gen_sample(opts->seed, (enum tr_gen_split)split, i, opts->size,
					   opts->classes, &s, &err),
			     &err);
			snprintf(path, sizeof(path), "%s/images/%s/%06ld.png", root, splits[split],
				 i);
			struct tr_image im;
			must(tr_gen_read_png(path, &im, &err), &err);
			assert_int_equal(im.width, opts->size);
			assert_int_equal(im.height, opts->size);
			assert_memory_equal(im.data, s.image.data,
					    (size_t)opts->size * opts->size * 3);
			tr_aug_image_free(&im);
			snprintf(path, sizeof(path), "%s/labels/%s/%06ld.txt", root, splits[split],
				 i);
			check_labels(path, &s, opts->classes);
			tr_gen_sample_free(&s);
		}
		/* nothing else in the folders */
		snprintf(path, sizeof(path), "%s/images/%s", root, splits[split]);
		DIR *dir = opendir(path);
		assert_non_null(dir);
		int files = 0;
		for (struct dirent *e = readdir(dir); e != NULL; e = readdir(dir))
			files += e->d_name[0] != '.';
		closedir(dir);
		assert_int_equal(files, counts[split]);
	}
	snprintf(path, sizeof(path), "%s/data.yaml", root);
	size_t len;
	char *yaml = NULL;
	must(ut_read_file(path, &yaml, &len, &err), &err);
	assert_non_null(yaml);
	char expect[256];
	snprintf(expect, sizeof(expect), "nc: %d\n", opts->classes);
	assert_non_null(strstr(yaml, expect));
	assert_non_null(strstr(yaml, "train: images/train\n"));
	assert_non_null(strstr(yaml, "val: images/val\n"));
	assert_non_null(strstr(yaml, "  0: rectangle\n"));
	free(yaml);
}

/* Byte comparison of one file in two trees. */
static bool same_file(const char *a_root, const char *b_root, const char *rel)
{
	char a[4096], b[4096];
	snprintf(a, sizeof(a), "%s/%s", a_root, rel);
	snprintf(b, sizeof(b), "%s/%s", b_root, rel);
	size_t la, lb;
	char *ta = read_all(a, &la), *tb = read_all(b, &lb);
	bool same = la == lb && memcmp(ta, tb, la) == 0;
	free(ta);
	free(tb);
	return same;
}

static void test_files_and_reproducibility(void **state)
{
	(void)state;
	char tmp[] = "/tmp/test_gen_dataset.XXXXXX";
	assert_non_null(mkdtemp(tmp));
	char one[256], two[256], three[256];
	snprintf(one, sizeof(one), "%s/one", tmp);
	snprintf(two, sizeof(two), "%s/two", tmp);
	snprintf(three, sizeof(three), "%s/three", tmp);
	struct tr_gen_opts opts = tr_gen_defaults();
	opts.train = 6;
	opts.val = 3;
	opts.size = 128;
	opts.classes = 4;
	opts.seed = 21;
	struct ut_err err;
	must(tr_gen_dataset(one, &opts, &err), &err);
	must(tr_gen_dataset(two, &opts, &err), &err);
	check_dataset(one, &opts);
	const char *files[] = {"images/train/000000.png", "images/train/000005.png",
			       "images/val/000002.png", "labels/train/000003.txt",
			       "labels/val/000000.txt"};
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
		if (!same_file(one, two, files[i]))
			fail_msg("%s differs between two runs with the same seed", files[i]);
	opts.seed = 22;
	must(tr_gen_dataset(three, &opts, &err), &err);
	assert_false(same_file(one, three, "images/train/000000.png"));
	/* bad options are refused with a message */
	opts.train = opts.val = 0;
	assert_int_equal(tr_gen_dataset(three, &opts, &err), -1);
	assert_non_null(strstr(err.msg, "--train"));
	must(ut_remove_tree(tmp, &err), &err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_boxes_tight_and_sizes),
	    cmocka_unit_test(test_contrast),
	    cmocka_unit_test(test_same_seed_same_sample),
	    cmocka_unit_test(test_files_and_reproducibility),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
