/*
 * loader.c - YOLOv5 v7.0's LoadImagesAndLabels and its DataLoader (see
 * loader.h): load_image, the training sample (mosaic or letterbox, then
 * the per-sample augmentations), rect batch shapes, collate, and worker
 * threads that make whole batches into a ring of prefetch + 1 slots.
 *
 * Sample k of an epoch draws only from the stream (seed, epoch, k) and the
 * epoch's order only from (seed, epoch, -1), so whichever thread makes a
 * batch, its bytes are the same.
 *
 * Speed: each worker keeps its big pixel buffers (struct scratch) from
 * sample to sample, and a mosaic's tiles are resized only where its warp
 * will read the canvas (the warp's draws are known first unless
 * copy_paste draws); pixels nobody reads are left as they were.
 */
#include "loader.h"
#include "npsort.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "mosaic.h"
#include "pcg.h"
#include "sampler.h"

enum { MAX_WORKERS = 256 };

/* load_image's result: the image with its long side imgsz. */
struct loaded {
	struct tr_image im;
	int h0, w0; /* original size */
	bool owned; /* false: borrowed from the RAM cache */
};

/*
 * One worker's pixel buffers, kept across samples and epochs so that a
 * sample allocates (and page-faults in) nothing big: the resized tiles of
 * a mosaic, its canvas, the sample and mixup's second mosaic.
 */
struct scratch {
	struct tr_aug_buffer tile[4];
	struct tr_aug_buffer canvas;
	struct tr_aug_buffer sample;
	struct tr_aug_buffer second;
};

struct worker {
	struct tr_loader *L;
	struct scratch scratch;
};

enum slot_state { SLOT_EMPTY, SLOT_BUSY, SLOT_READY, SLOT_FAILED };

/* One batch being made or ready; its buffers are sized once at create. */
struct slot {
	long number;
	enum slot_state state;
	struct tr_batch batch;
	size_t targets_cap; /* rows of 6 */
	struct ut_err err;
};

struct tr_loader {
	const struct tr_data_split *split;
	struct tr_loader_opts opts;
	long n;			    /* images */
	long *items;		    /* dataset index -> split item (rect: by aspect ratio) */
	long n_epoch;		    /* samples per epoch: n, or (DDP) the rank's num_samples */
	long n_batches;		    /* ceil(n_epoch / batch_size) */
	struct tr_sampler *sampler; /* DDP (world > 1) only */
	long n_shape_batches;	    /* ceil(n / batch_size): the dataset's rect batches */
	int *batch_shape;	    /* rect: [n_shape_batches][2] height, width */
	int max_h, max_w;

	struct tr_image *cache; /* cache_ram: [n] by dataset index, filled on first use */
	int *cache_hw0;		/* [n][2] */
	pthread_mutex_t cache_lock;

	long epoch;
	long *order;	  /* [n_epoch] dataset index of each position of the epoch */
	const long *pool; /* image weights: mosaic's extra picks come from order */
	bool started;

	pthread_mutex_t lock;
	pthread_cond_t ready; /* a slot became ready or failed */
	pthread_cond_t room;  /* the consumer moved on, or stop */
	struct slot *slots;
	int n_slots;
	long next_claim; /* next batch a worker takes */
	long consumed;	 /* batches handed to the caller */
	atomic_bool stop;
	bool failed;
	struct ut_err fail_err;
	pthread_t *threads;
	int n_threads;
	struct worker *workers; /* [max(workers, 1)]: workers == 0 uses the first */
};

struct tr_loader_opts tr_loader_train_defaults(int imgsz, int batch_size)
{
	struct tr_loader_opts o = {
	    .imgsz = imgsz,
	    .stride = 32,
	    .batch_size = batch_size,
	    .workers = 2,
	    .prefetch = 4,
	    .augment = true,
	    .shuffle = true,
	    /* hyp.scratch-low.yaml */
	    .hyp = {.hsv_h = 0.015,
		    .hsv_s = 0.7,
		    .hsv_v = 0.4,
		    .translate = 0.1,
		    .scale = 0.5,
		    .fliplr = 0.5,
		    .mosaic = 1.0},
	};
	return o;
}

struct tr_loader_opts tr_loader_val_defaults(int imgsz, int batch_size)
{
	struct tr_loader_opts o = {
	    .imgsz = imgsz,
	    .stride = 32,
	    .batch_size = batch_size,
	    .workers = 2,
	    .prefetch = 4,
	    .rect = true,
	    .pad = 0.5,
	};
	return o;
}

/* --- options, rect shapes --- */

static int check_hyp(const struct tr_loader_hyp *h, struct ut_err *err)
{
	const struct {
		const char *name;
		double value;
		double hi;
	} keys[] = {
	    {"hsv_h", h->hsv_h, INFINITY},    {"hsv_s", h->hsv_s, INFINITY},
	    {"hsv_v", h->hsv_v, INFINITY},    {"degrees", h->degrees, INFINITY},
	    {"translate", h->translate, 1},   {"scale", h->scale, INFINITY},
	    {"shear", h->shear, INFINITY},    {"perspective", h->perspective, INFINITY},
	    {"flipud", h->flipud, 1},	      {"fliplr", h->fliplr, 1},
	    {"mosaic", h->mosaic, 1},	      {"mixup", h->mixup, 1},
	    {"copy_paste", h->copy_paste, 1},
	};
	for (size_t i = 0; i < UT_ARRAY_LEN(keys); i++)
		if (!(keys[i].value >= 0 && keys[i].value <= keys[i].hi))
			return ut_err_set(err, "loader: hyp %s = %g is out of range", keys[i].name,
					  keys[i].value);
	return 0;
}

