/*
 * test_slurm.c - the Slurm launcher without a cluster: the srun command
 * line (inside and outside an allocation, --slurm-submit, quoting of
 * --slurm-args), srun exit codes as wait statuses, and ev_slurm_cancel
 * against stand-in squeue/scancel programs on PATH. The real cluster is
 * tests/e2e/slurm.sh.
 */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "contract.h"
#include "slurm.h"

static char tmpdir[PATH_MAX];

static int make_tmpdir(void **state)
{
	(void)state;
	const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	snprintf(tmpdir, sizeof(tmpdir), "%s/ye_slurm_XXXXXX", base);
	return mkdtemp(tmpdir) == NULL ? -1 : 0;
}

static int remove_tmpdir(void **state)
{
	(void)state;
	return ut_remove_tree(tmpdir, NULL);
}

/* Remove every SLURM_* variable: the tests choose the environment. */
static void clear_slurm_env(void)
{
	extern char **environ;
	for (int again = 1; again;) {
		again = 0;
		for (char **e = environ; e != NULL && *e != NULL; e++) {
			if (strncmp(*e, "SLURM_", 6) == 0 || strncmp(*e, "SRUN_", 5) == 0) {
				char name[256];
				snprintf(name, sizeof(name), "%.*s", (int)strcspn(*e, "="), *e);
				unsetenv(name);
				again = 1;
				break;
			}
		}
	}
}

/* The argv joined with single spaces. */
static void joined(char **argv, char *buf, size_t size)
{
	buf[0] = '\0';
	for (char **a = argv; *a != NULL; a++)
		snprintf(buf + strlen(buf), size - strlen(buf), "%s%s", a == argv ? "" : " ", *a);
}

static char *const trainer[] = {"/opt/fx", "--hyp", "/r/g 1/hyp.yaml", "--epochs", "3", NULL};

static void expect_wrap(const struct ev_slurm_job *job, const char *expected)
{
	char **out = NULL, text[4096];
	struct ut_err err = {{0}};
	assert_int_equal(ev_slurm_wrap(job, trainer, &out, &err), 0);
	joined(out, text, sizeof(text));
	assert_string_equal(text, expected);
	ev_argv_free(out);
}

static void test_outside_allocation(void **state)
{
	(void)state;
	clear_slurm_env();
	struct ev_slurm_job job = {.slurm_args = "", .gpus = 0, .job_name = "ye-exp-g3"};
	expect_wrap(
	    &job, "srun --ntasks=1 --nodes=1 --job-name=ye-exp-g3 -- /opt/fx --hyp /r/g 1/hyp.yaml"
		  " --epochs 3");
	job.gpus = 1;
	job.slurm_args = NULL;
	expect_wrap(&job,
		    "srun --ntasks=1 --nodes=1 --gres=gpu:1 --job-name=ye-exp-g3 -- /opt/fx --hyp"
		    " /r/g 1/hyp.yaml --epochs 3");
	/* outside an allocation --slurm-submit changes nothing: srun allocates anyway */
	job.submit = 1;
	setenv("SLURM_CONF", "/etc/slurm/x.conf", 1);
	expect_wrap(&job,
		    "srun --ntasks=1 --nodes=1 --gres=gpu:1 --job-name=ye-exp-g3 -- /opt/fx --hyp"
		    " /r/g 1/hyp.yaml --epochs 3");
	clear_slurm_env();
}

static void test_inside_allocation(void **state)
{
	(void)state;
	clear_slurm_env();
	setenv("SLURM_JOB_ID", "42", 1);
	setenv("SLURM_NTASKS", "4", 1);
	struct ev_slurm_job job = {
	    .slurm_args = "--partition=gpu  --time 2:00:00", .gpus = 1, .job_name = "ye-exp-g3"};
	expect_wrap(&job,
		    "srun --ntasks=1 --nodes=1 --exact --gres=gpu:1 --job-name=ye-exp-g3"
		    " --partition=gpu --time 2:00:00 -- /opt/fx --hyp /r/g 1/hyp.yaml --epochs 3");
	/* a candidate on two GPUs (--gpus-per-candidate 2) asks for both */
	job.gpus = 2;
	expect_wrap(&job,
		    "srun --ntasks=1 --nodes=1 --exact --gres=gpu:2 --job-name=ye-exp-g3"
		    " --partition=gpu --time 2:00:00 -- /opt/fx --hyp /r/g 1/hyp.yaml --epochs 3");
	/* the old spelling alone also means "inside" */
	unsetenv("SLURM_JOB_ID");
	setenv("SLURM_JOBID", "42", 1);
	job.slurm_args = NULL;
	job.job_name = NULL;
	job.gpus = 0;
	expect_wrap(
	    &job, "srun --ntasks=1 --nodes=1 --exact -- /opt/fx --hyp /r/g 1/hyp.yaml --epochs 3");
	clear_slurm_env();
}

