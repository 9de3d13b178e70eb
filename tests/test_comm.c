/*
 * test_comm.c - the thread communicator (trainer/nn/comm.h): all-reduce
 * (sum and mean), broadcast and barrier across 1 to 5 rank threads.
 *
 * What is checked: every rank's all-reduce result is bit-identical to the
 * sequential sum ((rank 0 + rank 1) + rank 2) + ..., with values chosen so
 * that another order gives other bits (1e8 and 1 mixed), over repeated
 * rounds so thread timing varies; counts that do not divide by world;
 * broadcast from a non-zero root; mismatched collectives fail on every
 * rank instead of hanging or corrupting; abort releases ranks that wait
 * for a rank that will never come.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "comm.h"

enum { MAX_WORLD = 5, COUNT = 1001, ROUNDS = 50 };

struct rank_job;
typedef void (*rank_fn)(struct rank_job *job);

/* One rank thread's work and what it saw. */
struct rank_job {
	struct tr_comm *comm;
	rank_fn fn;
	float data[COUNT];
	int rc[ROUNDS];
	struct ut_err err;
	int mismatches; /* results differing from the expected bits */
};

static void *rank_main(void *arg)
{
	struct rank_job *job = arg;
	job->fn(job);
	return NULL;
}

/* Run fn on world rank threads of one thread communicator, and join them. */
static void run_ranks(int world, struct rank_job *jobs, rank_fn fn)
{
	struct tr_comm *comms[MAX_WORLD];
	struct ut_err err = {{0}};
	if (tr_comm_thread_create(world, comms, &err))
		fail_msg("%s", err.msg);
	pthread_t threads[MAX_WORLD];
	for (int r = 0; r < world; r++) {
		assert_int_equal(comms[r]->rank, r);
		assert_int_equal(comms[r]->world, world);
		jobs[r].comm = comms[r];
		jobs[r].fn = fn;
		assert_int_equal(pthread_create(&threads[r], NULL, rank_main, &jobs[r]), 0);
	}
	for (int r = 0; r < world; r++)
		assert_int_equal(pthread_join(threads[r], NULL), 0);
	for (int r = 0; r < world; r++)
		tr_comm_destroy(comms[r]);
}

/* Rank r's value i in round k: large and small values, so the order of the sum shows. */
static float value(int rank, int round, int i)
{
	uint32_t h = (uint32_t)(rank * 7919 + round * 104729 + i * 31) * 2654435761u;
	float small = (float)(h % 1000) / 7.0f;
	return (h >> 20) % 3 == 0 ? 1e8f + small : ((h >> 20) % 3 == 1 ? -1e8f : small);
}

static float expected_sum(int world, int round, int i)
{
	float sum = value(0, round, i);
	for (int r = 1; r < world; r++)
		sum += value(r, round, i);
	return sum;
}

static void sum_rounds(struct rank_job *job)
{
	int world = job->comm->world;
	for (int k = 0; k < ROUNDS; k++) {
		size_t count = (size_t)(COUNT - k); /* divisible by world or not */
		for (size_t i = 0; i < count; i++)
			job->data[i] = value(job->comm->rank, k, (int)i);
		bool mean = k % 2 == 1;
		job->rc[k] = mean ? tr_comm_all_reduce_mean(job->comm, job->data, count, &job->err)
				  : tr_comm_all_reduce_sum(job->comm, job->data, count, &job->err);
		for (size_t i = 0; i < count; i++) {
			float want = expected_sum(world, k, (int)i);
			if (mean)
				want /= (float)world;
			if (memcmp(&job->data[i], &want, sizeof(float)) != 0)
				job->mismatches++;
		}
	}
}

static void test_all_reduce(void **state)
{
	(void)state;
	static struct rank_job jobs[MAX_WORLD];
	for (int world = 1; world <= MAX_WORLD; world++) {
		memset(jobs, 0, sizeof(jobs));
		run_ranks(world, jobs, sum_rounds);
		for (int r = 0; r < world; r++) {
			for (int k = 0; k < ROUNDS; k++)
				if (jobs[r].rc[k] != 0)
					fail_msg("world %d rank %d round %d: %s", world, r, k,
						 jobs[r].err.msg);
			if (jobs[r].mismatches != 0)
				fail_msg("world %d rank %d: %d values differ from rank-order sums",
					 world, r, jobs[r].mismatches);
		}
	}
	/* the check has teeth: the reverse order gives other bits for these values */
	int differ = 0;
	for (int i = 0; i < COUNT; i++) {
		float reverse = value(3, 0, i);
		for (int r = 2; r >= 0; r--)
			reverse += value(r, 0, i);
		float forward = expected_sum(4, 0, i);
		differ += memcmp(&reverse, &forward, sizeof(float)) != 0;
	}
	assert_true(differ > 10);
}

/* Doubles: 1e17 and 1 mixed, so only rank order gives the expected bits. */
static double value_f64(int rank, int i)
{
	return (rank + i) % 3 == 0 ? 1e17 : ((rank + i) % 3 == 1 ? -1e17 : 1.0 + rank * 0.5);
}

