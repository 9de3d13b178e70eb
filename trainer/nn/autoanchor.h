/*
 * autoanchor.h - YOLOv5 v7.0's AutoAnchor: how well the anchors fit the
 * training labels, and new anchors (k-means, then a genetic evolution) when
 * they fit badly.
 *
 * Everything works on label sizes in pixels of the training image size:
 * each image's original (w, h) is scaled so its long side is imgsz, and the
 * label's normalised (w, h) is multiplied by that. The fit check also
 * multiplies each image by a random scale U(0.9, 1.1), as YOLOv5 does.
 *
 *	float wh[n_labels * 2];
 *	tr_anchor_label_wh(&dataset, 640, scale, wh);       // scale NULL: 1
 *	struct tr_anchor_fit fit;
 *	tr_anchor_check(wh, n_labels, anchors_px, 9, 4.0, NULL, &fit);
 *	// fit.bpr: share of labels with some anchor within anchor_t
 *	// fit.aat: anchors within anchor_t per label
 *
 * tr_anchor_autoanchor does what train.py's check_anchors call does: the
 * check, and when the best possible recall is 0.98 or less, tr_anchor_kmeans
 * and a swap if the new anchors recall more.
 *
 * The metric is the one the loss uses to match anchors: for a label and an
 * anchor, r = wh / anchor per side, x = min over sides of min(r, 1/r); a
 * label fits an anchor when x > 1 / anchor_t. It is computed in float32, as
 * YOLOv5 computes it in torch, so the check matches YOLOv5 bit for bit.
 *
 * All randomness comes from a caller's struct ut_pcg. YOLOv5 draws from
 * numpy's, Python's and scipy's generators, which we cannot reproduce, so
 * k-means starts and mutations differ from YOLOv5's: the algorithm is the
 * same, the draws are not. Runs with the same seed are identical.
 */
#ifndef TR_AUTOANCHOR_H
#define TR_AUTOANCHOR_H

#include <stddef.h>

#include "pcg.h"
#include "ut.h"

/* The labels of a dataset, grouped by image in dataset order. */
struct tr_anchor_dataset {
	size_t n_images;
	const double *shapes_wh;    /* [n_images][2] original image w, h */
	const size_t *label_counts; /* [n_images] labels of each image */
	const float *labels_wh;	    /* [sum of counts][2] normalised w, h */
};

/* Sum of label_counts. */
size_t tr_anchor_label_total(const struct tr_anchor_dataset *dataset);

/*
 * Label sizes in pixels: wh[j] = labels_wh[j] * (imgsz * shape / max side
 * of shape) * scale[image of j], in double and then rounded to float, the
 * order of YOLOv5's numpy expression. scale has n_images entries, or is NULL
 * for no scaling. wh has 2 * tr_anchor_label_total entries.
 */
void tr_anchor_label_wh(const struct tr_anchor_dataset *dataset, int imgsz, const double *scale,
			float *wh);

/* check_anchors' per-image augment scale: n draws of U(0.9, 1.1). */
void tr_anchor_draw_scale(struct ut_pcg *rng, size_t n, double *scale);

struct tr_anchor_fit {
	double bpr; /* best possible recall: labels whose best x > 1/thr, share */
	double aat; /* anchors above threshold: mean count of x > 1/thr */
};

/*
 * The fit of anchors ([n_anchors][2] pixels) to labels wh ([n_labels][2]
 * pixels) with threshold thr = anchor_t. best_ratio (may be NULL) gets each
 * label's best x. bpr and aat are float32 means, as YOLOv5's; both are 0 for
 * no labels.
 */
void tr_anchor_check(const float *wh, size_t n_labels, const float *anchors, size_t n_anchors,
		     double thr, float *best_ratio, struct tr_anchor_fit *fit);

/*
 * kmean_anchors' fitness of anchors: mean over labels of the best x,
 * counting 0 for a label whose best x is not above 1/thr.
 */
double tr_anchor_fitness(const float *wh, size_t n_labels, const float *anchors, size_t n_anchors,
			 double thr);

