/*
 * optim.c - YOLOv5 v7.0's parameter groups, lr/momentum schedule with
 * warmup and accumulation, SGD/Adam/AdamW updates, gradient clipping and
 * weight EMA (see optim.h for the contracts and the call sequence).
 *
 * The schedule repeats Python's double arithmetic operation for operation
 * (so the golden lr_schedule values match exactly); rounding is
 * round-half-to-even everywhere, as Python's round() and numpy's .round()
 * are, which is rint() in the default rounding mode.
 *
 * The updates use fmaf() wherever PyTorch calls add/add_ with an alpha
 * (its CPU kernels compute a + alpha * b as one fused multiply-add); with
 * that, the test's SGD, Adam and AdamW steps equal torch 1.13's bit for bit.
 */
#include "optim.h"

#include <math.h>
#include <string.h>

static const struct {
	const char *name;
	enum tr_optim_kind kind;
} kind_names[] = {
    {"SGD", TR_OPTIM_SGD},
    {"Adam", TR_OPTIM_ADAM},
    {"AdamW", TR_OPTIM_ADAMW},
};

int tr_optim_kind_parse(const char *text, enum tr_optim_kind *out, struct ut_err *err)
{
	for (size_t k = 0; k < sizeof(kind_names) / sizeof(kind_names[0]); k++) {
		if (strcmp(text, kind_names[k].name) == 0) {
			*out = kind_names[k].kind;
			return 0;
		}
	}
	char q[UT_QUOTE_LEN];
	return ut_err_set(err, "optimizer: '%s' is not one of SGD, Adam, AdamW",
			  ut_quote(text, q, sizeof(q)));
}

static bool ends_with(const char *text, const char *suffix)
{
	size_t len = strlen(text), slen = strlen(suffix);
	return len >= slen && strcmp(text + len - slen, suffix) == 0;
}

enum tr_optim_group tr_optim_group_of(const char *name)
{
	const char *dot = strrchr(name, '.');
	const char *leaf = dot != NULL ? dot + 1 : name;
	if (strcmp(leaf, "bias") == 0)
		return TR_OPTIM_GROUP_BIAS;
	if (strcmp(leaf, "weight") == 0 &&
	    (strcmp(name, "bn.weight") == 0 || ends_with(name, ".bn.weight")))
		return TR_OPTIM_GROUP_BN;
	return TR_OPTIM_GROUP_DECAY;
}

double tr_optim_lf_linear(double epoch, long epochs, double lrf)
{
	return (1.0 - epoch / (double)epochs) * (1.0 - lrf) + lrf;
}

double tr_optim_lf_cos(double epoch, long epochs, double lrf)
{
	return ((1.0 - cos(epoch * M_PI / (double)epochs)) / 2.0) * (lrf - 1.0) + 1.0;
}

double tr_optim_lf(const struct tr_optim_config *config, double epoch)
{
	if (config->cos_lr)
		return tr_optim_lf_cos(epoch, config->epochs, config->lrf);
	return tr_optim_lf_linear(epoch, config->epochs, config->lrf);
}

long tr_optim_accumulate(long batch_size)
{
	long rounded = (long)rint((double)TR_OPTIM_NBS / (double)batch_size);
	return rounded > 1 ? rounded : 1;
}

double tr_optim_scaled_decay(double weight_decay, long batch_size)
{
	long accumulate = tr_optim_accumulate(batch_size);
	return weight_decay * ((double)(batch_size * accumulate) / (double)TR_OPTIM_NBS);
}

long tr_optim_warmup_iters(double warmup_epochs, long nb)
{
	long rounded = (long)rint(warmup_epochs * (double)nb);
	return rounded > TR_OPTIM_MIN_WARMUP_ITERS ? rounded : TR_OPTIM_MIN_WARMUP_ITERS;
}

double tr_optim_interp(double x, double x1, double y0, double y1)
{
	if (x >= x1)
		return y1;
	if (x <= 0.0)
		return y0;
	double slope = (y1 - y0) / x1;
	return slope * x + y0;
}

