/*
 * comm_thread.c - the communicator of comm.h for ranks that are threads of
 * one process: the ranks share host memory, so a collective is each rank
 * posting its buffer, then working on the others' buffers between
 * barriers (a mutex and a condition variable with a generation count; no
 * sleep loop).
 *
 * all_reduce_sum is a reduce-scatter then an all-gather, as NCCL's ring
 * does, with the order fixed: rank r sums chunk r of every buffer as
 * ((b[0] + b[1]) + b[2]) + ... in float, writes it into its own buffer,
 * and after a barrier every rank copies the other chunks from their
 * owners. So every rank gets the same bits, and those bits depend on the
 * data only, not on which thread ran first.
 */
#include "comm.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

enum collective { COLL_SUM, COLL_MEAN, COLL_SUM_F64, COLL_BROADCAST, COLL_BARRIER };

static const char *const collective_names[] = {"all_reduce_sum", "all_reduce_mean",
					       "all_reduce_sum_f64", "broadcast", "barrier"};

/* What one rank posted for the collective in progress. */
struct post {
	enum collective kind;
	void *data; /* float, or double for COLL_SUM_F64 */
	size_t count;
	int root;
};

/* The group's state, shared by the world handles (refs of them still alive). */
struct group {
	pthread_mutex_t lock;
	pthread_cond_t released;
	int world;
	int arrived;		  /* ranks waiting at the current barrier */
	unsigned long generation; /* barriers passed */
	bool aborted;
	int refs;
	struct post *posts; /* [world] */
};

/*
 * Wait until every rank of the group is here. -1 when the group was or
 * got aborted before this barrier released.
 */
static int group_wait(struct group *g)
{
	pthread_mutex_lock(&g->lock);
	if (g->aborted) {
		pthread_mutex_unlock(&g->lock);
		return -1;
	}
	unsigned long generation = g->generation;
	if (++g->arrived == g->world) {
		g->arrived = 0;
		g->generation++;
		pthread_cond_broadcast(&g->released);
	} else {
		while (g->generation == generation && !g->aborted)
			pthread_cond_wait(&g->released, &g->lock);
	}
	int rc = g->generation == generation ? -1 : 0;
	pthread_mutex_unlock(&g->lock);
	return rc;
}

static int aborted_error(const struct tr_comm *c, enum collective kind, struct ut_err *err)
{
	return ut_err_set(err, "comm (threads): rank %d of %d: %s: the group was aborted", c->rank,
			  c->world, collective_names[kind]);
}

/*
 * Every rank posted the same collective with the same count and root?
 * Read after a barrier, so every rank sees the same posts and decides
 * alike.
 */
static int check_posts(const struct tr_comm *c, const struct group *g, struct ut_err *err)
{
	const struct post *mine = &g->posts[c->rank];
	for (int r = 0; r < g->world; r++) {
		const struct post *other = &g->posts[r];
		if (other->kind != mine->kind)
			return ut_err_set(err,
					  "comm (threads): rank %d called %s while rank %d "
					  "called %s",
					  c->rank, collective_names[mine->kind], r,
					  collective_names[other->kind]);
		if (other->count != mine->count || other->root != mine->root)
			return ut_err_set(err,
					  "comm (threads): %s: rank %d has count %zu root %d, "
					  "rank %d count %zu root %d",
					  collective_names[mine->kind], c->rank, mine->count,
					  mine->root, r, other->count, other->root);
	}
	return 0;
}

/* Chunk r of count elements split over world ranks: [*lo, *hi). */
static void chunk(size_t count, int world, int r, size_t *lo, size_t *hi)
{
	*lo = count / (size_t)world * (size_t)r +
	      (count % (size_t)world < (size_t)r ? count % (size_t)world : (size_t)r);
	*hi = *lo + count / (size_t)world + ((size_t)r < count % (size_t)world ? 1 : 0);
}

/* Sum chunk `rank` of every rank's buffer, in rank order, into this rank's buffer. */
static void reduce_own_chunk(const struct tr_comm *c, const struct group *g)
{
	size_t lo, hi;
	const struct post *mine = &g->posts[c->rank];
	chunk(mine->count, g->world, c->rank, &lo, &hi);
	if (mine->kind == COLL_SUM_F64) {
		double *out = mine->data;
		for (size_t i = lo; i < hi; i++) {
			double sum = ((const double *)g->posts[0].data)[i];
			for (int r = 1; r < g->world; r++)
				sum += ((const double *)g->posts[r].data)[i];
			out[i] = sum;
		}
		return;
	}
	float *out = mine->data;
	float world = (float)g->world;
	for (size_t i = lo; i < hi; i++) {
		float sum = ((const float *)g->posts[0].data)[i];
		for (int r = 1; r < g->world; r++)
			sum += ((const float *)g->posts[r].data)[i];
		out[i] = mine->kind == COLL_MEAN ? sum / world : sum;
	}
}

/* Copy every other rank's reduced chunk into this rank's buffer. */
static void gather_chunks(const struct tr_comm *c, const struct group *g)
{
	const struct post *mine = &g->posts[c->rank];
	size_t size = mine->kind == COLL_SUM_F64 ? sizeof(double) : sizeof(float);
	char *out = mine->data;
	for (int r = 0; r < g->world; r++) {
		size_t lo, hi;
		chunk(g->posts[r].count, g->world, r, &lo, &hi);
		if (r != c->rank && hi > lo)
			memcpy(out + lo * size, (const char *)g->posts[r].data + lo * size,
			       (hi - lo) * size);
	}
}

