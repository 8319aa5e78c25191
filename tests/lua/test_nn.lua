-- test_nn.lua -- modules, losses, output/loss pairings and gradient checks
-- through the Lua surface.
local lunet = lunet or require "lunet"
local nn = lunet.nn

local harness = dofile((arg[0]:match("^(.*)/") or ".") .. "/harness.lua")
local h = harness.new{seed = 1234, reseed = true}
local test, check, check_error = h.test, h.check, h.check_error

local function check_grad(obj, x, target, opts)
	local ok, err, where = nn.gradcheck(obj, x, target, opts)
	check(ok, string.format("gradcheck of %s failed: error %.3e at %s", tostring(obj), err,
	                        tostring(where)))
	return err
end

-- Inputs kept away from 0, where ReLU-like layers have a kink.
local function away_from_zero(...)
	local x = lunet.rand(...) * 1.5 + 0.25
	local sign = lunet.rand(...)
	local flat, fs = x:reshape(-1), sign:reshape(-1)
	for i = 1, #flat do
		if fs[i] < 0.5 then
			flat[i] = -flat[i]
		end
	end
	return x
end

-- ---- gradient checks of every layer ---------------------------------------------

test("gradcheck Linear", function()
	check_grad(nn.Linear(5, 3), lunet.randn(4, 5))
	check_grad(nn.Linear(5, 3, {bias = false}), lunet.randn(4, 5))
	check_grad(nn.Linear(1, 1), lunet.randn(1, 1))
end)

test("gradcheck activations", function()
	for _, m in ipairs{nn.Identity(), nn.Sigmoid(), nn.Tanh(), nn.ReLU(), nn.LeakyReLU(0.1),
	                   nn.Softmax(), nn.LogSoftmax()} do
		check_grad(m, away_from_zero(3, 6))
	end
end)

test("Softmax(dim) and LogSoftmax(dim): values by hand, every dim checked", function()
	-- over dim 1 of {{1,2},{3,5}} each column is a distribution
	local x = lunet.tensor{{1, 2}, {3, 5}}
	local a, b = 1 / (1 + math.exp(2)), 1 / (1 + math.exp(3))
	local want = lunet.tensor{{a, b}, {1 - a, 1 - b}}
	check(nn.Softmax(1)(x):allclose(want, 1e-5, 1e-7), "Softmax(1)")
	check(nn.LogSoftmax(-2)(x):allclose(want:log(), 1e-5, 1e-6), "LogSoftmax(-2)")
	check(nn.Softmax(-1)(x):allclose(nn.Softmax()(x), 0, 0), "Softmax(-1) is the default")
	h.eq(nn.Softmax(2).dim, 2)
	h.eq(nn.LogSoftmax().dim, -1)
	h.eq(tostring(nn.Softmax(1)), "Softmax(dim=1)")
	h.eq(tostring(nn.LogSoftmax()), "LogSoftmax")
	for _, d in ipairs{1, 2, 3, -1, -2, -3} do
		check_grad(nn.Softmax(d), lunet.randn(2, 3, 4))
		check_grad(nn.LogSoftmax(d), lunet.randn(2, 3, 4))
	end
	-- over dim 2 of {2,3,4}: the columns of each {3,4} slice sum to 1
	local y = nn.Softmax(2)(lunet.randn(2, 3, 4))
	check(y:sum(2):allclose(lunet.ones(2, 1, 4), 1e-5, 1e-6), "sums along dim 2")
end)

test("gradcheck Flatten and Dropout in evaluate mode", function()
	check_grad(nn.Flatten(), lunet.randn(2, 3, 4))
	check_grad(nn.Dropout(0.3):evaluate(), lunet.randn(3, 4))
end)

test("gradcheck Conv2d, pooling, BatchNorm", function()
	check_grad(nn.Conv2d(2, 3, 3, {stride = 1, padding = 1}), lunet.randn(2, 2, 5, 4))
	check_grad(nn.Conv2d(2, 2, 3, {stride = 2, padding = 0}), lunet.randn(1, 2, 7, 5))
	check_grad(nn.MaxPool2d(2), lunet.randn(2, 2, 4, 6))
	check_grad(nn.AvgPool2d(2), lunet.randn(2, 2, 4, 6))
	check_grad(nn.BatchNorm(3), lunet.randn(5, 3), {eps = 1e-2, tol = 2e-2})
	check_grad(nn.BatchNorm(2), lunet.randn(3, 2, 3, 3), {eps = 1e-2, tol = 2e-2})
end)

test("gradcheck Sequential", function()
	local m = nn.Sequential{nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3), nn.Softmax()}
	check_grad(m, lunet.randn(5, 4))
end)

-- ---- losses and pairings -------------------------------------------------------------

test("gradcheck every loss, every reduction, both target forms", function()
	for _, red in ipairs{"mean", "sum", "none"} do
		local o = {reduction = red}
		check_grad(nn.MSELoss(o), lunet.randn(4, 3), lunet.randn(4, 3))
		check_grad(nn.BCELoss(o), lunet.rand(4, 3) * 0.8 + 0.1, lunet.rand(4, 3))
		check_grad(nn.BCEWithLogitsLoss(o), lunet.randn(4, 3), lunet.rand(4, 3))
		check_grad(nn.CrossEntropyLoss(o), lunet.randn(4, 5), {1, 5, 2, 3})
		local onehot = lunet.zeros(4, 5)
		onehot:set(1, 2, 1); onehot:set(2, 2, 1); onehot:set(3, 4, 1); onehot:set(4, 1, 1)
		check_grad(nn.CrossEntropyLoss(o), lunet.randn(4, 5), onehot)
		local logp = nn.LogSoftmax():forward(lunet.randn(4, 5)):clone()
		check_grad(nn.NLLLoss(o), logp, lunet.tensor{2, 3, 1, 5})
	end
end)

