/*
 * test_loss.c - YOLOv5's ComputeLoss (trainer/nn/loss.c) against YOLOv5 v7.0:
 * the four loss_variants cases (random predictions; base, focal loss, pos
 * weights with label smoothing, anchor_t 2.5) and loss_v5n_nc2 (the
 * yolov5n nc=2 train outputs of model_v5n_nc2): build_targets exactly,
 * loss and parts within 1e-6 relative, d loss / d pred within 1e-5 of the
 * largest gradient. Then the analytic gradient against central finite
 * differences of an independent double-precision loss, and the errors.
 *
 * Golden: tests/golden/yolov5/loss_*. Needs YE_SOURCE_ROOT; fails when it is unset.
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

#include "loss.h"
#include "ops.h"
#include "pcg.h"
#include "safetensors.h"
#include "ut.h"

#define LOSS_REL_TOL 1e-6
#define TBOX_TOL 1e-6
#define GRAD_SCALED_TOL 1e-5

/* ---- golden files ---- */

static struct tr_st_file *open_golden(const char *name)
{
	char path[1024];
	const char *root = getenv("YE_SOURCE_ROOT");
	if (root == NULL || *root == '\0')
		fail_msg("YE_SOURCE_ROOT is not set");
	assert_true(snprintf(path, sizeof(path), "%s/tests/golden/yolov5/%s.safetensors", root,
			     name) < (int)sizeof(path));
	struct tr_st_file *file = NULL;
	struct ut_err err = {{0}};
	if (tr_st_open(path, &file, &err))
		fail_msg("%s", err.msg);
	return file;
}

static const struct tr_st_tensor *golden(const struct tr_st_file *file, const char *prefix,
					 const char *name, enum tr_st_dtype dtype)
{
	char key[256];
	snprintf(key, sizeof(key), "%s%s", prefix, name);
	const struct tr_st_tensor *t = tr_st_find(file, key);
	if (t == NULL)
		fail_msg("golden tensor %s is missing", key);
	if (t->dtype != dtype)
		fail_msg("golden tensor %s has dtype %s", key, tr_st_dtype_name(t->dtype));
	return t;
}

/* The seed-0 yolov5n nc=2 Detect anchors, grid units [3][3][2]. */
static const float *golden_anchors(const struct tr_st_file *model)
{
	const struct tr_st_tensor *t = golden(model, "", "model.24.anchors", TR_ST_F32);
	assert_int_equal(t->numel, 18);
	return t->data;
}

/* ---- comparisons ---- */

static void check_matches(const struct tr_loss *loss, const struct tr_st_file *file,
			  const char *prefix, int nl)
{
	for (int l = 0; l < nl; l++) {
		char name[64];
		const struct tr_loss_matches *m = tr_loss_matches(loss, l);
		assert_non_null(m);
		const char *int_names[5] = {"b", "a", "gj", "gi", "tcls"};
		const int32_t *ints[5] = {m->b, m->a, m->gj, m->gi, m->tcls};
		for (int k = 0; k < 5; k++) {
			snprintf(name, sizeof(name), "build_targets/%d/%s", l, int_names[k]);
			const struct tr_st_tensor *t = golden(file, prefix, name, TR_ST_I64);
			if (t->numel != m->n)
				fail_msg("%s%s: %zu matches, golden %zu", prefix, name, m->n,
					 t->numel);
			const int64_t *want = t->data;
			for (size_t i = 0; i < m->n; i++)
				if (ints[k][i] != want[i])
					fail_msg("%s%s[%zu] = %d, golden %lld", prefix, name, i,
						 ints[k][i], (long long)want[i]);
		}
		const char *float_names[2] = {"tbox", "anch"};
		const float *floats[2] = {m->tbox, m->anch};
		for (int k = 0; k < 2; k++) {
			snprintf(name, sizeof(name), "build_targets/%d/%s", l, float_names[k]);
			const struct tr_st_tensor *t = golden(file, prefix, name, TR_ST_F32);
			size_t width = k == 0 ? 4 : 2;
			assert_int_equal(t->numel, m->n * width);
			const float *want = t->data;
			for (size_t i = 0; i < m->n * width; i++)
				if (fabs((double)floats[k][i] - want[i]) > TBOX_TOL)
					fail_msg("%s%s[%zu] = %.9g, golden %.9g", prefix, name, i,
						 (double)floats[k][i], (double)want[i]);
		}
	}
}

