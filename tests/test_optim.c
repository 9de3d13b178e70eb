/*
 * test_optim.c - the optimizer side of yolo-train against YOLOv5 v7.0.
 *
 * Golden: $YE_SOURCE_ROOT/tests/golden/yolov5/lr_schedule.{yaml,safetensors}, made
 * by replaying train.py's warmup/scheduler logic with yolov5's
 * smart_optimizer and torch's LambdaLR. Every row of every run's iter and
 * epoch tables is compared EXACTLY (==, no tolerance): accumulate, the
 * optimizer-step flag, the three groups' lr and momentum, lf(epoch) and the
 * lr at the end of each epoch and after scheduler.step(). The yaml's
 * hyperparameters, run shapes, weight_decay scaling table and the group
 * membership of all 177 parameter names are checked too. YE_SOURCE_ROOT unset
 * is a failure, not a skip.
 *
 * The SGD/Adam/AdamW, EMA and clipping reference numbers below were
 * computed once with PyTorch 1.13 (/usr/bin/python3, CPU, one thread) and
 * pasted; see each table's comment for the exact call.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "yaml_doc.h"
#include <math.h>
#include <yaml.h>

#include "optim.h"
#include "safetensors.h"

#define ITER_COLS 11
#define EPOCH_COLS 8

/* --- the golden files --- */

static void golden_path(char *buf, size_t size, const char *suffix)
{
	const char *root = getenv("YE_SOURCE_ROOT");
	if (root == NULL || root[0] == '\0')
		fail_msg("YE_SOURCE_ROOT is not set (it must name the repository root)");
	snprintf(buf, size, "%s/tests/golden/yolov5/lr_schedule.%s", root, suffix);
}

static yaml_node_t *yaml_get(yaml_document_t *doc, yaml_node_t *map, const char *key)
{
	if (map == NULL || map->type != YAML_MAPPING_NODE)
		return NULL;
	for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
	     p++) {
		yaml_node_t *k = yaml_document_get_node(doc, p->key);
		if (k->type == YAML_SCALAR_NODE &&
		    strcmp((const char *)k->data.scalar.value, key) == 0)
			return yaml_document_get_node(doc, p->value);
	}
	return NULL;
}

static const char *yaml_text(yaml_node_t *node)
{
	if (node == NULL || node->type != YAML_SCALAR_NODE)
		fail_msg("lr_schedule.yaml: expected a scalar");
	return (const char *)node->data.scalar.value;
}

static double yaml_num(yaml_document_t *doc, yaml_node_t *map, const char *key)
{
	yaml_node_t *node = yaml_get(doc, map, key);
	if (node == NULL)
		fail_msg("lr_schedule.yaml: key %s missing", key);
	double value;
	if (ut_parse_double(yaml_text(node), &value) != 0)
		fail_msg("lr_schedule.yaml: %s = '%s' is not a number", key, yaml_text(node));
	return value;
}

static void load_yaml(yaml_document_t *doc)
{
	char path[4096];
	golden_path(path, sizeof(path), "yaml");
	test_yaml_load(path, doc);
}

static struct tr_st_file *open_golden(void)
{
	char path[4096];
	golden_path(path, sizeof(path), "safetensors");
	struct tr_st_file *file;
	struct ut_err err;
	if (tr_st_open(path, &file, &err) != 0)
		fail_msg("%s", err.msg);
	return file;
}

static const double *golden_table(const struct tr_st_file *file, const char *run, const char *table,
				  size_t rows, size_t cols)
{
	char name[256];
	snprintf(name, sizeof(name), "%s/%s", run, table);
	const struct tr_st_tensor *t = tr_st_find(file, name);
	if (t == NULL)
		fail_msg("lr_schedule.safetensors: %s missing", name);
	assert_int_equal(t->dtype, TR_ST_F64);
	assert_int_equal(t->ndim, 2);
	assert_int_equal(t->shape[0], (int64_t)rows);
	assert_int_equal(t->shape[1], (int64_t)cols);
	return (const double *)t->data;
}

