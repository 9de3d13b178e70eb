/*
 * csvio.c - YOLOv5's CSV files: a tolerant reader (libcsv) for results.csv
 * and evolve.csv, import of evolve.csv into the database, and byte-exact
 * export of evolve.csv and hyp_evolve.yaml (see store.h).
 */
#include "store.h"

#include <csv.h>
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- reading ------------------------------------------------------------- */

struct csv_state {
	struct st_csv_table *table;
	size_t fields; /* fields seen in the current row */
	int last_term; /* terminator of the previous row, to spot CRLF */
	struct ut_buf field;
	double *row;
	size_t row_len, row_cap;
	int in_header;
	long line;
	int oom;
	char **names;
	size_t names_len, names_cap;
};

static char *strip(const char *text, size_t len)
{
	while (len > 0 && isspace((unsigned char)*text)) {
		text++;
		len--;
	}
	while (len > 0 && isspace((unsigned char)text[len - 1]))
		len--;
	char *out = malloc(len + 1);
	if (out != NULL) {
		memcpy(out, text, len);
		out[len] = '\0';
	}
	return out;
}

static void on_field(void *text, size_t len, void *data)
{
	struct csv_state *st = data;
	if (st->oom)
		return;
	st->fields++;
	char *cell = strip(text, len);
	if (cell == NULL) {
		st->oom = 1;
		return;
	}
	if (st->in_header) {
		if (st->names_len == st->names_cap) {
			st->names_cap = st->names_cap ? st->names_cap * 2 : 16;
			char **grown = realloc(st->names, st->names_cap * sizeof(*grown));
			if (grown == NULL) {
				free(cell);
				st->oom = 1;
				return;
			}
			st->names = grown;
		}
		st->names[st->names_len++] = cell;
		return;
	}
	double value;
	if (ut_parse_double(cell, &value) != 0 || strlen(cell) != strcspn(cell, "\t\n\r")) {
		value = NAN;
		if (st->table->bad_cells++ == 0) {
			st->table->first_bad_line = st->line;
			st->table->first_bad_col = st->row_len;
		}
	}
	free(cell);
	if (st->row_len == st->row_cap) {
		st->row_cap = st->row_cap ? st->row_cap * 2 : 32;
		double *grown = realloc(st->row, st->row_cap * sizeof(*grown));
		if (grown == NULL) {
			st->oom = 1;
			return;
		}
		st->row = grown;
	}
	st->row[st->row_len++] = value;
}

static int append_row(struct csv_state *st)
{
	struct st_csv_table *t = st->table;
	size_t n = t->nrows + 1;
	double *cells = realloc(t->cells, n * t->ncols * sizeof(*cells));
	long *lines = cells ? realloc(t->lines, n * sizeof(*lines)) : NULL;
	if (cells != NULL)
		t->cells = cells;
	if (lines == NULL)
		return -1;
	t->lines = lines;
	for (size_t c = 0; c < t->ncols; c++)
		t->cells[t->nrows * t->ncols + c] = c < st->row_len ? st->row[c] : NAN;
	t->lines[t->nrows] = st->line;
	t->nrows = n;
	return 0;
}

static void on_row(int terminator, void *data)
{
	struct csv_state *st = data;
	int crlf = terminator == '\n' && st->last_term == '\r';
	st->last_term = terminator;
	if (st->oom)
		return;
	if (st->fields == 0) {
		/* CSV_REPALL_NL reports blank lines (and the LF of a CRLF) too */
		if (!crlf)
			st->line++;
		return;
	}
	st->fields = 0;
	if (st->in_header) {
		st->in_header = 0;
		st->table->names = st->names;
		st->table->ncols = st->names_len;
		st->names = NULL;
	} else {
		if (st->row_len != st->table->ncols && !st->table->ragged) {
			st->table->ragged = 1;
			st->table->ragged_line = st->line;
		}
		if (append_row(st) != 0)
			st->oom = 1;
	}
	st->row_len = 0;
	st->line++;
}

