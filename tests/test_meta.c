/*
 * test_meta.c - tests of meta/: the hyperparameter table, hyp.yaml reading
 * (every error names source:line and key), hyp.yaml writing byte for byte
 * as YOLOv5/PyYAML does, meta.yaml overrides, restriction and checks.
 *
 * Needs YE_SOURCE_ROOT (the repository root) to find data/hyps; the test
 * fails when it is unset.
 */
#include <limits.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "meta.h"

#define SOURCE "test.yaml"

/* YOLOv5 v7.0 hyp.scratch-low.yaml values, in table order (anchors 3). */
static const double scratch_low[META_COUNT] = {
    [META_lr0] = 0.01,
    [META_lrf] = 0.01,
    [META_momentum] = 0.937,
    [META_weight_decay] = 0.0005,
    [META_warmup_epochs] = 3.0,
    [META_warmup_momentum] = 0.8,
    [META_warmup_bias_lr] = 0.1,
    [META_box] = 0.05,
    [META_cls] = 0.5,
    [META_cls_pw] = 1.0,
    [META_obj] = 1.0,
    [META_obj_pw] = 1.0,
    [META_iou_t] = 0.20,
    [META_anchor_t] = 4.0,
    [META_fl_gamma] = 0.0,
    [META_hsv_h] = 0.015,
    [META_hsv_s] = 0.7,
    [META_hsv_v] = 0.4,
    [META_degrees] = 0.0,
    [META_translate] = 0.1,
    [META_scale] = 0.5,
    [META_shear] = 0.0,
    [META_perspective] = 0.0,
    [META_flipud] = 0.0,
    [META_fliplr] = 0.5,
    [META_mosaic] = 1.0,
    [META_mixup] = 0.0,
    [META_copy_paste] = 0.0,
    [META_anchors] = 3.0,
};

/*
 * What real YOLOv5 (PyYAML safe_dump, sort_keys=False) wrote after the
 * comment header of runs/evolve/exp/hyp_evolve.yaml for those values:
 * tests/golden/yolov5-outputs/hyp_evolve.yaml.
 */
static const char yolov5_hyp_low[] = "lr0: 0.01\n"
				     "lrf: 0.01\n"
				     "momentum: 0.937\n"
				     "weight_decay: 0.0005\n"
				     "warmup_epochs: 3.0\n"
				     "warmup_momentum: 0.8\n"
				     "warmup_bias_lr: 0.1\n"
				     "box: 0.05\n"
				     "cls: 0.5\n"
				     "cls_pw: 1.0\n"
				     "obj: 1.0\n"
				     "obj_pw: 1.0\n"
				     "iou_t: 0.2\n"
				     "anchor_t: 4.0\n"
				     "fl_gamma: 0.0\n"
				     "hsv_h: 0.015\n"
				     "hsv_s: 0.7\n"
				     "hsv_v: 0.4\n"
				     "degrees: 0.0\n"
				     "translate: 0.1\n"
				     "scale: 0.5\n"
				     "shear: 0.0\n"
				     "perspective: 0.0\n"
				     "flipud: 0.0\n"
				     "fliplr: 0.5\n"
				     "mosaic: 1.0\n"
				     "mixup: 0.0\n"
				     "copy_paste: 0.0\n"
				     "anchors: 3.0\n";

/* ---- helpers ---------------------------------------------------------- */

/* splitmix64: a reproducible generator with its state passed explicitly. */
struct rng {
	uint64_t state;
};

static double rng_uniform(struct rng *rng)
{
	uint64_t z = (rng->state += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	z ^= z >> 31;
	return (double)(z >> 11) * 0x1.0p-53;
}

static struct meta_hyp hyp_low(void)
{
	struct meta_hyp hyp;
	memcpy(hyp.v, scratch_low, sizeof(scratch_low));
	for (int k = META_COUNT; k < META_ALL; k++)
		hyp.v[k] = NAN;
	return hyp;
}

/* Text of meta_hyp_write, malloc'ed. */
static char *hyp_text(const struct meta_hyp *hyp, const char *header)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	assert_non_null(f);
	assert_int_equal(meta_hyp_write(f, hyp, header), 0);
	assert_int_equal(fclose(f), 0);
	return text;
}

static char *table_text(const struct meta_table *table)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	assert_non_null(f);
	assert_int_equal(meta_table_write(f, table), 0);
	assert_int_equal(fclose(f), 0);
	return text;
}

static int starts_with(const char *text, const char *prefix)
{
	return strncmp(text, prefix, strlen(prefix)) == 0;
}

/*
 * The error must be "test.yaml:LINE: ..." (line 0: "test.yaml: ..."), name
 * 'key' (when not NULL) and contain reason (when not NULL).
 */
