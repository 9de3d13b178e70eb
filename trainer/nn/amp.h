/*
 * amp.h - mixed precision as YOLOv5 v7.0 trains with it (torch.cuda.amp):
 * the --amp value and the dynamic loss scaler, torch's GradScaler with
 * YOLOv5's settings (init_scale 65536, growth_factor 2, backoff_factor 0.5,
 * growth_interval 2000). Plain C, no device: the scaler is a few numbers
 * on the host; the gradients it unscales are a host array here, or the
 * backend's own kernel reports what it found (tr_amp_record_unscaled).
 *
 *   --amp off    fp32 everywhere, no scaler.
 *   --amp fp16   fp16 convolutions, fp32 master weights, dynamic loss scale.
 *   --amp bf16   bf16 convolutions, fp32 master weights, no scaler (bf16
 *                has fp32's exponent range, so gradients do not underflow).
 *
 * One optimizer step of YOLOv5's train.py, in this order:
 *   loss_scaled = tr_amp_scale_loss(&scaler, loss);   // scaler.scale(loss)
 *   backward of loss_scaled (gradients accumulate over `accumulate` batches)
 *   tr_amp_unscale(&scaler, grads, n, &err);          // scaler.unscale_(optimizer)
 *   clip_grad_norm(grads, 10.0)                       // on unscaled gradients
 *   tr_amp_step(&scaler, grads, n, &do_step, &err);   // scaler.step(optimizer)
 *   if (do_step) optimizer step                        // skipped on inf/nan
 *   tr_amp_update(&scaler, &err);                     // scaler.update()
 *   zero the gradients; EMA update (YOLOv5 updates the EMA even when the
 *   step was skipped: the weights did not change, only the EMA's decay)
 *
 * torch's rules, reproduced (torch/amp/grad_scaler.py and the
 * _amp_foreach_non_finite_check_and_unscale_ / _amp_update_scale_ kernels):
 *   - scale is an fp32 number; scaling the loss multiplies in fp32;
 *   - unscale multiplies every gradient by inv_scale = (float)(1 / (double)
 *     scale) (not when inv_scale is exactly 1) and records found_inf if any
 *     gradient, before the multiply, is inf or nan; all are multiplied;
 *   - step skips the optimizer when found_inf; it unscales first when
 *     unscale was not called in this iteration;
 *   - update: found_inf -> scale *= backoff_factor, growth_tracker = 0;
 *     else growth_tracker + 1 == growth_interval -> scale *= growth_factor
 *     (kept unless that overflows fp32 to inf), growth_tracker = 0; else
 *     growth_tracker += 1. Products in double, rounded to fp32;
 *   - unscale twice, unscale or step after step, or update with no inf
 *     check since the last update, is an error (torch raises);
 *   - a disabled scaler (--amp off or bf16) is the identity: the loss is
 *     not scaled, gradients are not touched, every step runs.
 */
#ifndef TR_AMP_H
#define TR_AMP_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "formula.h"
#include "ut.h"

enum tr_amp_mode {
	TR_AMP_OFF,
	TR_AMP_FP16,
	TR_AMP_BF16,
};

/*
 * Parse an --amp value: "off", "fp16" or "bf16" (exactly, lower case).
 * Returns 0, or -1 with one line naming --amp, the value and the choices.
 */
int tr_amp_parse(const char *text, enum tr_amp_mode *out, struct ut_err *err);
/* "off", "fp16", "bf16". */
const char *tr_amp_mode_name(enum tr_amp_mode mode);
/* 1 for the mode that needs a loss scaler (fp16), 0 otherwise. */
int tr_amp_mode_scaled(enum tr_amp_mode mode);

/* GradScaler's constructor arguments. */
struct tr_amp_scaler_config {
	float init_scale;
	double growth_factor, backoff_factor;
	int64_t growth_interval;
};

/* torch.cuda.amp.GradScaler()'s defaults, which YOLOv5 v7.0 uses. */
#define TR_AMP_SCALER_DEFAULTS ((struct tr_amp_scaler_config){65536.0f, 2.0, 0.5, 2000})

/* Where the scaler is within an iteration (torch's OptState). */
enum tr_amp_stage {
	TR_AMP_READY,	 /* since the last update (or the start) */
	TR_AMP_UNSCALED, /* gradients unscaled and checked */
	TR_AMP_STEPPED,	 /* step decided */
};

struct tr_amp_scaler {
	int enabled;
	struct tr_amp_scaler_config config;
	float scale;		/* torch's _scale (fp32) */
	int32_t growth_tracker; /* consecutive steps without inf/nan (torch's int32) */
	enum tr_amp_stage stage;
	int found_inf;	       /* this iteration's check, valid from UNSCALED on */
	int64_t steps_skipped; /* for logs: optimizer steps skipped so far */
};

/*
 * A scaler for mode: enabled for fp16 only. config NULL means
 * TR_AMP_SCALER_DEFAULTS. Returns 0, or -1 with err when the config breaks
 * torch's checks (growth_factor > 1, backoff_factor < 1, init_scale > 0
 * and finite, growth_interval > 0).
 */
int tr_amp_scaler_init(struct tr_amp_scaler *scaler, enum tr_amp_mode mode,
		       const struct tr_amp_scaler_config *config, struct ut_err *err);

/* The loss to differentiate: loss * scale in fp32, or loss when disabled. */
float tr_amp_scale_loss(const struct tr_amp_scaler *scaler, float loss);

/* fp32 1/scale as torch computes it (in double, rounded to fp32); 1 when disabled. */
float tr_amp_inv_scale(const struct tr_amp_scaler *scaler);

/*
 * One gradient unscaled: grad * inv_scale (grad itself when inv_scale is
 * exactly 1), *found_inf set to 1 if grad is inf or nan. The per-element
 * rule is formula.h's tr_f_amp_unscale, which the backends' amp_unscale op
 * (ops.h) runs on the CPU and in the CUDA kernel alike.
 */
static inline float tr_amp_unscale_value(float grad, float inv_scale, int *found_inf)
{
	return tr_f_amp_unscale(grad, inv_scale, found_inf);
}

/*
 * scaler.unscale_(optimizer) on grads[0..n), the fp32 gradients of every
 * parameter: unscaled in place and checked for inf/nan. No-op when
 * disabled. Returns 0, or -1 with err when called twice in an iteration or
 * after step (as torch raises).
 */
int tr_amp_unscale(struct tr_amp_scaler *scaler, float *grads, size_t n, struct ut_err *err);
/*
 * The same bookkeeping for a backend that unscaled on the device with
 * tr_amp_unscale_value: found_inf is what its kernel found.
 */
int tr_amp_record_unscaled(struct tr_amp_scaler *scaler, int found_inf, struct ut_err *err);

/*
 * scaler.step(optimizer): unscales grads first if this iteration has not
 * (grads may be NULL when it has), then *do_step = 1 when the optimizer
 * must step (no inf/nan, or disabled), 0 to skip it. Returns 0, or -1
 * with err when step was already called since the last update.
 */
int tr_amp_step(struct tr_amp_scaler *scaler, float *grads, size_t n, int *do_step,
		struct ut_err *err);

/*
 * scaler.update(): back off or grow the scale by this iteration's check
 * (torch's rule above), and start the next iteration. No-op when
 * disabled. Returns 0, or -1 with err when no inf check was recorded since
 * the last update.
 */
int tr_amp_update(struct tr_amp_scaler *scaler, struct ut_err *err);

#endif
