/*
 * train.c - YOLOv5 v7.0's train.py training run (see train.h).
 *
 * The run is one struct tr_run that owns everything (data, loaders, the
 * model and its EMA copy, the optimizer state, the loss, validation) and a
 * handful of functions in train.py's order: setup, then per epoch
 * train_epoch, validate, log, save. All memory is planned before the first
 * epoch: the step allocates nothing.
 *
 * DDP (see train.h) runs one struct tr_run per rank, each in its
 * own thread (train_ddp), as torchrun runs one train.py per GPU. Where
 * train.py says `if RANK in {-1, 0}` only rank 0 acts (run folder, hyp and
 * opt yaml, AutoAnchor, model.half().float(), the EMA, validation,
 * results.csv, checkpoints, logs); DDP's constructor is the broadcast of
 * rank 0's parameters and buffers; torch_distributed_zero_first is a
 * barrier around opening the data; the early-stop broadcast at the end of
 * an epoch carries rank 0's decision (continue, stop early, stopped by a
 * signal) to the others, who wait there while rank 0 validates and saves.
 * A rank that fails records its error and aborts the communicator, so no
 * rank waits for it forever. A stop signal is agreed on after every batch
 * (an all-reduce of one flag), so all ranks stop at the same batch.
 *
 * Gradients are averaged once per optimizer step, not after every backward
 * as DDP does: DDP adds each backward's average into .grad, and the sum of
 * the averages over the accumulated batches is the average of the sums
 * (the all-reduce is linear), so one all-reduce of the accumulated
 * gradients before the step gives the same gradient (up to float rounding
 * order) at 1 / accumulate of the traffic.
 *
 * Not done, as DDP does: broadcast_buffers (rank 0's BN running statistics
 * sent to the others before every forward). Training-mode BN uses batch
 * statistics, and only rank 0's buffers are ever validated or saved, so the
 * other ranks' running statistics change nothing; parameters and optimizer
 * state stay identical on every rank.
 *
 * The loss scaler (amp.h, torch's GradScaler) is in the step as train.py
 * has it: the backward's seed is the scale (scaler.scale(loss).backward()),
 * and every `accumulate` batches the gradients are unscaled and checked
 * for inf/nan on the backend (scaler.unscale_), clipped, the optimizer
 * steps unless inf/nan was found (scaler.step), the scale backs off or
 * grows (scaler.update), the gradients are zeroed, and the EMA is updated
 * even after a skipped step, as YOLOv5 calls ema.update regardless. It is
 * on only for fp16, which has no kernels yet (see train.h's amp), or for
 * tests (amp_fp32_scaler); off, the step is the plain fp32 one. Checkpoints
 * do not keep its state: YOLOv5 v7.0's do not either.
 *
 * Test hooks (not in --help): tr_train_opts.cpu_ranks, set by yolo-train
 * from $YE_DDP_CPU_RANKS, runs N ranks on the CPU backend with the thread
 * communicator of comm.h; tr_train_opts.hooks injects an inf gradient and
 * reports every optimizer step (train.h).
 */
#include "train.h"

#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "autoanchor.h"
#include "checkpoint.h"
#include "comm.h"
#include "dataset.h"
#include "loader.h"
#include "loss.h"
#include "meta.h"
#include "metrics.h"
#include "model.h"
#include "mosaic.h"
#include "ops.h"
#include "optim.h"
#include "pcg.h"
#include "sampler.h"
#include "staging.h"
#include "syncbn.h"
#include "val.h"
#ifdef TR_HAVE_NCCL
#include "comm_nccl.h"
#endif

#define RESULTS_COLUMNS 14
/* Validation forwards its batches (2 x batch size, as train.py) this many images at a
 * time: the EMA model's activations for all of them were the run's largest memory. */
#define VAL_CHUNK 8
#define MAX_PATH 4096
#define MAX_WORLD 64

/* PCG stream ids of the run's own draws (the loader keys its own by sample). */
enum { STREAM_INIT = 1, STREAM_ANCHORS = 2 };
/* Mixed into the seed for the per-batch --multi-scale draws (tr_sample_stream keys). */
#define STREAM_MULTI_SCALE 0x6d756c7469ULL
#define STREAM_QUAD 0x71756164ULL

struct tr_run {
	const struct tr_train_opts *opts;
	/* DDP: this rank, of world; comm NULL without DDP (one process, no rank threads) */
	int rank, world;
	struct tr_comm *comm;
	int batch;		  /* this rank's images per batch: batch_size / world */
	struct tr_backend *inner; /* --sync-bn: the backend its BN wrapper (backend) borrows */
	float *flag;		  /* DDP: one float of device memory for the ranks' agreements */
	char save_dir[MAX_PATH], last[MAX_PATH], best[MAX_PATH], results_path[MAX_PATH];
	char *model_text, *hyp_text;
	size_t model_len;
	struct meta_hyp hyp;
	bool anchors_given;	     /* the hyp file has `anchors` */
	struct tr_loss_hyp loss_hyp; /* scaled to the model and image size, as train.py */
	struct tr_data_yaml data;
	struct tr_data_split train_split, val_split;
	int nc;
	struct tr_loader *train_loader, *val_loader;
	struct tr_backend *backend;
	struct tr_model *model, *ema;
	struct tr_loss *loss;
	struct tr_val *val;
	enum tr_optim_kind kind;
	struct tr_optim_sched sched;
	struct tr_optim_ema ema_state;
	long steps;		     /* optimizer steps so far (Adam's bias correction) */
	long steps_due;		     /* optimizer steps due so far, skipped ones included */
	struct tr_amp_scaler scaler; /* GradScaler: enabled for fp16 (and amp_fp32_scaler) */
	float *slot0, *slot1;	     /* optimizer state, the layout of model->params (device) */
	float *host_slot[2];	     /* their host mirror, for checkpoints */
	bool *frozen;		     /* per tensor of model->tensors */
	/* the loader's batches on their way to the device: pinned, double-buffered, the copy
	   of one batch overlapping the compute of the one before (staging.h) */
	struct tr_staging staging;
	bool staging_ready;	/* staging holds buffers (teardown frees them) */
	float *images;		/* the same as floats / 255 (device) */
	float *dev_scaled;	/* --quad: [batch / 4, 3, 2h, 2w]; --multi-scale: the batch
				   resized, [batch, 3, h', w'] (device) */
	size_t scaled_floats;	/* its size */
	uint8_t *quad_upsample; /* --quad: per combined image, upsampled (1) or tiled (0) */
	int gs;			/* grid size: the largest stride, at least 32 */
	int imgsz;		/* --imgsz made a multiple of gs */
	float *quad_targets;	/* --quad: the targets of the combined images */
	size_t quad_cap;
	float *grad_out[TR_MAX_LEVELS]; /* dLoss / d detect.outputs[l] (device) */
	double *class_weights;		/* labels_to_class_weights * nc (image weights) */
	double *maps;			/* AP@.5:.95 per class of the last validation */
	double *image_weights;
	long start_epoch, epochs;
	long resume_last_opt_step; /* the accumulation point, so a resumed run steps where it would
				      have */
	double best_fitness;
	struct tr_val_results results; /* the last validation */
	bool have_results;
	/* EarlyStopping */
	double stop_best;
	long stop_best_epoch;
	bool possible_stop;
};

void tr_train_defaults(struct tr_train_opts *opts)
{
	memset(opts, 0, sizeof(*opts));
	opts->weights = "";
	opts->cfg = "";
	opts->data = "";
	opts->hyp = "";
	opts->epochs = 300;
	opts->batch_size = 16;
	opts->imgsz = 640;
	opts->device = "";
	opts->optimizer = "SGD";
	opts->workers = 8;
	opts->project = "runs/train";
	opts->name = "exp";
	opts->patience = 100;
	opts->freeze[0] = 0;
	opts->n_freeze = 1;
	opts->save_period = -1;
	opts->seed = 0;
}

void tr_train_increment_path(const char *path, bool exist_ok, char *buf, size_t size)
{
	struct stat st;
	snprintf(buf, size, "%s", path);
	if (exist_ok || stat(path, &st) != 0)
		return;
	for (int n = 2; n < 9999; n++) {
		snprintf(buf, size, "%s%d", path, n);
		if (stat(buf, &st) != 0)
			return;
	}
}

float tr_round_to_half(float value)
{
	return tr_f_round_to_half(value);
}

void tr_resize_bilinear(const float *in, int planes, int in_h, int in_w, float *out, int out_h,
			int out_w)
{
	for (int y = 0; y < out_h; y++) {
		int y0, y1;
		float ly;
		tr_f_bilinear_source(y, in_h, out_h, &y0, &y1, &ly);
		for (int x = 0; x < out_w; x++) {
			int x0, x1;
			float lx;
			tr_f_bilinear_source(x, in_w, out_w, &x0, &x1, &lx);
			for (int p = 0; p < planes; p++)
				out[((size_t)p * out_h + y) * out_w + x] = tr_f_bilinear(
				    in + (size_t)p * in_h * in_w, in_w, y0, y1, ly, x0, x1, lx);
		}
	}
}

/* The largest side --multi-scale can draw: randrange(imgsz / 2, 1.5 imgsz + gs) // gs * gs. */
static int multi_scale_max(int imgsz, int gs)
{
	int stop = (int)floor(imgsz * 1.5 + gs); /* exclusive */
	return (stop - 1) / gs * gs;
}

/* ---- setup ---- */

/* OMP_NUM_THREADS when set (yolo-evolve sets it for candidates side by side), else every CPU
 * allowed. */
static int cpu_count(void)
{
	long omp;
	const char *env = getenv("OMP_NUM_THREADS");
	if (env != NULL && ut_parse_long(env, 1, 4096, &omp) == 0)
		return (int)omp;
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
		return CPU_COUNT(&set);
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (int)n : 1;
}

static int make_dirs(struct tr_run *run, struct ut_err *err)
{
	const struct tr_train_opts *o = run->opts;
	if (o->save_dir != NULL) {
		snprintf(run->save_dir, sizeof(run->save_dir), "%s", o->save_dir);
	} else {
		char path[MAX_PATH];
		snprintf(path, sizeof(path), "%s/%s", o->project, o->name);
		tr_train_increment_path(path, o->exist_ok, run->save_dir, sizeof(run->save_dir));
	}
	char weights[MAX_PATH + 16];
	snprintf(weights, sizeof(weights), "%s/weights", run->save_dir);
	if (ut_mkdirs(weights, err) != 0)
		return -1;
	snprintf(run->last, sizeof(run->last), "%s/last.safetensors", weights);
	snprintf(run->best, sizeof(run->best), "%s/best.safetensors", weights);
	snprintf(run->results_path, sizeof(run->results_path), "%s/results.csv", run->save_dir);
	return 0;
}

