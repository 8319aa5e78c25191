/*
 * tensor.c -- float32 tensors over reference-counted storage: creation,
 * queries, copies and fills, reductions and matrix products.
 *
 * A tensor is shape + strides + offset over an ln_storage.  Views share
 * the storage; the last ln_tensor_release frees it.  Every operation
 * accepts strided (non-contiguous) inputs through the iterator of iter.h,
 * which walks contiguous tensors as one flat row.  The other parts of
 * tensor.h live beside this file by theme: views (tensor_view.c),
 * elementwise arithmetic (tensor_math.c), sorting and indexing
 * (tensor_index.c), random fills and sampling (tensor_random.c).
 *
 * Messages put into ln_error name the values involved and count
 * dimensions and indices from 1, as the Lua user sees them; the binding
 * prefixes the name of the function that was called.
 */
#include <assert.h>
#include <math.h>
#include <string.h>

#include "alloc.h"
#include "gemm.h"
#include "tensor_internal.h"

/* Walk of one tensor over its own shape. */
static void iter_one(ln_iter *it, const ln_tensor *t)
{
	ln_iter_tensors(it, t->ndim, t->shape, 1, &t);
}

/* ======================================================================
 * Creation, references
 * ====================================================================== */

/* Row-major strides for shape. */
void ln_tensor_set_contiguous(ln_tensor *t, int ndim, const int64_t *shape)
{
	int64_t s = 1;
	t->ndim = ndim;
	for (int d = ndim - 1; d >= 0; d--) {
		t->shape[d] = shape[d];
		t->stride[d] = s;
		s *= shape[d];
	}
	for (int d = ndim; d < LN_MAX_DIMS; d++) {
		t->shape[d] = 0;
		t->stride[d] = 0;
	}
}

/* Largest number of elements a tensor may have: its bytes must fit in
 * size_t and its count in int64_t. */
static int64_t max_numel(void)
{
	uint64_t by_bytes = SIZE_MAX / sizeof(float);
	return by_bytes < (uint64_t)INT64_MAX ? (int64_t)by_bytes : INT64_MAX;
}

/* Checks ndim and every dimension and computes numel.  Errors: LN_ERANGE. */
ln_status ln_shape_check(int ndim, const int64_t *shape, int64_t *numel, ln_error *err)
{
	char buf[SHAPE_BUF];
	if (ndim < 1 || ndim > LN_MAX_DIMS)
		return ln_fail(err, LN_ERANGE, "expected 1 to %d dimensions, got %d", LN_MAX_DIMS, ndim);
	int64_t n = 1;
	for (int d = 0; d < ndim; d++) {
		if (shape[d] < 1)
			return ln_fail(err, LN_ERANGE, "size of dimension %d is %lld in %s; sizes must be >= 1",
			               d + 1, (long long)shape[d], ln_shape_str(buf, sizeof buf, ndim, shape));
		if (n > max_numel() / shape[d])
			return ln_fail(err, LN_ERANGE, "shape %s has too many elements",
			               ln_shape_str(buf, sizeof buf, ndim, shape));
		n *= shape[d];
	}
	*numel = n;
	return LN_OK;
}

/* New storage of n zeroed floats with refcount 1, or NULL. */
static ln_storage *storage_new(int64_t n)
{
	ln_storage *s = ln_malloc(sizeof *s);
	if (!s)
		return NULL;
	s->data = ln_calloc((size_t)n, sizeof(float));
	if (!s->data) {
		ln_free(s);
		return NULL;
	}
	s->capacity = (size_t)n;
	s->refcount = 1;
	s->zero_pending = false;
	return s;
}

static ln_status fail_nomem(ln_error *err, int ndim, const int64_t *shape, int64_t numel)
{
	char buf[SHAPE_BUF];
	return ln_fail(err, LN_ENOMEM, "out of memory allocating a tensor of shape %s (%llu bytes)",
	               ln_shape_str(buf, sizeof buf, ndim, shape),
	               (unsigned long long)numel * sizeof(float));
}

/* New zeroed contiguous tensor in the empty `out`.  Errors: LN_ERANGE,
 * LN_ENOMEM; out stays empty on failure. */