static double rel_error(double got, double want)
{
	return fabs(got - want) / fmax(fabs(want), 1e-30);
}

/* max |got - want| / max |want| */
static double scaled_error(const float *got, const float *want, size_t n)
{
	double diff = 0.0, scale = 0.0;
	for (size_t i = 0; i < n; i++) {
		diff = fmax(diff, fabs((double)got[i] - want[i]));
		scale = fmax(scale, fabs((double)want[i]));
	}
	return diff / scale;
}

/*
 * tr_loss_compute_on with pred and grad in a CPU backend's memory (the
 * dense objectness op, the matched rows crossing one at a time): the same
 * loss and gradient bits as tr_loss_compute on the host arrays.
 */
static void expect_same_on_backend(struct tr_loss *loss, const struct tr_loss_batch *host,
				   const struct tr_loss_result *want)
{
	struct ut_err err = {{0}};
	struct tr_backend *be = NULL;
	if (tr_cpu_backend_create(1, &be, &err))
		fail_msg("%s", err.msg);
	struct tr_loss_batch on = *host;
	void *pred[3], *grad[3];
	size_t bytes[3];
	for (int l = 0; l < 3; l++) {
		bytes[l] = (size_t)host->bs * 3 * host->ny[l] * host->nx[l] * 7 * sizeof(float);
		if (be->ops->alloc(be, bytes[l], &pred[l], &err) ||
		    be->ops->alloc(be, bytes[l], &grad[l], &err) ||
		    be->ops->upload(be, pred[l], host->pred[l], bytes[l], &err) ||
		    be->ops->memset(be, grad[l], 0x7f, bytes[l], &err))
			fail_msg("%s", err.msg);
		on.pred[l] = pred[l];
		on.grad[l] = grad[l];
	}
	struct tr_loss_result got;
	if (tr_loss_compute_on(loss, be, &on, &got, &err))
		fail_msg("%s", err.msg);
	assert_memory_equal(&got, want, sizeof(got));
	for (int l = 0; l < 3; l++) {
		float *copy = malloc(bytes[l]);
		assert_non_null(copy);
		if (be->ops->download(be, copy, grad[l], bytes[l], &err))
			fail_msg("%s", err.msg);
		assert_memory_equal(copy, host->grad[l], bytes[l]);
		free(copy);
		be->ops->free(be, pred[l]);
		be->ops->free(be, grad[l]);
	}
	tr_backend_destroy(be);
}

struct golden_case {
	const char *file;   /* golden case with targets, loss, build_targets */
	const char *prefix; /* "base/" or "" */
	const char *pred;   /* prefix of pred/i in pred_file */
	const char *grad;   /* name of the gradient, after prefix */
	struct tr_loss_hyp hyp;
};

