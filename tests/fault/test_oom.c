/*
 * test_oom.c -- allocation failure through the Lua API (CTest label oom).
 *
 *     test_oom SCRIPT engine [STRIDE]   fail lunet's k-th allocation (ln_malloc)
 *     test_oom SCRIPT lua [STRIDE]      fail Lua's allocations from the k-th on
 *     test_oom SCRIPT limit             lunet.memory_limit below what each step needs
 *
 * SCRIPT (oom_script.lua) returns a list of steps and a function giving
 * their results.  A reference run without failures gives the results to
 * expect.  Then, for k = 1, 1 + STRIDE, ... until a run meets no failure:
 *
 *   - a fresh copy of the steps runs with the k-th allocation failed (in
 *     lua mode: every allocation of the Lua state from the k-th on, until
 *     the step that met them ends, since Lua retries an allocation once
 *     after a full collection);
 *   - a step that fails must fail with a Lua error that says "out of
 *     memory" (lunet's) or "not enough memory" (Lua's own), and nothing
 *     else: no crash, no other error;
 *   - then the failures stop, garbage is collected, and the same step runs
 *     again: it must succeed, as must every later step, and (engine mode)
 *     the results must be bit for bit those of the reference run: an
 *     operation of lunet that changed state before failing would show
 *     here;
 *   - after a full collection, lunet's allocator must hold exactly the
 *     bytes it held before the run: a failure path that leaks shows here
 *     (and LeakSanitizer checks the rest at exit in the sanitizer build).
 *
 * limit mode runs every step under lunet.memory_limit set just below what
 * the step allocates (measured in the reference run), expects the same
 * clean "out of memory" error, then lifts the limit and retries.
 *
 * It prints the number of allocation points tried and exits non-zero at
 * the first broken rule, saying which k and which step.
 */
#define _XOPEN_SOURCE 700  /* nftw, mkdtemp */

#include <ftw.h>
#include <sys/stat.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>

#include "core/alloc.h"
#include "lunet.h"

/* ---- Lua's allocator, with failures on demand --------------------------------- */

typedef struct lua_faults {
	long count;      /* allocations and growths so far while armed */
	long fail_from;  /* 0: none; else every request from this one fails */
	int armed;
	long failed;     /* requests refused */
} lua_faults;

static void *fault_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
	lua_faults *f = ud;
	if (nsize == 0) {
		free(ptr);
		return NULL;
	}
	if (f->armed && (ptr == NULL || nsize > osize)) {
		f->count++;
		if (f->fail_from > 0 && f->count >= f->fail_from) {
			f->failed++;
			return NULL;
		}
	}
	return realloc(ptr, nsize);
}

/* ---- helpers ------------------------------------------------------------------------ */

static const char *script_path;
static char dir[256];

static void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "test_oom: ");
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static uint64_t live_bytes(void)
{
	ln_alloc_stats s;
	ln_alloc_get_stats(&s);
	return s.bytes_live;
}

static uint64_t failures(void)
{
	ln_alloc_stats s;
	ln_alloc_get_stats(&s);
	return s.failures;
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	return remove(path);
}

/* Empties dir (the files a run wrote). */
static void clear_dir(void)
{
	nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
	if (mkdir(dir, 0700) != 0)
		die("cannot recreate %s", dir);
}

/* Serialises the value on top of the stack: numbers in %a (exact), nested
 * tables in order.  Pops it, pushes the string. */
static const char SERIALISE[] =
	"local function ser(v, out)\n"
	"  if type(v) == 'table' then\n"
	"    out[#out + 1] = '{'\n"
	"    for i = 1, #v do ser(v[i], out) out[#out + 1] = ',' end\n"
	"    out[#out + 1] = '}'\n"
	"  elseif math.type(v) == 'float' then out[#out + 1] = string.format('%a', v)\n"
	"  else out[#out + 1] = tostring(v) end\n"
	"end\n"
	"local out = {}\n"
	"ser(..., out)\n"
	"return table.concat(out)\n";

/* Runs the script chunk: pushes the steps table and the results function. */
static void load_script(lua_State *L)
{
	if (luaL_loadfile(L, script_path) != LUA_OK)
		die("%s", lua_tostring(L, -1));
	lua_getglobal(L, "lunet");
	lua_pushstring(L, dir);
	if (lua_pcall(L, 2, 2, 0) != LUA_OK)
		die("the script does not load: %s", lua_tostring(L, -1));
	if (!lua_istable(L, -2) || !lua_isfunction(L, -1))
		die("the script must return a table of steps and a function");
}

