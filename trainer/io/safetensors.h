/*
 * safetensors.h - read and write .safetensors files, and yolo-train's
 * checkpoints on top of them.
 *
 * The format: an 8-byte little-endian length N, N bytes of JSON, then the
 * raw little-endian tensor data. The JSON maps each tensor name to
 * {"dtype": "F32", "shape": [16, 3, 6, 6], "data_offsets": [b, e]}, offsets
 * relative to the start of the data section; an optional "__metadata__"
 * entry maps strings to strings.
 *
 * Reading (the file is read whole into memory, then validated):
 *
 *	struct tr_st_file *file;
 *	if (tr_st_open("last.safetensors", &file, &err) != 0)
 *		return -1;                       // err names file and field
 *	const struct tr_st_tensor *w = tr_st_find(file, "model.0.conv.weight");
 *	if (w != NULL && w->dtype == TR_ST_F32)
 *		use((const float *)w->data, w->shape, w->ndim);
 *	tr_st_close(file);                       // w is invalid from here
 *
 * What a file must satisfy to be accepted (anything else is an error naming
 * the file and the tensor or field, never a crash): N % 8 == 0 (the header
 * is space-padded, so the data section is 8-byte aligned) and 8 + N within
 * the file; the header a JSON object starting with '{' followed only by
 * spaces; no duplicate names (JSON allows them, we reject them rather than
 * silently keep one); each entry an object with exactly dtype, shape and
 * data_offsets; dtype one of F64 F32 F16 BF16 I64 U8; shape a list of at
 * most TR_ST_MAX_DIMS non-negative integers; data_offsets [b, e] with
 * e - b = numel * element size and b a multiple of the element size; the
 * tensors tile the data section exactly (no overlap, no hole, nothing
 * after the last one), as the reference writer and the Rust safetensors
 * reader require; "__metadata__" an object of string values.
 *
 * Writing lays tensors out by descending element size (8-byte, then 4, 2,
 * 1; the given order kept within one size), so each is naturally aligned,
 * writes the JSON compactly in that order with "__metadata__" last, pads it
 * with spaces to a multiple of 8, and replaces the file atomically. This is
 * what ../shared/reference/make_golden.py's write_safetensors does, so
 * rewriting a golden file's tensors in its order gives the same bytes.
 *
 * Checkpoints (tr_ckpt_*) are safetensors files whose tensor names are
 * YOLOv5's state_dict keys ("model.0.conv.weight", "model.24.anchors"),
 * optimizer state as "optimizer.<param name>.<slot>" tensors of the param's
 * dtype and shape (slot "momentum" for SGD, "exp_avg" and "exp_avg_sq" for
 * Adam/AdamW) and metadata format, epoch, best_fitness, ema_updates,
 * model_yaml and hyp.
 *
 * The data is stored little-endian and handed out as is: this code only
 * builds on little-endian hosts.
 */
#ifndef TR_SAFETENSORS_H
#define TR_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "ut.h"

#define TR_ST_MAX_DIMS 8

enum tr_st_dtype { TR_ST_F64, TR_ST_F32, TR_ST_F16, TR_ST_BF16, TR_ST_I64, TR_ST_U8 };

/* "F32" etc.; NULL for a value outside the enum. */
const char *tr_st_dtype_name(enum tr_st_dtype dtype);
/* Bytes per element (8, 4, 2 or 1); 0 for a value outside the enum. */
size_t tr_st_dtype_size(enum tr_st_dtype dtype);

/* One tensor of an open file; valid until tr_st_close. */
struct tr_st_tensor {
	const char *name;
	enum tr_st_dtype dtype;
	int ndim;		       /* 0 for a scalar ("shape": []) */
	int64_t shape[TR_ST_MAX_DIMS]; /* shape[ndim..] are 0 */
	size_t numel;		       /* product of shape; 1 for a scalar */
	size_t nbytes;		       /* numel * element size */
	size_t offset;		       /* data_offsets[0], from the data start */
	const void *data;	       /* naturally aligned if the buffer is */
};

struct tr_st_file; /* opaque */

/*
 * Read and validate a whole file. On success *out holds the file (close it
 * with tr_st_close); on failure *out is NULL and err names the file and the
 * tensor or field at fault.
 */
int tr_st_open(const char *path, struct tr_st_file **out, struct ut_err *err);