/* The hyp section into a config (SGD, the run's shape filled in later). */
static struct tr_optim_config config_from_hyp(yaml_document_t *doc)
{
	yaml_node_t *hyp = yaml_get(doc, yaml_document_get_root_node(doc), "hyp");
	struct tr_optim_config c = {
	    .kind = TR_OPTIM_SGD,
	    .lr0 = yaml_num(doc, hyp, "lr0"),
	    .lrf = yaml_num(doc, hyp, "lrf"),
	    .momentum = yaml_num(doc, hyp, "momentum"),
	    .weight_decay = yaml_num(doc, hyp, "weight_decay"),
	    .warmup_epochs = yaml_num(doc, hyp, "warmup_epochs"),
	    .warmup_momentum = yaml_num(doc, hyp, "warmup_momentum"),
	    .warmup_bias_lr = yaml_num(doc, hyp, "warmup_bias_lr"),
	};
	return c;
}

/* --- the schedule against every golden row --- */

static void expect_exact(double got, double want, const char *run, long row, const char *what)
{
	if (got != want)
		fail_msg("%s row %ld %s: got %.17g, golden %.17g", run, row, what, got, want);
}

static void replay_run(yaml_document_t *doc, const struct tr_st_file *file, const char *run)
{
	yaml_node_t *spec =
	    yaml_get(doc, yaml_get(doc, yaml_document_get_root_node(doc), "runs"), run);
	if (spec == NULL)
		fail_msg("lr_schedule.yaml: run %s missing", run);
	struct tr_optim_config c = config_from_hyp(doc);
	c.nb = (long)yaml_num(doc, spec, "nb");
	c.epochs = (long)yaml_num(doc, spec, "epochs");
	c.batch_size = (long)yaml_num(doc, spec, "batch_size");
	c.cos_lr = strcmp(yaml_text(yaml_get(doc, spec, "cos_lr")), "true") == 0;
	assert_int_equal((long)yaml_num(doc, spec, "nbs"), TR_OPTIM_NBS);

	struct tr_optim_sched s;
	struct ut_err err;
	assert_int_equal(tr_optim_sched_init(&s, &c, &err), 0);
	assert_int_equal(s.nw, (long)yaml_num(doc, spec, "nw"));
	assert_int_equal(s.accumulate_nominal, (long)yaml_num(doc, spec, "accumulate_initial"));
	expect_exact(s.weight_decay, yaml_num(doc, spec, "weight_decay_scaled"), run, -1, "wd");
	expect_exact(s.decay[TR_OPTIM_GROUP_DECAY], s.weight_decay, run, -1, "decay g1");
	expect_exact(s.decay[TR_OPTIM_GROUP_BIAS], 0.0, run, -1, "decay g0");
	expect_exact(s.decay[TR_OPTIM_GROUP_BN], 0.0, run, -1, "decay g2");

	size_t iters = (size_t)(c.nb * c.epochs);
	assert_int_equal(iters, (size_t)yaml_num(doc, spec, "total_iterations"));
	const double *it = golden_table(file, run, "iter", iters, ITER_COLS);
	const double *ep = golden_table(file, run, "epoch", (size_t)c.epochs, EPOCH_COLS);
	long steps = 0;
	for (long epoch = 0; epoch < c.epochs; epoch++) {
		for (long i = 0; i < c.nb; i++) {
			const double *row = it + (size_t)(epoch * c.nb + i) * ITER_COLS;
			long ni = tr_optim_sched_batch(&s, epoch, i);
			bool step = tr_optim_sched_step_due(&s, ni);
			steps += step;
			expect_exact((double)epoch, row[0], run, ni, "epoch");
			expect_exact((double)i, row[1], run, ni, "i");
			expect_exact((double)ni, row[2], run, ni, "ni");
			expect_exact(s.accumulate, row[3], run, ni, "accumulate");
			expect_exact(step ? 1.0 : 0.0, row[4], run, ni, "optimizer_step");
			for (int g = 0; g < TR_OPTIM_GROUP_COUNT; g++) {
				struct tr_optim_hparams hp = tr_optim_sched_hparams(&s, g);
				expect_exact(hp.lr, row[5 + g], run, ni, "lr");
				expect_exact(hp.momentum, row[8 + g], run, ni, "momentum");
			}
		}
		const double *row = ep + (size_t)epoch * EPOCH_COLS;
		expect_exact((double)epoch, row[0], run, epoch, "epoch table: epoch");
		expect_exact(tr_optim_lf(&c, (double)epoch), row[1], run, epoch, "lf");
		for (int g = 0; g < TR_OPTIM_GROUP_COUNT; g++)
			expect_exact(s.lr[g], row[2 + g], run, epoch, "lr end of epoch");
		tr_optim_sched_epoch_end(&s);
		for (int g = 0; g < TR_OPTIM_GROUP_COUNT; g++)
			expect_exact(s.lr[g], row[5 + g], run, epoch, "lr after scheduler.step");
	}
	assert_int_equal(steps, (long)yaml_num(doc, spec, "n_optimizer_steps"));
}

