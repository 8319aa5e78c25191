/*
 * gemm.h -- matrix products.  Row-major single precision:
 *
 *     C (m,n) = alpha * op(A) op(B) + beta * C
 *
 * op(X) is X or its transpose (trans_a/trans_b); lda/ldb/ldc are the
 * row strides of the matrices as stored.  ln_gemm goes through OpenBLAS's
 * cblas_sgemm; ln_gemm_ref is the plain triple loop (double accumulator)
 * kept beside it to test it against.
 */
#ifndef LN_GEMM_H
#define LN_GEMM_H

#include <stdbool.h>
#include <stdint.h>

void ln_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
             const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
             int64_t ldc);

void ln_gemm_ref(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                 const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                 int64_t ldc);

/* Number of threads the matrix library may use (OpenBLAS's own setting). */
void ln_gemm_set_threads(int n);
int ln_gemm_threads(void);

#endif
