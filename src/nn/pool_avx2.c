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

/* max(v, 0) as activation.c's relu_forward: v < 0 gives +0, anything
 * else (NaN, -0) stays. */
static inline __m256 relu8(__m256 v)
{
	return _mm256_andnot_ps(_mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_LT_OQ), v);
}

/* The 16 floats of each of the two input rows of the 8 windows of output
 * columns j..j+7 (p0, p1: those of column j): q[0], q[1] from p0, q[2],
 * q[3] from p1; loaded whole, or the first 2n floats of each with the
 * rest 0 when not `whole` (n < 8). */
static inline void load_pair(__m256 q[4], const float *p0, const float *p1, int64_t n, bool whole)
{
	if (whole) {
		q[0] = _mm256_loadu_ps(p0);
		q[1] = _mm256_loadu_ps(p0 + 8);
		q[2] = _mm256_loadu_ps(p1);
		q[3] = _mm256_loadu_ps(p1 + 8);
		return;
	}
	const __m256i mlo = first(2 * n), mhi = first(2 * n - 8);
	q[0] = _mm256_maskload_ps(p0, mlo);
	q[1] = _mm256_maskload_ps(p0 + 8, mhi);
	q[2] = _mm256_maskload_ps(p1, mlo);
	q[3] = _mm256_maskload_ps(p1 + 8, mhi);
}

/* The maxima and offsets of the 8 windows of output columns j..j+7 whose
 * two rows' 16 floats are q (load_pair); o0, o1: the offsets of the rows'
 * first elements in the plane. */
