/*
 * test_val.c - trainer/val against YOLOv5 v7.0's val.py.
 *
 * tests/data/val_golden.safetensors (made by scripts/make_val_golden.py
 * with YOLOv5's own scale_boxes, xywh2xyxy, process_batch and
 * ap_per_class) holds one hand-built batch of seven images with random
 * targets and post-NMS detections, the edge cases among them (no
 * detections, no labels, neither). The mapping must match it bit for bit,
 * the metrics and the printed table exactly. Then the cases val.py treats
 * specially, bad classes, and tr_val_batch on a small randomly initialised
 * yolov5n: its losses are the batch mean of tr_loss_compute's items and
 * its statistics those of the same pipeline done by hand.
 * YE_SOURCE_ROOT unset is a failure, not a skip.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pcg.h"
#include "safetensors.h"
#include "val.h"

#define N_MAX 16 /* images of a test batch, at most */

static const char *source_root(void)
{
	const char *root = getenv("YE_SOURCE_ROOT");
	if (root == NULL || root[0] == '\0')
		fail_msg("YE_SOURCE_ROOT is not set (the repository root)");
	return root;
}

static struct tr_st_file *open_golden(void)
{
	char path[1024];
	snprintf(path, sizeof(path), "%s/tests/data/val_golden.safetensors", source_root());
	struct tr_st_file *file = NULL;
	struct ut_err err;
	if (tr_st_open(path, &file, &err) != 0)
		fail_msg("%s", err.msg);
	return file;
}

/* A tensor that must exist with this dtype; *rows gets shape[0] (1 for a scalar). */
static const void *tensor(const struct tr_st_file *file, const char *name, enum tr_st_dtype dtype,
			  size_t *rows)
{
	const struct tr_st_tensor *t = tr_st_find(file, name);
	if (t == NULL)
		fail_msg("golden tensor %s is missing", name);
	if (t->dtype != dtype)
		fail_msg("golden tensor %s: dtype %s, expected %s", name,
			 tr_st_dtype_name(t->dtype), tr_st_dtype_name(dtype));
	if (rows != NULL)
		*rows = t->ndim > 0 ? (size_t)t->shape[0] : 1;
	return t->data;
}

static int meta_int(const struct tr_st_file *file, const char *key)
{
	const char *value = tr_st_metadata(file, key);
	if (value == NULL)
		fail_msg("golden metadata %s is missing", key);
	return atoi(value);
}

/* The golden batch as the loader would give it (no pixels: the mapping needs none). */
struct golden_batch {
	struct tr_batch batch;
	struct tr_batch_image info[N_MAX];
	float *targets;
};

static void golden_batch(const struct tr_st_file *file, struct golden_batch *gb)
{
	memset(gb, 0, sizeof(*gb));
	int n = meta_int(file, "n_images");
	assert_true(n >= 1 && n <= N_MAX);
	size_t rows;
	const double *info = tensor(file, "info", TR_ST_F64, &rows);
	assert_int_equal(rows, (size_t)n);
	for (int i = 0; i < n; i++) {
		const double *row = info + 6 * i;
		gb->info[i] = (struct tr_batch_image){.item = i,
						      .h0 = (int)row[0],
						      .w0 = (int)row[1],
						      .ratio_h = row[2],
						      .ratio_w = row[3],
						      .pad_w = row[4],
						      .pad_h = row[5]};
	}
	const float *targets = tensor(file, "targets", TR_ST_F32, &rows);
	gb->targets = malloc((rows + 1) * 6 * sizeof(float));
	assert_non_null(gb->targets);
	memcpy(gb->targets, targets, rows * 6 * sizeof(float));
	gb->batch = (struct tr_batch){.n = n,
				      .height = meta_int(file, "height"),
				      .width = meta_int(file, "width"),
				      .targets = gb->targets,
				      .nt = rows,
				      .info = gb->info};
}

/* Bitwise equality of float arrays, reporting the first difference. */
static void check_floats(const char *what, int image, const float *got, const float *want, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (memcmp(&got[i], &want[i], sizeof(float)) != 0)
			fail_msg("%s of image %d, value %zu: %.9g, YOLOv5 %.9g", what, image, i,
				 (double)got[i], (double)want[i]);
}

