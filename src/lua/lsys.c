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
 * Directories, processes and locks, for lunet.experiment, `lunet sweep`
 * and `lunet runs`:
 *
 *     lunet.sys.list_dir(path)     -> the names in a directory (no "." or
 *                                     ".."), in no particular order; or nil
 *                                     and "path: <strerror>"
 *     lunet.sys.file_type(path)    -> "file", "directory", "other", or nil
 *     lunet.sys.spawn(argv[, opts]) -> pid: starts argv[1] (searched on
 *                                     PATH) with arguments argv[2..];
 *                                     opts = {stdin=, stdout=, stderr=
 *                                     (paths; stdin defaults to /dev/null,
 *                                     the others are inherited), append=
 *                                     (open stdout/stderr for appending),
 *                                     env = {NAME = "value" | false},
 *                                     group = true (its own process group)}
 *     lunet.sys.wait([pid[, nohang]]) -> pid, "exit"|"signal", code; or nil
 *                                     and "running" (nohang), "interrupted"
 *                                     (a signal arrived), "no child"
 *     lunet.sys.kill(pid, sig)     -> true, or false and <strerror>; sig is
 *                                     "INT", "TERM", "KILL", ... or a number;
 *                                     a negative pid signals a process group
 *     lunet.sys.children()         -> pids that spawn started and wait has
 *                                     not yet collected
 *     lunet.sys.sleep(s)           -> true, or false if a signal cut it short
 *     lunet.sys.getpid(), hostname(), ncpu(), exe_path()
 *     lunet.sys.lock(path[, {wait=, text=}]) -> a lock, or false and the
 *                                     holder's text when held elsewhere
 *                                     (wait = false, the default)
 *     lunet.sys.locked(path)       -> false, or true and the holder's text
 *                                     (nil and a message: no locks there)
 *     lock:unlock([remove])        releases it (and first deletes the file)
 *
 * Locks are Linux open-file-description locks (fcntl F_OFD_SETLK), so they
 * go with the process: whatever way it ends, the kernel releases them, and
 * `lunet runs` can tell a run that is running from one that died.  They
 * also conflict within one process (two lunet.sys.lock on one file), and
 * closing another descriptor of the file does not drop them.
 *
 * Nothing here keeps C memory across a Lua error: paths are copied into a
 * Lua userdata that the collector frees, write_atomic frees its scratch
 * before it raises, and file descriptors, directory streams and spawn
 * attributes are closed before any error is raised (or owned by a
 * userdata whose __gc closes them).
 */
#define _GNU_SOURCE  /* F_OFD_SETLK, environ */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
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

/* ---- directories --------------------------------------------------------------- */

#define DIR_MT "lunet.sys.Dir"

/* __gc of the box holding an open directory stream (list_dir), so that an
 * error while the names are pushed does not leak it. */
static int dir_gc(lua_State *L)
{
	DIR **box = luaL_checkudata(L, 1, DIR_MT);
	if (*box) {
		closedir(*box);
		*box = NULL;
	}
	return 0;
}

/* lunet.sys.list_dir(path) -> {names...} in the order the system gives
 * them, without "." and ".."; or nil and "path: <strerror>". */
static int l_list_dir(lua_State *L)
{
	const char *path = lnL_checkpath(L, 1, "lunet.sys.list_dir", NULL);
	DIR **box = lua_newuserdatauv(L, sizeof *box, 0);
	*box = NULL;
	if (luaL_newmetatable(L, DIR_MT)) {
		lua_pushcfunction(L, dir_gc);
		lua_setfield(L, -2, "__gc");
	}
	lua_setmetatable(L, -2);
	*box = opendir(path);
	if (*box == NULL) {
		lua_pushnil(L);
		lua_pushfstring(L, "%s: %s", path, strerror(errno));
		return 2;
	}
	lua_newtable(L);
	lua_Integer n = 0;
	struct dirent *e;
	errno = 0;
	while ((e = readdir(*box)) != NULL) {
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
			lua_pushstring(L, e->d_name);
			lua_rawseti(L, -2, ++n);
		}
		errno = 0;
	}
	int err = errno;
	closedir(*box);
	*box = NULL;
	if (err != 0) {
		lua_pushnil(L);
		lua_pushfstring(L, "%s: %s", path, strerror(err));
		return 2;
	}
	return 1;
}

