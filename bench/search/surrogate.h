/*
 * surrogate.h - the real-curve objective of synth_trainer (`--objective
 * table`): learning curves of real yolo-train runs (bench/search/curves/
 * table.csv, one row per run and epoch) answered for any hyp set by kernel
 * regression over the normalised hyperparameters.
 *
 * The model. Every run i of the table is a point x_i in the normalised
 * space (sg_normalise: each key with a mutation gain on [0, 1] over its
 * meta bounds, lr0 on a log10 scale). The metrics of a hyp u at epoch e are
 * the Nadaraya-Watson mean of the runs' metrics at epoch e,
 *   m(u, e) = sum_i w_i m_i(e) / sum_i w_i,  w_i = exp(-|u - x_i|^2 / (2 h^2)),
 * where |.| scales each key's coordinate by its relevance s_k; the scales
 * (0 = the key does not matter) and the bandwidth h are chosen by
 * leave-one-out cross-validation of the final-epoch fitness (a geometric
 * grid for h, coordinate descent over s_k in {0, .25, .5, 1, 2, 4}). The
 * answer is smooth and noise-free; synth_trainer adds the measured seed
 * noise.
 */
#ifndef SG_SURROGATE_H
#define SG_SURROGATE_H

#include "meta.h"
#include "ut.h"

/* The metrics of one epoch. fitness = 0.1 map50 + 0.9 map (YOLOv5's). */
struct sg_metrics {
	double precision, recall, map50, map;
};

struct sg_table;

/*
 * Normalised coordinates of a hyp: u[k] in [0, 1] for every key k < META_COUNT
 * with a gain > 0 and upper > lower (lr0 on a log10 scale), NaN for the others.
 */
void sg_normalise(const struct meta_hyp *hyp, const struct meta_table *table, double u[META_COUNT]);

/*
 * Read a curve table (CSV with a header: generation, hyp keys by name,
 * epoch, precision, recall, map50, map; other columns ignored), normalise
 * its runs with `table` and choose the bandwidth. Every run must have the
 * same epochs 0 .. E-1, rows grouped by run. Returns 0 and *out (free with
 * sg_table_free), or -1 with a one-line err.
 */
int sg_table_load(const char *path, const struct meta_table *table, struct sg_table **out,
		  struct ut_err *err);

void sg_table_free(struct sg_table *t);

/* Number of runs and of epochs per run in the table. */
int sg_table_runs(const struct sg_table *t);
int sg_table_epochs(const struct sg_table *t);

/* What the fit chose and how well it predicts the final fitness, left out run by run. */
struct sg_fit {
	double bandwidth, scale[META_COUNT];
	double rmse, r2;     /* leave-one-out error, R^2 against the runs' mean */
	double r2_isotropic; /* R^2 with every scale 1 (one bandwidth only) */
};

void sg_table_fit(const struct sg_table *t, struct sg_fit *fit);

/*
 * Noise-free metrics of the normalised point u at epoch `epoch` (0-based)
 * of a run of `epochs` epochs: the table's epoch that lies at the same
 * fraction of the schedule, round((epoch + 1) E / epochs) - 1, clamped to
 * 0 .. E-1 (the table's own epochs when epochs == E).
 */
void sg_table_predict(const struct sg_table *t, const double u[META_COUNT], long epoch, long epochs,
		      struct sg_metrics *out);

#endif