/* scale_boxes / clip_boxes / xywh2xyxy of labels and detections, bit for bit. */
static void test_golden_mapping(void **state)
{
	(void)state;
	struct tr_st_file *file = open_golden();
	struct golden_batch gb;
	golden_batch(file, &gb);
	float *labels = malloc((gb.batch.nt + 1) * 5 * sizeof(float));
	assert_non_null(labels);
	for (int si = 0; si < gb.batch.n; si++) {
		char name[64];
		size_t rows;
		snprintf(name, sizeof(name), "labelsn.%d", si);
		const float *want_labels = tensor(file, name, TR_ST_F32, &rows);
		size_t n_labels = tr_val_image_labels(&gb.batch, si, false, labels);
		assert_int_equal(n_labels, rows);
		check_floats("labels", si, labels, want_labels, rows * 5);

		snprintf(name, sizeof(name), "dets.%d", si);
		const float *dets = tensor(file, name, TR_ST_F32, &rows);
		snprintf(name, sizeof(name), "predn.%d", si);
		const float *want_predn = tensor(file, name, TR_ST_F32, NULL);
		float predn[300 * 6];
		assert_true(rows <= 300);
		memcpy(predn, dets, rows * 6 * sizeof(float));
		tr_val_scale_boxes(predn, rows, 6, &gb.info[si]);
		check_floats("detections", si, predn, want_predn, rows * 6);
	}
	free(labels);
	free(gb.targets);
	tr_st_close(file);
}

/* The results after every golden image went through tr_val_add_image. */
static void run_golden(const struct tr_st_file *file, bool single_cls, struct tr_val_results *res)
{
	struct golden_batch gb;
	golden_batch(file, &gb);
	struct tr_val_opts opts = tr_val_defaults(meta_int(file, "nc"));
	opts.single_cls = single_cls;
	struct tr_val *val;
	struct ut_err err;
	if (tr_val_create(&opts, &val, &err) != 0)
		fail_msg("%s", err.msg);
	tr_val_reset(val);
	float *labels = malloc((gb.batch.nt + 1) * 5 * sizeof(float));
	assert_non_null(labels);
	for (int si = 0; si < gb.batch.n; si++) {
		char name[64];
		size_t rows;
		snprintf(name, sizeof(name), "dets.%d", si);
		const float *dets = tensor(file, name, TR_ST_F32, &rows);
		float copy[300 * 6];
		memcpy(copy, dets, rows * 6 * sizeof(float));
		size_t n_labels = tr_val_image_labels(&gb.batch, si, single_cls, labels);
		if (tr_val_add_image(val, copy, rows, labels, n_labels, &gb.info[si], &err) != 0)
			fail_msg("image %d: %s", si, err.msg);
	}
	if (tr_val_finish(val, res, &err) != 0)
		fail_msg("%s", err.msg);
	free(labels);
	free(gb.targets);
	tr_val_free(val);
}

static void check_doubles(const char *what, const double *got, const double *want, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (got[i] != want[i])
			fail_msg("%s[%zu]: %.17g, YOLOv5 %.17g", what, i, got[i], want[i]);
}

/* The printed table, class names "class<c>" as the golden script names them. */
static char *print_table(const struct tr_val_results *res)
{
	char *text = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);
	assert_non_null(out);
	const char *names[] = {"class0", "class1", "class2"};
	tr_val_print(res, names, true, out);
	fclose(out);
	return text;
}

