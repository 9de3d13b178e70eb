/*
 * test_train_step.c - yolo-train's first two optimizer steps against
 * YOLOv5 v7.0's own train.py.
 *
 * Golden: tests/data/train_step_golden.safetensors, made by
 * scripts/make_train_step_golden.py from a real train.py run (see there):
 * YOLOv5's seed-0 initial weights (tests/golden/yolov5/model_v5n_nc2), the
 * first 16 thermal-dogs-people train images (tests/data, copied) as both splits, hyp.scratch-low
 * with every augmentation at 0, --rect --noautoanchor, batch 8, one epoch. So both trainers see the
 * same two batches, and the whole step is compared: loader, forward, loss, backward, warmup lr and
 * momentum, SGD with Nesterov and the decay groups, the BN running statistics, the EMA, and the
 * validation of the EMA (its losses; P/R/mAP two steps from the initialisation hang on near-equal
 * confidences and are no check).
 *
 * Tolerance, per tensor, on the change from the initial weights (model:
 * from their half rounding, as train.py; EMA: from the weights themselves)
 * and on the momentum buffer, sampled as the golden is: |ours - golden| <=
 * 1e-3 |golden| + 2.5e-7 |after-step values| (L2 norms; the second term is
 * float32's resolution of a weight near 1 moved by 1e-6, which is what the
 * BN weights' first steps are), and the same for the whole tensor's norm.
 * Seen: at most 0.1 of that. The losses in results.csv: within 2e-4 (both
 * are printed with 5 significant digits). Teeth: the same run with
 * weight_decay 0.0006 or lr0 0.011 must fail the comparison.
 *
 * The loss scaler (amp.h) in the same run, 2 epochs (4 optimizer steps),
 * every step reported through the test hooks (train.h):
 *   - fp32 with the scaler on (amp_fp32_scaler, scale 2^16) against the
 *     scaler off: parameters, EMA and the batch losses bit for bit after
 *     every step, then every tensor of last.safetensors (momentum and BN
 *     statistics too) and results.csv byte for byte. Scaling by a power of
 *     two and back is exact in fp32 barring overflow and underflow.
 *   - an inf injected into one gradient before step 2: step 2 is skipped
 *     (parameters memcmp-equal to step 1's), the scale halves to 2^15, the
 *     growth tracker is 0, the EMA is still updated (its count advances and
 *     its values move), and steps 3 and 4 run.
 *   - --amp fp16 on the CPU trains in fp32 without a scaler, as YOLOv5's
 *     check_amp (the same parameters as off); fp16 and bf16 with --device 0
 *     are refused in one line before anything is written.
 * Teeth, tried by hand: no EMA update on a skipped step, or the backward's
 * seed left unscaled, make these fail.
 *
 * YE_SOURCE_ROOT unset is a failure, not a skip.
 */
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

#include "safetensors.h"
#include "train.h"

#define PATH_LEN 4096
#define REL_TOL 1e-3
#define ULP_TOL 2.5e-7
#define LOSS_TOL 2e-4

struct paths {
	char root[PATH_LEN], work[64];
	char golden[PATH_LEN], init[PATH_LEN], cfg[PATH_LEN], data[PATH_LEN];
};

static void env_path(char *buf, const char *name)
{
	const char *value = getenv(name);
	if (value == NULL || value[0] == '\0')
		fail_msg("%s is not set", name);
	snprintf(buf, PATH_LEN, "%s", value);
}

/* A metadata value of the golden; a missing one fails the test. */
static const char *meta(const struct tr_st_file *golden, const char *key)
{
	const char *value = tr_st_metadata(golden, key);
	if (value == NULL)
		fail_msg("the golden has no metadata %s", key);
	return value;
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	if (f == NULL)
		fail_msg("%s: cannot write", path);
	fputs(text, f);
	fclose(f);
}

/* YOLOv5's scratch-low hyp (the golden run's) with the golden's zero_hyps at 0 and one key (or
 * none) replaced. */
