/*
 * fuzz_tuner.c - libFuzzer target for `yolo-evolve import` of the
 * Ultralytics Tuner's files: any bytes as a tune_results.ndjson (first byte
 * even) or tune_results.csv (odd) either import whole (every record a
 * generation inside the Ultralytics bounds, close_mosaic whole) or fail with
 * a one-line message leaving the database as it was; an import exports
 * back as ndjson and csv. Seeds: corpus/tuner.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <sqlite3.h>

#include "store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct st_db *db;
static struct meta_table table;
static char dir[] = "/tmp/fuzz_tuner_XXXXXX";

static void setup(void)
{
	char path[sizeof(dir) + 16];
	struct ut_err err;
	if (mkdtemp(dir) == NULL)
		abort();
	snprintf(path, sizeof(path), "%s/evolve.db", dir);
	meta_table_default_space(&table, META_SPACE_ULTRALYTICS);
	static struct st_options opts;
	memset(&opts, 0, sizeof(opts));
	opts.meta = table;
	meta_hyp_ultralytics_base(&opts.base);
	if (st_open(path, 1, &db, &err) != 0 || st_options_write(db, &opts, &err) != 0)
		abort();
	/* the fuzzer's many imports need no durability */
	if (sqlite3_exec(st_handle(db), "PRAGMA synchronous = OFF", NULL, NULL, NULL) != SQLITE_OK)
		abort();
}

static struct st_generation *load(size_t *n)
{
	struct st_generation *gens;
	if (st_generations_load(db, &gens, n, NULL) != 0)
		abort();
	return gens;
}

/* Every generation's hyp is an Ultralytics one inside the bounds. */
static void check_hyps(const struct st_generation *gens, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (meta_hyp_space(&gens[i].hyp) != META_SPACE_ULTRALYTICS ||
		    meta_hyp_check(&gens[i].hyp, &table, "fuzz", NULL) != 0 ||
		    gens[i].hyp.v[META_close_mosaic] != round(gens[i].hyp.v[META_close_mosaic]))
			abort();
	}
}

static void export_all(void)
{
	char *text = NULL;
	size_t len = 0;
	FILE *mem = open_memstream(&text, &len);
	if (mem == NULL || st_export_tuner_ndjson(db, mem, NULL) != 0 ||
	    st_export_tuner_csv(db, mem, NULL) != 0)
		abort();
	fclose(mem);
	free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (db == NULL)
		setup();
	if (size == 0)
		return 0;
	char path[sizeof(dir) + 32];
	snprintf(path, sizeof(path), "%s/tune_results.%s", dir, data[0] % 2 ? "csv" : "ndjson");
	FILE *file = fopen(path, "wb");
	if (file == NULL || fwrite(data + 1, 1, size - 1, file) != size - 1 || fclose(file) != 0)
		abort();
	size_t before, after;
	free(load(&before));
	long imported = 0;
	struct ut_err err;
	int rc = st_import_tuner(db, path, &table, &imported, &err);
	struct st_generation *gens = load(&after);
	if (rc != 0) {
		free(gens);
		if (after != before || strchr(err.msg, '\n') != NULL || err.msg[0] == '\0')
			abort();
		return 0;
	}
	if (after != before + (size_t)imported)
		abort();
	check_hyps(gens, after);
	free(gens);
	export_all();
	if (after > 2000 &&
	    sqlite3_exec(st_handle(db), "DELETE FROM generations", NULL, NULL, NULL) != SQLITE_OK)
		abort();
	unlink(path);
	return 0;
}
