/*
 * test_conv.c -- Conv2d, MaxPool2d, AvgPool2d and BatchNorm: gradient
 * checks, the im2col path against the direct-loop reference, hand-worked
 * examples, BatchNorm's training/evaluate behaviour, error messages,
 * allocation failures and the allocation-free steady state.
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
#include "core/gemm.h"
#include "core/rng.h"
#include "nn/conv.h"
#include "nn/layers.h"
#include "testutil.h"

#define SEED 20240611u

/* ---- helpers ---------------------------------------------------------------- */

static ln_module *conv_make(int64_t cin, int64_t cout, int64_t k, int64_t s, int64_t p, bool bias)
{
	ln_module *m;
	ln_error err;
	if (ln_conv2d_new(&m, NULL, cin, cout, k, s, p, bias, &err) != LN_OK)
		fail_msg("ln_conv2d_new: %s", err.msg);
	return m;
}

static ln_module *conv_new(int64_t cin, int64_t cout, int64_t k, int64_t s, int64_t p)
{
	return conv_make(cin, cout, k, s, p, true);
}

static ln_module *maxpool_new(int64_t k, int64_t s)
{
	ln_module *m;
	ln_error err;
	if (ln_maxpool2d_new(&m, k, s, &err) != LN_OK)
		fail_msg("ln_maxpool2d_new: %s", err.msg);
	return m;
}

static ln_module *avgpool_new(int64_t k, int64_t s)
{
	ln_module *m;
	ln_error err;
	if (ln_avgpool2d_new(&m, k, s, &err) != LN_OK)
		fail_msg("ln_avgpool2d_new: %s", err.msg);
	return m;
}

