/*
 * test_mosaic.c - mosaic, copy_paste, mixup and flips (trainer/data/mosaic.h).
 *
 * No golden here: the draws come from our PCG streams, not Python's, so
 * the checks are statistical (flip rates, Beta(32, 32) moments, the mosaic
 * centre's range) and geometric (boxes follow the pixels they label through
 * the mosaic and random_perspective), plus determinism per (seed, epoch,
 * index) and exact values where YOLOv5's arithmetic is known (mixup
 * truncates, copy_paste's IoA threshold, label shifts).
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

#include "mosaic.h"

static void must(int rc, const struct ut_err *err)
{
	if (rc != 0)
		fail_msg("%s", err->msg);
}

static void fill(struct tr_image *im, uint8_t b, uint8_t g, uint8_t r)
{
	for (size_t i = 0; i < (size_t)im->width * im->height; i++) {
		im->data[3 * i] = b;
		im->data[3 * i + 1] = g;
		im->data[3 * i + 2] = r;
	}
}

static void paint_rect(struct tr_image *im, int x1, int y1, int x2, int y2, const uint8_t bgr[3])
{
	for (int y = y1; y < y2; y++)
		for (int x = x1; x < x2; x++)
			memcpy(im->data + ((size_t)y * im->width + x) * 3, bgr, 3);
}

/* --- flips --- */

static void test_fliplr_half_flipud_never(void **state)
{
	(void)state;
	struct ut_err err;
	struct tr_image im;
	must(tr_aug_image_alloc(&im, 8, 4, &err), &err);
	int lr = 0, ud = 0;
	for (long index = 0; index < 1000; index++) {
		struct ut_pcg rng;
		tr_sample_stream(&rng, 42, 3, index);
		float labels[5] = {0, 0.25f, 0.125f, 0.1f, 0.1f};
		struct tr_flip_done done = tr_flip_random(&rng, 0.0, 0.5, &im, labels, 1);
		lr += done.lr;
		ud += done.ud;
		assert_true(labels[1] == (done.lr ? 0.75f : 0.25f));
		assert_true(labels[2] == 0.125f);
	}
	/* binomial(1000, 0.5): sd 15.8, so +-80 is 5 sd */
	if (abs(lr - 500) > 80)
		fail_msg("fliplr 0.5 flipped %d of 1000", lr);
	assert_int_equal(ud, 0);
	tr_aug_image_free(&im);
}

static void test_flipud_one_always(void **state)
{
	(void)state;
	struct ut_err err;
	struct tr_image im;
	must(tr_aug_image_alloc(&im, 5, 3, &err), &err);
	for (long index = 0; index < 200; index++) {
		struct ut_pcg rng;
		tr_sample_stream(&rng, 7, 0, index);
		float labels[5] = {1, 0.5f, 0.25f, 0.2f, 0.2f};
		struct tr_flip_done done = tr_flip_random(&rng, 1.0, 0.0, &im, labels, 1);
		assert_true(done.ud && !done.lr);
		assert_true(labels[2] == 0.75f && labels[1] == 0.5f);
	}
	tr_aug_image_free(&im);
}

static void test_flip_pixels(void **state)
{
	(void)state;
	struct ut_err err;
	struct tr_image im;
	must(tr_aug_image_alloc(&im, 5, 3, &err), &err);
	for (int i = 0; i < 15 * 3; i++)
		im.data[i] = (uint8_t)i;
	tr_flip_lr(&im, NULL, 0);
	/* pixel (x=0, y=1) now holds what was at (x=4, y=1) */
	assert_int_equal(im.data[(1 * 5 + 0) * 3 + 2], (1 * 5 + 4) * 3 + 2);
	tr_flip_lr(&im, NULL, 0);
	tr_flip_ud(&im, NULL, 0);
	assert_int_equal(im.data[(0 * 5 + 3) * 3 + 1], (2 * 5 + 3) * 3 + 1);
	assert_int_equal(im.data[(1 * 5 + 3) * 3 + 1], (1 * 5 + 3) * 3 + 1); /* middle row stays */
	tr_aug_image_free(&im);
}

/* --- random variates and mixup --- */

