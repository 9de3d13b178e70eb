/*
 * fuzz_safetensors.c - libFuzzer target for tr_st_parse, the in-memory
 * safetensors reader.
 *
 * Any input must give 0, or -1 with a one-line message naming the source.
 * An accepted file must satisfy the invariants the reader promises: every
 * tensor inside the data section, the tensors tiling it in offset order,
 * numel and nbytes agreeing with shape and dtype, natural alignment,
 * tr_st_find finding each tensor under its own name; and it must survive
 * tr_st_serialize -> tr_st_parse with the same tensors and metadata.
 * Seeds: corpus/safetensors.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define LABEL "fuzz-input"

static void check_message(int rc, const struct ut_err *err)
{
	if (rc != -1 || strncmp(err->msg, LABEL ": ", strlen(LABEL) + 2) != 0 ||
	    strchr(err->msg, '\n') != NULL)
		abort();
}

static void check_tensors(const struct tr_st_file *file, const uint8_t *buf, size_t size)
{
	uint64_t header_len = 0;
	memcpy(&header_len, buf, 8);
	if (header_len % 8 != 0 || header_len > size - 8)
		abort();
	const uint8_t *data = buf + 8 + header_len;
	size_t data_len = size - 8 - (size_t)header_len, cursor = 0;
	for (size_t i = 0; i < tr_st_count(file); i++) {
		const struct tr_st_tensor *t = tr_st_tensor_at(file, i);
		size_t elem = tr_st_dtype_size(t->dtype);
		if (elem == 0 || t->name[0] == '\0' || t->ndim < 0 || t->ndim > TR_ST_MAX_DIMS)
			abort();
		size_t numel = 1;
		for (int d = 0; d < TR_ST_MAX_DIMS; d++) {
			if (d < t->ndim && t->shape[d] < 0)
				abort();
			if (d >= t->ndim && t->shape[d] != 0)
				abort();
			if (d < t->ndim)
				numel *= (size_t)t->shape[d];
		}
		if (numel != t->numel || t->nbytes != numel * elem || t->offset != cursor ||
		    t->data != data + t->offset || t->offset % elem != 0 ||
		    (uintptr_t)t->data % elem != 0)
			abort();
		cursor += t->nbytes;
		if (cursor > data_len || tr_st_find(file, t->name) != t)
			abort();
	}
	if (cursor != data_len || tr_st_tensor_at(file, tr_st_count(file)) != NULL)
		abort();
	for (size_t i = 0; i < tr_st_metadata_count(file); i++) {
		const char *key, *value;
		if (tr_st_metadata_at(file, i, &key, &value) != 0 || key[0] == '\0' ||
		    tr_st_metadata(file, key) != value)
			abort();
	}
}

/* Serialize what was read, read it back, and insist on the same content. */
static void check_round_trip(const struct tr_st_file *file)
{
	size_t count = tr_st_count(file), meta_count = tr_st_metadata_count(file);
	struct tr_st_entry *tensors = calloc(count + 1, sizeof(*tensors));
	struct tr_st_meta *meta = calloc(meta_count + 1, sizeof(*meta));
	if (tensors == NULL || meta == NULL)
		abort();
	for (size_t i = 0; i < count; i++) {
		const struct tr_st_tensor *t = tr_st_tensor_at(file, i);
		tensors[i] = (struct tr_st_entry){t->name, t->dtype, t->ndim, t->shape, t->data};
	}
	for (size_t i = 0; i < meta_count; i++)
		if (tr_st_metadata_at(file, i, &meta[i].key, &meta[i].value) != 0)
			abort();
	char *image;
	size_t len;
	struct ut_err err;
	struct tr_st_file *back;
	if (tr_st_serialize(tensors, count, meta, meta_count, &image, &len, &err) != 0 ||
	    tr_st_parse(image, len, "round trip", &back, &err) != 0)
		abort();
	if (tr_st_count(back) != count || tr_st_metadata_count(back) != meta_count)
		abort();
	for (size_t i = 0; i < count; i++) {
		const struct tr_st_tensor *t = tr_st_tensor_at(file, i);
		const struct tr_st_tensor *u = tr_st_find(back, t->name);
		if (u == NULL || u->dtype != t->dtype || u->ndim != t->ndim ||
		    memcmp(u->shape, t->shape, sizeof(t->shape)) != 0 || u->nbytes != t->nbytes ||
		    (t->nbytes > 0 && memcmp(u->data, t->data, t->nbytes) != 0))
			abort();
	}
	for (size_t i = 0; i < meta_count; i++) {
		const char *value = tr_st_metadata(back, meta[i].key);
		if (value == NULL || strcmp(value, meta[i].value) != 0)
			abort();
	}
	tr_st_close(back);
	free(image);
	free(tensors);
	free(meta);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* an 8-byte aligned copy, as tr_st_open's buffer is */
	uint8_t *buf = malloc(size + 1);
	if (buf == NULL)
		return 0;
	if (size > 0)
		memcpy(buf, data, size);
	struct tr_st_file *file = NULL;
	struct ut_err err = {{0}};
	int rc = tr_st_parse(buf, size, LABEL, &file, &err);
	if (rc == 0) {
		check_tensors(file, buf, size);
		check_round_trip(file);
		tr_st_close(file);
	} else {
		check_message(rc, &err);
		if (file != NULL)
			abort();
	}
	free(buf);
	return 0;
}
