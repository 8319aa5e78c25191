/*
 * gemm_avx2.c -- the AVX2+FMA twin of gemm_avx512.c, for x86-64 CPUs
 * without AVX-512:
 *
 *     C (m,n) = alpha * op(A) op(B) + beta * C        row-major float32
 *
 * Same scheme (see gemm_avx512.c): op(B) packed into panels of NR = 16
 * columns (two ymm), kc rows each, zero beyond n, or read in place when
 * it is untransposed and small; A read in place, but for a transposed A
 * over long k, packed a micro-kernel's rows at a time; a micro-kernel of
 * MR = 6 rows by 16 columns keeps its 12 accumulators in registers.  A
 * transposed B is packed through 8x8 register transposes.  The blocking
 * (NC, DIRECT_MAX, PACK_A_KC below) is set for Zen 3's caches.
 *
 * Efficiency, one core of an AMD EPYC (Zen 3, family 25 model 1) whose FMA peak is
 * 102 GFLOP/s (lunet.bench_fma), thread processor time, best of 7: 97-98
 * GFLOP/s on whole tiles (36x192x144), 82-84 on the benchmark CNN's
 * per-sample 32x196x144 (its 196 columns and 32 rows are not whole
 * tiles), 94 on the MLP's 256x256x784, 94 on 512^3.
 *
 * Compiled for AVX2+FMA by the target pragma below; gemm.c calls in only
 * after __builtin_cpu_supports said the CPU has both.
 */
#include <stdbool.h>
#include <stdint.h>

#include "gemm_kernels.h"

#if defined(__x86_64__) && defined(__GNUC__)

#pragma GCC push_options
#pragma GCC target("avx2,fma")
#include <immintrin.h>

#define MR LN_GEMM_AVX2_MR
#define NR LN_GEMM_AVX2_NR
#define KC LN_GEMM_KC
/* Columns of op(B) packed at a time: KC x NC floats (256 KB) stay in the
 * 512 KB L2 of a Zen 3 core while every row block of A passes over them
 * (with gemm_avx512.c's 1024, a 36x1024x256 product ran at 59 GFLOP/s,
 * against 97 for 36x192x144, measured on a Zen 3 EPYC). */
#define NC 256
/* An untransposed B of at most this many floats (k times the columns) is
 * read in place, not packed: its rows are then far apart in memory, and
 * beyond 192 KB the micro-kernel's reads of kc rows each spread over too
 * many pages (512x512x512 ran at 76 GFLOP/s read in place, 93 packed;
 * the convolutions' 32x196x144 at 84 both ways, 77 packed under 64 KB). */
#define DIRECT_MAX (48 * 1024)
/* Nor, whatever its size, when op(A) has at most FEW_ROWS rows and B's
 * rows are at most FEW_ROWS_LDB floats apart: packing a panel costs about
 * as much as the three row blocks that use it save (lunet.bench_gemm, best
 * of 5, GFLOP/s packed -> in place, two runs: resnet's 16x784x144 59-65 ->
 * 74-76, its stem's 16x784x9 33-54 -> 52, 18x784x144 68-71 -> 80-87,
 * 12x1024x1024 52-55 -> 61-63; but with rows 4096 floats apart 16x4096x256
 * went 57-59 -> 48-51, and with 6 row blocks, 32x4096x256 71-73 -> 53-55). */
#define FEW_ROWS (3 * MR)
#define FEW_ROWS_LDB 1024
_Static_assert(KC * NC + KC * MR <= LN_GEMM_PACK, "gemm_avx2: pack buffer too small");

