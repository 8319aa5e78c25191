/*
 * cross_entropy.c -- CrossEntropyLoss on logits and NLLLoss on
 * log-probabilities, both over {N,C} inputs, with PyTorch's options
 * (loss.h): label_smoothing (CrossEntropyLoss), class weights and
 * ignore_index.
 *
 *   CrossEntropyLoss:  l_i = -sum_j t_ij log softmax(z_i)_j
 *                          = sum_j t_ij (lse(z_i) - z_ij)
 *                      with lse(z) = m + log sum_j exp(z_j - m), m = max_j z_j
 *                      (log-sum-exp: logits of +-1000 give a finite loss), and
 *                      t_i the target row: one-hot for a label l, the given
 *                      row otherwise, then smoothed, t <- (1 - eps) t + eps/C,
 *                      and weighted, t_j <- w_j t_j;
 *                      dl_i/dz_i = softmax(z_i) S_i - t_i,  S_i = sum_j t_ij,
 *                      which is softmax(z_i) - y_i for a plain label or a row
 *                      that sums to 1.
 *   NLLLoss:           l_i = -sum_j w_j y_ij x_ij,  dl_i/dx_i = -w .* y_i.
 *
 * The mean divides by the number of rows, or, for labels with weights or
 * an ignore_index, by the weight of the labels that count (PyTorch's
 * weighted mean: sum_i w_{l_i} over the rows not ignored).
 *
 * Targets (ln_loss_class_target): N class labels 1..C as a 1-D tensor
 * (y_i is then one-hot), or {N,C} rows of non-negative weights.  Rows need
 * not sum to 1: the gradient above is exact for any row.
 *
 * Sequences: logits {N,T,C} with labels {N,T} (or rows {N,T,C}) are N*T
 * rows, one per token; the mean is over the N*T tokens (as PyTorch's
 * losses on their (N,C,T) layout) and reduction "none" gives {N,T}.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../core/alloc.h"
#include "cellmath.h"
#include "loss_impl.h"

/* A class loss: its options, and its own copy of the class weights. */
typedef struct class_loss {
	ln_loss base;
	ln_class_loss_options o;  /* o.weight is &weight, or NULL */
	ln_tensor weight;         /* {C}, owned; empty without weights */
} class_loss;

/* ==== kernels ================================================================ */

/* The class weights of o (C), or NULL for all 1. */
static const float *class_weights(const ln_class_loss_options *o)
{
	return o && o->weight ? ln_tensor_data(o->weight) : NULL;
}

static bool is_ignored(const ln_loss_rows *r, int64_t i, const ln_class_loss_options *o)
{
	return o && o->has_ignore && (double)r->labels[i] == (double)o->ignore_index;
}

/* ---- the fast gradient of a labelled row ----------------------------------------
 *
 * The gradient of CrossEntropyLoss with plain labels (no class weights,
 * no smoothing), its common case, runs on cellmath.h's exp in float:
 * e^(z_j - m) with ln_exp_fast (relative error < 2e-7), summed in 8
 * double lanes, so that the loops vectorise; it is within 5e-7 * |s| of
 * ln_ce_label_grad_naive's (libm, double; test_losses.c checks it).  The
 * loss itself stays in double, as the gradient checks difference it: its
 * log-sum-exp, ln_ce_row_lse, runs on cellmath.h's ln_exp_d (relative
 * error < 1e-15) in 8 double lanes, within 1e-14 of loss_impl.h's
 * ln_row_logsumexp (libm), its reference. */

/* max_j z_j of c >= 1 logits, in 8 lanes (a vectorised max) */
static float row_max(const float *z, int64_t c)
{
	float mx[8];
	for (int k = 0; k < 8; k++)
		mx[k] = z[0];
	int64_t j = 0;
	for (; j + 8 <= c; j += 8)
		for (int k = 0; k < 8; k++)
			mx[k] = z[j + k] > mx[k] ? z[j + k] : mx[k];
	for (; j < c; j++)
		mx[0] = z[j] > mx[0] ? z[j] : mx[0];
	float m = mx[0];
	for (int k = 1; k < 8; k++)
		m = mx[k] > m ? mx[k] : m;
	return m;
}

