/*
 * contract.c - trainer templates, the trainer subprocess and results.csv
 * (see contract.h).
 */
#include "contract.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- templates ------------------------------------------------------------ */

static const char yolov5_args[] =
    " --hyp {hyp} --data {data} --cfg {cfg} --weights {weights} --epochs {epochs}"
    " --batch-size {batch} --img {imgsz} --device {device} --project {project}"
    " --name {name} --exist-ok";
/* data/ultralytics/yolo_evolve_train.py: our launcher of the package's training */
static const char ultralytics_args[] =
    " --hyp {hyp} --data {data} --cfg {cfg} --weights {weights} --epochs {epochs}"
    " --batch {batch} --imgsz {imgsz} --device {device} --project {project}"
    " --name {name} --seed {seed}";
#define ULTRALYTICS_LAUNCHER "data/ultralytics/yolo_evolve_train.py"
static const char native_args[] =
    " --hyp {hyp} --data {data} --cfg {cfg} --weights {weights} --epochs {epochs}"
    " --batch-size {batch} --imgsz {imgsz} --device {device} --project {project}"
    " --name {name} --exist-ok --seed {seed}";

/* Append one word to the template. */
static int push_word(struct ev_template *tpl, const char *word, size_t len)
{
	char **grown = realloc(tpl->argv, (size_t)(tpl->argc + 2) * sizeof(*grown));
	if (grown == NULL)
		return -1;
	tpl->argv = grown;
	tpl->argv[tpl->argc] = strndup(word, len);
	if (tpl->argv[tpl->argc] == NULL)
		return -1;
	tpl->argv[++tpl->argc] = NULL;
	return 0;
}

/* Split like a shell (quotes, backslash) without any expansion. */
static int split_words(const char *spec, struct ev_template *tpl, struct ut_err *err)
{
	struct ut_buf word = {0};
	const char *p = spec;
	int rc = 0;
	while (rc == 0 && *p) {
		while (*p == ' ' || *p == '\t' || *p == '\n')
			p++;
		if (!*p)
			break;
		word.len = 0;
		int in_word = 1;
		while (rc == 0 && in_word && *p) {
			char quote = 0;
			switch (*p) {
			case ' ':
			case '\t':
			case '\n':
				in_word = 0;
				break;
			case '\'':
			case '"':
				quote = *p++;
				while (*p && *p != quote) {
					if (quote == '"' && *p == '\\' && p[1] != '\0')
						p++;
					rc |= ut_buf_append(&word, p++, 1);
				}
				if (*p != quote)
					rc = ut_err_set(
					    err, "trainer template: unterminated %c quote", quote);
				else
					p++;
				break;
			case '\\':
				if (p[1] != '\0')
					p++;
				/* fall through */
			default:
				rc |= ut_buf_append(&word, p++, 1);
			}
		}
		if (rc == 0 && push_word(tpl, word.data ? word.data : "", word.len) != 0)
			rc = ut_err_set(err, "trainer template: out of memory");
	}
	ut_buf_free(&word);
	return rc;
}

static const char *const placeholders[] = {"hyp",     "data",  "cfg",	   "weights",
					   "epochs",  "batch", "imgsz",	   "device",
					   "project", "name",  "save_dir", "seed"};

/* Every {...} in the words must be a known placeholder. */
static int check_placeholders(const struct ev_template *tpl, struct ut_err *err)
{
	int has_hyp = 0;
	for (int i = 0; i < tpl->argc; i++) {
		for (const char *p = strchr(tpl->argv[i], '{'); p; p = strchr(p + 1, '{')) {
			const char *end = strchr(p, '}');
			char q[UT_QUOTE_LEN];
			if (end == NULL)
				return ut_err_set(err, "trainer template: unclosed '{' in '%s'",
						  ut_quote(tpl->argv[i], q, sizeof(q)));
			size_t len = (size_t)(end - p - 1);
			int known = 0;
			for (size_t k = 0; k < UT_ARRAY_LEN(placeholders); k++)
				if (strlen(placeholders[k]) == len &&
				    strncmp(p + 1, placeholders[k], len) == 0)
					known = 1;
			if (!known)
				return ut_err_set(err,
						  "trainer template: unknown placeholder {%.*s}",
						  (int)len, p + 1);
			if (len == 3 && strncmp(p + 1, "hyp", 3) == 0)
				has_hyp = 1;
		}
	}
	if (tpl->argc == 0)
		return ut_err_set(err, "trainer template: empty");
	if (!has_hyp)
		return ut_err_set(err, "trainer template: no {hyp} placeholder, the trainer would "
				       "never see the candidate");
	return 0;
}