static void test_beta_moments(void **state)
{
	(void)state;
	struct ut_pcg rng;
	tr_sample_stream(&rng, 1, 0, 0);
	enum { N = 40000 };
	double sum = 0, sum2 = 0;
	for (int i = 0; i < N; i++) {
		double r = tr_rand_beta(&rng, 32, 32);
		assert_true(r > 0 && r < 1);
		sum += r;
		sum2 += r * r;
	}
	double mean = sum / N, var = sum2 / N - mean * mean;
	/* sd of one draw 0.062: the mean's sd is 3.1e-4, the variance's ~0.7% */
	if (fabs(mean - 0.5) > 0.0016)
		fail_msg("Beta(32,32) mean %.5f", mean);
	if (fabs(var - 1.0 / 260) > 0.04 / 260)
		fail_msg("Beta(32,32) variance %.6f, expected %.6f", var, 1.0 / 260);
}

static void test_gamma_moments(void **state)
{
	(void)state;
	const double shapes[] = {0.5, 1.0, 2.5, 32.0};
	for (size_t k = 0; k < sizeof(shapes) / sizeof(shapes[0]); k++) {
		struct ut_pcg rng;
		tr_sample_stream(&rng, 2, (long)k, 0);
		enum { N = 40000 };
		double sum = 0, sum2 = 0;
		for (int i = 0; i < N; i++) {
			double g = tr_rand_gamma(&rng, shapes[k]);
			sum += g;
			sum2 += g * g;
		}
		double mean = sum / N, var = sum2 / N - mean * mean, a = shapes[k];
		if (fabs(mean - a) > 5 * sqrt(a / N) || fabs(var - a) > 0.08 * a + 0.02)
			fail_msg("Gamma(%g): mean %.4f var %.4f", a, mean, var);
	}
}

static void test_mixup_truncates_and_concatenates(void **state)
{
	(void)state;
	struct ut_err err;
	struct tr_image a, b;
	must(tr_aug_image_alloc(&a, 4, 2, &err), &err);
	must(tr_aug_image_alloc(&b, 4, 2, &err), &err);
	fill(&a, 201, 0, 255);
	fill(&b, 100, 255, 255);
	struct tr_boxes ba = {0}, bb = {0};
	const float row1[5] = {0, 1, 1, 2, 2}, row2[5] = {1, 0, 0, 3, 1}, row3[5] = {2, 1, 0, 2, 1};
	must(tr_boxes_push(&ba, row1, &err), &err);
	must(tr_boxes_push(&bb, row2, &err), &err);
	must(tr_boxes_push(&bb, row3, &err), &err);
	must(tr_mixup_blend(&a, &ba, &b, &bb, 0.5, &err), &err);
	/* 201 * 0.5 + 100 * 0.5 = 150.5: astype(uint8) gives 150, not 151 */
	assert_int_equal(a.data[0], 150);
	assert_int_equal(a.data[1], 127);
	assert_int_equal(a.data[2], 255);
	assert_int_equal(ba.n, 3);
	assert_memory_equal(ba.rows + 5, row2, sizeof(row2));
	assert_memory_equal(ba.rows + 10, row3, sizeof(row3));
	struct tr_image c;
	must(tr_aug_image_alloc(&c, 3, 2, &err), &err);
	assert_int_equal(tr_mixup_blend(&a, &ba, &c, &bb, 0.5, &err), -1);
	struct ut_pcg rng;
	tr_sample_stream(&rng, 5, 1, 2);
	double r;
	must(tr_mixup(&rng, &a, &ba, &b, &bb, &r, &err), &err);
	assert_true(r > 0.2 && r < 0.8);
	assert_int_equal(ba.n, 5);
	tr_boxes_free(&ba);
	tr_boxes_free(&bb);
	tr_aug_image_free(&a);
	tr_aug_image_free(&b);
	tr_aug_image_free(&c);
}

/* --- mosaic --- */

/* Four tiles, each a grey ground with one solid rectangle labelled as class i. */
struct tiles {
	struct tr_image image[4];
	float labels[4][5];
	struct tr_mosaic_tile tile[4];
};

static const uint8_t tile_colour[4][3] = {{0, 0, 255}, {0, 255, 0}, {255, 0, 0}, {255, 255, 255}};

