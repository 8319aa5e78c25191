/*
 * module.c -- the module protocol shared by every layer: allocation,
 * reference counting, the checks around forward/backward, and the
 * recursive walks (training mode, zero_grad, parameters).
 */
#include <assert.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "../core/alloc.h"
#include "init.h"
#include "layers.h"
#include "module.h"
#include "nn_internal.h"

/* ---- config ---------------------------------------------------------------------- */

ln_status ln_config_int(int64_t *out, double v, const char *what, int64_t lo, int64_t hi,
                        ln_error *err)
{
	/* 9.2e18 is below INT64_MAX: the cast below is defined. */
	if (!isfinite(v) || v != floor(v) || v < (double)lo || v > (double)hi || fabs(v) > 9.2e18) {
		if (hi == INT64_MAX)
			return ln_fail(err, LN_ERANGE, "expected %s to be an integer >= %lld, got %g", what,
			               (long long)lo, v);
		return ln_fail(err, LN_ERANGE, "expected %s to be an integer in [%lld, %lld], got %g",
		               what, (long long)lo, (long long)hi, v);
	}
	*out = (int64_t)v;
	return LN_OK;
}

ln_status ln_check_rows(const ln_tensor *x, int64_t d, int64_t *rows, ln_error *err)
{
	if (x->ndim < 2 || (d >= 0 && x->shape[x->ndim - 1] != d)) {
		char got[128];
		ln_tensor_shape_str(x, got, sizeof got);
		if (d < 0)
			return ln_fail(err, LN_ESHAPE,
			               "expected input of shape {N,...} (at least 2-D), got %s", got);
		return ln_fail(err, LN_ESHAPE, "expected input of shape {N,%s%lld}, got %s",
		               x->ndim > 2 ? "...," : "", (long long)d, got);
	}
	if (rows)
		*rows = ln_tensor_numel(x) / x->shape[x->ndim - 1];
	return LN_OK;
}

char *ln_pos_str(char *buf, size_t size, const ln_tensor *t, int64_t flat)
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

/* ---- lifetime ----------------------------------------------------------------- */

ln_status ln_module_alloc(ln_module **out, const ln_module_class *cls, ln_error *err)
{
	assert(out && cls && cls->size >= sizeof(ln_module));
	ln_module *m = ln_calloc(1, cls->size);
	if (!m)
		return ln_fail(err, LN_ENOMEM, "out of memory allocating a %s module (%zu bytes)",
		               cls->name, cls->size);
	/* ln_calloc zeroes: every tensor is LN_TENSOR_EMPTY, counts are 0. */
	m->cls = cls;
	m->refcount = 1;
	m->training = true;
	m->input_grad = true;
	m->want_gx = true;
	*out = m;
	return LN_OK;
}

ln_status ln_module_create(ln_module **out, const ln_module_class *cls,
                           const ln_module_build *ctx, const double *config, ln_error *err)
{
	assert(cls->create);
	return cls->create(out, cls, ctx, config, err);
}

ln_status ln_module_create_plain(ln_module **out, const ln_module_class *cls,
                                 const ln_module_build *ctx, const double *config,
                                 ln_error *err)
{
	return ln_module_alloc(out, cls, err);
}

/* ---- parameters and buffers ---------------------------------------------------- */

/* Bytes of m's parameters and buffers (not the gradients). */
static size_t held_bytes(const ln_module *m)
{
	size_t n = 0;
	for (int i = 0; i < m->nparams; i++)
		n += (size_t)ln_tensor_numel(&m->param[i]) * sizeof(float);
	for (int i = 0; i < m->nbuffers; i++)
		n += (size_t)ln_tensor_numel(&m->buffer[i]) * sizeof(float);
	return n;
}

/* Bytes of a float tensor of `shape`, or SIZE_MAX when that does not fit
 * (ln_tensor_alloc then reports the shape). */
static size_t shape_bytes(int ndim, const int64_t *shape)
{
	size_t n = sizeof(float);
	for (int d = 0; d < ndim; d++) {
		if (shape[d] < 1)
			return SIZE_MAX;
		if ((uint64_t)shape[d] > SIZE_MAX / n)
			return SIZE_MAX;
		n *= (size_t)shape[d];
	}
	return n;
}

/* Allocates *t of shape (and *grad, when not NULL) for tensor `name` of m,
 * within ctx's budget, and fills *t as init says. */
