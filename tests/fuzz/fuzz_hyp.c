/*
 * fuzz_hyp.c - libFuzzer target for meta_hyp_parse.
 *
 * Any input must give 0 or -1 with a one-line message, never a crash or a
 * leak; an accepted input must also pass meta_hyp_check and survive
 * meta_hyp_write -> meta_hyp_parse bit for bit. Seeds: corpus/hyp.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "meta.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Write hyp, read it back, and insist on the same bits. */
static void check_round_trip(const struct meta_hyp *hyp, const struct meta_table *table)
{
	char *text = NULL;
	size_t len = 0;
	struct ut_err err;
	struct meta_hyp back;
	FILE *out = open_memstream(&text, &len);
	if (out == NULL)
		abort();
	if (meta_hyp_write(out, hyp, "# fuzz\n") != 0 || fclose(out) != 0)
		abort();
	if (meta_hyp_parse(text, len, "written", table, &back, &err) != 0)
		abort();
	if (memcmp(hyp, &back, sizeof(back)) != 0)
		abort();
	free(text);
}

/* Parse one input as hyp.yaml text under YOLOv5's default table. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct meta_table table;
	struct meta_hyp hyp;
	struct ut_err err = {{0}};
	meta_table_default(&table);
	int rc = meta_hyp_parse((const char *)data, size, "fuzz.yaml", &table, &hyp, &err);
	if (rc != 0) {
		if (rc != -1 || err.msg[0] == '\0' || strchr(err.msg, '\n') != NULL)
			abort();
		return 0;
	}
	if (meta_hyp_check(&hyp, &table, "fuzz.yaml", &err) != 0)
		abort();
	check_round_trip(&hyp, &table);
	return 0;
}
