/*
 * test_losses.c -- every loss and every output/loss pairing: gradient
 * checks (both target forms, both reductions), values against naive
 * references written here, the canonical (y_hat - y)/N property, stability
 * at extreme logits, every documented error with its message, describe
 * strings, buffer reuse, and allocation failure.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "core/alloc.h"
#include "core/rng.h"
#include "nn/loss.h"
#include "nn/loss_impl.h"
#include "testutil.h"

#define SEED 20240611u
#define EPS 1e-3
#define GC_TOL 1e-4

/* |a - b| <= tol, in double, reporting both values. */
#define assert_close(a, b, tol)                                                            \
	do {                                                                                   \
		double a_ = (a), b_ = (b), t_ = (tol);                                         \
		if (!(fabs(a_ - b_) <= t_))                                                    \
			fail_msg("%s = %.9g, expected %.9g (tolerance %g)", #a, a_, b_, t_);  \
	} while (0)

typedef ln_status (*loss_ctor)(ln_loss **, ln_reduction, ln_error *);

static const ln_reduction reductions[] = { LN_REDUCE_MEAN, LN_REDUCE_SUM, LN_REDUCE_NONE };
#define NRED 3

static int setup(void **state)
{
	ln_rng_seed(ln_rng_global(), SEED);
	return 0;
}

static ln_loss *make(loss_ctor f, ln_reduction r)
{
	ln_loss *c = NULL;
	ln_error err;
	if (f(&c, r, &err) != LN_OK)
		fail_msg("constructor: %s", err.msg);
	return c;
}

static ln_loss *make_ol(ln_activation a, ln_loss_kind k, ln_reduction r)
{
	ln_loss *c = NULL;
	ln_error err;
	if (ln_output_loss_new(&c, a, k, r, &err) != LN_OK)
		fail_msg("ln_output_loss_new: %s", err.msg);
	return c;
}

static double forward(ln_loss *c, const ln_tensor *x, const ln_tensor *y)
{
	ln_error err;
	double l;
	if (ln_loss_forward(c, x, y, &l, &err) != LN_OK)
		fail_msg("forward: %s", err.msg);
	return l;
}

static void backward(ln_loss *c, const ln_tensor *x, const ln_tensor *y)
{
	ln_error err;
	if (ln_loss_backward(c, x, y, &err) != LN_OK)
		fail_msg("backward: %s", err.msg);
}

/* Gradient check with a message naming the case on failure.  The step is
 * smaller for BCELoss, whose log x has a large third derivative near 0. */
static void gradcheck(ln_loss *c, const ln_tensor *x, const ln_tensor *y, const char *what)
{
	char d[160];
	ln_loss_describe(c, d, sizeof d);
	double eps = strcmp(c->cls->name, "BCELoss") == 0 ? EPS / 10 : EPS;
	double e = tu_gradcheck_loss(c, x, y, eps);
	if (!(e <= GC_TOL))
		fail_msg("gradcheck %s %s (seed %u): relative error %g > %g", d, what, SEED, e, GC_TOL);
}

/* N labels uniform in 1..C. */
static void labels(ln_tensor *t, int64_t n, int64_t c)
{
	tu_tensor(t, 1, (int64_t[]){ n }, NULL);
	float *d = ln_tensor_data(t);
	for (int64_t i = 0; i < n; i++)
		d[i] = (float)(1 + ln_rng_below(ln_rng_global(), (uint64_t)c));
}

/* {N,C} one-hot rows of the given labels. */
static void one_hot(ln_tensor *t, const ln_tensor *lab, int64_t c)
{
	int64_t n = lab->shape[0];
	tu_tensor(t, 2, (int64_t[]){ n, c }, NULL);
	const float *l = ln_tensor_data(lab);
	float *d = ln_tensor_data(t);
	for (int64_t i = 0; i < n; i++)
		d[i * c + (int64_t)l[i] - 1] = 1.0f;
}

/* {N,C} random rows of non-negative weights summing to `total`. */
static void prob_rows(ln_tensor *t, int64_t n, int64_t c, double total)
{
	tu_tensor_uniform(t, 2, (int64_t[]){ n, c }, 0.05f, 1.0f);
	float *d = ln_tensor_data(t);
	for (int64_t i = 0; i < n; i++) {
		double s = 0;
		for (int64_t j = 0; j < c; j++)
			s += d[i * c + j];
		for (int64_t j = 0; j < c; j++)
			d[i * c + j] = (float)(d[i * c + j] / s * total);
	}
}

/* Moves every element at least 0.1 away from 0 (relu's kink). */
static void away_from_zero(ln_tensor *t)
{
	float *d = ln_tensor_data(t);
	for (int64_t k = 0; k < ln_tensor_numel(t); k++)
		if (fabsf(d[k]) < 0.1f)
			d[k] = d[k] < 0 ? -0.5f : 0.5f;
}

/* Both forward and backward on (x, y) fail with `code` and a message
 * containing `msg`; forward stores NaN as the loss. */
static void expect_error(ln_loss *c, const ln_tensor *x, const ln_tensor *y, ln_status code,
                         const char *msg)
{
	ln_error err;
	double l = 0;
	memset(&err, 0, sizeof err);
	ln_status st = ln_loss_forward(c, x, y, &l, &err);
	if (st != code || !strstr(err.msg, msg))
		fail_msg("forward: expected %s containing \"%s\", got %s \"%s\"", ln_status_name(code), msg,
		         ln_status_name(st), err.msg);
	assert_true(isnan(l));
	memset(&err, 0, sizeof err);
	st = ln_loss_backward(c, x, y, &err);
	if (st != code || !strstr(err.msg, msg))
		fail_msg("backward: expected %s containing \"%s\", got %s \"%s\"", ln_status_name(code), msg,
		         ln_status_name(st), err.msg);
}

static void release(ln_tensor *a, ln_tensor *b, ln_tensor *c)
{
	ln_tensor_release(a);
	if (b)
		ln_tensor_release(b);
	if (c)
		ln_tensor_release(c);
}

/* ==== naive references ============================================================ */

/* -1/N sum_i log( exp(z_il) / sum_j exp(z_ij) ), directly (moderate z only). */
static double naive_ce(const ln_tensor *z, const ln_tensor *lab)
{
	int64_t n = z->shape[0], c = z->shape[1];
	const float *d = ln_tensor_data(z), *l = ln_tensor_data(lab);
	double s = 0;
	for (int64_t i = 0; i < n; i++) {
		double den = 0;
		for (int64_t j = 0; j < c; j++)
			den += exp(d[i * c + j]);
		s -= log(exp(d[i * c + (int64_t)l[i] - 1]) / den);
	}
	return s / (double)n;
}

/* -1/N sum y log s + (1-y) log(1-s), s = 1/(1+exp(-z)), directly. */
static double naive_bce_logits(const ln_tensor *z, const ln_tensor *y)
{
	const float *d = ln_tensor_data(z), *t = ln_tensor_data(y);
	double s = 0;
	for (int64_t k = 0; k < ln_tensor_numel(z); k++) {
		double p = 1.0 / (1.0 + exp(-(double)d[k]));
		s -= t[k] * log(p) + (1.0 - t[k]) * log(1.0 - p);
	}
	return s / (double)z->shape[0];
}

/* ==== gradient checks of the plain losses ============================================ */

static void test_mse_gradcheck(void **state)
{
	static const int64_t shapes[][3] = { { 6, 0, 0 }, { 5, 3, 0 }, { 2, 3, 4 } };
	static const int ndims[] = { 1, 2, 3 };
	for (int r = 0; r < NRED; r++)
		for (int s = 0; s < 3; s++) {
			ln_tensor x, y;
			tu_tensor_uniform(&x, ndims[s], shapes[s], -2, 2);
			tu_tensor_uniform(&y, ndims[s], shapes[s], -2, 2);
			ln_loss *c = make(ln_mse_loss_new, reductions[r]);
			gradcheck(c, &x, &y, "");
			ln_loss_release(c);
			release(&x, &y, NULL);
		}
}

static void test_mse_value(void **state)
{
	/* two samples: ||(1,2)-(0,0)||^2 = 5, ||(3,-1)-(1,1)||^2 = 8;
	 * mean form 1/(2*2) * 13, sum form 1/2 * 13 */
	ln_tensor x, y;
	tu_tensor(&x, 2, (int64_t[]){ 2, 2 }, (float[]){ 1, 2, 3, -1 });
	tu_tensor(&y, 2, (int64_t[]){ 2, 2 }, (float[]){ 0, 0, 1, 1 });
	ln_loss *c = make(ln_mse_loss_new, LN_REDUCE_MEAN);
	assert_close(forward(c, &x, &y), 13.0 / 4, 1e-12);
	backward(c, &x, &y);
	const float want[] = { 0.5f, 1.0f, 1.0f, -1.0f };
	for (int k = 0; k < 4; k++)
		assert_close(ln_tensor_data(&c->grad_input)[k], want[k], 1e-7);
	ln_loss_release(c);
	c = make(ln_mse_loss_new, LN_REDUCE_SUM);
	assert_close(forward(c, &x, &y), 13.0 / 2, 1e-12);
	ln_loss_release(c);
	release(&x, &y, NULL);
}

static void test_bce_gradcheck(void **state)
{
	for (int r = 0; r < NRED; r++) {
		ln_tensor x, y, z;
		tu_tensor_uniform(&x, 2, (int64_t[]){ 4, 3 }, 0.1f, 0.9f);
		tu_tensor_uniform(&y, 2, (int64_t[]){ 4, 3 }, 0.0f, 1.0f);
		tu_tensor_uniform(&z, 2, (int64_t[]){ 4, 3 }, -3.0f, 3.0f);
		ln_loss *c = make(ln_bce_loss_new, reductions[r]);
		gradcheck(c, &x, &y, "soft targets");
		ln_loss_release(c);
		c = make(ln_bce_logits_loss_new, reductions[r]);
		gradcheck(c, &z, &y, "soft targets");
		/* hard 0/1 targets */
		float *d = ln_tensor_data(&y);
		for (int k = 0; k < 12; k++)
			d[k] = d[k] < 0.5f ? 0.0f : 1.0f;
		gradcheck(c, &z, &y, "hard targets");
		ln_loss_release(c);
		c = make(ln_bce_loss_new, reductions[r]);
		gradcheck(c, &x, &y, "hard targets");
		ln_loss_release(c);
		release(&x, &y, &z);
	}
}

static void test_bce_value(void **state)
{
	ln_tensor z, y, p;
	tu_tensor_uniform(&z, 2, (int64_t[]){ 5, 2 }, -4.0f, 4.0f);
	tu_tensor_uniform(&y, 2, (int64_t[]){ 5, 2 }, 0.0f, 1.0f);
	ln_loss *c = make(ln_bce_logits_loss_new, LN_REDUCE_MEAN);
	double want = naive_bce_logits(&z, &y);
	assert_close(forward(c, &z, &y), want, 1e-9 * fabs(want));
	ln_loss_release(c);
	/* BCELoss on sigmoid(z) agrees up to the rounding of sigmoid(z) to float */
	tu_tensor(&p, 2, (int64_t[]){ 5, 2 }, NULL);
	for (int k = 0; k < 10; k++)
		ln_tensor_data(&p)[k] = (float)(1.0 / (1.0 + exp(-(double)ln_tensor_data(&z)[k])));
	c = make(ln_bce_loss_new, LN_REDUCE_MEAN);
	assert_close(forward(c, &p, &y), want, 1e-5 * fabs(want));
	ln_loss_release(c);
	release(&z, &y, &p);
}

static void test_cross_entropy_gradcheck(void **state)
{
	loss_ctor ctors[] = { ln_cross_entropy_loss_new, ln_nll_loss_new };
	for (int k = 0; k < 2; k++)
		for (int r = 0; r < NRED; r++) {
			ln_tensor z, lab, oh, pr, pr2;
			tu_tensor_uniform(&z, 2, (int64_t[]){ 5, 4 }, -3.0f, 3.0f);
			labels(&lab, 5, 4);
			one_hot(&oh, &lab, 4);
			prob_rows(&pr, 5, 4, 1.0);
			prob_rows(&pr2, 5, 4, 2.5);  /* rows that do not sum to 1 */
			ln_loss *c = make(ctors[k], reductions[r]);
			gradcheck(c, &z, &lab, "labels");
			gradcheck(c, &z, &oh, "one-hot");
			gradcheck(c, &z, &pr, "probability rows");
			gradcheck(c, &z, &pr2, "unnormalised rows");
			/* labels and their one-hot rows are the same target */
			ln_tensor g1 = LN_TENSOR_EMPTY;
			double l1 = forward(c, &z, &lab);
			backward(c, &z, &lab);
			ln_tensor_clone(&g1, &c->grad_input, NULL);
			assert_close(forward(c, &z, &oh), l1, 1e-12 * fabs(l1));
			backward(c, &z, &oh);
			assert_true(ln_tensor_allclose(&c->grad_input, &g1, 0, 1e-7));
			ln_loss_release(c);
			ln_tensor_release(&g1);
			release(&z, &lab, &oh);
			release(&pr, &pr2, NULL);
		}
}

/* The fast labelled-row gradient and log-sum-exp against their double
 * references: row lengths on and off their 8 lanes, logits far from 0
 * (the max subtracted), the label at either end; within cross_entropy.c's
 * bounds (5e-7 |s|, and 1e-14 relative). */
static void test_cross_entropy_fast_grad(void **state)
{
	const int64_t cs[] = {1, 3, 8, 13, 64, 256, 301};
	const float shifts[] = {0, 1000, -1000};
	float z[301], g[301], want[301];
	for (size_t a = 0; a < sizeof cs / sizeof cs[0]; a++)
		for (size_t b = 0; b < 3; b++)
			for (int64_t l = 0; l < cs[a]; l += cs[a] > 1 ? cs[a] - 1 : 1) {
				int64_t c = cs[a];
				double s = b == 1 ? -0.25 : 1.0 / 3.0, e = 0;
				for (int64_t j = 0; j < c; j++)
					z[j] = shifts[b] + 8.0f * (ln_rng_uniform(ln_rng_global()) - 0.5f);
				ln_ce_label_grad(g, z, c, l, s);
				ln_ce_label_grad_naive(want, z, c, l, s);
				double lse = ln_ce_row_lse(z, c), lwant = ln_row_logsumexp(z, c);
				if (!(fabs(lse - lwant) <= 1e-14 * fmax(1.0, fabs(lwant))))
					fail_msg("c %lld, shift %g: log-sum-exp %.17g, want %.17g", (long long)c,
					         (double)shifts[b], lse, lwant);
				for (int64_t j = 0; j < c; j++)
					e = fmax(e, fabs((double)g[j] - want[j]));
				if (!(e <= 5e-7 * fabs(s)))
					fail_msg("c %lld, shift %g, label %lld: error %g", (long long)c,
					         (double)shifts[b], (long long)l, e);
			}
}

static void test_cross_entropy_value(void **state)
{
	ln_tensor z, lab, lsm;
	tu_tensor_uniform(&z, 2, (int64_t[]){ 6, 5 }, -3.0f, 3.0f);
	labels(&lab, 6, 5);
	ln_loss *c = make(ln_cross_entropy_loss_new, LN_REDUCE_MEAN);
	double want = naive_ce(&z, &lab);
	assert_close(forward(c, &z, &lab), want, 1e-9 * fabs(want));
	ln_loss_release(c);
	c = make(ln_cross_entropy_loss_new, LN_REDUCE_SUM);
	assert_close(forward(c, &z, &lab), 6 * want, 6e-9 * fabs(want));
	ln_loss_release(c);
	/* NLLLoss(log_softmax(z)) = CrossEntropyLoss(z) */
	tu_tensor(&lsm, 2, (int64_t[]){ 6, 5 }, NULL);
	const float *d = ln_tensor_data(&z);
	for (int i = 0; i < 6; i++) {
		double s = 0;
		for (int j = 0; j < 5; j++)
			s += exp(d[i * 5 + j]);
		for (int j = 0; j < 5; j++)
			ln_tensor_data(&lsm)[i * 5 + j] = (float)(d[i * 5 + j] - log(s));
	}
	c = make(ln_nll_loss_new, LN_REDUCE_MEAN);
	assert_close(forward(c, &lsm, &lab), want, 1e-6 * fabs(want));
	backward(c, &lsm, &lab);
	/* dL/dx = -onehot/N */
	for (int i = 0; i < 6; i++)
		for (int j = 0; j < 5; j++)
			assert_close(ln_tensor_data(&c->grad_input)[i * 5 + j],
			                   j + 1 == (int)ln_tensor_data(&lab)[i] ? -1.0f / 6 : 0.0f, 1e-8);
	ln_loss_release(c);
	release(&z, &lab, &lsm);
}

/* ==== reduction none ===================================================================== */

static ln_loss *make_any(int which, ln_reduction r);
static ln_alloc_stats stats_now(void);
static void any_data(ln_tensor *x, ln_tensor *y, int which);
#define NKINDS 9

/* Row i of the {N,...} tensor t as a new {1,...} tensor (a label: {1}). */
static void row_of(ln_tensor *out, const ln_tensor *t, int64_t i)
{
	int64_t shape[LN_MAX_DIMS];
	memcpy(shape, t->shape, sizeof shape);
	int64_t k = ln_tensor_numel(t) / t->shape[0];
	shape[0] = 1;
	tu_tensor(out, t->ndim, shape, ln_tensor_data(t) + i * k);
}

/* With reduction none every loss gives one loss per sample: their sum is
 * the sum reduction (and what forward returns), each is the loss of its
 * row alone, the gradient without weights is the sum's, and with weights
 * g_i it is g_i times the sum's row i; finite differences agree. */
static void test_reduction_none(void **state)
{
	for (int w = 0; w < NKINDS; w++) {
		ln_tensor x, y, gout, xi, yi;
		any_data(&x, &y, w);
		ln_loss *none = make_any(w, LN_REDUCE_NONE), *sum = make_any(w, LN_REDUCE_SUM);
		double l_none = forward(none, &x, &y), l_sum = forward(sum, &x, &y);
		assert_true(l_none == l_sum);
		assert_int_equal(none->losses.ndim, 1);
		assert_int_equal(none->losses.shape[0], 4);
		assert_true(ln_tensor_is_empty(&sum->losses));
		const float *per = ln_tensor_data(&none->losses);
		double total = 0;
		for (int64_t i = 0; i < 4; i++) {
			row_of(&xi, &x, i);
			row_of(&yi, &y, i);
			double li = forward(sum, &xi, &yi);
			assert_close(per[i], li, 1e-6 * fmax(1, fabs(li)));
			total += per[i];
			release(&xi, &yi, NULL);
		}
		assert_close(total, l_sum, 1e-6 * fmax(1, fabs(l_sum)));
		/* backward: the gradient of the sum, or weighted row by row */
		backward(none, &x, &y);
		backward(sum, &x, &y);
		assert_true(ln_tensor_allclose(&none->grad_input, &sum->grad_input, 0, 0));
		tu_tensor(&gout, 1, (int64_t[]){ 4 }, (float[]){ 0.5f, -2, 0, 3 });
		ln_error err;
		assert_int_equal(ln_loss_backward_weighted(none, &x, &y, &gout, &err), LN_OK);
		const float *gn = ln_tensor_data(&none->grad_input), *gs = ln_tensor_data(&sum->grad_input);
		const float *gw = ln_tensor_data(&gout);
		for (int64_t k = 0; k < 12; k++)
			assert_close(gn[k], gw[k / 3] * gs[k], 1e-6 * fmax(1e-3, fabs(gs[k])));
		gradcheck(none, &x, &y, "weighted per-sample losses");
		ln_loss_release(none);
		ln_loss_release(sum);
		release(&x, &y, &gout);
	}
}

/* MSE per sample by hand: 1/2 ||(1,2)-(0,0)||^2 = 2.5, 1/2 ||(3,-1)-(1,1)||^2 = 4;
 * a weighted backward gives g_i (x_i - y_i). */
static void test_reduction_none_value(void **state)
{
	ln_tensor x, y, g;
	tu_tensor(&x, 2, (int64_t[]){ 2, 2 }, (float[]){ 1, 2, 3, -1 });
	tu_tensor(&y, 2, (int64_t[]){ 2, 2 }, (float[]){ 0, 0, 1, 1 });
	tu_tensor(&g, 1, (int64_t[]){ 2 }, (float[]){ 2, -1 });
	ln_loss *c = make(ln_mse_loss_new, LN_REDUCE_NONE);
	assert_close(forward(c, &x, &y), 6.5, 1e-12);
	assert_close(ln_tensor_data(&c->losses)[0], 2.5, 0);
	assert_close(ln_tensor_data(&c->losses)[1], 4.0, 0);
	ln_error err;
	assert_int_equal(ln_loss_backward_weighted(c, &x, &y, &g, &err), LN_OK);
	const float want[] = { 2, 4, -2, 2 };
	for (int k = 0; k < 4; k++)
		assert_close(ln_tensor_data(&c->grad_input)[k], want[k], 0);
	ln_loss_release(c);
	release(&x, &y, &g);
}

/* The gradient of the per-sample losses: only with reduction none, shaped
 * like them, finite. */
static void test_reduction_none_errors(void **state)
{
	ln_tensor x, y, g3, g2, g22;
	tu_tensor_uniform(&x, 2, (int64_t[]){ 2, 3 }, -1, 1);
	labels(&y, 2, 3);
	tu_tensor(&g2, 1, (int64_t[]){ 2 }, (float[]){ 1, NAN });
	tu_tensor(&g3, 1, (int64_t[]){ 3 }, NULL);
	tu_tensor(&g22, 2, (int64_t[]){ 2, 1 }, NULL);
	ln_loss *c = make(ln_cross_entropy_loss_new, LN_REDUCE_MEAN);
	ln_error err;
	assert_int_equal(ln_loss_backward_weighted(c, &x, &y, &g3, &err), LN_EARG);
	assert_string_equal(err.msg, "CrossEntropyLoss: a gradient for the per-sample losses needs "
	                             "reduction=\"none\" (this loss has reduction=\"mean\")");
	ln_loss_release(c);
	c = make(ln_cross_entropy_loss_new, LN_REDUCE_NONE);
	assert_int_equal(ln_loss_backward_weighted(c, &x, &y, &g3, &err), LN_ESHAPE);
	assert_string_equal(err.msg, "CrossEntropyLoss: expected a gradient of the per-sample losses "
	                             "of shape {2}, got {3}");
	assert_int_equal(ln_loss_backward_weighted(c, &x, &y, &g22, &err), LN_ESHAPE);
	assert_string_equal(err.msg, "CrossEntropyLoss: expected a gradient of the per-sample losses "
	                             "of shape {2}, got {2,1}");
	assert_int_equal(ln_loss_backward_weighted(c, &x, &y, &g2, &err), LN_ENAN);
	assert_string_equal(err.msg, "CrossEntropyLoss: gradient of the per-sample losses has NaN at "
	                             "position 2");
	ln_loss_release(c);
	c = make_ol(LN_ACT_IDENTITY, LN_LOSS_MSE, LN_REDUCE_SUM);
	assert_int_equal(ln_loss_backward_weighted(c, &x, &x, &g3, &err), LN_EARG);
	assert_string_equal(err.msg, "OutputLoss(identity, mse): a gradient for the per-sample losses "
	                             "needs reduction=\"none\" (this loss has reduction=\"sum\")");
	ln_loss_release(c);
	release(&x, &y, &g2);
	release(&g3, &g22, NULL);
}

/* ==== CrossEntropyLoss and NLLLoss options ================================================== */

static ln_loss *make_class(loss_ctor f, ln_reduction r, double eps, const ln_tensor *w,
                           const int64_t *ignore)
{
	ln_class_loss_options o = { .label_smoothing = eps, .weight = w,
		                    .has_ignore = ignore != NULL, .ignore_index = ignore ? *ignore : 0 };
	ln_loss *c = NULL;
	ln_error err;
	ln_status st = f == ln_nll_loss_new ? ln_nll_loss_new_ex(&c, r, &o, &err)
	                                    : ln_cross_entropy_loss_new_ex(&c, r, &o, &err);
	if (st != LN_OK)
		fail_msg("constructor: %s", err.msg);
	return c;
}

/* log sum_j exp(z_j) over 3 logits, directly. */
static double lse3(double a, double b, double c)
{
	return log(exp(a) + exp(b) + exp(c));
}

/* Values worked out from the definitions (PyTorch's, labels 1-based):
 * logits z = {{1,2,3},{0,0,0},{2,-1,0.5}}, weights w = {1,2,3}. */
static void test_cross_entropy_options_value(void **state)
{
	const float zv[] = { 1, 2, 3, 0, 0, 0, 2, -1, 0.5f };
	const double w[] = { 1, 2, 3 };
	ln_tensor z, lab, lab_all, wt, rows;
	tu_tensor(&z, 2, (int64_t[]){ 3, 3 }, zv);
	tu_tensor(&wt, 1, (int64_t[]){ 3 }, (float[]){ 1, 2, 3 });
	double lse[3] = { lse3(1, 2, 3), lse3(0, 0, 0), lse3(2, -1, 0.5) };
	int64_t ignore = 0;

	/* labels {3, ignored, 2}, smoothing 0.1, weights:
	 * l_i = 0.9 w_l (lse_i - z_il) + 0.1/3 sum_j w_j (lse_i - z_ij) */
	tu_tensor(&lab, 1, (int64_t[]){ 3 }, (float[]){ 3, 0, 2 });
	double l1 = 0.9 * 3 * (lse[0] - 3) +
	            0.1 / 3 * (1 * (lse[0] - 1) + 2 * (lse[0] - 2) + 3 * (lse[0] - 3));
	double l3 = 0.9 * 2 * (lse[2] + 1) +
	            0.1 / 3 * (1 * (lse[2] - 2) + 2 * (lse[2] + 1) + 3 * (lse[2] - 0.5));
	ln_loss *c = make_class(ln_cross_entropy_loss_new, LN_REDUCE_MEAN, 0.1, &wt, &ignore);
	/* the mean divides by the weights of the labels that count: 3 + 2 */
	assert_close(forward(c, &z, &lab), (l1 + l3) / 5, 1e-12);
	backward(c, &z, &lab);
	const float *g = ln_tensor_data(&c->grad_input);
	/* row 1: (p_j S - t_j)/5, t = 0.9 w_3 e_3 + 0.1/3 w, S = 0.9*3 + 0.1/3*6 */
	for (int j = 0; j < 3; j++) {
		double p = exp(zv[j] - lse[0]), t = (j == 2 ? 0.9 * 3 : 0) + 0.1 / 3 * w[j];
		assert_close(g[j], (p * 2.9 - t) / 5, 1e-7);
		assert_close(g[3 + j], 0, 0);  /* the ignored row */
	}
	ln_loss_release(c);
	c = make_class(ln_cross_entropy_loss_new, LN_REDUCE_SUM, 0.1, &wt, &ignore);
	assert_close(forward(c, &z, &lab), l1 + l3, 1e-12);
	ln_loss_release(c);
	c = make_class(ln_cross_entropy_loss_new, LN_REDUCE_NONE, 0.1, &wt, &ignore);
	forward(c, &z, &lab);
	assert_close(ln_tensor_data(&c->losses)[0], l1, 1e-6);
	assert_close(ln_tensor_data(&c->losses)[1], 0, 0);
	assert_close(ln_tensor_data(&c->losses)[2], l3, 1e-6);
	ln_loss_release(c);

	/* weights alone, labels {3,1,2}: sum_i w_l (lse_i - z_il) / sum_i w_l */
	tu_tensor(&lab_all, 1, (int64_t[]){ 3 }, (float[]){ 3, 1, 2 });
	c = make_class(ln_cross_entropy_loss_new, LN_REDUCE_MEAN, 0, &wt, NULL);
	assert_close(forward(c, &z, &lab_all),
	             (3 * (lse[0] - 3) + 1 * (lse[1] - 0) + 2 * (lse[2] + 1)) / 6, 1e-12);
	ln_loss_release(c);
	/* smoothing alone: the mean over the 3 rows */
	c = make_class(ln_cross_entropy_loss_new, LN_REDUCE_MEAN, 0.3, NULL, NULL);
	double want = 0;
	for (int i = 0; i < 3; i++) {
		int l = (int)ln_tensor_data(&lab_all)[i] - 1;
		double sm = 0;
		for (int j = 0; j < 3; j++)
			sm += lse[i] - zv[i * 3 + j];
		want += 0.7 * (lse[i] - zv[i * 3 + l]) + 0.1 * sm;
	}
	assert_close(forward(c, &z, &lab_all), want / 3, 1e-12);
	ln_loss_release(c);
	/* an ignore_index inside 1..C ignores that class's rows */
	int64_t two = 2;
	c = make_class(ln_cross_entropy_loss_new, LN_REDUCE_MEAN, 0, NULL, &two);
	assert_close(forward(c, &z, &lab_all), ((lse[0] - 3) + (lse[1] - 0)) / 2, 1e-12);
	ln_loss_release(c);

	/* probability rows, weights and smoothing: t = w ((1-eps) y + eps/C),
	 * l_i = sum_j t_j (lse_i - z_ij); the mean divides by N = 3 */
	const float yv[] = { 0.5f, 0.5f, 0, 0, 0, 1, 0.25f, 0.25f, 0.5f };
	tu_tensor(&rows, 2, (int64_t[]){ 3, 3 }, yv);
	c = make_class(ln_cross_entropy_loss_new, LN_REDUCE_MEAN, 0.2, &wt, NULL);
	want = 0;
	for (int i = 0; i < 3; i++)
		for (int j = 0; j < 3; j++)
			want += w[j] * (0.8 * yv[i * 3 + j] + 0.2 / 3) * (lse[i] - zv[i * 3 + j]);
	assert_close(forward(c, &z, &rows), want / 3, 1e-12);
	ln_loss_release(c);

	/* nothing counts: the mean is 0 and so is its gradient */
	ln_tensor none_lab;
	tu_tensor(&none_lab, 1, (int64_t[]){ 3 }, (float[]){ 0, 0, 0 });
	c = make_class(ln_cross_entropy_loss_new, LN_REDUCE_MEAN, 0.1, &wt, &ignore);
	assert_close(forward(c, &z, &none_lab), 0, 0);
	backward(c, &z, &none_lab);
	for (int k = 0; k < 9; k++)
		assert_close(ln_tensor_data(&c->grad_input)[k], 0, 0);
	ln_loss_release(c);

	/* NLLLoss with weights and ignore_index -100: -w_l x_l / sum w_l */
	int64_t pad = -100;
	ln_tensor lab_pad;
	tu_tensor(&lab_pad, 1, (int64_t[]){ 3 }, (float[]){ 2, -100, 3 });
	c = make_class(ln_nll_loss_new, LN_REDUCE_MEAN, 0, &wt, &pad);
	assert_close(forward(c, &z, &lab_pad), -(2 * 2 + 3 * 0.5) / 5, 1e-12);
	backward(c, &z, &lab_pad);
	const float gw[] = { 0, -2.0f / 5, 0, 0, 0, 0, 0, 0, -3.0f / 5 };
	for (int k = 0; k < 9; k++)
		assert_close(ln_tensor_data(&c->grad_input)[k], gw[k], 1e-8);
	ln_loss_release(c);

	release(&z, &lab, &lab_all);
	release(&wt, &rows, &none_lab);
	ln_tensor_release(&lab_pad);
}

/* Every option, alone and together, in every reduction, with both target
 * forms where they apply: the gradient agrees with finite differences. */
static void test_cross_entropy_options_gradcheck(void **state)
{
	ln_tensor z, lab, pr, wt;
	tu_tensor_uniform(&z, 2, (int64_t[]){ 6, 4 }, -3.0f, 3.0f);
	tu_tensor(&lab, 1, (int64_t[]){ 6 }, (float[]){ 1, 4, 2, 2, 3, 2 });
	prob_rows(&pr, 6, 4, 1.0);
	tu_tensor(&wt, 1, (int64_t[]){ 4 }, (float[]){ 0.5f, 2, 1, 3 });
	const double epss[] = { 0, 0.25, 1 };
	const int64_t ignore = 2;
	for (int r = 0; r < NRED; r++)
		for (int e = 0; e < 3; e++)
			for (int wi = 0; wi < 2; wi++)
				for (int ig = 0; ig < 2; ig++) {
					const ln_tensor *w = wi ? &wt : NULL;
					const int64_t *ign = ig ? &ignore : NULL;
					ln_loss *c = make_class(ln_cross_entropy_loss_new, reductions[r], epss[e], w,
					                        ign);
					gradcheck(c, &z, &lab, "labels");
					if (!ig)
						gradcheck(c, &z, &pr, "probability rows");
					ln_loss_release(c);
					if (e == 0) {
						c = make_class(ln_nll_loss_new, reductions[r], 0, w, ign);
						gradcheck(c, &z, &lab, "labels");
						if (!ig)
							gradcheck(c, &z, &pr, "probability rows");
						ln_loss_release(c);
					}
				}
	/* sequences: logits {N,T,C}, labels {N,T}, one token ignored */
	ln_tensor z3, lab3;
	tu_tensor_uniform(&z3, 3, (int64_t[]){ 2, 3, 4 }, -3.0f, 3.0f);
	tu_tensor(&lab3, 2, (int64_t[]){ 2, 3 }, (float[]){ 1, 2, 4, 3, 2, 1 });
	for (int r = 0; r < NRED; r++) {
		ln_loss *c = make_class(ln_cross_entropy_loss_new, reductions[r], 0.25, &wt, &ignore);
		gradcheck(c, &z3, &lab3, "{N,T,C} logits");
		ln_loss_release(c);
	}
	release(&z, &lab, &pr);
	release(&wt, &z3, &lab3);
}

/* The options' errors: at construction, and what only the input shows. */
static void test_cross_entropy_options_errors(void **state)
{
	ln_class_loss_options o = { 0 };
	ln_loss *c = NULL;
	ln_error err;
	const struct { double eps; const char *msg; } bad_eps[] = {
		{ 1.5, "label_smoothing must be in [0,1], got 1.5" },
		{ -0.1, "label_smoothing must be in [0,1], got -0.1" },
		{ NAN, "label_smoothing must be in [0,1], got nan" },
		{ INFINITY, "label_smoothing must be in [0,1], got inf" },
	};
	for (size_t i = 0; i < sizeof bad_eps / sizeof bad_eps[0]; i++) {
		o.label_smoothing = bad_eps[i].eps;
		assert_int_equal(ln_cross_entropy_loss_new_ex(&c, LN_REDUCE_MEAN, &o, &err), LN_ERANGE);
		assert_string_equal(err.msg, bad_eps[i].msg);
		assert_null(c);
	}
	o.label_smoothing = 0.1;
	assert_int_equal(ln_nll_loss_new_ex(&c, LN_REDUCE_MEAN, &o, &err), LN_EARG);
	assert_string_equal(err.msg, "label_smoothing is an option of CrossEntropyLoss only");
	o.label_smoothing = 0;
	ln_tensor w2, wnan, wneg, winf;
	tu_tensor(&w2, 2, (int64_t[]){ 2, 2 }, NULL);
	tu_tensor(&wnan, 1, (int64_t[]){ 3 }, (float[]){ 1, NAN, 1 });
	tu_tensor(&winf, 1, (int64_t[]){ 3 }, (float[]){ 1, 1, -INFINITY });
	tu_tensor(&wneg, 1, (int64_t[]){ 3 }, (float[]){ 1, -0.5f, 1 });
	const struct { const ln_tensor *w; ln_status st; const char *msg; } bad_w[] = {
		{ &w2, LN_ESHAPE, "weight must be a 1-D tensor of one weight per class, got shape {2,2}" },
		{ &wnan, LN_ENAN, "weight has NaN at position 2" },
		{ &winf, LN_ENAN, "weight has -inf at position 3" },
		{ &wneg, LN_ERANGE, "weight -0.5 at position 2 is negative; class weights must be >= 0" },
	};
	ln_alloc_stats s0 = stats_now();
	for (size_t i = 0; i < sizeof bad_w / sizeof bad_w[0]; i++) {
		o.weight = bad_w[i].w;
		assert_int_equal(ln_cross_entropy_loss_new_ex(&c, LN_REDUCE_MEAN, &o, &err), bad_w[i].st);
		assert_string_equal(err.msg, bad_w[i].msg);
		assert_null(c);
		assert_int_equal(ln_nll_loss_new_ex(&c, LN_REDUCE_SUM, &o, &err), bad_w[i].st);
		assert_null(c);
	}
	assert_int_equal(stats_now().bytes_live, s0.bytes_live);

	/* a weight per class of the input; ignore_index needs labels */
	ln_tensor z, lab, pr, w3;
	tu_tensor_uniform(&z, 2, (int64_t[]){ 2, 4 }, -1, 1);
	labels(&lab, 2, 4);
	prob_rows(&pr, 2, 4, 1.0);
	tu_tensor(&w3, 1, (int64_t[]){ 3 }, (float[]){ 1, 1, 1 });
	c = make_class(ln_cross_entropy_loss_new, LN_REDUCE_MEAN, 0, &w3, NULL);
	expect_error(c, &z, &lab, LN_ESHAPE,
	             "CrossEntropyLoss: weight has 3 entries, but the input has 4 classes");
	ln_loss_release(c);
	int64_t ignore = -100;
	c = make_class(ln_nll_loss_new, LN_REDUCE_MEAN, 0, NULL, &ignore);
	expect_error(c, &z, &pr, LN_EARG,
	             "NLLLoss: ignore_index needs class labels as the target, got probability rows "
	             "of shape {2,4}");
	/* a label equal to ignore_index passes; any other outside 1..C does not */
	ln_tensor_data(&lab)[1] = -100;
	forward(c, &z, &lab);
	ln_tensor_data(&lab)[1] = -99;
	expect_error(c, &z, &lab, LN_ERANGE, "NLLLoss: label -99 at position 2 is out of range 1..4");
	ln_loss_release(c);
	release(&w2, &wnan, &wneg);
	release(&winf, &z, &lab);
	release(&pr, &w3, NULL);
}

/* ==== stability ======================================================================= */

static void test_cross_entropy_extreme_logits(void **state)
{
	/* row 1 is confidently right, row 2 confidently wrong, row 3 a tie */
	ln_tensor z, lab;
	tu_tensor(&z, 2, (int64_t[]){ 3, 3 },
	          (float[]){ 1000, -1000, 0, -1000, 1000, 0, 1000, 1000, -1000 });
	tu_tensor(&lab, 1, (int64_t[]){ 3 }, (float[]){ 1, 1, 2 });
	for (int r = 0; r < NRED; r++) {
		ln_loss *c = make(ln_cross_entropy_loss_new, reductions[r]);
		double s = reductions[r] == LN_REDUCE_MEAN ? 1.0 / 3 : 1.0;
		double l = forward(c, &z, &lab);
		assert_true(isfinite(l));
		assert_close(l, s * (0 + 2000 + log(2.0)), 1e-9 * l);
		backward(c, &z, &lab);
		const float want[] = { 0, 0, 0, -1, 1, 0, 0.5f, -0.5f, 0 };
		for (int k = 0; k < 9; k++) {
			float g = ln_tensor_data(&c->grad_input)[k];
			assert_true(isfinite(g));
			assert_close(g, (float)(s * want[k]), 1e-7);
		}
		ln_loss_release(c);
	}
	/* the same through OutputLoss(softmax, cross_entropy) */
	ln_loss *c = make_ol(LN_ACT_SOFTMAX, LN_LOSS_CROSS_ENTROPY, LN_REDUCE_MEAN);
	assert_close(forward(c, &z, &lab), (2000 + log(2.0)) / 3, 1e-9 * 700);
	assert_close(ln_tensor_data(&c->output)[0], 1.0f, 0);
	assert_close(ln_tensor_data(&c->output)[6], 0.5f, 1e-7);
	ln_loss_release(c);
	release(&z, &lab, NULL);
}

static void test_bce_extreme(void **state)
{
	ln_tensor z, y, x, t;
	tu_tensor(&z, 1, (int64_t[]){ 4 }, (float[]){ 100, -100, 100, -100 });
	tu_tensor(&y, 1, (int64_t[]){ 4 }, (float[]){ 1, 0, 0, 1 });
	ln_loss *c = make(ln_bce_logits_loss_new, LN_REDUCE_MEAN);
	double l = forward(c, &z, &y);
	assert_true(isfinite(l));
	assert_close(l, (0 + 0 + 100 + 100) / 4.0, 1e-9);
	backward(c, &z, &y);
	const float want[] = { 0, 0, 0.25f, -0.25f };
	for (int k = 0; k < 4; k++)
		assert_close(ln_tensor_data(&c->grad_input)[k], want[k], 1e-8);
	ln_loss_release(c);
	/* OutputLoss(sigmoid, bce): the same from z, y_hat saturates to 0/1 */
	c = make_ol(LN_ACT_SIGMOID, LN_LOSS_BCE, LN_REDUCE_MEAN);
	assert_close(forward(c, &z, &y), 50.0, 1e-9);
	assert_close(ln_tensor_data(&c->output)[0], 1.0f, 0);
	assert_close(ln_tensor_data(&c->output)[1], 0.0f, 1e-30);
	ln_loss_release(c);
	/* BCELoss at exactly 0 and 1: each log clamped at -100 */
	tu_tensor(&x, 1, (int64_t[]){ 2 }, (float[]){ 0, 1 });
	tu_tensor(&t, 1, (int64_t[]){ 2 }, (float[]){ 1, 0 });
	c = make(ln_bce_loss_new, LN_REDUCE_MEAN);
	assert_close(forward(c, &x, &t), 100.0, 1e-12);
	backward(c, &x, &t);
	assert_true(isfinite(ln_tensor_data(&c->grad_input)[0]));
	assert_true(ln_tensor_data(&c->grad_input)[0] < 0 && ln_tensor_data(&c->grad_input)[1] > 0);
	/* and a perfect prediction costs nothing */
	assert_close(forward(c, &x, &x), 0.0, 0);
	ln_loss_release(c);
	release(&z, &y, NULL);
	release(&x, &t, NULL);
}

/* ==== output/loss pairings ========================================================== */

static bool defined_pairing(ln_activation a, ln_loss_kind k)
{
	if (k == LN_LOSS_MSE)
		return true;
	if (k == LN_LOSS_BCE)
		return a == LN_ACT_SIGMOID || a == LN_ACT_SOFTMAX;
	return a == LN_ACT_SOFTMAX;
}

/* Every defined pairing stays finite at logits of +-1000, whatever the target. */
static void test_output_loss_extreme_all(void **state)
{
	ln_tensor z, y, lab;
	tu_tensor(&z, 2, (int64_t[]){ 2, 3 }, (float[]){ 1000, -1000, 0, -1000, -1000, 1000 });
	tu_tensor(&y, 2, (int64_t[]){ 2, 3 }, (float[]){ 0, 1, 0, 1, 0, 0 });
	tu_tensor(&lab, 1, (int64_t[]){ 2 }, (float[]){ 2, 1 });
	for (int a = 0; a < LN_ACT_COUNT; a++)
		for (int k = 0; k < LN_LOSS_KIND_COUNT; k++) {
			if (!defined_pairing(a, k))
				continue;
			ln_loss *c = make_ol(a, k, LN_REDUCE_MEAN);
			const ln_tensor *t = k == LN_LOSS_CROSS_ENTROPY ? &lab : &y;
			char d[128];
			ln_loss_describe(c, d, sizeof d);
			double l = forward(c, &z, t);
			if (!isfinite(l))
				fail_msg("%s: loss %g", d, l);
			backward(c, &z, t);
			for (int i = 0; i < 6; i++)
				if (!isfinite(ln_tensor_data(&c->grad_input)[i]) ||
				    !isfinite(ln_tensor_data(&c->output)[i]))
					fail_msg("%s: element %d not finite", d, i);
			ln_loss_release(c);
		}
	release(&z, &y, &lab);
}

static void test_output_loss_gradcheck_all(void **state)
{
	int defined = 0;
	for (int a = 0; a < LN_ACT_COUNT; a++)
		for (int k = 0; k < LN_LOSS_KIND_COUNT; k++) {
			if (!defined_pairing(a, k))
				continue;
			defined++;
			for (int r = 0; r < NRED; r++) {
				ln_tensor z, y, lab = LN_TENSOR_EMPTY;
				tu_tensor_uniform(&z, 2, (int64_t[]){ 5, 4 }, -2.5f, 2.5f);
				away_from_zero(&z);
				ln_loss *c = make_ol(a, k, reductions[r]);
				if (k == LN_LOSS_CROSS_ENTROPY) {
					labels(&lab, 5, 4);
					one_hot(&y, &lab, 4);
					gradcheck(c, &z, &lab, "labels");
					gradcheck(c, &z, &y, "one-hot");
				} else {
					tu_tensor_uniform(&y, 2, (int64_t[]){ 5, 4 }, k == LN_LOSS_BCE ? 0.0f : -1.0f,
					                  1.0f);
					gradcheck(c, &z, &y, "");
				}
				/* y_hat is kept in c->output, shaped like z */
				forward(c, &z, k == LN_LOSS_CROSS_ENTROPY ? &lab : &y);
				assert_true(ln_tensor_same_shape(&c->output, &z));
				ln_loss_release(c);
				release(&z, &y, &lab);
			}
		}
	assert_int_equal(defined, 8);
}

/* y_hat = act(z), computed naively here. */
static double naive_act(ln_activation a, const float *zrow, int64_t c, int64_t j)
{
	double z = zrow[j];
	switch (a) {
	case LN_ACT_SIGMOID: return 1.0 / (1.0 + exp(-z));
	case LN_ACT_TANH: return tanh(z);
	case LN_ACT_RELU: return z > 0 ? z : 0;
	case LN_ACT_SOFTMAX: {
		double s = 0;
		for (int64_t i = 0; i < c; i++)
			s += exp(zrow[i]);
		return exp(z) / s;
	}
	default: return z;
	}
}

/* max |N * dL/dz - (y_hat - y)| for OutputLoss(a, k), mean reduction; also
 * checks c->output against a naive activation. */
static double canonical_gap(ln_activation a, ln_loss_kind k, bool use_labels)
{
	const int64_t n = 6, cl = 4;
	ln_tensor z, y, lab = LN_TENSOR_EMPTY;
	tu_tensor_uniform(&z, 2, (int64_t[]){ n, cl }, -3.0f, 3.0f);
	away_from_zero(&z);
	if (k == LN_LOSS_CROSS_ENTROPY) {
		labels(&lab, n, cl);
		one_hot(&y, &lab, cl);
	} else {
		tu_tensor_uniform(&y, 2, (int64_t[]){ n, cl }, 0.0f, 1.0f);
	}
	const ln_tensor *target = use_labels ? &lab : &y;
	ln_loss *c = make_ol(a, k, LN_REDUCE_MEAN);
	forward(c, &z, target);
	backward(c, &z, target);
	const float *yh = ln_tensor_data(&c->output), *g = ln_tensor_data(&c->grad_input);
	const float *yd = ln_tensor_data(&y), *zd = ln_tensor_data(&z);
	double gap = 0;
	for (int64_t i = 0; i < n * cl; i++) {
		assert_close(yh[i], naive_act(a, zd + (i / cl) * cl, cl, i % cl), 1e-6);
		gap = fmax(gap, fabs((double)n * g[i] - ((double)yh[i] - yd[i])));
	}
	ln_loss_release(c);
	release(&z, &y, &lab);
	return gap;
}

static void test_output_loss_canonical(void **state)
{
	assert_true(canonical_gap(LN_ACT_IDENTITY, LN_LOSS_MSE, false) <= 1e-6);
	assert_true(canonical_gap(LN_ACT_SIGMOID, LN_LOSS_BCE, false) <= 1e-6);
	assert_true(canonical_gap(LN_ACT_SOFTMAX, LN_LOSS_CROSS_ENTROPY, false) <= 1e-6);
	assert_true(canonical_gap(LN_ACT_SOFTMAX, LN_LOSS_CROSS_ENTROPY, true) <= 1e-6);
	/* the chain rule of a non-canonical pairing is clearly something else */
	assert_true(canonical_gap(LN_ACT_SIGMOID, LN_LOSS_MSE, false) > 0.05);
	assert_true(canonical_gap(LN_ACT_SOFTMAX, LN_LOSS_MSE, false) > 0.05);

	for (int a = 0; a < LN_ACT_COUNT; a++)
		for (int k = 0; k < LN_LOSS_KIND_COUNT; k++) {
			if (!defined_pairing(a, k))
				continue;
			ln_loss *c = make_ol(a, k, LN_REDUCE_MEAN);
			bool want = (a == LN_ACT_IDENTITY && k == LN_LOSS_MSE) ||
			            (a == LN_ACT_SIGMOID && k == LN_LOSS_BCE) ||
			            (a == LN_ACT_SOFTMAX && k == LN_LOSS_CROSS_ENTROPY);
			assert_int_equal(ln_output_loss_is_canonical(c), want);
			assert_int_equal(ln_output_loss_activation(c), a);
			assert_int_equal(ln_output_loss_kind(c), k);
			ln_loss_release(c);
		}
	ln_loss *c = make(ln_cross_entropy_loss_new, LN_REDUCE_MEAN);
	assert_false(ln_output_loss_is_canonical(c));
	ln_loss_release(c);
}

/* The fused canonical losses equal the plain losses on the same data. */
static void test_output_loss_matches_plain_losses(void **state)
{
	ln_tensor z, y, lab, p = LN_TENSOR_EMPTY;
	tu_tensor_uniform(&z, 2, (int64_t[]){ 5, 3 }, -3.0f, 3.0f);
	tu_tensor_uniform(&y, 2, (int64_t[]){ 5, 3 }, 0.0f, 1.0f);
	labels(&lab, 5, 3);
	struct { ln_activation a; ln_loss_kind k; loss_ctor plain; const ln_tensor *t; } cases[] = {
		{ LN_ACT_IDENTITY, LN_LOSS_MSE, ln_mse_loss_new, &y },
		{ LN_ACT_SIGMOID, LN_LOSS_BCE, ln_bce_logits_loss_new, &y },
		{ LN_ACT_SOFTMAX, LN_LOSS_CROSS_ENTROPY, ln_cross_entropy_loss_new, &lab },
	};
	for (int i = 0; i < 3; i++)
		for (int r = 0; r < NRED; r++) {
			ln_loss *o = make_ol(cases[i].a, cases[i].k, reductions[r]);
			ln_loss *c = make(cases[i].plain, reductions[r]);
			double lo = forward(o, &z, cases[i].t), lc = forward(c, &z, cases[i].t);
			assert_close(lo, lc, 1e-12 * fabs(lc));
			backward(o, &z, cases[i].t);
			backward(c, &z, cases[i].t);
			assert_true(ln_tensor_allclose(&o->grad_input, &c->grad_input, 0, 0));
			ln_loss_release(o);
			ln_loss_release(c);
		}
	/* (sigmoid, mse) = MSELoss(sigmoid(z)) and (softmax, bce) = BCELoss(softmax(z)) */
	ln_loss *o = make_ol(LN_ACT_SIGMOID, LN_LOSS_MSE, LN_REDUCE_MEAN);
	ln_loss *c = make(ln_mse_loss_new, LN_REDUCE_MEAN);
	double lo = forward(o, &z, &y);
	ln_tensor_clone(&p, &o->output, NULL);
	assert_close(lo, forward(c, &p, &y), 1e-6 * lo);
	ln_loss_release(o);
	ln_loss_release(c);
	ln_tensor_release(&p);
	o = make_ol(LN_ACT_SOFTMAX, LN_LOSS_BCE, LN_REDUCE_MEAN);
	c = make(ln_bce_loss_new, LN_REDUCE_MEAN);
	lo = forward(o, &z, &y);
	ln_tensor_clone(&p, &o->output, NULL);
	assert_close(lo, forward(c, &p, &y), 1e-6 * lo);
	ln_loss_release(o);
	ln_loss_release(c);
	release(&z, &y, &lab);
	ln_tensor_release(&p);
}

static void test_output_loss_undefined(void **state)
{
	static const struct { ln_activation a; ln_loss_kind k; const char *msg; } cases[] = {
		{ LN_ACT_IDENTITY, LN_LOSS_BCE,
		  "bce needs outputs in (0,1); identity outputs are unbounded (use sigmoid, "
		  "or BCEWithLogitsLoss" },
		{ LN_ACT_TANH, LN_LOSS_BCE, "bce needs outputs in (0,1); tanh outputs lie in (-1,1)" },
		{ LN_ACT_RELU, LN_LOSS_BCE, "bce needs outputs in (0,1); relu outputs lie in [0,inf)" },
		{ LN_ACT_IDENTITY, LN_LOSS_CROSS_ENTROPY,
		  "cross_entropy needs a probability distribution over classes; only softmax "
		  "produces one (identity" },
		{ LN_ACT_SIGMOID, LN_LOSS_CROSS_ENTROPY, "only softmax produces one (sigmoid outputs" },
		{ LN_ACT_TANH, LN_LOSS_CROSS_ENTROPY, "only softmax produces one (tanh" },
		{ LN_ACT_RELU, LN_LOSS_CROSS_ENTROPY, "only softmax produces one (relu" },
	};
	int n = 0;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		ln_loss *c = (ln_loss *)&n;  /* must be overwritten with NULL */
		ln_error err;
		ln_status st = ln_output_loss_new(&c, cases[i].a, cases[i].k, LN_REDUCE_MEAN, &err);
		assert_int_equal(st, LN_EARG);
		assert_null(c);
		if (!strstr(err.msg, cases[i].msg))
			fail_msg("(%s, %s): got \"%s\"", ln_activation_name(cases[i].a),
			         ln_loss_kind_name(cases[i].k), err.msg);
		assert_false(defined_pairing(cases[i].a, cases[i].k));
		n++;
	}
	/* with the 8 defined ones, all 15 combinations are covered */
	assert_int_equal(n + 8, LN_ACT_COUNT * LN_LOSS_KIND_COUNT);
	/* NULL err is allowed */
	ln_loss *c;
	assert_int_equal(ln_output_loss_new(&c, LN_ACT_RELU, LN_LOSS_BCE, LN_REDUCE_MEAN, NULL), LN_EARG);
}

