/*
 * staging.h - batches of uint8 images on their way to the device, double
 * buffered: two pinned host buffers (ops.h's host_alloc) and two device
 * buffers used in turn, each batch copied with upload_async, so the copy
 * of one batch overlaps the compute of the batch before it (YOLOv5's
 * pin_memory=True DataLoader with non_blocking copies).
 *
 *	struct tr_staging st;
 *	tr_staging_init(&st, be, largest_batch_bytes, &err);
 *	while (loader gives batch) {
 *		tr_staging_give(&st, be, batch->images, bytes, &err);
 *		const uint8_t *images;
 *		tr_staging_take(&st, be, &images, &err);
 *		... ops on images (device memory), a download or sync among them ...
 *	}
 *	tr_staging_release(&st, be);
 *
 * Gives and takes alternate (at most one batch given and not taken), and
 * the ops that read a taken batch are given before the next take. Then
 * both of ops.h's rules hold. The device buffer a give fills was last read
 * by ops given before the previous take, and upload_async waits for those
 * (and no longer: the copy overlaps the compute of the batch just taken).
 * The pinned buffer a give rewrites was last copied from two gives ago;
 * that batch has been taken (its upload_wait), and ops.h asks for a sync
 * or download since: the caller's job (a training step downloads its
 * loss; a test downloads what it checks).
 */
#ifndef TR_STAGING_H
#define TR_STAGING_H

#include <stddef.h>
#include <stdint.h>

#include "ops.h"
#include "ut.h"

struct tr_staging {
	void *host[2];	    /* pinned (host_alloc), capacity bytes each */
	uint8_t *device[2]; /* device memory (alloc), capacity bytes each */
	size_t capacity;
	long given, taken; /* batches so far; buffer k holds batch k % 2 */
};

/* Two pinned and two device buffers of capacity bytes (freed again on failure). */
int tr_staging_init(struct tr_staging *st, struct tr_backend *be, size_t capacity,
		    struct ut_err *err);
/* Free the buffers (after init, failed or not; twice is harmless). */
void tr_staging_release(struct tr_staging *st, struct tr_backend *be);
/*
 * Copy bytes of images into the next pinned buffer and start its upload
 * to the next device buffer; returns before the upload is done. Fails if
 * bytes exceed the capacity or the batch given before is not taken yet.
 */
int tr_staging_give(struct tr_staging *st, struct tr_backend *be, const void *images, size_t bytes,
		    struct ut_err *err);
/*
 * The batch given last, in device memory, in *images: ops given after this
 * returns see all its bytes (upload_wait). Ops may read *images until the
 * next take (the give after it may refill it at any time after that).
 */
int tr_staging_take(struct tr_staging *st, struct tr_backend *be, const uint8_t **images,
		    struct ut_err *err);

#endif
