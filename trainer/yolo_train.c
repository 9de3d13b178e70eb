/*
 * yolo_train.c - the yolo-train program: YOLOv5 v7.0's train.py command
 * line on top of tr_train (train.h).
 *
 * Options are one table (name, kind, where the value goes) that serves the
 * command line, opt.yaml writing and --resume's reading of opt.yaml back.
 * Exit status: 0 done, 1 runtime error, 2 bad command line, 130 / 143 when
 * SIGINT / SIGTERM stopped the run (within one batch).
 */
#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "train.h"
#include "ut.h"

enum opt_kind { OPT_STR, OPT_LONG, OPT_DOUBLE, OPT_FLAG, OPT_MAYBE_STR, OPT_FREEZE, OPT_IGNORED };

struct opt_def {
	const char *name; /* on the command line, with dashes */
	const char *key;  /* in opt.yaml (train.py's dest) */
	enum opt_kind kind;
	size_t offset; /* in struct tr_train_opts */
	const char *help;
};

#define OFF(field) offsetof(struct tr_train_opts, field)

static const struct opt_def options[] = {
    {"weights", "weights", OPT_STR, OFF(weights),
     "initial weights (.safetensors), '' = from scratch"},
    {"cfg", "cfg", OPT_STR, OFF(cfg), "model yaml (models/yolov5s.yaml ...)"},
    {"data", "data", OPT_STR, OFF(data), "dataset yaml"},
    {"hyp", "hyp", OPT_STR, OFF(hyp), "hyperparameter yaml (data/hyps/hyp.scratch-low.yaml)"},
    {"epochs", "epochs", OPT_LONG, OFF(epochs), "total training epochs (300)"},
    {"batch-size", "batch_size", OPT_LONG, OFF(batch_size), "images per batch (16)"},
    {"batch", "batch_size", OPT_LONG, OFF(batch_size), NULL},
    {"imgsz", "imgsz", OPT_LONG, OFF(imgsz), "train and val image size in pixels (640)"},
    {"img", "imgsz", OPT_LONG, OFF(imgsz), NULL},
    {"img-size", "imgsz", OPT_LONG, OFF(imgsz), NULL},
    {"rect", "rect", OPT_FLAG, OFF(rect), "rectangular training batches"},
    {"resume", "resume", OPT_FLAG, OFF(resume),
     "[PATH] resume from last.safetensors (most recent run)"},
    {"nosave", "nosave", OPT_FLAG, OFF(nosave), "only save the final checkpoint"},
    {"noval", "noval", OPT_FLAG, OFF(noval), "only validate the final epoch"},
    {"noautoanchor", "noautoanchor", OPT_FLAG, OFF(noautoanchor), "disable AutoAnchor"},
    {"noplots", "noplots", OPT_IGNORED, 0, "accepted; yolo-train makes no plots"},
    {"cache", "cache", OPT_MAYBE_STR, OFF(cache), "[ram|disk] keep images in memory (ram)"},
    {"image-weights", "image_weights", OPT_FLAG, OFF(image_weights), "weighted image selection"},
    {"device", "device", OPT_STR, OFF(device), "cpu (or a GPU id with a CUDA build)"},
    {"multi-scale", "multi_scale", OPT_FLAG, OFF(multi_scale), "vary image size +/- 50% per batch"},
    {"single-cls", "single_cls", OPT_FLAG, OFF(single_cls), "train as a single-class dataset"},
    {"optimizer", "optimizer", OPT_STR, OFF(optimizer), "SGD, Adam or AdamW (SGD)"},
    {"sync-bn", "sync_bn", OPT_FLAG, OFF(sync_bn), "SyncBatchNorm (no effect on one device)"},
    {"workers", "workers", OPT_LONG, OFF(workers),
     "data loader threads (8; at most the CPUs and the batch size)"},
    {"threads", "threads", OPT_LONG, OFF(threads),
     "compute threads (0 = $OMP_NUM_THREADS, else every CPU allowed)"},
    {"project", "project", OPT_STR, OFF(project), "save to project/name (runs/train)"},
    {"name", "name", OPT_STR, OFF(name), "save to project/name (exp)"},
    {"exist-ok", "exist_ok", OPT_FLAG, OFF(exist_ok), "reuse project/name instead of name2, ..."},
    {"quad", "quad", OPT_FLAG, OFF(quad), "quad dataloader: 4 images make one of twice the size"},
    {"cos-lr", "cos_lr", OPT_FLAG, OFF(cos_lr), "cosine learning-rate schedule"},
    {"label-smoothing", "label_smoothing", OPT_DOUBLE, OFF(label_smoothing),
     "label smoothing epsilon (0)"},
    {"patience", "patience", OPT_LONG, OFF(patience), "early stopping patience in epochs (100)"},
    {"freeze", "freeze", OPT_FREEZE, 0, "N (layers 0..N-1) or several layer indices"},
    {"save-period", "save_period", OPT_LONG, OFF(save_period), "also save every N epochs (-1 off)"},
    {"seed", "seed", OPT_LONG, OFF(seed), "global training seed (0)"},
    {"local_rank", "local_rank", OPT_IGNORED, 0, NULL},
};

