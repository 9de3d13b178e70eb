/*
 * val.c - YOLOv5 v7.0's val.py run(): eval-mode forward, validation losses,
 * NMS, boxes mapped back to the original images, matching and AP.
 *
 * The statistics val.py keeps as a list of per-image tuples (correct, conf,
 * pred class, label classes) live here as four growing arrays in the same
 * order, so that ap_per_class sees the detections in val.py's order (its
 * sort is not stable: the order decides ties). Box arithmetic is float32 as
 * torch's; Python scalars (the letterbox ratio and padding) are rounded to
 * float before use, as torch does for a float tensor.
 */
#include "val.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* One growable array: n elements in use out of cap, elem bytes each. */
struct val_array {
	void *data;
	size_t n, cap, elem;
};

struct tr_val {
	struct tr_val_opts opts;
	int nc; /* classes of the statistics: 1 with single_cls */
	float iouv[TR_N_IOUV];
	/* the current run */
	long seen, n_batches, n_labels;
	float loss_sum[3];			   /* float32 sums, as val.py's loss tensor */
	double seconds[3];			   /* pre-process, inference, NMS */
	struct val_array tp;			   /* uint8 [n_det][TR_N_IOUV] */
	struct val_array conf;			   /* double [n_det] */
	struct val_array pred_cls;		   /* int [n_det] */
	struct val_array target_cls;		   /* int [n_labels] */
	long *labels_per_class, *images_per_class; /* [nc] */
	/* scratch, grown on demand and kept between runs */
	struct val_array nms_ws; /* bytes */
	struct val_array labels; /* float [nt][5] */
	/* a batch forwarded in chunks: the gathered raw outputs and decoded rows */
	struct val_array raw[TR_MAX_LEVELS]; /* float [n, na, ny, nx, no] */
	struct val_array decoded;	     /* float [n, cells, no] */
	const float *pred[TR_MAX_LEVELS];    /* the batch's raw outputs, wherever they are */
	const float *rows;		     /* the batch's decoded rows */
	float *dets;			     /* [max_det][6] */
	uint8_t *correct;		     /* [max_det][TR_N_IOUV] */
	unsigned char *class_seen;	     /* [nc] per image */
};

static double monotonic_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Room for need elements (contents kept); -1 with err set when memory runs out. */
static int array_reserve(struct val_array *a, size_t need, struct ut_err *err)
{
	if (need <= a->cap)
		return 0;
	size_t cap = a->cap < 64 ? 64 : a->cap;
	while (cap < need)
		cap *= 2;
	void *p = realloc(a->data, cap * a->elem);
	if (p == NULL)
		return ut_err_set(err, "validation: out of memory (%zu x %zu bytes)", cap, a->elem);
	a->data = p;
	a->cap = cap;
	return 0;
}

static void array_free(struct val_array *a)
{
	free(a->data);
	a->data = NULL;
	a->n = a->cap = 0;
}

struct tr_val_opts tr_val_defaults(int nc)
{
	struct tr_val_opts opts = {
	    .nc = nc, .conf_thres = 0.001, .iou_thres = 0.6, .max_det = 300, .single_cls = false};
	return opts;
}

int tr_val_create(const struct tr_val_opts *opts, struct tr_val **out, struct ut_err *err)
{
	*out = NULL;
	if (opts->nc < 1)
		return ut_err_set(err, "validation: nc %d (must be >= 1)", opts->nc);
	if (opts->max_det < 1)
		return ut_err_set(err, "validation: max_det %d (must be >= 1)", opts->max_det);
	if (!(opts->conf_thres >= 0 && opts->conf_thres <= 1))
		return ut_err_set(err, "validation: conf_thres %g (must be in [0, 1])",
				  opts->conf_thres);
	if (!(opts->iou_thres >= 0 && opts->iou_thres <= 1))
		return ut_err_set(err, "validation: iou_thres %g (must be in [0, 1])",
				  opts->iou_thres);
	struct tr_val *val = calloc(1, sizeof(*val));
	if (val == NULL)
		return ut_err_set(err, "validation: out of memory");
	val->opts = *opts;
	val->nc = opts->single_cls ? 1 : opts->nc;
	tr_iouv(val->iouv);
	val->tp.elem = TR_N_IOUV;
	val->conf.elem = sizeof(double);
	val->pred_cls.elem = sizeof(int);
	val->target_cls.elem = sizeof(int);
	val->nms_ws.elem = 1;
	val->labels.elem = 5 * sizeof(float);
	val->decoded.elem = sizeof(float);
	for (int l = 0; l < TR_MAX_LEVELS; l++)
		val->raw[l].elem = sizeof(float);
	size_t max_det = (size_t)opts->max_det;
	val->labels_per_class = calloc((size_t)val->nc, sizeof(long));
	val->images_per_class = calloc((size_t)val->nc, sizeof(long));
	val->class_seen = calloc((size_t)val->nc, 1);
	val->dets = malloc(max_det * 6 * sizeof(float));
	val->correct = malloc(max_det * TR_N_IOUV);
	if (val->labels_per_class == NULL || val->images_per_class == NULL ||
	    val->class_seen == NULL || val->dets == NULL || val->correct == NULL) {
		tr_val_free(val);
		return ut_err_set(err, "validation: out of memory");
	}
	*out = val;
	return 0;
}

