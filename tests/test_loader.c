/*
 * test_loader.c - the YOLOv5 data loader (trainer/data/loader.h) on a dataset
 * of 21 PNGs of mixed sizes and aspect ratios written at start-up.
 *
 * Exact checks: rect validation shapes and every validation batch's bytes
 * equal what YOLOv5 v7.0's LoadImagesAndLabels + collate_fn give on the
 * same files (hashes recorded from /tmp/yolov5, see rect_golden below),
 * INTER_AREA equals cv2.resize (tests/data/resize_area.bin), training with
 * every hyp zero equals letterbox of load_image. Our own properties:
 * batches are byte-identical for 0, 1, 2 and 4 workers and with --cache
 * ram, epochs differ, a shuffle is a permutation, fliplr 0.5 flips about
 * half, image weights favour heavy images, single-cls, and a file that
 * breaks mid-epoch fails tr_loader_next with its name (run under ASan).
 * DDP ranks (world 2 and 4) walk their DistributedSampler shards and draw
 * from the streams of their samples' global positions (test_ddp_ranks).
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "gen_dataset.h"
#include "loader.h"
#include "pcg.h"
#include "sampler.h"

enum { N_IMAGES = 21, NC = 3, IMGSZ = 64 };

/* (width, height) of each fixture image, file NNN.png in this order. */
static const int sizes[N_IMAGES][2] = {
    {64, 48}, {48, 64},	 {80, 40},  {40, 80}, {64, 64}, {100, 30}, {30, 90},
    {57, 43}, {120, 90}, {90, 120}, {70, 70}, {33, 50}, {50, 33},  {96, 64},
    {64, 96}, {128, 40}, {40, 128}, {45, 45}, {81, 61}, {61, 81},  {200, 150},
};

/* Images with a class-2 box (the rare class). */
static bool has_rare(int i)
{
	return i == 5 || i == 11;
}

struct fixture {
	char dir[256];
	char images[300];
	struct tr_data_split split;
};

static void must(int rc, const struct ut_err *err)
{
	if (rc != 0)
		fail_msg("%s", err->msg);
}

static int write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	if (f == NULL)
		return -1;
	fputs(text, f);
	return fclose(f);
}

/* Image i: a gradient with noise, so every resize path shows. */
static int write_image(const char *dir, int i, struct ut_err *err)
{
	struct tr_image im;
	if (tr_aug_image_alloc(&im, sizes[i][0], sizes[i][1], err) != 0)
		return -1;
	struct ut_pcg rng;
	ut_pcg_seed(&rng, 1000 + (uint64_t)i, 7);
	for (int y = 0; y < im.height; y++)
		for (int x = 0; x < im.width; x++)
			for (int c = 0; c < 3; c++)
				im.data[((size_t)y * im.width + x) * 3 + c] =
				    (uint8_t)(x * 255 / im.width + y * 3 + c * 60 +
					      (int)ut_pcg_below(&rng, 32));
	char path[512];
	snprintf(path, sizeof(path), "%s/images/train/%03d.png", dir, i);
	int rc = tr_gen_write_png(path, &im, err);
	tr_aug_image_free(&im);
	if (rc != 0)
		return -1;
	char text[256] = "";
	int n = i % 4;
	for (int j = 0; j < n; j++) {
		char line[64];
		snprintf(line, sizeof(line), "%d %.6f %.6f %.6f %.6f\n", (i + j) % 2,
			 0.2 + 0.15 * j, 0.3 + 0.1 * j, 0.2, 0.25);
		strcat(text, line);
	}
	if (has_rare(i))
		strcat(text, "2 0.600000 0.500000 0.300000 0.300000\n");
	snprintf(path, sizeof(path), "%s/labels/train/%03d.txt", dir, i);
	return write_text(path, text) == 0 ? 0 : ut_err_set(err, "cannot write %s", path);
}

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));
	struct ut_err err;
	/* YE_LOADER_FIXTURE names a folder to keep it (to record the golden) */
	const char *keep = getenv("YE_LOADER_FIXTURE");
	snprintf(fx->dir, sizeof(fx->dir), "%s", keep != NULL ? keep : "/tmp/test_loader.XXXXXX");
	if (keep == NULL && mkdtemp(fx->dir) == NULL)
		return -1;
	snprintf(fx->images, sizeof(fx->images), "%s/images/train", fx->dir);
	char labels[300];
	snprintf(labels, sizeof(labels), "%s/labels/train", fx->dir);
	if (ut_mkdirs(fx->images, &err) != 0 || ut_mkdirs(labels, &err) != 0)
		return -1;
	for (int i = 0; i < N_IMAGES; i++)
		if (write_image(fx->dir, i, &err) != 0) {
			fprintf(stderr, "%s\n", err.msg);
			return -1;
		}
	const char *sources[] = {fx->images};
	struct tr_data_open_opts o = {.nc = NC, .use_cache = false};
	if (tr_data_split_open(sources, 1, &o, &fx->split, &err) != 0) {
		fprintf(stderr, "%s\n", err.msg);
		return -1;
	}
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;
	struct ut_err err;
	tr_data_split_free(&fx->split);
	if (getenv("YE_LOADER_FIXTURE") == NULL)
		ut_remove_tree(fx->dir, &err);
	free(fx);
	return 0;
}

