/*
 * meta.h - hyperparameters: the tables of the two spaces (YOLOv5's
 * meta_table.h, Ultralytics' meta_ultralytics.h), hyp.yaml reading and
 * writing (libyaml), user meta.yaml overrides of gains and bounds, and the
 * set of keys allowed to mutate.
 *
 * A hyp set is a plain array of doubles indexed by enum meta_key, so every
 * user of the tables (YAML, SQL columns, mutation) loops over the keys of
 * a space (meta_space_keys; YOLOv5's are 0 .. META_COUNT - 1).
 */
#ifndef META_H
#define META_H

#include <stdio.h>

#include "meta_table.h"
#include "meta_ultralytics.h"
#include "ut.h"

/*
 * Every key of every space: YOLOv5's 29 in its order (0 .. META_COUNT - 1,
 * so YOLOv5 code paths loop over exactly its table), then the keys only
 * Ultralytics has (up to META_ALL).
 */
enum meta_key {
#define META_ENUM(name, gain, lower, upper, doc) META_##name,
	META_HYPS(META_ENUM)
#undef META_ENUM
	    META_COUNT,
	META_YOLOV5_LAST =
	    META_COUNT - 1, /* so that the first Ultralytics-only key is META_COUNT */
#define META_UL_ENUM(name) META_##name,
	META_UL_ONLY(META_UL_ENUM)
#undef META_UL_ENUM
	    META_ALL
};

/*
 * A hyperparameter space: the keys a trainer takes, with their bounds and
 * base values. YOLOv5's (the default) and Ultralytics' (v8, YOLO11).
 */
enum meta_space { META_SPACE_YOLOV5, META_SPACE_ULTRALYTICS, META_SPACE_COUNT };

/* "yolov5" or "ultralytics". */
const char *meta_space_name(enum meta_space space);
/* Parse a space name; -1 if unknown. */
int meta_space_parse(const char *name, enum meta_space *out);
/* The keys of a space in its order (hyp.yaml, mutation draws); returns how many. */
int meta_space_keys(enum meta_space space, const int **keys);
/* Index of key `name` if the space has it, else -1. */
int meta_space_find(enum meta_space space, const char *name);

/*
 * A full set of hyperparameter values indexed by enum meta_key. Keys outside
 * the hyp's space are NaN (stored as NULL): a hyp whose `obj` is NaN is an
 * Ultralytics hyp (meta_hyp_space), any other a YOLOv5 one.
 */
struct meta_hyp {
	double v[META_ALL];
};

/* The space of a hyp (see struct meta_hyp). */
enum meta_space meta_hyp_space(const struct meta_hyp *hyp);
/* Ultralytics' base hyp (its default.yaml), keys outside its space NaN. */
void meta_hyp_ultralytics_base(struct meta_hyp *hyp);

/* Mutation gain and bounds of one key. */
struct meta_bound {
	double gain, lower, upper;
};

/*
 * The evolution's meta table: a space's defaults plus user overrides. Keys
 * outside the space have gain 0 and are never read.
 */
struct meta_table {
	struct meta_bound k[META_ALL];
	enum meta_space space;
};

/* Name and one-line doc of key k (0 <= k < META_ALL). */
const char *meta_name(int k);
const char *meta_doc(int k);
/* Index of a key by name, or -1. */
int meta_find(const char *name);

/* YOLOv5 v7.0's meta table. */
void meta_table_default(struct meta_table *table);
/* The default meta table of a space (YOLOv5's, or the Ultralytics Tuner's). */
void meta_table_default_space(struct meta_table *table, enum meta_space space);

/*
 * Parse hyp.yaml text (a flat mapping of the 29 keys, `anchors` optional
 * and then 3; in the Ultralytics space its keys, a missing one taking its
 * base value as the package's Tuner does, and every key outside it NaN). Every value must be a
 * finite number inside the table's bounds. Errors name `source:line: key`: unknown, missing,
 * duplicate, not a number, NaN/inf, out of bounds. source is used only in messages.
 */
int meta_hyp_parse(const char *text, size_t len, const char *source, const struct meta_table *table,
		   struct meta_hyp *out, struct ut_err *err);
int meta_hyp_read(const char *path, const struct meta_table *table, struct meta_hyp *out,
		  struct ut_err *err);

/*
 * Write hyp.yaml in its space's key order (meta_hyp_space), values as
 * PyYAML writes Python floats (close_mosaic as an int, as Ultralytics
 * requires). `header` (may be NULL) is written first, verbatim.
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
