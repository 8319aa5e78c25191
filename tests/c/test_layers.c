/*
 * test_layers.c -- the module protocol, the basic layers, Sequential,
 * External, init and the registry: values worked out by hand, gradient
 * checks, error messages, allocation failures and the no-allocation
 * steady state.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "core/alloc.h"
#include "core/rng.h"
#include "nn/conv.h"
#include "nn/init.h"
#include "nn/layers.h"
#include "nn/module.h"
#include "testutil.h"

#define SEED 1234u

/* *m after a constructor call (passed as s: the call is evaluated before
 * *m is read). */
static ln_module *must(ln_status s, ln_module **m, const ln_error *err)
{
	if (s != LN_OK)
		fail_msg("constructor failed: %s", err->msg);
	return *m;
}

static ln_module *linear(int64_t nin, int64_t nout, bool bias)
{
	ln_module *m = NULL;
	ln_error err;
	return must(ln_linear_new(&m, NULL, nin, nout, bias, &err), &m, &err);
}

static ln_module *plain(ln_status (*ctor)(ln_module **, ln_error *))
{
	ln_module *m = NULL;
	ln_error err;
	return must(ctor(&m, &err), &m, &err);
}

static ln_module *act(const char *name)
{
	ln_module *m = NULL;
	ln_error err;
	return must(ln_activation_new(&m, name, 0, &err), &m, &err);
}

static ln_module *leaky(double slope)
{
	ln_module *m = NULL;
	ln_error err;
	return must(ln_activation_new(&m, "LeakyReLU", slope, &err), &m, &err);
}

static ln_module *dropout(double p)
{
	ln_module *m = NULL;
	ln_error err;
	return must(ln_dropout_new(&m, p, &err), &m, &err);
}

/* A Sequential of the n modules given; it takes over the caller's
 * references. */
static ln_module *seq_of(int n, ...)
{
	ln_module *s = plain(ln_sequential_new);
	va_list ap;
	va_start(ap, n);
	for (int i = 0; i < n; i++) {
		ln_module *c = va_arg(ap, ln_module *);
		ln_error err;
		if (ln_sequential_add(s, c, &err) != LN_OK)
			fail_msg("add: %s", err.msg);
		ln_module_release(c);
	}
	va_end(ap);
	return s;
}

static void forward_ok(ln_module *m, const ln_tensor *x)
{
	ln_error err;
	if (ln_module_forward(m, x, &err) != LN_OK)
		fail_msg("forward: %s", err.msg);
}

static void backward_ok(ln_module *m, const ln_tensor *x, const ln_tensor *gy)
{
	ln_error err;
	if (ln_module_backward(m, x, gy, &err) != LN_OK)
		fail_msg("backward: %s", err.msg);
}

/* Uniform in [-2,2] but at least 0.2 away from 0, where ReLU-like layers
 * have their kink (gradcheck steps are 1e-2). */
static void away_from_kink(ln_tensor *t, int ndim, const int64_t *shape)
{
	tu_tensor_uniform(t, ndim, shape, -2.0f, 2.0f);
	float *d = ln_tensor_data(t);
	for (int64_t i = 0; i < ln_tensor_numel(t); i++)
		if (fabsf(d[i]) < 0.2f)
			d[i] = d[i] < 0 ? d[i] - 0.2f : d[i] + 0.2f;
}

static void expect_close(const float *got, const double *want, int n, double tol)
{
	for (int i = 0; i < n; i++)
		if (!(fabs(got[i] - want[i]) <= tol * fmax(1.0, fabs(want[i]))))
			fail_msg("element %d: got %.9g, want %.9g", i, got[i], want[i]);
}

static uint64_t live_bytes(void)
{
	ln_alloc_stats st;
	ln_alloc_get_stats(&st);
	return st.bytes_live;
}

static uint64_t alloc_calls(void)
{
	ln_alloc_stats st;
	ln_alloc_get_stats(&st);
	return st.allocs + st.failures;
}

/* ---- gradient checks over every parameter of a tree -------------------------------- */

/* The parameters ln_module_visit_params reaches, in order (test_walks). */
typedef struct pref { ln_module *owner; int index; } pref;
typedef struct plist { pref p[32]; int n; } plist;

static int collect(ln_module *owner, int index, void *ctx)
{
	plist *l = ctx;
	assert_true(l->n < 32);
	l->p[l->n++] = (pref){owner, index};
	return 0;
}

/* tu_gradcheck_module perturbs m->param only, which for a container is
 * nothing: tu_gradcheck_ex checks every parameter of the tree too. */
static void expect_gradcheck(ln_module *m, const ln_tensor *x, double tol)
{
	char name[128];
	m->cls->describe(m, name, sizeof name);
	double e = tu_gradcheck_module(m, x, 1e-2);
	if (!(e < tol))
		fail_msg("%s: gradcheck relative error %g >= %g [seed %u]", name, e, tol, SEED);
	if (m->nchildren > 0) {
		e = tu_gradcheck_ex(m, x, 1e-2, false, NULL, NULL);
		if (!(e < tol))
			fail_msg("%s: parameter gradcheck relative error %g >= %g [seed %u]", name, e, tol,
			         SEED);
	}
}

/* ---- values worked out by hand -------------------------------------------------------- */

static void test_linear_values(void **state)
{
	ln_module *m = linear(2, 3, true);
	const float w[] = {1, 2, 3, 4, 5, 6}, b[] = {0.1f, 0.2f, 0.3f};
	memcpy(ln_tensor_data(&m->param[0]), w, sizeof w);
	memcpy(ln_tensor_data(&m->param[1]), b, sizeof b);
	ln_tensor x;
	tu_tensor(&x, 2, (int64_t[]){2, 2}, (const float[]){1, 1, 2, -1});
	forward_ok(m, &x);
	assert_int_equal(m->output.ndim, 2);
	assert_int_equal(m->output.shape[0], 2);
	assert_int_equal(m->output.shape[1], 3);
	/* row 1: (1+2, 3+4, 5+6) + b;  row 2: (2-2, 6-4, 10-6) + b */
	expect_close(ln_tensor_data(&m->output), (const double[]){3.1, 7.2, 11.3, 0.1, 2.2, 4.3}, 6,
	             1e-6);

	/* gy = ones: gx = column sums of W = (9, 12) per row; gW = sum_i x_i
	 * per row = (3, 0); gb = N = 2 */
	ln_tensor gy;
	tu_tensor(&gy, 2, (int64_t[]){2, 3}, (const float[]){1, 1, 1, 1, 1, 1});
	backward_ok(m, &x, &gy);
	expect_close(ln_tensor_data(&m->grad_input), (const double[]){9, 12, 9, 12}, 4, 1e-6);
	expect_close(ln_tensor_data(&m->grad[0]), (const double[]){3, 0, 3, 0, 3, 0}, 6, 1e-6);
	expect_close(ln_tensor_data(&m->grad[1]), (const double[]){2, 2, 2}, 3, 1e-6);
	/* a second backward accumulates into the parameter gradients only */
	backward_ok(m, &x, &gy);
	expect_close(ln_tensor_data(&m->grad_input), (const double[]){9, 12, 9, 12}, 4, 1e-6);
	expect_close(ln_tensor_data(&m->grad[1]), (const double[]){4, 4, 4}, 3, 1e-6);

	ln_tensor_release(&x);
	ln_tensor_release(&gy);
	ln_module_release(m);
}

static void test_activation_values(void **state)
{
	ln_tensor x;
	tu_tensor(&x, 2, (int64_t[]){1, 4}, (const float[]){-2, 0, 3, -100});
	struct {
		ln_module *m;
		double want[4];
	} cases[] = {
		{act("Identity"), {-2, 0, 3, -100}},
		{act("ReLU"), {0, 0, 3, 0}},
		{leaky(0.1), {-0.2, 0, 3, -10}},
		{act("Sigmoid"), {0.11920292202211755, 0.5, 0.9525741268224334, 3.720075976020836e-44}},
		{act("Tanh"), {-0.9640275800758169, 0, 0.9950547536867305, -1}},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		forward_ok(cases[i].m, &x);
		const float *y = ln_tensor_data(&cases[i].m->output);
		for (int j = 0; j < 4; j++)
			if (!(fabs(y[j] - cases[i].want[j]) <= 1e-6 * fmax(1, fabs(cases[i].want[j]))))
				fail_msg("%s: element %d: got %.9g, want %.9g", cases[i].m->cls->name, j, y[j],
				         cases[i].want[j]);
		ln_module_release(cases[i].m);
	}
	ln_tensor_release(&x);
}

static void test_softmax_values(void **state)
{
	ln_module *sm = plain(ln_softmax_new), *lsm = plain(ln_log_softmax_new);
	/* the second row would overflow exp without the max subtraction */
	ln_tensor x;
	tu_tensor(&x, 2, (int64_t[]){2, 3}, (const float[]){1, 2, 3, 1000, 1001, 1002});
	const double p[3] = {0.09003057317038046, 0.24472847105479767, 0.6652409557748219};
	forward_ok(sm, &x);
	forward_ok(lsm, &x);
	double want_p[6], want_lp[6];
	for (int j = 0; j < 6; j++) {
		want_p[j] = p[j % 3];
		want_lp[j] = log(p[j % 3]);
	}
	expect_close(ln_tensor_data(&sm->output), want_p, 6, 1e-6);
	expect_close(ln_tensor_data(&lsm->output), want_lp, 6, 1e-6);
	ln_tensor_release(&x);
	ln_module_release(sm);
	ln_module_release(lsm);
}

/* Softmax(dim)/LogSoftmax(dim) over another dimension than the last:
 * values by hand on {2,2} over dim 1 (each column is a distribution), a
 * 3-D input against the last-dimension softmax of its permuted copy,
 * gradient checks over every dimension of a 3-D input, and the errors. */
