/*
 * tunerio.c - the files of the Ultralytics Tuner (`model.tune()`), so a
 * Tuner run can be continued in yolo-evolve and the results taken back:
 *
 * - tune_results.ndjson (8.4.x): one JSON object a line, {"iteration",
 *   "fitness", "hyperparameters": {key: value}, "datasets": {name: {metric:
 *   value, "fitness"}}, "save_dirs": {name: dir}, "failed_datasets": [...]}.
 * - tune_results.csv (8.3.x): a header `fitness,<keys>`, then a row per
 *   iteration: fitness rounded to 5 digits and the keys' values.
 *
 * Imported rows become generations of an ultralytics-space evolution,
 * numbered after the existing ones; an iteration without training metrics
 * (the Tuner records those with fitness 0) is imported as `failed`, never a
 * parent. Keys a file lacks take the base (default.yaml) value, as the Tuner
 * does; an unknown key or an out-of-bounds value is an error naming the
 * file, line and key, and then nothing is imported.
 */
#include "store.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* One Tuner iteration. */
struct tuner_row {
	struct st_generation gen;
	long line;
};

struct tuner_rows {
	struct tuner_row *rows;
	size_t n, cap;
};

/* The names of the results in Ultralytics' metrics dictionaries (NULL: none). */
static const char *const metric_names[ST_RESULT_COUNT] = {
    "metrics/precision(B)", "metrics/recall(B)", "metrics/mAP50(B)", "metrics/mAP50-95(B)",
    "val/box_loss",	    "val/dfl_loss",	 "val/cls_loss"};

static struct tuner_row *rows_add(struct tuner_rows *rows, long line)
{
	if (rows->n == rows->cap) {
		size_t cap = rows->cap ? rows->cap * 2 : 64;
		struct tuner_row *grown = realloc(rows->rows, cap * sizeof(*grown));
		if (grown == NULL)
			return NULL;
		rows->rows = grown;
		rows->cap = cap;
	}
	struct tuner_row *row = &rows->rows[rows->n++];
	memset(row, 0, sizeof(*row));
	row->line = line;
	row->gen.parent = -1;
	row->gen.population = -1;
	row->gen.status = ST_DONE;
	row->gen.has_results = 1;
	for (int r = 0; r < ST_RESULT_COUNT; r++)
		row->gen.results[r] = NAN;
	meta_hyp_ultralytics_base(&row->gen.hyp);
	snprintf(row->gen.host, sizeof(row->gen.host), "imported");
	return row;
}

/* ---- tune_results.csv ------------------------------------------------------ */

static int read_csv(const char *path, const char *text, size_t len, struct tuner_rows *rows,
		    struct ut_err *err)
{
	struct st_csv_table csv;
	if (st_csv_parse(text, len, path, &csv, err) != 0)
		return -1;
	char q[UT_QUOTE_LEN];
	int rc = 0;
	if (csv.ncols == 0 || strcmp(csv.names[0], "fitness") != 0)
		rc = ut_err_set(err, "%s:1: not a tune_results.csv (its first column is fitness)",
				path);
	int keys[256];
	for (size_t c = 1; rc == 0 && c < csv.ncols; c++) {
		int k = meta_space_find(META_SPACE_ULTRALYTICS, csv.names[c]);
		if (c >= UT_ARRAY_LEN(keys) || k < 0)
			rc = ut_err_set(err, "%s:1: unknown column '%s'", path,
					ut_quote(csv.names[c], q, sizeof(q)));
		else if (st_csv_column(&csv, csv.names[c]) != (long)c)
			rc = ut_err_set(err, "%s:1: duplicate column '%s'", path,
					ut_quote(csv.names[c], q, sizeof(q)));
		else
			keys[c] = k;
	}
	if (rc == 0 && csv.ragged)
		rc = ut_err_set(err, "%s:%ld: expected %zu values", path, csv.ragged_line,
				csv.ncols);
	if (rc == 0 && csv.bad_cells)
		rc = ut_err_set(err, "%s:%ld: column '%s': not a finite number", path,
				csv.first_bad_line,
				ut_quote(csv.names[csv.first_bad_col], q, sizeof(q)));
	for (size_t r = 0; rc == 0 && r < csv.nrows; r++) {
		struct tuner_row *row = rows_add(rows, csv.lines[r]);
		if (row == NULL) {
			rc = ut_err_set(err, "%s: out of memory", path);
			break;
		}
		const double *cells = csv.cells + r * csv.ncols;
		row->gen.fitness = cells[0];
		for (size_t c = 1; c < csv.ncols; c++)
			row->gen.hyp.v[keys[c]] = cells[c];
	}
	st_csv_free(&csv);
	return rc;
}

