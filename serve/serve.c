/*
 * serve.c - the dashboard's HTTP side (see serve.h): libmicrohttpd with a
 * small worker pool, a table of routes, one read-only connection and one
 * cached snapshot per run.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>
#include <microhttpd.h>
#include <sqlite3.h>

#include "api.h"
#include "assets.h"
#include "reports.h"
#include "serve.h"

#define URL_MAX 512		 /* longer request paths get 414 */
#define MEMORY_LIMIT (32 * 1024) /* per connection: larger headers get 431 */
#define CONNECTION_LIMIT 512
#define CONNECTION_TIMEOUT_S 15

/* One database and its latest snapshot, guarded by lock. */
struct run {
	char path[ST_STR], name[256];
	pthread_mutex_t lock;
	struct st_db *db;
	double built_at; /* 0: never */
	char *json[3];	 /* overview, generations, importance */
	char error[UT_ERR_LEN];
	struct st_generation *gens; /* for hyp.yaml downloads */
	size_t n;
};
enum { JSON_OVERVIEW, JSON_GENERATIONS, JSON_IMPORTANCE };

struct sv_server {
	struct MHD_Daemon *daemon;
	unsigned port;
	double refresh_s;
	int loopback; /* bound to a loopback address: check Host against DNS rebinding */
	struct run *runs;
	size_t nruns;
};

/* ---- parameters ---- */

static int add_path(struct sv_params *params, const char *path, struct ut_err *err)
{
	if (params->ndbs >= SV_MAX_RUNS)
		return ut_err_set(err, "serve: at most %d databases", SV_MAX_RUNS);
	params->dbs[params->ndbs] = strdup(path);
	if (params->dbs[params->ndbs] == NULL)
		return ut_err_set(err, "serve: out of memory");
	params->ndbs++;
	return 0;
}

