/*
 * safetensors.c - the safetensors reader and writer, and yolo-train's
 * checkpoints (see safetensors.h for the format and what is accepted).
 *
 * The reader trusts nothing in the file: every length and offset is checked
 * against the buffer before it is used, and the JSON header goes through
 * cJSON on a NUL-terminated copy. The writer produces the JSON by hand so
 * the bytes match the reference writer (Python json.dumps, compact).
 */
#include "safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c hands out little-endian data as is: little-endian hosts only"
#endif

#define METADATA_KEY "__metadata__"
/* JSON numbers are doubles in cJSON: integers above 2^53 are not exact. */
#define MAX_JSON_INT 9007199254740992.0

struct tr_st_file {
	cJSON *root;		      /* the parsed header; names point into it */
	char *owned;		      /* the file image when tr_st_open read it */
	struct tr_st_tensor *tensors; /* file (offset) order */
	size_t count;
	size_t *by_name; /* indices into tensors, sorted by name */
	const char **meta_keys, **meta_values;
	size_t meta_count;
};

static const struct {
	const char *name;
	size_t size;
} dtypes[] = {
    [TR_ST_F64] = {"F64", 8},	[TR_ST_F32] = {"F32", 4}, [TR_ST_F16] = {"F16", 2},
    [TR_ST_BF16] = {"BF16", 2}, [TR_ST_I64] = {"I64", 8}, [TR_ST_U8] = {"U8", 1},
};

const char *tr_st_dtype_name(enum tr_st_dtype dtype)
{
	return (unsigned)dtype < UT_ARRAY_LEN(dtypes) ? dtypes[dtype].name : NULL;
}

size_t tr_st_dtype_size(enum tr_st_dtype dtype)
{
	return (unsigned)dtype < UT_ARRAY_LEN(dtypes) ? dtypes[dtype].size : 0;
}

static int dtype_from_name(const char *name, enum tr_st_dtype *out)
{
	for (size_t i = 0; i < UT_ARRAY_LEN(dtypes); i++) {
		if (strcmp(name, dtypes[i].name) == 0) {
			*out = (enum tr_st_dtype)i;
			return 0;
		}
	}
	return -1;
}

/* A name in double quotes for an error message (ut_quote: escaped, cut), one line whatever it
 * holds. */
static const char *quote(const char *text, char *buf, size_t size)
{
	char inner[UT_QUOTE_LEN];
	snprintf(buf, size, "\"%s\"", ut_quote(text, inner, sizeof(inner)));
	return buf;
}

/* --- reading --- */

void tr_st_close(struct tr_st_file *file)
{
	if (file == NULL)
		return;
	cJSON_Delete(file->root);
	free(file->owned);
	free(file->tensors);
	free(file->by_name);
	free(file->meta_keys);
	free(file->meta_values);
	free(file);
}

/* A JSON number that is an integer in [0, 2^53]. */
static int json_uint(const cJSON *item, uint64_t *out)
{
	if (!cJSON_IsNumber(item))
		return -1;
	double value = item->valuedouble;
	if (!(value >= 0 && value <= MAX_JSON_INT) || value != floor(value))
		return -1;
	*out = (uint64_t)value;
	return 0;
}

static int parse_shape(const cJSON *shape, struct tr_st_tensor *t, const char *label,
		       const char *qname, struct ut_err *err)
{
	if (!cJSON_IsArray(shape))
		return ut_err_set(err, "%s: tensor %s: shape is not a list", label, qname);
	int ndim = cJSON_GetArraySize(shape);
	if (ndim > TR_ST_MAX_DIMS)
		return ut_err_set(err, "%s: tensor %s: shape has %d dimensions (at most %d)", label,
				  qname, ndim, TR_ST_MAX_DIMS);
	uint64_t numel = 1;
	int d = 0;
	for (const cJSON *dim = shape->child; dim != NULL; dim = dim->next, d++) {
		uint64_t value;
		if (json_uint(dim, &value) != 0)
			return ut_err_set(err,
					  "%s: tensor %s: shape[%d] is not a non-negative integer",
					  label, qname, d);
		if (__builtin_mul_overflow(numel, value, &numel) || numel > SIZE_MAX)
			return ut_err_set(err, "%s: tensor %s: shape has too many elements", label,
					  qname);
		t->shape[d] = (int64_t)value;
	}
	t->ndim = ndim;
	t->numel = (size_t)numel;
	return 0;
}