static int check_opts(const struct tr_data_split *split, const struct tr_loader_opts *o,
		      struct ut_err *err)
{
	if (split == NULL || split->n_items < 1)
		return ut_err_set(err, "loader: the split has no usable image");
	if (o->stride < 1 || o->imgsz < o->stride || o->imgsz % o->stride != 0)
		return ut_err_set(err, "loader: imgsz %d is not a positive multiple of stride %d",
				  o->imgsz, o->stride);
	if (o->batch_size < 1)
		return ut_err_set(err, "loader: batch_size %d must be >= 1", o->batch_size);
	if (o->workers < 0 || o->workers > MAX_WORKERS)
		return ut_err_set(err, "loader: workers %d is not in 0..%d", o->workers,
				  MAX_WORKERS);
	if (o->prefetch < 1 || o->prefetch > 1024)
		return ut_err_set(err, "loader: prefetch %d is not in 1..1024", o->prefetch);
	if (!(o->pad >= 0 && o->pad <= 64))
		return ut_err_set(err, "loader: pad %g is not in 0..64", o->pad);
	if (o->world > 1 && (o->rank < 0 || o->rank >= o->world))
		return ut_err_set(err, "loader: rank %d is not in 0..%d", o->rank, o->world - 1);
	return o->augment ? check_hyp(&o->hyp, err) : 0;
}

/* Aspect ratio h / w of an item, float64 as numpy divides the shapes. */
static double aspect(const struct tr_data_item *it)
{
	return (double)it->height / (double)it->width;
}

/* irect = ar.argsort() with ar = h / w per image, as YOLOv5 orders rect batches. */
static int rect_order(const struct tr_data_split *split, long *items, struct ut_err *err)
{
	long n = split->n_items;
	double *ar = malloc(sizeof(double) * (size_t)n);
	if (ar == NULL)
		return ut_err_set(err, "loader: out of memory for %ld aspect ratios", n);
	size_t *order = malloc(sizeof(size_t) * (size_t)n);
	if (order == NULL) {
		free(ar);
		return ut_err_set(err, "loader: out of memory for %ld aspect ratios", n);
	}
	for (long i = 0; i < n; i++)
		ar[i] = aspect(&split->items[i]);
	/* numpy's order, step for step: images of equal aspect ratio batch as in YOLOv5 */
	ut_np_argsort(ar, (size_t)n, order);
	for (long i = 0; i < n; i++)
		items[i] = (long)order[i];
	free(order);
	free(ar);
	return 0;
}

/*
 * batch_shapes = ceil([h, w] * imgsz / stride + pad) * stride with [h, w]
 * = [maxi, 1] when every ar of the batch is < 1, [1, 1 / mini] when every
 * one is > 1, else [1, 1].
 */
static void rect_shapes(struct tr_loader *L)
{
	const struct tr_loader_opts *o = &L->opts;
	L->max_h = L->max_w = 0;
	for (long b = 0; b < L->n_shape_batches; b++) {
		long first = b * o->batch_size;
		long last = first + o->batch_size < L->n ? first + o->batch_size : L->n;
		double mini = INFINITY, maxi = -INFINITY;
		for (long i = first; i < last; i++) {
			double ar = aspect(&L->split->items[L->items[i]]);
			mini = fmin(mini, ar);
			maxi = fmax(maxi, ar);
		}
		double sh = 1, sw = 1;
		if (maxi < 1)
			sh = maxi;
		else if (mini > 1)
			sw = 1 / mini;
		int h = (int)ceil(sh * o->imgsz / o->stride + o->pad) * o->stride;
		int w = (int)ceil(sw * o->imgsz / o->stride + o->pad) * o->stride;
		L->batch_shape[2 * b] = h;
		L->batch_shape[2 * b + 1] = w;
		L->max_h = h > L->max_h ? h : L->max_h;
		L->max_w = w > L->max_w ? w : L->max_w;
	}
}

/* --- create / free --- */

static void free_slots(struct tr_loader *L)
{
	if (L->slots == NULL)
		return;
	for (int i = 0; i < L->n_slots; i++) {
		free(L->slots[i].batch.images);
		free(L->slots[i].batch.targets);
		free(L->slots[i].batch.info);
	}
	free(L->slots);
	L->slots = NULL;
}

static int alloc_slots(struct tr_loader *L, struct ut_err *err)
{
	L->n_slots = L->opts.prefetch + 1;
	L->slots = calloc((size_t)L->n_slots, sizeof(*L->slots));
	if (L->slots == NULL)
		return ut_err_set(err, "loader: out of memory for %d batch slots", L->n_slots);
	size_t bs = (size_t)L->opts.batch_size;
	size_t pixels = (size_t)L->max_h * (size_t)L->max_w * 3;
	for (int i = 0; i < L->n_slots; i++) {
		struct slot *s = &L->slots[i];
		s->number = -1;
		s->targets_cap = 16 * bs;
		s->batch.images = malloc(pixels * bs);
		s->batch.targets = malloc(sizeof(float) * 6 * s->targets_cap);
		s->batch.info = calloc(bs, sizeof(struct tr_batch_image));
		if (s->batch.images == NULL || s->batch.targets == NULL || s->batch.info == NULL)
			return ut_err_set(err, "loader: out of memory for batches of %zu x %dx%d",
					  bs, L->max_h, L->max_w);
	}
	return 0;
}

