/*
 * tensor.c -- float32 tensors over reference-counted storage.
 *
 * A tensor is shape + strides + offset over an ln_storage.  Views share
 * the storage; the last ln_tensor_release frees it.  Every operation
 * accepts strided (non-contiguous) inputs through the row iterator below
 * and takes a plain loop over memory when everything is contiguous.
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
#include "rng.h"
#include "tensor.h"

#define SHAPE_BUF 128

/* ======================================================================
 * Strided iteration
 * ======================================================================
 *
 * Walks up to three tensors of the same shape together, in row-major
 * order, one innermost row at a time:
 *
 *     for (row_iter_init(&it, ...); ; ) {
 *         for (j = 0; j < it.len; j++)
 *             x = base0[it.off[0] + j * it.inc[0]] ...
 *         if (!row_iter_next(&it)) break;
 *     }
 *
 * off[i] is the offset (in floats, from ln_tensor_data) of the start of the
 * current row in tensor i; inc[i] its stride along the last dimension.
 */
#define ITER_MAX 3

typedef struct row_iter {
	int nt;                               /* tensors walked together */
	int outer;                            /* dimensions above the last */
	int64_t len;                          /* length of the last dimension */
	int64_t shape[LN_MAX_DIMS];
	int64_t stride[ITER_MAX][LN_MAX_DIMS];
	int64_t idx[LN_MAX_DIMS];
	int64_t off[ITER_MAX];
	int64_t inc[ITER_MAX];
} row_iter;

/* shape has ndim >= 1 entries; strides[i] the strides of tensor i. */
static void row_iter_init(row_iter *it, int ndim, const int64_t *shape, int nt,
                          const int64_t *const *strides)
{
	assert(ndim >= 1 && ndim <= LN_MAX_DIMS && nt >= 1 && nt <= ITER_MAX);
	it->nt = nt;
	it->outer = ndim - 1;
	it->len = shape[ndim - 1];
	for (int d = 0; d < ndim; d++) {
		it->shape[d] = shape[d];
		it->idx[d] = 0;
	}
	for (int i = 0; i < nt; i++) {
		for (int d = 0; d < ndim; d++)
			it->stride[i][d] = strides[i][d];
		it->off[i] = 0;
		it->inc[i] = strides[i][ndim - 1];
	}
}

/* Moves to the next row; false after the last one. */
static bool row_iter_next(row_iter *it)
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

/* When every tensor walked is contiguous, the walk is one row of numel
 * unit-stride elements: the fast path of every elementwise loop. */
static bool flat_iter(row_iter *it, int nt, const ln_tensor *const *ts)
{
	for (int i = 0; i < nt; i++)
		if (!ln_tensor_is_contiguous(ts[i]))
			return false;
	static const int64_t unit[1] = { 1 };
	const int64_t *s[ITER_MAX] = { unit, unit, unit };
	int64_t n = ln_tensor_numel(ts[0]);
	row_iter_init(it, 1, &n, nt, s);
	return true;
}

/* Iterator over one tensor. */
static void iter1(row_iter *it, const ln_tensor *t)
{
	assert(!ln_tensor_is_empty(t));
	const ln_tensor *ts[1] = { t };
	if (flat_iter(it, 1, ts))
		return;
	const int64_t *s[1] = { t->stride };
	row_iter_init(it, t->ndim, t->shape, 1, s);
}

/* Iterator over two tensors of a's shape. */
static void iter2(row_iter *it, const ln_tensor *a, const ln_tensor *b)
{
	assert(!ln_tensor_is_empty(a) && !ln_tensor_is_empty(b));
	const ln_tensor *ts[2] = { a, b };
	if (flat_iter(it, 2, ts))
		return;
	const int64_t *s[2] = { a->stride, b->stride };
	row_iter_init(it, a->ndim, a->shape, 2, s);
}