static int parse_offsets(const cJSON *offsets, struct tr_st_tensor *t, size_t data_len,
			 const char *label, const char *qname, struct ut_err *err)
{
	uint64_t begin, end;
	if (!cJSON_IsArray(offsets) || cJSON_GetArraySize(offsets) != 2 ||
	    json_uint(offsets->child, &begin) != 0 || json_uint(offsets->child->next, &end) != 0)
		return ut_err_set(
		    err, "%s: tensor %s: data_offsets is not a list of 2 non-negative integers",
		    label, qname);
	size_t size = dtypes[t->dtype].size;
	if (end < begin || end > data_len)
		return ut_err_set(
		    err,
		    "%s: tensor %s: data_offsets [%llu, %llu] out of the %zu-byte data section",
		    label, qname, (unsigned long long)begin, (unsigned long long)end, data_len);
	if (__builtin_mul_overflow(t->numel, size, &t->nbytes) || end - begin != t->nbytes)
		return ut_err_set(err,
				  "%s: tensor %s: data_offsets [%llu, %llu] hold %llu bytes, shape "
				  "and dtype need %zu x %zu",
				  label, qname, (unsigned long long)begin, (unsigned long long)end,
				  (unsigned long long)(end - begin), t->numel, size);
	if (begin % size != 0)
		return ut_err_set(
		    err,
		    "%s: tensor %s: data_offsets [%llu, %llu] not aligned to the %zu-byte element",
		    label, qname, (unsigned long long)begin, (unsigned long long)end, size);
	t->offset = (size_t)begin;
	return 0;
}

/* One header entry {"dtype", "shape", "data_offsets"} into t. */
static int parse_entry(const cJSON *entry, struct tr_st_tensor *t, const uint8_t *data,
		       size_t data_len, const char *label, struct ut_err *err)
{
	char qname[UT_QUOTE_LEN + 2];
	quote(entry->string, qname, sizeof(qname));
	if (entry->string[0] == '\0')
		return ut_err_set(err, "%s: tensor %s: empty name", label, qname);
	if (!cJSON_IsObject(entry))
		return ut_err_set(err, "%s: tensor %s: entry is not an object", label, qname);
	const cJSON *fields[3] = {NULL, NULL, NULL};
	static const char *const field_names[3] = {"dtype", "shape", "data_offsets"};
	for (const cJSON *field = entry->child; field != NULL; field = field->next) {
		int k = 0;
		while (k < 3 && strcmp(field->string, field_names[k]) != 0)
			k++;
		char qfield[UT_QUOTE_LEN + 2];
		if (k == 3)
			return ut_err_set(err, "%s: tensor %s: unknown field %s", label, qname,
					  quote(field->string, qfield, sizeof(qfield)));
		if (fields[k] != NULL)
			return ut_err_set(err, "%s: tensor %s: duplicate field %s", label, qname,
					  field_names[k]);
		fields[k] = field;
	}
	for (int k = 0; k < 3; k++)
		if (fields[k] == NULL)
			return ut_err_set(err, "%s: tensor %s: missing %s", label, qname,
					  field_names[k]);
	char qdtype[UT_QUOTE_LEN + 2];
	if (!cJSON_IsString(fields[0]) || dtype_from_name(fields[0]->valuestring, &t->dtype) != 0)
		return ut_err_set(err,
				  "%s: tensor %s: dtype %s is not one of F64 F32 F16 BF16 I64 U8",
				  label, qname,
				  cJSON_IsString(fields[0])
				      ? quote(fields[0]->valuestring, qdtype, sizeof(qdtype))
				      : "(not a string)");
	t->name = entry->string;
	if (parse_shape(fields[1], t, label, qname, err) != 0 ||
	    parse_offsets(fields[2], t, data_len, label, qname, err) != 0)
		return -1;
	t->data = data + t->offset;
	return 0;
}

