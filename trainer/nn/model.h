/*
 * model.h - a YOLOv5 v7.0 detection network built from a YOLOv5 model yaml
 * (models/yolov5s.yaml ...), as YOLOv5's parse_model builds it: the layer
 * graph, its tensors under YOLOv5's state_dict names, and YOLOv5's
 * initialisation.
 *
 * How to use it:
 *   struct tr_model *model;
 *   tr_model_from_file("models/yolov5s.yaml", 2, &model, &err);  // nc = 2
 *   tr_model_init(model, &rng);             // from-scratch weights, host mirror
 *   tr_model_find(model, "model.24.m.0.bias")->data[4];  // host mirror
 *   tr_model_plan(model, be, 16, 640, 640, &err);  // device memory once, uploads
 *   tr_model_forward(model, be, images, 16, 640, 640, 1, &err);  // train mode
 *   model->detect.outputs[0];               // [16, 3, 80, 80, nc + 5], device
 *   be->ops->memset(be, model->grads, 0, model->nparam_values * sizeof(float), &err);
 *   tr_model_backward(model, be, dloss_doutputs, &err);  // grads += ...
 *   tr_model_download(model, &err);         // device state to the host mirror
 *   tr_model_free(model);                   // before the backend is destroyed
 *
 * Memory follows llm.c: every parameter lives in ONE float allocation
 * (model->params), their gradients in one more of the same layout
 * (model->grads, so zeroing them is one memset), the float buffers (BN
 * running statistics, anchors) in a third, all three device memory of the
 * backend given to tr_model_plan (see ops.h), with the activations and
 * their gradients. struct tr_convbn and struct tr_detect_head hold named
 * pointers into that device memory, and so does tensors[i].grad.
 *
 * The state also has a HOST MIRROR of the same layout (host_params,
 * host_buffers), made with the model: tensors[i].data points into it, and
 * initialisation, checkpoints and AutoAnchor read and write it. The first
 * tr_model_plan* uploads it; after that tr_model_upload and
 * tr_model_download move it explicitly. The BN batch counters (int64) are
 * host memory only (counters, tensors[i].counter): the host counts.
 *
 * Supported modules: Conv, C3, SPPF, nn.Upsample, Concat, Detect, with
 * groups = 1 and dilation = 1 (what YOLOv5's P5 models use).
 */
#ifndef TR_MODEL_H
#define TR_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "ops.h"
#include "pcg.h"
#include "ut.h"

#define TR_NAME_LEN 64	 /* longest state_dict key, with its NUL */
#define TR_MAX_FROM 8	 /* inputs of one layer (Concat, Detect) */
#define TR_MAX_LEVELS 8	 /* Detect output levels */
#define TR_FROM_INPUT -1 /* a layer input that is the image itself */

/* YOLOv5's BatchNorm2d settings after initialize_weights(). */
#define TR_BN_EPS 1e-3f
#define TR_BN_MOMENTUM 0.03f

enum tr_layer_type {
	TR_LAYER_CONV,	   /* Conv: conv (no bias) + BN + SiLU */
	TR_LAYER_C3,	   /* C3: CSP block of n bottlenecks */
	TR_LAYER_SPPF,	   /* SPPF: cv1, three chained max pools, concat, cv2 */
	TR_LAYER_UPSAMPLE, /* nn.Upsample(None, 2, 'nearest') */
	TR_LAYER_CONCAT,   /* Concat along channels */
	TR_LAYER_DETECT,   /* Detect: one 1x1 conv with bias per level */
};

/* What a tensor of the table is, and so which allocation holds it. */
enum tr_tensor_kind {
	TR_TENSOR_PARAM,   /* trainable: in params, with a gradient in grads */
	TR_TENSOR_BUFFER,  /* float state (running_mean/var, anchors) */
	TR_TENSOR_COUNTER, /* int64 state (num_batches_tracked) */
};

/*
 * One state_dict entry. ndim 0 is a scalar (num_batches_tracked is 0-d in
 * PyTorch's state_dict).
 */
struct tr_tensor_spec {
	char name[TR_NAME_LEN];
	enum tr_tensor_kind kind;
	int ndim;
	int shape[4];
	size_t numel;
	size_t offset;	  /* in elements, within its kind's allocation */
	float *data;	  /* PARAM and BUFFER: in the host mirror */
	float *grad;	  /* PARAM only: device memory, NULL until tr_model_plan */
	int64_t *counter; /* COUNTER only (host) */
};

/*
 * YOLOv5's Conv block: y = silu(bn(conv(x))). Its six state_dict entries are
 * model->tensors[tensor0 .. tensor0 + 5]: conv.weight, bn.weight, bn.bias,
 * bn.running_mean, bn.running_var, bn.num_batches_tracked.
 */