int st_csv_parse(const char *text, size_t len, const char *source, struct st_csv_table *out,
		 struct ut_err *err)
{
	memset(out, 0, sizeof(*out));
	struct csv_parser parser;
	if (csv_init(&parser, CSV_REPALL_NL) != 0)
		return ut_err_set(err, "%s: out of memory", source);
	struct csv_state st = {.table = out, .in_header = 1, .line = 1};
	size_t done = csv_parse(&parser, text, len, on_field, on_row, &st);
	int rc = 0;
	if (done != len)
		rc = ut_err_set(err, "%s:%ld: %s", source, st.line,
				csv_strerror(csv_error(&parser)));
	csv_fini(&parser, on_field, on_row, &st);
	csv_free(&parser);
	free(st.row);
	for (size_t i = 0; st.names != NULL && i < st.names_len; i++)
		free(st.names[i]);
	free(st.names);
	if (rc == 0 && st.oom)
		rc = ut_err_set(err, "%s: out of memory", source);
	if (rc == 0 && out->names == NULL)
		rc = ut_err_set(err, "%s: empty file (no header)", source);
	if (rc != 0)
		st_csv_free(out);
	return rc;
}

void st_csv_free(struct st_csv_table *table)
{
	for (size_t i = 0; table->names != NULL && i < table->ncols; i++)
		free(table->names[i]);
	free(table->names);
	free(table->cells);
	free(table->lines);
	memset(table, 0, sizeof(*table));
}

long st_csv_column(const struct st_csv_table *table, const char *name)
{
	for (size_t i = 0; i < table->ncols; i++)
		if (strcmp(table->names[i], name) == 0)
			return (long)i;
	return -1;
}

/* ---- import -------------------------------------------------------------- */

struct import_plan {
	const struct st_csv_table *csv;
	long result_col[ST_RESULT_COUNT];
	long hyp_col[META_COUNT];
	long first_generation;
	struct ut_err *err;
};

static int map_columns(const struct st_csv_table *csv, const char *path, struct import_plan *plan,
		       struct ut_err *err)
{
	for (int r = 0; r < ST_RESULT_COUNT; r++) {
		plan->result_col[r] = st_csv_column(csv, st_result_csv_name(r));
		if (plan->result_col[r] < 0)
			return ut_err_set(err, "%s:1: missing column '%s'", path,
					  st_result_csv_name(r));
	}
	for (int k = 0; k < META_COUNT; k++) {
		plan->hyp_col[k] = st_csv_column(csv, meta_name(k));
		if (plan->hyp_col[k] < 0 && k != META_anchors)
			return ut_err_set(err, "%s:1: missing column '%s'", path, meta_name(k));
	}
	char q[UT_QUOTE_LEN];
	for (size_t c = 0; c < csv->ncols; c++) {
		if (st_csv_column(csv, csv->names[c]) != (long)c)
			return ut_err_set(err, "%s:1: duplicate column '%s'", path,
					  ut_quote(csv->names[c], q, sizeof(q)));
		int known = meta_find(csv->names[c]) >= 0;
		for (int r = 0; r < ST_RESULT_COUNT && !known; r++)
			known = strcmp(csv->names[c], st_result_csv_name(r)) == 0;
		if (!known)
			return ut_err_set(err, "%s:1: unknown column '%s'", path,
					  ut_quote(csv->names[c], q, sizeof(q)));
	}
	return 0;
}

static int import_rows(struct st_db *db, void *arg)
{
	struct import_plan *plan = arg;
	const struct st_csv_table *csv = plan->csv;
	struct ut_err *err = plan->err;
	for (size_t row = 0; row < csv->nrows; row++) {
		const double *cells = csv->cells + row * csv->ncols;
		struct st_generation gen = {0};
		gen.generation = plan->first_generation + (long)row;
		gen.parent = -1;
		gen.population = -1;
		gen.status = ST_DONE;
		gen.has_results = 1;
		for (int r = 0; r < ST_RESULT_COUNT; r++)
			gen.results[r] = cells[plan->result_col[r]];
		gen.fitness = 0.1 * gen.results[ST_R_map50] + 0.9 * gen.results[ST_R_map];
		for (int k = 0; k < META_COUNT; k++)
			gen.hyp.v[k] = plan->hyp_col[k] >= 0 ? cells[plan->hyp_col[k]] : 3.0;
		snprintf(gen.host, sizeof(gen.host), "imported");
		if (st_generation_put(db, &gen, err) != 0)
			return -1;
	}
	return 0;
}