static volatile sig_atomic_t stop_signal;

/*
 * SIGTERM and SIGINT are blocked in every thread and taken here with
 * sigwait, never by an asynchronous handler: a handler runs on whatever
 * thread the signal lands on, and on a thread inside oneDNN's JIT kernels it
 * corrupted the heap (about 1 run in 10 with random SIGTERMs on a busy
 * machine; "corrupted size vs. prev_size" in a later free). A second signal
 * while stopping is the user insisting: exit at once with 128 + signal.
 */
static void *signal_waiter(void *arg)
{
	const sigset_t *set = arg;
	int sig;
	while (sigwait(set, &sig) == 0) {
		if (stop_signal != 0)
			_exit(128 + sig);
		stop_signal = sig;
	}
	return NULL;
}

/* Block the stop signals for every thread from now on and start their waiter. */
static int start_signal_waiter(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGINT);
	pthread_t thread;
	if (pthread_sigmask(SIG_BLOCK, set, NULL) != 0 ||
	    pthread_create(&thread, NULL, signal_waiter, set) != 0)
		return -1;
	pthread_detach(thread);
	return 0;
}

static void usage(FILE *out)
{
	fputs("usage: yolo-train --data DATA.yaml --hyp HYP.yaml --cfg MODEL.yaml [options]\n"
	      "YOLOv5 v7.0's train.py in C: writes save_dir/{hyp.yaml, opt.yaml, results.csv,\n"
	      "weights/last.safetensors, weights/best.safetensors}.\n\noptions:\n",
	      out);
	for (size_t i = 0; i < UT_ARRAY_LEN(options); i++)
		if (options[i].help != NULL)
			fprintf(out, "  --%-17s %s\n", options[i].name, options[i].help);
	fputs("  --help              this text\n", out);
}

static const struct opt_def *find_option(const char *name, size_t len, bool by_key)
{
	for (size_t i = 0; i < UT_ARRAY_LEN(options); i++) {
		const char *n = by_key ? options[i].key : options[i].name;
		if (strlen(n) == len && strncmp(n, name, len) == 0)
			return &options[i];
	}
	return NULL;
}

static int parse_freeze(struct tr_train_opts *o, const char *text, int index, struct ut_err *err)
{
	long layer;
	char q[UT_QUOTE_LEN];
	if (ut_parse_long(text, 0, 100000, &layer) != 0)
		return ut_err_set(err, "--freeze: '%s' is not a layer index",
				  ut_quote(text, q, sizeof(q)));
	if (index >= TR_TRAIN_MAX_FREEZE)
		return ut_err_set(err, "--freeze: at most %d values", TR_TRAIN_MAX_FREEZE);
	o->freeze[index] = (int)layer;
	o->n_freeze = index + 1;
	return 0;
}

/* Store one value (text may be NULL for a flag). */
static int set_option(struct tr_train_opts *o, const struct opt_def *def, const char *text,
		      const char *where, struct ut_err *err)
{
	char *field = (char *)o + def->offset;
	char q[UT_QUOTE_LEN];
	switch (def->kind) {
	case OPT_STR:
	case OPT_MAYBE_STR:
		*(const char **)field = text;
		return 0;
	case OPT_LONG:
		if (ut_parse_long(text, -1000000000L, 1000000000L, (long *)field) != 0)
			return ut_err_set(err, "%s%s: '%s' is not an integer", where, def->name,
					  ut_quote(text, q, sizeof(q)));
		return 0;
	case OPT_DOUBLE:
		if (ut_parse_double(text, (double *)field) != 0)
			return ut_err_set(err, "%s%s: '%s' is not a number", where, def->name,
					  ut_quote(text, q, sizeof(q)));
		return 0;
	case OPT_FLAG:
		*(bool *)field =
		    text == NULL || strcmp(text, "true") == 0 || strcmp(text, "True") == 0;
		return 0;
	case OPT_FREEZE:
		return parse_freeze(o, text, 0, err);
	case OPT_IGNORED:
		return 0;
	}
	return 0;
}

