/*
 * test_contract.c - the trainer contract: template parsing and expansion
 * (no shell, ever), the trainer subprocess, wait statuses, results.csv as
 * YOLOv5 writes it (and as a dying trainer leaves it), log tails.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "contract.h"

static char tmpdir[PATH_MAX];

static int make_tmpdir(void **state)
{
	(void)state;
	const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	snprintf(tmpdir, sizeof(tmpdir), "%s/ye_trainer_XXXXXX", base);
	return mkdtemp(tmpdir) == NULL ? -1 : 0;
}

static int remove_tmpdir(void **state)
{
	(void)state;
	return ut_remove_tree(tmpdir, NULL);
}

static void write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
}

static void test_template_words(void **state)
{
	(void)state;
	struct ev_template tpl;
	struct ut_err err;
	assert_int_equal(
	    ev_template_parse("prog --a 'b c' \"d \\\"e\\\"\" f\\ g --hyp={hyp}", NULL, &tpl, &err),
	    0);
	assert_int_equal(tpl.argc, 6);
	assert_string_equal(tpl.argv[0], "prog");
	assert_string_equal(tpl.argv[2], "b c");
	assert_string_equal(tpl.argv[3], "d \"e\"");
	assert_string_equal(tpl.argv[4], "f g");
	assert_string_equal(tpl.argv[5], "--hyp={hyp}");
	assert_null(tpl.argv[6]);
	ev_template_free(&tpl);
}

static void test_template_errors(void **state)
{
	(void)state;
	struct ev_template tpl;
	struct ut_err err;
	assert_int_equal(ev_template_parse("prog --x {foo} --hyp {hyp}", NULL, &tpl, &err), -1);
	assert_non_null(strstr(err.msg, "{foo}"));
	assert_int_equal(ev_template_parse("prog --data {data}", NULL, &tpl, &err), -1);
	assert_non_null(strstr(err.msg, "{hyp}"));
	assert_int_equal(ev_template_parse("prog 'open {hyp}", NULL, &tpl, &err), -1);
	assert_non_null(strstr(err.msg, "quote"));
	assert_int_equal(ev_template_parse("   ", NULL, &tpl, &err), -1);
	assert_int_equal(ev_template_parse("yolov5:/nonexistent/dir", NULL, &tpl, &err), -1);
	assert_non_null(strstr(err.msg, "/nonexistent/dir"));
}

static void test_template_yolov5_and_native(void **state)
{
	(void)state;
	char dir[PATH_MAX + 16], script[PATH_MAX + 32];
	snprintf(dir, sizeof(dir), "%s/yolov5", tmpdir);
	assert_int_equal(ut_mkdirs(dir, NULL), 0);
	struct ev_template tpl;
	struct ut_err err;
	assert_int_equal(
	    ev_template_parse(strcat(strcpy(script, "yolov5:"), dir), NULL, &tpl, &err), -1);
	assert_non_null(strstr(err.msg, "train.py"));
	snprintf(script, sizeof(script), "%s/train.py", dir);
	write_text(script, "print('hi')\n");
	snprintf(script, sizeof(script), "yolov5:%s", dir);
	assert_int_equal(ev_template_parse(script, NULL, &tpl, &err), 0);
	assert_string_equal(tpl.argv[0], "python3");
	assert_non_null(strstr(tpl.argv[1], "/yolov5/train.py"));
	static const char *const expected[] = {
	    "--hyp",	 "{hyp}",     "--data",	   "{data}",   "--cfg",	       "{cfg}",
	    "--weights", "{weights}", "--epochs",  "{epochs}", "--batch-size", "{batch}",
	    "--img",	 "{imgsz}",   "--device",  "{device}", "--project",    "{project}",
	    "--name",	 "{name}",    "--exist-ok"};
	assert_int_equal(tpl.argc, 2 + (int)(sizeof(expected) / sizeof(expected[0])));
	for (size_t i = 0; i < sizeof(expected) / sizeof(expected[0]); i++)
		assert_string_equal(tpl.argv[2 + i], expected[i]);
	/* one GPU: unchanged; two: YOLOv5's DDP launch before the script, argv otherwise kept */
	assert_int_equal(ev_template_ddp(&tpl, script, 1, &err), 0);
	assert_int_equal(tpl.argc, 2 + (int)(sizeof(expected) / sizeof(expected[0])));
	assert_int_equal(ev_template_ddp(&tpl, script, 2, &err), 0);
	static const char *const launch[] = {
	    "python3",		"-m", "torch.distributed.run", "--nnodes", "1",
	    "--nproc_per_node", "2",  "--rdzv_backend",	       "c10d",	   "--rdzv_endpoint",
	    "localhost:0"};
	const size_t nlaunch = sizeof(launch) / sizeof(launch[0]);
	assert_int_equal(tpl.argc, nlaunch + 1 + sizeof(expected) / sizeof(expected[0]));
	for (size_t i = 0; i < nlaunch; i++)
		assert_string_equal(tpl.argv[i], launch[i]);
	assert_non_null(strstr(tpl.argv[nlaunch], "/yolov5/train.py"));
	for (size_t i = 0; i < sizeof(expected) / sizeof(expected[0]); i++)
		assert_string_equal(tpl.argv[nlaunch + 1 + i], expected[i]);
	assert_null(tpl.argv[tpl.argc]);
	ev_template_free(&tpl);
	assert_int_equal(ev_template_parse("native", NULL, &tpl, &err), 0);
	/* yolo-train starts its ranks itself from --device 0,1 */
	int native_words = tpl.argc;
	assert_int_equal(ev_template_ddp(&tpl, "native", 2, &err), 0);
	assert_int_equal(tpl.argc, native_words);
	assert_non_null(strstr(tpl.argv[0], "yolo-train"));
	assert_string_equal(tpl.argv[tpl.argc - 2], "--seed");
	ev_template_free(&tpl);
}

