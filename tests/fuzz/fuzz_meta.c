/*
 * fuzz_meta.c - libFuzzer target for meta_table_parse (and, on the same
 * bytes, meta_table_restrict's key-list parser).
 *
 * Any input must give 0 or -1 with a one-line message and leave the table
 * untouched on failure; an accepted table must have finite values, gains
 * >= 0 and lower <= upper, and survive meta_table_write -> meta_table_parse
 * bit for bit. Seeds: corpus/meta.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "meta.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_message(int rc, const struct ut_err *err)
{
	if (rc != -1 || err->msg[0] == '\0' || strchr(err->msg, '\n') != NULL)
		abort();
}

static void check_table(const struct meta_table *table)
{
	for (int k = 0; k < META_COUNT; k++) {
		const struct meta_bound *b = &table->k[k];
		if (!isfinite(b->gain) || !isfinite(b->lower) || !isfinite(b->upper) ||
		    b->gain < 0 || b->lower > b->upper)
			abort();
	}
}

/* Write table, read it back over the defaults, and insist on the same bits. */
static void check_round_trip(const struct meta_table *table)
{
	char *text = NULL;
	size_t len = 0;
	struct ut_err err;
	struct meta_table back;
	FILE *out = open_memstream(&text, &len);
	if (out == NULL)
		abort();
	if (meta_table_write(out, table) != 0 || fclose(out) != 0)
		abort();
	meta_table_default(&back);
	if (meta_table_parse(text, len, "written", &back, &err) != 0)
		abort();
	if (memcmp(table, &back, sizeof(back)) != 0)
		abort();
	free(text);
}

/* The input as a --keys list: a failure must name the fault, change nothing. */
static void check_restrict(const uint8_t *data, size_t size)
{
	struct meta_table table, before;
	struct ut_err err = {{0}};
	char *keys = malloc(size + 1);
	if (keys == NULL)
		return;
	memcpy(keys, data, size);
	keys[size] = '\0';
	meta_table_default(&table);
	before = table;
	int rc = meta_table_restrict(&table, keys, &err);
	if (rc != 0) {
		check_message(rc, &err);
		if (memcmp(&table, &before, sizeof(table)) != 0)
			abort();
	}
	free(keys);
}

/* Parse one input as meta.yaml text over YOLOv5's default table. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct meta_table table, before;
	struct ut_err err = {{0}};
	meta_table_default(&table);
	before = table;
	int rc = meta_table_parse((const char *)data, size, "meta.yaml", &table, &err);
	if (rc != 0) {
		check_message(rc, &err);
		if (memcmp(&table, &before, sizeof(table)) != 0)
			abort();
	} else {
		check_table(&table);
		check_round_trip(&table);
	}
	check_restrict(data, size);
	return 0;
}
