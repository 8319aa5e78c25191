/*
 * attention.c -- multi-head self-attention (Vaswani et al. 2017), as
 * torch.nn.MultiheadAttention(d, heads, batch_first=True) called with the
 * same tensor as query, key and value, optionally with the causal mask.
 *
 *   x (N,T,d)   in_proj_weight W_in (3d,d)   in_proj_bias b_in (3d)
 *               out_proj_weight W_o (d,d)    out_proj_bias b_o (d)
 *   (q | k | v) = x W_in^T + b_in              each (N,T,d), hd = d / heads
 *   per sample n and head h, on columns h*hd .. h*hd+hd-1 of q, k, v:
 *     S = q k^T / sqrt(hd)                    (T,T)
 *     causal: S_tj = -inf for j > t           (position t sees 0..t only)
 *     P = softmax over each row of S          (stable: the row maximum first)
 *     P' = P * mask                           (training: attention dropout,
 *                                              kept entries scaled by 1/(1-p))
 *     o = P' v                                (T,hd), into columns h*hd.. of a
 *   y = a W_o^T + b_o                         (N,T,d)
 *
 * Forward saves q|k|v, P (and the mask and P'), and a for backward:
 *   da = gy W_o;  dW_o += gy^T a;  db_o += column sums of gy
 *   per (n,h):  dP' = do v^T   dv = P'^T do   dP = dP' * mask
 *               dS_tj = P_tj (dP_tj - sum_k dP_tk P_tk)
 *               dq = dS k / sqrt(hd)   dk = dS^T q / sqrt(hd)
 *   dW_in += d(q|k|v)^T x;  db_in += column sums;  dx = d(q|k|v) W_in
 * Every product is ln_gemm on strided blocks of those buffers (a head is
 * hd columns of a row of 3d): no copies, nothing allocated after the first
 * step of a shape.  With the causal mask, the products of S, o, dP, dv, dq
 * and dk run by blocks of CAUSAL_BLOCK rows or columns and skip the blocks
 * wholly above the diagonal, whose weights are 0.  ln_attention_forward_naive/backward_naive are the same
 * maths in plain loops with double accumulators, kept to test against.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../core/alloc.h"
#include "../core/gemm.h"
#include "../core/rng.h"
#include "cellmath.h"
#include "init.h"
#include "layers.h"
#include "nn_internal.h"
#include "sequence.h"
#include "state_dict.h"

enum { W_IN, B_IN, W_OUT, B_OUT };

/* With the causal mask, the products run by blocks of this many rows (or
 * columns), each only over the positions its rows see: about
 * (1 + 1/(T/16)) / 2 of the full products' work instead of all of it. */
#define CAUSAL_BLOCK 16

typedef struct attention {
	ln_module base;
	int64_t d, heads;
	bool causal;
	double dropout;
	ln_tensor qkv;    /* (N,T,3d) */
	ln_tensor p;      /* (N,heads,T,T): the attention weights */
	ln_tensor mask;   /* (N,heads,T,T): dropout mask (when dropped) */
	ln_tensor pd;     /* (N,heads,T,T): P * mask (when dropped) */
	ln_tensor a;      /* (N,T,d): the heads' outputs side by side */
	ln_tensor da;     /* (N,T,d) */
	ln_tensor dqkv;   /* (N,T,3d) */
	ln_tensor dp;     /* (T,T) scratch */
	bool dropped;     /* the last forward applied a mask */
} attention;

/* ==== kernels ======================================================================= */

/* Row t of s (T) becomes softmax over its first `len` entries (the rest
 * 0): the stable form, max first; exp from cellmath.h. */
static void softmax_row(float *restrict s, int64_t len, int64_t t)
{
	float m = s[0];
	for (int64_t j = 1; j < len; j++)
		m = s[j] > m ? s[j] : m;
	for (int64_t j = 0; j < len; j++)  /* apart from the sum, so that it vectorises */
		s[j] = ln_exp_fast(s[j] - m);
	float sum = 0;
	for (int64_t j = 0; j < len; j++)
		sum += s[j];
	float inv = 1.0f / sum;
	for (int64_t j = 0; j < len; j++)
		s[j] *= inv;
	for (int64_t j = len; j < t; j++)
		s[j] = 0;
}

