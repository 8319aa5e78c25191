/*
 * gemm.c -- C (m,n) = alpha * op(A) op(B) + beta * C, row-major float32.
 *
 * ln_gemm hands the work to OpenBLAS; ln_gemm_ref is the naive triple
 * loop kept beside it as the reference the tests compare against.
 */
#include <assert.h>
#include <limits.h>

#include <cblas.h>

#include "gemm.h"

/* A(i,p) of op(A) stored row-major with leading dimension lda. */
#define OP_AT(x, trans, ld, r, c) ((trans) ? (x)[(c) * (ld) + (r)] : (x)[(r) * (ld) + (c)])

void ln_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
             const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
             int64_t ldc)
{
	/* cblas takes int sizes (OpenBLAS's default 32-bit interface) */
	assert(m >= 0 && n >= 0 && k >= 0);
	assert(m <= INT_MAX && n <= INT_MAX && k <= INT_MAX);
	assert(lda <= INT_MAX && ldb <= INT_MAX && ldc <= INT_MAX);
	cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
	            trans_b ? CblasTrans : CblasNoTrans, (int)m, (int)n, (int)k, alpha, a,
	            (int)lda, b, (int)ldb, beta, c, (int)ldc);
}

/*
 * C[i][j] = alpha * sum_p op(A)[i][p] * op(B)[p][j] + beta * C[i][j]
 * op(A): (m,k), op(B): (k,n), C: (m,n).  The sum is taken in double, in
 * order of p.  As in BLAS, C is not read when beta == 0 (so NaN or garbage
 * there does not leak into the result).
 */
void ln_gemm_ref(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                 const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                 int64_t ldc)
{
	for (int64_t i = 0; i < m; i++) {
		for (int64_t j = 0; j < n; j++) {
			double acc = 0.0;
			for (int64_t p = 0; p < k; p++)
				acc += (double)OP_AT(a, trans_a, lda, i, p) * (double)OP_AT(b, trans_b, ldb, p, j);
			double v = (double)alpha * acc;
			if (beta != 0.0f)
				v += (double)beta * (double)c[i * ldc + j];
			c[i * ldc + j] = (float)v;
		}
	}
}

void ln_gemm_set_threads(int n)
{
	openblas_set_num_threads(n < 1 ? 1 : n);
}

int ln_gemm_threads(void)
{
	return openblas_get_num_threads();
}
