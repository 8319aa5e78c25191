/*
 * mse.c -- MSELoss: L = 1/(2N) sum_i ||x_i - y_i||^2  (sum reduction:
 * 1/2 sum), dL/dx = (x - y)/N.
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

static ln_status mse_check(const ln_tensor *input, const ln_tensor *target, ln_error *err)
{
	ln_status st = ln_loss_check_same_shape(input, target, err);
	if (st == LN_OK)
		st = ln_loss_check_finite("target", target, err);
	return st;
}

static ln_status mse_forward(ln_loss *c, const ln_tensor *input, const ln_tensor *target,
                             double *loss, ln_error *err)
{
	ln_status st = mse_check(input, target, err);
	if (st != LN_OK)
		return st;
	*loss = ln_loss_scale(c, input->shape[0]) *
	        ln_mse_sum(ln_tensor_data(input), ln_tensor_data(target), ln_tensor_numel(input));
	return LN_OK;
}

static ln_status mse_backward(ln_loss *c, const ln_tensor *input, const ln_tensor *target,
                              ln_error *err)
{
	ln_status st = mse_check(input, target, err);
	if (st == LN_OK)
		st = ln_tensor_ensure(&c->grad_input, input->ndim, input->shape, err);
	if (st != LN_OK)
		return st;
	ln_mse_grad(ln_tensor_data(&c->grad_input), ln_tensor_data(input), ln_tensor_data(target),
	            ln_tensor_numel(input), ln_loss_scale(c, input->shape[0]));
	return LN_OK;
}

static const ln_loss_class mse_class = {
	.name = "MSELoss",
	.size = sizeof(ln_loss),
	.forward = mse_forward,
	.backward = mse_backward,
};

/* New MSELoss; the caller owns the reference.  Errors: LN_ENOMEM. */
ln_status ln_mse_loss_new(ln_loss **out, ln_reduction r, ln_error *err)
{
	return ln_loss_alloc(out, &mse_class, r, err);
}
