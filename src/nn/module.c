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
#include "../core/parallel.h"
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
			               (long long)lo, ln_shown(v));
		return ln_fail(err, LN_ERANGE, "expected %s to be an integer in [%lld, %lld], got %g",
		               what, (long long)lo, (long long)hi, ln_shown(v));
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

ln_status ln_check_same_shapes(int n, const ln_tensor *const *x, ln_error *err)
{
	for (int i = 1; i < n; i++)
		if (!ln_tensor_same_shape(x[i], x[0])) {
			char a[128], b[128];
			return ln_fail(err, LN_ESHAPE,
			               "expected inputs of one shape, got %s (input 1) and %s (input %d)",
			               ln_tensor_shape_str(x[0], a, sizeof a),
			               ln_tensor_shape_str(x[i], b, sizeof b), i + 1);
		}
	return LN_OK;
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
	m->arity = cls->arity == 0 ? 1 : cls->arity;
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
	for (int i = 0; i < m->ninputs_cap; i++)
		ln_tensor_release(&m->inputs[i].grad);
	ln_free(m->inputs);
	for (int i = 0; i < m->nchildren; i++)
		ln_module_release(m->children[i]);
	ln_free(m->children);
	if (m->cls->destroy)
		m->cls->destroy(m);
	ln_free(m);
}

/* ---- forward / backward ----------------------------------------------------------- */

/* Non-empty and contiguous; `what` is "input" or "gradient"; `which` is
 * the input's position (1-based) when there are several, else 0. */
static ln_status check_arg(const ln_tensor *t, const char *what, int which, ln_error *err)
{
	char pos[32] = "";
	if (which > 0)
		snprintf(pos, sizeof pos, " %d", which);
	if (ln_tensor_is_empty(t))
		return ln_fail(err, LN_EARG, "expected a non-empty %s%s tensor, got an empty one", what,
		               pos);
	if (!ln_tensor_is_contiguous(t)) {
		char s[128];
		return ln_fail(err, LN_EARG,
		               "expected a contiguous %s%s tensor, got a non-contiguous view of shape %s",
		               what, pos, ln_tensor_shape_str(t, s, sizeof s));
	}
	return LN_OK;
}

/* LN_ESHAPE naming both shapes unless x has the shape (ndim, shape) that
 * the same input had at the last successful forward: the one check
 * behind "is this the input of the last forward", for every class. */
static ln_status check_last_input(int ndim, const int64_t *shape, const ln_tensor *x, int which,
                                  ln_error *err)
{
	if (x->ndim == ndim && memcmp(x->shape, shape, (size_t)x->ndim * sizeof x->shape[0]) == 0)
		return LN_OK;
	char want[128], got[128], pos[32] = "the input";
	if (which > 0)
		snprintf(pos, sizeof pos, "input %d", which);
	return ln_fail(err, LN_ESHAPE, "expected %s of the last forward, of shape %s, got %s", pos,
	               ln_shape_str(want, sizeof want, ndim, shape),
	               ln_tensor_shape_str(x, got, sizeof got));
}

/* LN_EARG unless n inputs suit m's arity. */
static ln_status check_count(const ln_module *m, int n, ln_error *err)
{
	if (m->arity == LN_ARITY_ANY ? n >= 1 : n == m->arity)
		return LN_OK;
	if (m->arity == LN_ARITY_ANY)
		return ln_fail(err, LN_EARG, "expected at least 1 input, got %d", n);
	return ln_fail(err, LN_EARG, "expected %d input%s, got %d", m->arity,
	               m->arity == 1 ? "" : "s", n);
}

/* Room for n entries in m->inputs (multi-input classes); the new entries
 * are empty.  Allocates only when n exceeds every count before. */