ln_status ln_tensor_alloc(ln_tensor *out, int ndim, const int64_t *shape, ln_error *err)
{
	assert(ln_tensor_is_empty(out));
	int64_t n;
	ln_status st = ln_shape_check(ndim, shape, &n, err);
	if (st != LN_OK)
		return st;
	ln_storage *s = storage_new(n);
	if (!s)
		return fail_nomem(err, ndim, shape, n);
	*out = LN_TENSOR_EMPTY;
	out->storage = s;
	out->offset = 0;
	ln_tensor_set_contiguous(out, ndim, shape);
	return LN_OK;
}

/*
 * Reshapes t in place to a contiguous `shape` at offset 0.  When t's storage
 * holds enough floats it is reused as is (views of it keep sharing it and
 * see whatever is written next); otherwise new zeroed storage is allocated
 * and the old reference dropped.  On failure t is left unchanged.
 * Errors: LN_ERANGE, LN_ENOMEM.
 */
ln_status ln_tensor_ensure(ln_tensor *t, int ndim, const int64_t *shape, ln_error *err)
{
	int64_t n;
	ln_status st = ln_shape_check(ndim, shape, &n, err);
	if (st != LN_OK)
		return st;
	if (t->storage && t->storage->capacity >= (size_t)n) {
		t->offset = 0;
		ln_tensor_set_contiguous(t, ndim, shape);
		return LN_OK;
	}
	ln_storage *s = storage_new(n);
	if (!s)
		return fail_nomem(err, ndim, shape, n);
	ln_tensor_release(t);
	t->storage = s;
	t->offset = 0;
	ln_tensor_set_contiguous(t, ndim, shape);
	return LN_OK;
}

void ln_tensor_ref(ln_tensor *out, const ln_tensor *src)
{
	assert(!ln_tensor_is_empty(src));
	*out = *src;
	out->storage->refcount++;
}

/* Drops t's reference (freeing the storage with its last one) and makes t
 * empty.  Safe on an empty tensor. */
void ln_tensor_release(ln_tensor *t)
{
	ln_storage *s = t->storage;
	if (s) {
		assert(s->refcount > 0);
		if (--s->refcount == 0) {
			ln_free(s->data);
			ln_free(s);
		}
	}
	*t = LN_TENSOR_EMPTY;
}

/* ======================================================================
 * Queries
 * ====================================================================== */

int64_t ln_tensor_numel(const ln_tensor *t)
{
	if (ln_tensor_is_empty(t))
		return 0;
	int64_t n = 1;
	for (int d = 0; d < t->ndim; d++)
		n *= t->shape[d];
	return n;
}

/* Row-major contiguous; the stride of a dimension of size 1 does not
 * matter. */
bool ln_tensor_is_contiguous(const ln_tensor *t)
{
	int64_t s = 1;
	for (int d = t->ndim - 1; d >= 0; d--) {
		if (t->shape[d] != 1 && t->stride[d] != s)
			return false;
		s *= t->shape[d];
	}
	return true;
}

bool ln_tensor_same_shape(const ln_tensor *a, const ln_tensor *b)
{
	if (a->ndim != b->ndim)
		return false;
	for (int d = 0; d < a->ndim; d++)
		if (a->shape[d] != b->shape[d])
			return false;
	return true;
}

char *ln_tensor_shape_str(const ln_tensor *t, char *buf, size_t bufsize)
{
	return ln_shape_str(buf, bufsize, t->ndim, t->shape);
}

size_t ln_tensor_index_offset(const ln_tensor *t, const int64_t *idx)
{
	int64_t off = 0;
	for (int d = 0; d < t->ndim; d++) {
		assert(idx[d] >= 0 && idx[d] < t->shape[d]);
		off += idx[d] * t->stride[d];
	}
	return (size_t)off;
}


bool ln_tensor_has_aliases(const ln_tensor *t)
{
	for (int d = 0; d < t->ndim; d++)
		if (t->shape[d] > 1 && t->stride[d] == 0)
			return true;
	return false;
}

ln_status ln_fail_aliases(const ln_tensor *t, ln_error *err)
{
	char buf[SHAPE_BUF];
	return ln_fail(err, LN_EARG,
	               "cannot write into %s: several of its elements share one memory location "
	               "(an expanded view); clone it first", ln_tensor_shape_str(t, buf, sizeof buf));
}