/* sum_j e^(z_j - m) over c logits, in 8 double lanes */
static double row_exp_sum(const float *z, int64_t c, float m)
{
	double acc[8] = {0};
	int64_t j = 0;
	for (; j + 8 <= c; j += 8)
		for (int k = 0; k < 8; k++)
			acc[k] += (double)ln_exp_fast(z[j + k] - m);
	for (; j < c; j++)
		acc[0] += (double)ln_exp_fast(z[j] - m);
	return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

double ln_ce_row_lse(const float *z, int64_t c)
{
	float m = row_max(z, c);
	double acc[8] = {0};
	int64_t j = 0;
	for (; j + 8 <= c; j += 8)
		for (int k = 0; k < 8; k++)
			acc[k] += ln_exp_d((double)z[j + k] - m);
	for (; j < c; j++)
		acc[0] += ln_exp_d((double)z[j] - m);
	double sum = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
	return (double)m + log(sum);
}

void ln_ce_label_grad(float *restrict g, const float *restrict z, int64_t c, int64_t l, double s)
{
	float m = row_max(z, c);
	float f = (float)(s / row_exp_sum(z, c, m));
	for (int64_t j = 0; j < c; j++)
		g[j] = f * ln_exp_fast(z[j] - m);
	g[l] = (float)((double)g[l] - s);
}

/* The reference of ln_ce_label_grad: libm's exp in double,
 * g = s (softmax(z) - onehot(l)). */
void ln_ce_label_grad_naive(float *g, const float *z, int64_t c, int64_t l, double s)
{
	double m = z[0], sum = 0;
	for (int64_t j = 1; j < c; j++)
		if (z[j] > m)
			m = z[j];
	for (int64_t j = 0; j < c; j++)
		sum += exp((double)z[j] - m);
	for (int64_t j = 0; j < c; j++)
		g[j] = (float)(s * (exp((double)z[j] - m) / sum - (j == l ? 1.0 : 0.0)));
}

double ln_ce_row(float *p, const ln_loss_rows *r, int64_t i, const ln_class_loss_options *o)
{
	int64_t c = r->k;
	const float *z = r->x + i * c;
	const float *w = class_weights(o);
	double eps = o ? o->label_smoothing : 0.0;
	double lse = ln_ce_row_lse(z, c);
	if (p)
		for (int64_t j = 0; j < c; j++)
			p[j] = (float)ln_exp_d((double)z[j] - lse);
	if (r->labels) {
		if (is_ignored(r, i, o))
			return 0.0;
		int64_t l = ln_class_label(r, i);
		double loss = (1.0 - eps) * (w ? w[l] : 1.0) * (lse - (double)z[l]);
		if (eps > 0) {
			double sm = 0;
			for (int64_t j = 0; j < c; j++)
				sm += (w ? w[j] : 1.0) * (lse - (double)z[j]);
			loss += eps / (double)c * sm;
		}
		return loss;
	}
	const float *y = r->y + i * c;
	double loss = 0;
	for (int64_t j = 0; j < c; j++) {
		double t = (w ? w[j] : 1.0) * ((1.0 - eps) * y[j] + eps / (double)c);
		loss += t * (lse - (double)z[j]);
	}
	return loss;
}

void ln_ce_row_grad(float *g, const ln_loss_rows *r, int64_t i, const ln_class_loss_options *o,
                    double s)
{
	int64_t c = r->k;
	const float *z = r->x + i * c;
	const float *w = class_weights(o);
	double eps = o ? o->label_smoothing : 0.0;
	if (r->labels && is_ignored(r, i, o)) {
		memset(g, 0, (size_t)c * sizeof *g);
		return;
	}
	int64_t l = r->labels ? ln_class_label(r, i) : -1;
	if (r->labels && !w && eps == 0) {
		ln_ce_label_grad(g, z, c, l, s);
		return;
	}
	double lse = ln_ce_row_lse(z, c);
	/* t_j, the smoothed and weighted target, in two passes: its sum first */
	const float *y = r->labels ? NULL : r->y + i * c;
	double sum_t = 0;
	for (int pass = 0; pass < 2; pass++) {
		for (int64_t j = 0; j < c; j++) {
			double yj = y ? (double)y[j] : (j == l ? 1.0 : 0.0);
			double t = (w ? w[j] : 1.0) * ((1.0 - eps) * yj + eps / (double)c);
			if (pass == 0)
				sum_t += t;
			else
				g[j] = (float)(s * (ln_exp_d((double)z[j] - lse) * sum_t - t));
		}
	}
}

/* l_i = -sum_j w_j y_ij x_ij  (label l: -w_l x_il);  x (N,C). */
static double nll_row(const ln_loss_rows *r, int64_t i, const ln_class_loss_options *o)
{
	int64_t c = r->k;
	const float *x = r->x + i * c, *w = class_weights(o);
	if (r->labels) {
		if (is_ignored(r, i, o))
			return 0.0;
		int64_t l = ln_class_label(r, i);
		return -(w ? w[l] : 1.0) * (double)x[l];
	}
	const float *y = r->y + i * c;
	double loss = 0;
	for (int64_t j = 0; j < c; j++)
		loss -= (w ? w[j] : 1.0) * (double)y[j] * x[j];
	return loss;
}

/* g = -s w .* y_i (C). */
static void nll_row_grad(float *g, const ln_loss_rows *r, int64_t i,
                         const ln_class_loss_options *o, double s)
{
	int64_t c = r->k;
	const float *w = class_weights(o);
	if (r->labels) {
		memset(g, 0, (size_t)c * sizeof *g);
		if (!is_ignored(r, i, o)) {
			int64_t l = ln_class_label(r, i);
			g[l] = (float)(-s * (w ? w[l] : 1.0));
		}
		return;
	}
	const float *y = r->y + i * c;
	for (int64_t j = 0; j < c; j++)
		g[j] = (float)(-s * (w ? w[j] : 1.0) * y[j]);
}

/* ==== the losses ================================================================ */

/* Input {N,C} or {N,T,C} and a valid class target (a label equal to ignore_index
 * passes), weights for every class, labels when ignore_index is set; the
 * mean's divisor: the weight of the labels that count. */
static ln_status class_prepare(const ln_loss *c, const ln_tensor *input, const ln_tensor *target,
                               ln_loss_rows *r, ln_error *err)
{
	const ln_class_loss_options *o = &((const class_loss *)c)->o;
	ln_status st = ln_loss_check_classes(input, err);
	if (st == LN_OK)
		st = ln_loss_class_target(r, input, target, o->has_ignore ? &o->ignore_index : NULL, err);
	if (st != LN_OK)
		return st;
	if (o->weight && ln_tensor_numel(o->weight) != r->k)
		return ln_fail(err, LN_ESHAPE, "weight has %lld entries, but the input has %lld classes",
		               (long long)ln_tensor_numel(o->weight), (long long)r->k);
	if (o->has_ignore && !r->labels) {
		char got[128];
		return ln_fail(err, LN_EARG, "ignore_index needs class labels as the target, got "
		               "probability rows of shape %s", ln_tensor_shape_str(target, got, sizeof got));
	}
	if (r->labels && (o->weight || o->has_ignore)) {
		const float *w = class_weights(o);
		double count = 0;
		for (int64_t i = 0; i < r->n; i++)
			if (!is_ignored(r, i, o))
				count += w ? w[ln_class_label(r, i)] : 1.0;
		r->count = count;
	}
	return LN_OK;
}

static double ce_row_loss(const ln_loss *c, const ln_loss_rows *r, int64_t i, float *yhat)
{
	(void)yhat;
	return ln_ce_row(NULL, r, i, &((const class_loss *)c)->o);
}

static void ce_row_grad(const ln_loss *c, const ln_loss_rows *r, int64_t i, float *g, double s)
{
	ln_ce_row_grad(g, r, i, &((const class_loss *)c)->o, s);
}

static double nll_row_loss(const ln_loss *c, const ln_loss_rows *r, int64_t i, float *yhat)
{
	(void)yhat;
	return nll_row(r, i, &((const class_loss *)c)->o);
}

static void nll_row_grad_cb(const ln_loss *c, const ln_loss_rows *r, int64_t i, float *g,
                            double s)
{
	nll_row_grad(g, r, i, &((const class_loss *)c)->o, s);
}

static void class_destroy(ln_loss *c)
{
	ln_tensor_release(&((class_loss *)c)->weight);
}

/* "CrossEntropyLoss(label_smoothing=0.1, weight={5}, ignore_index=0,
 * reduction=sum)", with only the options that differ from the defaults. */
static int class_describe(const ln_loss *c, char *buf, size_t size)
{
	const ln_class_loss_options *o = &((const class_loss *)c)->o;
	char opts[256] = "", shape[64];
	size_t n = 0;
	if (o->label_smoothing != 0)
		n += (size_t)snprintf(opts + n, sizeof opts - n, "%slabel_smoothing=%g", n ? ", " : "",
		                      o->label_smoothing);
	if (o->weight && n < sizeof opts)
		n += (size_t)snprintf(opts + n, sizeof opts - n, "%sweight=%s", n ? ", " : "",
		                      ln_tensor_shape_str(o->weight, shape, sizeof shape));
	if (o->has_ignore && n < sizeof opts)
		n += (size_t)snprintf(opts + n, sizeof opts - n, "%signore_index=%lld", n ? ", " : "",
		                      (long long)o->ignore_index);
	if (c->reduction != LN_REDUCE_MEAN && n < sizeof opts)
		snprintf(opts + n, sizeof opts - n, "%sreduction=%s", n ? ", " : "",
		         ln_reduction_name(c->reduction));
	return snprintf(buf, size, "%s(%s)", c->cls->name, opts);
}

const ln_loss_class ln_cross_entropy_class = {
	.name = "CrossEntropyLoss",
	.size = sizeof(class_loss),
	.prepare = class_prepare,
	.row_loss = ce_row_loss,
	.row_grad = ce_row_grad,
	.destroy = class_destroy,
	.describe = class_describe,
};

const ln_loss_class ln_nll_class = {
	.name = "NLLLoss",
	.size = sizeof(class_loss),
	.prepare = class_prepare,
	.row_loss = nll_row_loss,
	.row_grad = nll_row_grad_cb,
	.destroy = class_destroy,
	.describe = class_describe,
};

/* Checks o's smoothing (in [0,1]) and the shape of its weights (1-D). */
static ln_status check_options(const ln_loss_class *cls, const ln_class_loss_options *o,
                               ln_error *err)
{
	if (isnan(o->label_smoothing))
		return ln_fail(err, LN_ERANGE, "label_smoothing must be in [0,1], got nan");
	if (!(o->label_smoothing >= 0 && o->label_smoothing <= 1))
		return ln_fail(err, LN_ERANGE, "label_smoothing must be in [0,1], got %g",
		               o->label_smoothing);
	if (o->label_smoothing != 0 && cls != &ln_cross_entropy_class)
		return ln_fail(err, LN_EARG, "label_smoothing is an option of CrossEntropyLoss only");
	if (!o->weight)
		return LN_OK;
	if (ln_tensor_is_empty(o->weight) || o->weight->ndim != 1) {
		char s[128];
		return ln_fail(err, LN_ESHAPE, "weight must be a 1-D tensor of one weight per class, "
		               "got shape %s", ln_tensor_shape_str(o->weight, s, sizeof s));
	}
	return LN_OK;
}

/* The values of the (contiguous) weights: finite, non-negative. */
static ln_status check_weights(const ln_tensor *w, ln_error *err)
{
	ln_status st = ln_loss_check_finite("weight", w, err);
	const float *d = ln_tensor_data(w);
	for (int64_t j = 0; st == LN_OK && j < w->shape[0]; j++)
		if (d[j] < 0)
			return ln_fail(err, LN_ERANGE, "weight %g at position %lld is negative; class "
			               "weights must be >= 0", (double)d[j], (long long)(j + 1));
	return st;
}

/* New class loss of class cls with options o (NULL: none); the caller
 * owns the reference.  The weights are copied. */
static ln_status class_loss_new(ln_loss **out, const ln_loss_class *cls, ln_reduction r,
                                const ln_class_loss_options *o, ln_error *err)
{
	*out = NULL;
	ln_class_loss_options none = {0};
	if (!o)
		o = &none;
	ln_status st = check_options(cls, o, err);
	if (st != LN_OK)
		return st;
	ln_loss *c;
	if ((st = ln_loss_alloc(&c, cls, r, err)) != LN_OK)
		return st;
	class_loss *cl = (class_loss *)c;
	cl->weight = LN_TENSOR_EMPTY;
	cl->o = *o;
	cl->o.weight = NULL;
	if (o->weight) {
		st = ln_tensor_clone(&cl->weight, o->weight, err);
		if (st == LN_OK)
			st = check_weights(&cl->weight, err);
		if (st != LN_OK) {
			ln_loss_release(c);
			return st;
		}
		cl->o.weight = &cl->weight;
	}
	*out = c;
	return LN_OK;
}

ln_status ln_cross_entropy_loss_new_ex(ln_loss **out, ln_reduction r,
                                       const ln_class_loss_options *o, ln_error *err)
{
	return class_loss_new(out, &ln_cross_entropy_class, r, o, err);
}

ln_status ln_nll_loss_new_ex(ln_loss **out, ln_reduction r, const ln_class_loss_options *o,
                             ln_error *err)
{
	return class_loss_new(out, &ln_nll_class, r, o, err);
}

/* New CrossEntropyLoss; the caller owns the reference.  Errors: LN_ENOMEM. */
ln_status ln_cross_entropy_loss_new(ln_loss **out, ln_reduction r, ln_error *err)
{
	return class_loss_new(out, &ln_cross_entropy_class, r, NULL, err);
}

/* New NLLLoss; the caller owns the reference.  Errors: LN_ENOMEM. */
ln_status ln_nll_loss_new(ln_loss **out, ln_reduction r, ln_error *err)
{
	return class_loss_new(out, &ln_nll_class, r, NULL, err);
}

bool ln_class_loss_options_get(const ln_loss *c, ln_class_loss_options *o)
{
	if (c->cls != &ln_cross_entropy_class && c->cls != &ln_nll_class)
		return false;
	*o = ((const class_loss *)c)->o;
	return true;
}