/* yolo-train beside our own executable if it is there, else from PATH. */
static void native_program(char *buf, size_t size)
{
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n > 0) {
		self[n] = '\0';
		char *slash = strrchr(self, '/');
		if (slash != NULL) {
			*slash = '\0';
			snprintf(buf, size, "%s/../trainer/yolo-train", self);
			if (access(buf, X_OK) == 0)
				return;
			snprintf(buf, size, "%s/yolo-train", self);
			if (access(buf, X_OK) == 0)
				return;
		}
	}
	snprintf(buf, size, "yolo-train");
}

int ev_template_parse(const char *spec, const char *python, struct ev_template *out,
		      struct ut_err *err)
{
	memset(out, 0, sizeof(*out));
	struct ut_buf full = {0};
	int rc = 0;
	if (strcmp(spec, "native") == 0) {
		char program[PATH_MAX + 32];
		native_program(program, sizeof(program));
		rc = ut_buf_printf(&full, "'%s'%s", program, native_args);
	} else if (strncmp(spec, "yolov5:", 7) == 0) {
		char dir[PATH_MAX];
		if (spec[7] == '\0' || realpath(spec + 7, dir) == NULL)
			return ut_err_set(err, "trainer yolov5:%s: not a directory", spec + 7);
		char script[PATH_MAX + 16];
		snprintf(script, sizeof(script), "%s/train.py", dir);
		if (access(script, R_OK) != 0)
			return ut_err_set(err, "trainer yolov5:%s: no train.py there", spec + 7);
		rc = ut_buf_printf(&full, "'%s' '%s'%s", python && *python ? python : "python3",
				   script, yolov5_args);
	} else if (ev_template_space(spec) == META_SPACE_ULTRALYTICS) {
		char launcher[PATH_MAX];
		if (ut_data_file(ULTRALYTICS_LAUNCHER, launcher, sizeof(launcher)) != 0)
			return ut_err_set(err, "trainer %s: %s is not installed", spec,
					  ULTRALYTICS_LAUNCHER);
		const char *interpreter = spec[11] == ':' && spec[12] != '\0' ? spec + 12
					  : python && *python		      ? python
									      : "python3";
		rc = ut_buf_printf(&full, "'%s' '%s'%s", interpreter, launcher, ultralytics_args);
	} else {
		rc = ut_buf_printf(&full, "%s", spec);
	}
	if (rc != 0)
		return ut_err_set(err, "trainer template: out of memory");
	rc = split_words(full.data, out, err);
	ut_buf_free(&full);
	if (rc == 0)
		rc = check_placeholders(out, err);
	if (rc == 0 && strchr(out->argv[0], '/') != NULL) {
		/*
		 * a relative program path must survive the chdir into save_dir; a
		 * symlink is kept as it is (a venv's bin/python is one, and resolved
		 * it would lose the venv)
		 */
		char absolute[PATH_MAX], cwd[PATH_MAX];
		int len = -1;
		if (out->argv[0][0] == '/')
			len = snprintf(absolute, sizeof(absolute), "%s", out->argv[0]);
		else if (getcwd(cwd, sizeof(cwd)) != NULL)
			len = snprintf(absolute, sizeof(absolute), "%s/%s", cwd, out->argv[0]);
		if (len < 0 || (size_t)len >= sizeof(absolute))
			rc = ut_err_set(err, "trainer %s: path too long", out->argv[0]);
		else if (access(absolute, F_OK) != 0)
			rc = ut_err_set(err, "trainer %s: %s", out->argv[0], strerror(errno));
		else {
			free(out->argv[0]);
			out->argv[0] = strdup(absolute);
			if (out->argv[0] == NULL)
				rc = ut_err_set(err, "trainer template: out of memory");
		}
	}
	if (rc != 0)
		ev_template_free(out);
	return rc;
}

