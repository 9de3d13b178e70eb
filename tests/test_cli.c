/*
 * test_cli.c - util/cli.c, the command-line parser of the three programs:
 * every kind of option in every accepted form, the values it refuses with
 * one line naming the option, prefixes, positional arguments, and values
 * read from a file through ut_cli_set.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cli.h"

struct target {
	const char *name, *cache, *empty;
	long count;
	unsigned long long seed;
	double rate, scale;
	bool verbose, help;
	int layers[4], nlayers;
};

static int parse_layer(void *target, const struct ut_cli_opt *opt, const char *value, int index,
		       struct ut_err *err)
{
	struct target *t = target;
	long v;
	if (index >= 4 || ut_parse_long(value, 0, 99, &v) != 0)
		return ut_err_set(err, "--%s: bad layer", opt->name);
	t->layers[index] = (int)v;
	t->nlayers = index + 1;
	return 0;
}

#define AT(f) .offset = offsetof(struct target, f)
static const struct ut_cli_opt opts[] = {
    {"name", .kind = UT_CLI_STRING, AT(name), .key = "the_name", .help = "a name"},
    {"count", "n", UT_CLI_LONG, AT(count), 1, 10, .key = "count", .help = "how many"},
    {"seed", .kind = UT_CLI_U64, AT(seed)},
    {"rate", .kind = UT_CLI_DOUBLE, AT(rate), 0, 1, .help = "a rate"},
    {"verbose", "v", UT_CLI_FLAG, AT(verbose), .key = "verbose", .help = "talk"},
    {"cache", .kind = UT_CLI_STRING, AT(cache), .implicit = "ram"},
    {"empty", .kind = UT_CLI_STRING, AT(empty), .empty_ok = true},
    {"layers", .kind = UT_CLI_CUSTOM, .parse = parse_layer, .many = true},
    {"old", .kind = UT_CLI_IGNORED},
    {"help", "h", UT_CLI_FLAG, AT(help)},
    {"scale", .kind = UT_CLI_DOUBLE, AT(scale), 0, INFINITY},
};

/* Parse a NULL-terminated argument list (after the program name). */
static int parse(struct target *t, struct ut_err *err, const char **pos, int *npos, bool *given,
		 const char *const *args)
{
	char *argv[32] = {"prog"};
	int argc = 1;
	while (args[argc - 1] != NULL)
		argv[argc] = (char *)args[argc - 1], argc++;
	memset(t, 0, sizeof(*t));
	struct ut_cli_parse p = {.opts = opts,
				 .count = UT_ARRAY_LEN(opts),
				 .target = t,
				 .positional = pos,
				 .max_positional = pos != NULL ? 2 : 0,
				 .given = given};
	int rc = ut_cli_parse(&p, argc, argv, err);
	if (npos != NULL)
		*npos = p.npositional;
	return rc;
}

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})

static void every_kind_every_form(void **state)
{
	(void)state;
	struct target t;
	struct ut_err err;
	bool given[UT_ARRAY_LEN(opts)];
	assert_int_equal(parse(&t, &err, NULL, NULL, given,
			       ARGS("--name", "a b", "--count=3", "--seed", "18446744073709551615",
				    "--rate", "-0", "-v", "--cache", "--empty", "", "--layers", "1",
				    "2", "3", "--old", "--old=x", "--scale", "1e300")),
			 0);
	assert_string_equal(t.name, "a b");
	assert_int_equal(t.count, 3);
	assert_true(t.seed == 18446744073709551615ULL);
	assert_true(t.rate == 0.0);
	assert_true(t.verbose);
	assert_string_equal(t.cache, "ram"); /* the next argument is an option */
	assert_string_equal(t.empty, "");
	assert_int_equal(t.nlayers, 3);
	assert_int_equal(t.layers[2], 3);
	assert_true(t.scale == 1e300);
	assert_true(given[0] && given[1] && given[4] && !given[9]);
	/* an optional value taken when one follows; a required one even if it starts with '-' */
	assert_int_equal(parse(&t, &err, NULL, NULL, NULL, ARGS("--cache", "disk", "--name", "-x")),
			 0);
	assert_string_equal(t.cache, "disk");
	assert_string_equal(t.name, "-x");
	/* an alias, and an unambiguous prefix of a name */
	assert_int_equal(parse(&t, &err, NULL, NULL, NULL, ARGS("-n", "4", "--verb", "--na=z")), 0);
	assert_int_equal(t.count, 4);
	assert_true(t.verbose);
	assert_string_equal(t.name, "z");
}

static void positional(void **state)
{
	(void)state;
	struct target t;
	struct ut_err err;
	const char *pos[2];
	int n;
	assert_int_equal(parse(&t, &err, pos, &n, NULL, ARGS("a", "-", "--verbose")), 0);
	assert_int_equal(n, 2);
	assert_string_equal(pos[0], "a");
	assert_string_equal(pos[1], "-");
	assert_int_equal(parse(&t, &err, pos, &n, NULL, ARGS("a", "b", "c")), -1);
	assert_string_equal(err.msg, "unexpected argument 'c' (see --help)");
	assert_int_equal(parse(&t, &err, NULL, NULL, NULL, ARGS("stray")), -1);
	assert_string_equal(err.msg, "unexpected argument 'stray' (see --help)");
	/* after "--", plain arguments even if they start with '-' (a second "--" too) */
	assert_int_equal(parse(&t, &err, pos, &n, NULL, ARGS("--verbose", "--", "--name", "--")),
			 0);
	assert_int_equal(n, 2);
	assert_string_equal(pos[0], "--name");
	assert_string_equal(pos[1], "--");
	assert_null(t.name);
	/* but a value may be "--" */
	assert_int_equal(parse(&t, &err, pos, &n, NULL, ARGS("--name", "--", "a")), 0);
	assert_string_equal(t.name, "--");
	assert_int_equal(n, 1);
	assert_int_equal(parse(&t, &err, NULL, NULL, NULL, ARGS("--", "-v")), -1);
	assert_string_equal(err.msg, "unexpected argument '-v' (see --help)");
}

