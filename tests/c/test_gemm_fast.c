/*
 * test_gemm_fast.c -- every road ln_gemm can take (the tiny-product loop,
 * the AVX-512 and AVX2 packed kernels with their in-place, packed and
 * dot-product paths, OpenBLAS, and the threaded split) against
 * ln_gemm_naive, over all transpose combinations, odd sizes, alpha/beta and
 * padded leading dimensions.  Kernels the CPU lacks are skipped with a
 * message, never reported as passed silently.
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

#define SEED 20261127u
#define SENTINEL 12345.0f  /* fills padding that must be neither read nor written */

/* A matrix of `rows` stored rows of `cols` values each, row stride ld >=
 * cols; the values are uniform in [-1,1), the padding holds SENTINEL. */
static float *padded(int64_t rows, int64_t cols, int64_t ld)
{
	float *m = ln_malloc((size_t)(rows * ld) * sizeof(float));
	assert_non_null(m);
	for (int64_t i = 0; i < rows; i++)
		for (int64_t j = 0; j < ld; j++)
			m[i * ld + j] = j < cols ? (float)(2.0 * ln_rng_uniform(ln_rng_global()) - 1.0) : SENTINEL;
	return m;
}

static const char *impl_label(ln_gemm_impl which)
{
	switch (which) {
	case LN_GEMM_AUTO: return "auto";
	case LN_GEMM_BLAS: return "blas";
	case LN_GEMM_AVX512: return "avx512";
	case LN_GEMM_AVX2: return "avx2";
	}
	return "?";
}

/* Selects an implementation; false (with a note) when this CPU lacks it. */
static bool use(ln_gemm_impl which)
{
	ln_error err;
	if (ln_gemm_set_impl(which, &err) != LN_OK) {
		print_message("skipping %s: %s\n", impl_label(which), err.msg);
		return false;
	}
	return true;
}

/*
 * One product through ln_gemm (as currently set up) against ln_gemm_naive.
 * The stored matrices have `pad` extra columns of SENTINEL, which must come
 * out unchanged in C.  With beta == 0, C starts as NaN, which must not
 * reach the result.  Error bound, for any order of summation:
 * |error| <= (k+2) 2^-24 (|alpha| sum_p |a_ip b_pj| + |beta c_ij|).
 */
static void check(ln_gemm_impl which, bool ta, bool tb, int64_t m, int64_t n, int64_t k,
                  float alpha, float beta, int64_t pad)
{
	int64_t ar = ta ? k : m, ac = ta ? m : k;
	int64_t br = tb ? n : k, bc = tb ? k : n;
	int64_t lda = ac + pad, ldb = bc + pad, ldc = n + pad;
	float *a = padded(ar, ac, lda), *b = padded(br, bc, ldb), *c0 = padded(m, n, ldc);
	if (beta == 0.0f)
		for (int64_t i = 0; i < m; i++)
			for (int64_t j = 0; j < n; j++)
				c0[i * ldc + j] = NAN;
	size_t bytes = (size_t)(m * ldc) * sizeof(float);
	float *c1 = ln_malloc(bytes), *c2 = ln_malloc(bytes);
	assert_non_null(c1);
	assert_non_null(c2);
	memcpy(c1, c0, bytes);
	memcpy(c2, c0, bytes);

	ln_gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c1, ldc);
	ln_gemm_naive(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c2, ldc);

	for (int64_t i = 0; i < m; i++)
		for (int64_t j = 0; j < ldc; j++) {
			float x = c1[i * ldc + j], y = c2[i * ldc + j];
			if (j >= n) {
				if (x != SENTINEL)
					fail_msg("seed %u, %s: ta=%d tb=%d m=%lld n=%lld k=%lld: padding C[%lld][%lld] "
					         "changed to %g", SEED, impl_label(which), ta, tb, (long long)m,
					         (long long)n, (long long)k, (long long)i, (long long)j, x);
				continue;
			}
			double mag = 0;
			for (int64_t p = 0; p < k; p++)
				mag += fabs((double)(ta ? a[p * lda + i] : a[i * lda + p]) *
				            (double)(tb ? b[j * ldb + p] : b[p * ldb + j]));
			mag = fabs(alpha) * mag + (beta != 0.0f ? fabs(beta * c0[i * ldc + j]) : 0.0);
			double bound = (double)(k + 2) * 0x1.0p-24 * mag + 1e-30;
			if (!(fabs((double)x - (double)y) <= bound))
				fail_msg("seed %u, %s: ta=%d tb=%d m=%lld n=%lld k=%lld alpha=%g beta=%g pad=%lld: "
				         "C[%lld][%lld] = %.9g, reference %.9g", SEED, impl_label(which), ta, tb,
				         (long long)m, (long long)n, (long long)k, alpha, beta, (long long)pad,
				         (long long)i, (long long)j, x, y);
		}
	ln_free(a);
	ln_free(b);
	ln_free(c0);
	ln_free(c1);
	ln_free(c2);
}

