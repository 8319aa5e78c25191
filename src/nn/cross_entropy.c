/*
 * cross_entropy.c -- CrossEntropyLoss on logits and NLLLoss on
 * log-probabilities, both over {N,C} inputs.
 *
 *   CrossEntropyLoss:  L = -1/N sum_i y_i . log softmax(z_i)
 *                        = 1/N sum_i [ (sum_j y_ij) lse(z_i) - y_i . z_i ]
 *                      with lse(z) = m + log sum_j exp(z_j - m), m = max_j z_j
 *                      (log-sum-exp: logits of +-1000 give a finite loss);
 *                      dL/dz_i = (softmax(z_i) (sum_j y_ij) - y_i)/N, which is
 *                      (softmax(z_i) - y_i)/N for one-hot and probability rows.
 *   NLLLoss:           L = -1/N sum_i y_i . x_i,  dL/dx_i = -y_i/N.
 *
 * Targets (ln_loss_class_target): N class labels 1..C as a 1-D tensor
 * (y_i is then one-hot), or {N,C} rows of non-negative weights.  Rows need
 * not sum to 1: the gradient above is exact for any row, and reduces to
 * (softmax - y)/N when they do.
 */
#include <math.h>
#include <string.h>

#include "../core/alloc.h"
#include "loss_impl.h"

/* ==== kernels ================================================================ */

/* returns sum_i [ (sum_j y_ij) lse_i - sum_j y_ij z_ij ]  (labels: lse_i - z_i,l_i);
 * z (N,C), t labels (N) or rows (N,C).  p (N,C) = softmax(z) when p != NULL.
 * Accumulated in double, row by row. */
double ln_ce_sum(float *p, const float *z, const ln_class_target *t)
{
	int64_t n = t->n, c = t->c;
	double total = 0;
	for (int64_t i = 0; i < n; i++) {
		const float *zi = z + i * c;
		double lse = ln_row_logsumexp(zi, c);
		if (t->labels) {
			total += lse - (double)zi[ln_class_label(t, i)];
		} else {
			const float *yi = t->rows + i * c;
			double sy = 0, yz = 0;
			for (int64_t j = 0; j < c; j++) {
				sy += yi[j];
				yz += (double)yi[j] * zi[j];
			}
			total += sy * lse - yz;
		}
		if (p)
			for (int64_t j = 0; j < c; j++)
				p[i * c + j] = (float)exp((double)zi[j] - lse);
	}
	return total;
}

/* Rows of at most this many classes keep their exponentials on the stack. */
#define CE_ROW_MAX 64

/* gz_ij = scale * (softmax(z)_ij * sum_k y_ik - y_ij);  gz, z (N,C). */
void ln_ce_grad(float *gz, const float *z, const ln_class_target *t, double scale)
{
	int64_t n = t->n, c = t->c;
	for (int64_t i = 0; i < n; i++) {
		const float *zi = z + i * c;
		float *gi = gz + i * c;
		if (t->labels && c <= CE_ROW_MAX) {
			/* softmax as e_j / sum e with e_j = exp(z_j - max z): one exp per
			 * logit (the general path below takes two) */
			double e[CE_ROW_MAX], m = zi[0], sum = 0;
			for (int64_t j = 1; j < c; j++)
				if (zi[j] > m)
					m = zi[j];
			for (int64_t j = 0; j < c; j++)
				sum += e[j] = exp((double)zi[j] - m);
			int64_t l = ln_class_label(t, i);
			for (int64_t j = 0; j < c; j++)
				gi[j] = (float)(scale * (e[j] / sum - (j == l ? 1.0 : 0.0)));
			continue;
		}
		double lse = ln_row_logsumexp(zi, c);
		if (t->labels) {
			int64_t l = ln_class_label(t, i);
			for (int64_t j = 0; j < c; j++)
				gi[j] = (float)(scale * (exp((double)zi[j] - lse) - (j == l ? 1.0 : 0.0)));
		} else {
			const float *yi = t->rows + i * c;
			double sy = 0;
			for (int64_t j = 0; j < c; j++)
				sy += yi[j];
			for (int64_t j = 0; j < c; j++)
				gi[j] = (float)(scale * (exp((double)zi[j] - lse) * sy - (double)yi[j]));
		}
	}
}

