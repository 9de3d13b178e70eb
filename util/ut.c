/*
 * ut.c - error, logging, number formatting and file helpers (see ut.h).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "ut.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Length of the valid UTF-8 sequence of 2-4 bytes at p (at most avail), else 0. */
static size_t utf8_sequence(const unsigned char *p, size_t avail)
{
	size_t len = p[0] >= 0xf0 && p[0] <= 0xf4 ? 4 : p[0] >= 0xe0 ? 3 : p[0] >= 0xc2 ? 2 : 0;
	if (len == 0 || len > avail)
		return 0;
	for (size_t i = 1; i < len; i++)
		if ((p[i] & 0xc0) != 0x80)
			return 0;
	/* no overlong forms, surrogates or code points past U+10FFFF */
	if ((p[0] == 0xe0 && p[1] < 0xa0) || (p[0] == 0xed && p[1] > 0x9f) ||
	    (p[0] == 0xf0 && p[1] < 0x90) || (p[0] == 0xf4 && p[1] > 0x8f))
		return 0;
	return len;
}

/* One control byte as its escape ("\n", "\x1b") into out (5 bytes); returns its length. */
static size_t escape_control(unsigned char c, char *out)
{
	static const char names[] = {['\n'] = 'n', ['\t'] = 't', ['\r'] = 'r'};
	if (c < sizeof(names) && names[c] != 0) {
		out[0] = '\\';
		out[1] = names[c];
		return 2;
	}
	snprintf(out, 5, "\\x%02x", c);
	return 4;
}

/*
 * Copy len bytes of text into buf (size > 0) with control characters
 * escaped; with `quoting`, also backslashes, invalid UTF-8 and NULs, and
 * the copy cut after `max` bytes of text, or where buf ends, with "...".
 */
static void escape_text(const char *text, size_t len, int quoting, size_t max, char *buf,
			size_t size)
{
	const unsigned char *p = (const unsigned char *)text;
	size_t n = 0, i = 0;
	size_t room = quoting && size > 4 ? size - 3 : size; /* quoting keeps room for "..." */
	while (i < len && (quoting || p[i] != '\0')) {
		char piece[8];
		size_t piece_len = 1, used = 1;
		if (quoting && i >= max) {
			memcpy(piece, "...", 3);
			piece_len = 3;
			used = len - i;
		} else if (p[i] < 0x20 || p[i] == 0x7f) {
			piece_len = escape_control(p[i], piece);
		} else if (quoting && p[i] == '\\') {
			memcpy(piece, "\\\\", 2);
			piece_len = 2;
		} else if (p[i] >= 0x80 && quoting) {
			used = utf8_sequence(p + i, len - i);
			piece_len = used;
			if (used == 0) {
				snprintf(piece, sizeof(piece), "\\x%02x", p[i]);
				piece_len = 4;
				used = 1;
			} else {
				memcpy(piece, p + i, used);
			}
		} else {
			piece[0] = (char)p[i];
		}
		if (n + piece_len >= room) {
			if (room != size) { /* the room kept for it */
				memcpy(buf + n, "...", 3);
				n += 3;
			}
			break;
		}
		memcpy(buf + n, piece, piece_len);
		n += piece_len;
		i += used;
	}
	buf[n] = '\0';
}

const char *ut_quote_n(const char *text, size_t len, char *buf, size_t size)
{
	if (size == 0)
		return buf;
	escape_text(text != NULL ? text : "", text != NULL ? len : 0, 1, UT_QUOTE_MAX, buf, size);
	return buf;
}

const char *ut_quote_path(const char *path, char *buf, size_t size)
{
	if (size == 0)
		return buf;
	escape_text(path != NULL ? path : "", path != NULL ? strlen(path) : 0, 1, (size_t)-1, buf,
		    size);
	return buf;
}

const char *ut_quote(const char *text, char *buf, size_t size)
{
	return ut_quote_n(text, text != NULL ? strlen(text) : 0, buf, size);
}

int ut_err_set(struct ut_err *err, const char *fmt, ...)
{
	if (err != NULL) {
		char raw[UT_ERR_LEN];
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(raw, sizeof(raw), fmt, ap);
		va_end(ap);
		escape_text(raw, strlen(raw), 0, 0, err->msg, sizeof(err->msg));
	}
	return -1;
}

static enum ut_log_level log_level = UT_LOG_INFO;

void ut_log_set_level(enum ut_log_level level)
{
	log_level = level;
}

bool ut_log_enabled(enum ut_log_level level)
{
	return level <= log_level;
}

