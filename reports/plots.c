/*
 * plots.c - evolve.png and fitness.png, drawn with cairo (see plots.h).
 *
 * Sizes are pixels of a 200 dpi figure, the resolution YOLOv5 saves
 * evolve.png at (1 pt = 200 / 72 px): its 8 pt tick labels are 22 px here,
 * its 15 pt '+' marker 42 px across. Each picture is computed as a layout
 * first (rp_evolve_layout, rp_fitness_layout: pure functions the tests
 * call), then drawn from it, so the tests know where every mark lands.
 */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cairo.h>

#include "plots.h"

#define FONT "DejaVu Sans"
#define TICK_FONT 22.0
#define TITLE_FONT 25.0
#define LABEL_FONT 26.0
#define MESSAGE_FONT 36.0
#define TICK_LEN 8.0

/* evolve.png: 400 px cells; the first column's tick labels sit in EV_LEFT. */
#define EV_COLUMNS_MAX 5
#define EV_LEFT 110
#define EV_RIGHT 20
#define EV_PLOT_W 330
#define EV_PLOT_H 290
#define EV_GAP_X 55
#define EV_TITLE_H 46	/* band above each plot */
#define EV_CELL_H 400	/* title band + plot + x tick labels */
#define EV_HIST_BINS 19 /* YOLOv5's hist2d(x, y, 20): 20 edges, 19 bins */
#define EV_POINT_R 7.0
#define EV_POINT_ALPHA 0.8
#define EV_PLUS_HALF 21.0
#define EV_HEADER_H 80 /* the title band, only with a recommendation by mean */

/* fitness.png */
#define FIT_LEFT 170
#define FIT_RIGHT 60
#define FIT_TOP 170
#define FIT_BOTTOM 140
#define FIT_POINT_R 8.0
#define FIT_MARK_HALF 10.0
#define FIT_MARKS_UP 18.0 /* the row of failed marks, above the x axis */
#define FIT_DIAMOND_HALF 11.0
#define FIT_PLUS_HALF 18.0

#define KEY_FITNESS (-1) /* value_of: the fitness instead of a hyp */

struct rgb {
	double r, g, b;
};

/* matplotlib's tab10 colours, so the plots look like ultralytics' */
static const struct rgb ink = {0.10, 0.10, 0.10};
static const struct rgb grid_grey = {0.88, 0.88, 0.88};
static const struct rgb done_blue = {0.122, 0.467, 0.706};
static const struct rgb pruned_grey = {0.60, 0.60, 0.60};
static const struct rgb failed_red = {0.839, 0.153, 0.157};
static const struct rgb best_green = {0.173, 0.627, 0.173};
static const struct rgb trend_orange = {1.0, 0.498, 0.055};
static const struct rgb reeval_purple = {0.580, 0.404, 0.741};

#define PLUS_MINUS "\xc2\xb1" /* UTF-8, as cairo's text wants it */

static void set_colour(cairo_t *cr, struct rgb c, double alpha)
{
	cairo_set_source_rgba(cr, c.r, c.g, c.b, alpha);
}

/* matplotlib's viridis at t in [0, 1], linear between 9 of its samples. */
static struct rgb viridis(double t)
{
	static const unsigned char stops[9][3] = {
	    {68, 1, 84},    {71, 45, 123}, {59, 82, 139},  {44, 114, 142}, {33, 145, 140},
	    {40, 174, 128}, {94, 201, 98}, {173, 220, 48}, {253, 231, 37},
	};
	double pos = (isfinite(t) ? fmin(fmax(t, 0.0), 1.0) : 0.0) * 8.0;
	int i = pos >= 8.0 ? 7 : (int)pos;
	double f = pos - i;
	struct rgb c = {((1 - f) * stops[i][0] + f * stops[i + 1][0]) / 255.0,
			((1 - f) * stops[i][1] + f * stops[i + 1][1]) / 255.0,
			((1 - f) * stops[i][2] + f * stops[i + 1][2]) / 255.0};
	return c;
}

void rp_frame_map(const struct rp_frame *frame, double x, double y, double *px, double *py)
{
	*px = frame->left + (x - frame->x_lo) / (frame->x_hi - frame->x_lo) * frame->width;
	*py = frame->top + (frame->y_hi - y) / (frame->y_hi - frame->y_lo) * frame->height;
}

/*
 * Widen [lo, hi] as matplotlib autoscales: an empty range grows by 5% of
 * its value (+/- 0.05 around 0), then margin_lo and margin_hi of the span
 * are added below and above.
 */
static void pad_range(double lo, double hi, double margin_lo, double margin_hi, double *out_lo,
		      double *out_hi)
{
	if (hi - lo <= 1e-12 * fmax(fabs(lo), fabs(hi))) {
		if (lo == 0 && hi == 0) {
			lo = -0.05;
			hi = 0.05;
		} else {
			lo -= 0.05 * fabs(lo);
			hi += 0.05 * fabs(hi);
		}
	}
	double span = hi - lo;
	*out_lo = lo - margin_lo * span;
	*out_hi = hi + margin_hi * span;
}

/* ---- the series the plots show ---- */

int rp_is_done(const struct st_generation *gen)
{
	return gen->status == ST_DONE && isfinite(gen->fitness);
}

long rp_best_index(const struct st_generation *gens, size_t n)
{
	long best = -1;
	for (size_t i = 0; i < n; i++) {
		if (rp_is_done(&gens[i]) && (best < 0 || gens[i].fitness > gens[best].fitness))
			best = (long)i;
	}
	return best;
}

