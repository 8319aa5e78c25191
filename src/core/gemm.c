/*
 * gemm.c -- C (m,n) = alpha * op(A) op(B) + beta * C, row-major float32.
 *
 * ln_gemm picks one of three ways to make a product:
 *
 *   small   m*n*k <= SMALL_MNK: a plain loop (gemm_small).  The products of
 *           a tiny network are a few hundred multiply-adds, less than what
 *           a call into a BLAS costs.
 *   own     lunet's packed kernels (gemm_avx512.c, or gemm_avx2.c on CPUs
 *           without AVX-512), chosen at run time from what the CPU
 *           reports (cpu.c), split over the worker threads (parallel.c)
 *           when the product is large enough to pay for waking them.
 *   blas    OpenBLAS's cblas_sgemm: on CPUs with neither AVX-512 nor
 *           AVX2+FMA, when the caller asked for it (ln_gemm_set_impl), or
 *           when another host thread is already using the worker pool and
 *           its pack buffers.
 *
 * Why an own kernel at all: OpenBLAS picks its kernels from the CPU model
 * it recognises, and falls back to its SSE3 ("Prescott") kernels on models
 * it does not know -- as on a virtualised AVX-512 Xeon, where the MLP's
 * products ran at about 32 GFLOP/s against 124-148 for gemm_avx512.c (and
 * 74-89 for BLIS's AVX2 kernels, 79-87 for gemm_avx2.c).  README.md has
 * the table.
 *
 * ln_gemm_naive is the naive triple loop (double accumulator) kept beside
 * them as the reference the tests compare every path against.
 */
#include <assert.h>
#include <limits.h>
#include <string.h>

#include <cblas.h>

#include "cpu.h"
#include "gemm.h"
#include "gemm_kernels.h"
#include "parallel.h"

/* A(i,p) of op(A) stored row-major with leading dimension lda. */
#define OP_AT(x, trans, ld, r, c) ((trans) ? (x)[(c) * (ld) + (r)] : (x)[(r) * (ld) + (c)])

/* At or below this many multiply-adds, the plain loop wins over both the
 * packed kernels and a BLAS call (the tiny network's 4x8x2: 68 ns,
 * against 105 ns through OpenBLAS and 168 ns through the packed kernel). */
#define SMALL_MNK 512

/* Products of at least this many multiply-adds are split over the worker
 * threads (about 20 us of work on one AVX-512 core: smaller ones gain less
 * than waking a thread costs). */
#define THREAD_MNK (2 * 1024 * 1024)

/* ==== the plain loop ======================================================= */

/* C = alpha op(A) op(B) + beta C with a float accumulator, each sum in
 * order of p.  op(A)[i][p] is a[i*ra + p*sa] and op(B)[p][j] is
 * b[p*sb + j*cb], so the loops have no branch.  The loops run a handful
 * of times each, too few for vector code to pay for its set-up (the tiny
 * network's six products: 4.7 thousand instructions per step like this,
 * 6.2 thousand with a vectorised loop along j).  C is not read when
 * beta == 0. */
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("no-tree-vectorize")))
#endif
static void gemm_small(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha,
                       const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                       float *c, int64_t ldc)
{
	int64_t ra = ta ? 1 : lda, sa = ta ? lda : 1;  /* steps of op(A) along i and p */
	int64_t sb = tb ? 1 : ldb, cb = tb ? ldb : 1;  /* steps of op(B) along p and j */
	for (int64_t i = 0; i < m; i++) {
		const float *ai = a + i * ra;
		float *ci = c + i * ldc;
		for (int64_t j = 0; j < n; j++) {
			const float *x = ai, *y = b + j * cb;
			float acc = 0.0f;
			for (int64_t p = k; p > 0; p--, x += sa, y += sb)
				acc += *x * *y;
			ci[j] = beta == 0.0f ? alpha * acc : alpha * acc + beta * ci[j];
		}
	}
}

/* C = beta C (C = 0 when beta == 0, whatever C held): the whole product
 * when k == 0 or alpha == 0, as BLAS defines it. */
