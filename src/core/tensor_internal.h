/*
 * tensor_internal.h -- helpers shared by the files that implement tensor.h
 * (tensor.c, tensor_view.c, tensor_math.c, tensor_index.c,
 * tensor_random.c).  Not part of the API.
 */
#ifndef LN_TENSOR_INTERNAL_H
#define LN_TENSOR_INTERNAL_H

#include <math.h>
#include <stdint.h>

#include "iter.h"
#include "tensor.h"

#define SHAPE_BUF 128  /* "{a,b,...}" for messages (ln_shape_str truncates) */

/* Sets t's ndim, shape and row-major strides (offset and storage kept). */
void ln_tensor_set_contiguous(ln_tensor *t, int ndim, const int64_t *shape);

/* LN_EARG "cannot write into {3,3}: several of its elements share one
 * memory location (an expanded view); clone it first", for a destination
 * with ln_tensor_has_aliases. */
ln_status ln_fail_aliases(const ln_tensor *t, ln_error *err);

/* x + y, clamped to the int64_t range (for messages about wild values). */
static inline int64_t ln_sat_add(int64_t x, int64_t y)
{
	int64_t r;
	if (__builtin_add_overflow(x, y, &r))
		return y > 0 ? INT64_MAX : INT64_MIN;
	return r;
}

/* A dimension as the user wrote it, for messages: 0-based d >= 0 shown
 * 1-based, a negative one as is. */
static inline int ln_dim_shown(int d)
{
	return d >= 0 ? d + 1 : d;
}

/* v for a "%g" in a message: a NaN without its sign bit, which would
 * print as "-nan" (0/0 in Lua has it). */
static inline double ln_shown(double v)
{
	return isnan(v) ? fabs(v) : v;
}

#endif