ln_status ln_dim_resolve(int dim, int ndim, const int64_t *shape, int *out, ln_error *err)
{
	char buf[SHAPE_BUF];
	if (dim < -ndim || dim >= ndim) {
		if (shape == NULL)
			return ln_fail(err, LN_ERANGE, "dimension %d does not exist in a %d-D tensor",
			               ln_dim_shown(dim), ndim);
		return ln_fail(err, LN_ERANGE, "dimension %d does not exist in %d-D tensor %s",
		               ln_dim_shown(dim), ndim, ln_shape_str(buf, sizeof buf, ndim, shape));
	}
	*out = dim < 0 ? dim + ndim : dim;
	return LN_OK;
}

/* ======================================================================
 * Copies, fills
 * ====================================================================== */

ln_status ln_tensor_clone(ln_tensor *out, const ln_tensor *src, ln_error *err)
{
	assert(ln_tensor_is_empty(out) && !ln_tensor_is_empty(src));
	ln_status st = ln_tensor_alloc(out, src->ndim, src->shape, err);
	if (st != LN_OK)
		return st;
	return ln_tensor_copy(out, src, err);
}

/* True when a and b are the same view: same storage, offset, shape and
 * strides (strides of size-1 dimensions ignored). */
static bool same_view(const ln_tensor *a, const ln_tensor *b)
{
	if (a->storage != b->storage || a->offset != b->offset || !ln_tensor_same_shape(a, b))
		return false;
	for (int d = 0; d < a->ndim; d++)
		if (a->shape[d] > 1 && a->stride[d] != b->stride[d])
			return false;
	return true;
}

/* dst = src broadcast to dst's shape; checked by the caller, no overlap. */
static void copy_broadcast(ln_tensor *dst, const ln_tensor *src)
{
	float *d = ln_tensor_data(dst);
	const float *s = ln_tensor_data(src);
	ln_iter it;
	ln_iter_tensors(&it, dst->ndim, dst->shape, 2, (const ln_tensor *[]){ dst, src });
	do {
		float *o = d + it.off[0];
		const float *x = s + it.off[1];
		if (it.inc[0] == 1 && it.inc[1] == 1) {
			memcpy(o, x, (size_t)it.len * sizeof(float));
		} else {
			for (int64_t j = 0; j < it.len; j++)
				o[j * it.inc[0]] = x[j * it.inc[1]];
		}
	} while (ln_iter_next(&it));
}

/* dst = src broadcast to dst's shape.  A src sharing dst's storage (and
 * not the very same view, where there is nothing to do) is copied out to
 * a temporary first: without it, a transposed view copied into its own
 * tensor would read elements already overwritten.  Errors: LN_ESHAPE,
 * LN_EARG (dst has aliased positions), LN_ENOMEM. */
ln_status ln_tensor_copy(ln_tensor *dst, const ln_tensor *src, ln_error *err)
{
	char dbuf[SHAPE_BUF], sbuf[SHAPE_BUF];
	assert(!ln_tensor_is_empty(dst) && !ln_tensor_is_empty(src));
	if (!ln_tensor_broadcasts_to(src, dst->ndim, dst->shape))
		return ln_fail(err, LN_ESHAPE,
		               "cannot copy %s into %s: the source must have the destination's shape "
		               "or broadcast to it", ln_tensor_shape_str(src, sbuf, sizeof sbuf),
		               ln_tensor_shape_str(dst, dbuf, sizeof dbuf));
	if (ln_tensor_has_aliases(dst))
		return ln_fail_aliases(dst, err);
	if (same_view(dst, src))
		return LN_OK;
	if (src->storage == dst->storage) {
		ln_tensor tmp = LN_TENSOR_EMPTY;
		ln_status st = ln_tensor_alloc(&tmp, src->ndim, src->shape, err);
		if (st != LN_OK)
			return st;
		copy_broadcast(&tmp, src);
		copy_broadcast(dst, &tmp);
		ln_tensor_release(&tmp);
		return LN_OK;
	}
	copy_broadcast(dst, src);
	return LN_OK;
}

/* Walks one tensor element by element (for copies between different shapes). */
typedef struct elem_iter {
	ln_iter rows;
	int64_t j;
} elem_iter;

static void elem_iter_init(elem_iter *e, const ln_tensor *t)
{
	iter_one(&e->rows, t);
	e->j = 0;
}

/* Offset of the current element; then advances. */
static int64_t elem_iter_take(elem_iter *e)
{
	int64_t off = e->rows.off[0] + e->j * e->rows.inc[0];
	if (++e->j == e->rows.len) {
		e->j = 0;
		ln_iter_next(&e->rows);
	}
	return off;
}