static void expect_error(int rc, const struct ut_err *err, int line, const char *key,
			 const char *reason)
{
	char prefix[64], quoted[80];
	if (line > 0)
		snprintf(prefix, sizeof(prefix), SOURCE ":%d: ", line);
	else
		snprintf(prefix, sizeof(prefix), SOURCE ": ");
	snprintf(quoted, sizeof(quoted), "'%s'", key != NULL ? key : "");
	int ok = rc == -1 && strncmp(err->msg, prefix, strlen(prefix)) == 0 &&
		 (key == NULL || strstr(err->msg, quoted) != NULL) &&
		 (reason == NULL || strstr(err->msg, reason) != NULL) &&
		 strchr(err->msg, '\n') == NULL;
	if (!ok)
		fail_msg("rc %d, message \"%s\"; wanted \"%s\" with %s and \"%s\"", rc, err->msg,
			 prefix, quoted, reason != NULL ? reason : "");
}

/* Full path of a file of the source tree; fails when YE_SOURCE_ROOT is unset. */
static void source_path(const char *relative, char *buf, size_t size)
{
	const char *root = getenv("YE_SOURCE_ROOT");
	if (root == NULL || *root == '\0')
		fail_msg("YE_SOURCE_ROOT is not set (the repository root)");
	assert_true(snprintf(buf, size, "%s/%s", root, relative) < (int)size);
}

/*
 * A hyp.yaml of the scratch-low values, one key per line in table order
 * (key k on line k + 1), with line `replace` (1-based, 0: none) swapped for
 * `line` (NULL: dropped). Returned malloc'ed.
 */
static char *hyp_text_with(int replace, const char *line)
{
	struct meta_hyp hyp = hyp_low();
	char *text = hyp_text(&hyp, NULL);
	struct ut_buf out = {0};
	int number = 1;
	for (char *start = text; *start != '\0'; number++) {
		char *end = strchr(start, '\n') + 1;
		if (number != replace)
			assert_int_equal(ut_buf_append(&out, start, (size_t)(end - start)), 0);
		else
			assert_int_equal(ut_buf_printf(&out, "%s\n", line != NULL ? line : "#"), 0);
		start = end;
	}
	free(text);
	return out.data;
}

/* ---- the table -------------------------------------------------------- */

/* The Ultralytics space: the Tuner's 26 keys (8.4.x) in its order, default.yaml's values. */
static void ultralytics_space(void **state)
{
	(void)state;
	static const char *const tuner_keys[] = {"lr0",		 "lrf",		  "momentum",
						 "weight_decay", "warmup_epochs", "warmup_momentum",
						 "box",		 "cls",		  "cls_pw",
						 "dfl",		 "hsv_h",	  "hsv_s",
						 "hsv_v",	 "degrees",	  "translate",
						 "scale",	 "shear",	  "perspective",
						 "flipud",	 "fliplr",	  "bgr",
						 "mosaic",	 "mixup",	  "cutmix",
						 "copy_paste",	 "close_mosaic"};
	const int *keys;
	int count = meta_space_keys(META_SPACE_ULTRALYTICS, &keys);
	assert_int_equal(count, 26);
	for (int i = 0; i < count; i++)
		assert_string_equal(meta_name(keys[i]), tuner_keys[i]);
	assert_int_equal(meta_space_keys(META_SPACE_YOLOV5, &keys), META_COUNT);
	assert_int_equal(meta_space_find(META_SPACE_ULTRALYTICS, "obj"), -1);
	assert_int_equal(meta_space_find(META_SPACE_YOLOV5, "dfl"), -1);
	assert_int_equal(meta_space_find(META_SPACE_ULTRALYTICS, "dfl"), META_dfl);
	enum meta_space space;
	assert_int_equal(meta_space_parse("ultralytics", &space), 0);
	assert_int_equal(space, META_SPACE_ULTRALYTICS);
	assert_int_equal(meta_space_parse("yolov8", &space), -1);

	struct meta_table table;
	meta_table_default_space(&table, META_SPACE_ULTRALYTICS);
	assert_true(table.k[META_lr0].lower == 1e-5 && table.k[META_lr0].upper == 1e-2);
	assert_true(table.k[META_momentum].gain == 0.3 && table.k[META_momentum].lower == 0.7);
	assert_true(table.k[META_box].lower == 1.0 && table.k[META_box].upper == 20.0);
	assert_true(table.k[META_dfl].lower == 0.4 && table.k[META_dfl].upper == 12.0);
	assert_true(table.k[META_close_mosaic].upper == 10.0);
	assert_true(table.k[META_obj].gain == 0 && table.k[META_anchors].gain == 0);

	struct meta_hyp base;
	meta_hyp_ultralytics_base(&base);
	assert_int_equal(meta_hyp_space(&base), META_SPACE_ULTRALYTICS);
	assert_true(base.v[META_lr0] == 0.01 && base.v[META_box] == 7.5 && base.v[META_dfl] == 1.5);
	assert_true(base.v[META_close_mosaic] == 10 && isnan(base.v[META_obj]));
	struct ut_err err = {{0}};
	assert_int_equal(meta_hyp_check(&base, &table, SOURCE, &err), 0);

	/* written in the Tuner's order, close_mosaic an integer; read back equal */
	char *text = hyp_text(&base, "# base\n");
	assert_non_null(strstr(text, "# base\nlr0: 0.01\nlrf: 0.01\nmomentum: 0.937\n"));
	assert_non_null(strstr(text, "\ncopy_paste: 0.0\nclose_mosaic: 10\n"));
	assert_null(strstr(text, "obj"));
	struct meta_hyp back;
	assert_int_equal(meta_hyp_parse(text, strlen(text), SOURCE, &table, &back, &err), 0);
	for (int k = 0; k < META_ALL; k++)
		assert_true(back.v[k] == base.v[k] || (isnan(back.v[k]) && isnan(base.v[k])));
	free(text);

	/* a key left out takes its base value; a YOLOv5-only key is unknown here */
	const char *some = "lr0: 0.005\ndfl: 3\n";
	assert_int_equal(meta_hyp_parse(some, strlen(some), SOURCE, &table, &back, &err), 0);
	assert_true(back.v[META_lr0] == 0.005 && back.v[META_dfl] == 3 && back.v[META_box] == 7.5);
	const char *v5 = "lr0: 0.005\nobj: 1.0\n";
	assert_int_equal(meta_hyp_parse(v5, strlen(v5), SOURCE, &table, &back, &err), -1);
	assert_non_null(strstr(err.msg, "'obj': unknown key"));
	const char *high = "box: 0.05\n";
	assert_int_equal(meta_hyp_parse(high, strlen(high), SOURCE, &table, &back, &err), -1);
	assert_non_null(strstr(err.msg, "'box'"));

	/* the shipped base hyp is the same */
	char path[PATH_MAX];
	assert_int_equal(ut_data_file("data/ultralytics/hyp.ultralytics.yaml", path, sizeof(path)),
			 0);
	assert_int_equal(meta_hyp_read(path, &table, &back, &err), 0);
	for (int k = 0; k < META_ALL; k++)
		assert_true(back.v[k] == base.v[k] || (isnan(back.v[k]) && isnan(base.v[k])));
	/* and YOLOv5's table does not know dfl */
	struct meta_table v5_table;
	meta_table_default(&v5_table);
	assert_int_equal(meta_hyp_read(path, &v5_table, &back, &err), -1);
	assert_int_equal(meta_table_restrict(&table, "lr0, dfl", &err), 0);
	assert_true(table.k[META_box].gain == 0 && table.k[META_dfl].gain == 1);
	assert_int_equal(meta_table_restrict(&table, "obj", &err), -1);
}

