/*
 * meta.h - hyperparameters: the table (meta_table.h), hyp.yaml reading and
 * writing (libyaml), user meta.yaml overrides of gains and bounds, and the
 * set of keys allowed to mutate.
 *
 * A hyp set is a plain array of doubles indexed by enum meta_key, so every
 * user of the table (YAML, SQL columns, mutation) loops over META_COUNT.
 */
#ifndef META_H
#define META_H

#include <stdio.h>

#include "meta_table.h"
#include "ut.h"

enum meta_key {
#define META_ENUM(name, gain, lower, upper, doc) META_##name,
	META_HYPS(META_ENUM)
#undef META_ENUM
	    META_COUNT
};

/* A full set of hyperparameter values, in table order. */
struct meta_hyp {
	double v[META_COUNT];
};

/* Mutation gain and bounds of one key. */
struct meta_bound {
	double gain, lower, upper;
};

/* The evolution's meta table: YOLOv5's defaults plus user overrides. */
struct meta_table {
	struct meta_bound k[META_COUNT];
};

/* Name and one-line doc of key k (0 <= k < META_COUNT). */
const char *meta_name(int k);
const char *meta_doc(int k);
/* Index of a key by name, or -1. */
int meta_find(const char *name);

/* YOLOv5 v7.0's meta table. */
void meta_table_default(struct meta_table *table);

/*
 * Parse hyp.yaml text (a flat mapping of the 29 keys, `anchors` optional
 * and then 3). Every value must be a finite number inside the table's
 * bounds. Errors name `source:line: key`: unknown, missing, duplicate,
 * not a number, NaN/inf, out of bounds. source is used only in messages.
 */
int meta_hyp_parse(const char *text, size_t len, const char *source, const struct meta_table *table,
		   struct meta_hyp *out, struct ut_err *err);
int meta_hyp_read(const char *path, const struct meta_table *table, struct meta_hyp *out,
		  struct ut_err *err);

/*
 * Write hyp.yaml in YOLOv5's key order, values as PyYAML writes Python
 * floats. `header` (may be NULL) is written first, verbatim.
 */
int meta_hyp_write(FILE *out, const struct meta_hyp *hyp, const char *header);
int meta_hyp_save(const char *path, const struct meta_hyp *hyp, const char *header,
		  struct ut_err *err);

/*
 * Apply a user meta.yaml to table: a mapping from key to either a list
 * [gain, lower, upper] or a mapping with any of gain/lower/upper. Errors
 * name file, line and key (unknown key, non-number, NaN/inf, negative gain,
 * lower > upper, duplicate).
 */
int meta_table_parse(const char *text, size_t len, const char *source, struct meta_table *table,
		     struct ut_err *err);
int meta_table_read(const char *path, struct meta_table *table, struct ut_err *err);
/* Write the table as meta.yaml (readable back by meta_table_parse). */
int meta_table_write(FILE *out, const struct meta_table *table);

/*
 * Restrict mutation to a comma-separated list of keys: every other key gets
 * gain 0. An unknown key in the list is an error naming it.
 */
int meta_table_restrict(struct meta_table *table, const char *keys, struct ut_err *err);

/* Check a hyp against the bounds; the first violation is the error. */
int meta_hyp_check(const struct meta_hyp *hyp, const struct meta_table *table, const char *source,
		   struct ut_err *err);

#endif
