/*
 * syncbn.c - SyncBatchNorm over a communicator (see syncbn.h). The wrapper
 * is a copy of the inner backend's op table with bn_forward_train and
 * bn_backward replaced; everything else runs the inner ops unchanged.
 *
 * The wrapper never touches tensor data: the per-element passes are the
 * inner backend's ops bn_channel_sums (per-channel sums in double) and
 * bn_channel_affine (the folded per-channel scale and shift). Between them
 * the sums are all-reduced in double (in float, a channel whose mean is
 * far from zero against its spread would lose its variance) where the
 * backend wrote them: the communicator takes buffers in the backend's
 * device memory (NCCL: the rank's GPU; the thread communicator: host
 * memory, which is the CPU backend's device memory and the emulated CUDA
 * backend's), so they never travel to the host to be reduced. The few
 * per-channel values the folding needs (sums, gamma, beta, statistics,
 * coefficients: O(channels)) come to the host and back through download
 * and upload, and the folding runs on the host in double, with the
 * formulas of the CPU backend's BN: a handful of small synchronous copies
 * per BN layer, the price of keeping one copy of that algebra.
 */
#include "syncbn.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>

#include "ops_check.h"

/* The wrapper: its handle first, so an op's b leads back to it. */
struct syncbn {
	struct tr_backend base; /* base.state = inner->state */
	struct tr_ops ops;	/* inner's table, BN train ops replaced */
	struct tr_backend *inner;
	struct tr_comm *comm;
	int max_channels;
	/* inner's device memory: what the all-reduces carry, the means, the coefficients */
	double *sums; /* [2 * max_channels + 1]: bn_channel_sums' output, then a count */
	double *mean; /* [max_channels] */
	float *coef;  /* [3 * max_channels]: bn_channel_affine's k, a, d */
	/* host copies, one allocation: host_sums [2C + 1], host_mean [C] (doubles) */
	double *host_sums, *host_mean;
	/* and max_channels floats each (host_coef 3x), one allocation from gamma */
	float *gamma, *beta, *running_mean, *running_var, *save_mean, *save_invstd, *dgamma, *dbeta,
	    *host_coef;
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

static int download(struct syncbn *s, void *host, const void *dev, size_t bytes, struct ut_err *err)
{
	return s->inner->ops->download(s->inner, host, dev, bytes, err);
}

static int upload(struct syncbn *s, void *dev, const void *host, size_t bytes, struct ut_err *err)
{
	return s->inner->ops->upload(s->inner, dev, host, bytes, err);
}

/*
 * The sum over the ranks of count doubles of device memory, in place. The
 * communicator may run on a stream of its own (NCCL does), so the
 * backend's work on the buffer is finished first.
 */
static int all_reduce(struct syncbn *s, double *dev, size_t count, struct ut_err *err)
{
	if (s->inner->ops->sync(s->inner, err) != 0)
		return -1;
	return tr_comm_all_reduce_sum_f64(s->comm, dev, count, err);
}

static int sync_bn_forward_train(struct tr_backend *b, const struct tr_tensor *x,
				 const float *gamma, const float *beta, float eps, float momentum,
				 float *running_mean, float *running_var, float *save_mean,
				 float *save_invstd, struct tr_tensor *y, struct ut_err *err)
{
	struct syncbn *s = syncbn_of(b);
	struct tr_backend *in = s->inner;
	struct tr_shape shape = x->shape;
	int channels = shape.c;
	size_t nc = (size_t)channels, bytes = nc * sizeof(float);
	if (check_bn(s, "bn_forward_train", shape, err) != 0 ||
	    tr_bn_channel_check("bn_forward_train", x, NULL, y, err) != 0)
		return -1;
	/* 1: sums and counts of every rank -> the global mean */
	double rank_count = (double)((size_t)shape.n * (size_t)shape.h * (size_t)shape.w);
	if (in->ops->memset(in, s->mean, 0, nc * sizeof(double), err) != 0 ||
	    in->ops->bn_channel_sums(in, x, NULL, s->mean, s->sums, err) != 0 ||
	    upload(s, s->sums + nc, &rank_count, sizeof(double), err) != 0 ||
	    all_reduce(s, s->sums, nc + 1, err) != 0 ||
	    download(s, s->host_sums, s->sums, (nc + 1) * sizeof(double), err) != 0)
		return -1;
	double count = s->host_sums[channels];
	if (count < 2)
		return ut_err_set(err,
				  "syncbn bn_forward_train: %g value per channel (training "
				  "needs 2 or more)",
				  count);
	/* 2: squared deviations from it -> the global variance (means kept in double) */
	for (int c = 0; c < channels; c++)
		s->host_mean[c] = s->host_sums[c] / count;
	if (upload(s, s->mean, s->host_mean, nc * sizeof(double), err) != 0 ||
	    in->ops->bn_channel_sums(in, x, NULL, s->mean, s->sums, err) != 0 ||
	    all_reduce(s, s->sums + nc, nc, err) != 0 ||
	    download(s, s->host_sums + nc, s->sums + nc, nc * sizeof(double), err) != 0 ||
	    download(s, s->gamma, gamma, bytes, err) != 0 ||
	    download(s, s->beta, beta, bytes, err) != 0 ||
	    download(s, s->running_mean, running_mean, bytes, err) != 0 ||
	    download(s, s->running_var, running_var, bytes, err) != 0)
		return -1;
	for (int c = 0; c < channels; c++) {
		double mean = s->host_mean[c], sq = s->host_sums[channels + c];
		double invstd = 1.0 / sqrt(sq / count + eps);
		double unbiased = sq / (count - 1); /* running_var, as PyTorch */
		float g = s->gamma[c];
		s->save_mean[c] = (float)mean;
		s->save_invstd[c] = (float)invstd;
		s->running_mean[c] =
		    (float)((1.0 - momentum) * s->running_mean[c] + momentum * mean);
		s->running_var[c] =
		    (float)((1.0 - momentum) * s->running_var[c] + momentum * unbiased);
		/* y = x * scale + shift */
		s->host_coef[c] = 0;
		s->host_coef[channels + c] = (float)(g * invstd);
		s->host_coef[2 * channels + c] = (float)(s->beta[c] - mean * (g * invstd));
	}
	if (upload(s, save_mean, s->save_mean, bytes, err) != 0 ||
	    upload(s, save_invstd, s->save_invstd, bytes, err) != 0 ||
	    upload(s, running_mean, s->running_mean, bytes, err) != 0 ||
	    upload(s, running_var, s->running_var, bytes, err) != 0 ||
	    upload(s, s->coef, s->host_coef, 3 * bytes, err) != 0)
		return -1;
	return in->ops->bn_channel_affine(in, x, NULL, s->coef, y, err);
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
	struct tr_backend *in = s->inner;
	struct tr_shape shape = x->shape;
	int channels = shape.c;
	size_t nc = (size_t)channels, bytes = nc * sizeof(float);
	if (check_bn(s, "bn_backward", shape, err) != 0 ||
	    tr_bn_channel_check("bn_backward", x, dy, dx, err) != 0)
		return -1;
	/* the rank's sums about the saved mean, widened to double as the CPU's BN does */
	if (download(s, s->save_mean, save_mean, bytes, err) != 0)
		return -1;
	for (int c = 0; c < channels; c++)
		s->host_mean[c] = s->save_mean[c];
	if (upload(s, s->mean, s->host_mean, nc * sizeof(double), err) != 0 ||
	    in->ops->bn_channel_sums(in, x, dy, s->mean, s->sums, err) != 0 ||
	    download(s, s->host_sums, s->sums, 2 * nc * sizeof(double), err) != 0 ||
	    download(s, s->save_invstd, save_invstd, bytes, err) != 0 ||
	    download(s, s->gamma, gamma, bytes, err) != 0 ||
	    download(s, s->dgamma, dgamma, bytes, err) != 0 ||
	    download(s, s->dbeta, dbeta, bytes, err) != 0)
		return -1;
	for (int c = 0; c < channels; c++) {
		s->dgamma[c] += (float)(s->host_sums[channels + c] * s->save_invstd[c]);
		s->dbeta[c] += (float)s->host_sums[c];
	}
	double rank_count = (double)((size_t)shape.n * (size_t)shape.h * (size_t)shape.w);
	if (upload(s, dgamma, s->dgamma, bytes, err) != 0 ||
	    upload(s, dbeta, s->dbeta, bytes, err) != 0 ||
	    upload(s, s->sums + 2 * nc, &rank_count, sizeof(double), err) != 0 ||
	    all_reduce(s, s->sums, 2 * nc + 1, err) != 0 ||
	    download(s, s->host_sums, s->sums, (2 * nc + 1) * sizeof(double), err) != 0)
		return -1;
	double count = s->host_sums[2 * channels];
	for (int c = 0; c < channels; c++) {
		double mean = s->save_mean[c], invstd = s->save_invstd[c];
		double k = s->gamma[c] * invstd;
		double mean_dy = s->host_sums[c] / count;
		double mean_dy_xhat = s->host_sums[channels + c] * invstd / count;
		/* dx = k * dy + a * x + d */
		s->host_coef[c] = (float)k;
		s->host_coef[channels + c] = (float)(-k * mean_dy_xhat * invstd);
		s->host_coef[2 * channels + c] =
		    (float)(k * (-mean_dy + mean_dy_xhat * invstd * mean));
	}
	if (upload(s, s->coef, s->host_coef, 3 * bytes, err) != 0)
		return -1;
	return in->ops->bn_channel_affine(in, x, dy, s->coef, dx, err);
}

static void syncbn_destroy(struct tr_backend *b)
{
	struct syncbn *s = syncbn_of(b);
	s->inner->ops->free(s->inner, s->sums);
	s->inner->ops->free(s->inner, s->mean);
	s->inner->ops->free(s->inner, s->coef);
	free(s->host_sums);
	free(s->gamma);
	free(s);
}

/* The device buffers (inner's alloc) and host copies of a wrapper sized for max_channels. */
static int syncbn_alloc(struct syncbn *s, struct ut_err *err)
{
	struct tr_backend *in = s->inner;
	size_t nc = (size_t)s->max_channels;
	if (in->ops->alloc(in, (2 * nc + 1) * sizeof(double), (void **)&s->sums, err) != 0 ||
	    in->ops->alloc(in, nc * sizeof(double), (void **)&s->mean, err) != 0 ||
	    in->ops->alloc(in, 3 * nc * sizeof(float), (void **)&s->coef, err) != 0)
		return -1;
	s->host_sums = malloc((3 * nc + 1) * sizeof(double));
	s->gamma = malloc(11 * nc * sizeof(float));
	if (s->host_sums == NULL || s->gamma == NULL)
		return ut_err_set(err, "syncbn: out of memory for %d channels", s->max_channels);
	s->host_mean = s->host_sums + 2 * nc + 1;
	float **slices[] = {&s->beta,	     &s->running_mean, &s->running_var, &s->save_mean,
			    &s->save_invstd, &s->dgamma,       &s->dbeta,	&s->host_coef};
	for (size_t k = 0; k < sizeof(slices) / sizeof(slices[0]); k++)
		*slices[k] = s->gamma + (k + 1) * nc;
	return 0;
}

int tr_syncbn_backend_create(struct tr_backend *inner, struct tr_comm *comm, int max_channels,
			     struct tr_backend **out, struct ut_err *err)
{
	*out = NULL;
	if (max_channels < 1)
		return ut_err_set(err, "syncbn: max_channels %d is below 1", max_channels);
	if (inner->ops->bn_channel_sums == NULL || inner->ops->bn_channel_affine == NULL)
		return ut_err_set(err, "syncbn: backend %s has no bn_channel_sums/affine ops",
				  inner->ops->name);
	struct syncbn *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return ut_err_set(err, "syncbn: out of memory");
	s->ops = *inner->ops;
	s->ops.bn_forward_train = sync_bn_forward_train;
	s->ops.bn_backward = sync_bn_backward;
	s->inner = inner;
	s->comm = comm;
	s->max_channels = max_channels;
	s->base =
	    (struct tr_backend){.ops = &s->ops, .state = inner->state, .destroy = syncbn_destroy};
	if (syncbn_alloc(s, err) != 0) {
		syncbn_destroy(&s->base);
		return -1;
	}
	*out = &s->base;
	return 0;
}
