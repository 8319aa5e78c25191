/*
 * lsys.c -- lunet.sys: the few operating-system services that the pure-Lua
 * parts need and stock Lua lacks.
 *
 *     lunet.sys.mkdir(path)        -> true if created, false if it existed
 *                                     (mkdir -p: parents are created too)
 *     lunet.sys.isatty(f)          -> boolean; f = fd number, "stdin",
 *                                     "stdout", "stderr" or a Lua file
 *     lunet.sys.term_width(f)      -> columns of the terminal f, or nil
 *     lunet.sys.rng_state()        -> {s1, s2, s3, s4}: the 4 words of the
 *                                     random source, as Lua integers
 *     lunet.sys.set_rng_state(t)   restores a state rng_state returned
 *     lunet.sys.write_atomic(path, s)  writes the string s to path
 *                                     atomically (io/file.h)
 *     lunet.sys.is_interrupt(e)    -> whether the error value e is the one
 *                                     lunet_interrupt raised (a Ctrl-C)
 *
 * Nothing here keeps C memory across a Lua error: paths are copied into a
 * Lua userdata that the collector frees, and write_atomic frees its
 * scratch before it raises.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "core/rng.h"
#include "io/file.h"
#include "lnaux.h"
#include "lunet.h"

/* Creates the directory `path` (already a writable copy) if missing.
 * Returns 1 if created, 0 if a directory was already there, -1 with
 * errno set otherwise (ENOTDIR when a non-directory is in the way). */
static int make_one(const char *path)
{
	if (mkdir(path, 0777) == 0)
		return 1;
	if (errno != EEXIST)
		return -1;
	struct stat st;
	if (stat(path, &st) != 0)
		return -1;
	if (!S_ISDIR(st.st_mode)) {
		errno = ENOTDIR;
		return -1;
	}
	return 0;
}

/* lunet.sys.mkdir(path) -> true if the last component was created, false
 * if it already existed as a directory.  Missing parents are created as
 * with `mkdir -p`.  Raises "lunet.sys.mkdir: cannot create 'p': <strerror>"
 * naming the component that failed. */
static int l_mkdir(lua_State *L)
{
	size_t len;
	const char *path = lnL_checkpath(L, 1, "lunet.sys.mkdir", &len);
	if (len == 0)
		return luaL_error(L, "lunet.sys.mkdir: empty path");
	/* Writable copy owned by the collector. */
	char *p = lua_newuserdatauv(L, len + 1, 0);
	memcpy(p, path, len + 1);
	while (len > 1 && p[len - 1] == '/')  /* "a/b/" is "a/b" */
		p[--len] = '\0';
	int r = 0;
	for (char *s = p + 1; ; s++) {
		if (*s != '/' && *s != '\0')
			continue;
		char c = *s;
		*s = '\0';
		if (s[-1] != '/')  /* skip empty components of "a//b" */
			r = make_one(p);
		if (r < 0)
			return luaL_error(L, "lunet.sys.mkdir: cannot create '%s': %s", p, strerror(errno));
		*s = c;
		if (c == '\0')
			break;
	}
	lua_pushboolean(L, r == 1);
	return 1;
}

/* The file descriptor named by the argument at arg: an integer, "stdin",
 * "stdout", "stderr" or an open Lua file. */
static int check_fd(lua_State *L, int arg)
{
	if (lua_type(L, arg) == LUA_TNUMBER) {
		lua_Integer fd = luaL_checkinteger(L, arg);
		luaL_argcheck(L, fd >= 0 && fd <= INT32_MAX, arg, "file descriptor out of range");
		return (int)fd;
	}
	if (lua_type(L, arg) == LUA_TSTRING) {
		static const char *const names[] = {"stdin", "stdout", "stderr", NULL};
		return luaL_checkoption(L, arg, NULL, names);
	}
	luaL_Stream *s = luaL_testudata(L, arg, LUA_FILEHANDLE);
	if (!s)
		return luaL_typeerror(L, arg, "file descriptor, stream name or file");
	if (!s->closef)
		return luaL_error(L, "attempt to use a closed file");
	return fileno(s->f);
}

/* lunet.sys.isatty(f) -> true if f is a terminal. */
static int l_isatty(lua_State *L)
{
	lua_pushboolean(L, isatty(check_fd(L, 1)));
	return 1;
}

/* lunet.sys.term_width(f) -> the number of columns of terminal f, or nil
 * when f is not a terminal or does not know its size. */