static void test_golden_schedule(void **state)
{
	(void)state;
	yaml_document_t doc;
	load_yaml(&doc);
	struct tr_st_file *file = open_golden();
	static const char *const runs[] = {"linear_nb9_e10_b16", "cos_nb9_e10_b16",
					   "linear_nb50_e4_b16"};
	for (size_t r = 0; r < sizeof(runs) / sizeof(runs[0]); r++)
		replay_run(&doc, file, runs[r]);
	tr_st_close(file);
	yaml_document_delete(&doc);
}

static void test_golden_decay_scaling(void **state)
{
	(void)state;
	yaml_document_t doc;
	load_yaml(&doc);
	yaml_node_t *root = yaml_document_get_root_node(&doc);
	double wd = yaml_num(&doc, yaml_get(&doc, root, "hyp"), "weight_decay");
	yaml_node_t *table = yaml_get(&doc, root, "weight_decay_scaling");
	assert_non_null(table);
	assert_int_equal(table->type, YAML_SEQUENCE_NODE);
	int rows = 0;
	for (yaml_node_item_t *p = table->data.sequence.items.start;
	     p < table->data.sequence.items.top; p++, rows++) {
		yaml_node_t *row = yaml_document_get_node(&doc, *p);
		long batch = (long)yaml_num(&doc, row, "batch_size");
		assert_int_equal(tr_optim_accumulate(batch),
				 (long)yaml_num(&doc, row, "accumulate"));
		expect_exact(tr_optim_scaled_decay(wd, batch), yaml_num(&doc, row, "weight_decay"),
			     "weight_decay_scaling", batch, "weight_decay");
	}
	assert_int_equal(rows, 8);
	yaml_document_delete(&doc);
}

static void test_golden_groups(void **state)
{
	(void)state;
	yaml_document_t doc;
	load_yaml(&doc);
	yaml_node_t *groups = yaml_get(&doc, yaml_document_get_root_node(&doc), "param_groups");
	assert_non_null(groups);
	assert_int_equal(groups->type, YAML_SEQUENCE_NODE);
	int counts[TR_OPTIM_GROUP_COUNT] = {0};
	for (yaml_node_item_t *p = groups->data.sequence.items.start;
	     p < groups->data.sequence.items.top; p++) {
		yaml_node_t *group = yaml_document_get_node(&doc, *p);
		int index = (int)yaml_num(&doc, group, "index");
		assert_in_range(index, 0, TR_OPTIM_GROUP_COUNT - 1);
		yaml_node_t *names = yaml_get(&doc, group, "names");
		assert_non_null(names);
		for (yaml_node_item_t *q = names->data.sequence.items.start;
		     q < names->data.sequence.items.top; q++) {
			const char *name = yaml_text(yaml_document_get_node(&doc, *q));
			if ((int)tr_optim_group_of(name) != index)
				fail_msg("%s: group %d, golden %d", name,
					 (int)tr_optim_group_of(name), index);
			counts[index]++;
		}
		assert_int_equal(counts[index], (int)yaml_num(&doc, group, "n_params"));
	}
	assert_int_equal(counts[TR_OPTIM_GROUP_BIAS], 60);
	assert_int_equal(counts[TR_OPTIM_GROUP_DECAY], 60);
	assert_int_equal(counts[TR_OPTIM_GROUP_BN], 57);
	yaml_document_delete(&doc);
}