static inline void windows8(__m256 *best_out, __m256i *at_out, const __m256 q[4], int32_t o0,
                            int32_t o1, int64_t j)
{
	const __m256i even = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
	const __m256i one = _mm256_set1_epi32(1);
	__m256 a, b, c, d;
	deinterleave(q[0], q[1], &a, &b);
	deinterleave(q[2], q[3], &c, &d);
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

/* Stores the n (1..8) values best, at of output columns j.. of a row
 * (yr, ar).  Only full-width stores: masked stores (vmaskmovps) are slow
 * on AMD's cores (the first version of these kernels, masked, took 13% of
 * the CNN's step on a Zen 3 core).  n < 8 values are stored whole when
 * `room` (the 8 - n values past them land in rows written later), else
 * through a buffer on the stack. */
static inline void store_windows(float *yr, int32_t *ar, __m256 best, __m256i at, int64_t j,
                                 int64_t n, bool room)
{
	if (n >= 8 || room) {
		_mm256_storeu_ps(yr + j, best);
		_mm256_storeu_si256((__m256i *)(ar + j), at);
		return;
	}
	float yb[8];
	int32_t ab[8];
	_mm256_storeu_ps(yb, best);
	_mm256_storeu_si256((__m256i *)ab, at);
	for (int64_t c = 0; c < n; c++) {
		yr[j + c] = yb[c];
		ar[j + c] = ab[c];
	}
}

/* Output row i of ho rows of wo: room for 8 values from its start. */
static inline bool room8(int64_t i, int64_t ho, int64_t wo)
{
	return i * wo + 8 <= ho * wo;
}

/* r (n) = max(x, 0), as relu8.  r and x do not overlap; from 8 on, the
 * last block overlaps the one before. */
static inline void relu_span(float *restrict r, const float *restrict x, int64_t n)
{
	if (n < 8) {
		for (int64_t c = 0; c < n; c++)
			r[c] = x[c] < 0 ? 0.0f : x[c];
		return;
	}
	for (int64_t c = 0;; c += 8) {
		if (c > n - 8)
			c = n - 8;
		_mm256_storeu_ps(r + c, relu8(_mm256_loadu_ps(x + c)));
		if (c == n - 8)
			break;
	}
}

/*
 * The forward of MaxPool2d, and of ReLU before it when r is not NULL.
 * Row pair by row pair, in blocks of 8 windows: the blocks of a row of 8
 * or more windows are whole, the last one overlapping the one before (it
 * writes the same values again); a shorter row is one block of wo, loaded
 * whole when its 16 floats of the second row end inside the plane (the
 * values past 2*wo only fill lanes whose results are not kept), else
 * masked.  With r, the windows see max(x, 0) computed from x in registers,
 * and the loaded blocks, once through relu8, are r's values there: stored
 * as they are when the blocks cover the row pair (w = 2*wo) and were loaded
 * whole, else the row pair goes through relu_span.  The windows never read
 * r back: a load of floats just stored by several stores misses the
 * store-to-load forwarding: reading r's row pair right after writing it
 * (and the masked loads of every 14-wide row) made the benchmark CNN's
 * forward take 304 and 275 us on its 28x28 and 14x14 planes, against 230
 * and 171 us this way (64 samples, Zen 3 core, best of 300, called on
 * the whole batch).  Within the CNN's step, where x comes fresh from the
 * convolution's product, the forward's share of the perf profile did not
 * change measurably (0.80 ms per step either way, 4 runs each on a loaded
 * machine): there it waits on memory more than on the forwarding; the
 * backward's fell from 1.14 to 0.89 ms in the same runs.
 */
static inline __attribute__((always_inline)) void forward2(float *r, float *y, int32_t *am,
                                                           const float *x, int64_t planes,
                                                           int64_t h, int64_t w, int64_t ho,
                                                           int64_t wo)
{
	const bool covers = w == 2 * wo;
	const int64_t n = wo < 8 ? wo : 8;
	for (int64_t pl = 0; pl < planes; pl++) {
		const float *xp = x + pl * h * w;
		float *rp = r ? r + pl * h * w : NULL;
		for (int64_t i = 0; i < ho; i++) {
			const int64_t o = (pl * ho + i) * wo;
			const int32_t o0 = (int32_t)(2 * i * w), o1 = o0 + (int32_t)w;
			const bool whole = n == 8 || o1 + 16 <= h * w;
			for (int64_t j = 0;; j += 8) {
				if (j > wo - n)
					j = wo - n;
				__m256 q[4], best;
				__m256i at;
				load_pair(q, xp + o0 + 2 * j, xp + o1 + 2 * j, n, whole);
				if (rp) {
					for (int k = 0; k < 4; k++)
						q[k] = relu8(q[k]);
					if (whole && covers) {
						_mm256_storeu_ps(rp + o0 + 2 * j, q[0]);
						_mm256_storeu_ps(rp + o0 + 2 * j + 8, q[1]);
						_mm256_storeu_ps(rp + o1 + 2 * j, q[2]);
						_mm256_storeu_ps(rp + o1 + 2 * j + 8, q[3]);
					}
				}
				windows8(&best, &at, q, o0, o1, j);
				store_windows(y + o, am + o, best, at, j, n, room8(i, ho, wo));
				if (j == wo - n)
					break;
			}
			if (rp && !(whole && covers))
				relu_span(rp + o0, xp + o0, 2 * w);
		}
		if (rp)
			relu_span(rp + 2 * ho * w, xp + 2 * ho * w, (h - 2 * ho) * w);
	}
}

void ln_maxpool2_forward_avx2(float *y, int32_t *am, const float *x, int64_t planes, int64_t h,
                              int64_t w, int64_t ho, int64_t wo)
{
	forward2(NULL, y, am, x, planes, h, w, ho, wo);
}

void ln_relu_maxpool2_forward_avx2(float *r, float *y, int32_t *am, const float *x,
                                   int64_t planes, int64_t h, int64_t w, int64_t ho, int64_t wo)
{
	forward2(r, y, am, x, planes, h, w, ho, wo);
}

/* gy and arg-max of output columns j..j+7 of a row, and the pooled y
 * there when y is not NULL: whole, or the first n masked when not
 * `whole`. */
static inline void load8(__m256 *g, __m256i *at, __m256 *yv, const float *gr, const int32_t *ar,
                         const float *yr, int64_t j, int64_t n, bool whole)
{
	if (whole) {
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

/* Where the arg-max at of the 8 windows of output columns j..j+7 is: ma,
 * mb at the first and second element of the window in row o0, mc, md in
 * row o1 (all bits set there, else 0). */
static inline void argmax_masks(__m256 *ma, __m256 *mb, __m256 *mc, __m256 *md, __m256i at,
                                int32_t o0, int32_t o1, int64_t j)
{
	const __m256i even = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
	const __m256i one = _mm256_set1_epi32(1);
	const __m256i col = _mm256_add_epi32(_mm256_set1_epi32(2 * (int32_t)j), even);
	const __m256i p0 = _mm256_add_epi32(col, _mm256_set1_epi32(o0));
	const __m256i p1 = _mm256_add_epi32(col, _mm256_set1_epi32(o1));
	*ma = _mm256_castsi256_ps(_mm256_cmpeq_epi32(at, p0));
	*mb = _mm256_castsi256_ps(_mm256_cmpeq_epi32(at, _mm256_add_epi32(p0, one)));
	*mc = _mm256_castsi256_ps(_mm256_cmpeq_epi32(at, p1));
	*md = _mm256_castsi256_ps(_mm256_cmpeq_epi32(at, _mm256_add_epi32(p1, one)));
}

/* The 16 floats of each of the two input rows r0, r1 of the 8 windows of
 * output columns j..j+7: v where the arg-max is (argmax_masks), 0
 * elsewhere.  Stored whole when n is 8 or `room` (the floats past 2n land
 * in rows written later), else the first 2n of each row through a
 * buffer.  Scalars, not arrays of vectors: with arrays the compiler kept
 * the blocks on the stack, and the benchmark CNN's backward took 284 and
 * 225 us on its 28x28 and 14x14 planes instead of 246 and 187 (64
 * samples, Zen 3 core, best of 300). */
static inline void spread_store(float *r0, float *r1, __m256 v, __m256 ma, __m256 mb, __m256 mc,
                                __m256 md, int64_t j, int64_t n, bool room)
{
	const __m256 a = _mm256_and_ps(v, ma), b = _mm256_and_ps(v, mb);
	const __m256 c = _mm256_and_ps(v, mc), d = _mm256_and_ps(v, md);
	/* interleave: a0 b0 a1 b1 ... a7 b7 over 16 floats */
	const __m256 ablo = _mm256_unpacklo_ps(a, b), abhi = _mm256_unpackhi_ps(a, b);
	const __m256 cdlo = _mm256_unpacklo_ps(c, d), cdhi = _mm256_unpackhi_ps(c, d);
	const __m256 q0 = _mm256_permute2f128_ps(ablo, abhi, 0x20);
	const __m256 q1 = _mm256_permute2f128_ps(ablo, abhi, 0x31);
	const __m256 q2 = _mm256_permute2f128_ps(cdlo, cdhi, 0x20);
	const __m256 q3 = _mm256_permute2f128_ps(cdlo, cdhi, 0x31);
	if (n >= 8 || room) {
		_mm256_storeu_ps(r0 + 2 * j, q0);
		_mm256_storeu_ps(r0 + 2 * j + 8, q1);
		_mm256_storeu_ps(r1 + 2 * j, q2);
		_mm256_storeu_ps(r1 + 2 * j + 8, q3);
		return;
	}
	float buf[32];
	_mm256_storeu_ps(buf, q0);
	_mm256_storeu_ps(buf + 8, q1);
	_mm256_storeu_ps(buf + 16, q2);
	_mm256_storeu_ps(buf + 24, q3);
	for (int64_t e = 0; e < 2 * n; e++) {
		r0[e] = buf[e];
		r1[e] = buf[16 + e];
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
 * forward2 (the last one overlaps); a shorter row's 16 floats per input
 * row are stored whole when they end inside the plane.  A shorter row's
 * gy, am and y are loaded whole when 8 values from its start lie inside
 * the arrays, not masked (a masked load costs more on AMD's cores): the
 * lanes past wo, from the next row, only reach the floats from 2*wo on of
 * each input row's block, which the next row pair's stores or
 * zero_uncovered write again afterwards -- as they did the zeros of the
 * masked lanes. */
static inline __attribute__((always_inline)) void backward2(float *gr, float *gp, const float *gy,
                                                            const int32_t *am, const float *y,
                                                            int64_t planes, int64_t h, int64_t w,
                                                            int64_t ho, int64_t wo)
{
	const __m256 zero = _mm256_setzero_ps();
	for (int64_t pl = 0; pl < planes; pl++) {
		float *pp = gp + pl * h * w, *rp = gr ? gr + pl * h * w : NULL;
		for (int64_t i = 0; i < ho; i++) {
			const int64_t o = (pl * ho + i) * wo;
			const int32_t o0 = (int32_t)(2 * i * w), o1 = o0 + (int32_t)w;
			const int64_t n = wo < 8 ? wo : 8;
			const bool room = o1 + 16 <= h * w;
			const bool whole = n == 8 || o + 8 <= planes * ho * wo;
			for (int64_t j = 0;; j += 8) {
				if (j > wo - n)
					j = wo - n;
				__m256 g, yv = zero, ma, mb, mc, md;
				__m256i at;
				load8(&g, &at, &yv, gy + o, am + o, gr ? y + o : NULL, j, n, whole);
				argmax_masks(&ma, &mb, &mc, &md, at, o0, o1, j);
				spread_store(pp + o0, pp + o1, g, ma, mb, mc, md, j, n, room);
				if (gr)
					spread_store(rp + o0, rp + o1,
					             _mm256_and_ps(g, _mm256_cmp_ps(yv, zero, _CMP_GT_OQ)), ma,
					             mb, mc, md, j, n, room);
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
