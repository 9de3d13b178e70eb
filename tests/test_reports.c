/*
 * test_reports.c - evolve.png and fitness.png from fixture databases: the
 * files are PNGs of the size their layout says, and their pixels show what
 * the data says: the black '+' at the best generation's position in every
 * panel (and not where another panel's best sits), no panel for a frozen
 * key, a running-best line that never goes down, failed generations as red
 * marks, and the documented pictures for an empty database, failures only
 * and a single generation. With re-evaluations both mark the candidate
 * recommended by mean fitness, not the luckiest single run. And `status`:
 * running rows are running only while an evolver holds the database.
 */
#include <dirent.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cairo.h>
#include <cmocka.h>
#include <fontconfig/fontconfig.h>

#include "plots.h"
#include "reports.h"

struct fixture {
	char dir[64];
	char db_path[128];
	char out_dir[128];
	struct st_db *db;
	struct st_options *opts;
};

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));
	assert_non_null(fx);
	snprintf(fx->dir, sizeof(fx->dir), "/tmp/test_reports.XXXXXX");
	assert_non_null(mkdtemp(fx->dir));
	snprintf(fx->db_path, sizeof(fx->db_path), "%s/evolution.db", fx->dir);
	snprintf(fx->out_dir, sizeof(fx->out_dir), "%s/out/run", fx->dir);
	fx->opts = calloc(1, sizeof(*fx->opts));
	assert_non_null(fx->opts);
	struct st_options *o = fx->opts;
	meta_table_default(&o->meta);
	for (int k = 0; k < META_COUNT; k++)
		o->base.v[k] = (o->meta.k[k].lower + o->meta.k[k].upper) / 2;
	snprintf(o->data, sizeof(o->data), "coco128.yaml");
	snprintf(o->trainer, sizeof(o->trainer), "fixture");
	snprintf(o->algorithm, sizeof(o->algorithm), "yolov5");
	snprintf(o->parent, sizeof(o->parent), "single");
	o->epochs = 10;
	o->generations = 300;
	o->mutation_prob = 0.8;
	o->sigma = 0.2;
	struct ut_err err;
	if (st_open(fx->db_path, 1, &fx->db, &err) != 0 || st_options_write(fx->db, o, &err) != 0)
		fail_msg("%s", err.msg);
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;
	struct ut_err err;
	st_close(fx->db);
	assert_int_equal(ut_remove_tree(fx->dir, &err), 0);
	free(fx->opts);
	free(fx);
	return 0;
}

static void rewrite_meta(struct fixture *fx)
{
	struct ut_err err;
	if (st_options_write(fx->db, fx->opts, &err) != 0)
		fail_msg("%s", err.msg);
}

/* Fraction of its bounds that key k has in generation g (spread, never 0 or 1). */
static double spread(long g, int k)
{
	return 0.1 + 0.8 * (double)((g * 37 + k * 11) % 17) / 16.0;
}

/* Fraction of its bounds of key k in the best generation: differs between panels. */
static double best_spread(int k)
{
	return 0.15 + 0.7 * (double)((k * 7) % 10) / 9.0;
}

/*
 * A generation whose key k sits at u(k) of its bounds; NAN fitness: none.
 * reevaluates >= 0: a re-evaluation of that generation (u must give its hyp).
 */
static void put_row(struct fixture *fx, long g, long reevaluates, enum st_status status,
		    double fitness, double (*u)(long, int))
{
	struct st_generation gen;
	memset(&gen, 0, sizeof(gen));
	gen.reevaluation = reevaluates >= 0;
	gen.reevaluates = reevaluates >= 0 ? reevaluates : 0;
	gen.generation = g;
	gen.parent = -1;
	gen.status = status;
	gen.has_results = isfinite(fitness);
	for (int r = 0; r < ST_RESULT_COUNT; r++)
		gen.results[r] = gen.has_results ? fitness : 0;
	gen.fitness = fitness;
	const struct meta_table *meta = &fx->opts->meta;
	for (int k = 0; k < META_COUNT; k++)
		gen.hyp.v[k] = meta->k[k].lower + u(g, k) * (meta->k[k].upper - meta->k[k].lower);
	gen.attempts = 1;
	struct ut_err err;
	if (st_generation_put(fx->db, &gen, &err) != 0)
		fail_msg("%s", err.msg);
}

static void put(struct fixture *fx, long g, enum st_status status, double fitness,
		double (*u)(long, int))
{
	put_row(fx, g, -1, status, fitness, u);
}

static double best_u(long g, int k)
{
	(void)g;
	return best_spread(k);
}

