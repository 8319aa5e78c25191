/*
 * dist.c -- the gradient packer of dist.h: plain C, in every build.  The
 * communication is in dist_mpi.c (or dist_none.c without MPI).
 */
#include <stdint.h>

#include "../core/alloc.h"
#include "dist.h"

/* Takes a reference to each of grads[0..n) and allocates the one buffer
 * (total + 1 floats: the weight travels in the last slot).  On failure
 * nothing is kept and *out is left alone. */
ln_status ln_dist_packer_new(ln_dist_packer **out, int n, const ln_tensor *grads, ln_error *err)
{
	if (n < 0)
		return ln_fail(err, LN_ERANGE, "expected a number of gradients >= 0, got %d", n);
	size_t total = 0;
	for (int i = 0; i < n; i++) {
		if (ln_tensor_is_empty(&grads[i]))
			return ln_fail(err, LN_EARG, "gradient %d is empty", i + 1);
		if (!ln_tensor_is_contiguous(&grads[i])) {
			char shape[64];
			return ln_fail(err, LN_EARG, "gradient %d (shape %s) is not contiguous", i + 1,
			               ln_tensor_shape_str(&grads[i], shape, sizeof shape));
		}
		size_t k = (size_t)ln_tensor_numel(&grads[i]);
		if (total > SIZE_MAX / sizeof(float) - 1 - k)
			return ln_fail(err, LN_ERANGE, "the gradients hold too many elements to pack");
		total += k;
	}
	ln_dist_packer *p = ln_calloc(1, sizeof *p);
	ln_tensor *g = ln_calloc(n > 0 ? (size_t)n : 1, sizeof *g);
	float *buf = ln_malloc((total + 1) * sizeof(float));
	if (!p || !g || !buf) {
		ln_free(p);
		ln_free(g);
		ln_free(buf);
		return ln_fail(err, LN_ENOMEM, "out of memory for a gradient buffer of %zu floats",
		               total + 1);
	}
	for (int i = 0; i < n; i++)
		ln_tensor_ref(&g[i], &grads[i]);
	p->n = n;
	p->g = g;
	p->total = total;
	p->buf = buf;
	*out = p;
	return LN_OK;
}

/* Drops the references to the gradients and frees the buffer. */
void ln_dist_packer_free(ln_dist_packer *p)
{
	if (!p)
		return;
	for (int i = 0; i < p->n; i++)
		ln_tensor_release(&p->g[i]);
	ln_free(p->g);
	ln_free(p->buf);
	ln_free(p);
}

/* buf = [weight*g_1, ..., weight*g_n, weight]. */
void ln_dist_packer_pack(ln_dist_packer *p, float weight)
{
	float *dst = p->buf;
	for (int i = 0; i < p->n; i++) {
		const ln_tensor *g = &p->g[i];
		int64_t k = ln_tensor_numel(g);
		const float *src = ln_tensor_data(g);
		for (int64_t j = 0; j < k; j++)
			dst[j] = weight * src[j];
		dst += k;
	}
	*dst = weight;
}

/* g_i = buf segment i / buf[total], overwriting each gradient whole (a
 * pending zero is taken over rather than written first). */
void ln_dist_packer_unpack(ln_dist_packer *p)
{
	const float *src = p->buf;
	float total_weight = p->buf[p->total];
	for (int i = 0; i < p->n; i++) {
		ln_tensor *g = &p->g[i];
		int64_t k = ln_tensor_numel(g);
		ln_tensor_take_zero(g);
		float *dst = ln_tensor_data(g);
		for (int64_t j = 0; j < k; j++)
			dst[j] = src[j] / total_weight;
		src += k;
	}
}
