/*
 * meta.c - the hyperparameter tables (meta_table.h, meta_ultralytics.h)
 * and their YAML files: hyp.yaml read and written as YOLOv5 (or the
 * Ultralytics Tuner) does, user meta.yaml overrides of gains and bounds, and
 * the restriction of mutation to a set of keys. A reader accepts the keys
 * of one space.
 *
 * YAML is read with libyaml's event API in one pass that stops at the first
 * error, so only the shapes these files use are understood: a top-level
 * mapping of scalar keys whose values are numbers (hyp.yaml) or short lists
 * and mappings of numbers (meta.yaml); aliases are refused. Nothing is
 * changed in the caller's struct until the whole text has been accepted.
 * Every error is one line naming source:line and the key.
 */
#include "meta.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

/* A hyp.yaml without `anchors` means YOLOv5's default of 3 anchors per cell. */
#define META_ANCHORS_DEFAULT 3.0

struct meta_row {
	const char *name, *doc;
	struct meta_bound bound;
};

static const struct meta_row meta_rows[META_COUNT] = {
#define META_ROW(name, gain, lower, upper, doc) {#name, doc, {gain, lower, upper}},
    META_HYPS(META_ROW)
#undef META_ROW
};

/* A row of the Ultralytics space. */
struct meta_ul_row {
	int key;
	const char *doc;
	struct meta_bound bound;
	double base;
};

