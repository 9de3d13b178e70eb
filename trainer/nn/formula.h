/*
 * formula.h - the per-element formulas of training, written once and
 * compiled by both backends: by the C compiler for trainer/cpu/ (and for the
 * CPU emulation of the CUDA kernels) and by nvcc for trainer/cuda/. A kernel
 * and its CPU loop call the same function, so they do the same IEEE
 * operations in the same order on each element (both built without fused
 * multiply-add contraction: -ffp-contract=off here, --fmad=false in nvcc).
 *
 * Everything here is a pure function of its arguments: no memory, no state.
 * Names: tr_f_<what>; gradients end in _grad.
 */
#ifndef TR_FORMULA_H
#define TR_FORMULA_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__CUDACC__)
#define TR_F __host__ __device__ __forceinline__
#else
#define TR_F static inline
#endif

/* The float whose IEEE-754 bits are u. */
TR_F float tr_f_from_bits(uint32_t u)
{
#if defined(__CUDA_ARCH__)
	return __uint_as_float(u);
#elif defined(__cplusplus)
	float f;
	memcpy(&f, &u, sizeof(f));
	return f;
#else
	union {
		uint32_t bits;
		float value;
	} v = {u};
	return v.value;
#endif
}

/* The IEEE-754 bits of the float f. */
TR_F uint32_t tr_f_to_bits(float f)
{
#if defined(__CUDA_ARCH__)
	return __float_as_uint(f);
#elif defined(__cplusplus)
	uint32_t u;
	memcpy(&u, &f, sizeof(u));
	return u;
#else
	union {
		float value;
		uint32_t bits;
	} v = {f};
	return v.bits;
#endif
}

/*
 * exp(x) within about 2 ulp (Cephes' expf polynomial), vectorisable: x is
 * split as n ln2 + r with |r| <= ln2 / 2, n rounded to nearest by adding
 * 1.5 * 2^23, and 2^n built from n clamped to [-126, 127] afterwards (so expf's
 * underflow to 0 and overflow to inf become tiny and huge finite values or
 * inf: SiLU and sigmoid do not notice). NaN in, NaN out. The same bits on
 * every backend, unlike expf/__expf.
 *
 * The clamp is on n, not on x, on purpose: with x clamped to a
 * constant, gcc evaluated the whole expression for that constant as a
 * second path, and x / (1 + exp(87.3)) is a denormal for |x| < 1, whose
 * microcode assists made SiLU forward 6.5x slower (6.8 vs 1.04 ns/element).
 * gcc vectorises the clamps only with -fno-trapping-math (trainer/cpu's
 * flags); nothing reads the floating-point exception flags.
 */
TR_F float tr_f_expf(float x)
{
	const float magic = 12582912.0f; /* 1.5 * 2^23 */
	float nf = (x * 1.44269504088896341f + magic) - magic;
	float r = x - nf * 0.693359375f;
	r = r - nf * -2.12194440e-4f;
	float p = 1.9875691500e-4f;
	p = p * r + 1.3981999507e-3f;
	p = p * r + 8.3334519073e-3f;
	p = p * r + 4.1665795894e-2f;
	p = p * r + 1.6666665459e-1f;
	p = p * r + 5.0000001201e-1f;
	p = p * (r * r) + r + 1.0f;
	nf = !(nf >= -126.0f) ? -126.0f : nf; /* NaN too: p carries it */
	nf = nf > 127.0f ? 127.0f : nf;
	int32_t n = (int32_t)nf;
	return p * tr_f_from_bits((uint32_t)(n + 127) << 23);
}

/* SiLU: y = x * sigmoid(x), computed as x / (1 + exp(-x)) */
TR_F float tr_f_silu(float x)
{
	return x / (1.0f + tr_f_expf(-x));
}

/* dL/dx of SiLU = dy * s * (1 + x * (1 - s)), s = sigmoid(x) */
TR_F float tr_f_silu_grad(float x, float dy)
{
	float sig = 1.0f / (1.0f + tr_f_expf(-x));
	return dy * sig * (1.0f + x * (1.0f - sig));
}

/* ---- optimizer updates ---- */

