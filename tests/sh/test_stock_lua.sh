#!/bin/bash
# test_stock_lua.sh BUILD_DIR SOURCE_DIR -- BUILD_DIR/lunet.so loaded with
# `require "lunet"` into the stock lua5.4 interpreter.
#
# Under the sanitizer build the module is instrumented and lua5.4 is not:
# STOCK_LUA_ENV (set by CTest, a ;-separated list of VAR=value) preloads
# the sanitizer runtime and is applied to every lua5.4 run with `env`.
set -u

BUILD=$(cd "${1:?usage: test_stock_lua.sh BUILD_DIR SOURCE_DIR}" && pwd)
SRC=$(cd "${2:?usage: test_stock_lua.sh BUILD_DIR SOURCE_DIR}" && pwd)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

passed=0
failed=0

STOCK_ENV=()
if [ -n "${STOCK_LUA_ENV:-}" ]; then
	IFS=';' read -r -a STOCK_ENV <<<"$STOCK_LUA_ENV"
fi
VERSION=$(sed -n 's/^project(lunet VERSION \([0-9.]*\).*/\1/p' "$SRC/CMakeLists.txt")

# lua CODE: runs CODE in the stock lua5.4 with BUILD_DIR first on
# package.cpath; sets rc, stdout in $TMP/out, stderr in $TMP/err.
lua() {
	env "${STOCK_ENV[@]}" lua5.4 -e "package.cpath = '$BUILD/?.so;' .. package.cpath" \
		-e "$1" >"$TMP/out" 2>"$TMP/err" </dev/null
	rc=$?
}

# check NAME COND...: COND is a command; on failure prints what came out.
check() {
	local name=$1
	shift
	if "$@"; then
		passed=$((passed + 1))
	else
		failed=$((failed + 1))
		echo "FAIL: $name"
		echo "    condition: $*"
		echo "    exit code: $rc"
		echo "    --- stdout:"; sed 's/^/    | /' "$TMP/out"
		echo "    --- stderr:"; sed 's/^/    | /' "$TMP/err"
	fi
}
out_is() { [ "$(cat "$TMP/out")" = "$1" ]; }

if [ ! -f "$BUILD/lunet.so" ]; then
	echo "FAIL: $BUILD/lunet.so is not built"
	echo "0 passed, 1 failed"
	exit 1
fi

# The documented one-liner: {{1,2},{3,4}} x {{1},{1}} = {{3},{7}}, printed
# through the tensor's __tostring.
lua 'local l = require "lunet"; print(l.tensor{{1,2},{3,4}}:matmul(l.ones(2,1)))'
check "matmul prints 3 and 7" bash -c "[ $rc -eq 0 ] &&
	tr '\n' ' ' <'$TMP/out' | grep -qE '(^|[^0-9.])3(\.0*)?([^0-9.].*|[[:space:]]+)7(\.0*)?([^0-9.]|\$)'"

# The same values read back as numbers, not through printing.
lua 'local l = require "lunet"
	local y = l.tensor{{1,2},{3,4}}:matmul(l.ones(2,1))
	print(y:dim(), y:size(1), y:size(2), y:get(1,1), y:get(2,1))'
check "matmul values" out_is $'2\t2\t1\t3.0\t7.0'

# The module is the one in BUILD_DIR, it is what require caches, and its
# version is the project's.
lua 'local l = require "lunet"
	print(package.searchpath("lunet", package.cpath))
	print(rawequal(package.loaded.lunet, l), rawequal(require "lunet", l), l.version)'
check "require loads BUILD_DIR/lunet.so once" out_is "$BUILD/lunet.so"$'\n'"true	true	$VERSION"

# require sets no global; the sub-tables are there.
lua 'local l = require "lunet"
	print(lunet, type(l.nn), type(l.optim), type(l.data))'
check "no global, nn/optim/data tables" out_is $'nil\ttable\ttable\ttable'

# Bad input is a catchable Lua error naming the function and the shapes,
# and the interpreter goes on.
lua 'local l = require "lunet"
	local ok, err = pcall(l.ones(2,3).matmul, l.ones(2,3), l.ones(2,3))
	print(ok)
	print(err)
	print(l.ones(3):sum())'
check "errors are Lua errors" bash -c "[ $rc -eq 0 ] && [ \"\$(sed -n 1p '$TMP/out')\" = false ] &&
	sed -n 2p '$TMP/out' | grep -q 'matmul' && sed -n 2p '$TMP/out' | grep -qF '{2,3}' &&
	[ \"\$(sed -n 3p '$TMP/out')\" = 3.0 ]"

# Many short-lived tensors (500 x 1 MB): the collector frees them as it
# goes, so the peak resident size stays far below the 500 MB they add up
# to.  (Not checked under the sanitizers, whose quarantine keeps freed
# memory on purpose.)
lua 'local l = require "lunet"
	local s = 0
	for i = 1, 500 do s = s + l.ones(256, 1024):sum() end
	collectgarbage()
	local hwm = io.open("/proc/self/status"):read("a"):match("VmHWM:%s*(%d+) kB")
	print(s)
	print(math.floor(tonumber(hwm) / 1024))'
check "collector frees tensors" bash -c "[ $rc -eq 0 ] && [ \"\$(sed -n 1p '$TMP/out')\" = '131072000.0' ]"
if [ "${#STOCK_ENV[@]}" -eq 0 ]; then
	check "peak memory stays bounded (< 250 MB)" bash -c "[ \"\$(sed -n 2p '$TMP/out')\" -lt 250 ]"
fi

# A script error inside lunet code fails lua5.4 with a traceback.
lua 'local l = require "lunet"; l.tensor{{1,2},{3}}'
check "ragged table is an error" bash -c "[ $rc -eq 1 ] && grep -q 'stack traceback' '$TMP/err'"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
