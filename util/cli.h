/*
 * cli.h - the command-line parser of yolo-train, yolo-val and yolo-evolve:
 * each program describes its options in one table (name, spelling aliases,
 * kind, where the value goes, bounds, help) and this file parses argv
 * against it, prints the help, and sets a value read from a file (opt.yaml)
 * the same way, so every program accepts and rejects options alike:
 *
 *	struct args { const char *data; long epochs; bool verbose; };
 *	static const struct ut_cli_opt opts[] = {
 *	    {"data", .kind = UT_CLI_STRING, .offset = offsetof(struct args, data),
 *	     .help = "dataset yaml"},
 *	    {"epochs", .kind = UT_CLI_LONG, .offset = offsetof(struct args, epochs),
 *	     .lo = 1, .hi = 100000, .help = "epochs (300)"},
 *	    {"verbose", .alias = "v", .kind = UT_CLI_FLAG, .offset = offsetof(struct args,
 *verbose)},
 *	};
 *	struct ut_cli_parse p = {.opts = opts, .count = UT_ARRAY_LEN(opts), .target = &args};
 *	if (ut_cli_parse(&p, argc, argv, &err) != 0) ...   // err: one line
 *
 * Accepted forms: --name VALUE, --name=VALUE, -x VALUE for a one-letter
 * alias; after "--" every argument is a plain one, as getopt_long and
 * argparse have it. A value may start with '-' (--lr -1) except where it is
 * optional.
 * Messages name the option and quote (escaped, cut) what was given.
 */
#ifndef UT_CLI_H
#define UT_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "ut.h"

enum ut_cli_kind {
	UT_CLI_STRING, /* const char * (argv's own text); "" is refused unless .empty_ok */
	UT_CLI_LONG,   /* long in [lo, hi] */
	UT_CLI_U64,    /* unsigned long long, decimal digits only (seeds) */
	UT_CLI_DOUBLE, /* double in [lo, hi] (lo == hi == 0: any finite number; hi INFINITY: >= lo)
			*/
	UT_CLI_FLAG,   /* bool, true when given; "true"/"True"/"false"/"False" from a file */
	UT_CLI_CUSTOM, /* .parse does it */
	UT_CLI_IGNORED /* accepted (a value if one is attached with =) and dropped */
};

struct ut_cli_opt;

/*
 * A custom option's parser: value (never NULL) for the index-th value of
 * the option on this command line (0, then 1, 2 ... for an option with
 * .many). Returns 0 or -1 with err set (one line).
 */
typedef int (*ut_cli_parse_fn)(void *target, const struct ut_cli_opt *opt, const char *value,
			       int index, struct ut_err *err);

struct ut_cli_opt {
	const char *name;  /* without the dashes: "batch-size" */
	const char *alias; /* another spelling ("batch"), a single letter is "-b"; or NULL */
	enum ut_cli_kind kind;
	size_t offset; /* of the value in the target struct */
	double lo, hi; /* bounds of LONG and DOUBLE */
	bool empty_ok; /* STRING: "" is a value */
	/* The value when the option comes without one, which makes the value
	 * optional: the next argument is taken only if it does not start with
	 * '-' (--cache [ram|disk]). NULL: a value is required (FLAG: none). */
	const char *implicit;
	bool many;	       /* CUSTOM: the arguments after it up to the next option too */
	ut_cli_parse_fn parse; /* CUSTOM */
	const char *key;       /* its name in a file (opt.yaml), NULL: none */
	const char *help;      /* one line for ut_cli_usage; NULL: not listed */
};

struct ut_cli_parse {
	const struct ut_cli_opt *opts;
	size_t count;
	void *target;		 /* the struct the offsets point into */
	const char **positional; /* room for max_positional plain arguments, or NULL */
	int max_positional;
	int npositional; /* out */
	bool *given;	 /* out, optional: given[i] for opts[i] seen on the command line */
};

/* Parse argv[1 .. argc) into p->target. Returns 0, or -1 with err naming the option. */
int ut_cli_parse(struct ut_cli_parse *p, int argc, char **argv, struct ut_err *err);

/* The option of that name (len bytes, no dashes) or alias; with by_key, of that .key. */
const struct ut_cli_opt *ut_cli_find(const struct ut_cli_opt *opts, size_t count, const char *name,
				     size_t len, bool by_key);

/*
 * Store value (NULL for a flag given bare) into target as opt says. where
 * prefixes messages ("--" on the command line, "opt.yaml: " from a file).
 */
int ut_cli_set(const struct ut_cli_opt *opt, void *target, const char *value, int index,
	       const char *where, struct ut_err *err);

/* Was the option of that name on the command line? (p->given must have been set.) */
bool ut_cli_given(const struct ut_cli_parse *p, const char *name);

/* One line per option with help: "  --name, --alias VALUE   help". */
void ut_cli_usage(FILE *out, const struct ut_cli_opt *opts, size_t count);

#endif