/* returns -sum_i y_i . x_i;  x (N,C). */
static double nll_sum(const float *x, const ln_class_target *t)
{
	int64_t n = t->n, c = t->c;
	double s = 0;
	if (t->labels) {
		for (int64_t i = 0; i < n; i++)
			s -= x[i * c + ln_class_label(t, i)];
	} else {
		for (int64_t k = 0; k < n * c; k++)
			s -= (double)t->rows[k] * x[k];
	}
	return s;
}

/* gx = -scale * y;  gx (N,C). */
static void nll_grad(float *gx, const ln_class_target *t, double scale)
{
	int64_t n = t->n, c = t->c;
	if (t->labels) {
		memset(gx, 0, (size_t)(n * c) * sizeof(float));
		for (int64_t i = 0; i < n; i++)
			gx[i * c + ln_class_label(t, i)] = (float)-scale;
	} else {
		for (int64_t k = 0; k < n * c; k++)
			gx[k] = (float)(-scale * t->rows[k]);
	}
}

/* ==== the losses ================================================================ */

/* Input {N,C} and a valid class target, or the error. */
static ln_status class_check(ln_class_target *t, const ln_loss *c, const ln_tensor *input,
                             const ln_tensor *target, ln_error *err)
{
	ln_status st = ln_loss_check_2d(input, err);
	if (st == LN_OK)
		st = ln_loss_class_target(t, input, target, err);
	return st;
}

static ln_status ce_forward(ln_loss *c, const ln_tensor *input, const ln_tensor *target,
                            double *loss, ln_error *err)
{
	ln_class_target t;
	ln_status st = class_check(&t, c, input, target, err);
	if (st != LN_OK)
		return st;
	*loss = ln_loss_scale(c, t.n) * ln_ce_sum(NULL, ln_tensor_data(input), &t);
	return LN_OK;
}

static ln_status ce_backward(ln_loss *c, const ln_tensor *input, const ln_tensor *target,
                             ln_error *err)
{
	ln_class_target t;
	ln_status st = class_check(&t, c, input, target, err);
	if (st == LN_OK)
		st = ln_tensor_ensure(&c->grad_input, input->ndim, input->shape, err);
	if (st != LN_OK)
		return st;
	ln_ce_grad(ln_tensor_data(&c->grad_input), ln_tensor_data(input), &t, ln_loss_scale(c, t.n));
	return LN_OK;
}

const ln_loss_class ln_cross_entropy_class = {
	.name = "CrossEntropyLoss",
	.size = sizeof(ln_loss),
	.forward = ce_forward,
	.backward = ce_backward,
};

/* New CrossEntropyLoss; the caller owns the reference.  Errors: LN_ENOMEM. */
ln_status ln_cross_entropy_loss_new(ln_loss **out, ln_reduction r, ln_error *err)
{
	return ln_loss_alloc(out, &ln_cross_entropy_class, r, err);
}

static ln_status nll_forward(ln_loss *c, const ln_tensor *input, const ln_tensor *target,
                             double *loss, ln_error *err)
{
	ln_class_target t;
	ln_status st = class_check(&t, c, input, target, err);
	if (st != LN_OK)
		return st;
	*loss = ln_loss_scale(c, t.n) * nll_sum(ln_tensor_data(input), &t);
	return LN_OK;
}

static ln_status nll_backward(ln_loss *c, const ln_tensor *input, const ln_tensor *target,
                              ln_error *err)
{
	ln_class_target t;
	ln_status st = class_check(&t, c, input, target, err);
	if (st == LN_OK)
		st = ln_tensor_ensure(&c->grad_input, input->ndim, input->shape, err);
	if (st != LN_OK)
		return st;
	nll_grad(ln_tensor_data(&c->grad_input), &t, ln_loss_scale(c, t.n));
	return LN_OK;
}

const ln_loss_class ln_nll_class = {
	.name = "NLLLoss",
	.size = sizeof(ln_loss),
	.forward = nll_forward,
	.backward = nll_backward,
};

/* New NLLLoss; the caller owns the reference.  Errors: LN_ENOMEM. */
ln_status ln_nll_loss_new(ln_loss **out, ln_reduction r, ln_error *err)
{
	return ln_loss_alloc(out, &ln_nll_class, r, err);
}
