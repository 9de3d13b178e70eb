/*
 * main.c - the yolo-evolve command line: run or continue an evolution,
 * and the subcommands status, export and import. Only this file exits.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "breed.h"
#include "cli.h"
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
	long gpus_per_candidate;
	long budget; /* trainer epochs, 0: none */
	const char *out_dir;
	double mutation_prob, sigma, timeout, grace;
	unsigned long long seed;
	bool exist_ok, resume, quiet, verbose, slurm_submit, help;
	bool generations_set, parallel_set, budget_set; /* given on the command line */
	const char *positional;
};

/*
 * The options of each command, in ut_cli tables (util/cli.h). The help
 * texts below are written by hand, as they say more than one line per
 * option; unit/evolve_cli checks that each names exactly its table's options.
 */
#define AT(field) .offset = offsetof(struct cli, field)
#define COUNT_MAX 100000000 /* the bound of a count without one of its own */

/* What every command takes: where the evolution is, how much to say. */
/* clang-format off */
#define COMMON_OPTIONS                                    \
	{"db", .kind = UT_CLI_STRING, AT(db)},            \
	{"project", .kind = UT_CLI_STRING, AT(project)},  \
	{"name", .kind = UT_CLI_STRING, AT(name)},        \
	{"quiet", .kind = UT_CLI_FLAG, AT(quiet)},        \
	{"verbose", .kind = UT_CLI_FLAG, AT(verbose)},    \
	{"help", .kind = UT_CLI_FLAG, AT(help)}
/* clang-format on */

/* A new evolution (run and import) or --resume. */
static const struct ut_cli_opt run_options[] = {
    COMMON_OPTIONS,
    {"generations", .kind = UT_CLI_LONG, AT(generations), 1, COUNT_MAX},
    {"data", .kind = UT_CLI_STRING, AT(data)},
    {"cfg", .kind = UT_CLI_STRING, AT(cfg), .empty_ok = true},
    {"hyp", .kind = UT_CLI_STRING, AT(hyp)},
    {"weights", .kind = UT_CLI_STRING, AT(weights), .empty_ok = true},
    {"epochs", .kind = UT_CLI_LONG, AT(epochs), 1, COUNT_MAX},
    {"batch-size", .kind = UT_CLI_LONG, AT(batch), 1, COUNT_MAX},
    {"imgsz", "img", UT_CLI_LONG, AT(imgsz), 1, COUNT_MAX},
    {"device", .kind = UT_CLI_STRING, AT(device), .empty_ok = true},
    {"exist-ok", .kind = UT_CLI_FLAG, AT(exist_ok)},
    {"seed", .kind = UT_CLI_U64, AT(seed)},
    {"trainer", .kind = UT_CLI_STRING, AT(trainer)},
    {"space", .kind = UT_CLI_STRING, AT(space)},
    {"resume", .kind = UT_CLI_FLAG, AT(resume)},
    {"parent", .kind = UT_CLI_STRING, AT(parent)},
    {"top", .kind = UT_CLI_LONG, AT(top), 1, EV_TOP_MAX},
    {"mutation-prob", .kind = UT_CLI_DOUBLE, AT(mutation_prob), 0, 1},
    {"sigma", .kind = UT_CLI_DOUBLE, AT(sigma), 0, INFINITY},
    {"meta", .kind = UT_CLI_STRING, AT(meta)},
    {"evolve-keys", .kind = UT_CLI_STRING, AT(evolve_keys)},
    {"parallel", .kind = UT_CLI_LONG, AT(parallel), 1, EV_MAX_SLOTS},
    {"lag", .kind = UT_CLI_LONG, AT(lag), 0, COUNT_MAX},
    {"devices", .kind = UT_CLI_STRING, AT(devices), .empty_ok = true},
    {"per-device", .kind = UT_CLI_LONG, AT(per_device), 1, EV_MAX_SLOTS},
    {"gpus-per-candidate", .kind = UT_CLI_LONG, AT(gpus_per_candidate), 1, EV_MAX_SLOTS},
    {"launcher", .kind = UT_CLI_STRING, AT(launcher)},
    {"slurm-args", .kind = UT_CLI_STRING, AT(slurm_args), .empty_ok = true},
    {"slurm-submit", .kind = UT_CLI_FLAG, AT(slurm_submit)},
    {"prune", .kind = UT_CLI_STRING, AT(prune)},
    {"prune-warmup", .kind = UT_CLI_LONG, AT(prune_warmup), 0, COUNT_MAX},
    {"algorithm", .kind = UT_CLI_STRING, AT(algorithm)},
    {"population", .kind = UT_CLI_LONG, AT(population), 2, COUNT_MAX},
    {"ga-dir", .kind = UT_CLI_STRING, AT(ga_dir), .empty_ok = true},
    {"python", .kind = UT_CLI_STRING, AT(python)},
    {"timeout", .kind = UT_CLI_DOUBLE, AT(timeout), 0, INFINITY},
    {"retries", .kind = UT_CLI_LONG, AT(retries), 0, COUNT_MAX},
    {"max-failures", .kind = UT_CLI_LONG, AT(max_failures), 0, COUNT_MAX},
    {"budget", .kind = UT_CLI_LONG, AT(budget), 0, EV_BUDGET_MAX},
    {"grace", .kind = UT_CLI_DOUBLE, AT(grace), 0, INFINITY},
    {"log-max", .kind = UT_CLI_LONG, AT(log_max), 1, COUNT_MAX},
    {"report-every", .kind = UT_CLI_LONG, AT(report_every), 0, COUNT_MAX},
};

