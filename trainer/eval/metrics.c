/*
 * metrics.c - YOLOv5 v7.0's IoUs, NMS, process_batch, ap_per_class and
 * fitness. See metrics.h for the contracts. bbox_iou (IoU, GIoU, DIoU,
 * CIoU and CIoU's gradient) is formula.h's, the one the loss trains with,
 * so the golden tests of this file test the trained formula.
 *
 * Float32 code keeps torch's operation order term by term (C evaluates
 * float expressions in float on the targets we build for, and ISO C mode
 * does not contract to FMA), so results match the reference bit for bit or
 * within an ulp where torch uses its own atan. Float64 code keeps numpy's:
 * np.interp brackets x by the last xp <= x, reductions along a contiguous
 * axis sum pairwise in blocks of 8, np.argsort is an introsort whose order
 * on ties we reproduce.
 */
#include "metrics.h"
#include "formula.h"
#include "npsort.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define IOU_EPS 1e-7f
#define NMS_MAX_WH 7680.0f
#define NMS_MAX_CANDIDATES 30000
#define AP_GRID 1000  /* px = linspace(0, 1, 1000) */
#define AP_INTERP 101 /* compute_ap's 101-point recall grid */
#define AP_EPS 1e-16

void tr_iouv(float iouv[TR_N_IOUV])
{
	/* torch's CPU linspace: start + i*step for the first half, end - ... after */
	const float start = 0.5f, end = 0.95f;
	const float step = (end - start) / (float)(TR_N_IOUV - 1);
	for (int i = 0; i < TR_N_IOUV; i++)
		iouv[i] = i < TR_N_IOUV / 2 ? start + step * (float)i
					    : end - step * (float)(TR_N_IOUV - i - 1);
}

/* --- numpy helpers --- */

/* np.add.reduce along a contiguous axis: pairwise, 8 accumulators per block. */
static double np_sum(const double *a, size_t n)
{
	if (n < 8) {
		double res = 0.0;
		for (size_t i = 0; i < n; i++)
			res += a[i];
		return res;
	}
	if (n <= 128) {
		double r[8];
		size_t i;
		for (int j = 0; j < 8; j++)
			r[j] = a[j];
		for (i = 8; i < n - n % 8; i += 8)
			for (int j = 0; j < 8; j++)
				r[j] += a[i + j];
		double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
		for (; i < n; i++)
			res += a[i];
		return res;
	}
	size_t n2 = n / 2;
	n2 -= n2 % 8;
	return np_sum(a, n2) + np_sum(a + n2, n - n2);
}

/* np.linspace(0, 1, num)[k]: k * step, the last point exactly 1. */
static double np_unit_linspace(size_t k, size_t num)
{
	return k == num - 1 ? 1.0 : (double)k * (1.0 / (double)(num - 1));
}

/*
 * np.interp(x, xp, fp, left, right=fp[-1]) for one x; xp non-decreasing.
 * numpy brackets x by the last j with xp[j] <= x.
 */
static double np_interp(double x, const double *xp, const double *fp, size_t n, double left)
{
	if (x < xp[0])
		return left;
	if (x > xp[n - 1])
		return fp[n - 1];
	size_t lo = 0, hi = n; /* first index with xp > x, in (0, n] */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (x >= xp[mid])
			lo = mid + 1;
		else
			hi = mid;
	}
	size_t j = lo - 1;
	if (j == n - 1 || xp[j] == x)
		return fp[j];
	double slope = (fp[j + 1] - fp[j]) / (xp[j + 1] - xp[j]);
	double y = slope * (x - xp[j]) + fp[j];
	if (isnan(y)) {
		y = slope * (x - xp[j + 1]) + fp[j + 1];
		if (isnan(y) && fp[j] == fp[j + 1])
			y = fp[j];
	}
	return y;
}

/* --- IoU --- */

/*
 * A box in either format as bbox_iou sees it (xywh: torch's x - w / 2,
 * x + w / 2; xyxy: w = x2 - x1, h = y2 - y1 + eps).
 */
static struct tr_f_box to_box(const float b[4], enum tr_box_format format)
{
	if (format == TR_XYWH)
		return tr_f_box_xywh(b);
	struct tr_f_box c = {b[0], b[1], b[2], b[3], b[2] - b[0], b[3] - b[1] + IOU_EPS};
	return c;
}

/*
 * bbox_iou through formula.h's CIoU, the one the loss trains with: IoU,
 * GIoU and DIoU are its intermediate values.
 */