/*
 * Does the hyp file set `anchors`? Only then is the model built with that
 * many placeholder anchors (YOLOv5: Model(anchors=hyp.get('anchors'))); the
 * parsed hyp says 3 either way.
 */
static bool hyp_sets_anchors(const char *text, size_t len)
{
	yaml_parser_t parser;
	yaml_document_t doc;
	bool found = false;
	if (!yaml_parser_initialize(&parser))
		return false;
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
	if (yaml_parser_load(&parser, &doc)) {
		yaml_node_t *root = yaml_document_get_root_node(&doc);
		for (yaml_node_pair_t *p = root && root->type == YAML_MAPPING_NODE
					       ? root->data.mapping.pairs.start
					       : NULL;
		     p != NULL && p < root->data.mapping.pairs.top; p++) {
			yaml_node_t *key = yaml_document_get_node(&doc, p->key);
			found |= key->type == YAML_SCALAR_NODE &&
				 strcmp((const char *)key->data.scalar.value, "anchors") == 0;
		}
		yaml_document_delete(&doc);
	}
	yaml_parser_delete(&parser);
	return found;
}

/* The hyp file, read with no bounds (train.py takes any value). */
static int load_hyp(struct tr_run *run, const char *text, size_t len, const char *source,
		    struct ut_err *err)
{
	run->anchors_given = hyp_sets_anchors(text, len);
	struct meta_table open_bounds;
	meta_table_default(&open_bounds);
	for (int k = 0; k < META_COUNT; k++) {
		open_bounds.k[k].lower = -DBL_MAX;
		open_bounds.k[k].upper = DBL_MAX;
	}
	return meta_hyp_parse(text, len, source, &open_bounds, &run->hyp, err);
}

static int write_text(const char *dir, const char *file, const char *text, struct ut_err *err)
{
	char path[MAX_PATH + 64];
	snprintf(path, sizeof(path), "%s/%s", dir, file);
	return ut_write_file_atomic(path, text, strlen(text), err);
}

static int open_data(struct tr_run *run, struct ut_err *err)
{
	const struct tr_train_opts *o = run->opts;
	if (tr_data_yaml_load(o->data, &run->data, err) != 0)
		return -1;
	run->nc = o->single_cls ? 1 : run->data.nc;
	struct tr_data_open_opts open = {.nc = run->data.nc, .use_cache = true};
	bool zero = run->rank == 0;
	if (zero)
		ut_log(UT_LOG_INFO, "train: scanning %s", run->data.train[0]);
	if (tr_data_split_open((const char *const *)run->data.train, run->data.n_train, &open,
			       &run->train_split, err) != 0)
		return -1;
	char summary[256];
	tr_data_summary_format(&run->train_split.summary, summary, sizeof(summary));
	if (zero)
		ut_log(UT_LOG_INFO, "train: %s", summary);
	if (tr_data_split_open((const char *const *)run->data.val, run->data.n_val, &open,
			       &run->val_split, err) != 0)
		return -1;
	tr_data_summary_format(&run->val_split.summary, summary, sizeof(summary));
	if (zero)
		ut_log(UT_LOG_INFO, "val: %s", summary);
	return 0;
}

/*
 * torch_distributed_zero_first around the data: rank 0 opens (and caches
 * the labels of) the splits first, the other ranks after it.
 */
static int open_data_zero_first(struct tr_run *run, struct ut_err *err)
{
	if (run->comm == NULL)
		return open_data(run, err);
	if (run->rank != 0 && tr_comm_barrier(run->comm, err) != 0)
		return -1;
	if (open_data(run, err) != 0)
		return -1;
	return run->rank == 0 ? tr_comm_barrier(run->comm, err) : 0;
}

/* The model yaml text: --cfg, else the one stored in the weights. */
static int read_model_text(struct tr_run *run, struct ut_err *err)
{
	const struct tr_train_opts *o = run->opts;
	if (o->cfg[0] != '\0')
		return ut_read_file(o->cfg, &run->model_text, &run->model_len, err);
	if (o->weights[0] == '\0')
		return ut_err_set(err, "--cfg or --weights is required");
	struct tr_ckpt_info info;
	struct tr_st_file *file;
	if (tr_ckpt_read(o->weights, &info, &file, err) != 0)
		return -1;
	run->model_text = strdup(info.model_yaml);
	tr_st_close(file);
	if (run->model_text == NULL)
		return ut_err_set(err, "out of memory");
	run->model_len = strlen(run->model_text);
	return 0;
}

static bool freeze_match(const struct tr_train_opts *o, const char *name)
{
	int layer;
	if (sscanf(name, "model.%d.", &layer) != 1)
		return false;
	if (o->n_freeze == 1)
		return layer < o->freeze[0];
	for (int i = 0; i < o->n_freeze; i++)
		if (o->freeze[i] == layer)
			return true;
	return false;
}

static int build_models(struct tr_run *run, struct ut_err *err)
{
	const struct tr_train_opts *o = run->opts;
	const char *source = o->cfg[0] ? o->cfg : o->weights;
	int anchors = run->anchors_given ? (int)nearbyint(run->hyp.v[META_anchors]) : 0;
	if (run->anchors_given && anchors < 1)
		return ut_err_set(err, "%s: anchors %g: need at least 1 per level", o->hyp,
				  run->hyp.v[META_anchors]);
	if (tr_model_from_text_anchors(run->model_text, run->model_len, source, run->nc, anchors,
				       &run->model, err) != 0 ||
	    (run->rank == 0 && tr_model_from_text_anchors(run->model_text, run->model_len, source,
							  run->nc, anchors, &run->ema, err) != 0))
		return -1;
	struct ut_pcg rng;
	ut_pcg_seed(&rng, (uint64_t)o->seed + 1, STREAM_INIT);
	tr_model_init(run->model, &rng);
	if (o->weights[0] != '\0' && !o->resume) {
		/* transfer: everything but the anchors when cfg or the anchors hyp set them */
		if (tr_model_load(run->model, o->weights, err) != 0)
			return -1;
		if (run->rank == 0)
			ut_log(UT_LOG_INFO, "transferred %d items from %s", run->model->ntensors,
			       o->weights);
	}
	run->frozen = calloc((size_t)run->model->ntensors, sizeof(*run->frozen));
	if (run->frozen == NULL)
		return ut_err_set(err, "out of memory");
	for (int t = 0; t < run->model->ntensors; t++) {
		const struct tr_tensor_spec *spec = &run->model->tensors[t];
		run->frozen[t] = spec->kind == TR_TENSOR_PARAM && freeze_match(o, spec->name);
		if (run->frozen[t] && run->rank == 0)
			ut_log(UT_LOG_INFO, "freezing %s", spec->name);
	}
	return 0;
}

/* ModelEMA(model): a copy of every state entry, updates 0 (host mirrors, before the plan). */
static void copy_model_state(struct tr_model *dst, const struct tr_model *src)
{
	memcpy(dst->host_params, src->host_params, src->nparam_values * sizeof(float));
	memcpy(dst->host_buffers, src->host_buffers, src->nbuffer_values * sizeof(float));
	memcpy(dst->counters, src->counters, src->ncounter_values * sizeof(int64_t));
}

/* train.py's gs (the largest stride, at least 32) and check_img_size: run->gs and run->imgsz. */
static void check_imgsz(struct tr_run *run)
{
	int gs = 32;
	for (int l = 0; l < run->model->detect.nl; l++)
		if (run->model->detect.stride[l] > gs)
			gs = run->model->detect.stride[l];
	long imgsz = run->opts->imgsz;
	long fixed = (long)ceil((double)imgsz / gs) * gs;
	if (fixed < 2 * gs)
		fixed = 2 * gs;
	if (fixed != imgsz && run->rank == 0)
		ut_log(UT_LOG_WARN,
		       "--imgsz %ld must be a multiple of max stride %d, updating to %ld", imgsz,
		       gs, fixed);
	run->gs = gs;
	run->imgsz = (int)fixed;
}

struct tr_loader_hyp tr_train_loader_hyp(const struct meta_hyp *h)
{
	return (struct tr_loader_hyp){.hsv_h = h->v[META_hsv_h],
				      .hsv_s = h->v[META_hsv_s],
				      .hsv_v = h->v[META_hsv_v],
				      .degrees = h->v[META_degrees],
				      .translate = h->v[META_translate],
				      .scale = h->v[META_scale],
				      .shear = h->v[META_shear],
				      .perspective = h->v[META_perspective],
				      .flipud = h->v[META_flipud],
				      .fliplr = h->v[META_fliplr],
				      .mosaic = h->v[META_mosaic],
				      .mixup = h->v[META_mixup],
				      .copy_paste = h->v[META_copy_paste]};
}

struct tr_loss_hyp tr_train_loss_hyp(const struct meta_hyp *h, double label_smoothing)
{
	return (struct tr_loss_hyp){.box = h->v[META_box],
				    .obj = h->v[META_obj],
				    .cls = h->v[META_cls],
				    .cls_pw = h->v[META_cls_pw],
				    .obj_pw = h->v[META_obj_pw],
				    .fl_gamma = h->v[META_fl_gamma],
				    .anchor_t = h->v[META_anchor_t],
				    .label_smoothing = label_smoothing};
}