static void test_names(void **state)
{
	char buf[128];
	for (int a = 0; a < LN_ACT_COUNT; a++)
		assert_int_equal(ln_activation_from_name(ln_activation_name(a)), a);
	for (int k = 0; k < LN_LOSS_KIND_COUNT; k++)
		assert_int_equal(ln_loss_kind_from_name(ln_loss_kind_name(k)), k);
	assert_int_equal(ln_activation_from_name("softplus"), -1);
	assert_int_equal(ln_activation_from_name(NULL), -1);
	assert_int_equal(ln_loss_kind_from_name("Cross_Entropy"), -1);
	assert_int_equal(ln_activation_from_name("softmax"), LN_ACT_SOFTMAX);
	assert_int_equal(ln_loss_kind_from_name("cross_entropy"), LN_LOSS_CROSS_ENTROPY);

	int w = ln_activation_names(buf, sizeof buf);
	assert_string_equal(buf, "identity, sigmoid, tanh, relu, softmax");
	assert_int_equal(w, (int)strlen(buf));
	ln_loss_kind_names(buf, sizeof buf);
	assert_string_equal(buf, "mse, bce, cross_entropy");
	/* truncation is reported as snprintf does */
	assert_int_equal(ln_activation_names(buf, 5), w);
	assert_string_equal(buf, "iden");

	ln_loss *c = NULL;
	ln_error err;
	assert_int_equal(ln_output_loss_new_by_name(&c, "softplus", "mse", LN_REDUCE_MEAN, &err), LN_EARG);
	assert_string_equal(err.msg, "unknown activation \"softplus\" (expected one of identity, "
	                             "sigmoid, tanh, relu, softmax)");
	assert_int_equal(ln_output_loss_new_by_name(&c, "softmax", "nll", LN_REDUCE_MEAN, &err), LN_EARG);
	assert_string_equal(err.msg, "unknown loss \"nll\" (expected one of mse, bce, cross_entropy)");
	assert_null(c);
	assert_int_equal(ln_output_loss_new(&c, (ln_activation)7, LN_LOSS_MSE, LN_REDUCE_MEAN, &err), LN_EARG);
	assert_non_null(strstr(err.msg, "unknown activation 7 (valid: identity,"));
	assert_int_equal(ln_output_loss_new(&c, LN_ACT_RELU, (ln_loss_kind)-1, LN_REDUCE_MEAN, &err), LN_EARG);
	assert_non_null(strstr(err.msg, "unknown loss -1 (valid: mse,"));
	assert_int_equal(ln_output_loss_new_by_name(&c, "relu", "bce", LN_REDUCE_MEAN, &err), LN_EARG);
	assert_non_null(strstr(err.msg, "relu outputs lie in [0,inf)"));
	assert_int_equal(ln_output_loss_new_by_name(&c, "softmax", "cross_entropy", LN_REDUCE_SUM, &err), LN_OK);
	assert_true(ln_output_loss_is_canonical(c));
	assert_int_equal(c->reduction, LN_REDUCE_SUM);
	ln_loss_release(c);
	/* an unknown reduction */
	assert_int_equal(ln_mse_loss_new(&c, (ln_reduction)5, &err), LN_EARG);
	assert_non_null(strstr(err.msg, "unknown reduction 5"));
	assert_null(c);
}

