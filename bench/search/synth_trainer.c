/*
 * synth_trainer.c - a synthetic trainer for judging search algorithms
 * (bench/search/README.md). It obeys the trainer contract (DESIGN.md): it
 * reads hyp.yaml, writes save_dir/results.csv epoch by epoch in YOLOv5
 * v7.0's format and stops on SIGTERM (exit 143), but its metrics come from
 * a known objective over the normalised hyperparameter space, so the
 * quality of any hyp set is known without noise and a whole evolution
 * costs milliseconds.
 *
 * Usage:
 *   synth_trainer --hyp PATH --epochs N --save-dir DIR [--seed S] [--objective O]
 *       train: results.csv with noise drawn from (hyp, seed)
 *   synth_trainer --truth [--epochs N] [--objective O] --hyp PATH
 *       print the noise-free fitness (0.1 mAP@.5 + 0.9 mAP@.5:.95) of the
 *       hyp at its last epoch (default 10)
 *   synth_trainer --truth-csv [--epochs N] [--objective O] < CSV
 *       the same for every row of a CSV whose header names hyp keys (as
 *       `sqlite3 -csv -header` prints them); one value per line
 *   synth_trainer --describe [--epochs N] [--table FILE]
 *       every objective: the base hyp's and the optimum's noise-free fitness
 * The objective is --objective, else $SYNTH_OBJECTIVE, else "bowl".
 * `--objective table --table FILE` (or $SYNTH_TABLE) answers from real
 * learning curves (surrogate.h: kernel regression over the normalised
 * hyps, bench/search/curves/): the curve is the regression's, epoch by
 * epoch, the noise as below with s = TABLE_NOISE (measured seed spread of
 * the real trainer, bench/search/curves/README.md).
 *
 * The model. Each key k with a mutation gain in YOLOv5's meta table is
 * normalised to u_k in [0, 1] over its bounds (lr0 on a log10 scale). An
 * objective gives the plateau P(u), the mAP@.5:.95 a run would reach with
 * unlimited epochs. Every objective shares the learning speed
 *   k(u) = 2 exp(3 (u_lr0 - 0.75)) exp(-0.8 (u_warmup_epochs - 0.6))
 * and the curve mAP(e) = P (1 - exp(-k (e + 1) / 10)), so a large lr0 or a
 * short warmup starts fast; every objective puts the best lr0 below the
 * base's, so fast starters plateau lower and curves cross (what fools
 * early stopping). mAP@.5 = min(0.99, 1.9 mAP + 0.02).
 *
 * Noise, per run: each mAP is multiplied by (1 + s z_run + 0.03 z_epoch)
 * with s = $SYNTH_NOISE (default 0.18: our trainer's six seeds of one hyp
 * at 100 epochs end at mAP@.5 sd 0.089 around a mean of 0.474, 19 %;
 * bench/README.md), z ~ N(0, 1) from a PCG32 stream seeded by a hash of
 * the hyp values and --seed: the same hyp and seed give the same bytes.
 * $SYNTH_EPOCH_MS sleeps that long per epoch (default 0).
 */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "meta.h"
#include "pcg.h"
#include "surrogate.h"
#include "ut.h"

#define REF_EPOCHS 10.0 /* the epoch scale of the learning curve */
#define EPOCH_JITTER 0.03
#define DEFAULT_NOISE 0.18
/* the table objective's run noise: sd / mean of the real trainer's final fitness over seeds */
#define TABLE_NOISE 0.27

/* Normalised coordinates of the YOLOv5 keys (NaN: the key does not mutate). */
struct point {
	double u[META_COUNT];
};

/* One objective: its plateau over the normalised space. */
struct objective {
	const char *name;
	const char *about;
	double (*plateau)(const struct point *p);
};

#define U(key) (p->u[META_##key])

/* ((u - centre) / width)^2 */
static double sq(double u, double centre, double width)
{
	double t = (u - centre) / width;
	return t * t;
}

/* A smooth bowl: six keys matter, separably, the optimum away from the base. */
static double plateau_bowl(const struct point *p)
{
	double d = sq(U(lr0), 0.62, 0.2) + sq(U(momentum), 0.85, 0.3) + sq(U(box), 0.5, 0.35) +
		   sq(U(hsv_s), 0.55, 0.5) + sq(U(scale), 0.75, 0.4) + sq(U(mosaic), 0.8, 0.5);
	return 0.06 + 0.34 * exp(-d);
}