/* The main fixture: fitness going up and down, failures, pruned, one pending. */
#define BEST_GENERATION 7
static const double fixture_fitness[] = {0.20, 0.50, NAN, 0.30, 0.10, 0.15, 0.35, 0.62,
					 NAN,  0.40, NAN, 0.55, 0.60, 0.25, NAN};
static const enum st_status fixture_status[] = {
    ST_DONE,   ST_DONE, ST_FAILED, ST_DONE, ST_DONE, ST_PRUNED, ST_DONE,   ST_DONE,
    ST_FAILED, ST_DONE, ST_PRUNED, ST_DONE, ST_DONE, ST_DONE,	ST_PENDING};
#define FIXTURE_COUNT 15

static void fill_main(struct fixture *fx)
{
	for (long g = 0; g < FIXTURE_COUNT; g++)
		put(fx, g, fixture_status[g], fixture_fitness[g],
		    g == BEST_GENERATION ? best_u : spread);
}

static void load(struct fixture *fx, struct st_generation **gens, size_t *n)
{
	struct ut_err err;
	if (st_generations_load(fx->db, gens, n, &err) != 0)
		fail_msg("%s", err.msg);
}

static void plot_all(struct fixture *fx)
{
	struct ut_err err;
	if (rp_write_plots(fx->db, fx->out_dir, &err) != 0)
		fail_msg("%s", err.msg);
}

/* ---- reading the PNGs back ---- */

struct image {
	cairo_surface_t *surface;
	int width, height, stride;
	const unsigned char *data;
};

static void image_load(struct image *img, const char *dir, const char *name)
{
	char path[256];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	unsigned char magic[8] = {0};
	assert_int_equal(fread(magic, 1, 8, f), 8);
	fclose(f);
	assert_memory_equal(magic, "\x89PNG\r\n\x1a\n", 8);
	img->surface = cairo_image_surface_create_from_png(path);
	assert_int_equal(cairo_surface_status(img->surface), CAIRO_STATUS_SUCCESS);
	img->width = cairo_image_surface_get_width(img->surface);
	img->height = cairo_image_surface_get_height(img->surface);
	img->stride = cairo_image_surface_get_stride(img->surface);
	img->data = cairo_image_surface_get_data(img->surface);
	assert_non_null(img->data);
}

static void image_free(struct image *img)
{
	cairo_surface_destroy(img->surface);
}

static void rgb_at(const struct image *img, double x, double y, int rgb[3])
{
	int px = (int)floor(x), py = (int)floor(y);
	assert_true(px >= 0 && px < img->width && py >= 0 && py < img->height);
	uint32_t v;
	memcpy(&v, img->data + (size_t)py * (size_t)img->stride + (size_t)px * 4, 4);
	rgb[0] = (int)((v >> 16) & 255);
	rgb[1] = (int)((v >> 8) & 255);
	rgb[2] = (int)(v & 255);
}

static int is_dark(const struct image *img, double x, double y)
{
	int c[3];
	rgb_at(img, x, y, c);
	return c[0] < 60 && c[1] < 60 && c[2] < 60;
}

static int is_white(const struct image *img, double x, double y)
{
	int c[3];
	rgb_at(img, x, y, c);
	return c[0] > 245 && c[1] > 245 && c[2] > 245;
}

static int is_green(const struct image *img, double x, double y)
{
	int c[3];
	rgb_at(img, x, y, c);
	return c[1] > c[0] + 50 && c[1] > c[2] + 50;
}

static int is_red(const struct image *img, double x, double y)
{
	int c[3];
	rgb_at(img, x, y, c);
	return c[0] > 150 && c[1] < 110 && c[2] < 110;
}

static int is_blue(const struct image *img, double x, double y)
{
	int c[3];
	rgb_at(img, x, y, c);
	return c[2] > c[0] + 60 && c[2] > c[1] + 20;
}

static int is_purple(const struct image *img, double x, double y)
{
	int c[3];
	rgb_at(img, x, y, c);
	return c[2] > c[0] + 20 && c[0] > c[1] + 20;
}

static int is_grey(const struct image *img, double x, double y)
{
	int c[3];
	rgb_at(img, x, y, c);
	return c[0] > 110 && c[0] < 200 && abs(c[0] - c[1]) < 12 && abs(c[1] - c[2]) < 12;
}

/* Every pixel of the rectangle is white. */
static int all_white(const struct image *img, double left, double top, double right, double bottom)
{
	for (double y = top; y < bottom; y++)
		for (double x = left; x < right; x++)
			if (!is_white(img, x, y))
				return 0;
	return 1;
}

static int count_dark(const struct image *img, double left, double top, double right, double bottom)
{
	int dark = 0;
	for (double y = top; y < bottom; y++)
		for (double x = left; x < right; x++)
			dark += is_dark(img, x, y);
	return dark;
}