static void test_describe(void **state)
{
	static const struct { loss_ctor f; const char *mean, *sum; } plain[] = {
		{ ln_mse_loss_new, "MSELoss()", "MSELoss(reduction=sum)" },
		{ ln_bce_loss_new, "BCELoss()", "BCELoss(reduction=sum)" },
		{ ln_bce_logits_loss_new, "BCEWithLogitsLoss()", "BCEWithLogitsLoss(reduction=sum)" },
		{ ln_cross_entropy_loss_new, "CrossEntropyLoss()", "CrossEntropyLoss(reduction=sum)" },
		{ ln_nll_loss_new, "NLLLoss()", "NLLLoss(reduction=sum)" },
	};
	char buf[128];
	for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++) {
		ln_loss *c = make(plain[i].f, LN_REDUCE_MEAN);
		int w = ln_loss_describe(c, buf, sizeof buf);
		assert_string_equal(buf, plain[i].mean);
		assert_int_equal(w, (int)strlen(plain[i].mean));
		ln_loss_release(c);
		c = make(plain[i].f, LN_REDUCE_SUM);
		ln_loss_describe(c, buf, sizeof buf);
		assert_string_equal(buf, plain[i].sum);
		ln_loss_release(c);
	}
	ln_loss *c = make_ol(LN_ACT_SOFTMAX, LN_LOSS_CROSS_ENTROPY, LN_REDUCE_MEAN);
	ln_loss_describe(c, buf, sizeof buf);
	assert_string_equal(buf, "OutputLoss(softmax, cross_entropy) [canonical]");
	ln_loss_release(c);
	c = make_ol(LN_ACT_SIGMOID, LN_LOSS_MSE, LN_REDUCE_SUM);
	ln_loss_describe(c, buf, sizeof buf);
	assert_string_equal(buf, "OutputLoss(sigmoid, mse, reduction=sum)");
	ln_loss_release(c);
	c = make_ol(LN_ACT_IDENTITY, LN_LOSS_MSE, LN_REDUCE_SUM);
	ln_loss_describe(c, buf, sizeof buf);
	assert_string_equal(buf, "OutputLoss(identity, mse, reduction=sum) [canonical]");
	ln_loss_release(c);
}