/* lunet.sys.file_type(path) -> "file", "directory" or "other" (symbolic
 * links followed), or nil and "path: <strerror>" when there is nothing
 * there or it cannot be reached. */
static int l_file_type(lua_State *L)
{
	const char *path = lnL_checkpath(L, 1, "lunet.sys.file_type", NULL);
	struct stat st;
	if (stat(path, &st) != 0) {
		lua_pushnil(L);
		lua_pushfstring(L, "%s: %s", path, strerror(errno));
		return 2;
	}
	lua_pushstring(L, S_ISREG(st.st_mode) ? "file" : S_ISDIR(st.st_mode) ? "directory" : "other");
	return 1;
}

/* ---- processes ------------------------------------------------------------------- */

extern char **environ;

/* Registry field: the table {[pid] = true} of the children spawn started
 * and wait has not collected, so that a caller stopped between spawn and
 * its next instruction (a Ctrl-C lands anywhere) can still find them. */
#define CHILDREN_KEY "lunet.sys.children"

static void push_children(lua_State *L)
{
	if (lua_getfield(L, LUA_REGISTRYINDEX, CHILDREN_KEY) != LUA_TTABLE) {
		lua_pop(L, 1);
		lua_newtable(L);
		lua_pushvalue(L, -1);
		lua_setfield(L, LUA_REGISTRYINDEX, CHILDREN_KEY);
	}
}

static void set_child(lua_State *L, pid_t pid, int alive)
{
	push_children(L);
	if (alive)
		lua_pushboolean(L, 1);
	else
		lua_pushnil(L);
	lua_rawseti(L, -2, (lua_Integer)pid);
	lua_pop(L, 1);
}

/* The signals a spawned child starts with at their default action (an
 * ignored SIGINT would otherwise be inherited, and the child could not be
 * stopped cleanly). */
static const int child_default_signals[] = {SIGINT, SIGTERM, SIGQUIT, SIGHUP, SIGPIPE,
                                            SIGUSR1, SIGUSR2, SIGALRM, SIGCHLD};

/* Opens path for the standard stream fd of a child (close-on-exec in the
 * parent: only the child's dup2 copy survives the exec).  Returns the
 * descriptor, or -1 with errno set. */
static int open_stream(const char *path, int fd, int append)
{
	if (fd == 0)
		return open(path, O_RDONLY | O_CLOEXEC);
	return open(path, O_WRONLY | O_CREAT | O_CLOEXEC | (append ? O_APPEND : O_TRUNC), 0666);
}

/* Reads the string option key of the options table at 2 (nil if absent);
 * a NUL inside is an error. */
static const char *opt_path(lua_State *L, const char *key, const char *fn)
{
	if (lua_type(L, 2) != LUA_TTABLE)
		return NULL;
	lua_getfield(L, 2, key);
	const char *s = NULL;
	if (!lua_isnil(L, -1)) {
		size_t len;
		s = lua_tolstring(L, -1, &len);
		if (strlen(s) != len)
			luaL_error(L, "%s: option '%s' contains a NUL byte", fn, key);
	}
	lua_pop(L, 1);  /* the string stays alive in the options table */
	return s;
}

/* Builds the environment of a child at the top of the stack: environ with
 * the entries of the table env (NAME = "value" sets, NAME = false removes)
 * applied.  The array and the "NAME=value" strings are owned by Lua values
 * left on the stack (the array, then a table anchoring the strings).
 * Returns the NULL-terminated array. */
