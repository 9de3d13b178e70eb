/*
 * dataset.c - data.yaml, split listing, YOLO label checks, the label cache
 * and image decoding; see dataset.h for the contract and for where we
 * differ from YOLOv5 v7.0 on purpose.
 */
#include "dataset.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <jpeglib.h>
#include <png.h>
#include <yaml.h>

#define CACHE_MAGIC "YECACHE\n"
#define CACHE_VERSION 1u
#define MIN_IMAGE_SIDE 10

/* ------------------------------------------------------------------ */
/* Small helpers                                                      */
/* ------------------------------------------------------------------ */

static char *dup_range(const char *text, size_t len)
{
	char *copy = malloc(len + 1);
	if (copy != NULL) {
		memcpy(copy, text, len);
		copy[len] = '\0';
	}
	return copy;
}

static char *dup_str(const char *text)
{
	return dup_range(text, strlen(text));
}

/* Folder part of a path: "." when there is none. */
static char *dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');
	if (slash == NULL)
		return dup_str(".");
	if (slash == path)
		return dup_str("/");
	return dup_range(path, (size_t)(slash - path));
}

/*
 * Join base and rel (rel wins when absolute) and drop "." and "x/.."
 * components lexically, as pathlib's resolve() does without symlinks.
 */
static char *join_norm(const char *base, const char *rel)
{
	struct ut_buf joined = {0};
	int rc = rel[0] == '/' ? ut_buf_printf(&joined, "%s", rel)
			       : ut_buf_printf(&joined, "%s/%s", base, rel);
	if (rc != 0)
		return NULL;
	char *src = joined.data;
	bool absolute = src[0] == '/';
	size_t len = strlen(src);
	char *out = malloc(len + 2);
	if (out == NULL) {
		ut_buf_free(&joined);
		return NULL;
	}
	size_t n = 0;
	size_t fixed = 0; /* leading "../" of a relative path cannot be popped */
	if (absolute)
		out[n++] = '/';
	char *save = NULL;
	for (char *part = strtok_r(src, "/", &save); part != NULL;
	     part = strtok_r(NULL, "/", &save)) {
		if (strcmp(part, ".") == 0)
			continue;
		if (strcmp(part, "..") == 0 && n > fixed + (absolute ? 1 : 0)) {
			while (n > 0 && out[n - 1] != '/')
				n--;
			if (n > (absolute ? 1u : 0u))
				n--; /* the slash before it */
			continue;
		}
		if (strcmp(part, "..") == 0 && absolute)
			continue;
		if (n > (absolute ? 1u : 0u))
			out[n++] = '/';
		memcpy(out + n, part, strlen(part));
		n += strlen(part);
		if (strcmp(part, "..") == 0)
			fixed = n;
	}
	if (n == 0)
		out[n++] = '.';
	out[n] = '\0';
	ut_buf_free(&joined);
	return out;
}

