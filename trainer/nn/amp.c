/*
 * amp.c - the --amp value and torch's dynamic loss scaler (GradScaler) as
 * YOLOv5 v7.0 uses it; the rules are listed in amp.h.
 */
#include "amp.h"

#include <math.h>
#include <string.h>

/* --amp's values, in enum order. */
static const char *const mode_names[] = {
    [TR_AMP_OFF] = "off",
    [TR_AMP_FP16] = "fp16",
    [TR_AMP_BF16] = "bf16",
};

#define MODE_COUNT ((int)(sizeof(mode_names) / sizeof(mode_names[0])))

int tr_amp_parse(const char *text, enum tr_amp_mode *out, struct ut_err *err)
{
	char quoted[UT_QUOTE_LEN];

	for (int i = 0; i < MODE_COUNT; i++)
		if (text && strcmp(text, mode_names[i]) == 0) {
			*out = (enum tr_amp_mode)i;
			return 0;
		}
	return ut_err_set(err, "--amp: '%s' is not one of off, fp16, bf16",
			  ut_quote(text ? text : "", quoted, sizeof(quoted)));
}

const char *tr_amp_mode_name(enum tr_amp_mode mode)
{
	return (unsigned)mode < (unsigned)MODE_COUNT ? mode_names[mode] : "?";
}

int tr_amp_mode_scaled(enum tr_amp_mode mode)
{
	return mode == TR_AMP_FP16;
}

int tr_amp_scaler_init(struct tr_amp_scaler *scaler, enum tr_amp_mode mode,
		       const struct tr_amp_scaler_config *config, struct ut_err *err)
{
	struct tr_amp_scaler_config c = config ? *config : TR_AMP_SCALER_DEFAULTS;

	if (!(c.growth_factor > 1.0))
		return ut_err_set(err, "loss scaler: growth_factor %g must be > 1",
				  c.growth_factor);
	if (!(c.backoff_factor < 1.0))
		return ut_err_set(err, "loss scaler: backoff_factor %g must be < 1",
				  c.backoff_factor);
	if (!(c.init_scale > 0.0f) || !isfinite(c.init_scale))
		return ut_err_set(err, "loss scaler: init_scale %g must be finite and > 0",
				  (double)c.init_scale);
	if (c.growth_interval < 1)
		return ut_err_set(err, "loss scaler: growth_interval %lld must be > 0",
				  (long long)c.growth_interval);
	memset(scaler, 0, sizeof(*scaler));
	scaler->enabled = tr_amp_mode_scaled(mode);
	scaler->config = c;
	scaler->scale = c.init_scale;
	scaler->stage = TR_AMP_READY;
	return 0;
}

float tr_amp_scale_loss(const struct tr_amp_scaler *scaler, float loss)
{
	return scaler->enabled ? loss * scaler->scale : loss;
}

float tr_amp_inv_scale(const struct tr_amp_scaler *scaler)
{
	return scaler->enabled ? (float)(1.0 / (double)scaler->scale) : 1.0f;
}

int tr_amp_record_unscaled(struct tr_amp_scaler *scaler, int found_inf, struct ut_err *err)
{
	if (!scaler->enabled)
		return 0;
	if (scaler->stage == TR_AMP_UNSCALED)
		return ut_err_set(err, "loss scaler: unscale called twice since the last update");
	if (scaler->stage == TR_AMP_STEPPED)
		return ut_err_set(err, "loss scaler: unscale called after step");
	scaler->found_inf = found_inf != 0;
	scaler->stage = TR_AMP_UNSCALED;
	return 0;
}

int tr_amp_unscale(struct tr_amp_scaler *scaler, float *grads, size_t n, struct ut_err *err)
{
	float inv_scale = tr_amp_inv_scale(scaler);
	int found_inf = 0;

	if (!scaler->enabled)
		return 0;
	/* check the stage before touching the gradients: a second unscale must not divide again */
	if (scaler->stage != TR_AMP_READY)
		return tr_amp_record_unscaled(scaler, 0, err);
	for (size_t i = 0; i < n; i++)
		grads[i] = tr_amp_unscale_value(grads[i], inv_scale, &found_inf);
	return tr_amp_record_unscaled(scaler, found_inf, err);
}

int tr_amp_step(struct tr_amp_scaler *scaler, float *grads, size_t n, int *do_step,
		struct ut_err *err)
{
	*do_step = 1;
	if (!scaler->enabled)
		return 0;
	if (scaler->stage == TR_AMP_STEPPED)
		return ut_err_set(err, "loss scaler: step called twice since the last update");
	if (scaler->stage == TR_AMP_READY && tr_amp_unscale(scaler, grads, n, err) < 0)
		return -1;
	*do_step = !scaler->found_inf;
	scaler->steps_skipped += !*do_step;
	scaler->stage = TR_AMP_STEPPED;
	return 0;
}

int tr_amp_update(struct tr_amp_scaler *scaler, struct ut_err *err)
{
	const struct tr_amp_scaler_config *c = &scaler->config;

	if (!scaler->enabled)
		return 0;
	if (scaler->stage == TR_AMP_READY)
		return ut_err_set(err,
				  "loss scaler: update with no inf check since the last update "
				  "(call unscale or step first)");
	if (scaler->found_inf) {
		scaler->scale = (float)((double)scaler->scale * c->backoff_factor);
		scaler->growth_tracker = 0;
	} else if ((int64_t)scaler->growth_tracker + 1 == c->growth_interval) {
		float grown = (float)((double)scaler->scale * c->growth_factor);
		if (isfinite(grown)) /* torch never grows the scale to inf */
			scaler->scale = grown;
		scaler->growth_tracker = 0;
	} else {
		scaler->growth_tracker++;
	}
	scaler->found_inf = 0;
	scaler->stage = TR_AMP_READY;
	return 0;
}