static int cmp_str_ptr(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Duplicate metadata keys, found by sorting a copy (a file may hold many). */
static int check_unique_keys(const struct tr_st_file *file, const char *label, struct ut_err *err)
{
	const char **keys = calloc(file->meta_count + 1, sizeof(*keys));
	if (keys == NULL)
		return ut_err_set(err, "%s: out of memory", label);
	memcpy(keys, file->meta_keys, file->meta_count * sizeof(*keys));
	qsort(keys, file->meta_count, sizeof(*keys), cmp_str_ptr);
	int rc = 0;
	for (size_t i = 1; i < file->meta_count && rc == 0; i++) {
		char qkey[UT_QUOTE_LEN + 2];
		if (strcmp(keys[i - 1], keys[i]) == 0)
			rc = ut_err_set(err, "%s: %s key %s: duplicate key", label, METADATA_KEY,
					quote(keys[i], qkey, sizeof(qkey)));
	}
	free(keys);
	return rc;
}

static int parse_metadata(struct tr_st_file *file, const cJSON *meta, const char *label,
			  struct ut_err *err)
{
	if (!cJSON_IsObject(meta))
		return ut_err_set(err, "%s: %s is not an object", label, METADATA_KEY);
	size_t n = (size_t)cJSON_GetArraySize(meta);
	file->meta_keys = calloc(n + 1, sizeof(*file->meta_keys));
	file->meta_values = calloc(n + 1, sizeof(*file->meta_values));
	if (file->meta_keys == NULL || file->meta_values == NULL)
		return ut_err_set(err, "%s: out of memory", label);
	for (const cJSON *item = meta->child; item != NULL; item = item->next) {
		char qkey[UT_QUOTE_LEN + 2];
		quote(item->string, qkey, sizeof(qkey));
		if (item->string[0] == '\0')
			return ut_err_set(err, "%s: %s has an empty key", label, METADATA_KEY);
		if (!cJSON_IsString(item))
			return ut_err_set(err, "%s: %s key %s: value is not a string", label,
					  METADATA_KEY, qkey);
		file->meta_keys[file->meta_count] = item->string;
		file->meta_values[file->meta_count++] = item->valuestring;
	}
	return check_unique_keys(file, label, err);
}

static int cmp_offset(const void *a, const void *b)
{
	const struct tr_st_tensor *x = a, *y = b;
	if (x->offset != y->offset)
		return x->offset < y->offset ? -1 : 1;
	if (x->nbytes != y->nbytes) /* empty tensors before a full one at the same offset */
		return x->nbytes < y->nbytes ? -1 : 1;
	return strcmp(x->name, y->name);
}

/* qsort has no context argument: by_name sorts pointers, then becomes indices. */
static int cmp_name_ptr(const void *a, const void *b)
{
	const struct tr_st_tensor *const *x = a, *const *y = b;
	return strcmp((*x)->name, (*y)->name);
}

/* Sort the index by name and reject duplicate names. */
static int index_names(struct tr_st_file *file, const char *label, struct ut_err *err)
{
	const struct tr_st_tensor **order = calloc(file->count + 1, sizeof(*order));
	file->by_name = calloc(file->count + 1, sizeof(*file->by_name));
	if (order == NULL || file->by_name == NULL) {
		free(order);
		return ut_err_set(err, "%s: out of memory", label);
	}
	for (size_t i = 0; i < file->count; i++)
		order[i] = &file->tensors[i];
	qsort(order, file->count, sizeof(*order), cmp_name_ptr);
	for (size_t i = 0; i < file->count; i++) {
		if (i > 0 && strcmp(order[i - 1]->name, order[i]->name) == 0) {
			char qname[UT_QUOTE_LEN + 2];
			ut_err_set(err, "%s: tensor %s: duplicate name", label,
				   quote(order[i]->name, qname, sizeof(qname)));
			free(order);
			return -1;
		}
		file->by_name[i] = (size_t)(order[i] - file->tensors);
	}
	free(order);
	return 0;
}

/* The tensors, in offset order, must cover [0, data_len) exactly once. */
static int check_tiling(const struct tr_st_file *file, size_t data_len, const char *label,
			struct ut_err *err)
{
	size_t cursor = 0;
	for (size_t i = 0; i < file->count; i++) {
		const struct tr_st_tensor *t = &file->tensors[i];
		if (t->offset != cursor) {
			char qname[UT_QUOTE_LEN + 2], qprev[UT_QUOTE_LEN + 2];
			quote(t->name, qname, sizeof(qname));
			if (i == 0)
				return ut_err_set(err,
						  "%s: tensor %s: data_offsets start at %zu, "
						  "leaving a hole at the start of the data section",
						  label, qname, t->offset);
			quote(file->tensors[i - 1].name, qprev, sizeof(qprev));
			return ut_err_set(err,
					  "%s: tensor %s: data_offsets [%zu, %zu] %s tensor %s, "
					  "which ends at %zu",
					  label, qname, t->offset, t->offset + t->nbytes,
					  t->offset < cursor ? "overlap" : "leave a hole after",
					  qprev, cursor);
		}
		cursor += t->nbytes;
	}
	if (cursor != data_len)
		return ut_err_set(
		    err,
		    "%s: data section has %zu bytes but the tensors cover %zu (trailing bytes)",
		    label, data_len, cursor);
	return 0;
}

/* Header bytes: '{' first, no control bytes, only spaces after the JSON. */
static int check_header_bytes(const char *header, size_t len, const char *label, struct ut_err *err)
{
	if (len == 0 || header[0] != '{')
		return ut_err_set(err, "%s: header does not start with '{'", label);
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)header[i];
		if (c < 0x20 && c != '\t' && c != '\n' && c != '\r')
			return ut_err_set(err, "%s: header has control byte 0x%02x at byte %zu",
					  label, c, i);
	}
	return 0;
}

