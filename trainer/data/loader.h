/*
 * loader.h - YOLOv5 v7.0's LoadImagesAndLabels + DataLoader as yolo-train
 * uses them: batches of uint8 images and YOLO targets, made by worker
 * threads into a bounded queue, identical whatever the number of workers.
 *
 *	struct tr_loader_opts opts = tr_loader_train_defaults(320, 16);  // or _val_
 *	opts.hyp = ...; opts.seed = seed; opts.workers = 2;
 *	struct tr_loader *loader;
 *	tr_loader_create(&split, &opts, &loader, &err);
 *	for (epoch ...) {
 *		tr_loader_start_epoch(loader, epoch, NULL, &err);  // or image weights
 *		const struct tr_batch *batch;
 *		int rc;
 *		while ((rc = tr_loader_next(loader, &batch, &err)) == 1)
 *			... batch->images [n, 3, h, w] RGB, batch->targets [nt][6] ...
 *		if (rc < 0) ... err names the image ...
 *	}
 *	tr_loader_free(loader);   // stops and joins the workers
 *
 * Training (augment): with probability hyp.mosaic a sample is a 4-image
 * mosaic (then random_perspective with the mosaic border, mixup with
 * probability hyp.mixup), else load_image + letterbox to the batch shape
 * + random_perspective; then HSV gains, flipud, fliplr (mosaic.h gives the
 * draw order). Validation (no augment): load_image (INTER_AREA when
 * shrinking, as cv2 in YOLOv5) and letterbox (auto off, scaleup off) to the
 * rectangular batch shape ceil(shape * imgsz / stride + pad) * stride of
 * the batch's images, which are sorted by aspect ratio as YOLOv5 sorts them.
 *
 * Every random draw of sample k of an epoch comes from the PCG stream
 * (seed, epoch, k) (tr_sample_stream), the epoch's shuffle (or image-weight
 * choice) from the stream (seed, epoch, -1): a batch's bytes depend on
 * seed, epoch and position only.
 *
 * DDP (world > 1): rank `rank` walks its DistributedSampler index list
 * (sampler.h: torch's randperm(seed 0 + epoch) order when shuffling, padded,
 * every world-th position from rank), in batches of its own batch_size
 * (YOLOv5: batch_size // WORLD_SIZE). Sample k of the rank draws from the
 * stream (seed, epoch, k * world + rank): keyed by the sample's position in
 * the whole padded epoch, so the ranks draw differently and the bytes do
 * not depend on which rank or thread makes them. With --rect (no shuffle)
 * a rank's batch takes the largest rect shape of its images (YOLOv5 would
 * stack images of different shapes and fail). Image weights are refused.
 */
#ifndef TR_LOADER_H
#define TR_LOADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dataset.h"
#include "formula.h"
#include "ut.h"

/* The augmentation hyperparameters the loader reads (hyp.*.yaml names). */
struct tr_loader_hyp {
	double hsv_h, hsv_s, hsv_v;
	double degrees, translate, scale, shear, perspective;
	double flipud, fliplr, mosaic, mixup, copy_paste;
};

struct tr_loader_opts {
	int imgsz;	/* image size, a multiple of stride */
	int stride;	/* the model's largest stride (32) */
	int batch_size; /* >= 1; the last batch of an epoch may be smaller */
	int workers;	/* threads making samples; 0 = in the caller's thread */
	int prefetch;	/* ready batches the workers may run ahead; >= 1 */
	uint64_t seed;
	bool augment;	 /* training augmentations per hyp */
	bool rect;	 /* rectangular batches (validation, --rect) */
	double pad;	 /* rect padding in strides: 0.5 for validation, 0 for --rect */
	bool shuffle;	 /* a new order every epoch (off with rect, as YOLOv5) */
	bool cache_ram;	 /* --cache ram: keep every load_image result in memory */
	bool single_cls; /* --single-cls: every label is class 0 */
	int world, rank; /* DDP: world > 1 ranks, this one rank (0, 0: one process) */
	struct tr_loader_hyp hyp;
};

