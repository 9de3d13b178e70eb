/*
 * test_serve.c - the dashboard's C parts without HTTP: the importance
 * (a key that drives the fitness comes out on top, keys of pure noise near
 * 0, constant keys left out, degenerate inputs) and the JSON answers (every
 * string from the database escaped so it parses back byte for byte, NaN as
 * null, running rows of a dead evolver never shown as running).
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <cmocka.h>

#include "api.h"
#include "pcg.h"
#include "reports.h"
#include "serve.h"

/* A small deterministic generator (xorshift64*), uniform in [0, 1). */
static double uniform(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return (double)((*s * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}

static void test_importance_finds_the_driver(void **state)
{
	(void)state;
	enum { N = 80 };
	double *x = calloc(N * META_COUNT, sizeof(*x)), y[N];
	uint64_t s = 42;
	for (size_t i = 0; i < N; i++) {
		for (int k = 0; k < META_COUNT; k++)
			x[i * META_COUNT + k] = k == META_iou_t ? 0.2 : uniform(&s);
		double lr0 = x[i * META_COUNT + META_lr0];
		y[i] = -(lr0 - 0.5) * (lr0 - 0.5) + 0.01 * x[i * META_COUNT + META_box] +
		       0.002 * uniform(&s);
	}
	double imp[META_COUNT];
	sv_importance(x, y, N, META_COUNT, imp);
	assert_true(imp[META_lr0] > 0.8); /* a non-monotone effect: a correlation would miss it */
	assert_true(imp[META_iou_t] == -1);
	for (int k = 0; k < META_COUNT; k++) {
		if (k == META_lr0 || k == META_iou_t)
			continue;
		assert_true(imp[k] >= 0 && imp[k] < 0.15);
	}
	/* constant fitness: nothing explains anything */
	for (size_t i = 0; i < N; i++)
		y[i] = 0.5;
	sv_importance(x, y, N, META_COUNT, imp);
	assert_true(imp[META_lr0] == 0);
	sv_importance(x, y, 1, META_COUNT, imp);
	for (int k = 0; k < META_COUNT; k++)
		assert_true(imp[k] == -1);
	free(x);
}

static cJSON *find_generation(cJSON *root, long generation)
{
	cJSON *g;
	cJSON_ArrayForEach(g, cJSON_GetObjectItem(root, "generations"))
	{
		if ((long)cJSON_GetObjectItem(g, "generation")->valuedouble == generation)
			return g;
	}
	return NULL;
}

static void test_json_escapes_and_round_trips(void **state)
{
	(void)state;
	static const char evil[] = "<script>alert(\"x\")</script>\\ \n\t\x01 '\xc3\xa9' </pre>";
	struct st_generation gens[3];
	memset(gens, 0, sizeof(gens));
	for (int i = 0; i < 3; i++) {
		gens[i].generation = i;
		gens[i].parent = i - 1;
		gens[i].has_results = 1;
		gens[i].fitness = 0.1 * i;
	}
	gens[0].status = ST_DONE;
	gens[1].status = ST_FAILED;
	gens[1].fitness = NAN;
	snprintf(gens[1].error, sizeof(gens[1].error), "%s", evil);
	snprintf(gens[1].host, sizeof(gens[1].host), "%s", evil);
	gens[2].status = ST_RUNNING;
	gens[2].started_at = 100;
	/* no evolver holds the database: the running row is interrupted */
	assert_int_equal(rp_show_stale_as_interrupted(gens, 3, 0), 1);
	struct sv_snapshot snap = {.name = evil, .path = "x.db", .gens = gens, .n = 3, .now = 110};
	char *text = sv_json_generations(&snap);
	assert_non_null(text);
	for (const char *p = text; *p; p++)
		assert_true((unsigned char)*p >= 0x20); /* control characters all escaped */
	cJSON *root = cJSON_Parse(text);
	assert_non_null(root);
	assert_string_equal(cJSON_GetObjectItem(root, "run")->valuestring, evil);
	cJSON *failed = find_generation(root, 1);
	assert_string_equal(cJSON_GetObjectItem(failed, "error")->valuestring, evil);
	assert_string_equal(cJSON_GetObjectItem(failed, "host")->valuestring, evil);
	assert_true(cJSON_IsNull(cJSON_GetObjectItem(failed, "fitness")));
	assert_string_equal(cJSON_GetObjectItem(find_generation(root, 2), "status")->valuestring,
			    "interrupted");
	assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(root, "hyp_keys")), META_COUNT);
	cJSON_Delete(root);
	free(text);

	text = sv_json_overview(&snap);
	root = cJSON_Parse(text);
	assert_non_null(root);
	assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(root, "running")), 0);
	cJSON *failures = cJSON_GetObjectItem(root, "failures");
	assert_int_equal(cJSON_GetArraySize(failures), 2); /* the failed and the interrupted */
	assert_int_equal(
	    (int)cJSON_GetObjectItem(cJSON_GetObjectItem(root, "best"), "generation")->valuedouble,
	    0);
	cJSON_Delete(root);
	free(text);
}

