/*
 * main.c - the yolo-evolve command line: run or continue an evolution,
 * and the subcommands status, export and import. Only this file exits.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "breed.h"
#include "contract.h"
#include "meta.h"
#include "plots.h"
#include "preflight.h"
#include "reports.h"
#include "run.h"
#include "serve.h"
#include "slurm.h"
#include "store.h"
#include "ut.h"

/* Everything the command line can say; strings point into argv. */
struct cli {
	const char *data, *cfg, *hyp, *weights, *device, *project, *name, *db, *trainer;
	const char *parent, *meta, *evolve_keys, *best_out, *csv_out, *ndjson_out, *tune_csv_out;
	const char *devices, *launcher, *slurm_args, *prune, *python, *algorithm, *ga_dir;
	const char *space; /* NULL: the trainer's */
	long generations, epochs, batch, imgsz, top, parallel, retries;
	long per_device, prune_warmup, population, log_max, report_every, lag, max_failures;
	long budget;
	const char *out_dir;
	int slurm_submit, parallel_set;
	double mutation_prob, sigma, timeout, grace;
	unsigned long long seed;
	int exist_ok, resume, quiet, verbose, generations_set, budget_set;
	const char *positional;
};

enum opt_id {
	OPT_GENERATIONS = 256,
	OPT_DATA,
	OPT_CFG,
	OPT_HYP,
	OPT_WEIGHTS,
	OPT_EPOCHS,
	OPT_BATCH,
	OPT_IMGSZ,
	OPT_DEVICE,
	OPT_PROJECT,
	OPT_NAME,
	OPT_EXIST_OK,
	OPT_DB,
	OPT_SEED,
	OPT_TRAINER,
	OPT_SPACE,
	OPT_RESUME,
	OPT_PARENT,
	OPT_TOP,
	OPT_MUTATION_PROB,
	OPT_SIGMA,
	OPT_META,
	OPT_EVOLVE_KEYS,
	OPT_PARALLEL,
	OPT_TIMEOUT,
	OPT_RETRIES,
	OPT_GRACE,
	OPT_BEST,
	OPT_CSV,
	OPT_NDJSON,
	OPT_TUNE_CSV,
	OPT_QUIET,
	OPT_VERBOSE,
	OPT_DEVICES,
	OPT_PER_DEVICE,
	OPT_LAUNCHER,
	OPT_SLURM_ARGS,
	OPT_SLURM_SUBMIT,
	OPT_PRUNE,
	OPT_PRUNE_WARMUP,
	OPT_PYTHON,
	OPT_ALGORITHM,
	OPT_POPULATION,
	OPT_GA_DIR,
	OPT_LOG_MAX,
	OPT_REPORT_EVERY,
	OPT_OUT,
	OPT_LAG,
	OPT_MAX_FAILURES,
	OPT_BUDGET,
	OPT_HELP /* last: it sizes the tables of parse_number */
};

static const struct option long_options[] = {
    {"generations", required_argument, NULL, OPT_GENERATIONS},
    {"data", required_argument, NULL, OPT_DATA},
    {"cfg", required_argument, NULL, OPT_CFG},
    {"hyp", required_argument, NULL, OPT_HYP},
    {"weights", required_argument, NULL, OPT_WEIGHTS},
    {"epochs", required_argument, NULL, OPT_EPOCHS},
    {"batch-size", required_argument, NULL, OPT_BATCH},
    {"imgsz", required_argument, NULL, OPT_IMGSZ},
    {"img", required_argument, NULL, OPT_IMGSZ},
    {"device", required_argument, NULL, OPT_DEVICE},
    {"project", required_argument, NULL, OPT_PROJECT},
    {"name", required_argument, NULL, OPT_NAME},
    {"exist-ok", no_argument, NULL, OPT_EXIST_OK},
    {"db", required_argument, NULL, OPT_DB},
    {"seed", required_argument, NULL, OPT_SEED},
    {"trainer", required_argument, NULL, OPT_TRAINER},
    {"space", required_argument, NULL, OPT_SPACE},
    {"resume", no_argument, NULL, OPT_RESUME},
    {"parent", required_argument, NULL, OPT_PARENT},
    {"top", required_argument, NULL, OPT_TOP},
    {"mutation-prob", required_argument, NULL, OPT_MUTATION_PROB},
    {"sigma", required_argument, NULL, OPT_SIGMA},
    {"meta", required_argument, NULL, OPT_META},
    {"evolve-keys", required_argument, NULL, OPT_EVOLVE_KEYS},
    {"parallel", required_argument, NULL, OPT_PARALLEL},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"retries", required_argument, NULL, OPT_RETRIES},
    {"grace", required_argument, NULL, OPT_GRACE},
    {"best", required_argument, NULL, OPT_BEST},
    {"csv", required_argument, NULL, OPT_CSV},
    {"ndjson", required_argument, NULL, OPT_NDJSON},
    {"tune-csv", required_argument, NULL, OPT_TUNE_CSV},
    {"quiet", no_argument, NULL, OPT_QUIET},
    {"verbose", no_argument, NULL, OPT_VERBOSE},
    {"devices", required_argument, NULL, OPT_DEVICES},
    {"per-device", required_argument, NULL, OPT_PER_DEVICE},
    {"launcher", required_argument, NULL, OPT_LAUNCHER},
    {"slurm-args", required_argument, NULL, OPT_SLURM_ARGS},
    {"slurm-submit", no_argument, NULL, OPT_SLURM_SUBMIT},
    {"prune", required_argument, NULL, OPT_PRUNE},
    {"prune-warmup", required_argument, NULL, OPT_PRUNE_WARMUP},
    {"python", required_argument, NULL, OPT_PYTHON},
    {"algorithm", required_argument, NULL, OPT_ALGORITHM},
    {"population", required_argument, NULL, OPT_POPULATION},
    {"ga-dir", required_argument, NULL, OPT_GA_DIR},
    {"log-max", required_argument, NULL, OPT_LOG_MAX},
    {"report-every", required_argument, NULL, OPT_REPORT_EVERY},
    {"out", required_argument, NULL, OPT_OUT},
    {"lag", required_argument, NULL, OPT_LAG},
    {"max-failures", required_argument, NULL, OPT_MAX_FAILURES},
    {"budget", required_argument, NULL, OPT_BUDGET},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0}};