static const struct ut_cli_opt status_options[] = {COMMON_OPTIONS};

static const struct ut_cli_opt export_options[] = {
    COMMON_OPTIONS,
    {"best", .kind = UT_CLI_STRING, AT(best_out)},
    {"csv", .kind = UT_CLI_STRING, AT(csv_out)},
    {"ndjson", .kind = UT_CLI_STRING, AT(ndjson_out)},
    {"tune-csv", .kind = UT_CLI_STRING, AT(tune_csv_out)},
};

static const struct ut_cli_opt report_options[] = {
    COMMON_OPTIONS,
    {"out", .kind = UT_CLI_STRING, AT(out_dir)},
};

/* The most options a command has: the room parse_cli keeps for ut_cli's given[]. */
#define MAX_OPTIONS UT_ARRAY_LEN(run_options)

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
    "  --imgsz, --img N    image size (640)\n"
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
    "                      for all of them (minimum: P, the candidates at once; default\n"
    "                      P; when P > 1, 3P for halving and 2P for guided); a larger\n"
    "                      L keeps slots busier, with staler parents\n"
    "  --devices 0,1,..    GPUs; each trainer is pinned with CUDA_VISIBLE_DEVICES\n"
    "  --per-device K      candidates at once per GPU group (1); P = GPUs / N x K\n"
    "  --gpus-per-candidate N\n"
    "                      GPUs of each candidate, trained as one DDP run (1): --devices\n"
    "                      in groups of N, each trainer pinned to its group\n"
    "  --launcher L        local (default) | slurm: each candidate is an srun job step\n"
    "  --slurm-args S      extra srun options, e.g. '--partition=gpu --time=2:00:00'\n"
    "  --slurm-submit      each candidate a Slurm job of its own, even inside an allocation\n"
    "  --prune median|asha stop a candidate below the median (asha: the best third, at\n"
    "                      epochs E/3, E/9, ...) of the finished ones at that epoch (none)\n"
    "  --prune-warmup E    first epoch (0-based) at which median pruning may stop (3)\n"
    "  --algorithm A       yolov5 (default: YOLOv5's evolve, bit for bit) | ga (YOLOv5's\n"
    "                      GA) | robust | halving | guided (see bench/search/README.md)\n"
    "  --population N      GA population size (50)\n"
    "  --ga-dir DIR        hyp yamls that seed the GA's first population (none)\n"
    "  --python PATH       interpreter for the yolov5:DIR trainer (python3)\n"
    "  --timeout S         stop a candidate after S seconds and record it failed (none)\n"
    "  --retries N         rerun a crashed candidate up to N times (0)\n"
    "  --max-failures K    circuit breaker: stop when the base generation fails or K\n"
    "                      candidates fail in a row (5; 0 = never stop); --resume goes on\n"
    "  --grace S           seconds between SIGTERM and SIGKILL (10)\n";
