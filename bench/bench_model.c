/*
 * bench_model.c - forward + backward of a whole YOLOv5 model on the CPU
 * backend (trainer/nn/model.c), the work of one training step without the
 * loss and the optimizer. bench/bench_model.sh runs it next to PyTorch.
 *
 * usage: bench_model MODEL_YAML IMAGE_SIZE BATCH THREADS [ITERATIONS] [WARMUP]
 *
 * One iteration: zero the parameter gradients, train-mode forward of random
 * images in [0, 1), backward from dLoss/d outputs = r, a fixed random tensor
 * per level (the gradient of "loss" = sum(outputs * r), which the PyTorch
 * side uses, so both time the same network work). nc = 80. Prints one line:
 * fastest and median ms per iteration and images/s from the median.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model.h"
#include "ops.h"
#include "pcg.h"
#include "ut.h"

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int compare_doubles(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

struct bench {
	struct tr_model *model;
	struct tr_backend *cpu;
	float *images;
	float *dout[TR_MAX_LEVELS];
	int size, batch;
};

static int step(struct bench *b, struct ut_err *err)
{
	struct tr_model *m = b->model;
	if (b->cpu->ops->memset(b->cpu, m->grads, 0, m->nparam_values * sizeof(float), err) ||
	    tr_model_forward(m, b->cpu, b->images, b->batch, b->size, b->size, 1, err))
		return -1;
	return tr_model_backward(m, b->cpu, (const float *const *)b->dout, err);
}

static float *random_floats(size_t count, struct ut_pcg *rng)
{
	float *values = malloc(count * sizeof(float));
	if (values)
		for (size_t i = 0; i < count; i++)
			values[i] = (float)ut_pcg_uniform(rng);
	return values;
}

static int run(const char *yaml, int iterations, int warmup, int threads, struct bench *b,
	       struct ut_err *err)
{
	struct ut_pcg rng;
	ut_pcg_seed(&rng, 1, 1);
	if (tr_model_from_file(yaml, 80, &b->model, err) ||
	    tr_cpu_backend_create(threads, &b->cpu, err) ||
	    tr_model_plan(b->model, b->cpu, b->batch, b->size, b->size, err))
		return -1;
	tr_model_init(b->model, &rng);
	if (tr_model_upload(b->model, err))
		return -1;
	const struct tr_detect *det = &b->model->detect;
	b->images = random_floats((size_t)b->batch * 3 * b->size * b->size, &rng);
	if (!b->images)
		return ut_err_set(err, "out of memory");
	for (int l = 0; l < det->nl; l++) {
		size_t cells =
		    (size_t)(b->size / det->stride[l]) * (size_t)(b->size / det->stride[l]);
		b->dout[l] = random_floats((size_t)b->batch * det->na * cells * det->no, &rng);
		if (!b->dout[l])
			return ut_err_set(err, "out of memory");
	}
	for (int i = 0; i < warmup; i++)
		if (step(b, err))
			return -1;
	double *times = malloc((size_t)iterations * sizeof(double));
	if (!times)
		return ut_err_set(err, "out of memory");
	for (int i = 0; i < iterations; i++) {
		double start = now_ms();
		if (step(b, err)) {
			free(times);
			return -1;
		}
		times[i] = now_ms() - start;
	}
	qsort(times, (size_t)iterations, sizeof(double), compare_doubles);
	double median = times[iterations / 2];
	printf("ours %s img%d b%d threads=%d: fastest_ms=%.1f median_ms=%.1f img_per_s=%.2f\n",
	       yaml, b->size, b->batch, threads, times[0], median, b->batch * 1e3 / median);
	free(times);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 5 || argc > 7) {
		fprintf(stderr,
			"usage: %s MODEL_YAML IMAGE_SIZE BATCH THREADS [ITERATIONS] [WARMUP]\n",
			argv[0]);
		return 2;
	}
	struct bench b = {0};
	long size, batch, threads, iterations = 5, warmup = 2;
	if (ut_parse_long(argv[2], 32, 4096, &size) || ut_parse_long(argv[3], 1, 1024, &batch) ||
	    ut_parse_long(argv[4], 1, 1024, &threads) ||
	    (argc > 5 && ut_parse_long(argv[5], 1, 100000, &iterations)) ||
	    (argc > 6 && ut_parse_long(argv[6], 0, 100000, &warmup)) || size % 32) {
		fprintf(stderr, "%s: bad arguments (image size a multiple of 32)\n", argv[0]);
		return 2;
	}
	b.size = (int)size;
	b.batch = (int)batch;
	struct ut_err err = {{0}};
	int rc = run(argv[1], (int)iterations, (int)warmup, (int)threads, &b, &err);
	if (rc)
		fprintf(stderr, "%s: %s\n", argv[0], err.msg);
	for (int l = 0; l < TR_MAX_LEVELS; l++)
		free(b.dout[l]);
	free(b.images);
	tr_model_free(b.model); /* before its backend */
	if (b.cpu)
		tr_backend_destroy(b.cpu);
	return rc ? 1 : 0;
}
