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
/*
 * THE AUTOCAST MAP: the plan for --amp fp16 on a GPU (not implemented yet;
 * only the casts of ops.h exist). Which dtype each op of ops.h runs in
 * when it reproduces YOLOv5 v7.0's step under torch.cuda.amp.autocast
 * (train.py train(): the forward and compute_loss inside `with
 * torch.cuda.amp.autocast(amp)`; scaler.scale(loss).backward(), unscale_,
 * clip_grad_norm_, step, update and ema.update outside it). torch's rules
 * are PyTorch 2.x's CUDA autocast (aten/src/ATen/autocast_mode.cpp and its
 * AT_FORALL_* lists, moved to autocast_mode.h in later 2.x releases): ops
 * in AT_FORALL_LOWER_PRECISION_FP (conv2d among them) cast their inputs to
 * fp16, ops in AT_FORALL_FP32 (exp, log, pow,
 * binary_cross_entropy_with_logits, ...) to fp32, and every
 * other op (batch_norm, sigmoid, silu, max_pool2d, upsample_nearest2d, cat,
 * add, mul, indexing) runs on its inputs as they are: cat and arithmetic
 * promote mixed inputs to the wider dtype, batch_norm keeps its input's.
 * An autocast cast is an autograd op: the gradient comes back through it
 * cast to the tensor's own dtype. CUDA autocast's default dtype is fp16
 * (autocast_mode.cpp, autocast_dtype); YOLOv5 never uses bf16, so --amp
 * bf16 is ours: the same map with bf16 for fp16, and no loss scaler.
 *
 * Two rules every half op of ours keeps, as torch's CUDA kernels do:
 *   H1 element-wise ops read halves as floats, apply formula.h's fp32
 *      formula and round once (tr_f_fp16_from_float): torch computes Half
 *      in opmath_type<Half> = float (aten/src/ATen/native/cuda/
 *      ActivationSiluKernel.cu silu_kernel and silu_backward_kernel have
 *      our very formulas). So a half kernel is the fp32 one between casts,
 *      the same bits on the CPU, the emulation and a GPU.
 *   H2 sums (statistics, dbias, overlapping pooling windows, upsample's
 *      backward) are taken in float or double and rounded once at the end.
 *
 * Op by op (x16 = fp16 tensor; "fp32" = as now):
 *   images_to_float, resize_bilinear: fp32. imgs.float() / 255 and
 *     --multi-scale's interpolate come before the autocast block; the first
 *     conv casts the images (float_to_fp16).
 *   conv_forward: x16, w16, y16, fp32 accumulation. conv2d is in
 *     AT_FORALL_LOWER_PRECISION_FP; cuDNN's compute type is float for Half
 *     and BFloat16 (aten/src/ATen/native/cudnn/Conv_v8.cpp
 *     getConvDescriptor), as our conv_graph.h graphs already build.
 *     Weights are cast once a step: autocast caches the fp16 copy of an
 *     fp32 leaf weight until the autocast region exits (autocast_mode.cpp
 *     cached_cast), so float_to_fp16 of every weight before the forward,
 *     kept for the backward. Bias: only Detect's 1x1 convs have one
 *     (models/common.py Conv: bias=False), cast to fp16 too.
 *   conv_backward_data: dy16, w16 -> dx16, fp32 accumulation.
 *   conv_backward_filter: x16, dy16 -> dw16 (the gradient of the fp16 copy);
 *     the cast's backward widens it and AccumulateGrad adds it to the fp32
 *     .grad. So: dw16 into a half scratch (cuDNN beta 0), then grad +=
 *     fp16_to_float(dw16) in fp32; never accumulate in fp16 (--accumulate
 *     adds several batches). dbias the same (H2 sum, rounded to fp16).
 *   bn_forward_train, bn_backward: x16 in, y16 / dx16 out; gamma, beta,
 *     running_mean/var, save_mean/invstd, dgamma, dbeta fp32; statistics in
 *     fp32 or double (H2). batch_norm is in no CUDA autocast list: fp16
 *     input with fp32 weight runs cuDNN's batch norm
 *     (aten/src/ATen/native/Normalization.cpp _select_batch_norm_backend),
 *     bf16 the native kernel, both with float statistics.
 *   bn_channel_sums, bn_channel_affine (--sync-bn): x16/dy16 read as
 *     floats, sums in double as now, out16 rounded once.
 *   silu_forward, silu_backward, add_forward: fp16 (H1). Autograd's sum of
 *     the two gradients of a tensor used twice (Bottleneck's shortcut) is
 *     an fp16 add too.
 *   maxpool_forward (SPPF, k 5, stride 1): fp16, exact. maxpool_backward:
 *     dx16, the overlapping windows' gradients summed per H2.
 *   upsample2x_forward, concat_forward/backward, detect_permute_forward/
 *     backward: fp16 copies, exact. upsample2x_backward: 4 terms, H2.
 *     Detect's outputs p[i] are fp16 (models/yolo.py Detect.forward).
 *   The loss (loss.c, loss_obj_dense), utils/loss.py ComputeLoss.__call__:
 *     - tobj = torch.zeros(pi.shape[:4], dtype=pi.dtype) is fp16: the
 *       objectness target iou.detach().clamp(0).type(tobj.dtype) is the
 *       fp32 CIoU rounded to fp16; t = torch.full_like(pcls, self.cn) is
 *       fp16: cp, cn rounded (label smoothing 0.1: 0.95 -> 0.9501953125,
 *       0.05 -> 0.0499877930);
 *     - BCEobj(pi[..., 4], tobj) and BCEcls(pcls, t):
 *       binary_cross_entropy_with_logits is in AT_FORALL_FP32, so logits
 *       and targets are widened and the BCE and its mean are fp32:
 *       loss_obj_dense reads fp16 logits and computes as now;
 *     - box: pxy.sigmoid() * 2 - 0.5 stays fp16 (sigmoid, then each
 *       arithmetic op rounded to fp16: x 2 exact, - 0.5 rounded);
 *       (pwh.sigmoid() * 2) ** 2 * anchors[i]: sigmoid and x 2 in fp16,
 *       ** 2 is pow (AT_FORALL_FP32) so the square and the anchor product
 *       are fp32; torch.cat((pxy, pwh), 1) promotes to fp32, so bbox_iou
 *       (CIoU) and lbox are fp32;
 *     - FocalLoss.forward (fl_gamma > 0): the BCE fp32; sigmoid(pred),
 *       p_t and alpha_factor fp16 (true is fp16); (1.0 - p_t) ** gamma fp32
 *       (pow); their product and loss *= fp32;
 *     - lbox, lobj, lcls, (sum) * bs, * WORLD_SIZE, * 4 (--quad) fp32;
 *       scaler.scale(loss) multiplies in fp32;
 *     - backward: the fp32 gradient of pi[..., 4] (every cell) comes back
 *       through the cast rounded to fp16; the matched cells' box and class
 *       gradients go back through the fp16 sigmoid and arithmetic, and
 *       autograd adds the two fp16 gradients of pi. Ours: the loss's fp32
 *       gradient rows (scaled), rounded once by float_to_fp16: it may
 *       differ from torch by an fp16 ulp at matched cells, where torch
 *       rounds twice (within the tolerances below, not bit-matched).
 *   amp_unscale, sum_squares (clip_grad_norm_, max_norm 10), optim_update,
 *     scale, ema_update, DDP's all-reduce: fp32, outside autocast. Master
 *     weights, .grad (the gradients of fp32 parameters), momentum buffers, the EMA
 *     (utils/torch_utils.py ModelEMA.update) are fp32; an fp16 overflow in
 *     a gradient arrives in .grad as inf, which unscale reports.
 *   round_half: train.py's model.half().float() before training, as now.
 *     Under --amp also after every validation: val.py run() called from
 *     train.py (half=amp, model=ema.ema) does model.half() and, at its end,
 *     model.float(), so the EMA's parameters and buffers come back rounded
 *     to fp16. That validation is plain fp16, not autocast (im.half(), BN
 *     with fp16 parameters, Detect's decode, the val loss outside autocast,
 *     NMS): the val path's own item, after the training step.
 *   The casts, where: float_to_fp16 for the images at the first conv,
 *     every conv weight and bias once a step, and the loss gradient;
 *     fp16_to_float for dw16 and dbias16 into .grad, and for Detect's
 *     outputs where the loss reads them (unless loss_obj_dense gets a
 *     half-input form).
 *
 * So the CPU backend's half ops (the specification) can be casts around
 * the fp32 ops that exist: fp16_to_float the inputs, the fp32 op (its sums
 * in float or double: H2), float_to_fp16 the outputs. Only the loss rounds
 * in between, where YOLOv5 does (tobj, t, pxy: tr_f_round_to_half).
 *
 * TOLERANCES proposed for the half path, per op, in three tiers; u is the
 * unit roundoff, 2^-11 for fp16 and 2^-8 for bf16 (the relative error of
 * one rounding), |.| elementwise, sums over the values an output uses.
 *   1. Parity, the CUDA half op vs the CPU half op (test_cuda_ops's kind):
 *   - casts, element-wise ops, copies, max pool and upsample backward,
 *     bn_channel_affine: exact (bits), H1 and H2 in a fixed order on both.
 *   - conv forward, backward data, backward filter, dbias, batch norm: the
 *     fp32 op's parity tolerance plus one half ulp of the result: two fp32
 *     sums that differ in their last bits can round to neighbouring halves.
 *   2. Rounding, the CPU half op vs the fp32 op on its widened half inputs:
 *     exactly float_to_fp16 of it, by the construction above (checked, so
 *     a half op that forgets H1 or rounds twice fails).
 *   3. Cost, the half op vs the fp32 op on the original fp32 inputs (what
 *   mixed precision costs; asserted with these first-order bounds, printed):
 *   - cast and back: u |x|, one rounding; fp16 also 2^-25 absolute below
 *     2^-14 (subnormal steps of 2^-24), and inf from 65520 on purpose.
 *   - copies (concat, permute, upsample, max pool forward): u |x|, the
 *     input's rounding only.
 *   - silu_forward: u (|y| + 1.1 |x|): the output's rounding, and the
 *     input's times max |silu'| = 1.0998.
 *   - silu_backward: u (|dx| + 1.1 |dy| + 0.5 |dy x|): dy's rounding times
 *     silu', x's times max |silu''| = 0.5, the output's.
 *   - add: u (|y| + |a| + |b|); upsample and max pool backward: u (|dx| +
 *     sum |terms|): each input rounded once, the output once.
 *   - conv_forward: u |y| + 2u conv(|x|, |w|): each product's two inputs
 *     rounded, fp32 accumulation (as the fp32 op), the output once; the test
 *     gets conv(|x|, |w|) from one more fp32 convolution. backward_data: u
 *     |dx| + 2u conv_T(|dy|, |w|); backward_filter: u |dw| + 2u corr(|x|,
 *     |dy|), plus the fp32 op's own summation tolerance (n h w terms);
 *     dbias: u |db| + u sum |dy|.
 *   - bn_forward_train: save_mean within u mean|x|; invstd within 2u invstd
 *     mean(|x - mean| |x|) / var (first order: x's rounding through the
 *     variance, large where a channel's offset dwarfs its spread); y within
 *     u |y| + u |gamma| invstd (|x| + mean|x|) + |gamma xhat| times invstd's
 *     relative bound; running statistics as the saved ones.
 *   - bn_backward: dgamma within 2u sum |dy xhat|, dbeta within u sum |dy|
 *     (fp32 results of rounded inputs); dx within u |dx| + 2u |gamma| invstd
 *     (|dy| + mean|dy| + |xhat| mean|dy xhat|) + the forward's xhat and
 *     invstd bounds carried through dx's formula (first order).
 *   - the loss: lobj and lcls within u mean(|dL/dx| |x| + |dL/dt| t), the
 *     logits' and the targets' roundings through the BCE: dL/dx = (pw t + 1
 *     - t) sigmoid(x) - pw t (tr_f_bce_backward), dL/dt = -x + (pw - 1)
 *     softplus(-x), pw the pos_weight; lbox within 8u, an estimate: the
 *     CIoU terms move by a small multiple of pxy's error (three roundings
 *     of values up to 1.5) and pwh's (two, then fp32).
 *   - a whole step (yolov5n, test_train_step's golden batch, fp16 vs fp32
 *     from the same weights): loss items within 1e-3 relative, each
 *     parameter's update (after - before) within 1e-2 of its tensor's
 *     largest update, no step skipped at the first scale, 65536. Estimates
 *     from the bounds above, to be measured on a GPU before they are
 *     enforced (YOLOv5's own AMP check, utils/general.py check_amp, only
 *     asks detections to agree within 0.1 absolute).
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
