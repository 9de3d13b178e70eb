/*
 * fixture_trainer.c - a stand-in trainer for testing the evolver.
 *
 * It takes the command line of YOLOv5's train.py (and of our yolo-train),
 * reads a hyp.yaml and writes save_dir/results.csv in YOLOv5 v7.0's format,
 * but its metrics are a known, smooth, deterministic function of the
 * hyperparameters, and it can misbehave on request. Only libc and libm.
 *
 * Command line (any order, "--opt value" or "--opt=value"):
 *   --hyp PATH (required)  --data P  --cfg P  --weights P (may be "")
 *   --epochs N (default 3, >= 1)  --batch-size N  --imgsz N | --img N |
 *   --img-size N  --device S  --project P (default runs/train)
 *   --name S (default exp)  --exist-ok (flag)  --seed N (default 0)
 *   --save-dir P (overrides project/name; otherwise save_dir = project/name,
 *   used as is, never incremented to exp2, exp3, ...)
 * An unknown option, a missing or malformed value, or a bad hyp file is
 * reported on stderr and exits 2. I/O errors exit 1.
 *
 * hyp.yaml: "key: value" lines; blank lines, "#" comments and trailing
 * " # comments" are ignored, and so are unknown keys. The 28 YOLOv5 v7.0
 * keys (lr0 ... copy_paste) are required; anchors is optional (default 3).
 * Values must be finite numbers.
 *
 * Outputs in save_dir (created like mkdir -p): hyp.yaml (a byte copy of
 * --hyp, read fully before writing, so --hyp may be that very file),
 * opt.yaml (every option, defaults included, as "key: value"), and
 * results.csv (emptied at start if it exists; the header is written with
 * the first row, and each row is fflush()ed and fsync()ed as its epoch ends).
 *
 * The function. With x[k] the hyp values:
 *   D = sum over the terms below of t^2
 *     lr0:      t = (log10(lr0) - log10(0.03)) / 0.5   (lr0 <= 0: t^2 = +inf)
 *     momentum: t = (momentum - 0.95) / 0.1
 *     box:      t = (box - 0.08) / 0.08
 *     cls:      t = (cls - 1.0) / 1.5
 *     obj:      t = (obj - 1.6) / 1.5
 *     hsv_s:    t = (hsv_s - 0.4) / 0.5
 *     scale:    t = (scale - 0.3) / 0.5
 *     mosaic:   t = (mosaic - 0.7) / 0.6
 *     anchors:  t = (anchors - 4) / 4
 *   m     = clamp(0.6 * exp(-D) + noise, 0, 0.99)       final mAP@.5:.95
 *   m50   = min(0.999, 1.6 * m + 0.02)                   final mAP@.5
 *   noise = sigma * z, sigma = FIXTURE_NOISE (default 0.002), z ~ N(0, 1)
 *           the first Box-Muller draw, z = sqrt(-2 ln(1 - u1)) cos(2 pi u2),
 *           u = (splitmix64() >> 11) * 2^-53, splitmix64 seeded with H.
 *   H     = 64-bit FNV-1a over the IEEE-754 bits of the 29 values in the
 *           order of meta/meta_table.h (lr0 ... copy_paste, anchors), each
 *           as 8 bytes least significant first, then --seed as a 64-bit
 *           two's complement integer, the same way. Same hyps and seed, same
 *           bytes in results.csv.
 * Row for epoch e = 0 .. E-1 (E = --epochs), p = 1 - exp(-3 (e + 1) / E):
 *   epoch = e; mAP_0.5 = m50 * p; mAP_0.5:0.95 = m * p;
 *   precision = min(1, 1.1 * mAP_0.5); recall = min(1, 0.9 * mAP_0.5 + 0.05);
 *   train/box_loss = 0.1 (1 - 0.5 p), train/obj_loss = 0.03 (1 - 0.3 p),
 *   train/cls_loss = 0.02 (1 - 0.6 p); val/ losses are the same times 1.05;
 *   x/lr0 = x/lr1 = x/lr2 = lr0 (1 - e / E).
 * So the last row reports m * (1 - exp(-3)) = 0.950213 m, printed "%20.5g"
 * (5 significant digits) like every value.
 * Examples, FIXTURE_NOISE unset, --seed 0: data/hyps/hyp.scratch-low.yaml
 * (anchors defaulted to 3) has H = 5b677f510ec38c1b, D = 2.171715,
 * z = 0.434039, m = 0.069257, and with --epochs 5 its last row reports
 * mAP_0.5:0.95 0.065809; hyp.scratch-med.yaml gives m = 0.012947 and
 * hyp.scratch-high.yaml m = 0.012227. At the optimum D = 0 and, with
 * FIXTURE_NOISE=0, m = 0.6 and m50 = 0.98.
 * stdout gets one flushed line per epoch: "epoch 3/10 mAP50 0.12345 mAP 0.0678".
 *
 * Environment:
 *   FIXTURE_NOISE=SIGMA       noise standard deviation (>= 0, default 0.002).
 *   FIXTURE_CROSSING=1        learning curves that cross: p(e) = (1 - exp(-k (e+1)/E))
 *                             / (1 - exp(-k)) * (1 - exp(-3)) with speed
 *                             k = 3 clamp(sqrt(lr0 / 0.01), 0.25, 4); the last row
 *                             is unchanged, early epochs favour a large lr0
 *                             (for judging pruning).
 *   FIXTURE_EPOCH_MS=N        sleep N ms per epoch (default 0).
 *   FIXTURE_DURATION_MS=LO,HI total run time drawn uniformly from [LO, HI] ms,
 *                             split evenly over the epochs; seeded from time
 *                             and pid, so it varies the finishing order but
 *                             never the results. Overrides FIXTURE_EPOCH_MS.
 *   FIXTURE_MODE=M            ok (default); fail: first row, a stderr line,
 *                             exit 1; crash: first row, then SIGSEGV (core
 *                             dumps off); hang: first row, then pause() until
 *                             killed; garbage: after the epochs, results.csv
 *                             holds 4096 random bytes with no ',' or '\n',
 *                             exit 0; nan: every row with nan losses and
 *                             metrics (epoch and lr finite), exit 0;
 *                             noresults: no results.csv (a stale one is
 *                             removed), exit 0; truncated: after the first
 *                             epoch, the header plus the first half of row 0
 *                             without newline, exit 0; log: first
 *                             FIXTURE_LOG_BYTES (default 100000000) bytes of
 *                             80-byte log lines on stdout, then as ok.
 *   FIXTURE_FAIL_EPOCHS=N     with modes fail, crash and hang: act after N
 *                             epochs (default 1, at most --epochs) instead
 *                             of after the first.
 *   FIXTURE_FAIL_IF=KEY<V | KEY>V  apply FIXTURE_MODE only when the hyp value
 *                             of KEY is strictly below / above V; else ok.
 *   FIXTURE_CRASH_ONCE=DIR    with mode crash: crash only if DIR/<H>.crashed
 *                             (H as 16 lower-case hex digits) could be newly
 *                             created now; if it already exists, run as ok.
 * Bad values of these variables exit 2.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define FX_PROG "fixture_trainer"
#define FX_NCOLS 14
#define FX_ROW_LEN (FX_NCOLS * 21 + 2)
#define FX_GARBAGE_BYTES 4096
#define FX_LOG_LINE 80
#define FX_LOG_CHUNK (FX_LOG_LINE * 1024)

/* YOLOv5 v7.0 hyp.yaml key order, anchors last (as meta/meta_table.h). */
/* clang-format off */
#define FX_HYPS(X)                                                                          \
	X(lr0) X(lrf) X(momentum) X(weight_decay) X(warmup_epochs) X(warmup_momentum)       \
	X(warmup_bias_lr) X(box) X(cls) X(cls_pw) X(obj) X(obj_pw) X(iou_t) X(anchor_t)     \
	X(fl_gamma) X(hsv_h) X(hsv_s) X(hsv_v) X(degrees) X(translate) X(scale) X(shear)    \
	X(perspective) X(flipud) X(fliplr) X(mosaic) X(mixup) X(copy_paste) X(anchors)

