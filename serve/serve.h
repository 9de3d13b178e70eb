/*
 * serve.h - `yolo-evolve serve`: a live dashboard of one or more evolution
 * databases over libmicrohttpd, read while an evolver writes them.
 *
 * Tutorial:
 *
 *     struct sv_params params = {.host = "127.0.0.1", .port = 8080};
 *     sv_params_add_db(&params, "runs/evolve/exp/evolve.db", &err);
 *     struct sv_server *server;
 *     if (sv_start(&params, &server, &err) == 0) {
 *             printf("http://%s:%u/\n", params.host, sv_port(server));
 *             ... wait for SIGINT ...
 *             sv_stop(server);
 *     }
 *
 * The server never writes a database: each is opened with st_open_readonly
 * and PRAGMA query_only, and what requests may name is a run index and a
 * generation number, never SQL or a path. Answers come from a snapshot per
 * run rebuilt at most every refresh_ms, so any request rate costs the
 * evolver at most a few reads per second. The page and its script are
 * embedded in the binary (serve/assets, no network needed).
 */
#ifndef SV_SERVE_H
#define SV_SERVE_H

#include <stddef.h>

#include "store.h"

#define SV_MAX_RUNS 64

struct sv_params {
	const char *host;	/* address to bind: "127.0.0.1" unless told */
	unsigned port;		/* 0: any free port (read it back with sv_port) */
	long refresh_ms;	/* snapshot age limit; 0: 500 */
	size_t threads;		/* HTTP worker threads; 0: 4 */
	char *dbs[SV_MAX_RUNS]; /* database paths (malloc'ed, sv_params_free) */
	size_t ndbs;
};

/*
 * Add PATH: a database file, or a folder holding runs (DIR/evolve.db and
 * DIR/NAME/evolve.db, in name order). A folder with no run is an error.
 */
int sv_params_add_db(struct sv_params *params, const char *path, struct ut_err *err);
void sv_params_free(struct sv_params *params);

struct sv_server;

/* Open every database read-only and start serving in background threads. */
int sv_start(const struct sv_params *params, struct sv_server **out, struct ut_err *err);
/* The port really bound (useful with port 0). */
unsigned sv_port(const struct sv_server *server);
/* Stop the threads, close the databases, free everything. */
void sv_stop(struct sv_server *server);

/*
 * Hyperparameter importance: for each key, the share of the fitness
 * variance explained by that key alone (the first-order term of a
 * functional ANOVA, estimated as the correlation ratio eta^2 over
 * equal-count bins of the key's values). x is n rows of nkeys values (the
 * keys of the run's space), y n fitness values; importance[k] (k < nkeys)
 * in [0, 1], -1 for a key that does not vary. Needs n >= 2 (else every key
 * is -1).
 */
void sv_importance(const double *x, const double *y, size_t n, int nkeys, double *importance);

#endif
