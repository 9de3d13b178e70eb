/*
 * test_autoanchor.c - trainer/nn/autoanchor against YOLOv5 v7.0's
 * check_anchors, and the k-means + evolution on synthetic labels.
 *
 * Golden: $YE_SOURCE_ROOT/tests/golden/yolov5/autoanchor.{yaml,safetensors}
 * (check_anchors run for real on the thermal train split). The images'
 * label counts come from $YE_SOURCE_ROOT/tests/data/thermal-dogs-people/labels/
 * train, in the yaml's image order. YE_SOURCE_ROOT unset is a failure, not a skip.
 *
 * YOLOv5 never ran k-means for the golden (BPR was 1.0), and its random
 * draws cannot be reproduced, so the evolution is checked by behaviour:
 * it lifts a poor BPR above 0.98, its fitness never falls, and one seed
 * always gives the same anchors.
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

#include "autoanchor.h"
#include "pcg.h"
#include "safetensors.h"

/* YOLOv5's default anchors (models/yolov5*.yaml), pixels, P3 to P5. */
static const float default_anchors[18] = {10, 13, 16,  30,  33, 23,  30,  61,  62,
					  45, 59, 119, 116, 90, 156, 198, 373, 326};
static const double default_strides[3] = {8, 16, 32};

/* --- golden helpers --- */

static const char *root_dir(void)
{
	const char *root = getenv("YE_SOURCE_ROOT");
	if (root == NULL || root[0] == '\0')
		fail_msg("YE_SOURCE_ROOT is not set (it must name the repository root)");
	return root;
}

static const void *tensor(const struct tr_st_file *file, const char *name, enum tr_st_dtype dtype,
			  size_t numel)
{
	const struct tr_st_tensor *t = tr_st_find(file, name);
	if (t == NULL)
		fail_msg("golden tensor %s is missing", name);
	if (t->dtype != dtype || t->numel != numel)
		fail_msg("golden tensor %s: dtype %s, %zu values; expected %s, %zu", name,
			 tr_st_dtype_name(t->dtype), t->numel, tr_st_dtype_name(dtype), numel);
	return t->data;
}

static yaml_node_t *yaml_key(yaml_document_t *doc, const char *key)
{
	yaml_node_t *root = yaml_document_get_root_node(doc);
	if (root == NULL || root->type != YAML_MAPPING_NODE)
		fail_msg("autoanchor.yaml: the root is not a mapping");
	for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top;
	     p++) {
		yaml_node_t *k = yaml_document_get_node(doc, p->key);
		if (k->type == YAML_SCALAR_NODE && strcmp((char *)k->data.scalar.value, key) == 0)
			return yaml_document_get_node(doc, p->value);
	}
	fail_msg("autoanchor.yaml: key %s is missing", key);
	return NULL;
}

static const char *yaml_text(yaml_document_t *doc, const char *key)
{
	yaml_node_t *node = yaml_key(doc, key);
	if (node->type != YAML_SCALAR_NODE)
		fail_msg("autoanchor.yaml: %s is not a scalar", key);
	return (const char *)node->data.scalar.value;
}

static double yaml_double(yaml_document_t *doc, const char *key)
{
	const char *text = yaml_text(doc, key);
	char *end;
	double value = strtod(text, &end);
	if (end == text || *end != '\0')
		fail_msg("autoanchor.yaml: %s = '%s' is not a number", key, text);
	return value;
}

/* Number of non-blank lines of a label file (the last may lack '\n'). */
static size_t count_labels(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		fail_msg("%s: cannot open", path);
	size_t lines = 0;
	int blank = 1, c;
	while ((c = fgetc(f)) != EOF) {
		if (c == '\n' || c == '\r') {
			lines += !blank;
			blank = 1;
		} else if (c != ' ' && c != '\t') {
			blank = 0;
		}
	}
	lines += !blank;
	fclose(f);
	return lines;
}

struct golden {
	struct tr_st_file *file;
	yaml_document_t doc;
	size_t n_images, n_labels;
	double *shapes;	      /* [n_images][2] */
	size_t *counts;	      /* [n_images] */
	float *labels_wh;     /* [n_labels][2] */
	const double *scale;  /* [n_images] */
	const float *anchors; /* [9][2] */
	struct tr_anchor_dataset dataset;
	int imgsz;
	double thr;
};