/* Values are inserted verbatim: nothing in them is ever interpreted. */
static void test_template_expand_is_inert(void **state)
{
	(void)state;
	struct ev_template tpl;
	struct ut_err err;
	assert_int_equal(ev_template_parse("prog --hyp {hyp} --x={name}-{epochs} {weights} {seed}",
					   NULL, &tpl, &err),
			 0);
	struct ev_vars vars = {.hyp = "/a b/$(rm -rf ~)/h.yaml",
			       .name = "g`id`;x",
			       .weights = "",
			       .epochs = 30,
			       .seed = 18446744073709551615ULL};
	char **argv;
	assert_int_equal(ev_template_expand(&tpl, &vars, &argv, &err), 0);
	assert_string_equal(argv[2], "/a b/$(rm -rf ~)/h.yaml");
	assert_string_equal(argv[3], "--x=g`id`;x-30");
	assert_string_equal(argv[4], "");
	assert_string_equal(argv[5], "18446744073709551615");
	assert_null(argv[6]);
	ev_argv_free(argv);
	ev_template_free(&tpl);
}

static void test_spawn_runs_in_its_group_and_dir(void **state)
{
	(void)state;
	char log[PATH_MAX + 16];
	snprintf(log, sizeof(log), "%s/spawn.log", tmpdir);
	char *const argv[] = {"sh", "-c", "pwd; echo $$ $(ps -o pgid= $$) $YE_TEST_VAR; exit 3",
			      NULL};
	char *const env[] = {"YE_TEST_VAR=hello", NULL};
	struct ev_proc proc;
	struct ut_err err;
	assert_int_equal(ev_proc_spawn(argv, tmpdir, log, env, 0, &proc, &err), 0);
	int status;
	assert_int_equal(waitpid(proc.pid, &status, 0), proc.pid);
	assert_int_equal(ev_exit_code(status), 3);
	char *text;
	assert_int_equal(ut_read_file(log, &text, NULL, &err), 0);
	char expected[PATH_MAX + 64];
	char real[PATH_MAX];
	assert_non_null(realpath(tmpdir, real));
	snprintf(expected, sizeof(expected), "%s\n%ld %ld hello\n", real, (long)proc.pid,
		 (long)proc.pid);
	assert_string_equal(text, expected);
	free(text);
}

static void test_spawn_missing_program(void **state)
{
	(void)state;
	char log[PATH_MAX + 16];
	snprintf(log, sizeof(log), "%s/missing.log", tmpdir);
	char *const argv[] = {"/nonexistent/trainer", NULL};
	struct ev_proc proc;
	struct ut_err err;
	assert_int_equal(ev_proc_spawn(argv, tmpdir, log, NULL, 0, &proc, &err), -1);
	assert_non_null(strstr(err.msg, "/nonexistent/trainer"));
	assert_non_null(strstr(err.msg, "No such file"));
}

