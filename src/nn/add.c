/*
 * add.c -- Add: the elementwise sum of one or more inputs of one shape.
 *
 *   y = x_1 + x_2 + ... + x_n        every x_i and y of the same shape
 *   dL/dx_i = gy                     for every i
 *
 * Forward saves nothing and writes x_1 + x_2 in one pass, then adds the
 * others; the sum runs in input order, so it is the same to the bit on
 * every call.  Backward copies gy into the first input's gradient buffer
 * (a module's gradients are its own buffers: module.h) and makes every
 * other input's gradient a view of that one: they are the same values,
 * so one copy does (resnet bench, 1 thread: the second copy was about 1 %
 * of the step).  The loops are plain: the compiler vectorises them, so
 * there is no separate naive form.
 */
#include <stdio.h>
#include <string.h>

#include "graph.h"
#include "nn_internal.h"

static ln_status add_forward(ln_module *m, int n, const ln_tensor *const *x, ln_error *err)
{
	ln_status s = ln_check_same_shapes(n, x, err);
	if (s == LN_OK)
		s = ln_tensor_ensure(&m->output, x[0]->ndim, x[0]->shape, err);
	if (s != LN_OK)
		return s;
	float *y = ln_tensor_data(&m->output);
	int64_t numel = ln_tensor_numel(x[0]);
	const float *x0 = ln_tensor_data(x[0]);
	if (n == 1) {
		memcpy(y, x0, (size_t)numel * sizeof(float));
	} else {
		const float *x1 = ln_tensor_data(x[1]);
		for (int64_t j = 0; j < numel; j++)
			y[j] = x0[j] + x1[j];
	}
	for (int i = 2; i < n; i++) {
		const float *xi = ln_tensor_data(x[i]);
		for (int64_t j = 0; j < numel; j++)
			y[j] += xi[j];
	}
	return LN_OK;
}

static ln_status add_backward(ln_module *m, int n, const ln_tensor *const *x,
                              const ln_tensor *gy, ln_error *err)
{
	ln_tensor *g0 = &m->inputs[0].grad;
	ln_status s = ln_tensor_ensure(g0, gy->ndim, gy->shape, err);
	if (s != LN_OK)
		return s;
	memcpy(ln_tensor_data(g0), ln_tensor_data(gy), (size_t)ln_tensor_numel(gy) * sizeof(float));
	for (int i = 1; i < n; i++) {
		ln_tensor_release(&m->inputs[i].grad);
		ln_tensor_ref(&m->inputs[i].grad, g0);
	}
	return LN_OK;
}

ln_status ln_add_new(ln_module **out, ln_error *err)
{
	return ln_module_alloc(out, &ln_add_class, err);
}

static int add_describe(const ln_module *m, char *buf, size_t size)
{
	return snprintf(buf, size, "Add");
}

const ln_module_class ln_add_class = {
	.name = "Add",
	.size = sizeof(ln_module),
	.arity = LN_ARITY_ANY,
	.forward_multi = add_forward,
	.backward_multi = add_backward,
	.create = ln_module_create_plain,
	.describe = add_describe,
};