static char **child_environment(lua_State *L, int env, const char *fn)
{
	size_t ne = 0, no = 0;
	while (environ[ne])
		ne++;
	lua_pushnil(L);
	while (lua_next(L, env)) {
		size_t klen;
		if (lua_type(L, -2) != LUA_TSTRING)
			luaL_error(L, "%s: env keys must be strings, got %s", fn, luaL_typename(L, -2));
		const char *k = lua_tolstring(L, -2, &klen);
		if (klen == 0 || strchr(k, '=') || strlen(k) != klen)
			luaL_error(L, "%s: bad environment variable name '%s'", fn, k);
		if (lua_type(L, -1) == LUA_TSTRING) {
			size_t vlen;
			const char *v = lua_tolstring(L, -1, &vlen);
			if (strlen(v) != vlen)
				luaL_error(L, "%s: env.%s contains a NUL byte", fn, k);
		} else if (!(lua_type(L, -1) == LUA_TBOOLEAN && !lua_toboolean(L, -1))) {
			luaL_error(L, "%s: env.%s must be a string or false, got %s", fn, k,
			           luaL_typename(L, -1));
		}
		no++;
		lua_pop(L, 1);
	}
	char **envp = lua_newuserdatauv(L, (ne + no + 1) * sizeof *envp, 0);
	lua_newtable(L);  /* anchors the "NAME=value" strings */
	int anchor = lua_gettop(L);
	size_t n = 0;
	for (size_t i = 0; i < ne; i++) {
		const char *eq = strchr(environ[i], '=');
		size_t klen = eq ? (size_t)(eq - environ[i]) : strlen(environ[i]);
		lua_pushlstring(L, environ[i], klen);
		int overridden = lua_rawget(L, env) != LUA_TNIL;
		lua_pop(L, 1);
		if (!overridden)
			envp[n++] = environ[i];
	}
	lua_pushnil(L);
	while (lua_next(L, env)) {
		if (lua_type(L, -1) == LUA_TSTRING) {
			const char *s = lua_pushfstring(L, "%s=%s", lua_tostring(L, -2), lua_tostring(L, -1));
			lua_rawseti(L, anchor, (lua_Integer)n + 1);
			envp[n++] = (char *)s;
		}
		lua_pop(L, 1);
	}
	envp[n] = NULL;
	return envp;
}

/* lunet.sys.spawn(argv[, opts]) -> pid.  Starts the program argv[1]
 * (looked up on PATH when it has no '/') with the arguments argv[2..],
 * through posix_spawnp: nothing of the Lua state runs in the child.  The
 * child starts with an empty signal mask and the usual signals at their
 * default action; with group = true it leads a process group of its own,
 * so that a Ctrl-C at the terminal reaches only this process, which then
 * decides what to tell its children.  stdin defaults to /dev/null; stdout
 * and stderr are inherited unless paths are given (created, truncated, or
 * appended to with append = true; the same path for both makes one file).
 * Every descriptor opened here is closed again in this process before it
 * returns or raises.  Raises "lunet.sys.spawn: cannot open 'p' for stdout:
 * <strerror>" or "lunet.sys.spawn: cannot start 'prog': <strerror>". */
