/*
 * gen_dataset.h - a synthetic YOLO dataset, so the project trains end to
 * end without downloading anything: filled and outlined rectangles,
 * ellipses and triangles on noisy, textured backgrounds, with boxes that
 * are exactly the bounds of the drawn pixels.
 *
 *	struct tr_gen_opts opts = tr_gen_defaults();
 *	opts.train = 200; opts.val = 50; opts.size = 256; opts.seed = 1;
 *	if (tr_gen_dataset("data/shapes", &opts, &err) != 0) ...
 *
 * writes data/shapes/data.yaml, images/{train,val}/NNNNNN.png and
 * labels/{train,val}/NNNNNN.txt (class x_center y_center width height,
 * normalised, 6 decimals). Every image is a pure function of (seed, split,
 * index, size, classes): the same arguments give the same bytes.
 */
#ifndef TR_GEN_DATASET_H
#define TR_GEN_DATASET_H

#include <stdint.h>

#include "augment.h"
#include "ut.h"

/* Classes: 0..2 filled shapes, 3..5 the same shapes as outlines. */
enum { TR_GEN_MAX_CLASSES = 6, TR_GEN_MAX_OBJECTS = 4 };

enum tr_gen_split { TR_GEN_TRAIN, TR_GEN_VAL };

struct tr_gen_opts {
	int train, val; /* images per split */
	int size;	/* square images, 32..4096 pixels */
	int classes;	/* 1..TR_GEN_MAX_CLASSES */
	uint64_t seed;
};

/* train 64, val 16, size 256, classes 3, seed 0. */
struct tr_gen_opts tr_gen_defaults(void);

/* The name written to data.yaml for a class. */
const char *tr_gen_class_name(int cls);

/* One drawn object: its class and pixel bounds (x2, y2 exclusive). */
struct tr_gen_object {
	int cls;
	int x1, y1, x2, y2;
};

/*
 * One generated image. object_map has size x size bytes: 0 for background,
 * k + 1 where object k was drawn (so tests can check tightness).
 */
struct tr_gen_sample {
	struct tr_image image; /* BGR */
	uint8_t *object_map;
	int n;
	struct tr_gen_object objects[TR_GEN_MAX_OBJECTS];
};

/* Draw image `index` of `split`; free with tr_gen_sample_free. */
int tr_gen_sample(uint64_t seed, enum tr_gen_split split, long index, int size, int classes,
		  struct tr_gen_sample *out, struct ut_err *err);
void tr_gen_sample_free(struct tr_gen_sample *s);

/*
 * The YOLO label text of a sample (one line per object), into buf;
 * returns the length, or -1 if it does not fit.
 */
int tr_gen_format_labels(const struct tr_gen_sample *s, char *buf, size_t size);

/* 8-bit RGB PNG from a BGR image, without timestamps (same pixels, same bytes). */
int tr_gen_write_png(const char *path, const struct tr_image *im, struct ut_err *err);
/* Read an 8-bit RGB PNG (as written above) into a BGR image. */
int tr_gen_read_png(const char *path, struct tr_image *im, struct ut_err *err);

/* Write the whole dataset under out_dir (created if missing). */
int tr_gen_dataset(const char *out_dir, const struct tr_gen_opts *opts, struct ut_err *err);

#endif