static void test_softmax_dim(void **state)
{
	ln_module *m = NULL;
	ln_error err;
	ln_tensor x;
	tu_tensor(&x, 2, (int64_t[]){2, 2}, (const float[]){1, 2, 3, 5});
	ln_module *sm = must(ln_softmax_new_dim(&m, 1, &err), &m, &err);
	ln_module *lsm = must(ln_log_softmax_new_dim(&m, -2, &err), &m, &err);
	forward_ok(sm, &x);
	forward_ok(lsm, &x);
	/* column 1 holds 1 and 3, column 2 holds 2 and 5 */
	double a = 1 / (1 + exp(2.0)), b = 1 / (1 + exp(3.0));
	double want_p[4] = {a, b, 1 - a, 1 - b};
	double want_lp[4] = {log(a), log(b), log(1 - a), log(1 - b)};
	expect_close(ln_tensor_data(&sm->output), want_p, 4, 1e-6);
	expect_close(ln_tensor_data(&lsm->output), want_lp, 4, 1e-6);
	char d[64];
	sm->cls->describe(sm, d, sizeof d);
	assert_string_equal(d, "Softmax(dim=1)");
	lsm->cls->describe(lsm, d, sizeof d);
	assert_string_equal(d, "LogSoftmax(dim=-2)");
	ln_module_release(sm);
	ln_module_release(lsm);
	ln_tensor_release(&x);

	/* {2,3,4} over dim 2 equals the last-dim softmax of the {2,4,3} copy */
	ln_tensor x3, xp = LN_TENSOR_EMPTY, xpc = LN_TENSOR_EMPTY;
	tu_tensor_uniform(&x3, 3, (int64_t[]){2, 3, 4}, -3, 3);
	sm = must(ln_softmax_new_dim(&m, 2, &err), &m, &err);
	ln_module *last = plain(ln_softmax_new);
	forward_ok(sm, &x3);
	assert_int_equal(ln_tensor_permute(&xp, &x3, (const int[]){0, 2, 1}, &err), LN_OK);
	assert_int_equal(ln_tensor_clone(&xpc, &xp, &err), LN_OK);
	forward_ok(last, &xpc);
	const float *got = ln_tensor_data(&sm->output), *ref = ln_tensor_data(&last->output);
	for (int i = 0; i < 2; i++)
		for (int j = 0; j < 3; j++)
			for (int k = 0; k < 4; k++)
				assert_float_equal(got[(i * 3 + j) * 4 + k], ref[(i * 4 + k) * 3 + j], 1e-7);
	ln_module_release(sm);
	ln_module_release(last);
	ln_tensor_release(&xp);
	ln_tensor_release(&xpc);

	for (int dim = -3; dim <= 3; dim++) {
		if (dim == 0)
			continue;
		sm = must(ln_softmax_new_dim(&m, dim, &err), &m, &err);
		lsm = must(ln_log_softmax_new_dim(&m, dim, &err), &m, &err);
		expect_gradcheck(sm, &x3, 1e-2);
		expect_gradcheck(lsm, &x3, 1e-2);
		ln_module_release(sm);
		ln_module_release(lsm);
	}

	sm = must(ln_softmax_new_dim(&m, 4, &err), &m, &err);
	assert_int_equal(ln_module_forward(sm, &x3, &err), LN_ESHAPE);
	assert_string_equal(err.msg, "Softmax: dim 4 does not exist in an input of shape {2,3,4} "
	                             "(expected 1..3 or -3..-1)");
	ln_module_release(sm);
	ln_tensor_release(&x3);
	m = NULL;
	assert_int_equal(ln_softmax_new_dim(&m, 0, &err), LN_ERANGE);
	assert_string_equal(err.msg, "dim must not be 0 (dimensions count from 1; -1 is the last)");
	assert_int_equal(ln_log_softmax_new_dim(&m, 9, &err), LN_ERANGE);
	assert_string_equal(err.msg, "expected dim to be an integer in [-8, 8], got 9");
	assert_null(m);
}

static void test_flatten_shapes(void **state)
{
	ln_module *f = plain(ln_flatten_new);
	ln_tensor x, gy;
	tu_tensor_uniform(&x, 4, (int64_t[]){2, 3, 2, 2}, -1, 1);
	forward_ok(f, &x);
	assert_int_equal(f->output.ndim, 2);
	assert_int_equal(f->output.shape[0], 2);
	assert_int_equal(f->output.shape[1], 12);
	assert_memory_equal(ln_tensor_data(&f->output), ln_tensor_data(&x), 24 * sizeof(float));
	tu_tensor_uniform(&gy, 2, (int64_t[]){2, 12}, -1, 1);
	backward_ok(f, &x, &gy);
	assert_true(ln_tensor_same_shape(&f->grad_input, &x));
	assert_memory_equal(ln_tensor_data(&f->grad_input), ln_tensor_data(&gy), 24 * sizeof(float));
	ln_tensor_release(&x);
	ln_tensor_release(&gy);
	/* {N} -> {N,1} */
	tu_tensor(&x, 1, (int64_t[]){5}, NULL);
	forward_ok(f, &x);
	assert_int_equal(f->output.ndim, 2);
	assert_int_equal(f->output.shape[1], 1);
	ln_tensor_release(&x);
	ln_module_release(f);
}

/* The fast (BLAS) and naive Linear kernels agree; nout > 256 crosses a
 * block of the bias reduction. */
static void test_linear_kernels_match_naive(void **state)
{
	ln_rng_seed(ln_rng_global(), SEED);
	const int64_t n = 7, nin = 13, nout = 300;
	ln_tensor x, w, b, gy;
	tu_tensor_uniform(&x, 2, (int64_t[]){n, nin}, -1, 1);
	tu_tensor_uniform(&w, 2, (int64_t[]){nout, nin}, -1, 1);
	tu_tensor_uniform(&b, 1, (int64_t[]){nout}, -1, 1);
	tu_tensor_uniform(&gy, 2, (int64_t[]){n, nout}, -1, 1);
	for (int with_bias = 0; with_bias < 2; with_bias++) {
		ln_tensor y1, y2, gx1, gx2, gw1, gw2, gb1, gb2;
		tu_tensor(&y1, 2, (int64_t[]){n, nout}, NULL);
		tu_tensor(&y2, 2, (int64_t[]){n, nout}, NULL);
		tu_tensor(&gx1, 2, (int64_t[]){n, nin}, NULL);
		tu_tensor(&gx2, 2, (int64_t[]){n, nin}, NULL);
		/* parameter gradients start non-zero: the kernels must add */
		tu_tensor_uniform(&gw1, 2, (int64_t[]){nout, nin}, -1, 1);
		ln_error err;
		gw2 = LN_TENSOR_EMPTY;
		assert_int_equal(ln_tensor_clone(&gw2, &gw1, &err), LN_OK);
		tu_tensor_uniform(&gb1, 1, (int64_t[]){nout}, -1, 1);
		gb2 = LN_TENSOR_EMPTY;
		assert_int_equal(ln_tensor_clone(&gb2, &gb1, &err), LN_OK);
		const float *bp = with_bias ? ln_tensor_data(&b) : NULL;
		float *gb1p = with_bias ? ln_tensor_data(&gb1) : NULL;
		float *gb2p = with_bias ? ln_tensor_data(&gb2) : NULL;
		ln_linear_forward_kernel(ln_tensor_data(&y1), ln_tensor_data(&x), ln_tensor_data(&w), bp, n,
		                         nin, nout);
		ln_linear_forward_naive(ln_tensor_data(&y2), ln_tensor_data(&x), ln_tensor_data(&w), bp, n,
		                        nin, nout);
		ln_linear_backward_kernel(ln_tensor_data(&gx1), ln_tensor_data(&gw1), gb1p,
		                          ln_tensor_data(&gy), ln_tensor_data(&x), ln_tensor_data(&w), n, nin,
		                          nout);
		ln_linear_backward_naive(ln_tensor_data(&gx2), ln_tensor_data(&gw2), gb2p,
		                         ln_tensor_data(&gy), ln_tensor_data(&x), ln_tensor_data(&w), n, nin,
		                         nout);
		assert_true(ln_tensor_allclose(&y1, &y2, 1e-5, 1e-5));
		assert_true(ln_tensor_allclose(&gx1, &gx2, 1e-5, 1e-5));
		assert_true(ln_tensor_allclose(&gw1, &gw2, 1e-5, 1e-5));
		assert_true(ln_tensor_allclose(&gb1, &gb2, 1e-5, 1e-5));
		ln_tensor *all[] = {&y1, &y2, &gx1, &gx2, &gw1, &gw2, &gb1, &gb2};
		for (size_t i = 0; i < 8; i++)
			ln_tensor_release(all[i]);
	}
	ln_tensor_release(&x);
	ln_tensor_release(&w);
	ln_tensor_release(&b);
	ln_tensor_release(&gy);
}

static void test_linear_default_init(void **state)
{
	ln_rng_seed(ln_rng_global(), SEED);
	ln_module *m = linear(400, 50, true);
	const float *w = ln_tensor_data(&m->param[0]);
	double s = 0, s2 = 0;
	int64_t n = 400 * 50;
	for (int64_t i = 0; i < n; i++) {
		s += w[i];
		s2 += (double)w[i] * w[i];
	}
	double mean = s / n, sd = sqrt(s2 / n - mean * mean);
	/* He: std sqrt(2/fan_in) = sqrt(2/400) */
	assert_true(fabs(mean) < 0.005);
	assert_true(fabs(sd / sqrt(2.0 / 400) - 1) < 0.05);
	assert_true(ln_tensor_max(&m->param[1]) == 0 && ln_tensor_min(&m->param[1]) == 0);
	ln_module_release(m);
}

/* ---- gradient checks -------------------------------------------------------------------- */