static void test_submit_inside_allocation(void **state)
{
	(void)state;
	clear_slurm_env();
	setenv("SLURM_JOB_ID", "42", 1);
	setenv("SLURM_JOBID", "42", 1);
	setenv("SLURM_CPUS_PER_TASK", "8", 1);
	setenv("SRUN_CPUS_PER_TASK", "8", 1);
	setenv("SLURM_CONF", "/etc/slurm/x.conf", 1);
	setenv("SLURM_PARTITION", "gpu", 1);
	setenv("SLURMD_NODENAME", "n1", 1);
	struct ev_slurm_job job = {.slurm_args = "", .gpus = 1, .submit = 1, .job_name = "n"};
	char **out = NULL, text[4096];
	struct ut_err err = {{0}};
	assert_int_equal(ev_slurm_wrap(&job, trainer, &out, &err), 0);
	joined(out, text, sizeof(text));
	assert_string_equal(out[0], "env");
	/* every job variable goes, in environment order; the kept ones stay */
	assert_non_null(strstr(text, " -u SLURM_JOB_ID "));
	assert_non_null(strstr(text, " -u SLURM_JOBID "));
	assert_non_null(strstr(text, " -u SLURM_CPUS_PER_TASK "));
	assert_non_null(strstr(text, " -u SRUN_CPUS_PER_TASK "));
	assert_null(strstr(text, "SLURM_CONF"));
	assert_null(strstr(text, "SLURM_PARTITION"));
	assert_null(strstr(text, "SLURMD_NODENAME"));
	const char *srun = strstr(text, " srun ");
	assert_non_null(srun);
	assert_string_equal(srun, " srun --ntasks=1 --nodes=1 --gres=gpu:1 --job-name=n -- /opt/fx"
				  " --hyp /r/g 1/hyp.yaml --epochs 3");
	ev_argv_free(out);
	clear_slurm_env();
}

static void test_quoting(void **state)
{
	(void)state;
	clear_slurm_env();
	struct ev_slurm_job job = {.slurm_args =
				       "--comment='a b' \"--x=\\\"q\\\"\" --y=$HOME\\ z '' --w=*",
				   .job_name = "n"};
	char **out = NULL;
	struct ut_err err = {{0}};
	assert_int_equal(ev_slurm_wrap(&job, trainer, &out, &err), 0);
	assert_string_equal(out[4], "--comment=a b");
	assert_string_equal(out[5], "--x=\"q\"");
	assert_string_equal(out[6], "--y=$HOME z"); /* no expansion of any kind */
	assert_string_equal(out[7], "");
	assert_string_equal(out[8], "--w=*");
	assert_string_equal(out[9], "--");
	ev_argv_free(out);

	const char *bad[] = {"--comment='a b", "-p \"gpu", "'"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		job.slurm_args = bad[i];
		out = NULL;
		memset(&err, 0, sizeof(err));
		assert_int_equal(ev_slurm_wrap(&job, trainer, &out, &err), -1);
		assert_null(out);
		assert_non_null(strstr(err.msg, "--slurm-args"));
		assert_null(strchr(err.msg, '\n'));
		assert_int_equal(ev_slurm_check_args(bad[i], &err), -1);
	}
	assert_int_equal(ev_slurm_check_args("-p gpu --time='1:00:00'", &err), 0);
	assert_int_equal(ev_slurm_check_args(NULL, &err), 0);
	char *const empty[] = {NULL};
	job.slurm_args = "";
	assert_int_equal(ev_slurm_wrap(&job, empty, &out, &err), -1);
}