/* A black '+' is centred on (x, y): centre and arms dark, diagonals not. */
static int plus_at(const struct image *img, double x, double y)
{
	return is_dark(img, x, y) && is_dark(img, x + 14, y) && is_dark(img, x - 14, y) &&
	       is_dark(img, x, y + 14) && is_dark(img, x, y - 14) &&
	       !is_dark(img, x + 10, y + 10) && !is_dark(img, x - 10, y - 10);
}

/* Only evolve.png and fitness.png in dir: no temporary file left behind. */
static void assert_only_plots(const char *dir)
{
	DIR *d = opendir(dir);
	assert_non_null(d);
	int count = 0;
	const struct dirent *entry;
	while ((entry = readdir(d)) != NULL) {
		if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0)
			continue;
		assert_true(strcmp(entry->d_name, "evolve.png") == 0 ||
			    strcmp(entry->d_name, "fitness.png") == 0);
		count++;
	}
	closedir(d);
	assert_int_equal(count, 2);
}

/* ---- the series ---- */

static void assert_close(double value, double expected, double tolerance)
{
	if (!(fabs(value - expected) <= tolerance))
		fail_msg("%.17g is not %.17g (+/- %g)", value, expected, tolerance);
}

static void test_running_best_series(void **state)
{
	struct fixture *fx = *state;
	fill_main(fx);
	struct st_generation *gens;
	size_t n;
	load(fx, &gens, &n);
	assert_int_equal(n, FIXTURE_COUNT);
	double best[FIXTURE_COUNT];
	rp_running_best(gens, n, best);
	static const double expected[FIXTURE_COUNT] = {
	    0.2, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.62, 0.62, 0.62, 0.62, 0.62, 0.62, 0.62, 0.62};
	for (size_t i = 0; i < n; i++) {
		assert_close(best[i], expected[i], 1e-12);
		if (i > 0)
			assert_true(best[i] >= best[i - 1]);
	}
	assert_int_equal(rp_best_index(gens, n), BEST_GENERATION);
	free(gens);

	/* NaN before the first done one; ties keep the first (np.argmax) */
	struct st_generation few[3];
	memset(few, 0, sizeof(few));
	few[0].status = ST_FAILED;
	few[0].fitness = NAN;
	few[1].status = ST_DONE;
	few[1].fitness = 0.3;
	few[2].status = ST_DONE;
	few[2].fitness = 0.3;
	double series[3];
	rp_running_best(few, 3, series);
	assert_true(isnan(series[0]));
	assert_close(series[1], 0.3, 0);
	assert_close(series[2], 0.3, 0);
	assert_int_equal(rp_best_index(few, 3), 1);
	assert_int_equal(rp_best_index(few, 1), -1);
}

/* ---- evolve.png ---- */

static void test_evolve_best_plus(void **state)
{
	struct fixture *fx = *state;
	fill_main(fx);
	/* plot the way `yolo-evolve report` does: read-only, while nobody writes */
	st_close(fx->db);
	struct ut_err err;
	if (st_open_readonly(fx->db_path, &fx->db, &err) != 0)
		fail_msg("%s", err.msg);
	plot_all(fx);
	assert_only_plots(fx->out_dir);

	struct st_generation *gens;
	size_t n;
	load(fx, &gens, &n);
	struct rp_evolve_layout lay;
	rp_evolve_layout(&fx->opts->meta, gens, n, &lay);
	assert_int_equal(lay.panels, 25); /* 29 keys, 4 frozen in YOLOv5's meta */
	assert_int_equal(lay.columns, 5);
	assert_int_equal(lay.rows, 5);
	assert_int_equal(lay.best, BEST_GENERATION);
	/* no re-evaluations: YOLOv5's picture, the best single run marked, no title band */
	assert_int_equal(lay.recommendation.by_mean, 0);
	assert_int_equal(lay.marked, BEST_GENERATION);
	assert_close(lay.marked_fitness, fixture_fitness[BEST_GENERATION], 0);
	assert_int_equal(lay.header, 0);
	assert_string_equal(lay.title, "");
	assert_null(lay.message);
	assert_true(lay.width >= 1800 && lay.width <= 2200);

	struct image img;
	image_load(&img, fx->out_dir, "evolve.png");
	assert_int_equal(img.width, lay.width);
	assert_int_equal(img.height, lay.height);
	const struct st_generation *best = &gens[BEST_GENERATION];
	for (int p = 0; p < lay.panels; p++) {
		const struct rp_frame *f = &lay.frames[p];
		int key = lay.keys[p];
		double px, py;
		rp_frame_map(f, best->hyp.v[key], best->fitness, &px, &py);
		assert_true(px > f->left && px < f->left + f->width);
		assert_true(py > f->top && py < f->top + f->height);
		if (!plus_at(&img, px, py))
			fail_msg("panel %d (%s): no '+' at (%.1f, %.1f)", p, meta_name(key), px,
				 py);
		/* where the best sits in another panel (a different fraction) there is none */
		int other = lay.keys[(p + 1) % lay.panels];
		if (fabs(best_spread(other) - best_spread(key)) > 0.2) {
			const struct meta_bound *b = &fx->opts->meta.k[key];
			double value = b->lower + best_spread(other) * (b->upper - b->lower);
			rp_frame_map(f, value, best->fitness, &px, &py);
			assert_false(is_dark(&img, px, py));
		}
		/* the points are drawn: a done generation's centre is coloured, not white */
		rp_frame_map(f, gens[1].hyp.v[key], gens[1].fitness, &px, &py);
		assert_false(is_white(&img, px, py));
	}
	image_free(&img);
	free(gens);
}

