/*
 * softmax.c -- Softmax and LogSoftmax over the last dimension.
 *
 * The input is viewed as rows (R,C): C is the last dimension and R the
 * product of the others (R = N for the usual {N,C}).  Both subtract the
 * row maximum before exponentiating, so no exp overflows; sums are in
 * double.  Forward saves its output y, which backward uses.  Every kernel
 * finishes reading a row of its input before (or while) writing the same
 * element, so input and output may be the same memory.
 */
#include <math.h>
#include <stdio.h>

#include "layers.h"
#include "nn_internal.h"

/* ---- kernels ---------------------------------------------------------------------- */

static float row_max(const float *x, int64_t c)
{
	float mx = x[0];
	for (int64_t j = 1; j < c; j++)
		if (x[j] > mx || isnan(x[j]))
			mx = x[j];
	return mx;
}

/* y (R,C): y_ij = exp(x_ij - m_i) / sum_k exp(x_ik - m_i), m_i = max_k x_ik */
static void softmax_forward_kernel(float *y, const float *x, int64_t rows, int64_t c)
{
	for (int64_t i = 0; i < rows; i++) {
		const float *xr = x + i * c;
		float *yr = y + i * c;
		float mx = row_max(xr, c);
		double sum = 0;
		for (int64_t j = 0; j < c; j++) {
			yr[j] = expf(xr[j] - mx);
			sum += yr[j];
		}
		float inv = (float)(1.0 / sum);
		for (int64_t j = 0; j < c; j++)
			yr[j] *= inv;
	}
}

/* gx (R,C): gx_ij = y_ij (gy_ij - sum_k gy_ik y_ik) */
static void softmax_backward_kernel(float *gx, const float *gy, const float *y, int64_t rows,
                                    int64_t c)
{
	for (int64_t i = 0; i < rows; i++) {
		const float *gyr = gy + i * c, *yr = y + i * c;
		float *gxr = gx + i * c;
		double dot = 0;
		for (int64_t j = 0; j < c; j++)
			dot += (double)gyr[j] * yr[j];
		for (int64_t j = 0; j < c; j++)
			gxr[j] = (float)(yr[j] * (gyr[j] - dot));
	}
}

/* y (R,C): y_ij = x_ij - m_i - log sum_k exp(x_ik - m_i) */
static void log_softmax_forward_kernel(float *y, const float *x, int64_t rows, int64_t c)
{
	for (int64_t i = 0; i < rows; i++) {
		const float *xr = x + i * c;
		float *yr = y + i * c;
		float mx = row_max(xr, c);
		double sum = 0;
		for (int64_t j = 0; j < c; j++)
			sum += exp((double)xr[j] - mx);
		double lse = mx + log(sum);
		for (int64_t j = 0; j < c; j++)
			yr[j] = (float)(xr[j] - lse);
	}
}

/* gx (R,C): gx_ij = gy_ij - exp(y_ij) sum_k gy_ik */
static void log_softmax_backward_kernel(float *gx, const float *gy, const float *y, int64_t rows,
                                        int64_t c)
{
	for (int64_t i = 0; i < rows; i++) {
		const float *gyr = gy + i * c, *yr = y + i * c;
		float *gxr = gx + i * c;
		double sum = 0;
		for (int64_t j = 0; j < c; j++)
			sum += gyr[j];
		for (int64_t j = 0; j < c; j++)
			gxr[j] = (float)(gyr[j] - exp((double)yr[j]) * sum);
	}
}

/* ---- module ------------------------------------------------------------------------ */

typedef void (*fwd_kernel)(float *y, const float *x, int64_t rows, int64_t c);
typedef void (*bwd_kernel)(float *gx, const float *gy, const float *y, int64_t rows, int64_t c);

static ln_status run_forward(ln_module *m, const ln_tensor *x, fwd_kernel k, ln_error *err)
{
	if (x->ndim < 2) {
		char got[128];
		return ln_fail(err, LN_ESHAPE, "expected input of shape {N,C} (at least 2-D), got %s",
		               ln_tensor_shape_str(x, got, sizeof got));
	}
	ln_status s = ln_tensor_ensure(&m->output, x->ndim, x->shape, err);
	if (s != LN_OK)
		return s;
	int64_t c = x->shape[x->ndim - 1];
	k(ln_tensor_data(&m->output), ln_tensor_data(x), ln_tensor_numel(x) / c, c);
	return LN_OK;
}

static ln_status run_backward(ln_module *m, const ln_tensor *x, const ln_tensor *gy, bwd_kernel k,
                              ln_error *err)
{
	ln_status s = ln_tensor_ensure(&m->grad_input, x->ndim, x->shape, err);
	if (s != LN_OK)
		return s;
	int64_t c = x->shape[x->ndim - 1];
	k(ln_tensor_data(&m->grad_input), ln_tensor_data(gy), ln_tensor_data(&m->output),
	  ln_tensor_numel(x) / c, c);
	return LN_OK;
}

static ln_status softmax_forward(ln_module *m, const ln_tensor *x, ln_error *err)
{
	return run_forward(m, x, softmax_forward_kernel, err);
}

static ln_status softmax_backward(ln_module *m, const ln_tensor *x, const ln_tensor *gy,
                                  ln_error *err)
{
	return run_backward(m, x, gy, softmax_backward_kernel, err);
}

static ln_status log_softmax_forward(ln_module *m, const ln_tensor *x, ln_error *err)
{
	return run_forward(m, x, log_softmax_forward_kernel, err);
}

static ln_status log_softmax_backward(ln_module *m, const ln_tensor *x, const ln_tensor *gy,
                                      ln_error *err)
{
	return run_backward(m, x, gy, log_softmax_backward_kernel, err);
}

ln_status ln_softmax_new(ln_module **out, ln_error *err)
{
	return ln_module_alloc(out, &ln_softmax_class, err);
}

ln_status ln_log_softmax_new(ln_module **out, ln_error *err)
{
	return ln_module_alloc(out, &ln_log_softmax_class, err);
}

static int describe(const ln_module *m, char *buf, size_t size)
{
	return snprintf(buf, size, "%s", m->cls->name);
}

const ln_module_class ln_softmax_class = {
	.name = "Softmax",
	.size = sizeof(ln_module),
	.forward = softmax_forward,
	.backward = softmax_backward,
	.create = ln_module_create_plain,
	.describe = describe,
};

const ln_module_class ln_log_softmax_class = {
	.name = "LogSoftmax",
	.size = sizeof(ln_module),
	.forward = log_softmax_forward,
	.backward = log_softmax_backward,
	.create = ln_module_create_plain,
	.describe = describe,
};