static void write_hyp(const struct paths *p, const struct tr_st_file *golden, const char *path,
		      const char *key, const char *value)
{
	char src[PATH_LEN], line[512], name[128];
	snprintf(src, sizeof(src), "%s/tests/golden/training/A_low_s0/hyp.yaml", p->root);
	FILE *in = fopen(src, "r"), *out = fopen(path, "w");
	if (in == NULL || out == NULL)
		fail_msg("%s or %s: cannot open", src, path);
	char zero[512];
	snprintf(zero, sizeof(zero), ",%s,", meta(golden, "zero_hyps"));
	while (fgets(line, sizeof(line), in) != NULL) {
		if (sscanf(line, "%127[^:]:", name) != 1) {
			fputs(line, out);
			continue;
		}
		char quoted[132];
		snprintf(quoted, sizeof(quoted), ",%s,", name);
		if (key != NULL && strcmp(name, key) == 0)
			fprintf(out, "%s: %s\n", name, value);
		else if (strstr(zero, quoted) != NULL)
			fprintf(out, "%s: 0.0\n", name);
		else
			fputs(line, out);
	}
	fclose(in);
	fclose(out);
}

/* Copy a file: the test's own copy of the images keeps label caches out of the source tree. */
static void copy_file(const char *from, const char *to)
{
	FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
	if (in == NULL || out == NULL)
		fail_msg("copying %s to %s failed", from, to);
	char buf[65536];
	size_t n;
	while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
		assert_int_equal(fwrite(buf, 1, n, out), n);
	fclose(in);
	fclose(out);
}

/* The golden's images and labels in work/{images,labels}/train; data.yaml: both splits there. */
static void write_data(struct paths *p, const struct tr_st_file *golden)
{
	char *names = strdup(meta(golden, "images"));
	char from[PATH_LEN + 256], to[PATH_LEN + 256], cmd[PATH_LEN + 64];
	snprintf(cmd, sizeof(cmd), "mkdir -p '%s/images/train' '%s/labels/train'", p->work,
		 p->work);
	assert_int_equal(system(cmd), 0);
	const char *src = "tests/data/thermal-dogs-people";
	for (char *save = NULL, *n = strtok_r(names, ",", &save); n;
	     n = strtok_r(NULL, ",", &save)) {
		snprintf(from, sizeof(from), "%s/%s/images/train/%s", p->root, src, n);
		snprintf(to, sizeof(to), "%s/images/train/%s", p->work, n);
		copy_file(from, to);
		char *dot = strrchr(n, '.');
		snprintf(from, sizeof(from), "%s/%s/labels/train/%.*s.txt", p->root, src,
			 (int)(dot - n), n);
		snprintf(to, sizeof(to), "%s/labels/train/%.*s.txt", p->work, (int)(dot - n), n);
		if (access(from, F_OK) == 0)
			copy_file(from, to);
	}
	free(names);
	char text[PATH_LEN + 128];
	snprintf(
	    text, sizeof(text),
	    "path: %s\ntrain: images/train\nval: images/train\nnc: 2\nnames: ['dog', 'person']\n",
	    p->work);
	snprintf(p->data, sizeof(p->data), "%s/data.yaml", p->work);
	write_file(p->data, text);
}

/* The options of one epoch of yolo-train as the golden's train.py run, into work/<name>. */
static void golden_opts(const struct paths *p, const struct tr_st_file *golden, const char *name,
			const char *hyp, struct tr_train_opts *opts)
{
	struct tr_train_opts o;
	tr_train_defaults(&o);
	o.weights = p->init;
	o.cfg = p->cfg;
	o.data = p->data;
	o.hyp = hyp;
	o.epochs = 1;
	o.batch_size = atol(meta(golden, "batch_size"));
	o.imgsz = atol(meta(golden, "imgsz"));
	o.rect = true;
	o.noautoanchor = true;
	o.workers = 0;
	o.threads = 1;
	o.seed = 0;
	o.project = p->work;
	o.name = name;
	o.exist_ok = true;
	*opts = o;
}

