/*
 * softmax.c -- Softmax and LogSoftmax over one dimension (the last by
 * default; any other with a dim, as torch.nn.Softmax(dim)).
 *
 * The input is viewed as (outer, C, inner): C is the size of the
 * dimension, outer the product of the dimensions before it and inner of
 * those after it, so element (o, j, q) sits at (o*C + j)*inner + q and a
 * "row" is the C elements of one (o, q), inner apart.  Over the last
 * dimension inner = 1 and the rows are contiguous.  Both subtract the row
 * maximum before exponentiating, so no exp overflows; sums are in double.
 * Forward saves its output y, which backward uses.  Every kernel finishes
 * reading a row of its input before (or while) writing the same element,
 * so input and output may be the same memory.
 *
 * Config: dim, 1-based, negative counting from the end (-1, the last, is
 * the default); it is resolved against each input's rank at forward.
 */
#include <math.h>
#include <stdio.h>

#include "layers.h"
#include "nn_internal.h"

/* ---- kernels ----------------------------------------------------------------------
 * x, y, gx, gy (outer, c, inner); row (o, q) is x[(o*c + j)*inner + q], j < c. */

static float row_max(const float *x, int64_t c, int64_t inner)
{
	float mx = x[0];
	for (int64_t j = 1; j < c; j++)
		if (x[j * inner] > mx || isnan(x[j * inner]))
			mx = x[j * inner];
	return mx;
}

/* y_j = exp(x_j - m) / sum_k exp(x_k - m), m = max_k x_k, along each row */
static void softmax_forward_kernel(float *y, const float *x, int64_t outer, int64_t c,
                                   int64_t inner)
{
	for (int64_t o = 0; o < outer; o++) {
		for (int64_t q = 0; q < inner; q++) {
			const float *xr = x + o * c * inner + q;
			float *yr = y + o * c * inner + q;
			float mx = row_max(xr, c, inner);
			double sum = 0;
			for (int64_t j = 0; j < c; j++) {
				yr[j * inner] = expf(xr[j * inner] - mx);
				sum += yr[j * inner];
			}
			float inv = (float)(1.0 / sum);
			for (int64_t j = 0; j < c; j++)
				yr[j * inner] *= inv;
		}
	}
}

/* gx_j = y_j (gy_j - sum_k gy_k y_k), along each row */
static void softmax_backward_kernel(float *gx, const float *gy, const float *y, int64_t outer,
                                    int64_t c, int64_t inner)
{
	for (int64_t o = 0; o < outer; o++) {
		for (int64_t q = 0; q < inner; q++) {
			int64_t base = o * c * inner + q;
			const float *gyr = gy + base, *yr = y + base;
			float *gxr = gx + base;
			double dot = 0;
			for (int64_t j = 0; j < c; j++)
				dot += (double)gyr[j * inner] * yr[j * inner];
			for (int64_t j = 0; j < c; j++)
				gxr[j * inner] = (float)(yr[j * inner] * (gyr[j * inner] - dot));
		}
	}
}

/* y_j = x_j - m - log sum_k exp(x_k - m), along each row */
static void log_softmax_forward_kernel(float *y, const float *x, int64_t outer, int64_t c,
                                       int64_t inner)
{
	for (int64_t o = 0; o < outer; o++) {
		for (int64_t q = 0; q < inner; q++) {
			const float *xr = x + o * c * inner + q;
			float *yr = y + o * c * inner + q;
			float mx = row_max(xr, c, inner);
			double sum = 0;
			for (int64_t j = 0; j < c; j++)
				sum += exp((double)xr[j * inner] - mx);
			double lse = mx + log(sum);
			for (int64_t j = 0; j < c; j++)
				yr[j * inner] = (float)(xr[j * inner] - lse);
		}
	}
}

/* gx_j = gy_j - exp(y_j) sum_k gy_k, along each row */
static void log_softmax_backward_kernel(float *gx, const float *gy, const float *y, int64_t outer,
                                        int64_t c, int64_t inner)
{
	for (int64_t o = 0; o < outer; o++) {
		for (int64_t q = 0; q < inner; q++) {
			int64_t base = o * c * inner + q;
			const float *gyr = gy + base, *yr = y + base;
			float *gxr = gx + base;
			double sum = 0;
			for (int64_t j = 0; j < c; j++)
				sum += gyr[j * inner];
			for (int64_t j = 0; j < c; j++)
				gxr[j * inner] = (float)(gyr[j * inner] - exp((double)yr[j * inner]) * sum);
		}
	}
}

/* ---- module ------------------------------------------------------------------------ */

typedef void (*fwd_kernel)(float *y, const float *x, int64_t outer, int64_t c, int64_t inner);
typedef void (*bwd_kernel)(float *gx, const float *gy, const float *y, int64_t outer, int64_t c,
                           int64_t inner);

/* The (outer, c, inner) view of x along m's dim, after checking that x
 * has at least 2 dimensions and that dim names one of them. */
