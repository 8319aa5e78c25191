#!/bin/bash
# test_install.sh BUILD_DIR SOURCE_DIR -- `cmake --install` into a temporary
# prefix puts each piece where its user finds it:
#   bin/lunet                     runs;
#   include/lunet.h, lib*/liblunet.{a,so}, lib*/pkgconfig/lunet.pc
#                                 build a host program with pkg-config, linked
#                                 shared and static;
#   lib*/lua/5.4/lunet.so         loads into the stock lua5.4;
# and the configured default (/usr/local) puts the module on lua5.4's
# default package.cpath.
#
# Under the sanitizer build (LUNET_SANITIZE=ON in the cache) host programs
# are compiled with the sanitizers, and the stock lua5.4 runs with the
# variables of STOCK_LUA_ENV (a ;-separated VAR=value list, set by CTest).
set -u

BUILD=$(cd "${1:?usage: test_install.sh BUILD_DIR SOURCE_DIR}" && pwd)
SRC=$(cd "${2:?usage: test_install.sh BUILD_DIR SOURCE_DIR}" && pwd)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
PREFIX="$TMP/prefix"

passed=0
failed=0
ok() { passed=$((passed + 1)); }
fail() {
	failed=$((failed + 1))
	echo "FAIL: $1"
	shift
	for line in "$@"; do echo "    $line"; done
}
# show FILE: a file's content, indented, for a failure report.
show() { sed 's/^/    | /' "$1"; }

STOCK_ENV=()
if [ -n "${STOCK_LUA_ENV:-}" ]; then
	IFS=';' read -r -a STOCK_ENV <<<"$STOCK_LUA_ENV"
fi
stock_lua() { env "${STOCK_ENV[@]}" lua5.4 "$@"; }

HOST_CFLAGS=()
if grep -q '^LUNET_SANITIZE:BOOL=ON' "$BUILD/CMakeCache.txt"; then
	HOST_CFLAGS=(-fsanitize=address,undefined -fno-omit-frame-pointer)
fi
VERSION=$(sed -n 's/^project(lunet VERSION \([0-9.]*\).*/\1/p' "$SRC/CMakeLists.txt")

# ---- install --------------------------------------------------------------------

if cmake --install "$BUILD" --prefix "$PREFIX" >"$TMP/install.log" 2>&1; then
	ok
else
	fail "cmake --install $BUILD --prefix $PREFIX"
	show "$TMP/install.log"
	echo "$passed passed, $failed failed"
	exit 1
fi

# exists NAME GLOB: the one path matching GLOB under the prefix, printed.
exists() {
	local matches=()
	mapfile -t matches < <(cd "$PREFIX" && compgen -G "$2")
	if [ "${#matches[@]}" -eq 1 ]; then
		ok
		echo "$PREFIX/${matches[0]}"
	else
		fail "installed $1: expected one match for $2, found ${#matches[@]}" \
			"installed files:" $(cd "$PREFIX" && find . -type f -o -type l)
		echo ""
	fi
}

bin=$(exists "runner" "bin/lunet")
header=$(exists "header" "include/lunet.h")
static_lib=$(exists "static library" "lib*/liblunet.a")
shared_lib=$(exists "shared library" "lib*/liblunet.so")
pcfile=$(exists "pkg-config file" "lib*/pkgconfig/lunet.pc")
module=$(exists "Lua module" "lib*/lua/5.4/lunet.so")

# ---- the installed runner ------------------------------------------------------

if [ -n "$bin" ]; then
	out=$("$bin" -v 2>&1)
	if [[ "$out" =~ ^lunet\ $VERSION\ \(Lua\ 5\.4\.[0-9]+\)$ ]]; then ok; else
		fail "installed lunet -v" "got: $out"; fi
	out=$("$bin" -e 'print(lunet.ones(3):sum() + 0)' 2>&1)
	if [ "$out" = "3.0" ] || [ "$out" = "3" ]; then ok; else
		fail "installed lunet -e runs lunet code" "got: $out"; fi
	# The runner is self-contained: no liblunet.so, nothing unresolved.
	deps=$(ldd "$bin" 2>&1)
	if ! grep -q 'liblunet' <<<"$deps" && ! grep -q 'not found' <<<"$deps"; then ok; else
		fail "installed lunet links no liblunet.so and resolves all libraries" "$deps"; fi
fi

# ---- pkg-config ------------------------------------------------------------------

if [ -n "$pcfile" ]; then
	export PKG_CONFIG_PATH="$(dirname "$pcfile")"
	pc_prefix=$(pkg-config --variable=prefix lunet)
	if [ "$pc_prefix" = "$PREFIX" ]; then ok; else
		fail "lunet.pc prefix is the install prefix" "expected: $PREFIX" "got: $pc_prefix"; fi
	pc_version=$(pkg-config --modversion lunet)
	if [ "$pc_version" = "$VERSION" ]; then ok; else
		fail "lunet.pc version" "expected: $VERSION" "got: $pc_version"; fi
fi

cat >"$TMP/host.c" <<'EOF'
/* A host program: lunet through <lunet.h> and pkg-config only. */
#include <stdio.h>

#include <lauxlib.h>
#include <lualib.h>
#include <lunet.h>

