-- test_dist.lua -- lunet.dist in one process, in every build.
--
-- Without MPI (the default build): dist.available is false and every
-- function, and data.batches{shard=true}, is an error that says so.
-- With MPI: before init every function is an error that says to call it;
-- init gives a job of one rank (this test does not run under mpirun),
-- where the collectives leave tensors as they are, average_gradients
-- leaves gradients as they are, and sharded batches are the plain ones.
-- tests/mpi/ covers several ranks.
local lunet = lunet or require "lunet"
local nn, data, dist = lunet.nn, lunet.data, lunet.dist

local SEED = 4242
local harness = dofile((arg[0]:match("^(.*)/") or ".") .. "/harness.lua")
local h = harness.new{seed = SEED}
local test, eq, raises = h.test, h.eq, h.raises

local function model()
	return nn.Sequential{nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)}
end

-- Every function that needs the job, with valid arguments.
local calls = {
	{"init", function() return dist.init() end},
	{"rank", function() return dist.rank() end},
	{"size", function() return dist.size() end},
	{"allreduce", function() return dist.allreduce(lunet.ones(3)) end},
	{"iallreduce", function() return dist.iallreduce(lunet.ones(3)) end},
	{"broadcast", function() return dist.broadcast(lunet.ones(3)) end},
	{"barrier", function() return dist.barrier() end},
	{"broadcast_parameters", function() return dist.broadcast_parameters(model()) end},
	{"average_gradients", function() return dist.average_gradients(model()) end},
	{"abort", function() return dist.abort() end},
}

if not dist.available then
	test("without MPI every function says so", function()
		eq(dist.initialized(), false, "initialized")
		eq(dist.launched(), false, "launched (not under mpirun)")
		for _, c in ipairs(calls) do
			raises("dist." .. c[1] .. ": this lunet was built without MPI (configure it with " ..
				"cmake -DLUNET_MPI=ON)", c[2])
		end
		raises("data.batches: shard=true needs lunet.dist, but this lunet was built without MPI",
			data.batches, lunet.ones(4, 2), 2, {shard = true})
	end)
	h.done()
	return
end

test("before init every function says to call it", function()
	eq(dist.initialized(), false, "initialized")
	for _, c in ipairs(calls) do
		if c[1] ~= "init" then
			raises("dist." .. c[1] .. ": not initialised: call lunet.dist.init() first", c[2])
		end
	end
	raises("data.batches: shard=true needs lunet.dist.init() first", data.batches,
		lunet.ones(4, 2), 2, {shard = true})
end)

test("init: a job of one rank, idempotent", function()
	local rank, size = dist.init()
	eq(rank, 0, "rank")
	eq(size, 1, "size")
	eq(dist.initialized(), true, "initialized")
	eq(dist.rank(), 0, "dist.rank()")
	eq(dist.size(), 1, "dist.size()")
	local r2, s2 = dist.init()
	eq(r2 .. "/" .. s2, "0/1", "second init")
end)

test("collectives on one rank leave tensors as they are", function()
	for _, op in ipairs{"sum", "mean", "max", "min"} do
		local t = lunet.randn(5, 3)
		local want = t:clone()
		eq(dist.allreduce(t, op), t, op .. " returns t")
		eq(t:allclose(want, 0, 0), true, op)
	end
	local x = lunet.randn(4, 5)
	local want = x:clone()
	dist.allreduce(x:narrow(2, 2, 3), "sum")
	eq(x:allclose(want, 0, 0), true, "view")
	local b = lunet.randn(7)
	local bwant = b:clone()
	eq(dist.broadcast(b, 0), b, "broadcast returns t")
	eq(b:allclose(bwant, 0, 0), true, "broadcast")
	local c = lunet.randn(9)
	local cwant = c:clone()
	local r = dist.iallreduce(c, "max")
	eq(r:wait(), c, "iallreduce: wait returns t")
	eq(r:test(), true, "iallreduce: done")
	eq(c:allclose(cwant, 0, 0), true, "iallreduce")
	do
		local unwaited <close> = dist.iallreduce(lunet.ones(4))   -- waited for when closed
	end
	do   -- the tensor closed while the reduction runs: the request keeps its memory
		local gone = lunet.full({5}, 2)
		local r2 = dist.iallreduce(gone)
		getmetatable(gone).__close(gone)
		r2:wait()
	end
	dist.barrier()
	eq(dist.launched(), false, "launched (not under mpirun)")
end)