/* Sizes chosen to reach every path: m around the 12- and 6-row tiles, n
 * around the 32- and 16-column panels and the n <= 16 dot path, k around
 * the 16-wide transposes, the 64 in-place limit and the 256 k block. */
static const int64_t shapes[][3] = {
	{1, 1, 1}, {1, 33, 1}, {13, 1, 7}, {12, 32, 16}, {11, 31, 17}, {25, 47, 65},
	{64, 10, 128}, {64, 9, 300}, {16, 9, 784}, {5, 16, 33}, {7, 17, 255},
	{40, 70, 257}, {37, 130, 520}, {3, 200, 64}, {24, 96, 1},
};
static const float alpha_beta[][2] = {{1.0f, 0.0f}, {1.0f, 1.0f}, {-0.75f, 0.5f}};

static void sweep(ln_gemm_impl which)
{
	ln_rng_seed(ln_rng_global(), SEED);
	for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
		for (int t = 0; t < 4; t++)
			for (size_t q = 0; q < sizeof alpha_beta / sizeof alpha_beta[0]; q++)
				for (int64_t pad = 0; pad <= 5; pad += 5)
					check(which, t & 1, (t >> 1) & 1, shapes[s][0], shapes[s][1], shapes[s][2],
					      alpha_beta[q][0], alpha_beta[q][1], pad);
}

static void test_avx512_matches_naive(void **state)
{
	if (use(LN_GEMM_AVX512))
		sweep(LN_GEMM_AVX512);
	use(LN_GEMM_AUTO);
}

static void test_avx2_matches_naive(void **state)
{
	if (use(LN_GEMM_AVX2))
		sweep(LN_GEMM_AVX2);
	use(LN_GEMM_AUTO);
}

static void test_blas_matches_naive(void **state)
{
	assert_true(use(LN_GEMM_BLAS));
	sweep(LN_GEMM_BLAS);
	use(LN_GEMM_AUTO);
}

/* AUTO sends products of at most 512 multiply-adds to the plain loop:
 * the tiny network's shapes and their neighbours. */
static void test_small_matches_naive(void **state)
{
	static const int64_t small[][3] = {
		{4, 8, 2}, {8, 2, 4}, {4, 2, 8}, {4, 1, 8}, {1, 8, 4}, {4, 8, 1}, {8, 8, 8}, {3, 5, 7},
	};
	assert_true(use(LN_GEMM_AUTO));
	ln_rng_seed(ln_rng_global(), SEED);
	for (size_t s = 0; s < sizeof small / sizeof small[0]; s++)
		for (int t = 0; t < 4; t++)
			for (size_t q = 0; q < sizeof alpha_beta / sizeof alpha_beta[0]; q++)
				check(LN_GEMM_AUTO, t & 1, (t >> 1) & 1, small[s][0], small[s][1], small[s][2],
				      alpha_beta[q][0], alpha_beta[q][1], 3);
}

/* Products bigger than one pack block (n > 1024 columns for AVX-512, 256
 * for AVX2, k > 256), a transposed A packed over several column blocks,
 * and an untransposed B too big to read in place. */
static void test_large_matches_naive(void **state)
{
	ln_gemm_impl impls[] = {LN_GEMM_AVX512, LN_GEMM_AVX2};
	for (size_t i = 0; i < 2; i++) {
		if (!use(impls[i]))
			continue;
		ln_rng_seed(ln_rng_global(), SEED);
		check(impls[i], false, false, 13, 1100, 300, 1.0f, 1.0f, 3);
		check(impls[i], false, true, 13, 1100, 300, 1.0f, 0.0f, 3);
		check(impls[i], true, false, 30, 1030, 70, 1.0f, 0.0f, 0);
		check(impls[i], false, false, 20, 600, 520, 1.0f, 0.0f, 0);  /* k*n > 256K: packed */
		check(impls[i], true, false, 19, 600, 300, -1.0f, 1.0f, 2);
	}
	use(LN_GEMM_AUTO);
}

/* Frees the operands of one biased product and its two results. */
static void free_operands(float *a, float *b, float *rb, float *cb, float *c1, float *c2)
{
	ln_free(a);
	ln_free(b);
	ln_free(rb);
	ln_free(cb);
	ln_free(c1);
	ln_free(c2);
}

/* ln_gemm_biased against ln_gemm followed by the biases added by hand,
 * each addition rounded once, row bias then column bias: the same bits,
 * for every implementation, through the epilogue of the kernels (whole
 * and partial panels, several k blocks, a product split over threads) and
 * the plain loop, with a row bias, a column bias or both. */