/*
 * The importance and generations answers of each space over done candidates
 * (under ASan in CI: a row of the space's width, never of struct meta_hyp's),
 * the driver found by name, and only the space's keys listed.
 */
static void check_space(enum meta_space space, int driver, const char *absent)
{
	enum { N = 40 };
	static struct st_generation gens[N];
	memset(gens, 0, sizeof(gens));
	static struct st_options opts;
	memset(&opts, 0, sizeof(opts));
	meta_table_default_space(&opts.meta, space);
	const int *keys;
	int nkeys = meta_space_keys(space, &keys);
	struct ut_pcg rng;
	ut_pcg_seed(&rng, 3, (uint64_t)space + 1);
	for (int i = 0; i < N; i++) {
		gens[i].generation = i;
		gens[i].status = ST_DONE;
		gens[i].has_results = 1;
		for (int k = 0; k < META_ALL; k++)
			gens[i].hyp.v[k] = NAN; /* keys outside the space */
		for (int j = 0; j < nkeys; j++)
			gens[i].hyp.v[keys[j]] = ut_pcg_uniform(&rng);
		gens[i].fitness = gens[i].hyp.v[driver];
	}
	struct sv_snapshot snap = {
	    .name = "s", .path = "s.db", .gens = gens, .n = N, .opts = &opts};
	char *text = sv_json_importance(&snap);
	cJSON *root = cJSON_Parse(text);
	assert_non_null(root);
	cJSON *first = cJSON_GetArrayItem(cJSON_GetObjectItem(root, "importance"), 0);
	assert_string_equal(cJSON_GetObjectItem(first, "key")->valuestring, meta_name(driver));
	assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(root, "importance")), nkeys);
	cJSON_Delete(root);
	free(text);
	text = sv_json_generations(&snap);
	root = cJSON_Parse(text);
	assert_non_null(root);
	cJSON *hyp_keys = cJSON_GetObjectItem(root, "hyp_keys");
	assert_int_equal(cJSON_GetArraySize(hyp_keys), nkeys);
	for (int j = 0; j < nkeys; j++)
		assert_string_equal(cJSON_GetArrayItem(hyp_keys, j)->valuestring,
				    meta_name(keys[j]));
	assert_null(cJSON_GetObjectItem(find_generation(root, 0), absent));
	cJSON_Delete(root);
	free(text);
}

static void test_spaces(void **state)
{
	(void)state;
	check_space(META_SPACE_YOLOV5, META_mosaic, "dfl");
	check_space(META_SPACE_ULTRALYTICS, META_dfl, "obj");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_importance_finds_the_driver),
	    cmocka_unit_test(test_json_escapes_and_round_trips),
	    cmocka_unit_test(test_spaces),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
