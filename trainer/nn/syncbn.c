/*
 * syncbn.c - SyncBatchNorm over a communicator (see syncbn.h). The wrapper
 * is a copy of the inner backend's op table with bn_forward_train and
 * bn_backward replaced; everything else runs the inner ops unchanged.
 * Per-channel sums are taken in double on each rank and all-reduced as
 * double (in float, a channel whose mean is far from zero against its
 * spread would lose its variance), and the elementwise passes use the
 * same folded per-channel scale and shift as the CPU backend's BN.
 */
#include "syncbn.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>

/* The wrapper: its handle first, so an op's b leads back to it. */
struct syncbn {
	struct tr_backend base; /* base.state = inner->state */
	struct tr_ops ops;	/* inner's table, BN train ops replaced */
	struct tr_backend *inner;
	struct tr_comm *comm;
	int max_channels;
	double *reduce; /* [2 * max_channels + 1]: what one all-reduce carries */
};

static struct syncbn *syncbn_of(struct tr_backend *b)
{
	return (struct syncbn *)(void *)b;
}

/* Values per channel of x on this rank, checked against the wrapper's limits. */
static int check_bn(const struct syncbn *s, const char *op, struct tr_shape shape,
		    struct ut_err *err)
{
	if (shape.c < 1 || shape.c > s->max_channels)
		return ut_err_set(err, "syncbn %s: %d channels (planned for at most %d)", op,
				  shape.c, s->max_channels);
	/* the count travels as a float: exact below 2^24 */
	if ((double)shape.n * shape.h * shape.w * s->comm->world >= 16777216.0)
		return ut_err_set(err,
				  "syncbn %s: %d x %d x %d values per channel on %d ranks "
				  "are too many to count in float",
				  op, shape.n, shape.h, shape.w, s->comm->world);
	return 0;
}

/* x[n, c, :, :] of channel c as one plane per image: sum and sum of (x - mean)^2. */
static void channel_sums(const struct tr_tensor *x, int c, double mean, double *sum, double *sq)
{
	struct tr_shape s = x->shape;
	size_t hw = (size_t)s.h * (size_t)s.w;
	double total = 0, dev = 0;
	for (int n = 0; n < s.n; n++) {
		const float *p = x->data + ((size_t)n * (size_t)s.c + (size_t)c) * hw;
		for (size_t i = 0; i < hw; i++) {
			double d = (double)p[i] - mean;
			total += p[i];
			dev += d * d;
		}
	}
	*sum = total;
	*sq = dev;
}

static int sync_bn_forward_train(struct tr_backend *b, const struct tr_tensor *x,
				 const float *gamma, const float *beta, float eps, float momentum,
				 float *running_mean, float *running_var, float *save_mean,
				 float *save_invstd, struct tr_tensor *y, struct ut_err *err)
{
	struct syncbn *s = syncbn_of(b);
	struct tr_shape shape = x->shape;
	int channels = shape.c;
	size_t hw = (size_t)shape.h * (size_t)shape.w;
	if (check_bn(s, "bn_forward_train", shape, err) != 0)
		return -1;
	/* 1: sums and counts of every rank -> the global mean */
	for (int c = 0; c < channels; c++) {
		double sum, sq;
		channel_sums(x, c, 0.0, &sum, &sq);
		s->reduce[c] = sum;
	}
	s->reduce[channels] = (double)((size_t)shape.n * hw);
	if (tr_comm_all_reduce_sum_f64(s->comm, s->reduce, (size_t)channels + 1, err) != 0)
		return -1;
	double count = s->reduce[channels];
	if (count < 2)
		return ut_err_set(err,
				  "syncbn bn_forward_train: %g value per channel (training "
				  "needs 2 or more)",
				  count);
	/* 2: squared deviations from it -> the global variance (means kept in double) */
	for (int c = 0; c < channels; c++) {
		double sum, sq;
		s->reduce[channels + 1 + c] = s->reduce[c] / count;
		channel_sums(x, c, s->reduce[channels + 1 + c], &sum, &sq);
		s->reduce[c] = sq;
	}
	if (tr_comm_all_reduce_sum_f64(s->comm, s->reduce, (size_t)channels, err) != 0)
		return -1;
	for (int c = 0; c < channels; c++) {
		double mean = s->reduce[channels + 1 + c], sq = s->reduce[c];
		double invstd = 1.0 / sqrt(sq / count + eps);
		double unbiased = sq / (count - 1); /* running_var, as PyTorch */
		save_mean[c] = (float)mean;
		save_invstd[c] = (float)invstd;
		running_mean[c] = (float)((1.0 - momentum) * running_mean[c] + momentum * mean);
		running_var[c] = (float)((1.0 - momentum) * running_var[c] + momentum * unbiased);
		float scale = (float)(gamma[c] * invstd);
		float shift = (float)(beta[c] - mean * (gamma[c] * invstd));
		for (int n = 0; n < shape.n; n++) {
			size_t off = ((size_t)n * (size_t)channels + (size_t)c) * hw;
			for (size_t i = 0; i < hw; i++)
				y->data[off + i] = x->data[off + i] * scale + shift;
		}
	}
	return 0;
}

