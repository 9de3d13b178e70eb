/*
 * trainer/cuda/launch.h - what a kernel source (.cu) includes to be built
 * either way: by nvcc for a GPU, or by g++ as host C++ on the CPU emulation
 * (emu/emu.h) for the tests. TR_CUDA_LAUNCH is the one launch syntax:
 *
 *   int rc = TR_CUDA_LAUNCH(kernel, grid, block, shared_bytes, stream, args...);
 *
 * stream is a struct tr_cuda_stream * (kernels.h). rc is 0 on success; else
 * a cudaError_t (nvcc) or a tr_emu::status (emulation), which
 * tr_cuda_launch_error_string turns into text. Under nvcc the launch is
 * asynchronous on stream->handle; under the emulation it has run when the
 * macro returns, its thread orders drawn from stream->seed.
 */
#ifndef TR_CUDA_LAUNCH_H
#define TR_CUDA_LAUNCH_H

#include "kernels.h"

#if defined(__CUDACC__)
#include <cuda_runtime.h>

#define TR_CUDA_LAUNCH(kernel, grid, block, shared_bytes, stream, ...)                             \
	((kernel<<<(grid), (block), (shared_bytes), (cudaStream_t)(stream)->handle>>>(             \
	     __VA_ARGS__)),                                                                        \
	 (int)cudaGetLastError())

#else
#include "emu.h"

/* The seed of the next launch on stream (each launch its own thread orders). */
static inline uint64_t tr_cuda_emu_next_seed(struct tr_cuda_stream *stream)
{
	stream->launches++;
	return stream->seed ^ (stream->launches * 0x9e3779b97f4a7c15ULL);
}

#define TR_CUDA_LAUNCH(kernel, grid, block, shared_bytes, stream, ...)                             \
	tr_emu::launch((grid), (block), (shared_bytes), tr_cuda_emu_next_seed(stream),             \
		       [&]() { kernel(__VA_ARGS__); })
#endif

#endif
