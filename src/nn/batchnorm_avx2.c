/*
 * batchnorm_avx2.c -- BatchNorm's per-channel sums with AVX2 (the sums of
 * batchnorm_kernels.h for sp > 1), for CPUs that have it (batchnorm.c asks
 * ln_cpu_avx2_fma).
 *
 * The 8 partial sums of a run are two vectors of 4 doubles (lanes 0-3 and
 * 4-7), each 8 floats widened in two halves; the last, partial block of a
 * run is loaded masked and its terms in the lanes past the end are cleared
 * to +0 before they are added (a partial sum starts at +0 and so is never
 * -0: adding +0 leaves it as it is, NaN and infinities included).  The
 * terms are a product then a sum, never fused (this file and batchnorm.c
 * are compiled with -ffp-contract=off), and the lanes are added as the
 * reference adds them: the same bits as ln_bn_channel_sums_ref.
 *
 * ln_bn_grad_sums_avx2 takes backward's sum g and sum g (x - mu) in one
 * pass over g and x instead of the reference's two passes over g.
 */
#include <stdbool.h>
#include <stdint.h>

#include "batchnorm_kernels.h"

#if defined(__x86_64__) && defined(__GNUC__)

#pragma GCC push_options
#pragma GCC target("avx2,fma")
#include <immintrin.h>

/* All bits set in the first n (0..8) 32-bit lanes. */
static inline __m256i first(int64_t n)
{
	static const int32_t ramp[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
	const int64_t s = n >= 8 ? 8 : n <= 0 ? 0 : n;
	return _mm256_loadu_si256((const __m256i *)(ramp + 8 - s));
}

/* The 32-bit lane mask m as two masks of 4 64-bit lanes (lanes 0-3, 4-7). */
static inline void widen_mask(__m256i m, __m256d *m0, __m256d *m1)
{
	*m0 = _mm256_castsi256_pd(_mm256_cvtepi32_epi64(_mm256_castsi256_si128(m)));
	*m1 = _mm256_castsi256_pd(_mm256_cvtepi32_epi64(_mm256_extracti128_si256(m, 1)));
}

static inline __m256d lo_pd(__m256 v) { return _mm256_cvtps_pd(_mm256_castps256_ps128(v)); }
static inline __m256d hi_pd(__m256 v) { return _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)); }

/* lane 0 + lane 1 + ... + lane 7, from 0, in that order. */
static inline double lanes_sum(__m256d a0, __m256d a1)
{
	double a[8], s = 0;
	_mm256_storeu_pd(a, a0);
	_mm256_storeu_pd(a + 4, a1);
	for (int l = 0; l < 8; l++)
		s += a[l];
	return s;
}

/* The terms f (batchnorm_kernels.h) of the 8 values v (and w, g's) into
 * t0 (lanes 0-3) and t1 (4-7). */
static inline __attribute__((always_inline)) void terms(int f, __m256 v, __m256 w, __m256d mu,
                                                        __m256d *t0, __m256d *t1)
{
	__m256d d0 = lo_pd(v), d1 = hi_pd(v);
	if (f >= 1) {
		d0 = _mm256_sub_pd(d0, mu);
		d1 = _mm256_sub_pd(d1, mu);
	}
	if (f == 1) {
		d0 = _mm256_mul_pd(d0, d0);
		d1 = _mm256_mul_pd(d1, d1);
	} else if (f == 2) {
		d0 = _mm256_mul_pd(lo_pd(w), d0);
		d1 = _mm256_mul_pd(hi_pd(w), d1);
	}
	*t0 = d0;
	*t1 = d1;
}

/* The sum of the terms f over one run of n values. */
static inline __attribute__((always_inline)) double run_sum(int f, const float *x, const float *g,
                                                            __m256d mu, int64_t n)
{
	__m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd(), t0, t1;
	const __m256 none = _mm256_setzero_ps();
	int64_t q = 0;
	for (; q + 8 <= n; q += 8) {
		terms(f, _mm256_loadu_ps(x + q), f == 2 ? _mm256_loadu_ps(g + q) : none, mu, &t0, &t1);
		a0 = _mm256_add_pd(a0, t0);
		a1 = _mm256_add_pd(a1, t1);
	}
	if (q < n) {
		const __m256i m = first(n - q);
		__m256d m0, m1;
		widen_mask(m, &m0, &m1);
		terms(f, _mm256_maskload_ps(x + q, m), f == 2 ? _mm256_maskload_ps(g + q, m) : none, mu,
		      &t0, &t1);
		a0 = _mm256_add_pd(a0, _mm256_and_pd(t0, m0));
		a1 = _mm256_add_pd(a1, _mm256_and_pd(t1, m1));
	}
	return lanes_sum(a0, a1);
}

