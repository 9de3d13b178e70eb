/*
 * val.h - YOLOv5 v7.0's val.py run() as yolo-train calls it after each
 * epoch and as yolo-val runs it: the model in eval mode on rectangular
 * validation batches, validation losses on the raw outputs, NMS (conf
 * 0.001, IoU 0.6, multi-label, 300 detections), boxes mapped back to the
 * original images (scale_boxes), matching at IoU 0.50:0.95 and AP per class.
 *
 *	struct tr_val_opts vo = tr_val_defaults(nc);
 *	struct tr_val *val;
 *	tr_val_create(&vo, &val, &err);
 *	tr_val_reset(val);                        // once per validation run
 *	while (tr_loader_next(loader, &batch, &err) == 1)
 *		tr_val_batch(val, model, backend, batch, loss, &err);  // loss may be NULL
 *	struct tr_val_results res;
 *	tr_val_finish(val, &res, &err);          // res.summary: P R mAP@.5 mAP@.5:.95
 *	tr_val_print(val, &res, names, stdout);  // YOLOv5's table
 *	tr_val_results_free(&res);
 *	tr_val_free(val);
 */
#ifndef TR_VAL_H
#define TR_VAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "loader.h"
#include "loss.h"
#include "metrics.h"
#include "model.h"
#include "ops.h"
#include "ut.h"

struct tr_val_opts {
	int nc;
	double conf_thres; /* 0.001 */
	double iou_thres;  /* 0.6 */
	int max_det;	   /* 300 */
	bool single_cls;   /* predictions and labels all class 0 */
};

/* val.py's defaults for nc classes. */
struct tr_val_opts tr_val_defaults(int nc);

struct tr_val_results {
	struct tr_val_summary summary; /* mp, mr, map50, map */
	double loss[3];		       /* val box, obj, cls: mean over batches (0 without loss) */
	long seen;		       /* images */
	long n_labels;		       /* labels */
	struct tr_ap_result ap;	       /* per class with labels */
	double *maps;		       /* [nc]: AP@.5:.95 per class, summary.map where absent */
	long *labels_per_class;	       /* [nc] */
	long *images_per_class;	       /* [nc] images with a label of the class */
	/* added after the first version: */
	int nc;		    /* entries of maps and the per-class counts: 1 with single_cls */
	double speed_ms[3]; /* per image: pre-process, inference, NMS (val.py's dt) */
};

struct tr_val; /* opaque */

int tr_val_create(const struct tr_val_opts *opts, struct tr_val **out, struct ut_err *err);
void tr_val_free(struct tr_val *val);
/* Forget the statistics of the previous run. */
void tr_val_reset(struct tr_val *val);

/*
 * One batch: forward in eval mode on backend, the model's (in chunks of the
 * model's planned batch when the batch is larger, through the model's input
 * buffers), the raw outputs and decoded rows downloaded, loss (may be NULL)
 * on the raw outputs with the targets, then NMS, scale_boxes to each
 * original image and process_batch.
 */
int tr_val_batch(struct tr_val *val, struct tr_model *model, struct tr_backend *backend,
		 const struct tr_batch *batch, struct tr_loss *loss, struct ut_err *err);

/* ap_per_class and the summary over every batch since the reset. */
int tr_val_finish(struct tr_val *val, struct tr_val_results *out, struct ut_err *err);
void tr_val_results_free(struct tr_val_results *res);

/*
 * val.py's printout: the header, the "all" row (images, instances, P, R,
 * mAP50, mAP50-95) and, when per_class, one row per class with labels.
 */
void tr_val_print(const struct tr_val_results *res, const char *const *names, bool per_class,
		  FILE *out);

/* --- the per-image mapping val.py does, exposed for tests --- */

/* utils.general.xywh2xyxy of n boxes [n, 4] in float32 (out may be xywh). */
void tr_val_xywh2xyxy(const float *xywh, size_t n, float *xyxy);

/*
 * utils.general.scale_boxes with the loader's ratio_pad, then clip_boxes:
 * the first four columns of n rows of `stride` floats (x1, y1, x2, y2 in
 * the letterboxed image) minus the padding, divided by the gain ratio_h,
 * clamped to [0, w0] and [0, h0]. float32 arithmetic with the double
 * ratio and padding rounded to float first, as torch does with Python
 * scalars.
 */
void tr_val_scale_boxes(float *boxes, size_t n, size_t stride, const struct tr_batch_image *info);
/* utils.general.clip_boxes: the same clamping alone. */
void tr_val_clip_boxes(float *boxes, size_t n, size_t stride, int h0, int w0);

/*
 * Image si of a batch as val.py sees it: its labels (targets rows of image
 * si) as [n, 5] rows class, x1, y1, x2, y2 in the original image (targets
 * scaled to pixels of the batch's width and height, xywh2xyxy,
 * scale_boxes); class 0 with single_cls. labels must hold a row per target
 * of the batch. Returns the number of rows.
 */
size_t tr_val_image_labels(const struct tr_batch *batch, int si, bool single_cls, float *labels);

/*
 * Add one image's detections [n_det, 6] (x1, y1, x2, y2, conf, cls in the
 * letterboxed image, as tr_nms gives them; changed in place: class 0 with
 * single_cls) and labels (from tr_val_image_labels) to the statistics, as
 * val.py's per-image loop does: no detections and no labels add nothing
 * but the image count. Classes must lie in [0, nc); err says otherwise.
 */
int tr_val_add_image(struct tr_val *val, float *detections, size_t n_det, const float *labels,
		     size_t n_labels, const struct tr_batch_image *info, struct ut_err *err);

#endif
