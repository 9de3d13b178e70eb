/*
 * store.c - the evolution database: schema, migrations, lock, and all SQL
 * (see store.h). Column lists are generated from the meta table and the
 * results table, so adding a hyperparameter adds a column.
 */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define ST_APPLICATION_ID 0x594f4556 /* "YOEV" */

struct st_db {
	sqlite3 *sql;
	int lock_fd;
	long version; /* schema version of the file: older ones are read as they are, read-only */
	char path[ST_STR];
	dev_t dev; /* identity of the file opened, to notice it replaced */
	ino_t ino;
	enum meta_space space; /* of the evolution row, once written or read */
};

static const char *const status_names[ST_STATUS_COUNT] = {"pending", "running", "done",
							  "failed",  "pruned",	"interrupted"};

const char *st_status_name(enum st_status status)
{
	return status_names[status];
}

int st_status_parse(const char *name, enum st_status *out)
{
	for (int i = 0; i < ST_STATUS_COUNT; i++) {
		if (strcmp(name, status_names[i]) == 0) {
			*out = (enum st_status)i;
			return 0;
		}
	}
	return -1;
}

static const char *const result_columns[] = {
#define ST_RESULT_COL(col, csv) #col,
    ST_RESULTS(ST_RESULT_COL)
#undef ST_RESULT_COL
};
static const char *const result_csv_names[] = {
#define ST_RESULT_CSV(col, csv) csv,
    ST_RESULTS(ST_RESULT_CSV)
#undef ST_RESULT_CSV
};

const char *st_result_column(int r)
{
	return result_columns[r];
}

const char *st_result_csv_name(int r)
{
	return result_csv_names[r];
}

const char *const st_epoch_csv_names[ST_EPOCH_COLS] = {"epoch",
						       "train/box_loss",
						       "train/obj_loss",
						       "train/cls_loss",
						       "metrics/precision",
						       "metrics/recall",
						       "metrics/mAP_0.5",
						       "metrics/mAP_0.5:0.95",
						       "val/box_loss",
						       "val/obj_loss",
						       "val/cls_loss",
						       "x/lr0",
						       "x/lr1",
						       "x/lr2"};
static const char *const epoch_columns[ST_EPOCH_COLS] = {
    "epoch", "train_box", "train_obj", "train_cls", "precision", "recall", "map50",
    "map",   "val_box",	  "val_obj",   "val_cls",   "lr0",	 "lr1",	   "lr2"};
/* An Ultralytics run has a distribution focal loss where YOLOv5 has objectness. */
static const char *const epoch_columns_ultralytics[ST_EPOCH_COLS] = {
    "epoch", "train_box", "train_dfl", "train_cls", "precision", "recall", "map50",
    "map",   "val_box",	  "val_dfl",   "val_cls",   "lr0",	 "lr1",	   "lr2"};

/* ---- errors ------------------------------------------------------------ */

static int sql_fail(struct st_db *db, const char *what, struct ut_err *err)
{
	return ut_err_set(err, "%s: %s: %s", db->path, what, sqlite3_errmsg(db->sql));
}

static int exec_sql(struct st_db *db, const char *sql, struct ut_err *err)
{
	char *msg = NULL;
	if (sqlite3_exec(db->sql, sql, NULL, NULL, &msg) != SQLITE_OK) {
		ut_err_set(err, "%s: %s", db->path, msg ? msg : sqlite3_errmsg(db->sql));
		sqlite3_free(msg);
		return -1;
	}
	return 0;
}

static int prepare(struct st_db *db, const char *sql, sqlite3_stmt **stmt, struct ut_err *err)
{
	if (sqlite3_prepare_v2(db->sql, sql, -1, stmt, NULL) != SQLITE_OK)
		return sql_fail(db, "prepare", err);
	return 0;
}

/*
 * Prepare SQL that was built into a buffer (build_rc != 0: building it ran
 * out of memory); frees the buffer either way.
 */
static int prepare_built(struct st_db *db, int build_rc, struct ut_buf *sql, sqlite3_stmt **stmt,
			 struct ut_err *err)
{
	int rc = build_rc != 0 || sql->data == NULL ? ut_err_set(err, "%s: out of memory", db->path)
						    : prepare(db, sql->data, stmt, err);
	ut_buf_free(sql);
	return rc;
}

/* ---- schema -------------------------------------------------------------- */

/* Text columns of `evolution` and where they live in st_options. */
/* clang-format 14 reflows these lists differently on every pass: */
/* clang-format off */
#define ST_OPT_TEXT(X)                                                                             \
	X(data) X(cfg) X(weights) X(hyp_path) X(device) X(project) X(name) X(trainer)              \
	X(algorithm) X(parent) X(evolve_keys) X(devices) X(launcher) X(slurm_args) X(prune)        \
	X(python) X(ga_dir)
#define ST_OPT_INT(X)                                                                              \
	X(epochs) X(imgsz) X(batch) X(parallel) X(top) X(generations) X(retries) X(per_device)     \
	X(slurm_submit) X(prune_warmup) X(population) X(lag)
/* clang-format on */
#define ST_OPT_REAL(X) X(mutation_prob) X(sigma) X(timeout)

/* The views over `generations` (versions 1 and 3 make them). */
static int create_views(struct ut_buf *sql)
{
	int rc = ut_buf_printf(sql, "CREATE VIEW best AS SELECT * FROM generations WHERE status = "
				    "'done'\n"
				    "  ORDER BY fitness DESC, generation;\n"
				    "CREATE VIEW evolve_csv AS SELECT ");
	for (int r = 0; r < ST_RESULT_COUNT; r++)
		rc |= ut_buf_printf(sql, "\"%s\" AS \"%s\", ", result_columns[r],
				    result_csv_names[r]);
	for (int k = 0; k < META_COUNT; k++)
		rc |= ut_buf_printf(sql, "\"%s\"%s", meta_name(k), k + 1 < META_COUNT ? ", " : "");
	rc |=
	    ut_buf_printf(sql, "\n  FROM generations WHERE status = 'done' ORDER BY generation;\n");
	return rc;
}

