/*
 * test_metrics.c - trainer/eval/metrics against YOLOv5 v7.0's own outputs.
 *
 * Golden files $YE_SOURCE_ROOT/tests/golden/yolov5/{metrics,nms}.{yaml,safetensors}
 * (see tests/golden/README.md): ap_per_class, val.py's summary and
 * fitness, bbox_iou in its four kinds and the CIoU gradient, process_batch
 * and box_iou, and non_max_suppression's three runs. YE_SOURCE_ROOT unset is a
 * failure, not a skip. Each check prints the largest difference it saw.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include <cmocka.h>

#include "yaml_doc.h"

#include "metrics.h"
#include "safetensors.h"

/* --- helpers --- */

static void golden_path(const char *name, char *buf, size_t size)
{
	const char *root = getenv("YE_SOURCE_ROOT");
	if (root == NULL || root[0] == '\0')
		fail_msg("YE_SOURCE_ROOT is not set (it must name the repository root)");
	snprintf(buf, size, "%s/tests/golden/yolov5/%s", root, name);
}

static struct tr_st_file *open_golden(const char *name)
{
	char path[1024];
	golden_path(name, path, sizeof(path));
	struct tr_st_file *file = NULL;
	struct ut_err err;
	if (tr_st_open(path, &file, &err) != 0)
		fail_msg("%s", err.msg);
	return file;
}

/* A tensor that must exist with this dtype and element count. */
static const void *tensor(const struct tr_st_file *file, const char *name, enum tr_st_dtype dtype,
			  size_t numel)
{
	const struct tr_st_tensor *t = tr_st_find(file, name);
	if (t == NULL)
		fail_msg("golden tensor %s is missing", name);
	if (t->dtype != dtype || t->numel != numel)
		fail_msg("golden tensor %s: dtype %s, %zu values; expected %s, %zu", name,
			 tr_st_dtype_name(t->dtype), t->numel, tr_st_dtype_name(dtype), numel);
	return t->data;
}

static size_t rows_of(const struct tr_st_file *file, const char *name)
{
	const struct tr_st_tensor *t = tr_st_find(file, name);
	if (t == NULL || t->ndim < 1)
		fail_msg("golden tensor %s is missing", name);
	return (size_t)t->shape[0];
}

/* Largest |a - b| over n values; fails the test when it exceeds tol. */
static double check_close(const char *what, const double *got, const double *want, size_t n,
			  double tol)
{
	double worst = 0.0;
	size_t at = 0;
	for (size_t i = 0; i < n; i++) {
		double diff = fabs(got[i] - want[i]);
		if (!(diff <= worst)) {
			worst = diff;
			at = i;
		}
	}
	print_message("%-36s max |diff| %.3g over %zu values\n", what, worst, n);
	if (!(worst <= tol))
		fail_msg("%s[%zu]: %.17g, expected %.17g (tolerance %g)", what, at, got[at],
			 want[at], tol);
	return worst;
}

static double check_close_f(const char *what, const float *got, const float *want, size_t n,
			    double tol)
{
	double *g = malloc(n * sizeof(double)), *w = malloc(n * sizeof(double));
	assert_non_null(g);
	assert_non_null(w);
	for (size_t i = 0; i < n; i++) {
		g[i] = got[i];
		w[i] = want[i];
	}
	double worst = check_close(what, g, w, n, tol);
	free(g);
	free(w);
	return worst;
}

/* A scalar of the yaml file at a path of mapping keys (index into a list if ends in '#'). */
struct yaml_doc {
	yaml_document_t doc;
};

static void yaml_load(const char *name, struct yaml_doc *y)
{
	char path[1024];
	golden_path(name, path, sizeof(path));
	test_yaml_load(path, &y->doc);
}

static yaml_node_t *yaml_child(yaml_document_t *doc, yaml_node_t *map, const char *key)
{
	if (map == NULL || map->type != YAML_MAPPING_NODE)
		return NULL;
	for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
	     p++) {
		yaml_node_t *k = yaml_document_get_node(doc, p->key);
		if (k->type == YAML_SCALAR_NODE && strcmp((char *)k->data.scalar.value, key) == 0)
			return yaml_document_get_node(doc, p->value);
	}
	return NULL;
}

