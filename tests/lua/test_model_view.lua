-- test_model_view.lua -- seeing a model: print(model), a tree of its layers
-- with their parameters' shapes and counts and the total, and
-- model:summary(shape), a table of layers with output shapes, parameter
-- counts and multiply-adds per sample.  The counts are worked out by hand
-- in the comments; the layout is asserted to the character.
local lunet = lunet or require "lunet"
local nn = lunet.nn

local harness = dofile((arg[0]:match("^(.*)/") or ".") .. "/harness.lua")
local h = harness.new{seed = 77, reseed = true}
local test, check, eq, check_error = h.test, h.check, h.eq, h.check_error

-- Linear(4,8): 4*8 + 8 = 40 parameters, 4*8 = 32 mult-adds per sample;
-- Linear(8,8) without bias: 64 and 64; Linear(8,2): 18 and 16.
local function small()
	return nn.Sequential{nn.Linear(4, 8), nn.ReLU(),
		nn.Sequential{nn.Linear(8, 8, {bias = false}), nn.Tanh()}, nn.Linear(8, 2)}
end

test("print(model): a tree with each layer's parameters and the total", function()
	eq(tostring(small()), table.concat({
		"Sequential {",
		"  (1): Linear(4 -> 8)                weight {8,4}, bias {8}  40",
		"  (2): ReLU",
		"  (3): Sequential {                                          64",
		"    (1): Linear(8 -> 8, bias=false)  weight {8,8}            64",
		"    (2): Tanh",
		"  }",
		"  (4): Linear(8 -> 2)                weight {2,8}, bias {2}  18",
		"}",
		"total: 122 parameters",
	}, "\n"))
	-- a layer alone stays one line; an empty container has no parameters
	eq(tostring(nn.Linear(4, 8)), "Linear(4 -> 8)")
	eq(tostring(nn.Sequential()), "Sequential {\n}\ntotal: 0 parameters")
end)

test("print(model): thousands grouped, convolutions, BatchNorm", function()
	-- Conv2d(1,8,3): 8*9 + 8 = 80; BatchNorm(8): 16; Linear(1568,10): 15,690
	local m = nn.Sequential{nn.Conv2d(1, 8, 3, {padding = 1}), nn.BatchNorm(8), nn.ReLU(),
		nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8 * 14 * 14, 10)}
	eq(tostring(m), table.concat({
		"Sequential {",
		"  (1): Conv2d(1 -> 8, 3x3, stride 1, padding 1)  weight {8,1,3,3}, bias {8}       80",
		"  (2): BatchNorm(8)                              weight {8}, bias {8}             16",
		"  (3): ReLU",
		"  (4): MaxPool2d(2x2, stride 2)",
		"  (5): Flatten",
		"  (6): Linear(1568 -> 10)                        weight {10,1568}, bias {10}  15,690",
		"}",
		"total: 15,786 parameters",
	}, "\n"))
end)

test("print(model): a layer written in Lua takes part", function()
	local w = lunet.ones(3, 2)
	local custom = {
		forward = function(self, x) self.output = x * 2; return self.output end,
		backward = function(_, _, g) return g * 2 end,
		parameters = function() return {w}, {w:clone()} end,
	}
	local named = setmetatable({forward = custom.forward, backward = custom.backward},
		{__tostring = function() return "Double()" end})
	local m = nn.Sequential{nn.Linear(2, 3), custom, named}
	eq(tostring(m), table.concat({
		"Sequential {",
		"  (1): Linear(2 -> 3)       weight {3,2}, bias {3}  9",
		"  (2): custom module (Lua)  {3,2}                   6",
		"  (3): Double()",
		"}",
		"total: 15 parameters",
	}, "\n"))
	-- a parameters method that fails leaves the plain list, not an error
	local bad = {forward = custom.forward, backward = custom.backward,
		parameters = function() error("boom") end}
	local s = tostring(nn.Sequential{nn.ReLU(), bad})
	check(s:find("^Sequential {\n  %(1%): ReLU\n  %(2%): "), s)
end)

