#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/alloc.h"
#include "core/rng.h"
#include "testutil.h"

void tu_tensor(ln_tensor *t, int ndim, const int64_t *shape, const float *vals)
{
	ln_error err;
	*t = LN_TENSOR_EMPTY;
	if (ln_tensor_alloc(t, ndim, shape, &err) != LN_OK)
		fail_msg("tu_tensor: %s", err.msg);
	if (vals)
		memcpy(ln_tensor_data(t), vals, (size_t)ln_tensor_numel(t) * sizeof(float));
}

/* ---- modules, values, allocations -------------------------------------------- */

void tu_forward_ok(ln_module *m, const ln_tensor *x)
{
	ln_error err;
	if (ln_module_forward(m, x, &err) != LN_OK)
		fail_msg("forward: %s", err.msg);
}

void tu_backward_ok(ln_module *m, const ln_tensor *x, const ln_tensor *gy)
{
	ln_error err;
	if (ln_module_backward(m, x, gy, &err) != LN_OK)
		fail_msg("backward: %s", err.msg);
}

void tu_expect_near(const float *got, const float *want, int64_t n, double tol, const char *what)
{
	for (int64_t i = 0; i < n; i++)
		if (!(fabs((double)got[i] - want[i]) <= tol * fmax(1.0, fabs(want[i]))))
			fail_msg("%s: element %lld: got %.9g, want %.9g", what, (long long)i, got[i],
			         want[i]);
}

uint64_t tu_alloc_calls(void)
{
	ln_alloc_stats st;
	ln_alloc_get_stats(&st);
	return st.allocs + st.failures;
}

void tu_check_enomem(tu_build_fn build, void *ctx, const int64_t xshape[3],
                     const int64_t yshape[3], const char *what)
{
	for (int phase = 0; phase < 3; phase++) {
		int failures = 0;
		for (long k = 1;; k++) {
			if (k >= 200)
				fail_msg("%s phase %d: still failing after %ld allocations", what, phase, k);
			uint64_t live = tu_live_bytes();
			ln_module *m = NULL;
			ln_error err;
			ln_tensor x, gy = LN_TENSOR_EMPTY;
			tu_tensor_uniform(&x, 3, xshape, -1, 1);
			ln_status s;
			if (phase == 0) {
				ln_alloc_fail_nth(k);
				s = build(&m, ctx, &err);
				ln_alloc_fail_nth(0);
			} else {
				if (build(&m, ctx, &err) != LN_OK)
					fail_msg("%s: %s", what, err.msg);
				if (phase == 1) {
					ln_alloc_fail_nth(k);
					s = ln_module_forward(m, &x, &err);
					ln_alloc_fail_nth(0);
				} else {
					tu_forward_ok(m, &x);
					tu_tensor_uniform(&gy, 3, yshape, -1, 1);
					ln_alloc_fail_nth(k);
					s = ln_module_backward(m, &x, &gy, &err);
					ln_alloc_fail_nth(0);
				}
			}
			if (s == LN_OK) {
				if (phase > 0)
					tu_forward_ok(m, &x);  /* the module still works */
			} else {
				failures++;
				if (s != LN_ENOMEM || !strstr(err.msg, "out of memory"))
					fail_msg("%s phase %d allocation %ld: %s", what, phase, k, err.msg);
			}
			ln_module_release(m);
			ln_tensor_release(&x);
			ln_tensor_release(&gy);
			assert_int_equal(tu_live_bytes(), live);
			if (s == LN_OK)
				break;
		}
		if (failures < 1)
			fail_msg("%s phase %d allocates nothing", what, phase);
	}
}

void tu_reseed(ln_module *m, void *ctx)
{
	(void)m;
	ln_rng_seed(ln_rng_global(), *(uint64_t *)ctx);
}

uint64_t tu_live_bytes(void)
{
	ln_alloc_stats st;
	ln_alloc_get_stats(&st);
	return st.bytes_live;
}

void tu_tensor_uniform(ln_tensor *t, int ndim, const int64_t *shape, float lo, float hi)
{
	tu_tensor(t, ndim, shape, NULL);
	float *d = ln_tensor_data(t);
	for (int64_t i = 0; i < ln_tensor_numel(t); i++)
		d[i] = lo + (hi - lo) * (float)ln_rng_uniform(ln_rng_global());
}