static void iter3(row_iter *it, const ln_tensor *a, const ln_tensor *b, const ln_tensor *c)
{
	const ln_tensor *ts[3] = { a, b, c };
	if (flat_iter(it, 3, ts))
		return;
	const int64_t *s[3] = { a->stride, b->stride, c->stride };
	row_iter_init(it, a->ndim, a->shape, 3, s);
}

/* ======================================================================
 * Creation, references
 * ====================================================================== */

/* Row-major strides for shape. */
static void set_contiguous(ln_tensor *t, int ndim, const int64_t *shape)
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
static ln_status check_shape(int ndim, const int64_t *shape, int64_t *numel, ln_error *err)
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
	ln_status st = check_shape(ndim, shape, &n, err);
	if (st != LN_OK)
		return st;
	ln_storage *s = storage_new(n);
	if (!s)
		return fail_nomem(err, ndim, shape, n);
	*out = LN_TENSOR_EMPTY;
	out->storage = s;
	out->offset = 0;
	set_contiguous(out, ndim, shape);
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
	ln_status st = check_shape(ndim, shape, &n, err);
	if (st != LN_OK)
		return st;
	if (t->storage && t->storage->capacity >= (size_t)n) {
		t->offset = 0;
		set_contiguous(t, ndim, shape);
		return LN_OK;
	}
	ln_storage *s = storage_new(n);
	if (!s)
		return fail_nomem(err, ndim, shape, n);
	ln_tensor_release(t);
	t->storage = s;
	t->offset = 0;
	set_contiguous(t, ndim, shape);
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

/* ======================================================================
 * Views
 * ====================================================================== */

/* x + y, clamped to the int64_t range (for messages about wild values). */
static int64_t sat_add(int64_t x, int64_t y)
{
	int64_t r;
	if (__builtin_add_overflow(x, y, &r))
		return y > 0 ? INT64_MAX : INT64_MIN;
	return r;
}

/* out = src[index] along dimension 0.  Errors: LN_ESHAPE (src is 1-D),
 * LN_ERANGE (index outside 0..size-1). */
ln_status ln_tensor_select(ln_tensor *out, const ln_tensor *src, int64_t index, ln_error *err)
{
	char buf[SHAPE_BUF];
	assert(ln_tensor_is_empty(out) && !ln_tensor_is_empty(src));
	if (src->ndim < 2)
		return ln_fail(err, LN_ESHAPE,
		               "cannot select a sub-tensor of 1-D tensor %s (index it for a number)",
		               ln_tensor_shape_str(src, buf, sizeof buf));
	if (index < 0 || index >= src->shape[0])
		return ln_fail(err, LN_ERANGE, "index %lld is outside 1..%lld",
		               (long long)sat_add(index, 1), (long long)src->shape[0]);
	ln_tensor_ref(out, src);
	out->offset = src->offset + (size_t)(index * src->stride[0]);
	out->ndim = src->ndim - 1;
	for (int d = 0; d < out->ndim; d++) {
		out->shape[d] = src->shape[d + 1];
		out->stride[d] = src->stride[d + 1];
	}
	out->shape[out->ndim] = 0;
	out->stride[out->ndim] = 0;
	return LN_OK;
}

/* out = src restricted to [start, start+len) along dim.  Errors: LN_ERANGE
 * (dim does not exist, len < 1, or the range leaves the dimension). */
ln_status ln_tensor_narrow(ln_tensor *out, const ln_tensor *src, int dim, int64_t start,
                           int64_t len, ln_error *err)
{
	char buf[SHAPE_BUF];
	assert(ln_tensor_is_empty(out) && !ln_tensor_is_empty(src));
	if (dim < 0 || dim >= src->ndim)
		return ln_fail(err, LN_ERANGE, "dimension %d does not exist in %d-D tensor %s",
		               dim + 1, src->ndim, ln_tensor_shape_str(src, buf, sizeof buf));
	int64_t size = src->shape[dim];
	if (len < 1)
		return ln_fail(err, LN_ERANGE, "length must be >= 1, got %lld", (long long)len);
	if (start < 0 || start >= size || len > size - start)
		return ln_fail(err, LN_ERANGE, "dimension %d has size %lld, range %lld..%lld is outside it",
		               dim + 1, (long long)size, (long long)sat_add(start, 1),
		               (long long)sat_add(start, len));
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
		set_contiguous(out, ndim, want);
		return LN_OK;
	}
	ln_status st = ln_tensor_alloc(out, ndim, want, err);
	if (st != LN_OK)
		return st;
	st = ln_tensor_copy(out, src, err);
	assert(st == LN_OK);  /* counts match by construction */
	return st;
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

