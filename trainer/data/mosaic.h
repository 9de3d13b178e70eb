/*
 * mosaic.h - YOLOv5 v7.0's sample-level augmentations built on augment.h:
 * the 4-image mosaic (random centre, grey 114 canvas of 2s x 2s, tiles
 * placed around the centre, then random_perspective with border -s/2),
 * copy_paste on polygon segments, mixup with a Beta(32, 32) ratio, and the
 * up-down / left-right flips.
 *
 * Every random draw comes from a PCG32 stream owned by one sample, keyed by
 * (run seed, epoch, dataset index), so a sample's pixels do not depend on
 * which worker thread made it or in what order:
 *
 *	struct ut_pcg rng;
 *	tr_sample_stream(&rng, seed, epoch, index);
 *	struct tr_mosaic_plan plan;
 *	tr_mosaic_plan(&rng, 640, index, n_images, &plan);   // centre, 4 indices
 *	... load plan.indices[0..3] as load_image does (long side = s) ...
 *	tr_mosaic_assemble(&plan, tiles, &canvas, &boxes, &segs, &err);
 *	tr_mosaic_finish(&rng, &hyp, &canvas, &boxes, &segs, &out, &err);
 *	... mixup, xyxy -> normalised xywh, HSV, tr_flip_random ...
 *
 * Draw order inside a sample follows YOLOv5's __getitem__/load_mosaic:
 * centre y then x, 3 extra indices, the shuffle of the 4, copy_paste's
 * sample (only when it has segments and p > 0), the 8 random_perspective
 * draws, then (loader) the mixup coin, the second mosaic, the Beta ratio,
 * the 3 HSV draws, flipud, fliplr. The values differ from Python's (other
 * generator); the distributions and their use are the same.
 *
 * Boxes are rows of 5 floats: class x1 y1 x2 y2 in pixels (what
 * random_perspective takes), except where a function says normalised xywh.
 */
#ifndef TR_MOSAIC_H
#define TR_MOSAIC_H

#include <stdbool.h>
#include <stdint.h>

#include "augment.h"
#include "pcg.h"
#include "ut.h"

/* The per-sample stream: one PCG32 sequence per (seed, epoch, index). */
void tr_sample_stream(struct ut_pcg *rng, uint64_t seed, long epoch, long index);

/* Gamma(shape, 1) by Marsaglia-Tsang (shape < 1 boosted); shape > 0. */
double tr_rand_gamma(struct ut_pcg *rng, double shape);
/* Beta(a, b) = X / (X + Y) with X ~ Gamma(a), Y ~ Gamma(b). */
double tr_rand_beta(struct ut_pcg *rng, double a, double b);

/* A growable table of boxes, rows of 5 floats (class x1 y1 x2 y2). */
struct tr_boxes {
	float *rows;
	int n;
	int cap;
};

/* Make room for at least `more` extra rows. */
int tr_boxes_reserve(struct tr_boxes *b, int more, struct ut_err *err);
/* Append one row. */
int tr_boxes_push(struct tr_boxes *b, const float row[5], struct ut_err *err);
/* Free rows and zero the struct; a zeroed struct is fine. */
void tr_boxes_free(struct tr_boxes *b);

/* A growable list of polygons that owns their points. */
struct tr_segments {
	struct tr_polygon *poly;
	int n;
	int cap;
};

/* Append a copy of `points` xy pairs. */
int tr_segments_push(struct tr_segments *s, const float *xy, int points, struct ut_err *err);
void tr_segments_free(struct tr_segments *s);

/* The augmentation strengths these functions use (hyp.*.yaml names). */
struct tr_mosaic_hyp {
	double degrees, translate, scale, shear, perspective;
	double flipud, fliplr, mixup, copy_paste;
};

