-- toy_experiment.lua -- a tiny lunet.experiment script for the tests of
-- `lunet sweep` and `lunet runs` (tests/sh/test_sweep.sh, test_slurm.sh):
-- a 2-4-2 network learns which side of a line 16 points are on, 3 epochs of
-- 4 steps, with exp:watch and exp:confusion.  Its name does not match
-- test_*, so CTest does not run it alone.
--   fail=PATH: the run fails at epoch 2 while the file PATH.<seed> exists.
--   hold=PATH: at epoch 2, while PATH.on exists, the run writes PATH.<seed>
--   and waits to be interrupted.
local exp <close> = lunet.experiment{name = "toy",
	config = {lr = 0.1, seed = 1, epochs = 3, fail = "", hold = ""}}
local cfg = exp.config
lunet.seed(cfg.seed)
local model = nn.Sequential{nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 2)}
local opt = optim.SGD(model, {lr = cfg.lr, momentum = 0.9})
exp:watch(model)
local done = exp:restore(model, opt)
local rows, y = {}, {}
for i = 1, 16 do
	rows[i] = {math.sin(i), math.cos(3 * i)}
	y[i] = rows[i][1] + 0.5 * rows[i][2] > 0 and 1 or 2
end
local x = lunet.tensor(rows)
local ce = nn.CrossEntropyLoss()
local function exists(p) local f = io.open(p) if f then f:close() end return f ~= nil end
for epoch = done + 1, cfg.epochs do
	if epoch == 2 and cfg.fail ~= "" and exists(cfg.fail .. "." .. cfg.seed) then
		io.stderr:write("line one of the failure\n")
		error("failing on purpose at epoch 2")
	end
	if epoch == 2 and cfg.hold ~= "" and exists(cfg.hold .. ".on") then
		io.open(cfg.hold .. "." .. cfg.seed, "w"):close()
		while true do lunet.sys.sleep(0.05) end
	end
	local total = 0
	for i = 1, 4 do
		opt:zero_grad()
		local z = model:forward(x)
		total = total + ce:forward(z, y)
		model:backward(x, ce:backward(z, y))
		opt:step()
		exp:progress(i, 4)
	end
	local acc = exp:confusion(model, x, y, {"left", "right"})
	exp:log{epoch = epoch, train_loss = total / 4, test_accuracy = acc}
	exp:checkpoint(model, opt)
end
