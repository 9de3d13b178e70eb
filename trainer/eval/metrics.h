/*
 * metrics.h - YOLOv5 v7.0's box IoUs, non-maximum suppression and
 * validation metrics (utils/metrics.py, utils/general.py and val.py), in C.
 *
 * These are the pure parts of validation: given the decoded model outputs
 * they give what val.py prints and what train.py calls fitness.
 *
 *	float iouv[TR_N_IOUV];
 *	tr_iouv(iouv);                                  // 0.50:0.05:0.95
 *	void *ws = malloc(tr_nms_workspace_size(n, nc));
 *	struct tr_nms_params nms = tr_nms_val_params(); // conf 0.001, iou 0.6
 *	tr_nms(pred, n, nc, &nms, ws, dets, &n_det);   // per image
 *	tr_process_batch(dets, n_det, labels, n_lab, iouv, TR_N_IOUV, correct);
 *	... gather correct, conf, class of every detection, and label classes
 *	tr_ap_per_class(&stats, &ap, &err);
 *	tr_val_summary(&ap, &summary);
 *	double fit = tr_fitness(&summary);
 *	tr_ap_free(&ap);
 *
 * Arithmetic follows the reference precisely: boxes and IoUs in float32 as
 * torch computes them (the same operation order, no fused multiply-add),
 * AP in float64 as numpy does, with numpy's argsort (introsort, not
 * stable), np.interp's bracketing and np.add.reduce's pairwise sums, so
 * that ties resolve as they do in YOLOv5.
 */
#ifndef TR_METRICS_H
#define TR_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ut.h"

/* The IoU thresholds of val.py: torch.linspace(0.5, 0.95, 10) in float32. */
#define TR_N_IOUV 10
void tr_iouv(float iouv[TR_N_IOUV]);

/* --- IoU --- */

enum tr_iou_kind { TR_IOU, TR_GIOU, TR_DIOU, TR_CIOU };
enum tr_box_format { TR_XYWH, TR_XYXY };

/*
 * utils.metrics.bbox_iou for one pair (eps 1e-7): plain IoU or the
 * generalized, distance or complete IoU. In the xyxy format the heights get
 * + eps, as in YOLOv5.
 */
float tr_bbox_iou(const float box1[4], const float box2[4], enum tr_box_format format,
		  enum tr_iou_kind kind);

/*
 * CIoU of one xywh pair, as tr_bbox_iou(.., TR_XYWH, TR_CIOU), and its
 * gradient: d_box1 = grad_ciou * dCIoU/dbox1 and likewise d_box2 (assigned,
 * not accumulated). As in YOLOv5, alpha = v / (v - iou + 1 + eps) is a
 * constant (computed under no_grad); ties in min/max share the gradient
 * equally and clamp(0) passes it at 0, as torch's autograd does.
 */
float tr_bbox_ciou_backward(const float box1[4], const float box2[4], float grad_ciou,
			    float d_box1[4], float d_box2[4]);

/*
 * utils.metrics.box_iou (eps 1e-7): iou[i * m + j] = IoU of box1[i] and
 * box2[j], both [.,4] xyxy.
 */
void tr_box_iou(const float *box1, size_t n, const float *box2, size_t m, float *iou);

/* --- non-maximum suppression --- */

struct tr_nms_params {
	double conf_thres;  /* compared in float32, as torch does */
	double iou_thres;   /* suppress when IoU > iou_thres */
	bool agnostic;	    /* one class for suppression */
	bool multi_label;   /* every (box, class) with conf > conf_thres */
	int max_det;	    /* keep at most this many per image */
	const int *classes; /* keep only these classes; NULL for all */
	int n_classes;
};

/* val.py's settings: conf 0.001, iou 0.6, multi_label, max_det 300. */
struct tr_nms_params tr_nms_val_params(void);

/* Bytes of workspace tr_nms needs for n predictions of nc classes. */
size_t tr_nms_workspace_size(size_t n, int nc);

/*
 * utils.general.non_max_suppression for one image. pred [n, 5 + nc] holds
 * x, y, w, h (pixels), objectness and class scores (already sigmoided).
 * Candidates: obj > conf; class conf *= obj; with multi_label every
 * (box, class) pair above conf in row-major order, otherwise the best class
 * if above conf; sorted by conf descending, at most 30000; then greedy NMS
 * as torchvision.ops.nms on the boxes offset by cls * 7680 (float32 add;
 * not when agnostic). out [max_det, 6] receives x1, y1, x2, y2, conf, cls
 * in keep order, *n_out how many (at most max_det). workspace holds
 * tr_nms_workspace_size(n, nc) bytes, aligned as malloc aligns.
 */
void tr_nms(const float *pred, size_t n, int nc, const struct tr_nms_params *params,
	    void *workspace, float *out, size_t *n_out);

/* --- matching and AP --- */

/*
 * val.py process_batch: detections [n_det, 6] (xyxy, conf, cls), labels
 * [n_lab, 5] (cls, xyxy). correct[d * n_iouv + k] = 1 when detection d
 * matches a label of its class at IoU >= iouv[k], one detection per label
 * and one label per detection, as YOLOv5 v7.0 picks them (highest IoU first
 * per detection, then per label the lowest detection index).
 * Returns -1 (err set) only when memory runs out.
 */
int tr_process_batch(const float *detections, size_t n_det, const float *labels, size_t n_lab,
		     const float *iouv, int n_iouv, uint8_t *correct, struct ut_err *err);

/* The inputs of ap_per_class: one row per detection over all images. */
struct tr_ap_input {
	const uint8_t *tp;   /* [n, n_iou], 0/1 (process_batch's correct) */
	const double *conf;  /* [n] */
	const int *pred_cls; /* [n] */
	size_t n;
	int n_iou;	       /* columns of tp: 10 in val.py */
	const int *target_cls; /* [n_targets], one per label */
	size_t n_targets;
};

/* ap_per_class's results, one row per class that has labels (malloc'ed). */
struct tr_ap_result {
	size_t nc; /* number of classes with labels */
	int n_iou;
	int *classes;	 /* [nc] ascending (unique_classes) */
	double *tp;	 /* [nc] round(r * n_labels) */
	double *fp;	 /* [nc] round(tp / (p + eps) - tp) */
	double *p;	 /* [nc] precision at the max-F1 confidence */
	double *r;	 /* [nc] recall there */
	double *f1;	 /* [nc] */
	double *ap;	 /* [nc, n_iou] 101-point interpolated AP */
	double *ap50;	 /* [nc] ap[:, 0] */
	double *ap_mean; /* [nc] ap.mean(1), AP@.5:.95 */
	size_t i_best;	 /* index in the 1000-point confidence grid */
};

/*
 * utils.metrics.ap_per_class: AP per class and IoU threshold, and P, R, F1
 * at the confidence where the box-filtered (fraction 0.1) mean F1 peaks.
 * Returns -1 (err set) on bad input or when memory runs out; free the
 * result with tr_ap_free (also safe after a failure).
 */
int tr_ap_per_class(const struct tr_ap_input *in, struct tr_ap_result *out, struct ut_err *err);
void tr_ap_free(struct tr_ap_result *res);

/* val.py's summary: means over classes of p, r, ap[:, 0] and ap.mean(1). */
struct tr_val_summary {
	double mp, mr, map50, map;
};
void tr_val_summary(const struct tr_ap_result *res, struct tr_val_summary *out);

/* utils.metrics.fitness: 0.1 * mAP@.5 + 0.9 * mAP@.5:.95. */
double tr_fitness(const struct tr_val_summary *summary);

#endif