static void table_rows(void **state)
{
	(void)state;
	struct meta_table table;
	meta_table_default(&table);
	assert_int_equal(META_COUNT, 29);
	assert_string_equal(meta_name(0), "lr0");
	assert_string_equal(meta_name(META_COUNT - 1), "anchors");
	assert_string_equal(meta_name(META_COUNT), "dfl"); /* Ultralytics' keys follow */
	assert_string_equal(meta_name(META_ALL - 1), "close_mosaic");
	assert_null(meta_name(META_ALL));
	assert_null(meta_name(-1));
	assert_non_null(strstr(meta_doc(META_lr0), "learning rate"));
	assert_int_equal(meta_find("momentum"), META_momentum);
	assert_int_equal(meta_find("copy_paste"), META_copy_paste);
	assert_int_equal(meta_find("lr"), -1);
	assert_int_equal(meta_find(NULL), -1);

	const struct meta_bound *lr0 = &table.k[META_lr0];
	assert_true(lr0->gain == 1.0 && lr0->lower == 1e-5 && lr0->upper == 0.1);
	assert_true(table.k[META_momentum].gain == 0.3);
	assert_true(table.k[META_momentum].lower == 0.6 && table.k[META_momentum].upper == 0.98);
	const struct meta_bound *anchors = &table.k[META_anchors];
	assert_true(anchors->gain == 2.0 && anchors->lower == 2.0 && anchors->upper == 10.0);
	assert_true(table.k[META_iou_t].gain == 0.0);
	assert_true(table.k[META_fl_gamma].gain == 0.0);
	assert_true(table.k[META_perspective].gain == 0.0);
	assert_true(table.k[META_perspective].upper == 0.001);
	assert_true(table.k[META_fliplr].gain == 0.0);
	assert_true(table.k[META_shear].upper == 10.0);
	for (int k = 0; k < META_COUNT; k++) {
		assert_int_equal(meta_find(meta_name(k)), k);
		assert_true(table.k[k].lower <= table.k[k].upper);
	}
}

/* ---- hyp.yaml reading -------------------------------------------------- */

struct hyp_file {
	const char *path;
	double lrf, cls, obj, scale, mixup, copy_paste;
};

