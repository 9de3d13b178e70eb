/*
 * syncbn.h - YOLOv5's --sync-bn (torch.nn.SyncBatchNorm) as a backend
 * wrapper: every op of an inner backend, except that train-mode batch norm
 * takes its statistics over the whole DDP batch, all ranks together,
 * through a communicator (comm.h).
 *
 *	struct tr_backend *cpu, *bn;
 *	tr_cpu_backend_create(threads, &cpu, &err);
 *	tr_syncbn_backend_create(cpu, comm, max_channels, &bn, &err);
 *	tr_model_forward(model, bn, shard, ...);   // BN over every rank's shard
 *	tr_model_backward(model, bn, dout, &err);
 *	tr_backend_destroy(bn);                    // then cpu, which bn borrowed
 *
 * What SyncBatchNorm computes, and so this: forward, per channel, the mean
 * and biased variance over every rank's (n, h, w) (two all-reduces in
 * double: the sums, then the squared deviations from the global mean, so
 * with one rank it gives the CPU backend's BN bit for bit), running_var
 * from the unbiased global variance; backward, sum(dy) and sum(dy * (x -
 * mean)) all-reduced so dx is the whole batch's, while dgamma and dbeta
 * stay the rank's own (DDP's gradient average then sums them). With
 * YOLOv5's loss *= WORLD_SIZE and DDP's average, the step's gradient is
 * the gradient of the sum of the ranks' losses with BN over the whole
 * batch.
 *
 * Like torch's (batch_norm_stats, then the gathered statistics applied;
 * batch_norm_backward_reduce, then backward_elemt), BN is split into ops
 * of the inner backend's table (bn_channel_sums, bn_channel_affine) with
 * the all-reduces between them on buffers in the backend's device memory,
 * so the inner backend may be the CPU or the CUDA one, with a
 * communicator whose buffers live there (threads for the CPU backend,
 * NCCL for CUDA). On CUDA it is checked on the emulation only (the ops
 * against the CPU's in test_cuda_ops); it has not yet run on a GPU.
 */
#ifndef TR_SYNCBN_H
#define TR_SYNCBN_H

#include "comm.h"
#include "ops.h"

/*
 * A backend running inner's ops with BN synchronised over comm's ranks;
 * max_channels bounds the channels of any BN (its all-reduce buffers are
 * sized once here). inner and comm are borrowed: they must outlive it.
 * Every rank must run the same BN layers in the same order (the model's
 * forward and backward do). The inner backend's ops are called with the
 * wrapper's handle, whose state is inner's: they must reach their state
 * through b->state only (the CPU backend does).
 */
int tr_syncbn_backend_create(struct tr_backend *inner, struct tr_comm *comm, int max_channels,
			     struct tr_backend **out, struct ut_err *err);

#endif
