/*
 * store.h - the evolution database (SQLite), the replacement for YOLOv5's
 * evolve.csv. One file per evolution, WAL mode, every write in a
 * transaction, schema version in PRAGMA user_version with forward
 * migrations. The table and column names are user interface: people query
 * them with sqlite3 (see DESIGN.md and the README).
 *
 * An open database holds an exclusive lock file (<db>.lock, flock) so a
 * second yolo-evolve on the same database refuses to start; the lock dies
 * with the process, so a killed evolver never blocks its own resume. The
 * holder also shows itself as a record lock on that file, which readers
 * test (st_writer_alive) to tell running rows from a dead evolver's.
 */
#ifndef ST_STORE_H
#define ST_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "meta.h"
#include "ut.h"

#define ST_STR 1024
#define ST_SCHEMA_VERSION 4

struct st_db;

enum st_status {
	ST_PENDING,
	ST_RUNNING,
	ST_DONE,
	ST_FAILED,
	ST_PRUNED,
	ST_INTERRUPTED,
	ST_STATUS_COUNT
};

const char *st_status_name(enum st_status status);
int st_status_parse(const char *name, enum st_status *out);

/* The evolution's options: one row, written at creation, read on resume. */
struct st_options {
	char data[ST_STR], cfg[ST_STR], weights[ST_STR], hyp_path[ST_STR];
	char device[ST_STR], project[ST_STR], name[ST_STR], trainer[ST_STR];
	char algorithm[64], parent[64], evolve_keys[ST_STR];
	char devices[ST_STR];	 /* "0,1,2" or "" for no GPU pinning */
	char launcher[64];	 /* local | slurm */
	char slurm_args[ST_STR]; /* extra srun options */
	char prune[64];		 /* none | median | asha */
	char python[ST_STR];	 /* interpreter of the yolov5:DIR template */
	char ga_dir[ST_STR];	 /* hyp yamls seeding the GA population */
	long epochs, imgsz, batch, parallel, top, generations;
	long per_device, slurm_submit, prune_warmup, population;
	long lag;    /* breeding lag; 0 or < parallel: the number of slots */
	long budget; /* trainer epochs to spend at most (evolution.budget); 0: no budget */
	double mutation_prob, sigma, timeout;
	long retries;
	uint64_t seed;
	struct meta_hyp base;
	struct meta_table meta;
};

/* The 7 results YOLOv5 records per generation, in evolve.csv order. */
#define ST_RESULTS(X)                                                                              \
	X(precision, "metrics/precision")                                                          \
	X(recall, "metrics/recall")                                                                \
	X(map50, "metrics/mAP_0.5")                                                                \
	X(map, "metrics/mAP_0.5:0.95")                                                             \
	X(val_box, "val/box_loss")                                                                 \
	X(val_obj, "val/obj_loss")                                                                 \
	X(val_cls, "val/cls_loss")

enum st_result {
#define ST_RESULT_ENUM(col, csv) ST_R_##col,
	ST_RESULTS(ST_RESULT_ENUM)
#undef ST_RESULT_ENUM
	    ST_RESULT_COUNT
};
/* Column name and YOLOv5 csv name of result r. */
const char *st_result_column(int r);
const char *st_result_csv_name(int r);

/* One candidate (one row of `generations`). */
struct st_generation {
	long generation;
	long parent;	 /* -1: NULL */
	long population; /* GA population index; -1: NULL (not the GA) */
	/*
	 * A re-evaluation (--algorithm robust): the hyp of generation
	 * `reevaluates` trained again with another seed, a row of its own.
	 * reevaluation 0: not one (column reevaluates NULL).
	 */
	int reevaluation;
	long reevaluates;
	enum st_status status;
	int has_results;
	double results[ST_RESULT_COUNT];
	double fitness;
	struct meta_hyp hyp;
	uint64_t seed;
	char device[64], host[256], save_dir[ST_STR], error[ST_STR];
	long pid;	     /* trainer pid (process group) while running, 0 if none */
	long long pid_start; /* its start time (clock ticks), to spot pid reuse */
	double started_at, finished_at, seconds; /* 0: NULL */
	int has_exit_status;
	int exit_status; /* exit code, or 128 + signal */
	long attempts;
	long epochs_done;
};

