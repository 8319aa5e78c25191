/*
 * tensor_view.c -- views: new shapes and strides over the same storage.
 *
 * Every function here makes the empty `out` share src's storage (one new
 * reference) and only changes offset, shape and strides; nothing is
 * copied, except by ln_tensor_reshape of a non-contiguous tensor.  On
 * failure out stays empty.  Dimensions may be negative (tensor.h).
 */
#include <assert.h>
#include <string.h>

#include "tensor_internal.h"

/* Resolves dim of src into *d, with the message of ln_dim_resolve. */
static ln_status resolve(const ln_tensor *src, int dim, int *d, ln_error *err)
{
	return ln_dim_resolve(dim, src->ndim, src->shape, d, err);
}

/* Clears the entries of t beyond its ndim (kept zero, as alloc does). */
static void clear_tail(ln_tensor *t)
{
	for (int d = t->ndim; d < LN_MAX_DIMS; d++) {
		t->shape[d] = 0;
		t->stride[d] = 0;
	}
}

/* out = src with dimension d (resolved) removed, out already a reference. */
static void drop_dim(ln_tensor *out, int d)
{
	for (int k = d; k < out->ndim - 1; k++) {
		out->shape[k] = out->shape[k + 1];
		out->stride[k] = out->stride[k + 1];
	}
	out->ndim--;
	clear_tail(out);
}

/* out = src[index] along dimension 0. */
ln_status ln_tensor_select(ln_tensor *out, const ln_tensor *src, int64_t index, ln_error *err)
{
	return ln_tensor_select_dim(out, src, 0, index, err);
}

/* out = src with dim fixed at index and removed.  Errors: LN_ESHAPE (src
 * is 1-D), LN_ERANGE (bad dim, index outside 0..size-1). */
ln_status ln_tensor_select_dim(ln_tensor *out, const ln_tensor *src, int dim, int64_t index,
                               ln_error *err)
{
	char buf[SHAPE_BUF];
	assert(ln_tensor_is_empty(out) && !ln_tensor_is_empty(src));
	if (src->ndim < 2)
		return ln_fail(err, LN_ESHAPE,
		               "cannot select a sub-tensor of 1-D tensor %s (index it for a number)",
		               ln_tensor_shape_str(src, buf, sizeof buf));
	int d;
	ln_status st = resolve(src, dim, &d, err);
	if (st != LN_OK)
		return st;
	if (index < 0 || index >= src->shape[d])
		return ln_fail(err, LN_ERANGE, "index %lld is outside 1..%lld (dimension %d of %s)",
		               (long long)ln_sat_add(index, 1), (long long)src->shape[d], d + 1,
		               ln_tensor_shape_str(src, buf, sizeof buf));
	ln_tensor_ref(out, src);
	out->offset = src->offset + (size_t)(index * src->stride[d]);
	drop_dim(out, d);
	return LN_OK;
}

/* out = src restricted to [start, start+len) along dim.  Errors: LN_ERANGE
 * (dim does not exist, len < 1, or the range leaves the dimension). */
ln_status ln_tensor_narrow(ln_tensor *out, const ln_tensor *src, int dim, int64_t start,
                           int64_t len, ln_error *err)
{
	assert(ln_tensor_is_empty(out) && !ln_tensor_is_empty(src));
	ln_status st = resolve(src, dim, &dim, err);
	if (st != LN_OK)
		return st;
	int64_t size = src->shape[dim];
	if (len < 1)
		return ln_fail(err, LN_ERANGE, "length must be >= 1, got %lld", (long long)len);
	if (start < 0 || start >= size || len > size - start)
		return ln_fail(err, LN_ERANGE, "dimension %d has size %lld, range %lld..%lld is outside it",
		               dim + 1, (long long)size, (long long)ln_sat_add(start, 1),
		               (long long)ln_sat_add(start, len));
	ln_tensor_ref(out, src);
	out->offset = src->offset + (size_t)(start * src->stride[dim]);
	out->shape[dim] = len;
	return LN_OK;
}

/*
 * out = src seen with `shape` (one entry may be -1, inferred).  A view
 * sharing src's storage when src is contiguous, else a new contiguous copy.
 * Errors: LN_ERANGE (bad ndim or entry, more than one -1), LN_ESHAPE (the
 * element counts differ), LN_ENOMEM.
 */
