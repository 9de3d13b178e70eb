/*
 * bench_model.c - forward + backward of a whole YOLOv5 model on a backend
 * (trainer/nn/model.c), the work of one training step without the loss and
 * the optimizer. bench/bench_model.sh runs it next to PyTorch on the CPU,
 * bench/gpu/run.sh on a GPU.
 *
 * usage: bench_model MODEL_YAML IMAGE_SIZE BATCH THREADS [ITERATIONS] [WARMUP]
 *                    [--device D]
 *
 * --device is yolo-train's (tr_backend_create): cpu (the default) or a GPU
 * id such as 0, fp32 either way. Images and output gradients are uploaded
 * once; an iteration ends with the backend's sync, so a GPU's asynchronous
 * work is inside the time.
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
	struct tr_backend *backend;
	float *images;		    /* device memory of backend */
	float *dout[TR_MAX_LEVELS]; /* device memory of backend */
	int size, batch;
};

static int step(struct bench *b, struct ut_err *err)
{
	struct tr_model *m = b->model;
	struct tr_backend *be = b->backend;
	if (be->ops->memset(be, m->grads, 0, m->nparam_values * sizeof(float), err) ||
	    tr_model_forward(m, be, b->images, b->batch, b->size, b->size, 1, err) ||
	    tr_model_backward(m, be, (const float *const *)b->dout, err))
		return -1;
	return be->ops->sync(be, err);
}

/* count floats uniform in [0, 1) in device memory of be, into *out. */
static int random_floats(struct tr_backend *be, size_t count, struct ut_pcg *rng, float **out,
			 struct ut_err *err)
{
	float *values = malloc(count * sizeof(float));
	void *dev = NULL;
	if (!values)
		return ut_err_set(err, "out of memory");
	for (size_t i = 0; i < count; i++)
		values[i] = (float)ut_pcg_uniform(rng);
	int rc = be->ops->alloc(be, count * sizeof(float), &dev, err);
	if (rc == 0)
		rc = be->ops->upload(be, dev, values, count * sizeof(float), err);
	free(values);
	*out = dev;
	return rc;
}

static int run(const char *yaml, const char *device, int iterations, int warmup, int threads,
	       struct bench *b, struct ut_err *err)
{
	struct ut_pcg rng;
	ut_pcg_seed(&rng, 1, 1);
	if (tr_model_from_file(yaml, 80, &b->model, err) ||
	    tr_backend_create(device, threads, &b->backend, err) ||
	    tr_model_plan(b->model, b->backend, b->batch, b->size, b->size, err))
		return -1;
	tr_model_init(b->model, &rng);
	if (tr_model_upload(b->model, err))
		return -1;
	const struct tr_detect *det = &b->model->detect;
	if (random_floats(b->backend, (size_t)b->batch * 3 * b->size * b->size, &rng, &b->images,
			  err))
		return -1;
	for (int l = 0; l < det->nl; l++) {
		size_t cells =
		    (size_t)(b->size / det->stride[l]) * (size_t)(b->size / det->stride[l]);
		if (random_floats(b->backend, (size_t)b->batch * det->na * cells * det->no, &rng,
				  &b->dout[l], err))
			return -1;
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
	printf("ours %s img%d b%d threads=%d device=%s: fastest_ms=%.1f median_ms=%.1f "
	       "img_per_s=%.2f\n",
	       yaml, b->size, b->batch, threads, device, times[0], median, b->batch * 1e3 / median);
	free(times);
	return 0;
}

int main(int argc, char **argv)
{
	/* the positional arguments, with --device D taken out wherever it stands */
	const char *args[7] = {argv[0]}, *device = "cpu";
	int nargs = 1;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--device") == 0 && i + 1 < argc)
			device = argv[++i];
		else if (nargs < 7 && strncmp(argv[i], "--", 2) != 0)
			args[nargs++] = argv[i];
		else
			nargs = 8; /* an unknown option or too many arguments */
	}
	if (nargs < 5 || nargs > 7) {
		fprintf(stderr,
			"usage: %s MODEL_YAML IMAGE_SIZE BATCH THREADS [ITERATIONS] [WARMUP] "
			"[--device D]\n",
			argv[0]);
		return 2;
	}
	struct bench b = {0};
	long size, batch, threads, iterations = 5, warmup = 2;
	if (ut_parse_long(args[2], 32, 4096, &size) || ut_parse_long(args[3], 1, 1024, &batch) ||
	    ut_parse_long(args[4], 1, 1024, &threads) ||
	    (nargs > 5 && ut_parse_long(args[5], 1, 100000, &iterations)) ||
	    (nargs > 6 && ut_parse_long(args[6], 0, 100000, &warmup)) || size % 32) {
		fprintf(stderr, "%s: bad arguments (image size a multiple of 32)\n", argv[0]);
		return 2;
	}
	b.size = (int)size;
	b.batch = (int)batch;
	struct ut_err err = {{0}};
	int rc = run(args[1], device, (int)iterations, (int)warmup, (int)threads, &b, &err);
	if (rc)
		fprintf(stderr, "%s: %s\n", argv[0], err.msg);
	if (b.backend) {
		for (int l = 0; l < TR_MAX_LEVELS; l++)
			b.backend->ops->free(b.backend, b.dout[l]);
		b.backend->ops->free(b.backend, b.images);
	}
	tr_model_free(b.model); /* before its backend */
	if (b.backend)
		tr_backend_destroy(b.backend);
	return rc ? 1 : 0;
}