static void test_gradcheck_layers(void **state)
{
	ln_rng_seed(ln_rng_global(), SEED);
	ln_tensor x;
	const int64_t shape[] = {3, 4};
	away_from_kink(&x, 2, shape);
	ln_module *ms[] = {
		linear(4, 5, true), linear(4, 5, false), act("Identity"), act("Sigmoid"),
		act("Tanh"), act("ReLU"), leaky(0.2), plain(ln_softmax_new),
		plain(ln_log_softmax_new), plain(ln_flatten_new),
	};
	for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++) {
		expect_gradcheck(ms[i], &x, 1e-2);
		ln_module_release(ms[i]);
	}
	/* every row of the activation table, with its default parameter: a
	 * new row is checked without being named here */
	int nact;
	const ln_activation_def *rows = ln_activation_defs(&nact);
	assert_true(nact >= 5);
	for (int i = 0; i < nact; i++) {
		ln_module *m = NULL;
		ln_error err;
		must(ln_module_create(&m, &rows[i].cls, NULL, rows[i].cls.config_defaults, &err), &m, &err);
		assert_ptr_equal(ln_module_class_find(rows[i].cls.name), &rows[i].cls);
		expect_gradcheck(m, &x, 1e-2);
		ln_module_release(m);
	}
	ln_module *m = NULL;
	ln_error err;
	assert_int_equal(ln_activation_new(&m, "Swish", 0, &err), LN_EARG);
	assert_string_equal(err.msg, "no activation called \"Swish\"");
	ln_tensor_release(&x);

	/* Softmax over the last dimension of a 3-D input; Flatten of 4-D */
	ln_tensor x3;
	tu_tensor_uniform(&x3, 3, (int64_t[]){2, 3, 4}, -2, 2);
	ln_module *sm = plain(ln_softmax_new), *lsm = plain(ln_log_softmax_new);
	expect_gradcheck(sm, &x3, 1e-2);
	expect_gradcheck(lsm, &x3, 1e-2);
	ln_module_release(sm);
	ln_module_release(lsm);
	ln_tensor_release(&x3);
	ln_tensor x4;
	tu_tensor_uniform(&x4, 4, (int64_t[]){2, 2, 2, 3}, -2, 2);
	ln_module *fl = plain(ln_flatten_new);
	expect_gradcheck(fl, &x4, 1e-2);
	ln_module_release(fl);
	ln_tensor_release(&x4);
}

static void test_gradcheck_sequential(void **state)
{
	ln_rng_seed(ln_rng_global(), SEED);
	ln_tensor x;
	away_from_kink(&x, 2, (int64_t[]){4, 6});
	ln_module *inner = seq_of(2, linear(5, 4, false), leaky(0.1));
	ln_module *m = seq_of(5, linear(6, 5, true), act("Tanh"), inner, linear(4, 3, true),
	                      plain(ln_log_softmax_new));
	expect_gradcheck(m, &x, 1e-2);
	/* with Flatten in front, on 4-D input, and a Softmax head */
	ln_module *m2 = seq_of(5, plain(ln_flatten_new), linear(6, 5, true), act("Sigmoid"),
	                       linear(5, 3, true), plain(ln_softmax_new));
	ln_tensor x4;
	tu_tensor_uniform(&x4, 4, (int64_t[]){2, 1, 2, 3}, -1, 1);
	expect_gradcheck(m2, &x4, 1e-2);
	ln_module_release(m);
	ln_module_release(m2);
	ln_tensor_release(&x);
	ln_tensor_release(&x4);
}

/* ---- External ------------------------------------------------------------------------------ */

/* A tanh written outside the layer library; `factor` scales its backward
 * (1 is right, 2 is the deliberate mistake). */
typedef struct ext_tanh {
	ln_tensor out, gin;
	float factor;
	int released, training_calls;
	bool training;
	bool strided;  /* return a non-contiguous view from forward */
	bool fail;     /* fail forward with a message */
	bool flat;     /* return a 1-D gradient from backward (a wrong shape) */
} ext_tanh;

static ln_status ext_forward(void *ctx, const ln_tensor *x, ln_tensor *out, ln_error *err)
{
	ext_tanh *e = ctx;
	if (e->fail)
		return ln_fail(err, LN_EARG, "custom failure with value %d", 42);
	int64_t n = ln_tensor_numel(x);
	int64_t shape[LN_MAX_DIMS];
	memcpy(shape, x->shape, sizeof shape);
	if (e->strided)
		shape[x->ndim - 1] *= 2;  /* compute into a wider buffer, return a narrow view */
	ln_status s = ln_tensor_ensure(&e->out, x->ndim, shape, err);
	if (s != LN_OK)
		return s;
	const float *xd = ln_tensor_data(x);
	float *yd = ln_tensor_data(&e->out);
	int64_t c = x->shape[x->ndim - 1];
	for (int64_t i = 0; i < n; i++) {
		int64_t row = i / c, col = i % c;
		yd[e->strided ? row * 2 * c + col : i] = tanhf(xd[i]);
	}
	if (e->strided)
		return ln_tensor_narrow(out, &e->out, x->ndim - 1, 0, c, err);
	ln_tensor_ref(out, &e->out);
	return LN_OK;
}

static ln_status ext_backward(void *ctx, const ln_tensor *x, const ln_tensor *gy,
                              ln_tensor *grad_input, ln_error *err)
{
	ext_tanh *e = ctx;
	int64_t numel = ln_tensor_numel(x);
	ln_status s = e->flat ? ln_tensor_ensure(&e->gin, 1, &numel, err)
	                      : ln_tensor_ensure(&e->gin, x->ndim, x->shape, err);
	if (s != LN_OK)
		return s;
	const float *xd = ln_tensor_data(x), *g = ln_tensor_data(gy);
	float *gx = ln_tensor_data(&e->gin);
	for (int64_t i = 0; i < ln_tensor_numel(x); i++) {
		float t = tanhf(xd[i]);
		gx[i] = e->factor * g[i] * (1 - t * t);
	}
	ln_tensor_ref(grad_input, &e->gin);
	return LN_OK;
}

static void ext_release(void *ctx)
{
	ext_tanh *e = ctx;
	ln_tensor_release(&e->out);
	ln_tensor_release(&e->gin);
	e->released++;
}

static void ext_set_training(void *ctx, bool training)
{
	ext_tanh *e = ctx;
	e->training = training;
	e->training_calls++;
}

static int ext_describe(void *ctx, char *buf, size_t size)
{
	return snprintf(buf, size, "ExtTanh");
}

static const ln_external_ops ext_ops = {
	.forward = ext_forward,
	.backward = ext_backward,
	.release = ext_release,
	.set_training = ext_set_training,
	.describe = ext_describe,
};

static ln_module *external(ext_tanh *e)
{
	ln_module *m = NULL;
	ln_error err;
	return must(ln_external_new(&m, &ext_ops, e, &err), &m, &err);
}

static void test_external_gradcheck(void **state)
{
	ln_rng_seed(ln_rng_global(), SEED);
	ln_tensor x;
	tu_tensor_uniform(&x, 2, (int64_t[]){3, 4}, -2, 2);

	ext_tanh good = {.factor = 1};
	ln_module *m = external(&good);
	expect_gradcheck(m, &x, 1e-2);
	char d[64];
	m->cls->describe(m, d, sizeof d);
	assert_string_equal(d, "ExtTanh");
	assert_ptr_equal(ln_external_ctx(m), &good);
	ln_module_release(m);
	assert_int_equal(good.released, 1);

	/* a backward that returns twice the true gradient is caught */
	ext_tanh bad = {.factor = 2};
	m = external(&bad);
	double e = tu_gradcheck_module(m, &x, 1e-2);
	if (!(e > 0.3))
		fail_msg("gradcheck missed a doubled gradient: relative error %g", e);
	ln_module_release(m);

	/* the same mistake inside a Sequential is caught through the container */
	ext_tanh bad2 = {.factor = 2};
	ln_module *s = seq_of(3, linear(4, 3, true), external(&bad2), linear(3, 2, true));
	e = tu_gradcheck_module(s, &x, 1e-2);
	if (!(e > 0.3))
		fail_msg("gradcheck missed a doubled gradient in a Sequential: relative error %g", e);
	ln_module_release(s);
	assert_int_equal(bad2.released, 1);

	/* a strided result is copied into a contiguous output */
	ext_tanh strided = {.factor = 1, .strided = true};
	m = external(&strided);
	forward_ok(m, &x);
	assert_true(ln_tensor_is_contiguous(&m->output));
	assert_true(ln_tensor_same_shape(&m->output, &x));
	assert_float_equal(ln_tensor_data(&m->output)[5], tanhf(ln_tensor_data(&x)[5]), 1e-7);
	ln_module_release(m);
	ln_tensor_release(&x);
}

static void test_external_errors_and_hooks(void **state)
{
	ln_rng_seed(ln_rng_global(), SEED);
	ln_error err;
	ln_tensor x;
	tu_tensor_uniform(&x, 2, (int64_t[]){2, 3}, -1, 1);
	ext_tanh e = {.factor = 1, .fail = true};
	ln_module *ext = external(&e);
	ln_module_retain(ext);
	ln_module *s = seq_of(2, linear(3, 3, true), ext);
	assert_int_equal(ln_module_forward(s, &x, &err), LN_EARG);
	assert_string_equal(err.msg, "Sequential: layer 2 (External): custom failure with value 42");
	assert_int_equal(ln_module_forward(ext, &x, &err), LN_EARG);
	assert_string_equal(err.msg, "External: custom failure with value 42");

	/* training mode reaches the callbacks through the container */
	ln_module_set_training(s, false);
	assert_false(e.training);
	assert_false(ext->training);
	ln_module_set_training(s, true);
	assert_true(e.training);
	assert_int_equal(e.training_calls, 2);

	/* parameters set from outside are visited and zeroed */
	ln_tensor p, g;
	tu_tensor_uniform(&p, 2, (int64_t[]){2, 2}, -1, 1);
	tu_tensor_uniform(&g, 2, (int64_t[]){2, 2}, 1, 2);
	assert_int_equal(ln_external_set_params(ext, 1, &p, &g, &err), LN_OK);
	plist l = {.n = 0};
	ln_module_visit_params(s, collect, &l);
	assert_int_equal(l.n, 3);  /* Linear weight, bias, then the external one */
	assert_ptr_equal(l.p[2].owner, ext);
	assert_ptr_equal(ext->param[0].storage, p.storage);
	ln_module_zero_grad(s);
	assert_true(ln_tensor_max(&g) == 0 && ln_tensor_min(&g) == 0);
	ln_tensor bad;
	tu_tensor(&bad, 1, (int64_t[]){4}, NULL);
	assert_int_equal(ln_external_set_params(ext, 1, &p, &bad, &err), LN_ESHAPE);
	assert_string_equal(err.msg, "parameter 1 has shape {2,2} but its gradient has shape {4}");
	assert_int_equal(ln_external_set_params(ext, LN_MODULE_MAX_PARAMS + 1, &p, &g, &err),
	                 LN_ERANGE);
	assert_int_equal(ln_external_set_params(s, 1, &p, &g, &err), LN_EARG);
	assert_null(ln_external_ctx(s));
	ln_tensor_release(&bad);

	/* a backward whose gradient has the wrong shape */
	e.fail = false;
	ext_tanh wrong = {.factor = 1, .flat = true};
	ln_module *w = external(&wrong);
	forward_ok(w, &x);
	ln_tensor gy;
	tu_tensor_uniform(&gy, 2, (int64_t[]){2, 3}, -1, 1);
	assert_int_equal(ln_module_backward(w, &x, &gy, &err), LN_ESHAPE);
	assert_string_equal(err.msg, "External:backward: backward returned a gradient of shape {6} "
	                             "for an input of shape {2,3}");
	ln_module_release(w);

	/* NULL callbacks */
	ln_module *none = NULL;
	assert_int_equal(ln_external_new(&none, &(ln_external_ops){0}, NULL, &err), LN_EARG);
	assert_null(none);

	ln_module_release(ext);
	assert_int_equal(e.released, 0);  /* the Sequential still holds it */
	ln_module_release(s);
	assert_int_equal(e.released, 1);
	ln_tensor_release(&x);
	ln_tensor_release(&gy);
	ln_tensor_release(&p);
	ln_tensor_release(&g);
}