static void golden_load(struct golden *g)
{
	const char *root = root_dir();
	char path[2048];
	snprintf(path, sizeof(path), "%s/tests/golden/yolov5/autoanchor.safetensors", root);
	struct ut_err err;
	if (tr_st_open(path, &g->file, &err) != 0)
		fail_msg("%s", err.msg);
	snprintf(path, sizeof(path), "%s/tests/golden/yolov5/autoanchor.yaml", root);
	test_yaml_load(path, &g->doc);

	g->n_images = (size_t)yaml_double(&g->doc, "n_images");
	g->n_labels = (size_t)yaml_double(&g->doc, "n_labels");
	g->imgsz = (int)yaml_double(&g->doc, "imgsz");
	g->thr = yaml_double(&g->doc, "thr");
	const int64_t *shapes = tensor(g->file, "dataset_shapes_wh", TR_ST_I64, 2 * g->n_images);
	g->scale = tensor(g->file, "scale", TR_ST_F64, g->n_images);
	const float *labels = tensor(g->file, "labels_concat", TR_ST_F32, 5 * g->n_labels);
	g->anchors = tensor(g->file, "anchors_px", TR_ST_F32, 18);

	g->shapes = malloc(2 * g->n_images * sizeof(*g->shapes));
	g->counts = malloc(g->n_images * sizeof(*g->counts));
	g->labels_wh = malloc(2 * g->n_labels * sizeof(*g->labels_wh));
	assert_non_null(g->shapes);
	assert_non_null(g->counts);
	assert_non_null(g->labels_wh);
	for (size_t i = 0; i < 2 * g->n_images; i++)
		g->shapes[i] = (double)shapes[i];
	for (size_t j = 0; j < g->n_labels; j++) { /* rows are cls, x, y, w, h */
		g->labels_wh[2 * j] = labels[5 * j + 3];
		g->labels_wh[2 * j + 1] = labels[5 * j + 4];
	}

	yaml_node_t *order = yaml_key(&g->doc, "image_files_order");
	if (order->type != YAML_SEQUENCE_NODE ||
	    (size_t)(order->data.sequence.items.top - order->data.sequence.items.start) !=
		g->n_images)
		fail_msg("autoanchor.yaml: image_files_order is not a list of %zu names",
			 g->n_images);
	size_t total = 0;
	for (size_t i = 0; i < g->n_images; i++) {
		yaml_node_t *name =
		    yaml_document_get_node(&g->doc, order->data.sequence.items.start[i]);
		const char *image = (const char *)name->data.scalar.value;
		const char *dot = strrchr(image, '.');
		int stem = dot ? (int)(dot - image) : (int)strlen(image);
		snprintf(path, sizeof(path),
			 "%s/tests/data/thermal-dogs-people/labels/train/%.*s.txt", root, stem,
			 image);
		g->counts[i] = count_labels(path);
		total += g->counts[i];
	}
	if (total != g->n_labels)
		fail_msg("the label files hold %zu labels, the golden %zu", total, g->n_labels);
	g->dataset = (struct tr_anchor_dataset){g->n_images, g->shapes, g->counts, g->labels_wh};
}

static void golden_free(struct golden *g)
{
	free(g->shapes);
	free(g->counts);
	free(g->labels_wh);
	yaml_document_delete(&g->doc);
	tr_st_close(g->file);
}

/* Largest |got - want| over n floats; fails above tol. */
static void check_floats(const char *what, const float *got, const float *want, size_t n,
			 double tol)
{
	double worst = 0.0;
	size_t at = 0;
	for (size_t i = 0; i < n; i++) {
		double diff = fabs((double)got[i] - (double)want[i]);
		if (!(diff <= worst)) {
			worst = diff;
			at = i;
		}
	}
	print_message("%-28s max |diff| %.3g over %zu values\n", what, worst, n);
	if (!(worst <= tol))
		fail_msg("%s[%zu]: %.9g, expected %.9g (tolerance %g)", what, at, (double)got[at],
			 (double)want[at], tol);
}

/* --- golden tests --- */

