/*
 * loss_impl.h -- what the loss files share among themselves: target and
 * value checks with messages, positions for messages, the reduction scale,
 * and the kernels that OutputLoss fuses (so that CrossEntropyLoss and
 * OutputLoss(softmax, cross_entropy) are one piece of arithmetic).
 *
 * Private to src/nn/{loss,mse,bce,cross_entropy,output_loss}.c; not part of
 * the public API.  Messages name no loss: the caller adds that (loss.h).
 * Positions in messages are 1-based, as a Lua script counts them.
 */
#ifndef LN_LOSS_IMPL_H
#define LN_LOSS_IMPL_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>

#include "loss.h"
#include "nn_internal.h"  /* ln_pos_str: positions in messages */

/* The classes the pairing checks recognise (output_loss.c). */
extern const ln_loss_class ln_output_loss_class;
extern const ln_loss_class ln_cross_entropy_class;
extern const ln_loss_class ln_nll_class;
extern const ln_loss_class ln_bce_logits_class;

/* Large enough for any pairing name ("OutputLoss(softmax, cross_entropy)"). */
#define LN_LOSS_PAIRING_MAX 64

/* One call of a loss as rows: row i is input[i*k .. i*k+k) (and the same
 * stretch of a target of the input's shape, or label i).  A class's
 * prepare fills it; loss.c sums row_loss over the rows and calls row_grad
 * on each with the reduction's scale.  Pointers borrow the call's tensors. */
struct ln_loss_rows {
	const float *x;       /* input (n,k) */
	const float *y;       /* target (n,k), or NULL when labels are given */
	const float *labels;  /* (n) 1-based integral floats, or NULL */
	int64_t n, k;
	/* The divisor of the mean (n, or the weight of the labels that
	 * count); 0 makes the mean 0. */
	double count;
	/* The shape of the per-sample losses (LN_REDUCE_NONE): {N}, or for
	 * the class losses the input's shape without its class dimension. */
	int out_ndim;
	int64_t out_shape[LN_MAX_DIMS];
};

/* Fills r for a loss whose samples are the input's rows along dimension
 * 1: n = N = shape[0], k = numel/N, count = N, per-sample shape {N};
 * y = target's data. */
void ln_loss_rows_batch(ln_loss_rows *r, const ln_tensor *input, const ln_tensor *target);

/* ln_loss_pairing for an OutputLoss (output_loss.c); c must be one. */
const char *ln_output_loss_pairing(const ln_loss *c);


/* LN_ENAN unless every element of t (contiguous) is finite:
 * "<what> has NaN at row 3, column 2" (also "inf", "-inf"). */
ln_status ln_loss_check_finite(const char *what, const ln_tensor *t, ln_error *err);

/* LN_ESHAPE unless target has the input's shape:
 * "expected target of shape {64,10}, got {64,9}". */
ln_status ln_loss_check_same_shape(const ln_tensor *input, const ln_tensor *target,
                                   ln_error *err);

/* LN_ERANGE unless every element of t lies in [0,1]:
 * "<what> 1.5 at row 2, column 1 is outside [0,1]"; NaN and infinities
 * first fail as in ln_loss_check_finite (LN_ENAN). */
ln_status ln_loss_check_unit(const char *what, const ln_tensor *t, ln_error *err);

/* LN_ESHAPE unless input is {N,C}: "expected input of shape {N,C}, got
 * {2,3,4}". */
ln_status ln_loss_check_2d(const ln_tensor *input, ln_error *err);
/* LN_ESHAPE unless input is {N,C} or {N,T,C} (classes last): "expected
 * input of shape {N,C} or {N,T,C}, got {2,3,4,5}". */
ln_status ln_loss_check_classes(const ln_tensor *input, ln_error *err);

/* ---- class targets ----------------------------------------------------------- */

/* Validates target against an {N,C} input and fills r: n = N rows of
 * k = C classes, and either labels (N 1-based class indices) or y (N rows
 * of C non-negative finite weights: one-hot or probabilities); count = N,
 * per-sample shape {N}.  An {N,T,C} input (a sequence's logits) is n =
 * N*T rows, its labels {N,T} (or rows {N,T,C}), per-sample shape {N,T}.
 * A label equal to *ignore (when ignore is not NULL) passes whatever its
 * value.  Errors:
 *   LN_ESHAPE "expected 64 labels, got 63" (1-D target of the wrong length),
 *   LN_ESHAPE "expected target of shape {64,10} or 64 class labels, got {64,9}",
 *   LN_ESHAPE "expected labels of shape {4,7} or a target of shape {4,7,10},
 *              got {4,6}" (an {N,T,C} input),
 *   LN_ENAN   "target has NaN at position 3",
 *   LN_ERANGE "label 2.5 at position 1 is not an integer",
 *   LN_ERANGE "label 11 at position 5 is out of range 1..10" (labels {N,T}:
 *              "at row 2, column 3"),
 *   LN_ERANGE "target -0.5 at row 2, column 3 is negative; probability rows
 *              must be non-negative". */
