-- test_save.lua -- lunet.save / lunet.load: round trips of
-- every kind of value, models giving bit-identical outputs, optimizers that
-- continue training exactly as an uninterrupted run, atomic writes, and the
-- errors for what cannot be saved and for truncated, corrupted and foreign
-- files, each with its message.
--
-- Runs under the `lunet` runner or the stock interpreter:
--   lua5.4 -e 'package.cpath="BUILD/?.so;"..package.cpath' test_save.lua
local lunet = lunet or require "lunet"
local nn, optim = lunet.nn, lunet.optim

local SEED = 8675309
local harness = dofile((arg[0]:match("^(.*)/") or ".") .. "/harness.lua")
local h = harness.new{seed = SEED, reseed = true}
-- check_error(fn, ...): fn() must fail with a message containing every
-- string given (plain).
local test, check, eq, check_error = h.test, h.check, h.eq, h.check_error

-- ---- files ----------------------------------------------------------------------

local dir = os.tmpname()
os.remove(dir)
assert(os.execute("mkdir -p '" .. dir .. "'"))
local function path(name) return dir .. "/" .. name end

local function read_file(p)
	local f = assert(io.open(p, "rb"))
	local s = f:read("a")
	f:close()
	return s
end

local function write_file(p, s)
	local f = assert(io.open(p, "wb"))
	f:write(s)
	f:close()
end

local function exists(p)
	local f = io.open(p, "rb")
	if f then f:close() return true end
	return false
end

