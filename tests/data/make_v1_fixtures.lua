-- make_v1_fixtures.lua -- wrote the files of format version 1 in this
-- directory, which tests/lua/test_save.lua loads to prove that files of
-- that version still load and continue training exactly.
--
-- It was run once, by a lunet whose lunet.save wrote format version 1:
--   build/lunet tests/data/make_v1_fixtures.lua tests/data
-- A lunet that writes a newer version would write files of that version:
-- do not run it again to "refresh" the fixtures (the test checks that
-- each one is still of version 1).
--
-- Each checkpoint holds, beside the model and the optimiser, the data of
-- the steps that follow (x, y) and the parameters those steps gave when
-- the file was written (after): a loader of today must reach the same
-- bits.
local lunet = lunet or require "lunet"
local nn, optim = lunet.nn, lunet.optim

local dir = assert(arg[1], "usage: make_v1_fixtures.lua DIR")

-- Full-batch steps of mean squared error on (x, y).
local function train(m, opt, x, y, n)
	local crit = nn.MSELoss()
	for _ = 1, n do
		opt:zero_grad()
		local z = m:forward(x)
		crit:forward(z, y)
		m:backward(x, crit:backward(z, y))
		opt:step()
	end
end

local function clones(list)
	local out = {}
	for i, t in ipairs(list) do out[i] = t:clone() end
	return out
end

-- A model file: a small CNN whose BatchNorm statistics have moved, in
-- evaluate mode, with an input and the output it gave.
lunet.seed(101)
local cnn = nn.Sequential{
	nn.Conv2d(1, 3, 3, {padding = 1}), nn.BatchNorm(3), nn.LeakyReLU(0.1), nn.MaxPool2d(2),
	nn.Flatten(), nn.Linear(3 * 4 * 4, 5), nn.Dropout(0.2), nn.Tanh(), nn.Linear(5, 2),
}
for _ = 1, 3 do cnn:forward(lunet.randn(4, 1, 8, 8) * 2 + 0.5) end
cnn:evaluate()
lunet.save(dir .. "/v1_model.lunet", cnn)
local x = lunet.randn(6, 1, 8, 8)
lunet.save(dir .. "/v1_model_io.lunet", {x = x, y = cnn:forward(x):clone()})

-- A checkpoint with each optimiser: 3 steps taken before saving, 3 after.
local function checkpoint(name, make_opt, extra)
	lunet.seed(202)
	local m = nn.Sequential{nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)}
	local x1, y1 = lunet.randn(10, 4), lunet.randn(10, 3)
	local opt = make_opt(m)
	train(m, opt, x1, y1, 3)
	local ck = {model = m, opt = opt, epoch = 3, x = lunet.randn(10, 4), y = lunet.randn(10, 3)}
	for k, v in pairs(extra or {}) do ck[k] = v end
	-- the file is written before the steps that fill in `after`, which it
	-- holds: write it twice, the second time with `after`
	local before = clones(m:parameters())
	local state = opt:state()
	local saved = {}
	for i, p in ipairs(state.params) do
		saved[i] = {}
		for k, t in pairs(p) do saved[i][k] = t:clone() end
	end
	local steps = opt.steps
	train(m, opt, ck.x, ck.y, 3)
	ck.after = clones(m:parameters())
	-- back to the saved point
	local params = m:parameters()
	for i, p in ipairs(params) do p:copy(before[i]) end
	opt:load_state{kind = state.kind, steps = steps, config = state.config, params = saved}
	lunet.save(dir .. "/" .. name, ck)
end

checkpoint("v1_sgd.lunet", function(m)
	return optim.SGD(m, {lr = 0.05, momentum = 0.9, nesterov = true, weight_decay = 1e-3})
end)

-- The Adam checkpoint also holds an RMSprop whose parameters no saved
-- module holds: it loads as its state alone.
lunet.seed(303)
local w, gw = lunet.randn(3, 2), lunet.randn(3, 2)
local lone = optim.RMSprop({w}, {gw}, {lr = 1e-2, momentum = 0.5, centered = true})
for _ = 1, 2 do lone:step() end
checkpoint("v1_adam.lunet", function(m)
	return optim.Adam(m, {lr = 1e-2, betas = {0.8, 0.99}, eps = 1e-7, weight_decay = 1e-4})
end, {alone = lone, adamw = optim.AdamW({lunet.randn(2)}, {lunet.randn(2)}, {lr = 3e-3})})