static void test_wait_status(void **state)
{
	(void)state;
	int st = ev_slurm_wait_status(139 << 8); /* srun: the task got SIGSEGV */
	assert_true(WIFSIGNALED(st));
	assert_int_equal(WTERMSIG(st), 11);
	st = ev_slurm_wait_status(137 << 8);
	assert_true(WIFSIGNALED(st));
	assert_int_equal(WTERMSIG(st), 9);
	st = ev_slurm_wait_status(3 << 8);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 3);
	st = ev_slurm_wait_status(128 << 8);
	assert_true(WIFEXITED(st));
	st = ev_slurm_wait_status(255 << 8);
	assert_true(WIFEXITED(st));
	assert_int_equal(ev_slurm_wait_status(15), 15); /* srun itself killed: unchanged */
}

static void write_script(const char *name, const char *body)
{
	char path[PATH_MAX + 64];
	snprintf(path, sizeof(path), "%s/bin/%s", tmpdir, name);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fprintf(f, "#!/bin/sh\n%s\n", body);
	fclose(f);
	assert_int_equal(chmod(path, 0755), 0);
}

static void read_text(const char *name, char *buf, size_t size)
{
	char path[PATH_MAX + 64];
	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	buf[0] = '\0';
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return;
	size_t n = fread(buf, 1, size - 1, f);
	buf[n] = '\0';
	fclose(f);
}

static void test_cancel(void **state)
{
	(void)state;
	char bin[PATH_MAX + 8], body[PATH_MAX * 2 + 512], text[4096], old_path[8192];
	snprintf(old_path, sizeof(old_path), "%s",
		 getenv("PATH") ? getenv("PATH") : "/usr/bin:/bin");
	snprintf(bin, sizeof(bin), "%s/bin", tmpdir);
	assert_int_equal(mkdir(bin, 0755), 0);
	/* squeue: job 7 (a job of its own) and its step, plus a step of allocation 5 */
	snprintf(body, sizeof(body),
		 "echo \"$*\" >> '%s/squeue.args'\n"
		 "case \"$*\" in *--steps*) printf '7.0\\n5.3\\n' ;; *) printf '7\\n' ;; esac",
		 tmpdir);
	write_script("squeue", body);
	snprintf(body, sizeof(body), "echo \"$*\" >> '%s/scancel.args'", tmpdir);
	write_script("scancel", body);
	setenv("PATH", bin, 1);
	assert_int_equal(ev_slurm_cancel("ye-exp-g3"), 2);
	read_text("scancel.args", text, sizeof(text));
	assert_string_equal(text, "--quiet 5.3 7\n");
	read_text("squeue.args", text, sizeof(text));
	char expected[256];
	snprintf(expected, sizeof(expected),
		 "--noheader --user=%ld --name=ye-exp-g3 --format=%%i\n"
		 "--noheader --steps --user=%ld --name=ye-exp-g3 --format=%%i\n",
		 (long)getuid(), (long)getuid());
	assert_string_equal(text, expected);

	/* nothing of that name: no scancel */
	write_script("squeue", "exit 0");
	snprintf(body, sizeof(body), "%s/scancel.args", tmpdir);
	unlink(body);
	assert_int_equal(ev_slurm_cancel("ye-exp-g3"), 0);
	read_text("scancel.args", text, sizeof(text));
	assert_string_equal(text, "");

	/* squeue fails (no controller), or is missing */
	write_script("squeue", "echo 'slurm_load_jobs error' >&2; exit 1");
	assert_int_equal(ev_slurm_cancel("ye-exp-g3"), -1);
	snprintf(body, sizeof(body), "%s/squeue", bin);
	unlink(body);
	assert_int_equal(ev_slurm_cancel("ye-exp-g3"), -1);
	assert_int_equal(ev_slurm_cancel(""), -1);
	setenv("PATH", old_path, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_outside_allocation),
	    cmocka_unit_test(test_inside_allocation),
	    cmocka_unit_test(test_submit_inside_allocation),
	    cmocka_unit_test(test_quoting),
	    cmocka_unit_test(test_wait_status),
	    cmocka_unit_test(test_cancel),
	};
	return cmocka_run_group_tests(tests, make_tmpdir, remove_tmpdir);
}