static int l_term_width(lua_State *L)
{
	int fd = check_fd(L, 1);
	struct winsize ws;
	if (ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
		lua_pushinteger(L, ws.ws_col);
	else
		lua_pushnil(L);
	return 1;
}

/* lunet.sys.rng_state() -> {s1, s2, s3, s4}: the state of lunet's random
 * source; each 64-bit word is stored as a Lua integer (same bits). */
static int l_rng_state(lua_State *L)
{
	uint64_t s[4];
	ln_rng_get_state(ln_rng_global(), s);
	lua_createtable(L, 4, 0);
	for (int i = 0; i < 4; i++) {
		lua_pushinteger(L, (lua_Integer)s[i]);
		lua_rawseti(L, -2, i + 1);
	}
	return 1;
}

/* lunet.sys.set_rng_state(t): restores a state taken with rng_state.  An
 * all-zero state (which xoshiro never leaves) is rejected. */
static int l_set_rng_state(lua_State *L)
{
	static const char *fn = "lunet.sys.set_rng_state";
	luaL_checktype(L, 1, LUA_TTABLE);
	uint64_t s[4];
	if (lua_rawlen(L, 1) != 4)
		return luaL_error(L, "%s: expected a table of 4 integers, got %d entries", fn,
		                  (int)lua_rawlen(L, 1));
	for (int i = 0; i < 4; i++) {
		lua_rawgeti(L, 1, i + 1);
		if (!lua_isinteger(L, -1))
			return luaL_error(L, "%s: entry %d must be an integer, got %s", fn, i + 1,
			                  luaL_typename(L, -1));
		s[i] = (uint64_t)lua_tointeger(L, -1);
		lua_pop(L, 1);
	}
	if ((s[0] | s[1] | s[2] | s[3]) == 0)
		return luaL_error(L, "%s: the all-zero state is not a valid state", fn);
	ln_rng_set_state(ln_rng_global(), s);
	return 0;
}

/* lunet.sys.write_atomic(path, s): replaces the file at path by the bytes
 * of s, atomically and durably (ln_file_write_atomic: a temporary file in
 * the same directory, fsync, rename, fsync of the directory).  Either the
 * old contents or the new ones survive a crash.  Raises
 * "lunet.sys.write_atomic: <path>: <what failed>: <strerror>". */
static int l_write_atomic(lua_State *L)
{
	static const char *fn = "lunet.sys.write_atomic";
	const char *path = lnL_checkpath(L, 1, fn, NULL);
	size_t len;
	const char *s = luaL_checklstring(L, 2, &len);
	ln_error err;
	if (ln_file_write_atomic(path, s, len, &err) != LN_OK)
		return lnL_error(L, fn, &err);
	return 0;
}

/* The registry field holding the error value of the last lunet_interrupt. */
#define INTERRUPT_KEY "lunet.interrupt"

/* lunet_interrupt (lunet.h): raises "<where>interrupted!", as lua.c's
 * Ctrl-C hook does, and records that value in the registry so that
 * lunet.sys.is_interrupt can tell it from any other error. */
int lunet_interrupt(lua_State *L)
{
	luaL_where(L, 1);
	lua_pushliteral(L, "interrupted!");
	lua_concat(L, 2);
	lua_pushvalue(L, -1);
	lua_setfield(L, LUA_REGISTRYINDEX, INTERRUPT_KEY);
	return lua_error(L);
}

/* lunet_is_interrupt (lunet.h): whether the value at idx is the error
 * value that the last lunet_interrupt raised. */
int lunet_is_interrupt(lua_State *L, int idx)
{
	idx = lua_absindex(L, idx);
	lua_getfield(L, LUA_REGISTRYINDEX, INTERRUPT_KEY);
	int yes = !lua_isnil(L, -1) && lua_rawequal(L, idx, -1);
	lua_pop(L, 1);
	return yes;
}

/* lunet.sys.is_interrupt(e) -> true if e is the error value that the last
 * lunet_interrupt raised.  lunet.experiment asks it when a run ends on an
 * error, to report a Ctrl-C as one line saying how to resume. */
static int l_is_interrupt(lua_State *L)
{
	luaL_checkany(L, 1);
	lua_pushboolean(L, lunet_is_interrupt(L, 1));
	return 1;
}

void lnL_open_sys(lua_State *L)
{
	static const luaL_Reg funcs[] = {
		{"mkdir", l_mkdir},
		{"isatty", l_isatty},
		{"term_width", l_term_width},
		{"rng_state", l_rng_state},
		{"set_rng_state", l_set_rng_state},
		{"write_atomic", l_write_atomic},
		{"is_interrupt", l_is_interrupt},
		{NULL, NULL},
	};
	luaL_newlib(L, funcs);
	lua_setfield(L, -2, "sys");
}
