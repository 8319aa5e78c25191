/*
 * activation.c -- the elementwise activations: Identity, Sigmoid, Tanh,
 * ReLU, LeakyReLU.  One forward/backward kernel pair each; all buffers
 * have the shape of x and n elements.  Forward saves its output y (in
 * m->output), which Sigmoid and Tanh use in backward; ReLU and LeakyReLU
 * use x.  Every kernel reads element i before writing element i, so
 * input and output may be the same memory.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "layers.h"
#include "nn_internal.h"

/* ---- kernels ---------------------------------------------------------------------- */

/* y = x */
static void identity_forward_kernel(float *y, const float *x, int64_t n)
{
	memmove(y, x, (size_t)n * sizeof(float));
}

/* gx = gy */
static void identity_backward_kernel(float *gx, const float *gy, int64_t n)
{
	memmove(gx, gy, (size_t)n * sizeof(float));
}

/* y = 1 / (1 + e^-x), written so that exp never overflows:
 * for x < 0, e^x / (1 + e^x). */
static void sigmoid_forward_kernel(float *y, const float *x, int64_t n)
{
	for (int64_t i = 0; i < n; i++) {
		float v = x[i];
		if (v >= 0) {
			y[i] = 1.0f / (1.0f + expf(-v));
		} else {
			float e = expf(v);
			y[i] = e / (1.0f + e);
		}
	}
}

/* gx = gy * y * (1 - y) */
static void sigmoid_backward_kernel(float *gx, const float *gy, const float *y, int64_t n)
{
	for (int64_t i = 0; i < n; i++)
		gx[i] = gy[i] * y[i] * (1.0f - y[i]);
}

/* y = tanh(x), as sign(x) (1 - 2/(e^{2|x|} + 1)) from one exp in double:
 * a third of tanhf's instructions, and correctly rounded but for a
 * handful of 1-ulp double roundings (checked over every 7th float; glibc's
 * tanhf is off by up to 2 ulp).  For |x| <= 2^-12, tanh x rounds to x (the
 * x^3/3 term is below half an ulp); for |x| >= 9.1 it rounds to +-1.  NaN
 * stays NaN. */
static void tanh_forward_kernel(float *y, const float *x, int64_t n)
{
	for (int64_t i = 0; i < n; i++) {
		float v = x[i], a = fabsf(v);
		if (!(a > 0x1p-12f))
			y[i] = v;
		else if (a >= 9.1f)
			y[i] = copysignf(1.0f, v);
		else
			y[i] = copysignf((float)(1.0 - 2.0 / (exp(2.0 * (double)a) + 1.0)), v);
	}
}

/* gx = gy * (1 - y^2) */
static void tanh_backward_kernel(float *gx, const float *gy, const float *y, int64_t n)
{
	for (int64_t i = 0; i < n; i++)
		gx[i] = gy[i] * (1.0f - y[i] * y[i]);
}

/* y = max(x, 0); NaN stays NaN */
static void relu_forward_kernel(float *y, const float *x, int64_t n)
{
	for (int64_t i = 0; i < n; i++)
		y[i] = x[i] < 0 ? 0.0f : x[i];
}

/* gx = gy where x > 0, else 0 (0 at the kink, as in Torch) */
static void relu_backward_kernel(float *gx, const float *gy, const float *x, int64_t n)
{
	for (int64_t i = 0; i < n; i++)
		gx[i] = x[i] > 0 ? gy[i] : 0.0f;
}

/* y = x where x > 0, else slope * x */
static void leaky_relu_forward_kernel(float *y, const float *x, float slope, int64_t n)
{
	for (int64_t i = 0; i < n; i++)
		y[i] = x[i] > 0 ? x[i] : slope * x[i];
}

/* gx = gy where x > 0, else slope * gy */
static void leaky_relu_backward_kernel(float *gx, const float *gy, const float *x, float slope,
                                       int64_t n)
{
	for (int64_t i = 0; i < n; i++)
		gx[i] = x[i] > 0 ? gy[i] : slope * gy[i];
}

