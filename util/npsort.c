/*
 * npsort.c - numpy 1.24's argsort, step for step (see npsort.h).
 */
#include "npsort.h"

/* numpy's "a < b" for sorting doubles: NaN sorts last. */
static int np_less(double a, double b)
{
	return a < b || (b != b && a == a);
}

/* numpy's aheapsort on index[0..n). */
static void np_aheapsort(const double *v, size_t *index, size_t n)
{
	size_t *a = index - 1; /* 1-based heap */
	size_t i, j, l, tmp;
	for (l = n >> 1; l > 0; --l) {
		tmp = a[l];
		for (i = l, j = l << 1; j <= n;) {
			if (j < n && np_less(v[a[j]], v[a[j + 1]]))
				j += 1;
			if (!np_less(v[tmp], v[a[j]]))
				break;
			a[i] = a[j];
			i = j;
			j += j;
		}
		a[i] = tmp;
	}
	while (n > 1) {
		tmp = a[n];
		a[n] = a[1];
		n -= 1;
		for (i = 1, j = 2; j <= n;) {
			if (j < n && np_less(v[a[j]], v[a[j + 1]]))
				j++;
			if (!np_less(v[tmp], v[a[j]]))
				break;
			a[i] = a[j];
			i = j;
			j += j;
		}
		a[i] = tmp;
	}
}

#define NP_SMALL_QUICKSORT 15
#define NP_QS_STACK 128
#define SWAP_IDX(a, b)                                                                             \
	do {                                                                                       \
		size_t swap_ = (a);                                                                \
		(a) = (b);                                                                         \
		(b) = swap_;                                                                       \
	} while (0)

void ut_np_argsort(const double *v, size_t num, size_t *index)
{
	for (size_t k = 0; k < num; k++)
		index[k] = k;
	if (num < 2)
		return;
	size_t *pl = index, *pr = index + num - 1;
	size_t *stack[NP_QS_STACK], **sptr = stack;
	int depth[NP_QS_STACK], *psdepth = depth;
	int cdepth = 0;
	for (size_t u = num; u >>= 1;)
		cdepth++;
	cdepth *= 2;
	for (;;) {
		if (cdepth < 0) {
			np_aheapsort(v, pl, (size_t)(pr - pl) + 1);
			goto stack_pop;
		}
		while (pr - pl > NP_SMALL_QUICKSORT) {
			size_t *pm = pl + ((pr - pl) >> 1);
			if (np_less(v[*pm], v[*pl]))
				SWAP_IDX(*pm, *pl);
			if (np_less(v[*pr], v[*pm]))
				SWAP_IDX(*pr, *pm);
			if (np_less(v[*pm], v[*pl]))
				SWAP_IDX(*pm, *pl);
			double vp = v[*pm];
			size_t *pi = pl, *pj = pr - 1;
			SWAP_IDX(*pm, *pj);
			for (;;) {
				do
					++pi;
				while (np_less(v[*pi], vp));
				do
					--pj;
				while (np_less(vp, v[*pj]));
				if (pi >= pj)
					break;
				SWAP_IDX(*pi, *pj);
			}
			size_t *pk = pr - 1;
			SWAP_IDX(*pi, *pk);
			if (pi - pl < pr - pi) {
				*sptr++ = pi + 1;
				*sptr++ = pr;
				pr = pi - 1;
			} else {
				*sptr++ = pl;
				*sptr++ = pi - 1;
				pl = pi + 1;
			}
			*psdepth++ = --cdepth;
		}
		for (size_t *pi = pl + 1; pi <= pr; ++pi) {
			size_t vi = *pi;
			double vp = v[vi];
			size_t *pj = pi, *pk = pi - 1;
			while (pj > pl && np_less(vp, v[*pk]))
				*pj-- = *pk--;
			*pj = vi;
		}
	stack_pop:
		if (sptr == stack)
			break;
		pr = *(--sptr);
		pl = *(--sptr);
		cdepth = *(--psdepth);
	}
}