/*
 * Validate len bytes of a safetensors image in memory. The result borrows
 * buf (keep it alive and unchanged until tr_st_close); data pointers are
 * naturally aligned when buf is 8-byte aligned. label names the source in
 * error messages.
 */
int tr_st_parse(const void *buf, size_t len, const char *label, struct tr_st_file **out,
		struct ut_err *err);

/* Free everything; NULL is fine. */
void tr_st_close(struct tr_st_file *file);

/* Number of tensors (metadata not counted). */
size_t tr_st_count(const struct tr_st_file *file);
/* Tensor i, 0 <= i < count, in file (data offset) order; NULL out of range. */
const struct tr_st_tensor *tr_st_tensor_at(const struct tr_st_file *file, size_t i);
/* Tensor by name (binary search); NULL when absent. */
const struct tr_st_tensor *tr_st_find(const struct tr_st_file *file, const char *name);

/* Number of metadata entries, and entry i in header order. */
size_t tr_st_metadata_count(const struct tr_st_file *file);
int tr_st_metadata_at(const struct tr_st_file *file, size_t i, const char **key,
		      const char **value);
/* Value of a metadata key; NULL when absent. */
const char *tr_st_metadata(const struct tr_st_file *file, const char *key);

/* A tensor to write; data holds numel * element size bytes. */
struct tr_st_entry {
	const char *name;
	enum tr_st_dtype dtype;
	int ndim;
	const int64_t *shape; /* ndim entries; may be NULL when ndim == 0 */
	const void *data;     /* may be NULL when numel == 0 */
};

/* A metadata entry; keys must be unique and not empty. */
struct tr_st_meta {
	const char *key;
	const char *value;
};

/*
 * Serialize tensors and metadata (either list may be empty) into a
 * malloc'ed image (*out, *len; free it). Names must be unique, not empty
 * and not "__metadata__"; err names the first bad entry.
 */
int tr_st_serialize(const struct tr_st_entry *tensors, size_t count, const struct tr_st_meta *meta,
		    size_t meta_count, char **out, size_t *len, struct ut_err *err);

/*
 * Write the same image to path atomically (a temporary file in the same
 * folder, fsync'ed, then renamed over path), streaming the tensor data.
 */
int tr_st_write(const char *path, const struct tr_st_entry *tensors, size_t count,
		const struct tr_st_meta *meta, size_t meta_count, struct ut_err *err);

/* --- yolo-train checkpoints --- */

#define TR_CKPT_FORMAT "yolo-evolve-checkpoint-1"

/* The scalars and texts of a checkpoint, stored as metadata. */
struct tr_ckpt_info {
	long epoch;		/* last finished epoch (YOLOv5's ckpt['epoch']) */
	double best_fitness;	/* stored as Python repr, exact round trip */
	long ema_updates;	/* ModelEMA.updates */
	const char *model_yaml; /* the model yaml text */
	const char *hyp;	/* the hyperparameter yaml text */
};

/*
 * Build "optimizer.<param>.<slot>" in buf; -1 (err set) if it does not fit.
 * Slots: "momentum" (SGD), "exp_avg", "exp_avg_sq" (Adam, AdamW).
 */
int tr_ckpt_optimizer_name(char *buf, size_t size, const char *param, const char *slot,
			   struct ut_err *err);

/*
 * Write a checkpoint: the tensors (model state and optimizer.* tensors),
 * the info as metadata (format, epoch, best_fitness, ema_updates,
 * model_yaml, hyp), then extra metadata (may be NULL/0; must not reuse
 * those keys).
 */
int tr_ckpt_write(const char *path, const struct tr_ckpt_info *info,
		  const struct tr_st_entry *tensors, size_t count, const struct tr_st_meta *extra,
		  size_t extra_count, struct ut_err *err);

/*
 * Read a checkpoint: tr_st_open, then insist on format ==
 * TR_CKPT_FORMAT, all info keys present and well formed, and every
 * optimizer.<param>.<slot> tensor matching the dtype and shape of a tensor
 * <param> in the file. On success *out is the open file and info's texts
 * point into it (valid until tr_st_close).
 */
int tr_ckpt_read(const char *path, struct tr_ckpt_info *info, struct tr_st_file **out,
		 struct ut_err *err);

#endif
