/*
 * mosaic.c - mosaic, copy_paste, mixup and flips as YOLOv5 v7.0 applies
 * them (see mosaic.h), on top of augment.c's random_perspective.
 */
#include "mosaic.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* splitmix64's finaliser: spreads (seed, epoch, index) over the state. */
static uint64_t mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

void tr_sample_stream(struct ut_pcg *rng, uint64_t seed, long epoch, long index)
{
	/*
	 * The sequence (stream selector) is a hash of all three keys, the start
	 * state another: neighbouring indices get unrelated streams, and none
	 * coincides with evolve's (seed, generation, purpose) streams by
	 * construction of a small integer sequence there.
	 */
	uint64_t key = mix64(seed ^ 0x6d6f73616963ULL); /* "mosaic" */
	key = mix64(key ^ (uint64_t)epoch);
	key = mix64(key ^ (uint64_t)index);
	ut_pcg_seed(rng, mix64(key ^ 0x5851f42d4c957f2dULL), key | (1ULL << 62));
}

/* --- random variates --- */

double tr_rand_gamma(struct ut_pcg *rng, double shape)
{
	if (shape < 1) {
		/* Gamma(a) = Gamma(a + 1) * U^(1/a) */
		double u = 1.0 - ut_pcg_uniform(rng);
		return tr_rand_gamma(rng, shape + 1) * pow(u, 1.0 / shape);
	}
	double d = shape - 1.0 / 3.0, c = 1.0 / sqrt(9.0 * d);
	for (;;) {
		double x = ut_pcg_normal(rng);
		double v = 1.0 + c * x;
		if (v <= 0)
			continue;
		v = v * v * v;
		double u = ut_pcg_uniform(rng);
		if (u < 1.0 - 0.0331 * (x * x) * (x * x))
			return d * v;
		if (log(u) < 0.5 * x * x + d * (1.0 - v + log(v)))
			return d * v;
	}
}

double tr_rand_beta(struct ut_pcg *rng, double a, double b)
{
	double x = tr_rand_gamma(rng, a);
	double y = tr_rand_gamma(rng, b);
	return x / (x + y);
}

/* --- boxes and segments --- */

int tr_boxes_reserve(struct tr_boxes *b, int more, struct ut_err *err)
{
	if (more < 0 || b->n > INT32_MAX / 2 - more)
		return ut_err_set(err, "too many boxes (%d + %d)", b->n, more);
	if (b->n + more <= b->cap)
		return 0;
	int cap = b->cap > 0 ? b->cap : 16;
	while (cap < b->n + more)
		cap *= 2;
	float *rows = realloc(b->rows, sizeof(float) * 5 * (size_t)cap);
	if (rows == NULL)
		return ut_err_set(err, "out of memory for %d boxes", cap);
	b->rows = rows;
	b->cap = cap;
	return 0;
}

int tr_boxes_push(struct tr_boxes *b, const float row[5], struct ut_err *err)
{
	if (tr_boxes_reserve(b, 1, err) != 0)
		return -1;
	memcpy(b->rows + 5 * (size_t)b->n++, row, sizeof(float) * 5);
	return 0;
}

void tr_boxes_free(struct tr_boxes *b)
{
	free(b->rows);
	memset(b, 0, sizeof(*b));
}

int tr_segments_push(struct tr_segments *s, const float *xy, int points, struct ut_err *err)
{
	if (points < 0)
		return ut_err_set(err, "a polygon cannot have %d points", points);
	if (s->n == s->cap) {
		int cap = s->cap > 0 ? 2 * s->cap : 16;
		struct tr_polygon *poly = realloc(s->poly, sizeof(*poly) * (size_t)cap);
		if (poly == NULL)
			return ut_err_set(err, "out of memory for %d polygons", cap);
		s->poly = poly;
		s->cap = cap;
	}
	float *copy = malloc(sizeof(float) * 2 * (size_t)(points > 0 ? points : 1));
	if (copy == NULL)
		return ut_err_set(err, "out of memory for a polygon of %d points", points);
	if (points > 0)
		memcpy(copy, xy, sizeof(float) * 2 * (size_t)points);
	s->poly[s->n].xy = copy;
	s->poly[s->n].points = points;
	s->n++;
	return 0;
}

void tr_segments_free(struct tr_segments *s)
{
	for (int i = 0; i < s->n; i++)
		free(s->poly[i].xy);
	free(s->poly);
	memset(s, 0, sizeof(*s));
}

/* --- mosaic --- */

