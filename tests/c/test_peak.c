/*
 * test_peak.c -- the FMA chains the benchmark times for the machine's
 * peak (core/peak.c): each vector loop computes, bit for bit, what the
 * one-lane fmaf reference computes, so every counted operation is really
 * made; the values stay normal; bad arguments fail without touching the
 * output.  Instruction sets the CPU lacks are skipped with a message,
 * never reported as passed silently.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/cpu.h"
#include "core/peak.h"

#define N_OUT (LN_PEAK_CHAINS * LN_PEAK_MAX_LANES)

static const char *isa_label(ln_peak_isa isa)
{
	return isa == LN_PEAK_AVX512 ? "avx512" : "avx2";
}

static bool cpu_has(ln_peak_isa isa)
{
	return isa == LN_PEAK_AVX512 ? ln_cpu_avx512() : ln_cpu_avx2_fma();
}

static void test_lanes(void **state)
{
	assert_int_equal(ln_peak_lanes(LN_PEAK_AVX512), 16);
	assert_int_equal(ln_peak_lanes(LN_PEAK_AVX2), 8);
	assert_true(ln_peak_lanes(LN_PEAK_AVX512) <= LN_PEAK_MAX_LANES);
}

/* No two lanes of any chains start equal (else a compiler, or a reader,
 * could take two chains for one). */
static void test_start_values_distinct(void **state)
{
	float seen[N_OUT];
	int n = 0;
	for (int c = 0; c < LN_PEAK_CHAINS; c++)
		for (int l = 0; l < LN_PEAK_MAX_LANES; l++) {
			float v = ln_peak_start(c, l);
			for (int j = 0; j < n; j++)
				assert_true(seen[j] != v);
			seen[n++] = v;
		}
}

/* Each vector loop against the reference, bit for bit, for several
 * round counts (0: the starting values themselves). */
static void test_matches_reference(void **state)
{
	static const int64_t iters[] = {0, 1, 2, 7, 100, 5000};
	const ln_peak_isa isas[] = {LN_PEAK_AVX512, LN_PEAK_AVX2};
	int ran = 0;
	for (size_t s = 0; s < 2; s++) {
		ln_peak_isa isa = isas[s];
		if (!cpu_has(isa)) {
			print_message("skipping %s: this CPU lacks it\n", isa_label(isa));
			continue;
		}
		const int lanes = ln_peak_lanes(isa);
		for (size_t i = 0; i < sizeof iters / sizeof iters[0]; i++) {
			float got[N_OUT], want[N_OUT];
			memset(got, 0xff, sizeof got);
			assert_int_equal(ln_peak_fma(got, isa, iters[i], NULL), LN_OK);
			ln_peak_fma_naive(want, lanes, iters[i]);
			for (int j = 0; j < LN_PEAK_CHAINS * lanes; j++)
				if (memcmp(&got[j], &want[j], sizeof(float)) != 0)
					fail_msg("%s, %lld rounds: value %d is %.9g, reference %.9g", isa_label(isa),
					         (long long)iters[i], j, (double)got[j], (double)want[j]);
			/* after one round or more, something changed */
			if (iters[i] > 0)
				assert_true(got[0] != ln_peak_start(0, 0));
		}
		ran++;
	}
	if (ran == 0)
		print_message("no vector FMA on this CPU: only the reference was exercised\n");
}

/* The recurrence stays in normal floats between its fixed point B/(1-A)
 * and its largest start, however long it runs. */
static void test_values_stay_normal(void **state)
{
	float out[N_OUT];
	const float fixed = LN_PEAK_B / (1.0f - LN_PEAK_A);
	const float top = ln_peak_start(LN_PEAK_CHAINS - 1, LN_PEAK_MAX_LANES - 1);
	ln_peak_fma_naive(out, LN_PEAK_MAX_LANES, 200000);
	for (int j = 0; j < N_OUT; j++) {
		assert_true(isnormal(out[j]));
		assert_true(out[j] >= fixed * 0.999f && out[j] <= top);
	}
	/* far from converged yet for a short run: the work is not a no-op */
	ln_peak_fma_naive(out, LN_PEAK_MAX_LANES, 1000);
	assert_true(out[0] > 2.0f * fixed);
}

static void test_errors(void **state)
{
	float out[N_OUT];
	ln_error err;
	for (int j = 0; j < N_OUT; j++)
		out[j] = 42.0f;
	assert_int_equal(ln_peak_fma(out, LN_PEAK_AVX2, -1, &err), LN_ERANGE);
	assert_string_equal(err.msg, "expected iters >= 0, got -1");
	assert_int_equal(ln_peak_fma(out, (ln_peak_isa)7, 10, &err), LN_EARG);
	assert_string_equal(err.msg, "unknown instruction set 7");
	assert_int_equal(ln_peak_fma(out, LN_PEAK_AVX2, 10, NULL) == LN_OK, ln_cpu_avx2_fma());
	/* as on an older processor: both sets refused, the output untouched */
	ln_cpu_use_portable(true);
	for (int j = 0; j < N_OUT; j++)
		out[j] = 42.0f;
	assert_int_equal(ln_peak_fma(out, LN_PEAK_AVX512, 10, &err), LN_EARG);
	assert_string_equal(err.msg, "this CPU has no AVX-512");
	assert_int_equal(ln_peak_fma(out, LN_PEAK_AVX2, 10, &err), LN_EARG);
	assert_string_equal(err.msg, "this CPU has no AVX2 and FMA");
	ln_cpu_use_portable(false);
	for (int j = 0; j < N_OUT; j++)
		assert_true(out[j] == 42.0f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lanes),
		cmocka_unit_test(test_start_values_distinct),
		cmocka_unit_test(test_matches_reference),
		cmocka_unit_test(test_values_stay_normal),
		cmocka_unit_test(test_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