static const char run_help[] =
    "usage: yolo-evolve --data DATA.yaml [options]  run a new evolution\n"
    "       yolo-evolve --resume [--db PATH]        continue one from its database\n"
    "       yolo-evolve status|export|import|report|serve ... (see yolo-evolve COMMAND --help)\n"
    "\n"
    "  --generations N     generations in total (300)\n"
    "  --budget EPOCHS     trainer epochs to spend at most, pruned and failed included:\n"
    "                      a candidate starts only if its --epochs fit (0: none)\n"
    "  --data PATH         dataset yaml passed to the trainer; required for a new\n"
    "                      evolution (a template of your own without {data}: --data none)\n"
    "  --cfg PATH          model yaml ('')\n"
    "  --hyp PATH          base hyp.yaml (hyp.scratch-low.yaml shipped with us)\n"
    "  --weights PATH      initial weights ('' = from scratch)\n"
    "  --epochs N          epochs per candidate (30)\n"
    "  --batch-size N      batch size (16)\n"
    "  --imgsz N           image size (640)\n"
    "  --device S          trainer device, e.g. 0 or cpu ('')\n"
    "  --project DIR       runs/evolve;  --name NAME: exp (exp2, exp3... unless --exist-ok)\n"
    "  --db PATH           database (PROJECT/NAME/evolve.db)\n"
    "  --seed N            evolution seed (0): same seed + same results = same table\n"
    "  --trainer T         native | yolov5:DIR | ultralytics[:PYTHON] | a template such as\n"
    "                      'python3 my_train.py --hyp {hyp} --save-dir {save_dir}'\n"
    "                      placeholders: {hyp} {data} {cfg} {weights} {epochs} {batch}\n"
    "                      {imgsz} {device} {project} {name} {save_dir} {seed}\n"
    "  --space S           hyperparameters: yolov5 | ultralytics (default: the trainer's)\n"
    "  --resume            continue the evolution in --db (or PROJECT/NAME)\n"
    "  --parent M          single (weighted random parent, default) | weighted (mean)\n"
    "  --top N             parents come from the best N (5)\n"
    "  --mutation-prob P   probability that a key mutates (0.8)\n"
    "  --sigma S           mutation scale (0.2)\n"
    "  --meta PATH         meta.yaml overriding gains and bounds\n"
    "  --evolve-keys K,..  mutate only these keys\n"
    "  --parallel P        candidates at once on the CPU (1)\n"
    "  --lag L             generation i descends from generations 0 .. i-L and waits\n"
    "                      for all of them (default and minimum: P, the candidates at\n"
    "                      once); a larger L keeps slots busier, with staler parents\n"
    "  --devices 0,1,..    GPUs; each trainer is pinned with CUDA_VISIBLE_DEVICES\n"
    "  --per-device K      candidates per GPU (1); P = GPUs x K\n"
    "  --launcher L        local (default) | slurm: each candidate is an srun job step\n"
    "  --slurm-args S      extra srun options, e.g. '--partition=gpu --time=2:00:00'\n"
    "  --slurm-submit      each candidate a Slurm job of its own, even inside an allocation\n"
    "  --prune median      stop a candidate whose fitness at an epoch is below the median\n"
    "                      of the finished candidates at that epoch (none)\n"
    "  --prune-warmup E    first epoch (0-based) at which pruning may happen (3)\n"
    "  --algorithm A       yolov5 (default) | ga (YOLOv5's population GA) | robust\n"
    "  --population N      GA population size (50)\n"
    "  --ga-dir DIR        hyp yamls that seed the GA's first population (none)\n"
    "  --python PATH       interpreter for the yolov5:DIR trainer (python3)\n"
    "  --timeout S         stop a candidate after S seconds and record it failed (none)\n"
    "  --retries N         rerun a crashed candidate up to N times (0)\n"
    "  --max-failures K    circuit breaker: stop when the base generation fails or K\n"
    "                      candidates fail in a row (5; 0 = never stop); --resume goes on\n"
    "  --grace S           seconds between SIGTERM and SIGKILL (10)\n"
    "  --log-max MiB       a trainer log rotates at this size, one old part kept (16)\n"
    "  --report-every N    redraw evolve.png and fitness.png every N finished (10; 0 never)\n"
    "  --quiet | --verbose\n"
    "\n"
    "Before generation 0 the inputs the trainer gets and the trainer program are\n"
    "checked. Exit status: 0 done; 1 error; 2 bad command line or failed check (nothing\n"
    "created); 3 stopped by the circuit breaker; 4 no candidate succeeded; 129, 130, 143\n"
    "stopped by SIGHUP, SIGINT, SIGTERM (continue with --resume).\n";

static const char status_help[] =
    "usage: yolo-evolve status [--db PATH | --project DIR --name NAME]\n"
    "Progress, the best generations so far, failures.\n";
static const char export_help[] =
    "usage: yolo-evolve export [--db PATH | --project DIR --name NAME] [--best FILE] [--csv FILE]\n"
    "                          [--ndjson FILE] [--tune-csv FILE]\n"
    "  --best FILE      the best generation as hyp.yaml (YOLOv5's hyp_evolve.yaml header, or\n"
    "                   the Ultralytics Tuner's best_hyperparameters.yaml); - for stdout\n"
    "  --csv FILE       YOLOv5's evolve.csv of the done generations; - for stdout\n"
    "  --ndjson FILE    the Ultralytics Tuner's tune_results.ndjson (8.4.x); - for stdout\n"
    "  --tune-csv FILE  the Ultralytics Tuner's tune_results.csv (8.3.x); - for stdout\n";
static const char import_help[] =
    "usage: yolo-evolve import FILE --data DATA.yaml [run options]\n"
    "Create a new evolution (PROJECT/NAME or --db) from a YOLOv5 evolve.csv, or from the\n"
    "Ultralytics Tuner's tune_results.ndjson or tune_results.csv (with --trainer\n"
    "ultralytics[:PYTHON] or --space ultralytics); each row becomes a done generation (a\n"
    "Tuner iteration without metrics a failed one). Continue it with:\n"
    "yolo-evolve --resume --db DB --generations N\n";