static int parse_header(struct tr_st_file *file, const char *header, size_t header_len,
			const uint8_t *data, size_t data_len, const char *label, struct ut_err *err)
{
	if (check_header_bytes(header, header_len, label, err) != 0)
		return -1;
	/* A NUL-terminated copy: cJSON then never reads past the header. */
	char *text = malloc(header_len + 1);
	if (text == NULL)
		return ut_err_set(err, "%s: out of memory for a %zu-byte header", label,
				  header_len);
	memcpy(text, header, header_len);
	text[header_len] = '\0';
	const char *end = NULL;
	file->root = cJSON_ParseWithLengthOpts(text, header_len, &end, 0);
	size_t stop = end != NULL ? (size_t)(end - text) : 0;
	free(text);
	if (file->root == NULL)
		return ut_err_set(err, "%s: header is not valid JSON (at byte %zu of %zu)", label,
				  stop, header_len);
	for (size_t i = stop; i < header_len; i++)
		if (header[i] != ' ')
			return ut_err_set(err,
					  "%s: header has bytes other than space padding after the "
					  "JSON object (byte %zu)",
					  label, i);
	if (!cJSON_IsObject(file->root))
		return ut_err_set(err, "%s: header is not a JSON object", label);

	size_t entries = (size_t)cJSON_GetArraySize(file->root);
	file->tensors = calloc(entries + 1, sizeof(*file->tensors));
	if (file->tensors == NULL)
		return ut_err_set(err, "%s: out of memory", label);
	const cJSON *meta = NULL;
	for (const cJSON *entry = file->root->child; entry != NULL; entry = entry->next) {
		if (strcmp(entry->string, METADATA_KEY) == 0) {
			if (meta != NULL)
				return ut_err_set(err, "%s: duplicate %s", label, METADATA_KEY);
			meta = entry;
			continue;
		}
		if (parse_entry(entry, &file->tensors[file->count], data, data_len, label, err) !=
		    0)
			return -1;
		file->count++;
	}
	if (meta != NULL && parse_metadata(file, meta, label, err) != 0)
		return -1;
	qsort(file->tensors, file->count, sizeof(*file->tensors), cmp_offset);
	if (index_names(file, label, err) != 0)
		return -1;
	return check_tiling(file, data_len, label, err);
}

int tr_st_parse(const void *buf, size_t len, const char *label, struct tr_st_file **out,
		struct ut_err *err)
{
	*out = NULL;
	const uint8_t *bytes = buf;
	if (len < 8)
		return ut_err_set(err, "%s: %zu bytes, too short for the 8-byte header length",
				  label, len);
	uint64_t header_len = 0;
	for (int i = 7; i >= 0; i--)
		header_len = header_len << 8 | bytes[i];
	if (header_len > len - 8)
		return ut_err_set(
		    err, "%s: header length %llu exceeds the %zu bytes after it (truncated file?)",
		    label, (unsigned long long)header_len, len - 8);
	if (header_len % 8 != 0)
		return ut_err_set(
		    err, "%s: header length %llu is not a multiple of 8 (header not space-padded)",
		    label, (unsigned long long)header_len);
	struct tr_st_file *file = calloc(1, sizeof(*file));
	if (file == NULL)
		return ut_err_set(err, "%s: out of memory", label);
	const uint8_t *data = bytes + 8 + header_len;
	if (parse_header(file, (const char *)bytes + 8, (size_t)header_len, data,
			 len - 8 - (size_t)header_len, label, err) != 0) {
		tr_st_close(file);
		return -1;
	}
	*out = file;
	return 0;
}

/* The whole file in one malloc'ed buffer (malloc's alignment is >= 8). */
static int read_whole(const char *path, char **out, size_t *len, struct ut_err *err)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		return ut_err_set(err, "%s: %s", path, strerror(errno));
	struct stat st;
	if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
		fclose(f);
		return ut_err_set(err, "%s: not a regular file", path);
	}
	size_t size = (size_t)st.st_size;
	char *buf = malloc(size + 1);
	if (buf == NULL) {
		fclose(f);
		return ut_err_set(err, "%s: out of memory for %zu bytes", path, size);
	}
	size_t got = fread(buf, 1, size, f);
	int failed = ferror(f);
	fclose(f);
	if (failed || got != size) {
		free(buf);
		return ut_err_set(err, "%s: read error (%zu of %zu bytes)", path, got, size);
	}
	*out = buf;
	*len = size;
	return 0;
}

int tr_st_open(const char *path, struct tr_st_file **out, struct ut_err *err)
{
	char *buf = NULL;
	size_t len = 0;
	*out = NULL;
	if (read_whole(path, &buf, &len, err) != 0)
		return -1;
	if (tr_st_parse(buf, len, path, out, err) != 0) {
		free(buf);
		return -1;
	}
	(*out)->owned = buf;
	return 0;
}

size_t tr_st_count(const struct tr_st_file *file)
{
	return file->count;
}

