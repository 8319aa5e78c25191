/*
 * test_sequence.c -- the layers for sequences and what they lean on:
 * LayerNorm, GELU, SiLU, Embedding, layers on inputs with leading
 * dimensions, CrossEntropyLoss on {N,T,C} logits and gradient clipping.
 * Values worked out from the documented equations, gradient checks for
 * several shapes, error messages, allocation behaviour.
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
#include "nn/layers.h"
#include "nn/loss.h"
#include "nn/module.h"
#include "nn/optim.h"
#include "nn/sequence.h"
#include "testutil.h"

#define SEED 4321u

/* ---- helpers ------------------------------------------------------------------------ */

static ln_module *must(ln_status s, ln_module **m, const ln_error *err)
{
	if (s != LN_OK)
		fail_msg("constructor failed: %s", err->msg);
	return *m;
}

static ln_module *act(const char *name)
{
	ln_module *m = NULL;
	ln_error err;
	return must(ln_activation_new(&m, name, 0, &err), &m, &err);
}

static ln_module *layernorm(int64_t d, double eps)
{
	ln_module *m = NULL;
	ln_error err;
	return must(ln_layernorm_new(&m, NULL, d, eps, &err), &m, &err);
}

static ln_module *embedding(int64_t n, int64_t d)
{
	ln_module *m = NULL;
	ln_error err;
	return must(ln_embedding_new(&m, NULL, n, d, &err), &m, &err);
}

static ln_module *linear(int64_t nin, int64_t nout)
{
	ln_module *m = NULL;
	ln_error err;
	return must(ln_linear_new(&m, NULL, nin, nout, true, &err), &m, &err);
}

static void expect_close(const float *got, const double *want, int n, double tol)
{
	for (int i = 0; i < n; i++)
		if (!(fabs(got[i] - want[i]) <= tol * fmax(1.0, fabs(want[i]))))
			fail_msg("element %d: got %.9g, want %.9g", i, got[i], want[i]);
}

static void expect_gradcheck(ln_module *m, const ln_tensor *x, double tol)
{
	char name[128];
	m->cls->describe(m, name, sizeof name);
	double e = tu_gradcheck_module(m, x, 1e-2);
	if (!(e < tol))
		fail_msg("%s: gradcheck relative error %g >= %g [seed %u]", name, e, tol, SEED);
}

static void expect_error(ln_status got, ln_status want, const ln_error *err, const char *msg)
{
	if (got != want)
		fail_msg("expected %s \"%s\", got %s \"%s\"", ln_status_name(want), msg,
		         ln_status_name(got), got == LN_OK ? "" : err->msg);
	assert_string_equal(err->msg, msg);
}

/* ---- GELU, SiLU ------------------------------------------------------------------- */

/* PyTorch's definitions: GELU(x) = x Phi(x) with the normal CDF (the
 * exact form, approximate='none'), SiLU(x) = x sigmoid(x); the values
 * below are those formulas in double. */
static void test_gelu_silu_values(void **state)
{
	const float xs[] = {-3, -1, -0.5f, 0, 0.5f, 1, 2, 8};
	ln_tensor x;
	tu_tensor(&x, 2, (int64_t[]){2, 4}, xs);
	double gelu[8], silu[8], dgelu[8], dsilu[8];
	for (int i = 0; i < 8; i++) {
		double v = xs[i], cdf = 0.5 * (1 + erf(v / sqrt(2.0)));
		double pdf = exp(-v * v / 2) / sqrt(2 * M_PI), sg = 1 / (1 + exp(-v));
		gelu[i] = v * cdf;
		dgelu[i] = cdf + v * pdf;
		silu[i] = v * sg;
		dsilu[i] = sg * (1 + v * (1 - sg));
	}
	/* two spot values from PyTorch's documentation figures */
	assert_true(fabs(gelu[5] - 0.8413447) < 1e-6 && fabs(silu[5] - 0.7310586) < 1e-6);
	ln_tensor ones;
	tu_tensor(&ones, 2, (int64_t[]){2, 4}, NULL);
	ln_tensor_fill(&ones, 1.0f);
	const char *names[] = {"GELU", "SiLU"};
	const double *fwd[] = {gelu, silu}, *bwd[] = {dgelu, dsilu};
	for (int k = 0; k < 2; k++) {
		ln_module *m = act(names[k]);
		tu_forward_ok(m, &x);
		expect_close(ln_tensor_data(&m->output), fwd[k], 8, 2e-7);
		tu_backward_ok(m, &x, &ones);
		expect_close(ln_tensor_data(&m->grad_input), bwd[k], 8, 2e-6);
		ln_module_release(m);
	}
	ln_tensor_release(&x);
	ln_tensor_release(&ones);
}

