/*
 * lbench.c -- measuring hooks for benchmarks and allocation checks:
 *
 *   lunet.alloc_stats()                --> {allocs=, frees=, failures=,
 *                                           bytes_live=, bytes_peak=}
 *   lunet.gemm_threads([n])            --> threads the matrix products use
 *                                          (sets it first when n is given)
 *   lunet.gemm_impl([name])            --> which code makes the products:
 *                                          "auto (avx512)", "openblas"...
 *                                          (sets it first: "auto", "blas",
 *                                          "avx512" or "avx2")
 *   lunet.bench_gemm(m, n, k [, trans_a, trans_b, iters, beta, impl])
 *                                      --> seconds, GFLOP/s
 *   lunet.bench_fma(isa [, iters])     --> seconds (of processor time),
 *                                          GFLOP/s of one core's fused
 *                                          multiply-adds ("avx512" or
 *                                          "avx2")
 *
 * bench_gemm times ln_gemm -- the product the layers call -- on buffers
 * allocated once, outside the timed region, so that a script can compare
 * a training step against the time its matrix products alone would take;
 * impl "blas" times OpenBLAS's cblas_sgemm instead (through ln_gemm, so
 * products of a few hundred multiply-adds still take its plain loop).
 * Scripts time their steps with lunet.clock() (lunet.c), a monotonic wall
 * clock: os.clock() counts processor time summed over all threads.
 * bench_fma measures the ceiling both are compared with: the FMA
 * throughput of the core it runs on (core/peak.h).
 */
#define _POSIX_C_SOURCE 200112L  /* clock_gettime */

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <string.h>

#include "core/alloc.h"
#include "core/gemm.h"
#include "core/peak.h"
#include "lnaux.h"

/* Seconds since an arbitrary fixed point, from the monotonic clock. */
static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Processor time of the calling thread, in seconds: it stops while the
 * thread waits for a core, so it measures a core's speed even on a
 * machine that other processes share. */