static ln_status split(const ln_module *m, const ln_tensor *x, int64_t *outer, int64_t *c,
                       int64_t *inner, ln_error *err)
{
	char got[128];
	*outer = *c = *inner = 1;
	if (x->ndim < 2)
		return ln_fail(err, LN_ESHAPE, "expected input of shape {N,C} (at least 2-D), got %s",
		               ln_tensor_shape_str(x, got, sizeof got));
	int64_t dim = (int64_t)m->config[0];
	int64_t d = dim < 0 ? x->ndim + dim : dim - 1;
	if (d < 0 || d >= x->ndim)
		return ln_fail(err, LN_ESHAPE, "dim %lld does not exist in an input of shape %s "
		               "(expected 1..%d or -%d..-1)", (long long)dim,
		               ln_tensor_shape_str(x, got, sizeof got), x->ndim, x->ndim);
	for (int i = 0; i < d; i++)
		*outer *= x->shape[i];
	for (int i = (int)d + 1; i < x->ndim; i++)
		*inner *= x->shape[i];
	*c = x->shape[d];
	return LN_OK;
}

static ln_status run_forward(ln_module *m, const ln_tensor *x, fwd_kernel k, ln_error *err)
{
	int64_t outer, c, inner;
	ln_status s = split(m, x, &outer, &c, &inner, err);
	if (s == LN_OK)
		s = ln_tensor_ensure(&m->output, x->ndim, x->shape, err);
	if (s != LN_OK)
		return s;
	k(ln_tensor_data(&m->output), ln_tensor_data(x), outer, c, inner);
	return LN_OK;
}

static ln_status run_backward(ln_module *m, const ln_tensor *x, const ln_tensor *gy, bwd_kernel k,
                              ln_error *err)
{
	int64_t outer, c, inner;
	ln_status s = split(m, x, &outer, &c, &inner, err);
	if (s == LN_OK)
		s = ln_tensor_ensure(&m->grad_input, x->ndim, x->shape, err);
	if (s != LN_OK)
		return s;
	k(ln_tensor_data(&m->grad_input), ln_tensor_data(gy), ln_tensor_data(&m->output), outer, c,
	  inner);
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

/* Builds either class over dim (config[0]; NULL config: -1).  LN_ERANGE
 * unless dim is a non-zero integer within +-LN_MAX_DIMS. */
static ln_status softmax_create(ln_module **out, const ln_module_class *cls,
                                const ln_module_build *ctx, const double *config, ln_error *err)
{
	(void)ctx;
	int64_t dim = -1;
	if (config) {
		ln_status st = ln_config_int(&dim, config[0], "dim", -LN_MAX_DIMS, LN_MAX_DIMS, err);
		if (st != LN_OK)
			return st;
		if (dim == 0)
			return ln_fail(err, LN_ERANGE, "dim must not be 0 (dimensions count from 1; "
			               "-1 is the last)");
	}
	ln_module *m;
	ln_status st = ln_module_alloc(&m, cls, err);
	if (st != LN_OK)
		return st;
	m->nconfig = 1;
	m->config[0] = (double)dim;
	*out = m;
	return LN_OK;
}

ln_status ln_softmax_new_dim(ln_module **out, int64_t dim, ln_error *err)
{
	return softmax_create(out, &ln_softmax_class, NULL, (const double[]){(double)dim}, err);
}

ln_status ln_log_softmax_new_dim(ln_module **out, int64_t dim, ln_error *err)
{
	return softmax_create(out, &ln_log_softmax_class, NULL, (const double[]){(double)dim}, err);
}

ln_status ln_softmax_new(ln_module **out, ln_error *err)
{
	return ln_softmax_new_dim(out, -1, err);
}

ln_status ln_log_softmax_new(ln_module **out, ln_error *err)
{
	return ln_log_softmax_new_dim(out, -1, err);
}

/* "Softmax" over the last dimension, "Softmax(dim=2)" over another. */
static int describe(const ln_module *m, char *buf, size_t size)
{
	if (m->config[0] == -1)
		return snprintf(buf, size, "%s", m->cls->name);
	return snprintf(buf, size, "%s(dim=%lld)", m->cls->name, (long long)m->config[0]);
}

const ln_module_class ln_softmax_class = {
	.name = "Softmax",
	.size = sizeof(ln_module),
	.forward = softmax_forward,
	.backward = softmax_backward,
	.config_names = {"dim", NULL},
	/* files written before Softmax took a dim have none: the last */
	.config_defaults = {-1},
	.config_optional = 1,
	.create = softmax_create,
	.describe = describe,
};

const ln_module_class ln_log_softmax_class = {
	.name = "LogSoftmax",
	.size = sizeof(ln_module),
	.forward = log_softmax_forward,
	.backward = log_softmax_backward,
	.config_names = {"dim", NULL},
	.config_defaults = {-1},
	.config_optional = 1,
	.create = softmax_create,
	.describe = describe,
};
