/*
 * slurm.c - the Slurm launcher (see slurm.h).
 */
#include "slurm.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "contract.h"

extern char **environ;

/* ---- a growing argv ------------------------------------------------------------ */

struct words {
	char **v;
	size_t n, cap;
	int oom;
};

static void push_n(struct words *w, const char *s, size_t len)
{
	if (w->oom)
		return;
	if (w->n + 2 > w->cap) {
		size_t cap = w->cap ? 2 * w->cap : 32;
		char **grown = realloc(w->v, cap * sizeof(*grown));
		if (grown == NULL) {
			w->oom = 1;
			return;
		}
		w->v = grown;
		w->cap = cap;
	}
	char *copy = strndup(s, len);
	if (copy == NULL) {
		w->oom = 1;
		return;
	}
	w->v[w->n++] = copy;
	w->v[w->n] = NULL;
}

static void push(struct words *w, const char *s)
{
	push_n(w, s, strlen(s));
}

/* Push prefix followed by value as one word. */
static void push_cat(struct words *w, const char *prefix, const char *value)
{
	struct ut_buf b = {0};
	if (ut_buf_append(&b, prefix, strlen(prefix)) != 0 ||
	    ut_buf_append(&b, value, strlen(value)) != 0)
		w->oom = 1;
	else
		push_n(w, b.data, b.len);
	ut_buf_free(&b);
}

static void words_free(struct words *w)
{
	for (size_t i = 0; i < w->n; i++)
		free(w->v[i]);
	free(w->v);
	memset(w, 0, sizeof(*w));
}

/*
 * Split like a shell without any expansion: blanks separate words, '...'
 * is literal, "..." is literal except that a backslash keeps the next
 * character, and a backslash outside quotes keeps the next character (the
 * same rules as the trainer template, trainer.c). A word may mix quoted
 * and unquoted parts; '' is an empty word.
 */
static int split_args(const char *text, struct words *w, struct ut_err *err)
{
	struct ut_buf word = {0};
	const char *p = text ? text : "";
	int rc = 0;
	for (;;) {
		while (*p == ' ' || *p == '\t' || *p == '\n')
			p++;
		if (*p == '\0')
			break;
		word.len = 0;
		while (rc == 0 && *p && *p != ' ' && *p != '\t' && *p != '\n') {
			if (*p == '\'' || *p == '"') {
				char quote = *p++;
				while (rc == 0 && *p && *p != quote) {
					if (quote == '"' && *p == '\\' && p[1] != '\0')
						p++;
					rc = ut_buf_append(&word, p++, 1);
				}
				if (rc == 0 && *p != quote) {
					char q[UT_QUOTE_LEN];
					ut_buf_free(&word);
					return ut_err_set(
					    err, "--slurm-args: unterminated %c quote in '%s'",
					    quote, ut_quote(text, q, sizeof(q)));
				}
				p++;
			} else {
				if (*p == '\\' && p[1] != '\0')
					p++;
				rc = ut_buf_append(&word, p++, 1);
			}
		}
		if (rc != 0)
			break;
		push_n(w, word.data ? word.data : "", word.len);
	}
	ut_buf_free(&word);
	if (rc != 0 || w->oom)
		return ut_err_set(err, "--slurm-args: out of memory");
	return 0;
}

int ev_slurm_check_args(const char *slurm_args, struct ut_err *err)
{
	struct words w = {0};
	int rc = split_args(slurm_args, &w, err);
	words_free(&w);
	return rc;
}

/* ---- the srun command line ------------------------------------------------------ */

static int in_allocation(void)
{
	const char *id = getenv("SLURM_JOB_ID");
	if (id == NULL || *id == '\0')
		id = getenv("SLURM_JOBID");
	return id != NULL && *id != '\0';
}