static void test_evolve_frozen_keys(void **state)
{
	struct fixture *fx = *state;
	fill_main(fx);
	struct st_generation *gens;
	size_t n;
	load(fx, &gens, &n);
	struct rp_evolve_layout lay;

	/* all 25 mutated keys: the 25th cell holds a panel */
	plot_all(fx);
	rp_evolve_layout(&fx->opts->meta, gens, n, &lay);
	struct image img;
	image_load(&img, fx->out_dir, "evolve.png");
	const struct rp_frame last_cell = lay.frames[24], *last = &last_cell;
	assert_false(all_white(&img, last->left - 5, last->top - 40, last->left + last->width + 5,
			       last->top + last->height + 40));
	image_free(&img);

	/* freeze lr0: 24 panels, lr0 gone, the 25th cell blank */
	fx->opts->meta.k[META_lr0].gain = 0;
	rewrite_meta(fx);
	plot_all(fx);
	rp_evolve_layout(&fx->opts->meta, gens, n, &lay);
	assert_int_equal(lay.panels, 24);
	for (int p = 0; p < lay.panels; p++)
		assert_int_not_equal(lay.keys[p], META_lr0);
	assert_int_equal(lay.keys[0], META_lrf);
	image_load(&img, fx->out_dir, "evolve.png");
	assert_int_equal(img.width, lay.width);
	assert_int_equal(img.height, lay.height);
	assert_true(all_white(&img, last->left - 5, last->top - 40, last->left + last->width + 5,
			      last->top + last->height + 40));
	image_free(&img);

	/* only lr0, momentum and mixup mutate: 2 x 2 cells, the 4th blank */
	for (int k = 0; k < META_COUNT; k++)
		fx->opts->meta.k[k].gain = 0;
	fx->opts->meta.k[META_lr0].gain = 1;
	fx->opts->meta.k[META_momentum].gain = 0.3;
	fx->opts->meta.k[META_mixup].gain = 1;
	rewrite_meta(fx);
	plot_all(fx);
	rp_evolve_layout(&fx->opts->meta, gens, n, &lay);
	assert_int_equal(lay.panels, 3);
	assert_int_equal(lay.columns, 2);
	assert_int_equal(lay.rows, 2);
	assert_int_equal(lay.keys[0], META_lr0);
	assert_int_equal(lay.keys[1], META_momentum);
	assert_int_equal(lay.keys[2], META_mixup);
	image_load(&img, fx->out_dir, "evolve.png");
	assert_int_equal(img.width, lay.width);
	assert_int_equal(img.height, lay.height);
	int four_rows_height = img.height;
	assert_true(
	    all_white(&img, lay.frames[1].left - 5, lay.frames[2].top - 40, img.width, img.height));
	double px, py;
	rp_frame_map(&lay.frames[2], gens[BEST_GENERATION].hyp.v[META_mixup],
		     gens[BEST_GENERATION].fitness, &px, &py);
	assert_true(plus_at(&img, px, py));
	image_free(&img);

	/* freeze mixup too: one row of two */
	fx->opts->meta.k[META_mixup].gain = 0;
	rewrite_meta(fx);
	plot_all(fx);
	rp_evolve_layout(&fx->opts->meta, gens, n, &lay);
	assert_int_equal(lay.panels, 2);
	assert_int_equal(lay.rows, 1);
	image_load(&img, fx->out_dir, "evolve.png");
	assert_int_equal(img.height * 2, four_rows_height);
	image_free(&img);

	/* nothing mutates: one cell with its message */
	fx->opts->meta.k[META_lr0].gain = 0;
	fx->opts->meta.k[META_momentum].gain = 0;
	rewrite_meta(fx);
	plot_all(fx);
	rp_evolve_layout(&fx->opts->meta, gens, n, &lay);
	assert_int_equal(lay.panels, 0);
	assert_string_equal(lay.message, RP_MSG_NO_PANEL);
	image_load(&img, fx->out_dir, "evolve.png");
	assert_int_equal(img.width, lay.width);
	assert_int_equal(img.height, lay.height);
	assert_true(count_dark(&img, 0, img.height / 2.0 - 20, img.width, img.height / 2.0 + 20) >
		    20);
	image_free(&img);
	free(gens);
}

