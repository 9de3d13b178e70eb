/*
 * yolo_train.c - the yolo-train program: YOLOv5 v7.0's train.py command
 * line on top of tr_train (train.h).
 *
 * Options are one table (name, kind, where the value goes) that serves the
 * command line, opt.yaml writing and --resume's reading of opt.yaml back.
 * Exit status: 0 done, 1 runtime error, 2 bad command line, 130 / 143 when
 * SIGINT / SIGTERM stopped the run (within one batch).
 *
 * Two environment variables for tests, not in --help (tests/README.md):
 * YE_DDP_CPU_RANKS=N (N >= 1) trains as DDP over N ranks on the CPU backend
 * (threads and the thread communicator; train.h's cpu_ranks), and
 * YE_LOG_LEVEL=debug adds the debug lines (DDP: each rank's images per
 * batch and its parameter checksum per optimizer step).
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

#include "cli.h"
#include "train.h"
#include "ut.h"

/*
 * The command line's target: the options, then --resume's optional PATH.
 * opts is the first member, so an option's offset in struct args is its
 * offset in struct tr_train_opts too, and opt.yaml (read back into a
 * struct tr_train_opts by --resume) uses the same table.
 */
struct args {
	struct tr_train_opts opts;
	const char *resume_path;
};

static int parse_freeze(void *target, const struct ut_cli_opt *opt, const char *text, int index,
			struct ut_err *err);
static int parse_resume(void *target, const struct ut_cli_opt *opt, const char *text, int index,
			struct ut_err *err);
static int parse_amp(void *target, const struct ut_cli_opt *opt, const char *text, int index,
		     struct ut_err *err);

#define OFF(field) .offset = offsetof(struct args, opts.field)
#define STR(field) .kind = UT_CLI_STRING, OFF(field), .empty_ok = true
#define LONG(field) .kind = UT_CLI_LONG, OFF(field), .lo = -1e9, .hi = 1e9
#define FLAG(field) .kind = UT_CLI_FLAG, OFF(field)

/* Each option with train.py's dest as its opt.yaml key. */
static const struct ut_cli_opt options[] = {
    {"weights", STR(weights), .key = "weights",
     .help = "initial weights (.safetensors), '' = from scratch"},
    {"cfg", STR(cfg), .key = "cfg", .help = "model yaml (models/yolov5s.yaml ...)"},
    {"data", STR(data), .key = "data", .help = "dataset yaml"},
    {"hyp", STR(hyp), .key = "hyp", .help = "hyperparameter yaml (data/hyps/hyp.scratch-low.yaml)"},
    {"epochs", LONG(epochs), .key = "epochs", .help = "total training epochs (300)"},
    {"batch-size", "batch", LONG(batch_size), .key = "batch_size", .help = "images per batch (16)"},
    {"imgsz", "img", LONG(imgsz), .key = "imgsz",
     .help = "train and val image size in pixels (640)"},
    {"img-size", LONG(imgsz)},
    {"rect", FLAG(rect), .key = "rect", .help = "rectangular training batches"},
    {"resume", .kind = UT_CLI_CUSTOM, .parse = parse_resume, .implicit = "", .key = "resume",
     .help = "[PATH] resume from last.safetensors (most recent run)"},
    {"nosave", FLAG(nosave), .key = "nosave", .help = "only save the final checkpoint"},
    {"noval", FLAG(noval), .key = "noval", .help = "only validate the final epoch"},
    {"noautoanchor", FLAG(noautoanchor), .key = "noautoanchor", .help = "disable AutoAnchor"},
    {"noplots", .kind = UT_CLI_IGNORED, .key = "noplots",
     .help = "accepted; yolo-train makes no plots"},
    {"cache", STR(cache), .implicit = "ram", .key = "cache",
     .help = "[ram|disk] keep images in memory (ram)"},
    {"image-weights", FLAG(image_weights), .key = "image_weights",
     .help = "weighted image selection"},
    {"device", STR(device), .key = "device", .help = "cpu (or a GPU id with a CUDA build)"},
    {"multi-scale", FLAG(multi_scale), .key = "multi_scale",
     .help = "vary image size +/- 50% per batch"},
    {"single-cls", FLAG(single_cls), .key = "single_cls",
     .help = "train as a single-class dataset"},
    {"optimizer", STR(optimizer), .key = "optimizer", .help = "SGD, Adam or AdamW (SGD)"},
    {"sync-bn", FLAG(sync_bn), .key = "sync_bn", .help = "SyncBatchNorm (no effect on one device)"},
    {"workers", LONG(workers), .key = "workers",
     .help = "data loader threads (8; at most the CPUs and the batch size)"},
    {"threads", LONG(threads), .key = "threads",
     .help = "compute threads (0 = $OMP_NUM_THREADS, else every CPU allowed)"},
    {"project", STR(project), .key = "project", .help = "save to project/name (runs/train)"},
    {"name", STR(name), .key = "name", .help = "save to project/name (exp)"},
    {"exist-ok", FLAG(exist_ok), .key = "exist_ok",
     .help = "reuse project/name instead of name2, ..."},
    {"quad", FLAG(quad), .key = "quad",
     .help = "quad dataloader: 4 images make one of twice the size"},
    {"cos-lr", FLAG(cos_lr), .key = "cos_lr", .help = "cosine learning-rate schedule"},
    {"label-smoothing", .kind = UT_CLI_DOUBLE, OFF(label_smoothing), .key = "label_smoothing",
     .help = "label smoothing epsilon (0)"},
    {"patience", LONG(patience), .key = "patience",
     .help = "early stopping patience in epochs (100)"},
    {"freeze", .kind = UT_CLI_CUSTOM, .parse = parse_freeze, .many = true, .key = "freeze",
     .help = "N (layers 0..N-1) or several layer indices"},
    {"save-period", LONG(save_period), .key = "save_period",
     .help = "also save every N epochs (-1 off)"},
    /* up to 2^32 - 1 as YOLOv5 (numpy's limit): --algorithm robust/halving give 31-bit seeds */
    {"seed", .kind = UT_CLI_LONG, OFF(seed), .lo = -1e9, .hi = 4294967295.0, .key = "seed",
     .help = "global training seed (0)"},
    /* not a train.py option (YOLOv5 picks AMP by device), so not in opt.yaml */
    {"amp", .kind = UT_CLI_CUSTOM, .parse = parse_amp,
     .help = "off, fp16 or bf16 (off; fp16/bf16 kernels are not built yet: refused on a GPU, "
	     "ignored on the CPU as YOLOv5 does)"},
    {"local_rank", .kind = UT_CLI_IGNORED, .key = "local_rank"},
    {"help", "h", .kind = UT_CLI_IGNORED, .help = "this text"},
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
	ut_cli_usage(out, options, UT_ARRAY_LEN(options));
}

