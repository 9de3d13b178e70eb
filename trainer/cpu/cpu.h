/*
 * trainer/cpu/cpu.h - internals of the CPU backend shared with its tests and
 * benchmarks (the trainer itself only needs tr_cpu_backend_create in ops.h).
 */
#ifndef TR_CPU_H
#define TR_CPU_H

#include "ops.h"

/*
 * Convolution layouts: 0 hands oneDNN the caller's nchw/oihw tensors
 * directly; 1 lets oneDNN choose blocked layouts and reorders to and from
 * them on every call. tr_cpu_backend_create uses TR_CPU_DEFAULT_LAYOUT,
 * the one measured faster (bench/bench_conv.c: 3x3 64->64 at 80x80, batch
 * 8, 2 threads, fwd + bwd: 106 ms plain (gemm), 42 ms with oneDNN's choice).
 */
#define TR_CPU_DEFAULT_LAYOUT 1
int tr_cpu_backend_create_layout(int threads, int any_layout, struct tr_backend **out,
				 struct ut_err *err);

#endif
