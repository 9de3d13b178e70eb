/*
 * ops_check.c - the shape checks of the op table, one implementation for
 * every backend (see ops_check.h), so the CPU and CUDA backends refuse the
 * same calls with the same messages.
 */
#include "ops_check.h"

#include <math.h>

struct tr_shape tr_conv_out_shape(const struct tr_conv *conv, struct tr_shape in)
{
	struct tr_shape out = {in.n, conv->cout, 0, 0};
	out.h = (in.h + 2 * conv->pad - conv->k) / conv->stride + 1;
	out.w = (in.w + 2 * conv->pad - conv->k) / conv->stride + 1;
	return out;
}

int tr_shape_same(struct tr_shape a, struct tr_shape b)
{
	return a.n == b.n && a.c == b.c && a.h == b.h && a.w == b.w;
}

int tr_shape_error(struct ut_err *err, const char *op, const char *what, struct tr_shape got,
		   struct tr_shape want)
{
	return ut_err_set(err, "%s: %s has shape %dx%dx%dx%d, expected %dx%dx%dx%d", op, what,
			  got.n, got.c, got.h, got.w, want.n, want.c, want.h, want.w);
}

/* Check a convolution's input and output shapes against its parameters. */
int tr_conv_check(const char *op, const struct tr_conv *conv, struct tr_shape in,
		  struct tr_shape out, struct ut_err *err)
{
	if (conv->cin < 1 || conv->cout < 1 || conv->k < 1 || conv->stride < 1 || conv->pad < 0 ||
	    in.n < 1 || in.h + 2 * conv->pad < conv->k || in.w + 2 * conv->pad < conv->k)
		return ut_err_set(err, "%s: bad convolution %d->%d k%d s%d p%d on %dx%dx%dx%d", op,
				  conv->cin, conv->cout, conv->k, conv->stride, conv->pad, in.n,
				  in.c, in.h, in.w);
	if (in.c != conv->cin)
		return ut_err_set(err, "%s: input has %d channels, convolution expects %d", op,
				  in.c, conv->cin);
	struct tr_shape want = tr_conv_out_shape(conv, in);
	if (!tr_shape_same(out, want))
		return tr_shape_error(err, op, "output", out, want);
	return 0;
}

int tr_pool_check(const char *op, int k, struct tr_shape x, struct tr_shape y, struct ut_err *err)
{
	if (k < 1 || k % 2 == 0)
		return ut_err_set(err, "%s: kernel %d (must be odd for pad k/2, stride 1)", op, k);
	if (!tr_shape_same(x, y))
		return tr_shape_error(err, op, "output", y, x);
	return 0;
}

int tr_upsample_check(const char *op, struct tr_shape small, struct tr_shape big,
		      struct ut_err *err)
{
	struct tr_shape want = {small.n, small.c, 2 * small.h, 2 * small.w};
	if (!tr_shape_same(big, want))
		return tr_shape_error(err, op, "upsampled tensor", big, want);
	return 0;
}

int tr_concat_check(const char *op, const struct tr_tensor *const *parts, int count,
		    struct tr_shape whole, struct ut_err *err)
{
	int channels = 0;
	if (count < 1)
		return ut_err_set(err, "%s: %d inputs", op, count);
	for (int i = 0; i < count; i++) {
		struct tr_shape s = parts[i]->shape;
		if (s.n != whole.n || s.h != whole.h || s.w != whole.w)
			return ut_err_set(err, "%s: input %d is %dx%dx%dx%d, output %dx%dx%dx%d",
					  op, i, s.n, s.c, s.h, s.w, whole.n, whole.c, whole.h,
					  whole.w);
		channels += s.c;
	}
	if (channels != whole.c)
		return ut_err_set(err, "%s: inputs have %d channels in all, output %d", op,
				  channels, whole.c);
	return 0;
}

int tr_bn_channel_check(const char *op, const struct tr_tensor *x, const struct tr_tensor *dy,
			const struct tr_tensor *out, struct ut_err *err)
{
	struct tr_shape s = x->shape;
	if (s.n < 1 || s.c < 1 || s.h < 1 || s.w < 1)
		return ut_err_set(err, "%s: x has shape %dx%dx%dx%d (no values)", op, s.n, s.c, s.h,
				  s.w);
	if (dy != NULL && !tr_shape_same(dy->shape, s))
		return tr_shape_error(err, op, "dy", dy->shape, s);
	if (out != NULL && !tr_shape_same(out->shape, s))
		return tr_shape_error(err, op, "output", out->shape, s);
	return 0;
}

int tr_detect_check(const char *op, int na, struct tr_shape s, struct ut_err *err)
{
	if (na < 1 || s.c % na != 0 || s.c / na < 6)
		return ut_err_set(err, "%s: %d channels for %d anchors (need na * (nc + 5))", op,
				  s.c, na);
	return 0;
}

int tr_quad_check(const char *op, struct tr_shape s, struct ut_err *err)
{
	if (s.n < 4 || s.c < 1 || s.h < 1 || s.w < 1)
		return ut_err_set(err, "%s: %dx%dx%dx%d images (need 4 or more)", op, s.n, s.c, s.h,
				  s.w);
	return 0;
}

int tr_amp_unscale_check(const char *op, float inv_scale, const int *found_inf, struct ut_err *err)
{
	if (!(inv_scale > 0.0f) || !isfinite(inv_scale))
		return ut_err_set(err, "%s: inv_scale %g (must be positive and finite)", op,
				  (double)inv_scale);
	if (found_inf == NULL)
		return ut_err_set(err, "%s: no found_inf to report to", op);
	return 0;
}

int tr_cast_check(const char *op, const void *x, size_t x_size, const void *y, size_t y_size,
		  size_t n, struct ut_err *err)
{
	if (n == 0)
		return 0;
	if (x == NULL || y == NULL)
		return ut_err_set(err, "%s: %s is NULL for %zu values", op, x == NULL ? "x" : "y",
				  n);
	uintptr_t x0 = (uintptr_t)x, y0 = (uintptr_t)y;
	if (x0 < y0 + n * y_size && y0 < x0 + n * x_size)
		return ut_err_set(err, "%s: x and y overlap (a cast does not run in place)", op);
	return 0;
}