/* --- schedule details the golden runs do not reach --- */

static struct tr_optim_config small_config(enum tr_optim_kind kind)
{
	struct tr_optim_config c = {
	    .kind = kind,
	    .lr0 = 0.01,
	    .lrf = 0.01,
	    .momentum = 0.937,
	    .weight_decay = 0.0005,
	    .warmup_epochs = 3.0,
	    .warmup_momentum = 0.8,
	    .warmup_bias_lr = 0.1,
	    .batch_size = 16,
	    .nb = 9,
	    .epochs = 10,
	};
	return c;
}

static void test_sched_rules(void **state)
{
	(void)state;
	/* Python round() is half to even: 0.5 -> 0 -> max(.., 1); 2.5 -> 2. */
	assert_int_equal(tr_optim_accumulate(128), 1);
	assert_int_equal(tr_optim_accumulate(43), 1); /* 1.488 */
	assert_int_equal(tr_optim_accumulate(40), 2); /* 1.6 */
	assert_int_equal(tr_optim_warmup_iters(0.5, 9), 100);
	assert_int_equal(tr_optim_warmup_iters(2.5, 41), 102);	/* 102.5 -> 102 */
	assert_int_equal(tr_optim_warmup_iters(0.5, 301), 150); /* 150.5 -> 150 */
	assert_int_equal(tr_optim_warmup_iters(0.5, 303), 152); /* 151.5 -> 152 */
	assert_true(tr_optim_interp(0.0, 100.0, 0.1, 0.01) == 0.1);
	assert_true(tr_optim_interp(100.0, 100.0, 0.1, 0.01) == 0.01);

	/* Adam: the warmup leaves beta1 alone (no 'momentum' key in its groups). */
	struct tr_optim_config c = small_config(TR_OPTIM_ADAM);
	struct tr_optim_sched s;
	struct ut_err err;
	assert_int_equal(tr_optim_sched_init(&s, &c, &err), 0);
	tr_optim_sched_batch(&s, 0, 0);
	assert_true(s.momentum[0] == 0.937 && s.momentum[1] == 0.937 && s.momentum[2] == 0.937);
	assert_true(s.lr[TR_OPTIM_GROUP_BIAS] == 0.1 && s.lr[TR_OPTIM_GROUP_BN] == 0.0);

	/* Resume at epoch 5 past warmup: lr stays lr0 * lf(0) (LambdaLR's
	 * construction) until the first scheduler.step() gives lf(5). */
	c = small_config(TR_OPTIM_SGD);
	c.nb = 50;
	c.start_epoch = 5;
	assert_int_equal(tr_optim_sched_init(&s, &c, &err), 0);
	assert_int_equal(tr_optim_sched_batch(&s, 5, 3), 253);
	assert_true(s.accumulate == 4.0 && s.momentum[1] == 0.937 && s.lr[0] == 0.01);
	assert_true(tr_optim_sched_step_due(&s, 253));
	assert_false(tr_optim_sched_step_due(&s, 256));
	assert_true(tr_optim_sched_step_due(&s, 257));
	tr_optim_sched_epoch_end(&s);
	assert_true(s.lr[2] == 0.01 * tr_optim_lf_linear(5.0, 10, 0.01));

	/* Bad configs name the field. */
	c.batch_size = 0;
	assert_int_equal(tr_optim_sched_init(&s, &c, &err), -1);
	assert_non_null(strstr(err.msg, "batch_size"));
	c = small_config(TR_OPTIM_SGD);
	c.lr0 = NAN;
	assert_int_equal(tr_optim_sched_init(&s, &c, &err), -1);
	assert_non_null(strstr(err.msg, "lr0"));
	c = small_config(TR_OPTIM_SGD);
	c.start_epoch = 11;
	assert_int_equal(tr_optim_sched_init(&s, &c, &err), -1);
}