void rp_running_best(const struct st_generation *gens, size_t n, double *best)
{
	double running = NAN;
	for (size_t i = 0; i < n; i++) {
		if (rp_is_done(&gens[i]) && (isnan(running) || gens[i].fitness > running))
			running = gens[i].fitness;
		best[i] = running;
	}
}

int rp_by_mean(const struct st_recommendation *rec)
{
	return rec->by_mean && rec->index >= 0;
}

/*
 * A point of evolve.png: a done generation that is not a re-evaluation.
 * Re-evaluations are left out rather than drawn apart: they repeat their
 * original's hyp, so in every panel they would stack on its x, and the
 * hist2d colouring would count one candidate as a dense cluster; what they
 * say, the candidate's mean, is where the '+' sits (fitness.png shows them
 * one by one).
 */
static int is_scattered(const struct st_generation *gen)
{
	return rp_is_done(gen) && !gen->reevaluation;
}

static double value_of(const struct st_generation *gen, int key)
{
	return key == KEY_FITNESS ? gen->fitness : gen->hyp.v[key];
}

/* Min and max of a value over the scattered generations; 0 if there is none. */
static int done_range(const struct st_generation *gens, size_t n, int key, double *lo, double *hi)
{
	int found = 0;
	for (size_t i = 0; i < n; i++) {
		if (!is_scattered(&gens[i]))
			continue;
		double v = value_of(&gens[i], key);
		if (!found || v < *lo)
			*lo = v;
		if (!found || v > *hi)
			*hi = v;
		found = 1;
	}
	return found;
}

/* ---- drawing helpers ---- */

/*
 * Text whose box (advance width x font ascent + descent) has its point
 * (align_x, align_y) at (x, y): 0 left/top, 0.5 centre, 1 right/bottom.
 */
static void draw_text(cairo_t *cr, const char *text, double x, double y, double size,
		      double align_x, double align_y)
{
	cairo_text_extents_t te;
	cairo_font_extents_t fe;
	cairo_set_font_size(cr, size);
	cairo_text_extents(cr, text, &te);
	cairo_font_extents(cr, &fe);
	cairo_move_to(cr, x - align_x * te.x_advance,
		      y - align_y * (fe.ascent + fe.descent) + fe.ascent);
	cairo_show_text(cr, text);
}

/* Text turned a quarter left (reading upwards), centred on (x, y). */
static void draw_text_up(cairo_t *cr, const char *text, double x, double y, double size)
{
	cairo_save(cr);
	cairo_translate(cr, x, y);
	cairo_rotate(cr, -M_PI / 2);
	draw_text(cr, text, 0, 0, size, 0.5, 0.5);
	cairo_restore(cr);
}

static double text_width(cairo_t *cr, const char *text, double size)
{
	cairo_text_extents_t te;
	cairo_set_font_size(cr, size);
	cairo_text_extents(cr, text, &te);
	return te.x_advance;
}

static void draw_dot(cairo_t *cr, double x, double y, double radius)
{
	cairo_new_path(cr);
	cairo_arc(cr, x, y, radius, 0, 2 * M_PI);
	cairo_fill(cr);
}

/* '+' (diagonal = 0) or 'x' (diagonal = 1) of half size half. */
static void draw_mark(cairo_t *cr, double x, double y, double half, double width, int diagonal)
{
	cairo_new_path(cr);
	if (diagonal) {
		cairo_move_to(cr, x - half, y - half);
		cairo_line_to(cr, x + half, y + half);
		cairo_move_to(cr, x - half, y + half);
		cairo_line_to(cr, x + half, y - half);
	} else {
		cairo_move_to(cr, x - half, y);
		cairo_line_to(cr, x + half, y);
		cairo_move_to(cr, x, y - half);
		cairo_line_to(cr, x, y + half);
	}
	cairo_set_line_width(cr, width);
	cairo_set_line_cap(cr, CAIRO_LINE_CAP_BUTT);
	cairo_stroke(cr);
}

/* A message in a framed white box centred on (x, y). */
static void draw_message(cairo_t *cr, const char *message, double x, double y)
{
	double w = text_width(cr, message, MESSAGE_FONT) + 60, h = MESSAGE_FONT * 2.4;
	cairo_new_path(cr);
	cairo_rectangle(cr, x - w / 2, y - h / 2, w, h);
	cairo_set_source_rgb(cr, 1, 1, 1);
	cairo_fill_preserve(cr);
	set_colour(cr, ink, 1);
	cairo_set_line_width(cr, 2);
	cairo_stroke(cr);
	draw_text(cr, message, x, y, MESSAGE_FONT, 0.5, 0.5);
}

/* How an axis gets its ticks. */
struct ticks {
	int count;	 /* about how many */
	int digits;	 /* labels as %.*g; 0: no labels */
	double min_step; /* 1 for generation numbers */
	int grid;	 /* light lines across the plot at each tick */
};

#define TICKS_MAX 32

/*
 * Tick values over [lo, hi] at a step of 1, 2 or 5 times a power of ten
 * giving about t->count of them. Returns how many were written.
 */
static int tick_values(double lo, double hi, const struct ticks *t, double *values)
{
	double raw = (hi - lo) / t->count;
	double magnitude = pow(10, floor(log10(raw)));
	double norm = raw / magnitude;
	double step = 10 * magnitude;
	if (norm < 1.5)
		step = magnitude;
	else if (norm < 3)
		step = 2 * magnitude;
	else if (norm < 7)
		step = 5 * magnitude;
	step = fmax(step, t->min_step);
	int count = 0;
	for (double k = ceil(lo / step); k * step <= hi + 1e-9 * step && count < TICKS_MAX; k++)
		values[count++] = fabs(k) < 0.5 ? 0.0 : k * step; /* no "-0" */
	return count;
}

