/*
 * trainer/cuda/tr_cuda.h - the CUDA backend of the op table (ops.h): kernels
 * for every op but the convolutions (kernels.cu), device memory, and the
 * same backend on the CPU emulation of CUDA (emu/) for the tests.
 *
 * Op arguments are device pointers (from tr_cuda_alloc); shapes and the
 * detect level's anchors are host values. Ops are asynchronous on the
 * backend's stream: tr_cuda_sync waits and reports a kernel's fault;
 * upload and download synchronise. Convolutions run through cuDNN graphs
 * (conv_graph.c, fp32 NCHW, planned once per shape); on the emulation
 * through the CPU backend's convolutions, on the same host memory.
 *
 * Tutorial:
 *   struct tr_backend *gpu;
 *   if (tr_cuda_backend_create(0, &gpu, &err) != 0) ... err.msg names CUDA and the cause
 *   float *x; tr_cuda_alloc(gpu, bytes, (void **)&x, &err);
 *   tr_cuda_upload(gpu, x, host, bytes, &err);
 *   gpu->ops->silu_forward(gpu, &(struct tr_tensor){x, shape}, ..., &err);
 */
#ifndef TR_CUDA_TR_CUDA_H
#define TR_CUDA_TR_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "ops.h"

/*
 * 0 if GPU `device` can be used; else -1 and one line in err naming CUDA
 * and the cause (cudaGetDeviceCount's error: no driver, driver too old, no
 * device; or an id past the device count). Touches nothing else.
 */
int tr_cuda_device_check(int device, struct ut_err *err);

/* The CUDA backend on GPU `device`, with its own stream; see tr_cuda_device_check. */
int tr_cuda_backend_create(int device, struct tr_backend **out, struct ut_err *err);

/* Device memory of a backend from tr_cuda_backend_create (cudaMalloc: 256-byte aligned). */
int tr_cuda_alloc(struct tr_backend *b, size_t bytes, void **out, struct ut_err *err);
void tr_cuda_free(struct tr_backend *b, void *device_ptr);
int tr_cuda_upload(struct tr_backend *b, void *device_dst, const void *host_src, size_t bytes,
		   struct ut_err *err);
int tr_cuda_download(struct tr_backend *b, void *host_dst, const void *device_src, size_t bytes,
		     struct ut_err *err);
int tr_cuda_sync(struct tr_backend *b, struct ut_err *err);

/*
 * The same backend with its kernels on the CPU emulation: "device" memory
 * is host memory, every launch runs at once (upload_async's copies wait
 * for the next upload_wait or sync), thread orders come from seed;
 * convolutions (no cuDNN without a device) are the CPU backend's, on one
 * thread, with this backend's bias kernels. For tests: it checks kernels,
 * not speed.
 */
int tr_cuda_emu_backend_create(uint64_t seed, struct tr_backend **out, struct ut_err *err);
int tr_cuda_emu_alloc(struct tr_backend *b, size_t bytes, void **out, struct ut_err *err);
void tr_cuda_emu_free(struct tr_backend *b, void *device_ptr);
int tr_cuda_emu_upload(struct tr_backend *b, void *device_dst, const void *host_src, size_t bytes,
		       struct ut_err *err);
int tr_cuda_emu_download(struct tr_backend *b, void *host_dst, const void *device_src, size_t bytes,
			 struct ut_err *err);
int tr_cuda_emu_sync(struct tr_backend *b, struct ut_err *err);

#endif