/* ==== errors ============================================================================= */

static void test_errors_nan_input(void **state)
{
	ln_tensor z, lab, x, y, x3, y3;
	tu_tensor_uniform(&z, 2, (int64_t[]){ 4, 3 }, -1, 1);
	labels(&lab, 4, 3);
	ln_tensor_data(&z)[2 * 3 + 1] = NAN;
	ln_loss *c = make(ln_cross_entropy_loss_new, LN_REDUCE_MEAN);
	expect_error(c, &z, &lab, LN_ENAN, "CrossEntropyLoss: input has NaN at row 3, column 2");
	ln_loss_release(c);
	c = make_ol(LN_ACT_SOFTMAX, LN_LOSS_CROSS_ENTROPY, LN_REDUCE_MEAN);
	expect_error(c, &z, &lab, LN_ENAN,
	             "OutputLoss(softmax, cross_entropy): input has NaN at row 3, column 2");
	ln_loss_release(c);

	tu_tensor_uniform(&x, 1, (int64_t[]){ 5 }, -1, 1);
	tu_tensor_uniform(&y, 1, (int64_t[]){ 5 }, -1, 1);
	ln_tensor_data(&x)[1] = INFINITY;
	c = make(ln_mse_loss_new, LN_REDUCE_MEAN);
	expect_error(c, &x, &y, LN_ENAN, "MSELoss: input has inf at position 2");
	ln_tensor_data(&x)[1] = 0.5f;
	ln_tensor_data(&y)[4] = NAN;
	expect_error(c, &x, &y, LN_ENAN, "MSELoss: target has NaN at position 5");

	tu_tensor_uniform(&x3, 3, (int64_t[]){ 2, 3, 2 }, 0.2f, 0.8f);
	tu_tensor_uniform(&y3, 3, (int64_t[]){ 2, 3, 2 }, 0.0f, 1.0f);
	ln_tensor_data(&x3)[1 * 6 + 2 * 2 + 0] = -INFINITY;
	expect_error(c, &x3, &y3, LN_ENAN, "MSELoss: input has -inf at index {2,3,1}");
	ln_loss_release(c);
	c = make(ln_bce_loss_new, LN_REDUCE_SUM);
	expect_error(c, &x3, &y3, LN_ENAN, "BCELoss: input has -inf at index {2,3,1}");
	ln_loss_release(c);
	release(&z, &lab, NULL);
	release(&x, &y, NULL);
	release(&x3, &y3, NULL);
}

