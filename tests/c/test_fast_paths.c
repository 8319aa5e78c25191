/*
 * test_fast_paths.c -- MaxPool2d's 2x2/stride-2 paths (AVX-512 or AVX2 when
 * the CPU has them, and the portable loop) against a window walk
 * written out here: the maximum of each window, ties to the first element
 * in row-major order, a NaN taking the place (the last NaN of a window
 * keeps it), and backward routing each gradient to that element.  Inputs
 * are drawn from a few values so that ties are common, with NaNs sprinkled
 * in; odd sizes leave a last row and column that no window covers.  Also
 * the joint ReLU + MaxPool2d kernels against their reference, and Conv2d's
 * "same" convolutions.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "core/cpu.h"
#include "core/gemm.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "nn/conv.h"
#include "nn/module.h"
#include "nn/pool_kernels.h"
#include "testutil.h"

#include <stdbool.h>

#define SEED 4242u

/* The offset within the plane of the element a 2x2 window at (i,j)
 * selects, and its value. */
static int64_t window_pick(const float *xp, int64_t w, int64_t i, int64_t j, float *val)
{
	int64_t at = 2 * i * w + 2 * j;
	float best = xp[at];
	for (int u = 0; u < 2; u++)
		for (int v = 0; v < 2; v++) {
			if (u == 0 && v == 0)
				continue;
			int64_t off = (2 * i + u) * w + 2 * j + v;
			if (xp[off] > best || isnan(xp[off])) {
				best = xp[off];
				at = off;
			}
		}
	*val = best;
	return at;
}

/* One forward and backward of a fresh MaxPool2d(2) on {n,c,h,w}, checked
 * against window_pick.  `m` is used as given: a module that already ran
 * on a larger input reuses its buffers, whose old contents must not show
 * through (the uncovered last row and column of an odd plane included). */
static void check_pass(ln_module *m, int64_t n, int64_t c, int64_t h, int64_t w, int pass)
{
	ln_error err;
	ln_tensor x = LN_TENSOR_EMPTY, gy = LN_TENSOR_EMPTY;
	int64_t xs[4] = {n, c, h, w}, ho = h / 2, wo = w / 2;
	assert_int_equal(ln_tensor_alloc(&x, 4, xs, NULL), LN_OK);
	float *xd = ln_tensor_data(&x);
	for (int64_t i = 0; i < n * c * h * w; i++) {
		double r = ln_rng_uniform(ln_rng_global());
		xd[i] = r < 0.05 ? NAN : (float)(int)(4 * ln_rng_uniform(ln_rng_global())) - 1.5f;
	}
	assert_int_equal(ln_module_forward(m, &x, &err), LN_OK);
	assert_int_equal(ln_tensor_alloc(&gy, 4, m->output.shape, NULL), LN_OK);
	float *g = ln_tensor_data(&gy);
	for (int64_t q = 0; q < ln_tensor_numel(&gy); q++)
		g[q] = (float)(q + 1 + 1000 * pass);
	assert_int_equal(ln_module_backward(m, &x, &gy, &err), LN_OK);

	const float *y = ln_tensor_data(&m->output), *gx = ln_tensor_data(&m->grad_input);
	for (int64_t pl = 0; pl < n * c; pl++) {
		const float *xp = xd + pl * h * w;
		for (int64_t i = 0; i < ho; i++)
			for (int64_t j = 0; j < wo; j++) {
				float want;
				int64_t at = window_pick(xp, w, i, j, &want);
				int64_t q = (pl * ho + i) * wo + j;
				bool same = isnan(want) ? isnan(y[q]) : y[q] == want;
				if (!same)
					fail_msg("seed %u, {%lld,%lld,%lld,%lld}: output %lld is %g, expected %g", SEED,
					         (long long)n, (long long)c, (long long)h, (long long)w, (long long)q,
					         y[q], want);
				/* windows do not overlap: the element's gradient is this window's */
				if (gx[pl * h * w + at] != g[q])
					fail_msg("seed %u, {%lld,%lld,%lld,%lld}: window %lld sent its gradient "
					         "elsewhere than offset %lld", SEED, (long long)n, (long long)c,
					         (long long)h, (long long)w, (long long)q, (long long)at);
			}
		/* every other element, including the uncovered edge, gets nothing */
		double total = 0, want_total = 0;
		for (int64_t e = 0; e < h * w; e++)
			total += gx[pl * h * w + e];
		for (int64_t q = 0; q < ho * wo; q++)
			want_total += g[pl * ho * wo + q];
		if (total != want_total)
			fail_msg("seed %u, {%lld,%lld,%lld,%lld}, pass %d: plane %lld's gradients sum to %g, "
			         "expected %g", SEED, (long long)n, (long long)c, (long long)h, (long long)w,
			         pass, (long long)pl, total, want_total);
	}
	ln_tensor_release(&x);
	ln_tensor_release(&gy);
}