/* ---- tune_results.ndjson --------------------------------------------------- */

/* Has the record training metrics? (the Tuner's _has_training_metrics) */
static int trained(const cJSON *record)
{
	const cJSON *datasets = cJSON_GetObjectItemCaseSensitive(record, "datasets");
	const cJSON *failed = cJSON_GetObjectItemCaseSensitive(record, "failed_datasets");
	const cJSON *dataset;
	cJSON_ArrayForEach(dataset, datasets)
	{
		int is_failed = 0;
		const cJSON *name;
		cJSON_ArrayForEach(name, failed) if (cJSON_IsString(name) &&
						     strcmp(name->valuestring, dataset->string) ==
							 0) is_failed = 1;
		if (!is_failed && cJSON_IsObject(dataset) && dataset->child != NULL)
			return 1;
	}
	return 0;
}

/* The results and save_dir of a record trained on one dataset (several: fitness only). */
static void record_results(const cJSON *record, struct st_generation *gen)
{
	const cJSON *datasets = cJSON_GetObjectItemCaseSensitive(record, "datasets");
	if (cJSON_GetArraySize(datasets) != 1)
		return;
	const cJSON *metrics = datasets->child;
	for (int r = 0; r < ST_RESULT_COUNT; r++) {
		const cJSON *value = cJSON_GetObjectItemCaseSensitive(metrics, metric_names[r]);
		if (cJSON_IsNumber(value))
			gen->results[r] = value->valuedouble;
	}
	const cJSON *dirs = cJSON_GetObjectItemCaseSensitive(record, "save_dirs");
	if (cJSON_GetArraySize(dirs) == 1 && cJSON_IsString(dirs->child))
		snprintf(gen->save_dir, sizeof(gen->save_dir), "%s", dirs->child->valuestring);
}

static int read_record(const char *path, long line, const cJSON *record, struct tuner_row *row,
		       struct ut_err *err)
{
	char q[UT_QUOTE_LEN];
	const cJSON *fitness = cJSON_GetObjectItemCaseSensitive(record, "fitness");
	const cJSON *hyps = cJSON_GetObjectItemCaseSensitive(record, "hyperparameters");
	if (!cJSON_IsObject(record) || !cJSON_IsObject(hyps))
		return ut_err_set(err, "%s:%ld: not a Tuner record (no hyperparameters)", path,
				  line);
	if (!cJSON_IsNumber(fitness) || !isfinite(fitness->valuedouble))
		return ut_err_set(err, "%s:%ld: fitness: not a finite number", path, line);
	const cJSON *item;
	cJSON_ArrayForEach(item, hyps)
	{
		int k = meta_space_find(META_SPACE_ULTRALYTICS, item->string);
		if (k < 0)
			return ut_err_set(err, "%s:%ld: unknown key '%s'", path, line,
					  ut_quote(item->string, q, sizeof(q)));
		if (!cJSON_IsNumber(item) || !isfinite(item->valuedouble))
			return ut_err_set(err, "%s:%ld: key '%s': not a finite number", path, line,
					  item->string);
		row->gen.hyp.v[k] = item->valuedouble;
	}
	row->gen.fitness = fitness->valuedouble;
	if (!trained(record)) {
		row->gen.status = ST_FAILED;
		row->gen.has_results = 0;
		snprintf(row->gen.error, sizeof(row->gen.error),
			 "imported: no training metrics in the Tuner's record");
		return 0;
	}
	record_results(record, &row->gen);
	return 0;
}

static int read_ndjson(const char *path, const char *text, size_t len, struct tuner_rows *rows,
		       struct ut_err *err)
{
	long line = 0;
	for (size_t start = 0; start < len;) {
		const char *newline = memchr(text + start, '\n', len - start);
		size_t end = newline ? (size_t)(newline - text) : len;
		line++;
		size_t blank = start;
		while (blank < end && strchr(" \t\r", text[blank]) != NULL)
			blank++;
		if (blank < end) {
			cJSON *record = cJSON_ParseWithLength(text + start, end - start);
			if (record == NULL)
				return ut_err_set(err, "%s:%ld: not valid JSON", path, line);
			struct tuner_row *row = rows_add(rows, line);
			int rc = row ? read_record(path, line, record, row, err)
				     : ut_err_set(err, "%s: out of memory", path);
			cJSON_Delete(record);
			if (rc != 0)
				return -1;
		}
		start = end + 1;
	}
	return 0;
}

