-- lunet-dev-1.rockspec -- builds lunet from this checkout with CMake and
-- installs the Lua module (and the lunet runner) into a LuaRocks tree:
--
--   luarocks config --local lua_version 5.4   # once: Debian's luarocks defaults to 5.1
--   luarocks make --local                     # into ~/.luarocks
--   eval "$(luarocks path --local)"           # LUA_PATH, LUA_CPATH and PATH for it
--   lua5.4 -e 'print(require("lunet").version)'
--
-- The Debian packages of .ci/setup must be installed (CMake finds them with
-- pkg-config).  CMAKE_BUILD_PARALLEL_LEVEL=N builds with N jobs.
rockspec_format = "3.0"
package = "lunet"
version = "dev-1"
source = {
	-- built from a checkout with `luarocks make`; there is no source archive
	url = ".",
}
description = {
	summary = "A neural-network engine in C with Lua 5.4 bindings",
	detailed = [[
Tensors, layers, losses, optimisers and backpropagation in C, driven from
Lua 5.4 scripts; weights in and out of PyTorch through safetensors files.]],
}
dependencies = {
	"lua >= 5.4, < 5.5",
}
build = {
	type = "cmake",
	variables = {
		CMAKE_BUILD_TYPE = "RelWithDebInfo",
		CMAKE_INSTALL_PREFIX = "$(PREFIX)",
		CMAKE_INSTALL_BINDIR = "$(BINDIR)",
		LUA_CMOD_DIR = "$(LIBDIR)",
		LUNET_LUAROCKS = "ON",
		LUNET_TESTS = "OFF",
	},
}
