/*
 * test_upload.c - ops.h's pinned memory and asynchronous uploads, and the
 * double-buffered staging of image batches built on them (staging.h), as
 * yolo-train uses them. Built twice (tests/meson.build):
 *   - unit/upload on the CPU backend: host_alloc gives aligned, writable
 *     memory (0 bytes too), host_free takes NULL; upload_async copies in
 *     the order given; staging's misuse refused (a batch over capacity, a
 *     second give before a take, a take with nothing given);
 *   - cuda/cuda_upload (TEST_CUDA_EMU) on the emulated CUDA backend, whose
 *     copy stream defers every copy to the next upload_wait or sync: the
 *     same checks, and that a copy is not seen by a download or an op given
 *     before upload_wait (stale data: a caller that forgets the wait fails
 *     here), that the bytes that arrive are those the pinned buffer holds
 *     when the copy runs (so ops.h's reuse rule matters) and rewriting it
 *     after upload_wait and a download is safe, and that a full queue of
 *     copies still lands in order.
 * Both: yolov5n-shaped batches (2 x 3 x 128 x 128 and rect shapes, 6 in
 * turn so each buffer is reused) through the staging's give and take and
 * images_to_float give the same floats, bit for bit, as a synchronous
 * upload, with the loader's buffer rewritten after each give.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ops.h"
#include "staging.h"
#if defined(TEST_CUDA_EMU)
#include "tr_cuda.h"
#endif

static struct tr_backend *backend_new(void)
{
	struct tr_backend *be = NULL;
	struct ut_err err = {0};
#if defined(TEST_CUDA_EMU)
	int rc = tr_cuda_emu_backend_create(1, &be, &err);
#else
	int rc = tr_cpu_backend_create(1, &be, &err);
#endif
	if (rc != 0)
		fail_msg("backend: %s", err.msg);
	return be;
}

/* A call that must succeed; its message otherwise. */
#define OK(call)                                                                                   \
	do {                                                                                       \
		struct ut_err ok_err_ = {0};                                                       \
		if ((call) != 0)                                                                   \
			fail_msg("%s: %s", #call, ok_err_.msg);                                    \
	} while (0)
#define E (&ok_err_)

/* Deterministic bytes, different for each stream. */
static void fill_bytes(uint8_t *p, size_t n, uint32_t stream)
{
	uint32_t state = stream * 2654435761u + 1u;
	for (size_t i = 0; i < n; i++) {
		state = state * 1664525u + 1013904223u;
		p[i] = (uint8_t)(state >> 24);
	}
}

static void test_host_alloc(void **state)
{
	(void)state;
	struct tr_backend *be = backend_new();
	static const size_t sizes[] = {0, 1, 63, 1000, 3 * 128 * 128 * 2 + 5};
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		uint8_t *p;
		OK(be->ops->host_alloc(be, sizes[s], (void **)&p, E));
		assert_non_null(p);
		assert_int_equal((uintptr_t)p % 64, 0);
		memset(p, 0xa5, sizes[s]);
		for (size_t i = 0; i < sizes[s]; i++)
			assert_int_equal(p[i], 0xa5);
		be->ops->host_free(be, p);
	}
	be->ops->host_free(be, NULL);
	tr_backend_destroy(be);
}

/* Three copies into overlapping ranges: the last given wins where they overlap. */
static void test_upload_async_in_order(void **state)
{
	(void)state;
	struct tr_backend *be = backend_new();
	enum { N = 4096 };
	uint8_t *pinned[3], *dev, want[N], got[N];
	OK(be->ops->alloc(be, N, (void **)&dev, E));
	OK(be->ops->memset(be, dev, 0, N, E));
	memset(want, 0, N);
	for (int k = 0; k < 3; k++) {
		OK(be->ops->host_alloc(be, N, (void **)&pinned[k], E));
		fill_bytes(pinned[k], N, (uint32_t)k + 10);
		size_t at = (size_t)k * 1000, bytes = 2000;
		OK(be->ops->upload_async(be, dev + at, pinned[k], bytes, E));
		memcpy(want + at, pinned[k], bytes);
	}
	OK(be->ops->upload_async(be, dev, pinned[0], 0, E)); /* zero bytes: nothing */
	OK(be->ops->upload_wait(be, E));
	OK(be->ops->download(be, got, dev, N, E));
	assert_memory_equal(got, want, N);
	for (int k = 0; k < 3; k++)
		be->ops->host_free(be, pinned[k]);
	be->ops->free(be, dev);
	tr_backend_destroy(be);
}