test("model:summary(shape): output shapes, parameters and mult-adds per sample", function()
	local m = small()
	local sm = m:summary{4}
	eq(tostring(sm), table.concat({
		"layer                             output shape  parameters  mult-adds",
		"---------------------------------------------------------------------",
		"1 Linear(4 -> 8)                  {N,8}                 40         32",
		"2 ReLU                            {N,8}                  0          0",
		"3 Sequential                      {N,8}                 64         64",
		"  3.1 Linear(8 -> 8, bias=false)  {N,8}                 64         64",
		"  3.2 Tanh                        {N,8}                  0          0",
		"4 Linear(8 -> 2)                  {N,2}                 18         16",
		"---------------------------------------------------------------------",
		"total                                                  122        112",
		"input {N,4}; mult-adds per sample",
	}, "\n"))
	eq(#sm, 6)
	eq(sm.params, 122)
	eq(sm.macs, 112)
	eq(sm[4].index, "3.1")
	eq(sm[4].shape, "{N,8}")
	eq(sm[6].macs, 16)
	-- an input tensor gives the shape (and its first dimension is the batch)
	eq(tostring(m:summary(lunet.randn(5, 4))), tostring(sm))
end)

test("model:summary: convolutions count per output element", function()
	-- Conv2d(1,8,3, padding 1) on 28x28: 8*28*28 outputs of 9 = 56,448;
	-- BatchNorm: 8*28*28 = 6,272; Linear(1568,10): 15,680
	local m = nn.Sequential{nn.Conv2d(1, 8, 3, {padding = 1}), nn.BatchNorm(8), nn.ReLU(),
		nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8 * 14 * 14, 10)}
	local sm = m:summary{1, 28, 28}
	eq(tostring(sm), table.concat({
		"layer                                       output shape  parameters  mult-adds",
		"-------------------------------------------------------------------------------",
		"1 Conv2d(1 -> 8, 3x3, stride 1, padding 1)  {N,8,28,28}           80     56,448",
		"2 BatchNorm(8)                              {N,8,28,28}           16      6,272",
		"3 ReLU                                      {N,8,28,28}            0          0",
		"4 MaxPool2d(2x2, stride 2)                  {N,8,14,14}            0          0",
		"5 Flatten                                   {N,1568}               0          0",
		"6 Linear(1568 -> 10)                        {N,10}            15,690     15,680",
		"-------------------------------------------------------------------------------",
		"total                                                         15,786     78,400",
		"input {N,1,28,28}; mult-adds per sample",
	}, "\n"))
end)

test("model:summary: sequences (Embedding, LSTM, LayerNorm, GRU, RNN)", function()
	-- Embedding(50,8): 400 parameters, a lookup: 0 mult-adds.
	-- LSTM(8,16, 2 layers): (64*8 + 64*16 + 2*64) + (64*16 + 64*16 + 2*64) = 3,840;
	--   each of the 10 steps multiplies the four weight matrices once:
	--   10 * (512 + 1024 + 1024 + 1024) = 35,840.
	-- LayerNorm(16): 32; 16 per token, 160.  Linear(16,50): 850; 10*800 = 8,000.
	local m = nn.Sequential{nn.Embedding(50, 8), nn.LSTM(8, 16, {layers = 2}), nn.LayerNorm(16),
		nn.Linear(16, 50)}
	eq(tostring(m:summary{10}), table.concat({
		"layer                       output shape  parameters  mult-adds",
		"---------------------------------------------------------------",
		"1 Embedding(50, 8)          {N,10,8}             400          0",
		"2 LSTM(8 -> 16, layers=2)   {N,10,16}          3,840     35,840",
		"3 LayerNorm(16, eps=1e-05)  {N,10,16}             32        160",
		"4 Linear(16 -> 50)          {N,10,50}            850      8,000",
		"---------------------------------------------------------------",
		"total                                          5,122     44,000",
		"input {N,10}; mult-adds per sample",
	}, "\n"))
	-- the tree lists the first parameters of a layer that has many
	local line = tostring(m):match("\n  %(2%)[^\n]*")
	eq(line, "\n  (2): LSTM(8 -> 16, layers=2)   weight_ih_l0 {64,8}, weight_hh_l0 {64,16}, "
		.. "bias_ih_l0 {64}, ... (8 tensors)  3,840")
	-- GRU(4,3): 3 gates, 5 steps of 9*4 + 9*3 = 315; RNN(3,2): 5 * (2*3 + 2*2) = 50
	local sm = nn.Sequential{nn.GRU(4, 3), nn.RNN(3, 2)}:summary{5, 4}
	eq(sm[1].macs, 315)
	eq(sm[2].macs, 50)
	eq(sm[1].shape, "{N,5,3}")
	-- MultiheadAttention(8, 2) over T = 6: projections 6 * (24*8 + 8*8) = 1,536,
	-- scores and weighted values 2 * 6*6 * 8 = 576
	sm = nn.Sequential{nn.MultiheadAttention(8, 2, {causal = true})}:summary{6, 8}
	eq(sm[1].macs, 2112)
	eq(sm.params, 4 * 8 * 8 + 4 * 8)
end)

