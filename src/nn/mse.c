/*
 * mse.c -- MSELoss: L = 1/(2N) sum_i ||x_i - y_i||^2  (sum reduction:
 * 1/2 sum; none: l_i = 1/2 ||x_i - y_i||^2 per sample), dL/dx = (x - y)/N.
 *
 * The 1/2 makes the gradient exactly (x - y)/N, the form the canonical
 * (identity, mse) pairing promises.  Input of any shape, N = shape[0];
 * target of the same shape, finite.
 */
#include "../core/alloc.h"
#include "loss_impl.h"

/* ---- kernels ------------------------------------------------------------------ */

/* returns sum_k (x_k - y_k)^2 / 2;  x, y (m).  Accumulated in double. */
double ln_mse_sum(const float *x, const float *y, int64_t m)
{
	double s = 0;
	for (int64_t k = 0; k < m; k++) {
		double d = (double)x[k] - (double)y[k];
		s += d * d;
	}
	return 0.5 * s;
}

/* gx_k = scale * (x_k - y_k);  gx, x, y (m). */
void ln_mse_grad(float *gx, const float *x, const float *y, int64_t m, double scale)
{
	for (int64_t k = 0; k < m; k++)
		gx[k] = (float)(scale * ((double)x[k] - (double)y[k]));
}

/* ---- the loss ------------------------------------------------------------------ */

/* Rows are samples: the target has the input's shape and is finite. */
static ln_status mse_prepare(const ln_loss *c, const ln_tensor *input, const ln_tensor *target,
                             ln_loss_rows *r, ln_error *err)
{
	(void)c;
	ln_status st = ln_loss_check_same_shape(input, target, err);
	if (st == LN_OK)
		st = ln_loss_check_finite("target", target, err);
	if (st == LN_OK)
		ln_loss_rows_batch(r, input, target);
	return st;
}

/* l_i = 1/2 ||x_i - y_i||^2 */
static double mse_row_loss(const ln_loss *c, const ln_loss_rows *r, int64_t i, float *yhat)
{
	(void)c;
	(void)yhat;
	return ln_mse_sum(r->x + i * r->k, r->y + i * r->k, r->k);
}

/* g = s (x_i - y_i) */
static void mse_row_grad(const ln_loss *c, const ln_loss_rows *r, int64_t i, float *g, double s)
{
	(void)c;
	ln_mse_grad(g, r->x + i * r->k, r->y + i * r->k, r->k, s);
}

static const ln_loss_class mse_class = {
	.name = "MSELoss",
	.size = sizeof(ln_loss),
	.prepare = mse_prepare,
	.row_loss = mse_row_loss,
	.row_grad = mse_row_grad,
};

/* New MSELoss; the caller owns the reference.  Errors: LN_ENOMEM. */
ln_status ln_mse_loss_new(ln_loss **out, ln_reduction r, ln_error *err)
{
	return ln_loss_alloc(out, &mse_class, r, err);
}
