/*
 * optim.h - YOLOv5 v7.0's optimizer side of training: the three parameter
 * groups, the learning-rate schedule with its warmup and gradient
 * accumulation, the SGD / Adam / AdamW updates on flat float arrays,
 * gradient-norm clipping and the EMA of the weights.
 *
 * How yolo-train drives it, mirroring train.py:
 *
 *	struct tr_optim_sched sched;
 *	if (tr_optim_sched_init(&sched, &config, &err) != 0)   // once
 *		return -1;
 *	struct tr_optim_ema ema = {0};                          // updates = 0
 *	for (epoch = start_epoch; epoch < epochs; epoch++) {
 *		for (i = 0; i < nb; i++) {
 *			long ni = tr_optim_sched_batch(&sched, epoch, i);  // warmup
 *			forward, loss, backward (grads accumulate with +=);
 *			if (tr_optim_sched_step_due(&sched, ni)) {
 *				tr_optim_clip_grad_norm(grads, n, TR_OPTIM_MAX_GRAD_NORM);
 *				steps++;
 *				for each parameter tensor t:
 *					tr_optim_update(kind, &hp[tr_optim_group_of(t->name)],
 *							steps, param, grad, slot0, slot1, numel);
 *				zero the grads;
 *				d = tr_optim_ema_next_decay(&ema);
 *				tr_optim_ema_update(ema_floats, model_floats, n, d);
 *			}
 *		}
 *		tr_optim_sched_epoch_end(&sched);                  // scheduler.step()
 *	}
 *
 * (on the host; train.c runs the same steps on the backend: sum_squares and
 * scale with tr_optim_clip_coef, optim_update with tr_optim_step_scalars,
 * memset, ema_update), where hp[g] = tr_optim_sched_hparams(&sched, g) is
 * read after the batch's tr_optim_sched_batch call.
 *
 * Groups are numbered as the torch optimizer's param_groups are (and as
 * ../shared/reference/golden/lr_schedule.yaml numbers them): 0 biases, 1
 * weights with decay, 2 BatchNorm weights. smart_optimizer's own local list
 * g[] numbers them differently (g[0] decay, g[1] BN, g[2] biases); only the
 * param_groups order matters to training, because the warmup bias lr goes
 * to param_groups[0].
 *
 * Schedule values are doubles computed with the same operations, in the
 * same order, as Python/numpy do, so they equal YOLOv5's bit for bit. The
 * updates work in float32 as PyTorch's CPU kernels do, with the scalars
 * (lr, momentum, betas, decay) rounded to float first and x + alpha * y
 * fused (fmaf) where PyTorch's add with alpha fuses it.
 */
#ifndef TR_OPTIM_H
#define TR_OPTIM_H

#include <stdbool.h>
#include <stddef.h>

#include "formula.h"
#include "ut.h"

#define TR_OPTIM_NBS 64		      /* YOLOv5's nominal batch size */
#define TR_OPTIM_MIN_WARMUP_ITERS 100 /* nw is at least this */
#define TR_OPTIM_MAX_GRAD_NORM 10.0   /* clip_grad_norm_(max_norm=10.0) */
#define TR_OPTIM_ADAM_BETA2 0.999
#define TR_OPTIM_ADAM_EPS 1e-8 /* torch.optim.Adam/AdamW default */
#define TR_OPTIM_EMA_DECAY 0.9999
#define TR_OPTIM_EMA_TAU 2000.0

enum tr_optim_kind { TR_OPTIM_SGD, TR_OPTIM_ADAM, TR_OPTIM_ADAMW };

enum tr_optim_group {
	TR_OPTIM_GROUP_BIAS = 0,  /* every "bias": no decay, warmup from warmup_bias_lr */
	TR_OPTIM_GROUP_DECAY = 1, /* other weights: decay = scaled weight_decay */
	TR_OPTIM_GROUP_BN = 2,	  /* BatchNorm weights: no decay */
	TR_OPTIM_GROUP_COUNT = 3
};

/*
 * "SGD", "Adam", "AdamW" (train.py's --optimizer choices, case as there)
 * to the kind; -1 with err naming the text otherwise.
 */
int tr_optim_kind_parse(const char *text, enum tr_optim_kind *out, struct ut_err *err);

