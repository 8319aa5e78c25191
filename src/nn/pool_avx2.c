/*
 * pool_avx2.c -- MaxPool2d's 2x2/stride-2 forward and backward with AVX2,
 * for CPUs without AVX-512 (pool.c asks ln_cpu_avx2_fma first).  The rows
 * of the benchmark CNN are 14 and 7 outputs long: the compiler's loop of
 * pool.c's portable kernel spent most of its time in its scalar remainder
 * (10% of the CNN's step on a Zen 3 core); here a row is one or two
 * 8-wide steps, the last one masked.
 *
 * Same walk and results as the portable kernel in pool.c: within each
 * window (0,0) (0,1) (1,0) (1,1), a value takes the place of the maximum
 * when greater, or when NaN; am gets its offset in the plane.  Backward
 * writes every element of gx: gy at the arg-max of each window, 0 at its
 * three other elements and in an odd last row or column, so that gx needs
 * no clearing pass first.
 */
#include <stdbool.h>
#include <stdint.h>

#include "pool_kernels.h"

#if defined(__x86_64__) && defined(__GNUC__)

#pragma GCC push_options
#pragma GCC target("avx2,fma")
#include <immintrin.h>

/* All bits set in the first n (0..8) lanes. */
static inline __m256i first(int64_t n)
{
	static const int32_t ramp[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
	const int64_t s = n >= 8 ? 8 : n <= 0 ? 0 : n;
	return _mm256_loadu_si256((const __m256i *)(ramp + 8 - s));
}

/* Lanes where v takes the place of best: v > best, or v is NaN. */
static inline __m256 takes(__m256 v, __m256 best)
{
	return _mm256_or_ps(_mm256_cmp_ps(v, best, _CMP_GT_OQ), _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
}

/* The even and odd elements of the 16 floats lo, hi, in order. */
static inline void deinterleave(__m256 lo, __m256 hi, __m256 *even, __m256 *odd)
{
	/* within 128-bit lanes: lo0 lo2 hi0 hi2 | lo4 lo6 hi4 hi6 */
	__m256 e = _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0));
	__m256 o = _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(3, 1, 3, 1));
	*even = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e), _MM_SHUFFLE(3, 1, 2, 0)));
	*odd = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(o), _MM_SHUFFLE(3, 1, 2, 0)));
}

/* The 8 windows of output columns j..j+7 of row pair r0, r1 (16 input
 * floats each, loaded in full, or the first 2n masked when n < 8): their
 * maxima and offsets (o0, o1: the offsets of r0[0] and r1[0]). */
static inline void windows8(__m256 *best_out, __m256i *at_out, const float *r0, const float *r1,
                            int32_t o0, int32_t o1, int64_t j, int64_t n)
{
	const __m256i even = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
	const __m256i one = _mm256_set1_epi32(1);
	const float *p0 = r0 + 2 * j, *p1 = r1 + 2 * j;
	__m256 a, b, c, d;
	if (n >= 8) {
		deinterleave(_mm256_loadu_ps(p0), _mm256_loadu_ps(p0 + 8), &a, &b);
		deinterleave(_mm256_loadu_ps(p1), _mm256_loadu_ps(p1 + 8), &c, &d);
	} else {
		const __m256i mlo = first(2 * n), mhi = first(2 * n - 8);
		deinterleave(_mm256_maskload_ps(p0, mlo), _mm256_maskload_ps(p0 + 8, mhi), &a, &b);
		deinterleave(_mm256_maskload_ps(p1, mlo), _mm256_maskload_ps(p1 + 8, mhi), &c, &d);
	}
	const __m256i col = _mm256_add_epi32(_mm256_set1_epi32(2 * (int32_t)j), even);
	const __m256i at0 = _mm256_add_epi32(col, _mm256_set1_epi32(o0));
	const __m256i at1 = _mm256_add_epi32(col, _mm256_set1_epi32(o1));
	__m256 best = a;
	__m256 at = _mm256_castsi256_ps(at0);
	__m256 t = takes(b, best);
	best = _mm256_blendv_ps(best, b, t);
	at = _mm256_blendv_ps(at, _mm256_castsi256_ps(_mm256_add_epi32(at0, one)), t);
	t = takes(c, best);
	best = _mm256_blendv_ps(best, c, t);
	at = _mm256_blendv_ps(at, _mm256_castsi256_ps(at1), t);
	t = takes(d, best);
	best = _mm256_blendv_ps(best, d, t);
	at = _mm256_blendv_ps(at, _mm256_castsi256_ps(_mm256_add_epi32(at1, one)), t);
	*best_out = best;
	*at_out = _mm256_castps_si256(at);
}

