/*
 * external.c -- a module whose forward/backward live outside C.
 *
 * The Lua binding uses it to put a plain Lua table with forward/backward
 * inside a Sequential: the callbacks call into Lua and hand back tensors
 * by reference.  This file only keeps those references and checks them.
 */
#include <stdio.h>

#include "layers.h"
#include "nn_internal.h"
#include "state_dict.h"

typedef struct external {
	ln_module base;
	const ln_external_ops *ops;  /* not owned */
	void *ctx;                   /* released with ops->release */
	ln_tensor copy_out;          /* owned: contiguous copies of strided results */
	ln_tensor copy_gin;
} external;

/* Moves the callback's result `r` into *dst, copying it into the reused
 * buffer *copy first if it is not contiguous.  Consumes r.  *dst is
 * released first: the callback may have run this module again (a script
 * calling the container from inside its own layer), which filled it. */
static ln_status adopt(ln_tensor *dst, ln_tensor *copy, ln_tensor *r, ln_error *err)
{
	ln_tensor_release(dst);
	if (ln_tensor_is_contiguous(r)) {
		*dst = *r;
		*r = LN_TENSOR_EMPTY;
		return LN_OK;
	}
	ln_status s = ln_tensor_ensure(copy, r->ndim, r->shape, err);
	if (s == LN_OK)
		s = ln_tensor_copy(copy, r, err);
	ln_tensor_release(r);
	if (s == LN_OK)
		ln_tensor_ref(dst, copy);
	return s;
}

/* Calls a callback's failure a failure even if it wrote no message. */
static void ensure_msg(ln_error *err, ln_status s, const char *what)
{
	if (err && err->msg[0] == '\0')
		ln_fail(err, s, "%s failed (%s)", what, ln_status_name(s));
	else if (err)
		err->code = s;
}

static ln_status external_forward(ln_module *m, const ln_tensor *x, ln_error *err)
{
	external *e = (external *)m;
	ln_tensor r = LN_TENSOR_EMPTY;
	ln_tensor_release(&m->output);
	if (err) {
		err->code = LN_EARG;
		err->msg[0] = '\0';
	}
	ln_status s = e->ops->forward(e->ctx, x, &r, err);
	if (s != LN_OK) {
		ln_tensor_release(&r);
		ensure_msg(err, s, "forward");
		return s;
	}
	if (ln_tensor_is_empty(&r))
		return ln_fail(err, LN_ESTATE, "forward returned no tensor");
	return adopt(&m->output, &e->copy_out, &r, err);
}

static ln_status external_backward(ln_module *m, const ln_tensor *x, const ln_tensor *gy,
                                   ln_error *err)
{
	external *e = (external *)m;
	ln_tensor r = LN_TENSOR_EMPTY;
	ln_tensor_release(&m->grad_input);
	if (err) {
		err->code = LN_EARG;
		err->msg[0] = '\0';
	}
	ln_status s = e->ops->backward(e->ctx, x, gy, &r, err);
	if (s != LN_OK) {
		ln_tensor_release(&r);
		ensure_msg(err, s, "backward");
		return s;
	}
	if (ln_tensor_is_empty(&r)) {
		if (!m->want_gx)
			return LN_OK;  /* nobody asked for dL/dx (module.h) */
		return ln_fail(err, LN_ESTATE, "backward returned no tensor");
	}
	if (!ln_tensor_same_shape(&r, x)) {
		char got[128], want[128];
		ln_tensor_shape_str(&r, got, sizeof got);
		ln_tensor_release(&r);
		return ln_fail(err, LN_ESHAPE,
		               "backward returned a gradient of shape %s for an input of shape %s", got,
		               ln_tensor_shape_str(x, want, sizeof want));
	}
	return adopt(&m->grad_input, &e->copy_gin, &r, err);
}

static void external_destroy(ln_module *m)
{
	external *e = (external *)m;
	ln_tensor_release(&e->copy_out);
	ln_tensor_release(&e->copy_gin);
	if (e->ops->release)
		e->ops->release(e->ctx);
}

void ln_external_on_set_training(ln_module *m, bool training)
{
	external *e = (external *)m;
	if (e->ops->set_training)
		e->ops->set_training(e->ctx, training);
}

ln_status ln_external_new(ln_module **out, const ln_external_ops *ops, void *ctx, ln_error *err)
{
	if (!ops || !ops->forward || !ops->backward)
		return ln_fail(err, LN_EARG, "forward and backward callbacks are required");
	ln_module *m;
	ln_status s = ln_module_alloc(&m, &ln_external_class, err);
	if (s != LN_OK)
		return s;
	external *e = (external *)m;
	e->ops = ops;
	e->ctx = ctx;
	*out = m;
	return LN_OK;
}

void *ln_external_ctx(const ln_module *m)
{
	return m->cls == &ln_external_class ? ((const external *)m)->ctx : NULL;
}

ln_status ln_external_set_params(ln_module *m, int n, const ln_tensor *params,
                                 const ln_tensor *grads, ln_error *err)
{
	if (m->cls != &ln_external_class)
		return ln_fail(err, LN_EARG, "set_params expects an External module, got a %s",
		               m->cls->name);
	if (n < 0 || n > LN_MODULE_MAX_PARAMS)
		return ln_fail(err, LN_ERANGE, "expected at most %d parameters, got %d",
		               LN_MODULE_MAX_PARAMS, n);
	for (int i = 0; i < n; i++) {
		if (ln_tensor_is_empty(&params[i]) || !ln_tensor_same_shape(&params[i], &grads[i])) {
			char ps[128] = "{}", gs[128] = "{}";
			if (!ln_tensor_is_empty(&params[i]))
				ln_tensor_shape_str(&params[i], ps, sizeof ps);
			if (!ln_tensor_is_empty(&grads[i]))
				ln_tensor_shape_str(&grads[i], gs, sizeof gs);
			return ln_fail(err, LN_ESHAPE,
			               "parameter %d has shape %s but its gradient has shape %s",
			               i + 1, ps, gs);
		}
	}
	/* on failure (LN_ENOMEM) m keeps what it had */
	ln_status s = ln_module_resize_params(m, n, err);
	if (s != LN_OK)
		return s;
	for (int i = 0; i < n; i++) {
		ln_tensor p = LN_TENSOR_EMPTY, g = LN_TENSOR_EMPTY;
		ln_tensor_ref(&p, &params[i]);
		ln_tensor_ref(&g, &grads[i]);
		ln_tensor_release(&m->param[i]);
		ln_tensor_release(&m->grad[i]);
		m->param[i] = p;
		m->grad[i] = g;
	}
	return LN_OK;
}

static int external_describe(const ln_module *m, char *buf, size_t size)
{
	const external *e = (const external *)m;
	if (e->ops->describe)
		return e->ops->describe(e->ctx, buf, size);
	return snprintf(buf, size, "External");
}

/* Not in the registry: it cannot be built from a config (nor saved). */
/* Its parameters, if any, belong to the code outside C: that code names them. */
static void external_state(ln_module *m, ln_state_visitor *v) { ln_state_opaque(v, m); }

const ln_module_class ln_external_class = {
	.name = "External",
	.size = sizeof(external),
	.forward = external_forward,
	.backward = external_backward,
	.destroy = external_destroy,
	.create = NULL,
	.describe = external_describe,
	.state = external_state,
};
