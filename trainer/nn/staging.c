/*
 * staging.c - double-buffered uploads of image batches (see staging.h):
 * a give copies into pinned buffer given % 2 and queues upload_async into
 * device buffer given % 2; a take is upload_wait.
 */
#include "staging.h"

#include <string.h>

int tr_staging_init(struct tr_staging *st, struct tr_backend *be, size_t capacity,
		    struct ut_err *err)
{
	memset(st, 0, sizeof(*st));
	st->capacity = capacity;
	for (int k = 0; k < 2; k++) {
		void *device;
		if (be->ops->host_alloc(be, capacity, &st->host[k], err) != 0 ||
		    be->ops->alloc(be, capacity, &device, err) != 0) {
			tr_staging_release(st, be);
			return -1;
		}
		st->device[k] = device;
	}
	return 0;
}

void tr_staging_release(struct tr_staging *st, struct tr_backend *be)
{
	for (int k = 0; k < 2; k++) {
		be->ops->host_free(be, st->host[k]);
		be->ops->free(be, st->device[k]);
		st->host[k] = NULL;
		st->device[k] = NULL;
	}
}

int tr_staging_give(struct tr_staging *st, struct tr_backend *be, const void *images, size_t bytes,
		    struct ut_err *err)
{
	if (bytes > st->capacity)
		return ut_err_set(err, "staging: a batch of %zu bytes (planned for %zu)", bytes,
				  st->capacity);
	if (st->given > st->taken)
		return ut_err_set(err, "staging: the batch given before is not taken yet");
	int k = (int)(st->given % 2);
	memcpy(st->host[k], images, bytes);
	if (be->ops->upload_async(be, st->device[k], st->host[k], bytes, err) != 0)
		return -1;
	st->given++;
	return 0;
}

int tr_staging_take(struct tr_staging *st, struct tr_backend *be, const uint8_t **images,
		    struct ut_err *err)
{
	*images = NULL;
	if (st->taken == st->given)
		return ut_err_set(err, "staging: no batch given to take");
	if (be->ops->upload_wait(be, err) != 0)
		return -1;
	*images = st->device[st->taken % 2];
	st->taken++;
	return 0;
}
