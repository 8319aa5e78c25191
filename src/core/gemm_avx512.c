/*
 * gemm_avx512.c -- lunet's own matrix product for CPUs with AVX-512F:
 *
 *     C (m,n) = alpha * op(A) op(B) + beta * C        row-major float32
 *
 * The scheme is GotoBLAS/BLIS's, cut down to the shapes of small training
 * steps (m of a few dozen to a few hundred, k and n up to a few thousand):
 *
 *   for each block of NC columns of C:
 *     for each block of kc <= KC rows of op(B) (the k dimension):
 *       pack op(B)[pc:pc+kc, jc:jc+nc] into panels of NR = 32 columns,
 *         each panel kc x 32 floats  (pack_b_n, pack_b_t)
 *       for each MR = 12 rows of C, for each panel:
 *         acc (mr,32) = sum_p op(A)[i,p] panel[p,:]   24 zmm accumulators
 *         C[i, j] = alpha*acc + beta*C[i, j]          (beta = 1 after the
 *                                                       first k block)
 *
 * A is not packed: the micro-kernel broadcasts op(A)[i,p] straight from A
 * (rows of A, or columns of A^T, are read in order of p), which saves a
 * copy that small products cannot amortise.  A transposed B is packed
 * through 16x16 register transposes.  An untransposed B that is small
 * (k*n <= DIRECT_MAX) or short (k <= 64) is not packed either: the
 * micro-kernel reads its rows in place, which measured 5-40% faster on the
 * MLP's and the CNN's products (the copy costs more than it saves while B
 * sits in L2); it then prefetches the rows of the next panel, which took
 * a third off the cost of a B that is not in cache yet (the training
 * step's case: 64x784x256 went from +25% to +9% over the warm time).  Two shapes take other roads:
 *
 *   op(A) = A, op(B) = B^T with n <= 16 (a layer with few outputs):
 *     gemm_dot -- both operands run along p in memory, so tiles of 4x6
 *     dot products take 16 values of p per instruction, where a 32-column
 *     panel would be mostly padding (2-3x faster on n = 9, 10).
 *
 * The pack buffer is static (one per worker, see gemm.c), so a product
 * never allocates and never fails.  Results differ from ln_gemm_naive only
 * by float rounding: each C element is a float sum in order of p within a
 * k block (gemm_dot: in 16 interleaved partial sums).
 *
 * Everything here is compiled for AVX-512F by the target pragma below, so
 * the build does not need -march=native; gemm.c calls in only after
 * __builtin_cpu_supports("avx512f") said yes.
 */
#include <stdbool.h>
#include <stdint.h>

#include "gemm_kernels.h"

#if defined(__x86_64__) && defined(__GNUC__)

#pragma GCC push_options
#pragma GCC target("avx512f,avx2,fma")
#include <immintrin.h>

#define MR 12
#define NR 32
#define KC LN_GEMM_KC
#define NC LN_GEMM_NC
#define DIRECT_MAX (256 * 1024)  /* floats of an untransposed B read in place */

/* ---- packing op(B) ------------------------------------------------------------- */

/* Mask of the first w (0..16) lanes. */
static inline __mmask16 lanes(int64_t w)
{
	return w >= 16 ? (__mmask16)0xFFFF : w <= 0 ? (__mmask16)0 : (__mmask16)((1u << w) - 1);
}

/* op(B) = B, stored (k,n) with row stride ldb:
 * pb[panel][p][jj] = b[p*ldb + j0 + jj] for jj < w, else 0;  b at (pc, jc). */
static void pack_b_n(float *pb, const float *b, int64_t ldb, int64_t kc, int64_t nc)
{
	for (int64_t j0 = 0; j0 < nc; j0 += NR) {
		int64_t w = nc - j0;
		__mmask16 m0 = lanes(w), m1 = lanes(w - 16);
		const float *src = b + j0;
		for (int64_t p = 0; p < kc; p++) {
			_mm512_store_ps(pb, _mm512_maskz_loadu_ps(m0, src));
			_mm512_store_ps(pb + 16, _mm512_maskz_loadu_ps(m1, src + 16));
			src += ldb;
			pb += NR;
		}
	}
}

