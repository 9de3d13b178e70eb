/*
 * augment.h - YOLOv5 v7.0's per-image augmentations on 8-bit BGR images:
 * letterbox, augment_hsv and random_perspective (with box_candidates), plus
 * the OpenCV 4.6 primitives they rest on (resize INTER_LINEAR, BGR<->HSV,
 * warpAffine / warpPerspective INTER_LINEAR with a constant border).
 *
 * The primitives reproduce OpenCV's integer arithmetic, not just its maths:
 * resize uses 11-bit fixed-point weights and the SSE2 vertical pass (a
 * 4+16+2 bit descale that rounds differently from the scalar one), the
 * warps quantize source positions to 1/32 pixel and blend with 15-bit
 * weights, BGR->HSV uses OpenCV's 12-bit division tables, and HSV->BGR the
 * float path of its vectorized loop. That is what makes the outputs equal
 * byte for byte to the cv2 calls inside YOLOv5 (see tests/test_augment.c).
 *
 *	struct tr_image im = {width, height, data};   // HWC BGR, rows packed
 *	struct tr_image boxed;
 *	struct tr_aug_letterbox_opts lb = tr_aug_letterbox_defaults(640);
 *	struct tr_aug_letterbox_info info;
 *	if (tr_aug_letterbox(&im, &lb, &boxed, &info, &err) != 0) ...
 *	tr_aug_hsv(&boxed, gains);                      // in place
 *	tr_aug_random_perspective(&boxed, &hyp, draws, &warped, labels, &n, M, &err);
 *	tr_aug_image_free(&boxed);
 *
 * Random numbers are never drawn here: callers pass the draws (YOLOv5's
 * random.uniform values), so the loader decides where they come from and a
 * test can replay YOLOv5's recorded ones.
 */
#ifndef TR_AUGMENT_H
#define TR_AUGMENT_H

#include <stdbool.h>
#include <stdint.h>

#include "ut.h"

/* An 8-bit, 3-channel BGR image, HWC, rows packed (stride = 3 * width). */
struct tr_image {
	int width;
	int height;
	uint8_t *data;
};

/* Allocate width x height (both >= 1); data is uninitialised. */
int tr_aug_image_alloc(struct tr_image *im, int width, int height, struct ut_err *err);
/* Free data and zero the struct; a zeroed struct is fine. */
void tr_aug_image_free(struct tr_image *im);

/*
 * A pixel buffer kept from one image to the next (a loader worker's
 * canvas, say), so that big images are not allocated, and page-faulted in,
 * per sample. tr_aug_buffer_image points im at it, grown first when
 * width x height does not fit: im borrows the memory (never
 * tr_aug_image_free it) until the next call on b or tr_aug_buffer_free.
 * A zeroed struct is an empty buffer.
 */
struct tr_aug_buffer {
	uint8_t *data;
	size_t capacity;
};

int tr_aug_buffer_image(struct tr_aug_buffer *b, int width, int height, struct tr_image *im,
			struct ut_err *err);
void tr_aug_buffer_free(struct tr_aug_buffer *b);

/*
 * cv2.resize(src, (dst->width, dst->height), interpolation=INTER_LINEAR)
 * into dst (allocated by the caller). An exact 2x shrink in both directions
 * takes OpenCV's INTER_AREA shortcut (mean of 2x2, rounded), as cv2 does.
 */
void tr_aug_resize_linear(const struct tr_image *src, struct tr_image *dst);
/*
 * The same for the pixels of dst in [x0, x1) x [y0, y1) only (clipped to
 * dst), with the values the whole resize gives them; other pixels may keep
 * what they held. For inputs of which only a part will be read (a mosaic
 * tile that the warp sees in part).
 */
void tr_aug_resize_linear_region(const struct tr_image *src, struct tr_image *dst, int x0, int y0,
				 int x1, int y1);