static int check_config(const struct tr_optim_config *c, struct ut_err *err)
{
	if (c->kind != TR_OPTIM_SGD && c->kind != TR_OPTIM_ADAM && c->kind != TR_OPTIM_ADAMW)
		return ut_err_set(err, "optimizer: unknown kind %d", (int)c->kind);
	if (c->batch_size < 1)
		return ut_err_set(err, "optimizer: batch_size %ld < 1", c->batch_size);
	if (c->nb < 1)
		return ut_err_set(err, "optimizer: %ld batches per epoch", c->nb);
	if (c->epochs < 1)
		return ut_err_set(err, "optimizer: epochs %ld < 1", c->epochs);
	if (c->start_epoch < 0 || c->start_epoch > c->epochs)
		return ut_err_set(err, "optimizer: start_epoch %ld outside [0, %ld]",
				  c->start_epoch, c->epochs);
	const struct {
		const char *key;
		double value;
	} rates[] = {
	    {"lr0", c->lr0},
	    {"lrf", c->lrf},
	    {"momentum", c->momentum},
	    {"weight_decay", c->weight_decay},
	    {"warmup_epochs", c->warmup_epochs},
	    {"warmup_momentum", c->warmup_momentum},
	    {"warmup_bias_lr", c->warmup_bias_lr},
	};
	for (size_t k = 0; k < sizeof(rates) / sizeof(rates[0]); k++) {
		if (!isfinite(rates[k].value) || rates[k].value < 0.0)
			return ut_err_set(err, "optimizer: hyp %s = %g must be finite and >= 0",
					  rates[k].key, rates[k].value);
	}
	return 0;
}

int tr_optim_sched_init(struct tr_optim_sched *sched, const struct tr_optim_config *config,
			struct ut_err *err)
{
	memset(sched, 0, sizeof(*sched));
	if (check_config(config, err) != 0)
		return -1;
	sched->config = *config;
	sched->accumulate_nominal = tr_optim_accumulate(config->batch_size);
	sched->weight_decay = tr_optim_scaled_decay(config->weight_decay, config->batch_size);
	sched->nw = tr_optim_warmup_iters(config->warmup_epochs, config->nb);
	sched->accumulate = (double)sched->accumulate_nominal;
	sched->last_opt_step = -1;
	sched->last_epoch = config->start_epoch - 1;
	double lr = config->lr0 * tr_optim_lf(config, 0.0);
	for (int g = 0; g < TR_OPTIM_GROUP_COUNT; g++) {
		sched->lr[g] = lr;
		sched->momentum[g] = config->momentum;
		sched->decay[g] = g == TR_OPTIM_GROUP_DECAY ? sched->weight_decay : 0.0;
	}
	return 0;
}

long tr_optim_sched_batch(struct tr_optim_sched *sched, long epoch, long i)
{
	const struct tr_optim_config *c = &sched->config;
	long ni = i + c->nb * epoch;
	if (ni > sched->nw)
		return ni;
	double x = (double)ni, x1 = (double)sched->nw;
	double accumulate =
	    rint(tr_optim_interp(x, x1, 1.0, (double)TR_OPTIM_NBS / (double)c->batch_size));
	sched->accumulate = accumulate > 1.0 ? accumulate : 1.0;
	double target = c->lr0 * tr_optim_lf(c, (double)epoch);
	for (int g = 0; g < TR_OPTIM_GROUP_COUNT; g++) {
		double start = g == TR_OPTIM_GROUP_BIAS ? c->warmup_bias_lr : 0.0;
		sched->lr[g] = tr_optim_interp(x, x1, start, target);
		if (c->kind == TR_OPTIM_SGD)
			sched->momentum[g] =
			    tr_optim_interp(x, x1, c->warmup_momentum, c->momentum);
	}
	return ni;
}

bool tr_optim_sched_step_due(struct tr_optim_sched *sched, long ni)
{
	if ((double)(ni - sched->last_opt_step) < sched->accumulate)
		return false;
	sched->last_opt_step = ni;
	return true;
}