/* Walks one tensor element by element (for copies between different shapes). */
typedef struct elem_iter {
	row_iter rows;
	int64_t j;
	bool done;
} elem_iter;

static void elem_iter_init(elem_iter *e, const ln_tensor *t)
{
	iter1(&e->rows, t);
	e->j = 0;
	e->done = false;
}

/* Offset of the current element; then advances. */
static int64_t elem_iter_take(elem_iter *e)
{
	int64_t off = e->rows.off[0] + e->j * e->rows.inc[0];
	if (++e->j == e->rows.len) {
		e->j = 0;
		e->done = !row_iter_next(&e->rows);
	}
	return off;
}

/* dst = src element by element in row-major order.  The two must not
 * overlap in memory unless they are the same view.  Errors: LN_ESHAPE. */
ln_status ln_tensor_copy(ln_tensor *dst, const ln_tensor *src, ln_error *err)
{
	char dbuf[SHAPE_BUF], sbuf[SHAPE_BUF];
	assert(!ln_tensor_is_empty(dst) && !ln_tensor_is_empty(src));
	int64_t n = ln_tensor_numel(src);
	if (ln_tensor_numel(dst) != n)
		return ln_fail(err, LN_ESHAPE, "cannot copy %s (%lld elements) into %s (%lld elements)",
		               ln_tensor_shape_str(src, sbuf, sizeof sbuf), (long long)n,
		               ln_tensor_shape_str(dst, dbuf, sizeof dbuf),
		               (long long)ln_tensor_numel(dst));
	float *d = ln_tensor_data(dst);
	const float *s = ln_tensor_data(src);
	if (ln_tensor_is_contiguous(dst) && ln_tensor_is_contiguous(src)) {
		if (d != s)
			memmove(d, s, (size_t)n * sizeof(float));
		return LN_OK;
	}
	if (ln_tensor_same_shape(dst, src)) {
		row_iter it;
		iter2(&it, dst, src);
		do {
			for (int64_t j = 0; j < it.len; j++)
				d[it.off[0] + j * it.inc[0]] = s[it.off[1] + j * it.inc[1]];
		} while (row_iter_next(&it));
		return LN_OK;
	}
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
	row_iter it;
	iter1(&it, t);
	do {
		for (int64_t j = 0; j < it.len; j++)
			d[it.off[0] + j * it.inc[0]] = value;
	} while (row_iter_next(&it));
}

void ln_tensor_foreach(ln_tensor *t, void (*fn)(float *v, void *ctx), void *ctx)
{
	assert(!ln_tensor_is_empty(t));
	float *d = ln_tensor_data(t);
	row_iter it;
	iter1(&it, t);
	do {
		for (int64_t j = 0; j < it.len; j++)
			fn(&d[it.off[0] + j * it.inc[0]], ctx);
	} while (row_iter_next(&it));
}

/* ======================================================================
 * Elementwise
 * ====================================================================== */

static inline float binop_apply(ln_binop op, float x, float y)
{
	switch (op) {
	case LN_ADD: return x + y;
	case LN_SUB: return x - y;
	case LN_MUL: return x * y;
	case LN_DIV: return x / y;
	}
	return 0.0f;
}

/* sigmoid(x) = 1 / (1 + e^-x), computed without overflow on either side. */
static inline float sigmoidf(float x)
{
	if (x >= 0.0f)
		return 1.0f / (1.0f + expf(-x));
	float e = expf(x);
	return e / (1.0f + e);
}