static void check_golden_variant(const char *variant, bool single_cls)
{
	struct tr_st_file *file = open_golden();
	struct tr_val_results res;
	run_golden(file, single_cls, &res);
	char name[64];
	size_t k, nc;
	snprintf(name, sizeof(name), "%s.summary", variant);
	const double *summary = tensor(file, name, TR_ST_F64, NULL);
	const double got[4] = {res.summary.mp, res.summary.mr, res.summary.map50, res.summary.map};
	check_doubles("mp, mr, map50, map", got, summary, 4);
	snprintf(name, sizeof(name), "%s.ap_class", variant);
	const int64_t *ap_class = tensor(file, name, TR_ST_I64, &k);
	assert_int_equal(res.ap.nc, k);
	for (size_t i = 0; i < k; i++)
		assert_int_equal(res.ap.classes[i], ap_class[i]);
	const char *fields[] = {"p", "r", "ap50", "ap"};
	const double *mine[] = {res.ap.p, res.ap.r, res.ap.ap50, res.ap.ap_mean};
	for (int f = 0; f < 4; f++) {
		snprintf(name, sizeof(name), "%s.%s", variant, fields[f]);
		check_doubles(name, mine[f], tensor(file, name, TR_ST_F64, NULL), k);
	}
	snprintf(name, sizeof(name), "%s.maps", variant);
	const double *maps = tensor(file, name, TR_ST_F64, &nc);
	assert_int_equal(res.nc, nc);
	check_doubles(name, res.maps, maps, nc);
	snprintf(name, sizeof(name), "%s.nt", variant);
	const int64_t *nt = tensor(file, name, TR_ST_I64, NULL);
	long total = 0;
	for (size_t c = 0; c < nc; c++) {
		assert_int_equal(res.labels_per_class[c], nt[c]);
		total += (long)nt[c];
	}
	assert_int_equal(res.n_labels, total);
	assert_int_equal(res.seen, meta_int(file, "n_images"));
	char *table = print_table(&res);
	snprintf(name, sizeof(name), "%s.table", variant);
	const char *want = tr_st_metadata(file, name);
	assert_non_null(want);
	if (strcmp(table, want) != 0)
		fail_msg("table:\n%sYOLOv5:\n%s", table, want);
	free(table);
	tr_val_results_free(&res);
	tr_st_close(file);
}

static void test_golden_metrics(void **state)
{
	(void)state;
	check_golden_variant("multi", false);
}

static void test_golden_single_cls(void **state)
{
	(void)state;
	check_golden_variant("single", true);
}

/* A one-image batch geometry: 100 x 200 original, letterboxed by 0.5 into 64 x 128 + padding. */
static const struct tr_batch_image simple_info = {
    .item = 0, .h0 = 100, .w0 = 200, .ratio_h = 0.5, .ratio_w = 0.5, .pad_w = 0, .pad_h = 7};

static void test_scale_by_hand(void **state)
{
	(void)state;
	/* xywh (20, 30, 10, 8) -> xyxy (15, 26, 25, 34) */
	float box[4] = {20, 30, 10, 8};
	tr_val_xywh2xyxy(box, 1, box);
	assert_true(box[0] == 15 && box[1] == 26 && box[2] == 25 && box[3] == 34);
	/* minus pad (0, 7), / 0.5: (30, 38, 50, 54); then clipping to 200 x 100 */
	float boxes[2][6] = {{15, 26, 25, 34, 0.9f, 1}, {-4, 2, 120, 70, 0.5f, 0}};
	tr_val_scale_boxes(&boxes[0][0], 2, 6, &simple_info);
	const float want[2][6] = {{30, 38, 50, 54, 0.9f, 1}, {0, 0, 200, 100, 0.5f, 0}};
	assert_memory_equal(boxes, want, sizeof(want));
	float clip[4] = {-1, 101, 201, 50};
	tr_val_clip_boxes(clip, 1, 4, 100, 200);
	assert_true(clip[0] == 0 && clip[1] == 100 && clip[2] == 200 && clip[3] == 50);
}

static struct tr_val *make_val(int nc, bool single_cls)
{
	struct tr_val_opts opts = tr_val_defaults(nc);
	opts.single_cls = single_cls;
	struct tr_val *val;
	struct ut_err err;
	if (tr_val_create(&opts, &val, &err) != 0)
		fail_msg("%s", err.msg);
	tr_val_reset(val);
	return val;
}

static void finish(struct tr_val *val, struct tr_val_results *res)
{
	struct ut_err err;
	if (tr_val_finish(val, res, &err) != 0)
		fail_msg("%s", err.msg);
}

static void assert_zero_summary(const struct tr_val_results *res)
{
	assert_true(res->summary.mp == 0 && res->summary.mr == 0 && res->summary.map50 == 0 &&
		    res->summary.map == 0);
	assert_int_equal(res->ap.nc, 0);
	for (int c = 0; c < res->nc; c++)
		assert_true(res->maps[c] == 0);
}