/* doc[key1][key2] as a number; index >= 0 takes that item of a list. */
static double yaml_number(struct yaml_doc *y, const char *key1, const char *key2, int index)
{
	yaml_node_t *node = yaml_child(&y->doc, yaml_document_get_root_node(&y->doc), key1);
	if (key2 != NULL)
		node = yaml_child(&y->doc, node, key2);
	if (node != NULL && index >= 0 && node->type == YAML_SEQUENCE_NODE &&
	    node->data.sequence.items.start + index < node->data.sequence.items.top)
		node = yaml_document_get_node(&y->doc, node->data.sequence.items.start[index]);
	if (node == NULL || node->type != YAML_SCALAR_NODE)
		fail_msg("yaml %s/%s[%d] is missing", key1, key2 ? key2 : "", index);
	return strtod((char *)node->data.scalar.value, NULL);
}

/* --- ap_per_class, summary, fitness --- */

static void test_ap_per_class(void **state)
{
	(void)state;
	struct tr_st_file *file = open_golden("metrics.safetensors");
	size_t n = rows_of(file, "ap/conf"), n_t = rows_of(file, "ap/target_cls");
	const uint8_t *tp = tensor(file, "ap/tp", TR_ST_U8, n * 10);
	const double *conf = tensor(file, "ap/conf", TR_ST_F64, n);
	const double *pred_cls_f = tensor(file, "ap/pred_cls", TR_ST_F64, n);
	const double *target_cls_f = tensor(file, "ap/target_cls", TR_ST_F64, n_t);
	int *pred_cls = malloc(n * sizeof(int)), *target_cls = malloc(n_t * sizeof(int));
	assert_non_null(pred_cls);
	assert_non_null(target_cls);
	for (size_t i = 0; i < n; i++)
		pred_cls[i] = (int)pred_cls_f[i];
	for (size_t i = 0; i < n_t; i++)
		target_cls[i] = (int)target_cls_f[i];

	struct tr_ap_input in = {.tp = tp,
				 .conf = conf,
				 .pred_cls = pred_cls,
				 .n = n,
				 .n_iou = 10,
				 .target_cls = target_cls,
				 .n_targets = n_t};
	struct tr_ap_result res;
	struct ut_err err;
	if (tr_ap_per_class(&in, &res, &err) != 0)
		fail_msg("%s", err.msg);
	assert_int_equal(res.nc, 3);
	const int64_t *classes = tensor(file, "ap/unique_classes", TR_ST_I64, 3);
	for (size_t c = 0; c < res.nc; c++)
		assert_int_equal(res.classes[c], classes[c]);
	const double tol = 1e-12;
	check_close("ap/p", res.p, tensor(file, "ap/p", TR_ST_F64, 3), 3, tol);
	check_close("ap/r", res.r, tensor(file, "ap/r", TR_ST_F64, 3), 3, tol);
	check_close("ap/f1", res.f1, tensor(file, "ap/f1", TR_ST_F64, 3), 3, tol);
	check_close("ap/ap", res.ap, tensor(file, "ap/ap", TR_ST_F64, 30), 30, tol);
	check_close("ap/out_tp", res.tp, tensor(file, "ap/out_tp", TR_ST_F64, 3), 3, 0.0);
	check_close("ap/out_fp", res.fp, tensor(file, "ap/out_fp", TR_ST_F64, 3), 3, 0.0);

	struct yaml_doc y;
	yaml_load("metrics.yaml", &y);
	double want_ap50_95[3];
	for (int c = 0; c < 3; c++)
		want_ap50_95[c] = yaml_number(&y, "ap_per_class", "ap50_95", c);
	check_close("yaml ap50_95", res.ap_mean, want_ap50_95, 3, tol);
	struct tr_val_summary sum;
	tr_val_summary(&res, &sum);
	double got[5] = {sum.mp, sum.mr, sum.map50, sum.map, tr_fitness(&sum)};
	double want[5] = {yaml_number(&y, "ap_per_class", "mp", -1),
			  yaml_number(&y, "ap_per_class", "mr", -1),
			  yaml_number(&y, "ap_per_class", "map50", -1),
			  yaml_number(&y, "ap_per_class", "map", -1),
			  yaml_number(&y, "ap_per_class", "fitness([mp,mr,map50,map])", 0)};
	check_close("summary mp mr map50 map fitness", got, want, 5, tol);
	yaml_document_delete(&y.doc);

	tr_ap_free(&res);
	free(pred_cls);
	free(target_cls);
	tr_st_close(file);
}

