/*
 * batchnorm.c -- BatchNorm(n) over {N,n} or per channel over {N,n,H,W}
 * (Ioffe & Szegedy 2015; the conventions of PyTorch's BatchNorm1d/2d).
 *
 * For channel c, over its M = N*H*W values (M = N for {N,n}):
 *
 *   training  mu = mean(x_c), var = mean((x_c - mu)^2)       (biased)
 *             running_mean = (1-m) running_mean + m mu
 *             running_var  = (1-m) running_var  + m var*M/(M-1)  (unbiased)
 *   evaluate  mu = running_mean[c], var = running_var[c]      (no update)
 *   both      xhat = (x - mu) / sqrt(var + eps),  y = gamma[c] xhat + beta[c]
 *
 * Backward, with g = dL/dy and sums over the M values of the channel:
 *   dgamma += sum g xhat,   dbeta += sum g
 *   training  dx = gamma/sqrt(var+eps) (g - sum(g)/M - xhat sum(g xhat)/M)
 *             (mu and var depend on x: the full batch-statistics gradient)
 *   evaluate  dx = gamma/sqrt(var+eps) g
 *
 * Forward saves mu and 1/sqrt(var+eps) per channel (in double) and whether
 * it used batch statistics; backward recomputes xhat from x with them, so
 * it is right for the mode of the forward it follows.  Statistics are
 * accumulated in double, channel by channel in a fixed order.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "../core/alloc.h"
#include "../core/cpu.h"
#include "batchnorm_kernels.h"
#include "conv.h"
#include "nn_internal.h"
#include "state_dict.h"

typedef struct batchnorm {
	ln_module base;
	int64_t n;
	double eps, momentum;
	double *mean;     /* (n) mu used by the last forward; ln_malloc, freed by destroy */
	double *invstd;   /* (n) 1/sqrt(var+eps) used by the last forward; same block */
	double *tmp;      /* (2n) per-channel sums; same block */
	float *prev;      /* (2n) running mean and variance before the last training
	                     forward, for revert; same block */
	bool fwd_training;  /* the last successful forward used batch statistics */
	bool can_revert;    /* prev holds what the last forward changed */
	int64_t batches;    /* forwards in training mode (PyTorch's num_batches_tracked) */
} batchnorm;

static int batchnorm_describe(const ln_module *m, char *buf, size_t size)
{
	const batchnorm *b = (const batchnorm *)m;
	return snprintf(buf, size, "BatchNorm(%lld)", (long long)b->n);
}

/* Checks x and gives the number of samples and the values per sample and
 * channel (H*W, or 1). */
static ln_status check_input(const batchnorm *b, const ln_tensor *x, int64_t *nb, int64_t *sp,
                             ln_error *err)
{
	char got[96];
	if ((x->ndim != 2 && x->ndim != 4) || x->shape[1] != b->n)
		return ln_fail(err, LN_ESHAPE,
		               "expected input of shape {N,%lld} or {N,%lld,H,W}, got %s",
		               (long long)b->n, (long long)b->n, ln_tensor_shape_str(x, got, sizeof got));
	*nb = x->shape[0];
	*sp = x->ndim == 4 ? x->shape[2] * x->shape[3] : 1;
	return LN_OK;
}

/* ---- kernels ---------------------------------------------------------------
 * x, y, gy, gx: (nb, C, sp) with C = b->n channels.  gamma, beta (C).
 *
 * The per-channel sums are taken in double in a fixed order
 * (batchnorm_kernels.h): for sp > 1 along each contiguous run of sp values
 * in 8 interleaved partial sums (independent, so that they vectorise; the
 * functions below are the portable reference, batchnorm_avx2.c the AVX2
 * version, the same bits), for sp == 1 ({N,C} input) row by row into one
 * sum per channel.  The elementwise parts are in float with per-channel
 * coefficients computed in double.  This file is compiled with
 * -ffp-contract=off (CMakeLists.txt), so that a product and a sum are not
 * fused on some builds and not on others. */

#define LANES 8

/* sum_q x[q] (f = 0), sum_q (x[q]-mu)^2 (f = 1) or sum_q g[q] (x[q]-mu)
 * (f = 2) over one contiguous run of n values. */
static double run_sum(int f, const float *x, const float *g, double mu, int64_t n)
{
	double acc[LANES] = {0};
	int64_t q = 0;
	for (; q + LANES <= n; q += LANES)
		for (int l = 0; l < LANES; l++) {
			double d = (double)x[q + l] - (f ? mu : 0.0);
			acc[l] += f == 0 ? d : f == 1 ? d * d : (double)g[q + l] * d;
		}
	for (; q < n; q++) {
		double d = (double)x[q] - (f ? mu : 0.0);
		acc[q % LANES] += f == 0 ? d : f == 1 ? d * d : (double)g[q] * d;
	}
	double s = 0;
	for (int l = 0; l < LANES; l++)
		s += acc[l];
	return s;
}