static int make_loaders(struct tr_run *run, int imgsz, int stride, struct ut_err *err)
{
	const struct tr_train_opts *o = run->opts;
	bool cache = o->cache != NULL;
	struct tr_loader_opts train = tr_loader_train_defaults(imgsz, run->batch);
	train.stride = stride;
	/* create_dataloader: min(CPUs / devices, batch size, --workers), the rank's batch */
	int workers = (int)o->workers, cpus = cpu_count() / run->world;
	cpus = cpus > 0 ? cpus : 1;
	workers = workers < cpus ? workers : cpus;
	workers = workers < run->batch ? workers : run->batch;
	train.workers = workers;
	train.prefetch = 2 * (workers > 0 ? workers : 1);
	train.seed = (uint64_t)o->seed;
	train.rect = o->rect;
	train.shuffle = !o->rect;
	train.cache_ram = cache;
	train.single_cls = o->single_cls;
	train.hyp = tr_train_loader_hyp(&run->hyp);
	if (run->world > 1) {
		train.world = run->world;
		train.rank = run->rank;
	}
	if (tr_loader_create(&run->train_split, &train, &run->train_loader, err) != 0)
		return -1;
	if (run->rank != 0) /* only rank 0 validates */
		return 0;
	struct tr_loader_opts val = tr_loader_val_defaults(imgsz, run->batch * 2);
	val.stride = stride;
	val.workers = workers;
	val.prefetch = train.prefetch;
	val.seed = (uint64_t)o->seed;
	val.cache_ram = cache && !o->noval;
	val.single_cls = o->single_cls;
	return tr_loader_create(&run->val_split, &val, &run->val_loader, err);
}

/* bytes of zeroed device memory on backend */
static int device_zeros(struct tr_backend *backend, size_t bytes, void **out, struct ut_err *err)
{
	if (backend->ops->alloc(backend, bytes, out, err) != 0)
		return -1;
	return backend->ops->memset(backend, *out, 0, bytes, err);
}

/* Activations and the float batch, once, for the largest batch of each loader. */
static int plan_memory(struct tr_run *run, int imgsz, struct ut_err *err)
{
	const struct tr_train_opts *o = run->opts;
	int th, tw, vh = 0, vw = 0;
	tr_loader_max_shape(run->train_loader, &th, &tw);
	if (run->val_loader != NULL)
		tr_loader_max_shape(run->val_loader, &vh, &vw);
	if (th < imgsz)
		th = imgsz;
	if (tw < imgsz)
		tw = imgsz;
	int batch = run->batch, val_batch = 2 * batch;
	int loader_h = th, loader_w = tw;
	if (o->multi_scale) { /* any batch may grow to the largest draw in both sides */
		int most = multi_scale_max(imgsz, run->gs);
		th = th > most ? th : most;
		tw = tw > most ? tw : most;
		run->scaled_floats = (size_t)batch * 3 * th * tw;
	}
	int plan_batch = batch;
	if (o->quad) { /* collate_fn4: batch / 4 images of twice the size */
		plan_batch = batch / 4;
		th *= 2;
		tw *= 2;
		run->scaled_floats = (size_t)batch * 3 * loader_h * loader_w;
		run->quad_upsample = calloc((size_t)batch / 4 + 1, 1);
		if (run->quad_upsample == NULL)
			return ut_err_set(err, "out of memory for the quad images");
	}
	if (tr_model_plan(run->model, run->backend, plan_batch, th, tw, err) != 0 ||
	    (run->ema != NULL &&
	     tr_model_plan_inference(run->ema, run->backend,
				     val_batch < VAL_CHUNK ? val_batch : VAL_CHUNK, vh, vw,
				     err) != 0))
		return -1;
	if (run->comm != NULL) {
		void *flag;
		if (device_zeros(run->backend, sizeof(float), &flag, err) != 0)
			return -1;
		run->flag = flag;
	}
	size_t image_floats = (size_t)batch * 3 * loader_h * loader_w;
	void *images, *dev_scaled;
	if (tr_staging_init(&run->staging, run->backend, image_floats, err) != 0)
		return -1;
	run->staging_ready = true;
	if (device_zeros(run->backend, image_floats * sizeof(float), &images, err) != 0)
		return -1;
	run->images = images;
	if (run->scaled_floats > 0) {
		if (device_zeros(run->backend, run->scaled_floats * sizeof(float), &dev_scaled,
				 err) != 0)
			return -1;
		run->dev_scaled = dev_scaled;
	}
	const struct tr_detect *det = &run->model->detect;
	for (int l = 0; l < det->nl; l++) {
		size_t cells = (size_t)(th / det->stride[l]) * (size_t)(tw / det->stride[l]);
		size_t bytes = (size_t)plan_batch * det->na * cells * det->no * sizeof(float);
		void *grad;
		if (device_zeros(run->backend, bytes, &grad, err) != 0)
			return -1;
		run->grad_out[l] = grad;
	}
	struct tr_backend *be = run->backend;
	size_t slot_bytes = run->model->nparam_values * sizeof(float);
	void *slot0, *slot1;
	if (be->ops->alloc(be, slot_bytes, &slot0, err) != 0)
		return -1;
	run->slot0 = slot0;
	if (be->ops->alloc(be, slot_bytes, &slot1, err) != 0)
		return -1;
	run->slot1 = slot1;
	if (be->ops->memset(be, slot0, 0, slot_bytes, err) != 0 ||
	    be->ops->memset(be, slot1, 0, slot_bytes, err) != 0)
		return -1;
	run->host_slot[0] = calloc(run->model->nparam_values, sizeof(float));
	run->host_slot[1] = calloc(run->model->nparam_values, sizeof(float));
	run->class_weights = calloc((size_t)run->nc, sizeof(double));
	run->maps = calloc((size_t)run->nc, sizeof(double));
	run->image_weights = calloc((size_t)run->train_split.n_items + 1, sizeof(double));
	if (!run->host_slot[0] || !run->host_slot[1] || !run->class_weights || !run->maps ||
	    !run->image_weights)
		return ut_err_set(err, "out of memory");
	return 0;
}

static int make_loss(struct tr_run *run, int imgsz, struct ut_err *err)
{
	const struct tr_detect *det = &run->model->detect;
	run->loss_hyp = tr_train_loss_hyp(&run->hyp, run->opts->label_smoothing);
	tr_loss_scale_hyp(&run->loss_hyp, det->nl, run->nc, imgsz);
	struct tr_loss_params params = {.nl = det->nl,
					.na = det->na,
					.nc = run->nc,
					.anchors = run->model->tensors[det->anchors_tensor].data,
					.hyp = run->loss_hyp};
	if (tr_loss_create(&params, 256, &run->loss, err) != 0)
		return -1;
	if (run->rank != 0)
		return 0;
	struct tr_val_opts vo = tr_val_defaults(run->nc);
	vo.single_cls = run->opts->single_cls;
	return tr_val_create(&vo, &run->val, err);
}

/* check_anchors on the training labels; new anchors go into the model's host mirror. */
static int autoanchor(struct tr_run *run, int imgsz, struct ut_err *err)
{
	const struct tr_data_split *split = &run->train_split;
	struct tr_detect *det = &run->model->detect;
	float *anchors = run->model->tensors[det->anchors_tensor].data;
	size_t n = (size_t)split->n_items, total = 0;
	double *shapes = malloc((n + 1) * 2 * sizeof(double));
	size_t *counts = malloc((n + 1) * sizeof(size_t));
	for (size_t i = 0; i < n; i++)
		total += (size_t)split->items[i].labels.n_labels;
	float *wh = malloc((total + 1) * 2 * sizeof(float));
	float *anchors_px = malloc((size_t)det->nl * det->na * 2 * sizeof(float));
	int rc = -1;
	if (!shapes || !counts || !wh || !anchors_px) {
		ut_err_set(err, "out of memory for AutoAnchor");
		goto done;
	}
	size_t j = 0;
	for (size_t i = 0; i < n; i++) {
		const struct tr_data_item *it = &split->items[i];
		shapes[2 * i] = it->width;
		shapes[2 * i + 1] = it->height;
		counts[i] = (size_t)it->labels.n_labels;
		for (int k = 0; k < it->labels.n_labels; k++, j++) {
			wh[2 * j] = it->labels.labels[k].w;
			wh[2 * j + 1] = it->labels.labels[k].h;
		}
	}
	for (int l = 0; l < det->nl; l++)
		for (int a = 0; a < 2 * det->na; a++)
			anchors_px[(l * det->na) * 2 + a] =
			    anchors[(l * det->na) * 2 + a] * (float)det->stride[l];
	struct tr_anchor_dataset dataset = {
	    .n_images = n, .shapes_wh = shapes, .label_counts = counts, .labels_wh = wh};
	double strides[TR_MAX_LEVELS];
	for (int l = 0; l < det->nl; l++)
		strides[l] = det->stride[l];
	struct ut_pcg rng;
	ut_pcg_seed(&rng, (uint64_t)run->opts->seed, STREAM_ANCHORS);
	struct tr_anchor_auto_params params = {.dataset = &dataset,
					       .imgsz = imgsz,
					       .thr = run->hyp.v[META_anchor_t],
					       .n_levels = det->nl,
					       .per_level = det->na,
					       .strides = strides,
					       .generations = 1000,
					       .rng = &rng};
	struct tr_anchor_auto_result result;
	if (tr_anchor_autoanchor(&params, anchors_px, &result, err) != 0)
		goto done;
	if (result.replaced) {
		for (int l = 0; l < det->nl; l++)
			for (int a = 0; a < 2 * det->na; a++)
				anchors[(l * det->na) * 2 + a] =
				    anchors_px[(l * det->na) * 2 + a] / (float)det->stride[l];
	}
	rc = 0;
done:
	free(shapes);
	free(counts);
	free(wh);
	free(anchors_px);
	return rc;
}

/*
 * model.half().float(): YOLOv5 rounds the whole state to half precision
 * once, on the device; the host mirror follows (the loss takes its anchors).
 */
static int round_state_to_half(struct tr_run *run, struct ut_err *err)
{
	struct tr_model *m = run->model;
	struct tr_backend *be = run->backend;
	if (be->ops->round_half(be, m->params, m->nparam_values, err) != 0 ||
	    be->ops->round_half(be, m->buffers, m->nbuffer_values, err) != 0)
		return -1;
	return tr_model_download(m, err);
}

static int make_schedule(struct tr_run *run, struct ut_err *err)
{
	const struct meta_hyp *h = &run->hyp;
	struct tr_optim_config config = {.kind = run->kind,
					 .lr0 = h->v[META_lr0],
					 .lrf = h->v[META_lrf],
					 .momentum = h->v[META_momentum],
					 .weight_decay = h->v[META_weight_decay],
					 .warmup_epochs = h->v[META_warmup_epochs],
					 .warmup_momentum = h->v[META_warmup_momentum],
					 .warmup_bias_lr = h->v[META_warmup_bias_lr],
					 .batch_size = run->opts->batch_size,
					 .nb = tr_loader_num_batches(run->train_loader),
					 .epochs = run->epochs,
					 .start_epoch = run->start_epoch,
					 .cos_lr = run->opts->cos_lr};
	if (tr_optim_sched_init(&run->sched, &config, err) != 0)
		return -1;
	if (run->opts->resume) /* YOLOv5 restarts at -1; we continue exactly */
		run->sched.last_opt_step = run->resume_last_opt_step;
	return 0;
}

