-- common.lua -- what the tests under mpirun share: joins the job (at least
-- two ranks), and maxdiff, the largest |a - b| over all elements and all
-- ranks.  Its name does not match test_*.lua, so CTest does not run it
-- alone.  A test loads it relative to its own path:
--
--   local c = dofile((arg[0]:match("^(.*)/") or ".") .. "/common.lua")
--   local rank, size, maxdiff = c.rank, c.size, c.maxdiff
--   -- c.harness: tests/lua/harness.lua (eq, raises, ...)
local lunet = lunet or require "lunet"
local dist = lunet.dist
local here = arg[0]:match("^(.*)/") or "."

local rank, size = dist.init()
assert(size >= 2, "run under mpirun with at least 2 ranks")

local function maxdiff(a, b)
	local d = lunet.tensor{(a - b):abs():max()}
	dist.allreduce(d, "max")
	return d[1]
end

return {
	rank = rank,
	size = size,
	maxdiff = maxdiff,
	harness = dofile(here .. "/../lua/harness.lua"),
}