/* out[c] = the sum of run_sum(f) over the nb*sp values of channel c;
 * mu (C) may be NULL for f = 0 (batchnorm_kernels.h). */
void ln_bn_channel_sums_ref(double *out, int f, const float *x, const float *g, const double *mu,
                            int64_t nb, int64_t ch, int64_t sp)
{
	if (sp == 1) {
		for (int64_t c = 0; c < ch; c++)
			out[c] = 0;
		for (int64_t i = 0; i < nb; i++) {
			const float *xr = x + i * ch, *gr = g ? g + i * ch : NULL;
			for (int64_t c = 0; c < ch; c++) {
				double d = (double)xr[c] - (f ? mu[c] : 0.0);
				out[c] += f == 0 ? d : f == 1 ? d * d : (double)gr[c] * d;
			}
		}
		return;
	}
	for (int64_t c = 0; c < ch; c++) {
		double s = 0;
		for (int64_t i = 0; i < nb; i++)
			s += run_sum(f, x + (i * ch + c) * sp, g ? g + (i * ch + c) * sp : NULL,
			             f ? mu[c] : 0.0, sp);
		out[c] = s;
	}
}

/* Backward's sums sum g and sum g (x - mu), in two passes over g. */
void ln_bn_grad_sums_ref(double *sg, double *sgx, const float *g, const float *x,
                         const double *mu, int64_t nb, int64_t ch, int64_t sp)
{
	ln_bn_channel_sums_ref(sg, 0, g, NULL, NULL, nb, ch, sp);
	ln_bn_channel_sums_ref(sgx, 2, x, g, mu, nb, ch, sp);
}

/* The AVX2 kernels where the CPU has them, for runs of more than one
 * value.  BatchNorm(32) forward + backward on {128,32,14,14}, against the
 * compiler's vectorised loops of the reference (contracted then): 8.6M ->
 * 7.2M instructions per iteration in BatchNorm's functions (callgrind),
 * 1.28 -> 1.0 ms of processor time (an AMD EPYC, perf stat task-clock of 1000
 * iterations), mostly from backward reading g twice instead of three
 * times. */
void ln_bn_channel_sums(double *out, int f, const float *x, const float *g, const double *mu,
                        int64_t nb, int64_t ch, int64_t sp)
{
	if (sp > 1 && ln_cpu_avx2_fma())
		ln_bn_channel_sums_avx2(out, f, x, g, mu, nb, ch, sp);
	else
		ln_bn_channel_sums_ref(out, f, x, g, mu, nb, ch, sp);
}

void ln_bn_grad_sums(double *sg, double *sgx, const float *g, const float *x, const double *mu,
                     int64_t nb, int64_t ch, int64_t sp)
{
	if (sp > 1 && ln_cpu_avx2_fma())
		ln_bn_grad_sums_avx2(sg, sgx, g, x, mu, nb, ch, sp);
	else
		ln_bn_grad_sums_ref(sg, sgx, g, x, mu, nb, ch, sp);
}

/* Batch statistics of every channel: mean[c] and invstd[c] (biased
 * variance), and the running statistics updated with the unbiased one. */
static void batch_stats(batchnorm *b, const float *x, int64_t nb, int64_t sp, float *rmean,
                        float *rvar)
{
	const int64_t ch = b->n, cnt = nb * sp;
	ln_bn_channel_sums(b->mean, 0, x, NULL, NULL, nb, ch, sp);
	for (int64_t c = 0; c < ch; c++)
		b->mean[c] /= (double)cnt;
	ln_bn_channel_sums(b->tmp, 1, x, NULL, b->mean, nb, ch, sp);  /* two-pass variance */
	for (int64_t c = 0; c < ch; c++) {
		double ss = b->tmp[c];
		b->invstd[c] = 1.0 / sqrt(ss / (double)cnt + b->eps);
		rmean[c] = (float)((1 - b->momentum) * rmean[c] + b->momentum * b->mean[c]);
		rvar[c] = (float)((1 - b->momentum) * rvar[c] + b->momentum * ss / (double)(cnt - 1));
	}
}

/* y = (x - mean) (gamma invstd) + beta, channel by channel. */
static void normalize(const batchnorm *b, float *y, const float *x, const float *gamma,
                      const float *beta, int64_t nb, int64_t sp)
{
	const int64_t ch = b->n;
	for (int64_t i = 0; i < nb; i++)
		for (int64_t c = 0; c < ch; c++) {
			const float a = (float)(gamma[c] * b->invstd[c]), mu = (float)b->mean[c],
			            beta_c = beta[c];
			const float *xc = x + (i * ch + c) * sp;
			float *yc = y + (i * ch + c) * sp;
			for (int64_t q = 0; q < sp; q++)
				yc[q] = (xc[q] - mu) * a + beta_c;
		}
}