void ut_log(enum ut_log_level level, const char *fmt, ...)
{
	static const char *const prefix[] = {"error: ", "warning: ", "", "debug: "};
	if (level > log_level)
		return;
	char raw[4096], line[4096];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(raw, sizeof(raw), fmt, ap);
	va_end(ap);
	escape_text(raw, strlen(raw), 0, 0, line, sizeof(line));
	fprintf(stderr, "%s%s\n", prefix[level], line);
}

/* Shortest "%.*e" digits that read back to value exactly. */
static int shortest_digits(double value, char *mant, size_t size, int *exp10)
{
	char tmp[64];
	for (int prec = 0; prec < 17; prec++) {
		snprintf(tmp, sizeof(tmp), "%.*e", prec, value);
		if (strtod(tmp, NULL) == value || prec == 16)
			break;
	}
	/* tmp is "[-]d.ddddde[+-]xx" */
	char *e = strchr(tmp, 'e');
	*exp10 = atoi(e + 1);
	size_t n = 0;
	for (const char *p = tmp; p < e && n + 1 < size; p++)
		if (*p >= '0' && *p <= '9')
			mant[n++] = *p;
	while (n > 1 && mant[n - 1] == '0')
		n--;
	mant[n] = '\0';
	return (int)n;
}

void ut_fmt_pyfloat(double value, char *buf, size_t size)
{
	if (isnan(value)) {
		snprintf(buf, size, "nan");
		return;
	}
	if (isinf(value)) {
		snprintf(buf, size, value < 0 ? "-inf" : "inf");
		return;
	}
	if (value == 0) {
		snprintf(buf, size, signbit(value) ? "-0.0" : "0.0");
		return;
	}
	char mant[32];
	int exp10;
	int ndig = shortest_digits(fabs(value), mant, sizeof(mant), &exp10);
	const char *sign = value < 0 ? "-" : "";
	if (exp10 < -4 || exp10 >= 16) {
		/* Python: d[.ddd]e[+-]XX, at least two exponent digits */
		snprintf(buf, size, "%s%c%s%s%se%c%02d", sign, mant[0], ndig > 1 ? "." : "",
			 mant + 1, "", exp10 < 0 ? '-' : '+', abs(exp10));
		return;
	}
	char out[64];
	size_t n = 0;
	if (exp10 < 0) {
		n += (size_t)snprintf(out, sizeof(out), "0.");
		for (int i = 0; i < -exp10 - 1; i++)
			out[n++] = '0';
		for (int i = 0; i < ndig; i++)
			out[n++] = mant[i];
	} else {
		for (int i = 0; i <= exp10; i++)
			out[n++] = i < ndig ? mant[i] : '0';
		out[n++] = '.';
		if (ndig > exp10 + 1)
			for (int i = exp10 + 1; i < ndig; i++)
				out[n++] = mant[i];
		else
			out[n++] = '0';
	}
	out[n] = '\0';
	snprintf(buf, size, "%s%s", sign, out);
}

void ut_fmt_yamlfloat(double value, char *buf, size_t size)
{
	if (isnan(value)) {
		snprintf(buf, size, ".nan");
		return;
	}
	if (isinf(value)) {
		snprintf(buf, size, value < 0 ? "-.inf" : ".inf");
		return;
	}
	char repr[40];
	ut_fmt_pyfloat(value, repr, sizeof(repr));
	char *e = strchr(repr, 'e');
	if (e != NULL && strchr(repr, '.') == NULL) {
		/* PyYAML turns 1e-05 into 1.0e-05 so it stays a float */
		*e = '\0';
		snprintf(buf, size, "%s.0e%s", repr, e + 1);
		return;
	}
	snprintf(buf, size, "%s", repr);
}

void ut_fmt_g5(double value, char *buf, size_t size)
{
	snprintf(buf, size, "%20.5g", value);
}

double ut_round5(double value)
{
	char tmp[400];
	if (!isfinite(value))
		return value;
	snprintf(tmp, sizeof(tmp), "%.5f", value);
	return strtod(tmp, NULL);
}

int ut_parse_double(const char *text, double *out)
{
	char *end;
	if (text == NULL || *text == '\0')
		return -1;
	errno = 0;
	double value = strtod(text, &end);
	while (*end == ' ' || *end == '\t')
		end++;
	if (*end != '\0' || errno == ERANGE || !isfinite(value))
		return -1;
	*out = value;
	return 0;
}

int ut_parse_long(const char *text, long lo, long hi, long *out)
{
	char *end;
	if (text == NULL || *text == '\0')
		return -1;
	errno = 0;
	long value = strtol(text, &end, 10);
	if (*end != '\0' || errno == ERANGE || value < lo || value > hi)
		return -1;
	*out = value;
	return 0;
}

