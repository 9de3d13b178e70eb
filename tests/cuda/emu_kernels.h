/*
 * tests/cuda/emu_kernels.h - C entry points of emu_kernels.cpp, the kernels
 * that test the CUDA emulation (each returns the launch's tr_emu status).
 */
#ifndef TR_TEST_EMU_KERNELS_H
#define TR_TEST_EMU_KERNELS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* out[b] = sum of x[b * count ...], threads a multiple of 32; synced = 0 drops the __syncthreads.
 */
int emu_block_sum(uint64_t seed, int synced, const float *x, float *out, int blocks, int count,
		  int threads);
/* *counter += blocks * threads through atomicAdd */
int emu_count_threads(uint64_t seed, int *counter, int blocks, int threads);
/* a __syncthreads reached by half the block (must fail: deadlock) */
int emu_divergent_barrier(uint64_t seed, int *out);
/* a shuffle from lanes that returned (must fail) */
int emu_shuffle_from_returned(uint64_t seed, int *out);
/* out[1 .. threads] = 1: one past the end of an array of threads ints */
int emu_write_past_end(uint64_t seed, int *out, int threads);
const char *emu_status_string(int status);

#ifdef __cplusplus
}
#endif

#endif
