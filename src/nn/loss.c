/*
 * loss.c -- the loss protocol: lifetime, the checks every loss shares, the
 * reductions (every class gives a loss and a gradient per row; the sums,
 * scales and per-sample buffers are here, once), and the helpers the loss
 * files use for their own checks (loss_impl.h).
 */
#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../core/alloc.h"
#include "loss_impl.h"

/* ==== lifetime ============================================================== */

/* Allocates a zeroed struct of cls->size bytes with refcount 1 and empty
 * buffers.  The caller owns the one reference (ln_loss_release).  Errors:
 * LN_ENOMEM. */
ln_status ln_loss_alloc(ln_loss **out, const ln_loss_class *cls, ln_reduction reduction,
                        ln_error *err)
{
	assert(out && cls && cls->size >= sizeof(ln_loss));
	*out = NULL;
	if (reduction != LN_REDUCE_MEAN && reduction != LN_REDUCE_SUM && reduction != LN_REDUCE_NONE)
		return ln_fail(err, LN_EARG, "unknown reduction %d", (int)reduction);
	ln_loss *c = ln_calloc(1, cls->size);
	if (!c)
		return ln_fail(err, LN_ENOMEM, "out of memory allocating %s (%zu bytes)", cls->name, cls->size);
	c->cls = cls;
	c->refcount = 1;
	c->reduction = reduction;
	c->grad_input = LN_TENSOR_EMPTY;
	c->output = LN_TENSOR_EMPTY;
	c->losses = LN_TENSOR_EMPTY;
	*out = c;
	return LN_OK;
}

void ln_loss_retain(ln_loss *c)
{
	assert(c && c->refcount > 0);
	c->refcount++;
}

/* Drops one reference; the last one frees grad_input, output, whatever the
 * class owns (destroy) and the struct.  NULL is ignored. */
void ln_loss_release(ln_loss *c)
{
	if (!c)
		return;
	assert(c->refcount > 0);
	if (--c->refcount > 0)
		return;
	if (c->cls->destroy)
		c->cls->destroy(c);
	ln_tensor_release(&c->grad_input);
	ln_tensor_release(&c->output);
	ln_tensor_release(&c->losses);
	ln_free(c);
}

/* ==== shared checks ========================================================== */

/* The checks before every forward and backward: input non-empty,
 * contiguous and finite; target non-empty and contiguous.  (Target values
 * are the class's business: their rules differ per loss.) */
static ln_status check_common(const ln_tensor *input, const ln_tensor *target, ln_error *err)
{
	if (!input || ln_tensor_is_empty(input))
		return ln_fail(err, LN_EARG, "input is empty");
	if (!target || ln_tensor_is_empty(target))
		return ln_fail(err, LN_EARG, "target is empty");
	if (!ln_tensor_is_contiguous(input))
		return ln_fail(err, LN_EARG, "input is not contiguous");
	if (!ln_tensor_is_contiguous(target))
		return ln_fail(err, LN_EARG, "target is not contiguous");
	return ln_loss_check_finite("input", input, err);
}

/* The scale of every row's loss and gradient: 1/count for the mean (0
 * when nothing counts), 1 otherwise. */
static double reduction_scale(const ln_loss *c, const ln_loss_rows *r)
{
	if (c->reduction != LN_REDUCE_MEAN)
		return 1.0;
	return r->count > 0 ? 1.0 / r->count : 0.0;
}

ln_status ln_loss_forward_unprefixed(ln_loss *c, const ln_tensor *input, const ln_tensor *target,
                                     double *loss, ln_error *err)
{
	assert(c);
	ln_loss_rows r;
	if (loss)
		*loss = NAN;
	ln_status st = check_common(input, target, err);
	if (st == LN_OK)
		st = c->cls->prepare(c, input, target, &r, err);
	if (st == LN_OK && c->reduction == LN_REDUCE_NONE)
		st = ln_tensor_ensure(&c->losses, r.out_ndim, r.out_shape, err);
	if (st == LN_OK && c->cls->has_output)
		st = ln_tensor_ensure(&c->output, input->ndim, input->shape, err);
	if (st != LN_OK)
		return st;
	float *per = c->reduction == LN_REDUCE_NONE ? ln_tensor_data(&c->losses) : NULL;
	float *yhat = c->cls->has_output ? ln_tensor_data(&c->output) : NULL;
	double total = 0;
	for (int64_t i = 0; i < r.n; i++) {
		double l = c->cls->row_loss(c, &r, i, yhat ? yhat + i * r.k : NULL);
		total += l;
		if (per)
			per[i] = (float)l;
	}
	if (loss)
		*loss = reduction_scale(c, &r) * total;
	return LN_OK;
}

/* gout, when given: only with LN_REDUCE_NONE, contiguous, shaped like the
 * per-sample losses, finite. */
