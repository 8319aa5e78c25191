/*
 * output_loss.c -- OutputLoss(act, loss): an output activation and a loss
 * as one object, y_hat = act(z), L = loss(y_hat, y), backward gives dL/dz.
 *
 * The pairings, activation x loss:
 *
 *              mse           bce              cross_entropy
 *   identity   canonical     -- unbounded     -- not a distribution
 *   sigmoid    chain rule    canonical        -- rows do not sum to 1
 *   tanh       chain rule    -- in (-1,1)     -- not a distribution
 *   relu       chain rule    -- in [0,inf)    -- not a distribution
 *   softmax    chain rule    chain rule       canonical
 *
 * Canonical pairings are computed fused, from z, in stable form, and give
 * dL/dz = (y_hat - y)/N exactly (the output activation is the inverse of
 * the loss's canonical link: identity/Gaussian, logistic/Bernoulli,
 * softmax/categorical):
 *   (identity, mse)          L = 1/(2N) sum (z - y)^2
 *   (sigmoid, bce)           L = 1/N sum max(z,0) - z y + log1p(exp(-|z|))
 *   (softmax, cross_entropy) L = 1/N sum_i (sum_j y_ij) lse(z_i) - y_i . z_i
 * Any other defined pairing goes through the chain rule,
 * dL/dz = act'(z)^T dL/dy_hat, with dL/dy_hat = (y_hat - y)/N for mse and
 * (y_hat - y)/(y_hat(1 - y_hat))/N for bce; for softmax act'(z)^T u is the
 * Jacobian-vector product y_hat .* (u - y_hat . u), row by row.
 *
 * (softmax, bce) is allowed: softmax outputs lie in (0,1), so each one is
 * a valid Bernoulli probability and the loss is defined and differentiable.
 * It is rarely what one wants (softmax makes the outputs compete, bce
 * scores them as independent labels), which is exactly what an experiment
 * comparing pairings may want to show; the log of y_hat is taken as
 * z - lse(z), and log(1 - y_hat) is clamped at -100 as in BCELoss.
 * bce after identity, tanh or relu, and cross_entropy after anything but
 * softmax, are refused by the constructor with the reason.
 *
 * Input: z of any shape (N = shape[0]); {N,C} when the activation is
 * softmax (rows are the distributions).  Targets: mse, the input's shape,
 * finite; bce, the input's shape, in [0,1]; cross_entropy, N labels 1..C
 * or {N,C} non-negative rows.  forward writes y_hat into c->output;
 * backward recomputes what it needs from z and writes c->grad_input.
 */
#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../core/alloc.h"
#include "loss_impl.h"

typedef struct output_loss {
	ln_loss base;
	ln_activation act;
	ln_loss_kind kind;
	char pairing[LN_LOSS_PAIRING_MAX];  /* "OutputLoss(sigmoid, bce)", for messages */
} output_loss;

/* ==== names ================================================================== */

static const char *const act_names[] = {
	[LN_ACT_IDENTITY] = "identity",
	[LN_ACT_SIGMOID] = "sigmoid",
	[LN_ACT_TANH] = "tanh",
	[LN_ACT_RELU] = "relu",
	[LN_ACT_SOFTMAX] = "softmax",
};
_Static_assert(sizeof act_names / sizeof act_names[0] == LN_ACT_COUNT,
               "one name per activation");

static const char *const kind_names[] = {
	[LN_LOSS_MSE] = "mse",
	[LN_LOSS_BCE] = "bce",
	[LN_LOSS_CROSS_ENTROPY] = "cross_entropy",
};
_Static_assert(sizeof kind_names / sizeof kind_names[0] == LN_LOSS_KIND_COUNT,
               "one name per loss kind");

static int find_name(const char *const *names, int count, const char *name)
{
	if (!name)
		return -1;
	for (int i = 0; i < count; i++)
		if (strcmp(names[i], name) == 0)
			return i;
	return -1;
}

static int join_names(char *buf, size_t size, const char *const *names, int count)
{
	size_t n = 0;
	if (size)
		buf[0] = '\0';
	for (int i = 0; i < count; i++) {
		int w = snprintf(n < size ? buf + n : NULL, n < size ? size - n : 0, "%s%s",
		                 i ? ", " : "", names[i]);
		n += (size_t)w;
	}
	return (int)n;
}

