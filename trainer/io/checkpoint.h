/*
 * checkpoint.h - a model's tensors to and from safetensors files under
 * YOLOv5's state_dict names, so weights move between yolo-train and
 * PyTorch YOLOv5 (scripts/yolov5_to_safetensors.py writes the other side).
 */
#ifndef TR_CHECKPOINT_H
#define TR_CHECKPOINT_H

#include "model.h"
#include "safetensors.h"

/*
 * Write every tensor of the model (parameters and buffers as F32, batch
 * counters as I64). With info != NULL the file is a yolo-train checkpoint
 * (tr_ckpt_write: epoch, best fitness, ...); without, a plain state_dict.
 */
int tr_model_save(const struct tr_model *model, const char *path, const struct tr_ckpt_info *info,
		  struct ut_err *err);

/*
 * Load the model's tensors from a safetensors file (a checkpoint or a plain
 * state_dict). Every model tensor must be there with its shape (a 0-d
 * counter may be stored as [1]); a `model.*` tensor the model does not have
 * (say, another nc) is an error too. Other tensors are ignored. Errors name
 * the file and the tensor; on error the model is unchanged.
 */
int tr_model_load(struct tr_model *model, const char *path, struct ut_err *err);
/*
 * The same for tensors stored under "<prefix><state_dict key>": a
 * yolo-train checkpoint keeps the EMA weights under the prefix "ema.".
 */
int tr_model_load_prefix(struct tr_model *model, const char *path, const char *prefix,
			 struct ut_err *err);

#endif
