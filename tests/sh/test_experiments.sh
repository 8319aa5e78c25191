#!/usr/bin/env bash
# The teaching experiments run and show what they claim:
#   deltas.lua    hand-computed deltas equal the engine's (<= 1e-6)
#   pairings.lua  N*dL/dz - (y_hat - y) is ~0 exactly for the canonical pairings
#   xor.lua       the 2-8-1 network solves XOR
# Usage: test_experiments.sh BUILD_DIR SOURCE_DIR
set -u
build=$1 src=$2
lunet="$build/lunet"
passed=0 failed=0
check() {  # check NAME COMMAND...
	local name=$1; shift
	if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL: $name"; fi
}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

"$lunet" "$src/experiments/deltas.lua" >"$out/deltas" 2>&1
check "deltas.lua exits 0" test $? -eq 0
check "deltas.lua says equal" grep -q "(equal)" "$out/deltas"
check "deltas.lua prints three layers" test "$(grep -cE '^[123] ' "$out/deltas")" -eq 3

"$lunet" "$src/experiments/pairings.lua" >"$out/pairings" 2>&1
check "pairings.lua exits 0" test $? -eq 0
# canonical rows: error below 1e-6; non-canonical defined rows: above 1e-2
awk '$3 == "yes" && $4 == "true"  { if ($5 + 0 > 1e-6) bad = 1; n++ }
     END { exit (bad || n != 3) }' "$out/pairings"
check "the three canonical pairings are exact" test $? -eq 0
awk '$3 == "yes" && $4 == "false" { if ($5 + 0 < 1e-2) bad = 1; n++ }
     END { exit (bad || n != 5) }' "$out/pairings"
check "the five other defined pairings are not" test $? -eq 0
check "undefined pairings say why" test "$(grep -c ' no ' "$out/pairings")" -eq 7

"$lunet" "$src/experiments/xor.lua" >"$out/xor" 2>&1
check "xor.lua exits 0" test $? -eq 0
check "xor.lua solves XOR" grep -q "4 of 4 correct" "$out/xor"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