/* What load_mosaic decides before it loads anything. */
struct tr_mosaic_plan {
	int size;	 /* s, the training image size */
	int xc, yc;	 /* centre on the 2s x 2s canvas */
	long indices[4]; /* top left, top right, bottom left, bottom right */
	int border;	 /* mosaic_border: -s // 2 (Python floor division) */
};

/*
 * Draw the centre (yc then xc, each int(uniform(-border, 2s + border))),
 * 3 more indices uniform in [0, n_images), and shuffle the four. size >= 2,
 * n_images >= 1, 0 <= index < n_images.
 */
int tr_mosaic_plan(struct ut_pcg *rng, int size, long index, long n_images,
		   struct tr_mosaic_plan *plan, struct ut_err *err);
/*
 * The same draws, the 3 extra indices taken from a list of n_images
 * dataset indices (pool[uniform in [0, n_images)]), as YOLOv5's
 * random.choices(self.indices, k=3) once --image-weights has replaced
 * self.indices. pool NULL is range(n_images), i.e. tr_mosaic_plan.
 */
int tr_mosaic_plan_pool(struct ut_pcg *rng, int size, long index, const long *pool, long n_images,
			struct tr_mosaic_plan *plan, struct ut_err *err);

/* One of the four images, as load_image returns it (long side s). */
struct tr_mosaic_tile {
	const struct tr_image *image; /* width, height in 1..s */
	const float *labels;	      /* n rows: class x y w h, normalised */
	int n;
	const struct tr_polygon *segments; /* NULL, or n polygons, normalised xy */
};

/*
 * Paste the tiles on a 2s x 2s canvas of 114 (allocated here into canvas)
 * around (xc, yc) with YOLOv5's placement rules, shift labels by (padw,
 * padh) into pixel xyxy (float32 as numpy computes them), append them to
 * boxes, their segments (if any tile has them) to segs, and clip both to
 * [0, 2s]. boxes and segs may hold rows already; they are appended to.
 */
int tr_mosaic_assemble(const struct tr_mosaic_plan *plan, const struct tr_mosaic_tile tiles[4],
		       struct tr_image *canvas, struct tr_boxes *boxes, struct tr_segments *segs,
		       struct ut_err *err);
/*
 * The part of tile i (width x height, 0 top left .. 3 bottom right) that
 * lands inside canvas_box (x0 y0 x1 y1 on the canvas, exclusive ends), in
 * the tile's own pixels; empty (x1 <= x0 or y1 <= y0) when none does.
 */
void tr_mosaic_tile_box(const struct tr_mosaic_plan *plan, int i, int width, int height,
			const int canvas_box[4], int tile_box[4]);

/* The same onto a canvas the caller provides, already 2s x 2s. */
int tr_mosaic_assemble_into(const struct tr_mosaic_plan *plan, const struct tr_mosaic_tile tiles[4],
			    struct tr_image *canvas, struct tr_boxes *boxes,
			    struct tr_segments *segs, struct ut_err *err);

/*
 * The rest of load_mosaic: copy_paste(p = hyp->copy_paste) when segs holds
 * polygons, then random_perspective with border (plan border, plan border)
 * and 8 draws from rng. canvas is modified by copy_paste; out (allocated
 * here, s x s) gets the warped image; boxes are transformed and filtered in
 * place. When segs holds polygons (one per box, as copy_paste leaves
 * them) the boxes come from the warped polygons and box_candidates keeps
 * 1% of the area (tr_aug_random_perspective_segments_into), as YOLOv5
 * does. The loader passes polygons only when all four tiles have them:
 * YOLOv5 would pair a mixed mosaic's fewer polygons with the first boxes.
 */
int tr_mosaic_finish(struct ut_pcg *rng, const struct tr_mosaic_hyp *hyp,
		     const struct tr_mosaic_plan *plan, struct tr_image *canvas,
		     struct tr_boxes *boxes, struct tr_segments *segs, struct tr_image *out,
		     struct ut_err *err);
/*
 * The same into an out the caller provides, already sized as the canvas
 * plus twice the plan's border on each axis.
 */