/*
 * The group of a trainable state_dict entry, by smart_optimizer's rule:
 * a parameter called "bias" is a bias; a "weight" of a BatchNorm module is
 * a BN weight; anything else has decay. YOLOv5 names its BatchNorm modules
 * "bn" (Conv.bn, BottleneckCSP.bn), so a BN weight is "<...>.bn.weight".
 * Only call this for parameters (not running_mean, anchors, ...).
 */
enum tr_optim_group tr_optim_group_of(const char *name);

/* The inputs of the schedule: hyperparameters and the run's shape. */
struct tr_optim_config {
	enum tr_optim_kind kind;
	double lr0, lrf, momentum, weight_decay; /* weight_decay as in the hyp, unscaled */
	double warmup_epochs, warmup_momentum, warmup_bias_lr;
	long batch_size;  /* total batch size, >= 1 */
	long nb;	  /* batches per epoch, >= 1 */
	long epochs;	  /* >= 1 */
	long start_epoch; /* 0, or the epoch a resumed run continues with */
	bool cos_lr;	  /* --cos-lr: one_cycle instead of the linear lambda */
};

/*
 * The state train.py keeps in its locals and in optimizer.param_groups.
 * Read the fields; change them only through the functions below.
 */
struct tr_optim_sched {
	struct tr_optim_config config;
	long accumulate_nominal; /* max(round(nbs / batch_size), 1) */
	double weight_decay;	 /* hyp weight_decay * batch_size * accumulate_nominal / nbs */
	long nw;		 /* warmup iterations: max(round(warmup_epochs * nb), 100) */
	double accumulate;	 /* batches per optimizer step (a float in train.py too) */
	long last_opt_step;	 /* ni of the last optimizer step; -1 before the first */
	long last_epoch;	 /* LambdaLR.last_epoch */
	double lr[TR_OPTIM_GROUP_COUNT];       /* param_groups[j]['lr'] */
	double momentum[TR_OPTIM_GROUP_COUNT]; /* SGD momentum, or Adam's beta1 */
	double decay[TR_OPTIM_GROUP_COUNT];    /* param_groups[j]['weight_decay'] */
};

/*
 * What one group's update uses: the group's lr, momentum (SGD) or beta1
 * (Adam, AdamW), and weight decay.
 */
struct tr_optim_hparams {
	double lr, momentum, weight_decay;
};

/* YOLOv5's linear lambda, (1 - epoch / epochs) * (1 - lrf) + lrf. */
double tr_optim_lf_linear(double epoch, long epochs, double lrf);
/* one_cycle(1, lrf, epochs): ((1 - cos(epoch * pi / epochs)) / 2) * (lrf - 1) + 1. */
double tr_optim_lf_cos(double epoch, long epochs, double lrf);
/* The lambda the config selects, at epoch. */
double tr_optim_lf(const struct tr_optim_config *config, double epoch);

/* max(round(nbs / batch_size), 1), Python's round (half to even). */
long tr_optim_accumulate(long batch_size);
/* weight_decay * (batch_size * accumulate / nbs), as train.py scales it. */
double tr_optim_scaled_decay(double weight_decay, long batch_size);
/* max(round(warmup_epochs * nb), 100). */
long tr_optim_warmup_iters(double warmup_epochs, long nb);

/*
 * np.interp(x, [0, x1], [y0, y1]) for 0 <= x <= x1, x1 > 0, with numpy's
 * arithmetic: y0 at 0, y1 at x1, else (y1 - y0) / x1 * x + y0.
 */
double tr_optim_interp(double x, double x1, double y0, double y1);

/*
 * Set up as train.py does before its epoch loop: accumulate and the scaled
 * decay, the groups as smart_optimizer makes them, lr = lr0 * lf(0) as
 * LambdaLR's construction leaves it, then scheduler.last_epoch =
 * start_epoch - 1 and last_opt_step = -1. -1 with err naming the field when
 * the config is out of range (batch_size, nb, epochs < 1, start_epoch
 * outside [0, epochs], a negative or non-finite rate).
 */
int tr_optim_sched_init(struct tr_optim_sched *sched, const struct tr_optim_config *config,
			struct ut_err *err);