static void test_biased_matches_unbiased(void **state)
{
	static const int64_t sh[][3] = {
		{6, 16, 9}, {7, 37, 300}, {32, 196, 144}, {64, 10, 1568}, {3, 5, 2}, {64, 300, 400},
	};
	ln_gemm_impl impls[] = {LN_GEMM_AUTO, LN_GEMM_AVX512, LN_GEMM_AVX2, LN_GEMM_BLAS};
	const int saved = ln_gemm_threads();
	ln_gemm_set_threads(2);
	for (size_t q = 0; q < sizeof impls / sizeof impls[0]; q++) {
		if (!use(impls[q]))
			continue;
		ln_rng_seed(ln_rng_global(), SEED);
		for (size_t t = 0; t < sizeof sh / sizeof sh[0]; t++)
			for (int which = 1; which < 4; which++)
				for (int tr = 0; tr < 4; tr++) {
					const bool ta = tr & 1, tb = tr & 2;
					const int64_t m = sh[t][0], n = sh[t][1], k = sh[t][2];
					float *a = padded(ta ? k : m, ta ? m : k, ta ? m : k);
					float *b = padded(tb ? n : k, tb ? k : n, tb ? k : n);
					float *rb = padded(1, m, m), *cb = padded(1, n, n);
					float *c1 = padded(m, n, n), *c2 = ln_malloc((size_t)(m * n) * sizeof(float));
					assert_non_null(c2);
					memcpy(c2, c1, (size_t)(m * n) * sizeof(float));
					const float *r = which & 1 ? rb : NULL, *c = which & 2 ? cb : NULL;
					const float beta = tr == 3 ? 0.5f : 0.0f;
					ln_gemm_biased(ta, tb, m, n, k, 1.0f, a, ta ? m : k, b, tb ? k : n, beta, c1,
					               n, r, c);
					ln_gemm(ta, tb, m, n, k, 1.0f, a, ta ? m : k, b, tb ? k : n, beta, c2, n);
					for (int64_t i = 0; i < m; i++)
						for (int64_t j = 0; j < n; j++) {
							float want = c2[i * n + j];
							if (r)
								want += r[i];
							if (c)
								want += c[j];
							if (c1[i * n + j] != want)
								fail_msg("seed %u, %s: ta=%d tb=%d m=%lld n=%lld k=%lld biases %d: "
								         "C[%lld][%lld] = %.9g, expected %.9g", SEED,
								         impl_label(impls[q]), ta, tb, (long long)m, (long long)n,
								         (long long)k, which, (long long)i, (long long)j,
								         c1[i * n + j], want);
						}
					free_operands(a, b, rb, cb, c1, c2);
				}
	}
	ln_gemm_set_threads(saved);
	use(LN_GEMM_AUTO);
}

/* k == 0 and alpha == 0 give C = beta C without reading A or B (here NaN),
 * as BLAS defines them; beta == 0 then clears C whatever it held. */
static void test_degenerate(void **state)
{
	float a[6] = {NAN, NAN, NAN, NAN, NAN, NAN}, b[6] = {NAN, NAN, NAN, NAN, NAN, NAN};
	float c[6] = {1, 2, 3, 4, 5, 6};
	ln_gemm(false, false, 2, 3, 0, 1.0f, a, 1, b, 3, 2.0f, c, 3);
	for (int i = 0; i < 6; i++)
		assert_float_equal(c[i], 2.0f * (float)(i + 1), 0);
	ln_gemm(false, false, 2, 3, 2, 0.0f, a, 2, b, 3, 0.5f, c, 3);
	for (int i = 0; i < 6; i++)
		assert_float_equal(c[i], (float)(i + 1), 0);
	c[4] = NAN;
	ln_gemm(false, false, 2, 3, 0, 1.0f, a, 1, b, 3, 0.0f, c, 3);
	for (int i = 0; i < 6; i++)
		assert_float_equal(c[i], 0.0f, 0);
	/* m == 0 or n == 0: nothing is touched */
	c[0] = 7.0f;
	ln_gemm(false, false, 0, 3, 2, 1.0f, a, 2, b, 3, 0.0f, c, 3);
	ln_gemm(false, false, 2, 0, 2, 1.0f, a, 2, b, 3, 0.0f, c, 3);
	assert_float_equal(c[0], 7.0f, 0);
}

/* Split over threads, a product gives the same bits as on one thread:
 * every element is computed by the same code in the same order, only by
 * another thread.  The shapes are split by columns (m <= n) and by rows
 * (m > n, one of them not a multiple of any kernel's rows, one only 10
 * columns wide), each in all four transpose cases, with beta and the
 * biases of ln_gemm_biased (whose offsets follow the chunk). */