static const struct meta_ul_row meta_ul_rows[] = {
#define META_UL_ROW(name, gain, lower, upper, base, doc)                                           \
	{META_##name, doc, {gain, lower, upper}, base},
    META_UL_HYPS(META_UL_ROW)
#undef META_UL_ROW
};
#define META_UL_COUNT ((int)UT_ARRAY_LEN(meta_ul_rows))

static const char *const meta_ul_only_names[META_ALL - META_COUNT] = {
#define META_UL_NAME(name) #name,
    META_UL_ONLY(META_UL_NAME)
#undef META_UL_NAME
};

/* The key lists of the spaces, filled from the tables. */
static const int *space_keys(enum meta_space space, int *count)
{
	static const int yolov5[META_COUNT] = {
#define META_V5_KEY(name, gain, lower, upper, doc) META_##name,
	    META_HYPS(META_V5_KEY)
#undef META_V5_KEY
	};
	static const int ultralytics[] = {
#define META_UL_KEY(name, gain, lower, upper, base, doc) META_##name,
	    META_UL_HYPS(META_UL_KEY)
#undef META_UL_KEY
	};
	if (space == META_SPACE_ULTRALYTICS) {
		*count = (int)UT_ARRAY_LEN(ultralytics);
		return ultralytics;
	}
	*count = META_COUNT;
	return yolov5;
}

static const char *const space_names[META_SPACE_COUNT] = {"yolov5", "ultralytics"};

const char *meta_space_name(enum meta_space space)
{
	return space >= 0 && space < META_SPACE_COUNT ? space_names[space] : "?";
}

int meta_space_parse(const char *name, enum meta_space *out)
{
	for (int s = 0; s < META_SPACE_COUNT; s++) {
		if (name != NULL && strcmp(name, space_names[s]) == 0) {
			*out = (enum meta_space)s;
			return 0;
		}
	}
	return -1;
}

int meta_space_keys(enum meta_space space, const int **keys)
{
	int count;
	*keys = space_keys(space, &count);
	return count;
}

int meta_space_find(enum meta_space space, const char *name)
{
	const int *keys;
	int count = meta_space_keys(space, &keys);
	int k = meta_find(name);
	for (int i = 0; k >= 0 && i < count; i++)
		if (keys[i] == k)
			return k;
	return -1;
}

enum meta_space meta_hyp_space(const struct meta_hyp *hyp)
{
	return isnan(hyp->v[META_obj]) ? META_SPACE_ULTRALYTICS : META_SPACE_YOLOV5;
}

void meta_hyp_ultralytics_base(struct meta_hyp *hyp)
{
	for (int k = 0; k < META_ALL; k++)
		hyp->v[k] = NAN;
	for (int i = 0; i < META_UL_COUNT; i++)
		hyp->v[meta_ul_rows[i].key] = meta_ul_rows[i].base;
}

const char *meta_name(int k)
{
	if (k >= 0 && k < META_COUNT)
		return meta_rows[k].name;
	return k >= META_COUNT && k < META_ALL ? meta_ul_only_names[k - META_COUNT] : NULL;
}

const char *meta_doc(int k)
{
	if (k >= 0 && k < META_COUNT)
		return meta_rows[k].doc;
	for (int i = 0; i < META_UL_COUNT; i++)
		if (meta_ul_rows[i].key == k)
			return meta_ul_rows[i].doc;
	return NULL;
}

int meta_find(const char *name)
{
	if (name == NULL)
		return -1;
	for (int k = 0; k < META_ALL; k++)
		if (strcmp(meta_name(k), name) == 0)
			return k;
	return -1;
}

void meta_table_default(struct meta_table *table)
{
	meta_table_default_space(table, META_SPACE_YOLOV5);
}

void meta_table_default_space(struct meta_table *table, enum meta_space space)
{
	memset(table, 0, sizeof(*table));
	table->space = space;
	if (space == META_SPACE_ULTRALYTICS) {
		for (int i = 0; i < META_UL_COUNT; i++)
			table->k[meta_ul_rows[i].key] = meta_ul_rows[i].bound;
		return;
	}
	for (int k = 0; k < META_COUNT; k++)
		table->k[k] = meta_rows[k].bound;
}

/* ---- reading YAML events ---------------------------------------------- */

/* libyaml's event parser over one text, with the event last read. */
struct meta_reader {
	yaml_parser_t parser;
	yaml_event_t event;
	int has_event;
	const char *text;
	size_t len;
	const char *source;
	struct ut_err *err;
	enum meta_space space; /* the keys it accepts */
};

/* What reader_key returns at the end of a mapping. */
#define META_END (-2)

static const char *source_name(const char *source)
{
	return source != NULL ? source : "<input>";
}

/* "SOURCE:LINE: " followed by the formatted message; always returns -1. */
__attribute__((format(printf, 3, 4))) static int fail_at(const struct meta_reader *reader,
							 unsigned long line, const char *fmt, ...)
{
	char what[UT_ERR_LEN];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	return ut_err_set(reader->err, "%s:%lu: %s", source_name(reader->source), line, what);
}

/* 1-based line where the current event starts. */
static unsigned long reader_line(const struct meta_reader *reader)
{
	return (unsigned long)reader->event.start_mark.line + 1;
}

/* 1-based line of byte offset in text (libyaml's reader errors give offsets). */
static unsigned long offset_line(const char *text, size_t len, size_t offset)
{
	unsigned long line = 1;
	for (size_t i = 0; i < offset && i < len; i++)
		line += text[i] == '\n';
	return line;
}

/* Describe a libyaml failure as "SOURCE:LINE: YAML syntax error: ...". */
static int syntax_error(const struct meta_reader *reader)
{
	const yaml_parser_t *parser = &reader->parser;
	const char *problem = parser->problem != NULL ? parser->problem : "unknown error";
	unsigned long line = (unsigned long)parser->problem_mark.line + 1;
	if (parser->error == YAML_MEMORY_ERROR)
		return ut_err_set(reader->err, "%s: out of memory reading YAML",
				  source_name(reader->source));
	if (parser->error == YAML_READER_ERROR)
		line = offset_line(reader->text, reader->len, parser->problem_offset);
	if (parser->context != NULL)
		return fail_at(reader, line, "YAML syntax error: %s (%s on line %lu)", problem,
			       parser->context, (unsigned long)parser->context_mark.line + 1);
	return fail_at(reader, line, "YAML syntax error: %s", problem);
}

/* Start libyaml's parser on the reader's text. */
static int reader_start(struct meta_reader *reader)
{
	if (!yaml_parser_initialize(&reader->parser))
		return ut_err_set(reader->err, "%s: out of memory reading YAML",
				  source_name(reader->source));
	yaml_parser_set_input_string(&reader->parser, (const unsigned char *)reader->text,
				     reader->len);
	return 0;
}

/*
 * Parse the whole text once, so that a syntax error anywhere is reported
 * as such rather than as a complaint about a value read before it.
 */
static int reader_check_syntax(struct meta_reader *reader)
{
	yaml_event_t event;
	for (;;) {
		if (!yaml_parser_parse(&reader->parser, &event))
			return syntax_error(reader);
		yaml_event_type_t type = event.type;
		yaml_event_delete(&event);
		if (type == YAML_STREAM_END_EVENT)
			return 0;
	}
}

/* Check text's syntax and leave the reader before its first event. */
static int reader_open(struct meta_reader *reader, const char *text, size_t len, const char *source,
		       struct ut_err *err)
{
	memset(reader, 0, sizeof(*reader));
	reader->source = source;
	reader->err = err;
	if (text == NULL)
		return ut_err_set(err, "%s: no text", source_name(source));
	reader->text = text;
	reader->len = len;
	if (reader_start(reader) != 0)
		return -1;
	int rc = reader_check_syntax(reader);
	yaml_parser_delete(&reader->parser);
	if (rc == 0)
		rc = reader_start(reader);
	reader->text = rc == 0 ? text : NULL;
	return rc;
}

/* Free the parser; safe after a failed reader_open. */
static void reader_close(struct meta_reader *reader)
{
	if (reader->has_event)
		yaml_event_delete(&reader->event);
	if (reader->text != NULL)
		yaml_parser_delete(&reader->parser);
}

/* Read the next event into reader->event. */
static int reader_next(struct meta_reader *reader)
{
	if (reader->has_event)
		yaml_event_delete(&reader->event);
	reader->has_event = yaml_parser_parse(&reader->parser, &reader->event);
	return reader->has_event ? 0 : syntax_error(reader);
}

static int reader_expect(struct meta_reader *reader, yaml_event_type_t type)
{
	if (reader_next(reader) != 0)
		return -1;
	if (reader->event.type != type)
		return fail_at(reader, reader_line(reader), "unexpected YAML event %d",
			       (int)reader->event.type);
	return 0;
}

/* A plain scalar with no tag and no text: YAML's null. */
static int event_is_null(const yaml_event_t *event)
{
	return event->type == YAML_SCALAR_EVENT && event->data.scalar.length == 0 &&
	       event->data.scalar.tag == NULL && event->data.scalar.plain_implicit;
}

/* After the top-level node: the document must be the last of the stream. */
static int reader_finish(struct meta_reader *reader)
{
	if (reader_expect(reader, YAML_DOCUMENT_END_EVENT) != 0 || reader_next(reader) != 0)
		return -1;
	if (reader->event.type == YAML_STREAM_END_EVENT)
		return 0;
	return fail_at(reader, reader_line(reader), "more than one YAML document");
}

/*
 * Read up to the start of the top-level mapping. Returns 0 there, 1 when the
 * stream holds no document or an empty (null) one, -1 otherwise.
 */
static int reader_begin(struct meta_reader *reader)
{
	if (reader_expect(reader, YAML_STREAM_START_EVENT) != 0 || reader_next(reader) != 0)
		return -1;
	if (reader->event.type == YAML_STREAM_END_EVENT)
		return 1;
	if (reader->event.type != YAML_DOCUMENT_START_EVENT || reader_next(reader) != 0)
		return fail_at(reader, reader_line(reader), "expected a YAML document");
	if (reader->event.type == YAML_MAPPING_START_EVENT)
		return 0;
	if (event_is_null(&reader->event))
		return reader_finish(reader) == 0 ? 1 : -1;
	return fail_at(reader, reader_line(reader), "top level is not a mapping of keys");
}

/* A scalar quoted for a message (ut_quote: escaped, cut), so a hostile name keeps it one line. */
static void show_scalar(const yaml_event_t *event, char *buf, size_t size)
{
	ut_quote_n((const char *)event->data.scalar.value, event->data.scalar.length, buf, size);
}

/* The scalar event's text if it holds no NUL byte, else NULL. */
static const char *event_text(const yaml_event_t *event)
{
	const char *text = (const char *)event->data.scalar.value;
	return strlen(text) == event->data.scalar.length ? text : NULL;
}

/*
 * Read the next key of the mapping being read: its index, META_END at the
 * end of the mapping, or -1 (not a plain name, unknown, repeated). seen[k]
 * holds the line of key k's first appearance (0: not seen yet).
 */
static int reader_key(struct meta_reader *reader, unsigned long *seen)
{
	char shown[UT_QUOTE_LEN];
	if (reader_next(reader) != 0)
		return -1;
	if (reader->event.type == YAML_MAPPING_END_EVENT)
		return META_END;
	if (reader->event.type != YAML_SCALAR_EVENT)
		return fail_at(reader, reader_line(reader), "a key must be a plain name");
	int k = meta_space_find(reader->space, event_text(&reader->event));
	show_scalar(&reader->event, shown, sizeof(shown));
	if (k < 0)
		return fail_at(reader, reader_line(reader), "key '%s': unknown key", shown);
	if (seen[k] != 0)
		return fail_at(reader, reader_line(reader),
			       "key '%s': duplicate key (first on line %lu)", shown, seen[k]);
	seen[k] = reader_line(reader);
	return k;
}

/* ---- numbers ---------------------------------------------------------- */

static size_t skip_digits(const char *text, size_t i, size_t len)
{
	while (i < len && isdigit((unsigned char)text[i]))
		i++;
	return i;
}

/* Whole text is [+-](ddd[.ddd] | .ddd)[(e|E)[+-]ddd]: what YOLOv5 files use. */
static int is_decimal(const char *text, size_t len)
{
	size_t i = 0;
	if (i < len && (text[i] == '+' || text[i] == '-'))
		i++;
	size_t int_end = skip_digits(text, i, len), frac_end = int_end;
	if (int_end < len && text[int_end] == '.')
		frac_end = skip_digits(text, int_end + 1, len);
	size_t mantissa = (int_end - i) + (frac_end > int_end ? frac_end - int_end - 1 : 0);
	if (mantissa == 0)
		return 0;
	i = frac_end;
	if (i < len && (text[i] == 'e' || text[i] == 'E')) {
		i++;
		if (i < len && (text[i] == '+' || text[i] == '-'))
			i++;
		size_t exp_end = skip_digits(text, i, len);
		if (exp_end == i)
			return 0;
		i = exp_end;
	}
	return i == len;
}

/* NaN or infinity as YAML (".nan", "-.inf") or C/Python ("nan", "inf") spell it. */
static int is_nonfinite_word(const char *text, size_t len)
{
	static const char *const words[] = {"nan", "inf", "infinity"};
	size_t i = 0;
	if (i < len && (text[i] == '+' || text[i] == '-'))
		i++;
	if (i < len && text[i] == '.')
		i++;
	for (size_t w = 0; w < UT_ARRAY_LEN(words); w++)
		if (len - i == strlen(words[w]) && strncasecmp(text + i, words[w], len - i) == 0)
			return 1;
	return 0;
}

/* A number is an untagged plain scalar, or one tagged !!int or !!float. */
static int number_tag(const yaml_event_t *event)
{
	const char *tag = (const char *)event->data.scalar.tag;
	if (tag == NULL)
		return event->data.scalar.plain_implicit;
	return strcmp(tag, YAML_INT_TAG) == 0 || strcmp(tag, YAML_FLOAT_TAG) == 0;
}

/* Why a value event is not a number: reason by event type. */
static const char *not_number(yaml_event_type_t type)
{
	static const char *const reasons[] = {
	    [YAML_SEQUENCE_START_EVENT] = "not a number but a list",
	    [YAML_MAPPING_START_EVENT] = "not a number but a mapping",
	    [YAML_ALIAS_EVENT] = "not a number but an alias (aliases are not supported)",
	};
	if ((size_t)type < UT_ARRAY_LEN(reasons) && reasons[type] != NULL)
		return reasons[type];
	return "not a number";
}

/* The finite number a value event holds; else -1 and the reason in *why. */
static int event_number(const yaml_event_t *event, double *out, const char **why)
{
	*why = not_number(event->type);
	if (event->type != YAML_SCALAR_EVENT)
		return -1;
	const char *text = event_text(event);
	size_t len = event->data.scalar.length;
	if (event_is_null(event))
		*why = "no value (a number is needed)";
	if (text == NULL || len == 0 || !number_tag(event))
		return -1;
	if (is_nonfinite_word(text, len)) {
		*why = "NaN or infinite value";
		return -1;
	}
	if (!is_decimal(text, len))
		return -1;
	double value = strtod(text, NULL);
	if (!isfinite(value)) {
		*why = "NaN or infinite value";
		return -1;
	}
	*out = value;
	return 0;
}

/*
 * The number of the current event, for key k (and a meta.yaml field, or
 * NULL); an error "SOURCE:LINE: key 'NAME': [field: ]reason" otherwise.
 */
static int reader_number(struct meta_reader *reader, int k, const char *field, double *out)
{
	const char *why;
	if (event_number(&reader->event, out, &why) == 0)
		return 0;
	return fail_at(reader, reader_line(reader), "key '%s': %s%s%s", meta_name(k),
		       field != NULL ? field : "", field != NULL ? ": " : "", why);
}

/* "value V outside [lo, hi]" with Python's float repr, into buf. */
static void describe_outside(double value, const struct meta_bound *bound, char *buf, size_t size)
{
	char shown[40], lower[40], upper[40];
	ut_fmt_pyfloat(value, shown, sizeof(shown));
	ut_fmt_pyfloat(bound->lower, lower, sizeof(lower));
	ut_fmt_pyfloat(bound->upper, upper, sizeof(upper));
	snprintf(buf, size, "value %s outside [%s, %s]", shown, lower, upper);
}

static int inside(double value, const struct meta_bound *bound)
{
	return isfinite(value) && value >= bound->lower && value <= bound->upper;
}

/* ---- hyp.yaml --------------------------------------------------------- */

/* The value of key k, checked against its bounds. */
static int hyp_value(struct meta_reader *reader, int k, const struct meta_table *table,
		     struct meta_hyp *hyp)
{
	if (reader_next(reader) != 0 || reader_number(reader, k, NULL, &hyp->v[k]) != 0)
		return -1;
	if (inside(hyp->v[k], &table->k[k]))
		return 0;
	char what[160];
	describe_outside(hyp->v[k], &table->k[k], what, sizeof(what));
	return fail_at(reader, reader_line(reader), "key '%s': %s", meta_name(k), what);
}

/* Read the top-level mapping of a hyp.yaml into hyp. */
static int hyp_read_mapping(struct meta_reader *reader, const struct meta_table *table,
			    struct meta_hyp *hyp)
{
	unsigned long seen[META_ALL] = {0};
	int k;
	while ((k = reader_key(reader, seen)) >= 0)
		if (hyp_value(reader, k, table, hyp) != 0)
			return -1;
	if (k != META_END || reader_finish(reader) != 0)
		return -1;
	if (table->space == META_SPACE_ULTRALYTICS) {
		/* as the package's Tuner: a key not given trains with its default.yaml value */
		struct meta_hyp base;
		meta_hyp_ultralytics_base(&base);
		for (k = 0; k < META_ALL; k++)
			if (seen[k] == 0)
				hyp->v[k] = base.v[k];
		return 0;
	}
	for (k = META_COUNT; k < META_ALL; k++)
		hyp->v[k] = NAN;
	if (seen[META_anchors] == 0)
		hyp->v[META_anchors] = META_ANCHORS_DEFAULT;
	for (k = 0; k < META_COUNT; k++)
		if (seen[k] == 0 && k != META_anchors)
			return ut_err_set(reader->err, "%s: missing key '%s'",
					  source_name(reader->source), meta_name(k));
	return 0;
}

/* A NULL table means YOLOv5's default bounds. */
int meta_hyp_parse(const char *text, size_t len, const char *source, const struct meta_table *table,
		   struct meta_hyp *out, struct ut_err *err)
{
	struct meta_table defaults;
	struct meta_reader reader;
	struct meta_hyp hyp;
	if (table == NULL) {
		meta_table_default(&defaults);
		table = &defaults;
	}
	int rc = reader_open(&reader, text, len, source, err);
	reader.space = table->space;
	if (rc == 0)
		rc = reader_begin(&reader);
	if (rc > 0)
		rc =
		    ut_err_set(err, "%s: empty document (no hyperparameters)", source_name(source));
	if (rc == 0)
		rc = hyp_read_mapping(&reader, table, &hyp);
	reader_close(&reader);
	if (rc == 0)
		*out = hyp;
	return rc;
}

int meta_hyp_read(const char *path, const struct meta_table *table, struct meta_hyp *out,
		  struct ut_err *err)
{
	char *text;
	size_t len;
	if (ut_read_file(path, &text, &len, err) != 0)
		return -1;
	int rc = meta_hyp_parse(text, len, path, table, out, err);
	free(text);
	return rc;
}

/* The text meta_hyp_write writes, appended to buf. */
static int hyp_format(struct ut_buf *buf, const struct meta_hyp *hyp, const char *header)
{
	if (header != NULL && ut_buf_append(buf, header, strlen(header)) != 0)
		return -1;
	const int *keys;
	int count = meta_space_keys(meta_hyp_space(hyp), &keys);
	for (int i = 0; i < count; i++) {
		int k = keys[i];
		char value[40];
		if (k == META_close_mosaic)
			snprintf(value, sizeof(value), "%ld", lround(hyp->v[k]));
		else
			ut_fmt_yamlfloat(hyp->v[k], value, sizeof(value));
		if (ut_buf_printf(buf, "%s: %s\n", meta_name(k), value) != 0)
			return -1;
	}
	return 0;
}

/* Returns 0, or -1 when out of memory or on a write error of out. */
int meta_hyp_write(FILE *out, const struct meta_hyp *hyp, const char *header)
{
	struct ut_buf buf = {0};
	int rc = hyp_format(&buf, hyp, header);
	if (rc == 0 && fwrite(buf.data, 1, buf.len, out) != buf.len)
		rc = -1;
	ut_buf_free(&buf);
	return rc;
}

int meta_hyp_save(const char *path, const struct meta_hyp *hyp, const char *header,
		  struct ut_err *err)
{
	struct ut_buf buf = {0};
	int rc = hyp_format(&buf, hyp, header);
	if (rc != 0)
		rc = ut_err_set(err, "%s: out of memory", path);
	else
		rc = ut_write_file_atomic(path, buf.data, buf.len, err);
	ut_buf_free(&buf);
	return rc;
}

/* ---- meta.yaml -------------------------------------------------------- */

/* The fields of a meta.yaml row, in list order. */
enum meta_field { META_GAIN, META_LOWER, META_UPPER, META_FIELDS };

static const char *const meta_field_names[META_FIELDS] = {"gain", "lower", "upper"};

static double *bound_field(struct meta_bound *bound, int field)
{
	double *const fields[META_FIELDS] = {&bound->gain, &bound->lower, &bound->upper};
	return fields[field];
}

static int field_find(const char *name)
{
	for (int f = 0; name != NULL && f < META_FIELDS; f++)
		if (strcmp(name, meta_field_names[f]) == 0)
			return f;
	return -1;
}

/* A row written as a list [gain, lower, upper]; the list start is read. */
static int row_from_list(struct meta_reader *reader, int k, struct meta_bound *bound)
{
	unsigned long line = reader_line(reader);
	int count = 0;
	for (;; count++) {
		if (reader_next(reader) != 0)
			return -1;
		if (reader->event.type == YAML_SEQUENCE_END_EVENT || count == META_FIELDS)
			break;
		if (reader_number(reader, k, meta_field_names[count], bound_field(bound, count)) !=
		    0)
			return -1;
	}
	if (count < META_FIELDS)
		return fail_at(reader, line,
			       "key '%s': a list needs 3 numbers [gain, lower, upper], got %d",
			       meta_name(k), count);
	if (reader->event.type != YAML_SEQUENCE_END_EVENT)
		return fail_at(reader, line,
			       "key '%s': a list needs 3 numbers [gain, lower, upper], got more",
			       meta_name(k));
	return 0;
}

/* A row written as a mapping with any of gain, lower and upper. */
static int row_from_mapping(struct meta_reader *reader, int k, struct meta_bound *bound)
{
	int seen[META_FIELDS] = {0};
	for (;;) {
		if (reader_next(reader) != 0)
			return -1;
		if (reader->event.type == YAML_MAPPING_END_EVENT)
			return 0;
		int f = reader->event.type == YAML_SCALAR_EVENT
			    ? field_find(event_text(&reader->event))
			    : -1;
		if (f < 0 || seen[f]) {
			char shown[UT_QUOTE_LEN] = "?";
			if (reader->event.type == YAML_SCALAR_EVENT)
				show_scalar(&reader->event, shown, sizeof(shown));
			return fail_at(reader, reader_line(reader),
				       "key '%s': %s field '%s' (gain, lower or upper)",
				       meta_name(k), f < 0 ? "unknown" : "duplicate", shown);
		}
		seen[f] = 1;
		if (reader_next(reader) != 0 ||
		    reader_number(reader, k, meta_field_names[f], bound_field(bound, f)) != 0)
			return -1;
	}
}

/* The row of key k, applied to bound and checked. */
static int table_row(struct meta_reader *reader, int k, struct meta_bound *bound)
{
	if (reader_next(reader) != 0)
		return -1;
	unsigned long line = reader_line(reader);
	int rc;
	if (reader->event.type == YAML_SEQUENCE_START_EVENT)
		rc = row_from_list(reader, k, bound);
	else if (reader->event.type == YAML_MAPPING_START_EVENT)
		rc = row_from_mapping(reader, k, bound);
	else
		rc = fail_at(reader, line,
			     "key '%s': expected [gain, lower, upper] or a mapping of them",
			     meta_name(k));
	if (rc != 0)
		return -1;
	if (bound->gain < 0)
		return fail_at(reader, line, "key '%s': negative gain", meta_name(k));
	if (bound->lower > bound->upper)
		return fail_at(reader, line, "key '%s': lower > upper", meta_name(k));
	return 0;
}

/* Read the top-level mapping of a meta.yaml, applying each row to table. */
static int table_read_mapping(struct meta_reader *reader, struct meta_table *table)
{
	unsigned long seen[META_ALL] = {0};
	int k;
	while ((k = reader_key(reader, seen)) >= 0)
		if (table_row(reader, k, &table->k[k]) != 0)
			return -1;
	if (k != META_END)
		return -1;
	return reader_finish(reader);
}

/* An empty meta.yaml (only comments) changes nothing and is accepted. */
int meta_table_parse(const char *text, size_t len, const char *source, struct meta_table *table,
		     struct ut_err *err)
{
	struct meta_reader reader;
	struct meta_table updated = *table;
	int rc = reader_open(&reader, text, len, source, err);
	reader.space = table->space;
	if (rc == 0)
		rc = reader_begin(&reader);
	if (rc == 0)
		rc = table_read_mapping(&reader, &updated);
	reader_close(&reader);
	if (rc < 0)
		return -1;
	*table = updated;
	return 0;
}

int meta_table_read(const char *path, struct meta_table *table, struct ut_err *err)
{
	char *text;
	size_t len;
	if (ut_read_file(path, &text, &len, err) != 0)
		return -1;
	int rc = meta_table_parse(text, len, path, table, err);
	free(text);
	return rc;
}

int meta_table_write(FILE *out, const struct meta_table *table)
{
	const int *keys;
	int count = meta_space_keys(table->space, &keys);
	for (int i = 0; i < count; i++) {
		int k = keys[i];
		const double row[META_FIELDS] = {table->k[k].gain, table->k[k].lower,
						 table->k[k].upper};
		char values[META_FIELDS][40];
		for (int f = 0; f < META_FIELDS; f++)
			ut_fmt_yamlfloat(row[f], values[f], sizeof(values[f]));
		if (fprintf(out, "%s: [%s, %s, %s]\n", meta_name(k), values[META_GAIN],
			    values[META_LOWER], values[META_UPPER]) < 0)
			return -1;
	}
	return 0;
}

/* ---- restriction and checks ------------------------------------------ */

/* Mark the key named by text[0..len) (spaces around it ignored) in keep. */
static int restrict_one(enum meta_space space, const char *text, size_t len, int *keep,
			struct ut_err *err)
{
	char name[32], shown[UT_QUOTE_LEN];
	while (len > 0 && isspace((unsigned char)text[0])) {
		text++;
		len--;
	}
	while (len > 0 && isspace((unsigned char)text[len - 1]))
		len--;
	if (len == 0)
		return ut_err_set(err, "key list: empty key name");
	int k = -1;
	if (len < sizeof(name) && memchr(text, '\0', len) == NULL) {
		memcpy(name, text, len);
		name[len] = '\0';
		k = meta_space_find(space, name);
	}
	if (k < 0)
		return ut_err_set(err, "key list: unknown key '%s'",
				  ut_quote_n(text, len, shown, sizeof(shown)));
	keep[k] = 1;
	return 0;
}

int meta_table_restrict(struct meta_table *table, const char *keys, struct ut_err *err)
{
	int keep[META_ALL] = {0};
	if (keys == NULL || strspn(keys, " \t") == strlen(keys))
		return ut_err_set(err, "key list: no keys given");
	const char *start = keys;
	for (;;) {
		const char *comma = strchr(start, ',');
		size_t len = comma != NULL ? (size_t)(comma - start) : strlen(start);
		if (restrict_one(table->space, start, len, keep, err) != 0)
			return -1;
		if (comma == NULL)
			break;
		start = comma + 1;
	}
	for (int k = 0; k < META_ALL; k++)
		if (!keep[k])
			table->k[k].gain = 0;
	return 0;
}

int meta_hyp_check(const struct meta_hyp *hyp, const struct meta_table *table, const char *source,
		   struct ut_err *err)
{
	const int *keys;
	int count = meta_space_keys(table->space, &keys);
	for (int i = 0; i < count; i++) {
		int k = keys[i];
		if (inside(hyp->v[k], &table->k[k]))
			continue;
		char what[160];
		describe_outside(hyp->v[k], &table->k[k], what, sizeof(what));
		return ut_err_set(err, "%s: key '%s': %s", source_name(source), meta_name(k), what);
	}
	return 0;
}