/*
 * A narrow curved valley: what matters is the effective step (lr0 with
 * momentum) and the balance of the loss gains (cls against obj), not each
 * key alone; moving one key at a time leaves the valley.
 */
static double plateau_ridge(const struct point *p)
{
	double step = U(lr0) + 0.8 * U(momentum);
	double d = sq(step, 1.36, 0.15) + sq(U(lr0) - 0.5 * U(momentum), 0.15, 0.35) +
		   sq(U(weight_decay), 0.3, 0.4) + sq(U(cls) - U(obj), -0.05, 0.12) +
		   sq(U(cls) + U(obj), 0.45, 0.5) + sq(U(warmup_epochs), 0.4, 0.5);
	return 0.06 + 0.34 * exp(-d);
}

/*
 * Two modes: a broad one near the base and a higher, narrower one that
 * needs augmentations the base has at 0 (mixup, degrees, copy_paste) and
 * less mosaic.
 */
static double plateau_modes(const struct point *p)
{
	double near = sq(U(lr0), 0.68, 0.2) + sq(U(hsv_v), 0.5, 0.4) + sq(U(scale), 0.6, 0.4) +
		      sq(U(translate), 0.15, 0.3);
	double far = sq(U(lr0), 0.6, 0.15) + sq(U(mixup), 0.3, 0.2) + sq(U(degrees), 0.2, 0.2) +
		     sq(U(copy_paste), 0.3, 0.25) + sq(U(mosaic), 0.5, 0.3) +
		     sq(U(scale), 0.7, 0.3);
	return 0.06 + 0.24 * exp(-near) + 0.30 * exp(-far);
}

/* Every mutable key matters a little (fixed weights and centres): noise dominates. */
static double plateau_flat(const struct point *p)
{
	double d = 0;
	int i = 0;
	for (int k = 0; k < META_COUNT; k++) {
		if (isnan(p->u[k]))
			continue;
		double centre = 0.2 + 0.6 * fmod(0.618034 * (i + 1), 1.0);
		double width = 0.6 + 0.4 * fmod(0.414214 * (i + 3), 1.0);
		d += 0.25 * sq(p->u[k], centre, width);
		i++;
	}
	return 0.10 + 0.25 * exp(-d);
}

/* The table objective answers from the curve table, not from a plateau. */
static double plateau_none(const struct point *p)
{
	(void)p;
	return 0;
}

static const struct objective objectives[] = {
    {"bowl", "6 keys, separable quadratic, optimum away from the base", plateau_bowl},
    {"ridge", "curved valley: lr0 x momentum and cls/obj balance interact", plateau_ridge},
    {"modes", "broad mode near the base, higher narrow one needing mixup/degrees/copy_paste",
     plateau_modes},
    {"flat", "all 25 mutable keys matter a little; the noise dominates", plateau_flat},
    {"table", "real yolo-train curves (--table), kernel regression", plateau_none}};

static const struct objective *objective_find(const char *name)
{
	for (size_t i = 0; i < UT_ARRAY_LEN(objectives); i++)
		if (strcmp(objectives[i].name, name) == 0)
			return &objectives[i];
	return NULL;
}

/* ---- the model ---------------------------------------------------------------- */

static void normalise(const struct meta_hyp *hyp, const struct meta_table *table, struct point *p)
{
	sg_normalise(hyp, table, p->u);
}

static double speed(const struct point *p)
{
	return 2.0 * exp(3.0 * (U(lr0) - 0.75)) * exp(-0.8 * (U(warmup_epochs) - 0.6));
}

/* Noise-free mAP@.5:.95 after epoch e (0-based). */
static double curve(const struct objective *obj, const struct point *p, long epoch)
{
	return obj->plateau(p) * (1.0 - exp(-speed(p) * (double)(epoch + 1) / REF_EPOCHS));
}

static double map50_of(double map)
{
	return fmin(0.99, 1.9 * map + 0.02);
}