/*
 * The scalars of one optimizer step on one tensor, rounded to float as
 * PyTorch's CPU kernels round them (tr_optim_step_scalars in optim.h makes
 * them from the schedule's doubles). adam 0 is SGD with Nesterov momentum;
 * decoupled selects AdamW's decay.
 */
struct tr_f_optim {
	int adam, decoupled, has_decay;
	float lr, momentum, decay;			 /* SGD (decay: Adam too) */
	float step_size, bc2_sqrt, b1, one_minus_b1, b2; /* Adam, AdamW */
	float one_minus_b2, eps, shrink;
};

/*
 * torch.optim.SGD(nesterov=True, dampening=0), one element: the momentum
 * buffer, then the parameter; x + alpha * y fused where PyTorch fuses it.
 */
TR_F void tr_f_sgd_update(const struct tr_f_optim *s, float *param, float grad, float *buf)
{
	float d = grad;
	if (s->has_decay)
		d = fmaf(s->decay, *param, d);
	*buf = *buf * s->momentum + d;
	d = fmaf(s->momentum, *buf, d);
	*param = fmaf(-s->lr, d, *param);
}

/* torch.optim.Adam, or AdamW with s->decoupled, one element. */
TR_F void tr_f_adam_update(const struct tr_f_optim *s, float *param, float grad, float *exp_avg,
			   float *exp_avg_sq)
{
	float g = grad;
	if (s->decoupled)
		*param = *param * s->shrink;
	else if (s->has_decay)
		g = fmaf(s->decay, *param, g);
	*exp_avg = fmaf(s->one_minus_b1, g, *exp_avg * s->b1);
	*exp_avg_sq = *exp_avg_sq * s->b2 + s->one_minus_b2 * g * g;
	float denom = sqrtf(*exp_avg_sq) / s->bc2_sqrt + s->eps;
	*param = *param + -s->step_size * *exp_avg / denom;
}

/* ModelEMA: ema * keep + take * model, keep = (float)d, take = (float)(1 - d). */
TR_F float tr_f_ema_update(float ema, float model, float keep, float take)
{
	return ema * keep + take * model;
}

/*
 * The loss scaler's unscale of one gradient (torch's
 * _amp_foreach_non_finite_check_and_unscale_): grad * inv_scale, or grad
 * itself when inv_scale is exactly 1; *found_inf set to 1 when grad, before
 * the multiply, is inf or nan (never cleared here).
 */
TR_F float tr_f_amp_unscale(float grad, float inv_scale, int *found_inf)
{
	if (!isfinite(grad))
		*found_inf = 1;
	return inv_scale == 1.0f ? grad : grad * inv_scale;
}

/* ---- input and state conversions ---- */

/* An image byte as the network takes it: im.float() / 255. */
TR_F float tr_f_u8_to_float(uint8_t value)
{
	return (float)value / 255.0f;
}

/*
 * ---- half precision: float16 (IEEE binary16) and bfloat16, as bits ----
 *
 * One rounding formula per format, torch 1.13's CPU casts bit for bit
 * (tests/golden/half/casts.txt): round to nearest, ties to even. Integer
 * arithmetic only, so every backend gets the same bits whatever its float
 * modes (flush to zero, NaN quieting) and no FP16 hardware is needed; the
 * CUDA intrinsics (__float2half_rn) round finite values the same way but
 * give NaN as 0x7fff, not torch CPU's bits.
 */

/*
 * f rounded to float16, its bits (x.half()): |f| >= 65520 (the tie with
 * 2^16) to +-inf; float16 subnormals kept, in steps of 2^-24; |f| <= 2^-25
 * (the tie with 0) to +-0; -0 kept; NaN to the quiet NaN sign | 0x7e00,
 * its payload dropped.
 */
