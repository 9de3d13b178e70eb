/*
 * test_ddp.c - YOLOv5's DDP step with the thread communicator on the CPU
 * backend: yolov5n (nc 2, 64 x 64 images), 2 and 4 rank threads, each on
 * its shard of a batch: forward (train mode), ComputeLoss, the loss
 * gradient times WORLD_SIZE (YOLOv5: loss *= WORLD_SIZE under DDP),
 * backward, then the gradients averaged across the ranks as
 * DistributedDataParallel does (tr_comm_all_reduce_mean). Rank 0's initial
 * weights and BN buffers reach the others by broadcast, as DDP's
 * constructor does.
 *
 * What is exactly equal, and so what is compared:
 *  1. DDP without --sync-bn normalises each rank's shard with that shard's
 *     own BN statistics, and ComputeLoss averages box and class losses over
 *     each rank's own matches. So DDP's averaged gradient is the gradient
 *     of the sum of the ranks' losses, each computed on its shard alone,
 *     NOT the gradient of one rank on the whole batch. test_shards compares
 *     it with one model running the shards one after another and summing
 *     their gradients (tr_model_backward accumulates). In exact arithmetic
 *     they are equal; in float they differ only where the backward adds a
 *     shard's contribution in more than one piece (the ranks' scaling by
 *     WORLD_SIZE = 2, 4 and the division back are exact).
 *  2. Against one rank on the whole batch, the equality holds exactly in
 *     arithmetic when BN statistics and loss means do not depend on the
 *     split: test_whole_batch gives every rank the same shard (images and
 *     labels), so the whole batch is WORLD_SIZE copies of it, whose BN mean
 *     and biased variance and whose loss means are the shard's. (A
 *     --sync-bn BN, all-reducing its per-channel sums in forward and
 *     backward, would make this hold for distinct shards; it is not built
 *     yet.) Distinct shards against the whole batch are measured and
 *     printed, not compared.
 * Tolerance, per parameter tensor: max |ddp - reference| <= 1e-4 * max
 * |reference| (float32 sums over different orders and batch splits in
 * oneDNN's kernels). Seen: 0 (bit-identical) against the summed shards,
 * 2.5e-6 against the whole batch of copies; the teeth give 0.19 to 1.4, and
 * distinct shards against the whole batch 2.5 (2 ranks) and 11 (4 ranks),
 * BN over one or two 64 x 64 images being far from BN over four. Also:
 * after the all-reduce every rank holds the same
 * bits. Teeth: a rank that skips its shard (contributes zero gradients), or
 * that leaves out the WORLD_SIZE factor, fails both comparisons.
 *
 * YE_SOURCE_ROOT unset is a failure, not a skip.
 */
#include <math.h>
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
#include "loss.h"
#include "model.h"
#include "pcg.h"

enum { SIZE = 64, NC = 2, MAX_WORLD = 4, BATCH = 4, LABELS_PER_IMAGE = 3, LEVELS = 3 };
#define TOL 1e-4

/* The batch every test splits: images [BATCH, 3, SIZE, SIZE] and their labels. */
struct batch {
	float images[BATCH * 3 * SIZE * SIZE];
	float targets[BATCH * LABELS_PER_IMAGE][6];
	size_t nt;
};

/* How a rank misbehaves, for the teeth. */
enum fault { FAULT_NONE, FAULT_SKIP_SHARD, FAULT_NO_WORLD_SCALE };

/* One DDP rank: its communicator, its model and backend, its shard. */
struct rank_job {
	struct tr_comm *comm;
	const struct tr_model *master; /* rank 0 copies its weights from here */
	const struct batch *batch;
	int first, count; /* the shard: images [first, first + count) */
	enum fault fault;
	struct tr_model *model;
	int rc;
	struct ut_err err;
};

static struct tr_model *load_yolov5n(void)
{
	char path[4096];
	struct ut_err err = {{0}};
	struct tr_model *model = NULL;
	const char *root = getenv("YE_SOURCE_ROOT");
	if (root == NULL || *root == '\0')
		fail_msg("YE_SOURCE_ROOT is not set");
	snprintf(path, sizeof(path), "%s/models/yolov5n.yaml", root);
	if (tr_model_from_file(path, NC, &model, &err))
		fail_msg("%s", err.msg);
	return model;
}