static ln_status check_gout(const ln_loss *c, const ln_loss_rows *r, const ln_tensor *gout,
                            ln_error *err)
{
	if (c->reduction != LN_REDUCE_NONE)
		return ln_fail(err, LN_EARG, "a gradient for the per-sample losses needs "
		               "reduction=\"none\" (this loss has reduction=\"%s\")",
		               ln_reduction_name(c->reduction));
	char want[128], got[128];
	if (ln_tensor_is_empty(gout) || gout->ndim != r->out_ndim ||
	    memcmp(gout->shape, r->out_shape, (size_t)r->out_ndim * sizeof r->out_shape[0]) != 0)
		return ln_fail(err, LN_ESHAPE, "expected a gradient of the per-sample losses of "
		               "shape %s, got %s",
		               ln_shape_str(want, sizeof want, r->out_ndim, r->out_shape),
		               ln_tensor_shape_str(gout, got, sizeof got));
	if (!ln_tensor_is_contiguous(gout))
		return ln_fail(err, LN_EARG, "gradient of the per-sample losses is not contiguous");
	return ln_loss_check_finite("gradient of the per-sample losses", gout, err);
}

ln_status ln_loss_backward_unprefixed(ln_loss *c, const ln_tensor *input, const ln_tensor *target,
                                      const ln_tensor *gout, ln_error *err)
{
	assert(c);
	ln_loss_rows r;
	ln_status st = check_common(input, target, err);
	if (st == LN_OK)
		st = c->cls->prepare(c, input, target, &r, err);
	if (st == LN_OK && gout)
		st = check_gout(c, &r, gout, err);
	if (st == LN_OK)
		st = ln_tensor_ensure(&c->grad_input, input->ndim, input->shape, err);
	if (st != LN_OK)
		return st;
	float *g = ln_tensor_data(&c->grad_input);
	const float *w = gout ? ln_tensor_data(gout) : NULL;
	double s = reduction_scale(c, &r);
	for (int64_t i = 0; i < r.n; i++)
		c->cls->row_grad(c, &r, i, g + i * r.k, w ? (double)w[i] : s);
	return LN_OK;
}

/* The name the public forms put in front of a message. */
static const char *loss_name(const ln_loss *c)
{
	const char *pairing = ln_loss_pairing(c);
	return pairing ? pairing : c->cls->name;
}

ln_status ln_loss_forward(ln_loss *c, const ln_tensor *input, const ln_tensor *target,
                          double *loss, ln_error *err)
{
	ln_status st = ln_loss_forward_unprefixed(c, input, target, loss, err);
	if (st != LN_OK)
		ln_error_prefix(err, "%s: ", loss_name(c));
	return st;
}

ln_status ln_loss_backward(ln_loss *c, const ln_tensor *input, const ln_tensor *target,
                           ln_error *err)
{
	return ln_loss_backward_weighted(c, input, target, NULL, err);
}

ln_status ln_loss_backward_weighted(ln_loss *c, const ln_tensor *input, const ln_tensor *target,
                                    const ln_tensor *gout, ln_error *err)
{
	ln_status st = ln_loss_backward_unprefixed(c, input, target, gout, err);
	if (st != LN_OK)
		ln_error_prefix(err, "%s: ", loss_name(c));
	return st;
}

const char *ln_loss_pairing(const ln_loss *c)
{
	return c->cls == &ln_output_loss_class ? ln_output_loss_pairing(c) : NULL;
}

int ln_loss_describe(const ln_loss *c, char *buf, size_t size)
{
	if (c->cls->describe)
		return c->cls->describe(c, buf, size);
	if (c->reduction == LN_REDUCE_MEAN)
		return snprintf(buf, size, "%s()", c->cls->name);
	return snprintf(buf, size, "%s(reduction=%s)", c->cls->name, ln_reduction_name(c->reduction));
}

const char *ln_reduction_name(ln_reduction r)
{
	return r == LN_REDUCE_SUM ? "sum" : r == LN_REDUCE_NONE ? "none" : "mean";
}

/* ==== helpers for the loss files (loss_impl.h) =============================== */

ln_status ln_loss_check_finite(const char *what, const ln_tensor *t, ln_error *err)
{
	const float *d = ln_tensor_data(t);
	int64_t m = ln_tensor_numel(t);
	for (int64_t k = 0; k < m; k++) {
		if (!isfinite(d[k])) {
			char pos[96];
			return ln_fail(err, LN_ENAN, "%s has %s at %s", what,
			               isnan(d[k]) ? "NaN" : d[k] > 0 ? "inf" : "-inf",
			               ln_pos_str(pos, sizeof pos, t, k));
		}
	}
	return LN_OK;
}

ln_status ln_loss_check_same_shape(const ln_tensor *input, const ln_tensor *target,
                                   ln_error *err)
{
	if (ln_tensor_same_shape(input, target))
		return LN_OK;
	char a[128], b[128];
	return ln_fail(err, LN_ESHAPE, "expected target of shape %s, got %s",
	               ln_tensor_shape_str(input, a, sizeof a), ln_tensor_shape_str(target, b, sizeof b));
}

