-- test_collectives.lua -- lunet.dist across ranks: allreduce (sum, mean,
-- max, min; blocking or not) and broadcast on tensors of several sizes,
-- contiguous or not;
-- sizes, roots and model layouts that differ across ranks are errors on
-- every rank alike; broadcast_parameters; average_gradients with weights,
-- on pending zeros, without allocating.
--
-- Run by CTest under `mpirun --oversubscribe -np 2` and `-np 3`:
--   mpirun --oversubscribe -np 3 build/lunet tests/mpi/test_collectives.lua
-- A failed check raises at once: the runner prints it and ends the job.
local lunet = lunet or require "lunet"
local nn, dist = lunet.nn, lunet.dist
local common = dofile((arg[0]:match("^(.*)/") or ".") .. "/common.lua")
local rank, size, maxdiff = common.rank, common.size, common.maxdiff
local eq, raises = common.harness.eq, common.harness.raises

-- ---- allreduce and broadcast on tensors of several sizes ----------------------
local sum_factor = size * (size + 1) / 2   -- sum over ranks of (rank + 1)
for _, n in ipairs{1, 2, 7, 1000, 65537, 1000003} do
	local base = lunet.arange(n)           -- 1..n: exact in float32 times 6
	local function mine() return base * (rank + 1) end
	local what = string.format("n=%d", n)

	local t = mine()
	eq(dist.allreduce(t), t, what .. ": allreduce returns its tensor")
	eq(maxdiff(t, base * sum_factor), 0, what .. ": sum")
	t = mine()
	dist.allreduce(t, "mean")
	local mean_err = maxdiff(t, base * (sum_factor / size))
	-- one rounding of the division: half an ulp of the largest value, n (size+1)/2
	assert(mean_err <= n * (size + 1) / 2 * 2 ^ -24, what .. ": mean off by " .. mean_err)
	t = mine()
	dist.allreduce(t, "max")
	eq(maxdiff(t, base * size), 0, what .. ": max")
	t = mine()
	dist.allreduce(t, "min")
	eq(maxdiff(t, base), 0, what .. ": min")

	-- non-blocking: two reductions in flight, tested, then waited for
	local a, b = mine(), mine()
	local ra = dist.iallreduce(a)
	local rb = dist.iallreduce(b, "mean")
	local done = false
	for _ = 1, 3 do done = ra:test() end
	eq(type(done), "boolean", what .. ": test")
	eq(rb:wait(), b, what .. ": wait returns the tensor")
	eq(ra:wait(), a, what .. ": wait returns the tensor")
	eq(ra:test(), true, what .. ": a finished request")
	eq(maxdiff(a, base * sum_factor), 0, what .. ": iallreduce sum")
	assert(maxdiff(b, base * (sum_factor / size)) <= n * (size + 1) / 2 * 2 ^ -24,
		what .. ": iallreduce mean")

	for _, root in ipairs{0, 1, size - 1} do
		t = base + 1000 * rank
		eq(dist.broadcast(t, root), t, what .. ": broadcast returns its tensor")
		eq(maxdiff(t, base + 1000 * root), 0, what .. ": broadcast from " .. root)
	end
end

-- a non-contiguous view: only its elements take part, the rest stay
do
	local x = lunet.arange(20):reshape(4, 5) * (rank + 1)
	local v = x:narrow(2, 2, 2)
	dist.allreduce(v)
	local want = lunet.arange(20):reshape(4, 5) * (rank + 1)
	want:narrow(2, 2, 2):copy(lunet.arange(20):reshape(4, 5):narrow(2, 2, 2) * sum_factor)
	eq(maxdiff(x, want), 0, "allreduce on a view")
	local y = lunet.arange(20):reshape(4, 5) + rank
	dist.broadcast(y:narrow(1, 2, 2), size - 1)
	local ywant = lunet.arange(20):reshape(4, 5) + rank
	ywant:narrow(1, 2, 2):add_(size - 1 - rank)
	eq(maxdiff(y, ywant), 0, "broadcast into a view")
end

eq(dist.launched(), true, "launched under mpirun")

-- ---- errors that every rank sees alike (no rank is left waiting) ------------------
raises("dist.allreduce: the number of elements differs across ranks: from 3 to " .. (size + 2),
	dist.allreduce, lunet.ones(3 + rank))
raises("dist.broadcast: the number of elements differs across ranks", dist.broadcast,
	lunet.ones(1 + rank), 0)
raises("dist.broadcast: the root differs across ranks: from 0 to " .. (size - 1),
	dist.broadcast, lunet.ones(4), rank)
raises("dist.broadcast: root must be a rank in 0.." .. (size - 1) .. ", got " .. size,
	dist.broadcast, lunet.ones(4), size)
raises("dist.broadcast: root must be a rank in 0.." .. (size - 1) .. ", got -1",
	dist.broadcast, lunet.ones(4), -1)
raises("dist.broadcast: root must be an integer rank, got string", dist.broadcast,
	lunet.ones(4), "0")
