/*
 * tensor_index.c -- sorting and indexing: sort, topk, index_select, cat
 * and stack.
 *
 * Index tensors hold 1-based indices as floats (tensor.h), the form Lua
 * scripts use; index arrays passed in from C are 0-based int64_t.
 */
#include <assert.h>
#include <math.h>
#include <string.h>

#include "alloc.h"
#include "tensor_internal.h"

/* ======================================================================
 * Sorting
 * ====================================================================== */

/* x before y in ascending order; NaN sorts above every number. */
static inline bool before(float x, float y)
{
	return !isnan(x) && (isnan(y) || x < y);
}

/*
 * Stable bottom-up merge sort of idx[0..n) by the keys v[idx[i]],
 * ascending or descending; tmp holds n entries of scratch.  An element of
 * the right run goes first only when it is strictly before the left one
 * (strictly after, descending), so equal keys keep their index order.
 */
static void sort_indices(int64_t *idx, int64_t *tmp, const float *v, int64_t n, bool descending)
{
	int64_t *src = idx, *dst = tmp;
	for (int64_t width = 1; width < n; width *= 2) {
		for (int64_t lo = 0; lo < n; lo += 2 * width) {
			int64_t mid = lo + width < n ? lo + width : n;
			int64_t hi = lo + 2 * width < n ? lo + 2 * width : n;
			int64_t i = lo, j = mid, k = lo;
			while (i < mid && j < hi) {
				float l = v[src[i]], r = v[src[j]];
				bool right = descending ? before(l, r) : before(r, l);
				dst[k++] = right ? src[j++] : src[i++];
			}
			while (i < mid)
				dst[k++] = src[i++];
			while (j < hi)
				dst[k++] = src[j++];
		}
		int64_t *swap = src;
		src = dst;
		dst = swap;
	}
	if (src != idx)
		memcpy(idx, src, (size_t)n * sizeof *idx);
}

/*
 * values, indices (shape of t, dim of size keep) = the first `keep`
 * entries of every slice of t along dim (resolved) once sorted.  Scratch
 * (the slice, its indices, the merge buffer) is one allocation, freed
 * here.  Errors: LN_ERANGE (dim too long), LN_ENOMEM; both left empty.
 */
static ln_status sort_slices(ln_tensor *values, ln_tensor *indices, const ln_tensor *t, int dim,
                             bool descending, int64_t keep, ln_error *err)
{
	char buf[SHAPE_BUF];
	int64_t n = t->shape[dim];
	if (n > LN_MAX_FLOAT_INDEX)
		return ln_fail(err, LN_ERANGE, "dimension %d of %s is longer than %lld: its indices "
		               "would not be exact in float32", dim + 1,
		               ln_tensor_shape_str(t, buf, sizeof buf), (long long)LN_MAX_FLOAT_INDEX);
	int64_t shape[LN_MAX_DIMS];
	memcpy(shape, t->shape, sizeof shape);
	shape[dim] = keep;
	ln_status st = ln_tensor_alloc(values, t->ndim, shape, err);
	if (st == LN_OK)
		st = ln_tensor_alloc(indices, t->ndim, shape, err);
	size_t bytes = (size_t)n * (sizeof(float) + 2 * sizeof(int64_t));
	char *scratch = st == LN_OK ? ln_malloc(bytes) : NULL;
	if (st == LN_OK && scratch == NULL)
		st = ln_fail(err, LN_ENOMEM, "out of memory sorting slices of %lld elements",
		             (long long)n);
	if (st != LN_OK) {
		ln_tensor_release(values);
		ln_tensor_release(indices);
		return st;
	}
	int64_t *idx = (int64_t *)scratch, *tmp = idx + n;
	float *v = (float *)(tmp + n);
	const float *x = ln_tensor_data(t);
	float *ov = ln_tensor_data(values), *oi = ln_tensor_data(indices);
	int64_t sx = t->stride[dim], sv = values->stride[dim], si = indices->stride[dim];
	ln_iter it;
	ln_iter_slices(&it, 3, (const ln_tensor *[]){ t, values, indices }, dim);
	do {
		for (int64_t j = 0; j < it.len; j++) {
			const float *p = x + it.off[0] + j * it.inc[0];
			for (int64_t k = 0; k < n; k++) {
				v[k] = p[k * sx];
				idx[k] = k;
			}
			sort_indices(idx, tmp, v, n, descending);
			float *pv = ov + it.off[1] + j * it.inc[1], *pi = oi + it.off[2] + j * it.inc[2];
			for (int64_t k = 0; k < keep; k++) {
				pv[k * sv] = v[idx[k]];
				pi[k * si] = (float)(idx[k] + 1);
			}
		}
	} while (ln_iter_next(&it));
	ln_free(scratch);
	return LN_OK;
}