struct tr_convbn {
	struct tr_conv conv;
	int tensor0;
	float *weight;			   /* [cout, cin, k, k] */
	float *gamma, *beta;		   /* [cout] */
	float *running_mean, *running_var; /* [cout] */
	int64_t *num_batches_tracked;
	float *grad_weight, *grad_gamma, *grad_beta;
	/* activations (tr_model_plan): conv output, BN output, SiLU output, [n, cout, h, w] */
	float *conv_out, *bn_out, *out;
	float *save_mean, *save_invstd; /* [cout], BN batch statistics for the backward pass */
	/* activation gradient (tr_model_plan), [n, cout, h, w]: dLoss/d out, then, in place,
	 * dLoss/d bn_out and dLoss/d conv_out as the backward pass goes through SiLU and BN */
	float *grad;
};

/* One Detect output conv: [na * no, cin, 1, 1] weight and [na * no] bias. */
struct tr_detect_head {
	struct tr_conv conv;
	int tensor0; /* weight, then bias */
	float *weight, *bias;
	float *grad_weight, *grad_bias;
};

struct tr_detect {
	int layer;	    /* its index in model->layers (the last one) */
	int nc, na, no, nl; /* classes, anchors per level, nc + 5, levels */
	int stride[TR_MAX_LEVELS];
	struct tr_detect_head heads[TR_MAX_LEVELS];
	int anchors_tensor;
	float *anchors; /* [nl, na, 2] in grid units (pixels / stride), device; the host
			   mirror is tensors[anchors_tensor].data */
	/* activations (tr_model_plan) */
	float *raw[TR_MAX_LEVELS];     /* conv outputs [n, na * no, ny, nx] */
	float *outputs[TR_MAX_LEVELS]; /* YOLOv5's raw level outputs [n, na, ny, nx, no] */
	float *decoded;		       /* eval mode: [n, sum over levels of na * ny * nx, no] */
	int cells;		       /* that sum, for the last forward's image size */
	float *grad_raw; /* backward: dLoss/d raw[l], one level at a time (the largest's size) */
};

/*
 * One row of the yaml. from[] holds absolute layer indices (YOLOv5's
 * relative -1, -2 ... resolved) or TR_FROM_INPUT. For Conv, C3 and SPPF
 * the layer's Conv blocks are model->convs[conv0 .. conv0 + nconv), in
 * state_dict order: Conv: itself; C3: cv1, cv2, cv3, then m.j.cv1, m.j.cv2
 * for each bottleneck j; SPPF: cv1, cv2.
 */
struct tr_layer {
	enum tr_layer_type type;
	int nfrom;
	int from[TR_MAX_FROM];
	int cin, cout;		   /* cin: the sum over the inputs */
	int stride;		   /* downsampling of its output relative to the image */
	int repeats;		   /* the yaml's number after depth scaling */
	int bottlenecks, shortcut; /* C3 */
	int pool_k;		   /* SPPF */
	int conv0, nconv;
	int64_t nparams;
	int line; /* in the yaml, 1-based */
	/* activations (tr_model_plan): the output [n, cout, h, w], and for C3 the
	 * bottleneck outputs (with shortcut) and the concat [n, 2 * hidden, h, w],
	 * for SPPF the three pools and the concat [n, 4 * hidden, h, w] */
	float *out, *inner, *cat;
	/* activation gradients (tr_model_plan): grad = dLoss/d out (for Conv, C3 and SPPF
	 * the grad of the Conv block that makes out); grad_cat = dLoss/d cat; grad_inner:
	 * C3 with shortcut, dLoss/d the bottleneck chain [n, hidden, h, w]; SPPF, dLoss/d
	 * the three pools [3][n, hidden, h, w] */
	float *grad, *grad_cat, *grad_inner;
	int grad_written; /* backward: grad holds a consumer's contribution (others add to it) */
};

struct tr_model {
	char source[256]; /* file name for messages */
	int nc, in_channels;
	double depth_multiple, width_multiple;
	int nlayers;
	struct tr_layer *layers;
	int nconvs;
	struct tr_convbn *convs;
	struct tr_detect detect;
	int ntensors;
	struct tr_tensor_spec *tensors; /* state_dict order */
	size_t nparam_values, nbuffer_values, ncounter_values;
	/* the host mirror of params and buffers, and the counters (host only) */
	float *host_params, *host_buffers;
	int64_t *counters;
	/* device memory (tr_model_plan*) on backend: parameters, gradients (tr_model_plan
	 * only), buffers */
	struct tr_backend *backend;
	float *params, *grads, *buffers;
	/* activations: one block for the largest batch and image size */
	int max_batch, max_height, max_width, max_stride;
	/* room for one input batch of that size, for callers (validation): its bytes as the
	 * loader makes them and the floats the backend's images_to_float makes (device) */
	uint8_t *input_u8;
	float *input;
	size_t nact_values;
	float *acts;
	/* activation gradients: one block of the same plan, and a scratch slice as large as
	 * the largest activation, where a second consumer's gradient lands before it is added */
	size_t nact_grad_values;
	float *act_grads, *scratch;
	/* the last forward pass, which tr_model_backward differentiates */
	int fwd_batch, fwd_height, fwd_width, fwd_train;
	const float *fwd_images;
};

