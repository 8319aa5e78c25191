-- oom_script.lua -- the script test_oom.c runs again and again, failing one
-- allocation each time: it builds a model, trains it a few steps, saves
-- and loads it, checkpoints an experiment and resumes from it; then tensor
-- operations, every loss, the other optimisers, a gradient check, a
-- trace, safetensors and PyTorch names, CSV and IDX files and batches.
--
-- Called as a chunk with (lunet, dir), it returns a list of steps and a
-- function giving the results.  Each step is a function of no arguments
-- that does one thing to the shared state S; when a step fails (out of
-- memory), test_oom.c collects garbage and calls the same step again,
-- which must then succeed and leave S as an uninterrupted run would:
-- steps draw random numbers only after lunet.seed, and change S only once
-- the work that can fail is done.
local lunet, dir = ...
local nn, optim = lunet.nn, lunet.optim
local S = {}

-- One training step of model with opt on (x, y), returning the loss.
local function train_step(model, opt, loss, x, y)
	opt:zero_grad()
	local z = model:forward(x)
	local l = loss:forward(z, y)
	model:backward(x, loss:backward(z, y))
	opt:step()
	return l
end

local steps = {
	function()  -- the model
		lunet.seed(11)
		S.model = nn.Sequential{
			nn.Conv2d(1, 3, 3, {padding = 1}), nn.BatchNorm(3), nn.ReLU(), nn.MaxPool2d(2),
			nn.Flatten(), nn.Linear(12, 8), nn.Tanh(), nn.Linear(8, 3),
		}
	end,
	function()  -- data, loss, optimiser
		lunet.seed(12)
		S.x = lunet.rand(5, 1, 4, 4)
		S.y = lunet.tensor{1, 2, 3, 1, 2}
		S.loss = nn.CrossEntropyLoss()
		S.opt = optim.Adam(S.model, {lr = 0.01, weight_decay = 1e-4})
	end,
}
-- Training steps, one lunet call per step: a call that fails must change
-- nothing (BatchNorm's running statistics included), so that calling it
-- again continues as if it never failed.
for i = 1, 3 do
	steps[#steps + 1] = function() S.opt:zero_grad() end
	steps[#steps + 1] = function() S.z = S.model:forward(S.x) end
	steps[#steps + 1] = function() S["loss" .. i] = S.loss:forward(S.z, S.y) end
	steps[#steps + 1] = function() S.dz = S.loss:backward(S.z, S.y) end
	steps[#steps + 1] = function() S.model:backward(S.x, S.dz) end
	steps[#steps + 1] = function() S.opt:step() end
end
steps[#steps + 1] = function()  -- tensor arithmetic on the trained weights
	local w = S.model:parameters()[1]
	S.stats = ((w * 2 + 1):reshape(3, 9):matmul(lunet.ones(9, 2)):sum(1) / 3):totable()
end
steps[#steps + 1] = function()  -- save
	lunet.save(dir .. "/model.lunet", {model = S.model, opt = S.opt, step = 3})
end
steps[#steps + 1] = function()  -- load, and one more step on the loaded model
	local ck = lunet.load(dir .. "/model.lunet")
	S.loaded_out = ck.model:forward(S.x):clone()
	S.loaded_loss = train_step(ck.model, ck.opt, S.loss, S.x, S.y)
end
steps[#steps + 1] = function()  -- the same step on the original
	S.loss4 = train_step(S.model, S.opt, S.loss, S.x, S.y)
end
steps[#steps + 1] = function()  -- an experiment's checkpoint, and a resume
	local exp = lunet.experiment{name = "oom", root = dir, args = {}, output = io.open("/dev/null", "w"),
		config = {lr = 0.01}}
	exp:log{epoch = 1, loss = S.loss4}
	exp:checkpoint(S.model, S.opt)
	local d = exp.dir
	exp:finish()
	local again = lunet.experiment{name = "oom", root = dir, args = {"--resume=" .. d},
		output = io.open("/dev/null", "w"), config = {lr = 0.01}}
	local model = nn.Sequential{
		nn.Conv2d(1, 3, 3, {padding = 1}), nn.BatchNorm(3), nn.ReLU(), nn.MaxPool2d(2),
		nn.Flatten(), nn.Linear(12, 8), nn.Tanh(), nn.Linear(8, 3),
	}
	again:restore(model)
	S.resumed_out = model:forward(S.x):clone()
	again:finish()
end

steps[#steps + 1] = function()  -- tensor operations
	lunet.seed(13)
	local a, b = lunet.rand(3, 4), lunet.rand(4)
	local c = a + b
	local sorted, order = c:sort(2, true)
	local top, at = c:topk(2, 2)
	local joined = lunet.cat({a, c}, 1)
	local stacked = lunet.stack({a, c}, 1)
	local picked = lunet.where(a:gt(0.5), a, c):index(1, {3, 1})
	local mx, imx = stacked:max(3)
	local draws = lunet.tensor{{0.2, 0.8}, {0.5, 0.5}}:multinomial(2)
	local u = c:unsqueeze(1):expand(2, 3, 4):permute(3, 2, 1):contiguous()
	local batched = lunet.rand(2, 3, 4):matmul(lunet.rand(4, 2))
	S.ops = {sorted:sum(), order:sum(), top:sum(), at:sum(), joined:sum(), picked:sum(),
		mx:sum(), imx:sum(), draws:sum(), u:sum(), batched:sum(), c:exp():log():sum(),
		(c:clamp(0.2, 0.9) ^ 2):mean(), c:argmax(2):sum(), a:transpose(1, 2):sum(1):sum()}
end
steps[#steps + 1] = function()  -- every loss, forward and backward
	lunet.seed(14)
	local z, p, y = lunet.randn(4, 3), lunet.rand(4, 3), lunet.tensor{3, 1, 2, 2}
	local t = lunet.rand(4, 3)
	local out = {}
	for _, c in ipairs{
		{nn.MSELoss(), z, t}, {nn.BCELoss(), p, t}, {nn.BCEWithLogitsLoss(), z, t},
		{nn.CrossEntropyLoss(), z, y}, {nn.NLLLoss(), z:exp():log(), y},
		{nn.CrossEntropyLoss{reduction = "sum"}, z, y},
		{nn.OutputLoss("softmax", "cross_entropy"), z, y}, {nn.OutputLoss("sigmoid", "mse"), z, t},
	} do
		out[#out + 1] = c[1]:forward(c[2], c[3])
		out[#out + 1] = c[1]:backward(c[2], c[3]):sum()
	end
	S.losses = out
end
steps[#steps + 1] = function()  -- other optimisers, a gradient check, a trace
	lunet.seed(15)
	local m = nn.Sequential{nn.Linear(3, 4), nn.Sigmoid(), nn.Linear(4, 2), nn.Softmax()}
	local x = lunet.rand(6, 3)
	local out = {}
	for _, opt in ipairs{optim.SGD(m, {lr = 0.1, momentum = 0.9, nesterov = true}),
		optim.RMSprop(m, {lr = 0.01, centered = true, momentum = 0.5}),
		optim.AdamW(m, {lr = 0.01})} do
		opt:zero_grad()
		m:forward(x)
		m:backward(x, lunet.ones(6, 2))
		opt:step()
		out[#out + 1] = m:parameters()[1]:sum()
	end
	local ok, err = nn.gradcheck(nn.Linear(3, 2), lunet.rand(2, 3))
	out[#out + 1] = ok
	out[#out + 1] = #tostring(m:trace())
	S.optims = out
end
steps[#steps + 1] = function()  -- PyTorch names and safetensors
	local sd = S.model:state_dict()
	lunet.save_safetensors(dir .. "/model.safetensors", S.model)
	local back = lunet.load_safetensors(dir .. "/model.safetensors")
	local m = nn.Sequential{
		nn.Conv2d(1, 3, 3, {padding = 1}), nn.BatchNorm(3), nn.ReLU(), nn.MaxPool2d(2),
		nn.Flatten(), nn.Linear(12, 8), nn.Tanh(), nn.Linear(8, 3),
	}
	m:load_state_dict(back)
	m:evaluate()
	S.model:evaluate()
	S.st_out = {m:forward(S.x):sum(), S.model:forward(S.x):sum(), sd["0.weight"]:sum()}
	S.model:train()
end
steps[#steps + 1] = function()  -- data files and batches
	local f = assert(io.open(dir .. "/d.csv", "w"))
	f:write("a,b,label\n1,2,1\n3,4,2\n5,6,1\n7,8,2\n9,10,1\n")
	f:close()
	f = assert(io.open(dir .. "/d.idx", "wb"))
	f:write(string.pack(">BBBBI4I4", 0, 0, 8, 2, 2, 3), "\1\2\3\4\5\6")
	f:close()
	local ds = lunet.data.csv(dir .. "/d.csv", {header = true, label = "label"})
	local img = lunet.data.load_idx(dir .. "/d.idx")
	lunet.seed(16)
	local seen = {}
	for xb, yb in lunet.data.batches(ds.x, ds.y, 2, {shuffle = true}) do
		seen[#seen + 1] = xb:sum() + yb:sum()
	end
	S.data = {ds.x:sum(), ds.y:sum(), img:sum(), seen}
end

-- The results, as plain numbers and tables, for comparing runs.
local function results()
	local p = S.model:parameters()
	local r = {S.loss1, S.loss2, S.loss3, S.loss4, S.loaded_loss, S.stats,
		S.loaded_out:totable(), S.resumed_out:totable(), S.ops, S.losses, S.optims, S.st_out,
		S.data}
	for _, t in ipairs(p) do r[#r + 1] = t:totable() end
	return r
end

return steps, results
