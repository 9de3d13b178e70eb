/*
 * trainer/cuda/emu/emu.cpp - the fiber scheduler behind emu.h: one launch
 * runs its blocks in order; the threads of a block are ucontext fibers,
 * run round by round in an order shuffled by the seed, each until its next
 * barrier or shuffle. Stacks are mmap'ed once per launch and reused by
 * every block. Under AddressSanitizer each switch is announced to it
 * (__sanitizer_start/finish_switch_fiber) so it follows the stacks.
 */
#include "emu.h"

#include <sys/mman.h>
#include <ucontext.h>

#include <cstdio>
#include <cstdlib>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#define TR_EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TR_EMU_ASAN 1
#endif
#endif

#if defined(TR_EMU_ASAN)
#include <sanitizer/common_interface_defs.h>
/* AddressSanitizer's frames are larger; kernels are shallow either way. */
#define TR_EMU_STACK (128 * 1024)
#else
#define TR_EMU_STACK (64 * 1024)
#endif

namespace tr_emu
{
namespace
{

enum fiber_state { READY, AT_BLOCK_BARRIER, AT_WARP_BARRIER, DONE };

struct fiber {
	ucontext_t context;
	char *stack;
	fiber_state state;
	thread_ids ids;
	unsigned linear;    /* threadIdx.x + blockDim.x * (y + blockDim.y * z) */
	unsigned exchanges; /* shuffles so far: picks the bank */
	void *fake_stack;   /* AddressSanitizer's, while switched away */
};

/* One block in flight: its fibers, the scheduler's context, the shuffle banks. */
struct block_run {
	ucontext_t scheduler;
	std::vector<fiber> fibers;
	unsigned current;
	const std::function<void()> *body;
	int error;
	/* bank[k % 2][warp][lane]: the value each lane offered at its k-th shuffle */
	std::vector<uint64_t> bank[2];
	const void *scheduler_stack;
	size_t scheduler_stack_size;
};

/* The block the calling thread is running (see emu.h: the one piece of state). */
thread_local block_run *running = nullptr;

/* PCG32 (O'Neill), enough to shuffle thread orders. */
struct order_rng {
	uint64_t state;
	explicit order_rng(uint64_t seed)
	    : state(seed * 6364136223846793005ULL + 1442695040888963407ULL)
	{
	}
	uint32_t next()
	{
		uint64_t old = state;
		state = old * 6364136223846793005ULL + 1442695040888963407ULL;
		uint32_t xorshifted = (uint32_t)(((old >> 18u) ^ old) >> 27u);
		uint32_t rot = (uint32_t)(old >> 59u);
		return (xorshifted >> rot) | (xorshifted << ((-rot) & 31));
	}
	unsigned below(unsigned bound)
	{
		return (unsigned)(((uint64_t)next() * bound) >> 32);
	}
};

void switch_to_fiber(block_run *run, fiber *f)
{
#if defined(TR_EMU_ASAN)
	void *fake = nullptr;
	__sanitizer_start_switch_fiber(&fake, f->stack, TR_EMU_STACK);
	swapcontext(&run->scheduler, &f->context);
	__sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#else
	swapcontext(&run->scheduler, &f->context);
#endif
}

/* From a fiber back to the scheduler; returns when the fiber is resumed. */
void yield_to_scheduler(block_run *run, fiber *f)
{
#if defined(TR_EMU_ASAN)
	__sanitizer_start_switch_fiber(&f->fake_stack, run->scheduler_stack,
				       run->scheduler_stack_size);
	swapcontext(&f->context, &run->scheduler);
	__sanitizer_finish_switch_fiber(f->fake_stack, nullptr, nullptr);
#else
	swapcontext(&f->context, &run->scheduler);
#endif
}

void fiber_main()
{
	block_run *run = running;
#if defined(TR_EMU_ASAN)
	__sanitizer_finish_switch_fiber(nullptr, &run->scheduler_stack, &run->scheduler_stack_size);
#endif
	(*run->body)();
	fiber *f = &run->fibers[run->current];
	f->state = DONE;
#if defined(TR_EMU_ASAN)
	__sanitizer_start_switch_fiber(nullptr, run->scheduler_stack, run->scheduler_stack_size);
#endif
	setcontext(&run->scheduler);
}

fiber &current_fiber()
{
	if (running == nullptr) {
		fputs("tr_emu: a CUDA builtin used outside a kernel launch\n", stderr);
		abort();
	}
	return running->fibers[running->current];
}

/*
 * Release the barriers every live thread has reached: the block barrier
 * when all live threads wait there, a warp barrier when all live lanes of
 * the warp wait there. Returns how many threads were released.
 */
unsigned release_barriers(block_run *run)
{
	std::vector<fiber> &fs = run->fibers;
	unsigned live = 0, at_block = 0, released = 0;
	for (const fiber &f : fs) {
		live += f.state != DONE;
		at_block += f.state == AT_BLOCK_BARRIER;
	}
	if (live > 0 && at_block == live) {
		for (fiber &f : fs)
			if (f.state == AT_BLOCK_BARRIER)
				f.state = READY;
		return live;
	}
	for (size_t w0 = 0; w0 < fs.size(); w0 += 32) {
		size_t w1 = w0 + 32 < fs.size() ? w0 + 32 : fs.size();
		unsigned warp_live = 0, at_warp = 0;
		for (size_t i = w0; i < w1; i++) {
			warp_live += fs[i].state != DONE;
			at_warp += fs[i].state == AT_WARP_BARRIER;
		}
		if (warp_live == 0 || at_warp != warp_live)
			continue;
		for (size_t i = w0; i < w1; i++)
			if (fs[i].state == AT_WARP_BARRIER)
				fs[i].state = READY;
		released += at_warp;
	}
	return released;
}

/*
 * A fresh context that starts fiber_main on f's stack. Its own function:
 * getcontext returns twice, which would make gcc fear for the caller's
 * loop variables (-Wclobbered).
 */
__attribute__((noinline)) void fiber_context_init(fiber *f)
{
	getcontext(&f->context);
	f->context.uc_stack.ss_sp = f->stack;
	f->context.uc_stack.ss_size = TR_EMU_STACK;
	f->context.uc_link = nullptr;
	makecontext(&f->context, fiber_main, 0);
}

/* Run one block's fibers to completion; returns a status. */
int run_block(block_run *run, char *stacks, dim3 grid, dim3 block, uint3 block_idx, order_rng *rng)
{
	std::vector<fiber> &fs = run->fibers;
	for (unsigned i = 0; i < fs.size(); i++) {
		fiber &f = fs[i];
		f.stack = stacks + (size_t)i * TR_EMU_STACK;
		f.state = READY;
		f.linear = i;
		f.exchanges = 0;
		f.fake_stack = nullptr;
		f.ids.thread_idx = {i % block.x, i / block.x % block.y, i / (block.x * block.y)};
		f.ids.block_idx = block_idx;
		f.ids.block_dim = block;
		f.ids.grid_dim = grid;
		fiber_context_init(&f);
	}
	std::vector<unsigned> order(fs.size());
	for (;;) {
		unsigned ready = 0;
		for (unsigned i = 0; i < fs.size(); i++)
			if (fs[i].state == READY)
				order[ready++] = i;
		if (ready == 0) {
			unsigned live = 0;
			for (const fiber &f : fs)
				live += f.state != DONE;
			if (live == 0)
				return run->error;
			if (release_barriers(run) == 0)
				return DEADLOCK;
			continue;
		}
		for (unsigned i = ready; i > 1; i--) {
			unsigned j = rng->below(i);
			unsigned t = order[i - 1];
			order[i - 1] = order[j];
			order[j] = t;
		}
		for (unsigned k = 0; k < ready; k++) {
			run->current = order[k];
			switch_to_fiber(run, &fs[order[k]]);
		}
	}
}

} // namespace

const char *status_string(int status)
{
	switch (status) {
	case OK:
		return "ok";
	case BAD_CONFIG:
		return "bad launch configuration (empty grid or block, over 1024 threads, or "
		       "dynamic shared memory)";
	case OUT_OF_MEMORY:
		return "out of memory for fiber stacks";
	case DEADLOCK:
		return "deadlock: threads wait at a barrier that the others never reach";
	case BAD_SHUFFLE:
		return "a warp shuffle read a lane that had returned";
	}
	return "unknown status";
}

int launch(dim3 grid, dim3 block, size_t dynamic_shared, uint64_t seed,
	   const std::function<void()> &body)
{
	size_t threads = (size_t)block.x * block.y * block.z;
	if (grid.x == 0 || grid.y == 0 || grid.z == 0 || threads == 0 || threads > 1024 ||
	    dynamic_shared != 0 || running != nullptr)
		return BAD_CONFIG;
	size_t bytes = threads * TR_EMU_STACK;
	void *stacks = mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (stacks == MAP_FAILED)
		return OUT_OF_MEMORY;
	block_run run;
	run.fibers.resize(threads);
	run.body = &body;
	run.error = OK;
	size_t warps = (threads + 31) / 32;
	for (int b = 0; b < 2; b++)
		run.bank[b].assign(warps * 32, 0);
	run.scheduler_stack = nullptr;
	run.scheduler_stack_size = 0;
	order_rng rng(seed);
	int status = OK;
	running = &run;
	for (unsigned z = 0; z < grid.z && status == OK; z++)
		for (unsigned y = 0; y < grid.y && status == OK; y++)
			for (unsigned x = 0; x < grid.x && status == OK; x++)
				status =
				    run_block(&run, (char *)stacks, grid, block, {x, y, z}, &rng);
	running = nullptr;
	munmap(stacks, bytes);
	return status;
}

const thread_ids &self()
{
	return current_fiber().ids;
}

unsigned lane()
{
	return current_fiber().linear % 32;
}

void syncthreads()
{
	fiber &f = current_fiber();
	f.state = AT_BLOCK_BARRIER;
	yield_to_scheduler(running, &f);
}

void syncwarp()
{
	fiber &f = current_fiber();
	f.state = AT_WARP_BARRIER;
	yield_to_scheduler(running, &f);
}

void exchange(const void *value, void *out, size_t bytes, int src_lane)
{
	block_run *run = running;
	fiber &f = current_fiber();
	unsigned bank = f.exchanges++ % 2, warp0 = f.linear / 32 * 32;
	uint64_t word = 0;
	memcpy(&word, value, bytes);
	run->bank[bank][f.linear] = word;
	f.state = AT_WARP_BARRIER;
	yield_to_scheduler(run, &f);
	/*
	 * Every live lane has offered its k-th value; none can offer its
	 * (k+2)-th (into this bank) before all have passed their (k+1)-th,
	 * after this read. A lane that returned before its k-th shuffle
	 * offered nothing: reading it is an error.
	 */
	unsigned src = src_lane < 0 ? f.linear : warp0 + (unsigned)src_lane % 32;
	if (src >= run->fibers.size() || run->fibers[src].exchanges < f.exchanges) {
		run->error = BAD_SHUFFLE;
		src = f.linear;
	}
	word = run->bank[bank][src];
	memcpy(out, &word, bytes);
}

} // namespace tr_emu