/*
 * Build the network of a YOLOv5 model yaml. nc > 0 overrides the yaml's nc
 * (YOLOv5's Model(cfg, nc=...)); 0 keeps it. The model comes back with
 * YOLOv5's deterministic state after construction: conv weights and Detect
 * biases zero (call tr_model_init), BN weight 1 and bias 0, running_mean 0,
 * running_var 0.9 and num_batches_tracked 1 (YOLOv5's constructor runs one
 * train-mode probe forward of a zero image with PyTorch's default momentum
 * 0.1, before it sets momentum 0.03), anchors in grid units. On error
 * returns -1 with one line naming the file, line and layer at fault.
 */
int tr_model_from_file(const char *path, int nc, struct tr_model **out, struct ut_err *err);
/* The same from yaml text; source names it in messages. */
int tr_model_from_text(const char *text, size_t len, const char *source, int nc,
		       struct tr_model **out, struct ut_err *err);
/*
 * The same with YOLOv5's Model(cfg, anchors=N): anchors_count > 0 replaces
 * the yaml's top-level anchors by that count per level (placeholder anchors
 * 0, 1, 2, ... that AutoAnchor then replaces); 0 keeps the yaml's.
 */
int tr_model_from_text_anchors(const char *text, size_t len, const char *source, int nc,
			       int anchors_count, struct tr_model **out, struct ut_err *err);
void tr_model_free(struct tr_model *model);

/*
 * YOLOv5's from-scratch initialisation, in the host mirror (upload it to a
 * planned model): every conv weight and Detect bias
 * drawn as PyTorch's default Conv2d init does (uniform in +-1/sqrt(fan_in)),
 * from rng in state_dict order, then tr_detect_bias_prior(). BN parameters
 * and buffers are reset to the state tr_model_from_* describes.
 */
void tr_model_init(struct tr_model *model, struct ut_pcg *rng);
/*
 * Add YOLOv5's Detect bias prior to the current biases (host mirror): objectness
 * log(8 / (640 / stride)^2), classes log(0.6 / (nc - 0.99999)).
 */
void tr_detect_bias_prior(struct tr_model *model);

/*
 * Plan and allocate the activations once on backend, for batches of up to
 * max_batch images of up to max_height x max_width pixels (multiples of the
 * largest stride, 32 for the P5 models). The first call also puts the
 * parameters, their gradients (zero) and the buffers on backend and
 * uploads the host mirror; calling it again replaces the activations (the
 * same backend only). The model must be freed before the backend.
 */
int tr_model_plan(struct tr_model *model, struct tr_backend *backend, int max_batch, int max_height,
		  int max_width, struct ut_err *err);
/*
 * The same without any gradients, for a model that only infers (the EMA
 * copy, yolo-val): forward passes work, tr_model_backward fails.
 */
int tr_model_plan_inference(struct tr_model *model, struct tr_backend *backend, int max_batch,
			    int max_height, int max_width, struct ut_err *err);

/*
 * The host mirror of the parameters and buffers to the device
 * (tr_model_upload: after host code changed the mirror, e.g. a checkpoint
 * loaded or AutoAnchor) or back (tr_model_download: before host code reads
 * the trained state, e.g. to save it; a model without a backend has
 * nothing to download).
 */
int tr_model_upload(struct tr_model *model, struct ut_err *err);
int tr_model_download(struct tr_model *model, struct ut_err *err);

/*
 * The forward pass of images [batch, in_channels, height, width], device
 * memory of the model's backend (within the plan; height and width
 * multiples of max_stride). train: BN with
 * batch statistics, updating the running statistics and counters as
 * PyTorch does; otherwise BN with the running statistics, and
 * detect.decoded filled as YOLOv5's Detect does at inference (sigmoid, xy
 * in pixels from the grid, wh from the anchors). Both fill
 * detect.outputs[l], YOLOv5's raw level outputs.
 */
int tr_model_forward(struct tr_model *model, struct tr_backend *backend, const float *images,
		     int batch, int height, int width, int train, struct ut_err *err);

/*
 * The backward pass of the last forward, which must have been in train mode
 * (it uses the saved BN batch statistics and every activation) and whose
 * images must still be there, unchanged (the first conv's weight gradient
 * reads them).
 * dout[l] = dLoss/d detect.outputs[l], YOLOv5's raw level outputs
 * [batch, na, ny, nx, no], device memory. Parameter gradients ACCUMULATE into
 * model->grads (+=; zero them with one memset of nparam_values floats),
 * so calling it for several batches sums their gradients. Activation
 * gradients live in the planned block; nothing is allocated (the backend
 * may grow its convolution workspace the first time a shape appears).
 * The gradient with respect to the images is not computed.
 */
int tr_model_backward(struct tr_model *model, struct tr_backend *backend, const float *const *dout,
		      struct ut_err *err);

/* Trainable values (YOLOv5's "parameters" count). */
int64_t tr_model_num_params(const struct tr_model *model);
/* A tensor by its state_dict name, or NULL. */
struct tr_tensor_spec *tr_model_find(const struct tr_model *model, const char *name);
/* parse_model's summary: one line per layer (index, from, n, params, module, cout, stride). */
int tr_model_describe(const struct tr_model *model, struct ut_buf *out);

#endif