static void run_train(const struct tr_train_opts *o)
{
	struct ut_err err = {{0}};
	if (tr_train(o, &err) != 0)
		fail_msg("training %s: %s", o->name, err.msg);
}

/* One epoch of yolo-train as the golden's train.py run, into work/<name>. */
static void train(const struct paths *p, const struct tr_st_file *golden, const char *name,
		  const char *hyp)
{
	struct tr_train_opts o;
	golden_opts(p, golden, name, hyp, &o);
	run_train(&o);
}

/* The golden's sampling: count = min(n, samples) values at i * (n / count). */
static double sampled_l2(const float *after, const float *base, bool half_base, size_t n,
			 size_t count, const float *golden, double *golden_l2, double *after_l2)
{
	size_t stride = n / count;
	double diff = 0, g2 = 0, a2 = 0;
	for (size_t i = 0; i < count; i++) {
		size_t k = i * stride;
		double start = base == NULL ? 0 : half_base ? tr_round_to_half(base[k]) : base[k];
		double d = (double)after[k] - start - golden[i];
		diff += d * d;
		g2 += (double)golden[i] * golden[i];
		a2 += (double)after[k] * after[k];
	}
	*golden_l2 = sqrt(g2);
	*after_l2 = sqrt(a2);
	return sqrt(diff);
}

static double full_norm(const float *after, const float *base, bool half_base, size_t n)
{
	double s = 0;
	for (size_t k = 0; k < n; k++) {
		double start = base == NULL ? 0 : half_base ? tr_round_to_half(base[k]) : base[k];
		double d = (double)after[k] - start;
		s += d * d;
	}
	return sqrt(s);
}

/*
 * Compare a run's last.safetensors with the golden; returns the number of
 * tensors out of tolerance and the worst (error / tolerance) in *worst.
 */
static int compare_run(const struct paths *p, const struct tr_st_file *golden, const char *name,
		       double *worst, bool report)
{
	char path[PATH_LEN + 64];
	snprintf(path, sizeof(path), "%s/%s/weights/last.safetensors", p->work, name);
	struct ut_err err = {{0}};
	struct tr_st_file *run = NULL, *init = NULL;
	if (tr_st_open(path, &run, &err) != 0 || tr_st_open(p->init, &init, &err) != 0)
		fail_msg("%s", err.msg);
	size_t samples = (size_t)atol(meta(golden, "samples"));
	int bad = 0, compared = 0;
	*worst = 0;
	for (size_t i = 0; i < tr_st_count(golden); i++) {
		const struct tr_st_tensor *g = tr_st_tensor_at(golden, i);
		const char *slash = strchr(g->name, '/');
		if (slash == NULL || strstr(g->name, "_norm/") != NULL)
			continue;
		const char *key = slash + 1;
		size_t group = (size_t)(slash - g->name);
		char ours_name[512], norm_name[512];
		bool model = strncmp(g->name, "model", group) == 0;
		bool ema = strncmp(g->name, "ema", group) == 0;
		if (model)
			snprintf(ours_name, sizeof(ours_name), "%s", key);
		else if (ema)
			snprintf(ours_name, sizeof(ours_name), "ema.%s", key);
		else
			snprintf(ours_name, sizeof(ours_name), "optimizer.%s.momentum", key);
		snprintf(norm_name, sizeof(norm_name), "%.*s_norm/%s", (int)group, g->name, key);
		const struct tr_st_tensor *o = tr_st_find(run, ours_name),
					  *b = tr_st_find(init, key);
		const struct tr_st_tensor *gn = tr_st_find(golden, norm_name);
		if (o == NULL || b == NULL || gn == NULL || o->dtype != TR_ST_F32 ||
		    o->numel != b->numel || g->numel != (o->numel < samples ? o->numel : samples))
			fail_msg("%s: %s missing or of another shape", path, ours_name);
		const float *base = model || ema ? (const float *)b->data : NULL;
		double g_l2, a_l2;
		double diff =
		    sampled_l2(o->data, base, model, o->numel, g->numel, g->data, &g_l2, &a_l2);
		double tol = REL_TOL * g_l2 + ULP_TOL * a_l2 + 1e-30;
		double norm = full_norm(o->data, base, model, o->numel);
		double gnorm = *(const double *)gn->data;
		double norm_tol =
		    REL_TOL * gnorm + ULP_TOL * a_l2 * sqrt((double)o->numel / g->numel) + 1e-30;
		double ratio = fmax(diff / tol, fabs(norm - gnorm) / norm_tol);
		if (ratio > *worst)
			*worst = ratio;
		if (ratio > 1) {
			bad++;
			if (report)
				print_message("%s: |ours - golden| %.3g (tolerance %.3g), norm "
					      "%.6g vs %.6g\n",
					      g->name, diff, tol, norm, gnorm);
		}
		compared++;
	}
	assert_true(compared > 700); /* model + EMA state entries and every parameter's momentum */
	tr_st_close(run);
	tr_st_close(init);
	return bad;
}

