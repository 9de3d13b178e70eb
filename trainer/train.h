/*
 * train.h - YOLOv5 v7.0's train.py as a library call: the run yolo-train
 * makes from its options (trainer/yolo_train.c parses them).
 *
 *	struct tr_train_opts opts;
 *	tr_train_defaults(&opts);            // train.py's defaults
 *	opts.cfg = "models/yolov5n.yaml"; opts.data = "data.yaml"; ...
 *	int rc = tr_train(&opts, &err);       // 0 done, TR_TRAIN_STOPPED, -1 error
 *
 * What one run does, as train.py: save_dir (project/name, incremented
 * unless exist_ok), hyp.yaml and opt.yaml there; data and model (from the
 * model yaml, from-scratch init or --weights); optional freeze; the loaders;
 * AutoAnchor; YOLOv5's optimizer groups, warmup, schedule, accumulation and
 * EMA; per epoch training, validation of the EMA model (every epoch, or only
 * the last with noval), a results.csv row, last/best checkpoints; early
 * stopping; resume from a checkpoint.
 *
 * DDP, as `python -m torch.distributed.run --nproc_per_node N train.py
 * --device 0,1,...`: one process, one thread per rank. WORLD_SIZE is the
 * number of GPU ids in --device (NCCL between them), or cpu_ranks (the
 * CPU backend with the thread communicator, for tests). Each rank trains
 * its own model on its DistributedSampler shard with batch_size / world
 * images per batch; gradients are averaged before every optimizer step;
 * rank 0 alone validates, keeps the EMA, writes results.csv, checkpoints
 * and logs. At debug log level every rank logs, per batch, the images it
 * trained on and, per optimizer step, a checksum of its parameters.
 */
#ifndef TR_TRAIN_H
#define TR_TRAIN_H

#include <signal.h>
#include <stdbool.h>

#include "amp.h"
#include "loader.h"
#include "loss.h"
#include "meta.h"
#include "ut.h"

#define TR_TRAIN_STOPPED 1 /* tr_train's return when *stop became non-zero */
#define TR_TRAIN_MAX_FREEZE 64

struct tr_train_hooks;

struct tr_train_opts {
	const char *weights; /* "" or a .safetensors to start from (or to resume) */
	const char *cfg;     /* model yaml; "" = the one stored in weights */
	const char *data;    /* data.yaml */
	const char *hyp;     /* hyp.yaml */
	long epochs;
	long batch_size;
	long imgsz;
	bool rect, resume, nosave, noval, noautoanchor, cos_lr, single_cls, image_weights;
	bool exist_ok, sync_bn, multi_scale, quad;
	const char *cache;     /* NULL, "ram" or "disk" (both keep images in memory) */
	const char *device;    /* "", "cpu", or GPU ids */
	const char *optimizer; /* SGD, Adam, AdamW */
	long workers;	       /* loader threads */
	long threads;	       /* compute threads; 0 = the CPUs this process may use */
	const char *project, *name;
	double label_smoothing;
	long patience;
	int freeze[TR_TRAIN_MAX_FREEZE]; /* one value n: layers 0..n-1; several: those layers */
	int n_freeze;
	long save_period;
	long seed;
	bool progress_tty;		   /* a live progress line (stderr is a terminal) */
	const volatile sig_atomic_t *stop; /* non-zero asks the run to stop after this batch */
	const char *opt_yaml; /* text of save_dir/opt.yaml (may be NULL: none written) */
	const char *save_dir; /* NULL: project/name incremented; else this (resume) */
	/* Not a train.py option (nor in --help): >= 1 runs that many DDP ranks on the CPU
	 * backend, threads with the thread communicator (yolo-train: $YE_DDP_CPU_RANKS);
	 * 1 runs the DDP machinery over one rank, which must equal a plain run. */
	long cpu_ranks;
	/*
	 * --amp (not a train.py option: YOLOv5 v7.0 decides by check_amp, fp16
	 * with the loss scaler on CUDA, fp32 on the CPU). There are no fp16 or
	 * bf16 kernels yet, so fp16 and bf16 are refused with --device GPU ids,
	 * and on the CPU ignored with a warning (fp32, no scaler), as check_amp's
	 * amp=False on the CPU.
	 */
	enum tr_amp_mode amp;
	/*
	 * Tests only (not a flag): fp32 compute with the dynamic loss scaler on,
	 * as fp16 would run it (GradScaler's defaults: scale 65536 at the
	 * start), so that the scaler's place in the step is tested on the CPU.
	 */
	bool amp_fp32_scaler;
	const struct tr_train_hooks *hooks; /* tests only: NULL */
};

/* What a test sees after each optimizer step (rank 0; tr_train_hooks.after_step). */
struct tr_train_step_report {
	long step;		/* optimizer steps due so far, skipped ones included (1, 2, ...) */
	bool stepped;		/* false: scaler.step skipped the optimizer (inf/nan gradients) */
	float loss_items[3];	/* box, obj, cls loss of the batch that made the step due */
	float scale;		/* the loss scaler after its update (1 when off) */
	int32_t growth_tracker; /* its steps since the last inf/nan or growth */
	int64_t steps_skipped;	/* its skipped steps so far */
	long ema_updates;	/* ModelEMA.updates after this step's EMA update */
	const float *params, *ema_params; /* host copies after the step and the EMA update */
	size_t nparam_values;
};

/*
 * Test hooks (tr_train_opts.hooks): inf_at_step > 0 makes one gradient (the
 * middle value of the flat array) inf just before that optimizer step's
 * unscale (fault injection); after_step, when set, is called after every
 * optimizer step with ctx.
 */
struct tr_train_hooks {
	long inf_at_step;
	void (*after_step)(void *ctx, const struct tr_train_step_report *report);
	void *ctx;
};

/* train.py's defaults: epochs 300, batch 16, imgsz 640, SGD, workers 8, ... */
void tr_train_defaults(struct tr_train_opts *opts);

/*
 * Train. Returns 0 when the epochs are done (or early stopping ended the
 * run), TR_TRAIN_STOPPED when *opts->stop asked it to stop (within one
 * batch; the last finished epoch's checkpoint and results stay), -1 on an
 * error (err: one line naming the file, option or tensor; a NaN loss is an
 * error naming the epoch and batch).
 */
int tr_train(const struct tr_train_opts *opts, struct ut_err *err);

/*
 * YOLOv5's increment_path for save_dir: path itself when it does not exist
 * or exist_ok, else path2, path3, ... (the first free). buf gets it.
 */
void tr_train_increment_path(const char *path, bool exist_ok, char *buf, size_t size);

/*
 * torch.nn.functional.interpolate(mode='bilinear', align_corners=False) of
 * `planes` float planes in_h x in_w to out_h x out_w (--multi-scale).
 */
void tr_resize_bilinear(const float *in, int planes, int in_h, int in_w, float *out, int out_h,
			int out_w);

/* The loader's augmentation hyps and ComputeLoss's hyps (unscaled) from a hyp file's values. */
struct tr_loader_hyp tr_train_loader_hyp(const struct meta_hyp *h);
struct tr_loss_hyp tr_train_loss_hyp(const struct meta_hyp *h, double label_smoothing);

/* Round a float to the nearest IEEE half (ties to even) and back, as model.half().float(). */
float tr_round_to_half(float value);

#endif