/* The metrics a synthetic run reports for its mAP@.5:.95. */
static struct sg_metrics synthetic_metrics(double map)
{
	double map50 = map50_of(map);
	return (struct sg_metrics){fmin(1.0, 1.1 * map50), fmin(1.0, 0.9 * map50 + 0.05), map50,
				   map};
}

/* What is being trained: a synthetic objective, or the curve table (obj "table"). */
struct model {
	const struct objective *obj;
	const struct sg_table *table; /* NULL unless obj is "table" */
};

/* Noise-free metrics after epoch e (0-based) of a run of `epochs` epochs. */
static struct sg_metrics metrics_at(const struct model *m, const struct point *p, long epoch,
				    long epochs)
{
	struct sg_metrics out;
	if (m->table == NULL)
		return synthetic_metrics(curve(m->obj, p, epoch));
	sg_table_predict(m->table, p->u, epoch, epochs, &out);
	return out;
}

static double fitness_of(const struct sg_metrics *m)
{
	return 0.1 * m->map50 + 0.9 * m->map;
}

/* Noise-free fitness at the last epoch. */
static double truth_of(const struct model *m, const struct point *p, long epochs)
{
	struct sg_metrics last = metrics_at(m, p, epochs - 1, epochs);
	return fitness_of(&last);
}

/* ---- noise --------------------------------------------------------------------- */

/* 64-bit FNV-1a over the hyp's values and the seed: the run's noise stream. */
static uint64_t run_hash(const struct meta_hyp *hyp, uint64_t seed)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (int k = 0; k <= META_COUNT; k++) {
		uint64_t bits;
		if (k < META_COUNT)
			memcpy(&bits, &hyp->v[k], sizeof(bits));
		else
			bits = seed;
		for (int b = 0; b < 8; b++) {
			h ^= (bits >> (8 * b)) & 0xff;
			h *= 0x100000001b3ull;
		}
	}
	return h;
}

static double normal(struct ut_pcg *rng)
{
	return ut_pcg_normal(rng);
}

/* ---- the trainer --------------------------------------------------------------- */

static volatile sig_atomic_t stop_requested;

static void on_sigterm(int sig)
{
	(void)sig;
	stop_requested = 1;
}

struct options {
	const char *hyp, *save_dir, *objective, *table;
	long epochs;
	uint64_t seed;
	enum { RUN_TRAIN, RUN_TRUTH, RUN_TRUTH_CSV, RUN_DESCRIBE } mode;
};

static int write_row(FILE *out, long epoch, const struct sg_metrics *m, double lr, int header)
{
	static const char *const names[14] = {"epoch",
					      "train/box_loss",
					      "train/obj_loss",
					      "train/cls_loss",
					      "metrics/precision",
					      "metrics/recall",
					      "metrics/mAP_0.5",
					      "metrics/mAP_0.5:0.95",
					      "val/box_loss",
					      "val/obj_loss",
					      "val/cls_loss",
					      "x/lr0",
					      "x/lr1",
					      "x/lr2"};
	if (header) {
		for (int c = 0; c < 14; c++)
			fprintf(out, "%20s%s", names[c], c < 13 ? "," : "\n");
	}
	double map = m->map, p = 1.0 - map / 0.7;
	double values[14] = {(double)epoch,
			     0.1 * (0.5 + 0.5 * p),
			     0.03 * (0.7 + 0.3 * p),
			     0.02 * (0.4 + 0.6 * p),
			     m->precision,
			     m->recall,
			     m->map50,
			     map,
			     0.105 * (0.5 + 0.5 * p),
			     0.0315 * (0.7 + 0.3 * p),
			     0.021 * (0.4 + 0.6 * p),
			     lr,
			     lr,
			     lr};
	fprintf(out, "%20.0f", values[0]);
	for (int c = 1; c < 14; c++)
		fprintf(out, ",%20.5g", values[c]);
	fputc('\n', out);
	return fflush(out) == 0 ? 0 : -1;
}

/* One metric of a noisy run: the noise-free value times the run's and the epoch's factor. */
static double noisy(double value, double factor, double ceiling)
{
	return fmin(ceiling, fmax(0.0, value * factor));
}

