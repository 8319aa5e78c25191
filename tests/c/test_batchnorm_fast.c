/*
 * test_batchnorm_fast.c -- BatchNorm's AVX2 per-channel sums
 * (batchnorm_avx2.c) against the portable reference, bit for bit
 * (batchnorm_kernels.h: the same terms, lanes and order), over runs of
 * every length around the 8-wide blocks, with NaNs, infinities, zeros of
 * both signs and values of very different magnitudes; and the layer with
 * the AVX2 kernels against the layer with the portable ones (the same
 * output, running statistics and gradients), with a gradient check on
 * planes of odd sizes.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "core/cpu.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "nn/batchnorm_kernels.h"
#include "nn/conv.h"
#include "nn/module.h"
#include "testutil.h"

#define SEED 5151u

/* Equal as bits, or both NaN (a NaN's sign and payload depend on which
 * operand the processor propagates, which the reference does not fix). */
static void expect_same(const double *got, const double *want, int64_t n, const char *what)
{
	for (int64_t i = 0; i < n; i++) {
		if (isnan(got[i]) && isnan(want[i]))
			continue;
		if (memcmp(&got[i], &want[i], sizeof got[i]))
			fail_msg("%s: sum %lld is %.17g, the reference's %.17g", what, (long long)i, got[i],
			         want[i]);
	}
}

/* A value of x or g: mostly uniform in [-2,2) times a scale from 1e-6 to
 * 1e6 (rounding then matters in the sums), some exact zeros of both signs,
 * and NaN or an infinity when `special`. */
static float draw(bool special)
{
	ln_rng *r = ln_rng_global();
	const double u = ln_rng_uniform(r);
	if (special && u < 0.01)
		return NAN;
	if (special && u < 0.02)
		return u < 0.015 ? INFINITY : -INFINITY;
	if (u < 0.06)
		return u < 0.04 ? 0.0f : -0.0f;
	static const float scale[] = {1e-6f, 1.0f, 1e3f, 1e6f};
	return (float)(4 * ln_rng_uniform(r) - 2) * scale[ln_rng_below(r, 4)];
}

static void check_sums(int64_t nb, int64_t ch, int64_t sp, bool special)
{
	const size_t n = (size_t)(nb * ch * sp);
	float *x = test_malloc(n * sizeof(float)), *g = test_malloc(n * sizeof(float));
	double *mu = test_malloc((size_t)ch * sizeof(double));
	double *a = test_malloc(2 * (size_t)ch * sizeof(double));
	double *b = test_malloc(2 * (size_t)ch * sizeof(double));
	for (size_t i = 0; i < n; i++) {
		x[i] = draw(special);
		g[i] = draw(special);
	}
	for (int64_t c = 0; c < ch; c++)  /* a mean near the data's, and an odd one */
		mu[c] = c == 1 ? -0.0 : c == 2 && special ? NAN : 0.37 * (double)x[c * sp];
	char what[128];
	for (int f = 0; f <= 2; f++) {
		memset(a, 0x7f, (size_t)ch * sizeof(double));
		memset(b, 0x55, (size_t)ch * sizeof(double));
		ln_bn_channel_sums_ref(a, f, x, g, mu, nb, ch, sp);
		ln_bn_channel_sums_avx2(b, f, x, g, mu, nb, ch, sp);
		snprintf(what, sizeof what, "sums f=%d on {%lld,%lld,%lld}%s", f, (long long)nb,
		         (long long)ch, (long long)sp, special ? " with NaN/inf" : "");
		expect_same(b, a, ch, what);
	}
	memset(a, 0x7f, 2 * (size_t)ch * sizeof(double));
	memset(b, 0x55, 2 * (size_t)ch * sizeof(double));
	ln_bn_grad_sums_ref(a, a + ch, g, x, mu, nb, ch, sp);
	ln_bn_grad_sums_avx2(b, b + ch, g, x, mu, nb, ch, sp);
	snprintf(what, sizeof what, "backward sums on {%lld,%lld,%lld}%s", (long long)nb,
	         (long long)ch, (long long)sp, special ? " with NaN/inf" : "");
	expect_same(b, a, 2 * ch, what);
	test_free(x);
	test_free(g);
	test_free(mu);
	test_free(a);
	test_free(b);
}

static void test_sums_match_reference(void **state)
{
	if (!ln_cpu_avx2_fma()) {
		print_message("no AVX2 on this CPU: BatchNorm's AVX2 sums are not used\n");
		return;
	}
	ln_rng_seed(ln_rng_global(), SEED);
	for (int64_t sp = 2; sp <= 34; sp++)
		for (int special = 0; special < 2; special++)
			check_sums(sp % 3 + 1, 4, sp, special);
	static const int64_t big[][3] = {{3, 5, 49}, {2, 3, 196}, {2, 2, 784}, {1, 3, 63}};
	for (size_t i = 0; i < sizeof big / sizeof big[0]; i++)
		for (int special = 0; special < 2; special++)
			check_sums(big[i][0], big[i][1], big[i][2], special);
}

/* A sum of zeros of both signs is +0 in both (the partial sums start at
 * +0), and one whose terms all cancel too. */