ln_status ln_loss_check_unit(const char *what, const ln_tensor *t, ln_error *err)
{
	ln_status st = ln_loss_check_finite(what, t, err);
	if (st != LN_OK)
		return st;
	const float *d = ln_tensor_data(t);
	int64_t m = ln_tensor_numel(t);
	for (int64_t k = 0; k < m; k++) {
		if (!(d[k] >= 0.0f && d[k] <= 1.0f)) {
			char pos[96];
			return ln_fail(err, LN_ERANGE, "%s %g at %s is outside [0,1]", what,
			               (double)d[k], ln_pos_str(pos, sizeof pos, t, k));
		}
	}
	return LN_OK;
}

ln_status ln_loss_check_classes(const ln_tensor *input, ln_error *err)
{
	if (input->ndim == 2 || input->ndim == 3)
		return LN_OK;
	char a[128];
	return ln_fail(err, LN_ESHAPE, "expected input of shape {N,C} or {N,T,C}, got %s",
	               ln_tensor_shape_str(input, a, sizeof a));
}

ln_status ln_loss_check_2d(const ln_tensor *input, ln_error *err)
{
	if (input->ndim == 2)
		return LN_OK;
	char a[128];
	return ln_fail(err, LN_ESHAPE, "expected input of shape {N,C}, got %s",
	               ln_tensor_shape_str(input, a, sizeof a));
}

void ln_loss_rows_batch(ln_loss_rows *r, const ln_tensor *input, const ln_tensor *target)
{
	int64_t n = input->shape[0];
	*r = (ln_loss_rows){
		.x = ln_tensor_data(input), .y = ln_tensor_data(target), .labels = NULL,
		.n = n, .k = ln_tensor_numel(input) / n, .count = (double)n,
		.out_ndim = 1, .out_shape = {n},
	};
}

ln_status ln_loss_class_target(ln_loss_rows *r, const ln_tensor *input, const ln_tensor *target,
                               const int64_t *ignore, ln_error *err)
{
	assert(input->ndim == 2 || input->ndim == 3);
	int nd = input->ndim - 1;  /* the dimensions of the labels */
	int64_t c = input->shape[nd], n = ln_tensor_numel(input) / c;
	const float *d = ln_tensor_data(target);
	char pos[96];
	*r = (ln_loss_rows){
		.x = ln_tensor_data(input), .y = NULL, .labels = NULL, .n = n, .k = c,
		.count = (double)n, .out_ndim = nd,
	};
	memcpy(r->out_shape, input->shape, (size_t)nd * sizeof input->shape[0]);
	if (target->ndim == nd) {
		if (memcmp(target->shape, input->shape, (size_t)nd * sizeof target->shape[0]) != 0) {
			char a[128], b[128];
			if (nd == 1)
				return ln_fail(err, LN_ESHAPE, "expected %lld labels, got %lld",
				               (long long)n, (long long)target->shape[0]);
			return ln_fail(err, LN_ESHAPE,
			               "expected labels of shape %s or a target of shape %s, got %s",
			               ln_shape_str(a, sizeof a, nd, input->shape),
			               ln_tensor_shape_str(input, b, sizeof b),
			               ln_tensor_shape_str(target, pos, sizeof pos));
		}
		ln_status st = ln_loss_check_finite("target", target, err);
		if (st != LN_OK)
			return st;
		for (int64_t i = 0; i < n; i++) {
			if (d[i] != floorf(d[i]))
				return ln_fail(err, LN_ERANGE, "label %g at %s is not an integer", (double)d[i],
				               ln_pos_str(pos, sizeof pos, target, i));
			if (ignore && (double)d[i] == (double)*ignore)
				continue;
			if (d[i] < 1.0f || (double)d[i] > (double)c)
				return ln_fail(err, LN_ERANGE, "label %g at %s is out of range 1..%lld",
				               (double)d[i], ln_pos_str(pos, sizeof pos, target, i),
				               (long long)c);
		}
		r->labels = d;
		return LN_OK;
	}
	if (!ln_tensor_same_shape(input, target)) {
		char a[128], b[128], l[128];
		if (nd == 1)
			return ln_fail(err, LN_ESHAPE,
			               "expected target of shape %s or %lld class labels, got %s",
			               ln_tensor_shape_str(input, a, sizeof a), (long long)n,
			               ln_tensor_shape_str(target, b, sizeof b));
		return ln_fail(err, LN_ESHAPE, "expected labels of shape %s or a target of shape %s, got %s",
		               ln_shape_str(l, sizeof l, nd, input->shape),
		               ln_tensor_shape_str(input, a, sizeof a),
		               ln_tensor_shape_str(target, b, sizeof b));
	}
	ln_status st = ln_loss_check_finite("target", target, err);
	if (st != LN_OK)
		return st;
	for (int64_t k = 0; k < n * c; k++)
		if (d[k] < 0.0f)
			return ln_fail(err, LN_ERANGE,
			               "target %g at %s is negative; probability rows must be non-negative",
			               (double)d[k], ln_pos_str(pos, sizeof pos, target, k));
	r->y = d;
	return LN_OK;
}