static void test_names(void **state)
{
	(void)state;
	enum tr_optim_kind kind;
	struct ut_err err;
	assert_int_equal(tr_optim_kind_parse("SGD", &kind, &err), 0);
	assert_int_equal(kind, TR_OPTIM_SGD);
	assert_int_equal(tr_optim_kind_parse("AdamW", &kind, &err), 0);
	assert_int_equal(kind, TR_OPTIM_ADAMW);
	assert_int_equal(tr_optim_kind_parse("RMSProp", &kind, &err), -1);
	assert_non_null(strstr(err.msg, "RMSProp"));
	assert_int_equal(tr_optim_group_of("model.9.cv2.bn.bias"), TR_OPTIM_GROUP_BIAS);
	assert_int_equal(tr_optim_group_of("model.24.m.1.bias"), TR_OPTIM_GROUP_BIAS);
	assert_int_equal(tr_optim_group_of("model.3.bn.weight"), TR_OPTIM_GROUP_BN);
	assert_int_equal(tr_optim_group_of("model.3.conv.weight"), TR_OPTIM_GROUP_DECAY);
	assert_int_equal(tr_optim_group_of("model.24.m.0.weight"), TR_OPTIM_GROUP_DECAY);
	assert_int_equal(tr_optim_group_of("model.5.notbn.weight"), TR_OPTIM_GROUP_DECAY);
}

/* --- updates against PyTorch 1.13 --- */

#define N 5
#define STEPS 3
static const float start[N] = {0.5f, -1.25f, 2.0f, 0.0f, -0.03125f};
static const float grads[STEPS][N] = {
    {0.1f, -0.2f, 0.3f, -0.4f, 0.05f},
    {0.12f, 0.05f, -0.3f, 0.2f, -0.01f},
    {-0.07f, 0.3f, 0.25f, -0.15f, 0.02f},
};

/*
 * p after each of 3 steps, from torch 1.13:
 *   p = Parameter(tensor(start)); opt = <ctor>([{'params': [p], 'weight_decay': wd}])
 *   for g in grads: p.grad = tensor(g); opt.step()
 * ctors: SGD(lr=0.01, momentum=0.85, nesterov=True);
 * Adam(lr=0.001, betas=(0.937, 0.999)); AdamW(lr=0.001, betas=(0.937, 0.999)).
 * [case][wd 0 / 0.0005][step][element]
 */