static void test_status_descriptions(void **state)
{
	(void)state;
	char text[64];
	pid_t pid = fork();
	if (pid == 0) {
		signal(SIGSEGV, SIG_DFL);
		raise(SIGSEGV);
		_exit(0);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	ev_describe_status(status, text, sizeof(text));
	assert_string_equal(text, "killed by SIGSEGV");
	assert_int_equal(ev_exit_code(status), 128 + SIGSEGV);
	pid = fork();
	if (pid == 0)
		_exit(1);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	ev_describe_status(status, text, sizeof(text));
	assert_string_equal(text, "exit status 1");
}

static void test_orphan_stop(void **state)
{
	(void)state;
	char log[PATH_MAX + 16];
	snprintf(log, sizeof(log), "%s/orphan.log", tmpdir);
	char *const argv[] = {"sh", "-c", "sleep 100 & sleep 100", NULL};
	struct ev_proc proc;
	assert_int_equal(ev_proc_spawn(argv, tmpdir, log, NULL, 0, &proc, NULL), 0);
	assert_true(ev_proc_is_alive(&proc));
	struct ev_proc stale = {proc.pid, proc.start_ticks + 1, -1, -1, -1, ""}; /* a reused pid */
	assert_false(ev_proc_is_alive(&stale));
	ev_proc_stop_orphan(&proc, 5);
	int status;
	assert_int_equal(waitpid(proc.pid, &status, 0), proc.pid);
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM);
	/* the whole group is gone (its last zombies may need a moment to be reaped) */
	int alive = 1;
	for (int i = 0; i < 200 && alive; i++) {
		alive = kill(-proc.pid, 0) == 0;
		if (alive)
			nanosleep(&(struct timespec){0, 10000000}, NULL);
	}
	assert_false(alive);
}

static void test_results_reference_file(void **state)
{
	(void)state;
	const char *root = getenv("YE_SOURCE_ROOT");
	assert_non_null(root);
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/tests/golden/yolov5-outputs/train3ep-results.csv", root);
	struct ev_results res;
	struct ut_err err;
	assert_int_equal(ev_results_read(path, &res, &err), 0);
	assert_int_equal(res.nrows, 3);
	assert_true(res.complete);
	assert_true(res.rows[1][0] == 1);
	assert_true(res.rows[1][1] == 0.10832); /* train/box_loss */
	assert_true(res.rows[0][13] == 0.0007); /* x/lr2 */
	double results[ST_RESULT_COUNT];
	ev_results_pick(res.rows[0], results);
	assert_true(results[ST_R_precision] == 0.0045973);
	assert_true(results[ST_R_map] == 0.0012027);
	assert_true(results[ST_R_val_cls] == 0.037487);
	ev_results_free(&res);
}

static const char header[] =
    "               epoch,      train/box_loss,      train/obj_loss,      train/cls_loss,"
    "   metrics/precision,      metrics/recall,     metrics/mAP_0.5,metrics/mAP_0.5:0.95,"
    "        val/box_loss,        val/obj_loss,        val/cls_loss,               x/lr0,"
    "               x/lr1,               x/lr2\n";

static void read_text(const char *text, struct ev_results *res)
{
	char path[PATH_MAX + 16];
	snprintf(path, sizeof(path), "%s/results.csv", tmpdir);
	write_text(path, text);
	assert_int_equal(ev_results_read(path, res, NULL), 0);
}

static void test_results_partial_and_bad(void **state)
{
	(void)state;
	struct ev_results res;
	char text[4096];
	/* a row still being written is not a row */
	snprintf(text, sizeof(text), "%s%s", header, "  0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6");
	read_text(text, &res);
	assert_int_equal(res.nrows, 0);
	assert_false(res.complete);
	ev_results_free(&res);
	snprintf(text, sizeof(text), "%s%s", header,
		 "0,1,1,1,0.5,0.5,0.6,0.4,1,1,1,0.1,0.1,0.1\n1,1,1,1,nan,nan,nan,nan,1,1,1,0.1,0.1,"
		 "0.1\n");
	read_text(text, &res);
	assert_int_equal(res.nrows, 2);
	assert_false(res.complete);
	assert_non_null(strstr(res.problem, "metrics/precision"));
	ev_results_free(&res);
	read_text("\x01\x02garbage without commas\n\xff\xfe\n", &res);
	assert_false(res.complete);
	ev_results_free(&res);
	read_text("epoch,foo\n1,2\n", &res);
	assert_false(res.complete);
	assert_non_null(strstr(res.problem, "no column"));
	ev_results_free(&res);
	struct ut_err err;
	assert_int_equal(ev_results_read("/nonexistent/results.csv", &res, &err), 0);
	assert_false(res.complete);
	assert_string_equal(res.problem, "no results.csv");
}

/* A results.csv as ultralytics 8.4.190 wrote it (2 epochs of the e2e test's tiny model). */
static const char ultralytics_csv[] =
    "epoch,time,train/box_loss,train/cls_loss,train/dfl_loss,metrics/precision(B),"
    "metrics/recall(B),metrics/mAP50(B),metrics/mAP50-95(B),val/box_loss,val/cls_loss,"
    "val/dfl_loss,lr/pg0,lr/pg1,lr/pg2\n"
    "1,0.0962703,1.75374,1.49119,1.07408,0,0,0,0,0.79519,1.78206,0.46044,0.0008335,0.0008335,"
    "0.0008335\n"
    "2,0.413093,3.97921,2.78247,2.39363,0.25,0.5,0.125,0.0625,0.79519,1.78206,0.46044,"
    "0.000841835,0.000841835,0.000841835\n";