TR_F uint16_t tr_f_fp16_from_float(float f)
{
	uint32_t bits = tr_f_to_bits(f);
	uint16_t sign = (uint16_t)((bits >> 16) & 0x8000u);
	uint32_t mag = bits & 0x7fffffffu;
	if (mag > 0x7f800000u) /* NaN */
		return (uint16_t)(sign | 0x7e00u);
	if (mag >= 0x477ff000u) /* 65520 up to inf */
		return (uint16_t)(sign | 0x7c00u);
	if (mag >= 0x38800000u) {
		/* normal (2^-14 up): exponent bias 127 to 15, drop 13 bits to nearest
		 * even; a carry out of the mantissa moves into the exponent, as it should */
		uint32_t odd = (mag >> 13) & 1u;
		return (uint16_t)(sign | ((mag - 0x38000000u + 0x0fffu + odd) >> 13));
	}
	if (mag < 0x33000000u) /* below 2^-25 */
		return sign;
	/* subnormal: round(|f| 2^24), |f| = significand 2^(exponent - 150) */
	uint32_t exponent = mag >> 23; /* 102 .. 112 */
	uint32_t significand = (mag & 0x7fffffu) | 0x800000u;
	uint32_t shift = 126u - exponent; /* 14 .. 24 */
	uint32_t steps = significand >> shift, rest = significand & ((1u << shift) - 1u);
	uint32_t halfway = 1u << (shift - 1u);
	if (rest > halfway || (rest == halfway && (steps & 1u)))
		steps++; /* 1024 steps is 2^-14, the smallest normal's bits */
	return (uint16_t)(sign | steps);
}

/*
 * The float of float16 bits h (x.float()): exact; infinities kept; a NaN
 * made quiet with its payload kept (0x7c01 gives 0x7fc02000), as torch does.
 */
TR_F float tr_f_fp16_to_float(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
	uint32_t exponent = (h >> 10) & 0x1fu, mantissa = h & 0x3ffu;
	if (exponent == 0x1fu)
		return tr_f_from_bits(sign | 0x7f800000u | (mantissa << 13) |
				      (mantissa != 0 ? 0x400000u : 0u));
	if (exponent != 0)
		return tr_f_from_bits(sign | ((exponent + 112u) << 23) | (mantissa << 13));
	if (mantissa == 0)
		return tr_f_from_bits(sign);
	/* subnormal, mantissa 2^-24: normalise (a float has the exponent range) */
	exponent = 113u;
	while (!(mantissa & 0x400u)) {
		mantissa <<= 1;
		exponent--;
	}
	return tr_f_from_bits(sign | (exponent << 23) | ((mantissa & 0x3ffu) << 13));
}

/*
 * f rounded to bfloat16, its bits (x.bfloat16()): the top 16 bits of f
 * rounded to nearest even, so the largest finite values round to +-inf,
 * float32 subnormals stay subnormal and -0 is kept; every NaN gives 0xffff
 * (a quiet NaN, sign set), as torch 1.13's vectorised CPU cast does (its
 * 0-dim scalar path gives 0x7fc0).
 */
