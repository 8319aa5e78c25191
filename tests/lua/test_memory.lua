-- test_memory.lua -- lunet.memory_limit: a cap on the engine's live heap;
-- going over it is a Lua error that says out of memory, the objects of the
-- call that failed are as they were, and the same call succeeds once
-- memory is freed or the cap lifted.  (tests/fault/test_oom.c fails every
-- allocation of a whole script in turn; this is the script's view.)
local lunet = lunet or require "lunet"
local nn, optim = lunet.nn, lunet.optim

local harness = dofile((arg[0]:match("^(.*)/") or ".") .. "/harness.lua")
local h = harness.new{seed = 77, reseed = true}
local test, check, eq, raises = h.test, h.check, h.eq, h.raises

local function live() collectgarbage() collectgarbage() return lunet.alloc_stats().bytes_live end

test("memory_limit reads, sets and removes the cap", function()
	eq(lunet.memory_limit(), 0, "no cap by default")
	eq(lunet.memory_limit(1 << 30), 0, "returns the previous cap")
	eq(lunet.memory_limit(), 1 << 30, "reads it")
	eq(lunet.memory_limit(0), 1 << 30, "0 removes it")
	eq(lunet.memory_limit(), 0, "removed")
end)

test("going over the cap is an error that says out of memory; freeing memory lets it pass", function()
	local base = live()
	lunet.memory_limit(base + 100000)
	local ok, err = pcall(lunet.zeros, 1000, 1000)
	check(not ok and err:find("lunet.zeros: out of memory", 1, true), tostring(err))
	local a = lunet.zeros(100, 100)  -- 40000 bytes fit
	local ok2, err2 = pcall(lunet.zeros, 100, 200)  -- 80000 more do not
	check(not ok2 and err2:find("out of memory", 1, true), tostring(err2))
	a = nil
	collectgarbage()
	collectgarbage()
	local b = lunet.zeros(100, 200)  -- they do once a is freed
	eq(b:numel(), 20000, "allocated")
	lunet.memory_limit(0)
end)

test("a training step over the cap fails cleanly and succeeds again once the cap is lifted", function()
	lunet.seed(3)
	local model = nn.Sequential{nn.Linear(20, 64), nn.BatchNorm(64), nn.ReLU(), nn.Linear(64, 5)}
	local opt = optim.Adam(model, {lr = 0.01})
	local loss = nn.CrossEntropyLoss()
	local x, y = lunet.rand(16, 20), lunet.tensor{1, 2, 3, 4, 5, 1, 2, 3, 4, 5, 1, 2, 3, 4, 5, 1}
	local function step()
		opt:zero_grad()
		local z = model:forward(x)
		local l = loss:forward(z, y)
		model:backward(x, loss:backward(z, y))
		opt:step()
		return l
	end
	-- a twin that trains without a cap: the capped model must end the same
	lunet.seed(3)
	local twin = nn.Sequential{nn.Linear(20, 64), nn.BatchNorm(64), nn.ReLU(), nn.Linear(64, 5)}
	local topt = optim.Adam(twin, {lr = 0.01})
	local function twin_step()
		topt:zero_grad()
		local z = twin:forward(x)
		local l = loss:forward(z, y)
		twin:backward(x, loss:backward(z, y))
		topt:step()
		return l
	end
	local failed = 0
	for _ = 1, 3 do
		local want = twin_step()
		lunet.memory_limit(live() + 64)  -- nothing new fits: the first step needs buffers
		local ok, err = pcall(step)
		lunet.memory_limit(0)
		if not ok then
			failed = failed + 1
			check(err:find("out of memory", 1, true), "says out of memory: " .. tostring(err))
			eq(step(), want, "the retried step gives the loss of an uninterrupted one")
		else
			eq(ok and err, want, "a step that fits gives the same loss")
		end
	end
	check(failed >= 1, "the first step ran into the cap")
	local buffers, tb = model:buffers(), twin:buffers()
	for name, t in pairs(buffers) do
		check(t:allclose(tb[name], 0, 0), "buffer " .. name .. " as in the uninterrupted run")
	end
	local p, tp = model:parameters(), twin:parameters()
	for i = 1, #p do check(p[i]:allclose(tp[i], 0, 0), "parameter " .. i) end
end)

test("a steady-state step allocates nothing, so it runs under a cap at the live size", function()
	lunet.seed(4)
	local model = nn.Sequential{nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2)}
	local opt = optim.SGD(model, {lr = 0.1, momentum = 0.9})
	local x, gy = lunet.rand(4, 8), lunet.rand(4, 2)
	local function step()
		opt:zero_grad()
		model:forward(x)
		model:backward(x, gy)
		opt:step()
	end
	step()
	step()
	lunet.memory_limit(live())
	local ok, err = pcall(step)
	lunet.memory_limit(0)
	check(ok, "steady state under the cap: " .. tostring(err))
end)

test("memory_limit refuses what is not a size", function()
	raises("lunet.memory_limit: expected a number of bytes (an integer >= 0, 0 for no limit), got -1",
		lunet.memory_limit, -1)
	raises("lunet.memory_limit: expected a number of bytes (an integer >= 0, 0 for no limit), got 1.5",
		lunet.memory_limit, 1.5)
	raises("lunet.memory_limit: expected a number of bytes (an integer >= 0, 0 for no limit), got string",
		lunet.memory_limit, "1")
	raises("lunet.memory_limit: expected at most 1 argument, got 2", lunet.memory_limit, 1, 2)
	eq(lunet.memory_limit(), 0, "unchanged by the refusals")
end)

h.done()
