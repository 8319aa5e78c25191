-- test_optim.lua -- lunet.optim from Lua: the
-- constructors with a model or with tables of tensors, updates checked
-- against formulas written out here, lr get/set, state()/load_state(),
-- schedules, and every documented error with its message.
--
-- Runs under the `lunet` runner or the stock interpreter:
--   lua5.4 -e 'package.cpath="BUILD/?.so;"..package.cpath' test_optim.lua
local lunet = lunet or require "lunet"
local nn, optim = lunet.nn, lunet.optim

local SEED = 424242
local harness = dofile((arg[0]:match("^(.*)/") or ".") .. "/harness.lua")
local h = harness.new{seed = SEED}
-- raises(want, fn, ...): fn(...) must fail with a message containing `want`.
local test, eq, near, raises = h.test, h.eq, h.near, h.raises

-- Two parameters p1 {2,2}, p2 {3} and their gradients.
local P0 = {0.5, -1.0, 2.0, 0.25, -0.3, 0.8, 1.5}
local function problem()
	local p1 = lunet.tensor{{P0[1], P0[2]}, {P0[3], P0[4]}}
	local p2 = lunet.tensor{P0[5], P0[6], P0[7]}
	return {p1, p2}, {lunet.zeros(2, 2), lunet.zeros(3)}
end