/* Lane mask (all bits set in lane l < w) for maskload/maskstore. */
static inline __m256i lanes(int64_t w)
{
	static const int32_t ramp[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
	int64_t s = w >= 8 ? 8 : w <= 0 ? 0 : w;
	return _mm256_loadu_si256((const __m256i *)(ramp + 8 - s));
}

/* ---- packing op(B) ------------------------------------------------------------- */

/* op(B) = B (k,n), row stride ldb:  pb[panel][p][jj] = b[p*ldb + j0 + jj], 0 beyond n. */
static void pack_b_n(float *pb, const float *b, int64_t ldb, int64_t kc, int64_t nc)
{
	for (int64_t j0 = 0; j0 < nc; j0 += NR) {
		int64_t w = nc - j0;
		__m256i m0 = lanes(w), m1 = lanes(w - 8);
		const float *src = b + j0;
		if (w >= NR) {
			for (int64_t p = 0; p < kc; p++, src += ldb, pb += NR) {
				_mm256_store_ps(pb, _mm256_loadu_ps(src));
				_mm256_store_ps(pb + 8, _mm256_loadu_ps(src + 8));
			}
		} else {
			for (int64_t p = 0; p < kc; p++, src += ldb, pb += NR) {
				_mm256_store_ps(pb, _mm256_maskload_ps(src, m0));
				_mm256_store_ps(pb + 8, _mm256_maskload_ps(src + 8, m1));
			}
		}
	}
}

/* In-register transpose of an 8x8 block: r[a][b] becomes r[b][a]. */
static inline void transpose8(__m256 r[8])
{
	__m256 t[8], s[8];
	for (int i = 0; i < 4; i++) {
		t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
		t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
	}
	/* s[4i+j], 128-bit lane L: column 4L+j of rows 4i..4i+3 */
	for (int i = 0; i < 2; i++) {
		__m256d a = _mm256_castps_pd(t[4 * i]), b = _mm256_castps_pd(t[4 * i + 2]);
		__m256d c = _mm256_castps_pd(t[4 * i + 1]), d = _mm256_castps_pd(t[4 * i + 3]);
		s[4 * i] = _mm256_castpd_ps(_mm256_unpacklo_pd(a, b));
		s[4 * i + 1] = _mm256_castpd_ps(_mm256_unpackhi_pd(a, b));
		s[4 * i + 2] = _mm256_castpd_ps(_mm256_unpacklo_pd(c, d));
		s[4 * i + 3] = _mm256_castpd_ps(_mm256_unpackhi_pd(c, d));
	}
	/* row 4L+j is lane L of s[j] then lane L of s[4+j] */
	for (int j = 0; j < 4; j++) {
		r[j] = _mm256_permute2f128_ps(s[j], s[4 + j], 0x20);
		r[4 + j] = _mm256_permute2f128_ps(s[j], s[4 + j], 0x31);
	}
}

/* op(B) = B^T, B (n,k) with row stride ldb:  pb[panel][p][jj] = b[(j0+jj)*ldb + p],
 * 0 beyond n; blocks of 8 rows by 8 values of p go through transpose8. */
static void pack_b_t(float *pb, const float *b, int64_t ldb, int64_t kc, int64_t nc)
{
	for (int64_t j0 = 0; j0 < nc; j0 += NR, pb += kc * NR) {
		for (int h = 0; h < 2; h++) {
			int64_t rows = nc - j0 - 8 * h;
			for (int64_t p0 = 0; p0 < kc; p0 += 8) {
				__m256i mp = lanes(kc - p0);
				__m256 r[8];
				for (int t = 0; t < 8; t++)
					r[t] = t < rows ? _mm256_maskload_ps(b + (j0 + 8 * h + t) * ldb + p0, mp)
					                : _mm256_setzero_ps();
				transpose8(r);
				int64_t np = kc - p0 < 8 ? kc - p0 : 8;
				for (int64_t q = 0; q < np; q++)
					_mm256_store_ps(pb + (p0 + q) * NR + 8 * h, r[q]);
			}
		}
	}
}

/* ---- packing a transposed A -------------------------------------------------------- */

/* A transposed A is packed when a micro-kernel call reads more than this
 * many of its rows (below, packing cost more than it saved: 128x256x64
 * ran at 80 GFLOP/s packed, 89 in place). */
#define PACK_A_KC 128

/* op(A) = A^T, A (k,m) with row stride lda: the mr <= MR columns of the
 * rows p < kc that one micro-kernel call reads, side by side,
 * pa[p*MR + i] = a[p*lda + i].  Read in place, each of those kc rows is
 * its own cache line, and with the panel of B they overflow L1 (the
 * 256x784x256 product of the MLP's first layer at batch 256 ran at 61 GFLOP/s
 * against 94 for its untransposed twin); packed, they are kc*MR
 * consecutive floats, reused by every panel of B. */
static void pack_a_t(float *restrict pa, const float *restrict a, int64_t lda, int64_t kc,
                     int64_t mr)
{
	if (mr == MR) {
		/* The usual case, a copy of a constant size: inlined as two moves
		 * per row, where the variable-length loop became a call to memcpy
		 * per row of 6 floats (12 % of the lstm bench step). */
		for (int64_t p = 0; p < kc; p++, a += lda, pa += MR)
			for (int i = 0; i < MR; i++)
				pa[i] = a[i];
		return;
	}
	for (int64_t p = 0; p < kc; p++, a += lda, pa += MR)
		for (int64_t i = 0; i < mr; i++)
			pa[i] = a[i];
}

/* ---- the micro-kernel ------------------------------------------------------------ */

/* C (mr, 16 masked by m0|m1) = alpha op(A) (mr,kc) panel (kc,16) + beta C
 * (+ rb[i] + cb[j]: the biases, each NULL or indexed from this tile's
 * first row and column); op(A)[i][p] is a[i*lda + p], or a[p*lda + i]
 * when at.  Row p of the panel is pb[p*ldp ...] (packed: ldp = 16; B in
 * place: ldp = ldb); full says all 16 lanes are in, else only those of
 * m0|m1 are read and written; half says m1 is empty (at most 8 columns:
 * the second half is not computed, which halves the cost of a narrow
 * last tile, e.g. the 49th column of a 7x7 image's 49 pixels).  C is not
 * read when beta == 0. */
static inline __attribute__((always_inline)) void
micro(const int mr, const bool at, int64_t kc, const float *a, int64_t lda, const float *pb,
      int64_t ldp, float *c, int64_t ldc, float alpha, float beta, const float *rb,
      const float *cb, __m256i m0, __m256i m1, const bool full, const bool half)
{
	__m256 c0[MR], c1[MR];
#pragma GCC unroll 6
	for (int i = 0; i < mr; i++)
		c0[i] = c1[i] = _mm256_setzero_ps();
	if (at) {
		for (int64_t p = 0; p < kc; p++) {
			__m256 b0 = full ? _mm256_loadu_ps(pb) : _mm256_maskload_ps(pb, m0);
			__m256 b1 = full ? _mm256_loadu_ps(pb + 8)
			          : half ? _mm256_setzero_ps() : _mm256_maskload_ps(pb + 8, m1);
#pragma GCC unroll 6
			for (int i = 0; i < mr; i++) {
				__m256 av = _mm256_broadcast_ss(a + i);
				c0[i] = _mm256_fmadd_ps(av, b0, c0[i]);
				if (!half)
					c1[i] = _mm256_fmadd_ps(av, b1, c1[i]);
			}
			a += lda;
			pb += ldp;
		}
	} else {
		/* rows 3q..3q+2 are r[q][0], r[q][lda], r[q][2*lda] */
		const float *r[2];
		r[0] = a;
		r[1] = mr > 3 ? a + 3 * lda : a;
		const int64_t lda2 = 2 * lda;
		for (int64_t p = 0; p < kc; p++) {
			__m256 b0 = full ? _mm256_loadu_ps(pb) : _mm256_maskload_ps(pb, m0);
			__m256 b1 = full ? _mm256_loadu_ps(pb + 8)
			          : half ? _mm256_setzero_ps() : _mm256_maskload_ps(pb + 8, m1);
#pragma GCC unroll 6
			for (int i = 0; i < mr; i++) {
				const float *ri = r[i / 3];
				__m256 av = _mm256_broadcast_ss(i % 3 == 0 ? ri : i % 3 == 1 ? ri + lda : ri + lda2);
				c0[i] = _mm256_fmadd_ps(av, b0, c0[i]);
				if (!half)
					c1[i] = _mm256_fmadd_ps(av, b1, c1[i]);
			}
			r[0]++;
			r[1]++;
			pb += ldp;
		}
	}
	__m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
	__m256 cb0 = _mm256_setzero_ps(), cb1 = _mm256_setzero_ps();
	if (cb) {
		cb0 = full ? _mm256_loadu_ps(cb) : _mm256_maskload_ps(cb, m0);
		if (!half)
			cb1 = full ? _mm256_loadu_ps(cb + 8) : _mm256_maskload_ps(cb + 8, m1);
	}
#pragma GCC unroll 6
	for (int i = 0; i < mr; i++) {
		float *ci = c + i * ldc;
		__m256 x0 = _mm256_mul_ps(va, c0[i]), x1 = _mm256_mul_ps(va, c1[i]);
		if (full) {
			if (beta != 0.0f) {
				x0 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(ci), x0);
				x1 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(ci + 8), x1);
			}
		} else {
			if (beta != 0.0f) {
				x0 = _mm256_fmadd_ps(vb, _mm256_maskload_ps(ci, m0), x0);
				if (!half)
					x1 = _mm256_fmadd_ps(vb, _mm256_maskload_ps(ci + 8, m1), x1);
			}
		}
		if (rb) {
			const __m256 r = _mm256_broadcast_ss(rb + i);
			x0 = _mm256_add_ps(x0, r);
			x1 = _mm256_add_ps(x1, r);
		}
		if (cb) {
			x0 = _mm256_add_ps(x0, cb0);
			x1 = _mm256_add_ps(x1, cb1);
		}
		if (full) {
			_mm256_storeu_ps(ci, x0);
			_mm256_storeu_ps(ci + 8, x1);
		} else {
			_mm256_maskstore_ps(ci, m0, x0);
			if (!half)
				_mm256_maskstore_ps(ci + 8, m1, x1);
		}
	}
}