void tr_optim_sched_epoch_end(struct tr_optim_sched *sched)
{
	sched->last_epoch++;
	double lr = sched->config.lr0 * tr_optim_lf(&sched->config, (double)sched->last_epoch);
	for (int g = 0; g < TR_OPTIM_GROUP_COUNT; g++)
		sched->lr[g] = lr;
}

struct tr_optim_hparams tr_optim_sched_hparams(const struct tr_optim_sched *sched,
					       enum tr_optim_group group)
{
	struct tr_optim_hparams hp = {
	    .lr = sched->lr[group],
	    .momentum = sched->momentum[group],
	    .weight_decay = sched->decay[group],
	};
	return hp;
}

struct tr_f_optim tr_optim_step_scalars(enum tr_optim_kind kind, const struct tr_optim_hparams *hp,
					long step)
{
	struct tr_f_optim s = {
	    .adam = kind != TR_OPTIM_SGD,
	    .decoupled = kind == TR_OPTIM_ADAMW,
	    .has_decay = hp->weight_decay != 0.0,
	    .lr = (float)hp->lr,
	    .momentum = (float)hp->momentum,
	    .decay = (float)hp->weight_decay,
	};
	if (!s.adam)
		return s;
	const double beta1 = hp->momentum, beta2 = TR_OPTIM_ADAM_BETA2;
	const double bias_correction1 = 1.0 - pow(beta1, (double)step);
	const double bias_correction2 = 1.0 - pow(beta2, (double)step);
	s.step_size = (float)(hp->lr / bias_correction1);
	s.bc2_sqrt = (float)sqrt(bias_correction2);
	s.b1 = (float)beta1;
	s.one_minus_b1 = (float)(1.0 - beta1);
	s.b2 = (float)beta2;
	s.one_minus_b2 = (float)(1.0 - beta2);
	s.eps = (float)TR_OPTIM_ADAM_EPS;
	s.shrink = (float)(1.0 - hp->lr * hp->weight_decay);
	return s;
}

void tr_optim_update(enum tr_optim_kind kind, const struct tr_optim_hparams *hp, long step,
		     float *param, const float *grad, float *slot0, float *slot1, size_t n)
{
	const struct tr_f_optim s = tr_optim_step_scalars(kind, hp, step);
	for (size_t k = 0; k < n; k++) {
		if (s.adam)
			tr_f_adam_update(&s, &param[k], grad[k], &slot0[k], &slot1[k]);
		else
			tr_f_sgd_update(&s, &param[k], grad[k], &slot0[k]);
	}
}

float tr_optim_clip_coef(double sum_squares, double max_norm)
{
	/* In float, as torch computes it: number / tensor is reciprocal * number. */
	const float norm = (float)sqrt(sum_squares);
	return (1.0f / (norm + 1e-6f)) * (float)max_norm;
}

double tr_optim_clip_grad_norm(float *grads, size_t n, double max_norm)
{
	double sum = 0.0;
	for (size_t k = 0; k < n; k++)
		sum += (double)grads[k] * (double)grads[k];
	const float coef = tr_optim_clip_coef(sum, max_norm);
	if (coef < 1.0f) {
		for (size_t k = 0; k < n; k++)
			grads[k] *= coef;
	}
	return (double)(float)sqrt(sum);
}

double tr_optim_ema_decay(long updates)
{
	return TR_OPTIM_EMA_DECAY * (1.0 - exp(-(double)updates / TR_OPTIM_EMA_TAU));
}

double tr_optim_ema_next_decay(struct tr_optim_ema *ema)
{
	ema->updates++;
	return tr_optim_ema_decay(ema->updates);
}

void tr_optim_ema_update(float *ema, const float *model, size_t n, double d)
{
	const float keep = (float)d, take = (float)(1.0 - d);
	for (size_t k = 0; k < n; k++)
		ema[k] = tr_f_ema_update(ema[k], model[k], keep, take);
}