int tr_loader_create(const struct tr_data_split *split, const struct tr_loader_opts *opts,
		     struct tr_loader **out, struct ut_err *err)
{
	*out = NULL;
	if (check_opts(split, opts, err) != 0)
		return -1;
	struct tr_loader *L = calloc(1, sizeof(*L));
	if (L == NULL)
		return ut_err_set(err, "loader: out of memory");
	L->split = split;
	L->opts = *opts;
	L->n = split->n_items;
	L->n_epoch = L->n;
	if (opts->world > 1) {
		struct tr_sampler_opts so = {.n = L->n,
					     .world = opts->world,
					     .rank = opts->rank,
					     .shuffle = opts->shuffle && !opts->rect};
		if (tr_sampler_create(&so, &L->sampler, err) != 0) {
			free(L);
			return -1;
		}
		L->n_epoch = tr_sampler_num_samples(L->sampler);
	}
	L->n_batches = (L->n_epoch + opts->batch_size - 1) / opts->batch_size;
	L->n_shape_batches = (L->n + opts->batch_size - 1) / opts->batch_size;
	L->epoch = -1;
	atomic_init(&L->stop, false);
	pthread_mutex_init(&L->lock, NULL);
	pthread_mutex_init(&L->cache_lock, NULL);
	pthread_cond_init(&L->ready, NULL);
	pthread_cond_init(&L->room, NULL);
	L->items = malloc(sizeof(long) * (size_t)L->n);
	L->order = malloc(sizeof(long) * (size_t)L->n);
	L->batch_shape = malloc(sizeof(int) * 2 * (size_t)L->n_shape_batches);
	L->workers = calloc(opts->workers > 0 ? (size_t)opts->workers : 1, sizeof(*L->workers));
	if (opts->cache_ram) {
		L->cache = calloc((size_t)L->n, sizeof(*L->cache));
		L->cache_hw0 = calloc((size_t)L->n, 2 * sizeof(int));
	}
	if (L->items == NULL || L->order == NULL || L->batch_shape == NULL || L->workers == NULL ||
	    (opts->cache_ram && (L->cache == NULL || L->cache_hw0 == NULL))) {
		tr_loader_free(L);
		return ut_err_set(err, "loader: out of memory for %ld images", L->n);
	}
	if (opts->rect) {
		if (rect_order(split, L->items, err) != 0) {
			tr_loader_free(L);
			return -1;
		}
		rect_shapes(L);
	} else {
		for (long i = 0; i < L->n; i++)
			L->items[i] = i;
		L->max_h = L->max_w = opts->imgsz;
	}
	if (alloc_slots(L, err) != 0) {
		tr_loader_free(L);
		return -1;
	}
	*out = L;
	return 0;
}

static void scratch_free(struct scratch *sc)
{
	for (int i = 0; i < 4; i++)
		tr_aug_buffer_free(&sc->tile[i]);
	tr_aug_buffer_free(&sc->canvas);
	tr_aug_buffer_free(&sc->sample);
	tr_aug_buffer_free(&sc->second);
}

void tr_loader_free(struct tr_loader *L)
{
	if (L == NULL)
		return;
	tr_loader_stop(L);
	free_slots(L);
	if (L->cache != NULL)
		for (long i = 0; i < L->n; i++)
			tr_aug_image_free(&L->cache[i]);
	free(L->cache);
	free(L->cache_hw0);
	free(L->items);
	free(L->order);
	tr_sampler_free(L->sampler);
	free(L->batch_shape);
	for (int w = 0; L->workers != NULL && w < (L->opts.workers > 0 ? L->opts.workers : 1); w++)
		scratch_free(&L->workers[w].scratch);
	free(L->workers);
	pthread_mutex_destroy(&L->lock);
	pthread_mutex_destroy(&L->cache_lock);
	pthread_cond_destroy(&L->ready);
	pthread_cond_destroy(&L->room);
	free(L);
}

long tr_loader_num_batches(const struct tr_loader *L)
{
	return L->n_batches;
}

void tr_loader_max_shape(const struct tr_loader *L, int *height, int *width)
{
	*height = L->max_h;
	*width = L->max_w;
}

/* --- load_image --- */

/* Which part of a mosaic tile is needed: tile `tile` of plan, box on the canvas. */
struct tile_clip {
	const struct tr_mosaic_plan *plan;
	int tile;
	int box[4];
};

/*
 * Decode dataset image `index` and resize it so its long side is imgsz
 * (r = imgsz / max(h0, w0), new size int(w0 r) x int(h0 r), at least 1):
 * INTER_LINEAR when augmenting or enlarging, INTER_AREA when shrinking for
 * validation. With cache_ram the first result is kept and lent out after;
 * without, a resized image goes into buf when one is given (lent too), and
 * with clip only the part of it that a mosaic's warp reads is resized.
 */