-- The losses and a valid (input, target) for each, on {4,3}.
local function every_loss(opts)
	local logp = nn.LogSoftmax():forward(lunet.randn(4, 3)):clone()
	return {
		{nn.MSELoss(opts), lunet.randn(4, 3), lunet.randn(4, 3)},
		{nn.BCELoss(opts), lunet.rand(4, 3) * 0.8 + 0.1, lunet.rand(4, 3)},
		{nn.BCEWithLogitsLoss(opts), lunet.randn(4, 3), lunet.rand(4, 3)},
		{nn.CrossEntropyLoss(opts), lunet.randn(4, 3), lunet.tensor{1, 3, 2, 3}},
		{nn.NLLLoss(opts), logp, lunet.tensor{2, 2, 1, 3}},
		{nn.OutputLoss("softmax", "cross_entropy", opts), lunet.randn(4, 3), {3, 1, 1, 2}},
		{nn.OutputLoss("sigmoid", "bce", opts), lunet.randn(4, 3), lunet.rand(4, 3)},
		{nn.OutputLoss("tanh", "mse", opts), lunet.randn(4, 3), lunet.randn(4, 3)},
	}
end

test("reduction none: one loss per sample; their sum and mean are the other reductions", function()
	local none, sum, mean = every_loss{reduction = "none"}, every_loss{reduction = "sum"},
		every_loss()
	for i, case in ipairs(none) do
		local c, x, y = table.unpack(case)
		local name = tostring(c)
		h.eq(c.reduction, "none", name)
		local l = c:forward(x, y)
		check(lunet.is_tensor(l), name .. ": a tensor of per-sample losses")
		h.same(l:shape(), {4}, 0, name)
		check(c.losses == l, name .. ": also kept in c.losses")
		h.near(l:sum(), sum[i][1]:forward(x, y), 1e-5, name .. " sum")
		h.near(l:mean(), mean[i][1]:forward(x, y), 1e-5, name .. " mean")
		-- each is the loss of its sample alone
		for k = 1, 4 do
			local yk = lunet.is_tensor(y) and y:narrow(1, k, 1):clone() or {y[k]}
			h.near(l[k], sum[i][1]:forward(x:narrow(1, k, 1):clone(), yk), 1e-5, name .. " sample")
		end
		-- backward: the gradient of their sum, or weighted by a gradient per sample
		local g = c:backward(x, y):clone()
		check(g:allclose(sum[i][1]:backward(x, y), 0, 0), name .. ": gradient of the sum")
		local w = lunet.tensor{2, 0, -1, 0.5}
		local gw = c:backward(x, y, w)
		check(gw:allclose(g * w:reshape(4, 1), 1e-6, 1e-7), name .. ": weighted per sample")
	end
	-- by hand: 1/2 ||(1,2)-(0,0)||^2 = 2.5, 1/2 ||(3,-1)-(1,1)||^2 = 4
	local c = nn.MSELoss{reduction = "none"}
	local x, y = lunet.tensor{{1, 2}, {3, -1}}, lunet.tensor{{0, 0}, {1, 1}}
	h.same(c:forward(x, y):totable(), {2.5, 4}, 0)
	h.same(c:backward(x, y, lunet.tensor{2, -1}):totable(), {{2, 4}, {-2, 2}}, 0)
	h.eq(tostring(c), "MSELoss(reduction=none)")
end)

-- Logits, weights and labels whose losses are worked out below from
-- PyTorch's definitions (labels 1-based).
local Z = {{1, 2, 3}, {0, 0, 0}, {2, -1, 0.5}}
local W = {1, 2, 3}
local function lse(row)
	local s = 0
	for _, v in ipairs(row) do s = s + math.exp(v) end
	return math.log(s)
end

