/*
 * bench_loader.c - training batches per second of trainer/data/loader.c, the
 * work YOLOv5's DataLoader does for train.py (mosaic and the rest per the
 * hyp file). bench/loader.sh runs it next to YOLOv5's own loader.
 *
 * usage: bench_loader DATA_YAML HYP_YAML IMGSZ BATCH WORKERS BATCHES
 * Prints "batches/s X" over BATCHES batches after the first one (the
 * first pays for thread start-up and cold caches), epochs chained.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "train.h"

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Time `batches` batches after the first; -1 on a loader error. */
static int run(struct tr_loader *loader, long batches, double *seconds, struct ut_err *err)
{
	long epoch = 0, done = -1;
	double start = 0;
	while (done < batches) {
		if (tr_loader_start_epoch(loader, epoch++, NULL, err) != 0)
			return -1;
		const struct tr_batch *batch;
		int rc = 0;
		while (done < batches && (rc = tr_loader_next(loader, &batch, err)) == 1)
			if (++done == 0)
				start = now();
		if (done < batches && rc < 0)
			return -1;
	}
	*seconds = now() - start;
	tr_loader_stop(loader);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 7) {
		fprintf(stderr,
			"usage: bench_loader DATA_YAML HYP_YAML IMGSZ BATCH WORKERS BATCHES\n");
		return 2;
	}
	struct ut_err err;
	struct tr_data_yaml yaml;
	struct meta_table table;
	struct meta_hyp hyp;
	meta_table_default(&table);
	long imgsz, batch, workers, batches;
	if (ut_parse_long(argv[3], 32, 8192, &imgsz) != 0 ||
	    ut_parse_long(argv[4], 1, 1024, &batch) != 0 ||
	    ut_parse_long(argv[5], 0, 64, &workers) != 0 ||
	    ut_parse_long(argv[6], 1, 1000000, &batches) != 0) {
		fprintf(stderr, "bench_loader: bad IMGSZ, BATCH, WORKERS or BATCHES\n");
		return 2;
	}
	if (tr_data_yaml_load(argv[1], &yaml, &err) != 0 ||
	    meta_hyp_read(argv[2], &table, &hyp, &err) != 0) {
		fprintf(stderr, "bench_loader: %s\n", err.msg);
		return 1;
	}
	struct tr_data_split split;
	struct tr_data_open_opts open = {.nc = yaml.nc, .use_cache = true};
	if (tr_data_split_open((const char *const *)yaml.train, yaml.n_train, &open, &split,
			       &err) != 0) {
		fprintf(stderr, "bench_loader: %s\n", err.msg);
		tr_data_yaml_free(&yaml);
		return 1;
	}
	struct tr_loader_opts opts = tr_loader_train_defaults((int)imgsz, (int)batch);
	opts.workers = (int)workers;
	opts.hyp = tr_train_loader_hyp(&hyp);
	opts.seed = 0;
	struct tr_loader *loader;
	double seconds = 0;
	int rc = tr_loader_create(&split, &opts, &loader, &err);
	if (rc == 0) {
		rc = run(loader, batches, &seconds, &err);
		tr_loader_free(loader);
	}
	if (rc != 0)
		fprintf(stderr, "bench_loader: %s\n", err.msg);
	else
		printf("batches/s %.3f\n", batches / seconds);
	tr_data_split_free(&split);
	tr_data_yaml_free(&yaml);
	return rc != 0;
}
