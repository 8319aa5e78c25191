/*
 * tensor_math.c -- elementwise arithmetic, comparisons, clamp and where,
 * with NumPy broadcasting.
 *
 * Every operation here is one walk of the iterator of iter.h over the
 * result's shape, the inputs broadcast to it (stride 0 where they
 * stretch); contiguous operands walk as one flat row.  The kernels are
 * the plain loops below, one per operation, that take a row: pointers,
 * their steps and a length.
 */
#include <assert.h>
#include <math.h>

#include "tensor_internal.h"

/* ======================================================================
 * Scalar kernels
 * ====================================================================== */

static inline float binop_apply(ln_binop op, float x, float y)
{
	switch (op) {
	case LN_ADD: return x + y;
	case LN_SUB: return x - y;
	case LN_MUL: return x * y;
	case LN_DIV: return x / y;
	case LN_POW: return powf(x, y);
	case LN_GT: return x > y ? 1.0f : 0.0f;
	case LN_LT: return x < y ? 1.0f : 0.0f;
	case LN_GE: return x >= y ? 1.0f : 0.0f;
	case LN_LE: return x <= y ? 1.0f : 0.0f;
	case LN_EQ: return x == y ? 1.0f : 0.0f;
	case LN_NE: return x != y ? 1.0f : 0.0f;
	case LN_BINOP_COUNT: break;
	}
	assert(!"unknown ln_binop");
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

/*
 * One row of o = x op y: n elements, each operand with its own step (0
 * for a broadcast operand).  The all-unit-step case is its own loop so
 * that the compiler vectorises it; op is the same for the whole row, so
 * the switch inside is hoisted.
 */
static void binop_row(float *o, int64_t so, const float *x, int64_t sx, const float *y,
                      int64_t sy, int64_t n, ln_binop op)
{
	if (so == 1 && sx == 1 && sy == 1) {
		for (int64_t j = 0; j < n; j++)
			o[j] = binop_apply(op, x[j], y[j]);
		return;
	}
	for (int64_t j = 0; j < n; j++)
		o[j * so] = binop_apply(op, x[j * sx], y[j * sy]);
}

/* out (empty) = a new tensor of a's shape, and *it a walk of (out, a):
 * the start of every operation that maps a elementwise.  Errors:
 * LN_ENOMEM. */
static ln_status map_begin(ln_tensor *out, const ln_tensor *a, ln_iter *it, ln_error *err)
{
	assert(ln_tensor_is_empty(out) && !ln_tensor_is_empty(a));
	ln_status st = ln_tensor_alloc(out, a->ndim, a->shape, err);
	if (st == LN_OK)
		ln_iter_tensors(it, a->ndim, a->shape, 2, (const ln_tensor *[]){ out, a });
	return st;
}

/* ======================================================================
 * Binary operations
 * ====================================================================== */

/* out = a op b, broadcast.  Errors: LN_ESHAPE, LN_ENOMEM. */
ln_status ln_tensor_binary(ln_tensor *out, ln_binop op, const ln_tensor *a, const ln_tensor *b,
                           ln_error *err)
{
	assert(ln_tensor_is_empty(out) && !ln_tensor_is_empty(a) && !ln_tensor_is_empty(b));
	assert((unsigned)op < LN_BINOP_COUNT);
	int ndim;
	int64_t shape[LN_MAX_DIMS];
	ln_status st = ln_broadcast_shape(&ndim, shape, a->ndim, a->shape, b->ndim, b->shape, err);
	if (st != LN_OK)
		return st;
	if ((st = ln_tensor_alloc(out, ndim, shape, err)) != LN_OK)
		return st;
	float *o = ln_tensor_data(out);
	const float *x = ln_tensor_data(a), *y = ln_tensor_data(b);
	ln_iter it;
	ln_iter_tensors(&it, ndim, shape, 3, (const ln_tensor *[]){ out, a, b });
	do {
		binop_row(o + it.off[0], it.inc[0], x + it.off[1], it.inc[1], y + it.off[2], it.inc[2],
		          it.len, op);
	} while (ln_iter_next(&it));
	return LN_OK;
}

/* out = a op s, or s op a when scalar_first.  Errors: LN_ENOMEM. */
ln_status ln_tensor_binary_scalar(ln_tensor *out, ln_binop op, const ln_tensor *a, float s,
                                  bool scalar_first, ln_error *err)
{
	assert((unsigned)op < LN_BINOP_COUNT);
	ln_iter it;
	ln_status st = map_begin(out, a, &it, err);
	if (st != LN_OK)
		return st;
	float *o = ln_tensor_data(out);
	const float *x = ln_tensor_data(a);
	do {
		/* the scalar is a row of step 0 */
		if (scalar_first)
			binop_row(o + it.off[0], it.inc[0], &s, 0, x + it.off[1], it.inc[1], it.len, op);
		else
			binop_row(o + it.off[0], it.inc[0], x + it.off[1], it.inc[1], &s, 0, it.len, op);
	} while (ln_iter_next(&it));
	return LN_OK;
}

/*
 * a = a op b in place, b broadcast to a's shape.  Walking (a, a, b) row by
 * row reads each element of a just before writing it; that is only
 * sound when b cannot see what was written, so a b sharing a's storage
 * is first copied out (a:add_(a) included, for simplicity: one
 * temporary).  Errors: LN_ESHAPE, LN_EARG, LN_ENOMEM.
 */
ln_status ln_tensor_binary_(ln_tensor *a, ln_binop op, const ln_tensor *b, ln_error *err)
{
	char abuf[SHAPE_BUF], bbuf[SHAPE_BUF];
	assert(!ln_tensor_is_empty(a) && !ln_tensor_is_empty(b));
	assert((unsigned)op < LN_BINOP_COUNT);
	if (!ln_tensor_broadcasts_to(b, a->ndim, a->shape))
		return ln_fail(err, LN_ESHAPE,
		               "operand %s does not broadcast to %s, the shape of the tensor written "
		               "in place", ln_tensor_shape_str(b, bbuf, sizeof bbuf),
		               ln_tensor_shape_str(a, abuf, sizeof abuf));
	if (ln_tensor_has_aliases(a))
		return ln_fail_aliases(a, err);
	ln_tensor tmp = LN_TENSOR_EMPTY;
	if (b->storage == a->storage) {
		ln_status st = ln_tensor_clone(&tmp, b, err);
		if (st != LN_OK)
			return st;
		b = &tmp;
	}
	float *o = ln_tensor_data(a);
	const float *y = ln_tensor_data(b);
	ln_iter it;
	ln_iter_tensors(&it, a->ndim, a->shape, 2, (const ln_tensor *[]){ a, b });
	do {
		binop_row(o + it.off[0], it.inc[0], o + it.off[0], it.inc[0], y + it.off[1], it.inc[1],
		          it.len, op);
	} while (ln_iter_next(&it));
	ln_tensor_release(&tmp);
	return LN_OK;
}

/* a = a op s in place.  Errors: LN_EARG. */
ln_status ln_tensor_binary_scalar_(ln_tensor *a, ln_binop op, float s, ln_error *err)
{
	assert(!ln_tensor_is_empty(a));
	assert((unsigned)op < LN_BINOP_COUNT);
	if (ln_tensor_has_aliases(a))
		return ln_fail_aliases(a, err);
	float *o = ln_tensor_data(a);
	ln_iter it;
	ln_iter_tensors(&it, a->ndim, a->shape, 1, (const ln_tensor *[]){ a });
	do {
		binop_row(o + it.off[0], it.inc[0], o + it.off[0], it.inc[0], &s, 0, it.len, op);
	} while (ln_iter_next(&it));
	return LN_OK;
}

/* ======================================================================
 * Unary operations
 * ====================================================================== */

/* out = op(a) elementwise.  Errors: LN_ENOMEM. */
ln_status ln_tensor_unary(ln_tensor *out, ln_unop op, const ln_tensor *a, ln_error *err)
{
	ln_iter it;
	ln_status st = map_begin(out, a, &it, err);
	if (st != LN_OK)
		return st;
	float *o = ln_tensor_data(out);
	const float *x = ln_tensor_data(a);
	do {
		for (int64_t j = 0; j < it.len; j++)
			o[it.off[0] + j * it.inc[0]] = unop_apply(op, x[it.off[1] + j * it.inc[1]]);
	} while (ln_iter_next(&it));
	return LN_OK;
}

/* out = min(max(a, lo), hi); a NaN element stays NaN (both comparisons
 * are false for it).  Errors: LN_ENAN, LN_ERANGE, LN_ENOMEM. */
ln_status ln_tensor_clamp(ln_tensor *out, const ln_tensor *a, float lo, float hi,
                          ln_error *err)
{
	assert(ln_tensor_is_empty(out) && !ln_tensor_is_empty(a));
	if (isnan(lo) || isnan(hi))
		return ln_fail(err, LN_ENAN, "bounds must not be NaN, got %g and %g", ln_shown(lo),
		               ln_shown(hi));
	if (lo > hi)
		return ln_fail(err, LN_ERANGE, "lower bound %g is above upper bound %g", (double)lo,
		               (double)hi);
	ln_iter it;
	ln_status st = map_begin(out, a, &it, err);
	if (st != LN_OK)
		return st;
	float *o = ln_tensor_data(out);
	const float *x = ln_tensor_data(a);
	do {
		for (int64_t j = 0; j < it.len; j++) {
			float v = x[it.off[1] + j * it.inc[1]];
			if (v < lo)
				v = lo;
			if (v > hi)
				v = hi;
			o[it.off[0] + j * it.inc[0]] = v;
		}
	} while (ln_iter_next(&it));
	return LN_OK;
}

/* out = mask != 0 ? a : b, the three broadcast together.  Errors:
 * LN_ESHAPE (naming the two shapes that clash), LN_ENOMEM. */
ln_status ln_tensor_where(ln_tensor *out, const ln_tensor *mask, const ln_tensor *a,
                          const ln_tensor *b, ln_error *err)
{
	assert(ln_tensor_is_empty(out));
	assert(!ln_tensor_is_empty(mask) && !ln_tensor_is_empty(a) && !ln_tensor_is_empty(b));
	int n1, ndim;
	int64_t s1[LN_MAX_DIMS], shape[LN_MAX_DIMS];
	ln_status st = ln_broadcast_shape(&n1, s1, mask->ndim, mask->shape, a->ndim, a->shape, err);
	if (st == LN_OK)
		st = ln_broadcast_shape(&ndim, shape, n1, s1, b->ndim, b->shape, err);
	if (st != LN_OK)
		return st;
	if ((st = ln_tensor_alloc(out, ndim, shape, err)) != LN_OK)
		return st;
	float *o = ln_tensor_data(out);
	const float *m = ln_tensor_data(mask), *x = ln_tensor_data(a), *y = ln_tensor_data(b);
	ln_iter it;
	ln_iter_tensors(&it, ndim, shape, 4, (const ln_tensor *[]){ out, mask, a, b });
	do {
		for (int64_t j = 0; j < it.len; j++)
			o[it.off[0] + j * it.inc[0]] = m[it.off[1] + j * it.inc[1]] != 0.0f
			                                   ? x[it.off[2] + j * it.inc[2]]
			                                   : y[it.off[3] + j * it.inc[3]];
	} while (ln_iter_next(&it));
	return LN_OK;
}
