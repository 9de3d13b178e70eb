/*
 * test_cuda_emu.c - the CPU emulation of CUDA (trainer/cuda/emu/) checked
 * on its own kernels (tests/cuda/emu_kernels.cpp):
 *   - a block reduction through warp shuffles and shared memory gives the
 *     exact sums (small integers, so any order is exact) under many thread
 *     orders, with blocks of 32 to 1024 threads;
 *   - the same reduction without its __syncthreads gives a wrong sum under
 *     at least one of the same seeds: the emulation's teeth;
 *   - atomicAdd counts every thread; a barrier half the block never
 *     reaches (waiting at a shuffle instead) and a shuffle from a lane that returned fail the
 * launch instead of hanging or reading garbage.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "cuda/emu_kernels.h"

#define SEEDS 16

/* Fill x[blocks * count] with small integers, distinct per block; expected sums in want. */
static void fill(float *x, float *want, int blocks, int count)
{
	for (int b = 0; b < blocks; b++) {
		want[b] = 0;
		for (int i = 0; i < count; i++) {
			float v = (float)((b * 7 + i * 13) % 17) - 8.0f;
			x[(size_t)b * (size_t)count + (size_t)i] = v;
			want[b] += v;
		}
	}
}

/* Sums of blocks with their __syncthreads: exact under every seed and block size. */
static void test_reduction_synced(void **state)
{
	(void)state;
	enum { BLOCKS = 5, COUNT = 3000 };
	static float x[BLOCKS * COUNT];
	float want[BLOCKS], got[BLOCKS];
	fill(x, want, BLOCKS, COUNT);
	const int threads[] = {32, 64, 256, 1024};
	for (size_t t = 0; t < sizeof(threads) / sizeof(threads[0]); t++)
		for (uint64_t seed = 1; seed <= SEEDS; seed++) {
			int rc = emu_block_sum(seed, 1, x, got, BLOCKS, COUNT, threads[t]);
			if (rc != 0)
				fail_msg("launch: %s", emu_status_string(rc));
			for (int b = 0; b < BLOCKS; b++)
				if (got[b] != want[b])
					fail_msg("threads %d seed %d block %d: %g, want %g",
						 threads[t], (int)seed, b, got[b], want[b]);
		}
}

/* Without the __syncthreads some thread order reads a warp sum before it is written. */
static void test_reduction_unsynced_fails(void **state)
{
	(void)state;
	enum { BLOCKS = 5, COUNT = 3000 };
	static float x[BLOCKS * COUNT];
	float want[BLOCKS], got[BLOCKS];
	fill(x, want, BLOCKS, COUNT);
	int wrong_seeds = 0;
	for (uint64_t seed = 1; seed <= SEEDS; seed++) {
		int rc = emu_block_sum(seed, 0, x, got, BLOCKS, COUNT, 256);
		assert_int_equal(rc, 0);
		int wrong = 0;
		for (int b = 0; b < BLOCKS; b++)
			wrong |= got[b] != want[b];
		wrong_seeds += wrong;
	}
	printf("# reduction without __syncthreads: wrong under %d of %d seeds\n", wrong_seeds,
	       SEEDS);
	assert_true(wrong_seeds > 0);
}

static void test_atomic_add(void **state)
{
	(void)state;
	int counter = 5;
	assert_int_equal(emu_count_threads(3, &counter, 7, 96), 0);
	assert_int_equal(counter, 5 + 7 * 96);
}

static void test_divergent_barrier_fails(void **state)
{
	(void)state;
	int out[64] = {0};
	int rc = emu_divergent_barrier(1, out);
	assert_int_not_equal(rc, 0);
	printf("# divergent barrier: %s\n", emu_status_string(rc));
}

static void test_shuffle_from_returned_fails(void **state)
{
	(void)state;
	int out[32] = {0};
	int rc = emu_shuffle_from_returned(1, out);
	assert_int_not_equal(rc, 0);
	printf("# shuffle from a returned lane: %s\n", emu_status_string(rc));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_reduction_synced),
	    cmocka_unit_test(test_reduction_unsynced_fails),
	    cmocka_unit_test(test_atomic_add),
	    cmocka_unit_test(test_divergent_barrier_fails),
	    cmocka_unit_test(test_shuffle_from_returned_fails),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
