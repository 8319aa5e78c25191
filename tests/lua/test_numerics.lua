-- test_numerics.lua -- lunet.check_numerics: with it on, the first NaN or
-- infinity that a module writes (forward: its output; backward: its
-- parameter gradients, then its grad_input) is an error naming the
-- module's place in the model, what it produced where, and the step (the
-- model's forwards since the check was turned on).
local lunet = lunet or require "lunet"
local nn = lunet.nn

local harness = dofile((arg[0]:match("^(.*)/") or ".") .. "/harness.lua")
local h = harness.new{seed = 99, reseed = true}
local test, check, eq = h.test, h.check, h.eq

-- The message of the error fn(...) raises, exactly.
local function error_of(fn, ...)
	local ok, err = pcall(fn, ...)
	check(not ok, "expected an error")
	return err
end

local function mlp()
	lunet.seed(5)
	return nn.Sequential{nn.Linear(4, 8), nn.ReLU(), nn.Sequential{nn.Linear(8, 3), nn.LogSoftmax()}}
end

test("off by default: NaN passes through silently", function()
	eq(lunet.check_numerics(), false, "off")
	local m = mlp()
	local x = lunet.rand(2, 4)
	x[1][1] = 0 / 0
	local y = m:forward(x)
	check(y[1][1] ~= y[1][1], "NaN in the output")
end)

test("forward: the first layer whose output holds NaN, by its path, and the step", function()
	lunet.check_numerics(true)
	local m = mlp()
	local x = lunet.rand(2, 4)
	for _ = 1, 3 do m:forward(x) end
	m:get(3):get(1).weight[2][3] = 0 / 0
	eq(error_of(m.forward, m, x), "Sequential:forward: check_numerics: Sequential[3][1] " ..
		"(Linear(8 -> 3)): forward produced NaN in its output (row 1, column 2), at step 4", "message")
	m:get(3):get(1).weight[2][3] = 0.5
	eq(error_of(m.backward, m, x, lunet.ones(2, 3)),
		"Sequential:backward: backward called before forward", "no backward after a stopped forward")
	m:forward(x)
	lunet.check_numerics(false)
end)

test("forward: a finite computation that overflows to inf", function()
	lunet.check_numerics(true)
	local m = nn.Sequential{nn.Linear(2, 1), nn.Tanh()}
	m:get(1).weight:fill(3e38)
	m:get(1).bias:fill(0)
	eq(error_of(m.forward, m, lunet.full({1, 2}, 2)), "Sequential:forward: check_numerics: " ..
		"Sequential[1] (Linear(2 -> 1)): forward produced inf in its output (row 1, column 1), " ..
		"at step 1", "message")
	lunet.check_numerics(false)
end)

test("backward: a parameter gradient that overflows, named grad_weight", function()
	lunet.check_numerics(true)
	local m = nn.Sequential{nn.Linear(2, 1)}
	m:get(1).weight:fill(1e-3)
	local x = lunet.full({2, 2}, 10)
	m:forward(x)
	m:forward(x)
	eq(error_of(m.backward, m, x, lunet.full({2, 1}, 3e38)), "Sequential:backward: " ..
		"check_numerics: Sequential[1] (Linear(2 -> 1)): backward produced inf in grad_weight " ..
		"(row 1, column 1), at step 2", "message")
	lunet.check_numerics(false)
end)

test("backward: grad_input, after the parameter gradients, and the layers in backward order", function()
	lunet.check_numerics(true)
	local m = nn.Sequential{nn.Linear(1, 1), nn.ReLU(), nn.Linear(1, 2, {bias = false})}
	m:get(1).weight:fill(1)
	m:get(1).bias:fill(0)
	m:get(3).weight:fill(3e38)
	local x = lunet.ones(1, 1)
	m:forward(x)
	-- layer 3: grad_weight = gy^T relu(x) = 1 each (finite); grad_input = gy W = 6e38: inf
	eq(error_of(m.backward, m, x, lunet.ones(1, 2)), "Sequential:backward: check_numerics: " ..
		"Sequential[3] (Linear(1 -> 2, bias=false)): backward produced inf in grad_input " ..
		"(row 1, column 1), at step 1", "message")
	lunet.check_numerics(false)
end)