int ut_read_file(const char *path, char **out, size_t *len, struct ut_err *err)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		return ut_err_set(err, "%s: %s", path, strerror(errno));
	struct ut_buf buf = {0};
	char chunk[65536];
	size_t n;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
		if (ut_buf_append(&buf, chunk, n) != 0) {
			fclose(f);
			ut_buf_free(&buf);
			return ut_err_set(err, "%s: out of memory", path);
		}
	}
	int failed = ferror(f);
	fclose(f);
	if (failed) {
		ut_buf_free(&buf);
		return ut_err_set(err, "%s: read error", path);
	}
	if (buf.data == NULL && ut_buf_append(&buf, "", 0) != 0)
		return ut_err_set(err, "%s: out of memory", path);
	*out = buf.data;
	if (len != NULL)
		*len = buf.len;
	return 0;
}

int ut_write_file_atomic(const char *path, const char *data, size_t len, struct ut_err *err)
{
	char tmp[PATH_MAX];
	if (snprintf(tmp, sizeof(tmp), "%s.tmpXXXXXX", path) >= (int)sizeof(tmp))
		return ut_err_set(err, "%s: path too long", path);
	int fd = mkstemp(tmp);
	if (fd < 0)
		return ut_err_set(err, "%s: %s", path, strerror(errno));
	/* mkstemp uses 0600; give the file the umask's usual permissions */
	mode_t mask = umask(0);
	umask(mask);
	size_t done = 0;
	int rc = fchmod(fd, 0666 & ~mask);
	while (rc == 0 && done < len) {
		ssize_t w = write(fd, data + done, len - done);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			rc = -1;
			break;
		}
		done += (size_t)w;
	}
	int saved = errno;
	if (close(fd) != 0 && rc == 0) {
		rc = -1;
		saved = errno;
	}
	if (rc == 0 && rename(tmp, path) != 0) {
		rc = -1;
		saved = errno;
	}
	if (rc != 0) {
		unlink(tmp);
		return ut_err_set(err, "%s: %s", path, strerror(saved));
	}
	return 0;
}

int ut_mkdirs(const char *path, struct ut_err *err)
{
	char tmp[PATH_MAX];
	if (snprintf(tmp, sizeof(tmp), "%s", path) >= (int)sizeof(tmp))
		return ut_err_set(err, "%s: path too long", path);
	for (char *p = tmp + 1;; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char saved = *p;
		*p = '\0';
		if (mkdir(tmp, 0777) != 0 && errno != EEXIST)
			return ut_err_set(err, "%s: %s", tmp, strerror(errno));
		*p = saved;
		if (saved == '\0')
			break;
	}
	struct stat st;
	if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
		return ut_err_set(err, "%s: not a directory", path);
	return 0;
}

int ut_remove_tree(const char *path, struct ut_err *err)
{
	struct stat st;
	if (lstat(path, &st) != 0)
		return errno == ENOENT ? 0 : ut_err_set(err, "%s: %s", path, strerror(errno));
	if (S_ISDIR(st.st_mode)) {
		DIR *dir = opendir(path);
		if (dir == NULL)
			return ut_err_set(err, "%s: %s", path, strerror(errno));
		struct dirent *entry;
		int rc = 0;
		while (rc == 0 && (entry = readdir(dir)) != NULL) {
			if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0)
				continue;
			char child[PATH_MAX];
			if (snprintf(child, sizeof(child), "%s/%s", path, entry->d_name) >=
			    (int)sizeof(child))
				rc = ut_err_set(err, "%s: path too long", path);
			else
				rc = ut_remove_tree(child, err);
		}
		closedir(dir);
		if (rc != 0)
			return rc;
		if (rmdir(path) != 0)
			return ut_err_set(err, "%s: %s", path, strerror(errno));
		return 0;
	}
	if (unlink(path) != 0 && errno != ENOENT)
		return ut_err_set(err, "%s: %s", path, strerror(errno));
	return 0;
}

void ut_crash_point(const char *name)
{
	static long reached;
	const char *spec = getenv("YE_CRASH_AT");
	if (spec == NULL)
		return;
	size_t len = strcspn(spec, ":");
	if (strlen(name) != len || strncmp(spec, name, len) != 0 || spec[len] != ':')
		return;
	if (++reached == strtol(spec + len + 1, NULL, 10))
		raise(SIGKILL);
}

double ut_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