static double rel_err(double a, double n)
{
	double den = fmax(fmax(fabs(a), fabs(n)), 1e-2);
	return fabs(a - n) / den;
}

/* sum(r .* y) in double. */
static double probe(const ln_tensor *y, const float *r)
{
	const float *d = ln_tensor_data(y);
	double s = 0;
	for (int64_t i = 0; i < ln_tensor_numel(y); i++)
		s += (double)r[i] * d[i];
	return s;
}

/* What a gradient check runs: m, its input, the probe's weights, and what
 * to call before each forward. */
typedef struct gc {
	ln_module *m;
	const ln_tensor *x;
	const float *r;
	tu_before_fn before;
	void *ctx;
} gc;

static double module_probe(const gc *g)
{
	ln_error err;
	if (g->before)
		g->before(g->m, g->ctx);
	if (ln_module_forward(g->m, g->x, &err) != LN_OK)
		fail_msg("forward: %s", err.msg);
	return probe(&g->m->output, g->r);
}

/* Largest relative error between analytic gradient gv and the central
 * difference of the probe over every element of v. */
static double check_tensor(const gc *g, ln_tensor *v, const float *gv, double eps)
{
	float *d = ln_tensor_data(v);
	double worst = 0;
	for (int64_t i = 0; i < ln_tensor_numel(v); i++) {
		float saved = d[i];
		d[i] = (float)(saved + eps);
		double hi = module_probe(g);
		d[i] = (float)(saved - eps);
		double lo = module_probe(g);
		d[i] = saved;
		/* the step actually taken, after rounding to float */
		double step = (double)(float)(saved + eps) - (double)(float)(saved - eps);
		worst = fmax(worst, rel_err(gv[i], (hi - lo) / step));
	}
	return worst;
}

typedef struct params { ln_module *owner[256]; int index[256]; int n; } params;

static int collect(ln_module *owner, int index, void *ctx)
{
	params *p = ctx;
	if (p->n == 256)
		fail_msg("gradcheck: more than 256 parameters");
	p->owner[p->n] = owner;
	p->index[p->n++] = index;
	return 0;
}

static void clone_or_fail(ln_tensor *out, const ln_tensor *t)
{
	ln_error err;
	*out = LN_TENSOR_EMPTY;
	if (ln_tensor_clone(out, t, &err) != LN_OK)
		fail_msg("clone: %s", err.msg);
}

/* params: own (m->param, as every leaf has) or the whole tree */
static double gradcheck(ln_module *m, const ln_tensor *x, double eps, bool input, bool tree,
                        tu_before_fn before, void *ctx)
{
	ln_error err;
	ln_tensor xc, gx = LN_TENSOR_EMPTY, r = LN_TENSOR_EMPTY;
	clone_or_fail(&xc, x);
	gc g = {m, &xc, NULL, before, ctx};
	if (before)
		before(m, ctx);
	if (ln_module_forward(m, &xc, &err) != LN_OK)
		fail_msg("forward: %s", err.msg);
	tu_tensor_uniform(&r, m->output.ndim, m->output.shape, -1.0f, 1.0f);
	g.r = ln_tensor_data(&r);
	ln_module_zero_grad(m);
	if (ln_module_backward(m, &xc, &r, &err) != LN_OK)
		fail_msg("backward: %s", err.msg);
	if (input)
		clone_or_fail(&gx, &m->grad_input);
	static params p;  /* large; the tests run one at a time */
	p.n = 0;
	if (tree) {
		ln_module_visit_params(m, collect, &p);
	} else {
		for (int i = 0; i < m->nparams; i++)
			collect(m, i, &p);
	}
	ln_tensor *grads = calloc((size_t)p.n + 1, sizeof *grads);
	assert_non_null(grads);
	for (int k = 0; k < p.n; k++)
		clone_or_fail(&grads[k], &p.owner[k]->grad[p.index[k]]);
	double worst = input ? check_tensor(&g, &xc, ln_tensor_data(&gx), eps) : 0;
	for (int k = 0; k < p.n; k++) {
		worst = fmax(worst, check_tensor(&g, &p.owner[k]->param[p.index[k]],
		                                 ln_tensor_data(&grads[k]), eps));
		ln_tensor_release(&grads[k]);
	}
	free(grads);
	ln_tensor_release(&xc);
	ln_tensor_release(&gx);
	ln_tensor_release(&r);
	return worst;
}

