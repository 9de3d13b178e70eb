/*
 * test_augment.c - letterbox, augment_hsv and random_perspective against
 * YOLOv5 v7.0 (tests/golden/yolov5/augment.*).
 *
 * Every case of the golden: a1..a4 letterbox (bytes, ratio, padding, the
 * a1 labels), b augment_hsv with the recorded gains, c1 (warpPerspective)
 * and c2 (warpAffine) random_perspective with the recorded draws (M, bytes,
 * filtered labels). Images must be identical; on a mismatch the message
 * gives the largest difference and how many bytes differ. Then a few
 * properties that need no golden, among them the pieces the loader uses to
 * skip work (the source box of a warp, a resize of part of an image).
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

#include "augment.h"
#include "safetensors.h"

static struct tr_st_file *golden;

static int open_golden(void **state)
{
	(void)state;
	const char *root = getenv("YE_SOURCE_ROOT");
	if (root == NULL || root[0] == '\0') {
		fprintf(stderr, "YE_SOURCE_ROOT is not set (it must name the repository root)\n");
		return -1;
	}
	char path[1024];
	snprintf(path, sizeof(path), "%s/tests/golden/yolov5/augment.safetensors", root);
	struct ut_err err;
	if (tr_st_open(path, &golden, &err) != 0) {
		fprintf(stderr, "%s\n", err.msg);
		return -1;
	}
	return 0;
}

static int close_golden(void **state)
{
	(void)state;
	tr_st_close(golden);
	golden = NULL;
	return 0;
}

static const struct tr_st_tensor *tensor(const char *name, enum tr_st_dtype dtype)
{
	const struct tr_st_tensor *t = tr_st_find(golden, name);
	if (t == NULL)
		fail_msg("augment.safetensors has no tensor %s", name);
	if (t->dtype != dtype)
		fail_msg("%s has dtype %s", name, tr_st_dtype_name(t->dtype));
	return t;
}

/* A golden HWC U8 image as a tr_image (borrowed, read-only in practice). */
static struct tr_image golden_image(const char *name)
{
	const struct tr_st_tensor *t = tensor(name, TR_ST_U8);
	assert_int_equal(t->ndim, 3);
	assert_int_equal(t->shape[2], 3);
	struct tr_image im = {(int)t->shape[1], (int)t->shape[0], (uint8_t *)t->data};
	return im;
}

/* A crop of orig/bgr (rows, cols from the top left), copied. */
static struct tr_image crop(int width, int height)
{
	struct tr_image orig = golden_image("orig/bgr");
	struct tr_image out;
	struct ut_err err;
	assert_int_equal(tr_aug_image_alloc(&out, width, height, &err), 0);
	for (int y = 0; y < height; y++)
		memcpy(out.data + (size_t)y * width * 3, orig.data + (size_t)y * orig.width * 3,
		       (size_t)width * 3);
	return out;
}

/* Images equal byte for byte, or fail naming the case and how far off. */
static void assert_same_image(const char *label, const struct tr_image *got, const char *name)
{
	struct tr_image want = golden_image(name);
	if (got->width != want.width || got->height != want.height)
		fail_msg("%s: size %dx%d, YOLOv5 %dx%d", label, got->width, got->height, want.width,
			 want.height);
	size_t bytes = (size_t)want.width * want.height * 3, differ = 0;
	int max_diff = 0;
	for (size_t i = 0; i < bytes; i++) {
		int d = abs((int)got->data[i] - (int)want.data[i]);
		if (d != 0)
			differ++;
		if (d > max_diff)
			max_diff = d;
	}
	if (differ != 0)
		fail_msg("%s: %zu of %zu bytes differ from YOLOv5, by up to %d", label, differ,
			 bytes, max_diff);
}

static void assert_close(const char *label, double got, double want, double tol)
{
	if (!(fabs(got - want) <= tol))
		fail_msg("%s: %.17g, YOLOv5 %.17g (tolerance %g)", label, got, want, tol);
}

/* --- letterbox --- */

struct letterbox_case {
	const char *name;
	int width, height; /* crop of orig/bgr */
	bool auto_rect, scaleup;
	double dw, dh; /* the golden yaml's pad_dw_dh */
};

