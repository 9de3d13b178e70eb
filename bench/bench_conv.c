/*
 * bench/bench_conv.c - milliseconds per forward + backward (data and filter)
 * of one convolution on the CPU backend, for each convolution layout
 * (plain nchw/oihw handed to oneDNN, oneDNN's choice with reorders, and
 * auto, the backend's default; see trainer/cpu/cpu.h).
 *
 * usage: bench_conv [threads [n cin cout hw k stride pad [iterations]]]
 * default: 2 threads, a YOLOv5s-like 3x3 64->64 layer at 80x80, batch 8.
 * Prints one line per layout: "layout=plain ms=12.345 median=13.000", ms
 * being the fastest iteration (the least disturbed by other processes).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "cpu/cpu.h"

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static float *random_buffer(size_t len, unsigned *seed)
{
	float *p = malloc(len * sizeof(*p));
	for (size_t i = 0; p != NULL && i < len; i++) {
		*seed = *seed * 1664525u + 1013904223u;
		p[i] = (float)(*seed >> 8) / (float)(1u << 24) - 0.5f;
	}
	return p;
}

/* One layout: warm up (primitive creation), then time each of iterations fwd+bwd into ms[]. */
static int bench_layout(int threads, enum tr_cpu_layout layout, const struct tr_conv *conv,
			struct tr_shape in, int iterations, double *ms, struct ut_err *err)
{
	struct tr_backend *b;
	if (tr_cpu_backend_create_layout(threads, layout, &b, err) != 0)
		return -1;
	struct tr_shape out = tr_conv_out_shape(conv, in);
	size_t wlen = (size_t)conv->cout * conv->cin * conv->k * conv->k;
	unsigned seed = 1;
	float *x = random_buffer(tr_shape_numel(in), &seed);
	float *dx = random_buffer(tr_shape_numel(in), &seed);
	float *y = random_buffer(tr_shape_numel(out), &seed);
	float *dy = random_buffer(tr_shape_numel(out), &seed);
	float *w = random_buffer(wlen, &seed), *dw = random_buffer(wlen, &seed);
	int rc = -1;
	if (x == NULL || dx == NULL || y == NULL || dy == NULL || w == NULL || dw == NULL) {
		ut_err_set(err, "out of memory");
		goto done;
	}
	struct tr_tensor tx = {x, in}, tdx = {dx, in}, ty = {y, out}, tdy = {dy, out};
	for (int it = -3; it < iterations; it++) {
		double start = now_ms();
		if (b->ops->conv_forward(b, conv, &tx, w, NULL, &ty, err) != 0 ||
		    b->ops->conv_backward_data(b, conv, &tdy, w, &tdx, err) != 0 ||
		    b->ops->conv_backward_filter(b, conv, &tx, &tdy, dw, NULL, err) != 0)
			goto done;
		if (it >= 0)
			ms[it] = now_ms() - start;
	}
	rc = 0;
done:
	free(x);
	free(dx);
	free(y);
	free(dy);
	free(w);
	free(dw);
	tr_backend_destroy(b);
	return rc;
}

int main(int argc, char **argv)
{
	int threads = argc > 1 ? atoi(argv[1]) : 2;
	struct tr_conv conv = {64, 64, 3, 1, 1};
	struct tr_shape in = {8, 64, 80, 80};
	int iterations = 20;
	if (argc >= 9) {
		in.n = atoi(argv[2]);
		conv.cin = in.c = atoi(argv[3]);
		conv.cout = atoi(argv[4]);
		in.h = in.w = atoi(argv[5]);
		conv.k = atoi(argv[6]);
		conv.stride = atoi(argv[7]);
		conv.pad = atoi(argv[8]);
	}
	if (argc >= 10)
		iterations = atoi(argv[9]);
	if (threads < 1 || iterations < 1) {
		fprintf(stderr,
			"usage: bench_conv [threads [n cin cout hw k stride pad [iterations]]]\n");
		return 2;
	}
	static const char *const names[] = {"plain", "any", "auto"};
	double *ms = malloc((size_t)iterations * sizeof(*ms));
	if (ms == NULL)
		return 1;
	for (int layout = 0; layout < 3; layout++) {
		struct ut_err err;
		if (bench_layout(threads, (enum tr_cpu_layout)layout, &conv, in, iterations, ms,
				 &err) != 0) {
			fprintf(stderr, "bench_conv: %s\n", err.msg);
			free(ms);
			return 1;
		}
		qsort(ms, (size_t)iterations, sizeof(*ms), cmp_double);
		printf("layout=%s ms=%.3f median=%.3f\n", names[layout], ms[0], ms[iterations / 2]);
	}
	free(ms);
	return 0;
}