/* Calls the results function at idx and serialises what it returns. */
static char *results(lua_State *L, int idx)
{
	if (luaL_loadbufferx(L, SERIALISE, sizeof SERIALISE - 1, "=serialise", "t") != LUA_OK)
		die("%s", lua_tostring(L, -1));
	lua_pushvalue(L, idx);
	if (lua_pcall(L, 0, 1, 0) != LUA_OK)
		die("results: %s", lua_tostring(L, -1));
	if (lua_pcall(L, 1, 1, 0) != LUA_OK)
		die("serialise: %s", lua_tostring(L, -1));
	char *s = strdup(lua_tostring(L, -1));
	lua_pop(L, 1);
	return s;
}

/* Runs step i of the steps table at idx under pcall.  Returns NULL on
 * success, else the error message (valid until the next call). */
static const char *run_step(lua_State *L, int steps, lua_Integer i)
{
	static char msg[2048];
	lua_rawgeti(L, steps, i);
	if (lua_pcall(L, 0, 0, 0) == LUA_OK)
		return NULL;
	/* an error object prints through its __tostring (lunet.experiment's do) */
	const char *m = luaL_tolstring(L, -1, NULL);
	snprintf(msg, sizeof msg, "%s", m);
	lua_pop(L, 2);
	return msg;
}

/* Dies unless got equals want, showing where they part. */
static void same_results(const char *got, const char *want, const char *what)
{
	size_t i = 0;
	while (got[i] && got[i] == want[i])
		i++;
	if (!got[i] && !want[i])
		return;
	size_t from = i > 120 ? i - 120 : 0;
	die("%s: the results differ from the run without failures, at character %zu:\n"
	    "  got  ...%.240s\n  want ...%.240s", what, i, got + from, want + from);
}

static int says_out_of_memory(const char *msg)
{
	return strstr(msg, "out of memory") != NULL || strstr(msg, "not enough memory") != NULL;
}

static lua_State *new_state(lua_faults *f)
{
	lua_State *L = lua_newstate(fault_alloc, f);
	if (!L)
		die("cannot create a Lua state");
	luaL_openlibs(L);
	luaL_requiref(L, "lunet", luaopen_lunet, 1);
	lua_pop(L, 1);
	return L;
}

/* ---- the modes ------------------------------------------------------------------------ */

typedef enum mode { ENGINE, LUA, LIMIT } mode;

/* One run of the script with failures starting at allocation k.  Returns
 * 1 when a failure was met (injected), 0 when the run never reached it. */
static int run_with_failure(lua_State *L, lua_faults *f, mode m, long k, const char *want,
                            uint64_t live0)
{
	clear_dir();
	load_script(L);
	int steps = lua_gettop(L) - 1, res = lua_gettop(L);
	lua_Integer n = (lua_Integer)lua_rawlen(L, steps);
	uint64_t fail0 = failures();
	int met = 0;
	if (m == ENGINE) {
		ln_alloc_fail_nth(k);
	} else {
		f->count = 0;
		f->failed = 0;
		f->fail_from = k;
		f->armed = 1;
	}
	for (lua_Integer i = 1; i <= n; i++) {
		const char *err = run_step(L, steps, i);
		int injected = m == ENGINE ? failures() > fail0 : f->failed > 0;
		if (err) {
			if (!injected)
				die("k = %ld, step %lld: an error without an allocation failure: %s", k,
				    (long long)i, err);
			if (!says_out_of_memory(err))
				die("k = %ld, step %lld: the error does not say out of memory: %s", k,
				    (long long)i, err);
		}
		if (injected && !met) {
			met = 1;
			ln_alloc_fail_nth(0);
			f->armed = 0;
			f->fail_from = 0;
		}
		if (err && getenv("LUNET_OOM_VERBOSE"))
			fprintf(stderr, "k = %ld, step %lld: %s\n", k, (long long)i, err);
		if (err) {
			lua_gc(L, LUA_GCCOLLECT, 0);
			if ((err = run_step(L, steps, i)) != NULL)
				die("k = %ld, step %lld: the retry after running out of memory fails: %s", k,
				    (long long)i, err);
		}
	}
	ln_alloc_fail_nth(0);
	f->armed = 0;
	f->fail_from = 0;
	/* In lua mode the results may differ: Lua allocates between any two
	 * statements of a step, so a step can fail after part of its effect
	 * (a training step after opt:step()), and its retry repeats that part.
	 * lunet's own operations allocate before they change anything, so in
	 * engine mode a failed step leaves no trace. */
	char *got = results(L, res);
	if (m == ENGINE) {
		char what[64];
		snprintf(what, sizeof what, "k = %ld", k);
		same_results(got, want, what);
	}
	free(got);
	lua_settop(L, 0);
	lua_gc(L, LUA_GCCOLLECT, 0);
	if (live_bytes() != live0)
		die("k = %ld: %llu bytes of lunet's allocator live after the run, %llu before: a leak",
		    k, (unsigned long long)live_bytes(), (unsigned long long)live0);
	return met;
}

