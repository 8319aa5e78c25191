-- fashion_mlp.lua -- a 784-256-128-10 ReLU network on Fashion-MNIST,
-- cross-entropy, SGD with momentum and a cosine learning-rate decay.  Prints per-epoch train loss, test
-- accuracy and time; a progress bar within each epoch on a terminal.
--
--   lunet experiments/fashion_mlp.lua [--epochs=15] [--lr=0.05] [--batch=64] [--seed=1] [--data=DIR]
--   lunet experiments/fashion_mlp.lua --help
--   mpirun -np 2 lunet experiments/fashion_mlp.lua --dist   (README: "On a cluster")
--   lunet experiments/fashion_mlp.lua --resume=runs/fashion_mlp/<timestamp> --epochs=20
--
-- Each run gets a directory runs/fashion_mlp/<timestamp>/ with its
-- config.lua, metrics.csv (one row per epoch), a checkpoint after every
-- epoch, report.html (the metrics, the confusion matrix of the test set and the
-- norms of each layer's delta and gradients, refreshed every epoch) and SVG
-- plots of the metrics at the end.
local lunet = lunet or require "lunet"
local nn, optim, data, dist = lunet.nn, lunet.optim, lunet.data, lunet.dist

local exp <close> = lunet.experiment{
	name = "fashion_mlp",
	description = "A 784-256-128-10 ReLU MLP on Fashion-MNIST (SGD with momentum).",
	config = {epochs = 15, lr = 0.05, momentum = 0.9, batch = 64, seed = 1, data = "", dist = false},
	help = {
		epochs = "passes over the training set",
		lr = "learning rate at the start (cosine decay to 0 over the run)",
		momentum = "SGD's momentum",
		batch = "images per training step (with --dist: in all, shared out among the ranks)",
		seed = "seed of the random source (weights and shuffling)",
		data = "directory holding the Fashion-MNIST .gz files (\"\": the system's copy)",
		dist = "train on the ranks of an MPI job (on by itself under mpirun or srun)",
	},
	at_least = {epochs = 1, lr = 0, momentum = 0, batch = 1},
}
local config = exp.config

local fashion = dofile((arg and arg[0] and arg[0]:match("^(.*)/") or ".") .. "/fashion_data.lua")
local ds, train, test = fashion.load(exp)

local model = nn.Sequential{
	nn.Linear(784, 256), nn.ReLU(),
	nn.Linear(256, 128), nn.ReLU(),
	nn.Linear(128, 10),
}
-- nobody reads the gradient with respect to the images: the first layer
-- computes its parameter gradients only
model.input_grad = false
local criterion = nn.CrossEntropyLoss()
local opt = optim.SGD(model, {lr = config.lr, momentum = config.momentum})
exp:print(model)
-- report.html draws, per layer, the norms of delta and of the gradients.
exp:watch(model)
exp:print(string.format("epochs %d, batch %d, lr %g, momentum %g, seed %d", config.epochs,
                        config.batch, config.lr, config.momentum, config.seed))
exp:print("run directory " .. exp.dir)

-- On --resume, continue after the last saved epoch (0 on a fresh run).
local done = exp:restore(model, opt)
if done > 0 then
	exp:print(string.format("resumed after epoch %d", done))
end
if config.dist then dist.broadcast_parameters(model) end

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
		local z = model:forward(xb)
		local loss = criterion:forward(z, yb)
		total, mine = total + loss * (xb:size(1) / global_batch), mine + loss
		model:backward(xb, criterion:backward(z, yb))
		if config.dist then dist.average_gradients(model) end
		opt:step()
		batches = batches + 1
		exp:progress(batches, nbatches, {loss = mine / batches})
	end
	if exp.size > 1 then total = dist.allreduce(lunet.tensor{total})[1] end
	local elapsed = lunet.clock() - start
	-- Test accuracy and loss, and the confusion matrix for report.html.
	local test_loss
	acc, _, test_loss = exp:confusion(model, test.x, test.y, {classes = ds.classes, loss = criterion})
	fashion.end_epoch(exp, model, opt, {epoch = epoch, train_loss = total / batches,
	                                    test_loss = test_loss, test_accuracy = acc,
	                                    seconds = elapsed, samples = ntrain})
end
fashion.finish(exp, acc, config.epochs)
