#!/bin/bash
# test_luarocks.sh BUILD_DIR SOURCE_DIR -- `luarocks make` with Debian's
# luarocks builds lunet-dev-1.rockspec (build type cmake) from a copy of
# the source tree and installs it into a temporary tree; then `require
# "lunet"` works from the stock lua5.4 with that tree's paths (`luarocks
# path`), and the tree's bin/lunet runs.  The checks come from lib.sh.
#
# The rock is built without the sanitizers whatever BUILD_DIR is, so the
# test runs once, in the plain build, and is skipped (exit 77) in the
# sanitizer builds; it is skipped too where luarocks is not installed.
set -u

BUILD=$(cd "${1:?usage: test_luarocks.sh BUILD_DIR SOURCE_DIR}" && pwd)
SRC=$(cd "${2:?usage: test_luarocks.sh BUILD_DIR SOURCE_DIR}" && pwd)

if grep -q '^LUNET_SANITIZE:BOOL=ON' "$BUILD/CMakeCache.txt"; then
	echo "SKIP: the rock is built without sanitizers; the plain build runs this test"
	exit 77
fi
if ! command -v luarocks >/dev/null; then
	echo "SKIP: luarocks is not installed (apt-get install luarocks)"
	exit 77
fi

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
TREE="$TMP/tree"
. "$SRC/tests/sh/lib.sh"
lr() { luarocks --lua-version=5.4 --tree="$TREE" "$@"; }

# A copy of the sources without build directories: luarocks builds in
# build.luarocks under the current directory.
mkdir "$TMP/src"
tar -C "$SRC" --exclude='./build*' --exclude=./.git -cf - . | tar -C "$TMP/src" -xf -

run bash -c "cd '$TMP/src' && CMAKE_BUILD_PARALLEL_LEVEL=2 luarocks --lua-version=5.4 \
	--tree='$TREE' make lunet-dev-1.rockspec"
check "luarocks make lunet-dev-1.rockspec" [ "$rc" -eq 0 ]
tail -n 2 "$TMP/out"
run lr list --porcelain
check "luarocks list shows lunet dev-1" out_has $'^lunet\tdev-1\tinstalled'

# require from lua5.4 with the tree's paths and nothing else
version=$(sed -n 's/^project(lunet VERSION \([0-9.]*\).*/\1/p' "$SRC/CMakeLists.txt")
run env -u LUA_PATH_5_4 -u LUA_CPATH_5_4 LUA_PATH="$(lr path --lr-path)" \
	LUA_CPATH="$(lr path --lr-cpath)" lua5.4 -e 'local l = require "lunet"
		print(package.searchpath("lunet", package.cpath))
		print(l.version, l.tensor{{1, 2}, {3, 4}}:matmul(l.ones(2, 1)):sum() + 0)'
check "require \"lunet\" from lua5.4 with the tree's paths" \
	out_is "$TREE/lib/lua/5.4/lunet.so"$'\n'"$version	10.0"

# only the module and the runner are deployed
run ls "$TREE/lib/lua/5.4"
check "the tree's module directory holds lunet.so alone" out_is lunet.so
run "$TREE/bin/lunet" -e 'print(lunet.ones(3):sum() + 0)'
check "the tree's bin/lunet runs" out_is 3.0

finish