void tr_val_free(struct tr_val *val)
{
	if (val == NULL)
		return;
	array_free(&val->tp);
	array_free(&val->conf);
	array_free(&val->pred_cls);
	array_free(&val->target_cls);
	array_free(&val->nms_ws);
	array_free(&val->labels);
	array_free(&val->decoded);
	for (int l = 0; l < TR_MAX_LEVELS; l++)
		array_free(&val->raw[l]);
	free(val->labels_per_class);
	free(val->images_per_class);
	free(val->class_seen);
	free(val->dets);
	free(val->correct);
	free(val);
}

void tr_val_reset(struct tr_val *val)
{
	val->seen = val->n_batches = val->n_labels = 0;
	memset(val->loss_sum, 0, sizeof(val->loss_sum));
	memset(val->seconds, 0, sizeof(val->seconds));
	val->tp.n = val->conf.n = val->pred_cls.n = val->target_cls.n = 0;
	memset(val->labels_per_class, 0, (size_t)val->nc * sizeof(long));
	memset(val->images_per_class, 0, (size_t)val->nc * sizeof(long));
}

/* --- per-image mapping --- */

void tr_val_xywh2xyxy(const float *xywh, size_t n, float *xyxy)
{
	for (size_t i = 0; i < n; i++) {
		const float x = xywh[4 * i], y = xywh[4 * i + 1];
		const float w = xywh[4 * i + 2], h = xywh[4 * i + 3];
		xyxy[4 * i] = x - w / 2;
		xyxy[4 * i + 1] = y - h / 2;
		xyxy[4 * i + 2] = x + w / 2;
		xyxy[4 * i + 3] = y + h / 2;
	}
}

static float clampf(float v, float hi)
{
	/* torch.clamp_(0, hi): max with the lower bound first, then min */
	v = v < 0.0f ? 0.0f : v;
	return v > hi ? hi : v;
}

void tr_val_clip_boxes(float *boxes, size_t n, size_t stride, int h0, int w0)
{
	const float w = (float)w0, h = (float)h0;
	for (size_t i = 0; i < n; i++) {
		float *b = boxes + i * stride;
		b[0] = clampf(b[0], w);
		b[1] = clampf(b[1], h);
		b[2] = clampf(b[2], w);
		b[3] = clampf(b[3], h);
	}
}

void tr_val_scale_boxes(float *boxes, size_t n, size_t stride, const struct tr_batch_image *info)
{
	const float gain = (float)info->ratio_h; /* ratio_pad[0][0] */
	const float pad_x = (float)info->pad_w, pad_y = (float)info->pad_h;
	for (size_t i = 0; i < n; i++) {
		float *b = boxes + i * stride;
		b[0] = (b[0] - pad_x) / gain;
		b[1] = (b[1] - pad_y) / gain;
		b[2] = (b[2] - pad_x) / gain;
		b[3] = (b[3] - pad_y) / gain;
	}
	tr_val_clip_boxes(boxes, n, stride, info->h0, info->w0);
}

size_t tr_val_image_labels(const struct tr_batch *batch, int si, bool single_cls, float *labels)
{
	const float width = (float)batch->width, height = (float)batch->height;
	size_t n = 0;
	for (size_t t = 0; t < batch->nt; t++) {
		const float *row = batch->targets + 6 * t;
		if (row[0] != (float)si)
			continue;
		float *out = labels + 5 * n;
		/* targets[:, 2:] *= (width, height, width, height), then xywh2xyxy */
		const float xywh[4] = {row[2] * width, row[3] * height, row[4] * width,
				       row[5] * height};
		out[0] = single_cls ? 0.0f : row[1];
		tr_val_xywh2xyxy(xywh, 1, out + 1);
		n++;
	}
	tr_val_scale_boxes(labels + 1, n, 5, &batch->info[si]);
	return n;
}