/* Random images and boxes from a fixed seed. */
static void make_batch(struct batch *b, uint64_t seed)
{
	struct ut_pcg rng;
	ut_pcg_seed(&rng, seed, 11);
	for (size_t i = 0; i < sizeof(b->images) / sizeof(float); i++)
		b->images[i] = (float)ut_pcg_uniform(&rng);
	b->nt = 0;
	for (int image = 0; image < BATCH; image++)
		for (int k = 0; k < LABELS_PER_IMAGE; k++) {
			float *t = b->targets[b->nt++];
			t[0] = (float)image;
			t[1] = (float)ut_pcg_below(&rng, NC);
			t[2] = (float)(0.2 + 0.6 * ut_pcg_uniform(&rng));
			t[3] = (float)(0.2 + 0.6 * ut_pcg_uniform(&rng));
			t[4] = (float)(0.1 + 0.3 * ut_pcg_uniform(&rng));
			t[5] = (float)(0.1 + 0.3 * ut_pcg_uniform(&rng));
		}
}

/* Every image a copy of image 0, and every image image 0's labels. */
static void make_copies(struct batch *b, const struct batch *from)
{
	size_t per_image = 3 * SIZE * SIZE;
	b->nt = 0;
	for (int image = 0; image < BATCH; image++) {
		memcpy(b->images + image * per_image, from->images, per_image * sizeof(float));
		for (size_t k = 0; k < from->nt; k++)
			if (from->targets[k][0] == 0) {
				memcpy(b->targets[b->nt], from->targets[k], sizeof(b->targets[0]));
				b->targets[b->nt++][0] = (float)image;
			}
	}
}

/*
 * Forward, ComputeLoss and backward of images [first, first + count) of
 * batch on model, gradients ADDED to model->grads, the loss gradient
 * times scale first. -1 with err on failure.
 */
static int shard_step(struct tr_model *model, struct tr_backend *cpu, const struct batch *b,
		      int first, int count, float scale, struct ut_err *err)
{
	const struct tr_detect *det = &model->detect;
	float targets[BATCH * LABELS_PER_IMAGE][6];
	size_t nt = 0;
	for (size_t k = 0; k < b->nt; k++) {
		int image = (int)b->targets[k][0];
		if (image >= first && image < first + count) {
			memcpy(targets[nt], b->targets[k], sizeof(targets[0]));
			targets[nt++][0] = (float)(image - first);
		}
	}
	struct tr_loss_params params = {
	    .nl = det->nl,
	    .na = det->na,
	    .nc = det->nc,
	    .anchors = det->anchors,
	    .hyp = {.box = 0.05, .obj = 1.0, .cls = 0.5, .cls_pw = 1, .obj_pw = 1, .anchor_t = 4}};
	tr_loss_scale_hyp(&params.hyp, det->nl, det->nc, SIZE);
	struct tr_loss *loss = NULL;
	float *grad[LEVELS] = {NULL};
	int rc = tr_loss_create(&params, nt + 1, &loss, err);
	if (rc == 0)
		rc = tr_model_forward(model, cpu, b->images + (size_t)first * 3 * SIZE * SIZE,
				      count, SIZE, SIZE, 1, err);
	struct tr_loss_batch lb = {.bs = count, .targets = &targets[0][0], .nt = nt};
	size_t sizes[LEVELS] = {0};
	for (int l = 0; rc == 0 && l < det->nl; l++) {
		lb.ny[l] = lb.nx[l] = SIZE / det->stride[l];
		sizes[l] = (size_t)count * (size_t)det->na * (size_t)(lb.ny[l] * lb.nx[l]) *
			   (size_t)det->no;
		grad[l] = malloc(sizes[l] * sizeof(float));
		if (grad[l] == NULL)
			rc = ut_err_set(err, "out of memory");
		lb.pred[l] = det->outputs[l];
		lb.grad[l] = grad[l];
	}
	struct tr_loss_result result;
	if (rc == 0)
		rc = tr_loss_compute(loss, &lb, &result, err);
	for (int l = 0; rc == 0 && l < det->nl; l++)
		for (size_t i = 0; i < sizes[l]; i++)
			grad[l][i] *= scale;
	if (rc == 0)
		rc = tr_model_backward(model, cpu, (const float *const *)grad, err);
	for (int l = 0; l < LEVELS; l++)
		free(grad[l]);
	tr_loss_free(loss);
	return rc;
}