static inline float unop_apply(ln_unop op, float x)
{
	switch (op) {
	case LN_NEG: return -x;
	case LN_EXP: return expf(x);
	case LN_LOG: return logf(x);
	case LN_ABS: return fabsf(x);
	case LN_SQRT: return sqrtf(x);
	case LN_TANH: return tanhf(x);
	case LN_SIGMOID: return sigmoidf(x);
	}
	return 0.0f;
}

/* out = a op b elementwise (same shape); out new and contiguous.
 * Errors: LN_ESHAPE, LN_ENOMEM. */
ln_status ln_tensor_binary(ln_tensor *out, ln_binop op, const ln_tensor *a, const ln_tensor *b,
                           ln_error *err)
{
	char abuf[SHAPE_BUF], bbuf[SHAPE_BUF];
	assert(ln_tensor_is_empty(out) && !ln_tensor_is_empty(a) && !ln_tensor_is_empty(b));
	if (!ln_tensor_same_shape(a, b))
		return ln_fail(err, LN_ESHAPE, "expected tensors of the same shape, got %s and %s",
		               ln_tensor_shape_str(a, abuf, sizeof abuf),
		               ln_tensor_shape_str(b, bbuf, sizeof bbuf));
	ln_status st = ln_tensor_alloc(out, a->ndim, a->shape, err);
	if (st != LN_OK)
		return st;
	float *o = ln_tensor_data(out);
	const float *x = ln_tensor_data(a), *y = ln_tensor_data(b);
	if (ln_tensor_is_contiguous(a) && ln_tensor_is_contiguous(b)) {
		int64_t n = ln_tensor_numel(a);
		for (int64_t i = 0; i < n; i++)
			o[i] = binop_apply(op, x[i], y[i]);
		return LN_OK;
	}
	row_iter it;
	iter3(&it, out, a, b);
	do {
		for (int64_t j = 0; j < it.len; j++)
			o[it.off[0] + j * it.inc[0]] =
				binop_apply(op, x[it.off[1] + j * it.inc[1]], y[it.off[2] + j * it.inc[2]]);
	} while (row_iter_next(&it));
	return LN_OK;
}

/* out = a op s, or s op a when scalar_first.  Errors: LN_ENOMEM. */
ln_status ln_tensor_binary_scalar(ln_tensor *out, ln_binop op, const ln_tensor *a, float s,
                                  bool scalar_first, ln_error *err)
{
	assert(ln_tensor_is_empty(out) && !ln_tensor_is_empty(a));
	ln_status st = ln_tensor_alloc(out, a->ndim, a->shape, err);
	if (st != LN_OK)
		return st;
	float *o = ln_tensor_data(out);
	const float *x = ln_tensor_data(a);
	row_iter it;
	iter2(&it, out, a);
	do {
		for (int64_t j = 0; j < it.len; j++) {
			float v = x[it.off[1] + j * it.inc[1]];
			o[it.off[0] + j * it.inc[0]] = scalar_first ? binop_apply(op, s, v)
			                                            : binop_apply(op, v, s);
		}
	} while (row_iter_next(&it));
	return LN_OK;
}

/* out = op(a) elementwise.  Errors: LN_ENOMEM. */
ln_status ln_tensor_unary(ln_tensor *out, ln_unop op, const ln_tensor *a, ln_error *err)
{
	assert(ln_tensor_is_empty(out) && !ln_tensor_is_empty(a));
	ln_status st = ln_tensor_alloc(out, a->ndim, a->shape, err);
	if (st != LN_OK)
		return st;
	float *o = ln_tensor_data(out);
	const float *x = ln_tensor_data(a);
	row_iter it;
	iter2(&it, out, a);
	do {
		for (int64_t j = 0; j < it.len; j++)
			o[it.off[0] + j * it.inc[0]] = unop_apply(op, x[it.off[1] + j * it.inc[1]]);
	} while (row_iter_next(&it));
	return LN_OK;
}

/* ======================================================================
 * Reductions: double accumulators, row-major order
 * ====================================================================== */