/*
 * The batches of the staging test: yolov5n at 128 px, batch 2 (as
 * cuda_ops), and rect shapes of the same batch, each buffer used 3 times.
 */
static const struct tr_shape batches[] = {
    {2, 3, 128, 128}, {2, 3, 96, 128},	{1, 3, 128, 64},
    {2, 3, 128, 96},  {2, 3, 128, 128}, {2, 3, 64, 128},
};
#define BATCHES ((int)(sizeof(batches) / sizeof(batches[0])))
#define MOST (2 * 3 * 128 * 128)

/*
 * train.c's order: the loader's bytes given, taken, images_to_float, a
 * download; against upload + images_to_float on a second buffer.
 */
static void test_staging_matches_sync(void **state)
{
	(void)state;
	struct tr_backend *be = backend_new();
	struct tr_staging st;
	OK(tr_staging_init(&st, be, MOST, E));
	uint8_t *loader = malloc(MOST), *sync_u8;
	float *staged = malloc(MOST * sizeof(float)), *direct = malloc(MOST * sizeof(float));
	float *dev_staged, *dev_direct;
	assert_non_null(loader);
	assert_non_null(staged);
	assert_non_null(direct);
	OK(be->ops->alloc(be, MOST, (void **)&sync_u8, E));
	OK(be->ops->alloc(be, MOST * sizeof(float), (void **)&dev_staged, E));
	OK(be->ops->alloc(be, MOST * sizeof(float), (void **)&dev_direct, E));
	for (int b = 0; b < BATCHES; b++) {
		size_t count = tr_shape_numel(batches[b]);
		fill_bytes(loader, count, (uint32_t)b + 100);
		OK(be->ops->upload(be, sync_u8, loader, count, E));
		OK(be->ops->images_to_float(be, sync_u8, dev_direct, count, E));
		const uint8_t *images;
		OK(tr_staging_give(&st, be, loader, count, E));
		memset(loader, 0xff, count); /* the loader's slot goes back to its workers */
		OK(tr_staging_take(&st, be, &images, E));
		OK(be->ops->images_to_float(be, images, dev_staged, count, E));
		OK(be->ops->download(be, staged, dev_staged, count * sizeof(float), E));
		OK(be->ops->download(be, direct, dev_direct, count * sizeof(float), E));
		if (memcmp(staged, direct, count * sizeof(float)) != 0) {
			size_t i = 0;
			while (staged[i] == direct[i])
				i++;
			fail_msg("batch %d [%d,%d,%d,%d]: value %zu is %g staged, %g uploaded", b,
				 batches[b].n, batches[b].c, batches[b].h, batches[b].w, i,
				 (double)staged[i], (double)direct[i]);
		}
	}
	printf("# %d batches through the double buffer equal the synchronous upload\n", BATCHES);
	be->ops->free(be, sync_u8);
	be->ops->free(be, dev_staged);
	be->ops->free(be, dev_direct);
	free(loader);
	free(staged);
	free(direct);
	tr_staging_release(&st, be);
	tr_staging_release(&st, be); /* twice is harmless */
	tr_backend_destroy(be);
}

static void test_staging_refusals(void **state)
{
	(void)state;
	struct tr_backend *be = backend_new();
	struct tr_staging st;
	struct ut_err err = {0};
	uint8_t bytes[64] = {0};
	const uint8_t *images;
	OK(tr_staging_init(&st, be, sizeof(bytes), E));
	assert_int_equal(tr_staging_take(&st, be, &images, &err), -1);
	assert_null(images);
	assert_non_null(strstr(err.msg, "no batch given"));
	assert_int_equal(tr_staging_give(&st, be, bytes, sizeof(bytes) + 1, &err), -1);
	assert_non_null(strstr(err.msg, "65 bytes (planned for 64)"));
	OK(tr_staging_give(&st, be, bytes, sizeof(bytes), E));
	assert_int_equal(tr_staging_give(&st, be, bytes, sizeof(bytes), &err), -1);
	assert_non_null(strstr(err.msg, "not taken yet"));
	OK(tr_staging_take(&st, be, &images, E));
	assert_non_null(images);
	tr_staging_release(&st, be);
	tr_backend_destroy(be);
}

#if defined(TEST_CUDA_EMU)
/*
 * The emulated copy stream defers: a download, or an op, given before
 * upload_wait sees the old bytes; after it, the new ones.
 */