raises("dist.allreduce: op must be \"sum\", \"mean\", \"max\" or \"min\", got \"avg\"",
	dist.allreduce, lunet.ones(4), "avg")
dist.barrier()

-- ---- broadcast_parameters ---------------------------------------------------------
do
	lunet.seed(100 + rank)   -- a different start on every rank
	local model = nn.Sequential{nn.Linear(5, 4), nn.BatchNorm(4), nn.ReLU(), nn.Linear(4, 3)}
	model:forward(lunet.randn(8, 5))   -- running statistics differ too
	local bn = model:get(2)
	lunet.seed(100)
	local ref = nn.Sequential{nn.Linear(5, 4), nn.BatchNorm(4), nn.ReLU(), nn.Linear(4, 3)}
	ref:forward(lunet.randn(8, 5))
	dist.broadcast_parameters(model)
	local ps = model:parameters()
	local rs = ref:parameters()
	eq(#ps, 6, "parameters")
	for i = 1, #ps do
		eq(maxdiff(ps[i], rs[i]), 0, "parameter " .. i .. " is rank 0's")
	end
	eq(maxdiff(bn.running_mean, ref:get(2).running_mean), 0, "running_mean is rank 0's")
	eq(maxdiff(bn.running_var, ref:get(2).running_var), 0, "running_var is rank 0's")

	local odd = nn.Sequential{nn.Linear(5, 2 + rank)}
	raises("dist.broadcast_parameters: the model's layout (number and sizes of its parameters " ..
		"and buffers) differs across ranks", dist.broadcast_parameters, odd)
	raises("dist.broadcast_parameters: expected a model", dist.broadcast_parameters, 42)
end

-- ---- average_gradients --------------------------------------------------------------
do
	local model = nn.Sequential{nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 2)}
	local _, gs = model:parameters()
	-- rank r's gradients are all r+1, weighted by n = r+1:
	-- sum_r (r+1)^2 / sum_r (r+1)
	local num, den = 0, 0
	for r = 0, size - 1 do
		num, den = num + (r + 1) ^ 2, den + (r + 1)
	end
	for _, g in ipairs(gs) do g:fill(rank + 1) end
	dist.average_gradients(model, rank + 1)
	for i, g in ipairs(gs) do
		assert(maxdiff(g, lunet.full(g:shape(), num / den)) <= 1e-6,
			"weighted mean of gradient " .. i)
	end
	-- equal weights: the plain mean over ranks
	for _, g in ipairs(gs) do g:fill(rank + 1) end
	dist.average_gradients(model, 1)
	for i, g in ipairs(gs) do
		assert(maxdiff(g, lunet.full(g:shape(), (size + 1) / 2)) <= 1e-6, "mean of gradient " .. i)
	end
	-- rank 0's gradients are pending zeros (zero_grad, no backward since)
	for _, g in ipairs(gs) do g:fill(2) end
	if rank == 0 then model:zero_grad() end
	dist.average_gradients(model, 1)
	for i, g in ipairs(gs) do
		assert(maxdiff(g, lunet.full(g:shape(), 2 * (size - 1) / size)) <= 1e-6,
			"pending zeros of gradient " .. i)
	end
	-- a rank with no samples counts for nothing
	for _, g in ipairs(gs) do g:fill(rank + 1) end
	dist.average_gradients(model, rank == 0 and 0 or 3)
	for i, g in ipairs(gs) do
		assert(maxdiff(g, lunet.full(g:shape(), (sum_factor - 1) / (size - 1))) <= 1e-6,
			"zero weight, gradient " .. i)
	end
	-- the steady state allocates nothing
	local a0 = lunet.alloc_stats().allocs
	for _ = 1, 3 do dist.average_gradients(model) end
	eq(lunet.alloc_stats().allocs - a0, 0, "allocations in average_gradients")
	-- a plain table of gradient tensors
	local list = {lunet.full({3}, rank + 1), lunet.full({2, 2}, 2 * (rank + 1))}
	dist.average_gradients(list, 1)
	assert(maxdiff(list[1], lunet.full({3}, (size + 1) / 2)) <= 1e-6, "list gradient 1")
	assert(maxdiff(list[2], lunet.full({2, 2}, size + 1)) <= 1e-6, "list gradient 2")

	raises("dist.average_gradients: the weights of all ranks sum to 0", dist.average_gradients,
		model, 0)
	local odd = nn.Sequential{nn.Linear(6, 1 + rank)}
	raises("dist.average_gradients: the number of gradient elements differs across ranks",
		dist.average_gradients, odd)
	raises("dist.average_gradients: n must be in 0..2^24, got -1", dist.average_gradients,
		model, -1)
	raises("dist.average_gradients: n must be an integer number of samples, got number",
		dist.average_gradients, model, 1.5)
	raises("dist.average_gradients: gradient 1 is string, expected lunet.Tensor",
		dist.average_gradients, {"x"})
end

dist.barrier()
if rank == 0 then print(string.format("collectives: all checks passed on %d ranks", size)) end