/* A class value as an index in [0, nc), or -1. */
static int class_index(float cls, int nc)
{
	if (!(cls >= 0.0f && cls < (float)nc) || cls != (float)(int)cls)
		return -1;
	return (int)cls;
}

/* Record the label classes of one image (val.py's labels[:, 0]). */
static int add_labels(struct tr_val *val, const float *labels, size_t n_labels, struct ut_err *err)
{
	if (array_reserve(&val->target_cls, val->target_cls.n + n_labels, err) != 0)
		return -1;
	int *target_cls = (int *)val->target_cls.data + val->target_cls.n;
	memset(val->class_seen, 0, (size_t)val->nc);
	for (size_t i = 0; i < n_labels; i++) {
		const int c = class_index(labels[5 * i], val->nc);
		if (c < 0)
			return ut_err_set(err, "validation: label class %g outside 0..%d",
					  (double)labels[5 * i], val->nc - 1);
		target_cls[i] = c;
		val->labels_per_class[c]++;
		if (!val->class_seen[c]) {
			val->class_seen[c] = 1;
			val->images_per_class[c]++;
		}
	}
	val->target_cls.n += n_labels;
	val->n_labels += (long)n_labels;
	return 0;
}

/* Record detections with their matches (val.py's correct, pred[:, 4], pred[:, 5]). */
static int add_detections(struct tr_val *val, const float *detections, size_t n_det,
			  const uint8_t *correct, struct ut_err *err)
{
	const size_t n = val->conf.n + n_det;
	if (array_reserve(&val->tp, n, err) != 0 || array_reserve(&val->conf, n, err) != 0 ||
	    array_reserve(&val->pred_cls, n, err) != 0)
		return -1;
	uint8_t *tp = (uint8_t *)val->tp.data + val->tp.n * TR_N_IOUV;
	double *conf = (double *)val->conf.data + val->conf.n;
	int *pred_cls = (int *)val->pred_cls.data + val->pred_cls.n;
	for (size_t d = 0; d < n_det; d++) {
		const int c = class_index(detections[6 * d + 5], val->nc);
		if (c < 0)
			return ut_err_set(err, "validation: detection class %g outside 0..%d",
					  (double)detections[6 * d + 5], val->nc - 1);
		conf[d] = detections[6 * d + 4];
		pred_cls[d] = c;
	}
	memcpy(tp, correct, n_det * TR_N_IOUV);
	val->tp.n = val->conf.n = val->pred_cls.n = n;
	return 0;
}

int tr_val_add_image(struct tr_val *val, float *detections, size_t n_det, const float *labels,
		     size_t n_labels, const struct tr_batch_image *info, struct ut_err *err)
{
	val->seen++;
	if (n_det > (size_t)val->opts.max_det)
		return ut_err_set(err, "validation: %zu detections (max_det %d)", n_det,
				  val->opts.max_det);
	if (n_det == 0)
		return add_labels(val, labels, n_labels, err);
	if (val->opts.single_cls)
		for (size_t d = 0; d < n_det; d++)
			detections[6 * d + 5] = 0.0f;
	/* predn: the detections in the original image; conf and class stay as they are */
	float *predn = val->dets;
	if (predn != detections)
		memcpy(predn, detections, n_det * 6 * sizeof(float));
	tr_val_scale_boxes(predn, n_det, 6, info);
	memset(val->correct, 0, n_det * TR_N_IOUV);
	if (n_labels > 0 && tr_process_batch(predn, n_det, labels, n_labels, val->iouv, TR_N_IOUV,
					     val->correct, err) != 0)
		return -1;
	if (add_detections(val, predn, n_det, val->correct, err) != 0)
		return -1;
	return add_labels(val, labels, n_labels, err);
}

/* --- one batch --- */

/* compute_loss(train_out, targets)[1] added to the running sums. */
static int batch_loss(struct tr_val *val, const struct tr_model *model,
		      const struct tr_batch *batch, struct tr_loss *loss, struct ut_err *err)
{
	const struct tr_detect *det = &model->detect;
	if (det->nl > TR_LOSS_MAX_LEVELS)
		return ut_err_set(err, "validation: %d detect levels", det->nl);
	struct tr_loss_batch lb = {.bs = batch->n, .targets = batch->targets, .nt = batch->nt};
	for (int l = 0; l < det->nl; l++) {
		lb.ny[l] = batch->height / det->stride[l];
		lb.nx[l] = batch->width / det->stride[l];
		lb.pred[l] = val->pred[l];
		lb.grad[l] = NULL;
	}
	struct tr_loss_result result;
	if (tr_loss_compute(loss, &lb, &result, err) != 0)
		return -1;
	for (int k = 0; k < 3; k++)
		val->loss_sum[k] += result.items[k];
	return 0;
}

