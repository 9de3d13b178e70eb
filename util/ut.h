/*
 * ut.h - small helpers shared by every part of yolo-evolve: error messages
 * that travel with a return code, a level-gated logger, number formatting
 * compatible with Python (YOLOv5 writes its files from Python), and file
 * helpers.
 *
 * Convention: functions return 0 on success and -1 on failure; on failure
 * they fill a struct ut_err with one line naming the file, line or key at
 * fault. Only main() prints it and exits.
 */
#ifndef UT_H
#define UT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#define UT_ERR_LEN 1024

struct ut_err {
	char msg[UT_ERR_LEN];
};

/*
 * Fill err (if not NULL) with a formatted message; always returns -1. The
 * message stays one line whatever the arguments hold: control characters
 * come out as \n, \t, \r or \xNN. The arguments may point into err->msg.
 */
int ut_err_set(struct ut_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Bytes of user text that a message quotes; longer text is cut with "...". */
#define UT_QUOTE_MAX 60
/* Room for ut_quote's output (every byte escaped as \xNN, plus "..."). */
#define UT_QUOTE_LEN (UT_QUOTE_MAX * 4 + 4)

/*
 * User text (a column name, a yaml key, a path, a label line) made safe to
 * quote in a one-line message: printable ASCII and valid UTF-8 kept, a
 * backslash doubled, control characters and invalid bytes escaped (\n, \t,
 * \r, \xNN), cut after UT_QUOTE_MAX bytes with "...". ut_quote_n takes
 * len bytes (NULs included). Returns buf, which should hold UT_QUOTE_LEN.
 */
const char *ut_quote(const char *text, char *buf, size_t size);
const char *ut_quote_n(const char *text, size_t len, char *buf, size_t size);
/* A path escaped as ut_quote does, but whole (cut only where buf ends, with "..."). */
const char *ut_quote_path(const char *path, char *buf, size_t size);

enum ut_log_level { UT_LOG_ERROR, UT_LOG_WARN, UT_LOG_INFO, UT_LOG_DEBUG };

/*
 * The logger writes one line per call to stderr (control characters in
 * the message escaped as in ut_err_set); the level is process state set
 * once by main.
 */
void ut_log_set_level(enum ut_log_level level);
/* Would ut_log print at level? (to skip work done only for a message, e.g. a checksum) */
bool ut_log_enabled(enum ut_log_level level);
void ut_log(enum ut_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * Format a double exactly as Python's repr() does (shortest string that
 * reads back to the same double, "1.0" for integers, "1e-05" style
 * exponents). buf must hold at least 32 bytes.
 */
void ut_fmt_pyfloat(double value, char *buf, size_t size);

/* As PyYAML's safe_dump writes a float ("1.0e-05", ".nan", ".inf"). */
void ut_fmt_yamlfloat(double value, char *buf, size_t size);

/* As C/Python "%20.5g" (used by YOLOv5's evolve.csv and results.csv). */
void ut_fmt_g5(double value, char *buf, size_t size);

/* Round to 5 decimal places as Python's round(x, 5) does. */
double ut_round5(double value);

/* Parse a whole string as a finite double; returns -1 on anything else. */
int ut_parse_double(const char *text, double *out);
/* Parse a whole string as a long in [lo, hi]; returns -1 otherwise. */
int ut_parse_long(const char *text, long lo, long hi, long *out);

/* Read a whole file into a NUL-terminated malloc'ed buffer. */
int ut_read_file(const char *path, char **out, size_t *len, struct ut_err *err);
/*
 * Replace a file atomically (temporary file in the same folder + rename):
 * readers see the old or the new content, never a mix. No fsync: files
 * written this way are derived from the database, which is the durable copy.
 */
int ut_write_file_atomic(const char *path, const char *data, size_t len, struct ut_err *err);
/* mkdir -p with mode 0777 (the umask applies). */
int ut_mkdirs(const char *path, struct ut_err *err);
/* Remove a file or folder tree; missing is fine. */
int ut_remove_tree(const char *path, struct ut_err *err);

/* Seconds since the epoch as a double, and as an ISO-8601 UTC string. */
double ut_now(void);
void ut_iso_time(double when, char *buf, size_t size);

/*
 * Fault injection for the crash tests: with YE_CRASH_AT="NAME:N" in the
 * environment the process SIGKILLs itself the N-th time it reaches the
 * point called NAME (N >= 1). Points: "transaction" (inside a database
 * transaction, before COMMIT), "spawned" (a trainer started, not yet
 * recorded), "finished" (a result committed, exports not yet written).
 * Without the variable this is one getenv per call.
 */
void ut_crash_point(const char *name);

/*
 * When the environment variable `name` is unset: set it to value and
 * restart this program with the same argv (execv of /proc/self/exe), for
 * settings a library reads once when it loads (libgomp's OMP_WAIT_POLICY).
 * Returns only when the variable was already set or the exec failed.
 */
void ut_reexec_with_env(const char *name, const char *value, char **argv);

/*
 * The files shipped with yolo-evolve (model yamls, hyp files), found as
 * YOLOv5 finds them under its repository: `path` as given when it exists;
 * else, for a relative path, DATA/path, DATA/models/NAME and
 * DATA/data/hyps/NAME (NAME its last part) in each data folder in turn:
 * the installed one beside the running program (BIN/../share/yolo-evolve,
 * so an installed tree can move), the one of the configured prefix, and the
 * source tree only when the program runs from its build tree. So
 * `--cfg yolov5n.yaml`, `--cfg models/yolov5n.yaml` and
 * `--hyp data/hyps/hyp.scratch-low.yaml` work from any folder. out gets the
 * path found; returns -1 (out = path) when there is none.
 */
int ut_data_file(const char *path, char *out, size_t size);

/* Dynamic string. */
struct ut_buf {
	char *data;
	size_t len, cap;
};
int ut_buf_printf(struct ut_buf *buf, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int ut_buf_append(struct ut_buf *buf, const char *data, size_t len);
void ut_buf_free(struct ut_buf *buf);

#define UT_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif
