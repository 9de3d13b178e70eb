/*
 * dataset.h - YOLOv5 v7.0 datasets: data.yaml, the image list of a split,
 * the images/ -> labels/ mapping, label checks, the label cache, and image
 * decoding (JPEG with EXIF orientation, PNG, BMP) into 8-bit BGR.
 *
 *	struct tr_data_yaml yaml;
 *	if (tr_data_yaml_load("data.yaml", &yaml, &err) != 0) ...   // err names file:line key
 *	struct tr_data_split train;
 *	struct tr_data_open_opts opts = {.nc = yaml.nc, .use_cache = true};
 *	if (tr_data_split_open((const char *const *)yaml.train, yaml.n_train, &opts, &train, &err)
 *!= 0) ... for (int i = 0; i < train.n_items; i++) { struct tr_data_item *it = &train.items[i];  //
 *path, shape, labels, segments struct tr_image im; tr_data_image_load(it->image_path, &im, &err);
 * // BGR, EXIF applied
 *	}
 *	tr_data_split_free(&train);
 *	tr_data_yaml_free(&yaml);
 *
 * Differences from YOLOv5, on purpose:
 * - A relative `path:` in data.yaml is resolved against the yaml file's
 *   folder (YOLOv5 resolves it against its own source tree), and a missing
 *   `path:` means that folder. Relative lines of a .txt image list are
 *   resolved against the .txt file's folder ("./x" as YOLOv5, "x" too).
 * - A label whose class is not an integer in [0, nc) makes its file bad
 *   (YOLOv5 aborts the whole run later in train.py).
 * - The cache is our own binary format; its key hashes every path with its
 *   own size and modification time (YOLOv5: one md5 of the size sum and the
 *   paths), so an edit that keeps the size also rebuilds it. The cache of a
 *   read-only dataset is simply not written.
 * - A JPEG without its end marker is kept with a warning but not rewritten
 *   (YOLOv5 re-saves it in place).
 * - Only JPEG, PNG and BMP decode; other YOLOv5 image extensions (tif, webp,
 *   ...) are listed as YOLOv5 lists them and then reported as unsupported.
 * - Images are checked from their headers (size, EXIF orientation), not
 *   decoded, while the split opens; decoding happens in tr_data_image_load.
 */
#ifndef TR_DATASET_H
#define TR_DATASET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "augment.h"
#include "ut.h"

/* ---- data.yaml ---- */

struct tr_data_yaml {
	char *root;		     /* resolved `path` */
	char **train, **val, **test; /* resolved sources: folders or .txt lists */
	int n_train, n_val, n_test;
	char **names; /* nc class names */
	int nc;
};

/*
 * Parse data.yaml text. yaml_path names the file in messages and its folder
 * (taken as is, not made absolute) anchors a relative `path`. train, val
 * and names are required; nc, when present, must equal the number of names.
 * On failure out is zeroed and err says "file:line: key: problem".
 */
int tr_data_yaml_parse(const char *text, size_t len, const char *yaml_path,
		       struct tr_data_yaml *out, struct ut_err *err);
/* Read and parse a data.yaml file; its folder is made absolute first. */
int tr_data_yaml_load(const char *path, struct tr_data_yaml *out, struct ut_err *err);
/* Free everything; a zeroed struct is fine. */
void tr_data_yaml_free(struct tr_data_yaml *yaml);

/* ---- labels ---- */

/* One box: class and centre/size normalised to [0, 1] (YOLO xywh). */
struct tr_data_label {
	int cls;
	float x, y, w, h;
};

/*
 * The labels of one image. Segments (polygons) exist only when the file
 * had them: label i's polygon is seg_xy[2*seg_start[i] .. 2*seg_start[i+1]),
 * normalised (x, y) pairs; seg_start has n_labels + 1 entries.
 */
struct tr_data_labels {
	int n_labels;
	struct tr_data_label *labels;
	int *seg_start; /* NULL without segments */
	float *seg_xy;
	int duplicates; /* rows removed as duplicates */
};