/* ---- checkpoints ---- */

/* Tensor entries of one model under a name prefix ("" or "ema."). */
static int add_model_entries(const struct tr_model *model, const char *prefix,
			     struct tr_st_entry *entries, char (*names)[TR_NAME_LEN + 16],
			     int64_t (*shapes)[4], size_t *count)
{
	for (int t = 0; t < model->ntensors; t++) {
		const struct tr_tensor_spec *spec = &model->tensors[t];
		size_t i = (*count)++;
		snprintf(names[i], sizeof(names[i]), "%s%s", prefix, spec->name);
		for (int d = 0; d < spec->ndim; d++)
			shapes[i][d] = spec->shape[d];
		bool counter = spec->kind == TR_TENSOR_COUNTER;
		entries[i] = (struct tr_st_entry){
		    names[i], counter ? TR_ST_I64 : TR_ST_F32, spec->ndim, shapes[i],
		    counter ? (const void *)spec->counter : (const void *)spec->data};
	}
	return 0;
}

static const char *slot_name(enum tr_optim_kind kind, int slot)
{
	if (kind == TR_OPTIM_SGD)
		return slot == 0 ? "momentum" : NULL;
	return slot == 0 ? "exp_avg" : "exp_avg_sq";
}

/*
 * A checkpoint as YOLOv5's ckpt: the training model under its state_dict
 * names, the EMA under "ema.<name>", the optimizer state, and the scalars.
 */
static int save_checkpoint(struct tr_run *run, const char *path, long epoch, struct ut_err *err)
{
	const struct tr_model *m = run->model;
	size_t cap = (size_t)m->ntensors * 4;
	struct tr_st_entry *entries = calloc(cap, sizeof(*entries));
	char(*names)[TR_NAME_LEN + 16] = calloc(cap, sizeof(*names));
	int64_t(*shapes)[4] = calloc(cap, sizeof(*shapes));
	int rc = -1;
	if (!entries || !names || !shapes) {
		ut_err_set(err, "%s: out of memory", path);
		goto done;
	}
	size_t count = 0;
	struct tr_backend *be = run->backend;
	size_t slot_bytes = m->nparam_values * sizeof(float);
	if (tr_model_download(run->model, err) != 0 || tr_model_download(run->ema, err) != 0 ||
	    be->ops->download(be, run->host_slot[0], run->slot0, slot_bytes, err) != 0 ||
	    be->ops->download(be, run->host_slot[1], run->slot1, slot_bytes, err) != 0)
		goto done;
	add_model_entries(run->model, "", entries, names, shapes, &count);
	add_model_entries(run->ema, "ema.", entries, names, shapes, &count);
	for (int slot = 0; slot < 2; slot++) {
		const char *sname = slot_name(run->kind, slot);
		if (sname == NULL)
			continue;
		const float *state = run->host_slot[slot];
		for (int t = 0; t < m->ntensors; t++) {
			const struct tr_tensor_spec *spec = &m->tensors[t];
			if (spec->kind != TR_TENSOR_PARAM)
				continue;
			size_t i = count++;
			if (tr_ckpt_optimizer_name(names[i], sizeof(names[i]), spec->name, sname,
						   err))
				goto done;
			for (int d = 0; d < spec->ndim; d++)
				shapes[i][d] = spec->shape[d];
			entries[i] = (struct tr_st_entry){names[i], TR_ST_F32, spec->ndim,
							  shapes[i], state + spec->offset};
		}
	}
	char steps[32], optimizer[32], last_step[32];
	snprintf(steps, sizeof(steps), "%ld", run->steps);
	snprintf(optimizer, sizeof(optimizer), "%s", run->opts->optimizer);
	snprintf(last_step, sizeof(last_step), "%ld", run->sched.last_opt_step);
	struct tr_st_meta extra[] = {
	    {"optimizer_steps", steps}, {"optimizer", optimizer}, {"last_opt_step", last_step}};
	struct tr_ckpt_info info = {.epoch = epoch,
				    .best_fitness = run->best_fitness,
				    .ema_updates = run->ema_state.updates,
				    .model_yaml = run->model_text,
				    .hyp = run->hyp_text};
	rc = tr_ckpt_write(path, &info, entries, count, extra, UT_ARRAY_LEN(extra), err);
done:
	free(entries);
	free(names);
	free(shapes);
	return rc;
}

/*
 * Keep the header and the rows of epochs up to `epoch` in results.csv: a run
 * killed after writing an epoch's row but before its checkpoint repeats
 * that epoch on resume, and its row must not appear twice.
 */
static int trim_results(const char *path, long epoch, struct ut_err *err)
{
	char *text;
	size_t len;
	struct stat st;
	if (stat(path, &st) != 0)
		return 0;
	if (ut_read_file(path, &text, &len, err) != 0)
		return -1;
	size_t keep = 0;
	for (size_t line = 0; line < len;) {
		char *end = memchr(text + line, '\n', len - line);
		size_t next = end ? (size_t)(end - text) + 1 : len;
		char *after;
		long row_epoch = strtol(text + line, &after, 10);
		bool header = line == 0;
		if (!header && (after == text + line || row_epoch > epoch || end == NULL))
			break;
		keep = next;
		line = next;
	}
	int rc = keep == len ? 0 : ut_write_file_atomic(path, text, keep, err);
	free(text);
	return rc;
}

/* smart_resume: model, EMA, optimizer state, epoch and best fitness from last.safetensors. */
static int resume_from(struct tr_run *run, struct ut_err *err)
{
	const char *path = run->opts->weights;
	struct tr_ckpt_info info;
	struct tr_st_file *file;
	if (tr_model_load(run->model, path, err) != 0 ||
	    (run->ema != NULL && tr_model_load_prefix(run->ema, path, "ema.", err) != 0) ||
	    tr_ckpt_read(path, &info, &file, err) != 0)
		return -1;
	int rc = 0;
	const char *steps = tr_st_metadata(file, "optimizer_steps");
	const char *kind = tr_st_metadata(file, "optimizer");
	const char *last_step = tr_st_metadata(file, "last_opt_step");
	if (last_step == NULL || ut_parse_long(last_step, -1, LONG_MAX, &run->resume_last_opt_step))
		rc = ut_err_set(err, "%s: metadata last_opt_step missing or bad", path);
	else if (steps == NULL || ut_parse_long(steps, 0, LONG_MAX, &run->steps) != 0)
		rc = ut_err_set(err, "%s: metadata optimizer_steps missing or bad", path);
	else if (kind == NULL || strcmp(kind, run->opts->optimizer) != 0)
		rc = ut_err_set(err, "%s: optimizer %s, this run uses %s", path, kind ? kind : "?",
				run->opts->optimizer);
	for (int slot = 0; rc == 0 && slot < 2; slot++) {
		const char *sname = slot_name(run->kind, slot);
		float *state = run->host_slot[slot];
		for (int t = 0; rc == 0 && sname && t < run->model->ntensors; t++) {
			const struct tr_tensor_spec *spec = &run->model->tensors[t];
			char name[TR_NAME_LEN + 32];
			if (spec->kind != TR_TENSOR_PARAM)
				continue;
			rc = tr_ckpt_optimizer_name(name, sizeof(name), spec->name, sname, err);
			const struct tr_st_tensor *stored = rc ? NULL : tr_st_find(file, name);
			if (rc == 0 && (stored == NULL || stored->numel != spec->numel))
				rc = ut_err_set(err, "%s: tensor '%s' missing or of the wrong size",
						path, name);
			if (rc == 0)
				memcpy(state + spec->offset, stored->data,
				       spec->numel * sizeof(float));
		}
	}
	struct tr_backend *be = run->backend;
	size_t slot_bytes = run->model->nparam_values * sizeof(float);
	if (rc == 0 && (be->ops->upload(be, run->slot0, run->host_slot[0], slot_bytes, err) != 0 ||
			be->ops->upload(be, run->slot1, run->host_slot[1], slot_bytes, err) != 0))
		rc = -1;
	if (rc == 0) {
		run->start_epoch = info.epoch + 1;
		run->best_fitness = info.best_fitness;
		run->ema_state.updates = info.ema_updates;
		if (run->start_epoch >= run->epochs)
			rc = ut_err_set(err,
					"%s: training to %ld epochs is finished, nothing to resume",
					path, run->epochs);
		else if (run->rank == 0)
			rc = trim_results(run->results_path, info.epoch, err);
		if (rc == 0 && run->rank == 0)
			ut_log(UT_LOG_INFO,
			       "resuming training from %s from epoch %ld to %ld total epochs", path,
			       run->start_epoch, run->epochs);
	}
	tr_st_close(file);
	return rc;
}

/* ---- one epoch ---- */

static double rss_gib(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	long pages = 0, resident = 0;
	if (f != NULL) {
		if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
			resident = 0;
		fclose(f);
	}
	return (double)resident * (double)sysconf(_SC_PAGESIZE) / 1e9;
}

static void progress_line(const struct tr_run *run, long epoch, const float mloss[3], size_t nt,
			  int size, long done, long nb, FILE *out)
{
	char ep[32], mem[32];
	snprintf(ep, sizeof(ep), "%ld/%ld", epoch, run->epochs - 1);
	snprintf(mem, sizeof(mem), "%.3gG", rss_gib());
	fprintf(out, "%11s%11s%11.4g%11.4g%11.4g%11.4g%11.4g", ep, mem, mloss[0], mloss[1],
		mloss[2], (double)nt, (double)size);
	int width = 20, filled = (int)(width * done / (nb > 0 ? nb : 1));
	fprintf(out, " %3ld%% |", 100 * done / (nb > 0 ? nb : 1));
	for (int i = 0; i < width; i++)
		fputs(i < filled ? "#" : " ", out);
	fprintf(out, "| %ld/%ld", done, nb);
}

/*
 * The debug line that shows every rank holds the same parameters after an
 * optimizer step: FNV-1a of their bytes (downloaded to the host mirror).
 */
