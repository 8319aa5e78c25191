/*
 * pool_avx512.c -- MaxPool2d's 2x2/stride-2 forward with AVX-512 masks,
 * for CPUs that have them (pool.c asks ln_cpu_avx512 first).  The rows of
 * the benchmark CNN are 14 and 7 outputs long: too short for the
 * compiler's vector loops, which need 16 and leave the rest to scalar
 * code, but one masked instruction each here (about twice as fast as the
 * best portable loop on 28x28 and 14x14 planes).
 *
 * Same walk and results as the portable kernel in pool.c: within each
 * window (0,0) (0,1) (1,0) (1,1), a value takes the place of the maximum
 * when greater, or when NaN; am gets its offset in the plane.
 */
#include <stdint.h>

#include "pool_kernels.h"

#if defined(__x86_64__) && defined(__GNUC__)

#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512bw")
#include <immintrin.h>

/* Lanes where v takes the place of best: v > best, or v is NaN. */
static inline __mmask16 takes(__m512 v, __m512 best)
{
	return _mm512_cmp_ps_mask(v, best, _CMP_GT_OQ) | _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
}

/* The first n (0..16) lanes. */
static inline __mmask16 first(int64_t n)
{
	return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? 0 : (__mmask16)((1u << n) - 1);
}

void ln_maxpool2_forward_avx512(float *y, int32_t *am, const float *x, int64_t planes, int64_t h,
                                int64_t w, int64_t ho, int64_t wo)
{
	const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26,
	                                       28, 30);
	const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
	const __m512i one = _mm512_set1_epi32(1);
	for (int64_t pl = 0; pl < planes; pl++) {
		const float *xp = x + pl * h * w;
		for (int64_t i = 0; i < ho; i++) {
			float *yr = y + (pl * ho + i) * wo;
			int32_t *ar = am + (pl * ho + i) * wo;
			const float *r0 = xp + 2 * i * w, *r1 = r0 + w;
			const int32_t o0 = (int32_t)(2 * i * w), o1 = o0 + (int32_t)w;
			for (int64_t j = 0; j < wo; j += 16) {
				/* 16 outputs from 32 values of each input row */
				const int64_t n = wo - j;
				const __mmask16 mlo = first(2 * n), mhi = first(2 * n - 16), mo = first(n);
				const float *p0 = r0 + 2 * j, *p1 = r1 + 2 * j;
				__m512 l0 = _mm512_maskz_loadu_ps(mlo, p0), h0 = _mm512_maskz_loadu_ps(mhi, p0 + 16);
				__m512 l1 = _mm512_maskz_loadu_ps(mlo, p1), h1 = _mm512_maskz_loadu_ps(mhi, p1 + 16);
				__m512 a = _mm512_permutex2var_ps(l0, even, h0);  /* (0,0) of each window */
				__m512 b = _mm512_permutex2var_ps(l0, odd, h0);   /* (0,1) */
				__m512 c = _mm512_permutex2var_ps(l1, even, h1);  /* (1,0) */
				__m512 d = _mm512_permutex2var_ps(l1, odd, h1);   /* (1,1) */
				__m512i col = _mm512_add_epi32(_mm512_set1_epi32(2 * (int32_t)j), even);
				__m512i at0 = _mm512_add_epi32(col, _mm512_set1_epi32(o0));
				__m512i at1 = _mm512_add_epi32(col, _mm512_set1_epi32(o1));
				__m512 best = a;
				__m512i at = at0;
				__mmask16 t = takes(b, best);
				best = _mm512_mask_mov_ps(best, t, b);
				at = _mm512_mask_add_epi32(at, t, at0, one);
				t = takes(c, best);
				best = _mm512_mask_mov_ps(best, t, c);
				at = _mm512_mask_mov_epi32(at, t, at1);
				t = takes(d, best);
				best = _mm512_mask_mov_ps(best, t, d);
				at = _mm512_mask_add_epi32(at, t, at1, one);
				_mm512_mask_storeu_ps(yr + j, mo, best);
				_mm512_mask_storeu_epi32(ar + j, mo, at);
			}
		}
	}
}

/* gx (planes,h,w) from gy and am (planes,ho,wo): each 2x2 window writes
 * its four elements, gy at the arg-max and 0 elsewhere; 16 windows of a
 * row at a time, their values spread over the two input rows with one
 * permutation each.  The last row and column of an odd plane get 0. */
void ln_maxpool2_backward_avx512(float *gx, const float *gy, const int32_t *am, int64_t planes,
                                 int64_t h, int64_t w, int64_t ho, int64_t wo)
{
	const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26,
	                                       28, 30);
	/* interleave a and b: lo = a0 b0 a1 b1 ... a7 b7, hi = a8 b8 ... */
	const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
	const __m512i hi = _mm512_add_epi32(lo, _mm512_set1_epi32(8));
	const __m512i one = _mm512_set1_epi32(1);
	for (int64_t pl = 0; pl < planes; pl++) {
		float *gp = gx + pl * h * w;
		for (int64_t i = 0; i < ho; i++) {
			const float *gr = gy + (pl * ho + i) * wo;
			const int32_t *ar = am + (pl * ho + i) * wo;
			float *r0 = gp + 2 * i * w, *r1 = r0 + w;
			const int32_t o0 = (int32_t)(2 * i * w), o1 = o0 + (int32_t)w;
			for (int64_t j = 0; j < wo; j += 16) {
				const int64_t n = wo - j;
				const __mmask16 mo = first(n), mlo = first(2 * n), mhi = first(2 * n - 16);
				__m512 g = _mm512_maskz_loadu_ps(mo, gr + j);
				__m512i at = _mm512_maskz_loadu_epi32(mo, ar + j);
				__m512i col = _mm512_add_epi32(_mm512_set1_epi32(2 * (int32_t)j), even);
				__m512i p0 = _mm512_add_epi32(col, _mm512_set1_epi32(o0));
				__m512i p1 = _mm512_add_epi32(col, _mm512_set1_epi32(o1));
				__m512 a = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(at, p0), g);
				__m512 b = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(at, _mm512_add_epi32(p0, one)), g);
				__m512 c = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(at, p1), g);
				__m512 d = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(at, _mm512_add_epi32(p1, one)), g);
				float *q0 = r0 + 2 * j, *q1 = r1 + 2 * j;
				_mm512_mask_storeu_ps(q0, mlo, _mm512_permutex2var_ps(a, lo, b));
				_mm512_mask_storeu_ps(q0 + 16, mhi, _mm512_permutex2var_ps(a, hi, b));
				_mm512_mask_storeu_ps(q1, mlo, _mm512_permutex2var_ps(c, lo, d));
				_mm512_mask_storeu_ps(q1 + 16, mhi, _mm512_permutex2var_ps(c, hi, d));
			}
			if (w & 1) {
				r0[w - 1] = 0.0f;
				r1[w - 1] = 0.0f;
			}
		}
		if (h & 1)
			for (int64_t j = 0; j < w; j++)
				gp[(h - 1) * w + j] = 0.0f;
	}
}

#pragma GCC pop_options

#endif