int ev_template_ddp(struct ev_template *tpl, const char *spec, long gpus, struct ut_err *err)
{
	if (gpus <= 1 || strncmp(spec, "yolov5:", 7) != 0 || tpl->argc < 1)
		return 0;
	char nproc[32];
	snprintf(nproc, sizeof(nproc), "%ld", gpus);
	/*
	 * The rendezvous on port 0: torch picks a free port, so DDP candidates
	 * side by side never collide (the default 29500, and --standalone's
	 * 29400 before PyTorch 2, would be shared by all of them).
	 */
	/* clang-format off */
	const char *const launch[] = {"-m", "torch.distributed.run", "--nnodes", "1",
				      "--nproc_per_node", nproc,
				      "--rdzv_backend", "c10d", "--rdzv_endpoint", "localhost:0"};
	/* clang-format on */
	struct ev_template ddp = {0};
	int rc = push_word(&ddp, tpl->argv[0], strlen(tpl->argv[0]));
	for (size_t i = 0; rc == 0 && i < UT_ARRAY_LEN(launch); i++)
		rc = push_word(&ddp, launch[i], strlen(launch[i]));
	for (int i = 1; rc == 0 && i < tpl->argc; i++)
		rc = push_word(&ddp, tpl->argv[i], strlen(tpl->argv[i]));
	if (rc != 0) {
		ev_template_free(&ddp);
		return ut_err_set(err, "trainer template: out of memory");
	}
	ev_template_free(tpl);
	*tpl = ddp;
	return 0;
}

enum meta_space ev_template_space(const char *spec)
{
	if (strcmp(spec, "ultralytics") == 0 || strncmp(spec, "ultralytics:", 12) == 0)
		return META_SPACE_ULTRALYTICS;
	return META_SPACE_YOLOV5;
}

int ev_template_uses(const struct ev_template *tpl, const char *name)
{
	char token[32];
	snprintf(token, sizeof(token), "{%s}", name);
	for (int i = 0; i < tpl->argc; i++)
		if (strstr(tpl->argv[i], token) != NULL)
			return 1;
	return 0;
}

void ev_template_free(struct ev_template *tpl)
{
	ev_argv_free(tpl->argv);
	tpl->argv = NULL;
	tpl->argc = 0;
}

void ev_argv_free(char **argv)
{
	for (char **p = argv; p != NULL && *p != NULL; p++)
		free(*p);
	free(argv);
}

static int expand_word(const char *word, const struct ev_vars *vars, struct ut_buf *out)
{
	char epochs[32], batch[32], imgsz[32], seed[32];
	snprintf(epochs, sizeof(epochs), "%ld", vars->epochs);
	snprintf(batch, sizeof(batch), "%ld", vars->batch);
	snprintf(imgsz, sizeof(imgsz), "%ld", vars->imgsz);
	snprintf(seed, sizeof(seed), "%llu", (unsigned long long)vars->seed);
	const char *values[] = {vars->hyp,     vars->data, vars->cfg,	   vars->weights,
				epochs,	       batch,	   imgsz,	   vars->device,
				vars->project, vars->name, vars->save_dir, seed};
	int rc = ut_buf_append(out, "", 0);
	for (const char *p = word; rc == 0 && *p;) {
		size_t k = UT_ARRAY_LEN(placeholders);
		if (*p == '{')
			for (k = 0; k < UT_ARRAY_LEN(placeholders); k++) {
				size_t len = strlen(placeholders[k]);
				if (strncmp(p + 1, placeholders[k], len) == 0 && p[len + 1] == '}')
					break;
			}
		if (k < UT_ARRAY_LEN(placeholders)) {
			const char *value = values[k] ? values[k] : "";
			rc = ut_buf_append(out, value, strlen(value));
			p += strlen(placeholders[k]) + 2;
		} else {
			rc = ut_buf_append(out, p++, 1);
		}
	}
	return rc;
}