enum fx_hyp_key {
#define FX_ENUM(name) FX_HYP_##name,
	FX_HYPS(FX_ENUM)
#undef FX_ENUM
	FX_NHYP
};

static const char *const fx_hyp_names[FX_NHYP] = {
#define FX_NAME(name) #name,
	FX_HYPS(FX_NAME)
#undef FX_NAME
};
/* clang-format on */

/* One squared term of D: ((x or log10 x) - optimum) / width. */
struct fx_term {
	enum fx_hyp_key key;
	double optimum;
	double width;
	int log_scale;
};

/* clang-format off */
static const struct fx_term fx_terms[] = {
	{FX_HYP_lr0,      0.03, 0.5,  1},
	{FX_HYP_momentum, 0.95, 0.1,  0},
	{FX_HYP_box,      0.08, 0.08, 0},
	{FX_HYP_cls,      1.0,  1.5,  0},
	{FX_HYP_obj,      1.6,  1.5,  0},
	{FX_HYP_hsv_s,    0.4,  0.5,  0},
	{FX_HYP_scale,    0.3,  0.5,  0},
	{FX_HYP_mosaic,   0.7,  0.6,  0},
	{FX_HYP_anchors,  4.0,  4.0,  0},
};
/* clang-format on */

static const char *const fx_columns[FX_NCOLS] = {
    "epoch",
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
    "x/lr2",
};

struct fx_err {
	char msg[1024];
};

/* The command line; integers are long long so one table can set them. */
struct fx_opts {
	const char *hyp, *data, *cfg, *weights, *device, *project, *name, *save_dir;
	long long epochs, batch_size, imgsz, seed, exist_ok;
};

enum fx_opt_kind { FX_OPT_STR, FX_OPT_INT, FX_OPT_FLAG };

struct fx_opt_spec {
	const char *name;
	enum fx_opt_kind kind;
	size_t offset;
	long long min; /* smallest accepted integer */
};

static const struct fx_opt_spec fx_opt_specs[] = {
    {"hyp", FX_OPT_STR, offsetof(struct fx_opts, hyp), 0},
    {"data", FX_OPT_STR, offsetof(struct fx_opts, data), 0},
    {"cfg", FX_OPT_STR, offsetof(struct fx_opts, cfg), 0},
    {"weights", FX_OPT_STR, offsetof(struct fx_opts, weights), 0},
    {"device", FX_OPT_STR, offsetof(struct fx_opts, device), 0},
    {"project", FX_OPT_STR, offsetof(struct fx_opts, project), 0},
    {"name", FX_OPT_STR, offsetof(struct fx_opts, name), 0},
    {"save-dir", FX_OPT_STR, offsetof(struct fx_opts, save_dir), 0},
    {"epochs", FX_OPT_INT, offsetof(struct fx_opts, epochs), 1},
    {"batch-size", FX_OPT_INT, offsetof(struct fx_opts, batch_size), -1},
    {"imgsz", FX_OPT_INT, offsetof(struct fx_opts, imgsz), 1},
    {"img", FX_OPT_INT, offsetof(struct fx_opts, imgsz), 1},
    {"img-size", FX_OPT_INT, offsetof(struct fx_opts, imgsz), 1},
    {"seed", FX_OPT_INT, offsetof(struct fx_opts, seed), LLONG_MIN},
    {"exist-ok", FX_OPT_FLAG, offsetof(struct fx_opts, exist_ok), 0},
};