static void cli_defaults(struct cli *c)
{
	memset(c, 0, sizeof(*c));
	c->cfg = "";
	c->weights = "";
	c->device = "";
	c->project = "runs/evolve";
	c->name = "exp";
	c->trainer = "native";
	c->parent = "single";
	c->generations = 300;
	c->epochs = 30;
	c->batch = 16;
	c->imgsz = 640;
	c->top = 5;
	c->parallel = 1;
	c->mutation_prob = 0.8;
	c->sigma = 0.2;
	c->grace = 10;
	c->devices = "";
	c->launcher = "local";
	c->slurm_args = "";
	c->prune = "none";
	c->python = "python3";
	c->algorithm = "yolov5";
	c->ga_dir = "";
	c->per_device = 1;
	c->prune_warmup = 3;
	c->population = 50;
	c->log_max = 16;
	c->report_every = 10;
	c->max_failures = EV_MAX_FAILURES_DEFAULT;
}

static int bad_value(const char *option, const char *value)
{
	char q[UT_QUOTE_LEN];
	ut_log(UT_LOG_ERROR, "--%s: invalid value '%s'", option, ut_quote(value, q, sizeof(q)));
	return -1;
}

static int parse_number(const struct option *opt, const char *value, struct cli *c)
{
	long *longs[] = {[OPT_GENERATIONS - 256] = &c->generations,
			 [OPT_EPOCHS - 256] = &c->epochs,
			 [OPT_BATCH - 256] = &c->batch,
			 [OPT_IMGSZ - 256] = &c->imgsz,
			 [OPT_TOP - 256] = &c->top,
			 [OPT_PARALLEL - 256] = &c->parallel,
			 [OPT_RETRIES - 256] = &c->retries,
			 [OPT_PER_DEVICE - 256] = &c->per_device,
			 [OPT_PRUNE_WARMUP - 256] = &c->prune_warmup,
			 [OPT_POPULATION - 256] = &c->population,
			 [OPT_LOG_MAX - 256] = &c->log_max,
			 [OPT_REPORT_EVERY - 256] = &c->report_every,
			 [OPT_LAG - 256] = &c->lag,
			 [OPT_MAX_FAILURES - 256] = &c->max_failures,
			 [OPT_BUDGET - 256] = &c->budget,
			 [OPT_HELP - 256] = NULL};
	double *doubles[] = {[OPT_MUTATION_PROB - 256] = &c->mutation_prob,
			     [OPT_SIGMA - 256] = &c->sigma,
			     [OPT_TIMEOUT - 256] = &c->timeout,
			     [OPT_GRACE - 256] = &c->grace,
			     [OPT_HELP - 256] = NULL};
	int id = opt->val - 256;
	if (opt->val == OPT_BUDGET) {
		char q[UT_QUOTE_LEN];
		if (ut_parse_long(value, 0, EV_BUDGET_MAX, &c->budget) == 0)
			return 0;
		ut_log(UT_LOG_ERROR,
		       "--budget '%s': give the trainer epochs to spend, a whole number from 0 "
		       "(no budget) to %ld",
		       ut_quote(value, q, sizeof(q)), (long)EV_BUDGET_MAX);
		return -1;
	}
	if (longs[id] != NULL) {
		long lo = (opt->val == OPT_RETRIES || opt->val == OPT_PRUNE_WARMUP) ? 0 : 1;
		if (opt->val == OPT_POPULATION)
			lo = 2;
		if (opt->val == OPT_REPORT_EVERY || opt->val == OPT_MAX_FAILURES)
			lo = 0;
		long hi = opt->val == OPT_TOP ? EV_TOP_MAX : 100000000;
		if (opt->val == OPT_PARALLEL || opt->val == OPT_PER_DEVICE)
			hi = EV_MAX_SLOTS;
		if (opt->val == OPT_LAG)
			lo = 0;
		return ut_parse_long(value, lo, hi, longs[id]) == 0 ? 0
								    : bad_value(opt->name, value);
	}
	if (doubles[id] != NULL) {
		if (ut_parse_double(value, doubles[id]) != 0 || *doubles[id] < 0)
			return bad_value(opt->name, value);
		if (opt->val == OPT_MUTATION_PROB && *doubles[id] > 1)
			return bad_value(opt->name, value);
		return 0;
	}
	return 1; /* not a number option */
}

static const char **string_slot(struct cli *c, int id)
{
	switch (id) {
	case OPT_DATA:
		return &c->data;
	case OPT_CFG:
		return &c->cfg;
	case OPT_HYP:
		return &c->hyp;
	case OPT_WEIGHTS:
		return &c->weights;
	case OPT_DEVICE:
		return &c->device;
	case OPT_PROJECT:
		return &c->project;
	case OPT_NAME:
		return &c->name;
	case OPT_DB:
		return &c->db;
	case OPT_TRAINER:
		return &c->trainer;
	case OPT_SPACE:
		return &c->space;
	case OPT_PARENT:
		return &c->parent;
	case OPT_META:
		return &c->meta;
	case OPT_EVOLVE_KEYS:
		return &c->evolve_keys;
	case OPT_BEST:
		return &c->best_out;
	case OPT_CSV:
		return &c->csv_out;
	case OPT_NDJSON:
		return &c->ndjson_out;
	case OPT_TUNE_CSV:
		return &c->tune_csv_out;
	case OPT_DEVICES:
		return &c->devices;
	case OPT_LAUNCHER:
		return &c->launcher;
	case OPT_SLURM_ARGS:
		return &c->slurm_args;
	case OPT_PRUNE:
		return &c->prune;
	case OPT_PYTHON:
		return &c->python;
	case OPT_ALGORITHM:
		return &c->algorithm;
	case OPT_GA_DIR:
		return &c->ga_dir;
	case OPT_OUT:
		return &c->out_dir;
	default:
		return NULL;
	}
}