int main(void)
{
	lua_State *L = luaL_newstate();
	luaL_openlibs(L);
	luaL_requiref(L, "lunet", luaopen_lunet, 1);
	lua_pop(L, 1);
	int st = luaL_dostring(L, "local y = lunet.tensor{{1,2},{3,4}}:matmul(lunet.ones(2,1))\n"
	                          "return lunet.version, lunet.ones(2,2):sum(), y:get(1,1), y:get(2,1)");
	if (st != LUA_OK) {
		fprintf(stderr, "host: %s\n", lua_tostring(L, -1));
		lua_close(L);
		return 1;
	}
	printf("%s %g %g %g\n", lua_tostring(L, -4), lua_tonumber(L, -3), lua_tonumber(L, -2),
	       lua_tonumber(L, -1));
	lua_close(L);
	return 0;
}
EOF
host_expect="$VERSION 4 3 7"

if [ -n "$pcfile" ] && [ -n "$header" ] && [ -n "$shared_lib" ]; then
	# Shared: flags straight from pkg-config.
	read -r -a pc_flags <<<"$(pkg-config --cflags --libs lunet lua5.4)"
	if cc "${HOST_CFLAGS[@]}" -o "$TMP/host" "$TMP/host.c" "${pc_flags[@]}" 2>"$TMP/cc.log"; then
		ok
		# No LD_LIBRARY_PATH: lunet.pc's rpath finds the library.
		out=$(env -u LD_LIBRARY_PATH "$TMP/host" 2>&1)
		if [ "$out" = "$host_expect" ]; then ok; else
			fail "host linked to the installed liblunet.so" "expected: $host_expect" "got: $out"; fi
		deps=$(env -u LD_LIBRARY_PATH ldd "$TMP/host")
		if grep -qF "$(dirname "$shared_lib")/liblunet.so" <<<"$deps"; then ok; else
			fail "host loads liblunet.so from the prefix" "$deps"; fi
	else
		fail "compile a host with pkg-config --cflags --libs lunet lua5.4" "flags: ${pc_flags[*]}"
		show "$TMP/cc.log"
	fi
fi

if [ -n "$pcfile" ] && [ -n "$header" ] && [ -n "$static_lib" ]; then
	# Static: the archive, then what pkg-config --static says it needs.
	read -r -a pc_cflags <<<"$(pkg-config --cflags lunet)"
	read -r -a pc_libs <<<"$(pkg-config --static --libs-only-l lunet | sed 's/-llunet\b//')"
	if cc "${HOST_CFLAGS[@]}" -o "$TMP/host_static" "$TMP/host.c" "${pc_cflags[@]}" \
		"$static_lib" "${pc_libs[@]}" 2>"$TMP/cc.log"; then
		ok
		out=$("$TMP/host_static" 2>&1)
		if [ "$out" = "$host_expect" ]; then ok; else
			fail "host linked to the installed liblunet.a" "expected: $host_expect" "got: $out"; fi
	else
		fail "compile a host against liblunet.a with pkg-config --static" \
			"libs: ${pc_libs[*]}"
		show "$TMP/cc.log"
	fi
fi

# ---- the module in the stock interpreter ---------------------------------------

if [ -n "$module" ]; then
	moddir=$(dirname "$module")
	out=$(LUA_CPATH="$moddir/?.so" LUA_CPATH_5_4="$moddir/?.so" stock_lua -e '
		local l = require "lunet"
		print(package.searchpath("lunet", package.cpath))
		print(l.version, l.ones(2, 2):sum() + 0)' 2>&1)
	expected="$module"$'\n'"$VERSION	4.0"
	if [ "$out" = "$expected" ]; then ok; else
		fail "stock lua5.4 loads the installed module" "expected: $expected" "got: $out"; fi
fi

# ---- the default prefix and lua5.4's package.cpath -----------------------------

# A fresh configure with the default prefix, and one with /usr: the module
# directory under each must be one lua5.4 searches by default.
cpath=$(env -u LUA_CPATH -u LUA_CPATH_5_4 lua5.4 -e 'print(package.cpath)')
for prefix in default /usr; do
	cfg="$TMP/configure-$(basename "$prefix")"
	args=(-S "$SRC" -B "$cfg")
	[ "$prefix" != default ] && args+=(-DCMAKE_INSTALL_PREFIX="$prefix")
	if ! cmake "${args[@]}" >"$TMP/configure.log" 2>&1; then
		fail "configure with prefix $prefix"
		show "$TMP/configure.log"
		continue
	fi
	# What the install rule for the module resolves to.
	dest=$(sed -n 's/.*file(INSTALL DESTINATION "\([^"]*\)" TYPE MODULE.*lunet\.so.*/\1/p' \
		"$cfg/cmake_install.cmake" | sed "s|\${CMAKE_INSTALL_PREFIX}|@|")
	used_prefix=$(sed -n 's/^CMAKE_INSTALL_PREFIX:PATH=//p' "$cfg/CMakeCache.txt")
	if [ "$prefix" = default ] && [ "$used_prefix" != /usr/local ]; then
		fail "the default install prefix is /usr/local" "got: $used_prefix"
		continue
	fi
	dir="${dest/@/$used_prefix}"
	if [[ ";$cpath;" == *";$dir/?.so;"* ]]; then ok; else
		fail "module directory for prefix $used_prefix is on lua5.4's package.cpath" \
			"module installs to: ${dir:-(no install rule found)}" "package.cpath: $cpath"
	fi
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