/* No labels: no classes, summary and fitness 0, as val.py's defaults. */
static void test_ap_empty(void **state)
{
	(void)state;
	uint8_t tp[10] = {1};
	double conf[1] = {0.5};
	int cls[1] = {0};
	struct tr_ap_input in = {.tp = tp,
				 .conf = conf,
				 .pred_cls = cls,
				 .n = 1,
				 .n_iou = 10,
				 .target_cls = NULL,
				 .n_targets = 0};
	struct tr_ap_result res;
	struct ut_err err;
	assert_int_equal(tr_ap_per_class(&in, &res, &err), 0);
	assert_int_equal(res.nc, 0);
	struct tr_val_summary sum;
	tr_val_summary(&res, &sum);
	assert_true(tr_fitness(&sum) == 0.0);
	tr_ap_free(&res);
}

/* --- bbox_iou and the CIoU gradient --- */

static void test_bbox_iou(void **state)
{
	(void)state;
	struct tr_st_file *file = open_golden("metrics.safetensors");
	size_t n = rows_of(file, "iou/box1_xywh");
	const float *b1 = tensor(file, "iou/box1_xywh", TR_ST_F32, n * 4);
	const float *b2 = tensor(file, "iou/box2_xywh", TR_ST_F32, n * 4);
	static const struct {
		const char *name;
		enum tr_iou_kind kind;
	} kinds[] = {{"iou/iou", TR_IOU},
		     {"iou/giou", TR_GIOU},
		     {"iou/diou", TR_DIOU},
		     {"iou/ciou", TR_CIOU}};
	float *got = malloc(n * sizeof(float)), *got_xyxy = malloc(n * sizeof(float));
	float *g1 = malloc(n * 4 * sizeof(float)), *g2 = malloc(n * 4 * sizeof(float));
	assert_non_null(got);
	assert_non_null(got_xyxy);
	assert_non_null(g1);
	assert_non_null(g2);
	for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
		const float *want = tensor(file, kinds[k].name, TR_ST_F32, n);
		for (size_t i = 0; i < n; i++) {
			float a[4], b[4];
			const float *p = b1 + 4 * i, *q = b2 + 4 * i;
			a[0] = p[0] - p[2] / 2, a[1] = p[1] - p[3] / 2;
			a[2] = p[0] + p[2] / 2, a[3] = p[1] + p[3] / 2;
			b[0] = q[0] - q[2] / 2, b[1] = q[1] - q[3] / 2;
			b[2] = q[0] + q[2] / 2, b[3] = q[1] + q[3] / 2;
			got[i] = tr_bbox_iou(p, q, TR_XYWH, kinds[k].kind);
			got_xyxy[i] = tr_bbox_iou(a, b, TR_XYXY, kinds[k].kind);
		}
		char what[64];
		snprintf(what, sizeof(what), "%s (xywh)", kinds[k].name);
		check_close_f(what, got, want, n, 1e-6);
		/* xyxy adds eps to the heights: the same values within 1e-6 */
		snprintf(what, sizeof(what), "%s (xyxy vs xywh golden)", kinds[k].name);
		check_close_f(what, got_xyxy, want, n, 1e-6);
		if (kinds[k].kind == TR_CIOU)
			check_close_f("iou/ciou_xyxy", got_xyxy,
				      tensor(file, "iou/ciou_xyxy", TR_ST_F32, n), n, 1e-6);
	}

	double ciou_sum = 0.0;
	for (size_t i = 0; i < n; i++) {
		/* d/dbox of sum(1 - CIoU): upstream gradient -1 */
		float c =
		    tr_bbox_ciou_backward(b1 + 4 * i, b2 + 4 * i, -1.0f, g1 + 4 * i, g2 + 4 * i);
		assert_true(c == tr_bbox_iou(b1 + 4 * i, b2 + 4 * i, TR_XYWH, TR_CIOU));
		ciou_sum += c;
	}
	check_close_f("iou/grad_box1_of_sum_1_minus_ciou", g1,
		      tensor(file, "iou/grad_box1_of_sum_1_minus_ciou", TR_ST_F32, n * 4), n * 4,
		      1e-6);
	check_close_f("iou/grad_box2_of_sum_1_minus_ciou", g2,
		      tensor(file, "iou/grad_box2_of_sum_1_minus_ciou", TR_ST_F32, n * 4), n * 4,
		      1e-6);
	struct yaml_doc y;
	yaml_load("metrics.yaml", &y);
	double want_sum = yaml_number(&y, "bbox_iou", "ciou_sum", -1);
	check_close("yaml bbox_iou ciou_sum", &ciou_sum, &want_sum, 1, 1e-5);
	yaml_document_delete(&y.doc);
	free(got);
	free(got_xyxy);
	free(g1);
	free(g2);
	tr_st_close(file);
}