/* The rest of the run's help: one string literal holds at most 4095 bytes in ISO C. */
static const char run_help_more[] =
    "  --log-max MiB       a trainer log rotates at this size, one old part kept (16)\n"
    "  --report-every N    redraw evolve.png and fitness.png every N finished (10; 0 never)\n"
    "  --quiet | --verbose\n"
    "\n"
    "Before generation 0 the inputs the trainer gets and the trainer program are\n"
    "checked. Exit status: 0 done; 1 error; 2 bad command line or failed check (nothing\n"
    "created); 3 stopped by the circuit breaker; 4 no candidate succeeded; 129, 130, 143\n"
    "stopped by SIGHUP, SIGINT, SIGTERM (continue with --resume).\n";

static const char status_help[] =
    "usage: yolo-evolve status [--db PATH | --project DIR --name NAME] [--quiet | --verbose]\n"
    "Progress, the best generations so far, failures.\n";
static const char export_help[] =
    "usage: yolo-evolve export [--db PATH | --project DIR --name NAME] [--best FILE] [--csv FILE]\n"
    "                          [--ndjson FILE] [--tune-csv FILE] [--quiet | --verbose]\n"
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

static const char report_help[] =
    "usage: yolo-evolve report [--db PATH | --project DIR --name NAME] [--out DIR]\n"
    "                          [--quiet | --verbose]\n"
    "Write evolve.png, fitness.png, evolve.csv and hyp_evolve.yaml (into the run folder\n"
    "unless --out) and print the summary.\n";

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
	c->gpus_per_candidate = 1;
	c->prune_warmup = 3;
	c->population = 50;
	c->log_max = 16;
	c->report_every = 10;
	c->max_failures = EV_MAX_FAILURES_DEFAULT;
}

/* A command: its word, its function, its options and their help. */
struct command {
	const char *name; /* NULL: a run, which has no command word */
	int (*fn)(const struct command *cmd, int argc, char **argv);
	const struct ut_cli_opt *opts;
	size_t count;
	const char *help;
	int max_positional;    /* import FILE; a run's is an unknown command */
	const char *help_more; /* printed after help; NULL: none */
};

static void print_help(const struct command *cmd)
{
	fputs(cmd->help, stdout);
	if (cmd->help_more != NULL)
		fputs(cmd->help_more, stdout);
}

/*
 * Parse argv by cmd's table into c. Returns 0, 1 when --help came before
 * any error (the help printed, as getopt_long did), or -1 with err naming
 * the option and quoting its value.
 */
static int parse_cli(const struct command *cmd, int argc, char **argv, struct cli *c,
		     struct ut_err *err)
{
	cli_defaults(c);
	bool given[MAX_OPTIONS];
	const char *positional[1];
	struct ut_cli_parse p = {.opts = cmd->opts,
				 .count = cmd->count,
				 .target = c,
				 .positional = positional,
				 .max_positional = cmd->max_positional,
				 .given = given};
	if (cmd->count > MAX_OPTIONS || cmd->max_positional > 1)
		return ut_err_set(err, "internal: the table of %s is too large",
				  cmd->name != NULL ? cmd->name : "a run");
	int rc = ut_cli_parse(&p, argc, argv, err);
	if (c->help) {
		print_help(cmd);
		return 1;
	}
	if (rc != 0)
		return -1;
	c->positional = p.npositional > 0 ? positional[0] : NULL;
	c->generations_set = ut_cli_given(&p, "generations");
	c->parallel_set = ut_cli_given(&p, "parallel");
	c->budget_set = ut_cli_given(&p, "budget");
	if (c->quiet)
		ut_log_set_level(UT_LOG_WARN);
	if (c->verbose)
		ut_log_set_level(UT_LOG_DEBUG);
	return 0;
}

