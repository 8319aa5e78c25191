-- dist_bench.lua -- data-parallel training against one process: one
-- workload, one machine-readable line.
--
--   OPENBLAS_NUM_THREADS=1 lunet dist_bench.lua WORKLOAD [MODE] [STEPS]
--   OPENBLAS_NUM_THREADS=1 mpirun -np 2 lunet dist_bench.lua WORKLOAD [MODE] [STEPS]
--
-- WORKLOAD is mlp256 or cnn, the networks, batches and optimiser of
-- lunet_bench.lua (README.md here); the batch is the global one, so under
-- mpirun each rank takes its share of it (data.batches{shard=true}) and
-- the ranks average their gradients (dist.average_gradients) before each
-- step.  Each process runs its products on 1 thread.  Run alone (not under
-- a launcher), it is the one-process baseline.
--
-- MODE (under mpirun):
--   plain     model:backward, then dist.average_gradients (the default)
--   after     backward layer by layer from the script, then an allreduce
--             of as many floats as the gradients (dist.iallreduce, waited
--             for at once)
--   overlap   the same allreduce started before backward, progressed with
--             request:test() after each layer, waited for at the end: the
--             best that overlapping the allreduce with backward could do
--             (a real overlap cannot start before the first gradient
--             exists).  Against `after`, the same work and the same calls,
--             only the time of the allreduce moves.
-- after and overlap reduce a buffer of their own, not the gradients (the
-- weights drift apart, only the time counts) and so skip the packing that
-- dist.average_gradients does.
--
-- The last line printed (by rank 0) is
--
--   RESULT side=lunet-dist workload=... mode=... ranks=... threads=... steps=...
--          samples=... seconds=... samples_per_s=... allreduce_s=...
--          allreduce_alone_s=... allocs_per_step=... loss=...
--
-- seconds: the timed steps, the slowest rank's.  allreduce_s: time spent
-- inside dist.average_gradients (or waiting for the request), averaged
-- over the ranks, which includes waiting for the slower rank.
-- allreduce_alone_s: one dist.average_gradients on ranks that arrive
-- together (after a barrier), measured after the timed steps.
local lunet = lunet or require "lunet"
local nn, optim, data, dist = lunet.nn, lunet.optim, lunet.data, lunet.dist

local workload, mode = arg[1], arg[2] or "plain"
local steps_override = tonumber(arg[3])
if (workload ~= "mlp256" and workload ~= "cnn") or
	(mode ~= "plain" and mode ~= "after" and mode ~= "overlap") then
	io.stderr:write("usage: [mpirun -np N] lunet dist_bench.lua mlp256|cnn " ..
		"[plain|after|overlap] [STEPS]\n")
	os.exit(2)
end

local ranks, rank = 1, 0
if dist.launched() then
	if not dist.available then
		error("dist_bench.lua: started by mpirun, but this lunet was built without MPI " ..
			"(configure it with cmake -DLUNET_MPI=ON)")
	end
	rank, ranks = dist.init()
end
local sharded = ranks > 1
lunet.gemm_threads(1)
lunet.seed(1)

-- ---- the workload (as in lunet_bench.lua) ---------------------------------------------
local batch, nsteps, warmup, model, shape
if workload == "mlp256" then
	batch, warmup = 256, 5
	model = nn.Sequential{nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
		nn.Linear(128, 10)}
else
	batch, nsteps, warmup, shape = 64, 200, 3, {60000, 1, 28, 28}
	model = nn.Sequential{
		nn.Conv2d(1, 16, 3, {padding = 1}), nn.ReLU(), nn.MaxPool2d(2),
		nn.Conv2d(16, 32, 3, {padding = 1}), nn.ReLU(), nn.MaxPool2d(2),
		nn.Flatten(), nn.Linear(1568, 10)}
