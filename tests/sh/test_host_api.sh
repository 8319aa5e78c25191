#!/bin/bash
# test_host_api.sh BUILD_DIR SOURCE_DIR -- the model API of lunet.h as a new
# user meets it: `cmake --install` into a temporary prefix that is not on
# the loader's path, then hosts built with pkg-config alone (no path into
# the source or build tree) and run with no LD_LIBRARY_PATH:
#   - lunet.h's own worked example, cut out of the header, built with the
#     line the README shows;
#   - tests/host/test_host.c, a cmocka suite in C;
#   - tests/host/host.cpp, a C++ host.
# Their models and expected outputs come from tests/host/make_fixtures.lua
# run by BUILD_DIR/lunet.
#
# Under the sanitizer build (LUNET_SANITIZE=ON in the cache) the hosts are
# compiled with the sanitizers too.
set -u

BUILD=$(cd "${1:?usage: test_host_api.sh BUILD_DIR SOURCE_DIR}" && pwd)
SRC=$(cd "${2:?usage: test_host_api.sh BUILD_DIR SOURCE_DIR}" && pwd)
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
show() { sed 's/^/    | /' "$1"; }
finish() {
	echo "$passed passed, $failed failed"
	[ "$failed" -eq 0 ]
	exit
}

HOST_FLAGS=()
if grep -q '^LUNET_SANITIZE:BOOL=ON' "$BUILD/CMakeCache.txt"; then
	HOST_FLAGS=(-fsanitize=address,undefined -fno-omit-frame-pointer)
fi
# run CMD...: runs a host as a new user would, with no loader path set.
run() { env -u LD_LIBRARY_PATH "$@"; }

if ! cmake --install "$BUILD" --prefix "$PREFIX" >"$TMP/install.log" 2>&1; then
	fail "cmake --install $BUILD --prefix $PREFIX"
	show "$TMP/install.log"
	finish
fi
pcdir=$(dirname "$(cd "$PREFIX" && compgen -G 'lib*/pkgconfig/lunet.pc' | head -n 1)")
export PKG_CONFIG_PATH="$PREFIX/$pcdir"
libdir=$(pkg-config --variable=libdir lunet)

mkdir -p "$TMP/fix"
if ! "$BUILD/lunet" "$SRC/tests/host/make_fixtures.lua" "$TMP/fix" >"$TMP/fix.log" 2>&1; then
	fail "make_fixtures.lua"
	show "$TMP/fix.log"
	finish
fi

# ---- pkg-config gives what makes a host run ------------------------------------------

libs=$(pkg-config --libs lunet)
if [[ " $libs " == *" -Wl,-rpath,$libdir "* ]]; then ok; else
	fail "pkg-config --libs lunet carries an rpath to $libdir" "got: $libs"; fi

# ---- lunet.h's worked example, with the README's build line ---------------------------

# The first code block of the header's comment, from its #include to the
# closing brace of main.
sed -n '/^ \*     #include <stdio.h>/,/^ \*     }$/p' "$SRC/src/lunet.h" | sed -E 's/^ \*( {5})?//' \
	>"$TMP/host.c"
build_line=$(grep -o 'cc host.c $(pkg-config --cflags --libs lunet) -o host' "$SRC/README.md" | head -n 1)
if [ -z "$build_line" ]; then
	fail "README.md shows the build line 'cc host.c \$(pkg-config --cflags --libs lunet) -o host'"
elif (cd "$TMP" && cc "${HOST_FLAGS[@]}" host.c $(pkg-config --cflags --libs lunet) -o host) \
	>"$TMP/cc.log" 2>&1; then
	ok
	deps=$(run ldd "$TMP/host")
	if grep -qF "liblunet.so.0 => $libdir/liblunet.so.0" <<<"$deps"; then ok; else
		fail "the example finds liblunet.so.0 in the prefix with no LD_LIBRARY_PATH" "$deps"; fi
	cp "$TMP/fix/mlp.lunet" "$TMP/mlp.lunet"
	out=$(cd "$TMP" && run ./host 2>&1)
	if [[ "$out" =~ ^output\ \{2,10\},\ y\[0\]\ =\ -?[0-9.e+-]+$ ]]; then ok; else
		fail "lunet.h's example runs" "got: $out"; fi
else
	fail "build lunet.h's example: cc host.c \$(pkg-config --cflags --libs lunet) -o host"
	show "$TMP/host.c"
	show "$TMP/cc.log"
fi

# ---- the C host (cmocka) ------------------------------------------------------------

if cc "${HOST_FLAGS[@]}" -o "$TMP/test_host" "$SRC/tests/host/test_host.c" \
	$(pkg-config --cflags --libs lunet cmocka) >"$TMP/cc.log" 2>&1; then
	ok
	if run "$TMP/test_host" "$TMP/fix" >"$TMP/out" 2>&1; then ok; else
		fail "test_host (cmocka) against the installed library"
		show "$TMP/out"
	fi
else
	fail "build tests/host/test_host.c with pkg-config --cflags --libs lunet cmocka"
	show "$TMP/cc.log"
fi

# ---- the C++ host ------------------------------------------------------------------------

if c++ "${HOST_FLAGS[@]}" -std=c++17 -Wall -Wextra -o "$TMP/host_cpp" "$SRC/tests/host/host.cpp" \
	$(pkg-config --cflags --libs lunet) >"$TMP/cc.log" 2>&1; then
	ok
	if run "$TMP/host_cpp" "$TMP/fix" >"$TMP/out" 2>&1; then
		ok
		cat "$TMP/out"
	else
		fail "host_cpp against the installed library"
		show "$TMP/out"
	fi
else
	fail "build tests/host/host.cpp with c++ and pkg-config --cflags --libs lunet"
	show "$TMP/cc.log"
fi

finish