/* --freeze N or several layer indices: the index-th value */
static int parse_freeze(void *target, const struct ut_cli_opt *opt, const char *text, int index,
			struct ut_err *err)
{
	struct tr_train_opts *o = target;
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

/* --resume [PATH]: "" (no PATH) resumes the most recent run */
static int parse_resume(void *target, const struct ut_cli_opt *opt, const char *text, int index,
			struct ut_err *err)
{
	struct args *a = target;
	a->opts.resume = true;
	a->resume_path = text[0] != '\0' ? text : NULL;
	return 0;
}

/* --amp off|fp16|bf16 (amp.h's tr_amp_parse names --amp and the value when it is neither) */
static int parse_amp(void *target, const struct ut_cli_opt *opt, const char *text, int index,
		     struct ut_err *err)
{
	struct tr_train_opts *o = target;
	return tr_amp_parse(text, &o->amp, err);
}

/* YE_DDP_CPU_RANKS and YE_LOG_LEVEL (see the top of this file); err names a bad value. */
static int read_test_env(struct tr_train_opts *o, struct ut_err *err)
{
	const char *ranks = getenv("YE_DDP_CPU_RANKS"), *level = getenv("YE_LOG_LEVEL");
	char q[UT_QUOTE_LEN];
	if (ranks != NULL && ranks[0] != '\0' && ut_parse_long(ranks, 1, 64, &o->cpu_ranks) != 0)
		return ut_err_set(err, "YE_DDP_CPU_RANKS '%s': expected 1 to 64 ranks",
				  ut_quote(ranks, q, sizeof(q)));
	if (level != NULL && strcmp(level, "debug") == 0)
		ut_log_set_level(UT_LOG_DEBUG);
	else if (level != NULL && level[0] != '\0' && strcmp(level, "info") != 0)
		return ut_err_set(err, "YE_LOG_LEVEL '%s': expected info or debug",
				  ut_quote(level, q, sizeof(q)));
	return 0;
}

/* The command line into a->opts (and --resume's PATH). */
static int parse_args(int argc, char **argv, struct args *a, struct ut_err *err)
{
	struct ut_cli_parse p = {.opts = options, .count = UT_ARRAY_LEN(options), .target = a};
	return ut_cli_parse(&p, argc, argv, err);
}

/* opt.yaml: every option as train.py's vars(opt), in table order. */
static int opt_yaml(const struct tr_train_opts *o, struct ut_buf *out)
{
	int rc = 0;
	for (size_t i = 0; rc == 0 && i < UT_ARRAY_LEN(options); i++) {
		const struct ut_cli_opt *def = &options[i];
		const char *field = (const char *)o + def->offset;
		if (def->key == NULL || def->kind == UT_CLI_IGNORED)
			continue;
		if (def->parse == parse_resume) {
			rc = ut_buf_printf(out, "%s: %s\n", def->key, o->resume ? "true" : "false");
			continue;
		}
		switch (def->kind) {
		case UT_CLI_STRING: {
			const char *s = *(const char *const *)field;
			rc = s ? ut_buf_printf(out, "%s: '%s'\n", def->key, s)
			       : ut_buf_printf(out, "%s: null\n", def->key);
			break;
		}
		case UT_CLI_LONG:
			rc = ut_buf_printf(out, "%s: %ld\n", def->key, *(const long *)field);
			break;
		case UT_CLI_DOUBLE: {
			char v[40];
			ut_fmt_yamlfloat(*(const double *)field, v, sizeof(v));
			rc = ut_buf_printf(out, "%s: %s\n", def->key, v);
			break;
		}
		case UT_CLI_FLAG:
			rc = ut_buf_printf(out, "%s: %s\n", def->key,
					   *(const bool *)field ? "true" : "false");
			break;
		case UT_CLI_CUSTOM: /* --freeze */
			rc = ut_buf_printf(out, "%s:\n", def->key);
			for (int f = 0; rc == 0 && f < o->n_freeze; f++)
				rc = ut_buf_printf(out, "- %d\n", o->freeze[f]);
			break;
		default:
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
		const struct ut_cli_opt *def =
		    ut_cli_find(options, UT_ARRAY_LEN(options), key, strlen(key), true);
		if (def == NULL || def->kind == UT_CLI_IGNORED || def->parse == parse_resume)
			continue;
		if (def->parse == parse_freeze && v->type == YAML_SEQUENCE_NODE) {
			int n = 0;
			for (yaml_node_item_t *it = v->data.sequence.items.start;
			     rc == 0 && it < v->data.sequence.items.top; it++, n++) {
				yaml_node_t *item = yaml_document_get_node(&doc, *it);
				rc = item->type == YAML_SCALAR_NODE
					 ? parse_freeze(o, def,
							(const char *)item->data.scalar.value, n,
							err)
					 : ut_err_set(err, "%s: freeze: not a list of integers",
						      path);
			}
			continue;
		}
		if (v->type != YAML_SCALAR_NODE)
			continue;
		const char *value = (const char *)v->data.scalar.value;
		if (def->kind == UT_CLI_STRING && strcmp(value, "null") == 0 &&
		    v->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
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
		rc = ut_cli_set(def, o, copy, 0, "opt.yaml: ", err);
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
	struct args args = {0};
	struct tr_train_opts *const o = &args.opts;
	struct ut_err err = {{0}};
	for (int i = 1; i < argc; i++)
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			usage(stdout);
			return 0;
		}
	/* Idle OpenMP threads must sleep, not spin: the loader threads need the cores
	 * between parallel regions (2 epochs on 2 busy cores: 26 s passive, 223 s spinning). */
	ut_reexec_with_env("OMP_WAIT_POLICY", "PASSIVE", argv);
	tr_train_defaults(o);
	ut_log_set_level(UT_LOG_INFO);
	if (parse_args(argc, argv, &args, &err) != 0 || read_test_env(o, &err) != 0) {
		fprintf(stderr, "yolo-train: %s\n", err.msg);
		return 2;
	}
	static char last[4096], save_dir[4096], hyp[4200], cfg_found[4200];
	char **keep = NULL;
	int n_keep = 0, status = 0;
	if (!o->resume)
		find_shipped_files(o, cfg_found, hyp, sizeof(hyp));
	if (o->resume && prepare_resume(o, args.resume_path, last, save_dir, hyp, sizeof(last),
					&keep, &n_keep, &err) != 0) {
		fprintf(stderr, "yolo-train: %s\n", err.msg);
		status = 1;
	}
	struct ut_buf yaml = {0};
	if (status == 0 && opt_yaml(o, &yaml) != 0) {
		fprintf(stderr, "yolo-train: out of memory\n");
		status = 1;
	}
	static sigset_t stop_set;
	if (status == 0 && start_signal_waiter(&stop_set) != 0) {
		fprintf(stderr, "yolo-train: cannot start the signal thread\n");
		status = 1;
	}
	if (status == 0) {
		o->opt_yaml = yaml.data;
		o->stop = &stop_signal;
		o->progress_tty = isatty(STDERR_FILENO);
		int rc = tr_train(o, &err);
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