/* The label sizes rebuilt from shapes, labels and the scale draw, bit for bit. */
static void test_golden_label_wh(void **state)
{
	(void)state;
	struct golden g;
	golden_load(&g);
	float *wh = malloc(2 * g.n_labels * sizeof(*wh));
	assert_non_null(wh);
	tr_anchor_label_wh(&g.dataset, g.imgsz, g.scale, wh);
	check_floats("wh", wh, tensor(g.file, "wh", TR_ST_F32, 2 * g.n_labels), 2 * g.n_labels,
		     0.0);
	tr_anchor_label_wh(&g.dataset, g.imgsz, NULL, wh);
	check_floats("wh_noscale", wh, tensor(g.file, "wh_noscale", TR_ST_F32, 2 * g.n_labels),
		     2 * g.n_labels, 0.0);
	free(wh);
	golden_free(&g);
}

static void check_golden_fit(struct golden *g, const char *wh_name, const char *ratio_name,
			     const char *bpr_key, const char *aat_key)
{
	const float *wh = tensor(g->file, wh_name, TR_ST_F32, 2 * g->n_labels);
	float *best = malloc(g->n_labels * sizeof(*best));
	assert_non_null(best);
	struct tr_anchor_fit fit;
	tr_anchor_check(wh, g->n_labels, g->anchors, 9, g->thr, best, &fit);
	check_floats(ratio_name, best, tensor(g->file, ratio_name, TR_ST_F32, g->n_labels),
		     g->n_labels, 1e-6);
	double want_bpr = yaml_double(&g->doc, bpr_key), want_aat = yaml_double(&g->doc, aat_key);
	print_message("%-28s bpr %.9g (want %.9g), aat %.9g (want %.9g)\n", wh_name, fit.bpr,
		      want_bpr, fit.aat, want_aat);
	if (fit.bpr != want_bpr || fit.aat != want_aat)
		fail_msg("%s: bpr %.17g aat %.17g, expected %.17g %.17g", wh_name, fit.bpr, fit.aat,
			 want_bpr, want_aat);
	free(best);
}

/* check_anchors' metric: bpr and aat exactly, best ratios within 1e-6. */
static void test_golden_check(void **state)
{
	(void)state;
	struct golden g;
	golden_load(&g);
	yaml_node_t *listed = yaml_key(&g.doc, "anchors_px");
	assert_int_equal(listed->type, YAML_SEQUENCE_NODE);
	for (size_t i = 0; i < 18; i++)
		assert_true(g.anchors[i] == default_anchors[i]);
	check_golden_fit(&g, "wh", "best_ratio", "bpr", "aat_anchors_per_target");
	check_golden_fit(&g, "wh_noscale", "best_ratio_noscale", "bpr_noscale", "aat_noscale");
	golden_free(&g);
}

/* The whole check_anchors with the golden draw: no k-means, anchors kept. */
static void test_golden_autoanchor(void **state)
{
	(void)state;
	struct golden g;
	golden_load(&g);
	struct ut_pcg rng;
	ut_pcg_seed(&rng, 0, 0);
	float anchors[18];
	memcpy(anchors, g.anchors, sizeof(anchors));
	struct tr_anchor_auto_params params = {&g.dataset, g.imgsz,	    g.thr, g.scale, 3,
					       3,	   default_strides, 1000,  &rng};
	struct tr_anchor_auto_result result;
	struct ut_err err;
	assert_int_equal(tr_anchor_autoanchor(&params, anchors, &result, &err), 0);
	int would_run = strcmp(yaml_text(&g.doc, "kmeans_would_run"), "true") == 0;
	assert_int_equal(result.kmeans_ran, would_run);
	assert_true(result.before.aat == yaml_double(&g.doc, "aat_anchors_per_target"));
	assert_memory_equal(anchors, g.anchors, sizeof(anchors));
	golden_free(&g);
}

/* --- synthetic labels the default anchors fit badly --- */

#define SYN_IMAGES 60
#define SYN_PER_IMAGE 5
#define SYN_LABELS (SYN_IMAGES * SYN_PER_IMAGE)

struct synthetic {
	double shapes[2 * SYN_IMAGES];
	size_t counts[SYN_IMAGES];
	float labels_wh[2 * SYN_LABELS];
	struct tr_anchor_dataset dataset;
};

/*
 * 640x480 images (scaled to 320x240 at imgsz 320) with three kinds of
 * label: wide strips (~200x11 px), tall strips (~11x150 px) and squares
 * (~40 px). No default anchor is within a ratio of 4 of a strip.
 */