/* Python's random.uniform(lo, hi) then int(): truncation toward zero. */
static int uniform_int(struct ut_pcg *rng, double lo, double hi)
{
	return (int)(lo + (hi - lo) * ut_pcg_uniform(rng));
}

int tr_mosaic_plan(struct ut_pcg *rng, int size, long index, long n_images,
		   struct tr_mosaic_plan *plan, struct ut_err *err)
{
	return tr_mosaic_plan_pool(rng, size, index, NULL, n_images, plan, err);
}

int tr_mosaic_plan_pool(struct ut_pcg *rng, int size, long index, const long *pool, long n_images,
			struct tr_mosaic_plan *plan, struct ut_err *err)
{
	if (size < 2 || n_images < 1 || n_images > (long)UINT32_MAX || index < 0 ||
	    (pool == NULL && index >= n_images))
		return ut_err_set(err, "mosaic: size %d, index %ld of %ld images is not valid",
				  size, index, n_images);
	plan->size = size;
	plan->border = -(size / 2) - size % 2; /* Python's -s // 2 */
	double lo = -plan->border, hi = 2.0 * size + plan->border;
	plan->yc = uniform_int(rng, lo, hi);
	plan->xc = uniform_int(rng, lo, hi);
	plan->indices[0] = index;
	for (int i = 1; i < 4; i++) {
		long pick = (long)ut_pcg_below(rng, (uint32_t)n_images);
		plan->indices[i] = pool != NULL ? pool[pick] : pick;
	}
	for (int i = 3; i > 0; i--) { /* random.shuffle's walk */
		int j = (int)ut_pcg_below(rng, (uint32_t)i + 1);
		long swap = plan->indices[i];
		plan->indices[i] = plan->indices[j];
		plan->indices[j] = swap;
	}
	return 0;
}

static int imin(int a, int b)
{
	return a < b ? a : b;
}

static int imax(int a, int b)
{
	return a > b ? a : b;
}

/*
 * Where tile i (0 top left, 1 top right, 2 bottom left, 3 bottom right)
 * goes on the canvas (a) and which part of it is used (b).
 */
struct placement {
	int x1a, y1a, x2a, y2a;
	int x1b, y1b, x2b, y2b;
};

static struct placement place_tile(int i, int xc, int yc, int w, int h, int s)
{
	struct placement p;
	bool left = i == 0 || i == 2, top = i < 2;
	/* the canvas part: from the centre out by the tile size, cut at the canvas */
	p.x1a = left ? imax(xc - w, 0) : xc;
	p.x2a = left ? xc : imin(xc + w, 2 * s);
	p.y1a = top ? imax(yc - h, 0) : yc;
	p.y2a = top ? yc : imin(yc + h, 2 * s);
	/* the tile part: the corner that touches the centre, as much as fits */
	p.x1b = left ? w - (p.x2a - p.x1a) : 0;
	p.x2b = left ? w : imin(w, p.x2a - p.x1a);
	p.y1b = top ? h - (p.y2a - p.y1a) : 0;
	p.y2b = top ? h : imin(h, p.y2a - p.y1a);
	return p;
}

