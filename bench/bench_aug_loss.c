/*
 * bench_aug_loss.c - the loss a fixed model sees on yolo-train's augmented
 * training batches: a check of the data pipeline's distribution in the
 * quantity training follows. bench/aug_loss.sh runs it next to the same
 * measurement on YOLOv5's own DataLoader.
 *
 * usage: bench_aug_loss CFG WEIGHTS DATA_YAML HYP_YAML IMGSZ BATCH BATCHES SEED THREADS
 *
 * The model (CFG with WEIGHTS, nc from DATA_YAML) runs in eval mode (BN
 * with its running statistics, so a batch's loss depends on that batch
 * alone) on BATCHES training batches (epochs chained, augmentation per
 * HYP_YAML, 2 loader workers); ComputeLoss with the hyp scaled as train.py
 * does. Prints one line per loss part: the mean over batches and its
 * standard error, and the mean number of targets per batch.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "checkpoint.h"
#include "model.h"
#include "ops.h"
#include "train.h"

struct sums {
	double n, s[4], q[4];
};

static void add(struct sums *acc, const float items[3], double targets)
{
	double v[4] = {items[0], items[1], items[2], targets};
	acc->n++;
	for (int k = 0; k < 4; k++) {
		acc->s[k] += v[k];
		acc->q[k] += v[k] * v[k];
	}
}

static void report(const struct sums *acc)
{
	const char *names[4] = {"box", "obj", "cls", "targets/batch"};
	for (int k = 0; k < 4; k++) {
		double mean = acc->s[k] / acc->n;
		double var = (acc->q[k] - acc->n * mean * mean) / (acc->n - 1);
		printf("%-14s %.6g se %.3g\n", names[k], mean,
		       sqrt(var > 0 ? var : 0) / sqrt(acc->n));
	}
}

struct setup {
	struct tr_data_yaml yaml;
	struct tr_data_split split;
	struct meta_hyp hyp;
	struct tr_model *model;
	struct tr_backend *backend;
	struct tr_loader *loader;
	struct tr_loss *loss;
	float *images;
};

static int make(struct setup *s, char **argv, long imgsz, long batch, long seed, long threads,
		struct ut_err *err)
{
	struct meta_table table;
	meta_table_default(&table);
	if (tr_data_yaml_load(argv[3], &s->yaml, err) != 0 ||
	    meta_hyp_read(argv[4], &table, &s->hyp, err) != 0)
		return -1;
	struct tr_data_open_opts open = {.nc = s->yaml.nc, .use_cache = true};
	if (tr_data_split_open((const char *const *)s->yaml.train, s->yaml.n_train, &open,
			       &s->split, err) != 0 ||
	    tr_model_from_file(argv[1], s->yaml.nc, &s->model, err) != 0 ||
	    tr_model_load(s->model, argv[2], err) != 0 ||
	    tr_cpu_backend_create((int)threads, &s->backend, err) != 0 ||
	    tr_model_plan_inference(s->model, s->backend, (int)batch, (int)imgsz, (int)imgsz,
				    err) != 0)
		return -1;
	struct tr_loader_opts opts = tr_loader_train_defaults((int)imgsz, (int)batch);
	opts.workers = 2;
	opts.seed = (uint64_t)seed;
	opts.hyp = tr_train_loader_hyp(&s->hyp);
	const struct tr_detect *det = &s->model->detect;
	struct tr_loss_hyp lh = tr_train_loss_hyp(&s->hyp, 0.0);
	tr_loss_scale_hyp(&lh, det->nl, s->yaml.nc, (int)imgsz);
	struct tr_loss_params params = {
	    .nl = det->nl, .na = det->na, .nc = s->yaml.nc, .anchors = det->anchors, .hyp = lh};
	s->images = malloc((size_t)batch * 3 * imgsz * imgsz * sizeof(float));
	if (s->images == NULL)
		return ut_err_set(err, "out of memory");
	return tr_loader_create(&s->split, &opts, &s->loader, err) != 0 ||
		       tr_loss_create(&params, 256, &s->loss, err) != 0
		   ? -1
		   : 0;
}

static int measure(struct setup *s, long batches, struct sums *acc, struct ut_err *err)
{
	const struct tr_detect *det = &s->model->detect;
	for (long epoch = 0; acc->n < batches; epoch++) {
		if (tr_loader_start_epoch(s->loader, epoch, NULL, err) != 0)
			return -1;
		const struct tr_batch *b;
		int rc = 0;
		while (acc->n < batches && (rc = tr_loader_next(s->loader, &b, err)) == 1) {
			tr_batch_images_to_float(b, s->images);
			if (tr_model_forward(s->model, s->backend, s->images, b->n, b->height,
					     b->width, 0, err) != 0)
				return -1;
			struct tr_loss_batch lb = {.bs = b->n, .targets = b->targets, .nt = b->nt};
			for (int l = 0; l < det->nl; l++) {
				lb.ny[l] = b->height / det->stride[l];
				lb.nx[l] = b->width / det->stride[l];
				lb.pred[l] = det->outputs[l];
			}
			struct tr_loss_result r;
			if (tr_loss_reserve(s->loss, b->nt, err) != 0 ||
			    tr_loss_compute(s->loss, &lb, &r, err) != 0)
				return -1;
			add(acc, r.items, (double)b->nt);
		}
		if (acc->n < batches && rc < 0)
			return -1;
	}
	tr_loader_stop(s->loader);
	return 0;
}

int main(int argc, char **argv)
{
	long imgsz, batch, batches, seed, threads;
	if (argc != 10 || ut_parse_long(argv[5], 32, 8192, &imgsz) != 0 ||
	    ut_parse_long(argv[6], 1, 1024, &batch) != 0 ||
	    ut_parse_long(argv[7], 2, 1000000, &batches) != 0 ||
	    ut_parse_long(argv[8], 0, 1L << 40, &seed) != 0 ||
	    ut_parse_long(argv[9], 1, 1024, &threads) != 0) {
		fprintf(stderr, "usage: bench_aug_loss CFG WEIGHTS DATA_YAML HYP_YAML IMGSZ BATCH "
				"BATCHES SEED THREADS\n");
		return 2;
	}
	struct setup s = {0};
	struct sums acc = {0};
	struct ut_err err;
	int rc = make(&s, argv, imgsz, batch, seed, threads, &err);
	if (rc == 0)
		rc = measure(&s, batches, &acc, &err);
	if (rc != 0)
		fprintf(stderr, "bench_aug_loss: %s\n", err.msg);
	else
		report(&acc);
	if (s.loader != NULL)
		tr_loader_free(s.loader);
	tr_loss_free(s.loss);
	free(s.images);
	tr_model_free(s.model);
	if (s.backend != NULL)
		tr_backend_destroy(s.backend);
	tr_data_split_free(&s.split);
	tr_data_yaml_free(&s.yaml);
	return rc != 0;
}