/* dS = P (dP - rowsum(dP P)) over the first len entries of a row, in
 * place on dp (0 beyond: those entries had no weight). */
static void softmax_row_backward(float *restrict dp, const float *restrict p, int64_t len,
                                 int64_t t)
{
	double dot = 0;
	for (int64_t j = 0; j < len; j++)
		dot += (double)dp[j] * p[j];
	float fd = (float)dot;
	for (int64_t j = 0; j < len; j++)
		dp[j] = p[j] * (dp[j] - fd);
	for (int64_t j = len; j < t; j++)
		dp[j] = 0;
}

/* ==== the module ====================================================================== */

/* ln_tensor_ensure unless an earlier step already failed (s != LN_OK), so
 * that a run of them reads as one chain and reports the first failure. */
static ln_status ensure(ln_tensor *t, int ndim, const int64_t *shape, ln_status s, ln_error *err)
{
	return s == LN_OK ? ln_tensor_ensure(t, ndim, shape, err) : s;
}

/* The forward of the file's header, per (sample, head) on strided blocks
 * of qkv.  Sizes the caches (owned by the module, reused while N and T
 * stay) and, in training mode with dropout, draws one mask entry per
 * weight from the process-wide generator.  LN_ESHAPE for x not {N,T,d},
 * LN_EARG for x being this module's output, LN_ENOMEM (nothing computed). */
static ln_status attention_forward(ln_module *m, const ln_tensor *x, ln_error *err)
{
	attention *at = (attention *)m;
	int64_t d = at->d, heads = at->heads, hd = d / heads;
	if (x->ndim != 3 || x->shape[2] != d) {
		char got[128];
		return ln_fail(err, LN_ESHAPE, "expected input of shape {N,T,%lld}, got %s", (long long)d,
		               ln_tensor_shape_str(x, got, sizeof got));
	}
	if (x->storage == m->output.storage)
		return ln_fail(err, LN_EARG, "the input is this layer's own output buffer; pass a clone");
	int64_t n = x->shape[0], t = x->shape[1];
	bool drop = m->training && at->dropout > 0;
	int64_t pshape[4] = {n, heads, t, t};
	ln_status s = ensure(&at->qkv, 3, (int64_t[]){n, t, 3 * d}, LN_OK, err);
	s = ensure(&at->p, 4, pshape, s, err);
	s = ensure(&at->a, 3, (int64_t[]){n, t, d}, s, err);
	s = ensure(&m->output, 3, x->shape, s, err);
	if (drop) {
		s = ensure(&at->mask, 4, pshape, s, err);
		s = ensure(&at->pd, 4, pshape, s, err);
	}
	if (s != LN_OK)
		return s;
	at->dropped = drop;
	const float *win = ln_tensor_data(&m->param[W_IN]), *bin = ln_tensor_data(&m->param[B_IN]);
	float *qkv = ln_tensor_data(&at->qkv), *p = ln_tensor_data(&at->p);
	float *a = ln_tensor_data(&at->a);
	ln_linear_forward_kernel(qkv, ln_tensor_data(x), win, bin, n * t, d, 3 * d);
	float scale = (float)(1.0 / sqrt((double)hd)), keep = (float)(1.0 / (1.0 - at->dropout));
	int64_t blk = at->causal ? CAUSAL_BLOCK : t;
	for (int64_t i = 0; i < n; i++)
		for (int64_t h = 0; h < heads; h++) {
			const float *q = qkv + i * t * 3 * d + h * hd, *k = q + d, *v = q + 2 * d;
			float *ph = p + (i * heads + h) * t * t;
			/* S and P by blocks of rows, each only as wide as the last
			 * position its rows see */
			for (int64_t r0 = 0; r0 < t; r0 += blk) {
				int64_t r1 = r0 + blk < t ? r0 + blk : t, w = at->causal ? r1 : t;
				ln_gemm(false, true, r1 - r0, w, hd, scale, q + r0 * 3 * d, 3 * d, k, 3 * d,
				        0.0f, ph + r0 * t, t);
				for (int64_t r = r0; r < r1; r++)
					softmax_row(ph + r * t, at->causal ? r + 1 : t, t);
			}
			const float *pv = ph;
			if (drop) {
				float *mk = ln_tensor_data(&at->mask) + (i * heads + h) * t * t;
				float *pd = ln_tensor_data(&at->pd) + (i * heads + h) * t * t;
				for (int64_t e = 0; e < t * t; e++) {
					mk[e] = ln_rng_uniform(ln_rng_global()) < at->dropout ? 0.0f : keep;
					pd[e] = ph[e] * mk[e];
				}
				pv = pd;
			}
			float *ah = a + i * t * d + h * hd;
			for (int64_t r0 = 0; r0 < t; r0 += blk) {
				int64_t r1 = r0 + blk < t ? r0 + blk : t, w = at->causal ? r1 : t;
				ln_gemm(false, false, r1 - r0, hd, w, 1.0f, pv + r0 * t, t, v, 3 * d, 0.0f,
				        ah + r0 * d, d);
			}
		}
	ln_linear_forward_kernel(ln_tensor_data(&m->output), a, ln_tensor_data(&m->param[W_OUT]),
	                         ln_tensor_data(&m->param[B_OUT]), n * t, d, d);
	return LN_OK;
}

