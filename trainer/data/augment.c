/*
 * augment.c - YOLOv5 v7.0 letterbox, augment_hsv and random_perspective on
 * 8-bit BGR images, with OpenCV 4.6's integer arithmetic for the resize,
 * colour conversions and warps (see augment.h for why that matters).
 *
 * The hot loops (resize passes, the warp's blend, HSV->BGR) have SSE2 or
 * gcc-vector versions next to the scalar definition; each computes the
 * same integers or the same IEEE float operations, so the bytes do not
 * depend on which one ran.
 */
#include "augment.h"

#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

/* For the per-pixel helpers of hot loops (and their per-clone copies). */
#if defined(__GNUC__)
#define AUG_INLINE __attribute__((always_inline)) static inline
#else
#define AUG_INLINE static inline
#endif

/* Python's math.pi and OpenCV's CV_PI (the same double). */
static const double pi = 3.141592653589793;

int tr_aug_image_alloc(struct tr_image *im, int width, int height, struct ut_err *err)
{
	im->width = 0;
	im->height = 0;
	im->data = NULL;
	if (width < 1 || height < 1 || (size_t)width > SIZE_MAX / 3 / (size_t)height)
		return ut_err_set(err, "image size %dx%d is not valid", width, height);
	im->data = malloc((size_t)width * (size_t)height * 3);
	if (im->data == NULL)
		return ut_err_set(err, "out of memory for a %dx%d image", width, height);
	im->width = width;
	im->height = height;
	return 0;
}

void tr_aug_image_free(struct tr_image *im)
{
	free(im->data);
	im->data = NULL;
	im->width = 0;
	im->height = 0;
}

int tr_aug_buffer_image(struct tr_aug_buffer *b, int width, int height, struct tr_image *im,
			struct ut_err *err)
{
	if (width < 1 || height < 1 || (size_t)width > SIZE_MAX / 3 / (size_t)height)
		return ut_err_set(err, "image size %dx%d is not valid", width, height);
	size_t bytes = (size_t)width * (size_t)height * 3;
	if (bytes > b->capacity) {
		free(b->data);
		b->capacity = 0;
		b->data = malloc(bytes);
		if (b->data == NULL)
			return ut_err_set(err, "out of memory for a %dx%d image", width, height);
		b->capacity = bytes;
	}
	im->width = width;
	im->height = height;
	im->data = b->data;
	return 0;
}

void tr_aug_buffer_free(struct tr_aug_buffer *b)
{
	free(b->data);
	b->data = NULL;
	b->capacity = 0;
}

/* Python's round() on a double: halves go to even (the default FP mode). */
static double py_round(double x)
{
	return nearbyint(x);
}

/* OpenCV's cvRound/saturate_cast<int> of a double (ties to even). */
static int sat_round_int(double x)
{
	if (!(x > (double)INT_MIN))
		return INT_MIN;
	if (x >= (double)INT_MAX)
		return INT_MAX;
	return (int)nearbyint(x);
}

