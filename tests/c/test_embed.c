/*
 * test_embed.c -- lunet inside a host program, through <lunet.h> only:
 * a fresh lua_State, the standard libraries, luaL_requiref of
 * luaopen_lunet, Lua code run from C and its results read back.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <lauxlib.h>
#include <lualib.h>
#include <lunet.h>

#include "core/alloc.h"

/* A state with the standard libraries and lunet opened the documented way
 * (global `lunet`); the stack is left empty. */
static lua_State *host_open(void)
{
	lua_State *L = luaL_newstate();
	assert_non_null(L);
	luaL_openlibs(L);
	luaL_requiref(L, "lunet", luaopen_lunet, 1);
	assert_int_equal(lua_type(L, -1), LUA_TTABLE);
	lua_pop(L, 1);
	assert_int_equal(lua_gettop(L), 0);
	return L;
}

/* Runs code as a chunk returning values; fails the test with the Lua error
 * message if it raises.  The results are left on the stack. */
static void host_run(lua_State *L, const char *code)
{
	if (luaL_loadstring(L, code) != LUA_OK || lua_pcall(L, 0, LUA_MULTRET, 0) != LUA_OK)
		fail_msg("Lua error in \"%s\": %s", code, lua_tostring(L, -1));
}

/* "MAJOR.MINOR.PATCH" from the header's macros. */
static const char *header_version(void)
{
	static char v[32];
	snprintf(v, sizeof v, "%d.%d.%d", LUNET_VERSION_MAJOR, LUNET_VERSION_MINOR,
	         LUNET_VERSION_PATCH);
	return v;
}

static void test_version_matches_header(void **state)
{
	lua_State *L = host_open();
	const char *want = header_version();
	lua_getglobal(L, "lunet");
	assert_int_equal(lua_getfield(L, -1, "version"), LUA_TSTRING);
	assert_string_equal(lua_tostring(L, -1), want);
	lua_close(L);
}

static void test_requiref_registers_module(void **state)
{
	lua_State *L = host_open();
	/* require returns the table luaL_requiref stored in package.loaded */
	host_run(L, "return rawequal(require('lunet'), lunet), type(lunet.nn), "
	            "type(lunet.optim), type(lunet.data)");
	assert_int_equal(lua_gettop(L), 4);
	assert_true(lua_toboolean(L, 1));
	assert_string_equal(lua_tostring(L, 2), "table");
	assert_string_equal(lua_tostring(L, 3), "table");
	assert_string_equal(lua_tostring(L, 4), "table");
	lua_close(L);
}

static void test_tensor_results_read_from_c(void **state)
{
	lua_State *L = host_open();
	host_run(L, "return lunet.ones(2,2):sum()");
	assert_int_equal(lua_type(L, -1), LUA_TNUMBER);
	assert_true(lua_tonumber(L, -1) == 4.0);
	lua_settop(L, 0);

	/* {{1,2},{3,4}} x {{1},{1}} = {{3},{7}} */
	host_run(L, "local y = lunet.tensor{{1,2},{3,4}}:matmul(lunet.ones(2,1))\n"
	            "return y:size(1), y:size(2), y:get(1,1), y:get(2,1)");
	assert_int_equal(lua_gettop(L), 4);
	assert_int_equal(lua_tointeger(L, 1), 2);
	assert_int_equal(lua_tointeger(L, 2), 1);
	assert_true(lua_tonumber(L, 3) == 3.0);
	assert_true(lua_tonumber(L, 4) == 7.0);
	lua_close(L);
}

/* A tensor made in Lua can be handed to C code as a value on the stack and
 * given back to Lua functions. */
static void test_values_cross_the_boundary(void **state)
{
	lua_State *L = host_open();
	host_run(L, "return lunet.full({3}, 2.5)");
	lua_setglobal(L, "from_host");
	host_run(L, "return from_host:sum(), from_host:numel()");
	assert_true(lua_tonumber(L, 1) == 7.5);
	assert_int_equal(lua_tointeger(L, 2), 3);
	lua_close(L);
}

/* Errors on bad input reach the host as Lua errors naming the function and
 * the values; the state stays usable. */
static void test_errors_are_lua_errors(void **state)
{
	lua_State *L = host_open();
	int st = luaL_dostring(L, "return lunet.ones(2,3):matmul(lunet.ones(2,3))");
	assert_int_not_equal(st, LUA_OK);
	const char *msg = lua_tostring(L, -1);
	assert_non_null(msg);
	if (strstr(msg, "matmul") == NULL || strstr(msg, "{2,3}") == NULL)
		fail_msg("error message does not name matmul and the shapes: %s", msg);
	lua_settop(L, 0);
	host_run(L, "return lunet.ones(3):sum()");
	assert_true(lua_tonumber(L, -1) == 3.0);
	lua_close(L);
}

/* Each state has its own module table; closing one leaves the other. */
static void test_two_states(void **state)
{
	lua_State *A = host_open();
	lua_State *B = host_open();
	host_run(A, "lunet.marker = 'A'; t = lunet.ones(4)");
	host_run(B, "return lunet.marker");
	assert_true(lua_isnil(B, -1));
	lua_close(A);
	host_run(B, "return lunet.ones(5):sum()");
	assert_true(lua_tonumber(B, -1) == 5.0);
	lua_close(B);
}

/* The other documented way: package.preload, then require. */
static void test_preload(void **state)
{
	lua_State *L = luaL_newstate();
	luaL_openlibs(L);
	luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
	lua_pushcfunction(L, luaopen_lunet);
	lua_setfield(L, -2, "lunet");
	lua_pop(L, 1);
	host_run(L, "local l = require 'lunet'; return l.version, lunet, l.zeros(2,2):sum()");
	assert_string_equal(lua_tostring(L, 1), header_version());
	assert_true(lua_isnil(L, 2));  /* require sets no global */
	assert_true(lua_tonumber(L, 3) == 0.0);
	lua_close(L);
}

/* Closing the state releases every tensor still referenced from Lua. */
static void test_close_frees_tensors(void **state)
{
	ln_alloc_stats before, after;
	ln_alloc_get_stats(&before);
	lua_State *L = host_open();
	host_run(L, "keep = {}; for i = 1, 10 do keep[i] = lunet.rand(16, 16) end");
	lua_close(L);
	ln_alloc_get_stats(&after);
	assert_int_equal(after.bytes_live, before.bytes_live);
	assert_true(after.allocs > before.allocs);
	assert_int_equal(after.allocs - before.allocs, after.frees - before.frees);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_version_matches_header),
		cmocka_unit_test(test_requiref_registers_module),
		cmocka_unit_test(test_tensor_results_read_from_c),
		cmocka_unit_test(test_values_cross_the_boundary),
		cmocka_unit_test(test_errors_are_lua_errors),
		cmocka_unit_test(test_two_states),
		cmocka_unit_test(test_preload),
		cmocka_unit_test(test_close_frees_tensors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