static void test_copy_waits_for_upload_wait(void **state)
{
	(void)state;
	struct tr_backend *be = backend_new();
	enum { N = 1000 };
	uint8_t *pinned, *dev, got[N], zeros[N] = {0};
	float *floats, host_floats[N];
	OK(be->ops->host_alloc(be, N, (void **)&pinned, E));
	OK(be->ops->alloc(be, N, (void **)&dev, E));
	OK(be->ops->alloc(be, N * sizeof(float), (void **)&floats, E));
	OK(be->ops->memset(be, dev, 0, N, E));
	fill_bytes(pinned, N, 7);
	OK(be->ops->upload_async(be, dev, pinned, N, E));
	OK(be->ops->download(be, got, dev, N, E));
	assert_memory_equal(got, zeros, N); /* stale: no wait yet */
	OK(be->ops->images_to_float(be, dev, floats, N, E));
	OK(be->ops->download(be, host_floats, floats, sizeof(host_floats), E));
	for (int i = 0; i < N; i++)
		assert_true(host_floats[i] == 0.0f);
	OK(be->ops->upload_wait(be, E));
	OK(be->ops->images_to_float(be, dev, floats, N, E));
	OK(be->ops->download(be, host_floats, floats, sizeof(host_floats), E));
	for (int i = 0; i < N; i++)
		assert_true(host_floats[i] == (float)pinned[i] / 255.0f);
	/* sync runs the copy stream too */
	fill_bytes(pinned + N / 2, N / 2, 8);
	OK(be->ops->upload_async(be, dev, pinned, N, E));
	OK(be->ops->sync(be, E));
	OK(be->ops->download(be, got, dev, N, E));
	assert_memory_equal(got, pinned, N);
	be->ops->host_free(be, pinned);
	be->ops->free(be, dev);
	be->ops->free(be, floats);
	tr_backend_destroy(be);
}

/*
 * ops.h's reuse rule: what arrives is what the pinned buffer holds when the
 * copy runs, so rewriting it before upload_wait and a download changes the
 * data; rewriting it after them does not.
 */
static void test_host_reuse_rule(void **state)
{
	(void)state;
	struct tr_backend *be = backend_new();
	enum { N = 512 };
	uint8_t *pinned, *dev, first[N], second[N], got[N];
	fill_bytes(first, N, 1);
	fill_bytes(second, N, 2);
	OK(be->ops->host_alloc(be, N, (void **)&pinned, E));
	OK(be->ops->alloc(be, N, (void **)&dev, E));
	memcpy(pinned, first, N);
	OK(be->ops->upload_async(be, dev, pinned, N, E));
	memcpy(pinned, second, N); /* too early: the copy has not run */
	OK(be->ops->upload_wait(be, E));
	OK(be->ops->download(be, got, dev, N, E));
	assert_memory_equal(got, second, N);
	memcpy(pinned, first, N);
	OK(be->ops->upload_async(be, dev, pinned, N, E));
	OK(be->ops->upload_wait(be, E));
	OK(be->ops->download(be, got, dev, N, E));
	memcpy(pinned, second, N); /* after upload_wait and a download: allowed */
	OK(be->ops->sync(be, E));
	OK(be->ops->download(be, got, dev, N, E));
	assert_memory_equal(got, first, N);
	be->ops->host_free(be, pinned);
	be->ops->free(be, dev);
	tr_backend_destroy(be);
}

/* More copies than the emulated queue holds (8): all land, in order. */
static void test_copy_queue_overflow(void **state)
{
	(void)state;
	struct tr_backend *be = backend_new();
	enum { COPIES = 21, N = 256, SPAN = N + COPIES - 1 };
	uint8_t *pinned, *dev, got[SPAN], want[SPAN];
	OK(be->ops->host_alloc(be, (size_t)COPIES * N, (void **)&pinned, E));
	OK(be->ops->alloc(be, SPAN, (void **)&dev, E));
	fill_bytes(pinned, (size_t)COPIES * N, 3);
	for (int k = 0; k < COPIES; k++) {
		OK(be->ops->upload_async(be, dev + k, pinned + (size_t)k * N, N, E));
		memcpy(want + k, pinned + (size_t)k * N, N);
	}
	OK(be->ops->upload_wait(be, E));
	OK(be->ops->download(be, got, dev, SPAN, E));
	assert_memory_equal(got, want, SPAN);
	be->ops->host_free(be, pinned);
	be->ops->free(be, dev);
	tr_backend_destroy(be);
}
#endif

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_host_alloc),
		cmocka_unit_test(test_upload_async_in_order),
		cmocka_unit_test(test_staging_matches_sync),
		cmocka_unit_test(test_staging_refusals),
#if defined(TEST_CUDA_EMU)
		cmocka_unit_test(test_copy_waits_for_upload_wait),
		cmocka_unit_test(test_host_reuse_rule),
		cmocka_unit_test(test_copy_queue_overflow),
#endif
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