/* Schema version 1, generated from the tables of hyps and results. */
static int schema_v1(struct ut_buf *sql)
{
	int rc = ut_buf_printf(
	    sql, "CREATE TABLE evolution(\n  id INTEGER PRIMARY KEY CHECK (id = 1),\n");
#define COL_TEXT(f) rc |= ut_buf_printf(sql, "  %s TEXT,\n", #f);
#define COL_INT(f) rc |= ut_buf_printf(sql, "  %s INTEGER,\n", #f);
#define COL_REAL(f) rc |= ut_buf_printf(sql, "  %s REAL,\n", #f);
	ST_OPT_TEXT(COL_TEXT)
	ST_OPT_INT(COL_INT)
	ST_OPT_REAL(COL_REAL)
#undef COL_TEXT
#undef COL_INT
#undef COL_REAL
	rc |= ut_buf_printf(sql,
			    "  seed INTEGER, base_hyp TEXT, meta TEXT,\n"
			    "  created_at TEXT, updated_at TEXT, tool_version TEXT);\n"
			    "CREATE TABLE generations(\n"
			    "  generation INTEGER PRIMARY KEY,\n"
			    "  parent INTEGER,\n"
			    "  population INTEGER,\n"
			    "  status TEXT NOT NULL CHECK (status IN ('pending','running','done',"
			    "'failed','pruned','interrupted')),\n");
	for (int r = 0; r < ST_RESULT_COUNT; r++)
		rc |= ut_buf_printf(sql, "  \"%s\" REAL,\n", result_columns[r]);
	rc |= ut_buf_printf(sql, "  fitness REAL,\n");
	for (int k = 0; k < META_COUNT; k++)
		rc |= ut_buf_printf(sql, "  \"%s\" REAL NOT NULL,\n", meta_name(k));
	rc |= ut_buf_printf(
	    sql, "  seed INTEGER, device TEXT, host TEXT, pid INTEGER, pid_start INTEGER,\n"
		 "  started_at TEXT, finished_at TEXT, seconds REAL, exit_status INTEGER,\n"
		 "  error TEXT, save_dir TEXT, attempts INTEGER NOT NULL DEFAULT 0,\n"
		 "  epochs_done INTEGER NOT NULL DEFAULT 0);\n"
		 "CREATE INDEX generations_fitness ON generations(status, fitness);\n"
		 "CREATE TABLE epochs(\n"
		 "  generation INTEGER NOT NULL, epoch INTEGER NOT NULL,\n");
	for (int c = 1; c < ST_EPOCH_COLS; c++)
		rc |= ut_buf_printf(sql, "  \"%s\" REAL,\n", epoch_columns[c]);
	rc |= ut_buf_printf(sql, "  PRIMARY KEY (generation, epoch));\n");
	return rc | create_views(sql);
}

/*
 * Version 2: why the evolution stopped by itself (the circuit breaker of
 * evolve/run.c), NULL while it has not or once a resume cleared it.
 */
static int schema_v2(struct ut_buf *sql)
{
	return ut_buf_printf(sql, "ALTER TABLE evolution ADD COLUMN stop_reason TEXT;\n"
				  "ALTER TABLE evolution ADD COLUMN stopped_at TEXT;\n");
}

/*
 * Version 3: hyperparameter spaces (meta.h). evolution.space names the
 * run's space (NULL: yolov5); `generations` gains the Ultralytics-only keys
 * and val_dfl, and YOLOv5's hyp columns become nullable (an Ultralytics row
 * has no obj or anchors), which SQLite can only do by rebuilding the table;
 * `epochs` gains train_dfl and val_dfl. A YOLOv5 row keeps every value.
 */
static int schema_v3(struct ut_buf *sql)
{
	int rc = ut_buf_printf(sql, "ALTER TABLE evolution ADD COLUMN space TEXT;\n"
				    "ALTER TABLE epochs ADD COLUMN train_dfl REAL;\n"
				    "ALTER TABLE epochs ADD COLUMN val_dfl REAL;\n"
				    "DROP VIEW best;\nDROP VIEW evolve_csv;\n"
				    "CREATE TABLE generations_v3(\n"
				    "  generation INTEGER PRIMARY KEY,\n"
				    "  parent INTEGER,\n"
				    "  population INTEGER,\n"
				    "  status TEXT NOT NULL CHECK (status IN ('pending','running',"
				    "'done','failed','pruned','interrupted')),\n");
	for (int r = 0; r < ST_RESULT_COUNT; r++)
		rc |= ut_buf_printf(sql, "  \"%s\" REAL,\n", result_columns[r]);
	rc |= ut_buf_printf(sql, "  fitness REAL,\n");
	for (int k = 0; k < META_COUNT; k++)
		rc |= ut_buf_printf(sql, "  \"%s\" REAL,\n", meta_name(k));
	rc |= ut_buf_printf(
	    sql, "  seed INTEGER, device TEXT, host TEXT, pid INTEGER, pid_start INTEGER,\n"
		 "  started_at TEXT, finished_at TEXT, seconds REAL, exit_status INTEGER,\n"
		 "  error TEXT, save_dir TEXT, attempts INTEGER NOT NULL DEFAULT 0,\n"
		 "  epochs_done INTEGER NOT NULL DEFAULT 0");
	for (int k = META_COUNT; k < META_ALL; k++)
		rc |= ut_buf_printf(sql, ",\n  \"%s\" REAL", meta_name(k));
	rc |= ut_buf_printf(sql, ",\n  val_dfl REAL);\n"
				 "INSERT INTO generations_v3 SELECT *");
	for (int k = META_COUNT; k < META_ALL + 1; k++)
		rc |= ut_buf_printf(sql, ", NULL");
	rc |= ut_buf_printf(sql,
			    " FROM generations;\n"
			    "DROP TABLE generations;\n"
			    "ALTER TABLE generations_v3 RENAME TO generations;\n"
			    "CREATE INDEX generations_fitness ON generations(status, fitness);\n");
	return rc | create_views(sql);
}

/*
 * Version 4: the budget of trainer epochs (--budget), NULL or 0 for none;
 * generations.reevaluates: the generation a re-evaluation row trains again
 * (NULL for every other row).
 */
static int schema_v4(struct ut_buf *sql)
{
	return ut_buf_printf(sql, "ALTER TABLE evolution ADD COLUMN budget INTEGER;\n"
				  "ALTER TABLE generations ADD COLUMN reevaluates INTEGER;\n");
}

typedef int (*migration_fn)(struct ut_buf *sql);
/* migrations[i] takes the schema from version i to i + 1 */
static const migration_fn migrations[ST_SCHEMA_VERSION] = {schema_v1, schema_v2, schema_v3,
							   schema_v4};