/* dgamma += sum g xhat, dbeta += sum g, and gx as in the header comment:
 * gx = k1 (g - m1 - (x - mu) k2) with k1 = gamma invstd, and in training
 * m1 = sum(g)/M, k2 = invstd sum(g xhat)/M (both 0 in evaluate mode).
 * gx may be NULL: the parameter gradients only. */
static void bn_backward_kernel(const batchnorm *b, float *gx, float *dgamma, float *dbeta,
                               const float *gy, const float *x, const float *gamma, int64_t nb,
                               int64_t sp, bool batch_stats_used)
{
	const int64_t ch = b->n, cnt = nb * sp;
	double *sg = b->tmp, *sgx = b->tmp + ch;
	ln_bn_grad_sums(sg, sgx, gy, x, b->mean, nb, ch, sp);  /* sum g, sum g (x - mu) */
	for (int64_t c = 0; c < ch; c++) {
		sgx[c] *= b->invstd[c];  /* sum g xhat */
		dgamma[c] += (float)sgx[c];
		dbeta[c] += (float)sg[c];
	}
	for (int64_t i = 0; gx && i < nb; i++)
		for (int64_t c = 0; c < ch; c++) {
			const double is = b->invstd[c];
			const float k1 = (float)(gamma[c] * is), mu = (float)b->mean[c];
			const float m1 = batch_stats_used ? (float)(sg[c] / (double)cnt) : 0.0f;
			const float k2 = batch_stats_used ? (float)(is * sgx[c] / (double)cnt) : 0.0f;
			const float *xc = x + (i * ch + c) * sp, *gc = gy + (i * ch + c) * sp;
			float *dc = gx + (i * ch + c) * sp;
			for (int64_t q = 0; q < sp; q++)
				dc[q] = k1 * (gc[q] - m1 - (xc[q] - mu) * k2);
		}
}

/* ---- module ----------------------------------------------------------------- */

static ln_status batchnorm_forward(ln_module *m, const ln_tensor *x, ln_error *err)
{
	batchnorm *b = (batchnorm *)m;
	int64_t nb = 0, sp = 0;
	ln_status st = check_input(b, x, &nb, &sp, err);
	if (st != LN_OK)
		return st;
	if (m->training && nb * sp < 2) {
		char got[96];
		return ln_fail(err, LN_ESHAPE,
		               "expected more than 1 value per channel in training mode, "
		               "got input of shape %s",
		               ln_tensor_shape_str(x, got, sizeof got));
	}
	if ((st = ln_tensor_ensure(&m->output, x->ndim, x->shape, err)) != LN_OK)
		return st;
	const float *xd = ln_tensor_data(x);
	float *rmean = ln_tensor_data(&m->buffer[0]), *rvar = ln_tensor_data(&m->buffer[1]);
	if (m->training) {
		memcpy(b->prev, rmean, (size_t)b->n * sizeof *rmean);
		memcpy(b->prev + b->n, rvar, (size_t)b->n * sizeof *rvar);
		b->can_revert = true;
		batch_stats(b, xd, nb, sp, rmean, rvar);
		b->batches++;
	} else {
		b->can_revert = false;
		for (int64_t c = 0; c < b->n; c++) {
			b->mean[c] = rmean[c];
			b->invstd[c] = 1.0 / sqrt((double)rvar[c] + b->eps);
		}
	}
	normalize(b, ln_tensor_data(&m->output), xd, ln_tensor_data(&m->param[0]),
	          ln_tensor_data(&m->param[1]), nb, sp);
	b->fwd_training = m->training;
	return LN_OK;
}

/* x is the last forward's input (ln_module_backward), so mean and invstd
 * belong to it. */
static ln_status batchnorm_backward(ln_module *m, const ln_tensor *x, const ln_tensor *gy,
                                    ln_error *err)
{
	batchnorm *b = (batchnorm *)m;
	int64_t nb = 0, sp = 0;
	ln_status st = check_input(b, x, &nb, &sp, err);
	if (st != LN_OK)
		return st;
	if (m->want_gx && (st = ln_tensor_ensure(&m->grad_input, x->ndim, x->shape, err)) != LN_OK)
		return st;
	bn_backward_kernel(b, m->want_gx ? ln_tensor_data(&m->grad_input) : NULL,
	                   ln_tensor_data(&m->grad[0]),
	                   ln_tensor_data(&m->grad[1]), ln_tensor_data(gy), ln_tensor_data(x),
	                   ln_tensor_data(&m->param[0]), nb, sp, b->fwd_training);
	return LN_OK;
}

