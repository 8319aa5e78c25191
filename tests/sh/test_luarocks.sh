#!/bin/bash
# test_luarocks.sh BUILD_DIR SOURCE_DIR -- `luarocks make` with Debian's
# luarocks builds lunet-dev-1.rockspec (build type cmake) from a copy of
# the source tree and installs it into a temporary tree; then `require
# "lunet"` works from the stock lua5.4 with that tree's paths (`luarocks
# path`), and the tree's bin/lunet runs.
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
lr() { luarocks --lua-version=5.4 --tree="$TREE" "$@"; }

passed=0
failed=0
check() {
	local name=$1
	shift
	if "$@"; then
		passed=$((passed + 1))
	else
		failed=$((failed + 1))
		echo "FAIL: $name"
	fi
}

# A copy of the sources without build directories: luarocks builds in
# build.luarocks under the current directory.
mkdir "$TMP/src"
tar -C "$SRC" --exclude='./build*' --exclude=./.git -cf - . | tar -C "$TMP/src" -xf -

if (cd "$TMP/src" && CMAKE_BUILD_PARALLEL_LEVEL=2 lr make lunet-dev-1.rockspec) >"$TMP/make.log" 2>&1
then
	passed=$((passed + 1))
	tail -n 3 "$TMP/make.log"
else
	echo "FAIL: luarocks make lunet-dev-1.rockspec"
	sed 's/^/    | /' "$TMP/make.log" | tail -n 40
	echo "$passed passed, 1 failed"
	exit 1
fi

check "luarocks list shows lunet dev-1" bash -c "luarocks --lua-version=5.4 --tree='$TREE' list --porcelain | grep -q '^lunet	dev-1	installed'"

# require from lua5.4 with the tree's paths, nothing else
out=$(env -u LUA_PATH_5_4 -u LUA_CPATH_5_4 \
	LUA_PATH="$(lr path --lr-path)" LUA_CPATH="$(lr path --lr-cpath)" \
	lua5.4 -e 'local l = require "lunet"
		print(package.searchpath("lunet", package.cpath))
		print(l.version, l.tensor{{1, 2}, {3, 4}}:matmul(l.ones(2, 1)):sum() + 0)' 2>&1)
expected="$TREE/lib/lua/5.4/lunet.so"$'\n'"$(sed -n 's/^project(lunet VERSION \([0-9.]*\).*/\1/p' "$SRC/CMakeLists.txt")	10.0"
if [ "$out" = "$expected" ]; then passed=$((passed + 1)); else
	failed=$((failed + 1))
	echo "FAIL: require \"lunet\" from lua5.4 with the tree's paths"
	echo "    expected: $expected"
	echo "    got: $out"
fi

# only the module and the runner are deployed: nothing else under lib/lua
check "the tree holds lunet.so and bin/lunet only" bash -c "
	[ -x '$TREE/bin/lunet' ] && [ \"\$(ls '$TREE/lib/lua/5.4')\" = lunet.so ]"
check "the tree's runner runs" bash -c "[ \"\$('$TREE/bin/lunet' -e 'print(lunet.ones(3):sum() + 0)')\" = 3.0 ]"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