/*
 * CIoU of xywh boxes in float64 with alpha given: the function whose
 * gradient tr_bbox_ciou_backward returns (alpha frozen, as under no_grad).
 */
static double ciou_frozen(const double *p, const double *q, double alpha)
{
	double ax1 = p[0] - p[2] / 2, ax2 = p[0] + p[2] / 2, ay1 = p[1] - p[3] / 2,
	       ay2 = p[1] + p[3] / 2;
	double bx1 = q[0] - q[2] / 2, bx2 = q[0] + q[2] / 2, by1 = q[1] - q[3] / 2,
	       by2 = q[1] + q[3] / 2;
	double inter =
	    fmax(fmin(ax2, bx2) - fmax(ax1, bx1), 0) * fmax(fmin(ay2, by2) - fmax(ay1, by1), 0);
	double uni = p[2] * p[3] + q[2] * q[3] - inter + 1e-7;
	double cw = fmax(ax2, bx2) - fmin(ax1, bx1), ch = fmax(ay2, by2) - fmin(ay1, by1);
	double c2 = cw * cw + ch * ch + 1e-7;
	double dx = bx1 + bx2 - ax1 - ax2, dy = by1 + by2 - ay1 - ay2;
	double d = atan(q[2] / q[3]) - atan(p[2] / p[3]);
	double v = 4 / (M_PI * M_PI) * d * d;
	return inter / uni - ((dx * dx + dy * dy) / 4 / c2 + v * alpha);
}

/* The analytic gradient against central differences of ciou_frozen. */
static void test_ciou_gradient_fd(void **state)
{
	(void)state;
	static const float pairs[][2][4] = {
	    {{10.0f, 12.0f, 8.0f, 5.0f}, {12.5f, 11.0f, 6.0f, 9.0f}},  /* overlap */
	    {{10.0f, 12.0f, 8.0f, 5.0f}, {30.0f, 21.0f, 3.0f, 7.0f}},  /* apart */
	    {{10.0f, 10.0f, 20.0f, 10.0f}, {11.0f, 9.0f, 5.0f, 4.0f}}, /* inside */
	};
	for (size_t t = 0; t < sizeof(pairs) / sizeof(pairs[0]); t++) {
		float g[2][4];
		tr_bbox_ciou_backward(pairs[t][0], pairs[t][1], 1.0f, g[0], g[1]);
		double box[2][4];
		for (int k = 0; k < 8; k++)
			box[k / 4][k % 4] = pairs[t][k / 4][k % 4];
		/* alpha = v / (v - iou + 1 + eps) at the point itself */
		double iou = tr_bbox_iou(pairs[t][0], pairs[t][1], TR_XYWH, TR_IOU);
		double d = atan(box[1][2] / box[1][3]) - atan(box[0][2] / box[0][3]);
		double v = 4 / (M_PI * M_PI) * d * d, alpha = v / (v - iou + 1 + 1e-7);
		for (int k = 0; k < 8; k++) {
			const double h = 1e-4;
			double *x = &box[k / 4][k % 4], x0 = *x;
			*x = x0 + h;
			double up = ciou_frozen(box[0], box[1], alpha);
			*x = x0 - h;
			double down = ciou_frozen(box[0], box[1], alpha);
			*x = x0;
			double fd = (up - down) / (2 * h), an = g[k / 4][k % 4];
			if (fabs(fd - an) > 1e-4 * fmax(1.0, fabs(fd)))
				fail_msg(
				    "pair %zu box%d[%d]: analytic %.8g, finite difference %.8g", t,
				    k / 4 + 1, k % 4, an, fd);
		}
	}
}

