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

#include "core/rng.h"
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

/* Runs each embedded script as a chunk called with the lunet table; a
 * script extends that table (or a sub-table) in place. */
static void run_embedded(lua_State *L, int lunet_idx)
{
	for (const ln_embedded_script *s = ln_embedded_scripts; s->name; s++) {
		char chunkname[128];
		snprintf(chunkname, sizeof chunkname, "=[lunet] %s", s->name + strlen("lunet."));
		if (luaL_loadbufferx(L, s->code, s->len, chunkname, "t") != LUA_OK)
			lua_error(L);
		lua_pushvalue(L, lunet_idx);
		lua_call(L, 1, 0);
	}
}

int luaopen_lunet(lua_State *L)
{
	static const luaL_Reg funcs[] = {
		{"seed", l_seed},
		{"warnings", l_warnings},
		{"clock", l_clock},
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
