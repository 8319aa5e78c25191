/*
 * cellmath.h -- exp, sigmoid and tanh for the inner loops of the
 * recurrent and attention kernels, written so that the compiler
 * vectorises a loop that calls them (no libm call, no branch: both sides
 * of a choice are computed and one is selected).
 *
 * Accuracy against libm in double, every 1e-4 over [-100, 100] (measured
 * 8.4e-8, 8.9e-8, 7.2e-8 and 1.3e-7; test_sequence.c checks the bounds):
 *   ln_exp_fast      relative error < 2e-7 for x in [-87, 88]; below -87.3
 *                    it returns e^-87.3 (about 1.2e-38) instead of a
 *                    smaller number or 0, above 88.3 e^88.3
 *   ln_sigmoid_fast  absolute error < 2e-7
 *   ln_tanh_fast     absolute error < 2e-7, relative < 3e-7 (near 0 it is
 *                    a polynomial, so small inputs keep their precision)
 *   ln_normal_cdf_fast, ln_gauss_fast  Phi(x) = (1 + erf(x / sqrt 2)) / 2
 *                    and e^(-x^2/2):
 *                    absolute error < 2.5e-7 (measured 1.8e-7 and 2.0e-7
 *                    without FMA), for x < 0 relative error < 1e-6 down to
 *                    x = -13 (measured 4.6e-7; Phi(-13) is 6e-39, below it
 *                    a number under 1e-37 instead of the true smaller one,
 *                    and 0 below -20);
 *                    e^(-x^2/2) relative error < 3e-7 for |x| < 13
 *                    (measured 1.6e-7)
 * The _naive kernels beside the fast ones use libm (expf, tanhf, erff).
 *
 * GCC vectorises the selects below only without -ftrapping-math (its
 * default): CMakeLists.txt builds the files that include this header with
 * -fno-trapping-math (lunet never reads floating-point exception flags).
 *
 * exp is Cody & Waite's reduction e^x = 2^n e^r, n = round(x / ln 2),
 * |r| <= ln(2)/2, with the polynomial of Cephes' expf for e^r; tanh for
 * |x| < 0.625 is Cephes' tanhf polynomial, above it 1 - 2/(e^{2|x|} + 1).
 * Phi uses erfc(z) = t e^(-z^2) e^(P(t)), t = 1 / (1 + z/2), z = |x|/sqrt 2,
 * with the degree-9 Chebyshev fit P of Numerical Recipes' erfcc (fractional
 * error < 1.2e-7 for every z >= 0); z^2 = x^2/2 is carried as a rounded
 * float plus its rounding error, so that e^(-z^2) keeps its precision for
 * large |x|.
 */
#ifndef LN_CELLMATH_H
#define LN_CELLMATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

static inline float ln_exp_fast(float x)
{
	x = x < -87.3f ? -87.3f : x > 88.3f ? 88.3f : x;
	/* n = round(x log2 e), by the 1.5 * 2^23 trick (exact for |n| < 2^22) */
	float t = x * 1.44269504088896341f + 12582912.0f;
	float n = t - 12582912.0f;
	float r = x - n * 0.693359375f;
	r = r - n * -2.12194440e-4f;
	float p = 1.9875691500e-4f;
	p = p * r + 1.3981999507e-3f;
	p = p * r + 8.3334519073e-3f;
	p = p * r + 4.1665795894e-2f;
	p = p * r + 1.6666665459e-1f;
	p = p * r + 5.0000001201e-1f;
	p = p * r * r + r + 1.0f;
	int32_t e = ((int32_t)n + 127) << 23;
	float scale;
	memcpy(&scale, &e, sizeof scale);
	return p * scale;
}

/* 1 / (1 + e^-x): no cancellation for either sign */
static inline float ln_sigmoid_fast(float x)
{
	return 1.0f / (1.0f + ln_exp_fast(-x));
}

static inline float ln_tanh_fast(float x)
{
	float ax = fabsf(x);
	float z = x * x;
	float small = ((((-5.70498872745e-3f * z + 2.06390887954e-2f) * z - 5.37397155531e-2f) * z +
	                1.33314422036e-1f) * z - 3.33332819422e-1f) * z * x + x;
	float big = copysignf(1.0f - 2.0f / (ln_exp_fast(2.0f * ax) + 1.0f), x);
	return ax < 0.625f ? small : big;
}

