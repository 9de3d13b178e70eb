/*
 * comm_nccl.c - comm.h's communicator on NCCL (see comm_nccl.h), called
 * from C as every library of the CUDA backend is. Each rank owns an NCCL
 * communicator, a non-blocking stream and one device float for the
 * barrier; every CUDA and NCCL call is checked and a failure becomes one
 * line in err naming CUDA or NCCL, the call, its cause and our line.
 */
#include "comm_nccl.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime.h>
/* nccl.h declares ncclGroupStart() and a few more without (void) */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wstrict-prototypes"
#include <nccl.h>
#pragma GCC diagnostic pop

_Static_assert(sizeof(struct tr_comm_nccl_id) == sizeof(ncclUniqueId),
	       "tr_comm_nccl_id must hold an ncclUniqueId");

/* One rank's NCCL state. */
struct nccl_rank {
	ncclComm_t comm; /* NULL once aborted */
	cudaStream_t stream;
	float *scratch; /* one float on the device: the barrier's all-reduce */
	int device;
};

static const char *base_name(const char *path)
{
	const char *slash = strrchr(path, '/');
	return slash != NULL ? slash + 1 : path;
}

static int cuda_error(struct ut_err *err, const char *call, cudaError_t rc, const char *file,
		      int line)
{
	return ut_err_set(err, "comm (NCCL): CUDA: %s: %s (error %d, %s:%d)", call,
			  cudaGetErrorString(rc), (int)rc, base_name(file), line);
}

static int nccl_error(struct ut_err *err, ncclComm_t comm, const char *call, ncclResult_t rc,
		      const char *file, int line)
{
	const char *detail = ncclGetLastError(comm);
	bool has_detail = detail != NULL && detail[0] != '\0';
	return ut_err_set(err, "comm (NCCL): NCCL: %s: %s%s%s (error %d, %s:%d)", call,
			  ncclGetErrorString(rc), has_detail ? ": " : "", has_detail ? detail : "",
			  (int)rc, base_name(file), line);
}