static ln_status add_tensor(ln_module *m, const ln_module_build *ctx, const char *name,
                            ln_param_init init, int ndim, const int64_t *shape, ln_tensor *t,
                            ln_tensor *grad, ln_error *err)
{
	size_t budget = ctx ? ctx->budget : 0;
	if (budget > 0) {
		size_t have = held_bytes(m), need = shape_bytes(ndim, shape);
		if (need > budget || have > budget - need) {
			char s[128];
			if (ctx->over_budget)
				*ctx->over_budget = true;
			return ln_fail(err, LN_ERANGE,
			               "%s of shape %s needs %zu bytes, over the budget of %zu bytes "
			               "(%zu already taken)",
			               name, ln_shape_str(s, sizeof s, ndim, shape), need, budget, have);
		}
	}
	ln_tensor a = LN_TENSOR_EMPTY, g = LN_TENSOR_EMPTY;
	ln_status s = ln_tensor_alloc(&a, ndim, shape, err);
	if (s == LN_OK && grad)
		s = ln_tensor_alloc(&g, ndim, shape, err);
	if (s == LN_OK && init == LN_PARAM_ONES)
		ln_tensor_fill(&a, 1.0f);
	if (s == LN_OK && init == LN_PARAM_HE)
		s = ln_init_he(&a, ln_build_rng(ctx), err);
	if (s != LN_OK) {
		ln_tensor_release(&a);
		ln_tensor_release(&g);
		return s;
	}
	*t = a;
	if (grad)
		*grad = g;
	return LN_OK;
}

const char *ln_module_param_name(const ln_module *m, int i, char buf[LN_PARAM_NAME_MAX])
{
	assert(i >= 0 && i <= m->nparams && i < LN_MODULE_MAX_PARAMS);
	if (m->cls->param_name) {
		m->cls->param_name(m, i, buf, LN_PARAM_NAME_MAX);
		return buf;
	}
	assert(i < LN_MODULE_MAX_PARAM_NAMES && m->cls->param_names[i]);
	return m->cls->param_names[i];
}

ln_status ln_module_resize_params(ln_module *m, int n, ln_error *err)
{
	if (n < 0 || n > LN_MODULE_MAX_PARAMS)
		return ln_fail(err, LN_ERANGE, "expected at most %d parameters, got %d",
		               LN_MODULE_MAX_PARAMS, n);
	ln_tensor *p = NULL, *g = NULL;
	if (n > 0) {
		p = ln_calloc((size_t)n, sizeof *p);
		g = ln_calloc((size_t)n, sizeof *g);
		if (!p || !g) {
			ln_free(p);
			ln_free(g);
			return ln_fail(err, LN_ENOMEM, "out of memory for %d parameters", n);
		}
	}
	/* ln_calloc zeroes: every new tensor is LN_TENSOR_EMPTY */
	for (int i = 0; i < m->nparams; i++) {
		if (i < n) {
			p[i] = m->param[i];
			g[i] = m->grad[i];
		} else {
			ln_tensor_release(&m->param[i]);
			ln_tensor_release(&m->grad[i]);
		}
	}
	ln_free(m->param);
	ln_free(m->grad);
	m->param = p;
	m->grad = g;
	m->nparams = n;
	return LN_OK;
}

ln_status ln_module_add_param(ln_module *m, const ln_module_build *ctx, const char *name,
                              ln_param_init init, int ndim, const int64_t *shape, ln_error *err)
{
	int i = m->nparams;
	char buf[LN_PARAM_NAME_MAX];
	assert(i < LN_MODULE_MAX_PARAMS && strcmp(ln_module_param_name(m, i, buf), name) == 0);
	(void)buf;
	ln_tensor t = LN_TENSOR_EMPTY, g = LN_TENSOR_EMPTY;
	ln_status s = add_tensor(m, ctx, name, init, ndim, shape, &t, &g, err);
	if (s == LN_OK && (s = ln_module_resize_params(m, i + 1, err)) == LN_OK) {
		m->param[i] = t;
		m->grad[i] = g;
		return LN_OK;
	}
	ln_tensor_release(&t);
	ln_tensor_release(&g);
	return s;
}

ln_status ln_module_add_buffer(ln_module *m, const ln_module_build *ctx, const char *name,
                               ln_param_init init, int ndim, const int64_t *shape,
                               ln_error *err)
{
	int i = m->nbuffers;
	assert(i < LN_MODULE_MAX_BUFFERS && m->cls->buffer_names[i] &&
	       strcmp(m->cls->buffer_names[i], name) == 0);
	ln_status s = add_tensor(m, ctx, name, init, ndim, shape, &m->buffer[i], NULL, err);
	if (s == LN_OK)
		m->nbuffers = i + 1;
	return s;
}

