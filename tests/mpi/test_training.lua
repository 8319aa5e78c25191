-- test_training.lua -- data-parallel training gives one process's weights.
--
-- Every rank trains a model on its shard of each batch
-- (data.batches{shard=true}) and averages gradients before each step; in
-- the same process it also trains the same model as one process would,
-- with the whole global batch.  After k steps the two sets of weights must
-- agree to float32 rounding, on every rank.  The data make the split
-- uneven: 53 samples in batches of 16 leave a last batch of 5, cut 3+2 on
-- two ranks and 2+2+1 on three, and 16 is cut 6+5+5 on three.  As a
-- control, averaging with equal weights instead must miss by far more.
--
-- Also: the shards of every batch are disjoint and together are exactly
-- the batch one process takes; a last batch with fewer samples than ranks
-- is skipped by all.
--
-- Run by CTest under `mpirun --oversubscribe -np 2` and `-np 3`.
local lunet = lunet or require "lunet"
local nn, optim, data, dist = lunet.nn, lunet.optim, lunet.data, lunet.dist
local common = dofile((arg[0]:match("^(.*)/") or ".") .. "/common.lua")
local rank, size, maxdiff = common.rank, common.size, common.maxdiff
local eq, raises = common.harness.eq, common.harness.raises

-- ---- data: the same on every rank ---------------------------------------------------
local N, B, C = 53, 16, 4
lunet.seed(2024)
local X = lunet.randn(N, 36)
local labels = {}
for i, u in ipairs(lunet.rand(N):totable()) do labels[i] = math.floor(u * C) + 1 end
local Y = lunet.tensor(labels)

local function mlp()
	return nn.Sequential{nn.Linear(36, 16), nn.Tanh(), nn.Linear(16, 12), nn.ReLU(),
		nn.Linear(12, C)}
end

local function cnn()
	return nn.Sequential{nn.Conv2d(1, 3, 3, {padding = 1}), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
		nn.Linear(27, C)}
end

-- Trains a fresh model for `epochs` epochs from the same seed and returns
-- it with the number of steps taken.  shard: the distributed way (with
-- `weights`: "samples", the default weighting, or "equal"); else one
-- process with the whole batch.
local function train(make, x, kind, shard, weights, bopts)
	lunet.seed(7)
	local model = make()
	local opt = kind == "adam" and optim.Adam(model, {lr = 0.01})
		or optim.SGD(model, {lr = 0.1, momentum = 0.9})
	local crit = nn.CrossEntropyLoss()
	local steps = 0
	for _ = 1, 2 do
		local o = {shuffle = bopts.shuffle, drop_last = bopts.drop_last, shard = shard}
		for xb, yb in data.batches(x, Y, B, o) do
			opt:zero_grad()
			local z = model:forward(xb)
			crit:forward(z, yb)
			model:backward(xb, crit:backward(z, yb))
			if shard then
				if weights == "equal" then
					dist.average_gradients(model, 1)
				else
					dist.average_gradients(model)
				end
			end
			opt:step()
			steps = steps + 1
		end
	end
	return model, steps
end

-- The largest difference between the parameters of two models (over ranks).
local function weight_diff(a, b)
	local pa, pb = a:parameters(), b:parameters()
	eq(#pa, #pb, "parameter count")
	local worst = 0
	for i = 1, #pa do worst = math.max(worst, maxdiff(pa[i], pb[i])) end
	return worst
end

-- Whether every rank holds the same weights.
local function in_step(model)
	for _, p in ipairs(model:parameters()) do
		local hi, lo = p:clone(), p:clone()
		dist.allreduce(hi, "max")
		dist.allreduce(lo, "min")
		if maxdiff(hi, lo) ~= 0 then return false end
	end
	return true
end

-- float32 rounding (eight ulps of weights of order 1), accumulated over 8 steps:
-- the sums over each batch run in a different order (per shard, then
-- across ranks) and the loss gradient is scaled by 1/n_r then n_r/B.
local TOL = 1e-6

local cases = {
	{"mlp", mlp, X, "sgd", {shuffle = true}},
	{"mlp", mlp, X, "adam", {shuffle = true}},
	{"mlp", mlp, X, "sgd", {shuffle = false}},
	{"mlp", mlp, X, "sgd", {shuffle = true, drop_last = true}},
	{"cnn", cnn, X:reshape(N, 1, 6, 6), "sgd", {shuffle = true}},
}
local largest = 0
for _, c in ipairs(cases) do
	local name, make, x, kind, bopts = table.unpack(c)
	local what = string.format("%s %s shuffle=%s drop_last=%s", name, kind,
		tostring(bopts.shuffle), tostring(bopts.drop_last or false))
	local ref, ref_steps = train(make, x, kind, false, nil, bopts)
	local got, steps = train(make, x, kind, true, "samples", bopts)
	eq(steps, ref_steps, what .. ": steps")
	assert(in_step(got), what .. ": the ranks' weights differ")
	local d = weight_diff(got, ref)
	if rank == 0 then
		print(string.format("%-42s np=%d  %2d steps  largest |w_dist - w_1proc| = %.3g", what,
			size, steps, d))
	end
	assert(d <= TOL, string.format("%s: weights differ from one process's by %.3g", what, d))
	largest = math.max(largest, d)
	if bopts.shuffle and not bopts.drop_last and kind == "sgd" then
		-- the control: equal weights on uneven shards are measurably wrong
		local wrong = train(make, x, kind, true, "equal", bopts)
		local dw = weight_diff(wrong, ref)
		if rank == 0 then
			print(string.format("%-42s np=%d  equal weights instead: %.3g", what, size, dw))
		end
		assert(dw > 100 * TOL, string.format("%s: equal weights should miss, missed by %.3g",
			what, dw))
	end
end
if rank == 0 then print(string.format("largest difference, np=%d: %.3g", size, largest)) end

-- ---- the shards: disjoint, and together one process's batch ------------------------
do
	local ids = lunet.arange(N)   -- x = sample ids
	lunet.seed(5)
	local whole = {}
	for xb in data.batches(ids, B, {shuffle = true}) do whole[#whole + 1] = xb:clone() end
	lunet.seed(5)
	local k = 0
	for xb in data.batches(ids, B, {shuffle = true, shard = true}) do
		k = k + 1
		local seen = lunet.zeros(N)
		for _, id in ipairs(xb:totable()) do seen[id] = seen[id] + 1 end
		dist.allreduce(seen)
		local want = lunet.zeros(N)
		for _, id in ipairs(whole[k]:totable()) do want[id] = 1 end
		eq(maxdiff(seen, want), 0, "batch " .. k .. ": shards cover it once")
		local n = xb:size(1)
		local q = whole[k]:size(1)
		eq(n, q // size + (rank < q % size and 1 or 0), "batch " .. k .. ": share size")
	end
	eq(k, #whole, "batches")

	-- fewer samples in the last batch than ranks: skipped on every rank
	local few = lunet.arange(B + size - 1)
	local sizes = {}
	for xb in data.batches(few, B, {shard = true}) do sizes[#sizes + 1] = xb:size(1) end
	eq(#sizes, 1, "a last batch of size-1 samples is skipped")

	raises("data.batches: shard=true needs the same samples on every rank, but x has from " ..
		N .. " to " .. (N + size - 1) .. " samples across ranks", data.batches,
		lunet.arange(N + rank), B, {shard = true})
end

dist.barrier()
if rank == 0 then print(string.format("training: all checks passed on %d ranks", size)) end
