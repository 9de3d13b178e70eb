/*
 * fuzz_evolve_csv.c - libFuzzer target for `yolo-evolve import`: any bytes
 * as an evolve.csv either import whole (every row a done generation inside
 * the bounds) or fail with a one-line message leaving the database as it
 * was. Seeds: corpus/evolve_csv.
 */
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
static int input_fd = -1;
static char input_path[64];

static void setup(void)
{
	char dir[] = "/tmp/fuzz_evolve_csv_XXXXXX";
	char path[sizeof(dir) + 16];
	struct ut_err err;
	if (mkdtemp(dir) == NULL)
		abort();
	snprintf(path, sizeof(path), "%s/evolve.db", dir);
	meta_table_default(&table);
	static struct st_options opts;
	memset(&opts, 0, sizeof(opts));
	opts.meta = table;
	for (int k = 0; k < META_COUNT; k++)
		opts.base.v[k] = table.k[k].lower;
	if (st_open(path, 1, &db, &err) != 0 || st_options_write(db, &opts, &err) != 0)
		abort();
	/* the fuzzer's many imports need no durability */
	if (sqlite3_exec(st_handle(db), "PRAGMA synchronous = OFF", NULL, NULL, NULL) != SQLITE_OK)
		abort();
	input_fd = memfd_create("evolve.csv", 0);
	if (input_fd < 0)
		abort();
	snprintf(input_path, sizeof(input_path), "/proc/self/fd/%d", input_fd);
}

static long count_generations(void)
{
	struct st_generation *gens;
	size_t n;
	if (st_generations_load(db, &gens, &n, NULL) != 0)
		abort();
	free(gens);
	return (long)n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (db == NULL)
		setup();
	if (ftruncate(input_fd, 0) != 0 || pwrite(input_fd, data, size, 0) != (ssize_t)size)
		abort();
	long before = count_generations();
	long imported = 0;
	struct ut_err err;
	int rc = st_import_evolve_csv(db, input_path, &table, &imported, &err);
	long after = count_generations();
	if (rc != 0) {
		if (after != before || strchr(err.msg, '\n') != NULL || err.msg[0] == '\0')
			abort();
		return 0;
	}
	if (after != before + imported)
		abort();
	if (after > 5000 &&
	    sqlite3_exec(st_handle(db), "DELETE FROM generations", NULL, NULL, NULL) != SQLITE_OK)
		abort();
	return 0;
}
