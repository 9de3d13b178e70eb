/*
 * checkpoint.c - model tensors <-> safetensors (see checkpoint.h).
 */
#include "checkpoint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int tr_model_save(const struct tr_model *model, const char *path, const struct tr_ckpt_info *info,
		  struct ut_err *err)
{
	struct tr_st_entry *entries = calloc((size_t)model->ntensors, sizeof(*entries));
	int64_t(*shapes)[4] = calloc((size_t)model->ntensors, sizeof(*shapes));
	if (entries == NULL || shapes == NULL) {
		free(entries);
		free(shapes);
		return ut_err_set(err, "%s: out of memory", path);
	}
	for (int t = 0; t < model->ntensors; t++) {
		const struct tr_tensor_spec *spec = &model->tensors[t];
		for (int d = 0; d < spec->ndim; d++)
			shapes[t][d] = spec->shape[d];
		int counter = spec->kind == TR_TENSOR_COUNTER;
		entries[t] = (struct tr_st_entry){
		    spec->name, counter ? TR_ST_I64 : TR_ST_F32, spec->ndim, shapes[t],
		    counter ? (const void *)spec->counter : (const void *)spec->data};
	}
	int rc = info != NULL
		     ? tr_ckpt_write(path, info, entries, (size_t)model->ntensors, NULL, 0, err)
		     : tr_st_write(path, entries, (size_t)model->ntensors, NULL, 0, err);
	free(entries);
	free(shapes);
	return rc;
}

/* Does the stored tensor fit the model's (a counter may be [] or [1])? */
static int check_tensor(const struct tr_tensor_spec *spec, const struct tr_st_tensor *stored,
			const char *path, struct ut_err *err)
{
	int counter = spec->kind == TR_TENSOR_COUNTER;
	if (stored == NULL)
		return ut_err_set(err, "%s: tensor '%s' missing", path, spec->name);
	if (stored->dtype != (counter ? TR_ST_I64 : TR_ST_F32))
		return ut_err_set(err, "%s: tensor '%s': dtype %s, expected %s", path, spec->name,
				  tr_st_dtype_name(stored->dtype), counter ? "I64" : "F32");
	int same = stored->numel == spec->numel && (counter || stored->ndim == spec->ndim);
	for (int d = 0; same && !counter && d < spec->ndim; d++)
		same = stored->shape[d] == spec->shape[d];
	if (!same) {
		char want[64] = "", got[64] = "";
		size_t w = 0, g = 0;
		for (int d = 0; d < spec->ndim; d++)
			w += (size_t)snprintf(want + w, sizeof(want) - w, "%s%d", d ? "," : "",
					      spec->shape[d]);
		for (int d = 0; d < stored->ndim && g < sizeof(got); d++)
			g += (size_t)snprintf(got + g, sizeof(got) - g, "%s%lld", d ? "," : "",
					      (long long)stored->shape[d]);
		return ut_err_set(err, "%s: tensor '%s': shape [%s], the model has [%s]", path,
				  spec->name, got, want);
	}
	return 0;
}

int tr_model_load(struct tr_model *model, const char *path, struct ut_err *err)
{
	return tr_model_load_prefix(model, path, "", err);
}

/* The stored name of a model tensor: prefix + state_dict key. */
static const struct tr_st_tensor *find_prefixed(const struct tr_st_file *file, const char *prefix,
						const char *name)
{
	char full[TR_NAME_LEN + 64];
	snprintf(full, sizeof(full), "%s%s", prefix, name);
	return tr_st_find(file, full);
}

int tr_model_load_prefix(struct tr_model *model, const char *path, const char *prefix,
			 struct ut_err *err)
{
	struct tr_st_file *file;
	if (tr_st_open(path, &file, err) != 0)
		return -1;
	int rc = 0;
	size_t plen = strlen(prefix);
	/* check everything first, so that a bad file changes nothing */
	for (int t = 0; rc == 0 && t < model->ntensors; t++)
		rc = check_tensor(&model->tensors[t],
				  find_prefixed(file, prefix, model->tensors[t].name), path, err);
	char q[UT_QUOTE_LEN];
	for (size_t i = 0; rc == 0 && i < tr_st_count(file); i++) {
		const char *name = tr_st_tensor_at(file, i)->name;
		if (strncmp(name, prefix, plen) == 0 && strncmp(name + plen, "model.", 6) == 0 &&
		    tr_model_find(model, name + plen) == NULL)
			rc = ut_err_set(err, "%s: tensor '%s' is not part of this model (%s)", path,
					ut_quote(name, q, sizeof(q)), model->source);
	}
	for (int t = 0; rc == 0 && t < model->ntensors; t++) {
		const struct tr_tensor_spec *spec = &model->tensors[t];
		const struct tr_st_tensor *stored = find_prefixed(file, prefix, spec->name);
		if (spec->kind == TR_TENSOR_COUNTER)
			memcpy(spec->counter, stored->data, spec->numel * sizeof(int64_t));
		else
			memcpy(spec->data, stored->data, spec->numel * sizeof(float));
	}
	tr_st_close(file);
	return rc;
}