/* ---- shared wrappers ------------------------------------------------------------------ */

/* Makes m->output the shape of x. */
static ln_status prepare_forward(ln_module *m, const ln_tensor *x, ln_error *err)
{
	return ln_tensor_ensure(&m->output, x->ndim, x->shape, err);
}

/* The pieces each class needs, by name: n, x, y, gy, gx. */
#define FORWARD_PROLOGUE                                  \
	ln_status s = prepare_forward(m, x, err);             \
	if (s != LN_OK)                                       \
		return s;                                         \
	int64_t n = ln_tensor_numel(x);                       \
	float *y = ln_tensor_data(&m->output);
#define BACKWARD_PROLOGUE                                 \
	ln_status s = ln_tensor_ensure(&m->grad_input, x->ndim, x->shape, err); \
	if (s != LN_OK)                                       \
		return s;                                         \
	int64_t n = ln_tensor_numel(x);                       \
	float *gx = ln_tensor_data(&m->grad_input);

static int describe_plain(const ln_module *m, char *buf, size_t size)
{
	return snprintf(buf, size, "%s", m->cls->name);
}

/* Builds a module of a class with no parameters and no config. */
static ln_status new_plain(ln_module **out, const ln_module_class *cls, ln_error *err)
{
	return ln_module_alloc(out, cls, err);
}

#define PLAIN_CLASS(var, cname, fwd, bwd, createfn)       \
	const ln_module_class var = {                         \
		.name = cname,                                    \
		.size = sizeof(ln_module),                        \
		.forward = fwd,                                   \
		.backward = bwd,                                  \
		.param_names = {NULL},                            \
		.buffer_names = {NULL},                           \
		.config_names = {NULL},                           \
		.create = createfn,                               \
		.describe = describe_plain,                       \
	}

/* ---- Identity -------------------------------------------------------------------------- */

static ln_status identity_forward(ln_module *m, const ln_tensor *x, ln_error *err)
{
	FORWARD_PROLOGUE
	identity_forward_kernel(y, ln_tensor_data(x), n);
	return LN_OK;
}

static ln_status identity_backward(ln_module *m, const ln_tensor *x, const ln_tensor *gy,
                                   ln_error *err)
{
	BACKWARD_PROLOGUE
	identity_backward_kernel(gx, ln_tensor_data(gy), n);
	return LN_OK;
}

ln_status ln_identity_new(ln_module **out, ln_error *err)
{
	return new_plain(out, &ln_identity_class, err);
}

static ln_status identity_create(ln_module **out, const ln_module_build *ctx, const double *config,
                              ln_error *err)
{
	return ln_identity_new(out, err);
}

PLAIN_CLASS(ln_identity_class, "Identity", identity_forward, identity_backward, identity_create);

/* ---- Sigmoid ------------------------------------------------------------------------------ */

static ln_status sigmoid_forward(ln_module *m, const ln_tensor *x, ln_error *err)
{
	FORWARD_PROLOGUE
	sigmoid_forward_kernel(y, ln_tensor_data(x), n);
	return LN_OK;
}

static ln_status sigmoid_backward(ln_module *m, const ln_tensor *x, const ln_tensor *gy,
                                  ln_error *err)
{
	BACKWARD_PROLOGUE
	sigmoid_backward_kernel(gx, ln_tensor_data(gy), ln_tensor_data(&m->output), n);
	return LN_OK;
}

ln_status ln_sigmoid_new(ln_module **out, ln_error *err)
{
	return new_plain(out, &ln_sigmoid_class, err);
}

static ln_status sigmoid_create(ln_module **out, const ln_module_build *ctx, const double *config,
                              ln_error *err)
{
	return ln_sigmoid_new(out, err);
}

PLAIN_CLASS(ln_sigmoid_class, "Sigmoid", sigmoid_forward, sigmoid_backward, sigmoid_create);

/* ---- Tanh --------------------------------------------------------------------------------- */