static void scale_c(int64_t m, int64_t n, float beta, float *c, int64_t ldc)
{
	for (int64_t i = 0; i < m; i++) {
		float *row = c + i * ldc;
		if (beta == 0.0f)
			memset(row, 0, (size_t)n * sizeof(float));
		else if (beta != 1.0f)
			for (int64_t j = 0; j < n; j++)
				row[j] *= beta;
	}
}

/* ==== which kernels ========================================================== */

typedef void (*part_fn)(bool ta, bool tb, int64_t n, int64_t i0, int64_t i1, int64_t j0,
                        int64_t j1, int64_t k, float alpha, const float *a, int64_t lda,
                        const float *b, int64_t ldb, float beta, float *c, int64_t ldc,
                        const float *rb, const float *cb, float *pb);

/* The packed kernels this CPU can run, best first; NULL when neither. */
static part_fn cpu_part(void)
{
#if defined(__x86_64__) && defined(__GNUC__)
	if (ln_cpu_avx512())
		return ln_gemm_avx512_part;
	if (ln_cpu_avx2_fma())
		return ln_gemm_avx2_part;
#endif
	return NULL;
}

ln_gemm_cpu_kind ln_gemm_cpu(void)
{
#if defined(__x86_64__) && defined(__GNUC__)
	part_fn f = cpu_part();
	if (f == ln_gemm_avx512_part)
		return LN_GEMM_CPU_AVX512;
	if (f == ln_gemm_avx2_part)
		return LN_GEMM_CPU_AVX2;
#endif
	return LN_GEMM_CPU_NONE;
}

#ifndef LUNET_GEMM_DEFAULT
#define LUNET_GEMM_DEFAULT LN_GEMM_AUTO
#endif

static ln_gemm_impl impl = LUNET_GEMM_DEFAULT;

ln_status ln_gemm_set_impl(ln_gemm_impl which, ln_error *err)
{
	switch (which) {
	case LN_GEMM_AUTO:
	case LN_GEMM_BLAS:
		break;
	case LN_GEMM_AVX512:
		if (ln_gemm_cpu() != LN_GEMM_CPU_AVX512)
			return ln_fail(err, LN_EARG, "ln_gemm_set_impl: this CPU has no AVX-512F");
		break;
	case LN_GEMM_AVX2:
		if (ln_gemm_cpu() == LN_GEMM_CPU_NONE)
			return ln_fail(err, LN_EARG, "ln_gemm_set_impl: this CPU has no AVX2 and FMA");
		break;
	default:
		return ln_fail(err, LN_EARG, "ln_gemm_set_impl: unknown implementation %d", (int)which);
	}
	impl = which;
	return LN_OK;
}

ln_gemm_impl ln_gemm_get_impl(void)
{
	return impl;
}

const char *ln_gemm_impl_name(void)
{
	switch (impl) {
	case LN_GEMM_BLAS: return "openblas";
	case LN_GEMM_AVX512: return "avx512";
	case LN_GEMM_AVX2: return "avx2";
	default:
		switch (ln_gemm_cpu()) {
		case LN_GEMM_CPU_AVX512: return "auto (avx512)";
		case LN_GEMM_CPU_AVX2: return "auto (avx2)";
		default: return "auto (openblas)";
		}
	}
}

