/*
 * yolo_val.c - yolo-val, YOLOv5 v7.0's val.py as a program: validate
 * safetensors weights (a yolo-train checkpoint, or a YOLOv5 .pt converted by
 * scripts/yolov5_to_safetensors.py) on a split of a YOLO dataset and print
 * val.py's table (P, R, mAP@.5, mAP@.5:.95) and speed line.
 *
 *	yolo-val --weights best.safetensors --data data.yaml --imgsz 320 [--cfg yolov5n.yaml]
 *
 * Exit status: 0 done, 1 a runtime failure (a file missing or bad, weights
 * for another nc), 2 a usage error. Every error is one line naming the
 * file or option at fault.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint.h"
#include "cli.h"
#include "dataset.h"
#include "loader.h"
#include "safetensors.h"
#include "val.h"

#define EXIT_USAGE 2

struct cli {
	const char *weights, *data, *cfg, *task, *device;
	long imgsz, batch_size, workers, threads, max_det;
	double conf_thres, iou_thres;
	bool single_cls, verbose, help;
};

#define CLI_FIELD(f) .offset = offsetof(struct cli, f)

/* The options, val.py's spellings as aliases. */
static const struct ut_cli_opt options[] = {
    {"weights", .kind = UT_CLI_STRING, CLI_FIELD(weights), .help = "FILE.safetensors (required)"},
    {"data", .kind = UT_CLI_STRING, CLI_FIELD(data), .help = "data.yaml (required)"},
    {"cfg", .kind = UT_CLI_STRING, CLI_FIELD(cfg),
     .help = "model yaml (default: the model_yaml stored with the weights)"},
    {"imgsz", "img", UT_CLI_LONG, CLI_FIELD(imgsz), 32, 8192, .help = "inference size (640)"},
    {"batch-size", "batch", UT_CLI_LONG, CLI_FIELD(batch_size), 1, 4096, .help = "batch size (32)"},
    {"conf-thres", .kind = UT_CLI_DOUBLE, CLI_FIELD(conf_thres), 0, 1,
     .help = "confidence (0.001)"},
    {"iou-thres", .kind = UT_CLI_DOUBLE, CLI_FIELD(iou_thres), 0, 1, .help = "NMS IoU (0.6)"},
    {"max-det", .kind = UT_CLI_LONG, CLI_FIELD(max_det), 1, 100000,
     .help = "detections per image (300)"},
    {"task", .kind = UT_CLI_STRING, CLI_FIELD(task), .help = "split: train, val or test (val)"},
    {"single-cls", .kind = UT_CLI_FLAG, CLI_FIELD(single_cls), .help = "one class for all"},
    {"verbose", .kind = UT_CLI_FLAG, CLI_FIELD(verbose),
     .help = "per-class rows even for nc >= 50"},
    {"workers", .kind = UT_CLI_LONG, CLI_FIELD(workers), 0, 64, .help = "loader threads (2)"},
    {"threads", .kind = UT_CLI_LONG, CLI_FIELD(threads), 1, 1024,
     .help = "compute threads (all CPUs)"},
    {"device", .kind = UT_CLI_STRING, CLI_FIELD(device),
     .help = "cpu (or a GPU id with a CUDA build)"},
    {"help", "h", UT_CLI_FLAG, CLI_FIELD(help), .help = "this help"},
};

static void usage(FILE *to)
{
	fprintf(
	    to,
	    "usage: yolo-val --weights FILE.safetensors --data data.yaml [options]\n"
	    "YOLOv5 v7.0's val.py: P, R, mAP@.5 and mAP@.5:.95 of weights on a dataset split.\n");
	ut_cli_usage(to, options, UT_ARRAY_LEN(options));
}

/* Parse argv ("--opt value" or "--opt=value"); -1 with err naming the option. */
static int parse_args(int argc, char **argv, struct cli *c, struct ut_err *err)
{
	struct ut_cli_parse p = {.opts = options, .count = UT_ARRAY_LEN(options), .target = c};
	if (ut_cli_parse(&p, argc, argv, err) != 0)
		return -1;
	if (c->help)
		return 0;
	if (c->weights == NULL)
		return ut_err_set(err, "--weights is required");
	if (c->data == NULL)
		return ut_err_set(err, "--data is required");
	if (strcmp(c->task, "train") != 0 && strcmp(c->task, "val") != 0 &&
	    strcmp(c->task, "test") != 0) {
		char q[UT_QUOTE_LEN];
		return ut_err_set(err, "--task '%s': expected train, val or test",
				  ut_quote(c->task, q, sizeof(q)));
	}
	return 0;
}

