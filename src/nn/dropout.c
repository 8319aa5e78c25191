/*
 * dropout.c -- inverted dropout (Srivastava et al. 2014; scaling at
 * training time, as in Torch and PyTorch).
 *
 * Training:  mask_i = 1/(1-p) with probability 1-p, else 0 (one draw of
 *            the lunet rng per element, in order);  y = x * mask.
 * Evaluate:  y = x.
 * Backward uses the mask of the last forward: gx = gy * mask (or gy when
 * that forward ran in evaluate mode).  The mask has the shape of x and
 * lives in a buffer of the module, reused across steps.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../core/rng.h"
#include "layers.h"
#include "nn_internal.h"

typedef struct dropout {
	ln_module base;
	ln_tensor mask;  /* owned; shape of the last training-mode input */
	bool masked;     /* the last forward applied the mask */
} dropout;

/* ---- kernels ---------------------------------------------------------------------- */

/* mask (n) = 1/(1-p) or 0 drawn from the rng;  y (n) = x * mask */
static void dropout_forward_kernel(float *y, float *mask, const float *x, double p, int64_t n)
{
	float scale = (float)(1.0 / (1.0 - p));
	for (int64_t i = 0; i < n; i++) {
		mask[i] = ln_rng_uniform(ln_rng_global()) < p ? 0.0f : scale;
		y[i] = x[i] * mask[i];
	}
}

/* gx (n) = gy * mask */
static void dropout_backward_kernel(float *gx, const float *gy, const float *mask, int64_t n)
{
	for (int64_t i = 0; i < n; i++)
		gx[i] = gy[i] * mask[i];
}

/* ---- module ------------------------------------------------------------------------ */

static double p_of(const ln_module *m) { return m->config[0]; }

static ln_status dropout_forward(ln_module *m, const ln_tensor *x, ln_error *err)
{
	dropout *d = (dropout *)m;
	ln_status s = ln_check_rows(x, -1, NULL, err);
	if (s == LN_OK)
		s = ln_tensor_ensure(&m->output, x->ndim, x->shape, err);
	if (s != LN_OK)
		return s;
	int64_t n = ln_tensor_numel(x);
	if (m->training && p_of(m) > 0) {
		if ((s = ln_tensor_ensure(&d->mask, x->ndim, x->shape, err)) != LN_OK)
			return s;
		dropout_forward_kernel(ln_tensor_data(&m->output), ln_tensor_data(&d->mask),
		                       ln_tensor_data(x), p_of(m), n);
		d->masked = true;
	} else {
		memmove(ln_tensor_data(&m->output), ln_tensor_data(x), (size_t)n * sizeof(float));
		d->masked = false;
	}
	return LN_OK;
}

static ln_status dropout_backward(ln_module *m, const ln_tensor *x, const ln_tensor *gy,
                                  ln_error *err)
{
	dropout *d = (dropout *)m;
	ln_status s = ln_tensor_ensure(&m->grad_input, x->ndim, x->shape, err);
	if (s != LN_OK)
		return s;
	int64_t n = ln_tensor_numel(x);
	if (d->masked)
		dropout_backward_kernel(ln_tensor_data(&m->grad_input), ln_tensor_data(gy),
		                        ln_tensor_data(&d->mask), n);
	else
		memmove(ln_tensor_data(&m->grad_input), ln_tensor_data(gy), (size_t)n * sizeof(float));
	return LN_OK;
}

static void dropout_destroy(ln_module *m)
{
	ln_tensor_release(&((dropout *)m)->mask);
}

ln_status ln_dropout_new(ln_module **out, double p, ln_error *err)
{
	if (!(p >= 0 && p < 1))
		return ln_fail(err, LN_ERANGE, "expected a probability p in [0,1), got %g", ln_shown(p));
	ln_module *m;
	ln_status s = ln_module_alloc(&m, &ln_dropout_class, err);
	if (s != LN_OK)
		return s;
	m->nconfig = 1;
	m->config[0] = p;
	*out = m;
	return LN_OK;
}

static ln_status dropout_create(ln_module **out, const ln_module_class *cls,
                                const ln_module_build *ctx, const double *config, ln_error *err)
{
	return ln_dropout_new(out, config[0], err);
}

static int dropout_describe(const ln_module *m, char *buf, size_t size)
{
	return snprintf(buf, size, "Dropout(p=%g)", p_of(m));
}

const ln_module_class ln_dropout_class = {
	.name = "Dropout",
	.size = sizeof(dropout),
	.forward = dropout_forward,
	.backward = dropout_backward,
	.destroy = dropout_destroy,
	.config_names = {"p", NULL},
	.create = dropout_create,
	.describe = dropout_describe,
};