int st_import_evolve_csv(struct st_db *db, const char *path, const struct meta_table *table,
			 long *imported, struct ut_err *err)
{
	if (table->space != META_SPACE_YOLOV5)
		return ut_err_set(err,
				  "%s: an evolve.csv holds YOLOv5 hyperparameters, this "
				  "evolution the %s space",
				  path, meta_space_name(table->space));
	char *text;
	size_t len;
	if (ut_read_file(path, &text, &len, err) != 0)
		return -1;
	struct st_csv_table csv;
	int rc = st_csv_parse(text, len, path, &csv, err);
	free(text);
	if (rc != 0)
		return -1;
	struct import_plan plan = {.csv = &csv, .err = err};
	rc = map_columns(&csv, path, &plan, err);
	if (rc == 0 && csv.ragged)
		rc = ut_err_set(err, "%s:%ld: expected %zu values", path, csv.ragged_line,
				csv.ncols);
	char q[UT_QUOTE_LEN];
	if (rc == 0 && csv.bad_cells)
		rc = ut_err_set(err, "%s:%ld: column '%s': not a finite number", path,
				csv.first_bad_line,
				ut_quote(csv.names[csv.first_bad_col], q, sizeof(q)));
	for (size_t row = 0; rc == 0 && row < csv.nrows; row++) {
		struct meta_hyp hyp;
		for (int k = 0; k < META_COUNT; k++)
			hyp.v[k] = plan.hyp_col[k] >= 0
				       ? csv.cells[row * csv.ncols + plan.hyp_col[k]]
				       : 3.0;
		char where[ST_STR + 32];
		snprintf(where, sizeof(where), "%s:%ld", path, csv.lines[row]);
		rc = meta_hyp_check(&hyp, table, where, err);
	}
	struct st_generation *gens = NULL;
	size_t count = 0;
	if (rc == 0)
		rc = st_generations_load(db, &gens, &count, err);
	if (rc == 0) {
		plan.first_generation = count ? gens[count - 1].generation + 1 : 0;
		rc = st_transaction(db, import_rows, &plan, err);
		if (rc == 0)
			*imported = (long)csv.nrows;
	}
	free(gens);
	st_csv_free(&csv);
	return rc;
}

/* ---- export -------------------------------------------------------------- */

/* The done generations, their evolve.csv values already rounded to %20.5g. */
struct done_rows {
	struct st_generation *gens;
	size_t n;
	double (*values)[ST_RESULT_COUNT + META_COUNT];
};

static double round_g5(double value)
{
	char text[64];
	ut_fmt_g5(value, text, sizeof(text));
	return strtod(text, NULL);
}

static int load_done(struct st_db *db, struct done_rows *rows, struct ut_err *err)
{
	struct st_generation *all;
	size_t n;
	if (st_generations_load(db, &all, &n, err) != 0)
		return -1;
	size_t kept = 0;
	for (size_t i = 0; i < n; i++)
		if (all[i].status == ST_DONE && all[i].has_results)
			all[kept++] = all[i];
	rows->gens = all;
	rows->n = kept;
	rows->values = malloc((kept ? kept : 1) * sizeof(*rows->values));
	if (rows->values == NULL) {
		free(all);
		return ut_err_set(err, "%s: out of memory", st_path(db));
	}
	for (size_t i = 0; i < kept; i++) {
		for (int r = 0; r < ST_RESULT_COUNT; r++)
			rows->values[i][r] = round_g5(all[i].results[r]);
		for (int k = 0; k < META_COUNT; k++)
			rows->values[i][ST_RESULT_COUNT + k] = round_g5(all[i].hyp.v[k]);
	}
	return 0;
}

