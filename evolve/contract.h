/*
 * contract.h - the trainer contract: argv templates with placeholders, the
 * trainer subprocess (never through a shell), and reading its YOLOv5
 * results.csv.
 *
 * Built-in templates: `native` (yolo-train beside yolo-evolve, else on PATH),
 * `yolov5:DIR` (python3 DIR/train.py with YOLOv5's options) and
 * `ultralytics[:PYTHON]` (our launcher data/ultralytics/yolo_evolve_train.py
 * calling the ultralytics package's YOLO(...).train; its results.csv
 * columns are read as YOLOv5's, DFL in place of objectness); anything
 * else is a user template split into words like a shell would (quotes and
 * backslashes) but with no expansion of any kind.
 */
#ifndef EV_CONTRACT_H
#define EV_CONTRACT_H

#include <stdint.h>
#include <sys/types.h>

#include "store.h"
#include "ut.h"

/* Values of the placeholders {hyp} {data} ... {seed}. */
struct ev_vars {
	const char *hyp, *data, *cfg, *weights, *device, *project, *name, *save_dir;
	long epochs, batch, imgsz;
	uint64_t seed;
};

struct ev_template {
	int argc;
	char **argv;
};

/*
 * Parse a template spec; errors name the spec and the bad placeholder.
 * python is the interpreter of `yolov5:DIR` (NULL or "": python3).
 */
int ev_template_parse(const char *spec, const char *python, struct ev_template *out,
		      struct ut_err *err);
void ev_template_free(struct ev_template *tpl);
/*
 * A candidate on several GPUs (gpus > 1) with the `yolov5:DIR` template
 * (spec): rewrite it into YOLOv5 v7.0's DDP launch, PYTHON -m
 * torch.distributed.run --nnodes 1 --nproc_per_node GPUS --rdzv_backend c10d
 * --rdzv_endpoint localhost:0 DIR/train.py ... (a free port for each).
 * Any other spec, or gpus <= 1: unchanged (yolo-train and the Ultralytics
 * package start their ranks themselves from --device 0,1,..). -1 only when
 * out of memory.
 */
int ev_template_ddp(struct ev_template *tpl, const char *spec, long gpus, struct ut_err *err);
/* The hyperparameter space a trainer spec takes: ultralytics[:PYTHON] Ultralytics', any other
 * YOLOv5's. */
enum meta_space ev_template_space(const char *spec);
/* Does the template pass placeholder {name} (e.g. "data") to the trainer? */
int ev_template_uses(const struct ev_template *tpl, const char *name);
/* Expand placeholders into a NULL-terminated malloc'ed argv. */
int ev_template_expand(const struct ev_template *tpl, const struct ev_vars *vars, char ***argv,
		       struct ut_err *err);
void ev_argv_free(char **argv);

/* A started trainer: its pid is also its process group. */
struct ev_proc {
	pid_t pid;
	long long start_ticks; /* /proc/<pid>/stat starttime, against pid reuse */
	int out_fd;	       /* read end of its stdout+stderr pipe, or -1 */
	int go_fd, report_fd;  /* while held: see ev_proc_release */
	char program[256];
};

/*
 * Start argv in its own process group with cwd = workdir, stdin from
 * /dev/null and stdout+stderr appended to log_path, or, if log_path is
 * NULL, sent into a pipe whose non-blocking read end is out->out_fd (the
 * caller pumps it into a capped log, see ev_caplog); env holds extra
 * "KEY=VALUE" strings (NULL-terminated, may be NULL). The child gets SIGTERM
 * if the evolver dies. Fails (with the reason) if the program cannot be
 * executed.
 */
int ev_proc_spawn(char *const argv[], const char *workdir, const char *log_path, char *const env[],
		  int hold, struct ev_proc *out, struct ut_err *err);
/*
 * With hold = 1 the child waits before exec until ev_proc_release: its pid
 * can be recorded first, and if the evolver dies before releasing it, the
 * child exits without ever running the trainer. Release reports a failed
 * exec as the error.
 */
int ev_proc_release(struct ev_proc *proc, struct ut_err *err);
/* Start time of a live pid, or -1 if it does not exist. */
long long ev_proc_start_ticks(pid_t pid);
/* Is the leader `proc` still the process we started (same pid and start)? */
int ev_proc_is_alive(const struct ev_proc *proc);
/* Does anything of its process group live on (the leader, or its children)? */
int ev_proc_group_alive(const struct ev_proc *proc);
/*
 * Stop a process group we may not be the parent of (an orphan from a killed
 * evolver): SIGTERM, wait up to grace seconds for the leader, then SIGKILL.
 */
void ev_proc_stop_orphan(const struct ev_proc *proc, double grace);

/*
 * A log file that never grows past `cap` bytes: when full it is renamed
 * to PATH.1 (replacing the previous one) and started again, so a trainer
 * that prints gigabytes costs at most 2 x cap of disk.
 */
struct ev_caplog {
	int fd;
	long long size, cap;
	char path[4096];
};
int ev_caplog_open(struct ev_caplog *log, const char *path, long long cap, struct ut_err *err);
/* Append; rotates when full. Write errors are ignored (logs never stop training). */
void ev_caplog_write(struct ev_caplog *log, const char *data, size_t len);
/* Move what the pipe holds now into the log; returns 0 at end of file, 1 if more may come. */
int ev_caplog_pump(struct ev_caplog *log, int fd);
void ev_caplog_close(struct ev_caplog *log);

/* Describe a wait status: "exit status 1", "killed by SIGSEGV". */
void ev_describe_status(int status, char *buf, size_t size);
/* Encode a wait status as the recorded exit_status (code, or 128 + signal). */
int ev_exit_code(int status);

/* What a trainer's results.csv says so far. */
struct ev_results {
	size_t nrows;
	double (*rows)[ST_EPOCH_COLS]; /* in results.csv column order */
	int complete;		       /* last row has all 7 results finite */
	char problem[256];	       /* why not complete, if not */
};
/*
 * Read save_dir/results.csv (absent: zero rows). Columns are matched by
 * name; a row with garbage is not counted.
 */
int ev_results_read(const char *path, struct ev_results *out, struct ut_err *err);
/* The same from text in memory; source names it in messages. */
int ev_results_parse(const char *text, size_t len, const char *source, struct ev_results *out,
		     struct ut_err *err);
void ev_results_free(struct ev_results *res);
/* The 7 evolve.csv results from a results.csv row. */
void ev_results_pick(const double row[ST_EPOCH_COLS], double results[ST_RESULT_COUNT]);

/* The last `max_bytes` of a log file, from a line start, for error reports. */
void ev_log_tail(const char *path, char *buf, size_t max_bytes);

#endif