static void test_errors_labels(void **state)
{
	loss_ctor ctors[] = { ln_cross_entropy_loss_new, ln_nll_loss_new };
	const char *names[] = { "CrossEntropyLoss", "NLLLoss" };
	ln_tensor z, lab, short_lab, bad_shape, neg, z3, z1;
	char msg[160];
	tu_tensor_uniform(&z, 2, (int64_t[]){ 64, 10 }, -1, 1);
	labels(&lab, 64, 10);
	labels(&short_lab, 63, 10);
	tu_tensor(&bad_shape, 2, (int64_t[]){ 64, 9 }, NULL);
	prob_rows(&neg, 64, 10, 1.0);
	ln_tensor_data(&neg)[1 * 10 + 2] = -0.5f;
	tu_tensor_uniform(&z3, 3, (int64_t[]){ 2, 3, 4 }, -1, 1);
	tu_tensor_uniform(&z1, 1, (int64_t[]){ 5 }, -1, 1);
	for (int k = 0; k < 3; k++) {
		ln_loss *c = k < 2 ? make(ctors[k], LN_REDUCE_MEAN)
		                   : make_ol(LN_ACT_SOFTMAX, LN_LOSS_CROSS_ENTROPY, LN_REDUCE_MEAN);
		const char *who = k < 2 ? names[k] : "OutputLoss(softmax, cross_entropy)";
		float *l = ln_tensor_data(&lab);
		float saved = l[4];

		l[4] = 11;
		snprintf(msg, sizeof msg, "%s: label 11 at position 5 is out of range 1..10", who);
		expect_error(c, &z, &lab, LN_ERANGE, msg);
		l[4] = 0;
		snprintf(msg, sizeof msg, "%s: label 0 at position 5 is out of range 1..10", who);
		expect_error(c, &z, &lab, LN_ERANGE, msg);
		l[4] = -3;
		snprintf(msg, sizeof msg, "%s: label -3 at position 5 is out of range 1..10", who);
		expect_error(c, &z, &lab, LN_ERANGE, msg);
		l[4] = saved;

		saved = l[0];
		l[0] = 2.5f;
		snprintf(msg, sizeof msg, "%s: label 2.5 at position 1 is not an integer", who);
		expect_error(c, &z, &lab, LN_ERANGE, msg);
		l[0] = NAN;
		snprintf(msg, sizeof msg, "%s: target has NaN at position 1", who);
		expect_error(c, &z, &lab, LN_ENAN, msg);
		l[0] = saved;

		snprintf(msg, sizeof msg, "%s: expected 64 labels, got 63", who);
		expect_error(c, &z, &short_lab, LN_ESHAPE, msg);
		snprintf(msg, sizeof msg,
		         "%s: expected target of shape {64,10} or 64 class labels, got {64,9}", who);
		expect_error(c, &z, &bad_shape, LN_ESHAPE, msg);
		snprintf(msg, sizeof msg,
		         "%s: target -0.5 at row 2, column 3 is negative; probability rows must be "
		         "non-negative", who);
		expect_error(c, &z, &neg, LN_ERANGE, msg);
		/* the two losses also take a sequence's logits {N,T,C}; the pairing
		 * only {N,C} */
		if (k < 2)
			snprintf(msg, sizeof msg, "%s: expected labels of shape {2,3} or a target of "
			         "shape {2,3,4}, got {64}", who);
		else
			snprintf(msg, sizeof msg, "%s: expected input of shape {N,C}, got {2,3,4}", who);
		expect_error(c, &z3, &lab, LN_ESHAPE, msg);
		snprintf(msg, sizeof msg, "%s: expected input of shape {N,C}%s, got {5}", who,
		         k < 2 ? " or {N,T,C}" : "");
		expect_error(c, &z1, &lab, LN_ESHAPE, msg);

		/* the tensors were left as they were: the valid call works */
		forward(c, &z, &lab);
		ln_loss_release(c);
	}
	release(&z, &lab, &short_lab);
	release(&bad_shape, &neg, &z3);
	ln_tensor_release(&z1);
}