double ln_tensor_sum(const ln_tensor *t)
{
	assert(!ln_tensor_is_empty(t));
	const float *x = ln_tensor_data(t);
	double s = 0.0;
	row_iter it;
	iter1(&it, t);
	do {
		for (int64_t j = 0; j < it.len; j++)
			s += x[it.off[0] + j * it.inc[0]];
	} while (row_iter_next(&it));
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
	row_iter it;
	iter1(&it, t);
	do {
		for (int64_t j = 0; j < it.len; j++) {
			float v = x[it.off[0] + j * it.inc[0]];
			if (isnan(v))
				return v;
			if (want_max ? v > best : v < best)
				best = v;
		}
	} while (row_iter_next(&it));
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
 * max/min give NaN for a slice holding NaN; argmax gives the 1-based index
 * of the first maximum (a NaN counts as the maximum).
 * Errors: LN_ERANGE (dim does not exist), LN_ENOMEM.
 */
ln_status ln_tensor_reduce_dim(ln_tensor *out, ln_reduce op, const ln_tensor *t, int dim,
                               ln_error *err)
{
	char buf[SHAPE_BUF];
	assert(ln_tensor_is_empty(out) && !ln_tensor_is_empty(t));
	if (dim < 0 || dim >= t->ndim)
		return ln_fail(err, LN_ERANGE, "dimension %d does not exist in %d-D tensor %s", dim + 1,
		               t->ndim, ln_tensor_shape_str(t, buf, sizeof buf));
	int64_t shape[LN_MAX_DIMS];
	memcpy(shape, t->shape, sizeof shape);
	shape[dim] = 1;
	ln_status st = ln_tensor_alloc(out, t->ndim, shape, err);
	if (st != LN_OK)
		return st;

	/* walk out's positions; t's offset follows with dim pinned at 0 */
	float *o = ln_tensor_data(out);
	const float *x = ln_tensor_data(t);
	int64_t size = t->shape[dim], step = t->stride[dim];
	row_iter it;
	const int64_t *strides[2] = { out->stride, t->stride };
	row_iter_init(&it, out->ndim, out->shape, 2, strides);
	do {
		for (int64_t j = 0; j < it.len; j++) {
			const float *p = x + it.off[1] + j * it.inc[1];
			double acc;
			int64_t arg = 0;
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
			case LN_RARGMAX: {
				float best = p[0];
				for (int64_t k = 0; k < size && !isnan(best); k++) {
					float v = p[k * step];
					if (isnan(v) || v > best) {
						best = v;
						arg = k;
					}
				}
				acc = (double)(arg + 1);
				break;
			}
			default:
				acc = 0.0;
				assert(!"unknown ln_reduce");
			}
			o[it.off[0] + j * it.inc[0]] = (float)acc;
		}
	} while (row_iter_next(&it));
	return LN_OK;
}

/* ======================================================================
 * Linear algebra
 * ====================================================================== */

/*
 * Describes a 2-D tensor (rows, cols) as a gemm operand without copying:
 * row-major with leading dimension ld (trans false), or column-major, i.e.
 * the transpose of a row-major (cols, rows) matrix (trans true).  False
 * when the layout is neither.
 */