/* --- helpers --- */

static uint64_t fnv(uint64_t h, const void *data, size_t len)
{
	const uint8_t *p = data;
	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

static const uint64_t fnv_start = 0xcbf29ce484222325ULL;

static uint64_t batch_hash(const struct tr_batch *b)
{
	uint64_t h = fnv(fnv_start, b->images, (size_t)b->n * 3 * b->height * b->width);
	h = fnv(h, b->targets, sizeof(float) * 6 * b->nt);
	int dims[3] = {b->n, b->height, b->width};
	return fnv(h, dims, sizeof(dims));
}

/* A training loader over the fixture with every augmentation on. */
static struct tr_loader_opts busy_opts(int workers)
{
	struct tr_loader_opts o = tr_loader_train_defaults(IMGSZ, 4);
	o.workers = workers;
	o.seed = 7;
	o.hyp.degrees = 5;
	o.hyp.shear = 2;
	o.hyp.mixup = 0.5;
	o.hyp.flipud = 0.3;
	o.hyp.mosaic = 0.7;
	return o;
}

/* Hash every batch of `epochs` epochs into hashes[epoch * nb + b]. */
static void run_epochs(const struct fixture *fx, const struct tr_loader_opts *o, int epochs,
		       const double *weights, uint64_t *hashes, long *nb_out)
{
	struct ut_err err;
	struct tr_loader *loader;
	must(tr_loader_create(&fx->split, o, &loader, &err), &err);
	long nb = tr_loader_num_batches(loader);
	for (int e = 0; e < epochs; e++) {
		must(tr_loader_start_epoch(loader, e, weights, &err), &err);
		const struct tr_batch *b;
		int rc;
		long count = 0;
		while ((rc = tr_loader_next(loader, &b, &err)) == 1) {
			assert_int_equal(b->number, count);
			assert_int_equal(b->epoch, e);
			hashes[e * nb + count++] = batch_hash(b);
		}
		must(rc < 0, &err);
		assert_int_equal(count, nb);
	}
	tr_loader_free(loader);
	if (nb_out != NULL)
		*nb_out = nb;
}

/* --- tests --- */

static void test_workers_same_bytes(void **state)
{
	const struct fixture *fx = *state;
	enum { EPOCHS = 2, NB = (N_IMAGES + 3) / 4 };
	uint64_t ref[EPOCHS * NB], got[EPOCHS * NB];
	struct tr_loader_opts o = busy_opts(0);
	long nb;
	run_epochs(fx, &o, EPOCHS, NULL, ref, &nb);
	assert_int_equal(nb, NB);
	const int workers[] = {1, 2, 4};
	for (size_t i = 0; i < UT_ARRAY_LEN(workers); i++) {
		o = busy_opts(workers[i]);
		o.prefetch = workers[i] == 2 ? 1 : 3;
		run_epochs(fx, &o, EPOCHS, NULL, got, NULL);
		assert_memory_equal(ref, got, sizeof(ref));
	}
	for (int b = 0; b < NB; b++)
		assert_true(ref[b] != ref[NB + b]); /* epochs differ */
	o = busy_opts(2);
	o.seed = 8;
	run_epochs(fx, &o, 1, NULL, got, NULL);
	assert_true(got[0] != ref[0]); /* seeds differ */
}

static void test_cache_ram_same_bytes(void **state)
{
	const struct fixture *fx = *state;
	enum { EPOCHS = 2, NB = (N_IMAGES + 3) / 4 };
	uint64_t ref[EPOCHS * NB], got[EPOCHS * NB];
	struct tr_loader_opts o = busy_opts(2);
	run_epochs(fx, &o, EPOCHS, NULL, ref, NULL);
	o.cache_ram = true;
	run_epochs(fx, &o, EPOCHS, NULL, got, NULL);
	assert_memory_equal(ref, got, sizeof(ref));
	o = tr_loader_val_defaults(IMGSZ, 4);
	run_epochs(fx, &o, EPOCHS, NULL, ref, NULL);
	o.cache_ram = true;
	run_epochs(fx, &o, EPOCHS, NULL, got, NULL);
	assert_memory_equal(ref, got, sizeof(ref));
}

/* Each item exactly once per epoch, in an order that changes. */
static void test_shuffle_is_permutation(void **state)
{
	const struct fixture *fx = *state;
	struct ut_err err;
	struct tr_loader_opts o = busy_opts(2);
	struct tr_loader *loader;
	must(tr_loader_create(&fx->split, &o, &loader, &err), &err);
	long orders[2][N_IMAGES];
	for (int e = 0; e < 2; e++) {
		int seen[N_IMAGES] = {0};
		long k = 0;
		must(tr_loader_start_epoch(loader, e, NULL, &err), &err);
		const struct tr_batch *b;
		int rc;
		while ((rc = tr_loader_next(loader, &b, &err)) == 1)
			for (int i = 0; i < b->n; i++) {
				assert_in_range(b->info[i].item, 0, N_IMAGES - 1);
				seen[b->info[i].item]++;
				orders[e][k++] = b->info[i].item;
			}
		must(rc < 0, &err);
		assert_int_equal(k, N_IMAGES);
		for (int i = 0; i < N_IMAGES; i++)
			assert_int_equal(seen[i], 1);
	}
	assert_memory_not_equal(orders[0], orders[1], sizeof(orders[0]));
	long identity = 0;
	for (int i = 0; i < N_IMAGES; i++)
		identity += orders[0][i] == i;
	assert_true(identity < N_IMAGES / 2);
	tr_loader_free(loader);
}

/*
 * DDP: rank r of world walks its DistributedSampler indices in batches of
 * its own size, sample k drawing from the stream of global position
 * k * world + r. Without shuffle the sampler's order is the identity, so
 * rank r's sample k must be the one-process loader's sample at position
 * k * world + r, byte for byte (batch size 1, every augmentation on,
 * mosaic's and mixup's extra picks included), and a padding sample (the
 * position past the dataset, its image from the start again) must differ
 * from that image's own sample. With shuffle the items are the sampler's
 * lists, epoch by epoch. Image weights are refused under DDP.
 */
static void test_ddp_ranks(void **state)
{
	const struct fixture *fx = *state;
	enum { EPOCHS = 2 };
	struct ut_err err;
	uint64_t ref[EPOCHS * N_IMAGES], got[EPOCHS * N_IMAGES];
	struct tr_loader_opts one = busy_opts(0);
	one.batch_size = 1;
	one.shuffle = false;
	run_epochs(fx, &one, EPOCHS, NULL, ref, NULL);
	for (int world = 2; world <= 4; world *= 2) {
		long nb = 0, padded = 0;
		for (int rank = 0; rank < world; rank++) {
			struct tr_loader_opts o = one;
			o.world = world;
			o.rank = rank;
			o.workers = 2;
			run_epochs(fx, &o, EPOCHS, NULL, got, &nb);
			assert_int_equal(nb, (N_IMAGES + world - 1) / world);
			for (int e = 0; e < EPOCHS; e++)
				for (long k = 0; k < nb; k++) {
					long p = k * world + rank;
					if (p < N_IMAGES) {
						assert_true(got[e * nb + k] ==
							    ref[e * N_IMAGES + p]);
					} else {
						assert_true(got[e * nb + k] !=
							    ref[e * N_IMAGES + p % N_IMAGES]);
						padded++;
					}
				}
		}
		/* 21 images: 1 padding sample over 2 ranks, 3 over 4 */
		assert_int_equal(padded, EPOCHS * (nb * world - N_IMAGES));
		assert_true(padded > 0);
	}
	/* shuffled: each rank's items are the sampler's, every epoch */
	for (int rank = 0; rank < 2; rank++) {
		struct tr_loader_opts o = busy_opts(2);
		o.batch_size = 2;
		o.world = 2;
		o.rank = rank;
		struct tr_loader *loader;
		struct tr_sampler *sampler;
		must(tr_loader_create(&fx->split, &o, &loader, &err), &err);
		must(tr_sampler_create(
			 &(struct tr_sampler_opts){
			     .n = N_IMAGES, .world = 2, .rank = rank, .shuffle = true},
			 &sampler, &err),
		     &err);
		for (int e = 0; e < EPOCHS; e++) {
			tr_sampler_set_epoch(sampler, e);
			const long *want = tr_sampler_indices(sampler);
			must(tr_loader_start_epoch(loader, e, NULL, &err), &err);
			const struct tr_batch *b;
			long k = 0;
			int rc;
			while ((rc = tr_loader_next(loader, &b, &err)) == 1)
				for (int i = 0; i < b->n; i++)
					assert_int_equal(b->info[i].item, want[k++]);
			must(rc < 0, &err);
			assert_int_equal(k, tr_sampler_num_samples(sampler));
		}
		double weights[N_IMAGES];
		for (int i = 0; i < N_IMAGES; i++)
			weights[i] = 1;
		assert_int_equal(tr_loader_start_epoch(loader, 0, weights, &err), -1);
		assert_non_null(strstr(err.msg, "not compatible with DDP"));
		tr_sampler_free(sampler);
		tr_loader_free(loader);
	}
}

/*
 * Recorded from YOLOv5 v7.0 on this fixture (LoadImagesAndLabels(images,
 * 64, 4, augment=False, rect=True, pad=0.5, stride=32), batches from
 * collate_fn): per batch height, width and the FNV-1a 64 of its uint8
 * image tensor, then of its targets (float32).
 */
struct rect_golden {
	int h, w;
	uint64_t images;
};

#include "data/loader_rect_golden.h"

static void test_val_rect_matches_yolov5(void **state)
{
	const struct fixture *fx = *state;
	struct ut_err err;
	struct tr_loader_opts o = tr_loader_val_defaults(IMGSZ, 4);
	struct tr_loader *loader;
	must(tr_loader_create(&fx->split, &o, &loader, &err), &err);
	long nb = tr_loader_num_batches(loader);
	assert_int_equal(nb, (long)UT_ARRAY_LEN(rect_golden));
	must(tr_loader_start_epoch(loader, 0, NULL, &err), &err);
	const struct tr_batch *b;
	int rc, max_h = 0, max_w = 0;
	double prev_ar = 0;
	while ((rc = tr_loader_next(loader, &b, &err)) == 1) {
		const struct rect_golden *g = &rect_golden[b->number];
		assert_int_equal(b->height, g->h);
		assert_int_equal(b->width, g->w);
		uint64_t h = fnv(fnv_start, b->images, (size_t)b->n * 3 * b->height * b->width);
		if (h != g->images)
			fail_msg("validation batch %ld differs from YOLOv5's", b->number);
		max_h = b->height > max_h ? b->height : max_h;
		max_w = b->width > max_w ? b->width : max_w;
		for (int i = 0; i < b->n; i++) { /* sorted by aspect ratio */
			const struct tr_batch_image *in = &b->info[i];
			double ar = (double)in->h0 / in->w0;
			assert_true(ar >= prev_ar);
			prev_ar = ar;
			assert_int_equal(in->w0, sizes[in->item][0]);
			assert_int_equal(in->h0, sizes[in->item][1]);
		}
	}
	must(rc < 0, &err);
	int mh, mw;
	tr_loader_max_shape(loader, &mh, &mw);
	assert_int_equal(mh, max_h);
	assert_int_equal(mw, max_w);
	tr_loader_free(loader);
}

/* Validation pixels are letterbox(load_image) computed here step by step. */
static void test_val_equals_letterbox(void **state)
{
	const struct fixture *fx = *state;
	struct ut_err err;
	struct tr_loader_opts o = tr_loader_val_defaults(IMGSZ, 4);
	o.workers = 1;
	struct tr_loader *loader;
	must(tr_loader_create(&fx->split, &o, &loader, &err), &err);
	must(tr_loader_start_epoch(loader, 0, NULL, &err), &err);
	const struct tr_batch *b;
	int rc;
	while ((rc = tr_loader_next(loader, &b, &err)) == 1)
		for (int i = 0; i < b->n; i++) {
			const struct tr_batch_image *in = &b->info[i];
			struct tr_image im, small, boxed;
			must(tr_data_image_load(fx->split.items[in->item].image_path, &im, &err),
			     &err);
			double r = (double)IMGSZ / (im.width > im.height ? im.width : im.height);
			must(tr_aug_image_alloc(&small, (int)(im.width * r), (int)(im.height * r),
						&err),
			     &err);
			if (r > 1)
				tr_aug_resize_linear(&im, &small);
			else
				assert_int_equal(tr_aug_resize_area(&im, &small), 0);
			assert_true(in->ratio_w == (double)small.width / im.width);
			assert_true(in->ratio_h == (double)small.height / im.height);
			struct tr_aug_letterbox_opts lb = tr_aug_letterbox_defaults(b->width);
			lb.new_height = b->height;
			lb.auto_rect = false;
			lb.scaleup = false;
			struct tr_aug_letterbox_info info;
			must(tr_aug_letterbox(&small, &lb, &boxed, &info, &err), &err);
			assert_true(in->pad_w == info.dw && in->pad_h == info.dh);
			size_t plane = (size_t)b->height * b->width;
			const uint8_t *got = b->images + (size_t)i * 3 * plane;
			for (size_t p = 0; p < plane; p++)
				for (int c = 0; c < 3; c++)
					if (got[c * plane + p] != boxed.data[3 * p + 2 - c])
						fail_msg("item %ld pixel %zu channel %d", in->item,
							 p, c);
			tr_aug_image_free(&im);
			tr_aug_image_free(&small);
			tr_aug_image_free(&boxed);
		}
	must(rc < 0, &err);
	tr_loader_free(loader);
}

/* Every hyp zero and mosaic 0: a training image is letterbox of load_image. */
static void test_zero_hyp_is_letterbox(void **state)
{
	const struct fixture *fx = *state;
	struct ut_err err;
	struct tr_loader_opts o = tr_loader_train_defaults(IMGSZ, 5);
	memset(&o.hyp, 0, sizeof(o.hyp));
	struct tr_loader *loader;
	must(tr_loader_create(&fx->split, &o, &loader, &err), &err);
	must(tr_loader_start_epoch(loader, 3, NULL, &err), &err);
	const struct tr_batch *b;
	int rc;
	size_t targets = 0;
	while ((rc = tr_loader_next(loader, &b, &err)) == 1) {
		assert_int_equal(b->height, IMGSZ);
		assert_int_equal(b->width, IMGSZ);
		targets += b->nt;
		for (int i = 0; i < b->n; i++) {
			const struct tr_batch_image *in = &b->info[i];
			struct tr_image im, small, boxed;
			must(tr_data_image_load(fx->split.items[in->item].image_path, &im, &err),
			     &err);
			double r = (double)IMGSZ / (im.width > im.height ? im.width : im.height);
			must(tr_aug_image_alloc(&small, (int)(im.width * r), (int)(im.height * r),
						&err),
			     &err);
			tr_aug_resize_linear(&im, &small); /* INTER_LINEAR when augmenting */
			struct tr_aug_letterbox_opts lb = tr_aug_letterbox_defaults(IMGSZ);
			lb.auto_rect = false;
			struct tr_aug_letterbox_info info;
			must(tr_aug_letterbox(&small, &lb, &boxed, &info, &err), &err);
			size_t plane = (size_t)IMGSZ * IMGSZ;
			const uint8_t *got = b->images + (size_t)i * 3 * plane;
			for (size_t p = 0; p < plane; p++)
				for (int c = 0; c < 3; c++)
					if (got[c * plane + p] != boxed.data[3 * p + 2 - c])
						fail_msg("item %ld pixel %zu channel %d", in->item,
							 p, c);
			tr_aug_image_free(&im);
			tr_aug_image_free(&small);
			tr_aug_image_free(&boxed);
		}
	}
	must(rc < 0, &err);
	assert_int_equal(targets, (size_t)fx->split.summary.labels);
	tr_loader_free(loader);
}

/* fliplr 0.5: about half the images are mirrors of the unflipped run. */
static void test_fliplr_half(void **state)
{
	const struct fixture *fx = *state;
	struct ut_err err;
	struct tr_loader_opts o = tr_loader_train_defaults(IMGSZ, N_IMAGES);
	memset(&o.hyp, 0, sizeof(o.hyp));
	struct tr_loader *plain, *flip;
	must(tr_loader_create(&fx->split, &o, &plain, &err), &err);
	o.hyp.fliplr = 0.5;
	must(tr_loader_create(&fx->split, &o, &flip, &err), &err);
	int flipped = 0, total = 0;
	size_t plane = (size_t)IMGSZ * IMGSZ;
	for (int e = 0; e < 12; e++) {
		const struct tr_batch *a, *b;
		must(tr_loader_start_epoch(plain, e, NULL, &err), &err);
		must(tr_loader_start_epoch(flip, e, NULL, &err), &err);
		assert_int_equal(tr_loader_next(plain, &a, &err), 1);
		assert_int_equal(tr_loader_next(flip, &b, &err), 1);
		assert_int_equal(a->nt, b->nt);
		for (int i = 0; i < a->n; i++) {
			const uint8_t *pa = a->images + (size_t)i * 3 * plane;
			const uint8_t *pb = b->images + (size_t)i * 3 * plane;
			bool same = memcmp(pa, pb, 3 * plane) == 0, mirror = true;
			for (size_t p = 0; p < 3 * plane && mirror; p++) {
				size_t x = p % IMGSZ;
				mirror = pb[p] == pa[p - x + (IMGSZ - 1 - x)];
			}
			assert_true(same || mirror);
			flipped += !same;
			total++;
		}
		for (size_t t = 0; t < a->nt; t++) {
			const float *ta = a->targets + 6 * t, *tb = b->targets + 6 * t;
			assert_true(tb[2] == ta[2] || fabsf(tb[2] - (1 - ta[2])) < 1e-6f);
		}
	}
	/* 252 coins: 126 expected, sd 7.9 */
	assert_in_range(flipped, 126 - 32, 126 + 32);
	tr_loader_free(plain);
	tr_loader_free(flip);
	(void)total;
}

static void test_single_cls(void **state)
{
	const struct fixture *fx = *state;
	struct ut_err err;
	struct tr_loader_opts o = busy_opts(2);
	o.single_cls = true;
	struct tr_loader *loader;
	must(tr_loader_create(&fx->split, &o, &loader, &err), &err);
	must(tr_loader_start_epoch(loader, 0, NULL, &err), &err);
	const struct tr_batch *b;
	int rc;
	size_t nt = 0;
	while ((rc = tr_loader_next(loader, &b, &err)) == 1)
		for (size_t t = 0; t < b->nt; t++, nt++)
			assert_true(b->targets[6 * t + 1] == 0.f);
	must(rc < 0, &err);
	assert_true(nt > 0);
	tr_loader_free(loader);
	double cw[NC];
	tr_labels_class_weights(&fx->split, 1, true, cw); /* nc 1 as train.py gives */
	assert_true(cw[0] == 1.0);
	tr_labels_class_weights(&fx->split, NC, true, cw); /* every label counts as 0 */
	double sum = 1.0 / fx->split.summary.labels + 2;
	assert_true(cw[0] == 1.0 / fx->split.summary.labels / sum && cw[1] == 1 / sum &&
		    cw[2] == 1 / sum);
}

static void test_image_weights(void **state)
{
	const struct fixture *fx = *state;
	struct ut_err err;
	long count[NC] = {0};
	for (int i = 0; i < fx->split.n_items; i++)
		for (int j = 0; j < fx->split.items[i].labels.n_labels; j++)
			count[fx->split.items[i].labels.labels[j].cls]++;
	double cw[NC], iw[N_IMAGES], sum = 0;
	tr_labels_class_weights(&fx->split, NC, false, cw);
	for (int c = 0; c < NC; c++)
		sum += 1.0 / count[c];
	for (int c = 0; c < NC; c++)
		assert_true(fabs((cw[c]) - (1.0 / count[c] / sum)) <= 1e-15);
	tr_labels_image_weights(&fx->split, NC, false, cw, iw);
	for (int i = 0; i < N_IMAGES; i++) {
		double want = 0;
		const struct tr_data_labels *l = &fx->split.items[i].labels;
		for (int j = 0; j < l->n_labels; j++)
			want += cw[l->labels[j].cls];
		assert_true(fabs((iw[i]) - (want)) <= 1e-15);
		assert_true(has_rare(i) == (iw[i] > cw[2] * 0.99));
	}
	/* the rare class weighs most: its 2 images come far more often */
	struct tr_loader_opts o = busy_opts(2);
	o.hyp.mosaic = 0;
	struct tr_loader *loader;
	must(tr_loader_create(&fx->split, &o, &loader, &err), &err);
	long rare = 0, total = 0, zero = 0;
	for (int e = 0; e < 10; e++) {
		must(tr_loader_start_epoch(loader, e, iw, &err), &err);
		const struct tr_batch *b;
		int rc;
		while ((rc = tr_loader_next(loader, &b, &err)) == 1)
			for (int i = 0; i < b->n; i++, total++) {
				rare += has_rare((int)b->info[i].item);
				zero += iw[b->info[i].item] == 0;
			}
		must(rc < 0, &err);
	}
	double share = 0, all = 0;
	for (int i = 0; i < N_IMAGES; i++) {
		all += iw[i];
		share += has_rare(i) ? iw[i] : 0;
	}
	double p = share / all; /* expected share of rare draws */
	assert_int_equal(total, 10 * N_IMAGES);
	assert_int_equal(zero, 0);	     /* background images have weight 0 */
	assert_true(p > 3 * 2.0 / N_IMAGES); /* 3 times their uniform share */
	double sd = sqrt(total * p * (1 - p));
	assert_true(fabs(rare - total * p) < 4 * sd);
	tr_loader_free(loader);
}

/* A file that turns bad after the split was opened. */
static void test_bad_image_mid_epoch(void **state)
{
	const struct fixture *fx = *state;
	struct ut_err err;
	const char *victim = fx->split.items[13].image_path;
	char *saved;
	size_t len;
	must(ut_read_file(victim, &saved, &len, &err), &err);
	FILE *f = fopen(victim, "r+b");
	assert_non_null(f);
	fseek(f, (long)len / 2, SEEK_SET);
	for (int i = 0; i < 64; i++)
		fputc(0x5a, f);
	fclose(f);
	assert_int_equal(truncate(victim, (off_t)(len * 3 / 4)), 0);
	const int workers[] = {0, 1, 3};
	for (size_t w = 0; w < UT_ARRAY_LEN(workers); w++)
		for (int mosaic = 0; mosaic < 2; mosaic++) {
			struct tr_loader_opts o = busy_opts(workers[w]);
			o.hyp.mosaic = mosaic;
			o.prefetch = 2;
			struct tr_loader *loader;
			must(tr_loader_create(&fx->split, &o, &loader, &err), &err);
			must(tr_loader_start_epoch(loader, 0, NULL, &err), &err);
			const struct tr_batch *b;
			int rc;
			while ((rc = tr_loader_next(loader, &b, &err)) == 1)
				;
			assert_int_equal(rc, -1);
			if (strstr(err.msg, victim) == NULL)
				fail_msg("error does not name %s: %s", victim, err.msg);
			assert_int_equal(tr_loader_next(loader, &b, &err), -1);
			tr_loader_free(loader);
		}
	f = fopen(victim, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(saved, 1, len, f), len);
	fclose(f);
	free(saved);
}

/* Options are checked; an epoch must be started; rect refuses weights. */
static void test_bad_options(void **state)
{
	const struct fixture *fx = *state;
	struct ut_err err;
	struct tr_loader *loader;
	struct tr_loader_opts o = tr_loader_train_defaults(60, 4);
	assert_int_equal(tr_loader_create(&fx->split, &o, &loader, &err), -1);
	assert_non_null(strstr(err.msg, "imgsz"));
	o = tr_loader_train_defaults(64, 4);
	o.hyp.mosaic = 1.5;
	assert_int_equal(tr_loader_create(&fx->split, &o, &loader, &err), -1);
	assert_non_null(strstr(err.msg, "mosaic"));
	o = tr_loader_val_defaults(64, 4);
	must(tr_loader_create(&fx->split, &o, &loader, &err), &err);
	const struct tr_batch *b;
	assert_int_equal(tr_loader_next(loader, &b, &err), -1);
	double w[N_IMAGES];
	for (int i = 0; i < N_IMAGES; i++)
		w[i] = 1;
	assert_int_equal(tr_loader_start_epoch(loader, 0, w, &err), -1);
	must(tr_loader_start_epoch(loader, 0, NULL, &err), &err);
	assert_int_equal(tr_loader_next(loader, &b, &err), 1);
	must(tr_loader_start_epoch(loader, 1, NULL, &err), &err); /* mid-epoch restart */
	tr_loader_free(loader);
}

/* INTER_AREA against cv2.resize (tests/data/resize_area.bin). */
static void test_resize_area_golden(void **state)
{
	(void)state;
	const char *root = getenv("YE_SOURCE_ROOT");
	if (root == NULL)
		fail_msg("YE_SOURCE_ROOT is not set");
	char path[512];
	snprintf(path, sizeof(path), "%s/tests/data/resize_area.bin", root);
	char *data;
	size_t len;
	struct ut_err err;
	must(ut_read_file(path, &data, &len, &err), &err);
	size_t at = 0;
	int cases = 0;
	while (at + 16 <= len) {
		int32_t dims[4];
		memcpy(dims, data + at, sizeof(dims));
		at += sizeof(dims);
		struct tr_image src, dst;
		must(tr_aug_image_alloc(&src, dims[0], dims[1], &err), &err);
		must(tr_aug_image_alloc(&dst, dims[2], dims[3], &err), &err);
		size_t in = (size_t)dims[0] * dims[1] * 3, out = (size_t)dims[2] * dims[3] * 3;
		for (size_t i = 0; i < in; i++) /* the generator's pattern */
			src.data[i] = (uint8_t)((i * 2654435761u) >> 13);
		assert_true(at + out <= len);
		assert_int_equal(tr_aug_resize_area(&src, &dst), 0);
		if (memcmp(dst.data, data + at, out) != 0)
			fail_msg("resize_area %dx%d -> %dx%d differs from cv2", dims[0], dims[1],
				 dims[2], dims[3]);
		at += out;
		cases++;
		tr_aug_image_free(&src);
		tr_aug_image_free(&dst);
	}
	assert_int_equal(at, len);
	assert_true(cases >= 20);
	free(data);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_resize_area_golden),
	    cmocka_unit_test(test_workers_same_bytes),
	    cmocka_unit_test(test_cache_ram_same_bytes),
	    cmocka_unit_test(test_shuffle_is_permutation),
	    cmocka_unit_test(test_ddp_ranks),
	    cmocka_unit_test(test_val_rect_matches_yolov5),
	    cmocka_unit_test(test_val_equals_letterbox),
	    cmocka_unit_test(test_zero_hyp_is_letterbox),
	    cmocka_unit_test(test_fliplr_half),
	    cmocka_unit_test(test_single_cls),
	    cmocka_unit_test(test_image_weights),
	    cmocka_unit_test(test_bad_image_mid_epoch),
	    cmocka_unit_test(test_bad_options),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