/*
 * Start batch i of epoch: returns ni = i + nb * epoch and, while ni <= nw,
 * applies the warmup (accumulate from 1 to nbs / batch_size rounded half
 * to even; lr of the bias group from warmup_bias_lr and of the others from
 * 0 up to lr0 * lf(epoch); SGD momentum from warmup_momentum to momentum;
 * Adam's beta1 is left alone, as train.py only touches a 'momentum' key).
 */
long tr_optim_sched_batch(struct tr_optim_sched *sched, long epoch, long i);

/*
 * After batch ni's backward: true when the optimizer steps now
 * (ni - last_opt_step >= accumulate), and then last_opt_step = ni.
 */
bool tr_optim_sched_step_due(struct tr_optim_sched *sched, long ni);

/*
 * scheduler.step() at the end of an epoch: last_epoch += 1 and every
 * group's lr = lr0 * lf(last_epoch). Because train.py sets last_epoch to
 * start_epoch - 1 after construction, the lr after epoch e is lr0 * lf(e),
 * not lf(e + 1): YOLOv5's behaviour, kept.
 */
void tr_optim_sched_epoch_end(struct tr_optim_sched *sched);

/* The group's current lr, momentum/beta1 and decay. */
struct tr_optim_hparams tr_optim_sched_hparams(const struct tr_optim_sched *sched,
					       enum tr_optim_group group);

/*
 * One optimizer step of one tensor of n floats, in place, with PyTorch's
 * semantics (dampening 0, maximize off, amsgrad off):
 *   SGD (Nesterov): d = grad + wd * p; buf = momentum * buf + d;
 *                   p -= lr * (d + momentum * buf).  slot0 = buf.
 *   Adam:  g = grad + wd * p; m = beta1 * m + (1 - beta1) * g;
 *          v = beta2 * v + (1 - beta2) * g * g;
 *          p -= lr / (1 - beta1^step) * m / (sqrt(v) / sqrt(1 - beta2^step) + eps).
 *   AdamW: p *= 1 - lr * wd first, then Adam without the wd term.
 * slot0 (momentum buffer or exp_avg) and slot1 (exp_avg_sq; unused by SGD,
 * may be NULL) start zeroed: a zero momentum buffer gives the same first
 * step as PyTorch's clone of the first gradient. step is the 1-based count
 * of optimizer steps including this one (Adam's bias correction). wd == 0
 * skips the decay term, as PyTorch does.
 */
void tr_optim_update(enum tr_optim_kind kind, const struct tr_optim_hparams *hp, long step,
		     float *param, const float *grad, float *slot0, float *slot1, size_t n);
/*
 * The float scalars of that update (formula.h's tr_f_sgd_update and
 * tr_f_adam_update apply them per element; the backends' optim_update op
 * takes them).
 */
struct tr_f_optim tr_optim_step_scalars(enum tr_optim_kind kind, const struct tr_optim_hparams *hp,
					long step);

/*
 * torch.nn.utils.clip_grad_norm_ over one flat gradient array: the L2 norm
 * of all of it (accumulated in double, then rounded to float), then
 * grads *= min(max_norm / (norm + 1e-6), 1) computed in float as torch
 * does. Returns the norm. torch sums in another order, so the norm may
 * differ from its in the last float bits.
 */
double tr_optim_clip_grad_norm(float *grads, size_t n, double max_norm);
/* Its factor from the sum of the squared gradients: scale by it when it is below 1. */
float tr_optim_clip_coef(double sum_squares, double max_norm);

/* ModelEMA's counter. Zero-initialize, or set updates when resuming. */
struct tr_optim_ema {
	long updates;
};

/* decay * (1 - exp(-updates / tau)) with YOLOv5's 0.9999 and 2000. */
double tr_optim_ema_decay(long updates);

/* updates += 1, and the decay for the new count (ModelEMA.update's d). */
double tr_optim_ema_next_decay(struct tr_optim_ema *ema);

/*
 * ema = ema * d + (1 - d) * model over n floats, in float with d and 1 - d
 * rounded to float, as ModelEMA does to every floating-point state_dict
 * entry: parameters and float buffers (BN running statistics, anchors),
 * not num_batches_tracked. Call it once per float allocation with the d of
 * one tr_optim_ema_next_decay.
 */
void tr_optim_ema_update(float *ema, const float *model, size_t n, double d);

#endif
