-- test_views.lua -- the tensors that forward and backward hand out: a view
-- of the module's (or loss's) buffer, the same userdata from call to call
-- while the buffer keeps its shape, a new one when the batch shape
-- changes or when the script closed the one it was given; and a training
-- step that leaves no garbage in the Lua heap.
local lunet = lunet or require "lunet"
local nn, optim = lunet.nn, lunet.optim

local SEED = 5151
local harness = dofile((arg[0]:match("^(.*)/") or ".") .. "/harness.lua")
local h = harness.new{seed = SEED}
local test, eq, near, check = h.test, h.eq, h.near, h.check

local function xor_data()
	return lunet.tensor{{0, 0}, {0, 1}, {1, 0}, {1, 1}}, lunet.tensor{{0}, {1}, {1}, {0}}
end

-- y = x W^T + b of a Linear, checked element by element.
local function check_linear(m, x, y)
	local w, b = m.weight, m.bias
	for i = 1, x:size(1) do
		for j = 1, w:size(1) do
			local s = b[j]
			for k = 1, x:size(2) do s = s + x[i][k] * w[j][k] end
			near(y[i][j], s, 1e-5, "y[" .. i .. "][" .. j .. "]")
		end
	end
end

test("forward hands out the same view while the batch shape stays", function()
	local m = nn.Linear(3, 4)
	local x1, x2 = lunet.randn(5, 3), lunet.randn(5, 3)
	local y1 = m:forward(x1)
	check_linear(m, x1, y1)
	local y2 = m:forward(x2)
	check(rawequal(y1, y2), "second forward returns the first's userdata")
	check(rawequal(y2, m.output), "m.output is that userdata too")
	check_linear(m, x2, y2)
	local seq = nn.Sequential{nn.Linear(3, 4), nn.ReLU()}
	check(rawequal(seq:forward(x1), seq:forward(x2)), "the same for a Sequential")
end)

test("a new batch shape gives a new view of the new shape", function()
	local m = nn.Linear(3, 2)
	local a = m:forward(lunet.randn(4, 3))
	local b = m:forward(lunet.randn(7, 3))
	check(not rawequal(a, b), "a new userdata after the shape changed")
	eq(b:size(1), 7, "rows of the new output")
	eq(a:size(1), 4, "the old view keeps its shape")
	local c = m:forward(lunet.randn(7, 3))
	check(rawequal(b, c), "the same userdata again at the new shape")
end)

test("a closed view is replaced, not handed out again", function()
	local m = nn.Linear(2, 3)
	local x = lunet.randn(4, 2)
	local y = m:forward(x)
	y:close()
	local y2 = m:forward(x)
	check(not rawequal(y, y2), "a fresh userdata after close")
	eq(y2:size(1), 4, "rows")
	check_linear(m, x, y2)
	check(rawequal(m.output, y2), "m.output is the new view")
end)

test("backward and loss backward hand out the same views each step", function()
	local x, t = xor_data()
	local m = nn.Sequential{nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1)}
	local crit = nn.OutputLoss("sigmoid", "bce")
	local out = m:forward(x)
	crit:forward(out, t)
	local g1 = crit:backward(out, t)
	local gi1 = m:backward(x, g1)
	out = m:forward(x)
	local g2 = crit:backward(out, t)
	local gi2 = m:backward(x, g2)
	check(rawequal(g1, g2), "loss grad_input userdata reused")
	check(rawequal(gi1, gi2), "module grad_input userdata reused")
	check(rawequal(g2, crit.grad_input), "crit.grad_input is that userdata")
	check(rawequal(gi2, m.grad_input), "m.grad_input is that userdata")
	eq(gi2:size(1), 4, "grad_input rows")
	eq(gi2:size(2), 2, "grad_input columns")
end)

test("a training step leaves no garbage in the Lua heap", function()
	local x, t = xor_data()
	local m = nn.Sequential{nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1), nn.Sigmoid()}
	local crit = nn.BCELoss()
	local opt = optim.Adam(m, {lr = 0.01})
	local function step()
		opt:zero_grad()
		local out = m:forward(x)
		local l = crit:forward(out, t)
		m:backward(x, crit:backward(out, t))
		opt:step()
		return l
	end
	for _ = 1, 5 do step() end
	collectgarbage()
	collectgarbage("stop")
	local k0 = collectgarbage("count")
	for _ = 1, 500 do step() end
	local grown = (collectgarbage("count") - k0) * 1024
	collectgarbage("restart")
	-- a new tensor userdata per forward/backward would be over 100 bytes
	-- a step; allow a few bytes of slack for the allocator's bookkeeping
	check(grown < 500, string.format("the Lua heap grew by %d bytes over 500 steps", grown))
end)

h.done()