static int l_spawn(lua_State *L)
{
	static const char *fn = "lunet.sys.spawn";
	static const lnL_option known[] = {
		{"stdin", LUA_TSTRING}, {"stdout", LUA_TSTRING}, {"stderr", LUA_TSTRING},
		{"append", LUA_TBOOLEAN}, {"env", LUA_TTABLE}, {"group", LUA_TBOOLEAN}, {NULL, 0},
	};
	luaL_checktype(L, 1, LUA_TTABLE);
	lnL_checkoptions(L, 2, fn, known);
	lua_settop(L, 2);
	lua_Integer n = luaL_len(L, 1);
	if (n < 1)
		return luaL_error(L, "%s: expected a list of strings (the program, then its arguments), "
		                  "got an empty table", fn);
	if (n > 100000)
		return luaL_error(L, "%s: too many arguments (%d)", fn, (int)n);
	char **argv = lua_newuserdatauv(L, ((size_t)n + 1) * sizeof *argv, 0);
	for (lua_Integer i = 1; i <= n; i++) {
		lua_rawgeti(L, 1, i);
		size_t len;
		if (lua_type(L, -1) != LUA_TSTRING)
			return luaL_error(L, "%s: argv[%d] must be a string, got %s", fn, (int)i,
			                  luaL_typename(L, -1));
		argv[i - 1] = (char *)lua_tolstring(L, -1, &len);
		if (strlen(argv[i - 1]) != len)
			return luaL_error(L, "%s: argv[%d] contains a NUL byte", fn, (int)i);
		lua_pop(L, 1);  /* still referenced by the table */
	}
	argv[n] = NULL;
	char **envp = environ;
	if (lua_type(L, 2) == LUA_TTABLE && lua_getfield(L, 2, "env") == LUA_TTABLE)
		envp = child_environment(L, lua_gettop(L), fn);
	const char *paths[3] = {opt_path(L, "stdin", fn), opt_path(L, "stdout", fn),
	                        opt_path(L, "stderr", fn)};
	if (paths[0] == NULL)
		paths[0] = "/dev/null";
	int append = lua_type(L, 2) == LUA_TTABLE && lnL_optboolean(L, 2, "append", 0);
	int group = lua_type(L, 2) == LUA_TTABLE && lnL_optboolean(L, 2, "group", 0);
	int same = paths[1] && paths[2] && strcmp(paths[1], paths[2]) == 0;

	/* From here on, descriptors are open: no Lua error until they are closed. */
	static const char *const names[3] = {"stdin", "stdout", "stderr"};
	int fds[3] = {-1, -1, -1};
	for (int k = 0; k < 3; k++) {
		if (paths[k] == NULL || (k == 2 && same))
			continue;
		fds[k] = open_stream(paths[k], k, append);
		if (fds[k] < 0) {
			int e = errno;
			for (int j = 0; j < k; j++)
				if (fds[j] >= 0)
					close(fds[j]);
			return luaL_error(L, "%s: cannot open '%s' for %s: %s", fn, paths[k], names[k],
			                  strerror(e));
		}
	}
	if (same)
		fds[2] = fds[1];
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	int err = posix_spawn_file_actions_init(&fa);
	if (err == 0) {
		err = posix_spawnattr_init(&at);
		if (err != 0)
			posix_spawn_file_actions_destroy(&fa);
	}
	pid_t pid = -1;
	if (err == 0) {
		for (int k = 0; k < 3 && err == 0; k++)
			if (fds[k] >= 0)
				err = posix_spawn_file_actions_adddup2(&fa, fds[k], k);
		sigset_t mask, defaults;
		sigemptyset(&mask);
		sigemptyset(&defaults);
		for (size_t k = 0; k < sizeof child_default_signals / sizeof child_default_signals[0]; k++)
			sigaddset(&defaults, child_default_signals[k]);
		short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
		if (group)
			flags |= POSIX_SPAWN_SETPGROUP;
		if (err == 0)
			err = posix_spawnattr_setflags(&at, flags);
		if (err == 0)
			err = posix_spawnattr_setsigmask(&at, &mask);
		if (err == 0)
			err = posix_spawnattr_setsigdefault(&at, &defaults);
		if (err == 0 && group)
			err = posix_spawnattr_setpgroup(&at, 0);
		if (err == 0)
			err = posix_spawnp(&pid, argv[0], &fa, &at, argv, envp);
		posix_spawn_file_actions_destroy(&fa);
		posix_spawnattr_destroy(&at);
	}
	for (int k = 0; k < 3; k++)
		if (fds[k] >= 0 && !(k == 2 && same))
			close(fds[k]);
	if (err != 0)
		return luaL_error(L, "%s: cannot start '%s': %s", fn, argv[0], strerror(err));
	set_child(L, pid, 1);
	lua_pushinteger(L, pid);
	return 1;
}

/* lunet.sys.wait([pid[, nohang]]) -> pid, "exit", status | pid, "signal",
 * signal number; or nil and "running" (nohang, and no child has ended),
 * "interrupted" (a signal arrived while waiting: a Ctrl-C is raised by the
 * runner's hook as soon as Lua runs again) or "no child".  Without pid (or
 * nil), any child. */
