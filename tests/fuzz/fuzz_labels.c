/*
 * fuzz_labels.c - libFuzzer target for tr_data_labels_parse (a YOLO label
 * file) with nc = 3. An accepted file must hold only in-range boxes, no
 * duplicate rows, and consistent polygon offsets. Seeds: corpus/labels.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dataset.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct tr_data_labels lb;
	struct ut_err err;
	if (tr_data_labels_parse((const char *)data, size, 3, &lb, &err) != 0)
		return 0;
	for (int i = 0; i < lb.n_labels; i++) {
		const struct tr_data_label *l = &lb.labels[i];
		if (l->cls < 0 || l->cls >= 3 || !(l->x >= 0 && l->x <= 1) ||
		    !(l->y >= 0 && l->y <= 1) || !(l->w >= 0 && l->w <= 1) ||
		    !(l->h >= 0 && l->h <= 1))
			abort();
		for (int j = 0; j < i; j++)
			if (memcmp(&lb.labels[j], l, sizeof(*l)) == 0)
				abort();
		if (lb.seg_start != NULL && lb.seg_start[i + 1] <= lb.seg_start[i])
			abort();
	}
	tr_data_labels_free(&lb);
	return 0;
}