/* ---- Dropout ------------------------------------------------------------------------------- */

static void test_dropout(void **state)
{
	ln_rng_seed(ln_rng_global(), SEED);
	const double p = 0.25;
	const float scale = (float)(1 / (1 - p));
	ln_module *d = dropout(p);
	ln_tensor x, gy;
	tu_tensor_uniform(&x, 2, (int64_t[]){8, 50}, 0.5f, 1.5f);  /* no zeros in x */
	tu_tensor_uniform(&gy, 2, (int64_t[]){8, 50}, 0.5f, 1.5f);
	const float *xd = ln_tensor_data(&x), *gyd = ln_tensor_data(&gy);

	/* evaluate mode: the identity, forward and backward */
	ln_module_set_training(d, false);
	forward_ok(d, &x);
	assert_memory_equal(ln_tensor_data(&d->output), xd, 400 * sizeof(float));
	backward_ok(d, &x, &gy);
	assert_memory_equal(ln_tensor_data(&d->grad_input), gyd, 400 * sizeof(float));
	expect_gradcheck(d, &x, 1e-2);

	/* training: each element dropped or scaled by 1/(1-p); backward
	 * uses the same mask */
	ln_module_set_training(d, true);
	for (int step = 0; step < 2; step++) {
		forward_ok(d, &x);
		backward_ok(d, &x, &gy);
		const float *y = ln_tensor_data(&d->output), *gx = ln_tensor_data(&d->grad_input);
		int dropped = 0;
		for (int i = 0; i < 400; i++) {
			if (y[i] == 0) {
				dropped++;
				assert_true(gx[i] == 0);
			} else {
				assert_float_equal(y[i], xd[i] * scale, 1e-6);
				assert_float_equal(gx[i], gyd[i] * scale, 1e-6);
			}
		}
		assert_true(dropped > 0 && dropped < 400);
	}
	/* backward after switching to evaluate still uses the training mask */
	ln_module_set_training(d, false);
	backward_ok(d, &x, &gy);
	const float *y = ln_tensor_data(&d->output), *gx = ln_tensor_data(&d->grad_input);
	for (int i = 0; i < 400; i++)
		assert_true((y[i] == 0) == (gx[i] == 0));
	ln_module_release(d);
	ln_tensor_release(&x);
	ln_tensor_release(&gy);
}

static void test_dropout_statistics(void **state)
{
	ln_rng_seed(ln_rng_global(), SEED);
	const double p = 0.3;
	const int64_t n = 200000;
	ln_module *d = dropout(p);
	ln_tensor x;
	tu_tensor(&x, 2, (int64_t[]){1000, 200}, NULL);
	ln_tensor_fill(&x, 1.0f);
	forward_ok(d, &x);
	const float *y = ln_tensor_data(&d->output);
	int64_t dropped = 0;
	for (int64_t i = 0; i < n; i++)
		dropped += y[i] == 0;
	/* binomial: sd of the dropped fraction is sqrt(p(1-p)/n) ~ 0.001 */
	double frac = (double)dropped / n;
	if (!(fabs(frac - p) < 0.005))
		fail_msg("dropped fraction %g, expected %g [seed %u]", frac, p, SEED);
	double mean = ln_tensor_mean(&d->output);
	if (!(fabs(mean - 1) < 0.01))
		fail_msg("mean %g, expected 1 (inverted scaling) [seed %u]", mean, SEED);

	/* same seed, same mask */
	ln_tensor first = LN_TENSOR_EMPTY;
	ln_error err;
	ln_rng_seed(ln_rng_global(), 7);
	forward_ok(d, &x);
	assert_int_equal(ln_tensor_clone(&first, &d->output, &err), LN_OK);
	ln_rng_seed(ln_rng_global(), 7);
	forward_ok(d, &x);
	assert_memory_equal(ln_tensor_data(&first), ln_tensor_data(&d->output), n * sizeof(float));
	/* p = 0 in training keeps everything */
	ln_module *d0 = dropout(0);
	forward_ok(d0, &x);
	assert_true(ln_tensor_min(&d0->output) == 1 && ln_tensor_max(&d0->output) == 1);
	ln_module_release(d0);
	ln_tensor_release(&first);
	ln_tensor_release(&x);
	ln_module_release(d);
}

/* ---- error messages ------------------------------------------------------------------------- */

static void test_shape_errors(void **state)
{
	ln_error err;
	ln_tensor x, x2, gy, bad;
	ln_module *l = linear(784, 256, true);
	tu_tensor(&bad, 2, (int64_t[]){64, 785}, NULL);
	assert_int_equal(ln_module_forward(l, &bad, &err), LN_ESHAPE);
	assert_int_equal(err.code, LN_ESHAPE);
	assert_string_equal(err.msg, "Linear: expected input of shape {N,784}, got {64,785}");

	tu_tensor(&x, 2, (int64_t[]){64, 784}, NULL);
	tu_tensor(&gy, 2, (int64_t[]){64, 10}, NULL);
	assert_int_equal(ln_module_backward(l, &x, &gy, &err), LN_ESTATE);
	assert_string_equal(err.msg, "Linear:backward: backward called before forward");
	forward_ok(l, &x);
	assert_int_equal(ln_module_backward(l, &x, &gy, &err), LN_ESHAPE);
	assert_string_equal(err.msg, "Linear:backward: expected gradient of shape {64,256}, got {64,10}");
	ln_tensor_release(&gy);
	tu_tensor(&gy, 2, (int64_t[]){64, 256}, NULL);
	tu_tensor(&x2, 2, (int64_t[]){32, 784}, NULL);
	assert_int_equal(ln_module_backward(l, &x2, &gy, &err), LN_ESHAPE);
	assert_string_equal(err.msg, "Linear:backward: expected the input of the last forward, of shape "
	                             "{64,784}, got {32,784}");
	ln_tensor_release(&x2);
	tu_tensor(&x2, 1, (int64_t[]){784}, NULL);
	assert_int_equal(ln_module_forward(l, &x2, &err), LN_ESHAPE);
	assert_string_equal(err.msg, "Linear: expected input of shape {N,784}, got {784}");
	ln_tensor_release(&x2);

	/* a child's error names its position and class */
	ln_module *s = seq_of(3, linear(5, 785, true), act("ReLU"), linear(784, 10, true));
	tu_tensor(&x2, 2, (int64_t[]){64, 5}, NULL);
	assert_int_equal(ln_module_forward(s, &x2, &err), LN_ESHAPE);
	assert_string_equal(err.msg, "Sequential: layer 3 (Linear): expected input of shape {N,784}, got {64,785}");
	/* nested containers nest the positions */
	ln_module_retain(s);
	ln_module *outer = seq_of(2, act("Identity"), s);
	assert_int_equal(ln_module_forward(outer, &x2, &err), LN_ESHAPE);
	assert_string_equal(err.msg, "Sequential: layer 2 (Sequential): layer 3 (Linear): expected "
	                             "input of shape {N,784}, got {64,785}");
	ln_module_release(outer);
	ln_module_release(s);

	/* backward through a Sequential */
	s = seq_of(2, linear(5, 4, true), act("Tanh"));
	forward_ok(s, &x2);
	ln_tensor gy2;
	tu_tensor(&gy2, 2, (int64_t[]){64, 3}, NULL);
	assert_int_equal(ln_module_backward(s, &x2, &gy2, &err), LN_ESHAPE);
	assert_string_equal(err.msg, "Sequential:backward: expected gradient of shape {64,4}, got {64,3}");
	ln_tensor_release(&gy2);
	ln_module_release(s);

	/* an empty Sequential */
	s = plain(ln_sequential_new);
	assert_int_equal(ln_module_forward(s, &x2, &err), LN_ESTATE);
	assert_string_equal(err.msg, "Sequential: has no layers (add some first)");
	ln_module_release(s);

	/* Softmax wants at least {N,C} */
	ln_module *sm = plain(ln_softmax_new);
	ln_tensor v;
	tu_tensor(&v, 1, (int64_t[]){5}, NULL);
	assert_int_equal(ln_module_forward(sm, &v, &err), LN_ESHAPE);
	assert_string_equal(err.msg, "Softmax: expected input of shape {N,C} (at least 2-D), got {5}");
	ln_module_release(sm);
	ln_tensor_release(&v);

	/* activations check backward's x against the forward's */
	ln_module *r = act("ReLU");
	forward_ok(r, &x2);
	tu_tensor(&gy2, 2, (int64_t[]){64, 5}, NULL);
	assert_int_equal(ln_module_backward(r, &x, &gy2, &err), LN_ESHAPE);
	assert_string_equal(err.msg, "ReLU:backward: expected the input of the last forward, of shape "
	                             "{64,5}, got {64,784}");
	ln_tensor_release(&gy2);

	/* non-contiguous and empty inputs */
	ln_tensor view = LN_TENSOR_EMPTY;
	assert_int_equal(ln_tensor_narrow(&view, &x2, 1, 1, 2, &err), LN_OK);
	assert_int_equal(ln_module_forward(r, &view, &err), LN_EARG);
	assert_string_equal(err.msg, "ReLU: expected a contiguous input tensor, got a non-contiguous "
	                             "view of shape {64,2}");
	ln_tensor empty = LN_TENSOR_EMPTY;
	assert_int_equal(ln_module_forward(r, &empty, &err), LN_EARG);
	assert_string_equal(err.msg, "ReLU: expected a non-empty input tensor, got an empty one");
	ln_tensor_release(&view);
	ln_module_release(r);

	/* a Linear fed its own output buffer */
	ln_module *sq = linear(3, 3, true);
	ln_tensor x3;
	tu_tensor(&x3, 2, (int64_t[]){2, 3}, NULL);
	forward_ok(sq, &x3);
	assert_int_equal(ln_module_forward(sq, &sq->output, &err), LN_EARG);
	assert_string_equal(err.msg, "Linear: the input is this layer's own output buffer; pass a clone");
	ln_module_release(sq);
	ln_tensor_release(&x3);

	ln_module_release(l);
	ln_tensor_release(&x);
	ln_tensor_release(&x2);
	ln_tensor_release(&gy);
	ln_tensor_release(&bad);
}