static int l_wait(lua_State *L)
{
	lua_Integer want = luaL_opt(L, luaL_checkinteger, 1, -1);
	int nohang = lua_toboolean(L, 2);
	if (want == 0 || want < -1 || want > INT_MAX)
		return luaL_error(L, "lunet.sys.wait: pid must be a process id > 0, got %d", (int)want);
	int status;
	pid_t r = waitpid((pid_t)want, &status, nohang ? WNOHANG : 0);
	if (r == 0) {
		lua_pushnil(L);
		lua_pushliteral(L, "running");
		return 2;
	}
	if (r < 0) {
		if (errno != EINTR && errno != ECHILD)
			return luaL_error(L, "lunet.sys.wait: %s", strerror(errno));
		lua_pushnil(L);
		lua_pushstring(L, errno == EINTR ? "interrupted" : "no child");
		return 2;
	}
	set_child(L, r, 0);
	lua_pushinteger(L, r);
	if (WIFSIGNALED(status)) {
		lua_pushliteral(L, "signal");
		lua_pushinteger(L, WTERMSIG(status));
	} else {
		lua_pushliteral(L, "exit");
		lua_pushinteger(L, WEXITSTATUS(status));
	}
	return 3;
}

static const struct {
	const char *name;
	int sig;
} signal_names[] = {
	{"INT", SIGINT}, {"TERM", SIGTERM}, {"KILL", SIGKILL}, {"HUP", SIGHUP}, {"QUIT", SIGQUIT},
	{"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"CONT", SIGCONT}, {"STOP", SIGSTOP},
};

/* lunet.sys.kill(pid, sig) -> true, or false and <strerror> (no such
 * process, not permitted).  sig: a name of signal_names, or a number
 * (0 only checks that the process exists).  A negative pid sends to the
 * process group -pid; 0 and -1 (the caller's group, every process) are
 * refused. */
static int l_kill(lua_State *L)
{
	static const char *fn = "lunet.sys.kill";
	lua_Integer pid = luaL_checkinteger(L, 1);
	if (pid == 0 || pid == -1 || pid > INT_MAX || pid < -INT_MAX)
		return luaL_error(L, "%s: pid must be a process id (or minus a process group's), got %d",
		                  fn, (int)pid);
	int sig = -1;
	if (lua_type(L, 2) == LUA_TNUMBER) {
		lua_Integer s = luaL_checkinteger(L, 2);
		if (s >= 0 && s < 65)
			sig = (int)s;
	} else {
		const char *name = luaL_checkstring(L, 2);
		for (size_t k = 0; k < sizeof signal_names / sizeof signal_names[0]; k++)
			if (strcmp(name, signal_names[k].name) == 0)
				sig = signal_names[k].sig;
	}
	if (sig < 0)
		return luaL_error(L, "%s: unknown signal %s (INT, TERM, KILL, HUP, QUIT, USR1, USR2, "
		                  "CONT, STOP or a number 0..64)", fn, luaL_tolstring(L, 2, NULL));
	if (kill((pid_t)pid, sig) != 0) {
		lua_pushboolean(L, 0);
		lua_pushstring(L, strerror(errno));
		return 2;
	}
	lua_pushboolean(L, 1);
	return 1;
}

/* lunet.sys.children() -> {pid, ...}: started by spawn, not yet collected
 * by wait, in increasing order. */
static int l_children(lua_State *L)
{
	push_children(L);
	int t = lua_gettop(L);
	lua_newtable(L);
	lua_Integer n = 0;
	lua_pushnil(L);
	while (lua_next(L, t)) {
		lua_pop(L, 1);
		lua_pushvalue(L, -1);
		lua_rawseti(L, t + 1, ++n);
	}
	/* A handful of children: insertion sort. */
	for (lua_Integer i = 2; i <= n; i++) {
		for (lua_Integer j = i; j > 1; j--) {
			lua_rawgeti(L, t + 1, j - 1);
			lua_rawgeti(L, t + 1, j);
			if (lua_tointeger(L, -2) <= lua_tointeger(L, -1)) {
				lua_pop(L, 2);
				break;
			}
			lua_rawseti(L, t + 1, j - 1);
			lua_rawseti(L, t + 1, j);
		}
	}
	return 1;
}

/* lunet.sys.sleep(s) -> true after s seconds (0 <= s <= 1e6), or false as
 * soon as a signal arrives (so that a Ctrl-C is not held up). */
static int l_sleep(lua_State *L)
{
	lua_Number s = luaL_checknumber(L, 1);
	if (!(s >= 0 && s <= 1e6))
		return luaL_error(L, "lunet.sys.sleep: seconds must be in [0, 1e6], got %f", (double)s);
	struct timespec ts;
	ts.tv_sec = (time_t)s;
	ts.tv_nsec = (long)((s - (lua_Number)ts.tv_sec) * 1e9);
	if (ts.tv_nsec > 999999999)
		ts.tv_nsec = 999999999;
	lua_pushboolean(L, nanosleep(&ts, NULL) == 0);
	return 1;
}

static int l_getpid(lua_State *L)
{
	lua_pushinteger(L, getpid());
	return 1;
}

/* lunet.sys.hostname() -> the name of this machine ("?" if unknown). */
static int l_hostname(lua_State *L)
{
	char name[256];
	if (gethostname(name, sizeof name) != 0)
		strcpy(name, "?");
	name[sizeof name - 1] = '\0';
	lua_pushstring(L, name);
	return 1;
}

/* lunet.sys.ncpu() -> the number of processors online (at least 1). */
static int l_ncpu(lua_State *L)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	lua_pushinteger(L, n > 0 ? n : 1);
	return 1;
}

