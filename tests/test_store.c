/*
 * test_store.c - tests of store/: the schema people query with sqlite3
 * (columns named after the hyp table, the `best` and `evolve_csv` views),
 * refusal of files that are not ours or are newer, the lock, round trips of
 * the evolution row, generations and epochs, and YOLOv5's files: import of
 * a real evolve.csv and byte-exact export of evolve.csv and hyp_evolve.yaml
 * (golden files written by YOLOv5 v7.0), with every import error naming the
 * file and line.
 *
 * Needs YE_SOURCE_ROOT (golden files in tests/golden/yolov5-outputs); the
 * test fails when it is unset. Databases live in a mkdtemp() folder under
 * $TMPDIR (or /tmp), removed at the end.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "store.h"

_Static_assert(META_COUNT == 29, "the golden rows below have 29 hyps");
_Static_assert(ST_RESULT_COUNT == 7, "the golden rows below have 7 results");

#define EVOLVE_COLS (ST_RESULT_COUNT + META_COUNT)

/* clang-format off */
/* The rows of reference/yolov5-outputs/evolve.csv (real YOLOv5 v7.0 output). */
static const double golden_results[3][ST_RESULT_COUNT] = {
    {0.0054488, 0.55131, 0.0061939, 0.0014991, 0.088283, 0.034144, 0.037471},
    {0.0056284, 0.56173, 0.0061155, 0.0014915, 0.10467, 0.035697, 0.042046},
    {0.0051757, 0.54282, 0.0059799, 0.0014987, 0.082925, 0.021114, 0.044698},
};
static const double golden_hyps[3][META_COUNT] = {
    {0.01, 0.01, 0.937, 0.0005, 3, 0.8, 0.1, 0.05, 0.5, 1, 1, 1, 0.2, 4, 0,
     0.015, 0.7, 0.4, 0, 0.1, 0.5, 0, 0, 0, 0.5, 1, 0, 0, 3},
    {0.00857, 0.01036, 0.9677, 0.00039, 3, 0.69205, 0.08083, 0.05889, 0.49294, 1.1856,
     1.0543, 1, 0.2, 4.3839, 0, 0.01273, 0.79708, 0.42108, 0, 0.07917, 0.5, 0, 0, 0,
     0.5, 0.9601, 0, 0, 2.8861},
    {0.00672, 0.01177, 0.98, 0.00023, 3.8133, 0.65892, 0.09964, 0.04942, 0.47913,
     1.3306, 0.65414, 1.0348, 0.2, 2.8495, 0, 0.01852, 0.63602, 0.36191, 0, 0.08484,
     0.69523, 0, 0, 0, 0.5, 1, 0, 0, 2.8861},
};

/* The rows of reference/yolov5-outputs/train3ep-results.csv. */
static const double golden_epochs[3][ST_EPOCH_COLS] = {
    {0, 0.11001, 0.024495, 0.038951, 0.0045973, 0.4537, 0.0048857, 0.0012027, 0.10373,
     0.018866, 0.037487, 0.0937, 0.0007, 0.0007},
    {1, 0.10832, 0.026598, 0.0391, 0.0056489, 0.52199, 0.0059101, 0.0015691, 0.099611,
     0.019681, 0.037447, 0.086005, 0.001005, 0.001005},
    {2, 0.10365, 0.032457, 0.038596, 0.0022544, 0.37037, 0.00209, 0.00055702, 0.09697,
     0.020181, 0.037421, 0.077782, 0.000782, 0.000782},
};
/* clang-format on */

/* ---- helpers ------------------------------------------------------------ */

#define assert_contains(text, part)                                                                \
	do {                                                                                       \
		if (strstr((text), (part)) == NULL)                                                \
			fail_msg("\"%s\" does not contain \"%s\"", (text), (part));                \
	} while (0)

#define assert_same_double(got, want)                                                              \
	do {                                                                                       \
		double got_ = (got), want_ = (want);                                               \
		if (!(got_ == want_))                                                              \
			fail_msg("%s = %.17g, wanted %.17g", #got, got_, want_);                   \
	} while (0)

/* The same, where NaN (a key outside the hyp's space) must stay NaN. */
#define assert_same_key(got, want)                                                                 \
	do {                                                                                       \
		double got_ = (got), want_ = (want);                                               \
		if (!(got_ == want_ || (isnan(got_) && isnan(want_))))                             \
			fail_msg("%s = %.17g, wanted %.17g", #got, got_, want_);                   \
	} while (0)

#define assert_near(got, want, tolerance)                                                          \
	do {                                                                                       \
		double got_ = (got), want_ = (want);                                               \
		if (!(fabs(got_ - want_) <= (tolerance)))                                          \
			fail_msg("%s = %.17g, wanted %.17g within %g", #got, got_, want_,          \
				 (double)(tolerance));                                             \
	} while (0)

/* The temporary folder and where the golden files are, for every test. */
struct fixture {
	char dir[PATH_MAX];
	char reference[PATH_MAX];
};

static int group_setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));
	const char *root = getenv("YE_SOURCE_ROOT");
	const char *tmp = getenv("TMPDIR");
	if (fx == NULL || root == NULL || *root == '\0') {
		free(fx);
		return -1;
	}
	snprintf(fx->reference, sizeof(fx->reference), "%s/tests/golden/yolov5-outputs", root);
	snprintf(fx->dir, sizeof(fx->dir), "%s/test_store.XXXXXX",
		 tmp != NULL && *tmp != '\0' ? tmp : "/tmp");
	if (mkdtemp(fx->dir) == NULL) {
		fprintf(stderr, "mkdtemp %s: %s\n", fx->dir, strerror(errno));
		free(fx);
		return -1;
	}
	*state = fx;
	return 0;
}

static int group_teardown(void **state)
{
	struct fixture *fx = *state;
	struct ut_err err = {{0}};
	int rc = ut_remove_tree(fx->dir, &err);
	if (rc != 0)
		fprintf(stderr, "%s\n", err.msg);
	free(fx);
	return rc;
}

/* A path in the temporary folder. */
static void tmp_path(void **state, const char *name, char *out, size_t size)
{
	const struct fixture *fx = *state;
	assert_true(snprintf(out, size, "%s/%s", fx->dir, name) < (int)size);
}

/* A golden file's path. */
static void reference_path(void **state, const char *name, char *out, size_t size)
{
	const struct fixture *fx = *state;
	assert_true(snprintf(out, size, "%s/%s", fx->reference, name) < (int)size);
}

/* A whole file, malloc'ed and NUL-terminated. */
static char *slurp(const char *path, size_t *len)
{
	char *text = NULL;
	struct ut_err err = {{0}};
	if (ut_read_file(path, &text, len, &err) != 0)
		fail_msg("%s", err.msg);
	return text;
}

