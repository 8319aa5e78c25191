/*
 * peak.c -- chains of fused multiply-adds that run one core at its
 * single-precision FMA throughput (peak.h says what they compute).
 *
 * The vector loops are compiled for their instruction set by target
 * attributes, as the gemm kernels are, so the build needs no
 * -march=native; ln_peak_fma calls one only after cpu.c said the CPU has
 * it.  Twelve accumulators are named one by one rather than kept in an
 * array, so that each stays in its own register.
 */
#include <math.h>

#include "cpu.h"
#include "peak.h"

int ln_peak_lanes(ln_peak_isa isa)
{
	return isa == LN_PEAK_AVX512 ? 16 : 8;
}

float ln_peak_start(int chain, int lane)
{
	return 1.0f + (float)(chain * LN_PEAK_MAX_LANES + lane) * 0x1p-10f;
}

/* The starting values of all chains, (LN_PEAK_CHAINS, lanes), into buf. */
static void start_values(float *buf, int lanes)
{
	for (int c = 0; c < LN_PEAK_CHAINS; c++)
		for (int l = 0; l < lanes; l++)
			buf[c * lanes + l] = ln_peak_start(c, l);
}

void ln_peak_fma_naive(float *out, int lanes, int64_t iters)
{
	start_values(out, lanes);
	for (int j = 0; j < LN_PEAK_CHAINS * lanes; j++)
		for (int64_t i = 0; i < iters; i++)
			out[j] = fmaf(out[j], LN_PEAK_A, LN_PEAK_B);
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

/* The recurrence on 12 AVX-512 registers of 16 lanes; out is (12,16). */
__attribute__((target("avx512f"))) static void fma_avx512(float *out, int64_t iters)
{
	float start[LN_PEAK_CHAINS * 16];
	start_values(start, 16);
	const __m512 a = _mm512_set1_ps(LN_PEAK_A), b = _mm512_set1_ps(LN_PEAK_B);
	__m512 x0 = _mm512_loadu_ps(start + 0 * 16), x1 = _mm512_loadu_ps(start + 1 * 16);
	__m512 x2 = _mm512_loadu_ps(start + 2 * 16), x3 = _mm512_loadu_ps(start + 3 * 16);
	__m512 x4 = _mm512_loadu_ps(start + 4 * 16), x5 = _mm512_loadu_ps(start + 5 * 16);
	__m512 x6 = _mm512_loadu_ps(start + 6 * 16), x7 = _mm512_loadu_ps(start + 7 * 16);
	__m512 x8 = _mm512_loadu_ps(start + 8 * 16), x9 = _mm512_loadu_ps(start + 9 * 16);
	__m512 x10 = _mm512_loadu_ps(start + 10 * 16), x11 = _mm512_loadu_ps(start + 11 * 16);
	for (int64_t i = 0; i < iters; i++) {
		x0 = _mm512_fmadd_ps(x0, a, b);
		x1 = _mm512_fmadd_ps(x1, a, b);
		x2 = _mm512_fmadd_ps(x2, a, b);
		x3 = _mm512_fmadd_ps(x3, a, b);
		x4 = _mm512_fmadd_ps(x4, a, b);
		x5 = _mm512_fmadd_ps(x5, a, b);
		x6 = _mm512_fmadd_ps(x6, a, b);
		x7 = _mm512_fmadd_ps(x7, a, b);
		x8 = _mm512_fmadd_ps(x8, a, b);
		x9 = _mm512_fmadd_ps(x9, a, b);
		x10 = _mm512_fmadd_ps(x10, a, b);
		x11 = _mm512_fmadd_ps(x11, a, b);
	}
	_mm512_storeu_ps(out + 0 * 16, x0);
	_mm512_storeu_ps(out + 1 * 16, x1);
	_mm512_storeu_ps(out + 2 * 16, x2);
	_mm512_storeu_ps(out + 3 * 16, x3);
	_mm512_storeu_ps(out + 4 * 16, x4);
	_mm512_storeu_ps(out + 5 * 16, x5);
	_mm512_storeu_ps(out + 6 * 16, x6);
	_mm512_storeu_ps(out + 7 * 16, x7);
	_mm512_storeu_ps(out + 8 * 16, x8);
	_mm512_storeu_ps(out + 9 * 16, x9);
	_mm512_storeu_ps(out + 10 * 16, x10);
	_mm512_storeu_ps(out + 11 * 16, x11);
}

/* The recurrence on 12 AVX2 registers of 8 lanes (with a and b, 14 of the
 * 16); out is (12,8). */
__attribute__((target("avx2,fma"))) static void fma_avx2(float *out, int64_t iters)
{
	float start[LN_PEAK_CHAINS * 8];
	start_values(start, 8);
	const __m256 a = _mm256_set1_ps(LN_PEAK_A), b = _mm256_set1_ps(LN_PEAK_B);
	__m256 x0 = _mm256_loadu_ps(start + 0 * 8), x1 = _mm256_loadu_ps(start + 1 * 8);
	__m256 x2 = _mm256_loadu_ps(start + 2 * 8), x3 = _mm256_loadu_ps(start + 3 * 8);
	__m256 x4 = _mm256_loadu_ps(start + 4 * 8), x5 = _mm256_loadu_ps(start + 5 * 8);
	__m256 x6 = _mm256_loadu_ps(start + 6 * 8), x7 = _mm256_loadu_ps(start + 7 * 8);
	__m256 x8 = _mm256_loadu_ps(start + 8 * 8), x9 = _mm256_loadu_ps(start + 9 * 8);
	__m256 x10 = _mm256_loadu_ps(start + 10 * 8), x11 = _mm256_loadu_ps(start + 11 * 8);
	for (int64_t i = 0; i < iters; i++) {
		x0 = _mm256_fmadd_ps(x0, a, b);
		x1 = _mm256_fmadd_ps(x1, a, b);
		x2 = _mm256_fmadd_ps(x2, a, b);
		x3 = _mm256_fmadd_ps(x3, a, b);
		x4 = _mm256_fmadd_ps(x4, a, b);
		x5 = _mm256_fmadd_ps(x5, a, b);
		x6 = _mm256_fmadd_ps(x6, a, b);
		x7 = _mm256_fmadd_ps(x7, a, b);
		x8 = _mm256_fmadd_ps(x8, a, b);
		x9 = _mm256_fmadd_ps(x9, a, b);
		x10 = _mm256_fmadd_ps(x10, a, b);
		x11 = _mm256_fmadd_ps(x11, a, b);
	}
	_mm256_storeu_ps(out + 0 * 8, x0);
	_mm256_storeu_ps(out + 1 * 8, x1);
	_mm256_storeu_ps(out + 2 * 8, x2);
	_mm256_storeu_ps(out + 3 * 8, x3);
	_mm256_storeu_ps(out + 4 * 8, x4);
	_mm256_storeu_ps(out + 5 * 8, x5);
	_mm256_storeu_ps(out + 6 * 8, x6);
	_mm256_storeu_ps(out + 7 * 8, x7);
	_mm256_storeu_ps(out + 8 * 8, x8);
	_mm256_storeu_ps(out + 9 * 8, x9);
	_mm256_storeu_ps(out + 10 * 8, x10);
	_mm256_storeu_ps(out + 11 * 8, x11);
}
#endif

ln_status ln_peak_fma(float *out, ln_peak_isa isa, int64_t iters, ln_error *err)
{
	if (iters < 0)
		return ln_fail(err, LN_ERANGE, "expected iters >= 0, got %lld", (long long)iters);
	switch (isa) {
	case LN_PEAK_AVX512:
		if (!ln_cpu_avx512())
			return ln_fail(err, LN_EARG, "this CPU has no AVX-512");
#if defined(__x86_64__) && defined(__GNUC__)
		fma_avx512(out, iters);
#endif
		return LN_OK;
	case LN_PEAK_AVX2:
		if (!ln_cpu_avx2_fma())
			return ln_fail(err, LN_EARG, "this CPU has no AVX2 and FMA");
#if defined(__x86_64__) && defined(__GNUC__)
		fma_avx2(out, iters);
#endif
		return LN_OK;
	}
	return ln_fail(err, LN_EARG, "unknown instruction set %d", (int)isa);
}