test("CrossEntropyLoss options: values by hand", function()
	local z = lunet.tensor(Z)
	-- labels {3, ignored, 2}, label_smoothing 0.1, weights {1,2,3}:
	-- l_i = 0.9 w_l (lse_i - z_il) + 0.1/3 sum_j w_j (lse_i - z_ij)
	local function smoothed(i, l)
		local sm = 0
		for j = 1, 3 do sm = sm + W[j] * (lse(Z[i]) - Z[i][j]) end
		return 0.9 * W[l] * (lse(Z[i]) - Z[i][l]) + 0.1 / 3 * sm
	end
	local l1, l3 = smoothed(1, 3), smoothed(3, 2)
	local opts = {label_smoothing = 0.1, weight = W, ignore_index = 0}
	local c = nn.CrossEntropyLoss(opts)
	-- the mean divides by the weights of the labels that count: w_3 + w_2
	h.near(c:forward(z, {3, 0, 2}), (l1 + l3) / 5, 1e-6, "mean")
	opts.reduction = "sum"
	h.near(nn.CrossEntropyLoss(opts):forward(z, {3, 0, 2}), l1 + l3, 1e-6, "sum")
	opts.reduction = "none"
	h.same(nn.CrossEntropyLoss(opts):forward(z, {3, 0, 2}):totable(), {l1, 0, l3}, 1e-6, "none")
	-- its gradient, row 1: (p_j S - t_j)/5, S = 0.9*3 + 0.1/3*6; the ignored row is 0
	local g = c:backward(z, {3, 0, 2})
	for j = 1, 3 do
		local p = math.exp(Z[1][j] - lse(Z[1]))
		local t = (j == 3 and 0.9 * 3 or 0) + 0.1 / 3 * W[j]
		h.near(g:get(1, j), (p * 2.9 - t) / 5, 1e-6, "gradient row 1")
		h.eq(g:get(2, j), 0, "gradient of the ignored row")
	end
	-- weights alone: sum_i w_l (lse_i - z_il) / sum_i w_l
	local want = (3 * (lse(Z[1]) - 3) + 1 * (lse(Z[2]) - 0) + 2 * (lse(Z[3]) + 1)) / 6
	h.near(nn.CrossEntropyLoss{weight = lunet.tensor(W)}:forward(z, {3, 1, 2}), want, 1e-6)
	-- an ignore_index inside 1..C drops that class's rows from the mean
	h.near(nn.CrossEntropyLoss{ignore_index = 2}:forward(z, {3, 1, 2}),
	       ((lse(Z[1]) - 3) + lse(Z[2])) / 2, 1e-6)
	-- probability rows with weights and smoothing: the mean is over the 3 rows
	local Y = {{0.5, 0.5, 0}, {0, 0, 1}, {0.25, 0.25, 0.5}}
	want = 0
	for i = 1, 3 do
		for j = 1, 3 do
			want = want + W[j] * (0.8 * Y[i][j] + 0.2 / 3) * (lse(Z[i]) - Z[i][j])
		end
	end
	h.near(nn.CrossEntropyLoss{weight = W, label_smoothing = 0.2}:forward(z, lunet.tensor(Y)),
	       want / 3, 1e-6)
	-- when nothing counts the mean is 0, and so is its gradient
	c = nn.CrossEntropyLoss{ignore_index = -100}
	h.eq(c:forward(z, {-100, -100, -100}), 0)
	h.eq(c:backward(z, {-100, -100, -100}):abs():sum(), 0)
	-- NLLLoss: -w_l x_l / sum w_l, padding -100 ignored
	c = nn.NLLLoss{weight = W, ignore_index = -100}
	h.near(c:forward(z, {2, -100, 3}), -(2 * 2 + 3 * 0.5) / 5, 1e-6)
	h.same(c:backward(z, {2, -100, 3}):totable(), {{0, -0.4, 0}, {0, 0, 0}, {0, 0, -0.6}}, 1e-6)
end)

test("CrossEntropyLoss and NLLLoss options: gradcheck of each, alone and together", function()
	local z = lunet.randn(6, 4)
	local labels = {1, 4, 2, 2, 3, 2}
	local rows = nn.Softmax():forward(lunet.randn(6, 4)):clone()
	local w = lunet.tensor{0.5, 2, 1, 3}
	for _, red in ipairs{"mean", "sum", "none"} do
		for _, eps in ipairs{0, 0.25, 1} do
			for _, weight in ipairs{false, true} do
				for _, ignore in ipairs{false, true} do
					local o = {reduction = red, weight = weight and w or nil,
					           ignore_index = ignore and 2 or nil}
					local nll = nn.NLLLoss(o)
					o.label_smoothing = eps
					local ce = nn.CrossEntropyLoss(o)
					check_grad(ce, z, labels)
					if not ignore then check_grad(ce, z, rows) end
					if eps == 0 then
						check_grad(nll, z, labels)
						if not ignore then check_grad(nll, z, rows) end
					end
				end
			end
		end
	end
end)

test("CrossEntropyLoss options are readable and shown", function()
	local c = nn.CrossEntropyLoss{label_smoothing = 0.1, weight = {1, 2, 3}, ignore_index = 0,
	                              reduction = "sum"}
	h.eq(c.label_smoothing, 0.1)
	h.eq(c.ignore_index, 0)
	h.same(c.weight:totable(), {1, 2, 3}, 0)
	h.eq(c.reduction, "sum")
	h.eq(tostring(c), "CrossEntropyLoss(label_smoothing=0.1, weight={3}, ignore_index=0, "
	     .. "reduction=sum)")
	-- the weights are the loss's own copy
	local w = lunet.tensor{1, 1}
	local n = nn.NLLLoss{weight = w}
	w:fill(5)
	h.same(n.weight:totable(), {1, 1}, 0)
	h.eq(n.ignore_index, nil)
	h.eq(n.label_smoothing, 0)
	h.eq(tostring(nn.NLLLoss()), "NLLLoss()")
	h.eq(nn.MSELoss().weight, nil)
end)

local activations = {"identity", "sigmoid", "tanh", "relu", "softmax"}
local kinds = {"mse", "bce", "cross_entropy"}
local defined = {
	identity = {mse = true}, sigmoid = {mse = true, bce = true}, tanh = {mse = true},
	relu = {mse = true}, softmax = {mse = true, bce = true, cross_entropy = true},
}
local canonical = {identity = "mse", sigmoid = "bce", softmax = "cross_entropy"}

local function pairing_target(kind, N, C)
	if kind == "cross_entropy" then
		local y = lunet.zeros(N, C)
		for i = 1, N do y:set(i, (i * 3) % C + 1, 1) end
		return y
	elseif kind == "bce" then
		return lunet.rand(N, C)
	end
	return lunet.randn(N, C)
end

