/*
 * fuzz_results_csv.c - libFuzzer target for the trainer's results.csv as
 * the evolver reads it (ev_results_parse): any bytes give 0 or -1, never a
 * crash or a leak; a "complete" answer has finite results in its last row.
 * Seeds: corpus/results.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "contract.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ev_results res;
	struct ut_err err;
	if (ev_results_parse((const char *)data, size, "fuzz", &res, &err) != 0)
		return 0;
	if (res.complete) {
		double results[ST_RESULT_COUNT];
		ev_results_pick(res.rows[res.nrows - 1], results);
		for (int r = 0; r < ST_RESULT_COUNT; r++)
			if (!isfinite(results[r]))
				abort();
	} else if (res.problem[0] == '\0') {
		abort(); /* an incomplete answer always says why */
	}
	ev_results_free(&res);
	return 0;
}