static void test_errors_ranges_and_shapes(void **state)
{
	ln_tensor x, y, y2, z1;
	tu_tensor_uniform(&x, 2, (int64_t[]){ 4, 3 }, 0.2f, 0.8f);
	tu_tensor_uniform(&y, 2, (int64_t[]){ 4, 3 }, 0.0f, 1.0f);
	tu_tensor_uniform(&y2, 2, (int64_t[]){ 4, 2 }, 0.0f, 1.0f);
	tu_tensor_uniform(&z1, 1, (int64_t[]){ 4 }, -1, 1);
	float *xd = ln_tensor_data(&x), *yd = ln_tensor_data(&y);

	ln_loss *c = make(ln_bce_loss_new, LN_REDUCE_MEAN);
	xd[3] = 1.5f;
	expect_error(c, &x, &y, LN_ERANGE, "BCELoss: input 1.5 at row 2, column 1 is outside [0,1]");
	xd[3] = -0.25f;
	expect_error(c, &x, &y, LN_ERANGE, "BCELoss: input -0.25 at row 2, column 1 is outside [0,1]");
	xd[3] = 0.5f;
	yd[11] = 2;
	expect_error(c, &x, &y, LN_ERANGE, "BCELoss: target 2 at row 4, column 3 is outside [0,1]");
	expect_error(c, &x, &y2, LN_ESHAPE, "BCELoss: expected target of shape {4,3}, got {4,2}");
	ln_loss_release(c);

	c = make(ln_bce_logits_loss_new, LN_REDUCE_MEAN);
	expect_error(c, &x, &y, LN_ERANGE, "BCEWithLogitsLoss: target 2 at row 4, column 3 is outside [0,1]");
	yd[11] = NAN;
	expect_error(c, &x, &y, LN_ENAN, "BCEWithLogitsLoss: target has NaN at row 4, column 3");
	yd[11] = 1;
	xd[0] = 50;  /* logits may be anything */
	forward(c, &x, &y);
	expect_error(c, &x, &y2, LN_ESHAPE, "BCEWithLogitsLoss: expected target of shape {4,3}, got {4,2}");
	ln_loss_release(c);

	c = make_ol(LN_ACT_SIGMOID, LN_LOSS_BCE, LN_REDUCE_MEAN);
	yd[5] = -1;
	expect_error(c, &x, &y, LN_ERANGE, "OutputLoss(sigmoid, bce): target -1 at row 2, column 3 is outside [0,1]");
	yd[5] = 0;
	ln_loss_release(c);
	c = make_ol(LN_ACT_SOFTMAX, LN_LOSS_BCE, LN_REDUCE_MEAN);
	yd[5] = 1.25f;
	expect_error(c, &x, &y, LN_ERANGE, "OutputLoss(softmax, bce): target 1.25 at row 2, column 3 is outside [0,1]");
	yd[5] = 0;
	ln_loss_release(c);

	c = make(ln_mse_loss_new, LN_REDUCE_MEAN);
	expect_error(c, &x, &y2, LN_ESHAPE, "MSELoss: expected target of shape {4,3}, got {4,2}");
	ln_loss_release(c);
	c = make_ol(LN_ACT_TANH, LN_LOSS_MSE, LN_REDUCE_MEAN);
	expect_error(c, &x, &y2, LN_ESHAPE, "OutputLoss(tanh, mse): expected target of shape {4,3}, got {4,2}");
	ln_loss_release(c);
	c = make_ol(LN_ACT_SOFTMAX, LN_LOSS_MSE, LN_REDUCE_MEAN);
	expect_error(c, &z1, &z1, LN_ESHAPE, "OutputLoss(softmax, mse): expected input of shape {N,C}, got {4}");
	ln_loss_release(c);
	release(&x, &y, &y2);
	ln_tensor_release(&z1);
}