/* One check for every class: backward takes only the input of the last
 * successful forward (LN_ESHAPE naming both shapes), and nothing after a
 * forward that failed (LN_ESTATE), whatever the class keeps from forward. */
static void test_backward_follows_last_forward(void **state)
{
	ln_rng_seed(ln_rng_global(), SEED);
	ln_error err;
	ln_module *mods[8] = {linear(4, 3, true), act("ReLU"), dropout(0.5), plain(ln_flatten_new)};
	assert_int_equal(ln_conv2d_new(&mods[4], NULL, 4, 2, 1, 1, 0, true, &err), LN_OK);
	assert_int_equal(ln_maxpool2d_new(&mods[5], 1, 1, &err), LN_OK);
	assert_int_equal(ln_avgpool2d_new(&mods[6], 1, 1, &err), LN_OK);
	assert_int_equal(ln_batchnorm_new(&mods[7], NULL, 4, &err), LN_OK);
	for (int i = 0; i < 8; i++) {
		ln_module *m = mods[i];
		bool images = i >= 4;
		int nd = images ? 4 : 2;
		int64_t s1[4] = {2, 4, 1, 1}, s2[4] = {3, 4, 1, 1};
		ln_tensor x, x2, gy, empty = LN_TENSOR_EMPTY;
		tu_tensor_uniform(&x, nd, s1, -1, 1);
		tu_tensor_uniform(&x2, nd, s2, -1, 1);
		assert_false(m->backward_current);
		forward_ok(m, &x);
		assert_false(m->backward_current);
		tu_tensor_uniform(&gy, m->output.ndim, m->output.shape, -1, 1);
		char want[160];
		snprintf(want, sizeof want, "%s:backward: expected the input of the last forward, of shape "
		         "%s, got ", m->cls->name, images ? "{2,4,1,1}" : "{2,4}");
		assert_int_equal(ln_module_backward(m, &x2, &gy, &err), LN_ESHAPE);
		if (strncmp(err.msg, want, strlen(want)) != 0)
			fail_msg("%s: got \"%s\"", m->cls->name, err.msg);
		backward_ok(m, &x, &gy);
		assert_true(m->backward_current);  /* what m:trace() reads */
		forward_ok(m, &x);
		assert_false(m->backward_current);
		/* a failed forward leaves nothing for backward to follow */
		assert_int_equal(ln_module_forward(m, &empty, &err), LN_EARG);
		assert_int_equal(ln_module_backward(m, &x, &gy, &err), LN_ESTATE);
		snprintf(want, sizeof want, "%s:backward: backward called before forward", m->cls->name);
		assert_string_equal(err.msg, want);
		ln_tensor_release(&x);
		ln_tensor_release(&x2);
		ln_tensor_release(&gy);
		ln_module_release(m);
	}
}

static void test_constructor_errors(void **state)
{
	ln_error err;
	ln_module *m = NULL;
	assert_int_equal(ln_linear_new(&m, NULL, 0, 3, true, &err), LN_ERANGE);
	assert_string_equal(err.msg, "expected sizes nin >= 1 and nout >= 1, got 0 and 3");
	assert_int_equal(ln_linear_new(&m, NULL, 3, -1, true, &err), LN_ERANGE);
	assert_string_equal(err.msg, "expected sizes nin >= 1 and nout >= 1, got 3 and -1");
	assert_int_equal(ln_dropout_new(&m, 1.0, &err), LN_ERANGE);
	assert_string_equal(err.msg, "expected a probability p in [0,1), got 1");
	assert_int_equal(ln_dropout_new(&m, -0.1, &err), LN_ERANGE);
	assert_string_equal(err.msg, "expected a probability p in [0,1), got -0.1");
	assert_int_equal(ln_dropout_new(&m, NAN, &err), LN_ERANGE);
	assert_int_equal(ln_activation_new(&m, "LeakyReLU", INFINITY, &err), LN_ERANGE);
	assert_string_equal(err.msg, "expected a finite slope, got inf");
	assert_null(m);
	/* a huge Linear fails cleanly instead of asking the system */
	uint64_t live = live_bytes();
	assert_int_equal(ln_linear_new(&m, NULL, INT64_C(1) << 40, INT64_C(1) << 40, true, &err) == LN_OK, 0);
	assert_null(m);
	assert_non_null(strstr(err.msg, "has too many elements"));
	assert_int_equal(live_bytes(), live);
}

static void test_sequential_add_rules(void **state)
{
	ln_error err;
	ln_module *s = plain(ln_sequential_new), *r = act("ReLU"), *l = linear(2, 2, true);
	assert_int_equal(ln_sequential_add(s, r, &err), LN_OK);
	assert_int_equal(r->refcount, 2);
	assert_int_equal(ln_sequential_add(s, r, &err), LN_EARG);
	assert_string_equal(err.msg, "this ReLU is already inside the container; a module "
	                             "keeps one output buffer, so it can sit at one place only (create "
	                             "another)");
	assert_int_equal(ln_sequential_add(s, s, &err), LN_EARG);
	assert_string_equal(err.msg, "cannot add a container to itself or to one of its own layers");
	/* a cycle through a nested container */
	ln_module *inner = plain(ln_sequential_new);
	assert_int_equal(ln_sequential_add(s, inner, &err), LN_OK);
	assert_int_equal(ln_sequential_add(inner, s, &err), LN_EARG);
	assert_int_equal(ln_sequential_add(l, r, &err), LN_EARG);
	assert_string_equal(err.msg, "add expects a Sequential, got a Linear");
	assert_int_equal(s->nchildren, 2);
	assert_int_equal(inner->nchildren, 0);
	ln_module_release(inner);
	ln_module_release(r);
	ln_module_release(l);
	ln_module_release(s);
}

/* ---- recursive walks ------------------------------------------------------------------------ */

/* Counts the parameters visited and stops the walk at the third. */
static int stop(ln_module *o, int i, void *ctx)
{
	int *count = ctx;
	return ++*count == 3 ? 7 : 0;
}

static void test_walks(void **state)
{
	ln_module *l1 = linear(2, 3, true), *l2 = linear(3, 4, false), *l3 = linear(4, 1, true);
	ln_module_retain(l1);
	ln_module_retain(l2);
	ln_module_retain(l3);
	ln_module *inner = seq_of(2, l2, act("ReLU"));
	ln_module *s = seq_of(4, l1, dropout(0.5), inner, l3);
	plist l = {.n = 0};
	assert_int_equal(ln_module_visit_params(s, collect, &l), 0);
	assert_int_equal(l.n, 5);
	const pref want[] = {{l1, 0}, {l1, 1}, {l2, 0}, {l3, 0}, {l3, 1}};
	for (int i = 0; i < 5; i++) {
		assert_ptr_equal(l.p[i].owner, want[i].owner);
		assert_int_equal(l.p[i].index, want[i].index);
	}
	/* fn's non-zero result stops the walk */
	int count = 0;
	assert_int_equal(ln_module_visit_params(s, stop, &count), 7);
	assert_int_equal(count, 3);

	for (int i = 0; i < 5; i++)
		ln_tensor_fill(&want[i].owner->grad[want[i].index], 3.0f);
	ln_module_zero_grad(s);
	for (int i = 0; i < 5; i++) {
		const ln_tensor *g = &want[i].owner->grad[want[i].index];
		assert_true(ln_tensor_max(g) == 0 && ln_tensor_min(g) == 0);
	}
	assert_true(s->training && inner->children[1]->training);
	ln_module_set_training(s, false);
	assert_false(s->training || s->children[1]->training || inner->training ||
	             inner->children[1]->training || l3->training);
	ln_module_set_training(s, true);
	assert_true(inner->children[1]->training);
	ln_module_release(l1);
	ln_module_release(l2);
	ln_module_release(l3);
	ln_module_release(s);
}

/* ---- parameters named by the class, state carried between forwards ------------------------- */

typedef struct counted {
	ln_module base;
	int resets;
	ln_tensor last;  /* a field shown as "last" */
} counted;

/* p0, p1, p2, ...: a class whose parameter count comes from its config */
static int counted_param_name(const ln_module *m, int i, char *buf, size_t size)
{
	return snprintf(buf, size, "p%d", i);
}

static ln_tensor *counted_field(ln_module *m, const char *name)
{
	return strcmp(name, "last") == 0 ? &((counted *)m)->last : NULL;
}

static void counted_reset(ln_module *m) { ((counted *)m)->resets++; }

static const ln_module_class counted_class = {
	.name = "Counted",
	.size = sizeof(counted),
	.param_name = counted_param_name,
	.field = counted_field,
	.reset_state = counted_reset,
};

