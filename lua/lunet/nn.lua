-- nn.lua -- the pure-Lua part of lunet.nn: gradient checking and traces.
--
-- Both work on anything with the module protocol (built-in modules and
-- plain Lua tables with forward/backward), so they are written against
-- that protocol rather than in C.

local lunet = ...
local nn = lunet.nn

-- A fixed pseudo-random weighting in [-1, 1), the same on every call and
-- independent of lunet.seed (so a gradient check never disturbs the
-- random stream of the experiment around it).
local function weights(n)
	local w, s = {}, 12345
	for i = 1, n do
		s = (s * 1103515245 + 12345) % 2147483648
		w[i] = s / 1073741824 - 1
	end
	return w
end

local function is_tensor(v)
	return lunet.is_tensor(v)
end

-- A table of options ({eps=, tol=}), as opposed to a target given as a
-- table of labels or nested rows.
local function is_options(v)
	return type(v) == "table" and not is_tensor(v) and v[1] == nil
end

local function relative_error(a, n)
	local den = math.max(math.abs(a), math.abs(n), 1e-2)
	return math.abs(a - n) / den
end

-- Largest relative error of the analytic gradient g against central
-- differences of f() over every element of v (v is changed and restored
-- in place).  Returns the error and the 1-based index where it is worst.
local function check_tensor(f, v, g, eps)
	local fv, fg = v:reshape(-1), g:reshape(-1)
	local worst, at = 0, nil
	for i = 1, #fv do
		local saved = fv[i]
		fv[i] = saved + eps
		local up = fv[i]
		local hi = f()
		fv[i] = saved - eps
		local down = fv[i]
		local lo = f()
		fv[i] = saved
		local e = relative_error(fg[i], (hi - lo) / (up - down))
		if e > worst or e ~= e then
			worst, at = e, i
		end
	end
	return worst, at
end

local function probe_value(y, r)
	local fy = y:reshape(-1)
	local s = 0
	for i = 1, #r do
		s = s + r[i] * fy[i]
	end
	return s
end

-- The options of nn.gradcheck; their values are checked below.
local GRADCHECK_OPTIONS = {{"eps", "any"}, {"tol", "any"}}