/* ---- import ------------------------------------------------------------------- */

int st_is_tuner_file(const char *path, const char *text, size_t len)
{
	size_t n = strlen(path);
	if (n >= 7 && strcmp(path + n - 7, ".ndjson") == 0)
		return 1;
	return len >= 8 && strncmp(text, "fitness,", 8) == 0;
}

struct import_batch {
	struct tuner_rows *rows;
	long first_generation;
	struct ut_err *err;
};

static int put_rows(struct st_db *db, void *arg)
{
	struct import_batch *batch = arg;
	for (size_t i = 0; i < batch->rows->n; i++) {
		struct st_generation *gen = &batch->rows->rows[i].gen;
		gen->generation = batch->first_generation + (long)i;
		if (st_generation_put(db, gen, batch->err) != 0)
			return -1;
	}
	return 0;
}

int st_import_tuner(struct st_db *db, const char *path, const struct meta_table *table,
		    long *imported, struct ut_err *err)
{
	if (table->space != META_SPACE_ULTRALYTICS)
		return ut_err_set(err,
				  "%s: the Ultralytics Tuner's file needs the ultralytics space "
				  "(--trainer ultralytics or --space ultralytics)",
				  path);
	char *text;
	size_t len;
	if (ut_read_file(path, &text, &len, err) != 0)
		return -1;
	struct tuner_rows rows = {0};
	size_t n = strlen(path);
	int rc = n >= 7 && strcmp(path + n - 7, ".ndjson") == 0
		     ? read_ndjson(path, text, len, &rows, err)
		     : read_csv(path, text, len, &rows, err);
	free(text);
	for (size_t i = 0; rc == 0 && i < rows.n; i++) {
		struct st_generation *gen = &rows.rows[i].gen;
		if (gen->hyp.v[META_close_mosaic] != round(gen->hyp.v[META_close_mosaic]))
			rc = ut_err_set(err, "%s:%ld: key 'close_mosaic': not an integer", path,
					rows.rows[i].line);
		char where[ST_STR + 32];
		snprintf(where, sizeof(where), "%s:%ld", path, rows.rows[i].line);
		if (rc == 0)
			rc = meta_hyp_check(&gen->hyp, table, where, err);
	}
	struct st_generation *gens = NULL;
	size_t count = 0;
	if (rc == 0)
		rc = st_generations_load(db, &gens, &count, err);
	if (rc == 0) {
		struct import_batch batch = {&rows, count ? gens[count - 1].generation + 1 : 0,
					     err};
		rc = st_transaction(db, put_rows, &batch, err);
		if (rc == 0)
			*imported = (long)rows.n;
	}
	free(gens);
	free(rows.rows);
	return rc;
}

/* ---- export ------------------------------------------------------------------- */

/* The done generations of an Ultralytics run, malloc'ed. */
static int load_done(struct st_db *db, struct st_generation **out, size_t *n, struct ut_err *err)
{
	if (st_space(db) != META_SPACE_ULTRALYTICS)
		return ut_err_set(err,
				  "%s: the Tuner's files hold the ultralytics space, this "
				  "evolution has the %s space",
				  st_path(db), meta_space_name(st_space(db)));
	struct st_generation *all;
	size_t count, kept = 0;
	if (st_generations_load(db, &all, &count, err) != 0)
		return -1;
	for (size_t i = 0; i < count; i++)
		if (all[i].status == ST_DONE && all[i].has_results)
			all[kept++] = all[i];
	*out = all;
	*n = kept;
	return 0;
}

/* The name the package gives a dataset's run: the yaml's stem, or its folder's for data.yaml. */
static void dataset_name(const char *data, char *out, size_t size)
{
	const char *slash = strrchr(data, '/');
	const char *base = slash ? slash + 1 : data;
	const char *dot = strrchr(base, '.');
	size_t stem = dot ? (size_t)(dot - base) : strlen(base);
	if (stem == 4 && strncmp(base, "data", 4) == 0 && slash != NULL && slash > data) {
		const char *parent = slash;
		while (parent > data && parent[-1] != '/')
			parent--;
		snprintf(out, size, "%.*s", (int)(slash - parent), parent);
		return;
	}
	snprintf(out, size, "%.*s", (int)stem, base);
}