static float clipf(float v, float lo, float hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

/* One tile's pixels, labels and segments onto the canvas. */
static int paste_tile(const struct tr_mosaic_tile *tile, const struct placement *p, int s,
		      struct tr_image *canvas, struct tr_boxes *boxes, struct tr_segments *segs,
		      struct ut_err *err)
{
	const struct tr_image *im = tile->image;
	int rows = imin(p->y2a - p->y1a, p->y2b - p->y1b),
	    cols = imin(p->x2a - p->x1a, p->x2b - p->x1b);
	for (int y = 0; y < rows; y++)
		memcpy(canvas->data + ((size_t)(p->y1a + y) * canvas->width + p->x1a) * 3,
		       im->data + ((size_t)(p->y1b + y) * im->width + p->x1b) * 3,
		       (size_t)cols * 3);
	float padw = (float)(p->x1a - p->x1b), padh = (float)(p->y1a - p->y1b);
	float w = (float)im->width, h = (float)im->height, edge = (float)(2 * s);
	if (tr_boxes_reserve(boxes, tile->n, err) != 0)
		return -1;
	for (int k = 0; k < tile->n; k++) {
		const float *in = tile->labels + 5 * (size_t)k;
		float *out = boxes->rows + 5 * (size_t)boxes->n++;
		out[0] = in[0];
		out[1] = clipf(w * (in[1] - in[3] / 2) + padw, 0, edge);
		out[2] = clipf(h * (in[2] - in[4] / 2) + padh, 0, edge);
		out[3] = clipf(w * (in[1] + in[3] / 2) + padw, 0, edge);
		out[4] = clipf(h * (in[2] + in[4] / 2) + padh, 0, edge);
	}
	if (tile->segments == NULL)
		return 0;
	for (int k = 0; k < tile->n; k++) {
		const struct tr_polygon *poly = &tile->segments[k];
		if (tr_segments_push(segs, poly->xy, poly->points, err) != 0)
			return -1;
		float *xy = segs->poly[segs->n - 1].xy;
		for (int q = 0; q < poly->points; q++) {
			xy[2 * q] = clipf(w * xy[2 * q] + padw, 0, edge);
			xy[2 * q + 1] = clipf(h * xy[2 * q + 1] + padh, 0, edge);
		}
	}
	return 0;
}

void tr_mosaic_tile_box(const struct tr_mosaic_plan *plan, int i, int width, int height,
			const int canvas_box[4], int tile_box[4])
{
	struct placement p = place_tile(i, plan->xc, plan->yc, width, height, plan->size);
	/* canvas (xa, ya) shows tile pixel (xa + dx, ya + dy) */
	int dx = p.x1b - p.x1a, dy = p.y1b - p.y1a;
	int x0 = imax(canvas_box[0], p.x1a), y0 = imax(canvas_box[1], p.y1a);
	int x1 = imin(canvas_box[2], p.x2a), y1 = imin(canvas_box[3], p.y2a);
	tile_box[0] = x0 + dx;
	tile_box[1] = y0 + dy;
	tile_box[2] = imax(x1, x0) + dx;
	tile_box[3] = imax(y1, y0) + dy;
}

/* Every tile must be 1..s on both sides. */
static int check_tiles(const struct tr_mosaic_tile tiles[4], int s, struct ut_err *err)
{
	for (int i = 0; i < 4; i++) {
		const struct tr_image *im = tiles[i].image;
		if (im == NULL || im->width < 1 || im->height < 1 || im->width > s ||
		    im->height > s)
			return ut_err_set(err, "mosaic: tile %d is %dx%d, it must fit in %dx%d", i,
					  im != NULL ? im->width : 0, im != NULL ? im->height : 0,
					  s, s);
	}
	return 0;
}

int tr_mosaic_assemble(const struct tr_mosaic_plan *plan, const struct tr_mosaic_tile tiles[4],
		       struct tr_image *canvas, struct tr_boxes *boxes, struct tr_segments *segs,
		       struct ut_err *err)
{
	int s = plan->size;
	if (check_tiles(tiles, s, err) != 0 || tr_aug_image_alloc(canvas, 2 * s, 2 * s, err) != 0)
		return -1;
	if (tr_mosaic_assemble_into(plan, tiles, canvas, boxes, segs, err) != 0) {
		tr_aug_image_free(canvas);
		return -1;
	}
	return 0;
}

int tr_mosaic_assemble_into(const struct tr_mosaic_plan *plan, const struct tr_mosaic_tile tiles[4],
			    struct tr_image *canvas, struct tr_boxes *boxes,
			    struct tr_segments *segs, struct ut_err *err)
{
	int s = plan->size;
	if (check_tiles(tiles, s, err) != 0)
		return -1;
	if (canvas->width != 2 * s || canvas->height != 2 * s || canvas->data == NULL)
		return ut_err_set(err, "mosaic: canvas is %dx%d, it must be %dx%d", canvas->width,
				  canvas->height, 2 * s, 2 * s);
	memset(canvas->data, 114, (size_t)canvas->width * canvas->height * 3);
	for (int i = 0; i < 4; i++) {
		struct placement p = place_tile(i, plan->xc, plan->yc, tiles[i].image->width,
						tiles[i].image->height, s);
		if (paste_tile(&tiles[i], &p, s, canvas, boxes, segs, err) != 0)
			return -1;
	}
	return 0;
}

int tr_mosaic_finish(struct ut_pcg *rng, const struct tr_mosaic_hyp *hyp,
		     const struct tr_mosaic_plan *plan, struct tr_image *canvas,
		     struct tr_boxes *boxes, struct tr_segments *segs, struct tr_image *out,
		     struct ut_err *err)
{
	int side = canvas->width + 2 * plan->border;
	if (tr_aug_image_alloc(out, side, canvas->height + 2 * plan->border, err) != 0)
		return -1;
	if (tr_mosaic_finish_into(rng, hyp, plan, canvas, boxes, segs, out, err) != 0) {
		tr_aug_image_free(out);
		return -1;
	}
	return 0;
}

/* random_perspective's settings for a mosaic and its 8 draws from rng. */
static void mosaic_perspective(struct ut_pcg *rng, const struct tr_mosaic_hyp *hyp,
			       const struct tr_mosaic_plan *plan, struct tr_aug_perspective *p,
			       double draws[TR_AUG_DRAWS])
{
	*p = (struct tr_aug_perspective){
	    .degrees = hyp->degrees,
	    .translate = hyp->translate,
	    .scale = hyp->scale,
	    .shear = hyp->shear,
	    .perspective = hyp->perspective,
	    .border_h = plan->border,
	    .border_w = plan->border,
	};
	double frac[TR_AUG_DRAWS];
	for (int i = 0; i < TR_AUG_DRAWS; i++)
		frac[i] = ut_pcg_uniform(rng);
	tr_aug_perspective_draws(p, frac, draws, NULL, NULL);
}

int tr_mosaic_finish_into(struct ut_pcg *rng, const struct tr_mosaic_hyp *hyp,
			  const struct tr_mosaic_plan *plan, struct tr_image *canvas,
			  struct tr_boxes *boxes, struct tr_segments *segs, struct tr_image *out,
			  struct ut_err *err)
{
	if (hyp->copy_paste > 0 && segs != NULL && segs->n > 0 &&
	    tr_copy_paste(rng, hyp->copy_paste, canvas, boxes, segs, err) != 0)
		return -1;
	struct tr_aug_perspective p;
	double draws[TR_AUG_DRAWS];
	mosaic_perspective(rng, hyp, plan, &p, draws);
	const struct tr_polygon *poly = segs != NULL ? segs->poly : NULL;
	int n_poly = segs != NULL ? segs->n : 0;
	return tr_aug_random_perspective_segments_into(canvas, &p, draws, poly, n_poly, out,
						       boxes->rows, &boxes->n, NULL, err);
}

void tr_mosaic_read_box(const struct ut_pcg *rng, const struct tr_mosaic_hyp *hyp,
			const struct tr_mosaic_plan *plan, int box[4])
{
	struct ut_pcg ahead = *rng;
	struct tr_aug_perspective p;
	double draws[TR_AUG_DRAWS], M[9];
	mosaic_perspective(&ahead, hyp, plan, &p, draws);
	int side = 2 * plan->size, out = side + 2 * plan->border;
	tr_aug_perspective_matrix(&p, side, side, draws, M);
	tr_aug_warp_source_box(M, p.perspective != 0, side, side, out, out, box);
}

/* --- copy_paste --- */

void tr_bbox_ioa(const float box[4], const float *rows, int n, double *ioa)
{
	for (int i = 0; i < n; i++) {
		const float *b = rows + 5 * (size_t)i + 1;
		float iw = fminf(box[2], b[2]) - fmaxf(box[0], b[0]);
		float ih = fminf(box[3], b[3]) - fmaxf(box[1], b[1]);
		float inter = fmaxf(iw, 0) * fmaxf(ih, 0);
		float area = (b[2] - b[0]) * (b[3] - b[1]) + 1e-7f;
		ioa[i] = inter / area;
	}
}

/* Is integer point (x, y) on the segment a-b (within half a pixel)? */
static bool on_edge(double x, double y, double ax, double ay, double bx, double by)
{
	double dx = bx - ax, dy = by - ay, len2 = dx * dx + dy * dy;
	double t = len2 > 0 ? ((x - ax) * dx + (y - ay) * dy) / len2 : 0;
	t = t < 0 ? 0 : t > 1 ? 1 : t;
	double ex = ax + t * dx - x, ey = ay + t * dy - y;
	return ex * ex + ey * ey <= 0.25;
}

void tr_fill_polygon(uint8_t *mask, int width, int height, const float *xy, int points,
		     uint8_t value)
{
	if (points < 1)
		return;
	/* astype(np.int32): truncation toward zero */
	int *pt = malloc(sizeof(int) * 2 * (size_t)points);
	if (pt == NULL)
		return;
	int xmin = width, ymin = height, xmax = -1, ymax = -1;
	for (int i = 0; i < points; i++) {
		pt[2 * i] = (int)xy[2 * i];
		pt[2 * i + 1] = (int)xy[2 * i + 1];
		xmin = imin(xmin, pt[2 * i]);
		xmax = imax(xmax, pt[2 * i]);
		ymin = imin(ymin, pt[2 * i + 1]);
		ymax = imax(ymax, pt[2 * i + 1]);
	}
	xmin = imax(xmin, 0);
	ymin = imax(ymin, 0);
	xmax = imin(xmax, width - 1);
	ymax = imin(ymax, height - 1);
	for (int y = ymin; y <= ymax; y++)
		for (int x = xmin; x <= xmax; x++) {
			bool inside = false, edge = false;
			for (int i = 0, j = points - 1; i < points; j = i++) {
				int xi = pt[2 * i], yi = pt[2 * i + 1], xj = pt[2 * j],
				    yj = pt[2 * j + 1];
				if (on_edge(x, y, xi, yi, xj, yj))
					edge = true;
				if ((yi > y) != (yj > y) &&
				    x < (double)(xj - xi) * (y - yi) / (double)(yj - yi) + xi)
					inside = !inside;
			}
			if (inside || edge)
				mask[(size_t)y * width + x] = value;
		}
	free(pt);
}

/* random.sample(range(n), k): k distinct indices in draw order. */
static void sample_indices(struct ut_pcg *rng, int n, int k, int *pool)
{
	for (int i = 0; i < n; i++)
		pool[i] = i;
	for (int i = 0; i < k; i++) {
		int j = i + (int)ut_pcg_below(rng, (uint32_t)(n - i));
		int swap = pool[i];
		pool[i] = pool[j];
		pool[j] = swap;
	}
}

/* Pixels whose mirror is marked in mask take the mirrored image. */
static int paste_mirrored(struct tr_image *im, const uint8_t *mask, struct ut_err *err)
{
	int w = im->width;
	uint8_t *row = malloc((size_t)w * 3);
	if (row == NULL)
		return ut_err_set(err, "out of memory for a row of %d pixels", w);
	for (int y = 0; y < im->height; y++) {
		uint8_t *line = im->data + (size_t)y * w * 3;
		memcpy(row, line, (size_t)w * 3);
		for (int x = 0; x < w; x++)
			if (mask[(size_t)y * w + (w - 1 - x)])
				memcpy(line + 3 * (size_t)x, row + 3 * (size_t)(w - 1 - x), 3);
	}
	free(row);
	return 0;
}

/* Try to add the mirror of box/polygon j; *added tells whether it fit. */
static int mirror_one(int j, int w, struct tr_boxes *boxes, struct tr_segments *segs, double *ioa,
		      bool *added, struct ut_err *err)
{
	const float *l = boxes->rows + 5 * (size_t)j;
	float fw = (float)w;
	float row[5] = {l[0], fw - l[3], l[2], fw - l[1], l[4]};
	tr_bbox_ioa(row + 1, boxes->rows, boxes->n, ioa);
	*added = false;
	for (int i = 0; i < boxes->n; i++)
		if (!(ioa[i] < 0.30))
			return 0;
	if (tr_boxes_push(boxes, row, err) != 0 ||
	    tr_segments_push(segs, segs->poly[j].xy, segs->poly[j].points, err) != 0)
		return -1;
	struct tr_polygon *mirror = &segs->poly[segs->n - 1];
	for (int q = 0; q < mirror->points; q++)
		mirror->xy[2 * q] = fw - mirror->xy[2 * q];
	*added = true;
	return 0;
}

int tr_copy_paste(struct ut_pcg *rng, double p, struct tr_image *im, struct tr_boxes *boxes,
		  struct tr_segments *segs, struct ut_err *err)
{
	int n = segs->n;
	if (!(p > 0) || n == 0)
		return 0;
	if (n != boxes->n)
		return ut_err_set(err, "copy_paste: %d segments for %d boxes", n, boxes->n);
	int k = (int)nearbyint(p * n); /* Python's round(): halves to even */
	k = imin(imax(k, 0), n);
	size_t pixels = (size_t)im->width * im->height;
	int *pool = malloc(sizeof(int) * (size_t)n);
	double *ioa = malloc(sizeof(double) * (size_t)(n + k));
	uint8_t *mask = calloc(pixels, 1);
	int rc = 0;
	if (pool == NULL || ioa == NULL || mask == NULL) {
		rc = ut_err_set(err, "out of memory for copy_paste on %d segments", n);
		goto done;
	}
	sample_indices(rng, n, k, pool);
	for (int i = 0; i < k && rc == 0; i++) {
		bool added;
		rc = mirror_one(pool[i], im->width, boxes, segs, ioa, &added, err);
		if (rc == 0 && added)
			tr_fill_polygon(mask, im->width, im->height, segs->poly[pool[i]].xy,
					segs->poly[pool[i]].points, 1);
	}
	if (rc == 0)
		rc = paste_mirrored(im, mask, err);
done:
	free(pool);
	free(ioa);
	free(mask);
	return rc;
}

/* --- mixup --- */

int tr_mixup_blend(struct tr_image *im, struct tr_boxes *boxes, const struct tr_image *im2,
		   const struct tr_boxes *boxes2, double r, struct ut_err *err)
{
	if (im->width != im2->width || im->height != im2->height)
		return ut_err_set(err, "mixup: images are %dx%d and %dx%d", im->width, im->height,
				  im2->width, im2->height);
	if (tr_boxes_reserve(boxes, boxes2->n, err) != 0)
		return -1;
	size_t bytes = (size_t)im->width * im->height * 3;
	double q = 1 - r;
	for (size_t i = 0; i < bytes; i++)
		im->data[i] = (uint8_t)(int)(im->data[i] * r + im2->data[i] * q);
	if (boxes2->n > 0) /* rows may be NULL when empty: memcpy must not see it */
		memcpy(boxes->rows + 5 * (size_t)boxes->n, boxes2->rows,
		       sizeof(float) * 5 * (size_t)boxes2->n);
	boxes->n += boxes2->n;
	return 0;
}

int tr_mixup(struct ut_pcg *rng, struct tr_image *im, struct tr_boxes *boxes,
	     const struct tr_image *im2, const struct tr_boxes *boxes2, double *ratio,
	     struct ut_err *err)
{
	double r = tr_rand_beta(rng, 32.0, 32.0);
	if (ratio != NULL)
		*ratio = r;
	return tr_mixup_blend(im, boxes, im2, boxes2, r, err);
}

/* --- flips --- */

void tr_flip_lr(struct tr_image *im, float *labels, int n)
{
	for (int y = 0; y < im->height; y++) {
		uint8_t *row = im->data + (size_t)y * im->width * 3;
		for (int a = 0, b = im->width - 1; a < b; a++, b--)
			for (int c = 0; c < 3; c++) {
				uint8_t swap = row[3 * a + c];
				row[3 * a + c] = row[3 * b + c];
				row[3 * b + c] = swap;
			}
	}
	for (int i = 0; i < n; i++)
		labels[5 * (size_t)i + 1] = 1 - labels[5 * (size_t)i + 1];
}

void tr_flip_ud(struct tr_image *im, float *labels, int n)
{
	size_t stride = (size_t)im->width * 3;
	for (int a = 0, b = im->height - 1; a < b; a++, b--) {
		uint8_t *ra = im->data + (size_t)a * stride, *rb = im->data + (size_t)b * stride;
		for (size_t i = 0; i < stride; i++) {
			uint8_t swap = ra[i];
			ra[i] = rb[i];
			rb[i] = swap;
		}
	}
	for (int i = 0; i < n; i++)
		labels[5 * (size_t)i + 2] = 1 - labels[5 * (size_t)i + 2];
}

struct tr_flip_done tr_flip_random(struct ut_pcg *rng, double flipud, double fliplr,
				   struct tr_image *im, float *labels, int n)
{
	struct tr_flip_done done = {false, false};
	done.ud = ut_pcg_uniform(rng) < flipud;
	if (done.ud)
		tr_flip_ud(im, labels, n);
	done.lr = ut_pcg_uniform(rng) < fliplr;
	if (done.lr)
		tr_flip_lr(im, labels, n);
	return done;
}

void tr_boxes_to_xywhn(float *rows, int n, int width, int height)
{
	const double eps = 1e-3;
	float wmax = (float)(width - eps), hmax = (float)(height - eps);
	float w = (float)width, h = (float)height;
	for (int i = 0; i < n; i++) {
		float *r = rows + 5 * (size_t)i;
		float x1 = clipf(r[1], 0, wmax), y1 = clipf(r[2], 0, hmax);
		float x2 = clipf(r[3], 0, wmax), y2 = clipf(r[4], 0, hmax);
		r[1] = ((x1 + x2) / 2) / w;
		r[2] = ((y1 + y2) / 2) / h;
		r[3] = (x2 - x1) / w;
		r[4] = (y2 - y1) / h;
	}
}