test("model:summary: a layer alone, a layer in Lua, the modes kept", function()
	local sm = nn.Linear(3, 2):summary{3}
	eq(sm[1].layer, "Linear(3 -> 2)")
	eq(sm.params, 8)
	eq(sm.macs, 6)
	-- a Lua layer with parameters and no rule: "?", and the total says ">="
	local w = lunet.ones(3, 3)
	local custom = {
		forward = function(self, x) self.output = x:matmul(w); return self.output end,
		backward = function(_, _, g) return g:matmul(w) end,
		parameters = function() return {w}, {w:clone()} end,
	}
	sm = nn.Sequential{nn.Linear(2, 3), custom}:summary{2}
	eq(sm[2].macs, nil)
	local s = tostring(sm)
	check(s:find("total                                        18       >= 6", 1, true), s)
	check(s:find("input {N,2}; mult-adds per sample (? not counted)", 1, true), s)
	-- evaluate mode for the run, every module's own mode afterwards
	local m = nn.Sequential{nn.Linear(2, 2), nn.Dropout(0.5), nn.BatchNorm(2)}
	m:get(3):evaluate()
	local mean = m:get(3).running_mean:clone()
	m:summary{2}
	check(m.training and m:get(2).training and not m:get(3).training, "modes restored")
	check(m:get(3).running_mean:allclose(mean, 0, 0), "running statistics untouched")
end)

test("model:summary: bad shapes and failing forwards say so", function()
	local m = small()
	check_error(function() return m:summary{5} end, "Sequential:summary: the model's forward on "
		.. "an input of shape {1,5} failed: Sequential:forward: layer 1 (Linear): expected input "
		.. "of shape {N,4}, got {1,5}")
	check_error(function() return m:summary("4") end, "Sequential:summary: expected the shape of "
		.. "one sample ({784}, {1,28,28}) or an input tensor, got string")
	check_error(function() return m:summary{} end, "got an empty table")
	check_error(function() return m:summary{4, 0} end,
		"Sequential:summary: sizes must be integers >= 1, got 0 at position 2")
	check_error(function() return m:summary{2.5} end, "got 2.5 at position 1")
end)

-- A graph: Linear(3,4) on input 1 (16 parameters, 12 mult-adds), Linear(2,4)
-- on input 2 (12 and 8), their sum and its Tanh; two outputs.
local function two_in_two_out()
	local a, b = nn.Input(), nn.Input()
	local s = nn.Add()(nn.Linear(3, 4)(a), nn.Linear(2, 4)(b))
	return nn.Graph({a, b}, {nn.Tanh()(s), s})
end