static void read_data_hyps(void **state)
{
	(void)state;
	static const struct hyp_file files[] = {
	    {"data/hyps/hyp.scratch-low.yaml", 0.01, 0.5, 1.0, 0.5, 0.0, 0.0},
	    {"data/hyps/hyp.scratch-med.yaml", 0.1, 0.3, 0.7, 0.9, 0.1, 0.0},
	    {"data/hyps/hyp.scratch-high.yaml", 0.1, 0.3, 0.7, 0.9, 0.1, 0.1},
	};
	for (size_t i = 0; i < UT_ARRAY_LEN(files); i++) {
		char path[4096];
		struct ut_err err = {{0}};
		struct meta_hyp hyp, want = hyp_low();
		want.v[META_lrf] = files[i].lrf;
		want.v[META_cls] = files[i].cls;
		want.v[META_obj] = files[i].obj;
		want.v[META_scale] = files[i].scale;
		want.v[META_mixup] = files[i].mixup;
		want.v[META_copy_paste] = files[i].copy_paste;
		source_path(files[i].path, path, sizeof(path));
		if (meta_hyp_read(path, NULL, &hyp, &err) != 0)
			fail_msg("%s", err.msg);
		for (int k = 0; k < META_COUNT; k++)
			if (hyp.v[k] != want.v[k])
				fail_msg("%s: %s = %.17g, want %.17g", files[i].path, meta_name(k),
					 hyp.v[k], want.v[k]);
	}
}

static void parse_number_forms(void **state)
{
	(void)state;
	struct meta_table table;
	struct ut_err err = {{0}};
	struct meta_hyp hyp;
	meta_table_default(&table);
	char *text = hyp_text_with(META_anchors + 1, NULL);
	assert_int_equal(meta_hyp_parse(text, strlen(text), SOURCE, &table, &hyp, &err), 0);
	assert_true(hyp.v[META_anchors] == 3.0);
	free(text);

	static const struct {
		int key;
		const char *line;
		double want;
	} forms[] = {
	    {META_lr0, "lr0: 1e-5", 1e-5},
	    {META_lr0, "lr0: 1.0e-05", 1e-5},
	    {META_lr0, "lr0: 1E-2", 0.01},
	    {META_lr0, "lr0: .05  # comment", 0.05},
	    {META_lr0, "lr0: !!float 0.02", 0.02},
	    {META_lr0, "'lr0': 0.03", 0.03},
	    {META_warmup_epochs, "warmup_epochs: 3", 3.0},
	    {META_warmup_epochs, "warmup_epochs: +2.", 2.0},
	    {META_iou_t, "iou_t: 0.20", 0.2},
	    {META_weight_decay, "weight_decay: 0", 0.0},
	    {META_anchors, "anchors: 4", 4.0},
	    {META_anchors, "anchors: 10", 10.0},
	    {META_momentum, "momentum: 0.6", 0.6},
	};
	for (size_t i = 0; i < UT_ARRAY_LEN(forms); i++) {
		text = hyp_text_with(forms[i].key + 1, forms[i].line);
		if (meta_hyp_parse(text, strlen(text), SOURCE, &table, &hyp, &err) != 0)
			fail_msg("\"%s\": %s", forms[i].line, err.msg);
		assert_true(hyp.v[forms[i].key] == forms[i].want);
		free(text);
	}

	static const char flow[] =
	    "{lr0: 0.01, lrf: 0.01, momentum: 0.937, weight_decay: 0.0005, warmup_epochs: 3,"
	    " warmup_momentum: 0.8, warmup_bias_lr: 0.1, box: 0.05, cls: 0.5, cls_pw: 1,"
	    " obj: 1, obj_pw: 1, iou_t: 0.2, anchor_t: 4, fl_gamma: 0, hsv_h: 0.015,"
	    " hsv_s: 0.7, hsv_v: 0.4, degrees: 0, translate: 0.1, scale: 0.5, shear: 0,"
	    " perspective: 0, flipud: 0, fliplr: 0.5, mosaic: 1, mixup: 0, copy_paste: 0}\n";
	assert_int_equal(meta_hyp_parse(flow, strlen(flow), SOURCE, &table, &hyp, &err), 0);
	assert_memory_equal(hyp.v, scratch_low, sizeof(scratch_low));
}

/* A bad line in place of line `at` of the scratch-low text. */
struct bad_line {
	int at;
	const char *line;
	const char *key;
	int want_line;
	const char *reason;
};