/* Output row yr, ar (wo windows) of the input row pair r0, r1 (o0, o1:
 * their offsets in the plane).  Stores go through full-width stores only:
 * masked stores (vmaskmovps) are slow on AMD's cores (the first version of
 * these kernels, masked, took 13% of the CNN's step on a Zen 3 core).  A
 * row of 8 or more outputs ends with a block that overlaps the one before
 * (it writes the same values again).  A shorter one is stored whole when
 * `room`: the 8 - wo values past its end then land in the rows after it
 * in the plane, which are written later; else it goes through a buffer
 * on the stack. */
static inline void pool_row(float *yr, int32_t *ar, const float *r0, const float *r1, int32_t o0,
                            int32_t o1, int64_t wo, bool room)
{
	__m256 best;
	__m256i at;
	if (wo < 8) {
		windows8(&best, &at, r0, r1, o0, o1, 0, wo);
		if (room) {
			_mm256_storeu_ps(yr, best);
			_mm256_storeu_si256((__m256i *)ar, at);
			return;
		}
		float yb[8];
		int32_t ab[8];
		_mm256_storeu_ps(yb, best);
		_mm256_storeu_si256((__m256i *)ab, at);
		for (int64_t j = 0; j < wo; j++) {
			yr[j] = yb[j];
			ar[j] = ab[j];
		}
		return;
	}
	for (int64_t j = 0;; j += 8) {
		if (j > wo - 8)
			j = wo - 8;
		windows8(&best, &at, r0, r1, o0, o1, j, 8);
		_mm256_storeu_ps(yr + j, best);
		_mm256_storeu_si256((__m256i *)(ar + j), at);
		if (j == wo - 8)
			break;
	}
}

/* Output row i of ho rows of wo: room for 8 values from its start. */
static inline bool room8(int64_t i, int64_t ho, int64_t wo)
{
	return i * wo + 8 <= ho * wo;
}

void ln_maxpool2_forward_avx2(float *y, int32_t *am, const float *x, int64_t planes, int64_t h,
                              int64_t w, int64_t ho, int64_t wo)
{
	for (int64_t pl = 0; pl < planes; pl++) {
		const float *xp = x + pl * h * w;
		for (int64_t i = 0; i < ho; i++) {
			const float *r0 = xp + 2 * i * w;
			const int32_t o0 = (int32_t)(2 * i * w);
			pool_row(y + (pl * ho + i) * wo, am + (pl * ho + i) * wo, r0, r0 + w, o0,
			         o0 + (int32_t)w, wo, room8(i, ho, wo));
		}
	}
}

/* r (n) = max(x, 0), as activation.c's relu_forward: x < 0 gives +0,
 * anything else (NaN, -0) stays.  r and x do not overlap; from 8 on, the
 * last block overlaps the one before. */
static inline void relu_span(float *restrict r, const float *restrict x, int64_t n)
{
	const __m256 zero = _mm256_setzero_ps();
	if (n < 8) {
		for (int64_t c = 0; c < n; c++)
			r[c] = x[c] < 0 ? 0.0f : x[c];
		return;
	}
	for (int64_t c = 0;; c += 8) {
		if (c > n - 8)
			c = n - 8;
		const __m256 v = _mm256_loadu_ps(x + c);
		_mm256_storeu_ps(r + c, _mm256_andnot_ps(_mm256_cmp_ps(v, zero, _CMP_LT_OQ), v));
		if (c == n - 8)
			break;
	}
}