/* NMS of image si, then its statistics. */
static int batch_image(struct tr_val *val, const struct tr_model *model,
		       const struct tr_batch *batch, int si, struct ut_err *err)
{
	const struct tr_detect *det = &model->detect;
	const size_t cells = (size_t)det->cells;
	struct tr_nms_params nms = tr_nms_val_params();
	nms.conf_thres = val->opts.conf_thres;
	nms.iou_thres = val->opts.iou_thres;
	nms.max_det = val->opts.max_det;
	nms.agnostic = val->opts.single_cls;
	size_t n_det = 0;
	double t0 = monotonic_seconds();
	tr_nms(val->rows + (size_t)si * cells * (size_t)det->no, cells, det->nc, &nms,
	       val->nms_ws.data, val->dets, &n_det);
	val->seconds[2] += monotonic_seconds() - t0;
	float *labels = val->labels.data;
	const size_t n_labels = tr_val_image_labels(batch, si, val->opts.single_cls, labels);
	return tr_val_add_image(val, val->dets, n_det, labels, n_labels, &batch->info[si], err);
}

/*
 * The eval forward pass of the batch on the backend, in chunks of at most
 * model->max_batch images when the model was planned for fewer (its
 * activations are the biggest memory of a validation): each chunk's bytes
 * go up to model->input_u8 and become floats / 255 there, and its raw
 * level outputs and decoded rows come back into val's arrays, so the loss
 * and NMS see the whole batch as val.py does. BN uses running statistics
 * here, so images do not affect each other. seconds[0] counts the upload
 * and the conversion, seconds[1] the rest.
 */
static int forward_batch(struct tr_val *val, struct tr_model *model, struct tr_backend *backend,
			 const struct tr_batch *batch, struct ut_err *err)
{
	const struct tr_detect *det = &model->detect;
	const struct tr_ops *ops = backend->ops;
	int step = model->max_batch > 0 ? model->max_batch : batch->n;
	size_t image_values = (size_t)3 * batch->height * batch->width;
	for (int first = 0; first < batch->n; first += step) {
		int n = batch->n - first < step ? batch->n - first : step;
		size_t count = (size_t)n * image_values;
		double t0 = monotonic_seconds();
		if (ops->upload(backend, model->input_u8,
				batch->images + (size_t)first * image_values, count, err) != 0 ||
		    ops->images_to_float(backend, model->input_u8, model->input, count, err) != 0)
			return -1;
		val->seconds[0] += monotonic_seconds() - t0;
		if (tr_model_forward(model, backend, model->input, n, batch->height, batch->width,
				     0, err) != 0)
			return -1;
		for (int l = 0; l < det->nl; l++) {
			size_t per = (size_t)det->na * (batch->height / det->stride[l]) *
				     (batch->width / det->stride[l]) * det->no;
			if (array_reserve(&val->raw[l], per * batch->n, err) != 0 ||
			    ops->download(backend, (float *)val->raw[l].data + per * first,
					  det->outputs[l], per * n * sizeof(float), err) != 0)
				return -1;
			val->pred[l] = val->raw[l].data;
		}
		size_t per_rows = (size_t)det->cells * det->no;
		if (array_reserve(&val->decoded, per_rows * batch->n, err) != 0 ||
		    ops->download(backend, (float *)val->decoded.data + per_rows * first,
				  det->decoded, per_rows * n * sizeof(float), err) != 0)
			return -1;
		val->rows = val->decoded.data;
	}
	return 0;
}

int tr_val_batch(struct tr_val *val, struct tr_model *model, struct tr_backend *backend,
		 const struct tr_batch *batch, struct tr_loss *loss, struct ut_err *err)
{
	if (!val->opts.single_cls && model->detect.nc != val->opts.nc)
		return ut_err_set(err, "validation: the model has %d classes, the data %d",
				  model->detect.nc, val->opts.nc);
	if (batch->n < 1)
		return ut_err_set(err, "validation: batch %ld has no image", batch->number);
	double t0 = monotonic_seconds(), before = val->seconds[0];
	if (forward_batch(val, model, backend, batch, err) != 0)
		return -1;
	val->seconds[1] += monotonic_seconds() - t0 - (val->seconds[0] - before);
	val->n_batches++;
	if (loss != NULL && batch_loss(val, model, batch, loss, err) != 0)
		return -1;
	const size_t ws = tr_nms_workspace_size((size_t)model->detect.cells, model->detect.nc);
	if (array_reserve(&val->nms_ws, ws + 1, err) != 0 ||
	    array_reserve(&val->labels, batch->nt + 1, err) != 0)
		return -1;
	for (int si = 0; si < batch->n; si++) {
		if (batch_image(val, model, batch, si, err) != 0) {
			char msg[UT_ERR_LEN];
			snprintf(msg, sizeof(msg), "%s", err->msg);
			return ut_err_set(err, "batch %ld, image %d (item %ld): %s", batch->number,
					  si, batch->info[si].item, msg);
		}
	}
	return 0;
}