static void test_named_params_and_reset(void **state)
{
	ln_error err;
	ln_module *m;
	assert_int_equal(ln_module_alloc(&m, &counted_class, &err), LN_OK);
	/* more parameters than a fixed list of names holds */
	for (int i = 0; i < 7; i++) {
		char name[8];
		snprintf(name, sizeof name, "p%d", i);
		assert_int_equal(ln_module_add_param(m, NULL, name, LN_PARAM_ONES, 1,
		                                     (int64_t[]){i + 1}, &err), LN_OK);
	}
	assert_int_equal(m->nparams, 7);
	char buf[LN_PARAM_NAME_MAX];
	assert_string_equal(ln_module_param_name(m, 6, buf), "p6");
	assert_int_equal(m->param[6].shape[0], 7);
	assert_int_equal(m->grad[6].shape[0], 7);
	plist l = {.n = 0};
	assert_int_equal(ln_module_visit_params(m, collect, &l), 0);
	assert_int_equal(l.n, 7);
	assert_int_equal(l.p[6].index, 6);
	assert_ptr_equal(counted_field(m, "last"), &((counted *)m)->last);

	/* an allocation failure at any point of growing leaves the module as
	 * it was (the tensor, its gradient, the two arrays) */
	int k = 1;
	for (;; k++) {
		ln_alloc_fail_nth(k);
		ln_status st = ln_module_add_param(m, NULL, "p7", LN_PARAM_ZEROS, 1, (int64_t[]){2},
		                                   &err);
		ln_alloc_fail_nth(0);
		if (st == LN_OK)
			break;
		assert_int_equal(st, LN_ENOMEM);
		assert_int_equal(m->nparams, 7);
		assert_int_equal(m->param[6].shape[0], 7);
	}
	assert_true(k > 4);  /* at least the two tensors and the two arrays */
	assert_int_equal(m->nparams, 8);
	assert_int_equal(ln_module_resize_params(m, LN_MODULE_MAX_PARAMS + 1, &err), LN_ERANGE);
	assert_int_equal(m->nparams, 8);

	/* reset_state reaches every module of a tree */
	ln_module_retain(m);
	ln_module *s = seq_of(2, act("ReLU"), m);
	ln_module_reset_state(s);
	ln_module_reset_state(m);
	assert_int_equal(((counted *)m)->resets, 2);
	ln_module_release(s);
	assert_int_equal(ln_module_resize_params(m, 2, &err), LN_OK);
	assert_int_equal(m->nparams, 2);
	ln_module_release(m);
}

/* ---- allocation failures --------------------------------------------------------------------- */

typedef ln_status (*ctor_fn)(ln_module **out, ln_error *err);

static ln_status new_linear(ln_module **o, ln_error *e) { return ln_linear_new(o, NULL, 5, 4, true, e); }
static ln_status new_linear_nb(ln_module **o, ln_error *e) { return ln_linear_new(o, NULL, 5, 4, false, e); }
static ln_status new_leaky(ln_module **o, ln_error *e) { return ln_activation_new(o, "LeakyReLU", 0.1, e); }
static ln_status new_identity(ln_module **o, ln_error *e) { return ln_activation_new(o, "Identity", 0, e); }
static ln_status new_sigmoid(ln_module **o, ln_error *e) { return ln_activation_new(o, "Sigmoid", 0, e); }
static ln_status new_tanh(ln_module **o, ln_error *e) { return ln_activation_new(o, "Tanh", 0, e); }
static ln_status new_relu(ln_module **o, ln_error *e) { return ln_activation_new(o, "ReLU", 0, e); }
static ln_status new_dropout(ln_module **o, ln_error *e) { return ln_dropout_new(o, 0.5, e); }
static ln_status new_ext(ln_module **o, ln_error *e)
{
	static ext_tanh ctx = {.factor = 1};
	return ln_external_new(o, &ext_ops, &ctx, e);
}
static ln_status new_mlp(ln_module **o, ln_error *e)
{
	ln_module *s = NULL, *c = NULL;
	ln_status st = ln_sequential_new(&s, e);
	if (st != LN_OK)
		return st;
	ctor_fn parts[] = {new_linear, new_relu, new_dropout, new_identity, ln_softmax_new};
	for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
		st = parts[i](&c, e);
		if (st == LN_OK) {
			st = ln_sequential_add(s, c, e);
			ln_module_release(c);
		}
		if (st != LN_OK) {
			ln_module_release(s);
			return st;
		}
	}
	*o = s;
	return LN_OK;
}

static const struct {
	const char *name;
	ctor_fn ctor;
	int64_t in_cols;  /* the input is {3,in_cols} */
} ctors[] = {
	{"Linear", new_linear, 5},      {"Linear", new_linear_nb, 5},
	{"Identity", new_identity, 4}, {"Sigmoid", new_sigmoid, 4},
	{"Tanh", new_tanh, 4},        {"ReLU", new_relu, 4},
	{"LeakyReLU", new_leaky, 4},     {"Softmax", ln_softmax_new, 4},
	{"LogSoftmax", ln_log_softmax_new, 4}, {"Dropout", new_dropout, 4},
	{"Flatten", ln_flatten_new, 4},  {"Sequential", new_mlp, 5},
	{"External", new_ext, 4},
};

static void test_enomem_constructors(void **state)
{
	for (size_t k = 0; k < sizeof ctors / sizeof ctors[0]; k++) {
		int failures = 0;
		for (long n = 1;; n++) {
			assert_true(n < 100);
			uint64_t live = live_bytes();
			ln_module *m = NULL;
			ln_error err;
			ln_alloc_fail_nth(n);
			ln_status s = ctors[k].ctor(&m, &err);
			ln_alloc_fail_nth(0);
			if (s == LN_OK) {
				assert_non_null(m);
				ln_module_release(m);
				assert_int_equal(live_bytes(), live);
				break;
			}
			failures++;
			if (s != LN_ENOMEM)
				fail_msg("%s: allocation %ld failed with %s: %s", ctors[k].name, n,
				         ln_status_name(s), err.msg);
			assert_null(m);
			/* a constructor's message is its own, without its class in
			 * front: the caller adds that (module.h) */
			if (!strstr(err.msg, "out of memory"))
				fail_msg("%s: message does not say out of memory: %s", ctors[k].name, err.msg);
			assert_int_equal(live_bytes(), live);
		}
		assert_true(failures >= 1);
	}
	/* sequential_add */
	ln_module *s = plain(ln_sequential_new), *r = act("ReLU");
	ln_error err;
	ln_alloc_fail_nth(1);
	assert_int_equal(ln_sequential_add(s, r, &err), LN_ENOMEM);
	ln_alloc_fail_nth(0);
	assert_string_equal(err.msg, "out of memory adding layer 1");
	assert_int_equal(s->nchildren, 0);
	assert_int_equal(r->refcount, 1);
	ln_module_release(s);
	ln_module_release(r);
}

/* Fails each allocation of the first forward and then of the first
 * backward in turn: the step reports LN_ENOMEM, and after the module is
 * freed nothing is left allocated. */
static void test_enomem_first_step(void **state)
{
	ln_rng_seed(ln_rng_global(), SEED);
	for (size_t k = 0; k < sizeof ctors / sizeof ctors[0]; k++) {
		for (int phase = 0; phase < 2; phase++) {
			int failures = 0;
			for (long n = 1;; n++) {
				assert_true(n < 100);
				uint64_t live = live_bytes();
				ln_module *m = NULL;
				ln_error err;
				assert_int_equal(ctors[k].ctor(&m, &err), LN_OK);
				ln_tensor x, gy = LN_TENSOR_EMPTY;
				tu_tensor_uniform(&x, 2, (int64_t[]){3, ctors[k].in_cols}, -1, 1);
				ln_status s;
				if (phase == 0) {
					ln_alloc_fail_nth(n);
					s = ln_module_forward(m, &x, &err);
					ln_alloc_fail_nth(0);
				} else {
					forward_ok(m, &x);
					tu_tensor_uniform(&gy, m->output.ndim, m->output.shape, -1, 1);
					ln_alloc_fail_nth(n);
					s = ln_module_backward(m, &x, &gy, &err);
					ln_alloc_fail_nth(0);
				}
				if (s != LN_OK) {
					failures++;
					if (s != LN_ENOMEM)
						fail_msg("%s: allocation %ld failed with %s: %s", ctors[k].name, n,
						         ln_status_name(s), err.msg);
					if (strncmp(err.msg, ctors[k].name, strlen(ctors[k].name)) != 0)
						fail_msg("%s: message does not name the class: %s", ctors[k].name,
						         err.msg);
				} else if (phase == 0) {
					/* the module still works after the failures */
					tu_tensor_uniform(&gy, m->output.ndim, m->output.shape, -1, 1);
					backward_ok(m, &x, &gy);
				}
				ln_tensor_release(&x);
				ln_tensor_release(&gy);
				ln_module_release(m);
				assert_int_equal(live_bytes(), live);
				if (s == LN_OK)
					break;
			}
			assert_true(failures >= 1);
		}
	}
}

/* ---- steady state -------------------------------------------------------------------------------- */

static void train_step(ln_module *m, const ln_tensor *x, const ln_tensor *gy)
{
	ln_module_zero_grad(m);
	forward_ok(m, x);
	backward_ok(m, x, gy);
}

static void test_steady_state_no_alloc(void **state)
{
	ln_rng_seed(ln_rng_global(), SEED);
	ln_tensor x, gy, x4, gy4;
	tu_tensor_uniform(&x, 2, (int64_t[]){16, 20}, -1, 1);
	tu_tensor_uniform(&gy, 2, (int64_t[]){16, 5}, -1, 1);
	ln_module *m = seq_of(4, linear(20, 12, true), act("ReLU"), linear(12, 5, true),
	                      plain(ln_softmax_new));
	train_step(m, &x, &gy);
	train_step(m, &x, &gy);
	uint64_t before = alloc_calls();
	train_step(m, &x, &gy);
	assert_int_equal(alloc_calls(), before);

	/* every layer of this file, 4-D input, nested containers */
	ext_tanh e = {.factor = 1};
	ln_module *inner = seq_of(3, act("Tanh"), dropout(0.5), leaky(0.1));
	ln_module *big = seq_of(11, plain(ln_flatten_new), linear(12, 8, false), inner,
	                        act("Identity"), act("Sigmoid"), external(&e),
	                        linear(8, 6, true), act("ReLU"), linear(6, 4, true),
	                        plain(ln_log_softmax_new), plain(ln_softmax_new));
	tu_tensor_uniform(&x4, 4, (int64_t[]){16, 3, 2, 2}, -1, 1);
	tu_tensor_uniform(&gy4, 2, (int64_t[]){16, 4}, -1, 1);
	train_step(big, &x4, &gy4);
	train_step(big, &x4, &gy4);
	before = alloc_calls();
	train_step(big, &x4, &gy4);
	ln_module_set_training(big, false);
	forward_ok(big, &x4);
	assert_int_equal(alloc_calls(), before);

	/* a smaller batch reuses the larger buffers */
	ln_tensor xs, gys;
	tu_tensor_uniform(&xs, 2, (int64_t[]){4, 20}, -1, 1);
	tu_tensor_uniform(&gys, 2, (int64_t[]){4, 5}, -1, 1);
	before = alloc_calls();
	train_step(m, &xs, &gys);
	assert_int_equal(alloc_calls(), before);

	ln_module_release(m);
	ln_module_release(big);
	ln_tensor *all[] = {&x, &gy, &x4, &gy4, &xs, &gys};
	for (size_t i = 0; i < 6; i++)
		ln_tensor_release(all[i]);
}

