/*
 * flatten.c -- {N,d1,d2,...} -> {N,d1*d2*...}; {N} -> {N,1}.
 *
 * The data do not move (row-major order is kept): forward copies x into
 * the output buffer with the new shape, backward copies gy into
 * grad_input with the shape of x.  Forward saves nothing.
 */
#include <stdio.h>
#include <string.h>

#include "layers.h"
#include "nn_internal.h"

static ln_status flatten_forward(ln_module *m, const ln_tensor *x, ln_error *err)
{
	int64_t n = x->shape[0], numel = ln_tensor_numel(x);
	ln_status s = ln_tensor_ensure(&m->output, 2, (int64_t[]){n, numel / n}, err);
	if (s != LN_OK)
		return s;
	memmove(ln_tensor_data(&m->output), ln_tensor_data(x), (size_t)numel * sizeof(float));
	return LN_OK;
}

static ln_status flatten_backward(ln_module *m, const ln_tensor *x, const ln_tensor *gy,
                                  ln_error *err)
{
	int64_t numel = ln_tensor_numel(x);  /* x is the last forward's input */
	ln_status s = ln_tensor_ensure(&m->grad_input, x->ndim, x->shape, err);
	if (s != LN_OK)
		return s;
	memmove(ln_tensor_data(&m->grad_input), ln_tensor_data(gy), (size_t)numel * sizeof(float));
	return LN_OK;
}

ln_status ln_flatten_new(ln_module **out, ln_error *err)
{
	return ln_module_alloc(out, &ln_flatten_class, err);
}

static int flatten_describe(const ln_module *m, char *buf, size_t size)
{
	return snprintf(buf, size, "Flatten");
}

const ln_module_class ln_flatten_class = {
	.name = "Flatten",
	.size = sizeof(ln_module),
	.forward = flatten_forward,
	.backward = flatten_backward,
	.create = ln_module_create_plain,
	.describe = flatten_describe,
};