/* Everything run() opens, closed by cleanup() in reverse. */
struct session {
	struct tr_data_yaml yaml;
	struct tr_data_split split;
	struct tr_st_file *weights;
	struct tr_model *model;
	struct tr_backend *cpu;
	struct tr_loader *loader;
	struct tr_val *val;
	struct tr_val_results res;
	int usage_error; /* the failure is the command line's */
};

static void cleanup(struct session *s)
{
	tr_val_results_free(&s->res);
	tr_val_free(s->val);
	tr_loader_free(s->loader);
	tr_model_free(s->model); /* before its backend */
	tr_backend_destroy(s->cpu);
	tr_st_close(s->weights);
	tr_data_split_free(&s->split);
	tr_data_yaml_free(&s->yaml);
}

static int build_model(struct session *s, const struct cli *c, int nc, struct ut_err *err)
{
	if (c->cfg != NULL) {
		char cfg[4096];
		ut_data_file(c->cfg, cfg, sizeof(cfg)); /* yolov5n.yaml as YOLOv5 finds it */
		return tr_model_from_file(cfg, nc, &s->model, err);
	}
	const char *text = tr_st_metadata(s->weights, "model_yaml");
	if (text == NULL) {
		s->usage_error = 1;
		return ut_err_set(err, "--cfg is required: %s stores no model_yaml", c->weights);
	}
	char source[1100];
	snprintf(source, sizeof(source), "%s:model_yaml", c->weights);
	return tr_model_from_text(text, strlen(text), source, nc, &s->model, err);
}

/*
 * The classes the weights were trained for, from the first Detect conv's
 * rows (na * (nc + 5)); -1 when that tensor is absent (tr_model_load then
 * names it).
 */
static int weights_nc(const struct session *s)
{
	const struct tr_detect *det = &s->model->detect;
	const char *name = s->model->tensors[det->heads[0].tensor0].name;
	const struct tr_st_tensor *t = tr_st_find(s->weights, name);
	if (t == NULL || t->ndim < 1 || t->shape[0] % det->na != 0)
		return -1;
	return (int)(t->shape[0] / det->na) - 5;
}

/* The model of the weights, for the data's nc (val.py's check, skipped with single_cls). */
static int load_model(struct session *s, const struct cli *c, struct ut_err *err)
{
	if (tr_st_open(c->weights, &s->weights, err) != 0)
		return -1;
	if (build_model(s, c, s->yaml.nc, err) != 0)
		return -1;
	int ncm = weights_nc(s);
	if (ncm >= 1 && ncm != s->yaml.nc) {
		if (!c->single_cls)
			return ut_err_set(err,
					  "%s (%d classes) trained on different --data than %s "
					  "(%d classes)",
					  c->weights, ncm, c->data, s->yaml.nc);
		tr_model_free(s->model);
		s->model = NULL;
		if (build_model(s, c, ncm, err) != 0)
			return -1;
	}
	return tr_model_load(s->model, c->weights, err);
}

static int open_split(struct session *s, const struct cli *c, struct ut_err *err)
{
	char **sources = s->yaml.val;
	int n = s->yaml.n_val;
	if (strcmp(c->task, "train") == 0) {
		sources = s->yaml.train;
		n = s->yaml.n_train;
	} else if (strcmp(c->task, "test") == 0) {
		sources = s->yaml.test;
		n = s->yaml.n_test;
	}
	char q[UT_QUOTE_LEN];
	if (sources == NULL || n == 0)
		return ut_err_set(err, "%s: no '%s' split", c->data,
				  ut_quote(c->task, q, sizeof(q)));
	struct tr_data_open_opts opts = {.nc = s->yaml.nc, .use_cache = true};
	if (tr_data_split_open((const char *const *)sources, n, &opts, &s->split, err) != 0)
		return -1;
	char summary[256];
	tr_data_summary_format(&s->split.summary, summary, sizeof(summary));
	ut_log(UT_LOG_INFO, "%s: %s... %s", c->task, sources[0], summary);
	return 0;
}

static int max_stride(const struct tr_model *model)
{
	int stride = 1;
	for (int l = 0; l < model->detect.nl; l++)
		if (model->detect.stride[l] > stride)
			stride = model->detect.stride[l];
	return stride;
}

