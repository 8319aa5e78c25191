/*
 * layernorm.c -- layer normalisation over the last dimension (Ba, Kiros &
 * Hinton 2016), as torch.nn.LayerNorm(d).
 *
 *   x (M,d)  (an input {N,...,d} is M = N*... rows)
 *   mean_r = 1/d sum_j x_rj      var_r = 1/d sum_j (x_rj - mean_r)^2 (biased)
 *   rstd_r = 1 / sqrt(var_r + eps)
 *   xhat_rj = (x_rj - mean_r) rstd_r        y_rj = xhat_rj w_j + b_j
 *
 * Forward saves mean and rstd (M each); backward recomputes xhat from x.
 * With dxhat = gy w:
 *   dx_r = rstd_r (dxhat_r - mean_j(dxhat_rj) - xhat_r mean_j(dxhat_rj xhat_rj))
 *   dw += sum_r gy_r xhat_r       db += sum_r gy_r
 * Row statistics and the column sums of dw and db are accumulated in
 * double, rows in order (the column sums in two arrays of d doubles the
 * module allocates once, at construction); the row sums in 8 lanes, so
 * that they vectorise, with the one-accumulator _naive kernels beside
 * them as the reference.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../core/alloc.h"
#include "layers.h"
#include "nn_internal.h"

#define W 0
#define B 1

typedef struct layernorm {
	ln_module base;
	ln_tensor mean, rstd;  /* (M): saved by forward for backward */
	double *acc;           /* 2*d: column sums of dw, then of db */
} layernorm;

/* ---- kernels ---------------------------------------------------------------------- */

/* The row sums below run in 8 double lanes over j (the last d mod 8
 * terms in lane 0), so that the compiler vectorises them: the same
 * double accumulation as the _naive references, in another order
 * (test_sequence.c compares them). */
#define LANES 8