static const float torch_ref[3][2][STEPS][N] = {
    {
	/* SGD */
	{{4.981499910e-01f, -1.246299982e+00f, 1.994449973e+00f, 7.400000002e-03f,
	  -3.217500076e-02f},
	 {4.952074885e-01f, -1.245779991e+00f, 1.997832417e+00f, 6.589999888e-03f,
	  -3.235125169e-02f},
	 {4.950213730e-01f, -1.250463009e+00f, 1.993532538e+00f, 1.037649997e-02f,
	  -3.295606375e-02f}},
	{{4.981453717e-01f, -1.246288419e+00f, 1.994431496e+00f, 7.400000002e-03f,
	  -3.217471018e-02f},
	 {4.951964617e-01f, -1.245752335e+00f, 1.997788310e+00f, 6.589931902e-03f,
	  -3.235055134e-02f},
	 {4.950024188e-01f, -1.250415444e+00f, 1.993456602e+00f, 1.037634443e-02f,
	  -3.295485303e-02f}},
    },
    {
	/* Adam */
	{{4.990000129e-01f, -1.248999953e+00f, 1.998999953e+00f, 9.999999311e-04f,
	  -3.224999830e-02f},
	 {4.980012178e-01f, -1.248513222e+00f, 1.999032497e+00f, 1.285415026e-03f,
	  -3.277775645e-02f},
	 {4.975330234e-01f, -1.248802662e+00f, 1.998742223e+00f, 1.694856677e-03f,
	  -3.339053318e-02f}},
	{{4.990000129e-01f, -1.248999953e+00f, 1.998999953e+00f, 9.999999311e-04f,
	  -3.224999830e-02f},
	 {4.980012178e-01f, -1.248510003e+00f, 1.999029160e+00f, 1.285414095e-03f,
	  -3.277744353e-02f},
	 {4.975311160e-01f, -1.248796701e+00f, 1.998735666e+00f, 1.694854349e-03f,
	  -3.338990360e-02f}},
    },
    {
	/* AdamW */
	{{4.990000129e-01f, -1.248999953e+00f, 1.998999953e+00f, 9.999999311e-04f,
	  -3.224999830e-02f},
	 {4.980012178e-01f, -1.248513222e+00f, 1.999032497e+00f, 1.285415026e-03f,
	  -3.277775645e-02f},
	 {4.975330234e-01f, -1.248802662e+00f, 1.998742223e+00f, 1.694856677e-03f,
	  -3.339053318e-02f}},
	{{4.989997745e-01f, -1.248999357e+00f, 1.998999000e+00f, 9.999999311e-04f,
	  -3.224998340e-02f},
	 {4.980007410e-01f, -1.248512030e+00f, 1.999030590e+00f, 1.285414561e-03f,
	  -3.277772665e-02f},
	 {4.975323081e-01f, -1.248800874e+00f, 1.998739362e+00f, 1.694855629e-03f,
	  -3.339048848e-02f}},
    },
};

/*
 * Within 2 float32 ulps of PyTorch. With gcc on x86-64 the updates, EMA and
 * clipping match torch exactly (checked with tol 0); the slack is for
 * compilers that contract other multiply-adds (clang's -ffp-contract=on).
 */
static void expect_close_f(float got, float want, const char *what, int step, int k)
{
	float tol = 2.0f * (nextafterf(fabsf(want), INFINITY) - fabsf(want));
	if (!(fabsf(got - want) <= tol))
		fail_msg("%s step %d element %d: got %.9g, torch %.9g", what, step + 1, k,
			 (double)got, (double)want);
}

static void test_updates_vs_torch(void **state)
{
	(void)state;
	static const struct {
		enum tr_optim_kind kind;
		double lr, momentum;
		const char *name;
	} cases[] = {
	    {TR_OPTIM_SGD, 0.01, 0.85, "SGD"},
	    {TR_OPTIM_ADAM, 0.001, 0.937, "Adam"},
	    {TR_OPTIM_ADAMW, 0.001, 0.937, "AdamW"},
	};
	static const double decays[2] = {0.0, 0.0005};
	for (int c = 0; c < 3; c++) {
		for (int w = 0; w < 2; w++) {
			float param[N], slot0[N] = {0}, slot1[N] = {0};
			memcpy(param, start, sizeof(param));
			struct tr_optim_hparams hp = {cases[c].lr, cases[c].momentum, decays[w]};
			for (int step = 0; step < STEPS; step++) {
				tr_optim_update(cases[c].kind, &hp, step + 1, param, grads[step],
						slot0, slot1, N);
				for (int k = 0; k < N; k++)
					expect_close_f(param[k], torch_ref[c][w][step][k],
						       cases[c].name, step, k);
			}
		}
	}
}