static void run_golden(const struct golden_case *gc)
{
	struct tr_st_file *model = open_golden("model_v5n_nc2");
	struct tr_st_file *file = open_golden(gc->file);
	int use_model_pred = strcmp(gc->file, "loss_v5n_nc2") == 0;
	const struct tr_st_file *pred_file = use_model_pred ? model : file;
	struct tr_loss_params params = {.nl = 3, .na = 3, .nc = 2, .hyp = gc->hyp};
	params.anchors = golden_anchors(model);
	struct tr_loss *loss = NULL;
	struct ut_err err = {{0}};
	if (tr_loss_create(&params, 4, &loss, &err))
		fail_msg("%s", err.msg);

	const struct tr_st_tensor *targets = golden(file, "", "targets", TR_ST_F32);
	struct tr_loss_batch batch = {.targets = targets->data, .nt = targets->shape[0]};
	float *grads[3];
	const struct tr_st_tensor *want_grad[3];
	for (int l = 0; l < 3; l++) {
		char name[64];
		snprintf(name, sizeof(name), "%s/%d", gc->pred, l);
		const struct tr_st_tensor *p = golden(pred_file, "", name, TR_ST_F32);
		assert_int_equal(p->ndim, 5);
		assert_int_equal(p->shape[4], 7);
		batch.bs = (int)p->shape[0];
		batch.ny[l] = (int)p->shape[2];
		batch.nx[l] = (int)p->shape[3];
		batch.pred[l] = p->data;
		grads[l] = malloc(p->nbytes);
		assert_non_null(grads[l]);
		batch.grad[l] = grads[l];
		snprintf(name, sizeof(name), "%s/%d", gc->grad, l);
		want_grad[l] = golden(file, gc->prefix, name, TR_ST_F32);
		assert_int_equal(want_grad[l]->numel, p->numel);
	}

	struct tr_loss_result result;
	if (tr_loss_compute(loss, &batch, &result, &err))
		fail_msg("%s", err.msg);
	check_matches(loss, file, gc->prefix, 3);

	const float *want_loss = golden(file, gc->prefix, "loss", TR_ST_F32)->data;
	const float *want_items = golden(file, gc->prefix, "loss_items", TR_ST_F32)->data;
	double worst_loss = rel_error(result.loss, want_loss[0]);
	for (int k = 0; k < 3; k++)
		worst_loss = fmax(worst_loss, rel_error(result.items[k], want_items[k]));
	double worst_grad = 0.0;
	for (int l = 0; l < 3; l++)
		worst_grad = fmax(worst_grad,
				  scaled_error(grads[l], want_grad[l]->data, want_grad[l]->numel));
	print_message("%s %s: loss %.9g (golden %.9g), worst relative error of loss and parts "
		      "%.2e, worst scaled gradient error %.2e\n",
		      gc->file, gc->prefix, (double)result.loss, (double)want_loss[0], worst_loss,
		      worst_grad);
	assert_true(worst_loss <= LOSS_REL_TOL);
	assert_true(worst_grad <= GRAD_SCALED_TOL);
	expect_same_on_backend(loss, &batch, &result);

	for (int l = 0; l < 3; l++)
		free(grads[l]);
	tr_loss_free(loss);
	tr_st_close(file);
	tr_st_close(model);
}

/* hyp.scratch-low scaled for nl = 3, nc = 2, imgsz = 128 (loss_variants). */
static struct tr_loss_hyp variants_base(void)
{
	struct tr_loss_hyp hyp = {
	    .box = 0.05, .obj = 1.0, .cls = 0.5, .cls_pw = 1.0, .obj_pw = 1.0, .anchor_t = 4.0};
	tr_loss_scale_hyp(&hyp, 3, 2, 128);
	return hyp;
}

static void test_variant_base(void **state)
{
	(void)state;
	struct golden_case gc = {"loss_variants", "base/", "pred", "grad_pred", variants_base()};
	run_golden(&gc);
}

static void test_variant_fl_gamma(void **state)
{
	(void)state;
	struct golden_case gc = {"loss_variants", "a_fl_gamma/", "pred", "grad_pred",
				 variants_base()};
	gc.hyp.fl_gamma = 1.5;
	run_golden(&gc);
}

static void test_variant_pw_smooth(void **state)
{
	(void)state;
	struct golden_case gc = {"loss_variants", "b_pw_smooth/", "pred", "grad_pred",
				 variants_base()};
	gc.hyp.cls_pw = 2.0;
	gc.hyp.obj_pw = 0.5;
	gc.hyp.label_smoothing = 0.1;
	run_golden(&gc);
}

static void test_variant_anchor_t(void **state)
{
	(void)state;
	struct golden_case gc = {"loss_variants", "c_anchor_t/", "pred", "grad_pred",
				 variants_base()};
	gc.hyp.anchor_t = 2.5;
	run_golden(&gc);
}

/* The yolov5n nc=2 train outputs at imgsz 320 (box 0.05, cls 0.0125, obj 0.25). */
static void test_v5n_nc2(void **state)
{
	(void)state;
	struct golden_case gc = {
	    "loss_v5n_nc2",
	    "",
	    "train_out",
	    "grad_p",
	    {.box = 0.05, .obj = 1.0, .cls = 0.5, .cls_pw = 1.0, .obj_pw = 1.0, .anchor_t = 4.0}};
	tr_loss_scale_hyp(&gc.hyp, 3, 2, 320);
	run_golden(&gc);
}