static int log_params_checksum(struct tr_run *run, struct ut_err *err)
{
	struct tr_model *m = run->model;
	if (tr_model_download(m, err) != 0)
		return -1;
	const unsigned char *bytes = (const unsigned char *)m->host_params;
	uint64_t hash = 0xcbf29ce484222325ULL;
	for (size_t i = 0; i < m->nparam_values * sizeof(float); i++)
		hash = (hash ^ bytes[i]) * 0x100000001b3ULL;
	ut_log(UT_LOG_DEBUG, "ddp: rank %d step %ld params %016llx", run->rank, run->steps,
	       (unsigned long long)hash);
	return 0;
}

/* The hooks' fault injection: the middle gradient becomes inf before this step's unscale. */
static int inject_inf(struct tr_run *run, struct ut_err *err)
{
	const struct tr_train_hooks *hooks = run->opts->hooks;
	struct tr_model *m = run->model;
	const float inf = INFINITY;
	if (hooks == NULL || hooks->inf_at_step != run->steps_due)
		return 0;
	return run->backend->ops->upload(run->backend, m->grads + m->nparam_values / 2, &inf,
					 sizeof(inf), err);
}

/*
 * scaler.unscale_(optimizer): every gradient times 1 / scale on the
 * backend, its inf/nan check recorded in the scaler. Nothing when off.
 */
static int unscale_grads(struct tr_run *run, struct ut_err *err)
{
	struct tr_model *m = run->model;
	int found_inf;
	if (!run->scaler.enabled)
		return 0;
	if (run->backend->ops->amp_unscale(run->backend, m->grads, tr_amp_inv_scale(&run->scaler),
					   m->nparam_values, &found_inf, err) != 0)
		return -1;
	return tr_amp_record_unscaled(&run->scaler, found_inf, err);
}

/* The hooks' report of the step just made (rank 0, which keeps the EMA). */
static int report_step(struct tr_run *run, bool stepped, const float items[3], struct ut_err *err)
{
	const struct tr_train_hooks *hooks = run->opts->hooks;
	if (hooks == NULL || hooks->after_step == NULL || run->ema == NULL)
		return 0;
	if (tr_model_download(run->model, err) != 0 || tr_model_download(run->ema, err) != 0)
		return -1;
	struct tr_train_step_report report = {
	    .step = run->steps_due,
	    .stepped = stepped,
	    .scale = run->scaler.enabled ? run->scaler.scale : 1.0f,
	    .growth_tracker = run->scaler.growth_tracker,
	    .steps_skipped = run->scaler.steps_skipped,
	    .ema_updates = run->ema_state.updates,
	    .params = run->model->host_params,
	    .ema_params = run->ema->host_params,
	    .nparam_values = run->model->nparam_values,
	};
	memcpy(report.loss_items, items, sizeof(report.loss_items));
	hooks->after_step(hooks->ctx, &report);
	return 0;
}

/*
 * The optimizer step on the backend, in train.py's order: unscale
 * (scaler.unscale_), clip (clip_grad_norm_), update the unfrozen parameters
 * unless the scaler found inf/nan (scaler.step), the scaler's update, zero
 * the gradients, EMA (after a skipped step too). items: the batch's loss
 * items, for the test hooks' report.
 */
static int optimizer_step(struct tr_run *run, const float items[3], struct ut_err *err)
{
	struct tr_model *m = run->model;
	struct tr_backend *be = run->backend;
	const struct tr_ops *ops = be->ops;
	/* DDP's gradient average, once for the accumulated batches (see the top of this file) */
	if (run->comm != NULL &&
	    tr_comm_all_reduce_mean(run->comm, m->grads, m->nparam_values, err) != 0)
		return -1;
	for (int t = 0; t < m->ntensors; t++)
		if (run->frozen[t] && ops->memset(be, m->tensors[t].grad, 0,
						  m->tensors[t].numel * sizeof(float), err) != 0)
			return -1;
	run->steps_due++;
	if (inject_inf(run, err) != 0 || unscale_grads(run, err) != 0)
		return -1;
	double sum_squares;
	if (ops->sum_squares(be, m->grads, m->nparam_values, &sum_squares, err) != 0)
		return -1;
	float coef = tr_optim_clip_coef(sum_squares, TR_OPTIM_MAX_GRAD_NORM);
	if (coef < 1.0f && ops->scale(be, m->grads, coef, m->nparam_values, err) != 0)
		return -1;
	int do_step;
	if (tr_amp_step(&run->scaler, NULL, 0, &do_step, err) != 0)
		return -1;
	run->steps += do_step;
	for (int t = 0; do_step && t < m->ntensors; t++) {
		const struct tr_tensor_spec *spec = &m->tensors[t];
		if (spec->kind != TR_TENSOR_PARAM || run->frozen[t])
			continue;
		struct tr_optim_hparams hp =
		    tr_optim_sched_hparams(&run->sched, tr_optim_group_of(spec->name));
		struct tr_f_optim step = tr_optim_step_scalars(run->kind, &hp, run->steps);
		if (ops->optim_update(be, &step, m->params + spec->offset, spec->grad,
				      run->slot0 + spec->offset, run->slot1 + spec->offset,
				      spec->numel, err) != 0)
			return -1;
	}
	if (tr_amp_update(&run->scaler, err) != 0 ||
	    ops->memset(be, m->grads, 0, m->nparam_values * sizeof(float), err) != 0)
		return -1;
	if (run->comm != NULL && ut_log_enabled(UT_LOG_DEBUG) && log_params_checksum(run, err) != 0)
		return -1;
	if (run->ema == NULL) /* DDP: rank 0 alone keeps the EMA */
		return 0;
	double d = tr_optim_ema_next_decay(&run->ema_state);
	const float keep = (float)d, take = (float)(1.0 - d);
	if (ops->ema_update(be, run->ema->params, m->params, keep, take, m->nparam_values, err) !=
		0 ||
	    ops->ema_update(be, run->ema->buffers, m->buffers, keep, take, m->nbuffer_values,
			    err) != 0)
		return -1;
	return report_step(run, do_step, items, err);
}

/*
 * The key of a batch's own draws (--multi-scale, --quad): its number, or
 * under DDP its number * world + rank, so that each rank draws its own as
 * YOLOv5's ranks do (each seeds its generators with seed + 1 + RANK).
 */
static long batch_key(const struct tr_run *run, long number)
{
	return run->world > 1 ? number * run->world + run->rank : number;
}

/*
 * --multi-scale: sz = randrange(imgsz / 2, 1.5 imgsz + gs) // gs * gs from the
 * batch's own stream, and both sides scaled by sz / the longer side, rounded
 * up to the grid (train.py's rule). The size stays when the scale is 1.
 */
static void multi_scale_shape(const struct tr_run *run, long epoch, long number, int *height,
			      int *width)
{
	struct ut_pcg rng;
	int imgsz = run->imgsz, gs = run->gs;
	tr_sample_stream(&rng, (uint64_t)run->opts->seed ^ STREAM_MULTI_SCALE, epoch,
			 batch_key(run, number));
	int start = imgsz / 2, stop = (int)floor(imgsz * 1.5 + gs);
	int size = (start + (int)ut_pcg_below(&rng, (uint32_t)(stop - start))) / gs * gs;
	double longer = *height > *width ? *height : *width;
	double factor = size / longer;
	if (factor == 1.0)
		return;
	*height = (int)ceil(*height * factor / gs) * gs;
	*width = (int)ceil(*width * factor / gs) * gs;
}

/*
 * collate_fn4 (--quad), its host part: every 4 images of the batch become
 * one of twice the size, with probability 0.5 the first of them upsampled
 * 2x with its labels, else the four tiled with their labels halved and
 * shifted. A rest of fewer than 4 images is dropped. The draws go to
 * run->quad_upsample and the targets to run->quad_targets; the backend's
 * quad_collate makes the images.
 */
static int quad_batch(struct tr_run *run, const struct tr_batch *batch, int *n_out, size_t *nt_out,
		      struct ut_err *err)
{
	int n = batch->n / 4;
	if (batch->nt > run->quad_cap) {
		float *grown = realloc(run->quad_targets, batch->nt * 6 * sizeof(float));
		if (grown == NULL)
			return ut_err_set(err, "out of memory for the quad targets");
		run->quad_targets = grown;
		run->quad_cap = batch->nt;
	}
	struct ut_pcg rng;
	tr_sample_stream(&rng, (uint64_t)run->opts->seed ^ STREAM_QUAD, batch->epoch,
			 batch_key(run, batch->number));
	size_t nt = 0;
	for (int q = 0; q < n; q++) {
		int first = 4 * q;
		bool upsample = ut_pcg_uniform(&rng) < 0.5;
		run->quad_upsample[q] = upsample;
		for (size_t t = 0; t < batch->nt; t++) {
			const float *row = batch->targets + 6 * t;
			int k = (int)row[0] - first;
			if (k < 0 || k > 3 || (upsample && k != 0))
				continue;
			float *dst = run->quad_targets + 6 * nt++;
			dst[0] = (float)q;
			dst[1] = row[1];
			if (upsample) {
				memcpy(dst + 2, row + 2, 4 * sizeof(float));
				continue;
			}
			dst[2] = (row[2] + (float)(k >> 1)) * 0.5f;
			dst[3] = (row[3] + (float)(k & 1)) * 0.5f;
			dst[4] = row[4] * 0.5f;
			dst[5] = row[5] * 0.5f;
		}
	}
	*n_out = n;
	*nt_out = nt;
	return 0;
}

