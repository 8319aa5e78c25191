-- lunet_bench.lua -- lunet's side of the benchmark: one workload, one
-- thread count, one machine-readable line.
--
--   OPENBLAS_NUM_THREADS=1 lunet experiments/bench/lunet_bench.lua WORKLOAD THREADS [STEPS]
--
-- WORKLOAD is one of tiny, mlp64, mlp256, cnn, lstm, transformer, resnet
-- (see README.md here and torch_bench.py, which mirrors this file line for
-- line).  lstm and transformer are the models of the character-level
-- experiments, built by experiments/char_models.lua with their
-- configuration, trained on the fortunes corpus; resnet the residual
-- network of resnet_fashion.lua (an nn.Graph), built by
-- experiments/resnet_model.lua.  STEPS overrides
-- the number of timed steps (for profiling a shortened run).  The last
-- line printed is
--
--   RESULT side=lunet workload=... threads=... gemm_threads=... gemm_impl=...
--          steps=... samples=... seconds=... samples_per_s=... allocs_per_step=...
--          peak_rss_kb=... flops_per_step=... needed_flops_per_step=...
--          gemm_s_per_step=... gemm_gflops=... blas_s_per_step=... blas_gflops=... loss=...
--
-- flops_per_step counts the products lunet makes in a step;
-- needed_flops_per_step those whose result is used.  Every model here has
-- input_grad = false, as PyTorch skips the gradient with respect to the
-- data too, so the first layer's input gradient is not made and the two
-- counts are the same: the work a training step needs, the same for both
-- sides.
-- gemm_* is the time of the step's matrix products alone, made by ln_gemm
-- as the layers make them (lunet's own kernels where the CPU has them);
-- blas_* the same products through OpenBLAS's cblas_sgemm.
--
-- loss is that of the last timed step: the two sides should agree
-- roughly, a check that they train the same network on the same data.
--
-- Data loading, model construction and a few warm-up steps are outside
-- the timed region.  Allocations are counted by lunet's allocator
-- (ln_malloc) over the timed steps only.
local lunet = lunet or require "lunet"
local nn, optim, data = lunet.nn, lunet.optim, lunet.data

local WORKLOADS = {tiny = true, mlp64 = true, mlp256 = true, cnn = true, lstm = true,
	transformer = true, resnet = true}
local workload, threads = arg[1], tonumber(arg[2])
if not WORKLOADS[workload] or not threads or threads < 1 or threads % 1 ~= 0 then
	io.stderr:write("usage: lunet lunet_bench.lua tiny|mlp64|mlp256|cnn|lstm|transformer|resnet THREADS [STEPS]\n")
	os.exit(2)
end
local steps_override = tonumber(arg[3])

for _, f in ipairs{"clock", "alloc_stats", "bench_gemm", "gemm_threads", "gemm_impl"} do
	if not lunet[f] then
		error("lunet." .. f .. " is missing: this lunet was built without the bench hooks (src/lua/lbench.c)")
	end
end
lunet.gemm_threads(threads)
lunet.seed(1)

-- VmHWM (peak resident set) of this process, in kB, from /proc.
local function peak_rss_kb()
	local f = io.open("/proc/self/status")
	if not f then return -1 end
	local s = f:read("a")
	f:close()
	return tonumber(s:match("VmHWM:%s*(%d+)")) or -1
end

-- ---- the matrix products of one training step ----------------------------
-- Each entry is {trans_a, trans_b, m, n, k, beta, count, needed}: count
-- calls of ln_gemm with these arguments, as the layers make them (see
-- src/nn/linear.c and src/nn/conv2d.c); needed is false for a product
-- made but unused (none here: the first layer, first = true below, sees
-- the input of a model with input_grad = false and does not make its
-- input gradient at all).

-- Linear nin->nout at batch N: forward y = x W^T (beta 1: y starts as the
-- bias), backward gW += gy^T x and, but in the first layer, gx = gy W.
local function linear_products(list, N, nin, nout, first)
	list[#list + 1] = {false, true, N, nout, nin, 1, 1, true}
	list[#list + 1] = {true, false, nout, nin, N, 1, 1, true}
	if not first then list[#list + 1] = {false, false, N, nin, nout, 0, 1, true} end
end

-- Conv2d lowered to products per sample (conv2d.c's default strategy),
-- with K = cin*k*k and P = output pixels per sample: forward
-- y_n = W col_n (beta 1: y_n starts as the bias), backward
-- gW += gy_n col_n^T and, but in the first layer, gcol = W^T gy_n, each
-- once per sample.
local function conv_products(list, N, cin, cout, k, P, first)
	local K = cin * k * k
	list[#list + 1] = {false, false, cout, P, K, 1, N, true}
	list[#list + 1] = {false, true, cout, K, P, 1, N, true}
	if not first then list[#list + 1] = {true, false, K, P, cout, 0, N, true} end
end

-- Times every product of a step with the product code `impl` ("auto":
-- what the layers use; "blas": OpenBLAS's cblas_sgemm); returns seconds
-- per step, the FLOPs of a step (2*m*n*k per product) and those of its
-- needed products.  Each shape runs for ~budget seconds.
local function gemm_bound(products, budget, impl)
	local total_s, flops, needed = 0, 0, 0
	for _, p in ipairs(products) do
		local ta, tb, m, n, k, beta, count, is_needed = table.unpack(p)
		local s = lunet.bench_gemm(m, n, k, ta, tb, 3, beta, impl)
		local iters = math.max(3, math.floor(budget / (s / 3)))
		s = lunet.bench_gemm(m, n, k, ta, tb, iters, beta, impl)
		total_s = total_s + count * s / iters
		flops = flops + count * 2 * m * n * k
		if is_needed then needed = needed + count * 2 * m * n * k end
	end
	return total_s, flops, needed
end

-- LSTM layers of h units over inputs of nin at batch N and T steps, as
-- rnn.c makes them: the input projection of all steps in
-- one product, forward x W_ih^T (N*T, 4h, nin) and backward gW_ih +=
-- gz^T x and gx = gz W_ih; the recurrent product at every step, forward
-- h W_hh^T (N, 4h, h), backward gW_hh += gz_t^T h_{t-1} and
-- gh = gz_t W_hh.
local function lstm_products(list, N, T, nin, h, layers)
	for l = 1, layers do
		local input = l == 1 and nin or h
		list[#list + 1] = {false, true, N * T, 4 * h, input, 1, 1, true}
		list[#list + 1] = {true, false, 4 * h, input, N * T, 1, 1, true}
		list[#list + 1] = {false, false, N * T, input, 4 * h, 0, 1, true}
		list[#list + 1] = {false, true, N, 4 * h, h, 1, T, true}
		list[#list + 1] = {true, false, 4 * h, h, N, 1, T, true}
		list[#list + 1] = {false, false, N, h, 4 * h, 0, T, true}
	end
end

-- Causal self-attention of width d with H heads at batch N and T steps:
-- the in and out projections as Linear layers over N*T rows, and per
-- sample and head (count N*H, head width dh = d/H) the scores Q K^T
-- (T, T, dh) and the output P V (T, dh, T), backward dP = dO V^T,
-- dV = P^T dO, dQ = dS K and dK = dS^T Q.
local function attention_products(list, N, T, d, H)
	local dh, count = d // H, N * H
	linear_products(list, N * T, d, 3 * d)
	list[#list + 1] = {false, true, T, T, dh, 0, count, true}
	list[#list + 1] = {false, false, T, dh, T, 0, count, true}
	list[#list + 1] = {false, true, T, T, dh, 0, count, true}
	list[#list + 1] = {true, false, T, dh, T, 0, count, true}
	list[#list + 1] = {false, false, T, dh, T, 0, count, true}
	list[#list + 1] = {true, false, T, dh, T, 0, count, true}
	linear_products(list, N * T, d, d)
end

-- ---- workloads ---------------------------------------------------------------
-- Each returns step(i) (one training step on batch i, returning its loss), the number of
-- timed steps, samples per step, warm-up steps, and the products of a step.
-- Weights keep lunet's default initialisation, He normal (std
-- sqrt(2/fan_in)) with zero biases; torch_bench.py sets the same.

local function tiny()
	local x = lunet.tensor{{0, 0}, {0, 1}, {1, 0}, {1, 1}}
	local y = lunet.tensor{{0}, {1}, {1}, {0}}
	local model = nn.Sequential{nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1), nn.Sigmoid()}
	model.input_grad = false   -- as PyTorch: no gradient with respect to the data
	local crit = nn.BCELoss()
	local opt = optim.Adam(model, {lr = 0.01})
	local function step()
		opt:zero_grad()
		local out = model:forward(x)
		local loss = crit:forward(out, y)
		model:backward(x, crit:backward(out, y))
		opt:step()
		return loss
	end
	local products = {}
	linear_products(products, 4, 2, 8, true)
	linear_products(products, 4, 8, 1)
	return step, 10000, 4, 100, products
end

local function fashion(batch, shape)
	local ds = data.fashion_mnist()
	local x, y = ds.train.x, ds.train.y
	if shape then x = x:reshape(table.unpack(shape)) end
	-- batches by slicing (views), in order, the last partial batch dropped
	local xs, ys = {}, {}
	for xb, yb in data.batches(x, y, batch, {drop_last = true}) do
		xs[#xs + 1], ys[#ys + 1] = xb, yb
	end
	return xs, ys
end

local function classifier(model, batch, xs, ys)
	model.input_grad = false   -- as PyTorch: no gradient with respect to the data
	local crit = nn.CrossEntropyLoss()
	local opt = optim.SGD(model, {lr = 0.01, momentum = 0.9})
	local nb = #xs
	return function(i)
		local xb, yb = xs[(i - 1) % nb + 1], ys[(i - 1) % nb + 1]
		opt:zero_grad()
		local out = model:forward(xb)
		local loss = crit:forward(out, yb)
		model:backward(xb, crit:backward(out, yb))
		opt:step()
		return loss
	end, nb
end

local function mlp(batch)
	local xs, ys = fashion(batch)
	local model = nn.Sequential{nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
		nn.Linear(128, 10)}
	local step, nb = classifier(model, batch, xs, ys)
	local products = {}
	linear_products(products, batch, 784, 256, true)
	linear_products(products, batch, 256, 128)
	linear_products(products, batch, 128, 10)
	return step, nb, batch, 5, products   -- one epoch
end

local function cnn()
	local batch = 64
	local xs, ys = fashion(batch, {60000, 1, 28, 28})
	local model = nn.Sequential{
		nn.Conv2d(1, 16, 3, {padding = 1}), nn.ReLU(), nn.MaxPool2d(2),
		nn.Conv2d(16, 32, 3, {padding = 1}), nn.ReLU(), nn.MaxPool2d(2),
		nn.Flatten(), nn.Linear(1568, 10)}
	local step = classifier(model, batch, xs, ys)
	local products = {}
	conv_products(products, batch, 1, 16, 3, 28 * 28, true)
	conv_products(products, batch, 16, 32, 3, 14 * 14)
	linear_products(products, batch, 1568, 10)
	return step, 200, batch, 3, products
end

-- The model of experiments/char_<kind>.lua, its optimiser (without the
-- learning-rate schedule) and its training step with the gradient norm
-- clipped, on the fortunes corpus's training text in data.sequences'
-- order without shuffle (batch k holds window r * nb + k of each stream r).
local function char(kind)
	local here = arg[0]:match("^(.*)/") or "."
	local models = dofile(here .. "/../char_models.lua")
	local cfg = models.config[kind]
	local corpus = data.fortunes()
	local V = #corpus.vocab
	local model, feed = models[kind](cfg, V)
	local opt = models.optimiser(kind, model, cfg)
	local crit = nn.CrossEntropyLoss()
	local B, T = cfg.batch, cfg.seq_len
	local batches = data.sequences(corpus.train, B, T)
	local function step()
		local x, y = batches()
		local input = feed(x)
		opt:zero_grad()
		local z = model:forward(input)
		local loss = crit:forward(z, y)
		model:backward(input, crit:backward(z, y))
		optim.clip_grad_norm(model, cfg.clip)
		opt:step()
		return loss
	end
	local products = {}
	if kind == "lstm" then
		lstm_products(products, B, T, cfg.embed, cfg.hidden, cfg.layers)
		linear_products(products, B * T, cfg.hidden, V)
		return step, 60, B * T, 3, products
	end
	for _ = 1, cfg.layers do
		attention_products(products, B, T, cfg.d, cfg.heads)
		linear_products(products, B * T, cfg.d, 4 * cfg.d)
		linear_products(products, B * T, 4 * cfg.d, cfg.d)
	end
	linear_products(products, B * T, cfg.d, V)
	return step, 30, B * T, 3, products
end

-- The products of a graph's Conv2d and Linear nodes at batch N, read from
-- their weights and the outputs of the last forward; a node that reads
-- the graph's input is first (no input gradient).
local function graph_products(model, N)
	local list = {}
	for _, node in ipairs(model:nodes()) do
		local m, first = node.module, node.inputs[1] == "input 1"
		if m.name == "Conv2d" then
			local w, y = m.weight, m.output
			conv_products(list, N, w:size(2), w:size(1), w:size(3), y:size(3) * y:size(4), first)
		elseif m.name == "Linear" then
			linear_products(list, N, m.weight:size(2), m.weight:size(1), first)
		end
	end
	return list
end

-- The residual network of experiments/resnet_fashion.lua with one block
-- per stage (experiments/resnet_model.lua's defaults), on batches of 128 images; no
-- augmentation (the script's crops and flips are data, not the step).
local function resnet()
	local batch = 128
	local xs, ys = fashion(batch, {60000, 1, 28, 28})
	local here = arg[0]:match("^(.*)/") or "."
	local models = dofile(here .. "/../resnet_model.lua")
	local model = models.build(models.defaults)
	local step = classifier(model, batch, xs, ys)
	-- the shapes of the products are known after a forward: asked for
	-- after the timed steps
	return step, 30, batch, 3, function() return graph_products(model, batch) end
end

local step, nsteps, per_step, warmup, products
if workload == "resnet" then
	step, nsteps, per_step, warmup, products = resnet()
elseif workload == "lstm" or workload == "transformer" then
	step, nsteps, per_step, warmup, products = char(workload)
elseif workload == "tiny" then
	step, nsteps, per_step, warmup, products = tiny()
elseif workload == "cnn" then
	step, nsteps, per_step, warmup, products = cnn()
else
	step, nsteps, per_step, warmup, products = mlp(workload == "mlp64" and 64 or 256)
end
nsteps = steps_override or nsteps

-- ---- measure -------------------------------------------------------------------
for i = 1, warmup do step(i) end
collectgarbage()
collectgarbage()
local a0 = lunet.alloc_stats()
local t0 = lunet.clock()
local loss
for i = 1, nsteps do loss = step(i) end
local t1 = lunet.clock()
local seconds = t1 - t0
-- the timed window on the monotonic clock, for `perf report --time`
-- (experiments/bench/profile records with -k CLOCK_MONOTONIC)
io.stderr:write(string.format("TIMED %.6f,%.6f\n", t0, t1))
local a1 = lunet.alloc_stats()
local allocs_per_step = (a1.allocs - a0.allocs) / nsteps

-- the GEMM-only bounds for the same shapes, measured after the timed loop:
-- lunet's own products as the layers make them, and cblas_sgemm
if type(products) == "function" then products = products() end
local budget = workload == "tiny" and 0.01 or 0.05
local gemm_s, flops, needed_flops = gemm_bound(products, budget, "auto")
local blas_s = gemm_bound(products, budget, "blas")

print(string.format("RESULT side=lunet workload=%s threads=%d gemm_threads=%d gemm_impl=%s steps=%d " ..
	"samples=%d seconds=%.6f samples_per_s=%.1f allocs_per_step=%.3f peak_rss_kb=%d " ..
	"flops_per_step=%.0f needed_flops_per_step=%.0f gemm_s_per_step=%.9f gemm_gflops=%.3f blas_s_per_step=%.9f " ..
	"blas_gflops=%.3f loss=%.4g",
	workload, threads, lunet.gemm_threads(), (lunet.gemm_impl():gsub("%s", "")), nsteps,
	nsteps * per_step, seconds, nsteps * per_step / seconds, allocs_per_step, peak_rss_kb(),
	flops, needed_flops, gemm_s, flops / gemm_s * 1e-9, blas_s, flops / blas_s * 1e-9, loss))
