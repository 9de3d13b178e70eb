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
 *     and biased variance and whose loss means are the shard's. Distinct
 *     images against the whole batch are measured and printed, not
 *     compared.
 *  3. With --sync-bn (tr_syncbn_backend_create: BN statistics and the BN
 *     backward's sums all-reduced), distinct images match one rank on the
 *     whole batch when every image carries the same label boxes (so every
 *     shard has as many matches per level, and box and class loss means
 *     split evenly): test_sync_bn compares the gradients and the BN
 *     running statistics after the step.
 *  4. One BN op (test_sync_bn_op): --sync-bn over 1, 2 and 4 ranks against
 *     the CPU backend's BN on the whole batch, a channel's mean up to 700
 *     times its spread: y, dx, the saved and running statistics within
 *     1e-6 (seen: bit-identical; dgamma, dbeta, summed over the ranks in
 *     float, 9e-8).
 * Tolerance, per tensor: max |ddp - reference| <= 1e-4 * max |reference|
 * (float32 sums over different orders and batch splits in oneDNN's
 * kernels). Seen: 0 (bit-identical) against the summed shards, 2.5e-6
 * against the whole batch of copies, 2.7e-6 with --sync-bn (0 with one
 * rank; its BN running statistics bit-identical); the teeth give 0.19 to
 * 3.5; distinct images against the whole batch without --sync-bn 3 (2
 * ranks) and 7 (4 ranks). Also: after the all-reduce every rank holds the
 * same bits. Teeth: a rank that skips its shard (contributes zero
 * gradients), takes rank 0's shard, or leaves out the WORLD_SIZE factor
 * fails the comparisons.
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
#include "syncbn.h"

enum { SIZE = 64, NC = 2, MAX_WORLD = 4, BATCH = 4, LABELS_PER_IMAGE = 3, LEVELS = 3 };
#define TOL 1e-4

/* The batch every test splits: images [BATCH, 3, SIZE, SIZE] and their labels. */
struct batch {
	float images[BATCH * 3 * SIZE * SIZE];
	float targets[BATCH * LABELS_PER_IMAGE][6];
	size_t nt;
};

/* How a rank misbehaves, for the teeth. */
enum fault { FAULT_NONE, FAULT_SKIP_SHARD, FAULT_NO_WORLD_SCALE, FAULT_WRONG_SHARD };

/* One DDP rank: its communicator, its model and backend, its shard. */
struct rank_job {
	struct tr_comm *comm;
	const struct tr_model *master; /* rank 0 copies its weights from here */
	const struct batch *batch;
	int first, count; /* the shard: images [first, first + count) */
	enum fault fault;
	bool sync_bn; /* BN through tr_syncbn_backend_create */
	struct tr_model *model;
	/* the rank's backends, destroyed by run_ddp after the model (whose memory they hold) */
	struct tr_backend *cpu, *bn;
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

/*
 * Every image image 0's labels, and (copies) a copy of image 0 or (not)
 * its own pixels.
 */
static void make_same_labels(struct batch *b, const struct batch *from, bool copies)
{
	size_t per_image = 3 * SIZE * SIZE;
	b->nt = 0;
	for (int image = 0; image < BATCH; image++) {
		const float *pixels = from->images + (copies ? 0 : image * per_image);
		memcpy(b->images + image * per_image, pixels, per_image * sizeof(float));
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
	struct tr_backend *cpu = NULL, *bn = NULL;
	int max_channels = 1;
	/* an unplanned model's state is its host mirror; a planned one's the backend's memory
	 * (host memory on the CPU backend, which is all this test uses) */
	for (int i = 0; i < m->nconvs; i++)
		if (m->convs[i].conv.cout > max_channels)
			max_channels = m->convs[i].conv.cout;
	job->rc = tr_cpu_backend_create(1, &cpu, &job->err);
	if (job->rc == 0 && job->sync_bn)
		job->rc = tr_syncbn_backend_create(cpu, c, max_channels, &bn, &job->err);
	if (job->rc == 0)
		job->rc =
		    tr_model_plan(m, bn != NULL ? bn : cpu, job->count, SIZE, SIZE, &job->err);
	if (job->rc == 0 && c->rank == 0) {
		memcpy(m->params, job->master->host_params, m->nparam_values * sizeof(float));
		memcpy(m->buffers, job->master->host_buffers, m->nbuffer_values * sizeof(float));
	}
	/* DDP's constructor: parameters and buffers from rank 0 */
	if (job->rc == 0)
		job->rc = tr_comm_broadcast(c, m->params, m->nparam_values, 0, &job->err);
	if (job->rc == 0)
		job->rc = tr_comm_broadcast(c, m->buffers, m->nbuffer_values, 0, &job->err);
	memset(m->grads, 0, m->nparam_values * sizeof(float));
	float scale = job->fault == FAULT_NO_WORLD_SCALE ? 1.0f : (float)c->world;
	int first = job->fault == FAULT_WRONG_SHARD ? 0 : job->first;
	if (job->rc == 0 && job->fault != FAULT_SKIP_SHARD)
		job->rc = shard_step(m, bn != NULL ? bn : cpu, job->batch, first, job->count, scale,
				     &job->err);
	if (job->rc == 0)
		job->rc = tr_comm_all_reduce_mean(c, m->grads, m->nparam_values, &job->err);
	if (job->rc != 0)
		tr_comm_abort(c); /* the others must not wait for this rank */
	job->cpu = cpu;
	job->bn = bn;
	return NULL;
}

/* A DDP run: world ranks, one of them (faulty) with fault, BN per rank or synchronised. */
struct ddp_run {
	int world, faulty;
	enum fault fault;
	bool sync_bn;
};

/*
 * DDP over run->world rank threads on batch b (BATCH / world images each).
 * The averaged gradients into grads (rank 0's, after checking every rank
 * holds the same bits), rank 0's BN buffers after the step into buffers.
 */
static void run_ddp(const struct tr_model *master, const struct batch *b, const struct ddp_run *run,
		    float *grads, float *buffers)
{
	int world = run->world;
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
					    .fault = r == run->faulty ? run->fault : FAULT_NONE,
					    .sync_bn = run->sync_bn,
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
	memcpy(buffers, jobs[0].model->buffers, master->nbuffer_values * sizeof(float));
	for (int r = 0; r < world; r++) {
		tr_model_free(jobs[r].model);
		tr_backend_destroy(jobs[r].bn);
		tr_backend_destroy(jobs[r].cpu);
		tr_comm_destroy(comms[r]);
	}
}

/* One model, one thread: the shards of world ranks one after another, gradients summed. */
static void run_sequential(const struct tr_model *master, const struct batch *b, int shards,
			   float *grads, float *buffers)
{
	struct ut_err err = {{0}};
	struct tr_backend *cpu = NULL;
	struct tr_model *m = load_yolov5n();
	if (tr_cpu_backend_create(1, &cpu, &err) || tr_model_plan(m, cpu, BATCH, SIZE, SIZE, &err))
		fail_msg("%s", err.msg);
	memcpy(m->params, master->host_params, m->nparam_values * sizeof(float));
	memcpy(m->buffers, master->host_buffers, m->nbuffer_values * sizeof(float));
	memset(m->grads, 0, m->nparam_values * sizeof(float));
	int per_shard = BATCH / shards;
	for (int s = 0; s < shards; s++)
		if (shard_step(m, cpu, b, s * per_shard, per_shard, 1.0f, &err))
			fail_msg("%s", err.msg);
	memcpy(grads, m->grads, m->nparam_values * sizeof(float));
	memcpy(buffers, m->buffers, m->nbuffer_values * sizeof(float));
	tr_model_free(m);
	tr_backend_destroy(cpu);
}

/*
 * The worst over the tensors of one kind (PARAM: gradients, BUFFER: BN
 * running statistics) of max |got - want| / max |want|.
 */
static double worst_error(const struct tr_model *model, enum tr_tensor_kind kind, const float *got,
			  const float *want, const char **where)
{
	double worst = 0;
	*where = "";
	for (int t = 0; t < model->ntensors; t++) {
		const struct tr_tensor_spec *spec = &model->tensors[t];
		if (spec->kind != kind)
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
	struct batch distinct, copies, same_labels;
	float *ddp, *reference;			/* gradients */
	float *ddp_buffers, *reference_buffers; /* BN running statistics after the step */
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
	make_same_labels(&f->copies, &f->distinct, true);
	make_same_labels(&f->same_labels, &f->distinct, false);
	size_t np = f->master->nparam_values, nb = f->master->nbuffer_values;
	f->ddp = malloc(np * sizeof(float));
	f->reference = malloc(np * sizeof(float));
	f->ddp_buffers = malloc(nb * sizeof(float));
	f->reference_buffers = malloc(nb * sizeof(float));
	assert_non_null(f->ddp);
	assert_non_null(f->reference);
	assert_non_null(f->ddp_buffers);
	assert_non_null(f->reference_buffers);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	tr_model_free(f->master);
	free(f->ddp);
	free(f->reference);
	free(f->ddp_buffers);
	free(f->reference_buffers);
	free(f);
	return 0;
}

static const char *const fault_names[] = {"", "skips its shard", "without the WORLD_SIZE factor",
					  "takes rank 0's shard"};

/*
 * DDP on b, against f->reference: a good run within TOL, then its teeth:
 * each fault in faults on the last rank must be far off.
 */
static void compare_with_teeth(struct fixture *f, const struct batch *b, struct ddp_run run,
			       const char *against, const enum fault *faults, int nfaults)
{
	const char *where;
	run.faulty = -1;
	run_ddp(f->master, b, &run, f->ddp, f->ddp_buffers);
	double error = worst_error(f->master, TR_TENSOR_PARAM, f->ddp, f->reference, &where);
	printf("world %d%s vs %s: worst relative error %.3g (%s)\n", run.world,
	       run.sync_bn ? " sync-bn" : "", against, error, where);
	if (!(error <= TOL))
		fail_msg("world %d vs %s: %s off by %.3g of its largest gradient", run.world,
			 against, where, error);
	for (int k = 0; k < nfaults; k++) {
		run.faulty = run.world - 1;
		run.fault = faults[k];
		run_ddp(f->master, b, &run, f->ddp, f->ddp_buffers);
		double bad = worst_error(f->master, TR_TENSOR_PARAM, f->ddp, f->reference, &where);
		printf("  teeth: rank %d %s: %.3g\n", run.world - 1, fault_names[faults[k]], bad);
		if (!(bad > 100 * TOL))
			fail_msg("world %d: a rank that %s went unnoticed (%.3g)", run.world,
				 fault_names[faults[k]], bad);
	}
}

static void test_shards(void **state)
{
	struct fixture *f = *state;
	const enum fault faults[] = {FAULT_SKIP_SHARD, FAULT_NO_WORLD_SCALE, FAULT_WRONG_SHARD};
	for (int world = 2; world <= MAX_WORLD; world *= 2) {
		run_sequential(f->master, &f->distinct, world, f->reference, f->reference_buffers);
		compare_with_teeth(f, &f->distinct, (struct ddp_run){.world = world},
				   "1 rank summing the shards", faults, 3);
	}
}

static void test_whole_batch(void **state)
{
	struct fixture *f = *state;
	const char *where;
	const enum fault faults[] = {FAULT_SKIP_SHARD, FAULT_NO_WORLD_SCALE};
	for (int world = 2; world <= MAX_WORLD; world *= 2) {
		run_sequential(f->master, &f->copies, 1, f->reference, f->reference_buffers);
		compare_with_teeth(f, &f->copies, (struct ddp_run){.world = world},
				   "1 rank on the whole batch of copies", faults, 2);
		/* distinct images: per-rank BN makes these differ (printed) */
		run_sequential(f->master, &f->same_labels, 1, f->reference, f->reference_buffers);
		run_ddp(f->master, &f->same_labels, &(struct ddp_run){.world = world, .faulty = -1},
			f->ddp, f->ddp_buffers);
		printf("world %d vs 1 rank on the whole batch of distinct images (per-rank BN, "
		       "not compared): %.3g\n",
		       world,
		       worst_error(f->master, TR_TENSOR_PARAM, f->ddp, f->reference, &where));
	}
}

/*
 * --sync-bn: distinct images (the same label boxes on each, so that every
 * shard has as many matches as every other and the loss means split
 * evenly) against 1 rank on the whole batch, gradients and the BN running
 * statistics after the step. A rank with the wrong shard must fail.
 */
static void test_sync_bn(void **state)
{
	struct fixture *f = *state;
	const char *where;
	const enum fault faults[] = {FAULT_WRONG_SHARD, FAULT_NO_WORLD_SCALE};
	run_sequential(f->master, &f->same_labels, 1, f->reference, f->reference_buffers);
	for (int world = 1; world <= MAX_WORLD; world *= 2) {
		struct ddp_run run = {.world = world, .sync_bn = true};
		compare_with_teeth(f, &f->same_labels, run, "1 rank on the whole batch", faults,
				   world > 1 ? 2 : 0);
		run.faulty = -1;
		run_ddp(f->master, &f->same_labels, &run, f->ddp, f->ddp_buffers);
		double error = worst_error(f->master, TR_TENSOR_BUFFER, f->ddp_buffers,
					   f->reference_buffers, &where);
		printf("  BN running statistics: worst relative error %.3g (%s)\n", error, where);
		if (!(error <= TOL))
			fail_msg("world %d sync-bn: %s off by %.3g", world, where, error);
	}
}

/* ---- one BN op: --sync-bn over 1, 2 and 4 ranks against the CPU backend's BN ---- */

enum { OP_N = 4, OP_C = 24, OP_HW = 3 };

struct bn_op_job {
	struct tr_comm *comm;
	const float *x, *dy; /* the whole batch [OP_N, OP_C, OP_HW, OP_HW] */
	float y[OP_N * OP_C * OP_HW * OP_HW], dx[OP_N * OP_C * OP_HW * OP_HW];
	float mean[OP_C], invstd[OP_C], run_mean[OP_C], run_var[OP_C], dgamma[OP_C], dbeta[OP_C];
	int rc;
	struct ut_err err;
};

static const float *op_gamma(void)
{
	static const float gamma[OP_C] = {0.5f, 1.5f, 1, 2, 0.25f, 1, 1, 3, 0.75f, 1, 1, 1,
					  1,	1,    1, 1, 1,	   1, 1, 1, 1,	   1, 1, 1};
	return gamma;
}

/* BN forward and backward of this rank's images, with a backend over comm (or plain CPU). */
static void *bn_op_rank(void *arg)
{
	struct bn_op_job *job = arg;
	int world = job->comm != NULL ? job->comm->world : 1;
	int rank = job->comm != NULL ? job->comm->rank : 0;
	int n = OP_N / world;
	size_t off = (size_t)rank * (size_t)n * OP_C * OP_HW * OP_HW;
	struct tr_backend *cpu = NULL, *bn = NULL;
	float beta[OP_C] = {0};
	for (int c = 0; c < OP_C; c++) {
		job->run_mean[c] = 0;
		job->run_var[c] = 1;
		beta[c] = 0.1f * (float)c;
	}
	struct tr_shape shape = {n, OP_C, OP_HW, OP_HW};
	struct tr_tensor x = {(float *)job->x + off, shape}, dy = {(float *)job->dy + off, shape};
	struct tr_tensor y = {job->y + off, shape}, dx = {job->dx + off, shape};
	job->rc = tr_cpu_backend_create(1, &cpu, &job->err);
	if (job->rc == 0 && job->comm != NULL)
		job->rc = tr_syncbn_backend_create(cpu, job->comm, OP_C, &bn, &job->err);
	struct tr_backend *use = bn != NULL ? bn : cpu;
	if (job->rc == 0)
		job->rc = use->ops->bn_forward_train(use, &x, op_gamma(), beta, TR_BN_EPS,
						     TR_BN_MOMENTUM, job->run_mean, job->run_var,
						     job->mean, job->invstd, &y, &job->err);
	if (job->rc == 0)
		job->rc = use->ops->bn_backward(use, &x, &dy, op_gamma(), job->mean, job->invstd,
						&dx, job->dgamma, job->dbeta, &job->err);
	if (job->rc != 0 && job->comm != NULL)
		tr_comm_abort(job->comm);
	tr_backend_destroy(bn);
	tr_backend_destroy(cpu);
	return NULL;
}

static double max_rel(const float *got, const float *want, size_t n)
{
	double diff = 0, scale = 0;
	for (size_t i = 0; i < n; i++) {
		diff = fmax(diff, fabs((double)got[i] - (double)want[i]));
		scale = fmax(scale, fabs((double)want[i]));
	}
	return diff / scale;
}

static void test_sync_bn_op(void **state)
{
	(void)state;
	enum { COUNT = OP_N * OP_C * OP_HW * OP_HW };
	static float x[COUNT], dy[COUNT];
	static struct bn_op_job whole, jobs[MAX_WORLD];
	struct ut_pcg rng;
	ut_pcg_seed(&rng, 5, 5);
	for (int i = 0; i < COUNT; i++) {
		int c = (i / (OP_HW * OP_HW)) % OP_C;
		x[i] = (float)(3.0 * c + ut_pcg_normal(&rng) * (0.1 + 0.2 * (c % 4)));
		dy[i] = (float)ut_pcg_normal(&rng);
	}
	whole = (struct bn_op_job){.x = x, .dy = dy};
	bn_op_rank(&whole);
	if (whole.rc != 0)
		fail_msg("%s", whole.err.msg);
	for (int world = 1; world <= MAX_WORLD; world *= 2) {
		struct tr_comm *comms[MAX_WORLD];
		pthread_t threads[MAX_WORLD];
		struct ut_err err = {{0}};
		if (tr_comm_thread_create(world, comms, &err))
			fail_msg("%s", err.msg);
		for (int r = 0; r < world; r++) {
			jobs[r] = (struct bn_op_job){.comm = comms[r], .x = x, .dy = dy};
			assert_int_equal(pthread_create(&threads[r], NULL, bn_op_rank, &jobs[r]),
					 0);
		}
		for (int r = 0; r < world; r++)
			assert_int_equal(pthread_join(threads[r], NULL), 0);
		/* y and dx: each rank wrote its own images; dgamma, dbeta: the ranks' sum */
		static float y[COUNT], dx[COUNT];
		float dgamma[OP_C] = {0}, dbeta[OP_C] = {0};
		size_t per_rank = COUNT / (size_t)world;
		for (int r = 0; r < world; r++) {
			if (jobs[r].rc != 0)
				fail_msg("world %d rank %d: %s", world, r, jobs[r].err.msg);
			memcpy(y + r * per_rank, jobs[r].y + r * per_rank,
			       per_rank * sizeof(float));
			memcpy(dx + r * per_rank, jobs[r].dx + r * per_rank,
			       per_rank * sizeof(float));
			for (int c = 0; c < OP_C; c++) {
				dgamma[c] += jobs[r].dgamma[c];
				dbeta[c] += jobs[r].dbeta[c];
			}
			tr_comm_destroy(comms[r]);
		}
		double errors[] = {max_rel(y, whole.y, COUNT),
				   max_rel(dx, whole.dx, COUNT),
				   max_rel(jobs[0].mean, whole.mean, OP_C),
				   max_rel(jobs[0].invstd, whole.invstd, OP_C),
				   max_rel(jobs[0].run_mean, whole.run_mean, OP_C),
				   max_rel(jobs[0].run_var, whole.run_var, OP_C),
				   max_rel(dgamma, whole.dgamma, OP_C),
				   max_rel(dbeta, whole.dbeta, OP_C)};
		const char *names[] = {"y",	      "dx",	      "save_mean",
				       "save_invstd", "running_mean", "running_var",
				       "dgamma",      "dbeta"};
		for (int k = 0; k < 8; k++) {
			printf("sync-bn op, world %d: %s within %.3g\n", world, names[k],
			       errors[k]);
			if (!(errors[k] <= 1e-6))
				fail_msg("sync-bn op, world %d: %s off by %.3g", world, names[k],
					 errors[k]);
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_shards),
	    cmocka_unit_test(test_whole_batch),
	    cmocka_unit_test(test_sync_bn_op),
	    cmocka_unit_test(test_sync_bn),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