/* ---- input_grad = false --------------------------------------------------------------------- */

static ln_module *conv(int64_t cin, int64_t cout)
{
	ln_module *m = NULL;
	ln_error err;
	return must(ln_conv2d_new(&m, NULL, cin, cout, 3, 1, 1, true, &err), &m, &err);
}

static ln_module *batchnorm(int64_t n)
{
	ln_module *m = NULL;
	ln_error err;
	return must(ln_batchnorm_new(&m, NULL, n, &err), &m, &err);
}

/* Builds the model of case i (the same weights for the same seed) and
 * its input shape. */
static ln_module *input_grad_case(int i, int *ndim, int64_t shape[4])
{
	switch (i) {
	case 0:
		*ndim = 2, shape[0] = 5, shape[1] = 6;
		return linear(6, 4, true);
	case 1:
		*ndim = 4, shape[0] = 2, shape[1] = 2, shape[2] = 5, shape[3] = 5;
		return conv(2, 3);
	case 2:
		*ndim = 2, shape[0] = 6, shape[1] = 4;
		return batchnorm(4);
	case 3:
		*ndim = 4, shape[0] = 3, shape[1] = 2, shape[2] = 3, shape[3] = 3;
		return batchnorm(2);
	case 4:
		*ndim = 2, shape[0] = 5, shape[1] = 6;
		return seq_of(3, linear(6, 5, true), act("Tanh"), linear(5, 3, true));
	case 5: /* Flatten first: Linear sees the input too */
		*ndim = 4, shape[0] = 4, shape[1] = 3, shape[2] = 2, shape[3] = 2;
		return seq_of(4, plain(ln_flatten_new), linear(12, 5, true), act("Tanh"),
		              linear(5, 3, true));
	case 6: /* nested: the inner container's first layer sees the input */
		*ndim = 4, shape[0] = 2, shape[1] = 1, shape[2] = 4, shape[3] = 4;
		return seq_of(4, seq_of(3, conv(1, 2), batchnorm(2), act("Tanh")),
		              plain(ln_flatten_new), linear(32, 3, true), act("Sigmoid"));
	default:
		return NULL;
	}
}

/* Whether the parameter gradients of a and b (two trees of one
 * architecture) are the same, bit for bit. */
static void expect_same_grads(ln_module *a, ln_module *b, int which)
{
	plist la = {.n = 0}, lb = {.n = 0};
	ln_module_visit_params(a, collect, &la);
	ln_module_visit_params(b, collect, &lb);
	assert_int_equal(la.n, lb.n);
	for (int k = 0; k < la.n; k++) {
		const ln_tensor *ga = &la.p[k].owner->grad[la.p[k].index];
		const ln_tensor *gb = &lb.p[k].owner->grad[lb.p[k].index];
		assert_int_equal(ln_tensor_numel(ga), ln_tensor_numel(gb));
		if (memcmp(ln_tensor_data(ga), ln_tensor_data(gb),
		           (size_t)ln_tensor_numel(ga) * sizeof(float)) != 0)
			fail_msg("case %d: gradient of parameter %d differs with input_grad off", which, k);
	}
}

/* The first leaf of a tree: the layer that sees its input. */
static ln_module *first_leaf(ln_module *m)
{
	while (m->nchildren > 0)
		m = m->children[0];
	return m;
}

static void test_input_grad_off(void **state)
{
	for (int i = 0;; i++) {
		int ndim;
		int64_t shape[4];
		ln_rng_seed(ln_rng_global(), SEED);
		ln_module *a = input_grad_case(i, &ndim, shape);
		if (!a)
			break;
		ln_rng_seed(ln_rng_global(), SEED);
		ln_module *b = input_grad_case(i, &ndim, shape);
		b->input_grad = false;
		ln_tensor x, gy;
		away_from_kink(&x, ndim, shape);
		forward_ok(a, &x);
		forward_ok(b, &x);
		tu_tensor_uniform(&gy, a->output.ndim, a->output.shape, -1, 1);
		for (int step = 0; step < 2; step++) {  /* the second one adds */
			backward_ok(a, &x, &gy);
			backward_ok(b, &x, &gy);
			expect_same_grads(a, b, i);
			assert_false(a->gx_skipped);
			assert_true(b->gx_skipped);
			assert_true(first_leaf(b)->gx_skipped);
			assert_false(first_leaf(a)->gx_skipped);
			/* the layer that sees the input never needed a grad_input buffer */
			assert_true(ln_tensor_is_empty(&first_leaf(b)->grad_input));
		}
		/* and the gradients it does compute are right */
		double e = tu_gradcheck_ex(b, &x, 1e-2, false, NULL, NULL);
		if (!(e < 1e-2))
			fail_msg("case %d: parameter gradcheck with input_grad off: %g", i, e);
		/* turned back on, it is computed again */
		b->input_grad = true;
		backward_ok(b, &x, &gy);
		assert_false(b->gx_skipped);
		assert_false(first_leaf(b)->gx_skipped);
		ln_module_release(a);
		ln_module_release(b);
		ln_tensor_release(&x);
		ln_tensor_release(&gy);
	}
}

/* Which children compute an input gradient, and the cuts that would
 * leave parameters without one. */
static void test_input_grad_children(void **state)
{
	ln_rng_seed(ln_rng_global(), SEED);
	ln_error err;
	ln_tensor x, gy;
	tu_tensor_uniform(&x, 2, (int64_t[]){3, 4}, -1, 1);
	tu_tensor_uniform(&gy, 2, (int64_t[]){3, 2}, -1, 1);

	/* Flatten, then Linear: with the container's flag off neither
	 * computes dL/dx; the layers after the first Linear all do */
	ln_module *m = seq_of(4, plain(ln_flatten_new), linear(4, 3, true), act("ReLU"),
	                      linear(3, 2, true));
	m->input_grad = false;
	forward_ok(m, &x);
	backward_ok(m, &x, &gy);
	assert_true(m->gx_skipped && m->children[0]->gx_skipped && m->children[1]->gx_skipped);
	assert_false(m->children[2]->gx_skipped || m->children[3]->gx_skipped);
	assert_true(ln_tensor_is_empty(&m->grad_input));

	/* the flag on a child: the container's own dL/dx is cut there */
	m->input_grad = true;
	m->children[1]->input_grad = false;
	backward_ok(m, &x, &gy);
	assert_true(m->gx_skipped && m->children[0]->gx_skipped && m->children[1]->gx_skipped);
	assert_false(m->children[2]->gx_skipped);
	ln_module_release(m);

	/* a cut after a layer with parameters would leave it untrained */
	m = seq_of(3, linear(4, 3, true), act("ReLU"), linear(3, 2, true));
	m->children[2]->input_grad = false;
	forward_ok(m, &x);
	assert_int_equal(ln_module_backward(m, &x, &gy, &err), LN_EARG);
	assert_string_equal(err.msg,
	                    "Sequential:backward: layer 3 (Linear) has input_grad = false, so layer "
	                    "1 (Linear) before it would get no gradient for its parameters (set "
	                    "input_grad = false on the container instead)");
	/* the same cut inside a nested container */
	ln_module_release(m);
	m = seq_of(2, linear(4, 3, true), seq_of(2, act("ReLU"), linear(3, 2, true)));
	m->children[1]->children[0]->input_grad = false;
	forward_ok(m, &x);
	assert_int_equal(ln_module_backward(m, &x, &gy, &err), LN_EARG);
	assert_string_equal(err.msg,
	                    "Sequential:backward: layer 2 (Sequential) computes no input gradient (a "
	                    "layer inside it has input_grad = false), so layer 1 (Linear) before it "
	                    "would get no gradient for its parameters");
	ln_module_release(m);

	/* a module without parameters and input_grad off does nothing */
	m = act("Tanh");
	m->input_grad = false;
	forward_ok(m, &x);
	backward_ok(m, &x, &x);
	assert_true(m->gx_skipped && ln_tensor_is_empty(&m->grad_input));
	ln_module_release(m);

	/* no allocation in the steady state */
	m = seq_of(3, linear(4, 3, true), act("ReLU"), linear(3, 2, true));
	m->input_grad = false;
	train_step(m, &x, &gy);
	uint64_t before = alloc_calls();
	train_step(m, &x, &gy);
	assert_int_equal(alloc_calls(), before);
	ln_module_release(m);
	ln_tensor_release(&x);
	ln_tensor_release(&gy);
}

/* ---- init ---------------------------------------------------------------------------------------- */

