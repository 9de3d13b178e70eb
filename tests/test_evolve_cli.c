/*
 * test_evolve_cli.c - yolo-evolve's command line (evolve/main.c, included
 * here for its static tables and parsers): each command's hand-written help
 * names exactly the options its ut_cli table takes, and parsing keeps what
 * the getopt_long parser did (prefixes, bounds, --seed as 64 bits, which
 * options were given, one positional argument for import) with one-line
 * errors that name the option and quote the value.
 */
#define main yolo_evolve_main
int yolo_evolve_main(int argc, char **argv);
#include "main.c"
#undef main

#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>

#include <cmocka.h>

/* The options a help text names: its --words, except inside '...' (examples, templates). */
struct named {
	char words[128][32];
	int n;
};

static void help_options(const char *help, struct named *out)
{
	out->n = 0;
	bool quoted = false;
	for (const char *p = help; *p != '\0'; p++) {
		/* an opening quote follows a blank or '('; an apostrophe (trainer's) does not */
		if (*p == '\'' && (quoted || p == help || p[-1] == ' ' || p[-1] == '(')) {
			quoted = !quoted;
			continue;
		}
		if (quoted || p[0] != '-' || p[1] != '-' ||
		    (p > help && p[-1] != ' ' && p[-1] != '[' && p[-1] != '(' && p[-1] != '\n'))
			continue;
		size_t len = strspn(p + 2, "abcdefghijklmnopqrstuvwxyz0123456789-");
		assert_true(len > 0 && len < sizeof(out->words[0]));
		assert_true(out->n < (int)UT_ARRAY_LEN(out->words));
		snprintf(out->words[out->n++], sizeof(out->words[0]), "%.*s", (int)len, p + 2);
		p += 1 + len;
	}
}

static bool is_named(const struct named *named, const char *word)
{
	for (int i = 0; i < named->n; i++)
		if (strcmp(named->words[i], word) == 0)
			return true;
	return false;
}

static void help_names_every_option(void **state)
{
	(void)state;
	for (size_t c = 0; c < UT_ARRAY_LEN(commands); c++) {
		const struct command *cmd = &commands[c];
		const char *name = cmd->name != NULL ? cmd->name : "(run)";
		char help[8192];
		/* import's help says "[run options]": the run's help names them */
		snprintf(help, sizeof(help), "%s%s%s%s", cmd->help,
			 cmd->help_more != NULL ? cmd->help_more : "",
			 cmd->fn == cmd_import ? commands[0].help : "",
			 cmd->fn == cmd_import ? commands[0].help_more : "");
		struct named named;
		help_options(help, &named);
		for (int i = 0; i < named.n; i++) {
			const char *word = named.words[i];
			if (ut_cli_find(cmd->opts, cmd->count, word, strlen(word), false) == NULL)
				fail_msg("%s --help names --%s, which it does not take", name,
					 word);
		}
		/* --help is what prints the help: it need not name itself */
		for (size_t i = 0; i < cmd->count; i++) {
			const struct ut_cli_opt *opt = &cmd->opts[i];
			if (strcmp(opt->name, "help") != 0 && !is_named(&named, opt->name))
				fail_msg("%s takes --%s, which its --help does not name", name,
					 opt->name);
			if (opt->alias != NULL && !is_named(&named, opt->alias))
				fail_msg("%s takes --%s, which its --help does not name", name,
					 opt->alias);
		}
		assert_true(cmd->count <= MAX_OPTIONS);
	}
}

/* The examples in the run's help are not taken for its options. */
static void help_options_skips_examples(void **state)
{
	(void)state;
	struct named named;
	help_options("  --a X  the trainer's, e.g. '--b=1 --c' or ('') [--d | --e]\n--f\n"
		     "  not--g, x--h\n",
		     &named);
	assert_int_equal(named.n, 4);
	assert_string_equal(named.words[0], "a");
	assert_string_equal(named.words[1], "d");
	assert_string_equal(named.words[2], "e");
	assert_string_equal(named.words[3], "f");
}

/* Parse a NULL-terminated list (after the program name) as command c. */
static int parse(size_t c, struct cli *out, struct ut_err *err, const char *const *args)
{
	char *argv[32] = {"yolo-evolve"};
	int argc = 1;
	while (args[argc - 1] != NULL)
		argv[argc] = (char *)args[argc - 1], argc++;
	err->msg[0] = '\0';
	return parse_cli(&commands[c], argc, argv, out, err);
}

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})
enum { RUN, STATUS, EXPORT, IMPORT, REPORT, SERVE };