static int load_image(struct tr_loader *L, long index, struct tr_aug_buffer *buf,
		      const struct tile_clip *clip, struct loaded *out, struct ut_err *err)
{
	out->owned = false;
	if (L->cache != NULL) {
		pthread_mutex_lock(&L->cache_lock);
		bool hit = L->cache[index].data != NULL;
		if (hit) {
			out->im = L->cache[index];
			out->h0 = L->cache_hw0[2 * index];
			out->w0 = L->cache_hw0[2 * index + 1];
		}
		pthread_mutex_unlock(&L->cache_lock);
		if (hit)
			return 0;
	}
	const char *path = L->split->items[L->items[index]].image_path;
	struct tr_image im;
	if (tr_data_image_load(path, &im, err) != 0)
		return -1;
	out->h0 = im.height;
	out->w0 = im.width;
	int longest = im.width > im.height ? im.width : im.height;
	double r = (double)L->opts.imgsz / longest;
	if (r != 1) {
		int w = (int)(im.width * r), h = (int)(im.height * r);
		struct tr_image resized;
		bool lent = buf != NULL && L->cache == NULL;
		int rc = lent
			     ? tr_aug_buffer_image(buf, w > 0 ? w : 1, h > 0 ? h : 1, &resized, err)
			     : tr_aug_image_alloc(&resized, w > 0 ? w : 1, h > 0 ? h : 1, err);
		if (rc != 0) {
			tr_aug_image_free(&im);
			return -1;
		}
		if ((L->opts.augment || r > 1) && lent && clip != NULL) {
			int box[4];
			tr_mosaic_tile_box(clip->plan, clip->tile, resized.width, resized.height,
					   clip->box, box);
			tr_aug_resize_linear_region(&im, &resized, box[0], box[1], box[2], box[3]);
		} else if (L->opts.augment || r > 1) {
			tr_aug_resize_linear(&im, &resized);
		} else
			rc = tr_aug_resize_area(&im, &resized);
		tr_aug_image_free(&im);
		if (rc != 0) {
			if (!lent)
				tr_aug_image_free(&resized);
			return ut_err_set(err, "%s: out of memory resizing", path);
		}
		if (lent) {
			out->im = resized;
			return 0;
		}
		im = resized;
	}
	out->im = im;
	out->owned = true;
	if (L->cache == NULL)
		return 0;
	pthread_mutex_lock(&L->cache_lock);
	if (L->cache[index].data == NULL) {
		L->cache[index] = im;
		L->cache_hw0[2 * index] = out->h0;
		L->cache_hw0[2 * index + 1] = out->w0;
	} else { /* another worker got there first: lend its copy */
		tr_aug_image_free(&out->im);
		out->im = L->cache[index];
	}
	out->owned = false;
	pthread_mutex_unlock(&L->cache_lock);
	return 0;
}

static void loaded_free(struct loaded *l)
{
	if (l->owned)
		tr_aug_image_free(&l->im);
	l->im.data = NULL;
}

/* --- samples --- */

/* The labels of dataset image `index` as rows of class x y w h (normalised). */
static int label_rows(const struct tr_loader *L, long index, float **rows, int *n,
		      struct ut_err *err)
{
	const struct tr_data_labels *lab = &L->split->items[L->items[index]].labels;
	*n = lab->n_labels;
	*rows = malloc(sizeof(float) * 5 * (size_t)(lab->n_labels > 0 ? lab->n_labels : 1));
	if (*rows == NULL)
		return ut_err_set(err, "loader: out of memory for %d labels", lab->n_labels);
	for (int i = 0; i < lab->n_labels; i++) {
		const struct tr_data_label *l = &lab->labels[i];
		float *r = *rows + 5 * (size_t)i;
		r[0] = L->opts.single_cls ? 0.f : (float)l->cls;
		r[1] = l->x;
		r[2] = l->y;
		r[3] = l->w;
		r[4] = l->h;
	}
	return 0;
}

/* One tile's polygons, pointing into the split's segment arrays. */
static int tile_segments(const struct tr_loader *L, long index, struct tr_polygon **poly,
			 struct ut_err *err)
{
	const struct tr_data_labels *lab = &L->split->items[L->items[index]].labels;
	*poly = NULL;
	if (lab->seg_start == NULL || lab->n_labels == 0)
		return 0;
	*poly = malloc(sizeof(**poly) * (size_t)lab->n_labels);
	if (*poly == NULL)
		return ut_err_set(err, "loader: out of memory for %d polygons", lab->n_labels);
	for (int i = 0; i < lab->n_labels; i++) {
		(*poly)[i].xy = lab->seg_xy + 2 * (size_t)lab->seg_start[i];
		(*poly)[i].points = lab->seg_start[i + 1] - lab->seg_start[i];
	}
	return 0;
}

static struct tr_mosaic_hyp mosaic_hyp(const struct tr_loader_hyp *h)
{
	struct tr_mosaic_hyp m = {
	    .degrees = h->degrees,
	    .translate = h->translate,
	    .scale = h->scale,
	    .shear = h->shear,
	    .perspective = h->perspective,
	    .flipud = h->flipud,
	    .fliplr = h->fliplr,
	    .mixup = h->mixup,
	    .copy_paste = h->copy_paste,
	};
	return m;
}

/* The 4 tiles of a mosaic and what they own. */
struct mosaic_parts {
	struct loaded im[4];
	float *rows[4];
	struct tr_polygon *poly[4];
	struct tr_mosaic_tile tiles[4];
};

static void mosaic_parts_free(struct mosaic_parts *m)
{
	for (int i = 0; i < 4; i++) {
		loaded_free(&m->im[i]);
		free(m->rows[i]);
		free(m->poly[i]);
	}
}

/*
 * load_mosaic(index): 4 images around a random centre on a 2s canvas,
 * copy_paste, random_perspective with border -s/2. out (s x s) is lent
 * from out_buf, the tiles and canvas from sc; boxes (empty on entry) get
 * class x1 y1 x2 y2 in pixels.
 */
