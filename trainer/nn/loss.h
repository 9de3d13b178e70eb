/*
 * loss.h - YOLOv5 v7.0's ComputeLoss (utils/loss.py) and its gradient with
 * respect to the raw Detect outputs, written by hand.
 *
 * How to use it:
 *	struct tr_loss_params params = {.nl = 3, .na = 3, .nc = 2,
 *		.anchors = detect_anchors,        // [nl][na][2], grid units
 *		.hyp = {.box = 0.05, .obj = 0.25, .cls = 0.0125, .cls_pw = 1,
 *			.obj_pw = 1, .anchor_t = 4}};
 *	struct tr_loss *loss;
 *	tr_loss_create(&params, 256, &loss, &err);   // room for 256 labels
 *	struct tr_loss_batch batch = {.bs = 16, .targets = labels, .nt = n};
 *	for (int l = 0; l < 3; l++) {               // [bs, na, ny, nx, 5 + nc]
 *		batch.ny[l] = ...; batch.nx[l] = ...;
 *		batch.pred[l] = outputs[l]; batch.grad[l] = grad_outputs[l];
 *	}
 *	struct tr_loss_result result;
 *	tr_loss_compute(loss, &batch, &result, &err);
 *	// result.loss = (lbox + lobj + lcls) * bs, result.items = the three
 *	// parts; grad[l] = d result.loss / d pred[l] (assigned, not added)
 *	tr_loss_free(loss);
 *
 * What YOLOv5 does and this reproduces: targets [nt, 6] rows (image, class,
 * x, y, w, h), xywh normalised to [0, 1]. build_targets scales them to
 * each level's grid, keeps a (target, anchor) pair when the worse of the
 * w and h ratios max(r, 1/r) is below anchor_t, and also assigns it to
 * the neighbour cells left/up/right/down whose side the centre is within
 * half a cell of (g = 0.5). The matches come in YOLOv5's order (offset,
 * then anchor, then target). The box loss is mean(1 - CIoU) per level
 * (CIoU's alpha treated as a constant); the objectness target of a
 * matched cell is its CIoU clamped at 0 (gr = 1; for a cell matched more
 * than once the last match wins); class BCE with pos_weight cls_pw against
 * label-smoothed targets (cp = 1 - eps/2, cn = eps/2; no class loss when
 * nc = 1); objectness BCE with pos_weight obj_pw weighted by the level
 * balance ([4.0, 1.0, 0.4] for nl = 3, else [4.0, 1.0, 0.25, 0.06, 0.02]);
 * both BCEs wrapped in the focal loss (alpha 0.25) when fl_gamma > 0.
 * Autobalance is off. The hyps are used as given: train.py's scaling of
 * box/cls/obj by nl, nc and image size is tr_loss_scale_hyp's job.
 *
 * Numerics: the forward pass follows YOLOv5's float32 arithmetic op by op
 * (the CIoU, the objectness targets, the BCE terms), so tobj matches
 * PyTorch's; only the means are summed in double and rounded to float.
 * The gradient is computed in double from those float values and stored
 * as float. Against the PyTorch goldens: loss and parts within 1e-6
 * relative, gradients within 1e-5 of the largest gradient.
 *
 * Memory: the context holds the build_targets output for its capacity of
 * targets; tr_loss_compute allocates only when a batch has more targets
 * than the capacity (call tr_loss_reserve up front to rule that out).
 */
#ifndef TR_LOSS_H
#define TR_LOSS_H

#include <stddef.h>
#include <stdint.h>

#include "ut.h"

#define TR_LOSS_MAX_LEVELS 5 /* YOLOv5's balance table has five entries */
#define TR_LOSS_MAX_ANCHORS 16