/* val.py: no detections keeps the labels; no labels keeps detections as false; neither: nothing. */
static void test_edge_images(void **state)
{
	(void)state;
	struct ut_err err;
	struct tr_val *val = make_val(2, false);
	const float labels[2][5] = {{1, 10, 10, 50, 50}, {1, 60, 60, 90, 90}};
	float dets[1][6] = {{100, 10, 150, 60, 0.8f, 0}};
	/* labels only; detections only (class 0, no class-0 label); an empty image */
	assert_int_equal(tr_val_add_image(val, NULL, 0, &labels[0][0], 2, &simple_info, &err), 0);
	assert_int_equal(tr_val_add_image(val, &dets[0][0], 1, NULL, 0, &simple_info, &err), 0);
	assert_int_equal(tr_val_add_image(val, NULL, 0, NULL, 0, &simple_info, &err), 0);
	struct tr_val_results res;
	finish(val, &res);
	assert_int_equal(res.seen, 3);
	assert_int_equal(res.n_labels, 2);
	assert_int_equal(res.labels_per_class[0], 0);
	assert_int_equal(res.labels_per_class[1], 2);
	assert_int_equal(res.images_per_class[1], 1);
	/* nothing is correct anywhere: val.py skips ap_per_class, every metric is 0 */
	assert_zero_summary(&res);
	char *table = print_table(&res);
	const char *want =
	    "                 Class     Images  Instances          P          R      "
	    "mAP50   mAP50-95\n"
	    "                   all          3          2          0          0      "
	    "    0          0\n";
	assert_string_equal(table, want);
	free(table);
	tr_val_results_free(&res);

	/* a reset forgets it all; a run without any image still finishes */
	tr_val_reset(val);
	finish(val, &res);
	assert_int_equal(res.seen, 0);
	assert_int_equal(res.n_labels, 0);
	assert_zero_summary(&res);
	assert_true(res.loss[0] == 0 && res.loss[1] == 0 && res.loss[2] == 0);
	tr_val_results_free(&res);
	tr_val_free(val);
}

/* One perfect detection: P = R = 1, AP@.5 = 0.995 (101-point interpolation), maps default. */
static void test_one_match(void **state)
{
	(void)state;
	struct ut_err err;
	struct tr_val *val = make_val(3, false);
	/* label (1, 30, 38, 50, 54) in the original image is (15, 26, 25, 34) letterboxed */
	const float labels[1][5] = {{1, 30, 38, 50, 54}};
	float dets[1][6] = {{15, 26, 25, 34, 0.9f, 1}};
	assert_int_equal(
	    tr_val_add_image(val, &dets[0][0], 1, &labels[0][0], 1, &simple_info, &err), 0);
	struct tr_val_results res;
	finish(val, &res);
	assert_int_equal(res.ap.nc, 1);
	assert_int_equal(res.ap.classes[0], 1);
	assert_true(res.summary.mp == 1.0 && res.summary.mr == 1.0);
	assert_true(fabs(res.summary.map50 - 0.995) < 1e-12);
	assert_true(fabs(res.summary.map - 0.995) < 1e-12);
	/* classes without labels get the mean mAP, as train.py's maps */
	for (int c = 0; c < 3; c++)
		assert_true(res.maps[c] == res.summary.map);
	tr_val_results_free(&res);
	tr_val_free(val);
}

static void test_bad_classes(void **state)
{
	(void)state;
	struct ut_err err;
	struct tr_val *val = make_val(2, false);
	const float labels[1][5] = {{2, 10, 10, 50, 50}};
	assert_int_equal(tr_val_add_image(val, NULL, 0, &labels[0][0], 1, &simple_info, &err), -1);
	assert_non_null(strstr(err.msg, "label class 2"));
	float dets[1][6] = {{10, 10, 50, 50, 0.5f, 5}};
	assert_int_equal(tr_val_add_image(val, &dets[0][0], 1, NULL, 0, &simple_info, &err), -1);
	assert_non_null(strstr(err.msg, "detection class 5"));
	tr_val_free(val);
	/* with single_cls every class becomes 0 */
	val = make_val(2, true);
	float dets2[1][6] = {{10, 10, 50, 50, 0.5f, 1}};
	const float labels0[1][5] = {{0, 10, 10, 50, 50}};
	assert_int_equal(
	    tr_val_add_image(val, &dets2[0][0], 1, &labels0[0][0], 1, &simple_info, &err), 0);
	assert_true(dets2[0][5] == 0.0f);
	tr_val_free(val);

	struct tr_val_opts bad = tr_val_defaults(0);
	assert_int_equal(tr_val_create(&bad, &val, &err), -1);
	assert_null(val);
	bad = tr_val_defaults(2);
	bad.iou_thres = 1.5;
	assert_int_equal(tr_val_create(&bad, &val, &err), -1);
	assert_non_null(strstr(err.msg, "iou_thres"));
}