/* gw += gy^T x (a pending zero overwritten), gb += column sums; the
 * gradients of a linear map y = x W^T + b over `rows` rows. */
static void linear_param_grads(ln_tensor *gw, ln_tensor *gb, const float *gy, const float *x,
                               int64_t rows, int64_t nin, int64_t nout)
{
	bool zero = ln_tensor_take_zero(gw);
	ln_gemm(true, false, nout, nin, rows, 1.0f, gy, nout, x, nin, zero ? 0.0f : 1.0f,
	        ln_tensor_data(gw), nin);
	zero = ln_tensor_take_zero(gb);
	ln_colsum_add(ln_tensor_data(gb), gy, rows, nout, zero);
}

/* The backward of the file's header from what the last forward saved
 * (with that forward's mask, whatever the mode now); parameter gradients
 * add, grad_input (when wanted) is overwritten.  LN_EARG for gy being
 * this module's grad_input, LN_ENOMEM (scratch sized first: nothing
 * changed). */
static ln_status attention_backward(ln_module *m, const ln_tensor *x, const ln_tensor *gy,
                                    ln_error *err)
{
	attention *at = (attention *)m;
	int64_t d = at->d, heads = at->heads, hd = d / heads;
	int64_t n = x->shape[0], t = x->shape[1];
	if (gy->storage == m->grad_input.storage)
		return ln_fail(err, LN_EARG, "the gradient is this layer's own grad_input buffer; pass a clone");
	ln_status s = ensure(&at->da, 3, (int64_t[]){n, t, d}, LN_OK, err);
	s = ensure(&at->dqkv, 3, (int64_t[]){n, t, 3 * d}, s, err);
	s = ensure(&at->dp, 2, (int64_t[]){t, t}, s, err);
	if (m->want_gx)
		s = ensure(&m->grad_input, 3, x->shape, s, err);
	if (s != LN_OK)
		return s;
	const float *g = ln_tensor_data(gy), *a = ln_tensor_data(&at->a);
	const float *wo = ln_tensor_data(&m->param[W_OUT]), *win = ln_tensor_data(&m->param[W_IN]);
	const float *qkv = ln_tensor_data(&at->qkv), *p = ln_tensor_data(&at->p);
	float *da = ln_tensor_data(&at->da), *dqkv = ln_tensor_data(&at->dqkv);
	float *dp = ln_tensor_data(&at->dp);
	linear_param_grads(&m->grad[W_OUT], &m->grad[B_OUT], g, a, n * t, d, d);
	ln_gemm(false, false, n * t, d, d, 1.0f, g, d, wo, d, 0.0f, da, d);
	float scale = (float)(1.0 / sqrt((double)hd));
	int64_t blk = at->causal ? CAUSAL_BLOCK : t;
	for (int64_t i = 0; i < n; i++)
		for (int64_t h = 0; h < heads; h++) {
			int64_t off = i * t * 3 * d + h * hd;
			const float *q = qkv + off, *k = q + d, *v = q + 2 * d;
			float *dq = dqkv + off, *dk = dq + d, *dv = dq + 2 * d;
			const float *ph = p + (i * heads + h) * t * t, *pv = ph;
			const float *dout = da + i * t * d + h * hd;
			const float *mk = NULL;
			if (at->dropped) {
				pv = ln_tensor_data(&at->pd) + (i * heads + h) * t * t;
				mk = ln_tensor_data(&at->mask) + (i * heads + h) * t * t;
			}
			/* dP, then dS in place, by blocks of rows as in forward */
			for (int64_t r0 = 0; r0 < t; r0 += blk) {
				int64_t r1 = r0 + blk < t ? r0 + blk : t, w = at->causal ? r1 : t;
				ln_gemm(false, true, r1 - r0, w, hd, 1.0f, dout + r0 * d, d, v, 3 * d, 0.0f,
				        dp + r0 * t, t);
				for (int64_t r = r0; r < r1; r++) {
					int64_t len = at->causal ? r + 1 : t;
					if (mk)
						for (int64_t j = 0; j < len; j++)
							dp[r * t + j] *= mk[r * t + j];
					softmax_row_backward(dp + r * t, ph + r * t, len, t);
				}
			}
			/* dv = P'^T do, dk = dS^T q: by blocks of columns, each from
			 * the first row that sees them (P' and dS are 0 above the
			 * diagonal) */
			for (int64_t c0 = 0; c0 < t; c0 += blk) {
				int64_t c1 = c0 + blk < t ? c0 + blk : t, top = at->causal ? c0 : 0;
				ln_gemm(true, false, c1 - c0, hd, t - top, 1.0f, pv + top * t + c0, t,
				        dout + top * d, d, 0.0f, dv + c0 * 3 * d, 3 * d);
				ln_gemm(true, false, c1 - c0, hd, t - top, scale, dp + top * t + c0, t,
				        q + top * 3 * d, 3 * d, 0.0f, dk + c0 * 3 * d, 3 * d);
			}
			/* dq = dS k, by blocks of rows */
			for (int64_t r0 = 0; r0 < t; r0 += blk) {
				int64_t r1 = r0 + blk < t ? r0 + blk : t, w = at->causal ? r1 : t;
				ln_gemm(false, false, r1 - r0, hd, w, scale, dp + r0 * t, t, k, 3 * d, 0.0f,
				        dq + r0 * 3 * d, 3 * d);
			}
		}
	linear_param_grads(&m->grad[W_IN], &m->grad[B_IN], dqkv, ln_tensor_data(x), n * t, d, 3 * d);
	if (m->want_gx)
		ln_gemm(false, false, n * t, d, 3 * d, 1.0f, dqkv, 3 * d, win, d, 0.0f,
		        ln_tensor_data(&m->grad_input), d);
	return LN_OK;
}