float tr_bbox_iou(const float box1[4], const float box2[4], enum tr_box_format format,
		  enum tr_iou_kind kind)
{
	struct tr_f_ciou s;
	tr_f_ciou_forward(&s, to_box(box1, format), to_box(box2, format));
	switch (kind) {
	case TR_IOU:
		return s.iou;
	case TR_GIOU: {
		float c_area = s.cw * s.ch + IOU_EPS;
		return s.iou - (c_area - s.uni) / c_area;
	}
	case TR_DIOU:
		return s.iou - s.rho2 / s.c2;
	case TR_CIOU:
		break;
	}
	return s.value;
}

float tr_bbox_ciou_backward(const float box1[4], const float box2[4], float grad_ciou,
			    float d_box1[4], float d_box2[4])
{
	struct tr_f_ciou s;
	double g1[4], g2[4];
	tr_f_ciou_forward(&s, tr_f_box_xywh(box1), tr_f_box_xywh(box2));
	tr_f_ciou_backward(&s, grad_ciou, g1, g2);
	for (int k = 0; k < 4; k++) {
		d_box1[k] = (float)g1[k];
		d_box2[k] = (float)g2[k];
	}
	return s.value;
}

static float minf(float a, float b)
{
	return b < a ? b : a;
}

static float maxf(float a, float b)
{
	return b > a ? b : a;
}

void tr_box_iou(const float *box1, size_t n, const float *box2, size_t m, float *iou)
{
	for (size_t i = 0; i < n; i++) {
		const float *a = box1 + 4 * i;
		float area_a = (a[2] - a[0]) * (a[3] - a[1]);
		for (size_t j = 0; j < m; j++) {
			const float *b = box2 + 4 * j;
			float w = maxf(minf(a[2], b[2]) - maxf(a[0], b[0]), 0.0f);
			float h = maxf(minf(a[3], b[3]) - maxf(a[1], b[1]), 0.0f);
			float inter = w * h;
			float area_b = (b[2] - b[0]) * (b[3] - b[1]);
			iou[i * m + j] = inter / (area_a + area_b - inter + IOU_EPS);
		}
	}
}

/* --- NMS --- */

struct tr_nms_params tr_nms_val_params(void)
{
	struct tr_nms_params p = {.conf_thres = 0.001,
				  .iou_thres = 0.6,
				  .agnostic = false,
				  .multi_label = true,
				  .max_det = 300,
				  .classes = NULL,
				  .n_classes = 0};
	return p;
}

/* A candidate detection: x1, y1, x2, y2, conf, cls, and where it came from. */
struct nms_cand {
	float det[6];
	size_t order; /* position in candidate order, the sort's tie-break */
};

/* The workspace: candidates, the offset boxes with areas, suppression flags. */
struct nms_ws {
	struct nms_cand *cand; /* [cap] */
	float *boxes;	       /* [cap, 5]: offset x1, y1, x2, y2, area */
	unsigned char *suppressed;
};

static size_t nms_capacity(size_t n, int nc)
{
	return n * (size_t)(nc > 1 ? nc : 1);
}

size_t tr_nms_workspace_size(size_t n, int nc)
{
	size_t cap = nms_capacity(n, nc);
	return cap * (sizeof(struct nms_cand) + 5 * sizeof(float) + 1) + 16;
}

static struct nms_ws nms_split(void *workspace, size_t cap)
{
	struct nms_ws ws;
	char *p = workspace;
	ws.cand = (struct nms_cand *)(void *)p;
	p += cap * sizeof(struct nms_cand);
	ws.boxes = (float *)(void *)p;
	p += cap * 5 * sizeof(float);
	ws.suppressed = (unsigned char *)p;
	return ws;
}

/* Descending by conf; equal confs keep candidate order (a stable sort). */
static int cand_cmp(const void *pa, const void *pb)
{
	const struct nms_cand *a = pa, *b = pb;
	if (a->det[4] != b->det[4])
		return a->det[4] > b->det[4] ? -1 : 1;
	return a->order < b->order ? -1 : a->order > b->order;
}

static bool class_wanted(const struct tr_nms_params *params, int cls)
{
	if (params->classes == NULL)
		return true;
	for (int k = 0; k < params->n_classes; k++)
		if (params->classes[k] == cls)
			return true;
	return false;
}