test("bad values from outside: the model's input, and the gradient given to backward", function()
	lunet.check_numerics(true)
	local m = mlp()
	local x = lunet.rand(2, 4)
	x[2][3] = -1 / 0
	eq(error_of(m.forward, m, x), "Sequential:forward: check_numerics: Sequential: the input " ..
		"holds -inf (row 2, column 3), at step 1", "input")
	x[2][3] = 0
	m:forward(x)
	local g = lunet.ones(2, 3)
	g[1][2] = 0 / 0
	eq(error_of(m.backward, m, x, g), "Sequential:backward: check_numerics: Sequential: the " ..
		"gradient given to backward holds NaN (row 1, column 2), at step 2", "gradient")
	local relu = nn.ReLU()
	eq(error_of(relu.forward, relu, lunet.tensor{{0 / 0}}), "ReLU:forward: check_numerics: " ..
		"ReLU: the input holds NaN (row 1, column 1), at step 1", "a module alone is its own model")
	lunet.check_numerics(false)
end)

test("a layer written in Lua inside a Sequential is checked too", function()
	lunet.check_numerics(true)
	local bad = {forward = function(_, x) return x * (0 / 0) end,
		backward = function(_, _, g) return g end}
	local m = nn.Sequential{nn.Linear(2, 2), bad, nn.ReLU()}
	local err = error_of(m.forward, m, lunet.rand(3, 2))
	eq(err, "Sequential:forward: check_numerics: Sequential[2]: forward produced NaN in its " ..
		"output (row 1, column 1), at step 1", "message")
	lunet.check_numerics(false)
end)

test("a forward stopped by the check leaves BatchNorm's running statistics alone", function()
	lunet.check_numerics(true)
	local m = nn.Sequential{nn.BatchNorm(2), nn.Linear(2, 2)}
	local x = lunet.rand(4, 2)
	m:forward(x)
	local mean = m:get(1).running_mean:clone()
	m:get(2).weight[1][1] = 1 / 0
	check(not pcall(m.forward, m, x), "stopped at layer 2")
	check(m:get(1).running_mean:allclose(mean, 0, 0), "running mean unchanged")
	m:get(1).weight[1] = 0 / 0
	check(not pcall(m.forward, m, x), "stopped at layer 1")
	check(m:get(1).running_mean:allclose(mean, 0, 0), "running mean unchanged by its own stop")
	lunet.check_numerics(false)
end)

test("layers that run as a chain sample by sample are each checked", function()
	lunet.check_numerics(true)
	local m = nn.Sequential{nn.Conv2d(1, 2, 3, {padding = 1}), nn.ReLU(),
		nn.Conv2d(2, 2, 3, {padding = 1}), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8, 2)}
	local x = lunet.rand(2, 1, 4, 4)
	m:forward(x)
	m:get(3).weight[2][1][2][2] = 0 / 0
	eq(error_of(m.forward, m, x), "Sequential:forward: check_numerics: Sequential[3] " ..
		"(Conv2d(2 -> 2, 3x3, stride 1, padding 1)): forward produced NaN in its output " ..
		"(index {1,2,1,1}), at step 2", "message")
	m:get(3).weight[2][1][2][2] = 0.5
	m:forward(x)
	m:backward(x, lunet.ones(2, 2))  -- finite again: no error
	lunet.check_numerics(false)
end)

test("the step counts the model's forwards since the check was turned on", function()
	local m = mlp()
	local x = lunet.rand(2, 4)
	lunet.check_numerics(true)
	for _ = 1, 5 do m:forward(x) end
	m:get(1).bias[1] = 0 / 0
	local err = error_of(m.forward, m, x)
	check(err:find("Sequential[1] (Linear(4 -> 8)): forward produced NaN", 1, true) and
		err:find("at step 6", 1, true), err)
	eq(lunet.check_numerics(false), true, "returns the previous setting")
end)

test("check_numerics takes a boolean", function()
	eq(error_of(lunet.check_numerics, 1), "lunet.check_numerics: expected a boolean, got number",
		"number")
	eq(error_of(lunet.check_numerics, true, 2),
		"lunet.check_numerics: expected at most 1 argument, got 2", "extra argument")
	eq(lunet.check_numerics(), false, "unchanged")
end)

h.done()