/*
 * Variables that describe the surrounding job or step (SLURM_JOB_ID,
 * SLURM_NTASKS, SLURM_CPUS_PER_TASK, SLURM_STEP_*, SLURM_JOB_GPUS, ... and
 * 22.05's SRUN_CPUS_PER_TASK): srun reads many of them as options, so a
 * job of its own must not see them. Kept: the configuration file and the
 * options a user sets for every job and a job's environment never sets.
 */
static int drop_for_submit(const char *entry, size_t name_len)
{
	static const char *const keep[] = {"SLURM_CONF",  "SLURM_ACCOUNT",     "SLURM_PARTITION",
					   "SLURM_QOS",	  "SLURM_RESERVATION", "SLURM_CLUSTERS",
					   "SLURM_WCKEY", "SLURM_TIMELIMIT"};
	if (name_len == 18 && strncmp(entry, "SRUN_CPUS_PER_TASK", 18) == 0)
		return 1;
	if (strncmp(entry, "SLURM_", 6) != 0)
		return 0;
	for (size_t k = 0; k < UT_ARRAY_LEN(keep); k++)
		if (strlen(keep[k]) == name_len && strncmp(entry, keep[k], name_len) == 0)
			return 0;
	return 1;
}

int ev_slurm_wrap(const struct ev_slurm_job *job, char *const argv[], char ***out,
		  struct ut_err *err)
{
	*out = NULL;
	if (argv == NULL || argv[0] == NULL)
		return ut_err_set(err, "slurm launcher: empty trainer command");
	struct words user = {0}, w = {0};
	if (split_args(job->slurm_args, &user, err) != 0) {
		words_free(&user);
		return -1;
	}
	int inside = in_allocation();
	if (job->submit && inside) {
		int any = 0;
		for (char **e = environ; e != NULL && *e != NULL; e++) {
			const char *eq = strchr(*e, '=');
			size_t len = eq ? (size_t)(eq - *e) : strlen(*e);
			if (!drop_for_submit(*e, len))
				continue;
			if (!any)
				push(&w, "env");
			any = 1;
			push(&w, "-u");
			push_n(&w, *e, len);
		}
	}
	push(&w, "srun");
	push(&w, "--ntasks=1");
	push(&w, "--nodes=1");
	if (inside && !job->submit)
		push(&w, "--exact");
	if (job->gpus > 0) {
		char gres[32];
		snprintf(gres, sizeof(gres), "--gres=gpu:%d", job->gpus);
		push(&w, gres);
	}
	if (job->job_name != NULL && *job->job_name)
		push_cat(&w, "--job-name=", job->job_name);
	for (size_t i = 0; i < user.n; i++)
		push(&w, user.v[i]);
	push(&w, "--");
	for (char *const *a = argv; *a != NULL; a++)
		push(&w, *a);
	words_free(&user);
	if (w.oom) {
		words_free(&w);
		return ut_err_set(err, "slurm launcher: out of memory");
	}
	*out = w.v;
	return 0;
}

int ev_slurm_wait_status(int status)
{
	if (WIFEXITED(status)) {
		int code = WEXITSTATUS(status);
		if (code > 128 && code <= 128 + 64)
			return code - 128; /* the wait status of "killed by signal N", no core */
	}
	return status;
}

/* ---- cancelling by name --------------------------------------------------------- */

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/*
 * Run argv (PATH search, no shell) with stdin and stderr on /dev/null, a
 * clean signal mask and default dispositions (the evolver blocks SIGINT,
 * SIGTERM and SIGCHLD for its signalfd), in a process group of its own;
 * up to size - 1 bytes of its stdout go to out. Killed after timeout
 * seconds. Returns its wait status, or -1 if it could not run.
 */
