/*
 * gp.h - a Gaussian-process model of fitness over normalised hyps (issue
 * 16): `--algorithm guided` fits one to the evaluations it has and breeds
 * the proposal the model rates best among several mutations (robust.h).
 *
 * The model: targets standardised (mean 0, sd 1), a squared-exponential
 * kernel k(a, b) = exp(-|a - b|^2 / (2 l^2)) of one length scale l over
 * all coordinates, and a noise ratio r on the diagonal (each evaluation is
 * one noisy run); l in {0.3, 0.6, 1.2, 2.4} and r in {0.1, 0.3, 1} are the
 * pair of largest log marginal likelihood. With `relevance` (automatic
 * relevance determination), then each key in turn gets the weight of its
 * squared distance from {0, 1/4, 1, 4} (scale 0, 1/2, 1, 2; 0: the key
 * does not matter) that raises the likelihood most, one pass. Prediction:
 * mean k*^T K^-1 y, variance 1 - k*^T K^-1 k* (of the noise-free value),
 * both mapped back to fitness units. Plain doubles, no randomness: the same points give the
 * same model.
 */
#ifndef EV_GP_H
#define EV_GP_H

#include "ut.h"

struct ev_gp {
	int n, d;
	double length, noise; /* the chosen l and r */
	double mean, sd;      /* of the targets */
	double *x;	      /* n x d points */
	double *alpha;	      /* K^-1 y (standardised) */
	double *chol;	      /* the lower Cholesky factor of K, n x n */
	double *work;	      /* n */
	double *weight;	      /* d: each key's weight in the squared distance */
};

/*
 * Lower-triangular l with l l^T = a (n x n, row-major). Returns -1 if a
 * pivot is not positive (a not positive definite).
 */
int ev_cholesky(const double *a, int n, double *l);

/*
 * Fit the model to n points x (n x d, row-major) with fitness y. Returns 1
 * when fitted, 0 when the points cannot make a model (fewer than 2, or
 * every y equal; gp then holds nothing), -1 with err when out of memory.
 * Free with ev_gp_free either way.
 */
int ev_gp_fit(struct ev_gp *gp, const double *x, const double *y, int n, int d, int relevance,
	      struct ut_err *err);

/* The model's mean and standard deviation of the noise-free fitness at u (d values). */
void ev_gp_predict(struct ev_gp *gp, const double *u, double *mean, double *sd);

void ev_gp_free(struct ev_gp *gp);

#endif