/*
 * cv2.resize(src, (dst->width, dst->height), interpolation=INTER_AREA) for
 * a shrink (dst no larger than src on either axis), as YOLOv5's load_image
 * uses it: integer factors average whole cells, other factors sum
 * area-weighted cells in float as OpenCV 4.6 does, then round. A dst
 * larger than src on some axis falls back to INTER_LINEAR (OpenCV uses a
 * bilinear variant there that nothing here needs). Returns -1 only when
 * its tables cannot be allocated (dst is then unchanged).
 */
int tr_aug_resize_area(const struct tr_image *src, struct tr_image *dst);

/* YOLOv5 letterbox() arguments; tr_aug_letterbox_defaults gives its defaults. */
struct tr_aug_letterbox_opts {
	int new_width;
	int new_height;
	uint8_t color;	 /* border grey level, 114 in YOLOv5 */
	bool auto_rect;	 /* `auto`: pad only to a multiple of stride */
	bool scale_fill; /* stretch to new shape, no padding */
	bool scaleup;	 /* allow r > 1 */
	int stride;
};

/* What letterbox() returns besides the image. */
struct tr_aug_letterbox_info {
	double ratio_w, ratio_h; /* `ratio` */
	double dw, dh;		 /* `(dw, dh)`: half the padding, maybe .5 */
	int top, left;		 /* border actually added above and to the left */
};

/* new_shape square, color 114, auto on, scale_fill off, scaleup on, stride 32. */
struct tr_aug_letterbox_opts tr_aug_letterbox_defaults(int new_shape);

/*
 * Resize and pad as utils.augmentations.letterbox. out is allocated here
 * (free with tr_aug_image_free); its size follows from the options.
 */
int tr_aug_letterbox(const struct tr_image *src, const struct tr_aug_letterbox_opts *opts,
		     struct tr_image *out, struct tr_aug_letterbox_info *info, struct ut_err *err);

/* cv2.cvtColor COLOR_BGR2HSV / COLOR_HSV2BGR on 8 bits (H in 0..179). */
void tr_aug_bgr_to_hsv(const uint8_t *bgr, uint8_t *hsv, int width, int height);
void tr_aug_hsv_to_bgr(const uint8_t *hsv, uint8_t *bgr, int width, int height);

/*
 * YOLOv5's gains r = uniform(-1, 1, 3) * [hgain, sgain, vgain] + 1, from
 * the three uniform draws.
 */
void tr_aug_hsv_gains(double hgain, double sgain, double vgain, const double uniform[3],
		      double gains[3]);

/*
 * augment_hsv in place with the given gains: BGR->HSV, lookup tables
 * hue = (x*r0) % 180, sat = clip(x*r1), val = clip(x*r2) (truncated to
 * uint8), HSV->BGR. Returns -1 (err set) if the image cannot be buffered.
 */
int tr_aug_hsv(struct tr_image *im, const double gains[3], struct ut_err *err);

/* One closed polygon, xy pairs (a YOLOv5 segment, float32 as it has them). */
struct tr_polygon {
	float *xy;
	int points;
};

/* random_perspective() hyperparameters and its border (mosaic uses -s/2). */
struct tr_aug_perspective {
	double degrees, translate, scale, shear, perspective;
	int border_h, border_w; /* border=(border_h, border_w) */
};

/* The 8 random.uniform draws of random_perspective, in call order. */
enum tr_aug_draw {
	TR_AUG_DRAW_PERSP_X, /* P[2,0] */
	TR_AUG_DRAW_PERSP_Y, /* P[2,1] */
	TR_AUG_DRAW_ANGLE,   /* rotation, degrees */
	TR_AUG_DRAW_SCALE,   /* s */
	TR_AUG_DRAW_SHEAR_X, /* degrees */
	TR_AUG_DRAW_SHEAR_Y, /* degrees */
	TR_AUG_DRAW_TRANS_X, /* fraction of the output width */
	TR_AUG_DRAW_TRANS_Y, /* fraction of the output height */
	TR_AUG_DRAWS
};

/*
 * The draws from fractions u in [0, 1): value = lo + (hi - lo) * u with
 * YOLOv5's (lo, hi) for each (Python's random.uniform). lo/hi may be NULL.
 */
