-- test_graph.lua -- graphs of modules through the Lua surface: nodes,
-- nn.Graph, the joins (Add, Mul, Concat), Residual and AdaptiveAvgPool2d;
-- gradient checks of each, the gradients of a node that feeds several,
-- several inputs and outputs, nesting both ways, every error a graph can
-- meet, training mode, parameters, tostring, trace, input_grad, state
-- names, saving and loading, and the allocations of a training step.
local lunet = lunet or require "lunet"
local nn, optim = lunet.nn, lunet.optim

local harness = dofile((arg[0]:match("^(.*)/") or ".") .. "/harness.lua")
local h = harness.new{seed = 4321, reseed = true}
local test, check, eq, check_error = h.test, h.check, h.eq, h.check_error

local function check_grad(obj, x, opts)
	local ok, err, where = nn.gradcheck(obj, x, opts)
	check(ok, string.format("gradcheck of %s failed: error %.3e at %s", tostring(obj), err,
	                        tostring(where)))
	return err
end

-- The same bits in two tensors.
local function same_bits(a, b, what)
	eq(table.concat(a:shape(), ","), table.concat(b:shape(), ","), (what or "tensor") .. " shape")
	local fa, fb = a:reshape(-1), b:reshape(-1)
	for i = 1, #fa do
		if fa[i] ~= fb[i] then
			error(string.format("%s: element %d differs: %.9g vs %.9g", what or "tensor", i,
			                    fa[i], fb[i]), 2)
		end
	end
end

local function close(a, b, tol, what)
	check(a:allclose(b, tol, tol), (what or "tensors") .. " differ beyond " .. tol)
end

-- x -> Linear -> {Tanh, Linear} -> Add, and the modules, for the diamond tests
local function diamond()
	local x = nn.Input()
	local la, tanh, lb = nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 5)
	local a = la(x)
	local y = nn.Add()(tanh(a), lb(a))
	return nn.Graph(x, y), la, tanh, lb
end

-- ---- nodes -------------------------------------------------------------------------------

