/*
 * cpu.c -- instruction-set checks for the kernels with several versions.
 * GCC's __builtin_cpu_supports reads CPUID (and the OS's XSAVE state, so
 * that AVX registers are really usable); other compilers and processors
 * get the portable kernels.
 */
#include <pthread.h>

#include "cpu.h"

static pthread_once_t once = PTHREAD_ONCE_INIT;
static bool has_avx512, has_avx2_fma;
static bool portable;  /* ln_cpu_use_portable */

static void probe(void)
{
#if defined(__x86_64__) && defined(__GNUC__)
	__builtin_cpu_init();
	has_avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
	             __builtin_cpu_supports("avx512bw");
	has_avx2_fma = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
}

bool ln_cpu_avx512(void)
{
	pthread_once(&once, probe);
	return has_avx512 && !portable;
}

bool ln_cpu_avx2_fma(void)
{
	pthread_once(&once, probe);
	return has_avx2_fma && !portable;
}

void ln_cpu_use_portable(bool on)
{
	portable = on;
}