const struct tr_st_tensor *tr_st_tensor_at(const struct tr_st_file *file, size_t i)
{
	return i < file->count ? &file->tensors[i] : NULL;
}

const struct tr_st_tensor *tr_st_find(const struct tr_st_file *file, const char *name)
{
	size_t lo = 0, hi = file->count;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct tr_st_tensor *t = &file->tensors[file->by_name[mid]];
		int c = strcmp(name, t->name);
		if (c == 0)
			return t;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

size_t tr_st_metadata_count(const struct tr_st_file *file)
{
	return file->meta_count;
}

int tr_st_metadata_at(const struct tr_st_file *file, size_t i, const char **key, const char **value)
{
	if (i >= file->meta_count)
		return -1;
	*key = file->meta_keys[i];
	*value = file->meta_values[i];
	return 0;
}

const char *tr_st_metadata(const struct tr_st_file *file, const char *key)
{
	for (size_t i = 0; i < file->meta_count; i++)
		if (strcmp(file->meta_keys[i], key) == 0)
			return file->meta_values[i];
	return NULL;
}

/* --- writing --- */

/* A JSON string as Python's json.dumps writes ASCII (UTF-8 passes through). */
static int json_string(struct ut_buf *out, const char *text)
{
	if (ut_buf_append(out, "\"", 1) != 0)
		return -1;
	for (const unsigned char *p = (const unsigned char *)text; *p != '\0'; p++) {
		const char *esc = NULL;
		switch (*p) {
		case '"':
			esc = "\\\"";
			break;
		case '\\':
			esc = "\\\\";
			break;
		case '\n':
			esc = "\\n";
			break;
		case '\r':
			esc = "\\r";
			break;
		case '\t':
			esc = "\\t";
			break;
		case '\b':
			esc = "\\b";
			break;
		case '\f':
			esc = "\\f";
			break;
		default:
			break;
		}
		int rc;
		if (esc != NULL)
			rc = ut_buf_append(out, esc, strlen(esc));
		else if (*p < 0x20 || *p == 0x7f)
			rc = ut_buf_printf(out, "\\u%04x", *p);
		else
			rc = ut_buf_append(out, (const char *)p, 1);
		if (rc != 0)
			return -1;
	}
	return ut_buf_append(out, "\"", 1);
}

/* Non-empty, unique names; kind says "tensor" or "metadata key". */
static int check_unique(const char **names, size_t n, const char *kind, struct ut_err *err)
{
	qsort(names, n, sizeof(*names), cmp_str_ptr);
	for (size_t i = 0; i < n; i++) {
		char qname[UT_QUOTE_LEN + 2];
		if (names[i][0] == '\0')
			return ut_err_set(err, "%s: empty name", kind);
		if (i > 0 && strcmp(names[i - 1], names[i]) == 0)
			return ut_err_set(err, "%s %s: duplicate name", kind,
					  quote(names[i], qname, sizeof(qname)));
	}
	return 0;
}

/* Entry i's byte count, or -1 (err set) for a bad dtype, shape or data. */
static int entry_bytes(const struct tr_st_entry *t, size_t *nbytes, struct ut_err *err)
{
	char qname[UT_QUOTE_LEN + 2];
	quote(t->name, qname, sizeof(qname));
	if (tr_st_dtype_size(t->dtype) == 0)
		return ut_err_set(err, "tensor %s: bad dtype %d", qname, (int)t->dtype);
	if (t->ndim < 0 || t->ndim > TR_ST_MAX_DIMS || (t->ndim > 0 && t->shape == NULL))
		return ut_err_set(err, "tensor %s: bad ndim %d", qname, t->ndim);
	size_t numel = 1;
	for (int d = 0; d < t->ndim; d++) {
		if (t->shape[d] < 0 || (double)t->shape[d] > MAX_JSON_INT)
			return ut_err_set(err, "tensor %s: shape[%d] = %lld out of range", qname, d,
					  (long long)t->shape[d]);
		if (__builtin_mul_overflow(numel, (size_t)t->shape[d], &numel))
			return ut_err_set(err, "tensor %s: too many elements", qname);
	}
	if (__builtin_mul_overflow(numel, tr_st_dtype_size(t->dtype), nbytes))
		return ut_err_set(err, "tensor %s: too many bytes", qname);
	if (*nbytes > 0 && t->data == NULL)
		return ut_err_set(err, "tensor %s: no data", qname);
	return 0;
}

static int validate(const struct tr_st_entry *tensors, size_t count, const struct tr_st_meta *meta,
		    size_t meta_count, struct ut_err *err)
{
	const char **names = calloc(count + meta_count + 1, sizeof(*names));
	if (names == NULL)
		return ut_err_set(err, "out of memory");
	int rc = 0;
	for (size_t i = 0; i < count && rc == 0; i++) {
		size_t nbytes;
		if (tensors[i].name == NULL || strcmp(tensors[i].name, METADATA_KEY) == 0)
			rc = ut_err_set(err, "tensor %zu: name is NULL or %s", i, METADATA_KEY);
		else
			rc = entry_bytes(&tensors[i], &nbytes, err);
		names[i] = tensors[i].name;
	}
	if (rc == 0)
		rc = check_unique(names, count, "tensor", err);
	for (size_t i = 0; i < meta_count && rc == 0; i++) {
		if (meta[i].key == NULL || meta[i].value == NULL)
			rc = ut_err_set(err, "metadata entry %zu: NULL key or value", i);
		names[i] = meta[i].key;
	}
	if (rc == 0)
		rc = check_unique(names, meta_count, "metadata key", err);
	free(names);
	return rc;
}

/* Writing order: descending element size, the given order within a size. */
static size_t *layout_order(const struct tr_st_entry *tensors, size_t count)
{
	static const size_t sizes[] = {8, 4, 2, 1};
	size_t *order = calloc(count + 1, sizeof(*order));
	if (order == NULL)
		return NULL;
	size_t n = 0;
	for (size_t s = 0; s < UT_ARRAY_LEN(sizes); s++)
		for (size_t i = 0; i < count; i++)
			if (tr_st_dtype_size(tensors[i].dtype) == sizes[s])
				order[n++] = i;
	return order;
}

/* The padded JSON header for tensors in order. */
static int build_header(const struct tr_st_entry *tensors, const size_t *order, size_t count,
			const struct tr_st_meta *meta, size_t meta_count, struct ut_buf *out)
{
	size_t offset = 0;
	int rc = ut_buf_append(out, "{", 1);
	for (size_t k = 0; k < count && rc == 0; k++) {
		const struct tr_st_entry *t = &tensors[order[k]];
		size_t numel = 1;
		for (int d = 0; d < t->ndim; d++)
			numel *= (size_t)t->shape[d];
		size_t nbytes = numel * tr_st_dtype_size(t->dtype);
		rc |= k > 0 ? ut_buf_append(out, ",", 1) : 0;
		rc |= json_string(out, t->name);
		rc |= ut_buf_printf(out, ":{\"dtype\":\"%s\",\"shape\":[",
				    tr_st_dtype_name(t->dtype));
		for (int d = 0; d < t->ndim; d++)
			rc |= ut_buf_printf(out, d > 0 ? ",%lld" : "%lld", (long long)t->shape[d]);
		rc |= ut_buf_printf(out, "],\"data_offsets\":[%zu,%zu]}", offset, offset + nbytes);
		offset += nbytes;
	}
	if (meta_count > 0 && rc == 0) {
		rc |= ut_buf_printf(out, "%s\"%s\":{", count > 0 ? "," : "", METADATA_KEY);
		for (size_t i = 0; i < meta_count; i++) {
			rc |= i > 0 ? ut_buf_append(out, ",", 1) : 0;
			rc |= json_string(out, meta[i].key);
			rc |= ut_buf_append(out, ":", 1);
			rc |= json_string(out, meta[i].value);
		}
		rc |= ut_buf_append(out, "}", 1);
	}
	rc |= ut_buf_append(out, "}", 1);
	while (rc == 0 && out->len % 8 != 0)
		rc = ut_buf_append(out, " ", 1);
	return rc != 0 ? -1 : 0;
}

/* Validate, then write length, header and data to f. */
static int emit(FILE *f, const struct tr_st_entry *tensors, size_t count,
		const struct tr_st_meta *meta, size_t meta_count, const char *label,
		struct ut_err *err)
{
	struct ut_err why;
	if (validate(tensors, count, meta, meta_count, &why) != 0)
		return ut_err_set(err, "%s: %s", label, why.msg);
	size_t *order = layout_order(tensors, count);
	struct ut_buf header = {0};
	if (order == NULL || build_header(tensors, order, count, meta, meta_count, &header) != 0) {
		free(order);
		ut_buf_free(&header);
		return ut_err_set(err, "%s: out of memory", label);
	}
	uint8_t len_bytes[8];
	for (int i = 0; i < 8; i++)
		len_bytes[i] = (uint8_t)((uint64_t)header.len >> (8 * i));
	int ok =
	    fwrite(len_bytes, 1, 8, f) == 8 && fwrite(header.data, 1, header.len, f) == header.len;
	for (size_t k = 0; k < count && ok; k++) {
		const struct tr_st_entry *t = &tensors[order[k]];
		size_t nbytes;
		entry_bytes(t, &nbytes, NULL);
		ok = nbytes == 0 || fwrite(t->data, 1, nbytes, f) == nbytes;
	}
	free(order);
	ut_buf_free(&header);
	if (!ok)
		return ut_err_set(err, "%s: write error: %s", label, strerror(errno));
	return 0;
}

int tr_st_serialize(const struct tr_st_entry *tensors, size_t count, const struct tr_st_meta *meta,
		    size_t meta_count, char **out, size_t *len, struct ut_err *err)
{
	*out = NULL;
	*len = 0;
	char *buf = NULL;
	size_t size = 0;
	FILE *f = open_memstream(&buf, &size);
	if (f == NULL)
		return ut_err_set(err, "safetensors image: out of memory");
	int rc = emit(f, tensors, count, meta, meta_count, "safetensors image", err);
	if (fclose(f) != 0 && rc == 0)
		rc = ut_err_set(err, "safetensors image: out of memory");
	if (rc != 0) {
		free(buf);
		return -1;
	}
	*out = buf;
	*len = size;
	return 0;
}

int tr_st_write(const char *path, const struct tr_st_entry *tensors, size_t count,
		const struct tr_st_meta *meta, size_t meta_count, struct ut_err *err)
{
	char tmp[PATH_MAX];
	if (snprintf(tmp, sizeof(tmp), "%s.tmpXXXXXX", path) >= (int)sizeof(tmp))
		return ut_err_set(err, "%s: path too long", path);
	int fd = mkstemp(tmp);
	if (fd < 0)
		return ut_err_set(err, "%s: %s", path, strerror(errno));
	/* mkstemp uses 0600; give the file the umask's usual permissions */
	mode_t mask = umask(0);
	umask(mask);
	FILE *f = fchmod(fd, 0666 & ~mask) == 0 ? fdopen(fd, "wb") : NULL;
	if (f == NULL) {
		ut_err_set(err, "%s: %s", path, strerror(errno));
		close(fd);
		unlink(tmp);
		return -1;
	}
	int rc = emit(f, tensors, count, meta, meta_count, path, err);
	/* fsync: a checkpoint is the state training resumes from */
	if (rc == 0 && (fflush(f) != 0 || fsync(fileno(f)) != 0))
		rc = ut_err_set(err, "%s: write error: %s", path, strerror(errno));
	if (fclose(f) != 0 && rc == 0)
		rc = ut_err_set(err, "%s: write error: %s", path, strerror(errno));
	if (rc == 0 && rename(tmp, path) != 0)
		rc = ut_err_set(err, "%s: rename: %s", path, strerror(errno));
	if (rc != 0)
		unlink(tmp);
	return rc;
}

/* --- checkpoints --- */

#define OPTIMIZER_PREFIX "optimizer."

static const char *const optimizer_slots[] = {"momentum", "exp_avg", "exp_avg_sq"};

int tr_ckpt_optimizer_name(char *buf, size_t size, const char *param, const char *slot,
			   struct ut_err *err)
{
	int n = snprintf(buf, size, "%s%s.%s", OPTIMIZER_PREFIX, param, slot);
	if (n < 0 || (size_t)n >= size)
		return ut_err_set(err, "optimizer tensor name for %s.%s too long", param, slot);
	return 0;
}

enum {
	META_FORMAT,
	META_EPOCH,
	META_BEST_FITNESS,
	META_EMA_UPDATES,
	META_MODEL_YAML,
	META_HYP,
	META_INFO_COUNT
};
static const char *const info_keys[META_INFO_COUNT] = {
    "format", "epoch", "best_fitness", "ema_updates", "model_yaml", "hyp",
};

int tr_ckpt_write(const char *path, const struct tr_ckpt_info *info,
		  const struct tr_st_entry *tensors, size_t count, const struct tr_st_meta *extra,
		  size_t extra_count, struct ut_err *err)
{
	if (!isfinite(info->best_fitness))
		return ut_err_set(err, "%s: best_fitness %g is not finite", path,
				  info->best_fitness);
	if (info->ema_updates < 0)
		return ut_err_set(err, "%s: ema_updates %ld is negative", path, info->ema_updates);
	char epoch[32], fitness[32], updates[32];
	snprintf(epoch, sizeof(epoch), "%ld", info->epoch);
	ut_fmt_pyfloat(info->best_fitness, fitness, sizeof(fitness));
	snprintf(updates, sizeof(updates), "%ld", info->ema_updates);
	const char *values[META_INFO_COUNT] = {
	    TR_CKPT_FORMAT,
	    epoch,
	    fitness,
	    updates,
	    info->model_yaml != NULL ? info->model_yaml : "",
	    info->hyp != NULL ? info->hyp : "",
	};
	struct tr_st_meta *meta = calloc(META_INFO_COUNT + extra_count, sizeof(*meta));
	if (meta == NULL)
		return ut_err_set(err, "%s: out of memory", path);
	for (int k = 0; k < META_INFO_COUNT; k++)
		meta[k] = (struct tr_st_meta){info_keys[k], values[k]};
	for (size_t i = 0; i < extra_count; i++)
		meta[META_INFO_COUNT + i] = extra[i];
	int rc = tr_st_write(path, tensors, count, meta, META_INFO_COUNT + extra_count, err);
	free(meta);
	return rc;
}

/* optimizer.<param>.<slot> must shadow a tensor <param> of the same dtype and shape. */
static int check_optimizer_tensor(const struct tr_st_file *file, const struct tr_st_tensor *t,
				  const char *path, struct ut_err *err)
{
	char qname[UT_QUOTE_LEN + 2], param[1024];
	quote(t->name, qname, sizeof(qname));
	const char *rest = t->name + strlen(OPTIMIZER_PREFIX);
	const char *dot = strrchr(rest, '.');
	size_t k = 0;
	while (dot != NULL && k < UT_ARRAY_LEN(optimizer_slots) &&
	       strcmp(dot + 1, optimizer_slots[k]) != 0)
		k++;
	if (dot == NULL || dot == rest || k == UT_ARRAY_LEN(optimizer_slots))
		return ut_err_set(
		    err, "%s: tensor %s: not optimizer.<param>.{momentum,exp_avg,exp_avg_sq}", path,
		    qname);
	if ((size_t)(dot - rest) >= sizeof(param))
		return ut_err_set(err, "%s: tensor %s: name too long", path, qname);
	memcpy(param, rest, (size_t)(dot - rest));
	param[dot - rest] = '\0';
	const struct tr_st_tensor *p = tr_st_find(file, param);
	if (p == NULL)
		return ut_err_set(err, "%s: tensor %s: no parameter tensor of that name", path,
				  qname);
	if (p->dtype != t->dtype || p->ndim != t->ndim ||
	    memcmp(p->shape, t->shape, sizeof(p->shape)) != 0)
		return ut_err_set(err, "%s: tensor %s: dtype or shape differs from its parameter's",
				  path, qname);
	return 0;
}

static int read_info(const struct tr_st_file *file, struct tr_ckpt_info *info, const char *path,
		     struct ut_err *err)
{
	const char *values[META_INFO_COUNT];
	for (int k = 0; k < META_INFO_COUNT; k++) {
		values[k] = tr_st_metadata(file, info_keys[k]);
		if (values[k] == NULL)
			return ut_err_set(err,
					  "%s: metadata %s missing (not a yolo-train checkpoint?)",
					  path, info_keys[k]);
	}
	char qvalue[UT_QUOTE_LEN + 2];
	if (strcmp(values[META_FORMAT], TR_CKPT_FORMAT) != 0)
		return ut_err_set(err, "%s: metadata format is %s, expected \"%s\"", path,
				  quote(values[META_FORMAT], qvalue, sizeof(qvalue)),
				  TR_CKPT_FORMAT);
	long epoch, updates;
	double fitness;
	if (ut_parse_long(values[META_EPOCH], -1, LONG_MAX, &epoch) != 0)
		return ut_err_set(err, "%s: metadata epoch %s is not an integer >= -1", path,
				  quote(values[META_EPOCH], qvalue, sizeof(qvalue)));
	if (ut_parse_double(values[META_BEST_FITNESS], &fitness) != 0)
		return ut_err_set(err, "%s: metadata best_fitness %s is not a finite number", path,
				  quote(values[META_BEST_FITNESS], qvalue, sizeof(qvalue)));
	if (ut_parse_long(values[META_EMA_UPDATES], 0, LONG_MAX, &updates) != 0)
		return ut_err_set(err, "%s: metadata ema_updates %s is not an integer >= 0", path,
				  quote(values[META_EMA_UPDATES], qvalue, sizeof(qvalue)));
	*info = (struct tr_ckpt_info){
	    .epoch = epoch,
	    .best_fitness = fitness,
	    .ema_updates = updates,
	    .model_yaml = values[META_MODEL_YAML],
	    .hyp = values[META_HYP],
	};
	return 0;
}

int tr_ckpt_read(const char *path, struct tr_ckpt_info *info, struct tr_st_file **out,
		 struct ut_err *err)
{
	struct tr_st_file *file;
	*out = NULL;
	if (tr_st_open(path, &file, err) != 0)
		return -1;
	int rc = read_info(file, info, path, err);
	for (size_t i = 0; i < file->count && rc == 0; i++) {
		const struct tr_st_tensor *t = &file->tensors[i];
		if (strncmp(t->name, OPTIMIZER_PREFIX, strlen(OPTIMIZER_PREFIX)) == 0)
			rc = check_optimizer_tensor(file, t, path, err);
	}
	if (rc != 0) {
		tr_st_close(file);
		return -1;
	}
	*out = file;
	return 0;
}