/* Ultralytics' columns land in YOLOv5's order: dfl for obj, lr/pg for x/lr, epochs from 0. */
static void test_results_ultralytics(void **state)
{
	(void)state;
	struct ev_results res;
	read_text(ultralytics_csv, &res);
	assert_true(res.complete);
	assert_int_equal(res.nrows, 2);
	const double want[ST_EPOCH_COLS] = {1,	     3.97921,	  2.39363,     2.78247,	   0.25,
					    0.5,     0.125,	  0.0625,      0.79519,	   0.46044,
					    1.78206, 0.000841835, 0.000841835, 0.000841835};
	for (int c = 0; c < ST_EPOCH_COLS; c++)
		assert_true(res.rows[1][c] == want[c]);
	assert_true(res.rows[0][0] == 0);
	double results[ST_RESULT_COUNT];
	ev_results_pick(res.rows[1], results);
	assert_true(results[ST_R_map50] == 0.125 && results[ST_R_map] == 0.0625);
	assert_true(results[ST_R_val_obj] == 0.46044); /* the DFL loss in obj's place */
	ev_results_free(&res);
}

static void test_template_ultralytics(void **state)
{
	(void)state;
	struct ev_template tpl;
	struct ut_err err;
	assert_int_equal(ev_template_space("ultralytics"), META_SPACE_ULTRALYTICS);
	assert_int_equal(ev_template_space("ultralytics:/x/python"), META_SPACE_ULTRALYTICS);
	assert_int_equal(ev_template_space("native"), META_SPACE_YOLOV5);
	assert_int_equal(ev_template_space("yolov5:/x"), META_SPACE_YOLOV5);
	assert_int_equal(ev_template_parse("ultralytics", NULL, &tpl, &err), 0);
	assert_string_equal(tpl.argv[0], "python3");
	assert_non_null(strstr(tpl.argv[1], "data/ultralytics/yolo_evolve_train.py"));
	assert_true(ev_template_uses(&tpl, "hyp") && ev_template_uses(&tpl, "seed") &&
		    ev_template_uses(&tpl, "project") && ev_template_uses(&tpl, "name"));
	ev_template_free(&tpl);
	/* a venv's python is a symlink: kept as given, never resolved */
	char link[PATH_MAX + 16], spec[PATH_MAX + 32];
	snprintf(link, sizeof(link), "%s/venv-python", tmpdir);
	assert_int_equal(symlink("/bin/sh", link), 0);
	snprintf(spec, sizeof(spec), "ultralytics:%s", link);
	assert_int_equal(ev_template_parse(spec, "other-python", &tpl, &err), 0);
	assert_string_equal(tpl.argv[0], link);
	ev_template_free(&tpl);
	assert_int_equal(ev_template_parse("ultralytics", "/usr/bin/env", &tpl, &err), 0);
	assert_string_equal(tpl.argv[0], "/usr/bin/env");
	ev_template_free(&tpl);
	assert_int_equal(ev_template_parse("ultralytics:/nonexistent/python", NULL, &tpl, &err),
			 -1);
	assert_non_null(strstr(err.msg, "/nonexistent/python"));
}

static void test_log_tail(void **state)
{
	(void)state;
	char path[PATH_MAX + 16];
	snprintf(path, sizeof(path), "%s/tail.log", tmpdir);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	for (int i = 0; i < 1000; i++)
		fprintf(f, "line %d\n", i);
	fprintf(f, "Traceback: boom\x1b[0m\n");
	fclose(f);
	char tail[64];
	ev_log_tail(path, tail, sizeof(tail));
	assert_true(strncmp(tail, "line ", 5) == 0); /* starts at a line */
	assert_non_null(strstr(tail, "line 999\nTraceback: boom [0m\n"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_template_words),
	    cmocka_unit_test(test_template_errors),
	    cmocka_unit_test(test_template_yolov5_and_native),
	    cmocka_unit_test(test_template_expand_is_inert),
	    cmocka_unit_test(test_spawn_runs_in_its_group_and_dir),
	    cmocka_unit_test(test_spawn_missing_program),
	    cmocka_unit_test(test_status_descriptions),
	    cmocka_unit_test(test_orphan_stop),
	    cmocka_unit_test(test_results_reference_file),
	    cmocka_unit_test(test_results_partial_and_bad),
	    cmocka_unit_test(test_results_ultralytics),
	    cmocka_unit_test(test_template_ultralytics),
	    cmocka_unit_test(test_log_tail),
	};
	return cmocka_run_group_tests(tests, make_tmpdir, remove_tmpdir);
}