/* 1 if the labels of ticks two or more apart on x leave a gap between them. */
static int x_labels_fit(cairo_t *cr, const struct rp_frame *f, const struct ticks *t,
			const double *values, int count)
{
	if (count < 2)
		return 1;
	double widest = 0;
	for (int i = 0; i < count; i++) {
		char label[32];
		snprintf(label, sizeof(label), "%.*g", t->digits, values[i]);
		widest = fmax(widest, text_width(cr, label, TICK_FONT));
	}
	double spacing = (values[1] - values[0]) / (f->x_hi - f->x_lo) * f->width;
	return spacing >= widest + 14;
}

/* x ticks as t asks, fewer where their labels would overlap. */
static int x_tick_values(cairo_t *cr, const struct rp_frame *f, const struct ticks *t,
			 double *values)
{
	struct ticks fewer = *t;
	int count = tick_values(f->x_lo, f->x_hi, &fewer, values);
	while (t->digits > 0 && fewer.count > 1 && !x_labels_fit(cr, f, t, values, count)) {
		fewer.count--;
		count = tick_values(f->x_lo, f->x_hi, &fewer, values);
	}
	return count;
}

static void draw_x_ticks(cairo_t *cr, const struct rp_frame *f, const struct ticks *t)
{
	double values[TICKS_MAX];
	int count = x_tick_values(cr, f, t, values);
	double bottom = f->top + f->height;
	for (int i = 0; i < count; i++) {
		double px, py;
		rp_frame_map(f, values[i], f->y_lo, &px, &py);
		cairo_new_path(cr);
		if (t->grid) {
			set_colour(cr, grid_grey, 1);
			cairo_set_line_width(cr, 1.5);
			cairo_move_to(cr, px, f->top);
			cairo_line_to(cr, px, bottom);
			cairo_stroke(cr);
		}
		set_colour(cr, ink, 1);
		cairo_set_line_width(cr, 2);
		cairo_move_to(cr, px, bottom);
		cairo_line_to(cr, px, bottom + TICK_LEN);
		cairo_stroke(cr);
		if (t->digits > 0) {
			char label[32];
			snprintf(label, sizeof(label), "%.*g", t->digits, values[i]);
			draw_text(cr, label, px, bottom + TICK_LEN + 4, TICK_FONT, 0.5, 0);
		}
	}
}

static void draw_y_ticks(cairo_t *cr, const struct rp_frame *f, const struct ticks *t)
{
	double values[TICKS_MAX];
	int count = tick_values(f->y_lo, f->y_hi, t, values);
	for (int i = 0; i < count; i++) {
		double px, py;
		rp_frame_map(f, f->x_lo, values[i], &px, &py);
		cairo_new_path(cr);
		if (t->grid) {
			set_colour(cr, grid_grey, 1);
			cairo_set_line_width(cr, 1.5);
			cairo_move_to(cr, f->left, py);
			cairo_line_to(cr, f->left + f->width, py);
			cairo_stroke(cr);
		}
		set_colour(cr, ink, 1);
		cairo_set_line_width(cr, 2);
		cairo_move_to(cr, f->left, py);
		cairo_line_to(cr, f->left - TICK_LEN, py);
		cairo_stroke(cr);
		if (t->digits > 0) {
			char label[32];
			snprintf(label, sizeof(label), "%.*g", t->digits, values[i]);
			draw_text(cr, label, f->left - TICK_LEN - 5, py, TICK_FONT, 1, 0.5);
		}
	}
}

static void draw_frame_box(cairo_t *cr, const struct rp_frame *f)
{
	cairo_new_path(cr);
	cairo_rectangle(cr, f->left, f->top, f->width, f->height);
	set_colour(cr, ink, 1);
	cairo_set_line_width(cr, 2);
	cairo_stroke(cr);
}

/* ---- the canvas: an image surface saved atomically as PNG ---- */

struct canvas {
	cairo_surface_t *surface;
	cairo_t *cr;
};

static void canvas_close(struct canvas *canvas)
{
	if (canvas->cr != NULL)
		cairo_destroy(canvas->cr);
	if (canvas->surface != NULL)
		cairo_surface_destroy(canvas->surface);
	canvas->cr = NULL;
	canvas->surface = NULL;
}

