-- resnet_fashion.lua -- a small residual network on Fashion-MNIST, built
-- as an nn.Graph:
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
-- joins are nn.Add nodes of the graph.  experiments/resnet_model.lua builds
-- it (the benchmark's resnet workload too).  Training: cross-entropy with label
-- smoothing, SGD with Nesterov momentum, a short linear warm-up then
-- cosine decay, weight decay; light augmentation written into the batch
-- buffer (a random crop of the image padded with `pad` zeros, a
-- horizontal flip).  Prints per-epoch train loss, test accuracy and time;
-- a progress bar within each epoch on a terminal.
--
--   lunet experiments/resnet_fashion.lua [--epochs=20] [--blocks=2] [--lr=0.1] [--c1=16] ...
--   lunet experiments/resnet_fashion.lua --help
--   lunet experiments/resnet_fashion.lua --resume=runs/resnet_fashion/<timestamp>
--
-- Each run gets a directory runs/resnet_fashion/<timestamp>/ with its
-- config.lua, metrics.csv (one row per epoch), a checkpoint after every
-- epoch, report.html (the metrics, the confusion matrix of the test set and the
-- norms of each node's delta and gradients, refreshed every epoch) and SVG
-- plots of the metrics at the end.
--
-- At the defaults (2 blocks per stage, 174,970 parameters, 20 epochs, 2
-- threads) the test accuracy after each epoch was 75.96 88.02 88.14 87.67
-- 86.54 88.07 87.38 88.49 90.67 91.34 91.18 91.83 91.88 92.71 92.21 93.30
-- 93.88 94.01 94.19 94.22 %; 1 h 52 min on a shared, loaded 2-core machine
-- (174 to 617 s per epoch, 3,826 s of processor time).  One block per stage
-- for 15 epochs ended at 92.51 %.
local lunet = lunet or require "lunet"
local nn, optim, data = lunet.nn, lunet.optim, lunet.data

local exp <close> = lunet.experiment{
	name = "resnet_fashion",
	description = "A small residual CNN (an nn.Graph) on Fashion-MNIST with light augmentation.",
	config = {
		epochs = 20, lr = 0.1, momentum = 0.9, weight_decay = 5e-4, batch = 128, warmup = 1,
		smoothing = 0.1, c1 = 16, c2 = 32, c3 = 64, blocks = 2, pad = 2, flip = true, seed = 1,
		data = "", limit = 0, threads = 0,
	},
	help = {
		epochs = "passes over the training set",
		lr = "learning rate after the warm-up (cosine decay to 0 by the end)",
		momentum = "SGD's (Nesterov) momentum",
		weight_decay = "L2 penalty on the parameters",
		batch = "images per training step",
		warmup = "epochs over which the learning rate rises linearly from 0 to lr",
		smoothing = "label smoothing of the cross-entropy",
		c1 = "channels of the first stage (28x28)",
		c2 = "channels of the second stage (14x14)",
		c3 = "channels of the third stage (7x7)",
		blocks = "basic blocks per stage",
		pad = "random crops of the image padded with this many zeros (0: none)",
		flip = "mirror half the training images left to right",
		seed = "seed of the random source (weights, shuffling, augmentation)",
		data = "directory holding the Fashion-MNIST .gz files (\"\": the system's copy)",
		limit = "train on the first N training images only (0: all of them)",
		threads = "threads for the matrix products (0: lunet's own choice)",
	},
	at_least = {epochs = 1, lr = 0, momentum = 0, weight_decay = 0, batch = 1, warmup = 0,
		smoothing = 0, c1 = 1, c2 = 1, c3 = 1, blocks = 1, pad = 0, limit = 0, threads = 0},
}
local config = exp.config

local here = arg and arg[0] and arg[0]:match("^(.*)/") or "."
local fashion = dofile(here .. "/fashion_data.lua")
local ds, train, test = fashion.load(exp)

-- ---- the network -------------------------------------------------------------------

local resnet = dofile(here .. "/resnet_model.lua")
local model = resnet.build(config)
model.input_grad = false  -- nobody reads the gradient with respect to the images

local criterion = nn.CrossEntropyLoss{label_smoothing = config.smoothing}
local opt = optim.SGD(model, {lr = config.lr, momentum = config.momentum, nesterov = true,
                              weight_decay = config.weight_decay})
-- report.html draws, per node, the norms of delta and of the gradients.
exp:watch(model)
local nparams = 0
for _, p in ipairs((model:parameters())) do nparams = nparams + p:numel() end
exp:print(string.format("ResNet: %d nodes, %d parameters; channels %d/%d/%d, %d block(s) per "
                        .. "stage", #model, nparams, config.c1, config.c2, config.c3,
                        config.blocks))
exp:print(string.format("epochs %d, batch %d, SGD lr %g (warm-up %g epochs, cosine), weight decay "
                        .. "%g, label smoothing %g, crop pad %d, flip %s, seed %d", config.epochs,
                        config.batch, config.lr, config.warmup, config.weight_decay,
                        config.smoothing, config.pad, tostring(config.flip), config.seed))
exp:print("run directory " .. exp.dir)

-- On --resume, continue after the last saved epoch (0 on a fresh run).
local done = exp:restore(model, opt)
if done > 0 then
	exp:print(string.format("resumed after epoch %d", done))
end

-- Images as {n,1,28,28} (a view: augmenting it writes into the batch buffer).
local function images(t)
	return t:reshape(t:size(1), 1, 28, 28)
end

local ntrain = train.x:size(1)
local nbatches = (ntrain + config.batch - 1) // config.batch
local total_steps = config.epochs * nbatches
local warm = math.floor(config.warmup * nbatches + 0.5)
-- linear warm-up to lr over `warm` steps, then cosine decay to 0
local cosine = optim.schedules.cosine(config.lr, math.max(1, total_steps - warm))
local function lr_at(step)
	if step < warm then return config.lr * (step + 1) / warm end
	return cosine(step - warm)
end

local acc
for epoch = done + 1, config.epochs do
	local start, total, batches = lunet.clock(), 0, 0
	for xb, yb in data.batches(train.x, train.y, config.batch, {shuffle = true}) do
		opt.lr = lr_at((epoch - 1) * nbatches + batches)
		local input_b = images(xb)
		if config.pad > 0 then data.random_crop(input_b, config.pad) end
		if config.flip then data.hflip(input_b) end
		opt:zero_grad()
		local z = model:forward(input_b)
		total = total + criterion:forward(z, yb)
		model:backward(input_b, criterion:backward(z, yb))
		opt:step()
		batches = batches + 1
		exp:progress(batches, nbatches, {loss = total / batches})
	end
	local elapsed = lunet.clock() - start
	-- Test accuracy and loss, and the confusion matrix for report.html, run
	-- `batch` images at a time: every node of the graph keeps its output (and
	-- BatchNorm and the convolutions their buffers) at the size of the last
	-- input, 50 MB per 16-channel 28x28 node at exp:confusion's default of
	-- 1000 images.
	local test_loss
	acc, _, test_loss = exp:confusion(model, images(test.x), test.y,
	                                  {classes = ds.classes, loss = criterion, batch = config.batch})
	fashion.end_epoch(exp, model, opt, {epoch = epoch, train_loss = total / batches,
	                                    test_loss = test_loss, test_accuracy = acc,
	                                    seconds = elapsed, samples = ntrain})
end
fashion.finish(exp, acc, config.epochs)