/* --- tr_val_batch on a real (small, random) network --- */

struct net {
	struct tr_model *model;
	struct tr_backend *cpu;
	struct tr_loss *loss;
};

static void net_open(struct net *net)
{
	char path[1024];
	struct ut_err err;
	snprintf(path, sizeof(path), "%s/models/yolov5n.yaml", source_root());
	if (tr_model_from_file(path, 2, &net->model, &err) != 0)
		fail_msg("%s", err.msg);
	struct ut_pcg rng;
	ut_pcg_seed(&rng, 7, 11);
	tr_model_init(net->model, &rng);
	if (tr_cpu_backend_create(1, &net->cpu, &err) != 0 ||
	    tr_model_plan(net->model, net->cpu, 2, 64, 96, &err) != 0)
		fail_msg("%s", err.msg);
	struct tr_loss_params params = {
	    .nl = net->model->detect.nl,
	    .na = net->model->detect.na,
	    .nc = 2,
	    .anchors = net->model->tensors[net->model->detect.anchors_tensor].data,
	    .hyp = {.box = 0.05, .obj = 1.0, .cls = 0.5, .cls_pw = 1, .obj_pw = 1, .anchor_t = 4}};
	if (tr_loss_create(&params, 16, &net->loss, &err) != 0)
		fail_msg("%s", err.msg);
}

static void net_close(struct net *net)
{
	tr_loss_free(net->loss);
	tr_model_free(net->model); /* before its backend */
	tr_backend_destroy(net->cpu);
}

/* A 2-image 64 x 96 batch of noise with three targets. */
struct small_batch {
	struct tr_batch batch;
	uint8_t images[2 * 3 * 64 * 96];
	float targets[3][6];
	struct tr_batch_image info[2];
};

static void small_batch(struct small_batch *sb, uint64_t seed)
{
	struct ut_pcg rng;
	ut_pcg_seed(&rng, seed, 1);
	for (size_t i = 0; i < sizeof(sb->images); i++)
		sb->images[i] = (uint8_t)ut_pcg_below(&rng, 256);
	const float targets[3][6] = {{0, 0, 0.5f, 0.5f, 0.3f, 0.4f},
				     {0, 1, 0.2f, 0.3f, 0.1f, 0.2f},
				     {1, 1, 0.7f, 0.6f, 0.4f, 0.3f}};
	memcpy(sb->targets, targets, sizeof(targets));
	for (int i = 0; i < 2; i++)
		sb->info[i] = (struct tr_batch_image){.item = i,
						      .h0 = 48,
						      .w0 = 96,
						      .ratio_h = 1,
						      .ratio_w = 1,
						      .pad_w = 0,
						      .pad_h = 8};
	sb->batch = (struct tr_batch){.number = (long)seed,
				      .n = 2,
				      .height = 64,
				      .width = 96,
				      .images = sb->images,
				      .targets = &sb->targets[0][0],
				      .nt = 3,
				      .info = sb->info};
}

/* The per-image outcome of by_hand: detections after NMS, the best one (xyxy, conf, cls). */
struct hand_dets {
	size_t n[2];
	float best[2][6];
};

/* The same pipeline by hand: forward, loss items, NMS and tr_val_add_image per image. */
static void by_hand(struct net *net, struct tr_val *val, const struct small_batch *sb,
		    float items[3], struct hand_dets *out)
{
	struct ut_err err;
	static float images[2 * 3 * 64 * 96];
	for (size_t i = 0; i < sizeof(sb->images); i++)
		images[i] = (float)sb->images[i] / 255.0f;
	if (tr_model_forward(net->model, net->cpu, images, 2, 64, 96, 0, &err) != 0)
		fail_msg("%s", err.msg);
	const struct tr_detect *det = &net->model->detect;
	struct tr_loss_batch lb = {.bs = 2, .targets = &sb->targets[0][0], .nt = 3};
	for (int l = 0; l < det->nl; l++) {
		lb.ny[l] = 64 / det->stride[l];
		lb.nx[l] = 96 / det->stride[l];
		lb.pred[l] = det->outputs[l];
	}
	struct tr_loss_result result;
	if (tr_loss_compute(net->loss, &lb, &result, &err) != 0)
		fail_msg("%s", err.msg);
	memcpy(items, result.items, sizeof(result.items));
	struct tr_nms_params nms = tr_nms_val_params();
	void *ws = malloc(tr_nms_workspace_size((size_t)det->cells, det->nc));
	assert_non_null(ws);
	for (int si = 0; si < 2; si++) {
		static float dets[300 * 6];
		size_t n_det;
		tr_nms(det->decoded + (size_t)si * (size_t)det->cells * (size_t)det->no,
		       (size_t)det->cells, det->nc, &nms, ws, dets, &n_det);
		out->n[si] = n_det;
		if (n_det > 0)
			memcpy(out->best[si], dets, sizeof(out->best[si])); /* NMS sorts by conf */
		float labels[3 * 5];
		size_t n_labels = tr_val_image_labels(&sb->batch, si, false, labels);
		if (tr_val_add_image(val, dets, n_det, labels, n_labels, &sb->info[si], &err) != 0)
			fail_msg("%s", err.msg);
	}
	free(ws);
}

