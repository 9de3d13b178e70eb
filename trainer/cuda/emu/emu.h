/*
 * trainer/cuda/emu/emu.h - the CUDA execution model emulated on the CPU, so
 * that the kernels of trainer/cuda/ (.cu files), compiled as host C++ with this
 * header instead of nvcc, run and are checked on a machine without a GPU.
 *
 * The model: a launch runs its blocks one after another on the calling
 * thread; the threads of a block are fibers (ucontext) that run until they
 * reach a yield point (__syncthreads, a warp shuffle, __syncwarp) or return.
 * Each round, the runnable fibers run in an order shuffled by the launch's
 * seed, so code that relies on an order CUDA does not promise (a missing
 * __syncthreads, a shared-memory race) gives different, wrong results under
 * some seeds. A barrier is released when every thread still running has
 * reached it; a block whose threads can never all meet (a barrier inside a
 * divergent branch) fails the launch instead of hanging.
 *
 * What it maps:
 *   __shared__   static thread_local storage: one copy per block in flight
 *                (blocks run one at a time on a thread), left over from the
 *                previous block like real shared memory is undefined;
 *   threadIdx, blockIdx, blockDim, gridDim   the running fiber's ids;
 *   __syncthreads, __syncwarp, __shfl_down_sync, __shfl_xor_sync, atomicAdd.
 * Not emulated: dynamic shared memory, streams (launches are synchronous;
 * backend.c defers upload_async's copies to emulate its copy stream),
 * memory spaces (device pointers are host pointers), textures, cooperative
 * groups. A shuffle must be reached by every live lane of the warp, and may
 * not read a lane that has returned (the launch fails).
 *
 * The current fiber is found through one thread_local pointer (the
 * emulation's stand-in for the hardware's special registers); there is no
 * other state outside tr_emu::launch's frame.
 */
#ifndef TR_CUDA_EMU_H
#define TR_CUDA_EMU_H

#if defined(__CUDACC__) || !defined(__cplusplus)
#error "emu.h is the host C++ emulation of CUDA: include it only from g++"
#endif

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>

struct uint3 {
	unsigned x, y, z;
};

struct dim3 {
	unsigned x, y, z;
	constexpr dim3(unsigned xs = 1, unsigned ys = 1, unsigned zs = 1) : x(xs), y(ys), z(zs)
	{
	}
};

namespace tr_emu
{

/* The ids of the running CUDA thread. */
struct thread_ids {
	uint3 thread_idx, block_idx;
	dim3 block_dim, grid_dim;
};

/* Launch outcomes (tr_emu::launch's return value). */
enum status {
	OK = 0,
	BAD_CONFIG = 1,	   /* empty grid or block, block over 1024 threads, shared memory asked */
	OUT_OF_MEMORY = 2, /* fiber stacks */
	DEADLOCK = 3,	   /* threads waiting at barriers that can never all be reached */
	BAD_SHUFFLE = 4,   /* a shuffle read a lane that had returned */
};

/*
 * Run body as the kernel of a grid of blocks: once per CUDA thread, each
 * with its ids, blocks in order, threads of a block as shuffled fibers (see
 * the file comment). seed picks the thread orders. Returns a status.
 */
int launch(dim3 grid, dim3 block, size_t dynamic_shared, uint64_t seed,
	   const std::function<void()> &body);

/* A status as text. */
const char *status_string(int status);

/* Inside a launch: the running thread's ids. */
const thread_ids &self();

/* Inside a launch: wait until every live thread of the block arrives here. */
void syncthreads();

/* Inside a launch: wait until every live lane of the warp arrives here. */
void syncwarp();

/*
 * Inside a launch: the warp-wide exchange behind the shuffles. Every live
 * lane of the warp offers bytes (at most 8) of value; when all have, each
 * lane gets the value that lane src_lane offered into out (src_lane < 0:
 * its own).
 */
void exchange(const void *value, void *out, size_t bytes, int src_lane);

/* The lane of the running thread in its warp (linear thread index % 32). */
unsigned lane();

} // namespace tr_emu

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __restrict__ __restrict
#define __shared__ static thread_local

#define threadIdx (tr_emu::self().thread_idx)
#define blockIdx (tr_emu::self().block_idx)
#define blockDim (tr_emu::self().block_dim)
#define gridDim (tr_emu::self().grid_dim)
#define warpSize 32

static inline void __syncthreads(void)
{
	tr_emu::syncthreads();
}

static inline void __syncwarp(unsigned mask = 0xffffffffu)
{
	(void)mask;
	tr_emu::syncwarp();
}

/* The value of lane (lane + delta) within the width-lane segment, else one's own. */
template <typename T>
static inline T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = warpSize)
{
	static_assert(sizeof(T) <= 8, "shuffles move at most 8 bytes");
	(void)mask;
	unsigned lane = tr_emu::lane(), seg = lane % (unsigned)width;
	int src = seg + delta < (unsigned)width ? (int)(lane + delta) : -1;
	T out;
	tr_emu::exchange(&var, &out, sizeof(T), src);
	return out;
}

/* The value of lane (lane ^ lane_mask) within the width-lane segment. */
template <typename T>
static inline T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = warpSize)
{
	static_assert(sizeof(T) <= 8, "shuffles move at most 8 bytes");
	(void)mask;
	unsigned lane = tr_emu::lane(), src = lane ^ (unsigned)lane_mask;
	int inside = src / (unsigned)width == lane / (unsigned)width;
	T out;
	tr_emu::exchange(&var, &out, sizeof(T), inside ? (int)src : -1);
	return out;
}

/* Fibers of one launch run on one thread and switch only at yield points: a plain add is atomic. */
template <typename T> static inline T atomicAdd(T *address, T value)
{
	T old = *address;
	*address = old + value;
	return old;
}

#endif