/* Returns 0 ok, 1 help shown, -1 error. */
static int parse_cli(int argc, char **argv, struct cli *c, const char *help)
{
	cli_defaults(c);
	optind = 1;
	opterr = 0;
	int id, index;
	while ((id = getopt_long(argc, argv, ":", long_options, &index)) != -1) {
		if (id == '?' || id == ':') {
			ut_log(UT_LOG_ERROR, "%s '%s' (see --help)",
			       id == '?' ? "unknown option" : "missing value for",
			       argv[optind - 1]);
			return -1;
		}
		const struct option *opt = &long_options[index];
		const char **slot = string_slot(c, id);
		if (slot != NULL) {
			*slot = optarg;
			continue;
		}
		switch (id) {
		case OPT_EXIST_OK:
			c->exist_ok = 1;
			break;
		case OPT_RESUME:
			c->resume = 1;
			break;
		case OPT_QUIET:
			c->quiet = 1;
			break;
		case OPT_VERBOSE:
			c->verbose = 1;
			break;
		case OPT_SLURM_SUBMIT:
			c->slurm_submit = 1;
			break;
		case OPT_HELP:
			fputs(help, stdout);
			return 1;
		case OPT_SEED: {
			char *end;
			errno = 0;
			c->seed = strtoull(optarg, &end, 10);
			if (*optarg == '\0' || *end != '\0' || errno != 0 || *optarg == '-')
				return bad_value(opt->name, optarg);
			break;
		}
		default:
			if (id == OPT_GENERATIONS)
				c->generations_set = 1;
			if (id == OPT_PARALLEL)
				c->parallel_set = 1;
			if (id == OPT_BUDGET)
				c->budget_set = 1;
			if (parse_number(opt, optarg, c) != 0)
				return -1;
		}
	}
	if (optind < argc)
		c->positional = argv[optind++];
	if (optind < argc) {
		ut_log(UT_LOG_ERROR, "unexpected argument '%s' (see --help)", argv[optind]);
		return -1;
	}
	if (c->quiet)
		ut_log_set_level(UT_LOG_WARN);
	if (c->verbose)
		ut_log_set_level(UT_LOG_DEBUG);
	return 0;
}

/* ---- paths -------------------------------------------------------------------- */

/* An existing file becomes absolute (trainers run in their own folder). */
static void absolute_if_exists(const char *path, char *out, size_t size)
{
	char resolved[PATH_MAX];
	if (path[0] != '\0' && realpath(path, resolved) != NULL)
		snprintf(out, size, "%s", resolved);
	else
		snprintf(out, size, "%s", path);
}

/* YOLOv5's default hyp, shipped with us (ut_data_file: installed or source tree). */
static int default_hyp(enum meta_space space, char *out, size_t size)
{
	const char *name = space == META_SPACE_ULTRALYTICS ? "data/ultralytics/hyp.ultralytics.yaml"
							   : "data/hyps/hyp.scratch-low.yaml";
	if (ut_data_file(name, out, size) == 0)
		return 0;
	ut_log(UT_LOG_ERROR, "%s is not installed with yolo-evolve: give --hyp", name);
	return -1;
}

/*
 * The hyperparameter space: --space, else the trainer's. A built-in trainer
 * takes only its own space; a user template may take either.
 */
static int choose_space(const struct cli *c, enum meta_space *space, struct ut_err *err)
{
	char q[UT_QUOTE_LEN];
	enum meta_space trainer_space = ev_template_space(c->trainer);
	*space = trainer_space;
	if (c->space == NULL)
		return 0;
	if (meta_space_parse(c->space, space) != 0)
		return ut_err_set(err, "--space '%s': use yolov5 or ultralytics",
				  ut_quote(c->space, q, sizeof(q)));
	int builtin = strcmp(c->trainer, "native") == 0 || strncmp(c->trainer, "yolov5:", 7) == 0 ||
		      trainer_space == META_SPACE_ULTRALYTICS;
	if (builtin && *space != trainer_space)
		return ut_err_set(err, "--space %s: the trainer %s takes the %s space", c->space,
				  ut_quote(c->trainer, q, sizeof(q)),
				  meta_space_name(trainer_space));
	return 0;
}

/* A name may not climb out of the project folder. */
static int check_name(const char *name, struct ut_err *err)
{
	if (name[0] == '\0' || strchr(name, '/') != NULL || strcmp(name, ".") == 0 ||
	    strcmp(name, "..") == 0)
		return ut_err_set(err, "--name '%s': must be a plain folder name", name);
	return 0;
}

/* YOLOv5's increment_path: exp, exp2, exp3, ... unless exist_ok. */
static void run_dir_for(const struct cli *c, char *out, size_t size)
{
	snprintf(out, size, "%s/%s", c->project, c->name);
	struct stat st;
	for (int n = 2; !c->exist_ok && stat(out, &st) == 0; n++)
		snprintf(out, size, "%s/%s%d", c->project, c->name, n);
}

/* ---- creating an evolution ------------------------------------------------------ */

/* Number of ids in "0,1,2", 0 for "", -1 if malformed. */
static long count_devices(const char *devices)
{
	if (devices[0] == '\0')
		return 0;
	long n = 0;
	const char *p = devices;
	for (;;) {
		size_t digits = strspn(p, "0123456789");
		if (digits == 0)
			return -1;
		n++;
		p += digits;
		if (*p == '\0')
			return n;
		if (*p++ != ',')
			return -1;
	}
}

static int one_of(const char *value, const char *const *choices)
{
	for (; *choices != NULL; choices++)
		if (strcmp(value, *choices) == 0)
			return 1;
	return 0;
}

static int check_choices(const struct cli *c, struct ut_err *err)
{
	static const char *const launchers[] = {"local", "slurm", NULL};
	static const char *const prunes[] = {"none", "median", NULL};
	static const char *const algorithms[] = {"yolov5", "ga", "robust", NULL};
	char q[UT_QUOTE_LEN];
	if (!one_of(c->launcher, launchers))
		return ut_err_set(err, "--launcher '%s': use local or slurm",
				  ut_quote(c->launcher, q, sizeof(q)));
	if (ev_slurm_check_args(c->slurm_args, err) != 0)
		return -1;
	if (!one_of(c->prune, prunes))
		return ut_err_set(err, "--prune '%s': use none or median",
				  ut_quote(c->prune, q, sizeof(q)));
	if (!one_of(c->algorithm, algorithms))
		return ut_err_set(err, "--algorithm '%s': use yolov5, ga or robust",
				  ut_quote(c->algorithm, q, sizeof(q)));
	return 0;
}

/* Put the option's name before a message about its file (meta's messages name file and line). */
static int for_option(const char *option, struct ut_err *err)
{
	struct ut_err cause = *err;
	return ut_err_set(err, "%s: %s", option, cause.msg);
}