/* The GELU module's kernels (cellmath.h's Phi) against the libm
 * references, at 4001 points over [-20, 20] and at huge values: the
 * output within 3e-7 max(|x|, 1) (Phi's bound times |x|, plus rounding),
 * the gradient within 1e-6 max(x^2, 1) |gy|; past |x| = 20 exactly gy or
 * (nearly) 0. */
static void test_gelu_against_naive(void **state)
{
	enum { n = 4006 };
	static float xs[n], gys[n], want[n], wantg[n];
	for (int i = 0; i < 4001; i++) {
		xs[i] = -20.0f + 0.01f * (float)i;
		gys[i] = 1.0f - 0.0005f * (float)i;
	}
	const float ends[] = {1e30f, -1e30f, 3e38f, -3e38f, 1e-30f};
	for (int i = 0; i < 5; i++) {
		xs[4001 + i] = ends[i];
		gys[4001 + i] = 0.5f;
	}
	ln_gelu_forward_naive(want, xs, n);
	ln_gelu_backward_naive(wantg, gys, xs, n);
	ln_tensor x, gy;
	tu_tensor(&x, 2, (int64_t[]){2, n / 2}, xs);
	tu_tensor(&gy, 2, (int64_t[]){2, n / 2}, gys);
	ln_module *m = act("GELU");
	tu_forward_ok(m, &x);
	tu_backward_ok(m, &x, &gy);
	const float *y = ln_tensor_data(&m->output), *gx = ln_tensor_data(&m->grad_input);
	for (int i = 0; i < n; i++) {
		double ax = fabs(xs[i]);
		/* the naive backward's x phi(x) overflows to NaN past 1e19 */
		bool naive_ok = isfinite(wantg[i]);
		if (!(fabs(y[i] - want[i]) <= 3e-7 * fmax(ax, 1.0)) || (ax > 20 && y[i] != want[i]))
			fail_msg("GELU(%g) = %.9g, want %.9g", (double)xs[i], y[i], want[i]);
		if (naive_ok && !(fabs(gx[i] - wantg[i]) <= 1e-6 * fmax(ax * ax, 1.0) * fabs(gys[i])))
			fail_msg("GELU'(%g) * %g = %.9g, want %.9g", (double)xs[i], (double)gys[i], gx[i],
			         wantg[i]);
		if (ax > 20 && !(xs[i] > 0 ? gx[i] == gys[i] : fabs(gx[i]) < 1e-37))
			fail_msg("GELU'(%g) * %g = %.9g", (double)xs[i], (double)gys[i], gx[i]);
	}
	ln_module_release(m);
	ln_tensor_release(&x);
	ln_tensor_release(&gy);
}

/* ---- any leading dimensions ------------------------------------------------------------ */

/* Linear, the activations, Dropout and LayerNorm on {2,3,4}: the same as
 * on the {6,4} of the same numbers; gradient checks on 3-D and 4-D
 * inputs; a 1-D input is an error naming the shape. */
static void test_leading_dimensions(void **state)
{
	ln_rng_seed(ln_rng_global(), SEED);
	ln_tensor x3, x2, x4;
	tu_tensor_uniform(&x3, 3, (int64_t[]){2, 3, 4}, -2, 2);
	tu_tensor(&x2, 2, (int64_t[]){6, 4}, ln_tensor_data(&x3));
	tu_tensor_uniform(&x4, 4, (int64_t[]){2, 1, 3, 4}, -2, 2);
	ln_error err;
	ln_module *dr = NULL;
	must(ln_dropout_new(&dr, 0.5, &err), &dr, &err);
	ln_module_set_training(dr, false);
	ln_module *ms[] = {linear(4, 5), act("GELU"), act("SiLU"), act("Tanh"), dr,
	                   layernorm(4, 1e-5)};
	for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++) {
		ln_module *m = ms[i];
		char name[64];
		m->cls->describe(m, name, sizeof name);
		tu_forward_ok(m, &x2);
		ln_tensor y2 = LN_TENSOR_EMPTY;
		assert_int_equal(ln_tensor_clone(&y2, &m->output, &err), LN_OK);
		tu_forward_ok(m, &x3);
		assert_int_equal(m->output.ndim, 3);
		assert_int_equal(m->output.shape[0], 2);
		assert_int_equal(m->output.shape[1], 3);
		assert_memory_equal(ln_tensor_data(&m->output), ln_tensor_data(&y2),
		                    (size_t)ln_tensor_numel(&y2) * sizeof(float));
		ln_tensor_release(&y2);
		expect_gradcheck(m, &x3, 1e-2);
		expect_gradcheck(m, &x4, 1e-2);

		ln_tensor x1;
		tu_tensor_uniform(&x1, 1, (int64_t[]){4}, -1, 1);
		ln_status st = ln_module_forward(m, &x1, &err);
		assert_int_equal(st, LN_ESHAPE);
		if (!strstr(err.msg, "got {4}") || !strstr(err.msg, "expected input of shape {N,"))
			fail_msg("%s: %s", name, err.msg);
		ln_tensor_release(&x1);
		ln_module_release(m);
	}
	/* the last dimension is named, with the leading ones left open */
	ln_module *l = linear(5, 2);
	expect_error(ln_module_forward(l, &x3, &err), LN_ESHAPE, &err,
	             "Linear: expected input of shape {N,...,5}, got {2,3,4}");
	expect_error(ln_module_forward(l, &x2, &err), LN_ESHAPE, &err,
	             "Linear: expected input of shape {N,5}, got {6,4}");
	ln_module_release(l);
	ln_tensor_release(&x2);
	ln_tensor_release(&x3);
	ln_tensor_release(&x4);
}