/* A module first run on a larger input, then on {n,c,h,w}. */
static void check_shape(int64_t n, int64_t c, int64_t h, int64_t w)
{
	ln_module *m;
	ln_error err;
	assert_int_equal(ln_maxpool2d_new(&m, 2, 2, &err), LN_OK);
	check_pass(m, n, c, h + 3, w + 5, 0);
	check_pass(m, n, c, h, w, 1);
	ln_module_release(m);
}

static void shapes(void)
{
	ln_rng_seed(ln_rng_global(), SEED);
	check_shape(2, 3, 28, 28);
	check_shape(3, 2, 14, 14);
	check_shape(1, 4, 7, 9);  /* odd: last row and column uncovered */
	check_shape(2, 1, 2, 2);
	check_shape(1, 1, 3, 2);
	check_shape(1, 2, 4, 70);  /* rows longer than one 16-lane block */
}

static void test_maxpool2_matches_walk(void **state)
{
	if (!ln_cpu_avx512())
		print_message("no AVX-512 on this CPU: only the portable path is tested\n");
	shapes();
}

static void test_maxpool2_portable_matches_walk(void **state)
{
	ln_cpu_use_portable(true);
	shapes();
	ln_cpu_use_portable(false);
}

/* ---- ReLU then MaxPool2d(2) in one pass ------------------------------------
 *
 * The joint AVX2 kernels (pool_kernels.h) against their reference
 * ln_relu_maxpool2d_*_naive, bit for bit: the ReLU's output, the pooled
 * output and arg-max, and both input gradients.  Inputs on a coarse grid
 * (ties), with NaNs, zeros of both signs and negatives only windows;
 * outputs start as garbage, so that every element must be written.
 */
static void check_relu_pool(int64_t planes, int64_t h, int64_t w)
{
	const ln_pool2d_geom g = {.planes = planes, .h = h, .w = w, .kh = 2, .kw = 2, .sh = 2,
	                          .sw = 2, .ho = h / 2, .wo = w / 2, .count_include_pad = true};
	const size_t nx = (size_t)(planes * h * w), ny = (size_t)(planes * g.ho * g.wo);
	float *x = test_malloc(nx * sizeof(float));
	float *r[2], *gr[2], *gp[2], *y[2], *gy = test_malloc(ny * sizeof(float));
	int32_t *am[2];
	for (int k = 0; k < 2; k++) {
		r[k] = test_malloc(nx * sizeof(float));
		gr[k] = test_malloc(nx * sizeof(float));
		gp[k] = test_malloc(nx * sizeof(float));
		y[k] = test_malloc(ny * sizeof(float));
		am[k] = test_malloc(ny * sizeof(int32_t));
		memset(r[k], 0x7f, nx * sizeof(float));
		memset(gr[k], 0x7f, nx * sizeof(float));
		memset(gp[k], 0x7f, nx * sizeof(float));
		memset(y[k], 0x7f, ny * sizeof(float));
		memset(am[k], 0x7f, ny * sizeof(int32_t));
	}
	static const float grid[] = {-1.5f, -0.5f, -0.0f, 0.0f, 0.5f, 1.5f};
	for (size_t i = 0; i < nx; i++) {
		const double u = ln_rng_uniform(ln_rng_global());
		x[i] = u < 0.04 ? NAN : grid[ln_rng_below(ln_rng_global(), 6)];
	}
	for (int64_t q = 0; q < h * w && planes > 1; q++)  /* plane 1: all negative */
		x[h * w + q] = -1.0f - (float)(q % 3);
	for (size_t q = 0; q < ny; q++)
		gy[q] = (float)ln_rng_uniform(ln_rng_global()) - 0.5f;
	ln_relu_maxpool2d_forward_naive(r[0], y[0], am[0], x, &g);
	ln_relu_maxpool2_forward_avx2(r[1], y[1], am[1], x, planes, h, w, g.ho, g.wo);
	char what[96];
	snprintf(what, sizeof what, "{%lld,%lld,%lld}", (long long)planes, (long long)h,
	         (long long)w);
	if (memcmp(r[0], r[1], nx * sizeof(float)) || memcmp(y[0], y[1], ny * sizeof(float)) ||
	    memcmp(am[0], am[1], ny * sizeof(int32_t)))
		fail_msg("%s: the joint forward differs from the reference", what);
	ln_relu_maxpool2d_backward_naive(gr[0], gp[0], gy, am[0], x, &g);
	ln_relu_maxpool2_backward_avx2(gr[1], gp[1], gy, am[1], y[1], planes, h, w, g.ho, g.wo);
	if (memcmp(gp[0], gp[1], nx * sizeof(float)))
		fail_msg("%s: the joint backward's pool gradient differs from the reference", what);
	if (memcmp(gr[0], gr[1], nx * sizeof(float)))
		fail_msg("%s: the joint backward's ReLU gradient differs from the reference", what);
	for (int k = 0; k < 2; k++) {
		test_free(r[k]);
		test_free(gr[k]);
		test_free(gp[k]);
		test_free(y[k]);
		test_free(am[k]);
	}
	test_free(x);
	test_free(gy);
}