static int load_mosaic(struct tr_loader *L, struct ut_pcg *rng, long index, struct scratch *sc,
		       struct tr_aug_buffer *out_buf, struct tr_image *out, struct tr_boxes *boxes,
		       struct ut_err *err)
{
	struct tr_mosaic_plan plan;
	if (tr_mosaic_plan_pool(rng, L->opts.imgsz, index, L->pool, L->n, &plan, err) != 0)
		return -1;
	struct tr_mosaic_hyp hyp = mosaic_hyp(&L->opts.hyp);
	struct mosaic_parts m;
	memset(&m, 0, sizeof(m));
	int rc = 0;
	bool segmented = true, polygons = false;
	for (int i = 0; i < 4 && rc == 0; i++) {
		rc = label_rows(L, plan.indices[i], &m.rows[i], &m.tiles[i].n, err);
		if (rc == 0)
			rc = tile_segments(L, plan.indices[i], &m.poly[i], err);
		m.tiles[i].labels = m.rows[i];
		m.tiles[i].segments = m.poly[i];
		segmented = segmented && (m.poly[i] != NULL || m.tiles[i].n == 0);
		polygons = polygons || m.poly[i] != NULL;
	}
	/*
	 * Unless copy_paste will draw first, the warp is known before any
	 * pixel: the tiles are resized only where it reads the canvas.
	 */
	int s = plan.size, side = 2 * s + 2 * plan.border;
	struct tile_clip clip = {.plan = &plan, .box = {0, 0, 2 * s, 2 * s}};
	if (!(hyp.copy_paste > 0 && segmented && polygons))
		tr_mosaic_read_box(rng, &hyp, &plan, clip.box);
	for (int i = 0; i < 4 && rc == 0; i++) {
		clip.tile = i;
		rc = load_image(L, plan.indices[i], &sc->tile[i], &clip, &m.im[i], err);
		m.tiles[i].image = &m.im[i].im;
	}
	struct tr_segments segs = {0};
	struct tr_image canvas = {0};
	if (rc == 0)
		rc = tr_aug_buffer_image(&sc->canvas, 2 * s, 2 * s, &canvas, err);
	if (rc == 0) {
		/* copy_paste needs one polygon per box: all tiles or none */
		for (int i = 0; i < 4 && !segmented; i++)
			m.tiles[i].segments = NULL;
		rc = tr_mosaic_assemble_into(&plan, m.tiles, &canvas, boxes, &segs, err);
	}
	mosaic_parts_free(&m);
	if (rc == 0)
		rc = tr_aug_buffer_image(out_buf, side, side, out, err);
	if (rc == 0)
		rc = tr_mosaic_finish_into(rng, &hyp, &plan, &canvas, boxes, &segs, out, err);
	tr_segments_free(&segs);
	return rc;
}

/* A sample as __getitem__ returns it, before collate: HWC BGR image. */
struct sample {
	struct tr_image im;
	bool lent;	       /* im is a worker's scratch, not to be freed */
	struct tr_boxes boxes; /* class x y w h normalised */
	struct tr_batch_image info;
};

/*
 * Not a mosaic: load_image, letterbox (auto off, scaleup when augmenting)
 * to height x width, labels to pixel xyxy (float32 as numpy), then
 * random_perspective without border when augmenting.
 */
static int plain_sample(struct tr_loader *L, struct ut_pcg *rng, long index, int height, int width,
			struct scratch *sc, struct sample *s, struct ut_err *err)
{
	struct loaded l;
	if (load_image(L, index, &sc->tile[0], NULL, &l, err) != 0)
		return -1;
	struct tr_aug_letterbox_opts lb = tr_aug_letterbox_defaults(width);
	lb.new_height = height;
	lb.auto_rect = false;
	lb.scaleup = L->opts.augment;
	lb.stride = L->opts.stride;
	struct tr_aug_letterbox_info info;
	struct tr_image boxed;
	int rc = tr_aug_letterbox(&l.im, &lb, &boxed, &info, err);
	int h = l.im.height, w = l.im.width;
	s->info.h0 = l.h0;
	s->info.w0 = l.w0;
	s->info.ratio_h = (double)h / l.h0;
	s->info.ratio_w = (double)w / l.w0;
	loaded_free(&l);
	if (rc != 0)
		return -1;
	s->info.pad_w = info.dw;
	s->info.pad_h = info.dh;
	float *rows = NULL;
	int n = 0;
	if (label_rows(L, index, &rows, &n, err) != 0 || tr_boxes_reserve(&s->boxes, n, err) != 0) {
		free(rows);
		tr_aug_image_free(&boxed);
		return -1;
	}
	float fw = (float)(info.ratio_w * w), fh = (float)(info.ratio_h * h);
	float padw = (float)info.dw, padh = (float)info.dh;
	for (int i = 0; i < n; i++) {
		const float *in = rows + 5 * (size_t)i;
		float *o = s->boxes.rows + 5 * (size_t)i;
		o[0] = in[0];
		o[1] = fw * (in[1] - in[3] / 2) + padw;
		o[2] = fh * (in[2] - in[4] / 2) + padh;
		o[3] = fw * (in[1] + in[3] / 2) + padw;
		o[4] = fh * (in[2] + in[4] / 2) + padh;
	}
	s->boxes.n = n;
	free(rows);
	if (!L->opts.augment) {
		s->im = boxed;
		return 0;
	}
	const struct tr_loader_hyp *hyp = &L->opts.hyp;
	struct tr_aug_perspective p = {
	    .degrees = hyp->degrees,
	    .translate = hyp->translate,
	    .scale = hyp->scale,
	    .shear = hyp->shear,
	    .perspective = hyp->perspective,
	};
	double frac[TR_AUG_DRAWS], draws[TR_AUG_DRAWS];
	for (int i = 0; i < TR_AUG_DRAWS; i++)
		frac[i] = ut_pcg_uniform(rng);
	tr_aug_perspective_draws(&p, frac, draws, NULL, NULL);
	s->lent = true;
	rc = tr_aug_buffer_image(&sc->sample, width, height, &s->im, err);
	if (rc == 0)
		rc = tr_aug_random_perspective_into(&boxed, &p, draws, &s->im, s->boxes.rows,
						    &s->boxes.n, NULL, err);
	tr_aug_image_free(&boxed);
	return rc;
}