/* ---- LayerNorm ------------------------------------------------------------------------- */

/* y = (x - mean) / sqrt(var + eps) * w + b per row, var biased (PyTorch's
 * LayerNorm), with weight and bias set to other values than 1 and 0. */
/* The lane-summed LayerNorm kernels against their one-accumulator
 * references: widths on and off the 8 lanes, with and without gx; the
 * same double sums in another order, so the floats agree to a few ulps. */
static void test_layernorm_against_naive(void **state)
{
	ln_rng_seed(ln_rng_global(), SEED);
	const int64_t ds[] = {1, 7, 8, 128, 131};
	enum { rows = 5, dmax = 131 };
	static float x[rows * dmax], w[dmax], b[dmax], gy[rows * dmax], y[2][rows * dmax],
		gx[2][rows * dmax], mean[2][rows], rstd[2][rows];
	static double acc[2][2 * dmax];
	for (size_t c = 0; c < sizeof ds / sizeof ds[0]; c++) {
		int64_t d = ds[c];
		for (int64_t i = 0; i < rows * d; i++) {
			x[i] = 3.0f + 4.0f * (ln_rng_uniform(ln_rng_global()) - 0.5f);
			gy[i] = ln_rng_uniform(ln_rng_global()) - 0.5f;
		}
		for (int64_t j = 0; j < d; j++) {
			w[j] = 0.5f + ln_rng_uniform(ln_rng_global());
			b[j] = ln_rng_uniform(ln_rng_global()) - 0.5f;
		}
		ln_layernorm_forward_kernel(y[0], mean[0], rstd[0], x, w, b, rows, d, 1e-5);
		ln_layernorm_forward_naive(y[1], mean[1], rstd[1], x, w, b, rows, d, 1e-5);
		for (int with_gx = 0; with_gx < 2; with_gx++) {
			memset(acc, 0, sizeof acc);
			ln_layernorm_backward_kernel(with_gx ? gx[0] : NULL, acc[0], gy, x, mean[0], rstd[0],
			                             w, rows, d);
			ln_layernorm_backward_naive(with_gx ? gx[1] : NULL, acc[1], gy, x, mean[1], rstd[1],
			                            w, rows, d);
			for (int64_t j = 0; j < 2 * d; j++)
				if (!(fabs(acc[0][j] - acc[1][j]) <= 1e-12 * fmax(1.0, fabs(acc[1][j]))))
					fail_msg("d %lld: acc[%lld] %.17g, want %.17g", (long long)d, (long long)j,
					         acc[0][j], acc[1][j]);
		}
		for (int64_t r = 0; r < rows; r++)
			if (!(fabs(mean[0][r] - mean[1][r]) <= 1e-6f * fabsf(mean[1][r]) &&
			      fabs(rstd[0][r] - rstd[1][r]) <= 1e-6f * rstd[1][r]))
				fail_msg("d %lld row %lld: mean %g rstd %g, want %g %g", (long long)d,
				         (long long)r, mean[0][r], rstd[0][r], mean[1][r], rstd[1][r]);
		for (int64_t i = 0; i < rows * d; i++) {
			if (!(fabs(y[0][i] - y[1][i]) <= 1e-6 * fmax(1.0, fabs(y[1][i]))))
				fail_msg("d %lld: y[%lld] %.9g, want %.9g", (long long)d, (long long)i, y[0][i],
				         y[1][i]);
			if (!(fabs(gx[0][i] - gx[1][i]) <= 1e-5 * fmax(1.0, fabs(gx[1][i]))))
				fail_msg("d %lld: gx[%lld] %.9g, want %.9g", (long long)d, (long long)i,
				         gx[0][i], gx[1][i]);
		}
	}
}