static ln_status reserve_inputs(ln_module *m, int n, ln_error *err)
{
	if (n <= m->ninputs_cap)
		return LN_OK;
	ln_module_input *a = ln_calloc((size_t)n, sizeof *a);
	if (!a)
		return ln_fail(err, LN_ENOMEM, "out of memory for %d inputs", n);
	if (m->ninputs_cap > 0)
		memcpy(a, m->inputs, (size_t)m->ninputs_cap * sizeof *a);  /* moves the grads */
	ln_free(m->inputs);
	m->inputs = a;
	m->ninputs_cap = n;
	return LN_OK;
}

ln_status ln_module_forward_multi_unprefixed(ln_module *m, int n, const ln_tensor *const *x,
                                             ln_error *err)
{
	if (__builtin_expect(ln_numerics_on, 0))
		return ln_numerics_forward(m, n, x, err);
	return ln_module_forward_body(m, n, x, err);
}

ln_status ln_module_forward_body(ln_module *m, int n, const ln_tensor *const *x, ln_error *err)
{
	assert(m && (n == 0 || x));
	m->in_ndim = 0;  /* until this forward succeeds, no backward can follow it */
	m->backward_current = false;
	m->ninputs = 0;
	ln_status s = check_count(m, n, err);
	for (int i = 0; i < n && s == LN_OK; i++)
		s = check_arg(x[i], "input", n > 1 ? i + 1 : 0, err);
	if (s != LN_OK)
		return s;
	/* the shapes before the call: an input may be a view the forward reshapes */
	int ndim = x[0]->ndim;
	int64_t shape[LN_MAX_DIMS];
	memcpy(shape, x[0]->shape, sizeof shape);
	if (m->cls->rows) {
		int failed;
		return ln_module_chain_forward(&m, 1, x[0], &failed, err);
	}
	if (ln_module_is_multi(m)) {
		if ((s = reserve_inputs(m, n, err)) != LN_OK)
			return s;
		for (int i = 0; i < n; i++) {
			m->inputs[i].ndim = x[i]->ndim;
			memcpy(m->inputs[i].shape, x[i]->shape, sizeof shape);
		}
		s = m->cls->forward_multi(m, n, x, err);
	} else {
		s = m->cls->forward(m, x[0], err);
	}
	if (s != LN_OK)
		return s;
	assert(!ln_tensor_is_empty(&m->output) && ln_tensor_is_contiguous(&m->output));
	m->in_ndim = ndim;
	memcpy(m->in_shape, shape, sizeof shape);
	if (ln_module_is_multi(m))
		m->ninputs = n;
	return LN_OK;
}

ln_status ln_module_backward_multi_unprefixed(ln_module *m, int n, const ln_tensor *const *x,
                                              const ln_tensor *gy, ln_error *err)
{
	return ln_module_backward_multi_ex(m, n, x, gy, true, err);
}

ln_status ln_module_backward_ex(ln_module *m, const ln_tensor *x, const ln_tensor *gy,
                                bool need_gx, ln_error *err)
{
	return ln_module_backward_multi_ex(m, 1, &x, gy, need_gx, err);
}

ln_status ln_module_backward_multi_ex(ln_module *m, int n, const ln_tensor *const *x,
                                      const ln_tensor *gy, bool need_gx, ln_error *err)
{
	if (__builtin_expect(ln_numerics_on, 0))
		return ln_numerics_backward(m, n, x, gy, need_gx, err);
	return ln_module_backward_body(m, n, x, gy, need_gx, err);
}