test("print(model): a graph's nodes say what they read; a Residual's parts are named", function()
	eq(tostring(two_in_two_out()), table.concat({
		"Graph(2 inputs, 4 nodes, 2 outputs) {",
		"  (1) <- input 1: Linear(3 -> 4)  weight {4,3}, bias {4}  16",
		"  (2) <- input 2: Linear(2 -> 4)  weight {4,2}, bias {4}  12",
		"  (3) <- (1), (2): Add",
		"  (4) <- (3): Tanh",
		"  outputs: (4), (3)",
		"}",
		"total: 28 parameters",
	}, "\n"))
	-- Conv2d(2,4,3): 4*2*9 + 4 = 76; BatchNorm(4): 8; the 1x1 projection: 4*2 + 4 = 12
	local r = nn.Residual(nn.Sequential{nn.Conv2d(2, 4, 3, {padding = 1}), nn.BatchNorm(4)},
	                      nn.Conv2d(2, 4, 1))
	local x = nn.Input()
	local g = nn.Graph(x, nn.Flatten()(nn.AdaptiveAvgPool2d(1)(r(x))))
	eq(tostring(nn.Sequential{g, nn.LogSoftmax()}), table.concat({
		"Sequential {",
		"  (1): Graph(1 input, 3 nodes, 1 output) {                                         96",
		"    (1) <- input 1: Residual {                                                     96",
		"      block: Sequential {                                                          84",
		"        (1): Conv2d(2 -> 4, 3x3, stride 1, padding 1)  weight {4,2,3,3}, bias {4}  76",
		"        (2): BatchNorm(4)                              weight {4}, bias {4}         8",
		"      }",
		"      proj: Conv2d(2 -> 4, 1x1, stride 1, padding 0)   weight {4,2,1,1}, bias {4}  12",
		"    }",
		"    (2) <- (1): AdaptiveAvgPool2d(1x1)",
		"    (3) <- (2): Flatten",
		"    outputs: (3)",
		"  }",
		"  (2): LogSoftmax",
		"}",
		"total: 96 parameters",
	}, "\n"))
end)

test("model:summary: a graph's nodes with what they read, several inputs and outputs", function()
	local g = two_in_two_out()
	local sm = g:summary{{3}, {2}}
	eq(tostring(sm), table.concat({
		"layer                        output shape  parameters  mult-adds",
		"----------------------------------------------------------------",
		"1 Linear(3 -> 4) <- input 1  {N,4}                 16         12",
		"2 Linear(2 -> 4) <- input 2  {N,4}                 12          8",
		"3 Add <- (1), (2)            {N,4}                  0          0",
		"4 Tanh <- (3)                {N,4}                  0          0",
		"----------------------------------------------------------------",
		"total                                              28         20",
		"input {N,3} {N,2}; mult-adds per sample",
	}, "\n"))
	eq(tostring(g:summary{lunet.randn(2, 3), lunet.randn(2, 2)}), tostring(sm))
	check_error(function() return g:summary{3} end, "Graph:summary: the model's forward on an "
		.. "input of shape {1,3} failed: Graph:forward: expected 2 inputs, got 1")
	check_error(function() return g:summary{{3}, {0}} end,
		"Graph:summary: sizes must be integers >= 1, got 0 at position 1 (input 2)")
	-- a Residual's block and projection; the graph nested in a Sequential
	-- Conv2d(2,4,3,stride 2) on 8x8 gives 4x4: 16*4 outputs * 18 = 1152;
	-- BatchNorm: 64; the projection 64 * 2 = 128
	local r = nn.Residual(nn.Sequential{nn.Conv2d(2, 4, 3, {padding = 1, stride = 2}),
	                                    nn.BatchNorm(4)}, nn.Conv2d(2, 4, 1, {stride = 2}))
	local x = nn.Input()
	local net = nn.Sequential{nn.Graph(x, nn.Flatten()(nn.AdaptiveAvgPool2d(1)(r(x))))}
	net:train()
	eq(tostring(net:summary{2, 8, 8}), table.concat({
		"layer                                                      output shape  parameters  mult-adds",
		"----------------------------------------------------------------------------------------------",
		"1 Graph(1 input, 3 nodes, 1 output)                        {N,4}                 96      1,344",
		"  1.1 Residual <- input 1                                  {N,4,4,4}             96      1,344",
		"    1.1.1 Sequential (block)                               {N,4,4,4}             84      1,216",
		"      1.1.1.1 Conv2d(2 -> 4, 3x3, stride 2, padding 1)     {N,4,4,4}             76      1,152",
		"      1.1.1.2 BatchNorm(4)                                 {N,4,4,4}              8         64",
		"    1.1.2 Conv2d(2 -> 4, 1x1, stride 2, padding 0) (proj)  {N,4,4,4}             12        128",
		"  1.2 AdaptiveAvgPool2d(1x1) <- (1)                        {N,4,1,1}              0          0",
		"  1.3 Flatten <- (2)                                       {N,4}                  0          0",
		"----------------------------------------------------------------------------------------------",
		"total                                                                            96      1,344",
		"input {N,2,8,8}; mult-adds per sample",
	}, "\n"))
	eq(r.block:get(2).training, true, "the nodes' modes put back")
end)

h.done()