static void make_tiles(struct ut_pcg *rng, int s, struct tiles *t)
{
	struct ut_err err;
	for (int i = 0; i < 4; i++) {
		/* load_image: the long side is s, the other anything up to s */
		int other = s / 3 + (int)ut_pcg_below(rng, (uint32_t)(s - s / 3 + 1));
		int w = i % 2 ? s : other, h = i % 2 ? other : s;
		must(tr_aug_image_alloc(&t->image[i], w, h, &err), &err);
		fill(&t->image[i], 60, 60, 60);
		int x1 = (int)ut_pcg_below(rng, (uint32_t)(w / 2)),
		    y1 = (int)ut_pcg_below(rng, (uint32_t)(h / 2));
		int x2 = x1 + 4 + (int)ut_pcg_below(rng, (uint32_t)(w - x1 - 4));
		int y2 = y1 + 4 + (int)ut_pcg_below(rng, (uint32_t)(h - y1 - 4));
		paint_rect(&t->image[i], x1, y1, x2, y2, tile_colour[i]);
		float *l = t->labels[i];
		l[0] = (float)i;
		l[1] = (float)((x1 + x2) / 2.0 / w);
		l[2] = (float)((y1 + y2) / 2.0 / h);
		l[3] = (float)((double)(x2 - x1) / w);
		l[4] = (float)((double)(y2 - y1) / h);
		t->tile[i] = (struct tr_mosaic_tile){&t->image[i], t->labels[i], 1, NULL};
	}
}

static void free_tiles(struct tiles *t)
{
	for (int i = 0; i < 4; i++)
		tr_aug_image_free(&t->image[i]);
}

static bool near_colour(const uint8_t *px, const uint8_t bgr[3], int tol)
{
	for (int c = 0; c < 3; c++)
		if (abs(px[c] - bgr[c]) > tol)
			return false;
	return true;
}

/*
 * Every pixel of class c's colour lies inside c's box (grown by `slack`),
 * and with slack 0 the box is exactly the colour's bounds.
 */
static void check_boxes_follow_pixels(const struct tr_image *im, const struct tr_boxes *boxes,
				      int tol, double slack, bool exact)
{
	for (int c = 0; c < 4; c++) {
		const float *box = NULL;
		for (int i = 0; i < boxes->n; i++)
			if (boxes->rows[5 * i] == (float)c)
				box = boxes->rows + 5 * i + 1;
		int xmin = im->width, ymin = im->height, xmax = -1, ymax = -1;
		for (int y = 0; y < im->height; y++)
			for (int x = 0; x < im->width; x++)
				if (near_colour(im->data + ((size_t)y * im->width + x) * 3,
						tile_colour[c], tol)) {
					xmin = x < xmin ? x : xmin, xmax = x > xmax ? x : xmax;
					ymin = y < ymin ? y : ymin, ymax = y > ymax ? y : ymax;
				}
		if (box == NULL) {
			/* dropped by box_candidates: only a sliver may remain */
			if (xmax >= 0 && xmax - xmin > 3 && ymax - ymin > 3 && exact)
				fail_msg("class %d has pixels [%d,%d]x[%d,%d] but no box", c, xmin,
					 xmax, ymin, ymax);
			continue;
		}
		if (xmax < 0)
			continue;
		if (xmin < box[0] - slack || xmax + 1 > box[2] + slack || ymin < box[1] - slack ||
		    ymax + 1 > box[3] + slack)
			fail_msg("class %d pixels [%d,%d)x[%d,%d) outside box %.2f %.2f %.2f %.2f",
				 c, xmin, xmax + 1, ymin, ymax + 1, box[0], box[1], box[2], box[3]);
		if (exact && (xmin != (int)lrintf(box[0]) || xmax + 1 != (int)lrintf(box[2]) ||
			      ymin != (int)lrintf(box[1]) || ymax + 1 != (int)lrintf(box[3])))
			fail_msg(
			    "class %d pixels [%d,%d)x[%d,%d) not tight in box %.3f %.3f %.3f %.3f",
			    c, xmin, xmax + 1, ymin, ymax + 1, box[0], box[1], box[2], box[3]);
	}
}

static void check_inside(const struct tr_boxes *boxes, double w, double h)
{
	for (int i = 0; i < boxes->n; i++) {
		const float *r = boxes->rows + 5 * i;
		if (!(r[1] >= 0 && r[2] >= 0 && r[3] <= w && r[4] <= h && r[1] <= r[3] &&
		      r[2] <= r[4]))
			fail_msg("box %d (%g %g %g %g) leaves the %gx%g image", i, r[1], r[2], r[3],
				 r[4], w, h);
	}
}

