/*
 * activation.c -- the elementwise activations, in one table.
 *
 * Each row of `table` below is one activation: its name (the class name
 * scripts and files use), a forward and a backward kernel, and, for the
 * ones that have it, the name and default of its one parameter
 * (LeakyReLU's slope, its class's config_defaults[0]).  One generic forward and backward run every row,
 * the registry and the Lua binding list the rows, so adding an activation
 * is two kernels and one row.
 *
 * Kernels, n elements (the module takes any shape of at least 2
 * dimensions, {N,...}):
 *   forward   y = f(x)
 *   backward  gx = gy * f'(x), computed from x or from the saved output
 *             y = f(x), whichever is cheaper (both are passed)
 * a is the parameter (0 for the activations that have none).  Every
 * kernel reads element i before writing element i, so input and output
 * may be the same memory.  Forward saves nothing beyond m->output.
 */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cellmath.h"
#include "layers.h"
#include "nn_internal.h"

/* ---- kernels ---------------------------------------------------------------------- */

/* y = x */
static void identity_forward(float *y, const float *x, int64_t n, float a)
{
	memmove(y, x, (size_t)n * sizeof(float));
}

/* gx = gy */
static void identity_backward(float *gx, const float *gy, const float *x, const float *y,
                              int64_t n, float a)
{
	memmove(gx, gy, (size_t)n * sizeof(float));
}

/* y = 1 / (1 + e^-x), written so that exp never overflows:
 * for x < 0, e^x / (1 + e^x). */
static void sigmoid_forward(float *y, const float *x, int64_t n, float a)
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
static void sigmoid_backward(float *gx, const float *gy, const float *x, const float *y,
                             int64_t n, float a)
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
static void tanh_forward(float *y, const float *x, int64_t n, float a)
{
	for (int64_t i = 0; i < n; i++) {
		float v = x[i], av = fabsf(v);
		if (!(av > 0x1p-12f))
			y[i] = v;
		else if (av >= 9.1f)
			y[i] = copysignf(1.0f, v);
		else
			y[i] = copysignf((float)(1.0 - 2.0 / (exp(2.0 * (double)av) + 1.0)), v);
	}
}

/* gx = gy * (1 - y^2) */
static void tanh_backward(float *gx, const float *gy, const float *x, const float *y, int64_t n,
                          float a)
{
	for (int64_t i = 0; i < n; i++)
		gx[i] = gy[i] * (1.0f - y[i] * y[i]);
}

/* y = max(x, 0); NaN stays NaN */
static void relu_forward(float *y, const float *x, int64_t n, float a)
{
	for (int64_t i = 0; i < n; i++)
		y[i] = x[i] < 0 ? 0.0f : x[i];
}

/* gx = gy where x > 0, else 0 (0 at the kink, as in Torch) */
static void relu_backward(float *gx, const float *gy, const float *x, const float *y, int64_t n,
                          float a)
{
	for (int64_t i = 0; i < n; i++)
		gx[i] = x[i] > 0 ? gy[i] : 0.0f;
}

/* y = x where x > 0, else a * x (a: the slope) */
static void leaky_relu_forward(float *y, const float *x, int64_t n, float a)
{
	for (int64_t i = 0; i < n; i++)
		y[i] = x[i] > 0 ? x[i] : a * x[i];
}

/* gx = gy where x > 0, else a * gy */
static void leaky_relu_backward(float *gx, const float *gy, const float *x, const float *y,
                                int64_t n, float a)
{
	for (int64_t i = 0; i < n; i++)
		gx[i] = x[i] > 0 ? gy[i] : a * gy[i];
}

/* y = x Phi(x) = x (1 + erf(x / sqrt 2)) / 2, GELU in its exact form
 * (Hendrycks & Gimpel 2016; PyTorch's approximate="none"), with
 * cellmath.h's Phi (vectorised; within 1e-7 of erf's) */
static void gelu_forward(float *y, const float *x, int64_t n, float a)
{
	for (int64_t i = 0; i < n; i++)
		y[i] = x[i] * ln_normal_cdf_fast(x[i]);
}