static const struct letterbox_case letterbox_cases[] = {
    {"a1_square_320", 416, 416, false, true, 0.0, 0.0},
    {"a2_crop300w_320", 300, 416, false, true, 44.5, 0.0},
    {"a3_crop300w_320_auto", 300, 416, true, true, 12.5, 0.0},
    {"a4_small_scaleup_false", 150, 200, false, false, 85.0, 60.0},
};

static void test_letterbox(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(letterbox_cases) / sizeof(letterbox_cases[0]); i++) {
		const struct letterbox_case *c = &letterbox_cases[i];
		struct tr_image in = crop(c->width, c->height), out;
		struct tr_aug_letterbox_opts opts = tr_aug_letterbox_defaults(320);
		opts.auto_rect = c->auto_rect;
		opts.scaleup = c->scaleup;
		struct tr_aug_letterbox_info info;
		struct ut_err err;
		assert_int_equal(tr_aug_letterbox(&in, &opts, &out, &info, &err), 0);
		char name[128];
		snprintf(name, sizeof(name), "%s/out", c->name);
		assert_same_image(c->name, &out, name);
		double ratio = c->scaleup ? 320.0 / 416 : 1.0;
		assert_close("ratio w", info.ratio_w, ratio, 0);
		assert_close("ratio h", info.ratio_h, ratio, 0);
		assert_close("dw", info.dw, c->dw, 0);
		assert_close("dh", info.dh, c->dh, 0);
		tr_aug_image_free(&out);
		tr_aug_image_free(&in);
	}
}

/* a1's labels as LoadImagesAndLabels makes them: xywhn2xyxy(r*w0, r*h0). */
static void test_letterbox_labels(void **state)
{
	(void)state;
	const struct tr_st_tensor *xywhn = tensor("orig/labels_xywhn", TR_ST_F32);
	const struct tr_st_tensor *xyxy = tensor("a1_square_320/labels_xyxy", TR_ST_F32);
	const float *in = xywhn->data, *want = xyxy->data;
	double w = 320.0 / 416 * 416, h = 320.0 / 416 * 416;
	for (size_t i = 0; i < (size_t)xywhn->shape[0]; i++) {
		const float *r = in + 5 * i;
		float got[5] = {r[0], (float)(w * (r[1] - r[3] / 2)),
				(float)(h * (r[2] - r[4] / 2)), (float)(w * (r[1] + r[3] / 2)),
				(float)(h * (r[2] + r[4] / 2))};
		for (int k = 0; k < 5; k++)
			assert_close("a1 label", got[k], want[5 * i + k], 1e-4);
	}
}

/* --- augment_hsv --- */

static void test_hsv(void **state)
{
	(void)state;
	const double uniform[3] = {0.3, -0.5, 0.8}, want[3] = {1.0045, 0.65, 1.32};
	double gains[3];
	tr_aug_hsv_gains(0.015, 0.7, 0.4, uniform, gains);
	for (int k = 0; k < 3; k++)
		assert_close("hsv gain", gains[k], want[k], 1e-15);
	struct tr_image a1 = golden_image("a1_square_320/out"), im;
	struct ut_err err;
	assert_int_equal(tr_aug_image_alloc(&im, a1.width, a1.height, &err), 0);
	memcpy(im.data, a1.data, (size_t)a1.width * a1.height * 3);
	assert_int_equal(tr_aug_hsv(&im, gains, &err), 0);
	assert_same_image("b_hsv", &im, "b_hsv/out");
	tr_aug_image_free(&im);
}

/* --- random_perspective --- */

struct perspective_case {
	const char *name;
	struct tr_aug_perspective hyp;
	double frac[TR_AUG_DRAWS];  /* the recorded fractions */
	double draws[TR_AUG_DRAWS]; /* the recorded values */
	bool warp_perspective;
};