/*
 * dgamma += the rank's sum(dy * xhat), dbeta += its sum(dy); dx from the
 * all-reduced sums: gamma * invstd * (dy - mean(dy) - xhat * mean(dy *
 * xhat)) over the whole batch. dx may alias dy (all sums come first).
 */
static int sync_bn_backward(struct tr_backend *b, const struct tr_tensor *x,
			    const struct tr_tensor *dy, const float *gamma, const float *save_mean,
			    const float *save_invstd, struct tr_tensor *dx, float *dgamma,
			    float *dbeta, struct ut_err *err)
{
	struct syncbn *s = syncbn_of(b);
	struct tr_shape shape = x->shape;
	int channels = shape.c;
	size_t hw = (size_t)shape.h * (size_t)shape.w;
	if (check_bn(s, "bn_backward", shape, err) != 0)
		return -1;
	for (int c = 0; c < channels; c++) {
		double mean = save_mean[c], sum_dy = 0, sum_dy_xc = 0;
		for (int n = 0; n < shape.n; n++) {
			size_t off = ((size_t)n * (size_t)channels + (size_t)c) * hw;
			for (size_t i = 0; i < hw; i++) {
				sum_dy += dy->data[off + i];
				sum_dy_xc +=
				    (double)dy->data[off + i] * ((double)x->data[off + i] - mean);
			}
		}
		dgamma[c] += (float)(sum_dy_xc * save_invstd[c]);
		dbeta[c] += (float)sum_dy;
		s->reduce[c] = sum_dy;
		s->reduce[channels + c] = sum_dy_xc;
	}
	s->reduce[2 * channels] = (double)((size_t)shape.n * hw);
	if (tr_comm_all_reduce_sum_f64(s->comm, s->reduce, 2 * (size_t)channels + 1, err) != 0)
		return -1;
	double count = s->reduce[2 * channels];
	for (int c = 0; c < channels; c++) {
		double mean = save_mean[c], invstd = save_invstd[c];
		double k = gamma[c] * invstd;
		double mean_dy = s->reduce[c] / count;
		double mean_dy_xhat = s->reduce[channels + c] * invstd / count;
		float kf = (float)k, af = (float)(-k * mean_dy_xhat * invstd);
		float df = (float)(k * (-mean_dy + mean_dy_xhat * invstd * mean));
		for (int n = 0; n < shape.n; n++) {
			size_t off = ((size_t)n * (size_t)channels + (size_t)c) * hw;
			for (size_t i = 0; i < hw; i++)
				dx->data[off + i] =
				    kf * dy->data[off + i] + af * x->data[off + i] + df;
		}
	}
	return 0;
}

static void syncbn_destroy(struct tr_backend *b)
{
	struct syncbn *s = syncbn_of(b);
	free(s->reduce);
	free(s);
}

int tr_syncbn_backend_create(struct tr_backend *inner, struct tr_comm *comm, int max_channels,
			     struct tr_backend **out, struct ut_err *err)
{
	*out = NULL;
	if (max_channels < 1)
		return ut_err_set(err, "syncbn: max_channels %d is below 1", max_channels);
	struct syncbn *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return ut_err_set(err, "syncbn: out of memory");
	s->reduce = malloc(sizeof(double) * (2 * (size_t)max_channels + 1));
	if (s->reduce == NULL) {
		free(s);
		return ut_err_set(err, "syncbn: out of memory for %d channels", max_channels);
	}
	s->ops = *inner->ops;
	s->ops.bn_forward_train = sync_bn_forward_train;
	s->ops.bn_backward = sync_bn_backward;
	s->inner = inner;
	s->comm = comm;
	s->max_channels = max_channels;
	s->base =
	    (struct tr_backend){.ops = &s->ops, .state = inner->state, .destroy = syncbn_destroy};
	*out = &s->base;
	return 0;
}
