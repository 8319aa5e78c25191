/*
 * fuzz.c -- the helpers of fuzz.h.
 */
#define _GNU_SOURCE  /* memfd_create */

#include "fuzz.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>

#include "core/alloc.h"
#include "lunet.h"

#define FUZZ_ALLOC_LIMIT ((size_t)64 << 20)

void fuzz_fail(const char *file, int line, const char *cond, const char *fmt, ...)
{
	fprintf(stderr, "%s:%d: fuzz check failed: %s\n    ", file, line, cond);
	va_list ap;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	abort();
}

void fuzz_init(void)
{
	static int done;
	if (done)
		return;
	done = 1;
	ln_alloc_set_limit(FUZZ_ALLOC_LIMIT);
}

/* ---- a file holding the input ------------------------------------------------ */

static int file_fd = -1;
static char file_path[64];

const char *fuzz_file(const uint8_t *data, size_t size)
{
	if (file_fd < 0) {
		file_fd = memfd_create("lunet-fuzz", MFD_CLOEXEC);
		if (file_fd >= 0) {
			snprintf(file_path, sizeof file_path, "/proc/self/fd/%d", file_fd);
			if (access(file_path, R_OK) != 0) {  /* no /proc */
				close(file_fd);
				file_fd = -1;
			}
		}
		if (file_fd < 0) {
			const char *dir = getenv("TMPDIR");
			snprintf(file_path, sizeof file_path, "%s/lunet-fuzz-XXXXXX", dir ? dir : "/tmp");
			file_fd = mkstemp(file_path);
			FUZZ_CHECK(file_fd >= 0, "cannot create a temporary file: %s", strerror(errno));
		}
	}
	FUZZ_CHECK(ftruncate(file_fd, 0) == 0, "ftruncate: %s", strerror(errno));
	size_t done = 0;
	while (done < size) {
		ssize_t k = pwrite(file_fd, data + done, size - done, (off_t)done);
		FUZZ_CHECK(k > 0 || errno == EINTR, "pwrite: %s", strerror(errno));
		if (k > 0)
			done += (size_t)k;
	}
	return file_path;
}

/* ---- coverage of Lua code -------------------------------------------------------- */

#define LUA_COUNTERS (1 << 16)
/* libFuzzer reads the section __libfuzzer_extra_counters as more
 * coverage counters, next to those of the instrumented C code. */
__attribute__((section("__libfuzzer_extra_counters"), used))
static uint8_t lua_counters[LUA_COUNTERS];
static uintptr_t last_location;

static void line_hook(lua_State *L, lua_Debug *ar)
{
	if (!lua_getinfo(L, "S", ar))
		return;
	/* the chunk's source string lives as long as its functions */
	uintptr_t here = (uintptr_t)ar->source * 31u + (uintptr_t)ar->currentline * 2654435761u;
	uintptr_t edge = (here ^ (last_location >> 1)) & (LUA_COUNTERS - 1);
	last_location = here;
	if (lua_counters[edge] < 255)
		lua_counters[edge]++;
}

void fuzz_lua_coverage(lua_State *L)
{
	lua_sethook(L, line_hook, LUA_MASKLINE, 0);
}

/* ---- a Lua state with lunet ------------------------------------------------------ */

static lua_State *fuzz_L;
static uint64_t live_after_open;

uint64_t fuzz_live_bytes(void)
{
	ln_alloc_stats s;
	ln_alloc_get_stats(&s);
	return s.bytes_live;
}

void fuzz_check_live(uint64_t before, const char *what)
{
	uint64_t now = fuzz_live_bytes();
	FUZZ_CHECK(now == before, "%s: %llu bytes of lunet's allocator live before the input, "
	           "%llu after: a leak", what, (unsigned long long)before, (unsigned long long)now);
}

lua_State *fuzz_lua(void)
{
	if (fuzz_L)
		return fuzz_L;
	fuzz_init();
	lua_State *L = luaL_newstate();
	FUZZ_CHECK(L != NULL, "cannot create a Lua state");
	luaL_openlibs(L);
	luaL_requiref(L, "lunet", luaopen_lunet, 1);
	lua_getfield(L, -1, "warnings");
	lua_pushboolean(L, 0);
	lua_call(L, 1, 0);
	lua_pop(L, 1);
	lua_gc(L, LUA_GCCOLLECT, 0);
	fuzz_lua_coverage(L);
	live_after_open = fuzz_live_bytes();
	fuzz_L = L;
	return L;
}

void fuzz_lua_done(lua_State *L)
{
	FUZZ_CHECK(lua_gettop(L) == 0, "%d values left on the Lua stack", lua_gettop(L));
	lua_gc(L, LUA_GCCOLLECT, 0);
	fuzz_check_live(live_after_open, "after a full collection");
}