static const struct perspective_case perspective_cases[] = {
    {"c1_full",
     {10, 0.1, 0.5, 2, 0.0005, 0, 0},
     {0.8, 0.3, 0.65, 0.4, 0.7, 0.2, 0.55, 0.35},
     {0.00030000000000000003, -0.00020000000000000004, 3.0, 0.9, 0.7999999999999998, -1.2, 0.51,
      0.47},
     true},
    {"c2_scratch_low_affine",
     {0.0, 0.1, 0.5, 0.0, 0.0, 0, 0},
     {0.5, 0.5, 0.5, 0.25, 0.5, 0.5, 0.8, 0.3},
     {0.0, 0.0, 0.0, 0.75, 0.0, 0.0, 0.56, 0.46},
     false},
};

static void test_random_perspective(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(perspective_cases) / sizeof(perspective_cases[0]); i++) {
		const struct perspective_case *c = &perspective_cases[i];
		double draws[TR_AUG_DRAWS];
		tr_aug_perspective_draws(&c->hyp, c->frac, draws, NULL, NULL);
		for (int k = 0; k < TR_AUG_DRAWS; k++)
			assert_close("draw", draws[k], c->draws[k], 0);

		const struct tr_st_tensor *in_labels =
		    tensor("a1_square_320/labels_xyxy", TR_ST_F32);
		int n = (int)in_labels->shape[0];
		float labels[16 * 5];
		assert_true(n <= 16);
		memcpy(labels, in_labels->data, in_labels->nbytes);

		struct tr_image a1 = golden_image("a1_square_320/out"), out;
		double M[9];
		struct ut_err err;
		assert_int_equal(
		    tr_aug_random_perspective(&a1, &c->hyp, draws, &out, labels, &n, M, &err), 0);
		char name[128];
		snprintf(name, sizeof(name), "%s/M", c->name);
		const struct tr_st_tensor *m = tensor(name, TR_ST_F64);
		const double *want_m = m->data;
		assert_int_equal(m->shape[0], c->warp_perspective ? 3 : 2);
		for (size_t k = 0; k < m->numel; k++)
			assert_close(name, M[k], want_m[k], 1e-12);

		snprintf(name, sizeof(name), "%s/out", c->name);
		assert_same_image(c->name, &out, name);

		snprintf(name, sizeof(name), "%s/labels_cls_xyxy", c->name);
		const struct tr_st_tensor *want_labels = tensor(name, TR_ST_F32);
		assert_int_equal(n, (int)want_labels->shape[0]);
		const float *wl = want_labels->data;
		for (int k = 0; k < 5 * n; k++)
			assert_close(name, labels[k], wl[k], 1e-4);
		tr_aug_image_free(&out);
	}
}

/* The warp of the golden's own M gives the same bytes (M input path). */
static void test_warp_golden_matrix(void **state)
{
	(void)state;
	struct tr_image a1 = golden_image("a1_square_320/out"), out;
	struct ut_err err;
	const double *m1 = tensor("c1_full/M", TR_ST_F64)->data;
	assert_int_equal(tr_aug_image_alloc(&out, 320, 320, &err), 0);
	tr_aug_warp(&a1, m1, true, 114, &out);
	assert_same_image("c1_full (golden M)", &out, "c1_full/out");
	const double *m2 = tensor("c2_scratch_low_affine/M", TR_ST_F64)->data;
	double m3[9] = {m2[0], m2[1], m2[2], m2[3], m2[4], m2[5], 0, 0, 1};
	tr_aug_warp(&a1, m3, false, 114, &out);
	assert_same_image("c2 (golden M)", &out, "c2_scratch_low_affine/out");
	tr_aug_image_free(&out);
}

/* --- properties without a golden --- */

/* All draws neutral: random_perspective returns its input unchanged. */
static void test_perspective_identity(void **state)
{
	(void)state;
	struct tr_image a1 = golden_image("a1_square_320/out"), out;
	struct tr_aug_perspective hyp = {0, 0, 0, 0, 0, 0, 0};
	const double frac[TR_AUG_DRAWS] = {0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5};
	double draws[TR_AUG_DRAWS], M[9];
	tr_aug_perspective_draws(&hyp, frac, draws, NULL, NULL);
	float labels[5] = {1, 10, 20, 50, 60};
	int n = 1;
	struct ut_err err;
	assert_int_equal(tr_aug_random_perspective(&a1, &hyp, draws, &out, labels, &n, M, &err), 0);
	assert_memory_equal(out.data, a1.data, (size_t)320 * 320 * 3);
	assert_int_equal(n, 1);
	assert_true(labels[1] == 10 && labels[2] == 20 && labels[3] == 50 && labels[4] == 60);
	tr_aug_image_free(&out);
}