static bool as_gemm_operand(const ln_tensor *t, bool *trans, int64_t *ld)
{
	int64_t rows = t->shape[0], cols = t->shape[1];
	int64_t rs = t->stride[0], cs = t->stride[1];
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

/*
 * out (m,n) = a (m,k) x b (k,n), through ln_gemm.  Inputs whose layout
 * gemm cannot take directly are copied first (the copies are freed here).
 * Errors: LN_ESHAPE (not 2-D, or inner dimensions differ), LN_ERANGE (a
 * size beyond gemm's int range), LN_ENOMEM.
 */
ln_status ln_tensor_matmul(ln_tensor *out, const ln_tensor *a, const ln_tensor *b, ln_error *err)
{
	char abuf[SHAPE_BUF], bbuf[SHAPE_BUF];
	assert(ln_tensor_is_empty(out) && !ln_tensor_is_empty(a) && !ln_tensor_is_empty(b));
	if (a->ndim != 2 || b->ndim != 2)
		return ln_fail(err, LN_ESHAPE, "expected 2-D tensors, got %s x %s",
		               ln_tensor_shape_str(a, abuf, sizeof abuf),
		               ln_tensor_shape_str(b, bbuf, sizeof bbuf));
	if (a->shape[1] != b->shape[0])
		return ln_fail(err, LN_ESHAPE, "inner dimensions differ: %s x %s",
		               ln_tensor_shape_str(a, abuf, sizeof abuf),
		               ln_tensor_shape_str(b, bbuf, sizeof bbuf));
	int64_t m = a->shape[0], k = a->shape[1], n = b->shape[1];
	if (m > INT32_MAX || k > INT32_MAX || n > INT32_MAX)
		return ln_fail(err, LN_ERANGE, "matrices %s x %s are too large for the matrix library",
		               ln_tensor_shape_str(a, abuf, sizeof abuf),
		               ln_tensor_shape_str(b, bbuf, sizeof bbuf));

	ln_tensor ac = LN_TENSOR_EMPTY, bc = LN_TENSOR_EMPTY;
	const ln_tensor *pa = a, *pb = b;
	bool ta = false, tb = false;
	int64_t lda = k, ldb = n;
	ln_status st = LN_OK;
	if (!as_gemm_operand(a, &ta, &lda)) {
		if ((st = ln_tensor_clone(&ac, a, err)) != LN_OK)
			return st;
		pa = &ac;
		bool ok = as_gemm_operand(pa, &ta, &lda);  /* a contiguous copy always is one */
		assert(ok);
		(void)ok;
	}
	if (!as_gemm_operand(b, &tb, &ldb)) {
		if ((st = ln_tensor_clone(&bc, b, err)) != LN_OK)
			goto done;
		pb = &bc;
		bool ok = as_gemm_operand(pb, &tb, &ldb);
		assert(ok);
		(void)ok;
	}
	int64_t shape[2] = { m, n };
	if ((st = ln_tensor_alloc(out, 2, shape, err)) != LN_OK)
		goto done;
	ln_gemm(ta, tb, m, n, k, 1.0f, ln_tensor_data(pa), lda, ln_tensor_data(pb), ldb, 0.0f,
	        ln_tensor_data(out), n);
done:
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
	row_iter it;
	iter2(&it, a, b);
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
	} while (row_iter_next(&it));
	return true;
}

/* ======================================================================
 * Random fills (from the generator given, in row-major order)
 * ====================================================================== */

void ln_tensor_rand(ln_tensor *t, ln_rng *rng)
{
	ln_tensor_uniform(t, rng, 0.0f, 1.0f);
}

void ln_tensor_randn(ln_tensor *t, ln_rng *rng, float mean, float std)
{
	assert(!ln_tensor_is_empty(t));
	float *d = ln_tensor_data(t);
	row_iter it;
	iter1(&it, t);
	do {
		for (int64_t j = 0; j < it.len; j++)
			d[it.off[0] + j * it.inc[0]] = (float)(mean + std * ln_rng_normal(rng));
	} while (row_iter_next(&it));
}

/* Uniform in [a,b).  The float rounding of a + (b-a)u can reach b; such
 * draws are pulled back to the largest float below b. */
void ln_tensor_uniform(ln_tensor *t, ln_rng *rng, float a, float b)
{
	assert(!ln_tensor_is_empty(t));
	float *d = ln_tensor_data(t);
	row_iter it;
	iter1(&it, t);
	do {
		for (int64_t j = 0; j < it.len; j++) {
			float v = (float)((double)a + ((double)b - (double)a) * ln_rng_uniform(rng));
			if (v >= b && b > a)
				v = nextafterf(b, a);
			d[it.off[0] + j * it.inc[0]] = v;
		}
	} while (row_iter_next(&it));
}