static inline __attribute__((always_inline)) void channel_sums(int f, double *out, const float *x,
                                                               const float *g, const double *mu,
                                                               int64_t nb, int64_t ch, int64_t sp)
{
	for (int64_t c = 0; c < ch; c++) {
		const __m256d m = _mm256_set1_pd(f >= 1 ? mu[c] : 0.0);
		double s = 0;
		for (int64_t i = 0; i < nb; i++) {
			const int64_t at = (i * ch + c) * sp;
			s += run_sum(f, x + at, f == 2 ? g + at : NULL, m, sp);
		}
		out[c] = s;
	}
}

void ln_bn_channel_sums_avx2(double *out, int f, const float *x, const float *g,
                             const double *mu, int64_t nb, int64_t ch, int64_t sp)
{
	if (f == 0)
		channel_sums(0, out, x, g, mu, nb, ch, sp);
	else if (f == 1)
		channel_sums(1, out, x, g, mu, nb, ch, sp);
	else
		channel_sums(2, out, x, g, mu, nb, ch, sp);
}

void ln_bn_grad_sums_avx2(double *sg, double *sgx, const float *g, const float *x,
                          const double *mu, int64_t nb, int64_t ch, int64_t sp)
{
	for (int64_t c = 0; c < ch; c++) {
		const __m256d m = _mm256_set1_pd(mu[c]);
		double s = 0, sx = 0;
		for (int64_t i = 0; i < nb; i++) {
			const float *xr = x + (i * ch + c) * sp, *gr = g + (i * ch + c) * sp;
			__m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd();
			__m256d b0 = _mm256_setzero_pd(), b1 = _mm256_setzero_pd(), t0, t1;
			int64_t q = 0;
			for (; q + 8 <= sp; q += 8) {
				const __m256 w = _mm256_loadu_ps(gr + q);
				a0 = _mm256_add_pd(a0, lo_pd(w));
				a1 = _mm256_add_pd(a1, hi_pd(w));
				terms(2, _mm256_loadu_ps(xr + q), w, m, &t0, &t1);
				b0 = _mm256_add_pd(b0, t0);
				b1 = _mm256_add_pd(b1, t1);
			}
			if (q < sp) {
				const __m256i k = first(sp - q);
				__m256d k0, k1;
				widen_mask(k, &k0, &k1);
				const __m256 w = _mm256_maskload_ps(gr + q, k);
				a0 = _mm256_add_pd(a0, _mm256_and_pd(lo_pd(w), k0));
				a1 = _mm256_add_pd(a1, _mm256_and_pd(hi_pd(w), k1));
				terms(2, _mm256_maskload_ps(xr + q, k), w, m, &t0, &t1);
				b0 = _mm256_add_pd(b0, _mm256_and_pd(t0, k0));
				b1 = _mm256_add_pd(b1, _mm256_and_pd(t1, k1));
			}
			s += lanes_sum(a0, a1);
			sx += lanes_sum(b0, b1);
		}
		sg[c] = s;
		sgx[c] = sx;
	}
}

#pragma GCC pop_options

#else /* not x86-64 GCC/clang: never called (ln_cpu_avx2_fma() is false) */

void ln_bn_channel_sums_avx2(double *out, int f, const float *x, const float *g,
                             const double *mu, int64_t nb, int64_t ch, int64_t sp)
{
	ln_bn_channel_sums_ref(out, f, x, g, mu, nb, ch, sp);
}

void ln_bn_grad_sums_avx2(double *sg, double *sgx, const float *g, const float *x,
                          const double *mu, int64_t nb, int64_t ch, int64_t sp)
{
	ln_bn_grad_sums_ref(sg, sgx, g, x, mu, nb, ch, sp);
}

#endif