int tr_mosaic_finish_into(struct ut_pcg *rng, const struct tr_mosaic_hyp *hyp,
			  const struct tr_mosaic_plan *plan, struct tr_image *canvas,
			  struct tr_boxes *boxes, struct tr_segments *segs, struct tr_image *out,
			  struct ut_err *err);

/*
 * The part of the 2s x 2s canvas (x0 y0 x1 y1, exclusive ends) that
 * tr_mosaic_finish_into will read, from a copy of rng (rng is not
 * advanced). Valid only when copy_paste draws nothing (hyp->copy_paste 0
 * or no segments): the warp's draws then come first. Lets a caller resize
 * only the parts of the tiles inside it (tr_mosaic_tile_box).
 */
void tr_mosaic_read_box(const struct ut_pcg *rng, const struct tr_mosaic_hyp *hyp,
			const struct tr_mosaic_plan *plan, int box[4]);

/*
 * copy_paste(im, labels, segments, p): when p > 0 and there are segments,
 * pick round(p * n) of them at random (random.sample), and for each whose
 * left-right mirrored box covers less than 30% of every current box
 * (bbox_ioa < 0.30, the list grows as boxes are added) append the mirrored
 * box and polygon and mark the polygon, filled, in a mask. Pixels under the
 * mirrored mask take the mirrored image. segs must have boxes->n polygons
 * (one per box) on entry; pixel coordinates.
 */
int tr_copy_paste(struct ut_pcg *rng, double p, struct tr_image *im, struct tr_boxes *boxes,
		  struct tr_segments *segs, struct ut_err *err);

/*
 * bbox_ioa: intersection of `box` with each of n boxes (rows of 5, xyxy at
 * +1) over that box's area + 1e-7, into ioa[n].
 */
void tr_bbox_ioa(const float box[4], const float *rows, int n, double *ioa);

/*
 * Fill a polygon (pixel coordinates, truncated to int as astype(int32))
 * with `value` into a one-channel width x height mask: a pixel is inside
 * when its centre is inside by the even-odd rule or it lies on an edge.
 */
void tr_fill_polygon(uint8_t *mask, int width, int height, const float *xy, int points,
		     uint8_t value);

/*
 * mixup(im, labels, im2, labels2) with ratio r:
 * im = (im * r + im2 * (1 - r)) truncated to uint8, boxes2 appended.
 * Images must have the same size.
 */
int tr_mixup_blend(struct tr_image *im, struct tr_boxes *boxes, const struct tr_image *im2,
		   const struct tr_boxes *boxes2, double r, struct ut_err *err);
/* mixup with r ~ Beta(32, 32) from rng; *ratio (may be NULL) receives r. */
int tr_mixup(struct ut_pcg *rng, struct tr_image *im, struct tr_boxes *boxes,
	     const struct tr_image *im2, const struct tr_boxes *boxes2, double *ratio,
	     struct ut_err *err);

/* np.fliplr / np.flipud with labels (rows of 5, class x y w h normalised). */
void tr_flip_lr(struct tr_image *im, float *labels, int n);
void tr_flip_ud(struct tr_image *im, float *labels, int n);

/* Which flips tr_flip_random made. */
struct tr_flip_done {
	bool ud, lr;
};

/*
 * __getitem__'s flips: flipud if uniform < flipud, then fliplr if
 * uniform < fliplr. Both coins are always drawn, so the stream's position
 * after it does not depend on the hyps.
 */
struct tr_flip_done tr_flip_random(struct ut_pcg *rng, double flipud, double fliplr,
				   struct tr_image *im, float *labels, int n);

/*
 * xyxy2xywhn(w, h, clip=True, eps=1e-3): pixel xyxy rows to normalised
 * xywh in place, boxes first clipped to [0, w - eps] x [0, h - eps].
 */
void tr_boxes_to_xywhn(float *rows, int n, int width, int height);

#endif