static void test_layernorm_values(void **state)
{
	const float xs[] = {1, 2, 3, 4, -1, 0.5f, 0.5f, 7};
	const float ws[] = {1, 2, 0.5f, -1}, bs[] = {0, 1, 0, 2};
	double eps = 1e-3;
	ln_module *m = layernorm(4, eps);
	memcpy(ln_tensor_data(&m->param[0]), ws, sizeof ws);
	memcpy(ln_tensor_data(&m->param[1]), bs, sizeof bs);
	ln_tensor x;
	tu_tensor(&x, 2, (int64_t[]){2, 4}, xs);
	tu_forward_ok(m, &x);
	double want[8];
	for (int r = 0; r < 2; r++) {
		double mu = 0, var = 0;
		for (int j = 0; j < 4; j++)
			mu += xs[r * 4 + j] / 4.0;
		for (int j = 0; j < 4; j++)
			var += (xs[r * 4 + j] - mu) * (xs[r * 4 + j] - mu) / 4.0;
		for (int j = 0; j < 4; j++)
			want[r * 4 + j] = (xs[r * 4 + j] - mu) / sqrt(var + eps) * ws[j] + bs[j];
	}
	expect_close(ln_tensor_data(&m->output), want, 8, 1e-6);
	/* the first row by hand: mean 2.5, var 1.25 */
	assert_true(fabs(want[0] - (-1.5 / sqrt(1.25 + eps))) < 1e-12);

	/* defaults: weight 1, bias 0, eps 1e-5; gradient checks of several shapes */
	ln_module_release(m);
	m = layernorm(4, 1e-5);
	assert_true(ln_tensor_max(&m->param[0]) == 1 && ln_tensor_min(&m->param[0]) == 1);
	assert_true(ln_tensor_max(&m->param[1]) == 0 && ln_tensor_min(&m->param[1]) == 0);
	ln_tensor_uniform(&m->param[0], ln_rng_global(), 0.5f, 1.5f);
	ln_tensor_uniform(&m->param[1], ln_rng_global(), -0.5f, 0.5f);
	expect_gradcheck(m, &x, 1e-2);
	ln_module_release(m);
	const int64_t shapes[][3] = {{1, 1, 7}, {3, 5, 3}, {2, 2, 16}};
	for (int k = 0; k < 3; k++) {
		ln_tensor xk;
		tu_tensor_uniform(&xk, 3, shapes[k], -3, 3);
		m = layernorm(shapes[k][2], 1e-5);
		ln_tensor_uniform(&m->param[0], ln_rng_global(), 0.5f, 1.5f);
		expect_gradcheck(m, &xk, 1e-2);
		ln_module_release(m);
		ln_tensor_release(&xk);
	}
	/* a constant row normalises to 0 (var 0: eps keeps it finite) */
	m = layernorm(3, 1e-5);
	ln_tensor c;
	tu_tensor(&c, 2, (int64_t[]){1, 3}, (float[]){5, 5, 5});
	tu_forward_ok(m, &c);
	assert_true(ln_tensor_max(&m->output) == 0 && ln_tensor_min(&m->output) == 0);
	ln_tensor_release(&c);
	ln_module_release(m);
	ln_tensor_release(&x);
}

static void test_layernorm_errors(void **state)
{
	ln_error err;
	ln_module *m = NULL;
	expect_error(ln_layernorm_new(&m, NULL, 0, 1e-5, &err), LN_ERANGE, &err,
	             "expected a size d >= 1, got 0");
	expect_error(ln_layernorm_new(&m, NULL, 3, 0, &err), LN_ERANGE, &err,
	             "expected eps > 0 and finite, got 0");
	expect_error(ln_layernorm_new(&m, NULL, 3, NAN, &err), LN_ERANGE, &err,
	             "expected eps > 0 and finite, got nan");
	expect_error(ln_layernorm_new(&m, NULL, 3, INFINITY, &err), LN_ERANGE, &err,
	             "expected eps > 0 and finite, got inf");
	assert_null(m);
	m = layernorm(3, 1e-5);
	ln_tensor x;
	tu_tensor_uniform(&x, 3, (int64_t[]){2, 2, 4}, -1, 1);
	expect_error(ln_module_forward(m, &x, &err), LN_ESHAPE, &err,
	             "LayerNorm: expected input of shape {N,...,3}, got {2,2,4}");
	ln_tensor_release(&x);
	ln_module_release(m);
}

/* ---- Embedding ------------------------------------------------------------------------------ */