static ln_module *batchnorm_new(int64_t n)
{
	ln_module *m;
	ln_error err;
	if (ln_batchnorm_new(&m, NULL, n, &err) != LN_OK)
		fail_msg("ln_batchnorm_new: %s", err.msg);
	return m;
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

static void fill_uniform(ln_tensor *t, float lo, float hi)
{
	float *d = ln_tensor_data(t);
	for (int64_t i = 0; i < ln_tensor_numel(t); i++)
		d[i] = lo + (hi - lo) * (float)ln_rng_uniform(ln_rng_global());
}

/* Largest |a-b| / (atol + rtol |b|) over n floats: <= 1 means allclose. */
static double close_ratio(const float *a, const float *b, int64_t n, double rtol, double atol)
{
	double worst = 0;
	for (int64_t i = 0; i < n; i++) {
		double r = fabs((double)a[i] - b[i]) / (atol + rtol * fabs((double)b[i]));
		if (!(r <= worst))
			worst = isnan(r) ? INFINITY : r;
	}
	return worst;
}

static void expect_close(const char *what, const float *a, const float *b, int64_t n)
{
	double r = close_ratio(a, b, n, 1e-4, 1e-5);
	if (!(r <= 1.0))
		fail_msg("%s: not allclose (worst ratio %g, seed %u)", what, r, SEED);
}

/* Runs forward and checks the error: status and exact message. */
static void expect_forward_error(ln_module *m, const ln_tensor *x, ln_status code,
                                 const char *msg)
{
	ln_error err;
	memset(&err, 0, sizeof err);
	ln_status st = ln_module_forward(m, x, &err);
	if (st != code)
		fail_msg("expected %s, got %s (%s)", ln_status_name(code), ln_status_name(st), err.msg);
	assert_string_equal(err.msg, msg);
}

static void check_grad(const char *what, ln_module *m, const ln_tensor *x, double eps, double tol)
{
	double e = tu_gradcheck_module(m, x, eps);
	if (!(e <= tol))
		fail_msg("%s: gradcheck relative error %g > %g (seed %u)", what, e, tol, SEED);
}

static uint64_t allocs_now(void)
{
	ln_alloc_stats s;
	ln_alloc_get_stats(&s);
	return s.allocs;
}

static uint64_t bytes_live_now(void)
{
	ln_alloc_stats s;
	ln_alloc_get_stats(&s);
	return s.bytes_live;
}

/* ==== Conv2d ================================================================= */

struct conv_case {
	int64_t n, cin, h, w, cout;
	int64_t kh, kw, sh, sw, ph, pw, dh, dw, groups;
	bool same;
};

static const struct conv_case conv_cases[] = {
	/* n cin h w cout  kh kw sh sw ph pw dh dw groups same */
	{2, 2, 5, 7, 3, 3, 3, 1, 1, 0, 0, 1, 1, 1, false},  /* non-square input, no padding */
	{2, 2, 5, 7, 3, 3, 3, 2, 2, 1, 1, 1, 1, 1, false},  /* stride 2, padding 1 */
	{1, 1, 4, 4, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, false},  /* even kernel, padding */
	{3, 3, 7, 5, 2, 3, 3, 2, 2, 0, 0, 1, 1, 1, false},  /* stride 2, odd sizes */
	{2, 3, 6, 5, 4, 1, 1, 1, 1, 0, 0, 1, 1, 1, false},  /* 1x1: the columns are the sample */
	{2, 2, 8, 9, 2, 3, 3, 3, 3, 2, 2, 1, 1, 1, false},  /* stride 3, padding 2 */
	{2, 1, 3, 3, 2, 5, 5, 1, 1, 1, 1, 1, 1, 1, false},  /* kernel larger than the input */
	{2, 2, 6, 7, 3, 2, 3, 1, 2, 1, 0, 1, 1, 1, false},  /* rectangular kernel and stride */
	{2, 2, 7, 8, 2, 3, 3, 1, 1, 2, 2, 2, 2, 1, false},  /* dilation 2, padding 2: same size */
	{2, 2, 9, 8, 2, 3, 2, 2, 1, 1, 2, 2, 3, 1, false},  /* dilation 2x3, stride 2x1 */
	{2, 2, 5, 9, 2, 3, 3, 1, 1, 0, 1, 1, 1, 1, false},  /* stride 1, wo = w, ho < h */
	{2, 4, 5, 6, 6, 3, 3, 1, 1, 1, 1, 1, 1, 2, false},  /* two groups */
	{2, 3, 5, 5, 6, 3, 3, 1, 1, 1, 1, 1, 1, 3, false},  /* depthwise, two outputs each */
	{2, 3, 6, 5, 3, 3, 3, 2, 2, 1, 1, 1, 1, 3, false},  /* depthwise, stride 2 */
	{2, 4, 4, 4, 4, 1, 1, 1, 1, 0, 0, 1, 1, 2, false},  /* 1x1 in two groups */
	{2, 2, 5, 6, 3, 4, 2, 1, 1, 0, 0, 1, 1, 1, true},   /* same, even kernel: pads 1+2, 0+1 */
	{2, 2, 6, 5, 2, 3, 3, 1, 1, 0, 0, 2, 1, 1, true},   /* same, dilated */
	{2, 2, 3, 3, 2, 3, 3, 1, 1, 0, 0, 3, 3, 1, true},   /* same, a span wider than the input */
	{1, 2, 5, 39, 2, 3, 3, 2, 2, 1, 1, 1, 1, 1, false}, /* stride 2, rows of 20: vector loop */
	{1, 3, 4, 37, 2, 1, 1, 2, 2, 0, 0, 1, 1, 1, false}, /* 1x1 stride 2 (a projection), 19 */
};
#define NCONV (sizeof conv_cases / sizeof conv_cases[0])

static ln_conv2d_opts case_opts(const struct conv_case *c, bool bias)
{
	return (ln_conv2d_opts){.cin = c->cin, .cout = c->cout, .kh = c->kh, .kw = c->kw,
	                        .sh = c->sh, .sw = c->sw, .ph = c->ph, .pw = c->pw, .dh = c->dh,
	                        .dw = c->dw, .groups = c->groups, .same = c->same, .bias = bias};
}

static ln_module *conv_case_new(const struct conv_case *c, bool bias)
{
	ln_module *m;
	ln_error err;
	ln_conv2d_opts o = case_opts(c, bias);
	if (ln_conv2d_new_opts(&m, NULL, &o, &err) != LN_OK)
		fail_msg("ln_conv2d_new_opts: %s", err.msg);
	return m;
}

/* Every case, with and without a bias. */
static void test_conv2d_gradcheck(void **state)
{
	for (int bias = 0; bias < 2; bias++)
		for (size_t i = 0; i < NCONV; i++) {
			const struct conv_case *c = &conv_cases[i];
			ln_rng_seed(ln_rng_global(), SEED + i);
			ln_module *m = conv_case_new(c, bias);
			if (bias)
				fill_uniform(&m->param[1], -0.5f, 0.5f);
			ln_tensor x;
			int64_t shape[4] = {c->n, c->cin, c->h, c->w};
			tu_tensor_uniform(&x, 4, shape, -1.0f, 1.0f);
			char what[64];
			snprintf(what, sizeof what, "Conv2d case %zu bias %d", i, bias);
			check_grad(what, m, &x, 1e-2, 1e-2);
			ln_tensor_release(&x);
			ln_module_release(m);
		}
}

/* The im2col/gemm path (with and without a bias, and without the input
 * gradient) against the direct loops, forward and backward, on random
 * data; also that parameter gradients add up over two backward calls
 * while grad_input is overwritten. */
static void test_conv2d_matches_reference(void **state)
{
	for (int variant = 0; variant < 3; variant++)
		for (size_t i = 0; i < NCONV; i++) {
			const struct conv_case *c = &conv_cases[i];
			ln_rng_seed(ln_rng_global(), SEED + 100 + i);
			const bool bias = variant != 1, want_gx = variant != 2;
			ln_module *m = conv_case_new(c, bias);
			m->input_grad = want_gx;
			if (bias)
				fill_uniform(&m->param[1], -1.0f, 1.0f);
			const float *b = bias ? ln_tensor_data(&m->param[1]) : NULL;
			ln_tensor x, gy, yref, gxref, gwref, gbref;
			int64_t shape[4] = {c->n, c->cin, c->h, c->w};
			tu_tensor_uniform(&x, 4, shape, -2.0f, 2.0f);
			forward_ok(m, &x);

			ln_conv2d_geom g;
			ln_conv2d_opts o = case_opts(c, bias);
			ln_conv2d_geom_init(&g, &o, c->n, c->h, c->w);
			if (c->same)
				assert_true(g.ho == c->h && g.wo == c->w);
			int64_t yshape[4] = {c->n, c->cout, g.ho, g.wo};
			assert_int_equal(m->output.ndim, 4);
			assert_memory_equal(m->output.shape, yshape, sizeof yshape);
			tu_tensor(&yref, 4, yshape, NULL);
			ln_conv2d_forward_naive(ln_tensor_data(&yref), ln_tensor_data(&x),
			                        ln_tensor_data(&m->param[0]), b, &g);
			expect_close("forward", ln_tensor_data(&m->output), ln_tensor_data(&yref),
			             ln_tensor_numel(&yref));

			tu_tensor_uniform(&gy, 4, yshape, -1.0f, 1.0f);
			tu_tensor(&gxref, 4, shape, NULL);
			tu_tensor(&gwref, m->param[0].ndim, m->param[0].shape, NULL);
			tu_tensor(&gbref, 1, (int64_t[]){c->cout}, NULL);
			float *gb = bias ? ln_tensor_data(&gbref) : NULL;
			for (int round = 0; round < 2; round++) {
				/* the second backward: parameter gradients accumulate, the
				 * reference accumulates too; grad_input is the same again */
				ln_conv2d_backward_naive(ln_tensor_data(&gxref), ln_tensor_data(&gwref), gb,
				                         ln_tensor_data(&gy), ln_tensor_data(&x),
				                         ln_tensor_data(&m->param[0]), &g);
				if (round == 0)
					ln_module_zero_grad(m);
				backward_ok(m, &x, &gy);
				if (want_gx)
					expect_close("grad_input", ln_tensor_data(&m->grad_input),
					             ln_tensor_data(&gxref), ln_tensor_numel(&gxref));
				else
					assert_true(m->gx_skipped && ln_tensor_is_empty(&m->grad_input));
				expect_close("grad_weight", ln_tensor_data(&m->grad[0]), ln_tensor_data(&gwref),
				             ln_tensor_numel(&gwref));
				if (bias)
					expect_close("grad_bias", ln_tensor_data(&m->grad[1]), gb,
					             ln_tensor_numel(&gbref));
			}

			ln_tensor_release(&x);
			ln_tensor_release(&gy);
			ln_tensor_release(&yref);
			ln_tensor_release(&gxref);
			ln_tensor_release(&gwref);
			ln_tensor_release(&gbref);
			ln_module_release(m);
		}
}

/* A worked example: x = 1..9 as 3x3, w = [[1,0],[0,-1]], b = 0.5.
 *   stride 1, padding 0: y[i,j] = x[i,j] - x[i+1,j+1] + 0.5 = -3.5 (2x2)
 *   stride 2, padding 1: the padded 5x5 input gives 2x2 outputs
 *     y[0,0] = 0 - x[0,0] = -1,   y[0,1] = 0 - x[0,2] = -3,
 *     y[1,0] = 0 - x[2,0] = -7,   y[1,1] = x[1,1] - x[2,2] = -4   (+0.5)
 *   dilation 2, padding "same" (pads 1 on each side): the taps are
 *     (0,0) and (2,2) apart, y[i,j] = x[i-1,j-1] - x[i+1,j+1] + 0.5:
 *     y[1,1] = 1 - 9 + 0.5, the corners one tap each: y[0,0] = -5 + 0.5,
 *     y[2,2] = 5 + 0.5
 * and the same numbers from the reference kernel. */
static void test_conv2d_worked_example(void **state)
{
	static const float xv[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
	static const float wv[4] = {1, 0, 0, -1};
	static const float want0[4] = {-3.5f, -3.5f, -3.5f, -3.5f};
	static const float want1[4] = {-0.5f, -2.5f, -6.5f, -3.5f};
	static const float want2[9] = {-4.5f, -5.5f, 0.5f, -7.5f, -7.5f, 2.5f, 0.5f, 4.5f, 5.5f};
	int64_t xs[4] = {1, 1, 3, 3};
	ln_tensor x;
	tu_tensor(&x, 4, xs, xv);
	for (int c = 0; c < 3; c++) {
		ln_conv2d_opts o;
		ln_conv2d_opts_init(&o, 1, 1, 2);
		o.sh = o.sw = c == 1 ? 2 : 1;
		o.ph = o.pw = c == 1 ? 1 : 0;
		o.dh = o.dw = c == 2 ? 2 : 1;
		o.same = c == 2;
		ln_module *m;
		ln_error err;
		assert_int_equal(ln_conv2d_new_opts(&m, NULL, &o, &err), LN_OK);
		memcpy(ln_tensor_data(&m->param[0]), wv, sizeof wv);
		ln_tensor_fill(&m->param[1], 0.5f);
		forward_ok(m, &x);
		const int64_t side = c == 2 ? 3 : 2, npix = side * side;
		int64_t ys[4] = {1, 1, side, side};
		assert_memory_equal(m->output.shape, ys, sizeof ys);
		const float *want = c == 0 ? want0 : c == 1 ? want1 : want2;
		for (int i = 0; i < npix; i++)
			assert_true(ln_tensor_data(&m->output)[i] == want[i]);
		float yref[9];
		ln_conv2d_geom g;
		ln_conv2d_geom_init(&g, &o, 1, 3, 3);
		ln_conv2d_forward_naive(yref, xv, wv, ln_tensor_data(&m->param[1]), &g);
		for (int i = 0; i < npix; i++)
			assert_true(yref[i] == want[i]);
		if (c == 2) {
			ln_module_release(m);
			continue;
		}
		/* backward with gy = 1: grad_bias = 4 (four outputs), and
		 * grad_weight[1,1] = the sum of the inputs tap (1,1) reads:
		 * stride 1 reads x[i+1,j+1] = 5+6+8+9 = 28; stride 2 padding 1
		 * reads x[2i,2j] = 1+3+7+9 = 20 */
		ln_tensor gy;
		tu_tensor(&gy, 4, ys, NULL);
		ln_tensor_fill(&gy, 1.0f);
		ln_module_zero_grad(m);
		backward_ok(m, &x, &gy);
		assert_true(ln_tensor_data(&m->grad[1])[0] == 4.0f);
		assert_true(ln_tensor_data(&m->grad[0])[3] == (c ? 20.0f : 28.0f));
		ln_tensor_release(&gy);
		ln_module_release(m);
	}
	ln_tensor_release(&x);
}

/* im2col followed by col2im multiplies each input element by the number
 * of windows that read it: for 3x3 stride 1 padding 1 on 4x4, corners are
 * read 4 times, edges 6, the inside 9. */
static void test_conv2d_col2im_is_adjoint(void **state)
{
	ln_conv2d_opts o;
	ln_conv2d_opts_init(&o, 1, 1, 3);
	o.ph = o.pw = 1;
	ln_conv2d_geom g;
	ln_conv2d_geom_init(&g, &o, 1, 4, 4);
	assert_true(g.ho == 4 && g.wo == 4);
	float x[16], col[9 * 16], back[16];
	for (int i = 0; i < 16; i++)
		x[i] = 1.0f;
	ln_conv2d_im2col(col, 16, x, &g);
	ln_conv2d_col2im(back, col, 16, &g);
	static const float want[16] = {4, 6, 6, 4, 6, 9, 9, 6, 6, 9, 9, 6, 4, 6, 6, 4};
	for (int i = 0; i < 16; i++)
		assert_true(back[i] == want[i]);
}

static void test_conv2d_init_and_describe(void **state)
{
	ln_rng_seed(ln_rng_global(), SEED);
	ln_module *m = conv_new(16, 32, 3, 1, 1);
	char buf[128];
	m->cls->describe(m, buf, sizeof buf);
	assert_string_equal(buf, "Conv2d(16 -> 32, 3x3, stride 1, padding 1)");
	assert_string_equal(m->cls->name, "Conv2d");
	assert_int_equal(m->nparams, 2);
	int64_t ws[4] = {32, 16, 3, 3};
	assert_memory_equal(m->param[0].shape, ws, sizeof ws);
	assert_int_equal(m->param[1].shape[0], 32);
	/* cin cout k stride padding bias kw stride_w padding_w dilation dilation_w groups same */
	static const double want_cfg[13] = {16, 32, 3, 1, 1, 1, 3, 1, 1, 1, 1, 1, 0};
	assert_int_equal(m->nconfig, 13);
	for (int i = 0; i < 13; i++)
		assert_true(m->config[i] == want_cfg[i]);
	/* He: std sqrt(2/144) = 0.118; 4608 samples give it within a few % */
	double s = 0, ss = 0;
	const float *w = ln_tensor_data(&m->param[0]);
	int64_t n = ln_tensor_numel(&m->param[0]);
	for (int64_t i = 0; i < n; i++) {
		s += w[i];
		ss += (double)w[i] * w[i];
	}
	double mean = s / n, sd = sqrt(ss / n - mean * mean);
	assert_true(fabs(mean) < 0.01);
	assert_true(fabs(sd - sqrt(2.0 / 144)) < 0.01);
	assert_true(ln_tensor_sum(&m->param[1]) == 0.0);
	ln_module_release(m);

	/* every option in the description, and in the weight's shape: fan_in
	 * of a group */
	ln_conv2d_opts o;
	ln_conv2d_opts_init(&o, 6, 4, 3);
	o.kw = 5, o.sh = 2, o.ph = 1, o.pw = 2, o.dh = 2, o.groups = 2, o.bias = false;
	ln_error err;
	assert_int_equal(ln_conv2d_new_opts(&m, NULL, &o, &err), LN_OK);
	m->cls->describe(m, buf, sizeof buf);
	assert_string_equal(buf, "Conv2d(6 -> 4, 3x5, stride 2x1, padding 1x2, dilation 2x1, "
	                         "groups 2, bias=false)");
	int64_t gws[4] = {4, 3, 3, 5};
	assert_memory_equal(m->param[0].shape, gws, sizeof gws);
	ln_module_release(m);
	ln_conv2d_opts_init(&o, 2, 2, 4);
	o.same = true;
	o.ph = 99;  /* not read */
	assert_int_equal(ln_conv2d_new_opts(&m, NULL, &o, &err), LN_OK);
	m->cls->describe(m, buf, sizeof buf);
	assert_string_equal(buf, "Conv2d(2 -> 2, 4x4, stride 1, padding same)");
	assert_true(m->config[4] == 1 && m->config[8] == 1 && m->config[12] == 1);  /* pads 1+2 */
	ln_module_release(m);

	/* created from config, as the loader does: a file from before the
	 * later entries has the defaults for them */
	double cfg[LN_MODULE_MAX_CONFIG];
	memcpy(cfg, ln_conv2d_class.config_defaults, sizeof cfg);
	const double old[6] = {1, 16, 3, 2, 0, 1};
	memcpy(cfg, old, sizeof old);
	assert_int_equal(ln_module_create(&m, &ln_conv2d_class, NULL, cfg, &err), LN_OK);
	m->cls->describe(m, buf, sizeof buf);
	assert_string_equal(buf, "Conv2d(1 -> 16, 3x3, stride 2, padding 0)");
	ln_module_release(m);
	/* without a bias: one parameter, named so */
	cfg[5] = 0;
	assert_int_equal(ln_module_create(&m, &ln_conv2d_class, NULL, cfg, &err), LN_OK);
	m->cls->describe(m, buf, sizeof buf);
	assert_string_equal(buf, "Conv2d(1 -> 16, 3x3, stride 2, padding 0, bias=false)");
	assert_int_equal(m->nparams, 1);
	ln_module_release(m);
	cfg[5] = 2;
	assert_int_equal(ln_module_create(&m, &ln_conv2d_class, NULL, cfg, &err), LN_ERANGE);
	assert_string_equal(err.msg, "expected bias to be an integer in [0, 1], got 2");
	cfg[5] = 1;
	cfg[2] = 2.5;
	assert_int_equal(ln_module_create(&m, &ln_conv2d_class, NULL, cfg, &err), LN_ERANGE);
	assert_null(m);
	assert_non_null(strstr(err.msg, "2.5"));
	cfg[2] = 3;
	cfg[11] = 4;  /* groups that do not divide the channels */
	assert_int_equal(ln_module_create(&m, &ln_conv2d_class, NULL, cfg, &err), LN_ERANGE);
	assert_string_equal(err.msg, "in_channels (1) and out_channels (16) must both be multiples "
	                             "of groups (4)");
	/* a saved config gives the same module back */
	ln_conv2d_opts_init(&o, 4, 6, 3);
	o.kw = 2, o.sw = 3, o.pw = 1, o.dh = 2, o.groups = 2;
	ln_module *a, *b;
	assert_int_equal(ln_conv2d_new_opts(&a, NULL, &o, &err), LN_OK);
	assert_int_equal(ln_module_create(&b, &ln_conv2d_class, NULL, a->config, &err), LN_OK);
	char da[128], db[128];
	a->cls->describe(a, da, sizeof da);
	b->cls->describe(b, db, sizeof db);
	assert_string_equal(da, db);
	assert_memory_equal(a->config, b->config, sizeof a->config);
	ln_module_release(a);
	ln_module_release(b);
}

static void test_conv2d_errors(void **state)
{
	ln_module *m = conv_new(3, 16, 3, 1, 0);
	ln_tensor x;
	int64_t s1[4] = {8, 1, 28, 28};
	tu_tensor(&x, 4, s1, NULL);
	expect_forward_error(m, &x, LN_ESHAPE,
	                     "Conv2d: expected input of shape {N,3,H,W}, got {8,1,28,28}");
	ln_tensor_release(&x);
	int64_t s2[3] = {3, 28, 28};
	tu_tensor(&x, 3, s2, NULL);
	expect_forward_error(m, &x, LN_ESHAPE,
	                     "Conv2d: expected input of shape {N,3,H,W}, got {3,28,28}");
	ln_tensor_release(&x);
	int64_t s3[4] = {2, 3, 2, 9};
	tu_tensor(&x, 4, s3, NULL);
	expect_forward_error(m, &x, LN_ESHAPE,
	                     "Conv2d: input of shape {2,3,2,9} is smaller than the 3x3 kernel's "
	                     "span (3x3 with dilation; 2x9 after padding)");
	ln_tensor_release(&x);
	ln_module_release(m);

	m = conv_new(1, 2, 5, 1, 1);
	int64_t s4[4] = {2, 1, 3, 2};
	tu_tensor(&x, 4, s4, NULL);
	expect_forward_error(m, &x, LN_ESHAPE,
	                     "Conv2d: input of shape {2,1,3,2} is smaller than the 5x5 kernel's "
	                     "span (5x5 with dilation; 5x4 after padding)");
	ln_tensor_release(&x);

	/* backward before forward, and with a gradient of the wrong shape */
	int64_t s5[4] = {2, 1, 6, 6}, gs[4] = {2, 2, 4, 3};
	ln_tensor gy;
	ln_error err;
	tu_tensor(&x, 4, s5, NULL);
	tu_tensor(&gy, 4, gs, NULL);
	assert_int_equal(ln_module_backward(m, &x, &gy, &err), LN_ESTATE);
	forward_ok(m, &x);
	assert_int_equal(ln_module_backward(m, &x, &gy, &err), LN_ESHAPE);
	assert_non_null(strstr(err.msg, "{2,2,4,4}"));
	assert_non_null(strstr(err.msg, "{2,2,4,3}"));
	ln_tensor_release(&gy);
	ln_tensor_release(&x);
	ln_module_release(m);

	/* constructor arguments */
	assert_int_equal(ln_conv2d_new(&m, NULL, 0, 16, 3, 1, 0, true, &err), LN_ERANGE);
	assert_null(m);
	assert_string_equal(err.msg, "in_channels must be >= 1, got 0");
	assert_int_equal(ln_conv2d_new(&m, NULL, 1, 16, 3, 0, 0, true, &err), LN_ERANGE);
	assert_string_equal(err.msg, "stride must be >= 1, got 0");
	assert_int_equal(ln_conv2d_new(&m, NULL, 1, 16, 3, 1, -1, true, &err), LN_ERANGE);
	assert_string_equal(err.msg, "padding must be >= 0, got -1");
	assert_int_equal(ln_conv2d_new(&m, NULL, 1, 16, 0, 1, 0, true, &err), LN_ERANGE);
	assert_string_equal(err.msg, "kernel size must be >= 1, got 0");
	assert_int_equal(ln_conv2d_new(&m, NULL, 1, 16, 3, 1, INT64_C(1) << 40, true, &err), LN_ERANGE);
	assert_string_equal(err.msg, "padding must be <= 2147483647, got 1099511627776");
	ln_conv2d_opts o;
	ln_conv2d_opts_init(&o, 4, 4, 3);
	o.dw = 0;
	assert_int_equal(ln_conv2d_new_opts(&m, NULL, &o, &err), LN_ERANGE);
	assert_string_equal(err.msg, "dilation must be >= 1, got 0");
	o.dw = 1, o.groups = 3;
	assert_int_equal(ln_conv2d_new_opts(&m, NULL, &o, &err), LN_ERANGE);
	assert_string_equal(err.msg, "in_channels (4) and out_channels (4) must both be multiples "
	                             "of groups (3)");
	o.groups = 0;
	assert_int_equal(ln_conv2d_new_opts(&m, NULL, &o, &err), LN_ERANGE);
	assert_string_equal(err.msg, "groups must be >= 1, got 0");
	o.groups = 1, o.same = true, o.sw = 2;
	assert_int_equal(ln_conv2d_new_opts(&m, NULL, &o, &err), LN_ERANGE);
	assert_string_equal(err.msg, "padding \"same\" needs stride 1, got stride 1x2");
	assert_null(m);
}

/* ==== pooling ================================================================ */

/* x filled with distinct values 0.1 apart in a shuffled order, so that no
 * window has a tie and a step of 1e-3 cannot change an arg-max. */
static void distinct_values(ln_tensor *x)
{
	float *d = ln_tensor_data(x);
	int64_t n = ln_tensor_numel(x);
	for (int64_t i = 0; i < n; i++)
		d[i] = 0.1f * (float)(i - n / 2);
	for (int64_t i = n - 1; i > 0; i--) {
		int64_t j = (int64_t)ln_rng_below(ln_rng_global(), (uint64_t)i + 1);
		float t = d[i];
		d[i] = d[j];
		d[j] = t;
	}
}

struct pool_case {
	int64_t n, c, h, w, kh, kw, sh, sw, ph, pw;
	bool ceil, count_pad;
};

static const struct pool_case pool_cases[] = {
	/* n c h w  kh kw sh sw ph pw  ceil count_pad */
	{2, 3, 6, 7, 2, 2, 2, 2, 0, 0, false, true},  /* the common case; odd width dropped */
	{2, 2, 7, 5, 3, 3, 2, 2, 0, 0, false, true},  /* overlapping windows */
	{1, 2, 5, 5, 2, 2, 1, 1, 0, 0, false, true},
	{3, 1, 5, 8, 3, 3, 3, 3, 0, 0, false, true},  /* leftover rows and columns dropped */
	{2, 2, 6, 9, 2, 3, 2, 3, 0, 0, false, true},  /* rectangular window and stride */
	{2, 2, 7, 7, 3, 3, 2, 2, 1, 1, false, true},  /* padding */
	{2, 2, 7, 6, 3, 2, 2, 1, 1, 1, false, false}, /* padding not counted (AvgPool2d) */
	{2, 1, 7, 7, 2, 2, 2, 2, 0, 0, true, true},   /* ceil mode: a last window half outside */
	{2, 2, 6, 5, 3, 3, 2, 2, 1, 1, true, true},   /* ceil mode with padding */
	{2, 2, 5, 5, 2, 2, 2, 2, 1, 1, true, false},  /* ceil mode drops a window in the padding */
	{1, 2, 9, 4, 4, 2, 3, 2, 2, 1, true, true},
};
#define NPOOL (sizeof pool_cases / sizeof pool_cases[0])

static ln_module *pool_case_new(const struct pool_case *c, bool avg)
{
	ln_pool2d_opts o = {.kh = c->kh, .kw = c->kw, .sh = c->sh, .sw = c->sw, .ph = c->ph,
	                    .pw = c->pw, .ceil_mode = c->ceil,
	                    .count_include_pad = avg ? c->count_pad : true};
	ln_module *m;
	ln_error err;
	ln_status st = avg ? ln_avgpool2d_new_opts(&m, &o, &err) : ln_maxpool2d_new_opts(&m, &o, &err);
	if (st != LN_OK)
		fail_msg("pool: %s", err.msg);
	return m;
}

static ln_pool2d_geom pool_case_geom(const struct pool_case *c, bool avg)
{
	return (ln_pool2d_geom){
		.planes = c->n * c->c, .h = c->h, .w = c->w, .kh = c->kh, .kw = c->kw, .sh = c->sh,
		.sw = c->sw, .ph = c->ph, .pw = c->pw,
		.ho = ln_pool2d_out_size(c->h, c->kh, c->sh, c->ph, c->ceil),
		.wo = ln_pool2d_out_size(c->w, c->kw, c->sw, c->pw, c->ceil),
		.count_include_pad = avg ? c->count_pad : true};
}

static void test_pool_gradcheck(void **state)
{
	for (int avg = 0; avg < 2; avg++)
		for (size_t i = 0; i < NPOOL; i++) {
			ln_rng_seed(ln_rng_global(), SEED + i);
			const struct pool_case *c = &pool_cases[i];
			ln_module *m = pool_case_new(c, avg);
			ln_tensor x;
			tu_tensor(&x, 4, (int64_t[]){c->n, c->c, c->h, c->w}, NULL);
			distinct_values(&x);
			char what[48];
			snprintf(what, sizeof what, "%s case %zu", avg ? "AvgPool2d" : "MaxPool2d", i);
			check_grad(what, m, &x, 1e-3, 1e-2);
			ln_tensor_release(&x);
			ln_module_release(m);
		}
}

/* The modules (their fast kernels where they have them) against the
 * direct loops: forward values and arg-max, and backward, bit for bit, on
 * random data with ties (values on a coarse grid) and NaNs. */
static void test_pool_matches_reference(void **state)
{
	for (int avg = 0; avg < 2; avg++)
		for (size_t i = 0; i < NPOOL; i++) {
			ln_rng_seed(ln_rng_global(), SEED + 200 + i);
			const struct pool_case *c = &pool_cases[i];
			const ln_pool2d_geom g = pool_case_geom(c, avg);
			ln_module *m = pool_case_new(c, avg);
			ln_tensor x, gy, yref, gxref;
			tu_tensor(&x, 4, (int64_t[]){c->n, c->c, c->h, c->w}, NULL);
			float *xd = ln_tensor_data(&x);
			for (int64_t e = 0; e < ln_tensor_numel(&x); e++)
				xd[e] = (float)ln_rng_below(ln_rng_global(), 5) - 2.0f;
			if (!avg)
				xd[3] = xd[ln_tensor_numel(&x) - 2] = NAN;
			forward_ok(m, &x);
			int64_t ys[4] = {c->n, c->c, g.ho, g.wo};
			assert_memory_equal(m->output.shape, ys, sizeof ys);
			tu_tensor(&yref, 4, ys, NULL);
			int32_t *am = test_malloc((size_t)ln_tensor_numel(&yref) * sizeof *am);
			if (avg)
				ln_avgpool2d_forward_naive(ln_tensor_data(&yref), xd, &g);
			else
				ln_maxpool2d_forward_naive(ln_tensor_data(&yref), am, xd, &g);
			assert_memory_equal(ln_tensor_data(&m->output), ln_tensor_data(&yref),
			                    (size_t)ln_tensor_numel(&yref) * sizeof(float));
			tu_tensor_uniform(&gy, 4, ys, -1.0f, 1.0f);
			tu_tensor(&gxref, 4, x.shape, NULL);
			if (avg)
				ln_avgpool2d_backward_naive(ln_tensor_data(&gxref), ln_tensor_data(&gy), &g);
			else
				ln_maxpool2d_backward_naive(ln_tensor_data(&gxref), ln_tensor_data(&gy), am, &g);
			backward_ok(m, &x, &gy);
			assert_memory_equal(ln_tensor_data(&m->grad_input), ln_tensor_data(&gxref),
			                    (size_t)ln_tensor_numel(&gxref) * sizeof(float));
			test_free(am);
			ln_tensor_release(&x);
			ln_tensor_release(&gy);
			ln_tensor_release(&yref);
			ln_tensor_release(&gxref);
			ln_module_release(m);
		}
}

/* 4x4 input, 2x2 windows with stride 2 and with stride 1 (overlapping:
 * an element that is the maximum of several windows gets all their
 * gradients). */
static void test_maxpool_worked_example(void **state)
{
	static const float xv[16] = {
		1, 5, 2, 0,
		3, 4, 8, 6,
		0, 9, 7, 1,
		2, 1, 3, 4,
	};
	int64_t xs[4] = {1, 1, 4, 4};
	ln_tensor x, gy;
	tu_tensor(&x, 4, xs, xv);

	ln_module *m = maxpool_new(2, 0);  /* stride defaults to k */
	char buf[96];
	m->cls->describe(m, buf, sizeof buf);
	assert_string_equal(buf, "MaxPool2d(2x2, stride 2)");
	forward_ok(m, &x);
	static const float y2[4] = {5, 8, 9, 7};
	for (int i = 0; i < 4; i++)
		assert_true(ln_tensor_data(&m->output)[i] == y2[i]);
	static const float g2[4] = {10, 20, 30, 40};
	int64_t ys[4] = {1, 1, 2, 2};
	tu_tensor(&gy, 4, ys, g2);
	backward_ok(m, &x, &gy);
	static const float gx2[16] = {
		0, 10, 0, 0,
		0, 0, 20, 0,
		0, 30, 40, 0,
		0, 0, 0, 0,
	};
	for (int i = 0; i < 16; i++)
		assert_true(ln_tensor_data(&m->grad_input)[i] == gx2[i]);
	ln_tensor_release(&gy);
	ln_module_release(m);

	m = maxpool_new(2, 1);
	forward_ok(m, &x);
	static const float y1[9] = {5, 8, 8, 9, 9, 8, 9, 9, 7};
	for (int i = 0; i < 9; i++)
		assert_true(ln_tensor_data(&m->output)[i] == y1[i]);
	int64_t ys1[4] = {1, 1, 3, 3};
	tu_tensor(&gy, 4, ys1, NULL);
	ln_tensor_fill(&gy, 1.0f);
	backward_ok(m, &x, &gy);
	/* 5 wins once, 8 three times, 9 four times, 7 once */
	static const float gx1[16] = {
		0, 1, 0, 0,
		0, 0, 3, 0,
		0, 4, 1, 0,
		0, 0, 0, 0,
	};
	for (int i = 0; i < 16; i++)
		assert_true(ln_tensor_data(&m->grad_input)[i] == gx1[i]);
	ln_tensor_release(&gy);
	ln_module_release(m);

	/* 3x3 windows, stride 2, padding 1, ceil mode: ho = ceil((4+2-3)/2)+1
	 * = 3, but the third window would start at 2*2-1 = 3, inside: kept;
	 * windows rows/columns {-1..1}, {1..3}, {3..5} clipped to the input */
	ln_pool2d_opts o;
	ln_pool2d_opts_init(&o, 3);
	o.sh = o.sw = 2, o.ph = o.pw = 1, o.ceil_mode = true;
	ln_error err;
	assert_int_equal(ln_maxpool2d_new_opts(&m, &o, &err), LN_OK);
	m->cls->describe(m, buf, sizeof buf);
	assert_string_equal(buf, "MaxPool2d(3x3, stride 2, padding 1, ceil_mode)");
	forward_ok(m, &x);
	static const float yc[9] = {5, 8, 6, 9, 9, 6, 2, 4, 4};
	int64_t ysc[4] = {1, 1, 3, 3};
	assert_memory_equal(m->output.shape, ysc, sizeof ysc);
	for (int i = 0; i < 9; i++)
		assert_true(ln_tensor_data(&m->output)[i] == yc[i]);
	ln_module_release(m);
	/* floor mode has 2x2 outputs; ceil mode on 5x5 with 2x2 windows and
	 * stride 2, padding 1: 3 (the rule drops a fourth starting at 5) */
	o.ceil_mode = false;
	assert_int_equal(ln_pool2d_out_size(4, 3, 2, 1, false), 2);
	assert_int_equal(ln_pool2d_out_size(5, 2, 2, 1, true), 3);
	assert_int_equal(ln_pool2d_out_size(5, 2, 2, 0, true), 3);
	assert_int_equal(ln_pool2d_out_size(4, 2, 2, 0, true), 2);
	assert_int_equal(ln_pool2d_out_size(1, 2, 2, 0, true), 0);
	ln_tensor_release(&x);

	/* a tie: the gradient goes to the first maximum in row-major order */
	static const float tie[4] = {1, 3, 2, 3};
	int64_t ts[4] = {1, 1, 2, 2}, one[4] = {1, 1, 1, 1};
	tu_tensor(&x, 4, ts, tie);
	tu_tensor(&gy, 4, one, NULL);
	ln_tensor_fill(&gy, 1.0f);
	m = maxpool_new(2, 2);
	forward_ok(m, &x);
	assert_true(ln_tensor_data(&m->output)[0] == 3.0f);
	backward_ok(m, &x, &gy);
	static const float tie_gx[4] = {0, 1, 0, 0};
	for (int i = 0; i < 4; i++)
		assert_true(ln_tensor_data(&m->grad_input)[i] == tie_gx[i]);
	ln_tensor_release(&gy);
	ln_tensor_release(&x);
	ln_module_release(m);
}

static void test_avgpool_worked_example(void **state)
{
	/* 2x2 windows of 1..16 as 4x4 */
	float xv[16];
	for (int i = 0; i < 16; i++)
		xv[i] = (float)(i + 1);
	int64_t xs[4] = {1, 1, 4, 4};
	ln_tensor x;
	tu_tensor(&x, 4, xs, xv);
	ln_module *m = avgpool_new(2, 2);
	char buf[96];
	m->cls->describe(m, buf, sizeof buf);
	assert_string_equal(buf, "AvgPool2d(2x2, stride 2)");
	forward_ok(m, &x);
	static const float want[4] = {3.5f, 5.5f, 11.5f, 13.5f};
	for (int i = 0; i < 4; i++)
		assert_true(ln_tensor_data(&m->output)[i] == want[i]);
	ln_module_release(m);
	/* 2x2 windows, stride 2, padding 1: 3x3 outputs; the corner window
	 * holds x[0,0] = 1 only: 1/4 counting the padding, 1/1 without; the
	 * top middle one x[0,1], x[0,2] = 2, 3: 5/4 or 5/2 */
	for (int count = 0; count < 2; count++) {
		ln_pool2d_opts o;
		ln_pool2d_opts_init(&o, 2);
		o.ph = o.pw = 1, o.count_include_pad = count;
		ln_error err;
		assert_int_equal(ln_avgpool2d_new_opts(&m, &o, &err), LN_OK);
		forward_ok(m, &x);
		const float *y = ln_tensor_data(&m->output);
		assert_true(y[0] == (count ? 0.25f : 1.0f));
		assert_true(y[1] == (count ? 1.25f : 2.5f));
		assert_true(y[4] == (6 + 7 + 10 + 11) / 4.0f);
		m->cls->describe(m, buf, sizeof buf);
		assert_string_equal(buf, count ? "AvgPool2d(2x2, stride 2, padding 1)"
		                               : "AvgPool2d(2x2, stride 2, padding 1, "
		                                 "count_include_pad=false)");
		ln_module_release(m);
	}
	ln_tensor_release(&x);
}

static void test_pool_errors(void **state)
{
	ln_module *m = maxpool_new(3, 2);
	ln_tensor x;
	int64_t s1[4] = {1, 1, 2, 5};
	tu_tensor(&x, 4, s1, NULL);
	expect_forward_error(m, &x, LN_ESHAPE,
	                     "MaxPool2d: input of shape {1,1,2,5} is smaller than the 3x3 window "
	                     "(2x5 after padding)");
	ln_tensor_release(&x);
	int64_t s2[2] = {4, 16};
	tu_tensor(&x, 2, s2, NULL);
	expect_forward_error(m, &x, LN_ESHAPE,
	                     "MaxPool2d: expected input of shape {N,C,H,W}, got {4,16}");
	ln_tensor_release(&x);
	ln_module_release(m);

	m = avgpool_new(2, 2);
	int64_t s3[3] = {4, 8, 8};
	tu_tensor(&x, 3, s3, NULL);
	expect_forward_error(m, &x, LN_ESHAPE,
	                     "AvgPool2d: expected input of shape {N,C,H,W}, got {4,8,8}");
	ln_tensor_release(&x);
	ln_module_release(m);

	ln_error err;
	assert_int_equal(ln_maxpool2d_new(&m, 0, 1, &err), LN_ERANGE);
	assert_null(m);
	assert_string_equal(err.msg, "kernel size must be >= 1, got 0");
	assert_int_equal(ln_avgpool2d_new(&m, -2, 1, &err), LN_ERANGE);
	assert_string_equal(err.msg, "kernel size must be >= 1, got -2");
	assert_int_equal(ln_maxpool2d_new(&m, 2, INT64_C(1) << 33, &err), LN_ERANGE);
	assert_string_equal(err.msg, "stride must be <= 2147483647, got 8589934592");
	ln_pool2d_opts o;
	ln_pool2d_opts_init(&o, 3);
	o.pw = 2;
	assert_int_equal(ln_maxpool2d_new_opts(&m, &o, &err), LN_ERANGE);
	assert_string_equal(err.msg, "padding must be at most half the window, got padding 0x2 for "
	                             "a 3x3 window");
	o.pw = 0, o.count_include_pad = false;
	assert_int_equal(ln_maxpool2d_new_opts(&m, &o, &err), LN_EARG);
	assert_string_equal(err.msg, "count_include_pad applies to AvgPool2d only");
	/* from config, as the loader does: a file from before the later
	 * entries has {k, stride} only; stride 0 means stride = k */
	double cfg[LN_MODULE_MAX_CONFIG];
	memcpy(cfg, ln_maxpool2d_class.config_defaults, sizeof cfg);
	cfg[0] = 2, cfg[1] = 0;
	assert_int_equal(ln_module_create(&m, &ln_maxpool2d_class, NULL, cfg, &err), LN_OK);
	assert_true(m->config[1] == 2 && m->config[2] == 2 && m->config[3] == 2);
	ln_module_release(m);
	cfg[1] = 3;
	assert_int_equal(ln_module_create(&m, &ln_maxpool2d_class, NULL, cfg, &err), LN_OK);
	char buf[96];
	m->cls->describe(m, buf, sizeof buf);
	assert_string_equal(buf, "MaxPool2d(2x2, stride 3)");
	ln_module_release(m);
	cfg[6] = 2;  /* ceil_mode */
	assert_int_equal(ln_module_create(&m, &ln_maxpool2d_class, NULL, cfg, &err), LN_ERANGE);
	assert_string_equal(err.msg, "expected ceil_mode to be an integer in [0, 1], got 2");
}

/* ==== BatchNorm ============================================================== */

/* Gives the module non-trivial gamma, beta and running statistics. */
static void batchnorm_randomise(ln_module *m)
{
	fill_uniform(&m->param[0], 0.5f, 1.5f);
	fill_uniform(&m->param[1], -0.5f, 0.5f);
	fill_uniform(&m->buffer[0], -0.5f, 0.5f);
	fill_uniform(&m->buffer[1], 0.5f, 2.0f);
}

static void test_batchnorm_gradcheck(void **state)
{
	static const int64_t s2[2] = {6, 4};
	static const int64_t s4[4] = {3, 2, 4, 5};
	for (int training = 1; training >= 0; training--)
		for (int four = 0; four < 2; four++) {
			ln_rng_seed(ln_rng_global(), SEED + 2 * four + training);
			ln_module *m = batchnorm_new(four ? 2 : 4);
			batchnorm_randomise(m);
			ln_module_set_training(m, training);
			ln_tensor x;
			tu_tensor_uniform(&x, four ? 4 : 2, four ? s4 : s2, -2.0f, 3.0f);
			char what[64];
			snprintf(what, sizeof what, "BatchNorm %s %s", four ? "{N,C,H,W}" : "{N,C}",
			         training ? "training" : "evaluate");
			check_grad(what, m, &x, 1e-2, 1e-2);
			ln_tensor_release(&x);
			ln_module_release(m);
		}
}

/* Training: output normalised by batch statistics; running statistics
 * move by momentum 0.1 towards the batch mean and the unbiased variance.
 * Evaluate: running statistics used, and left unchanged. */
static void test_batchnorm_train_evaluate(void **state)
{
	ln_rng_seed(ln_rng_global(), SEED);
	for (int four = 0; four < 2; four++) {
		const int64_t C = 3, nb = 5, sp = four ? 6 : 1;
		int64_t s2[2] = {nb, C}, s4[4] = {nb, C, 2, 3};
		ln_module *m = batchnorm_new(C);
		char buf[32];
		m->cls->describe(m, buf, sizeof buf);
		assert_string_equal(buf, "BatchNorm(3)");
		assert_int_equal(m->nbuffers, 2);
		assert_string_equal(m->cls->buffer_names[0], "running_mean");
		assert_string_equal(m->cls->buffer_names[1], "running_var");
		for (int c = 0; c < C; c++) {
			assert_true(ln_tensor_data(&m->param[0])[c] == 1.0f);
			assert_true(ln_tensor_data(&m->param[1])[c] == 0.0f);
			assert_true(ln_tensor_data(&m->buffer[0])[c] == 0.0f);
			assert_true(ln_tensor_data(&m->buffer[1])[c] == 1.0f);
		}
		ln_tensor x;
		tu_tensor_uniform(&x, four ? 4 : 2, four ? s4 : s2, 1.0f, 5.0f);
		const float *xd = ln_tensor_data(&x);
		double mean[3], var[3];
		for (int c = 0; c < C; c++) {
			double s = 0, ss = 0;
			for (int64_t i = 0; i < nb; i++)
				for (int64_t q = 0; q < sp; q++)
					s += xd[(i * C + c) * sp + q];
			mean[c] = s / (double)(nb * sp);
			for (int64_t i = 0; i < nb; i++)
				for (int64_t q = 0; q < sp; q++) {
					double d = xd[(i * C + c) * sp + q] - mean[c];
					ss += d * d;
				}
			var[c] = ss / (double)(nb * sp);
		}

		/* training */
		forward_ok(m, &x);
		const float *y = ln_tensor_data(&m->output);
		for (int c = 0; c < C; c++) {
			for (int64_t i = 0; i < nb; i++)
				for (int64_t q = 0; q < sp; q++) {
					int64_t at = (i * C + c) * sp + q;
					double want = (xd[at] - mean[c]) / sqrt(var[c] + 1e-5);
					assert_true(fabs(y[at] - want) < 1e-5);
				}
			double rm = 0.1 * mean[c];
			double rv = 0.9 + 0.1 * var[c] * (nb * sp) / (nb * sp - 1.0);
			assert_true(fabs(ln_tensor_data(&m->buffer[0])[c] - rm) < 1e-6);
			assert_true(fabs(ln_tensor_data(&m->buffer[1])[c] - rv) < 1e-6);
		}

		/* evaluate: uses (and keeps) the running statistics */
		float rm[3], rv[3];
		memcpy(rm, ln_tensor_data(&m->buffer[0]), sizeof rm);
		memcpy(rv, ln_tensor_data(&m->buffer[1]), sizeof rv);
		ln_tensor_fill(&m->param[0], 2.0f);
		ln_tensor_fill(&m->param[1], 0.25f);
		ln_module_set_training(m, false);
		forward_ok(m, &x);
		forward_ok(m, &x);
		assert_memory_equal(rm, ln_tensor_data(&m->buffer[0]), sizeof rm);
		assert_memory_equal(rv, ln_tensor_data(&m->buffer[1]), sizeof rv);
		y = ln_tensor_data(&m->output);
		for (int c = 0; c < C; c++)
			for (int64_t i = 0; i < nb; i++)
				for (int64_t q = 0; q < sp; q++) {
					int64_t at = (i * C + c) * sp + q;
					double want = 2.0 * (xd[at] - rm[c]) / sqrt(rv[c] + 1e-5) + 0.25;
					assert_true(fabs(y[at] - want) < 1e-5);
				}
		/* evaluate backward: dx = gamma / sqrt(rv + eps) * gy */
		ln_tensor gy;
		tu_tensor_uniform(&gy, x.ndim, x.shape, -1.0f, 1.0f);
		backward_ok(m, &x, &gy);
		for (int c = 0; c < C; c++)
			for (int64_t i = 0; i < nb; i++)
				for (int64_t q = 0; q < sp; q++) {
					int64_t at = (i * C + c) * sp + q;
					double want = 2.0 / sqrt(rv[c] + 1e-5) * ln_tensor_data(&gy)[at];
					assert_true(fabs(ln_tensor_data(&m->grad_input)[at] - want) < 1e-5);
				}
		/* a single sample is fine in evaluate mode, an error in training */
		ln_tensor one;
		int64_t s1[2] = {1, C};
		tu_tensor_uniform(&one, 2, s1, 0.0f, 1.0f);
		if (!four) {
			forward_ok(m, &one);
			ln_module_set_training(m, true);
			expect_forward_error(m, &one, LN_ESHAPE,
			                     "BatchNorm: expected more than 1 value per channel in "
			                     "training mode, got input of shape {1,3}");
		}
		ln_tensor_release(&one);
		ln_tensor_release(&gy);
		ln_tensor_release(&x);
		ln_module_release(m);
	}
}

/* Backward follows the mode of the forward it comes after: training
 * backward of an input whose batch statistics are the whole story sums to
 * zero over each channel (the mean has no gradient through xhat). */
static void test_batchnorm_training_backward_centres(void **state)
{
	ln_rng_seed(ln_rng_global(), SEED);
	ln_module *m = batchnorm_new(2);
	int64_t s[4] = {4, 2, 3, 3};
	ln_tensor x, gy;
	tu_tensor_uniform(&x, 4, s, -1.0f, 1.0f);
	tu_tensor_uniform(&gy, 4, s, -1.0f, 1.0f);
	forward_ok(m, &x);
	ln_module_set_training(m, false);  /* after the forward: backward still uses batch stats */
	backward_ok(m, &x, &gy);
	for (int c = 0; c < 2; c++) {
		double sum = 0;
		for (int i = 0; i < 4; i++)
			for (int q = 0; q < 9; q++)
				sum += ln_tensor_data(&m->grad_input)[(i * 2 + c) * 9 + q];
		assert_true(fabs(sum) < 1e-5);
	}
	ln_tensor_release(&x);
	ln_tensor_release(&gy);
	ln_module_release(m);
}

static void test_batchnorm_errors(void **state)
{
	ln_module *m = batchnorm_new(16);
	ln_tensor x;
	int64_t s1[2] = {8, 3};
	tu_tensor(&x, 2, s1, NULL);
	expect_forward_error(m, &x, LN_ESHAPE,
	                     "BatchNorm: expected input of shape {N,16} or {N,16,H,W}, got {8,3}");
	ln_tensor_release(&x);
	int64_t s2[3] = {8, 16, 5};
	tu_tensor(&x, 3, s2, NULL);
	expect_forward_error(m, &x, LN_ESHAPE,
	                     "BatchNorm: expected input of shape {N,16} or {N,16,H,W}, got {8,16,5}");
	ln_tensor_release(&x);
	ln_module_release(m);

	ln_error err;
	assert_int_equal(ln_batchnorm_new(&m, NULL, 0, &err), LN_ERANGE);
	assert_null(m);
	assert_string_equal(err.msg, "number of features must be >= 1, got 0");
	assert_int_equal(ln_batchnorm_new_ex(&m, NULL, 4, 1e-5, 1.5, &err), LN_ERANGE);
	assert_string_equal(err.msg, "momentum must be in [0,1], got 1.5");
	assert_int_equal(ln_batchnorm_new_ex(&m, NULL, 4, 0, 0.1, &err), LN_ERANGE);
	assert_string_equal(err.msg, "eps must be positive, got 0");
	double cfg[3] = {4, 1e-3, 0.2};
	assert_int_equal(ln_module_create(&m, &ln_batchnorm_class, NULL, cfg, &err), LN_OK);
	assert_true(m->config[0] == 4 && m->config[1] == 1e-3 && m->config[2] == 0.2);
	ln_module_release(m);
}

/* ==== chains ================================================================== */

/* A CNN whose convolutions, activations and pools a Sequential runs as
 * chains, sample by sample through all of them (module.h); the same seed
 * gives the same weights. */
static ln_module *chain_net(void)
{
	ln_error err;
	ln_module *seq, *child;
	assert_int_equal(ln_sequential_new(&seq, &err), LN_OK);
	ln_conv2d_opts grouped;
	ln_conv2d_opts_init(&grouped, 4, 6, 3);
	grouped.groups = 2, grouped.same = true;
	ln_pool2d_opts padded;
	ln_pool2d_opts_init(&padded, 3);
	padded.sh = padded.sw = 2, padded.ph = padded.pw = 1, padded.ceil_mode = true;
	for (int i = 0; i < 9; i++) {
		ln_status st;
		switch (i) {
		case 0: st = ln_conv2d_new(&child, NULL, 2, 4, 3, 1, 1, true, &err); break;
		case 1: st = ln_activation_new(&child, "Tanh", 0, &err); break;
		case 2: st = ln_maxpool2d_new(&child, 2, 2, &err); break;
		case 3: st = ln_conv2d_new_opts(&child, NULL, &grouped, &err); break;
		case 4: st = ln_activation_new(&child, "LeakyReLU", 0.1, &err); break;
		case 5: st = ln_avgpool2d_new_opts(&child, &padded, &err); break;
		case 6: st = ln_maxpool2d_new_opts(&child, &padded, &err); break;
		case 7: st = ln_flatten_new(&child, &err); break;
		default: st = ln_linear_new(&child, NULL, 6 * 4 * 4, 3, true, &err); break;
		}
		if (st != LN_OK || ln_sequential_add(seq, child, &err) != LN_OK)
			fail_msg("building the network: %s", err.msg);
		ln_module_release(child);
	}
	return seq;
}

static void expect_same_tensor(const char *what, int layer, const ln_tensor *a, const ln_tensor *b)
{
	if (!ln_tensor_same_shape(a, b) ||
	    memcmp(ln_tensor_data(a), ln_tensor_data(b), (size_t)ln_tensor_numel(a) * sizeof(float)))
		fail_msg("layer %d: %s differs between the chain and the layers one by one", layer + 1,
		         what);
}

/* Sequential a (already run forward on x) backward with gy, and the
 * children of its twin b run one by one, forward and backward: every
 * output, input gradient and parameter gradient must be the same bits. */
static void expect_chain_as_layers(ln_module *a, ln_module *b, const ln_tensor *x,
                                   const ln_tensor *gy)
{
	const ln_tensor *in = x;
	for (int i = 0; i < b->nchildren; i++) {
		forward_ok(b->children[i], in);
		in = &b->children[i]->output;
	}
	backward_ok(a, x, gy);
	const ln_tensor *g = gy;
	for (int i = b->nchildren - 1; i >= 0; i--) {
		backward_ok(b->children[i], i ? &b->children[i - 1]->output : x, g);
		g = &b->children[i]->grad_input;
	}
	for (int i = 0; i < a->nchildren; i++) {
		ln_module *ca = a->children[i], *cb = b->children[i];
		expect_same_tensor("output", i, &ca->output, &cb->output);
		assert_int_equal(ca->gx_skipped, cb->gx_skipped);
		if (!ca->gx_skipped)
			expect_same_tensor("grad_input", i, &ca->grad_input, &cb->grad_input);
		for (int k = 0; k < ca->nparams; k++)
			expect_same_tensor("a parameter gradient", i, &ca->grad[k], &cb->grad[k]);
	}
}

/* The Sequential's chains against the same layers run one by one (each a
 * chain of one): every output, grad_input and parameter gradient the same
 * bits, on 1 and 3 threads, with the input gradient and without. */
static void test_chain_matches_layers(void **state)
{
	const int saved = ln_gemm_threads();
	for (int variant = 0; variant < 4; variant++) {
		ln_gemm_set_threads(variant % 2 ? 3 : 1);
		const bool input_grad = variant < 2;
		ln_rng_seed(ln_rng_global(), SEED);
		ln_module *a = chain_net();
		ln_rng_seed(ln_rng_global(), SEED);
		ln_module *b = chain_net();
		a->input_grad = input_grad;
		b->children[0]->input_grad = input_grad;
		ln_tensor x, gy;
		/* large enough for the chains to be split (module.c, CHAIN_THREAD_WORK) */
		tu_tensor_uniform(&x, 4, (int64_t[]){11, 2, 24, 24}, -1.0f, 1.0f);
		tu_tensor_uniform(&gy, 2, (int64_t[]){11, 3}, -1.0f, 1.0f);
		forward_ok(a, &x);
		expect_chain_as_layers(a, b, &x, &gy);
		assert_int_equal(a->children[0]->gx_skipped, !input_grad);
		ln_tensor_release(&x);
		ln_tensor_release(&gy);
		ln_module_release(a);
		ln_module_release(b);
	}
	ln_gemm_set_threads(saved);
}

/* Conv2d, ReLU, MaxPool2d(2) in a Sequential, whose chain runs the ReLU
 * and the pool as one pass where the CPU has the joint kernels (pool.c):
 * every output, input gradient and parameter gradient the same bits as
 * the layers run one by one, on odd and even planes, with and without
 * the Sequential's input gradient; and a gradient check of the chain
 * (inputs kept away from the ReLU's kink). */
static ln_module *conv_relu_pool_net(void)
{
	ln_error err;
	ln_module *seq, *child;
	assert_int_equal(ln_sequential_new(&seq, &err), LN_OK);
	for (int i = 0; i < 3; i++) {
		ln_status st = i == 0   ? ln_conv2d_new(&child, NULL, 2, 3, 3, 1, 1, true, &err)
		               : i == 1 ? ln_activation_new(&child, "ReLU", 0, &err)
		                        : ln_maxpool2d_new(&child, 2, 2, &err);
		if (st != LN_OK || ln_sequential_add(seq, child, &err) != LN_OK)
			fail_msg("building the network: %s", err.msg);
		ln_module_release(child);
	}
	return seq;
}

static void test_relu_maxpool_chain(void **state)
{
	static const int64_t shapes[][4] = {{3, 2, 9, 11}, {2, 2, 28, 28}, {1, 2, 2, 3}};
	for (size_t sc = 0; sc < sizeof shapes / sizeof shapes[0]; sc++)
		for (int input_grad = 0; input_grad < 2; input_grad++) {
			ln_rng_seed(ln_rng_global(), SEED + 300 + sc);
			ln_module *a = conv_relu_pool_net();
			ln_rng_seed(ln_rng_global(), SEED + 300 + sc);
			ln_module *b = conv_relu_pool_net();
			a->input_grad = input_grad;
			b->children[0]->input_grad = input_grad;
			ln_tensor x, gy;
			tu_tensor_uniform(&x, 4, shapes[sc], -1.0f, 1.0f);
			forward_ok(a, &x);
			tu_tensor_uniform(&gy, 4, a->output.shape, -1.0f, 1.0f);
			expect_chain_as_layers(a, b, &x, &gy);
			ln_tensor_release(&x);
			ln_tensor_release(&gy);
			ln_module_release(a);
			ln_module_release(b);
		}

	/* the ReLU and the pool alone in a chain: finite differences on
	 * distinct values k/10 + 1/20, none at the kink */
	ln_error err;
	ln_module *seq, *child;
	assert_int_equal(ln_sequential_new(&seq, &err), LN_OK);
	assert_int_equal(ln_activation_new(&child, "ReLU", 0, &err), LN_OK);
	assert_int_equal(ln_sequential_add(seq, child, &err), LN_OK);
	ln_module_release(child);
	assert_int_equal(ln_maxpool2d_new(&child, 2, 2, &err), LN_OK);
	assert_int_equal(ln_sequential_add(seq, child, &err), LN_OK);
	ln_module_release(child);
	ln_tensor x;
	ln_rng_seed(ln_rng_global(), SEED + 310);
	tu_tensor(&x, 4, (int64_t[]){2, 3, 5, 7}, NULL);
	distinct_values(&x);
	float *xd = ln_tensor_data(&x);
	for (int64_t i = 0; i < ln_tensor_numel(&x); i++)
		xd[i] += 0.05f;
	check_grad("ReLU, MaxPool2d(2) chain", seq, &x, 1e-3, 1e-2);
	ln_tensor_release(&x);
	ln_module_release(seq);
}

/* ==== memory ================================================================= */

/* Builds module `which` (0 Conv2d, 1 MaxPool2d, 2 AvgPool2d, 3 BatchNorm). */
static ln_status make_module(int which, ln_module **m, ln_error *err)
{
	switch (which) {
	case 0: return ln_conv2d_new(m, NULL, 2, 3, 3, 1, 1, true, err);
	case 1: return ln_maxpool2d_new(m, 2, 2, err);
	case 2: return ln_avgpool2d_new(m, 2, 2, err);
	default: return ln_batchnorm_new(m, NULL, 2, err);
	}
}

/* Fails each allocation of construction, forward and backward in turn:
 * every failure is LN_ENOMEM, a failed constructor leaves *out NULL, and
 * once the module is released nothing is left allocated. */
static void enomem_case(int which)
{
	int64_t s[4] = {2, 2, 6, 5};
	ln_tensor x, gy;
	ln_error err;
	ln_module *m;
	tu_tensor_uniform(&x, 4, s, -1.0f, 1.0f);
	/* a clean run for the output shape */
	assert_int_equal(make_module(which, &m, &err), LN_OK);
	forward_ok(m, &x);
	tu_tensor_uniform(&gy, m->output.ndim, m->output.shape, -1.0f, 1.0f);
	ln_module_release(m);

	const uint64_t live0 = bytes_live_now();
	bool done = false;
	long nth;
	for (nth = 1; nth < 100 && !done; nth++) {
		m = NULL;
		ln_alloc_fail_nth(nth);
		ln_status st = make_module(which, &m, &err);
		if (st != LN_OK) {
			assert_null(m);
		} else {
			st = ln_module_forward(m, &x, &err);
			if (st == LN_OK)
				st = ln_module_backward(m, &x, &gy, &err);
		}
		ln_alloc_fail_nth(0);
		if (st == LN_OK)
			done = true;
		else if (st != LN_ENOMEM)
			fail_msg("module %d, failing allocation %ld: %s (%s)", which, nth,
			         ln_status_name(st), err.msg);
		ln_module_release(m);
		if (bytes_live_now() != live0)
			fail_msg("module %d, failing allocation %ld: %llu bytes leaked", which, nth,
			         (unsigned long long)(bytes_live_now() - live0));
	}
	assert_true(done);
	assert_true(nth > 2);  /* at least one failure was injected and survived */
	ln_tensor_release(&gy);
	ln_tensor_release(&x);
}

static void test_enomem(void **state)
{
	for (int which = 0; which < 4; which++)
		enomem_case(which);
}

/* Conv2d -> BatchNorm -> MaxPool2d -> Conv2d -> AvgPool2d, chained by
 * hand: from the third step on, forward and backward allocate nothing. */
static void test_steady_state_no_alloc(void **state)
{
	ln_rng_seed(ln_rng_global(), SEED);
	ln_module *mods[5] = {conv_new(1, 4, 3, 1, 1), batchnorm_new(4), maxpool_new(2, 2),
	                      conv_new(4, 6, 3, 1, 1), avgpool_new(2, 2)};
	int64_t s[4] = {8, 1, 12, 12}, gs[4] = {8, 6, 3, 3};
	ln_tensor x, gy;
	tu_tensor_uniform(&x, 4, s, 0.0f, 1.0f);
	tu_tensor_uniform(&gy, 4, gs, -1.0f, 1.0f);
	for (int step = 0; step < 4; step++) {
		uint64_t a0 = allocs_now();
		const ln_tensor *in = &x;
		for (int i = 0; i < 5; i++) {
			forward_ok(mods[i], in);
			in = &mods[i]->output;
		}
		const ln_tensor *g = &gy;
		for (int i = 4; i >= 0; i--) {
			backward_ok(mods[i], i ? &mods[i - 1]->output : &x, g);
			g = &mods[i]->grad_input;
		}
		uint64_t made = allocs_now() - a0;
		if (step >= 2 && made != 0)
			fail_msg("step %d made %llu allocations", step + 1, (unsigned long long)made);
		if (step == 0)
			assert_true(made > 0);  /* the buffers were made on the first step */
	}
	for (int i = 0; i < 5; i++)
		ln_module_release(mods[i]);
	ln_tensor_release(&x);
	ln_tensor_release(&gy);
}

/* The benchmark CNN's layers in a Sequential (as the Lua binding runs
 * them): the third and fourth training steps allocate nothing. */
static void test_steady_state_sequential(void **state)
{
	ln_error err;
	ln_module *seq, *child;
	ln_rng_seed(ln_rng_global(), SEED);
	assert_int_equal(ln_sequential_new(&seq, &err), LN_OK);
	for (int i = 0; i < 10; i++) {
		ln_status st;
		switch (i) {
		case 0: st = ln_conv2d_new(&child, NULL, 1, 4, 3, 1, 1, true, &err); break;
		case 1: st = ln_batchnorm_new(&child, NULL, 4, &err); break;
		case 2: st = ln_activation_new(&child, "ReLU", 0, &err); break;
		case 3: st = ln_maxpool2d_new(&child, 2, 2, &err); break;
		case 4: st = ln_conv2d_new(&child, NULL, 4, 8, 3, 1, 1, true, &err); break;
		case 5: st = ln_batchnorm_new(&child, NULL, 8, &err); break;
		case 6: st = ln_activation_new(&child, "ReLU", 0, &err); break;
		case 7: st = ln_maxpool2d_new(&child, 2, 2, &err); break;
		case 8: st = ln_flatten_new(&child, &err); break;
		default: st = ln_linear_new(&child, NULL, 8 * 3 * 3, 10, true, &err); break;
		}
		if (st != LN_OK || ln_sequential_add(seq, child, &err) != LN_OK)
			fail_msg("building the network: %s", err.msg);
		ln_module_release(child);
	}
	int64_t s[4] = {16, 1, 12, 12}, gs[2] = {16, 10};
	ln_tensor x, gy;
	tu_tensor_uniform(&x, 4, s, 0.0f, 1.0f);
	tu_tensor_uniform(&gy, 2, gs, -1.0f, 1.0f);
	for (int step = 0; step < 4; step++) {
		uint64_t a0 = allocs_now();
		forward_ok(seq, &x);
		backward_ok(seq, &x, &gy);
		uint64_t made = allocs_now() - a0;
		if (step >= 2 && made != 0)
			fail_msg("step %d made %llu allocations", step + 1, (unsigned long long)made);
	}
	ln_tensor_release(&x);
	ln_tensor_release(&gy);
	ln_module_release(seq);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_conv2d_gradcheck),
		cmocka_unit_test(test_conv2d_matches_reference),
		cmocka_unit_test(test_conv2d_worked_example),
		cmocka_unit_test(test_conv2d_col2im_is_adjoint),
		cmocka_unit_test(test_conv2d_init_and_describe),
		cmocka_unit_test(test_conv2d_errors),
		cmocka_unit_test(test_pool_gradcheck),
		cmocka_unit_test(test_pool_matches_reference),
		cmocka_unit_test(test_maxpool_worked_example),
		cmocka_unit_test(test_avgpool_worked_example),
		cmocka_unit_test(test_pool_errors),
		cmocka_unit_test(test_batchnorm_gradcheck),
		cmocka_unit_test(test_batchnorm_train_evaluate),
		cmocka_unit_test(test_batchnorm_training_backward_centres),
		cmocka_unit_test(test_batchnorm_errors),
		cmocka_unit_test(test_chain_matches_layers),
		cmocka_unit_test(test_relu_maxpool_chain),
		cmocka_unit_test(test_enomem),
		cmocka_unit_test(test_steady_state_no_alloc),
		cmocka_unit_test(test_steady_state_sequential),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