static const struct tr_mosaic_hyp scratch_low = {
    .degrees = 10,
    .translate = 0.1,
    .scale = 0.5,
    .shear = 2,
    .perspective = 0,
    .flipud = 0,
    .fliplr = 0.5,
    .mixup = 0,
    .copy_paste = 0,
};

static void test_mosaic_canvas_centre_and_boxes(void **state)
{
	(void)state;
	const int s = 64;
	struct ut_err err;
	int below_centre = 0;
	for (long index = 0; index < 300; index++) {
		struct ut_pcg rng;
		tr_sample_stream(&rng, 11, 0, index);
		struct tr_mosaic_plan plan;
		must(tr_mosaic_plan(&rng, s, index % 50, 50, &plan, &err), &err);
		assert_int_equal(plan.border, -s / 2);
		assert_true(plan.xc >= s / 2 && plan.xc < 3 * s / 2);
		assert_true(plan.yc >= s / 2 && plan.yc < 3 * s / 2);
		below_centre += plan.xc < s;
		bool has_index = false;
		for (int i = 0; i < 4; i++) {
			assert_true(plan.indices[i] >= 0 && plan.indices[i] < 50);
			has_index |= plan.indices[i] == index % 50;
		}
		assert_true(has_index);
		struct tiles t;
		make_tiles(&rng, s, &t);
		struct tr_image canvas, out;
		struct tr_boxes boxes = {0};
		struct tr_segments segs = {0};
		must(tr_mosaic_assemble(&plan, t.tile, &canvas, &boxes, &segs, &err), &err);
		assert_int_equal(canvas.width, 2 * s);
		assert_int_equal(canvas.height, 2 * s);
		assert_int_equal(boxes.n, 4);
		assert_int_equal(segs.n, 0);
		check_inside(&boxes, 2 * s, 2 * s);
		check_boxes_follow_pixels(&canvas, &boxes, 0, 0.01, true);
		must(
		    tr_mosaic_finish(&rng, &scratch_low, &plan, &canvas, &boxes, &segs, &out, &err),
		    &err);
		assert_int_equal(out.width, s);
		assert_int_equal(out.height, s);
		check_inside(&boxes, s, s);
		/* interpolation blurs edges by a pixel: pure-ish colour must stay in the box */
		check_boxes_follow_pixels(&out, &boxes, 16, 1.0, false);
		tr_boxes_to_xywhn(boxes.rows, boxes.n, out.width, out.height);
		for (int i = 0; i < boxes.n; i++)
			for (int k = 1; k < 5; k++)
				assert_true(boxes.rows[5 * i + k] >= 0 &&
					    boxes.rows[5 * i + k] <= 1);
		tr_aug_image_free(&canvas);
		tr_aug_image_free(&out);
		tr_boxes_free(&boxes);
		tr_segments_free(&segs);
		free_tiles(&t);
	}
	/* the centre is uniform over [s/2, 3s/2): about half left of s */
	assert_true(below_centre > 110 && below_centre < 190);
}

static void test_mosaic_plan_odd_size_and_errors(void **state)
{
	(void)state;
	struct ut_err err;
	struct ut_pcg rng;
	tr_sample_stream(&rng, 3, 0, 0);
	struct tr_mosaic_plan plan;
	must(tr_mosaic_plan(&rng, 65, 0, 1, &plan, &err), &err);
	assert_int_equal(plan.border, -33); /* Python: -65 // 2 */
	for (int i = 0; i < 4; i++)
		assert_int_equal(plan.indices[i], 0);
	assert_int_equal(tr_mosaic_plan(&rng, 64, 5, 5, &plan, &err), -1);
	assert_int_equal(tr_mosaic_plan(&rng, 1, 0, 5, &plan, &err), -1);
	/* a tile larger than s is refused */
	struct tr_image big, canvas;
	must(tr_aug_image_alloc(&big, 70, 10, &err), &err);
	must(tr_mosaic_plan(&rng, 64, 0, 1, &plan, &err), &err);
	struct tr_mosaic_tile tiles[4] = {{&big, NULL, 0, NULL},
					  {&big, NULL, 0, NULL},
					  {&big, NULL, 0, NULL},
					  {&big, NULL, 0, NULL}};
	struct tr_boxes boxes = {0};
	assert_int_equal(tr_mosaic_assemble(&plan, tiles, &canvas, &boxes, NULL, &err), -1);
	assert_non_null(strstr(err.msg, "tile 0"));
	tr_aug_image_free(&big);
}