/* Rows of the weight by label; a repeated label gathers the gradient of
 * every position that used it; grad_input is zeros; initial weights
 * N(0,1). */
static void test_embedding_values(void **state)
{
	ln_rng_seed(ln_rng_global(), SEED);
	ln_module *m = embedding(4, 3);
	float *w = ln_tensor_data(&m->param[0]);
	for (int i = 0; i < 12; i++)
		w[i] = (float)(i + 1);  /* row k (1-based) is 3k-2, 3k-1, 3k */
	ln_tensor x, gy;
	tu_tensor(&x, 2, (int64_t[]){2, 3}, (float[]){2, 4, 2, 1, 2, 3});
	tu_forward_ok(m, &x);
	assert_int_equal(m->output.ndim, 3);
	assert_int_equal(m->output.shape[2], 3);
	const double want[] = {4, 5, 6, 10, 11, 12, 4, 5, 6, 1, 2, 3, 4, 5, 6, 7, 8, 9};
	expect_close(ln_tensor_data(&m->output), want, 18, 0);
	float gys[18];
	for (int i = 0; i < 18; i++)
		gys[i] = (float)(i % 5) - 1.5f;
	tu_tensor(&gy, 3, (int64_t[]){2, 3, 3}, gys);
	ln_module_zero_grad(m);
	tu_backward_ok(m, &x, &gy);
	tu_backward_ok(m, &x, &gy);  /* accumulates */
	double gw[12] = {0};
	const float *lab = ln_tensor_data(&x);
	for (int k = 0; k < 6; k++)
		for (int j = 0; j < 3; j++)
			gw[((int)lab[k] - 1) * 3 + j] += 2 * gys[k * 3 + j];
	expect_close(ln_tensor_data(&m->grad[0]), gw, 12, 1e-6);
	assert_true(gw[3] != 0);  /* label 2 is used three times */
	assert_true(ln_tensor_max(&m->grad_input) == 0 && ln_tensor_min(&m->grad_input) == 0);
	assert_int_equal(m->grad_input.ndim, 2);
	ln_tensor_release(&gy);
	ln_tensor_release(&x);
	ln_module_release(m);

	/* N(0,1) initial weights: mean about 0, variance about 1 */
	m = embedding(100, 50);
	double mean = ln_tensor_mean(&m->param[0]), sq = 0;
	const float *d = ln_tensor_data(&m->param[0]);
	for (int i = 0; i < 5000; i++)
		sq += (double)d[i] * d[i];
	assert_true(fabs(mean) < 0.05 && fabs(sq / 5000 - 1) < 0.08);
	ln_module_release(m);
}

/* The weight gradient against central differences, labels of several
 * shapes with repeats (the labels themselves are not perturbed). */
static void test_embedding_gradcheck(void **state)
{
	ln_rng_seed(ln_rng_global(), SEED);
	const int64_t shapes[][3] = {{2, 5, 0}, {3, 1, 0}, {7, 0, 0}, {2, 2, 3}};
	const int ndims[] = {2, 2, 1, 3};
	for (int k = 0; k < 4; k++) {
		ln_module *m = embedding(4, 3);
		ln_tensor x;
		tu_tensor(&x, ndims[k], shapes[k], NULL);
		float *l = ln_tensor_data(&x);
		for (int64_t i = 0; i < ln_tensor_numel(&x); i++)
			l[i] = (float)(1 + ln_rng_below(ln_rng_global(), 3));  /* 1..3: repeats */
		double e = tu_gradcheck_ex(m, &x, 1e-2, false, NULL, NULL);
		if (!(e < 1e-3))
			fail_msg("Embedding gradcheck %d: relative error %g [seed %u]", k, e, SEED);
		ln_tensor_release(&x);
		ln_module_release(m);
	}
}

