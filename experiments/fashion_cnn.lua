-- fashion_cnn.lua -- a small convolutional network on Fashion-MNIST:
--
--   {N,1,28,28} -> Conv2d(1->16, 3x3, pad 1) BatchNorm ReLU MaxPool2d(2)  -> {N,16,14,14}
--               -> Conv2d(16->32, 3x3, pad 1) BatchNorm ReLU MaxPool2d(2) -> {N,32,7,7}
--               -> Flatten Linear(1568->128) BatchNorm ReLU Dropout Linear(128->10)
--
-- cross-entropy, SGD with Nesterov momentum (or Adam) and a cosine learning
-- rate schedule.  Prints per-epoch train loss, test accuracy and time.
--
--   lunet experiments/fashion_cnn.lua [--epochs=10] [--lr=0.05] [--optim=sgd|adam]
--         [--batch=64] [--c1=16] [--c2=32] [--hidden=128] [--dropout=0.2]
--         [--seed=1] [--dir=DIR] [--limit=N (train on the first N images only)]
--         [--threads=N (threads for the matrix library; default: its own choice)]
local lunet = lunet or require "lunet"
local nn, optim, data = lunet.nn, lunet.optim, lunet.data

local config = {
	epochs = 10, lr = 0.05, optim = "sgd", momentum = 0.9, weight_decay = 5e-4, batch = 64,
	c1 = 16, c2 = 32, hidden = 128, dropout = 0.2, seed = 1, dir = false, limit = false,
	threads = false,
}
for _, a in ipairs(arg or {}) do
	local k, v = a:match("^%-%-([%w_]+)=(.*)$")
	if not k or config[k] == nil then
		local names = {}
		for name in pairs(config) do names[#names + 1] = "--" .. name .. "=" end
		table.sort(names)
		error("fashion_cnn: unknown argument " .. a .. " (expected " .. table.concat(names, ", ")
		      .. ")", 0)
	end
	config[k] = tonumber(v) or v
end
if config.optim ~= "sgd" and config.optim ~= "adam" then
	error("fashion_cnn: --optim must be sgd or adam, got " .. tostring(config.optim), 0)
end

if config.threads then
	if not lunet.gemm_threads then
		error("fashion_cnn: --threads needs lunet.gemm_threads, which this build lacks", 0)
	end
	lunet.gemm_threads(config.threads)
end
lunet.seed(config.seed)
local t0 = lunet.clock()
local ds = data.fashion_mnist(config.dir or nil)
local train, test = ds.train, ds.test
if config.limit then
	train = {x = train.x:narrow(1, 1, config.limit), y = train.y:narrow(1, 1, config.limit)}
end
print(string.format("Fashion-MNIST: %d training and %d test images (loaded in %.1f s)",
                    train.x:size(1), test.x:size(1), lunet.clock() - t0))

local c1, c2 = config.c1, config.c2
local model = nn.Sequential{
	nn.Conv2d(1, c1, 3, {padding = 1}), nn.BatchNorm(c1), nn.ReLU(), nn.MaxPool2d(2),
	nn.Conv2d(c1, c2, 3, {padding = 1}), nn.BatchNorm(c2), nn.ReLU(), nn.MaxPool2d(2),
	nn.Flatten(),
	nn.Linear(c2 * 7 * 7, config.hidden), nn.BatchNorm(config.hidden), nn.ReLU(),
	nn.Dropout(config.dropout),
	nn.Linear(config.hidden, 10),
}
local criterion = nn.CrossEntropyLoss()
local opt
if config.optim == "sgd" then
	opt = optim.SGD(model, {lr = config.lr, momentum = config.momentum, nesterov = true,
	                        weight_decay = config.weight_decay})
else
	opt = optim.Adam(model, {lr = config.lr, weight_decay = config.weight_decay})
end
print(model)
local nparams = 0
for _, p in ipairs((model:parameters())) do nparams = nparams + p:numel() end
print(string.format("%d parameters; epochs %d, batch %d, %s lr %g, weight decay %g, seed %d",
                    nparams, config.epochs, config.batch, config.optim, config.lr,
                    config.weight_decay, config.seed))

-- Images as {n,1,28,28}.
local function images(x)
	return x:reshape(x:size(1), 1, 28, 28)
end

-- Cosine decay from lr to 0 over the whole run, stepped once per batch.
local batches_per_epoch = math.ceil(train.x:size(1) / config.batch)
local total_steps, step = config.epochs * batches_per_epoch, 0
local function schedule()
	opt.lr = 0.5 * config.lr * (1 + math.cos(math.pi * step / total_steps))
	step = step + 1
end

local acc, run_start = nil, lunet.clock()
for epoch = 1, config.epochs do
	local start, total, batches = lunet.clock(), 0, 0
	for xb, yb in data.batches(train.x, train.y, config.batch, {shuffle = true}) do
		schedule()
		opt:zero_grad()
		local input = images(xb)
		local z = model:forward(input)
		total = total + criterion:forward(z, yb)
		model:backward(input, criterion:backward(z, yb))
		opt:step()
		batches = batches + 1
	end
	local elapsed = lunet.clock() - start
	acc = nn.accuracy(model, images(test.x), test.y)
	print(string.format("epoch %2d  train loss %.4f  test accuracy %.2f%%  %.1f s (%.0f samples/s)",
	                    epoch, total / batches, 100 * acc, elapsed, train.x:size(1) / elapsed))
end
print(string.format("final test accuracy %.2f%% after %d epochs (%.0f s)", 100 * acc,
                    config.epochs, lunet.clock() - run_start))