/* dst = src element by element in row-major order, whatever the two
 * shapes.  Errors: LN_ESHAPE (numel differs). */
ln_status ln_tensor_copy_flat(ln_tensor *dst, const ln_tensor *src, ln_error *err)
{
	char dbuf[SHAPE_BUF], sbuf[SHAPE_BUF];
	assert(!ln_tensor_is_empty(dst) && !ln_tensor_is_empty(src));
	int64_t n = ln_tensor_numel(src);
	if (ln_tensor_numel(dst) != n)
		return ln_fail(err, LN_ESHAPE, "cannot copy %s (%lld elements) into %s (%lld elements)",
		               ln_tensor_shape_str(src, sbuf, sizeof sbuf), (long long)n,
		               ln_tensor_shape_str(dst, dbuf, sizeof dbuf),
		               (long long)ln_tensor_numel(dst));
	if (ln_tensor_same_shape(dst, src)) {
		copy_broadcast(dst, src);
		return LN_OK;
	}
	float *d = ln_tensor_data(dst);
	const float *s = ln_tensor_data(src);
	elem_iter ed, es;
	elem_iter_init(&ed, dst);
	elem_iter_init(&es, src);
	for (int64_t i = 0; i < n; i++) {
		int64_t od = elem_iter_take(&ed);
		d[od] = s[elem_iter_take(&es)];
	}
	return LN_OK;
}

void ln_storage_settle(ln_storage *s)
{
	s->zero_pending = false;
	memset(s->data, 0, s->capacity * sizeof(float));
}

/* True when t is a contiguous view of all of its storage. */
static bool covers_storage(const ln_tensor *t)
{
	return t->offset == 0 && (size_t)ln_tensor_numel(t) == t->storage->capacity &&
	       ln_tensor_is_contiguous(t);
}

void ln_tensor_zero(ln_tensor *t)
{
	assert(!ln_tensor_is_empty(t));
	if (covers_storage(t))
		t->storage->zero_pending = true;
	else
		ln_tensor_fill(t, 0.0f);
}

bool ln_tensor_take_zero(ln_tensor *t)
{
	if (!t->storage->zero_pending || !covers_storage(t))
		return false;
	t->storage->zero_pending = false;
	return true;
}

void ln_tensor_fill(ln_tensor *t, float value)
{
	assert(!ln_tensor_is_empty(t));
	float *d = ln_tensor_data(t);
	if (ln_tensor_is_contiguous(t)) {
		int64_t n = ln_tensor_numel(t);
		for (int64_t i = 0; i < n; i++)
			d[i] = value;
		return;
	}
	ln_iter it;
	iter_one(&it, t);
	do {
		for (int64_t j = 0; j < it.len; j++)
			d[it.off[0] + j * it.inc[0]] = value;
	} while (ln_iter_next(&it));
}

void ln_tensor_foreach(ln_tensor *t, void (*fn)(float *v, void *ctx), void *ctx)
{
	assert(!ln_tensor_is_empty(t));
	float *d = ln_tensor_data(t);
	ln_iter it;
	iter_one(&it, t);
	do {
		for (int64_t j = 0; j < it.len; j++)
			fn(&d[it.off[0] + j * it.inc[0]], ctx);
	} while (ln_iter_next(&it));
}

/* ======================================================================
 * Reductions: double accumulators, row-major order
 * ====================================================================== */

double ln_tensor_sum(const ln_tensor *t)
{
	assert(!ln_tensor_is_empty(t));
	const float *x = ln_tensor_data(t);
	double s = 0.0;
	ln_iter it;
	iter_one(&it, t);
	do {
		for (int64_t j = 0; j < it.len; j++)
			s += x[it.off[0] + j * it.inc[0]];
	} while (ln_iter_next(&it));
	return s;
}

double ln_tensor_mean(const ln_tensor *t)
{
	return ln_tensor_sum(t) / (double)ln_tensor_numel(t);
}

/* Largest (want_max) or smallest element; NaN as soon as one is NaN. */
static float extreme(const ln_tensor *t, bool want_max)
{
	assert(!ln_tensor_is_empty(t));
	const float *x = ln_tensor_data(t);
	float best = x[0];
	ln_iter it;
	iter_one(&it, t);
	do {
		for (int64_t j = 0; j < it.len; j++) {
			float v = x[it.off[0] + j * it.inc[0]];
			if (isnan(v))
				return v;
			if (want_max ? v > best : v < best)
				best = v;
		}
	} while (ln_iter_next(&it));
	return best;
}

