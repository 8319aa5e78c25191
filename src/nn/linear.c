/*
 * linear.c -- the fully connected layer, y = x W^T + b.
 *
 *   x (N,nin)  weight W (nout,nin)  bias b (nout)  y (N,nout)
 *
 * An input of more dimensions, {N,...,nin}, is N*... rows of nin (the
 * output {N,...,nout}).
 *
 * Forward saves nothing: backward reads x (given again) and W.
 */
#include <stdio.h>
#include <string.h>

#include "../core/gemm.h"
#include "layers.h"
#include "nn_internal.h"

#define W 0  /* param index of the weight */
#define B 1  /* and of the bias, when present */

/* ---- kernels ---------------------------------------------------------------------- */

/* y (N,nout) = x (N,nin) W^T + b: one product, the bias added to each row
 * as the product writes it (b may be NULL). */
void ln_linear_forward_kernel(float *y, const float *x, const float *w, const float *b, int64_t n,
                              int64_t nin, int64_t nout)
{
	ln_gemm_biased(false, true, n, nout, nin, 1.0f, x, nin, w, nin, 0.0f, y, nout, NULL, b);
}

/* The same maths as three plain loops with a double accumulator. */
void ln_linear_forward_naive(float *y, const float *x, const float *w, const float *b, int64_t n,
                             int64_t nin, int64_t nout)
{
	for (int64_t i = 0; i < n; i++)
		for (int64_t o = 0; o < nout; o++) {
			double s = b ? b[o] : 0.0;
			for (int64_t k = 0; k < nin; k++)
				s += (double)x[i * nin + k] * w[o * nin + k];
			y[i * nout + o] = (float)s;
		}
}

/* Columns go in blocks so that the accumulators stay on the stack and rows
 * are read contiguously. */
void ln_colsum_add(float *gb, const float *gy, int64_t n, int64_t nout, bool overwrite)
{
	enum { BLOCK = 256 };
	double acc[BLOCK];
	for (int64_t j0 = 0; j0 < nout; j0 += BLOCK) {
		int64_t nb = nout - j0 < BLOCK ? nout - j0 : BLOCK;
		for (int64_t j = 0; j < nb; j++)
			acc[j] = 0;
		for (int64_t i = 0; i < n; i++) {
			const float *row = gy + i * nout + j0;
			for (int64_t j = 0; j < nb; j++)
				acc[j] += row[j];
		}
		for (int64_t j = 0; j < nb; j++)
			gb[j0 + j] = overwrite ? (float)acc[j] : (float)(gb[j0 + j] + acc[j]);
	}
}

/* gw (nout,nin) += gy^T (nout,N) x (N,nin);  gb (nout) += column sums of gy;
 * gx (N,nin) = gy (N,nout) W (nout,nin), overwritten; gx may be NULL (no
 * input gradient wanted).  With gw_zero (gb_zero), gw (gb) is overwritten
 * instead: its old contents are known to be zero and are not read.  The
 * parameter gradients are computed first, so gx may share memory with x. */
static void backward_kernel(float *gx, float *gw, float *gb, const float *gy, const float *x,
                            const float *w, int64_t n, int64_t nin, int64_t nout, bool gw_zero,
                            bool gb_zero)
{
	ln_gemm(true, false, nout, nin, n, 1.0f, gy, nout, x, nin, gw_zero ? 0.0f : 1.0f, gw, nin);
	if (gb)
		ln_colsum_add(gb, gy, n, nout, gb_zero);
	if (gx)
		ln_gemm(false, false, n, nin, nout, 1.0f, gy, nout, w, nin, 0.0f, gx, nin);
}

void ln_linear_backward_kernel(float *gx, float *gw, float *gb, const float *gy, const float *x,
                               const float *w, int64_t n, int64_t nin, int64_t nout)
{
	backward_kernel(gx, gw, gb, gy, x, w, n, nin, nout, false, false);
}

void ln_linear_backward_naive(float *gx, float *gw, float *gb, const float *gy, const float *x,
                              const float *w, int64_t n, int64_t nin, int64_t nout)
{
	for (int64_t o = 0; o < nout; o++)
		for (int64_t k = 0; k < nin; k++) {
			double s = 0;
			for (int64_t i = 0; i < n; i++)
				s += (double)gy[i * nout + o] * x[i * nin + k];
			gw[o * nin + k] = (float)(gw[o * nin + k] + s);
		}
	if (gb)
		for (int64_t o = 0; o < nout; o++) {
			double s = 0;
			for (int64_t i = 0; i < n; i++)
				s += gy[i * nout + o];
			gb[o] = (float)(gb[o] + s);
		}
	for (int64_t i = 0; i < n; i++)
		for (int64_t k = 0; k < nin; k++) {
			double s = 0;
			for (int64_t o = 0; o < nout; o++)
				s += (double)gy[i * nout + o] * w[o * nin + k];
			gx[i * nin + k] = (float)s;
		}
}

/* ---- module ------------------------------------------------------------------------ */

