/*
 * plots.h - the pictures of an evolution, drawn with cairo straight from the
 * database, at any moment of a run.
 *
 *   evolve.png   YOLOv5's layout: one small scatter panel per mutated
 *                hyperparameter (gain > 0 in the evolution's meta table;
 *                frozen keys get no panel), hyp value on x against fitness
 *                on y for every done generation, points coloured by local
 *                density (YOLOv5's hist2d: log of a 19x19 histogram count,
 *                viridis), the best generation marked with a large black '+'
 *                and each panel titled "name = best value" (%.3g). Panels are
 *                400 px cells (2 inches at 200 dpi, as YOLOv5's figure) in
 *                ceil(sqrt(n)) columns, at most 5: 25 panels give 2000 px x
 *                2000 px, 26 to 29 panels 5 x 6 cells like YOLOv5.
 *   fitness.png  fitness per generation: done generations as blue points,
 *                pruned ones grey (at their fitness, or on the bottom row if
 *                they have none), failed ones as red 'x' on the bottom row,
 *                the running best as a green step line, a moving-average
 *                trend in orange, axes, ticks, labels and a legend.
 *
 * "Done" means status done with a finite fitness; the best generation is the
 * done one with the highest fitness, the first on ties (np.argmax).
 *
 * With re-evaluation rows (--algorithm robust or halving: a generation's hyp
 * trained again with another seed) the plots show what the evolution
 * recommends (st_recommend: the best mean fitness among the candidates
 * evaluated most often), not the luckiest single run. evolve.png then gets
 * a title band "recommended: generation G, mean F ± sd over k evaluations",
 * its '+' marks that candidate's hyp at its mean fitness, and the
 * re-evaluations are no points of their own (they repeat their original's
 * hyp). fitness.png draws the re-evaluations as purple diamonds, the
 * recommendation as a black '+' at its mean with a bar of +- 1 sd, names it
 * in a second title line, and calls its step line "best single run so far".
 * Without re-evaluations both pictures are YOLOv5's, as described above.
 *
 * Nothing done yet (an empty database, only failures): both files are still
 * written, at the size they will have later, with empty axes and the message
 * "no finished generation yet" in the middle (fitness.png still shows the
 * failed and pruned generations). A meta table with every gain 0 gives a
 * one-cell evolve.png saying "no mutated hyperparameter". A database
 * without its evolution row (never initialised) is an error.
 *
 * Usage:
 *     struct ut_err err;
 *     if (rp_write_plots(db, "runs/evolve/exp", &err) != 0)
 *         fprintf(stderr, "error: %s\n", err.msg);
 *
 * The layout functions expose where things land in the image, so tests (and
 * anyone adding marks) can compute the pixel of a data point.
 */
#ifndef RP_PLOTS_H
#define RP_PLOTS_H

#include <stddef.h>

#include "store.h"

#define RP_MSG_NOTHING_DONE "no finished generation yet"
#define RP_MSG_NO_PANEL "no mutated hyperparameter (every gain is 0)"

/* fitness.png is always this size. */
#define RP_FITNESS_WIDTH 2000
#define RP_FITNESS_HEIGHT 1200

/*
 * A plot area of the image and the data it shows: x_lo..x_hi spans
 * left..left + width, y_lo..y_hi spans top + height (bottom) up to top.
 */
struct rp_frame {
	double left, top, width, height; /* pixels */
	double x_lo, x_hi, y_lo, y_hi;	 /* data */
};

/* Pixel position (*px, *py) of the data point (x, y) in frame. */
void rp_frame_map(const struct rp_frame *frame, double x, double y, double *px, double *py);

/* 1 if gen counts as done for the plots: status done and a finite fitness. */
int rp_is_done(const struct st_generation *gen);

/* Index in gens of the best done generation, or -1 if none is done. */
long rp_best_index(const struct st_generation *gens, size_t n);

/*
 * best[i] = the highest fitness among the done generations in gens[0..i],
 * NaN before the first one; never decreases. fitness.png draws its step line
 * from this series.
 */
void rp_running_best(const struct st_generation *gens, size_t n, double *best);

/* 1 if rec recommends a candidate by its mean fitness over re-evaluations. */
int rp_by_mean(const struct st_recommendation *rec);

/* Where evolve.png puts everything. Panel p is in row p / columns. */
struct rp_evolve_layout {
	int width, height; /* image, pixels */
	int header;	   /* title band above the first row; 0 (no title) unless by mean */
	int columns, rows;
	int panels;			    /* keys with gain > 0 */
	int keys[META_ALL];		    /* meta key of each panel */
	struct rp_frame frames[META_COUNT]; /* plot area of each panel */
	long best;			    /* index in gens of the best single run, -1: none */
	struct st_recommendation recommendation;
	long marked;	       /* index in gens of the '+': the recommendation by mean, else best */
	double marked_fitness; /* its y: the mean fitness by mean, else its fitness */
	char title[160];       /* drawn in the header band; "" without one */
	const char *message;   /* drawn mid-image, NULL when there is data */
};

/*
 * The layout of evolve.png for this meta table and these generations (in
 * st_generations_load's order). The x range of a panel spans its key's
 * values over the done generations (re-evaluations aside), the y range
 * (shared) their fitness and the marked fitness, each padded by 5%; with
 * nothing done, x spans the key's bounds and y 0..1. 0, or -1 when out of
 * memory.
 */
int rp_evolve_layout(const struct meta_table *meta, const struct st_generation *gens, size_t n,
		     struct rp_evolve_layout *out);

/* Where fitness.png puts everything. */
struct rp_fitness_layout {
	int width, height;     /* RP_FITNESS_WIDTH x RP_FITNESS_HEIGHT */
	struct rp_frame frame; /* x: generation, y: fitness */
	double marks_y;	       /* pixel row of the failed (and fitness-less pruned) marks */
	struct st_recommendation recommendation;
	char title[192];     /* the counts, and the best single run unless by mean */
	char subtitle[192];  /* the recommendation by mean; "" otherwise */
	const char *message; /* NULL when a generation is done */
};

/* The layout of fitness.png. 0, or -1 when out of memory. */
int rp_fitness_layout(const struct st_generation *gens, size_t n, struct rp_fitness_layout *out);

/*
 * Draw evolve.png / fitness.png of db into path, atomically (a temporary
 * file in the same folder, then rename). 0 on success, -1 with err set.
 */
int rp_plot_evolve(struct st_db *db, const char *path, struct ut_err *err);
int rp_plot_fitness(struct st_db *db, const char *path, struct ut_err *err);

/* Both, as dir/evolve.png and dir/fitness.png; dir is created if missing. */
int rp_write_plots(struct st_db *db, const char *dir, struct ut_err *err);

#endif