/*
 * Labels the network really detects: the first two targets become the best
 * detection of each image (a random network's boxes are anchor-shaped, so
 * made-up labels would match nothing and the comparison below would see
 * zero true positives on both sides); the third stays as it was.
 */
static void targets_from_detections(struct net *net, struct small_batch *sb)
{
	struct tr_val *scratch = make_val(2, false);
	float items[3];
	struct hand_dets dets;
	by_hand(net, scratch, sb, items, &dets);
	tr_val_free(scratch);
	for (int si = 0; si < 2; si++) {
		assert_true(dets.n[si] > 0);
		/* xyxy in the 64 x 96 batch frame to a normalised xywh target */
		const float *d = dets.best[si];
		float x0 = fmaxf(d[0], 0), y0 = fmaxf(d[1], 0), x1 = fminf(d[2], 96),
		      y1 = fminf(d[3], 64);
		const float t[6] = {(float)si,		d[5],		(x0 + x1) / 2 / 96,
				    (y0 + y1) / 2 / 64, (x1 - x0) / 96, (y1 - y0) / 64};
		memcpy(sb->targets[si], t, sizeof(t));
	}
}

static void test_batch_with_model(void **state)
{
	(void)state;
	struct net net;
	net_open(&net);
	struct small_batch a, b;
	small_batch(&a, 1);
	small_batch(&b, 2);
	targets_from_detections(&net, &a);
	targets_from_detections(&net, &b);
	struct ut_err err;
	struct tr_val *val = make_val(2, false), *hand = make_val(2, false);
	double t0 = ut_now();
	if (tr_val_batch(val, net.model, net.cpu, &a.batch, net.loss, &err) != 0 ||
	    tr_val_batch(val, net.model, net.cpu, &b.batch, net.loss, &err) != 0)
		fail_msg("%s", err.msg);
	double elapsed_ms = (ut_now() - t0) * 1e3;
	float items_a[3], items_b[3];
	struct hand_dets dets_a, dets_b;
	by_hand(&net, hand, &a, items_a, &dets_a);
	by_hand(&net, hand, &b, items_b, &dets_b);
	print_message("detections per image: %zu %zu %zu %zu\n", dets_a.n[0], dets_a.n[1],
		      dets_b.n[0], dets_b.n[1]);
	assert_true(dets_a.n[0] > 0 && dets_a.n[1] > 0 && dets_b.n[0] > 0 && dets_b.n[1] > 0);
	struct tr_val_results res, want;
	finish(val, &res);
	finish(hand, &want);
	assert_int_equal(res.seen, 4);
	assert_int_equal(res.n_labels, 6);
	for (int k = 0; k < 3; k++) {
		const float mean = (0.0f + items_a[k] + items_b[k]) / 2.0f;
		assert_true(res.loss[k] > 0);
		if ((float)res.loss[k] != mean)
			fail_msg("loss %d: %.9g, by hand %.9g", k, res.loss[k], (double)mean);
	}
	/* the labels taken from detections are found: the summaries compare real numbers */
	print_message("P %.4f R %.4f mAP@.5 %.4f mAP@.5:.95 %.4f\n", res.summary.mp, res.summary.mr,
		      res.summary.map50, res.summary.map);
	assert_true(res.summary.map50 > 0 && res.summary.mr > 0);
	assert_memory_equal(&res.summary, &want.summary, sizeof(res.summary));
	assert_int_equal(res.ap.nc, want.ap.nc);
	/* per-image times: measured, and no more than the calls took in all */
	assert_true(res.speed_ms[1] > 0);
	for (int k = 0; k < 3; k++)
		assert_true(res.speed_ms[k] >= 0 && isfinite(res.speed_ms[k]));
	double per_image_total = res.speed_ms[0] + res.speed_ms[1] + res.speed_ms[2];
	if (per_image_total * (double)res.seen > elapsed_ms)
		fail_msg("speed: %.3f ms per image x %ld images > %.3f ms the calls took",
			 per_image_total, res.seen, elapsed_ms);
	tr_val_results_free(&res);
	tr_val_results_free(&want);

	/* without a loss the losses stay 0 */
	tr_val_reset(val);
	if (tr_val_batch(val, net.model, net.cpu, &a.batch, NULL, &err) != 0)
		fail_msg("%s", err.msg);
	finish(val, &res);
	assert_true(res.loss[0] == 0 && res.loss[1] == 0 && res.loss[2] == 0);
	assert_int_equal(res.seen, 2);
	tr_val_results_free(&res);
	tr_val_free(val);
	tr_val_free(hand);

	/* the data's nc must be the model's (val.py's assert), unless single_cls */
	val = make_val(3, false);
	assert_int_equal(tr_val_batch(val, net.model, net.cpu, &a.batch, NULL, &err), -1);
	assert_non_null(strstr(err.msg, "classes"));
	tr_val_free(val);
	val = make_val(3, true);
	if (tr_val_batch(val, net.model, net.cpu, &a.batch, NULL, &err) != 0)
		fail_msg("single_cls: %s", err.msg);
	finish(val, &res);
	assert_int_equal(res.nc, 1);
	tr_val_results_free(&res);
	tr_val_free(val);
	net_close(&net);
}