/* In-register transpose of a 16x16 block: r[a][b] becomes r[b][a]. */
static inline void transpose16(__m512 r[16])
{
	__m512 t[16], s[16];
	for (int i = 0; i < 8; i++) {
		t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
		t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
	}
	/* s[4i+j], 128-bit lane L: column 4L+j of rows 4i..4i+3 */
	for (int i = 0; i < 4; i++) {
		__m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 2]);
		__m512d c = _mm512_castps_pd(t[4 * i + 1]), d = _mm512_castps_pd(t[4 * i + 3]);
		s[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
		s[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
		s[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(c, d));
		s[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(c, d));
	}
	/* row 4L+j gathers lane L of s[j], s[4+j], s[8+j], s[12+j] */
	for (int j = 0; j < 4; j++) {
		__m512 v0 = _mm512_shuffle_f32x4(s[j], s[4 + j], 0x44);
		__m512 v1 = _mm512_shuffle_f32x4(s[j], s[4 + j], 0xEE);
		__m512 w0 = _mm512_shuffle_f32x4(s[8 + j], s[12 + j], 0x44);
		__m512 w1 = _mm512_shuffle_f32x4(s[8 + j], s[12 + j], 0xEE);
		r[j] = _mm512_shuffle_f32x4(v0, w0, 0x88);
		r[4 + j] = _mm512_shuffle_f32x4(v0, w0, 0xDD);
		r[8 + j] = _mm512_shuffle_f32x4(v1, w1, 0x88);
		r[12 + j] = _mm512_shuffle_f32x4(v1, w1, 0xDD);
	}
}

/* op(B) = B^T, B stored (n,k) with row stride ldb:
 * pb[panel][p][jj] = b[(j0+jj)*ldb + p] for jj < w, else 0;  b at (jc, pc).
 * Blocks of 16 rows of B by 16 values of p go through transpose16. */
static void pack_b_t(float *pb, const float *b, int64_t ldb, int64_t kc, int64_t nc)
{
	for (int64_t j0 = 0; j0 < nc; j0 += NR, pb += kc * NR) {
		for (int h = 0; h < 2; h++) {
			int64_t rows = nc - j0 - 16 * h;  /* rows of B in this half */
			for (int64_t p0 = 0; p0 < kc; p0 += 16) {
				__mmask16 mp = lanes(kc - p0);
				__m512 r[16];
				for (int t = 0; t < 16; t++)
					r[t] = t < rows ? _mm512_maskz_loadu_ps(mp, b + (j0 + 16 * h + t) * ldb + p0)
					                : _mm512_setzero_ps();
				transpose16(r);
				int64_t np = kc - p0 < 16 ? kc - p0 : 16;
				for (int64_t q = 0; q < np; q++)
					_mm512_store_ps(pb + (p0 + q) * NR + 16 * h, r[q]);
			}
		}
	}
}

/* ---- the micro-kernel ------------------------------------------------------------ */

/*
 * C (mr, 32 masked by m0|m1) = alpha * op(A) (mr,kc) panel (kc,32) + beta * C
 * a points at op(A)[0][0]: element (i,p) is a[i*lda + p], or a[p*lda + i]
 * when at.  Row p of the panel is pb[p*ldp ...]: a packed panel (ldp = 32)
 * or B itself (ldp = ldb); lanes outside m0|m1 are neither read nor
 * written.  C is not read when beta == 0.  mr and at are constants in each
 * instance (see KERNELS below), so the accumulator arrays live in
 * registers.
 */