static void test_relu_maxpool2_matches_reference(void **state)
{
	if (!ln_cpu_avx2_fma()) {
		print_message("no AVX2 on this CPU: the joint ReLU + MaxPool2d kernels are not used\n");
		return;
	}
	ln_rng_seed(ln_rng_global(), SEED + 7);
	static const int64_t shapes[][3] = {
		{3, 28, 28}, {2, 14, 14}, {2, 7, 9}, {2, 2, 2}, {1, 3, 2},
		{2, 4, 70}, {3, 5, 33}, {2, 9, 17}, {2, 6, 31},
		/* rows of fewer than 8 windows loaded whole, with an odd column or
		 * row left over, and rows of 8 to 16 windows */
		{3, 6, 15}, {2, 5, 14}, {4, 2, 12}, {3, 3, 6}, {2, 8, 16}, {2, 7, 30},
	};
	for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
		check_relu_pool(shapes[i][0], shapes[i][1], shapes[i][2]);
}

/* ---- Conv2d, "same" convolutions -------------------------------------------
 *
 * Stride 1 with padding (k-1)/2 keeps the plane's size, and im2col/col2im
 * then move whole shifted planes at once (conv2d.c).  Checked here against
 * loops written out in the test, and the layer against the direct
 * reference kernels, for kernels 1, 3 and 5, non-square planes, and
 * planes narrower than the kernel's reach.
 */

static const struct same_case {
	int64_t n, cin, h, w, cout, k;
} same_cases[] = {
	{2, 2, 5, 7, 3, 3}, {1, 3, 4, 4, 2, 5}, {2, 1, 3, 9, 2, 3}, {2, 3, 6, 5, 4, 1},
	{1, 2, 28, 28, 3, 3}, {2, 2, 2, 3, 2, 3}, {1, 1, 3, 3, 1, 5},
};

static ln_conv2d_opts same_opts(const struct same_case *c)
{
	ln_conv2d_opts o;
	ln_conv2d_opts_init(&o, c->cin, c->cout, c->k);
	o.ph = o.pw = (c->k - 1) / 2;
	return o;
}

static ln_conv2d_geom same_geom(const struct same_case *c)
{
	ln_conv2d_opts o = same_opts(c);
	ln_conv2d_geom g;
	ln_conv2d_geom_init(&g, &o, c->n, c->h, c->w);
	assert_true(g.ho == c->h && g.wo == c->w);
	return g;
}

/* im2col against its definition, and col2im against the sum of the
 * entries that each input element went to. */
