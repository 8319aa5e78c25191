#!/bin/bash
# test_jobs.sh MPIRUN BUILD_DIR SOURCE_DIR -- whole jobs under mpirun: a
# rank that fails ends the whole job; a job that succeeds exits 0; the
# stock lua5.4 interpreter can run a job too.
#
# Each case runs a small script under `mpirun --oversubscribe -np N`,
# inside `timeout`: a failing job must end with a non-zero status well
# before the timeout (a rank left waiting in a collective call would hang
# the job until it), and stderr must carry the failing rank's own message.
# No timing is measured: the timeout is only the bound that tells an
# ending job from a hung one.  STOCK_LUA_ENV (set by CTest, a ;-separated
# list of VAR=value) preloads the sanitizer runtime into lua5.4.  The checks
# come from tests/sh/lib.sh.
set -u

MPIRUN=${1:?usage: test_jobs.sh MPIRUN BUILD_DIR SOURCE_DIR}
BUILD=$(cd "${2:?usage: test_jobs.sh MPIRUN BUILD_DIR SOURCE_DIR}" && pwd)
SRC=$(cd "${3:?usage: test_jobs.sh MPIRUN BUILD_DIR SOURCE_DIR}" && pwd)
LUNET=$BUILD/lunet
STOCK_ENV=()
if [ -n "${STOCK_LUA_ENV:-}" ]; then
	IFS=';' read -r -a entries <<<"$STOCK_LUA_ENV"
	for e in "${entries[@]}"; do STOCK_ENV+=(-x "$e"); done
fi
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
LIMIT=60

. "$SRC/tests/sh/lib.sh"
exec </dev/null

# mpi NP ARGS...: NP ranks, killed after LIMIT seconds (status 124 or 137).
mpi() { timeout --kill-after=5 "$LIMIT" "$MPIRUN" --oversubscribe -np "$@"; }
ended() { [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && [ "$rc" -ne 137 ]; }

# job NAME NP WANT SCRIPT: runs SCRIPT (Lua source) on NP ranks and
# expects a non-zero exit before the timeout, with WANT in stderr.
job() {
	local name=$1 np=$2 want=$3
	printf '%s\n' "$4" >"$TMP/script.lua"
	run mpi "$np" "$LUNET" "$TMP/script.lua"
	check "$name: the job ends, failing, before the timeout" ended
	check "$name: stderr has '$want'" grep -qF -- "$want" "$TMP/err"
}

# One rank raises while the others wait in a collective call.
job "rank 1 fails, rank 0 in a barrier" 2 "boom from rank 1" '
local rank = lunet.dist.init()
if rank == 1 then error("boom from rank " .. rank) end
lunet.dist.barrier()'
check "the failing rank is named" grep -qF "rank 1 of 2 failed" "$TMP/err"

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
run mpi 2 "$LUNET" "$TMP/script.lua"
check "a job that succeeds exits 0" bash -c "[ $rc -eq 0 ] && grep -q 'rank	1	of	2' '$TMP/out'"

# The stock interpreter, with lunet.so from the build: a job that
# succeeds, and a reduction across its ranks.
run mpi 2 ${STOCK_ENV[@]+"${STOCK_ENV[@]}"} lua5.4 \
	-e "package.cpath = '$BUILD/?.so;' .. package.cpath" \
	-e 'local lunet = require "lunet"; local r, s = lunet.dist.init()
		local t = lunet.full({4}, r + 1); lunet.dist.allreduce(t); print("sum", t:sum())'
check "lua5.4 requiring lunet.so runs a job" \
	bash -c "[ $rc -eq 0 ] && [ \$(grep -c '^sum	12.0\$' '$TMP/out') -eq 2 ]"

finish
