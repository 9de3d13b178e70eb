/*
 * preflight.c - checks of a new evolution before generation 0 (see
 * preflight.h).
 */
#include "preflight.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "contract.h"

#define SEARCH_DEPTH 4 /* folders below YOLOv5's data/, models/, utils/ searched for a file */

/* What the checks share. */
struct preflight {
	const struct st_options *opts;
	const struct ev_template *tpl;
	int native;
	int ultralytics;	   /* the ultralytics[:PYTHON] trainer */
	char yolov5_dir[PATH_MAX]; /* "" unless the trainer is yolov5:DIR */
};

/* One file the trainer gets: the option, its placeholder, the check. */
struct input {
	const char *option;
	const char *placeholder;
	size_t offset; /* of the path in struct st_options */
	int (*check)(const struct preflight *pf, const struct input *in, const char *path,
		     struct ut_err *err);
};

const char *ev_quote(const char *text, char *buf, size_t size)
{
	char inner[PATH_MAX * 4 + 4];
	snprintf(buf, size, "'%s'",
		 ut_quote_path(text, inner, sizeof(inner) < size ? sizeof(inner) : size - 2));
	return buf;
}

int ev_check_readable(const char *option, const char *path, struct ut_err *err)
{
	char quoted[512];
	struct stat st;
	if (path[0] == '\0')
		return ut_err_set(err, "%s '': give a file", option);
	if (stat(path, &st) != 0)
		return ut_err_set(err, "%s %s: %s", option, ev_quote(path, quoted, sizeof(quoted)),
				  strerror(errno));
	if (S_ISDIR(st.st_mode))
		return ut_err_set(err, "%s %s: is a folder, not a file", option,
				  ev_quote(path, quoted, sizeof(quoted)));
	if (!S_ISREG(st.st_mode))
		return ut_err_set(err, "%s %s: not a regular file", option,
				  ev_quote(path, quoted, sizeof(quoted)));
	if (access(path, R_OK) != 0)
		return ut_err_set(err, "%s %s: %s", option, ev_quote(path, quoted, sizeof(quoted)),
				  strerror(errno));
	return 0;
}

/* ---- finding a file as the trainer will ------------------------------------------ */

/* path/name at any depth below dir (YOLOv5's glob ROOT/d/'**'/name). */
static int find_below(const char *dir, const char *name, int depth, char *out, size_t size)
{
	snprintf(out, size, "%s/%s", dir, name);
	if (access(out, F_OK) == 0)
		return 0;
	DIR *folder = depth > 0 ? opendir(dir) : NULL;
	if (folder == NULL)
		return -1;
	int rc = -1;
	struct dirent *entry;
	while (rc != 0 && (entry = readdir(folder)) != NULL) {
		char sub[PATH_MAX];
		struct stat st;
		if (entry->d_name[0] == '.' ||
		    snprintf(sub, sizeof(sub), "%s/%s", dir, entry->d_name) >= (int)sizeof(sub))
			continue;
		if (stat(sub, &st) == 0 && S_ISDIR(st.st_mode))
			rc = find_below(sub, name, depth - 1, out, size);
	}
	closedir(folder);
	return rc;
}

/*
 * Where the trainer will find path: as given, or for yolov5:DIR, a
 * relative name YOLOv5's check_file finds under DIR/data, models or utils.
 */
static int locate(const struct preflight *pf, const struct input *in, const char *path, char *found,
		  size_t size, struct ut_err *err)
{
	static const char *const yolov5_dirs[] = {"data", "models", "utils"};
	snprintf(found, size, "%s", path);
	if (access(path, F_OK) != 0 && pf->yolov5_dir[0] != '\0' && path[0] != '/') {
		for (size_t i = 0; i < UT_ARRAY_LEN(yolov5_dirs); i++) {
			char dir[PATH_MAX + 16];
			snprintf(dir, sizeof(dir), "%s/%s", pf->yolov5_dir, yolov5_dirs[i]);
			if (find_below(dir, path, SEARCH_DEPTH, found, size) == 0)
				return ev_check_readable(in->option, found, err);
		}
		snprintf(found, size, "%s", path);
	}
	return ev_check_readable(in->option, found, err);
}

/* YOLOv5 downloads what it is given as a URL. */
static int is_url(const char *path)
{
	return strncmp(path, "http://", 7) == 0 || strncmp(path, "https://", 8) == 0;
}

/* ---- YAML ---------------------------------------------------------------------------- */

/* Load path as a YAML document whose root is a mapping. */
static int load_mapping(const struct input *in, const char *path, yaml_document_t *doc,
			struct ut_err *err)
{
	char *text, quoted[512];
	size_t len;
	if (ut_read_file(path, &text, &len, err) != 0) {
		struct ut_err cause = *err;
		return ut_err_set(err, "%s %s", in->option, cause.msg);
	}
	yaml_parser_t parser;
	int rc = yaml_parser_initialize(&parser) ? 0 : ut_err_set(err, "out of memory");
	if (rc == 0) {
		yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
		if (!yaml_parser_load(&parser, doc))
			rc = ut_err_set(err, "%s %s:%lu: not YAML: %s", in->option,
					ev_quote(path, quoted, sizeof(quoted)),
					(unsigned long)parser.problem_mark.line + 1,
					parser.problem ? parser.problem : "syntax error");
		yaml_parser_delete(&parser);
	}
	free(text);
	if (rc != 0)
		return -1;
	yaml_node_t *root = yaml_document_get_root_node(doc);
	if (root == NULL || root->type != YAML_MAPPING_NODE) {
		yaml_document_delete(doc);
		return ut_err_set(err, "%s %s: expected a YAML mapping (key: value lines)%s",
				  in->option, ev_quote(path, quoted, sizeof(quoted)),
				  root ? "" : ", the file is empty");
	}
	return 0;
}