static void test_embedding_errors(void **state)
{
	ln_error err;
	ln_module *m = NULL;
	expect_error(ln_embedding_new(&m, NULL, 0, 3, &err), LN_ERANGE, &err,
	             "expected sizes n in 1..16777216 and d >= 1, got 0 and 3");
	expect_error(ln_embedding_new(&m, NULL, 3, 0, &err), LN_ERANGE, &err,
	             "expected sizes n in 1..16777216 and d >= 1, got 3 and 0");
	assert_null(m);
	m = embedding(5, 2);
	ln_tensor x;
	tu_tensor(&x, 2, (int64_t[]){2, 2}, (float[]){1, 2, 3, 6});
	expect_error(ln_module_forward(m, &x, &err), LN_ERANGE, &err,
	             "Embedding: label 6 at row 2, column 2 is out of range 1..5");
	float *l = ln_tensor_data(&x);
	l[3] = 0;
	expect_error(ln_module_forward(m, &x, &err), LN_ERANGE, &err,
	             "Embedding: label 0 at row 2, column 2 is out of range 1..5");
	l[3] = -2;
	expect_error(ln_module_forward(m, &x, &err), LN_ERANGE, &err,
	             "Embedding: label -2 at row 2, column 2 is out of range 1..5");
	l[1] = 1.5f;
	expect_error(ln_module_forward(m, &x, &err), LN_ERANGE, &err,
	             "Embedding: label 1.5 at row 1, column 2 is not an integer");
	l[1] = NAN;
	expect_error(ln_module_forward(m, &x, &err), LN_ERANGE, &err,
	             "Embedding: label nan at row 1, column 2 is not an integer");
	l[1] = INFINITY;
	expect_error(ln_module_forward(m, &x, &err), LN_ERANGE, &err,
	             "Embedding: label inf at row 1, column 2 is not an integer");
	/* labels changed between forward and backward are checked again */
	l[1] = 2;
	l[3] = 4;
	tu_forward_ok(m, &x);
	ln_tensor gy;
	tu_tensor_uniform(&gy, 3, (int64_t[]){2, 2, 2}, -1, 1);
	l[0] = 9;
	expect_error(ln_module_backward(m, &x, &gy, &err), LN_ERANGE, &err,
	             "Embedding:backward: label 9 at row 1, column 1 is out of range 1..5");
	ln_tensor_release(&gy);
	ln_tensor_release(&x);
	/* the output gains a dimension: 8 dimensions of labels are too many */
	tu_tensor(&x, 8, (int64_t[]){1, 1, 1, 1, 1, 1, 1, 1}, (float[]){1});
	expect_error(ln_module_forward(m, &x, &err), LN_ESHAPE, &err,
	             "Embedding: expected labels of at most 7 dimensions, got {1,1,1,1,1,1,1,1}");
	ln_tensor_release(&x);
	ln_module_release(m);
}

/* ---- CrossEntropyLoss on sequences ---------------------------------------------------- */

/* Logits {N,T,C} with labels {N,T}: the mean over the N*T tokens, equal to
 * the {N*T,C} loss of the same rows; sum reduction; probability rows
 * {N,T,C}; gradient checks; messages naming positions as row, column. */
