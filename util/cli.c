/*
 * cli.c - the table-driven command-line parser (see cli.h).
 */
#include "cli.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static bool name_is(const char *name, const char *text, size_t len)
{
	return name != NULL && strlen(name) == len && strncmp(name, text, len) == 0;
}

const struct ut_cli_opt *ut_cli_find(const struct ut_cli_opt *opts, size_t count, const char *name,
				     size_t len, bool by_key)
{
	for (size_t i = 0; i < count; i++) {
		if (by_key ? name_is(opts[i].key, name, len)
			   : name_is(opts[i].name, name, len) || name_is(opts[i].alias, name, len))
			return &opts[i];
	}
	return NULL;
}

static int parse_u64(const char *text, unsigned long long *out)
{
	if (text[0] < '0' || text[0] > '9')
		return -1;
	char *end;
	errno = 0;
	unsigned long long v = strtoull(text, &end, 10);
	if (*end != '\0' || errno != 0)
		return -1;
	*out = v;
	return 0;
}

static bool parse_bool(const char *text, bool *out)
{
	static const char *const yes[] = {"true", "True"}, *const no[] = {"false", "False"};
	for (size_t i = 0; i < 2; i++) {
		if (strcmp(text, yes[i]) == 0)
			return *out = true;
		if (strcmp(text, no[i]) == 0)
			return !(*out = false);
	}
	return false;
}

int ut_cli_set(const struct ut_cli_opt *opt, void *target, const char *value, int index,
	       const char *where, struct ut_err *err)
{
	char *field = (char *)target + opt->offset;
	char q[UT_QUOTE_LEN];
	const char *shown = value != NULL ? ut_quote(value, q, sizeof(q)) : "";
	switch (opt->kind) {
	case UT_CLI_STRING:
		if (value[0] == '\0' && !opt->empty_ok)
			return ut_err_set(err, "%s%s: empty value", where, opt->name);
		*(const char **)field = value;
		return 0;
	case UT_CLI_LONG: {
		long v;
		if (ut_parse_long(value, LONG_MIN, LONG_MAX, &v) != 0)
			return ut_err_set(err, "%s%s: '%s' is not an integer", where, opt->name,
					  shown);
		if (v < (long)opt->lo || v > (long)opt->hi)
			return ut_err_set(err, "%s%s: %ld is out of range %ld..%ld", where,
					  opt->name, v, (long)opt->lo, (long)opt->hi);
		*(long *)field = v;
		return 0;
	}
	case UT_CLI_U64:
		if (parse_u64(value, (unsigned long long *)field) != 0)
			return ut_err_set(err, "%s%s: '%s' is not a whole number", where, opt->name,
					  shown);
		return 0;
	case UT_CLI_DOUBLE: {
		double v;
		bool bounded = opt->lo != 0 || opt->hi != 0;
		if (ut_parse_double(value, &v) != 0 || !isfinite(v) ||
		    (bounded && (v < opt->lo || v > opt->hi))) {
			if (bounded && isinf(opt->hi))
				return ut_err_set(err, "%s%s: '%s' is not a number >= %g", where,
						  opt->name, shown, opt->lo);
			if (bounded)
				return ut_err_set(err, "%s%s: '%s' is not a number in [%g, %g]",
						  where, opt->name, shown, opt->lo, opt->hi);
			return ut_err_set(err, "%s%s: '%s' is not a number", where, opt->name,
					  shown);
		}
		*(double *)field = v;
		return 0;
	}
	case UT_CLI_FLAG:
		if (value == NULL) {
			*(bool *)field = true;
			return 0;
		}
		if (!parse_bool(value, (bool *)field))
			return ut_err_set(err, "%s%s: '%s' is not true or false", where, opt->name,
					  shown);
		return 0;
	case UT_CLI_CUSTOM:
		return opt->parse(target, opt, value, index, err);
	case UT_CLI_IGNORED:
		return 0;
	}
	return ut_err_set(err, "%s%s: unknown option kind", where, opt->name);
}

/*
 * The option arg names: "-x" a one-letter alias; "--name" a name or alias,
 * or an unambiguous prefix of one, as argparse and getopt_long accept.
 * NULL with err set when there is none or the prefix fits several.
 */