/* results.csv row 0: columns 2-4 (train box/obj/cls) and 9-11 (val box/obj/cls). */
static void check_losses(const struct paths *p, const struct tr_st_file *golden, const char *name)
{
	char path[PATH_LEN + 64], line[4096];
	snprintf(path, sizeof(path), "%s/%s/results.csv", p->work, name);
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	assert_non_null(fgets(line, sizeof(line), f));
	assert_non_null(fgets(line, sizeof(line), f));
	fclose(f);
	double col[14];
	char *s = line;
	for (int c = 0; c < 14; c++) {
		col[c] = strtod(s, &s);
		s += strspn(s, ", ");
	}
	const double *train = tr_st_find(golden, "train")->data,
		     *val = tr_st_find(golden, "val")->data;
	for (int k = 0; k < 3; k++) {
		if (fabs(col[1 + k] - train[k]) > LOSS_TOL * fabs(train[k]) ||
		    fabs(col[8 + k] - val[k]) > LOSS_TOL * fabs(val[k]))
			fail_msg("loss %d: train %.6g vs %.6g, val %.6g vs %.6g", k, col[1 + k],
				 train[k], col[8 + k], val[k]);
	}
}

static int setup(void **state)
{
	struct paths *p = calloc(1, sizeof(*p));
	env_path(p->root, "YE_SOURCE_ROOT");
	snprintf(p->work, sizeof(p->work), "/tmp/ye-train-step-XXXXXX");
	if (mkdtemp(p->work) == NULL)
		fail_msg("mkdtemp failed");
	snprintf(p->golden, sizeof(p->golden), "%s/tests/data/train_step_golden.safetensors",
		 p->root);
	snprintf(p->init, sizeof(p->init), "%s/tests/golden/yolov5/model_v5n_nc2.safetensors",
		 p->root);
	snprintf(p->cfg, sizeof(p->cfg), "%s/models/yolov5n.yaml", p->root);
	*state = p;
	return 0;
}

static int teardown(void **state)
{
	struct paths *p = *state;
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", p->work);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", p->work);
	free(p);
	return 0;
}

static struct tr_st_file *open_golden(struct paths *p)
{
	struct ut_err err = {{0}};
	struct tr_st_file *golden = NULL;
	if (tr_st_open(p->golden, &golden, &err) != 0)
		fail_msg("%s", err.msg);
	write_data(p, golden);
	return golden;
}

static void test_two_steps_match_train_py(void **state)
{
	struct paths *p = *state;
	struct tr_st_file *golden = open_golden(p);
	char hyp[PATH_LEN + 16];
	snprintf(hyp, sizeof(hyp), "%s/hyp.yaml", p->work);
	write_hyp(p, golden, hyp, NULL, NULL);
	train(p, golden, "same", hyp);
	check_losses(p, golden, "same");
	double worst;
	int bad = compare_run(p, golden, "same", &worst, true);
	print_message("worst tensor at %.3f of its tolerance\n", worst);
	assert_int_equal(bad, 0);
	tr_st_close(golden);
}

