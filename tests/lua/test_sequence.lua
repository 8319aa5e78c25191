-- test_sequence.lua -- the layers for sequences through the Lua surface:
-- Embedding, LayerNorm, GELU, SiLU, layers on inputs with leading
-- dimensions, CrossEntropyLoss on {N,T,C} logits, optim.clip_grad_norm,
-- RNN/LSTM/GRU and MultiheadAttention;
-- gradient checks, values, save/load and every documented error.
local lunet = lunet or require "lunet"
local nn, optim = lunet.nn, lunet.optim

local harness = dofile((arg[0]:match("^(.*)/") or ".") .. "/harness.lua")
local h = harness.new{seed = 2024, reseed = true}
local test, check, check_error, near = h.test, h.check, h.check_error, h.near

local function check_grad(obj, x, target, opts)
	local ok, err, where = nn.gradcheck(obj, x, target, opts)
	check(ok, string.format("gradcheck of %s failed: error %.3e at %s", tostring(obj), err,
	                        tostring(where)))
	return err
end

-- labels {n, t} drawn from 1..k
local function labels(n, t, k)
	local rows = {}
	for i = 1, n do
		rows[i] = {}
		for j = 1, t do
			rows[i][j] = math.floor(lunet.rand(1)[1] * k) + 1
		end
	end
	return lunet.tensor(rows)
end

local function max_diff(a, b)
	return (a - b):abs():max()
end