static double thread_cpu_time(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* lunet.alloc_stats() -> a new table of the process-wide ln_malloc
 * counters (see core/alloc.h).  Creating the table allocates only in the
 * Lua heap, never through ln_malloc, so reading the counters does not
 * change them. */
static int l_alloc_stats(lua_State *L)
{
	ln_alloc_stats s;
	ln_alloc_get_stats(&s);
	lua_createtable(L, 0, 5);
	lua_pushinteger(L, (lua_Integer)s.allocs);
	lua_setfield(L, -2, "allocs");
	lua_pushinteger(L, (lua_Integer)s.frees);
	lua_setfield(L, -2, "frees");
	lua_pushinteger(L, (lua_Integer)s.failures);
	lua_setfield(L, -2, "failures");
	lua_pushinteger(L, (lua_Integer)s.bytes_live);
	lua_setfield(L, -2, "bytes_live");
	lua_pushinteger(L, (lua_Integer)s.bytes_peak);
	lua_setfield(L, -2, "bytes_peak");
	return 1;
}

/* lunet.gemm_threads([n]) -> the number of threads the matrix products
 * use (lunet's kernels and OpenBLAS alike), after setting it to n
 * (1 <= n <= 1024) when given. */
static int l_gemm_threads(lua_State *L)
{
	if (!lua_isnoneornil(L, 1)) {
		lua_Integer n = luaL_checkinteger(L, 1);
		if (n < 1 || n > 1024)
			return luaL_error(L, "lunet.gemm_threads: expected 1 <= n <= 1024, got %I", n);
		ln_gemm_set_threads((int)n);
	}
	lua_pushinteger(L, ln_gemm_threads());
	return 1;
}

/* The ln_gemm_impl named by the string at arg ("auto", "blas", "avx512",
 * "avx2"); raises "fname: ..." for any other. */
static ln_gemm_impl check_impl(lua_State *L, int arg, const char *fname)
{
	static const char *const names[] = {"auto", "blas", "avx512", "avx2", NULL};
	static const ln_gemm_impl impls[] = {LN_GEMM_AUTO, LN_GEMM_BLAS, LN_GEMM_AVX512, LN_GEMM_AVX2};
	const char *name = luaL_checkstring(L, arg);
	for (int i = 0; names[i]; i++)
		if (strcmp(name, names[i]) == 0)
			return impls[i];
	return luaL_error(L, "%s: expected impl \"auto\", \"blas\", \"avx512\" or \"avx2\", got \"%s\"",
	                  fname, name);
}

/* Sets the product code to `which`, raising "fname: ..." when this CPU
 * cannot run it. */
static void set_impl(lua_State *L, ln_gemm_impl which, const char *fname)
{
	ln_error err;
	if (ln_gemm_set_impl(which, &err) != LN_OK)
		lnL_error(L, fname, &err);
}

/* lunet.gemm_impl([name]) -> the name of the code ln_gemm uses
 * (ln_gemm_impl_name), after selecting `name` when given. */
static int l_gemm_impl(lua_State *L)
{
	if (!lua_isnoneornil(L, 1))
		set_impl(L, check_impl(L, 1, "lunet.gemm_impl"), "lunet.gemm_impl");
	lua_pushstring(L, ln_gemm_impl_name());
	return 1;
}

/* Fills x (n floats) with a fixed pattern in [-1, 1): small, varied, and
 * never denormal, so the timing depends on the shapes only. */
static void fill_pattern(float *x, int64_t n, uint32_t seed)
{
	uint32_t s = seed * 2654435761u + 1u;
	for (int64_t i = 0; i < n; i++) {
		s = s * 1664525u + 1013904223u;
		x[i] = (float)((s >> 8) & 0xffff) / 32768.0f - 1.0f;
	}
}

/* Reads size argument arg as an integer in [1, INT_MAX] (cblas takes int
 * sizes); raises "lunet.bench_gemm: ..." otherwise. */
static int64_t check_dim(lua_State *L, int arg, const char *name)
{
	lua_Integer v = luaL_checkinteger(L, arg);
	if (v < 1 || v > INT_MAX)
		return luaL_error(L, "lunet.bench_gemm: expected 1 <= %s <= %d, got %I", name, INT_MAX, v);
	return (int64_t)v;
}

/*
 * lunet.bench_gemm(m, n, k [, trans_a, trans_b, iters, beta, impl])
 *     -> seconds for `iters` calls (default 10), GFLOP/s (2*m*n*k per call)
 *
 * Times C (m,n) = op(A) op(B) + beta*C through ln_gemm, row-major, with
 * op(A) (m,k) and op(B) (k,n) stored transposed when trans_a / trans_b are
 * true, exactly as the layers call it.  One untimed call comes first.
 * impl (default: the current setting) selects the product code for the
 * measurement only; the setting is restored before returning.
 * The three buffers come from ln_malloc and are freed before returning
 * (nothing raises while they are held); an allocation failure frees what
 * was obtained and raises "lunet.bench_gemm: out of memory ...".
 */
static int l_bench_gemm(lua_State *L)
{
	int64_t m = check_dim(L, 1, "m"), n = check_dim(L, 2, "n"), k = check_dim(L, 3, "k");
	bool ta = lua_toboolean(L, 4), tb = lua_toboolean(L, 5);
	lua_Integer iters = luaL_optinteger(L, 6, 10);
	lua_Number beta = luaL_optnumber(L, 7, 0.0);
	if (iters < 1)
		return luaL_error(L, "lunet.bench_gemm: expected iters >= 1, got %I", iters);
	if (!(beta == beta) || beta > 1e30 || beta < -1e30)
		return luaL_error(L, "lunet.bench_gemm: expected a finite beta, got %f", beta);
	const ln_gemm_impl saved = ln_gemm_get_impl();
	const ln_gemm_impl which = lua_isnoneornil(L, 8) ? saved : check_impl(L, 8, "lunet.bench_gemm");
	/* each product fits in int64 since every size is <= INT_MAX */
	const int64_t na = m * k, nb = k * n, nc = m * n;
	const int64_t lim = (int64_t)(ln_alloc_limit() / sizeof(float));
	if (na > lim || nb > lim || nc > lim)
		return luaL_error(L, "lunet.bench_gemm: a matrix of m=%I, n=%I, k=%I exceeds the allocation limit",
		                  (lua_Integer)m, (lua_Integer)n, (lua_Integer)k);

	float *a = ln_malloc((size_t)na * sizeof(float));
	float *b = ln_malloc((size_t)nb * sizeof(float));
	float *c = ln_malloc((size_t)nc * sizeof(float));
	if (!a || !b || !c) {
		ln_free(a);
		ln_free(b);
		ln_free(c);
		return luaL_error(L, "lunet.bench_gemm: out of memory for m=%I, n=%I, k=%I",
		                  (lua_Integer)m, (lua_Integer)n, (lua_Integer)k);
	}
	/* nothing raises from here until the buffers are freed */
	ln_error err;
	if (ln_gemm_set_impl(which, &err) != LN_OK) {
		ln_free(a);
		ln_free(b);
		ln_free(c);
		return lnL_error(L, "lunet.bench_gemm", &err);
	}
	fill_pattern(a, na, 1);
	fill_pattern(b, nb, 2);
	fill_pattern(c, nc, 3);
	/* leading dimensions of the matrices as stored (row strides) */
	const int64_t lda = ta ? m : k, ldb = tb ? k : n, ldc = n;
	/* beta = 1 is how the layers accumulate weight gradients; C then
	 * drifts by a sum of bounded terms per call, far from overflow */
	const float fb = (float)beta;

	ln_gemm(ta, tb, m, n, k, 1.0f, a, lda, b, ldb, fb, c, ldc);
	double t0 = now();
	for (lua_Integer i = 0; i < iters; i++)
		ln_gemm(ta, tb, m, n, k, 1.0f, a, lda, b, ldb, fb, c, ldc);
	double dt = now() - t0;
	ln_gemm_set_impl(saved, NULL);  /* was accepted before: cannot fail */

	ln_free(a);
	ln_free(b);
	ln_free(c);
	lua_pushnumber(L, dt);
	lua_pushnumber(L, dt > 0 ? 2.0 * (double)m * (double)n * (double)k * (double)iters / dt * 1e-9 : 0.0);
	return 2;
}

/*
 * lunet.bench_fma(isa [, iters]) -> seconds for `iters` rounds (default
 * 10^7) of ln_peak_fma's chains, GFLOP/s (2 * LN_PEAK_CHAINS * lanes per
 * round: 384 for "avx512", 192 for "avx2")
 *
 * Runs on the calling thread only, and the seconds are that thread's
 * processor time, not wall time: the figure is one core's peak, which
 * time slices taken by other processes would only hide.  A short untimed
 * call comes first.  Raises "lunet.bench_fma: ..." for an
 * unknown isa, iters < 1, or an instruction set this CPU cannot run.
 */
static int l_bench_fma(lua_State *L)
{
	static const char *const names[] = {"avx512", "avx2", NULL};
	static const ln_peak_isa isas[] = {LN_PEAK_AVX512, LN_PEAK_AVX2};
	const char *name = luaL_checkstring(L, 1);
	int which = -1;
	for (int i = 0; names[i]; i++)
		if (strcmp(name, names[i]) == 0)
			which = i;
	if (which < 0)
		return luaL_error(L, "lunet.bench_fma: expected isa \"avx512\" or \"avx2\", got \"%s\"", name);
	lua_Integer iters = luaL_optinteger(L, 2, 10000000);
	if (iters < 1)
		return luaL_error(L, "lunet.bench_fma: expected iters >= 1, got %I", iters);

	float out[LN_PEAK_CHAINS * LN_PEAK_MAX_LANES];
	ln_error err;
	if (ln_peak_fma(out, isas[which], 1000, &err) != LN_OK)
		return lnL_error(L, "lunet.bench_fma", &err);
	double t0 = thread_cpu_time();
	ln_peak_fma(out, isas[which], (int64_t)iters, NULL);  /* accepted above: cannot fail */
	double dt = thread_cpu_time() - t0;
	const double flops = 2.0 * LN_PEAK_CHAINS * ln_peak_lanes(isas[which]) * (double)iters;
	lua_pushnumber(L, dt);
	lua_pushnumber(L, dt > 0 ? flops / dt * 1e-9 : 0.0);
	return 2;
}

/* Registers the functions above into the table on top of the stack (the
 * lunet table). */
void lnL_open_bench(lua_State *L)
{
	static const luaL_Reg funcs[] = {
		{"alloc_stats", l_alloc_stats},
		{"gemm_threads", l_gemm_threads},
		{"gemm_impl", l_gemm_impl},
		{"bench_gemm", l_bench_gemm},
		{"bench_fma", l_bench_fma},
		{NULL, NULL},
	};
	luaL_setfuncs(L, funcs, 0);
}