static void test_same_im2col_col2im(void **state)
{
	ln_rng_seed(ln_rng_global(), SEED);
	for (size_t ci = 0; ci < sizeof same_cases / sizeof same_cases[0]; ci++) {
		ln_conv2d_geom g = same_geom(&same_cases[ci]);
		int64_t k = g.kh, p = g.pt, kk = g.cin * k * k, pp = g.h * g.w, ld = pp + 3;
		ln_tensor xt = LN_TENSOR_EMPTY, colt = LN_TENSOR_EMPTY, gct = LN_TENSOR_EMPTY,
		          gxt = LN_TENSOR_EMPTY;
		tu_tensor_uniform(&xt, 1, (int64_t[]){g.cin * pp}, -1.0f, 1.0f);
		tu_tensor_uniform(&colt, 1, (int64_t[]){kk * ld}, -1.0f, 1.0f);
		tu_tensor_uniform(&gct, 1, (int64_t[]){kk * ld}, -1.0f, 1.0f);
		tu_tensor_uniform(&gxt, 1, (int64_t[]){g.cin * pp}, -1.0f, 1.0f);
		const float *x = ln_tensor_data(&xt);
		float *col = ln_tensor_data(&colt), *gc = ln_tensor_data(&gct), *gx = ln_tensor_data(&gxt);
		/* the gradient columns before col2im may zero their padding entries */
		ln_tensor gc0t = LN_TENSOR_EMPTY;
		assert_int_equal(ln_tensor_clone(&gc0t, &gct, NULL), LN_OK);
		const float *gc0 = ln_tensor_data(&gc0t);
		ln_conv2d_im2col(col, ld, x, &g);
		ln_conv2d_col2im(gx, gc, ld, &g);
		for (int64_t c = 0; c < g.cin; c++)
			for (int64_t u = 0; u < k; u++)
				for (int64_t v = 0; v < k; v++)
					for (int64_t i = 0; i < g.h; i++)
						for (int64_t j = 0; j < g.w; j++) {
							int64_t r = (c * k + u) * k + v, ih = i - p + u, iw = j - p + v;
							bool in = ih >= 0 && ih < g.h && iw >= 0 && iw < g.w;
							float want = in ? x[(c * g.h + ih) * g.w + iw] : 0.0f;
							if (col[r * ld + i * g.w + j] != want)
								fail_msg("case %zu: col[%lld][%lld] = %g, expected %g", ci,
								         (long long)r, (long long)(i * g.w + j),
								         col[r * ld + i * g.w + j], want);
						}
		for (int64_t c = 0; c < g.cin; c++)
			for (int64_t ih = 0; ih < g.h; ih++)
				for (int64_t iw = 0; iw < g.w; iw++) {
					double want = 0;
					for (int64_t u = 0; u < k; u++)
						for (int64_t v = 0; v < k; v++) {
							int64_t i = ih + p - u, j = iw + p - v;
							if (i >= 0 && i < g.h && j >= 0 && j < g.w)
								want += gc0[((c * k + u) * k + v) * ld + i * g.w + j];
						}
					float got = gx[(c * g.h + ih) * g.w + iw];
					if (!(fabs(got - want) <= 1e-5 * (double)(k * k)))
						fail_msg("case %zu: gx[%lld][%lld][%lld] = %.9g, expected %.9g", ci,
						         (long long)c, (long long)ih, (long long)iw, got, want);
				}
		ln_tensor_release(&gc0t);
		ln_tensor_release(&xt);
		ln_tensor_release(&colt);
		ln_tensor_release(&gct);
		ln_tensor_release(&gxt);
	}
}

/* The layer against ln_conv2d_forward_naive/backward_naive; stride 2 (not
 * a same convolution) in the last case. */
static void check_conv_layer(int threads)
{
	int before = ln_gemm_threads();
	ln_gemm_set_threads(threads);
	for (size_t ci = 0; ci <= sizeof same_cases / sizeof same_cases[0]; ci++) {
		const struct same_case strided = {3, 2, 7, 6, 3, 3};
		const bool last = ci == sizeof same_cases / sizeof same_cases[0];
		const struct same_case *c = last ? &strided : &same_cases[ci];
		ln_conv2d_opts o = same_opts(c);
		if (last)
			o.sh = o.sw = 2;
		ln_conv2d_geom g;
		ln_conv2d_geom_init(&g, &o, c->n, c->h, c->w);
		ln_rng_seed(ln_rng_global(), SEED + ci);
		ln_module *m;
		ln_error err;
		assert_int_equal(ln_conv2d_new_opts(&m, NULL, &o, &err), LN_OK);
		ln_tensor x = LN_TENSOR_EMPTY, gy = LN_TENSOR_EMPTY, b = LN_TENSOR_EMPTY;
		tu_tensor_uniform(&x, 4, (int64_t[]){c->n, c->cin, c->h, c->w}, -1.0f, 1.0f);
		tu_tensor_uniform(&b, 1, (int64_t[]){c->cout}, -1.0f, 1.0f);
		ln_tensor_copy(&m->param[1], &b, NULL);
		assert_int_equal(ln_module_forward(m, &x, &err), LN_OK);
		int64_t ny = ln_tensor_numel(&m->output), nw = ln_tensor_numel(&m->param[0]);
		int64_t nx = ln_tensor_numel(&x);
		tu_tensor_uniform(&gy, 4, m->output.shape, -1.0f, 1.0f);
		/* twice, with zero_grad between: scratch of the first pass must
		 * not leak into the second */
		assert_int_equal(ln_module_backward(m, &x, &gy, &err), LN_OK);
		ln_module_zero_grad(m);
		assert_int_equal(ln_module_backward(m, &x, &gy, &err), LN_OK);
		float y[8192], gx[8192], gw[1024], gb[16];
		assert_true(ny <= 8192 && nx <= 8192 && nw <= 1024 && c->cout <= 16);
		memset(gw, 0, sizeof gw);
		memset(gb, 0, sizeof gb);
		ln_conv2d_forward_naive(y, ln_tensor_data(&x), ln_tensor_data(&m->param[0]),
		                      ln_tensor_data(&m->param[1]), &g);
		ln_conv2d_backward_naive(gx, gw, gb, ln_tensor_data(&gy), ln_tensor_data(&x),
		                       ln_tensor_data(&m->param[0]), &g);
		const float *got[4] = {ln_tensor_data(&m->output), ln_tensor_data(&m->grad_input),
		                       ln_tensor_data(&m->grad[0]), ln_tensor_data(&m->grad[1])};
		const float *want[4] = {y, gx, gw, gb};
		const int64_t len[4] = {ny, nx, nw, c->cout};
		const char *what[4] = {"output", "grad_input", "grad_weight", "grad_bias"};
		double tol = 1e-5 * (double)(c->cin * c->k * c->k + c->n * c->h * c->w);
		for (int t = 0; t < 4; t++)
			for (int64_t e = 0; e < len[t]; e++)
				if (!(fabs(got[t][e] - want[t][e]) <= tol))
					fail_msg("seed %u, %d threads, case %zu: %s[%lld] = %.9g, "
					         "reference %.9g", SEED + (unsigned)ci, threads, ci, what[t],
					         (long long)e, got[t][e], want[t][e]);
		ln_tensor_release(&x);
		ln_tensor_release(&gy);
		ln_tensor_release(&b);
		ln_module_release(m);
	}
	ln_gemm_set_threads(before);
}

