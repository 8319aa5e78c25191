-- test_hostile.lua -- hostile input from a script: wrong types, nil,
-- NaN, infinities, huge and negative sizes, closed tensors and modules,
-- strided views, modules closed or re-entered from inside their own
-- forward, truncated and foreign save files, data iterators whose
-- tensors are closed mid-loop.  Every case must fail with a Lua error
-- that names the function (checked by a fragment of the message) and
-- leave the process sound; the sanitizer build runs this file too.
local lunet = lunet or require "lunet"
local nn, optim, data = lunet.nn, lunet.optim, lunet.data

local SEED = 4242
local harness = dofile((arg[0]:match("^(.*)/") or ".") .. "/harness.lua")
local h = harness.new{seed = SEED, reseed = true}
local test, check, eq, raises = h.test, h.check, h.eq, h.raises
lunet.warnings(false)

local NAN, INF = 0 / 0, 1 / 0
local TMP = os.tmpname()
os.remove(TMP)

local function closed_tensor(...)
	local t = lunet.rand(...)
	t:close()
	return t
end
local function closed(m)
	getmetatable(m).__close(m)
	return m
end
local function write_file(path, s)
	local f = assert(io.open(path, "wb"))
	f:write(s)
	f:close()
end
local function read_file(path)
	local f = assert(io.open(path, "rb"))
	local s = f:read("a")
	f:close()
	return s
end

-- A Lua module for containers: identity unless told otherwise.
local function lua_module(fwd, bwd)
	return {
		forward = fwd or function(_, x) return x end,
		backward = bwd or function(_, _, g) return g end,
	}
end

