/*
 * gen-dataset - write the synthetic shapes dataset (tools/gen_dataset.h):
 *
 *	gen-dataset OUT_DIR [--train N] [--val M] [--size S] [--classes C] [--seed K]
 *
 * Images are PNG (libpng), labels YOLO txt, plus OUT_DIR/data.yaml.
 */
#include <stdio.h>
#include <string.h>

#include "gen_dataset.h"
#include "ut.h"

static void usage(FILE *to)
{
	fprintf(to, "usage: gen-dataset OUT_DIR [--train N] [--val M] [--size S] [--classes C] "
		    "[--seed K]\n"
		    "  defaults: --train 64 --val 16 --size 256 --classes 3 --seed 0\n"
		    "  classes: 1..6 (rectangle, ellipse, triangle, then their outlines)\n");
}

/* The integer options: name, where it goes, bounds. */
struct int_option {
	const char *name;
	int *value;
	long lo, hi;
};

int main(int argc, char **argv)
{
	struct tr_gen_opts opts = tr_gen_defaults();
	long seed = 0;
	const struct int_option table[] = {
	    {"--train", &opts.train, 0, 999999},
	    {"--val", &opts.val, 0, 999999},
	    {"--size", &opts.size, 32, 4096},
	    {"--classes", &opts.classes, 1, TR_GEN_MAX_CLASSES},
	};
	const char *out_dir = NULL;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			usage(stdout);
			return 0;
		}
		if (argv[i][0] != '-') {
			if (out_dir != NULL) {
				fprintf(stderr, "gen-dataset: more than one OUT_DIR (%s)\n",
					argv[i]);
				return 2;
			}
			out_dir = argv[i];
			continue;
		}
		if (i + 1 >= argc) {
			fprintf(stderr, "gen-dataset: %s needs a value\n", argv[i]);
			return 2;
		}
		const char *value = argv[++i];
		if (strcmp(argv[i - 1], "--seed") == 0) {
			if (ut_parse_long(value, 0, 2147483647L, &seed) != 0) {
				fprintf(stderr,
					"gen-dataset: --seed %s: not an integer in 0..2147483647\n",
					value);
				return 2;
			}
			continue;
		}
		size_t k = 0, count = sizeof(table) / sizeof(table[0]);
		while (k < count && strcmp(argv[i - 1], table[k].name) != 0)
			k++;
		long parsed;
		if (k == count) {
			fprintf(stderr, "gen-dataset: unknown option %s\n", argv[i - 1]);
			usage(stderr);
			return 2;
		}
		if (ut_parse_long(value, table[k].lo, table[k].hi, &parsed) != 0) {
			fprintf(stderr, "gen-dataset: %s %s: not an integer in %ld..%ld\n",
				table[k].name, value, table[k].lo, table[k].hi);
			return 2;
		}
		*table[k].value = (int)parsed;
	}
	if (out_dir == NULL) {
		usage(stderr);
		return 2;
	}
	opts.seed = (uint64_t)seed;
	struct ut_err err;
	if (tr_gen_dataset(out_dir, &opts, &err) != 0) {
		fprintf(stderr, "gen-dataset: %s\n", err.msg);
		return 1;
	}
	return 0;
}