void ln_relu_maxpool2_forward_avx2(float *r, float *y, int32_t *am, const float *x,
                                   int64_t planes, int64_t h, int64_t w, int64_t ho, int64_t wo)
{
	for (int64_t pl = 0; pl < planes; pl++) {
		const float *xp = x + pl * h * w;
		float *rp = r + pl * h * w;
		for (int64_t i = 0; i < ho; i++) {
			float *r0 = rp + 2 * i * w;
			const int32_t o0 = (int32_t)(2 * i * w);
			relu_span(r0, xp + 2 * i * w, 2 * w);
			pool_row(y + (pl * ho + i) * wo, am + (pl * ho + i) * wo, r0, r0 + w, o0,
			         o0 + (int32_t)w, wo, room8(i, ho, wo));
		}
		relu_span(rp + 2 * ho * w, xp + 2 * ho * w, (h - 2 * ho) * w);
	}
}

/* gy and arg-max of output columns j..j+7 of a row (the first n masked
 * when n < 8), and the pooled y there when y is not NULL. */
static inline void load8(__m256 *g, __m256i *at, __m256 *yv, const float *gr, const int32_t *ar,
                         const float *yr, int64_t j, int64_t n)
{
	if (n >= 8) {
		*g = _mm256_loadu_ps(gr + j);
		*at = _mm256_loadu_si256((const __m256i *)(ar + j));
		if (yr)
			*yv = _mm256_loadu_ps(yr + j);
	} else {
		const __m256i mo = first(n);
		*g = _mm256_maskload_ps(gr + j, mo);
		*at = _mm256_maskload_epi32(ar + j, mo);
		if (yr)
			*yv = _mm256_maskload_ps(yr + j, mo);
	}
}

/* The 16 floats of each of the two input rows of the 8 windows of output
 * columns j..j+7: g where the arg-max at is, 0 elsewhere, into q; and the
 * same of g2 into q2 when q2 is not NULL. */
static inline void spread8(__m256 q[4], __m256 q2[4], __m256 g, __m256 g2, __m256i at,
                           int32_t o0, int32_t o1, int64_t j)
{
	const __m256i even = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
	const __m256i one = _mm256_set1_epi32(1);
	const __m256i col = _mm256_add_epi32(_mm256_set1_epi32(2 * (int32_t)j), even);
	const __m256i p0 = _mm256_add_epi32(col, _mm256_set1_epi32(o0));
	const __m256i p1 = _mm256_add_epi32(col, _mm256_set1_epi32(o1));
	const __m256 ma = _mm256_castsi256_ps(_mm256_cmpeq_epi32(at, p0));
	const __m256 mb = _mm256_castsi256_ps(_mm256_cmpeq_epi32(at, _mm256_add_epi32(p0, one)));
	const __m256 mc = _mm256_castsi256_ps(_mm256_cmpeq_epi32(at, p1));
	const __m256 md = _mm256_castsi256_ps(_mm256_cmpeq_epi32(at, _mm256_add_epi32(p1, one)));
	for (int k = 0; k < (q2 ? 2 : 1); k++) {
		const __m256 v = k ? g2 : g;
		__m256 *o = k ? q2 : q;
		const __m256 a = _mm256_and_ps(v, ma), b = _mm256_and_ps(v, mb);
		const __m256 c = _mm256_and_ps(v, mc), d = _mm256_and_ps(v, md);
		/* interleave: a0 b0 a1 b1 ... a7 b7 over 16 floats */
		const __m256 ablo = _mm256_unpacklo_ps(a, b), abhi = _mm256_unpackhi_ps(a, b);
		const __m256 cdlo = _mm256_unpacklo_ps(c, d), cdhi = _mm256_unpackhi_ps(c, d);
		o[0] = _mm256_permute2f128_ps(ablo, abhi, 0x20);
		o[1] = _mm256_permute2f128_ps(ablo, abhi, 0x31);
		o[2] = _mm256_permute2f128_ps(cdlo, cdhi, 0x20);
		o[3] = _mm256_permute2f128_ps(cdlo, cdhi, 0x31);
	}
}