static void synthetic_make(struct synthetic *s)
{
	struct ut_pcg rng;
	ut_pcg_seed(&rng, 42, 7);
	for (size_t i = 0; i < SYN_IMAGES; i++) {
		s->shapes[2 * i] = 640;
		s->shapes[2 * i + 1] = 480;
		s->counts[i] = SYN_PER_IMAGE;
	}
	for (size_t j = 0; j < SYN_LABELS; j++) {
		double u = ut_pcg_uniform(&rng), v = ut_pcg_uniform(&rng);
		double w_px, h_px;
		switch (j % 3) {
		case 0:
			w_px = 160 + 80 * u, h_px = 8 + 6 * v;
			break;
		case 1:
			w_px = 8 + 6 * u, h_px = 120 + 60 * v;
			break;
		default:
			w_px = 30 + 20 * u, h_px = 30 + 20 * v;
			break;
		}
		s->labels_wh[2 * j] = (float)(w_px / 320.0);
		s->labels_wh[2 * j + 1] = (float)(h_px / 240.0);
	}
	s->dataset = (struct tr_anchor_dataset){SYN_IMAGES, s->shapes, s->counts, s->labels_wh};
}

static void assert_sorted_by_area(const float *anchors, size_t k)
{
	for (size_t i = 1; i < k; i++)
		assert_true(anchors[2 * (i - 1)] * anchors[2 * (i - 1) + 1] <=
			    anchors[2 * i] * anchors[2 * i + 1]);
}

static void run_kmeans(const float *wh0, uint64_t seed, float *anchors, double *history,
		       struct tr_anchor_kmeans_result *result)
{
	struct ut_pcg rng;
	ut_pcg_seed(&rng, seed, 1);
	struct tr_anchor_kmeans_params params = {wh0, SYN_LABELS, 9, 320, 4.0, 1000, &rng, history};
	struct ut_err err;
	if (tr_anchor_kmeans(&params, anchors, result, &err) != 0)
		fail_msg("%s", err.msg);
}

/* k-means + evolution lift the BPR above 0.98; fitness never falls. */
static void test_kmeans_evolution(void **state)
{
	(void)state;
	static struct synthetic s;
	synthetic_make(&s);
	float wh0[2 * SYN_LABELS];
	tr_anchor_label_wh(&s.dataset, 320, NULL, wh0);
	struct tr_anchor_fit before, after;
	tr_anchor_check(wh0, SYN_LABELS, default_anchors, 9, 4.0, NULL, &before);
	print_message("default anchors: bpr %.4f aat %.3f\n", before.bpr, before.aat);
	assert_true(before.bpr < 0.98);

	static double history[1001];
	float anchors[18];
	struct tr_anchor_kmeans_result result;
	run_kmeans(wh0, 1, anchors, history, &result);
	assert_int_equal(result.n_small, 0);
	assert_int_equal(result.n_kept, SYN_LABELS);
	assert_int_equal(result.random_start, 0);
	for (int g = 1; g <= 1000; g++)
		if (history[g] < history[g - 1])
			fail_msg("fitness fell at generation %d: %.9g -> %.9g", g, history[g - 1],
				 history[g]);
	assert_true(result.fitness == history[1000]);
	assert_true(fabs(result.fitness - tr_anchor_fitness(wh0, SYN_LABELS, anchors, 9, 4.0)) <
		    1e-6);
	tr_anchor_check(wh0, SYN_LABELS, anchors, 9, 4.0, NULL, &after);
	print_message("evolved anchors: bpr %.4f aat %.3f, fitness %.4f -> %.4f\n", after.bpr,
		      after.aat, history[0], history[1000]);
	assert_true(after.bpr > 0.98);
	assert_true(history[1000] > history[0]);
	assert_sorted_by_area(anchors, 9);
	for (size_t i = 0; i < 18; i++)
		assert_true(anchors[i] >= 2.0f);
}

/* The same seed gives the same anchors; another seed other anchors. */
static void test_kmeans_determinism(void **state)
{
	(void)state;
	static struct synthetic s;
	synthetic_make(&s);
	float wh0[2 * SYN_LABELS];
	tr_anchor_label_wh(&s.dataset, 320, NULL, wh0);
	float first[18], second[18], other[18];
	struct tr_anchor_kmeans_result result;
	run_kmeans(wh0, 5, first, NULL, &result);
	run_kmeans(wh0, 5, second, NULL, &result);
	run_kmeans(wh0, 6, other, NULL, &result);
	assert_memory_equal(first, second, sizeof(first));
	assert_memory_not_equal(first, other, sizeof(first));
}