float ln_tensor_max(const ln_tensor *t)
{
	return extreme(t, true);
}

float ln_tensor_min(const ln_tensor *t)
{
	return extreme(t, false);
}

/*
 * out = reduction of t along dim, keeping that dim with size 1:
 *     out[..., 0, ...] = op_{k} t[..., k, ...]
 * max/min give NaN for a slice holding NaN; argmax/argmin give the 1-based
 * index of the first extreme, a NaN counting as the extreme.
 * Errors: LN_ERANGE (dim does not exist; an arg reduction along a dim
 * longer than LN_MAX_FLOAT_INDEX), LN_ENOMEM.
 */
ln_status ln_tensor_reduce_dim(ln_tensor *out, ln_reduce op, const ln_tensor *t, int dim,
                               ln_error *err)
{
	char buf[SHAPE_BUF];
	assert(ln_tensor_is_empty(out) && !ln_tensor_is_empty(t));
	ln_status st = ln_dim_resolve(dim, t->ndim, t->shape, &dim, err);
	if (st != LN_OK)
		return st;
	bool arg = op == LN_RARGMAX || op == LN_RARGMIN;
	if (arg && t->shape[dim] > LN_MAX_FLOAT_INDEX)
		return ln_fail(err, LN_ERANGE, "dimension %d of %s is longer than %lld: its indices "
		               "would not be exact in float32", dim + 1,
		               ln_tensor_shape_str(t, buf, sizeof buf), (long long)LN_MAX_FLOAT_INDEX);
	int64_t shape[LN_MAX_DIMS];
	memcpy(shape, t->shape, sizeof shape);
	shape[dim] = 1;
	st = ln_tensor_alloc(out, t->ndim, shape, err);
	if (st != LN_OK)
		return st;

	/* walk out's positions; t's offset follows with dim pinned at 0 */
	float *o = ln_tensor_data(out);
	const float *x = ln_tensor_data(t);
	int64_t size = t->shape[dim], step = t->stride[dim];
	ln_iter it;
	ln_iter_slices(&it, 2, (const ln_tensor *[]){ out, t }, dim);
	do {
		for (int64_t j = 0; j < it.len; j++) {
			const float *p = x + it.off[1] + j * it.inc[1];
			double acc;
			switch (op) {
			case LN_RSUM:
			case LN_RMEAN:
				acc = 0.0;
				for (int64_t k = 0; k < size; k++)
					acc += p[k * step];
				if (op == LN_RMEAN)
					acc /= (double)size;
				break;
			case LN_RMAX:
			case LN_RMIN:
				acc = p[0];
				for (int64_t k = 0; k < size; k++) {
					float v = p[k * step];
					if (isnan(v)) {
						acc = v;
						break;
					}
					if (op == LN_RMAX ? v > acc : v < acc)
						acc = v;
				}
				break;
			case LN_RARGMAX:
			case LN_RARGMIN: {
				float best = p[0];
				int64_t at = 0;
				for (int64_t k = 1; k < size && !isnan(best); k++) {
					float v = p[k * step];
					if (isnan(v) || (op == LN_RARGMAX ? v > best : v < best)) {
						best = v;
						at = k;
					}
				}
				acc = (double)(at + 1);
				break;
			}
			default:
				acc = 0.0;
				assert(!"unknown ln_reduce");
			}
			o[it.off[0] + j * it.inc[0]] = (float)acc;
		}
	} while (ln_iter_next(&it));
	return LN_OK;
}

/* ======================================================================
 * Linear algebra
 * ====================================================================== */

/*
 * Describes the matrix made of the last two dimensions of t (rows, cols)
 * as a gemm operand without copying: row-major with leading dimension ld
 * (trans false), or column-major, i.e. the transpose of a row-major
 * (cols, rows) matrix (trans true).  False when the layout is neither.
 */
static bool as_gemm_operand(const ln_tensor *t, bool *trans, int64_t *ld)
{
	int nd = t->ndim;
	int64_t rows = t->shape[nd - 2], cols = t->shape[nd - 1];
	int64_t rs = t->stride[nd - 2], cs = t->stride[nd - 1];
	if ((cs == 1 || cols == 1) && (rows == 1 || rs >= cols)) {
		*trans = false;
		*ld = rows == 1 ? cols : rs;
		return *ld <= INT32_MAX;
	}
	if ((rs == 1 || rows == 1) && (cols == 1 || cs >= rows)) {
		*trans = true;
		*ld = cols == 1 ? rows : cs;
		return *ld <= INT32_MAX;
	}
	return false;
}

