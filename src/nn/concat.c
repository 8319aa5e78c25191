/*
 * concat.c -- Concat(dim): one or more inputs joined along a dimension.
 *
 * The inputs have the same number of dimensions and the same sizes
 * except along dim (1-based, negative counting from the end as in Lua:
 * -1 is the last); the output's size there is the sum of theirs:
 *
 *   x_1 {N,3,H,W}, x_2 {N,5,H,W}, Concat(2)  ->  y {N,8,H,W}
 *
 * Seen as (outer, size_i * inner) blocks -- outer the product of the
 * dimensions before dim, inner of those after it -- forward copies block
 * o of each input, in input order, into block o of the output; backward
 * copies the same pieces of gy back into each input's gradient.  Nothing
 * is saved between the two but the inputs' shapes, which the protocol
 * keeps.  Config: dim.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "graph.h"
#include "nn_internal.h"

/* The 0-based dimension that dim names in an ndim-D input, or -1. */
static int resolve(double dim, int ndim)
{
	int d = dim < 0 ? ndim + (int)dim : (int)dim - 1;
	return d >= 0 && d < ndim ? d : -1;
}

/* Checks that the inputs join along m's dim; sets *d (0-based), *outer,
 * *inner and the output's shape. */
static ln_status check_inputs(const ln_module *m, int n, const ln_tensor *const *x, int *d,
                              int64_t *outer, int64_t *inner, int64_t *yshape, ln_error *err)
{
	char a[128], b[128];
	double dim = m->config[0];
	int ndim = x[0]->ndim;
	*d = resolve(dim, ndim);
	if (*d < 0)
		return ln_fail(err, LN_ESHAPE, "dim %g does not exist in input 1 of shape %s "
		               "(expected 1..%d or -%d..-1)", dim,
		               ln_tensor_shape_str(x[0], a, sizeof a), ndim, ndim);
	memcpy(yshape, x[0]->shape, sizeof x[0]->shape);
	for (int i = 1; i < n; i++) {
		bool fits = x[i]->ndim == ndim;
		for (int k = 0; fits && k < ndim; k++)
			fits = k == *d || x[i]->shape[k] == x[0]->shape[k];
		if (!fits)
			return ln_fail(err, LN_ESHAPE,
			               "inputs do not join along dim %g: %s (input 1) and %s (input %d) "
			               "differ in another dimension", dim,
			               ln_tensor_shape_str(x[0], a, sizeof a),
			               ln_tensor_shape_str(x[i], b, sizeof b), i + 1);
		yshape[*d] += x[i]->shape[*d];
	}
	*outer = 1;
	*inner = 1;
	for (int k = 0; k < *d; k++)
		*outer *= x[0]->shape[k];
	for (int k = *d + 1; k < ndim; k++)
		*inner *= x[0]->shape[k];
	return LN_OK;
}

/* Copies between the joined tensor y (outer, total*inner) and part i
 * (outer, size_i*inner) that starts at column `at*inner` of each block:
 * into y when to_y, out of y otherwise. */
static void copy_part(float *y, float *part, int64_t outer, int64_t total, int64_t at,
                      int64_t size, int64_t inner, bool to_y)
{
	size_t bytes = (size_t)(size * inner) * sizeof(float);
	for (int64_t o = 0; o < outer; o++) {
		float *yo = y + (o * total + at) * inner, *po = part + o * size * inner;
		if (to_y)
			memcpy(yo, po, bytes);
		else
			memcpy(po, yo, bytes);
	}
}

static ln_status concat_forward(ln_module *m, int n, const ln_tensor *const *x, ln_error *err)
{
	int d;
	int64_t outer, inner, yshape[LN_MAX_DIMS];
	ln_status s = check_inputs(m, n, x, &d, &outer, &inner, yshape, err);
	if (s == LN_OK)
		s = ln_shape_check(x[0]->ndim, yshape, &(int64_t){0}, err);
	if (s == LN_OK)
		s = ln_tensor_ensure(&m->output, x[0]->ndim, yshape, err);
	if (s != LN_OK)
		return s;
	float *y = ln_tensor_data(&m->output);
	int64_t at = 0;
	for (int i = 0; i < n; at += x[i]->shape[d], i++)
		copy_part(y, ln_tensor_data(x[i]), outer, yshape[d], at, x[i]->shape[d], inner, true);
	return LN_OK;
}

static ln_status concat_backward(ln_module *m, int n, const ln_tensor *const *x,
                                 const ln_tensor *gy, ln_error *err)
{
	int d;
	int64_t outer, inner, yshape[LN_MAX_DIMS];
	ln_status s = check_inputs(m, n, x, &d, &outer, &inner, yshape, err);
	if (s != LN_OK)
		return s;
	float *g = ln_tensor_data(gy);
	int64_t at = 0;
	for (int i = 0; i < n; at += x[i]->shape[d], i++) {
		ln_tensor *gi = &m->inputs[i].grad;
		if ((s = ln_tensor_ensure(gi, x[i]->ndim, x[i]->shape, err)) != LN_OK)
			return s;
		copy_part(g, ln_tensor_data(gi), outer, yshape[d], at, x[i]->shape[d], inner, false);
	}
	return LN_OK;
}

/* config[0]: dim, a non-zero integer within +-LN_MAX_DIMS (which
 * dimensions an input has is checked at forward). */
static ln_status concat_create(ln_module **out, const ln_module_class *cls,
                               const ln_module_build *ctx, const double *config, ln_error *err)
{
	double dim = config ? config[0] : cls->config_defaults[0];
	if (!(dim == floor(dim)) || dim == 0 || fabs(dim) > LN_MAX_DIMS)
		return ln_fail(err, LN_ERANGE, "expected dim to be a non-zero integer in [-%d, %d], "
		               "got %g", LN_MAX_DIMS, LN_MAX_DIMS, dim);
	ln_module *m;
	ln_status s = ln_module_alloc(&m, cls, err);
	if (s != LN_OK)
		return s;
	m->nconfig = 1;
	m->config[0] = dim;
	*out = m;
	return LN_OK;
}

ln_status ln_concat_new(ln_module **out, int dim, ln_error *err)
{
	return concat_create(out, &ln_concat_class, NULL, (const double[]){dim}, err);
}

static int concat_describe(const ln_module *m, char *buf, size_t size)
{
	return snprintf(buf, size, "Concat(dim %g)", m->config[0]);
}

const ln_module_class ln_concat_class = {
	.name = "Concat",
	.size = sizeof(ln_module),
	.arity = LN_ARITY_ANY,
	.forward_multi = concat_forward,
	.backward_multi = concat_backward,
	.config_names = {"dim"},
	.config_defaults = {-1},
	.create = concat_create,
	.describe = concat_describe,
};