/* Unit HSV gains leave an image unchanged up to OpenCV's round trip loss. */
static void test_hsv_unit_gains(void **state)
{
	(void)state;
	struct tr_image a1 = golden_image("a1_square_320/out"), im;
	struct ut_err err;
	assert_int_equal(tr_aug_image_alloc(&im, a1.width, a1.height, &err), 0);
	memcpy(im.data, a1.data, (size_t)a1.width * a1.height * 3);
	const double gains[3] = {1, 1, 1};
	assert_int_equal(tr_aug_hsv(&im, gains, &err), 0);
	int max_diff = 0;
	for (size_t i = 0; i < (size_t)a1.width * a1.height * 3; i++) {
		int d = abs((int)im.data[i] - (int)a1.data[i]);
		max_diff = d > max_diff ? d : max_diff;
	}
	assert_true(max_diff <= 8);
	tr_aug_image_free(&im);
}

/* Letterbox of an image already at the target shape is a copy. */
static void test_letterbox_noop(void **state)
{
	(void)state;
	struct tr_image a1 = golden_image("a1_square_320/out"), out;
	struct tr_aug_letterbox_opts opts = tr_aug_letterbox_defaults(320);
	struct tr_aug_letterbox_info info;
	struct ut_err err;
	assert_int_equal(tr_aug_letterbox(&a1, &opts, &out, &info, &err), 0);
	assert_int_equal(out.width, 320);
	assert_int_equal(out.height, 320);
	assert_memory_equal(out.data, a1.data, (size_t)320 * 320 * 3);
	assert_true(info.dw == 0 && info.dh == 0 && info.ratio_w == 1);
	tr_aug_image_free(&out);
}

/* --- the parts of a warp or resize that the loader computes alone --- */

/* A test-local xorshift, so that the cases do not depend on libc's rand. */
static uint32_t next_u32(uint64_t *state)
{
	*state ^= *state << 13;
	*state ^= *state >> 7;
	*state ^= *state << 17;
	return (uint32_t)(*state >> 32);
}

static double next_unit(uint64_t *state)
{
	return next_u32(state) / 4294967296.0;
}

/*
 * tr_aug_warp_source_box: a source whose pixels outside the box are
 * scrambled warps to the same bytes, for affine maps that rotate, shear,
 * scale and push the output partly off the source.
 */
static void test_warp_source_box(void **state)
{
	(void)state;
	uint64_t rng = 0x9e3779b97f4a7c15u;
	struct tr_image a1 = golden_image("a1_square_320/out"), scrambled, want, got;
	struct ut_err err;
	assert_int_equal(tr_aug_image_alloc(&scrambled, a1.width, a1.height, &err), 0);
	assert_int_equal(tr_aug_image_alloc(&want, 257, 190, &err), 0);
	assert_int_equal(tr_aug_image_alloc(&got, 257, 190, &err), 0);
	for (int trial = 0; trial < 60; trial++) {
		double angle = (next_unit(&rng) - 0.5) * 2 * M_PI,
		       scale = 0.4 + 1.4 * next_unit(&rng);
		double shear = (next_unit(&rng) - 0.5) * 0.4;
		double M[9] = {scale * cos(angle),
			       scale * sin(angle) + shear,
			       (next_unit(&rng) - 0.3) * 400,
			       -scale * sin(angle),
			       scale * cos(angle),
			       (next_unit(&rng) - 0.3) * 300,
			       0,
			       0,
			       1};
		int box[4];
		tr_aug_warp_source_box(M, false, a1.width, a1.height, want.width, want.height, box);
		assert_true(box[0] >= 0 && box[0] <= box[2] && box[2] <= a1.width);
		assert_true(box[1] >= 0 && box[1] <= box[3] && box[3] <= a1.height);
		for (int y = 0; y < a1.height; y++)
			for (int x = 0; x < a1.width; x++) {
				bool inside =
				    x >= box[0] && x < box[2] && y >= box[1] && y < box[3];
				size_t i = ((size_t)y * a1.width + x) * 3;
				for (int c = 0; c < 3; c++)
					scrambled.data[i + c] =
					    inside ? a1.data[i + c] : (uint8_t)next_u32(&rng);
			}
		tr_aug_warp(&a1, M, false, 114, &want);
		tr_aug_warp(&scrambled, M, false, 114, &got);
		assert_memory_equal(got.data, want.data, (size_t)want.width * want.height * 3);
	}
	tr_aug_image_free(&scrambled);
	tr_aug_image_free(&want);
	tr_aug_image_free(&got);
}

