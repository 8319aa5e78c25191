-- fashion_cnn.lua -- a small convolutional network on Fashion-MNIST:
--
--   {N,1,28,28} -> Conv2d(1->16, 3x3, pad 1) BatchNorm ReLU MaxPool2d(2)  -> {N,16,14,14}
--               -> Conv2d(16->32, 3x3, pad 1) BatchNorm ReLU MaxPool2d(2) -> {N,32,7,7}
--               -> Flatten Linear(1568->128) BatchNorm ReLU Dropout Linear(128->10)
--
-- cross-entropy, SGD with Nesterov momentum (or Adam) and a cosine learning
-- rate schedule.  Prints per-epoch train loss, test accuracy and time; a
-- progress bar within each epoch on a terminal.
--
--   lunet experiments/fashion_cnn.lua [--epochs=10] [--lr=0.05] [--optim=sgd|adam] [--data=DIR] ...
--   lunet experiments/fashion_cnn.lua --help
--   mpirun -np 2 lunet experiments/fashion_cnn.lua --dist   (README: "On a cluster")
--   lunet experiments/fashion_cnn.lua --resume=runs/fashion_cnn/<timestamp> --epochs=20
--
-- Each run gets a directory runs/fashion_cnn/<timestamp>/ with its
-- config.lua, metrics.csv (one row per epoch), a checkpoint after every
-- epoch, report.html (the metrics, the confusion matrix of the test set and the
-- norms of each layer's delta and gradients, refreshed every epoch) and SVG
-- plots of the metrics at the end.
local lunet = lunet or require "lunet"
local nn, optim, data, dist = lunet.nn, lunet.optim, lunet.data, lunet.dist

local exp <close> = lunet.experiment{
	name = "fashion_cnn",
	description = "Two conv blocks with BatchNorm on Fashion-MNIST (SGD with Nesterov momentum, or Adam).",
	config = {
		epochs = 10, lr = 0.05, optim = "sgd", momentum = 0.9, weight_decay = 5e-4, batch = 64,
		c1 = 16, c2 = 32, hidden = 128, dropout = 0.2, seed = 1, data = "", limit = 0, threads = 0,
		dist = false,
	},
	one_of = {optim = {"sgd", "adam"}},
	help = {
		epochs = "passes over the training set",
		lr = "learning rate at the start (cosine decay to 0 over the run)",
		optim = "optimiser: SGD with Nesterov momentum, or Adam",
		momentum = "SGD's momentum",
		weight_decay = "L2 penalty on the parameters",
		batch = "images per training step (with --dist: in all, shared out among the ranks)",
		c1 = "channels of the first conv block",
		c2 = "channels of the second conv block",
		hidden = "width of the hidden linear layer",
		dropout = "dropout probability before the last layer",
		seed = "seed of the random source (weights, shuffling, dropout)",
		data = "directory holding the Fashion-MNIST .gz files (\"\": the system's copy)",
		dist = "train on the ranks of an MPI job (on by itself under mpirun or srun)",
		limit = "train on the first N training images only (0: all of them)",
		threads = "threads for the matrix products (0: lunet's own choice)",
	},
	at_least = {epochs = 1, lr = 0, momentum = 0, weight_decay = 0, batch = 1, c1 = 1, c2 = 1,
		hidden = 1, dropout = 0, limit = 0, threads = 0},
}
local config = exp.config

local fashion = dofile((arg and arg[0] and arg[0]:match("^(.*)/") or ".") .. "/fashion_data.lua")
local ds, train, test = fashion.load(exp)

local c1, c2 = config.c1, config.c2
local model = nn.Sequential{
	nn.Conv2d(1, c1, 3, {padding = 1}), nn.BatchNorm(c1), nn.ReLU(), nn.MaxPool2d(2),
	nn.Conv2d(c1, c2, 3, {padding = 1}), nn.BatchNorm(c2), nn.ReLU(), nn.MaxPool2d(2),
	nn.Flatten(),
	nn.Linear(c2 * 7 * 7, config.hidden), nn.BatchNorm(config.hidden), nn.ReLU(),
	nn.Dropout(config.dropout),
	nn.Linear(config.hidden, 10),
}
-- nobody reads the gradient with respect to the images: the first layer
-- computes its parameter gradients only
model.input_grad = false
local criterion = nn.CrossEntropyLoss()
local opt
if config.optim == "sgd" then
	opt = optim.SGD(model, {lr = config.lr, momentum = config.momentum, nesterov = true,
	                        weight_decay = config.weight_decay})
else
	opt = optim.Adam(model, {lr = config.lr, weight_decay = config.weight_decay})
end
exp:print(model)
-- report.html draws, per layer, the norms of delta and of the gradients.
exp:watch(model)
local nparams = 0
for _, p in ipairs((model:parameters())) do nparams = nparams + p:numel() end
exp:print(string.format("%d parameters; epochs %d, batch %d, %s lr %g, weight decay %g, seed %d",
                        nparams, config.epochs, config.batch, config.optim, config.lr,
                        config.weight_decay, config.seed))
exp:print("run directory " .. exp.dir)

-- On --resume, continue after the last saved epoch (0 on a fresh run).
local done = exp:restore(model, opt)
if done > 0 then
	exp:print(string.format("resumed after epoch %d", done))
end
if config.dist then dist.broadcast_parameters(model) end

-- Images as {n,1,28,28}.
local function images(x)
	return x:reshape(x:size(1), 1, 28, 28)
end

local ntrain = train.x:size(1)
local nbatches = (ntrain + config.batch - 1) // config.batch
-- The learning rate decays from lr to 0 over the whole run, once per batch.
local schedule = optim.schedules.cosine(config.lr, config.epochs * nbatches)
local acc
for epoch = done + 1, config.epochs do
	-- total: the sum of the batches' mean losses; under --dist each rank
	-- adds its share of each batch's mean, and the shares are summed below
	local start, total, mine, batches = lunet.clock(), 0, 0, 0
	local order = {shuffle = true, shard = config.dist}
	for xb, yb in data.batches(train.x, train.y, config.batch, order) do
		local global_batch = math.min(config.batch, ntrain - batches * config.batch)
		opt.lr = schedule((epoch - 1) * nbatches + batches)
		opt:zero_grad()
		local input = images(xb)
		local z = model:forward(input)
		local loss = criterion:forward(z, yb)
		total, mine = total + loss * (xb:size(1) / global_batch), mine + loss
		model:backward(input, criterion:backward(z, yb))
		if config.dist then dist.average_gradients(model) end
		opt:step()
		batches = batches + 1
		exp:progress(batches, nbatches, {loss = mine / batches})
	end
	if exp.size > 1 then total = dist.allreduce(lunet.tensor{total})[1] end
	local elapsed = lunet.clock() - start
	-- Test accuracy and loss, and the confusion matrix for report.html.
	local test_loss
	acc, _, test_loss = exp:confusion(model, images(test.x), test.y, {classes = ds.classes, loss = criterion})
	fashion.end_epoch(exp, model, opt, {epoch = epoch, train_loss = total / batches,
	                                    test_loss = test_loss, test_accuracy = acc,
	                                    seconds = elapsed, samples = ntrain})
end
fashion.finish(exp, acc, config.epochs)