/* The options of a new evolution, all but its place (set_place); the files it reads checked. */
static int build_options(const struct cli *c, struct st_options *o, struct ut_err *err)
{
	char q[UT_QUOTE_LEN];
	memset(o, 0, sizeof(*o));
	absolute_if_exists(c->data, o->data, sizeof(o->data));
	/* the native trainer finds yolov5n.yaml or models/yolov5n.yaml as YOLOv5 does: record where
	 */
	char cfg[PATH_MAX];
	if (strcmp(c->trainer, "native") != 0 || ut_data_file(c->cfg, cfg, sizeof(cfg)) != 0)
		snprintf(cfg, sizeof(cfg), "%s", c->cfg);
	absolute_if_exists(cfg, o->cfg, sizeof(o->cfg));
	absolute_if_exists(c->weights, o->weights, sizeof(o->weights));
	enum meta_space space;
	if (choose_space(c, &space, err) != 0)
		return -1;
	if (space == META_SPACE_ULTRALYTICS && strcmp(c->algorithm, "yolov5") != 0)
		return ut_err_set(err, "--algorithm %s: the ultralytics space evolves with yolov5",
				  c->algorithm);
	char hyp[PATH_MAX];
	if (c->hyp != NULL)
		snprintf(hyp, sizeof(hyp), "%s", c->hyp);
	else if (default_hyp(space, hyp, sizeof(hyp)) != 0)
		return ut_err_set(err, "no base hyp: give --hyp");
	if (ev_check_readable("--hyp", hyp, err) != 0 ||
	    (c->meta != NULL && ev_check_readable("--meta", c->meta, err) != 0))
		return -1;
	absolute_if_exists(hyp, o->hyp_path, sizeof(o->hyp_path));
	snprintf(o->device, sizeof(o->device), "%s", c->device);
	snprintf(o->trainer, sizeof(o->trainer), "%s", c->trainer);
	snprintf(o->algorithm, sizeof(o->algorithm), "%s", c->algorithm);
	snprintf(o->devices, sizeof(o->devices), "%s", c->devices);
	snprintf(o->launcher, sizeof(o->launcher), "%s", c->launcher);
	snprintf(o->slurm_args, sizeof(o->slurm_args), "%s", c->slurm_args);
	snprintf(o->prune, sizeof(o->prune), "%s", c->prune);
	snprintf(o->python, sizeof(o->python), "%s", c->python);
	absolute_if_exists(c->ga_dir, o->ga_dir, sizeof(o->ga_dir));
	o->per_device = c->per_device;
	o->slurm_submit = c->slurm_submit;
	o->prune_warmup = c->prune_warmup;
	o->population = c->population;
	o->lag = c->lag;
	o->budget = c->budget;
	if (check_choices(c, err) != 0)
		return -1;
	snprintf(o->parent, sizeof(o->parent), "%s", c->parent);
	snprintf(o->evolve_keys, sizeof(o->evolve_keys), "%s",
		 c->evolve_keys ? c->evolve_keys : "");
	o->epochs = c->epochs;
	o->imgsz = c->imgsz;
	o->batch = c->batch;
	o->parallel = c->parallel;
	long ndevices = count_devices(c->devices);
	if (ndevices < 0)
		return ut_err_set(err, "--devices '%s': give GPU ids like 0,1,2",
				  ut_quote(c->devices, q, sizeof(q)));
	if (ndevices > 0) {
		if (c->parallel_set && c->parallel != ndevices * c->per_device)
			return ut_err_set(
			    err, "--parallel %ld contradicts --devices %s x --per-device %ld",
			    c->parallel, c->devices, c->per_device);
		o->parallel = ndevices * c->per_device;
		if (o->parallel > EV_MAX_SLOTS)
			return ut_err_set(err,
					  "--devices x --per-device: at most %d candidates at once",
					  EV_MAX_SLOTS);
	}
	o->top = c->top;
	o->generations = c->generations;
	o->retries = c->retries;
	o->mutation_prob = c->mutation_prob;
	o->sigma = c->sigma;
	o->timeout = c->timeout;
	o->seed = c->seed;
	enum ev_parent parent;
	if (ev_parent_parse(c->parent, &parent) != 0)
		return ut_err_set(err, "--parent '%s': use single or weighted",
				  ut_quote(c->parent, q, sizeof(q)));
	meta_table_default_space(&o->meta, space);
	if (c->meta != NULL && meta_table_read(c->meta, &o->meta, err) != 0)
		return for_option("--meta", err);
	if (c->evolve_keys != NULL && meta_table_restrict(&o->meta, c->evolve_keys, err) != 0)
		return -1;
	if (meta_hyp_read(o->hyp_path, &o->meta, &o->base, err) != 0)
		return for_option("--hyp", err);
	/* a setting that cannot work is an error now, not 300 failures later */
	return ev_check_options(o, err);
}

/* project and name of the options: the run folder, made absolute once it exists. */
static int set_place(const char *run_dir, struct st_options *o, struct ut_err *err)
{
	char absolute_run[PATH_MAX];
	if (realpath(run_dir, absolute_run) == NULL)
		return ut_err_set(err, "%s: %s", run_dir, strerror(errno));
	const char *slash = strrchr(absolute_run, '/');
	snprintf(o->project, sizeof(o->project), "%.*s", (int)(slash - absolute_run), absolute_run);
	snprintf(o->name, sizeof(o->name), "%s", slash + 1);
	return 0;
}

/* Where a new evolution goes. */
struct new_place {
	char run_dir[PATH_MAX];
	char db_path[PATH_MAX];
};

/*
 * Everything about a new evolution that can be known before anything is
 * made: the options, the files and the trainer (preflight.h), the place.
 * A failure here is the user's to fix (exit 2) and leaves nothing behind.
 */
static int check_new_evolution(const struct cli *c, struct new_place *place, struct st_options *o,
			       struct ut_err *err)
{
	if (c->data == NULL)
		return ut_err_set(
		    err, "--data is required for a new evolution: the dataset yaml for the "
			 "trainer (a template without {data} takes --data none)");
	if (check_name(c->name, err) != 0)
		return -1;
	run_dir_for(c, place->run_dir, sizeof(place->run_dir));
	snprintf(place->db_path, sizeof(place->db_path), "%s", c->db ? c->db : "");
	if (c->db == NULL)
		snprintf(place->db_path, sizeof(place->db_path), "%s/evolve.db", place->run_dir);
	if (access(place->db_path, F_OK) == 0)
		return ut_err_set(err,
				  "%s already holds an evolution: continue it with --resume, or "
				  "choose another --name",
				  place->db_path);
	if (c->db != NULL) {
		char folder[PATH_MAX], quoted[PATH_MAX];
		const char *slash = strrchr(c->db, '/');
		snprintf(folder, sizeof(folder), "%.*s", slash ? (int)(slash - c->db) + 1 : 1,
			 slash ? c->db : ".");
		struct stat st;
		if (stat(folder, &st) != 0 || !S_ISDIR(st.st_mode))
			return ut_err_set(err, "--db %s: its folder does not exist",
					  ev_quote(c->db, quoted, sizeof(quoted)));
	}
	if (build_options(c, o, err) != 0)
		return -1;
	return ev_preflight(o, err);
}