/* A batch larger than the model's plan is forwarded in chunks: the same results. */
static void test_batch_in_chunks(void **state)
{
	(void)state;
	struct net net;
	net_open(&net);
	struct small_batch a, b;
	small_batch(&a, 1);
	small_batch(&b, 2);
	struct ut_err err;
	struct tr_val *whole = make_val(2, false), *chunked = make_val(2, false);
	if (tr_val_batch(whole, net.model, net.cpu, &a.batch, net.loss, &err) != 0 ||
	    tr_val_batch(whole, net.model, net.cpu, &b.batch, net.loss, &err) != 0)
		fail_msg("%s", err.msg);
	if (tr_model_plan_inference(net.model, net.cpu, 1, 64, 96, &err) != 0)
		fail_msg("%s", err.msg);
	if (tr_val_batch(chunked, net.model, net.cpu, &a.batch, net.loss, &err) != 0 ||
	    tr_val_batch(chunked, net.model, net.cpu, &b.batch, net.loss, &err) != 0)
		fail_msg("%s", err.msg);
	struct tr_val_results res, want;
	finish(chunked, &res);
	finish(whole, &want);
	assert_int_equal(res.seen, want.seen);
	for (int k = 0; k < 3; k++)
		if (fabs(res.loss[k] - want.loss[k]) > 1e-5 * fabs(want.loss[k]))
			fail_msg("loss %d: chunked %.9g, whole %.9g", k, res.loss[k], want.loss[k]);
	assert_true(fabs(res.summary.map50 - want.summary.map50) < 1e-9);
	assert_true(fabs(res.summary.map - want.summary.map) < 1e-9);
	assert_true(fabs(res.summary.mp - want.summary.mp) < 1e-9);
	assert_true(fabs(res.summary.mr - want.summary.mr) < 1e-9);
	tr_val_results_free(&res);
	tr_val_results_free(&want);
	tr_val_free(whole);
	tr_val_free(chunked);
	net_close(&net);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_batch_in_chunks),  cmocka_unit_test(test_golden_mapping),
	    cmocka_unit_test(test_golden_metrics),   cmocka_unit_test(test_golden_single_cls),
	    cmocka_unit_test(test_scale_by_hand),    cmocka_unit_test(test_edge_images),
	    cmocka_unit_test(test_one_match),	     cmocka_unit_test(test_bad_classes),
	    cmocka_unit_test(test_batch_with_model),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
