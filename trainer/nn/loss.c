/*
 * loss.c - YOLOv5 v7.0's ComputeLoss and its hand-written gradient with
 * respect to the raw Detect outputs. See loss.h for the contract.
 *
 * The forward pass repeats PyTorch's float32 operations in the same order
 * (so the objectness targets, which are CIoU values, agree to the bit in
 * most cells); means are summed in double. The backward pass works in
 * double from the float forward values, with PyTorch's conventions at the
 * kinks: min/max split the gradient in half on ties, clamp(0) passes it
 * at exactly 0.
 */
#include "loss.h"
#include "formula.h"
#include "ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define NOFFSETS 5

struct loss_order {
	size_t cell; /* flat (b, a, gj, gi) */
	size_t match;
};

struct tr_loss {
	struct tr_loss_params params;
	float anchors[TR_LOSS_MAX_LEVELS * TR_LOSS_MAX_ANCHORS * 2];
	float balance[TR_LOSS_MAX_LEVELS];
	size_t capacity;       /* targets */
	size_t match_capacity; /* matches per level: 5 * na * capacity */
	struct tr_loss_matches matches[TR_LOSS_MAX_LEVELS];
	float *ciou;		  /* [match_capacity] of the level at hand */
	float *rows;		  /* [2][nc + 5]: host copies of a cell's pred and grad */
	struct loss_order *order; /* [match_capacity] */
	void *memory;		  /* the one allocation behind the above */
};

/* ---- context ---- */

static int check_params(const struct tr_loss_params *p, struct ut_err *err)
{
	if (p->nl < 1 || p->nl > TR_LOSS_MAX_LEVELS)
		return ut_err_set(err, "loss: nl %d outside [1, %d]", p->nl, TR_LOSS_MAX_LEVELS);
	if (p->na < 1 || p->na > TR_LOSS_MAX_ANCHORS)
		return ut_err_set(err, "loss: na %d outside [1, %d]", p->na, TR_LOSS_MAX_ANCHORS);
	if (p->nc < 1)
		return ut_err_set(err, "loss: nc %d must be at least 1", p->nc);
	if (p->anchors == NULL)
		return ut_err_set(err, "loss: no anchors");
	/* 0 is allowed: YOLOv5's placeholder anchors (hyp `anchors: N`) start at 0,
	 * and such an anchor is never matched (its ratio is inf or NaN) */
	for (int i = 0; i < p->nl * p->na * 2; i++)
		if (!(p->anchors[i] >= 0.0f) || !isfinite(p->anchors[i]))
			return ut_err_set(err, "loss: anchor value %d (%g) must be >= 0", i,
					  (double)p->anchors[i]);
	const struct {
		const char *name;
		double value;
	} gains[] = {{"box", p->hyp.box},
		     {"obj", p->hyp.obj},
		     {"cls", p->hyp.cls},
		     {"cls_pw", p->hyp.cls_pw},
		     {"obj_pw", p->hyp.obj_pw},
		     {"fl_gamma", p->hyp.fl_gamma},
		     {"label_smoothing", p->hyp.label_smoothing}};
	for (size_t i = 0; i < sizeof(gains) / sizeof(gains[0]); i++)
		if (!(gains[i].value >= 0.0) || !isfinite(gains[i].value))
			return ut_err_set(err, "loss: hyp %s (%g) must be finite and >= 0",
					  gains[i].name, gains[i].value);
	if (!(p->hyp.anchor_t > 0.0) || !isfinite(p->hyp.anchor_t))
		return ut_err_set(err, "loss: hyp anchor_t (%g) must be positive", p->hyp.anchor_t);
	return 0;
}

int tr_loss_create(const struct tr_loss_params *params, size_t max_targets, struct tr_loss **out,
		   struct ut_err *err)
{
	static const float balance3[3] = {4.0f, 1.0f, 0.4f};
	static const float balance5[5] = {4.0f, 1.0f, 0.25f, 0.06f, 0.02f};
	*out = NULL;
	if (check_params(params, err))
		return -1;
	struct tr_loss *loss = calloc(1, sizeof(*loss));
	if (loss == NULL)
		return ut_err_set(err, "loss: out of memory");
	loss->params = *params;
	memcpy(loss->anchors, params->anchors, sizeof(float) * 2 * params->nl * params->na);
	loss->params.anchors = loss->anchors;
	for (int l = 0; l < params->nl; l++)
		loss->balance[l] = params->nl == 3 ? balance3[l] : balance5[l];
	loss->rows = malloc(2 * (size_t)(params->nc + 5) * sizeof(float));
	if (loss->rows == NULL) {
		tr_loss_free(loss);
		return ut_err_set(err, "loss: out of memory");
	}
	if (tr_loss_reserve(loss, max_targets > 0 ? max_targets : 1, err)) {
		tr_loss_free(loss);
		return -1;
	}
	*out = loss;
	return 0;
}