/* train.py's gain scaling, to the last bit of the golden yaml values. */
static void test_scale_hyp(void **state)
{
	(void)state;
	struct tr_loss_hyp hyp = variants_base();
	assert_true(hyp.box == 0.05);
	assert_true(hyp.cls == 0.012500000000000002);
	assert_true(hyp.obj == 0.04000000000000001);
	hyp = (struct tr_loss_hyp){.box = 0.05, .obj = 1.0, .cls = 0.5};
	tr_loss_scale_hyp(&hyp, 3, 2, 320);
	assert_true(hyp.obj == 0.25);
}

/* ---- finite differences against an independent double-precision loss ---- */

struct fd_case {
	struct tr_loss_params params;
	struct tr_loss_batch batch;
	float anchors[2 * 3 * 2];
	float targets[6 * 6];
	float *pred_f[2];
	double *pred[2];
	double *tobj[2];  /* frozen at the base point (detached in YOLOv5) */
	double *alpha[2]; /* frozen CIoU alpha per match (no_grad in YOLOv5) */
	size_t numel[2];
};

static double uniform(uint64_t *state)
{
	*state = *state * 6364136223846793005ULL + 1442695040888963407ULL;
	return (double)(*state >> 11) / 9007199254740992.0;
}

static double bce_ref(double x, double t, double pw, double gamma)
{
	double softplus = x > 0 ? log1p(exp(-x)) : -x + log1p(exp(x)); /* log(1 + e^-x) */
	double loss = (1.0 - t) * x + (1.0 + (pw - 1.0) * t) * softplus;
	if (gamma > 0.0) {
		double p = 1.0 / (1.0 + exp(-x));
		double p_t = t * p + (1.0 - t) * (1.0 - p);
		loss *= (t * 0.25 + (1.0 - t) * 0.75) * pow(1.0 - p_t, gamma);
	}
	return loss;
}

/* CIoU of raw outputs ps (xywh logits) against tbox; *alpha = its alpha. */
static double ciou_ref(const double *ps, const float *anch, const float *tbox,
		       const double *alpha_in, double *alpha_out)
{
	double s[4];
	for (int k = 0; k < 4; k++)
		s[k] = 1.0 / (1.0 + exp(-ps[k]));
	double x1 = 2 * s[0] - 0.5, y1 = 2 * s[1] - 0.5;
	double w1 = 4 * s[2] * s[2] * anch[0], h1 = 4 * s[3] * s[3] * anch[1];
	double x2 = tbox[0], y2 = tbox[1], w2 = tbox[2], h2 = tbox[3];
	double l1 = x1 - w1 / 2, r1 = x1 + w1 / 2, t1 = y1 - h1 / 2, d1 = y1 + h1 / 2;
	double l2 = x2 - w2 / 2, r2 = x2 + w2 / 2, t2 = y2 - h2 / 2, d2 = y2 + h2 / 2;
	double inter = fmax(fmin(r1, r2) - fmax(l1, l2), 0) * fmax(fmin(d1, d2) - fmax(t1, t2), 0);
	double iou = inter / (w1 * h1 + w2 * h2 - inter + 1e-7);
	double cw = fmax(r1, r2) - fmin(l1, l2), ch = fmax(d1, d2) - fmin(t1, t2);
	double rho2 = (pow(x2 - x1, 2) + pow(y2 - y1, 2));
	double v = 4 / (M_PI * M_PI) * pow(atan(w2 / h2) - atan(w1 / h1), 2);
	double alpha = alpha_in != NULL ? *alpha_in : v / (v - iou + 1 + 1e-7);
	if (alpha_out != NULL)
		*alpha_out = alpha;
	return iou - (rho2 / (cw * cw + ch * ch + 1e-7) + v * alpha);
}