static int train(const struct options *o, const struct model *model, const struct meta_hyp *hyp,
		 const struct point *p)
{
	char path[4096];
	struct ut_err err;
	if (ut_mkdirs(o->save_dir, &err) != 0) {
		fprintf(stderr, "synth_trainer: %s\n", err.msg);
		return 1;
	}
	snprintf(path, sizeof(path), "%s/results.csv", o->save_dir);
	FILE *out = fopen(path, "w");
	if (out == NULL) {
		fprintf(stderr, "synth_trainer: %s: %s\n", path, strerror(errno));
		return 1;
	}
	const char *noise_env = getenv("SYNTH_NOISE"), *ms_env = getenv("SYNTH_EPOCH_MS");
	double noise = noise_env ? atof(noise_env) : model->table ? TABLE_NOISE : DEFAULT_NOISE;
	long epoch_ms = ms_env ? atol(ms_env) : 0;
	struct ut_pcg rng;
	ut_pcg_seed(&rng, run_hash(hyp, o->seed), 0x5eed);
	double run_factor = 1.0 + noise * normal(&rng);
	int rc = 0;
	for (long e = 0; e < o->epochs && rc == 0; e++) {
		if (epoch_ms > 0)
			nanosleep(&(struct timespec){epoch_ms / 1000, (epoch_ms % 1000) * 1000000L},
				  NULL);
		if (stop_requested)
			break;
		double factor = run_factor + EPOCH_JITTER * normal(&rng);
		struct sg_metrics clean = metrics_at(model, p, e, o->epochs), m;
		if (model->table == NULL)
			m = synthetic_metrics(noisy(clean.map, factor, 0.99));
		else
			m = (struct sg_metrics){
			    noisy(clean.precision, factor, 1.0), noisy(clean.recall, factor, 1.0),
			    noisy(clean.map50, factor, 1.0), noisy(clean.map, factor, 1.0)};
		double lr = hyp->v[META_lr0] * (1.0 - (double)e / (double)o->epochs);
		rc = write_row(out, e, &m, lr, e == 0);
		printf("epoch %ld/%ld mAP %.5f\n", e + 1, o->epochs, m.map);
		fflush(stdout);
	}
	if (fclose(out) != 0 || rc != 0) {
		fprintf(stderr, "synth_trainer: %s: write error\n", path);
		return 1;
	}
	return stop_requested ? 128 + SIGTERM : 0;
}

/* Noise-free fitness at the last epoch for every CSV row on stdin. */
static int truth_csv(const struct options *o, const struct model *model,
		     const struct meta_table *table)
{
	char *text = NULL;
	size_t len = 0, cap = 0;
	for (int c; (c = getchar()) != EOF;) {
		if (len + 1 >= cap) {
			cap = cap ? cap * 2 : 65536;
			char *grown = realloc(text, cap);
			if (grown == NULL) {
				free(text);
				return 1;
			}
			text = grown;
		}
		text[len++] = (char)c;
	}
	if (text != NULL)
		text[len] = '\0'; /* room kept: len + 1 < cap */
	int rc = 0;
	int col_key[256];
	int ncols = 0, line = 0;
	struct meta_hyp hyp;
	char *save = NULL;
	for (char *row = text ? strtok_r(text, "\n", &save) : NULL; row != NULL;
	     row = strtok_r(NULL, "\n", &save), line++) {
		char *cell_save = NULL;
		int c = 0;
		for (int k = 0; k < META_ALL; k++)
			hyp.v[k] = k == META_anchors ? 3.0 : NAN;
		for (char *cell = strtok_r(row, ",\r", &cell_save); cell != NULL && c < 256;
		     cell = strtok_r(NULL, ",\r", &cell_save), c++) {
			if (line == 0)
				col_key[c] = meta_find(cell);
			else if (c < ncols && col_key[c] >= 0)
				hyp.v[col_key[c]] = strtod(cell, NULL);
		}
		if (line == 0) {
			ncols = c;
			int seen[META_ALL] = {0};
			for (int i = 0; i < ncols; i++)
				if (col_key[i] >= 0)
					seen[col_key[i]] = 1;
			for (int k = 0; k < META_COUNT && rc == 0; k++) {
				/* anchors may be missing, as in hyp.yaml (3) */
				if (table->k[k].gain > 0 && !seen[k] && k != META_anchors) {
					fprintf(stderr,
						"synth_trainer: --truth-csv: no column '%s'\n",
						meta_name(k));
					rc = 2;
				}
			}
			if (rc != 0)
				break;
			continue;
		}
		struct point p;
		normalise(&hyp, table, &p);
		printf("%.6f\n", truth_of(model, &p, o->epochs));
	}
	free(text);
	return rc;
}