static bool is_value(const char *arg)
{
	return arg != NULL && strncmp(arg, "--", 2) != 0;
}

/* The command line; *resume_path gets --resume's optional PATH. */
static int parse_args(int argc, char **argv, struct tr_train_opts *o, const char **resume_path,
		      struct ut_err *err)
{
	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i];
		char q[UT_QUOTE_LEN];
		if (strncmp(arg, "--", 2) != 0)
			return ut_err_set(err, "unexpected argument '%s'",
					  ut_quote(arg, q, sizeof(q)));
		const char *name = arg + 2, *eq = strchr(name, '=');
		size_t len = eq ? (size_t)(eq - name) : strlen(name);
		const struct opt_def *def = find_option(name, len, false);
		if (def == NULL)
			return ut_err_set(err, "unknown option '--%.*s' (see --help)", (int)len,
					  name);
		const char *value = eq ? eq + 1 : NULL;
		bool optional =
		    def->kind == OPT_FLAG || def->kind == OPT_MAYBE_STR || def->kind == OPT_IGNORED;
		if (value == NULL && !optional) {
			if (i + 1 >= argc)
				return ut_err_set(err, "--%s needs a value", def->name);
			value = argv[++i];
		}
		if (def->kind == OPT_FLAG && strcmp(def->name, "resume") == 0) {
			if (value == NULL && is_value(argv[i + 1]))
				value = argv[++i];
			o->resume = true;
			*resume_path = value;
			continue;
		}
		if (def->kind == OPT_FLAG && value != NULL)
			return ut_err_set(err, "--%s takes no value", def->name);
		if (def->kind == OPT_MAYBE_STR && value == NULL)
			value = is_value(argv[i + 1]) ? argv[++i] : "ram";
		if (set_option(o, def, value, "--", err) != 0)
			return -1;
		for (int n = 1; def->kind == OPT_FREEZE && !eq && is_value(argv[i + 1]); n++)
			if (parse_freeze(o, argv[++i], n, err) != 0)
				return -1;
	}
	return 0;
}

/* opt.yaml: every option as train.py's vars(opt), in table order. */
static int opt_yaml(const struct tr_train_opts *o, struct ut_buf *out)
{
	int rc = 0;
	for (size_t i = 0; rc == 0 && i < UT_ARRAY_LEN(options); i++) {
		const struct opt_def *def = &options[i];
		const char *field = (const char *)o + def->offset;
		if (def->help == NULL || def->kind == OPT_IGNORED)
			continue;
		switch (def->kind) {
		case OPT_STR:
		case OPT_MAYBE_STR: {
			const char *s = *(const char *const *)field;
			rc = s ? ut_buf_printf(out, "%s: '%s'\n", def->key, s)
			       : ut_buf_printf(out, "%s: null\n", def->key);
			break;
		}
		case OPT_LONG:
			rc = ut_buf_printf(out, "%s: %ld\n", def->key, *(const long *)field);
			break;
		case OPT_DOUBLE: {
			char v[40];
			ut_fmt_yamlfloat(*(const double *)field, v, sizeof(v));
			rc = ut_buf_printf(out, "%s: %s\n", def->key, v);
			break;
		}
		case OPT_FLAG:
			rc = ut_buf_printf(out, "%s: %s\n", def->key,
					   *(const bool *)field ? "true" : "false");
			break;
		case OPT_FREEZE:
			rc = ut_buf_printf(out, "%s:\n", def->key);
			for (int f = 0; rc == 0 && f < o->n_freeze; f++)
				rc = ut_buf_printf(out, "- %d\n", o->freeze[f]);
			break;
		case OPT_IGNORED:
			break;
		}
	}
	return rc;
}