TR_F uint16_t tr_f_bf16_from_float(float f)
{
	uint32_t bits = tr_f_to_bits(f);
	if ((bits & 0x7fffffffu) > 0x7f800000u)
		return 0xffffu;
	return (uint16_t)((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

/* The float of bfloat16 bits b (x.float()): exact, NaN payloads included. */
TR_F float tr_f_bf16_to_float(uint16_t b)
{
	return tr_f_from_bits((uint32_t)b << 16);
}

/*
 * The nearest float16 as a float, what model.half().float() leaves: 11
 * significant bits, subnormals in steps of 2^-24, infinity from 65520 up;
 * infinities and zeros unchanged, NaN quiet (sign kept, payload dropped).
 */
TR_F float tr_f_round_to_half(float value)
{
	return tr_f_fp16_to_float(tr_f_fp16_from_float(value));
}

/* ---- the loss: sigmoid, BCE with logits, focal loss ---- */

/*
 * sigmoid(x) = 1 / (1 + exp(-x)) with the C library's expf, as the loss and
 * Detect's decode have always computed it on the CPU (unlike tr_f_expf, a
 * GPU's expf may round differently: within 2 ulp, not the same bits).
 */
TR_F float tr_f_sigmoid(float x)
{
	return 1.0f / (1.0f + expf(-x));
}

#define TR_F_FOCAL_ALPHA 0.25f /* FocalLoss's alpha */

/* The elementwise BCE-with-logits (or focal) loss of a logit x against target t. */
struct tr_f_bce {
	float pos_weight;
	float gamma; /* 0: plain BCE, else FocalLoss(gamma) */
};

/* torch 1.13 binary_cross_entropy_with_logits with pos_weight, then FocalLoss. */
TR_F float tr_f_bce_forward(const struct tr_f_bce *bce, float x, float t)
{
	float max_val = -x > 0.0f ? -x : 0.0f;
	float log_weight = (bce->pos_weight - 1.0f) * t + 1.0f;
	float loss =
	    (1.0f - t) * x + log_weight * (logf(expf(-max_val) + expf(-x - max_val)) + max_val);
	if (bce->gamma > 0.0f) {
		float prob = tr_f_sigmoid(x);
		float p_t = t * prob + (1.0f - t) * (1.0f - prob);
		float alpha_factor = t * TR_F_FOCAL_ALPHA + (1.0f - t) * (1.0f - TR_F_FOCAL_ALPHA);
		float modulating = powf(1.0f - p_t, bce->gamma);
		loss *= alpha_factor * modulating;
	}
	return loss;
}

/* d tr_f_bce_forward / dx, in double. */
TR_F double tr_f_bce_backward(const struct tr_f_bce *bce, float x, float t)
{
	double s = tr_f_sigmoid(x), pw = bce->pos_weight, tt = t;
	double grad = (pw * tt + 1.0 - tt) * s - pw * tt;
	if (bce->gamma > 0.0f) {
		double gamma = bce->gamma;
		double p_t = tt * s + (1.0 - tt) * (1.0 - s);
		double alpha_factor = tt * TR_F_FOCAL_ALPHA + (1.0 - tt) * (1.0 - TR_F_FOCAL_ALPHA);
		double modulating = pow(1.0 - p_t, gamma);
		double dmod =
		    -gamma * pow(1.0 - p_t, gamma - 1.0) * (2.0 * tt - 1.0) * s * (1.0 - s);
		const struct tr_f_bce plain = {bce->pos_weight, 0.0f};
		double loss = tr_f_bce_forward(&plain, x, t);
		grad = grad * alpha_factor * modulating + loss * alpha_factor * dmod;
	}
	return grad;
}

/*
 * The dense objectness term of one cell of a level's outputs (pred, a row
 * of width = nc + 5 floats): the BCE of pred[4] against 0, returned; with
 * grad not NULL the cell's gradient row is assigned, zero but grad[4] =
 * scale * its derivative. The loss corrects the matched cells afterwards.
 */
TR_F float tr_f_obj_cell(const struct tr_f_bce *bce, double scale, const float *pred, float *grad,
			 int width)
{
	if (grad != NULL) {
		for (int k = 0; k < width; k++)
			grad[k] = 0.0f;
		grad[4] = (float)(scale * tr_f_bce_backward(bce, pred[4], 0.0f));
	}
	return tr_f_bce_forward(bce, pred[4], 0.0f);
}

/* ---- bilinear resize (align_corners=False, antialias off) ---- */

/*
 * Where output row (or column) dst of a resize from in_size to out_size
 * reads: PyTorch's area_pixel_compute_source_index, scale * (dst + 0.5) -
 * 0.5 clamped at 0 with scale = in_size / out_size in float; *i0 and *i1
 * the two neighbours (i1 = i0 at the last one), *frac the weight of i1.
 */
TR_F void tr_f_bilinear_source(int dst, int in_size, int out_size, int *i0, int *i1, float *frac)
{
	float scale = (float)in_size / (float)out_size;
	float src = scale * ((float)dst + 0.5f) - 0.5f;
	if (src < 0)
		src = 0;
	*i0 = (int)src;
	*i1 = *i0 + (*i0 < in_size - 1);
	*frac = src - (float)*i0;
}

/* One output value of a plane in [in_h][in_w] at the sources of tr_f_bilinear_source. */
TR_F float tr_f_bilinear(const float *in, int in_w, int y0, int y1, float ly, int x0, int x1,
			 float lx)
{
	float hy = 1.0f - ly, hx = 1.0f - lx;
	return hy * (hx * in[y0 * in_w + x0] + lx * in[y0 * in_w + x1]) +
	       ly * (hx * in[y1 * in_w + x0] + lx * in[y1 * in_w + x1]);
}

/* tr_f_bilinear on a plane of bytes, each read as the float of its value. */
TR_F float tr_f_bilinear_u8(const uint8_t *in, int in_w, int y0, int y1, float ly, int x0, int x1,
			    float lx)
{
	float hy = 1.0f - ly, hx = 1.0f - lx;
	return hy * (hx * (float)in[y0 * in_w + x0] + lx * (float)in[y0 * in_w + x1]) +
	       ly * (hx * (float)in[y1 * in_w + x0] + lx * (float)in[y1 * in_w + x1]);
}

/* ---- CIoU: utils/metrics.py bbox_iou(CIoU=True), the loss's box term ---- */

#define TR_F_CIOU_EPS 1e-7f
#define TR_F_PI 3.14159265358979323846
#define TR_F_CIOU_K (4.0 / (TR_F_PI * TR_F_PI)) /* v's factor, in double as numpy makes it */

/* A box as bbox_iou sees it: its corners, and the w, h it uses for areas and the aspect term. */
struct tr_f_box {
	float x1, y1, x2, y2, w, h;
};

/* From xywh, as torch computes x - w / 2 and x + w / 2. */
TR_F struct tr_f_box tr_f_box_xywh(const float b[4])
{
	float hw = b[2] * 0.5f, hh = b[3] * 0.5f;
	struct tr_f_box c = {b[0] - hw, b[1] - hh, b[0] + hw, b[1] + hh, b[2], b[3]};
	return c;
}

/* CIoU of box a (the prediction) and box b (the target), with what the backward pass needs. */
struct tr_f_ciou {
	struct tr_f_box a, b;
	float iw_raw, ih_raw, inter, uni, iou;
	float cw, ch, c2, dx, dy, rho2, q1, q2, at, v, alpha, value;
};

/*
 * Op for op in float32 as YOLOv5 v7.0's bbox_iou (atan from the C
 * library, which a GPU may round differently within an ulp).
 */
TR_F void tr_f_ciou_forward(struct tr_f_ciou *c, struct tr_f_box a, struct tr_f_box b)
{
	c->a = a;
	c->b = b;
	c->iw_raw = fminf(a.x2, b.x2) - fmaxf(a.x1, b.x1);
	c->ih_raw = fminf(a.y2, b.y2) - fmaxf(a.y1, b.y1);
	c->inter = (c->iw_raw < 0.0f ? 0.0f : c->iw_raw) * (c->ih_raw < 0.0f ? 0.0f : c->ih_raw);
	c->uni = a.w * a.h + b.w * b.h - c->inter + TR_F_CIOU_EPS;
	c->iou = c->inter / c->uni;
	c->cw = fmaxf(a.x2, b.x2) - fminf(a.x1, b.x1);
	c->ch = fmaxf(a.y2, b.y2) - fminf(a.y1, b.y1);
	c->c2 = c->cw * c->cw + c->ch * c->ch + TR_F_CIOU_EPS;
	c->dx = b.x1 + b.x2 - a.x1 - a.x2;
	c->dy = b.y1 + b.y2 - a.y1 - a.y2;
	c->rho2 = (c->dx * c->dx + c->dy * c->dy) * 0.25f;
	c->q1 = a.w / a.h;
	c->q2 = b.w / b.h;
	c->at = atanf(c->q2) - atanf(c->q1);
	c->v = (float)TR_F_CIOU_K * (c->at * c->at);
	c->alpha = c->v / (c->v - c->iou + (float)(1.0 + 1e-7));
	c->value = c->iou - (c->rho2 / c->c2 + c->v * c->alpha);
}

/* PyTorch's share of the gradient of minimum(self, other) / maximum(self, other) for self. */
TR_F double tr_f_share_min(float self, float other)
{
	return self < other ? 1.0 : self == other ? 0.5 : 0.0;
}

TR_F double tr_f_share_max(float self, float other)
{
	return self > other ? 1.0 : self == other ? 0.5 : 0.0;
}

/*
 * d value / d box (x, y, w, h) times grad for both xywh boxes, alpha held
 * constant (torch computes it under no_grad), in double: out_a for the
 * prediction, out_b for the target (NULL: not wanted).
 */
TR_F void tr_f_ciou_backward(const struct tr_f_ciou *c, double grad, double out_a[4],
			     double out_b[4])
{
	const struct tr_f_box *a = &c->a, *b = &c->b;
	double g_rho2 = -grad / c->c2;
	double g_c2 = grad * c->rho2 / ((double)c->c2 * c->c2);
	double g_v = -grad * c->alpha;
	double g_inter = grad / c->uni;
	double g_uni = -grad * c->inter / ((double)c->uni * c->uni);
	double g_w1 = g_uni * a->h, g_h1 = g_uni * a->w;
	g_inter -= g_uni;
	double g_iw = c->iw_raw >= 0.0f ? g_inter * (c->ih_raw < 0.0f ? 0.0f : c->ih_raw) : 0.0;
	double g_ih = c->ih_raw >= 0.0f ? g_inter * (c->iw_raw < 0.0f ? 0.0f : c->iw_raw) : 0.0;
	double g_cw = g_c2 * 2.0 * c->cw, g_ch = g_c2 * 2.0 * c->ch;
	double g_dx = g_rho2 * 0.5 * c->dx, g_dy = g_rho2 * 0.5 * c->dy;
	double g_d = g_v * TR_F_CIOU_K * 2.0 * c->at; /* d v / d at */
	double g_x1 =
	    -g_iw * tr_f_share_max(a->x1, b->x1) - g_cw * tr_f_share_min(a->x1, b->x1) - g_dx;
	double g_x2 =
	    g_iw * tr_f_share_min(a->x2, b->x2) + g_cw * tr_f_share_max(a->x2, b->x2) - g_dx;
	double g_y1 =
	    -g_ih * tr_f_share_max(a->y1, b->y1) - g_ch * tr_f_share_min(a->y1, b->y1) - g_dy;
	double g_y2 =
	    g_ih * tr_f_share_min(a->y2, b->y2) + g_ch * tr_f_share_max(a->y2, b->y2) - g_dy;
	double g_q1 = -g_d / (1.0 + (double)c->q1 * c->q1);
	g_w1 += g_q1 / a->h;
	g_h1 -= g_q1 * a->w / ((double)a->h * a->h);
	out_a[0] = g_x1 + g_x2;
	out_a[1] = g_y1 + g_y2;
	out_a[2] = g_w1 + 0.5 * (g_x2 - g_x1);
	out_a[3] = g_h1 + 0.5 * (g_y2 - g_y1);
	if (out_b == NULL)
		return;
	double g_w2 = g_uni * b->h, g_h2 = g_uni * b->w;
	double t_x1 =
	    -g_iw * tr_f_share_max(b->x1, a->x1) - g_cw * tr_f_share_min(b->x1, a->x1) + g_dx;
	double t_x2 =
	    g_iw * tr_f_share_min(b->x2, a->x2) + g_cw * tr_f_share_max(b->x2, a->x2) + g_dx;
	double t_y1 =
	    -g_ih * tr_f_share_max(b->y1, a->y1) - g_ch * tr_f_share_min(b->y1, a->y1) + g_dy;
	double t_y2 =
	    g_ih * tr_f_share_min(b->y2, a->y2) + g_ch * tr_f_share_max(b->y2, a->y2) + g_dy;
	double g_q2 = g_d / (1.0 + (double)c->q2 * c->q2);
	g_w2 += g_q2 / b->h;
	g_h2 -= g_q2 * b->w / ((double)b->h * b->h);
	out_b[0] = t_x1 + t_x2;
	out_b[1] = t_y1 + t_y2;
	out_b[2] = g_w2 + 0.5 * (t_x2 - t_x1);
	out_b[3] = g_h2 + 0.5 * (t_y2 - t_y1);
}

#endif