/* A white width x height image with the font selected. */
static int canvas_open(struct canvas *canvas, int width, int height, const char *path,
		       struct ut_err *err)
{
	canvas->surface = cairo_image_surface_create(CAIRO_FORMAT_RGB24, width, height);
	canvas->cr = cairo_create(canvas->surface);
	cairo_status_t status = cairo_status(canvas->cr);
	if (status != CAIRO_STATUS_SUCCESS) {
		canvas_close(canvas);
		return ut_err_set(err, "%s: cairo: %s (%d x %d image)", path,
				  cairo_status_to_string(status), width, height);
	}
	cairo_set_source_rgb(canvas->cr, 1, 1, 1);
	cairo_paint(canvas->cr);
	cairo_select_font_face(canvas->cr, FONT, CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
	return 0;
}

static cairo_status_t png_append(void *closure, const unsigned char *data, unsigned int length)
{
	struct ut_buf *png = closure;
	if (ut_buf_append(png, (const char *)data, length) != 0)
		return CAIRO_STATUS_WRITE_ERROR;
	return CAIRO_STATUS_SUCCESS;
}

/* Encode the drawing as PNG in memory, then write it atomically to path. */
static int canvas_save(struct canvas *canvas, const char *path, struct ut_err *err)
{
	cairo_status_t status = cairo_status(canvas->cr);
	if (status != CAIRO_STATUS_SUCCESS)
		return ut_err_set(err, "%s: cairo: %s", path, cairo_status_to_string(status));
	cairo_surface_flush(canvas->surface);
	struct ut_buf png = {0};
	status = cairo_surface_write_to_png_stream(canvas->surface, png_append, &png);
	int rc;
	if (status != CAIRO_STATUS_SUCCESS)
		rc = ut_err_set(err, "%s: PNG encoding: %s", path, cairo_status_to_string(status));
	else
		rc = ut_write_file_atomic(path, png.data, png.len, err);
	ut_buf_free(&png);
	return rc;
}

/* ---- reading the evolution ---- */

struct evolution {
	struct meta_table meta;
	struct st_generation *gens; /* by generation */
	size_t n;
};

static int load_evolution(struct st_db *db, struct evolution *evo, struct ut_err *err)
{
	memset(evo, 0, sizeof(*evo));
	struct st_options *opts = calloc(1, sizeof(*opts));
	if (opts == NULL)
		return ut_err_set(err, "%s: out of memory", st_path(db));
	int found = 0;
	int rc = st_options_read(db, opts, &found, err);
	if (rc == 0 && !found)
		rc = ut_err_set(err, "%s: no evolution row (the database was never initialised)",
				st_path(db));
	if (rc == 0) {
		evo->meta = opts->meta;
		rc = st_generations_load(db, &evo->gens, &evo->n, err);
	}
	free(opts);
	return rc;
}

/* ---- evolve.png ---- */

/*
 * The '+' of evolve.png: by mean, the recommended candidate at its mean
 * fitness, with the title band saying so; otherwise the best single run.
 */
static void mark_recommendation(const struct st_generation *gens, struct rp_evolve_layout *out)
{
	const struct st_recommendation *rec = &out->recommendation;
	out->marked = out->best;
	if (out->best >= 0)
		out->marked_fitness = gens[out->best].fitness;
	if (!rp_by_mean(rec))
		return;
	out->header = EV_HEADER_H;
	out->marked = rec->index;
	out->marked_fitness = rec->mean;
	snprintf(out->title, sizeof(out->title),
		 "recommended: generation %ld, mean %.4g " PLUS_MINUS " %.2g over %ld evaluations",
		 gens[rec->index].generation, rec->mean, rec->sd, rec->evaluations);
}

/* done_range widened to take in the '+' (a mean may lie below every point). */
static int marked_range(const struct rp_evolve_layout *lay, const struct st_generation *gens,
			size_t n, int key, double *lo, double *hi)
{
	int found = done_range(gens, n, key, lo, hi);
	if (lay->marked < 0)
		return found;
	double v = key == KEY_FITNESS ? lay->marked_fitness : gens[lay->marked].hyp.v[key];
	*lo = found ? fmin(*lo, v) : v;
	*hi = found ? fmax(*hi, v) : v;
	return 1;
}

int rp_evolve_layout(const struct meta_table *meta, const struct st_generation *gens, size_t n,
		     struct rp_evolve_layout *out)
{
	memset(out, 0, sizeof(*out));
	if (st_recommend(gens, n, &out->recommendation) != 0)
		return -1;
	const int *keys;
	int count = meta_space_keys(meta->space, &keys);
	for (int i = 0; i < count; i++) {
		if (meta->k[keys[i]].gain > 0)
			out->keys[out->panels++] = keys[i];
	}
	int cells = out->panels > 0 ? out->panels : 1;
	out->columns = 1;
	while (out->columns * out->columns < cells && out->columns < EV_COLUMNS_MAX)
		out->columns++;
	out->rows = (cells + out->columns - 1) / out->columns;
	out->width = EV_LEFT + out->columns * EV_PLOT_W + (out->columns - 1) * EV_GAP_X + EV_RIGHT;
	out->best = rp_best_index(gens, n);
	mark_recommendation(gens, out);
	out->height = out->header + out->rows * EV_CELL_H;