/* A 20 % change of the weight decay or 10 % of lr0 must be seen. */
static void test_other_hyps_fail(void **state)
{
	struct paths *p = *state;
	struct tr_st_file *golden = open_golden(p);
	const char *cases[][2] = {{"weight_decay", "0.0006"}, {"lr0", "0.011"}};
	for (size_t c = 0; c < 2; c++) {
		char hyp[PATH_LEN + 16];
		snprintf(hyp, sizeof(hyp), "%s/hyp-%s.yaml", p->work, cases[c][0]);
		write_hyp(p, golden, hyp, cases[c][0], cases[c][1]);
		train(p, golden, cases[c][0], hyp);
		double worst;
		int bad = compare_run(p, golden, cases[c][0], &worst, false);
		print_message("%s %s: %d tensors out of tolerance, worst at %.1f\n", cases[c][0],
			      cases[c][1], bad, worst);
		assert_true(bad > 0);
	}
	tr_st_close(golden);
}

/* ------------------------------------------------------------------------ */
/* the loss scaler                                                           */

#define MAX_STEPS 8

/* One step's report, its arrays copied. */
struct step_copy {
	struct tr_train_step_report report;
	float *params, *ema;
};

/* What the after_step hook saw, step by step. */
struct step_log {
	int count;
	bool overflow;
	struct step_copy at[MAX_STEPS];
};

static float *copy_floats(const float *src, size_t n)
{
	float *p = malloc(n * sizeof(*p));
	if (p != NULL)
		memcpy(p, src, n * sizeof(*p));
	return p;
}

/* tr_train_hooks.after_step: keep a copy (no cmocka failure inside tr_train). */
static void record_step(void *ctx, const struct tr_train_step_report *report)
{
	struct step_log *log = ctx;
	if (log->count == MAX_STEPS) {
		log->overflow = true;
		return;
	}
	struct step_copy *c = &log->at[log->count++];
	c->report = *report;
	c->params = copy_floats(report->params, report->nparam_values);
	c->ema = copy_floats(report->ema_params, report->nparam_values);
	c->report.params = c->report.ema_params = NULL;
}

static void step_log_free(struct step_log *log)
{
	for (int i = 0; i < log->count; i++) {
		free(log->at[i].params);
		free(log->at[i].ema);
	}
}

/* Two epochs of the golden run into work/<name>, every step recorded into log. */
static void train_logged(const struct paths *p, const struct tr_st_file *golden, const char *name,
			 const char *hyp, bool scaler, long inf_at_step, enum tr_amp_mode amp,
			 struct step_log *log)
{
	struct tr_train_opts o;
	golden_opts(p, golden, name, hyp, &o);
	struct tr_train_hooks hooks = {
	    .inf_at_step = inf_at_step, .after_step = record_step, .ctx = log};
	o.epochs = 2;
	o.amp_fp32_scaler = scaler;
	o.amp = amp;
	o.hooks = &hooks;
	memset(log, 0, sizeof(*log));
	run_train(&o);
	assert_false(log->overflow);
	for (int i = 0; i < log->count; i++)
		assert_true(log->at[i].params != NULL && log->at[i].ema != NULL);
	print_message("%s: %d optimizer steps\n", name, log->count);
}

static bool same_floats(const float *a, const float *b, size_t n)
{
	return memcmp(a, b, n * sizeof(float)) == 0;
}

/* Every step of two runs: parameters, EMA and the batch's losses equal bit for bit. */
static void assert_same_steps(const struct step_log *a, const struct step_log *b)
{
	assert_int_equal(a->count, b->count);
	for (int i = 0; i < a->count; i++) {
		const struct step_copy *x = &a->at[i], *y = &b->at[i];
		size_t n = x->report.nparam_values;
		assert_int_equal(n, y->report.nparam_values);
		if (!same_floats(x->params, y->params, n) || !same_floats(x->ema, y->ema, n) ||
		    memcmp(x->report.loss_items, y->report.loss_items, sizeof(float[3])) != 0)
			fail_msg("step %d: parameters, EMA or loss differ", i + 1);
		assert_int_equal(x->report.ema_updates, y->report.ema_updates);
	}
}