/* The best noise-free fitness that random restarts of a small hill climb find. */
static double best_seen(const struct model *m, const struct point *p0, long epochs, uint64_t stream)
{
	double best = 0;
	struct ut_pcg rng;
	ut_pcg_seed(&rng, 12345, stream);
	struct point p = *p0, q;
	/* the table's regression costs a pass over its runs: fewer steps there */
	int restarts = m->table ? 10 : 40, steps = m->table ? 1000 : 4000;
	double decay = m->table ? 0.996 : 0.999;
	for (int restart = 0; restart < restarts; restart++) {
		for (int k = 0; k < META_COUNT; k++)
			if (!isnan(p.u[k]))
				p.u[k] = ut_pcg_uniform(&rng);
		double current = truth_of(m, &p, epochs);
		for (int step = 0; step < steps; step++) {
			q = p;
			double size = 0.2 * pow(decay, step);
			for (int k = 0; k < META_COUNT; k++)
				if (!isnan(q.u[k]))
					q.u[k] = fmin(1, fmax(0, q.u[k] + size * normal(&rng)));
			double f = truth_of(m, &q, epochs);
			if (f > current) {
				current = f;
				p = q;
			}
		}
		best = fmax(best, current);
	}
	return best;
}

/*
 * Every objective's base and best noise-free fitness (the best: a lower
 * bound of the optimum); the table objective only when a table is loaded.
 */
static int describe(const struct options *o, const struct meta_table *table,
		    const struct meta_hyp *base, const struct sg_table *curves)
{
	struct point p0;
	normalise(base, table, &p0);
	printf("%-8s %10s %10s  %s\n", "name", "base", "best_seen", "what it is");
	for (size_t i = 0; i < UT_ARRAY_LEN(objectives); i++) {
		struct model m = {&objectives[i], NULL};
		if (strcmp(m.obj->name, "table") == 0) {
			if (curves == NULL)
				continue;
			m.table = curves;
		}
		printf("%-8s %10.5f %10.5f  %s\n", m.obj->name, truth_of(&m, &p0, o->epochs),
		       best_seen(&m, &p0, o->epochs, i), m.obj->about);
	}
	if (curves != NULL) {
		struct sg_fit fit;
		sg_table_fit(curves, &fit);
		printf("table: %d runs x %d epochs, bandwidth %.4f, leave-one-out final fitness "
		       "rmse %.5f, R^2 %.3f (one bandwidth for every key: %.3f)\nscales:",
		       sg_table_runs(curves), sg_table_epochs(curves), fit.bandwidth, fit.rmse,
		       fit.r2, fit.r2_isotropic);
		for (int k = 0; k < META_COUNT; k++)
			if (!isnan(p0.u[k]) && fit.scale[k] != 1)
				printf(" %s %g", meta_name(k), fit.scale[k]);
		printf(" (the others 1)\n");
	}
	return 0;
}

static int usage(const char *why)
{
	fprintf(stderr,
		"synth_trainer: %s\nusage: synth_trainer --hyp PATH --epochs N --save-dir DIR "
		"[--seed S] [--objective O]\n"
		"       synth_trainer --truth --hyp PATH [--epochs N] [--objective O]\n"
		"       synth_trainer --truth-csv [--epochs N] [--objective O] < hyps.csv\n"
		"       synth_trainer --describe [--epochs N] [--table FILE]\n"
		"       (--objective table needs --table FILE or $SYNTH_TABLE)\n",
		why);
	return 2;
}

