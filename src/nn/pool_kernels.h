/*
 * pool_kernels.h -- pooling kernels with versions for newer instruction
 * sets (pool_avx512.c, pool_avx2.c), for pool.c.
 */
#ifndef LN_POOL_KERNELS_H
#define LN_POOL_KERNELS_H

#include <stdint.h>

/* y (planes,ho,wo), am (planes,ho,wo) = max and its offset over each 2x2
 * window, stride 2, of x (planes,h,w): the walk of pool.c's
 * maxpool2_forward_kernel.  Only when ln_cpu_avx512() says so. */
void ln_maxpool2_forward_avx512(float *y, int32_t *am, const float *x, int64_t planes, int64_t h,
                                int64_t w, int64_t ho, int64_t wo);

/* gx (planes,h,w) = gy routed to the arg-max of each 2x2 window, 0
 * elsewhere (pool.c's maxpool_backward_kernel for this case). */
void ln_maxpool2_backward_avx512(float *gx, const float *gy, const int32_t *am, int64_t planes,
                                 int64_t h, int64_t w, int64_t ho, int64_t wo);

/* The same with AVX2 (pool_avx2.c).  Only when ln_cpu_avx2_fma() says
 * so. */
void ln_maxpool2_forward_avx2(float *y, int32_t *am, const float *x, int64_t planes, int64_t h,
                              int64_t w, int64_t ho, int64_t wo);
void ln_maxpool2_backward_avx2(float *gx, const float *gy, const int32_t *am, int64_t planes,
                               int64_t h, int64_t w, int64_t ho, int64_t wo);

/* ReLU then the 2x2/stride-2 MaxPool2d in one pass (pool.c's joint
 * kernels for the pair in a chain; references ln_relu_maxpool2d_*_naive
 * in conv.h), with AVX2.  Forward: r (planes,h,w) = max(x, 0), y and am
 * from r as ln_maxpool2_forward_avx2, a row pair at a time while it is in
 * cache.  Backward: gp (planes,h,w) as ln_maxpool2_backward_avx2 and gr =
 * gp where the pooled y > 0, else 0 -- the same as where x > 0, since
 * gp is 0 off the arg-max and y is r at the arg-max -- so that x is not
 * read.  Only when ln_cpu_avx2_fma() says so. */
void ln_relu_maxpool2_forward_avx2(float *r, float *y, int32_t *am, const float *x,
                                   int64_t planes, int64_t h, int64_t w, int64_t ho, int64_t wo);
void ln_relu_maxpool2_backward_avx2(float *gr, float *gp, const float *gy, const int32_t *am,
                                    const float *y, int64_t planes, int64_t h, int64_t w,
                                    int64_t ho, int64_t wo);

#endif