end
local ds = data.fashion_mnist()
local x, y = ds.train.x, ds.train.y
if shape then x = x:reshape(table.unpack(shape)) end
-- this rank's piece of every batch, in order, the last partial batch dropped
local xs, ys = {}, {}
for xb, yb in data.batches(x, y, batch, {drop_last = true, shard = sharded}) do
	xs[#xs + 1], ys[#ys + 1] = xb, yb
end
nsteps = steps_override or nsteps or #xs   -- mlp256: one epoch

if sharded then dist.broadcast_parameters(model) end
local crit = nn.CrossEntropyLoss()
local opt = optim.SGD(model, {lr = 0.01, momentum = 0.9})
-- no gradient with respect to the data (as lunet_bench.lua), also when
-- backward goes layer by layer
model.input_grad = false
local layers = {}
for i = 1, #model do layers[i] = model:get(i) end
layers[1].input_grad = false
local _, grads = model:parameters()
local total = 0
for _, g in ipairs(grads) do total = total + g:numel() end
local dummy = lunet.zeros(total)   -- what `after` and `overlap` reduce

-- backward through the layers one by one, as Sequential does in C;
-- between layers, on_layer() (overlap: let MPI progress)
local function backward_layers(xb, gz, on_layer)
	local g = gz
	for i = #layers, 1, -1 do
		local input = i > 1 and layers[i - 1].output or xb
		g = layers[i]:backward(input, g)
		if on_layer then on_layer() end
	end
end

local allreduce_s = 0
local function step(i)
	local k = (i - 1) % #xs + 1
	local xb, yb = xs[k], ys[k]
	opt:zero_grad()
	local z = model:forward(xb)
	local loss = crit:forward(z, yb)
	local gz = crit:backward(z, yb)
	if mode == "plain" then
		model:backward(xb, gz)
	elseif mode == "after" then
		backward_layers(xb, gz)
		local t0 = lunet.clock()
		dist.iallreduce(dummy):wait()
		allreduce_s = allreduce_s + lunet.clock() - t0
	else
		local req = dist.iallreduce(dummy)
		backward_layers(xb, gz, function() req:test() end)
		local t0 = lunet.clock()
		req:wait()
		allreduce_s = allreduce_s + lunet.clock() - t0
	end
	if sharded and mode == "plain" then
		local t0 = lunet.clock()
		dist.average_gradients(model)
		allreduce_s = allreduce_s + lunet.clock() - t0
	end
	opt:step()
	return loss
end

-- ---- measure -------------------------------------------------------------------------
for i = 1, warmup do step(i) end
allreduce_s = 0
collectgarbage()
collectgarbage()
if sharded then dist.barrier() end
local a0 = lunet.alloc_stats()
local t0 = lunet.clock()
local loss
for i = 1, nsteps do loss = step(i) end
local seconds = lunet.clock() - t0
local a1 = lunet.alloc_stats()

local alone = 0
if sharded then
	local reps = 20
	for _ = 1, reps do
		dist.barrier()
		local s = lunet.clock()
		dist.average_gradients(model)
		alone = alone + lunet.clock() - s
	end
	alone = alone / reps
	local t = lunet.tensor{seconds}
	dist.allreduce(t, "max")
	seconds = t[1]
	t = lunet.tensor{allreduce_s, alone}
	dist.allreduce(t, "mean")
	allreduce_s, alone = t[1], t[2]
end

if rank == 0 then
	print(string.format("RESULT side=lunet-dist workload=%s mode=%s ranks=%d threads=%d steps=%d " ..
		"samples=%d seconds=%.6f samples_per_s=%.1f allreduce_s=%.6f allreduce_alone_s=%.9f " ..
		"allocs_per_step=%.3f loss=%.4g",
		workload, mode, ranks, lunet.gemm_threads(), nsteps, nsteps * batch, seconds,
		nsteps * batch / seconds, allreduce_s, alone, (a1.allocs - a0.allocs) / nsteps, loss))
end
