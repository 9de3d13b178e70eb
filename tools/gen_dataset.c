/*
 * gen_dataset.c - the synthetic shapes dataset (see gen_dataset.h).
 *
 * Objects never overlap (placements that would are redrawn), so the box
 * computed from an object's own pixels is also what is visible. Pixels are
 * tested at their centres; the box is then the bounds of the pixels that
 * passed, so it is tight by construction.
 */
#include "gen_dataset.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <png.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pcg.h"

enum shape_kind { SHAPE_RECT, SHAPE_ELLIPSE, SHAPE_TRIANGLE };

static const char *const class_names[TR_GEN_MAX_CLASSES] = {
    "rectangle", "ellipse", "triangle", "rectangle_outline", "ellipse_outline", "triangle_outline",
};

struct tr_gen_opts tr_gen_defaults(void)
{
	struct tr_gen_opts o = {.train = 64, .val = 16, .size = 256, .classes = 3, .seed = 0};
	return o;
}

const char *tr_gen_class_name(int cls)
{
	return cls >= 0 && cls < TR_GEN_MAX_CLASSES ? class_names[cls] : "unknown";
}

static uint64_t mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* One stream per image: (seed, split, index). */
static void image_stream(struct ut_pcg *rng, uint64_t seed, enum tr_gen_split split, long index)
{
	uint64_t key = mix64(seed ^ 0x67656e6461746173ULL); /* "gendatas" */
	key = mix64(key ^ (uint64_t)split);
	key = mix64(key ^ (uint64_t)index);
	ut_pcg_seed(rng, mix64(key + 1), key | (1ULL << 62));
}

/* Uniform integer in [lo, hi]. */
static int rand_range(struct ut_pcg *rng, int lo, int hi)
{
	return lo + (int)ut_pcg_below(rng, (uint32_t)(hi - lo + 1));
}

static uint8_t clamp_u8(double v)
{
	return v < 0 ? 0 : v > 255 ? 255 : (uint8_t)lrint(v);
}

/*
 * Background: a muted base colour, a linear gradient, smooth value noise
 * on a coarse grid (bilinear) and fine per-pixel noise, per channel.
 */
static void draw_background(struct ut_pcg *rng, struct tr_image *im)
{
	enum { GRID = 9 };
	int size = im->width;
	double base[3], grad_x[3], grad_y[3], grid[3][GRID][GRID];
	for (int c = 0; c < 3; c++) {
		base[c] = rand_range(rng, 70, 180);
		grad_x[c] = (ut_pcg_uniform(rng) - 0.5) * 40;
		grad_y[c] = (ut_pcg_uniform(rng) - 0.5) * 40;
		for (int gy = 0; gy < GRID; gy++)
			for (int gx = 0; gx < GRID; gx++)
				grid[c][gy][gx] = (ut_pcg_uniform(rng) - 0.5) * 40;
	}
	double cell = (double)size / (GRID - 1);
	for (int y = 0; y < size; y++) {
		double fy = y / cell;
		int gy = (int)fy < GRID - 2 ? (int)fy : GRID - 2;
		double ty = fy - gy;
		for (int x = 0; x < size; x++) {
			double fx = x / cell;
			int gx = (int)fx < GRID - 2 ? (int)fx : GRID - 2;
			double tx = fx - gx;
			uint8_t *px = im->data + ((size_t)y * size + x) * 3;
			for (int c = 0; c < 3; c++) {
				double smooth =
				    (grid[c][gy][gx] * (1 - tx) + grid[c][gy][gx + 1] * tx) *
					(1 - ty) +
				    (grid[c][gy + 1][gx] * (1 - tx) +
				     grid[c][gy + 1][gx + 1] * tx) *
					ty;
				double v = base[c] + grad_x[c] * ((double)x / size - 0.5) +
					   grad_y[c] * ((double)y / size - 0.5) + smooth +
					   (ut_pcg_uniform(rng) - 0.5) * 16;
				px[c] = clamp_u8(v);
			}
		}
	}
}