int ev_template_expand(const struct ev_template *tpl, const struct ev_vars *vars, char ***argv,
		       struct ut_err *err)
{
	char **words = calloc((size_t)tpl->argc + 1, sizeof(*words));
	if (words == NULL)
		return ut_err_set(err, "trainer template: out of memory");
	for (int i = 0; i < tpl->argc; i++) {
		struct ut_buf word = {0};
		if (expand_word(tpl->argv[i], vars, &word) != 0) {
			ut_buf_free(&word);
			ev_argv_free(words);
			return ut_err_set(err, "trainer template: out of memory");
		}
		words[i] = word.data;
	}
	*argv = words;
	return 0;
}

/* ---- processes ------------------------------------------------------------ */

long long ev_proc_start_ticks(pid_t pid)
{
	char path[64], text[1024];
	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, text, sizeof(text) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	text[n] = '\0';
	/* field 2 (comm) may hold spaces; count fields after its ')' */
	char *p = strrchr(text, ')');
	if (p == NULL)
		return -1;
	int field = 2;
	for (p++; *p && field < 22; p++)
		if (*p == ' ')
			field++;
	return field == 22 ? strtoll(p, NULL, 10) : -1;
}

int ev_proc_is_alive(const struct ev_proc *proc)
{
	return proc->pid > 0 && ev_proc_start_ticks(proc->pid) == proc->start_ticks;
}

/* In the child, between fork and exec: only async-signal-safe calls. */
/* Descriptors a child needs between fork and exec. */
struct child_fds {
	int output; /* write end of the output pipe, or -1 */
	int report; /* write end: errno if exec fails */
	int go;	    /* read end: one byte lets the child exec, EOF kills it */
	int go_write;
};

static void child_exec(char *const argv[], const char *workdir, const char *log_path,
		       const struct child_fds *fds, char *const env[], pid_t parent)
{
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGPIPE, SIG_DFL);
	setpgid(0, 0);
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() != parent)
		_exit(127); /* the evolver died before we got here */
	int null_fd = open("/dev/null", O_RDONLY);
	int log_fd = log_path ? open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0666) : fds->output;
	int failed = null_fd < 0 || log_fd < 0 || chdir(workdir) != 0 || dup2(null_fd, 0) < 0 ||
		     dup2(log_fd, 1) < 0 || dup2(log_fd, 2) < 0;
	for (char *const *e = env; !failed && e != NULL && *e != NULL; e++)
		failed = putenv(*e) != 0;
	/* wait until the evolver has recorded us; if it dies first, never run */
	close(fds->go_write);
	char go = 0;
	ssize_t got;
	do
		got = read(fds->go, &go, 1);
	while (got < 0 && errno == EINTR);
	if (got != 1)
		_exit(127);
	if (!failed)
		execvp(argv[0], argv);
	int code = errno;
	ssize_t ignored = write(fds->report, &code, sizeof(code));
	(void)ignored;
	_exit(127);
}