/* Writes q (spread8's blocks of output columns j..j+7, or of the first
 * n < 8 columns) into the row pair r0, r1: whole when n is 8 or `room`
 * (the floats past 2n are zeros landing in rows written later), else
 * through a buffer. */
static inline void store_spread(float *r0, float *r1, const __m256 q[4], int64_t j, int64_t n,
                                bool room)
{
	if (n >= 8 || room) {
		_mm256_storeu_ps(r0 + 2 * j, q[0]);
		_mm256_storeu_ps(r0 + 2 * j + 8, q[1]);
		_mm256_storeu_ps(r1 + 2 * j, q[2]);
		_mm256_storeu_ps(r1 + 2 * j + 8, q[3]);
		return;
	}
	float b[32];
	for (int k = 0; k < 4; k++)
		_mm256_storeu_ps(b + 8 * k, q[k]);
	for (int64_t c = 0; c < 2 * n; c++) {
		r0[c] = b[c];
		r1[c] = b[16 + c];
	}
}

/* Zeroes what no window covers in plane p: the columns from 2*wo on of
 * the rows below 2*ho, and the rows from 2*ho on.  After the rows: a
 * short row's whole stores may have left zeros there, not values. */
static inline void zero_uncovered(float *p, int64_t h, int64_t w, int64_t ho, int64_t wo)
{
	for (int64_t r = 0; r < 2 * ho; r++)
		for (int64_t c = 2 * wo; c < w; c++)
			p[r * w + c] = 0.0f;
	for (int64_t r = 2 * ho; r < h; r++)
		for (int64_t c = 0; c < w; c++)
			p[r * w + c] = 0.0f;
}

/* The backward of both: gp from gy and am, and, when gr is not NULL, gr
 * = gp where y > 0.  The blocks of a row of 8 or more windows go as in
 * pool_row (the last one overlaps); a shorter row's 16 floats per input
 * row are stored whole when they end inside the plane. */
static inline __attribute__((always_inline)) void backward2(float *gr, float *gp, const float *gy, const int32_t *am,
                             const float *y, int64_t planes, int64_t h, int64_t w, int64_t ho,
                             int64_t wo)
{
	const __m256 zero = _mm256_setzero_ps();
	for (int64_t pl = 0; pl < planes; pl++) {
		float *pp = gp + pl * h * w, *rp = gr ? gr + pl * h * w : NULL;
		for (int64_t i = 0; i < ho; i++) {
			const int64_t o = (pl * ho + i) * wo;
			const int32_t o0 = (int32_t)(2 * i * w), o1 = o0 + (int32_t)w;
			const int64_t n = wo < 8 ? wo : 8;
			const bool room = o1 + 16 <= h * w;
			for (int64_t j = 0;; j += 8) {
				if (j > wo - n)
					j = wo - n;
				__m256 g, yv = zero, q[4], q2[4];
				__m256i at;
				load8(&g, &at, &yv, gy + o, am + o, gr ? y + o : NULL, j, n);
				spread8(q, gr ? q2 : NULL, g,
				        _mm256_and_ps(g, _mm256_cmp_ps(yv, zero, _CMP_GT_OQ)), at, o0, o1, j);
				store_spread(pp + o0, pp + o1, q, j, n, room);
				if (gr)
					store_spread(rp + o0, rp + o1, q2, j, n, room);
				if (j == wo - n)
					break;
			}
		}
		zero_uncovered(pp, h, w, ho, wo);
		if (rp)
			zero_uncovered(rp, h, w, ho, wo);
	}
}

void ln_maxpool2_backward_avx2(float *gx, const float *gy, const int32_t *am, int64_t planes,
                               int64_t h, int64_t w, int64_t ho, int64_t wo)
{
	backward2(NULL, gx, gy, am, NULL, planes, h, w, ho, wo);
}

void ln_relu_maxpool2_backward_avx2(float *gr, float *gp, const float *gy, const int32_t *am,
                                    const float *y, int64_t planes, int64_t h, int64_t w,
                                    int64_t ho, int64_t wo)
{
	backward2(gr, gp, gy, am, y, planes, h, w, ho, wo);
}

#pragma GCC pop_options

#endif