static void parse_bad_lines(void **state)
{
	(void)state;
	static const struct bad_line cases[] = {
	    {8, "boxx: 0.05", "boxx", 8, "unknown key"},
	    {9, "lr0: 0.02", "lr0", 9, "duplicate key (first on line 1)"},
	    {29, "cls: 0.5", "cls", 29, "duplicate"},
	    {9, NULL, "cls", 0, "missing key"},
	    {1, NULL, "lr0", 0, "missing key"},
	    {1, "lr0: abc", "lr0", 1, "not a number"},
	    {1, "lr0: '0.01'", "lr0", 1, "not a number"},
	    {2, "lrf: \"0.01\"", "lrf", 2, "not a number"},
	    {2, "lrf: !!str 0.01", "lrf", 2, "not a number"},
	    {3, "momentum: [0.9]", "momentum", 3, "list"},
	    {3, "momentum: {a: 1}", "momentum", 3, "mapping"},
	    {4, "weight_decay:", "weight_decay", 4, "no value"},
	    {4, "weight_decay: null", "weight_decay", 4, "not a number"},
	    {4, "weight_decay: ~", "weight_decay", 4, "not a number"},
	    {5, "warmup_epochs: true", "warmup_epochs", 5, "not a number"},
	    {5, "warmup_epochs: 0x3", "warmup_epochs", 5, "not a number"},
	    {5, "warmup_epochs: 3.0.1", "warmup_epochs", 5, "not a number"},
	    {5, "warmup_epochs: 1e", "warmup_epochs", 5, "not a number"},
	    {5, "warmup_epochs: 1_0", "warmup_epochs", 5, "not a number"},
	    {5, "warmup_epochs: 3 epochs", "warmup_epochs", 5, "not a number"},
	    {6, "warmup_momentum: .nan", "warmup_momentum", 6, "NaN or infinite"},
	    {6, "warmup_momentum: .NaN", "warmup_momentum", 6, "NaN or infinite"},
	    {6, "warmup_momentum: nan", "warmup_momentum", 6, "NaN or infinite"},
	    {7, "warmup_bias_lr: .inf", "warmup_bias_lr", 7, "NaN or infinite"},
	    {7, "warmup_bias_lr: -.inf", "warmup_bias_lr", 7, "NaN or infinite"},
	    {7, "warmup_bias_lr: inf", "warmup_bias_lr", 7, "NaN or infinite"},
	    {7, "warmup_bias_lr: -Infinity", "warmup_bias_lr", 7, "NaN or infinite"},
	    {7, "warmup_bias_lr: 1e999", "warmup_bias_lr", 7, "NaN or infinite"},
	    {1, "lr0: 0.2", "lr0", 1, "value 0.2 outside [1e-05, 0.1]"},
	    {1, "lr0: 0", "lr0", 1, "outside"},
	    {3, "momentum: 0.5", "momentum", 3, "value 0.5 outside [0.6, 0.98]"},
	    {29, "anchors: 1", "anchors", 29, "outside [2.0, 10.0]"},
	    {23, "perspective: -0.0001", "perspective", 23, "outside"},
	    {10, "cls_pw:\n  9.0", "cls_pw", 11, "value 9.0 outside [0.5, 2.0]"},
	};
	struct meta_table table;
	meta_table_default(&table);
	for (size_t i = 0; i < UT_ARRAY_LEN(cases); i++) {
		struct ut_err err = {{0}};
		struct meta_hyp hyp, before;
		char *text = hyp_text_with(cases[i].at, cases[i].line);
		memset(&hyp, 0x5a, sizeof(hyp));
		before = hyp;
		int rc = meta_hyp_parse(text, strlen(text), SOURCE, &table, &hyp, &err);
		expect_error(rc, &err, cases[i].want_line, cases[i].key, cases[i].reason);
		assert_memory_equal(&hyp, &before, sizeof(hyp));
		free(text);
	}
}

/* A whole bad text: line 0 means the message has no line. */
struct bad_text {
	const char *text;
	int want_line;
	const char *key;
	const char *reason;
};

static void parse_bad_texts(void **state)
{
	(void)state;
	static const struct bad_text cases[] = {
	    {"", 0, NULL, "empty document"},
	    {"# just a comment\n\n", 0, NULL, "empty document"},
	    {"- lr0\n- lrf\n", 1, NULL, "not a mapping"},
	    {"\n\n0.01\n", 3, NULL, "not a mapping"},
	    {"---\n", 0, NULL, "empty document"},
	    {"--- ~\n", 1, NULL, "not a mapping"},
	    {"--- null\n", 1, NULL, "not a mapping"},
	    {"lr0: 0.01\nlrf: 0.01\n  momentum: 0.937\n", 3, NULL, "syntax error"},
	    {"lr0: 0.01\nlrf: [0.01\nmomentum: 0.937\n", 3, NULL, "flow sequence on line 2"},
	    {"lr0: 0.01\n\tlrf: 0.01\n", 2, NULL, "syntax error"},
	    {"lr0: 0.01\nlrf: 0.01\nmomentum: \xff\n", 3, NULL, "syntax error"},
	    {"lr0: 0.01\n---\nlrf: 0.01\n", 2, NULL, "more than one"},
	    {"lr0: 0.01\n[a]: 1\n", 2, NULL, "key"},
	    {"lr0: 0.01\n\"lr0\\0x\": 1\n", 2, NULL, "unknown key"},
	    {"lr0: &x 0.01\nlrf: *x\n", 2, "lrf", "alias"},
	    {"&k lr0: 0.01\n*k : 0.02\n", 2, NULL, "a key must be a plain name"},
	};
	struct meta_table table;
	meta_table_default(&table);
	for (size_t i = 0; i < UT_ARRAY_LEN(cases); i++) {
		struct ut_err err = {{0}};
		struct meta_hyp hyp;
		size_t len = strlen(cases[i].text);
		int rc = meta_hyp_parse(cases[i].text, len, SOURCE, &table, &hyp, &err);
		expect_error(rc, &err, cases[i].want_line, cases[i].key, cases[i].reason);
	}
	struct ut_err err = {{0}};
	struct meta_hyp hyp;
	assert_int_equal(meta_hyp_read("/nonexistent/hyp.yaml", NULL, &hyp, &err), -1);
	assert_non_null(strstr(err.msg, "/nonexistent/hyp.yaml"));
}