/* A rank of DDP: weights from rank 0, its shard's step, the gradient average. */
static void *rank_main(void *arg)
{
	struct rank_job *job = arg;
	struct tr_comm *c = job->comm;
	struct tr_model *m = job->model;
	struct tr_backend *cpu = NULL;
	job->rc = tr_cpu_backend_create(1, &cpu, &job->err);
	if (job->rc == 0)
		job->rc = tr_model_plan(m, job->count, SIZE, SIZE, &job->err);
	if (job->rc == 0 && c->rank == 0) {
		memcpy(m->params, job->master->params, m->nparam_values * sizeof(float));
		memcpy(m->buffers, job->master->buffers, m->nbuffer_values * sizeof(float));
	}
	/* DDP's constructor: parameters and buffers from rank 0 */
	if (job->rc == 0)
		job->rc = tr_comm_broadcast(c, m->params, m->nparam_values, 0, &job->err);
	if (job->rc == 0)
		job->rc = tr_comm_broadcast(c, m->buffers, m->nbuffer_values, 0, &job->err);
	memset(m->grads, 0, m->nparam_values * sizeof(float));
	float scale = job->fault == FAULT_NO_WORLD_SCALE ? 1.0f : (float)c->world;
	if (job->rc == 0 && job->fault != FAULT_SKIP_SHARD)
		job->rc = shard_step(m, cpu, job->batch, job->first, job->count, scale, &job->err);
	if (job->rc == 0)
		job->rc = tr_comm_all_reduce_mean(c, m->grads, m->nparam_values, &job->err);
	if (job->rc != 0)
		tr_comm_abort(c); /* the others must not wait for this rank */
	tr_backend_destroy(cpu);
	return NULL;
}

/*
 * DDP over world rank threads on batch b (BATCH / world images each), rank
 * `faulty` with fault. The averaged gradients into grads (rank 0's, after
 * checking every rank holds the same bits).
 */
static void run_ddp(const struct tr_model *master, const struct batch *b, int world, int faulty,
		    enum fault fault, float *grads)
{
	struct tr_comm *comms[MAX_WORLD];
	struct rank_job jobs[MAX_WORLD];
	pthread_t threads[MAX_WORLD];
	struct ut_err err = {{0}};
	if (tr_comm_thread_create(world, comms, &err))
		fail_msg("%s", err.msg);
	int per_rank = BATCH / world;
	for (int r = 0; r < world; r++) {
		jobs[r] = (struct rank_job){.comm = comms[r],
					    .master = master,
					    .batch = b,
					    .first = r * per_rank,
					    .count = per_rank,
					    .fault = r == faulty ? fault : FAULT_NONE,
					    .model = load_yolov5n()};
		assert_int_equal(pthread_create(&threads[r], NULL, rank_main, &jobs[r]), 0);
	}
	for (int r = 0; r < world; r++)
		assert_int_equal(pthread_join(threads[r], NULL), 0);
	size_t n = master->nparam_values;
	for (int r = 0; r < world; r++) {
		if (jobs[r].rc != 0)
			fail_msg("rank %d of %d: %s", r, world, jobs[r].err.msg);
		if (memcmp(jobs[r].model->grads, jobs[0].model->grads, n * sizeof(float)) != 0)
			fail_msg("rank %d's averaged gradients differ from rank 0's", r);
	}
	memcpy(grads, jobs[0].model->grads, n * sizeof(float));
	for (int r = 0; r < world; r++) {
		tr_model_free(jobs[r].model);
		tr_comm_destroy(comms[r]);
	}
}

/* One model, one thread: the shards of world ranks one after another, gradients summed. */
static void run_sequential(const struct tr_model *master, const struct batch *b, int shards,
			   float *grads)
{
	struct ut_err err = {{0}};
	struct tr_backend *cpu = NULL;
	struct tr_model *m = load_yolov5n();
	if (tr_cpu_backend_create(1, &cpu, &err) || tr_model_plan(m, BATCH, SIZE, SIZE, &err))
		fail_msg("%s", err.msg);
	memcpy(m->params, master->params, m->nparam_values * sizeof(float));
	memcpy(m->buffers, master->buffers, m->nbuffer_values * sizeof(float));
	memset(m->grads, 0, m->nparam_values * sizeof(float));
	int per_shard = BATCH / shards;
	for (int s = 0; s < shards; s++)
		if (shard_step(m, cpu, b, s * per_shard, per_shard, 1.0f, &err))
			fail_msg("%s", err.msg);
	memcpy(grads, m->grads, m->nparam_values * sizeof(float));
	tr_backend_destroy(cpu);
	tr_model_free(m);
}