/* Mosaic, then mixup with probability hyp.mixup (a second mosaic). */
static int mosaic_sample(struct tr_loader *L, struct ut_pcg *rng, long index, struct scratch *sc,
			 struct sample *s, struct ut_err *err)
{
	s->lent = true;
	if (load_mosaic(L, rng, index, sc, &sc->sample, &s->im, &s->boxes, err) != 0)
		return -1;
	if (!(ut_pcg_uniform(rng) < L->opts.hyp.mixup))
		return 0;
	long other = (long)ut_pcg_below(rng, (uint32_t)L->n); /* random.randint(0, n - 1) */
	struct tr_image im2 = {0};
	struct tr_boxes boxes2 = {0};
	int rc = load_mosaic(L, rng, other, sc, &sc->second, &im2, &boxes2, err);
	if (rc == 0)
		rc = tr_mixup(rng, &s->im, &s->boxes, &im2, &boxes2, NULL, err);
	tr_boxes_free(&boxes2);
	return rc;
}

/* __getitem__ for position k of the epoch, shaped height x width. */
static int make_sample(struct tr_loader *L, long k, int height, int width, struct scratch *sc,
		       struct sample *s, struct ut_err *err)
{
	const struct tr_loader_opts *o = &L->opts;
	long index = L->order[k];
	struct ut_pcg rng;
	/* DDP: the position in the whole padded epoch, so ranks draw differently */
	long position = o->world > 1 ? k * o->world + o->rank : k;
	tr_sample_stream(&rng, o->seed, L->epoch, position);
	s->info.item = L->items[index];
	bool mosaic = o->augment && !o->rect && ut_pcg_uniform(&rng) < o->hyp.mosaic;
	int rc;
	if (mosaic) {
		const struct tr_data_item *it = &L->split->items[s->info.item];
		s->info.h0 = it->height;
		s->info.w0 = it->width;
		rc = mosaic_sample(L, &rng, index, sc, s, err);
	} else {
		rc = plain_sample(L, &rng, index, height, width, sc, s, err);
	}
	if (rc != 0)
		return -1;
	if (s->im.width != width || s->im.height != height)
		return ut_err_set(err, "%s: sample is %dx%d, the batch %dx%d",
				  L->split->items[s->info.item].image_path, s->im.width,
				  s->im.height, width, height);
	if (s->boxes.n > 0)
		tr_boxes_to_xywhn(s->boxes.rows, s->boxes.n, width, height);
	if (!o->augment)
		return 0;
	double u[3], gains[3];
	for (int i = 0; i < 3; i++)
		u[i] = 2 * ut_pcg_uniform(&rng) - 1; /* np.random.uniform(-1, 1, 3) */
	if (o->hyp.hsv_h != 0 || o->hyp.hsv_s != 0 || o->hyp.hsv_v != 0) {
		tr_aug_hsv_gains(o->hyp.hsv_h, o->hyp.hsv_s, o->hyp.hsv_v, u, gains);
		if (tr_aug_hsv(&s->im, gains, err) != 0)
			return -1;
	}
	tr_flip_random(&rng, o->hyp.flipud, o->hyp.fliplr, &s->im, s->boxes.rows, s->boxes.n);
	return 0;
}

/* --- batches --- */

/* HWC BGR -> CHW RGB (YOLOv5: img.transpose((2, 0, 1))[::-1]). */
static void to_chw_rgb(const struct tr_image *im, uint8_t *dst)
{
	size_t plane = (size_t)im->width * im->height;
	for (int c = 0; c < 3; c++) {
		uint8_t *d = dst + (size_t)c * plane;
		const uint8_t *s = im->data + (2 - c);
		for (size_t i = 0; i < plane; i++)
			d[i] = s[3 * i];
	}
}

static int append_targets(struct slot *slot, int image, const struct tr_boxes *boxes,
			  struct ut_err *err)
{
	struct tr_batch *b = &slot->batch;
	if (b->nt + (size_t)boxes->n > slot->targets_cap) {
		size_t cap = 2 * (b->nt + (size_t)boxes->n);
		float *t = realloc(b->targets, sizeof(float) * 6 * cap);
		if (t == NULL)
			return ut_err_set(err, "loader: out of memory for %zu targets", cap);
		b->targets = t;
		slot->targets_cap = cap;
	}
	for (int i = 0; i < boxes->n; i++) {
		float *t = b->targets + 6 * b->nt++;
		t[0] = (float)image;
		memcpy(t + 1, boxes->rows + 5 * (size_t)i, sizeof(float) * 5);
	}
	return 0;
}

/*
 * The shape of the batch of positions [first, last): imgsz square, its rect
 * batch's shape, or (DDP with rect) the largest rect shape of its images.
 */
static void batch_dims(const struct tr_loader *L, long number, long first, long last, int *height,
		       int *width)
{
	const struct tr_loader_opts *o = &L->opts;
	*height = *width = o->imgsz;
	if (!o->rect)
		return;
	if (L->sampler == NULL) {
		*height = L->batch_shape[2 * number];
		*width = L->batch_shape[2 * number + 1];
		return;
	}
	*height = *width = 0;
	for (long k = first; k < last; k++) {
		long shape = L->order[k] / o->batch_size;
		int h = L->batch_shape[2 * shape], w = L->batch_shape[2 * shape + 1];
		*height = h > *height ? h : *height;
		*width = w > *width ? w : *width;
	}
}