/* ---- fitness.png ---- */

/* The topmost running-best pixel of column x, or -1. */
static int best_line_top(const struct image *img, const struct rp_frame *f, int x)
{
	for (int y = (int)f->top + 3; y < (int)(f->top + f->height) - 3; y++)
		if (is_green(img, x, y))
			return y;
	return -1;
}

static void test_fitness_curve(void **state)
{
	struct fixture *fx = *state;
	fill_main(fx);
	plot_all(fx);
	struct st_generation *gens;
	size_t n;
	load(fx, &gens, &n);
	struct rp_fitness_layout lay;
	rp_fitness_layout(gens, n, &lay);
	assert_null(lay.message);
	assert_string_equal(lay.title, "Fitness per generation: 10 done, 2 failed, 2 pruned; best: "
				       "generation 7, 0.62");
	assert_string_equal(lay.subtitle, "");
	struct image img;
	image_load(&img, fx->out_dir, "fitness.png");
	assert_int_equal(img.width, RP_FITNESS_WIDTH);
	assert_int_equal(img.height, RP_FITNESS_HEIGHT);
	const struct rp_frame *f = &lay.frame;

	/* the running best, column by column, never goes down (y up = fitness up) */
	int previous = -1, columns = 0;
	for (int x = (int)f->left + 3; x < (int)(f->left + f->width) - 3; x++) {
		int top = best_line_top(&img, f, x);
		if (top < 0)
			continue;
		if (previous >= 0 && top > previous + 2)
			fail_msg("running best goes down at x = %d: y %d after %d", x, top,
				 previous);
		previous = top;
		columns++;
	}
	double first_x, last_x, py;
	rp_frame_map(f, 0, 0, &first_x, &py);
	rp_frame_map(f, 13, 0, &last_x, &py);
	assert_true(columns > (int)(last_x - first_x) - 8);

	/* it sits at the best so far: 0.2 after generation 0, 0.5 after 1, 0.62 after 7 */
	static const struct {
		long generation;
		double best;
	} steps[] = {{0, 0.2}, {1, 0.5}, {4, 0.5}, {7, 0.62}, {12, 0.62}};
	for (size_t s = 0; s < UT_ARRAY_LEN(steps); s++) {
		double px;
		rp_frame_map(f, (double)steps[s].generation, steps[s].best, &px, &py);
		int top = best_line_top(&img, f, (int)px + 8);
		assert_true(top >= 0);
		assert_true(fabs(top - py) <= 3);
	}
	/* and stops at the last generation shown (13; 14 is pending) */
	rp_frame_map(f, 13, 0.62, &last_x, &py);
	assert_int_equal(best_line_top(&img, f, (int)last_x + 12), -1);

	/* done points blue, pruned with a fitness grey, failed and fitness-less pruned marked */
	double px;
	rp_frame_map(f, 4, 0.10, &px, &py);
	assert_true(is_blue(&img, px, py));
	rp_frame_map(f, 13, 0.25, &px, &py);
	assert_true(is_blue(&img, px, py));
	rp_frame_map(f, 5, 0.15, &px, &py);
	assert_true(is_grey(&img, px, py));
	rp_frame_map(f, 2, 0, &px, &py);
	assert_true(is_red(&img, px, lay.marks_y));
	rp_frame_map(f, 8, 0, &px, &py);
	assert_true(is_red(&img, px, lay.marks_y));
	rp_frame_map(f, 10, 0, &px, &py);
	assert_true(is_grey(&img, px, lay.marks_y));
	assert_false(is_red(&img, px, lay.marks_y));
	/* a done generation has no mark on the bottom row (a light grid line at most) */
	rp_frame_map(f, 3, 0, &px, &py);
	assert_false(is_red(&img, px, lay.marks_y));
	assert_false(is_grey(&img, px, lay.marks_y));
	image_free(&img);
	free(gens);
}

/* ---- re-evaluations: the recommendation, not the luckiest run ---- */