/* limit mode: each step under a cap just below what it needs. */
static long run_limits(lua_State *L, const char *want, uint64_t live0)
{
	clear_dir();
	load_script(L);
	int steps = lua_gettop(L) - 1, res = lua_gettop(L);
	lua_Integer n = (lua_Integer)lua_rawlen(L, steps);
	long capped = 0;
	for (lua_Integer i = 1; i <= n; i++) {
		/* what the step needs on top of what is live: measured on a copy run
		 * of the script state so far would change it; instead, cap at the
		 * bytes live now plus a little, which any step allocating more fails */
		lua_gc(L, LUA_GCCOLLECT, 0);
		ln_alloc_stats before;
		ln_alloc_get_stats(&before);
		ln_alloc_set_live_limit(before.bytes_live + 64);
		const char *err = run_step(L, steps, i);
		ln_alloc_set_live_limit(0);
		if (err) {
			if (!says_out_of_memory(err))
				die("limit, step %lld: the error does not say out of memory: %s", (long long)i,
				    err);
			capped++;
			lua_gc(L, LUA_GCCOLLECT, 0);
			if ((err = run_step(L, steps, i)) != NULL)
				die("limit, step %lld: the retry with the limit lifted fails: %s", (long long)i,
				    err);
		}
	}
	char *got = results(L, res);
	same_results(got, want, "limit");
	free(got);
	lua_settop(L, 0);
	lua_gc(L, LUA_GCCOLLECT, 0);
	if (live_bytes() != live0)
		die("limit: %llu bytes live after the run, %llu before: a leak",
		    (unsigned long long)live_bytes(), (unsigned long long)live0);
	return capped;
}

int main(int argc, char **argv)
{
	if (argc < 3)
		die("usage: test_oom SCRIPT engine|lua|limit [STRIDE]");
	script_path = argv[1];
	mode m = strcmp(argv[2], "engine") == 0 ? ENGINE : strcmp(argv[2], "lua") == 0 ? LUA
	         : strcmp(argv[2], "limit") == 0 ? LIMIT : (die("unknown mode %s", argv[2]), ENGINE);
	long stride = argc > 3 ? atol(argv[3]) : 1;
	if (stride < 1)
		die("STRIDE must be >= 1");
	/* in memory when possible: the script saves files, each with an fsync */
	const char *tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
	snprintf(dir, sizeof dir, "%s/lunet-oom-XXXXXX", tmp ? tmp : "/tmp");
	if (!mkdtemp(dir))
		die("cannot create a temporary directory");

	lua_faults f = {0};
	lua_State *L = new_state(&f);
	lua_getglobal(L, "lunet");
	lua_getfield(L, -1, "warnings");
	lua_pushboolean(L, 0);
	lua_call(L, 1, 0);
	lua_pop(L, 1);

	/* the reference run */
	clear_dir();
	load_script(L);
	int steps = lua_gettop(L) - 1, res = lua_gettop(L);
	for (lua_Integer i = 1; i <= (lua_Integer)lua_rawlen(L, steps); i++) {
		const char *err = run_step(L, steps, i);
		if (err)
			die("step %lld fails without any failure injected: %s", (long long)i, err);
	}
	char *want = results(L, res);
	lua_settop(L, 0);
	lua_gc(L, LUA_GCCOLLECT, 0);
	uint64_t live0 = live_bytes();

	long tried = 0;
	if (m == LIMIT) {
		tried = run_limits(L, want, live0);
		printf("test_oom: limit: %ld steps ran into lunet.memory_limit, each failed cleanly and "
		       "succeeded once the limit was lifted\n", tried);
	} else {
		long k;
		for (k = 1; run_with_failure(L, &f, m, k, want, live0); k += stride)
			tried++;
		printf("test_oom: %s: %ld allocation points failed (k = 1..%ld, every %ld), each ended in "
		       "an out-of-memory error or success, every retry succeeded%s, no leak\n",
		       m == ENGINE ? "engine" : "lua", tried, k - 1, stride,
		       m == ENGINE ? " and reproduced the results" : "");
	}
	free(want);
	lua_close(L);
	clear_dir();
	rmdir(dir);
	if (live_bytes() != 0)
		die("%llu bytes of lunet's allocator live after lua_close", (unsigned long long)live_bytes());
	return 0;
}