/* Forward, loss, backward of one batch; the step when accumulation is due. */
static int train_batch(struct tr_run *run, const struct tr_batch *batch, long epoch, long ni,
		       float items[3], int *size, struct ut_err *err)
{
	struct tr_model *m = run->model;
	const struct tr_detect *det = &m->detect;
	struct tr_backend *be = run->backend;
	const float *images = run->images;
	int height = batch->height, width = batch->width, n = batch->n;
	const float *targets = batch->targets;
	size_t nt = batch->nt;
	if (run->opts->multi_scale)
		multi_scale_shape(run, epoch, batch->number, &height, &width);
	size_t count = (size_t)n * 3 * (size_t)batch->height * (size_t)batch->width;
	/*
	 * The bytes go up through a pinned buffer with an asynchronous copy,
	 * which overlaps what is left of the previous batch's compute; the
	 * take orders images_to_float after it. The loss's download below
	 * is the sync that staging.h asks for before a pinned buffer returns.
	 */
	const uint8_t *images_u8;
	if (tr_staging_give(&run->staging, be, batch->images, count, err) != 0 ||
	    tr_staging_take(&run->staging, be, &images_u8, err) != 0 ||
	    be->ops->images_to_float(be, images_u8, run->images, count, err) != 0)
		return -1;
	struct tr_tensor whole = {run->images, {n, 3, batch->height, batch->width}};
	if (run->opts->quad) {
		if (quad_batch(run, batch, &n, &nt, err) != 0)
			return -1;
		if (n == 0) { /* fewer than 4 images left: collate_fn4 makes nothing */
			memset(items, 0, 3 * sizeof(float));
			return 0;
		}
		targets = run->quad_targets;
		height *= 2;
		width *= 2;
		if (be->ops->quad_collate(be, images_u8, &whole, run->quad_upsample,
					  run->dev_scaled, err) != 0)
			return -1;
		images = run->dev_scaled;
	} else if (height != batch->height || width != batch->width) { /* --multi-scale */
		struct tr_tensor y = {run->dev_scaled, {n, 3, height, width}};
		if (be->ops->resize_bilinear(be, &whole, &y, err) != 0)
			return -1;
		images = run->dev_scaled;
	}
	*size = width; /* what the network sees (--quad, --multi-scale) */
	if (tr_model_forward(m, run->backend, images, n, height, width, 1, err) != 0)
		return -1;
	struct tr_loss_batch lb = {.bs = n, .targets = targets, .nt = nt};
	for (int l = 0; l < det->nl; l++) {
		lb.ny[l] = height / det->stride[l];
		lb.nx[l] = width / det->stride[l];
		lb.pred[l] = det->outputs[l];
		lb.grad[l] = run->grad_out[l];
	}
	struct tr_loss_result result;
	if (tr_loss_reserve(run->loss, nt, err) != 0 ||
	    tr_loss_compute_on(run->loss, be, &lb, &result, err) != 0)
		return -1;
	for (int l = 0; l < det->nl; l++) {
		size_t values = (size_t)n * det->na * lb.ny[l] * lb.nx[l] * det->no;
		/* train.py: loss *= WORLD_SIZE under DDP, then loss *= 4 with --quad */
		if (run->world > 1 &&
		    be->ops->scale(be, run->grad_out[l], (float)run->world, values, err) != 0)
			return -1;
		if (run->opts->quad && be->ops->scale(be, run->grad_out[l], 4.0f, values, err) != 0)
			return -1;
		/* scaler.scale(loss).backward(): the backward's seed is the scale */
		if (run->scaler.enabled &&
		    be->ops->scale(be, run->grad_out[l], run->scaler.scale, values, err) != 0)
			return -1;
	}
	if (!isfinite(result.loss))
		return ut_err_set(err,
				  "epoch %ld batch %ld: the loss is %g (box %g obj %g cls %g); "
				  "training diverged, try a lower lr0",
				  epoch, batch->number, (double)result.loss,
				  (double)result.items[0], (double)result.items[1],
				  (double)result.items[2]);
	if (tr_model_backward(m, run->backend, (const float *const *)run->grad_out, err) != 0)
		return -1;
	if (tr_optim_sched_step_due(&run->sched, ni) && optimizer_step(run, result.items, err) != 0)
		return -1;
	memcpy(items, result.items, sizeof(result.items));
	return 0;
}

/*
 * Has a stop been asked for (*opts->stop)? Under DDP the ranks agree, an
 * all-reduce of one flag: if any rank saw it, every rank stops after this
 * same batch (a rank that stopped alone would leave the others waiting).
 */
static int stop_requested(struct tr_run *run, bool *stop, struct ut_err *err)
{
	bool mine = run->opts->stop != NULL && *run->opts->stop;
	if (run->comm == NULL) {
		*stop = mine;
		return 0;
	}
	struct tr_backend *be = run->backend;
	float flag = mine ? 1.0f : 0.0f;
	if (be->ops->upload(be, run->flag, &flag, sizeof(flag), err) != 0 ||
	    tr_comm_all_reduce_sum(run->comm, run->flag, 1, err) != 0 ||
	    be->ops->download(be, &flag, run->flag, sizeof(flag), err) != 0)
		return -1;
	*stop = flag > 0;
	return 0;
}

/* Debug: the dataset items (split indices) of a rank's batch, for the DDP shard checks. */
static void log_batch_items(const struct tr_run *run, const struct tr_batch *batch)
{
	char line[3072];
	size_t used = 0;
	for (int i = 0; i < batch->n && used + 24 < sizeof(line); i++)
		used += (size_t)snprintf(line + used, sizeof(line) - used, "%s%ld", i ? " " : "",
					 batch->info[i].item);
	line[used] = '\0';
	ut_log(UT_LOG_DEBUG, "ddp: rank %d epoch %ld batch %ld items %s", run->rank, batch->epoch,
	       batch->number, line);
}

static int train_epoch(struct tr_run *run, long epoch, float mloss[3], struct ut_err *err)
{
	const struct tr_train_opts *o = run->opts;
	bool zero = run->rank == 0;
	const double *weights = NULL;
	if (o->image_weights) {
		/* cw = class_weights * (1 - maps)^2 / nc, then per image */
		double *cw = calloc((size_t)run->nc, sizeof(double));
		if (cw == NULL)
			return ut_err_set(err, "out of memory");
		for (int c = 0; c < run->nc; c++)
			cw[c] = run->class_weights[c] * (1 - run->maps[c]) * (1 - run->maps[c]) /
				run->nc;
		tr_labels_image_weights(&run->train_split, run->nc, o->single_cls, cw,
					run->image_weights);
		free(cw);
		weights = run->image_weights;
	}
	if (tr_loader_start_epoch(run->train_loader, epoch, weights, err) != 0)
		return -1;
	long nb = tr_loader_num_batches(run->train_loader);
	if (run->backend->ops->memset(run->backend, run->model->grads, 0,
				      run->model->nparam_values * sizeof(float), err) != 0)
		return -1;
	mloss[0] = mloss[1] = mloss[2] = 0;
	if (o->progress_tty && zero)
		fprintf(stderr, "\n%11s%11s%11s%11s%11s%11s%11s\n", "Epoch", "Mem", "box_loss",
			"obj_loss", "cls_loss", "Instances", "Size");
	const struct tr_batch *batch;
	size_t last_nt = 0;
	int last_size = 0, rc;
	while ((rc = tr_loader_next(run->train_loader, &batch, err)) == 1) {
		long i = batch->number;
		last_nt = batch->nt;
		long ni = tr_optim_sched_batch(&run->sched, epoch, i);
		float items[3];
		if (run->comm != NULL && ut_log_enabled(UT_LOG_DEBUG))
			log_batch_items(run, batch);
		if (train_batch(run, batch, epoch, ni, items, &last_size, err) != 0)
			return -1;
		for (int k = 0; k < 3; k++) /* mloss = (mloss * i + items) / (i + 1), float32 */
			mloss[k] = (mloss[k] * (float)i + items[k]) / (float)(i + 1);
		if (o->progress_tty && zero) {
			fputs("\r", stderr);
			progress_line(run, epoch, mloss, batch->nt, last_size, i + 1, nb, stderr);
			fputs("\033[K", stderr);
			fflush(stderr);
		}
		bool stop;
		if (stop_requested(run, &stop, err) != 0)
			return -1;
		if (stop)
			return TR_TRAIN_STOPPED;
	}
	if (rc < 0)
		return -1;
	if (!zero)
		return 0;
	if (!o->progress_tty) {
		progress_line(run, epoch, mloss, last_nt, last_size, nb, nb, stderr);
		fputc('\n', stderr);
	} else {
		fputc('\n', stderr);
	}
	return 0;
}

/* val.run on the EMA model with the training loss. */
static int validate(struct tr_run *run, struct ut_err *err)
{
	if (run->have_results)
		tr_val_results_free(&run->results);
	run->have_results = false;
	tr_val_reset(run->val);
	if (tr_loader_start_epoch(run->val_loader, 0, NULL, err) != 0)
		return -1;
	const struct tr_batch *batch;
	int rc;
	while ((rc = tr_loader_next(run->val_loader, &batch, err)) == 1) {
		if (tr_val_batch(run->val, run->ema, run->backend, batch, run->loss, err) != 0)
			return -1;
		if (run->opts->stop != NULL && *run->opts->stop)
			return TR_TRAIN_STOPPED;
	}
	if (rc < 0 || tr_val_finish(run->val, &run->results, err) != 0)
		return -1;
	run->have_results = true;
	for (int c = 0; c < run->nc; c++)
		run->maps[c] = run->results.maps[c];
	tr_val_print(&run->results, (const char *const *)run->data.names, false, stderr);
	return 0;
}

/* One results.csv row, as YOLOv5's logger writes it ('%20s' header, '%20.5g' values). */
static int log_results(struct tr_run *run, long epoch, const float mloss[3], const double lr[3],
		       struct ut_err *err)
{
	static const char *const header[RESULTS_COLUMNS] = {"epoch",
							    "train/box_loss",
							    "train/obj_loss",
							    "train/cls_loss",
							    "metrics/precision",
							    "metrics/recall",
							    "metrics/mAP_0.5",
							    "metrics/mAP_0.5:0.95",
							    "val/box_loss",
							    "val/obj_loss",
							    "val/cls_loss",
							    "x/lr0",
							    "x/lr1",
							    "x/lr2"};
	struct tr_val_summary s = {0};
	double vloss[3] = {0, 0, 0};
	if (run->have_results) {
		s = run->results.summary;
		memcpy(vloss, run->results.loss, sizeof(vloss));
	}
	double values[RESULTS_COLUMNS] = {(double)epoch, mloss[0], mloss[1], mloss[2], s.mp,
					  s.mr,		 s.map50,  s.map,    vloss[0], vloss[1],
					  vloss[2],	 lr[0],	   lr[1],    lr[2]};
	struct stat st;
	bool fresh = stat(run->results_path, &st) != 0;
	FILE *f = fopen(run->results_path, "a");
	if (f == NULL)
		return ut_err_set(err, "%s: %s", run->results_path, strerror(errno));
	for (int c = 0; fresh && c < RESULTS_COLUMNS; c++)
		fprintf(f, "%20s%s", header[c], c + 1 < RESULTS_COLUMNS ? "," : "\n");
	for (int c = 0; c < RESULTS_COLUMNS; c++) {
		char cell[64];
		ut_fmt_g5(values[c], cell, sizeof(cell));
		fprintf(f, "%s%s", cell, c + 1 < RESULTS_COLUMNS ? "," : "\n");
	}
	int bad = fflush(f) != 0 || fsync(fileno(f)) != 0;
	if (fclose(f) != 0 || bad)
		return ut_err_set(err, "%s: %s", run->results_path, strerror(errno));
	return 0;
}