ln_status ln_module_backward_body(ln_module *m, int n, const ln_tensor *const *x,
                                  const ln_tensor *gy, bool need_gx, ln_error *err)
{
	assert(m && (n == 0 || x) && gy);
	if (m->in_ndim == 0)
		return ln_fail(err, LN_ESTATE, "backward called before forward");
	bool multi = ln_module_is_multi(m);
	int had = multi ? m->ninputs : 1;
	if (n != had)
		return ln_fail(err, LN_EARG, "expected the %d input%s of the last forward, got %d", had,
		               had == 1 ? "" : "s", n);
	ln_status s = LN_OK;
	for (int i = 0; i < n && s == LN_OK; i++)
		s = check_arg(x[i], "input", n > 1 ? i + 1 : 0, err);
	if (s == LN_OK)
		s = check_arg(gy, "gradient", 0, err);
	if (s != LN_OK)
		return s;
	if (!ln_tensor_same_shape(gy, &m->output)) {
		char want[128], got[128];
		return ln_fail(err, LN_ESHAPE, "expected gradient of shape %s, got %s",
		               ln_tensor_shape_str(&m->output, want, sizeof want),
		               ln_tensor_shape_str(gy, got, sizeof got));
	}
	if (!multi)
		s = check_last_input(m->in_ndim, m->in_shape, x[0], 0, err);
	for (int i = 0; multi && i < n && s == LN_OK; i++)
		s = check_last_input(m->inputs[i].ndim, m->inputs[i].shape, x[i], n > 1 ? i + 1 : 0,
		                     err);
	if (s != LN_OK)
		return s;
	const bool want = need_gx && m->input_grad;
	if (!want && !ln_module_trains(m)) {
		/* dL/dx is all such a module's backward would give */
		ln_module_skip_gx(m);
		return LN_OK;
	}
	if (m->cls->rows) {
		int failed;
		return ln_module_chain_backward(&m, 1, x[0], gy, need_gx, &failed, err);
	}
	/* a container whose chain a child cuts clears want_gx (sequential.c) */
	m->want_gx = want;
	s = multi ? m->cls->backward_multi(m, n, x, gy, err) : m->cls->backward(m, x[0], gy, err);
	const bool computed = m->want_gx;
	m->want_gx = true;
	if (s != LN_OK)
		return s;
	m->gx_skipped = !computed;
	m->backward_current = true;
	if (!computed)
		return LN_OK;
	if (multi) {
		for (int i = 0; i < n; i++)
			assert(!ln_tensor_is_empty(&m->inputs[i].grad) &&
			       ln_tensor_is_contiguous(&m->inputs[i].grad));
		ln_tensor_release(&m->grad_input);
		ln_tensor_ref(&m->grad_input, &m->inputs[0].grad);
	}
	assert(!ln_tensor_is_empty(&m->grad_input) && ln_tensor_is_contiguous(&m->grad_input));
	return LN_OK;
}

/* ---- chains, sample by sample ------------------------------------------------------------
 *
 * (module.h, "sample by sample")  Forward and backward each prepare every
 * module of the chain in order (checks, buffers: all that may fail), then
 * cut the batch into runs and hand them out to the parts of one split;
 * a part takes the next run not yet taken (a thread slowed down by other
 * work takes fewer) and carries each of its samples through the whole
 * chain, in order, before the next.  What each module computes for a
 * sample does not depend on who computes it, and the per-run sums are
 * added in run order, so the results are the same for any thread count.
 */

/* A chain whose batch holds fewer multiply-adds (or elements) than this
 * runs on one thread: below it, waking the others costs more than they
 * save.  Measured on 2 cores of a Zen 3 EPYC shared with other work (load
 * average about 10), OMP_WAIT_POLICY=PASSIVE, forward + backward, best of
 * 7, 1 vs 2 threads: ReLU on 64K elements 20 vs 19 us, on 1M 1006 vs 944
 * us; Conv2d 4->8 3x3 on 64 samples of 4x4 (0.3M multiply-adds) 261 vs 276
 * us, of 14x14 (3.6M) 1094 vs 1490 us, of 28x28 (14M) 3737 vs 2940 us.
 * On that busy machine the split paid only from about 10M; the value stays
 * at 256K (test_conv's chain test relies on splitting above it) until it
 * is measured on a quiet machine. */
#define CHAIN_THREAD_WORK (256.0 * 1024)

/* A chain of several layers goes through a run this many floats of its
 * input at a time (at least one sample): a convolution's sample, 64 rows
 * of 64. */
#define CHAIN_BLOCK 4096

typedef struct chain_job {
	ln_module *const *mods;
	int count;
	const ln_tensor *x, *gy;  /* gy NULL: forward */
	int64_t n;                /* samples */
	int64_t block;            /* samples at a time */
	int runs;
	int next;                 /* the first run not yet taken (atomic) */
} chain_job;