/* Errors: LN_ERANGE, LN_ENOMEM. */
ln_status ln_tensor_sort(ln_tensor *values, ln_tensor *indices, const ln_tensor *t, int dim,
                         bool descending, ln_error *err)
{
	assert(ln_tensor_is_empty(values) && ln_tensor_is_empty(indices) && !ln_tensor_is_empty(t));
	ln_status st = ln_dim_resolve(dim, t->ndim, t->shape, &dim, err);
	if (st != LN_OK)
		return st;
	return sort_slices(values, indices, t, dim, descending, t->shape[dim], err);
}

/* The k largest along dim, from a full descending sort of each slice.
 * Errors: LN_ERANGE, LN_ENOMEM. */
ln_status ln_tensor_topk(ln_tensor *values, ln_tensor *indices, const ln_tensor *t, int64_t k,
                         int dim, ln_error *err)
{
	char buf[SHAPE_BUF];
	assert(ln_tensor_is_empty(values) && ln_tensor_is_empty(indices) && !ln_tensor_is_empty(t));
	ln_status st = ln_dim_resolve(dim, t->ndim, t->shape, &dim, err);
	if (st != LN_OK)
		return st;
	if (k < 1 || k > t->shape[dim])
		return ln_fail(err, LN_ERANGE, "k must be in 1..%lld (the size of dimension %d of %s), "
		               "got %lld", (long long)t->shape[dim], dim + 1,
		               ln_tensor_shape_str(t, buf, sizeof buf), (long long)k);
	return sort_slices(values, indices, t, dim, true, k, err);
}

/* ======================================================================
 * Indexing, joining
 * ====================================================================== */

/* out = t's entries idx[0..n) along dim.  Errors: LN_ERANGE, LN_ENOMEM. */
ln_status ln_tensor_index_select(ln_tensor *out, const ln_tensor *t, int dim, const int64_t *idx,
                                 int64_t n, ln_error *err)
{
	char buf[SHAPE_BUF];
	assert(ln_tensor_is_empty(out) && !ln_tensor_is_empty(t));
	ln_status st = ln_dim_resolve(dim, t->ndim, t->shape, &dim, err);
	if (st != LN_OK)
		return st;
	if (n < 1)
		return ln_fail(err, LN_ERANGE, "expected at least one index, got %lld", (long long)n);
	int64_t size = t->shape[dim];
	for (int64_t i = 0; i < n; i++)
		if (idx[i] < 0 || idx[i] >= size)
			return ln_fail(err, LN_ERANGE, "index %lld (position %lld) is outside 1..%lld, "
			               "the size of dimension %d of %s", (long long)ln_sat_add(idx[i], 1),
			               (long long)i + 1, (long long)size, dim + 1,
			               ln_tensor_shape_str(t, buf, sizeof buf));
	int64_t shape[LN_MAX_DIMS];
	memcpy(shape, t->shape, sizeof shape);
	shape[dim] = n;
	if ((st = ln_tensor_alloc(out, t->ndim, shape, err)) != LN_OK)
		return st;
	float *o = ln_tensor_data(out);
	const float *x = ln_tensor_data(t);
	int64_t so = out->stride[dim], sx = t->stride[dim];
	ln_iter it;
	ln_iter_slices(&it, 2, (const ln_tensor *[]){ out, t }, dim);
	do {
		for (int64_t j = 0; j < it.len; j++) {
			float *po = o + it.off[0] + j * it.inc[0];
			const float *px = x + it.off[1] + j * it.inc[1];
			for (int64_t i = 0; i < n; i++)
				po[i * so] = px[idx[i] * sx];
		}
	} while (ln_iter_next(&it));
	return LN_OK;
}

/* Checks that ts[1..n) have ts[0]'s ndim and sizes, apart from dimension
 * `skip` (-1: none).  Errors: LN_ESHAPE naming the first that does not. */
