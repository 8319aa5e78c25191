/*
 * augment.c -- random crops and horizontal flips of image batches, in
 * place (augment.h).
 *
 * A shift moves whole rows with memmove in the order that reads every
 * source row before it is overwritten (bottom-up when the image moves
 * down, top-down otherwise), then zeroes what came from outside the
 * image; it needs no scratch buffer, so augmenting a batch allocates
 * nothing.
 */
#include "augment.h"

#include <string.h>

void ln_augment_shift_image(float *img, int64_t c, int64_t h, int64_t w, int64_t dy, int64_t dx)
{
	for (int64_t k = 0; k < c; k++) {
		float *p = img + k * h * w;
		if (dy >= h || -dy >= h || dx >= w || -dx >= w) {
			memset(p, 0, (size_t)(h * w) * sizeof(float));
			continue;
		}
		/* columns [j0, j1) of an output row come from columns [j0-dx, j1-dx) */
		int64_t j0 = dx > 0 ? dx : 0, j1 = dx < 0 ? w + dx : w;
		for (int64_t step = 0; step < h; step++) {
			int64_t i = dy > 0 ? h - 1 - step : step;
			float *row = p + i * w;
			int64_t src = i - dy;
			if (src < 0 || src >= h) {
				memset(row, 0, (size_t)w * sizeof(float));
				continue;
			}
			memmove(row + j0, p + src * w + j0 - dx, (size_t)(j1 - j0) * sizeof(float));
			memset(row, 0, (size_t)j0 * sizeof(float));
			memset(row + j1, 0, (size_t)(w - j1) * sizeof(float));
		}
	}
}

void ln_augment_flip_image(float *img, int64_t c, int64_t h, int64_t w)
{
	for (int64_t r = 0; r < c * h; r++) {
		float *row = img + r * w;
		for (int64_t a = 0, b = w - 1; a < b; a++, b--) {
			float t = row[a];
			row[a] = row[b];
			row[b] = t;
		}
	}
}

/* LN_ESHAPE unless x is a contiguous {N,C,H,W} tensor. */
static ln_status check_images(const ln_tensor *x, ln_error *err)
{
	if (!ln_tensor_is_empty(x) && x->ndim == 4 && ln_tensor_is_contiguous(x))
		return LN_OK;
	char s[96] = "an empty tensor";
	if (!ln_tensor_is_empty(x))
		ln_tensor_shape_str(x, s, sizeof s);
	return ln_fail(err, LN_ESHAPE, "expected a contiguous tensor of shape {N,C,H,W}, got %s%s", s,
	               !ln_tensor_is_empty(x) && x->ndim == 4 ? " (not contiguous)" : "");
}

ln_status ln_augment_random_crop(ln_tensor *x, int64_t pad, ln_rng *rng, ln_error *err)
{
	ln_status s = check_images(x, err);
	if (s != LN_OK)
		return s;
	if (pad < 0 || pad > ((int64_t)1 << 30))
		return ln_fail(err, LN_ERANGE, "expected a padding in 0..2^30, got %lld", (long long)pad);
	int64_t n = x->shape[0], c = x->shape[1], h = x->shape[2], w = x->shape[3];
	float *d = ln_tensor_data(x);
	for (int64_t i = 0; i < n; i++) {
		int64_t oy = (int64_t)ln_rng_below(rng, (uint64_t)(2 * pad + 1));
		int64_t ox = (int64_t)ln_rng_below(rng, (uint64_t)(2 * pad + 1));
		if (oy != pad || ox != pad)
			ln_augment_shift_image(d + i * c * h * w, c, h, w, pad - oy, pad - ox);
	}
	return LN_OK;
}

ln_status ln_augment_hflip(ln_tensor *x, double p, ln_rng *rng, ln_error *err)
{
	ln_status s = check_images(x, err);
	if (s != LN_OK)
		return s;
	if (!(p >= 0 && p <= 1))
		return ln_fail(err, LN_ERANGE, "expected a probability p in [0,1], got %g", p);
	int64_t n = x->shape[0], c = x->shape[1], h = x->shape[2], w = x->shape[3];
	float *d = ln_tensor_data(x);
	for (int64_t i = 0; i < n; i++)
		if (ln_rng_uniform(rng) < p)
			ln_augment_flip_image(d + i * c * h * w, c, h, w);
	return LN_OK;
}