/*
 * The trainer epochs of the budget (--budget): epochs_done of the finished
 * candidates (done, failed, pruned: what their last attempt trained, as
 * recorded), *spent, plus for each running, pending or interrupted one the
 * epochs it may still take, max(epochs, epochs_done), *reserved. A new
 * candidate fits while spent + reserved + epochs <= budget. Either pointer
 * may be NULL.
 */
void st_budget_count(const struct st_generation *gens, size_t n, long epochs, long *spent,
		     long *reserved);

/* The 14 columns of YOLOv5's results.csv, stored per epoch. */
#define ST_EPOCH_COLS 14
extern const char *const st_epoch_csv_names[ST_EPOCH_COLS];

/*
 * Open (create = 1: create if missing) the database at path, migrate it to
 * the current schema and take its lock. Fails with a clear message if
 * another process holds the lock or the file is not a yolo-evolve database.
 */
int st_open(const char *path, int create, struct st_db **out, struct ut_err *err);
/*
 * Open read-only without the lock (status, export, reports, sqlite3-like
 * use). A file of an older schema version is read as it is, never migrated.
 */
int st_open_readonly(const char *path, struct st_db **out, struct ut_err *err);
/*
 * Does a yolo-evolve hold the database's lock now, i.e. are its `running`
 * rows really running? 1 yes (its pid in *pid if not NULL and known, else
 * 0), 0 no, -1 cannot tell (treat as yes). Tests the lock without taking
 * it and writes nothing; a handle from st_open is the holder itself.
 */
int st_writer_alive(const struct st_db *db, long *pid);
void st_close(struct st_db *db);
const char *st_path(const struct st_db *db);
/* The hyperparameter space of the evolution row (YOLOv5's until it is written or read). */
enum meta_space st_space(const struct st_db *db);
/*
 * Is the file at the database's path still the one opened? SQLite would go
 * on writing into a deleted or replaced file and lose everything silently.
 */
int st_check_file(const struct st_db *db, struct ut_err *err);

/* The evolution row. read returns 1 in *found if present. */
int st_options_write(struct st_db *db, const struct st_options *opts, struct ut_err *err);
int st_options_read(struct st_db *db, struct st_options *opts, int *found, struct ut_err *err);
/* Update only the target number of generations (after --generations on resume). */
int st_options_set_generations(struct st_db *db, long generations, struct ut_err *err);
/* Update only the epoch budget (after --budget on resume; 0: none). */
int st_options_set_budget(struct st_db *db, long budget, struct ut_err *err);
/*
 * Why the evolution stopped by itself (evolution.stop_reason, with
 * stopped_at): write NULL or "" to clear it. read gives "" when nothing is
 * recorded (or the file predates the column).
 */
int st_stop_write(struct st_db *db, const char *reason, struct ut_err *err);
int st_stop_read(struct st_db *db, char *reason, size_t size, struct ut_err *err);

/* Insert or replace a whole generation row (one transaction). */
int st_generation_put(struct st_db *db, const struct st_generation *gen, struct ut_err *err);
/*
 * All generations ordered by generation; *out is malloc'ed (free it).
 */
int st_generations_load(struct st_db *db, struct st_generation **out, size_t *n,
			struct ut_err *err);
/* Record one epoch row (values in results.csv column order). */
int st_epoch_put(struct st_db *db, long generation, const double row[ST_EPOCH_COLS],
		 struct ut_err *err);
/* Forget the epochs of a generation (before a retry). */
int st_epochs_clear(struct st_db *db, long generation, struct ut_err *err);
/*
 * The rows of `epochs` for one generation (-1: all), each as generation then
 * the 14 values; *out is malloc'ed, n rows of 1 + ST_EPOCH_COLS doubles.
 */