/* The hyperparameters ComputeLoss reads (YOLOv5's names). */
struct tr_loss_hyp {
	double box, obj, cls;	/* gains of the three parts */
	double cls_pw, obj_pw;	/* BCEWithLogits pos_weight */
	double fl_gamma;	/* focal loss gamma; 0 = plain BCE */
	double anchor_t;	/* target/anchor size ratio threshold */
	double label_smoothing; /* eps of smooth_BCE */
};

struct tr_loss_params {
	int nl, na, nc;		/* levels, anchors per level, classes */
	const float *anchors;	/* [nl][na][2] w, h in grid units (copied) */
	struct tr_loss_hyp hyp; /* copied */
};

/*
 * build_targets' output for one level: n matches; tbox [n][4] is the
 * centre's offset from its cell (gxy - gij) and the size, in grid units;
 * anch [n][2] the matched anchor. gj, gi are clamped to the grid.
 */
struct tr_loss_matches {
	size_t n;
	int32_t *b, *a, *gj, *gi, *tcls;
	float *tbox;
	float *anch;
};

/* One batch: predictions (and optionally gradients) of every level. */
struct tr_loss_batch {
	int bs;
	int ny[TR_LOSS_MAX_LEVELS], nx[TR_LOSS_MAX_LEVELS];
	const float *pred[TR_LOSS_MAX_LEVELS]; /* [bs, na, ny, nx, 5 + nc] */
	float *grad[TR_LOSS_MAX_LEVELS];       /* same layout; NULL = none */
	const float *targets;		       /* [nt][6] image, class, x, y, w, h */
	size_t nt;
};

struct tr_loss_result {
	float loss;	/* (lbox + lobj + lcls) * bs */
	float items[3]; /* lbox, lobj, lcls, gains applied, not times bs */
};

struct tr_loss;	   /* opaque */
struct tr_backend; /* ops.h */

/*
 * Check params (1 <= nl <= TR_LOSS_MAX_LEVELS, 1 <= na <=
 * TR_LOSS_MAX_ANCHORS, nc >= 1, positive anchors and anchor_t, finite
 * non-negative gains) and make a context with room for max_targets
 * targets. err names the field at fault.
 */
int tr_loss_create(const struct tr_loss_params *params, size_t max_targets, struct tr_loss **out,
		   struct ut_err *err);
void tr_loss_free(struct tr_loss *loss);

/* Grow the room to at least nt targets (5 * na matches per target per level). */
int tr_loss_reserve(struct tr_loss *loss, size_t nt, struct ut_err *err);

/*
 * YOLOv5's build_targets for the batch's grids and targets (pred and grad
 * are not read). Image indices must lie in [0, bs) and classes in
 * [0, nc); err names the target row otherwise.
 */
int tr_loss_build_targets(struct tr_loss *loss, const struct tr_loss_batch *batch,
			  struct ut_err *err);

/* The matches of the last build_targets or compute; valid until the next. */
const struct tr_loss_matches *tr_loss_matches(const struct tr_loss *loss, int level);

/*
 * build_targets, then the loss, and d loss / d pred[l] into grad[l] for
 * every level whose grad is not NULL (every element assigned).
 */
int tr_loss_compute(struct tr_loss *loss, const struct tr_loss_batch *batch,
		    struct tr_loss_result *result, struct ut_err *err);
/*
 * The same with pred and grad in the device memory of backend: the dense
 * objectness of every cell is the backend's loss_obj_dense op, and only the
 * matched cells' rows cross to the host and back, one at a time (the same
 * numbers as tr_loss_compute on those values).
 */
int tr_loss_compute_on(struct tr_loss *loss, struct tr_backend *backend,
		       const struct tr_loss_batch *batch, struct tr_loss_result *result,
		       struct ut_err *err);

/*
 * train.py's scaling of the gains to the model and image size, in place:
 * box *= 3 / nl; cls *= nc / 80 * 3 / nl; obj *= (imgsz / 640)^2 * 3 / nl.
 */
void tr_loss_scale_hyp(struct tr_loss_hyp *hyp, int nl, int nc, int imgsz);

#endif
