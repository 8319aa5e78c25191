/*
 * lunet.h -- embedding lunet in a Lua 5.4 host program.
 *
 *     #include <lauxlib.h>
 *     #include <lualib.h>
 *     #include <lunet.h>
 *
 *     int main(void) {
 *         lua_State *L = luaL_newstate();
 *         luaL_openlibs(L);
 *         luaL_requiref(L, "lunet", luaopen_lunet, 1);   // sets global `lunet`
 *         lua_pop(L, 1);
 *         if (luaL_dostring(L, "print(lunet.ones(2,2):sum())") != LUA_OK)
 *             fprintf(stderr, "%s\n", lua_tostring(L, -1));
 *         lua_close(L);
 *     }
 *
 * Build with `pkg-config --cflags --libs lunet`.
 */
#ifndef LUNET_H
#define LUNET_H

#include <lua.h>

#define LUNET_VERSION_MAJOR 0
#define LUNET_VERSION_MINOR 1
#define LUNET_VERSION_PATCH 0

#ifdef __cplusplus
extern "C" {
#endif

/* Opens the lunet module: pushes its table (tensor functions, lunet.nn,
 * lunet.optim, lunet.data ...).  Use with luaL_requiref or
 * package.preload. */
int luaopen_lunet(lua_State *L);

/* For runners, after printing the error that ends a script: when this
 * process joined an MPI job of several ranks (lunet.dist.init), says
 * which rank failed and ends the whole job with exit status `code`
 * (MPI_Abort), so that the other ranks do not wait for ever inside a
 * collective call; it does not return then.  Otherwise it returns at
 * once. */
void lunet_dist_abort(int code);

/* Raises the Lua error "interrupted!" (after the position, as luaL_error
 * gives it) and records it as an interrupt: a run of lunet.experiment that
 * it stops then prints its summary and ends with one line saying where it
 * stopped and how to resume, instead of a traceback.  Call it where a host
 * turns Ctrl-C into a Lua error: from a hook that a SIGINT handler sets
 * with lua_sethook, as lua.c and the lunet runner do.  Does not return.
 * A message handler (lua_pcall's msgh) should pass that error value on
 * unchanged (lunet_is_interrupt), without appending a traceback: the
 * experiment recognises it by its identity. */
int lunet_interrupt(lua_State *L);

/* Whether the value at idx is the error that the last lunet_interrupt
 * raised. */
int lunet_is_interrupt(lua_State *L, int idx);

#ifdef __cplusplus
}
#endif

#endif