	double y_lo = 0, y_hi = 1;
	if (marked_range(out, gens, n, KEY_FITNESS, &y_lo, &y_hi))
		pad_range(y_lo, y_hi, 0.05, 0.05, &y_lo, &y_hi);
	for (int p = 0; p < out->panels; p++) {
		int key = out->keys[p];
		double x_lo = meta->k[key].lower, x_hi = meta->k[key].upper;
		marked_range(out, gens, n, key, &x_lo, &x_hi);
		struct rp_frame *f = &out->frames[p];
		f->left = EV_LEFT + (p % out->columns) * (EV_PLOT_W + EV_GAP_X);
		f->top = out->header + (p / out->columns) * EV_CELL_H + EV_TITLE_H;
		f->width = EV_PLOT_W;
		f->height = EV_PLOT_H;
		pad_range(x_lo, x_hi, 0.05, 0.05, &f->x_lo, &f->x_hi);
		f->y_lo = y_lo;
		f->y_hi = y_hi;
	}
	if (out->panels == 0)
		out->message = RP_MSG_NO_PANEL;
	else if (out->best < 0)
		out->message = RP_MSG_NOTHING_DONE;
	return 0;
}

/*
 * YOLOv5's hist2d: a 19 x 19 histogram of (hyp, fitness) over the done
 * generations; a point's colour is the log of its bin's count, scaled to
 * the panel's smallest and largest.
 */
struct density {
	double x_lo, x_hi, y_lo, y_hi;
	int counts[EV_HIST_BINS][EV_HIST_BINS];
	double log_max;
};

static int hist_bin(double v, double lo, double hi)
{
	if (!(hi > lo))
		return 0;
	double bin = floor((v - lo) / (hi - lo) * EV_HIST_BINS);
	if (bin < 0)
		return 0;
	if (bin >= EV_HIST_BINS) /* the maximum itself, as np.digitize - 1 clipped */
		return EV_HIST_BINS - 1;
	return (int)bin;
}

static int *density_cell(struct density *d, const struct st_generation *gen, int key)
{
	int xb = hist_bin(gen->hyp.v[key], d->x_lo, d->x_hi);
	int yb = hist_bin(gen->fitness, d->y_lo, d->y_hi);
	return &d->counts[xb][yb];
}

static void density_build(struct density *d, const struct st_generation *gens, size_t n, int key)
{
	memset(d, 0, sizeof(*d));
	done_range(gens, n, key, &d->x_lo, &d->x_hi);
	done_range(gens, n, KEY_FITNESS, &d->y_lo, &d->y_hi);
	int most = 1;
	for (size_t i = 0; i < n; i++) {
		if (!is_scattered(&gens[i]))
			continue;
		int *cell = density_cell(d, &gens[i], key);
		(*cell)++;
		if (*cell > most)
			most = *cell;
	}
	d->log_max = log(most);
}

/* Colour level in [0, 1] of a scattered generation (the least occupied bin is 0). */
static double density_level(struct density *d, const struct st_generation *gen, int key)
{
	return d->log_max > 0 ? log(*density_cell(d, gen, key)) / d->log_max : 0;
}

static void draw_panel(cairo_t *cr, const struct rp_evolve_layout *lay, int p,
		       const struct st_generation *gens, size_t n)
{
	const struct rp_frame *f = &lay->frames[p];
	int key = lay->keys[p];
	char title[128];
	if (lay->marked >= 0)
		snprintf(title, sizeof(title), "%s = %.3g", meta_name(key),
			 gens[lay->marked].hyp.v[key]);
	else
		snprintf(title, sizeof(title), "%s", meta_name(key));
	set_colour(cr, ink, 1);
	draw_text(cr, title, f->left + f->width / 2, f->top - 8, TITLE_FONT, 0.5, 1);
	struct ticks x_ticks = {4, 3, 0, 0}, y_ticks = {4, p % lay->columns == 0 ? 3 : 0, 0, 0};
	draw_x_ticks(cr, f, &x_ticks);
	draw_y_ticks(cr, f, &y_ticks);
	draw_frame_box(cr, f);
	if (lay->best < 0)
		return;
	struct density density;
	density_build(&density, gens, n, key);
	for (size_t i = 0; i < n; i++) {
		if (!is_scattered(&gens[i]))
			continue;
		double px, py;
		rp_frame_map(f, gens[i].hyp.v[key], gens[i].fitness, &px, &py);
		set_colour(cr, viridis(density_level(&density, &gens[i], key)), EV_POINT_ALPHA);
		draw_dot(cr, px, py, EV_POINT_R);
	}
	double px, py;
	rp_frame_map(f, gens[lay->marked].hyp.v[key], lay->marked_fitness, &px, &py);
	cairo_set_source_rgb(cr, 0, 0, 0);
	draw_mark(cr, px, py, EV_PLUS_HALF, 3, 0);
}

/* Text centred on (x, y), at size or smaller so that it fits in width. */
static void draw_text_fitting(cairo_t *cr, const char *text, double x, double y, double size,
			      double width)
{
	double natural = text_width(cr, text, size);
	if (natural > width)
		size *= width / natural;
	draw_text(cr, text, x, y, size, 0.5, 0.5);
}

/* The title band: the recommendation, and what the '+' and the points are. */
static void draw_evolve_header(cairo_t *cr, const struct rp_evolve_layout *lay)
{
	double width = lay->width - 20.0, x = lay->width / 2.0;
	set_colour(cr, ink, 1);
	draw_text_fitting(cr, lay->title, x, lay->header * 0.35, TITLE_FONT + 4, width);
	draw_text_fitting(cr,
			  "'+': its hyp at its mean fitness; points: single runs, "
			  "re-evaluations left out",
			  x, lay->header * 0.75, TICK_FONT, width);
}

int rp_plot_evolve(struct st_db *db, const char *path, struct ut_err *err)
{
	struct evolution evo;
	if (load_evolution(db, &evo, err) != 0) {
		free(evo.gens);
		return -1;
	}
	struct rp_evolve_layout lay;
	if (rp_evolve_layout(&evo.meta, evo.gens, evo.n, &lay) != 0) {
		free(evo.gens);
		return ut_err_set(err, "%s: out of memory", path);
	}
	struct canvas canvas;
	int rc = canvas_open(&canvas, lay.width, lay.height, path, err);
	if (rc == 0) {
		for (int p = 0; p < lay.panels; p++)
			draw_panel(canvas.cr, &lay, p, evo.gens, evo.n);
		set_colour(canvas.cr, ink, 1);
		for (int row = 0; lay.panels > 0 && row < lay.rows; row++)
			draw_text_up(canvas.cr, "fitness", 22,
				     lay.header + row * EV_CELL_H + EV_TITLE_H + EV_PLOT_H / 2.0,
				     TICK_FONT);
		if (lay.header > 0)
			draw_evolve_header(canvas.cr, &lay);
		if (lay.message != NULL)
			draw_message(canvas.cr, lay.message, lay.width / 2.0, lay.height / 2.0);
		rc = canvas_save(&canvas, path, err);
		canvas_close(&canvas);
	}
	free(evo.gens);
	return rc;
}

/* ---- fitness.png ---- */

static int is_plotted(const struct st_generation *gen)
{
	return gen->status == ST_DONE || gen->status == ST_FAILED || gen->status == ST_PRUNED;
}

/* Half width of the trend's centred window (the window is about 1/20 of the done ones). */
static size_t trend_half(size_t done)
{
	size_t half = done / 40;
	return half < 1 ? 1 : half > 25 ? 25 : half;
}

/* The headline, and the recommendation by mean under it. */
static void fitness_titles(const struct st_generation *gens, size_t n,
			   struct rp_fitness_layout *out)
{
	size_t counts[ST_STATUS_COUNT] = {0}, done = 0;
	for (size_t i = 0; i < n; i++) {
		counts[gens[i].status]++;
		done += (size_t)rp_is_done(&gens[i]);
	}
	int len = snprintf(out->title, sizeof(out->title),
			   "Fitness per generation: %zu done, %zu failed, %zu pruned", done,
			   counts[ST_FAILED], counts[ST_PRUNED]);
	long best = rp_best_index(gens, n);
	const struct st_recommendation *rec = &out->recommendation;
	if (rp_by_mean(rec))
		snprintf(out->subtitle, sizeof(out->subtitle),
			 "recommended: generation %ld, mean %.4g " PLUS_MINUS
			 " %.2g over %ld evaluations; best single run: generation %ld, %.4g",
			 gens[rec->index].generation, rec->mean, rec->sd, rec->evaluations,
			 gens[best].generation, gens[best].fitness);
	else if (best >= 0 && len > 0 && (size_t)len < sizeof(out->title))
		snprintf(out->title + len, sizeof(out->title) - (size_t)len,
			 "; best: generation %ld, %.4g", gens[best].generation, gens[best].fitness);
}

int rp_fitness_layout(const struct st_generation *gens, size_t n, struct rp_fitness_layout *out)
{
	memset(out, 0, sizeof(*out));
	if (st_recommend(gens, n, &out->recommendation) != 0)
		return -1;
	out->width = RP_FITNESS_WIDTH;
	out->height = RP_FITNESS_HEIGHT;
	struct rp_frame *f = &out->frame;
	f->left = FIT_LEFT;
	f->top = FIT_TOP;
	f->width = RP_FITNESS_WIDTH - FIT_LEFT - FIT_RIGHT;
	f->height = RP_FITNESS_HEIGHT - FIT_TOP - FIT_BOTTOM;

	double x_lo = 0, x_hi = 0, y_lo = 0, y_hi = 1;
	int any_x = 0, any_y = 0;
	for (size_t i = 0; i < n; i++) {
		if (!is_plotted(&gens[i]))
			continue;
		double g = (double)gens[i].generation;
		x_lo = any_x ? fmin(x_lo, g) : g;
		x_hi = any_x ? fmax(x_hi, g) : g;
		any_x = 1;
		if (gens[i].status != ST_FAILED && isfinite(gens[i].fitness)) {
			y_lo = any_y ? fmin(y_lo, gens[i].fitness) : gens[i].fitness;
			y_hi = any_y ? fmax(y_hi, gens[i].fitness) : gens[i].fitness;
			any_y = 1;
		}
	}
	/* generations are integers: an empty range gets one each side */
	if (x_hi - x_lo < 1) {
		x_lo -= 1;
		x_hi += 1;
	}
	pad_range(x_lo, x_hi, 0.03, 0.03, &f->x_lo, &f->x_hi);
	if (any_y)
		pad_range(y_lo, y_hi, 0.08, 0.05, &f->y_lo, &f->y_hi);
	else
		pad_range(0, 1, 0.08, 0.05, &f->y_lo, &f->y_hi);
	out->marks_y = f->top + f->height - FIT_MARKS_UP;
	if (rp_best_index(gens, n) < 0)
		out->message = RP_MSG_NOTHING_DONE;
	fitness_titles(gens, n, out);
	return 0;
}

/* The centred moving average of the done fitness values, as one line. */
static int draw_trend(cairo_t *cr, const struct rp_fitness_layout *lay,
		      const struct st_generation *gens, size_t n, struct ut_err *err)
{
	size_t done = 0;
	for (size_t i = 0; i < n; i++)
		done += (size_t)rp_is_done(&gens[i]);
	if (done < 3)
		return 0;
	size_t *index = malloc(done * sizeof(*index));
	if (index == NULL)
		return ut_err_set(err, "fitness.png: out of memory");
	done = 0;
	for (size_t i = 0; i < n; i++) {
		if (rp_is_done(&gens[i]))
			index[done++] = i;
	}
	size_t half = trend_half(done);
	cairo_new_path(cr);
	for (size_t j = 0; j < done; j++) {
		size_t from = j > half ? j - half : 0, to = j + half < done ? j + half : done - 1;
		double sum = 0;
		for (size_t k = from; k <= to; k++)
			sum += gens[index[k]].fitness;
		double px, py;
		rp_frame_map(&lay->frame, (double)gens[index[j]].generation,
			     sum / (double)(to - from + 1), &px, &py);
		cairo_line_to(cr, px, py);
	}
	free(index);
	set_colour(cr, trend_orange, 1);
	cairo_set_line_width(cr, 3);
	cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
	cairo_stroke(cr);
	return 0;
}

/*
 * The running best as a step line (matplotlib's where='post'): flat until
 * a generation beats it, up at that generation, on to the last one shown.
 */
static int draw_running_best(cairo_t *cr, const struct rp_fitness_layout *lay,
			     const struct st_generation *gens, size_t n, struct ut_err *err)
{
	if (n == 0)
		return 0;
	double *best = malloc(n * sizeof(*best));
	if (best == NULL)
		return ut_err_set(err, "fitness.png: out of memory");
	rp_running_best(gens, n, best);
	cairo_new_path(cr);
	double last_py = NAN;
	for (size_t i = 0; i < n; i++) {
		if (isnan(best[i]) || !is_plotted(&gens[i]))
			continue;
		double px, py;
		rp_frame_map(&lay->frame, (double)gens[i].generation, best[i], &px, &py);
		if (isnan(last_py))
			cairo_move_to(cr, px, py);
		else
			cairo_line_to(cr, px, last_py);
		cairo_line_to(cr, px, py);
		last_py = py;
	}
	free(best);
	set_colour(cr, best_green, 1);
	cairo_set_line_width(cr, 4);
	cairo_set_line_join(cr, CAIRO_LINE_JOIN_MITER);
	cairo_stroke(cr);
	return 0;
}

/* A filled diamond (a square on its corner) of half diagonal half. */
static void draw_diamond(cairo_t *cr, double x, double y, double half)
{
	cairo_new_path(cr);
	cairo_move_to(cr, x, y - half);
	cairo_line_to(cr, x + half, y);
	cairo_line_to(cr, x, y + half);
	cairo_line_to(cr, x - half, y);
	cairo_close_path(cr);
	cairo_fill(cr);
}

/*
 * Pruned generations that have a fitness as grey points, done ones blue on
 * top, done re-evaluations as purple diamonds.
 */
static void draw_points(cairo_t *cr, const struct rp_fitness_layout *lay,
			const struct st_generation *gens, size_t n)
{
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < n; i++) {
			const struct st_generation *gen = &gens[i];
			int pruned = gen->status == ST_PRUNED && isfinite(gen->fitness);
			if (pass == 0 ? !pruned : !rp_is_done(gen))
				continue;
			double px, py;
			rp_frame_map(&lay->frame, (double)gen->generation, gen->fitness, &px, &py);
			if (pass == 1 && gen->reevaluation) {
				set_colour(cr, reeval_purple, 0.85);
				draw_diamond(cr, px, py, FIT_DIAMOND_HALF);
				continue;
			}
			if (pass == 0)
				set_colour(cr, pruned_grey, 0.8);
			else
				set_colour(cr, done_blue, 0.75);
			draw_dot(cr, px, py, FIT_POINT_R);
		}
	}
}