static void free_strv(char **v, int n)
{
	for (int i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static int push_str(char ***v, int *n, int *cap, char *s)
{
	if (s == NULL)
		return -1;
	if (*n == *cap) {
		int grown = *cap ? *cap * 2 : 16;
		char **bigger = realloc(*v, (size_t)grown * sizeof(**v));
		if (bigger == NULL) {
			free(s);
			return -1;
		}
		*v = bigger;
		*cap = grown;
	}
	(*v)[(*n)++] = s;
	return 0;
}

/* ------------------------------------------------------------------ */
/* data.yaml                                                          */
/* ------------------------------------------------------------------ */

struct yaml_ctx {
	yaml_document_t *doc;
	const char *file;
	struct ut_err *err;
};

static int yaml_fail(const struct yaml_ctx *ctx, const yaml_node_t *node, const char *key,
		     const char *what)
{
	return ut_err_set(ctx->err, "%s:%lu: %s: %s", ctx->file,
			  (unsigned long)node->start_mark.line + 1, key, what);
}

static bool is_null_scalar(const yaml_node_t *node)
{
	if (node->type != YAML_SCALAR_NODE || node->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return false;
	const char *v = (const char *)node->data.scalar.value;
	return v[0] == '\0' || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 ||
	       strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0;
}

/* A scalar's text, with embedded NULs refused. */
static int scalar_text(const struct yaml_ctx *ctx, const yaml_node_t *node, const char *key,
		       const char **out)
{
	if (node->type != YAML_SCALAR_NODE)
		return yaml_fail(ctx, node, key, "expected a string");
	if (strlen((const char *)node->data.scalar.value) != node->data.scalar.length)
		return yaml_fail(ctx, node, key, "string contains a NUL byte");
	*out = (const char *)node->data.scalar.value;
	return 0;
}

/* train/val/test: a string or a list of strings, each resolved under root. */
static int yaml_sources(const struct yaml_ctx *ctx, const yaml_node_t *node, const char *key,
			const char *root, char ***out, int *n_out)
{
	int cap = 0;
	const char *text;
	if (is_null_scalar(node))
		return 0;
	if (node->type == YAML_SCALAR_NODE) {
		if (scalar_text(ctx, node, key, &text) != 0)
			return -1;
		char *path = join_norm(root, text);
		struct stat st;
		if (path != NULL && stat(path, &st) != 0 && strncmp(text, "../", 3) == 0) {
			free(path); /* YOLOv5's fallback for a dataset moved next to the yaml */
			path = join_norm(root, text + 3);
		}
		if (push_str(out, n_out, &cap, path) != 0)
			return ut_err_set(ctx->err, "%s: out of memory", ctx->file);
		return 0;
	}
	if (node->type != YAML_SEQUENCE_NODE)
		return yaml_fail(ctx, node, key, "expected a path or a list of paths");
	for (yaml_node_item_t *item = node->data.sequence.items.start;
	     item < node->data.sequence.items.top; item++) {
		const yaml_node_t *child = yaml_document_get_node(ctx->doc, *item);
		if (scalar_text(ctx, child, key, &text) != 0)
			return -1;
		if (text[0] == '\0')
			return yaml_fail(ctx, child, key, "empty path");
		if (push_str(out, n_out, &cap, join_norm(root, text)) != 0)
			return ut_err_set(ctx->err, "%s: out of memory", ctx->file);
	}
	if (*n_out == 0)
		return yaml_fail(ctx, node, key, "empty list");
	return 0;
}

static int parse_index(const char *text, long hi, long *out)
{
	return ut_parse_long(text, 0, hi, out);
}

/* names: a list, or a mapping whose keys are exactly 0..n-1. */
static int yaml_names(const struct yaml_ctx *ctx, const yaml_node_t *node, struct tr_data_yaml *out)
{
	const char *text;
	if (node->type == YAML_SEQUENCE_NODE) {
		int n = (int)(node->data.sequence.items.top - node->data.sequence.items.start);
		if (n == 0)
			return yaml_fail(ctx, node, "names", "no class names");
		out->names = calloc((size_t)n, sizeof(char *));
		if (out->names == NULL)
			return ut_err_set(ctx->err, "%s: out of memory", ctx->file);
		out->nc = n;
		for (int i = 0; i < n; i++) {
			const yaml_node_t *child =
			    yaml_document_get_node(ctx->doc, node->data.sequence.items.start[i]);
			if (scalar_text(ctx, child, "names", &text) != 0)
				return -1;
			if ((out->names[i] = dup_str(text)) == NULL)
				return ut_err_set(ctx->err, "%s: out of memory", ctx->file);
		}
		return 0;
	}
	if (node->type != YAML_MAPPING_NODE)
		return yaml_fail(ctx, node, "names", "expected a list or a mapping of class names");
	int n = (int)(node->data.mapping.pairs.top - node->data.mapping.pairs.start);
	if (n == 0)
		return yaml_fail(ctx, node, "names", "no class names");
	out->names = calloc((size_t)n, sizeof(char *));
	if (out->names == NULL)
		return ut_err_set(ctx->err, "%s: out of memory", ctx->file);
	out->nc = n;
	for (yaml_node_pair_t *pair = node->data.mapping.pairs.start;
	     pair < node->data.mapping.pairs.top; pair++) {
		const yaml_node_t *key = yaml_document_get_node(ctx->doc, pair->key);
		const yaml_node_t *value = yaml_document_get_node(ctx->doc, pair->value);
		long index;
		if (key->type != YAML_SCALAR_NODE ||
		    parse_index((const char *)key->data.scalar.value, n - 1, &index) != 0)
			return yaml_fail(ctx, key, "names",
					 "keys must be the integers 0..n-1, i.e. 2: car");
		if (out->names[index] != NULL)
			return yaml_fail(ctx, key, "names", "duplicate class index");
		if (scalar_text(ctx, value, "names", &text) != 0)
			return -1;
		if ((out->names[index] = dup_str(text)) == NULL)
			return ut_err_set(ctx->err, "%s: out of memory", ctx->file);
	}
	return 0;
}

enum yaml_key { KEY_PATH, KEY_TRAIN, KEY_VAL, KEY_TEST, KEY_NC, KEY_NAMES, KEY_COUNT };
static const char *const yaml_keys[KEY_COUNT] = {"path", "train", "val", "test", "nc", "names"};

static int yaml_walk(const struct yaml_ctx *ctx, const char *yaml_path, struct tr_data_yaml *out)
{
	yaml_node_t *root = yaml_document_get_root_node(ctx->doc);
	if (root == NULL || root->type != YAML_MAPPING_NODE)
		return ut_err_set(ctx->err,
				  "%s:%lu: expected a mapping of keys (train, val, names, ...)",
				  ctx->file, root ? (unsigned long)root->start_mark.line + 1 : 1ul);
	const yaml_node_t *found[KEY_COUNT] = {0};
	for (yaml_node_pair_t *pair = root->data.mapping.pairs.start;
	     pair < root->data.mapping.pairs.top; pair++) {
		const yaml_node_t *key = yaml_document_get_node(ctx->doc, pair->key);
		if (key->type != YAML_SCALAR_NODE)
			return yaml_fail(ctx, key, "(key)", "keys must be strings");
		for (int k = 0; k < KEY_COUNT; k++) {
			if (strcmp((const char *)key->data.scalar.value, yaml_keys[k]) != 0)
				continue;
			if (found[k] != NULL)
				return yaml_fail(ctx, key, yaml_keys[k], "duplicate key");
			found[k] = yaml_document_get_node(ctx->doc, pair->value);
		}
	}
	static const enum yaml_key required[] = {KEY_TRAIN, KEY_VAL, KEY_NAMES};
	for (size_t i = 0; i < UT_ARRAY_LEN(required); i++)
		if (found[required[i]] == NULL)
			return ut_err_set(ctx->err, "%s: '%s:' field missing", ctx->file,
					  yaml_keys[required[i]]);

	char *yaml_dir = dir_of(yaml_path);
	if (yaml_dir == NULL)
		return ut_err_set(ctx->err, "%s: out of memory", ctx->file);
	const char *path_text = ".";
	if (found[KEY_PATH] != NULL && !is_null_scalar(found[KEY_PATH]) &&
	    scalar_text(ctx, found[KEY_PATH], "path", &path_text) != 0) {
		free(yaml_dir);
		return -1;
	}
	out->root = join_norm(yaml_dir, path_text[0] ? path_text : ".");
	free(yaml_dir);
	if (out->root == NULL)
		return ut_err_set(ctx->err, "%s: out of memory", ctx->file);

	if (yaml_sources(ctx, found[KEY_TRAIN], "train", out->root, &out->train, &out->n_train) !=
		0 ||
	    yaml_sources(ctx, found[KEY_VAL], "val", out->root, &out->val, &out->n_val) != 0 ||
	    (found[KEY_TEST] != NULL &&
	     yaml_sources(ctx, found[KEY_TEST], "test", out->root, &out->test, &out->n_test) != 0))
		return -1;
	if (out->n_train == 0)
		return yaml_fail(ctx, found[KEY_TRAIN], "train", "no path given");
	if (out->n_val == 0)
		return yaml_fail(ctx, found[KEY_VAL], "val", "no path given");
	if (yaml_names(ctx, found[KEY_NAMES], out) != 0)
		return -1;
	if (found[KEY_NC] != NULL) {
		long nc;
		const char *text;
		if (scalar_text(ctx, found[KEY_NC], "nc", &text) != 0)
			return -1;
		if (ut_parse_long(text, 1, INT_MAX, &nc) != 0)
			return yaml_fail(ctx, found[KEY_NC], "nc", "expected a positive integer");
		if (nc != out->nc) {
			char what[128];
			snprintf(what, sizeof(what), "nc is %ld but names has %d entries", nc,
				 out->nc);
			return yaml_fail(ctx, found[KEY_NC], "nc", what);
		}
	}
	return 0;
}

int tr_data_yaml_parse(const char *text, size_t len, const char *yaml_path,
		       struct tr_data_yaml *out, struct ut_err *err)
{
	memset(out, 0, sizeof(*out));
	yaml_parser_t parser;
	yaml_document_t doc;
	if (!yaml_parser_initialize(&parser))
		return ut_err_set(err, "%s: out of memory", yaml_path);
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
	if (!yaml_parser_load(&parser, &doc)) {
		ut_err_set(err, "%s:%lu: %s", yaml_path,
			   (unsigned long)parser.problem_mark.line + 1,
			   parser.problem ? parser.problem : "YAML syntax error");
		yaml_parser_delete(&parser);
		return -1;
	}
	struct yaml_ctx ctx = {&doc, yaml_path, err};
	int rc = yaml_walk(&ctx, yaml_path, out);
	yaml_document_delete(&doc);
	yaml_parser_delete(&parser);
	if (rc != 0)
		tr_data_yaml_free(out);
	return rc;
}

int tr_data_yaml_load(const char *path, struct tr_data_yaml *out, struct ut_err *err)
{
	memset(out, 0, sizeof(*out));
	char *text = NULL;
	size_t len = 0;
	if (ut_read_file(path, &text, &len, err) != 0)
		return -1;
	char *dir = dir_of(path);
	char real[PATH_MAX];
	if (dir == NULL || realpath(dir, real) == NULL) {
		free(dir);
		free(text);
		return ut_err_set(err, "%s: cannot resolve its folder", path);
	}
	free(dir);
	const char *base = strrchr(path, '/');
	struct ut_buf abs = {0};
	int rc = ut_buf_printf(&abs, "%s/%s", real, base ? base + 1 : path);
	if (rc == 0)
		rc = tr_data_yaml_parse(text, len, abs.data, out, err);
	else
		ut_err_set(err, "%s: out of memory", path);
	ut_buf_free(&abs);
	free(text);
	return rc;
}

void tr_data_yaml_free(struct tr_data_yaml *yaml)
{
	free(yaml->root);
	free_strv(yaml->train, yaml->n_train);
	free_strv(yaml->val, yaml->n_val);
	free_strv(yaml->test, yaml->n_test);
	free_strv(yaml->names, yaml->nc);
	memset(yaml, 0, sizeof(*yaml));
}

/* ------------------------------------------------------------------ */
/* Label files                                                        */
/* ------------------------------------------------------------------ */

/* One whitespace-separated number as numpy's float32 conversion reads it. */
static int parse_value(const char *tok, size_t len, float *out, struct ut_err *err)
{
	char buf[64], q[UT_QUOTE_LEN];
	if (len >= sizeof(buf))
		return ut_err_set(err, "could not convert string to float: '%s'",
				  ut_quote_n(tok, len, q, sizeof(q)));
	memcpy(buf, tok, len);
	buf[len] = '\0';
	/* Python's float() knows no hex floats; strtod does */
	if (strpbrk(buf, "xXpP") != NULL)
		return ut_err_set(err, "could not convert string to float: '%s'",
				  ut_quote(buf, q, sizeof(q)));
	char *end;
	errno = 0;
	double v = strtod(buf, &end);
	if (end == buf || *end != '\0')
		return ut_err_set(err, "could not convert string to float: '%s'",
				  ut_quote(buf, q, sizeof(q)));
	*out = (float)v;
	return 0;
}

struct row_span {
	const char *start;
	size_t len;
	int columns;
};

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\v' || c == '\f' || c == '\r';
}

/* Split text into non-blank lines and count their columns. */
static int split_rows(const char *text, size_t len, struct row_span **rows, int *n_rows,
		      struct ut_err *err)
{
	int cap = 0;
	*rows = NULL;
	*n_rows = 0;
	size_t i = 0;
	while (i < len) {
		size_t start = i;
		while (i < len && text[i] != '\n')
			i++;
		int columns = 0;
		for (size_t j = start; j < i;) {
			while (j < i && is_space(text[j]))
				j++;
			if (j < i)
				columns++;
			while (j < i && !is_space(text[j]))
				j++;
		}
		if (columns > 0) {
			if (*n_rows == cap) {
				cap = cap ? cap * 2 : 16;
				struct row_span *bigger =
				    realloc(*rows, (size_t)cap * sizeof(**rows));
				if (bigger == NULL) {
					free(*rows);
					*rows = NULL;
					return ut_err_set(err, "out of memory");
				}
				*rows = bigger;
			}
			(*rows)[(*n_rows)++] = (struct row_span){text + start, i - start, columns};
		}
		i++;
	}
	return 0;
}

/* Parse the numbers of one row into values (row->columns of them). */
static int row_values(const struct row_span *row, float *values, struct ut_err *err)
{
	int k = 0;
	for (size_t j = 0; j < row->len;) {
		while (j < row->len && is_space(row->start[j]))
			j++;
		size_t tok = j;
		while (j < row->len && !is_space(row->start[j]))
			j++;
		if (j > tok && parse_value(row->start + tok, j - tok, &values[k++], err) != 0)
			return -1;
	}
	return 0;
}

/* segments2boxes + xyxy2xywh, in float32 as numpy computes them. */
static void polygon_box(const float *xy, int n_points, struct tr_data_label *label)
{
	float x1 = xy[0], y1 = xy[1], x2 = xy[0], y2 = xy[1];
	for (int p = 1; p < n_points; p++) {
		x1 = fminf(x1, xy[2 * p]);
		x2 = fmaxf(x2, xy[2 * p]);
		y1 = fminf(y1, xy[2 * p + 1]);
		y2 = fmaxf(y2, xy[2 * p + 1]);
	}
	label->x = (x1 + x2) / 2;
	label->y = (y1 + y2) / 2;
	label->w = x2 - x1;
	label->h = y2 - y1;
}

static int check_label(const struct tr_data_label *label, float cls, int nc, struct ut_err *err)
{
	const float v[5] = {cls, label->x, label->y, label->w, label->h};
	for (int k = 0; k < 5; k++)
		if (!(v[k] >= 0))
			return ut_err_set(err, "negative label values [%g]", (double)v[k]);
	for (int k = 1; k < 5; k++)
		if (!(v[k] <= 1))
			return ut_err_set(err, "non-normalized or out of bounds coordinates [%g]",
					  (double)v[k]);
	if (cls != floorf(cls))
		return ut_err_set(err, "class %g is not an integer", (double)cls);
	if (cls >= (float)nc)
		return ut_err_set(err, "label class %g exceeds nc=%d (classes are 0..%d)",
				  (double)cls, nc, nc - 1);
	return 0;
}

static int compare_labels(const struct tr_data_label *a, const struct tr_data_label *b)
{
	const float va[5] = {(float)a->cls, a->x, a->y, a->w, a->h};
	const float vb[5] = {(float)b->cls, b->x, b->y, b->w, b->h};
	for (int k = 0; k < 5; k++)
		if (va[k] != vb[k])
			return va[k] < vb[k] ? -1 : 1;
	return 0;
}

/* qsort is not stable: break ties by index so the first copy comes first. */
static int compare_index(const void *pa, const void *pb, void *base)
{
	const struct tr_data_label *labels = base;
	int a = *(const int *)pa, b = *(const int *)pb;
	int c = compare_labels(&labels[a], &labels[b]);
	return c != 0 ? c : (a > b) - (a < b);
}

/* np.unique(lb, axis=0, return_index=True): sorted unique rows, first copies. */
static int remove_duplicates(struct tr_data_labels *out, struct ut_err *err)
{
	int n = out->n_labels;
	int *order = malloc((size_t)n * sizeof(*order));
	if (order == NULL)
		return ut_err_set(err, "out of memory");
	for (int i = 0; i < n; i++)
		order[i] = i;
	qsort_r(order, (size_t)n, sizeof(*order), compare_index, out->labels);
	int kept = 0;
	for (int i = 0; i < n; i++)
		if (i == 0 ||
		    compare_labels(&out->labels[order[i]], &out->labels[order[kept - 1]]) != 0)
			order[kept++] = order[i];
	if (kept == n) {
		free(order);
		return 0;
	}
	struct tr_data_label *labels = malloc((size_t)kept * sizeof(*labels));
	int *seg_start = out->seg_start ? malloc(((size_t)kept + 1) * sizeof(*seg_start)) : NULL;
	float *seg_xy =
	    out->seg_start ? malloc(((size_t)out->seg_start[n] * 2 + 1) * sizeof(*seg_xy)) : NULL;
	if (labels == NULL || (out->seg_start && (seg_start == NULL || seg_xy == NULL))) {
		free(order);
		free(labels);
		free(seg_start);
		free(seg_xy);
		return ut_err_set(err, "out of memory");
	}
	int points = 0;
	for (int i = 0; i < kept; i++) {
		labels[i] = out->labels[order[i]];
		if (seg_start == NULL)
			continue;
		int from = out->seg_start[order[i]], count = out->seg_start[order[i] + 1] - from;
		seg_start[i] = points;
		memcpy(seg_xy + 2 * points, out->seg_xy + 2 * from,
		       (size_t)count * 2 * sizeof(float));
		points += count;
	}
	if (seg_start != NULL)
		seg_start[kept] = points;
	free(order);
	free(out->labels);
	free(out->seg_start);
	free(out->seg_xy);
	out->labels = labels;
	out->seg_start = seg_start;
	out->seg_xy = seg_xy;
	out->duplicates = n - kept;
	out->n_labels = kept;
	return 0;
}

/* Fill out from rows; segment mode when any row has more than 6 columns. */
static int labels_from_rows(const struct row_span *rows, int n_rows, int nc,
			    struct tr_data_labels *out, struct ut_err *err)
{
	bool segments = false;
	size_t total_points = 0;
	int max_columns = 0;
	for (int r = 0; r < n_rows; r++) {
		segments |= rows[r].columns > 6;
		max_columns = rows[r].columns > max_columns ? rows[r].columns : max_columns;
	}
	for (int r = 0; r < n_rows; r++) {
		if (!segments && rows[r].columns != rows[0].columns)
			return ut_err_set(err, "rows have different numbers of columns (%d and %d)",
					  rows[0].columns, rows[r].columns);
		if (segments && (rows[r].columns < 3 || (rows[r].columns - 1) % 2 != 0))
			return ut_err_set(err,
					  "polygon row %d has %d coordinates, not whole x y pairs",
					  r + 1, rows[r].columns - 1);
		total_points += (size_t)(rows[r].columns - 1) / 2;
	}
	if (!segments && rows[0].columns != 5)
		return ut_err_set(err, "labels require 5 columns, %d columns detected",
				  rows[0].columns);
	if (n_rows <= 0 || total_points > INT_MAX / 2)
		return ut_err_set(err, "too many polygon points");
	float *values = malloc((size_t)max_columns * sizeof(*values));
	out->labels = malloc((size_t)n_rows * sizeof(*out->labels));
	if (segments) {
		out->seg_start = malloc(((size_t)n_rows + 1) * sizeof(*out->seg_start));
		out->seg_xy = malloc((total_points * 2 + 1) * sizeof(*out->seg_xy));
	}
	if (values == NULL || out->labels == NULL ||
	    (segments && (out->seg_start == NULL || out->seg_xy == NULL))) {
		free(values);
		return ut_err_set(err, "out of memory");
	}
	int points = 0;
	for (int r = 0; r < n_rows; r++) {
		if (row_values(&rows[r], values, err) != 0) {
			free(values);
			return -1;
		}
		struct tr_data_label *label = &out->labels[r];
		if (segments) {
			int count = (rows[r].columns - 1) / 2;
			out->seg_start[r] = points;
			memcpy(out->seg_xy + 2 * points, values + 1,
			       (size_t)count * 2 * sizeof(float));
			polygon_box(values + 1, count, label);
			points += count;
		} else {
			label->x = values[1];
			label->y = values[2];
			label->w = values[3];
			label->h = values[4];
		}
		out->n_labels = r + 1;
		int rc = check_label(label, values[0], nc, err);
		label->cls = rc == 0 ? (int)values[0] : 0;
		if (rc != 0) {
			free(values);
			return -1;
		}
	}
	if (segments)
		out->seg_start[n_rows] = points;
	free(values);
	return remove_duplicates(out, err);
}

int tr_data_labels_parse(const char *text, size_t len, int nc, struct tr_data_labels *out,
			 struct ut_err *err)
{
	memset(out, 0, sizeof(*out));
	if (memchr(text, '\0', len) != NULL)
		return ut_err_set(err, "label file contains a NUL byte");
	struct row_span *rows;
	int n_rows;
	if (split_rows(text, len, &rows, &n_rows, err) != 0)
		return -1;
	int rc = n_rows == 0 ? 0 : labels_from_rows(rows, n_rows, nc, out, err);
	free(rows);
	if (rc != 0)
		tr_data_labels_free(out);
	return rc;
}

void tr_data_labels_free(struct tr_data_labels *labels)
{
	free(labels->labels);
	free(labels->seg_start);
	free(labels->seg_xy);
	memset(labels, 0, sizeof(*labels));
}

char *tr_data_label_path(const char *image_path)
{
	static const char images[] = "/images/", labels[] = "/labels/";
	size_t len = strlen(image_path);
	char *out = malloc(len + 5);
	if (out == NULL)
		return NULL;
	memcpy(out, image_path, len + 1);
	const char *hit = NULL;
	for (const char *p = strstr(image_path, images); p != NULL; p = strstr(p + 1, images))
		hit = p;
	if (hit != NULL)
		memcpy(out + (hit - image_path), labels, sizeof(labels) - 1);
	char *dot = strrchr(out, '.');
	if (dot != NULL)
		*dot = '\0';
	strcat(out, ".txt");
	return out;
}

/* ------------------------------------------------------------------ */
/* Images                                                             */
/* ------------------------------------------------------------------ */

static unsigned read_u16(const uint8_t *p, bool big)
{
	return big ? (unsigned)p[0] << 8 | p[1] : (unsigned)p[1] << 8 | p[0];
}

static uint32_t read_u32(const uint8_t *p, bool big)
{
	return big ? (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]
		   : (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

/* The Orientation tag (0x0112) of IFD0 in an APP1 "Exif" payload; 1 if absent. */
static int exif_orientation(const uint8_t *app1, size_t len)
{
	if (len < 14 || memcmp(app1, "Exif\0\0", 6) != 0)
		return 1;
	const uint8_t *tiff = app1 + 6;
	size_t size = len - 6;
	bool big;
	if (memcmp(tiff, "II*\0", 4) == 0)
		big = false;
	else if (memcmp(tiff, "MM\0*", 4) == 0)
		big = true;
	else
		return 1;
	uint32_t ifd = read_u32(tiff + 4, big);
	if (ifd > size || size - ifd < 2)
		return 1;
	unsigned entries = read_u16(tiff + ifd, big);
	for (unsigned i = 0; i < entries; i++) {
		size_t at = ifd + 2 + (size_t)i * 12;
		if (at + 12 > size)
			break;
		if (read_u16(tiff + at, big) != 0x0112)
			continue;
		unsigned type = read_u16(tiff + at + 2, big);
		unsigned value = type == 3   ? read_u16(tiff + at + 8, big)
				 : type == 4 ? read_u32(tiff + at + 8, big)
					     : 0;
		return value >= 1 && value <= 8 ? (int)value : 1;
	}
	return 1;
}

/* libjpeg reports fatal errors through error_exit; we jump back. */
struct jpeg_fail {
	struct jpeg_error_mgr mgr;
	jmp_buf jump;
	char message[JMSG_LENGTH_MAX];
};

static void jpeg_on_error(j_common_ptr cinfo)
{
	struct jpeg_fail *fail = (struct jpeg_fail *)cinfo->err;
	(*cinfo->err->format_message)(cinfo, fail->message);
	longjmp(fail->jump, 1);
}

static void jpeg_on_message(j_common_ptr cinfo, int level)
{
	(void)cinfo; /* warnings (corrupt data) are tolerated, as cv2 does */
	(void)level;
}

static void orient_size(int orientation, int *width, int *height)
{
	if (orientation >= 5) {
		int swap = *width;
		*width = *height;
		*height = swap;
	}
}

/* Header of a JPEG: size, EXIF orientation; decode into out when non-NULL. */
static int jpeg_read(const uint8_t *data, size_t len, struct tr_data_image_info *info,
		     struct tr_image *out, struct ut_err *err)
{
	struct jpeg_decompress_struct cinfo;
	struct jpeg_fail fail;
	uint8_t *volatile pixels = NULL;
	cinfo.err = jpeg_std_error(&fail.mgr);
	fail.mgr.error_exit = jpeg_on_error;
	fail.mgr.emit_message = jpeg_on_message;
	if (setjmp(fail.jump)) {
		jpeg_destroy_decompress(&cinfo);
		free(pixels);
		return ut_err_set(err, "corrupt JPEG: %s", fail.message);
	}
	jpeg_create_decompress(&cinfo);
	jpeg_mem_src(&cinfo, data, (unsigned long)len);
	jpeg_save_markers(&cinfo, JPEG_APP0 + 1, 0xFFFF);
	jpeg_read_header(&cinfo, TRUE);
	info->format = TR_DATA_FMT_JPEG;
	info->orientation = 1;
	for (jpeg_saved_marker_ptr m = cinfo.marker_list; m != NULL; m = m->next)
		if (m->marker == JPEG_APP0 + 1 &&
		    (info->orientation = exif_orientation(m->data, m->data_length)) != 1)
			break;
	info->width = (int)cinfo.image_width;
	info->height = (int)cinfo.image_height;
	orient_size(info->orientation, &info->width, &info->height);
	info->jpeg_no_eoi = len < 2 || data[len - 2] != 0xFF || data[len - 1] != 0xD9;
	if (out == NULL) {
		jpeg_destroy_decompress(&cinfo);
		return 0;
	}
	bool cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
	cinfo.out_color_space = cmyk ? JCS_CMYK : JCS_EXT_BGR;
	jpeg_start_decompress(&cinfo);
	size_t w = cinfo.output_width, h = cinfo.output_height,
	       ch = (size_t)cinfo.output_components;
	if (w == 0 || h == 0 || w > SIZE_MAX / 4 / h) {
		snprintf(fail.message, sizeof(fail.message), "image size %zux%zu", w, h);
		longjmp(fail.jump, 1);
	}
	pixels = malloc(w * h * ch);
	if (pixels == NULL) {
		jpeg_destroy_decompress(&cinfo);
		return ut_err_set(err, "out of memory");
	}
	while (cinfo.output_scanline < h) {
		JSAMPROW row = pixels + cinfo.output_scanline * w * ch;
		jpeg_read_scanlines(&cinfo, &row, 1);
	}
	jpeg_finish_decompress(&cinfo);
	jpeg_destroy_decompress(&cinfo);
	if (cmyk) { /* Adobe inverted CMYK, as OpenCV converts it */
		for (size_t i = 0; i < w * h; i++) {
			const uint8_t *s = pixels + 4 * i;
			uint8_t *d = pixels + 3 * i;
			unsigned c = s[0], m = s[1], y = s[2], k = s[3];
			d[0] = (uint8_t)(y * k / 255);
			d[1] = (uint8_t)(m * k / 255);
			d[2] = (uint8_t)(c * k / 255);
		}
	}
	out->width = (int)w;
	out->height = (int)h;
	out->data = pixels;
	return 0;
}

/* libpng reads from memory through this cursor. */
struct png_source {
	const uint8_t *data;
	size_t len, at;
};

static void png_on_read(png_structp png, png_bytep dst, size_t n)
{
	struct png_source *src = png_get_io_ptr(png);
	if (src->len - src->at < n)
		png_error(png, "truncated PNG");
	memcpy(dst, src->data + src->at, n);
	src->at += n;
}

static void png_on_warning(png_structp png, png_const_charp msg)
{
	(void)png;
	(void)msg;
}

static void png_on_error(png_structp png, png_const_charp msg)
{
	char *slot = png_get_error_ptr(png);
	snprintf(slot, 256, "%s", msg);
	png_longjmp(png, 1);
}

static int png_read(const uint8_t *data, size_t len, struct tr_data_image_info *info,
		    struct tr_image *out, struct ut_err *err)
{
	char message[256] = "";
	struct png_source src = {data, len, 0};
	png_structp png =
	    png_create_read_struct(PNG_LIBPNG_VER_STRING, message, png_on_error, png_on_warning);
	png_infop pinfo = png ? png_create_info_struct(png) : NULL;
	png_bytep *volatile rows = NULL;
	uint8_t *volatile pixels = NULL;
	if (pinfo == NULL) {
		png_destroy_read_struct(&png, NULL, NULL);
		return ut_err_set(err, "out of memory");
	}
	if (setjmp(png_jmpbuf(png))) {
		png_destroy_read_struct(&png, &pinfo, NULL);
		free(rows);
		free(pixels);
		return ut_err_set(err, "corrupt PNG: %s", message);
	}
	png_set_read_fn(png, &src, png_on_read);
	png_set_user_limits(png, 1 << 20, 1 << 20);
	png_read_info(png, pinfo);
	info->format = TR_DATA_FMT_PNG;
	info->orientation = 1;
	info->width = (int)png_get_image_width(png, pinfo);
	info->height = (int)png_get_image_height(png, pinfo);
	if (out == NULL) {
		png_destroy_read_struct(&png, &pinfo, NULL);
		return 0;
	}
	int color = png_get_color_type(png, pinfo);
	if (png_get_bit_depth(png, pinfo) == 16)
		png_set_strip_16(png);
	if (color == PNG_COLOR_TYPE_PALETTE)
		png_set_palette_to_rgb(png);
	if (color == PNG_COLOR_TYPE_GRAY || color == PNG_COLOR_TYPE_GRAY_ALPHA) {
		png_set_expand_gray_1_2_4_to_8(png);
		png_set_gray_to_rgb(png);
	}
	png_set_strip_alpha(png);
	png_set_bgr(png);
	png_set_interlace_handling(png);
	png_read_update_info(png, pinfo);
	size_t w = (size_t)info->width, h = (size_t)info->height;
	if (png_get_rowbytes(png, pinfo) != w * 3)
		png_error(png, "unexpected row size after conversion");
	pixels = malloc(w * h * 3);
	rows = malloc(h * sizeof(*rows));
	if (pixels == NULL || rows == NULL)
		png_error(png, "out of memory");
	for (size_t y = 0; y < h; y++)
		rows[y] = pixels + y * w * 3;
	png_read_image(png, rows);
	png_read_end(png, NULL);
	png_destroy_read_struct(&png, &pinfo, NULL);
	free(rows);
	out->width = (int)w;
	out->height = (int)h;
	out->data = pixels;
	return 0;
}

/*
 * A minimal BMP reader: BITMAPINFOHEADER or later (and the OS/2 12-byte
 * core header), uncompressed 8-bit palette, 24-bit, and 32-bit (BI_RGB or
 * BI_BITFIELDS with the usual masks, alpha dropped); bottom-up or top-down.
 */
static int bmp_read(const uint8_t *data, size_t len, struct tr_data_image_info *info,
		    struct tr_image *out, struct ut_err *err)
{
	if (len < 26)
		return ut_err_set(err, "corrupt BMP: truncated header");
	uint32_t offset = read_u32(data + 10, false), header = read_u32(data + 14, false);
	int64_t width, height;
	unsigned bpp, compression = 0, colors = 0;
	if (header == 12) {
		width = read_u16(data + 18, false);
		height = read_u16(data + 20, false);
		bpp = read_u16(data + 24, false);
	} else if (header >= 40 && len >= 54) {
		width = (int32_t)read_u32(data + 18, false);
		height = (int32_t)read_u32(data + 22, false);
		bpp = read_u16(data + 28, false);
		compression = read_u32(data + 30, false);
		colors = read_u32(data + 46, false);
	} else {
		return ut_err_set(err, "corrupt BMP: unknown header size %u", (unsigned)header);
	}
	bool top_down = height < 0;
	height = top_down ? -height : height;
	if (width <= 0 || height <= 0 || width > (1 << 20) || height > (1 << 20))
		return ut_err_set(err, "corrupt BMP: size %lldx%lld", (long long)width,
				  (long long)height);
	if (!(bpp == 24 || bpp == 32 || bpp == 8) ||
	    !(compression == 0 || (compression == 3 && bpp == 32)))
		return ut_err_set(err, "unsupported BMP: %u bits, compression %u", bpp,
				  compression);
	if (compression == 3 &&
	    (len < 66 || read_u32(data + 54, false) != 0xFF0000 ||
	     read_u32(data + 58, false) != 0xFF00 || read_u32(data + 62, false) != 0xFF))
		return ut_err_set(err, "unsupported BMP: 32-bit masks other than BGRA");
	size_t stride = (((size_t)width * bpp + 31) / 32) * 4;
	size_t palette = 14 + (size_t)header, entries = colors ? colors : 256;
	if (offset > len || (size_t)height > (len - offset) / stride ||
	    (bpp == 8 && (header == 12 || entries > 256 || palette + entries * 4 > offset)))
		return ut_err_set(err, "corrupt BMP: pixel data out of the file");
	info->format = TR_DATA_FMT_BMP;
	info->orientation = 1;
	info->width = (int)width;
	info->height = (int)height;
	if (out == NULL)
		return 0;
	uint8_t *pixels = malloc((size_t)width * (size_t)height * 3);
	if (pixels == NULL)
		return ut_err_set(err, "out of memory");
	for (int64_t y = 0; y < height; y++) {
		const uint8_t *src =
		    data + offset + (size_t)(top_down ? y : height - 1 - y) * stride;
		uint8_t *dst = pixels + (size_t)y * (size_t)width * 3;
		for (int64_t x = 0; x < width; x++, dst += 3) {
			const uint8_t *p =
			    bpp == 8 ? data + palette + (size_t)src[x] * 4 : src + x * (bpp / 8);
			if (bpp == 8 && src[x] >= entries) {
				free(pixels);
				return ut_err_set(err, "corrupt BMP: palette index %u out of range",
						  src[x]);
			}
			dst[0] = p[0];
			dst[1] = p[1];
			dst[2] = p[2];
		}
	}
	out->width = (int)width;
	out->height = (int)height;
	out->data = pixels;
	return 0;
}

/* The decoder for data's signature (content, not the file extension). */
static int read_any(const uint8_t *data, size_t len, struct tr_data_image_info *info,
		    struct tr_image *out, struct ut_err *err)
{
	memset(info, 0, sizeof(*info));
	if (out != NULL)
		*out = (struct tr_image){0, 0, NULL};
	if (len >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF)
		return jpeg_read(data, len, info, out, err);
	if (len >= 8 && memcmp(data, "\x89PNG\r\n\x1a\n", 8) == 0)
		return png_read(data, len, info, out, err);
	if (len >= 2 && data[0] == 'B' && data[1] == 'M')
		return bmp_read(data, len, info, out, err);
	return ut_err_set(err, "unsupported or corrupt image (not JPEG, PNG or BMP)");
}

int tr_data_image_probe(const uint8_t *data, size_t len, struct tr_data_image_info *info,
			struct ut_err *err)
{
	return read_any(data, len, info, NULL, err);
}

/* Apply EXIF orientation 2..8 (the stored image shown the right way up). */
static int orient_image(struct tr_image *im, int orientation, struct ut_err *err)
{
	if (orientation <= 1)
		return 0;
	int w = im->width, h = im->height, ow = w, oh = h;
	orient_size(orientation, &ow, &oh);
	uint8_t *pixels = malloc((size_t)w * (size_t)h * 3);
	if (pixels == NULL)
		return ut_err_set(err, "out of memory");
	for (int y = 0; y < oh; y++) {
		for (int x = 0; x < ow; x++) {
			int sx, sy;
			switch (orientation) {
			case 2:
				sx = w - 1 - x;
				sy = y;
				break;
			case 3:
				sx = w - 1 - x;
				sy = h - 1 - y;
				break;
			case 4:
				sx = x;
				sy = h - 1 - y;
				break;
			case 5:
				sx = y;
				sy = x;
				break;
			case 6:
				sx = y;
				sy = h - 1 - x;
				break;
			case 7:
				sx = w - 1 - y;
				sy = h - 1 - x;
				break;
			default:
				sx = w - 1 - y;
				sy = x;
				break; /* 8 */
			}
			memcpy(pixels + ((size_t)y * ow + x) * 3,
			       im->data + ((size_t)sy * w + sx) * 3, 3);
		}
	}
	free(im->data);
	im->data = pixels;
	im->width = ow;
	im->height = oh;
	return 0;
}

int tr_data_image_decode(const uint8_t *data, size_t len, struct tr_image *out, struct ut_err *err)
{
	struct tr_data_image_info info;
	if (read_any(data, len, &info, out, err) != 0)
		return -1;
	if (orient_image(out, info.orientation, err) != 0) {
		free(out->data);
		*out = (struct tr_image){0, 0, NULL};
		return -1;
	}
	return 0;
}

int tr_data_image_load(const char *path, struct tr_image *out, struct ut_err *err)
{
	char *data = NULL;
	size_t len = 0;
	*out = (struct tr_image){0, 0, NULL};
	if (ut_read_file(path, &data, &len, err) != 0)
		return -1;
	struct ut_err inner;
	int rc = tr_data_image_decode((const uint8_t *)data, len, out, &inner);
	free(data);
	if (rc != 0)
		return ut_err_set(err, "%s: %s", path, inner.msg);
	return 0;
}

/* ------------------------------------------------------------------ */
/* Splits: listing, checking, caching                                 */
/* ------------------------------------------------------------------ */

/* YOLOv5 v7.0 IMG_FORMATS; only jpg/jpeg/png/bmp decode here. */
static bool is_image_name(const char *path)
{
	static const char *const formats[] = {"bmp", "dng", "jpeg", "jpg",  "mpo",
					      "png", "tif", "tiff", "webp", "pfm"};
	const char *dot = strrchr(path, '.');
	if (dot == NULL)
		return false;
	for (size_t i = 0; i < UT_ARRAY_LEN(formats); i++)
		if (strcasecmp(dot + 1, formats[i]) == 0)
			return true;
	return false;
}

struct path_list {
	char **paths;
	int n, cap;
};

/* glob("dir/ ** / *.*", recursive=True): hidden names are skipped as glob does. */
static int list_dir(const char *dir, struct path_list *list, struct ut_err *err)
{
	DIR *d = opendir(dir);
	if (d == NULL)
		return ut_err_set(err, "%s: %s", dir, strerror(errno));
	int rc = 0;
	for (struct dirent *e = readdir(d); e != NULL && rc == 0; e = readdir(d)) {
		if (e->d_name[0] == '.')
			continue;
		struct ut_buf path = {0};
		if (ut_buf_printf(&path, "%s/%s", dir, e->d_name) != 0) {
			rc = ut_err_set(err, "out of memory");
			break;
		}
		struct stat st;
		if (stat(path.data, &st) == 0 && S_ISDIR(st.st_mode))
			rc = list_dir(path.data, list, err);
		else if (is_image_name(path.data) &&
			 push_str(&list->paths, &list->n, &list->cap, path.data) == 0)
			path.data = NULL;
		else if (is_image_name(path.data))
			rc = ut_err_set(err, "out of memory");
		ut_buf_free(&path);
	}
	closedir(d);
	return rc;
}

/* A .txt (or any file) of image paths, one a line, relative to its folder. */
static int list_file(const char *file, struct path_list *list, struct ut_err *err)
{
	char *text;
	size_t len;
	if (ut_read_file(file, &text, &len, err) != 0)
		return -1;
	char *dir = dir_of(file);
	int rc = dir == NULL ? ut_err_set(err, "out of memory") : 0;
	char *save = NULL;
	for (char *line = strtok_r(text, "\n", &save); line != NULL && rc == 0;
	     line = strtok_r(NULL, "\n", &save)) {
		size_t n = strlen(line);
		while (n > 0 && (is_space(line[n - 1]) || line[n - 1] == ' '))
			line[--n] = '\0';
		while (*line == ' ' || *line == '\t')
			line++;
		if (*line == '\0' || !is_image_name(line))
			continue;
		if (push_str(&list->paths, &list->n, &list->cap, join_norm(dir, line)) != 0)
			rc = ut_err_set(err, "out of memory");
	}
	free(dir);
	free(text);
	return rc;
}

static int compare_paths(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* 64-bit FNV-1a, enough to notice a changed file list. */
static uint64_t fnv(uint64_t h, const void *data, size_t len)
{
	const uint8_t *p = data;
	for (size_t i = 0; i < len; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return h;
}

static uint64_t hash_file(uint64_t h, const char *path)
{
	struct stat st;
	int64_t stamp[3] = {-1, -1, -1};
	if (stat(path, &st) == 0) {
		stamp[0] = (int64_t)st.st_size;
		stamp[1] = (int64_t)st.st_mtim.tv_sec;
		stamp[2] = (int64_t)st.st_mtim.tv_nsec;
	}
	h = fnv(h, path, strlen(path) + 1);
	return fnv(h, stamp, sizeof(stamp));
}

/* The cache key: format version, nc, every image and label path with its stat. */
static uint64_t split_key(char **images, char **labels, int n, int nc)
{
	uint64_t h = 0xcbf29ce484222325ull;
	uint32_t head[3] = {CACHE_VERSION, (uint32_t)nc, (uint32_t)n};
	h = fnv(h, head, sizeof(head));
	for (int i = 0; i < n; i++)
		h = hash_file(hash_file(h, images[i]), labels[i]);
	return h;
}

/* Path(labels[0]).parent with ".yecache": YOLOv5 keeps its own ".cache" beside it. */
static char *cache_path_for(const char *label_path)
{
	char *dir = dir_of(label_path);
	if (dir == NULL)
		return NULL;
	char *base = strrchr(dir, '/');
	base = base ? base + 1 : dir;
	char *dot = strrchr(base, '.');
	if (dot != NULL && dot != base && dot[1] != '\0')
		*dot = '\0';
	struct ut_buf out = {0};
	int rc = ut_buf_printf(&out, "%s.yecache", dir);
	free(dir);
	return rc == 0 ? out.data : NULL;
}

static int add_message(struct tr_data_split *split, char *message)
{
	int cap = split->n_messages; /* grow one at a time: bad files are few */
	char **bigger = realloc(split->messages, ((size_t)cap + 1) * sizeof(char *));
	if (bigger == NULL || message == NULL) {
		if (bigger != NULL)
			split->messages = bigger;
		free(message);
		return -1;
	}
	split->messages = bigger;
	split->messages[split->n_messages++] = message;
	return 0;
}

/* How much of an image file the header check reads first. */
#define PROBE_BYTES (256 * 1024)

/* Read the head of a file and its last two bytes (for the JPEG end marker). */
static int probe_file(const char *path, struct tr_data_image_info *info, struct ut_err *err)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		return ut_err_set(err, "%s", strerror(errno));
	uint8_t *head = malloc(PROBE_BYTES);
	size_t n = head ? fread(head, 1, PROBE_BYTES, f) : 0;
	uint8_t tail[2] = {0, 0};
	bool whole = n < PROBE_BYTES;
	int rc;
	if (head == NULL) {
		rc = ut_err_set(err, "out of memory");
	} else if (whole) {
		rc = tr_data_image_probe(head, n, info, err);
	} else {
		rc = tr_data_image_probe(head, n, info, err);
		if (rc != 0) { /* headers longer than the probe: read it all */
			fclose(f);
			free(head);
			char *all;
			size_t len;
			if (ut_read_file(path, &all, &len, err) != 0)
				return -1;
			rc = tr_data_image_probe((const uint8_t *)all, len, info, err);
			free(all);
			return rc;
		}
		if (fseek(f, -2, SEEK_END) == 0 && fread(tail, 1, 2, f) == 2)
			info->jpeg_no_eoi = info->format == TR_DATA_FMT_JPEG &&
					    !(tail[0] == 0xFF && tail[1] == 0xD9);
	}
	free(head);
	fclose(f);
	return rc;
}

/*
 * verify_image_label for one pair. Returns 1 when the image is usable (item
 * filled), 0 when it is skipped; -1 only when out of memory. message gets
 * the text to report, if any.
 */
static int verify_pair(const char *image, const char *label, int nc, struct tr_data_item *item,
		       struct tr_data_summary *sum, struct ut_buf *message)
{
	struct ut_err why;
	struct tr_data_image_info info;
	memset(item, 0, sizeof(*item));
	if (probe_file(image, &info, &why) != 0) {
		sum->corrupt++;
		return ut_buf_printf(message, "%s: ignoring corrupt image: %s", image, why.msg) ? -1
												: 0;
	}
	if (info.width < MIN_IMAGE_SIDE || info.height < MIN_IMAGE_SIDE) {
		sum->corrupt++;
		return ut_buf_printf(message,
				     "%s: ignoring corrupt image: image size (%d, %d) <10 pixels",
				     image, info.width, info.height)
			   ? -1
			   : 0;
	}
	if (info.jpeg_no_eoi &&
	    ut_buf_printf(message, "%s: corrupt JPEG (no end marker), kept", image) != 0)
		return -1;
	char *text = NULL;
	size_t len = 0;
	struct stat st;
	if (stat(label, &st) != 0 || !S_ISREG(st.st_mode)) {
		sum->missing++;
	} else {
		sum->found++;
		if (ut_read_file(label, &text, &len, &why) != 0 ||
		    tr_data_labels_parse(text, len, nc, &item->labels, &why) != 0) {
			free(text);
			sum->corrupt++;
			message->len = 0;
			return ut_buf_printf(message, "%s: ignoring corrupt image/label: %s: %s",
					     image, label, why.msg)
				   ? -1
				   : 0;
		}
		free(text);
		if (item->labels.n_labels == 0)
			sum->empty++;
		if (item->labels.duplicates > 0) {
			sum->duplicates++;
			if (ut_buf_printf(message, "%s%s: %d duplicate labels removed",
					  message->len ? "; " : "", image,
					  item->labels.duplicates) != 0)
				return -1;
		}
	}
	item->width = info.width;
	item->height = info.height;
	sum->labels += item->labels.n_labels;
	return 1;
}

/* Cache layout (host byte order, checked by the magic and a marker):
 *   magic[8] u32 version u32 0x01020304 u64 key
 *   i32 images found missing empty corrupt duplicates, i64 labels
 *   i32 n_items n_messages
 *   per item: i32 index (into the sorted image list) width height n_labels
 *             has_segments duplicates; n_labels x {i32 cls, f32 x y w h};
 *             with segments: (n_labels + 1) i32 starts, 2*starts[n] f32
 *   per message: u32 length, bytes
 */
struct cache_reader {
	const uint8_t *data;
	size_t len, at;
};

static int take(struct cache_reader *r, void *dst, size_t n)
{
	if (r->len - r->at < n)
		return -1;
	memcpy(dst, r->data + r->at, n);
	r->at += n;
	return 0;
}

static int take_i32(struct cache_reader *r, int lo, int hi, int *out)
{
	int32_t v;
	if (take(r, &v, sizeof(v)) != 0 || v < lo || v > hi)
		return -1;
	*out = v;
	return 0;
}

static int cache_read_item(struct cache_reader *r, char **images, char **labels, int n_images,
			   struct tr_data_item *item)
{
	int index, has_seg, n;
	memset(item, 0, sizeof(*item));
	if (take_i32(r, 0, n_images - 1, &index) != 0 ||
	    take_i32(r, 1, INT_MAX, &item->width) != 0 ||
	    take_i32(r, 1, INT_MAX, &item->height) != 0 || take_i32(r, 0, INT_MAX / 2, &n) != 0 ||
	    take_i32(r, 0, 1, &has_seg) != 0 ||
	    take_i32(r, 0, INT_MAX, &item->labels.duplicates) != 0)
		return -1;
	if ((size_t)n > (r->len - r->at) / sizeof(struct tr_data_label))
		return -1;
	item->image_path = dup_str(images[index]);
	item->label_path = dup_str(labels[index]);
	item->labels.n_labels = n;
	item->labels.labels = malloc((size_t)n * sizeof(struct tr_data_label) + 1);
	if (item->image_path == NULL || item->label_path == NULL || item->labels.labels == NULL ||
	    take(r, item->labels.labels, (size_t)n * sizeof(struct tr_data_label)) != 0)
		return -1;
	if (!has_seg)
		return 0;
	item->labels.seg_start = malloc(((size_t)n + 1) * sizeof(int));
	if (item->labels.seg_start == NULL ||
	    take(r, item->labels.seg_start, ((size_t)n + 1) * sizeof(int)) != 0)
		return -1;
	for (int i = 0; i < n; i++)
		if (item->labels.seg_start[0] != 0 ||
		    item->labels.seg_start[i + 1] <= item->labels.seg_start[i])
			return -1;
	size_t floats = (size_t)item->labels.seg_start[n] * 2;
	if (floats > (r->len - r->at) / sizeof(float))
		return -1;
	item->labels.seg_xy = malloc(floats * sizeof(float) + 1);
	return item->labels.seg_xy == NULL ||
		       take(r, item->labels.seg_xy, floats * sizeof(float)) != 0
		   ? -1
		   : 0;
}

static void free_items(struct tr_data_split *split)
{
	for (int i = 0; i < split->n_items; i++) {
		free(split->items[i].image_path);
		free(split->items[i].label_path);
		tr_data_labels_free(&split->items[i].labels);
	}
	free(split->items);
	split->items = NULL;
	split->n_items = 0;
	free_strv(split->messages, split->n_messages);
	split->messages = NULL;
	split->n_messages = 0;
}

/* Fill split from the cache file when it matches key; 0 on a hit. */
static int cache_load(struct tr_data_split *split, uint64_t key, char **images, char **labels,
		      int n_images)
{
	char *data;
	size_t len;
	struct ut_err ignored;
	if (ut_read_file(split->cache_path, &data, &len, &ignored) != 0)
		return -1;
	struct cache_reader r = {(const uint8_t *)data, len, 0};
	char magic[8];
	uint32_t version, marker;
	uint64_t stored;
	int32_t counts[6];
	int64_t n_labels;
	int n_items, n_messages;
	int rc = -1;
	if (take(&r, magic, 8) != 0 || memcmp(magic, CACHE_MAGIC, 8) != 0 ||
	    take(&r, &version, 4) != 0 || version != CACHE_VERSION || take(&r, &marker, 4) != 0 ||
	    marker != 0x01020304u || take(&r, &stored, 8) != 0 || stored != key ||
	    take(&r, counts, sizeof(counts)) != 0 || take(&r, &n_labels, 8) != 0 ||
	    take_i32(&r, 0, n_images, &n_items) != 0 || take_i32(&r, 0, n_images, &n_messages) != 0)
		goto done;
	split->items = calloc((size_t)n_items + 1, sizeof(*split->items));
	if (split->items == NULL)
		goto done;
	for (int i = 0; i < n_items; i++) {
		split->n_items = i + 1;
		if (cache_read_item(&r, images, labels, n_images, &split->items[i]) != 0)
			goto done;
	}
	for (int i = 0; i < n_messages; i++) {
		uint32_t n;
		if (take(&r, &n, 4) != 0 || n > r.len - r.at)
			goto done;
		if (add_message(split, dup_range((const char *)r.data + r.at, n)) != 0)
			goto done;
		r.at += n;
	}
	if (r.at != r.len)
		goto done;
	split->summary = (struct tr_data_summary){counts[0], counts[1], counts[2],     counts[3],
						  counts[4], counts[5], (long)n_labels};
	rc = 0;
done:
	if (rc != 0)
		free_items(split);
	free(data);
	return rc;
}

static int cache_save(const struct tr_data_split *split, uint64_t key, const int *index,
		      struct ut_err *err)
{
	struct ut_buf buf = {0};
	const struct tr_data_summary *s = &split->summary;
	uint32_t head[2] = {CACHE_VERSION, 0x01020304u};
	int32_t counts[6] = {s->images, s->found, s->missing, s->empty, s->corrupt, s->duplicates};
	int64_t n_labels = s->labels;
	int32_t sizes[2] = {split->n_items, split->n_messages};
	int rc = ut_buf_append(&buf, CACHE_MAGIC, 8) |
		 ut_buf_append(&buf, (const char *)head, sizeof(head)) |
		 ut_buf_append(&buf, (const char *)&key, 8) |
		 ut_buf_append(&buf, (const char *)counts, sizeof(counts)) |
		 ut_buf_append(&buf, (const char *)&n_labels, 8) |
		 ut_buf_append(&buf, (const char *)sizes, 8);
	for (int i = 0; i < split->n_items && rc == 0; i++) {
		const struct tr_data_labels *lb = &split->items[i].labels;
		int32_t fields[6] = {index[i],	   split->items[i].width, split->items[i].height,
				     lb->n_labels, lb->seg_start != NULL, lb->duplicates};
		rc = ut_buf_append(&buf, (const char *)fields, sizeof(fields)) |
		     ut_buf_append(&buf, (const char *)lb->labels,
				   (size_t)lb->n_labels * sizeof(*lb->labels));
		if (lb->seg_start != NULL && rc == 0)
			rc = ut_buf_append(&buf, (const char *)lb->seg_start,
					   ((size_t)lb->n_labels + 1) * sizeof(int)) |
			     ut_buf_append(&buf, (const char *)lb->seg_xy,
					   (size_t)lb->seg_start[lb->n_labels] * 2 * sizeof(float));
	}
	for (int i = 0; i < split->n_messages && rc == 0; i++) {
		uint32_t n = (uint32_t)strlen(split->messages[i]);
		rc = ut_buf_append(&buf, (const char *)&n, 4) |
		     ut_buf_append(&buf, split->messages[i], n);
	}
	if (rc != 0) {
		ut_buf_free(&buf);
		return ut_err_set(err, "%s: out of memory", split->cache_path);
	}
	rc = ut_write_file_atomic(split->cache_path, buf.data ? buf.data : "", buf.len, err);
	ut_buf_free(&buf);
	return rc;
}

/* Check every pair; index[i] is item i's position in the image list. */
static int verify_all(struct tr_data_split *split, char **images, char **labels, int n, int nc,
		      int *index, struct ut_err *err)
{
	split->items = calloc((size_t)n, sizeof(*split->items));
	if (split->items == NULL)
		return ut_err_set(err, "out of memory");
	for (int i = 0; i < n; i++) {
		struct ut_buf message = {0};
		struct tr_data_item *item = &split->items[split->n_items];
		int rc = verify_pair(images[i], labels[i], nc, item, &split->summary, &message);
		if (rc == 1) {
			item->image_path = dup_str(images[i]);
			item->label_path = dup_str(labels[i]);
			index[split->n_items++] = i;
			if (item->image_path == NULL || item->label_path == NULL)
				rc = -1;
		}
		if (rc >= 0 && message.len > 0 && add_message(split, message.data) == 0)
			message.data = NULL;
		else if (rc >= 0 && message.len > 0)
			rc = -1;
		ut_buf_free(&message);
		if (rc < 0)
			return ut_err_set(err, "out of memory");
	}
	return 0;
}

static int list_sources(const char *const *sources, int n_sources, struct path_list *list,
			struct ut_err *err)
{
	for (int s = 0; s < n_sources; s++) {
		struct stat st;
		if (stat(sources[s], &st) != 0)
			return ut_err_set(err, "%s does not exist", sources[s]);
		if ((S_ISDIR(st.st_mode) ? list_dir(sources[s], list, err)
					 : list_file(sources[s], list, err)) != 0)
			return -1;
	}
	if (list->n == 0)
		return ut_err_set(err, "no images found in %s%s",
				  n_sources ? sources[0] : "(no source)",
				  n_sources > 1 ? " and the other sources" : "");
	qsort(list->paths, (size_t)list->n, sizeof(char *), compare_paths);
	return 0;
}

int tr_data_split_open(const char *const *sources, int n_sources,
		       const struct tr_data_open_opts *opts, struct tr_data_split *out,
		       struct ut_err *err)
{
	memset(out, 0, sizeof(*out));
	struct path_list images = {0};
	char **labels = NULL;
	int *index = NULL;
	int rc = list_sources(sources, n_sources, &images, err);
	if (rc == 0 && ((labels = calloc((size_t)images.n, sizeof(char *))) == NULL ||
			(index = calloc((size_t)images.n, sizeof(int))) == NULL))
		rc = ut_err_set(err, "out of memory");
	for (int i = 0; rc == 0 && i < images.n; i++)
		if ((labels[i] = tr_data_label_path(images.paths[i])) == NULL)
			rc = ut_err_set(err, "out of memory");
	if (rc == 0 && (out->cache_path = cache_path_for(labels[0])) == NULL)
		rc = ut_err_set(err, "out of memory");
	uint64_t key = rc == 0 ? split_key(images.paths, labels, images.n, opts->nc) : 0;
	if (rc == 0 && opts->use_cache &&
	    cache_load(out, key, images.paths, labels, images.n) == 0) {
		out->cache_hit = true;
	} else if (rc == 0) {
		out->summary.images = images.n;
		rc = verify_all(out, images.paths, labels, images.n, opts->nc, index, err);
		struct ut_err cache_err;
		if (rc == 0 && opts->use_cache && out->n_items > 0) {
			if (cache_save(out, key, index, &cache_err) == 0)
				out->cache_written = true;
			else
				ut_log(UT_LOG_WARN, "cache not written (%s)", cache_err.msg);
		}
	}
	for (int i = 0; rc == 0 && i < out->n_messages; i++)
		ut_log(UT_LOG_WARN, "%s", out->messages[i]);
	if (rc == 0 && out->n_items == 0)
		rc = ut_err_set(err, "%s: no usable images (%d listed, %d corrupt)",
				n_sources ? sources[0] : "?", out->summary.images,
				out->summary.corrupt);
	if (rc == 0 && out->summary.found == 0)
		ut_log(UT_LOG_WARN, "%s: no labels found", sources[0]);
	free_strv(images.paths, images.n);
	free_strv(labels, images.n);
	free(index);
	if (rc != 0)
		tr_data_split_free(out);
	return rc;
}

void tr_data_split_free(struct tr_data_split *split)
{
	free_items(split);
	free(split->cache_path);
	memset(split, 0, sizeof(*split));
}

void tr_data_summary_format(const struct tr_data_summary *summary, char *buf, size_t size)
{
	snprintf(buf, size, "%d found, %d missing, %d empty, %d corrupt", summary->found,
		 summary->missing, summary->empty, summary->corrupt);
}