static void test_sums_signed_zeros(void **state)
{
	if (!ln_cpu_avx2_fma())
		return;
	float x[2 * 11];
	for (int i = 0; i < 22; i++)
		x[i] = i % 2 ? -0.0f : (i < 11 ? -0.0f : (i % 4 ? 1.5f : -1.5f));
	const double mu[2] = {0.0, -0.0};
	for (int f = 0; f <= 2; f++) {
		double a[2], b[2];
		ln_bn_channel_sums_ref(a, f, x, x, mu, 1, 2, 11);
		ln_bn_channel_sums_avx2(b, f, x, x, mu, 1, 2, 11);
		expect_same(b, a, 2, "signed zeros");
		assert_false(signbit(b[0]));
	}
}

/* The layer on {N,C,H,W} with the AVX2 sums and with the portable ones:
 * the same output, running statistics, input and parameter gradients, in
 * training and in evaluate mode. */
static void run_layer(bool portable, bool training, const ln_tensor *x, const ln_tensor *gy,
                      float *out[5], int64_t c)
{
	ln_module *m;
	ln_error err;
	ln_cpu_use_portable(portable);
	if (ln_batchnorm_new(&m, NULL, c, &err) != LN_OK)
		fail_msg("ln_batchnorm_new: %s", err.msg);
	ln_rng_seed(ln_rng_global(), SEED + 9);
	float *gamma = ln_tensor_data(&m->param[0]), *beta = ln_tensor_data(&m->param[1]);
	for (int64_t k = 0; k < c; k++) {
		gamma[k] = 0.5f + (float)ln_rng_uniform(ln_rng_global());
		beta[k] = (float)ln_rng_uniform(ln_rng_global()) - 0.5f;
	}
	ln_module_set_training(m, training);
	tu_forward_ok(m, x);
	tu_backward_ok(m, x, gy);
	const int64_t n = ln_tensor_numel(x);
	memcpy(out[0], ln_tensor_data(&m->output), (size_t)n * sizeof(float));
	memcpy(out[1], ln_tensor_data(&m->grad_input), (size_t)n * sizeof(float));
	memcpy(out[2], ln_tensor_data(&m->grad[0]), (size_t)c * sizeof(float));
	memcpy(out[3], ln_tensor_data(&m->grad[1]), (size_t)c * sizeof(float));
	memcpy(out[4], ln_tensor_data(&m->buffer[1]), (size_t)c * sizeof(float));
	ln_module_release(m);
	ln_cpu_use_portable(false);
}

static void test_layer_same_bits(void **state)
{
	static const int64_t shapes[][4] = {{4, 3, 7, 7}, {2, 5, 3, 5}, {3, 2, 14, 14}, {2, 3, 1, 2}};
	for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
		for (int training = 0; training < 2; training++) {
			ln_rng_seed(ln_rng_global(), SEED + 3 + (unsigned)s);
			ln_tensor x, gy;
			tu_tensor_uniform(&x, 4, shapes[s], -3.0f, 2.0f);
			tu_tensor_uniform(&gy, 4, shapes[s], -1.0f, 1.0f);
			const int64_t n = ln_tensor_numel(&x), c = shapes[s][1];
			const size_t len[5] = {(size_t)n, (size_t)n, (size_t)c, (size_t)c, (size_t)c};
			float *r[2][5];
			for (int k = 0; k < 2; k++)
				for (int i = 0; i < 5; i++)
					r[k][i] = test_malloc(len[i] * sizeof(float));
			run_layer(true, training, &x, &gy, r[0], c);
			run_layer(false, training, &x, &gy, r[1], c);
			static const char *names[5] = {"output", "grad_input", "dgamma", "dbeta",
			                               "running_var"};
			for (int i = 0; i < 5; i++)
				if (memcmp(r[0][i], r[1][i], len[i] * sizeof(float)))
					fail_msg("BatchNorm on {%lld,%lld,%lld,%lld} %s: %s differs between the "
					         "portable and the AVX2 sums",
					         (long long)shapes[s][0], (long long)c, (long long)shapes[s][2],
					         (long long)shapes[s][3], training ? "training" : "evaluate",
					         names[i]);
			for (int k = 0; k < 2; k++)
				for (int i = 0; i < 5; i++)
					test_free(r[k][i]);
			ln_tensor_release(&x);
			ln_tensor_release(&gy);
		}
}

/* Finite differences through the layer on planes of odd sizes (runs of 9
 * and 35 values: a full block and a masked one). */
static void test_gradcheck_odd_planes(void **state)
{
	static const int64_t shapes[][4] = {{3, 2, 3, 3}, {2, 3, 5, 7}};
	for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
		ln_rng_seed(ln_rng_global(), SEED + 20 + (unsigned)s);
		ln_module *m;
		ln_error err;
		if (ln_batchnorm_new(&m, NULL, shapes[s][1], &err) != LN_OK)
			fail_msg("ln_batchnorm_new: %s", err.msg);
		ln_tensor x;
		tu_tensor_uniform(&x, 4, shapes[s], -2.0f, 3.0f);
		double e = tu_gradcheck_module(m, &x, 1e-2);
		if (!(e < 1e-2))
			fail_msg("BatchNorm gradcheck on shape %zu: relative error %g", s, e);
		ln_tensor_release(&x);
		ln_module_release(m);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sums_match_reference),
		cmocka_unit_test(test_sums_signed_zeros),
		cmocka_unit_test(test_layer_same_bits),
		cmocka_unit_test(test_gradcheck_odd_planes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