/* The worst over parameter tensors of max |got - want| / max |want|. */
static double worst_error(const struct tr_model *model, const float *got, const float *want,
			  const char **where)
{
	double worst = 0;
	*where = "";
	for (int t = 0; t < model->ntensors; t++) {
		const struct tr_tensor_spec *spec = &model->tensors[t];
		if (spec->kind != TR_TENSOR_PARAM)
			continue;
		double diff = 0, scale = 0;
		for (size_t i = spec->offset; i < spec->offset + spec->numel; i++) {
			diff = fmax(diff, fabs((double)got[i] - (double)want[i]));
			scale = fmax(scale, fabs((double)want[i]));
		}
		double error = scale > 0 ? diff / scale : diff;
		if (error > worst) {
			worst = error;
			*where = spec->name;
		}
	}
	return worst;
}

struct fixture {
	struct tr_model *master;
	struct batch distinct, copies;
	float *ddp, *reference;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	f->master = load_yolov5n();
	struct ut_pcg rng;
	ut_pcg_seed(&rng, 2026, 15);
	tr_model_init(f->master, &rng);
	make_batch(&f->distinct, 7);
	make_copies(&f->copies, &f->distinct);
	f->ddp = malloc(f->master->nparam_values * sizeof(float));
	f->reference = malloc(f->master->nparam_values * sizeof(float));
	assert_non_null(f->ddp);
	assert_non_null(f->reference);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	tr_model_free(f->master);
	free(f->ddp);
	free(f->reference);
	free(f);
	return 0;
}

/* DDP, then its teeth: the error of a good run and of each faulty one. */
static void compare_with_teeth(struct fixture *f, const struct batch *b, int world,
			       const char *against)
{
	const char *where;
	run_ddp(f->master, b, world, -1, FAULT_NONE, f->ddp);
	double error = worst_error(f->master, f->ddp, f->reference, &where);
	printf("world %d vs %s: worst relative error %.3g (%s)\n", world, against, error, where);
	if (!(error <= TOL))
		fail_msg("world %d vs %s: %s off by %.3g of its largest gradient", world, against,
			 where, error);
	const enum fault faults[] = {FAULT_SKIP_SHARD, FAULT_NO_WORLD_SCALE};
	for (int k = 0; k < 2; k++) {
		run_ddp(f->master, b, world, world - 1, faults[k], f->ddp);
		double bad = worst_error(f->master, f->ddp, f->reference, &where);
		printf("  teeth: rank %d %s: %.3g\n", world - 1,
		       k == 0 ? "skips its shard" : "without the WORLD_SIZE factor", bad);
		if (!(bad > 100 * TOL))
			fail_msg("world %d: a faulty rank went unnoticed (%.3g)", world, bad);
	}
}

static void test_shards(void **state)
{
	struct fixture *f = *state;
	for (int world = 2; world <= MAX_WORLD; world *= 2) {
		run_sequential(f->master, &f->distinct, world, f->reference);
		compare_with_teeth(f, &f->distinct, world, "1 rank summing the shards");
	}
}

static void test_whole_batch(void **state)
{
	struct fixture *f = *state;
	const char *where;
	for (int world = 2; world <= MAX_WORLD; world *= 2) {
		run_sequential(f->master, &f->copies, 1, f->reference);
		compare_with_teeth(f, &f->copies, world, "1 rank on the whole batch of copies");
		/* distinct shards: per-rank BN and loss means make these differ (printed) */
		run_sequential(f->master, &f->distinct, 1, f->reference);
		run_ddp(f->master, &f->distinct, world, -1, FAULT_NONE, f->ddp);
		printf("world %d vs 1 rank on the whole batch of distinct images (per-rank BN, "
		       "not compared): %.3g\n",
		       world, worst_error(f->master, f->ddp, f->reference, &where));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_shards),
	    cmocka_unit_test(test_whole_batch),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
