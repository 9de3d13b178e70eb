/*
 * pcg.h - PCG32 random numbers (O'Neill's published pcg32 algorithm,
 * XSH-RR output on a 64-bit LCG), with the draws breeding needs.
 *
 * The state is two integers a caller can save and restore exactly. Every
 * generation of an evolution draws from its own stream, derived from
 * (evolution seed, generation, purpose), so a generation's random choices do
 * not depend on how many draws other generations made.
 */
#ifndef UT_PCG_H
#define UT_PCG_H

#include <stddef.h>
#include <stdint.h>

struct ut_pcg {
	uint64_t state;
	uint64_t inc; /* stream selector, always odd */
};

/* What a stream is used for; part of the stream's identity. */
enum ut_pcg_purpose { UT_PCG_BREED = 1, UT_PCG_TRAIN_SEED = 2, UT_PCG_GA = 3 };

/* pcg32_srandom: seed the generator with a start state and a sequence. */
void ut_pcg_seed(struct ut_pcg *rng, uint64_t initstate, uint64_t initseq);
/* The stream of one generation of an evolution. */
void ut_pcg_stream(struct ut_pcg *rng, uint64_t seed, long generation, enum ut_pcg_purpose purpose);
/* Next 32 random bits. */
uint32_t ut_pcg_next(struct ut_pcg *rng);
/* Uniform double in [0, 1) with 53 random bits. */
double ut_pcg_uniform(struct ut_pcg *rng);
/* Standard normal draw (Box-Muller, one value per call). */
double ut_pcg_normal(struct ut_pcg *rng);
/* Uniform integer in [0, bound) without modulo bias; bound > 0. */
uint32_t ut_pcg_below(struct ut_pcg *rng, uint32_t bound);
/*
 * Index i chosen with probability weights[i] / sum(weights). Weights must be
 * finite and >= 0 with a positive sum; otherwise returns 0.
 */
size_t ut_pcg_choice(struct ut_pcg *rng, const double *weights, size_t n);

#endif