/* Failed generations (red) and pruned ones without a fitness (grey) as 'x' on the bottom row. */
static void draw_marks(cairo_t *cr, const struct rp_fitness_layout *lay,
		       const struct st_generation *gens, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const struct st_generation *gen = &gens[i];
		if (gen->status == ST_FAILED)
			set_colour(cr, failed_red, 1);
		else if (gen->status == ST_PRUNED && !isfinite(gen->fitness))
			set_colour(cr, pruned_grey, 1);
		else
			continue;
		double px, py;
		rp_frame_map(&lay->frame, (double)gen->generation, lay->frame.y_lo, &px, &py);
		draw_mark(cr, px, lay->marks_y, FIT_MARK_HALF, 3, 1);
	}
}

struct legend_entry {
	const char *label;
	const struct rgb *colour;
	char shape; /* 'o' point, 'x' mark, '-' line, 'd' diamond, '+' plus */
};

/* One row of legend entries centred on row y, from the plot's left edge. */
static void draw_legend_row(cairo_t *cr, const struct rp_fitness_layout *lay, double y,
			    const struct legend_entry *entries, size_t count)
{
	double x = lay->frame.left;
	for (size_t e = 0; e < count; e++) {
		set_colour(cr, *entries[e].colour, 1);
		if (entries[e].shape == 'o') {
			draw_dot(cr, x + 20, y, FIT_POINT_R);
		} else if (entries[e].shape == 'x') {
			draw_mark(cr, x + 20, y, FIT_MARK_HALF, 3, 1);
		} else if (entries[e].shape == 'd') {
			draw_diamond(cr, x + 20, y, FIT_DIAMOND_HALF);
		} else if (entries[e].shape == '+') {
			draw_mark(cr, x + 20, y, FIT_MARK_HALF, 3, 0);
		} else {
			cairo_new_path(cr);
			cairo_move_to(cr, x, y);
			cairo_line_to(cr, x + 40, y);
			cairo_set_line_width(cr, 4);
			cairo_stroke(cr);
		}
		set_colour(cr, ink, 1);
		draw_text(cr, entries[e].label, x + 52, y, TICK_FONT, 0, 0.5);
		x += 52 + text_width(cr, entries[e].label, TICK_FONT) + 45;
	}
}