/* The total loss in double with tobj and alpha frozen (freeze = 0 sets them). */
static double loss_ref(struct fd_case *fc, const struct tr_loss *loss, int freeze)
{
	const struct tr_loss_params *p = &fc->params;
	const int na = p->na, nc = p->nc, width = 5 + nc;
	const float balance[2] = {4.0f, 1.0f};
	double cp = 1 - 0.5 * p->hyp.label_smoothing, cn = 0.5 * p->hyp.label_smoothing;
	double total = 0.0;
	for (int l = 0; l < p->nl; l++) {
		const struct tr_loss_matches *m = tr_loss_matches(loss, l);
		size_t ncell = fc->numel[l] / width;
		if (!freeze)
			memset(fc->tobj[l], 0, sizeof(double) * ncell);
		double box = 0, cls = 0, obj = 0;
		for (size_t i = 0; i < m->n; i++) {
			size_t cell =
			    (((size_t)m->b[i] * na + m->a[i]) * fc->batch.ny[l] + m->gj[i]) *
				fc->batch.nx[l] +
			    m->gi[i];
			const double *ps = fc->pred[l] + cell * width;
			double ciou = ciou_ref(ps, m->anch + 2 * i, m->tbox + 4 * i,
					       freeze ? &fc->alpha[l][i] : NULL,
					       freeze ? NULL : &fc->alpha[l][i]);
			box += 1 - ciou;
			if (!freeze)
				fc->tobj[l][cell] = fmax(ciou, 0.0); /* the later write wins */
			for (int k = 0; k < nc; k++)
				cls += bce_ref(ps[5 + k], k == m->tcls[i] ? cp : cn, p->hyp.cls_pw,
					       p->hyp.fl_gamma);
		}
		for (size_t c = 0; c < ncell; c++)
			obj += bce_ref(fc->pred[l][c * width + 4], fc->tobj[l][c], p->hyp.obj_pw,
				       p->hyp.fl_gamma);
		if (m->n) {
			total += (float)p->hyp.box * box / m->n;
			total += (float)p->hyp.cls * cls / ((double)m->n * nc);
		}
		total += (float)p->hyp.obj * balance[l] * obj / ncell;
	}
	return total * fc->batch.bs;
}

static void run_fd(double fl_gamma, double obj_gain)
{
	struct fd_case fc = {0};
	uint64_t rng = 12345;
	const int grid[2][2] = {{5, 6}, {3, 3}}; /* ny, nx */
	fc.params = (struct tr_loss_params){.nl = 2,
					    .na = 3,
					    .nc = 3,
					    .anchors = fc.anchors,
					    .hyp = {.box = 0.05,
						    .obj = obj_gain,
						    .cls = 0.3,
						    .cls_pw = 1.3,
						    .obj_pw = 0.8,
						    .fl_gamma = fl_gamma,
						    .anchor_t = 4.0,
						    .label_smoothing = 0.1}};
	for (int i = 0; i < 12; i++)
		fc.anchors[i] = (float)(0.5 + 2.5 * uniform(&rng));
	fc.batch.bs = 2;
	fc.batch.nt = 6;
	fc.batch.targets = fc.targets;
	for (int n = 0; n < 6; n++) {
		float *t = fc.targets + 6 * n;
		t[0] = (float)(n % 2);
		t[1] = (float)(n % 3);
		t[2] = (float)(0.05 + 0.9 * uniform(&rng));
		t[3] = (float)(0.05 + 0.9 * uniform(&rng));
		t[4] = (float)(0.05 + 0.5 * uniform(&rng));
		t[5] = (float)(0.05 + 0.5 * uniform(&rng));
	}
	/* two labels in the same cell, so a cell is matched more than once */
	memcpy(fc.targets + 30, fc.targets + 24, 6 * sizeof(float));
	fc.targets[30 + 4] *= 1.2f;
	struct tr_loss *loss = NULL;
	struct ut_err err = {{0}};
	if (tr_loss_create(&fc.params, 2, &loss, &err)) /* grows to 6 */
		fail_msg("%s", err.msg);
	for (int l = 0; l < 2; l++) {
		fc.batch.ny[l] = grid[l][0];
		fc.batch.nx[l] = grid[l][1];
		fc.numel[l] = (size_t)2 * 3 * grid[l][0] * grid[l][1] * 8;
		fc.pred_f[l] = malloc(fc.numel[l] * sizeof(float));
		fc.pred[l] = malloc(fc.numel[l] * sizeof(double));
		fc.batch.grad[l] = malloc(fc.numel[l] * sizeof(float));
		fc.tobj[l] = malloc(fc.numel[l] / 8 * sizeof(double));
		fc.alpha[l] = malloc(fc.numel[l] * sizeof(double));
		assert_true(fc.pred_f[l] && fc.pred[l] && fc.batch.grad[l] && fc.tobj[l] &&
			    fc.alpha[l]);
		for (size_t i = 0; i < fc.numel[l]; i++) {
			double u1 = uniform(&rng) + 1e-12, u2 = uniform(&rng);
			fc.pred_f[l][i] = (float)(1.5 * sqrt(-2 * log(u1)) * cos(2 * M_PI * u2));
			fc.pred[l][i] = fc.pred_f[l][i];
		}
		fc.batch.pred[l] = fc.pred_f[l];
	}
	struct tr_loss_result result;
	if (tr_loss_compute(loss, &fc.batch, &result, &err))
		fail_msg("%s", err.msg);
	assert_true(tr_loss_matches(loss, 0)->n > 0 && tr_loss_matches(loss, 1)->n > 0);

	double base = loss_ref(&fc, loss, 0);
	double loss_err = rel_error(result.loss, base);
	double diff = 0.0, scale = 0.0, step = 1e-5;
	for (int l = 0; l < 2; l++) {
		for (size_t i = 0; i < fc.numel[l]; i++) {
			double keep = fc.pred[l][i];
			fc.pred[l][i] = keep + step;
			double up = loss_ref(&fc, loss, 1);
			fc.pred[l][i] = keep - step;
			double down = loss_ref(&fc, loss, 1);
			fc.pred[l][i] = keep;
			double fd = (up - down) / (2 * step);
			diff = fmax(diff, fabs(fd - fc.batch.grad[l][i]));
			scale = fmax(scale, fabs(fd));
		}
	}
	print_message("finite differences (fl_gamma %g, obj %g): loss relative error %.2e, "
		      "scaled gradient error %.2e\n",
		      fl_gamma, obj_gain, loss_err, diff / scale);
	assert_true(loss_err <= 1e-6);
	assert_true(diff / scale <= GRAD_SCALED_TOL);
	for (int l = 0; l < 2; l++) {
		free(fc.pred_f[l]);
		free(fc.pred[l]);
		free(fc.batch.grad[l]);
		free(fc.tobj[l]);
		free(fc.alpha[l]);
	}
	tr_loss_free(loss);
}