static void refusals(void **state)
{
	(void)state;
	static const struct {
		const char *args[4];
		const char *msg;
	} cases[] = {
	    {{"--bogus"}, "unknown option '--bogus' (see --help)"},
	    {{"-q"}, "unknown option '-q' (see --help)"},
	    {{"-name", "x"}, "unknown option '-name' (see --help)"},
	    {{"--namex", "x"}, "unknown option '--namex' (see --help)"}, /* not a prefix */
	    {{"--c", "1"}, "ambiguous option '--c' (see --help)"},
	    {{"--name"}, "--name needs a value"},
	    {{"--name", ""}, "--name: empty value"},
	    {{"--count", "x"}, "--count: 'x' is not an integer"},
	    {{"--count", "11"}, "--count: 11 is out of range 1..10"},
	    {{"--count", "99999999999999999999"},
	     "--count: '99999999999999999999' is not an integer"},
	    {{"--seed", "-1"}, "--seed: '-1' is not a whole number"},
	    {{"--seed", "18446744073709551616"},
	     "--seed: '18446744073709551616' is not a whole number"},
	    {{"--rate", "2"}, "--rate: '2' is not a number in [0, 1]"},
	    {{"--rate", "nan"}, "--rate: 'nan' is not a number in [0, 1]"},
	    {{"--scale", "-1"}, "--scale: '-1' is not a number >= 0"},
	    {{"--scale", "inf"}, "--scale: 'inf' is not a number >= 0"},
	    {{"--verbose=yes"}, "--verbose takes no value"},
	    {{"--layers", "1", "x"}, "--layers: bad layer"},
	    {{"--name=a", "--count", "a\nb"}, "--count: 'a\\nb' is not an integer"},
	    {{"--\x1b[31m"}, "unknown option '--\\x1b[31m' (see --help)"},
	};
	struct target t;
	struct ut_err err;
	for (size_t i = 0; i < UT_ARRAY_LEN(cases); i++) {
		if (parse(&t, &err, NULL, NULL, NULL, cases[i].args) != -1)
			fail_msg("case %zu accepted", i);
		if (strcmp(err.msg, cases[i].msg) != 0)
			fail_msg("case %zu: \"%s\", want \"%s\"", i, err.msg, cases[i].msg);
	}
}

static void from_a_file(void **state)
{
	(void)state;
	struct target t = {0};
	struct ut_err err;
	const struct ut_cli_opt *count = ut_cli_find(opts, UT_ARRAY_LEN(opts), "count", 5, true);
	const struct ut_cli_opt *verbose =
	    ut_cli_find(opts, UT_ARRAY_LEN(opts), "verbose", 7, true);
	assert_non_null(count);
	assert_non_null(verbose);
	assert_null(ut_cli_find(opts, UT_ARRAY_LEN(opts), "name", 4, true)); /* its key differs */
	assert_non_null(ut_cli_find(opts, UT_ARRAY_LEN(opts), "the_name", 8, true));
	assert_int_equal(ut_cli_set(count, &t, "7", 0, "opt.yaml: ", &err), 0);
	assert_int_equal(t.count, 7);
	assert_int_equal(ut_cli_set(verbose, &t, "True", 0, "opt.yaml: ", &err), 0);
	assert_true(t.verbose);
	assert_int_equal(ut_cli_set(verbose, &t, "false", 0, "opt.yaml: ", &err), 0);
	assert_false(t.verbose);
	assert_int_equal(ut_cli_set(verbose, &t, "maybe", 0, "opt.yaml: ", &err), -1);
	assert_string_equal(err.msg, "opt.yaml: verbose: 'maybe' is not true or false");
	assert_int_equal(ut_cli_set(count, &t, "0", 0, "opt.yaml: ", &err), -1);
	assert_string_equal(err.msg, "opt.yaml: count: 0 is out of range 1..10");
}

static void usage_lists_the_options(void **state)
{
	(void)state;
	char *text = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);
	assert_non_null(out);
	ut_cli_usage(out, opts, UT_ARRAY_LEN(opts));
	fclose(out);
	assert_non_null(strstr(text, "  --name                   a name\n"));
	assert_non_null(strstr(text, "  --count, -n              how many\n"));
	assert_non_null(strstr(text, "  --verbose, -v            talk\n"));
	assert_null(strstr(text, "--seed")); /* no help: not listed */
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(every_kind_every_form),
	    cmocka_unit_test(positional),
	    cmocka_unit_test(refusals),
	    cmocka_unit_test(from_a_file),
	    cmocka_unit_test(usage_lists_the_options),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
