/*
 * batchnorm_kernels.h -- BatchNorm's per-channel sums (batchnorm.c), the
 * portable reference and its AVX2 version (batchnorm_avx2.c).
 *
 * x, g: (nb, ch, sp) floats; out, sg, sgx, mu: (ch) doubles.  For channel
 * c the sum runs over each contiguous run of sp values of the channel in
 * sample order; within a run, value q goes to lane q % 8 of 8 partial sums
 * (in double), which are added lane 0 first; the runs' sums are added to
 * the channel's sum (from 0) in sample order.  For sp == 1 ({N,C} input)
 * the sums go row by row into one sum per channel instead.  The term of a
 * value, in double with x and g widened exactly:
 *   f = 0: x        f = 1: (x - mu)^2        f = 2: g (x - mu)
 * each a product then a sum, never fused (batchnorm.c and batchnorm_avx2.c
 * are compiled with -ffp-contract=off), so that the two versions give the
 * same bits.
 */
#ifndef LN_BATCHNORM_KERNELS_H
#define LN_BATCHNORM_KERNELS_H

#include <stdint.h>

/* out[c] = the channel's sum of the term f; g is read for f = 2 only, mu
 * for f >= 1 only (NULL otherwise). */
void ln_bn_channel_sums(double *out, int f, const float *x, const float *g, const double *mu,
                        int64_t nb, int64_t ch, int64_t sp);

/* sg[c] = the sum of term 0 over g, sgx[c] = the sum of term 2: backward's
 * two sums, the same bits as two calls of ln_bn_channel_sums. */
void ln_bn_grad_sums(double *sg, double *sgx, const float *g, const float *x, const double *mu,
                     int64_t nb, int64_t ch, int64_t sp);

/* The portable kernels, which the two above run when the CPU has no AVX2
 * (or ln_cpu_use_portable is on). */
void ln_bn_channel_sums_ref(double *out, int f, const float *x, const float *g, const double *mu,
                            int64_t nb, int64_t ch, int64_t sp);
void ln_bn_grad_sums_ref(double *sg, double *sgx, const float *g, const float *x,
                         const double *mu, int64_t nb, int64_t ch, int64_t sp);

/* The same with AVX2 for sp > 1, in one pass over g and x for
 * ln_bn_grad_sums_avx2.  Only when ln_cpu_avx2_fma() says so. */
void ln_bn_channel_sums_avx2(double *out, int f, const float *x, const float *g,
                             const double *mu, int64_t nb, int64_t ch, int64_t sp);
void ln_bn_grad_sums_avx2(double *sg, double *sgx, const float *g, const float *x,
                          const double *mu, int64_t nb, int64_t ch, int64_t sp);

#endif