/* Hand check of one Nesterov step: buf = g + wd p, p -= lr (d + m buf). */
static void test_sgd_by_hand(void **state)
{
	(void)state;
	float p = 2.0f, buf = 0.0f;
	const float g = 0.5f;
	struct tr_optim_hparams hp = {0.125, 0.5, 0.25};
	tr_optim_update(TR_OPTIM_SGD, &hp, 1, &p, &g, &buf, NULL, 1);
	/* d = 0.5 + 0.25*2 = 1; buf = 1; p = 2 - 0.125*(1 + 0.5) = 1.8125 */
	assert_true(buf == 1.0f && p == 1.8125f);
	tr_optim_update(TR_OPTIM_SGD, &hp, 2, &p, &g, &buf, NULL, 1);
	/* d = 0.5 + 0.453125 = 0.953125; buf = 0.5 + 0.953125 = 1.453125;
	 * p = 1.8125 - 0.125*(0.953125 + 0.7265625) = 1.602539... */
	assert_true(buf == 1.453125f && p == 1.8125f - 0.125f * 1.6796875f);
}

/* --- EMA and clipping --- */

static void test_ema(void **state)
{
	(void)state;
	/* Python: 0.9999 * (1 - math.exp(-u / 2000)) */
	assert_true(tr_optim_ema_decay(1) == 0.000499825033328626);
	assert_true(tr_optim_ema_decay(2) == 0.0009994002166083156);
	assert_true(tr_optim_ema_decay(100) == 0.048765698441736054);
	assert_true(tr_optim_ema_decay(2000) == 0.6320573467726748);
	assert_true(tr_optim_ema_decay(100000) == 0.9999);

	/* torch 1.13: e = tensor([1, -2, .25]); m = tensor([.5, 3, -1]);
	 * for u in 1..3: d = decay(u); e *= d; e += (1 - d) * m */
	static const float want[3][3] = {
	    {5.002499223e-01f, 2.997500658e+00f, -9.993752241e-01f},
	    {5.000002384e-01f, 2.999997616e+00f, -9.999994040e-01f},
	    {5.000000000e-01f, 3.000000000e+00f, -1.000000000e+00f},
	};
	float ema[3] = {1.0f, -2.0f, 0.25f};
	const float model[3] = {0.5f, 3.0f, -1.0f};
	struct tr_optim_ema counter = {0};
	for (int u = 0; u < 3; u++) {
		double d = tr_optim_ema_next_decay(&counter);
		assert_int_equal(counter.updates, u + 1);
		tr_optim_ema_update(ema, model, 3, d);
		for (int k = 0; k < 3; k++)
			expect_close_f(ema[k], want[u][k], "EMA", u, k);
	}
}

static void test_clip(void **state)
{
	(void)state;
	/* torch 1.13: clip_grad_norm_ of [6, 8, 0, 0] to 5 -> norm 10, grads
	 * [2.999999762, 3.999999762, 0, 0]. */
	float grads_big[4] = {6.0f, 8.0f, 0.0f, 0.0f};
	assert_true(tr_optim_clip_grad_norm(grads_big, 4, 5.0) == 10.0);
	expect_close_f(grads_big[0], 2.999999762e+00f, "clip", 0, 0);
	expect_close_f(grads_big[1], 3.999999762e+00f, "clip", 0, 1);
	float grads_small[2] = {0.3f, -0.4f};
	tr_optim_clip_grad_norm(grads_small, 2, TR_OPTIM_MAX_GRAD_NORM);
	assert_true(grads_small[0] == 0.3f && grads_small[1] == -0.4f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_golden_schedule),
	    cmocka_unit_test(test_golden_decay_scaling),
	    cmocka_unit_test(test_golden_groups),
	    cmocka_unit_test(test_sched_rules),
	    cmocka_unit_test(test_names),
	    cmocka_unit_test(test_updates_vs_torch),
	    cmocka_unit_test(test_sgd_by_hand),
	    cmocka_unit_test(test_ema),
	    cmocka_unit_test(test_clip),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