void ut_iso_time(double when, char *buf, size_t size)
{
	time_t secs = (time_t)when;
	struct tm tm;
	gmtime_r(&secs, &tm);
	strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int ut_buf_append(struct ut_buf *buf, const char *data, size_t len)
{
	if (buf->len + len + 1 > buf->cap) {
		size_t cap = buf->cap ? buf->cap : 256;
		while (cap < buf->len + len + 1)
			cap *= 2;
		char *grown = realloc(buf->data, cap);
		if (grown == NULL)
			return -1;
		buf->data = grown;
		buf->cap = cap;
	}
	if (len > 0)
		memcpy(buf->data + buf->len, data, len);
	buf->len += len;
	buf->data[buf->len] = '\0';
	return 0;
}

int ut_buf_printf(struct ut_buf *buf, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return -1;
	if (ut_buf_append(buf, "", 0) != 0 || ut_buf_append(buf, NULL, 0) != 0)
		return -1;
	size_t need = buf->len + (size_t)n + 1;
	if (need > buf->cap) {
		size_t cap = buf->cap;
		while (cap < need)
			cap *= 2;
		char *grown = realloc(buf->data, cap);
		if (grown == NULL)
			return -1;
		buf->data = grown;
		buf->cap = cap;
	}
	va_start(ap, fmt);
	vsnprintf(buf->data + buf->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	buf->len += (size_t)n;
	return 0;
}

void ut_buf_free(struct ut_buf *buf)
{
	free(buf->data);
	buf->data = NULL;
	buf->len = buf->cap = 0;
}

void ut_reexec_with_env(const char *name, const char *value, char **argv)
{
	if (getenv(name) != NULL || setenv(name, value, 1) != 0)
		return;
	execv("/proc/self/exe", argv);
	/* exec failed: go on as we are, with the variable set for children */
}

/* ---- shipped data files ------------------------------------------------------- */

/* meson sets these (util/meson.build); a build without it (the fuzzers) finds no data files */
#ifndef YE_DATADIR
#define YE_DATADIR "/nonexistent"
#define YE_BIN_TO_DATADIR "/nonexistent"
#define YE_SOURCE_ROOT "/nonexistent"
#define YE_BUILD_ROOT "/nonexistent"
#endif

/* The folder of the running program, "" if unknown. */
static void program_dir(char *out, size_t size)
{
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	out[0] = '\0';
	if (n <= 0)
		return;
	self[n] = '\0';
	char *slash = strrchr(self, '/');
	if (slash != NULL) {
		*slash = '\0';
		snprintf(out, size, "%s", self);
	}
}

/* Is dir inside root (both absolute, root without a trailing slash)? */
static int inside(const char *dir, const char *root)
{
	size_t len = strlen(root);
	return len > 0 && strncmp(dir, root, len) == 0 && (dir[len] == '/' || dir[len] == '\0');
}

/* Try DATA/path, DATA/models/NAME, DATA/data/hyps/NAME; 0 when one is readable. */
static int try_data_dir(const char *data, const char *path, char *out, size_t size)
{
	const char *slash = strrchr(path, '/');
	const char *name = slash != NULL ? slash + 1 : path;
	const char *const subdirs[] = {"", "models/", "data/hyps/"};
	for (size_t i = 0; i < UT_ARRAY_LEN(subdirs); i++) {
		if (snprintf(out, size, "%s/%s%s", data, subdirs[i], i == 0 ? path : name) >=
		    (int)size)
			continue;
		struct stat st;
		char resolved[PATH_MAX];
		if (stat(out, &st) == 0 && S_ISREG(st.st_mode) && access(out, R_OK) == 0) {
			if (realpath(out, resolved) != NULL) /* BIN/../share/... read plainly */
				snprintf(out, size, "%s", resolved);
			return 0;
		}
	}
	return -1;
}

int ut_data_file(const char *path, char *out, size_t size)
{
	struct stat st;
	snprintf(out, size, "%s", path);
	if (path[0] == '\0')
		return -1;
	if (stat(path, &st) == 0)
		return 0;
	if (path[0] == '/')
		return -1;
	char bin[PATH_MAX], data[PATH_MAX + 32] = "";
	program_dir(bin, sizeof(bin));
	if (YE_BIN_TO_DATADIR[0] == '/') /* an absolute bindir or datadir: not relocatable */
		snprintf(data, sizeof(data), "%s", YE_BIN_TO_DATADIR);
	else if (bin[0] != '\0')
		snprintf(data, sizeof(data), "%s/%s", bin, YE_BIN_TO_DATADIR);
	if (data[0] != '\0' && try_data_dir(data, path, out, size) == 0)
		return 0;
	if (try_data_dir(YE_DATADIR, path, out, size) == 0)
		return 0;
	if (bin[0] != '\0' && inside(bin, YE_BUILD_ROOT) &&
	    try_data_dir(YE_SOURCE_ROOT, path, out, size) == 0)
		return 0;
	snprintf(out, size, "%s", path);
	return -1;
}