static int create_database(const char *db_path, const struct st_options *o, struct st_db **db,
			   struct ut_err *err);

/* Make the run folder and a new database holding the (checked) options. */
static int create_evolution(const struct new_place *place, struct st_options *o, struct st_db **db,
			    struct ut_err *err)
{
	if (ut_mkdirs(place->run_dir, err) != 0)
		return -1;
	if (set_place(place->run_dir, o, err) != 0 ||
	    create_database(place->db_path, o, db, err) != 0) {
		rmdir(place->run_dir); /* only if still empty */
		return -1;
	}
	return 0;
}

/*
 * The database appears under its name only once it holds its options: it
 * is built as PATH.creating and renamed, so an interrupted creation never
 * leaves a database that can be neither resumed nor replaced.
 */
static int create_database(const char *db_path, const struct st_options *o, struct st_db **db,
			   struct ut_err *err)
{
	char tmp[PATH_MAX + 16];
	snprintf(tmp, sizeof(tmp), "%s.creating", db_path);
	static const char *const suffixes[] = {"", "-wal", "-shm", ".lock"};
	char path[PATH_MAX + 32];
	for (size_t i = 0; i < UT_ARRAY_LEN(suffixes); i++) {
		snprintf(path, sizeof(path), "%s%s", tmp, suffixes[i]);
		unlink(path);
	}
	struct st_db *building;
	if (st_open(tmp, 1, &building, err) != 0)
		return -1;
	int rc = st_options_write(building, o, err);
	st_close(building);
	snprintf(path, sizeof(path), "%s.lock", tmp);
	unlink(path);
	if (rc == 0 && rename(tmp, db_path) != 0)
		rc = ut_err_set(err, "%s: %s", db_path, strerror(errno));
	if (rc != 0) {
		unlink(tmp);
		return -1;
	}
	return st_open(db_path, 0, db, err);
}

static void db_path_for(const struct cli *c, char *out, size_t size)
{
	if (c->db != NULL)
		snprintf(out, size, "%s", c->db);
	else
		snprintf(out, size, "%s/%s/evolve.db", c->project, c->name);
}

/* ---- commands ------------------------------------------------------------------------ */

/* A message that may end with a trainer's log tail: its lines after the first indented. */
/*
 * A reason and the trainer's log tail under it: the first line through the
 * logger, the others indented as they are (ev_log_tail made them printable).
 */
static void log_indented(enum ut_log_level level, const char *text)
{
	size_t first = strcspn(text, "\n");
	ut_log(level, "%.*s", (int)first, text);
	for (const char *line = text + first; *line == '\n' && line[1] != '\0';) {
		line++;
		size_t len = strcspn(line, "\n");
		fprintf(stderr, "    %.*s\n", (int)len, line);
		line += len;
	}
}

static int cmd_run(int argc, char **argv)
{
	struct cli c;
	int rc = parse_cli(argc, argv, &c, run_help);
	if (rc != 0)
		return rc > 0 ? 0 : 2;
	if (c.positional != NULL) {
		ut_log(UT_LOG_ERROR, "unknown command '%s' (see --help)", c.positional);
		return 2;
	}
	struct ut_err err = {{0}};
	struct st_db *db = NULL;
	static struct st_options opts;
	static struct new_place place;
	char db_path[PATH_MAX];
	if (c.resume) {
		db_path_for(&c, db_path, sizeof(db_path));
		int found = 0;
		rc = st_open(db_path, 0, &db, &err);
		if (rc == 0)
			rc = st_options_read(db, &opts, &found, &err);
		if (rc == 0 && !found)
			rc = ut_err_set(&err, "%s: no evolution stored here", db_path);
		if (rc == 0 && c.generations_set && opts.generations != c.generations) {
			opts.generations = c.generations;
			rc = st_options_set_generations(db, c.generations, &err);
		}
		if (rc == 0 && c.budget_set && opts.budget != c.budget) {
			opts.budget = c.budget;
			rc = st_options_set_budget(db, c.budget, &err);
		}
	} else {
		if (check_new_evolution(&c, &place, &opts, &err) != 0) {
			ut_log(UT_LOG_ERROR, "%s", err.msg);
			return 2;
		}
		snprintf(db_path, sizeof(db_path), "%s", place.db_path);
		rc = create_evolution(&place, &opts, &db, &err);
	}
	if (rc != 0) {
		ut_log(UT_LOG_ERROR, "%s", err.msg);
		st_close(db);
		return 1;
	}
	char run_dir[PATH_MAX * 2];
	snprintf(run_dir, sizeof(run_dir), "%s/%s", opts.project, opts.name);
	ut_log(UT_LOG_INFO, "evolution %s: %ld generations, database %s", run_dir, opts.generations,
	       db_path);
	struct ev_run_params params = {.run_dir = run_dir,
				       .grace = c.grace,
				       .log_max = c.log_max * (1LL << 20),
				       .report_every = c.report_every,
				       .max_failures = c.max_failures};
	static char report[UT_ERR_LEN * 2];
	params.report = report;
	params.report_size = sizeof(report);
	rc = ev_run(db, &opts, &params, &err);
	if (rc < 0) {
		ut_log(UT_LOG_ERROR, "%s", err.msg);
	} else {
		struct ut_err plot_err;
		if (rp_write_plots(db, run_dir, &plot_err) != 0)
			ut_log(UT_LOG_WARN, "plots: %s", plot_err.msg);
		if (!c.quiet)
			rp_print_summary(db, stdout);
	}
	if (rc == EV_BREAKER || rc == EV_NO_SUCCESS)
		log_indented(UT_LOG_ERROR, report);
	if (rc == EV_BREAKER)
		ut_log(UT_LOG_WARN,
		       "fix the cause, then continue with: yolo-evolve --resume --db %s", db_path);
	st_close(db);
	return rc < 0 ? 1 : rc;
}