test("every pairing: defined ones pass gradcheck, undefined ones say why", function()
	for _, act in ipairs(activations) do
		for _, kind in ipairs(kinds) do
			if defined[act][kind] then
				local head = nn.OutputLoss(act, kind)
				check(head.canonical == (canonical[act] == kind),
				      act .. "+" .. kind .. " canonical flag")
				check_grad(head, away_from_zero(4, 3), pairing_target(kind, 4, 3))
			else
				check_error(function() return nn.OutputLoss(act, kind) end, "nn.OutputLoss",
				            kind, act)
			end
		end
	end
end)

test("canonical pairings give exactly (y_hat - y)/N; others do not", function()
	local N, C = 6, 4
	for _, act in ipairs(activations) do
		for _, kind in ipairs(kinds) do
			if defined[act][kind] then
				local head = nn.OutputLoss(act, kind)
				local z, y = lunet.randn(N, C) * 2, pairing_target(kind, N, C)
				head:forward(z, y)
				local diff = (head:backward(z, y) * N - (head.output - y)):abs():max()
				if head.canonical then
					check(diff <= 1e-6, act .. "+" .. kind .. " differs by " .. diff)
				else
					check(diff > 1e-2, act .. "+" .. kind .. " should differ, got " .. diff)
				end
			end
		end
	end
end)

test("OutputLoss with class labels and unknown names", function()
	local head = nn.OutputLoss("softmax", "cross_entropy")
	local z = lunet.randn(3, 4)
	local a = head:forward(z, {1, 4, 2})
	local onehot = lunet.tensor{{1, 0, 0, 0}, {0, 0, 0, 1}, {0, 1, 0, 0}}
	check(math.abs(a - head:forward(z, onehot)) < 1e-6, "labels and one-hot agree")
	check_error(function() return nn.OutputLoss("softplus", "mse") end, "unknown activation",
	            "softplus", "identity")
	check_error(function() return nn.OutputLoss("sigmoid", "hinge") end, "unknown loss", "hinge")
end)

test("stable losses on extreme logits", function()
	local ce = nn.CrossEntropyLoss()
	local z = lunet.tensor{{1000, -1000, 0}}
	local l = ce:forward(z, {1})
	check(l == l and l < 1e-6, "CE of a confident right answer is ~0, got " .. l)
	l = ce:forward(z, {2})
	check(math.abs(l - 2000) < 1e-2, "CE of a confident wrong answer is 2000, got " .. l)
	local g = ce:backward(z, {2})
	check(math.abs(g:get(1, 1) - 1) < 1e-6 and math.abs(g:get(1, 2) + 1) < 1e-6, "CE gradient")
	local bce = nn.BCEWithLogitsLoss()
	l = bce:forward(lunet.tensor{{100, -100}}, lunet.tensor{{0, 1}})
	-- summed over the two outputs, averaged over the one sample
	check(math.abs(l - 200) < 1e-3, "BCEWithLogits of wrong confident logits is 200, got " .. l)
end)

-- ---- errors ----------------------------------------------------------------------------------

test("loss errors name the loss and the values", function()
	local ce = nn.CrossEntropyLoss()
	local z = lunet.randn(4, 10)
	check_error(function() ce:forward(z, {1, 2, 3, 11}) end, "CrossEntropyLoss:forward", "11",
	            "1..10")
	check_error(function() ce:forward(z, {1, 2, 3, 2.5}) end, "2.5", "integer")
	check_error(function() ce:forward(z, {1, 2, 3}) end, "4", "3")
	check_error(function() ce:forward(z, {0, 1, 1, 1}) end, "0")
	local bad = lunet.randn(4, 10)
	bad:set(2, 3, 0 / 0)
	check_error(function() ce:forward(bad, {1, 2, 3, 4}) end, "NaN")
	local bce = nn.BCELoss()
	check_error(function() bce:forward(lunet.tensor{{1.5}}, lunet.tensor{{1}}) end,
	            "BCELoss:forward", "1.5")
	check_error(function() bce:forward(lunet.tensor{{0.5}}, lunet.tensor{{-0.5}}) end, "-0.5")
	check_error(function() nn.MSELoss():forward(lunet.randn(2, 3), lunet.randn(3, 2)) end,
	            "MSELoss:forward", "{2,3}", "{3,2}")
	check_error(function() nn.NLLLoss():forward(lunet.randn(2, 3), {1, 4}) end, "NLLLoss", "4")
	check_error(function() nn.MSELoss{reduction = "max"} end, "reduction", "max")
end)

test("module errors name the layer and both shapes", function()
	local lin = nn.Linear(784, 10)
	check_error(function() lin:forward(lunet.randn(64, 785)) end, "Linear:forward", "784",
	            "{64,785}")
	check_error(function() lin:forward("x") end, "lunet.Tensor")
	local seq = nn.Sequential{nn.Flatten(), nn.Linear(100, 10)}
	check_error(function() seq:forward(lunet.randn(2, 3, 4)) end, "Linear", "100", "12")
	check_error(function() nn.Linear(0, 3) end, "nn.Linear", "nin", "0")
	check_error(function() nn.Linear(2.5, 3) end, "nn.Linear", "2.5")
	check_error(function() nn.Dropout(1.5) end, "nn.Dropout", "1.5")
	check_error(function() nn.Conv2d(1, 2, 3, {stride = 0}) end, "stride", "0")
	check_error(function() nn.Conv2d(3, 4, 3):forward(lunet.randn(2, 1, 8, 8)) end, "Conv2d",
	            "{2,1,8,8}")
	check_error(function() nn.Sequential():get(1) end, "out of range")
	check_error(function() nn.Sequential{42} end, "nn.Sequential", "number")
	check_error(function() lin.weight = lunet.zeros(10, 784) end, "copy")
end)

