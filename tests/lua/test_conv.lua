-- test_conv.lua -- Conv2d, MaxPool2d, AvgPool2d and BatchNorm through the Lua
-- surface: results against plain Lua loops, BatchNorm's modes, gradient
-- checks, error messages, and a small CNN that learns.
local lunet = lunet or require "lunet"
local nn, optim = lunet.nn, lunet.optim

local SEED = 4321
local passed, failed = 0, 0
local function test(name, fn)
	lunet.seed(SEED)
	local ok, err = pcall(fn)
	if ok then
		passed = passed + 1
	else
		failed = failed + 1
		io.stderr:write(string.format("FAIL %s (seed %d): %s\n", name, SEED, tostring(err)))
	end
end

local function check(cond, msg)
	if not cond then
		error(msg or "check failed", 2)
	end
end

local function check_error(fn, ...)
	local ok, err = pcall(fn)
	check(not ok, "expected an error, got none")
	err = tostring(err)
	for _, want in ipairs{...} do
		if not err:find(want, 1, true) then
			error(string.format("error message %q lacks %q", err, want), 2)
		end
	end
end

local function shape_str(t)
	return "{" .. table.concat(t:shape(), ",") .. "}"
end

-- Largest |a-b| over two tensors of the same shape.
local function max_diff(a, b)
	check(shape_str(a) == shape_str(b), shape_str(a) .. " vs " .. shape_str(b))
	return (a - b):abs():max()
end

-- The convolution written out in Lua (0-based loops, 1-based access):
-- y[n,o,i,j] = b[o] + sum w[o,c,u,v] x[n,c,i*s-p+u,j*s-p+v].
local function lua_conv(x, w, b, s, p)
	local n, cin, h, wd = table.unpack(x:shape())
	local cout, k = w:size(1), w:size(3)
	local ho, wo = (h + 2 * p - k) // s + 1, (wd + 2 * p - k) // s + 1
	local y = lunet.zeros(n, cout, ho, wo)
	for a = 1, n do for o = 1, cout do for i = 0, ho - 1 do for j = 0, wo - 1 do
		local acc = b:get(o)
		for c = 1, cin do for u = 0, k - 1 do for v = 0, k - 1 do
			local ih, iw = i * s - p + u, j * s - p + v
			if ih >= 0 and ih < h and iw >= 0 and iw < wd then
				acc = acc + w:get(o, c, u + 1, v + 1) * x:get(a, c, ih + 1, iw + 1)
			end
		end end end
		y:set(a, o, i + 1, j + 1, acc)
	end end end end
	return y
end

-- Pooling written out in Lua: op is "max" or "avg".
local function lua_pool(x, k, s, op)
	local n, c, h, wd = table.unpack(x:shape())
	local ho, wo = (h - k) // s + 1, (wd - k) // s + 1
	local y = lunet.zeros(n, c, ho, wo)
	for a = 1, n do for ch = 1, c do for i = 0, ho - 1 do for j = 0, wo - 1 do
		local acc = op == "max" and -math.huge or 0
		for u = 0, k - 1 do for v = 0, k - 1 do
			local val = x:get(a, ch, i * s + u + 1, j * s + v + 1)
			acc = op == "max" and math.max(acc, val) or acc + val
		end end
		y:set(a, ch, i + 1, j + 1, op == "max" and acc or acc / (k * k))
	end end end end
	return y
end

-- ---- Conv2d --------------------------------------------------------------------------------

test("Conv2d matches the convolution written out in Lua", function()
	for _, c in ipairs{{2, 3, 5, 7, 3, 1, 0}, {1, 2, 6, 5, 3, 2, 1}, {2, 1, 4, 4, 2, 1, 1}} do
		local n, cin, h, w, cout, s, p = table.unpack(c)
		local conv = nn.Conv2d(cin, cout, 3, {stride = s, padding = p})
		conv.bias:copy(lunet.randn(cout))
		local x = lunet.randn(n, cin, h, w)
		local y = conv:forward(x)
		local want = lua_conv(x, conv.weight, conv.bias, s, p)
		check(max_diff(y, want) < 1e-4, "Conv2d " .. tostring(conv) .. " differs by "
		      .. max_diff(y, want))
	end
end)