int st_epochs_load(struct st_db *db, long generation, double **out, size_t *n, struct ut_err *err);

/* Run fn inside one transaction (BEGIN IMMEDIATE ... COMMIT / ROLLBACK). */
int st_transaction(struct st_db *db, int (*fn)(struct st_db *, void *), void *arg,
		   struct ut_err *err);

/* The raw handle, for tests and read-only queries. */
struct sqlite3 *st_handle(struct st_db *db);

/*
 * A parsed CSV table as YOLOv5 writes them: a header of names (whitespace
 * stripped) and rows of numbers. Cells that are not numbers are NaN and
 * counted in bad_cells.
 */
struct st_csv_table {
	size_t ncols, nrows;
	char **names;
	double *cells; /* nrows * ncols */
	long *lines;   /* source line of each row */
	size_t bad_cells;
	long first_bad_line;
	size_t first_bad_col;
	int ragged; /* a row had a different number of cells */
	long ragged_line;
};
int st_csv_parse(const char *text, size_t len, const char *source, struct st_csv_table *out,
		 struct ut_err *err);
void st_csv_free(struct st_csv_table *table);
/* Column index by (stripped) name, or -1. */
long st_csv_column(const struct st_csv_table *table, const char *name);

/*
 * Import a YOLOv5 evolve.csv into a database that has its evolution row:
 * every row becomes a `done` generation numbered after the existing ones.
 * Columns are matched by name; an unknown or missing hyp column (anchors
 * may be missing: 3), a non-number or an out-of-bounds value is an error
 * naming the file, line and column; nothing is imported then.
 */
int st_import_evolve_csv(struct st_db *db, const char *path, const struct meta_table *table,
			 long *imported, struct ut_err *err);
/*
 * The candidate an evolution recommends, from its rows (any status; only
 * done ones with results count). With re-evaluation rows (--algorithm
 * robust) a candidate is an original row and the rows re-evaluating it,
 * and the recommendation is the best mean fitness among the candidates
 * evaluated most often (ties: the older): by_mean 1, with the mean, the
 * sample sd and the count. Otherwise YOLOv5's rule, the best single run
 * (the first maximum of fitness): by_mean 0, evaluations 1. index is into
 * gens, -1 when nothing is done. Returns -1 only when out of memory.
 */
struct st_recommendation {
	long index;
	int by_mean;
	long evaluations;
	double mean, sd;
};
int st_recommend(const struct st_generation *gens, size_t n, struct st_recommendation *out);

/* evolve.csv of the done generations, byte-for-byte as YOLOv5 writes it. */
int st_export_evolve_csv(struct st_db *db, FILE *out, struct ut_err *err);
/*
 * hyp_evolve.yaml of the best done generation with YOLOv5's comment header.
 * Returns -1 with a message if no generation is done.
 */
int st_export_hyp_evolve(struct st_db *db, FILE *out, struct ut_err *err);

/*
 * The Ultralytics Tuner's files (store/tunerio.c). st_is_tuner_file: is the
 * file (path, its text) a tune_results.ndjson (by its name) or a
 * tune_results.csv (header starting `fitness,`)? Import adds its iterations
 * as generations of an ultralytics-space evolution (a record without
 * training metrics as `failed`); errors name file, line and key and import
 * nothing. Export writes the done generations in the Tuner's formats (the
 * dataset named as the package names it); both refuse a YOLOv5 evolution.
 */
int st_is_tuner_file(const char *path, const char *text, size_t len);
int st_import_tuner(struct st_db *db, const char *path, const struct meta_table *table,
		    long *imported, struct ut_err *err);
int st_export_tuner_ndjson(struct st_db *db, FILE *out, struct ut_err *err);
int st_export_tuner_csv(struct st_db *db, FILE *out, struct ut_err *err);

#endif