/* EarlyStopping.__call__; true = stop. */
static bool early_stop(struct tr_run *run, long epoch, double fitness)
{
	if (fitness >= run->stop_best) {
		run->stop_best_epoch = epoch;
		run->stop_best = fitness;
	}
	double patience = run->opts->patience > 0 ? (double)run->opts->patience : INFINITY;
	long delta = epoch - run->stop_best_epoch;
	run->possible_stop = (double)delta >= patience - 1;
	bool stop = (double)delta >= patience;
	if (stop)
		ut_log(UT_LOG_INFO,
		       "stopping training early as no improvement observed in last %ld epochs; "
		       "best results at epoch %ld",
		       run->opts->patience, run->stop_best_epoch);
	return stop;
}

/* Rank 0's end of an epoch: validation, early stopping, results.csv, checkpoints. */
static int save_epoch(struct tr_run *run, long epoch, const float mloss[3], const double lr[3],
		      bool *stop, struct ut_err *err)
{
	const struct tr_train_opts *o = run->opts;
	bool final_epoch = epoch + 1 == run->epochs || run->possible_stop;
	if (!o->noval || final_epoch) {
		int rc = validate(run, err);
		if (rc != 0)
			return rc;
	}
	double fitness = run->have_results ? tr_fitness(&run->results.summary) : 0.0;
	*stop = early_stop(run, epoch, fitness);
	if (fitness > run->best_fitness)
		run->best_fitness = fitness;
	if (log_results(run, epoch, mloss, lr, err) != 0)
		return -1;
	if (!o->nosave || final_epoch) {
		if (save_checkpoint(run, run->last, epoch, err) != 0)
			return -1;
		if (run->best_fitness == fitness &&
		    save_checkpoint(run, run->best, epoch, err) != 0)
			return -1;
		if (o->save_period > 0 && epoch % o->save_period == 0) {
			char path[MAX_PATH + 64];
			snprintf(path, sizeof(path), "%s/weights/epoch%ld.safetensors",
				 run->save_dir, epoch);
			if (save_checkpoint(run, path, epoch, err) != 0)
				return -1;
		}
	}
	return 0;
}

/* DDP decisions rank 0 sends at the end of an epoch (YOLOv5 broadcasts its stop flag). */
enum { GO_ON, STOP_EARLY, STOPPED_BY_SIGNAL };

/*
 * The end of an epoch: the scheduler's step, then rank 0 validates, logs
 * and saves while the other ranks wait for its decision.
 */
static int end_epoch(struct tr_run *run, long epoch, const float mloss[3], bool *stop,
		     struct ut_err *err)
{
	double lr[3];
	for (int g = 0; g < 3; g++)
		lr[g] = run->sched.lr[g];
	tr_optim_sched_epoch_end(&run->sched);
	int rc = 0;
	*stop = false;
	if (run->rank == 0)
		rc = save_epoch(run, epoch, mloss, lr, stop, err);
	if (run->comm == NULL || rc < 0)
		return rc;
	struct tr_backend *be = run->backend;
	float decision = rc == TR_TRAIN_STOPPED ? STOPPED_BY_SIGNAL : *stop ? STOP_EARLY : GO_ON;
	if (be->ops->upload(be, run->flag, &decision, sizeof(decision), err) != 0 ||
	    tr_comm_broadcast(run->comm, run->flag, 1, 0, err) != 0 ||
	    be->ops->download(be, &decision, run->flag, sizeof(decision), err) != 0)
		return -1;
	*stop = decision == STOP_EARLY;
	return decision == STOPPED_BY_SIGNAL ? TR_TRAIN_STOPPED : 0;
}

/* ---- the run ---- */

static int check_opts(const struct tr_train_opts *o, struct ut_err *err)
{
	if (o->data[0] == '\0')
		return ut_err_set(err, "--data is required");
	if (o->hyp[0] == '\0')
		return ut_err_set(err, "--hyp is required");
	if (o->epochs < 1)
		return ut_err_set(err, "--epochs %ld: must be at least 1", o->epochs);
	if (o->batch_size < 1)
		return ut_err_set(
		    err, "--batch-size %ld: must be at least 1 (-1, AutoBatch, needs a GPU)",
		    o->batch_size);
	if (o->imgsz < 1)
		return ut_err_set(err, "--imgsz %ld: must be positive", o->imgsz);
	if (tr_backend_check_device(o->device, err) != 0)
		return -1;
	if (o->quad && o->batch_size < 4)
		return ut_err_set(err, "--quad needs --batch-size 4 or more (%ld)", o->batch_size);
	if (o->quad && o->multi_scale)
		return ut_err_set(err, "--quad and --multi-scale together are not supported");
	if (o->cache != NULL && strcmp(o->cache, "ram") != 0 && strcmp(o->cache, "disk") != 0)
		return ut_err_set(err, "--cache %s: expected ram or disk", o->cache);
	return 0;
}

/* The --device of rank `rank`: the rank-th GPU id of "0,1,...", or the CPU. */
static void rank_device(const char *device, bool gpu, int rank, char *buf, size_t size)
{
	snprintf(buf, size, "%s", gpu ? "" : device);
	for (int r = 0; gpu && r <= rank; r++) {
		size_t len = strcspn(device, ",");
		if (r == rank)
			snprintf(buf, size, "%.*s", (int)len, device);
		device += len + (device[len] == ',');
	}
}

/*
 * The number of ranks: the GPU ids of --device ("0,1": 2), else
 * opts->cpu_ranks. *ddp: ranks as threads with communicators, for several
 * GPUs or any cpu_ranks >= 1 (one CPU rank runs that machinery with the
 * single-process loader order, so it must equal a plain run byte for byte).
 * Then YOLOv5's DDP checks (train.py's `if LOCAL_RANK != -1` block;
 * --evolve is yolo-evolve's, never ours).
 */
static int ddp_world(const struct tr_train_opts *o, int *world, bool *gpu, bool *ddp,
		     struct ut_err *err)
{
	const char *device = o->device;
	*gpu = device[0] != '\0' && strcmp(device, "cpu") != 0;
	*world = 1;
	if (*gpu) {
		for (const char *c = device; *c != '\0'; c++)
			*world += *c == ',';
	} else if (o->cpu_ranks >= 1) {
		*world = (int)(o->cpu_ranks <= MAX_WORLD ? o->cpu_ranks : MAX_WORLD + 1);
	}
	*ddp = *world > 1 || (!*gpu && o->cpu_ranks >= 1);
	if (!*ddp)
		return 0;
	if (*world > MAX_WORLD)
		return ut_err_set(err, "DDP: at most %d ranks", MAX_WORLD);
	for (int a = 0; *gpu && a < *world; a++)
		for (int b = a + 1; b < *world; b++) {
			char id_a[64], id_b[64];
			rank_device(device, true, a, id_a, sizeof(id_a));
			rank_device(device, true, b, id_b, sizeof(id_b));
			if (id_a[0] == '\0' || id_b[0] == '\0' || strcmp(id_a, id_b) == 0)
				return ut_err_set(
				    err, "--device %s: give each GPU once (one rank per GPU)",
				    device);
		}
	if (o->image_weights)
		return ut_err_set(err,
				  "--image-weights argument is not compatible with DDP training");
	int per_rank;
	if (tr_sampler_rank_batch((int)o->batch_size, *world, &per_rank, err) != 0)
		return -1;
	if (o->quad && per_rank < 4)
		return ut_err_set(err,
				  "--quad needs 4 or more images per rank (--batch-size %ld over "
				  "%d ranks)",
				  o->batch_size, *world);
	return 0;
}

/*
 * This rank's backend: the --device's, or (--sync-bn under DDP) a BN
 * wrapper over it whose batch statistics cover every rank's shard.
 */
static int make_backend(struct tr_run *run, int threads, struct ut_err *err)
{
	const struct tr_train_opts *o = run->opts;
	char device[64];
	bool gpu = o->device[0] != '\0' && strcmp(o->device, "cpu") != 0;
	rank_device(o->device, gpu, run->rank, device, sizeof(device));
	if (!(o->sync_bn && run->comm != NULL))
		return tr_backend_create(device, threads, &run->backend, err);
	int max_channels = 1;
	for (int i = 0; i < run->model->nconvs; i++)
		if (run->model->convs[i].conv.cout > max_channels)
			max_channels = run->model->convs[i].conv.cout;
	if (tr_backend_create(device, threads, &run->inner, err) != 0)
		return -1;
	return tr_syncbn_backend_create(run->inner, run->comm, max_channels, &run->backend, err);
}

/*
 * DDP's constructor: every rank takes rank 0's parameters and buffers (its
 * AutoAnchor and half rounding included); the host mirror follows, for the
 * loss's anchors.
 */
static int broadcast_model(struct tr_run *run, struct ut_err *err)
{
	struct tr_model *m = run->model;
	if (run->comm == NULL)
		return 0;
	if (tr_comm_broadcast(run->comm, m->params, m->nparam_values, 0, err) != 0 ||
	    tr_comm_broadcast(run->comm, m->buffers, m->nbuffer_values, 0, err) != 0)
		return -1;
	return tr_model_download(m, err);
}