/* sum_j x_j, in LANES double lanes */
static double lane_sum(const float *x, int64_t d)
{
	double acc[LANES] = {0};
	int64_t j = 0;
	for (; j + LANES <= d; j += LANES)
		for (int k = 0; k < LANES; k++)
			acc[k] += x[j + k];
	for (; j < d; j++)
		acc[0] += x[j];
	return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

/* sum_j (x_j - mu)^2, in LANES double lanes */
static double lane_sq_dev(const float *x, double mu, int64_t d)
{
	double acc[LANES] = {0};
	int64_t j = 0;
	for (; j + LANES <= d; j += LANES)
		for (int k = 0; k < LANES; k++) {
			double c = x[j + k] - mu;
			acc[k] += c * c;
		}
	for (; j < d; j++) {
		double c = x[j] - mu;
		acc[0] += c * c;
	}
	return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

/* One row of y = (x - mu) rs w + b from its statistics, which are saved
 * (as floats) in *mean and *rstd: what both forward kernels share. */
static void normalise_row(float *yr, float *mean, float *rstd, const float *xr, const float *w,
                          const float *b, double mu, double rs, int64_t d)
{
	*mean = (float)mu;
	*rstd = (float)rs;
	float fm = (float)mu, fr = (float)rs;
	for (int64_t j = 0; j < d; j++)
		yr[j] = (xr[j] - fm) * fr * w[j] + b[j];
}

/* y (M,d) = (x - mean) rstd w + b, with mean (M) and rstd (M) written. */
void ln_layernorm_forward_kernel(float *y, float *mean, float *rstd, const float *x,
                                 const float *w, const float *b, int64_t rows, int64_t d,
                                 double eps)
{
	for (int64_t r = 0; r < rows; r++) {
		const float *xr = x + r * d;
		float *yr = y + r * d;
		double mu = lane_sum(xr, d) / (double)d;
		double rs = 1.0 / sqrt(lane_sq_dev(xr, mu, d) / (double)d + eps);
		normalise_row(yr, mean + r, rstd + r, xr, w, b, mu, rs, d);
	}
}

/* gx (M,d) = the formula above (overwritten; NULL: not computed); acc (2d)
 * += sum_r gy_r xhat_r, then sum_r gy_r (in double; the caller adds them
 * into dw, db). */
void ln_layernorm_backward_kernel(float *gx, double *acc, const float *gy, const float *x,
                                  const float *mean, const float *rstd, const float *w,
                                  int64_t rows, int64_t d)
{
	double *restrict aw = acc, *restrict ab = acc + d;
	for (int64_t r = 0; r < rows; r++) {
		const float *xr = x + r * d, *gr = gy + r * d;
		float *gxr = gx + r * d;
		float fm = mean[r], fr = rstd[r];
		double l1[LANES] = {0}, l2[LANES] = {0};
		int64_t j = 0;
		for (; j + LANES <= d; j += LANES)
			for (int k = 0; k < LANES; k++) {
				float xh = (xr[j + k] - fm) * fr;
				double dxh = (double)gr[j + k] * w[j + k];
				l1[k] += dxh;
				l2[k] += dxh * xh;
			}
		for (; j < d; j++) {
			float xh = (xr[j] - fm) * fr;
			double dxh = (double)gr[j] * w[j];
			l1[0] += dxh;
			l2[0] += dxh * xh;
		}
		for (j = 0; j < d; j++) {
			float xh = (xr[j] - fm) * fr;
			aw[j] += (double)gr[j] * xh;
			ab[j] += gr[j];
		}
		if (!gx)
			continue;
		double s1 = ((l1[0] + l1[4]) + (l1[1] + l1[5])) + ((l1[2] + l1[6]) + (l1[3] + l1[7]));
		double s2 = ((l2[0] + l2[4]) + (l2[1] + l2[5])) + ((l2[2] + l2[6]) + (l2[3] + l2[7]));
		float a1 = (float)(s1 / (double)d), a2 = (float)(s2 / (double)d);
		for (j = 0; j < d; j++) {
			float xh = (xr[j] - fm) * fr;
			gxr[j] = fr * (gr[j] * w[j] - a1 - xh * a2);
		}
	}
}

/* The reference of ln_layernorm_forward_kernel: each sum in one double, in
 * order of j. */
void ln_layernorm_forward_naive(float *y, float *mean, float *rstd, const float *x,
                                 const float *w, const float *b, int64_t rows, int64_t d,
                                 double eps)
{
	for (int64_t r = 0; r < rows; r++) {
		const float *xr = x + r * d;
		float *yr = y + r * d;
		double s = 0;
		for (int64_t j = 0; j < d; j++)
			s += xr[j];
		double mu = s / (double)d, v = 0;
		for (int64_t j = 0; j < d; j++) {
			double c = xr[j] - mu;
			v += c * c;
		}
		double rs = 1.0 / sqrt(v / (double)d + eps);
		normalise_row(yr, mean + r, rstd + r, xr, w, b, mu, rs, d);
	}
}

/* The reference of ln_layernorm_backward_kernel, each row sum in one
 * double, in order of j. */
void ln_layernorm_backward_naive(float *gx, double *acc, const float *gy, const float *x,
                                  const float *mean, const float *rstd, const float *w,
                                  int64_t rows, int64_t d)
{
	double *aw = acc, *ab = acc + d;
	for (int64_t r = 0; r < rows; r++) {
		const float *xr = x + r * d, *gr = gy + r * d;
		float *gxr = gx + r * d;
		float fm = mean[r], fr = rstd[r];
		double s1 = 0, s2 = 0;
		for (int64_t j = 0; j < d; j++) {
			float xh = (xr[j] - fm) * fr;
			double dxh = (double)gr[j] * w[j];
			s1 += dxh;
			s2 += dxh * xh;
			aw[j] += (double)gr[j] * xh;
			ab[j] += gr[j];
		}
		if (!gx)
			continue;
		float a1 = (float)(s1 / (double)d), a2 = (float)(s2 / (double)d);
		for (int64_t j = 0; j < d; j++) {
			float xh = (xr[j] - fm) * fr;
			gxr[j] = fr * (gr[j] * w[j] - a1 - xh * a2);
		}
	}
}

/* ---- module ------------------------------------------------------------------------ */

static int64_t d_of(const ln_module *m) { return m->param[W].shape[0]; }
static double eps_of(const ln_module *m) { return m->config[1]; }

static ln_status layernorm_forward(ln_module *m, const ln_tensor *x, ln_error *err)
{
	layernorm *ln = (layernorm *)m;
	int64_t rows, d = d_of(m);
	ln_status s = ln_check_rows(x, d, &rows, err);
	if (s == LN_OK)
		s = ln_tensor_ensure(&m->output, x->ndim, x->shape, err);
	if (s == LN_OK)
		s = ln_tensor_ensure(&ln->mean, 1, &rows, err);
	if (s == LN_OK)
		s = ln_tensor_ensure(&ln->rstd, 1, &rows, err);
	if (s != LN_OK)
		return s;
	ln_layernorm_forward_kernel(ln_tensor_data(&m->output), ln_tensor_data(&ln->mean),
	                            ln_tensor_data(&ln->rstd), ln_tensor_data(x),
	                            ln_tensor_data(&m->param[W]), ln_tensor_data(&m->param[B]), rows,
	                            d, eps_of(m));
	return LN_OK;
}

/* acc (d) added into g (d), or written when g is a pending zero */
static void add_column_sums(ln_tensor *g, const double *acc, int64_t d)
{
	bool zero = ln_tensor_take_zero(g);
	float *gd = ln_tensor_data(g);
	for (int64_t j = 0; j < d; j++)
		gd[j] = zero ? (float)acc[j] : (float)(gd[j] + acc[j]);
}

static ln_status layernorm_backward(ln_module *m, const ln_tensor *x, const ln_tensor *gy,
                                    ln_error *err)
{
	layernorm *ln = (layernorm *)m;
	int64_t d = d_of(m), rows = ln_tensor_numel(x) / d;
	ln_status s = m->want_gx ? ln_tensor_ensure(&m->grad_input, x->ndim, x->shape, err) : LN_OK;
	if (s != LN_OK)
		return s;
	memset(ln->acc, 0, 2 * (size_t)d * sizeof *ln->acc);
	ln_layernorm_backward_kernel(m->want_gx ? ln_tensor_data(&m->grad_input) : NULL, ln->acc,
	                             ln_tensor_data(gy),
	                             ln_tensor_data(x), ln_tensor_data(&ln->mean),
	                             ln_tensor_data(&ln->rstd), ln_tensor_data(&m->param[W]), rows, d);
	add_column_sums(&m->grad[W], ln->acc, d);
	add_column_sums(&m->grad[B], ln->acc + d, d);
	return LN_OK;
}

static void layernorm_destroy(ln_module *m)
{
	layernorm *ln = (layernorm *)m;
	ln_tensor_release(&ln->mean);
	ln_tensor_release(&ln->rstd);
	ln_free(ln->acc);
}

ln_status ln_layernorm_new(ln_module **out, const ln_module_build *ctx, int64_t d, double eps,
                           ln_error *err)
{
	if (d < 1)
		return ln_fail(err, LN_ERANGE, "expected a size d >= 1, got %lld", (long long)d);
	if (!(eps > 0 && isfinite(eps)))
		return ln_fail(err, LN_ERANGE, "expected eps > 0 and finite, got %g", ln_shown(eps));
	ln_module *m;
	ln_status s = ln_module_alloc(&m, &ln_layernorm_class, err);
	if (s != LN_OK)
		return s;
	m->nconfig = 2;
	m->config[0] = (double)d;
	m->config[1] = eps;
	s = ln_module_add_param(m, ctx, "weight", LN_PARAM_ONES, 1, &d, err);
	if (s == LN_OK)
		s = ln_module_add_param(m, ctx, "bias", LN_PARAM_ZEROS, 1, &d, err);
	layernorm *ln = (layernorm *)m;
	if (s == LN_OK && !(ln->acc = ln_malloc(2 * (size_t)d * sizeof *ln->acc)))
		s = ln_fail(err, LN_ENOMEM, "out of memory for LayerNorm(%lld)", (long long)d);
	if (s != LN_OK) {
		ln_module_release(m);
		return s;
	}
	*out = m;
	return LN_OK;
}

static ln_status layernorm_create(ln_module **out, const ln_module_class *cls,
                                  const ln_module_build *ctx, const double *config, ln_error *err)
{
	int64_t d;
	ln_status s = ln_config_int(&d, config[0], "d", 1, INT64_MAX, err);
	if (s != LN_OK)
		return s;
	return ln_layernorm_new(out, ctx, d, config[1], err);
}

static int layernorm_describe(const ln_module *m, char *buf, size_t size)
{
	return snprintf(buf, size, "LayerNorm(%lld, eps=%g)", (long long)d_of(m), eps_of(m));
}

const ln_module_class ln_layernorm_class = {
	.name = "LayerNorm",
	.size = sizeof(layernorm),
	.forward = layernorm_forward,
	.backward = layernorm_backward,
	.destroy = layernorm_destroy,
	.param_names = {"weight", "bias", NULL},
	.config_names = {"d", "eps", NULL},
	.config_defaults = {0, 1e-5},
	.create = layernorm_create,
	.describe = layernorm_describe,
};