/* The input of module k of the chain. */
static const ln_tensor *chain_input(const chain_job *jb, int k)
{
	return k == 0 ? jb->x : &jb->mods[k - 1]->output;
}

/* ln_part_fn: takes runs until none are left. */
static void chain_part(void *ctx, int part, int nparts)
{
	chain_job *jb = ctx;
	(void)nparts;
	for (;;) {
		const int r = __atomic_fetch_add(&jb->next, 1, __ATOMIC_RELAXED);
		if (r >= jb->runs)
			break;
		const int64_t n0 = jb->n * r / jb->runs, n1 = jb->n * (r + 1) / jb->runs;
		for (int64_t a = n0; a < n1; a += jb->block) {
			const int64_t b = a + jb->block < n1 ? a + jb->block : n1;
			if (!jb->gy) {
				for (int k = 0; k < jb->count; k++) {
					ln_module *m = jb->mods[k], *next = k + 1 < jb->count ? jb->mods[k + 1] : NULL;
					if (next && next->cls->rows->forward_rows_after &&
					    next->cls->rows->forward_rows_after(next, m, chain_input(jb, k), a, b,
					                                        part)) {
						k++;  /* next's forward is done too */
						continue;
					}
					m->cls->rows->forward_rows(m, chain_input(jb, k), a, b, part);
				}
				continue;
			}
			for (int k = jb->count - 1; k >= 0; k--) {
				ln_module *m = jb->mods[k], *prev = k > 0 ? jb->mods[k - 1] : NULL;
				const ln_tensor *g = k == jb->count - 1 ? jb->gy : &jb->mods[k + 1]->grad_input;
				if (prev && m->cls->rows->backward_rows_after &&
				    m->cls->rows->backward_rows_after(m, prev, chain_input(jb, k - 1), g, a, b, r,
				                                      a == n0, part)) {
					k--;  /* prev's backward is done too */
					continue;
				}
				m->cls->rows->backward_rows(m, chain_input(jb, k), g, a, b, r, a == n0, part);
			}
		}
	}
}

/* The runs of a batch of n samples, and the most parts a split of them
 * may have (what the modules make scratch for). */
static int chain_runs(int64_t n)
{
	return n < LN_CHAIN_RUNS ? (int)(n > 0 ? n : 1) : LN_CHAIN_RUNS;
}

static int chain_max_parts(int runs)
{
	int p = ln_parallel_threads();
	if (p > LN_PARALLEL_MAX)
		p = LN_PARALLEL_MAX;
	return p < runs ? p : runs;
}

void ln_module_chain_sizes(int64_t n, int *runs, int *parts)
{
	*runs = chain_runs(n);
	*parts = chain_max_parts(*runs);
}

/* Writes the zeros t's storage owes (ln_tensor_zero is lazy: the first
 * ln_tensor_data writes them), so that the parts of a split, which all
 * read t, do not race to write them. */
static void settle(const ln_tensor *t)
{
	if (!ln_tensor_is_empty(t))
		(void)ln_tensor_data(t);
}

/* Settles everything the parts of the job read or write in place. */
static void settle_job(const chain_job *jb)
{
	settle(jb->x);
	if (jb->gy)
		settle(jb->gy);
	for (int k = 0; k < jb->count; k++) {
		const ln_module *m = jb->mods[k];
		settle(&m->output);
		if (jb->gy && m->want_gx)
			settle(&m->grad_input);
		for (int i = 0; i < m->nparams; i++)
			settle(&m->param[i]);
	}
}

/* Runs the job, split when the work is worth it.  A chain of one layer
 * takes its runs whole; a longer one a block at a time. */
