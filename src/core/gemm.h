/*
 * gemm.h -- matrix products.  Row-major single precision:
 *
 *     C (m,n) = alpha * op(A) op(B) + beta * C
 *
 * op(X) is X or its transpose (trans_a/trans_b); lda/ldb/ldc are the
 * row strides of the matrices as stored.  As in BLAS, C is not read when
 * beta == 0, and A and B are not read when k == 0 or alpha == 0.
 *
 * ln_gemm makes tiny products with a plain loop, others with lunet's own
 * packed AVX-512 or AVX2 kernels (chosen at run time from the CPU), and
 * falls back to OpenBLAS's cblas_sgemm on CPUs with neither (gemm.c says
 * why).  ln_gemm_naive is the plain triple loop (double accumulator) kept
 * beside them to test them against.
 */
#ifndef LN_GEMM_H
#define LN_GEMM_H

#include <stdbool.h>
#include <stdint.h>

#include "error.h"

void ln_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
             const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
             int64_t ldc);

/* The same, then C[i][j] += row_bias[i] + col_bias[j] (either may be
 * NULL): a layer's bias added as the product is written, rather than
 * in a pass of its own (a Linear's y = x W^T + b has a bias per column, a
 * convolution's per-sample y = W col + b one per row).  Each addition is
 * rounded once, after alpha op(A) op(B) + beta C. */
void ln_gemm_biased(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                    const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                    float *c, int64_t ldc, const float *row_bias, const float *col_bias);

void ln_gemm_naive(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                 const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                 int64_t ldc);

/* Number of threads a product may use, for both lunet's kernels and
 * OpenBLAS; n < 1 counts as 1.  Until set, OpenBLAS's own count
 * (OPENBLAS_NUM_THREADS, else the number of cores).  Only products of a
 * few million multiply-adds or more are split. */
void ln_gemm_set_threads(int n);
int ln_gemm_threads(void);

/* Which code ln_gemm uses beyond the tiny-product loop: LN_GEMM_AUTO (the
 * default: the best kernels this CPU runs, else OpenBLAS), or one forced,
 * for measurements and tests.  Forcing kernels the CPU lacks fails with
 * LN_EARG.  The build may change the default (CMake LUNET_GEMM). */
typedef enum ln_gemm_impl {
	LN_GEMM_AUTO = 0, LN_GEMM_BLAS, LN_GEMM_AVX512, LN_GEMM_AVX2
} ln_gemm_impl;
ln_status ln_gemm_set_impl(ln_gemm_impl which, ln_error *err);
ln_gemm_impl ln_gemm_get_impl(void);
/* "avx512", "openblas", "auto (avx2)"...: the setting and what it means
 * on this CPU. */
const char *ln_gemm_impl_name(void);

/* The best packed kernels this CPU can run. */
typedef enum ln_gemm_cpu_kind {
	LN_GEMM_CPU_NONE = 0, LN_GEMM_CPU_AVX2, LN_GEMM_CPU_AVX512
} ln_gemm_cpu_kind;
ln_gemm_cpu_kind ln_gemm_cpu(void);

#endif