/* The value of key in the root mapping, NULL if absent. */
static const yaml_node_t *mapping_get(yaml_document_t *doc, const char *key)
{
	yaml_node_t *root = yaml_document_get_root_node(doc);
	for (yaml_node_pair_t *pair = root->data.mapping.pairs.start;
	     pair < root->data.mapping.pairs.top; pair++) {
		const yaml_node_t *k = yaml_document_get_node(doc, pair->key);
		if (k->type == YAML_SCALAR_NODE &&
		    strcmp((const char *)k->data.scalar.value, key) == 0)
			return yaml_document_get_node(doc, pair->value);
	}
	return NULL;
}

/* A scalar's text, NULL for anything else or YAML's null. */
static const char *scalar_text(const yaml_node_t *node)
{
	if (node == NULL || node->type != YAML_SCALAR_NODE)
		return NULL;
	const char *text = (const char *)node->data.scalar.value;
	int plain = node->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
	if (plain && (text[0] == '\0' || strcmp(text, "~") == 0 || strcmp(text, "null") == 0 ||
		      strcmp(text, "Null") == 0 || strcmp(text, "NULL") == 0))
		return NULL;
	return text;
}

/* ---- the inputs ------------------------------------------------------------------ */

/* Is file inside dir (both resolved)? */
static int inside(const char *file, const char *dir)
{
	char real[PATH_MAX];
	size_t len = strlen(dir);
	return realpath(file, real) != NULL && strncmp(real, dir, len) == 0 && real[len] == '/';
}

/*
 * data.yaml's `path:` (the dataset root), where its trainer resolves it:
 * yolo-train against the yaml's folder, YOLOv5 against its own folder,
 * which is only right for the yamls that come with YOLOv5.
 */
static int check_data_root(const struct preflight *pf, const struct input *in, const char *file,
			   yaml_document_t *doc, struct ut_err *err)
{
	const char *root = scalar_text(mapping_get(doc, "path"));
	char quoted[512], quoted_root[512], resolved[PATH_MAX * 2];
	if (root == NULL)
		return 0;
	ev_quote(file, quoted, sizeof(quoted));
	ev_quote(root, quoted_root, sizeof(quoted_root));
	if (root[0] == '/') {
		snprintf(resolved, sizeof(resolved), "%s", root);
	} else if (pf->yolov5_dir[0] != '\0') {
		if (!inside(file, pf->yolov5_dir))
			return ut_err_set(
			    err,
			    "%s %s: path: %s is relative, and YOLOv5 resolves it against its own "
			    "folder %s, not this file's: give an absolute path",
			    in->option, quoted, quoted_root,
			    ev_quote(pf->yolov5_dir, resolved, sizeof(resolved)));
		snprintf(resolved, sizeof(resolved), "%s/%s", pf->yolov5_dir, root);
	} else {
		const char *slash = strrchr(file, '/');
		snprintf(resolved, sizeof(resolved), "%.*s/%s", slash ? (int)(slash - file) : 1,
			 slash ? file : ".", root);
	}
	struct stat st;
	if (pf->yolov5_dir[0] != '\0' && mapping_get(doc, "download") != NULL)
		return 0; /* YOLOv5 downloads a missing dataset */
	if (stat(resolved, &st) != 0 || !S_ISDIR(st.st_mode))
		return ut_err_set(err, "%s %s: path: %s: no such folder (%s)", in->option, quoted,
				  quoted_root, resolved);
	return 0;
}

static int check_data(const struct preflight *pf, const struct input *in, const char *path,
		      struct ut_err *err)
{
	static const char *const required[] = {"train", "val", "names"};
	static const char *const meaning[] = {"the training images", "the validation images",
					      "the class names"};
	char file[PATH_MAX], quoted[512];
	if (pf->yolov5_dir[0] != '\0' && is_url(path))
		return 0;
	if (locate(pf, in, path, file, sizeof(file), err) != 0)
		return -1;
	yaml_document_t doc;
	if (load_mapping(in, file, &doc, err) != 0)
		return -1;
	int rc = 0;
	for (size_t i = 0; rc == 0 && i < UT_ARRAY_LEN(required); i++) {
		const yaml_node_t *value = mapping_get(&doc, required[i]);
		if (value == NULL ||
		    (value->type == YAML_SCALAR_NODE && scalar_text(value) == NULL))
			rc = ut_err_set(err, "%s %s: no '%s:' (%s); is this a dataset yaml?",
					in->option, ev_quote(file, quoted, sizeof(quoted)),
					required[i], meaning[i]);
	}
	if (rc == 0)
		rc = check_data_root(pf, in, file, &doc, err);
	yaml_document_delete(&doc);
	return rc;
}