static void sum_f64(struct rank_job *job)
{
	enum { N = 301 };
	double data[N];
	for (int i = 0; i < N; i++)
		data[i] = value_f64(job->comm->rank, i);
	job->rc[0] = tr_comm_all_reduce_sum_f64(job->comm, data, N, &job->err);
	for (int i = 0; i < N; i++) {
		double want = value_f64(0, i);
		for (int r = 1; r < job->comm->world; r++)
			want += value_f64(r, i);
		job->mismatches += memcmp(&data[i], &want, sizeof(double)) != 0;
	}
}

static void test_all_reduce_f64(void **state)
{
	(void)state;
	static struct rank_job jobs[MAX_WORLD];
	for (int world = 1; world <= MAX_WORLD; world++) {
		memset(jobs, 0, sizeof(jobs));
		run_ranks(world, jobs, sum_f64);
		for (int r = 0; r < world; r++) {
			if (jobs[r].rc[0] != 0)
				fail_msg("world %d rank %d: %s", world, r, jobs[r].err.msg);
			assert_int_equal(jobs[r].mismatches, 0);
		}
	}
}

static void broadcast_and_barrier(struct rank_job *job)
{
	for (int i = 0; i < COUNT; i++)
		job->data[i] = value(job->comm->rank, 1, i);
	job->rc[0] = tr_comm_broadcast(job->comm, job->data, COUNT, 2, &job->err);
	for (int i = 0; i < COUNT; i++) {
		float want = value(2, 1, i);
		job->mismatches += memcmp(&job->data[i], &want, sizeof(float)) != 0;
	}
	job->rc[1] = tr_comm_barrier(job->comm, &job->err);
	job->rc[2] = tr_comm_all_reduce_sum(job->comm, job->data, 0, &job->err);
}

static void test_broadcast_barrier(void **state)
{
	(void)state;
	static struct rank_job jobs[4];
	memset(jobs, 0, sizeof(jobs));
	run_ranks(4, jobs, broadcast_and_barrier);
	for (int r = 0; r < 4; r++) {
		for (int k = 0; k < 3; k++)
			if (jobs[r].rc[k] != 0)
				fail_msg("rank %d call %d: %s", r, k, jobs[r].err.msg);
		assert_int_equal(jobs[r].mismatches, 0);
	}
}

/* Rank 1 passes another count: every rank fails, then the group still works. */
static void mismatched(struct rank_job *job)
{
	size_t count = job->comm->rank == 1 ? 10 : 11;
	job->rc[0] = tr_comm_all_reduce_sum(job->comm, job->data, count, &job->err);
	struct ut_err later = {{0}};
	job->rc[1] = tr_comm_barrier(job->comm, &later);
	if (job->comm->rank == 2)
		job->rc[2] = tr_comm_broadcast(job->comm, job->data, 4, 0, &later);
	else
		job->rc[2] = tr_comm_barrier(job->comm, &later);
}

static void test_mismatch(void **state)
{
	(void)state;
	static struct rank_job jobs[3];
	memset(jobs, 0, sizeof(jobs));
	run_ranks(3, jobs, mismatched);
	for (int r = 0; r < 3; r++) {
		assert_int_equal(jobs[r].rc[0], -1);
		assert_non_null(strstr(jobs[r].err.msg, "count"));
		assert_int_equal(jobs[r].rc[1], 0);
		assert_int_equal(jobs[r].rc[2], -1);
	}
}

/* Rank 0 fails on its own and aborts: the others, waiting in an all-reduce, are released. */
static void aborting(struct rank_job *job)
{
	if (job->comm->rank == 0) {
		tr_comm_abort(job->comm);
		job->rc[0] = -1;
		return;
	}
	job->rc[0] = tr_comm_all_reduce_sum(job->comm, job->data, COUNT, &job->err);
	job->rc[1] = tr_comm_barrier(job->comm, &job->err);
}

static void test_abort(void **state)
{
	(void)state;
	static struct rank_job jobs[4];
	memset(jobs, 0, sizeof(jobs));
	run_ranks(4, jobs, aborting);
	for (int r = 1; r < 4; r++) {
		assert_int_equal(jobs[r].rc[0], -1);
		assert_int_equal(jobs[r].rc[1], -1);
		assert_non_null(strstr(jobs[r].err.msg, "aborted"));
	}
}

static void test_errors(void **state)
{
	(void)state;
	struct tr_comm *comms[1];
	struct ut_err err = {{0}};
	assert_int_equal(tr_comm_thread_create(0, comms, &err), -1);
	assert_non_null(strstr(err.msg, "world size 0"));
	assert_int_equal(tr_comm_thread_create(1, comms, &err), 0);
	float x = 3;
	assert_int_equal(tr_comm_broadcast(comms[0], &x, 1, 1, &err), -1);
	assert_non_null(strstr(err.msg, "root 1"));
	assert_int_equal(tr_comm_all_reduce_mean(comms[0], &x, 1, &err), 0);
	assert_true(x == 3);
	tr_comm_destroy(comms[0]);
	tr_comm_destroy(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_all_reduce),
	    cmocka_unit_test(test_all_reduce_f64),
	    cmocka_unit_test(test_broadcast_barrier),
	    cmocka_unit_test(test_mismatch),
	    cmocka_unit_test(test_abort),
	    cmocka_unit_test(test_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