/*
 * Parse a YOLO label file as verify_image_label: blank lines skipped, 5
 * columns per row, or (when any row has more than 6) a class followed by
 * polygon x y pairs whose min/max give the box. Values are float32; all
 * must be >= 0, coordinates <= 1, the class an integer below nc.
 * Duplicate rows are removed (out->duplicates says how many, the rest come
 * back in sorted order as np.unique gives them). On a bad file returns -1
 * and err holds the reason alone (no file name). Free with
 * tr_data_labels_free.
 */
int tr_data_labels_parse(const char *text, size_t len, int nc, struct tr_data_labels *out,
			 struct ut_err *err);
void tr_data_labels_free(struct tr_data_labels *labels);

/* YOLOv5 img2label_paths: the last "/images/" becomes "/labels/", the
 * extension ".txt". Returns a malloc'ed string or NULL when out of memory. */
char *tr_data_label_path(const char *image_path);

/* ---- images ---- */

enum tr_data_format { TR_DATA_FMT_NONE, TR_DATA_FMT_JPEG, TR_DATA_FMT_PNG, TR_DATA_FMT_BMP };

/* What an image header says; width/height after EXIF orientation. */
struct tr_data_image_info {
	enum tr_data_format format;
	int width, height;
	int orientation;  /* EXIF 1..8, 1 when absent */
	bool jpeg_no_eoi; /* JPEG without its FF D9 end marker */
};

/* Read only the header of an image held in memory; err says why not. */
int tr_data_image_probe(const uint8_t *data, size_t len, struct tr_data_image_info *info,
			struct ut_err *err);
/*
 * Decode an image in memory to BGR (as cv2.imread IMREAD_COLOR: EXIF
 * orientation applied, grey expanded, alpha dropped, 16-bit to its high
 * byte). out->data is malloc'ed; free with tr_aug_image_free or free().
 */
int tr_data_image_decode(const uint8_t *data, size_t len, struct tr_image *out, struct ut_err *err);
/* Read and decode a file; err names the path. */
int tr_data_image_load(const char *path, struct tr_image *out, struct ut_err *err);

/* ---- splits ---- */

/* One usable image with its labels. */
struct tr_data_item {
	char *image_path;
	char *label_path;
	int width, height; /* after EXIF orientation, as exif_size */
	struct tr_data_labels labels;
};

/* cache_labels' counts: label files found, missing, empty; bad pairs. */
struct tr_data_summary {
	int images;	/* image files listed */
	int found;	/* label file present */
	int missing;	/* no label file: background image, kept */
	int empty;	/* label file without labels, kept */
	int corrupt;	/* image or label bad: skipped */
	int duplicates; /* files that had duplicate rows removed */
	long labels;	/* boxes in the usable images */
};

struct tr_data_open_opts {
	int nc;		/* classes; labels must be below it */
	bool use_cache; /* read and write <labels dir>.yecache */
};

struct tr_data_split {
	int n_items;
	struct tr_data_item *items; /* usable images, sorted by path */
	struct tr_data_summary summary;
	char **messages; /* one "path: reason" per bad or repaired file */
	int n_messages;
	char *cache_path;   /* NULL when there is no label file path */
	bool cache_hit;	    /* labels came from the cache, no label file read */
	bool cache_written; /* a new cache was saved */
};

/*
 * List the images of a split (each source a folder searched recursively, or
 * a .txt file of image paths), check every image and label file as
 * verify_image_label, and report each bad one once (ut_log warning plus
 * out->messages). With opts->use_cache a valid cache replaces the checks
 * and a stale or missing one is rebuilt (a failed write is a warning).
 * Fails when a source does not exist, lists no images, or no image is usable.
 */
int tr_data_split_open(const char *const *sources, int n_sources,
		       const struct tr_data_open_opts *opts, struct tr_data_split *out,
		       struct ut_err *err);
void tr_data_split_free(struct tr_data_split *split);

/* The summary as YOLOv5 prints it: "N found, N missing, N empty, N corrupt". */
void tr_data_summary_format(const struct tr_data_summary *summary, char *buf, size_t size);

#endif