typedef void (*micro_fn)(int64_t kc, const float *a, int64_t lda, const float *pb, int64_t ldp,
                         float *c, int64_t ldc, float alpha, float beta, const float *rb,
                         const float *cb, __m256i m0, __m256i m1, bool full);

#define KERNEL(mr, at, name)                                                                 \
	static void name(int64_t kc, const float *a, int64_t lda, const float *pb, int64_t ldp,   \
	                 float *c, int64_t ldc, float alpha, float beta, const float *rb,         \
	                 const float *cb, __m256i m0, __m256i m1, bool full)                      \
	{                                                                                        \
		if (full)                                                                            \
			micro(mr, at, kc, a, lda, pb, ldp, c, ldc, alpha, beta, rb, cb, m0, m1, true,    \
			      false);                                                                    \
		else if (_mm256_testz_si256(m1, m1))                                                 \
			micro(mr, at, kc, a, lda, pb, ldp, c, ldc, alpha, beta, rb, cb, m0, m1, false,   \
			      true);                                                                     \
		else                                                                                 \
			micro(mr, at, kc, a, lda, pb, ldp, c, ldc, alpha, beta, rb, cb, m0, m1, false,   \
			      false);                                                                    \
	}
#define KERNELS(mr) KERNEL(mr, false, micro_n##mr) KERNEL(mr, true, micro_t##mr)
KERNELS(1) KERNELS(2) KERNELS(3) KERNELS(4) KERNELS(5) KERNELS(6)