/* ==== naive reference ================================================================ */

/* The attention weights of head h of sample i, in double: P (T,T), from
 * q|k|v (N*T, 3d) in double. */
static void naive_weights(double *pw, const double *qkv, int64_t i, int64_t h, int64_t t,
                          int64_t d, int64_t hd, bool causal)
{
	for (int64_t r = 0; r < t; r++) {
		int64_t len = causal ? r + 1 : t;
		double mx = -INFINITY;
		for (int64_t c = 0; c < t; c++) {
			double s = 0;
			for (int64_t e = 0; e < hd; e++)
				s += qkv[(i * t + r) * 3 * d + h * hd + e] * qkv[(i * t + c) * 3 * d + d + h * hd + e];
			pw[r * t + c] = c < len ? s / sqrt((double)hd) : -INFINITY;
			if (c < len && pw[r * t + c] > mx)
				mx = pw[r * t + c];
		}
		double sum = 0;
		for (int64_t c = 0; c < t; c++)
			sum += pw[r * t + c] = c < len ? exp(pw[r * t + c] - mx) : 0;
		for (int64_t c = 0; c < t; c++)
			pw[r * t + c] /= sum;
	}
}

/* q|k|v (N*T, 3d) = x W_in^T + b_in and a (N*T, d), in double */
static void naive_heads(double *qkv, double *a, double *pw, const float *x, const float *win,
                        const float *bin, int64_t n, int64_t t, int64_t d, int64_t heads,
                        bool causal)
{
	int64_t hd = d / heads;
	for (int64_t r = 0; r < n * t; r++)
		for (int64_t j = 0; j < 3 * d; j++) {
			double s = bin[j];
			for (int64_t c = 0; c < d; c++)
				s += (double)x[r * d + c] * win[j * d + c];
			qkv[r * 3 * d + j] = s;
		}
	for (int64_t i = 0; i < n; i++)
		for (int64_t h = 0; h < heads; h++) {
			naive_weights(pw, qkv, i, h, t, d, hd, causal);
			for (int64_t r = 0; r < t; r++)
				for (int64_t e = 0; e < hd; e++) {
					double s = 0;
					for (int64_t c = 0; c < t; c++)
						s += pw[r * t + c] * qkv[(i * t + c) * 3 * d + 2 * d + h * hd + e];
					a[(i * t + r) * d + h * hd + e] = s;
				}
		}
}