/* Mosaic with the perspective off is a pure crop of the canvas centre. */
static void test_mosaic_identity_perspective_is_centre_crop(void **state)
{
	(void)state;
	const int s = 32;
	struct ut_err err;
	struct ut_pcg rng;
	tr_sample_stream(&rng, 9, 1, 1);
	struct tr_mosaic_plan plan;
	must(tr_mosaic_plan(&rng, s, 0, 4, &plan, &err), &err);
	struct tiles t;
	make_tiles(&rng, s, &t);
	struct tr_image canvas, out;
	struct tr_boxes boxes = {0};
	struct tr_segments segs = {0};
	must(tr_mosaic_assemble(&plan, t.tile, &canvas, &boxes, &segs, &err), &err);
	struct tr_mosaic_hyp none = {0};
	must(tr_mosaic_finish(&rng, &none, &plan, &canvas, &boxes, &segs, &out, &err), &err);
	/* scale draw 1, translation 0.5: M is a shift by -s/2 */
	for (int y = 0; y < s; y++)
		assert_memory_equal(out.data + (size_t)y * s * 3,
				    canvas.data + ((size_t)(y + s / 2) * 2 * s + s / 2) * 3,
				    (size_t)s * 3);
	check_boxes_follow_pixels(&out, &boxes, 0, 0, false);
	tr_aug_image_free(&canvas);
	tr_aug_image_free(&out);
	tr_boxes_free(&boxes);
	tr_segments_free(&segs);
	free_tiles(&t);
}

/* One whole sample as the loader will make it; returns a byte checksum. */
static void make_sample(uint64_t seed, long epoch, long index, struct tr_image *out,
			struct tr_boxes *boxes)
{
	const int s = 48;
	struct ut_err err;
	struct ut_pcg rng;
	tr_sample_stream(&rng, seed, epoch, index);
	struct tr_image second;
	struct tr_boxes boxes2 = {0};
	for (int pass = 0; pass < 2; pass++) {
		struct tr_mosaic_plan plan;
		must(tr_mosaic_plan(&rng, s, index, 10, &plan, &err), &err);
		struct tiles t;
		make_tiles(&rng, s, &t);
		struct tr_image canvas;
		struct tr_segments segs = {0};
		struct tr_boxes *b = pass == 0 ? boxes : &boxes2;
		must(tr_mosaic_assemble(&plan, t.tile, &canvas, b, &segs, &err), &err);
		must(tr_mosaic_finish(&rng, &scratch_low, &plan, &canvas, b, &segs,
				      pass == 0 ? out : &second, &err),
		     &err);
		tr_aug_image_free(&canvas);
		tr_segments_free(&segs);
		free_tiles(&t);
	}
	must(tr_mixup(&rng, out, boxes, &second, &boxes2, NULL, &err), &err);
	tr_boxes_to_xywhn(boxes->rows, boxes->n, out->width, out->height);
	tr_flip_random(&rng, 0.5, 0.5, out, boxes->rows, boxes->n);
	tr_aug_image_free(&second);
	tr_boxes_free(&boxes2);
}

static void test_determinism(void **state)
{
	(void)state;
	struct tr_image a, b, c;
	struct tr_boxes ba = {0}, bb = {0}, bc = {0};
	make_sample(1234, 2, 7, &a, &ba);
	make_sample(1234, 2, 7, &b, &bb);
	make_sample(1234, 2, 8, &c, &bc);
	assert_int_equal(a.width, b.width);
	assert_memory_equal(a.data, b.data, (size_t)a.width * a.height * 3);
	assert_int_equal(ba.n, bb.n);
	assert_memory_equal(ba.rows, bb.rows, sizeof(float) * 5 * (size_t)ba.n);
	assert_true(memcmp(a.data, c.data, (size_t)a.width * a.height * 3) != 0);
	struct ut_pcg r1, r2;
	tr_sample_stream(&r1, 1234, 2, 7);
	tr_sample_stream(&r2, 1234, 3, 7);
	assert_true(ut_pcg_next(&r1) != ut_pcg_next(&r2));
	tr_aug_image_free(&a);
	tr_aug_image_free(&b);
	tr_aug_image_free(&c);
	tr_boxes_free(&ba);
	tr_boxes_free(&bb);
	tr_boxes_free(&bc);
}

/* --- copy_paste --- */

