/*
 * lunet.c -- luaopen_lunet: assembles the module table from the C
 * bindings, then runs the embedded pure-Lua parts over it.
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <lua.h>

#include "core/alloc.h"
#include "core/rng.h"
#include "nn/module.h"
#include "embedded.h"
#include "lnaux.h"
#include "lunet.h"

static bool warnings_on = true;

void lnL_warn_once(lua_State *L, const char *key, const char *msg)
{
	if (!warnings_on)
		return;
	/* The set of keys already warned about lives in the registry. */
	lua_getfield(L, LUA_REGISTRYINDEX, "lunet.warned");
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		lua_newtable(L);
		lua_pushvalue(L, -1);
		lua_setfield(L, LUA_REGISTRYINDEX, "lunet.warned");
	}
	if (lua_getfield(L, -1, key) == LUA_TNIL) {
		fprintf(stderr, "lunet: warning: %s\n", msg);
		fflush(stderr);
		lua_pushboolean(L, 1);
		lua_setfield(L, -3, key);
	}
	lua_pop(L, 2);
}

/* lunet.warnings([on]) -> previous setting. */
static int l_warnings(lua_State *L)
{
	bool was = warnings_on;
	if (!lua_isnoneornil(L, 1)) {
		luaL_checktype(L, 1, LUA_TBOOLEAN);
		warnings_on = lua_toboolean(L, 1);
	}
	lua_pushboolean(L, was);
	return 1;
}

/* lunet.seed(n): seeds every random source of lunet. */
static int l_seed(lua_State *L)
{
	lua_Integer s = luaL_checkinteger(L, 1);
	ln_rng_seed(ln_rng_global(), (uint64_t)s);
	return 0;
}

/* lunet.clock() -> seconds from a monotonic wall clock, for timing. */
static int l_clock(lua_State *L)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec * 1e-9);
	return 1;
}

/* lunet._docs() -> {{name = "tensors", text = "..."}, ...}: the pages of the
 * manual compiled in (the .md files of docs/), in order of name.  Internal: lunet.help
 * (help.lua) reads them. */
static int l_docs(lua_State *L)
{
	lua_newtable(L);
	lua_Integer i = 0;
	for (const ln_embedded_script *d = ln_embedded_docs; d->name; d++) {
		lua_createtable(L, 0, 2);
		lua_pushstring(L, d->name);
		lua_setfield(L, -2, "name");
		lua_pushlstring(L, d->code, d->len);
		lua_setfield(L, -2, "text");
		lua_rawseti(L, -2, ++i);
	}
	return 1;
}

/* lunet.memory_limit([bytes]) -> the previous cap.  Caps the bytes the
 * engine holds (every tensor, module buffer and optimizer state: all of
 * ln_malloc); an allocation over the cap is a Lua error that says out of
 * memory, and nothing is changed by the operation that failed.  0 removes
 * the cap; no argument only reads it. */
static int l_memory_limit(lua_State *L)
{
	uint64_t was = ln_alloc_live_limit();
	if (!lua_isnoneornil(L, 1)) {
		int isint = 0;
		lua_Integer n = lua_tointegerx(L, 1, &isint);
		if (lua_type(L, 1) != LUA_TNUMBER || !isint || n < 0) {
			char num[64];
			const char *got = lua_type(L, 1) == LUA_TNUMBER ? lnL_numstr(num, sizeof num, L, 1)
			                                                : luaL_typename(L, 1);
			return luaL_error(L, "lunet.memory_limit: expected a number of bytes (an integer "
			                  ">= 0, 0 for no limit), got %s", got);
		}
		lnL_checknargs(L, 1, "lunet.memory_limit");
		ln_alloc_set_live_limit((uint64_t)n);
	}
	lua_pushinteger(L, (lua_Integer)was);
	return 1;
}

/* lunet.check_numerics([on]) -> the previous setting.  With it on, every
 * module's forward and backward is checked for NaN and infinities, and
 * the first one is an error naming the layer by its place in the model
 * and the step (nn/numerics.c).  No argument only reads it. */
static int l_check_numerics(lua_State *L)
{
	bool was = ln_numerics_on;
	if (!lua_isnoneornil(L, 1)) {
		if (lua_type(L, 1) != LUA_TBOOLEAN)
			return luaL_error(L, "lunet.check_numerics: expected a boolean, got %s",
			                  luaL_typename(L, 1));
		lnL_checknargs(L, 1, "lunet.check_numerics");
		ln_numerics_set(lua_toboolean(L, 1));
	}
	lua_pushboolean(L, was);
	return 1;
}