void tr_loss_free(struct tr_loss *loss)
{
	if (loss == NULL)
		return;
	free(loss->memory);
	free(loss->rows);
	free(loss);
}

int tr_loss_reserve(struct tr_loss *loss, size_t nt, struct ut_err *err)
{
	if (nt <= loss->capacity)
		return 0;
	size_t per_target = (size_t)NOFFSETS * loss->params.na;
	if (nt > SIZE_MAX / 256 / per_target / TR_LOSS_MAX_LEVELS)
		return ut_err_set(err, "loss: %zu targets are too many", nt);
	size_t m = per_target * nt;
	/* per level: b, a, gj, gi, tcls (int32), tbox (4 floats), anch (2 floats) */
	size_t level_bytes = m * (5 * sizeof(int32_t) + 6 * sizeof(float));
	size_t bytes =
	    level_bytes * loss->params.nl + m * (sizeof(float) + sizeof(struct loss_order));
	char *memory = malloc(bytes);
	if (memory == NULL)
		return ut_err_set(err, "loss: out of memory for %zu targets", nt);
	free(loss->memory);
	loss->memory = memory;
	loss->capacity = nt;
	loss->match_capacity = m;
	/* order first: it has the strictest alignment */
	loss->order = (struct loss_order *)memory;
	char *next = memory + m * sizeof(struct loss_order);
	for (int l = 0; l < loss->params.nl; l++) {
		struct tr_loss_matches *lm = &loss->matches[l];
		lm->n = 0;
		lm->tbox = (float *)next, next += m * 4 * sizeof(float);
		lm->anch = (float *)next, next += m * 2 * sizeof(float);
		int32_t **ints[5] = {&lm->b, &lm->a, &lm->gj, &lm->gi, &lm->tcls};
		for (int k = 0; k < 5; k++)
			*ints[k] = (int32_t *)next, next += m * sizeof(int32_t);
	}
	loss->ciou = (float *)next;
	return 0;
}

void tr_loss_scale_hyp(struct tr_loss_hyp *hyp, int nl, int nc, int imgsz)
{
	hyp->box *= 3.0 / nl;
	hyp->cls *= (double)nc / 80.0 * 3.0 / nl;
	hyp->obj *= pow((double)imgsz / 640.0, 2.0) * 3.0 / nl;
}

const struct tr_loss_matches *tr_loss_matches(const struct tr_loss *loss, int level)
{
	if (level < 0 || level >= loss->params.nl)
		return NULL;
	return &loss->matches[level];
}

/* ---- build_targets ---- */

/* Python's x % 1 for a float. */
static float py_mod1(float x)
{
	float r = fmodf(x, 1.0f);
	return r != 0.0f && r < 0.0f ? r + 1.0f : r;
}

static int check_batch(const struct tr_loss *loss, const struct tr_loss_batch *batch,
		       struct ut_err *err)
{
	if (batch->bs < 1)
		return ut_err_set(err, "loss: batch size %d must be at least 1", batch->bs);
	for (int l = 0; l < loss->params.nl; l++)
		if (batch->ny[l] < 1 || batch->nx[l] < 1)
			return ut_err_set(err, "loss: level %d grid %dx%d is empty", l,
					  batch->nx[l], batch->ny[l]);
	if (batch->nt > 0 && batch->targets == NULL)
		return ut_err_set(err, "loss: %zu targets but no target rows", batch->nt);
	for (size_t n = 0; n < batch->nt; n++) {
		const float *t = batch->targets + 6 * n;
		if (!(t[0] >= 0.0f && (long)t[0] < batch->bs))
			return ut_err_set(err, "loss: target %zu: image %g outside [0, %d)", n,
					  (double)t[0], batch->bs);
		if (!(t[1] >= 0.0f && (long)t[1] < loss->params.nc))
			return ut_err_set(err, "loss: target %zu: class %g outside [0, %d)", n,
					  (double)t[1], loss->params.nc);
		for (int k = 2; k < 6; k++)
			if (!isfinite(t[k]))
				return ut_err_set(err, "loss: target %zu: value %d is not finite",
						  n, k);
	}
	return 0;
}

