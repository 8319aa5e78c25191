-- roundtrip.lua DIR -- lunet's side of the safetensors round trip with
-- PyTorch (tests/torch/roundtrip.py writes and checks the other side).
--
-- torch -> lunet: loads DIR/<model>_torch.safetensors, a state_dict trained
--   in PyTorch, into the same architecture (strict) and compares the
--   outputs in evaluate mode with PyTorch's (DIR/io_torch.safetensors).
-- lunet -> torch: trains the same architectures a few steps in lunet and
--   writes DIR/<model>_lunet.safetensors and DIR/io_lunet.safetensors
--   (inputs, outputs, the number of training steps) for roundtrip.py check.
local lunet = lunet or require "lunet"
local nn, optim = lunet.nn, lunet.optim

local dir = assert(arg[1], "usage: roundtrip.lua DIR")
local TOL = 1e-5
local STEPS = 5

local function mlp()
	return nn.Sequential{nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 16), nn.Tanh(), nn.Linear(16, 5)}
end

-- the layout of experiments/fashion_cnn.lua
local function cnn(c1, c2, hidden)
	c1, c2, hidden = c1 or 16, c2 or 32, hidden or 128
	return nn.Sequential{
		nn.Conv2d(1, c1, 3, {padding = 1}), nn.BatchNorm(c1), nn.ReLU(), nn.MaxPool2d(2),
		nn.Conv2d(c1, c2, 3, {padding = 1}), nn.BatchNorm(c2), nn.ReLU(), nn.MaxPool2d(2),
		nn.Flatten(),
		nn.Linear(c2 * 7 * 7, hidden), nn.BatchNorm(hidden), nn.ReLU(), nn.Dropout(0.2),
		nn.Linear(hidden, 10),
	}
end

-- sequences {N,7,6} -> {N,7,5}, a label per token
local function lstm()
	return nn.Sequential{nn.LSTM(6, 16, {layers = 2, dropout = 0.1}), nn.Linear(16, 5)}
end

local function gru()
	return nn.Sequential{nn.GRU(6, 16, {layers = 2}), nn.Linear(16, 5)}
end

local function attention()
	return nn.Sequential{nn.Linear(6, 16), nn.LayerNorm(16),
	                     nn.MultiheadAttention(16, 4, {causal = true, dropout = 0.1}),
	                     nn.GELU(), nn.Linear(16, 5)}
end

-- a 2-D shape is a sequence {T, features}, with a label per token
local MODELS = {
	{name = "mlp", build = mlp, shape = {20}, classes = 5},
	{name = "cnn", build = cnn, shape = {1, 28, 28}, classes = 10},
	{name = "lstm", build = lstm, shape = {7, 6}, classes = 5},
	{name = "gru", build = gru, shape = {7, 6}, classes = 5},
	{name = "attention", build = attention, shape = {7, 6}, classes = 5},
}

local function batch_of(n, shape)
	return lunet.randn(n, table.unpack(shape))
end

-- labels 1..classes: {n}, or {n,T} for a sequence
local function random_labels(n, spec)
	local t = #spec.shape == 2 and spec.shape[1] or nil
	local rows = {}
	for i = 1, n do
		local u = lunet.rand(t or 1):totable()
		for j = 1, #u do u[j] = math.floor(u[j] * spec.classes) + 1 end
		rows[i] = t and u or u[1]
	end
	return lunet.tensor(rows)
end

-- torch -> lunet ----------------------------------------------------------------
local io = lunet.load_safetensors(dir .. "/io_torch.safetensors")
for _, spec in ipairs(MODELS) do
	local m = spec.build()
	local sd = lunet.load_safetensors(dir .. "/" .. spec.name .. "_torch.safetensors")
	local missing, unexpected = m:load_state_dict(sd)
	assert(#missing == 0 and #unexpected == 0)
	for k, v in pairs(m:state_dict()) do
		if k:match("num_batches_tracked$") and v ~= STEPS then
			error(string.format("torch -> lunet: %s: %s is %s, expected %d", spec.name, k,
			                    tostring(v), STEPS))
		end
	end
	m:evaluate()
	local x, want = io[spec.name .. ".x"], io[spec.name .. ".y"]
	local y = m:forward(x)
	local diff = (y - want):abs():max()
	print(string.format("torch -> lunet: %s: largest |output difference| %.3g (outputs up to %.3g)",
	                    spec.name, diff, want:abs():max()))
	if not (diff <= TOL) then
		error(string.format("torch -> lunet: %s: outputs differ by %.3g > %g", spec.name, diff, TOL))
	end
end

-- lunet -> torch ----------------------------------------------------------------
lunet.seed(23)
local out = {}
for _, spec in ipairs(MODELS) do
	local m = spec.build()
	local opt = optim.SGD(m, {lr = 0.05, momentum = 0.9})
	local loss = nn.CrossEntropyLoss()
	for _ = 1, STEPS do
		local x = batch_of(16, spec.shape)
		local labels = random_labels(16, spec)
		opt:zero_grad()
		local z = m:forward(x)
		loss:forward(z, labels)
		m:backward(x, loss:backward(z, labels))
		opt:step()
	end
	m:evaluate()
	local x = batch_of(8, spec.shape)
	out[spec.name .. ".x"] = x
	out[spec.name .. ".y"] = m:forward(x):clone()
	out[spec.name .. ".steps"] = STEPS
	lunet.save_safetensors(dir .. "/" .. spec.name .. "_lunet.safetensors", m)
	print(string.format("lunet: %s trained %d steps and written", spec.name, STEPS))
end
lunet.save_safetensors(dir .. "/io_lunet.safetensors", out)