static int pragma_int(struct st_db *db, const char *pragma, long *out, struct ut_err *err)
{
	sqlite3_stmt *stmt;
	if (prepare(db, pragma, &stmt, err) != 0)
		return -1;
	int rc = sqlite3_step(stmt);
	if (rc != SQLITE_ROW) {
		sqlite3_finalize(stmt);
		return sql_fail(db, pragma, err);
	}
	*out = (long)sqlite3_column_int64(stmt, 0);
	sqlite3_finalize(stmt);
	return 0;
}

static int migrate(struct st_db *db, struct ut_err *err)
{
	long version, app_id, tables;
	if (pragma_int(db, "PRAGMA user_version", &version, err) != 0 ||
	    pragma_int(db, "PRAGMA application_id", &app_id, err) != 0 ||
	    pragma_int(db, "SELECT count(*) FROM sqlite_master", &tables, err) != 0)
		return -1;
	if (tables > 0 && app_id != ST_APPLICATION_ID)
		return ut_err_set(err, "%s: not a yolo-evolve database", db->path);
	if (version > ST_SCHEMA_VERSION)
		return ut_err_set(
		    err, "%s: schema version %ld is newer than this yolo-evolve (%d); upgrade it",
		    db->path, version, ST_SCHEMA_VERSION);
	for (long v = version; v < ST_SCHEMA_VERSION; v++) {
		struct ut_buf sql = {0};
		int rc = ut_buf_printf(&sql, "BEGIN IMMEDIATE;\n");
		rc |= migrations[v](&sql);
		rc |= ut_buf_printf(
		    &sql, "PRAGMA application_id = %d;\nPRAGMA user_version = %ld;\nCOMMIT;\n",
		    ST_APPLICATION_ID, v + 1);
		if (rc != 0) {
			ut_buf_free(&sql);
			return ut_err_set(err, "%s: out of memory", db->path);
		}
		rc = exec_sql(db, sql.data, err);
		ut_buf_free(&sql);
		if (rc != 0) {
			sqlite3_exec(db->sql, "ROLLBACK", NULL, NULL, NULL);
			return -1;
		}
	}
	return 0;
}

static int space_read(struct st_db *db, struct ut_err *err);

/* ---- open / close -------------------------------------------------------- */

static int take_lock(struct st_db *db, struct ut_err *err)
{
	char lock_path[ST_STR + 8];
	snprintf(lock_path, sizeof(lock_path), "%s.lock", db->path);
	db->lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
	if (db->lock_fd < 0)
		return ut_err_set(err, "%s: %s", lock_path, strerror(errno));
	if (flock(db->lock_fd, LOCK_EX | LOCK_NB) != 0) {
		char holder[32] = "?";
		ssize_t n = pread(db->lock_fd, holder, sizeof(holder) - 1, 0);
		if (n > 0)
			holder[n] = '\0';
		holder[strcspn(holder, "\n")] = '\0';
		return ut_err_set(
		    err, "%s is in use by another yolo-evolve (pid %s): wait for it or stop it",
		    db->path, holder);
	}
	char pid[32];
	int len = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
	if (ftruncate(db->lock_fd, 0) != 0 || pwrite(db->lock_fd, pid, (size_t)len, 0) != len)
		return ut_err_set(err, "%s: %s", lock_path, strerror(errno));
	/*
	 * The same holder also shows itself as a record lock, which others can
	 * test without taking anything (st_writer_alive): a reader probing the
	 * flock would make an evolver starting at that instant refuse.
	 */
	struct flock shown = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
	if (fcntl(db->lock_fd, F_OFD_SETLK, &shown) != 0)
		return ut_err_set(err, "%s: record lock: %s", lock_path, strerror(errno));
	return 0;
}

int st_writer_alive(const struct st_db *db, long *pid)
{
	if (pid != NULL)
		*pid = 0;
	if (db->lock_fd >= 0) {
		if (pid != NULL)
			*pid = (long)getpid();
		return 1;
	}
	char lock_path[ST_STR + 8];
	snprintf(lock_path, sizeof(lock_path), "%s.lock", db->path);
	int fd = open(lock_path, O_RDONLY | O_CLOEXEC); /* never O_CREAT: reading writes nothing */
	if (fd < 0)
		return errno == ENOENT ? 0 : -1;
	struct flock probe = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
	int rc = fcntl(fd, F_OFD_GETLK, &probe) != 0 ? -1 : probe.l_type != F_UNLCK;
	if (rc == 1 && pid != NULL) {
		char text[32];
		ssize_t n = pread(fd, text, sizeof(text) - 1, 0);
		text[n > 0 ? n : 0] = '\0';
		*pid = strtol(text, NULL, 10);
	}
	close(fd);
	return rc;
}

static int open_common(const char *path, const char *uri, int flags, int locked, struct st_db **out,
		       struct ut_err *err)
{
	struct st_db *db = calloc(1, sizeof(*db));
	if (db == NULL)
		return ut_err_set(err, "%s: out of memory", path);
	db->lock_fd = -1;
	snprintf(db->path, sizeof(db->path), "%s", path);
	if (locked && take_lock(db, err) != 0) {
		st_close(db);
		return -1;
	}
	if (sqlite3_open_v2(uri ? uri : path, &db->sql, flags, NULL) != SQLITE_OK) {
		if (db->sql == NULL)
			ut_err_set(err, "%s: out of memory", path);
		else
			ut_err_set(err, "%s: %s", path, sqlite3_errmsg(db->sql));
		st_close(db);
		return -1;
	}
	struct stat st;
	if (stat(path, &st) == 0) {
		db->dev = st.st_dev;
		db->ino = st.st_ino;
	}
	sqlite3_busy_timeout(db->sql, 10000);
	sqlite3_extended_result_codes(db->sql, 1);
	int rc = 0;
	/* make sure the file is ours (migrate checks) before changing anything in it */
	if (flags & SQLITE_OPEN_READWRITE)
		rc = migrate(db, err);
	if (rc == 0 && (flags & SQLITE_OPEN_READWRITE))
		rc = exec_sql(db, "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;", err);
	if (rc == 0 && !(flags & SQLITE_OPEN_READWRITE)) {
		/* an older schema is read as it is: reading must never migrate */
		rc = pragma_int(db, "PRAGMA user_version", &db->version, err);
		if (rc == 0 && (db->version < 1 || db->version > ST_SCHEMA_VERSION))
			rc = ut_err_set(err,
					"%s: not a yolo-evolve database of schema version 1 to %d",
					path, ST_SCHEMA_VERSION);
	} else {
		db->version = ST_SCHEMA_VERSION;
	}
	if (rc == 0)
		rc = space_read(db, err); /* YOLOv5's until the evolution row names another */
	if (rc != 0) {
		st_close(db);
		return -1;
	}
	*out = db;
	return 0;
}