-- Flat access to value k (1..7) of a {p1, p2} pair.
local function get(ts, k)
	if k <= 4 then return ts[1]:get((k - 1) // 2 + 1, (k - 1) % 2 + 1) end
	return ts[2][k - 4]
end
local function set(ts, k, v)
	if k <= 4 then ts[1]:set((k - 1) // 2 + 1, (k - 1) % 2 + 1, v) else ts[2][k - 4] = v end
end

-- g = 2*p - 1 at the current p (a quadratic bowl), written into the grads.
local function fill_grads(ps, gs)
	for k = 1, 7 do set(gs, k, 2 * get(ps, k) - 1) end
end

-- Runs `steps` steps of opt and of `ref` (a function(p, g, state) -> new p
-- for one value, state a per-value table) and compares every value.
local function against(opt, ps, gs, steps, ref)
	local rp, rs = {}, {}
	for k = 1, 7 do rp[k] = P0[k]; rs[k] = {} end
	for s = 1, steps do
		fill_grads(ps, gs)
		opt:step()
		for k = 1, 7 do
			rp[k] = ref(rp[k], 2 * rp[k] - 1, rs[k], s)
			near(get(ps, k), rp[k], 1e-5, string.format("step %d value %d", s, k))
		end
	end
	eq(opt.steps, steps, "steps")
end

-- ---------------------------------------------------------------------------
-- updates
-- ---------------------------------------------------------------------------

test("SGD momentum with weight decay", function()
	local ps, gs = problem()
	local lr, mu, wd = 0.1, 0.9, 0.01
	local opt = optim.SGD(ps, gs, {lr = lr, momentum = mu, weight_decay = wd})
	-- d = g + wd*p;  b = mu*b + d (b = d at the first step);  p = p - lr*b
	against(opt, ps, gs, 3, function(p, g, st, s)
		local d = g + wd * p
		st.b = s == 1 and d or mu * st.b + d
		return p - lr * st.b
	end)
end)

test("SGD nesterov", function()
	local ps, gs = problem()
	local lr, mu = 0.05, 0.8
	local opt = optim.SGD(ps, gs, {lr = lr, momentum = mu, nesterov = true})
	against(opt, ps, gs, 3, function(p, g, st, s)
		st.b = s == 1 and g or mu * st.b + g
		return p - lr * (g + mu * st.b)
	end)
end)

test("Adam with bias correction", function()
	local ps, gs = problem()
	local lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-8
	local opt = optim.Adam(ps, gs, {lr = lr, betas = {b1, b2}, eps = eps})
	against(opt, ps, gs, 3, function(p, g, st, t)
		st.m = b1 * (st.m or 0) + (1 - b1) * g
		st.v = b2 * (st.v or 0) + (1 - b2) * g * g
		local mhat, vhat = st.m / (1 - b1 ^ t), st.v / (1 - b2 ^ t)
		return p - lr * mhat / (math.sqrt(vhat) + eps)
	end)
end)

test("AdamW, as optim.AdamW and as Adam{decoupled=true}", function()
	local lr, wd, b1, b2, eps = 0.01, 0.1, 0.9, 0.999, 1e-8
	local function ref(p, g, st, t)
		p = p - lr * wd * p
		st.m = b1 * (st.m or 0) + (1 - b1) * g
		st.v = b2 * (st.v or 0) + (1 - b2) * g * g
		return p - lr * (st.m / (1 - b1 ^ t)) / (math.sqrt(st.v / (1 - b2 ^ t)) + eps)
	end
	local ps, gs = problem()
	local opt = optim.AdamW(ps, gs, {lr = lr, weight_decay = wd})
	eq(opt.kind, "AdamW", "kind")
	eq(opt.decoupled, true, "decoupled")
	against(opt, ps, gs, 3, ref)
	ps, gs = problem()
	opt = optim.Adam(ps, gs, {lr = lr, weight_decay = wd, decoupled = true})
	eq(opt.kind, "AdamW", "kind")
	against(opt, ps, gs, 3, ref)
	-- AdamW's default weight decay is PyTorch's 0.01
	near(optim.AdamW(ps, gs).weight_decay, 0.01, 0, "AdamW default weight_decay")
end)

test("Adam with L2 weight decay", function()
	local ps, gs = problem()
	local lr, wd, b1, b2, eps = 0.01, 0.1, 0.9, 0.999, 1e-8
	local opt = optim.Adam(ps, gs, {lr = lr, weight_decay = wd})
	against(opt, ps, gs, 2, function(p, g, st, t)
		g = g + wd * p
		st.m = b1 * (st.m or 0) + (1 - b1) * g
		st.v = b2 * (st.v or 0) + (1 - b2) * g * g
		return p - lr * (st.m / (1 - b1 ^ t)) / (math.sqrt(st.v / (1 - b2 ^ t)) + eps)
	end)
end)

test("RMSprop plain, with momentum, centered", function()
	local cases = {
		{lr = 0.01},
		{lr = 0.01, alpha = 0.9, momentum = 0.5, weight_decay = 0.1},
		{lr = 0.01, alpha = 0.9, momentum = 0.5, centered = true},
	}
	for _, o in ipairs(cases) do
		local ps, gs = problem()
		local opt = optim.RMSprop(ps, gs, o)
		local a, eps, mu, wd = o.alpha or 0.99, 1e-8, o.momentum or 0, o.weight_decay or 0
		against(opt, ps, gs, 3, function(p, g, st)
			g = g + wd * p
			st.v = a * (st.v or 0) + (1 - a) * g * g
			local vt = st.v
			if o.centered then
				st.c = a * (st.c or 0) + (1 - a) * g
				vt = vt - st.c * st.c
			end
			if mu > 0 then
				st.b = mu * (st.b or 0) + g / (math.sqrt(vt) + eps)
				return p - o.lr * st.b
			end
			return p - o.lr * g / (math.sqrt(vt) + eps)
		end)
	end
end)

test("SGD on a model: p - lr*g through :parameters()", function()
	local m = nn.Linear(3, 2)
	local opt = optim.SGD(m, {lr = 0.5})
	local w0 = m.weight:clone()
	m.grad_weight:fill(0.25)
	m.grad_bias:fill(-1)
	local b0 = m.bias:clone()
	opt:step()
	for i = 1, 2 do
		for j = 1, 3 do near(m.weight:get(i, j), w0:get(i, j) - 0.125, 1e-6, "weight") end
		near(m.bias[i], b0[i] + 0.5, 1e-6, "bias")
	end
	opt:zero_grad()
	eq(m.grad_weight:abs():sum(), 0, "grad_weight after zero_grad")
	eq(m.grad_bias:abs():sum(), 0, "grad_bias after zero_grad")
end)

test("a Sequential trains: loss falls with every optimiser", function()
	for _, make in ipairs{
		function(m) return optim.SGD(m, {lr = 0.1, momentum = 0.9}) end,
		function(m) return optim.Adam(m, {lr = 0.01}) end,
		function(m) return optim.RMSprop(m, {lr = 0.01}) end,
	} do
		lunet.seed(7)
		local model = nn.Sequential{nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1)}
		local x = lunet.randn(32, 4)
		local y = x:sum(2) * 0.5
		local crit = nn.MSELoss()
		local opt = make(model)
		local first, last
		for _ = 1, 100 do
			opt:zero_grad()
			local out = model:forward(x)
			last = crit:forward(out, y)
			first = first or last
			model:backward(x, crit:backward(out, y))
			opt:step()
		end
		if not (last < 0.2 * first) then
			error(string.format("%s: loss %g -> %g", tostring(opt), first, last))
		end
	end
end)

test("the optimiser keeps the parameters alive after the model is collected", function()
	local ps, gs = problem()
	local opt = optim.SGD(ps, gs, {lr = 1})
	local keep = ps[2]
	ps, gs = nil, nil
	collectgarbage(); collectgarbage()
	opt:step()  -- gradients are zero: nothing changes, nothing crashes
	near(keep[1], P0[5], 1e-7, "value")
end)

-- ---------------------------------------------------------------------------
-- fields, tostring, state
-- ---------------------------------------------------------------------------

test("lr and other hyper-parameters through fields", function()
	local ps, gs = problem()
	local opt = optim.SGD(ps, gs, {lr = 0.1, momentum = 0.9})
	near(opt.lr, 0.1, 0, "lr")
	near(opt.momentum, 0.9, 0, "momentum")
	eq(opt.nesterov, false, "nesterov")
	eq(opt.kind, "SGD", "kind")
	eq(opt.steps, 0, "steps")
	eq(opt.beta1, nil, "unknown field")
	opt.lr = 0.01
	near(opt.lr, 0.01, 0, "lr after set")
	raises("optim.SGD: lr must be >= 0, got -1", function() opt.lr = -1 end)
	near(opt.lr, 0.01, 0, "lr unchanged after a bad set")
	raises("optim.SGD: lr must be a number, got string", function() opt.lr = "fast" end)
	raises("optim.SGD: cannot set field 'learning_rate'", function() opt.learning_rate = 1 end)
	local plain = optim.SGD(ps, gs, {lr = 0.1})
	raises("optim.SGD: cannot set momentum to 0.9: built without momentum", function()
		plain.momentum = 0.9
	end)
	local adam = optim.Adam(ps, gs)
	eq(adam.betas[1], 0.9, "betas[1]")
	near(adam.betas[2], 0.999, 1e-12, "betas[2]")
	near(adam.lr, 1e-3, 0, "Adam default lr")
	raises("optim.Adam: beta1 must be in [0,1), got 1", function() adam.beta1 = 1 end)
	near(optim.RMSprop(ps, gs).lr, 1e-2, 0, "RMSprop default lr")
end)

test("tostring", function()
	local ps, gs = problem()
	local opt = optim.SGD(ps, gs, {lr = 0.1, momentum = 0.9})
	eq(tostring(opt), "SGD(lr=0.1, momentum=0.9, nesterov=false, weight_decay=0) over 2 tensors "
		.. "(7 values), 0 steps", "tostring")
	opt:step()
	eq(tostring(opt):match("1 step$"), "1 step", "step count in tostring")
	eq(tostring(optim.Adam(ps, gs, {lr = 0.5})),
		"Adam(lr=0.5, betas={0.9,0.999}, eps=1e-08, weight_decay=0) over 2 tensors (7 values), 0 steps",
		"Adam tostring")
end)

test("state() exposes the buffers; load_state() resumes exactly", function()
	local ps, gs = problem()
	local opt = optim.Adam(ps, gs, {lr = 0.05})
	for _ = 1, 2 do fill_grads(ps, gs); opt:step() end
	local st = opt:state()
	eq(st.kind, "Adam", "kind")
	eq(st.steps, 2, "steps")
	near(st.config.lr, 0.05, 0, "config.lr")
	eq(#st.params, 2, "#params")
	eq(st.params[1].exp_avg:dim(), 2, "exp_avg shape")
	eq(st.params[2].exp_avg_sq:size(1), 3, "exp_avg_sq shape")
	-- after the first step exp_avg = (1-b1)*g1, so it is not zero
	if st.params[1].exp_avg:abs():sum() == 0 then error("exp_avg is zero") end

	-- a second optimiser over a copy of the parameters, loaded from st,
	-- takes the same next step
	local qs = {ps[1]:clone(), ps[2]:clone()}
	local hs = {lunet.zeros(2, 2), lunet.zeros(3)}
	local opt2 = optim.Adam(qs, hs, {lr = 0.9})
	opt2:load_state(st)
	eq(opt2.steps, 2, "steps after load")
	near(opt2.lr, 0.05, 0, "lr after load")
	fill_grads(ps, gs); opt:step()
	fill_grads(qs, hs); opt2:step()
	for k = 1, 7 do eq(get(qs, k), get(ps, k), "value " .. k .. " after resuming") end

	-- every buffer name of each kind
	local names = {}
	for k in pairs(optim.SGD(ps, gs, {lr = 0.1, momentum = 0.5}):state().params[1]) do names[#names + 1] = k end
	eq(table.concat(names, ","), "momentum_buffer", "SGD state names")
	names = {}
	for k in pairs(optim.RMSprop(ps, gs, {momentum = 0.5, centered = true}):state().params[2]) do
		names[#names + 1] = k
	end
	table.sort(names)
	eq(table.concat(names, ","), "grad_avg,momentum_buffer,square_avg", "RMSprop state names")
end)

test("load_state errors change nothing", function()
	local ps, gs = problem()
	local opt = optim.SGD(ps, gs, {lr = 0.1, momentum = 0.9})
	local st = opt:state()
	raises("optim:load_state: state is for SGD, this optimizer is Adam", function()
		optim.Adam(ps, gs):load_state(st)
	end)
	local one = optim.SGD({ps[1]}, {gs[1]}, {lr = 0.1, momentum = 0.9})
	raises("optim:load_state: state has 2 parameters, this optimizer has 1", function()
		one:load_state(st)
	end)
	local bad = opt:state()
	bad.params[2].momentum_buffer = lunet.zeros(4)
	raises("optim:load_state: params[2].momentum_buffer has shape {4}, the parameter has shape {3}",
		function() opt:load_state(bad) end)
	bad = opt:state()
	bad.config.lr = -5
	bad.steps = 9
	raises("optim:load_state: SGD: lr must be >= 0, got -5", function() opt:load_state(bad) end)
	near(opt.lr, 0.1, 0, "lr unchanged")
	eq(opt.steps, 0, "steps unchanged")
end)

test("a closed optimiser raises", function()
	local ps, gs = problem()
	local opt = optim.SGD(ps, gs, {lr = 0.1})
	opt:close()
	raises("optimizer is closed", function() opt:step() end)
	eq(tostring(opt), "optimizer (closed)", "tostring of a closed optimizer")
	do local o <close> = optim.SGD(ps, gs, {lr = 0.1}) end
end)

-- ---------------------------------------------------------------------------
-- constructor errors
-- ---------------------------------------------------------------------------

test("invalid hyper-parameters", function()
	local ps, gs = problem()
	raises("optim.SGD: lr must be >= 0, got -0.1", optim.SGD, ps, gs, {lr = -0.1})
	raises("optim.SGD: momentum must be >= 0, got -0.5", optim.SGD, ps, gs, {lr = 0.1, momentum = -0.5})
	raises("optim.SGD: weight_decay must be >= 0, got -1", optim.SGD, ps, gs, {lr = 0.1, weight_decay = -1})
	raises("optim.SGD: nesterov requires momentum > 0, got 0", optim.SGD, ps, gs, {lr = 0.1, nesterov = true})
	raises("optim.Adam: beta1 must be in [0,1), got 1", optim.Adam, ps, gs, {betas = {1, 0.999}})
	raises("optim.Adam: beta2 must be in [0,1), got -0.5", optim.Adam, ps, gs, {betas = {0.9, -0.5}})
	raises("optim.Adam: eps must be >= 0, got -1", optim.Adam, ps, gs, {eps = -1})
	raises("optim.AdamW: lr must be >= 0, got -1", optim.AdamW, ps, gs, {lr = -1})
	raises("optim.RMSprop: alpha must be in [0,1), got 1", optim.RMSprop, ps, gs, {alpha = 1})
	raises("optim.RMSprop: momentum must be >= 0, got -0.1", optim.RMSprop, ps, gs, {momentum = -0.1})
	raises("optim.SGD: lr must be >= 0, got nan", optim.SGD, ps, gs, {lr = 0 / 0})
	raises("optim.SGD: lr must be finite, got inf", optim.SGD, ps, gs, {lr = math.huge})
	raises("optim.Adam: beta1 must be in [0,1), got nan", optim.Adam, ps, gs, {betas = {0 / 0, 0.9}})
end)

test("invalid options and arguments", function()
	local ps, gs = problem()
	raises("optim.SGD: unknown option 'learning_rate' (options: lr, momentum, nesterov, weight_decay)",
		optim.SGD, ps, gs, {learning_rate = 0.1})
	raises("optim.Adam: unknown option 'momentum'", optim.Adam, ps, gs, {momentum = 0.9})
	raises("optim.SGD: option 'lr' must be a number, got string", optim.SGD, ps, gs, {lr = "0.1"})
	raises("optim.SGD: option 'nesterov' must be a boolean, got number", optim.SGD, ps, gs,
		{momentum = 0.9, nesterov = 1})
	raises("optim.Adam: option 'betas' must be a table of two numbers", optim.Adam, ps, gs,
		{betas = 0.9})
	raises("optim.SGD: options must be a table, got number", optim.SGD, ps, gs, 0.1)
	raises("optim.SGD: 2 parameters but 1 gradients", optim.SGD, ps, {gs[1]})
	raises("optim.SGD: parameter 2 is number, expected lunet.Tensor", optim.SGD, {ps[1], 5},
		{gs[1], gs[2]})
	raises("optim.SGD: parameter 2 has shape {3} but its gradient has shape {2,2}", optim.SGD, ps,
		{gs[1], gs[1]})
	raises("optim.SGD: parameters 1 and 2 share memory", optim.SGD, {ps[1], ps[1]}, {gs[1], gs[1]})
	raises("optim.SGD: no parameters to optimize", optim.SGD, {}, {})
	raises("optim.SGD: no parameters to optimize", optim.SGD, nn.Sequential{nn.ReLU()})
	raises("optim.SGD: expected a model or a table of parameter tensors, got a lunet.Tensor",
		optim.SGD, ps[1], gs[1])
	raises("optim.SGD: expected a model or a table of parameter tensors, got number", optim.SGD, 3)
	raises("optim.SGD: a table of parameters needs a table of gradients as argument 2, got nil",
		optim.SGD, ps)
	raises("optim.SGD: parameter 1: tensor is not contiguous", optim.SGD,
		{lunet.zeros(3, 4):narrow(2, 1, 2)}, {lunet.zeros(3, 2)})
	-- a Lua model table with its own parameters method
	local w, gw = lunet.ones(2), lunet.zeros(2)
	local custom = {parameters = function(self) return {w}, {gw} end}
	local opt = optim.SGD(custom, {lr = 0.5})
	gw:fill(1)
	opt:step()
	eq(w[1], 0.5, "custom model updated")
end)

test("SGD has no default learning rate", function()
	local ps, gs = problem()
	raises("optim.SGD: lr is required: it has no default", optim.SGD, ps, gs)
	raises("optim.SGD: lr is required: it has no default", optim.SGD, nn.Linear(2, 2))
	raises("optim.SGD: lr is required: it has no default", optim.SGD, ps, gs, {momentum = 0.9})
	near(optim.SGD(ps, gs, {lr = 0.3}).lr, 0.3, 0, "given")
end)

test("options, fields and tostring follow each optimiser's description", function()
	local ps, gs = problem()
	raises("optim.Adam: unknown option 'momentum' (options: lr, betas, eps, weight_decay, decoupled)",
		optim.Adam, ps, gs, {momentum = 0.9})
	raises("optim.AdamW: unknown option 'alpha' (options: lr, betas, eps, weight_decay, decoupled)",
		optim.AdamW, ps, gs, {alpha = 0.9})
	raises("optim.RMSprop: unknown option 'betas' (options: lr, alpha, eps, momentum, weight_decay, "
		.. "centered)", optim.RMSprop, ps, gs, {betas = {0.9, 0.99}})
	raises("optim.RMSprop: option 'centered' must be a boolean, got number", optim.RMSprop, ps, gs,
		{centered = 1})
	raises("optim.RMSprop: option 'alpha' must be a number, got boolean", optim.RMSprop, ps, gs,
		{alpha = true})
	raises("optim.Adam: option 'betas' must be a table of two numbers, element 2 is string",
		optim.Adam, ps, gs, {betas = {0.9, "x"}})
	raises("optim.SGD: option names must be strings, got number", optim.SGD, ps, gs, {0.1})
	-- flags are fields too, validated as options are
	local sgd = optim.SGD(ps, gs, {lr = 0.1, momentum = 0.9})
	sgd.nesterov = true
	eq(sgd.nesterov, true, "nesterov set")
	raises("optim.SGD: nesterov must be a boolean, got number", function() sgd.nesterov = 1 end)
	raises("optim.SGD: nesterov requires momentum > 0, got 0", function() sgd.momentum = 0 end)
	eq(sgd.momentum, 0.9, "momentum unchanged")
	sgd.nesterov = false
	sgd.momentum = 0
	raises("optim.SGD: nesterov requires momentum > 0, got 0", function() sgd.nesterov = true end)
	local rms = optim.RMSprop(ps, gs, {centered = true})
	raises("optim.RMSprop: cannot change centered after construction", function()
		rms.centered = false
	end)
	eq(rms.centered, true, "centered unchanged")
	local adam = optim.Adam(ps, gs)
	adam.betas = {0.8, 0.9}
	eq(adam.beta1, 0.8, "beta1 through betas")
	near(adam.betas[2], 0.9, 0, "betas[2]")
	raises("optim.Adam: cannot change decoupled after construction", function()
		adam.decoupled = true
	end)
	eq(tostring(optim.RMSprop(ps, gs, {lr = 0.5, centered = true})),
		"RMSprop(lr=0.5, alpha=0.99, eps=1e-08, momentum=0, weight_decay=0, centered=true) over "
		.. "2 tensors (7 values), 0 steps", "RMSprop tostring")
	eq(tostring(optim.AdamW(ps, gs)):match("^[^)]*%)"),
		"AdamW(lr=0.001, betas={0.9,0.999}, eps=1e-08, weight_decay=0.01)", "AdamW tostring")
	-- state().config and load_state's config are checked by name
	local st = adam:state()
	eq(st.config.decoupled, false, "flags in the config")
	st.config.momentum = 0.9
	raises("optim:load_state: config has no value 'momentum' (Adam has: lr, beta1, beta2, eps, "
		.. "weight_decay, decoupled)", function() adam:load_state(st) end)
	st.config.momentum = nil
	st.config.eps = "small"
	raises("optim:load_state: config.eps must be a number, got string", function()
		adam:load_state(st)
	end)
end)

test("a custom Lua module inside a Sequential has its parameters optimised", function()
	local w, gw = lunet.tensor{1, 2}, lunet.zeros(2)
	local custom = {
		forward = function(self, x) return x end,
		backward = function(self, x, gy) return gy end,
		parameters = function(self) return {w}, {gw} end,
	}
	local lin = nn.Linear(2, 2)
	local model = nn.Sequential{lin, nn.Sequential{nn.ReLU(), custom}, nn.Linear(2, 1)}
	local opt = optim.SGD(model, {lr = 0.5})
	local params = model:parameters()
	eq(#opt:state().params, #params, "every parameter, the custom one included")
	eq(tostring(opt):match("over (%d+) tensors"), tostring(#params), "tensor count")
	gw:fill(1)
	lin.grad_bias:fill(2)
	local b = lin.bias:clone()
	opt:step()
	eq(w[1], 0.5, "custom parameter updated")
	eq(w[2], 1.5, "custom parameter updated")
	near(lin.bias[1], b[1] - 1, 1e-6, "built-in parameter updated")
	-- a custom module without parameters adds none
	local plain = {forward = custom.forward, backward = custom.backward}
	local m2 = nn.Sequential{nn.Linear(2, 2), plain}
	eq(tostring(optim.Adam(m2)):match("over (%d+) tensors"), "2", "only the Linear's")
end)

test("a parameters method that closes modules while the optimiser gathers them", function()
	local lin = nn.Linear(2, 2)
	local function passthrough(params)
		return {
			forward = function(self, x) return x end,
			backward = function(self, x, gy) return gy end,
			parameters = params,
		}
	end
	local a = passthrough(function() return lin:parameters() end)
	local model
	local b = passthrough(function()
		getmetatable(lin).__close(lin)
		getmetatable(model).__close(model)
		collectgarbage()
		collectgarbage()
		return {}, {}
	end)
	model = nn.Sequential{nn.Linear(2, 2), a, b}
	local w = lin.weight
	local opt = optim.SGD(model, {lr = 1})
	collectgarbage()
	eq(#opt:state().params, 4, "the Linear in the model and the one behind a")
	local before = w:clone()
	lin = nil
	collectgarbage()
	opt:step()  -- zero gradients: nothing moves, nothing crashes
	eq(w:allclose(before, 0, 0), true, "unchanged")
end)

-- ---------------------------------------------------------------------------
-- schedules
-- ---------------------------------------------------------------------------

test("schedules", function()
	local s = optim.schedules
	local step = s.step(0.1, 10, 0.5)
	near(step(0), 0.1, 1e-12, "step(0)")
	near(step(9), 0.1, 1e-12, "step(9)")
	near(step(10), 0.05, 1e-12, "step(10)")
	near(step(25), 0.025, 1e-12, "step(25)")

	local cos = s.cosine(1.0, 100, 0.1)
	near(cos(0), 1.0, 1e-12, "cosine(0)")
	near(cos(50), 0.55, 1e-12, "cosine(50) halfway")
	near(cos(100), 0.1, 1e-12, "cosine(100)")
	near(cos(500), 0.1, 1e-12, "cosine past the end")
	near(s.cosine(2, 4)(1), 2 * (1 + math.cos(math.pi / 4)) / 2, 1e-12, "cosine(1) of 4")

	local warm = s.warmup(0.4, 4)
	near(warm(0), 0.1, 1e-12, "warmup(0)")
	near(warm(3), 0.4, 1e-12, "warmup(3)")
	near(warm(10), 0.4, 1e-12, "after warmup")
	local chained = s.warmup(0.4, 4, s.step(0.4, 2, 0.1))
	near(chained(4), 0.4, 1e-12, "chained(4)")
	near(chained(6), 0.04, 1e-12, "chained(6)")
	near(s.exponential(1, 0.5)(3), 0.125, 1e-12, "exponential")

	-- a schedule drives an optimiser's lr
	local ps, gs = problem()
	local opt = optim.SGD(ps, gs, {lr = 1})
	for e = 0, 3 do opt.lr = cos(e * 25) end
	near(opt.lr, cos(75), 1e-7, "lr set from a schedule")

	raises("optim.schedules.step: step_size must be an integer >= 1, got 0", s.step, 0.1, 0, 0.5)
	raises("optim.schedules.step: lr0 must be >= 0, got -1", s.step, -1, 10, 0.5)
	raises("optim.schedules.cosine: total must be an integer >= 1, got 2.5", s.cosine, 0.1, 2.5)
	raises("optim.schedules.warmup: after must be a schedule", s.warmup, 0.1, 5, 3)
	raises("optim.schedules.cosine: step must be a number >= 0, got -1", cos, -1)
	raises("optim.schedules.step: gamma must be a finite number, got nil", s.step, 0.1, 3)
end)

h.done()