/* The loader, the backend and the activations for the largest batch. */
static int prepare(struct session *s, const struct cli *c, int imgsz, struct ut_err *err)
{
	struct tr_loader_opts lo = tr_loader_val_defaults(imgsz, (int)c->batch_size);
	lo.stride = max_stride(s->model);
	lo.workers = (int)c->workers;
	lo.single_cls = c->single_cls;
	if (tr_loader_create(&s->split, &lo, &s->loader, err) != 0)
		return -1;
	int height, width;
	tr_loader_max_shape(s->loader, &height, &width);
	/* activations for at most 8 images: tr_val_batch forwards larger batches in chunks */
	int batch = (int)c->batch_size < s->split.n_items ? (int)c->batch_size : s->split.n_items;
	if (tr_backend_create(c->device, (int)c->threads, &s->cpu, err) != 0 ||
	    tr_model_plan_inference(s->model, s->cpu, batch < 8 ? batch : 8, height, width, err) !=
		0)
		return -1;
	struct tr_val_opts vo = tr_val_defaults(s->yaml.nc);
	vo.conf_thres = c->conf_thres;
	vo.iou_thres = c->iou_thres;
	vo.max_det = (int)c->max_det;
	vo.single_cls = c->single_cls;
	return tr_val_create(&vo, &s->val, err);
}

static int validate(struct session *s, struct ut_err *err)
{
	tr_val_reset(s->val);
	if (tr_loader_start_epoch(s->loader, 0, NULL, err) != 0)
		return -1;
	const struct tr_batch *batch;
	int rc;
	while ((rc = tr_loader_next(s->loader, &batch, err)) == 1)
		if (tr_val_batch(s->val, s->model, s->cpu, batch, NULL, err) != 0)
			return -1;
	if (rc < 0)
		return -1;
	return tr_val_finish(s->val, &s->res, err);
}

static void report(const struct session *s, const struct cli *c, int imgsz)
{
	/* val.py run directly: per-class rows when verbose or nc < 50 */
	bool per_class = c->verbose || s->yaml.nc < 50;
	tr_val_print(&s->res, (const char *const *)s->yaml.names, per_class, stdout);
	if (s->res.n_labels == 0)
		ut_log(UT_LOG_WARN, "no labels in the %s split: the metrics cannot be computed",
		       c->task);
	printf("Speed: %.1fms pre-process, %.1fms inference, %.1fms NMS per image at shape "
	       "(%ld, 3, %d, %d)\n",
	       s->res.speed_ms[0], s->res.speed_ms[1], s->res.speed_ms[2], c->batch_size, imgsz,
	       imgsz);
}

/* 0 done; 1 or EXIT_USAGE after an error, err set. */
static int run(const struct cli *c, struct ut_err *err)
{
	struct session s;
	memset(&s, 0, sizeof(s));
	int rc = tr_backend_check_device(c->device, err); /* before any file is read */
	if (rc == 0)
		rc = tr_data_yaml_load(c->data, &s.yaml, err);
	if (rc == 0)
		rc = load_model(&s, c, err);
	int imgsz = (int)c->imgsz;
	if (rc == 0) {
		/* check_img_size: a multiple of the largest stride */
		int stride = max_stride(s.model);
		imgsz = (imgsz + stride - 1) / stride * stride;
		if (imgsz != c->imgsz)
			ut_log(UT_LOG_WARN,
			       "--imgsz %ld must be a multiple of max stride %d, using %d",
			       c->imgsz, stride, imgsz);
		rc = open_split(&s, c, err);
	}
	if (rc == 0)
		rc = prepare(&s, c, imgsz, err);
	if (rc == 0)
		rc = validate(&s, err);
	if (rc == 0) {
		report(&s, c, imgsz);
		if (fflush(stdout) != 0)
			rc = ut_err_set(err, "stdout: write error");
	}
	int usage_error = s.usage_error;
	cleanup(&s);
	return rc == 0 ? 0 : usage_error ? EXIT_USAGE : 1;
}

int main(int argc, char **argv)
{
	/* idle OpenMP threads sleep instead of spinning over the loader threads */
	ut_reexec_with_env("OMP_WAIT_POLICY", "PASSIVE", argv);
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	struct cli c = {.task = "val",
			.imgsz = 640,
			.batch_size = 32,
			.workers = 2,
			.threads = cpus > 0 ? cpus : 1,
			.max_det = 300,
			.conf_thres = 0.001,
			.iou_thres = 0.6};
	struct ut_err err;
	ut_log_set_level(UT_LOG_INFO);
	if (parse_args(argc, argv, &c, &err) != 0) {
		ut_log(UT_LOG_ERROR, "%s", err.msg);
		return EXIT_USAGE;
	}
	if (c.help) {
		usage(stdout);
		return 0;
	}
	int rc = run(&c, &err);
	if (rc != 0)
		ut_log(UT_LOG_ERROR, "%s", err.msg);
	return rc;
}