/* Whether offset o (centre, x-1, y-1, x+1, y+1 neighbour) applies to gxy. */
static int offset_applies(int o, float gx, float gy, float nx, float ny)
{
	switch (o) {
	case 1:
		return py_mod1(gx) < 0.5f && gx > 1.0f;
	case 2:
		return py_mod1(gy) < 0.5f && gy > 1.0f;
	case 3:
		return py_mod1(nx - gx) < 0.5f && nx - gx > 1.0f;
	case 4:
		return py_mod1(ny - gy) < 0.5f && ny - gy > 1.0f;
	default:
		return 1;
	}
}

static void build_level(struct tr_loss *loss, const struct tr_loss_batch *batch, int l)
{
	static const float offsets[NOFFSETS][2] = {
	    {0, 0}, {0.5f, 0}, {0, 0.5f}, {-0.5f, 0}, {0, -0.5f}};
	const int na = loss->params.na;
	const float nx = (float)batch->nx[l], ny = (float)batch->ny[l];
	const float anchor_t = (float)loss->params.hyp.anchor_t;
	const float *anchors = loss->anchors + (size_t)l * na * 2;
	struct tr_loss_matches *lm = &loss->matches[l];
	size_t n = 0;
	for (int o = 0; o < NOFFSETS; o++) {
		for (int a = 0; a < na; a++) {
			for (size_t k = 0; k < batch->nt; k++) {
				const float *target = batch->targets + 6 * k;
				float gx = target[2] * nx, gy = target[3] * ny;
				float gw = target[4] * nx, gh = target[5] * ny;
				float rw = gw / anchors[2 * a], rh = gh / anchors[2 * a + 1];
				float worst = fmaxf(fmaxf(rw, 1.0f / rw), fmaxf(rh, 1.0f / rh));
				if (!(worst < anchor_t) || !offset_applies(o, gx, gy, nx, ny))
					continue;
				long gi = (long)(gx - offsets[o][0]),
				     gj = (long)(gy - offsets[o][1]);
				gi = gi < 0 ? 0 : gi > batch->nx[l] - 1 ? batch->nx[l] - 1 : gi;
				gj = gj < 0 ? 0 : gj > batch->ny[l] - 1 ? batch->ny[l] - 1 : gj;
				lm->b[n] = (int32_t)target[0];
				lm->tcls[n] = (int32_t)target[1];
				lm->a[n] = a;
				lm->gj[n] = (int32_t)gj;
				lm->gi[n] = (int32_t)gi;
				/* YOLOv5 clamps gij in place before taking gxy - gij */
				lm->tbox[4 * n] = gx - (float)gi;
				lm->tbox[4 * n + 1] = gy - (float)gj;
				lm->tbox[4 * n + 2] = gw;
				lm->tbox[4 * n + 3] = gh;
				lm->anch[2 * n] = anchors[2 * a];
				lm->anch[2 * n + 1] = anchors[2 * a + 1];
				n++;
			}
		}
	}
	lm->n = n;
}

int tr_loss_build_targets(struct tr_loss *loss, const struct tr_loss_batch *batch,
			  struct ut_err *err)
{
	if (check_batch(loss, batch, err) || tr_loss_reserve(loss, batch->nt, err))
		return -1;
	for (int l = 0; l < loss->params.nl; l++)
		build_level(loss, batch, l);
	return 0;
}

/* ---- the loss of one level ---- */

static int compare_order(const void *pa, const void *pb)
{
	const struct loss_order *a = pa, *b = pb;
	if (a->cell != b->cell)
		return a->cell < b->cell ? -1 : 1;
	return a->match < b->match ? -1 : a->match > b->match;
}

struct level_sums {
	float box, obj, cls; /* the level's means (obj not yet balanced) */
};

/* The float32 predicted box of match m from the raw outputs ps. */
static void predicted_box(const float *ps, const float anch[2], float box[4])
{
	box[0] = tr_f_sigmoid(ps[0]) * 2.0f - 0.5f;
	box[1] = tr_f_sigmoid(ps[1]) * 2.0f - 0.5f;
	float uw = tr_f_sigmoid(ps[2]) * 2.0f, uh = tr_f_sigmoid(ps[3]) * 2.0f;
	box[2] = uw * uw * anch[0];
	box[3] = uh * uh * anch[1];
}

static size_t cell_of(const struct tr_loss_matches *lm, size_t m, int na, int ny, int nx)
{
	return (((size_t)lm->b[m] * na + lm->a[m]) * ny + lm->gj[m]) * nx + lm->gi[m];
}