static void test_same_conv_layer(void **state)
{
	check_conv_layer(1);
}

/* The layer splits the batch over the worker threads: more threads than
 * samples, and uneven shares, give the same numbers. */
static void test_conv_layer_threads(void **state)
{
	check_conv_layer(2);
	check_conv_layer(3);
}

/* The batch is cut into fixed runs whatever the thread count:
 * the output and every gradient are the same bits on 1, 2 and 3 threads
 * (13 samples: uneven runs). */
static void test_conv_same_bits_any_threads(void **state)
{
	int before = ln_gemm_threads();
	ln_tensor ref[4];
	for (int threads = 1; threads <= 3; threads++) {
		ln_gemm_set_threads(threads);
		ln_rng_seed(ln_rng_global(), SEED);
		ln_module *m;
		ln_error err;
		assert_int_equal(ln_conv2d_new(&m, NULL, 3, 4, 3, 1, 1, true, &err), LN_OK);
		ln_tensor x = LN_TENSOR_EMPTY, gy = LN_TENSOR_EMPTY;
		tu_tensor_uniform(&x, 4, (int64_t[]){13, 3, 9, 8}, -1.0f, 1.0f);
		assert_int_equal(ln_module_forward(m, &x, &err), LN_OK);
		tu_tensor_uniform(&gy, 4, m->output.shape, -1.0f, 1.0f);
		assert_int_equal(ln_module_backward(m, &x, &gy, &err), LN_OK);
		const ln_tensor *got[4] = {&m->output, &m->grad_input, &m->grad[0], &m->grad[1]};
		for (int t = 0; t < 4; t++) {
			if (threads == 1) {
				ref[t] = LN_TENSOR_EMPTY;
				assert_int_equal(ln_tensor_clone(&ref[t], got[t], NULL), LN_OK);
				continue;
			}
			const float *a = ln_tensor_data(got[t]), *b = ln_tensor_data(&ref[t]);
			if (memcmp(a, b, (size_t)ln_tensor_numel(got[t]) * sizeof(float)) != 0)
				fail_msg("seed %u: tensor %d differs between 1 and %d threads", SEED, t, threads);
		}
		ln_tensor_release(&x);
		ln_tensor_release(&gy);
		ln_module_release(m);
	}
	for (int t = 0; t < 4; t++)
		ln_tensor_release(&ref[t]);
	ln_gemm_set_threads(before);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_maxpool2_matches_walk),
		cmocka_unit_test(test_maxpool2_portable_matches_walk),
		cmocka_unit_test(test_relu_maxpool2_matches_reference),
		cmocka_unit_test(test_same_im2col_col2im),
		cmocka_unit_test(test_same_conv_layer),
		cmocka_unit_test(test_conv_layer_threads),
		cmocka_unit_test(test_conv_same_bits_any_threads),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