/*
 * Generation 1 is the luckiest single run (0.70) but its re-evaluations
 * (3, 4) bring its mean down to 0.34; generation 2 (0.56) re-evaluated by 5
 * and 6 has the best mean, 0.5 (sd 0.053), over as many evaluations.
 */
#define LUCKY 1
#define RECOMMENDED 2
static double lucky_u(long g, int k)
{
	(void)g;
	return spread(LUCKY, k);
}

static void fill_reevaluated(struct fixture *fx)
{
	put(fx, 0, ST_DONE, 0.10, spread);
	put(fx, LUCKY, ST_DONE, 0.70, lucky_u);
	put(fx, RECOMMENDED, ST_DONE, 0.56, best_u);
	put_row(fx, 3, LUCKY, ST_DONE, 0.20, lucky_u);
	put_row(fx, 4, LUCKY, ST_DONE, 0.12, lucky_u);
	put_row(fx, 5, RECOMMENDED, ST_DONE, 0.46, best_u);
	put_row(fx, 6, RECOMMENDED, ST_DONE, 0.48, best_u);
	put(fx, 7, ST_DONE, 0.40, spread);
}

#define RECOMMENDED_TITLE "recommended: generation 2, mean 0.5 \xc2\xb1 0.053 over 3 evaluations"

static void test_evolve_recommended(void **state)
{
	struct fixture *fx = *state;
	fill_reevaluated(fx);
	plot_all(fx);
	struct st_generation *gens;
	size_t n;
	load(fx, &gens, &n);
	struct rp_evolve_layout lay;
	assert_int_equal(rp_evolve_layout(&fx->opts->meta, gens, n, &lay), 0);
	assert_int_equal(lay.best, LUCKY);
	assert_int_equal(lay.recommendation.by_mean, 1);
	assert_int_equal(lay.marked, RECOMMENDED);
	assert_int_equal(gens[lay.marked].generation, RECOMMENDED);
	assert_close(lay.marked_fitness, 0.5, 1e-12);
	assert_string_equal(lay.title, RECOMMENDED_TITLE);
	assert_true(lay.header > 0);
	assert_true(lay.frames[0].top >= lay.header);

	struct image img;
	image_load(&img, fx->out_dir, "evolve.png");
	assert_int_equal(img.width, lay.width);
	assert_int_equal(img.height, lay.height);
	/* the title band is drawn */
	assert_true(count_dark(&img, 0, 0, img.width, lay.header) > 200);
	const struct st_generation *recommended = &gens[RECOMMENDED], *lucky = &gens[LUCKY];
	for (int p = 0; p < lay.panels; p++) {
		const struct rp_frame *f = &lay.frames[p];
		int key = lay.keys[p];
		double px, py;
		/* the '+' at the recommended hyp and its mean, not its single run */
		rp_frame_map(f, recommended->hyp.v[key], 0.5, &px, &py);
		if (!plus_at(&img, px, py))
			fail_msg("panel %d (%s): no '+' at the mean (%.1f, %.1f)", p,
				 meta_name(key), px, py);
		rp_frame_map(f, recommended->hyp.v[key], recommended->fitness, &px, &py);
		assert_false(plus_at(&img, px, py));
		/* the luckiest run is a point, unmarked */
		rp_frame_map(f, lucky->hyp.v[key], lucky->fitness, &px, &py);
		assert_false(plus_at(&img, px, py));
		assert_false(is_white(&img, px, py));
		/* its re-evaluations are no points of their own */
		rp_frame_map(f, lucky->hyp.v[key], 0.20, &px, &py);
		assert_true(is_white(&img, px, py));
		rp_frame_map(f, lucky->hyp.v[key], 0.12, &px, &py);
		assert_true(is_white(&img, px, py));
	}
	image_free(&img);

	struct rp_fitness_layout fit;
	assert_int_equal(rp_fitness_layout(gens, n, &fit), 0);
	assert_string_equal(fit.title, "Fitness per generation: 8 done, 0 failed, 0 pruned");
	assert_string_equal(fit.subtitle, RECOMMENDED_TITLE "; best single run: generation 1, 0.7");
	image_load(&img, fx->out_dir, "fitness.png");
	const struct rp_frame *f = &fit.frame;
	double px, py;
	/* re-evaluations purple, the others blue */
	static const struct {
		long generation;
		double fitness;
	} again[] = {{3, 0.20}, {4, 0.12}, {5, 0.46}, {6, 0.48}};
	for (size_t a = 0; a < UT_ARRAY_LEN(again); a++) {
		rp_frame_map(f, (double)again[a].generation, again[a].fitness, &px, &py);
		assert_true(is_purple(&img, px, py));
		assert_false(is_blue(&img, px, py));
	}
	rp_frame_map(f, LUCKY, 0.70, &px, &py);
	assert_true(is_blue(&img, px + 5, py + 5)); /* off the step line through its centre */
	assert_false(plus_at(&img, px, py));
	/* the recommendation: a '+' at its mean */
	rp_frame_map(f, RECOMMENDED, 0.5, &px, &py);
	assert_true(plus_at(&img, px, py));
	image_free(&img);
	free(gens);
}