static void chain_run(chain_job *jb, int parts, double work)
{
	const int64_t per = jb->n > 0 ? ln_tensor_numel(jb->x) / jb->n : 1;
	jb->block = jb->count == 1 ? jb->n : per >= CHAIN_BLOCK ? 1 : CHAIN_BLOCK / (per > 0 ? per : 1);
	jb->next = 0;
	settle_job(jb);
	if (parts > 1 && work >= CHAIN_THREAD_WORK && ln_parallel_run(parts, chain_part, jb) > 0)
		return;
	chain_part(jb, 0, 1);
}

ln_status ln_module_chain_forward(ln_module *const *mods, int count, const ln_tensor *x,
                                  int *failed, ln_error *err)
{
	assert(count >= 1);
	for (int k = 0; k < count; k++) {
		mods[k]->in_ndim = 0;
		mods[k]->backward_current = false;
	}
	const int64_t n = x->ndim > 0 ? x->shape[0] : 1;
	const int runs = chain_runs(n), parts = chain_max_parts(runs);
	double work = 0;
	for (int k = 0; k < count; k++) {
		ln_module *m = mods[k];
		const ln_tensor *in = k == 0 ? x : &mods[k - 1]->output;
		assert(m->cls->rows);
		ln_status s = check_arg(in, "input", 0, err);
		if (s == LN_OK)
			s = m->cls->rows->forward_prepare(m, in, parts, &work, err);
		if (s != LN_OK) {
			*failed = k;
			return s;
		}
		assert(!ln_tensor_is_empty(&m->output) && ln_tensor_is_contiguous(&m->output) &&
		       m->output.shape[0] == n);
	}
	chain_job jb = {.mods = mods, .count = count, .x = x, .gy = NULL, .n = n, .runs = runs};
	chain_run(&jb, parts, work);
	for (int k = 0; k < count; k++) {
		const ln_tensor *in = k == 0 ? x : &mods[k - 1]->output;
		mods[k]->in_ndim = in->ndim;
		memcpy(mods[k]->in_shape, in->shape, sizeof in->shape);
	}
	return LN_OK;
}