/* Candidates of one image in YOLOv5's order (box, then class); returns count. */
static size_t nms_candidates(const float *pred, size_t n, int nc,
			     const struct tr_nms_params *params, struct nms_cand *cand)
{
	const float conf_thres = (float)params->conf_thres;
	const size_t stride = 5 + (size_t)nc;
	const bool multi = params->multi_label && nc > 1;
	size_t count = 0;
	for (size_t i = 0; i < n; i++) {
		const float *x = pred + i * stride;
		float obj = x[4];
		if (!(obj > conf_thres))
			continue;
		float box[4] = {x[0] - x[2] / 2, x[1] - x[3] / 2, x[0] + x[2] / 2, x[1] + x[3] / 2};
		int best = 0;
		float best_conf = 0.0f;
		for (int c = 0; c < nc; c++) {
			float conf = x[5 + c] * obj;
			if (multi) {
				if (conf > conf_thres && class_wanted(params, c)) {
					struct nms_cand *d = &cand[count];
					memcpy(d->det, box, sizeof(box));
					d->det[4] = conf;
					d->det[5] = (float)c;
					d->order = count++;
				}
			} else if (c == 0 || conf > best_conf) {
				best = c;
				best_conf = conf;
			}
		}
		if (!multi && nc > 0 && best_conf > conf_thres && class_wanted(params, best)) {
			struct nms_cand *d = &cand[count];
			memcpy(d->det, box, sizeof(box));
			d->det[4] = best_conf;
			d->det[5] = (float)best;
			d->order = count++;
		}
	}
	return count;
}

void tr_nms(const float *pred, size_t n, int nc, const struct tr_nms_params *params,
	    void *workspace, float *out, size_t *n_out)
{
	struct nms_ws ws = nms_split(workspace, nms_capacity(n, nc));
	size_t count = nms_candidates(pred, n, nc, params, ws.cand);
	*n_out = 0;
	if (count == 0 || params->max_det <= 0)
		return;
	qsort(ws.cand, count, sizeof(*ws.cand), cand_cmp);
	if (count > NMS_MAX_CANDIDATES)
		count = NMS_MAX_CANDIDATES;

	/* boxes + cls * max_wh in float32, as batched NMS does; area without +1 */
	for (size_t i = 0; i < count; i++) {
		const float *d = ws.cand[i].det;
		float offset = d[5] * (params->agnostic ? 0.0f : NMS_MAX_WH);
		float *b = ws.boxes + 5 * i;
		for (int k = 0; k < 4; k++)
			b[k] = d[k] + offset;
		b[4] = (b[2] - b[0]) * (b[3] - b[1]);
		ws.suppressed[i] = 0;
	}

	/* torchvision.ops.nms: greedy in score order, suppress when IoU > thres */
	size_t kept = 0, max_det = (size_t)params->max_det;
	for (size_t i = 0; i < count && kept < max_det; i++) {
		if (ws.suppressed[i])
			continue;
		memcpy(out + 6 * kept++, ws.cand[i].det, 6 * sizeof(float));
		const float *bi = ws.boxes + 5 * i;
		for (size_t j = i + 1; j < count; j++) {
			if (ws.suppressed[j])
				continue;
			const float *bj = ws.boxes + 5 * j;
			float w = maxf(0.0f, minf(bi[2], bj[2]) - maxf(bi[0], bj[0]));
			float h = maxf(0.0f, minf(bi[3], bj[3]) - maxf(bi[1], bj[1]));
			float inter = w * h;
			float ovr = inter / (bi[4] + bj[4] - inter);
			if ((double)ovr > params->iou_thres)
				ws.suppressed[j] = 1;
		}
	}
	*n_out = kept;
}

/* --- process_batch --- */

