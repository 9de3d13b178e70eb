/*
 * trainer/cpu/cpu.h - internals of the CPU backend shared with its tests and
 * benchmarks (the trainer itself only needs tr_cpu_backend_create in ops.h).
 */
#ifndef TR_CPU_H
#define TR_CPU_H

#include "ops.h"

/*
 * Convolution layouts: PLAIN hands oneDNN the caller's nchw/oihw tensors
 * directly; ANY lets oneDNN choose blocked layouts and reorders to and from
 * them on every call; AUTO (what tr_cpu_backend_create uses) takes PLAIN for
 * 1x1 kernels and ANY for the rest, a fixed rule (not a timing) so that the
 * same shapes always run the same algorithms and give the same bits.
 * Measured with bench/bench_conv.c, fwd + bwd data + bwd filter, batch 8,
 * 2 threads, ms plain/any: 3x3 64->64 at 80: 68/33; k6s2 3->16 at 320:
 * 42/20; 3x3s2 16->32 at 160: 26/6.7; 1x1 64->32 at 80: 2.5/4.2; 1x1
 * 512->256 at 20: 7.2/8.0.
 */
enum tr_cpu_layout { TR_CPU_LAYOUT_PLAIN, TR_CPU_LAYOUT_ANY, TR_CPU_LAYOUT_AUTO };

int tr_cpu_backend_create_layout(int threads, enum tr_cpu_layout layout, struct tr_backend **out,
				 struct ut_err *err);

#endif
