/*
 * embedding.c -- a lookup table of n vectors of d: labels in, rows of the
 * weight out, as torch.nn.Embedding(n, d) (with 1-based labels).
 *
 *   labels x {...} (integers 1..n stored as floats)   weight W (n,d)
 *   y {...,d}:  y[k,:] = W[x_k - 1, :]
 *   backward:   gW[x_k - 1, :] += gy[k,:]   for every k, in order (a label
 *               that repeats gathers the sum of its rows' gradients)
 *
 * Labels are not differentiable: grad_input is zeros of x's shape (the
 * protocol asks every module for one; with input_grad off, none).  Forward saves nothing; backward
 * reads the labels again.  W starts N(0,1), as in PyTorch.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../core/rng.h"
#include "nn_internal.h"
#include "sequence.h"

#define W 0

/* ---- kernels ---------------------------------------------------------------------- */

/* y (k,d) = rows x_i - 1 of w (n,d); labels checked by the caller */
void ln_embedding_forward_kernel(float *y, const float *x, const float *w, int64_t k, int64_t d)
{
	for (int64_t i = 0; i < k; i++)
		memcpy(y + i * d, w + ((int64_t)x[i] - 1) * d, (size_t)d * sizeof(float));
}

/* gw (n,d): row x_i - 1 += gy (k,d) row i, i in order */
void ln_embedding_backward_kernel(float *gw, const float *gy, const float *x, int64_t k,
                                  int64_t d)
{
	for (int64_t i = 0; i < k; i++) {
		float *g = gw + ((int64_t)x[i] - 1) * d;
		const float *r = gy + i * d;
		for (int64_t j = 0; j < d; j++)
			g[j] += r[j];
	}
}

/* ---- module ------------------------------------------------------------------------ */

static int64_t n_of(const ln_module *m) { return m->param[W].shape[0]; }
static int64_t d_of(const ln_module *m) { return m->param[W].shape[1]; }

/* LN_ERANGE naming the first label that is not an integer in 1..n. */
static ln_status check_labels(const ln_tensor *x, int64_t n, ln_error *err)
{
	const float *l = ln_tensor_data(x);
	for (int64_t i = 0, k = ln_tensor_numel(x); i < k; i++) {
		float v = l[i];
		if (v >= 1.0f && (double)v <= (double)n && v == floorf(v))
			continue;
		char pos[96];
		ln_pos_str(pos, sizeof pos, x, i);
		if (!isfinite(v) || v != floorf(v))
			return ln_fail(err, LN_ERANGE, "label %g at %s is not an integer", ln_shown(v), pos);
		return ln_fail(err, LN_ERANGE, "label %g at %s is out of range 1..%lld", (double)v, pos,
		               (long long)n);
	}
	return LN_OK;
}

static ln_status embedding_forward(ln_module *m, const ln_tensor *x, ln_error *err)
{
	int64_t d = d_of(m);
	if (x->ndim >= LN_MAX_DIMS) {
		char got[128];
		return ln_fail(err, LN_ESHAPE, "expected labels of at most %d dimensions, got %s",
		               LN_MAX_DIMS - 1, ln_tensor_shape_str(x, got, sizeof got));
	}
	ln_status s = check_labels(x, n_of(m), err);
	if (s != LN_OK)
		return s;
	int64_t shape[LN_MAX_DIMS];
	memcpy(shape, x->shape, (size_t)x->ndim * sizeof shape[0]);
	shape[x->ndim] = d;
	if (x->storage == m->output.storage)
		return ln_fail(err, LN_EARG, "the input is this layer's own output buffer; pass a clone");
	if ((s = ln_tensor_ensure(&m->output, x->ndim + 1, shape, err)) != LN_OK)
		return s;
	ln_embedding_forward_kernel(ln_tensor_data(&m->output), ln_tensor_data(x),
	                            ln_tensor_data(&m->param[W]), ln_tensor_numel(x), d);
	return LN_OK;
}

/* x is the last forward's input (its labels were checked then; they are
 * checked again, as a script may have changed them in between). */
static ln_status embedding_backward(ln_module *m, const ln_tensor *x, const ln_tensor *gy,
                                    ln_error *err)
{
	ln_status s = check_labels(x, n_of(m), err);
	if (s == LN_OK && m->want_gx)
		s = ln_tensor_ensure(&m->grad_input, x->ndim, x->shape, err);
	if (s != LN_OK)
		return s;
	ln_embedding_backward_kernel(ln_tensor_data(&m->grad[W]), ln_tensor_data(gy),
	                             ln_tensor_data(x), ln_tensor_numel(x), d_of(m));
	if (m->want_gx)
		memset(ln_tensor_data(&m->grad_input), 0, (size_t)ln_tensor_numel(x) * sizeof(float));
	return LN_OK;
}

ln_status ln_embedding_new(ln_module **out, const ln_module_build *ctx, int64_t n, int64_t d,
                           ln_error *err)
{
	if (n < 1 || d < 1 || n > LN_MAX_FLOAT_INDEX)
		return ln_fail(err, LN_ERANGE, "expected sizes n in 1..%lld and d >= 1, got %lld and %lld",
		               (long long)LN_MAX_FLOAT_INDEX, (long long)n, (long long)d);
	ln_module *m;
	ln_status s = ln_module_alloc(&m, &ln_embedding_class, err);
	if (s != LN_OK)
		return s;
	m->nconfig = 2;
	m->config[0] = (double)n;
	m->config[1] = (double)d;
	s = ln_module_add_param(m, ctx, "weight", LN_PARAM_ZEROS, 2, (int64_t[]){n, d}, err);
	if (s != LN_OK) {
		ln_module_release(m);
		return s;
	}
	ln_tensor_randn(&m->param[W], ln_build_rng(ctx), 0.0f, 1.0f);
	*out = m;
	return LN_OK;
}

static ln_status embedding_create(ln_module **out, const ln_module_class *cls,
                                  const ln_module_build *ctx, const double *config, ln_error *err)
{
	int64_t n, d;
	ln_status s = ln_config_int(&n, config[0], "n", 1, LN_MAX_FLOAT_INDEX, err);
	if (s == LN_OK)
		s = ln_config_int(&d, config[1], "d", 1, INT64_MAX, err);
	if (s != LN_OK)
		return s;
	return ln_embedding_new(out, ctx, n, d, err);
}

static int embedding_describe(const ln_module *m, char *buf, size_t size)
{
	return snprintf(buf, size, "Embedding(%lld, %lld)", (long long)n_of(m), (long long)d_of(m));
}

const ln_module_class ln_embedding_class = {
	.name = "Embedding",
	.size = sizeof(ln_module),
	.forward = embedding_forward,
	.backward = embedding_backward,
	.param_names = {"weight", NULL},
	.config_names = {"n", "d", NULL},
	.create = embedding_create,
	.describe = embedding_describe,
};