test("Conv2d fields, shapes and description", function()
	local conv = nn.Conv2d(3, 8, 5, {stride = 2, padding = 2})
	check(shape_str(conv.weight) == "{8,3,5,5}", shape_str(conv.weight))
	check(shape_str(conv.bias) == "{8}", shape_str(conv.bias))
	check(shape_str(conv.grad_weight) == "{8,3,5,5}", shape_str(conv.grad_weight))
	check(tostring(conv):find("Conv2d(3 -> 8, 5x5, stride 2, padding 2)", 1, true), tostring(conv))
	check(shape_str(conv:forward(lunet.randn(4, 3, 32, 31))) == "{4,8,16,16}")
	local params, grads = conv:parameters()
	check(#params == 2 and #grads == 2, "weight and bias")
	-- defaults: stride 1, no padding
	check(shape_str(nn.Conv2d(1, 2, 3):forward(lunet.randn(1, 1, 5, 6))) == "{1,2,3,4}")
end)

test("Conv2d backward accumulates parameter gradients", function()
	local conv = nn.Conv2d(2, 3, 3, {padding = 1})
	local x, gy = lunet.randn(2, 2, 4, 5), lunet.randn(2, 3, 4, 5)
	conv:forward(x)
	conv:zero_grad()
	local gx1 = conv:backward(x, gy):clone()
	local gw1 = conv.grad_weight:clone()
	local gx2 = conv:backward(x, gy)
	check(max_diff(gx1, gx2) == 0, "grad_input is overwritten, not added")
	check(max_diff(conv.grad_weight, gw1 * 2) < 1e-5, "grad_weight adds up")
	-- grad_bias = sum of gy over batch and positions, per output channel
	for o = 1, 3 do
		local s = 0
		for n = 1, 2 do for i = 1, 4 do for j = 1, 5 do s = s + gy:get(n, o, i, j) end end end
		check(math.abs(conv.grad_bias:get(o) - 2 * s) < 1e-4, "grad_bias " .. o)
	end
end)

test("Conv2d without a bias: one parameter, the convolution without b", function()
	local conv = nn.Conv2d(2, 3, 3, {padding = 1, bias = false})
	check(conv.bias == nil and conv.grad_bias == nil, "no bias field")
	local params, grads = conv:parameters()
	check(#params == 1 and #grads == 1, "weight only")
	check(tostring(conv):find("bias=false", 1, true), tostring(conv))
	local x = lunet.randn(2, 2, 4, 5)
	local want = lua_conv(x, conv.weight, lunet.zeros(3), 1, 1)
	check(max_diff(conv:forward(x), want) < 1e-4, "matches the loops with b = 0")
	local ok, err, where = nn.gradcheck(conv, x)
	check(ok, string.format("gradcheck: %.3e at %s", err, tostring(where)))
	-- saved and loaded, it stays without a bias
	local path = os.tmpname()
	lunet.save(path, conv)
	local back = lunet.load(path)
	os.remove(path)
	check(back.bias == nil and max_diff(back:forward(x), conv:forward(x)) == 0, "round trip")
	check(nn.Conv2d(2, 3, 3, {bias = true}).bias ~= nil, "bias = true is the default")
end)

-- ---- pooling -----------------------------------------------------------------------------

test("MaxPool2d and AvgPool2d match loops written out in Lua", function()
	local x = lunet.randn(2, 3, 7, 6)
	for _, c in ipairs{{2, nil}, {3, 2}, {2, 1}} do
		local k, s = c[1], c[2]
		local mp, ap = nn.MaxPool2d(k, s), nn.AvgPool2d(k, s)
		check(max_diff(mp:forward(x), lua_pool(x, k, s or k, "max")) == 0, tostring(mp))
		check(max_diff(ap:forward(x), lua_pool(x, k, s or k, "avg")) < 1e-6, tostring(ap))
	end
	check(tostring(nn.MaxPool2d(2)):find("MaxPool2d(2x2, stride 2)", 1, true))
end)

test("MaxPool2d backward routes the gradient to the maximum", function()
	local x = lunet.tensor{{{{1, 2}, {4, 3}}, {{8, 5}, {6, 7}}}}  -- {1,2,2,2}
	local mp = nn.MaxPool2d(2)
	local y = mp:forward(x)
	check(y:get(1, 1, 1, 1) == 4 and y:get(1, 2, 1, 1) == 8)
	local gx = mp:backward(x, lunet.tensor{{{{10}}, {{20}}}})
	local want = lunet.tensor{{{{0, 0}, {10, 0}}, {{20, 0}, {0, 0}}}}
	check(max_diff(gx, want) == 0, tostring(gx))
end)

-- ---- the options: rectangular, padding "same", dilation, groups, ceil_mode --------------

-- A number or {h, w} as two numbers.
local function hw(v)
	if type(v) == "table" then return v[1], v[2] end
	return v, v
end

-- The convolution written out in Lua with every option: o has k, stride,
-- padding (a pair, or "same": the span d*(k-1) split, the odd one after),
-- dilation, groups; b may be nil.
local function lua_conv_opts(x, w, b, o)
	local n, cin, h, wd = table.unpack(x:shape())
	local cout = w:size(1)
	local kh, kw = w:size(3), w:size(4)
	local sh, sw = hw(o.stride or 1)
	local dh, dw = hw(o.dilation or 1)
	local pt, pl
	if o.padding == "same" then
		pt, pl = dh * (kh - 1) // 2, dw * (kw - 1) // 2
	elseif o.padding == "valid" then
		pt, pl = 0, 0
	else
		pt, pl = hw(o.padding or 0)
	end
	local pb = o.padding == "same" and dh * (kh - 1) - pt or pt
	local pr = o.padding == "same" and dw * (kw - 1) - pl or pl
	local g = o.groups or 1
	local cg, og = cin // g, cout // g
	local ho = (h + pt + pb - dh * (kh - 1) - 1) // sh + 1
	local wo = (wd + pl + pr - dw * (kw - 1) - 1) // sw + 1
	local y = lunet.zeros(n, cout, ho, wo)
	for a = 1, n do for oc = 1, cout do for i = 0, ho - 1 do for j = 0, wo - 1 do
		local acc = b and b:get(oc) or 0
		local grp = (oc - 1) // og
		for c = 1, cg do for u = 0, kh - 1 do for v = 0, kw - 1 do
			local ih, iw = i * sh - pt + u * dh, j * sw - pl + v * dw
			if ih >= 0 and ih < h and iw >= 0 and iw < wd then
				acc = acc + w:get(oc, c, u + 1, v + 1) * x:get(a, grp * cg + c, ih + 1, iw + 1)
			end
		end end end
		y:set(a, oc, i + 1, j + 1, acc)
	end end end end
	return y
end

local CONV_OPTIONS = {
	-- cin, cout, k, options, input h, w
	{2, 3, {2, 3}, {stride = {1, 2}, padding = {1, 0}}, 6, 7},
	{2, 2, 3, {dilation = 2, padding = 2}, 7, 8},
	{2, 2, {3, 2}, {dilation = {2, 3}, stride = {2, 1}, padding = {1, 2}}, 9, 8},
	{4, 6, 3, {groups = 2, padding = 1}, 5, 6},
	{3, 6, 3, {groups = 3, padding = 1}, 5, 5},        -- depthwise, two outputs each
	{3, 3, 3, {groups = 3, stride = 2}, 7, 6},         -- depthwise, stride 2
	{2, 3, 4, {padding = "same"}, 5, 6},               -- even kernel: 1 before, 2 after
	{2, 2, {3, 2}, {padding = "same", dilation = 2}, 6, 5},
	{2, 3, 3, {padding = "valid", bias = false}, 5, 5},
}

test("Conv2d's options match the convolution written out in Lua", function()
	for _, c in ipairs(CONV_OPTIONS) do
		local cin, cout, k, o, h, w = table.unpack(c)
		local conv = nn.Conv2d(cin, cout, k, o)
		if conv.bias then conv.bias:copy(lunet.randn(cout)) end
		local x = lunet.randn(2, cin, h, w)
		local y = conv:forward(x)
		local want = lua_conv_opts(x, conv.weight, conv.bias, o)
		check(max_diff(y, want) < 1e-4, tostring(conv) .. " differs by " .. max_diff(y, want))
		if o.padding == "same" then
			check(y:size(3) == h and y:size(4) == w, "same keeps the size: " .. shape_str(y))
		end
		local ok, err, where = nn.gradcheck(conv, x)
		check(ok, string.format("gradcheck of %s: %.3e at %s", tostring(conv), err, tostring(where)))
	end
end)

test("Conv2d's options: fields, weight shapes, descriptions", function()
	local conv = nn.Conv2d(6, 4, {3, 5}, {stride = {2, 1}, padding = {1, 2}, dilation = {2, 1},
		groups = 2, bias = false})
	check(shape_str(conv.weight) == "{4,3,3,5}", shape_str(conv.weight))
	check(conv.k == 3 and conv.kw == 5 and conv.stride == 2 and conv.stride_w == 1, "k, stride")
	check(conv.padding == 1 and conv.padding_w == 2 and conv.dilation == 2, "padding, dilation")
	check(conv.dilation_w == 1 and conv.groups == 2 and conv.same == 0, "groups")
	check(tostring(conv) == "Conv2d(6 -> 4, 3x5, stride 2x1, padding 1x2, dilation 2x1, groups 2, "
	      .. "bias=false)", tostring(conv))
	local same = nn.Conv2d(2, 2, 4, {padding = "same"})
	check(tostring(same) == "Conv2d(2 -> 2, 4x4, stride 1, padding same)", tostring(same))
	check(same.same == 1 and same.padding == 1, "same: padding before is 1")
	check(tostring(nn.Conv2d(1, 1, 3, {padding = "valid"})):find("padding 0", 1, true))
	local dw = nn.Conv2d(8, 8, 3, {groups = 8})
	check(shape_str(dw.weight) == "{8,1,3,3}", "depthwise weight " .. shape_str(dw.weight))
end)

test("Conv2d's options are saved, loaded and named as in PyTorch", function()
	for _, c in ipairs(CONV_OPTIONS) do
		local cin, cout, k, o, h, w = table.unpack(c)
		local conv = nn.Conv2d(cin, cout, k, o)
		local x = lunet.randn(2, cin, h, w)
		local y = conv:forward(x):clone()
		local path = os.tmpname()
		lunet.save(path, nn.Sequential{conv})
		local back = lunet.load(path)
		os.remove(path)
		check(tostring(back) == tostring(nn.Sequential{conv}), tostring(back))
		check(max_diff(back:forward(x), y) == 0, "identical outputs after loading " .. tostring(conv))
		local sd = back:state_dict()
		check(shape_str(sd["0.weight"]) == shape_str(conv.weight), "state_dict weight shape")
		local fresh = nn.Sequential{nn.Conv2d(cin, cout, k, o)}
		fresh:load_state_dict(sd)
		check(max_diff(fresh:forward(x), y) == 0, "load_state_dict " .. tostring(conv))
	end
end)

-- Pooling written out in Lua with padding, ceil_mode and count_include_pad
-- (PyTorch's rules: windows clipped to the input; ceil_mode keeps a last
-- window only when it starts inside the input or its left padding).
local function lua_pool_opts(x, k, s, op, o)
	local n, c, h, wd = table.unpack(x:shape())
	local kh, kw = hw(k)
	local sh, sw = hw(s or k)
	local ph, pw = hw(o.padding or 0)
	local function out(len, kk, ss, pp)
		local span = len + 2 * pp - kk
		local r = (o.ceil_mode and (span + ss - 1) // ss or span // ss) + 1
		if o.ceil_mode and (r - 1) * ss >= len + pp then r = r - 1 end
		return r
	end
	local ho, wo = out(h, kh, sh, ph), out(wd, kw, sw, pw)
	local y = lunet.zeros(n, c, ho, wo)
	for a = 1, n do for ch = 1, c do for i = 0, ho - 1 do for j = 0, wo - 1 do
		local hs, ws = i * sh - ph, j * sw - pw
		local acc, count = op == "max" and -math.huge or 0, 0
		for u = math.max(hs, 0), math.min(hs + kh, h) - 1 do
			for v = math.max(ws, 0), math.min(ws + kw, wd) - 1 do
				local val = x:get(a, ch, u + 1, v + 1)
				acc = op == "max" and math.max(acc, val) or acc + val
				count = count + 1
			end
		end
		if op == "avg" then
			if o.count_include_pad ~= false then
				count = (math.min(hs + kh, h + ph) - hs) * (math.min(ws + kw, wd + pw) - ws)
			end
			acc = acc / count
		end
		y:set(a, ch, i + 1, j + 1, acc)
	end end end end
	return y
end

local POOL_OPTIONS = {
	-- k, stride, options, input h, w
	{{2, 3}, {2, 1}, {}, 6, 7},
	{3, 2, {padding = 1}, 7, 7},
	{{3, 2}, {2, 1}, {padding = {1, 1}}, 7, 6},
	{2, 2, {ceil_mode = true}, 7, 7},
	{3, 2, {padding = 1, ceil_mode = true}, 6, 5},
	{2, 2, {padding = 1, ceil_mode = true}, 5, 5},
	{3, 2, {padding = 1, count_include_pad = false}, 7, 6},
	{3, 2, {padding = 1, ceil_mode = true, count_include_pad = false}, 6, 5},
}

test("the pools' options match loops written out in Lua, and pass gradcheck", function()
	-- distinct values 0.05 apart: a small step moves no maximum
	for _, c in ipairs(POOL_OPTIONS) do
		local k, s, o, h, w = table.unpack(c)
		local x = lunet.zeros(2, 2, h, w)
		local flat = x:reshape(-1)
		for i = 1, #flat do flat[i] = ((i * 37) % #flat) * 0.05 - 1 end
		for _, op in ipairs{"max", "avg"} do
			if op == "avg" or o.count_include_pad == nil then
				local m = op == "max" and nn.MaxPool2d(k, s, o) or nn.AvgPool2d(k, s, o)
				local want = lua_pool_opts(x, k, s, op, o)
				check(max_diff(m:forward(x), want) < 1e-6, tostring(m) .. " differs")
				local ok, err, where = nn.gradcheck(m, x, {eps = op == "max" and 1e-3 or 1e-2})
				check(ok, string.format("gradcheck of %s: %.3e at %s", tostring(m), err,
				                        tostring(where)))
			end
		end
	end
	-- the options table may come second, with the stride defaulting to k
	local m = nn.MaxPool2d(3, {padding = 1})
	check(m.stride == 3 and m.padding == 1, "stride defaults to k")
	check(tostring(m) == "MaxPool2d(3x3, stride 3, padding 1)", tostring(m))
	local a = nn.AvgPool2d({2, 3}, {1, 2}, {ceil_mode = true, count_include_pad = false})
	check(tostring(a) == "AvgPool2d(2x3, stride 1x2, ceil_mode, count_include_pad=false)",
	      tostring(a))
	check(a.k == 2 and a.kw == 3 and a.stride_w == 2 and a.ceil_mode == 1, "fields")
	-- saved and loaded with their options
	local path = os.tmpname()
	lunet.save(path, nn.Sequential{m, a})
	local back = lunet.load(path)
	os.remove(path)
	check(tostring(back:get(1)) == tostring(m) and tostring(back:get(2)) == tostring(a),
	      tostring(back))
end)

-- ---- BatchNorm ---------------------------------------------------------------------------

test("BatchNorm: training normalises and updates the running statistics", function()
	local bn = nn.BatchNorm(2)
	check(bn.running_mean:sum() == 0 and bn.running_var:sum() == 2, "starts at 0 and 1")
	check(bn.weight:sum() == 2 and bn.bias:sum() == 0, "weight 1, bias 0")
	local x = lunet.tensor{{1, 10}, {2, 20}, {3, 60}, {6, 30}}
	local y = bn:forward(x)
	for c = 1, 2 do
		local col = {}
		for i = 1, 4 do col[i] = x:get(i, c) end
		local mean = (col[1] + col[2] + col[3] + col[4]) / 4
		local ss = 0
		for i = 1, 4 do ss = ss + (col[i] - mean) ^ 2 end
		for i = 1, 4 do
			local want = (col[i] - mean) / math.sqrt(ss / 4 + 1e-5)
			check(math.abs(y:get(i, c) - want) < 1e-5, "normalised value")
		end
		check(math.abs(bn.running_mean:get(c) - 0.1 * mean) < 1e-4, "running mean")
		check(math.abs(bn.running_var:get(c) - (0.9 + 0.1 * ss / 3)) < 1e-3, "running var")
	end
end)

test("BatchNorm eps and momentum options: the statistics by hand", function()
	local bn = nn.BatchNorm(2, {eps = 0.5, momentum = 0.25})
	check(bn.eps == 0.5 and bn.momentum == 0.25, "kept in the config")
	local x = lunet.tensor{{1, 10}, {2, 20}, {3, 60}, {6, 30}}
	local y = bn:forward(x)
	for c = 1, 2 do
		local mean, ss = 0, 0
		for i = 1, 4 do mean = mean + x:get(i, c) / 4 end
		for i = 1, 4 do ss = ss + (x:get(i, c) - mean) ^ 2 end
		for i = 1, 4 do
			local want = (x:get(i, c) - mean) / math.sqrt(ss / 4 + 0.5)
			check(math.abs(y:get(i, c) - want) < 1e-5, "normalised with eps 0.5")
		end
		check(math.abs(bn.running_mean:get(c) - 0.25 * mean) < 1e-4, "running mean, momentum 0.25")
		check(math.abs(bn.running_var:get(c) - (0.75 + 0.25 * ss / 3)) < 1e-3, "running var")
	end
	local ok, err, where = nn.gradcheck(nn.BatchNorm(3, {eps = 1e-3, momentum = 0.5}),
	                                    lunet.randn(5, 3), {eps = 1e-2, tol = 2e-2})
	check(ok, string.format("gradcheck: %.3e at %s", err, tostring(where)))
	-- momentum 0 keeps the running statistics; 1 replaces them with the batch's
	local frozen = nn.BatchNorm(2, {momentum = 0})
	frozen:forward(x)
	check(frozen.running_mean:sum() == 0 and frozen.running_var:sum() == 2, "momentum 0")
end)

test("BatchNorm: evaluate uses the running statistics and leaves them", function()
	local bn = nn.BatchNorm(3)
	bn.running_mean:copy(lunet.tensor{1, -2, 0.5})
	bn.running_var:copy(lunet.tensor{4, 0.25, 1})
	bn.weight:copy(lunet.tensor{2, 1, 0.5})
	bn.bias:copy(lunet.tensor{0, 1, -1})
	bn:evaluate()
	local x = lunet.randn(2, 3, 2, 2)
	local y = bn:forward(x)
	local rm, rv, g, b = {1, -2, 0.5}, {4, 0.25, 1}, {2, 1, 0.5}, {0, 1, -1}
	for n = 1, 2 do for c = 1, 3 do for i = 1, 2 do for j = 1, 2 do
		local want = g[c] * (x:get(n, c, i, j) - rm[c]) / math.sqrt(rv[c] + 1e-5) + b[c]
		check(math.abs(y:get(n, c, i, j) - want) < 1e-5, "evaluate output")
	end end end end
	check(bn.running_mean:get(2) == -2 and bn.running_var:get(2) == 0.25, "unchanged")
	-- one sample is fine in evaluate mode, an error in training mode
	bn:forward(lunet.randn(1, 3))
	bn:train()
	check_error(function() bn:forward(lunet.randn(1, 3)) end, "BatchNorm", "more than 1 value",
	            "{1,3}")
end)

test("BatchNorm inside a Sequential follows train/evaluate", function()
	local m = nn.Sequential{nn.Conv2d(1, 2, 3, {padding = 1}), nn.BatchNorm(2), nn.ReLU()}
	local bn = m:get(2)
	local x = lunet.randn(4, 1, 5, 5) + 3
	m:forward(x)
	local rm = bn.running_mean:clone()
	m:evaluate()
	m:forward(x)
	check(max_diff(bn.running_mean, rm) == 0, "no update in evaluate mode")
	m:train()
	m:forward(x)
	check(max_diff(bn.running_mean, rm) > 0, "updated again in training mode")
end)

-- ---- gradient checks through nn.gradcheck ---------------------------------------------------

test("nn.gradcheck of every convolutional layer", function()
	local cases = {
		{nn.Conv2d(2, 3, 3, {stride = 2, padding = 1}), lunet.randn(2, 2, 5, 7)},
		{nn.Conv2d(3, 2, 1), lunet.randn(2, 3, 3, 4)},
		{nn.AvgPool2d(3, 2), lunet.randn(2, 2, 7, 5)},
		{nn.BatchNorm(3), lunet.randn(6, 3), {eps = 1e-2, tol = 1e-2}},
		{nn.BatchNorm(2), lunet.randn(3, 2, 4, 3), {eps = 1e-2, tol = 1e-2}},
		{nn.BatchNorm(2):evaluate(), lunet.randn(3, 2, 4, 3), {eps = 1e-2, tol = 1e-2}},
	}
	-- MaxPool2d: distinct values 0.05 apart, so a small step moves no maximum
	local x = lunet.zeros(2, 2, 6, 6)
	local flat = x:reshape(-1)
	for i = 1, #flat do flat[i] = ((i * 37) % #flat) * 0.05 end
	cases[#cases + 1] = {nn.MaxPool2d(2), x, {eps = 1e-3}}
	for _, c in ipairs(cases) do
		local ok, err, where = nn.gradcheck(c[1], c[2], c[3])
		check(ok, string.format("gradcheck of %s failed: error %.3e at %s", tostring(c[1]), err,
		                        tostring(where)))
	end
end)

test("ReLU then MaxPool2d in a Sequential: the same bits as the layers one by one, and gradcheck", function()
	-- the Sequential runs the pair as one pass where the CPU has the joint kernels
	for _, shape in ipairs{{3, 2, 9, 11}, {2, 3, 14, 14}, {1, 1, 2, 3}} do
		local seq = nn.Sequential{nn.ReLU(), nn.MaxPool2d(2)}
		local relu, pool = nn.ReLU(), nn.MaxPool2d(2)
		local x = lunet.randn(table.unpack(shape))
		local y = seq:forward(x)
		local y1 = pool:forward(relu:forward(x))
		local gy = lunet.randn(table.unpack(y:shape()))
		local gx = seq:backward(x, gy)
		local gx1 = relu:backward(x, pool:backward(relu.output, gy))
		check(max_diff(y, y1) == 0 and max_diff(seq:get(1).output, relu.output) == 0,
		      "outputs differ")
		check(max_diff(seq:get(2).grad_input, pool.grad_input) == 0,
		      "MaxPool2d's grad_input differs")
		check(max_diff(gx, gx1) == 0, "ReLU's grad_input differs")
	end
	-- distinct values 0.05 apart, none at the ReLU's kink
	local x = lunet.zeros(2, 2, 6, 7)
	local flat = x:reshape(-1)
	for i = 1, #flat do flat[i] = ((i * 37) % #flat) * 0.05 - 2.025 end
	local ok, err, where = nn.gradcheck(nn.Sequential{nn.ReLU(), nn.MaxPool2d(2)}, x, {eps = 1e-3})
	check(ok, string.format("gradcheck failed: error %.3e at %s", err, tostring(where)))
end)

-- ---- errors --------------------------------------------------------------------------------

test("nn.BatchNorm1d and nn.BatchNorm2d name themselves in their errors", function()
	for _, name in ipairs{"BatchNorm", "BatchNorm1d", "BatchNorm2d"} do
		local ctor = nn[name]
		check_error(function() ctor(0) end, "nn." .. name .. ": n must be >= 1, got 0")
		check_error(function() ctor(3, {foo = 1}) end, "nn." .. name .. ": unknown option 'foo'")
		local bn = ctor(3, {eps = 1e-3})
		check(bn.n == 3 and math.abs(bn.eps - 1e-3) < 1e-12 and bn.momentum == 0.1,
		      name .. ": the options were not taken")
		check(tostring(bn) == "BatchNorm(3)", "described as " .. tostring(bn))
	end
end)

test("errors name the layer and the shapes", function()
	check_error(function() nn.Conv2d(3, 16, 3):forward(lunet.randn(8, 1, 28, 28)) end,
	            "Conv2d", "{N,3,H,W}", "{8,1,28,28}")
	check_error(function() nn.Conv2d(1, 2, 5):forward(lunet.randn(2, 1, 3, 8)) end,
	            "Conv2d", "smaller than the 5x5 kernel", "{2,1,3,8}")
	check_error(function() nn.MaxPool2d(2):forward(lunet.randn(4, 16)) end,
	            "MaxPool2d", "{N,C,H,W}", "{4,16}")
	check_error(function() nn.MaxPool2d(3):forward(lunet.randn(1, 1, 2, 9)) end,
	            "MaxPool2d", "3x3 window", "{1,1,2,9}")
	check_error(function() nn.BatchNorm(16):forward(lunet.randn(8, 3)) end,
	            "BatchNorm", "{N,16}", "{8,3}")
	check_error(function() nn.Conv2d(0, 2, 3) end, "Conv2d", "0")
	check_error(function() nn.Conv2d(1, 2, 3, {padding = -1}) end, "padding", "-1")
	check_error(function() nn.BatchNorm(0) end, "BatchNorm", "0")
	local conv = nn.Conv2d(1, 2, 3)
	local x = lunet.randn(2, 1, 5, 5)
	conv:forward(x)
	check_error(function() conv:backward(x, lunet.randn(2, 2, 3, 4)) end,
	            "Conv2d", "{2,2,3,3}", "{2,2,3,4}")
end)

-- ---- saving --------------------------------------------------------------------------------

test("a saved CNN loads with its statistics and gives identical outputs", function()
	local m = nn.Sequential{
		nn.Conv2d(1, 4, 3, {stride = 2, padding = 1}), nn.BatchNorm(4), nn.ReLU(), nn.MaxPool2d(2),
		nn.AvgPool2d(2, 1), nn.Flatten(), nn.Linear(16, 3), nn.BatchNorm(3),
	}
	local x = lunet.randn(5, 1, 12, 12)
	for _ = 1, 3 do m:forward(x) end  -- moves the running statistics
	m:evaluate()
	local y = m:forward(x):clone()
	local path = os.tmpname()
	lunet.save(path, m)
	local m2 = lunet.load(path)
	os.remove(path)
	check(tostring(m2) == tostring(m), tostring(m2))
	m2:evaluate()
	check(max_diff(m2:forward(x), y) == 0, "identical outputs")
	check(max_diff(m2:get(2).running_var, m:get(2).running_var) == 0, "running_var restored")
	local c = m2:get(1)
	check(c.stride == 2 and c.padding == 1 and c.k == 3, "Conv2d config restored")
end)

-- ---- learning ------------------------------------------------------------------------------

-- Two classes of 6x6 images: a vertical or a horizontal bar, at a random
-- place, with noise.  A small CNN must learn to tell them apart.
test("a small CNN learns bars", function()
	local n = 64
	local x, y = lunet.randn(n, 1, 6, 6) * 0.3, lunet.zeros(n)
	for i = 1, n do
		local cls, at = i % 2 + 1, (i * 7) % 6 + 1
		y[i] = cls
		for t = 1, 6 do
			if cls == 1 then x:set(i, 1, t, at, x:get(i, 1, t, at) + 1)
			else x:set(i, 1, at, t, x:get(i, 1, at, t) + 1) end
		end
	end
	local model = nn.Sequential{
		nn.Conv2d(1, 4, 3, {padding = 1}), nn.BatchNorm(4), nn.ReLU(), nn.MaxPool2d(2),
		nn.Flatten(), nn.Linear(4 * 3 * 3, 2),
	}
	local crit = nn.CrossEntropyLoss()
	local opt = optim.SGD(model, {lr = 0.1, momentum = 0.9})
	local first, last
	for step = 1, 60 do
		opt:zero_grad()
		local z = model:forward(x)
		local loss = crit:forward(z, y)
		model:backward(x, crit:backward(z, y))
		opt:step()
		first = first or loss
		last = loss
	end
	check(last < 0.25 * first, string.format("loss %.4f -> %.4f", first, last))
	model:evaluate()
	local pred = model:forward(x):argmax(2):reshape(-1)
	local correct = 0
	for i = 1, n do if pred[i] == y[i] then correct = correct + 1 end end
	check(correct >= 0.95 * n, "accuracy " .. correct .. "/" .. n)
end)

print(string.format("%d passed, %d failed", passed, failed))
if failed > 0 then
	error(failed .. " test(s) failed")
end
