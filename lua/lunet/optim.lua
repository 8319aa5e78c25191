-- optim.lua -- learning-rate schedules, the pure-Lua part of lunet.optim.
-- Called with the lunet table; the optimisers themselves come from C
-- (src/lua/loptim.c).
--
-- A schedule is a plain function of the step (0 for the first step or
-- epoch: the number of steps already taken) returning a learning rate:
--
--   local sched = optim.schedules.cosine(0.1, epochs)
--   for epoch = 0, epochs - 1 do
--     opt.lr = sched(epoch)
--     ...
--   end
local lunet = ...
local optim = lunet.optim

local schedules = {}
optim.schedules = schedules

local function check_number(fname, name, v, min, strict)
	if type(v) ~= "number" or v ~= v or v == math.huge or v == -math.huge then
		error(string.format("optim.schedules.%s: %s must be a finite number, got %s",
			fname, name, tostring(v)), 3)
	end
	if (strict and v <= min) or (not strict and v < min) then
		error(string.format("optim.schedules.%s: %s must be %s %g, got %g",
			fname, name, strict and ">" or ">=", min, v), 3)
	end
end

local function check_integer(fname, name, v, min)
	if math.type(v) ~= "integer" or v < min then
		error(string.format("optim.schedules.%s: %s must be an integer >= %d, got %s",
			fname, name, min, tostring(v)), 3)
	end
end

-- The step a schedule is called with: a number >= 0.
local function check_step(fname, step)
	if type(step) ~= "number" or step < 0 or step ~= step then
		error(string.format("optim.schedules.%s: step must be a number >= 0, got %s",
			fname, tostring(step)), 3)
	end
end

-- step(lr0, step_size, gamma): lr0 * gamma^floor(step / step_size)
-- (PyTorch's StepLR: decays by gamma every step_size steps).
function schedules.step(lr0, step_size, gamma)
	check_number("step", "lr0", lr0, 0)
	check_integer("step", "step_size", step_size, 1)
	check_number("step", "gamma", gamma, 0)
	return function(step)
		check_step("step", step)
		return lr0 * gamma ^ (step // step_size)
	end
end

-- exponential(lr0, gamma): lr0 * gamma^step.
function schedules.exponential(lr0, gamma)
	check_number("exponential", "lr0", lr0, 0)
	check_number("exponential", "gamma", gamma, 0)
	return function(step)
		check_step("exponential", step)
		return lr0 * gamma ^ step
	end
end

-- cosine(lr0, total[, lr_min=0]): lr_min + (lr0 - lr_min) * (1 + cos(pi * step / total)) / 2,
-- from lr0 at step 0 down to lr_min at step total, and lr_min after it
-- (PyTorch's CosineAnnealingLR over one half period).
function schedules.cosine(lr0, total, lr_min)
	lr_min = lr_min or 0
	check_number("cosine", "lr0", lr0, 0)
	check_integer("cosine", "total", total, 1)
	check_number("cosine", "lr_min", lr_min, 0)
	return function(step)
		check_step("cosine", step)
		local s = math.min(step, total)
		return lr_min + (lr0 - lr_min) * (1 + math.cos(math.pi * s / total)) / 2
	end
end

-- warmup(lr0, warmup_steps[, after]): linear warm-up, lr0 * (step + 1) / warmup_steps
-- for step < warmup_steps (so that the first step already learns and step
-- warmup_steps - 1 reaches lr0); then after(step - warmup_steps) if a
-- schedule `after` is given (it starts at its own step 0), else lr0.
function schedules.warmup(lr0, warmup_steps, after)
	check_number("warmup", "lr0", lr0, 0)
	check_integer("warmup", "warmup_steps", warmup_steps, 1)
	if after ~= nil and type(after) ~= "function" then
		error("optim.schedules.warmup: after must be a schedule (a function of the step), got " ..
			type(after), 2)
	end
	return function(step)
		check_step("warmup", step)
		if step < warmup_steps then
			return lr0 * (step + 1) / warmup_steps
		end
		if after then return after(step - warmup_steps) end
		return lr0
	end
end