static void test_threads_same_bits(void **state)
{
	static const int64_t sh[][3] = {{64, 784, 256}, {256, 128, 256}, {250, 10, 1568},
	                                {199, 200, 64}};
	const int before = ln_gemm_threads();
	ln_rng_seed(ln_rng_global(), SEED);
	for (size_t t = 0; t < sizeof sh / sizeof sh[0]; t++)
		for (int tr = 0; tr < 4; tr++) {
			const bool ta = tr & 1, tb = tr & 2;
			const int64_t m = sh[t][0], n = sh[t][1], k = sh[t][2];
			const int64_t lda = ta ? m : k, ldb = tb ? k : n;
			float *a = padded(ta ? k : m, lda, lda), *b = padded(tb ? n : k, ldb, ldb);
			float *rb = padded(1, m, m), *cb = padded(1, n, n);
			float *c1 = padded(m, n, n), *c2 = ln_malloc((size_t)(m * n) * sizeof(float));
			assert_non_null(c2);
			memcpy(c2, c1, (size_t)(m * n) * sizeof(float));
			const float beta = tr == 1 ? 0.5f : 0.0f;
			const float *r = tr >= 2 ? rb : NULL, *c = tr != 2 ? cb : NULL;
			ln_gemm_set_threads(1);
			ln_gemm_biased(ta, tb, m, n, k, 1.0f, a, lda, b, ldb, beta, c1, n, r, c);
			ln_gemm_set_threads(2);
			ln_gemm_biased(ta, tb, m, n, k, 1.0f, a, lda, b, ldb, beta, c2, n, r, c);
			for (int64_t i = 0; i < m * n; i++)
				if (memcmp(&c1[i], &c2[i], sizeof(float)) != 0)
					fail_msg("ta=%d tb=%d m=%lld n=%lld k=%lld: element %lld is %.9g on 1 thread, "
					         "%.9g on 2", ta, tb, (long long)m, (long long)n, (long long)k,
					         (long long)i, c1[i], c2[i]);
			free_operands(a, b, rb, cb, c1, c2);
		}
	ln_gemm_set_threads(before);
	assert_int_equal(ln_gemm_threads(), before);
}

static void test_set_impl(void **state)
{
	ln_error err;
	assert_int_equal(ln_gemm_set_impl((ln_gemm_impl)42, &err), LN_EARG);
	assert_string_equal(err.msg, "ln_gemm_set_impl: unknown implementation 42");
	assert_int_equal(ln_gemm_get_impl(), LN_GEMM_AUTO);
	if (ln_gemm_cpu() != LN_GEMM_CPU_AVX512) {
		assert_int_equal(ln_gemm_set_impl(LN_GEMM_AVX512, &err), LN_EARG);
		assert_string_equal(err.msg, "ln_gemm_set_impl: this CPU has no AVX-512F");
	}
	assert_int_equal(ln_gemm_set_impl(LN_GEMM_BLAS, &err), LN_OK);
	assert_int_equal(ln_gemm_get_impl(), LN_GEMM_BLAS);
	assert_string_equal(ln_gemm_impl_name(), "openblas");
	assert_int_equal(ln_gemm_set_impl(LN_GEMM_AUTO, NULL), LN_OK);
	const char *want = ln_gemm_cpu() == LN_GEMM_CPU_AVX512 ? "auto (avx512)"
	                 : ln_gemm_cpu() == LN_GEMM_CPU_AVX2 ? "auto (avx2)" : "auto (openblas)";
	assert_string_equal(ln_gemm_impl_name(), want);
}

/* A product allocates nothing: its scratch is static. */
static void test_no_allocation(void **state)
{
	const int64_t m = 64, n = 256, k = 784;
	ln_rng_seed(ln_rng_global(), SEED);
	float *a = padded(m, k, k), *w = padded(n, k, k);
	float *c = ln_malloc((size_t)(m * n) * sizeof(float));
	assert_non_null(c);
	ln_alloc_stats s0, s1;
	ln_alloc_get_stats(&s0);
	ln_gemm(false, true, m, n, k, 1.0f, a, k, w, k, 0.0f, c, n);
	ln_gemm(true, false, n, k, m, 1.0f, c, n, a, k, 0.0f, w, k);
	ln_alloc_get_stats(&s1);
	assert_int_equal(s1.allocs, s0.allocs);
	ln_free(a);
	ln_free(w);
	ln_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_avx512_matches_naive),
		cmocka_unit_test(test_avx2_matches_naive),
		cmocka_unit_test(test_blas_matches_naive),
		cmocka_unit_test(test_small_matches_naive),
		cmocka_unit_test(test_large_matches_naive),
		cmocka_unit_test(test_biased_matches_unbiased),
		cmocka_unit_test(test_degenerate),
		cmocka_unit_test(test_threads_same_bits),
		cmocka_unit_test(test_set_impl),
		cmocka_unit_test(test_no_allocation),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