void ln_module_retain(ln_module *m)
{
	assert(m && m->refcount > 0);
	m->refcount++;
}

/* Frees, with the last reference: output, grad_input, parameters,
 * gradients, buffers, the references to children, then whatever the
 * class owns (destroy), then the struct. */
void ln_module_release(ln_module *m)
{
	if (!m)
		return;
	assert(m->refcount > 0);
	if (--m->refcount > 0)
		return;
	ln_tensor_release(&m->output);
	ln_tensor_release(&m->grad_input);
	for (int i = 0; i < m->nparams; i++) {
		ln_tensor_release(&m->param[i]);
		ln_tensor_release(&m->grad[i]);
	}
	ln_free(m->param);
	ln_free(m->grad);
	for (int i = 0; i < LN_MODULE_MAX_BUFFERS; i++)
		ln_tensor_release(&m->buffer[i]);
	for (int i = 0; i < m->nchildren; i++)
		ln_module_release(m->children[i]);
	ln_free(m->children);
	if (m->cls->destroy)
		m->cls->destroy(m);
	ln_free(m);
}

/* ---- forward / backward ----------------------------------------------------------- */

/* Non-empty and contiguous; `what` is "input" or "gradient". */
static ln_status check_arg(const ln_tensor *t, const char *what, ln_error *err)
{
	if (ln_tensor_is_empty(t))
		return ln_fail(err, LN_EARG, "expected a non-empty %s tensor, got an empty one", what);
	if (!ln_tensor_is_contiguous(t)) {
		char s[128];
		return ln_fail(err, LN_EARG,
		               "expected a contiguous %s tensor, got a non-contiguous view of shape %s",
		               what, ln_tensor_shape_str(t, s, sizeof s));
	}
	return LN_OK;
}

/* LN_ESHAPE naming both shapes unless x is shaped as the input of the
 * last successful forward (there is one): the one check behind "is this
 * the input of the last forward", for every class. */
static ln_status check_last_input(const ln_module *m, const ln_tensor *x, ln_error *err)
{
	if (x->ndim == m->in_ndim &&
	    memcmp(x->shape, m->in_shape, (size_t)x->ndim * sizeof x->shape[0]) == 0)
		return LN_OK;
	char want[128], got[128];
	return ln_fail(err, LN_ESHAPE, "expected the input of the last forward, of shape %s, got %s",
	               ln_shape_str(want, sizeof want, m->in_ndim, m->in_shape),
	               ln_tensor_shape_str(x, got, sizeof got));
}

ln_status ln_module_forward_unprefixed(ln_module *m, const ln_tensor *x, ln_error *err)
{
	if (__builtin_expect(ln_numerics_on, 0))
		return ln_numerics_forward(m, x, err);
	return ln_module_forward_body(m, x, err);
}

ln_status ln_module_forward_body(ln_module *m, const ln_tensor *x, ln_error *err)
{
	assert(m && x);
	m->in_ndim = 0;  /* until this forward succeeds, no backward can follow it */
	m->backward_current = false;
	ln_status s = check_arg(x, "input", err);
	if (s != LN_OK)
		return s;
	/* x's shape before the call: x may be a view the forward reshapes */
	int ndim = x->ndim;
	int64_t shape[LN_MAX_DIMS];
	memcpy(shape, x->shape, sizeof shape);
	if ((s = m->cls->forward(m, x, err)) != LN_OK)
		return s;
	assert(!ln_tensor_is_empty(&m->output) && ln_tensor_is_contiguous(&m->output));
	m->in_ndim = ndim;
	memcpy(m->in_shape, shape, sizeof shape);
	return LN_OK;
}

ln_status ln_module_backward_unprefixed(ln_module *m, const ln_tensor *x, const ln_tensor *gy,
                                        ln_error *err)
{
	return ln_module_backward_ex(m, x, gy, true, err);
}

ln_status ln_module_backward_ex(ln_module *m, const ln_tensor *x, const ln_tensor *gy,
                                bool need_gx, ln_error *err)
{
	if (__builtin_expect(ln_numerics_on, 0))
		return ln_numerics_backward(m, x, gy, need_gx, err);
	return ln_module_backward_body(m, x, gy, need_gx, err);
}