enum fx_mode {
	FX_MODE_OK,
	FX_MODE_FAIL,
	FX_MODE_CRASH,
	FX_MODE_HANG,
	FX_MODE_GARBAGE,
	FX_MODE_NAN,
	FX_MODE_NORESULTS,
	FX_MODE_TRUNCATED,
	FX_MODE_LOG,
};

static const char *const fx_mode_names[] = {
    "ok", "fail", "crash", "hang", "garbage", "nan", "noresults", "truncated", "log",
};

/* The FIXTURE_* environment. */
struct fx_env {
	enum fx_mode mode;
	double noise;
	long long epoch_ms;
	int has_duration;
	double duration_lo_ms, duration_hi_ms;
	long long log_bytes;
	long long fail_epochs; /* epochs before fail, crash or hang */
	int has_fail_if;
	enum fx_hyp_key fail_key;
	char fail_op; /* '<' or '>' */
	double fail_value;
	const char *crash_once_dir;
};

/* Everything one run needs once the inputs are read. */
struct fx_run {
	double hyp[FX_NHYP];
	uint64_t hash;
	double map;   /* final mAP@.5:.95 */
	double map50; /* final mAP@.5 */
	long long epochs;
	long long epoch_ns;
	enum fx_mode mode;
	char *results_path;
};

struct fx_rng {
	uint64_t state;
};

__attribute__((format(printf, 2, 3))) static int fx_err_set(struct fx_err *err, const char *fmt,
							    ...)
{
	va_list args;

	va_start(args, fmt);
	vsnprintf(err->msg, sizeof err->msg, fmt, args);
	va_end(args);
	return -1;
}

/* splitmix64 (Steele, Lea, Flood 2014). */
static uint64_t fx_rng_next(struct fx_rng *rng)
{
	uint64_t z;

	rng->state += 0x9e3779b97f4a7c15u;
	z = rng->state;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
	return z ^ (z >> 31);
}

/* Uniform in [0, 1) with 53 random bits. */
static double fx_rng_uniform(struct fx_rng *rng)
{
	return (double)(fx_rng_next(rng) >> 11) * 0x1.0p-53;
}

/* Standard normal, first Box-Muller value. */
static double fx_rng_normal(struct fx_rng *rng)
{
	double u1 = 1.0 - fx_rng_uniform(rng);
	double u2 = fx_rng_uniform(rng);

	return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

/* Feed 8 bytes of word, least significant first, into FNV-1a. */
static uint64_t fx_fnv1a(uint64_t hash, uint64_t word)
{
	for (int i = 0; i < 8; i++) {
		hash ^= (word >> (8 * i)) & 0xffu;
		hash *= 0x100000001b3u;
	}
	return hash;
}

static uint64_t fx_hash(const double hyp[FX_NHYP], long long seed)
{
	uint64_t hash = 0xcbf29ce484222325u;

	for (int k = 0; k < FX_NHYP; k++) {
		uint64_t bits;

		memcpy(&bits, &hyp[k], sizeof bits);
		hash = fx_fnv1a(hash, bits);
	}
	return fx_fnv1a(hash, (uint64_t)seed);
}

/* D of the header comment. */
static double fx_distance(const double hyp[FX_NHYP])
{
	double distance = 0.0;

	for (size_t i = 0; i < sizeof fx_terms / sizeof fx_terms[0]; i++) {
		const struct fx_term *term = &fx_terms[i];
		double x = hyp[term->key];
		double t;

		if (term->log_scale && !(x > 0.0))
			return INFINITY;
		if (term->log_scale)
			t = (log10(x) - log10(term->optimum)) / term->width;
		else
			t = (x - term->optimum) / term->width;
		distance += t * t;
	}
	return distance;
}

/* Final metrics from the hyps, sigma and the hash. */
static void fx_final_metrics(struct fx_run *run, double sigma)
{
	struct fx_rng rng = {run->hash};
	double map = 0.6 * exp(-fx_distance(run->hyp)) + sigma * fx_rng_normal(&rng);

	map = fmin(fmax(map, 0.0), 0.99);
	run->map = map;
	run->map50 = fmin(0.999, 1.6 * map + 0.02);
}

static int fx_parse_ll(const char *text, long long min, long long *out)
{
	char *end;
	long long value;

	errno = 0;
	value = strtoll(text, &end, 10);
	if (errno != 0 || end == text || *end != '\0' || value < min)
		return -1;
	*out = value;
	return 0;
}

static int fx_parse_double(const char *text, double *out)
{
	char *end;
	double value;

	errno = 0;
	value = strtod(text, &end);
	if (errno != 0 || end == text || *end != '\0' || !isfinite(value))
		return -1;
	*out = value;
	return 0;
}

static const struct fx_opt_spec *fx_find_opt(const char *name, size_t len)
{
	for (size_t i = 0; i < sizeof fx_opt_specs / sizeof fx_opt_specs[0]; i++) {
		const char *spec_name = fx_opt_specs[i].name;

		if (strlen(spec_name) == len && strncmp(spec_name, name, len) == 0)
			return &fx_opt_specs[i];
	}
	return NULL;
}

/* Store one option's value (NULL for a flag given without "="). */
static int fx_set_opt(struct fx_opts *opts, const struct fx_opt_spec *spec, const char *value,
		      struct fx_err *err)
{
	char *field = (char *)opts + spec->offset;

	switch (spec->kind) {
	case FX_OPT_FLAG:
		if (value != NULL)
			return fx_err_set(err, "--%s takes no value", spec->name);
		*(long long *)(void *)field = 1;
		return 0;
	case FX_OPT_STR:
		*(const char **)(void *)field = value;
		return 0;
	case FX_OPT_INT:
		if (fx_parse_ll(value, spec->min, (long long *)(void *)field) != 0)
			return fx_err_set(err, "--%s: bad value '%s' (an integer >= %lld)",
					  spec->name, value, spec->min);
		return 0;
	}
	return fx_err_set(err, "--%s: internal error", spec->name);
}

static int fx_parse_args(int argc, char **argv, struct fx_opts *opts, struct fx_err *err)
{
	*opts = (struct fx_opts){.data = "data/coco128.yaml",
				 .cfg = "",
				 .weights = "yolov5s.pt",
				 .device = "",
				 .project = "runs/train",
				 .name = "exp",
				 .epochs = 3,
				 .batch_size = 16,
				 .imgsz = 640};
	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i];
		const char *equals = strchr(arg, '=');
		size_t len = equals != NULL ? (size_t)(equals - arg) : strlen(arg);
		const struct fx_opt_spec *spec = NULL;
		const char *value = equals != NULL ? equals + 1 : NULL;

		if (strncmp(arg, "--", 2) == 0)
			spec = fx_find_opt(arg + 2, len - 2);
		if (spec == NULL)
			return fx_err_set(err, "unknown argument '%s'", arg);
		if (value == NULL && spec->kind != FX_OPT_FLAG) {
			if (i + 1 >= argc)
				return fx_err_set(err, "%s needs a value", arg);
			i++;
			value = argv[i];
		}
		if (fx_set_opt(opts, spec, value, err) != 0)
			return -1;
	}
	if (opts->hyp == NULL)
		return fx_err_set(err, "--hyp is required");
	return 0;
}