/*
 * Options from an opt.yaml written by opt_yaml (--resume). Strings are
 * strdup'ed into *keep (freed by the caller); unknown keys are ignored.
 */
static int read_opt_yaml(const char *path, struct tr_train_opts *o, char ***keep, int *n_keep,
			 struct ut_err *err)
{
	char *text;
	size_t len;
	if (ut_read_file(path, &text, &len, err) != 0)
		return -1;
	yaml_parser_t parser;
	yaml_document_t doc;
	int rc = 0;
	if (!yaml_parser_initialize(&parser)) {
		free(text);
		return ut_err_set(err, "%s: cannot start the yaml parser", path);
	}
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
	if (!yaml_parser_load(&parser, &doc)) {
		rc = ut_err_set(err, "%s:%zu: %s", path, parser.problem_mark.line + 1,
				parser.problem ? parser.problem : "invalid yaml");
		yaml_parser_delete(&parser);
		free(text);
		return rc;
	}
	yaml_node_t *root = yaml_document_get_root_node(&doc);
	if (root == NULL || root->type != YAML_MAPPING_NODE)
		rc = ut_err_set(err, "%s: not a mapping", path);
	for (yaml_node_pair_t *p = rc ? NULL : root->data.mapping.pairs.start;
	     rc == 0 && p < root->data.mapping.pairs.top; p++) {
		yaml_node_t *k = yaml_document_get_node(&doc, p->key);
		yaml_node_t *v = yaml_document_get_node(&doc, p->value);
		if (k->type != YAML_SCALAR_NODE)
			continue;
		const char *key = (const char *)k->data.scalar.value;
		const struct opt_def *def = find_option(key, strlen(key), true);
		if (def == NULL || def->kind == OPT_IGNORED || strcmp(key, "resume") == 0)
			continue;
		if (def->kind == OPT_FREEZE && v->type == YAML_SEQUENCE_NODE) {
			int n = 0;
			for (yaml_node_item_t *it = v->data.sequence.items.start;
			     rc == 0 && it < v->data.sequence.items.top; it++, n++) {
				yaml_node_t *item = yaml_document_get_node(&doc, *it);
				rc = item->type == YAML_SCALAR_NODE
					 ? parse_freeze(o, (const char *)item->data.scalar.value, n,
							err)
					 : ut_err_set(err, "%s: freeze: not a list of integers",
						      path);
			}
			continue;
		}
		if (v->type != YAML_SCALAR_NODE)
			continue;
		const char *value = (const char *)v->data.scalar.value;
		if ((def->kind == OPT_STR || def->kind == OPT_MAYBE_STR) &&
		    strcmp(value, "null") == 0 && v->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
			*(const char **)((char *)o + def->offset) = NULL;
			continue;
		}
		char *copy = strdup(value);
		char **grown = realloc(*keep, (size_t)(*n_keep + 1) * sizeof(*grown));
		if (copy == NULL || grown == NULL) {
			free(copy);
			if (grown != NULL)
				*keep = grown;
			rc = ut_err_set(err, "out of memory");
			break;
		}
		*keep = grown;
		(*keep)[(*n_keep)++] = copy;
		rc = set_option(o, def, copy, "opt.yaml: ", err);
	}
	yaml_document_delete(&doc);
	yaml_parser_delete(&parser);
	free(text);
	return rc;
}

/* The most recent project/NAME/weights/last.safetensors, as get_latest_run. */
static int latest_run(const char *project, char *buf, size_t size, struct ut_err *err)
{
	DIR *dir = opendir(project);
	if (dir == NULL)
		return ut_err_set(err, "--resume: no runs in %s", project);
	double newest = -1;
	struct dirent *entry;
	while ((entry = readdir(dir)) != NULL) {
		char path[4096];
		struct stat st;
		if (entry->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s/weights/last.safetensors", project,
			 entry->d_name);
		if (stat(path, &st) == 0 && (double)st.st_mtime > newest) {
			newest = (double)st.st_mtime;
			snprintf(buf, size, "%s", path);
		}
	}
	closedir(dir);
	return newest < 0
		   ? ut_err_set(err, "--resume: no weights/last.safetensors under %s", project)
		   : 0;
}

