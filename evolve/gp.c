/*
 * gp.c - the Gaussian-process model of fitness (gp.h).
 */
#include "gp.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The grid the marginal likelihood chooses from (gp.h). */
static const double lengths[] = {0.3, 0.6, 1.2, 2.4};
static const double noises[] = {0.1, 0.3, 1.0};
/* with relevance: the weights a key's squared distance may take (scales 0, 1/2, 1, 2) */
static const double weights[] = {0, 0.25, 1, 4};

int ev_cholesky(const double *a, int n, double *l)
{
	memset(l, 0, (size_t)n * (size_t)n * sizeof(*l));
	for (int i = 0; i < n; i++)
		for (int j = 0; j <= i; j++) {
			double sum = a[i * n + j];
			for (int k = 0; k < j; k++)
				sum -= l[i * n + k] * l[j * n + k];
			if (i == j) {
				if (!(sum > 0))
					return -1;
				l[i * n + i] = sqrt(sum);
			} else {
				l[i * n + j] = sum / l[j * n + j];
			}
		}
	return 0;
}

/* b := l^-1 b, l lower triangular n x n; returns |l^-1 b|^2. */
static double forward_solve(const double *l, int n, double *b)
{
	double norm = 0;
	for (int i = 0; i < n; i++) {
		double sum = b[i];
		for (int k = 0; k < i; k++)
			sum -= l[i * n + k] * b[k];
		b[i] = sum / l[i * n + i];
		norm += b[i] * b[i];
	}
	return norm;
}

/* b := (l l^T)^-1 b, l lower triangular n x n. */
static void cholesky_solve(const double *l, int n, double *b)
{
	forward_solve(l, n, b);
	for (int i = n - 1; i >= 0; i--) {
		double sum = b[i];
		for (int k = i + 1; k < n; k++)
			sum -= l[k * n + i] * b[k];
		b[i] = sum / l[i * n + i];
	}
}

/* sum over keys of w_i (a_i - b_i)^2 */
static double squared_distance(const double *a, const double *b, const double *w, int d)
{
	double sum = 0;
	for (int i = 0; i < d; i++)
		sum += w[i] * (a[i] - b[i]) * (a[i] - b[i]);
	return sum;
}

void ev_gp_free(struct ev_gp *gp)
{
	free(gp->x);
	free(gp->alpha);
	free(gp->chol);
	free(gp->work);
	free(gp->weight);
	memset(gp, 0, sizeof(*gp));
}

/*
 * The log marginal likelihood, constants dropped (-z^T K^-1 z / 2 - log det
 * L), of standardised targets z under K = exp(-distance / (2 length^2)) +
 * noise I; l gets K's factor and alpha K^-1 z. -INFINITY if K is not
 * positive definite. k is scratch, n x n.
 */
static double likelihood(const double *distance, int n, double length, double noise,
			 const double *z, double *k, double *l, double *alpha)
{
	size_t nn = (size_t)n * (size_t)n;
	for (size_t e = 0; e < nn; e++)
		k[e] = exp(-distance[e] / (2 * length * length));
	for (int i = 0; i < n; i++)
		k[i * n + i] += noise;
	if (ev_cholesky(k, n, l) != 0)
		return -INFINITY;
	memcpy(alpha, z, (size_t)n * sizeof(*z));
	cholesky_solve(l, n, alpha);
	double sum = 0;
	for (int i = 0; i < n; i++)
		sum -= 0.5 * z[i] * alpha[i] + log(l[i * n + i]);
	return sum;
}