/* A shape in its box: what is needed to test a pixel centre. */
struct shape {
	enum shape_kind kind;
	bool outline;
	double x0, y0, w, h; /* the box the shape is inscribed in */
	double thickness;    /* outlines only */
	double tri[3][2];    /* triangle vertices */
};

/* Signed distance-like test: > 0 inside an edge's half plane (counter-clockwise). */
static double edge_distance(const double a[2], const double b[2], double x, double y)
{
	double dx = b[0] - a[0], dy = b[1] - a[1];
	double len = sqrt(dx * dx + dy * dy);
	return ((x - a[0]) * dy - (y - a[1]) * dx) / (len > 0 ? len : 1);
}

static bool inside_triangle(const struct shape *s, double x, double y, double inset)
{
	double d[3];
	for (int i = 0; i < 3; i++)
		d[i] = edge_distance(s->tri[i], s->tri[(i + 1) % 3], x, y);
	/* accept either winding */
	bool pos = d[0] >= inset && d[1] >= inset && d[2] >= inset;
	bool neg = d[0] <= -inset && d[1] <= -inset && d[2] <= -inset;
	return pos || neg;
}

static bool inside_ellipse(const struct shape *s, double x, double y, double inset)
{
	double a = s->w / 2 - inset, b = s->h / 2 - inset;
	if (a <= 0 || b <= 0)
		return false;
	double u = (x - (s->x0 + s->w / 2)) / a, v = (y - (s->y0 + s->h / 2)) / b;
	return u * u + v * v <= 1;
}

static bool inside_rect(const struct shape *s, double x, double y, double inset)
{
	return x >= s->x0 + inset && x < s->x0 + s->w - inset && y >= s->y0 + inset &&
	       y < s->y0 + s->h - inset;
}

static bool inside_shape(const struct shape *s, double x, double y)
{
	bool (*inside)(const struct shape *, double, double, double) =
	    s->kind == SHAPE_RECT      ? inside_rect
	    : s->kind == SHAPE_ELLIPSE ? inside_ellipse
				       : inside_triangle;
	if (!inside(s, x, y, 0))
		return false;
	return !s->outline || !inside(s, x, y, s->thickness);
}

/* A triangle with one side on a box edge and the apex on the opposite one. */
static void make_triangle(struct ut_pcg *rng, struct shape *s)
{
	double apex = 0.15 + 0.7 * ut_pcg_uniform(rng);
	double x0 = s->x0, y0 = s->y0, x1 = s->x0 + s->w, y1 = s->y0 + s->h;
	switch (ut_pcg_below(rng, 4)) {
	case 0: /* apex up */
		s->tri[0][0] = x0, s->tri[0][1] = y1, s->tri[1][0] = x1, s->tri[1][1] = y1;
		s->tri[2][0] = x0 + apex * s->w, s->tri[2][1] = y0;
		break;
	case 1: /* apex down */
		s->tri[0][0] = x0, s->tri[0][1] = y0, s->tri[1][0] = x1, s->tri[1][1] = y0;
		s->tri[2][0] = x0 + apex * s->w, s->tri[2][1] = y1;
		break;
	case 2: /* apex left */
		s->tri[0][0] = x1, s->tri[0][1] = y0, s->tri[1][0] = x1, s->tri[1][1] = y1;
		s->tri[2][0] = x0, s->tri[2][1] = y0 + apex * s->h;
		break;
	default: /* apex right */
		s->tri[0][0] = x0, s->tri[0][1] = y0, s->tri[1][0] = x0, s->tri[1][1] = y1;
		s->tri[2][0] = x1, s->tri[2][1] = y0 + apex * s->h;
		break;
	}
}

static bool boxes_overlap(const int a[4], const struct tr_gen_object *b, int gap)
{
	return a[0] < b->x2 + gap && b->x1 < a[2] + gap && a[1] < b->y2 + gap && b->y1 < a[3] + gap;
}