static void test_errors_empty_and_noncontiguous(void **state)
{
	ln_tensor x, y, view = LN_TENSOR_EMPTY, empty = LN_TENSOR_EMPTY;
	ln_error err;
	tu_tensor_uniform(&x, 2, (int64_t[]){ 4, 3 }, -1, 1);
	tu_tensor_uniform(&y, 2, (int64_t[]){ 4, 2 }, -1, 1);
	assert_int_equal(ln_tensor_narrow(&view, &x, 1, 0, 2, &err), LN_OK);
	assert_false(ln_tensor_is_contiguous(&view));
	ln_loss *c = make(ln_mse_loss_new, LN_REDUCE_MEAN);
	expect_error(c, &empty, &y, LN_EARG, "MSELoss: input is empty");
	expect_error(c, &y, &empty, LN_EARG, "MSELoss: target is empty");
	expect_error(c, &view, &y, LN_EARG, "MSELoss: input is not contiguous");
	expect_error(c, &y, &view, LN_EARG, "MSELoss: target is not contiguous");
	ln_loss_release(c);
	c = make_ol(LN_ACT_RELU, LN_LOSS_MSE, LN_REDUCE_MEAN);
	expect_error(c, &view, &y, LN_EARG, "OutputLoss(relu, mse): input is not contiguous");
	ln_loss_release(c);
	release(&x, &y, &view);
}

