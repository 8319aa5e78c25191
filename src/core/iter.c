/*
 * iter.c -- the strided, broadcasting walk of iter.h, and the broadcasting
 * rules of tensor.h (ln_broadcast_shape, ln_tensor_broadcasts_to).
 */
#include <assert.h>

#include "iter.h"

#define SHAPE_BUF 128

/*
 * Drops the dimensions of size 1, then merges dimension d into d+1 when
 * every tensor steps over d exactly as over a whole run of d+1
 * (stride[d] == stride[d+1] * shape[d+1]).  The row-major order of the
 * walk is unchanged; only the number of rows goes down.  With nothing
 * left (every size 1) one row of one element remains.
 */
void ln_iter_init(ln_iter *it, int ndim, const int64_t *shape, int nt,
                  const int64_t *const *strides)
{
	assert(ndim >= 1 && ndim <= LN_MAX_DIMS && nt >= 1 && nt <= LN_ITER_MAX);
	int n = 0;
	for (int d = 0; d < ndim; d++) {
		assert(shape[d] >= 1);
		if (shape[d] == 1)
			continue;
		bool merge = n > 0;
		for (int i = 0; i < nt && merge; i++)
			merge = it->stride[i][n - 1] == strides[i][d] * shape[d];
		if (merge) {
			it->shape[n - 1] *= shape[d];
			for (int i = 0; i < nt; i++)
				it->stride[i][n - 1] = strides[i][d];
			continue;
		}
		it->shape[n] = shape[d];
		for (int i = 0; i < nt; i++)
			it->stride[i][n] = strides[i][d];
		n++;
	}
	if (n == 0) {
		it->shape[0] = 1;
		for (int i = 0; i < nt; i++)
			it->stride[i][0] = 0;
		n = 1;
	}
	it->nt = nt;
	it->outer = n - 1;
	it->len = it->shape[n - 1];
	for (int d = 0; d < n; d++)
		it->idx[d] = 0;
	for (int i = 0; i < nt; i++) {
		it->off[i] = 0;
		it->inc[i] = it->stride[i][n - 1];
	}
}

/* Odometer over the outer dimensions, innermost fastest. */
bool ln_iter_next(ln_iter *it)
{
	for (int d = it->outer - 1; d >= 0; d--) {
		it->idx[d]++;
		for (int i = 0; i < it->nt; i++)
			it->off[i] += it->stride[i][d];
		if (it->idx[d] < it->shape[d])
			return true;
		for (int i = 0; i < it->nt; i++)
			it->off[i] -= it->stride[i][d] * it->shape[d];
		it->idx[d] = 0;
	}
	return false;
}

void ln_broadcast_strides(int64_t *strides, const ln_tensor *t, int ndim, const int64_t *shape)
{
	assert(ln_tensor_broadcasts_to(t, ndim, shape));
	int lead = ndim - t->ndim;
	for (int d = 0; d < ndim; d++) {
		int td = d - lead;
		strides[d] = td < 0 || t->shape[td] != shape[d] ? 0 : t->stride[td];
	}
}

void ln_iter_tensors(ln_iter *it, int ndim, const int64_t *shape, int nt,
                     const ln_tensor *const *ts)
{
	assert(nt >= 1 && nt <= LN_ITER_MAX);
	int64_t s[LN_ITER_MAX][LN_MAX_DIMS];
	const int64_t *sp[LN_ITER_MAX];
	for (int i = 0; i < nt; i++) {
		assert(!ln_tensor_is_empty(ts[i]));
		ln_broadcast_strides(s[i], ts[i], ndim, shape);
		sp[i] = s[i];
	}
	ln_iter_init(it, ndim, shape, nt, sp);
}

void ln_iter_slices(ln_iter *it, int nt, const ln_tensor *const *ts, int dim)
{
	assert(nt >= 1 && nt <= LN_ITER_MAX && dim >= 0 && dim < ts[0]->ndim);
	int64_t shape[LN_MAX_DIMS];
	const int64_t *sp[LN_ITER_MAX];
	for (int d = 0; d < ts[0]->ndim; d++)
		shape[d] = d == dim ? 1 : ts[0]->shape[d];
	for (int i = 0; i < nt; i++) {
		assert(ts[i]->ndim == ts[0]->ndim);
		sp[i] = ts[i]->stride;
	}
	ln_iter_init(it, ts[0]->ndim, shape, nt, sp);
}

/* ======================================================================
 * Broadcasting rules (tensor.h)
 * ====================================================================== */

/* NumPy's rule, from the last dimension backwards: sizes equal, or one of
 * them 1 (it stretches); a missing leading dimension counts as 1. */
ln_status ln_broadcast_shape(int *ndim, int64_t *shape, int an, const int64_t *ashape, int bn,
                             const int64_t *bshape, ln_error *err)
{
	char abuf[SHAPE_BUF], bbuf[SHAPE_BUF];
	assert(an >= 1 && an <= LN_MAX_DIMS && bn >= 1 && bn <= LN_MAX_DIMS);
	int n = an > bn ? an : bn;
	for (int k = 1; k <= n; k++) {
		int64_t x = k <= an ? ashape[an - k] : 1;
		int64_t y = k <= bn ? bshape[bn - k] : 1;
		if (x != y && x != 1 && y != 1)
			return ln_fail(err, LN_ESHAPE,
			               "shapes %s and %s do not broadcast: dimension %d has sizes %lld "
			               "and %lld", ln_shape_str(abuf, sizeof abuf, an, ashape),
			               ln_shape_str(bbuf, sizeof bbuf, bn, bshape), -k, (long long)x,
			               (long long)y);
		shape[n - k] = x == 1 ? y : x;
	}
	*ndim = n;
	return LN_OK;
}

bool ln_tensor_broadcasts_to(const ln_tensor *t, int ndim, const int64_t *shape)
{
	if (t->ndim > ndim)
		return false;
	int lead = ndim - t->ndim;
	for (int d = 0; d < t->ndim; d++)
		if (t->shape[d] != 1 && t->shape[d] != shape[d + lead])
			return false;
	return true;
}