-- Names in dir that look like temporary files of lunet.save.
local function temp_files()
	local p = assert(io.popen("ls -a '" .. dir .. "'"))
	local found = {}
	for name in p:lines() do
		if name:find("%.tmp%.%d+$") then found[#found + 1] = name end
	end
	p:close()
	return found
end

-- ---- comparisons --------------------------------------------------------------------

-- The bits of every element of a tensor, as one string.
local function bits(t)
	local flat = t:reshape(-1)
	local parts = {}
	for i = 1, flat:numel() do parts[i] = string.pack("<f", flat[i]) end
	return table.concat(parts)
end

local function same_tensor(a, b, what)
	eq(table.concat(b:shape(), ","), table.concat(a:shape(), ","), (what or "tensor") .. " shape")
	check(bits(a) == bits(b), (what or "tensor") .. ": values differ")
end

local function is_tensor(v)
	return type(v) == "userdata" and getmetatable(v) and getmetatable(v).__name == "lunet.Tensor"
end

-- Deep equality of saved values: numbers with their subtype and bits
-- (NaN equal to NaN, -0 apart from 0), tables by contents.
local function same_value(a, b, where, seen)
	seen = seen or {}
	where = where or "obj"
	if type(a) ~= type(b) then
		error(string.format("%s: %s became %s", where, type(a), type(b)), 0)
	end
	if type(a) == "number" then
		eq(math.type(b), math.type(a), where .. " subtype")
		if math.type(a) == "float" then
			eq(string.pack("<d", b), string.pack("<d", a), where .. " bits")
		else
			eq(b, a, where)
		end
	elseif type(a) == "table" then
		if seen[a] then return end
		seen[a] = true
		for k, v in pairs(a) do same_value(v, b[k], where .. "[" .. tostring(k) .. "]", seen) end
		for k in pairs(b) do
			if a[k] == nil then error(where .. ": extra key " .. tostring(k), 0) end
		end
	elseif is_tensor(a) then
		same_tensor(a, b, where)
	else
		eq(b, a, where)
	end
end

local function roundtrip(v, name)
	local p = path(name or "rt.lnt")
	lunet.save(p, v)
	return lunet.load(p)
end

-- ---- values ------------------------------------------------------------------------

test("scalars", function()
	for _, v in ipairs{true, false, 0, 1, -7, math.maxinteger, math.mininteger, 0.1, -0.0,
	                   1 / 0, -1 / 0, 5e-324, 1e308, 3.0, "", "hello", "a\0b\255\n"} do
		same_value(v, roundtrip(v))
	end
	eq(roundtrip(nil), nil, "nil")
	local nan = roundtrip(0 / 0)
	check(nan ~= nan, "NaN comes back as NaN")
	eq(math.type(roundtrip(3.0)), "float", "3.0 stays a float")
	eq(math.type(roundtrip(3)), "integer", "3 stays an integer")
	local long = string.rep("lunet\0", 20000)
	eq(roundtrip(long), long, "a 120000-byte string")
end)

test("tables", function()
	local t = {
		1, 2.5, "three", {4, {5}},
		name = "mlp", [10] = "ten", [-1] = "minus one", [0] = "zero", [1.5] = "one and a half",
		[true] = "yes", [false] = "no", ["key with spaces"] = {deep = {deeper = {x = 1}}},
		empty = {},
	}
	local r = roundtrip(t)
	same_value(t, r)
	eq(#r, 4, "array part")
	local holes = roundtrip{1, nil, 3, nil, 5}
	eq(holes[1], 1, "holes[1]")
	eq(holes[2], nil, "holes[2]")
	eq(holes[3], 3, "holes[3]")
	eq(holes[5], 5, "holes[5]")
end)

test("shared tables and tensors load as one object", function()
	local shared = {1, 2}
	local x = lunet.randn(3, 4)
	local r = roundtrip{a = shared, b = shared, list = {shared, x}, x = x, y = x}
	check(r.a == r.b and r.list[1] == r.a, "one table")
	check(r.x == r.y and r.list[2] == r.x, "one tensor")
	r.x:set(1, 1, 42)
	eq(r.y:get(1, 1), 42, "writes through the shared tensor")
end)

test("tensors", function()
	local shapes = {{5}, {2, 3}, {2, 3, 4}, {1, 1, 1, 1, 1, 1, 1, 2}}
	for _, s in ipairs(shapes) do
		local t = lunet.randn(table.unpack(s))
		same_tensor(t, roundtrip(t), "{" .. table.concat(s, ",") .. "}")
	end
	local special = lunet.tensor{0 / 0, -0.0, 1 / 0, -1 / 0, 1e-45, 3.4e38}
	same_tensor(special, roundtrip(special), "special values")
	-- a strided view is saved in row-major order, as a plain tensor
	local base = lunet.randn(4, 6)
	local view = base:narrow(2, 2, 3)
	local r = roundtrip(view)
	same_tensor(view:clone(), r, "narrowed view")
	r:fill(0)
	check(base:abs():sum() > 0, "the loaded tensor does not share memory with the original")
	local big = lunet.rand(1000, 1000)
	same_tensor(big:narrow(1, 1, 3), roundtrip(big):narrow(1, 1, 3), "big tensor")
end)

test("metatables are not saved and nothing is called", function()
	local called = false
	local t = setmetatable({a = 1}, {
		__index = function() called = true end,
		__pairs = function() called = true; return next, {}, nil end,
	})
	local r = roundtrip{t = t, code = "os.exit(1)"}
	check(getmetatable(r.t) == nil, "no metatable")
	eq(r.t.a, 1, "raw contents")
	eq(r.code, "os.exit(1)", "code stays a string")
	check(not called, "no metamethod was called")
end)

-- ---- models -------------------------------------------------------------------------

local function mlp()
	return nn.Sequential{nn.Linear(10, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 16),
		nn.Tanh(), nn.Linear(16, 4), nn.LogSoftmax(2)}
end

local function cnn()
	local m = nn.Sequential{
		nn.Conv2d(1, 6, 3, {padding = 1}), nn.BatchNorm(6), nn.ReLU(), nn.MaxPool2d(2),
		nn.Conv2d(6, 8, 3, {stride = 2}), nn.LeakyReLU(0.1), nn.Flatten(), nn.Linear(32, 5),
		nn.BatchNorm(5), nn.Sigmoid(),
	}
	-- move BatchNorm's running statistics away from 0 and 1
	for _ = 1, 3 do m:forward(lunet.randn(4, 1, 10, 10) * 2 + 0.5) end
	return m
end

local function same_model_outputs(m, r, x, what)
	same_tensor(m:forward(x):clone(), r:forward(x), what)
end

test("MLP with Dropout: bit-identical outputs in evaluate mode", function()
	local m = mlp()
	m:evaluate()
	local r = roundtrip(m, "mlp.lnt")
	check(nn.is_module(r), "a module comes back")
	eq(tostring(r), tostring(m), "architecture")
	eq(#r, #m, "layers")
	eq(r.training, false, "evaluate mode kept")
	eq(r:get(3).p, 0.3, "Dropout p")
	eq(r:get(7).dim, 2, "LogSoftmax dim")
	for i = 1, #m do eq(r:get(i).name, m:get(i).name, "layer " .. i) end
	local p1, p2 = m:parameters(), r:parameters()
	eq(#p2, #p1, "parameter count")
	for i = 1, #p1 do same_tensor(p1[i], p2[i], "parameter " .. i) end
	same_model_outputs(m, r, lunet.randn(16, 10), "MLP output")
	-- the loaded model trains: gradients start at zero
	local _, g = r:parameters()
	for i = 1, #g do eq(g[i]:abs():sum(), 0, "gradient " .. i) end
end)

test("CNN with Conv2d/BatchNorm/MaxPool: running statistics and outputs", function()
	local m = cnn()
	m:evaluate()
	local r = roundtrip(m, "cnn.lnt")
	eq(tostring(r), tostring(m), "architecture")
	for _, i in ipairs{2, 9} do
		same_tensor(m:get(i).running_mean, r:get(i).running_mean, "running_mean " .. i)
		same_tensor(m:get(i).running_var, r:get(i).running_var, "running_var " .. i)
		check(m:get(i).running_var:sum() ~= m:get(i).running_var:numel(), "statistics moved")
	end
	eq(r:get(5).stride, 2, "Conv2d stride")
	eq(r:get(1).padding, 1, "Conv2d padding")
	eq(r:get(6).slope, 0.1, "LeakyReLU slope")
	same_model_outputs(m, r, lunet.randn(7, 1, 10, 10), "CNN output")
	-- in training mode too (batch statistics, no randomness)
	m:train()
	r:train()
	same_model_outputs(m, r, lunet.randn(7, 1, 10, 10), "CNN output in training mode")
end)

test("training flags, shared modules and children identity", function()
	local m = mlp()
	m:evaluate()
	m:get(3):train()
	local lin = m:get(1)
	local r = roundtrip({model = m, first = lin, again = m}, "flags.lnt")
	eq(r.model:get(3).training, true, "Dropout's own flag")
	eq(r.model:get(1).training, false, "Linear's own flag")
	check(r.first == r.model:get(1), "seq:get(1) is the module saved beside it")
	check(r.again == r.model, "one model")
	-- a module in two containers stays shared
	local shared = nn.Linear(3, 3)
	local a, b = nn.Sequential{shared, nn.ReLU()}, nn.Sequential{nn.Tanh(), shared}
	local r2 = roundtrip{a = a, b = b}
	check(r2.a:get(1) == r2.b:get(2), "shared module")
	r2.a:get(1).weight:fill(7)
	eq(r2.b:get(2).weight:get(1, 1), 7, "one set of parameters")
end)

test("loading does not disturb the random stream", function()
	lunet.save(path("rng.lnt"), cnn())
	lunet.seed(5)
	local a = lunet.rand(4)
	lunet.seed(5)
	lunet.load(path("rng.lnt"))
	same_tensor(a, lunet.rand(4), "random numbers after a load")
end)

-- ---- optimizers ------------------------------------------------------------------------

-- Trains m with opt for n steps on data drawn from `seed` (Dropout masks
-- too), cross-entropy on random labels.
local function train(m, opt, n, seed)
	lunet.seed(seed)
	local crit = nn.CrossEntropyLoss()
	for _ = 1, n do
		local x = lunet.randn(8, 10)
		local y = {}
		for i = 1, 8 do y[i] = math.floor(lunet.rand(1)[1] * 4) + 1 end
		opt:zero_grad()
		local z = m:forward(x)
		crit:forward(z, y)
		m:backward(x, crit:backward(z, y))
		opt:step()
	end
end

local function same_params(a, b, what)
	local pa, pb = a:parameters(), b:parameters()
	eq(#pb, #pa, what .. " parameter count")
	for i = 1, #pa do same_tensor(pa[i], pb[i], what .. " parameter " .. i) end
end

local function classifier()
	return nn.Sequential{nn.Linear(10, 12), nn.ReLU(), nn.Dropout(0.25), nn.Linear(12, 4)}
end

local kinds = {
	{"SGD", {lr = 0.05, momentum = 0.9, nesterov = true, weight_decay = 1e-3}},
	{"SGD", {lr = 0.1}},
	{"Adam", {lr = 1e-2, betas = {0.8, 0.99}}},
	{"AdamW", {lr = 1e-2, weight_decay = 0.05}},
	{"RMSprop", {lr = 1e-3, momentum = 0.5, centered = true}},
}

for _, kind in ipairs(kinds) do
	test("optimizer " .. kind[1] .. " saved with its model continues exactly", function()
		local m = classifier()
		local opt = optim[kind[1]](m, kind[2])
		train(m, opt, 3, 1)
		local p = path("ckpt_" .. kind[1] .. ".lnt")
		lunet.save(p, {model = m, opt = opt, epoch = 3})
		train(m, opt, 4, 2)  -- the uninterrupted run

		local ck = lunet.load(p)
		eq(ck.epoch, 3, "epoch")
		eq(ck.opt.kind, opt.kind, "kind")
		eq(ck.opt.steps, 3, "steps")
		eq(ck.opt.lr, opt.lr, "lr")
		check(tostring(ck.opt):find(kind[1] .. "(", 1, true), tostring(ck.opt))
		train(ck.model, ck.opt, 4, 2)
		eq(ck.opt.steps, 7, "steps after training")
		same_params(m, ck.model, "resumed " .. kind[1])
	end)
end

test("optimizer listed before its model in a nested table", function()
	local m = classifier()
	local opt = optim.Adam(m, {lr = 1e-2})
	train(m, opt, 2, 3)
	lunet.save(path("nested.lnt"), {state = {optimizer = opt, again = opt}, nets = {m}})
	train(m, opt, 3, 4)
	local ck = lunet.load(path("nested.lnt"))
	check(ck.state.again == ck.state.optimizer, "one optimizer")
	train(ck.nets[1], ck.state.optimizer, 3, 4)
	same_params(m, ck.nets[1], "resumed")
end)

test("an optimizer over views of the model's tensors is bound to the model", function()
	local lin = nn.Linear(10, 4)
	local m = nn.Sequential{lin}
	local opt = optim.SGD({lin.weight, lin.bias}, {lin.grad_weight, lin.grad_bias},
		{lr = 0.1, momentum = 0.5})
	train(m, opt, 2, 7)
	lunet.save(path("views.lnt"), {m = m, opt = opt})
	train(m, opt, 2, 8)
	local ck = lunet.load(path("views.lnt"))
	eq(type(ck.opt), "userdata", "rebuilt")
	train(ck.m, ck.opt, 2, 8)
	same_params(m, ck.m, "resumed")
end)

test("optimizer saved alone loads as its state, attachable with load_state", function()
	local m = classifier()
	local opt = optim.RMSprop(m, {lr = 1e-3, momentum = 0.9})
	train(m, opt, 3, 5)
	lunet.save(path("opt.lnt"), opt)
	lunet.save(path("model.lnt"), m)
	train(m, opt, 3, 6)

	local st = lunet.load(path("opt.lnt"))
	eq(type(st), "table", "a state table")
	eq(st.kind, "RMSprop", "kind")
	eq(st.steps, 3, "steps")
	eq(st.config.momentum, 0.9, "config.momentum")
	eq(#st.params, 4, "per-parameter state")
	check(is_tensor(st.params[1].square_avg) and is_tensor(st.params[1].momentum_buffer),
		"state tensors by name")
	local m2 = lunet.load(path("model.lnt"))
	local opt2 = optim[st.kind](m2, st.options)
	opt2:load_state(st)
	train(m2, opt2, 3, 6)
	same_params(m, m2, "resumed from separate files")
	-- an optimizer whose model was not saved with it is also a state
	local ck = lunet.load(path("opt.lnt"))
	check(not pcall(function() return ck:step() end), "a state, not an optimizer")
end)

test("an optimizer's state is saved and restored by name", function()
	local m = classifier()
	local opt = optim.RMSprop(m, {lr = 2e-3, momentum = 0.5, centered = true})
	train(m, opt, 2, 12)
	local p = path("byname.lnt")
	lunet.save(p, opt)
	local bytes = read_file(p)
	eq(string.unpack("<I2", bytes, 7), 3, "written in format version 3")
	for _, name in ipairs{"RMSprop", "lr", "alpha", "eps", "momentum", "weight_decay", "centered",
		"square_avg", "momentum_buffer", "grad_avg"} do
		check(bytes:find(name, 1, true), name .. " is in the file by name")
	end
	local st = lunet.load(p)
	local keys = {}
	for k in pairs(st.config) do keys[#keys + 1] = k end
	table.sort(keys)
	eq(table.concat(keys, ","), "alpha,centered,eps,lr,momentum,weight_decay", "config by name")
	eq(st.config.lr, 2e-3, "lr")
	eq(st.config.centered, true, "centered")
	local want = opt:state()
	for i, t in ipairs(want.params) do
		for name, tensor in pairs(t) do same_tensor(tensor, st.params[i][name], name .. " " .. i) end
	end
	-- restored into a new optimizer by name, it takes the same next steps
	local m2 = classifier()
	local p1, p2 = m:parameters(), m2:parameters()
	for i = 1, #p1 do p2[i]:copy(p1[i]) end
	local opt2 = optim.RMSprop(m2, st.options)
	opt2:load_state(st)
	train(m, opt, 2, 13)
	train(m2, opt2, 2, 13)
	same_params(m, m2, "after restoring by name")
end)

test("an optimizer over model:parameters() is bound to the model", function()
	local m = classifier()
	local opt = optim.Adam(m:parameters())
	local params, grads = m:parameters()
	local opt2 = optim.SGD(params, grads, {lr = 0.1, momentum = 0.9})
	train(m, opt, 2, 14)
	lunet.save(path("params.lnt"), {m = m, opt = opt, opt2 = opt2})
	local ck = lunet.load(path("params.lnt"))
	eq(type(ck.opt), "userdata", "rebuilt")
	eq(type(ck.opt2), "userdata", "rebuilt")
	train(m, opt, 2, 15)
	train(ck.m, ck.opt, 2, 15)
	same_params(m, ck.m, "resumed")
	-- views that are not a module's own pair load as state only
	local lin = m:get(1)
	local o3 = optim.SGD({lin.weight:view(-1)}, {lin.grad_weight:view(-1)}, {lr = 0.1})
	lunet.save(path("reshaped.lnt"), {m = m, opt = o3})
	eq(type(lunet.load(path("reshaped.lnt")).opt), "table", "a state")
	local o4 = optim.SGD({lin.weight}, {lunet.zeros(12, 10)}, {lr = 0.1})
	lunet.save(path("mixed.lnt"), {m = m, opt = o4})
	eq(type(lunet.load(path("mixed.lnt")).opt), "table", "a state")
end)

-- ---- files of format version 1 ----------------------------------------------------------

-- Files written by a lunet whose format was version 1 (tests/data, made by
-- make_v1_fixtures.lua): they load, give the outputs they gave, and their
-- optimizers continue training to the very bits they reached then.
local DATA = (arg[0]:match("^(.*)/") or ".") .. "/../data/"

local function v1_file(name)
	local p = DATA .. name
	eq(string.unpack("<I2", read_file(p), 7), 1, name .. " is of format version 1")
	return lunet.load(p)
end

test("a model file of format version 1 loads and gives the same outputs", function()
	local m = v1_file("v1_model.lunet")
	local io = v1_file("v1_model_io.lunet")
	check(nn.is_module(m), "a module")
	eq(m.training, false, "evaluate mode kept")
	eq(#m, 9, "layers")
	eq(m:get(1).padding, 1, "Conv2d padding")
	eq(m:get(3).slope, 0.1, "LeakyReLU slope")
	eq(m:get(7).p, 0.2, "Dropout p")
	check(m:get(2).running_var:sum() ~= 3, "BatchNorm statistics kept")
	same_tensor(io.y, m:forward(io.x), "output")
end)

-- Continues a version-1 checkpoint for the 3 steps its writer took after
-- saving, and compares with the parameters it reached.
local function continue_v1(ck, what)
	local crit = nn.MSELoss()
	for _ = 1, 3 do
		ck.opt:zero_grad()
		local z = ck.model:forward(ck.x)
		crit:forward(z, ck.y)
		ck.model:backward(ck.x, crit:backward(z, ck.y))
		ck.opt:step()
	end
	local p = ck.model:parameters()
	eq(#p, #ck.after, what .. " parameter count")
	for i = 1, #p do same_tensor(ck.after[i], p[i], what .. " parameter " .. i) end
end

test("an SGD checkpoint of format version 1 continues training identically", function()
	local ck = v1_file("v1_sgd.lunet")
	eq(ck.epoch, 3, "epoch")
	eq(ck.opt.kind, "SGD", "kind")
	eq(ck.opt.steps, 3, "steps")
	eq(ck.opt.lr, 0.05, "lr")
	eq(ck.opt.momentum, 0.9, "momentum")
	eq(ck.opt.nesterov, true, "nesterov")
	eq(ck.opt.weight_decay, 1e-3, "weight_decay")
	continue_v1(ck, "SGD")
	eq(ck.opt.steps, 6, "steps after training")
end)

-- A file of format version 2 (tests/data, made by make_v2_fixtures.lua):
-- module records without wiring, a Sequential nested in a Sequential.
test("a model file of format version 2 loads and gives the same outputs", function()
	local function v2_file(name)
		local p = DATA .. name
		eq(string.unpack("<I2", read_file(p), 7), 2, name .. " is of format version 2")
		return lunet.load(p)
	end
	local m = v2_file("v2_model.lunet")
	local io = v2_file("v2_model_io.lunet")
	eq(#m, 6, "layers")
	eq(#m:get(5), 3, "layers of the inner Sequential")
	eq(m.training, false, "evaluate mode kept")
	same_tensor(io.y, m:forward(io.x), "output")
end)

test("an Adam checkpoint of format version 1 continues training identically", function()
	local ck = v1_file("v1_adam.lunet")
	eq(ck.opt.kind, "Adam", "kind")
	eq(ck.opt.steps, 3, "steps")
	eq(ck.opt.betas[1], 0.8, "beta1")
	eq(ck.opt.betas[2], 0.99, "beta2")
	eq(ck.opt.eps, 1e-7, "eps")
	continue_v1(ck, "Adam")
	-- optimizers whose parameters no saved module holds load as their state
	local st = ck.alone
	eq(type(st), "table", "a state table")
	eq(st.kind, "RMSprop", "kind")
	eq(st.steps, 2, "steps")
	eq(st.config.momentum, 0.5, "config.momentum")
	eq(st.config.centered, true, "config.centered")
	eq(st.options.lr, 1e-2, "options.lr")
	local names = {}
	for k in pairs(st.params[1]) do names[#names + 1] = k end
	table.sort(names)
	eq(table.concat(names, ","), "grad_avg,momentum_buffer,square_avg", "state names")
	local w = lunet.zeros(3, 2)
	local opt = optim[st.kind]({w}, {lunet.zeros(3, 2)}, st.options)
	opt:load_state(st)
	eq(opt.steps, 2, "attached")
	same_tensor(st.params[1].grad_avg, opt:state().params[1].grad_avg, "grad_avg attached")
	eq(ck.adamw.kind, "AdamW", "AdamW kind")
	eq(ck.adamw.config.weight_decay, 1e-2, "AdamW default weight_decay")
	eq(ck.adamw.options.decoupled, true, "AdamW decoupled")
end)

-- ---- what cannot be saved --------------------------------------------------------------

test("values that cannot be saved name where they are", function()
	local p = path("bad.lnt")
	check_error(function() lunet.save(p, {callbacks = {print}}) end,
		"lunet.save: cannot save a function at obj.callbacks[1]")
	check_error(function() lunet.save(p, {co = coroutine.create(print)}) end,
		"lunet.save: cannot save a thread at obj.co")
	check_error(function() lunet.save(p, {crit = nn.MSELoss()}) end,
		"lunet.save: cannot save a userdata (lunet.nn.MSELoss) at obj.crit")
	check_error(function() lunet.save(p, {out = io.stdout}) end,
		"lunet.save: cannot save a userdata (FILE*) at obj.out")
	check_error(function() lunet.save(p, {t = {[{}] = 1}}) end,
		"lunet.save: cannot save a table as a table key at obj.t")
	check_error(function() lunet.save(p, {["odd key"] = {[2.5] = {f = print}}}) end,
		"at obj[\"odd key\"][2.5].f")
	check_error(function() lunet.save(p, print) end, "lunet.save: cannot save a function at obj")
	local closed
	do
		local c <close> = lunet.zeros(2)
		closed = c
	end
	check_error(function() lunet.save(p, {x = closed}) end,
		"lunet.save: cannot save a closed tensor at obj.x")
	check_error(function() lunet.save(p) end, "bad argument #2")
	check_error(function() lunet.save("", 1) end, "lunet.save: empty path")
	check_error(function() lunet.load("") end, "lunet.load: empty path")
	check(not exists(p), "no file was written")
	eq(#temp_files(), 0, "no temporary file")
end)

test("table cycles are errors naming the key", function()
	local t = {a = {}}
	t.a.b = t
	check_error(function() lunet.save(path("cycle.lnt"), t) end,
		"lunet.save: table cycle at key obj.a.b")
	local s = {}
	s[1] = s
	check_error(function() lunet.save(path("cycle.lnt"), s) end,
		"lunet.save: table cycle at key obj[1]")
	local deep = {}
	local cur = deep
	for _ = 1, 200 do cur.next = {}; cur = cur.next end
	check_error(function() lunet.save(path("deep.lnt"), deep) end,
		"nesting deeper than 128 levels")
	check(not exists(path("cycle.lnt")) and not exists(path("deep.lnt")), "no file")
end)

test("a custom Lua module inside a Sequential cannot be saved", function()
	local custom = {
		forward = function(self, x) return x end,
		backward = function(self, x, gy) return gy end,
	}
	local m = nn.Sequential{nn.Linear(2, 2), custom}
	check_error(function() lunet.save(path("custom.lnt"), {model = m}) end,
		"lunet.save: cannot save obj.model: layer 2 is a custom module",
		"only built-in modules can be saved")
	local outer = nn.Sequential{nn.ReLU(), nn.Sequential{nn.Tanh(), custom}}
	check_error(function() lunet.save(path("custom.lnt"), outer) end, "layer 2.2 is a custom module")
	check(not exists(path("custom.lnt")), "no file")
end)

-- ---- atomicity ---------------------------------------------------------------------------

test("saving into a missing directory fails and leaves nothing", function()
	local p = path("missing/dir/m.lnt")
	check_error(function() lunet.save(p, {1, 2}) end,
		"lunet.save: " .. p .. ": cannot create", "No such file or directory")
	eq(#temp_files(), 0, "no temporary file")
end)

test("an existing file survives failed saves", function()
	local p = path("keep.lnt")
	lunet.save(p, {version = 1})
	local before = read_file(p)
	-- the value cannot be saved: nothing is written
	check_error(function() lunet.save(p, {version = 2, f = print}) end, "cannot save a function")
	eq(read_file(p), before, "unchanged after a value error")
	-- the temporary file cannot be created (a directory is in its place)
	local pid = read_file("/proc/self/stat"):match("^(%d+)")
	local blocker = p .. ".tmp." .. pid
	assert(os.execute("mkdir '" .. blocker .. "'"))
	check_error(function() lunet.save(p, {version = 3}) end,
		"lunet.save: " .. p .. ": cannot create " .. blocker, "Is a directory")
	assert(os.execute("rmdir '" .. blocker .. "'"))
	eq(read_file(p), before, "unchanged after an I/O error")
	eq(lunet.load(p).version, 1, "still loads")
	-- the rename fails (a non-empty directory is in the way): the temporary
	-- file is removed
	local d = path("adir")
	assert(os.execute("mkdir '" .. d .. "' && touch '" .. d .. "/x'"))
	check_error(function() lunet.save(d, 1) end, "cannot rename the temporary file over it")
	eq(#temp_files(), 0, "no temporary file")
	assert(os.execute("rm -r '" .. d .. "'"))
	-- a successful save replaces the file
	lunet.save(p, {version = 4})
	eq(lunet.load(p).version, 4, "replaced")
	eq(#temp_files(), 0, "no temporary file")
end)

-- A pid that no process has: that of a shell that has already exited.
local function dead_pid()
	local f = assert(io.popen("sh -c 'echo $$'"))
	local pid = f:read("l")
	f:close()
	return pid
end

test("a temporary file left by a killed save is removed by the next save", function()
	local p = path("stale.lnt")
	local stale = p .. ".tmp." .. dead_pid()
	write_file(stale, "half a file")
	local live = p .. ".tmp.1"  -- pid 1 always exists: a writer at work
	write_file(live, "being written")
	lunet.save(p, {version = 1})
	check(not exists(stale), "the stale temporary file is gone")
	check(exists(live), "a running writer's temporary file is kept")
	eq(lunet.load(p).version, 1, "saved")
	os.remove(live)
	eq(#temp_files(), 0, "no temporary file")
end)

test("lunet.sys.write_atomic replaces a file whole and reports what failed", function()
	local p = path("text.csv")
	lunet.sys.write_atomic(p, "a,b\n1,2\n")
	eq(read_file(p), "a,b\n1,2\n", "written")
	lunet.sys.write_atomic(p, "with\0nul")
	eq(read_file(p), "with\0nul", "replaced, NUL bytes kept")
	lunet.sys.write_atomic(p, "")
	eq(read_file(p), "", "empty contents")
	local stale = p .. ".tmp." .. dead_pid()
	write_file(stale, "x")
	lunet.sys.write_atomic(p, "again")
	check(not exists(stale), "stale temporary file removed")
	local q = path("no/such/dir/f.txt")
	check_error(function() lunet.sys.write_atomic(q, "x") end,
		"lunet.sys.write_atomic: " .. q .. ": cannot create", "No such file or directory")
	local d = path("wdir")
	assert(os.execute("mkdir '" .. d .. "' && touch '" .. d .. "/x'"))
	check_error(function() lunet.sys.write_atomic(d, "x") end,
		"lunet.sys.write_atomic: " .. d .. ": cannot rename the temporary file over it")
	assert(os.execute("rm -r '" .. d .. "'"))
	eq(read_file(p), "again", "unchanged by the failures")
	check_error(function() lunet.sys.write_atomic("a\0b", "x") end,
		"lunet.sys.write_atomic: path contains a NUL byte")
	check_error(function() lunet.sys.write_atomic("", "x") end,
		"lunet.sys.write_atomic: empty path")
	check_error(function() lunet.sys.write_atomic(p) end, "bad argument #2")
	eq(#temp_files(), 0, "no temporary file")
end)

-- ---- broken files -------------------------------------------------------------------------

test("truncated, corrupted, foreign and newer files are errors that say which", function()
	local p = path("model.lnt")
	lunet.save(p, mlp())
	local good = read_file(p)
	local q = path("broken.lnt")

	write_file(q, good:sub(1, #good // 2))
	check_error(function() lunet.load(q) end, "lunet.load: " .. q .. ": truncated")
	write_file(q, good:sub(1, 10))
	check_error(function() lunet.load(q) end, "lunet.load: " .. q .. ": truncated")

	local mid = #good // 2
	write_file(q, good:sub(1, mid - 1) .. string.char(good:byte(mid) ~ 0x10) .. good:sub(mid + 1))
	check_error(function() lunet.load(q) end,
		"lunet.load: " .. q .. ": checksum mismatch (file corrupted)")
	write_file(q, good:sub(1, -2) .. string.char(good:byte(-1) ~ 1))
	check_error(function() lunet.load(q) end, "checksum mismatch (file corrupted)")

	write_file(q, "return os.exit(1)\n")
	check_error(function() lunet.load(q) end, "lunet.load: " .. q .. ": not a lunet file")
	write_file(q, "")
	check_error(function() lunet.load(q) end, "lunet.load: " .. q .. ": not a lunet file (empty)")

	write_file(q, good:sub(1, 6) .. string.char(7) .. good:sub(8))
	check_error(function() lunet.load(q) end,
		"lunet.load: " .. q .. ": format version 7 is newer than this lunet (3)")

	check_error(function() lunet.load(path("nothing.lnt")) end,
		"lunet.load: " .. path("nothing.lnt") .. ": cannot open: No such file or directory")
	check_error(function() lunet.load(dir) end, "lunet.load: " .. dir .. ": is a directory")
end)

test("every truncation of a small file fails cleanly", function()
	local p = path("small.lnt")
	lunet.save(p, {x = lunet.ones(2, 2), n = 1, s = "str", m = nn.Linear(2, 1)})
	local good = read_file(p)
	local q = path("cut.lnt")
	for n = 0, #good - 1 do
		write_file(q, good:sub(1, n))
		local ok, err = pcall(lunet.load, q)
		check(not ok, "a file cut at " .. n .. " bytes must not load")
		check(err:find(n == 0 and "not a lunet file" or "truncated", 1, true),
			"cut at " .. n .. ": " .. err)
	end
	write_file(q, good .. "\0")
	check_error(function() lunet.load(q) end, "file corrupted")
	for i = 1, #good do
		write_file(q, good:sub(1, i - 1) .. string.char(good:byte(i) ~ 0x80) .. good:sub(i + 1))
		check(not pcall(lunet.load, q), "a flipped byte at " .. i .. " must not load")
	end
end)

-- CRC-32 (the IEEE polynomial, as zlib's crc32), to damage files in ways
-- that pass the checksum and reach the parser.
local crc_table = {}
for i = 0, 255 do
	local c = i
	for _ = 1, 8 do c = (c & 1 ~= 0) and (0xEDB88320 ~ (c >> 1)) or (c >> 1) end
	crc_table[i] = c
end
local function crc32(s)
	local c = 0xFFFFFFFF
	for i = 1, #s do c = crc_table[(c ~ s:byte(i)) & 0xFF] ~ (c >> 8) end
	return c ~ 0xFFFFFFFF
end

test("damaged payloads with a valid checksum load or fail cleanly", function()
	local m = nn.Sequential{nn.Linear(3, 4), nn.BatchNorm(4), nn.Sequential{nn.ReLU(), nn.Linear(4, 2)}}
	local opt = optim.Adam(m, {lr = 0.01})
	local shared, x = {1, 2}, lunet.randn(2, 2)
	local p = path("fuzz.lnt")
	lunet.save(p, {model = m, opt = opt, again = opt, s = shared, t = shared, x = x, y = x,
		first = m:get(1), str = "abc", deep = {a = {b = {c = true}}}})
	local good = read_file(p)
	eq(string.unpack("<I4", good, #good - 3), crc32(good:sub(17, -5)), "the checksum is zlib's crc32")
	local payload = good:sub(17, -5)
	local q = path("fuzzed.lnt")
	local rng = 12345
	local function rand(n)  -- a small LCG, independent of lunet's rng
		rng = (rng * 1103515245 + 12345) % 2147483648
		return rng % n
	end
	local loaded, refused = 0, 0
	for _ = 1, 300 do
		local b = {payload:byte(1, -1)}
		for _ = 1, 1 + rand(3) do
			local at = 1 + rand(#b)
			local how = rand(3)
			if how == 0 then b[at] = b[at] ~ (1 << rand(8))
			elseif how == 1 then b[at] = rand(256)
			else for i = #b, at + 1, -1 do b[i] = nil end end
		end
		local body = string.char(table.unpack(b))
		write_file(q, "LUNET\0" .. string.pack("<I2I8", 1, #body) .. body .. string.pack("<I4", crc32(body)))
		local ok, v = pcall(lunet.load, q)
		if ok then
			loaded = loaded + 1
		else
			refused = refused + 1
			check(tostring(v):find("lunet.load: " .. q .. ": ", 1, true), tostring(v))
		end
	end
	check(refused > 150, "most damage is noticed: " .. refused .. " of 300")
end)

os.execute("rm -rf '" .. dir .. "'")

h.done()