static void free_done(struct done_rows *rows)
{
	free(rows->gens);
	free(rows->values);
}

static const char *column_name(int c)
{
	return c < ST_RESULT_COUNT ? st_result_csv_name(c) : meta_name(c - ST_RESULT_COUNT);
}

int st_export_evolve_csv(struct st_db *db, FILE *out, struct ut_err *err)
{
	struct done_rows rows;
	if (load_done(db, &rows, err) != 0)
		return -1;
	if (st_space(db) != META_SPACE_YOLOV5) {
		free_done(&rows);
		return ut_err_set(err,
				  "%s: evolve.csv is YOLOv5's: this evolution has the %s space",
				  st_path(db), meta_space_name(st_space(db)));
	}
	const int ncols = ST_RESULT_COUNT + META_COUNT;
	for (int c = 0; c < ncols; c++)
		fprintf(out, "%20s%s", column_name(c), c + 1 < ncols ? "," : "\n");
	for (size_t i = 0; i < rows.n; i++) {
		for (int c = 0; c < ncols; c++) {
			const struct st_generation *g = &rows.gens[i];
			double value =
			    c < ST_RESULT_COUNT ? g->results[c] : g->hyp.v[c - ST_RESULT_COUNT];
			fprintf(out, "%20.5g%s", value, c + 1 < ncols ? "," : "\n");
		}
	}
	free_done(&rows);
	return ferror(out) ? ut_err_set(err, "evolve.csv: write error") : 0;
}

/*
 * The best done generation of an Ultralytics run as the package's Tuner
 * writes best_hyperparameters.yaml: comment lines, then its keys, a file
 * `yolo train cfg=...` takes. Best: the highest fitness (mAP@.5:.95), the
 * first of equals.
 */
static int export_best_ultralytics(struct st_db *db, const struct done_rows *rows, FILE *out,
				   struct ut_err *err)
{
	size_t best = 0;
	for (size_t i = 1; i < rows->n; i++)
		if (rows->gens[i].fitness > rows->gens[best].fitness)
			best = i;
	const struct st_generation *g = &rows->gens[best];
	fprintf(out,
		"# yolo-evolve: best of %zu done generations of %s\n"
		"# Best fitness=%.5g observed at generation %ld\n"
		"# metrics/mAP50(B)=%.5g metrics/mAP50-95(B)=%.5g\n",
		rows->n, st_path(db), g->fitness, g->generation, g->results[ST_R_map50],
		g->results[ST_R_map]);
	if (meta_hyp_write(out, &g->hyp, NULL) != 0 || ferror(out))
		return ut_err_set(err, "best_hyperparameters.yaml: write error");
	return 0;
}

static int recommendable(const struct st_generation *g)
{
	return g->status == ST_DONE && g->has_results && isfinite(g->fitness);
}

/* Index of generation `generation` in gens (sorted by generation), or n. */
static size_t find_generation(const struct st_generation *gens, size_t n, long generation)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (gens[mid].generation < generation)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < n && gens[lo].generation == generation ? lo : n;
}