int ev_proc_spawn(char *const argv[], const char *workdir, const char *log_path, char *const env[],
		  int hold, struct ev_proc *out, struct ut_err *err)
{
	int report[2] = {-1, -1}, output[2] = {-1, -1}, go[2] = {-1, -1};
	int rc = pipe2(report, O_CLOEXEC) | pipe2(go, O_CLOEXEC);
	if (rc == 0 && log_path == NULL)
		rc = pipe2(output, O_CLOEXEC);
	pid_t parent = getpid();
	pid_t pid = rc == 0 ? fork() : -1;
	if (pid == 0) {
		struct child_fds fds = {output[1], report[1], go[0], go[1]};
		child_exec(argv, workdir, log_path, &fds, env, parent);
	}
	int saved = errno;
	int unused[] = {report[1], output[1], go[0]};
	for (size_t i = 0; i < UT_ARRAY_LEN(unused); i++)
		if (unused[i] >= 0)
			close(unused[i]);
	if (pid < 0) {
		int mine[] = {report[0], output[0], go[1]};
		for (size_t i = 0; i < UT_ARRAY_LEN(mine); i++)
			if (mine[i] >= 0)
				close(mine[i]);
		return ut_err_set(err, "%s: %s", rc == 0 ? "fork" : "pipe", strerror(saved));
	}
	/* also set the group here, so a signal sent right away reaches it */
	setpgid(pid, pid);
	if (output[0] >= 0)
		fcntl(output[0], F_SETFL, fcntl(output[0], F_GETFL) | O_NONBLOCK);
	out->pid = pid;
	out->start_ticks = ev_proc_start_ticks(pid);
	out->out_fd = output[0];
	out->go_fd = go[1];
	out->report_fd = report[0];
	snprintf(out->program, sizeof(out->program), "%s", argv[0]);
	return hold ? 0 : ev_proc_release(out, err);
}

int ev_proc_release(struct ev_proc *proc, struct ut_err *err)
{
	char go = 1;
	ssize_t sent = write(proc->go_fd, &go, 1);
	close(proc->go_fd);
	proc->go_fd = -1;
	int code = 0;
	ssize_t n;
	do
		n = read(proc->report_fd, &code, sizeof(code));
	while (n < 0 && errno == EINTR);
	close(proc->report_fd);
	proc->report_fd = -1;
	if (sent == 1 && n == 0)
		return 0; /* exec succeeded: the report pipe closed with it */
	waitpid(proc->pid, NULL, 0);
	if (proc->out_fd >= 0)
		close(proc->out_fd);
	proc->out_fd = -1;
	return ut_err_set(err, "cannot run trainer %s: %s", proc->program,
			  n > 0 ? strerror(code) : "it did not start");
}

int ev_caplog_open(struct ev_caplog *log, const char *path, long long cap, struct ut_err *err)
{
	snprintf(log->path, sizeof(log->path), "%s", path);
	log->cap = cap > 0 ? cap : 1;
	log->fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0666);
	if (log->fd < 0)
		return ut_err_set(err, "%s: %s", path, strerror(errno));
	struct stat st;
	log->size = fstat(log->fd, &st) == 0 ? (long long)st.st_size : 0;
	return 0;
}

