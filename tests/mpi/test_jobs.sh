#!/bin/bash
# test_jobs.sh MPIRUN BUILD_DIR -- whole jobs under mpirun: a rank that
# fails ends the whole job; a job that succeeds exits 0; the stock lua5.4
# interpreter can run a job too.
#
# Each case runs a small script under `mpirun --oversubscribe -np N`,
# inside `timeout`: a failing job must end with a non-zero status well
# before the timeout (a rank left waiting in a collective call would hang
# the job until it), and stderr must carry the failing rank's own message.
# No timing is measured: the timeout is only the bound that tells an
# ending job from a hung one.  STOCK_LUA_ENV (set by CTest, a ;-separated
# list of VAR=value) preloads the sanitizer runtime into lua5.4.
set -u

MPIRUN=${1:?usage: test_jobs.sh MPIRUN BUILD_DIR}
BUILD=$(cd "${2:?usage: test_jobs.sh MPIRUN BUILD_DIR}" && pwd)
LUNET=$BUILD/lunet
STOCK_ENV=()
if [ -n "${STOCK_LUA_ENV:-}" ]; then
	IFS=';' read -r -a entries <<<"$STOCK_LUA_ENV"
	for e in "${entries[@]}"; do STOCK_ENV+=(-x "$e"); done
fi
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
LIMIT=60

passed=0
failed=0

fail() {
	failed=$((failed + 1))
	echo "FAIL: $1"
	shift
	for line in "$@"; do echo "    $line"; done
	echo "    --- stdout:"; sed 's/^/    | /' "$TMP/out"
	echo "    --- stderr:"; sed 's/^/    | /' "$TMP/err"
}

# job NAME NP WANT SCRIPT: runs SCRIPT (Lua source) on NP ranks and
# expects a non-zero exit before the timeout, with WANT in stderr.
job() {
	local name=$1 np=$2 want=$3
	printf '%s\n' "$4" >"$TMP/script.lua"
	timeout --kill-after=5 "$LIMIT" "$MPIRUN" --oversubscribe -np "$np" "$LUNET" \
		"$TMP/script.lua" >"$TMP/out" 2>"$TMP/err"
	local rc=$?
	if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
		fail "$name: the job hung (killed by timeout after ${LIMIT}s)"
	elif [ "$rc" -eq 0 ]; then
		fail "$name: exit status 0, expected a failure"
	elif ! grep -qF -- "$want" "$TMP/err"; then
		fail "$name: stderr lacks '$want' (exit status $rc)"
	else
		passed=$((passed + 1))
	fi
}

# One rank raises while the others wait in a collective call.
job "rank 1 fails, rank 0 in a barrier" 2 "boom from rank 1" '
local rank = lunet.dist.init()
if rank == 1 then error("boom from rank " .. rank) end
lunet.dist.barrier()'
grep -qF "rank 1 of 2 failed" "$TMP/err" ||
	fail "the failing rank is named" "expected 'rank 1 of 2 failed' in stderr"

job "rank 0 fails, the others in an allreduce" 3 "boom from rank 0" '
local rank = lunet.dist.init()
if rank == 0 then error("boom from rank " .. rank) end
lunet.dist.allreduce(lunet.ones(1000))'

job "last rank fails mid-training" 3 "attempt to call a nil value" '
local nn, optim, data, dist = lunet.nn, lunet.optim, lunet.data, lunet.dist
local rank, size = dist.init()
local model = nn.Sequential{nn.Linear(4, 3)}
local opt = optim.SGD(model, {lr = 0.1})
local x, y = lunet.randn(40, 4), lunet.randn(40, 3)
local crit = nn.MSELoss()
local step = 0
for xb, yb in data.batches(x, y, 8, {shard = true}) do
	step = step + 1
	opt:zero_grad()
	local z = model:forward(xb)
	crit:forward(z, yb)
	if rank == size - 1 and step == 3 then undefined_function() end
	model:backward(xb, crit:backward(z, yb))
	dist.average_gradients(model)
	opt:step()
end'

# A bad call caught on every rank alike is an error on every rank.
job "every rank fails in the same check" 2 "dist.allreduce: the number of elements differs across ranks" '
local rank = lunet.dist.init()
lunet.dist.allreduce(lunet.ones(3 + rank))'

# Forgetting init: a clear error, on every rank.
job "no init" 2 "dist.rank: not initialised: call lunet.dist.init() first" '
print(lunet.dist.rank())'

# A script that ends well still exits 0 (the control).
printf '%s\n' 'local r, s = lunet.dist.init(); lunet.dist.barrier(); print("rank", r, "of", s)' \
	>"$TMP/script.lua"
timeout --kill-after=5 "$LIMIT" "$MPIRUN" --oversubscribe -np 2 "$LUNET" "$TMP/script.lua" \
	>"$TMP/out" 2>"$TMP/err"
rc=$?
if [ "$rc" -ne 0 ] || ! grep -q "rank	1	of	2" "$TMP/out"; then
	fail "a job that succeeds exits 0 (status $rc)"
else
	passed=$((passed + 1))
fi

# The stock interpreter, with lunet.so from the build: a job that
# succeeds, and a reduction across its ranks.
timeout --kill-after=5 "$LIMIT" "$MPIRUN" --oversubscribe -np 2 ${STOCK_ENV[@]+"${STOCK_ENV[@]}"} \
	lua5.4 -e "package.cpath = '$BUILD/?.so;' .. package.cpath" \
	-e 'local lunet = require "lunet"; local r, s = lunet.dist.init()
		local t = lunet.full({4}, r + 1); lunet.dist.allreduce(t); print("sum", t:sum())' \
	>"$TMP/out" 2>"$TMP/err" </dev/null
rc=$?
if [ "$rc" -ne 0 ] || [ "$(grep -c "^sum	12.0$" "$TMP/out")" -ne 2 ]; then
	fail "lua5.4 requiring lunet.so runs a job (status $rc)" "expected 'sum	12.0' from both ranks"
else
	passed=$((passed + 1))
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