ln_status ln_loss_class_target(ln_loss_rows *r, const ln_tensor *input, const ln_tensor *target,
                               const int64_t *ignore, ln_error *err);

/* Class index (0-based) of the label of row i; only when r->labels. */
static inline int64_t ln_class_label(const ln_loss_rows *r, int64_t i)
{
	return (int64_t)r->labels[i] - 1;
}

/* ---- scalar helpers, in double ---------------------------------------------- */

/* sigma(z) = 1/(1+exp(-z)), without overflow for either sign. */
static inline double ln_sigmoid_d(double z)
{
	if (z >= 0)
		return 1.0 / (1.0 + exp(-z));
	double e = exp(z);
	return e / (1.0 + e);
}

/* log sum_j exp(z_j) of one row of c logits: m + log sum exp(z_j - m),
 * m = max_j z_j, so that nothing overflows (logits of 1000 are fine). */
static inline double ln_row_logsumexp(const float *z, int64_t c)
{
	double m = z[0];
	for (int64_t j = 1; j < c; j++)
		if (z[j] > m)
			m = z[j];
	double s = 0;
	for (int64_t j = 0; j < c; j++)
		s += exp((double)z[j] - m);
	return m + log(s);
}

/* PyTorch's BCELoss clamps each log at -100, so that an input of exactly
 * 0 or 1 gives a large finite loss instead of inf (torch/nn/functional.py,
 * binary_cross_entropy; aten/src/ATen/native/Loss.cpp). */
#define LN_BCE_LOG_MIN (-100.0)
/* ... and divides the gradient by max(x(1-x), 1e-12). */
#define LN_BCE_EPS 1e-12

/* ---- kernels shared with OutputLoss ------------------------------------------ */

/* MSE: returns sum_k (x_k - y_k)^2 / 2 over m elements (unscaled). */
double ln_mse_sum(const float *x, const float *y, int64_t m);
/* gx_k = scale * (x_k - y_k); gx (m). */
void ln_mse_grad(float *gx, const float *x, const float *y, int64_t m, double scale);

/* BCE with logits: returns sum_k max(z,0) - z*y + log1p(exp(-|z|)) over m
 * elements (unscaled); when p != NULL also writes p_k = sigmoid(z_k). */
double ln_bce_logits_sum(float *p, const float *z, const float *y, int64_t m);
/* gz_k = scale * (sigmoid(z_k) - y_k). */
void ln_bce_logits_grad(float *gz, const float *z, const float *y, int64_t m, double scale);

/* Cross-entropy of softmax(z_i) for row i of r (z = r->x, C = r->k
 * classes) against its label or probability row, with the options o (NULL:
 * none; the fused CrossEntropyLoss and OutputLoss(softmax, cross_entropy)
 * without options are this same arithmetic):
 *   l_i = S lse(z_i) - sum_j t_j z_ij,  t the (smoothed, weighted) target
 *   row, S = sum_j t_j;  for a plain label l: lse(z_i) - z_il.
 * Returns l_i; when p != NULL also writes p = softmax(z_i) (C).  An
 * ignored label gives 0 (and p still). */
double ln_ce_row(float *p, const ln_loss_rows *r, int64_t i, const ln_class_loss_options *o);
/* g (C) = s * (softmax(z_i) S - t): (p - y)*s for a plain label or a row
 * that sums to 1; zeros for an ignored label. */
void ln_ce_row_grad(float *g, const ln_loss_rows *r, int64_t i, const ln_class_loss_options *o,
                    double s);
/* The fast kernels under ln_ce_row and ln_ce_row_grad (cross_entropy.c):
 * the log-sum-exp of c >= 1 logits z (ln_row_logsumexp is its reference),
 * and g (c) = s (softmax(z) - onehot(l)) for a plain label l in 0..c-1
 * (the _naive one is its reference, in libm's double exp). */
double ln_ce_row_lse(const float *z, int64_t c);
void ln_ce_label_grad(float *restrict g, const float *restrict z, int64_t c, int64_t l, double s);
void ln_ce_label_grad_naive(float *g, const float *z, int64_t c, int64_t l, double s);

#endif