ln_status ln_attention_forward_naive(float *y, const float *x, const float *win, const float *bin,
                                     const float *wout, const float *bout, int64_t n, int64_t t,
                                     int64_t d, int64_t heads, bool causal)
{
	double *qkv = ln_malloc((size_t)(n * t * 3 * d) * sizeof(double));
	double *a = ln_malloc((size_t)(n * t * d) * sizeof(double));
	double *pw = ln_malloc((size_t)(t * t) * sizeof(double));
	ln_status st = LN_OK;
	if (!qkv || !a || !pw) {
		st = LN_ENOMEM;
		goto done;
	}
	naive_heads(qkv, a, pw, x, win, bin, n, t, d, heads, causal);
	for (int64_t r = 0; r < n * t; r++)
		for (int64_t j = 0; j < d; j++) {
			double s = bout[j];
			for (int64_t c = 0; c < d; c++)
				s += a[r * d + c] * wout[j * d + c];
			y[r * d + j] = (float)s;
		}
done:
	ln_free(qkv);
	ln_free(a);
	ln_free(pw);
	return st;
}

ln_status ln_attention_backward_naive(float *dx, float *dwin, float *dbin, float *dwout,
                                      float *dbout, const float *gy, const float *x,
                                      const float *win, const float *bin, const float *wout,
                                      int64_t n, int64_t t, int64_t d, int64_t heads, bool causal)
{
	int64_t hd = d / heads, rows = n * t;
	double *qkv = ln_malloc((size_t)(rows * 3 * d) * sizeof(double));
	double *a = ln_malloc((size_t)(rows * d) * sizeof(double));
	double *pw = ln_malloc((size_t)(t * t) * sizeof(double));
	double *da = ln_malloc((size_t)(rows * d) * sizeof(double));
	double *dq = ln_calloc((size_t)(rows * 3 * d), sizeof(double));
	double *dpw = ln_malloc((size_t)(t * t) * sizeof(double));
	ln_status st = LN_OK;
	if (!qkv || !a || !pw || !da || !dq || !dpw) {
		st = LN_ENOMEM;
		goto done;
	}
	naive_heads(qkv, a, pw, x, win, bin, n, t, d, heads, causal);
	/* the output projection */
	for (int64_t j = 0; j < d; j++) {
		double sb = 0;
		for (int64_t r = 0; r < rows; r++)
			sb += gy[r * d + j];
		dbout[j] = (float)(dbout[j] + sb);
		for (int64_t c = 0; c < d; c++) {
			double s = 0;
			for (int64_t r = 0; r < rows; r++)
				s += (double)gy[r * d + j] * a[r * d + c];
			dwout[j * d + c] = (float)(dwout[j * d + c] + s);
		}
	}
	for (int64_t r = 0; r < rows; r++)
		for (int64_t c = 0; c < d; c++) {
			double s = 0;
			for (int64_t j = 0; j < d; j++)
				s += (double)gy[r * d + j] * wout[j * d + c];
			da[r * d + c] = s;
		}
	/* each head */
	double sc = 1 / sqrt((double)hd);
	for (int64_t i = 0; i < n; i++)
		for (int64_t h = 0; h < heads; h++) {
			naive_weights(pw, qkv, i, h, t, d, hd, causal);
			const double *qv = qkv + i * t * 3 * d + h * hd;
			double *dqv = dq + i * t * 3 * d + h * hd;
			const double *dav = da + i * t * d + h * hd;
			for (int64_t r = 0; r < t; r++)
				for (int64_t c = 0; c < t; c++) {
					double s = 0;  /* dP = do v^T */
					for (int64_t e = 0; e < hd; e++)
						s += dav[r * d + e] * qv[c * 3 * d + 2 * d + e];
					dpw[r * t + c] = s;
				}
			for (int64_t c = 0; c < t; c++)  /* dv = P^T do */
				for (int64_t e = 0; e < hd; e++) {
					double s = 0;
					for (int64_t r = 0; r < t; r++)
						s += pw[r * t + c] * dav[r * d + e];
					dqv[c * 3 * d + 2 * d + e] = s;
				}
			for (int64_t r = 0; r < t; r++) {  /* dS = P (dP - sum dP P) */
				double dot = 0;
				for (int64_t c = 0; c < t; c++)
					dot += dpw[r * t + c] * pw[r * t + c];
				for (int64_t c = 0; c < t; c++)
					dpw[r * t + c] = pw[r * t + c] * (dpw[r * t + c] - dot);
			}
			for (int64_t r = 0; r < t; r++)
				for (int64_t e = 0; e < hd; e++) {
					double sq = 0, sk = 0;
					for (int64_t c = 0; c < t; c++) {
						sq += dpw[r * t + c] * qv[c * 3 * d + d + e];
						sk += dpw[c * t + r] * qv[c * 3 * d + e];
					}
					dqv[r * 3 * d + e] = sq * sc;
					dqv[r * 3 * d + d + e] = sk * sc;
				}
		}
	/* the input projection */
	for (int64_t j = 0; j < 3 * d; j++) {
		double sb = 0;
		for (int64_t r = 0; r < rows; r++)
			sb += dq[r * 3 * d + j];
		dbin[j] = (float)(dbin[j] + sb);
		for (int64_t c = 0; c < d; c++) {
			double s = 0;
			for (int64_t r = 0; r < rows; r++)
				s += dq[r * 3 * d + j] * x[r * d + c];
			dwin[j * d + c] = (float)(dwin[j * d + c] + s);
		}
	}
	for (int64_t r = 0; dx && r < rows; r++)
		for (int64_t c = 0; c < d; c++) {
			double s = 0;
			for (int64_t j = 0; j < 3 * d; j++)
				s += dq[r * 3 * d + j] * win[j * d + c];
			dx[r * d + c] = (float)s;
		}
done:
	ln_free(qkv);
	ln_free(a);
	ln_free(pw);
	ln_free(da);
	ln_free(dq);
	ln_free(dpw);
	return st;
}