/* --- results --- */

static bool any_correct(const struct tr_val *val)
{
	const uint8_t *tp = val->tp.data;
	for (size_t i = 0; i < val->tp.n * TR_N_IOUV; i++)
		if (tp[i])
			return true;
	return false;
}

int tr_val_finish(struct tr_val *val, struct tr_val_results *out, struct ut_err *err)
{
	memset(out, 0, sizeof(*out));
	const size_t nc = (size_t)val->nc;
	out->nc = val->nc;
	out->seen = val->seen;
	out->n_labels = val->n_labels;
	out->maps = calloc(nc, sizeof(double));
	out->labels_per_class = calloc(nc, sizeof(long));
	out->images_per_class = calloc(nc, sizeof(long));
	if (out->maps == NULL || out->labels_per_class == NULL || out->images_per_class == NULL) {
		tr_val_results_free(out);
		return ut_err_set(err, "validation: out of memory");
	}
	memcpy(out->labels_per_class, val->labels_per_class, nc * sizeof(long));
	memcpy(out->images_per_class, val->images_per_class, nc * sizeof(long));
	/* val.py computes metrics only when some detection is correct at some IoU */
	if (any_correct(val)) {
		struct tr_ap_input in = {.tp = val->tp.data,
					 .conf = val->conf.data,
					 .pred_cls = val->pred_cls.data,
					 .n = val->conf.n,
					 .n_iou = TR_N_IOUV,
					 .target_cls = val->target_cls.data,
					 .n_targets = val->target_cls.n};
		if (tr_ap_per_class(&in, &out->ap, err) != 0) {
			tr_val_results_free(out);
			return -1;
		}
		tr_val_summary(&out->ap, &out->summary);
	}
	for (size_t c = 0; c < nc; c++)
		out->maps[c] = out->summary.map;
	for (size_t i = 0; i < out->ap.nc; i++)
		if (out->ap.classes[i] >= 0 && (size_t)out->ap.classes[i] < nc)
			out->maps[out->ap.classes[i]] = out->ap.ap_mean[i];
	/* loss.cpu() / len(dataloader), in float32 */
	for (int k = 0; k < 3 && val->n_batches > 0; k++)
		out->loss[k] = val->loss_sum[k] / (float)val->n_batches;
	for (int k = 0; k < 3 && val->seen > 0; k++)
		out->speed_ms[k] = val->seconds[k] / (double)val->seen * 1e3;
	return 0;
}

void tr_val_results_free(struct tr_val_results *res)
{
	tr_ap_free(&res->ap);
	free(res->maps);
	free(res->labels_per_class);
	free(res->images_per_class);
	res->maps = NULL;
	res->labels_per_class = res->images_per_class = NULL;
}

static void print_row(FILE *out, const char *name, long images, long instances, double p, double r,
		      double map50, double map)
{
	fprintf(out, "%22s%11ld%11ld%11.3g%11.3g%11.3g%11.3g\n", name, images, instances, p, r,
		map50, map);
}

void tr_val_print(const struct tr_val_results *res, const char *const *names, bool per_class,
		  FILE *out)
{
	fprintf(out, "%22s%11s%11s%11s%11s%11s%11s\n", "Class", "Images", "Instances", "P", "R",
		"mAP50", "mAP50-95");
	print_row(out, "all", res->seen, res->n_labels, res->summary.mp, res->summary.mr,
		  res->summary.map50, res->summary.map);
	/* val.py: per-class rows only with more than one class; Images is every image seen */
	if (!per_class || res->nc <= 1)
		return;
	for (size_t i = 0; i < res->ap.nc; i++) {
		const int c = res->ap.classes[i];
		char fallback[24];
		const char *name = names != NULL ? names[c] : NULL;
		if (name == NULL) {
			snprintf(fallback, sizeof(fallback), "%d", c);
			name = fallback;
		}
		const long instances = c >= 0 && c < res->nc ? res->labels_per_class[c] : 0;
		print_row(out, name, res->seen, instances, res->ap.p[i], res->ap.r[i],
			  res->ap.ap50[i], res->ap.ap_mean[i]);
	}
}