-- ---- the table of hostile calls ----------------------------------------------------
-- Each entry: {message fragment, function, arguments...}; the fragment
-- always carries the function's name.
local cases = {
	-- constructors: sizes
	{"nn.Linear: nin must be an integer", nn.Linear, nil, 3},
	{"nn.Linear: nin must be an integer", nn.Linear, "3", 3},
	{"nn.Linear: nin must be an integer, got 1.5", nn.Linear, 1.5, 3},
	{"nn.Linear: nin must be an integer, got ", nn.Linear, NAN, 3},
	{"nn.Linear: nin must be an integer, got inf", nn.Linear, INF, 3},
	{"nn.Linear: nin must be >= 1, got 0", nn.Linear, 0, 3},
	{"nn.Linear: nout must be >= 1, got -1", nn.Linear, 3, -1},
	{"nn.Linear: nout must be >= 1, got -9223372036854775808", nn.Linear, 3, math.mininteger},
	{"nn.Linear: shape {1099511627776,1099511627776} has too many elements", nn.Linear,
		1 << 40, 1 << 40},
	{"nn.Linear: options must be a table", nn.Linear, 3, 2, 5},
	{"nn.Linear: option 'bias' must be a boolean, got number", nn.Linear, 3, 2, {bias = 1}},
	{"nn.Conv2d: stride must be an integer >= 1 or a table {h, w} of them, got string", nn.Conv2d,
		1, 1, 3, {stride = "two"}},
	{"nn.Conv2d: stride must be an integer >= 1, got 0", nn.Conv2d, 1, 1, 3, {stride = 0}},
	{"nn.Conv2d: padding must be an integer >= 0, got -1", nn.Conv2d, 1, 1, 3, {padding = -1}},
	{"nn.Conv2d: stride must be an integer >= 1, got inf", nn.Conv2d, 1, 1, 3, {stride = INF}},
	{"nn.Conv2d: padding must be <= 2147483647", nn.Conv2d, 1, 1, 3, {padding = 1 << 40}},
	{"nn.Conv2d: in_channels must be <= 2147483647", nn.Conv2d, 1 << 31, 1, 3},
	{"nn.Conv2d", nn.Conv2d, 1, 1, 0},
	{"nn.MaxPool2d: kernel size must be <= 2147483647", nn.MaxPool2d, 1 << 40},
	{"nn.MaxPool2d: stride must be an integer >= 1, got ", nn.MaxPool2d, 2, NAN},
	{"nn.MaxPool2d", nn.MaxPool2d, -2},
	{"nn.BatchNorm: number of features 4611686018427387904 is too large", nn.BatchNorm, 1 << 62},
	{"nn.BatchNorm", nn.BatchNorm, 0},
	{"nn.Dropout: expected a probability p in [0,1), got 1", nn.Dropout, 1},
	{"nn.Dropout: expected a probability p in [0,1)", nn.Dropout, NAN},
	{"nn.Dropout", nn.Dropout, -0.1},
	{"nn.LeakyReLU: expected a finite slope", nn.LeakyReLU, NAN},
	{"nn.LeakyReLU: expected a finite slope", nn.LeakyReLU, -INF},
	{"nn.OutputLoss", nn.OutputLoss, "identity", "bce"},
	{"nn.OutputLoss", nn.OutputLoss, "softplus", "mse"},
	{"bad argument #1 to 'OutputLoss' (string expected, got table)",
		function() return nn.OutputLoss({}, "mse") end},
	-- option tables and extra arguments: one rule for every constructor
	{"nn.Linear: unknown option 'foo' (options: bias)", nn.Linear, 3, 2, {foo = 1}},
	{"nn.Linear: unknown option [1] (options: bias)", nn.Linear, 3, 2, {true}},
	{"nn.Linear: expected at most 3 arguments, got 4", nn.Linear, 3, 2, {}, 1},
	{"nn.Conv2d: unknown option 'dilations' (options: stride, padding, dilation, groups, bias)",
		nn.Conv2d, 3, 4, 3, {dilations = 2}},
	{"nn.Conv2d: option 'bias' must be a boolean, got number", nn.Conv2d, 3, 4, 3, {bias = 0}},
	{"nn.Conv2d: padding must be a table {h, w} of integers >= 0, got {1, 1, 1}", nn.Conv2d,
		3, 4, 3, {padding = {1, 1, 1}}},
	{"nn.Conv2d: padding must be a table {h, w} of integers >= 0, got {1, -1}", nn.Conv2d,
		3, 4, 3, {padding = {1, -1}}},
	{"nn.Conv2d: padding must be \"same\", \"valid\", an integer >= 0 or a table {h, w} of them, "
		.. "got \"full\"", nn.Conv2d, 3, 4, 3, {padding = "full"}},
	{"nn.Conv2d: padding \"same\" needs stride 1, got stride 2 x 2", nn.Conv2d, 3, 4, 3,
		{padding = "same", stride = 2}},
	{"nn.Conv2d: padding \"same\" needs stride 1, got stride 1 x 2", nn.Conv2d, 3, 4, 3,
		{padding = "same", stride = {1, 2}}},
	{"nn.Conv2d: kernel size must be a table {h, w} of integers >= 1, got {3}", nn.Conv2d,
		3, 4, {3}},
	{"nn.Conv2d: kernel size must be a table {h, w} of integers >= 1, got {3, x}", nn.Conv2d,
		3, 4, {3, "x"}},
	{"nn.Conv2d: kernel size must be an integer >= 1 or a table {h, w} of them, got string",
		nn.Conv2d, 3, 4, "3"},
	{"nn.Conv2d: kernel width must be <= 2147483647", nn.Conv2d, 3, 4, {3, 1 << 40}},
	{"nn.Conv2d: stride must be a table {h, w} of integers >= 1, got {1, ", nn.Conv2d,
		3, 4, 3, {stride = {1, NAN}}},
	{"nn.Conv2d: dilation must be an integer >= 1, got 0", nn.Conv2d, 3, 4, 3, {dilation = 0}},
	{"nn.Conv2d: dilation must be a table {h, w} of integers >= 1, got {2, 0}", nn.Conv2d,
		3, 4, 3, {dilation = {2, 0}}},
	{"nn.Conv2d: option 'groups' must be a number, got table", nn.Conv2d, 3, 4, 3,
		{groups = {1}}},
	{"nn.Conv2d: groups must be an integer >= 1, got 0", nn.Conv2d, 3, 4, 3, {groups = 0}},
	{"nn.Conv2d: groups must be an integer >= 1, got 1.5", nn.Conv2d, 3, 4, 3, {groups = 1.5}},
	{"nn.Conv2d: in_channels (3) and out_channels (4) must both be multiples of groups (3)",
		nn.Conv2d, 3, 4, 3, {groups = 3}},
	{"nn.Conv2d: the kernel's span (dilation * (kernel - 1)) must be <= 2147483647",
		nn.Conv2d, 3, 4, 3, {dilation = 1 << 30}},
	{"nn.Conv2d: padding must be an integer >= 0, got 1.5", nn.Conv2d, 1, 1, 3, {padding = 1.5}},
	{"nn.Conv2d: stride must be an integer >= 1, got ", nn.Conv2d, 1, 1, 3, {stride = NAN}},
	{"nn.Conv2d: stride must be an integer >= 1, got 1e+300", nn.Conv2d, 1, 1, 3, {stride = 1e300}},
	{"nn.Conv2d: expected at most 4 arguments, got 5", nn.Conv2d, 1, 1, 3, {}, {}},
	{"nn.Conv2d: options must be a table, got number", nn.Conv2d, 1, 1, 3, 1},
	{"nn.BatchNorm: unknown option 'epsilon' (options: eps, momentum)", nn.BatchNorm, 3,
		{epsilon = 1e-3}},
	{"nn.BatchNorm: option 'eps' must be a number, got string", nn.BatchNorm, 3, {eps = "x"}},
	{"nn.BatchNorm: eps must be positive, got 0", nn.BatchNorm, 3, {eps = 0}},
	{"nn.BatchNorm: eps must be positive, got ", nn.BatchNorm, 3, {eps = NAN}},
	{"nn.BatchNorm: eps must be positive, got inf", nn.BatchNorm, 3, {eps = INF}},
	{"nn.BatchNorm: momentum must be in [0,1], got 1.5", nn.BatchNorm, 3, {momentum = 1.5}},
	{"nn.BatchNorm: momentum must be in [0,1], got -0.1", nn.BatchNorm, 3, {momentum = -0.1}},
	{"nn.BatchNorm: momentum must be in [0,1], got ", nn.BatchNorm, 3, {momentum = NAN}},
	{"nn.BatchNorm: option 'momentum' must be a number, got boolean", nn.BatchNorm, 3,
		{momentum = true}},
	{"nn.BatchNorm: expected at most 2 arguments, got 3", nn.BatchNorm, 3, {}, 1},
	{"nn.MaxPool2d: options must be a table, got number", nn.MaxPool2d, 2, 2, 1},
	{"nn.MaxPool2d: unknown option 'count_include_pad' (options: padding, ceil_mode)",
		nn.MaxPool2d, 2, {count_include_pad = false}},
	{"nn.MaxPool2d: unknown option 'stride' (options: padding, ceil_mode)", nn.MaxPool2d, 2,
		{stride = 1}},
	{"nn.MaxPool2d: option 'ceil_mode' must be a boolean, got number", nn.MaxPool2d, 2, 2,
		{ceil_mode = 1}},
	{"nn.MaxPool2d: padding must be at most half the window, got padding 2x2 for a 3x3 window",
		nn.MaxPool2d, 3, {padding = 2}},
	{"nn.MaxPool2d: padding must be an integer >= 0 or a table {h, w} of them, got string",
		nn.MaxPool2d, 3, {padding = "same"}},
	{"nn.MaxPool2d: padding must be an integer >= 0, got -1", nn.MaxPool2d, 3, 1,
		{padding = -1}},
	{"nn.MaxPool2d: stride must be a table {h, w} of integers >= 1, got {2, 0}", nn.MaxPool2d,
		2, {2, 0}},
	{"nn.MaxPool2d: kernel size must be a table {h, w} of integers >= 1, got {}", nn.MaxPool2d,
		{}},
	{"nn.AvgPool2d: option 'count_include_pad' must be a boolean, got string", nn.AvgPool2d, 2,
		{count_include_pad = "no"}},
	{"nn.AvgPool2d: unknown option 'divisor_override' (options: padding, ceil_mode, "
		.. "count_include_pad)", nn.AvgPool2d, 2, {divisor_override = 3}},
	{"nn.AvgPool2d: expected at most 3 arguments, got 4", nn.AvgPool2d, 2, 2, {}, 1},
	-- loss options: reduction, and CrossEntropyLoss's and NLLLoss's own
	{"nn.CrossEntropyLoss: unknown option 'smoothing' (options: reduction, weight, ignore_index, "
		.. "label_smoothing)", nn.CrossEntropyLoss, {smoothing = 0.1}},
	{"nn.NLLLoss: unknown option 'label_smoothing' (options: reduction, weight, ignore_index)",
		nn.NLLLoss, {label_smoothing = 0.1}},
	{"nn.MSELoss: unknown option 'weight' (options: reduction)", nn.MSELoss,
		{weight = lunet.ones(3)}},
	{"nn.MSELoss: option 'reduction' must be a string, got number", nn.MSELoss, {reduction = 1}},
	{"nn.BCELoss: reduction must be \"mean\", \"sum\" or \"none\", got \"avg\"", nn.BCELoss,
		{reduction = "avg"}},
	{"nn.CrossEntropyLoss: reduction must be \"mean\", \"sum\" or \"none\", got \"None\"",
		nn.CrossEntropyLoss, {reduction = "None"}},
	{"nn.CrossEntropyLoss: option 'label_smoothing' must be a number, got string",
		nn.CrossEntropyLoss, {label_smoothing = "0.1"}},
	{"nn.CrossEntropyLoss: label_smoothing must be in [0,1], got 1.5", nn.CrossEntropyLoss,
		{label_smoothing = 1.5}},
	{"nn.CrossEntropyLoss: label_smoothing must be in [0,1], got -0.25", nn.CrossEntropyLoss,
		{label_smoothing = -0.25}},
	{"nn.CrossEntropyLoss: label_smoothing must be in [0,1], got nan", nn.CrossEntropyLoss,
		{label_smoothing = NAN}},
	{"nn.CrossEntropyLoss: label_smoothing must be in [0,1], got inf", nn.CrossEntropyLoss,
		{label_smoothing = INF}},
	{"nn.CrossEntropyLoss: option 'weight' must be a tensor or a table of numbers, got string",
		nn.CrossEntropyLoss, {weight = "balanced"}},
	{"nn.NLLLoss: option 'weight' must be a tensor or a table of numbers, got boolean",
		nn.NLLLoss, {weight = true}},
	{"nn.CrossEntropyLoss: weight must be a 1-D tensor of one weight per class, got shape {2,2}",
		nn.CrossEntropyLoss, {weight = lunet.ones(2, 2)}},
	{"nn.CrossEntropyLoss: weight must be a 1-D tensor of one weight per class, got shape {1,3}",
		nn.CrossEntropyLoss, {weight = {{1, 2, 3}}}},
	{"nn.CrossEntropyLoss: weight has NaN at position 2", nn.CrossEntropyLoss,
		{weight = {1, NAN, 1}}},
	{"nn.NLLLoss: weight has inf at position 1", nn.NLLLoss, {weight = lunet.tensor{INF, 1}}},
	{"nn.CrossEntropyLoss: weight -2 at position 3 is negative; class weights must be >= 0",
		nn.CrossEntropyLoss, {weight = {1, 1, -2}}},
	{"nn.CrossEntropyLoss", nn.CrossEntropyLoss, {weight = {{1}, {1, 2}}}},
	{"nn.CrossEntropyLoss", nn.CrossEntropyLoss, {weight = {"a"}}},
	{"nn.CrossEntropyLoss", nn.CrossEntropyLoss, {weight = closed_tensor(3)}},
	{"nn.CrossEntropyLoss: option 'ignore_index' must be an integer, got 1.5",
		nn.CrossEntropyLoss, {ignore_index = 1.5}},
	{"nn.NLLLoss: option 'ignore_index' must be an integer, got nan", nn.NLLLoss,
		{ignore_index = NAN}},
	{"nn.CrossEntropyLoss: option 'ignore_index' must be a number, got string",
		nn.CrossEntropyLoss, {ignore_index = "pad"}},
	{"CrossEntropyLoss:forward: weight has 2 entries, but the input has 3 classes", function()
		return nn.CrossEntropyLoss{weight = {1, 2}}:forward(lunet.rand(2, 3), {1, 2}) end},
	{"NLLLoss:backward: weight has 4 entries, but the input has 3 classes", function()
		return nn.NLLLoss{weight = lunet.ones(4)}:backward(lunet.rand(2, 3), {1, 2}) end},
	{"CrossEntropyLoss:forward: ignore_index needs class labels as the target, got probability "
		.. "rows of shape {2,3}", function()
		return nn.CrossEntropyLoss{ignore_index = 0}:forward(lunet.rand(2, 3), lunet.rand(2, 3))
	end},
	{"CrossEntropyLoss:forward: label -1 at position 2 is out of range 1..3", function()
		return nn.CrossEntropyLoss{ignore_index = 0}:forward(lunet.rand(2, 3), {0, -1}) end},
	-- reduction "none": the gradient of the per-sample losses
	{"CrossEntropyLoss:backward: a gradient for the per-sample losses needs reduction=\"none\" "
		.. "(this loss has reduction=\"mean\")", function()
		return nn.CrossEntropyLoss():backward(lunet.rand(2, 3), {1, 2}, lunet.ones(2)) end},
	{"MSELoss:backward: expected a gradient of the per-sample losses of shape {2}, got {2,3}",
		function()
			local c = nn.MSELoss{reduction = "none"}
			return c:backward(lunet.rand(2, 3), lunet.rand(2, 3), lunet.ones(2, 3))
		end},
	{"BCEWithLogitsLoss:backward: gradient of the per-sample losses has NaN at position 1",
		function()
			local c = nn.BCEWithLogitsLoss{reduction = "none"}
			return c:backward(lunet.rand(2, 3), lunet.rand(2, 3), lunet.tensor{NAN, 1})
		end},
	{"NLLLoss:backward: expected the gradient of the per-sample losses as a lunet.Tensor, got table", function()
		local c = nn.NLLLoss{reduction = "none"}
		return c:backward(lunet.rand(2, 3), {1, 2}, {1, 1})
	end},
	{"OutputLoss:backward: OutputLoss(softmax, cross_entropy): expected a gradient of the "
		.. "per-sample losses of shape {2}, got {3}", function()
		local c = nn.OutputLoss("softmax", "cross_entropy", {reduction = "none"})
		return c:backward(lunet.rand(2, 3), {1, 2}, lunet.ones(3))
	end},
	-- mistakes that get a hint
	{"BCELoss:forward: input 2.5 at row 1, column 2 is outside [0,1]; BCELoss takes "
		.. "probabilities: for logits (any real number) use BCEWithLogitsLoss, or put a Sigmoid "
		.. "before BCELoss", function()
		return nn.BCELoss():forward(lunet.tensor{{0.5, 2.5}}, lunet.tensor{{1, 0}}) end},
	{"module:forward: got lunet.Tensor instead of the module: call methods with a colon, "
		.. "m:forward(x), not m.forward(x)", function()
		local m = nn.Linear(3, 2)
		return m.forward(lunet.rand(2, 3))
	end},
	{"module:backward: got lunet.Tensor instead of the module: call methods with a colon, "
		.. "m:backward(x, gy), not m.backward(x, gy)", function()
		local m = nn.Linear(3, 2)
		return m.backward(lunet.rand(2, 3), lunet.rand(2, 2))
	end},
	{"module:zero_grad: got no value instead of the module: call methods with a colon, "
		.. "m:zero_grad(), not m.zero_grad()", function() return nn.Linear(3, 2).zero_grad() end},
	{"module:parameters: got nil instead of the module", function()
		return nn.Linear(3, 2).parameters(nil) end},
	{"loss:forward: got lunet.Tensor instead of the loss: call methods with a colon, "
		.. "c:forward(x, y), not c.forward(x, y)", function()
		local c = nn.CrossEntropyLoss()
		return c.forward(lunet.rand(2, 3), {1, 2})
	end},
	{"loss:backward: got lunet.Tensor instead of the loss", function()
		local c = nn.MSELoss()
		return c.backward(lunet.rand(2, 3), lunet.rand(2, 3))
	end},
	{"optimizer:step: got no value instead of the optimizer: call methods with a colon, "
		.. "opt:step(), not opt.step()", function()
		local opt = optim.SGD(nn.Linear(2, 2), {lr = 0.1})
		return opt.step()
	end},
	{"optimizer:zero_grad: got lunet.Tensor instead of the optimizer", function()
		local opt = optim.Adam(nn.Linear(2, 2), {lr = 0.1})
		return opt.zero_grad(lunet.rand(2))
	end},
	{"module:load_state_dict: got table instead of the module: call methods with a colon, "
		.. "m:load_state_dict(), not m.load_state_dict()", function()
		local m = nn.Linear(2, 2)
		return m.load_state_dict(m:state_dict())
	end},
	{"Tensor:sum: expected a lunet.Tensor, got no value (call methods with a colon: "
		.. "t:sum(...), not t.sum(...))", function()
		local t = lunet.rand(2)
		return t.sum()
	end},
	{"Tensor:reshape: expected a lunet.Tensor, got number (call methods with a colon: "
		.. "t:reshape(...), not t.reshape(...))", function()
		local t = lunet.rand(2)
		return t.reshape(2, 1)
	end},
	{"nn.Sequential (item 2): expected a module or a table with forward/backward, got nn.ReLU, "
		.. "the constructor, where a module belongs: call it, nn.ReLU()", function()
		return nn.Sequential{nn.Linear(3, 2), nn.ReLU}
	end},
	{"nn.Sequential: takes one table of modules, as in nn.Sequential{m1, m2, ...}; got 2 "
		.. "arguments, the first a lunet.nn.Linear", function()
		return nn.Sequential(nn.Linear(3, 2), nn.ReLU())
	end},
	{"nn.Sequential: takes one table of modules, as in nn.Sequential{m1, m2, ...}; got 1 "
		.. "argument, the first a table", function()
		return nn.Sequential({forward = function(_, x) return x end})
	end},
	{"nn.Sequential (item 1): expected a module or a table with forward/backward, got "
		.. "nn.Linear, the constructor, where a module belongs: call it, nn.Linear(...)",
		function() return nn.Sequential{nn.Linear} end},
	{"Sequential:add: expected a module or a table with forward/backward, got nn.Softmax, the "
		.. "constructor, where a module belongs: call it, nn.Softmax()", function()
		return nn.Sequential():add(nn.Softmax)
	end},
	{"Sequential:add: expected a module or a table with forward/backward, got nn.LeakyReLU, the "
		.. "constructor, where a module belongs: call it, nn.LeakyReLU()", function()
		return nn.Sequential():add(nn.LeakyReLU)
	end},
	{"optim.SGD: expected a model or a table of parameter tensors, got nn.Conv2d, the "
		.. "constructor, where a module belongs: call it, nn.Conv2d(...)", function()
		return optim.SGD(nn.Conv2d, {lr = 0.1})
	end},
	{"nn.gradcheck: expected a module, a loss or a table with forward/backward, got nn.Tanh, "
		.. "the constructor, where a module belongs: call it, nn.Tanh()", nn.gradcheck, nn.Tanh,
		lunet.rand(2, 2)},
	{"nn.gradcheck: expected a module, a loss or a table with forward/backward, got "
		.. "nn.MSELoss, the constructor, where a module belongs: call it, nn.MSELoss(...)",
		nn.gradcheck, nn.MSELoss, lunet.rand(2, 2), lunet.rand(2, 2)},
	{"nn.accuracy: expected a model, got nn.Identity, the constructor, where a module belongs: "
		.. "call it, nn.Identity()", nn.accuracy, nn.Identity, lunet.rand(2, 2), {1, 2}},
	{"nn.gradcheck: expected a module, a loss or a table with forward/backward, got function",
		nn.gradcheck, print, lunet.rand(2, 2)},
	-- seeing the model
	{"Sequential:summary: expected the shape of one sample ({784}, {1,28,28}) or an input "
		.. "tensor, got string", function() return nn.Sequential{nn.ReLU()}:summary("4") end},
	{"Linear:summary: expected the shape of one sample ({784}, {1,28,28}) or an input tensor, "
		.. "got nil", function() return nn.Linear(2, 2):summary() end},
	{"Linear:summary: expected the shape of one sample ({784}, {1,28,28}) or an input tensor, "
		.. "got an empty table", function() return nn.Linear(2, 2):summary({}) end},
	{"Linear:summary: sizes must be integers >= 1, got -3 at position 1",
		function() return nn.Linear(2, 2):summary{-3} end},
	{"Linear:summary: sizes must be integers >= 1, got nan at position 2",
		function() return nn.Linear(2, 2):summary{2, NAN} end},
	{"Linear:summary: sizes must be integers >= 1, got 1.5 at position 1",
		function() return nn.Linear(2, 2):summary{1.5} end},
	{"Linear:summary: lunet.ones: shape {1,1099511627776,1099511627776} has too many elements",
		function() return nn.Linear(2, 2):summary{1 << 40, 1 << 40} end},
	{"Linear:summary: the model's forward on an input of shape {1,3} failed: Linear:forward: "
		.. "expected input of shape {N,2}, got {1,3}", function()
		return nn.Linear(2, 2):summary{3} end},
	{"Linear:summary: module is closed", function()
		return closed(nn.Linear(2, 2)):summary{2} end},
	{"Linear:trace: module is closed", function() return closed(nn.Linear(2, 2)):trace() end},
	{"module:summary: got table instead of the module: call methods with a colon, "
		.. "m:summary(shape), not m.summary(shape)", function()
		local m = nn.Linear(2, 2)
		return m.summary({2})
	end},
	{"module:trace: got nil instead of the module: call methods with a colon, m:trace(), "
		.. "not m.trace()", function()
		local m = nn.Linear(2, 2)
		return m.trace()
	end},
	{"nn.BCEWithLogitsLoss: expected at most 1 argument, got 2", nn.BCEWithLogitsLoss, {}, 1},
	{"nn.BCEWithLogitsLoss: options must be a table, got string", nn.BCEWithLogitsLoss, "sum"},
	{"nn.OutputLoss: unknown option 'eps' (options: reduction)", nn.OutputLoss, "sigmoid", "bce",
		{eps = 1}},
	{"nn.OutputLoss: expected at most 3 arguments, got 4", nn.OutputLoss, "sigmoid", "bce", {}, 1},
	{"nn.Dropout: expected at most 1 argument, got 2", nn.Dropout, 0.5, {}},
	{"nn.LeakyReLU: expected at most 1 argument, got 2", nn.LeakyReLU, 0.1, 0.2},
	{"nn.LeakyReLU: slope must be a number, got string", nn.LeakyReLU, "0.1"},
	{"nn.ReLU: expected no arguments, got 1", nn.ReLU, 1},
	{"nn.Sigmoid: expected no arguments, got 1", nn.Sigmoid, {}},
	{"nn.Softmax: expected at most 1 argument, got 2", nn.Softmax, 2, 3},
	{"nn.Softmax: dim must be an integer, got 1.5", nn.Softmax, 1.5},
	{"nn.Softmax: dim must be an integer, got string", nn.Softmax, "2"},
	{"nn.LogSoftmax: dim must be an integer, got nan", nn.LogSoftmax, NAN},
	{"nn.LogSoftmax: dim must not be 0 (dimensions count from 1; -1 is the last)", nn.LogSoftmax, 0},
	{"nn.Softmax: expected dim to be an integer in [-8, 8], got 9", nn.Softmax, 9},
	{"nn.Softmax: expected dim to be an integer in [-8, 8], got -9.22337e+18", nn.Softmax,
		math.mininteger},
	{"Softmax:forward: dim 3 does not exist in an input of shape {2,3} (expected 1..2 or -2..-1)",
		function() return nn.Softmax(3):forward(lunet.rand(2, 3)) end},
	{"LogSoftmax:forward: dim -3 does not exist in an input of shape {2,3} (expected 1..2 or -2..-1)",
		function() return nn.LogSoftmax(-3):forward(lunet.rand(2, 3)) end},
	{"nn.Flatten: expected no arguments, got 1", nn.Flatten, 1},
	{"nn.Sequential: takes one table of modules, as in nn.Sequential{m1, m2, ...}; got 2 arguments", nn.Sequential, {}, nn.ReLU()},
	{"nn.init.uniform: expected at most 3 arguments, got 4", nn.init.uniform, lunet.rand(2, 2), 0, 1, 2},
	{"nn.init.xavier: expected at most 1 argument, got 2", nn.init.xavier, lunet.rand(2, 2), 1},
	{"nn.gradcheck: unknown option 'step' (options: eps, tol)", nn.gradcheck, nn.ReLU(),
		lunet.rand(2, 2), {step = 1e-3}},
	{"data.batches: option 'shuffle' must be a boolean, got number", data.batches,
		lunet.rand(3, 3), 2, {shuffle = 1}},
	{"data.batches: expected nothing after the options, got 1 more argument(s)", data.batches,
		lunet.rand(3, 3), lunet.rand(3), 2, {}, 5},
	{"data.batches: options must be a table, got string", data.batches, lunet.rand(3, 3), 2, "x"},
	{"data.csv: unknown option 'separator' (options: header, label, sep)", data.csv, "x.csv",
		{separator = ";"}},
	{"data.csv: option 'header' must be a boolean, got string", data.csv, "x.csv",
		{header = "yes"}},
	{"data.csv: expected at most 2 arguments, got 3", data.csv, "x.csv", {}, 1},
	{"nn.Sequential", nn.Sequential, {5}},
	{"nn.Sequential", nn.Sequential, {{forward = 1}}},
	{"nn.Sequential", nn.Sequential, {function() end}},

	-- module methods: shapes, closed and strided inputs
	{"Linear:forward: expected input of shape {N,3}, got {2,4}",
		function() return nn.Linear(3, 2):forward(lunet.rand(2, 4)) end},
	{"Linear:forward", function() return nn.Linear(3, 2):forward(lunet.rand(3)) end},
	{"Linear:forward: the input is a closed tensor",
		function() return nn.Linear(3, 2):forward(closed_tensor(2, 3)) end},
	{"Linear:forward: expected the input as a lunet.Tensor, got table",
		function() return nn.Linear(3, 2):forward({{1, 2, 3}}) end},
	{"Linear:forward: expected the input as a lunet.Tensor, got nil",
		function() return nn.Linear(3, 2):forward(nil) end},
	{"Linear:backward: backward called before forward",
		function() return nn.Linear(3, 2):backward(lunet.rand(2, 3), lunet.rand(2, 2)) end},
	{"Linear:backward: expected gradient of shape {2,2}, got {3,2}", function()
		local m = nn.Linear(3, 2)
		m:forward(lunet.rand(2, 3))
		return m:backward(lunet.rand(2, 3), lunet.rand(3, 2))
	end},
	{"Linear:backward", function()
		local m = nn.Linear(3, 2)
		m:forward(lunet.rand(2, 3))
		return m:backward(lunet.rand(5, 3), lunet.rand(2, 2))
	end},
	{"Linear:backward: the gradient is a closed tensor", function()
		local m = nn.Linear(3, 2)
		m:forward(lunet.rand(2, 3))
		return m:backward(lunet.rand(2, 3), closed_tensor(2, 2))
	end},
	-- every class checks backward's input the same way, in one place
	{"MaxPool2d:backward: expected the input of the last forward, of shape {2,1,4,4}, got {2,1,6,6}",
		function()
			local m = nn.MaxPool2d(2)
			m:forward(lunet.rand(2, 1, 4, 4))
			return m:backward(lunet.rand(2, 1, 6, 6), lunet.rand(2, 1, 2, 2))
		end},
	{"Conv2d:backward: backward called before forward", function()
		local m = nn.Conv2d(1, 2, 3)
		m:forward(lunet.rand(2, 1, 5, 5))
		pcall(m.forward, m, lunet.rand(2, 2, 5, 5))  -- fails: nothing left to follow
		return m:backward(lunet.rand(2, 1, 5, 5), lunet.rand(2, 2, 3, 3))
	end},
	{"Linear:forward: module is closed",
		function() return closed(nn.Linear(3, 2)):forward(lunet.rand(2, 3)) end},
	{"Linear:backward: module is closed", function()
		return closed(nn.Linear(3, 2)):backward(lunet.rand(2, 3), lunet.rand(2, 2)) end},
	{"Linear:parameters: module is closed", function() return closed(nn.Linear(3, 2)):parameters() end},
	{"Linear:zero_grad: module is closed", function() return closed(nn.Linear(3, 2)):zero_grad() end},
	{"ReLU:train: module is closed", function() return closed(nn.ReLU()):train() end},
	{"ReLU:evaluate: module is closed", function() return closed(nn.ReLU()):evaluate() end},
	{"Sequential:__len: module is closed", function() return #closed(nn.Sequential()) end},
	{"Linear:__index: module is closed", function() return closed(nn.Linear(3, 2)).weight end},
	{"Linear:__newindex: module is closed", function() closed(nn.Linear(3, 2)).x = 1 end},
	{"Linear: cannot replace 'weight'", function() nn.Linear(3, 2).weight = lunet.rand(2, 3) end},
	{"Linear: 'output' is read-only", function() nn.Linear(3, 2).output = lunet.rand(2, 2) end},
	{"Sequential:add: the Linear to add is closed",
		function() return nn.Sequential():add(closed(nn.Linear(3, 2))) end},
	{"Sequential:add: expected a module or a table with forward/backward, got number",
		function() return nn.Sequential():add(5) end},
	{"Sequential:add: a custom module needs forward and backward methods",
		function() return nn.Sequential():add({forward = function() end}) end},
	{"Linear:add: only a Sequential has add", function() return nn.Linear(3, 2):add(nn.ReLU()) end},
	{"Sequential:add: cannot add a Sequential to itself",
		function() local s = nn.Sequential(); return s:add(s) end},
	{"Sequential:add: cannot add a container to itself", function()
		local a = nn.Sequential{nn.ReLU()}
		local b = nn.Sequential{a}
		return a:add(b)
	end},
	{"Sequential:add", function()
		local r = nn.ReLU()
		return nn.Sequential{r}:add(r)
	end},
	{"Sequential:get: index 1099511627776 out of range 1..1",
		function() return nn.Sequential{nn.ReLU()}:get(1 << 40) end},
	{"Sequential:get: index 0 out of range", function() return nn.Sequential{nn.ReLU()}:get(0) end},
	{"Sequential:forward: has no layers", function() return nn.Sequential():forward(lunet.rand(2, 3)) end},
	{"Conv2d:forward", function() return nn.Conv2d(1, 2, 3):forward(lunet.rand(2, 3)) end},
	{"Conv2d:forward", function() return nn.Conv2d(1, 2, 3):forward(lunet.rand(1, 2, 5, 5)) end},
	{"Conv2d:forward", function() return nn.Conv2d(1, 2, 7):forward(lunet.rand(1, 1, 5, 5)) end},
	{"MaxPool2d:forward", function() return nn.MaxPool2d(4):forward(lunet.rand(1, 1, 3, 3)) end},
	{"MaxPool2d:forward", function() return nn.MaxPool2d(2):forward(lunet.rand(4, 4)) end},
	{"BatchNorm:forward", function() return nn.BatchNorm(3):forward(lunet.rand(2, 4)) end},
	{"Linear:forward: expected input of shape {N,3}, got {2,4}",
		function() return nn.Linear(3, 2):forward(lunet.rand(4, 3):transpose():narrow(1, 1, 2)) end},

	-- custom Lua modules in a Sequential
	{"Sequential:forward: layer 2 (External): boom", function()
		local s = nn.Sequential{nn.ReLU(), lua_module(function() error("boom", 0) end)}
		return s:forward(lunet.rand(2, 3))
	end},
	{"Sequential:forward: layer 1 (External): custom module's forward returned number", function()
		return nn.Sequential{lua_module(function() return 5 end)}:forward(lunet.rand(2, 3))
	end},
	{"Sequential:forward: layer 1 (External): custom module's forward returned nil", function()
		return nn.Sequential{lua_module(function() end)}:forward(lunet.rand(2, 3))
	end},
	{"Sequential:forward: layer 2 (Linear)", function()
		local s = nn.Sequential{lua_module(function() return lunet.rand(7, 7) end), nn.Linear(3, 2)}
		return s:forward(lunet.rand(2, 3))
	end},
	{"Sequential:forward: layer 1 (External)", function()
		local s = nn.Sequential{lua_module(function() error({}) end)}
		return s:forward(lunet.rand(2, 3))
	end},
	{"Sequential:forward: layer 1 (External)", function()
		local s = nn.Sequential{lua_module(function(_, x) coroutine.yield(x) end)}
		return coroutine.wrap(function() return s:forward(lunet.rand(2, 3)) end)()
	end},
	{"Sequential:backward: layer 2 (External): backward returned a gradient of shape {2,2} for an input of shape {2,3}",
		function()
			local s = nn.Sequential{nn.ReLU(), lua_module(nil, function() return lunet.rand(2, 2) end)}
			local x = lunet.rand(2, 3)
			s:forward(x)
			return s:backward(x, lunet.rand(2, 3))
		end},
	{"Sequential:backward: layer 1 (External): custom module's backward returned string", function()
		local s = nn.Sequential{lua_module(nil, function() return "g" end)}
		local x = lunet.rand(2, 3)
		s:forward(x)
		return s:backward(x, lunet.rand(2, 3))
	end},
	{"Sequential:forward: the module was closed during its own forward", function()
		local s
		s = nn.Sequential{nn.Linear(3, 3), lua_module(function(_, x)
			closed(s)
			collectgarbage()
			return x
		end), nn.ReLU()}
		return s:forward(lunet.rand(2, 3))
	end},
	{"Sequential:backward: the module was closed during its own backward", function()
		local s
		s = nn.Sequential{nn.Linear(3, 3), lua_module(nil, function(_, _, g)
			closed(s)
			collectgarbage()
			return g
		end), nn.ReLU()}
		local x = lunet.rand(2, 3)
		s:forward(x)
		return s:backward(x, lunet.rand(2, 3))
	end},

	-- losses
	{"MSELoss:forward", function() return nn.MSELoss():forward(lunet.rand(2, 3), lunet.rand(3, 2)) end},
	{"MSELoss:forward", function() return nn.MSELoss():forward(lunet.rand(2, 3), closed_tensor(2, 3)) end},
	{"MSELoss:forward: the input is a closed tensor",
		function() return nn.MSELoss():forward(closed_tensor(2, 3), lunet.rand(2, 3)) end},
	{"MSELoss:forward", function()
		return nn.MSELoss():forward(lunet.full({2, 3}, NAN), lunet.rand(2, 3)) end},
	{"CrossEntropyLoss:forward", function()
		return nn.CrossEntropyLoss():forward(lunet.rand(2, 3), {"1", "2"}) end},
	{"CrossEntropyLoss:forward", function()
		return nn.CrossEntropyLoss():forward(lunet.rand(2, 3), {1, 4}) end},
	{"CrossEntropyLoss:forward", function()
		return nn.CrossEntropyLoss():forward(lunet.rand(2, 3), {0, 1}) end},
	{"CrossEntropyLoss:forward", function()
		return nn.CrossEntropyLoss():forward(lunet.rand(2, 3), {1.5, 2}) end},
	{"CrossEntropyLoss:forward", function()
		return nn.CrossEntropyLoss():forward(lunet.rand(2, 3), {1, 2, 3}) end},
	{"CrossEntropyLoss:forward", function()
		return nn.CrossEntropyLoss():forward(lunet.rand(2, 3), {NAN, 1}) end},
	{"CrossEntropyLoss:forward", function()
		return nn.CrossEntropyLoss():forward(lunet.rand(2, 3), lunet.rand(3, 2)) end},
	{"CrossEntropyLoss:forward", function()
		return nn.CrossEntropyLoss():forward(lunet.rand(2, 3), lunet.tensor{{1}, {2}}) end},
	{"CrossEntropyLoss:backward", function()
		return nn.CrossEntropyLoss():backward(lunet.rand(2, 3), {1, 2 ^ 53}) end},
	{"NLLLoss:forward", function() return nn.NLLLoss():forward(lunet.rand(2, 3), {-1, 1}) end},
	{"BCELoss:forward", function() return nn.BCELoss():forward(lunet.full({2, 3}, 1.5), lunet.rand(2, 3)) end},
	{"BCELoss:forward", function() return nn.BCELoss():forward(lunet.rand(2, 3), lunet.full({2, 3}, -1)) end},
	{"BCEWithLogitsLoss:backward", function()
		return nn.BCEWithLogitsLoss():backward(lunet.rand(2, 3), lunet.rand(2, 2)) end},
	{"OutputLoss", function()
		return nn.OutputLoss("softmax", "cross_entropy"):forward(lunet.rand(2, 3), {4, 1}) end},
	{"nn.MSELoss", nn.MSELoss, {reduction = "bad"}},

	-- optimisers
	{"optim.SGD: lr must be >= 0", optim.SGD, {lunet.rand(2)}, {lunet.rand(2)}, {lr = -1}},
	{"optim.SGD: lr must be >= 0, got nan", optim.SGD, {lunet.rand(2)}, {lunet.rand(2)}, {lr = NAN}},
	{"optim.Adam", optim.Adam, {lunet.rand(2)}, {lunet.rand(2)}, {betas = {0.9, 1}}},
	{"optim.Adam", optim.Adam, {lunet.rand(2)}, {lunet.rand(2)}, {betas = {"a"}}},
	{"optim.SGD: parameter 1: tensor is empty", optim.SGD, {closed_tensor(2)}, {lunet.rand(2)}},
	{"optim.SGD: parameter 1: tensor is not contiguous", optim.SGD,
		{lunet.rand(3, 4):narrow(2, 1, 2)}, {lunet.rand(3, 2)}},
	{"optim.SGD: parameter 1 has shape {3} but its gradient has shape {4}", optim.SGD,
		{lunet.rand(3)}, {lunet.rand(4)}},
	{"optim.SGD: no parameters to optimize", optim.SGD, {}, {}},
	{"optim.SGD: parameter 1 is number", optim.SGD, {1}, {2}},
	{"optim.RMSprop", optim.RMSprop, "model"},
	{"optim.Adam: parameters 1 and 2 share memory", function()
		local p = lunet.rand(3)
		return optim.Adam({p, p}, {lunet.rand(3), lunet.rand(3)})
	end},
	{"SGD:step: optimizer is closed", function()
		local o = optim.SGD({lunet.rand(2)}, {lunet.rand(2)}, {lr = 0.1})
		o:close()
		return o:step()
	end},
	{"optim.SGD: lr must be a number, got string", function()
		local o = optim.SGD({lunet.rand(2)}, {lunet.rand(2)}, {lr = 0.1})
		o.lr = "fast"
	end},
	{"optim:load_state", function()
		local o = optim.Adam({lunet.rand(3)}, {lunet.rand(3)})
		o:step()
		local st = o:state()
		return optim.Adam({lunet.rand(5)}, {lunet.rand(5)}):load_state(st)
	end},
	{"optim.schedules.cosine: total must be an integer >= 1, got 0", optim.schedules.cosine, 0.1, 0},

	-- data
	{"data.batches: x has 10 samples but y has 9", data.batches, lunet.rand(10, 3), lunet.rand(9), 4},
	{"data.batches: y must be a tensor, got table", data.batches, lunet.rand(3, 3), {"a", "b", "c"}, 2},
	{"data.batches: batch size must be an integer >= 1, got 0", data.batches, lunet.rand(3, 3), 0},
	{"data.batches: batch size must be an integer >= 1", data.batches, lunet.rand(3, 3), NAN},
	{"data.batches: x is closed", data.batches, closed_tensor(3, 3), 2},
	{"data.batches: y is closed", data.batches, lunet.rand(3, 3), closed_tensor(3), 2},
	{"data.batches: x is closed", function()
		local x = lunet.rand(6, 3)
		for _ in data.batches(x, 2) do x:close() end
	end},
	{"data.batches: x is closed", function()
		local x = lunet.rand(6, 3)
		for _ in data.batches(x, lunet.rand(6), 2, {shuffle = true}) do x:close() end
	end},
	{"data.batches: unknown option 'shufle'", data.batches, lunet.rand(3, 3), 2, {shufle = true}},
	{"data.gather: destination shares memory with the source", function()
		local t = lunet.rand(4, 2)
		return data.gather(t, t, lunet.tensor{4, 3, 2, 1})
	end},
	{"data.gather: destination shares memory with the index", function()
		local t = lunet.tensor{1, 2}
		return data.gather(t, lunet.rand(4), t)
	end},
	{"data.gather: rows 9223372036854775807..9223372036854775807 of the index", data.gather,
		lunet.rand(1, 2), lunet.rand(4, 2), lunet.tensor{1, 2}, math.maxinteger},
	{"data.gather: index[1] = -nan is not a row", data.gather, lunet.rand(1, 2), lunet.rand(4, 2),
		lunet.tensor{NAN}},
	{"data.load_idx: path contains a NUL byte", data.load_idx, "a\0b"},
	{"data.csv: path contains a NUL byte", data.csv, "a\0b"},
	{"data.load_idx: /nonexistent/x: cannot open", data.load_idx, "/nonexistent/x"},
	{"data.fashion_mnist: dir must be a string, got number", data.fashion_mnist, 5},
	{"data.text: path contains a NUL byte", data.text, "a\0b"},
	{"data.text: path contains a NUL byte", data.text, {"a\0b"}},
	{"data.text: expected a path or a table of paths, got no value", data.text},
	{"data.text: /nonexistent/x: cannot open", data.text, {"/nonexistent/x"}},
	{"data.text: 1099511627776 files, at most 1000000", data.text,
		setmetatable({}, {__len = function() return 1 << 40 end})},
	{"object length is not an integer", data.text, setmetatable({}, {__len = function() return 0.5 end})},
	{"data.text: file 1 is a table, expected a path", data.text, {{}}},
	{"data.text: /dev/zero: not a regular file", data.text, "/dev/zero"},
	{"data.sequences: batch must be an integer >= 1, got nan", data.sequences, lunet.arange(9), NAN, 2},
	{"data.sequences: T must be an integer >= 1, got inf", data.sequences, lunet.arange(9), 2, INF},
	{"data.sequences: T must be an integer >= 1, got -1", data.sequences, lunet.arange(9), 2, -1},
	{"data.sequences: ids holds 9 ids; a window of T=9223372036854775807 inputs and its next id " ..
		"needs at least 9223372036854775808", data.sequences, lunet.arange(9), 2, math.maxinteger},
	{"data.sequences: option 'seed' must be an integer, got nan", data.sequences, lunet.arange(9), 2,
		2, {shuffle = true, seed = NAN}},
	{"data.sequences: ids must be a tensor, got string", data.sequences, "abc", 1, 1},
	{"data.fortunes: option 'files' must be a table, got string", data.fortunes, {files = "/etc/hosts"}},
	{"data.fortunes: /nonexistent/f: cannot open", data.fortunes, {files = {"/nonexistent/f"}}},

	-- save / load
	{"lunet.save: path contains a NUL byte", lunet.save, TMP .. "\0x", 1},
	{"lunet.load: path contains a NUL byte", lunet.load, TMP .. "\0x"},
	{"lunet.load", lunet.load, "/nonexistent/file.lunet"},
	{"lunet.save", lunet.save, TMP, print},
	{"lunet.save", lunet.save, TMP, coroutine.create(print)},
	{"lunet.save", lunet.save, TMP, closed_tensor(2)},
	{"lunet.save", lunet.save, "/nonexistent/dir/file", 1},
	{"lunet.save", function()
		local t = {}
		t.self = t
		return lunet.save(TMP, t)
	end},
	{"lunet.save", lunet.save, TMP, {[{}] = 1}},
	{"lunet.save", function()
		return lunet.save(TMP, nn.Sequential{nn.ReLU(), lua_module()})
	end},

	-- system helpers
	{"lunet.sys.set_rng_state: the all-zero state", lunet.sys.set_rng_state, {0, 0, 0, 0}},
	{"lunet.sys.set_rng_state: expected a table of 4 integers, got 2 entries",
		lunet.sys.set_rng_state, {1, 2}},
	{"lunet.sys.mkdir: path contains a NUL byte", lunet.sys.mkdir, "a\0b"},

	-- recurrent layers: sizes, options, inputs
	{"nn.RNN: nin must be an integer, got nil", nn.RNN, nil, 3},
	{"nn.RNN: nin must be >= 1, got 0", nn.RNN, 0, 3},
	{"nn.RNN: hidden size must be an integer, got nan", nn.RNN, 3, NAN},
	{"nn.RNN: hidden size must be an integer, got 2.5", nn.RNN, 3, 2.5},
	{"nn.RNN: hidden size must be an integer, got string", nn.RNN, 3, "4"},
	{'nn.RNN: nonlinearity must be "tanh" or "relu", got "sigmoid"', nn.RNN, 3, 4,
		{nonlinearity = "sigmoid"}},
	{"nn.RNN: expected dropout in [0,1), got 1", nn.RNN, 3, 4, {dropout = 1}},
	{"nn.RNN: expected dropout in [0,1), got nan", nn.RNN, 3, 4, {dropout = NAN}},
	{"nn.RNN: unknown option 'bias'", nn.RNN, 3, 4, {bias = true}},
	{"nn.RNN: unknown option 'num_layers'", nn.RNN, 3, 4, {num_layers = 2}},
	{"nn.RNN: options must be a table, got string", nn.RNN, 3, 4, "x"},
	{"nn.LSTM: nin must be an integer, got 1.5", nn.LSTM, 1.5, 3},
	{"nn.LSTM: hidden size must be >= 1, got -1", nn.LSTM, 3, -1},
	{"nn.LSTM: unknown option 'batch_first'", nn.LSTM, 3, 4, {batch_first = true}},
	{"nn.LSTM: unknown option 'nonlinearity'", nn.LSTM, 3, 4, {nonlinearity = "relu"}},
	{"nn.LSTM: option 'stateful' must be a boolean, got number", nn.LSTM, 3, 4, {stateful = 1}},
	{"nn.GRU: nin must be an integer, got inf", nn.GRU, INF, 3},
	{"nn.GRU: expected dropout in [0,1), got -0.1", nn.GRU, 3, 4, {dropout = -0.1}},
	{"nn.GRU: option 'stateful' must be a boolean, got string", nn.GRU, 3, 4, {stateful = "yes"}},
	{"LSTM:forward: expected input of shape {N,T,3}, got {2,3}",
		function() return nn.LSTM(3, 4):forward(lunet.rand(2, 3)) end},
	{"GRU:forward: expected input of shape {N,T,3}, got {2,5,4}",
		function() return nn.GRU(3, 4):forward(lunet.rand(2, 5, 4)) end},
	{"RNN:forward: expected the input as a lunet.Tensor, got nil",
		function() return nn.RNN(3, 4):forward(nil) end},
	{"LSTM:forward: the input is a closed tensor",
		function() return nn.LSTM(3, 4):forward(closed_tensor(2, 5, 3)) end},
	{"LSTM:backward: backward called before forward",
		function() return nn.LSTM(3, 4):backward(lunet.rand(2, 5, 3), lunet.rand(2, 5, 4)) end},
	{"LSTM:backward: expected gradient of shape {2,5,4}, got {2,5,3}", function()
		local r = nn.LSTM(3, 4)
		r:forward(lunet.rand(2, 5, 3))
		return r:backward(lunet.rand(2, 5, 3), lunet.rand(2, 5, 3))
	end},
	{"LSTM: cannot replace 'hidden'", function() nn.LSTM(3, 4).hidden = lunet.zeros(1, 4) end},
	{"Sequential:forward: layer 2 (RNN): expected input of shape {N,T,4}, got {1,3}",
		function() return nn.Sequential{nn.Linear(2, 3), nn.RNN(4, 4)}:forward(lunet.rand(1, 2)) end},

	-- LayerNorm, Embedding, GELU, SiLU
	{"nn.LayerNorm: d must be >= 1, got 0", nn.LayerNorm, 0},
	{"nn.LayerNorm: d must be an integer, got nan", nn.LayerNorm, NAN},
	{"nn.LayerNorm: d must be an integer, got table", nn.LayerNorm, {4}},
	{"nn.LayerNorm: expected eps > 0 and finite, got -1", nn.LayerNorm, 4, {eps = -1}},
	{"nn.LayerNorm: expected eps > 0 and finite, got nan", nn.LayerNorm, 4, {eps = NAN}},
	{"nn.LayerNorm: expected eps > 0 and finite, got inf", nn.LayerNorm, 4, {eps = INF}},
	{"nn.LayerNorm: unknown option 'epsilon'", nn.LayerNorm, 4, {epsilon = 1e-5}},
	{"nn.LayerNorm: unknown option 'elementwise_affine'", nn.LayerNorm, 4, {elementwise_affine = false}},
	{"LayerNorm:forward: expected input of shape {N,4}, got {2,5}",
		function() return nn.LayerNorm(4):forward(lunet.rand(2, 5)) end},
	{"LayerNorm:forward: expected the input as a lunet.Tensor, got table",
		function() return nn.LayerNorm(4):forward({{1, 2, 3, 4}}) end},
	{"nn.Embedding: n must be >= 1, got 0", nn.Embedding, 0, 3},
	{"nn.Embedding: d must be an integer, got nan", nn.Embedding, 10, NAN},
	{"nn.Embedding: expected at most 2 arguments, got 3", nn.Embedding, 10, 3, {padding_idx = 1}},
	{"Embedding:forward: label 0 at row 1, column 1 is out of range 1..10",
		function() return nn.Embedding(10, 3):forward(lunet.tensor{{0, 1}}) end},
	{"Embedding:forward: label 11 at row 1, column 2 is out of range 1..10",
		function() return nn.Embedding(10, 3):forward(lunet.tensor{{1, 11}}) end},
	{"Embedding:forward: label 1.5 at row 1, column 1 is not an integer",
		function() return nn.Embedding(10, 3):forward(lunet.tensor{{1.5, 1}}) end},
	{"Embedding:forward: label nan at row 2, column 1 is not an integer",
		function() return nn.Embedding(10, 3):forward(lunet.tensor{{1}, {NAN}}) end},
	{"Embedding:forward: label -inf at row 1, column 1 is not an integer",
		function() return nn.Embedding(10, 3):forward(lunet.tensor{{-INF}}) end},
	{"nn.GELU: expected no arguments, got 1", nn.GELU, {approximate = "tanh"}},
	{"nn.SiLU: expected no arguments, got 1", nn.SiLU, 1},
	{"GELU:forward: expected the input as a lunet.Tensor, got string",
		function() return nn.GELU():forward("x") end},
	{"SiLU:backward: expected the gradient as a lunet.Tensor, got nil", function()
		local m = nn.SiLU()
		m:forward(lunet.rand(2, 2))
		return m:backward(lunet.rand(2, 2), nil)
	end},

	-- every module and loss names itself for an input that is not a tensor
	{"Linear:forward: expected the input as a lunet.Tensor, got nil",
		function() local m = nn.Linear(2, 2) return m.forward(m, nil) end},
	{"Conv2d:forward: expected the input as a lunet.Tensor, got boolean",
		function() return nn.Conv2d(1, 1, 3):forward(true) end},
	{"BatchNorm:backward: expected the input as a lunet.Tensor, got number",
		function() return nn.BatchNorm(2):backward(1, lunet.rand(2, 2)) end},
	{"Sequential:forward: expected the input as a lunet.Tensor, got nil",
		function() return nn.Sequential{nn.Linear(2, 2)}:forward(nil) end},
	{"Embedding:forward: the input is a closed tensor",
		function() return nn.Embedding(3, 2):forward(closed_tensor(2, 2)) end},
	{"CrossEntropyLoss:forward: expected the input as a lunet.Tensor, got nil",
		function() return nn.CrossEntropyLoss():forward(nil, {1}) end},
	{"MSELoss:backward: the input is a closed tensor",
		function() return nn.MSELoss():backward(closed_tensor(2), lunet.rand(2)) end},
	{"nn.init.xavier: expected the tensor as a lunet.Tensor, got nil",
		function() return nn.init.xavier(nil) end},

	-- the NaN finder, the memory cap, gradient clipping, AdamW
	{"lunet.check_numerics: expected a boolean, got number", lunet.check_numerics, 1},
	{"lunet.check_numerics: expected a boolean, got string", lunet.check_numerics, "on"},
	{"lunet.check_numerics: expected at most 1 argument, got 2", lunet.check_numerics, false, 2},
	{"lunet.memory_limit: expected a number of bytes (an integer >= 0, 0 for no limit), got -1",
		lunet.memory_limit, -1},
	{"lunet.memory_limit: expected a number of bytes (an integer >= 0, 0 for no limit), got nan",
		lunet.memory_limit, NAN},
	{"lunet.memory_limit: expected a number of bytes (an integer >= 0, 0 for no limit), got 1.5",
		lunet.memory_limit, 1.5},
	{"lunet.memory_limit: expected a number of bytes (an integer >= 0, 0 for no limit), got string",
		lunet.memory_limit, "1"},
	{"lunet.memory_limit: expected at most 1 argument, got 2", lunet.memory_limit, 0, 0},
	{"optim.clip_grad_norm: expected a model or a table of tensors, got nil",
		optim.clip_grad_norm, nil, 1},
	{"optim.clip_grad_norm: max_norm must be >= 0, got -1", optim.clip_grad_norm, nn.Linear(2, 2), -1},
	{"optim.clip_grad_norm: max_norm must be >= 0, got nan", optim.clip_grad_norm, nn.Linear(2, 2), NAN},
	{"optim.clip_grad_norm: expected at most 2 arguments, got 3", optim.clip_grad_norm,
		nn.Linear(2, 2), 1, 2},
	{"optim.AdamW: lr must be >= 0, got -1", optim.AdamW, nn.Linear(2, 2), {lr = -1}},
	{"optim.AdamW: weight_decay must be >= 0, got nan", optim.AdamW, nn.Linear(2, 2),
		{weight_decay = NAN}},
	{"optim.AdamW: unknown option 'beta1'", optim.AdamW, nn.Linear(2, 2), {beta1 = 0.9}},

	-- safetensors, IDX, tensors joined
	{"lunet.save_safetensors: expected a module or a table of tensors, got function",
		lunet.save_safetensors, TMP, print},
	{"lunet.save_safetensors: /nonexistent/x.safetensors: cannot create",
		lunet.save_safetensors, "/nonexistent/x.safetensors", nn.Linear(2, 2)},
	{"lunet.load_safetensors: /nonexistent/x.safetensors: cannot open",
		lunet.load_safetensors, "/nonexistent/x.safetensors"},
	{"data.load_idx: /nonexistent/x-idx1-ubyte: cannot open", data.load_idx, "/nonexistent/x-idx1-ubyte"},
	{"lunet.where: shapes {2} and {3} do not broadcast", lunet.where, lunet.zeros(2), lunet.zeros(3),
		lunet.zeros(2)},
	{"lunet.where: expected a lunet.Tensor or a table of numbers, got nil", lunet.where, nil, 1, 2},
	{"lunet.stack: expected a non-empty table of tensors, got an empty table", lunet.stack, {}},
	{"lunet.stack: tensor 2 has shape {3}, tensor 1 has {2}", lunet.stack, {lunet.zeros(2), lunet.zeros(3)}},
	{"lunet.stack: position 5 out of range for a new dimension of a 1-D tensor", lunet.stack,
		{lunet.zeros(2)}, 5},

	-- lunet.experiment: options, configuration, command line
	{"lunet.experiment: unknown option 'nme'", lunet.experiment, {nme = "x"}},
	{"lunet.experiment: config.lr must be a number, boolean or string, got function",
		lunet.experiment, {config = {lr = print}, args = {}}},
	{"lunet.experiment: option 'root' must be a string, got number", lunet.experiment,
		{root = 3, args = {}}},
	{"lunet.experiment: bad value --n=1.5: expected an integer", lunet.experiment,
		{config = {n = 1}, args = {"--n=1.5"}}},
	{"lunet.experiment: cannot resume from /nonexistent/run/: no checkpoint.lunet there",
		lunet.experiment, {resume = "/nonexistent/run", args = {}}},

	-- text
	{"data.text: expected a path or a table of paths, got nil", data.text, nil, n = 3},
	{"data.text: the list of files is empty", data.text, {}},
	{"data.fortunes: unknown option 'file'", data.fortunes, {file = {}}},
	{"lunet.randperm: n must be in 1..16777216, got -1", lunet.randperm, -1},

	-- multi-head attention; NaN named as nan by every constructor
	{"nn.MultiheadAttention: d must be an integer, got nil", nn.MultiheadAttention, nil, 2},
	{"nn.MultiheadAttention: d must be >= 1, got 0", nn.MultiheadAttention, 0, 2},
	{"nn.MultiheadAttention: d must be an integer, got nan", nn.MultiheadAttention, NAN, 2},
	{"nn.MultiheadAttention: heads must be >= 1, got 0", nn.MultiheadAttention, 8, 0},
	{"nn.MultiheadAttention: d (8) must be a multiple of heads (3)", nn.MultiheadAttention, 8, 3},
	{"nn.MultiheadAttention: option 'causal' must be a boolean, got number", nn.MultiheadAttention,
		8, 2, {causal = 1}},
	{"nn.MultiheadAttention: expected dropout in [0,1), got 1", nn.MultiheadAttention, 8, 2,
		{dropout = 1}},
	{"nn.MultiheadAttention: expected dropout in [0,1), got nan", nn.MultiheadAttention, 8, 2,
		{dropout = NAN}},
	{"nn.MultiheadAttention: unknown option 'batch_first'", nn.MultiheadAttention, 8, 2,
		{batch_first = true}},
	{"nn.MultiheadAttention: shape {3298534883328,1099511627776} has too many elements",
		nn.MultiheadAttention, 1 << 40, 1},
	{"MultiheadAttention:forward: expected input of shape {N,T,8}, got {2,8}",
		function() return nn.MultiheadAttention(8, 2):forward(lunet.rand(2, 8)) end},
	{"MultiheadAttention:forward: expected the input as a lunet.Tensor, got nil",
		function() return nn.MultiheadAttention(8, 2):forward(nil) end},
	{"MultiheadAttention:backward: backward called before forward", function()
		return nn.MultiheadAttention(8, 2):backward(lunet.rand(2, 3, 8), lunet.rand(2, 3, 8))
	end},
	{"nn.Dropout: expected a probability p in [0,1), got nan", nn.Dropout, NAN},
	{"nn.BatchNorm: eps must be positive, got nan", nn.BatchNorm, 4, {eps = NAN}},
	{"nn.BatchNorm: momentum must be in [0,1], got nan", nn.BatchNorm, 4, {momentum = NAN}},
	{"nn.LeakyReLU: expected a finite slope, got nan", nn.LeakyReLU, NAN},
	{"nn.CrossEntropyLoss: label_smoothing must be in [0,1], got nan", nn.CrossEntropyLoss,
		{label_smoothing = NAN}},
}

for i, c in ipairs(cases) do
	test(string.format("hostile %d: %s", i, c[1]), function()
		raises(c[1], c[2], table.unpack(c, 3, c.n or #c))
	end)
end

-- ---- tensor operations: views, indexing, sorting, joining, sampling ----------------
-- Each entry: {message fragment naming the function and the bad value,
-- function, arguments...}.
local T = lunet.Tensor
local t23 = lunet.rand(2, 3)
local one = lunet.zeros(1)
local tensor_cases = {
	-- wrong types
	{"Tensor:unsqueeze: expected an integer dimension, got string", T.unsqueeze, t23, "1"},
	{"Tensor:squeeze: expected an integer dimension, got table", T.squeeze, t23, {}},
	{"Tensor:permute: expected integer dimensions, got boolean at position 2", T.permute, t23, 1, true},
	{"Tensor:transpose: expected an integer dimension, got nan", T.transpose, t23, 1, NAN},
	{"Tensor:expand: expected integer sizes, got nan at position 1", T.expand, one, NAN},
	{"Tensor:expand: expected integer sizes, got inf at position 2", T.expand, one, 2, INF},
	{"Tensor:select: expected an integer index, got string", T.select, t23, 1, "1"},
	{"Tensor:index: expected integer indices, got nan at position 1", T.index, t23, 1, {NAN}},
	{"Tensor:index: expected indices as a table or a 1-D lunet.Tensor, got string", T.index, t23, 1, "1"},
	{"Tensor:sort: expected an integer dimension, got string", T.sort, t23, "x"},
	{"Tensor:sort: expected descending to be a boolean, got number", T.sort, t23, 1, 1},
	{"Tensor:topk: expected an integer k, got nan", T.topk, t23, NAN},
	{"Tensor:clamp: expected the upper bound to be a number or nil, got table", T.clamp, t23, 0, {}},
	{"Tensor:pow: expected a lunet.Tensor or a number, got boolean", T.pow, t23, true},
	{"Tensor:gt: expected a lunet.Tensor or a number, got function", T.gt, t23, print},
	{"Tensor:multinomial: expected an integer number of samples, got nan", T.multinomial, t23, NAN},
	{"Tensor:multinomial: expected replacement to be a boolean, got number", T.multinomial, t23, 1, 1},
	{"Tensor:max: expected an integer dimension, got string", T.max, t23, "1"},
	{"lunet.cat: expected a table of tensors, got number", lunet.cat, 5},
	{"lunet.cat: expected a lunet.Tensor at position 2, got nil", lunet.cat, {t23, nil, t23}},
	{"lunet.stack: expected a lunet.Tensor at position 1, got string", lunet.stack, {"x"}},
	{"lunet.where: expected a lunet.Tensor or a number, got nil", lunet.where, t23, t23},
	{"lunet.where: expected a lunet.Tensor or a table of numbers, got nil", lunet.where},
	-- dimensions out of range, huge and negative
	{"Tensor:unsqueeze: position 4 out of range for a new dimension of a 2-D tensor", T.unsqueeze, t23, 4},
	{"Tensor:unsqueeze: position -9223372036854775808 out of range", T.unsqueeze, t23, math.mininteger},
	{"Tensor:squeeze: dimension 0 out of range for a tensor of shape {2,3}", T.squeeze, t23, 0},
	{"Tensor:permute: dimension -3 out of range for a tensor of shape {2,3}", T.permute, t23, -3, 1},
	{"Tensor:permute: expected at most 8 dimensions, got 9", T.permute, t23, 1, 2, 3, 4, 5, 6, 7, 8, 9},
	{"Tensor:transpose: dimension 1099511627776 out of range", T.transpose, t23, 1, 1 << 40},
	{"Tensor:select: dimension 3 out of range", T.select, t23, 3, 1},
	{"Tensor:select: index 4611686018427387904 out of range for dimension 2 of {2,3}", T.select, t23, 2, 1 << 62},
	{"Tensor:select: index -1 out of range for dimension 1 of {2,3}", T.select, t23, 1, -1},
	{"Tensor:index: index 4611686018427387904 at position 1 is out of range", T.index, t23, 2, {1 << 62}},
	{"Tensor:index: index -1 at position 2 is out of range", T.index, t23, 2, {1, -1}},
	{"Tensor:index: index 3 at position 1 is out of range for dimension 1", T.index, t23, 1, lunet.tensor{3}},
	{"Tensor:sort: dimension -3 out of range", T.sort, t23, -3},
	{"Tensor:topk: k must be in 1..3 (the size of dimension 2 of {2,3}), got 4611686018427387904",
		T.topk, t23, 1 << 62},
	{"Tensor:topk: k must be in 1..3", T.topk, t23, -1},
	{"Tensor:max: dimension 3 out of range", T.max, t23, 3},
	{"Tensor:argmax: dimension -3 out of range", T.argmax, t23, -3},
	{"Tensor:narrow: dimension -3 out of range", T.narrow, t23, -3, 1, 1},
	{"lunet.cat: dimension 9 out of range", lunet.cat, {t23}, 9},
	{"lunet.stack: position -4 out of range for a new dimension of a 2-D tensor", lunet.stack, {t23}, -4},
	-- sizes: negative, zero, huge
	{"Tensor:expand: size -2 for dimension 1 in {-2,3}", T.expand, t23, -2, 3},
	{"Tensor:expand: size 0 for dimension 1", T.expand, one, 0},
	{"Tensor:expand: shape {4611686018427387904,4611686018427387904} has too many elements",
		T.expand, one, 1 << 62, 1 << 62},
	{"Tensor:expand: expected at most 8 sizes, got 9", T.expand, one, 1, 1, 1, 1, 1, 1, 1, 1, 1},
	{"Tensor:multinomial: number of samples must be >= 1, got -3", T.multinomial, lunet.ones(3), -3},
	{"Tensor:multinomial: shape {1,4611686018427387904} has too many elements",
		T.multinomial, lunet.ones(1, 3), 1 << 62, true},
	{"Tensor:multinomial: cannot draw 4611686018427387904 samples without replacement",
		T.multinomial, lunet.ones(1, 3), 1 << 62},
	-- a cheap expanded tensor of huge size: refused where its indices or
	-- its copy would not fit, never walked
	{"Tensor:sort: dimension 1 of {33554432} is longer than 16777216", function()
		return one:expand(1 << 25):sort()
	end},
	{"Tensor:max: dimension 1 of {33554432} is longer than 16777216", function()
		return one:expand(1 << 25):max(1)
	end},
	{"Tensor:multinomial: 33554432 categories are more than 16777216", function()
		return lunet.ones(1):expand(1 << 25):multinomial(1)
	end},
	{"Tensor:clone: out of memory allocating a tensor of shape {1099511627776}", function()
		return one:expand(1 << 40):clone()
	end},
	{"Tensor:matmul: out of memory allocating a tensor of shape {1099511627776,2,2}", function()
		return lunet.zeros(1, 2, 2):expand(1 << 40, 2, 2):matmul(lunet.zeros(2, 2))
	end},
	{"Tensor:add_: cannot write into {1099511627776}", function()
		return one:expand(1 << 40):add_(1)
	end},
	-- NaN and infinities where numbers must be finite
	{"Tensor:clamp: bounds must not be NaN, got nan and 1", T.clamp, t23, NAN, 1},
	{"Tensor:clamp: lower bound inf is above upper bound 1", T.clamp, t23, INF, 1},
	{"Tensor:multinomial: weight nan at row 1, column 2 is not a finite number",
		T.multinomial, lunet.tensor{{1, NAN}}, 1},
	{"Tensor:multinomial: weight inf at row 1, column 1 is not a finite number",
		T.multinomial, lunet.tensor{INF, 1}, 1},
	{"Tensor:multinomial: weight -inf at row 1, column 1", T.multinomial, lunet.tensor{-INF, 1}, 1},
	-- closed tensors, as self and as operands
	{"Tensor:unsqueeze: tensor is closed", T.unsqueeze, closed_tensor(2), 1},
	{"Tensor:squeeze: tensor is closed", T.squeeze, closed_tensor(2)},
	{"Tensor:permute: tensor is closed", T.permute, closed_tensor(2), 1},
	{"Tensor:expand: tensor is closed", T.expand, closed_tensor(1), 3},
	{"Tensor:select: tensor is closed", T.select, closed_tensor(2, 2), 1, 1},
	{"Tensor:index: tensor is closed", T.index, closed_tensor(2), 1, {1}},
	{"Tensor:index: tensor is closed", T.index, t23, 1, closed_tensor(1)},
	{"Tensor:sort: tensor is closed", T.sort, closed_tensor(2)},
	{"Tensor:topk: tensor is closed", T.topk, closed_tensor(2), 1},
	{"Tensor:clamp: tensor is closed", T.clamp, closed_tensor(2), 0, 1},
	{"Tensor:pow: tensor is closed", T.pow, t23, closed_tensor(3)},
	{"Tensor:lt: tensor is closed", T.lt, closed_tensor(3), 1},
	{"Tensor:add_: tensor is closed", T.add_, t23, closed_tensor(3)},
	{"Tensor:multinomial: tensor is closed", T.multinomial, closed_tensor(2), 1},
	{"Tensor:matmul: tensor is closed", T.matmul, lunet.rand(2, 2, 2), closed_tensor(2, 2)},
	{"lunet.cat: tensor 2 is closed", lunet.cat, {t23, closed_tensor(2, 3)}},
	{"lunet.stack: tensor 1 is closed", lunet.stack, {closed_tensor(2, 3)}},
	{"lunet.where: tensor is closed", lunet.where, t23, closed_tensor(2, 3), 0},
	{"Tensor:copy: tensor is closed", T.copy, t23, closed_tensor(3)},
	-- shapes that do not fit
	{"Tensor:__add: shapes {2,3} and {2} do not broadcast: dimension -1 has sizes 3 and 2",
		function() return t23 + lunet.zeros(2) end},
	{"Tensor:copy: cannot copy {6} into {2,3}", T.copy, t23, lunet.zeros(6)},
	{"Tensor:matmul: batch dimensions of {2,2,2} and {3,2,2} do not broadcast",
		T.matmul, lunet.rand(2, 2, 2), lunet.rand(3, 2, 2)},
	{"lunet.cat: tensor 2 has shape {3}, tensor 1 has {2,3}", lunet.cat, {t23, lunet.zeros(3)}},
}

for i, c in ipairs(tensor_cases) do
	test(string.format("hostile tensor %d: %s", i, c[1]), function()
		raises(c[1], c[2], table.unpack(c, 3, c.n or #c))
	end)
end

-- ---- sizes that overflow 32 and 64 bits ----------------------------------------------
-- Element counts past 2^32 (which a 32-bit count would wrap) are refused as
-- out of memory under a cap, so that nothing is allocated; counts past
-- 2^63 (which wrap 64 bits, some to exactly 0) are refused before any
-- arithmetic on them.  Each message names the function and the shape.
local GIB = 1 << 30
local size_cases = {
	-- 64 bits: the product wraps (2^31 * 2^31 * 4 = 2^64 wraps to 0)
	{"lunet.zeros: shape {4294967296,4294967296} has too many elements", lunet.zeros, 1 << 32, 1 << 32},
	{"lunet.zeros: shape {2147483648,2147483648,4} has too many elements", lunet.zeros,
		1 << 31, 1 << 31, 4},
	{"lunet.zeros: shape {3,4611686018427387904} has too many elements", lunet.zeros, 3, 1 << 62},
	{"lunet.ones: shape {4611686018427387904} has too many elements", lunet.ones, 1 << 62},
	{"lunet.full: shape {4294967296,4294967296} has too many elements", lunet.full,
		{1 << 32, 1 << 32}, 1},
	{"lunet.rand: shape {65536,65536,65536,65536} has too many elements", lunet.rand,
		65536, 65536, 65536, 65536},
	{"Tensor:expand: shape {4294967296,4294967296} has too many elements",
		function() return lunet.zeros(1, 1):expand(1 << 32, 1 << 32) end},
	{"Tensor:expand: shape {2147483648,2147483648,4} has too many elements",
		function() return lunet.zeros(1, 1, 1):expand(1 << 31, 1 << 31, 4) end},
	{"Tensor:reshape: expected a shape with 4 elements, got a larger one",
		function() return lunet.zeros(4):reshape(1 << 32, 1 << 32) end},
	{"Tensor:reshape: expected a shape with 4 elements, got a larger one",
		function() return lunet.zeros(4):reshape(1 << 31, 1 << 31, 4) end},
	{"Tensor:reshape: cannot infer the -1 size: 4 elements of shape {4} do not divide by 4611686018427387904",
		function() return lunet.zeros(4):reshape(-1, 1 << 62) end},
	{"nn.Linear: shape {4294967296,4294967296} has too many elements", nn.Linear, 1 << 32, 1 << 32},
	{"nn.LayerNorm: shape {4611686018427387904} has too many elements", nn.LayerNorm, 1 << 62},
	{"nn.Embedding: shape {16777216,1099511627776} has too many elements", nn.Embedding,
		1 << 24, 1 << 40},
	{"nn.BatchNorm: number of features 4611686018427387904 is too large", nn.BatchNorm, 1 << 62},
	{"nn.LSTM: hidden size 4611686018427387904 is too large", nn.LSTM, 4, 1 << 62},
	{"nn.Conv2d: kernel size must be <= 2147483647, got 2147483648", nn.Conv2d, 1, 1, 1 << 31},
	{"Conv2d:forward: input of shape {1,1,3,3} is too large",
		function() return nn.Conv2d(1, 1, 3, {padding = 1 << 30}):forward(lunet.zeros(1, 1, 3, 3)) end},
	{"lunet.arange: expected a range of fewer than 4e12 elements", lunet.arange, 1 << 62},
	{"lunet.randperm: n must be in 1..16777216, got 4294967296", lunet.randperm, 1 << 32},
	-- 32 bits: 2^32 and more elements, refused by the cap (1 GiB here)
	{"lunet.zeros: out of memory allocating a tensor of shape {65536,65536} (17179869184 bytes)",
		lunet.zeros, 65536, 65536},
	{"lunet.zeros: out of memory allocating a tensor of shape {4294967297}", lunet.zeros,
		(1 << 32) + 1},
	{"lunet.rand: out of memory allocating a tensor of shape {2,2147483648}", lunet.rand, 2, 1 << 31},
	{"nn.Linear: out of memory allocating a tensor of shape {65537,65536}", nn.Linear, 65536, 65537},
	{"nn.Embedding: out of memory allocating a tensor of shape {16777216,256}", nn.Embedding,
		1 << 24, 256},
	{"nn.Conv2d: out of memory allocating a tensor of shape {65536,65536,3,3}", nn.Conv2d,
		65536, 65536, 3},
	{"nn.GRU: out of memory allocating a tensor of shape {196608,65536}", nn.GRU, 65536, 65536},
	-- views of 2^32 elements that hold one: every operation that needs them
	-- whole asks for the memory, and is refused
	{"Tensor:contiguous: out of memory allocating a tensor of shape {65536,65536}",
		function() return lunet.zeros(1, 1):expand(65536, 65536):contiguous() end},
	{"Tensor:clone: out of memory allocating a tensor of shape {65536,65536}",
		function() return lunet.zeros(1, 1):expand(65536, 65536):clone() end},
	{"Tensor:__add: out of memory allocating a tensor of shape {65536,65536}",
		function() return lunet.zeros(1, 1):expand(65536, 65536) + 1 end},
	{"Tensor:matmul: out of memory allocating a tensor of shape {65536,65536}",
		function() return lunet.zeros(1, 1):expand(65536, 1):matmul(lunet.zeros(1, 1):expand(1, 65536)) end},
	{"Linear:forward: out of memory allocating a tensor of shape {65536,65536}",
		function() return nn.Linear(65536, 2):forward(lunet.zeros(1, 1):expand(65536, 65536)) end},
	{"Conv2d:forward: out of memory allocating a tensor of shape {2,1,46341,46341}", function()
		return nn.Conv2d(1, 1, 3):forward(lunet.zeros(1, 1, 1, 1):expand(2, 1, 46341, 46341))
	end},
	{"MaxPool2d:forward: out of memory allocating a tensor of shape {1,1,65536,65536}", function()
		return nn.MaxPool2d(2):forward(lunet.zeros(1, 1, 1, 1):expand(1, 1, 65536, 65536))
	end},
	{"LSTM:forward: out of memory allocating a tensor of shape {65536,65536,1}",
		function() return nn.LSTM(1, 1):forward(lunet.zeros(1, 1, 1):expand(65536, 65536, 1)) end},
	{"Embedding:forward: out of memory allocating a tensor of shape {65536,1,65536}",
		function() return nn.Embedding(3, 65536):forward(lunet.ones(1, 1):expand(65536, 1)) end},
}

for i, c in ipairs(size_cases) do
	test(string.format("hostile size %d: %s", i, c[1]), function()
		local before = lunet.memory_limit(GIB)
		local ok, err = pcall(raises, c[1], c[2], table.unpack(c, 3, c.n or #c))
		lunet.memory_limit(before)
		collectgarbage()
		if not ok then error(err, 0) end
	end)
end

test("numel and sizes of a view of more than 2^32 elements", function()
	-- 65536 x 65537 > 2^32: a count kept in 32 bits would wrap
	local v = lunet.ones(1, 1):expand(65536, 65537)
	eq(v:numel(), 65536 * 65537, "numel")
	eq(v:size(1) * v:size(2), 4295032832, "sizes")
end)

test("a tensor used in a failed operation is unchanged", function()
	local t = lunet.tensor{{1, 2}, {3, 4}}
	local before = t:clone()
	for _, f in ipairs{
		function() t:add_(lunet.zeros(3)) end,
		function() t:copy(lunet.zeros(4)) end,
		function() t:expand(2, 2, 2):add_(1) end,
		function() t:unsqueeze(1):expand(3, 2, 2):copy(lunet.zeros(3, 2, 2)) end,
	} do
		check(not pcall(f), "the operation fails")
		check(t:allclose(before, 0, 0), "t unchanged")
	end
end)

-- ---- lunet.load of damaged files ----------------------------------------------------

test("lunet.load of truncations and random bytes: errors that say so", function()
	local model = nn.Sequential{nn.Linear(3, 4), nn.BatchNorm(4), nn.ReLU(), nn.Linear(4, 2)}
	lunet.save(TMP, {model = model, opt = optim.Adam(model), note = "x", n = 3})
	local good = read_file(TMP)
	local tried = 0
	for len = 0, #good - 1, math.max(1, #good // 97) do
		write_file(TMP, good:sub(1, len))
		local msg = raises("lunet.load", lunet.load, TMP)
		check(#msg < 1000, "message of sane length")
		tried = tried + 1
	end
	local rnd = 12345
	for _ = 1, 200 do
		local bytes = {good:byte(1, -1)}
		for _ = 1, 1 + rnd % 4 do
			rnd = (rnd * 1103515245 + 12345) % 2147483648
			local at = 1 + rnd % #bytes
			bytes[at] = (bytes[at] + 1 + rnd % 255) % 256
		end
		local s = {}
		for k = 1, #bytes do s[k] = string.char(bytes[k]) end
		write_file(TMP, table.concat(s))
		-- a flipped byte in a float may still load; anything else is an error
		local ok, v = pcall(lunet.load, TMP)
		if not ok then
			check(type(v) == "string" and v:find("lunet.load", 1, true), "named: " .. tostring(v))
		end
		tried = tried + 1
	end
	write_file(TMP, "return os.exit(3)")
	raises("lunet.load", lunet.load, TMP)
	write_file(TMP, "")
	raises("lunet.load", lunet.load, TMP)
	check(tried > 250, "enough damaged files")
end)

-- ---- re-entrancy and coroutines ---------------------------------------------------

test("custom layer run from a coroutine leaves later layers on the caller's thread", function()
	local inner = nn.Sequential{nn.Linear(3, 3)}
	local co
	local threads = {}
	local first = lua_module(function(_, x)
		co = coroutine.create(function()
			inner:forward(x)
			coroutine.yield()
		end)
		assert(coroutine.resume(co))
		return x
	end)
	local second = lua_module(function(_, x)
		threads[#threads + 1] = coroutine.running()
		return x
	end)
	local main = coroutine.running()
	local s = nn.Sequential{first, second}
	s:forward(lunet.rand(2, 3))
	eq(#threads, 1, "second layer ran once")
	check(threads[1] == main, "second layer ran on the caller's thread, not the suspended coroutine")
	check(coroutine.status(co) == "suspended", "coroutine left as it was")
end)

test("a custom layer closing its container from parameters()", function()
	local s
	local c = lua_module()
	c.parameters = function()
		closed(s)
		collectgarbage()
		return {}, {}
	end
	s = nn.Sequential{nn.Linear(3, 3), c, nn.Linear(3, 2)}
	local p, g = s:parameters()
	eq(#p, 4, "parameters of both Linear layers")
	eq(#g, 4, "their gradients")
	eq(p[4]:numel(), 2, "bias of the last layer")
	eq(tostring(s), "Sequential (closed)", "a closed module prints as such")
end)

test("container re-entered from its own custom layer", function()
	local s
	local depth = 0
	s = nn.Sequential{nn.Linear(3, 3), lua_module(function(_, x)
		depth = depth + 1
		if depth < 3 then s:forward(lunet.rand(5, 3)) end
		depth = depth - 1
		return x
	end), nn.ReLU()}
	for _ = 1, 5 do
		local y = s:forward(lunet.rand(2, 3))
		eq(y:dim(), 2, "output is 2-D")
	end
end)

test("optimiser over a model closed afterwards still steps its own references", function()
	local m = nn.Linear(3, 2)
	local p = m:parameters()
	local w = p[1]:clone()
	local o = optim.SGD(m, {lr = 1})
	m:forward(lunet.rand(2, 3))
	m:backward(lunet.rand(2, 3), lunet.ones(2, 2))
	closed(m)
	collectgarbage()
	o:step()
	check(not p[1]:allclose(w, 0, 0), "the weights moved")
	o:zero_grad()
end)

test("text: decode of hostile ids, encode of a hostile string, huge batch sizes", function()
	local dir, path = h.tempdir()
	h.write_file(path("t"), "abc")
	local txt = data.text(path("t"))
	os.execute("rm -rf '" .. dir .. "'")
	for _, v in ipairs{1e300, -1e300, 2 ^ 63, -0.0, 3.5, 0.999, math.mininteger, math.maxinteger} do
		raises("decode: id ", txt.decode, {v})
		raises("decode: id ", txt.decode, lunet.tensor{1, v})
	end
	eq(txt.decode{3.0, 1}, "ca", "float ids that are integers")
	raises("encode: byte 0x00 at position 4", txt.encode, "abc\0abc")
	raises("decode: entry 1 is a boolean", txt.decode, {true})
	-- a batch far larger than the windows: one batch of all of them
	local n = 0
	for x in data.sequences(lunet.arange(9), math.maxinteger, 2) do
		n = n + 1
		eq(x:size(1), 4, "rows")
	end
	eq(n, 1, "batches")
end)

test("sequences over ids closed mid-loop go on with the text they started with", function()
	local ids = lunet.arange(9)
	local got = {}
	for x, y in data.sequences(ids, 1, 2) do
		ids:close()  -- idempotent
		got[#got + 1] = x[1][1] * 100 + y[1][2]
	end
	h.same(got, {103, 305, 507, 709}, 0)
end)

test("batches whose buffers the loop closes are rebuilt", function()
	local seen = 0
	for xb, yb in data.batches(lunet.rand(7, 3), lunet.rand(7), 2, {shuffle = true}) do
		seen = seen + xb:size(1)
		xb:close()
		yb:close()
	end
	eq(seen, 7, "every sample once")
end)

os.remove(TMP)
h.done()