test("nodes: nn.Input, calling a module on nodes, node.module and node.inputs", function()
	local x = nn.Input()
	eq(tostring(x), "Input", "tostring of an input")
	local lin = nn.Linear(4, 8)
	local node = lin(x)
	eq(tostring(node), "Node(Linear(4 -> 8))", "tostring of a node")
	check(rawequal(node.module, lin), "node.module is the module")
	eq(#node.inputs, 1, "one input")
	check(rawequal(node.inputs[1], x), "the input node")
	-- m(x) with a tensor is still forward
	h.near(nn.Tanh()(lunet.ones(2, 2)):get(1, 1), math.tanh(1), 1e-6, "m(tensor) is forward")
end)

test("a module may sit at one node only, and takes the nodes it takes", function()
	local x = nn.Input()
	local lin = nn.Linear(2, 2)
	lin(x)
	check_error(function() lin(x) end, "Linear(node): this Linear already sits at a node; a "
	            .. "module keeps one output buffer, so it can sit at one node only: make another")
	check_error(function() nn.Mul()(x) end, "Mul(node): takes 2 nodes, got 1")
	check_error(function() nn.Mul()(x, x, x) end, "Mul(node): takes 2 nodes, got 3")
	check_error(function() nn.Linear(2, 2)(x, x) end, "Linear(node): takes 1 node, got 2")
	check_error(function() nn.Add()(x, lunet.ones(2)) end,
	            "Add(node): argument 2 is not a node (got lunet.Tensor); a module called on nodes "
	            .. "takes nodes only")
	check_error(function() nn.node({}, x) end, "custom module(node): a custom module needs "
	            .. "forward and backward methods")
	check_error(function() nn.node(42, x) end, "nn.node: expected a module")
	check_error(function() nn.Input(1) end, "nn.Input: expected no arguments")
end)

-- ---- joins --------------------------------------------------------------------------------

test("Add sums any number of inputs; backward gives each the gradient", function()
	local m = nn.Add()
	local a, b, c = lunet.tensor{{1, 2}}, lunet.tensor{{10, 20}}, lunet.tensor{{-1, 0.5}}
	h.same(m:forward({a, b, c}):totable(), {{10, 22.5}})
	local g = m:backward({a, b, c}, lunet.tensor{{3, -4}})
	eq(#g, 3, "three gradients")
	for i = 1, 3 do h.same(g[i]:totable(), {{3, -4}}) end
	check(rawequal(g, m.grad_input), "m.grad_input is the same table")
	h.same(m:forward(a):totable(), {{1, 2}}, 0, "one input")
	check_grad(nn.Add(), {lunet.randn(2, 3), lunet.randn(2, 3), lunet.randn(2, 3)})
	check_error(function() m:forward({a, lunet.ones(1, 3)}) end,
	            "Add:forward: expected inputs of one shape, got {1,2} (input 1) and {1,3} (input 2)")
	check_error(function() m:forward({}) end, "Add:forward: expected a table of 1 to")
	check_error(function() m:forward({a, "x"}) end, "Add:forward: input 2: expected a tensor, got string")
	check_error(function() nn.Add(1) end, "nn.Add: expected no arguments")
end)

test("Mul multiplies two inputs", function()
	local m = nn.Mul()
	h.same(m:forward({lunet.tensor{{1, -2, 3}}, lunet.tensor{{4, 5, -6}}}):totable(),
	       {{4, -10, -18}})
	local g = m:backward({lunet.tensor{{1, -2, 3}}, lunet.tensor{{4, 5, -6}}},
	                     lunet.tensor{{1, 2, 3}})
	h.same(g[1]:totable(), {{4, 10, -18}})
	h.same(g[2]:totable(), {{1, -4, 9}})
	check_grad(nn.Mul(), {lunet.randn(3, 4), lunet.randn(3, 4)})
	check_error(function() m:forward(lunet.ones(2)) end, "Mul:forward: expected 2 inputs, got 1")
	check_error(function() m:forward({lunet.ones(2), lunet.ones(2), lunet.ones(2)}) end,
	            "Mul:forward: expected 2 inputs, got 3")
end)

test("Concat joins along a dimension, negative counting from the end", function()
	local a, b = lunet.tensor{{1}, {2}}, lunet.tensor{{3, 4}, {5, 6}}
	for _, d in ipairs{2, -1} do
		local m = nn.Concat(d)
		h.same(m:forward({a, b}):totable(), {{1, 3, 4}, {2, 5, 6}})
		local g = m:backward({a, b}, lunet.tensor{{10, 20, 30}, {40, 50, 60}})
		h.same(g[1]:totable(), {{10}, {40}})
		h.same(g[2]:totable(), {{20, 30}, {50, 60}})
	end
	eq(nn.Concat(-1).dim, -1, "m.dim")
	check_grad(nn.Concat(2), {lunet.randn(2, 1, 3, 2), lunet.randn(2, 2, 3, 2),
	                          lunet.randn(2, 3, 3, 2)})
	check_grad(nn.Concat(1), {lunet.randn(1, 3), lunet.randn(2, 3)})
	check_error(function() nn.Concat(1):forward({a, b}) end,
	            "Concat:forward: inputs do not join along dim 1: {2,1} (input 1) and {2,2} "
	            .. "(input 2) differ in another dimension")
	check_error(function() nn.Concat(3):forward({a, b}) end,
	            "Concat:forward: dim 3 does not exist in input 1 of shape {2,1}")
	check_error(function() nn.Concat(0) end, "nn.Concat: dim must be 1..8 or -8..-1, got 0")
	check_error(function() nn.Concat(1.5) end, "nn.Concat: dim must be an integer, got 1.5")
	check_error(function() nn.Concat() end, "nn.Concat: dim must be an integer")
end)

test("AdaptiveAvgPool2d: global average pooling and adaptive windows", function()
	local x = lunet.tensor{{{{1, 2, 3}, {4, 5, 6}}, {{-1, -2, -3}, {0, 0, 12}}}}
	h.same(nn.AdaptiveAvgPool2d(1):forward(x):totable(), {{{{3.5}}, {{1}}}}, 1e-7)
	local m = nn.AdaptiveAvgPool2d({2, 3})
	local y = m:forward(lunet.arange(9):reshape(1, 1, 3, 3))
	h.same(y:totable(), {{{{2.5, 3.5, 4.5}, {5.5, 6.5, 7.5}}}}, 1e-7)
	check_grad(nn.AdaptiveAvgPool2d(1), lunet.randn(2, 3, 4, 5))
	check_grad(nn.AdaptiveAvgPool2d({2, 3}), lunet.randn(2, 2, 5, 4))
	check_error(function() nn.AdaptiveAvgPool2d(1):forward(lunet.ones(2, 3)) end,
	            "AdaptiveAvgPool2d:forward: expected input of shape {N,C,H,W}, got {2,3}")
	check_error(function() nn.AdaptiveAvgPool2d(0) end,
	            "nn.AdaptiveAvgPool2d: the output size must be >= 1, got 0")
	check_error(function() nn.AdaptiveAvgPool2d({1, 2, 3}) end,
	            "nn.AdaptiveAvgPool2d: size must be a number or {h, w}")
end)

-- ---- Residual --------------------------------------------------------------------------------

test("Residual: x + block(x), with a projection where shapes change, anywhere", function()
	local block = nn.Sequential{nn.Linear(4, 4), nn.Tanh()}
	local r = nn.Residual(block)
	check(rawequal(r.block, block), "r.block")
	eq(r.proj, nil, "no projection")
	local x = lunet.randn(3, 4)
	local y = r:forward(x):clone()
	close(y, block:forward(x) + x, 0, "y = block(x) + x")
	check_grad(nn.Residual(nn.Sequential{nn.Linear(4, 4), nn.Tanh()}), x)
	local rp = nn.Residual(nn.Sequential{nn.Linear(4, 6), nn.Tanh()}, nn.Linear(4, 6))
	eq(rp:forward(x):size(2), 6, "projected width")
	check_grad(rp, x)
	-- inside a Sequential, with a Residual in its block
	local s = nn.Sequential{nn.Linear(4, 4),
	                        nn.Residual(nn.Sequential{nn.Residual(nn.Sequential{nn.Linear(4, 4),
	                                                                            nn.Tanh()}),
	                                                  nn.Linear(4, 4)}),
	                        nn.Sigmoid()}
	check_grad(s, x)
	eq(#s:parameters(), 6, "parameters of the whole tree")
	check_error(function() nn.Residual(nn.Linear(4, 6)):forward(x) end,
	            "Residual:forward: the block's output {3,6} differs from its input {3,4}: give a "
	            .. "projection for the shortcut, Residual(block, proj)")
	check_error(function() nn.Residual(nn.Mul()) end,
	            "nn.Residual: the block (Mul) takes 2 inputs; a Residual gives it one")
	local lin = nn.Linear(4, 4)
	check_error(function() nn.Residual(lin, lin) end, "nn.Residual: the block and the "
	            .. "projection share a module")
	check_error(function() nn.Residual(42) end, "nn.Residual: expected a module")
	check_error(function() nn.Residual(lin, "x") end, "nn.Residual: proj: expected a module")
	-- a custom module as the block
	local custom = {forward = function(self, t) self.y = t * 3; return self.y end,
	                backward = function(self, t, g) return g * 3 end}
	local rc = nn.Residual(custom)
	close(rc:forward(x), x * 4, 1e-6, "x + 3x")
	check_grad(rc, x)
end)

-- ---- graphs ----------------------------------------------------------------------------------

test("a chain as a graph gives the bits of the Sequential of the same modules", function()
	local l1, relu, l2 = nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)
	local x = nn.Input()
	local g = nn.Graph(x, l2(relu(l1(x))))
	local s = nn.Sequential{l1, relu, l2}
	local t, gy = lunet.randn(5, 3), lunet.randn(5, 2)
	local ys = s:forward(t):clone()
	s:zero_grad()
	local gs = s:backward(t, gy):clone()
	local gw = l1.grad_weight:clone()
	g:zero_grad()
	same_bits(g:forward(t), ys, "output")
	same_bits(g:backward(t, gy), gs, "input gradient")
	same_bits(l1.grad_weight, gw, "parameter gradient")
	eq(#g, 3, "#g: module nodes")
	check(rawequal(g:get(2), relu), "g:get(2)")
end)

test("a diamond: the input gradient is the sum of the two branches", function()
	local g, la, tanh, lb = diamond()
	local t, gy = lunet.randn(4, 3), lunet.randn(4, 5)
	g:zero_grad()
	g:forward(t)
	local gx = g:backward(t, gy):clone()
	local gwa = la.grad_weight:clone()
	-- the node's delta is the sum of what its two readers sent back
	local nodes = g:nodes()
	same_bits(nodes[1].delta, tanh.grad_input + lb.grad_input, "delta of the shared node")
	-- each branch alone, with the same modules (Add passes gy to both)
	local sum, wsum
	for _, branch in ipairs{tanh, lb} do
		local x = nn.Input()
		local a = nn.node(nn.Identity(), x)
		local gk = nn.Graph(x, nn.node(nn.Sequential{la, branch}, a))
		gk:zero_grad()
		gk:forward(t)
		local gi = gk:backward(t, gy)
		sum = sum and sum + gi or gi:clone()
		wsum = wsum and wsum + la.grad_weight or la.grad_weight:clone()
	end
	close(gx, sum, 1e-5, "input gradient")
	close(gwa, wsum, 1e-5, "weight gradient of the shared Linear")
	check_grad(diamond(), t)
end)

test("two inputs and two outputs, as tables of tensors in the order given", function()
	local x1, x2 = nn.Input(), nn.Input()
	local l1, l2 = nn.Linear(3, 4), nn.Linear(2, 4)
	local h1, h2 = l1(x1), l2(x2)
	local s = nn.Add()(h1, h2, h2)
	local g = nn.Graph({x1, x2}, {nn.Concat(-1)(nn.Tanh()(s), nn.Mul()(s, h1)), s})
	local t1, t2 = lunet.randn(3, 3), lunet.randn(3, 2)
	local out = g:forward({t1, t2})
	eq(#out, 2, "two outputs")
	check(rawequal(out, g.output), "g.output is the same table")
	local a, b = t1:matmul(l1.weight:t()) + l1.bias, t2:matmul(l2.weight:t()) + l2.bias
	local sv = a + b * 2
	close(out[2], sv, 1e-5, "output 2")
	close(out[1]:narrow(2, 1, 4), sv:tanh(), 1e-5, "output 1, first part")
	close(out[1]:narrow(2, 5, 4), sv * a, 1e-5, "output 1, second part")
	local gx = g:backward({t1, t2}, {lunet.ones(3, 8), lunet.ones(3, 4)})
	eq(#gx, 2, "two input gradients")
	eq(gx[2]:size(2), 2, "shape of input 2's gradient")
	check_grad(g, {t1, t2})
	check_error(function() g:forward(t1) end, "Graph:forward: expected 2 inputs, got 1")
	check_error(function() g:forward({t1, t2, t2}) end, "Graph:forward: expected 2 inputs, got 3")
	check_error(function() g:backward({t1, t2}, lunet.ones(3, 8)) end,
	            "Graph:backward: expected a table of 2 gradients (one per output), got a tensor")
	check_error(function() g:backward({t1, t2}, {lunet.ones(3, 8)}) end,
	            "Graph:backward: expected 2 gradients (one per output), got 1")
	check_error(function() g:backward({t1, t2}, {lunet.ones(3, 8), lunet.ones(3, 5)}) end,
	            "Graph:backward: expected gradient 2 of shape {3,4}, got {3,5}")
	check_error(function() nn.Sequential{g}:forward(t1) end, "expected 2 inputs, got 1")
	local y = nn.Input()
	check_error(function() g(y, y) end, "Graph(node): a Graph with 2 outputs cannot sit at a node")
end)

test("a graph in a Sequential, a Sequential and a graph at nodes of a graph", function()
	local x = nn.Input()
	local a = nn.Sequential{nn.Linear(4, 4), nn.Tanh()}(x)
	local r = nn.Residual(nn.Sequential{nn.Linear(4, 4), nn.Sigmoid()})(a)
	local inner = nn.Graph(x, nn.Add()(a, r, x))
	local s = nn.Sequential{nn.Linear(4, 4), inner, nn.Linear(4, 2)}
	local t = lunet.randn(3, 4)
	check_grad(s, t)
	local y = s:forward(t):clone()
	same_bits(y, s:get(3):forward(inner:forward(s:get(1):forward(t))), "layer by layer")
	-- a two-input graph at a node of another
	local p, q = nn.Input(), nn.Input()
	local sub = nn.Graph({p, q}, nn.Mul()(p, q))
	local z = nn.Input()
	local outer = nn.Graph(z, sub(nn.Linear(4, 3)(z), nn.Linear(4, 3)(z)))
	check_grad(outer, t)
end)

test("errors of a graph, each naming what is wrong", function()
	local x1, x2 = nn.Input(), nn.Input()
	local a = nn.Linear(2, 2)(x1)
	local b = nn.Linear(2, 2)(x2)
	check_error(function() nn.Graph(x1, b) end, "nn.Graph: output 1 depends on no input of the graph")
	check_error(function() nn.Graph(x1, nn.Add()(a, b)) end,
	            "nn.Graph: output 1 depends on an Input that is not among the graph's inputs")
	check_error(function() nn.Graph({x1, x2}, nn.Tanh()(a)) end,
	            "nn.Graph: input 2 is used by no output")
	check_error(function() nn.Graph(a, a) end,
	            "nn.Graph: input 1 is a node of a Linear, not an nn.Input()")
	check_error(function() nn.Graph({x1, x1}, a) end, "nn.Graph: inputs 1 and 2 are the same Input")
	check_error(function() nn.Graph(lunet.ones(2), a) end,
	            "nn.Graph: expected the inputs as a node or a table of nodes, got lunet.Tensor")
	check_error(function() nn.Graph({}, a) end, "nn.Graph: expected at least one input")
	check_error(function() nn.Graph(x1, {a, 3}) end, "nn.Graph: output 2: expected a node, got number")
	-- a module inside the module of another node
	local lin = nn.Linear(2, 2)
	local c = nn.Sequential{lin, nn.Tanh()}(x1)
	check_error(function() nn.Graph(x1, lin(c)) end,
	            "nn.Graph: node 1 (Sequential) and node 2 (Linear) share a Linear module")
	-- shapes that do not join name both nodes and their shapes
	local x = nn.Input()
	local g = nn.Graph(x, nn.Add()(nn.Linear(3, 4)(x), nn.Linear(3, 5)(x)))
	check_error(function() g:forward(lunet.randn(2, 3)) end,
	            "Graph:forward: node 3 (Add) on node 1 (Linear) {2,4} and node 2 (Linear) {2,5}: "
	            .. "expected inputs of one shape, got {2,4} (input 1) and {2,5} (input 2)")
	local g2 = nn.Graph(x, nn.Sequential{nn.Tanh(), nn.Linear(4, 2)}(x))
	check_error(function() g2:forward(lunet.randn(2, 3)) end,
	            "Graph:forward: node 1 (Sequential) on input 1 {2,3}: layer 2 (Linear): expected "
	            .. "input of shape {N,4}, got {2,3}")
	check_error(function() g2:backward(lunet.randn(2, 3), lunet.randn(2, 2)) end,
	            "backward called before forward")
end)

test("parameters in node order, train/evaluate reach every node, zero_grad", function()
	local x = nn.Input()
	local l3 = nn.Linear(2, 2)
	local l1, l2 = nn.Linear(2, 3), nn.Linear(3, 2)
	local h1 = l1(x)
	local d = nn.Dropout(0.5)
	local bn = nn.BatchNorm(2)
	local y = nn.Add()(bn(l2(d(h1))), l3(x))  -- l3 was made first, used last
	local g = nn.Graph(x, y)
	local p, gp = g:parameters()
	eq(#p, 8, "parameters")
	same_bits(p[1], l1.weight, "first: the first node's weight")
	same_bits(p[3], l2.weight, "then l2")
	same_bits(p[5], bn.weight, "then the BatchNorm")
	same_bits(p[7], l3.weight, "last: the last node's")
	g:evaluate()
	eq(d.training, false, "Dropout in evaluate mode")
	eq(bn.training, false, "BatchNorm in evaluate mode")
	g:train()
	eq(d.training, true, "back in training mode")
	local t = lunet.randn(4, 2)
	g:forward(t)
	g:backward(t, lunet.ones(4, 2))
	g:zero_grad()
	for i, gr in ipairs(gp) do eq(gr:abs():sum(), 0, "gradient " .. i .. " zeroed") end
	-- an optimiser over a graph trains every node
	local w = l3.weight:clone()
	local opt = optim.SGD(g, {lr = 0.1})
	g:forward(t)
	g:backward(t, lunet.ones(4, 2))
	opt:step()
	check(not l3.weight:allclose(w, 0, 0), "the last node's weight moved")
end)

test("tostring shows the nodes with their inputs; trace has a row per node", function()
	local g = diamond()
	eq(tostring(g), table.concat({
		"Graph(1 input, 4 nodes, 1 output) {",
		"  (1) <- input 1: Linear(3 -> 5)  weight {5,3}, bias {5}  20",
		"  (2) <- (1): Tanh",
		"  (3) <- (1): Linear(5 -> 5)      weight {5,5}, bias {5}  30",
		"  (4) <- (2), (3): Add",
		"  outputs: (4)",
		"}",
		"total: 50 parameters"}, "\n"), "tostring")
	local t = lunet.randn(4, 3)
	g:forward(t)
	g:backward(t, lunet.ones(4, 5))
	local tr = g:trace()
	eq(#tr, 4, "one row per node")
	eq(tr[4].layer, "(4) <- (2), (3): Add", "row label")
	eq(tr[1].shape, "{4,5}", "output shape")
	for k, row in ipairs(tr) do
		check(row.dout and row.dout > 0, "dL/dy of node " .. k)
		check(row.delta and row.delta > 0, "delta of node " .. k)
	end
	check(tr[1].grad > 0 and tr[2].grad == nil, "parameter gradient norms")
	h.near(tr[2].dout, math.sqrt(5 * 4), 1e-6, "dL/dy of a node the output reads")
	check(tostring(tr):find("|dL/dy|", 1, true), "printed with the graph's column")
	local r = tostring(nn.Residual(nn.Linear(2, 2), nn.Linear(2, 2)))
	eq(r, "Residual {\n  block: Linear(2 -> 2)  weight {2,2}, bias {2}  6\n"
	   .. "  proj: Linear(2 -> 2)   weight {2,2}, bias {2}  6\n}\ntotal: 12 parameters", "Residual")
end)

test("input_grad = false: parameter gradients only, no input gradient", function()
	local g, la = diamond()
	local t, gy = lunet.randn(4, 3), lunet.randn(4, 5)
	g:zero_grad()
	g:forward(t)
	g:backward(t, gy)
	local full = la.grad_weight:clone()
	g.input_grad = false
	g:zero_grad()
	g:forward(t)
	eq(g:backward(t, gy), nil, "backward returns nil")
	same_bits(la.grad_weight, full, "the same parameter gradients")
	check_error(function() return g.grad_input end, "grad_input was not computed")
	check_error(function() return la.grad_input end, "grad_input was not computed")
	check_grad(g, t)
end)

test("state_dict names for graphs and residuals", function()
	local x = nn.Input()
	local h1 = nn.Linear(2, 2)(x)
	local r = nn.Residual(nn.Sequential{nn.Linear(2, 2), nn.Tanh()}, nn.Linear(2, 2))(h1)
	local g = nn.Graph(x, nn.Add()(h1, r))
	local keys = {}
	for k in pairs(g:state_dict()) do keys[#keys + 1] = k end
	table.sort(keys)
	eq(table.concat(keys, " "), "0.bias 0.weight 1.block.0.bias 1.block.0.weight 1.proj.bias "
	   .. "1.proj.weight", "keys")
	local k1 = nn.Linear(2, 2)(x)
	local g2 = nn.Graph(x, nn.Add()(k1, nn.Residual(nn.Sequential{nn.Linear(2, 2), nn.Tanh()},
	                                                nn.Linear(2, 2))(k1)))
	g2:load_state_dict(g:state_dict())
	local t = lunet.randn(3, 2)
	same_bits(g2:forward(t), g:forward(t), "the same outputs after load_state_dict")
end)

test("save and load: the same structure and the same outputs to the bit", function()
	local dir, path = h.tempdir()
	-- a residual CNN with BatchNorm, projection, pooling, several outputs
	local x, x2 = nn.Input(), nn.Input()
	local c = nn.ReLU()(nn.BatchNorm(4)(nn.Conv2d(1, 4, 3, {padding = 1, bias = false})(x)))
	local r = nn.Residual(nn.Sequential{nn.Conv2d(4, 8, 3, {padding = 1, stride = 2}),
	                                    nn.BatchNorm(8)},
	                      nn.Conv2d(4, 8, 1, {stride = 2}))(c)
	local pooled = nn.Flatten()(nn.AdaptiveAvgPool2d(1)(r))
	local y1 = nn.Linear(12, 3)(nn.Concat(2)(pooled, nn.Linear(2, 4)(x2)))
	local g = nn.Graph({x, x2}, {y1, pooled})
	local t1, t2 = lunet.randn(3, 1, 6, 6), lunet.randn(3, 2)
	for _ = 1, 3 do g:forward({t1, t2}) end
	g:evaluate()
	lunet.save(path("g.lnt"), {model = g, note = "graph"})
	local l = lunet.load(path("g.lnt")).model
	eq(tostring(l), tostring(g), "the same structure")
	eq(l.training, false, "evaluate mode kept")
	local a, b = g:forward({t1, t2}), l:forward({t1, t2})
	same_bits(b[1], a[1], "output 1")
	same_bits(b[2], a[2], "output 2")
	-- and it trains on from there, through an optimiser saved with it
	local m = nn.Sequential{nn.Linear(2, 2), nn.Graph(x2, nn.Tanh()(nn.Linear(2, 2)(x2)))}
	local opt = optim.Adam(m, {lr = 0.01})
	lunet.save(path("ck.lnt"), {model = m, opt = opt})
	local ck = lunet.load(path("ck.lnt"))
	same_bits(ck.model:forward(t2), m:forward(t2), "nested graph")
	os.execute("rm -rf '" .. dir .. "'")
end)

test("a graph made of custom modules trains; it cannot be saved", function()
	local x = nn.Input()
	local double = {forward = function(self, t) self.y = t * 2; return self.y end,
	                backward = function(self, t, g) return g * 2 end}
	local g = nn.Graph(x, nn.Add()(nn.node(double, x), nn.Linear(3, 3)(x)))
	local t = lunet.randn(2, 3)
	check_grad(g, t)
	check_error(function() lunet.save(os.tmpname(), g) end,
	            "node 1 is a custom module (External): only built-in modules can be saved")
	check_error(function() nn.node(double, x) end, "already sits at a node")
end)

test("a training step of a residual graph allocates nothing", function()
	local x = nn.Input()
	local c = nn.ReLU()(nn.BatchNorm(4)(nn.Conv2d(1, 4, 3, {padding = 1})(x)))
	local r = nn.Residual(nn.Sequential{nn.Conv2d(4, 4, 3, {padding = 1}), nn.BatchNorm(4)})(c)
	local s = nn.Add()(c, r)
	local y = nn.Linear(8, 3)(nn.Flatten()(nn.AdaptiveAvgPool2d(1)(nn.Concat(2)(s, c))))
	local g = nn.Graph(x, y)
	local loss = nn.CrossEntropyLoss()
	local opt = optim.SGD(g, {lr = 0.01, momentum = 0.9})
	local t, labels = lunet.randn(4, 1, 6, 6), lunet.tensor{1, 2, 3, 1}
	local function step()
		opt:zero_grad()
		local z = g:forward(t)
		loss:forward(z, labels)
		g:backward(t, loss:backward(z, labels))
		opt:step()
	end
	step()
	step()
	collectgarbage("stop")
	local before = lunet.alloc_stats().allocs
	for _ = 1, 3 do step() end
	local after = lunet.alloc_stats().allocs
	collectgarbage("restart")
	eq(after - before, 0, "allocations in three steps")
end)

-- ---- failures change nothing; check_numerics ------------------------------------------

-- x -> Linear -> BatchNorm -> {Residual(Linear, Tanh), Linear} -> Add -> Linear
local function with_state(seed)
	lunet.seed(seed)
	local x = nn.Input()
	local bn = nn.BatchNorm(6)
	local h = bn(nn.Linear(4, 6)(x))
	local r = nn.Residual(nn.Sequential{nn.Linear(6, 6), nn.Tanh()})(h)
	local y = nn.Linear(6, 3)(nn.Add()(r, nn.Linear(6, 6)(h)))
	return nn.Graph(x, y), bn
end

test("a forward that fails at a later node leaves BatchNorm's running statistics as they were",
     function()
	local x = nn.Input()
	local bn = nn.BatchNorm(3)
	local h = bn(nn.Linear(2, 3)(x))
	local g = nn.Graph(x, nn.Add()(h, nn.Linear(2, 4)(x)))
	local mean, var = bn.running_mean:clone(), bn.running_var:clone()
	check_error(function() g:forward(lunet.randn(5, 2)) end, "expected inputs of one shape")
	same_bits(bn.running_mean, mean, "running_mean")
	same_bits(bn.running_var, var, "running_var")
	-- in a Residual: the projection fails after the block ran
	local rbn = nn.BatchNorm(3)
	local r = nn.Residual(nn.Sequential{nn.Linear(2, 3), rbn}, nn.Linear(5, 3))
	local rmean = rbn.running_mean:clone()
	check_error(function() r:forward(lunet.randn(4, 2)) end, "proj (Linear)")
	same_bits(rbn.running_mean, rmean, "the block's running_mean")
end)

test("a backward that runs out of memory adds to no gradient: called again, it counts once",
     function()
	local function live() collectgarbage() collectgarbage() return lunet.alloc_stats().bytes_live end
	local twin = with_state(8)
	local x, gy = lunet.randn(5, 4), lunet.randn(5, 3)
	twin:zero_grad()
	twin:forward(x)
	twin:backward(x, gy)
	local tp = select(2, twin:parameters())
	-- caps a little above the live heap, growing: the first backward needs
	-- its buffers, and runs out at one place or another
	local failed = 0
	for k = 0, 60 do
		local g = with_state(8)
		g:zero_grad()
		g:forward(x)
		lunet.memory_limit(live() + 64 * k)
		local ok, err = pcall(g.backward, g, x, gy)
		lunet.memory_limit(0)
		if not ok then
			failed = failed + 1
			check(tostring(err):find("out of memory", 1, true), "ran out: " .. tostring(err))
			g:backward(x, gy)
		end
		local p = select(2, g:parameters())
		for i = 1, #p do same_bits(p[i], tp[i], "cap " .. k .. ": gradient " .. i) end
	end
	check(failed >= 1, "some backward ran out")
end)

test("check_numerics names the node that made a NaN or an infinity", function()
	local a, b = nn.Input(), nn.Input()
	local lin = nn.Linear(2, 2)
	local g = nn.Graph({a, b}, nn.Mul()(lin(a), b))
	lunet.check_numerics(true)
	local bad = lunet.ones(1, 2)
	bad[1][2] = 0 / 0
	local ok, err = pcall(g.forward, g, {lunet.ones(1, 2), bad})
	check(not ok and err == "Graph:forward: check_numerics: Graph (Graph(2 inputs, 2 nodes, "
	      .. "1 output)): input 2 holds NaN (row 1, column 2), at step 1", tostring(err))
	lin.weight:fill(3e38)
	ok, err = pcall(g.forward, g, {lunet.full({1, 2}, 2), lunet.ones(1, 2)})
	check(not ok and err == "Graph:forward: check_numerics: Graph[1] (Linear(2 -> 2)): forward "
	      .. "produced inf in its output (row 1, column 1), at step 2", tostring(err))
	lin.weight:fill(0)
	lin.bias:fill(0)
	local x = {lunet.ones(1, 2), lunet.full({1, 2}, 3e38)}  -- 0 * 3e38 forward, 10 * 3e38 back
	g:forward(x)
	ok, err = pcall(g.backward, g, x, lunet.full({1, 2}, 10))
	check(not ok and err:find("^Graph:backward: check_numerics: Graph%[2%]: backward "
	      .. "produced inf in the gradient of input 1"), tostring(err))
	lunet.check_numerics(false)
end)

h.done()