/* augment, shuffle, workers 2, prefetch 4, stride 32. */
struct tr_loader_opts tr_loader_train_defaults(int imgsz, int batch_size);
/* rect, pad 0.5, no augment, no shuffle, workers 2, prefetch 4, stride 32. */
struct tr_loader_opts tr_loader_val_defaults(int imgsz, int batch_size);

/* What val.py needs to map a sample's boxes back to its original image. */
struct tr_batch_image {
	long item;		 /* index in split->items */
	int h0, w0;		 /* original size (after EXIF orientation) */
	double ratio_h, ratio_w; /* shapes[1][0]: letterboxed / original */
	double pad_w, pad_h;	 /* shapes[1][1]: letterbox padding (dw, dh) */
};

struct tr_batch {
	long epoch, number; /* number: 0 .. tr_loader_num_batches - 1 */
	int n;		    /* images in this batch */
	int height, width;  /* all images of the batch have this size */
	uint8_t *images;    /* [n, 3, height, width], RGB, 0..255 */
	float *targets;	    /* [nt][6]: image in batch, class, x, y, w, h normalised */
	size_t nt;
	struct tr_batch_image *info; /* [n] */
};

struct tr_loader; /* opaque */

/*
 * A loader over the usable images of a split (which must outlive it).
 * Checks the options (err names the bad one). Starts no thread yet.
 */
int tr_loader_create(const struct tr_data_split *split, const struct tr_loader_opts *opts,
		     struct tr_loader **out, struct ut_err *err);
/* Batches per epoch: ceil(n_items / batch_size) (DDP: of the rank's num_samples). */
long tr_loader_num_batches(const struct tr_loader *loader);
/* The largest height and width a batch can have (for tr_model_plan). */
void tr_loader_max_shape(const struct tr_loader *loader, int *height, int *width);

/*
 * Begin epoch `epoch` (stopping an unfinished one): the epoch's order
 * (shuffled, or with image_weights != NULL, n_items weighted draws with
 * replacement as random.choices, --image-weights; refused under DDP), then
 * the workers start. DDP: the sampler's set_epoch(epoch) order.
 */
int tr_loader_start_epoch(struct tr_loader *loader, long epoch, const double *image_weights,
			  struct ut_err *err);
/*
 * The epoch's next batch, in order: 1 with *batch valid until the next call
 * (or tr_loader_stop / _free), 0 after the last one, -1 when an image
 * could not be read or memory ran out (err names the image).
 */
int tr_loader_next(struct tr_loader *loader, const struct tr_batch **batch, struct ut_err *err);
/*
 * A batch's images as the network takes them, on the host: floats / 255,
 * [n, 3, height, width] (the backends' images_to_float does the same).
 */
static inline void tr_batch_images_to_float(const struct tr_batch *batch, float *out)
{
	size_t count = (size_t)batch->n * 3 * (size_t)batch->height * (size_t)batch->width;
	for (size_t i = 0; i < count; i++)
		out[i] = tr_f_u8_to_float(batch->images[i]);
}

/* Stop the workers of the current epoch and join them. */
void tr_loader_stop(struct tr_loader *loader);
void tr_loader_free(struct tr_loader *loader);

/*
 * utils.general.labels_to_class_weights: per class 1 / count (count 0 taken
 * as 1), normalised to sum 1, over every label of the split (nc entries).
 */
void tr_labels_class_weights(const struct tr_data_split *split, int nc, bool single_cls,
			     double *class_weights);
/*
 * labels_to_image_weights: per image the sum over its labels of
 * class_weights[class] (n_items entries).
 */
void tr_labels_image_weights(const struct tr_data_split *split, int nc, bool single_cls,
			     const double *class_weights, double *image_weights);

#endif