static const struct ut_cli_opt *lookup(const struct ut_cli_parse *p, const char *arg,
				       const char **attached, struct ut_err *err)
{
	const char *name = arg[1] == '-' ? arg + 2 : arg + 1;
	const char *eq = strchr(name, '=');
	size_t len = eq != NULL ? (size_t)(eq - name) : strlen(name);
	*attached = eq != NULL ? eq + 1 : NULL;
	char q[UT_QUOTE_LEN];
	const struct ut_cli_opt *opt = NULL;
	if (arg[1] != '-') {
		for (size_t i = 0; len == 1 && i < p->count; i++)
			if (name_is(p->opts[i].alias, name, len))
				opt = &p->opts[i];
	} else if ((opt = ut_cli_find(p->opts, p->count, name, len, false)) == NULL) {
		int matches = 0;
		for (size_t i = 0; len > 0 && i < p->count; i++) {
			const struct ut_cli_opt *o = &p->opts[i];
			bool prefix = strncmp(o->name, name, len) == 0 ||
				      (o->alias != NULL && strncmp(o->alias, name, len) == 0);
			if (prefix && o != opt) {
				opt = o;
				matches++;
			}
		}
		if (matches > 1) {
			ut_err_set(err, "ambiguous option '%s' (see --help)",
				   ut_quote(arg, q, sizeof(q)));
			return NULL;
		}
	}
	if (opt == NULL)
		ut_err_set(err, "unknown option '%s' (see --help)", ut_quote(arg, q, sizeof(q)));
	return opt;
}

static bool is_option(const char *arg)
{
	return arg != NULL && arg[0] == '-' && arg[1] != '\0';
}

int ut_cli_parse(struct ut_cli_parse *p, int argc, char **argv, struct ut_err *err)
{
	char q[UT_QUOTE_LEN];
	p->npositional = 0;
	if (p->given != NULL)
		memset(p->given, 0, p->count * sizeof(bool));
	bool options_end = false; /* after "--" every argument is a plain one */
	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i];
		if (!options_end && strcmp(arg, "--") == 0) {
			options_end = true;
			continue;
		}
		if (options_end || !is_option(arg)) {
			if (p->npositional >= p->max_positional)
				return ut_err_set(err, "unexpected argument '%s' (see --help)",
						  ut_quote(argv[i], q, sizeof(q)));
			p->positional[p->npositional++] = argv[i];
			continue;
		}
		const char *value;
		const struct ut_cli_opt *opt = lookup(p, arg, &value, err);
		if (opt == NULL)
			return -1;
		if (p->given != NULL)
			p->given[opt - p->opts] = true;
		if (opt->kind == UT_CLI_FLAG && value != NULL)
			return ut_err_set(err, "--%s takes no value", opt->name);
		if (value == NULL && opt->kind != UT_CLI_FLAG) {
			if (opt->implicit != NULL)
				value = i + 1 < argc && !is_option(argv[i + 1]) ? argv[++i]
										: opt->implicit;
			else if (opt->kind == UT_CLI_IGNORED)
				continue;
			else if (i + 1 >= argc)
				return ut_err_set(err, "--%s needs a value", opt->name);
			else
				value = argv[++i];
		}
		if (ut_cli_set(opt, p->target, value, 0, "--", err) != 0)
			return -1;
		for (int n = 1; opt->many && i + 1 < argc && !is_option(argv[i + 1]); n++)
			if (ut_cli_set(opt, p->target, argv[++i], n, "--", err) != 0)
				return -1;
	}
	return 0;
}

bool ut_cli_given(const struct ut_cli_parse *p, const char *name)
{
	const struct ut_cli_opt *opt = ut_cli_find(p->opts, p->count, name, strlen(name), false);
	return opt != NULL && p->given != NULL && p->given[opt - p->opts];
}

void ut_cli_usage(FILE *out, const struct ut_cli_opt *opts, size_t count)
{
	for (size_t i = 0; i < count; i++) {
		const struct ut_cli_opt *o = &opts[i];
		if (o->help == NULL)
			continue;
		char names[64];
		if (o->alias == NULL)
			snprintf(names, sizeof(names), "--%s", o->name);
		else
			snprintf(names, sizeof(names), "--%s, %s%s", o->name,
				 o->alias[1] == '\0' ? "-" : "--", o->alias);
		fprintf(out, "  %-24s %s\n", names, o->help);
	}
}