static ln_status check_fit(int n, const ln_tensor *const *ts, int skip, ln_error *err)
{
	char abuf[SHAPE_BUF], bbuf[SHAPE_BUF];
	const ln_tensor *a = ts[0];
	for (int i = 1; i < n; i++) {
		const ln_tensor *b = ts[i];
		bool fit = b->ndim == a->ndim;
		for (int d = 0; d < a->ndim && fit; d++)
			fit = d == skip || a->shape[d] == b->shape[d];
		if (fit)
			continue;
		if (skip < 0)
			return ln_fail(err, LN_ESHAPE, "tensor %d has shape %s, tensor 1 has %s; all "
			               "must have the same shape", i + 1,
			               ln_tensor_shape_str(b, bbuf, sizeof bbuf),
			               ln_tensor_shape_str(a, abuf, sizeof abuf));
		return ln_fail(err, LN_ESHAPE, "tensor %d has shape %s, tensor 1 has %s; all must "
		               "have the same sizes apart from dimension %d", i + 1,
		               ln_tensor_shape_str(b, bbuf, sizeof bbuf),
		               ln_tensor_shape_str(a, abuf, sizeof abuf), skip + 1);
	}
	return LN_OK;
}

/* out = ts joined along dim: each copied into its own narrowed part of
 * out.  Errors: LN_EARG, LN_ESHAPE, LN_ERANGE, LN_ENOMEM. */
ln_status ln_tensor_cat(ln_tensor *out, int n, const ln_tensor *const *ts, int dim,
                        ln_error *err)
{
	assert(ln_tensor_is_empty(out));
	if (n < 1)
		return ln_fail(err, LN_EARG, "expected at least one tensor, got %d", n);
	for (int i = 0; i < n; i++)
		assert(!ln_tensor_is_empty(ts[i]));
	ln_status st = ln_dim_resolve(dim, ts[0]->ndim, ts[0]->shape, &dim, err);
	if (st == LN_OK)
		st = check_fit(n, ts, dim, err);
	if (st != LN_OK)
		return st;
	int64_t shape[LN_MAX_DIMS];
	memcpy(shape, ts[0]->shape, sizeof shape);
	for (int i = 1; i < n; i++)
		if (__builtin_add_overflow(shape[dim], ts[i]->shape[dim], &shape[dim]))
			return ln_fail(err, LN_ERANGE, "the joined dimension %d is too long", dim + 1);
	if ((st = ln_tensor_alloc(out, ts[0]->ndim, shape, err)) != LN_OK)
		return st;
	int64_t start = 0;
	for (int i = 0; i < n; i++) {
		ln_tensor part = LN_TENSOR_EMPTY;
		st = ln_tensor_narrow(&part, out, dim, start, ts[i]->shape[dim], err);
		assert(st == LN_OK);
		st = ln_tensor_copy(&part, ts[i], err);  /* out is new: no aliasing, no failure */
		assert(st == LN_OK);
		ln_tensor_release(&part);
		start += ts[i]->shape[dim];
	}
	return LN_OK;
}

/* out = ts stacked along a new dimension dim.  Errors as ln_tensor_cat. */
ln_status ln_tensor_stack(ln_tensor *out, int n, const ln_tensor *const *ts, int dim,
                          ln_error *err)
{
	char buf[SHAPE_BUF];
	assert(ln_tensor_is_empty(out));
	if (n < 1)
		return ln_fail(err, LN_EARG, "expected at least one tensor, got %d", n);
	const ln_tensor *a = ts[0];
	assert(!ln_tensor_is_empty(a));
	if (a->ndim >= LN_MAX_DIMS)
		return ln_fail(err, LN_ERANGE, "cannot stack tensors of %d dimensions: tensors have "
		               "at most %d", a->ndim, LN_MAX_DIMS);
	if (dim < -(a->ndim + 1) || dim > a->ndim)
		return ln_fail(err, LN_ERANGE, "cannot insert a dimension at %d in %d-D tensor %s",
		               ln_dim_shown(dim), a->ndim, ln_tensor_shape_str(a, buf, sizeof buf));
	int d = dim < 0 ? dim + a->ndim + 1 : dim;
	ln_status st = check_fit(n, ts, -1, err);
	if (st != LN_OK)
		return st;
	int64_t shape[LN_MAX_DIMS];
	for (int k = 0, j = 0; k <= a->ndim; k++)
		shape[k] = k == d ? n : a->shape[j++];
	if ((st = ln_tensor_alloc(out, a->ndim + 1, shape, err)) != LN_OK)
		return st;
	for (int i = 0; i < n; i++) {
		ln_tensor part = LN_TENSOR_EMPTY;
		st = ln_tensor_select_dim(&part, out, d, i, err);
		assert(st == LN_OK);
		st = ln_tensor_copy(&part, ts[i], err);
		assert(st == LN_OK);
		ln_tensor_release(&part);
	}
	return LN_OK;
}