/* Make batch `number` into slot (collate_fn). */
static int build_batch(struct tr_loader *L, long number, struct slot *slot, struct scratch *sc,
		       struct ut_err *err)
{
	struct tr_batch *b = &slot->batch;
	long first = number * L->opts.batch_size;
	long last =
	    first + L->opts.batch_size < L->n_epoch ? first + L->opts.batch_size : L->n_epoch;
	b->epoch = L->epoch;
	b->number = number;
	b->n = (int)(last - first);
	b->nt = 0;
	batch_dims(L, number, first, last, &b->height, &b->width);
	size_t pixels = (size_t)b->height * b->width * 3;
	for (long k = first; k < last; k++) {
		if (atomic_load(&L->stop))
			return ut_err_set(err, "loader: stopped");
		struct sample s;
		memset(&s, 0, sizeof(s));
		int i = (int)(k - first);
		int rc = make_sample(L, k, b->height, b->width, sc, &s, err);
		if (rc == 0) {
			to_chw_rgb(&s.im, b->images + (size_t)i * pixels);
			b->info[i] = s.info;
			rc = append_targets(slot, i, &s.boxes, err);
		}
		if (!s.lent)
			tr_aug_image_free(&s.im);
		tr_boxes_free(&s.boxes);
		if (rc != 0)
			return -1;
	}
	return 0;
}

/* --- threads --- */

static void *worker_main(void *arg)
{
	struct worker *self = arg;
	struct tr_loader *L = self->L;
	pthread_mutex_lock(&L->lock);
	for (;;) {
		if (atomic_load(&L->stop) || L->next_claim >= L->n_batches)
			break;
		if (L->next_claim >= L->consumed + L->opts.prefetch) {
			pthread_cond_wait(&L->room, &L->lock);
			continue;
		}
		long number = L->next_claim++;
		struct slot *slot = &L->slots[number % L->n_slots];
		slot->number = number;
		slot->state = SLOT_BUSY;
		pthread_mutex_unlock(&L->lock);
		struct ut_err err;
		int rc = build_batch(L, number, slot, &self->scratch, &err);
		pthread_mutex_lock(&L->lock);
		if (rc != 0)
			slot->err = err;
		slot->state = rc == 0 ? SLOT_READY : SLOT_FAILED;
		pthread_cond_broadcast(&L->ready);
	}
	pthread_mutex_unlock(&L->lock);
	return NULL;
}

void tr_loader_stop(struct tr_loader *L)
{
	if (L == NULL || L->threads == NULL)
		return;
	pthread_mutex_lock(&L->lock);
	atomic_store(&L->stop, true);
	pthread_cond_broadcast(&L->room);
	pthread_mutex_unlock(&L->lock);
	for (int i = 0; i < L->n_threads; i++)
		pthread_join(L->threads[i], NULL);
	free(L->threads);
	L->threads = NULL;
	L->n_threads = 0;
}

/* The epoch's order: identity (rect, no shuffle), a shuffle, or weighted draws. */
static int epoch_order(struct tr_loader *L, long epoch, const double *weights, struct ut_err *err)
{
	struct ut_pcg rng;
	tr_sample_stream(&rng, L->opts.seed, epoch, -1);
	L->pool = NULL;
	if (L->sampler != NULL) {
		tr_sampler_set_epoch(L->sampler, epoch);
		memcpy(L->order, tr_sampler_indices(L->sampler), sizeof(long) * (size_t)L->n_epoch);
		return 0;
	}
	if (weights != NULL) {
		/* random.choices: bisect_right(cum_weights, random() * total) */
		double *cum = malloc(sizeof(double) * (size_t)L->n);
		if (cum == NULL)
			return ut_err_set(err, "loader: out of memory for %ld image weights", L->n);
		double total = 0;
		for (long i = 0; i < L->n; i++) {
			if (!(weights[i] >= 0 && isfinite(weights[i]))) {
				free(cum);
				return ut_err_set(err, "loader: image weight %ld is %g", i,
						  weights[i]);
			}
			total += weights[i];
			cum[i] = total;
		}
		if (!(total > 0) || !isfinite(total)) {
			free(cum);
			return ut_err_set(err, "loader: image weights sum to %g", total);
		}
		for (long k = 0; k < L->n; k++) {
			double x = ut_pcg_uniform(&rng) * total;
			long lo = 0, hi = L->n - 1;
			while (lo < hi) {
				long mid = lo + (hi - lo) / 2;
				if (x < cum[mid])
					hi = mid;
				else
					lo = mid + 1;
			}
			L->order[k] = lo;
		}
		free(cum);
		L->pool = L->order;
		return 0;
	}
	for (long i = 0; i < L->n; i++)
		L->order[i] = i;
	if (L->opts.shuffle && !L->opts.rect)
		for (long i = L->n - 1; i > 0; i--) {
			long j = (long)ut_pcg_below(&rng, (uint32_t)(i + 1));
			long swap = L->order[i];
			L->order[i] = L->order[j];
			L->order[j] = swap;
		}
	return 0;
}