/* In functions with a struct ut_err *err: return -1 with the message on failure. */
#define CUDA_CHECK(call)                                                                           \
	do {                                                                                       \
		cudaError_t cuda_rc_ = (call);                                                     \
		if (cuda_rc_ != cudaSuccess)                                                       \
			return cuda_error(err, #call, cuda_rc_, __FILE__, __LINE__);               \
	} while (0)
#define NCCL_CHECK(comm, call)                                                                     \
	do {                                                                                       \
		ncclResult_t nccl_rc_ = (call);                                                    \
		if (nccl_rc_ != ncclSuccess)                                                       \
			return nccl_error(err, (comm), #call, nccl_rc_, __FILE__, __LINE__);       \
	} while (0)

/* The device exists and the driver works; otherwise one line saying which. */
static int check_device(int device, struct ut_err *err)
{
	int count = 0;
	cudaError_t rc = cudaGetDeviceCount(&count);
	if (rc != cudaSuccess)
		return ut_err_set(err,
				  "comm (NCCL): CUDA: no usable device: cudaGetDeviceCount: %s "
				  "(error %d)",
				  cudaGetErrorString(rc), (int)rc);
	if (device < 0 || device >= count)
		return ut_err_set(err, "comm (NCCL): CUDA: device %d does not exist (%d found)",
				  device, count);
	return 0;
}

static int check_ready(const struct tr_comm *c, const char *what, struct ut_err *err)
{
	const struct nccl_rank *r = c->state;
	if (r->comm == NULL)
		return ut_err_set(err,
				  "comm (NCCL): rank %d of %d: %s: the communicator was aborted",
				  c->rank, c->world, what);
	CUDA_CHECK(cudaSetDevice(r->device));
	return 0;
}

static int nccl_all_reduce(struct tr_comm *c, void *data, size_t count, ncclDataType_t type,
			   ncclRedOp_t op, struct ut_err *err)
{
	struct nccl_rank *r = c->state;
	if (check_ready(c, "all-reduce", err) != 0)
		return -1;
	NCCL_CHECK(r->comm, ncclAllReduce(data, data, count, type, op, r->comm, r->stream));
	CUDA_CHECK(cudaStreamSynchronize(r->stream));
	return 0;
}

static int nccl_all_reduce_sum(struct tr_comm *c, float *data, size_t count, struct ut_err *err)
{
	return nccl_all_reduce(c, data, count, ncclFloat, ncclSum, err);
}

static int nccl_all_reduce_mean(struct tr_comm *c, float *data, size_t count, struct ut_err *err)
{
	return nccl_all_reduce(c, data, count, ncclFloat, ncclAvg, err);
}

static int nccl_all_reduce_sum_f64(struct tr_comm *c, double *data, size_t count,
				   struct ut_err *err)
{
	return nccl_all_reduce(c, data, count, ncclDouble, ncclSum, err);
}

static int nccl_broadcast(struct tr_comm *c, float *data, size_t count, int root,
			  struct ut_err *err)
{
	struct nccl_rank *r = c->state;
	if (root < 0 || root >= c->world)
		return ut_err_set(err, "comm (NCCL): broadcast from root %d of %d ranks", root,
				  c->world);
	if (check_ready(c, "broadcast", err) != 0)
		return -1;
	NCCL_CHECK(r->comm, ncclBroadcast(data, data, count, ncclFloat, root, r->comm, r->stream));
	CUDA_CHECK(cudaStreamSynchronize(r->stream));
	return 0;
}

static int nccl_barrier(struct tr_comm *c, struct ut_err *err)
{
	struct nccl_rank *r = c->state;
	return nccl_all_reduce(c, r->scratch, 1, ncclFloat, ncclSum, err);
}

static void nccl_abort(struct tr_comm *c)
{
	struct nccl_rank *r = c->state;
	if (r->comm != NULL) {
		(void)ncclCommAbort(r->comm); /* nothing left to do if it fails */
		r->comm = NULL;
	}
}

/* Free a rank's stream and scratch (its device current) and its handle. */
static void rank_free(struct tr_comm *c)
{
	struct nccl_rank *r = c->state;
	if (r != NULL) {
		if (cudaSetDevice(r->device) == cudaSuccess) {
			if (r->scratch != NULL)
				(void)cudaFree(r->scratch);
			if (r->stream != NULL)
				(void)cudaStreamDestroy(r->stream);
		}
		free(r);
	}
	free(c);
}

static void nccl_destroy(struct tr_comm *c)
{
	struct nccl_rank *r = c->state;
	if (r->comm != NULL)
		(void)ncclCommDestroy(r->comm); /* teardown: errors have no one to go to */
	rank_free(c);
}

static const struct tr_comm_ops nccl_ops = {
    .name = "nccl",
    .all_reduce_sum = nccl_all_reduce_sum,
    .all_reduce_mean = nccl_all_reduce_mean,
    .all_reduce_sum_f64 = nccl_all_reduce_sum_f64,
    .broadcast = nccl_broadcast,
    .barrier = nccl_barrier,
    .abort = nccl_abort,
    .destroy = nccl_destroy,
};

/* A handle around comm: its stream and scratch on device. On failure the caller frees. */
static int rank_setup(struct tr_comm *c, struct ut_err *err)
{
	struct nccl_rank *r = c->state;
	CUDA_CHECK(cudaSetDevice(r->device));
	CUDA_CHECK(cudaStreamCreateWithFlags(&r->stream, cudaStreamNonBlocking));
	CUDA_CHECK(cudaMalloc((void **)&r->scratch, sizeof(float)));
	CUDA_CHECK(cudaMemset(r->scratch, 0, sizeof(float)));
	return 0;
}

static struct tr_comm *rank_alloc(int world, int rank, int device)
{
	struct tr_comm *c = malloc(sizeof(*c));
	struct nccl_rank *r = calloc(1, sizeof(*r));
	if (c == NULL || r == NULL) {
		free(c);
		free(r);
		return NULL;
	}
	r->device = device;
	*c = (struct tr_comm){.ops = &nccl_ops, .rank = rank, .world = world, .state = r};
	return c;
}

int tr_comm_nccl_unique_id(struct tr_comm_nccl_id *id, struct ut_err *err)
{
	ncclUniqueId unique;
	NCCL_CHECK(NULL, ncclGetUniqueId(&unique));
	memcpy(id->bytes, unique.internal, sizeof(id->bytes));
	return 0;
}

int tr_comm_nccl_create(const struct tr_comm_nccl_id *id, int world, int rank, int device,
			struct tr_comm **out, struct ut_err *err)
{
	*out = NULL;
	if (world < 1 || rank < 0 || rank >= world)
		return ut_err_set(err, "comm (NCCL): rank %d of world %d", rank, world);
	if (check_device(device, err) != 0)
		return -1;
	struct tr_comm *c = rank_alloc(world, rank, device);
	if (c == NULL)
		return ut_err_set(err, "comm (NCCL): out of memory");
	struct nccl_rank *r = c->state;
	ncclUniqueId unique;
	memcpy(unique.internal, id->bytes, sizeof(unique.internal));
	cudaError_t rc = cudaSetDevice(device);
	if (rc != cudaSuccess) {
		rank_free(c);
		return cuda_error(err, "cudaSetDevice(device)", rc, __FILE__, __LINE__);
	}
	ncclResult_t nrc = ncclCommInitRank(&r->comm, world, unique, rank);
	if (nrc != ncclSuccess) {
		r->comm = NULL;
		rank_free(c);
		return nccl_error(err, NULL, "ncclCommInitRank(&comm, world, id, rank)", nrc,
				  __FILE__, __LINE__);
	}
	if (rank_setup(c, err) != 0) {
		nccl_destroy(c);
		return -1;
	}
	*out = c;
	return 0;
}

int tr_comm_nccl_create_all(int world, const int *devices, struct tr_comm **comms,
			    struct ut_err *err)
{
	if (world < 1)
		return ut_err_set(err, "comm (NCCL): world size %d is below 1", world);
	for (int i = 0; i < world; i++)
		comms[i] = NULL;
	for (int i = 0; i < world; i++)
		if (check_device(devices[i], err) != 0)
			return -1;
	ncclComm_t *raw = calloc((size_t)world, sizeof(*raw));
	if (raw == NULL)
		return ut_err_set(err, "comm (NCCL): out of memory for %d ranks", world);
	ncclResult_t nrc = ncclCommInitAll(raw, world, devices);
	if (nrc != ncclSuccess) {
		free(raw);
		return nccl_error(err, NULL, "ncclCommInitAll(comms, world, devices)", nrc,
				  __FILE__, __LINE__);
	}
	int rc = 0;
	for (int i = 0; i < world; i++) {
		comms[i] = rank_alloc(world, i, devices[i]);
		if (comms[i] == NULL) {
			(void)ncclCommDestroy(raw[i]);
			rc = ut_err_set(err, "comm (NCCL): out of memory for %d ranks", world);
			continue;
		}
		((struct nccl_rank *)comms[i]->state)->comm = raw[i];
		if (rc == 0 && rank_setup(comms[i], err) != 0)
			rc = -1;
	}
	free(raw);
	if (rc != 0)
		for (int i = 0; i < world; i++) {
			tr_comm_destroy(comms[i]);
			comms[i] = NULL;
		}
	return rc;
}