int ln_activation_from_name(const char *name) { return find_name(act_names, LN_ACT_COUNT, name); }
int ln_loss_kind_from_name(const char *name) { return find_name(kind_names, LN_LOSS_KIND_COUNT, name); }

const char *ln_activation_name(ln_activation a)
{
	return (unsigned)a < LN_ACT_COUNT ? act_names[a] : "?";
}

const char *ln_loss_kind_name(ln_loss_kind k)
{
	return (unsigned)k < LN_LOSS_KIND_COUNT ? kind_names[k] : "?";
}

int ln_activation_names(char *buf, size_t size)
{
	return join_names(buf, size, act_names, LN_ACT_COUNT);
}

int ln_loss_kind_names(char *buf, size_t size)
{
	return join_names(buf, size, kind_names, LN_LOSS_KIND_COUNT);
}

/* ==== which pairings are defined ================================================= */

static bool is_canonical(ln_activation a, ln_loss_kind k)
{
	return (a == LN_ACT_IDENTITY && k == LN_LOSS_MSE) || (a == LN_ACT_SIGMOID && k == LN_LOSS_BCE) ||
	       (a == LN_ACT_SOFTMAX && k == LN_LOSS_CROSS_ENTROPY);
}

/* NULL when (a, k) is defined, else why not (the text after "OutputLoss: "). */
static const char *undefined_why(ln_activation a, ln_loss_kind k)
{
	if (k == LN_LOSS_BCE) {
		switch (a) {
		case LN_ACT_IDENTITY:
			return "bce needs outputs in (0,1); identity outputs are unbounded "
			       "(use sigmoid, or BCEWithLogitsLoss on the logits)";
		case LN_ACT_TANH:
			return "bce needs outputs in (0,1); tanh outputs lie in (-1,1) (use sigmoid)";
		case LN_ACT_RELU:
			return "bce needs outputs in (0,1); relu outputs lie in [0,inf) (use sigmoid)";
		default:
			return NULL;
		}
	}
	if (k == LN_LOSS_CROSS_ENTROPY) {
		switch (a) {
		case LN_ACT_IDENTITY:
			return "cross_entropy needs a probability distribution over classes; only softmax "
			       "produces one (identity outputs are unbounded: use softmax, or "
			       "CrossEntropyLoss on the logits)";
		case LN_ACT_SIGMOID:
			return "cross_entropy needs a probability distribution over classes; only softmax "
			       "produces one (sigmoid outputs lie in (0,1) but do not sum to 1; for "
			       "independent binary labels use bce)";
		case LN_ACT_TANH:
			return "cross_entropy needs a probability distribution over classes; only softmax "
			       "produces one (tanh outputs lie in (-1,1))";
		case LN_ACT_RELU:
			return "cross_entropy needs a probability distribution over classes; only softmax "
			       "produces one (relu outputs are non-negative but do not sum to 1)";
		default:
			return NULL;
		}
	}
	return NULL;
}

/* ==== kernels for the chain-rule pairings ======================================== */

/* y_hat = act(z) for the elementwise activations, in double. */
static double act_value(ln_activation a, double z)
{
	switch (a) {
	case LN_ACT_SIGMOID: return ln_sigmoid_d(z);
	case LN_ACT_TANH: return tanh(z);
	case LN_ACT_RELU: return z > 0 ? z : 0.0;
	default: return z;
	}
}

/* d y_hat / dz for the elementwise activations, from z and y_hat = act(z).
 * relu'(0) is taken as 0. */
static double act_deriv(ln_activation a, double z, double p)
{
	switch (a) {
	case LN_ACT_SIGMOID: return p * (1.0 - p);
	case LN_ACT_TANH: return 1.0 - p * p;
	case LN_ACT_RELU: return z > 0 ? 1.0 : 0.0;
	default: return 1.0;
	}
}

/* Per-element loss of y_hat = p against y (unscaled); logp = log p,
 * passed in because softmax knows it more exactly than log(p). */
static double elem_loss(ln_loss_kind k, double p, double logp, double y)
{
	if (k == LN_LOSS_MSE)
		return 0.5 * (p - y) * (p - y);
	/* bce */
	return -(y * fmax(logp, LN_BCE_LOG_MIN) + (1.0 - y) * fmax(log1p(-p), LN_BCE_LOG_MIN));
}

/* dL/dy_hat per element (unscaled). */
static double elem_dloss(ln_loss_kind k, double p, double y)
{
	if (k == LN_LOSS_MSE)
		return p - y;
	return (p - y) / fmax(p * (1.0 - p), LN_BCE_EPS);
}

