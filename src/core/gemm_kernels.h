/*
 * gemm_kernels.h -- the pieces behind ln_gemm (gemm.c), for gemm.c and the
 * tests only.  Each computes C (m,n) = alpha op(A) op(B) + beta C,
 * row-major, as ln_gemm does; C is not read when beta == 0.
 */
#ifndef LN_GEMM_KERNELS_H
#define LN_GEMM_KERNELS_H

#include <stdbool.h>
#include <stdint.h>

/* Blocking of the packed kernels: op(B) is packed KC rows (of k) by NC
 * columns at a time, into a buffer of LN_GEMM_PACK floats. */
#define LN_GEMM_KC 256
#define LN_GEMM_NC 1024
#define LN_GEMM_PACK (LN_GEMM_KC * LN_GEMM_NC)

/* Rows and columns of C per micro-kernel call (MR and NR of gemm_avx2.c
 * and gemm_avx512.c): a product split over threads is split at multiples
 * of these (gemm.c). */
#define LN_GEMM_AVX2_MR 6
#define LN_GEMM_AVX2_NR 16
#define LN_GEMM_AVX512_MR 12
#define LN_GEMM_AVX512_NR 32

/* Rows [i0,i1) and columns [j0,j1) of C (n columns in all) with AVX-512F
 * (gemm_avx512.c) or AVX2+FMA (gemm_avx2.c); pb is a 64-byte aligned
 * scratch buffer of LN_GEMM_PACK floats.  k >= 1.  Then, as
 * ln_gemm_biased says, C[i][j] += rb[i] + cb[j] (rb, cb may be NULL;
 * indexed as C).  The way a sum is made depends on the whole product
 * only, so that any split of the columns gives the same bits.  Only call
 * them when the CPU has the instructions (ln_gemm_cpu). */
void ln_gemm_avx512_part(bool ta, bool tb, int64_t n, int64_t i0, int64_t i1, int64_t j0,
                         int64_t j1, int64_t k, float alpha, const float *a, int64_t lda,
                         const float *b, int64_t ldb, float beta, float *c, int64_t ldc,
                         const float *rb, const float *cb, float *pb);
void ln_gemm_avx2_part(bool ta, bool tb, int64_t n, int64_t i0, int64_t i1, int64_t j0,
                       int64_t j1, int64_t k, float alpha, const float *a, int64_t lda,
                       const float *b, int64_t ldb, float beta, float *c, int64_t ldc,
                       const float *rb, const float *cb, float *pb);

/* C[i][j] += rb[i] + cb[j] over rows [i0,i1) and columns [j0,j1) (rb, cb
 * may be NULL), each addition rounded on its own as the kernels round it:
 * the biases of the paths without an epilogue of their own (gemm.c). */
void ln_gemm_add_bias(float *c, int64_t ldc, int64_t i0, int64_t i1, int64_t j0, int64_t j1,
                      const float *rb, const float *cb);

#endif