/*
 * The legend above the plot; by mean a second row above it for the
 * re-evaluations and the recommendation, and the step line is only the
 * best single run.
 */
static void draw_legend(cairo_t *cr, const struct rp_fitness_layout *lay, size_t done)
{
	int by_mean = rp_by_mean(&lay->recommendation);
	char trend[64];
	snprintf(trend, sizeof(trend), "trend (moving average of %zu)", 2 * trend_half(done) + 1);
	const struct legend_entry entries[] = {
	    {"done", &done_blue, 'o'},
	    {"pruned", &pruned_grey, 'o'},
	    {"pruned, no fitness", &pruned_grey, 'x'},
	    {"failed", &failed_red, 'x'},
	    {by_mean ? "best single run so far" : "best so far", &best_green, '-'},
	    {trend, &trend_orange, '-'},
	};
	static const struct legend_entry by_mean_entries[] = {
	    {"re-evaluation", &reeval_purple, 'd'},
	    {"recommended (mean " PLUS_MINUS " sd)", &ink, '+'},
	};
	draw_legend_row(cr, lay, lay->frame.top - 40, entries, UT_ARRAY_LEN(entries));
	if (by_mean)
		draw_legend_row(cr, lay, lay->frame.top - 76, by_mean_entries,
				UT_ARRAY_LEN(by_mean_entries));
}