-- ---- the module protocol -----------------------------------------------------------------

test("parameters: layer by layer, weight before bias, sharing memory", function()
	local a, b = nn.Linear(3, 4), nn.Linear(4, 2)
	local m = nn.Sequential{a, nn.ReLU(), b}
	local params, grads = m:parameters()
	check(#params == 4 and #grads == 4, "four parameter tensors")
	local shapes = {{4, 3}, {4}, {2, 4}, {2}}
	for i, p in ipairs(params) do
		check(table.concat(p:shape(), ",") == table.concat(shapes[i], ","), "shape " .. i)
		check(table.concat(grads[i]:shape(), ",") == table.concat(shapes[i], ","), "grad " .. i)
	end
	params[1]:fill(0.5)
	check(a.weight:get(1, 1) == 0.5, "parameters are views of the weights")
	check(m:get(1) == a and m:get(3) == b and #m == 3, "get returns the modules added")
end)

test("m(x) is m:forward(x); m:eval() is m:evaluate()", function()
	local m = nn.Sequential{nn.Linear(3, 4), nn.Dropout(0.5), nn.Tanh()}
	local x = lunet.randn(2, 3)
	check(m:eval() == m and not m.training and not m:get(2).training, "eval returns m, sets mode")
	local y = m(x)
	check(y:allclose(m:forward(x), 0, 0), "m(x) == m:forward(x)")
	check(nn.ReLU()(lunet.tensor{{-1, 2}}):totable()[1][2] == 2, "any module can be called")
	check_error(function() return nn.Linear(3, 2)(lunet.randn(2, 4)) end,
	            "Linear:forward: expected input of shape {N,3}, got {2,4}")
	check(m:train() == m and m:get(2).training, "train again")
end)

test("m:buffers(): named by the class, containers name them by position", function()
	local bn = nn.BatchNorm(3)
	local b = bn:buffers()
	check(b.running_mean and b.running_var, "BatchNorm's two buffers")
	b.running_mean:fill(2)  -- a view: writes go through
	check(bn.running_mean:sum() == 6, "views share memory")
	local n = 0
	for _ in pairs(nn.Linear(2, 2):buffers()) do n = n + 1 end
	check(n == 0, "a Linear has none")
	local m = nn.Sequential{nn.Linear(2, 3), nn.BatchNorm(3),
	                        nn.Sequential{nn.BatchNorm(3), nn.ReLU()}}
	local names = {}
	for k in pairs(m:buffers()) do names[#names + 1] = k end
	table.sort(names)
	check(table.concat(names, " ") == "2.running_mean 2.running_var 3.1.running_mean 3.1.running_var",
	      table.concat(names, " "))
	-- a Lua child contributes what its own buffers method returns
	local custom = {forward = function(_, x) return x end, backward = function(_, _, g) return g end,
	                buffers = function() return {count = lunet.zeros(1)} end}
	check(nn.Sequential{nn.ReLU(), custom}:buffers()["2.count"] ~= nil, "Lua child's buffer")
end)

test("backward accumulates, zero_grad clears", function()
	local m = nn.Linear(3, 2)
	local x, gy = lunet.randn(4, 3), lunet.randn(4, 2)
	m:zero_grad()
	m:forward(x)
	m:backward(x, gy)
	local once = m.grad_weight:clone()
	m:backward(x, gy)
	check(m.grad_weight:allclose(once * 2, 1e-5, 1e-6), "second backward adds")
	m:zero_grad()
	check(m.grad_weight:abs():max() == 0, "zero_grad")
	check(m.output ~= nil and m.grad_input ~= nil, "output and grad_input kept")
end)

test("Dropout: train vs evaluate", function()
	local d = nn.Dropout(0.5)
	local x = lunet.ones(200, 50)
	local y = d:forward(x)
	local zeros = 0
	for _, v in ipairs(y:reshape(-1):totable()) do
		check(v == 0 or math.abs(v - 2) < 1e-6, "kept values scaled by 1/(1-p)")
		if v == 0 then zeros = zeros + 1 end
	end
	check(zeros > 4000 and zeros < 6000, "about half dropped, got " .. zeros)
	d:evaluate()
	check(d:forward(x):allclose(x, 0, 0), "identity in evaluate mode")
	check(d.training == false, "training flag")
end)

test("a Lua table as a custom module inside a Sequential", function()
	local Double = {}
	function Double:forward(x) self.output = x * 2; return self.output end
	function Double:backward(x, gy) self.grad_input = gy * 2; return self.grad_input end
	local m = nn.Sequential{nn.Linear(3, 4), Double, nn.Tanh()}
	check_grad(m, lunet.randn(2, 3))
	check(m:get(2) == Double, "get returns the table")
	local params = m:parameters()
	check(#params == 2, "a table without parameters adds none")
end)

test("a custom module's errors come back as Lua errors", function()
	local Bad = {forward = function() error("custom failure") end, backward = function() end}
	local m = nn.Sequential{nn.Linear(2, 2), Bad}
	check_error(function() m:forward(lunet.randn(1, 2)) end, "custom failure")
	local Wrong = {forward = function() return 42 end, backward = function() end}
	check_error(function() nn.Sequential{Wrong}:forward(lunet.randn(1, 2)) end, "tensor")
	check_error(function() nn.Sequential{{}} end, "forward and backward")
end)

test("gradcheck fails on a wrong backward", function()
	local Wrong = {}
	function Wrong:forward(x) self.output = x:tanh(); return self.output end
	function Wrong:backward(x, gy) return gy * 1.0 end  -- forgets tanh'
	local ok, err = nn.gradcheck(Wrong, lunet.randn(3, 4) + 1)
	check(not ok and err > 0.1, "wrong backward detected, error " .. err)
	local inside = nn.Sequential{nn.Linear(4, 3), Wrong}
	check(not nn.gradcheck(inside, lunet.randn(2, 4) + 1), "also inside a Sequential")
end)

test("gradcheck argument errors", function()
	check_error(function() nn.gradcheck(42, lunet.randn(2, 2)) end, "nn.gradcheck", "number")
	check_error(function() nn.gradcheck(nn.Tanh(), {1, 2}) end, "input tensor")
	check_error(function() nn.gradcheck(nn.MSELoss(), lunet.randn(2, 2)) end, "target")
	check_error(function() nn.gradcheck(nn.Tanh(), lunet.randn(2, 2), {eps = -1}) end, "eps")
end)

test("tostring shows the architecture with shapes", function()
	local m = nn.Sequential{nn.Linear(784, 256), nn.ReLU(), nn.Sequential{nn.Linear(256, 10)}}
	local s = tostring(m)
	check(s:find("Sequential", 1, true) and s:find("784", 1, true) and s:find("256", 1, true),
	      s)
	check(s:find("(3)", 1, true) and s:find("ReLU", 1, true), s)
	check(tostring(nn.CrossEntropyLoss()):find("CrossEntropyLoss", 1, true), "loss tostring")
	check(tostring(nn.OutputLoss("softmax", "cross_entropy")):find("canonical", 1, true),
	      "OutputLoss tostring")
end)

test("trace lists every layer with its delta", function()
	local m = nn.Sequential{nn.Linear(4, 5), nn.Sigmoid(), nn.Linear(5, 3)}
	local head = nn.CrossEntropyLoss()
	local x = lunet.randn(6, 4)
	local z = m:forward(x)
	head:forward(z, {1, 2, 3, 1, 2, 3})
	m:backward(x, head:backward(z, {1, 2, 3, 1, 2, 3}))
	local tr = m:trace()
	check(#tr == 3, "three rows")
	check(tr[1].shape == "{6,5}" and tr[3].shape == "{6,3}", "shapes")
	local d2 = m:get(2).grad_input
	check(math.abs(tr[2].delta - math.sqrt((d2 * d2):sum())) < 1e-9, "delta norm of layer 2")
	check(tr[1].grad > 0 and tr[2].grad == nil, "parameter gradient norms")
	local s = tostring(tr)
	check(s:find("Linear", 1, true) and s:find("Sigmoid", 1, true) and s:find("{6,5}", 1, true),
	      s)
end)

-- ---- input_grad = false --------------------------------------------------------------------

-- Two models built from the same seed; on the second, input_grad = false.
local function twins(make)
	lunet.seed(7)
	local a = make()
	lunet.seed(7)
	local b = make()
	b.input_grad = false
	return a, b
end

local function same_grads(a, b, what)
	local _, ga = a:parameters()
	local _, gb = b:parameters()
	check(#ga == #gb and #ga > 0, what .. ": parameter counts")
	for i = 1, #ga do
		check((ga[i] - gb[i]):abs():max() == 0, what .. ": gradient " .. i .. " differs")
	end
end

test("input_grad = false: the same parameter gradients, no input gradient", function()
	local cases = {
		{"Linear", function() return nn.Linear(6, 4) end, {5, 6}},
		{"Conv2d", function() return nn.Conv2d(2, 3, 3, {padding = 1}) end, {2, 2, 5, 5}},
		{"BatchNorm", function() return nn.BatchNorm(4) end, {6, 4}},
		{"BatchNorm 4-D", function() return nn.BatchNorm(2) end, {3, 2, 3, 3}},
		{"Sequential", function()
			return nn.Sequential{nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3)}
		end, {5, 6}},
		{"Sequential, Flatten first", function()
			return nn.Sequential{nn.Flatten(), nn.Linear(12, 5), nn.Tanh(), nn.Linear(5, 3)}
		end, {4, 3, 2, 2}},
		{"nested", function()
			return nn.Sequential{nn.Sequential{nn.Conv2d(1, 2, 3, {padding = 1}), nn.BatchNorm(2),
				nn.Tanh()}, nn.Flatten(), nn.Linear(32, 3)}
		end, {2, 1, 4, 4}},
	}
	for _, c in ipairs(cases) do
		local what, make, shape = c[1], c[2], c[3]
		local a, b = twins(make)
		check(a.input_grad == true and b.input_grad == false, what .. ": the flag reads back")
		local x = lunet.randn(table.unpack(shape))
		local gy = lunet.randn(table.unpack(a:forward(x):shape()))
		b:forward(x)
		local gxa = a:backward(x, gy)
		local gxb = b:backward(x, gy)
		check(lunet.is_tensor(gxa), what .. ": default returns dL/dx")
		check(gxb == nil, what .. ": backward returns nil")
		same_grads(a, b, what)
		check_error(function() return b.grad_input end,
		            "grad_input was not computed by the last backward",
		            "input_grad is false (set m.input_grad = true to compute it)")
		-- the layer that sees the input skipped it too, and says why
		local leaf = b
		while #leaf > 0 do leaf = leaf:get(1) end
		if leaf ~= b then
			check_error(function() return leaf.grad_input end, "nobody needed it")
		end
		-- nn.gradcheck checks the parameters only
		check_grad(b, x, {tol = 2e-2})
		b.input_grad = true
		b:forward(x)
		check(lunet.is_tensor(b:backward(x, gy)) and lunet.is_tensor(b.grad_input),
		      what .. ": back on, computed again")
	end
end)

test("input_grad: bad values and cuts that would starve a layer", function()
	local m = nn.Linear(3, 2)
	check_error(function() m.input_grad = 1 end, "Linear: input_grad must be a boolean, got number")
	check_error(function() m.input_grad = nil end, "input_grad must be a boolean, got nil")
	local s = nn.Sequential{nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)}
	s:get(3).input_grad = false
	local x = lunet.randn(2, 4)
	local y = s:forward(x)
	check_error(function() s:backward(x, y) end,
	            "Sequential:backward: layer 3 (Linear) has input_grad = false, so layer 1 (Linear) "
	            .. "before it would get no gradient for its parameters")
	-- a cut after layers without parameters is fine: nothing before it needs a gradient
	local f = nn.Sequential{nn.Flatten(), nn.Linear(4, 2)}
	f:get(2).input_grad = false
	f:forward(x)
	check(f:backward(x, lunet.randn(2, 2)) == nil, "the container's dL/dx is cut")
	check(f:get(2).grad_weight:abs():sum() > 0, "the weights got their gradient")
end)

-- Sums in double of a tensor's elements and of their squares.
local function moments(t)
	local sum, sq = 0, 0
	for _, v in ipairs(t:reshape(t:numel()):totable()) do sum, sq = sum + v, sq + v * v end
	return sum, sq
end

test("trace of a layer larger than its chunks: the same statistics, and no tensor left behind", function()
	-- 3 x 5000 = 15000 outputs: three chunks of 4096 and a shorter one
	local m = nn.Sequential{nn.Linear(7, 5000), nn.Tanh()}
	local x = lunet.randn(3, 7)
	local z = m:forward(x)
	m:backward(x, lunet.randn(3, 5000))
	local tr = m:trace()
	local n = z:numel()
	local sum, sq = moments(z)
	local mean = sum / n
	local std = math.sqrt(math.max(0, sq / n - mean * mean))
	check(math.abs(tr[2].mean - mean) < 1e-6, "mean " .. tr[2].mean .. " vs " .. mean)
	check(math.abs(tr[2].std - std) < 1e-5 * std, "std " .. tr[2].std .. " vs " .. std)
	local _, sqd = moments(m:get(2).grad_input)
	check(math.abs(tr[2].delta - math.sqrt(sqd)) < 1e-5 * math.sqrt(sqd), "delta norm")
	local _, grads = m:get(1):parameters()
	local sqg = 0
	for _, g in ipairs(grads) do sqg = sqg + select(2, moments(g)) end
	check(math.abs(tr[1].grad - math.sqrt(sqg)) < 1e-5 * math.sqrt(sqg), "gradient norm")
	-- With the collector stopped, 20 traces fit under a cap of 200 KB above
	-- what is live: each temporary is freed as soon as it is summed (the
	-- output alone is 60 KB, so temporaries of its size left to the
	-- collector would go over).
	collectgarbage()
	collectgarbage()
	collectgarbage("stop")
	local base = lunet.alloc_stats().bytes_live
	lunet.memory_limit(base + 200000)
	local ok, err = pcall(function() for _ = 1, 20 do m:trace() end end)
	lunet.memory_limit(0)
	collectgarbage("restart")
	check(ok, tostring(err))
end)

test("trace leaves out the deltas nobody computed", function()
	local m = nn.Sequential{nn.Linear(4, 5), nn.Sigmoid(), nn.Linear(5, 3)}
	m.input_grad = false
	local x = lunet.randn(6, 4)
	m:backward(x, m:forward(x))
	local tr = m:trace()
	check(tr[1].delta == nil and tr[2].delta ~= nil and tr[1].grad > 0, "delta of layer 1 absent")
end)

test("trace after a forward that no backward followed says so instead of mixing batches", function()
	local m = nn.Sequential{nn.Linear(4, 5), nn.Tanh(), nn.Sequential{nn.Linear(5, 3)}}
	local ce = nn.CrossEntropyLoss()
	local x, y = lunet.randn(6, 4), {1, 2, 3, 1, 2, 3}
	local z = m:forward(x)
	m:backward(x, ce:backward(z, y))
	local tr = m:trace()
	check(not tr.stale and tr[1].delta and tr[3].grad, "right after backward: both")
	check(not tostring(tr):find("note:", 1, true), tostring(tr))
	-- a forward of another batch (an evaluation, say)
	m:forward(lunet.randn(2, 4))
	tr = m:trace()
	check(tr.stale, "the trace knows")
	for i = 1, 3 do
		check(tr[i].stale and tr[i].delta == nil and tr[i].grad == nil, "row " .. i)
		h.eq(tr[i].shape, ({"{2,5}", "{2,5}", "{2,3}"})[i], "row " .. i)
	end
	local s = tostring(tr)
	check(s:find("note: a forward came after the last backward, so the outputs are that "
	              .. "forward's and |delta| and |grad|, which belong to the batch before it, are "
	              .. "left out; call trace() right after backward to see both", 1, true), s)
	-- forward and backward again: all of one batch once more
	z = m:forward(x)
	m:backward(x, ce:backward(z, y))
	tr = m:trace()
	check(not tr.stale and tr[2].delta > 0, "current again")
	-- a layer never run backward is not stale: it has nothing to mix
	local l = nn.Linear(2, 2)
	l:forward(lunet.randn(3, 2))
	check(not l:trace().stale, "forward only")
	-- one layer run on its own after the model's backward
	m:get(2):forward(lunet.randn(1, 5))
	tr = m:trace()
	check(tr[2].stale and not tr[1].stale and not tr[3].stale, "only the layer run again")
end)

-- ---- pairing warnings -------------------------------------------------------------------------

-- Runs code in a fresh lunet (the executable running this test, arg[-1] as
-- lua.c sets it) and returns what it wrote: to stderr and stdout, or with
-- stderr_only to stderr alone.
local function output_of(code, stderr_only)
	local exe = os.getenv("LUNET_EXE") or arg[-1]
	local path = os.tmpname()
	local f = assert(io.open(path, "w"))
	f:write(code)
	f:close()
	local p = assert(io.popen(exe .. " " .. path .. (stderr_only and " 2>&1 >/dev/null" or " 2>&1")))
	local out = p:read("a")
	p:close()
	os.remove(path)
	return out
end

local function stderr_of(code)
	return output_of(code, true)
end

test("softmax applied twice draws one warning; lunet.warnings(false) silences it", function()
	local out = output_of([[
		local nn = lunet.nn
		local m = nn.Sequential{nn.Linear(3, 4), nn.Softmax()}
		local ce = nn.CrossEntropyLoss()
		for i = 1, 3 do ce:forward(m:forward(lunet.randn(2, 3)), {1, 2}) end
		local s = nn.Sequential{nn.Linear(3, 1), nn.Sigmoid()}
		nn.BCEWithLogitsLoss():forward(s:forward(lunet.randn(2, 3)), lunet.ones(2, 1))
		lunet.warnings(false)
		nn.NLLLoss():forward(nn.Softmax():forward(lunet.randn(2, 3)), {1, 2})
	]])
	local _, count = out:gsub("warning", "")
	check(count == 2, "two warnings (one per mistake, once each), got: " .. out)
	check(out:find("Softmax", 1, true) and out:find("CrossEntropyLoss", 1, true), out)
	check(out:find("Sigmoid", 1, true) and out:find("BCEWithLogitsLoss", 1, true), out)
	check(not out:find("NLLLoss takes", 1, true), "silenced: " .. out)
end)

test("NLLLoss fed what is not log-probabilities draws one warning", function()
	-- log-probabilities, from LogSoftmax over any dim: no warning
	h.eq(stderr_of([[
		local nn = lunet.nn
		local z = lunet.tensor{{-1, -2, -0.5}, {0.5, 0.1, 0.2}}
		nn.NLLLoss():forward(nn.LogSoftmax():forward(z), {1, 2})
		nn.NLLLoss{reduction = "sum"}:forward(nn.LogSoftmax(-1):forward(z), {1, 2})
		nn.NLLLoss():forward(nn.LogSoftmax(1):forward(z):transpose(1, 2):contiguous(), {1, 2, 1})
	]]), "")
	-- logits: one warning, however many calls
	h.eq(stderr_of([[
		local nn = lunet.nn
		local z = lunet.tensor{{0.5, 0.1, 0.2}, {-1, -2, -0.5}}
		nn.NLLLoss():forward(z, {1, 2})
		nn.NLLLoss():forward(z * 2, {1, 2})
	]]), "lunet: warning: NLLLoss takes log-probabilities, but row 1 of its input is not one "
	     .. "(it has values above 0); put a LogSoftmax before NLLLoss, or give the logits to "
	     .. "CrossEntropyLoss instead\n")
	local out = stderr_of([[
		lunet.nn.NLLLoss():forward(lunet.tensor{{-1, -1, -1}, {-1, -2, -3}}, {1, 2})
	]])
	check(out:find("row 1 of its input is not one (its exponentials do not sum to 1)", 1, true),
	      out)
	h.eq(stderr_of([[
		lunet.warnings(false)
		lunet.nn.NLLLoss():forward(lunet.tensor{{1, 2, 3}}, {1})
	]]), "", "silenced")
end)

test("nn.accuracy counts arg-max hits in chunks and keeps the mode", function()
	local m = nn.Sequential{nn.Identity(), nn.Dropout(0.5)}
	-- rows whose arg-max is 1, 2, 3, 1, 2 against labels 1, 2, 1, 1, 3
	local x = lunet.tensor{{5, 1, 0}, {0, 4, 1}, {1, 0, 9}, {3, 2, 1}, {0, 7, 6}}
	local y = {1, 2, 1, 1, 3}
	check(nn.accuracy(m, x, y) == 3 / 5, "3 of 5")
	check(nn.accuracy(m, x, lunet.tensor(y), 2) == 3 / 5, "in chunks of 2, labels as a tensor")
	check(m.training == true, "back in training mode")
	m:evaluate()
	nn.accuracy(m, x, y)
	check(m.training == false, "left in evaluate mode")
	check_error(function() nn.accuracy(m, x, {1, 2}) end, "nn.accuracy", "5 labels, got 2")
	check_error(function() nn.accuracy(m, x, y, 0) end, "batch", "0")
end)

h.done()