/* The Tuner's record of one generation. */
static cJSON *record_of(const struct st_generation *gen, long iteration, const char *dataset)
{
	cJSON *record = cJSON_CreateObject();
	cJSON *hyps = cJSON_CreateObject();
	cJSON *datasets = cJSON_CreateObject();
	cJSON *metrics = cJSON_CreateObject();
	cJSON *dirs = cJSON_CreateObject();
	double fitness = ut_round5(gen->fitness);
	const int *keys;
	int count = meta_space_keys(META_SPACE_ULTRALYTICS, &keys);
	for (int i = 0; i < count; i++)
		cJSON_AddNumberToObject(hyps, meta_name(keys[i]), gen->hyp.v[keys[i]]);
	for (int r = 0; r < ST_RESULT_COUNT; r++)
		if (isfinite(gen->results[r]))
			cJSON_AddNumberToObject(metrics, metric_names[r], gen->results[r]);
	cJSON_AddNumberToObject(metrics, "fitness", fitness);
	cJSON_AddNumberToObject(record, "iteration", (double)iteration);
	cJSON_AddNumberToObject(record, "fitness", fitness);
	cJSON_AddItemToObject(record, "hyperparameters", hyps);
	cJSON_AddItemToObject(datasets, dataset, metrics);
	cJSON_AddItemToObject(record, "datasets", datasets);
	if (gen->save_dir[0] != '\0') {
		cJSON_AddStringToObject(dirs, dataset, gen->save_dir);
		cJSON_AddItemToObject(record, "save_dirs", dirs);
	} else {
		cJSON_Delete(dirs);
	}
	return record;
}

int st_export_tuner_ndjson(struct st_db *db, FILE *out, struct ut_err *err)
{
	struct st_options *opts = malloc(sizeof(*opts));
	struct st_generation *gens = NULL;
	size_t n = 0;
	int found = 0;
	if (opts == NULL)
		return ut_err_set(err, "%s: out of memory", st_path(db));
	int rc = load_done(db, &gens, &n, err);
	if (rc == 0)
		rc = st_options_read(db, opts, &found, err);
	char dataset[256];
	dataset_name(rc == 0 && found ? opts->data : "data", dataset, sizeof(dataset));
	for (size_t i = 0; rc == 0 && i < n; i++) {
		cJSON *record = record_of(&gens[i], (long)i + 1, dataset);
		char *text = record ? cJSON_PrintUnformatted(record) : NULL;
		if (text == NULL)
			rc = ut_err_set(err, "%s: out of memory", st_path(db));
		else if (fprintf(out, "%s\n", text) < 0)
			rc = ut_err_set(err, "tune_results.ndjson: write error");
		cJSON_free(text);
		cJSON_Delete(record);
	}
	free(gens);
	free(opts);
	return rc;
}

int st_export_tuner_csv(struct st_db *db, FILE *out, struct ut_err *err)
{
	struct st_generation *gens = NULL;
	size_t n = 0;
	if (load_done(db, &gens, &n, err) != 0)
		return -1;
	const int *keys;
	int count = meta_space_keys(META_SPACE_ULTRALYTICS, &keys);
	fprintf(out, "fitness");
	for (int i = 0; i < count; i++)
		fprintf(out, ",%s", meta_name(keys[i]));
	fprintf(out, "\n");
	for (size_t g = 0; g < n; g++) {
		char value[40];
		ut_fmt_pyfloat(ut_round5(gens[g].fitness), value, sizeof(value));
		fprintf(out, "%s", value);
		for (int i = 0; i < count; i++) {
			double v = gens[g].hyp.v[keys[i]];
			if (keys[i] == META_close_mosaic)
				snprintf(value, sizeof(value), "%ld", lround(v));
			else
				ut_fmt_pyfloat(v, value, sizeof(value));
			fprintf(out, ",%s", value);
		}
		fprintf(out, "\n");
	}
	free(gens);
	return ferror(out) ? ut_err_set(err, "tune_results.csv: write error") : 0;
}