/* Elementwise activation then mse/bce: p = act(z) into yhat (m), returns
 * sum_k loss(p_k, y_k).  z, y, yhat (m). */
static double chain_elem_forward(float *yhat, const float *z, const float *y, int64_t m,
                                 ln_activation a, ln_loss_kind k)
{
	double s = 0;
	for (int64_t i = 0; i < m; i++) {
		double p = act_value(a, z[i]);
		yhat[i] = (float)p;
		s += elem_loss(k, p, k == LN_LOSS_BCE ? log(p) : 0.0, y[i]);
	}
	return s;
}

/* gz_k = scale * dL/dy_hat_k * act'(z_k);  gz, z, y (m). */
static void chain_elem_backward(float *gz, const float *z, const float *y, int64_t m,
                                ln_activation a, ln_loss_kind k, double scale)
{
	for (int64_t i = 0; i < m; i++) {
		double p = act_value(a, z[i]);
		gz[i] = (float)(scale * elem_dloss(k, p, y[i]) * act_deriv(a, z[i], p));
	}
}

/* One softmax row then mse/bce: p = softmax(z) into yhat (c), returns
 * sum_j loss(p_j, y_j).  z, y, yhat (c). */
static double chain_softmax_forward(float *yhat, const float *z, const float *y, int64_t c,
                                    ln_loss_kind k)
{
	double s = 0;
	double lse = ln_row_logsumexp(z, c);
	for (int64_t j = 0; j < c; j++) {
		double logp = (double)z[j] - lse;
		double p = exp(logp);
		yhat[j] = (float)p;
		s += elem_loss(k, p, logp, y[j]);
	}
	return s;
}

/* gz = p .* (u - p . u), u_j = scale * dL/dp_j, p = softmax(z): the
 * softmax Jacobian (diag(p) - p p^T) times u, for one row.  gz, z, y (c). */
static void chain_softmax_backward(float *gz, const float *z, const float *y, int64_t c,
                                   ln_loss_kind k, double scale)
{
	double lse = ln_row_logsumexp(z, c);
	double dot = 0;
	for (int64_t j = 0; j < c; j++) {
		double p = exp((double)z[j] - lse);
		dot += p * scale * elem_dloss(k, p, y[j]);
	}
	for (int64_t j = 0; j < c; j++) {
		double p = exp((double)z[j] - lse);
		gz[j] = (float)(p * (scale * elem_dloss(k, p, y[j]) - dot));
	}
}

/* ==== the loss ===================================================================== */

/* Validates input and target for this pairing and describes the rows:
 * samples of the batch (for softmax, rows of classes of an {N,C} input). */
static ln_status ol_prepare(const ln_loss *c, const ln_tensor *z, const ln_tensor *target,
                            ln_loss_rows *r, ln_error *err)
{
	const output_loss *o = (const output_loss *)c;
	ln_status st = LN_OK;
	if (o->act == LN_ACT_SOFTMAX)
		st = ln_loss_check_2d(z, err);
	if (st != LN_OK)
		return st;
	switch (o->kind) {
	case LN_LOSS_MSE:
		st = ln_loss_check_same_shape(z, target, err);
		if (st == LN_OK)
			st = ln_loss_check_finite("target", target, err);
		break;
	case LN_LOSS_BCE:
		st = ln_loss_check_same_shape(z, target, err);
		if (st == LN_OK)
			st = ln_loss_check_unit("target", target, err);
		break;
	default:
		return ln_loss_class_target(r, z, target, NULL, err);
	}
	if (st == LN_OK)
		ln_loss_rows_batch(r, z, target);
	return st;
}

/* The loss of row i, y_hat into yhat (k). */
static double ol_row_loss(const ln_loss *c, const ln_loss_rows *r, int64_t i, float *yhat)
{
	const output_loss *o = (const output_loss *)c;
	int64_t k = r->k;
	const float *z = r->x + i * k;
	if (o->kind == LN_LOSS_CROSS_ENTROPY)
		return ln_ce_row(yhat, r, i, NULL);
	const float *y = r->y + i * k;
	if (o->act == LN_ACT_IDENTITY && o->kind == LN_LOSS_MSE) {
		memcpy(yhat, z, (size_t)k * sizeof(float));
		return ln_mse_sum(z, y, k);
	}
	if (o->act == LN_ACT_SIGMOID && o->kind == LN_LOSS_BCE)
		return ln_bce_logits_sum(yhat, z, y, k);
	if (o->act == LN_ACT_SOFTMAX)
		return chain_softmax_forward(yhat, z, y, k, o->kind);
	return chain_elem_forward(yhat, z, y, k, o->act, o->kind);
}