static void run_options_parse(void **state)
{
	(void)state;
	struct cli c;
	struct ut_err err;
	assert_string_equal(commands[IMPORT].name, "import");
	assert_int_equal(parse(RUN, &c, &err, ARGS("--data", "d.yaml")), 0);
	assert_int_equal(c.generations, 300);
	assert_false(c.generations_set);
	assert_false(c.parallel_set);
	assert_null(c.positional);
	/* unambiguous prefixes, --opt=value, the alias, flags, a 64-bit seed */
	assert_int_equal(parse(RUN, &c, &err,
			       ARGS("--gen", "5", "--paral=2", "--img", "320", "--exist", "--seed",
				    "18446744073709551615", "--mutation-prob", "0.5", "--cfg", "",
				    "--lag", "0")),
			 0);
	assert_int_equal(c.generations, 5);
	assert_true(c.generations_set);
	assert_int_equal(c.parallel, 2);
	assert_true(c.parallel_set);
	assert_int_equal(c.imgsz, 320);
	assert_true(c.exist_ok);
	assert_true(c.seed == 18446744073709551615ULL);
	assert_true(c.mutation_prob == 0.5);
	assert_string_equal(c.cfg, "");
	/* import FILE anywhere among the options */
	assert_int_equal(
	    parse(IMPORT, &c, &err, ARGS("--data", "none", "old.csv", "--epochs", "3")), 0);
	assert_string_equal(c.positional, "old.csv");
	assert_int_equal(c.epochs, 3);
	/* after "--" a file name may start with '-', as getopt_long had it */
	assert_int_equal(parse(IMPORT, &c, &err, ARGS("--data", "none", "--", "-old.csv")), 0);
	assert_string_equal(c.positional, "-old.csv");
}

/* args is refused with one line that holds each of the NULL-terminated parts. */
static void refused(size_t c, const char *const *args, const char *part1, const char *part2)
{
	struct cli cli;
	struct ut_err err;
	if (parse(c, &cli, &err, args) != -1)
		fail_msg("%s accepted", args[0]);
	if (strchr(err.msg, '\n') != NULL || strstr(err.msg, part1) == NULL ||
	    (part2 != NULL && strstr(err.msg, part2) == NULL))
		fail_msg("'%s' does not say %s and %s", err.msg, part1, part2 ? part2 : "");
}

static void run_options_refused(void **state)
{
	(void)state;
	refused(RUN, ARGS("--bogus"), "unknown option '--bogus'", NULL);
	refused(RUN, ARGS("--epochs"), "--epochs", "needs a value");
	refused(RUN, ARGS("--epochs", "abc"), "--epochs", "'abc'");
	refused(RUN, ARGS("--epochs", "a\nb"), "--epochs", "'a\\nb'");
	refused(RUN, ARGS("--generations", "0"), "--generations", "1..");
	refused(RUN, ARGS("--population", "1"), "--population", "2..");
	refused(RUN, ARGS("--parallel", "99999"), "--parallel", NULL);
	refused(RUN, ARGS("--top", "99999"), "--top", NULL);
	refused(RUN, ARGS("--mutation-prob", "2"), "--mutation-prob", "'2'");
	refused(RUN, ARGS("--timeout", "-1"), "--timeout", "'-1'");
	refused(RUN, ARGS("--seed", "-1"), "--seed", "'-1'");
	refused(RUN, ARGS("--seed", "18446744073709551616"), "--seed", NULL);
	refused(RUN, ARGS("--dev", "0"), "ambiguous option '--dev'", NULL);
	refused(RUN, ARGS("--exist-ok=yes"), "--exist-ok", "no value");
	refused(RUN, ARGS("--project", ""), "--project", "empty");
	refused(RUN, ARGS("a", "b"), "unexpected argument 'b'", NULL);
	/* each command takes only its own options */
	refused(RUN, ARGS("--best", "x"), "unknown option '--best'", NULL);
	refused(RUN, ARGS("--out", "x"), "unknown option '--out'", NULL);
	refused(STATUS, ARGS("--epochs", "3"), "unknown option '--epochs'", NULL);
	refused(STATUS, ARGS("stray"), "unexpected argument 'stray'", NULL);
	refused(EXPORT, ARGS("--out", "x"), "unknown option '--out'", NULL);
	refused(REPORT, ARGS("--csv", "x"), "unknown option '--csv'", NULL);
}

/*
 * GPU groups: P = GPUs / N x K, and N read back from what the database
 * stores (devices, per_device, parallel) for every valid combination.
 */
