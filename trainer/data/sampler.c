/*
 * sampler.c - DistributedSampler's sharding (see sampler.h), with torch's
 * CPU randperm: mt19937 (Matsumoto and Nishimura's generator, as the C++
 * standard and torch's CPUGeneratorImpl define it: 32-bit seed, 624-word
 * state) and a forward Fisher-Yates pass that swaps position i with i +
 * (draw mod (n - i)).
 */
#include "sampler.h"

#include <stdlib.h>

enum { MT_N = 624, MT_M = 397 };

struct mt19937 {
	uint32_t state[MT_N];
	int next;
};

static void mt_seed(struct mt19937 *mt, uint32_t seed)
{
	mt->state[0] = seed;
	for (int i = 1; i < MT_N; i++) {
		uint32_t prev = mt->state[i - 1];
		mt->state[i] = 1812433253u * (prev ^ (prev >> 30)) + (uint32_t)i;
	}
	mt->next = MT_N;
}

/* The twist: a new block of 624 words from the last. */
static void mt_twist(struct mt19937 *mt)
{
	for (int i = 0; i < MT_N; i++) {
		uint32_t y =
		    (mt->state[i] & 0x80000000u) | (mt->state[(i + 1) % MT_N] & 0x7fffffffu);
		mt->state[i] =
		    mt->state[(i + MT_M) % MT_N] ^ (y >> 1) ^ ((y & 1u) ? 0x9908b0dfu : 0u);
	}
	mt->next = 0;
}

static uint32_t mt_next(struct mt19937 *mt)
{
	if (mt->next >= MT_N)
		mt_twist(mt);
	uint32_t y = mt->state[mt->next++];
	y ^= y >> 11;
	y ^= (y << 7) & 0x9d2c5680u;
	y ^= (y << 15) & 0xefc60000u;
	y ^= y >> 18;
	return y;
}

void tr_randperm(uint64_t seed, long n, long *out)
{
	struct mt19937 mt;
	mt_seed(&mt, (uint32_t)seed);
	for (long i = 0; i < n; i++)
		out[i] = i;
	for (long i = 0; i + 1 < n; i++) {
		long z = (long)(mt_next(&mt) % (uint64_t)(n - i));
		long swap = out[i];
		out[i] = out[i + z];
		out[i + z] = swap;
	}
}

struct tr_sampler {
	struct tr_sampler_opts opts;
	long num_samples, total_size;
	long *order;   /* [n] the epoch's order before padding */
	long *indices; /* [num_samples] this rank's */
};

int tr_sampler_create(const struct tr_sampler_opts *opts, struct tr_sampler **out,
		      struct ut_err *err)
{
	*out = NULL;
	if (opts->n < 1)
		return ut_err_set(err, "sampler: dataset size %ld is below 1", opts->n);
	if (opts->world < 1)
		return ut_err_set(err, "sampler: world size %d is below 1", opts->world);
	if (opts->rank < 0 || opts->rank >= opts->world)
		return ut_err_set(err, "sampler: rank %d is outside 0..%d", opts->rank,
				  opts->world - 1);
	if ((uint64_t)opts->n >= UINT32_MAX / 20)
		return ut_err_set(
		    err, "sampler: %ld images are too many for torch's randperm order", opts->n);
	struct tr_sampler *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return ut_err_set(err, "sampler: out of memory");
	s->opts = *opts;
	s->num_samples = (opts->n + opts->world - 1) / opts->world;
	s->total_size = s->num_samples * opts->world;
	s->order = malloc(sizeof(long) * (size_t)opts->n);
	s->indices = malloc(sizeof(long) * (size_t)s->num_samples);
	if (s->order == NULL || s->indices == NULL) {
		tr_sampler_free(s);
		return ut_err_set(err, "sampler: out of memory for %ld images", opts->n);
	}
	tr_sampler_set_epoch(s, 0);
	*out = s;
	return 0;
}

void tr_sampler_free(struct tr_sampler *s)
{
	if (s == NULL)
		return;
	free(s->order);
	free(s->indices);
	free(s);
}

void tr_sampler_set_epoch(struct tr_sampler *s, long epoch)
{
	long n = s->opts.n;
	if (s->opts.shuffle) {
		tr_randperm(s->opts.seed + (uint64_t)epoch, n, s->order);
	} else {
		for (long i = 0; i < n; i++)
			s->order[i] = i;
	}
	/*
	 * Padded position p >= n repeats order[p - n] (padding <= n) or, when
	 * world > n, cycles the order again (indices * ceil(padding / n)):
	 * both are order[p mod n]. Rank r takes positions r, r + world, ...
	 */
	for (long k = 0; k < s->num_samples; k++) {
		long p = s->opts.rank + k * s->opts.world;
		s->indices[k] = s->order[p % n];
	}
}

const long *tr_sampler_indices(const struct tr_sampler *s)
{
	return s->indices;
}

long tr_sampler_num_samples(const struct tr_sampler *s)
{
	return s->num_samples;
}

int tr_sampler_rank_batch(int batch_size, int world, int *per_rank, struct ut_err *err)
{
	if (world < 1)
		return ut_err_set(err, "sampler: world size %d is below 1", world);
	if (batch_size < world || batch_size % world != 0)
		return ut_err_set(err,
				  "--batch-size %d must be a multiple of WORLD_SIZE %d (YOLOv5 "
				  "asserts it for DDP)",
				  batch_size, world);
	*per_rank = batch_size / world;
	return 0;
}