/* ==== buffers and memory ================================================================= */

static ln_loss *make_any(int which, ln_reduction r)
{
	switch (which) {
	case 0: return make(ln_mse_loss_new, r);
	case 1: return make(ln_bce_loss_new, r);
	case 2: return make(ln_bce_logits_loss_new, r);
	case 3: return make(ln_cross_entropy_loss_new, r);
	case 4: return make(ln_nll_loss_new, r);
	case 5: return make_ol(LN_ACT_SOFTMAX, LN_LOSS_CROSS_ENTROPY, r);
	case 6: return make_ol(LN_ACT_SIGMOID, LN_LOSS_BCE, r);
	case 7: return make_ol(LN_ACT_TANH, LN_LOSS_MSE, r);
	default: return make_ol(LN_ACT_SOFTMAX, LN_LOSS_BCE, r);
	}
}

/* Input in (0,1) and a target valid for every loss above: {4,3} rows. */
static void any_data(ln_tensor *x, ln_tensor *y, int which)
{
	tu_tensor_uniform(x, 2, (int64_t[]){ 4, 3 }, 0.1f, 0.9f);
	if (which == 3 || which == 4 || which == 5)
		labels(y, 4, 3);
	else
		tu_tensor_uniform(y, 2, (int64_t[]){ 4, 3 }, 0.0f, 1.0f);
}

static ln_alloc_stats stats_now(void)
{
	ln_alloc_stats s;
	ln_alloc_get_stats(&s);
	return s;
}

/* Mean and none (whose per-sample losses are one more buffer). */
static const ln_reduction step_reductions[] = { LN_REDUCE_MEAN, LN_REDUCE_NONE };

static void test_steady_state_no_allocation(void **state)
{
	for (int w = 0; w < 2 * NKINDS; w++) {
		ln_tensor x, y;
		any_data(&x, &y, w % NKINDS);
		ln_loss *c = make_any(w % NKINDS, step_reductions[w / NKINDS]);
		forward(c, &x, &y);
		backward(c, &x, &y);
		const float *g = ln_tensor_data(&c->grad_input);
		ln_alloc_stats s0 = stats_now();
		for (int i = 0; i < 3; i++) {
			forward(c, &x, &y);
			backward(c, &x, &y);
		}
		assert_int_equal(stats_now().allocs, s0.allocs);
		assert_ptr_equal(ln_tensor_data(&c->grad_input), g);
		ln_loss_release(c);
		release(&x, &y, NULL);
	}
}

static void test_enomem_constructors(void **state)
{
	ln_alloc_stats s0 = stats_now();
	loss_ctor ctors[] = { ln_mse_loss_new, ln_bce_loss_new, ln_bce_logits_loss_new,
		              ln_cross_entropy_loss_new, ln_nll_loss_new };
	const char *names[] = { "MSELoss", "BCELoss", "BCEWithLogitsLoss", "CrossEntropyLoss", "NLLLoss" };
	for (int i = 0; i < 5; i++) {
		ln_loss *c = (ln_loss *)names;
		ln_error err;
		ln_alloc_fail_nth(1);
		ln_status st = ctors[i](&c, LN_REDUCE_MEAN, &err);
		ln_alloc_fail_nth(0);
		assert_int_equal(st, LN_ENOMEM);
		assert_null(c);
		assert_non_null(strstr(err.msg, names[i]));
		assert_non_null(strstr(err.msg, "out of memory"));
	}
	ln_loss *c = (ln_loss *)names;
	ln_error err;
	ln_alloc_fail_nth(1);
	ln_status st = ln_output_loss_new(&c, LN_ACT_SOFTMAX, LN_LOSS_CROSS_ENTROPY, LN_REDUCE_MEAN, &err);
	ln_alloc_fail_nth(0);
	assert_int_equal(st, LN_ENOMEM);
	assert_null(c);
	assert_non_null(strstr(err.msg, "out of memory allocating OutputLoss"));
	assert_int_equal(stats_now().bytes_live, s0.bytes_live);
}

/* Fails the n-th allocation of the first forward+backward, for every n
 * until one pass sees no failure: each failure is LN_ENOMEM naming the
 * loss, a retry then works, and nothing leaks. */
static void test_enomem_first_step(void **state)
{
	for (int w = 0; w < 2 * NKINDS; w++) {
		int failed_passes = 0;
		for (long n = 1;; n++) {
			ln_alloc_stats s0 = stats_now();
			ln_tensor x, y;
			any_data(&x, &y, w % NKINDS);
			ln_loss *c = make_any(w % NKINDS, step_reductions[w / NKINDS]);
			char who[64];
			snprintf(who, sizeof who, "%s", c->cls->name);
			ln_error err;
			double l;
			ln_alloc_fail_nth(n);
			ln_status st = ln_loss_forward(c, &x, &y, &l, &err);
			if (st == LN_OK)
				st = ln_loss_backward(c, &x, &y, &err);
			ln_alloc_fail_nth(0);
			bool failed = stats_now().failures > s0.failures;
			if (failed) {
				failed_passes++;
				assert_int_equal(st, LN_ENOMEM);
				assert_non_null(strstr(err.msg, who));
				assert_non_null(strstr(err.msg, "out of memory"));
				forward(c, &x, &y);
				backward(c, &x, &y);
			} else {
				assert_int_equal(st, LN_OK);
			}
			ln_loss_release(c);
			release(&x, &y, NULL);
			assert_int_equal(stats_now().bytes_live, s0.bytes_live);
			if (!failed)
				break;
		}
		/* backward needs grad_input, OutputLoss also its output */
		assert_true(failed_passes >= 1);
	}
}

static void test_refcount(void **state)
{
	ln_alloc_stats s0 = stats_now();
	ln_loss *c = make_ol(LN_ACT_SIGMOID, LN_LOSS_MSE, LN_REDUCE_MEAN);
	ln_loss_retain(c);
	assert_int_equal(c->refcount, 2);
	ln_loss_release(c);
	assert_int_equal(c->refcount, 1);
	ln_loss_release(c);
	ln_loss_release(NULL);
	assert_int_equal(stats_now().bytes_live, s0.bytes_live);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_mse_gradcheck, setup),
		cmocka_unit_test_setup(test_mse_value, setup),
		cmocka_unit_test_setup(test_bce_gradcheck, setup),
		cmocka_unit_test_setup(test_bce_value, setup),
		cmocka_unit_test_setup(test_cross_entropy_gradcheck, setup),
		cmocka_unit_test_setup(test_cross_entropy_value, setup),
		cmocka_unit_test_setup(test_cross_entropy_fast_grad, setup),
		cmocka_unit_test_setup(test_reduction_none, setup),
		cmocka_unit_test_setup(test_reduction_none_value, setup),
		cmocka_unit_test_setup(test_reduction_none_errors, setup),
		cmocka_unit_test_setup(test_cross_entropy_options_value, setup),
		cmocka_unit_test_setup(test_cross_entropy_options_gradcheck, setup),
		cmocka_unit_test_setup(test_cross_entropy_options_errors, setup),
		cmocka_unit_test_setup(test_cross_entropy_extreme_logits, setup),
		cmocka_unit_test_setup(test_bce_extreme, setup),
		cmocka_unit_test_setup(test_output_loss_gradcheck_all, setup),
		cmocka_unit_test_setup(test_output_loss_extreme_all, setup),
		cmocka_unit_test_setup(test_output_loss_canonical, setup),
		cmocka_unit_test_setup(test_output_loss_matches_plain_losses, setup),
		cmocka_unit_test_setup(test_output_loss_undefined, setup),
		cmocka_unit_test_setup(test_names, setup),
		cmocka_unit_test_setup(test_describe, setup),
		cmocka_unit_test_setup(test_errors_nan_input, setup),
		cmocka_unit_test_setup(test_errors_labels, setup),
		cmocka_unit_test_setup(test_errors_ranges_and_shapes, setup),
		cmocka_unit_test_setup(test_errors_empty_and_noncontiguous, setup),
		cmocka_unit_test_setup(test_steady_state_no_allocation, setup),
		cmocka_unit_test_setup(test_enomem_constructors, setup),
		cmocka_unit_test_setup(test_enomem_first_step, setup),
		cmocka_unit_test_setup(test_refcount, setup),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