/* e^x in double, for loops that need double precision (the loss's
 * log-sum-exp): relative error < 1e-15 for x in [-708, 709] (clamped
 * there, so no overflow and no subnormal).  Cody & Waite's reduction with
 * ln 2 split in two (the high part has 32 trailing zero bits, so n ln2_hi
 * is exact), e^r for |r| <= ln(2)/2 by its Taylor series to r^13 (the
 * remainder is below 2e-16), 2^n built in the exponent bits from the
 * rounding constant's own bits (no double-to-integer conversion, which
 * AVX2 lacks for 64-bit lanes). */
static inline double ln_exp_d(double x)
{
	x = x < -708.0 ? -708.0 : x > 709.0 ? 709.0 : x;
	double t = x * 1.4426950408889634074 + 6755399441055744.0;  /* 1.5 * 2^52 */
	double n = t - 6755399441055744.0;
	double r = x - n * 6.93147180369123816490e-01;
	r = r - n * 1.90821492927058770002e-10;
	double p = 1.0 / 6227020800.0;  /* 1/13! */
	p = p * r + 1.0 / 479001600.0;
	p = p * r + 1.0 / 39916800.0;
	p = p * r + 1.0 / 3628800.0;
	p = p * r + 1.0 / 362880.0;
	p = p * r + 1.0 / 40320.0;
	p = p * r + 1.0 / 5040.0;
	p = p * r + 1.0 / 720.0;
	p = p * r + 1.0 / 120.0;
	p = p * r + 1.0 / 24.0;
	p = p * r + 1.0 / 6.0;
	p = p * r + 0.5;
	p = p * r * r + r + 1.0;
	int64_t bits;
	memcpy(&bits, &t, sizeof bits);
	/* t's low mantissa bits hold n in two's complement */
	bits = (int64_t)((uint64_t)(bits - 0x4338000000000000LL + 1023) << 52);
	double scale;
	memcpy(&scale, &bits, sizeof scale);
	return p * scale;
}

/* e^(-x^2/2), the normal density times sqrt(2 pi), of an x already
 * clamped to [-20, 20]: x^2 is carried as a rounded float plus its
 * rounding error, so that the result keeps its precision for large |x|. */
static inline float ln_gauss_clamped(float x)
{
	float hi = x * x;  /* x^2 = hi + lo exactly */
#ifdef __FMA__
	float lo = fmaf(x, x, -hi);
#else  /* Dekker's product: exact without fma (and nothing contracts into one) */
	float c = 4097.0f * x, xh = c - (c - x), xl = x - xh;
	float lo = ((xh * xh - hi) + 2.0f * xh * xl) + xl * xl;
#endif
	return ln_exp_fast(-0.5f * hi) * (1.0f - 0.5f * lo);
}

/* e^(-x^2/2): 0 for |x| >= 20, NaN for NaN; branch-free. */
static inline float ln_gauss_fast(float x)
{
	float inside = fabsf(x) < 20.0f ? 1.0f : 0.0f;
	x = x < -20.0f ? -20.0f : x > 20.0f ? 20.0f : x;
	return ln_gauss_clamped(x) * inside;
}

/* Phi(x), the standard normal distribution function, for GELU:
 * branch-free, so that a loop calling it vectorises.  A NaN x gives NaN. */
static inline float ln_normal_cdf_fast(float x)
{
	float far_left = x < -20.0f ? 0.0f : 1.0f;  /* Phi is 0 there (below 3e-89) */
	x = x < -20.0f ? -20.0f : x > 20.0f ? 20.0f : x;  /* and 1 past 20 */
	float z = fabsf(x) * 0.70710678118654752f;
	float t = 1.0f / (1.0f + 0.5f * z);
	float p = 0.17087277f;
	p = p * t - 0.82215223f;
	p = p * t + 1.48851587f;
	p = p * t - 1.13520398f;
	p = p * t + 0.27886807f;
	p = p * t - 0.18628806f;
	p = p * t + 0.09678418f;
	p = p * t + 0.37409196f;
	p = p * t + 1.00002368f;
	p = p * t - 1.26551223f;
	float half_erfc = 0.5f * t * ln_gauss_clamped(x) * ln_exp_fast(p);  /* Phi(-|x|) */
	return (x < 0 ? half_erfc : 1.0f - half_erfc) * far_left;
}

#endif