static int is_file(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int sv_params_add_db(struct sv_params *params, const char *path, struct ut_err *err)
{
	char quoted[UT_QUOTE_LEN];
	struct stat st;
	if (stat(path, &st) != 0)
		return ut_err_set(err, "--db %s: %s", ut_quote_path(path, quoted, sizeof(quoted)),
				  strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return add_path(params, path, err);
	size_t before = params->ndbs;
	char candidate[ST_STR];
	snprintf(candidate, sizeof(candidate), "%s/evolve.db", path);
	if (is_file(candidate) && add_path(params, candidate, err) != 0)
		return -1;
	struct dirent **entries = NULL;
	int count = scandir(path, &entries, NULL, alphasort);
	int rc = 0;
	for (int i = 0; i < count; i++) {
		if (rc == 0 && entries[i]->d_name[0] != '.') {
			snprintf(candidate, sizeof(candidate), "%s/%s/evolve.db", path,
				 entries[i]->d_name);
			if (is_file(candidate))
				rc = add_path(params, candidate, err);
		}
		free(entries[i]);
	}
	free(entries);
	if (rc == 0 && params->ndbs == before)
		rc = ut_err_set(err, "--db %s: a folder with no evolve.db in it or its subfolders",
				ut_quote_path(path, quoted, sizeof(quoted)));
	return rc;
}

void sv_params_free(struct sv_params *params)
{
	for (size_t i = 0; i < params->ndbs; i++)
		free(params->dbs[i]);
	params->ndbs = 0;
}

/* ---- snapshots ---- */

/* The run's name: the folder holding its database (project/NAME/evolve.db), else the file's. */
static void run_name(const char *path, char *name, size_t size)
{
	char copy[ST_STR];
	snprintf(copy, sizeof(copy), "%s", path);
	char *slash = strrchr(copy, '/');
	if (slash != NULL && strcmp(slash + 1, "evolve.db") == 0 && slash != copy) {
		*slash = '\0';
		slash = strrchr(copy, '/');
	}
	snprintf(name, size, "%s", slash ? slash + 1 : copy);
}

static int load_running_epochs(struct run *run, struct sv_snapshot *snap, struct ut_err *err)
{
	const size_t width = 1 + ST_EPOCH_COLS;
	for (size_t i = 0; i < snap->n; i++) {
		if (snap->gens[i].status != ST_RUNNING)
			continue;
		double *rows = NULL;
		size_t n = 0;
		if (st_epochs_load(run->db, snap->gens[i].generation, &rows, &n, err) != 0)
			return -1;
		double *grown = realloc(snap->running_epochs,
					(snap->running_rows + n + 1) * width * sizeof(*grown));
		if (grown == NULL) {
			free(rows);
			return ut_err_set(err, "out of memory");
		}
		snap->running_epochs = grown;
		if (n > 0)
			memcpy(&grown[snap->running_rows * width], rows, n * width * sizeof(*rows));
		snap->running_rows += n;
		free(rows);
	}
	return 0;
}

/* Read the database once and rebuild every cached answer of the run. Called with run->lock held. */
static int rebuild(struct run *run, struct ut_err *err)
{
	struct sv_snapshot snap = {.name = run->name, .path = run->path, .now = ut_now()};
	int found = 0;
	snap.opts = calloc(1, sizeof(*snap.opts));
	int rc = snap.opts ? 0 : ut_err_set(err, "out of memory");
	/* one read transaction: every answer of the snapshot sees the same database state */
	sqlite3 *sql = st_handle(run->db);
	int began = rc == 0 && sqlite3_exec(sql, "BEGIN", NULL, NULL, NULL) == SQLITE_OK;
	if (rc == 0)
		rc = st_options_read(run->db, snap.opts, &found, err);
	if (rc == 0 && !found) {
		free(snap.opts);
		snap.opts = NULL;
	}
	if (rc == 0)
		rc = st_generations_load(run->db, &snap.gens, &snap.n, err);
	if (rc == 0)
		rc = st_stop_read(run->db, snap.stop_reason, sizeof(snap.stop_reason), err);
	if (rc == 0) {
		snap.writer = st_writer_alive(run->db, &snap.writer_pid);
		rp_show_stale_as_interrupted(snap.gens, snap.n, snap.writer);
		rc = load_running_epochs(run, &snap, err);
	}
	if (began)
		sqlite3_exec(sql, "COMMIT", NULL, NULL,
			     NULL); /* ends the read; nothing was written */
	char *json[3] = {NULL, NULL, NULL};
	if (rc == 0) {
		json[JSON_OVERVIEW] = sv_json_overview(&snap);
		json[JSON_GENERATIONS] = sv_json_generations(&snap);
		json[JSON_IMPORTANCE] = sv_json_importance(&snap);
		if (!json[0] || !json[1] || !json[2])
			rc = ut_err_set(err, "out of memory");
	}
	if (rc == 0) {
		for (int i = 0; i < 3; i++) {
			free(run->json[i]);
			run->json[i] = json[i];
		}
		free(run->gens);
		run->gens = snap.gens;
		run->n = snap.n;
		snap.gens = NULL;
		run->built_at = snap.now;
	} else {
		for (int i = 0; i < 3; i++)
			free(json[i]);
	}
	free(snap.gens);
	free(snap.opts);
	free(snap.running_epochs);
	return rc;
}

static int open_run(struct run *run, const char *path, struct ut_err *err)
{
	snprintf(run->path, sizeof(run->path), "%s", path);
	run_name(path, run->name, sizeof(run->name));
	if (pthread_mutex_init(&run->lock, NULL) != 0)
		return ut_err_set(err, "serve: cannot create a mutex");
	if (st_open_readonly(path, &run->db, err) != 0)
		return -1;
	/* belt and braces: this connection refuses every write */
	char *message = NULL;
	if (sqlite3_exec(st_handle(run->db), "PRAGMA query_only = 1", NULL, NULL, &message) !=
	    SQLITE_OK) {
		ut_err_set(err, "%s: PRAGMA query_only: %s", path, message ? message : "failed");
		sqlite3_free(message);
		return -1;
	}
	return rebuild(run, err);
}

/* ---- responses ---- */

struct answer {
	unsigned status;
	const char *type;
	const char *body; /* copied into the response */
	size_t len;
	const char *download; /* Content-Disposition file name (no quotes in it), or NULL */
	char download_buf[64];
	char *owned; /* freed after queueing */
};

static enum MHD_Result queue(struct MHD_Connection *conn, const struct answer *a)
{
	struct MHD_Response *response =
	    MHD_create_response_from_buffer(a->len, (void *)a->body, MHD_RESPMEM_MUST_COPY);
	if (response == NULL)
		return MHD_NO;
	MHD_add_response_header(response, "Content-Type", a->type);
	MHD_add_response_header(response, "Cache-Control", "no-store");
	MHD_add_response_header(response, "X-Content-Type-Options", "nosniff");
	MHD_add_response_header(response, "Referrer-Policy", "no-referrer");
	MHD_add_response_header(response, "Content-Security-Policy",
				"default-src 'self'; img-src 'self' data:; frame-ancestors 'none'");
	if (a->status == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(response, "Allow", "GET, HEAD");
	if (a->download != NULL) {
		char disposition[128];
		snprintf(disposition, sizeof(disposition), "attachment; filename=\"%s\"",
			 a->download);
		MHD_add_response_header(response, "Content-Disposition", disposition);
	}
	enum MHD_Result rc = MHD_queue_response(conn, a->status, response);
	MHD_destroy_response(response);
	return rc;
}

/* A JSON error {"error": message}; message is ours, never request text. */
static void error_answer(struct answer *a, unsigned status, const char *message)
{
	a->status = status;
	a->type = "application/json";
	a->owned = malloc(strlen(message) + 16);
	if (a->owned == NULL) {
		a->body = "{\"error\":\"out of memory\"}";
		a->len = strlen(a->body);
		return;
	}
	/* messages are fixed ASCII without quotes or backslashes */
	sprintf(a->owned, "{\"error\":\"%s\"}", message);
	a->body = a->owned;
	a->len = strlen(a->owned);
}

static void text_answer(struct answer *a, char *owned, const char *type)
{
	a->status = MHD_HTTP_OK;
	a->type = type;
	a->owned = owned;
	a->body = owned;
	a->len = strlen(owned);
}

/* ---- routes ---- */

struct request {
	struct sv_server *server;
	struct MHD_Connection *conn;
	struct run *run;
	long generation; /* -1: none given */
};

/* Copy a cached answer of the run, rebuilding the snapshot if it is older than refresh_s. */
static void cached_json(struct request *req, int which, struct answer *a)
{
	struct run *run = req->run;
	struct ut_err err;
	pthread_mutex_lock(&run->lock);
	double now = ut_now();
	if ((run->built_at == 0 || now - run->built_at >= req->server->refresh_s) &&
	    rebuild(run, &err) != 0) {
		snprintf(run->error, sizeof(run->error), "%s", err.msg);
		ut_log(UT_LOG_WARN, "serve: %s", err.msg);
	}
	char *copy = run->json[which] ? strdup(run->json[which]) : NULL;
	pthread_mutex_unlock(&run->lock);
	if (copy == NULL)
		error_answer(a, MHD_HTTP_SERVICE_UNAVAILABLE, "the database cannot be read now");
	else
		text_answer(a, copy, "application/json");
}

static void route_overview(struct request *req, struct answer *a)
{
	cached_json(req, JSON_OVERVIEW, a);
}

static void route_generations(struct request *req, struct answer *a)
{
	cached_json(req, JSON_GENERATIONS, a);
}

static void route_importance(struct request *req, struct answer *a)
{
	cached_json(req, JSON_IMPORTANCE, a);
}

static void route_runs(struct request *req, struct answer *a)
{
	cJSON *root = cJSON_CreateObject();
	cJSON *list = cJSON_AddArrayToObject(root, "runs");
	for (size_t i = 0; i < req->server->nruns; i++) {
		cJSON *obj = cJSON_CreateObject();
		cJSON_AddNumberToObject(obj, "run", (double)i);
		cJSON_AddStringToObject(obj, "name", req->server->runs[i].name);
		cJSON_AddItemToArray(list, obj);
	}
	char *text = cJSON_PrintUnformatted(root);
	cJSON_Delete(root);
	if (text == NULL)
		error_answer(a, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
	else
		text_answer(a, text, "application/json");
}

static void route_epochs(struct request *req, struct answer *a)
{
	if (req->generation < 0) {
		error_answer(a, MHD_HTTP_BAD_REQUEST, "give gen=N");
		return;
	}
	struct ut_err err;
	double *rows = NULL;
	size_t n = 0;
	pthread_mutex_lock(&req->run->lock);
	int rc = st_epochs_load(req->run->db, req->generation, &rows, &n, &err);
	pthread_mutex_unlock(&req->run->lock);
	char *text = rc == 0 ? sv_json_epochs(req->generation, rows, n) : NULL;
	free(rows);
	if (rc != 0)
		ut_log(UT_LOG_WARN, "serve: %s", err.msg);
	if (text == NULL)
		error_answer(a, MHD_HTTP_SERVICE_UNAVAILABLE, "the database cannot be read now");
	else
		text_answer(a, text, "application/json");
}

/* hyp.yaml of one candidate, from the latest snapshot. */
static void route_hyp(struct request *req, struct answer *a)
{
	if (req->generation < 0) {
		error_answer(a, MHD_HTTP_BAD_REQUEST, "give gen=N");
		return;
	}
	char *text = NULL;
	size_t len = 0;
	int found = 0;
	FILE *mem = open_memstream(&text, &len);
	if (mem == NULL) {
		error_answer(a, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
		return;
	}
	pthread_mutex_lock(&req->run->lock);
	for (size_t i = 0; i < req->run->n && !found; i++) {
		const struct st_generation *g = &req->run->gens[i];
		if (g->generation != req->generation)
			continue;
		found = 1;
		fprintf(mem, "# generation %ld (%s), fitness ", g->generation,
			st_status_name(g->status));
		fprintf(mem, g->has_results ? "%.5f\n" : "none\n", g->fitness);
		meta_hyp_write(mem, &g->hyp, NULL);
	}
	pthread_mutex_unlock(&req->run->lock);
	fclose(mem);
	if (!found) {
		free(text);
		error_answer(a, MHD_HTTP_NOT_FOUND, "no such generation");
		return;
	}
	text_answer(a, text, "application/yaml; charset=utf-8");
	snprintf(a->download_buf, sizeof(a->download_buf), "hyp_gen%ld.yaml", req->generation);
	a->download = a->download_buf;
}

/* hyp_evolve.yaml of the best done candidate, as `yolo-evolve export --best` writes it. */
static void route_best(struct request *req, struct answer *a)
{
	struct ut_err err;
	char *text = NULL;
	size_t len = 0;
	FILE *mem = open_memstream(&text, &len);
	if (mem == NULL) {
		error_answer(a, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
		return;
	}
	pthread_mutex_lock(&req->run->lock);
	int rc = st_export_hyp_evolve(req->run->db, mem, &err);
	pthread_mutex_unlock(&req->run->lock);
	fclose(mem);
	if (rc != 0) {
		free(text);
		error_answer(a, MHD_HTTP_NOT_FOUND, "no candidate is done yet");
		return;
	}
	text_answer(a, text, "application/yaml; charset=utf-8");
	a->download = "hyp_evolve.yaml";
}

struct route {
	const char *path;
	void (*fn)(struct request *, struct answer *);
};

static const struct route routes[] = {
    {"/api/runs", route_runs},
    {"/api/overview", route_overview},
    {"/api/generations", route_generations},
    {"/api/importance", route_importance},
    {"/api/epochs", route_epochs},
    {"/api/hyp.yaml", route_hyp},
    {"/api/best.yaml", route_best},
};

static int asset_answer(const char *url, struct answer *a)
{
	if (strcmp(url, "/") == 0)
		url = "/index.html";
	for (size_t i = 0; i < sv_asset_count; i++) {
		if (strcmp(url, sv_assets[i].path) != 0)
			continue;
		a->status = MHD_HTTP_OK;
		a->type = sv_assets[i].type;
		a->body = (const char *)sv_assets[i].data;
		a->len = sv_assets[i].len;
		return 1;
	}
	return 0;
}

/* A query argument as a number in [0, max]; -1 if absent, -2 if malformed. */
static long query_number(struct MHD_Connection *conn, const char *key, long max)
{
	const char *text = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, key);
	long value;
	if (text == NULL)
		return -1;
	return ut_parse_long(text, 0, max, &value) == 0 ? value : -2;
}

/*
 * Bound to loopback, answer only requests addressed to a loopback name, so a
 * web page elsewhere cannot reach the dashboard by DNS rebinding.
 */
static int host_allowed(const struct sv_server *server, struct MHD_Connection *conn)
{
	if (!server->loopback)
		return 1;
	const char *host = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Host");
	if (host == NULL)
		return 0;
	static const char *const names[] = {"127.0.0.1", "localhost", "[::1]"};
	for (size_t i = 0; i < UT_ARRAY_LEN(names); i++) {
		size_t len = strlen(names[i]);
		if (strncmp(host, names[i], len) == 0 && (host[len] == '\0' || host[len] == ':'))
			return 1;
	}
	return 0;
}

static void dispatch(struct sv_server *server, struct MHD_Connection *conn, const char *url,
		     const char *method, struct answer *a)
{
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
		error_answer(a, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET and HEAD");
		return;
	}
	if (!host_allowed(server, conn)) {
		error_answer(a, MHD_HTTP_FORBIDDEN, "unexpected Host header");
		return;
	}
	if (strlen(url) > URL_MAX) {
		error_answer(a, MHD_HTTP_URI_TOO_LONG, "path too long");
		return;
	}
	if (asset_answer(url, a))
		return;
	for (size_t i = 0; i < UT_ARRAY_LEN(routes); i++) {
		if (strcmp(url, routes[i].path) != 0)
			continue;
		long run = query_number(conn, "run", (long)server->nruns - 1);
		long gen = query_number(conn, "gen", 1L << 40);
		if (run == -2 || gen == -2) {
			error_answer(a, MHD_HTTP_BAD_REQUEST, "run and gen must be known numbers");
			return;
		}
		struct request req = {.server = server,
				      .conn = conn,
				      .run = &server->runs[run < 0 ? 0 : run],
				      .generation = gen};
		routes[i].fn(&req, a);
		return;
	}
	error_answer(a, MHD_HTTP_NOT_FOUND, "not found");
}

static int has_body(struct MHD_Connection *conn)
{
	const char *length = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
	return (length != NULL && strcmp(length, "0") != 0) ||
	       MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Transfer-Encoding") != NULL;
}

/*
 * libmicrohttpd calls this once when the headers are in and again when the
 * request is complete. A request with a body is refused at once (413, the
 * connection then closes without reading it); any other is answered on the
 * second call, which keeps the connection alive for the next request.
 * Other methods than GET and HEAD get 405 at once, also before any body.
 */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
				  const char *method, const char *version, const char *upload_data,
				  size_t *upload_data_size, void **con_cls)
{
	struct answer a = {0};
	if (*con_cls == NULL) {
		*con_cls = conn;
		if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
			error_answer(&a, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET and HEAD");
		else if (has_body(conn))
			error_answer(&a, MHD_HTTP_CONTENT_TOO_LARGE, "no request body is accepted");
		else
			return MHD_YES;
	} else if (*upload_data_size != 0) {
		*upload_data_size = 0; /* cannot happen after the refusal; drop it */
		return MHD_YES;
	} else {
		dispatch(cls, conn, url, method, &a);
	}
	enum MHD_Result rc = queue(conn, &a);
	free(a.owned);
	return rc;
}

/* ---- start and stop ---- */

static int resolve(const char *host, unsigned port, struct sockaddr_storage *addr, int *loopback,
		   struct ut_err *err)
{
	struct addrinfo hints = {
	    .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
	struct addrinfo *found = NULL;
	char quoted[UT_QUOTE_LEN];
	int rc = getaddrinfo(host, NULL, &hints, &found);
	if (rc != 0)
		return ut_err_set(err, "--host %s: %s", ut_quote(host, quoted, sizeof(quoted)),
				  gai_strerror(rc));
	memset(addr, 0, sizeof(*addr));
	memcpy(addr, found->ai_addr, found->ai_addrlen);
	freeaddrinfo(found);
	if (addr->ss_family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)addr;
		in->sin_port = htons((uint16_t)port);
		*loopback = (ntohl(in->sin_addr.s_addr) >> 24) == 127;
	} else {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)addr;
		in6->sin6_port = htons((uint16_t)port);
		*loopback = IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr);
	}
	return 0;
}

int sv_start(const struct sv_params *params, struct sv_server **out, struct ut_err *err)
{
	if (params->ndbs == 0)
		return ut_err_set(err, "serve: give --db PATH (see --help)");
	struct sv_server *server = calloc(1, sizeof(*server));
	if (server == NULL ||
	    (server->runs = calloc(params->ndbs, sizeof(*server->runs))) == NULL) {
		free(server);
		return ut_err_set(err, "serve: out of memory");
	}
	server->refresh_s = (params->refresh_ms > 0 ? params->refresh_ms : 500) / 1000.0;
	for (size_t i = 0; i < params->ndbs; i++) {
		server->nruns++;
		if (open_run(&server->runs[i], params->dbs[i], err) != 0) {
			sv_stop(server);
			return -1;
		}
	}
	struct sockaddr_storage addr;
	if (resolve(params->host ? params->host : "127.0.0.1", params->port, &addr,
		    &server->loopback, err) != 0) {
		sv_stop(server);
		return -1;
	}
	unsigned flags =
	    MHD_USE_AUTO_INTERNAL_THREAD | (addr.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0);
	server->daemon = MHD_start_daemon(
	    flags, (uint16_t)params->port, NULL, NULL, on_request, server, MHD_OPTION_SOCK_ADDR,
	    (const struct sockaddr *)&addr, MHD_OPTION_THREAD_POOL_SIZE,
	    (unsigned)(params->threads ? params->threads : 4), MHD_OPTION_CONNECTION_LIMIT,
	    (unsigned)CONNECTION_LIMIT, MHD_OPTION_CONNECTION_TIMEOUT,
	    (unsigned)CONNECTION_TIMEOUT_S, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
	    (size_t)MEMORY_LIMIT, MHD_OPTION_END);
	if (server->daemon == NULL) {
		char quoted[UT_QUOTE_LEN];
		ut_err_set(
		    err,
		    "serve: cannot listen on %s port %u (in use, or not an address of this "
		    "machine?)",
		    ut_quote(params->host ? params->host : "127.0.0.1", quoted, sizeof(quoted)),
		    params->port);
		sv_stop(server);
		return -1;
	}
	const union MHD_DaemonInfo *info =
	    MHD_get_daemon_info(server->daemon, MHD_DAEMON_INFO_BIND_PORT);
	server->port = info ? info->port : params->port;
	*out = server;
	return 0;
}

unsigned sv_port(const struct sv_server *server)
{
	return server->port;
}

void sv_stop(struct sv_server *server)
{
	if (server == NULL)
		return;
	if (server->daemon != NULL)
		MHD_stop_daemon(server->daemon);
	for (size_t i = 0; i < server->nruns; i++) {
		struct run *run = &server->runs[i];
		st_close(run->db);
		for (int j = 0; j < 3; j++)
			free(run->json[j]);
		free(run->gens);
		pthread_mutex_destroy(&run->lock);
	}
	free(server->runs);
	free(server);
}