/* g (k) = s * dl_i/dz_i. */
static void ol_row_grad(const ln_loss *c, const ln_loss_rows *r, int64_t i, float *g, double s)
{
	const output_loss *o = (const output_loss *)c;
	int64_t k = r->k;
	const float *z = r->x + i * k;
	if (o->kind == LN_LOSS_CROSS_ENTROPY) {
		ln_ce_row_grad(g, r, i, NULL, s);
		return;
	}
	const float *y = r->y + i * k;
	if (o->act == LN_ACT_IDENTITY && o->kind == LN_LOSS_MSE)
		ln_mse_grad(g, z, y, k, s);
	else if (o->act == LN_ACT_SIGMOID && o->kind == LN_LOSS_BCE)
		ln_bce_logits_grad(g, z, y, k, s);
	else if (o->act == LN_ACT_SOFTMAX)
		chain_softmax_backward(g, z, y, k, o->kind, s);
	else
		chain_elem_backward(g, z, y, k, o->act, o->kind, s);
}

static int ol_describe(const ln_loss *c, char *buf, size_t size)
{
	const output_loss *o = (const output_loss *)c;
	return snprintf(buf, size, "OutputLoss(%s, %s%s%s)%s", act_names[o->act], kind_names[o->kind],
	                c->reduction == LN_REDUCE_MEAN ? "" : ", reduction=",
	                c->reduction == LN_REDUCE_MEAN ? "" : ln_reduction_name(c->reduction),
	                is_canonical(o->act, o->kind) ? " [canonical]" : "");
}

const ln_loss_class ln_output_loss_class = {
	.name = "OutputLoss",
	.size = sizeof(output_loss),
	.prepare = ol_prepare,
	.row_loss = ol_row_loss,
	.row_grad = ol_row_grad,
	.has_output = true,
	.describe = ol_describe,
};

/* New OutputLoss(act, kind); the caller owns the reference.  Errors:
 * LN_EARG for an unknown activation or loss kind, or an undefined pairing
 * (the message says why); LN_ENOMEM. */
ln_status ln_output_loss_new(ln_loss **out, ln_activation act, ln_loss_kind kind, ln_reduction r,
                             ln_error *err)
{
	char names[128];
	*out = NULL;
	if ((unsigned)act >= LN_ACT_COUNT) {
		ln_activation_names(names, sizeof names);
		return ln_fail(err, LN_EARG, "unknown activation %d (valid: %s)", (int)act,
		               names);
	}
	if ((unsigned)kind >= LN_LOSS_KIND_COUNT) {
		ln_loss_kind_names(names, sizeof names);
		return ln_fail(err, LN_EARG, "unknown loss %d (valid: %s)", (int)kind, names);
	}
	const char *why = undefined_why(act, kind);
	if (why)
		return ln_fail(err, LN_EARG, "%s", why);
	ln_loss *c;
	ln_status st = ln_loss_alloc(&c, &ln_output_loss_class, r, err);
	if (st != LN_OK)
		return st;
	output_loss *o = (output_loss *)c;
	o->act = act;
	o->kind = kind;
	snprintf(o->pairing, sizeof o->pairing, "OutputLoss(%s, %s)", ln_activation_name(act),
	         ln_loss_kind_name(kind));
	*out = c;
	return LN_OK;
}

ln_status ln_output_loss_new_by_name(ln_loss **out, const char *act, const char *kind,
                                     ln_reduction r, ln_error *err)
{
	char names[128];
	int a = ln_activation_from_name(act), k = ln_loss_kind_from_name(kind);
	*out = NULL;
	if (a < 0) {
		ln_activation_names(names, sizeof names);
		return ln_fail(err, LN_EARG, "unknown activation \"%s\" (expected one of %s)",
		               act ? act : "(null)", names);
	}
	if (k < 0) {
		ln_loss_kind_names(names, sizeof names);
		return ln_fail(err, LN_EARG, "unknown loss \"%s\" (expected one of %s)",
		               kind ? kind : "(null)", names);
	}
	return ln_output_loss_new(out, (ln_activation)a, (ln_loss_kind)k, r, err);
}