static int run_capture(char *const argv[], char *out, size_t size, double timeout)
{
	int fds[2];
	if (pipe2(fds, O_CLOEXEC) != 0)
		return -1;
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	posix_spawn_file_actions_init(&fa);
	posix_spawnattr_init(&attr);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	sigset_t none, dfl;
	sigemptyset(&none);
	sigemptyset(&dfl);
	sigaddset(&dfl, SIGINT);
	sigaddset(&dfl, SIGTERM);
	sigaddset(&dfl, SIGCHLD);
	sigaddset(&dfl, SIGPIPE);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setsigdefault(&attr, &dfl);
	posix_spawnattr_setpgroup(&attr, 0);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
					    POSIX_SPAWN_SETPGROUP);
	pid_t pid;
	int rc = posix_spawnp(&pid, argv[0], &fa, &attr, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	close(fds[1]);
	if (rc != 0) {
		close(fds[0]);
		return -1;
	}
	size_t len = 0;
	double deadline = now_s() + timeout;
	int killed = 0;
	for (;;) {
		double left = deadline - now_s();
		if (left <= 0) {
			kill(-pid, SIGKILL);
			killed = 1;
			break;
		}
		struct pollfd pfd = {fds[0], POLLIN, 0};
		int n = poll(&pfd, 1, (int)(left * 1000) + 1);
		if (n < 0 && errno != EINTR)
			break;
		if (n <= 0)
			continue;
		char chunk[4096];
		ssize_t got = read(fds[0], chunk, sizeof(chunk));
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			break;
		size_t take = (size_t)got;
		if (size > 0 && take > size - 1 - len)
			take = size - 1 - len;
		memcpy(out + len, chunk, take);
		len += take;
	}
	close(fds[0]);
	if (size > 0)
		out[len] = '\0';
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	return killed ? -1 : status;
}

/* Append the ids (one per line) in text to w, skipping steps of jobs in `jobs`. */
static void collect_ids(const char *text, struct words *w, const struct words *jobs)
{
	const char *p = text;
	while (*p) {
		size_t len = strcspn(p, " \t\n");
		int ok = len > 0 && strspn(p, "0123456789._+") == len;
		for (size_t j = 0; ok && jobs != NULL && j < jobs->n; j++) {
			size_t jl = strlen(jobs->v[j]);
			if (len > jl && strncmp(p, jobs->v[j], jl) == 0 && p[jl] == '.')
				ok = 0; /* its job is cancelled already */
		}
		if (ok)
			push_n(w, p, len);
		p += len;
		p += strspn(p, " \t\n");
	}
}

int ev_slurm_cancel(const char *job_name)
{
	if (job_name == NULL || *job_name == '\0')
		return -1;
	char user[32], name[512], out[16384];
	snprintf(user, sizeof(user), "--user=%ld", (long)getuid());
	snprintf(name, sizeof(name), "--name=%s", job_name);
	struct words jobs = {0}, ids = {0};
	/* jobs of their own (--slurm-submit, or srun outside an allocation) */
	char *jobs_argv[] = {"squeue", "--noheader", user, name, "--format=%i", NULL};
	int st = run_capture(jobs_argv, out, sizeof(out), 10);
	if (st < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
		return -1;
	collect_ids(out, &jobs, NULL);
	/* steps inside an allocation (their name is the step's) */
	char *steps_argv[] = {"squeue", "--noheader", "--steps", user, name, "--format=%i", NULL};
	st = run_capture(steps_argv, out, sizeof(out), 10);
	if (st < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		words_free(&jobs);
		return -1;
	}
	collect_ids(out, &ids, &jobs);
	for (size_t j = 0; j < jobs.n; j++)
		push(&ids, jobs.v[j]);
	words_free(&jobs);
	int count = (int)ids.n;
	if (ids.oom) {
		words_free(&ids);
		return -1;
	}
	if (count == 0) {
		words_free(&ids);
		return 0;
	}
	struct words cmd = {0};
	push(&cmd, "scancel");
	push(&cmd, "--quiet");
	for (size_t i = 0; i < ids.n; i++)
		push(&cmd, ids.v[i]);
	words_free(&ids);
	if (cmd.oom) {
		words_free(&cmd);
		return -1;
	}
	st = run_capture(cmd.v, out, sizeof(out), 10);
	words_free(&cmd);
	if (st < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
		return -1;
	return count;
}