/* Every tensor of two runs' last.safetensors equal byte for byte, and their results.csv. */
static void assert_same_files(const struct paths *p, const char *name_a, const char *name_b)
{
	char path_a[PATH_LEN + 64], path_b[PATH_LEN + 64];
	struct ut_err err = {{0}};
	struct tr_st_file *a = NULL, *b = NULL;
	snprintf(path_a, sizeof(path_a), "%s/%s/weights/last.safetensors", p->work, name_a);
	snprintf(path_b, sizeof(path_b), "%s/%s/weights/last.safetensors", p->work, name_b);
	if (tr_st_open(path_a, &a, &err) != 0 || tr_st_open(path_b, &b, &err) != 0)
		fail_msg("%s", err.msg);
	assert_int_equal(tr_st_count(a), tr_st_count(b));
	for (size_t i = 0; i < tr_st_count(a); i++) {
		const struct tr_st_tensor *t = tr_st_tensor_at(a, i);
		const struct tr_st_tensor *u = tr_st_find(b, t->name);
		if (u == NULL || u->nbytes != t->nbytes || memcmp(t->data, u->data, t->nbytes) != 0)
			fail_msg("%s differs between %s and %s", t->name, name_a, name_b);
	}
	print_message("%s and %s: all %zu tensors of last.safetensors equal\n", name_a, name_b,
		      tr_st_count(a));
	tr_st_close(a);
	tr_st_close(b);
	char *text_a, *text_b;
	size_t len_a, len_b;
	snprintf(path_a, sizeof(path_a), "%s/%s/results.csv", p->work, name_a);
	snprintf(path_b, sizeof(path_b), "%s/%s/results.csv", p->work, name_b);
	if (ut_read_file(path_a, &text_a, &len_a, &err) != 0 ||
	    ut_read_file(path_b, &text_b, &len_b, &err) != 0)
		fail_msg("%s", err.msg);
	assert_int_equal(len_a, len_b);
	assert_memory_equal(text_a, text_b, len_a);
	free(text_a);
	free(text_b);
}

/* fp32 with the scaler at 2^16 is fp32 without it, bit for bit. */
static void test_scaler_fp32_bit_identical(void **state)
{
	struct paths *p = *state;
	struct tr_st_file *golden = open_golden(p);
	char hyp[PATH_LEN + 16];
	snprintf(hyp, sizeof(hyp), "%s/hyp.yaml", p->work);
	write_hyp(p, golden, hyp, NULL, NULL);
	struct step_log off, scaled;
	train_logged(p, golden, "off", hyp, false, 0, TR_AMP_OFF, &off);
	train_logged(p, golden, "scaled", hyp, true, 0, TR_AMP_OFF, &scaled);
	assert_true(off.count >= 3);
	for (int i = 0; i < scaled.count; i++) {
		const struct tr_train_step_report *r = &scaled.at[i].report;
		assert_true(r->stepped && off.at[i].report.stepped);
		assert_true(r->scale == 65536.0f && off.at[i].report.scale == 1.0f);
		assert_int_equal(r->growth_tracker, i + 1);
		assert_int_equal(r->steps_skipped, 0);
	}
	assert_same_steps(&off, &scaled);
	assert_same_files(p, "off", "scaled");
	step_log_free(&off);
	step_log_free(&scaled);
	tr_st_close(golden);
}