/* Choose a box for a new object that keeps clear of the others (false: none found). */
static bool place_box(struct ut_pcg *rng, int size, const struct tr_gen_sample *s, int box[4])
{
	for (int attempt = 0; attempt < 20; attempt++) {
		int w = rand_range(rng, (int)(0.15 * size), (int)(0.45 * size));
		int h = rand_range(rng, (int)(0.15 * size), (int)(0.45 * size));
		box[0] = rand_range(rng, 0, size - w);
		box[1] = rand_range(rng, 0, size - h);
		box[2] = box[0] + w;
		box[3] = box[1] + h;
		bool clear = true;
		for (int i = 0; i < s->n && clear; i++)
			clear = !boxes_overlap(box, &s->objects[i], 3);
		if (clear)
			return true;
	}
	return false;
}

/*
 * Saturated colour: each channel near 0 or near 255, never all alike, and
 * (within a few tries) far from the background under the object's centre.
 */
static void shape_colour(struct ut_pcg *rng, const uint8_t background[3], int colour[3])
{
	for (int attempt = 0; attempt < 8; attempt++) {
		uint32_t pattern = 1 + ut_pcg_below(rng, 6); /* 1..6: neither black nor white */
		int distance = 0;
		for (int c = 0; c < 3; c++) {
			colour[c] =
			    (pattern >> c) & 1 ? rand_range(rng, 215, 255) : rand_range(rng, 0, 40);
			distance += abs(colour[c] - background[c]);
		}
		if (distance >= 260)
			return;
	}
}

/* Paint one object, record its pixel bounds; false if nothing was drawn. */
static bool draw_object(struct ut_pcg *rng, struct tr_gen_sample *s, int cls, const int box[4])
{
	struct shape sh = {
	    .kind = (enum shape_kind)(cls % 3),
	    .outline = cls >= 3,
	    .x0 = box[0],
	    .y0 = box[1],
	    .w = box[2] - box[0],
	    .h = box[3] - box[1],
	};
	sh.thickness = fmax(2.0, fmin(sh.w, sh.h) / 7);
	if (sh.kind == SHAPE_TRIANGLE)
		make_triangle(rng, &sh);
	int size = s->image.width, id = s->n + 1;
	int colour[3];
	int cx = (box[0] + box[2]) / 2, cy = (box[1] + box[3]) / 2;
	shape_colour(rng, s->image.data + ((size_t)cy * size + cx) * 3, colour);
	struct tr_gen_object *o = &s->objects[s->n];
	*o = (struct tr_gen_object){.cls = cls, .x1 = INT_MAX, .y1 = INT_MAX, .x2 = -1, .y2 = -1};
	for (int y = box[1]; y < box[3]; y++)
		for (int x = box[0]; x < box[2]; x++) {
			if (!inside_shape(&sh, x + 0.5, y + 0.5))
				continue;
			uint8_t *px = s->image.data + ((size_t)y * size + x) * 3;
			for (int c = 0; c < 3; c++)
				px[c] = clamp_u8(colour[c] + (ut_pcg_uniform(rng) - 0.5) * 20);
			s->object_map[(size_t)y * size + x] = (uint8_t)id;
			o->x1 = x < o->x1 ? x : o->x1;
			o->y1 = y < o->y1 ? y : o->y1;
			o->x2 = x + 1 > o->x2 ? x + 1 : o->x2;
			o->y2 = y + 1 > o->y2 ? y + 1 : o->y2;
		}
	return o->x2 > 0;
}

