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

#ifdef __cplusplus
}
#endif

#endif