/*
 * A level's outputs and gradient rows, in host memory (be NULL) or in the
 * device memory of be, where the matched cells' rows cross one at a time
 * into host copies (pred_row, grad_row).
 */
struct level_io {
	struct tr_backend *be;
	const float *pred;
	float *grad; /* NULL: no gradient */
	int width;
	float *pred_row, *grad_row;
};

static int pred_of(struct level_io *io, size_t cell, const float **row, struct ut_err *err)
{
	const float *at = io->pred + cell * io->width;
	*row = at;
	if (io->be == NULL)
		return 0;
	*row = io->pred_row;
	return io->be->ops->download(io->be, io->pred_row, at, io->width * sizeof(float), err);
}

/* the gradient row of cell to change; grad_done puts it back */
static int grad_of(struct level_io *io, size_t cell, float **row, struct ut_err *err)
{
	float *at = io->grad + cell * io->width;
	*row = at;
	if (io->be == NULL)
		return 0;
	*row = io->grad_row;
	return io->be->ops->download(io->be, io->grad_row, at, io->width * sizeof(float), err);
}

static int grad_done(struct level_io *io, size_t cell, struct ut_err *err)
{
	if (io->be == NULL)
		return 0;
	return io->be->ops->upload(io->be, io->grad + cell * io->width, io->grad_row,
				   io->width * sizeof(float), err);
}

/* The dense objectness of every cell: the backend's op, or its formula on the host. */
static int dense_obj(struct level_io *io, const struct tr_f_bce *bce, double scale, size_t ncell,
		     double *obj_sum, struct ut_err *err)
{
	if (io->be != NULL)
		return io->be->ops->loss_obj_dense(io->be, bce, scale, io->pred, io->grad, ncell,
						   io->width, obj_sum, err);
	double sum = 0.0;
	for (size_t c = 0; c < ncell; c++)
		sum += tr_f_obj_cell(bce, scale, io->pred + c * io->width,
				     io->grad != NULL ? io->grad + c * io->width : NULL, io->width);
	*obj_sum = sum;
	return 0;
}

/*
 * Forward of level l into sums; with grad, also d loss / d pred of the level
 * (scales: d loss / d each mean, i.e. bs * gain (* balance)). Every cell's
 * objectness against 0 first (dense_obj), then the matched cells only.
 */
static int level_loss(struct tr_loss *loss, struct tr_backend *be,
		      const struct tr_loss_batch *batch, int l, struct level_sums *sums,
		      struct ut_err *err)
{
	const struct tr_loss_params *p = &loss->params;
	const struct tr_loss_matches *lm = &loss->matches[l];
	const int na = p->na, ny = batch->ny[l], nx = batch->nx[l], nc = p->nc, width = 5 + nc;
	const size_t ncell = (size_t)batch->bs * na * ny * nx;
	struct level_io io = {.be = be,
			      .pred = batch->pred[l],
			      .grad = batch->grad[l],
			      .width = width,
			      .pred_row = loss->rows,
			      .grad_row = loss->rows + width};
	const float cp = (float)(1.0 - 0.5 * p->hyp.label_smoothing);
	const float cn = (float)(0.5 * p->hyp.label_smoothing);
	const struct tr_f_bce bce_cls = {(float)p->hyp.cls_pw, (float)p->hyp.fl_gamma};
	const struct tr_f_bce bce_obj = {(float)p->hyp.obj_pw, (float)p->hyp.fl_gamma};
	const float fbs = (float)batch->bs;
	const double scale_box = (double)fbs * (float)p->hyp.box / (double)(lm->n ? lm->n : 1);
	const double scale_cls =
	    (double)fbs * (float)p->hyp.cls / ((double)(lm->n ? lm->n : 1) * nc);
	const double scale_obj = (double)fbs * (float)p->hyp.obj * loss->balance[l] / (double)ncell;

	/* objectness against 0 everywhere; the matched cells are corrected below */
	double obj_sum = 0.0;
	if (dense_obj(&io, &bce_obj, scale_obj, ncell, &obj_sum, err) != 0)
		return -1;