/* The whole file as a NUL-terminated string; *size_out excludes the NUL. */
static char *fx_slurp(const char *path, size_t *size_out, struct fx_err *err)
{
	FILE *file = fopen(path, "rb");
	char *text = NULL;
	size_t size = 0, cap = 0;

	if (file == NULL) {
		fx_err_set(err, "%s: %s", path, strerror(errno));
		return NULL;
	}
	for (;;) {
		char *grown;
		size_t got;

		if (cap - size < 4096) {
			cap = cap * 2 + 8192;
			grown = realloc(text, cap);
			if (grown == NULL)
				break;
			text = grown;
		}
		got = fread(text + size, 1, cap - size - 1, file);
		size += got;
		if (got == 0)
			break;
	}
	if (text == NULL || ferror(file)) {
		fx_err_set(err, "%s: read failed", path);
		free(text);
		fclose(file);
		return NULL;
	}
	fclose(file);
	text[size] = '\0';
	*size_out = size;
	return text;
}

static char *fx_trim(char *text)
{
	char *end;

	while (*text == ' ' || *text == '\t')
		text++;
	end = text + strlen(text);
	while (end > text && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
		end--;
	*end = '\0';
	return text;
}

/* Cut a YAML comment: "#" at the start or after blank space. */
static void fx_strip_comment(char *line)
{
	for (char *c = line; *c != '\0'; c++) {
		if (*c == '#' && (c == line || c[-1] == ' ' || c[-1] == '\t')) {
			*c = '\0';
			return;
		}
	}
}

static int fx_hyp_index(const char *name)
{
	for (int k = 0; k < FX_NHYP; k++)
		if (strcmp(fx_hyp_names[k], name) == 0)
			return k;
	return -1;
}

/* One "key: value" line; seen[k] records the keys found. */
static int fx_parse_hyp_line(char *line, const char *path, int lineno, double hyp[FX_NHYP],
			     int seen[FX_NHYP], struct fx_err *err)
{
	char *colon, *key, *value;
	int index;

	fx_strip_comment(line);
	line = fx_trim(line);
	if (*line == '\0')
		return 0;
	colon = strchr(line, ':');
	if (colon == NULL)
		return fx_err_set(err, "%s:%d: expected 'key: value'", path, lineno);
	*colon = '\0';
	key = fx_trim(line);
	value = fx_trim(colon + 1);
	index = fx_hyp_index(key);
	if (index < 0)
		return 0;
	if (fx_parse_double(value, &hyp[index]) != 0)
		return fx_err_set(err, "%s:%d: %s: bad number '%s'", path, lineno, key, value);
	seen[index] = 1;
	return 0;
}

/* Parse hyp.yaml text (modified in place) into hyp[]. */
static int fx_parse_hyp(char *text, const char *path, double hyp[FX_NHYP], struct fx_err *err)
{
	int seen[FX_NHYP] = {0};
	int lineno = 0;
	char *line = text;

	while (line != NULL) {
		char *newline = strchr(line, '\n');

		if (newline != NULL)
			*newline = '\0';
		lineno++;
		if (fx_parse_hyp_line(line, path, lineno, hyp, seen, err) != 0)
			return -1;
		line = newline != NULL ? newline + 1 : NULL;
	}
	if (!seen[FX_HYP_anchors]) {
		hyp[FX_HYP_anchors] = 3.0;
		seen[FX_HYP_anchors] = 1;
	}
	for (int k = 0; k < FX_NHYP; k++)
		if (!seen[k])
			return fx_err_set(err, "%s: missing key '%s'", path, fx_hyp_names[k]);
	return 0;
}

static int fx_env_ll(const char *name, long long fallback, long long *out, struct fx_err *err)
{
	const char *text = getenv(name);

	*out = fallback;
	if (text == NULL || *text == '\0')
		return 0;
	if (fx_parse_ll(text, 0, out) != 0)
		return fx_err_set(err, "%s: bad value '%s' (an integer >= 0)", name, text);
	return 0;
}

static int fx_env_mode(struct fx_env *env, struct fx_err *err)
{
	const char *text = getenv("FIXTURE_MODE");

	env->mode = FX_MODE_OK;
	if (text == NULL || *text == '\0')
		return 0;
	for (size_t i = 0; i < sizeof fx_mode_names / sizeof fx_mode_names[0]; i++) {
		if (strcmp(fx_mode_names[i], text) == 0) {
			env->mode = (enum fx_mode)i;
			return 0;
		}
	}
	return fx_err_set(err, "FIXTURE_MODE: unknown mode '%s'", text);
}

/* FIXTURE_DURATION_MS="LO,HI" */
static int fx_env_duration(struct fx_env *env, struct fx_err *err)
{
	const char *text = getenv("FIXTURE_DURATION_MS");
	char buf[128];
	char *comma;

	if (text == NULL || *text == '\0')
		return 0;
	if (strlen(text) >= sizeof buf)
		return fx_err_set(err, "FIXTURE_DURATION_MS: too long");
	strcpy(buf, text);
	comma = strchr(buf, ',');
	if (comma == NULL)
		return fx_err_set(err, "FIXTURE_DURATION_MS: expected LO,HI, got '%s'", text);
	*comma = '\0';
	if (fx_parse_double(fx_trim(buf), &env->duration_lo_ms) != 0 ||
	    fx_parse_double(fx_trim(comma + 1), &env->duration_hi_ms) != 0 ||
	    env->duration_lo_ms < 0.0 || env->duration_hi_ms < env->duration_lo_ms)
		return fx_err_set(err, "FIXTURE_DURATION_MS: expected 0 <= LO <= HI, got '%s'",
				  text);
	env->has_duration = 1;
	return 0;
}

/* FIXTURE_FAIL_IF="KEY<VALUE" or "KEY>VALUE" */
static int fx_env_fail_if(struct fx_env *env, struct fx_err *err)
{
	const char *text = getenv("FIXTURE_FAIL_IF");
	char buf[128];
	char *op;
	int index;

	if (text == NULL || *text == '\0')
		return 0;
	if (strlen(text) >= sizeof buf)
		return fx_err_set(err, "FIXTURE_FAIL_IF: too long");
	strcpy(buf, text);
	op = strpbrk(buf, "<>");
	if (op == NULL)
		return fx_err_set(err, "FIXTURE_FAIL_IF: expected KEY<VALUE or KEY>VALUE");
	env->fail_op = *op;
	*op = '\0';
	index = fx_hyp_index(fx_trim(buf));
	if (index < 0)
		return fx_err_set(err, "FIXTURE_FAIL_IF: unknown key '%s'", buf);
	if (fx_parse_double(fx_trim(op + 1), &env->fail_value) != 0)
		return fx_err_set(err, "FIXTURE_FAIL_IF: bad value in '%s'", text);
	env->fail_key = (enum fx_hyp_key)index;
	env->has_fail_if = 1;
	return 0;
}

static int fx_read_env(struct fx_env *env, struct fx_err *err)
{
	const char *noise = getenv("FIXTURE_NOISE");
	const char *crash_once = getenv("FIXTURE_CRASH_ONCE");

	*env = (struct fx_env){.noise = 0.002};
	if (noise != NULL && *noise != '\0' &&
	    (fx_parse_double(noise, &env->noise) != 0 || env->noise < 0.0))
		return fx_err_set(err, "FIXTURE_NOISE: bad value '%s' (a number >= 0)", noise);
	if (crash_once != NULL && *crash_once != '\0')
		env->crash_once_dir = crash_once;
	if (fx_env_mode(env, err) != 0 || fx_env_duration(env, err) != 0 ||
	    fx_env_fail_if(env, err) != 0)
		return -1;
	if (fx_env_ll("FIXTURE_EPOCH_MS", 0, &env->epoch_ms, err) != 0 ||
	    fx_env_ll("FIXTURE_FAIL_EPOCHS", 1, &env->fail_epochs, err) != 0)
		return -1;
	return fx_env_ll("FIXTURE_LOG_BYTES", 100000000, &env->log_bytes, err);
}

static char *fx_join(const char *dir, const char *name)
{
	size_t len = strlen(dir) + strlen(name) + 2;
	char *path = malloc(len);

	if (path != NULL)
		snprintf(path, len, "%s/%s", dir, name);
	return path;
}

/*
 * The mode this run acts out: FIXTURE_FAIL_IF may turn it into ok, and so
 * may FIXTURE_CRASH_ONCE when the marker of this (hyps, seed) exists.
 */
static int fx_effective_mode(const struct fx_env *env, const struct fx_run *run, enum fx_mode *mode,
			     struct fx_err *err)
{
	char name[64];
	char *marker;
	int fd;

	*mode = env->mode;
	if (env->has_fail_if) {
		double x = run->hyp[env->fail_key];
		int holds = env->fail_op == '<' ? x < env->fail_value : x > env->fail_value;

		if (!holds)
			*mode = FX_MODE_OK;
	}
	if (*mode != FX_MODE_CRASH || env->crash_once_dir == NULL)
		return 0;
	snprintf(name, sizeof name, "%016" PRIx64 ".crashed", run->hash);
	marker = fx_join(env->crash_once_dir, name);
	if (marker == NULL)
		return fx_err_set(err, "out of memory");
	fd = open(marker, O_WRONLY | O_CREAT | O_EXCL, 0666);
	if (fd >= 0) {
		close(fd);
	} else if (errno == EEXIST) {
		*mode = FX_MODE_OK;
	} else {
		fx_err_set(err, "FIXTURE_CRASH_ONCE: %s: %s", marker, strerror(errno));
		free(marker);
		return -1;
	}
	free(marker);
	return 0;
}

static int fx_mkdir_p(const char *path, struct fx_err *err)
{
	char *copy = strdup(path);
	struct stat st;
	int rc = 0;

	if (copy == NULL)
		return fx_err_set(err, "out of memory");
	for (char *c = copy + 1; *c != '\0'; c++) {
		if (*c != '/')
			continue;
		*c = '\0';
		if (mkdir(copy, 0777) != 0 && errno != EEXIST)
			rc = fx_err_set(err, "mkdir %s: %s", copy, strerror(errno));
		*c = '/';
		if (rc != 0)
			break;
	}
	if (rc == 0 && mkdir(copy, 0777) != 0 && errno != EEXIST)
		rc = fx_err_set(err, "mkdir %s: %s", copy, strerror(errno));
	if (rc == 0 && (stat(copy, &st) != 0 || !S_ISDIR(st.st_mode)))
		rc = fx_err_set(err, "%s: not a directory", copy);
	free(copy);
	return rc;
}

static int fx_write_file(const char *dir, const char *name, const char *data, size_t size,
			 struct fx_err *err)
{
	char *path = fx_join(dir, name);
	FILE *file;
	int rc = 0;

	if (path == NULL)
		return fx_err_set(err, "out of memory");
	file = fopen(path, "wb");
	if (file == NULL) {
		rc = fx_err_set(err, "%s: %s", path, strerror(errno));
	} else {
		if (fwrite(data, 1, size, file) != size)
			rc = fx_err_set(err, "%s: write failed", path);
		if (fclose(file) != 0 && rc == 0)
			rc = fx_err_set(err, "%s: write failed", path);
	}
	free(path);
	return rc;
}

/* A YAML single-quoted string. */
static void fx_put_yaml_str(FILE *file, const char *key, const char *value)
{
	fprintf(file, "%s: '", key);
	for (const char *c = value; *c != '\0'; c++) {
		if (*c == '\'')
			fputc('\'', file);
		fputc(*c, file);
	}
	fputs("'\n", file);
}

static int fx_write_opt_yaml(const struct fx_opts *opts, const char *save_dir, struct fx_err *err)
{
	char *path = fx_join(save_dir, "opt.yaml");
	FILE *file;
	int rc = 0;

	if (path == NULL)
		return fx_err_set(err, "out of memory");
	file = fopen(path, "w");
	if (file == NULL) {
		rc = fx_err_set(err, "%s: %s", path, strerror(errno));
		free(path);
		return rc;
	}
	fx_put_yaml_str(file, "weights", opts->weights);
	fx_put_yaml_str(file, "cfg", opts->cfg);
	fx_put_yaml_str(file, "data", opts->data);
	fx_put_yaml_str(file, "hyp", opts->hyp);
	fprintf(file, "epochs: %lld\nbatch_size: %lld\nimgsz: %lld\n", opts->epochs,
		opts->batch_size, opts->imgsz);
	fx_put_yaml_str(file, "device", opts->device);
	fx_put_yaml_str(file, "project", opts->project);
	fx_put_yaml_str(file, "name", opts->name);
	fprintf(file, "exist_ok: %s\nseed: %lld\n", opts->exist_ok ? "true" : "false", opts->seed);
	fx_put_yaml_str(file, "save_dir", save_dir);
	if (ferror(file))
		rc = fx_err_set(err, "%s: write failed", path);
	if (fclose(file) != 0 && rc == 0)
		rc = fx_err_set(err, "%s: write failed", path);
	free(path);
	return rc;
}

/* Empty a results.csv left by an earlier attempt (remove it if unwanted). */
static int fx_reset_results(const struct fx_run *run, struct fx_err *err)
{
	int rc;

	if (run->mode == FX_MODE_NORESULTS)
		rc = unlink(run->results_path);
	else
		rc = truncate(run->results_path, 0);
	if (rc != 0 && errno != ENOENT)
		return fx_err_set(err, "%s: %s", run->results_path, strerror(errno));
	return 0;
}

/* FIXTURE_LOG_BYTES bytes of 80-byte lines, the last one cut to fit. */
static int fx_write_log(long long bytes, struct fx_err *err)
{
	char chunk[FX_LOG_CHUNK + 1]; /* + 1 for snprintf's last NUL */

	for (size_t fill = 0; fill < FX_LOG_CHUNK; fill += FX_LOG_LINE)
		snprintf(chunk + fill, FX_LOG_LINE + 1, "%-79.79s\n",
			 FX_PROG ": log line, filler to exercise the evolver's pipe");
	while (bytes > 0) {
		size_t want = bytes > FX_LOG_CHUNK ? FX_LOG_CHUNK : (size_t)bytes;

		if (fwrite(chunk, 1, want, stdout) != want)
			return fx_err_set(err, "stdout: write failed");
		bytes -= (long long)want;
	}
	return fflush(stdout) == 0 ? 0 : fx_err_set(err, "stdout: write failed");
}

static void fx_sleep_ns(long long ns)
{
	struct timespec delay = {(time_t)(ns / 1000000000), (long)(ns % 1000000000)};

	if (ns > 0)
		nanosleep(&delay, NULL);
}

/* Per-epoch sleep: FIXTURE_DURATION_MS (random, not seeded by hyps) or FIXTURE_EPOCH_MS. */
static long long fx_epoch_ns(const struct fx_env *env, long long epochs)
{
	struct timespec now;
	struct fx_rng rng;
	double total_ms;

	if (!env->has_duration)
		return env->epoch_ms * 1000000;
	clock_gettime(CLOCK_REALTIME, &now);
	rng.state = ((uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec) ^
		    ((uint64_t)getpid() << 32);
	total_ms = env->duration_lo_ms +
		   fx_rng_uniform(&rng) * (env->duration_hi_ms - env->duration_lo_ms);
	return (long long)(total_ms * 1e6 / (double)epochs);
}

/* The 14 values of epoch's row, in fx_columns order. */
static void fx_row(const struct fx_run *run, long long epoch, double vals[FX_NCOLS])
{
	double epochs = (double)run->epochs;
	double p = 1.0 - exp(-3.0 * (double)(epoch + 1) / epochs);
	if (getenv("FIXTURE_CROSSING") != NULL) {
		/* learning speed grows with lr0; the last row is unchanged */
		double k = 3.0 * fmin(4.0, fmax(0.25, sqrt(run->hyp[FX_HYP_lr0] / 0.01)));
		p = (1.0 - exp(-k * (double)(epoch + 1) / epochs)) / (1.0 - exp(-k)) *
		    (1.0 - exp(-3.0));
	}
	double map50 = run->map50 * p;
	double lr = run->hyp[FX_HYP_lr0] * (1.0 - (double)epoch / epochs);

	vals[0] = (double)epoch;
	vals[1] = 0.1 * (1.0 - 0.5 * p);
	vals[2] = 0.03 * (1.0 - 0.3 * p);
	vals[3] = 0.02 * (1.0 - 0.6 * p);
	vals[4] = fmin(1.0, map50 * 1.1);
	vals[5] = fmin(1.0, map50 * 0.9 + 0.05);
	vals[6] = map50;
	vals[7] = run->map * p;
	vals[8] = vals[1] * 1.05;
	vals[9] = vals[2] * 1.05;
	vals[10] = vals[3] * 1.05;
	vals[11] = vals[12] = vals[13] = lr;
	if (run->mode == FX_MODE_NAN)
		for (int c = 1; c <= 10; c++)
			vals[c] = NAN;
}

/* "%20s" names joined by ",", newline-terminated, as YOLOv5 v7.0. */
static void fx_format_header(char *buf, size_t size)
{
	size_t used = 0;

	for (int c = 0; c < FX_NCOLS; c++)
		used += (size_t)snprintf(buf + used, size - used, "%s%20s", c ? "," : "",
					 fx_columns[c]);
	snprintf(buf + used, size - used, "\n");
}

/* "%20.5g" values joined by ",", newline-terminated. */
static void fx_format_row(const double vals[FX_NCOLS], char *buf, size_t size)
{
	size_t used = 0;

	for (int c = 0; c < FX_NCOLS; c++)
		used +=
		    (size_t)snprintf(buf + used, size - used, "%s%20.5g", c ? "," : "", vals[c]);
	snprintf(buf + used, size - used, "\n");
}

/* Append text to results.csv (opened on first use) and make it durable. */
static int fx_append(FILE **csv, const char *path, const char *text, struct fx_err *err)
{
	if (*csv == NULL)
		*csv = fopen(path, "a");
	if (*csv == NULL)
		return fx_err_set(err, "%s: %s", path, strerror(errno));
	if (fputs(text, *csv) == EOF || fflush(*csv) != 0 || fsync(fileno(*csv)) != 0)
		return fx_err_set(err, "%s: write failed", path);
	return 0;
}

/*
 * Run epochs 0 .. rows-1: sleep, then append the row (unless write_csv is 0)
 * and log it. *csv stays open for the caller to close.
 */
static int fx_train(const struct fx_run *run, long long rows, int write_csv, FILE **csv,
		    struct fx_err *err)
{
	char text[2 * FX_ROW_LEN];
	double vals[FX_NCOLS];

	for (long long epoch = 0; epoch < rows; epoch++) {
		size_t used = 0;

		fx_sleep_ns(run->epoch_ns);
		fx_row(run, epoch, vals);
		if (epoch == 0) {
			fx_format_header(text, sizeof text);
			used = strlen(text);
		}
		fx_format_row(vals, text + used, sizeof text - used);
		if (write_csv && fx_append(csv, run->results_path, text, err) != 0)
			return -1;
		printf("epoch %lld/%lld mAP50 %.5g mAP %.5g\n", epoch + 1, run->epochs, vals[6],
		       vals[7]);
		fflush(stdout);
	}
	return 0;
}

/* Bytes that are no CSV at all: no commas, no newlines. */
static int fx_write_garbage(const struct fx_run *run, FILE **csv, struct fx_err *err)
{
	char bytes[FX_GARBAGE_BYTES];
	struct fx_rng rng = {run->hash ^ 0x6761726261676521u};

	for (size_t i = 0; i < sizeof bytes; i++) {
		unsigned char byte = (unsigned char)(fx_rng_next(&rng) >> 56);

		bytes[i] = (char)(byte == ',' || byte == '\n' ? 0x7f : byte);
	}
	*csv = fopen(run->results_path, "wb");
	if (*csv == NULL)
		return fx_err_set(err, "%s: %s", run->results_path, strerror(errno));
	if (fwrite(bytes, 1, sizeof bytes, *csv) != sizeof bytes || fflush(*csv) != 0)
		return fx_err_set(err, "%s: write failed", run->results_path);
	return 0;
}

/* After one epoch: the header and the first half of row 0, no newline. */
static int fx_write_truncated(const struct fx_run *run, FILE **csv, struct fx_err *err)
{
	char header[FX_ROW_LEN], row[FX_ROW_LEN];
	double vals[FX_NCOLS];

	fx_sleep_ns(run->epoch_ns);
	fx_row(run, 0, vals);
	fx_format_header(header, sizeof header);
	fx_format_row(vals, row, sizeof row);
	row[strlen(row) / 2] = '\0';
	if (fx_append(csv, run->results_path, header, err) != 0)
		return -1;
	return fx_append(csv, run->results_path, row, err);
}

/* Die by SIGSEGV for real, without leaving a core file. */
static void fx_crash(void)
{
	struct rlimit no_core = {0, 0};
	sigset_t set;

	fflush(NULL);
	setrlimit(RLIMIT_CORE, &no_core);
	signal(SIGSEGV, SIG_DFL);
	sigemptyset(&set);
	sigaddset(&set, SIGSEGV);
	sigprocmask(SIG_UNBLOCK, &set, NULL);
	raise(SIGSEGV);
	abort();
}

/* Wait to be killed; SIGTERM keeps (or gets back) its default action. */
static void fx_hang(void)
{
	sigset_t set;

	fflush(NULL);
	signal(SIGTERM, SIG_DFL);
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigprocmask(SIG_UNBLOCK, &set, NULL);
	for (;;)
		pause();
}

/* Act out run->mode; returns the exit status. */
static int fx_act(const struct fx_run *run, const struct fx_env *env, struct fx_err *err)
{
	FILE *csv = NULL;
	int rc = 0, status = 0;

	switch (run->mode) {
	case FX_MODE_LOG:
		rc = fx_write_log(env->log_bytes, err);
		if (rc == 0)
			rc = fx_train(run, run->epochs, 1, &csv, err);
		break;
	case FX_MODE_OK:
	case FX_MODE_NAN:
		rc = fx_train(run, run->epochs, 1, &csv, err);
		break;
	case FX_MODE_FAIL:
	case FX_MODE_CRASH:
	case FX_MODE_HANG:
		rc = fx_train(run, env->fail_epochs < run->epochs ? env->fail_epochs : run->epochs,
			      1, &csv, err);
		break;
	case FX_MODE_GARBAGE:
		rc = fx_train(run, run->epochs, 0, &csv, err);
		if (rc == 0)
			rc = fx_write_garbage(run, &csv, err);
		break;
	case FX_MODE_NORESULTS:
		rc = fx_train(run, run->epochs, 0, &csv, err);
		break;
	case FX_MODE_TRUNCATED:
		rc = fx_write_truncated(run, &csv, err);
		break;
	}
	if (csv != NULL && fclose(csv) != 0 && rc == 0)
		rc = fx_err_set(err, "%s: write failed", run->results_path);
	if (rc != 0)
		return 1;
	if (run->mode == FX_MODE_CRASH)
		fx_crash();
	if (run->mode == FX_MODE_HANG)
		fx_hang();
	if (run->mode == FX_MODE_FAIL) {
		fprintf(stderr,
			FX_PROG ": error: simulated training failure (FIXTURE_MODE=fail)\n");
		status = 1;
	}
	return status;
}

/* Read and check the hyp file (kept in *text for the copy); fills run. */
static int fx_load(const struct fx_opts *opts, const struct fx_env *env, struct fx_run *run,
		   char **text, size_t *size, struct fx_err *err)
{
	char *parsed;
	int rc;

	*text = fx_slurp(opts->hyp, size, err);
	if (*text == NULL)
		return -1;
	parsed = strdup(*text);
	if (parsed == NULL)
		return fx_err_set(err, "out of memory");
	rc = fx_parse_hyp(parsed, opts->hyp, run->hyp, err);
	free(parsed);
	if (rc != 0)
		return -1;
	run->hash = fx_hash(run->hyp, opts->seed);
	fx_final_metrics(run, env->noise);
	run->epochs = opts->epochs;
	run->epoch_ns = fx_epoch_ns(env, run->epochs);
	return fx_effective_mode(env, run, &run->mode, err);
}

/* Create save_dir with hyp.yaml and opt.yaml; ready results.csv. */
static int fx_setup_dir(const struct fx_opts *opts, const char *save_dir, const struct fx_run *run,
			const char *hyp_text, size_t hyp_size, struct fx_err *err)
{
	if (fx_mkdir_p(save_dir, err) != 0 ||
	    fx_write_file(save_dir, "hyp.yaml", hyp_text, hyp_size, err) != 0 ||
	    fx_write_opt_yaml(opts, save_dir, err) != 0)
		return -1;
	return fx_reset_results(run, err);
}

int main(int argc, char **argv)
{
	struct fx_opts opts;
	struct fx_env env;
	struct fx_run run = {0};
	struct fx_err err = {{0}};
	char *save_dir = NULL, *hyp_text = NULL;
	size_t hyp_size = 0;
	int status = 2;

	if (fx_parse_args(argc, argv, &opts, &err) != 0 || fx_read_env(&env, &err) != 0)
		goto out;
	save_dir = opts.save_dir != NULL ? strdup(opts.save_dir) : fx_join(opts.project, opts.name);
	run.results_path = save_dir != NULL ? fx_join(save_dir, "results.csv") : NULL;
	if (run.results_path == NULL) {
		fx_err_set(&err, "out of memory");
		status = 1;
		goto out;
	}
	if (fx_load(&opts, &env, &run, &hyp_text, &hyp_size, &err) != 0)
		goto out;
	status = 1;
	if (fx_setup_dir(&opts, save_dir, &run, hyp_text, hyp_size, &err) != 0)
		goto out;
	status = fx_act(&run, &env, &err);
out:
	if (status != 0 && err.msg[0] != '\0')
		fprintf(stderr, FX_PROG ": %s\n", err.msg);
	free(hyp_text);
	free(save_dir);
	free(run.results_path);
	return status;
}