/* ---- the documented edge cases ---- */

/* evolve.png with empty panels and the message: panel 0 empty, text mid-image. */
static void assert_evolve_empty(struct fixture *fx, const struct st_generation *gens, size_t n)
{
	struct rp_evolve_layout lay;
	rp_evolve_layout(&fx->opts->meta, gens, n, &lay);
	assert_int_equal(lay.best, -1);
	assert_int_equal(lay.panels, 25);
	assert_string_equal(lay.message, RP_MSG_NOTHING_DONE);
	struct image img;
	image_load(&img, fx->out_dir, "evolve.png");
	assert_int_equal(img.width, lay.width);
	assert_int_equal(img.height, lay.height);
	const struct rp_frame *f = &lay.frames[0];
	assert_true(all_white(&img, f->left + 3, f->top + 3, f->left + f->width - 3,
			      f->top + f->height - 3));
	assert_true(count_dark(&img, img.width / 2.0 - 150, img.height / 2.0 - 20,
			       img.width / 2.0 + 150, img.height / 2.0 + 20) > 50);
	image_free(&img);
}

static void test_empty_database(void **state)
{
	struct fixture *fx = *state;
	plot_all(fx);
	assert_only_plots(fx->out_dir);
	assert_evolve_empty(fx, NULL, 0);

	struct rp_fitness_layout lay;
	rp_fitness_layout(NULL, 0, &lay);
	assert_string_equal(lay.message, RP_MSG_NOTHING_DONE);
	struct image img;
	image_load(&img, fx->out_dir, "fitness.png");
	assert_int_equal(img.width, RP_FITNESS_WIDTH);
	assert_int_equal(img.height, RP_FITNESS_HEIGHT);
	const struct rp_frame *f = &lay.frame;
	assert_true(count_dark(&img, f->left + f->width / 2 - 150, f->top + f->height / 2 - 20,
			       f->left + f->width / 2 + 150, f->top + f->height / 2 + 20) > 50);
	for (int x = (int)f->left + 3; x < (int)(f->left + f->width) - 3; x += 2)
		assert_int_equal(best_line_top(&img, f, x), -1);
	image_free(&img);
}

static void test_failures_only(void **state)
{
	struct fixture *fx = *state;
	for (long g = 0; g < 3; g++)
		put(fx, g, ST_FAILED, NAN, spread);
	plot_all(fx);
	struct st_generation *gens;
	size_t n;
	load(fx, &gens, &n);
	assert_evolve_empty(fx, gens, n);

	struct rp_fitness_layout lay;
	rp_fitness_layout(gens, n, &lay);
	assert_string_equal(lay.message, RP_MSG_NOTHING_DONE);
	struct image img;
	image_load(&img, fx->out_dir, "fitness.png");
	const struct rp_frame *f = &lay.frame;
	for (long g = 0; g < 3; g++) {
		double px, py;
		rp_frame_map(f, (double)g, 0, &px, &py);
		assert_true(is_red(&img, px, lay.marks_y));
	}
	for (int x = (int)f->left + 3; x < (int)(f->left + f->width) - 3; x += 2)
		assert_int_equal(best_line_top(&img, f, x), -1);
	image_free(&img);
	free(gens);
}

static void test_single_generation(void **state)
{
	struct fixture *fx = *state;
	put(fx, 0, ST_DONE, 0.4, best_u);
	plot_all(fx);
	struct st_generation *gens;
	size_t n;
	load(fx, &gens, &n);
	struct rp_evolve_layout lay;
	rp_evolve_layout(&fx->opts->meta, gens, n, &lay);
	assert_int_equal(lay.best, 0);
	assert_null(lay.message);
	struct image img;
	image_load(&img, fx->out_dir, "evolve.png");
	assert_int_equal(img.width, lay.width);
	assert_int_equal(img.height, lay.height);
	for (int p = 0; p < lay.panels; p++) {
		const struct rp_frame *f = &lay.frames[p];
		double px, py;
		rp_frame_map(f, gens[0].hyp.v[lay.keys[p]], 0.4, &px, &py);
		/* a range of one value is centred */
		assert_true(fabs(px - (f->left + f->width / 2)) < 1);
		assert_true(fabs(py - (f->top + f->height / 2)) < 1);
		assert_true(plus_at(&img, px, py));
	}
	image_free(&img);

	struct rp_fitness_layout fit;
	rp_fitness_layout(gens, n, &fit);
	assert_null(fit.message);
	image_load(&img, fx->out_dir, "fitness.png");
	assert_int_equal(img.width, RP_FITNESS_WIDTH);
	assert_int_equal(img.height, RP_FITNESS_HEIGHT);
	double px, py;
	rp_frame_map(&fit.frame, 0, 0.4, &px, &py);
	assert_true(fabs(px - (fit.frame.left + fit.frame.width / 2)) < 1);
	assert_true(is_blue(&img, px + 4, py + 4));
	image_free(&img);
	free(gens);
}

