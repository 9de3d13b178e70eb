/*
 * pcg.c - PCG32 and the draws built on it (see pcg.h).
 */
#include "pcg.h"

#include <math.h>

#define PCG_MULT 6364136223846793005ULL

uint32_t ut_pcg_next(struct ut_pcg *rng)
{
	uint64_t old = rng->state;
	rng->state = old * PCG_MULT + rng->inc;
	uint32_t xorshifted = (uint32_t)(((old >> 18u) ^ old) >> 27u);
	uint32_t rot = (uint32_t)(old >> 59u);
	return (xorshifted >> rot) | (xorshifted << ((-rot) & 31u));
}

void ut_pcg_seed(struct ut_pcg *rng, uint64_t initstate, uint64_t initseq)
{
	rng->state = 0;
	rng->inc = (initseq << 1u) | 1u;
	ut_pcg_next(rng);
	rng->state += initstate;
	ut_pcg_next(rng);
}

void ut_pcg_stream(struct ut_pcg *rng, uint64_t seed, long generation, enum ut_pcg_purpose purpose)
{
	/* 8 bits of purpose below the generation keep every stream distinct */
	uint64_t sequence = ((uint64_t)generation << 8) | (uint64_t)purpose;
	ut_pcg_seed(rng, seed, sequence);
}

double ut_pcg_uniform(struct ut_pcg *rng)
{
	uint64_t high = ut_pcg_next(rng);
	uint64_t low = ut_pcg_next(rng);
	uint64_t bits = ((high << 32) | low) >> 11;
	return (double)bits * (1.0 / 9007199254740992.0);
}

double ut_pcg_normal(struct ut_pcg *rng)
{
	double u1 = 1.0 - ut_pcg_uniform(rng); /* (0, 1]: log is finite */
	double u2 = ut_pcg_uniform(rng);
	return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

uint32_t ut_pcg_below(struct ut_pcg *rng, uint32_t bound)
{
	uint32_t threshold = (-bound) % bound;
	for (;;) {
		uint32_t r = ut_pcg_next(rng);
		if (r >= threshold)
			return r % bound;
	}
}

size_t ut_pcg_choice(struct ut_pcg *rng, const double *weights, size_t n)
{
	double total = 0;
	for (size_t i = 0; i < n; i++) {
		if (!(weights[i] >= 0) || !isfinite(weights[i]))
			return 0;
		total += weights[i];
	}
	if (!(total > 0))
		return 0;
	double target = ut_pcg_uniform(rng) * total;
	double cumulative = 0;
	size_t last_positive = 0;
	for (size_t i = 0; i < n; i++) {
		if (weights[i] > 0)
			last_positive = i;
		cumulative += weights[i];
		if (target < cumulative)
			return i;
	}
	return last_positive; /* rounding left target at the very top */
}