/* tr_aug_resize_linear_region gives the region the bytes of the whole resize. */
static void test_resize_region(void **state)
{
	(void)state;
	uint64_t rng = 0x2545f4914f6cdd1du;
	struct tr_image a1 = golden_image("a1_square_320/out"), whole, part;
	struct ut_err err;
	const int sizes[][2] = {{480, 470}, {211, 333}, {160, 160}, {320, 320}, {97, 501}};
	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		int w = sizes[k][0], h = sizes[k][1];
		assert_int_equal(tr_aug_image_alloc(&whole, w, h, &err), 0);
		assert_int_equal(tr_aug_image_alloc(&part, w, h, &err), 0);
		tr_aug_resize_linear(&a1, &whole);
		for (int trial = 0; trial < 8; trial++) {
			int x0 = (int)(next_unit(&rng) * w) - 5,
			    y0 = (int)(next_unit(&rng) * h) - 5;
			int x1 = x0 + 1 + (int)(next_unit(&rng) * w),
			    y1 = y0 + (int)(next_unit(&rng) * h);
			memset(part.data, 7, (size_t)w * h * 3);
			tr_aug_resize_linear_region(&a1, &part, x0, y0, x1, y1);
			for (int y = y0 < 0 ? 0 : y0; y < (y1 < h ? y1 : h); y++) {
				int first = x0 < 0 ? 0 : x0, last = x1 < w ? x1 : w;
				size_t at = ((size_t)y * w + first) * 3;
				if (last > first)
					assert_memory_equal(part.data + at, whole.data + at,
							    (size_t)(last - first) * 3);
			}
		}
		tr_aug_image_free(&whole);
		tr_aug_image_free(&part);
	}
}

/* A little-endian reader over the bytes of tests/data/perspective_segments.bin. */
struct cursor {
	const char *data;
	size_t len, at;
};

static const void *take(struct cursor *c, size_t bytes)
{
	if (c->at + bytes > c->len)
		fail_msg("perspective_segments.bin ends at byte %zu", c->len);
	const void *p = c->data + c->at;
	c->at += bytes;
	return p;
}

static int32_t take_int(struct cursor *c)
{
	int32_t v;
	memcpy(&v, take(c, sizeof(v)), sizeof(v));
	return v;
}

/*
 * random_perspective with polygon segments against YOLOv5's own call
 * (tests/data/perspective_segments.py): affine and perspective with
 * segments, then the same affine draws without them. Bytes and boxes must
 * be identical; the golden must hold a box that area_thr 0.10 would drop.
 */