struct tr_anchor_kmeans_params {
	const float *wh0; /* [n_labels][2] label sizes in pixels, unscaled */
	size_t n_labels;
	size_t n_anchors; /* anchors to make: levels * anchors per level */
	int imgsz;	  /* for the random start when k-means fails */
	double thr;	  /* anchor_t */
	int generations;  /* 1000 in YOLOv5 */
	struct ut_pcg *rng;
	/*
	 * May be NULL; else generations + 1 entries: the fitness of the
	 * k-means anchors, then the best fitness after each generation.
	 */
	double *fitness_history;
};

struct tr_anchor_kmeans_result {
	size_t n_small;	  /* labels with a side under 3 pixels (warned) */
	size_t n_kept;	  /* labels with a side of 2 pixels or more (used) */
	int random_start; /* 1 if k-means could not give n_anchors centroids */
	double fitness;	  /* of the returned anchors */
};

/*
 * kmean_anchors: drop labels with both sides under 2 pixels; k-means with
 * n_anchors centroids on the sizes divided by their standard deviation (30
 * random starts of Lloyd's iterations, the start with the least mean
 * distance kept, as scipy.cluster.vq.kmeans; a start that loses a cluster
 * returns fewer centroids, and if the best one has fewer than n_anchors the
 * start is random sizes in [0, imgsz) instead); then `generations` rounds of
 * mutation: every size multiplied, with probability 0.9, by
 * clip(1 + c * N(0, 1) * 0.1, 0.3, 3.0) with one c ~ U(0, 1) per round,
 * sizes kept >= 2, the mutant kept when its fitness is higher. Writes
 * anchors [n_anchors][2] sorted by area, small first. Fails (err set) on no
 * anchors asked for, no label left after the filter, or out of memory.
 */
int tr_anchor_kmeans(const struct tr_anchor_kmeans_params *params, float *anchors,
		     struct tr_anchor_kmeans_result *result, struct ut_err *err);

struct tr_anchor_auto_params {
	const struct tr_anchor_dataset *dataset;
	int imgsz;
	double thr;	       /* anchor_t */
	const double *scale;   /* [n_images] or NULL to draw from rng */
	int n_levels;	       /* detection layers */
	int per_level;	       /* anchors per layer */
	const double *strides; /* [n_levels] */
	int generations;       /* 1000 in YOLOv5 */
	struct ut_pcg *rng;
};

struct tr_anchor_auto_result {
	struct tr_anchor_fit before; /* fit of the given anchors */
	int kmeans_ran;		     /* before.bpr <= 0.98 */
	double new_bpr;		     /* of the k-means anchors, when run */
	int replaced;		     /* the k-means anchors recalled more */
	int reversed;		     /* level order flipped to follow strides */
	struct tr_anchor_kmeans_result kmeans;
};

/*
 * check_anchors: anchors_px ([n_levels][per_level][2], pixels) in, and out
 * replaced by evolved anchors when the given ones recall 0.98 or less and
 * the new ones recall more (then, if the levels' mean anchor areas run
 * against the strides, the levels are reversed, as check_anchor_order
 * does). Log lines at info level as YOLOv5's.
 */
int tr_anchor_autoanchor(const struct tr_anchor_auto_params *params, float *anchors_px,
			 struct tr_anchor_auto_result *result, struct ut_err *err);

/*
 * Anchors per level to build: the `anchors` hyp rounded half to even as
 * Python's round() does, or yaml_per_level when the hyp is 0, negative or
 * not a number (absent). At least 1: YOLOv5 cannot build a model with 0.
 */
int tr_anchor_count(double hyp_anchors, int yaml_per_level);

/*
 * The anchors YOLOv5 builds when the `anchors` hyp is set: per level the
 * pixel sizes 0, 1, ..., 2 * per_level - 1 as (w, h) pairs. They fit no
 * label, so AutoAnchor replaces them. anchors_px has
 * n_levels * per_level * 2 entries.
 */
void tr_anchor_placeholder(int n_levels, int per_level, float *anchors_px);

#endif
