/*
 * test_gemm.c -- ln_gemm (OpenBLAS) against ln_gemm_naive (naive loop), and
 * ln_gemm_naive against products worked out by hand.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "core/alloc.h"
#include "core/gemm.h"
#include "core/rng.h"

#define SEED 20240611u
#define SENTINEL 12345.0f  /* fills padding that must be neither read nor written */

/* A (2,3) and B (3,2), and their product worked out by hand:
 *     [1 2 3]   [ 7  8]   [1*7+2*9+3*11  1*8+2*10+3*12]   [ 58  64]
 *     [4 5 6] x [ 9 10] = [4*7+5*9+6*11  4*8+5*10+6*12] = [139 154]
 *               [11 12]                                              */
static const float A23[6] = { 1, 2, 3, 4, 5, 6 };
static const float B32[6] = { 7, 8, 9, 10, 11, 12 };
static const float AB[4] = { 58, 64, 139, 154 };

static void test_ref_by_hand(void **state)
{
	float c[4];
	ln_gemm_naive(false, false, 2, 2, 3, 1.0f, A23, 3, B32, 2, 0.0f, c, 2);
	for (int i = 0; i < 4; i++)
		assert_float_equal(c[i], AB[i], 0);

	/* A^T stored: (3,2) = [1 4; 2 5; 3 6]; B^T stored: (2,3) = [7 9 11; 8 10 12] */
	const float at[6] = { 1, 4, 2, 5, 3, 6 }, bt[6] = { 7, 9, 11, 8, 10, 12 };
	ln_gemm_naive(true, true, 2, 2, 3, 1.0f, at, 2, bt, 3, 0.0f, c, 2);
	for (int i = 0; i < 4; i++)
		assert_float_equal(c[i], AB[i], 0);

	/* alpha and beta: C = 2 AB - 1 C0 with C0 = [1 2; 3 4] */
	float c2[4] = { 1, 2, 3, 4 };
	ln_gemm_naive(false, true, 2, 2, 3, 2.0f, A23, 3, bt, 3, -1.0f, c2, 2);
	const float want[4] = { 115, 126, 275, 304 };
	for (int i = 0; i < 4; i++)
		assert_float_equal(c2[i], want[i], 0);

	/* beta == 0 ignores C entirely, even NaN */
	float c3[4] = { NAN, NAN, INFINITY, NAN };
	ln_gemm_naive(false, false, 2, 2, 3, 1.0f, A23, 3, B32, 2, 0.0f, c3, 2);
	for (int i = 0; i < 4; i++)
		assert_float_equal(c3[i], AB[i], 0);
}

static void test_blas_by_hand(void **state)
{
	float c[4] = { NAN, NAN, NAN, NAN };
	ln_gemm(false, false, 2, 2, 3, 1.0f, A23, 3, B32, 2, 0.0f, c, 2);
	for (int i = 0; i < 4; i++)
		assert_float_equal(c[i], AB[i], 0);
}

/* A matrix of `rows` stored rows of `cols` values each, row stride ld >=
 * cols; the padding holds SENTINEL. */
static float *padded(int64_t rows, int64_t cols, int64_t ld)
{
	float *m = ln_malloc((size_t)(rows * ld) * sizeof(float));
	assert_non_null(m);
	for (int64_t i = 0; i < rows; i++)
		for (int64_t j = 0; j < ld; j++)
			m[i * ld + j] = j < cols ? (float)(2.0 * ln_rng_uniform(ln_rng_global()) - 1.0) : SENTINEL;
	return m;
}

/* Compares ln_gemm with ln_gemm_naive for one case; padding of every matrix
 * is SENTINEL and must come out unchanged. */