int tr_process_batch(const float *detections, size_t n_det, const float *labels, size_t n_lab,
		     const float *iouv, int n_iouv, uint8_t *correct, struct ut_err *err)
{
	memset(correct, 0, n_det * (size_t)n_iouv);
	if (n_det == 0 || n_lab == 0)
		return 0;
	size_t pairs = n_lab * n_det;
	float *iou = malloc(pairs * sizeof(*iou));
	float *lab_boxes = malloc(n_lab * 4 * sizeof(*lab_boxes));
	float *det_boxes = malloc(n_det * 4 * sizeof(*det_boxes));
	size_t *match = malloc(pairs * sizeof(*match)); /* l * n_det + d */
	double *match_iou = malloc(pairs * sizeof(*match_iou));
	size_t *order = malloc(pairs * sizeof(*order));
	size_t *det_best = malloc(n_det * sizeof(*det_best)); /* entry in order, or SIZE_MAX */
	unsigned char *label_taken = malloc(n_lab);
	int rc = 0;
	if (!iou || !lab_boxes || !det_boxes || !match || !match_iou || !order || !det_best ||
	    !label_taken) {
		rc = ut_err_set(err, "process_batch: out of memory (%zu x %zu)", n_lab, n_det);
		goto done;
	}
	for (size_t l = 0; l < n_lab; l++)
		memcpy(lab_boxes + 4 * l, labels + 5 * l + 1, 4 * sizeof(float));
	for (size_t d = 0; d < n_det; d++)
		memcpy(det_boxes + 4 * d, detections + 6 * d, 4 * sizeof(float));
	tr_box_iou(lab_boxes, n_lab, det_boxes, n_det, iou);

	for (int k = 0; k < n_iouv; k++) {
		/* torch.where order: label-major */
		size_t count = 0;
		for (size_t l = 0; l < n_lab; l++)
			for (size_t d = 0; d < n_det; d++)
				if (iou[l * n_det + d] >= iouv[k] &&
				    labels[5 * l] == detections[6 * d + 5]) {
					match[count] = l * n_det + d;
					match_iou[count++] = iou[l * n_det + d];
				}
		/* sort by IoU, descending (numpy argsort reversed) */
		ut_np_argsort(match_iou, count, order);
		for (size_t d = 0; d < n_det; d++)
			det_best[d] = SIZE_MAX;
		for (size_t r = 0; r < count; r++) {
			size_t e = match[order[count - 1 - r]];
			if (det_best[e % n_det] == SIZE_MAX)
				det_best[e % n_det] = e;
		}
		/* then the first per label in ascending detection order */
		memset(label_taken, 0, n_lab);
		for (size_t d = 0; d < n_det; d++) {
			if (det_best[d] == SIZE_MAX)
				continue;
			size_t l = det_best[d] / n_det;
			if (!label_taken[l]) {
				label_taken[l] = 1;
				correct[d * (size_t)n_iouv + (size_t)k] = 1;
			}
		}
	}
done:
	free(iou);
	free(lab_boxes);
	free(det_boxes);
	free(match);
	free(match_iou);
	free(order);
	free(det_best);
	free(label_taken);
	return rc;
}

/* --- ap_per_class --- */

/*
 * compute_ap: sentinels (recall 0 -> precision 1, recall 1 -> precision 0),
 * the precision envelope, then np.trapz over np.interp at 101 recalls.
 * mrec and mpre hold n + 2 values each.
 */
static double compute_ap(const double *recall, const double *precision, size_t n, double *mrec,
			 double *mpre)
{
	mrec[0] = 0.0;
	mpre[0] = 1.0;
	for (size_t i = 0; i < n; i++) {
		mrec[i + 1] = recall[i];
		mpre[i + 1] = precision[i];
	}
	mrec[n + 1] = 1.0;
	mpre[n + 1] = 0.0;
	for (size_t i = n + 1; i-- > 0;)
		mpre[i] = fmax(mpre[i], mpre[i + 1]);

	double y[AP_INTERP], area[AP_INTERP - 1];
	for (size_t k = 0; k < AP_INTERP; k++)
		y[k] = np_interp(np_unit_linspace(k, AP_INTERP), mrec, mpre, n + 2, mpre[0]);
	for (size_t k = 0; k + 1 < AP_INTERP; k++) {
		double dx = np_unit_linspace(k + 1, AP_INTERP) - np_unit_linspace(k, AP_INTERP);
		area[k] = dx * (y[k + 1] + y[k]) / 2.0;
	}
	return np_sum(area, AP_INTERP - 1);
}

static int cmp_int(const void *pa, const void *pb)
{
	int a = *(const int *)pa, b = *(const int *)pb;
	return (a > b) - (a < b);
}

void tr_ap_free(struct tr_ap_result *res)
{
	free(res->classes);
	free(res->tp);
	free(res->fp);
	free(res->p);
	free(res->r);
	free(res->f1);
	free(res->ap);
	free(res->ap50);
	free(res->ap_mean);
	memset(res, 0, sizeof(*res));
}

/* Sorted detections: tp [n, n_iou], conf, class; and per-class scratch. */
struct ap_work {
	uint8_t *tp;
	double *conf, *neg_conf, *recall, *precision, *mrec, *mpre;
	int *cls;
	size_t *order;
	double *curve_p, *curve_r; /* [nc, AP_GRID] */
	int *label_count;	   /* [nc] */
};