/* kernels[at][mr] */
static const micro_fn kernels[2][MR + 1] = {
	{NULL, micro_n1, micro_n2, micro_n3, micro_n4, micro_n5, micro_n6},
	{NULL, micro_t1, micro_t2, micro_t3, micro_t4, micro_t5, micro_t6},
};

/* ---- the blocked product ---------------------------------------------------------- */

/* As ln_gemm_avx512_part (gemm_kernels.h): rows [i0,i1), columns [j0,j1). */
void ln_gemm_avx2_part(bool ta, bool tb, int64_t n, int64_t i0, int64_t i1, int64_t j0,
                       int64_t j1, int64_t k, float alpha, const float *a, int64_t lda,
                       const float *b, int64_t ldb, float beta, float *c, int64_t ldc,
                       const float *rb, const float *cb, float *pb)
{
	int64_t nkb = (k + KC - 1) / KC;
	int64_t kcb = ((k + nkb - 1) / nkb + 7) / 8 * 8;
	const micro_fn *kern = kernels[ta ? 1 : 0];
	float *pa = pb + KC * NC;  /* a transposed A's rows, packed (see pack_a_t) */
	bool direct = !tb && (k <= 64 || k * (j1 - j0) <= DIRECT_MAX ||
	                      (i1 - i0 <= FEW_ROWS && ldb <= FEW_ROWS_LDB));
	for (int64_t jc = j0; jc < j1; jc += NC) {
		int64_t nc = j1 - jc < NC ? j1 - jc : NC;
		for (int64_t pc = 0; pc < k; pc += kcb) {
			int64_t kc = k - pc < kcb ? k - pc : kcb;
			if (tb)
				pack_b_t(pb, b + jc * ldb + pc, ldb, kc, nc);
			else if (!direct)
				pack_b_n(pb, b + pc * ldb + jc, ldb, kc, nc);
			float bt = pc == 0 ? beta : 1.0f;
			const bool last = pc + kc >= k;  /* the biases go in with the last block */
			for (int64_t ic = i0; ic < i1; ic += MR) {
				int64_t mr = i1 - ic < MR ? i1 - ic : MR;
				const float *ap = ta ? a + pc * lda + ic : a + ic * lda + pc;
				int64_t la = lda;
				if (ta && kc > PACK_A_KC) {
					pack_a_t(pa, a + pc * lda + ic, lda, kc, mr);
					ap = pa;
					la = MR;
				}
				const float *rbt = last && rb ? rb + ic : NULL;
				for (int64_t jr = 0; jr < nc; jr += NR) {
					int64_t w = nc - jr;
					float *cp = c + ic * ldc + jc + jr;
					const float *cbt = last && cb ? cb + jc + jr : NULL;
					if (direct)
						kern[mr](kc, ap, la, b + pc * ldb + jc + jr, ldb, cp, ldc, alpha, bt, rbt,
						         cbt, lanes(w), lanes(w - 8), w >= NR);
					else
						kern[mr](kc, ap, la, pb + jr * kc, NR, cp, ldc, alpha, bt, rbt, cbt,
						         lanes(w), lanes(w - 8), w >= NR);
				}
			}
		}
	}
}

#pragma GCC pop_options

#endif