const char *ln_output_loss_pairing(const ln_loss *c)
{
	return ((const output_loss *)c)->pairing;
}

bool ln_output_loss_is_canonical(const ln_loss *c)
{
	if (!c || c->cls != &ln_output_loss_class)
		return false;
	const output_loss *o = (const output_loss *)c;
	return is_canonical(o->act, o->kind);
}

ln_activation ln_output_loss_activation(const ln_loss *c)
{
	assert(c->cls == &ln_output_loss_class);
	return ((const output_loss *)c)->act;
}

ln_loss_kind ln_output_loss_kind(const ln_loss *c)
{
	assert(c->cls == &ln_output_loss_class);
	return ((const output_loss *)c)->kind;
}

/* ==== inputs that come from the wrong layer ==================================== */

/* The layers a loss may be fed by mistake, by the names they are
 * registered under: classes are known by name (module.h). */
static bool is_layer(const char *producer, const char *name)
{
	return strcmp(producer, name) == 0;
}

bool ln_pairing_warning(const ln_loss *c, const char *producer, char *msg, size_t size)
{
	bool softmax_layer = is_layer(producer, "Softmax") || is_layer(producer, "LogSoftmax");
	bool sigmoid_layer = is_layer(producer, "Sigmoid");
	if (c->cls == &ln_cross_entropy_class && softmax_layer) {
		snprintf(msg, size,
		         "CrossEntropyLoss takes logits, but its input comes from a %s layer, so softmax "
		         "is applied twice; remove the final %s (or use NLLLoss after LogSoftmax)",
		         producer, producer);
	} else if (c->cls == &ln_bce_logits_class && sigmoid_layer) {
		snprintf(msg, size,
		         "BCEWithLogitsLoss takes logits, but its input comes from a Sigmoid layer, so "
		         "sigmoid is applied twice; remove the final Sigmoid (or use BCELoss after it)");
	} else if (c->cls == &ln_nll_class && is_layer(producer, "Softmax")) {
		snprintf(msg, size,
		         "NLLLoss takes log-probabilities, but its input comes from a Softmax layer; "
		         "use LogSoftmax instead (or CrossEntropyLoss on the logits)");
	} else if (c->cls == &ln_output_loss_class && (softmax_layer || sigmoid_layer)) {
		const output_loss *o = (const output_loss *)c;
		if (o->act != (softmax_layer ? LN_ACT_SOFTMAX : LN_ACT_SIGMOID))
			return false;
		char desc[128];
		ln_loss_describe(c, desc, sizeof desc);
		snprintf(msg, size,
		         "%s takes the pre-activation z, but its input comes from a %s layer, so the "
		         "activation is applied twice; remove the final %s",
		         desc, producer, producer);
	} else {
		return false;
	}
	return true;
}

/* How many rows of an input ln_input_warning looks at: a mistake of this
 * kind (logits or probabilities where log-probabilities belong) shows in
 * every row, so the first few tell, at a cost that does not grow with the
 * batch. */
#define WARN_ROWS 8

bool ln_input_warning(const ln_loss *c, const ln_tensor *input, char *msg, size_t size)
{
	if (c->cls != &ln_nll_class || input->ndim < 2 || ln_tensor_is_empty(input))
		return false;
	int64_t k = input->shape[input->ndim - 1];
	int64_t rows = ln_tensor_numel(input) / k;
	const float *x = ln_tensor_data(input);
	for (int64_t i = 0; i < rows && i < WARN_ROWS; i++) {
		double sum = 0, top = -INFINITY;
		for (int64_t j = 0; j < k; j++) {
			sum += exp((double)x[i * k + j]);
			top = fmax(top, x[i * k + j]);
		}
		/* log-probabilities are <= 0 and their exponentials sum to 1, to
		 * float precision over a row of k classes */
		if (top > 1e-4 || fabs(sum - 1.0) > 1e-3 + 1e-6 * (double)k) {
			snprintf(msg, size,
			         "NLLLoss takes log-probabilities, but row %lld of its input is not one "
			         "(%s); put a LogSoftmax before NLLLoss, or give the logits to "
			         "CrossEntropyLoss instead",
			         (long long)(i + 1),
			         top > 1e-4 ? "it has values above 0" : "its exponentials do not sum to 1");
			return true;
		}
	}
	return false;
}