/* The whole check_anchors on poor anchors: replaced, in stride order. */
static void test_autoanchor_replaces(void **state)
{
	(void)state;
	static struct synthetic s;
	synthetic_make(&s);
	struct ut_pcg rng;
	ut_pcg_seed(&rng, 3, 2);
	float anchors[18];
	memcpy(anchors, default_anchors, sizeof(anchors));
	struct tr_anchor_auto_params params = {&s.dataset,	320,  4.0, NULL, 3, 3,
					       default_strides, 1000, &rng};
	struct tr_anchor_auto_result result;
	struct ut_err err;
	if (tr_anchor_autoanchor(&params, anchors, &result, &err) != 0)
		fail_msg("%s", err.msg);
	assert_true(result.before.bpr < 0.98);
	assert_int_equal(result.kmeans_ran, 1);
	assert_int_equal(result.replaced, 1);
	assert_int_equal(result.reversed, 0);
	assert_true(result.new_bpr > 0.98);
	assert_sorted_by_area(anchors, 9);
}

/* Labels under 2 px on both sides are dropped, under 3 px on one side counted. */
static void test_small_labels(void **state)
{
	(void)state;
	const float wh0[] = {1, 1, 1, 2.5f, 2.5f, 2.5f, 10, 10, 1.5f, 1.9f, 20, 30};
	struct ut_pcg rng;
	ut_pcg_seed(&rng, 9, 9);
	struct tr_anchor_kmeans_params params = {wh0, 6, 2, 320, 4.0, 50, &rng, NULL};
	struct tr_anchor_kmeans_result result;
	float anchors[4];
	struct ut_err err;
	assert_int_equal(tr_anchor_kmeans(&params, anchors, &result, &err), 0);
	assert_int_equal(result.n_small, 4);
	assert_int_equal(result.n_kept, 4);
	assert_int_equal(result.random_start, 0);

	/* more anchors than labels: YOLOv5's random start */
	params.n_anchors = 5;
	float more[10];
	assert_int_equal(tr_anchor_kmeans(&params, more, &result, &err), 0);
	assert_int_equal(result.random_start, 1);
	assert_sorted_by_area(more, 5);

	/* nothing left after the filter */
	params.n_labels = 1;
	params.n_anchors = 1;
	assert_int_equal(tr_anchor_kmeans(&params, anchors, &result, &err), -1);
}

/* The `anchors` hyp: Python's round, 0 or absent means the yaml's. */
static void test_anchor_count(void **state)
{
	(void)state;
	assert_int_equal(tr_anchor_count(3.0, 3), 3);
	assert_int_equal(tr_anchor_count(2.5, 3), 2);
	assert_int_equal(tr_anchor_count(3.5, 3), 4);
	assert_int_equal(tr_anchor_count(4.4, 3), 4);
	assert_int_equal(tr_anchor_count(5.6, 3), 6);
	assert_int_equal(tr_anchor_count(0.0, 3), 3);
	assert_int_equal(tr_anchor_count(NAN, 3), 3);
	assert_int_equal(tr_anchor_count(0.3, 3), 1);

	float anchors[3 * 4 * 2];
	tr_anchor_placeholder(3, 4, anchors);
	for (int level = 0; level < 3; level++)
		for (int i = 0; i < 8; i++)
			assert_true(anchors[level * 8 + i] == (float)i);
	/* placeholders fit no real label, so AutoAnchor replaces them */
	const float wh[] = {30, 40, 100, 80};
	struct tr_anchor_fit fit;
	tr_anchor_check(wh, 2, anchors, 12, 4.0, NULL, &fit);
	assert_true(fit.bpr == 0.0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_golden_label_wh),    cmocka_unit_test(test_golden_check),
	    cmocka_unit_test(test_golden_autoanchor),  cmocka_unit_test(test_kmeans_evolution),
	    cmocka_unit_test(test_kmeans_determinism), cmocka_unit_test(test_autoanchor_replaces),
	    cmocka_unit_test(test_small_labels),       cmocka_unit_test(test_anchor_count),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