static inline __attribute__((always_inline)) void
micro(const int mr, const bool at, int64_t kc, const float *a, int64_t lda, const float *pb,
      int64_t ldp, float *c, int64_t ldc, float alpha, float beta, __mmask16 m0, __mmask16 m1)
{
	__m512 c0[MR], c1[MR];
#pragma GCC unroll 12
	for (int i = 0; i < mr; i++)
		c0[i] = c1[i] = _mm512_setzero_ps();
	if (at) {
		for (int64_t p = 0; p < kc; p++) {
			__m512 b0 = _mm512_maskz_loadu_ps(m0, pb), b1 = _mm512_maskz_loadu_ps(m1, pb + 16);
			if (ldp != NR) {  /* B in place: fetch the next panel's row too */
				_mm_prefetch((const char *)(pb + NR), _MM_HINT_T0);
				_mm_prefetch((const char *)(pb + NR + 16), _MM_HINT_T0);
			}
#pragma GCC unroll 12
			for (int i = 0; i < mr; i++) {
				__m512 av = _mm512_set1_ps(a[i]);
				c0[i] = _mm512_fmadd_ps(av, b0, c0[i]);
				c1[i] = _mm512_fmadd_ps(av, b1, c1[i]);
			}
			a += lda;
			pb += ldp;
		}
	} else {
		/* rows 3q..3q+2 are r[q][0], r[q][lda], r[q][2*lda] */
		const float *r[4];
#pragma GCC unroll 4
		for (int q = 0; q < 4; q++)
			r[q] = 3 * q < mr ? a + 3 * q * lda : a;
		const int64_t lda2 = 2 * lda;
		for (int64_t p = 0; p < kc; p++) {
			__m512 b0 = _mm512_maskz_loadu_ps(m0, pb), b1 = _mm512_maskz_loadu_ps(m1, pb + 16);
			if (ldp != NR) {  /* B in place: fetch the next panel's row too */
				_mm_prefetch((const char *)(pb + NR), _MM_HINT_T0);
				_mm_prefetch((const char *)(pb + NR + 16), _MM_HINT_T0);
			}
#pragma GCC unroll 12
			for (int i = 0; i < mr; i++) {
				const float *ri = r[i / 3];
				float v = i % 3 == 0 ? ri[0] : i % 3 == 1 ? ri[lda] : ri[lda2];
				__m512 av = _mm512_set1_ps(v);
				c0[i] = _mm512_fmadd_ps(av, b0, c0[i]);
				c1[i] = _mm512_fmadd_ps(av, b1, c1[i]);
			}
#pragma GCC unroll 4
			for (int q = 0; q < (mr + 2) / 3; q++)
				r[q]++;
			pb += ldp;
		}
	}
	__m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#pragma GCC unroll 12
	for (int i = 0; i < mr; i++) {
		float *ci = c + i * ldc;
		__m512 x0 = _mm512_mul_ps(va, c0[i]), x1 = _mm512_mul_ps(va, c1[i]);
		if (beta != 0.0f) {
			x0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, ci), x0);
			x1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, ci + 16), x1);
		}
		_mm512_mask_storeu_ps(ci, m0, x0);
		_mm512_mask_storeu_ps(ci + 16, m1, x1);
	}
}

typedef void (*micro_fn)(int64_t kc, const float *a, int64_t lda, const float *pb, int64_t ldp,
                         float *c, int64_t ldc, float alpha, float beta, __mmask16 m0,
                         __mmask16 m1);

#define KERNEL(mr, at, name)                                                                 \
	static void name(int64_t kc, const float *a, int64_t lda, const float *pb, int64_t ldp,   \
	                 float *c, int64_t ldc, float alpha, float beta, __mmask16 m0,           \
	                 __mmask16 m1)                                                           \
	{                                                                                        \
		micro(mr, at, kc, a, lda, pb, ldp, c, ldc, alpha, beta, m0, m1);                     \
	}
#define KERNELS(mr) KERNEL(mr, false, micro_n##mr) KERNEL(mr, true, micro_t##mr)
KERNELS(1) KERNELS(2) KERNELS(3) KERNELS(4) KERNELS(5) KERNELS(6)
KERNELS(7) KERNELS(8) KERNELS(9) KERNELS(10) KERNELS(11) KERNELS(12)

/* kernels[at][mr] */
static const micro_fn kernels[2][MR + 1] = {
	{NULL, micro_n1, micro_n2, micro_n3, micro_n4, micro_n5, micro_n6, micro_n7, micro_n8,
	 micro_n9, micro_n10, micro_n11, micro_n12},
	{NULL, micro_t1, micro_t2, micro_t3, micro_t4, micro_t5, micro_t6, micro_t7, micro_t8,
	 micro_t9, micro_t10, micro_t11, micro_t12},
};


/* ---- the dot-product kernel, for op(A) = A and op(B) = B^T ------------------------ */

/*
 * C[i][j] = alpha * sum_p A[i][p] B[j][p] + beta * C[i][j] for a tile of
 * mi <= 4 rows by nj <= 6 columns: both operands run along p in memory,
 * so 16 values of p go into each of 24 vector accumulators, summed across
 * lanes at the end.  Rows and columns beyond mi, nj repeat the first ones
 * (valid memory) and are not stored.
 */