/* The recommended candidate by mean: a '+' at its mean, a bar of +- 1 sd. */
static void draw_recommendation(cairo_t *cr, const struct rp_fitness_layout *lay,
				const struct st_generation *gens)
{
	const struct st_recommendation *rec = &lay->recommendation;
	if (!rp_by_mean(rec))
		return;
	double px, py, low_y, high_y;
	double generation = (double)gens[rec->index].generation;
	rp_frame_map(&lay->frame, generation, rec->mean, &px, &py);
	/* the bar stays inside the frame */
	double low = fmax(rec->mean - rec->sd, lay->frame.y_lo);
	double high = fmin(rec->mean + rec->sd, lay->frame.y_hi);
	rp_frame_map(&lay->frame, generation, low, &px, &low_y);
	rp_frame_map(&lay->frame, generation, high, &px, &high_y);
	set_colour(cr, ink, 1);
	cairo_new_path(cr);
	cairo_move_to(cr, px, low_y);
	cairo_line_to(cr, px, high_y);
	for (int end = 0; end < 2; end++) {
		cairo_move_to(cr, px - FIT_MARK_HALF / 2, end ? high_y : low_y);
		cairo_line_to(cr, px + FIT_MARK_HALF / 2, end ? high_y : low_y);
	}
	cairo_set_line_width(cr, 2);
	cairo_stroke(cr);
	draw_mark(cr, px, py, FIT_PLUS_HALF, 4, 0);
}

static void draw_fitness_titles(cairo_t *cr, const struct rp_fitness_layout *lay,
				const struct st_generation *gens, size_t n)
{
	size_t done = 0;
	for (size_t i = 0; i < n; i++)
		done += (size_t)rp_is_done(&gens[i]);
	const struct rp_frame *f = &lay->frame;
	set_colour(cr, ink, 1);
	if (lay->subtitle[0] == '\0') {
		draw_text(cr, lay->title, f->left + f->width / 2, 30, LABEL_FONT + 4, 0.5, 0);
	} else {
		draw_text(cr, lay->title, f->left + f->width / 2, 12, LABEL_FONT + 4, 0.5, 0);
		draw_text_fitting(cr, lay->subtitle, f->left + f->width / 2, 66, LABEL_FONT,
				  f->width);
	}
	draw_text(cr, "generation", f->left + f->width / 2, f->top + f->height + 60, LABEL_FONT,
		  0.5, 0);
	draw_text_up(cr, "fitness (0.1 mAP@0.5 + 0.9 mAP@0.5:0.95)", 40, f->top + f->height / 2,
		     LABEL_FONT);
	draw_legend(cr, lay, done);
}

int rp_plot_fitness(struct st_db *db, const char *path, struct ut_err *err)
{
	struct evolution evo;
	if (load_evolution(db, &evo, err) != 0) {
		free(evo.gens);
		return -1;
	}
	struct rp_fitness_layout lay;
	if (rp_fitness_layout(evo.gens, evo.n, &lay) != 0) {
		free(evo.gens);
		return ut_err_set(err, "%s: out of memory", path);
	}
	struct canvas canvas;
	int rc = canvas_open(&canvas, lay.width, lay.height, path, err);
	if (rc == 0) {
		cairo_t *cr = canvas.cr;
		struct ticks x_ticks = {10, 6, 1, 1}, y_ticks = {8, 3, 0, 1};
		draw_x_ticks(cr, &lay.frame, &x_ticks);
		draw_y_ticks(cr, &lay.frame, &y_ticks);
		rc = draw_trend(cr, &lay, evo.gens, evo.n, err);
		if (rc == 0) {
			draw_points(cr, &lay, evo.gens, evo.n);
			rc = draw_running_best(cr, &lay, evo.gens, evo.n, err);
		}
		if (rc == 0) {
			draw_recommendation(cr, &lay, evo.gens);
			draw_marks(cr, &lay, evo.gens, evo.n);
			draw_frame_box(cr, &lay.frame);
			draw_fitness_titles(cr, &lay, evo.gens, evo.n);
			if (lay.message != NULL)
				draw_message(cr, lay.message, lay.frame.left + lay.frame.width / 2,
					     lay.frame.top + lay.frame.height / 2);
			rc = canvas_save(&canvas, path, err);
		}
		canvas_close(&canvas);
	}
	free(evo.gens);
	return rc;
}

int rp_write_plots(struct st_db *db, const char *dir, struct ut_err *err)
{
	char evolve[PATH_MAX], fitness[PATH_MAX];
	if (snprintf(evolve, sizeof(evolve), "%s/evolve.png", dir) >= (int)sizeof(evolve) ||
	    snprintf(fitness, sizeof(fitness), "%s/fitness.png", dir) >= (int)sizeof(fitness))
		return ut_err_set(err, "%s: path too long", dir);
	if (ut_mkdirs(dir, err) != 0)
		return -1;
	if (rp_plot_evolve(db, evolve, err) != 0)
		return -1;
	return rp_plot_fitness(db, fitness, err);
}