int st_open(const char *path, int create, struct st_db **out, struct ut_err *err)
{
	if (!create && access(path, F_OK) != 0)
		return ut_err_set(err, "%s: %s", path, strerror(errno));
	int flags = SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0);
	return open_common(path, NULL, flags, 1, out, err);
}

int st_open_readonly(const char *path, struct st_db **out, struct ut_err *err)
{
	if (access(path, R_OK) != 0)
		return ut_err_set(err, "%s: %s", path, strerror(errno));
	if (open_common(path, NULL, SQLITE_OPEN_READONLY, 0, out, err) == 0)
		return 0;
	/*
	 * A WAL database on read-only media cannot get its -shm file; if no
	 * writer can be there either, read it as immutable.
	 */
	struct ut_buf uri = {0};
	int rc = ut_buf_printf(&uri, "file:");
	for (const char *p = path; rc == 0 && *p; p++)
		rc = strchr("%?#", *p) ? ut_buf_printf(&uri, "%%%02X", (unsigned char)*p)
				       : ut_buf_append(&uri, p, 1);
	rc |= ut_buf_printf(&uri, "?immutable=1");
	struct ut_err first = {{0}};
	if (err != NULL)
		first = *err;
	if (rc == 0)
		rc = open_common(path, uri.data, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, 0, out,
				 err);
	ut_buf_free(&uri);
	if (rc != 0 && err != NULL)
		*err = first;
	return rc;
}

void st_close(struct st_db *db)
{
	if (db == NULL)
		return;
	if (db->sql != NULL)
		sqlite3_close(db->sql);
	if (db->lock_fd >= 0)
		close(db->lock_fd); /* releases the flock */
	free(db);
}

int st_check_file(const struct st_db *db, struct ut_err *err)
{
	struct stat st;
	if (stat(db->path, &st) != 0)
		return ut_err_set(err,
				  "%s: deleted while the evolution ran (%s); nothing after this "
				  "point was recorded",
				  db->path, strerror(errno));
	if (st.st_dev != db->dev || st.st_ino != db->ino)
		return ut_err_set(err,
				  "%s: replaced by another file while the evolution ran; stopping",
				  db->path);
	return 0;
}

enum meta_space st_space(const struct st_db *db)
{
	return db->space;
}

const char *st_path(const struct st_db *db)
{
	return db->path;
}

struct sqlite3 *st_handle(struct st_db *db)
{
	return db->sql;
}

int st_transaction(struct st_db *db, int (*fn)(struct st_db *, void *), void *arg,
		   struct ut_err *err)
{
	if (exec_sql(db, "BEGIN IMMEDIATE", err) != 0)
		return -1;
	if (fn(db, arg) != 0) {
		sqlite3_exec(db->sql, "ROLLBACK", NULL, NULL, NULL);
		return -1;
	}
	ut_crash_point("transaction");
	if (exec_sql(db, "COMMIT", err) != 0) {
		sqlite3_exec(db->sql, "ROLLBACK", NULL, NULL, NULL);
		return -1;
	}
	return 0;
}

/* ---- the evolution row ----------------------------------------------------- */

static char *format_to_string(int (*write_fn)(FILE *, const void *), const void *arg)
{
	char *text = NULL;
	size_t len = 0;
	FILE *mem = open_memstream(&text, &len);
	if (mem == NULL)
		return NULL;
	int rc = write_fn(mem, arg);
	if (fclose(mem) != 0 || rc != 0) {
		free(text);
		return NULL;
	}
	return text;
}

static int write_base(FILE *out, const void *hyp)
{
	return meta_hyp_write(out, hyp, NULL);
}

static int write_meta(FILE *out, const void *table)
{
	return meta_table_write(out, table);
}

/* evolution.space: the run's hyperparameter space (read before its meta and base hyp). */
static int space_write(struct st_db *db, enum meta_space space, struct ut_err *err)
{
	sqlite3_stmt *stmt;
	if (prepare(db, "UPDATE evolution SET space = ?1 WHERE id = 1", &stmt, err) != 0)
		return -1;
	sqlite3_bind_text(stmt, 1, meta_space_name(space), -1, SQLITE_STATIC);
	int rc = sqlite3_step(stmt) == SQLITE_DONE ? 0 : sql_fail(db, "write evolution", err);
	sqlite3_finalize(stmt);
	if (rc == 0)
		db->space = space;
	return rc;
}

/* The space of the evolution row into db->space; a file before version 3 is YOLOv5's. */
static int space_read(struct st_db *db, struct ut_err *err)
{
	db->space = META_SPACE_YOLOV5;
	if (db->version < 3)
		return 0;
	sqlite3_stmt *stmt;
	if (prepare(db, "SELECT space FROM evolution WHERE id = 1", &stmt, err) != 0)
		return -1;
	int step = sqlite3_step(stmt);
	int rc =
	    step == SQLITE_ROW || step == SQLITE_DONE ? 0 : sql_fail(db, "read evolution", err);
	const char *name = step == SQLITE_ROW ? (const char *)sqlite3_column_text(stmt, 0) : NULL;
	if (rc == 0 && name != NULL && meta_space_parse(name, &db->space) != 0)
		rc = ut_err_set(err, "%s: evolution.space: unknown space '%s'", db->path, name);
	sqlite3_finalize(stmt);
	return rc;
}

/* evolution.budget into *budget: 0 when NULL or the file predates version 4. */
static int budget_read(struct st_db *db, long *budget, struct ut_err *err)
{
	*budget = 0;
	if (db->version < 4)
		return 0;
	sqlite3_stmt *stmt;
	if (prepare(db, "SELECT budget FROM evolution WHERE id = 1", &stmt, err) != 0)
		return -1;
	int step = sqlite3_step(stmt);
	if (step == SQLITE_ROW)
		*budget = (long)sqlite3_column_int64(stmt, 0);
	int rc =
	    step == SQLITE_ROW || step == SQLITE_DONE ? 0 : sql_fail(db, "read evolution", err);
	sqlite3_finalize(stmt);
	return rc;
}