/* *t as a gemm operand: itself, or a contiguous copy made into *copy
 * (which the caller releases) when its layout will not do. */
static ln_status gemm_operand(const ln_tensor **t, ln_tensor *copy, bool *trans, int64_t *ld,
                              ln_error *err)
{
	if (as_gemm_operand(*t, trans, ld))
		return LN_OK;
	ln_status st = ln_tensor_clone(copy, *t, err);
	if (st != LN_OK)
		return st;
	*t = copy;
	bool ok = as_gemm_operand(*t, trans, ld);  /* a contiguous copy always is one */
	assert(ok);
	(void)ok;
	return LN_OK;
}

/* The leading (batch) part of t: its first ndim-2 dimensions.  ndim 0
 * when t is a matrix. */
static ln_tensor batch_part(const ln_tensor *t)
{
	ln_tensor b = *t;
	b.ndim = t->ndim - 2;
	return b;
}

/*
 * out = a x b over the last two dimensions, batch dimensions broadcast
 * (tensor.h).  One ln_gemm per batch entry, walked with the iterator over
 * the batch shape (offsets of out's, a's and b's matrices); one ln_gemm
 * in all when there is no batch, or when b is a single matrix and a is
 * contiguous (its batch entries stacked are one taller matrix).
 * Errors: LN_ESHAPE, LN_ERANGE, LN_ENOMEM.
 */
ln_status ln_tensor_matmul(ln_tensor *out, const ln_tensor *a, const ln_tensor *b, ln_error *err)
{
	char abuf[SHAPE_BUF], bbuf[SHAPE_BUF];
	assert(ln_tensor_is_empty(out) && !ln_tensor_is_empty(a) && !ln_tensor_is_empty(b));
	if (a->ndim < 2 || b->ndim < 2)
		return ln_fail(err, LN_ESHAPE, "expected tensors of at least 2 dimensions, got %s x %s",
		               ln_tensor_shape_str(a, abuf, sizeof abuf),
		               ln_tensor_shape_str(b, bbuf, sizeof bbuf));
	int64_t m = a->shape[a->ndim - 2], k = a->shape[a->ndim - 1], n = b->shape[b->ndim - 1];
	if (b->shape[b->ndim - 2] != k)
		return ln_fail(err, LN_ESHAPE, "inner dimensions differ: %s x %s",
		               ln_tensor_shape_str(a, abuf, sizeof abuf),
		               ln_tensor_shape_str(b, bbuf, sizeof bbuf));
	if (m > INT32_MAX || k > INT32_MAX || n > INT32_MAX)
		return ln_fail(err, LN_ERANGE, "matrices %s x %s are too large for the matrix library",
		               ln_tensor_shape_str(a, abuf, sizeof abuf),
		               ln_tensor_shape_str(b, bbuf, sizeof bbuf));

	/* the batch shape: a's, b's, or the two broadcast */
	ln_tensor ab = batch_part(a), bb = batch_part(b);
	int nb = 0;
	int64_t shape[LN_MAX_DIMS];
	if (ab.ndim > 0 && bb.ndim > 0) {
		if (ln_broadcast_shape(&nb, shape, ab.ndim, ab.shape, bb.ndim, bb.shape, NULL) != LN_OK)
			return ln_fail(err, LN_ESHAPE, "batch dimensions of %s and %s do not broadcast",
			               ln_tensor_shape_str(a, abuf, sizeof abuf),
			               ln_tensor_shape_str(b, bbuf, sizeof bbuf));
	} else if (ab.ndim > 0 || bb.ndim > 0) {
		const ln_tensor *only = ab.ndim > 0 ? &ab : &bb;
		nb = only->ndim;
		memcpy(shape, only->shape, (size_t)nb * sizeof *shape);
	}
	shape[nb] = m;
	shape[nb + 1] = n;

	ln_tensor ac = LN_TENSOR_EMPTY, bc = LN_TENSOR_EMPTY;
	const ln_tensor *pa = a, *pb = b;
	bool ta = false, tb = false;
	int64_t lda = k, ldb = n;
	ln_status st;
	if ((st = gemm_operand(&pa, &ac, &ta, &lda, err)) != LN_OK)
		goto done;
	if ((st = gemm_operand(&pb, &bc, &tb, &ldb, err)) != LN_OK)
		goto done;
	if ((st = ln_tensor_alloc(out, nb + 2, shape, err)) != LN_OK)
		goto done;
	const float *xa = ln_tensor_data(pa), *xb = ln_tensor_data(pb);
	float *xo = ln_tensor_data(out);
	if (nb == 0) {
		ln_gemm(ta, tb, m, n, k, 1.0f, xa, lda, xb, ldb, 0.0f, xo, n);
		goto done;
	}
	if (pb->ndim == 2 && ln_tensor_is_contiguous(pa)) {
		int64_t rows = ln_tensor_numel(pa) / k;  /* every batch entry's rows, stacked */
		if (rows <= INT32_MAX) {
			ln_gemm(false, tb, rows, n, k, 1.0f, xa, k, xb, ldb, 0.0f, xo, n);
			goto done;
		}
	}
	ln_tensor ob = batch_part(out), pab = batch_part(pa), pbb = batch_part(pb);
	int64_t so[LN_MAX_DIMS], sa[LN_MAX_DIMS] = { 0 }, sb[LN_MAX_DIMS] = { 0 };
	memcpy(so, ob.stride, (size_t)nb * sizeof *so);
	if (pab.ndim > 0)
		ln_broadcast_strides(sa, &pab, nb, shape);
	if (pbb.ndim > 0)
		ln_broadcast_strides(sb, &pbb, nb, shape);
	ln_iter it;
	ln_iter_init(&it, nb, shape, 3, (const int64_t *[]){ so, sa, sb });
	do {
		for (int64_t j = 0; j < it.len; j++)
			ln_gemm(ta, tb, m, n, k, 1.0f, xa + it.off[1] + j * it.inc[1], lda,
			        xb + it.off[2] + j * it.inc[2], ldb, 0.0f, xo + it.off[0] + j * it.inc[0], n);
	} while (ln_iter_next(&it));
done:
	if (st != LN_OK)
		ln_tensor_release(out);
	ln_tensor_release(&ac);
	ln_tensor_release(&bc);
	return st;
}