/* ==== construction ============================================================== */

/* PyTorch's names: out_proj is a submodule there */
static void attention_state(ln_module *m, ln_state_visitor *v)
{
	ln_state_tensor(v, "in_proj_weight", &m->param[W_IN]);
	ln_state_tensor(v, "in_proj_bias", &m->param[B_IN]);
	ln_state_tensor(v, "out_proj.weight", &m->param[W_OUT]);
	ln_state_tensor(v, "out_proj.bias", &m->param[B_OUT]);
}

static void attention_destroy(ln_module *m)
{
	attention *at = (attention *)m;
	ln_tensor_release(&at->qkv);
	ln_tensor_release(&at->p);
	ln_tensor_release(&at->mask);
	ln_tensor_release(&at->pd);
	ln_tensor_release(&at->a);
	ln_tensor_release(&at->da);
	ln_tensor_release(&at->dqkv);
	ln_tensor_release(&at->dp);
}

ln_status ln_attention_new(ln_module **out, const ln_module_build *ctx, int64_t d, int64_t heads,
                           bool causal, double dropout, ln_error *err)
{
	if (d < 1 || heads < 1)
		return ln_fail(err, LN_ERANGE, "expected sizes d >= 1 and heads >= 1, got %lld and %lld",
		               (long long)d, (long long)heads);
	if (d % heads != 0)
		return ln_fail(err, LN_ERANGE, "d (%lld) must be a multiple of heads (%lld)",
		               (long long)d, (long long)heads);
	if (!(dropout >= 0 && dropout < 1))
		return ln_fail(err, LN_ERANGE, "expected dropout in [0,1), got %g", ln_shown(dropout));
	if (d > INT64_MAX / 3)
		return ln_fail(err, LN_ERANGE, "d %lld is too large", (long long)d);
	ln_module *m;
	ln_status s = ln_module_alloc(&m, &ln_attention_class, err);
	if (s != LN_OK)
		return s;
	attention *at = (attention *)m;
	at->d = d;
	at->heads = heads;
	at->causal = causal;
	at->dropout = dropout;
	m->nconfig = 4;
	m->config[0] = (double)d;
	m->config[1] = (double)heads;
	m->config[2] = causal ? 1 : 0;
	m->config[3] = dropout;
	/* PyTorch's initialisation: in_proj_weight Xavier-uniform, out_proj's
	 * weight Linear's default U(-1/sqrt(d), 1/sqrt(d)), both biases 0 */
	ln_rng *rng = ln_build_rng(ctx);
	s = ln_module_add_param(m, ctx, "in_proj_weight", LN_PARAM_ZEROS, 2, (int64_t[]){3 * d, d},
	                        err);
	if (s == LN_OK)
		s = ln_init_xavier(&m->param[W_IN], rng, err);
	if (s == LN_OK)
		s = ln_module_add_param(m, ctx, "in_proj_bias", LN_PARAM_ZEROS, 1, (int64_t[]){3 * d},
		                        err);
	if (s == LN_OK)
		s = ln_module_add_param(m, ctx, "out_proj_weight", LN_PARAM_ZEROS, 2,
		                        (int64_t[]){d, d}, err);
	if (s == LN_OK) {
		double a = 1.0 / sqrt((double)d);
		s = ln_init_uniform(&m->param[W_OUT], rng, -a, a, err);
	}
	if (s == LN_OK)
		s = ln_module_add_param(m, ctx, "out_proj_bias", LN_PARAM_ZEROS, 1, (int64_t[]){d}, err);
	if (s != LN_OK) {
		ln_module_release(m);
		return s;
	}
	*out = m;
	return LN_OK;
}