static int64_t nin_of(const ln_module *m) { return m->param[W].shape[1]; }
static int64_t nout_of(const ln_module *m) { return m->param[W].shape[0]; }
static bool has_bias(const ln_module *m) { return m->nparams > B; }

/* y {...,nout} = x {...,nin} W^T + b: the leading dimensions are rows */
static ln_status linear_forward(ln_module *m, const ln_tensor *x, ln_error *err)
{
	int64_t n, nin = nin_of(m), nout = nout_of(m);
	ln_status s = ln_check_rows(x, nin, &n, err);
	if (s != LN_OK)
		return s;
	/* the bias rows would overwrite x before the product reads it */
	if (x->storage == m->output.storage)
		return ln_fail(err, LN_EARG, "the input is this layer's own output buffer; pass a clone");
	int64_t shape[LN_MAX_DIMS];
	memcpy(shape, x->shape, sizeof shape);
	shape[x->ndim - 1] = nout;
	if ((s = ln_tensor_ensure(&m->output, x->ndim, shape, err)) != LN_OK)
		return s;
	ln_linear_forward_kernel(ln_tensor_data(&m->output), ln_tensor_data(x),
	                         ln_tensor_data(&m->param[W]),
	                         has_bias(m) ? ln_tensor_data(&m->param[B]) : NULL, n, nin, nout);
	return LN_OK;
}

/* x is the last forward's input and gy has the output's shape
 * (ln_module_backward). */
static ln_status linear_backward(ln_module *m, const ln_tensor *x, const ln_tensor *gy,
                                 ln_error *err)
{
	ln_status s;
	int64_t nin = nin_of(m), nout = nout_of(m), n = ln_tensor_numel(x) / nin;
	if (gy->storage == m->grad_input.storage)
		return ln_fail(err, LN_EARG, "the gradient is this layer's own grad_input buffer; pass a clone");
	if (m->want_gx && (s = ln_tensor_ensure(&m->grad_input, x->ndim, x->shape, err)) != LN_OK)
		return s;
	/* gradients zeroed since the last backward (ln_tensor_zero) are
	 * written, not added to: no pass to clear them, none to read them */
	bool gw_zero = ln_tensor_take_zero(&m->grad[W]);
	bool gb_zero = has_bias(m) && ln_tensor_take_zero(&m->grad[B]);
	backward_kernel(m->want_gx ? ln_tensor_data(&m->grad_input) : NULL,
	                ln_tensor_data(&m->grad[W]),
	                has_bias(m) ? ln_tensor_data(&m->grad[B]) : NULL, ln_tensor_data(gy),
	                ln_tensor_data(x), ln_tensor_data(&m->param[W]), n, nin, nout, gw_zero, gb_zero);
	return LN_OK;
}

ln_status ln_linear_new(ln_module **out, const ln_module_build *ctx, int64_t nin, int64_t nout,
                        bool bias, ln_error *err)
{
	if (nin < 1 || nout < 1)
		return ln_fail(err, LN_ERANGE, "expected sizes nin >= 1 and nout >= 1, got %lld and %lld",
		               (long long)nin, (long long)nout);
	ln_module *m;
	ln_status s = ln_module_alloc(&m, &ln_linear_class, err);
	if (s != LN_OK)
		return s;
	m->nconfig = 3;
	m->config[0] = (double)nin;
	m->config[1] = (double)nout;
	m->config[2] = bias ? 1 : 0;
	s = ln_module_add_param(m, ctx, "weight", LN_PARAM_HE, 2, (int64_t[]){nout, nin}, err);
	if (s == LN_OK && bias)
		s = ln_module_add_param(m, ctx, "bias", LN_PARAM_ZEROS, 1, (int64_t[]){nout}, err);
	if (s != LN_OK) {
		ln_module_release(m);
		return s;
	}
	*out = m;
	return LN_OK;
}

static ln_status linear_create(ln_module **out, const ln_module_class *cls,
                               const ln_module_build *ctx, const double *config, ln_error *err)
{
	int64_t nin, nout, bias;
	ln_status s = ln_config_int(&nin, config[0], "nin", 1, INT64_MAX, err);
	if (s == LN_OK)
		s = ln_config_int(&nout, config[1], "nout", 1, INT64_MAX, err);
	if (s == LN_OK)
		s = ln_config_int(&bias, config[2], "bias", 0, 1, err);
	if (s != LN_OK)
		return s;
	return ln_linear_new(out, ctx, nin, nout, bias != 0, err);
}

static int linear_describe(const ln_module *m, char *buf, size_t size)
{
	return snprintf(buf, size, "Linear(%lld -> %lld%s)", (long long)nin_of(m),
	                (long long)nout_of(m), has_bias(m) ? "" : ", bias=false");
}

const ln_module_class ln_linear_class = {
	.name = "Linear",
	.size = sizeof(ln_module),
	.forward = linear_forward,
	.backward = linear_backward,
	.param_names = {"weight", "bias", NULL},
	.config_names = {"nin", "nout", "bias", NULL},
	.create = linear_create,
	.describe = linear_describe,
};