/* ---- hyp.yaml writing ------------------------------------------------- */

static void write_matches_yolov5(void **state)
{
	(void)state;
	struct meta_hyp hyp = hyp_low();
	char *text = hyp_text(&hyp, NULL);
	assert_string_equal(text, yolov5_hyp_low);
	free(text);

	static const char header[] = "# YOLOv5 Hyperparameter Evolution Results\n\n";
	text = hyp_text(&hyp, header);
	assert_memory_equal(text, header, strlen(header));
	assert_string_equal(text + strlen(header), yolov5_hyp_low);
	free(text);

	/* PyYAML: 1e-05 -> "1.0e-05", 0.00012345 -> "0.00012345", 2 -> "2.0" */
	hyp.v[META_lr0] = 1e-5;
	hyp.v[META_weight_decay] = 0.00012345;
	hyp.v[META_anchors] = 2;
	text = hyp_text(&hyp, NULL);
	assert_non_null(strstr(text, "\nweight_decay: 0.00012345\n"));
	assert_true(starts_with(text, "lr0: 1.0e-05\n"));
	assert_non_null(strstr(text, "\nanchors: 2.0\n"));
	free(text);
}

/* A random hyp inside the bounds; some values rounded as YOLOv5 rounds them. */
static void random_hyp(struct rng *rng, const struct meta_table *table, struct meta_hyp *hyp)
{
	for (int k = 0; k < META_COUNT; k++) {
		const struct meta_bound *b = &table->k[k];
		double pick = rng_uniform(rng), value = b->lower + pick * (b->upper - b->lower);
		if (pick < 0.05)
			value = b->lower;
		else if (pick > 0.95)
			value = b->upper;
		else if (pick < 0.4)
			value = fmin(fmax(ut_round5(value), b->lower), b->upper);
		hyp->v[k] = value;
	}
}

static void write_parse_round_trip(void **state)
{
	(void)state;
	struct meta_table table;
	struct rng rng = {12345};
	meta_table_default(&table);
	for (int i = 0; i < 2000; i++) {
		struct ut_err err = {{0}};
		struct meta_hyp hyp, back;
		random_hyp(&rng, &table, &hyp);
		char *text = hyp_text(&hyp, i % 2 ? "# header\n\n" : NULL);
		if (meta_hyp_parse(text, strlen(text), SOURCE, &table, &back, &err) != 0)
			fail_msg("%s\n%s", err.msg, text);
		for (int k = 0; k < META_COUNT; k++)
			if (memcmp(&hyp.v[k], &back.v[k], sizeof(double)) != 0)
				fail_msg("%s: %.17g written, %.17g read", meta_name(k), hyp.v[k],
					 back.v[k]);
		free(text);
	}
}

static void save_and_read(void **state)
{
	(void)state;
	char dir[] = "/tmp/test_meta.XXXXXX", path[64];
	struct ut_err err = {{0}};
	struct meta_hyp hyp = hyp_low(), back;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/hyp.yaml", dir);
	hyp.v[META_lr0] = 0.0123456789;
	if (meta_hyp_save(path, &hyp, "# saved\n", &err) != 0)
		fail_msg("%s", err.msg);
	if (meta_hyp_read(path, NULL, &back, &err) != 0)
		fail_msg("%s", err.msg);
	assert_memory_equal(&hyp, &back, sizeof(hyp));
	assert_int_equal(unlink(path), 0);
	assert_int_equal(rmdir(dir), 0);
	snprintf(path, sizeof(path), "%s/hyp.yaml", dir);
	assert_int_equal(meta_hyp_save(path, &hyp, NULL, &err), -1);
	assert_non_null(strstr(err.msg, path));
}

/* ---- meta.yaml -------------------------------------------------------- */