--- nn.gradcheck(m, x[, opts]) or nn.gradcheck(c, x, target[, opts])
-- Checks backward against central finite differences over the input and
-- every parameter.  Returns ok, the largest relative error, and where it
-- was largest ("input[3]", "parameter 1[7]").
function nn.gradcheck(obj, x, target, opts)
	local kind
	if nn.is_loss(obj) then
		kind = "loss"
	elseif nn.is_module(obj) then
		kind = "module"
	elseif type(obj) == "table" and type(obj.forward) == "function"
	       and type(obj.backward) == "function" then
		kind = (target ~= nil and not is_options(target)) and "loss" or "module"
	else
		error("nn.gradcheck: expected a module, a loss or a table with forward/backward, got "
		      .. nn._what(obj), 2)
	end
	local single = is_tensor(x)
	if not single then
		local ok = type(x) == "table" and kind == "module" and #x > 0
		for i = 1, ok and #x or 0 do ok = ok and is_tensor(x[i]) end
		if not ok then
			error("nn.gradcheck: expected an input tensor" .. (kind == "module" and
			      " or a table of them" or "") .. ", got " .. nn._what(x), 2)
		end
	end
	if kind == "module" then
		if target ~= nil and not is_options(target) then
			error("nn.gradcheck: a module takes (m, x[, opts]); got an extra " .. type(target), 2)
		end
		opts = target
		target = nil
	elseif target == nil then
		error("nn.gradcheck: a loss needs a target", 2)
	end
	local bad = lunet._optionerror("nn.gradcheck", GRADCHECK_OPTIONS, opts)
	if bad then error(bad, 2) end
	opts = opts or {}
	local eps, tol = opts.eps or 1e-2, opts.tol or 1e-2
	if type(eps) ~= "number" or eps <= 0 then
		error("nn.gradcheck: eps must be a positive number, got " .. tostring(eps), 2)
	end
	if type(tol) ~= "number" or tol <= 0 then
		error("nn.gradcheck: tol must be a positive number, got " .. tostring(tol), 2)
	end

	local xs = {}
	for i, t in ipairs(single and {x} or x) do xs[i] = t:clone() end
	x = single and xs[1] or xs
	local worst, where = 0, nil
	local function consider(e, at, name)
		if at and (e > worst or e ~= e) then
			worst, where = e, string.format("%s[%d]", name, at)
		end
	end

	if kind == "loss" then
		local out, f, gx = obj:forward(x, target), nil, nil
		if is_tensor(out) then
			-- reduction "none": the per-sample losses, probed as sum r.*l
			local r = weights(out:numel())
			gx = obj:backward(x, target, lunet.tensor(r):reshape(table.unpack(out:shape())))
			f = function() return probe_value(obj:forward(x, target), r) end
		else
			gx = obj:backward(x, target)
			f = function() return obj:forward(x, target) end
		end
		local e, at = check_tensor(f, x, gx:clone(), eps)
		consider(e, at, "input")
	else
		-- several outputs (a Graph's) come as a table: each gets its own weighting
		local y = obj:forward(x)
		local ys = is_tensor(y) and {y} or y
		local r, gys = {}, {}
		for k, yk in ipairs(ys) do
			r[k] = weights(yk:numel())
			gys[k] = lunet.tensor(r[k]):reshape(table.unpack(yk:shape()))
		end
		local gy = is_tensor(y) and gys[1] or gys
		local params, grads = {}, {}
		if obj.parameters then
			params, grads = obj:parameters()
		end
		if obj.zero_grad then
			obj:zero_grad()
		end
		obj:forward(x)
		-- nil when the module's input_grad is false: parameters only
		local gx = obj:backward(x, gy)
		local gxs = {}
		for i, g in ipairs(is_tensor(gx) and {gx} or gx or {}) do gxs[i] = g:clone() end
		local saved = {}
		for i, g in ipairs(grads) do
			saved[i] = g:clone()
		end
		local function f()
			local out = obj:forward(x)
			local s = 0
			for k, yk in ipairs(is_tensor(out) and {out} or out) do
				s = s + probe_value(yk, r[k])
			end
			return s
		end
		local e, at
		for i, g in ipairs(gxs) do
			e, at = check_tensor(f, xs[i], g, eps)
			consider(e, at, single and "input" or "input " .. i)
		end
		for i, p in ipairs(params) do
			e, at = check_tensor(f, p, saved[i], eps)
			consider(e, at, "parameter " .. i)
		end
	end
	return worst <= tol, worst, where
end

-- ---- trace ---------------------------------------------------------------------

-- sum((v - shift)^2) over the elements of tensor v, taken CHUNK elements
-- at a time: the temporaries are small and freed at once (<close>), so a
-- trace after every few steps (exp:watch) neither leaves garbage the
-- collector does not see the size of nor churns blocks of the size of a
-- layer's output through the allocator.
local CHUNK = 4096
local function sum_sq(v, shift)
	local flat = v:reshape(v:numel())
	local n, sq = flat:numel(), 0
	for start = 1, n, CHUNK do
		local part = flat:narrow(1, start, math.min(CHUNK, n - start + 1))
		local d <close> = shift ~= 0 and part - shift or part:clone()
		local dd <close> = d * d
		sq = sq + dd:sum()
	end
	return sq
end

-- Mean and standard deviation of a tensor, or of all the tensors of a
-- table (a Graph's several outputs).
local function stats(t)
	local list = is_tensor(t) and {t} or type(t) == "table" and t or {}
	local n, sum, sq = 0, 0, 0
	for _, v in ipairs(list) do
		n, sum = n + v:numel(), sum + v:sum()
	end
	if n == 0 then
		return nil
	end
	local mean = sum / n
	for _, v in ipairs(list) do
		sq = sq + sum_sq(v, mean)
	end
	return mean, math.sqrt(sq / n)
end

-- The norm of a tensor, or of all the tensors of a table (a module's
-- several input gradients) together.
local function norm(t)
	local list = is_tensor(t) and {t} or type(t) == "table" and t or {}
	local sq
	for _, v in ipairs(list) do
		sq = (sq or 0) + sum_sq(v, 0)
	end
	return sq and math.sqrt(sq)
end

local function shape_str(t)
	if is_tensor(t) then
		return "{" .. table.concat(t:shape(), ",") .. "}"
	end
	if type(t) == "table" and #t > 0 then
		local parts = {}
		for i, v in ipairs(t) do parts[i] = "{" .. table.concat(v:shape(), ",") .. "}" end
		return table.concat(parts, " ")
	end
	return "-"
end

-- The first line of a module's tostring, without the " {" that opens a
-- container's children.
local function describe(m)
	local s = tostring(m)
	return (s:match("^[^\n]*"):gsub(" {$", ""))
end

local function trace_row(m)
	-- grad_input is an error where the last backward left it out
	-- (input_grad = false): no delta then
	local ok, din = pcall(function() return m.grad_input end)
	local out = m.output
	if not ok then din = nil end
	local mean, std = stats(out)
	local gnorm
	if m.parameters then
		local _, grads = m:parameters()
		if #grads > 0 then
			local sq = 0
			for _, g in ipairs(grads) do
				sq = sq + sum_sq(g, 0)
			end
			gnorm = math.sqrt(sq)
		end
	end
	-- after a forward that no backward has followed, grad_input and the
	-- parameter gradients belong to an earlier batch: they are left out
	local stale = nn.is_module(m) and not m._backward_current
		and (din ~= nil or (gnorm or 0) > 0)
	if stale then
		din, gnorm = nil, nil
	end
	return {layer = describe(m), shape = shape_str(out), mean = mean, std = std,
	        delta = norm(din), grad = gnorm, stale = stale or nil}
end

local Trace = {}
Trace.__index = Trace

local function num(v)
	return v and string.format("%10.3e", v) or string.format("%10s", "-")
end

-- A Graph's trace has one more column: |dL/dy|, the norm of the gradient
-- of the node's output (what the nodes it feeds sent back, added up).
function Trace.__tostring(tr)
	local w, graph = 5, false
	for _, row in ipairs(tr) do
		w = math.max(w, #row.layer)
		graph = graph or row.node ~= nil
	end
	local extra = graph and string.format(" %10s", "|dL/dy|") or ""
	local lines = {string.format("%3s  %-" .. w .. "s  %-12s %10s %10s %10s %10s", "#", "layer",
	                             "output", "mean", "std", "|delta|", "|grad|") .. extra}
	for i, row in ipairs(tr) do
		lines[#lines + 1] = string.format("%3d  %-" .. w .. "s  %-12s %s %s %s %s", i, row.layer,
		                                  row.shape, num(row.mean), num(row.std),
		                                  num(row.delta), num(row.grad))
		                    .. (graph and " " .. num(row.dout) or "")
	end
	if tr.stale then
		lines[#lines + 1] = "note: a forward came after the last backward, so the outputs are "
			.. "that forward's and |delta| and |grad|, which belong to the batch before it, are "
			.. "left out; call trace() right after backward to see both"
	end
	return table.concat(lines, "\n")
end

--- m:trace() -> a table with one row per layer: layer, shape, mean, std
-- (of its output), delta (norm of its grad_input, the layer's delta) and
-- grad (norm of its parameter gradients); tostring prints it as a table.
-- A layer whose last forward came after its last backward has no delta
-- or grad (they belong to another batch): its row has stale = true, and
-- so has the trace, whose tostring then says so.
-- A Graph's rows are its nodes, in node order, each also with node (its
-- number) and dout (the norm of dL/d(its output): the node's delta, summed
-- over the nodes it feeds); g:nodes() gives those tensors themselves.
local function trace(m)
	local bad = nn._self_error(m, "trace")
	if bad then error(bad, 2) end
	local rows = setmetatable({}, Trace)
	if m.name == "Graph" then
		for k, node in ipairs(m:nodes()) do
			local row = trace_row(node.module)
			local from = {}
			for j, v in ipairs(node.inputs) do
				from[j] = type(v) == "number" and "(" .. v .. ")" or v
			end
			row.layer = string.format("(%d) <- %s: %s", k, table.concat(from, ", "), row.layer)
			row.node, row.dout = k, norm(node.delta)
			rows[k] = row
		end
	elseif m.name == "Sequential" then
		for i = 1, #m do
			local child = m:get(i)
			if nn.is_module(child) and child.name == "Sequential" then
				for _, row in ipairs(trace(child)) do
					rows[#rows + 1] = row
				end
			else
				rows[#rows + 1] = trace_row(child)
			end
		end
	else
		rows[1] = trace_row(m)
	end
	for _, row in ipairs(rows) do
		rows.stale = rows.stale or row.stale
	end
	return rows
end

nn._module_methods.trace = trace

-- ---- seeing the model: print(model) and model:summary(shape) ------------------

-- 235146 -> "235,146"
local function grouped(n)
	local digits = string.format("%d", n)
	local head = #digits % 3 == 0 and 3 or #digits % 3
	local out = digits:sub(1, head)
	for i = head + 1, #digits, 3 do
		out = out .. "," .. digits:sub(i, i + 2)
	end
	return out
end

local function numel_of(list)
	local n = 0
	for _, t in ipairs(list) do
		n = n + t:numel()
	end
	return n
end

-- The layers inside a module: the children of a container (Sequential,
-- and any container that keeps its children where #m and m:get(i) find
-- them), none for a layer or a module written in Lua.
local function children(m)
	local list = {}
	if nn.is_module(m) then
		for i = 1, #m do
			list[i] = m:get(i)
		end
	end
	return list
end

-- At most this many parameters are listed on a line of the tree.
local TREE_PARAMS = 4

-- What a node of the tree is: its one-line description, its own
-- parameters as "weight {256,784}, bias {256}", and the number of
-- parameters in it and below it.
local function node_info(m)
	local label, own, count
	if nn.is_module(m) then
		label = m:_describe()
		local names, params = m:_own_parameters()
		local parts = {}
		for i, p in ipairs(params) do
			parts[i] = names[i] .. " " .. shape_str(p)
		end
		own = table.concat(parts, ", ")
		if #parts > TREE_PARAMS then  -- a recurrent stack's many tensors: the first few
			own = table.concat(parts, ", ", 1, TREE_PARAMS - 1) .. ", ... (" .. #parts
				.. " tensors)"
		end
		count = numel_of((m:parameters()))
	else
		-- a module written in Lua: its own tostring or name, its parameters
		-- method's tensors (unnamed)
		local mt = getmetatable(m)
		label = (type(mt) == "table" and rawget(mt, "__tostring")) and tostring(m)
			or (type(m.name) == "string" and m.name) or "custom module (Lua)"
		label = label:match("^[^\n]*")
		local params = type(m.parameters) == "function" and m:parameters() or {}
		local parts = {}
		for i, p in ipairs(params) do
			parts[i] = shape_str(p)
		end
		own, count = table.concat(parts, ", "), numel_of(params)
	end
	return label, own, count
end

-- print(container): a tree, one line per layer with its parameters' shapes
-- and their count, a container's line with the count below it, and the
-- total at the end.  Columns are aligned over the whole tree.  A child is
-- headed as its container says (m:_child_label): "(2)" in a Sequential,
-- "block" in a Residual, "(3) <- (1), input 1" for a Graph's node, whose
-- listing ends with its outputs.
function nn._tree(model)
	local rows = {}
	local function walk(m, indent, head)
		local label, own, count = node_info(m)
		local kids = children(m)
		local row = {text = indent .. head .. label, own = own, count = count}
		rows[#rows + 1] = row
		if #kids > 0 or (nn.is_module(m) and m.name == "Sequential") then
			row.text = row.text .. " {"
			row.own = ""
			for i, child in ipairs(kids) do
				walk(child, indent .. "  ", m:_child_label(i) .. ": ")
			end
			local outputs = m:_outputs_line()
			if outputs then
				rows[#rows + 1] = {text = indent .. "  " .. outputs}
			end
			rows[#rows + 1] = {text = indent .. "}"}
		end
	end
	walk(model, "", "")
	rows[1].count = nil  -- the total has a line of its own
	local w_text, w_own, w_count = 0, 0, 0
	for _, r in ipairs(rows) do
		if r.count then
			w_text = math.max(w_text, utf8.len(r.text))
			w_own = math.max(w_own, #r.own)
			w_count = math.max(w_count, #grouped(r.count))
		end
	end
	local lines = {}
	for _, r in ipairs(rows) do
		local line = r.text
		if r.count and r.count > 0 then
			line = line .. string.rep(" ", w_text - utf8.len(r.text)) .. "  "
				.. r.own .. string.rep(" ", w_own - #r.own) .. "  "
				.. string.format("%" .. w_count .. "s", grouped(r.count))
		end
		lines[#lines + 1] = line
	end
	local total = numel_of((model:parameters()))
	lines[#lines + 1] = string.format("total: %s parameter%s", grouped(total),
	                                  total == 1 and "" or "s")
	return table.concat(lines, "\n")
end

-- Multiply-adds per sample of a layer, from the layer and its output
-- (whose first dimension is the batch).  A dense layer (Linear, Conv2d)
-- does, for each output element, one multiply-add per weight feeding it:
-- weight:numel() / weight:size(1) (nin; cin/groups * kh * kw).  BatchNorm
-- and LayerNorm scale and shift each element: one.  A recurrent layer
-- ({N,T,h} out) multiplies, at each of its T steps, every weight matrix
-- (weight_ih_lk, weight_hh_lk) by a vector once.  An Embedding looks rows
-- up: none.  MultiheadAttention ({N,T,d} out) projects each of its T
-- positions in (3d*d) and out (d*d), and per head scores T*T pairs and
-- weighs T*T value rows over d/heads columns: 4*T*d*d + 2*T*T*d (causal
-- or not: the whole score matrix is computed).  Layers without
-- parameters count none (comparisons, additions and elementwise
-- functions are not multiply-adds).  Another class adds its rule here,
-- by class name; a class with parameters and no rule shows "?".
local function per_sample(out)
	return out:numel() // out:size(1)
end
local function dense_macs(m, out)
	local w = m.weight
	return per_sample(out) * (w:numel() // w:size(1))
end
local function recurrent_macs(m, out)
	local names, params = m:_own_parameters()
	local per_step = 0
	for i, p in ipairs(params) do
		if names[i]:match("^weight_") then
			per_step = per_step + p:numel()
		end
	end
	return out:size(2) * per_step
end
nn._summary_macs = {
	Linear = dense_macs,
	Conv2d = dense_macs,
	BatchNorm = function(_, out) return per_sample(out) end,
	LayerNorm = function(_, out) return per_sample(out) end,
	Embedding = function() return 0 end,
	RNN = recurrent_macs,
	LSTM = recurrent_macs,
	GRU = recurrent_macs,
	MultiheadAttention = function(m, out)
		local t, d = out:size(2), m.d
		return 4 * t * d * d + 2 * t * t * d
	end,
}

local function macs_of(m, out)
	local rule = nn.is_module(m) and nn._summary_macs[m.name]
	if rule and is_tensor(out) then
		return rule(m, out)
	end
	local _, _, count = node_info(m)
	if count == 0 then
		return 0
	end
	return nil  -- unknown
end

local Summary = {}
Summary.__index = Summary

local function count_str(v)
	return v and grouped(v) or "?"
end

function Summary.__tostring(sm)
	local head = {"layer", "output shape", "parameters", "mult-adds"}
	local cells = {head}
	for _, r in ipairs(sm) do
		cells[#cells + 1] = {r.indent .. r.index .. " " .. r.layer, r.shape, count_str(r.params),
		                     count_str(r.macs)}
	end
	local total = {"total", "", count_str(sm.params),
	               (sm.macs_unknown and ">= " or "") .. grouped(sm.macs)}
	cells[#cells + 1] = total
	local w = {0, 0, 0, 0}
	for _, row in ipairs(cells) do
		for j = 1, 4 do
			w[j] = math.max(w[j], utf8.len(row[j]))
		end
	end
	local lines = {}
	for i, row in ipairs(cells) do
		local line = row[1] .. string.rep(" ", w[1] - utf8.len(row[1])) .. "  "
			.. row[2] .. string.rep(" ", w[2] - utf8.len(row[2])) .. "  "
			.. string.rep(" ", w[3] - #row[3]) .. row[3] .. "  "
			.. string.rep(" ", w[4] - #row[4]) .. row[4]
		lines[#lines + 1] = line
		if i == 1 or i == #cells - 1 then
			lines[#lines + 1] = string.rep("-", #line)
		end
	end
	lines[#lines + 1] = string.format("input %s; mult-adds per sample%s", sm.input,
	                                  sm.macs_unknown and " (? not counted)" or "")
	return table.concat(lines, "\n")
end

-- The output shape with the batch written N: "{N,256}"; "{N,4} {N,2}" for
-- the outputs of a module that gives several.
local function batch_shape(t)
	if type(t) == "table" and not is_tensor(t) and #t > 0 then
		local parts = {}
		for i, v in ipairs(t) do parts[i] = batch_shape(v) end
		return table.concat(parts, " ")
	end
	if not is_tensor(t) then
		return "?"
	end
	local shape = t:shape()
	shape[1] = "N"
	return "{" .. table.concat(shape, ",") .. "}"
end

-- The input summary runs on: a tensor as it is, a sample's shape as a
-- batch of ones; at = " (input 2)" names it among several.
local function sample_input(m, shape, at)
	if is_tensor(shape) then
		return shape
	end
	if type(shape) == "table" and #shape > 0 then
		local dims = {1}
		for i, d in ipairs(shape) do
			if math.type(d) ~= "integer" or d < 1 then
				error(string.format("%s:summary: sizes must be integers >= 1, got %s at position %d%s",
				                    m.name, d ~= d and "nan" or tostring(d), i, at), 3)
			end
			dims[#dims + 1] = d
		end
		local made, x = pcall(lunet.ones, table.unpack(dims))
		if not made then
			error(string.format("%s:summary: %s", m.name, tostring(x)), 3)
		end
		return x
	end
	error(string.format("%s:summary: expected the shape of one sample ({784}, {1,28,28}) or "
	                    .. "an input tensor%s, got %s", m.name, at, type(shape) == "table"
	                    and "an empty table" or nn._what(shape)), 3)
end

-- What summary writes after child i of m: what a Graph's node reads
-- (" <- (1), input 1"), the part a child plays in a Residual (" (block)"),
-- nothing in a Sequential.
local function wiring(m, i)
	if not nn.is_module(m) then
		return nil
	end
	local label = m:_child_label(i)
	if m.name == "Graph" then
		return " <- " .. label:match("<%- (.*)$")
	end
	return not label:match("^%(%d+%)$") and " (" .. label .. ")" or nil
end

--- m:summary(shape) -> a table of rows {layer, shape, params, macs} (one per
-- layer, containers and the layers in them, index "3.1" inside the third)
-- with fields params and macs (the totals over the layers); tostring
-- prints it as a table.  shape is one sample's: {784}, {1,28,28} (a batch
-- of one is run through the model in evaluate mode, and the mode restored;
-- the model's outputs are then that batch's), or an input tensor, whose
-- first dimension is the batch; for a model with several inputs, a table
-- of those ({{3}, {2}}).  A Graph's nodes say what they read
-- ("Add <- (1), (2)").  Mult-adds are per sample.
local function summary(m, shape)
	local bad = nn._self_error(m, "summary")
	if bad then error(bad, 2) end
	local x
	local first = type(shape) == "table" and not is_tensor(shape) and shape[1]
	if type(first) == "table" or is_tensor(first) then  -- several inputs: {{3}, {2}} or tensors
		x = {}
		for i, one in ipairs(shape) do
			x[i] = sample_input(m, one, " (input " .. i .. ")")
		end
	else
		x = sample_input(m, shape, "")
	end
	-- evaluate mode for the run, then every module's own mode back
	local modes = {}
	local function save(mod)
		if nn.is_module(mod) then
			modes[#modes + 1] = {mod, mod.training}
		end
		for _, child in ipairs(children(mod)) do
			save(child)
		end
	end
	save(m)
	m:evaluate()
	local ok, err = pcall(m.forward, m, x)
	for _, saved in ipairs(modes) do
		if saved[2] then saved[1]:train() else saved[1]:evaluate() end
	end
	if not ok then
		error(string.format("%s:summary: the model's forward on an input of shape %s failed: %s",
		                    m.name, shape_str(x), tostring(err)), 2)
	end
	local rows = setmetatable({input = batch_shape(x), params = 0, macs = 0}, Summary)
	local function walk(mod, indent, index, from)
		local label, _, count = node_info(mod)
		local kids = children(mod)
		local out = mod.output
		local row = {layer = label .. (from or ""), index = index, indent = indent,
		             shape = batch_shape(out), params = count}
		rows[#rows + 1] = row
		if #kids == 0 then
			row.macs = macs_of(mod, out)
			rows.params = rows.params + count
			if row.macs then
				rows.macs = rows.macs + row.macs
			else
				rows.macs_unknown = true
			end
			return 0 + (row.macs or 0), row.macs == nil
		end
		local macs, unknown = 0, false
		for i, child in ipairs(kids) do
			local cm, cu = walk(child, indent .. "  ", (index == "" and "" or index .. ".") .. i,
			                    wiring(mod, i))
			macs, unknown = macs + cm, unknown or cu
		end
		row.macs = not unknown and macs or nil
		return macs, unknown
	end
	if #children(m) == 0 then
		walk(m, "", "1")
	else
		for i, child in ipairs(children(m)) do
			walk(child, "", tostring(i), wiring(m, i))
		end
	end
	return rows
end

nn._module_methods.summary = summary

-- ---- accuracy ---------------------------------------------------------------------

--- nn.accuracy(model, x, y[, batch=1000]) -> the fraction of the rows of x
-- whose arg-max output equals their class label in y (1-based, a tensor or
-- a table).  Runs in evaluate mode, `batch` rows at a time, and puts the
-- model back in the mode it was in.
function nn.accuracy(model, x, y, batch)
	batch = batch or 1000
	if type(model) ~= "table" and not nn.is_module(model) then
		error("nn.accuracy: expected a model, got " .. nn._what(model), 2)
	end
	if not is_tensor(x) then
		error("nn.accuracy: expected an input tensor, got " .. type(x), 2)
	end
	if math.type(batch) ~= "integer" or batch < 1 then
		error("nn.accuracy: batch must be an integer >= 1, got " .. tostring(batch), 2)
	end
	local n = x:size(1)
	if #y ~= n then
		error(string.format("nn.accuracy: expected %d labels, got %d", n, #y), 2)
	end
	local was_training = model.training ~= false
	model:evaluate()
	local correct = 0
	for start = 1, n, batch do
		local len = math.min(batch, n - start + 1)
		local pred = model:forward(x:narrow(1, start, len)):argmax(2):reshape(-1)
		for i = 1, len do
			if pred[i] == y[start + i - 1] then
				correct = correct + 1
			end
		end
	end
	if was_training then
		model:train()
	end
	return correct / n
end