int st_recommend(const struct st_generation *gens, size_t n, struct st_recommendation *out)
{
	*out = (struct st_recommendation){.index = -1, .evaluations = 0};
	int any = 0;
	for (size_t i = 0; i < n; i++) {
		any |= gens[i].reevaluation && recommendable(&gens[i]);
		if (recommendable(&gens[i]) &&
		    (out->index < 0 || gens[i].fitness > gens[out->index].fitness))
			*out = (struct st_recommendation){(long)i, 0, 1, gens[i].fitness, 0};
	}
	if (!any)
		return 0;
	double *sum = calloc(n, sizeof(*sum)), *sum2 = calloc(n, sizeof(*sum2));
	long *count = calloc(n, sizeof(*count));
	if (sum == NULL || sum2 == NULL || count == NULL) {
		free(sum);
		free(sum2);
		free(count);
		return -1;
	}
	/* every done evaluation under its original's row, if that is done too */
	for (size_t i = 0; i < n; i++) {
		const struct st_generation *g = &gens[i];
		if (!recommendable(g))
			continue;
		size_t j =
		    find_generation(gens, n, g->reevaluation ? g->reevaluates : g->generation);
		if (j < n && !gens[j].reevaluation && recommendable(&gens[j])) {
			sum[j] += g->fitness;
			sum2[j] += g->fitness * g->fitness;
			count[j]++;
		}
	}
	long most = 0;
	for (size_t j = 0; j < n; j++)
		most = count[j] > most ? count[j] : most;
	*out = (struct st_recommendation){.index = -1, .by_mean = 1, .mean = -INFINITY};
	for (size_t j = 0; j < n && most > 0; j++) {
		if (count[j] < most)
			continue;
		double mean = sum[j] / (double)count[j];
		if (mean > out->mean) {
			double var =
			    count[j] > 1 ? (sum2[j] - sum[j] * mean) / (double)(count[j] - 1) : 0;
			*out = (struct st_recommendation){(long)j, 1, count[j], mean,
							  sqrt(fmax(var, 0))};
		}
	}
	free(sum);
	free(sum2);
	free(count);
	return 0;
}

int st_export_hyp_evolve(struct st_db *db, FILE *out, struct ut_err *err)
{
	struct done_rows rows;
	if (load_done(db, &rows, err) != 0)
		return -1;
	if (rows.n == 0) {
		free_done(&rows);
		return ut_err_set(err, "%s: no finished generation yet", st_path(db));
	}
	if (meta_hyp_space(&rows.gens[0].hyp) == META_SPACE_ULTRALYTICS) {
		int rc = export_best_ultralytics(db, &rows, out, err);
		free_done(&rows);
		return rc;
	}
	size_t best = 0;
	double best_fitness = -INFINITY;
	for (size_t i = 0; i < rows.n; i++) {
		double f = 0.1 * rows.values[i][ST_R_map50] + 0.9 * rows.values[i][ST_R_map];
		if (f > best_fitness) { /* the first maximum, as np.argmax */
			best_fitness = f;
			best = i;
		}
	}
	struct st_recommendation rec;
	if (st_recommend(rows.gens, rows.n, &rec) != 0) {
		free_done(&rows);
		return ut_err_set(err, "%s: out of memory", st_path(db));
	}
	if (rec.by_mean && rec.index >= 0)
		best = (size_t)rec.index;
	fprintf(out,
		"# YOLOv5 Hyperparameter Evolution Results\n# Best generation: %ld\n"
		"# Last generation: %ld\n",
		rows.gens[best].generation, rows.gens[rows.n - 1].generation);
	if (rec.by_mean)
		fprintf(
		    out,
		    "# Judged by the mean fitness of its %ld evaluations (other seeds): %.5f +- "
		    "%.5f (sd); the metrics below are its first evaluation's\n",
		    rec.evaluations, rec.mean, rec.sd);
	fprintf(out, "# ");
	for (int r = 0; r < ST_RESULT_COUNT; r++)
		fprintf(out, "%20s%s", st_result_csv_name(r),
			r + 1 < ST_RESULT_COUNT ? ", " : "\n# ");
	for (int r = 0; r < ST_RESULT_COUNT; r++)
		fprintf(out, "%20.5g%s", rows.values[best][r],
			r + 1 < ST_RESULT_COUNT ? ", " : "\n\n");
	for (int k = 0; k < META_COUNT; k++) {
		/* one row of mixed columns is float64 in pandas: every value a float */
		char text[64];
		ut_fmt_yamlfloat(rows.values[best][ST_RESULT_COUNT + k], text, sizeof(text));
		fprintf(out, "%s: %s\n", meta_name(k), text);
	}
	free_done(&rows);
	return ferror(out) ? ut_err_set(err, "hyp_evolve.yaml: write error") : 0;
}