-- m for nn.gradcheck, with before() called ahead of every forward (to put
-- back what a forward changes: a carried state, the generator's position)
local function before_forward(m, before)
	return {
		forward = function(_, input) before(); return m:forward(input) end,
		backward = function(_, input, gy) return m:backward(input, gy) end,
		parameters = function() return m:parameters() end,
		zero_grad = function() m:zero_grad() end,
	}
end

-- a save and a load through a temporary file
local function reload(obj)
	local path = os.tmpname()
	lunet.save(path, obj)
	local back = lunet.load(path)
	os.remove(path)
	return back
end

-- ---- GELU, SiLU, leading dimensions ----------------------------------------------

test("GELU and SiLU values", function()
	local x = lunet.tensor{{-2, -0.5, 0, 1, 3}}
	local g = nn.GELU():forward(x):totable()[1]
	local s = nn.SiLU():forward(x):totable()[1]
	local function phi(v)  -- the normal CDF, through erf's series
		local t, sum, term = v / math.sqrt(2), 0, nil
		term = t
		for n = 0, 60 do
			sum = sum + term / (2 * n + 1)
			term = -term * t * t / (n + 1)
		end
		return 0.5 * (1 + 2 / math.sqrt(math.pi) * sum)
	end
	for i, v in ipairs{-2, -0.5, 0, 1, 3} do
		near(g[i], v * phi(v), 1e-6, "GELU(" .. v .. ")")
		near(s[i], v / (1 + math.exp(-v)), 1e-6, "SiLU(" .. v .. ")")
	end
	check_grad(nn.GELU(), lunet.randn(3, 4) * 2)
	check_grad(nn.SiLU(), lunet.randn(2, 3, 4) * 2)
end)

test("Linear, activations, Dropout, LayerNorm take any leading dimensions", function()
	local x = lunet.randn(2, 3, 4)
	for _, m in ipairs{nn.Linear(4, 5), nn.GELU(), nn.Tanh(), nn.Dropout(0.3):evaluate(),
	                   nn.LayerNorm(4), nn.Sequential{nn.Linear(4, 6), nn.SiLU(), nn.Linear(6, 2)}} do
		local y = m:forward(x):clone()
		local y2 = m:forward(x:reshape(6, 4))
		check(max_diff(y:reshape(6, -1), y2) == 0, tostring(m) .. ": 3-D and 2-D differ")
		check_grad(m, x)
		check_grad(m, lunet.randn(2, 2, 1, 4))
		check_error(function() m:forward(lunet.randn(4)) end, "expected input of shape {N,",
		            "got {4}")
	end
	check_error(function() nn.Linear(5, 2):forward(x) end,
	            "Linear:forward: expected input of shape {N,...,5}, got {2,3,4}")
	-- Dropout in training mode on 3-D: kept values scaled by 1/(1-p)
	local d = nn.Dropout(0.5)
	local y = d:forward(lunet.ones(4, 8, 16))
	local kept = y:gt(0):sum()
	check(kept > 150 and kept < 362, "about half kept")
	near(y:max(), 2, 1e-7, "scale")
end)

-- ---- LayerNorm -------------------------------------------------------------------

test("LayerNorm values, gradients, options", function()
	local m = nn.LayerNorm(4)
	check(m.weight:min() == 1 and m.weight:max() == 1 and m.bias:abs():max() == 0, "defaults")
	near(m.eps, 1e-5, 1e-12, "eps")
	local y = m:forward(lunet.tensor{{1, 2, 3, 4}}):totable()[1]
	local r = 1 / math.sqrt(1.25 + 1e-5)
	h.same(y, {-1.5 * r, -0.5 * r, 0.5 * r, 1.5 * r}, 1e-6)
	m.weight:copy(lunet.tensor{2, 1, 1, 1})
	m.bias:copy(lunet.tensor{0, 0, 0, 1})
	y = m:forward(lunet.tensor{{1, 2, 3, 4}}):totable()[1]
	h.same(y, {-3 * r, -0.5 * r, 0.5 * r, 1.5 * r + 1}, 1e-6)
	local e = nn.LayerNorm(6, {eps = 1e-3})
	near(e.eps, 1e-3, 1e-12, "eps option")
	e.weight:copy(lunet.rand(6) + 0.5)
	e.bias:copy(lunet.randn(6))
	check_grad(e, lunet.randn(3, 6) * 2)
	check_grad(e, lunet.randn(2, 4, 6))
	check_error(function() nn.LayerNorm(0) end, "nn.LayerNorm: d must be >= 1, got 0")
	check_error(function() nn.LayerNorm(3.5) end, "nn.LayerNorm: d must be an integer")
	check_error(function() nn.LayerNorm(3, {eps = 0}) end,
	            "nn.LayerNorm: expected eps > 0 and finite, got 0")
	check_error(function() nn.LayerNorm(3, {eps = "x"}) end, "eps", "number")
	check_error(function() nn.LayerNorm(3, {epsilon = 1}) end, "unknown option 'epsilon'")
	check_error(function() e:forward(lunet.randn(2, 5)) end,
	            "LayerNorm:forward: expected input of shape {N,6}, got {2,5}")
end)

-- ---- Embedding -------------------------------------------------------------------

test("Embedding values, repeated labels, gradient check", function()
	local e = nn.Embedding(5, 3)
	check(#e.weight == 5 and e.weight:size(2) == 3, "weight {5,3}")
	local x = lunet.tensor{{2, 2, 5}, {1, 2, 3}}
	local y = e:forward(x)
	check(y:dim() == 3 and y:size(3) == 3, "{2,3,3}")
	h.same(y[1][2]:totable(), e.weight[2]:totable())
	h.same(y[2][3]:totable(), e.weight[3]:totable())
	e:zero_grad()
	local gy = lunet.randn(2, 3, 3)
	local gx = e:backward(x, gy)
	check(gx:abs():max() == 0 and gx:dim() == 2, "labels have no gradient")
	-- label 2 appears three times: its row gathers the three gradients
	local want = gy[1][1] + gy[1][2] + gy[2][2]
	check(max_diff(e.grad_weight[2], want) < 1e-6, "repeated label accumulates")
	check(e.grad_weight[4]:abs():max() == 0, "unused row")
	-- labels have no gradient: the check leaves them alone with input_grad off
	e.input_grad = false
	check(e:backward(x, gy) == nil, "no grad_input")
	check_grad(e, x)
	check_grad(e, labels(4, 6, 3))
	local s = nn.Sequential{nn.Embedding(6, 4), nn.Tanh(), nn.Linear(4, 2)}
	s.input_grad = false
	check_grad(s, labels(3, 5, 6))
	e.input_grad = true
	-- 1-D labels give {N,d}
	check(e:forward(lunet.tensor{1, 5}):dim() == 2, "1-D labels")
end)

test("Embedding errors", function()
	local e = nn.Embedding(5, 2)
	check_error(function() e:forward(lunet.tensor{{1, 6}}) end,
	            "Embedding:forward: label 6 at row 1, column 2 is out of range 1..5")
	check_error(function() e:forward(lunet.tensor{{0, 1}}) end, "label 0 at row 1, column 1")
	check_error(function() e:forward(lunet.tensor{{1, 2.5}}) end,
	            "Embedding:forward: label 2.5 at row 1, column 2 is not an integer")
	check_error(function() e:forward(lunet.tensor{{1, 0 / 0}}) end, "is not an integer")
	check_error(function() nn.Embedding(0, 2) end, "nn.Embedding: n must be >= 1, got 0")
	check_error(function() nn.Embedding(3) end, "nn.Embedding: d must be an integer")
	check_error(function() nn.Embedding(3, 2, {}) end, "expected at most 2 arguments")
	check_error(function() nn.Embedding(1 << 25, 1) end, "n in 1..16777216")
	check_error(function() e:forward("x") end, "lunet.Tensor")
	-- gradcheck over the labels themselves is refused by the labels check
	local ok, err = pcall(nn.gradcheck, e, lunet.tensor{{1, 2}})
	check(not ok and tostring(err):find("is not an integer", 1, true), tostring(err))
end)

-- ---- CrossEntropyLoss over tokens --------------------------------------------------

test("CrossEntropyLoss on {N,T,C}: the mean over tokens", function()
	local z = lunet.randn(3, 4, 6)
	local y = labels(3, 4, 6)
	local ce, flat = nn.CrossEntropyLoss(), nn.CrossEntropyLoss()
	local l = ce:forward(z, y)
	near(l, flat:forward(z:reshape(12, 6), y:reshape(12)), 1e-12, "same as the flat rows")
	local total = 0
	for i = 1, 3 do
		for t = 1, 4 do
			local row = z[i][t]
			local lse = math.log(row:exp():sum())
			total = total + lse - row[y:get(i, t)]
		end
	end
	near(l, total / 12, 1e-6, "by hand")
	near(nn.CrossEntropyLoss{reduction = "sum"}:forward(z, y), total, 1e-5, "sum")
	check_grad(ce, z, y)
	check_grad(nn.CrossEntropyLoss{reduction = "sum"}, z, y)
	check_grad(ce, z, {{1, 2, 3, 4}, {6, 5, 4, 3}, {1, 1, 1, 1}})  -- a table of labels
	-- reduction "none": one loss per token, {N,T}
	local none = nn.CrossEntropyLoss{reduction = "none"}
	none:forward(z, y)
	check(none.losses:dim() == 2 and none.losses:size(1) == 3 and none.losses:size(2) == 4,
	      "losses {3,4}")
	near(none.losses:mean(), l, 1e-6, "their mean")
	-- ignore_index leaves tokens out of the mean
	local ig = nn.CrossEntropyLoss{ignore_index = 1}
	local yi = y:clone()
	yi[1]:fill(1)
	local kept = 0
	for i = 1, 3 do for t = 1, 4 do
		if yi:get(i, t) ~= 1 then kept = kept + none.losses:get(i, t) end
	end end
	local count = yi:ne(1):sum()
	near(ig:forward(z, yi), kept / count, 1e-5, "ignore_index")
	check_grad(ig, z, yi)
	check_error(function() ce:forward(z, lunet.ones(4, 3)) end,
	            "CrossEntropyLoss:forward: expected labels of shape {3,4} or a target of shape {3,4,6}, got {4,3}")
	check_error(function() ce:forward(z, y:reshape(12)) end, "expected labels of shape {3,4}")
	local bad = y:clone()
	bad:set(2, 3, 7)
	check_error(function() ce:forward(z, bad) end,
	            "CrossEntropyLoss:forward: label 7 at row 2, column 3 is out of range 1..6")
	check_error(function() ce:forward(lunet.randn(2, 2, 2, 2), y) end,
	            "expected input of shape {N,C} or {N,T,C}, got {2,2,2,2}")
end)

-- ---- gradient clipping -------------------------------------------------------------

test("optim.clip_grad_norm", function()
	local m = nn.Sequential{nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)}
	local x = lunet.randn(5, 3)
	m:zero_grad()
	m:backward(x, m:forward(x):clone():fill(1))
	local params, grads = m:parameters()
	local function norm()
		local s = 0
		for _, g in ipairs(grads) do s = s + (g * g):sum() end
		return math.sqrt(s)
	end
	local before = norm()
	check(before > 0.5, "a gradient to clip")
	near(optim.clip_grad_norm(m, 1e9), before, 1e-6, "returned norm")
	near(norm(), before, 1e-6, "not clipped below max_norm")
	near(optim.clip_grad_norm(m, 0.25), before, 1e-6, "norm before clipping")
	near(norm(), 0.25, 1e-5, "clipped to max_norm")
	-- a table of parameters clips their gradients; a table of gradients too
	near(optim.clip_grad_norm(params, 0.1), 0.25, 1e-5, "parameters")
	near(norm(), 0.1, 1e-5, "clipped through parameters")
	near(optim.clip_grad_norm(grads, 0.05), 0.1, 1e-5, "gradients")
	near(norm(), 0.05, 1e-5, "clipped through gradients")
	local t = lunet.tensor{3, 4}
	near(optim.clip_grad_norm({t}, 1), 5, 1e-12, "a plain tensor")
	h.same(t:totable(), {3 / (5 + 1e-6), 4 / (5 + 1e-6)}, 1e-6)
	-- a Lua model with a parameters method
	local lua_model = {parameters = function() return {t}, {t} end}
	near(optim.clip_grad_norm(lua_model, 100), 1, 1e-5, "Lua model")
	-- non-finite norms as PyTorch: inf -> coefficient 0, NaN -> NaN
	local inf = lunet.tensor{1, 1 / 0}
	check(optim.clip_grad_norm({inf}, 1) == math.huge, "inf norm")
	check(inf[1] == 0 and inf[2] ~= inf[2], "scaled by 0")
	local nan = lunet.tensor{1, 0 / 0}
	local n = optim.clip_grad_norm({nan}, 1)
	check(n ~= n and nan[1] ~= nan[1], "NaN norm makes NaN gradients")
	check_error(function() optim.clip_grad_norm(m, -1) end,
	            "optim.clip_grad_norm: max_norm must be >= 0, got -1")
	check_error(function() optim.clip_grad_norm(m, 0 / 0) end, "max_norm must be >= 0")
	check_error(function() optim.clip_grad_norm(m) end, "max_norm must be a number, got no value")
	check_error(function() optim.clip_grad_norm(m, "1") end, "max_norm must be a number, got string")
	check_error(function() optim.clip_grad_norm(t, 1) end,
	            "expected a model or a table of tensors, got a lunet.Tensor (pass {t})")
	check_error(function() optim.clip_grad_norm({1, 2}, 1) end,
	            "optim.clip_grad_norm: element 1 of the table is number, expected lunet.Tensor")
	check_error(function() optim.clip_grad_norm(m, 1, 2) end, "expected at most 2 arguments")
	local closed = nn.Linear(2, 2)
	getmetatable(closed).__close(closed)
	check_error(function() optim.clip_grad_norm(closed, 1) end, "the model is closed")
end)

-- ---- RNN, LSTM, GRU ---------------------------------------------------------------

local function recurrent()
	return {
		function(o) return nn.RNN(3, 4, o) end,
		function(o) o = o or {}; o.nonlinearity = "relu"; return nn.RNN(3, 4, o) end,
		function(o) return nn.LSTM(3, 4, o) end,
		function(o) return nn.GRU(3, 4, o) end,
	}
end

test("recurrent layers: shapes, fields, parameters in PyTorch's order", function()
	local gates = {1, 1, 4, 3}
	for k, make in ipairs(recurrent()) do
		local m = make{layers = 2}
		local y = m:forward(lunet.randn(2, 5, 3))
		h.same(y:shape(), {2, 5, 4})
		h.same(m.hidden:shape(), {2, 2, 4})
		h.same(m.hidden[2]:totable(), y:select(2, 5):totable(), 0)  -- the top layer's last state
		if k == 3 then h.same(m.cell:shape(), {2, 2, 4}) else check(m.cell == nil, "no cell") end
		local params, grads = m:parameters()
		check(#params == 8 and #grads == 8, "4 per layer")
		local names = {"weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0",
		               "weight_ih_l1", "weight_hh_l1", "bias_ih_l1", "bias_hh_l1"}
		for i, name in ipairs(names) do
			check(rawequal(params[i]:numel(), m[name]:numel()), name)
			params[i]:fill(i)
			check(m[name]:max() == i, name .. " is parameter " .. i)
			check(m["grad_" .. name]:numel() == params[i]:numel(), "grad_" .. name)
		end
		h.same(m.weight_ih_l0:shape(), {gates[k] * 4, 3})
		h.same(m.weight_hh_l1:shape(), {gates[k] * 4, 4})
		h.same(m.bias_hh_l1:shape(), {gates[k] * 4})
		local sd = m:state_dict()
		for _, name in ipairs(names) do check(sd[name], "state dict has " .. name) end
		check_error(function() m.hidden = lunet.zeros(2, 2, 4) end, "cannot replace 'hidden'")
		check(m.nhidden == 4 and m.layers == 2 and m.nin == 3, "config fields")
	end
end)

test("recurrent layers: gradient checks over several steps, layers and shapes", function()
	for k, make in ipairs(recurrent()) do
		local eps = k == 2 and 1e-3 or 1e-2  -- ReLU's kink wants a small step
		check_grad(make(), lunet.randn(2, 4, 3), {eps = eps})
		check_grad(make{layers = 2}, lunet.randn(1, 6, 3), {eps = eps})
		check_grad(make{layers = 3}, lunet.randn(3, 2, 3), {eps = eps})
		check_grad(nn.Sequential{make{layers = 2}, nn.Linear(4, 2)}, lunet.randn(2, 3, 3), {eps = eps})
	end
	-- an embedding in front, labels in
	local lm = nn.Sequential{nn.Embedding(6, 3), nn.LSTM(3, 4, {layers = 2}), nn.Linear(4, 6)}
	lm.input_grad = false
	check_grad(lm, labels(2, 5, 6))
end)

test("stateful: the state carries, reset_state forgets, the gradient stops", function()
	for _, make in ipairs(recurrent()) do
		local whole, st = make{layers = 2}, make{layers = 2, stateful = true}
		local pw, ps = whole:parameters(), st:parameters()
		for i = 1, #pw do ps[i]:copy(pw[i]) end
		local x = lunet.randn(2, 6, 3)
		local a, b = x:narrow(2, 1, 2):contiguous(), x:narrow(2, 3, 4):contiguous()
		local y = whole:forward(x)
		st:forward(a)
		local yb = st:forward(b)
		check(max_diff(yb, y:narrow(2, 3, 4)) < 1e-6, "two chunks = the whole sequence")
		-- through a Sequential, reset_state reaches it
		local seq = nn.Sequential{st}
		seq:reset_state()
		check(st.hidden:abs():max() == 0, "zeroed")
		check(max_diff(st:forward(a), y:narrow(2, 1, 2)) < 1e-6, "from zeros again")
		check_error(function() st:forward(lunet.randn(3, 2, 3)) end,
		            "the state kept from the last forward is for a batch of 2, got a batch of 3")
		-- the gradient of the second chunk is that of the chunk run from the
		-- carried state held fixed: central differences with the state put
		-- back before each forward agree
		st:reset_state()
		st:forward(a)
		local hs, cs = st.hidden:clone(), st.cell and st.cell:clone()
		local probe = before_forward(st, function()
			st.hidden:copy(hs)
			if cs then st.cell:copy(cs) end
		end)
		local ok, err, where = nn.gradcheck(probe, b, {eps = 1e-3, tol = 2e-2})
		check(ok, string.format("stateful gradcheck: %.3g at %s", err, tostring(where)))
	end
end)

test("recurrent dropout and options", function()
	local m = nn.LSTM(3, 5, {layers = 3, dropout = 0.5})
	local x = lunet.randn(2, 4, 3)
	m:evaluate()
	local y0 = m:forward(x):clone()
	check(max_diff(m:forward(x), y0) == 0, "deterministic in evaluate mode")
	m:train()
	lunet.seed(3)
	local y1 = m:forward(x):clone()
	check(max_diff(y1, y0) > 1e-3, "dropout changes the output in training")
	lunet.seed(3)
	check(max_diff(m:forward(x), y1) == 0, "masks from lunet.seed")
	check(tostring(m) == "LSTM(3 -> 5, layers=3, dropout=0.5)", tostring(m))
	check(tostring(nn.RNN(2, 3, {nonlinearity = "relu", stateful = true}))
	      == "RNN(2 -> 3, nonlinearity=relu, stateful)", "RNN tostring")
	check(tostring(nn.GRU(2, 3)) == "GRU(2 -> 3)", "GRU tostring")
	-- every option checked
	check_error(function() nn.LSTM(3) end, "nn.LSTM: hidden size must be an integer, got no value")
	check_error(function() nn.LSTM(0, 3) end, "nn.LSTM: nin must be >= 1, got 0")
	check_error(function() nn.GRU(3, 2.5) end, "nn.GRU: hidden size must be an integer")
	check_error(function() nn.LSTM(3, 4, {layers = 0}) end, "nn.LSTM: layers must be an integer >= 1, got 0")
	check_error(function() nn.LSTM(3, 4, {layers = 1.5}) end, "layers must be an integer >= 1")
	check_error(function() nn.LSTM(3, 4, {layers = 64}) end, "nn.LSTM: expected layers in 1..63, got 64")
	check_error(function() nn.LSTM(3, 4, {dropout = 1}) end, "nn.LSTM: expected dropout in [0,1), got 1")
	check_error(function() nn.GRU(3, 4, {dropout = -0.5}) end, "expected dropout in [0,1)")
	check_error(function() nn.GRU(3, 4, {dropout = 0 / 0}) end, "expected dropout in [0,1)")
	check_error(function() nn.LSTM(3, 4, {stateful = 1}) end, "option 'stateful' must be a boolean")
	check_error(function() nn.LSTM(3, 4, {nonlinearity = "relu"}) end, "unknown option 'nonlinearity'")
	check_error(function() nn.RNN(3, 4, {nonlinearity = "sigmoid"}) end,
	            'nn.RNN: nonlinearity must be "tanh" or "relu", got "sigmoid"')
	check_error(function() nn.RNN(3, 4, {nonlinearity = 1}) end, "option 'nonlinearity' must be a string")
	check_error(function() nn.GRU(3, 4, {layer = 2}) end, "unknown option 'layer'")
	check_error(function() nn.GRU(3, 4, {}, 5) end, "expected at most 3 arguments")
	check_error(function() nn.LSTM(3, 4):forward(lunet.randn(2, 3)) end,
	            "LSTM:forward: expected input of shape {N,T,3}, got {2,3}")
	check_error(function() nn.LSTM(3, 4):forward(lunet.randn(2, 3, 2)) end,
	            "LSTM:forward: expected input of shape {N,T,3}, got {2,3,2}")
	local g = nn.GRU(3, 4)
	g:forward(lunet.randn(2, 3, 3))
	check_error(function() g:backward(lunet.randn(2, 4, 3), lunet.randn(2, 3, 4)) end,
	            "expected the input of the last forward")
	check(nn.GRU(1, 1).hidden == nil, "no state before a forward")
end)

-- ---- MultiheadAttention ------------------------------------------------------------

-- The attention's output written out from PyTorch's equations in plain
-- Lua numbers (double): q|k|v = x W_in^T + b_in; per sample and head,
-- softmax(q k^T / sqrt(hd)) over the allowed positions, times v; then
-- the output projection.
local function attention_by_hand(m, x, causal)
	local d, heads = m.d, m.heads
	local hd = d // heads
	local win, bin = m.in_proj_weight:totable(), m.in_proj_bias:totable()
	local wo, bo = m.out_proj_weight:totable(), m.out_proj_bias:totable()
	local xs = x:totable()
	local out = {}
	for i, seq in ipairs(xs) do
		local t = #seq
		local qkv = {}
		for r = 1, t do
			qkv[r] = {}
			for j = 1, 3 * d do
				local s = bin[j]
				for c = 1, d do s = s + win[j][c] * seq[r][c] end
				qkv[r][j] = s
			end
		end
		local a = {}
		for r = 1, t do a[r] = {} end
		for hh = 0, heads - 1 do
			for r = 1, t do
				local len = causal and r or t
				local sc, mx = {}, -math.huge
				for c = 1, len do
					local s = 0
					for e = 1, hd do s = s + qkv[r][hh * hd + e] * qkv[c][d + hh * hd + e] end
					sc[c] = s / math.sqrt(hd)
					mx = math.max(mx, sc[c])
				end
				local sum = 0
				for c = 1, len do sc[c] = math.exp(sc[c] - mx); sum = sum + sc[c] end
				for e = 1, hd do
					local o = 0
					for c = 1, len do o = o + sc[c] / sum * qkv[c][2 * d + hh * hd + e] end
					a[r][hh * hd + e] = o
				end
			end
		end
		out[i] = {}
		for r = 1, t do
			out[i][r] = {}
			for j = 1, d do
				local s = bo[j]
				for c = 1, d do s = s + wo[j][c] * a[r][c] end
				out[i][r][j] = s
			end
		end
	end
	return lunet.tensor(out)
end

test("MultiheadAttention: values from the equations, heads, causal or not", function()
	for _, c in ipairs{{1, 4, 4, 1}, {2, 5, 6, 2}, {3, 3, 8, 4}, {1, 1, 2, 2}} do
		local n, t, d, heads = c[1], c[2], c[3], c[4]
		for _, causal in ipairs{false, true} do
			local m = nn.MultiheadAttention(d, heads, {causal = causal})
			m.in_proj_bias:copy(lunet.randn(3 * d) * 0.5)
			m.out_proj_bias:copy(lunet.randn(d) * 0.5)
			local x = lunet.randn(n, t, d)
			local y = m:forward(x)
			h.same(y:shape(), {n, t, d})
			local err = max_diff(y, attention_by_hand(m, x, causal))
			check(err < 1e-5, string.format("N=%d T=%d d=%d heads=%d causal=%s: %.3g", n, t, d,
			                                heads, tostring(causal), err))
		end
	end
	-- scores in the thousands: the softmax subtracts each row's maximum
	local m = nn.MultiheadAttention(4, 2, {causal = true})
	m.in_proj_weight:mul_(40)
	local x = lunet.randn(2, 6, 4) * 5
	local y = m:forward(x)
	check(y:eq(y):sum() == y:numel(), "no NaN")
	check(y:abs():max() < math.huge, "finite")
	check(max_diff(y, attention_by_hand(m, x, true)) < 1e-4, "large scores")
end)

test("MultiheadAttention: fields, parameters in PyTorch's order, state dict names", function()
	local m = nn.MultiheadAttention(8, 2, {causal = true, dropout = 0.25})
	local names = {"in_proj_weight", "in_proj_bias", "out_proj_weight", "out_proj_bias"}
	local shapes = {{24, 8}, {24}, {8, 8}, {8}}
	local params, grads = m:parameters()
	check(#params == 4 and #grads == 4, "4 parameters")
	for i, name in ipairs(names) do
		h.same(m[name]:shape(), shapes[i])
		params[i]:fill(i)
		check(m[name]:min() == i and m[name]:max() == i, name .. " is parameter " .. i)
		check(m["grad_" .. name]:numel() == params[i]:numel(), "grad_" .. name)
	end
	check(m.d == 8 and m.heads == 2 and m.causal == 1 and m.dropout == 0.25, "config fields")
	check(tostring(m) == "MultiheadAttention(8, heads=2, causal, dropout=0.25)", tostring(m))
	check(tostring(nn.MultiheadAttention(4, 1)) == "MultiheadAttention(4, heads=1)", "plain")
	-- PyTorch's keys: out_proj is a submodule there
	local sd = m:state_dict()
	local keys = {}
	for k, v in pairs(sd) do keys[#keys + 1] = k .. " " .. table.concat(v:shape(), "x") end
	table.sort(keys)
	keys = table.concat(keys, ", ")
	check(keys == "in_proj_bias 24, in_proj_weight 24x8, out_proj.bias 8, out_proj.weight 8x8",
	      keys)
	local other = nn.MultiheadAttention(8, 2, {causal = true})
	other:load_state_dict(sd)
	for i, p in ipairs(other:parameters()) do
		check(max_diff(p, params[i]) == 0, "loaded " .. names[i])
	end
	check_error(function() other:load_state_dict{in_proj_weight = lunet.zeros(24, 8)} end,
	            "missing")
	-- initialisation: Xavier-uniform in_proj_weight, U(-1/sqrt(d), 1/sqrt(d))
	-- out_proj_weight, zero biases
	lunet.seed(5)
	local f = nn.MultiheadAttention(16, 4)
	local a, b = math.sqrt(6 / (16 + 48)), 1 / 4
	check(f.in_proj_weight:abs():max() <= a and f.in_proj_weight:abs():max() > 0.9 * a, "xavier")
	check(f.out_proj_weight:abs():max() <= b and f.out_proj_weight:abs():max() > 0.9 * b, "uniform")
	check(f.in_proj_bias:abs():max() == 0 and f.out_proj_bias:abs():max() == 0, "zero biases")
end)

test("MultiheadAttention: gradient checks, causal or not, several shapes", function()
	for _, c in ipairs{{2, 3, 4, 2}, {1, 5, 6, 3}, {3, 2, 2, 1}, {1, 4, 8, 4}} do
		for _, causal in ipairs{false, true} do
			local m = nn.MultiheadAttention(c[3], c[4], {causal = causal})
			m.in_proj_bias:copy(lunet.randn(3 * c[3]) * 0.5)
			m.out_proj_bias:copy(lunet.randn(c[3]) * 0.5)
			check_grad(m, lunet.randn(c[1], c[2], c[3]))
		end
	end
	-- in a model, with a loss over the tokens
	local lm = nn.Sequential{nn.Embedding(7, 4), nn.MultiheadAttention(4, 2, {causal = true}),
	                        nn.Linear(4, 7)}
	lm.input_grad = false
	check_grad(lm, labels(2, 5, 7))
	check_grad(nn.CrossEntropyLoss(), lm:forward(labels(2, 5, 7)), labels(2, 5, 7))
	-- with dropout in training mode: the masks drawn again alike before
	-- every forward (lunet.seed), so the function differentiated is fixed
	local m = nn.MultiheadAttention(6, 2, {dropout = 0.3})
	local probe = before_forward(m, function() lunet.seed(11) end)
	local ok, err, where = nn.gradcheck(probe, lunet.randn(2, 4, 6))
	check(ok, string.format("dropout gradcheck: %.3g at %s", err, tostring(where)))
end)

test("MultiheadAttention: the causal mask, dropout in training and evaluate", function()
	for _, causal in ipairs{false, true} do
		local m = nn.MultiheadAttention(6, 3, {causal = causal})
		local x = lunet.randn(2, 5, 6)
		local y = m:forward(x):clone()
		local x2 = x:clone()
		x2:narrow(2, 4, 2):add_(1)  -- positions 4 and 5 change
		local y2 = m:forward(x2)
		local early = max_diff(y2:narrow(2, 1, 3), y:narrow(2, 1, 3))
		if causal then
			check(early == 0, "positions 1..3 do not see 4 and 5")
		else
			check(early > 1e-4, "without the mask every position sees all")
		end
		-- the gradient of position 2's output reaches no later input
		m:forward(x)
		local gy = lunet.zeros(2, 5, 6)
		gy:narrow(2, 2, 1):fill(1)
		local gx = m:backward(x, gy)
		local later = gx:narrow(2, 3, 3):abs():max()
		check((later == 0) == causal, "gradient after position 2: " .. later)
	end
	local m = nn.MultiheadAttention(6, 2, {dropout = 0.5})
	local plain = nn.MultiheadAttention(6, 2)
	plain:load_state_dict(m:state_dict())
	local x = lunet.randn(2, 5, 6)
	local y0 = plain:forward(x)
	m:evaluate()
	check(max_diff(m:forward(x), y0) == 0, "evaluate: no dropout")
	m:train()
	lunet.seed(4)
	local y1 = m:forward(x):clone()
	check(max_diff(y1, y0) > 1e-3, "training: dropout changes the output")
	lunet.seed(4)
	check(max_diff(m:forward(x), y1) == 0, "masks from lunet.seed")
end)

test("MultiheadAttention: errors", function()
	check_error(function() nn.MultiheadAttention(6, 4) end,
	            "nn.MultiheadAttention: d (6) must be a multiple of heads (4)")
	check_error(function() nn.MultiheadAttention(0, 1) end,
	            "nn.MultiheadAttention: d must be >= 1, got 0")
	check_error(function() nn.MultiheadAttention(4) end,
	            "nn.MultiheadAttention: heads must be an integer, got no value")
	check_error(function() nn.MultiheadAttention(4, 1.5) end, "heads must be an integer")
	check_error(function() nn.MultiheadAttention(4, 2, {casual = true}) end,
	            "nn.MultiheadAttention: unknown option 'casual' (options: causal, dropout)")
	check_error(function() nn.MultiheadAttention(4, 2, {causal = 1}) end,
	            "option 'causal' must be a boolean, got number")
	check_error(function() nn.MultiheadAttention(4, 2, {dropout = 1}) end,
	            "nn.MultiheadAttention: expected dropout in [0,1), got 1")
	check_error(function() nn.MultiheadAttention(4, 2, {dropout = 0 / 0}) end,
	            "expected dropout in [0,1)")
	check_error(function() nn.MultiheadAttention(4, 2, {}, 1) end, "expected at most 3 arguments")
	local m = nn.MultiheadAttention(4, 2)
	check_error(function() m:forward(lunet.randn(2, 4)) end,
	            "MultiheadAttention:forward: expected input of shape {N,T,4}, got {2,4}")
	check_error(function() m:forward(lunet.randn(2, 3, 5)) end,
	            "MultiheadAttention:forward: expected input of shape {N,T,4}, got {2,3,5}")
	m:forward(lunet.randn(2, 3, 4))
	check_error(function() m:backward(lunet.randn(2, 5, 4), lunet.randn(2, 3, 4)) end,
	            "expected the input of the last forward")
end)

-- ---- save and load ---------------------------------------------------------------

test("Embedding, LayerNorm, GELU, SiLU save and load with the same outputs", function()
	local m = nn.Sequential{nn.Embedding(7, 5), nn.LayerNorm(5, {eps = 1e-3}), nn.GELU(),
	                       nn.Linear(5, 4), nn.SiLU()}
	m:get(2).weight:copy(lunet.rand(5) + 0.5)
	m:get(2).bias:copy(lunet.randn(5))
	local back = reload(m)
	local x = labels(2, 6, 7)
	check(max_diff(m:forward(x), back:forward(x)) == 0, "bit-identical outputs")
	near(back:get(2).eps, 1e-3, 1e-12, "eps kept")
	check(tostring(back:get(1)) == "Embedding(7, 5)", tostring(back:get(1)))
end)

test("recurrent layers save and load with the same outputs and config", function()
	for _, m in ipairs{nn.LSTM(3, 4, {layers = 2, dropout = 0.25, stateful = true}),
	                   nn.GRU(3, 5), nn.RNN(3, 2, {nonlinearity = "relu", layers = 3})} do
		local back = reload(m)
		check(tostring(back) == tostring(m), tostring(back))
		m:evaluate()
		back:evaluate()
		local x = lunet.randn(2, 5, 3)
		m:reset_state()
		check(max_diff(m:forward(x), back:forward(x)) == 0, tostring(m) .. ": bit-identical")
		local p1, p2 = m:parameters(), back:parameters()
		for i = 1, #p1 do check(max_diff(p1[i], p2[i]) == 0, "parameter " .. i) end
	end
end)

test("MultiheadAttention saves and loads with the same outputs and config", function()
	for _, m in ipairs{nn.MultiheadAttention(6, 3, {causal = true, dropout = 0.2}),
	                   nn.Sequential{nn.Embedding(9, 4), nn.MultiheadAttention(4, 1), nn.Linear(4, 9)}} do
		local back = reload(m)
		check(tostring(back) == tostring(m), tostring(back))
		m:evaluate()
		back:evaluate()
		local x = m.d and lunet.randn(2, 5, 6) or labels(2, 5, 9)
		check(max_diff(m:forward(x), back:forward(x)) == 0, tostring(m) .. ": bit-identical")
		local p1, p2 = m:parameters(), back:parameters()
		for i = 1, #p1 do check(max_diff(p1[i], p2[i]) == 0, "parameter " .. i) end
	end
	local back = reload(nn.MultiheadAttention(6, 3, {causal = true, dropout = 0.2}))
	check(back.causal == 1 and back.dropout == 0.2 and back.heads == 3, "config kept")
end)

h.done()