static void test_fill_polygon(void **state)
{
	(void)state;
	uint8_t mask[10 * 10] = {0};
	const float square[] = {2, 2, 5.9f, 2, 5.9f, 5, 2, 5};
	tr_fill_polygon(mask, 10, 10, square, 4, 1);
	int count = 0;
	for (int i = 0; i < 100; i++)
		count += mask[i];
	assert_int_equal(count, 16); /* corners truncate to 2..5 and the edges are included */
	assert_int_equal(mask[2 * 10 + 2], 1);
	assert_int_equal(mask[5 * 10 + 5], 1);
	assert_int_equal(mask[6 * 10 + 5], 0);
}

static void test_copy_paste_mirrors_polygon(void **state)
{
	(void)state;
	struct ut_err err;
	struct tr_image im;
	must(tr_aug_image_alloc(&im, 40, 20, &err), &err);
	fill(&im, 114, 114, 114);
	const uint8_t red[3] = {0, 0, 255};
	paint_rect(&im, 4, 5, 10, 12, red);
	struct tr_boxes boxes = {0};
	struct tr_segments segs = {0};
	const float row[5] = {3, 4, 5, 10, 12};
	const float poly[] = {4, 5, 9, 5, 9, 11, 4, 11};
	must(tr_boxes_push(&boxes, row, &err), &err);
	must(tr_segments_push(&segs, poly, 4, &err), &err);
	struct ut_pcg rng;
	tr_sample_stream(&rng, 1, 0, 0);
	must(tr_copy_paste(&rng, 1.0, &im, &boxes, &segs, &err), &err);
	assert_int_equal(boxes.n, 2);
	assert_int_equal(segs.n, 2);
	const float expect[5] = {3, 30, 5, 36, 12};
	assert_memory_equal(boxes.rows + 5, expect, sizeof(expect));
	assert_true(segs.poly[1].xy[0] == 36 && segs.poly[1].xy[1] == 5);
	/* the mirrored rectangle is red, the rest of the right half still grey */
	for (int y = 0; y < 20; y++)
		for (int x = 20; x < 40; x++) {
			bool in = x >= 30 && x < 36 && y >= 5 && y < 12;
			const uint8_t *px = im.data + ((size_t)y * 40 + x) * 3;
			if (in != (px[2] == 255 && px[0] == 0))
				fail_msg("pixel (%d, %d) is %d %d %d", x, y, px[0], px[1], px[2]);
		}
	tr_boxes_free(&boxes);
	tr_segments_free(&segs);
	tr_aug_image_free(&im);
}

static void test_copy_paste_respects_ioa_and_p(void **state)
{
	(void)state;
	struct ut_err err;
	struct tr_image im, before;
	must(tr_aug_image_alloc(&im, 40, 20, &err), &err);
	must(tr_aug_image_alloc(&before, 40, 20, &err), &err);
	for (size_t i = 0; i < 40 * 20 * 3; i++)
		im.data[i] = (uint8_t)(i * 7);
	memcpy(before.data, im.data, 40 * 20 * 3);
	struct tr_boxes boxes = {0};
	struct tr_segments segs = {0};
	/* centred: its mirror overlaps it completely (IoA 1) */
	const float row[5] = {0, 15, 2, 25, 18};
	const float poly[] = {15, 2, 25, 2, 25, 18, 15, 18};
	must(tr_boxes_push(&boxes, row, &err), &err);
	must(tr_segments_push(&segs, poly, 4, &err), &err);
	struct ut_pcg rng;
	tr_sample_stream(&rng, 1, 0, 0);
	must(tr_copy_paste(&rng, 1.0, &im, &boxes, &segs, &err), &err);
	assert_int_equal(boxes.n, 1);
	assert_memory_equal(im.data, before.data, 40 * 20 * 3);
	/* p = 0 draws nothing and changes nothing */
	struct ut_pcg copy = rng;
	must(tr_copy_paste(&rng, 0.0, &im, &boxes, &segs, &err), &err);
	assert_true(rng.state == copy.state);
	/* IoA over the other box's area: 0.25 passes, 0.5 does not */
	const float other[4] = {0, 0, 10, 10}, half[4] = {5, 0, 15, 10},
		    quarter[4] = {5, 5, 15, 15};
	float rows[5] = {0, other[0], other[1], other[2], other[3]};
	double ioa;
	tr_bbox_ioa(half, rows, 1, &ioa);
	assert_true(fabs(ioa - 0.5) < 1e-6);
	tr_bbox_ioa(quarter, rows, 1, &ioa);
	assert_true(fabs(ioa - 0.25) < 1e-6);
	/* the mirror of a box overlapping it by 40% of its area is refused, by 20% taken */
	const float left_x[2] = {12, 11};
	const int added[2] = {0, 1};
	for (int k = 0; k < 2; k++) {
		struct tr_boxes b = {0};
		struct tr_segments sg = {0};
		const float r[5] = {1, left_x[k], 4, left_x[k] + 10, 14};
		const float sq[8] = {r[1], 4, r[3], 4, r[3], 14, r[1], 14};
		must(tr_boxes_push(&b, r, &err), &err);
		must(tr_segments_push(&sg, sq, 4, &err), &err);
		must(tr_copy_paste(&rng, 1.0, &im, &b, &sg, &err), &err);
		assert_int_equal(b.n, 1 + added[k]);
		tr_boxes_free(&b);
		tr_segments_free(&sg);
	}
	/* segments that do not match the boxes are an error */
	must(tr_segments_push(&segs, poly, 4, &err), &err);
	assert_int_equal(tr_copy_paste(&rng, 1.0, &im, &boxes, &segs, &err), -1);
	tr_boxes_free(&boxes);
	tr_segments_free(&segs);
	tr_aug_image_free(&im);
	tr_aug_image_free(&before);
}