/* train.py's resume: save_dir and options from the checkpoint's run. */
static int prepare_resume(struct tr_train_opts *o, const char *resume_path, char *last,
			  char *save_dir, char *hyp, size_t size, char ***keep, int *n_keep,
			  struct ut_err *err)
{
	if (resume_path != NULL)
		snprintf(last, size, "%s", resume_path);
	else if (latest_run(o->project, last, size, err) != 0)
		return -1;
	snprintf(save_dir, size, "%s", last);
	for (int up = 0; up < 2; up++) {
		char *slash = strrchr(save_dir, '/');
		if (slash == NULL) {
			snprintf(save_dir, size, ".");
			break;
		}
		*slash = '\0';
	}
	char opt_path[4200];
	snprintf(opt_path, sizeof(opt_path), "%s/opt.yaml", save_dir);
	if (read_opt_yaml(opt_path, o, keep, n_keep, err) != 0)
		return -1;
	snprintf(hyp, size, "%s/hyp.yaml", save_dir);
	o->resume = true;
	o->weights = last;
	o->cfg = "";
	o->hyp = hyp;
	o->save_dir = save_dir;
	return 0;
}

/*
 * --cfg and --hyp found as YOLOv5 finds them (ut_data_file: `yolov5n.yaml`,
 * `models/yolov5n.yaml` from any folder); --hyp defaults to YOLOv5's
 * data/hyps/hyp.scratch-low.yaml, shipped with us. opt.yaml records the
 * paths found, as train.py's check_yaml does.
 */
static void find_shipped_files(struct tr_train_opts *o, char *cfg, char *hyp, size_t size)
{
	if (o->hyp[0] == '\0')
		o->hyp = "data/hyps/hyp.scratch-low.yaml";
	if (o->cfg[0] != '\0' && ut_data_file(o->cfg, cfg, size) == 0)
		o->cfg = cfg;
	if (ut_data_file(o->hyp, hyp, size) == 0)
		o->hyp = hyp;
}

int main(int argc, char **argv)
{
	struct tr_train_opts opts;
	struct ut_err err = {{0}};
	const char *resume_path = NULL;
	for (int i = 1; i < argc; i++)
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			usage(stdout);
			return 0;
		}
	/* Idle OpenMP threads must sleep, not spin: the loader threads need the cores
	 * between parallel regions (2 epochs on 2 busy cores: 26 s passive, 223 s spinning). */
	ut_reexec_with_env("OMP_WAIT_POLICY", "PASSIVE", argv);
	tr_train_defaults(&opts);
	ut_log_set_level(UT_LOG_INFO);
	if (parse_args(argc, argv, &opts, &resume_path, &err) != 0) {
		fprintf(stderr, "yolo-train: %s\n", err.msg);
		return 2;
	}
	static char last[4096], save_dir[4096], hyp[4200], cfg_found[4200];
	char **keep = NULL;
	int n_keep = 0, status = 0;
	if (!opts.resume)
		find_shipped_files(&opts, cfg_found, hyp, sizeof(hyp));
	if (opts.resume && prepare_resume(&opts, resume_path, last, save_dir, hyp, sizeof(last),
					  &keep, &n_keep, &err) != 0) {
		fprintf(stderr, "yolo-train: %s\n", err.msg);
		status = 1;
	}
	struct ut_buf yaml = {0};
	if (status == 0 && opt_yaml(&opts, &yaml) != 0) {
		fprintf(stderr, "yolo-train: out of memory\n");
		status = 1;
	}
	static sigset_t stop_set;
	if (status == 0 && start_signal_waiter(&stop_set) != 0) {
		fprintf(stderr, "yolo-train: cannot start the signal thread\n");
		status = 1;
	}
	if (status == 0) {
		opts.opt_yaml = yaml.data;
		opts.stop = &stop_signal;
		opts.progress_tty = isatty(STDERR_FILENO);
		int rc = tr_train(&opts, &err);
		if (rc == TR_TRAIN_STOPPED) {
			fprintf(stderr, "yolo-train: stopped by %s\n",
				stop_signal == SIGINT ? "SIGINT" : "SIGTERM");
			status = stop_signal == SIGINT ? 130 : 143;
		} else if (rc != 0) {
			fprintf(stderr, "yolo-train: %s\n", err.msg);
			status = 1;
		}
	}
	ut_buf_free(&yaml);
	for (int i = 0; i < n_keep; i++)
		free(keep[i]);
	free(keep);
	return status;
}