static void gpu_groups_round_trip(void **state)
{
	(void)state;
	static const char *const devices[] = {"0", "0,1", "0,1,2", "0,1,2,3", "4,5,6,7,0,1"};
	for (size_t d = 0; d < UT_ARRAY_LEN(devices); d++)
		for (long n = 1; n <= 6; n++)
			for (long k = 1; k <= 3; k++) {
				struct cli c;
				struct ut_err err;
				cli_defaults(&c);
				c.devices = devices[d];
				c.gpus_per_candidate = n;
				c.per_device = k;
				c.batch = 60;
				long parallel = 0, ids = (long)(strlen(devices[d]) + 1) / 2;
				int rc = slots_for_devices(&c, &parallel, &err);
				if (ids % n != 0) {
					assert_int_equal(rc, -1);
					assert_non_null(strstr(err.msg, "not a multiple"));
					continue;
				}
				assert_int_equal(rc, 0);
				assert_int_equal(parallel, ids / n * k);
				struct st_options o = {.per_device = k, .parallel = parallel};
				snprintf(o.devices, sizeof(o.devices), "%s", devices[d]);
				assert_int_equal(ev_gpus_per_candidate(&o), n);
			}
	/* a database made before the option: parallel = GPUs x K */
	struct st_options old = {.devices = "0,1,2,3", .per_device = 2, .parallel = 8};
	assert_int_equal(ev_gpus_per_candidate(&old), 1);
	struct st_options cpu = {.devices = "", .per_device = 1, .parallel = 3};
	assert_int_equal(ev_gpus_per_candidate(&cpu), 1);
}

/* --help before an error shows the help (exit 0), as getopt_long's loop did; after it, not. */
static void help_before_error(void **state)
{
	(void)state;
	struct cli c;
	struct ut_err err;
	FILE *saved = stdout;
	stdout = fopen("/dev/null", "w");
	assert_non_null(stdout);
	int before = parse(RUN, &c, &err, ARGS("--help", "--bogus"));
	int after = parse(RUN, &c, &err, ARGS("--bogus", "--help"));
	int value = parse(RUN, &c, &err, ARGS("--name", "--help"));
	fclose(stdout);
	stdout = saved;
	assert_int_equal(before, 1);
	assert_int_equal(after, -1);
	assert_int_equal(value, 0); /* --help is --name's value */
	assert_string_equal(c.name, "--help");
}

static int serve(struct serve_args *args, struct ut_err *err, const char *const *argv_rest)
{
	char *argv[16] = {"serve"};
	int argc = 1;
	while (argv_rest[argc - 1] != NULL)
		argv[argc] = (char *)argv_rest[argc - 1], argc++;
	*args = (struct serve_args){.params = {.host = "127.0.0.1", .port = 8080}};
	int rc = parse_serve(&commands[SERVE], argc, argv, args, err);
	sv_params_free(&args->params);
	return rc;
}

static void serve_parse(void **state)
{
	(void)state;
	struct serve_args a;
	struct ut_err err;
	assert_string_equal(commands[SERVE].name, "serve");
	assert_int_equal(serve(&a, &err, ARGS("--port", "0", "--host", "::1", "--refresh", "50")),
			 0);
	assert_int_equal(a.params.port, 0);
	assert_string_equal(a.params.host, "::1");
	assert_int_equal(a.params.refresh_ms, 50);
	assert_int_equal(serve(&a, &err, ARGS("--port", "65536")), -1);
	assert_non_null(strstr(err.msg, "--port"));
	assert_int_equal(serve(&a, &err, ARGS("--refresh-ms", "0")), -1);
	assert_non_null(strstr(err.msg, "--refresh-ms"));
	assert_int_equal(serve(&a, &err, ARGS("--db", "/nonexistent/e.db")), -1);
	assert_non_null(strstr(err.msg, "--db /nonexistent/e.db"));
	assert_int_equal(serve(&a, &err, ARGS("--epochs", "3")), -1);
	assert_non_null(strstr(err.msg, "unknown option '--epochs'"));
}

/* Every --db is added, in order (a database file need not be valid to be named). */
static void serve_many_dbs(void **state)
{
	(void)state;
	char dir[] = "/tmp/ye_evolve_cli_XXXXXX";
	assert_non_null(mkdtemp(dir));
	char one[64], two[64];
	snprintf(one, sizeof(one), "%s/one.db", dir);
	snprintf(two, sizeof(two), "%s/two.db", dir);
	fclose(fopen(one, "w"));
	fclose(fopen(two, "w"));
	struct serve_args a = {.params = {.host = "127.0.0.1", .port = 8080}};
	struct ut_err err;
	char eq[80];
	snprintf(eq, sizeof(eq), "--db=%s", two);
	char *argv[] = {"serve", "--db", one, eq};
	int rc = parse_serve(&commands[SERVE], 4, argv, &a, &err);
	size_t ndbs = a.params.ndbs;
	bool in_order = ndbs == 2 && strstr(a.params.dbs[0], "one.db") != NULL &&
			strstr(a.params.dbs[1], "two.db") != NULL;
	sv_params_free(&a.params);
	unlink(one);
	unlink(two);
	rmdir(dir);
	assert_int_equal(rc, 0);
	assert_true(in_order);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(help_options_skips_examples),
	    cmocka_unit_test(help_names_every_option),
	    cmocka_unit_test(run_options_parse),
	    cmocka_unit_test(run_options_refused),
	    cmocka_unit_test(gpu_groups_round_trip),
	    cmocka_unit_test(help_before_error),
	    cmocka_unit_test(serve_parse),
	    cmocka_unit_test(serve_many_dbs),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