#define DI 4
#define DJ 6
static void dot_tile(int mi, int nj, int64_t k, const float *a, int64_t lda, const float *b,
                     int64_t ldb, float *c, int64_t ldc, float alpha, float beta)
{
	const float *ar[DI], *br[DJ];
	for (int i = 0; i < DI; i++)
		ar[i] = a + (i < mi ? i : 0) * lda;
	for (int j = 0; j < DJ; j++)
		br[j] = b + (j < nj ? j : 0) * ldb;
	__m512 acc[DI][DJ];
#pragma GCC unroll 4
	for (int i = 0; i < DI; i++)
#pragma GCC unroll 6
		for (int j = 0; j < DJ; j++)
			acc[i][j] = _mm512_setzero_ps();
	for (int64_t p = 0; p < k; p += 16) {
		__mmask16 mk = lanes(k - p);
		__m512 bv[DJ];
#pragma GCC unroll 6
		for (int j = 0; j < DJ; j++)
			bv[j] = _mm512_maskz_loadu_ps(mk, br[j] + p);
#pragma GCC unroll 4
		for (int i = 0; i < DI; i++) {
			__m512 av = _mm512_maskz_loadu_ps(mk, ar[i] + p);
#pragma GCC unroll 6
			for (int j = 0; j < DJ; j++)
				acc[i][j] = _mm512_fmadd_ps(av, bv[j], acc[i][j]);
		}
	}
	float sum[DI][DJ];
#pragma GCC unroll 4
	for (int i = 0; i < DI; i++)
#pragma GCC unroll 6
		for (int j = 0; j < DJ; j++)
			sum[i][j] = _mm512_reduce_add_ps(acc[i][j]);
	for (int i = 0; i < mi; i++)
		for (int j = 0; j < nj; j++) {
			float v = alpha * sum[i][j];
			float *cij = c + i * ldc + j;
			*cij = beta == 0.0f ? v : v + beta * *cij;
		}
}

static void gemm_dot(int64_t i0, int64_t i1, int64_t j0, int64_t j1, int64_t k, float alpha,
                     const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                     float *c, int64_t ldc)
{
	for (int64_t j = j0; j < j1; j += DJ) {
		int nj = j1 - j < DJ ? (int)(j1 - j) : DJ;
		for (int64_t i = i0; i < i1; i += DI) {
			int mi = i1 - i < DI ? (int)(i1 - i) : DI;
			dot_tile(mi, nj, k, a + i * lda, lda, b + j * ldb, ldb, c + i * ldc + j, ldc, alpha,
			         beta);
		}
	}
}

/* ---- the blocked product ---------------------------------------------------------- */

/*
 * C (m,n) = alpha op(A) op(B) + beta C for rows [i0, i1) and columns
 * [j0, j1) of C, packing into pb (KC*NC floats, 64-byte aligned, owned by
 * the caller).  k >= 1; n is the width of the whole product.  Workers of a
 * threaded product each take ranges of columns with their own pb.
 */
void ln_gemm_avx512_part(bool ta, bool tb, int64_t n, int64_t i0, int64_t i1, int64_t j0,
                         int64_t j1, int64_t k, float alpha, const float *a, int64_t lda,
                         const float *b, int64_t ldb, float beta, float *c, int64_t ldc,
                         const float *rb, const float *cb, float *pb)
{
	/* decided on the whole product's width, not this part's: every part
	 * of a split product must sum the same way */
	if (!ta && tb && n <= 16) {
		gemm_dot(i0, i1, j0, j1, k, alpha, a, lda, b, ldb, beta, c, ldc);
		ln_gemm_add_bias(c, ldc, i0, i1, j0, j1, rb, cb);
		return;
	}
	/* k blocks of equal size, rounded up to a multiple of 16 */
	int64_t nkb = (k + KC - 1) / KC;
	int64_t kcb = ((k + nkb - 1) / nkb + 15) / 16 * 16;
	const micro_fn *kern = kernels[ta ? 1 : 0];
	bool direct = !tb && (k <= 64 || k * (j1 - j0) <= DIRECT_MAX);
	for (int64_t jc = j0; jc < j1; jc += NC) {
		int64_t nc = j1 - jc < NC ? j1 - jc : NC;
		for (int64_t pc = 0; pc < k; pc += kcb) {
			int64_t kc = k - pc < kcb ? k - pc : kcb;
			if (tb)
				pack_b_t(pb, b + jc * ldb + pc, ldb, kc, nc);
			else if (!direct)
				pack_b_n(pb, b + pc * ldb + jc, ldb, kc, nc);
			float bt = pc == 0 ? beta : 1.0f;
			for (int64_t ic = i0; ic < i1; ic += MR) {
				int64_t mr = i1 - ic < MR ? i1 - ic : MR;
				const float *ap = ta ? a + pc * lda + ic : a + ic * lda + pc;
				for (int64_t jr = 0; jr < nc; jr += NR) {
					__mmask16 m0 = lanes(nc - jr), m1 = lanes(nc - jr - 16);
					float *cp = c + ic * ldc + jc + jr;
					if (direct)
						kern[mr](kc, ap, lda, b + pc * ldb + jc + jr, ldb, cp, ldc, alpha, bt, m0, m1);
					else
						kern[mr](kc, ap, lda, pb + jr * kc, NR, cp, ldc, alpha, bt, m0, m1);
				}
			}
		}
	}
	/* the biases in a pass over the part, still in cache */
	ln_gemm_add_bias(c, ldc, i0, i1, j0, j1, rb, cb);
}

#pragma GCC pop_options

#endif