/* gx = gy (Phi(x) + x phi(x)), phi(x) = exp(-x^2/2) / sqrt(2 pi), with
 * Phi(x) = y / x from the saved output (a division instead of Phi again;
 * 1/2 for |x| < 1e-30, where y / x would lose digits, and 0 below -13,
 * where Phi(x) < 1e-38: y is subnormal there, and the true term is below
 * 1e-37 anyway). */
static void gelu_backward(float *gx, const float *gy, const float *x, const float *y, int64_t n,
                          float a)
{
	const float inv_sqrt_2pi = 0.39894228040143267794f;
	for (int64_t i = 0; i < n; i++) {
		float v = x[i];
		float cdf = fabsf(v) < 1e-30f ? 0.5f : v < -13.0f ? 0.0f : y[i] / v;
		gx[i] = gy[i] * (cdf + v * inv_sqrt_2pi * ln_gauss_fast(v));
	}
}

/* The references of the two above, in libm's erff and expf. */
void ln_gelu_forward_naive(float *y, const float *x, int64_t n)
{
	for (int64_t i = 0; i < n; i++)
		y[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.70710678118654752f));
}

void ln_gelu_backward_naive(float *gx, const float *gy, const float *x, int64_t n)
{
	const float inv_sqrt_2pi = 0.39894228040143267794f;
	for (int64_t i = 0; i < n; i++) {
		float v = x[i];
		float cdf = 0.5f * (1.0f + erff(v * 0.70710678118654752f));
		gx[i] = gy[i] * (cdf + v * inv_sqrt_2pi * expf(-0.5f * v * v));
	}
}

/* sigma(v) without overflow for either sign */
static inline float sigmoidf(float v)
{
	if (v >= 0)
		return 1.0f / (1.0f + expf(-v));
	float e = expf(v);
	return e / (1.0f + e);
}

/* y = x sigma(x) (SiLU, also called swish) */
static void silu_forward(float *y, const float *x, int64_t n, float a)
{
	for (int64_t i = 0; i < n; i++)
		y[i] = x[i] * sigmoidf(x[i]);
}

/* gx = gy sigma(x) (1 + x (1 - sigma(x))) */
static void silu_backward(float *gx, const float *gy, const float *x, const float *y, int64_t n,
                          float a)
{
	for (int64_t i = 0; i < n; i++) {
		float sg = sigmoidf(x[i]);
		gx[i] = gy[i] * sg * (1.0f + x[i] * (1.0f - sg));
	}
}

/* ---- the generic module ----------------------------------------------------------------- */

static const ln_activation_def *def_of(const ln_module *m)
{
	return (const ln_activation_def *)m->cls;  /* cls is the row's first member */
}

static float param_of(const ln_module *m)
{
	return m->nconfig > 0 ? (float)m->config[0] : 0.0f;
}

/* Samples are rows of numel/N floats of x, of the output and of the
 * gradients (x {N,...}, at least 2-D: ln_check_rows). */
static int64_t per_sample(const ln_tensor *x)
{
	const int64_t n = x->ndim > 0 ? x->shape[0] : 1;
	return n > 0 ? ln_tensor_numel(x) / n : 0;
}

static ln_status act_forward_prepare(ln_module *m, const ln_tensor *x, int parts, double *work,
                                     ln_error *err)
{
	ln_status s = ln_check_rows(x, -1, NULL, err);
	if (s != LN_OK)
		return s;
	*work += (double)ln_tensor_numel(x);
	return ln_tensor_ensure(&m->output, x->ndim, x->shape, err);
}

static void act_forward_rows(ln_module *m, const ln_tensor *x, int64_t n0, int64_t n1, int part)
{
	const int64_t per = per_sample(x);
	def_of(m)->forward(ln_tensor_data(&m->output) + n0 * per, ln_tensor_data(x) + n0 * per,
	                   (n1 - n0) * per, param_of(m));
}

