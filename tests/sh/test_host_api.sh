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
# run by BUILD_DIR/lunet.  The checks come from lib.sh.
#
# Under the sanitizer build (LUNET_SANITIZE=ON in the cache) the hosts are
# compiled with the sanitizers too.
set -u

BUILD=$(cd "${1:?usage: test_host_api.sh BUILD_DIR SOURCE_DIR}" && pwd)
SRC=$(cd "${2:?usage: test_host_api.sh BUILD_DIR SOURCE_DIR}" && pwd)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
PREFIX="$TMP/prefix"
. "$SRC/tests/sh/lib.sh"

HOST_FLAGS=()
if grep -q '^LUNET_SANITIZE:BOOL=ON' "$BUILD/CMakeCache.txt"; then
	HOST_FLAGS=(-fsanitize=address,undefined -fno-omit-frame-pointer)
fi
# Hosts run as a new user runs them: no loader path set.
unset LD_LIBRARY_PATH

run cmake --install "$BUILD" --prefix "$PREFIX"
check "cmake --install $BUILD --prefix $PREFIX" [ "$rc" -eq 0 ]
pcdir=$(cd "$PREFIX" && compgen -G 'lib*/pkgconfig/lunet.pc' | head -n 1)
check "the prefix has lunet.pc" [ -n "$pcdir" ]
export PKG_CONFIG_PATH="$PREFIX/$(dirname "${pcdir:-lib/pkgconfig/x}")"
libdir=$(pkg-config --variable=libdir lunet)

mkdir -p "$TMP/fix"
run "$BUILD/lunet" "$SRC/tests/host/make_fixtures.lua" "$TMP/fix"
check "make_fixtures.lua writes the models" [ "$rc" -eq 0 ]

# ---- pkg-config gives what makes a host run ------------------------------------------

run pkg-config --libs lunet
check "pkg-config --libs lunet carries an rpath to $libdir" out_has " -Wl,-rpath,$libdir "

# ---- lunet.h's worked example, with the README's build line ---------------------------

# The first code block of the header's comment, from its #include to the
# closing brace of main.
sed -n '/^ \*     #include <stdio.h>/,/^ \*     }$/p' "$SRC/src/lunet.h" |
	sed -E 's/^ \*( {5})?//' >"$TMP/host.c"
line='cc host.c $(pkg-config --cflags --libs lunet) -o host'
run grep -qF "$line" "$SRC/README.md"
check "README.md shows the build line: $line" [ "$rc" -eq 0 ]
cp "$TMP/fix/mlp.lunet" "$TMP/mlp.lunet"
run bash -c "cd '$TMP' && cc ${HOST_FLAGS[*]} host.c \$(pkg-config --cflags --libs lunet) -o host"
check "build lunet.h's example with the README's line" [ "$rc" -eq 0 ]
run ldd "$TMP/host"
check "the example finds liblunet.so.0 in the prefix" out_has "liblunet\.so\.0 => $libdir/liblunet\.so\.0"
run bash -c "cd '$TMP' && ./host"
check "lunet.h's example runs" out_has '^output \{2,10\}, y\[0\] = -?[0-9.e+-]+$'

# ---- the C host (cmocka) and the C++ host ------------------------------------------------

run cc "${HOST_FLAGS[@]}" -o "$TMP/test_host" "$SRC/tests/host/test_host.c" \
	$(pkg-config --cflags --libs lunet cmocka)
check "build tests/host/test_host.c with pkg-config --cflags --libs lunet cmocka" [ "$rc" -eq 0 ]
run "$TMP/test_host" "$TMP/fix"
check "test_host (cmocka) against the installed library" [ "$rc" -eq 0 ]

run c++ "${HOST_FLAGS[@]}" -std=c++17 -Wall -Wextra -o "$TMP/host_cpp" "$SRC/tests/host/host.cpp" \
	$(pkg-config --cflags --libs lunet)
check "build tests/host/host.cpp with c++ and pkg-config --cflags --libs lunet" [ "$rc" -eq 0 ]
run "$TMP/host_cpp" "$TMP/fix"
check "host_cpp against the installed library" [ "$rc" -eq 0 ]
cat "$TMP/out"

finish