/* ---- the embedded pure-Lua parts ------------------------------------------------
 *
 * Each file lua/lunet/NAME.lua is compiled in as the script "lunet.NAME"
 * and runs once, as a chunk called with two arguments:
 *
 *     local lunet, import = ...
 *
 * A script either extends the lunet table (or a sub-table) in place, or
 * returns a table of helpers for the other scripts and leaves lunet alone
 * (csv.lua, plot.lua): import("plot") runs the script "lunet.plot" if it
 * has not run yet and returns what it returned (true if nothing).  So the
 * scripts may run in any order, and helpers stay out of the public API.
 * import's upvalues: 1 = the lunet table, 2 = the table of results by name
 * (false while a script runs, which catches an import cycle). */

static const ln_embedded_script *find_script(const char *name)
{
	for (const ln_embedded_script *s = ln_embedded_scripts; s->name; s++)
		if (strncmp(s->name, "lunet.", 6) == 0 && strcmp(s->name + 6, name) == 0)
			return s;
	return NULL;
}

/* import(name) -> the value the embedded script "lunet.<name>" returned. */
static int l_import(lua_State *L)
{
	const char *name = luaL_checkstring(L, 1);
	lua_settop(L, 1);
	int t = lua_getfield(L, lua_upvalueindex(2), name);
	if (t == LUA_TBOOLEAN && !lua_toboolean(L, -1))
		return luaL_error(L, "lunet: import cycle: the script '%s' imports itself", name);
	if (t != LUA_TNIL)
		return 1;
	lua_pop(L, 1);
	const ln_embedded_script *s = find_script(name);
	if (s == NULL)
		return luaL_error(L, "lunet: no embedded script '%s'", name);
	lua_pushboolean(L, 0);  /* running */
	lua_setfield(L, lua_upvalueindex(2), name);
	char chunkname[128];
	snprintf(chunkname, sizeof chunkname, "=[lunet] %s", name);
	if (luaL_loadbufferx(L, s->code, s->len, chunkname, "t") != LUA_OK)
		return lua_error(L);
	lua_pushvalue(L, lua_upvalueindex(1));
	lua_pushvalue(L, lua_upvalueindex(1));
	lua_pushvalue(L, lua_upvalueindex(2));
	lua_pushcclosure(L, l_import, 2);  /* the same import, for the script */
	lua_call(L, 2, 1);
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		lua_pushboolean(L, 1);
	}
	lua_pushvalue(L, -1);
	lua_setfield(L, lua_upvalueindex(2), name);
	return 1;
}

/* Runs every embedded script once, through import. */
static void run_embedded(lua_State *L, int lunet_idx)
{
	lua_pushvalue(L, lunet_idx);
	lua_newtable(L);
	lua_pushcclosure(L, l_import, 2);
	int import = lua_gettop(L);
	for (const ln_embedded_script *s = ln_embedded_scripts; s->name; s++) {
		lua_pushvalue(L, import);
		lua_pushstring(L, s->name + strlen("lunet."));
		lua_call(L, 1, 0);
	}
	lua_pop(L, 1);
}

int luaopen_lunet(lua_State *L)
{
	static const luaL_Reg funcs[] = {
		{"seed", l_seed},
		{"warnings", l_warnings},
		{"clock", l_clock},
		{"memory_limit", l_memory_limit},
		{"check_numerics", l_check_numerics},
		{"_optionerror", lnL_optionerror},
		{"_docs", l_docs},
		{NULL, NULL},
	};
	luaL_newlib(L, funcs);
	int lunet_idx = lua_gettop(L);
	lua_pushliteral(L, LUNET_VERSION);
	lua_setfield(L, lunet_idx, "version");
	lnL_open_tensor(L);
	lnL_open_nn(L);
	lnL_open_optim(L);
	lnL_open_data(L);
	lnL_open_save(L);
	lnL_open_interop(L);
	lnL_open_sys(L);
	lnL_open_bench(L);
	lnL_open_dist(L);
	run_embedded(L, lunet_idx);
	lua_settop(L, lunet_idx);
	return 1;
}