/* --- process_batch and box_iou --- */

static void test_process_batch(void **state)
{
	(void)state;
	struct tr_st_file *file = open_golden("metrics.safetensors");
	size_t n_det = rows_of(file, "pb/detections"), n_lab = rows_of(file, "pb/labels");
	const float *dets = tensor(file, "pb/detections", TR_ST_F32, n_det * 6);
	const float *labels = tensor(file, "pb/labels", TR_ST_F32, n_lab * 5);
	const float *iouv_want = tensor(file, "pb/iouv", TR_ST_F32, TR_N_IOUV);
	float iouv[TR_N_IOUV];
	tr_iouv(iouv);
	for (int k = 0; k < TR_N_IOUV; k++)
		if (iouv[k] != iouv_want[k])
			fail_msg("iouv[%d] %.9g, expected %.9g", k, iouv[k], iouv_want[k]);

	float lab_boxes[4 * 16], *iou = malloc(n_lab * n_det * sizeof(float));
	assert_non_null(iou);
	assert_true(n_lab <= 16);
	for (size_t l = 0; l < n_lab; l++)
		memcpy(lab_boxes + 4 * l, labels + 5 * l + 1, 4 * sizeof(float));
	float *det_boxes = malloc(n_det * 4 * sizeof(float));
	assert_non_null(det_boxes);
	for (size_t d = 0; d < n_det; d++)
		memcpy(det_boxes + 4 * d, dets + 6 * d, 4 * sizeof(float));
	tr_box_iou(lab_boxes, n_lab, det_boxes, n_det, iou);
	check_close_f("pb/box_iou", iou, tensor(file, "pb/box_iou", TR_ST_F32, n_lab * n_det),
		      n_lab * n_det, 0.0);

	uint8_t *correct = malloc(n_det * TR_N_IOUV);
	assert_non_null(correct);
	struct ut_err err;
	if (tr_process_batch(dets, n_det, labels, n_lab, iouv, TR_N_IOUV, correct, &err) != 0)
		fail_msg("%s", err.msg);
	const uint8_t *want = tensor(file, "pb/correct", TR_ST_U8, n_det * TR_N_IOUV);
	for (size_t i = 0; i < n_det * TR_N_IOUV; i++)
		if (correct[i] != want[i])
			fail_msg("pb/correct[%zu][%zu] = %d, expected %d", i / TR_N_IOUV,
				 i % TR_N_IOUV, correct[i], want[i]);
	print_message("%-36s exact, %zu x %d\n", "pb/correct", n_det, TR_N_IOUV);
	free(correct);
	free(iou);
	free(det_boxes);
	tr_st_close(file);
}

/*
 * YOLOv5 v7.0's quirk: after keeping the best IoU per detection, the label
 * goes to the lowest-index detection, not the best one. Label 0 overlaps
 * detection 0 at IoU 0.6 and detection 1 at IoU 1: detection 0 wins.
 */
static void test_process_batch_order(void **state)
{
	(void)state;
	const float dets[2 * 6] = {0, 0, 10, 6, 0.9f, 1, 0, 0, 10, 10, 0.8f, 1};
	const float labels[5] = {1, 0, 0, 10, 10};
	float iouv[TR_N_IOUV];
	tr_iouv(iouv);
	uint8_t correct[2 * TR_N_IOUV];
	struct ut_err err;
	assert_int_equal(tr_process_batch(dets, 2, labels, 1, iouv, TR_N_IOUV, correct, &err), 0);
	for (int k = 0; k < TR_N_IOUV; k++) {
		assert_int_equal(correct[k], iouv[k] <= 0.6f);
		assert_int_equal(correct[TR_N_IOUV + k], iouv[k] > 0.6f);
	}
}

/* --- NMS --- */

