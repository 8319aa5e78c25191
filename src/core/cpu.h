/*
 * cpu.h -- what the processor running lunet can do, for the kernels that
 * have a faster version compiled for newer instruction sets (with target
 * attributes: the build itself never needs -march=native).  Asked once
 * per process; cheap to call.
 */
#ifndef LN_CPU_H
#define LN_CPU_H

#include <stdbool.h>

/* AVX-512 Foundation (with the VL and BW extensions the kernels use). */
bool ln_cpu_avx512(void);
/* AVX2 and FMA. */
bool ln_cpu_avx2_fma(void);

/* With on, both report false from now on, as on an older processor, so
 * that tests and measurements can run the portable kernels (ln_gemm then
 * goes to OpenBLAS).  Off restores what the processor says. */
void ln_cpu_use_portable(bool on);

#endif