/*
 * One collective: post, barrier, check, the work of each phase between
 * barriers, and a last barrier so that no rank reuses its buffer (or its
 * post) while another still reads it.
 */
static int collective(struct tr_comm *c, enum collective kind, void *data, size_t count, int root,
		      struct ut_err *err)
{
	struct group *g = c->state;
	if (kind == COLL_BROADCAST && (root < 0 || root >= c->world))
		return ut_err_set(err, "comm (threads): broadcast from root %d of %d ranks", root,
				  c->world);
	if (count > 0 && data == NULL)
		return ut_err_set(err, "comm (threads): %s of %zu values from NULL",
				  collective_names[kind], count);
	g->posts[c->rank] = (struct post){.kind = kind, .data = data, .count = count, .root = root};
	if (group_wait(g) != 0)
		return aborted_error(c, kind, err);
	int rc = check_posts(c, g, err);
	if (rc == 0 && (kind == COLL_SUM || kind == COLL_MEAN || kind == COLL_SUM_F64)) {
		reduce_own_chunk(c, g);
		if (group_wait(g) != 0)
			return aborted_error(c, kind, err);
		gather_chunks(c, g);
	} else if (rc == 0 && kind == COLL_BROADCAST && c->rank != root && count > 0) {
		memcpy(data, g->posts[root].data, count * sizeof(float));
	}
	if (group_wait(g) != 0)
		return rc != 0 ? rc : aborted_error(c, kind, err);
	return rc;
}

static int thread_all_reduce_sum(struct tr_comm *c, float *data, size_t count, struct ut_err *err)
{
	return collective(c, COLL_SUM, data, count, -1, err);
}

static int thread_all_reduce_mean(struct tr_comm *c, float *data, size_t count, struct ut_err *err)
{
	return collective(c, COLL_MEAN, data, count, -1, err);
}

static int thread_all_reduce_sum_f64(struct tr_comm *c, double *data, size_t count,
				     struct ut_err *err)
{
	return collective(c, COLL_SUM_F64, data, count, -1, err);
}

static int thread_broadcast(struct tr_comm *c, float *data, size_t count, int root,
			    struct ut_err *err)
{
	return collective(c, COLL_BROADCAST, data, count, root, err);
}

static int thread_barrier(struct tr_comm *c, struct ut_err *err)
{
	return collective(c, COLL_BARRIER, NULL, 0, -1, err);
}

static void thread_abort(struct tr_comm *c)
{
	struct group *g = c->state;
	pthread_mutex_lock(&g->lock);
	g->aborted = true;
	pthread_cond_broadcast(&g->released);
	pthread_mutex_unlock(&g->lock);
}

static void group_free(struct group *g)
{
	pthread_cond_destroy(&g->released);
	pthread_mutex_destroy(&g->lock);
	free(g->posts);
	free(g);
}

static void thread_destroy(struct tr_comm *c)
{
	struct group *g = c->state;
	pthread_mutex_lock(&g->lock);
	bool last = --g->refs == 0;
	pthread_mutex_unlock(&g->lock);
	if (last)
		group_free(g);
	free(c);
}

static const struct tr_comm_ops thread_ops = {
    .name = "threads",
    .all_reduce_sum = thread_all_reduce_sum,
    .all_reduce_mean = thread_all_reduce_mean,
    .all_reduce_sum_f64 = thread_all_reduce_sum_f64,
    .broadcast = thread_broadcast,
    .barrier = thread_barrier,
    .abort = thread_abort,
    .destroy = thread_destroy,
};

int tr_comm_thread_create(int world, struct tr_comm **comms, struct ut_err *err)
{
	if (world < 1)
		return ut_err_set(err, "comm (threads): world size %d is below 1", world);
	struct group *g = calloc(1, sizeof(*g));
	if (g == NULL)
		return ut_err_set(err, "comm (threads): out of memory for %d ranks", world);
	g->posts = calloc((size_t)world, sizeof(*g->posts));
	if (g->posts == NULL) {
		free(g);
		return ut_err_set(err, "comm (threads): out of memory for %d ranks", world);
	}
	g->world = world;
	if (pthread_mutex_init(&g->lock, NULL) != 0) {
		free(g->posts);
		free(g);
		return ut_err_set(err, "comm (threads): cannot make a mutex");
	}
	if (pthread_cond_init(&g->released, NULL) != 0) {
		pthread_mutex_destroy(&g->lock);
		free(g->posts);
		free(g);
		return ut_err_set(err, "comm (threads): cannot make a condition variable");
	}
	for (int r = 0; r < world; r++) {
		comms[r] = malloc(sizeof(**comms));
		if (comms[r] == NULL) {
			for (int k = 0; k < r; k++)
				free(comms[k]);
			group_free(g);
			return ut_err_set(err, "comm (threads): out of memory for %d ranks", world);
		}
		*comms[r] =
		    (struct tr_comm){.ops = &thread_ops, .rank = r, .world = world, .state = g};
	}
	g->refs = world;
	return 0;
}
