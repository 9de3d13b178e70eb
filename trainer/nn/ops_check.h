/*
 * ops_check.h - the shape checks every backend of the op table (ops.h)
 * makes before it runs an op: one implementation, so the CPU and CUDA
 * backends accept the same calls and refuse the others with the same
 * one-line messages ("OP: what has shape NxCxHxW, expected ..."). Each
 * returns 0, or -1 with err set; op names the op in the message.
 */
#ifndef TR_OPS_CHECK_H
#define TR_OPS_CHECK_H

#include "ops.h"

/* 1 when a and b are the same shape, else 0. */
int tr_shape_same(struct tr_shape a, struct tr_shape b);
/* Always -1: "op: what has shape got, expected want". */
int tr_shape_error(struct ut_err *err, const char *op, const char *what, struct tr_shape got,
		   struct tr_shape want);
/* A convolution's parameters, its input in and output out (tr_conv_out_shape's). */
int tr_conv_check(const char *op, const struct tr_conv *conv, struct tr_shape in,
		  struct tr_shape out, struct ut_err *err);
/* Max pool k x k, stride 1, pad k / 2: k odd, y the shape of x. */
int tr_pool_check(const char *op, int k, struct tr_shape x, struct tr_shape y, struct ut_err *err);
/* 2x nearest upsample: big is small with twice the height and width. */
int tr_upsample_check(const char *op, struct tr_shape small, struct tr_shape big,
		      struct ut_err *err);
/* Channel concat: parts share n, h, w with whole and their channels add up to its. */
int tr_concat_check(const char *op, const struct tr_tensor *const *parts, int count,
		    struct tr_shape whole, struct ut_err *err);
/*
 * SyncBatchNorm's per-channel passes (bn_channel_sums, bn_channel_affine):
 * x holds at least one value, dy (NULL: none) and out (NULL: none) have
 * its shape.
 */
int tr_bn_channel_check(const char *op, const struct tr_tensor *x, const struct tr_tensor *dy,
			const struct tr_tensor *out, struct ut_err *err);
/* A Detect level of na anchors: s.c = na * no with no >= 6 (nc + 5, nc >= 1). */
int tr_detect_check(const char *op, int na, struct tr_shape s, struct ut_err *err);
/* Quad collate: 4 or more images, every dimension positive. */
int tr_quad_check(const char *op, struct tr_shape s, struct ut_err *err);
/* The loss scaler's unscale: inv_scale positive and finite, found_inf (host) not NULL. */
int tr_amp_unscale_check(const char *op, float inv_scale, const int *found_inf, struct ut_err *err);
/*
 * A cast of n values between x (x_size bytes a value) and y (y_size bytes a
 * value): both set when n > 0, and not overlapping.
 */
int tr_cast_check(const char *op, const void *x, size_t x_size, const void *y, size_t y_size,
		  size_t n, struct ut_err *err);

#endif