static int setup(struct tr_run *run, struct ut_err *err)
{
	const struct tr_train_opts *o = run->opts;
	bool zero = run->rank == 0;
	size_t hyp_len;
	if (check_opts(o, err) != 0 || tr_optim_kind_parse(o->optimizer, &run->kind, err) != 0 ||
	    tr_amp_scaler_init(&run->scaler, o->amp_fp32_scaler ? TR_AMP_FP16 : TR_AMP_OFF, NULL,
			       err) != 0 ||
	    ut_read_file(o->hyp, &run->hyp_text, &hyp_len, err) != 0 ||
	    load_hyp(run, run->hyp_text, hyp_len, o->hyp, err) != 0 ||
	    (zero && make_dirs(run, err) != 0))
		return -1;
	if (zero &&
	    (write_text(run->save_dir, "hyp.yaml", run->hyp_text, err) != 0 ||
	     (o->opt_yaml != NULL && write_text(run->save_dir, "opt.yaml", o->opt_yaml, err) != 0)))
		return -1;
	if (zero && !o->resume)
		unlink(run->results_path);
	run->epochs = o->epochs;
	run->batch = (int)o->batch_size / run->world;
	int threads = o->threads > 0 ? (int)o->threads : cpu_count();
	threads = threads / run->world > 0 ? threads / run->world : 1;
	if (open_data_zero_first(run, err) != 0 || read_model_text(run, err) != 0 ||
	    build_models(run, err) != 0 || make_backend(run, threads, err) != 0)
		return -1;
	if (zero)
		copy_model_state(run->ema,
				 run->model); /* ModelEMA(model) comes before AutoAnchor */
	check_imgsz(run);
	int imgsz = run->imgsz;
	if (make_loaders(run, imgsz, run->gs, err) != 0 || plan_memory(run, imgsz, err) != 0)
		return -1;
	tr_labels_class_weights(&run->train_split, run->nc, o->single_cls, run->class_weights);
	for (int c = 0; c < run->nc; c++)
		run->class_weights[c] *= run->nc;
	if (o->resume && resume_from(run, err) != 0)
		return -1;
	if (!o->resume) {
		if (zero && !o->noautoanchor && autoanchor(run, imgsz, err) != 0)
			return -1;
		if (o->noautoanchor && run->anchors_given)
			return ut_err_set(
			    err,
			    "%s: the anchors hyp makes placeholder anchors that only "
			    "AutoAnchor replaces; drop --noautoanchor or the anchors key",
			    o->hyp);
	}
	/* the host mirrors as resume and AutoAnchor left them; a fresh run rounds to half */
	if (tr_model_upload(run->model, err) != 0 ||
	    (run->ema != NULL && tr_model_upload(run->ema, err) != 0) ||
	    (zero && !o->resume && round_state_to_half(run, err) != 0) ||
	    broadcast_model(run, err) != 0 || make_loss(run, imgsz, err) != 0)
		return -1;
	return make_schedule(run, err);
}

static void teardown(struct tr_run *run)
{
	tr_loader_free(run->train_loader);
	tr_loader_free(run->val_loader);
	if (run->have_results)
		tr_val_results_free(&run->results);
	tr_val_free(run->val);
	tr_loss_free(run->loss);
	tr_model_free(run->model); /* device memory first, then its backend */
	tr_model_free(run->ema);
	if (run->backend != NULL) {
		run->backend->ops->free(run->backend, run->slot0);
		run->backend->ops->free(run->backend, run->slot1);
		if (run->staging_ready)
			tr_staging_release(&run->staging, run->backend);
		run->backend->ops->free(run->backend, run->images);
		run->backend->ops->free(run->backend, run->dev_scaled);
		run->backend->ops->free(run->backend, run->flag);
		for (int l = 0; l < TR_MAX_LEVELS; l++)
			run->backend->ops->free(run->backend, run->grad_out[l]);
		tr_backend_destroy(run->backend);
	}
	tr_backend_destroy(run->inner); /* after the --sync-bn wrapper that borrowed it */
	free(run->quad_upsample);
	free(run->quad_targets);
	free(run->host_slot[0]);
	free(run->host_slot[1]);
	free(run->frozen);
	free(run->class_weights);
	free(run->maps);
	free(run->image_weights);
	free(run->model_text);
	free(run->hyp_text);
	tr_data_split_free(&run->train_split);
	tr_data_split_free(&run->val_split);
	tr_data_yaml_free(&run->data);
}

/* One rank's whole run (the only one without DDP): setup, the epochs, teardown. */
static int train_rank(const struct tr_train_opts *opts, int rank, int world, struct tr_comm *comm,
		      struct ut_err *err)
{
	struct tr_run run = {.opts = opts, .rank = rank, .world = world, .comm = comm};
	int rc = setup(&run, err);
	double t0 = ut_now();
	long epoch = run.start_epoch;
	if (rc == 0 && rank == 0)
		ut_log(UT_LOG_INFO, "image size %ld, %ld epochs, results to %s", opts->imgsz,
		       run.epochs, run.save_dir);
	if (rc == 0 && rank == 0 && world > 1)
		ut_log(UT_LOG_INFO, "DDP: %d ranks of %d images per batch", world, run.batch);
	for (; rc == 0 && epoch < run.epochs; epoch++) {
		float mloss[3];
		bool stop = false;
		rc = train_epoch(&run, epoch, mloss, err);
		if (rc == 0)
			rc = end_epoch(&run, epoch, mloss, &stop, err);
		if (rc == 0 && stop)
			break;
	}
	if (rc == 0 && rank == 0 && run.scaler.enabled)
		ut_log(UT_LOG_INFO,
		       "loss scaler: %lld of %ld optimizer steps skipped (inf/nan), scale %g",
		       (long long)run.scaler.steps_skipped, run.steps_due,
		       (double)run.scaler.scale);
	if (rc == 0 && rank == 0)
		ut_log(UT_LOG_INFO, "%ld epochs completed in %.3f hours; results in %s",
		       epoch - run.start_epoch + (epoch < run.epochs ? 1 : 0),
		       (ut_now() - t0) / 3600, run.save_dir);
	teardown(&run);
	return rc;
}

/* What the rank threads share: the first error, which is the cause of the others'. */
struct ddp_group {
	pthread_mutex_t lock;
	bool failed;
	int failed_rank;
	struct ut_err first;
};

struct ddp_rank {
	const struct tr_train_opts *opts;
	struct tr_comm *comm;
	struct ddp_group *group;
	int rc;
};

static void *rank_main(void *arg)
{
	struct ddp_rank *job = arg;
	struct ut_err err = {{0}};
	job->rc = train_rank(job->opts, job->comm->rank, job->comm->world, job->comm, &err);
	if (job->rc < 0) {
		struct ddp_group *g = job->group;
		pthread_mutex_lock(&g->lock);
		if (!g->failed) {
			g->failed = true;
			g->failed_rank = job->comm->rank;
			g->first = err;
		}
		pthread_mutex_unlock(&g->lock);
		tr_comm_abort(job->comm); /* the others must not wait for this rank */
	}
	return NULL;
}

/* The group's communicators: NCCL between the GPUs of --device, else threads. */
static int make_comms(const struct tr_train_opts *o, int world, bool gpu, struct tr_comm **comms,
		      struct ut_err *err)
{
	if (!gpu)
		return tr_comm_thread_create(world, comms, err);
#ifdef TR_HAVE_NCCL
	int devices[MAX_WORLD];
	char id[64];
	for (int r = 0; r < world; r++) {
		long value;
		rank_device(o->device, true, r, id, sizeof(id));
		if (ut_parse_long(id, 0, 4095, &value) != 0)
			return ut_err_set(err, "--device %s: '%s' is not a GPU id", o->device, id);
		devices[r] = (int)value;
	}
	return tr_comm_nccl_create_all(world, devices, comms, err);
#else
	return ut_err_set(err, "--device %s: DDP on GPUs needs a CUDA build with NCCL", o->device);
#endif
}

/* DDP: world rank threads; the first error (with its rank) if any failed. */
static int train_ddp(const struct tr_train_opts *opts, int world, bool gpu, struct ut_err *err)
{
	struct tr_comm *comms[MAX_WORLD] = {NULL};
	struct ddp_rank jobs[MAX_WORLD];
	pthread_t threads[MAX_WORLD];
	struct ddp_group group = {.failed = false};
	if (make_comms(opts, world, gpu, comms, err) != 0)
		return -1;
	pthread_mutex_init(&group.lock, NULL);
	int started = 0, rc = 0;
	for (; started < world; started++) {
		jobs[started] =
		    (struct ddp_rank){.opts = opts, .comm = comms[started], .group = &group};
		int e = pthread_create(&threads[started], NULL, rank_main, &jobs[started]);
		if (e != 0) {
			rc = ut_err_set(err, "DDP: cannot start rank %d: %s", started, strerror(e));
			tr_comm_abort(comms[0]);
			break;
		}
	}
	for (int r = 0; r < started; r++)
		pthread_join(threads[r], NULL);
	for (int r = 0; r < world; r++)
		tr_comm_destroy(comms[r]);
	pthread_mutex_destroy(&group.lock);
	if (rc != 0)
		return -1;
	if (group.failed) {
		if (group.failed_rank == 0)
			*err = group.first;
		else
			ut_err_set(err, "rank %d: %s", group.failed_rank, group.first.msg);
		return -1;
	}
	return jobs[0].rc;
}

/*
 * --amp as YOLOv5's check_amp decides it: AMP only on CUDA devices, so
 * fp16 and bf16 on the CPU train in fp32 (one warning says so); on GPUs
 * they are refused, as there are no fp16/bf16 kernels yet.
 */
static int check_amp(const struct tr_train_opts *o, struct ut_err *err)
{
	bool gpu = o->device[0] != '\0' && strcmp(o->device, "cpu") != 0;
	const char *mode = tr_amp_mode_name(o->amp);
	if (o->amp == TR_AMP_OFF)
		return 0;
	if (gpu)
		return ut_err_set(err,
				  "--amp %s: fp16/bf16 kernels are not built yet, the CUDA "
				  "backend trains in fp32 only; use --amp off",
				  mode);
	ut_log(UT_LOG_WARN,
	       "--amp %s: AMP runs only on CUDA devices (YOLOv5's check_amp), so the CPU trains "
	       "in fp32 without a loss scaler",
	       mode);
	return 0;
}

int tr_train(const struct tr_train_opts *opts, struct ut_err *err)
{
	int world;
	bool gpu, ddp;
	/* --amp first: its refusal on a GPU does not depend on the GPU being usable */
	if (check_amp(opts, err) != 0 || check_opts(opts, err) != 0 ||
	    ddp_world(opts, &world, &gpu, &ddp, err) != 0)
		return -1;
	if (!ddp)
		return train_rank(opts, 0, 1, NULL, err);
	return train_ddp(opts, world, gpu, err);
}