/* ==== splitting a product ======================================================
 *
 * A large product is split into one chunk per part, along the longer side
 * of C: by rows when m > n, else by columns, in whole micro-kernel tiles
 * (MR rows, NR columns: the finer the unit, the more even the halves, as
 * 400 + 384 columns of 784 rather than 416 + 368 in 32-column panels), so
 * that no two chunks write the same element.  A row chunk packs all of op(B) for itself (the rows of op(A)
 * are its own); a column chunk packs its own columns of op(B) but reads
 * all of op(A) (and packs a transposed A anew): splitting the longer side
 * duplicates the smaller of the two.  Part w packs into pack[w].
 *
 * One chunk per part, not several small ones.  Measured with the parts'
 * thread processor time summed (load-independent; best of 7, load 9) on
 * the products of a 784-256-128-10 MLP at batch 256 (m x n x k):
 *
 *     product                  1 thread   8 chunks of 32 columns   2 by columns   2 by rows
 *     gW 128x256x256 (A^T)     199 us     337 us                   216 us         213 us
 *     gW 256x784x256 (A^T)    1251 us    1371 us                  1240 us        1263 us
 *     y  256x256x784 (B^T)    1093 us    1145 us                  1115 us        1137 us
 *
 * Small chunks re-read (and for a transposed A re-pack) op(A) once each.
 * The parts still take their chunks from a shared counter: a part whose
 * thread is late (a busy machine) finds its chunk taken by one that
 * finished first, rather than making the product wait for it.
 *
 * Each element is computed the same way whoever computes it (the way a
 * sum is made depends on the whole product only, gemm_kernels.h), so the
 * result does not depend on the thread count: the same bits.  Inside a
 * part of some other split (a Conv2d sample range), a product runs whole
 * on that part's buffer.
 */

static float pack[LN_PARALLEL_MAX][LN_GEMM_PACK] __attribute__((aligned(64)));

typedef struct job {
	part_fn part;
	bool ta, tb;
	int64_t m, n, k;
	float alpha, beta;
	const float *a, *b;
	float *c;
	int64_t lda, ldb, ldc;
	const float *rb, *cb;  /* biases (ln_gemm_biased) */
	bool by_rows;   /* chunks of rows, else of columns */
	int64_t len;    /* m or n: the side split */
	int64_t chunk;  /* rows or columns per chunk (a multiple of MR or NR) */
	int64_t next;   /* first row or column not yet taken (atomic) */
} job;

/* ln_part_fn: takes chunks until all are taken. */
static void run_part(void *ctx, int w, int nparts)
{
	job *jb = ctx;
	(void)nparts;
	for (;;) {
		const int64_t s0 = __atomic_fetch_add(&jb->next, jb->chunk, __ATOMIC_RELAXED);
		if (s0 >= jb->len)
			break;
		const int64_t s1 = s0 + jb->chunk < jb->len ? s0 + jb->chunk : jb->len;
		const int64_t i0 = jb->by_rows ? s0 : 0, i1 = jb->by_rows ? s1 : jb->m;
		const int64_t j0 = jb->by_rows ? 0 : s0, j1 = jb->by_rows ? jb->n : s1;
		jb->part(jb->ta, jb->tb, jb->n, i0, i1, j0, j1, jb->k, jb->alpha, jb->a, jb->lda, jb->b,
		         jb->ldb, jb->beta, jb->c, jb->ldc, jb->rb, jb->cb, pack[w]);
	}
}

/* Splits the product of jb over up to `want` parts (see above); returns
 * false, having computed nothing, when the pool is held by another
 * thread. */
static bool run_split(job *jb, int want)
{
	jb->by_rows = jb->m > jb->n;
	jb->len = jb->by_rows ? jb->m : jb->n;
	const bool avx2 = jb->part == ln_gemm_avx2_part;
	const int64_t unit = jb->by_rows ? (avx2 ? LN_GEMM_AVX2_MR : LN_GEMM_AVX512_MR)
	                                 : (avx2 ? LN_GEMM_AVX2_NR : LN_GEMM_AVX512_NR);
	const int64_t units = (jb->len + unit - 1) / unit;
	if (want > LN_PARALLEL_MAX)
		want = LN_PARALLEL_MAX;
	if (want > units)
		want = (int)units;
	jb->chunk = unit * ((units + want - 1) / want);
	jb->next = 0;
	return ln_parallel_run(want, run_part, jb) > 0;
}

/* ==== the entry points ============================================================ */

static void blas(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                 int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc)
{
	/* cblas takes int sizes (OpenBLAS's default 32-bit interface) */
	assert(m <= INT_MAX && n <= INT_MAX && k <= INT_MAX);
	assert(lda <= INT_MAX && ldb <= INT_MAX && ldc <= INT_MAX);
	cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
	            (int)m, (int)n, (int)k, alpha, a, (int)lda, b, (int)ldb, beta, c, (int)ldc);
}

