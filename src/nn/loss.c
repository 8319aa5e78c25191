/*
 * loss.c -- the loss protocol: lifetime, the checks every loss shares, and
 * the helpers the loss files use for their own checks (loss_impl.h).
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
	if (reduction != LN_REDUCE_MEAN && reduction != LN_REDUCE_SUM)
		return ln_fail(err, LN_EARG, "unknown reduction %d", (int)reduction);
	ln_loss *c = ln_calloc(1, cls->size);
	if (!c)
		return ln_fail(err, LN_ENOMEM, "out of memory allocating %s (%zu bytes)", cls->name, cls->size);
	c->cls = cls;
	c->refcount = 1;
	c->reduction = reduction;
	c->grad_input = LN_TENSOR_EMPTY;
	c->output = LN_TENSOR_EMPTY;
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

ln_status ln_loss_forward_unprefixed(ln_loss *c, const ln_tensor *input, const ln_tensor *target,
                                     double *loss, ln_error *err)
{
	assert(c);
	double l = 0;
	ln_status st = check_common(input, target, err);
	if (st == LN_OK)
		st = c->cls->forward(c, input, target, &l, err);
	if (loss)
		*loss = st == LN_OK ? l : NAN;
	return st;
}

ln_status ln_loss_backward_unprefixed(ln_loss *c, const ln_tensor *input, const ln_tensor *target,
                                      ln_error *err)
{
	assert(c);
	ln_status st = check_common(input, target, err);
	if (st != LN_OK)
		return st;
	return c->cls->backward(c, input, target, err);
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
	ln_status st = ln_loss_backward_unprefixed(c, input, target, err);
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
	return snprintf(buf, size, "%s(%s)", c->cls->name,
	                c->reduction == LN_REDUCE_SUM ? "reduction=sum" : "");
}

/* ==== helpers for the loss files (loss_impl.h) =============================== */

char *ln_loss_pos_str(char *buf, size_t size, const ln_tensor *t, int64_t flat)
{
	int64_t idx[LN_MAX_DIMS];
	for (int d = t->ndim - 1; d >= 0; d--) {
		idx[d] = flat % t->shape[d] + 1;
		flat /= t->shape[d];
	}
	if (t->ndim == 1) {
		snprintf(buf, size, "position %lld", (long long)idx[0]);
	} else if (t->ndim == 2) {
		snprintf(buf, size, "row %lld, column %lld", (long long)idx[0], (long long)idx[1]);
	} else {
		size_t n = (size_t)snprintf(buf, size, "index {");
		for (int d = 0; d < t->ndim && n < size; d++)
			n += (size_t)snprintf(buf + n, size - n, d ? ",%lld" : "%lld", (long long)idx[d]);
		if (n < size)
			snprintf(buf + n, size - n, "}");
	}
	return buf;
}

ln_status ln_loss_check_finite(const char *what, const ln_tensor *t, ln_error *err)
{
	const float *d = ln_tensor_data(t);
	int64_t m = ln_tensor_numel(t);
	for (int64_t k = 0; k < m; k++) {
		if (!isfinite(d[k])) {
			char pos[96];
			return ln_fail(err, LN_ENAN, "%s has %s at %s", what,
			               isnan(d[k]) ? "NaN" : d[k] > 0 ? "inf" : "-inf",
			               ln_loss_pos_str(pos, sizeof pos, t, k));
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
			               (double)d[k], ln_loss_pos_str(pos, sizeof pos, t, k));
		}
	}
	return LN_OK;
}

ln_status ln_loss_check_2d(const ln_tensor *input, ln_error *err)
{
	if (input->ndim == 2)
		return LN_OK;
	char a[128];
	return ln_fail(err, LN_ESHAPE, "expected input of shape {N,C}, got %s",
	               ln_tensor_shape_str(input, a, sizeof a));
}

ln_status ln_loss_class_target(ln_class_target *t, const ln_tensor *input, const ln_tensor *target,
                               ln_error *err)
{
	assert(input->ndim == 2);
	int64_t n = input->shape[0], c = input->shape[1];
	const float *d = ln_tensor_data(target);
	char pos[96];
	*t = (ln_class_target){ .rows = NULL, .labels = NULL, .n = n, .c = c };
	if (target->ndim == 1) {
		if (target->shape[0] != n)
			return ln_fail(err, LN_ESHAPE, "expected %lld labels, got %lld",
			               (long long)n, (long long)target->shape[0]);
		ln_status st = ln_loss_check_finite("target", target, err);
		if (st != LN_OK)
			return st;
		for (int64_t i = 0; i < n; i++) {
			if (d[i] != floorf(d[i]))
				return ln_fail(err, LN_ERANGE, "label %g at position %lld is not an integer",
				               (double)d[i], (long long)(i + 1));
			if (d[i] < 1.0f || (double)d[i] > (double)c)
				return ln_fail(err, LN_ERANGE, "label %g at position %lld is out of range 1..%lld",
				               (double)d[i], (long long)(i + 1), (long long)c);
		}
		t->labels = d;
		return LN_OK;
	}
	if (!ln_tensor_same_shape(input, target)) {
		char a[128], b[128];
		return ln_fail(err, LN_ESHAPE, "expected target of shape %s or %lld class labels, got %s",
		               ln_tensor_shape_str(input, a, sizeof a), (long long)n,
		               ln_tensor_shape_str(target, b, sizeof b));
	}
	ln_status st = ln_loss_check_finite("target", target, err);
	if (st != LN_OK)
		return st;
	for (int64_t k = 0; k < n * c; k++)
		if (d[k] < 0.0f)
			return ln_fail(err, LN_ERANGE,
			               "target %g at %s is negative; probability rows must be non-negative",
			               (double)d[k], ln_loss_pos_str(pos, sizeof pos, target, k));
	t->rows = d;
	return LN_OK;
}