/* out (n,m) = a (m,n) transposed, contiguous.  Errors: LN_ESHAPE, LN_ENOMEM. */
ln_status ln_tensor_transpose(ln_tensor *out, const ln_tensor *a, ln_error *err)
{
	char buf[SHAPE_BUF];
	assert(ln_tensor_is_empty(out) && !ln_tensor_is_empty(a));
	if (a->ndim != 2)
		return ln_fail(err, LN_ESHAPE, "expected a 2-D tensor, got %s",
		               ln_tensor_shape_str(a, buf, sizeof buf));
	int64_t m = a->shape[0], n = a->shape[1];
	int64_t shape[2] = { n, m };
	ln_status st = ln_tensor_alloc(out, 2, shape, err);
	if (st != LN_OK)
		return st;
	float *o = ln_tensor_data(out);
	const float *x = ln_tensor_data(a);
	for (int64_t i = 0; i < m; i++)
		for (int64_t j = 0; j < n; j++)
			o[j * m + i] = x[i * a->stride[0] + j * a->stride[1]];
	return LN_OK;
}

/* |a-b| <= atol + rtol*|b| for every element; false when shapes differ or
 * any element of either is NaN.  An infinity is close only to itself. */
bool ln_tensor_allclose(const ln_tensor *a, const ln_tensor *b, double rtol, double atol)
{
	assert(!ln_tensor_is_empty(a) && !ln_tensor_is_empty(b));
	if (!ln_tensor_same_shape(a, b))
		return false;
	const float *x = ln_tensor_data(a), *y = ln_tensor_data(b);
	ln_iter it;
	ln_iter_tensors(&it, a->ndim, a->shape, 2, (const ln_tensor *[]){ a, b });
	do {
		for (int64_t j = 0; j < it.len; j++) {
			double u = x[it.off[0] + j * it.inc[0]], v = y[it.off[1] + j * it.inc[1]];
			if (isnan(u) || isnan(v))
				return false;
			if (u == v)  /* also equal infinities */
				continue;
			if (isinf(u) || isinf(v))
				return false;
			if (!(fabs(u - v) <= atol + rtol * fabs(v)))
				return false;
		}
	} while (ln_iter_next(&it));
	return true;
}
