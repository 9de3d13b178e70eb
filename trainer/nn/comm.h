/*
 * comm.h - the communicator data-parallel training (DDP) needs: every rank
 * holds a whole model, trains on its shard of the batch, and the ranks sum
 * their gradients. A communicator is a small table of function pointers
 * behind an opaque handle, like a backend (ops.h), with two
 * implementations:
 *   - threads of one process (comm_thread.c): the ranks share host
 *     memory; the unit tests use it, and so can a CPU run;
 *   - NCCL (trainer/cuda/comm_nccl.c, CUDA builds only): one rank per
 *     GPU, buffers in device memory.
 *
 * A tutorial in a few lines (one thread per rank):
 *   struct tr_comm *comms[4];
 *   tr_comm_thread_create(4, comms, &err);     // rank r uses comms[r]
 *   // in rank r's thread:
 *   tr_comm_broadcast(comms[r], model->params, model->nparam_values, 0, &err);
 *   ... forward and backward on the rank's shard ...
 *   tr_comm_all_reduce_mean(comms[r], model->grads, model->nparam_values, &err);
 *   tr_comm_destroy(comms[r]);                 // each rank its own
 *
 * The contract, for every implementation:
 *   - a collective (all_reduce_sum, broadcast, barrier) is called by every
 *     rank of the group, in the same order, with the same count (and the
 *     same root); it returns when this rank's buffer holds the result, so
 *     the caller may then read or change it;
 *   - all_reduce_sum (and _mean, _sum_f64) sums elementwise in a fixed order, rank 0 + rank 1 +
 *     ... + rank world-1 where the implementation controls it (the thread
 *     communicator: bit-identical on every rank and whatever the thread
 *     timing; NCCL chooses its own order, still the same on every rank);
 *   - buffers live where the implementation says: host memory for threads,
 *     device memory of the rank's GPU for NCCL;
 *   - each rank's handle is used by one thread at a time;
 *   - abort makes every collective of the group, waiting or to come, fail
 *     with -1 on every rank (a rank that failed on its own calls it, so the
 *     others do not wait for it forever); the handles must still be
 *     destroyed;
 *   - every call returns 0, or -1 with one line in err naming the
 *     communicator (and, for NCCL, NCCL or CUDA and the cause).
 */
#ifndef TR_COMM_H
#define TR_COMM_H

#include <stddef.h>

#include "ut.h"

struct tr_comm;

struct tr_comm_ops {
	const char *name;
	/* data[0, count) = the elementwise sum over the ranks of their data */
	int (*all_reduce_sum)(struct tr_comm *c, float *data, size_t count, struct ut_err *err);
	/* the same sum divided by world (DDP's gradient average) */
	int (*all_reduce_mean)(struct tr_comm *c, float *data, size_t count, struct ut_err *err);
	/* the sum over doubles: statistics (SyncBN's per-channel sums) that float would round */
	int (*all_reduce_sum_f64)(struct tr_comm *c, double *data, size_t count,
				  struct ut_err *err);
	/* data[0, count) = root's data[0, count), on every rank */
	int (*broadcast)(struct tr_comm *c, float *data, size_t count, int root,
			 struct ut_err *err);
	/* returns once every rank has called it */
	int (*barrier)(struct tr_comm *c, struct ut_err *err);
	/* fail the group's collectives from now on, on every rank (never blocks) */
	void (*abort)(struct tr_comm *c);
	/* this rank's handle and, with the last rank's, the group's state */
	void (*destroy)(struct tr_comm *c);
};

/* One rank's handle: its table, its place in the group, its private state. */
struct tr_comm {
	const struct tr_comm_ops *ops;
	int rank, world; /* 0 <= rank < world */
	void *state;
};

/*
 * world handles of one group whose ranks are threads of this process,
 * comms[r] for rank r (world >= 1). The summation order is fixed (rank 0
 * first), so every rank gets the same bits whatever the timing.
 */
int tr_comm_thread_create(int world, struct tr_comm **comms, struct ut_err *err);

static inline int tr_comm_all_reduce_sum(struct tr_comm *c, float *data, size_t count,
					 struct ut_err *err)
{
	return c->ops->all_reduce_sum(c, data, count, err);
}

/*
 * DDP's gradient step: data = (sum over the ranks) / world, as torch's
 * DistributedDataParallel averages gradients. With YOLOv5's loss *=
 * WORLD_SIZE the average is the gradient of the sum of the ranks' losses.
 */
static inline int tr_comm_all_reduce_mean(struct tr_comm *c, float *data, size_t count,
					  struct ut_err *err)
{
	return c->ops->all_reduce_mean(c, data, count, err);
}

static inline int tr_comm_all_reduce_sum_f64(struct tr_comm *c, double *data, size_t count,
					     struct ut_err *err)
{
	return c->ops->all_reduce_sum_f64(c, data, count, err);
}

static inline int tr_comm_broadcast(struct tr_comm *c, float *data, size_t count, int root,
				    struct ut_err *err)
{
	return c->ops->broadcast(c, data, count, root, err);
}

static inline int tr_comm_barrier(struct tr_comm *c, struct ut_err *err)
{
	return c->ops->barrier(c, err);
}

static inline void tr_comm_abort(struct tr_comm *c)
{
	c->ops->abort(c);
}

/* Destroy one rank's handle; NULL is a no-op. */
static inline void tr_comm_destroy(struct tr_comm *c)
{
	if (c != NULL)
		c->ops->destroy(c);
}

#endif