static void ap_work_free(struct ap_work *w)
{
	free(w->tp);
	free(w->conf);
	free(w->neg_conf);
	free(w->recall);
	free(w->precision);
	free(w->mrec);
	free(w->mpre);
	free(w->cls);
	free(w->order);
	free(w->curve_p);
	free(w->curve_r);
	free(w->label_count);
}

/* Unique label classes (ascending) and their counts into out and w. */
static int ap_classes(const struct tr_ap_input *in, struct tr_ap_result *out, struct ap_work *w)
{
	int *sorted = malloc((in->n_targets + 1) * sizeof(*sorted));
	out->classes = malloc((in->n_targets + 1) * sizeof(*out->classes));
	w->label_count = calloc(in->n_targets + 1, sizeof(*w->label_count));
	if (!sorted || !out->classes || !w->label_count) {
		free(sorted);
		return -1;
	}
	if (in->n_targets > 0)
		memcpy(sorted, in->target_cls, in->n_targets * sizeof(*sorted));
	qsort(sorted, in->n_targets, sizeof(*sorted), cmp_int);
	size_t nc = 0;
	for (size_t i = 0; i < in->n_targets; i++) {
		if (nc == 0 || sorted[i] != out->classes[nc - 1])
			out->classes[nc++] = sorted[i];
		w->label_count[nc - 1]++;
	}
	free(sorted);
	out->nc = nc;
	return 0;
}

/* P and R curves on the confidence grid and AP per threshold for class ci. */
static void ap_one_class(const struct tr_ap_input *in, struct tr_ap_result *out, struct ap_work *w,
			 size_t ci)
{
	const size_t n_iou = (size_t)in->n_iou;
	const double n_l = (double)w->label_count[ci];
	size_t n_p = 0;
	for (size_t i = 0; i < in->n; i++)
		if (w->cls[i] == out->classes[ci])
			w->neg_conf[n_p++] = -w->conf[i];
	if (n_p == 0)
		return;
	for (size_t j = 0; j < n_iou; j++) {
		double tpc = 0.0, fpc = 0.0;
		size_t k = 0;
		for (size_t i = 0; i < in->n; i++) {
			if (w->cls[i] != out->classes[ci])
				continue;
			double t = w->tp[i * n_iou + j] ? 1.0 : 0.0;
			tpc += t;
			fpc += 1.0 - t;
			w->recall[j * n_p + k] = tpc / (n_l + AP_EPS);
			w->precision[j * n_p + k] = tpc / (tpc + fpc);
			k++;
		}
	}
	double *cp = w->curve_p + ci * AP_GRID, *cr = w->curve_r + ci * AP_GRID;
	for (size_t g = 0; g < AP_GRID; g++) {
		double x = -np_unit_linspace(g, AP_GRID);
		cr[g] = np_interp(x, w->neg_conf, w->recall, n_p, 0.0);
		cp[g] = np_interp(x, w->neg_conf, w->precision, n_p, 1.0);
	}
	for (size_t j = 0; j < n_iou; j++)
		out->ap[ci * n_iou + j] =
		    compute_ap(w->recall + j * n_p, w->precision + j * n_p, n_p, w->mrec, w->mpre);
}

/*
 * The grid index where smooth(mean over classes of F1, 0.1) peaks: a box
 * filter of 101 points with edge padding, first maximum.
 */
static size_t best_f1_index(const struct ap_work *w, size_t nc)
{
	enum { HALF = 50, WIDTH = 2 * HALF + 1 };
	double mean[AP_GRID], padded[AP_GRID + 2 * HALF];
	for (size_t g = 0; g < AP_GRID; g++) {
		double sum = 0.0;
		for (size_t c = 0; c < nc; c++) {
			double p = w->curve_p[c * AP_GRID + g], r = w->curve_r[c * AP_GRID + g];
			sum += 2 * p * r / (p + r + AP_EPS);
		}
		mean[g] = sum / (double)nc;
	}
	for (size_t k = 0; k < AP_GRID + 2 * HALF; k++)
		padded[k] = k < HALF		  ? mean[0]
			    : k >= AP_GRID + HALF ? mean[AP_GRID - 1]
						  : mean[k - HALF];
	const double weight = 1.0 / WIDTH;
	size_t best = 0;
	double best_value = -INFINITY;
	for (size_t g = 0; g < AP_GRID; g++) {
		double value = 0.0;
		for (size_t k = 0; k < WIDTH; k++)
			value += padded[g + k] * weight;
		if (value > best_value) {
			best_value = value;
			best = g;
		}
	}
	return best;
}