void ln_gemm_add_bias(float *c, int64_t ldc, int64_t i0, int64_t i1, int64_t j0, int64_t j1,
                      const float *rb, const float *cb)
{
	for (int64_t i = i0; rb && i < i1; i++)
		for (int64_t j = j0; j < j1; j++)
			c[i * ldc + j] += rb[i];
	for (int64_t i = i0; cb && i < i1; i++)
		for (int64_t j = j0; j < j1; j++)
			c[i * ldc + j] += cb[j];
}

void ln_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
             const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
             int64_t ldc)
{
	ln_gemm_biased(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, NULL, NULL);
}

void ln_gemm_biased(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                    const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                    float *c, int64_t ldc, const float *rb, const float *cb)
{
	assert(m >= 0 && n >= 0 && k >= 0);
	if (m == 0 || n == 0)
		return;
	if (k == 0 || alpha == 0.0f) {
		scale_c(m, n, beta, c, ldc);
		ln_gemm_add_bias(c, ldc, 0, m, 0, n, rb, cb);
		return;
	}
	/* the count of multiply-adds, in double: m*n*k may not fit in int64 */
	const double mnk = (double)m * (double)n * (double)k;
	if (impl == LN_GEMM_AUTO && mnk <= SMALL_MNK) {
		gemm_small(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
		ln_gemm_add_bias(c, ldc, 0, m, 0, n, rb, cb);
		return;
	}
	part_fn part = impl == LN_GEMM_AUTO ? cpu_part()
	             : impl == LN_GEMM_AVX512 ? ln_gemm_avx512_part
	             : impl == LN_GEMM_AVX2 ? ln_gemm_avx2_part : NULL;
	if (part) {
		job jb = {.part = part, .ta = trans_a, .tb = trans_b, .m = m, .n = n, .k = k,
		          .alpha = alpha, .beta = beta, .a = a, .b = b, .c = c,
		          .lda = lda, .ldb = ldb, .ldc = ldc, .rb = rb, .cb = cb};
		int me = ln_parallel_part();
		if (me >= 0) {
			part(trans_a, trans_b, n, 0, m, 0, n, k, alpha, a, lda, b, ldb, beta, c, ldc, rb,
			     cb, pack[me]);
			return;
		}
		if (run_split(&jb, mnk >= THREAD_MNK ? ln_parallel_threads() : 1))
			return;
	}
	blas(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
	ln_gemm_add_bias(c, ldc, 0, m, 0, n, rb, cb);
}

/*
 * C[i][j] = alpha * sum_p op(A)[i][p] * op(B)[p][j] + beta * C[i][j]
 * op(A): (m,k), op(B): (k,n), C: (m,n).  The sum is taken in double, in
 * order of p.  As in BLAS, C is not read when beta == 0 (so NaN or garbage
 * there does not leak into the result).
 */
void ln_gemm_naive(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                 const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                 int64_t ldc)
{
	for (int64_t i = 0; i < m; i++) {
		for (int64_t j = 0; j < n; j++) {
			double acc = 0.0;
			for (int64_t p = 0; p < k; p++)
				acc += (double)OP_AT(a, trans_a, lda, i, p) * (double)OP_AT(b, trans_b, ldb, p, j);
			double v = (double)alpha * acc;
			if (beta != 0.0)
				v += (double)beta * (double)c[i * ldc + j];
			c[i * ldc + j] = (float)v;
		}
	}
}

/* The thread count applies to lunet's splits (parallel.c) and to
 * OpenBLAS.  Until set, it is OpenBLAS's own (OPENBLAS_NUM_THREADS, else
 * the number of cores). */
void ln_gemm_set_threads(int n)
{
	n = n < 1 ? 1 : n;
	openblas_set_num_threads(n);
	ln_parallel_set_threads(n);
}

int ln_gemm_threads(void)
{
	return ln_parallel_threads();
}