	double box_sum = 0.0, cls_sum = 0.0;
	for (size_t m = 0; m < lm->n; m++) {
		size_t cell = cell_of(lm, m, na, ny, nx);
		const float *ps;
		if (pred_of(&io, cell, &ps, err) != 0)
			return -1;
		float box[4];
		struct tr_f_ciou c;
		predicted_box(ps, lm->anch + 2 * m, box);
		tr_f_ciou_forward(&c, tr_f_box_xywh(box), tr_f_box_xywh(lm->tbox + 4 * m));
		box_sum += 1.0f - c.value;
		loss->ciou[m] = c.value;
		loss->order[m] = (struct loss_order){cell, m};
		if (nc > 1)
			for (int k = 0; k < nc; k++) {
				float t = k == lm->tcls[m] ? cp : cn;
				cls_sum += tr_f_bce_forward(&bce_cls, ps[5 + k], t);
			}
		if (io.grad == NULL)
			continue;
		float *gs;
		if (grad_of(&io, cell, &gs, err) != 0)
			return -1;
		double dbox[4];
		tr_f_ciou_backward(&c, -scale_box, dbox, NULL);
		const float *anch = lm->anch + 2 * m;
		for (int k = 0; k < 4; k++) {
			/* xy = 2 s - 0.5, wh = (2 s)^2 anch: d/ds is 2, or 2 (2 s) anch 2 */
			float s = tr_f_sigmoid(ps[k]);
			double dsig = (double)s * (1.0 - s);
			double dout =
			    k < 2 ? 2.0 * dbox[k] : 4.0 * dbox[k] * anch[k - 2] * (s * 2.0f);
			gs[k] += (float)(dout * dsig);
		}
		if (nc > 1)
			for (int k = 0; k < nc; k++) {
				float t = k == lm->tcls[m] ? cp : cn;
				gs[5 + k] +=
				    (float)(scale_cls * tr_f_bce_backward(&bce_cls, ps[5 + k], t));
			}
		if (grad_done(&io, cell, err) != 0)
			return -1;
	}

	/* tobj[b, a, gj, gi] = clamp(ciou, 0): the last match of a cell wins */
	qsort(loss->order, lm->n, sizeof(*loss->order), compare_order);
	for (size_t i = 0; i < lm->n; i++) {
		if (i + 1 < lm->n && loss->order[i + 1].cell == loss->order[i].cell)
			continue;
		size_t cell = loss->order[i].cell;
		float tobj = loss->ciou[loss->order[i].match];
		tobj = tobj < 0.0f ? 0.0f : tobj;
		const float *ps;
		if (pred_of(&io, cell, &ps, err) != 0)
			return -1;
		obj_sum += (double)tr_f_bce_forward(&bce_obj, ps[4], tobj) -
			   (double)tr_f_bce_forward(&bce_obj, ps[4], 0.0f);
		if (io.grad == NULL)
			continue;
		float *gs;
		if (grad_of(&io, cell, &gs, err) != 0)
			return -1;
		gs[4] = (float)(scale_obj * tr_f_bce_backward(&bce_obj, ps[4], tobj));
		if (grad_done(&io, cell, err) != 0)
			return -1;
	}
	sums->obj = (float)(obj_sum / (double)ncell);
	sums->box = lm->n ? (float)(box_sum / (double)lm->n) : 0.0f;
	sums->cls = lm->n && nc > 1 ? (float)(cls_sum / ((double)lm->n * nc)) : 0.0f;
	return 0;
}

int tr_loss_compute(struct tr_loss *loss, const struct tr_loss_batch *batch,
		    struct tr_loss_result *result, struct ut_err *err)
{
	return tr_loss_compute_on(loss, NULL, batch, result, err);
}

int tr_loss_compute_on(struct tr_loss *loss, struct tr_backend *backend,
		       const struct tr_loss_batch *batch, struct tr_loss_result *result,
		       struct ut_err *err)
{
	for (int l = 0; l < loss->params.nl; l++)
		if (batch->pred[l] == NULL)
			return ut_err_set(err, "loss: level %d has no predictions", l);
	if (tr_loss_build_targets(loss, batch, err))
		return -1;
	float lbox = 0.0f, lobj = 0.0f, lcls = 0.0f;
	for (int l = 0; l < loss->params.nl; l++) {
		struct level_sums sums;
		if (level_loss(loss, backend, batch, l, &sums, err) != 0)
			return -1;
		lbox += sums.box;
		lobj += sums.obj * loss->balance[l];
		lcls += sums.cls;
	}
	lbox *= (float)loss->params.hyp.box;
	lobj *= (float)loss->params.hyp.obj;
	lcls *= (float)loss->params.hyp.cls;
	result->loss = (lbox + lobj + lcls) * (float)batch->bs;
	result->items[0] = lbox;
	result->items[1] = lobj;
	result->items[2] = lcls;
	return 0;
}