/* Options as "--opt value" or "--opt=value"; unknown ones (a template's extras) are refused. */
static int parse(int argc, char **argv, struct options *o)
{
	o->epochs = 10;
	o->objective = getenv("SYNTH_OBJECTIVE") ? getenv("SYNTH_OBJECTIVE") : "bowl";
	o->table = getenv("SYNTH_TABLE");
	for (int i = 1; i < argc; i++) {
		char name[64];
		const char *arg = argv[i], *value = NULL;
		const char *eq = strchr(arg, '=');
		snprintf(name, sizeof(name), "%.*s", eq ? (int)(eq - arg) : 63, arg);
		if (strcmp(name, "--truth") == 0 || strcmp(name, "--truth-csv") == 0 ||
		    strcmp(name, "--describe") == 0) {
			o->mode = name[2] == 'd'		 ? RUN_DESCRIBE
				  : strcmp(name, "--truth") == 0 ? RUN_TRUTH
								 : RUN_TRUTH_CSV;
			continue;
		}
		if (eq)
			value = eq + 1;
		else if (i + 1 < argc)
			value = argv[++i];
		else
			return usage("an option lacks its value");
		if (strcmp(name, "--hyp") == 0)
			o->hyp = value;
		else if (strcmp(name, "--save-dir") == 0)
			o->save_dir = value;
		else if (strcmp(name, "--objective") == 0)
			o->objective = value;
		else if (strcmp(name, "--table") == 0)
			o->table = value;
		else if (strcmp(name, "--epochs") == 0)
			o->epochs = atol(value);
		else if (strcmp(name, "--seed") == 0)
			o->seed = strtoull(value, NULL, 10);
		else
			return usage("unknown option");
	}
	if (o->epochs < 1)
		return usage("--epochs must be >= 1");
	return 0;
}

/* The curve table when the objective needs it or --describe is given one; 0, or 2 on error. */
static int load_table(const struct options *o, const struct meta_table *table,
		      struct sg_table **curves)
{
	struct ut_err err;
	*curves = NULL;
	int needed = strcmp(o->objective, "table") == 0;
	if (!needed && !(o->mode == RUN_DESCRIBE && o->table != NULL))
		return 0;
	if (o->table == NULL)
		return usage("--objective table needs --table FILE (or $SYNTH_TABLE)");
	if (sg_table_load(o->table, table, curves, &err) != 0) {
		fprintf(stderr, "synth_trainer: %s\n", err.msg);
		return 2;
	}
	return 0;
}

/* Run one mode with a loaded model. */
static int run_mode(const struct options *o, const struct model *model,
		    const struct meta_table *table)
{
	struct meta_hyp hyp;
	struct ut_err err;
	if (o->mode == RUN_TRUTH_CSV)
		return truth_csv(o, model, table);
	if (o->mode == RUN_DESCRIBE) {
		char base[4096];
		if (ut_data_file("data/hyps/hyp.scratch-low.yaml", base, sizeof(base)) != 0 ||
		    meta_hyp_read(base, table, &hyp, &err) != 0)
			return usage("hyp.scratch-low.yaml not found");
		return describe(o, table, &hyp, model->table);
	}
	if (o->hyp == NULL)
		return usage("--hyp is required");
	if (meta_hyp_read(o->hyp, table, &hyp, &err) != 0) {
		fprintf(stderr, "synth_trainer: %s\n", err.msg);
		return 2;
	}
	struct point p;
	normalise(&hyp, table, &p);
	if (o->mode == RUN_TRUTH) {
		printf("%.6f\n", truth_of(model, &p, o->epochs));
		return 0;
	}
	if (o->save_dir == NULL)
		return usage("--save-dir is required");
	struct sigaction sa = {.sa_handler = on_sigterm};
	sigaction(SIGTERM, &sa, NULL);
	return train(o, model, &hyp, &p);
}

int main(int argc, char **argv)
{
	struct options o = {0};
	if (parse(argc, argv, &o) != 0)
		return 2;
	struct model model = {objective_find(o.objective), NULL};
	if (model.obj == NULL) {
		fprintf(stderr,
			"synth_trainer: unknown objective '%s' (bowl, ridge, modes, flat, table)\n",
			o.objective);
		return 2;
	}
	static struct meta_table table;
	meta_table_default(&table);
	struct sg_table *curves;
	if (load_table(&o, &table, &curves) != 0)
		return 2;
	model.table = strcmp(o.objective, "table") == 0 || o.mode == RUN_DESCRIBE ? curves : NULL;
	int rc = run_mode(&o, &model, &table);
	sg_table_free(curves);
	return rc;
}