static int check_cfg(const struct preflight *pf, const struct input *in, const char *path,
		     struct ut_err *err)
{
	char file[PATH_MAX];
	yaml_document_t doc;
	if (locate(pf, in, path, file, sizeof(file), err) != 0 ||
	    load_mapping(in, file, &doc, err) != 0)
		return -1;
	yaml_document_delete(&doc);
	return 0;
}

static int check_weights(const struct preflight *pf, const struct input *in, const char *path,
			 struct ut_err *err)
{
	size_t len = strlen(path);
	int release_name =
	    strchr(path, '/') == NULL && len > 3 && strcmp(path + len - 3, ".pt") == 0;
	/* YOLOv5 fetches its release weights (yolov5s.pt ...) by name, and URLs */
	if (pf->yolov5_dir[0] != '\0' &&
	    (is_url(path) || (release_name && access(path, F_OK) != 0)))
		return 0;
	return ev_check_readable(in->option, path, err);
}

static const struct input inputs[] = {
    {"--data", "data", offsetof(struct st_options, data), check_data},
    {"--cfg", "cfg", offsetof(struct st_options, cfg), check_cfg},
    {"--weights", "weights", offsetof(struct st_options, weights), check_weights},
};

/* ---- the program ----------------------------------------------------------------- */

static int is_executable(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

/* A bare program name as execvp will find it. */
static int on_path(const char *name)
{
	const char *path = getenv("PATH");
	if (path == NULL)
		path = "/bin:/usr/bin"; /* execvp's default */
	while (1) {
		size_t len = strcspn(path, ":");
		char candidate[PATH_MAX];
		/* an empty entry is the current folder */
		if (snprintf(candidate, sizeof(candidate), "%.*s%s%s", (int)len, path,
			     len ? "/" : "", name) < (int)sizeof(candidate) &&
		    is_executable(candidate))
			return 1;
		if (path[len] == '\0')
			return 0;
		path += len + 1;
	}
}

static int check_program(const struct preflight *pf, struct ut_err *err)
{
	const char *program = pf->tpl->argv[0];
	char quoted[512];
	ev_quote(program, quoted, sizeof(quoted));
	if (strchr(program, '/') != NULL ? is_executable(program) : on_path(program))
		return 0;
	if (pf->native)
		return ut_err_set(err, "--trainer native: yolo-train is neither beside yolo-evolve "
				       "nor on PATH (build it, or give another --trainer)");
	if (pf->yolov5_dir[0] != '\0')
		return ut_err_set(err, "--python %s: %s", quoted,
				  strchr(program, '/') ? "not an executable file"
						       : "not found on PATH");
	return ut_err_set(err, "--trainer: program %s %s", quoted,
			  strchr(program, '/') ? "is not an executable file" : "not found on PATH");
}

int ev_preflight(const struct st_options *opts, struct ut_err *err)
{
	struct ev_template tpl;
	if (ev_template_parse(opts->trainer, opts->python, &tpl, err) != 0)
		return -1;
	struct preflight pf = {.opts = opts,
			       .tpl = &tpl,
			       .native = strcmp(opts->trainer, "native") == 0,
			       .ultralytics =
				   ev_template_space(opts->trainer) == META_SPACE_ULTRALYTICS};
	if (strncmp(opts->trainer, "yolov5:", 7) == 0 &&
	    realpath(opts->trainer + 7, pf.yolov5_dir) == NULL)
		pf.yolov5_dir[0] = '\0';
	int rc = 0;
	for (size_t i = 0; rc == 0 && i < UT_ARRAY_LEN(inputs); i++) {
		const char *path = (const char *)opts + inputs[i].offset;
		if (!ev_template_uses(&tpl, inputs[i].placeholder))
			continue;
		/* --data is required; an empty --cfg or --weights means none */
		if (path[0] == '\0' && strcmp(inputs[i].placeholder, "data") != 0)
			continue;
		/* the ultralytics package finds its own yamls and weights by name (coco8.yaml,
		 * yolo11n.yaml, yolo11n.pt), downloading them if need be: left to it */
		if (pf.ultralytics && strchr(path, '/') == NULL && access(path, F_OK) != 0)
			continue;
		rc = inputs[i].check(&pf, &inputs[i], path, err);
	}
	if (rc == 0 && pf.native && opts->cfg[0] == '\0' && opts->weights[0] == '\0')
		rc = ut_err_set(err, "--cfg or --weights is required by the native trainer (a "
				     "model yaml such as models/yolov5s.yaml)");
	if (rc == 0 && pf.ultralytics && opts->cfg[0] == '\0' && opts->weights[0] == '\0')
		rc = ut_err_set(err,
				"--cfg or --weights is required by the ultralytics trainer (a "
				"model yaml such as yolo11n.yaml, or weights such as yolo11n.pt)");
	if (rc == 0)
		rc = check_program(&pf, err);
	ev_template_free(&tpl);
	return rc;
}