static void check_case(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, float beta,
                       int64_t pad)
{
	/* stored shapes: A is (m,k) or (k,m), B is (k,n) or (n,k) */
	int64_t ar = ta ? k : m, ac = ta ? m : k;
	int64_t br = tb ? n : k, bc = tb ? k : n;
	int64_t lda = ac + pad, ldb = bc + pad, ldc = n + pad;
	float *a = padded(ar, ac, lda), *b = padded(br, bc, ldb);
	float *c0 = padded(m, n, ldc);
	float *c1 = ln_malloc((size_t)(m * ldc) * sizeof(float));
	float *c2 = ln_malloc((size_t)(m * ldc) * sizeof(float));
	assert_non_null(c1);
	assert_non_null(c2);
	memcpy(c1, c0, (size_t)(m * ldc) * sizeof(float));
	memcpy(c2, c0, (size_t)(m * ldc) * sizeof(float));

	ln_gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c1, ldc);
	ln_gemm_naive(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c2, ldc);

	/* |error| <= k * 2^-22 * (|alpha| sum |a||b| + |beta c|), entries in [-1,1) */
	double bound = (fabs(alpha) * (double)k + fabs(beta)) * (double)(k + 2) * 0x1.0p-22 + 1e-6;
	for (int64_t i = 0; i < m; i++) {
		for (int64_t j = 0; j < ldc; j++) {
			float x = c1[i * ldc + j], y = c2[i * ldc + j];
			if (j >= n) {
				assert_float_equal(x, SENTINEL, 0);
				assert_float_equal(y, SENTINEL, 0);
				continue;
			}
			if (!(fabs((double)x - (double)y) <= bound))
				fail_msg("seed %u: ta=%d tb=%d m=%lld n=%lld k=%lld alpha=%g beta=%g pad=%lld: "
				         "C[%lld][%lld] blas %.9g ref %.9g", SEED, ta, tb, (long long)m,
				         (long long)n, (long long)k, alpha, beta, (long long)pad, (long long)i,
				         (long long)j, x, y);
		}
	}
	ln_free(a);
	ln_free(b);
	ln_free(c0);
	ln_free(c1);
	ln_free(c2);
}

static void test_blas_matches_naive(void **state)
{
	static const int64_t sizes[][3] = {
		{ 1, 1, 1 }, { 7, 13, 5 }, { 65, 33, 129 }, { 1, 17, 3 }, { 16, 1, 9 }, { 4, 4, 1 },
		{ 64, 64, 64 },
	};
	static const float ab[][2] = { { 1.0f, 0.0f }, { 1.5f, -0.5f }, { -0.25f, 2.0f } };
	ln_rng_seed(ln_rng_global(), SEED);
	for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
		for (int t = 0; t < 4; t++)
			for (size_t q = 0; q < sizeof ab / sizeof ab[0]; q++)
				for (int64_t pad = 0; pad <= 3; pad += 3)
					check_case(t & 1, (t >> 1) & 1, sizes[s][0], sizes[s][1], sizes[s][2],
					           ab[q][0], ab[q][1], pad);
}

/* With beta == 0, C's old contents (here NaN) must not reach the result. */
static void test_beta_zero_ignores_c(void **state)
{
	ln_rng_seed(ln_rng_global(), SEED);
	const int64_t m = 9, n = 11, k = 6;
	float *a = padded(m, k, k), *b = padded(k, n, n);
	float *c = ln_malloc((size_t)(m * n) * sizeof(float));
	float *r = ln_malloc((size_t)(m * n) * sizeof(float));
	for (int64_t i = 0; i < m * n; i++)
		c[i] = r[i] = NAN;
	ln_gemm(false, false, m, n, k, 1.0f, a, k, b, n, 0.0f, c, n);
	ln_gemm_naive(false, false, m, n, k, 1.0f, a, k, b, n, 0.0f, r, n);
	for (int64_t i = 0; i < m * n; i++) {
		assert_false(isnan(c[i]));
		assert_false(isnan(r[i]));
		assert_true(fabsf(c[i] - r[i]) <= 1e-5f);
	}
	ln_free(a);
	ln_free(b);
	ln_free(c);
	ln_free(r);
}

static void test_threads(void **state)
{
	int before = ln_gemm_threads();
	assert_true(before >= 1);
	ln_gemm_set_threads(1);
	assert_int_equal(ln_gemm_threads(), 1);
	ln_gemm_set_threads(0);  /* clamped to 1 */
	assert_int_equal(ln_gemm_threads(), 1);
	/* results do not depend on the thread count beyond rounding */
	ln_rng_seed(ln_rng_global(), SEED);
	check_case(false, true, 70, 90, 110, 1.0f, 0.0f, 1);
	ln_gemm_set_threads(2);
	assert_true(ln_gemm_threads() >= 1 && ln_gemm_threads() <= 2);
	check_case(false, true, 70, 90, 110, 1.0f, 0.0f, 1);
	ln_gemm_set_threads(before);
	assert_int_equal(ln_gemm_threads(), before);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ref_by_hand),
		cmocka_unit_test(test_blas_by_hand),
		cmocka_unit_test(test_blas_matches_naive),
		cmocka_unit_test(test_beta_zero_ignores_c),
		cmocka_unit_test(test_threads),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