double tu_gradcheck_module(ln_module *m, const ln_tensor *x, double eps)
{
	return gradcheck(m, x, eps, true, false, NULL, NULL);
}

double tu_gradcheck_ex(ln_module *m, const ln_tensor *x, double eps, bool input,
                       tu_before_fn before, void *ctx)
{
	return gradcheck(m, x, eps, input, true, before, ctx);
}

double tu_gradcheck_loss(ln_loss *c, const ln_tensor *x, const ln_tensor *target, double eps)
{
	ln_error err;
	ln_tensor xc = LN_TENSOR_EMPTY, g = LN_TENSOR_EMPTY, gout = LN_TENSOR_EMPTY;
	double loss;
	if (ln_tensor_clone(&xc, x, &err) != LN_OK)
		fail_msg("clone: %s", err.msg);
	if (ln_loss_forward(c, &xc, target, &loss, &err) != LN_OK)
		fail_msg("loss: %s", err.msg);
	/* reduction none: random weights r of the per-sample losses */
	const float *r = NULL;
	int64_t row = 1;
	if (c->reduction == LN_REDUCE_NONE) {
		tu_tensor_uniform(&gout, c->losses.ndim, c->losses.shape, -1, 1);
		r = ln_tensor_data(&gout);
		row = ln_tensor_numel(&xc) / ln_tensor_numel(&gout);
	}
	if (ln_loss_backward_weighted(c, &xc, target, r ? &gout : NULL, &err) != LN_OK)
		fail_msg("loss: %s", err.msg);
	if (ln_tensor_clone(&g, &c->grad_input, &err) != LN_OK)
		fail_msg("clone: %s", err.msg);
	float *d = ln_tensor_data(&xc);
	const float *gd = ln_tensor_data(&g);
	double worst = 0;
	for (int64_t i = 0; i < ln_tensor_numel(&xc); i++) {
		float saved = d[i];
		double hi, lo;
		d[i] = (float)(saved + eps);
		if (ln_loss_forward(c, &xc, target, &hi, &err) != LN_OK)
			fail_msg("loss: %s", err.msg);
		d[i] = (float)(saved - eps);
		if (ln_loss_forward(c, &xc, target, &lo, &err) != LN_OK)
			fail_msg("loss: %s", err.msg);
		d[i] = saved;
		double step = (double)(float)(saved + eps) - (double)(float)(saved - eps);
		/* with none, the number is sum_j l_j (in double), and element i
		 * moves only the loss of its own row: times that row's weight */
		double w = r ? (double)r[i / row] : 1.0;
		worst = fmax(worst, rel_err(gd[i], w * (hi - lo) / step));
	}
	ln_tensor_release(&xc);
	ln_tensor_release(&g);
	ln_tensor_release(&gout);
	return worst;
}

/* ---- optimisers ------------------------------------------------------------ */

ln_optim_config tu_optim_config(const char *name, ...)
{
	ln_optim_config c;
	ln_error err;
	if (ln_optim_config_init(&c, name, &err) != LN_OK)
		fail_msg("%s", err.msg);
	va_list ap;
	va_start(ap, name);
	const char *k;
	while ((k = va_arg(ap, const char *)) != NULL) {
		double v = va_arg(ap, double);
		if (ln_optim_config_set(&c, k, v, &err) != LN_OK)
			fail_msg("%s: %s", name, err.msg);
	}
	va_end(ap);
	return c;
}

ln_status tu_optim_new(ln_optim **out, const ln_optim_config *c, int n, const ln_tensor *p,
                       const ln_tensor *g, ln_error *err)
{
	ln_optim_entry e[64];
	assert_true(n >= 0 && n <= 64);
	for (int i = 0; i < n; i++)
		e[i] = (ln_optim_entry){&p[i], &g[i], NULL, 0};
	return ln_optim_new(out, c, n, e, err);
}