static void test_init(void **state)
{
	ln_rng_seed(ln_rng_global(), SEED);
	ln_error err;
	ln_tensor w, c, v;
	tu_tensor(&w, 2, (int64_t[]){50, 30}, NULL);
	double fi, fo;
	assert_int_equal(ln_init_fans(&w, &fi, &fo, &err), LN_OK);
	assert_true(fi == 30 && fo == 50);
	tu_tensor(&c, 4, (int64_t[]){8, 4, 3, 3}, NULL);
	assert_int_equal(ln_init_fans(&c, &fi, &fo, &err), LN_OK);
	assert_true(fi == 36 && fo == 72);

	assert_int_equal(ln_init_xavier(&w, ln_rng_global(), &err), LN_OK);
	double a = sqrt(6.0 / 80);
	assert_true(ln_tensor_max(&w) <= a && ln_tensor_min(&w) >= -a);
	assert_true(ln_tensor_max(&w) > 0.9 * a && ln_tensor_min(&w) < -0.9 * a);

	assert_int_equal(ln_init_he(&c, ln_rng_global(), &err), LN_OK);
	double s2 = 0;
	const float *d = ln_tensor_data(&c);
	for (int i = 0; i < 288; i++)
		s2 += (double)d[i] * d[i];
	/* std sqrt(2/36); 288 samples estimate it within ~4% (1 sd) */
	assert_true(fabs(sqrt(s2 / 288) / sqrt(2.0 / 36) - 1) < 0.15);

	assert_int_equal(ln_init_uniform(&w, ln_rng_global(), -0.5, 0.25, &err), LN_OK);
	assert_true(ln_tensor_max(&w) < 0.25 && ln_tensor_min(&w) >= -0.5);
	assert_int_equal(ln_init_normal(&w, ln_rng_global(), 3, 0, &err), LN_OK);
	assert_true(ln_tensor_max(&w) == 3 && ln_tensor_min(&w) == 3);

	tu_tensor(&v, 1, (int64_t[]){10}, NULL);
	assert_int_equal(ln_init_xavier(&v, ln_rng_global(), &err), LN_ESHAPE);
	assert_string_equal(err.msg, "expected a weight of at least 2 dimensions ({out,in} or "
	                             "{out,in,k,k}) to compute fan_in/fan_out, got {10}");
	assert_int_equal(ln_init_he(&v, ln_rng_global(), &err), LN_ESHAPE);
	assert_int_equal(ln_init_uniform(&v, ln_rng_global(), 1, 0, &err), LN_ERANGE);
	assert_string_equal(err.msg, "expected finite float bounds with a <= b, got a=1, b=0");
	assert_int_equal(ln_init_uniform(&v, ln_rng_global(), 0, INFINITY, &err), LN_ERANGE);
	assert_int_equal(ln_init_normal(&v, ln_rng_global(), 0, -1, &err), LN_ERANGE);
	assert_string_equal(err.msg, "expected a finite mean and a finite std >= 0, got mean=0, std=-1");
	assert_int_equal(ln_init_normal(&v, ln_rng_global(), NAN, 1, &err), LN_ERANGE);
	ln_tensor empty = LN_TENSOR_EMPTY;
	assert_int_equal(ln_init_uniform(&empty, ln_rng_global(), 0, 1, &err), LN_EARG);
	ln_tensor_release(&w);
	ln_tensor_release(&c);
	ln_tensor_release(&v);
}

/* ---- the build context ------------------------------------------------------------------------- */

/* Initial weights come from the context's generator, never from the
 * process-wide one when another is given; the budget stops a config that
 * claims more parameter memory before anything that size is allocated. */
static void test_build_context(void **state)
{
	ln_error err;
	ln_rng a = LN_RNG_INIT, b = LN_RNG_INIT;
	ln_rng_seed(&a, 7);
	ln_rng_seed(&b, 7);
	ln_module_build ca = {.rng = &a}, cb = {.rng = &b};
	ln_rng_seed(ln_rng_global(), SEED);
	uint64_t global_before[4], global_after[4];
	ln_rng_get_state(ln_rng_global(), global_before);
	ln_module *m1 = NULL, *m2 = NULL, *m3 = NULL;
	assert_int_equal(ln_linear_new(&m1, &ca, 5, 4, true, &err), LN_OK);
	assert_int_equal(ln_module_create(&m2, &ln_linear_class, &cb, (const double[]){5, 4, 1}, &err), LN_OK);
	ln_rng_get_state(ln_rng_global(), global_after);
	assert_memory_equal(global_before, global_after, sizeof global_before);
	/* the same seed gives the same weights, by constructor or by config */
	assert_memory_equal(ln_tensor_data(&m1->param[0]), ln_tensor_data(&m2->param[0]),
	                    20 * sizeof(float));
	assert_true(ln_tensor_max(&m1->param[0]) != 0);
	/* the default context draws from the process-wide generator */
	assert_int_equal(ln_linear_new(&m3, NULL, 5, 4, true, &err), LN_OK);
	ln_rng_get_state(ln_rng_global(), global_after);
	assert_memory_not_equal(global_before, global_after, sizeof global_before);
	ln_module_release(m1);
	ln_module_release(m2);
	ln_module_release(m3);

	/* Linear(3 -> 2) holds 6 + 2 floats: 32 bytes exactly fit */
	ln_module_build tight = {.budget = 32};
	assert_int_equal(ln_linear_new(&m1, &tight, 3, 2, true, &err), LN_OK);
	ln_module_release(m1);
	m1 = NULL;
	tight.budget = 31;
	assert_int_equal(ln_linear_new(&m1, &tight, 3, 2, true, &err), LN_ERANGE);
	assert_null(m1);
	assert_non_null(strstr(err.msg, "bias of shape {2} needs 8 bytes, over the budget of 31 bytes "
	                                 "(24 already taken)"));
	/* a huge config fails before allocating anything */
	uint64_t live = live_bytes();
	ln_alloc_stats st0, st1;
	ln_alloc_get_stats(&st0);
	tight.budget = 1 << 20;
	assert_int_equal(ln_module_create(&m1, &ln_linear_class, &tight, (const double[]){1 << 20, 1 << 20, 1},
	                                        &err), LN_ERANGE);
	ln_alloc_get_stats(&st1);
	assert_null(m1);
	assert_non_null(strstr(err.msg, "weight of shape {1048576,1048576} needs 4398046511104 bytes"));
	/* the module struct only: the weight was neither allocated nor tried */
	assert_int_equal(st1.allocs - st0.allocs, 1);
	assert_int_equal(st1.failures, st0.failures);
	assert_int_equal(live_bytes(), live);
	/* buffers count too: BatchNorm(4) holds 4 tensors of 16 bytes */
	tight.budget = 63;
	assert_int_equal(ln_batchnorm_new(&m1, &tight, 4, &err), LN_ERANGE);
	assert_non_null(strstr(err.msg, "running_var of shape {4}"));
	tight.budget = 64;
	assert_int_equal(ln_batchnorm_new(&m1, &tight, 4, &err), LN_OK);
	ln_module_release(m1);
}

/* ---- registry and config ----------------------------------------------------------------------------- */

static void test_registry(void **state)
{
	int n = ln_module_class_count();
	const ln_module_class *cls[64];
	assert_true(n <= 64);
	for (int i = 0; i < n; i++)
		cls[i] = ln_module_class_at(i);
	const char *mine[] = {"Linear", "Identity", "Sigmoid", "Tanh", "ReLU", "LeakyReLU",
	                      "Softmax", "LogSoftmax", "Dropout", "Flatten", "Sequential"};
	assert_true(n >= (int)(sizeof mine / sizeof mine[0]));
	for (int i = 0; i < n; i++) {
		assert_non_null(cls[i]);  /* no hole in the designated initialisers */
		assert_non_null(cls[i]->create);
		assert_ptr_equal(ln_module_class_find(cls[i]->name), cls[i]);
		for (int j = 0; j < i; j++)
			assert_string_not_equal(cls[i]->name, cls[j]->name);
	}
	for (size_t i = 0; i < sizeof mine / sizeof mine[0]; i++)
		assert_non_null(ln_module_class_find(mine[i]));
	assert_null(ln_module_class_find("External"));
	assert_null(ln_module_class_find("linear"));

	/* a module rebuilt from its class name and config describes itself the
	 * same and has parameters of the same shapes */
	ln_module *orig[] = {linear(784, 256, true), linear(3, 4, false), leaky(0.2), dropout(0.5),
	                     plain(ln_softmax_new), plain(ln_sequential_new)};
	const char *desc[] = {"Linear(784 -> 256)", "Linear(3 -> 4, bias=false)", "LeakyReLU(0.2)",
	                      "Dropout(p=0.5)", "Softmax", "Sequential"};
	for (size_t i = 0; i < sizeof orig / sizeof orig[0]; i++) {
		char a[128], b[128];
		orig[i]->cls->describe(orig[i], a, sizeof a);
		assert_string_equal(a, desc[i]);
		const ln_module_class *c = ln_module_class_find(orig[i]->cls->name);
		int nc = 0;
		while (c->config_names[nc])
			nc++;
		assert_int_equal(nc, orig[i]->nconfig);
		ln_module *copy = NULL;
		ln_error err;
		assert_int_equal(ln_module_create(&copy, c, NULL, orig[i]->config, &err), LN_OK);
		copy->cls->describe(copy, b, sizeof b);
		assert_string_equal(a, b);
		assert_int_equal(copy->nparams, orig[i]->nparams);
		for (int p = 0; p < copy->nparams; p++)
			assert_true(ln_tensor_same_shape(&copy->param[p], &orig[i]->param[p]));
		ln_module_release(copy);
		ln_module_release(orig[i]);
	}

	/* configs from a file are checked */
	ln_module *m = NULL;
	ln_error err;
	assert_int_equal(ln_module_create(&m, &ln_linear_class, NULL, (const double[]){NAN, 3, 1}, &err), LN_ERANGE);
	assert_string_equal(err.msg, "expected nin to be an integer >= 1, got nan");
	assert_int_equal(ln_module_create(&m, &ln_linear_class, NULL, (const double[]){2.5, 3, 1}, &err), LN_ERANGE);
	assert_int_equal(ln_module_create(&m, &ln_linear_class, NULL, (const double[]){2, 3, 2}, &err), LN_ERANGE);
	assert_string_equal(err.msg, "expected bias to be an integer in [0, 1], got 2");
	assert_int_equal(ln_module_create(&m, &ln_dropout_class, NULL, (const double[]){1.5}, &err), LN_ERANGE);
	assert_null(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_linear_values),
		cmocka_unit_test(test_activation_values),
		cmocka_unit_test(test_softmax_values),
		cmocka_unit_test(test_softmax_dim),
		cmocka_unit_test(test_flatten_shapes),
		cmocka_unit_test(test_linear_kernels_match_naive),
		cmocka_unit_test(test_linear_default_init),
		cmocka_unit_test(test_gradcheck_layers),
		cmocka_unit_test(test_gradcheck_sequential),
		cmocka_unit_test(test_external_gradcheck),
		cmocka_unit_test(test_external_errors_and_hooks),
		cmocka_unit_test(test_dropout),
		cmocka_unit_test(test_dropout_statistics),
		cmocka_unit_test(test_shape_errors),
		cmocka_unit_test(test_backward_follows_last_forward),
		cmocka_unit_test(test_constructor_errors),
		cmocka_unit_test(test_sequential_add_rules),
		cmocka_unit_test(test_walks),
		cmocka_unit_test(test_named_params_and_reset),
		cmocka_unit_test(test_enomem_constructors),
		cmocka_unit_test(test_enomem_first_step),
		cmocka_unit_test(test_steady_state_no_alloc),
		cmocka_unit_test(test_input_grad_off),
		cmocka_unit_test(test_input_grad_children),
		cmocka_unit_test(test_init),
		cmocka_unit_test(test_build_context),
		cmocka_unit_test(test_registry),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