int tr_ap_per_class(const struct tr_ap_input *in, struct tr_ap_result *out, struct ut_err *err)
{
	memset(out, 0, sizeof(*out));
	if (in->n_iou <= 0)
		return ut_err_set(err, "ap_per_class: n_iou %d must be positive", in->n_iou);
	const size_t n = in->n, n_iou = (size_t)in->n_iou;
	out->n_iou = in->n_iou;
	struct ap_work w = {0};
	int rc = 0;
	if (ap_classes(in, out, &w) != 0)
		goto oom;
	const size_t nc = out->nc, rows = nc > 0 ? nc : 1;
	w.tp = malloc(n * n_iou + 1);
	w.conf = malloc((n + 1) * sizeof(double));
	w.neg_conf = malloc((n + 1) * sizeof(double));
	w.recall = malloc((n * n_iou + 1) * sizeof(double));
	w.precision = malloc((n * n_iou + 1) * sizeof(double));
	w.mrec = malloc((n + 2) * sizeof(double));
	w.mpre = malloc((n + 2) * sizeof(double));
	w.cls = malloc((n + 1) * sizeof(int));
	w.order = malloc((n + 1) * sizeof(size_t));
	w.curve_p = calloc(rows * AP_GRID, sizeof(double));
	w.curve_r = calloc(rows * AP_GRID, sizeof(double));
	out->tp = calloc(rows, sizeof(double));
	out->fp = calloc(rows, sizeof(double));
	out->p = calloc(rows, sizeof(double));
	out->r = calloc(rows, sizeof(double));
	out->f1 = calloc(rows, sizeof(double));
	out->ap = calloc(rows * n_iou, sizeof(double));
	out->ap50 = calloc(rows, sizeof(double));
	out->ap_mean = calloc(rows, sizeof(double));
	if (!w.tp || !w.conf || !w.neg_conf || !w.recall || !w.precision || !w.mrec || !w.mpre ||
	    !w.cls || !w.order || !w.curve_p || !w.curve_r || !out->tp || !out->fp || !out->p ||
	    !out->r || !out->f1 || !out->ap || !out->ap50 || !out->ap_mean)
		goto oom;

	/* np.argsort(-conf) */
	for (size_t i = 0; i < n; i++)
		w.neg_conf[i] = -in->conf[i];
	ut_np_argsort(w.neg_conf, n, w.order);
	for (size_t i = 0; i < n; i++) {
		size_t o = w.order[i];
		memcpy(w.tp + i * n_iou, in->tp + o * n_iou, n_iou);
		w.conf[i] = in->conf[o];
		w.cls[i] = in->pred_cls[o];
	}
	if (nc == 0)
		goto done;
	for (size_t ci = 0; ci < nc; ci++)
		ap_one_class(in, out, &w, ci);

	size_t best = best_f1_index(&w, nc);
	out->i_best = best;
	for (size_t ci = 0; ci < nc; ci++) {
		double p = w.curve_p[ci * AP_GRID + best], r = w.curve_r[ci * AP_GRID + best];
		out->p[ci] = p;
		out->r[ci] = r;
		out->f1[ci] = 2 * p * r / (p + r + AP_EPS);
		out->tp[ci] = nearbyint(r * (double)w.label_count[ci]);
		out->fp[ci] = nearbyint(out->tp[ci] / (p + AP_EPS) - out->tp[ci]);
		out->ap50[ci] = out->ap[ci * n_iou];
		out->ap_mean[ci] = np_sum(out->ap + ci * n_iou, n_iou) / (double)n_iou;
	}
	goto done;
oom:
	rc = ut_err_set(err, "ap_per_class: out of memory (%zu detections)", n);
	tr_ap_free(out);
done:
	ap_work_free(&w);
	return rc;
}

void tr_val_summary(const struct tr_ap_result *res, struct tr_val_summary *out)
{
	memset(out, 0, sizeof(*out));
	const size_t nc = res->nc;
	if (nc == 0)
		return;
	out->mp = np_sum(res->p, nc) / (double)nc;
	out->mr = np_sum(res->r, nc) / (double)nc;
	out->map50 = np_sum(res->ap50, nc) / (double)nc;
	out->map = np_sum(res->ap_mean, nc) / (double)nc;
}

double tr_fitness(const struct tr_val_summary *s)
{
	/* (x * [0, 0, 0.1, 0.9]).sum(): four terms added left to right */
	return ((0.0 * s->mp + 0.0 * s->mr) + 0.1 * s->map50) + 0.9 * s->map;
}