ln_status ln_module_chain_backward(ln_module *const *mods, int count, const ln_tensor *x,
                                   const ln_tensor *gy, bool need_gx, int *failed,
                                   ln_error *err)
{
	assert(count >= 1);
	const int64_t n = x->ndim > 0 ? x->shape[0] : 1;
	const int runs = chain_runs(n), parts = chain_max_parts(runs);
	double work = 0;
	ln_status s = LN_OK;
	int k = count - 1;
	for (; k >= 0; k--) {
		ln_module *m = mods[k];
		const ln_tensor *in = k == 0 ? x : &mods[k - 1]->output;
		if (m->in_ndim == 0)
			s = ln_fail(err, LN_ESTATE, "backward called before forward");
		if (s == LN_OK)
			s = check_arg(in, "input", 0, err);
		if (s == LN_OK && k == count - 1) {
			if ((s = check_arg(gy, "gradient", 0, err)) == LN_OK &&
			    !ln_tensor_same_shape(gy, &m->output)) {
				char want[128], got[128];
				s = ln_fail(err, LN_ESHAPE, "expected gradient of shape %s, got %s",
				            ln_tensor_shape_str(&m->output, want, sizeof want),
				            ln_tensor_shape_str(gy, got, sizeof got));
			}
		}
		if (s == LN_OK)
			s = check_last_input(m->in_ndim, m->in_shape, in, 0, err);
		if (s != LN_OK)
			break;
		assert(k == 0 || m->input_grad);
		m->want_gx = k > 0 || (need_gx && m->input_grad);
		if ((s = m->cls->rows->backward_prepare(m, in, parts, runs, &work, err)) != LN_OK)
			break;
	}
	if (s != LN_OK) {
		*failed = k;
		for (int j = count - 1; j >= k; j--)
			mods[j]->want_gx = true;
		return s;
	}
	chain_job jb = {.mods = mods, .count = count, .x = x, .gy = gy, .n = n, .runs = runs};
	chain_run(&jb, parts, work);
	for (k = 0; k < count; k++) {
		ln_module *m = mods[k];
		if (m->cls->rows->backward_finish)
			m->cls->rows->backward_finish(m, runs);
		m->gx_skipped = !m->want_gx;
		m->want_gx = true;
		m->backward_current = true;
	}
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

ln_status ln_module_forward_unprefixed(ln_module *m, const ln_tensor *x, ln_error *err)
{
	return ln_module_forward_multi_unprefixed(m, 1, &x, err);
}

ln_status ln_module_backward_unprefixed(ln_module *m, const ln_tensor *x, const ln_tensor *gy,
                                        ln_error *err)
{
	return ln_module_backward_multi_unprefixed(m, 1, &x, gy, err);
}

ln_status ln_module_forward_multi(ln_module *m, int n, const ln_tensor *const *x, ln_error *err)
{
	ln_status s = ln_module_forward_multi_unprefixed(m, n, x, err);
	if (s != LN_OK)
		ln_error_prefix(err, "%s: ", m->cls->name);
	return s;
}

ln_status ln_module_backward_multi(ln_module *m, int n, const ln_tensor *const *x,
                                   const ln_tensor *gy, ln_error *err)
{
	ln_status s = ln_module_backward_multi_unprefixed(m, n, x, gy, err);
	if (s != LN_OK)
		ln_error_prefix(err, "%s:backward: ", m->cls->name);
	return s;
}

ln_status ln_module_forward(ln_module *m, const ln_tensor *x, ln_error *err)
{
	return ln_module_forward_multi(m, 1, &x, err);
}

ln_status ln_module_backward(ln_module *m, const ln_tensor *x, const ln_tensor *gy, ln_error *err)
{
	return ln_module_backward_multi(m, 1, &x, gy, err);
}

const ln_tensor *ln_module_grad_input_at(const ln_module *m, int i)
{
	if (!ln_module_is_multi(m)) {
		assert(i == 0);
		return &m->grad_input;
	}
	assert(i >= 0 && i < m->ninputs);
	return &m->inputs[i].grad;
}

/* ---- containers ------------------------------------------------------------------ */

const ln_wiring_list *ln_wiring_find(const ln_wiring *w, const char *name)
{
	for (int i = 0; w && i < w->nlists; i++)
		if (strcmp(w->list[i].name, name) == 0)
			return &w->list[i];
	return NULL;
}

ln_status ln_module_assemble(ln_module *m, int n, ln_module *const *children, const ln_wiring *w,
                             ln_error *err)
{
	if (n == 0 && (!w || w->nlists == 0))
		return LN_OK;  /* nothing to assemble: a container saved empty loads empty */
	if (!m->cls->assemble) {
		return ln_fail(err, LN_EARG, "a %s has no %s", m->cls->name,
		               n > 0 ? "children" : "wiring");
	}
	return m->cls->assemble(m, n, children, w, err);
}

ln_status ln_module_add_child(ln_module *m, ln_module *child, ln_error *err)
{
	int n = m->nchildren;
	ln_module **a = ln_malloc((size_t)(n + 1) * sizeof *a);
	if (!a)
		return ln_fail(err, LN_ENOMEM, "out of memory adding layer %d", n + 1);
	if (n > 0)
		memcpy(a, m->children, (size_t)n * sizeof *a);
	a[n] = child;
	ln_module_retain(child);
	ln_free(m->children);
	m->children = a;
	m->nchildren = n + 1;
	return LN_OK;
}

bool ln_module_contains(const ln_module *root, const ln_module *target)
{
	if (root == target)
		return true;
	for (int i = 0; i < root->nchildren; i++)
		if (ln_module_contains(root->children[i], target))
			return true;
	return false;
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
	if (!ln_module_is_multi(m))
		return ln_tensor_ensure(&m->grad_input, m->in_ndim, m->in_shape, err);
	/* a join: the gradient of each input of the last forward */
	ln_status s = LN_OK;
	for (int i = 0; i < m->ninputs && s == LN_OK; i++)
		s = ln_tensor_ensure(&m->inputs[i].grad, m->inputs[i].ndim, m->inputs[i].shape, err);
	return s;
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