static int open_for_reading(int argc, char **argv, const char *help, struct cli *c,
			    struct st_db **db)
{
	int rc = parse_cli(argc, argv, c, help);
	if (rc != 0)
		return rc > 0 ? 0 : 2;
	if (c->positional != NULL) {
		ut_log(UT_LOG_ERROR, "unexpected argument '%s' (see --help)", c->positional);
		return 2;
	}
	char db_path[PATH_MAX];
	db_path_for(c, db_path, sizeof(db_path));
	struct ut_err err;
	if (st_open_readonly(db_path, db, &err) != 0) {
		ut_log(UT_LOG_ERROR, "%s", err.msg);
		return 1;
	}
	return -1; /* go on */
}

static int cmd_status(int argc, char **argv)
{
	struct cli c;
	struct st_db *db = NULL;
	int rc = open_for_reading(argc, argv, status_help, &c, &db);
	if (rc >= 0)
		return rc;
	rc = rp_print_status(db, stdout);
	st_close(db);
	return rc == 0 ? 0 : 1;
}

static int export_one(struct st_db *db, const char *path,
		      int (*fn)(struct st_db *, FILE *, struct ut_err *))
{
	struct ut_err err;
	char *text = NULL;
	size_t len = 0;
	FILE *mem = open_memstream(&text, &len);
	if (mem == NULL)
		return -1;
	int rc = fn(db, mem, &err);
	fclose(mem);
	if (rc == 0 && strcmp(path, "-") == 0)
		rc = fwrite(text, 1, len, stdout) == len ? 0
							 : ut_err_set(&err, "stdout: write error");
	else if (rc == 0)
		rc = ut_write_file_atomic(path, text, len, &err);
	free(text);
	if (rc != 0)
		ut_log(UT_LOG_ERROR, "%s", err.msg);
	return rc;
}

static int cmd_export(int argc, char **argv)
{
	struct cli c;
	struct st_db *db = NULL;
	int rc = open_for_reading(argc, argv, export_help, &c, &db);
	if (rc >= 0)
		return rc;
	if (c.best_out == NULL && c.csv_out == NULL && c.ndjson_out == NULL &&
	    c.tune_csv_out == NULL) {
		ut_log(UT_LOG_ERROR, "export: give --best, --csv, --ndjson and/or --tune-csv FILE");
		st_close(db);
		return 2;
	}
	rc = 0;
	if (c.best_out != NULL)
		rc |= export_one(db, c.best_out, st_export_hyp_evolve);
	if (c.csv_out != NULL)
		rc |= export_one(db, c.csv_out, st_export_evolve_csv);
	if (c.ndjson_out != NULL)
		rc |= export_one(db, c.ndjson_out, st_export_tuner_ndjson);
	if (c.tune_csv_out != NULL)
		rc |= export_one(db, c.tune_csv_out, st_export_tuner_csv);
	st_close(db);
	return rc == 0 ? 0 : 1;
}

/* Is the file to import one of the Ultralytics Tuner's? (unreadable: no, the import says why) */
static int is_tuner_file(const char *path)
{
	struct ut_err ignored;
	char *text = NULL;
	size_t len = 0;
	if (ut_read_file(path, &text, &len, &ignored) != 0)
		return 0;
	int tuner = st_is_tuner_file(path, text, len);
	free(text);
	return tuner;
}

static int cmd_import(int argc, char **argv)
{
	struct cli c;
	int rc = parse_cli(argc, argv, &c, import_help);
	if (rc != 0)
		return rc > 0 ? 0 : 2;
	if (c.positional == NULL) {
		ut_log(UT_LOG_ERROR, "import: which evolve.csv? (see --help)");
		return 2;
	}
	struct ut_err err;
	struct st_db *db = NULL;
	static struct st_options opts;
	static struct new_place place;
	long imported = 0;
	if (ev_check_readable("import", c.positional, &err) != 0 ||
	    check_new_evolution(&c, &place, &opts, &err) != 0) {
		ut_log(UT_LOG_ERROR, "%s", err.msg);
		return 2;
	}
	const char *db_path = place.db_path;
	if (create_evolution(&place, &opts, &db, &err) != 0) {
		ut_log(UT_LOG_ERROR, "%s", err.msg);
		return 1;
	}
	char run_dir[PATH_MAX * 2];
	snprintf(run_dir, sizeof(run_dir), "%s/%s", opts.project, opts.name);
	rc = is_tuner_file(c.positional)
		 ? st_import_tuner(db, c.positional, &opts.meta, &imported, &err)
		 : st_import_evolve_csv(db, c.positional, &opts.meta, &imported, &err);
	if (rc == 0)
		rc = ev_write_exports(db, run_dir, &err);
	st_close(db);
	if (rc != 0) {
		ut_log(UT_LOG_ERROR, "%s", err.msg);
		/* leave no half-made evolution behind */
		static const char *const suffixes[] = {"", "-wal", "-shm", ".lock"};
		for (size_t i = 0; i < UT_ARRAY_LEN(suffixes); i++) {
			char path[PATH_MAX + 8];
			snprintf(path, sizeof(path), "%s%s", db_path, suffixes[i]);
			unlink(path);
		}
		rmdir(run_dir); /* only if nothing else is in it */
		return 1;
	}
	printf("imported %ld generations into %s\ncontinue with: yolo-evolve --resume --db %s "
	       "--generations N\n",
	       imported, db_path, db_path);
	return 0;
}

static const char report_help[] =
    "usage: yolo-evolve report [--db PATH | --project DIR --name NAME] [--out DIR]\n"
    "Write evolve.png, fitness.png, evolve.csv and hyp_evolve.yaml (into the run folder\n"
    "unless --out) and print the summary.\n";

static int cmd_report(int argc, char **argv)
{
	struct cli c;
	struct st_db *db = NULL;
	int rc = open_for_reading(argc, argv, report_help, &c, &db);
	if (rc >= 0)
		return rc;
	static struct st_options opts;
	struct ut_err err;
	int found = 0;
	char out[PATH_MAX * 2];
	rc = st_options_read(db, &opts, &found, &err);
	if (rc == 0 && !found)
		rc = ut_err_set(&err, "%s: no evolution stored here", st_path(db));
	if (rc == 0) {
		if (c.out_dir != NULL)
			snprintf(out, sizeof(out), "%s", c.out_dir);
		else
			snprintf(out, sizeof(out), "%s/%s", opts.project, opts.name);
		rc = ut_mkdirs(out, &err);
	}
	if (rc == 0)
		rc = rp_write_plots(db, out, &err);
	if (rc == 0)
		rc = ev_write_exports(db, out, &err);
	if (rc == 0) {
		rp_print_summary(db, stdout);
		printf("reports written to %s\n", out);
	} else {
		ut_log(UT_LOG_ERROR, "%s", err.msg);
	}
	st_close(db);
	return rc == 0 ? 0 : 1;
}

