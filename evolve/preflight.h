/*
 * preflight.h - what a new evolution checks before generation 0, so that
 * one that cannot work stops at once with one line naming the option and
 * the file, instead of failing every candidate: the files the trainer will
 * be given ({data}, {cfg}, {weights}) as that trainer will look for them,
 * and the trainer program itself.
 *
 * A file is checked only if the trainer template passes it on: a template
 * of your own without {data} takes any --data (e.g. `--data none`).
 */
#ifndef EV_PREFLIGHT_H
#define EV_PREFLIGHT_H

#include <stddef.h>

#include "store.h"
#include "ut.h"

/*
 * A path for a message, single-quoted and escaped by ut_quote_path
 * (backslashes, control characters as \n, \xNN), so a path with a newline
 * or an escape sequence cannot forge or garble a line. Returns buf.
 */
const char *ev_quote(const char *text, char *buf, size_t size);

/* path is a regular file we can read; errors name option and path. */
int ev_check_readable(const char *option, const char *path, struct ut_err *err);

/*
 * The trainer's inputs and program of a new evolution: opts->data, cfg and
 * weights (as they will be passed: absolute if they exist here) and the
 * program of opts->trainer. data.yaml is YAML with train, val and names,
 * and its `path:` folder exists; a model yaml is YAML; weights are a
 * readable file. native: --cfg or --weights is given, yolo-train is beside
 * yolo-evolve or on PATH. yolov5:DIR: files are also looked for as YOLOv5
 * does (DIR/data, models, utils), release weights by name and URLs are
 * left for YOLOv5 to download, a relative `path:` in a data.yaml outside
 * DIR is an error (YOLOv5 resolves it against DIR), and the interpreter
 * must be on PATH. A template of your own: its program exists and runs.
 */
int ev_preflight(const struct st_options *opts, struct ut_err *err);

#endif