int tr_loader_start_epoch(struct tr_loader *L, long epoch, const double *image_weights,
			  struct ut_err *err)
{
	tr_loader_stop(L);
	L->started = false;
	if (epoch < 0)
		return ut_err_set(err, "loader: epoch %ld is negative", epoch);
	if (image_weights != NULL && L->opts.rect)
		return ut_err_set(err, "loader: image weights need a loader without rect "
				       "(YOLOv5 turns rect off with --image-weights)");
	if (image_weights != NULL && L->sampler != NULL)
		return ut_err_set(err, "--image-weights argument is not compatible with DDP "
				       "training (YOLOv5 refuses it)");
	if (L->n > (long)UINT32_MAX)
		return ut_err_set(err, "loader: %ld images are too many", L->n);
	if (epoch_order(L, epoch, image_weights, err) != 0)
		return -1;
	L->epoch = epoch;
	L->next_claim = 0;
	L->consumed = 0;
	L->failed = false;
	atomic_store(&L->stop, false);
	for (int i = 0; i < L->n_slots; i++) {
		L->slots[i].number = -1;
		L->slots[i].state = SLOT_EMPTY;
	}
	L->started = true;
	if (L->opts.workers == 0)
		return 0;
	L->threads = calloc((size_t)L->opts.workers, sizeof(pthread_t));
	if (L->threads == NULL)
		return ut_err_set(err, "loader: out of memory for %d workers", L->opts.workers);
	for (int i = 0; i < L->opts.workers; i++) {
		L->workers[i].L = L;
		int rc = pthread_create(&L->threads[i], NULL, worker_main, &L->workers[i]);
		if (rc != 0) {
			tr_loader_stop(L);
			L->started = false;
			return ut_err_set(err, "loader: cannot start worker %d: %s", i,
					  strerror(rc));
		}
		L->n_threads++;
	}
	return 0;
}

int tr_loader_next(struct tr_loader *L, const struct tr_batch **batch, struct ut_err *err)
{
	*batch = NULL;
	if (!L->started)
		return ut_err_set(err, "loader: no epoch started");
	if (L->failed) {
		*err = L->fail_err;
		return -1;
	}
	if (L->consumed >= L->n_batches)
		return 0;
	long number = L->consumed;
	struct slot *slot = &L->slots[number % L->n_slots];
	if (L->opts.workers == 0) {
		slot->number = number;
		if (build_batch(L, number, slot, &L->workers[0].scratch, &slot->err) != 0)
			slot->state = SLOT_FAILED;
		else
			slot->state = SLOT_READY;
	} else {
		pthread_mutex_lock(&L->lock);
		while (slot->number != number ||
		       (slot->state != SLOT_READY && slot->state != SLOT_FAILED))
			pthread_cond_wait(&L->ready, &L->lock);
		pthread_mutex_unlock(&L->lock);
	}
	if (slot->state == SLOT_FAILED) {
		L->fail_err = slot->err;
		L->failed = true;
		tr_loader_stop(L);
		*err = L->fail_err;
		return -1;
	}
	pthread_mutex_lock(&L->lock);
	L->consumed++;
	pthread_cond_broadcast(&L->room);
	pthread_mutex_unlock(&L->lock);
	*batch = &slot->batch;
	return 1;
}

/* --- image weights --- */

/*
 * numpy's pairwise sum of a contiguous float64 row as ndarray.sum uses
 * it: sequential below 8 values, 8 interleaved partial sums up to 128,
 * halves above, so the weights equal YOLOv5's to the last bit.
 */
static double np_sum(const double *a, long n)
{
	if (n < 8) {
		double s = 0.;
		for (long i = 0; i < n; i++)
			s += a[i];
		return s;
	}
	if (n <= 128) {
		double r[8];
		for (int j = 0; j < 8; j++)
			r[j] = a[j];
		long i;
		for (i = 8; i < n - n % 8; i += 8)
			for (int j = 0; j < 8; j++)
				r[j] += a[i + j];
		double s = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
		for (; i < n; i++)
			s += a[i];
		return s;
	}
	long half = n / 2;
	half -= half % 8;
	return np_sum(a, half) + np_sum(a + half, n - half);
}

void tr_labels_class_weights(const struct tr_data_split *split, int nc, bool single_cls,
			     double *class_weights)
{
	for (int c = 0; c < nc; c++)
		class_weights[c] = 0;
	for (int i = 0; i < split->n_items; i++) {
		const struct tr_data_labels *lab = &split->items[i].labels;
		for (int j = 0; j < lab->n_labels; j++) {
			int c = single_cls ? 0 : lab->labels[j].cls;
			if (c >= 0 && c < nc)
				class_weights[c] += 1;
		}
	}
	for (int c = 0; c < nc; c++)
		class_weights[c] = 1.0 / (class_weights[c] > 0 ? class_weights[c] : 1.0);
	double sum = np_sum(class_weights, nc);
	for (int c = 0; c < nc; c++)
		class_weights[c] /= sum;
}

void tr_labels_image_weights(const struct tr_data_split *split, int nc, bool single_cls,
			     const double *class_weights, double *image_weights)
{
	double *row = malloc(sizeof(double) * (size_t)(nc > 0 ? nc : 1));
	for (int i = 0; i < split->n_items; i++) {
		const struct tr_data_labels *lab = &split->items[i].labels;
		if (row == NULL) { /* out of memory: the plain sum, same value to rounding */
			double w = 0;
			for (int j = 0; j < lab->n_labels; j++) {
				int c = single_cls ? 0 : lab->labels[j].cls;
				w += c >= 0 && c < nc ? class_weights[c] : 0;
			}
			image_weights[i] = w;
			continue;
		}
		/* (class_weights * bincount(classes, minlength=nc)).sum(1) */
		for (int c = 0; c < nc; c++)
			row[c] = 0;
		for (int j = 0; j < lab->n_labels; j++) {
			int c = single_cls ? 0 : lab->labels[j].cls;
			if (c >= 0 && c < nc)
				row[c] += 1;
		}
		for (int c = 0; c < nc; c++)
			row[c] *= class_weights[c];
		image_weights[i] = np_sum(row, nc);
	}
	free(row);
}