/* ---- status ---- */

/* What rp_print_status prints for db (malloc'ed). */
static char *status_text(struct st_db *db)
{
	char *text = NULL;
	size_t len = 0;
	FILE *mem = open_memstream(&text, &len);
	assert_non_null(mem);
	assert_int_equal(rp_print_status(db, mem), 0);
	fclose(mem);
	return text;
}

static char *file_bytes(const char *path, size_t *len)
{
	char *text;
	struct ut_err err;
	if (ut_read_file(path, &text, len, &err) != 0)
		fail_msg("%s", err.msg);
	return text;
}

/*
 * Rows `running` while their evolver holds the database are running; once
 * it is gone (killed: nothing updated them) they show as interrupted, and
 * looking writes nothing.
 */
static void test_status_stale_rows(void **state)
{
	struct fixture *fx = *state;
	put(fx, 0, ST_DONE, 0.3, spread);
	put(fx, 1, ST_RUNNING, NAN, spread);
	put(fx, 2, ST_RUNNING, NAN, spread);
	struct st_db *reader = NULL;
	struct ut_err err;
	if (st_open_readonly(fx->db_path, &reader, &err) != 0)
		fail_msg("%s", err.msg);
	char *live = status_text(reader);
	assert_non_null(strstr(live, "1 done, 0 failed, 0 pruned, 2 running, 0 interrupted"));
	assert_non_null(strstr(live, "running: generation 1"));
	assert_non_null(strstr(live, "evolver: pid "));
	free(live);

	st_close(fx->db); /* the evolver is gone, its rows stay `running` */
	fx->db = NULL;
	size_t before_len, after_len;
	char *before = file_bytes(fx->db_path, &before_len);
	char *dead = status_text(reader);
	char *after = file_bytes(fx->db_path, &after_len);
	assert_non_null(strstr(dead, "1 done, 0 failed, 0 pruned, 0 running, 2 interrupted"));
	assert_null(strstr(dead, "running: generation"));
	assert_non_null(strstr(dead, "2 generation(s) left running by an evolver that is gone"));
	assert_non_null(strstr(dead, "evolver: none is running"));
	assert_int_equal(before_len, after_len);
	assert_memory_equal(before, after, before_len);
	free(dead);
	free(before);
	free(after);
	st_close(reader);
}

/* ---- errors ---- */

static void test_errors(void **state)
{
	struct fixture *fx = *state;
	struct ut_err err = {{0}};
	char path[256];
	snprintf(path, sizeof(path), "%s/missing/evolve.png", fx->dir);
	assert_int_equal(rp_plot_evolve(fx->db, path, &err), -1);
	assert_non_null(strstr(err.msg, path));
	snprintf(path, sizeof(path), "%s/missing/fitness.png", fx->dir);
	assert_int_equal(rp_plot_fitness(fx->db, path, &err), -1);
	assert_non_null(strstr(err.msg, path));

	/* a database that was never initialised has no meta table to plot */
	char bare_path[256];
	snprintf(bare_path, sizeof(bare_path), "%s/bare.db", fx->dir);
	struct st_db *bare;
	if (st_open(bare_path, 1, &bare, &err) != 0)
		fail_msg("%s", err.msg);
	assert_int_equal(rp_write_plots(bare, fx->out_dir, &err), -1);
	assert_non_null(strstr(err.msg, "no evolution row"));
	assert_non_null(strstr(err.msg, bare_path));
	st_close(bare);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_running_best_series, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_evolve_best_plus, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_evolve_frozen_keys, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_fitness_curve, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_evolve_recommended, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_empty_database, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_failures_only, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_single_generation, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_status_stale_rows, setup, teardown),
	};
	int failed = cmocka_run_group_tests(tests, NULL, NULL);
	/* drop cairo's and fontconfig's caches, so LeakSanitizer sees only our own leaks */
	cairo_debug_reset_static_data();
	FcFini();
	return failed;
}