static void caplog_rotate(struct ev_caplog *log)
{
	char old[sizeof(log->path) + 4];
	snprintf(old, sizeof(old), "%s.1", log->path);
	close(log->fd);
	rename(log->path, old);
	log->fd = open(log->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
	log->size = 0;
}

void ev_caplog_write(struct ev_caplog *log, const char *data, size_t len)
{
	while (len > 0 && log->fd >= 0) {
		if (log->size >= log->cap)
			caplog_rotate(log);
		size_t room = (size_t)(log->cap - log->size);
		size_t chunk = len < room ? len : room;
		ssize_t w = write(log->fd, data, chunk);
		if (w <= 0)
			return;
		log->size += w;
		data += w;
		len -= (size_t)w;
	}
}

int ev_caplog_pump(struct ev_caplog *log, int fd)
{
	char chunk[65536];
	/* a bounded amount per call keeps the loop responsive */
	for (int rounds = 0; rounds < 64; rounds++) {
		ssize_t n = read(fd, chunk, sizeof(chunk));
		if (n == 0)
			return 0;
		if (n < 0)
			return errno == EAGAIN || errno == EINTR ? 1 : 0;
		ev_caplog_write(log, chunk, (size_t)n);
	}
	return 1;
}

void ev_caplog_close(struct ev_caplog *log)
{
	if (log->fd >= 0)
		close(log->fd);
	log->fd = -1;
}

/*
 * Does process group pgid hold a process that is not a zombie? kill(-pgid,
 * 0) would also count zombies, which linger where nobody reaps orphans.
 */
static int group_has_live_member(pid_t pgid)
{
	DIR *proc = opendir("/proc");
	if (proc == NULL)
		return kill(-pgid, 0) == 0;
	int found = 0;
	struct dirent *entry;
	while (!found && (entry = readdir(proc)) != NULL) {
		if (entry->d_name[0] < '0' || entry->d_name[0] > '9')
			continue;
		char path[300], text[512];
		snprintf(path, sizeof(path), "/proc/%s/stat", entry->d_name);
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		ssize_t n = read(fd, text, sizeof(text) - 1);
		close(fd);
		if (n <= 0)
			continue;
		text[n] = '\0';
		const char *after = strrchr(text, ')'); /* comm may hold spaces */
		char state;
		long ppid, group;
		if (after != NULL && sscanf(after + 1, " %c %ld %ld", &state, &ppid, &group) == 3)
			found = group == (long)pgid && state != 'Z' && state != 'X';
	}
	closedir(proc);
	return found;
}

int ev_proc_group_alive(const struct ev_proc *proc)
{
	if (proc->pid <= 0)
		return 0;
	long long ticks = ev_proc_start_ticks(proc->pid);
	if (ticks >= 0)
		return ticks == proc->start_ticks; /* a reused pid is not ours */
	/*
	 * The leader is gone but its group may live on (a wrapper's child).
	 * Linux never hands out a pid still used as a process-group id, so a
	 * group with this id is the one we started.
	 */
	return group_has_live_member(proc->pid);
}

/* Wait up to `seconds` for the group to empty; 1 if it did. */
static int wait_group_gone(const struct ev_proc *proc, double seconds)
{
	int pidfd = ev_proc_is_alive(proc) ? (int)syscall(SYS_pidfd_open, proc->pid, 0) : -1;
	if (pidfd >= 0) {
		/* the leader's exit, without polling */
		struct pollfd fd = {.fd = pidfd, .events = POLLIN};
		poll(&fd, 1, (int)(seconds * 1000));
		close(pidfd);
	}
	/* what is left of the group: nothing tells us when it goes, so look */
	for (double waited = 0; group_has_live_member(proc->pid); waited += 0.02) {
		if (waited >= seconds)
			return 0;
		nanosleep(&(struct timespec){0, 20000000}, NULL);
	}
	return 1;
}

void ev_proc_stop_orphan(const struct ev_proc *proc, double grace)
{
	if (!ev_proc_group_alive(proc))
		return;
	kill(-proc->pid, SIGTERM);
	if (!wait_group_gone(proc, grace))
		kill(-proc->pid, SIGKILL);
}

void ev_describe_status(int status, char *buf, size_t size)
{
	if (WIFEXITED(status))
		snprintf(buf, size, "exit status %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(buf, size, "killed by SIG%s",
			 sigabbrev_np(WTERMSIG(status)) ? sigabbrev_np(WTERMSIG(status)) : "?");
	else
		snprintf(buf, size, "wait status %d", status);
}

int ev_exit_code(int status)
{
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return -1;
}

/* ---- results.csv ------------------------------------------------------------ */

void ev_results_pick(const double row[ST_EPOCH_COLS], double results[ST_RESULT_COUNT])
{
	/* precision .. val/cls_loss are columns 4 .. 10 of results.csv */
	for (int r = 0; r < ST_RESULT_COUNT; r++)
		results[r] = row[4 + r];
}

int ev_results_read(const char *path, struct ev_results *out, struct ut_err *err)
{
	memset(out, 0, sizeof(*out));
	if (access(path, F_OK) != 0) {
		snprintf(out->problem, sizeof(out->problem), "no results.csv");
		return 0;
	}
	char *text;
	size_t len;
	if (ut_read_file(path, &text, &len, err) != 0)
		return -1;
	int rc = ev_results_parse(text, len, path, out, err);
	free(text);
	return rc;
}

/*
 * The columns of Ultralytics' results.csv (detection) in the order of
 * YOLOv5's (st_epoch_csv_names): DFL where YOLOv5 has objectness, lr/pg*
 * for x/lr*. Its epochs count from 1, YOLOv5's from 0.
 */
static const char *const ultralytics_names[ST_EPOCH_COLS] = {"epoch",
							     "train/box_loss",
							     "train/dfl_loss",
							     "train/cls_loss",
							     "metrics/precision(B)",
							     "metrics/recall(B)",
							     "metrics/mAP50(B)",
							     "metrics/mAP50-95(B)",
							     "val/box_loss",
							     "val/dfl_loss",
							     "val/cls_loss",
							     "lr/pg0",
							     "lr/pg1",
							     "lr/pg2"};

int ev_results_parse(const char *text, size_t len, const char *source, struct ev_results *out,
		     struct ut_err *err)
{
	memset(out, 0, sizeof(*out));
	/* a last line without its newline is still being written */
	while (len > 0 && text[len - 1] != '\n')
		len--;
	struct st_csv_table csv;
	if (len == 0 || st_csv_parse(text, len, source, &csv, NULL) != 0) {
		snprintf(out->problem, sizeof(out->problem), "results.csv has no complete header");
		return 0;
	}
	long cols[ST_EPOCH_COLS];
	/* told apart by a column only Ultralytics writes: metrics/mAP50-95(B) */
	int ultralytics = st_csv_column(&csv, ultralytics_names[7]) >= 0;
	const char *const *names = ultralytics ? ultralytics_names : st_epoch_csv_names;
	for (int c = 0; c < ST_EPOCH_COLS; c++) {
		cols[c] = st_csv_column(&csv, names[c]);
		if (cols[c] < 0) {
			snprintf(out->problem, sizeof(out->problem),
				 "results.csv has no column '%s'", names[c]);
			st_csv_free(&csv);
			return 0;
		}
	}
	out->rows = malloc((csv.nrows ? csv.nrows : 1) * sizeof(*out->rows));
	if (out->rows == NULL) {
		st_csv_free(&csv);
		return ut_err_set(err, "%s: out of memory", source);
	}
	for (size_t r = 0; r < csv.nrows; r++) {
		const double *cells = csv.cells + r * csv.ncols;
		if (isnan(cells[cols[0]]))
			continue; /* not even an epoch number: garbage */
		for (int c = 0; c < ST_EPOCH_COLS; c++)
			out->rows[out->nrows][c] = cells[cols[c]];
		out->rows[out->nrows][0] -= ultralytics;
		out->nrows++;
	}
	st_csv_free(&csv);
	if (out->nrows == 0) {
		snprintf(out->problem, sizeof(out->problem), "results.csv has no epoch rows");
		return 0;
	}
	double results[ST_RESULT_COUNT];
	ev_results_pick(out->rows[out->nrows - 1], results);
	for (int r = 0; r < ST_RESULT_COUNT; r++) {
		if (!isfinite(results[r])) {
			snprintf(out->problem, sizeof(out->problem),
				 "results.csv: %s is not a finite number", st_result_csv_name(r));
			return 0;
		}
	}
	out->complete = 1;
	return 0;
}

void ev_results_free(struct ev_results *res)
{
	free(res->rows);
	res->rows = NULL;
	res->nrows = 0;
}

void ev_log_tail(const char *path, char *buf, size_t max_bytes)
{
	buf[0] = '\0';
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	struct stat st;
	off_t start = 0;
	if (fstat(fd, &st) == 0 && st.st_size > (off_t)(max_bytes - 1))
		start = st.st_size - (off_t)(max_bytes - 1);
	ssize_t n = pread(fd, buf, max_bytes - 1, start);
	close(fd);
	if (n <= 0) {
		buf[0] = '\0';
		return;
	}
	buf[n] = '\0';
	char *from = buf;
	if (start > 0 && strchr(buf, '\n') != NULL)
		from = strchr(buf, '\n') + 1;
	/* keep it printable on one terminal line per log line */
	for (char *p = from; *p; p++)
		if ((unsigned char)*p < 32 && *p != '\n')
			*p = ' ';
	memmove(buf, from, strlen(from) + 1);
}