int st_options_set_budget(struct st_db *db, long budget, struct ut_err *err)
{
	sqlite3_stmt *stmt;
	if (prepare(db,
		    "UPDATE evolution SET budget = ?,"
		    " updated_at = strftime('%Y-%m-%dT%H:%M:%fZ','now') WHERE id = 1",
		    &stmt, err) != 0)
		return -1;
	if (budget > 0)
		sqlite3_bind_int64(stmt, 1, budget);
	else
		sqlite3_bind_null(stmt, 1);
	int rc = sqlite3_step(stmt) == SQLITE_DONE ? 0 : sql_fail(db, "update evolution", err);
	sqlite3_finalize(stmt);
	return rc;
}

void st_budget_count(const struct st_generation *gens, size_t n, long epochs, long *spent,
		     long *reserved)
{
	long used = 0, held = 0;
	for (size_t i = 0; i < n; i++) {
		const struct st_generation *g = &gens[i];
		if (g->status == ST_DONE || g->status == ST_FAILED || g->status == ST_PRUNED)
			used += g->epochs_done;
		else
			held += g->epochs_done > epochs ? g->epochs_done : epochs;
	}
	if (spent != NULL)
		*spent = used;
	if (reserved != NULL)
		*reserved = held;
}

/* INSERT ... ON CONFLICT DO UPDATE of the evolution row, from the option lists. */
static int options_write_sql(struct ut_buf *sql)
{
	struct ut_buf cols = {0}, update = {0};
	int rc = 0, n = 0;
#define OPT_COL(f)                                                                                 \
	rc |= ut_buf_printf(&cols, "%s, ", #f);                                                    \
	rc |= ut_buf_printf(&update, "%s = excluded.%s, ", #f, #f);                                \
	n++;
	ST_OPT_TEXT(OPT_COL)
	ST_OPT_INT(OPT_COL)
	ST_OPT_REAL(OPT_COL)
	OPT_COL(seed)
	OPT_COL(base_hyp)
	OPT_COL(meta)
	OPT_COL(tool_version)
#undef OPT_COL
	rc |= ut_buf_printf(sql, "INSERT INTO evolution(id, %screated_at, updated_at) VALUES(1",
			    cols.data);
	for (int i = 0; i < n; i++)
		rc |= ut_buf_printf(sql, ", ?");
	rc |= ut_buf_printf(sql,
			    ", strftime('%%Y-%%m-%%dT%%H:%%M:%%fZ','now'),"
			    " strftime('%%Y-%%m-%%dT%%H:%%M:%%fZ','now'))"
			    " ON CONFLICT(id) DO UPDATE SET %supdated_at = excluded.updated_at",
			    update.data);
	ut_buf_free(&cols);
	ut_buf_free(&update);
	return rc;
}

int st_options_write(struct st_db *db, const struct st_options *opts, struct ut_err *err)
{
	struct ut_buf sql = {0};
	if (options_write_sql(&sql) != 0) {
		ut_buf_free(&sql);
		return ut_err_set(err, "%s: out of memory", db->path);
	}
	char *base = format_to_string(write_base, &opts->base);
	char *meta = format_to_string(write_meta, &opts->meta);
	sqlite3_stmt *stmt = NULL;
	int rc = (base && meta) ? prepare(db, sql.data, &stmt, err)
				: ut_err_set(err, "%s: out of memory", db->path);
	ut_buf_free(&sql);
	if (rc == 0) {
		int i = 1;
#define BIND_TEXT(f) sqlite3_bind_text(stmt, i++, opts->f, -1, SQLITE_TRANSIENT);
#define BIND_INT(f) sqlite3_bind_int64(stmt, i++, opts->f);
#define BIND_REAL(f) sqlite3_bind_double(stmt, i++, opts->f);
		ST_OPT_TEXT(BIND_TEXT)
		ST_OPT_INT(BIND_INT)
		ST_OPT_REAL(BIND_REAL)
#undef BIND_TEXT
#undef BIND_INT
#undef BIND_REAL
		sqlite3_bind_int64(stmt, i++, (sqlite3_int64)opts->seed);
		sqlite3_bind_text(stmt, i++, base, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(stmt, i++, meta, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(stmt, i++, YE_VERSION, -1, SQLITE_STATIC);
		if (sqlite3_step(stmt) != SQLITE_DONE)
			rc = sql_fail(db, "write evolution", err);
	}
	sqlite3_finalize(stmt);
	free(base);
	free(meta);
	if (rc == 0)
		rc = space_write(db, opts->meta.space, err);
	if (rc == 0)
		rc = st_options_set_budget(db, opts->budget, err);
	return rc;
}

static void copy_text(char *dst, size_t size, const unsigned char *src)
{
	snprintf(dst, size, "%s", src ? (const char *)src : "");
}

static int options_from_row(struct st_db *db, sqlite3_stmt *stmt, struct st_options *opts,
			    struct ut_err *err)
{
	int i = 0;
#define GET_TEXT(f) copy_text(opts->f, sizeof(opts->f), sqlite3_column_text(stmt, i++));
#define GET_INT(f) opts->f = (long)sqlite3_column_int64(stmt, i++);
#define GET_REAL(f) opts->f = sqlite3_column_double(stmt, i++);
	ST_OPT_TEXT(GET_TEXT)
	ST_OPT_INT(GET_INT)
	ST_OPT_REAL(GET_REAL)
#undef GET_TEXT
#undef GET_INT
#undef GET_REAL
	opts->seed = (uint64_t)sqlite3_column_int64(stmt, i++);
	const char *base = (const char *)sqlite3_column_text(stmt, i++);
	const char *meta = (const char *)sqlite3_column_text(stmt, i++);
	char source[ST_STR + 32];
	meta_table_default_space(&opts->meta, db->space);
	snprintf(source, sizeof(source), "%s (evolution.meta)", db->path);
	if (meta == NULL || meta_table_parse(meta, strlen(meta), source, &opts->meta, err) != 0)
		return meta ? -1 : ut_err_set(err, "%s: evolution.meta is empty", db->path);
	snprintf(source, sizeof(source), "%s (evolution.base_hyp)", db->path);
	if (base == NULL)
		return ut_err_set(err, "%s: evolution.base_hyp is empty", db->path);
	return meta_hyp_parse(base, strlen(base), source, &opts->meta, &opts->base, err);
}

int st_options_read(struct st_db *db, struct st_options *opts, int *found, struct ut_err *err)
{
	struct ut_buf sql = {0};
	int rc = ut_buf_printf(&sql, "SELECT ");
#define OPT_COL(f) rc |= ut_buf_printf(&sql, "%s, ", #f);
	ST_OPT_TEXT(OPT_COL)
	ST_OPT_INT(OPT_COL)
	ST_OPT_REAL(OPT_COL)
#undef OPT_COL
	rc |= ut_buf_printf(&sql, "seed, base_hyp, meta FROM evolution WHERE id = 1");
	if (rc == 0 && space_read(db, err) != 0) {
		ut_buf_free(&sql);
		return -1;
	}
	sqlite3_stmt *stmt = NULL;
	if (prepare_built(db, rc, &sql, &stmt, err) != 0)
		return -1;
	rc = sqlite3_step(stmt);
	*found = rc == SQLITE_ROW;
	if (rc == SQLITE_ROW)
		rc = options_from_row(db, stmt, opts, err);
	else if (rc == SQLITE_DONE)
		rc = 0;
	else
		rc = sql_fail(db, "read evolution", err);
	sqlite3_finalize(stmt);
	if (rc == 0 && *found)
		rc = budget_read(db, &opts->budget, err);
	return rc;
}

int st_options_set_generations(struct st_db *db, long generations, struct ut_err *err)
{
	sqlite3_stmt *stmt;
	if (prepare(db,
		    "UPDATE evolution SET generations = ?,"
		    " updated_at = strftime('%Y-%m-%dT%H:%M:%fZ','now') WHERE id = 1",
		    &stmt, err) != 0)
		return -1;
	sqlite3_bind_int64(stmt, 1, generations);
	int rc = sqlite3_step(stmt) == SQLITE_DONE ? 0 : sql_fail(db, "update evolution", err);
	sqlite3_finalize(stmt);
	return rc;
}

int st_stop_write(struct st_db *db, const char *reason, struct ut_err *err)
{
	sqlite3_stmt *stmt;
	if (prepare(db,
		    "UPDATE evolution SET stop_reason = ?1,"
		    " stopped_at = CASE WHEN ?1 IS NULL THEN NULL"
		    " ELSE strftime('%Y-%m-%dT%H:%M:%fZ','now') END,"
		    " updated_at = strftime('%Y-%m-%dT%H:%M:%fZ','now') WHERE id = 1",
		    &stmt, err) != 0)
		return -1;
	if (reason != NULL && reason[0] != '\0')
		sqlite3_bind_text(stmt, 1, reason, -1, SQLITE_TRANSIENT);
	else
		sqlite3_bind_null(stmt, 1);
	int rc = sqlite3_step(stmt) == SQLITE_DONE ? 0 : sql_fail(db, "update evolution", err);
	sqlite3_finalize(stmt);
	return rc;
}

int st_stop_read(struct st_db *db, char *reason, size_t size, struct ut_err *err)
{
	reason[0] = '\0';
	if (db->version < 2)
		return 0; /* an older file read as it is: no such column, nothing recorded */
	sqlite3_stmt *stmt;
	if (prepare(db, "SELECT stop_reason FROM evolution WHERE id = 1", &stmt, err) != 0)
		return -1;
	int step = sqlite3_step(stmt);
	if (step == SQLITE_ROW)
		copy_text(reason, size, sqlite3_column_text(stmt, 0));
	int rc =
	    step == SQLITE_ROW || step == SQLITE_DONE ? 0 : sql_fail(db, "read evolution", err);
	sqlite3_finalize(stmt);
	return rc;
}

/* ---- generations ------------------------------------------------------------ */

/* Columns of `generations` in the order put/load bind and read them. */
static int generation_columns(const struct st_db *db, struct ut_buf *cols)
{
	int rc = ut_buf_printf(cols, db->version >= 4
					 ? "generation, parent, population, reevaluates, status"
					 : "generation, parent, population, NULL, status");
	for (int r = 0; r < ST_RESULT_COUNT; r++)
		rc |= ut_buf_printf(cols, ", \"%s\"", result_columns[r]);
	/* a file before version 3 (read as it is) has neither val_dfl nor Ultralytics' keys */
	int keys = db->version >= 3 ? META_ALL : META_COUNT;
	rc |= ut_buf_printf(cols, db->version >= 3 ? ", val_dfl, fitness" : ", NULL, fitness");
	for (int k = 0; k < keys; k++)
		rc |= ut_buf_printf(cols, ", \"%s\"", meta_name(k));
	for (int k = keys; k < META_ALL; k++)
		rc |= ut_buf_printf(cols, ", NULL");
	rc |= ut_buf_printf(cols, ", seed, device, host, pid, pid_start, started_at, finished_at,"
				  " seconds, exit_status, error, save_dir, attempts, epochs_done");
	return rc;
}

#define GEN_TAIL_COLUMNS 13 /* seed .. epochs_done */
#define GEN_COLUMNS (5 + ST_RESULT_COUNT + 2 + META_ALL + GEN_TAIL_COLUMNS)

static int put_sql(const struct st_db *db, struct ut_buf *sql)
{
	struct ut_buf cols = {0};
	int rc = generation_columns(db, &cols);
	rc |= ut_buf_printf(sql, "INSERT INTO generations(%s) VALUES(", cols.data);
	for (int c = 0; c < GEN_COLUMNS; c++) {
		const char *value = "?";
		if (c == GEN_COLUMNS - 8 || c == GEN_COLUMNS - 7) /* started_at, finished_at */
			value = "strftime('%Y-%m-%dT%H:%M:%fZ', ?, 'unixepoch')";
		rc |= ut_buf_printf(sql, "%s%s", c ? ", " : "", value);
	}
	rc |= ut_buf_printf(sql, ") ON CONFLICT(generation) DO UPDATE SET ");
	/* every column but the key takes the new value */
	const char *p = strchr(cols.data, ',') + 2;
	int first = 1;
	while (p != NULL && *p) {
		const char *end = strchr(p, ',');
		int len = end ? (int)(end - p) : (int)strlen(p);
		rc |=
		    ut_buf_printf(sql, "%s%.*s = excluded.%.*s", first ? "" : ", ", len, p, len, p);
		first = 0;
		p = end ? end + 2 : NULL;
	}
	ut_buf_free(&cols);
	return rc;
}

static void bind_real_or_null(sqlite3_stmt *stmt, int i, int present, double value)
{
	if (present && !isnan(value))
		sqlite3_bind_double(stmt, i, value);
	else
		sqlite3_bind_null(stmt, i);
}

static void bind_text_or_null(sqlite3_stmt *stmt, int i, const char *text)
{
	if (text[0] != '\0')
		sqlite3_bind_text(stmt, i, text, -1, SQLITE_TRANSIENT);
	else
		sqlite3_bind_null(stmt, i);
}

int st_generation_put(struct st_db *db, const struct st_generation *gen, struct ut_err *err)
{
	struct ut_buf sql = {0};
	sqlite3_stmt *stmt;
	if (db->version < 3)
		return ut_err_set(err, "%s: schema version %ld is read-only here", db->path,
				  db->version);
	if (prepare_built(db, put_sql(db, &sql), &sql, &stmt, err) != 0)
		return -1;
	int i = 1;
	int rc;
	sqlite3_bind_int64(stmt, i++, gen->generation);
	if (gen->parent >= 0)
		sqlite3_bind_int64(stmt, i++, gen->parent);
	else
		sqlite3_bind_null(stmt, i++);
	if (gen->population >= 0)
		sqlite3_bind_int64(stmt, i++, gen->population);
	else
		sqlite3_bind_null(stmt, i++);
	if (gen->reevaluation)
		sqlite3_bind_int64(stmt, i++, gen->reevaluates);
	else
		sqlite3_bind_null(stmt, i++);
	sqlite3_bind_text(stmt, i++, st_status_name(gen->status), -1, SQLITE_STATIC);
	/* an Ultralytics row's val_obj result is its val/dfl_loss: stored as val_dfl */
	int ultralytics = meta_hyp_space(&gen->hyp) == META_SPACE_ULTRALYTICS;
	for (int r = 0; r < ST_RESULT_COUNT; r++)
		bind_real_or_null(stmt, i++,
				  gen->has_results && !(ultralytics && r == ST_R_val_obj),
				  gen->results[r]);
	bind_real_or_null(stmt, i++, gen->has_results && ultralytics, gen->results[ST_R_val_obj]);
	bind_real_or_null(stmt, i++, gen->has_results, gen->fitness);
	const int *keys;
	int count = meta_space_keys(meta_hyp_space(&gen->hyp), &keys);
	int in_space[META_ALL] = {0};
	for (int j = 0; j < count; j++)
		in_space[keys[j]] = 1;
	for (int k = 0; k < META_ALL; k++)
		bind_real_or_null(stmt, i++, in_space[k], gen->hyp.v[k]);
	sqlite3_bind_int64(stmt, i++, (sqlite3_int64)gen->seed);
	bind_text_or_null(stmt, i++, gen->device);
	bind_text_or_null(stmt, i++, gen->host);
	bind_real_or_null(stmt, i++, gen->pid > 0, (double)gen->pid);
	bind_real_or_null(stmt, i++, gen->pid > 0, (double)gen->pid_start);
	bind_real_or_null(stmt, i++, gen->started_at > 0, gen->started_at);
	bind_real_or_null(stmt, i++, gen->finished_at > 0, gen->finished_at);
	bind_real_or_null(stmt, i++, gen->finished_at > 0, gen->seconds);
	if (gen->has_exit_status)
		sqlite3_bind_int(stmt, i++, gen->exit_status);
	else
		sqlite3_bind_null(stmt, i++);
	bind_text_or_null(stmt, i++, gen->error);
	bind_text_or_null(stmt, i++, gen->save_dir);
	sqlite3_bind_int64(stmt, i++, gen->attempts);
	sqlite3_bind_int64(stmt, i++, gen->epochs_done);
	rc = sqlite3_step(stmt) == SQLITE_DONE ? 0 : sql_fail(db, "write generation", err);
	sqlite3_finalize(stmt);
	return rc;
}

static double column_real(sqlite3_stmt *stmt, int i, int *present)
{
	int is_null = sqlite3_column_type(stmt, i) == SQLITE_NULL;
	if (present != NULL)
		*present = !is_null;
	return is_null ? NAN : sqlite3_column_double(stmt, i);
}

static int generation_from_row(struct st_db *db, sqlite3_stmt *stmt, struct st_generation *gen,
			       struct ut_err *err)
{
	memset(gen, 0, sizeof(*gen));
	int i = 0;
	gen->generation = (long)sqlite3_column_int64(stmt, i++);
	gen->parent =
	    sqlite3_column_type(stmt, i) == SQLITE_NULL ? -1 : (long)sqlite3_column_int64(stmt, i);
	i++;
	gen->population =
	    sqlite3_column_type(stmt, i) == SQLITE_NULL ? -1 : (long)sqlite3_column_int64(stmt, i);
	i++;
	gen->reevaluation = sqlite3_column_type(stmt, i) != SQLITE_NULL;
	gen->reevaluates = gen->reevaluation ? (long)sqlite3_column_int64(stmt, i) : 0;
	i++;
	const char *status = (const char *)sqlite3_column_text(stmt, i++);
	char q[UT_QUOTE_LEN];
	if (status == NULL || st_status_parse(status, &gen->status) != 0)
		return ut_err_set(err, "%s: generation %ld: bad status '%s'", db->path,
				  gen->generation,
				  status ? ut_quote(status, q, sizeof(q)) : "NULL");
	int present = 0;
	for (int r = 0; r < ST_RESULT_COUNT; r++)
		gen->results[r] = column_real(stmt, i++, r == 0 ? &gen->has_results : NULL);
	double val_dfl = column_real(stmt, i++, NULL);
	/* a Tuner's tune_results.csv gives a fitness and no metrics */
	gen->fitness = column_real(stmt, i++, &present);
	gen->has_results |= present;
	for (int k = 0; k < META_ALL; k++)
		gen->hyp.v[k] = column_real(stmt, i++, NULL);
	if (meta_hyp_space(&gen->hyp) == META_SPACE_ULTRALYTICS)
		gen->results[ST_R_val_obj] = val_dfl;
	gen->seed = (uint64_t)sqlite3_column_int64(stmt, i++);
	copy_text(gen->device, sizeof(gen->device), sqlite3_column_text(stmt, i++));
	copy_text(gen->host, sizeof(gen->host), sqlite3_column_text(stmt, i++));
	gen->pid = (long)sqlite3_column_int64(stmt, i++);
	gen->pid_start = sqlite3_column_int64(stmt, i++);
	gen->started_at = column_real(stmt, i++, &present);
	if (!present)
		gen->started_at = 0;
	gen->finished_at = column_real(stmt, i++, &present);
	if (!present)
		gen->finished_at = 0;
	gen->seconds = column_real(stmt, i++, &present);
	if (!present)
		gen->seconds = 0;
	gen->has_exit_status = sqlite3_column_type(stmt, i) != SQLITE_NULL;
	gen->exit_status = sqlite3_column_int(stmt, i++);
	copy_text(gen->error, sizeof(gen->error), sqlite3_column_text(stmt, i++));
	copy_text(gen->save_dir, sizeof(gen->save_dir), sqlite3_column_text(stmt, i++));
	gen->attempts = (long)sqlite3_column_int64(stmt, i++);
	gen->epochs_done = (long)sqlite3_column_int64(stmt, i++);
	return 0;
}

int st_generations_load(struct st_db *db, struct st_generation **out, size_t *n, struct ut_err *err)
{
	struct ut_buf cols = {0}, sql = {0};
	int rc = generation_columns(db, &cols);
	/* times come back as unix seconds */
	char *started = cols.data ? strstr(cols.data, "started_at, finished_at") : NULL;
	if (rc == 0 && started != NULL) {
		*started = '\0';
		rc |= ut_buf_printf(&sql,
				    "SELECT %s(julianday(started_at) - 2440587.5) * 86400.0,"
				    " (julianday(finished_at) - 2440587.5) * 86400.0%s"
				    " FROM generations ORDER BY generation",
				    cols.data, started + strlen("started_at, finished_at"));
	}
	ut_buf_free(&cols);
	sqlite3_stmt *stmt = NULL;
	if (prepare_built(db, rc, &sql, &stmt, err) != 0)
		return -1;
	struct st_generation *rows = NULL;
	size_t count = 0, cap = 0;
	int step;
	while (rc == 0 && (step = sqlite3_step(stmt)) == SQLITE_ROW) {
		if (count == cap) {
			cap = cap ? cap * 2 : 64;
			struct st_generation *grown = realloc(rows, cap * sizeof(*rows));
			if (grown == NULL) {
				rc = ut_err_set(err, "%s: out of memory", db->path);
				break;
			}
			rows = grown;
		}
		rc = generation_from_row(db, stmt, &rows[count], err);
		count++;
	}
	if (rc == 0 && step != SQLITE_DONE)
		rc = sql_fail(db, "read generations", err);
	sqlite3_finalize(stmt);
	if (rc != 0) {
		free(rows);
		return -1;
	}
	*out = rows;
	*n = count;
	return 0;
}

/* ---- epochs ------------------------------------------------------------------ */

/* The epochs columns of the 14 results.csv values of the database's space. */
static const char *const *epoch_columns_of(const struct st_db *db)
{
	return db->space == META_SPACE_ULTRALYTICS ? epoch_columns_ultralytics : epoch_columns;
}

int st_epoch_put(struct st_db *db, long generation, const double row[ST_EPOCH_COLS],
		 struct ut_err *err)
{
	struct ut_buf sql = {0};
	const char *const *columns = epoch_columns_of(db);
	int rc = ut_buf_printf(&sql, "INSERT OR REPLACE INTO epochs(generation");
	for (int c = 0; c < ST_EPOCH_COLS; c++)
		rc |= ut_buf_printf(&sql, ", \"%s\"", columns[c]);
	rc |= ut_buf_printf(&sql, ") VALUES(?");
	for (int c = 0; c < ST_EPOCH_COLS; c++)
		rc |= ut_buf_printf(&sql, ", ?");
	rc |= ut_buf_printf(&sql, ")");
	sqlite3_stmt *stmt = NULL;
	if (prepare_built(db, rc, &sql, &stmt, err) != 0)
		return -1;
	sqlite3_bind_int64(stmt, 1, generation);
	sqlite3_bind_int64(stmt, 2, (sqlite3_int64)row[0]);
	for (int c = 1; c < ST_EPOCH_COLS; c++)
		bind_real_or_null(stmt, c + 2, 1, row[c]);
	rc = sqlite3_step(stmt) == SQLITE_DONE ? 0 : sql_fail(db, "write epoch", err);
	sqlite3_finalize(stmt);
	return rc;
}

int st_epochs_clear(struct st_db *db, long generation, struct ut_err *err)
{
	sqlite3_stmt *stmt;
	if (prepare(db, "DELETE FROM epochs WHERE generation = ?", &stmt, err) != 0)
		return -1;
	sqlite3_bind_int64(stmt, 1, generation);
	int rc = sqlite3_step(stmt) == SQLITE_DONE ? 0 : sql_fail(db, "clear epochs", err);
	sqlite3_finalize(stmt);
	return rc;
}

int st_epochs_load(struct st_db *db, long generation, double **out, size_t *n, struct ut_err *err)
{
	struct ut_buf sql = {0};
	const char *const *columns = epoch_columns_of(db);
	int rc = ut_buf_printf(&sql, "SELECT generation");
	for (int c = 0; c < ST_EPOCH_COLS; c++)
		rc |= ut_buf_printf(&sql, ", \"%s\"", columns[c]);
	rc |= ut_buf_printf(&sql, " FROM epochs WHERE ?1 < 0 OR generation = ?1"
				  " ORDER BY generation, epoch");
	sqlite3_stmt *stmt = NULL;
	if (prepare_built(db, rc, &sql, &stmt, err) != 0)
		return -1;
	sqlite3_bind_int64(stmt, 1, generation);
	const size_t width = 1 + ST_EPOCH_COLS;
	double *rows = NULL;
	size_t count = 0, cap = 0;
	int step;
	while ((step = sqlite3_step(stmt)) == SQLITE_ROW) {
		if (count == cap) {
			cap = cap ? cap * 2 : 64;
			double *grown = realloc(rows, cap * width * sizeof(*rows));
			if (grown == NULL) {
				free(rows);
				sqlite3_finalize(stmt);
				return ut_err_set(err, "%s: out of memory", db->path);
			}
			rows = grown;
		}
		for (size_t c = 0; c < width; c++)
			rows[count * width + c] = column_real(stmt, (int)c, NULL);
		count++;
	}
	rc = step == SQLITE_DONE ? 0 : sql_fail(db, "read epochs", err);
	sqlite3_finalize(stmt);
	if (rc != 0) {
		free(rows);
		return -1;
	}
	*out = rows;
	*n = count;
	return 0;
}