void tr_aug_perspective_draws(const struct tr_aug_perspective *p, const double frac[TR_AUG_DRAWS],
			      double draws[TR_AUG_DRAWS], double lo[TR_AUG_DRAWS],
			      double hi[TR_AUG_DRAWS]);

/* M = T @ S @ R @ P @ C (row-major 3x3) for an input of in_w x in_h. */
void tr_aug_perspective_matrix(const struct tr_aug_perspective *p, int in_w, int in_h,
			       const double draws[TR_AUG_DRAWS], double M[9]);

/*
 * cv2.warpPerspective (perspective true) or cv2.warpAffine of M's first two
 * rows, INTER_LINEAR, BORDER_CONSTANT with grey `border`, into dst
 * (allocated by the caller, it sets dsize). M maps source to destination.
 */
void tr_aug_warp(const struct tr_image *src, const double M[9], bool perspective, uint8_t border,
		 struct tr_image *dst);

/*
 * The part of a src_w x src_h source that tr_aug_warp reads for a dst_w x
 * dst_h output: box = x0 y0 x1 y1 (exclusive ends), within the source and
 * perhaps empty. Bounded for affine warps; a perspective one (or a
 * degenerate M) gets the whole source.
 */
void tr_aug_warp_source_box(const double M[9], bool perspective, int src_w, int src_h, int dst_w,
			    int dst_h, int box[4]);

/*
 * box_candidates(box1, box2, wh_thr, ar_thr, area_thr) for one box:
 * before (x1 y1 x2 y2, already times s, float32 as YOLOv5 has it) and after.
 */
bool tr_aug_box_candidate(const float before[4], const double after[4], double wh_thr,
			  double ar_thr, double area_thr);

/*
 * random_perspective(im, targets) with the given draws and no segments:
 * out (allocated here) is the warped image (or a copy when M is the
 * identity and there is no border), labels (n rows of cls x1 y1 x2 y2,
 * pixels) are transformed (their 4 corners), clipped and filtered in place
 * by box_candidates(2, 100, 0.1); *n is updated. M (may be NULL) receives
 * the matrix.
 */
int tr_aug_random_perspective(const struct tr_image *src, const struct tr_aug_perspective *p,
			      const double draws[TR_AUG_DRAWS], struct tr_image *out, float *labels,
			      int *n, double M[9], struct ut_err *err);

/*
 * The same into an out the caller provides, already sized
 * (src->width + 2 border_w) x (src->height + 2 border_h); -1 (err set)
 * when it is not.
 */
int tr_aug_random_perspective_into(const struct tr_image *src, const struct tr_aug_perspective *p,
				   const double draws[TR_AUG_DRAWS], struct tr_image *out,
				   float *labels, int *n, double M[9], struct ut_err *err);

/*
 * random_perspective(im, targets, segments): the same with n_segments <= *n
 * polygons (pixels; segments may be NULL when n_segments is 0). When one
 * of them has a nonzero coordinate (use_segments), box i < n_segments is
 * segment2box of polygon i resampled to 1000 points (resample_segments:
 * np.interp along the closed polygon, float64) and warped, i.e. the bounds
 * of the warped points inside the image (zeros when none is, or when all
 * their x are 0); boxes i >= n_segments become zeros, as YOLOv5's
 * np.zeros leaves them; and box_candidates keeps area ratios above 0.01.
 * Otherwise it is tr_aug_random_perspective_into. The points are warped
 * as numpy's xy @ M.T computes on x86-64 with OpenBLAS's FMA kernel:
 * fma(y, m1, x * m0) + m2 (other BLAS may differ by an ulp in float64;
 * the boxes are float32). -1 (err set) when n_segments > *n or a polygon
 * has no points.
 */
int tr_aug_random_perspective_segments_into(const struct tr_image *src,
					    const struct tr_aug_perspective *p,
					    const double draws[TR_AUG_DRAWS],
					    const struct tr_polygon *segments, int n_segments,
					    struct tr_image *out, float *labels, int *n,
					    double M[9], struct ut_err *err);

#endif
