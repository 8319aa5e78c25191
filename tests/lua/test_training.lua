-- test_training.lua -- whole training loops: reproducibility under a seed,
-- learning on small synthetic problems, and train/evaluate behaviour.
local lunet = lunet or require "lunet"
local nn, optim, data = lunet.nn, lunet.optim, lunet.data

local harness = dofile((arg[0]:match("^(.*)/") or ".") .. "/harness.lua")
-- 0x5eed is the generator's seed at start-up: seeding with it changes
-- nothing, and a failure can name it.
local h = harness.new{seed = 0x5eed}
local test, check = h.test, h.check

-- A synthetic 3-class problem: class c centred at a different point.
local function blobs(n, dim)
	local x, y = lunet.randn(n, dim) * 0.5, lunet.zeros(n)
	for i = 1, n do
		local c = (i - 1) % 3 + 1
		y[i] = c
		x:set(i, c, x:get(i, c) + 2)
	end
	return x, y
end

-- Trains an MLP with dropout and shuffled batches; returns the loss of
-- every step.
local function run(seed, steps_out)
	lunet.seed(seed)
	local x, y = blobs(300, 5)
	local model = nn.Sequential{nn.Linear(5, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 3)}
	local crit = nn.CrossEntropyLoss()
	local opt = optim.SGD(model, {lr = 0.1, momentum = 0.9})
	local losses = steps_out or {}
	for _ = 1, 5 do
		for xb, yb in data.batches(x, y, 32, {shuffle = true}) do
			opt:zero_grad()
			local z = model:forward(xb)
			losses[#losses + 1] = crit:forward(z, yb)
			model:backward(xb, crit:backward(z, yb))
			opt:step()
		end
	end
	model:evaluate()
	local pred = model:forward(x):argmax(2):reshape(-1)
	local correct = 0
	for i = 1, #y do
		if pred[i] == y[i] then correct = correct + 1 end
	end
	return losses, correct / #y
end

test("same seed, same losses; another seed, other losses", function()
	local a = run(42)
	local b = run(42)
	local c = run(43)
	check(#a == #b and #a > 40, "same number of steps")
	for i = 1, #a do
		check(a[i] == b[i], string.format("step %d: %.17g vs %.17g", i, a[i], b[i]))
	end
	local differs = false
	for i = 1, #a do differs = differs or a[i] ~= c[i] end
	check(differs, "a different seed gives a different run")
end)

test("an MLP learns separable blobs", function()
	local losses, acc = run(7)
	check(losses[#losses] < losses[1] * 0.5, string.format("loss fell from %.3f to %.3f",
	                                                       losses[1], losses[#losses]))
	check(acc > 0.95, "accuracy " .. acc)
end)

test("regression with MSE and Adam fits a linear map", function()
	lunet.seed(3)
	local w = lunet.tensor{{1.5}, {-2}, {0.5}}
	local x = lunet.randn(128, 3)
	local y = x:matmul(w) + 0.25
	local model = nn.Linear(3, 1)
	local crit = nn.MSELoss()
	local opt = optim.Adam(model, {lr = 0.05})
	local loss
	for _ = 1, 400 do
		opt:zero_grad()
		local z = model:forward(x)
		loss = crit:forward(z, y)
		model:backward(x, crit:backward(z, y))
		opt:step()
	end
	check(loss < 1e-4, "final loss " .. loss)
	check(model.weight:allclose(w:transpose(), 0, 1e-2), "weights recovered")
	check(math.abs(model.bias[1] - 0.25) < 1e-2, "bias recovered: " .. model.bias[1])
end)

test("a CNN step runs and lowers the loss on a fixed batch", function()
	lunet.seed(5)
	local model = nn.Sequential{
		nn.Conv2d(1, 4, 3, {padding = 1}), nn.BatchNorm(4), nn.ReLU(), nn.MaxPool2d(2),
		nn.Flatten(), nn.Linear(4 * 4 * 4, 3),
	}
	local x = lunet.randn(6, 1, 8, 8)
	local y = {1, 2, 3, 1, 2, 3}
	local crit = nn.CrossEntropyLoss()
	local opt = optim.SGD(model, {lr = 0.05, momentum = 0.9})
	local first, last
	for i = 1, 30 do
		opt:zero_grad()
		local z = model:forward(x)
		last = crit:forward(z, y)
		first = first or last
		model:backward(x, crit:backward(z, y))
		opt:step()
	end
	check(last < first * 0.5, string.format("loss %.3f -> %.3f", first, last))
	local bn = model:get(2)
	model:evaluate()
	local a = model:forward(x):clone()
	local b = model:forward(x)
	check(a:allclose(b, 0, 0), "evaluate mode is deterministic")
	check(bn.running_mean:abs():max() > 0, "running statistics were updated in training")
end)

h.done()