/* lunet.sys.exe_path() -> the absolute path of the running program
 * (/proc/self/exe), or nil when the system does not say. */
static int l_exe_path(lua_State *L)
{
	char buf[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
	if (n <= 0)
		return 0;
	lua_pushlstring(L, buf, (size_t)n);
	return 1;
}

/* ---- locks -------------------------------------------------------------------------- */

#define LOCK_MT "lunet.sys.Lock"

#ifdef F_OFD_SETLK
#define LOCK_SET F_OFD_SETLK
#define LOCK_SETW F_OFD_SETLKW
#define LOCK_GET F_OFD_GETLK
#else  /* process-associated locks: closing any descriptor of the file drops them */
#define LOCK_SET F_SETLK
#define LOCK_SETW F_SETLKW
#define LOCK_GET F_GETLK
#endif

/* A lock is a userdata holding the descriptor (-1 once released), with the
 * path as its user value. */
typedef struct {
	int fd;
} lock_box;

/* Pushes the text of the lock file open at fd (at most 1 KB). */
static void push_lock_text(lua_State *L, int fd)
{
	char buf[1024];
	ssize_t n = pread(fd, buf, sizeof buf, 0);
	lua_pushlstring(L, buf, n > 0 ? (size_t)n : 0);
}

static struct flock whole_file(short type)
{
	struct flock fl;
	memset(&fl, 0, sizeof fl);
	fl.l_type = type;
	fl.l_whence = SEEK_SET;
	return fl;
}

/* lock:unlock([remove]): releases the lock; with remove true, deletes the
 * file first (so that nobody takes a lock on a file about to vanish and
 * believes it holds the run).  A second call does nothing.  Also __gc and
 * __close (without remove). */
static int lock_unlock(lua_State *L)
{
	lock_box *b = luaL_checkudata(L, 1, LOCK_MT);
	if (b->fd < 0)
		return 0;
	if (lua_toboolean(L, 2)) {
		lua_getiuservalue(L, 1, 1);
		const char *path = lua_tostring(L, -1);
		if (path)
			unlink(path);
		lua_pop(L, 1);
	}
	close(b->fd);
	b->fd = -1;
	return 0;
}

static int lock_gc(lua_State *L)
{
	lua_settop(L, 1);
	return lock_unlock(L);
}

/* lunet.sys.lock(path[, {wait = false, text = nil}]) -> lock, or false and
 * the text in the file when another holder has it and wait is false.
 * Creates path if missing and takes an exclusive lock on the whole file;
 * with wait, blocks until it is free.  With text, the file is then made to
 * hold exactly text (who holds it: "pid@host", say).  The lock lasts until
 * lock:unlock(), the collector, or the end of the process.  Raises
 * "lunet.sys.lock: path: <strerror>" when the file cannot be opened or the
 * file system refuses locks. */
static int l_lock(lua_State *L)
{
	static const char *fn = "lunet.sys.lock";
	static const lnL_option known[] = {{"wait", LUA_TBOOLEAN}, {"text", LUA_TSTRING}, {NULL, 0}};
	const char *path = lnL_checkpath(L, 1, fn, NULL);
	lnL_checkoptions(L, 2, fn, known);
	int wait = lnL_optboolean(L, 2, "wait", 0);
	size_t tlen = 0;
	const char *text = NULL;
	if (lua_type(L, 2) == LUA_TTABLE) {
		lua_getfield(L, 2, "text");
		text = lua_tolstring(L, -1, &tlen);  /* NULL when absent; kept by the table */
		lua_pop(L, 1);
	}
	lock_box *b = lua_newuserdatauv(L, sizeof *b, 1);
	b->fd = -1;
	if (luaL_newmetatable(L, LOCK_MT)) {
		static const luaL_Reg methods[] = {{"unlock", lock_unlock}, {NULL, NULL}};
		luaL_newlib(L, methods);
		lua_setfield(L, -2, "__index");
		lua_pushcfunction(L, lock_gc);
		lua_setfield(L, -2, "__gc");
		lua_pushcfunction(L, lock_gc);
		lua_setfield(L, -2, "__close");
	}
	lua_setmetatable(L, -2);
	lua_pushvalue(L, 1);
	lua_setiuservalue(L, -2, 1);
	/* The file may be replaced between open and lock (a holder that
	 * finishes deletes it): the lock counts only if the path still names
	 * the file locked. */
	for (int attempt = 0;; attempt++) {
		b->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
		if (b->fd < 0)
			return luaL_error(L, "%s: %s: %s", fn, path, strerror(errno));
		struct flock fl = whole_file(F_WRLCK);
		int r;
		do
			r = fcntl(b->fd, wait ? LOCK_SETW : LOCK_SET, &fl);
		while (r != 0 && errno == EINTR);
		if (r != 0) {
			int e = errno;
			if (e == EAGAIN || e == EACCES) {
				lua_pushboolean(L, 0);
				push_lock_text(L, b->fd);
				close(b->fd);
				b->fd = -1;
				return 2;
			}
			close(b->fd);
			b->fd = -1;
			return luaL_error(L, "%s: %s: cannot lock: %s", fn, path, strerror(e));
		}
		struct stat held, now;
		if (fstat(b->fd, &held) == 0 && stat(path, &now) == 0 && held.st_ino == now.st_ino &&
		    held.st_dev == now.st_dev)
			break;
		close(b->fd);
		b->fd = -1;
		if (attempt == 100)
			return luaL_error(L, "%s: %s: the file keeps being replaced", fn, path);
	}
	if (text) {
		if (ftruncate(b->fd, 0) != 0 || pwrite(b->fd, text, tlen, 0) != (ssize_t)tlen)
			return luaL_error(L, "%s: %s: cannot write: %s", fn, path, strerror(errno));
	}
	return 1;
}

/* lunet.sys.locked(path) -> false when nobody holds a lock on path (or
 * there is no such file), else true and the text in the file; nil and
 * "path: <strerror>" when the file system cannot tell (no locks there).
 * A lock held by this very process through lunet.sys.lock counts too. */
static int l_locked(lua_State *L)
{
	const char *path = lnL_checkpath(L, 1, "lunet.sys.locked", NULL);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		lua_pushboolean(L, 0);
		return 1;
	}
	struct flock fl = whole_file(F_WRLCK);
	if (fcntl(fd, LOCK_GET, &fl) != 0) {
		int e = errno;
		close(fd);
		lua_pushnil(L);
		lua_pushfstring(L, "%s: %s", path, strerror(e));
		return 2;
	}
	int held = fl.l_type != F_UNLCK;
	lua_pushboolean(L, held);
	if (held)
		push_lock_text(L, fd);  /* cannot raise: the buffer is on the C stack */
	close(fd);
	return held ? 2 : 1;
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
		{"list_dir", l_list_dir},
		{"file_type", l_file_type},
		{"spawn", l_spawn},
		{"wait", l_wait},
		{"kill", l_kill},
		{"children", l_children},
		{"sleep", l_sleep},
		{"getpid", l_getpid},
		{"hostname", l_hostname},
		{"ncpu", l_ncpu},
		{"exe_path", l_exe_path},
		{"lock", l_lock},
		{"locked", l_locked},
		{NULL, NULL},
	};
	luaL_newlib(L, funcs);
	lua_setfield(L, -2, "sys");
}
