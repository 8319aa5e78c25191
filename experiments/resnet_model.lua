-- resnet_model.lua -- the residual network of experiments/resnet_fashion.lua,
-- built as an nn.Graph; the benchmark's resnet workload
-- (experiments/bench/lunet_bench.lua) builds it from here too, and
-- experiments/bench/torch_bench.py builds its PyTorch twin.
--
--   {N,1,28,28} -> Conv2d(1->c1, 3x3) BatchNorm ReLU                         28x28
--               -> `blocks` basic blocks of c1 channels                      28x28
--               -> `blocks` basic blocks of c2 channels, the first with stride 2  14x14
--               -> `blocks` basic blocks of c3 channels, the first with stride 2   7x7
--               -> global average pooling, Linear(c3->10)
--
-- A basic block is ReLU(x' + BatchNorm(Conv(ReLU(BatchNorm(Conv(x)))))),
-- where x' is x, or a 1x1 convolution with stride and a BatchNorm (a
-- projection) where the block changes the channel count or the size: the
-- joins are nn.Add nodes of the graph.  The convolutions have no bias (the
-- BatchNorm after each has one).
--
--   local resnet = dofile(dir .. "/resnet_model.lua")
--   local model = resnet.build{c1 = 16, c2 = 32, c3 = 64, blocks = 1}
local lunet = lunet or require "lunet"
local nn = lunet.nn

local M = {}

-- The benchmark's sizes: resnet_fashion.lua's channels with one block per
-- stage (the script trains two by default).
M.defaults = {c1 = 16, c2 = 32, c3 = 64, blocks = 1}

local function conv(cin, cout, k, stride)
	return nn.Conv2d(cin, cout, k, {stride = stride, padding = (k - 1) // 2, bias = false})
end

-- A basic block on node x: cin -> cout channels, the first convolution
-- with `stride`; returns the node of its output.
local function block(x, cin, cout, stride)
	local h = nn.ReLU()(nn.BatchNorm(cout)(conv(cin, cout, 3, stride)(x)))
	h = nn.BatchNorm(cout)(conv(cout, cout, 3, 1)(h))
	local shortcut = x
	if cin ~= cout or stride ~= 1 then
		shortcut = nn.BatchNorm(cout)(conv(cin, cout, 1, stride)(x))
	end
	return nn.ReLU()(nn.Add()(h, shortcut))
end

--- M.build{c1=, c2=, c3=, blocks=} -> the network, an nn.Graph from
-- {N,1,28,28} images to {N,10} logits, in training mode, with lunet's
-- default initialisation (from lunet's generator: seed it first).
function M.build(cfg)
	local input = nn.Input()
	local x = nn.ReLU()(nn.BatchNorm(cfg.c1)(conv(1, cfg.c1, 3, 1)(input)))
	local cin = cfg.c1
	for stage, cout in ipairs{cfg.c1, cfg.c2, cfg.c3} do
		for b = 1, cfg.blocks do
			x = block(x, cin, cout, (stage > 1 and b == 1) and 2 or 1)
			cin = cout
		end
	end
	local logits = nn.Linear(cin, 10)(nn.Flatten()(nn.AdaptiveAvgPool2d(1)(x)))
	return nn.Graph(input, logits)
end

return M