int tr_gen_sample(uint64_t seed, enum tr_gen_split split, long index, int size, int classes,
		  struct tr_gen_sample *out, struct ut_err *err)
{
	memset(out, 0, sizeof(*out));
	if (size < 32 || size > 4096 || classes < 1 || classes > TR_GEN_MAX_CLASSES)
		return ut_err_set(
		    err, "gen-dataset: size %d (32..4096) or classes %d (1..%d) out of range", size,
		    classes, TR_GEN_MAX_CLASSES);
	if (tr_aug_image_alloc(&out->image, size, size, err) != 0)
		return -1;
	out->object_map = calloc((size_t)size * size, 1);
	if (out->object_map == NULL) {
		tr_gen_sample_free(out);
		return ut_err_set(err, "out of memory for a %dx%d object map", size, size);
	}
	struct ut_pcg rng;
	image_stream(&rng, seed, split, index);
	draw_background(&rng, &out->image);
	int wanted = rand_range(&rng, 1, TR_GEN_MAX_OBJECTS);
	for (int i = 0; i < wanted; i++) {
		int box[4];
		int cls = (int)ut_pcg_below(&rng, (uint32_t)classes);
		if (!place_box(&rng, size, out, box))
			break;
		if (draw_object(&rng, out, cls, box))
			out->n++;
	}
	return 0;
}

void tr_gen_sample_free(struct tr_gen_sample *s)
{
	tr_aug_image_free(&s->image);
	free(s->object_map);
	memset(s, 0, sizeof(*s));
}

int tr_gen_format_labels(const struct tr_gen_sample *s, char *buf, size_t size)
{
	size_t used = 0;
	double side = s->image.width;
	if (size > 0)
		buf[0] = '\0';
	for (int i = 0; i < s->n; i++) {
		const struct tr_gen_object *o = &s->objects[i];
		int len = snprintf(buf + used, size - used, "%d %.6f %.6f %.6f %.6f\n", o->cls,
				   (o->x1 + o->x2) / 2.0 / side, (o->y1 + o->y2) / 2.0 / side,
				   (o->x2 - o->x1) / side, (o->y2 - o->y1) / side);
		if (len < 0 || (size_t)len >= size - used)
			return -1;
		used += (size_t)len;
	}
	return (int)used;
}

/* --- PNG --- */

/* libpng reports errors by longjmp; this keeps the message for ut_err. */
struct png_error_text {
	char msg[256];
};

static void on_png_error(png_structp png, png_const_charp msg)
{
	struct png_error_text *f = png_get_error_ptr(png);
	snprintf(f->msg, sizeof(f->msg), "%s", msg);
	png_longjmp(png, 1);
}

static void on_png_warning(png_structp png, png_const_charp msg)
{
	(void)png;
	(void)msg;
}