static void run_nms(const char *run, const struct tr_nms_params *params)
{
	struct tr_st_file *file = open_golden("nms.safetensors");
	const struct tr_st_tensor *pt = tr_st_find(file, "prediction");
	assert_non_null(pt);
	size_t bs = (size_t)pt->shape[0], n = (size_t)pt->shape[1];
	int nc = (int)pt->shape[2] - 5;
	const float *pred = tensor(file, "prediction", TR_ST_F32, bs * n * (size_t)(nc + 5));
	void *ws = malloc(tr_nms_workspace_size(n, nc));
	float *out = malloc((size_t)params->max_det * 6 * sizeof(float));
	assert_non_null(ws);
	assert_non_null(out);
	for (size_t b = 0; b < bs; b++) {
		char name[128];
		snprintf(name, sizeof(name), "%s/%zu", run, b);
		size_t want_n = rows_of(file, name);
		const float *want = tensor(file, name, TR_ST_F32, want_n * 6);
		size_t got_n;
		tr_nms(pred + b * n * (size_t)(nc + 5), n, nc, params, ws, out, &got_n);
		if (got_n != want_n)
			fail_msg("%s: %zu detections, expected %zu", name, got_n, want_n);
		for (size_t i = 0; i < got_n; i++)
			for (int k = 0; k < 6; k++)
				if (out[6 * i + k] != want[6 * i + k])
					fail_msg("%s[%zu][%d] = %.9g, expected %.9g (keep order)",
						 name, i, k, out[6 * i + k], want[6 * i + k]);
		print_message("%-36s %zu kept, bit-exact\n", name, got_n);
	}
	free(ws);
	free(out);
	tr_st_close(file);
}

static void test_nms_multilabel(void **state)
{
	(void)state;
	struct tr_nms_params p = tr_nms_val_params();
	run_nms("multilabel", &p);
}

static void test_nms_multilabel_agnostic(void **state)
{
	(void)state;
	struct tr_nms_params p = tr_nms_val_params();
	p.agnostic = true;
	run_nms("multilabel_agnostic", &p);
}

static void test_nms_detect_defaults(void **state)
{
	(void)state;
	struct tr_nms_params p = {.conf_thres = 0.25,
				  .iou_thres = 0.45,
				  .agnostic = false,
				  .multi_label = false,
				  .max_det = 1000};
	run_nms("detect_defaults_maxdet1000", &p);
}

/* max_det caps the keep list and the class filter drops classes. */
static void test_nms_cap_and_classes(void **state)
{
	(void)state;
	/* three far-apart boxes of classes 0, 1, 1 and one overlapping the first */
	const float pred[4 * 7] = {10,	 10,   4,     4,    0.9f, 0.9f, 0.1f, 50,  50,	 4,
				   4,	 0.8f, 0.1f,  0.9f, 90,	  90,	4,    4,   0.7f, 0.1f,
				   0.9f, 10,   10.5f, 4,    4,	  0.6f, 0.9f, 0.1f};
	void *ws = malloc(tr_nms_workspace_size(4, 2));
	assert_non_null(ws);
	float out[6 * 8];
	size_t n_out;
	struct tr_nms_params p = {.conf_thres = 0.25, .iou_thres = 0.45, .max_det = 8};
	tr_nms(pred, 4, 2, &p, ws, out, &n_out);
	assert_int_equal(n_out, 3);
	p.max_det = 2;
	tr_nms(pred, 4, 2, &p, ws, out, &n_out);
	assert_int_equal(n_out, 2);
	const int only1[1] = {1};
	p.max_det = 8;
	p.classes = only1;
	p.n_classes = 1;
	tr_nms(pred, 4, 2, &p, ws, out, &n_out);
	assert_int_equal(n_out, 2);
	assert_true(out[5] == 1.0f && out[11] == 1.0f);
	free(ws);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_ap_per_class),
	    cmocka_unit_test(test_ap_empty),
	    cmocka_unit_test(test_bbox_iou),
	    cmocka_unit_test(test_ciou_gradient_fd),
	    cmocka_unit_test(test_process_batch),
	    cmocka_unit_test(test_process_batch_order),
	    cmocka_unit_test(test_nms_multilabel),
	    cmocka_unit_test(test_nms_multilabel_agnostic),
	    cmocka_unit_test(test_nms_detect_defaults),
	    cmocka_unit_test(test_nms_cap_and_classes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
