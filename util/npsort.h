/*
 * npsort.h - numpy's sort order where YOLOv5's results depend on it: the
 * order of equal keys (rect batches of equal aspect ratio, detections of
 * equal confidence) is that of numpy's introsort, not of a stable sort.
 */
#ifndef UT_NPSORT_H
#define UT_NPSORT_H

#include <stddef.h>

/*
 * np.argsort(v) with the default kind (numpy 1.24's aquicksort: median of
 * three, insertion sort on 16 elements or fewer, heapsort past 2 log2(n)
 * levels; NaN sorts last): index[0..num) gets the order.
 */
void ut_np_argsort(const double *v, size_t num, size_t *index);

#endif