static void test_cross_entropy_sequences(void **state)
{
	ln_rng_seed(ln_rng_global(), SEED);
	ln_error err;
	ln_tensor z3, z2, y2, y1;
	tu_tensor_uniform(&z3, 3, (int64_t[]){2, 3, 5}, -3, 3);
	tu_tensor(&z2, 2, (int64_t[]){6, 5}, ln_tensor_data(&z3));
	const float labels[] = {1, 5, 2, 2, 3, 4};
	tu_tensor(&y2, 2, (int64_t[]){2, 3}, labels);
	tu_tensor(&y1, 1, (int64_t[]){6}, labels);
	for (int r = 0; r < 2; r++) {
		ln_reduction red = r ? LN_REDUCE_SUM : LN_REDUCE_MEAN;
		ln_loss *a, *b;
		assert_int_equal(ln_cross_entropy_loss_new(&a, red, &err), LN_OK);
		assert_int_equal(ln_cross_entropy_loss_new(&b, red, &err), LN_OK);
		double la, lb;
		assert_int_equal(ln_loss_forward(a, &z3, &y2, &la, &err), LN_OK);
		assert_int_equal(ln_loss_forward(b, &z2, &y1, &lb, &err), LN_OK);
		assert_true(la == lb);
		/* by hand: -1/6 sum log softmax(z_t)[y_t] */
		double want = 0;
		const float *z = ln_tensor_data(&z2);
		for (int t = 0; t < 6; t++) {
			double s = 0;
			for (int j = 0; j < 5; j++)
				s += exp(z[t * 5 + j]);
			want -= z[t * 5 + (int)labels[t] - 1] - log(s);
		}
		if (!r)
			want /= 6;
		assert_true(fabs(la - want) < 1e-6 * fmax(1, fabs(want)));
		assert_int_equal(ln_loss_backward(a, &z3, &y2, &err), LN_OK);
		assert_int_equal(ln_loss_backward(b, &z2, &y1, &err), LN_OK);
		assert_int_equal(a->grad_input.ndim, 3);
		assert_memory_equal(ln_tensor_data(&a->grad_input), ln_tensor_data(&b->grad_input),
		                    30 * sizeof(float));
		double e = tu_gradcheck_loss(a, &z3, &y2, 1e-2);
		assert_true(e < 1e-2);
		ln_loss_release(a);
		ln_loss_release(b);
	}
	/* probability rows of the logits' shape, and NLLLoss the same way */
	ln_tensor p;
	tu_tensor_uniform(&p, 3, (int64_t[]){2, 3, 5}, 0, 1);
	ln_loss *c, *nll;
	assert_int_equal(ln_cross_entropy_loss_new(&c, LN_REDUCE_MEAN, &err), LN_OK);
	assert_int_equal(ln_nll_loss_new(&nll, LN_REDUCE_MEAN, &err), LN_OK);
	assert_true(tu_gradcheck_loss(c, &z3, &p, 1e-2) < 1e-2);
	assert_true(tu_gradcheck_loss(nll, &z3, &y2, 1e-2) < 1e-2);
	double l;
	assert_int_equal(ln_loss_forward(nll, &z3, &y2, &l, &err), LN_OK);
	const float *z = ln_tensor_data(&z2);
	double want = 0;
	for (int t = 0; t < 6; t++)
		want -= z[t * 5 + (int)labels[t] - 1] / 6.0;
	assert_true(fabs(l - want) < 1e-6);

	/* errors */
	float *lab = ln_tensor_data(&y2);
	lab[4] = 6;
	expect_error(ln_loss_forward(c, &z3, &y2, &l, &err), LN_ERANGE, &err,
	             "CrossEntropyLoss: label 6 at row 2, column 2 is out of range 1..5");
	lab[4] = 1.5f;
	expect_error(ln_loss_forward(c, &z3, &y2, &l, &err), LN_ERANGE, &err,
	             "CrossEntropyLoss: label 1.5 at row 2, column 2 is not an integer");
	lab[4] = 3;
	expect_error(ln_loss_forward(c, &z3, &y1, &l, &err), LN_ESHAPE, &err,
	             "CrossEntropyLoss: expected labels of shape {2,3} or a target of shape "
	             "{2,3,5}, got {6}");
	ln_tensor y23;
	tu_tensor(&y23, 2, (int64_t[]){3, 2}, labels);
	expect_error(ln_loss_forward(c, &z3, &y23, &l, &err), LN_ESHAPE, &err,
	             "CrossEntropyLoss: expected labels of shape {2,3} or a target of shape "
	             "{2,3,5}, got {3,2}");
	ln_tensor z4;
	tu_tensor_uniform(&z4, 4, (int64_t[]){1, 2, 3, 5}, -1, 1);
	expect_error(ln_loss_forward(c, &z4, &y2, &l, &err), LN_ESHAPE, &err,
	             "CrossEntropyLoss: expected input of shape {N,C} or {N,T,C}, got {1,2,3,5}");
	ln_tensor_data(&p)[7] = -1;
	expect_error(ln_loss_forward(c, &z3, &p, &l, &err), LN_ERANGE, &err,
	             "CrossEntropyLoss: target -1 at index {1,2,3} is negative; probability rows "
	             "must be non-negative");
	ln_tensor_release(&z4);
	ln_tensor_release(&y23);
	ln_tensor_release(&p);
	ln_loss_release(c);
	ln_loss_release(nll);
	ln_tensor_release(&z3);
	ln_tensor_release(&z2);
	ln_tensor_release(&y2);
	ln_tensor_release(&y1);
}

/* ---- gradient clipping ----------------------------------------------------------------- */

static void fill_grads(ln_module *m, const float *v)
{
	ln_tensor_fill(&m->grad[0], v[0]);
	ln_tensor_fill(&m->grad[1], v[1]);
}

/* The total norm over every gradient of a tree, computed by hand; scaled
 * to max_norm when above it (PyTorch's coefficient max_norm/(total+1e-6)),
 * left alone when below; lazily zeroed gradients stay lazy; an infinite
 * or NaN norm as PyTorch: coefficient 0 or NaN. */