static void test_random_perspective_segments(void **state)
{
	(void)state;
	const char *root = getenv("YE_SOURCE_ROOT");
	if (root == NULL)
		fail_msg("YE_SOURCE_ROOT is not set");
	char path[512];
	snprintf(path, sizeof(path), "%s/tests/data/perspective_segments.bin", root);
	struct cursor c = {0};
	struct ut_err err;
	char *data;
	if (ut_read_file(path, &data, &c.len, &err) != 0)
		fail_msg("%s", err.msg);
	c.data = data;
	int cases = take_int(&c), only_at_1pct = 0;
	assert_int_equal(cases, 3);
	for (int k = 0; k < cases; k++) {
		int w = take_int(&c), h = take_int(&c), border = take_int(&c);
		int use_segments = take_int(&c), n = take_int(&c), n_seg = take_int(&c);
		double hyp[5], draws[TR_AUG_DRAWS];
		memcpy(hyp, take(&c, sizeof(hyp)), sizeof(hyp));
		memcpy(draws, take(&c, sizeof(draws)), sizeof(draws));
		struct tr_aug_perspective p = {hyp[0], hyp[1], hyp[2], hyp[3],
					       hyp[4], border, border};
		float labels[8 * 5];
		assert_true(n <= 8 && n_seg <= 8);
		memcpy(labels, take(&c, 5 * sizeof(float) * n), 5 * sizeof(float) * n);
		struct tr_polygon poly[8];
		float xy[8][64];
		for (int i = 0; i < n_seg; i++) {
			poly[i].points = take_int(&c);
			assert_in_range(poly[i].points, 1, 32);
			memcpy(xy[i], take(&c, 2 * sizeof(float) * poly[i].points),
			       2 * sizeof(float) * poly[i].points);
			poly[i].xy = xy[i];
		}
		int want_n = take_int(&c);
		const float *want = take(&c, 5 * sizeof(float) * want_n);
		struct tr_image src, out;
		assert_int_equal(tr_aug_image_alloc(&src, w, h, &err), 0);
		assert_int_equal(tr_aug_image_alloc(&out, w + 2 * border, h + 2 * border, &err), 0);
		for (size_t i = 0; i < (size_t)w * h * 3; i++) /* the generator's pattern */
			src.data[i] = (uint8_t)((i * 2654435761u) >> 13);
		float before[8 * 5];
		memcpy(before, labels, sizeof(before));
		if (tr_aug_random_perspective_segments_into(&src, &p, draws, poly,
							    use_segments ? n_seg : 0, &out, labels,
							    &n, NULL, &err) != 0)
			fail_msg("case %d: %s", k, err.msg);
		assert_int_equal(n, want_n);
		for (int i = 0; i < 5 * n; i++)
			if (memcmp(&labels[i], &want[i], sizeof(float)) != 0)
				fail_msg("case %d: box %d value %d is %.9g, YOLOv5 %.9g", k, i / 5,
					 i % 5, labels[i], want[i]);
		size_t bytes = (size_t)out.width * out.height * 3;
		if (memcmp(out.data, take(&c, bytes), bytes) != 0)
			fail_msg("case %d: image differs from YOLOv5", k);
		/* teeth: some kept box passes the 1% area test and fails the 10% one */
		for (int i = 0; i < n && use_segments; i++) {
			for (int j = 0; j < 8; j++) {
				if (j >= 6 || before[5 * j] != labels[5 * i])
					continue;
				float s4[4];
				double box[4];
				for (int q = 0; q < 4; q++) {
					s4[q] =
					    before[5 * j + 1 + q] * (float)draws[TR_AUG_DRAW_SCALE];
					box[q] = labels[5 * i + 1 + q];
				}
				if (tr_aug_box_candidate(s4, box, 2, 100, 0.01) &&
				    !tr_aug_box_candidate(s4, box, 2, 100, 0.1)) {
					only_at_1pct++;
					break;
				}
			}
		}
		tr_aug_image_free(&src);
		tr_aug_image_free(&out);
	}
	assert_int_equal(c.at, c.len);
	assert_true(only_at_1pct >= 2);
	free(data);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_letterbox),
	    cmocka_unit_test(test_letterbox_labels),
	    cmocka_unit_test(test_hsv),
	    cmocka_unit_test(test_random_perspective),
	    cmocka_unit_test(test_warp_golden_matrix),
	    cmocka_unit_test(test_perspective_identity),
	    cmocka_unit_test(test_hsv_unit_gains),
	    cmocka_unit_test(test_letterbox_noop),
	    cmocka_unit_test(test_warp_source_box),
	    cmocka_unit_test(test_resize_region),
	    cmocka_unit_test(test_random_perspective_segments),
	};
	return cmocka_run_group_tests(tests, open_golden, close_golden);
}
