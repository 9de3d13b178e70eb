/*
 * fuzz_cli.c - libFuzzer target for util/cli.c's ut_cli_parse.
 *
 * The input is split at newlines into at most 32 arguments and parsed
 * against a table holding every kind of option. Any input must give 0 or -1
 * with a one-line message, never a crash, a leak or a read past an
 * argument. Seeds: corpus/cli.
 */
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct target {
	const char *s, *opt;
	long n;
	unsigned long long u;
	double d;
	bool f;
	int many;
};

static int count_values(void *target, const struct ut_cli_opt *opt, const char *value, int index,
			struct ut_err *err)
{
	struct target *t = target;
	if (value[0] == '!')
		return ut_err_set(err, "--%s: '%c' refused", opt->name, value[0]);
	t->many = index + 1;
	return 0;
}

#define AT(f) .offset = offsetof(struct target, f)
static const struct ut_cli_opt opts[] = {
    {"string", "s", UT_CLI_STRING, AT(s)},
    {"number", "n", UT_CLI_LONG, AT(n), -5, 5},
    {"unsigned", .kind = UT_CLI_U64, AT(u)},
    {"double", .kind = UT_CLI_DOUBLE, AT(d), -1, 1},
    {"any-double", .kind = UT_CLI_DOUBLE, AT(d)},
    {"positive", .kind = UT_CLI_DOUBLE, AT(d), 0, INFINITY},
    {"flag", "f", UT_CLI_FLAG, AT(f)},
    {"optional", .kind = UT_CLI_STRING, AT(opt), .implicit = "dflt", .empty_ok = true},
    {"many", .kind = UT_CLI_CUSTOM, .parse = count_values, .many = true},
    {"ignored", .kind = UT_CLI_IGNORED},
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *copy = malloc(size + 1);
	if (copy == NULL)
		return 0;
	memcpy(copy, data, size);
	copy[size] = '\0';
	char *argv[33] = {"fuzz"};
	int argc = 1;
	for (char *arg = copy; argc < 33; argc++) {
		argv[argc] = arg;
		char *nl = strchr(arg, '\n');
		if (nl == NULL) {
			argc++;
			break;
		}
		*nl = '\0';
		arg = nl + 1;
	}
	struct target t = {0};
	const char *pos[3];
	bool given[UT_ARRAY_LEN(opts)];
	struct ut_cli_parse p = {.opts = opts,
				 .count = UT_ARRAY_LEN(opts),
				 .target = &t,
				 .positional = pos,
				 .max_positional = 3,
				 .given = given};
	struct ut_err err = {{0}};
	int rc = ut_cli_parse(&p, argc, argv, &err);
	if (rc != 0 && (rc != -1 || err.msg[0] == '\0' || strchr(err.msg, '\n') != NULL))
		abort();
	if (rc == 0 && (p.npositional > 3 || (t.n < -5 || t.n > 5) || t.d != t.d))
		abort();
	free(copy);
	return 0;
}