/* Write rows (RGB, packed) to an open file; -1 with f->msg on failure. */
static int write_png_rows(FILE *fp, png_bytep *rows, int width, int height,
			  struct png_error_text *f)
{
	png_structp png =
	    png_create_write_struct(PNG_LIBPNG_VER_STRING, f, on_png_error, on_png_warning);
	png_infop info = png != NULL ? png_create_info_struct(png) : NULL;
	if (info == NULL) {
		png_destroy_write_struct(&png, NULL);
		snprintf(f->msg, sizeof(f->msg), "out of memory");
		return -1;
	}
	if (setjmp(png_jmpbuf(png))) {
		png_destroy_write_struct(&png, &info);
		return -1;
	}
	png_init_io(png, fp);
	png_set_compression_level(png, 6);
	png_set_IHDR(png, info, (png_uint_32)width, (png_uint_32)height, 8, PNG_COLOR_TYPE_RGB,
		     PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
	png_write_info(png, info);
	png_write_image(png, rows);
	png_write_end(png, NULL);
	png_destroy_write_struct(&png, &info);
	return 0;
}

int tr_gen_write_png(const char *path, const struct tr_image *im, struct ut_err *err)
{
	size_t stride = (size_t)im->width * 3;
	uint8_t *rgb = malloc(stride * im->height);
	png_bytep *rows = malloc(sizeof(png_bytep) * (size_t)im->height);
	if (rgb == NULL || rows == NULL) {
		free(rgb);
		free(rows);
		return ut_err_set(err, "%s: out of memory", path);
	}
	for (size_t i = 0; i < (size_t)im->width * im->height; i++) {
		rgb[3 * i] = im->data[3 * i + 2];
		rgb[3 * i + 1] = im->data[3 * i + 1];
		rgb[3 * i + 2] = im->data[3 * i];
	}
	for (int y = 0; y < im->height; y++)
		rows[y] = rgb + (size_t)y * stride;
	struct png_error_text f = {{0}};
	int rc = -1;
	FILE *fp = fopen(path, "wb");
	if (fp == NULL) {
		rc = ut_err_set(err, "%s: %s", path, strerror(errno));
	} else {
		rc = write_png_rows(fp, rows, im->width, im->height, &f);
		if (fclose(fp) != 0 && rc == 0) {
			snprintf(f.msg, sizeof(f.msg), "%s", strerror(errno));
			rc = -1;
		}
		if (rc != 0)
			ut_err_set(err, "%s: %s", path, f.msg);
	}
	free(rgb);
	free(rows);
	return rc;
}

/* Read an open PNG into rgb rows of the image (swapped to BGR after). */
static int read_png_rows(FILE *fp, struct tr_image *im, struct png_error_text *f,
			 struct ut_err *err)
{
	png_structp png =
	    png_create_read_struct(PNG_LIBPNG_VER_STRING, f, on_png_error, on_png_warning);
	png_infop info = png != NULL ? png_create_info_struct(png) : NULL;
	png_bytep *volatile rows = NULL;
	if (info == NULL) {
		png_destroy_read_struct(&png, NULL, NULL);
		snprintf(f->msg, sizeof(f->msg), "out of memory");
		return -1;
	}
	if (setjmp(png_jmpbuf(png))) {
		free(rows);
		png_destroy_read_struct(&png, &info, NULL);
		return -1;
	}
	png_init_io(png, fp);
	png_read_info(png, info);
	if (png_get_bit_depth(png, info) != 8 ||
	    png_get_color_type(png, info) != PNG_COLOR_TYPE_RGB)
		png_error(png, "not an 8-bit RGB PNG");
	int width = (int)png_get_image_width(png, info),
	    height = (int)png_get_image_height(png, info);
	if (tr_aug_image_alloc(im, width, height, err) != 0)
		png_error(png, err != NULL ? err->msg : "bad size");
	rows = malloc(sizeof(png_bytep) * (size_t)height);
	if (rows == NULL)
		png_error(png, "out of memory");
	for (int y = 0; y < height; y++)
		rows[y] = im->data + (size_t)y * width * 3;
	png_read_image(png, rows);
	png_read_end(png, NULL);
	free(rows);
	png_destroy_read_struct(&png, &info, NULL);
	return 0;
}

int tr_gen_read_png(const char *path, struct tr_image *im, struct ut_err *err)
{
	im->data = NULL;
	im->width = im->height = 0;
	FILE *fp = fopen(path, "rb");
	if (fp == NULL)
		return ut_err_set(err, "%s: %s", path, strerror(errno));
	struct png_error_text f = {{0}};
	int rc = read_png_rows(fp, im, &f, err);
	fclose(fp);
	if (rc != 0) {
		tr_aug_image_free(im);
		return ut_err_set(err, "%s: %s", path, f.msg);
	}
	for (size_t i = 0; i < (size_t)im->width * im->height; i++) {
		uint8_t r = im->data[3 * i];
		im->data[3 * i] = im->data[3 * i + 2];
		im->data[3 * i + 2] = r;
	}
	return 0;
}

/* --- the dataset --- */

static const char *const split_names[] = {"train", "val"};

/* Write one image and its label file. */
static int write_one(const char *root, const struct tr_gen_opts *opts, enum tr_gen_split split,
		     long index, struct ut_err *err)
{
	struct tr_gen_sample s;
	if (tr_gen_sample(opts->seed, split, index, opts->size, opts->classes, &s, err) != 0)
		return -1;
	char path[PATH_MAX], text[TR_GEN_MAX_OBJECTS * 64];
	int rc = 0, len = tr_gen_format_labels(&s, text, sizeof(text));
	if (len < 0)
		rc = ut_err_set(err, "labels of image %ld do not fit", index);
	if (rc == 0 && snprintf(path, sizeof(path), "%s/images/%s/%06ld.png", root,
				split_names[split], index) >= (int)sizeof(path))
		rc = ut_err_set(err, "%s: path too long", root);
	if (rc == 0)
		rc = tr_gen_write_png(path, &s.image, err);
	if (rc == 0 && snprintf(path, sizeof(path), "%s/labels/%s/%06ld.txt", root,
				split_names[split], index) >= (int)sizeof(path))
		rc = ut_err_set(err, "%s: path too long", root);
	if (rc == 0)
		rc = ut_write_file_atomic(path, text, (size_t)len, err);
	tr_gen_sample_free(&s);
	return rc;
}

static int write_yaml(const char *root, const struct tr_gen_opts *opts, struct ut_err *err)
{
	char text[4096 + PATH_MAX], path[PATH_MAX];
	int used = snprintf(text, sizeof(text),
			    "# synthetic shapes: gen-dataset --size %d --seed %llu\n"
			    "path: '%s'\ntrain: images/train\nval: images/val\nnc: %d\nnames:\n",
			    opts->size, (unsigned long long)opts->seed, root, opts->classes);
	for (int c = 0; c < opts->classes && used > 0 && (size_t)used < sizeof(text); c++)
		used += snprintf(text + used, sizeof(text) - (size_t)used, "  %d: %s\n", c,
				 class_names[c]);
	if (used < 0 || (size_t)used >= sizeof(text) ||
	    snprintf(path, sizeof(path), "%s/data.yaml", root) >= (int)sizeof(path))
		return ut_err_set(err, "%s: path too long", root);
	return ut_write_file_atomic(path, text, (size_t)used, err);
}

int tr_gen_dataset(const char *out_dir, const struct tr_gen_opts *opts, struct ut_err *err)
{
	if (opts->train < 0 || opts->val < 0 || opts->train + opts->val < 1 ||
	    opts->train > 999999 || opts->val > 999999)
		return ut_err_set(err,
				  "gen-dataset: --train %d / --val %d: need 0..999999 each, "
				  "at least one image",
				  opts->train, opts->val);
	if (opts->size < 32 || opts->size > 4096 || opts->classes < 1 ||
	    opts->classes > TR_GEN_MAX_CLASSES)
		return ut_err_set(err,
				  "gen-dataset: --size %d (32..4096) or --classes %d (1..%d) "
				  "out of range",
				  opts->size, opts->classes, TR_GEN_MAX_CLASSES);
	if (strchr(out_dir, '\'') != NULL || strchr(out_dir, '\n') != NULL)
		return ut_err_set(err, "%s: quotes or newlines in the folder name", out_dir);
	char dir[PATH_MAX];
	for (int split = 0; split < 2; split++)
		for (int kind = 0; kind < 2; kind++) {
			if (snprintf(dir, sizeof(dir), "%s/%s/%s", out_dir,
				     kind ? "labels" : "images",
				     split_names[split]) >= (int)sizeof(dir))
				return ut_err_set(err, "%s: path too long", out_dir);
			if (ut_mkdirs(dir, err) != 0)
				return -1;
		}
	char root[PATH_MAX];
	if (realpath(out_dir, root) == NULL)
		return ut_err_set(err, "%s: %s", out_dir, strerror(errno));
	const int counts[2] = {opts->train, opts->val};
	for (int split = 0; split < 2; split++)
		for (long i = 0; i < counts[split]; i++)
			if (write_one(root, opts, (enum tr_gen_split)split, i, err) != 0)
				return -1;
	return write_yaml(root, opts, err);
}