static const char serve_help[] =
    "usage: yolo-evolve serve --db PATH [--db PATH ...] [--port N] [--host ADDR]\n"
    "A live dashboard of evolutions in the browser, while they run. PATH is an evolve.db\n"
    "or a folder of runs (DIR/evolve.db, DIR/NAME/evolve.db). Read-only: never writes.\n"
    "  --port N        port to listen on (8080; 0: any free port, printed)\n"
    "  --host ADDR     address to bind (127.0.0.1: this machine only; from a cluster use\n"
    "                  ssh -L 8080:127.0.0.1:8080 HOST and open http://127.0.0.1:8080/)\n"
    "  --refresh-ms N  re-read each database at most every N ms (500)\n"
    "Stops on SIGINT or SIGTERM.\n";

static int parse_serve(int argc, char **argv, struct sv_params *params)
{
	enum { S_DB = 1, S_PORT, S_HOST, S_REFRESH, S_HELP };
	static const struct option options[] = {{"db", required_argument, NULL, S_DB},
						{"port", required_argument, NULL, S_PORT},
						{"host", required_argument, NULL, S_HOST},
						{"refresh-ms", required_argument, NULL, S_REFRESH},
						{"help", no_argument, NULL, S_HELP},
						{NULL, 0, NULL, 0}};
	struct ut_err err;
	char quoted[UT_QUOTE_LEN];
	long value;
	int opt;
	opterr = 0;
	optind = 1;
	while ((opt = getopt_long(argc, argv, ":", options, NULL)) != -1) {
		switch (opt) {
		case S_DB:
			if (sv_params_add_db(params, optarg, &err) != 0) {
				ut_log(UT_LOG_ERROR, "%s", err.msg);
				return 2;
			}
			break;
		case S_PORT:
		case S_REFRESH:
			if (ut_parse_long(optarg, opt == S_PORT ? 0 : 1,
					  opt == S_PORT ? 65535 : 3600000, &value) != 0) {
				ut_log(UT_LOG_ERROR, "%s %s: not a number in range",
				       opt == S_PORT ? "--port" : "--refresh-ms",
				       ut_quote(optarg, quoted, sizeof(quoted)));
				return 2;
			}
			if (opt == S_PORT)
				params->port = (unsigned)value;
			else
				params->refresh_ms = value;
			break;
		case S_HOST:
			params->host = optarg;
			break;
		case S_HELP:
			fputs(serve_help, stdout);
			return 1;
		default:
			ut_log(UT_LOG_ERROR,
			       "serve: unknown option or missing value '%s' (see --help)",
			       ut_quote(argv[optind - 1], quoted, sizeof(quoted)));
			return 2;
		}
	}
	if (optind < argc) {
		ut_log(UT_LOG_ERROR, "serve: unexpected argument '%s' (see --help)",
		       ut_quote(argv[optind], quoted, sizeof(quoted)));
		return 2;
	}
	return 0;
}

/*
 * The dashboard runs in libmicrohttpd's threads; this thread waits for
 * SIGINT or SIGTERM (blocked before the threads start, so they inherit the
 * mask and only sigwait sees them), then stops it.
 */
static int cmd_serve(int argc, char **argv)
{
	struct sv_params params = {.host = "127.0.0.1", .port = 8080};
	int rc = parse_serve(argc, argv, &params);
	if (rc != 0) {
		sv_params_free(&params);
		return rc == 1 ? 0 : 2;
	}
	sigset_t stop;
	sigemptyset(&stop);
	sigaddset(&stop, SIGINT);
	sigaddset(&stop, SIGTERM);
	sigaddset(&stop, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &stop, NULL);
	signal(SIGPIPE, SIG_IGN);
	/* the dashboard yields the CPU to the evolver and its trainers (threads inherit it) */
	if (setpriority(PRIO_PROCESS, 0, 10) != 0)
		ut_log(UT_LOG_DEBUG, "serve: setpriority: %s", strerror(errno));
	struct sv_server *server = NULL;
	struct ut_err err;
	if (sv_start(&params, &server, &err) != 0) {
		ut_log(UT_LOG_ERROR, "%s", err.msg);
		sv_params_free(&params);
		return 1;
	}
	const char *host = params.host;
	int v6 = strchr(host, ':') != NULL;
	printf("serving %zu evolution(s) on http://%s%s%s:%u/ (read-only; Ctrl-C stops)\n",
	       params.ndbs, v6 ? "[" : "", host, v6 ? "]" : "", sv_port(server));
	fflush(stdout);
	int sig = 0;
	sigwait(&stop, &sig);
	sv_stop(server);
	sv_params_free(&params);
	ut_log(UT_LOG_INFO, "serve: stopped by signal %d", sig);
	return 0;
}

struct command {
	const char *name;
	int (*fn)(int argc, char **argv);
};

static const struct command commands[] = {{"status", cmd_status},
					  {"export", cmd_export},
					  {"import", cmd_import},
					  {"report", cmd_report},
					  {"serve", cmd_serve}};

/*
 * Started with stdin, stdout or stderr closed, the next file opened (the
 * database, a log) would take that number and receive writes meant for the
 * terminal: give every closed one /dev/null first.
 */
static void ensure_std_fds(void)
{
	for (int fd = 0; fd <= 2; fd++) {
		if (fcntl(fd, F_GETFD) != -1)
			continue;
		int opened = open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY);
		if (opened >= 0 && opened != fd) {
			dup2(opened, fd);
			close(opened);
		}
	}
}

int main(int argc, char **argv)
{
	ensure_std_fds();
	if (argc > 1 && strcmp(argv[1], "--version") == 0) {
		printf("yolo-evolve %s\n", YE_VERSION);
		return 0;
	}
	for (size_t i = 0; argc > 1 && i < UT_ARRAY_LEN(commands); i++)
		if (strcmp(argv[1], commands[i].name) == 0)
			return commands[i].fn(argc - 1, argv + 1);
	return cmd_run(argc, argv);
}
