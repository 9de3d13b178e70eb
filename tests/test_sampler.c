/*
 * test_sampler.c - DistributedSampler's sharding (trainer/data/sampler.h)
 * against torch's own: tests/golden/sampler/distributed_sampler.txt holds
 * list(iter(DistributedSampler(...))) after set_epoch and
 * torch.randperm(n, generator) for fixed cases, made by
 * tests/golden/make_sampler_golden.py with Debian's python3-torch 1.13.
 * Every index must be equal. Also: the ranks' shards of an epoch cover the
 * dataset (padding repeats only the first indices), the per-rank batch
 * check, and teeth (rank or epoch off by one gives another list).
 *
 * YE_SOURCE_ROOT unset is a failure, not a skip.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sampler.h"
#include "ut.h"

enum { MAX_LINE = 1 << 16, MAX_VALUES = 8192 };

/* Parse "i0 i1 ..." into values; returns the count. */
static long parse_values(const char *text, long *values)
{
	long count = 0;
	char *end;
	for (;;) {
		long v = strtol(text, &end, 10);
		if (end == text)
			break;
		assert_true(count < MAX_VALUES);
		values[count++] = v;
		text = end;
	}
	return count;
}

static FILE *open_golden(void)
{
	char path[4096];
	const char *root = getenv("YE_SOURCE_ROOT");
	if (root == NULL || *root == '\0')
		fail_msg("YE_SOURCE_ROOT is not set");
	snprintf(path, sizeof(path), "%s/tests/golden/sampler/distributed_sampler.txt", root);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		fail_msg("cannot open %s", path);
	return f;
}

static void sampler_list(long n, int world, int rank, long epoch, uint64_t seed, bool shuffle,
			 long *out, long *count)
{
	struct ut_err err = {{0}};
	struct tr_sampler *s = NULL;
	struct tr_sampler_opts opts = {
	    .n = n, .world = world, .rank = rank, .shuffle = shuffle, .seed = seed};
	if (tr_sampler_create(&opts, &s, &err))
		fail_msg("%s", err.msg);
	tr_sampler_set_epoch(s, epoch);
	*count = tr_sampler_num_samples(s);
	memcpy(out, tr_sampler_indices(s), sizeof(long) * (size_t)*count);
	tr_sampler_free(s);
}

static void test_golden(void **state)
{
	(void)state;
	FILE *f = open_golden();
	char *line = malloc(MAX_LINE);
	long *want = malloc(sizeof(long) * MAX_VALUES), *got = malloc(sizeof(long) * MAX_VALUES);
	assert_non_null(line);
	assert_non_null(want);
	assert_non_null(got);
	int samplers = 0, perms = 0;
	while (fgets(line, MAX_LINE, f) != NULL) {
		long n, epoch, count;
		int world, rank, shuffle, used;
		unsigned long long seed;
		if (line[0] == '#')
			continue;
		if (sscanf(line, "sampler %ld %d %d %ld %llu %d:%n", &n, &world, &rank, &epoch,
			   &seed, &shuffle, &used) == 6) {
			long expected = parse_values(line + used, want);
			sampler_list(n, world, rank, epoch, seed, shuffle != 0, got, &count);
			assert_int_equal(count, expected);
			for (long i = 0; i < count; i++)
				if (got[i] != want[i])
					fail_msg("n %ld world %d rank %d epoch %ld: index %ld is "
						 "%ld, torch %ld",
						 n, world, rank, epoch, i, got[i], want[i]);
			samplers++;
		} else if (sscanf(line, "randperm %ld %llu:%n", &n, &seed, &used) == 2) {
			assert_int_equal(parse_values(line + used, want), n);
			tr_randperm(seed, n, got);
			for (long i = 0; i < n; i++)
				if (got[i] != want[i])
					fail_msg("randperm(%ld, seed %llu)[%ld] = %ld, torch %ld",
						 n, seed, i, got[i], want[i]);
			perms++;
		} else {
			fail_msg("golden line not understood: %.60s", line);
		}
	}
	fclose(f);
	free(line);
	free(want);
	free(got);
	assert_int_equal(samplers, 15);
	assert_int_equal(perms, 6);
}

/* The ranks of an epoch together: every image at least once, total = world * num_samples. */
static void test_cover(void **state)
{
	(void)state;
	const long n = 37;
	const int world = 4;
	int seen[37] = {0};
	long shard[16], count = 0;
	for (int r = 0; r < world; r++) {
		sampler_list(n, world, r, 2, 0, true, shard, &count);
		assert_int_equal(count, 10);
		for (long i = 0; i < count; i++) {
			assert_true(shard[i] >= 0 && shard[i] < n);
			seen[shard[i]]++;
		}
	}
	int twice = 0;
	for (long i = 0; i < n; i++) {
		assert_true(seen[i] >= 1);
		twice += seen[i] - 1;
	}
	assert_int_equal(twice, world * 10 - n); /* the padding */
}

/* Teeth: a neighbouring rank or epoch is another list. */
static void test_teeth(void **state)
{
	(void)state;
	long a[64], b[64], ca, cb;
	sampler_list(128, 2, 0, 5, 0, true, a, &ca);
	sampler_list(128, 2, 1, 5, 0, true, b, &cb);
	assert_memory_not_equal(a, b, sizeof(long) * (size_t)ca);
	sampler_list(128, 2, 0, 6, 0, true, b, &cb);
	assert_memory_not_equal(a, b, sizeof(long) * (size_t)ca);
}

static void test_errors(void **state)
{
	(void)state;
	struct ut_err err = {{0}};
	struct tr_sampler *s = NULL;
	int per_rank = 0;
	assert_int_equal(tr_sampler_rank_batch(16, 4, &per_rank, &err), 0);
	assert_int_equal(per_rank, 4);
	assert_int_equal(tr_sampler_rank_batch(15, 2, &per_rank, &err), -1);
	assert_non_null(strstr(err.msg, "multiple of WORLD_SIZE 2"));
	assert_int_equal(tr_sampler_rank_batch(2, 4, &per_rank, &err), -1);
	struct tr_sampler_opts bad_rank = {.n = 10, .world = 2, .rank = 2};
	assert_int_equal(tr_sampler_create(&bad_rank, &s, &err), -1);
	assert_null(s);
	assert_non_null(strstr(err.msg, "rank 2"));
	struct tr_sampler_opts empty = {.n = 0, .world = 1};
	assert_int_equal(tr_sampler_create(&empty, &s, &err), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_golden),
	    cmocka_unit_test(test_cover),
	    cmocka_unit_test(test_teeth),
	    cmocka_unit_test(test_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