ln_status ln_module_backward_body(ln_module *m, const ln_tensor *x, const ln_tensor *gy,
                                  bool need_gx, ln_error *err)
{
	assert(m && x && gy);
	if (m->in_ndim == 0)
		return ln_fail(err, LN_ESTATE, "backward called before forward");
	ln_status s = check_arg(x, "input", err);
	if (s == LN_OK)
		s = check_arg(gy, "gradient", err);
	if (s != LN_OK)
		return s;
	if (!ln_tensor_same_shape(gy, &m->output)) {
		char want[128], got[128];
		return ln_fail(err, LN_ESHAPE, "expected gradient of shape %s, got %s",
		               ln_tensor_shape_str(&m->output, want, sizeof want),
		               ln_tensor_shape_str(gy, got, sizeof got));
	}
	if ((s = check_last_input(m, x, err)) != LN_OK)
		return s;
	const bool want = need_gx && m->input_grad;
	if (!want && !ln_module_trains(m)) {
		/* dL/dx is all such a module's backward would give */
		ln_module_skip_gx(m);
		return LN_OK;
	}
	/* a container whose chain a child cuts clears want_gx (sequential.c) */
	m->want_gx = want;
	s = m->cls->backward(m, x, gy, err);
	const bool computed = m->want_gx;
	m->want_gx = true;
	if (s != LN_OK)
		return s;
	m->gx_skipped = !computed;
	m->backward_current = true;
	assert(!computed ||
	       (!ln_tensor_is_empty(&m->grad_input) && ln_tensor_is_contiguous(&m->grad_input)));
	return LN_OK;
}

bool ln_module_trains(const ln_module *m)
{
	if (m->nparams > 0 || m->cls == &ln_external_class)
		return true;
	for (int i = 0; i < m->nchildren; i++)
		if (ln_module_trains(m->children[i]))
			return true;
	return false;
}

void ln_module_skip_gx(ln_module *m)
{
	m->gx_skipped = true;
	m->backward_current = true;
	for (int i = 0; i < m->nchildren; i++)
		ln_module_skip_gx(m->children[i]);
}

ln_status ln_module_forward(ln_module *m, const ln_tensor *x, ln_error *err)
{
	ln_status s = ln_module_forward_unprefixed(m, x, err);
	if (s != LN_OK)
		ln_error_prefix(err, "%s: ", m->cls->name);
	return s;
}

ln_status ln_module_backward(ln_module *m, const ln_tensor *x, const ln_tensor *gy, ln_error *err)
{
	ln_status s = ln_module_backward_unprefixed(m, x, gy, err);
	if (s != LN_OK)
		ln_error_prefix(err, "%s:backward: ", m->cls->name);
	return s;
}

/* ---- recursive walks ------------------------------------------------------------ */

ln_status ln_module_reserve(ln_module *m, bool need_gx, ln_error *err)
{
	if (m->in_ndim == 0)
		return LN_OK;  /* no forward to go back through: its backward says so */
	const bool want = need_gx && m->input_grad;
	if (!want && !ln_module_trains(m))
		return LN_OK;  /* its backward is not run (ln_module_backward_ex) */
	if (m->cls->reserve)
		return m->cls->reserve(m, want, err);
	if (!want || m->nchildren > 0 || m->cls == &ln_external_class)
		return LN_OK;
	return ln_tensor_ensure(&m->grad_input, m->in_ndim, m->in_shape, err);
}

void ln_module_revert(ln_module *m)
{
	for (int i = m->nchildren - 1; i >= 0; i--)
		ln_module_revert(m->children[i]);
	if (m->cls->revert)
		m->cls->revert(m);
}

void ln_module_set_training(ln_module *m, bool training)
{
	m->training = training;
	if (m->cls == &ln_external_class)
		ln_external_on_set_training(m, training);
	for (int i = 0; i < m->nchildren; i++)
		ln_module_set_training(m->children[i], training);
}

void ln_module_reset_state(ln_module *m)
{
	if (m->cls->reset_state)
		m->cls->reset_state(m);
	for (int i = 0; i < m->nchildren; i++)
		ln_module_reset_state(m->children[i]);
}

void ln_module_zero_grad(ln_module *m)
{
	for (int i = 0; i < m->nparams; i++)
		if (!ln_tensor_is_empty(&m->grad[i]))
			ln_tensor_zero(&m->grad[i]);  /* lazily: tensor.h */
	for (int i = 0; i < m->nchildren; i++)
		ln_module_zero_grad(m->children[i]);
}

int ln_module_visit_params(ln_module *m, int (*fn)(ln_module *owner, int index, void *ctx),
                           void *ctx)
{
	for (int i = 0; i < m->nparams; i++) {
		int r = fn(m, i, ctx);
		if (r)
			return r;
	}
	for (int i = 0; i < m->nchildren; i++) {
		int r = ln_module_visit_params(m->children[i], fn, ctx);
		if (r)
			return r;
	}
	return 0;
}