ln_status ln_tensor_reshape(ln_tensor *out, const ln_tensor *src, int ndim, const int64_t *shape,
                            ln_error *err)
{
	char sbuf[SHAPE_BUF], tbuf[SHAPE_BUF];
	assert(ln_tensor_is_empty(out) && !ln_tensor_is_empty(src));
	if (ndim < 1 || ndim > LN_MAX_DIMS)
		return ln_fail(err, LN_ERANGE, "expected 1 to %d dimensions, got %d", LN_MAX_DIMS, ndim);
	int64_t numel = ln_tensor_numel(src);
	int64_t known = 1;  /* product of the given sizes (not the -1) */
	bool overflow = false;
	int infer = -1;
	for (int d = 0; d < ndim; d++) {
		if (shape[d] == -1) {
			if (infer >= 0)
				return ln_fail(err, LN_ERANGE, "only one size may be -1, got %s",
				               ln_shape_str(tbuf, sizeof tbuf, ndim, shape));
			infer = d;
			continue;
		}
		if (shape[d] < 1)
			return ln_fail(err, LN_ERANGE,
			               "size of dimension %d is %lld in %s; sizes must be >= 1 (or -1)",
			               d + 1, (long long)shape[d],
			               ln_shape_str(tbuf, sizeof tbuf, ndim, shape));
		if (__builtin_mul_overflow(known, shape[d], &known))
			overflow = true;
	}
	int64_t want[LN_MAX_DIMS];
	memcpy(want, shape, (size_t)ndim * sizeof *want);
	if (overflow)
		return ln_fail(err, LN_ESHAPE, "cannot view %s (%lld elements) as %s (too many elements)",
		               ln_tensor_shape_str(src, sbuf, sizeof sbuf), (long long)numel,
		               ln_shape_str(tbuf, sizeof tbuf, ndim, shape));
	if (infer >= 0) {
		if (known > numel || numel % known != 0)
			return ln_fail(err, LN_ESHAPE, "cannot view %s (%lld elements) as %s",
			               ln_tensor_shape_str(src, sbuf, sizeof sbuf), (long long)numel,
			               ln_shape_str(tbuf, sizeof tbuf, ndim, shape));
		want[infer] = numel / known;
	} else if (known != numel) {
		ln_shape_str(tbuf, sizeof tbuf, ndim, shape);
		return ln_fail(err, LN_ESHAPE, "cannot view %s (%lld elements) as %s (%lld elements)",
		               ln_tensor_shape_str(src, sbuf, sizeof sbuf), (long long)numel, tbuf,
		               (long long)known);
	}
	if (ln_tensor_is_contiguous(src)) {
		ln_tensor_ref(out, src);
		ln_tensor_set_contiguous(out, ndim, want);
		return LN_OK;
	}
	ln_status st = ln_tensor_alloc(out, ndim, want, err);
	if (st != LN_OK)
		return st;
	st = ln_tensor_copy_flat(out, src, err);
	assert(st == LN_OK);  /* counts match by construction */
	return st;
}


/* out = src with a size-1 dimension inserted at dim (0..ndim, negative
 * counted from ndim+1).  Its stride is what a contiguous tensor would
 * have there, so that a contiguous src stays contiguous.  Errors:
 * LN_ERANGE. */
ln_status ln_tensor_unsqueeze(ln_tensor *out, const ln_tensor *src, int dim, ln_error *err)
{
	char buf[SHAPE_BUF];
	assert(ln_tensor_is_empty(out) && !ln_tensor_is_empty(src));
	if (src->ndim >= LN_MAX_DIMS)
		return ln_fail(err, LN_ERANGE, "cannot add a dimension to %s: tensors have at most %d",
		               ln_tensor_shape_str(src, buf, sizeof buf), LN_MAX_DIMS);
	int d;
	if (dim < -(src->ndim + 1) || dim > src->ndim)
		return ln_fail(err, LN_ERANGE,
		               "cannot insert a dimension at %d in %d-D tensor %s (positions %d..%d or "
		               "%d..-1)", ln_dim_shown(dim), src->ndim,
		               ln_tensor_shape_str(src, buf, sizeof buf), 1, src->ndim + 1,
		               -(src->ndim + 1));
	d = dim < 0 ? dim + src->ndim + 1 : dim;
	ln_tensor_ref(out, src);
	for (int k = out->ndim; k > d; k--) {
		out->shape[k] = out->shape[k - 1];
		out->stride[k] = out->stride[k - 1];
	}
	out->shape[d] = 1;
	out->stride[d] = d == src->ndim ? 1 : src->shape[d] * src->stride[d];
	out->ndim++;
	return LN_OK;
}

/* out = src without dim if its size is 1, else the same view.  Errors:
 * LN_ERANGE. */
ln_status ln_tensor_squeeze(ln_tensor *out, const ln_tensor *src, int dim, ln_error *err)
{
	assert(ln_tensor_is_empty(out) && !ln_tensor_is_empty(src));
	int d;
	ln_status st = resolve(src, dim, &d, err);
	if (st != LN_OK)
		return st;
	ln_tensor_ref(out, src);
	if (src->shape[d] == 1 && src->ndim > 1)
		drop_dim(out, d);
	return LN_OK;
}

