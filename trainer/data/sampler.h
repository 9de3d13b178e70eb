/*
 * sampler.h - torch.utils.data.DistributedSampler as YOLOv5 v7.0 uses it
 * for DDP training: which images of the dataset rank r trains on in an
 * epoch, and how the batch is split.
 *
 * YOLOv5 v7.0 (train.py, utils/dataloaders.py create_dataloader) builds
 * DistributedSampler(dataset, shuffle=shuffle) (seed 0, drop_last False;
 * shuffle off with --rect), calls sampler.set_epoch(epoch) every epoch,
 * and gives each rank batch_size // WORLD_SIZE images per batch (it
 * asserts batch_size % WORLD_SIZE == 0). The sampler's epoch order is
 * torch.randperm(n, generator=g) with g.manual_seed(seed + epoch), which
 * on the CPU is a Fisher-Yates pass over mt19937 draws (tr_randperm
 * reproduces it bit for bit); the order is padded by repeating its first
 * indices until world divides it, and rank r takes indices[r::world].
 *
 *	struct tr_sampler *sampler;
 *	tr_sampler_create(&(struct tr_sampler_opts){.n = n_images, .world = 2,
 *			  .rank = 1, .shuffle = true}, &sampler, &err);
 *	tr_sampler_set_epoch(sampler, epoch);
 *	const long *mine = tr_sampler_indices(sampler);  // num_samples of them
 *	tr_sampler_free(sampler);
 *
 * Note: this is NOT the order of our single-process loader (loader.c
 * shuffles with PCG streams of --seed, not with torch's generator), as
 * YOLOv5's single-process DataLoader does not use this order either.
 */
#ifndef TR_SAMPLER_H
#define TR_SAMPLER_H

#include <stdbool.h>
#include <stdint.h>

#include "ut.h"

/*
 * torch.randperm(n, generator=g) on the CPU after g.manual_seed(seed)
 * (torch 1.13 through 2.x for n < 2^32 / 20): out[0, n) is a permutation
 * of 0 .. n-1. Only the low 32 bits of seed count (mt19937 takes 32).
 */
void tr_randperm(uint64_t seed, long n, long *out);

struct tr_sampler_opts {
	long n;	       /* dataset size, >= 1 */
	int world;     /* ranks, >= 1 */
	int rank;      /* 0 <= rank < world */
	bool shuffle;  /* YOLOv5: true for training without --rect */
	uint64_t seed; /* DistributedSampler's seed: 0 in YOLOv5 v7.0 */
};

struct tr_sampler; /* opaque */

/* A sampler for opts (err names the bad field); epoch 0 already set. */
int tr_sampler_create(const struct tr_sampler_opts *opts, struct tr_sampler **out,
		      struct ut_err *err);
void tr_sampler_free(struct tr_sampler *sampler);

/* set_epoch(epoch) and the epoch's indices (epoch >= 0); allocates nothing. */
void tr_sampler_set_epoch(struct tr_sampler *sampler, long epoch);

/* This rank's dataset indices for the epoch, tr_sampler_num_samples of them. */
const long *tr_sampler_indices(const struct tr_sampler *sampler);

/* ceil(n / world): every rank's number of samples (the total is padded to world times it). */
long tr_sampler_num_samples(const struct tr_sampler *sampler);

/*
 * YOLOv5's per-rank batch: batch_size // world, after its check that world
 * divides batch_size (err says so otherwise).
 */
int tr_sampler_rank_batch(int batch_size, int world, int *per_rank, struct ut_err *err);

#endif
