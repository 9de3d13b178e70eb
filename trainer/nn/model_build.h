/*
 * model_build.h - between the two halves of the model (not for other
 * users): model_yaml.c builds the graph and registers the tensors,
 * model.c owns the memory.
 */
#ifndef TR_MODEL_BUILD_H
#define TR_MODEL_BUILD_H

#include "model.h"

/* One aligned block per tensor kind (params, grads, buffers, counters), then every named pointer
 * into them. */
int tr_model_allocate(struct tr_model *m, struct ut_err *err);

/* BN as YOLOv5's constructor leaves it (see model.h). */
void tr_model_reset_batchnorm(struct tr_model *m);

#endif