static ln_status attention_create(ln_module **out, const ln_module_class *cls,
                                  const ln_module_build *ctx, const double *config, ln_error *err)
{
	int64_t d, heads, causal;
	ln_status s = ln_config_int(&d, config[0], "d", 1, INT64_MAX, err);
	if (s == LN_OK)
		s = ln_config_int(&heads, config[1], "heads", 1, INT64_MAX, err);
	if (s == LN_OK)
		s = ln_config_int(&causal, config[2], "causal", 0, 1, err);
	if (s != LN_OK)
		return s;
	return ln_attention_new(out, ctx, d, heads, causal != 0, config[3], err);
}

static int attention_describe(const ln_module *m, char *buf, size_t size)
{
	const attention *at = (const attention *)m;
	char extra[64] = "";
	size_t k = 0;
	if (at->causal)
		k += (size_t)snprintf(extra + k, sizeof extra - k, ", causal");
	if (at->dropout > 0)
		snprintf(extra + k, sizeof extra - k, ", dropout=%g", at->dropout);
	return snprintf(buf, size, "MultiheadAttention(%lld, heads=%lld%s)", (long long)at->d,
	                (long long)at->heads, extra);
}

const ln_module_class ln_attention_class = {
	.name = "MultiheadAttention",
	.size = sizeof(attention),
	.forward = attention_forward,
	.backward = attention_backward,
	.destroy = attention_destroy,
	.param_names = {"in_proj_weight", "in_proj_bias", "out_proj_weight", "out_proj_bias"},
	.config_names = {"d", "heads", "causal", "dropout", NULL},
	.create = attention_create,
	.describe = attention_describe,
	.state = attention_state,
};