static void table_overrides(void **state)
{
	(void)state;
	static const char text[] = "# user meta\n"
				   "lr0: [0.5, 1e-4, 0.05]\n"
				   "momentum: {gain: 0.1}\n"
				   "anchors:\n"
				   "  lower: 3\n"
				   "  upper: 5\n"
				   "scale:\n"
				   "  - 1\n"
				   "  - 0\n"
				   "  - 0.5\n"
				   "iou_t: {}\n";
	struct meta_table table, want;
	struct ut_err err = {{0}};
	meta_table_default(&table);
	meta_table_default(&want);
	want.k[META_lr0] = (struct meta_bound){0.5, 1e-4, 0.05};
	want.k[META_momentum].gain = 0.1;
	want.k[META_anchors].lower = 3;
	want.k[META_anchors].upper = 5;
	want.k[META_scale] = (struct meta_bound){1, 0, 0.5};
	if (meta_table_parse(text, strlen(text), SOURCE, &table, &err) != 0)
		fail_msg("%s", err.msg);
	assert_memory_equal(&table, &want, sizeof(table));

	/* overrides apply on top of the caller's table; empty text changes nothing */
	assert_int_equal(meta_table_parse("# nothing\n", 10, SOURCE, &table, &err), 0);
	assert_int_equal(meta_table_parse("", 0, SOURCE, &table, &err), 0);
	assert_memory_equal(&table, &want, sizeof(table));

	/* the new bounds apply when reading a hyp: anchors 6 is now outside */
	struct meta_hyp hyp;
	char *hyp_yaml = hyp_text_with(META_anchors + 1, "anchors: 6");
	expect_error(meta_hyp_parse(hyp_yaml, strlen(hyp_yaml), SOURCE, &table, &hyp, &err), &err,
		     META_anchors + 1, "anchors", "outside [3.0, 5.0]");
	free(hyp_yaml);
}

static void table_bad_inputs(void **state)
{
	(void)state;
	static const struct bad_text cases[] = {
	    {"lr0: [1, 0, 0.1]\nlr1: [1, 0, 0.1]\n", 2, "lr1", "unknown key"},
	    {"lr0: {gian: 1}\n", 1, "lr0", "unknown field 'gian'"},
	    {"lr0:\n  gain: 1\n  gain: 2\n", 3, "lr0", "duplicate field 'gain'"},
	    {"lr0: [1, 0]\n", 1, "lr0", "3 numbers [gain, lower, upper], got 2"},
	    {"lr0: [1, 0, 0.1, 4]\n", 1, "lr0", "3 numbers"},
	    {"lr0: []\n", 1, "lr0", "got 0"},
	    {"\nlr0: [a, 0, 0.1]\n", 2, "lr0", "gain: not a number"},
	    {"lr0:\n  - 1\n  - 0\n  - '0.1'\n", 4, "lr0", "upper: not a number"},
	    {"lr0: {lower: x}\n", 1, "lr0", "lower: not a number"},
	    {"lr0: {upper: [1]}\n", 1, "lr0", "upper: not a number but a list"},
	    {"lr0: {upper: }\n", 1, "lr0", "upper: no value"},
	    {"lr0: 1\n", 1, "lr0", "expected [gain, lower, upper]"},
	    {"lr0:\n", 1, "lr0", "expected [gain, lower, upper]"},
	    {"lr0: [.nan, 0, 1]\n", 1, "lr0", "NaN or infinite"},
	    {"lr0: {upper: .inf}\n", 1, "lr0", "NaN or infinite"},
	    {"lr0: [1, -1e999, 1]\n", 1, "lr0", "NaN or infinite"},
	    {"lr0: [-1, 0, 0.1]\n", 1, "lr0", "negative gain"},
	    {"box: {gain: -0.5}\n", 1, "box", "negative gain"},
	    {"lr0: [1, 0.5, 0.1]\n", 1, "lr0", "lower > upper"},
	    {"momentum: [1, 0.5, 0.7]\nlr0:\n  lower: 0.5\n", 3, "lr0", "lower > upper"},
	    {"lr0: [1, 0, 0.1]\nlrf: [1, 0, 1]\nlr0: {gain: 2}\n", 3, "lr0",
	     "duplicate key (first on line 1)"},
	    {"- [1, 0, 1]\n", 1, NULL, "not a mapping"},
	    {"lr0: [1, 0, 0.1\n", 2, NULL, "syntax error"},
	    {"lr0: [1, 0, 0.1]\n---\nlrf: [1, 0, 1]\n", 2, NULL, "more than one"},
	};
	for (size_t i = 0; i < UT_ARRAY_LEN(cases); i++) {
		struct ut_err err = {{0}};
		struct meta_table table, before;
		meta_table_default(&table);
		before = table;
		int rc =
		    meta_table_parse(cases[i].text, strlen(cases[i].text), SOURCE, &table, &err);
		expect_error(rc, &err, cases[i].want_line, cases[i].key, cases[i].reason);
		assert_memory_equal(&table, &before, sizeof(table));
	}
	struct ut_err err = {{0}};
	struct meta_table table;
	assert_int_equal(meta_table_read("/nonexistent/meta.yaml", &table, &err), -1);
	assert_non_null(strstr(err.msg, "/nonexistent/meta.yaml"));
}