/* out = src without its size-1 dimensions (one kept if all are). */
void ln_tensor_squeeze_all(ln_tensor *out, const ln_tensor *src)
{
	assert(ln_tensor_is_empty(out) && !ln_tensor_is_empty(src));
	ln_tensor_ref(out, src);
	for (int d = out->ndim - 1; d >= 0 && out->ndim > 1; d--)
		if (out->shape[d] == 1)
			drop_dim(out, d);
}

/* out's dimension d = src's dimension perm[d].  Errors: LN_ERANGE. */
ln_status ln_tensor_permute(ln_tensor *out, const ln_tensor *src, const int *perm, ln_error *err)
{
	assert(ln_tensor_is_empty(out) && !ln_tensor_is_empty(src));
	int n = src->ndim, from[LN_MAX_DIMS];
	bool seen[LN_MAX_DIMS] = { false };
	for (int d = 0; d < n; d++) {
		ln_status st = resolve(src, perm[d], &from[d], err);
		if (st != LN_OK)
			return st;
		if (seen[from[d]])
			return ln_fail(err, LN_ERANGE, "dimension %d appears twice in the permutation",
			               from[d] + 1);
		seen[from[d]] = true;
	}
	ln_tensor_ref(out, src);
	for (int d = 0; d < n; d++) {
		out->shape[d] = src->shape[from[d]];
		out->stride[d] = src->stride[from[d]];
	}
	return LN_OK;
}

/* out = src with d1 and d2 swapped.  Errors: LN_ERANGE. */
ln_status ln_tensor_transpose_dims(ln_tensor *out, const ln_tensor *src, int d1, int d2,
                                   ln_error *err)
{
	assert(ln_tensor_is_empty(out) && !ln_tensor_is_empty(src));
	ln_status st = resolve(src, d1, &d1, err);
	if (st == LN_OK)
		st = resolve(src, d2, &d2, err);
	if (st != LN_OK)
		return st;
	ln_tensor_ref(out, src);
	out->shape[d1] = src->shape[d2];
	out->stride[d1] = src->stride[d2];
	out->shape[d2] = src->shape[d1];
	out->stride[d2] = src->stride[d1];
	return LN_OK;
}

/*
 * out = src broadcast to `shape`: src's dimensions aligned with the last
 * ones of shape, each kept (-1 or its own size) or stretched from 1 with
 * stride 0; new leading dimensions get stride 0.  The result's element
 * count obeys the same limit as an allocation (ln_shape_check), so that
 * a later copy of it fails cleanly instead of overflowing.
 * Errors: LN_ERANGE, LN_ESHAPE.
 */
ln_status ln_tensor_expand(ln_tensor *out, const ln_tensor *src, int ndim, const int64_t *shape,
                           ln_error *err)
{
	char sbuf[SHAPE_BUF], tbuf[SHAPE_BUF];
	assert(ln_tensor_is_empty(out) && !ln_tensor_is_empty(src));
	if (ndim < src->ndim || ndim > LN_MAX_DIMS)
		return ln_fail(err, LN_ERANGE, "cannot expand %s to %d dimensions (expected %d to %d)",
		               ln_tensor_shape_str(src, sbuf, sizeof sbuf), ndim, src->ndim,
		               LN_MAX_DIMS);
	int lead = ndim - src->ndim;
	int64_t want[LN_MAX_DIMS], stride[LN_MAX_DIMS];
	for (int d = 0; d < ndim; d++) {
		int sd = d - lead;
		int64_t size = shape[d];
		if (size == -1 && sd < 0)
			return ln_fail(err, LN_ERANGE, "size -1 for the new dimension %d in %s: a new "
			               "dimension needs its size", d + 1,
			               ln_shape_str(tbuf, sizeof tbuf, ndim, shape));
		if (size == -1)
			size = src->shape[sd];
		if (size < 1)
			return ln_fail(err, LN_ERANGE, "size %lld for dimension %d in %s; sizes must be "
			               ">= 1 (or -1 to keep one)", (long long)size, d + 1,
			               ln_shape_str(tbuf, sizeof tbuf, ndim, shape));
		if (sd >= 0 && src->shape[sd] != 1 && src->shape[sd] != size)
			return ln_fail(err, LN_ESHAPE, "cannot expand %s to %s: dimension %d has size "
			               "%lld, only a size of 1 can stretch",
			               ln_tensor_shape_str(src, sbuf, sizeof sbuf),
			               ln_shape_str(tbuf, sizeof tbuf, ndim, shape), d + 1,
			               (long long)src->shape[sd]);
		want[d] = size;
		stride[d] = sd < 0 || src->shape[sd] != size ? 0 : src->stride[sd];
	}
	int64_t numel;
	ln_status st = ln_shape_check(ndim, want, &numel, err);
	if (st != LN_OK)
		return st;
	ln_tensor_ref(out, src);
	out->ndim = ndim;
	memcpy(out->shape, want, (size_t)ndim * sizeof *want);
	memcpy(out->stride, stride, (size_t)ndim * sizeof *stride);
	clear_tail(out);
	return LN_OK;
}