static void test_finite_differences(void **state)
{
	(void)state;
	run_fd(0.0, 0.7);
	run_fd(1.5, 0.7);
}

/* ---- errors ---- */

static void test_errors(void **state)
{
	(void)state;
	float anchors[18];
	for (int i = 0; i < 18; i++)
		anchors[i] = 1.0f + (float)i;
	struct tr_loss_params params = {
	    .nl = 3,
	    .na = 3,
	    .nc = 2,
	    .anchors = anchors,
	    .hyp = {.box = 1, .obj = 1, .cls = 1, .cls_pw = 1, .obj_pw = 1, .anchor_t = 4}};
	struct tr_loss *loss = NULL;
	struct ut_err err = {{0}};
	params.nl = 6;
	assert_int_equal(tr_loss_create(&params, 1, &loss, &err), -1);
	assert_non_null(strstr(err.msg, "nl 6"));
	assert_null(loss);
	params.nl = 3;
	params.hyp.anchor_t = 0;
	assert_int_equal(tr_loss_create(&params, 1, &loss, &err), -1);
	assert_non_null(strstr(err.msg, "anchor_t"));
	params.hyp.anchor_t = 4;
	assert_int_equal(tr_loss_create(&params, 1, &loss, &err), 0);

	float pred[2 * 3 * 7 * 3] = {0};
	float targets[2 * 6] = {0, 1, 0.5f, 0.5f, 0.2f, 0.2f, 2, 0, 0.5f, 0.5f, 0.2f, 0.2f};
	struct tr_loss_batch batch = {.bs = 2,
				      .targets = targets,
				      .nt = 2,
				      .pred = {pred, pred, pred},
				      .ny = {1, 1, 1},
				      .nx = {1, 1, 1}};
	struct tr_loss_result result;
	assert_int_equal(tr_loss_compute(loss, &batch, &result, &err), -1);
	assert_non_null(strstr(err.msg, "target 1: image 2"));
	targets[6] = 1;
	targets[7] = 2;
	assert_int_equal(tr_loss_compute(loss, &batch, &result, &err), -1);
	assert_non_null(strstr(err.msg, "target 1: class 2"));
	targets[7] = 1;
	assert_int_equal(tr_loss_compute(loss, &batch, &result, &err), 0);
	assert_true(isfinite(result.loss) && result.loss > 0);
	/* no targets: only objectness */
	batch.nt = 0;
	assert_int_equal(tr_loss_compute(loss, &batch, &result, &err), 0);
	assert_true(result.items[0] == 0.0f && result.items[2] == 0.0f && result.items[1] > 0.0f);
	assert_null(tr_loss_matches(loss, 3));
	tr_loss_free(loss);
}