/* parse_cli for a command: -1 go on, else the exit status (0 after --help, 2 an error). */
static int parse_or_exit(const struct command *cmd, int argc, char **argv, struct cli *c)
{
	struct ut_err err;
	int rc = parse_cli(cmd, argc, argv, c, &err);
	if (rc < 0)
		ut_log(UT_LOG_ERROR, "%s", err.msg);
	return rc == 0 ? -1 : rc > 0 ? 0 : 2;
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

/*
 * The candidates at once: --parallel, or with --devices D GPUs in groups of
 * N = --gpus-per-candidate, K = --per-device candidates on each group:
 * P = D / N x K (run.h's ev_gpus_per_candidate reads N back from P).
 */
static int slots_for_devices(const struct cli *c, long *parallel, struct ut_err *err)
{
	char q[UT_QUOTE_LEN];
	long n = c->gpus_per_candidate;
	long ndevices = count_devices(c->devices);
	*parallel = c->parallel;
	if (ndevices < 0)
		return ut_err_set(err, "--devices '%s': give GPU ids like 0,1,2",
				  ut_quote(c->devices, q, sizeof(q)));
	if (ndevices == 0)
		return n == 1 ? 0
			      : ut_err_set(err,
					   "--gpus-per-candidate %ld needs --devices: the GPU ids "
					   "to split into groups of %ld",
					   n, n);
	if (ndevices % n != 0)
		return ut_err_set(err,
				  "--gpus-per-candidate %ld: --devices %s has %ld GPUs, not a "
				  "multiple of %ld",
				  n, ut_quote(c->devices, q, sizeof(q)), ndevices, n);
	if (c->batch % n != 0)
		return ut_err_set(err,
				  "--batch-size %ld is not a multiple of --gpus-per-candidate %ld "
				  "(DDP gives each GPU batch-size / N images)",
				  c->batch, n);
	long slots = ndevices / n * c->per_device;
	if (c->parallel_set && c->parallel != slots)
		return ut_err_set(
		    err,
		    "--parallel %ld contradicts --devices %s / --gpus-per-candidate %ld "
		    "x --per-device %ld (%ld candidates at once)",
		    c->parallel, ut_quote(c->devices, q, sizeof(q)), n, c->per_device, slots);
	if (slots > EV_MAX_SLOTS)
		return ut_err_set(err, "--devices x --per-device: at most %d candidates at once",
				  EV_MAX_SLOTS);
	*parallel = slots;
	return 0;
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
	static const char *const prunes[] = {"none", "median", "asha", NULL};
	static const char *const algorithms[] = {"yolov5",  "ga",     "robust",
						 "halving", "guided", NULL};
	char q[UT_QUOTE_LEN];
	if (!one_of(c->launcher, launchers))
		return ut_err_set(err, "--launcher '%s': use local or slurm",
				  ut_quote(c->launcher, q, sizeof(q)));
	if (ev_slurm_check_args(c->slurm_args, err) != 0)
		return -1;
	if (!one_of(c->prune, prunes))
		return ut_err_set(err, "--prune '%s': use none, median or asha",
				  ut_quote(c->prune, q, sizeof(q)));
	if (!one_of(c->algorithm, algorithms))
		return ut_err_set(err,
				  "--algorithm '%s': use yolov5, ga, robust, halving or guided",
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
	if (check_choices(c, err) != 0)
		return -1;
	const char *algorithm = c->algorithm;
	if (space == META_SPACE_ULTRALYTICS && strcmp(algorithm, "yolov5") != 0)
		return ut_err_set(err, "--algorithm %s: the ultralytics space evolves with yolov5",
				  algorithm);
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
	snprintf(o->algorithm, sizeof(o->algorithm), "%s", algorithm);
	snprintf(o->devices, sizeof(o->devices), "%s", c->devices);
	snprintf(o->launcher, sizeof(o->launcher), "%s", c->launcher);
	snprintf(o->slurm_args, sizeof(o->slurm_args), "%s", c->slurm_args);
	/* halving is robust's breeding with successive halving: it always prunes with asha */
	if (strcmp(algorithm, "halving") == 0 && strcmp(c->prune, "median") == 0)
		return ut_err_set(err, "--prune median: --algorithm halving prunes with asha");
	snprintf(o->prune, sizeof(o->prune), "%s",
		 strcmp(algorithm, "halving") == 0 ? "asha" : c->prune);
	snprintf(o->python, sizeof(o->python), "%s", c->python);
	absolute_if_exists(c->ga_dir, o->ga_dir, sizeof(o->ga_dir));
	o->per_device = c->per_device;
	o->slurm_submit = c->slurm_submit;
	o->prune_warmup = c->prune_warmup;
	o->population = c->population;
	o->lag = c->lag;
	o->budget = c->budget;
	snprintf(o->parent, sizeof(o->parent), "%s", c->parent);
	snprintf(o->evolve_keys, sizeof(o->evolve_keys), "%s",
		 c->evolve_keys ? c->evolve_keys : "");
	o->epochs = c->epochs;
	o->imgsz = c->imgsz;
	o->batch = c->batch;
	if (slots_for_devices(c, &o->parallel, err) != 0)
		return -1;
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

static int cmd_run(const struct command *cmd, int argc, char **argv)
{
	struct cli c;
	int rc = parse_or_exit(cmd, argc, argv, &c);
	if (rc >= 0)
		return rc;
	if (c.positional != NULL) {
		char q[UT_QUOTE_LEN];
		ut_log(UT_LOG_ERROR, "unknown command '%s' (see --help)",
		       ut_quote(c.positional, q, sizeof(q)));
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

static int open_for_reading(const struct command *cmd, int argc, char **argv, struct cli *c,
			    struct st_db **db)
{
	int rc = parse_or_exit(cmd, argc, argv, c);
	if (rc >= 0)
		return rc;
	char db_path[PATH_MAX];
	db_path_for(c, db_path, sizeof(db_path));
	struct ut_err err;
	if (st_open_readonly(db_path, db, &err) != 0) {
		ut_log(UT_LOG_ERROR, "%s", err.msg);
		return 1;
	}
	return -1; /* go on */
}

static int cmd_status(const struct command *cmd, int argc, char **argv)
{
	struct cli c;
	struct st_db *db = NULL;
	int rc = open_for_reading(cmd, argc, argv, &c, &db);
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

static int cmd_export(const struct command *cmd, int argc, char **argv)
{
	struct cli c;
	struct st_db *db = NULL;
	int rc = open_for_reading(cmd, argc, argv, &c, &db);
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

static int cmd_import(const struct command *cmd, int argc, char **argv)
{
	struct cli c;
	int rc = parse_or_exit(cmd, argc, argv, &c);
	if (rc >= 0)
		return rc;
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

static int cmd_report(const struct command *cmd, int argc, char **argv)
{
	struct cli c;
	struct st_db *db = NULL;
	int rc = open_for_reading(cmd, argc, argv, &c, &db);
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

/* What serve's command line says: the server's parameters, the port before its check. */
struct serve_args {
	struct sv_params params;
	long port;
	bool help;
};

/* --db PATH, as often as given: a database, or a folder of runs. */
static int add_serve_db(void *target, const struct ut_cli_opt *opt, const char *value, int index,
			struct ut_err *err)
{
	struct serve_args *args = target;
	return sv_params_add_db(&args->params, value, err);
}

#define SERVE_AT(field) .offset = offsetof(struct serve_args, field)
static const struct ut_cli_opt serve_options[] = {
    {"db", .kind = UT_CLI_CUSTOM, .parse = add_serve_db},
    {"port", .kind = UT_CLI_LONG, SERVE_AT(port), 0, 65535},
    {"host", .kind = UT_CLI_STRING, SERVE_AT(params.host)},
    {"refresh-ms", .kind = UT_CLI_LONG, SERVE_AT(params.refresh_ms), 1, 3600000},
    {"help", .kind = UT_CLI_FLAG, SERVE_AT(help)},
};

/*
 * Parse serve's argv into args (whose params hold the defaults). Returns
 * 0, 1 when --help came before any error (the help printed), or -1 with
 * err set. args->params may hold databases either way (sv_params_free).
 */
static int parse_serve(const struct command *cmd, int argc, char **argv, struct serve_args *args,
		       struct ut_err *err)
{
	args->port = args->params.port;
	struct ut_cli_parse p = {.opts = cmd->opts, .count = cmd->count, .target = args};
	int rc = ut_cli_parse(&p, argc, argv, err);
	if (args->help) {
		print_help(cmd);
		return 1;
	}
	args->params.port = (unsigned)args->port;
	return rc;
}

/*
 * The dashboard runs in libmicrohttpd's threads; this thread waits for
 * SIGINT or SIGTERM (blocked before the threads start, so they inherit the
 * mask and only sigwait sees them), then stops it.
 */
static int cmd_serve(const struct command *cmd, int argc, char **argv)
{
	struct serve_args args = {.params = {.host = "127.0.0.1", .port = 8080}};
	struct sv_params *params = &args.params;
	struct ut_err err;
	int rc = parse_serve(cmd, argc, argv, &args, &err);
	if (rc != 0) {
		if (rc < 0)
			ut_log(UT_LOG_ERROR, "%s", err.msg);
		sv_params_free(params);
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
	if (sv_start(params, &server, &err) != 0) {
		ut_log(UT_LOG_ERROR, "%s", err.msg);
		sv_params_free(params);
		return 1;
	}
	const char *host = params->host;
	int v6 = strchr(host, ':') != NULL;
	printf("serving %zu evolution(s) on http://%s%s%s:%u/ (read-only; Ctrl-C stops)\n",
	       params->ndbs, v6 ? "[" : "", host, v6 ? "]" : "", sv_port(server));
	fflush(stdout);
	int sig = 0;
	sigwait(&stop, &sig);
	sv_stop(server);
	sv_params_free(params);
	ut_log(UT_LOG_INFO, "serve: stopped by signal %d", sig);
	return 0;
}

#define OPTIONS(table) table, UT_ARRAY_LEN(table)

/* The first is a run, without a command word. */
static const struct command commands[] = {
    {NULL, cmd_run, OPTIONS(run_options), run_help, 1, run_help_more},
    {"status", cmd_status, OPTIONS(status_options), status_help, 0, NULL},
    {"export", cmd_export, OPTIONS(export_options), export_help, 0, NULL},
    {"import", cmd_import, OPTIONS(run_options), import_help, 1, NULL},
    {"report", cmd_report, OPTIONS(report_options), report_help, 0, NULL},
    {"serve", cmd_serve, OPTIONS(serve_options), serve_help, 0, NULL}};

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
	for (size_t i = 1; argc > 1 && i < UT_ARRAY_LEN(commands); i++)
		if (strcmp(argv[1], commands[i].name) == 0)
			return commands[i].fn(&commands[i], argc - 1, argv + 1);
	return commands[0].fn(&commands[0], argc, argv);
}