static void write_bytes(const char *path, const char *data, size_t len)
{
	FILE *f = fopen(path, "wb");
	if (f == NULL)
		fail_msg("%s: %s", path, strerror(errno));
	assert_int_equal(fwrite(data, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

/* Create a new database at name in the temporary folder (path copied to path). */
static struct st_db *create_db(void **state, const char *name, char *path, size_t size)
{
	struct st_db *db = NULL;
	struct ut_err err = {{0}};
	tmp_path(state, name, path, size);
	if (st_open(path, 1, &db, &err) != 0)
		fail_msg("st_open %s: %s", path, err.msg);
	return db;
}

static sqlite3 *raw_open(const char *path)
{
	sqlite3 *sql = NULL;
	if (sqlite3_open(path, &sql) != SQLITE_OK)
		fail_msg("sqlite3_open %s: %s", path, sqlite3_errmsg(sql));
	return sql;
}

static void raw_exec(sqlite3 *sql, const char *statements)
{
	char *msg = NULL;
	if (sqlite3_exec(sql, statements, NULL, NULL, &msg) != SQLITE_OK)
		fail_msg("%s: %s", statements, msg != NULL ? msg : "?");
}

static sqlite3_stmt *raw_prepare(sqlite3 *sql, const char *query)
{
	sqlite3_stmt *stmt = NULL;
	if (sqlite3_prepare_v2(sql, query, -1, &stmt, NULL) != SQLITE_OK)
		fail_msg("%s: %s", query, sqlite3_errmsg(sql));
	return stmt;
}

/* The integer of a one-row, one-column query. */
static long long query_int(sqlite3 *sql, const char *query)
{
	sqlite3_stmt *stmt = raw_prepare(sql, query);
	if (sqlite3_step(stmt) != SQLITE_ROW)
		fail_msg("%s: no row (%s)", query, sqlite3_errmsg(sql));
	long long value = sqlite3_column_int64(stmt, 0);
	sqlite3_finalize(stmt);
	return value;
}

/* The text of a one-row, one-column query ("NULL" for NULL). */
static void query_text(sqlite3 *sql, const char *query, char *out, size_t size)
{
	sqlite3_stmt *stmt = raw_prepare(sql, query);
	if (sqlite3_step(stmt) != SQLITE_ROW)
		fail_msg("%s: no row (%s)", query, sqlite3_errmsg(sql));
	const unsigned char *text = sqlite3_column_text(stmt, 0);
	snprintf(out, size, "%s", text != NULL ? (const char *)text : "NULL");
	sqlite3_finalize(stmt);
}

static size_t generation_count(struct st_db *db)
{
	struct st_generation *gens = NULL;
	size_t n = 0;
	struct ut_err err = {{0}};
	if (st_generations_load(db, &gens, &n, &err) != 0)
		fail_msg("%s", err.msg);
	free(gens);
	return n;
}

/* Everything an export wrote, malloc'ed; *rc gets its return code. */
static char *capture(int (*export_fn)(struct st_db *, FILE *, struct ut_err *), struct st_db *db,
		     int *rc, struct ut_err *err)
{
	char *text = NULL;
	size_t len = 0;
	FILE *mem = open_memstream(&text, &len);
	assert_non_null(mem);
	*rc = export_fn(db, mem, err);
	assert_int_equal(fclose(mem), 0);
	return text;
}

static struct meta_hyp golden_hyp(int row)
{
	struct meta_hyp hyp;
	memcpy(hyp.v, golden_hyps[row], sizeof(golden_hyps[row]));
	for (int k = META_COUNT; k < META_ALL; k++)
		hyp.v[k] = NAN;
	return hyp;
}

/* The evolution row of a typical run, every field set and distinct. */
static void sample_options(struct st_options *opts)
{
	memset(opts, 0, sizeof(*opts));
	snprintf(opts->data, sizeof(opts->data), "data/coco128.yaml");
	snprintf(opts->cfg, sizeof(opts->cfg), "models/yolov5s.yaml");
	snprintf(opts->weights, sizeof(opts->weights), "yolov5s.pt");
	snprintf(opts->hyp_path, sizeof(opts->hyp_path), "data/hyps/hyp.scratch-low.yaml");
	snprintf(opts->device, sizeof(opts->device), "0,1");
	snprintf(opts->project, sizeof(opts->project), "runs/evolve");
	snprintf(opts->name, sizeof(opts->name), "it's \"odd\"\nname \xc3\xbc");
	snprintf(opts->trainer, sizeof(opts->trainer), "yolov5:/opt/yolov5");
	snprintf(opts->algorithm, sizeof(opts->algorithm), "ga");
	snprintf(opts->parent, sizeof(opts->parent), "weighted");
	snprintf(opts->evolve_keys, sizeof(opts->evolve_keys), "lr0,momentum,mosaic");
	snprintf(opts->devices, sizeof(opts->devices), "0,1,2");
	snprintf(opts->launcher, sizeof(opts->launcher), "slurm");
	snprintf(opts->slurm_args, sizeof(opts->slurm_args), "--partition=gpu --time=2:00:00");
	snprintf(opts->prune, sizeof(opts->prune), "median");
	snprintf(opts->python, sizeof(opts->python), "/usr/bin/python3");
	snprintf(opts->ga_dir, sizeof(opts->ga_dir), "seeds/");
	opts->epochs = 300;
	opts->imgsz = 640;
	opts->batch = -1;
	opts->parallel = 4;
	opts->top = 5;
	opts->generations = 300;
	opts->per_device = 2;
	opts->slurm_submit = 8;
	opts->prune_warmup = 10;
	opts->population = 16;
	opts->lag = 3;
	opts->budget = 4500;
	opts->retries = 2;
	opts->mutation_prob = 0.8;
	opts->sigma = 0.1 + 0.2; /* not the shortest decimal: must come back exactly */
	opts->timeout = 3600.5;
	opts->seed = 0xF123456789ABCDEFull; /* > 2^63 */
	meta_table_default(&opts->meta);
	opts->meta.k[META_lr0] = (struct meta_bound){0.5, 1e-4, 0.05};
	opts->meta.k[META_mosaic].gain = 0;
	opts->meta.k[META_anchors] = (struct meta_bound){2.0, 2.0, 5.0};
	opts->base = golden_hyp(0);
	opts->base.v[META_lr0] = 0.0123456789012345;
	opts->base.v[META_anchors] = 4.0;
}

/* A finished candidate with every field set. */
static struct st_generation sample_generation(long generation)
{
	struct st_generation gen;
	memset(&gen, 0, sizeof(gen));
	gen.generation = generation;
	gen.parent = 3;
	gen.population = 2;
	gen.status = ST_DONE;
	gen.has_results = 1;
	memcpy(gen.results, golden_results[1], sizeof(gen.results));
	gen.fitness = 0.1 * gen.results[ST_R_map50] + 0.9 * gen.results[ST_R_map];
	gen.hyp = golden_hyp(1);
	gen.seed = 0xFEDCBA9876543210ull;
	snprintf(gen.device, sizeof(gen.device), "cuda:1");
	snprintf(gen.host, sizeof(gen.host), "node-07");
	snprintf(gen.save_dir, sizeof(gen.save_dir), "runs/evolve/exp/gen%ld", generation);
	gen.pid = 4242;
	gen.pid_start = 123456789;
	gen.started_at = 1700000000.123;
	gen.finished_at = 1700000360.625;
	gen.seconds = 360.5;
	gen.has_exit_status = 1;
	gen.exit_status = 0;
	gen.attempts = 2;
	gen.epochs_done = 3;
	return gen;
}

static void put_generation(struct st_db *db, const struct st_generation *gen)
{
	struct ut_err err = {{0}};
	if (st_generation_put(db, gen, &err) != 0)
		fail_msg("put generation %ld: %s", gen->generation, err.msg);
}

static void assert_generation_equal(const struct st_generation *got,
				    const struct st_generation *want)
{
	assert_int_equal(got->generation, want->generation);
	assert_int_equal(got->parent, want->parent);
	assert_int_equal(got->population, want->population);
	assert_int_equal(got->status, want->status);
	assert_int_equal(got->has_results, want->has_results);
	for (int r = 0; want->has_results && r < ST_RESULT_COUNT; r++)
		assert_same_double(got->results[r], want->results[r]);
	if (want->has_results)
		assert_same_double(got->fitness, want->fitness);
	for (int k = 0; k < META_COUNT; k++)
		assert_same_key(got->hyp.v[k], want->hyp.v[k]);
	assert_int_equal(got->seed, want->seed);
	assert_string_equal(got->device, want->device);
	assert_string_equal(got->host, want->host);
	assert_string_equal(got->save_dir, want->save_dir);
	assert_string_equal(got->error, want->error);
	assert_int_equal(got->pid, want->pid);
	assert_int_equal(got->pid_start, want->pid_start);
	assert_near(got->started_at, want->started_at, 1e-3);
	assert_near(got->finished_at, want->finished_at, 1e-3);
	assert_same_double(got->seconds, want->finished_at > 0 ? want->seconds : 0);
	assert_int_equal(got->has_exit_status, want->has_exit_status);
	if (want->has_exit_status)
		assert_int_equal(got->exit_status, want->exit_status);
	assert_int_equal(got->attempts, want->attempts);
	assert_int_equal(got->epochs_done, want->epochs_done);
}

/* An Ultralytics evolution: its space, keys, dfl results and epochs stored without loss. */
static void ultralytics_space(void **state)
{
	char path[PATH_MAX];
	struct st_db *db = create_db(state, "ul.db", path, sizeof(path));
	struct st_options opts, read;
	struct ut_err err = {{0}};
	int found = 0;
	sample_options(&opts);
	snprintf(opts.algorithm, sizeof(opts.algorithm), "yolov5");
	meta_table_default_space(&opts.meta, META_SPACE_ULTRALYTICS);
	opts.meta.k[META_dfl] = (struct meta_bound){0.5, 0.5, 8.0};
	meta_hyp_ultralytics_base(&opts.base);
	assert_int_equal(st_options_write(db, &opts, &err), 0);
	assert_int_equal(st_space(db), META_SPACE_ULTRALYTICS);
	struct st_generation gen = sample_generation(0);
	gen.hyp = opts.base;
	gen.hyp.v[META_dfl] = 2.25;
	gen.hyp.v[META_close_mosaic] = 7;
	gen.results[ST_R_val_obj] = 0.375; /* the DFL loss */
	put_generation(db, &gen);
	const double row[ST_EPOCH_COLS] = {0,	 1, 0.5,  2, 0.1,  0.2,	 0.3,
					   0.25, 1, 0.75, 2, 0.01, 0.01, 0.01};
	assert_int_equal(st_epoch_put(db, 0, row, &err), 0);
	sqlite3 *sql = st_handle(db);
	assert_int_equal(
	    query_int(sql, "SELECT count(*) FROM evolution WHERE space = 'ultralytics'"), 1);
	assert_int_equal(query_int(sql,
				   "SELECT count(*) FROM generations WHERE val_obj IS NULL AND "
				   "val_dfl = 0.375 AND obj IS NULL AND anchors IS NULL AND "
				   "dfl = 2.25 AND close_mosaic = 7 AND box = 7.5"),
			 1);
	assert_int_equal(query_int(sql, "SELECT count(*) FROM epochs WHERE train_obj IS NULL AND "
					"val_obj IS NULL AND train_dfl = 0.5 AND val_dfl = 0.75"),
			 1);
	st_close(db);

	/* read back, also read-only: the same space, meta, base, generation and epochs */
	assert_int_equal(st_open_readonly(path, &db, &err), 0);
	assert_int_equal(st_space(db), META_SPACE_ULTRALYTICS);
	assert_int_equal(st_options_read(db, &read, &found, &err), 0);
	assert_true(found);
	assert_int_equal(read.meta.space, META_SPACE_ULTRALYTICS);
	assert_true(read.meta.k[META_dfl].gain == 0.5 && read.meta.k[META_dfl].upper == 8.0);
	for (int k = 0; k < META_ALL; k++)
		assert_same_key(read.base.v[k], opts.base.v[k]);
	struct st_generation *gens = NULL;
	size_t n = 0;
	assert_int_equal(st_generations_load(db, &gens, &n, &err), 0);
	assert_int_equal(n, 1);
	assert_generation_equal(&gens[0], &gen);
	for (int k = 0; k < META_ALL; k++)
		assert_same_key(gens[0].hyp.v[k], gen.hyp.v[k]);
	free(gens);
	double *epochs = NULL;
	assert_int_equal(st_epochs_load(db, 0, &epochs, &n, &err), 0);
	assert_int_equal(n, 1);
	for (int c = 0; c < ST_EPOCH_COLS; c++)
		assert_same_double(epochs[1 + c], row[c]);
	free(epochs);
	/* YOLOv5's evolve.csv refuses it (and does not crash doing so) */
	char *text = NULL;
	size_t len = 0;
	FILE *mem = open_memstream(&text, &len);
	assert_int_equal(st_export_evolve_csv(db, mem, &err), -1);
	fclose(mem);
	free(text);
	assert_non_null(strstr(err.msg, "ultralytics space"));
	st_close(db);
}

/* The Tuner's files: import both formats, export them back the same. */
static void tuner_files(void **state)
{
	char path[PATH_MAX], ndjson[PATH_MAX], csv[PATH_MAX];
	struct st_db *db = create_db(state, "tuner.db", path, sizeof(path));
	struct st_options opts;
	struct ut_err err = {{0}};
	long imported = -1;
	sample_options(&opts);
	snprintf(opts.data, sizeof(opts.data), "/data/shapes/data.yaml");
	meta_table_default_space(&opts.meta, META_SPACE_ULTRALYTICS);
	meta_hyp_ultralytics_base(&opts.base);
	assert_int_equal(st_options_write(db, &opts, &err), 0);
	/* two records as the 8.4 Tuner writes them (shortened: missing keys take defaults) */
	static const char records[] =
	    "{\"iteration\": 1, \"fitness\": 0.125, \"hyperparameters\": {\"lr0\": 0.01, "
	    "\"dfl\": 1.5, \"close_mosaic\": 10}, \"datasets\": {\"shapes\": "
	    "{\"metrics/precision(B)\": 0.5, \"metrics/recall(B)\": 0.25, \"metrics/mAP50(B)\": "
	    "0.375, \"metrics/mAP50-95(B)\": 0.125, \"val/box_loss\": 1.5, \"val/cls_loss\": 2.5, "
	    "\"val/dfl_loss\": 0.75, \"fitness\": 0.125}}, \"save_dirs\": {\"shapes\": "
	    "\"/runs/multitrain/shapes\"}}\n"
	    "\n"
	    "{\"iteration\": 2, \"fitness\": 0.0, \"hyperparameters\": {\"lr0\": 0.00731, \"box\": "
	    "9.25, \"close_mosaic\": 3}, \"datasets\": {\"shapes\": {}}, \"failed_datasets\": "
	    "[\"shapes\"]}\n";
	tmp_path(state, "tune_results.ndjson", ndjson, sizeof(ndjson));
	FILE *f = fopen(ndjson, "w");
	fputs(records, f);
	fclose(f);
	assert_true(st_is_tuner_file(ndjson, records, strlen(records)));
	assert_false(st_is_tuner_file("evolve.csv", "lr0,lrf\n", 8));
	assert_true(st_is_tuner_file("x.csv", "fitness,lr0\n", 12));
	if (st_import_tuner(db, ndjson, &opts.meta, &imported, &err) != 0)
		fail_msg("import: %s", err.msg);
	assert_int_equal(imported, 2);
	struct st_generation *gens = NULL;
	size_t n = 0;
	assert_int_equal(st_generations_load(db, &gens, &n, &err), 0);
	assert_int_equal(n, 2);
	assert_int_equal(gens[0].status, ST_DONE);
	assert_true(gens[0].fitness == 0.125 && gens[0].results[ST_R_map50] == 0.375);
	assert_true(gens[0].results[ST_R_val_obj] == 0.75 && gens[0].hyp.v[META_box] == 7.5);
	assert_string_equal(gens[0].save_dir, "/runs/multitrain/shapes");
	assert_int_equal(gens[1].status, ST_FAILED); /* no training metrics: never a parent */
	assert_true(gens[1].hyp.v[META_lr0] == 0.00731 && gens[1].hyp.v[META_close_mosaic] == 3);
	free(gens);

	/* export: the done record, as the Tuner writes it */
	char *text = NULL;
	size_t len = 0;
	FILE *mem = open_memstream(&text, &len);
	assert_int_equal(st_export_tuner_ndjson(db, mem, &err), 0);
	fclose(mem);
	assert_non_null(strstr(text, "{\"iteration\":1,\"fitness\":0.125,\"hyperparameters\":{"
				     "\"lr0\":0.01,\"lrf\":0.01,\"momentum\":0.937,"));
	assert_non_null(strstr(text, "\"close_mosaic\":10},\"datasets\":{\"shapes\":{"
				     "\"metrics/precision(B)\":0.5,"));
	assert_non_null(
	    strstr(text, "\"val/dfl_loss\":0.75,\"val/cls_loss\":2.5,\"fitness\":0.125}}"));
	assert_non_null(strstr(text, "\"save_dirs\":{\"shapes\":\"/runs/multitrain/shapes\"}}\n"));
	assert_null(strstr(text, "\"iteration\":2"));
	free(text);
	text = NULL;
	mem = open_memstream(&text, &len);
	assert_int_equal(st_export_tuner_csv(db, mem, &err), 0);
	fclose(mem);
	assert_non_null(strstr(text, "fitness,lr0,lrf,momentum,weight_decay,warmup_epochs,"));
	assert_non_null(
	    strstr(text, ",copy_paste,close_mosaic\n0.125,0.01,0.01,0.937,0.0005,3.0,"));
	assert_non_null(strstr(text, ",0.0,10\n"));
	/* ... and that CSV imports to the same hyps */
	tmp_path(state, "tune_results.csv", csv, sizeof(csv));
	f = fopen(csv, "w");
	fputs(text, f);
	fclose(f);
	free(text);
	assert_int_equal(st_import_tuner(db, csv, &opts.meta, &imported, &err), 0);
	assert_int_equal(st_generations_load(db, &gens, &n, &err), 0);
	assert_int_equal(n, 3);
	assert_int_equal(gens[2].status, ST_DONE);
	assert_true(gens[2].has_results && gens[2].fitness == 0.125);
	for (int k = 0; k < META_ALL; k++)
		assert_same_key(gens[2].hyp.v[k], gens[0].hyp.v[k]);
	free(gens);

	/* errors name file, line and key; nothing is imported */
	static const char *const bad[][2] = {
	    {"{\"fitness\": 0.1, \"hyperparameters\": {\"obj\": 1.0}}\n", ":1: unknown key 'obj'"},
	    {"\n{\"fitness\": 0.1, \"hyperparameters\": {\"box\": 0.05}}\n", ":2: key 'box'"},
	    {"{\"fitness\": 0.1, \"hyperparameters\": {\"close_mosaic\": 2.5}}\n",
	     ":1: key 'close_mosaic': not an integer"},
	    {"{\"fitness\": \"x\", \"hyperparameters\": {}}\n", ":1: fitness"},
	    {"not json\n", ":1: not valid JSON"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		f = fopen(ndjson, "w");
		fputs(bad[i][0], f);
		fclose(f);
		assert_int_equal(st_import_tuner(db, ndjson, &opts.meta, &imported, &err), -1);
		if (strstr(err.msg, bad[i][1]) == NULL)
			fail_msg("'%s': got '%s'", bad[i][1], err.msg);
	}
	assert_int_equal(st_generations_load(db, &gens, &n, &err), 0);
	assert_int_equal(n, 3);
	free(gens);
	f = fopen(csv, "w");
	fputs("fitness,lr0,anchors\n0.1,0.01,3\n", f);
	fclose(f);
	assert_int_equal(st_import_tuner(db, csv, &opts.meta, &imported, &err), -1);
	assert_non_null(strstr(err.msg, ":1: unknown column 'anchors'"));
	/* a YOLOv5 evolution takes none of it */
	struct meta_table v5;
	meta_table_default(&v5);
	assert_int_equal(st_import_tuner(db, csv, &v5, &imported, &err), -1);
	assert_non_null(strstr(err.msg, "ultralytics space"));
	st_close(db);
}

/* A database with the sample options and the real evolve.csv imported. */
static struct st_db *imported_db(void **state, const char *name)
{
	char path[PATH_MAX], csv[PATH_MAX];
	struct st_db *db = create_db(state, name, path, sizeof(path));
	struct st_options opts;
	struct ut_err err = {{0}};
	long imported = -1;
	sample_options(&opts);
	opts.meta.k[META_lr0] = (struct meta_bound){1.0, 1e-5, 0.1};
	assert_int_equal(st_options_write(db, &opts, &err), 0);
	reference_path(state, "evolve.csv", csv, sizeof(csv));
	if (st_import_evolve_csv(db, csv, &opts.meta, &imported, &err) != 0)
		fail_msg("import %s: %s", csv, err.msg);
	assert_int_equal(imported, 3);
	return db;
}

/* ---- schema --------------------------------------------------------------- */

/* The declared type of a column of `generations`, or NULL if there is none. */
static const char *column_type(char names[][64], char types[][16], int n, const char *name)
{
	for (int i = 0; i < n; i++)
		if (strcmp(names[i], name) == 0)
			return types[i];
	return NULL;
}

static void schema_of_new_db(void **state)
{
	static const char *const columns[] = {
	    "generation", "parent",   "status",	    "precision",   "recall",  "map50",
	    "map",	  "val_box",  "val_obj",    "val_cls",	   "fitness", "seed",
	    "device",	  "host",     "started_at", "finished_at", "seconds", "exit_status",
	    "error",	  "save_dir", "attempts"};
	char path[PATH_MAX], text[64];
	struct st_db *db = create_db(state, "schema.db", path, sizeof(path));
	sqlite3 *sql = st_handle(db);
	assert_int_equal(query_int(sql, "PRAGMA user_version"), ST_SCHEMA_VERSION);
	assert_int_equal(query_int(sql, "PRAGMA application_id"), 0x594f4556);
	query_text(sql, "PRAGMA journal_mode", text, sizeof(text));
	assert_string_equal(text, "wal");

	char names[128][64], types[128][16];
	int n = 0;
	sqlite3_stmt *stmt = raw_prepare(sql, "PRAGMA table_info(generations)");
	while (sqlite3_step(stmt) == SQLITE_ROW && n < 128) {
		snprintf(names[n], sizeof(names[n]), "%s", sqlite3_column_text(stmt, 1));
		snprintf(types[n], sizeof(types[n]), "%s", sqlite3_column_text(stmt, 2));
		n++;
	}
	sqlite3_finalize(stmt);
	for (int k = 0; k < META_COUNT; k++) {
		const char *type = column_type(names, types, n, meta_name(k));
		if (type == NULL || strcmp(type, "REAL") != 0)
			fail_msg("generations.%s: type %s, wanted REAL", meta_name(k),
				 type ? type : "(no column)");
	}
	for (size_t c = 0; c < UT_ARRAY_LEN(columns); c++)
		if (column_type(names, types, n, columns[c]) == NULL)
			fail_msg("generations has no column %s", columns[c]);
	for (int r = 0; r < ST_RESULT_COUNT; r++)
		assert_string_equal(column_type(names, types, n, st_result_column(r)), "REAL");
	assert_int_equal(query_int(sql, "SELECT count(*) FROM sqlite_master WHERE type = 'view'"
					" AND name IN ('best', 'evolve_csv')"),
			 2);
	st_close(db);
}

/* `best` and `evolve_csv` hold the done generations, in their orders and names. */
static void views_work(void **state)
{
	char path[PATH_MAX];
	struct st_db *db = create_db(state, "views.db", path, sizeof(path));
	struct st_generation gen = sample_generation(0);
	for (long g = 0; g < 4; g++) {
		gen.generation = g;
		gen.status = g == 2 ? ST_FAILED : ST_DONE;
		gen.results[ST_R_map50] = 0.1 * (double)(g + 1);
		gen.fitness = g == 1 ? 0.9 : 0.1 * (double)g;
		put_generation(db, &gen);
	}
	sqlite3 *sql = st_handle(db);
	sqlite3_stmt *stmt = raw_prepare(sql, "SELECT \"metrics/mAP_0.5\" FROM evolve_csv");
	const double want_map50[] = {0.1, 0.2, 0.4};
	for (size_t i = 0; i < UT_ARRAY_LEN(want_map50); i++) {
		assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
		assert_same_double(sqlite3_column_double(stmt, 0), want_map50[i]);
	}
	assert_int_equal(sqlite3_step(stmt), SQLITE_DONE);
	sqlite3_finalize(stmt);

	stmt = raw_prepare(sql, "SELECT * FROM evolve_csv");
	assert_int_equal(sqlite3_column_count(stmt), EVOLVE_COLS);
	for (int c = 0; c < EVOLVE_COLS; c++)
		assert_string_equal(sqlite3_column_name(stmt, c),
				    c < ST_RESULT_COUNT ? st_result_csv_name(c)
							: meta_name(c - ST_RESULT_COUNT));
	sqlite3_finalize(stmt);

	stmt = raw_prepare(sql, "SELECT generation FROM best");
	const long want_best[] = {1, 3, 0};
	for (size_t i = 0; i < UT_ARRAY_LEN(want_best); i++) {
		assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
		assert_int_equal(sqlite3_column_int64(stmt, 0), want_best[i]);
	}
	assert_int_equal(sqlite3_step(stmt), SQLITE_DONE);
	sqlite3_finalize(stmt);
	st_close(db);
}

/* ---- versions, foreign files, reopening ----------------------------------- */

static void newer_schema_refused(void **state)
{
	char path[PATH_MAX], pragma[64];
	struct st_db *db = create_db(state, "newer.db", path, sizeof(path));
	put_generation(db, &(struct st_generation){0});
	st_close(db);
	sqlite3 *sql = raw_open(path);
	snprintf(pragma, sizeof(pragma), "PRAGMA user_version = %d", ST_SCHEMA_VERSION + 1);
	raw_exec(sql, pragma);
	sqlite3_close(sql);

	struct ut_err err = {{0}};
	db = NULL;
	assert_int_equal(st_open(path, 0, &db, &err), -1);
	assert_null(db);
	assert_contains(err.msg, path);
	assert_contains(err.msg, "newer");
	assert_int_equal(st_open_readonly(path, &db, &err), -1);

	sql = raw_open(path); /* left as it was */
	assert_int_equal(query_int(sql, "PRAGMA user_version"), ST_SCHEMA_VERSION + 1);
	assert_int_equal(query_int(sql, "SELECT count(*) FROM generations"), 1);
	sqlite3_close(sql);
}

static void garbage_file_refused(void **state)
{
	static const char short_text[] = "generation,lr0\n0,0.01\n";
	char long_garbage[4096];
	uint32_t x = 12345;
	for (size_t i = 0; i < sizeof(long_garbage); i++) {
		x = x * 1103515245u + 12345u;
		long_garbage[i] = (char)(x >> 24);
	}
	const struct {
		const char *name, *data;
		size_t len;
	} files[] = {{"garbage.db", long_garbage, sizeof(long_garbage)},
		     {"text.db", short_text, sizeof(short_text) - 1}};
	for (size_t f = 0; f < UT_ARRAY_LEN(files); f++) {
		char path[PATH_MAX];
		tmp_path(state, files[f].name, path, sizeof(path));
		write_bytes(path, files[f].data, files[f].len);
		struct st_db *db = NULL;
		struct ut_err err = {{0}};
		assert_int_equal(st_open(path, 1, &db, &err), -1);
		assert_null(db);
		assert_contains(err.msg, path);
		assert_contains(err.msg, "not a database");
		assert_int_equal(st_open_readonly(path, &db, &err), -1);
		size_t len;
		char *after = slurp(path, &len);
		assert_int_equal(len, files[f].len);
		assert_memory_equal(after, files[f].data, len);
		free(after);
	}
}

/* Another program's database is refused and left exactly as it was. */
static void foreign_db_refused(void **state)
{
	const long long app_ids[] = {1234, 0};
	for (size_t a = 0; a < UT_ARRAY_LEN(app_ids); a++) {
		char name[32], path[PATH_MAX], pragma[64], mode[32];
		snprintf(name, sizeof(name), "foreign%zu.db", a);
		tmp_path(state, name, path, sizeof(path));
		sqlite3 *sql = raw_open(path);
		raw_exec(sql, "CREATE TABLE notes(x); INSERT INTO notes VALUES('keep');");
		snprintf(pragma, sizeof(pragma), "PRAGMA application_id = %lld", app_ids[a]);
		raw_exec(sql, pragma);
		sqlite3_close(sql);

		struct st_db *db = NULL;
		struct ut_err err = {{0}};
		assert_int_equal(st_open(path, 1, &db, &err), -1);
		assert_null(db);
		assert_contains(err.msg, path);
		assert_contains(err.msg, "not a yolo-evolve database");

		sql = raw_open(path);
		assert_int_equal(query_int(sql, "PRAGMA application_id"), app_ids[a]);
		assert_int_equal(query_int(sql, "PRAGMA user_version"), 0);
		assert_int_equal(query_int(sql, "SELECT count(*) FROM notes"), 1);
		assert_int_equal(query_int(sql, "SELECT count(*) FROM sqlite_master"), 1);
		query_text(sql, "PRAGMA journal_mode", mode, sizeof(mode));
		sqlite3_close(sql);
		/* refusing must not convert someone else's file to WAL */
		assert_string_equal(mode, "delete");
	}
}

static void reopen_keeps_rows(void **state)
{
	char path[PATH_MAX], missing[PATH_MAX];
	struct st_db *db = create_db(state, "reopen.db", path, sizeof(path));
	struct st_options opts, read;
	struct ut_err err = {{0}};
	int found = 0;
	sample_options(&opts);
	assert_int_equal(st_options_read(db, &read, &found, &err), 0);
	assert_int_equal(found, 0);
	assert_int_equal(st_options_write(db, &opts, &err), 0);
	struct st_generation gen = sample_generation(0);
	put_generation(db, &gen);
	gen.generation = 1;
	put_generation(db, &gen);
	st_close(db);

	db = NULL;
	if (st_open(path, 0, &db, &err) != 0)
		fail_msg("reopen: %s", err.msg);
	assert_int_equal(generation_count(db), 2);
	assert_int_equal(st_options_read(db, &read, &found, &err), 0);
	assert_int_equal(found, 1);
	assert_int_equal(query_int(st_handle(db), "PRAGMA user_version"), ST_SCHEMA_VERSION);
	st_close(db);

	/* read-only opening sees the same rows */
	db = NULL;
	if (st_open_readonly(path, &db, &err) != 0)
		fail_msg("read-only: %s", err.msg);
	assert_int_equal(generation_count(db), 2);
	st_close(db);

	/* create = 0 does not create */
	tmp_path(state, "missing.db", missing, sizeof(missing));
	db = NULL;
	assert_int_equal(st_open(missing, 0, &db, &err), -1);
	assert_null(db);
	assert_contains(err.msg, missing);
	assert_int_equal(access(missing, F_OK), -1);
}

/* ---- the lock ------------------------------------------------------------- */

static void lock_in_process(void **state)
{
	char path[PATH_MAX], pid[32];
	struct st_db *db = create_db(state, "lock.db", path, sizeof(path));
	struct st_db *second = NULL;
	struct ut_err err = {{0}};
	assert_int_equal(st_open(path, 1, &second, &err), -1);
	assert_null(second);
	assert_contains(err.msg, path);
	assert_contains(err.msg, "in use");
	snprintf(pid, sizeof(pid), "pid %ld", (long)getpid());
	assert_contains(err.msg, pid);

	/* readers need no lock */
	assert_int_equal(st_open_readonly(path, &second, &err), 0);
	st_close(second);

	st_close(db);
	second = NULL;
	if (st_open(path, 0, &second, &err) != 0)
		fail_msg("open after close: %s", err.msg);
	st_close(second);
}

/* A child holds the database; it is refused, then free once the child is killed. */
static void lock_dies_with_holder(void **state)
{
	char path[PATH_MAX], pid[32];
	tmp_path(state, "lock_child.db", path, sizeof(path));
	int ready[2];
	assert_int_equal(pipe(ready), 0);
	pid_t child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		struct st_db *db;
		char byte = st_open(path, 1, &db, NULL) == 0 ? 'y' : 'n';
		if (write(ready[1], &byte, 1) != 1)
			_exit(1);
		for (;;)
			pause();
	}
	close(ready[1]);
	char byte = 0;
	ssize_t got = read(ready[0], &byte, 1);
	close(ready[0]);
	struct st_db *db = NULL;
	struct ut_err err = {{0}};
	int rc = st_open(path, 0, &db, &err);
	kill(child, SIGKILL);
	int status = 0;
	assert_int_equal(waitpid(child, &status, 0), child);
	assert_int_equal(got, 1);
	assert_int_equal(byte, 'y');
	assert_int_equal(rc, -1);
	assert_contains(err.msg, "in use");
	snprintf(pid, sizeof(pid), "pid %ld", (long)child);
	assert_contains(err.msg, pid);

	if (st_open(path, 0, &db, &err) != 0)
		fail_msg("open after the holder died: %s", err.msg);
	st_close(db);
}

/*
 * st_writer_alive: a reader tells a live evolver (the holder of the lock)
 * from a dead one's leftovers, without taking the lock or writing a byte:
 * an evolver can start while a reader looks, and the lock file stays as it was.
 */
static void writer_alive(void **state)
{
	char path[PATH_MAX], lock[PATH_MAX + 8];
	tmp_path(state, "alive.db", path, sizeof(path));
	snprintf(lock, sizeof(lock), "%s.lock", path);
	int ready[2];
	assert_int_equal(pipe(ready), 0);
	pid_t child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		struct st_db *db;
		char byte = st_open(path, 1, &db, NULL) == 0 ? 'y' : 'n';
		if (write(ready[1], &byte, 1) != 1)
			_exit(1);
		for (;;)
			pause();
	}
	close(ready[1]);
	char byte = 0;
	ssize_t got = read(ready[0], &byte, 1);
	close(ready[0]);
	struct st_db *reader = NULL, *writer = NULL;
	struct ut_err err = {{0}};
	long pid = -1;
	int opened = st_open_readonly(path, &reader, &err);
	int alive = opened == 0 ? st_writer_alive(reader, &pid) : -2;
	struct stat before, after;
	int stat_rc = stat(lock, &before);
	/* the probe takes nothing: a second evolver is still refused only by the holder */
	int refused = st_open(path, 0, &writer, &err);
	kill(child, SIGKILL);
	int status = 0;
	assert_int_equal(waitpid(child, &status, 0), child);
	assert_int_equal(got, 1);
	assert_int_equal(byte, 'y');
	assert_int_equal(opened, 0);
	assert_int_equal(alive, 1);
	assert_int_equal(pid, (long)child);
	assert_int_equal(refused, -1);
	assert_contains(err.msg, "in use");

	/* the holder is gone: its lock file stays, its lock does not */
	assert_int_equal(st_writer_alive(reader, &pid), 0);
	assert_int_equal(pid, 0);
	assert_int_equal(stat_rc, 0);
	assert_int_equal(stat(lock, &after), 0);
	assert_int_equal(after.st_size, before.st_size);
	assert_int_equal(after.st_mtim.tv_sec, before.st_mtim.tv_sec);
	assert_int_equal(after.st_mtim.tv_nsec, before.st_mtim.tv_nsec);
	st_close(reader);

	/* no lock file at all (a copied database): nobody; and the probe makes none */
	assert_int_equal(unlink(lock), 0);
	assert_int_equal(st_open_readonly(path, &reader, &err), 0);
	assert_int_equal(st_writer_alive(reader, NULL), 0);
	assert_int_equal(access(lock, F_OK), -1);
	st_close(reader);

	/* a handle of st_open is the holder itself; a reader beside it sees it */
	if (st_open(path, 0, &writer, &err) != 0)
		fail_msg("open after the holder died: %s", err.msg);
	assert_int_equal(st_writer_alive(writer, &pid), 1);
	assert_int_equal(pid, (long)getpid());
	assert_int_equal(st_open_readonly(path, &reader, &err), 0);
	assert_int_equal(st_writer_alive(reader, &pid), 1);
	assert_int_equal(pid, (long)getpid());
	st_close(reader);
	st_close(writer);
}

/* The stop record of the circuit breaker: written, read, cleared. */
static void stop_reason_round_trip(void **state)
{
	char path[PATH_MAX], reason[ST_STR];
	struct st_db *db = create_db(state, "stop.db", path, sizeof(path));
	struct st_options opts;
	struct ut_err err = {{0}};
	sample_options(&opts);
	assert_int_equal(st_options_write(db, &opts, &err), 0);
	assert_int_equal(st_stop_read(db, reason, sizeof(reason), &err), 0);
	assert_string_equal(reason, "");
	const char *why = "generation 0 (the base hyp) failed: exit status 1; log: a\nb";
	assert_int_equal(st_stop_write(db, why, &err), 0);
	assert_int_equal(st_stop_read(db, reason, sizeof(reason), &err), 0);
	assert_string_equal(reason, why);
	sqlite3 *sql = st_handle(db);
	assert_int_equal(query_int(sql, "SELECT stopped_at IS NOT NULL FROM evolution"), 1);

	/* readers see it too */
	struct st_db *reader = NULL;
	assert_int_equal(st_open_readonly(path, &reader, &err), 0);
	assert_int_equal(st_stop_read(reader, reason, sizeof(reason), &err), 0);
	assert_string_equal(reason, why);
	st_close(reader);

	assert_int_equal(st_stop_write(db, NULL, &err), 0);
	assert_int_equal(st_stop_read(db, reason, sizeof(reason), &err), 0);
	assert_string_equal(reason, "");
	assert_int_equal(
	    query_int(sql, "SELECT stop_reason IS NULL AND stopped_at IS NULL FROM evolution"), 1);
	st_close(db);
}

/*
 * A database of schema version 1 (before the stop record): read as it is,
 * never migrated by a reader; migrated to the current version, rows kept,
 * by the next evolver.
 */
static void migrate_from_v1(void **state)
{
	char path[PATH_MAX], reason[ST_STR] = "x";
	struct st_db *db = create_db(state, "v1.db", path, sizeof(path));
	struct st_options opts, read;
	struct ut_err err = {{0}};
	int found = 0;
	sample_options(&opts);
	assert_int_equal(st_options_write(db, &opts, &err), 0);
	struct st_generation gen = sample_generation(0);
	put_generation(db, &gen);
	st_close(db);
	/* back to version 1 as an older yolo-evolve made it (its hyp columns stay nullable) */
	sqlite3 *sql = raw_open(path);
	raw_exec(sql, "ALTER TABLE evolution DROP COLUMN stop_reason;"
		      "ALTER TABLE evolution DROP COLUMN stopped_at;"
		      "ALTER TABLE evolution DROP COLUMN space;"
		      "ALTER TABLE evolution DROP COLUMN budget;"
		      "ALTER TABLE generations DROP COLUMN reevaluates;"
		      "ALTER TABLE epochs DROP COLUMN train_dfl;"
		      "ALTER TABLE epochs DROP COLUMN val_dfl;"
		      "ALTER TABLE generations DROP COLUMN dfl;"
		      "ALTER TABLE generations DROP COLUMN bgr;"
		      "ALTER TABLE generations DROP COLUMN cutmix;"
		      "ALTER TABLE generations DROP COLUMN close_mosaic;"
		      "ALTER TABLE generations DROP COLUMN val_dfl; PRAGMA user_version = 1;");
	sqlite3_close(sql);

	struct st_db *reader = NULL;
	if (st_open_readonly(path, &reader, &err) != 0)
		fail_msg("read-only open of a version 1 file: %s", err.msg);
	assert_int_equal(generation_count(reader), 1);
	struct st_generation *gens = NULL;
	size_t n = 0;
	assert_int_equal(st_generations_load(reader, &gens, &n, &err), 0);
	assert_int_equal(n, 1);
	assert_generation_equal(&gens[0], &gen); /* an old file reads as it is */
	free(gens);
	assert_int_equal(st_space(reader), META_SPACE_YOLOV5);
	assert_int_equal(st_stop_read(reader, reason, sizeof(reason), &err), 0);
	assert_string_equal(reason, "");
	st_close(reader);
	sql = raw_open(path);
	assert_int_equal(query_int(sql, "PRAGMA user_version"), 1);
	sqlite3_close(sql);

	db = NULL;
	if (st_open(path, 0, &db, &err) != 0)
		fail_msg("open (migrate) a version 1 file: %s", err.msg);
	assert_int_equal(query_int(st_handle(db), "PRAGMA user_version"), ST_SCHEMA_VERSION);
	assert_int_equal(generation_count(db), 1);
	/* version 3 rebuilt `generations`: every value kept, the new columns NULL */
	assert_int_equal(st_generations_load(db, &gens, &n, &err), 0);
	assert_int_equal(n, 1);
	assert_generation_equal(&gens[0], &gen);
	free(gens);
	assert_int_equal(query_int(st_handle(db),
				   "SELECT count(*) FROM generations WHERE dfl IS NULL "
				   "AND val_dfl IS NULL AND anchors IS NOT NULL"),
			 1);
	assert_int_equal(query_int(st_handle(db), "SELECT count(*) FROM evolve_csv"), 1);
	assert_int_equal(query_int(st_handle(db), "SELECT count(*) FROM best"), 1);
	assert_int_equal(st_options_read(db, &read, &found, &err), 0);
	assert_int_equal(found, 1);
	assert_string_equal(read.data, opts.data);
	assert_int_equal(st_stop_write(db, "stopped", &err), 0);
	assert_int_equal(st_stop_read(db, reason, sizeof(reason), &err), 0);
	assert_string_equal(reason, "stopped");
	st_close(db);
}

/* The database replaced or deleted under a running evolver is noticed. */
static void file_identity(void **state)
{
	char path[PATH_MAX], other[PATH_MAX];
	struct st_db *db = create_db(state, "identity.db", path, sizeof(path));
	struct ut_err err = {{0}};
	assert_int_equal(st_check_file(db, &err), 0);
	assert_string_equal(st_path(db), path);
	tmp_path(state, "identity.other", other, sizeof(other));
	write_bytes(other, "x", 1);
	assert_int_equal(rename(other, path), 0);
	assert_int_equal(st_check_file(db, &err), -1);
	assert_contains(err.msg, "replaced");
	assert_int_equal(unlink(path), 0);
	assert_int_equal(st_check_file(db, &err), -1);
	assert_contains(err.msg, "deleted");
	st_close(db);
}

/* ---- the evolution row ---------------------------------------------------- */

/* The fields of struct st_options, by type (as store.c stores them). */
/* clang-format off */
#define OPT_TEXT_FIELDS(X)                                                              \
	X(data) X(cfg) X(weights) X(hyp_path) X(device) X(project) X(name) X(trainer)  \
	X(algorithm) X(parent) X(evolve_keys) X(devices) X(launcher) X(slurm_args)     \
	X(prune) X(python) X(ga_dir)
#define OPT_INT_FIELDS(X)                                                               \
	X(epochs) X(imgsz) X(batch) X(parallel) X(top) X(generations) X(per_device)    \
	X(slurm_submit) X(prune_warmup) X(population) X(lag) X(retries)
/* clang-format on */
#define OPT_REAL_FIELDS(X) X(mutation_prob) X(sigma) X(timeout)

static void assert_options_equal(const struct st_options *got, const struct st_options *want)
{
#define CHECK_TEXT(f) assert_string_equal(got->f, want->f);
#define CHECK_INT(f) assert_int_equal(got->f, want->f);
#define CHECK_REAL(f) assert_same_double(got->f, want->f);
	OPT_TEXT_FIELDS(CHECK_TEXT)
	OPT_INT_FIELDS(CHECK_INT)
	OPT_REAL_FIELDS(CHECK_REAL)
#undef CHECK_TEXT
#undef CHECK_INT
#undef CHECK_REAL
	assert_int_equal(got->seed, want->seed);
	assert_int_equal(got->budget, want->budget);
	for (int k = 0; k < META_COUNT; k++) {
		assert_same_double(got->base.v[k], want->base.v[k]);
		assert_same_double(got->meta.k[k].gain, want->meta.k[k].gain);
		assert_same_double(got->meta.k[k].lower, want->meta.k[k].lower);
		assert_same_double(got->meta.k[k].upper, want->meta.k[k].upper);
	}
}

static void options_round_trip(void **state)
{
	char path[PATH_MAX];
	struct st_db *db = create_db(state, "options.db", path, sizeof(path));
	struct st_options opts, read;
	struct ut_err err = {{0}};
	int found = 0;
	sample_options(&opts);
	if (st_options_write(db, &opts, &err) != 0)
		fail_msg("%s", err.msg);
	memset(&read, 0xa5, sizeof(read));
	if (st_options_read(db, &read, &found, &err) != 0)
		fail_msg("%s", err.msg);
	assert_int_equal(found, 1);
	assert_options_equal(&read, &opts);
	assert_true(read.seed > (1ull << 63));

	/* writing again replaces the one row */
	opts.generations = 1000;
	snprintf(opts.data, sizeof(opts.data), "data/VOC.yaml");
	opts.seed = 7;
	assert_int_equal(st_options_write(db, &opts, &err), 0);
	assert_int_equal(st_options_set_generations(db, 1234, &err), 0);
	opts.generations = 1234;
	assert_int_equal(st_options_read(db, &read, &found, &err), 0);
	assert_options_equal(&read, &opts);
	sqlite3 *sql = st_handle(db);
	/* the budget: 0 is stored as NULL (none) and read back as 0 */
	assert_int_equal(query_int(sql, "SELECT budget FROM evolution"), 4500);
	assert_int_equal(st_options_set_budget(db, 0, &err), 0);
	assert_int_equal(query_int(sql, "SELECT budget IS NULL FROM evolution"), 1);
	opts.budget = 0;
	assert_int_equal(st_options_read(db, &read, &found, &err), 0);
	assert_options_equal(&read, &opts);
	assert_int_equal(query_int(sql, "SELECT count(*) FROM evolution"), 1);
	assert_int_equal(query_int(sql, "SELECT created_at IS NOT NULL AND updated_at IS NOT NULL"
					" AND tool_version IS NOT NULL FROM evolution"),
			 1);
	st_close(db);
}

/* The budget's count: finished rows what they trained, the others their whole epochs. */
static void budget_count(void **state)
{
	(void)state;
	struct st_generation gens[6];
	memset(gens, 0, sizeof(gens));
	const enum st_status status[6] = {ST_DONE,    ST_PRUNED,      ST_FAILED,
					  ST_RUNNING, ST_INTERRUPTED, ST_RUNNING};
	const long done[6] = {10, 4, 1, 3, 7, 12};
	for (int i = 0; i < 6; i++) {
		gens[i].status = status[i];
		gens[i].epochs_done = done[i];
	}
	long spent = -1, reserved = -1;
	st_budget_count(gens, 6, 10, &spent, &reserved);
	assert_int_equal(spent, 15);
	assert_int_equal(reserved, 32); /* 10 + 10 + 12: a trainer past --epochs counts its own */
	st_budget_count(gens, 0, 10, &spent, NULL);
	assert_int_equal(spent, 0);
}

/* The recommendation: the best single run, or with re-evaluations the best mean. */
static void recommend(void **state)
{
	(void)state;
	struct st_generation gens[6];
	memset(gens, 0, sizeof(gens));
	const double fitness[6] = {0.30, 0.50, 0.20, 0.35, 0.34, 0.90};
	for (int i = 0; i < 6; i++) {
		gens[i].generation = i;
		gens[i].status = ST_DONE;
		gens[i].has_results = 1;
		gens[i].fitness = fitness[i];
	}
	gens[5].status = ST_FAILED; /* never counts, whatever its fitness */
	struct st_recommendation rec;
	assert_int_equal(st_recommend(gens, 5, &rec), 0);
	assert_int_equal(rec.index, 1); /* no re-evaluations: the best single run */
	assert_int_equal(rec.by_mean, 0);
	/* 2 re-evaluates 1 (mean 0.35), 4 re-evaluates 3 (mean 0.345): 1 wins among the pairs */
	gens[2].reevaluation = 1;
	gens[2].reevaluates = 1;
	gens[4].reevaluation = 1;
	gens[4].reevaluates = 3;
	assert_int_equal(st_recommend(gens, 6, &rec), 0);
	assert_int_equal(rec.by_mean, 1);
	assert_int_equal(rec.index, 1);
	assert_int_equal(rec.evaluations, 2);
	assert_true(fabs(rec.mean - 0.35) < 1e-12);
	assert_true(fabs(rec.sd - sqrt(0.045)) < 1e-12);
	/* 0 (0.30, one evaluation) is not among the most evaluated; nothing done: -1 */
	gens[0].fitness = 0.99;
	assert_int_equal(st_recommend(gens, 6, &rec), 0);
	assert_int_equal(rec.index, 1);
	assert_int_equal(st_recommend(gens + 5, 1, &rec), 0);
	assert_int_equal(rec.index, -1);
}

/* ---- generations and epochs ----------------------------------------------- */

static void generation_round_trip(void **state)
{
	char path[PATH_MAX], text[64];
	struct st_db *db = create_db(state, "generations.db", path, sizeof(path));
	struct ut_err err = {{0}};

	struct st_generation base; /* the base: no parent, failed, no results */
	memset(&base, 0, sizeof(base));
	base.generation = 0;
	base.parent = -1;
	base.population = -1;
	base.status = ST_FAILED;
	base.has_results = 0;
	for (int r = 0; r < ST_RESULT_COUNT; r++)
		base.results[r] = 0.5; /* not to be stored */
	base.fitness = 0.5;
	base.hyp = golden_hyp(0);
	base.seed = 1;
	snprintf(base.error, sizeof(base.error), "CUDA out of memory; see %s", "train.log");
	base.started_at = 1700000000.123;
	base.has_exit_status = 1;
	base.exit_status = 137;
	base.attempts = 1;
	put_generation(db, &base);

	struct st_generation child = sample_generation(1);
	put_generation(db, &child);
	struct st_generation pending; /* queued: no times, no exit status */
	memset(&pending, 0, sizeof(pending));
	pending.generation = 2;
	pending.parent = 1;
	pending.population = -1;
	pending.status = ST_PENDING;
	pending.hyp = golden_hyp(2);
	put_generation(db, &pending);

	struct st_generation *gens = NULL;
	size_t n = 0;
	if (st_generations_load(db, &gens, &n, &err) != 0)
		fail_msg("%s", err.msg);
	assert_int_equal(n, 3);
	assert_generation_equal(&gens[0], &base);
	assert_generation_equal(&gens[1], &child);
	assert_generation_equal(&gens[2], &pending);
	free(gens);

	sqlite3 *sql = st_handle(db);
	assert_int_equal(
	    query_int(sql, "SELECT parent IS NULL AND population IS NULL AND precision IS NULL"
			   " AND map IS NULL AND fitness IS NULL AND finished_at IS NULL"
			   " AND seconds IS NULL AND exit_status = 137"
			   " FROM generations WHERE generation = 0"),
	    1);
	assert_int_equal(query_int(sql,
				   "SELECT started_at IS NULL AND exit_status IS NULL"
				   " AND device IS NULL FROM generations WHERE generation = 2"),
			 1);
	query_text(sql, "SELECT started_at FROM generations WHERE generation = 0", text,
		   sizeof(text));
	assert_string_equal(text, "2023-11-14T22:13:20.123Z");
	query_text(sql, "SELECT status FROM generations WHERE generation = 1", text, sizeof(text));
	assert_string_equal(text, "done");

	/* upsert: the retried base replaces its row, the others stay */
	struct st_generation retried = child;
	retried.generation = 0;
	retried.parent = -1;
	put_generation(db, &retried);
	pending.status = ST_RUNNING;
	pending.started_at = 1700000500.5;
	put_generation(db, &pending);
	child.status = ST_INTERRUPTED; /* a retry forgets old results */
	child.has_results = 0;
	child.finished_at = 0;
	child.has_exit_status = 0;
	put_generation(db, &child);
	assert_int_equal(query_int(sql, "SELECT count(*) FROM generations"), 3);
	if (st_generations_load(db, &gens, &n, &err) != 0)
		fail_msg("%s", err.msg);
	assert_int_equal(n, 3);
	assert_generation_equal(&gens[0], &retried);
	assert_generation_equal(&gens[1], &child);
	assert_generation_equal(&gens[2], &pending);
	free(gens);
	st_close(db);
}

static void epochs_round_trip(void **state)
{
	char path[PATH_MAX];
	struct st_db *db = create_db(state, "epochs.db", path, sizeof(path));
	struct ut_err err = {{0}};
	for (int e = 0; e < 3; e++)
		assert_int_equal(st_epoch_put(db, 4, golden_epochs[e], &err), 0);
	double other[ST_EPOCH_COLS];
	memcpy(other, golden_epochs[0], sizeof(other));
	other[ST_EPOCH_COLS - 1] = NAN; /* a missing cell stays missing */
	assert_int_equal(st_epoch_put(db, 7, other, &err), 0);
	other[1] = 0.5; /* same (generation, epoch): replaced */
	assert_int_equal(st_epoch_put(db, 7, other, &err), 0);

	double *rows = NULL;
	size_t n = 0;
	const size_t width = 1 + ST_EPOCH_COLS;
	assert_int_equal(st_epochs_load(db, 4, &rows, &n, &err), 0);
	assert_int_equal(n, 3);
	for (size_t e = 0; e < n; e++) {
		assert_same_double(rows[e * width], 4);
		for (int c = 0; c < ST_EPOCH_COLS; c++)
			assert_same_double(rows[e * width + 1 + (size_t)c], golden_epochs[e][c]);
	}
	free(rows);

	assert_int_equal(st_epochs_load(db, -1, &rows, &n, &err), 0);
	assert_int_equal(n, 4);
	assert_same_double(rows[3 * width], 7);
	assert_same_double(rows[3 * width + 2], 0.5);
	assert_true(isnan(rows[3 * width + ST_EPOCH_COLS]));
	free(rows);

	assert_int_equal(st_epochs_clear(db, 4, &err), 0);
	assert_int_equal(st_epochs_load(db, 4, &rows, &n, &err), 0);
	assert_int_equal(n, 0);
	free(rows);
	assert_int_equal(st_epochs_load(db, -1, &rows, &n, &err), 0);
	assert_int_equal(n, 1);
	free(rows);
	st_close(db);
}

/* ---- YOLOv5's files --------------------------------------------------------- */

static void import_real_evolve_csv(void **state)
{
	struct st_db *db = imported_db(state, "import.db");
	struct st_generation *gens = NULL;
	size_t n = 0;
	struct ut_err err = {{0}};
	if (st_generations_load(db, &gens, &n, &err) != 0)
		fail_msg("%s", err.msg);
	assert_int_equal(n, 3);
	for (size_t g = 0; g < n; g++) {
		assert_int_equal(gens[g].generation, (long)g);
		assert_int_equal(gens[g].status, ST_DONE);
		assert_int_equal(gens[g].parent, -1);
		assert_int_equal(gens[g].has_results, 1);
		for (int r = 0; r < ST_RESULT_COUNT; r++)
			assert_same_double(gens[g].results[r], golden_results[g][r]);
		for (int k = 0; k < META_COUNT; k++)
			assert_same_double(gens[g].hyp.v[k], golden_hyps[g][k]);
		assert_same_double(gens[g].fitness,
				   0.1 * golden_results[g][2] + 0.9 * golden_results[g][3]);
	}
	free(gens);
	st_close(db);
}

static void export_matches_yolov5(void **state)
{
	char path[PATH_MAX];
	struct st_db *db = imported_db(state, "export.db");
	struct ut_err err = {{0}};
	int rc = -1;
	size_t len;

	reference_path(state, "evolve.csv", path, sizeof(path));
	char *want_csv = slurp(path, &len);
	char *csv = capture(st_export_evolve_csv, db, &rc, &err);
	assert_int_equal(rc, 0);
	assert_string_equal(csv, want_csv);
	assert_int_equal(strlen(csv), len);

	reference_path(state, "hyp_evolve.yaml", path, sizeof(path));
	char *want_yaml = slurp(path, &len);
	char *yaml = capture(st_export_hyp_evolve, db, &rc, &err);
	assert_int_equal(rc, 0);
	assert_string_equal(yaml, want_yaml);
	assert_int_equal(strlen(yaml), len);
	st_close(db);

	/* what we export imports back to the same bytes */
	char again_path[PATH_MAX];
	tmp_path(state, "exported.csv", again_path, sizeof(again_path));
	write_bytes(again_path, csv, strlen(csv));
	db = create_db(state, "reimport.db", path, sizeof(path));
	struct meta_table table;
	meta_table_default(&table);
	long imported = 0;
	if (st_import_evolve_csv(db, again_path, &table, &imported, &err) != 0)
		fail_msg("%s", err.msg);
	assert_int_equal(imported, 3);
	char *again = capture(st_export_evolve_csv, db, &rc, &err);
	assert_string_equal(again, want_csv);
	free(again);
	st_close(db);
	free(csv);
	free(yaml);
	free(want_csv);
	free(want_yaml);
}

/*
 * Generations 0 failed, 1-3 the reference rows, 4 pruned (with better
 * partial results), 5 done but worse, 6 running: only the done ones are
 * exported and the best is named by its generation number.
 */
static void export_skips_unfinished(void **state)
{
	char path[PATH_MAX], csv_path[PATH_MAX];
	struct st_db *db = create_db(state, "gaps.db", path, sizeof(path));
	struct ut_err err = {{0}};
	struct st_generation failed = sample_generation(0);
	failed.status = ST_FAILED;
	failed.has_results = 0;
	put_generation(db, &failed);
	int rc = 0;
	char *text = capture(st_export_hyp_evolve, db, &rc, &err);
	assert_int_equal(rc, -1);
	assert_contains(err.msg, path);
	assert_contains(err.msg, "no finished generation");
	free(text);

	struct meta_table table;
	meta_table_default(&table);
	long imported = 0;
	reference_path(state, "evolve.csv", csv_path, sizeof(csv_path));
	if (st_import_evolve_csv(db, csv_path, &table, &imported, &err) != 0)
		fail_msg("%s", err.msg);
	assert_int_equal(imported, 3);

	struct st_generation pruned = sample_generation(4);
	pruned.status = ST_PRUNED;
	pruned.results[ST_R_map50] = 0.9;
	pruned.results[ST_R_map] = 0.8;
	put_generation(db, &pruned);
	struct st_generation worse = sample_generation(5);
	const double worse_results[ST_RESULT_COUNT] = {0.512345678, 0.25, 0.00123456, 0.000543219,
						       0.1,	    0.05, 1234567.0};
	memcpy(worse.results, worse_results, sizeof(worse.results));
	worse.hyp = golden_hyp(0);
	put_generation(db, &worse);
	struct st_generation running = sample_generation(6);
	running.status = ST_RUNNING;
	running.has_results = 0;
	put_generation(db, &running);

	/* evolve.csv: the reference, then generation 5 */
	size_t len;
	char *reference = slurp(csv_path, &len);
	char *row0 = strchr(reference, '\n') + 1;
	const char *hyps0 = row0;
	for (int c = 0; c < ST_RESULT_COUNT; c++)
		hyps0 = strchr(hyps0, ',') + 1;
	struct ut_buf want = {0};
	assert_int_equal(ut_buf_printf(&want, "%s", reference), 0);
	assert_int_equal(ut_buf_printf(&want, "%s%.*s",
				       "             0.51235,                0.25,"
				       "           0.0012346,          0.00054322,"
				       "                 0.1,                0.05,"
				       "          1.2346e+06,",
				       (int)(strchr(hyps0, '\n') + 1 - hyps0), hyps0),
			 0);
	char *csv = capture(st_export_evolve_csv, db, &rc, &err);
	assert_int_equal(rc, 0);
	assert_string_equal(csv, want.data);
	free(csv);
	ut_buf_free(&want);
	free(reference);

	/* hyp_evolve.yaml: the reference but for the generation numbers */
	reference_path(state, "hyp_evolve.yaml", path, sizeof(path));
	reference = slurp(path, &len);
	const char *after_header = strstr(reference, "# Last generation: 2\n");
	assert_non_null(after_header);
	after_header = strchr(after_header, '\n') + 1;
	assert_int_equal(ut_buf_printf(&want,
				       "# YOLOv5 Hyperparameter Evolution Results\n"
				       "# Best generation: 1\n# Last generation: 5\n%s",
				       after_header),
			 0);
	char *yaml = capture(st_export_hyp_evolve, db, &rc, &err);
	assert_int_equal(rc, 0);
	assert_string_equal(yaml, want.data);
	free(yaml);
	ut_buf_free(&want);
	free(reference);
	st_close(db);
}

/*
 * YOLOv5 writes hyp_evolve.yaml from evolve.csv, so from values rounded to
 * 5 digits: np.argmax takes the first of equal ones (generation 1 is better
 * unrounded but ties with generation 0 once rounded), and the hyps are the
 * rounded values as PyYAML writes floats.
 */
static void best_ties_as_yolov5(void **state)
{
	char path[PATH_MAX];
	struct st_db *db = create_db(state, "ties.db", path, sizeof(path));
	const double maps[3] = {0.3, 0.300001, 0.2};
	for (long g = 0; g < 3; g++) {
		struct st_generation gen = sample_generation(g);
		gen.results[ST_R_map50] = 0.5;
		gen.results[ST_R_map] = maps[g];
		gen.hyp.v[META_lr0] = 0.0123456789;
		gen.hyp.v[META_weight_decay] = 1e-05;
		put_generation(db, &gen);
	}
	struct ut_err err = {{0}};
	int rc = -1;
	char *yaml = capture(st_export_hyp_evolve, db, &rc, &err);
	assert_int_equal(rc, 0);
	assert_contains(yaml, "\n# Best generation: 0\n# Last generation: 2\n");
	assert_contains(yaml, "\n\nlr0: 0.012346\n");
	assert_contains(yaml, "\nweight_decay: 1.0e-05\n");
	free(yaml);
	st_close(db);
}

static void export_without_done(void **state)
{
	char path[PATH_MAX], header[1024];
	struct st_db *db = create_db(state, "empty_export.db", path, sizeof(path));
	struct ut_err err = {{0}};
	int rc = 0;
	char *text = capture(st_export_hyp_evolve, db, &rc, &err);
	assert_int_equal(rc, -1);
	assert_contains(err.msg, "no finished generation");
	free(text);

	/* evolve.csv of nothing is YOLOv5's header alone */
	size_t len;
	reference_path(state, "evolve.csv", path, sizeof(path));
	char *reference = slurp(path, &len);
	snprintf(header, sizeof(header), "%.*s", (int)(strchr(reference, '\n') + 1 - reference),
		 reference);
	text = capture(st_export_evolve_csv, db, &rc, &err);
	assert_int_equal(rc, 0);
	assert_string_equal(text, header);
	free(text);
	free(reference);
	st_close(db);
}

/* ---- import errors ---------------------------------------------------------- */

/* An evolve.csv as cells, edited per test and then written out. */
struct csv_doc {
	int ncols, nrows;
	char names[EVOLVE_COLS + 1][32];
	char cells[3][EVOLVE_COLS + 1][32];
	int row_len[3];
};

static void doc_init(struct csv_doc *doc)
{
	memset(doc, 0, sizeof(*doc));
	doc->ncols = EVOLVE_COLS;
	doc->nrows = 3;
	for (int c = 0; c < EVOLVE_COLS; c++)
		snprintf(doc->names[c], sizeof(doc->names[c]), "%20s",
			 c < ST_RESULT_COUNT ? st_result_csv_name(c)
					     : meta_name(c - ST_RESULT_COUNT));
	for (int row = 0; row < doc->nrows; row++) {
		doc->row_len[row] = EVOLVE_COLS;
		for (int c = 0; c < EVOLVE_COLS; c++)
			snprintf(doc->cells[row][c], sizeof(doc->cells[row][c]), "%20.5g",
				 c < ST_RESULT_COUNT ? golden_results[row][c]
						     : golden_hyps[row][c - ST_RESULT_COUNT]);
	}
}

static int doc_column(const struct csv_doc *doc, const char *name)
{
	for (int c = 0; c < doc->ncols; c++) {
		const char *stripped = doc->names[c] + strspn(doc->names[c], " ");
		if (strcmp(stripped, name) == 0)
			return c;
	}
	fail_msg("no column %s", name);
	return -1;
}

static void doc_drop(struct csv_doc *doc, const char *name)
{
	int drop = doc_column(doc, name);
	for (int c = drop; c + 1 < doc->ncols; c++) {
		memcpy(doc->names[c], doc->names[c + 1], sizeof(doc->names[c]));
		for (int row = 0; row < doc->nrows; row++)
			memcpy(doc->cells[row][c], doc->cells[row][c + 1],
			       sizeof(doc->cells[row][c]));
	}
	doc->ncols--;
	for (int row = 0; row < doc->nrows; row++)
		doc->row_len[row] = doc->ncols;
}

/* A column after the others, with the same cell in every row. */
static void doc_add(struct csv_doc *doc, const char *name, const char *cell)
{
	snprintf(doc->names[doc->ncols], sizeof(doc->names[0]), "%20s", name);
	for (int row = 0; row < doc->nrows; row++) {
		snprintf(doc->cells[row][doc->ncols], sizeof(doc->cells[row][0]), "%20s", cell);
		doc->row_len[row] = doc->ncols + 1;
	}
	doc->ncols++;
}

static void doc_set(struct csv_doc *doc, int row, const char *name, const char *cell)
{
	snprintf(doc->cells[row][doc_column(doc, name)], sizeof(doc->cells[row][0]), "%s", cell);
}

static void doc_save(const struct csv_doc *doc, const char *path)
{
	struct ut_buf text = {0};
	for (int c = 0; c < doc->ncols; c++)
		assert_int_equal(
		    ut_buf_printf(&text, "%s%s", doc->names[c], c + 1 < doc->ncols ? "," : "\n"),
		    0);
	for (int row = 0; row < doc->nrows; row++)
		for (int c = 0; c < doc->row_len[row]; c++)
			assert_int_equal(ut_buf_printf(&text, "%s%s", doc->cells[row][c],
						       c + 1 < doc->row_len[row] ? "," : "\n"),
					 0);
	write_bytes(path, text.data, text.len);
	ut_buf_free(&text);
}

/* Importing name fails naming the file and with every part of want; nothing changes. */
static void assert_import_fails(void **state, struct st_db *db, const char *name,
				const char *const want[], size_t nwant)
{
	char path[PATH_MAX];
	struct meta_table table;
	struct ut_err err = {{0}};
	long imported = -7;
	meta_table_default(&table);
	tmp_path(state, name, path, sizeof(path));
	size_t before = generation_count(db);
	assert_int_equal(st_import_evolve_csv(db, path, &table, &imported, &err), -1);
	assert_contains(err.msg, path);
	for (size_t i = 0; i < nwant; i++)
		assert_contains(err.msg, want[i]);
	assert_null(strchr(err.msg, '\n'));
	assert_int_equal(generation_count(db), before);
	assert_int_equal(imported, -7);
}

static void import_errors(void **state)
{
	char path[PATH_MAX];
	struct st_db *db = create_db(state, "import_errors.db", path, sizeof(path));
	put_generation(db,
		       &(struct st_generation){.generation = 0, .parent = -1, .population = -1});
	struct csv_doc doc;

	doc_init(&doc);
	doc_add(&doc, "mixupp", "0.5");
	tmp_path(state, "unknown.csv", path, sizeof(path));
	doc_save(&doc, path);
	assert_import_fails(state, db, "unknown.csv",
			    (const char *const[]){":1: ", "unknown column", "mixupp"}, 3);

	doc_init(&doc);
	doc_drop(&doc, "lr0");
	tmp_path(state, "missing.csv", path, sizeof(path));
	doc_save(&doc, path);
	assert_import_fails(state, db, "missing.csv",
			    (const char *const[]){":1: ", "missing column", "'lr0'"}, 3);

	doc_init(&doc);
	doc_drop(&doc, "metrics/recall");
	tmp_path(state, "missing_result.csv", path, sizeof(path));
	doc_save(&doc, path);
	assert_import_fails(state, db, "missing_result.csv",
			    (const char *const[]){":1: ", "missing column", "metrics/recall"}, 3);

	doc_init(&doc);
	doc_set(&doc, 1, "hsv_s", "abc");
	tmp_path(state, "abc.csv", path, sizeof(path));
	doc_save(&doc, path);
	assert_import_fails(state, db, "abc.csv",
			    (const char *const[]){":3: ", "'hsv_s'", "not a finite number"}, 3);

	doc_init(&doc);
	doc_set(&doc, 2, "metrics/precision", "nan");
	tmp_path(state, "nan.csv", path, sizeof(path));
	doc_save(&doc, path);
	assert_import_fails(state, db, "nan.csv",
			    (const char *const[]){":4: ", "'metrics/precision'"}, 2);

	doc_init(&doc);
	doc.row_len[1] = EVOLVE_COLS - 1;
	tmp_path(state, "ragged.csv", path, sizeof(path));
	doc_save(&doc, path);
	assert_import_fails(state, db, "ragged.csv", (const char *const[]){":3: ", "36"}, 2);

	doc_init(&doc);
	doc_set(&doc, 0, "lr0", "5");
	tmp_path(state, "bounds.csv", path, sizeof(path));
	doc_save(&doc, path);
	assert_import_fails(state, db, "bounds.csv",
			    (const char *const[]){":2: ", "'lr0'", "outside"}, 3);

	/* the last row out of bounds: the rows before it are not imported either */
	doc_init(&doc);
	doc_set(&doc, 2, "anchors", "11");
	tmp_path(state, "bounds_last.csv", path, sizeof(path));
	doc_save(&doc, path);
	assert_import_fails(state, db, "bounds_last.csv",
			    (const char *const[]){":4: ", "'anchors'", "outside"}, 3);

	tmp_path(state, "empty.csv", path, sizeof(path));
	write_bytes(path, "", 0);
	assert_import_fails(state, db, "empty.csv", (const char *const[]){"empty"}, 1);

	assert_import_fails(state, db, "no_such_file.csv", (const char *const[]){"No such file"},
			    1);
	st_close(db);
}

static void import_without_anchors(void **state)
{
	char path[PATH_MAX], csv[PATH_MAX];
	struct st_db *db = create_db(state, "anchors.db", path, sizeof(path));
	struct st_generation failed = sample_generation(4); /* numbering goes on after it */
	failed.status = ST_FAILED;
	put_generation(db, &failed);
	struct csv_doc doc;
	doc_init(&doc);
	doc_drop(&doc, "anchors");
	tmp_path(state, "no_anchors.csv", csv, sizeof(csv));
	doc_save(&doc, csv);

	/* the default 3 is checked against the bounds like any value */
	struct meta_table table;
	meta_table_default(&table);
	table.k[META_anchors].lower = 4.0;
	struct ut_err err = {{0}};
	long imported = 0;
	assert_int_equal(st_import_evolve_csv(db, csv, &table, &imported, &err), -1);
	assert_contains(err.msg, "'anchors'");
	assert_contains(err.msg, ":2: ");

	table.k[META_anchors].lower = 2.0;
	table.k[META_anchors].upper = 3.2;
	if (st_import_evolve_csv(db, csv, &table, &imported, &err) != 0)
		fail_msg("%s", err.msg);
	assert_int_equal(imported, 3);
	struct st_generation *gens = NULL;
	size_t n = 0;
	assert_int_equal(st_generations_load(db, &gens, &n, &err), 0);
	assert_int_equal(n, 4);
	for (size_t g = 1; g < n; g++) {
		assert_int_equal(gens[g].generation, 4 + (long)g);
		assert_same_double(gens[g].hyp.v[META_anchors], 3.0);
		assert_same_double(gens[g].hyp.v[META_lr0], golden_hyps[g - 1][META_lr0]);
		assert_same_double(gens[g].hyp.v[META_copy_paste],
				   golden_hyps[g - 1][META_copy_paste]);
	}
	free(gens);
	st_close(db);
}

/* ---- st_csv_parse ------------------------------------------------------------- */

static void parse_results_csv(void **state)
{
	char path[PATH_MAX];
	size_t len;
	reference_path(state, "train3ep-results.csv", path, sizeof(path));
	char *text = slurp(path, &len);
	struct st_csv_table table;
	struct ut_err err = {{0}};
	if (st_csv_parse(text, len, path, &table, &err) != 0)
		fail_msg("%s", err.msg);
	free(text);
	assert_int_equal(table.ncols, ST_EPOCH_COLS);
	assert_int_equal(table.nrows, 3);
	for (size_t c = 0; c < table.ncols; c++)
		assert_string_equal(table.names[c], st_epoch_csv_names[c]);
	for (size_t row = 0; row < table.nrows; row++) {
		assert_int_equal(table.lines[row], (long)row + 2);
		for (size_t c = 0; c < table.ncols; c++)
			assert_same_double(table.cells[row * table.ncols + c],
					   golden_epochs[row][c]);
	}
	assert_int_equal(table.bad_cells, 0);
	assert_int_equal(table.ragged, 0);
	assert_int_equal(st_csv_column(&table, "metrics/mAP_0.5:0.95"), 7);
	assert_int_equal(st_csv_column(&table, "x/lr2"), 13);
	assert_int_equal(st_csv_column(&table, "               epoch"), -1);
	assert_int_equal(st_csv_column(&table, "nope"), -1);
	st_csv_free(&table);
}

static void parse_bad_cells(void **state)
{
	static const char text[] = " a , b,c\n"
				   "1, 2 ,3\n"
				   "4,xyz,\n"
				   "nan,inf,1e999\n"
				   "7,8";
	struct st_csv_table table;
	struct ut_err err = {{0}};
	(void)state;
	assert_int_equal(st_csv_parse(text, strlen(text), "t.csv", &table, &err), 0);
	assert_int_equal(table.ncols, 3);
	assert_string_equal(table.names[0], "a");
	assert_string_equal(table.names[1], "b");
	assert_string_equal(table.names[2], "c");
	assert_int_equal(table.nrows, 4);
	assert_same_double(table.cells[1], 2);
	assert_same_double(table.cells[3], 4);
	assert_true(isnan(table.cells[4]));
	assert_true(isnan(table.cells[5]));
	for (int c = 6; c < 9; c++)
		assert_true(isnan(table.cells[c]));
	assert_int_equal(table.bad_cells, 5);
	assert_int_equal(table.first_bad_line, 3);
	assert_int_equal(table.first_bad_col, 1);
	assert_int_equal(table.ragged, 1);
	assert_int_equal(table.ragged_line, 5);
	assert_int_equal(table.lines[3], 5);
	assert_same_double(table.cells[9], 7);
	assert_true(isnan(table.cells[11])); /* the short row's missing cell */
	st_csv_free(&table);

	assert_int_equal(st_csv_parse("", 0, "empty.csv", &table, &err), -1);
	assert_contains(err.msg, "empty.csv");
	assert_contains(err.msg, "empty");
}

/*
 * Errors name lines of the file: blank lines (which libcsv skips) count,
 * and CRLF ends a line once.
 */
static void blank_lines_keep_line_numbers(void **state)
{
	static const char text[] = "a,b\r\n1,2\r\n\r\n3,x\r\n\n4,5\n";
	struct st_csv_table table;
	struct ut_err err = {{0}};
	assert_int_equal(st_csv_parse(text, strlen(text), "t.csv", &table, &err), 0);
	assert_int_equal(table.nrows, 3);
	assert_int_equal(table.lines[0], 2);
	assert_int_equal(table.lines[1], 4);
	assert_int_equal(table.lines[2], 6);
	assert_int_equal(table.bad_cells, 1);
	assert_int_equal(table.first_bad_line, 4);
	st_csv_free(&table);

	/* an evolve.csv with a blank line after its header: "abc" is on line 4 */
	char path[PATH_MAX], csv[PATH_MAX];
	struct st_db *db = create_db(state, "blank_lines.db", path, sizeof(path));
	struct csv_doc doc;
	doc_init(&doc);
	doc_set(&doc, 1, "hsv_s", "abc");
	tmp_path(state, "blank_line.csv", csv, sizeof(csv));
	doc_save(&doc, csv);
	size_t len;
	char *saved = slurp(csv, &len);
	char *first_row = strchr(saved, '\n') + 1;
	struct ut_buf with_blank = {0};
	assert_int_equal(
	    ut_buf_printf(&with_blank, "%.*s\n%s", (int)(first_row - saved), saved, first_row), 0);
	write_bytes(csv, with_blank.data, with_blank.len);
	ut_buf_free(&with_blank);
	free(saved);
	assert_import_fails(state, db, "blank_line.csv",
			    (const char *const[]){":4: ", "'hsv_s'", "not a finite number"}, 3);
	st_close(db);
}

int main(void)
{
	const char *root = getenv("YE_SOURCE_ROOT");
	if (root == NULL || *root == '\0') {
		fprintf(stderr, "test_store: YE_SOURCE_ROOT is not set (the repository root)\n");
		return 1;
	}
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(schema_of_new_db),
	    cmocka_unit_test(budget_count),
	    cmocka_unit_test(recommend),
	    cmocka_unit_test(views_work),
	    cmocka_unit_test(newer_schema_refused),
	    cmocka_unit_test(garbage_file_refused),
	    cmocka_unit_test(foreign_db_refused),
	    cmocka_unit_test(reopen_keeps_rows),
	    cmocka_unit_test(lock_in_process),
	    cmocka_unit_test(lock_dies_with_holder),
	    cmocka_unit_test(file_identity),
	    cmocka_unit_test(writer_alive),
	    cmocka_unit_test(stop_reason_round_trip),
	    cmocka_unit_test(migrate_from_v1),
	    cmocka_unit_test(options_round_trip),
	    cmocka_unit_test(generation_round_trip),
	    cmocka_unit_test(epochs_round_trip),
	    cmocka_unit_test(import_real_evolve_csv),
	    cmocka_unit_test(export_matches_yolov5),
	    cmocka_unit_test(export_skips_unfinished),
	    cmocka_unit_test(best_ties_as_yolov5),
	    cmocka_unit_test(export_without_done),
	    cmocka_unit_test(import_errors),
	    cmocka_unit_test(import_without_anchors),
	    cmocka_unit_test(parse_results_csv),
	    cmocka_unit_test(parse_bad_cells),
	    cmocka_unit_test(blank_lines_keep_line_numbers),
	    cmocka_unit_test(ultralytics_space),
	    cmocka_unit_test(tuner_files),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
