/*
 * tests/cuda/emu_kernels.cpp - kernels that test the CUDA emulation itself
 * (test_cuda_emu.c): a block reduction through shared memory and warp
 * shuffles, with and without its __syncthreads, an atomicAdd count, a
 * barrier no thread can pass, a shuffle from a lane that returned, and a
 * write one past the end (for AddressSanitizer to catch).
 */
#include "launch.h"

#include "emu_kernels.h"

/* out[b] = sum of x[b * count, (b + 1) * count): warp shuffles, then warp 0 over the warp sums. */
template <bool synced> __global__ void block_sum(const float *x, float *out, int count)
{
	__shared__ float warp_sums[32];
	float v = 0;
	for (int i = (int)threadIdx.x; i < count; i += (int)blockDim.x)
		v += x[(size_t)blockIdx.x * (size_t)count + (size_t)i];
	for (int d = 16; d > 0; d /= 2)
		v += __shfl_down_sync(0xffffffffu, v, (unsigned)d);
	if (threadIdx.x % 32 == 0)
		warp_sums[threadIdx.x / 32] = v;
	if (synced)
		__syncthreads();
	if (threadIdx.x < 32) {
		v = threadIdx.x < blockDim.x / 32 ? warp_sums[threadIdx.x] : 0.0f;
		for (int d = 16; d > 0; d /= 2)
			v += __shfl_xor_sync(0xffffffffu, v, d);
		if (threadIdx.x == 0)
			out[blockIdx.x] = v;
	}
}

__global__ void count_threads(int *counter)
{
	atomicAdd(counter, 1);
}

/*
 * Even threads wait at the block barrier, odd ones at a shuffle that needs
 * the even lanes: neither can complete (a hang in CUDA, an error here).
 */
__global__ void divergent_barrier(int *out)
{
	if (threadIdx.x % 2 == 0)
		__syncthreads();
	else
		out[threadIdx.x] = __shfl_down_sync(0xffffffffu, (int)threadIdx.x, 1u);
}

/* Odd lanes return before the shuffle that even lanes read them with. */
__global__ void shuffle_from_returned(int *out)
{
	if (threadIdx.x % 2 == 1)
		return;
	out[threadIdx.x] = __shfl_down_sync(0xffffffffu, (int)threadIdx.x, 1u);
}

/* Thread i writes out[i + 1]: the last thread writes one past the end. */
__global__ void write_past_end(int *out)
{
	out[threadIdx.x + 1] = 1;
}

extern "C" int emu_write_past_end(uint64_t seed, int *out, int threads)
{
	struct tr_cuda_stream s = {nullptr, seed, 0};
	return TR_CUDA_LAUNCH(write_past_end, dim3(1), dim3((unsigned)threads), 0, &s, out);
}

extern "C" int emu_block_sum(uint64_t seed, int synced, const float *x, float *out, int blocks,
			     int count, int threads)
{
	struct tr_cuda_stream s = {nullptr, seed, 0};
	if (synced)
		return TR_CUDA_LAUNCH(block_sum<true>, dim3((unsigned)blocks),
				      dim3((unsigned)threads), 0, &s, x, out, count);
	return TR_CUDA_LAUNCH(block_sum<false>, dim3((unsigned)blocks), dim3((unsigned)threads), 0,
			      &s, x, out, count);
}

extern "C" int emu_count_threads(uint64_t seed, int *counter, int blocks, int threads)
{
	struct tr_cuda_stream s = {nullptr, seed, 0};
	return TR_CUDA_LAUNCH(count_threads, dim3((unsigned)blocks), dim3((unsigned)threads), 0, &s,
			      counter);
}

extern "C" int emu_divergent_barrier(uint64_t seed, int *out)
{
	struct tr_cuda_stream s = {nullptr, seed, 0};
	return TR_CUDA_LAUNCH(divergent_barrier, dim3(1), dim3(64), 0, &s, out);
}

extern "C" int emu_shuffle_from_returned(uint64_t seed, int *out)
{
	struct tr_cuda_stream s = {nullptr, seed, 0};
	return TR_CUDA_LAUNCH(shuffle_from_returned, dim3(1), dim3(32), 0, &s, out);
}

extern "C" const char *emu_status_string(int status)
{
	return tr_emu::status_string(status);
}