static ln_status tanh_forward(ln_module *m, const ln_tensor *x, ln_error *err)
{
	FORWARD_PROLOGUE
	tanh_forward_kernel(y, ln_tensor_data(x), n);
	return LN_OK;
}

static ln_status tanh_backward(ln_module *m, const ln_tensor *x, const ln_tensor *gy,
                               ln_error *err)
{
	BACKWARD_PROLOGUE
	tanh_backward_kernel(gx, ln_tensor_data(gy), ln_tensor_data(&m->output), n);
	return LN_OK;
}

ln_status ln_tanh_new(ln_module **out, ln_error *err)
{
	return new_plain(out, &ln_tanh_class, err);
}

static ln_status tanh_create(ln_module **out, const ln_module_build *ctx, const double *config,
                              ln_error *err)
{
	return ln_tanh_new(out, err);
}

PLAIN_CLASS(ln_tanh_class, "Tanh", tanh_forward, tanh_backward, tanh_create);

/* ---- ReLU --------------------------------------------------------------------------------- */

static ln_status relu_forward(ln_module *m, const ln_tensor *x, ln_error *err)
{
	FORWARD_PROLOGUE
	relu_forward_kernel(y, ln_tensor_data(x), n);
	return LN_OK;
}

static ln_status relu_backward(ln_module *m, const ln_tensor *x, const ln_tensor *gy,
                               ln_error *err)
{
	BACKWARD_PROLOGUE
	relu_backward_kernel(gx, ln_tensor_data(gy), ln_tensor_data(x), n);
	return LN_OK;
}

ln_status ln_relu_new(ln_module **out, ln_error *err)
{
	return new_plain(out, &ln_relu_class, err);
}

static ln_status relu_create(ln_module **out, const ln_module_build *ctx, const double *config,
                              ln_error *err)
{
	return ln_relu_new(out, err);
}

PLAIN_CLASS(ln_relu_class, "ReLU", relu_forward, relu_backward, relu_create);

/* ---- LeakyReLU (config: slope) ------------------------------------------------------------ */

static float slope_of(const ln_module *m) { return (float)m->config[0]; }

static ln_status leaky_relu_forward(ln_module *m, const ln_tensor *x, ln_error *err)
{
	FORWARD_PROLOGUE
	leaky_relu_forward_kernel(y, ln_tensor_data(x), slope_of(m), n);
	return LN_OK;
}

static ln_status leaky_relu_backward(ln_module *m, const ln_tensor *x, const ln_tensor *gy,
                                     ln_error *err)
{
	BACKWARD_PROLOGUE
	leaky_relu_backward_kernel(gx, ln_tensor_data(gy), ln_tensor_data(x), slope_of(m), n);
	return LN_OK;
}

ln_status ln_leaky_relu_new(ln_module **out, double slope, ln_error *err)
{
	if (!isfinite(slope) || fabs(slope) > 1e30)
		return ln_fail(err, LN_ERANGE, "expected a finite slope, got %g", slope);
	ln_module *m;
	ln_status s = ln_module_alloc(&m, &ln_leaky_relu_class, err);
	if (s != LN_OK)
		return s;
	m->nconfig = 1;
	m->config[0] = slope;
	*out = m;
	return LN_OK;
}

static ln_status leaky_relu_create(ln_module **out, const ln_module_build *ctx, const double *config,
                              ln_error *err)
{
	return ln_leaky_relu_new(out, config[0], err);
}

static int leaky_relu_describe(const ln_module *m, char *buf, size_t size)
{
	return snprintf(buf, size, "LeakyReLU(%g)", m->config[0]);
}

const ln_module_class ln_leaky_relu_class = {
	.name = "LeakyReLU",
	.size = sizeof(ln_module),
	.forward = leaky_relu_forward,
	.backward = leaky_relu_backward,
	.param_names = {NULL},
	.buffer_names = {NULL},
	.config_names = {"slope", NULL},
	.create = leaky_relu_create,
	.describe = leaky_relu_describe,
};