/* An inf gradient at step 2: skipped, scale halved, tracker reset, EMA still updated. */
static void test_scaler_skips_inf_step(void **state)
{
	struct paths *p = *state;
	struct tr_st_file *golden = open_golden(p);
	char hyp[PATH_LEN + 16];
	snprintf(hyp, sizeof(hyp), "%s/hyp.yaml", p->work);
	write_hyp(p, golden, hyp, NULL, NULL);
	struct step_log log;
	train_logged(p, golden, "inf", hyp, true, 2, TR_AMP_OFF, &log);
	assert_int_equal(log.count, 4);
	const struct step_copy *s = log.at;
	size_t n = s[0].report.nparam_values;
	assert_true(s[0].report.stepped);
	assert_true(s[0].report.scale == 65536.0f);
	assert_int_equal(s[0].report.growth_tracker, 1);
	/* step 2: skipped */
	assert_false(s[1].report.stepped);
	assert_true(same_floats(s[1].params, s[0].params, n));
	assert_true(s[1].report.scale == 32768.0f);
	assert_int_equal(s[1].report.growth_tracker, 0);
	assert_int_equal(s[1].report.steps_skipped, 1);
	assert_int_equal(s[1].report.ema_updates, s[0].report.ema_updates + 1);
	assert_false(same_floats(s[1].ema, s[0].ema, n));
	/* steps 3 and 4 run at the halved scale */
	for (int i = 2; i < 4; i++) {
		assert_true(s[i].report.stepped);
		assert_false(same_floats(s[i].params, s[i - 1].params, n));
		assert_true(s[i].report.scale == 32768.0f);
		assert_int_equal(s[i].report.growth_tracker, i - 1);
		assert_int_equal(s[i].report.steps_skipped, 1);
		assert_int_equal(s[i].report.ema_updates, s[i - 1].report.ema_updates + 1);
	}
	for (size_t k = 0; k < n; k++)
		if (!isfinite(s[3].params[k]) || !isfinite(s[3].ema[k]))
			fail_msg("value %zu not finite after the skipped step", k);
	step_log_free(&log);
	tr_st_close(golden);
}

/* --amp fp16 on the CPU is fp32 without a scaler (check_amp); on a GPU it is refused. */
static void test_amp_option(void **state)
{
	struct paths *p = *state;
	struct tr_st_file *golden = open_golden(p);
	char hyp[PATH_LEN + 16];
	snprintf(hyp, sizeof(hyp), "%s/hyp.yaml", p->work);
	write_hyp(p, golden, hyp, NULL, NULL);
	struct step_log off, cpu_fp16;
	train_logged(p, golden, "off", hyp, false, 0, TR_AMP_OFF, &off);
	train_logged(p, golden, "cpu_fp16", hyp, false, 0, TR_AMP_FP16, &cpu_fp16);
	for (int i = 0; i < cpu_fp16.count; i++)
		assert_true(cpu_fp16.at[i].report.scale == 1.0f);
	assert_same_steps(&off, &cpu_fp16);
	step_log_free(&off);
	step_log_free(&cpu_fp16);
	const enum tr_amp_mode modes[] = {TR_AMP_FP16, TR_AMP_BF16};
	for (size_t i = 0; i < 2; i++) {
		struct tr_train_opts o;
		char dir[PATH_LEN + 64];
		golden_opts(p, golden, "gpu_amp", hyp, &o);
		o.device = "0";
		o.amp = modes[i];
		struct ut_err err = {{0}};
		assert_int_equal(tr_train(&o, &err), -1);
		print_message("--amp %s --device 0: %s\n", tr_amp_mode_name(modes[i]), err.msg);
		char want[128];
		snprintf(want, sizeof(want), "--amp %s: fp16/bf16 kernels are not built yet",
			 tr_amp_mode_name(modes[i]));
		assert_non_null(strstr(err.msg, want));
		assert_null(strchr(err.msg, '\n'));
		snprintf(dir, sizeof(dir), "%s/gpu_amp", p->work);
		assert_int_equal(access(dir, F_OK), -1);
	}
	tr_st_close(golden);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_two_steps_match_train_py, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_other_hyps_fail, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_scaler_fp32_bit_identical, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_scaler_skips_inf_step, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_amp_option, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
