/*
 * bce.c -- binary cross-entropy, on probabilities (BCELoss) and on logits
 * (BCEWithLogitsLoss).
 *
 *   BCELoss:            L = -1/N sum_k y_k log x_k + (1-y_k) log(1-x_k)
 *                       dL/dx = (x - y) / (x(1-x)) / N
 *   BCEWithLogitsLoss:  the same with x = sigmoid(z), computed from z as
 *                       max(z,0) - z y + log1p(exp(-|z|)), which neither
 *                       overflows nor takes log 0;  dL/dz = (sigmoid(z) - y)/N
 *
 * Input and target of any one shape, N = shape[0], targets in [0,1] (soft
 * labels allowed).  BCELoss inputs must lie in [0,1]; at exactly 0 or 1
 * each log is clamped at -100 as PyTorch does, so the loss stays finite.
 * The sum over elements is divided by N, not by the element count: each
 * sample's loss is the sum over its outputs, as for MSELoss.
 */
#include <math.h>

#include "../core/alloc.h"
#include "loss_impl.h"

/* ==== kernels ================================================================ */

/* returns sum_k -(y log x + (1-y) log(1-x)), each log clamped at -100;
 * x, y (m) with x, y in [0,1]. */
static double bce_sum(const float *x, const float *y, int64_t m)
{
	double s = 0;
	for (int64_t k = 0; k < m; k++) {
		double lx = fmax(log((double)x[k]), LN_BCE_LOG_MIN);
		double l1x = fmax(log1p(-(double)x[k]), LN_BCE_LOG_MIN);
		s -= (double)y[k] * lx + (1.0 - (double)y[k]) * l1x;
	}
	return s;
}

/* gx_k = scale * (x_k - y_k) / max(x_k (1 - x_k), 1e-12);  gx, x, y (m). */
static void bce_grad(float *gx, const float *x, const float *y, int64_t m, double scale)
{
	for (int64_t k = 0; k < m; k++) {
		double xk = x[k];
		gx[k] = (float)(scale * (xk - (double)y[k]) / fmax(xk * (1.0 - xk), LN_BCE_EPS));
	}
}

/* returns sum_k max(z,0) - z y + log1p(exp(-|z|))   (= -(y log s + (1-y) log(1-s)),
 * s = sigmoid(z));  z, y (m).  When p != NULL, also p_k = sigmoid(z_k) (m). */
double ln_bce_logits_sum(float *p, const float *z, const float *y, int64_t m)
{
	double s = 0;
	for (int64_t k = 0; k < m; k++) {
		double zk = z[k];
		s += fmax(zk, 0.0) - zk * (double)y[k] + log1p(exp(-fabs(zk)));
		if (p)
			p[k] = (float)ln_sigmoid_d(zk);
	}
	return s;
}

/* gz_k = scale * (sigmoid(z_k) - y_k);  gz, z, y (m). */
void ln_bce_logits_grad(float *gz, const float *z, const float *y, int64_t m, double scale)
{
	for (int64_t k = 0; k < m; k++)
		gz[k] = (float)(scale * (ln_sigmoid_d(z[k]) - (double)y[k]));
}

/* ==== BCELoss ================================================================= */

/* BCELoss takes probabilities: an input outside [0,1] is most often a
 * logit, and the message says where to take those. */
static ln_status bce_prepare(const ln_loss *c, const ln_tensor *input, const ln_tensor *target,
                             ln_loss_rows *r, ln_error *err)
{
	(void)c;
	ln_status st = ln_loss_check_same_shape(input, target, err);
	if (st == LN_OK) {
		ln_error out;
		st = ln_loss_check_unit("input", input, &out);
		if (st == LN_ERANGE)
			return ln_fail(err, st, "%s; BCELoss takes probabilities: for logits (any real "
			               "number) use BCEWithLogitsLoss, or put a Sigmoid before BCELoss",
			               out.msg);
		if (st != LN_OK && err)
			*err = out;
	}
	if (st == LN_OK)
		st = ln_loss_check_unit("target", target, err);
	if (st == LN_OK)
		ln_loss_rows_batch(r, input, target);
	return st;
}

static double bce_row_loss(const ln_loss *c, const ln_loss_rows *r, int64_t i, float *yhat)
{
	(void)c;
	(void)yhat;
	return bce_sum(r->x + i * r->k, r->y + i * r->k, r->k);
}

static void bce_row_grad(const ln_loss *c, const ln_loss_rows *r, int64_t i, float *g, double s)
{
	(void)c;
	bce_grad(g, r->x + i * r->k, r->y + i * r->k, r->k, s);
}

static const ln_loss_class bce_class = {
	.name = "BCELoss",
	.size = sizeof(ln_loss),
	.prepare = bce_prepare,
	.row_loss = bce_row_loss,
	.row_grad = bce_row_grad,
};

/* New BCELoss; the caller owns the reference.  Errors: LN_ENOMEM. */
ln_status ln_bce_loss_new(ln_loss **out, ln_reduction r, ln_error *err)
{
	return ln_loss_alloc(out, &bce_class, r, err);
}

/* ==== BCEWithLogitsLoss ======================================================== */

static ln_status logits_prepare(const ln_loss *c, const ln_tensor *input,
                                const ln_tensor *target, ln_loss_rows *r, ln_error *err)
{
	(void)c;
	ln_status st = ln_loss_check_same_shape(input, target, err);
	if (st == LN_OK)
		st = ln_loss_check_unit("target", target, err);
	if (st == LN_OK)
		ln_loss_rows_batch(r, input, target);
	return st;
}

static double logits_row_loss(const ln_loss *c, const ln_loss_rows *r, int64_t i, float *yhat)
{
	(void)c;
	(void)yhat;
	return ln_bce_logits_sum(NULL, r->x + i * r->k, r->y + i * r->k, r->k);
}

static void logits_row_grad(const ln_loss *c, const ln_loss_rows *r, int64_t i, float *g,
                            double s)
{
	(void)c;
	ln_bce_logits_grad(g, r->x + i * r->k, r->y + i * r->k, r->k, s);
}

const ln_loss_class ln_bce_logits_class = {
	.name = "BCEWithLogitsLoss",
	.size = sizeof(ln_loss),
	.prepare = logits_prepare,
	.row_loss = logits_row_loss,
	.row_grad = logits_row_grad,
};

/* New BCEWithLogitsLoss; the caller owns the reference.  Errors: LN_ENOMEM. */
ln_status ln_bce_logits_loss_new(ln_loss **out, ln_reduction r, ln_error *err)
{
	return ln_loss_alloc(out, &ln_bce_logits_class, r, err);
}