static int clamp_int(int v, int lo, int hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

static uint8_t sat_u8(int v)
{
	return (uint8_t)clamp_int(v, 0, 255);
}

/* --- resize --- */

enum { RESIZE_COEF_BITS = 11, RESIZE_COEF_ONE = 1 << RESIZE_COEF_BITS };

/*
 * One axis of the INTER_LINEAR table: source index and the two 11-bit
 * weights of each destination index. The offset is computed in double and
 * rounded to float, the fraction in float, as OpenCV does. Along x a
 * position outside the source takes the edge pixel with weight one; along
 * y OpenCV keeps the unclamped index and weights and clamps only the rows
 * read (clamp_rows), which rounds differently in the vertical pass.
 */
static void resize_axis(int src_len, int dst_len, bool clamp_weights, int *index, int16_t *weight)
{
	double scale = 1.0 / ((double)dst_len / (double)src_len);
	for (int d = 0; d < dst_len; d++) {
		float f = (float)(((double)d + 0.5) * scale - 0.5);
		int s = (int)floorf(f);
		f -= (float)s;
		if (clamp_weights && s < 0) {
			s = 0;
			f = 0.f;
		}
		if (clamp_weights && s >= src_len - 1) {
			s = src_len - 1;
			f = 0.f;
		}
		index[d] = s;
		weight[2 * d] = (int16_t)lrintf((1.f - f) * RESIZE_COEF_ONE);
		weight[2 * d + 1] = (int16_t)lrintf(f * RESIZE_COEF_ONE);
	}
}

/*
 * The vertical pass on one row of n values, as OpenCV 4.6's SSE2 loop
 * descales it: ((a>>4)*b0 >> 16) + ((c>>4)*b1 >> 16), then rounded by 2
 * bits. Checked against cv2 4.6 for every row width from 3 bytes up: its
 * result never follows the exact 22-bit rounding of the scalar template.
 */
static void resize_vertical(const int32_t *row0, const int32_t *row1, int16_t b0, int16_t b1,
			    uint8_t *dst, int n)
{
	/*
	 * OpenCV saturates a, c and sum to int16 and the result to uint8;
	 * none of it can bite here: rows are u8 times 11-bit weights summing
	 * to 2048, so a, c <= 32640 and sum <= 1020.
	 */
	int x = 0;
#ifdef __SSE2__
	/* OpenCV's own loop: a, c packed to int16, (a * b) >> 16 by mulhi */
	__m128i w0 = _mm_set1_epi16(b0), w1 = _mm_set1_epi16(b1), two = _mm_set1_epi16(2);
	for (; x + 8 <= n; x += 8) {
		__m128i a = _mm_packs_epi32(
		    _mm_srai_epi32(_mm_loadu_si128((const __m128i *)(row0 + x)), 4),
		    _mm_srai_epi32(_mm_loadu_si128((const __m128i *)(row0 + x + 4)), 4));
		__m128i c = _mm_packs_epi32(
		    _mm_srai_epi32(_mm_loadu_si128((const __m128i *)(row1 + x)), 4),
		    _mm_srai_epi32(_mm_loadu_si128((const __m128i *)(row1 + x + 4)), 4));
		__m128i sum = _mm_add_epi16(_mm_mulhi_epi16(a, w0), _mm_mulhi_epi16(c, w1));
		sum = _mm_srai_epi16(_mm_add_epi16(sum, two), 2);
		_mm_storel_epi64((__m128i *)(dst + x), _mm_packus_epi16(sum, sum));
	}
#endif
	for (; x < n; x++) {
		int a = row0[x] >> 4, c = row1[x] >> 4;
		dst[x] = (uint8_t)((((a * b0) >> 16) + ((c * b1) >> 16) + 2) >> 2);
	}
}

/* Exact 2x shrink: OpenCV's fast INTER_AREA, (sum of 2x2 + 2) >> 2. */
static void resize_half(const struct tr_image *src, struct tr_image *dst)
{
	size_t sstride = (size_t)src->width * 3;
	for (int y = 0; y < dst->height; y++) {
		const uint8_t *s0 = src->data + (size_t)(2 * y) * sstride;
		const uint8_t *s1 = s0 + sstride;
		uint8_t *d = dst->data + (size_t)y * dst->width * 3;
		for (int x = 0; x < dst->width; x++)
			for (int c = 0; c < 3; c++) {
				int i = 6 * x + c;
				d[3 * x + c] =
				    (uint8_t)((s0[i] + s0[i + 3] + s1[i] + s1[i + 3] + 2) >> 2);
			}
	}
}

/* Horizontal pass of one source row into n = 3 * dst width 11-bit sums. */
static void resize_horizontal(const uint8_t *row, const int *xi, const int16_t *xw, int src_w,
			      int dst_w, int32_t *out)
{
	for (int dx = 0; dx < dst_w; dx++) {
		int s = xi[dx];
#ifdef __SSE2__
		/*
		 * Pixels s and s + 1 from one 8-byte read (so s + 2 < src_w), the
		 * 4th sum stored lands on the next pixel's first (so not the last).
		 */
		if (s + 2 < src_w && dx + 1 < dst_w) {
			__m128i p = _mm_unpacklo_epi8(
			    _mm_loadl_epi64((const __m128i *)(row + 3 * s)), _mm_setzero_si128());
			__m128i pairs = _mm_unpacklo_epi16(p, _mm_srli_si128(p, 6));
			__m128i w = _mm_set1_epi32(
			    (int)((uint32_t)(uint16_t)xw[2 * dx + 1] << 16 | (uint16_t)xw[2 * dx]));
			_mm_storeu_si128((__m128i *)(out + 3 * dx), _mm_madd_epi16(pairs, w));
			continue;
		}
#endif
		int s1 = s + 1 < src_w ? s + 1 : s;
		for (int c = 0; c < 3; c++)
			out[3 * dx + c] =
			    row[3 * s + c] * xw[2 * dx] + row[3 * s1 + c] * xw[2 * dx + 1];
	}
}

void tr_aug_resize_linear(const struct tr_image *src, struct tr_image *dst)
{
	tr_aug_resize_linear_region(src, dst, 0, 0, dst->width, dst->height);
}

void tr_aug_resize_linear_region(const struct tr_image *src, struct tr_image *dst, int x0, int y0,
				 int x1, int y1)
{
	int sw = src->width, sh = src->height, dw = dst->width, dh = dst->height;
	x0 = clamp_int(x0, 0, dw);
	x1 = clamp_int(x1, x0, dw);
	y0 = clamp_int(y0, 0, dh);
	y1 = clamp_int(y1, y0, dh);
	if (x0 == x1 || y0 == y1)
		return;
	if (sw == dw && sh == dh) {
		memcpy(dst->data, src->data, (size_t)sw * sh * 3);
		return;
	}
	if (sw == 2 * dw && sh == 2 * dh) {
		resize_half(src, dst);
		return;
	}
	int *xi = malloc(sizeof(int) * (size_t)(dw + dh));
	int16_t *wt = malloc(sizeof(int16_t) * 2 * (size_t)(dw + dh));
	int32_t *rows = malloc(sizeof(int32_t) * 2 * 3 * (size_t)dw);
	if (xi == NULL || wt == NULL || rows == NULL) {
		free(xi);
		free(wt);
		free(rows);
		memset(dst->data, 0, (size_t)dw * dh * 3);
		return;
	}
	int *yi = xi + dw;
	int16_t *xw = wt, *yw = wt + 2 * dw;
	resize_axis(sw, dw, true, xi, xw);
	resize_axis(sh, dh, false, yi, yw);
	int32_t *r0 = rows, *r1 = rows + 3 * dw;
	size_t sstride = (size_t)sw * 3;
	int n = x1 - x0;
	const int *xi0 = xi + x0;
	const int16_t *xw0 = xw + 2 * x0;
	int have0 = -1, have1 = -1; /* source rows now in r0, r1 (reused as OpenCV does) */
	for (int y = y0; y < y1; y++) {
		int s0 = clamp_int(yi[y], 0, sh - 1), s1 = clamp_int(yi[y] + 1, 0, sh - 1);
		if (s0 == have1 && s0 != have0) {
			int32_t *swap = r0;
			r0 = r1;
			r1 = swap;
			have0 = have1;
			have1 = -1;
		}
		if (s0 != have0)
			resize_horizontal(src->data + (size_t)s0 * sstride, xi0, xw0, sw, n, r0);
		have0 = s0;
		if (s1 == s0 && have1 != s1) {
			memcpy(r1, r0, sizeof(int32_t) * 3 * (size_t)n);
		} else if (s1 != have1) {
			resize_horizontal(src->data + (size_t)s1 * sstride, xi0, xw0, sw, n, r1);
		}
		have1 = s1;
		resize_vertical(r0, r1, yw[2 * y], yw[2 * y + 1],
				dst->data + ((size_t)y * dw + (size_t)x0) * 3, 3 * n);
	}
	free(xi);
	free(wt);
	free(rows);
}

/*
 * One axis of OpenCV's INTER_AREA table (computeResizeAreaTab): for each
 * destination index the source cells it covers, partial cells at either
 * end weighted by the covered fraction, all divided by the cell width.
 * Returns the number of entries (at most 2 * src_len).
 */
struct area_alpha {
	int di, si;
	float alpha;
};

static int area_axis(int src_len, int dst_len, int cn, double scale, struct area_alpha *tab)
{
	int k = 0;
	for (int d = 0; d < dst_len; d++) {
		double fs1 = d * scale, fs2 = fs1 + scale;
		double cell = fmin(scale, src_len - fs1);
		int s1 = (int)ceil(fs1), s2 = (int)floor(fs2);
		s2 = s2 < src_len - 1 ? s2 : src_len - 1;
		s1 = s1 < s2 ? s1 : s2;
		if (s1 - fs1 > 1e-3)
			tab[k++] =
			    (struct area_alpha){d * cn, (s1 - 1) * cn, (float)((s1 - fs1) / cell)};
		for (int s = s1; s < s2; s++)
			tab[k++] = (struct area_alpha){d * cn, s * cn, (float)(1.0 / cell)};
		if (fs2 - s2 > 1e-3)
			tab[k++] = (struct area_alpha){
			    d * cn, s2 * cn, (float)(fmin(fmin(fs2 - s2, 1.), cell) / cell)};
	}
	return k;
}

/* OpenCV's saturate_cast<uchar>(float): round half to even, then clamp. */
static uint8_t sat_u8_float(float v)
{
	return sat_u8((int)lrintf(v));
}

/*
 * Integer shrink factors (resizeAreaFast): the mean of each kx x ky cell,
 * sum * (1.f / area) rounded to even. OpenCV's SIMD loop for the 2x2 case
 * is resize_half (it rounds halves up); it covers rows of 16 or more
 * destination pixels except their last < 16, which take this scalar path.
 */
static void resize_area_fast(const struct tr_image *src, struct tr_image *dst, int kx, int ky)
{
	float scale = 1.f / (float)(kx * ky);
	size_t sstride = (size_t)src->width * 3;
	for (int y = 0; y < dst->height; y++) {
		const uint8_t *s0 = src->data + (size_t)(ky * y) * sstride;
		uint8_t *d = dst->data + (size_t)y * dst->width * 3;
		for (int x = 0; x < dst->width; x++)
			for (int c = 0; c < 3; c++) {
				int sum = 0;
				for (int sy = 0; sy < ky; sy++)
					for (int sx = 0; sx < kx; sx++)
						sum += s0[(size_t)sy * sstride +
							  3 * (size_t)(kx * x + sx) + c];
				d[3 * x + c] = sat_u8_float((float)sum * scale);
			}
	}
}

/* The general shrink (ResizeArea_Invoker): float sums of weighted cells. */
static int resize_area_general(const struct tr_image *src, struct tr_image *dst, double scale_x,
			       double scale_y)
{
	int sw = src->width, sh = src->height, n = 3 * dst->width;
	struct area_alpha *xtab = malloc(sizeof(*xtab) * 2 * (size_t)(sw + sh));
	float *buf = malloc(sizeof(float) * 2 * (size_t)n);
	if (xtab == NULL || buf == NULL) {
		free(xtab);
		free(buf);
		return -1;
	}
	struct area_alpha *ytab = xtab + 2 * (size_t)sw;
	int xn = area_axis(sw, dst->width, 3, scale_x, xtab);
	int yn = area_axis(sh, dst->height, 1, scale_y, ytab);
	float *sum = buf + n;
	for (int i = 0; i < n; i++)
		sum[i] = 0.f;
	int prev = ytab[0].di;
	for (int j = 0; j < yn; j++) {
		const uint8_t *row = src->data + (size_t)ytab[j].si * sw * 3;
		float beta = ytab[j].alpha;
		for (int i = 0; i < n; i++)
			buf[i] = 0.f;
		for (int k = 0; k < xn; k++)
			for (int c = 0; c < 3; c++)
				buf[xtab[k].di + c] = buf[xtab[k].di + c] +
						      (float)row[xtab[k].si + c] * xtab[k].alpha;
		uint8_t *d = dst->data + (size_t)prev * n;
		if (ytab[j].di != prev) {
			for (int i = 0; i < n; i++) {
				d[i] = sat_u8_float(sum[i]);
				sum[i] = beta * buf[i];
			}
			prev = ytab[j].di;
		} else {
			for (int i = 0; i < n; i++)
				sum[i] += beta * buf[i];
		}
	}
	uint8_t *d = dst->data + (size_t)prev * n;
	for (int i = 0; i < n; i++)
		d[i] = sat_u8_float(sum[i]);
	free(xtab);
	free(buf);
	return 0;
}

int tr_aug_resize_area(const struct tr_image *src, struct tr_image *dst)
{
	int sw = src->width, sh = src->height, dw = dst->width, dh = dst->height;
	double scale_x = 1.0 / ((double)dw / sw), scale_y = 1.0 / ((double)dh / sh);
	if (scale_x < 1 || scale_y < 1) {
		tr_aug_resize_linear(src, dst);
		return 0;
	}
	int kx = (int)nearbyint(scale_x), ky = (int)nearbyint(scale_y);
	if (fabs(scale_x - kx) < DBL_EPSILON && fabs(scale_y - ky) < DBL_EPSILON) {
		if (kx == 1 && ky == 1)
			memcpy(dst->data, src->data, (size_t)sw * sh * 3);
		else if (kx == 2 && ky == 2)
			resize_half(src, dst);
		else
			resize_area_fast(src, dst, kx, ky);
		return 0;
	}
	return resize_area_general(src, dst, scale_x, scale_y);
}

/* --- letterbox --- */

struct tr_aug_letterbox_opts tr_aug_letterbox_defaults(int new_shape)
{
	struct tr_aug_letterbox_opts o = {
	    .new_width = new_shape,
	    .new_height = new_shape,
	    .color = 114,
	    .auto_rect = true,
	    .scale_fill = false,
	    .scaleup = true,
	    .stride = 32,
	};
	return o;
}

/* Python's int % for a positive modulus. */
static int py_mod(int a, int m)
{
	int r = a % m;
	return r < 0 ? r + m : r;
}

int tr_aug_letterbox(const struct tr_image *src, const struct tr_aug_letterbox_opts *opts,
		     struct tr_image *out, struct tr_aug_letterbox_info *info, struct ut_err *err)
{
	out->data = NULL;
	if (opts->new_width < 1 || opts->new_height < 1 || opts->stride < 1)
		return ut_err_set(err, "letterbox: new shape %dx%d or stride %d is not valid",
				  opts->new_width, opts->new_height, opts->stride);
	double r =
	    fmin((double)opts->new_height / src->height, (double)opts->new_width / src->width);
	if (!opts->scaleup)
		r = fmin(r, 1.0);
	double ratio_w = r, ratio_h = r;
	int unpad_w = (int)py_round(src->width * r), unpad_h = (int)py_round(src->height * r);
	double dw = opts->new_width - unpad_w, dh = opts->new_height - unpad_h;
	if (opts->auto_rect) {
		dw = py_mod(opts->new_width - unpad_w, opts->stride);
		dh = py_mod(opts->new_height - unpad_h, opts->stride);
	} else if (opts->scale_fill) {
		dw = 0.0;
		dh = 0.0;
		unpad_w = opts->new_width;
		unpad_h = opts->new_height;
		ratio_w = (double)opts->new_width / src->width;
		ratio_h = (double)opts->new_height / src->height;
	}
	dw /= 2;
	dh /= 2;
	int top = (int)py_round(dh - 0.1), bottom = (int)py_round(dh + 0.1);
	int left = (int)py_round(dw - 0.1), right = (int)py_round(dw + 0.1);
	if (unpad_w < 1 || unpad_h < 1)
		return ut_err_set(err, "letterbox: %dx%d image resizes to nothing", src->width,
				  src->height);
	struct tr_image resized;
	if (tr_aug_image_alloc(&resized, unpad_w, unpad_h, err) != 0)
		return -1;
	tr_aug_resize_linear(src, &resized);
	if (tr_aug_image_alloc(out, unpad_w + left + right, unpad_h + top + bottom, err) != 0) {
		tr_aug_image_free(&resized);
		return -1;
	}
	memset(out->data, opts->color, (size_t)out->width * out->height * 3);
	for (int y = 0; y < unpad_h; y++)
		memcpy(out->data + ((size_t)(y + top) * out->width + left) * 3,
		       resized.data + (size_t)y * unpad_w * 3, (size_t)unpad_w * 3);
	tr_aug_image_free(&resized);
	info->ratio_w = ratio_w;
	info->ratio_h = ratio_h;
	info->dw = dw;
	info->dh = dh;
	info->top = top;
	info->left = left;
	return 0;
}

/* --- HSV --- */

enum { HSV_SHIFT = 12 };

/* Per-channel lookup tables applied between BGR->HSV and back. */
struct hsv_lut {
	uint8_t ch[3][256];
};

/* OpenCV's 12-bit division tables of BGR->HSV: round(255<<12 / v), round(180<<12 / 6d). */
struct hsv_div {
	int sdiv[256], hdiv[256];
};

static void hsv_div_init(struct hsv_div *d)
{
	d->sdiv[0] = d->hdiv[0] = 0;
	for (int i = 1; i < 256; i++) {
		d->sdiv[i] = sat_round_int((255 << HSV_SHIFT) / (1.0 * i));
		d->hdiv[i] = sat_round_int((180 << HSV_SHIFT) / (6.0 * i));
	}
}

/*
 * OpenCV's 8-bit BGR->HSV of count pixels: s = diff * sdiv[v], h from the
 * sector formula times hdiv[diff], both descaled by 12 bits with rounding;
 * then each channel goes through its lookup table (augment_hsv's; the
 * identity for a plain conversion).
 */
static void bgr_to_hsv_lut(const struct hsv_div *d, const uint8_t *bgr, uint8_t *hsv, size_t count,
			   const struct hsv_lut *lut)
{
	for (size_t i = 0; i < count; i++) {
		int b = bgr[3 * i], g = bgr[3 * i + 1], r = bgr[3 * i + 2];
		int v = b > g ? b : g;
		v = v > r ? v : r;
		int vmin = b < g ? b : g;
		vmin = vmin < r ? vmin : r;
		int diff = v - vmin;
		int s = (diff * d->sdiv[v] + (1 << (HSV_SHIFT - 1))) >> HSV_SHIFT;
		/* selects, not branches: which channel is largest is data, not pattern */
		int h_b = r - g + 4 * diff, h_g = b - r + 2 * diff, h_r = g - b;
		int h = v == r ? h_r : v == g ? h_g : h_b;
		h = (h * d->hdiv[diff] + (1 << (HSV_SHIFT - 1))) >> HSV_SHIFT;
		h += h < 0 ? 180 : 0;
		hsv[3 * i] = lut->ch[0][sat_u8(h)];
		hsv[3 * i + 1] = lut->ch[1][s];
		hsv[3 * i + 2] = lut->ch[2][v];
	}
}

void tr_aug_bgr_to_hsv(const uint8_t *bgr, uint8_t *hsv, int width, int height)
{
	struct hsv_div d;
	struct hsv_lut identity;
	hsv_div_init(&d);
	for (int x = 0; x < 256; x++)
		identity.ch[0][x] = identity.ch[1][x] = identity.ch[2][x] = (uint8_t)x;
	bgr_to_hsv_lut(&d, bgr, hsv, (size_t)width * height, &identity);
}

/*
 * The six sectors of the hue circle: which of v, v(1-s), v(1-sf),
 * v(1-s(1-f)) goes to b, g and r.
 */
static const int hsv_sector[6][3] = {{1, 3, 0}, {1, 0, 2}, {3, 0, 1},
				     {0, 2, 1}, {0, 1, 3}, {2, 1, 0}};

/*
 * The pixels of a row that OpenCV's vectorized HSV->BGR loop handles:
 * whole blocks of 4 vectors of 8 floats (cv2 4.6's AVX2 dispatch, which
 * x86-64 machines with AVX2 run; checked against it for widths 1..333).
 * The rest of the row takes the scalar path, which rounds instead of
 * truncating.
 */
enum { HSV_LANES = 8, HSV_BLOCK = 4 * HSV_LANES };

/*
 * One pixel as the vector loop computes it: float maths, truncated. The
 * AVX2 build contracts 1 - s*f into a fused multiply-add; fmaf reproduces
 * that (exhaustively equal to cv2 over all 180*256*256 inputs).
 */
static void hsv_to_bgr_vector(const uint8_t *hsv, uint8_t *bgr)
{
	const float hscale = 6.0f / 180;
	float h = (float)hsv[0] * hscale;
	float s = (float)hsv[1] * (1.0f / 255.0f);
	float v = (float)hsv[2] * (1.0f / 255.0f);
	float pre = truncf(h);
	float f = h - pre;
	float tab[4];
	tab[0] = v;
	tab[1] = v * (1.0f - s);
	tab[2] = v * fmaf(-s, f, 1.0f);
	tab[3] = v * fmaf(-s, 1.0f - f, 1.0f);
	float sector_f = pre - truncf(pre * (1.0f / 6.0f)) * 6.0f;
	int sector = (int)sector_f;
	if (sector < 0 || sector > 5)
		sector = sector < 0 ? 0 : 5;
	for (int c = 0; c < 3; c++) {
		float out = tab[hsv_sector[sector][c]] * 255.0f;
		bgr[c] = sat_u8((int)out);
	}
}

/*
 * HSV_LANES pixels as the vector loop computes them, with gcc vector
 * types (compiled for AVX2 and for baseline x86-64, the same IEEE
 * operations either way). The fused 1 - s*f of hsv_to_bgr_vector is done
 * in double: s*f is exact there (two 24-bit mantissas), and over every
 * s = k/255 and f of an 8-bit hue the rounded result equals fmaf's
 * (checked exhaustively), so no FMA unit or libm call is needed.
 */
#if defined(__GNUC__)
typedef float hsv_vf __attribute__((vector_size(4 * HSV_LANES)));
typedef int32_t hsv_vi __attribute__((vector_size(4 * HSV_LANES)));
typedef double hsv_vd __attribute__((vector_size(8 * HSV_LANES)));
typedef uint8_t hsv_v8 __attribute__((vector_size(HSV_LANES)));
typedef uint8_t hsv_vb __attribute__((vector_size(2 * HSV_LANES)));

/* Inlined, so that it is compiled for each clone of hsv_to_bgr_span. */
AUG_INLINE void hsv_to_bgr_lanes(const uint8_t *hsv, uint8_t *bgr)
{
	hsv_vb lo, hi8 = {0};
	memcpy(&lo, hsv, sizeof(lo));
	memcpy(&hi8, hsv + sizeof(lo), 3 * HSV_LANES - sizeof(lo));
	hsv_vi hi = __builtin_convertvector(
	    __builtin_shufflevector(lo, hi8, 0, 3, 6, 9, 12, 15, 18, 21), hsv_vi);
	hsv_vi si = __builtin_convertvector(
	    __builtin_shufflevector(lo, hi8, 1, 4, 7, 10, 13, 16, 19, 22), hsv_vi);
	hsv_vi vi = __builtin_convertvector(
	    __builtin_shufflevector(lo, hi8, 2, 5, 8, 11, 14, 17, 20, 23), hsv_vi);
	const float hscale = 6.0f / 180;
	hsv_vf h = __builtin_convertvector(hi, hsv_vf) * hscale;
	hsv_vf s = __builtin_convertvector(si, hsv_vf) * (1.0f / 255.0f);
	hsv_vf v = __builtin_convertvector(vi, hsv_vf) * (1.0f / 255.0f);
	/* h >= 0 and small: truncf is the conversion to int and back */
	hsv_vf pre = __builtin_convertvector(__builtin_convertvector(h, hsv_vi), hsv_vf);
	hsv_vf f = h - pre;
	hsv_vf sixth =
	    __builtin_convertvector(__builtin_convertvector(pre * (1.0f / 6.0f), hsv_vi), hsv_vf);
	hsv_vi sector = __builtin_convertvector(pre - sixth * 6.0f, hsv_vi);
	hsv_vi tab[4];
	tab[0] = __builtin_convertvector(v * 255.0f, hsv_vi);
	tab[1] = __builtin_convertvector(v * (1.0f - s) * 255.0f, hsv_vi);
	hsv_vd sd = __builtin_convertvector(s, hsv_vd);
	hsv_vf fused2 =
	    __builtin_convertvector(1.0 - sd * __builtin_convertvector(f, hsv_vd), hsv_vf);
	hsv_vf fused3 =
	    __builtin_convertvector(1.0 - sd * __builtin_convertvector(1.0f - f, hsv_vd), hsv_vf);
	tab[2] = __builtin_convertvector(v * fused2 * 255.0f, hsv_vi);
	tab[3] = __builtin_convertvector(v * fused3 * 255.0f, hsv_vi);
	/*
	 * An 8-bit h gives pre in 0..8, so the sector is in 0..5 (no clamp);
	 * each channel takes the table its sector names, by masks.
	 */
	hsv_vi m0 = sector == 0, m1 = sector == 1, m2 = sector == 2, m3 = sector == 3,
	       m4 = sector == 4, m5 = sector == 5;
	/* hsv_sector spelled out: b takes tab 1, 1, 3, 0, 0, 2 by sector, and so on */
	hsv_vi out_b = ((m0 | m1) & tab[1]) | (m2 & tab[3]) | ((m3 | m4) & tab[0]) | (m5 & tab[2]);
	hsv_vi out_g = (m0 & tab[3]) | ((m1 | m2) & tab[0]) | (m3 & tab[2]) | ((m4 | m5) & tab[1]);
	hsv_vi out_r = ((m0 | m5) & tab[0]) | (m1 & tab[2]) | ((m2 | m3) & tab[1]) | (m4 & tab[3]);
	hsv_v8 b = __builtin_convertvector(out_b, hsv_v8),
	       g = __builtin_convertvector(out_g, hsv_v8),
	       r = __builtin_convertvector(out_r, hsv_v8);
	hsv_vb bg =
	    __builtin_shufflevector(b, g, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
	hsv_vb rr = __builtin_shufflevector(r, r, 0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7);
	hsv_vb first =
	    __builtin_shufflevector(bg, rr, 0, 8, 16, 1, 9, 17, 2, 10, 18, 3, 11, 19, 4, 12, 20, 5);
	hsv_v8 rest = __builtin_shufflevector(bg, rr, 13, 21, 6, 14, 22, 7, 15, 23);
	memcpy(bgr, &first, sizeof(first));
	memcpy(bgr + sizeof(first), &rest, sizeof(rest));
}
#else
static void hsv_to_bgr_lanes(const uint8_t *hsv, uint8_t *bgr)
{
	for (int k = 0; k < HSV_LANES; k++)
		hsv_to_bgr_vector(hsv + 3 * k, bgr + 3 * k);
}
#endif

/*
 * One pixel as the scalar tail computes it: float maths, rounded. Here the
 * compiler fused only 1 - s*h (exhaustively checked like the vector path).
 */
static void hsv_to_bgr_scalar(const uint8_t *hsv, uint8_t *bgr)
{
	const float hscale = 6.0f / 180;
	float h = hsv[0];
	float s = hsv[1] * (1.0f / 255.0f);
	float v = hsv[2] * (1.0f / 255.0f);
	float out[3];
	if (s == 0) {
		out[0] = out[1] = out[2] = v;
	} else {
		h *= hscale;
		h = fmodf(h, 6.f);
		int sector = (int)floorf(h);
		h -= (float)sector;
		if ((unsigned)sector >= 6u) {
			sector = 0;
			h = 0.f;
		}
		float tab[4] = {v, v * (1.f - s), v * fmaf(-s, h, 1.f), v * (1.f - s * (1.f - h))};
		for (int c = 0; c < 3; c++)
			out[c] = tab[hsv_sector[sector][c]];
	}
	for (int c = 0; c < 3; c++)
		bgr[c] = sat_u8((int)lrintf(out[c] * 255.0f));
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define HSV_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define HSV_CLONES
#endif

/*
 * Pixels x0 <= x < x1 of one row (hsv and bgr point at pixel x0), x0 a
 * multiple of HSV_LANES: those below vector_end as OpenCV's vector loop,
 * the rest as its scalar tail.
 */
HSV_CLONES static void hsv_to_bgr_span(const uint8_t *hsv, uint8_t *bgr, int x0, int x1,
				       int vector_end)
{
	int x = x0;
	for (; x + HSV_LANES <= (x1 < vector_end ? x1 : vector_end); x += HSV_LANES)
		hsv_to_bgr_lanes(hsv + 3 * (size_t)(x - x0), bgr + 3 * (size_t)(x - x0));
	for (; x < x1; x++) {
		size_t i = 3 * (size_t)(x - x0);
		if (x < vector_end)
			hsv_to_bgr_vector(hsv + i, bgr + i);
		else
			hsv_to_bgr_scalar(hsv + i, bgr + i);
	}
}

void tr_aug_hsv_to_bgr(const uint8_t *hsv, uint8_t *bgr, int width, int height)
{
	int vector_end = width - width % HSV_BLOCK;
	for (int y = 0; y < height; y++) {
		size_t row = (size_t)y * width * 3;
		hsv_to_bgr_span(hsv + row, bgr + row, 0, width, vector_end);
	}
}

void tr_aug_hsv_gains(double hgain, double sgain, double vgain, const double uniform[3],
		      double gains[3])
{
	gains[0] = uniform[0] * hgain + 1;
	gains[1] = uniform[1] * sgain + 1;
	gains[2] = uniform[2] * vgain + 1;
}

/* numpy's float64 -> uint8 astype for values already in [0, 256). */
static uint8_t trunc_u8(double x)
{
	return (uint8_t)(int)x;
}

/* augment_hsv works through each row in pieces this wide (a stack buffer). */
enum { HSV_CHUNK = 8 * HSV_BLOCK };

int tr_aug_hsv(struct tr_image *im, const double gains[3], struct ut_err *err)
{
	(void)err;
	struct hsv_lut lut;
	for (int x = 0; x < 256; x++) {
		double hue = fmod(x * gains[0], 180.0);
		if (hue < 0)
			hue += 180.0; /* Python's % takes the divisor's sign */
		lut.ch[0][x] = trunc_u8(hue);
		lut.ch[1][x] = trunc_u8(fmin(fmax(x * gains[1], 0.0), 255.0));
		lut.ch[2][x] = trunc_u8(fmin(fmax(x * gains[2], 0.0), 255.0));
	}
	struct hsv_div d;
	hsv_div_init(&d);
	uint8_t hsv[3 * HSV_CHUNK];
	int width = im->width, vector_end = width - width % HSV_BLOCK;
	for (int y = 0; y < im->height; y++) {
		uint8_t *row = im->data + (size_t)y * width * 3;
		for (int x0 = 0; x0 < width; x0 += HSV_CHUNK) {
			int x1 = width - x0 < HSV_CHUNK ? width : x0 + HSV_CHUNK;
			bgr_to_hsv_lut(&d, row + 3 * (size_t)x0, hsv, (size_t)(x1 - x0), &lut);
			hsv_to_bgr_span(hsv, row + 3 * (size_t)x0, x0, x1, vector_end);
		}
	}
	return 0;
}

/* --- warps --- */

enum {
	INTER_BITS = 5,
	INTER_TAB = 1 << INTER_BITS,
	REMAP_COEF_BITS = 15,
	AB_BITS = 10,
	AB_SCALE = 1 << AB_BITS,
};

/* saturate_cast<short>. */
static int sat_s16(int v)
{
	return clamp_int(v, INT16_MIN, INT16_MAX);
}

/*
 * Blend the 2x2 source neighbourhood at 1/32-pixel position (X, Y) (fixed
 * point, INTER_BITS fraction) with 15-bit weights; corners outside the
 * source read the border grey.
 */
static void remap_pixel(const struct tr_image *src, int X, int Y, uint8_t border, uint8_t *out)
{
	int sx = sat_s16(X >> INTER_BITS), sy = sat_s16(Y >> INTER_BITS);
	int fx = X & (INTER_TAB - 1), fy = Y & (INTER_TAB - 1);
	int w[4] = {(INTER_TAB - fy) * (INTER_TAB - fx) * 32, (INTER_TAB - fy) * fx * 32,
		    fy * (INTER_TAB - fx) * 32, fy * fx * 32};
	int acc[3] = {0, 0, 0};
	for (int k = 0; k < 4; k++) {
		int px = sx + (k & 1), py = sy + (k >> 1);
		bool inside = px >= 0 && px < src->width && py >= 0 && py < src->height;
		const uint8_t *p = src->data + ((size_t)py * src->width + px) * 3;
		for (int c = 0; c < 3; c++)
			acc[c] += (inside ? p[c] : border) * w[k];
	}
	for (int c = 0; c < 3; c++)
		out[c] = sat_u8((acc[c] + (1 << (REMAP_COEF_BITS - 1))) >> REMAP_COEF_BITS);
}

/*
 * remap_pixel when all four corners are inside the source; row0 points at
 * the top-left corner, and 8 bytes are read there and one row below (see
 * remap_any). The weights are 32 w' with w' = (32 - fy)(32 - fx) etc., so
 * (sum p w + 2^14) >> 15 equals (sum p w' + 512) >> 10: blend the two
 * rows in 16 bits, then the two columns with one multiply-add into 32.
 */
#ifdef __SSE2__
AUG_INLINE void remap_inside(const uint8_t *row0, size_t stride, int fx, int fy, bool spill,
			     uint8_t *out)
{
	__m128i zero = _mm_setzero_si128();
	__m128i a = _mm_unpacklo_epi8(_mm_loadl_epi64((const __m128i *)row0), zero);
	__m128i b = _mm_unpacklo_epi8(_mm_loadl_epi64((const __m128i *)(row0 + stride)), zero);
	/* 32 a + fy (b - a) = (32 - fy) a + fy b, at most 8160 */
	__m128i v = _mm_add_epi16(_mm_slli_epi16(a, INTER_BITS),
				  _mm_mullo_epi16(_mm_sub_epi16(b, a), _mm_set1_epi16((short)fy)));
	__m128i pairs = _mm_unpacklo_epi16(v, _mm_srli_si128(v, 6));
	__m128i sum = _mm_madd_epi16(pairs, _mm_set1_epi32((fx << 16) | (INTER_TAB - fx)));
	sum = _mm_srai_epi32(_mm_add_epi32(sum, _mm_set1_epi32(512)), 10);
	sum = _mm_packs_epi32(sum, sum);
	uint32_t bgr = (uint32_t)_mm_cvtsi128_si32(_mm_packus_epi16(sum, sum));
	if (spill)
		memcpy(out, &bgr, 4);
	else
		memcpy(out, &bgr, 3);
}
#else
AUG_INLINE void remap_inside(const uint8_t *row0, size_t stride, int fx, int fy, bool spill,
			     uint8_t *out)
{
	(void)spill;
	const uint8_t *row1 = row0 + stride;
	for (int c = 0; c < 3; c++) {
		int top = (INTER_TAB - fx) * row0[c] + fx * row0[3 + c];
		int bottom = (INTER_TAB - fx) * row1[c] + fx * row1[3 + c];
		out[c] = (uint8_t)(((INTER_TAB - fy) * top + fy * bottom + 512) >> 10);
	}
}
#endif

/*
 * remap_pixel by cases: all four corners inside (remap_inside, which reads
 * 8 bytes from the top-left corner in both rows, so on the last pair of
 * rows it needs 3 columns to the right), all outside (the weights sum to
 * 2^15, so the blend is the border grey itself), or some of each. spill:
 * out may take a 4th byte, the next pixel's, which is written later.
 */
AUG_INLINE void remap_any(const struct tr_image *src, int X, int Y, uint8_t border, bool spill,
			  uint8_t *out)
{
	int sx = sat_s16(X >> INTER_BITS), sy = sat_s16(Y >> INTER_BITS);
	int w = src->width, h = src->height;
	if ((unsigned)sx < (unsigned)(w - 1) && (unsigned)sy < (unsigned)(h - 1) &&
	    (sy < h - 2 || sx < w - 2)) {
		size_t stride = (size_t)w * 3;
		remap_inside(src->data + (size_t)sy * stride + 3 * (size_t)sx, stride,
			     X & (INTER_TAB - 1), Y & (INTER_TAB - 1), spill, out);
	} else if (sx < -1 || sx >= w || sy < -1 || sy >= h) {
		out[0] = out[1] = out[2] = border;
	} else {
		remap_pixel(src, X, Y, border, out);
	}
}

/* warpAffine's inverse of the 2x3 forward map, as OpenCV computes it. */
static void invert_affine(const double M[9], double inv[6])
{
	double D = M[0] * M[4] - M[1] * M[3];
	D = D != 0 ? 1. / D : 0;
	double a11 = M[4] * D, a22 = M[0] * D;
	double m01 = M[1] * -D, m10 = M[3] * -D;
	inv[0] = a11;
	inv[1] = m01;
	inv[3] = m10;
	inv[4] = a22;
	inv[2] = -inv[0] * M[2] - inv[1] * M[5];
	inv[5] = -inv[3] * M[2] - inv[4] * M[5];
}

/* cv::invert of a 3x3 double matrix (the explicit cofactor formula). */
static void invert3(const double m[9], double t[9])
{
#define E(i, j) m[3 * (i) + (j)]
	double d = E(0, 0) * (E(1, 1) * E(2, 2) - E(1, 2) * E(2, 1)) -
		   E(0, 1) * (E(1, 0) * E(2, 2) - E(1, 2) * E(2, 0)) +
		   E(0, 2) * (E(1, 0) * E(2, 1) - E(1, 1) * E(2, 0));
	if (d == 0) {
		memset(t, 0, 9 * sizeof(double));
		return;
	}
	d = 1. / d;
	t[0] = (E(1, 1) * E(2, 2) - E(1, 2) * E(2, 1)) * d;
	t[1] = (E(0, 2) * E(2, 1) - E(0, 1) * E(2, 2)) * d;
	t[2] = (E(0, 1) * E(1, 2) - E(0, 2) * E(1, 1)) * d;
	t[3] = (E(1, 2) * E(2, 0) - E(1, 0) * E(2, 2)) * d;
	t[4] = (E(0, 0) * E(2, 2) - E(0, 2) * E(2, 0)) * d;
	t[5] = (E(0, 2) * E(1, 0) - E(0, 0) * E(1, 2)) * d;
	t[6] = (E(1, 0) * E(2, 1) - E(1, 1) * E(2, 0)) * d;
	t[7] = (E(0, 1) * E(2, 0) - E(0, 0) * E(2, 1)) * d;
	t[8] = (E(0, 0) * E(1, 1) - E(0, 1) * E(1, 0)) * d;
#undef E
}

/*
 * warpAffine: per destination pixel the source position in 1/1024 pixel,
 * row part round((m1*y + m2) * 1024) + 16 plus column part
 * round(m0*x * 1024), shifted down to 1/32 pixel. The column parts are
 * tabulated (as OpenCV does) for bands of WARP_BAND columns.
 */
enum { WARP_BAND = 1024 };

static void warp_affine(const struct tr_image *src, const double M[9], uint8_t border,
			struct tr_image *dst)
{
	double m[6];
	invert_affine(M, m);
	int round_delta = AB_SCALE / INTER_TAB / 2;
	int adelta[WARP_BAND], bdelta[WARP_BAND];
	for (int xb = 0; xb < dst->width; xb += WARP_BAND) {
		int bw = dst->width - xb < WARP_BAND ? dst->width - xb : WARP_BAND;
		for (int x = 0; x < bw; x++) {
			adelta[x] = sat_round_int(m[0] * (xb + x) * AB_SCALE);
			bdelta[x] = sat_round_int(m[3] * (xb + x) * AB_SCALE);
		}
		for (int y = 0; y < dst->height; y++) {
			int X0 = sat_round_int((m[1] * y + m[2]) * AB_SCALE) + round_delta;
			int Y0 = sat_round_int((m[4] * y + m[5]) * AB_SCALE) + round_delta;
			uint8_t *row = dst->data + ((size_t)y * dst->width + xb) * 3;
			for (int x = 0; x < bw; x++) {
				int X = (int)(((int64_t)X0 + adelta[x]) >> (AB_BITS - INTER_BITS));
				int Y = (int)(((int64_t)Y0 + bdelta[x]) >> (AB_BITS - INTER_BITS));
				bool spill = xb + x + 1 < dst->width;
				remap_any(src, X, Y, border, spill, row + 3 * (size_t)x);
			}
		}
	}
}

/*
 * warpPerspective: OpenCV walks the output in blocks of bw0 columns and
 * evaluates (m0*xb + m1*y + m2) + m0*x1 with xb the block's first column,
 * so the block width is part of the arithmetic.
 */
static void warp_perspective(const struct tr_image *src, const double M[9], uint8_t border,
			     struct tr_image *dst)
{
	double m[9];
	invert3(M, m);
	int bh0 = dst->height < 16 ? dst->height : 16;
	int bw0 = 1024 / bh0 < dst->width ? 1024 / bh0 : dst->width;
	for (int y = 0; y < dst->height; y++) {
		uint8_t *row = dst->data + (size_t)y * dst->width * 3;
		for (int xb = 0; xb < dst->width; xb += bw0) {
			double X0 = m[0] * xb + m[1] * y + m[2];
			double Y0 = m[3] * xb + m[4] * y + m[5];
			double W0 = m[6] * xb + m[7] * y + m[8];
			int bw = dst->width - xb < bw0 ? dst->width - xb : bw0;
			for (int x1 = 0; x1 < bw; x1++) {
				double W = W0 + m[6] * x1;
				W = W != 0 ? INTER_TAB / W : 0;
				double fX = fmax((double)INT_MIN,
						 fmin((double)INT_MAX, (X0 + m[0] * x1) * W));
				double fY = fmax((double)INT_MIN,
						 fmin((double)INT_MAX, (Y0 + m[3] * x1) * W));
				remap_any(src, sat_round_int(fX), sat_round_int(fY), border,
					  xb + x1 + 1 < dst->width, row + 3 * (size_t)(xb + x1));
			}
		}
	}
}

void tr_aug_warp_source_box(const double M[9], bool perspective, int src_w, int src_h, int dst_w,
			    int dst_h, int box[4])
{
	box[0] = box[1] = 0;
	box[2] = src_w;
	box[3] = src_h;
	if (perspective)
		return;
	double m[6];
	invert_affine(M, m);
	/*
	 * Affine: the extremes are at the corners. The fixed-point positions
	 * stray from the exact ones by under 1/32 pixel; each read takes
	 * column sx and sx + 1 (and the bytes of sx + 2 in an 8-byte load):
	 * a margin of 3 pixels covers all of it.
	 */
	double lo[2] = {INFINITY, INFINITY}, hi[2] = {-INFINITY, -INFINITY};
	for (int k = 0; k < 4; k++) {
		double x = (k & 1) ? dst_w - 1 : 0, y = (k & 2) ? dst_h - 1 : 0;
		double sx = m[0] * x + m[1] * y + m[2], sy = m[3] * x + m[4] * y + m[5];
		lo[0] = fmin(lo[0], sx);
		hi[0] = fmax(hi[0], sx);
		lo[1] = fmin(lo[1], sy);
		hi[1] = fmax(hi[1], sy);
	}
	if (!(isfinite(lo[0]) && isfinite(lo[1]) && isfinite(hi[0]) && isfinite(hi[1])))
		return;
	int len[2] = {src_w, src_h};
	for (int a = 0; a < 2; a++) {
		double first = fmax(floor(lo[a]) - 3, 0), last = fmin(floor(hi[a]) + 4, len[a]);
		box[a] = (int)fmin(first, len[a]);
		box[2 + a] = (int)fmax(last, box[a]);
	}
}

void tr_aug_warp(const struct tr_image *src, const double M[9], bool perspective, uint8_t border,
		 struct tr_image *dst)
{
	if (perspective)
		warp_perspective(src, M, border, dst);
	else
		warp_affine(src, M, border, dst);
}

/* --- random_perspective --- */

void tr_aug_perspective_draws(const struct tr_aug_perspective *p, const double frac[TR_AUG_DRAWS],
			      double draws[TR_AUG_DRAWS], double lo[TR_AUG_DRAWS],
			      double hi[TR_AUG_DRAWS])
{
	const double range[TR_AUG_DRAWS][2] = {
	    {-p->perspective, p->perspective},
	    {-p->perspective, p->perspective},
	    {-p->degrees, p->degrees},
	    {1 - p->scale, 1 + p->scale},
	    {-p->shear, p->shear},
	    {-p->shear, p->shear},
	    {0.5 - p->translate, 0.5 + p->translate},
	    {0.5 - p->translate, 0.5 + p->translate},
	};
	for (int i = 0; i < TR_AUG_DRAWS; i++) {
		draws[i] = range[i][0] + (range[i][1] - range[i][0]) * frac[i];
		if (lo != NULL)
			lo[i] = range[i][0];
		if (hi != NULL)
			hi[i] = range[i][1];
	}
}

/* out = a @ b for row-major 3x3 matrices, sums in index order. */
static void matmul3(const double a[9], const double b[9], double out[9])
{
	double t[9];
	for (int i = 0; i < 3; i++)
		for (int j = 0; j < 3; j++)
			t[3 * i + j] =
			    a[3 * i] * b[j] + a[3 * i + 1] * b[3 + j] + a[3 * i + 2] * b[6 + j];
	memcpy(out, t, sizeof(t));
}

static void eye3(double m[9])
{
	memset(m, 0, 9 * sizeof(double));
	m[0] = m[4] = m[8] = 1;
}

void tr_aug_perspective_matrix(const struct tr_aug_perspective *p, int in_w, int in_h,
			       const double draws[TR_AUG_DRAWS], double M[9])
{
	int height = in_h + 2 * p->border_h, width = in_w + 2 * p->border_w;
	double C[9], P[9], R[9], S[9], T[9];
	eye3(C);
	C[2] = -in_w / 2.0;
	C[5] = -in_h / 2.0;
	eye3(P);
	P[6] = draws[TR_AUG_DRAW_PERSP_X];
	P[7] = draws[TR_AUG_DRAW_PERSP_Y];
	/* cv2.getRotationMatrix2D(center=(0, 0), angle=a, scale=s) */
	eye3(R);
	double angle = draws[TR_AUG_DRAW_ANGLE] * (pi / 180);
	double alpha = cos(angle) * draws[TR_AUG_DRAW_SCALE];
	double beta = sin(angle) * draws[TR_AUG_DRAW_SCALE];
	R[0] = alpha;
	R[1] = beta;
	R[3] = -beta;
	R[4] = alpha;
	eye3(S);
	S[1] = tan(draws[TR_AUG_DRAW_SHEAR_X] * pi / 180);
	S[3] = tan(draws[TR_AUG_DRAW_SHEAR_Y] * pi / 180);
	eye3(T);
	T[2] = draws[TR_AUG_DRAW_TRANS_X] * width;
	T[5] = draws[TR_AUG_DRAW_TRANS_Y] * height;
	matmul3(T, S, M);
	matmul3(M, R, M);
	matmul3(M, P, M);
	matmul3(M, C, M);
}

bool tr_aug_box_candidate(const float before[4], const double after[4], double wh_thr,
			  double ar_thr, double area_thr)
{
	const double eps = 1e-16;
	float w1 = before[2] - before[0], h1 = before[3] - before[1];
	double w2 = after[2] - after[0], h2 = after[3] - after[1];
	double ar = fmax(w2 / (h2 + eps), h2 / (w2 + eps));
	float area1 = (float)(w1 * h1 + eps);
	return w2 > wh_thr && h2 > wh_thr && w2 * h2 / area1 > area_thr && ar < ar_thr;
}

/* Transform one box's four corners, take their bounds, clip to the image. */
static void warp_box(const double M[9], bool perspective, const float *box, int width, int height,
		     double out[4])
{
	const int corners[4][2] = {{0, 1}, {2, 3}, {0, 3}, {2, 1}};
	double xmin = INFINITY, ymin = INFINITY, xmax = -INFINITY, ymax = -INFINITY;
	for (int k = 0; k < 4; k++) {
		double x = box[corners[k][0]], y = box[corners[k][1]];
		double tx = M[0] * x + M[1] * y + M[2];
		double ty = M[3] * x + M[4] * y + M[5];
		if (perspective) {
			double tw = M[6] * x + M[7] * y + M[8];
			tx /= tw;
			ty /= tw;
		}
		xmin = fmin(xmin, tx);
		xmax = fmax(xmax, tx);
		ymin = fmin(ymin, ty);
		ymax = fmax(ymax, ty);
	}
	out[0] = fmin(fmax(xmin, 0), width);
	out[1] = fmin(fmax(ymin, 0), height);
	out[2] = fmin(fmax(xmax, 0), width);
	out[3] = fmin(fmax(ymax, 0), height);
}

static bool is_identity(const double M[9])
{
	for (int i = 0; i < 9; i++)
		if (M[i] != (i % 4 == 0 ? 1.0 : 0.0))
			return false;
	return true;
}

int tr_aug_random_perspective(const struct tr_image *src, const struct tr_aug_perspective *p,
			      const double draws[TR_AUG_DRAWS], struct tr_image *out, float *labels,
			      int *n, double M[9], struct ut_err *err)
{
	int height = src->height + 2 * p->border_h, width = src->width + 2 * p->border_w;
	if (tr_aug_image_alloc(out, width, height, err) != 0)
		return -1;
	return tr_aug_random_perspective_into(src, p, draws, out, labels, n, M, err);
}

/*
 * Is any coordinate of any polygon nonzero? (use_segments: any(x.any() for
 * x in segments)).
 */
static bool any_segment(const struct tr_polygon *segments, int n_segments)
{
	for (int i = 0; i < n_segments; i++)
		for (int k = 0; k < 2 * segments[i].points; k++)
			if (segments[i].xy[k] != 0)
				return true;
	return false;
}

/*
 * Point `at` of 1000 along the closed polygon, as resample_segments'
 * np.interp(np.linspace(0, points, 1000), np.arange(points + 1), closed):
 * the float64 position q = at * (points / 999) (the last one exactly
 * points), j = floor(q), value = (f[j+1] - f[j]) * (q - j) + f[j].
 */
static void resample_point(const struct tr_polygon *poly, int at, double *x, double *y)
{
	const int samples = 1000;
	int points = poly->points;
	if (at == samples - 1) { /* linspace's last is stop: f[points] = f[0] */
		*x = poly->xy[0];
		*y = poly->xy[1];
		return;
	}
	double q = at * ((double)points / (samples - 1));
	int j = (int)q;
	const float *a = poly->xy + 2 * j, *b = poly->xy + 2 * ((j + 1) % points);
	*x = ((double)b[0] - a[0]) * (q - j) + a[0];
	*y = ((double)b[1] - a[1]) * (q - j) + a[1];
}

/*
 * segment2box of the warped, resampled polygon: bounds of the points
 * inside [0, width] x [0, height]; zeros when none is or their x are all 0
 * (YOLOv5's `if any(x)`).
 */
static void warp_segment(const double M[9], bool perspective, const struct tr_polygon *poly,
			 int width, int height, double out[4])
{
	double xmin = INFINITY, ymin = INFINITY, xmax = -INFINITY, ymax = -INFINITY;
	bool any_x = false;
	for (int at = 0; at < 1000; at++) {
		double x, y;
		resample_point(poly, at, &x, &y);
		/* numpy's xy @ M.T: OpenBLAS sums k = 0, 1 in one FMA, then + M[., 2] */
		double tx = fma(y, M[1], x * M[0]) + M[2];
		double ty = fma(y, M[4], x * M[3]) + M[5];
		if (perspective) {
			double tw = fma(y, M[7], x * M[6]) + M[8];
			tx /= tw;
			ty /= tw;
		}
		if (!(tx >= 0 && ty >= 0 && tx <= width && ty <= height))
			continue;
		any_x = any_x || tx != 0;
		xmin = fmin(xmin, tx);
		xmax = fmax(xmax, tx);
		ymin = fmin(ymin, ty);
		ymax = fmax(ymax, ty);
	}
	if (!any_x) {
		xmin = ymin = xmax = ymax = 0;
	}
	out[0] = xmin;
	out[1] = ymin;
	out[2] = xmax;
	out[3] = ymax;
}

int tr_aug_random_perspective_into(const struct tr_image *src, const struct tr_aug_perspective *p,
				   const double draws[TR_AUG_DRAWS], struct tr_image *out,
				   float *labels, int *n, double M[9], struct ut_err *err)
{
	return tr_aug_random_perspective_segments_into(src, p, draws, NULL, 0, out, labels, n, M,
						       err);
}

int tr_aug_random_perspective_segments_into(const struct tr_image *src,
					    const struct tr_aug_perspective *p,
					    const double draws[TR_AUG_DRAWS],
					    const struct tr_polygon *segments, int n_segments,
					    struct tr_image *out, float *labels, int *n,
					    double M[9], struct ut_err *err)
{
	int height = src->height + 2 * p->border_h, width = src->width + 2 * p->border_w;
	if (out->width != width || out->height != height || out->data == NULL)
		return ut_err_set(err, "random_perspective: output is %dx%d, it must be %dx%d",
				  out->width, out->height, width, height);
	if (n_segments > *n)
		return ut_err_set(err, "random_perspective: %d segments for %d boxes", n_segments,
				  *n);
	for (int i = 0; i < n_segments; i++)
		if (segments[i].points < 1)
			return ut_err_set(err, "random_perspective: segment %d has no points", i);
	double m[9];
	tr_aug_perspective_matrix(p, src->width, src->height, draws, m);
	if (M != NULL)
		memcpy(M, m, sizeof(m));
	bool perspective = p->perspective != 0;
	if (p->border_h != 0 || p->border_w != 0 || !is_identity(m))
		tr_aug_warp(src, m, perspective, 114, out);
	else
		memcpy(out->data, src->data, (size_t)width * height * 3);
	bool use_segments = any_segment(segments, n_segments);
	int kept = 0;
	for (int i = 0; i < *n; i++) {
		float *row = labels + 5 * (size_t)i;
		double box[4] = {0, 0, 0, 0};
		if (!use_segments)
			warp_box(m, perspective, row + 1, width, height, box);
		else if (i < n_segments)
			warp_segment(m, perspective, &segments[i], width, height, box);
		float scaled[4];
		for (int k = 0; k < 4; k++)
			scaled[k] = row[1 + k] * (float)draws[TR_AUG_DRAW_SCALE];
		if (!tr_aug_box_candidate(scaled, box, 2, 100, use_segments ? 0.01 : 0.1))
			continue;
		float *dst = labels + 5 * (size_t)kept++;
		dst[0] = row[0];
		for (int k = 0; k < 4; k++)
			dst[1 + k] = (float)box[k];
	}
	*n = kept;
	return 0;
}