test("argument errors", function()
	raises("dist.allreduce: op must be \"sum\", \"mean\", \"max\" or \"min\", got \"prod\"",
		dist.allreduce, lunet.ones(2), "prod")
	raises("(lunet.Tensor expected, got table)", dist.allreduce, {1, 2})
	raises("dist.broadcast: root must be a rank in 0..0, got 1", dist.broadcast, lunet.ones(2), 1)
	raises("dist.broadcast: root must be an integer rank, got number", dist.broadcast,
		lunet.ones(2), 0.5)
	raises("dist.broadcast_parameters: root must be a rank in 0..0, got 3",
		dist.broadcast_parameters, model(), 3)
	raises("dist.broadcast_parameters: expected a model (a module, or a table with a " ..
		"parameters method) or a table of tensors, got number", dist.broadcast_parameters, 5)
	raises("dist.average_gradients: expected a model (a module, or a table with a parameters " ..
		"method) or a table of gradient tensors, got string", dist.average_gradients, "m")
	raises("dist.average_gradients: n must be in 0..2^24, got -2", dist.average_gradients,
		model(), -2)
	raises("dist.average_gradients: the weights of all ranks sum to 0: no rank had samples",
		dist.average_gradients, model(), 0)
	local closed
	do
		local m <close> = model()
		closed = m
	end
	raises("dist.average_gradients: the model is closed", dist.average_gradients, closed)
	raises("dist.average_gradients: gradient 2 (shape {2,2}) is not contiguous",
		dist.average_gradients, {lunet.ones(3), lunet.ones(2, 4):narrow(2, 1, 2)})
	raises("dist.abort: code must be in 0..255, got 300", dist.abort, 300)
	raises("dist.iallreduce: t must be contiguous (clone() a view first)", dist.iallreduce,
		lunet.ones(3, 4):narrow(2, 1, 2))
	raises("dist.iallreduce: op must be \"sum\", \"mean\", \"max\" or \"min\", got \"x\"",
		dist.iallreduce, lunet.ones(2), "x")
	raises("data.batches: option 'shard' must be a boolean, got number", data.batches,
		lunet.ones(4, 2), 2, {shard = 1})
end)

test("average_gradients on one rank keeps the gradients; steady state allocates nothing",
	function()
		local m = model()
		local x = lunet.randn(6, 3)
		m:forward(x)
		m:backward(x, lunet.randn(6, 2))
		local _, gs = m:parameters()
		local before = {}
		for i, g in ipairs(gs) do before[i] = g:clone() end
		dist.average_gradients(m, 6)
		for i, g in ipairs(gs) do
			eq(g:allclose(before[i], 0, 0), true, "gradient " .. i .. " exactly as it was")
		end
		local a0 = lunet.alloc_stats().allocs
		for _ = 1, 3 do dist.average_gradients(m) end
		eq(lunet.alloc_stats().allocs - a0, 0, "allocations")
		-- the model grew: its packer is made again, over the new gradients
		m:add(nn.Linear(2, 2))
		local _, gs2 = m:parameters()
		for _, g in ipairs(gs2) do g:fill(3) end
		dist.average_gradients(m, 1)
		eq(gs2[#gs2]:allclose(lunet.full({2}, 3), 0, 0), true, "new layer's gradient")
	end)

test("shard=true on one rank gives the plain batches", function()
	local x = lunet.arange(23):reshape(23, 1)
	for _, shuffle in ipairs{false, true} do
		lunet.seed(3)
		local plain = {}
		for xb in data.batches(x, 5, {shuffle = shuffle}) do plain[#plain + 1] = xb:clone() end
		lunet.seed(3)
		local k = 0
		for xb in data.batches(x, 5, {shuffle = shuffle, shard = true}) do
			k = k + 1
			eq(xb:allclose(plain[k], 0, 0), true, "batch " .. k)
		end
		eq(k, #plain, "batches")
	end
end)

h.done()