int ev_gp_fit(struct ev_gp *gp, const double *x, const double *y, int n, int d, int relevance,
	      struct ut_err *err)
{
	memset(gp, 0, sizeof(*gp));
	if (n < 2 || d < 1)
		return 0;
	double mean = 0, var = 0;
	for (int i = 0; i < n; i++)
		mean += y[i] / n;
	for (int i = 0; i < n; i++)
		var += (y[i] - mean) * (y[i] - mean) / n;
	if (!(var > 0) || !isfinite(var))
		return 0;
	size_t nn = (size_t)n * (size_t)n;
	/* each key's squared differences, only for the relevance pass */
	double *per_key = relevance ? malloc(nn * (size_t)d * sizeof(*per_key)) : NULL;
	double *distance = malloc(nn * sizeof(*distance)), *trial = malloc(nn * sizeof(*trial));
	double *k = malloc(nn * sizeof(*k)), *l = malloc(nn * sizeof(*l));
	double *z = malloc((size_t)n * sizeof(*z)), *alpha = malloc((size_t)n * sizeof(*alpha));
	gp->x = malloc((size_t)n * (size_t)d * sizeof(*gp->x));
	gp->alpha = malloc((size_t)n * sizeof(*gp->alpha));
	gp->chol = malloc(nn * sizeof(*gp->chol));
	gp->work = malloc((size_t)n * sizeof(*gp->work));
	gp->weight = malloc((size_t)d * sizeof(*gp->weight));
	int rc = 0;
	if ((relevance && per_key == NULL) || distance == NULL || trial == NULL || k == NULL ||
	    l == NULL || z == NULL || alpha == NULL || gp->x == NULL || gp->alpha == NULL ||
	    gp->chol == NULL || gp->work == NULL || gp->weight == NULL) {
		rc = ut_err_set(err, "out of memory");
		goto out;
	}
	memcpy(gp->x, x, (size_t)n * (size_t)d * sizeof(*x));
	gp->n = n;
	gp->d = d;
	gp->mean = mean;
	gp->sd = sqrt(var);
	for (int i = 0; i < n; i++)
		z[i] = (y[i] - mean) / gp->sd;
	for (int q = 0; q < d; q++)
		gp->weight[q] = 1;
	for (int i = 0; i < n; i++)
		for (int j = 0; j < n; j++) {
			distance[i * n + j] = squared_distance(x + i * d, x + j * d, gp->weight, d);
			for (int q = 0; relevance && q < d; q++) {
				double diff = x[i * d + q] - x[j * d + q];
				per_key[((size_t)q * (size_t)n + (size_t)i) * (size_t)n +
					(size_t)j] = diff * diff;
			}
		}
	/* one length scale and noise for all keys ... */
	double best = -INFINITY;
	for (size_t a = 0; a < sizeof(lengths) / sizeof(*lengths); a++)
		for (size_t b = 0; b < sizeof(noises) / sizeof(*noises); b++) {
			double ll = likelihood(distance, n, lengths[a], noises[b], z, k, l, alpha);
			if (ll > best) {
				best = ll;
				gp->length = lengths[a];
				gp->noise = noises[b];
				memcpy(gp->chol, l, nn * sizeof(*l));
				memcpy(gp->alpha, alpha, (size_t)n * sizeof(*alpha));
			}
		}
	/* ... then, with relevance, each key's weight in turn, kept where the likelihood rises */
	for (int q = 0; relevance && best > -INFINITY && q < d; q++) {
		const double *dq = per_key + (size_t)q * nn;
		double chosen = gp->weight[q];
		for (size_t w = 0; w < sizeof(weights) / sizeof(*weights); w++) {
			if (weights[w] == gp->weight[q])
				continue;
			for (size_t e = 0; e < nn; e++)
				trial[e] = distance[e] + (weights[w] - gp->weight[q]) * dq[e];
			double ll = likelihood(trial, n, gp->length, gp->noise, z, k, l, alpha);
			if (ll > best) {
				best = ll;
				chosen = weights[w];
				memcpy(gp->chol, l, nn * sizeof(*l));
				memcpy(gp->alpha, alpha, (size_t)n * sizeof(*alpha));
			}
		}
		for (size_t e = 0; e < nn; e++)
			distance[e] += (chosen - gp->weight[q]) * dq[e];
		gp->weight[q] = chosen;
	}
	rc = best > -INFINITY;
out:
	free(per_key);
	free(distance);
	free(trial);
	free(k);
	free(l);
	free(z);
	free(alpha);
	if (rc != 1)
		ev_gp_free(gp);
	return rc;
}

void ev_gp_predict(struct ev_gp *gp, const double *u, double *mean, double *sd)
{
	double m = 0;
	for (int i = 0; i < gp->n; i++) {
		gp->work[i] = exp(-squared_distance(u, gp->x + i * gp->d, gp->weight, gp->d) /
				  (2 * gp->length * gp->length));
		m += gp->work[i] * gp->alpha[i];
	}
	/* k*^T K^-1 k* = |L^-1 k*|^2: the forward half of the solve */
	double explained = forward_solve(gp->chol, gp->n, gp->work);
	*mean = gp->mean + gp->sd * m;
	*sd = gp->sd * sqrt(fmax(0.0, 1.0 - explained));
}
