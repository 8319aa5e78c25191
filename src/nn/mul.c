/*
 * mul.c -- Mul: the elementwise product of two inputs of one shape.
 *
 *   y = a * b                  a, b, y of the same shape
 *   dL/da = gy * b,  dL/db = gy * a
 *
 * Forward saves nothing: backward reads a and b again (they are the
 * inputs of the last forward, which the protocol checks by shape).
 */
#include <stdio.h>

#include "graph.h"
#include "nn_internal.h"

static ln_status mul_forward(ln_module *m, int n, const ln_tensor *const *x, ln_error *err)
{
	ln_status s = ln_check_same_shapes(n, x, err);
	if (s == LN_OK)
		s = ln_tensor_ensure(&m->output, x[0]->ndim, x[0]->shape, err);
	if (s != LN_OK)
		return s;
	float *y = ln_tensor_data(&m->output);
	const float *a = ln_tensor_data(x[0]), *b = ln_tensor_data(x[1]);
	int64_t numel = ln_tensor_numel(x[0]);
	for (int64_t j = 0; j < numel; j++)
		y[j] = a[j] * b[j];
	return LN_OK;
}

static ln_status mul_backward(ln_module *m, int n, const ln_tensor *const *x,
                              const ln_tensor *gy, ln_error *err)
{
	ln_tensor *ga = &m->inputs[0].grad, *gb = &m->inputs[1].grad;
	ln_status s = ln_tensor_ensure(ga, gy->ndim, gy->shape, err);
	if (s == LN_OK)
		s = ln_tensor_ensure(gb, gy->ndim, gy->shape, err);
	if (s != LN_OK)
		return s;
	const float *a = ln_tensor_data(x[0]), *b = ln_tensor_data(x[1]), *g = ln_tensor_data(gy);
	float *da = ln_tensor_data(ga), *db = ln_tensor_data(gb);
	int64_t numel = ln_tensor_numel(gy);
	for (int64_t j = 0; j < numel; j++) {
		da[j] = g[j] * b[j];
		db[j] = g[j] * a[j];
	}
	return LN_OK;
}

ln_status ln_mul_new(ln_module **out, ln_error *err)
{
	return ln_module_alloc(out, &ln_mul_class, err);
}

static int mul_describe(const ln_module *m, char *buf, size_t size)
{
	return snprintf(buf, size, "Mul");
}

const ln_module_class ln_mul_class = {
	.name = "Mul",
	.size = sizeof(ln_module),
	.arity = 2,
	.forward_multi = mul_forward,
	.backward_multi = mul_backward,
	.create = ln_module_create_plain,
	.describe = mul_describe,
};