/* Mosaic with normalised segments goes through copy_paste when asked. */
static void test_mosaic_with_segments(void **state)
{
	(void)state;
	const int s = 64;
	struct ut_err err;
	int grew = 0;
	for (long index = 0; index < 40; index++) {
		struct ut_pcg rng;
		tr_sample_stream(&rng, 77, 0, index);
		struct tr_mosaic_plan plan;
		must(tr_mosaic_plan(&rng, s, 0, 1, &plan, &err), &err);
		struct tiles t;
		make_tiles(&rng, s, &t);
		struct tr_polygon polys[4];
		float xy[4][8];
		for (int i = 0; i < 4; i++) {
			const float *l = t.labels[i];
			float x1 = l[1] - l[3] / 2, y1 = l[2] - l[4] / 2, x2 = l[1] + l[3] / 2,
			      y2 = l[2] + l[4] / 2;
			const float corners[8] = {x1, y1, x2, y1, x2, y2, x1, y2};
			memcpy(xy[i], corners, sizeof(corners));
			polys[i] = (struct tr_polygon){xy[i], 4};
			t.tile[i].segments = &polys[i];
		}
		struct tr_image canvas, out;
		struct tr_boxes boxes = {0};
		struct tr_segments segs = {0};
		must(tr_mosaic_assemble(&plan, t.tile, &canvas, &boxes, &segs, &err), &err);
		assert_int_equal(segs.n, 4);
		for (int i = 0; i < 4; i++)
			for (int q = 0; q < 8; q++)
				assert_true(segs.poly[i].xy[q] >= 0 && segs.poly[i].xy[q] <= 2 * s);
		struct tr_mosaic_hyp hyp = scratch_low;
		hyp.copy_paste = 1.0;
		must(tr_mosaic_finish(&rng, &hyp, &plan, &canvas, &boxes, &segs, &out, &err), &err);
		grew += segs.n > 4;
		check_inside(&boxes, s, s);
		tr_aug_image_free(&canvas);
		tr_aug_image_free(&out);
		tr_boxes_free(&boxes);
		tr_segments_free(&segs);
		free_tiles(&t);
	}
	assert_true(grew > 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_fliplr_half_flipud_never),
	    cmocka_unit_test(test_flipud_one_always),
	    cmocka_unit_test(test_flip_pixels),
	    cmocka_unit_test(test_beta_moments),
	    cmocka_unit_test(test_gamma_moments),
	    cmocka_unit_test(test_mixup_truncates_and_concatenates),
	    cmocka_unit_test(test_mosaic_canvas_centre_and_boxes),
	    cmocka_unit_test(test_mosaic_plan_odd_size_and_errors),
	    cmocka_unit_test(test_mosaic_identity_perspective_is_centre_crop),
	    cmocka_unit_test(test_determinism),
	    cmocka_unit_test(test_fill_polygon),
	    cmocka_unit_test(test_copy_paste_mirrors_polygon),
	    cmocka_unit_test(test_copy_paste_respects_ioa_and_p),
	    cmocka_unit_test(test_mosaic_with_segments),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
