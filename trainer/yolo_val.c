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

enum opt_kind { OPT_STRING, OPT_LONG, OPT_DOUBLE, OPT_FLAG };

/* One option: its names (val.py's spellings too), where it goes, bounds. */
struct opt {
	const char *name, *alias;
	enum opt_kind kind;
	size_t offset; /* in struct cli */
	double lo, hi;
	const char *help;
};

#define CLI_FIELD(f) offsetof(struct cli, f)

static const struct opt options[] = {
    {"--weights", NULL, OPT_STRING, CLI_FIELD(weights), 0, 0, "FILE.safetensors (required)"},
    {"--data", NULL, OPT_STRING, CLI_FIELD(data), 0, 0, "data.yaml (required)"},
    {"--cfg", NULL, OPT_STRING, CLI_FIELD(cfg), 0, 0,
     "model yaml (default: the model_yaml stored with the weights)"},
    {"--imgsz", "--img", OPT_LONG, CLI_FIELD(imgsz), 32, 8192, "inference size (640)"},
    {"--batch-size", "--batch", OPT_LONG, CLI_FIELD(batch_size), 1, 4096, "batch size (32)"},
    {"--conf-thres", NULL, OPT_DOUBLE, CLI_FIELD(conf_thres), 0, 1, "confidence (0.001)"},
    {"--iou-thres", NULL, OPT_DOUBLE, CLI_FIELD(iou_thres), 0, 1, "NMS IoU (0.6)"},
    {"--max-det", NULL, OPT_LONG, CLI_FIELD(max_det), 1, 100000, "detections per image (300)"},
    {"--task", NULL, OPT_STRING, CLI_FIELD(task), 0, 0, "split: train, val or test (val)"},
    {"--single-cls", NULL, OPT_FLAG, CLI_FIELD(single_cls), 0, 0, "one class for all"},
    {"--verbose", NULL, OPT_FLAG, CLI_FIELD(verbose), 0, 0, "per-class rows even for nc >= 50"},
    {"--workers", NULL, OPT_LONG, CLI_FIELD(workers), 0, 64, "loader threads (2)"},
    {"--threads", NULL, OPT_LONG, CLI_FIELD(threads), 1, 1024, "compute threads (all CPUs)"},
    {"--device", NULL, OPT_STRING, CLI_FIELD(device), 0, 0, "cpu (or a GPU id with a CUDA build)"},
    {"--help", "-h", OPT_FLAG, CLI_FIELD(help), 0, 0, "this help"},
};

static void usage(FILE *to)
{
	fprintf(
	    to,
	    "usage: yolo-val --weights FILE.safetensors --data data.yaml [options]\n"
	    "YOLOv5 v7.0's val.py: P, R, mAP@.5 and mAP@.5:.95 of weights on a dataset split.\n");
	for (size_t i = 0; i < UT_ARRAY_LEN(options); i++) {
		char names[48];
		snprintf(names, sizeof(names), "%s%s%s", options[i].name,
			 options[i].alias != NULL ? ", " : "",
			 options[i].alias != NULL ? options[i].alias : "");
		fprintf(to, "  %-24s %s\n", names, options[i].help);
	}
}

static const struct opt *find_option(const char *arg, size_t len)
{
	for (size_t i = 0; i < UT_ARRAY_LEN(options); i++) {
		const struct opt *o = &options[i];
		if ((strlen(o->name) == len && strncmp(arg, o->name, len) == 0) ||
		    (o->alias != NULL && strlen(o->alias) == len &&
		     strncmp(arg, o->alias, len) == 0))
			return o;
	}
	return NULL;
}

static int set_option(struct cli *c, const struct opt *o, const char *value, struct ut_err *err)
{
	char *field = (char *)c + o->offset;
	long lvalue;
	double dvalue;
	switch (o->kind) {
	case OPT_STRING:
		if (value[0] == '\0')
			return ut_err_set(err, "%s: empty value", o->name);
		*(const char **)field = value;
		return 0;
	case OPT_LONG:
		if (ut_parse_long(value, (long)o->lo, (long)o->hi, &lvalue) != 0)
			return ut_err_set(err, "%s %s: not an integer in %ld..%ld", o->name, value,
					  (long)o->lo, (long)o->hi);
		*(long *)field = lvalue;
		return 0;
	case OPT_DOUBLE:
		if (ut_parse_double(value, &dvalue) != 0 || dvalue < o->lo || dvalue > o->hi)
			return ut_err_set(err, "%s %s: not a number in [%g, %g]", o->name, value,
					  o->lo, o->hi);
		*(double *)field = dvalue;
		return 0;
	case OPT_FLAG:
		*(bool *)field = true;
		return 0;
	}
	return ut_err_set(err, "%s: unknown option kind", o->name);
}

/* Parse argv ("--opt value" or "--opt=value"); -1 with err naming the option. */
static int parse_args(int argc, char **argv, struct cli *c, struct ut_err *err)
{
	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i];
		const char *eq = strchr(arg, '=');
		size_t len = eq != NULL ? (size_t)(eq - arg) : strlen(arg);
		const struct opt *o = arg[0] == '-' ? find_option(arg, len) : NULL;
		if (o == NULL)
			return ut_err_set(
			    err, arg[0] == '-' ? "unknown option %s" : "unexpected argument %s",
			    arg);
		if (o->kind == OPT_FLAG) {
			if (eq != NULL)
				return ut_err_set(err, "%s takes no value", o->name);
			set_option(c, o, "", err);
			continue;
		}
		const char *value = eq != NULL ? eq + 1 : NULL;
		if (value == NULL) {
			if (i + 1 >= argc)
				return ut_err_set(err, "%s needs a value", o->name);
			value = argv[++i];
		}
		if (set_option(c, o, value, err) != 0)
			return -1;
	}
	if (c->help)
		return 0;
	if (c->weights == NULL)
		return ut_err_set(err, "--weights is required");
	if (c->data == NULL)
		return ut_err_set(err, "--data is required");
	if (strcmp(c->task, "train") != 0 && strcmp(c->task, "val") != 0 &&
	    strcmp(c->task, "test") != 0)
		return ut_err_set(err, "--task %s: expected train, val or test", c->task);
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
