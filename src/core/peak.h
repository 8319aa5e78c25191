/*
 * peak.h -- the single-precision multiply-add throughput of one core, the
 * ceiling the benchmark measures its kernels and training steps against
 * (experiments/bench/README.md, "Fraction of the FMA peak").
 *
 * ln_peak_fma keeps LN_PEAK_CHAINS independent chains of fused
 * multiply-adds in vector registers, each lane computing
 *
 *     acc = acc * LN_PEAK_A + LN_PEAK_B          iters times
 *
 * from ln_peak_start(chain, lane).  Enough chains are in flight to hide
 * the latency of an FMA on current x86 cores (4-5 cycles, two issued per
 * cycle), so that a timed call runs at the core's FMA throughput.  The
 * values decay towards B / (1 - A) = 2^-6 and never become denormal.
 * ln_peak_fma_naive is the same recurrence one lane at a time with fmaf, the
 * reference the tests hold the vector loops to, bit for bit.
 */
#ifndef LN_PEAK_H
#define LN_PEAK_H

#include <stdint.h>

#include "error.h"

#define LN_PEAK_CHAINS 12
#define LN_PEAK_MAX_LANES 16              /* floats in an AVX-512 register */
#define LN_PEAK_A (1.0f - 0x1p-14f)
#define LN_PEAK_B 0x1p-20f

typedef enum ln_peak_isa { LN_PEAK_AVX512 = 0, LN_PEAK_AVX2 } ln_peak_isa;

/* Floats per vector register of isa: 16 (AVX-512) or 8 (AVX2). */
int ln_peak_lanes(ln_peak_isa isa);

/* The starting value of lane `lane` of chain `chain`: all differ, so that
 * no two chains compute the same thing. */
float ln_peak_start(int chain, int lane);

/* Runs the chains with isa's vector instructions for iters >= 0 rounds
 * (2 * LN_PEAK_CHAINS * ln_peak_lanes(isa) floating-point operations
 * each) and writes their final values to out (LN_PEAK_CHAINS rows of
 * ln_peak_lanes(isa) floats, caller-owned).  Fails with LN_EARG when this
 * CPU cannot run isa (or it is unknown), LN_ERANGE when iters < 0; out is
 * then untouched. */
ln_status ln_peak_fma(float *out, ln_peak_isa isa, int64_t iters, ln_error *err);

/* The same values computed one lane at a time with fmaf, for lanes floats
 * per chain. */
void ln_peak_fma_naive(float *out, int lanes, int64_t iters);

#endif
