/*
 * test_comm_nccl.c - the NCCL communicator (trainer/cuda/comm_nccl.h),
 * suite 'cuda'.
 *
 * Without a usable GPU (the development machines): creating a group fails
 * at once with one line naming CUDA and the cause, and hands back no
 * handle. With GPUs: one rank thread per GPU (up to 4): all-reduce sum and
 * mean (float), sum (double), broadcast from the last rank and a barrier on device buffers,
 * against the same sums made on the host (values exactly representable, so
 * NCCL's own summation order cannot change them).
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <cuda_runtime.h>

#include "comm_nccl.h"

enum { MAX_RANKS = 4, COUNT = 4099 };

struct rank_job {
	struct tr_comm *comm;
	int device;
	int rc;
	struct ut_err err;
	int mismatches;
};

/* Rank r's value i: small integers, exact in float whatever the order of the sum. */
static float value(int rank, int i)
{
	return (float)((rank + 1) * 1000 + i % 997);
}

/* One collective's result against want[i]; counts the differences. */
static int compare(const float *got, float (*want)(int world, int i), int world)
{
	int differ = 0;
	for (int i = 0; i < COUNT; i++)
		differ += got[i] != want(world, i);
	return differ;
}

static float want_sum(int world, int i)
{
	float sum = 0;
	for (int r = 0; r < world; r++)
		sum += value(r, i);
	return sum;
}

static float want_mean(int world, int i)
{
	return want_sum(world, i) / (float)world;
}

static float want_last(int world, int i)
{
	return value(world - 1, i);
}

#define JOB_CUDA(call)                                                                             \
	do {                                                                                       \
		cudaError_t rc_ = (call);                                                          \
		if (rc_ != cudaSuccess) {                                                          \
			snprintf(job->err.msg, sizeof(job->err.msg), "%s: %s", #call,              \
				 cudaGetErrorString(rc_));                                         \
			job->rc = -1;                                                              \
			tr_comm_abort(job->comm); /* the other ranks must not wait for this one */ \
			return NULL;                                                               \
		}                                                                                  \
	} while (0)

static void *rank_main(void *arg)
{
	struct rank_job *job = arg;
	struct tr_comm *c = job->comm;
	float *host = malloc(sizeof(float) * COUNT), *dev = NULL;
	if (host == NULL) {
		job->rc = -1;
		return NULL;
	}
	JOB_CUDA(cudaSetDevice(job->device));
	JOB_CUDA(cudaMalloc((void **)&dev, sizeof(float) * COUNT));
	float (*const wants[3])(int, int) = {want_sum, want_mean, want_last};
	for (int k = 0; k < 3 && job->rc == 0; k++) {
		for (int i = 0; i < COUNT; i++)
			host[i] = value(c->rank, i);
		JOB_CUDA(cudaMemcpy(dev, host, sizeof(float) * COUNT, cudaMemcpyHostToDevice));
		if (k == 0)
			job->rc = tr_comm_all_reduce_sum(c, dev, COUNT, &job->err);
		else if (k == 1)
			job->rc = tr_comm_all_reduce_mean(c, dev, COUNT, &job->err);
		else
			job->rc = tr_comm_broadcast(c, dev, COUNT, c->world - 1, &job->err);
		JOB_CUDA(cudaMemcpy(host, dev, sizeof(float) * COUNT, cudaMemcpyDeviceToHost));
		job->mismatches += compare(host, wants[k], c->world);
	}
	/* doubles: the sum of 1e15 + rank values, beyond float's reach */
	double *dev64 = NULL, host64[3];
	JOB_CUDA(cudaMalloc((void **)&dev64, sizeof(host64)));
	for (int i = 0; i < 3; i++)
		host64[i] = 1e15 + (double)(c->rank * 3 + i);
	JOB_CUDA(cudaMemcpy(dev64, host64, sizeof(host64), cudaMemcpyHostToDevice));
	if (job->rc == 0)
		job->rc = tr_comm_all_reduce_sum_f64(c, dev64, 3, &job->err);
	JOB_CUDA(cudaMemcpy(host64, dev64, sizeof(host64), cudaMemcpyDeviceToHost));
	for (int i = 0; i < 3; i++) {
		double want = 0;
		for (int r = 0; r < c->world; r++)
			want += 1e15 + (double)(r * 3 + i);
		job->mismatches += host64[i] != want;
	}
	JOB_CUDA(cudaFree(dev64));
	if (job->rc == 0)
		job->rc = tr_comm_barrier(c, &job->err);
	JOB_CUDA(cudaFree(dev));
	free(host);
	return NULL;
}

static void test_nccl(void **state)
{
	(void)state;
	struct ut_err err = {{0}};
	int count = 0;
	struct tr_comm *comms[MAX_RANKS] = {NULL};
	int devices[MAX_RANKS] = {0, 1, 2, 3};
	if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
		/* no GPU: a clean one-line refusal naming CUDA, and no handle */
		comms[0] = (struct tr_comm *)&err; /* must be overwritten with NULL */
		assert_int_equal(tr_comm_nccl_create_all(1, devices, comms, &err), -1);
		assert_null(comms[0]);
		assert_non_null(strstr(err.msg, "comm (NCCL): CUDA: "));
		assert_null(strchr(err.msg, '\n'));
		struct tr_comm_nccl_id id = {{0}};
		struct tr_comm *one = (struct tr_comm *)&err;
		assert_int_equal(tr_comm_nccl_create(&id, 1, 0, 0, &one, &err), -1);
		assert_null(one);
		assert_non_null(strstr(err.msg, "CUDA"));
		printf("no GPU, refused as expected: %s\n", err.msg);
		return;
	}
	int world = count < MAX_RANKS ? count : MAX_RANKS;
	if (tr_comm_nccl_create_all(world, devices, comms, &err))
		fail_msg("%s", err.msg);
	struct rank_job jobs[MAX_RANKS];
	pthread_t threads[MAX_RANKS];
	for (int r = 0; r < world; r++) {
		jobs[r] = (struct rank_job){.comm = comms[r], .device = devices[r]};
		assert_int_equal(pthread_create(&threads[r], NULL, rank_main, &jobs[r]), 0);
	}
	for (int r = 0; r < world; r++)
		assert_int_equal(pthread_join(threads[r], NULL), 0);
	for (int r = 0; r < world; r++) {
		if (jobs[r].rc != 0)
			fail_msg("rank %d: %s", r, jobs[r].err.msg);
		assert_int_equal(jobs[r].mismatches, 0);
		tr_comm_destroy(comms[r]);
	}
	printf("NCCL all-reduce, mean, broadcast and barrier on %d GPU(s): equal\n", world);
}

static void test_bad_args(void **state)
{
	(void)state;
	struct ut_err err = {{0}};
	struct tr_comm *comms[1];
	struct tr_comm_nccl_id id = {{0}};
	assert_int_equal(tr_comm_nccl_create_all(0, (const int[]){0}, comms, &err), -1);
	assert_non_null(strstr(err.msg, "world size 0"));
	assert_int_equal(tr_comm_nccl_create(&id, 2, 2, 0, comms, &err), -1);
	assert_non_null(strstr(err.msg, "rank 2 of world 2"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_nccl),
	    cmocka_unit_test(test_bad_args),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
