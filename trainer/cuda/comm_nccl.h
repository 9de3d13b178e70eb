/*
 * comm_nccl.h - the NCCL communicator of comm.h (CUDA builds only): one
 * rank per GPU, every buffer in the rank's device memory, every collective
 * enqueued on the rank's own stream and waited for before it returns (so
 * the caller may read the result at once, as comm.h's contract says).
 *
 * One process driving several GPUs from one thread each (what yolo-train
 * --device 0,1 does):
 *	struct tr_comm *comms[2];
 *	tr_comm_nccl_create_all(2, (const int[]){0, 1}, comms, &err);
 *	// thread r: tr_comm_all_reduce_mean(comms[r], d_grads, n, &err) ...
 *	tr_comm_destroy(comms[r]);
 * One process per GPU (torchrun's layout): rank 0 makes an id with
 * tr_comm_nccl_unique_id, sends its bytes to the others by any means, and
 * every rank calls tr_comm_nccl_create with it (it blocks until all came).
 *
 * Errors are one line naming NCCL or CUDA, the call and its cause, e.g.
 * "comm (NCCL): CUDA: no usable device: cudaGetDeviceCount: CUDA driver
 * version is insufficient for CUDA runtime version (error 35)".
 * abort is ncclCommAbort of this rank's communicator: the other ranks'
 * pending collectives end only when they abort theirs too.
 */
#ifndef TR_COMM_NCCL_H
#define TR_COMM_NCCL_H

#include "comm.h"

/* ncclUniqueId's bytes (NCCL_UNIQUE_ID_BYTES), without nccl.h. */
struct tr_comm_nccl_id {
	char bytes[128];
};

/* ncclGetUniqueId: made once, on one rank, for a group's tr_comm_nccl_create calls. */
int tr_comm_nccl_unique_id(struct tr_comm_nccl_id *id, struct ut_err *err);

/*
 * This process's rank of a group of world (ncclCommInitRank on GPU
 * device, which must exist). Blocks until every rank has called it.
 */
int tr_comm_nccl_create(const struct tr_comm_nccl_id *id, int world, int rank, int device,
			struct tr_comm **out, struct ut_err *err);

/*
 * A whole group in this process (ncclCommInitAll): comms[r] is rank r on
 * GPU devices[r]; each handle is then used by its own thread.
 */
int tr_comm_nccl_create_all(int world, const int *devices, struct tr_comm **comms,
			    struct ut_err *err);

#endif