static void table_write_round_trip(void **state)
{
	(void)state;
	struct meta_table table, back;
	struct ut_err err = {{0}};
	struct rng rng = {99};
	meta_table_default(&table);
	char *text = table_text(&table);
	assert_true(starts_with(text, "lr0: [1.0, 1.0e-05, 0.1]\nlrf: [1.0, 0.01, 1.0]\n"));
	assert_non_null(strstr(text, "\nanchors: [2.0, 2.0, 10.0]\n"));
	free(text);
	for (int i = 0; i < 500; i++) {
		for (int k = 0; k < META_COUNT; k++) {
			double scale = pow(10.0, floor(rng_uniform(&rng) * 20) - 10);
			double lower = (rng_uniform(&rng) - 0.5) * scale;
			table.k[k].gain = rng_uniform(&rng) * 3;
			table.k[k].lower = lower;
			table.k[k].upper = lower + rng_uniform(&rng) * scale;
		}
		text = table_text(&table);
		meta_table_default(&back);
		if (meta_table_parse(text, strlen(text), SOURCE, &back, &err) != 0)
			fail_msg("%s\n%s", err.msg, text);
		assert_memory_equal(&table, &back, sizeof(table));
		free(text);
	}
}

/* ---- restriction and checks ------------------------------------------- */

static void restrict_keys(void **state)
{
	(void)state;
	struct meta_table table, defaults;
	struct ut_err err = {{0}};
	meta_table_default(&defaults);
	table = defaults;
	if (meta_table_restrict(&table, " lr0, momentum ,anchors", &err) != 0)
		fail_msg("%s", err.msg);
	for (int k = 0; k < META_COUNT; k++) {
		int kept = k == META_lr0 || k == META_momentum || k == META_anchors;
		assert_true(table.k[k].gain == (kept ? defaults.k[k].gain : 0.0));
		assert_true(table.k[k].lower == defaults.k[k].lower);
		assert_true(table.k[k].upper == defaults.k[k].upper);
	}
	assert_true(table.k[META_momentum].gain == 0.3);

	static const struct {
		const char *keys, *reason;
	} bad[] = {
	    {"lr0,bogus", "unknown key 'bogus'"},
	    {"lr0, lr 0", "unknown key 'lr 0'"},
	    {"lr0,bo\ngus", "unknown key 'bo\\ngus'"},
	    {"lr0,,momentum", "empty key name"},
	    {"lr0,", "empty key name"},
	    {"", "no keys"},
	    {"  ", "no keys"},
	    {NULL, "no keys"},
	};
	for (size_t i = 0; i < UT_ARRAY_LEN(bad); i++) {
		table = defaults;
		assert_int_equal(meta_table_restrict(&table, bad[i].keys, &err), -1);
		if (strstr(err.msg, bad[i].reason) == NULL)
			fail_msg("\"%s\": %s", bad[i].keys ? bad[i].keys : "NULL", err.msg);
		assert_memory_equal(&table, &defaults, sizeof(table));
	}
}

static void check_bounds(void **state)
{
	(void)state;
	struct meta_table table;
	struct ut_err err = {{0}};
	struct meta_hyp hyp = hyp_low();
	meta_table_default(&table);
	assert_int_equal(meta_hyp_check(&hyp, &table, "gen 3", &err), 0);

	hyp.v[META_momentum] = 0.5;
	hyp.v[META_mixup] = 2.0;
	assert_int_equal(meta_hyp_check(&hyp, &table, "gen 3", &err), -1);
	assert_string_equal(err.msg, "gen 3: key 'momentum': value 0.5 outside [0.6, 0.98]");

	hyp = hyp_low();
	hyp.v[META_lr0] = NAN;
	assert_int_equal(meta_hyp_check(&hyp, &table, "gen 3", &err), -1);
	assert_string_equal(err.msg, "gen 3: key 'lr0': value nan outside [1e-05, 0.1]");

	hyp = hyp_low();
	hyp.v[META_anchors] = INFINITY;
	assert_int_equal(meta_hyp_check(&hyp, &table, "x", &err), -1);
	assert_non_null(strstr(err.msg, "'anchors'"));

	hyp = hyp_low();
	hyp.v[META_perspective] = 0.001;
	assert_int_equal(meta_hyp_check(&hyp, &table, "x", &err), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(table_rows),
	    cmocka_unit_test(read_data_hyps),
	    cmocka_unit_test(parse_number_forms),
	    cmocka_unit_test(parse_bad_lines),
	    cmocka_unit_test(parse_bad_texts),
	    cmocka_unit_test(write_matches_yolov5),
	    cmocka_unit_test(write_parse_round_trip),
	    cmocka_unit_test(save_and_read),
	    cmocka_unit_test(table_overrides),
	    cmocka_unit_test(table_bad_inputs),
	    cmocka_unit_test(table_write_round_trip),
	    cmocka_unit_test(restrict_keys),
	    cmocka_unit_test(check_bounds),
	    cmocka_unit_test(ultralytics_space),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