/* Puts the running statistics and the batch count back as they were
 * before the last training forward (module.h: revert). */
static void batchnorm_revert(ln_module *m)
{
	batchnorm *b = (batchnorm *)m;
	if (!b->can_revert)
		return;
	memcpy(ln_tensor_data(&m->buffer[0]), b->prev, (size_t)b->n * sizeof *b->prev);
	memcpy(ln_tensor_data(&m->buffer[1]), b->prev + b->n, (size_t)b->n * sizeof *b->prev);
	b->batches--;
	b->can_revert = false;
}

static void batchnorm_destroy(ln_module *m)
{
	batchnorm *b = (batchnorm *)m;
	ln_free(b->mean);  /* one block holds mean, invstd, tmp and prev */
	b->mean = b->invstd = b->tmp = NULL;
	b->prev = NULL;
}

ln_status ln_batchnorm_new_ex(ln_module **out, const ln_module_build *ctx, int64_t n, double eps,
                              double momentum, ln_error *err)
{
	*out = NULL;
	if (n < 1)
		return ln_fail(err, LN_ERANGE, "number of features must be >= 1, got %lld",
		               (long long)n);
	if (!(eps > 0) || !isfinite(eps))
		return ln_fail(err, LN_ERANGE, "eps must be positive, got %g", ln_shown(eps));
	if (!(momentum >= 0 && momentum <= 1))
		return ln_fail(err, LN_ERANGE, "momentum must be in [0,1], got %g", ln_shown(momentum));
	if ((uint64_t)n > SIZE_MAX / (5 * sizeof(double)))
		return ln_fail(err, LN_ERANGE, "number of features %lld is too large",
		               (long long)n);
	ln_module *m;
	ln_status st = ln_module_alloc(&m, &ln_batchnorm_class, err);
	if (st != LN_OK)
		return st;
	batchnorm *b = (batchnorm *)m;
	b->n = n;
	b->eps = eps;
	b->momentum = momentum;
	m->nconfig = 3;
	m->config[0] = (double)n;
	m->config[1] = eps;
	m->config[2] = momentum;
	const int64_t shape[1] = {n};
	if ((st = ln_module_add_param(m, ctx, "weight", LN_PARAM_ONES, 1, shape, err)) == LN_OK &&
	    (st = ln_module_add_param(m, ctx, "bias", LN_PARAM_ZEROS, 1, shape, err)) == LN_OK &&
	    (st = ln_module_add_buffer(m, ctx, "running_mean", LN_PARAM_ZEROS, 1, shape, err)) ==
	        LN_OK &&
	    (st = ln_module_add_buffer(m, ctx, "running_var", LN_PARAM_ONES, 1, shape, err)) == LN_OK) {
		b->mean = ln_malloc(5 * (size_t)n * sizeof(double));
		if (!b->mean)
			st = ln_fail(err, LN_ENOMEM, "out of memory for %lld channels",
			             (long long)n);
	}
	if (st != LN_OK) {
		ln_module_release(m);
		return st;
	}
	b->invstd = b->mean + n;
	b->tmp = b->mean + 2 * n;
	b->prev = (float *)(b->mean + 4 * n);  /* 2n floats in the last n doubles */
	*out = m;
	return LN_OK;
}

ln_status ln_batchnorm_new(ln_module **out, const ln_module_build *ctx, int64_t n, ln_error *err)
{
	return ln_batchnorm_new_ex(out, ctx, n, 1e-5, 0.1, err);
}

/* PyTorch's names: the default ones, then the counter of training
 * batches, which PyTorch keeps as an integer buffer. */
static void batchnorm_state(ln_module *m, ln_state_visitor *v)
{
	ln_state_default(m, v);
	ln_state_integer(v, "num_batches_tracked", &((batchnorm *)m)->batches);
}

/* config {n, eps, momentum}. */
static ln_status batchnorm_create(ln_module **out, const ln_module_class *cls,
                                  const ln_module_build *ctx, const double *config, ln_error *err)
{
	int64_t n;
	*out = NULL;
	ln_status st = ln_config_int(&n, config[0], "n", 1, INT64_MAX, err);
	if (st != LN_OK)
		return st;
	return ln_batchnorm_new_ex(out, ctx, n, config[1], config[2], err);
}

const ln_module_class ln_batchnorm_class = {
	.name = "BatchNorm",
	.size = sizeof(batchnorm),
	.forward = batchnorm_forward,
	.backward = batchnorm_backward,
	.destroy = batchnorm_destroy,
	.param_names = {"weight", "bias", NULL},
	.buffer_names = {"running_mean", "running_var", NULL},
	.config_names = {"n", "eps", "momentum", NULL},
	.create = batchnorm_create,
	.describe = batchnorm_describe,
	.state = batchnorm_state,
	.revert = batchnorm_revert,
};