/*
 * A hyp with `anchors: N` builds the model with placeholder anchors 0, 1,
 * 2 ... (YOLOv5's parse_model), which AutoAnchor keeps when their recall
 * is good enough. YOLOv5 trains on: an anchor of width or height 0 gives a
 * ratio of inf (0/0: NaN) and is never matched. Here too: the loss with a
 * 0 anchor equals the loss with that anchor far too large to match, and no
 * match uses it. A negative anchor is still refused.
 */
static void test_zero_anchor(void **state)
{
	(void)state;
	float anchors[18];
	for (int i = 0; i < 18; i++)
		anchors[i] = (float)(i % 6) / 2.0f + 0.25f;
	anchors[0] = 0.0f; /* level 0, anchor 0: width 0 */
	struct tr_loss_params params = {
	    .nl = 3,
	    .na = 3,
	    .nc = 2,
	    .anchors = anchors,
	    .hyp = {.box = 0.05, .obj = 1, .cls = 0.5, .cls_pw = 1, .obj_pw = 1, .anchor_t = 4}};
	enum { BS = 2, NY = 4, NX = 4, NO = 7, PER_LEVEL = BS * 3 * NY * NX * NO };
	static float pred[PER_LEVEL], grad_zero[3][PER_LEVEL], grad_huge[3][PER_LEVEL];
	struct ut_pcg rng;
	ut_pcg_seed(&rng, 5, 0);
	for (int i = 0; i < PER_LEVEL; i++)
		pred[i] = (float)ut_pcg_uniform(&rng) * 2.0f - 1.0f;
	float targets[] = {0,	 1,    0.3f,  0.4f, 0.25f, 0.3f, 1,    0,     0.6f,
			   0.5f, 0.3f, 0.35f, 1,    1,	   0.2f, 0.7f, 0.28f, 0.26f};
	struct tr_loss_result zero, huge;
	struct ut_err err = {{0}};
	for (int pass = 0; pass < 2; pass++) {
		anchors[0] = pass == 0 ? 0.0f : 1e30f;
		float(*grad)[PER_LEVEL] = pass == 0 ? grad_zero : grad_huge;
		struct tr_loss *loss = NULL;
		assert_int_equal(tr_loss_create(&params, 8, &loss, &err), 0);
		struct tr_loss_batch batch = {.bs = BS,
					      .targets = targets,
					      .nt = 3,
					      .pred = {pred, pred, pred},
					      .grad = {grad[0], grad[1], grad[2]},
					      .ny = {NY, NY, NY},
					      .nx = {NX, NX, NX}};
		assert_int_equal(tr_loss_compute(loss, &batch, pass == 0 ? &zero : &huge, &err), 0);
		const struct tr_loss_matches *lm = tr_loss_matches(loss, 0);
		assert_non_null(lm);
		assert_true(lm->n > 0);
		for (size_t m = 0; m < lm->n; m++)
			assert_int_not_equal(lm->a[m], 0);
		tr_loss_free(loss);
	}
	assert_true(isfinite(zero.loss) && zero.loss > 0);
	assert_memory_equal(&zero.loss, &huge.loss, sizeof(zero.loss));
	assert_memory_equal(zero.items, huge.items, sizeof(zero.items));
	assert_memory_equal(grad_zero, grad_huge, sizeof(grad_zero));
	anchors[0] = -1.0f;
	struct tr_loss *loss = NULL;
	assert_int_equal(tr_loss_create(&params, 8, &loss, &err), -1);
	assert_non_null(strstr(err.msg, "anchor value 0 (-1)"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_scale_hyp),	       cmocka_unit_test(test_variant_base),
	    cmocka_unit_test(test_variant_fl_gamma),   cmocka_unit_test(test_variant_pw_smooth),
	    cmocka_unit_test(test_variant_anchor_t),   cmocka_unit_test(test_v5n_nc2),
	    cmocka_unit_test(test_finite_differences), cmocka_unit_test(test_errors),
	    cmocka_unit_test(test_zero_anchor),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