static void test_clip_grad_norm(void **state)
{
	ln_error err;
	ln_module *a = linear(3, 2), *b = linear(2, 1), *s = NULL;
	must(ln_sequential_new(&s, &err), &s, &err);
	assert_int_equal(ln_sequential_add(s, a, &err), LN_OK);
	assert_int_equal(ln_sequential_add(s, b, &err), LN_OK);
	fill_grads(a, (float[]){1, 2});  /* 6 ones, 2 twos */
	fill_grads(b, (float[]){-1, 3}); /* 2 minus ones, one three */
	double total = sqrt(6 * 1 + 2 * 4 + 2 * 1 + 9);  /* 5 */
	assert_true(fabs(ln_clip_grad_norm(s, 10) - total) < 1e-12);
	assert_true(ln_tensor_max(&a->grad[0]) == 1 && ln_tensor_max(&b->grad[1]) == 3);
	double got = ln_clip_grad_norm(s, 1);
	assert_true(fabs(got - total) < 1e-12);
	float coef = (float)(1 / (total + 1e-6));
	assert_true(ln_tensor_max(&a->grad[0]) == 1 * coef);
	assert_true(ln_tensor_max(&b->grad[1]) == 3 * coef);
	assert_true(fabs(ln_clip_grad_norm(s, 1e9) - 1) < 1e-6);

	/* lazily zeroed gradients count as zeros and are not written */
	ln_module_zero_grad(a);
	assert_true(a->grad[0].storage->zero_pending);
	got = ln_clip_grad_norm(s, 0.5);  /* only b contributes */
	double bsq = 2 * (double)coef * coef + 9 * (double)coef * coef;
	assert_true(fabs(got - sqrt(bsq)) < 1e-6);
	assert_true(a->grad[0].storage->zero_pending);

	/* non-finite norms */
	fill_grads(a, (float[]){1, INFINITY});
	got = ln_clip_grad_norm(s, 1);
	assert_true(isinf(got));
	assert_true(ln_tensor_max(&a->grad[0]) == 0 && ln_tensor_min(&a->grad[0]) == 0);
	assert_true(isnan(ln_tensor_data(&a->grad[1])[0]));  /* inf * 0 */
	fill_grads(a, (float[]){1, NAN});
	got = ln_clip_grad_norm(s, 1);
	assert_true(isnan(got));
	assert_true(isnan(ln_tensor_data(&a->grad[0])[0]) && isnan(ln_tensor_data(&b->grad[0])[0]));
	assert_true(isnan(ln_clip_coef(NAN, 1)) && ln_clip_coef(INFINITY, 1) == 0);
	assert_true(ln_clip_coef(1, INFINITY) == 1 && ln_clip_coef(0, 0) == 0);

	ln_module_release(a);
	ln_module_release(b);
	ln_module_release(s);
}

/* ---- steady state ------------------------------------------------------------------------ */

/* After the first step, forward and backward of Embedding, LayerNorm,
 * GELU, Linear on 3-D input and the {N,T,C} loss allocate nothing. */
static void test_steady_state_no_alloc(void **state)
{
	ln_rng_seed(ln_rng_global(), SEED);
	ln_error err;
	ln_module *s = NULL;
	must(ln_sequential_new(&s, &err), &s, &err);
	ln_module *ms[] = {embedding(7, 6), layernorm(6, 1e-5), linear(6, 8), act("GELU"),
	                   act("SiLU"), linear(8, 7)};
	for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++) {
		assert_int_equal(ln_sequential_add(s, ms[i], &err), LN_OK);
		ln_module_release(ms[i]);
	}
	ln_loss *c;
	assert_int_equal(ln_cross_entropy_loss_new(&c, LN_REDUCE_MEAN, &err), LN_OK);
	ln_tensor x, y;
	tu_tensor(&x, 2, (int64_t[]){3, 4}, (float[]){1, 2, 3, 4, 5, 6, 7, 1, 2, 3, 3, 3});
	tu_tensor(&y, 2, (int64_t[]){3, 4}, (float[]){2, 3, 4, 5, 6, 7, 1, 2, 3, 3, 3, 1});
	for (int step = 0; step < 3; step++) {
		uint64_t before = tu_alloc_calls();
		double l;
		ln_module_zero_grad(s);
		tu_forward_ok(s, &x);
		assert_int_equal(ln_loss_forward(c, &s->output, &y, &l, &err), LN_OK);
		assert_int_equal(ln_loss_backward(c, &s->output, &y, &err), LN_OK);
		tu_backward_ok(s, &x, &c->grad_input);
		ln_clip_grad_norm(s, 1.0);
		if (step > 0)
			assert_int_equal(tu_alloc_calls(), before);
	}
	ln_loss_release(c);
	ln_tensor_release(&x);
	ln_tensor_release(&y);
	ln_module_release(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_gelu_silu_values),
		cmocka_unit_test(test_gelu_against_naive),
		cmocka_unit_test(test_leading_dimensions),
		cmocka_unit_test(test_layernorm_values),
		cmocka_unit_test(test_layernorm_against_naive),
		cmocka_unit_test(test_layernorm_errors),
		cmocka_unit_test(test_embedding_values),
		cmocka_unit_test(test_embedding_gradcheck),
		cmocka_unit_test(test_embedding_errors),
		cmocka_unit_test(test_cross_entropy_sequences),
		cmocka_unit_test(test_clip_grad_norm),
		cmocka_unit_test(test_steady_state_no_alloc),
	};
	ln_rng_seed(ln_rng_global(), SEED);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