/* x is the last forward's input and m->output its result (ln_module_backward). */
static ln_status act_backward_prepare(ln_module *m, const ln_tensor *x, int parts, int runs,
                                      double *work, ln_error *err)
{
	*work += (double)ln_tensor_numel(x);
	return m->want_gx ? ln_tensor_ensure(&m->grad_input, x->ndim, x->shape, err) : LN_OK;
}

static void act_backward_rows(ln_module *m, const ln_tensor *x, const ln_tensor *gy, int64_t n0,
                              int64_t n1, int run, bool first, int part)
{
	if (!m->want_gx)
		return;
	const int64_t per = per_sample(x), at = n0 * per;
	def_of(m)->backward(ln_tensor_data(&m->grad_input) + at, ln_tensor_data(gy) + at,
	                    ln_tensor_data(x) + at, ln_tensor_data(&m->output) + at, (n1 - n0) * per,
	                    param_of(m));
}

static const ln_rows_ops act_rows = {
	.forward_prepare = act_forward_prepare,
	.forward_rows = act_forward_rows,
	.backward_prepare = act_backward_prepare,
	.backward_rows = act_backward_rows,
};

/* config {param} for the rows that have one (a finite float), none for
 * the others; nothing to draw, so ctx is not used. */
static ln_status act_create(ln_module **out, const ln_module_class *cls,
                            const ln_module_build *ctx, const double *config, ln_error *err)
{
	*out = NULL;
	const char *pname = cls->config_names[0];
	if (pname && !(fabs(config[0]) <= FLT_MAX))
		return ln_fail(err, LN_ERANGE, "expected a finite %s, got %g", pname, ln_shown(config[0]));
	ln_module *m;
	ln_status s = ln_module_alloc(&m, cls, err);
	if (s != LN_OK)
		return s;
	if (pname) {
		m->nconfig = 1;
		m->config[0] = config[0];
	}
	*out = m;
	return LN_OK;
}

static int act_describe(const ln_module *m, char *buf, size_t size)
{
	if (m->nconfig > 0)
		return snprintf(buf, size, "%s(%g)", m->cls->name, m->config[0]);
	return snprintf(buf, size, "%s", m->cls->name);
}

/* ---- the table ---------------------------------------------------------------------------- */

/* A row: name, kernels; ACTIVATION_P adds the parameter's name and default. */
#define ACTIVATION_P(nm, fwd, bwd, pname, pdefault)                                         \
	{                                                                                       \
		.cls = {.name = nm, .size = sizeof(ln_module), .rows = &act_rows,                  \
		        .config_names = {pname}, .config_defaults = {pdefault},                     \
		        .create = act_create, .describe = act_describe},                            \
		.forward = fwd, .backward = bwd,                                                    \
	}
#define ACTIVATION(nm, fwd, bwd) ACTIVATION_P(nm, fwd, bwd, NULL, 0)

static const ln_activation_def table[] = {
	ACTIVATION("Identity", identity_forward, identity_backward),
	ACTIVATION("Sigmoid", sigmoid_forward, sigmoid_backward),
	ACTIVATION("Tanh", tanh_forward, tanh_backward),
	ACTIVATION("ReLU", relu_forward, relu_backward),
	ACTIVATION_P("LeakyReLU", leaky_relu_forward, leaky_relu_backward, "slope", 0.01),
	ACTIVATION("GELU", gelu_forward, gelu_backward),
	ACTIVATION("SiLU", silu_forward, silu_backward),
};

const ln_activation_def *ln_activation_defs(int *count)
{
	*count = (int)(sizeof table / sizeof table[0]);
	return table;
}

ln_status ln_activation_new(ln_module **out, const char *name, double param, ln_error *err)
{
	for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
		if (strcmp(table[i].cls.name, name) == 0)
			return act_create(out, &table[i].cls, NULL, &param, err);
	*out = NULL;
	return ln_fail(err, LN_EARG, "no activation called \"%s\"", name);
}

bool ln_activation_is_relu(const ln_module *m)
{
	return m->cls->rows == &act_rows && def_of(m)->forward == relu_forward;
}
