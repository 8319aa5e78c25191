-- test_report.lua -- what a run records for its report and the page itself:
-- exp:confusion (the matrix, accuracy, loss, confusion.csv, the errors),
-- exp:watch (per-layer norms of delta and of the parameter gradients,
-- averaged over the batches sampled, gradients.csv, resume), status.lua and
-- the lock through a run's life, and report.html: its sections, train and
-- test curves of one quantity on one chart, the confusion matrix and the
-- most confused pairs, a chart per layer, the rows, nothing fetched from
-- the network, refreshed at each epoch.  The page in a real browser is
-- tests/sh/test_browser.sh.
local lunet = lunet or require "lunet"
local nn, optim, sys = lunet.nn, lunet.optim, lunet.sys
local report = lunet._report

local SEED = 7
local harness = dofile((arg[0]:match("^(.*)/") or ".") .. "/harness.lua")
local h = harness.new{seed = SEED, reseed = true}
local test, check, eq, near, raises = h.test, h.check, h.eq, h.near, h.raises
local read_file = h.read_file

local DIR, path = h.tempdir()

local function new(name, config, args)
	return lunet.experiment{name = name, root = DIR, args = args or {}, config = config or {},
		output = assert(io.open(path("sink"), "w"))}
end

-- The number of times plain text s occurs in text.
local function count(text, s)
	local n, i = 0, 1
	while true do
		local a, b = text:find(s, i, true)
		if not a then return n end
		n, i = n + 1, b + 1
	end
end

-- The element of the page that starts at the first `open` and ends at the
-- matching `close` (no nesting of the same tag in between).
local function element(text, open, close)
	local a = text:find(open, 1, true)
	if not a then return nil end
	local _, b = text:find(close, a, true)
	return text:sub(a, b)
end

-- A "model" whose output for input row {i} is logits[i]: the predictions
-- are known in advance.  It records the mode it was run in.
local function fixed_model(logits)
	local m = {training = true, modes = {}}
	function m:forward(x)
		self.modes[#self.modes + 1] = self.training
		local rows = {}
		for i = 1, x:size(1) do rows[i] = logits[math.tointeger(x:get(i, 1))] end
		return lunet.tensor(rows)
	end
	function m:evaluate() self.training = false end
	function m:train() self.training = true end
	return m
end

-- ---- exp:confusion ------------------------------------------------------------------------

-- 7 rows, 3 classes; true labels y; predictions: argmax of logits.
local LOGITS = {{3, 0, 0}, {0, 2, 0}, {1, 0, 0}, {0, 0, 5}, {0, 4, 1}, {0, 1, 0}, {2, 0, 1}}
local Y = {1, 2, 2, 3, 3, 2, 1}
-- predicted: 1, 2, 1, 3, 2, 2, 1

test("exp:confusion: matrix, accuracy, loss, confusion.csv; the model's mode is restored", function()
	local exp = new("cm")
	local x = lunet.arange(7):reshape(7, 1)
	local model = fixed_model(LOGITS)
	local ce = nn.CrossEntropyLoss()
	local acc, m, loss = exp:confusion(model, x, lunet.tensor(Y), {classes = {"a", "b", "c"}, loss = ce,
		batch = 3})
	near(acc, 5 / 7, 1e-12, "accuracy")
	h.same(m, {{2, 0, 0}, {1, 2, 0}, {0, 1, 1}}, 0, "the matrix")
	near(loss, ce:forward(lunet.tensor(LOGITS), Y), 1e-6, "the mean loss over every row")
	eq(#model.modes, 3, "3 batches of at most 3")
	check(not model.modes[1] and not model.modes[3], "run in evaluate mode")
	check(model.training, "back in training mode")
	eq(read_file(exp.dir .. "confusion.csv"), "class,a,b,c\na,2,0,0\nb,1,2,0\nc,0,1,1\n", "confusion.csv")
	-- a table of labels, class names as a list, no loss: two results
	local a2, m2, l2 = exp:confusion(model, x, Y, {"a", "b", "c"})
	check(a2 == acc and l2 == nil and m2[3][2] == 1, "labels as a table; names as the 4th argument")
	-- names that clash: numbers head the columns
	exp:confusion(model, x, Y, {"x", "x", "class"})
	eq(read_file(exp.dir .. "confusion.csv"), "class,1,2,3\nx,2,0,0\nx,1,2,0\nclass,0,1,1\n", "clashing names")
	exp:finish()
end)

test("exp:confusion: the mistakes it names", function()
	local exp = new("cm_bad")
	local x = lunet.arange(7):reshape(7, 1)
	local model = fixed_model(LOGITS)
	raises("exp:confusion: label 4 of row 2 is not a class in 1..3", exp.confusion, exp, model, x,
		{1, 4, 1, 1, 1, 1, 1})
	check(model.training, "the mode is restored after an error too")
	raises("exp:confusion: label 1.5 of row 1 is not a class in 1..3", exp.confusion, exp, model, x,
		{1.5, 1, 1, 1, 1, 1, 1})
	raises("exp:confusion: expected 7 labels, got 6", exp.confusion, exp, model, x, {1, 1, 1, 1, 1, 1})
	raises("exp:confusion: expected labels of shape {7}, got {7,1}", exp.confusion, exp, model, x, x)
	raises("exp:confusion: 2 class names for 3 outputs", exp.confusion, exp, model, x, Y, {"a", "b"})
	raises("exp:confusion: class names must be strings, got number at 2", exp.confusion, exp, model, x, Y,
		{"a", 2, "c"})
	raises("exp:confusion: unknown option 'clases'", exp.confusion, exp, model, x, Y, {clases = {}})
	raises("exp:confusion: batch must be an integer >= 1, got 0", exp.confusion, exp, model, x, Y, {batch = 0})
	raises("exp:confusion: expected an input tensor {N,...}, got a tensor of shape {7}", exp.confusion, exp,
		model, lunet.arange(7), Y)
	raises("exp:confusion: expected a model, got number", exp.confusion, exp, 3, x, Y)
	raises("exp:confusion: expected the model's output to be {N,classes}, got {7}", exp.confusion, exp,
		{forward = function() return lunet.zeros(7) end, evaluate = function() end}, x, Y)
	exp:finish()
end)

test("exp:confusion in batches: the same matrix, accuracy and loss as in one pass, in less memory", function()
	-- the residual network of experiments/resnet_fashion.lua, narrow: a graph
	-- whose every node keeps buffers at the size of its last input
	local resnet = dofile("../../experiments/resnet_model.lua")
	lunet.seed(SEED)
	local model = resnet.build{c1 = 3, c2 = 4, c3 = 5, blocks = 1}
	model.input_grad = false
	local x = lunet.randn(37, 1, 28, 28)
	model:forward(x)  -- BatchNorm's running statistics move off their start
	local y = {}
	for i = 1, 37 do y[i] = (i * 7) % 10 + 1 end
	local ce = nn.CrossEntropyLoss()
	local exp = new("cm_batches")
	local function live() collectgarbage() collectgarbage() return lunet.alloc_stats().bytes_live end
	local before = live()
	local a8, m8, l8 = exp:confusion(model, x, y, {loss = ce, batch = 8})  -- 4 x 8 and 5
	local after8 = live()
	check(model.training, "back in training mode")
	-- as much again as the batches of 8 took is not enough for all 37 at once
	lunet.memory_limit(after8 + (after8 - before))
	local ok, err = pcall(exp.confusion, exp, model, x, y, {loss = ce, batch = 37})
	lunet.memory_limit(0)
	check(not ok and tostring(err):find("out of memory", 1, true), tostring(err))
	local a, m, l = exp:confusion(model, x, y, {loss = ce, batch = 37})
	eq(a8, a, "accuracy")
	h.same(m8, m, 0, "the matrix")
	near(l8, l, 1e-5, "the mean loss")
	local total = 0
	for t = 1, 10 do for p = 1, 10 do total = total + m[t][p] end end
	eq(total, 37, "every row counted once")
	exp:finish()
end)

-- ---- exp:watch ----------------------------------------------------------------------------

local function mlp()
	return nn.Sequential{nn.Linear(3, 4), nn.Tanh(), nn.Sequential{nn.Linear(4, 2)}}
end

-- One training step on a random batch.
local function step(model, opt, ce)
	local x = lunet.randn(5, 3)
	local y = {1, 2, 1, 2, 2}
	opt:zero_grad()
	local z = model:forward(x)
	ce:forward(z, y)
	model:backward(x, ce:backward(z, y))
	opt:step()
end

test("exp:watch: per layer, the mean norms over the batches sampled; gradients.csv", function()
	local exp = new("watch", {epochs = 2})
	local model, ce = mlp(), nn.CrossEntropyLoss()
	local opt = optim.SGD(model, {lr = 0.1})
	exp:watch(model, {samples = 4})
	-- 8 batches, 4 samples: after batches 2, 4 and 6 (not the last, which may be short).
	local sum_d, sum_g = {0, 0, 0}, {0, 0, 0}
	for i = 1, 8 do
		step(model, opt, ce)
		exp:progress(i, 8)
		if i % 2 == 0 and i < 8 then
			for k, r in ipairs(model:trace()) do
				sum_d[k] = sum_d[k] + r.delta
				sum_g[k] = sum_g[k] + (r.grad or 0)
			end
		end
	end
	exp:log{epoch = 1, loss = 1}
	eq(#exp.gradients, 3, "a row per layer (the nested Sequential's Linear too)")
	for k = 1, 3 do
		local r = exp.gradients[k]
		eq(r.epoch, 1, "epoch")
		eq(r.layer, k, "layer")
		near(r.delta, sum_d[k] / 3, 1e-12, "mean |delta| of layer " .. k)
		if k == 2 then eq(r.grad, nil, "Tanh has no parameters")
		else near(r.grad, sum_g[k] / 3, 1e-12, "mean |grad| of layer " .. k) end
	end
	eq(exp.gradients[1].name, "Linear(3 -> 4)", "layer names from trace")
	-- No exp:progress since: a sample taken at exp:log.
	step(model, opt, ce)
	local now = model:trace()
	exp:log{epoch = 2, loss = 0.5}
	eq(#exp.gradients, 6, "3 more rows")
	near(exp.gradients[4].delta, now[1].delta, 1e-12, "taken at the log")
	local text = read_file(exp.dir .. "gradients.csv")
	local lines = {}
	for l in text:gmatch("[^\n]+") do lines[#lines + 1] = l end
	eq(#lines, 7, "header and 6 rows")
	eq(lines[1], "epoch,step,layer,name,delta,grad", "header")
	check(lines[3]:find("^1,,2,Tanh,[%d%.e%-]+,$"), lines[3])
	check(lines[7]:find("^2,,3,Linear%(4 %-> 2%),[%d%.e%-]+,[%d%.e%-]+$"), lines[7])
	exp:finish()
end)

test("exp:watch: mistakes; a model that cannot be traced is reported once and skipped", function()
	local exp = new("watch_bad")
	raises("exp:watch: expected a model with a trace method (a module or container), got a table without trace",
		exp.watch, exp, {forward = function() end})
	raises("exp:watch: expected a model with a trace method (a module or container), got nil", exp.watch, exp)
	raises("exp:watch: samples must be an integer >= 1, got 0", exp.watch, exp, mlp(), {samples = 0})
	raises("exp:watch: unknown option 'every'", exp.watch, exp, mlp(), {every = 2})
	exp:watch({trace = function() error("no trace today") end})
	exp:log{epoch = 1, loss = 1}
	eq(#exp.gradients, 0, "nothing recorded")
	exp:finish()
end)

if lunet.save then
	test("exp:watch and exp:confusion on --resume: rows up to the checkpoint, the last matrix", function()
		local exp = new("watch_resume")
		local model = mlp()
		local opt = optim.SGD(model, {lr = 0.1})
		exp:watch(model)
		step(model, opt, nn.CrossEntropyLoss())
		exp:log{epoch = 1, loss = 1}
		exp:confusion(fixed_model(LOGITS), lunet.arange(7):reshape(7, 1), Y)
		exp:checkpoint(model, opt)
		exp:log{epoch = 2, loss = 0.5}
		eq(#exp.gradients, 6, "two epochs recorded")
		exp._lock:unlock()  -- the process dies
		local exp2 = new("watch_resume", {}, {"--resume=" .. exp.dir})
		eq(#exp2.gradients, 3, "the rows up to the checkpoint")
		h.same(exp2._confusion.matrix, {{2, 0, 0}, {1, 2, 0}, {0, 1, 1}}, 0, "the confusion matrix")
		local lines = 0
		for _ in io.lines(exp.dir .. "gradients.csv") do lines = lines + 1 end
		eq(lines, 4, "gradients.csv cut back")
		exp2:finish()
	end)
end

-- ---- status.lua, the lock and report.html -------------------------------------------------

test("a run's status and lock: running, then finished; the report refreshed at each epoch", function()
	local exp = new("life", {lr = 0.5, epochs = 2})
	local dir = exp.dir
	check(read_file(dir .. "status.lua"):find('status = "running"', 1, true), "running at the start")
	check(sys.locked(dir .. "lock"), "the lock is held")
	eq(sys.file_type(dir .. "report.html"), nil, "no report before the first row")
	exp:log{epoch = 1, train_loss = 0.9, test_loss = 1.0}
	local page = read_file(dir .. "report.html")
	check(page:find('<meta http-equiv="refresh" content="30">', 1, true), "a running run's page reloads itself")
	eq(count(page:match('<table id="rows%-table".-</table>'), "<tr>"), 2, "header and 1 row")
	exp:log{epoch = 1, train_loss = 0.8}
	eq(count(read_file(dir .. "report.html"):match('<table id="rows%-table".-</table>'), "<tr>"), 2,
		"the same epoch again: not rewritten")
	exp:log{epoch = 2, train_loss = 0.7, test_loss = 0.8}
	eq(count(read_file(dir .. "report.html"):match('<table id="rows%-table".-</table>'), "<tr>"), 4,
		"a new epoch: rewritten")
	exp:finish()
	local st = read_file(dir .. "status.lua")
	check(st:find('status = "finished"', 1, true), st)
	eq(sys.file_type(dir .. "lock"), nil, "the lock file is gone")
	page = read_file(dir .. "report.html")
	check(not page:find('http-equiv="refresh"', 1, true), "a finished run's page stays still")
	check(page:find('class="status status-finished">finished<', 1, true), "the status shown")
end)

test("report.html: sections, one chart per quantity, confusion, a chart per layer, no network", function()
	local exp = new("page", {lr = 0.5, epochs = 3})
	local model = mlp()
	local opt, ce = optim.SGD(model, {lr = 0.1}), nn.CrossEntropyLoss()
	exp:watch(model)
	for epoch = 1, 3 do
		for i = 1, 4 do step(model, opt, ce) exp:progress(i, 4) end
		exp:confusion(fixed_model(LOGITS), lunet.arange(7):reshape(7, 1), Y, {"cat", "dog", "bird<&>"})
		exp:log{epoch = epoch, train_loss = 1 / epoch, test_loss = 1.5 / epoch, test_accuracy = 0.5 + epoch / 10,
			note = "a<b"}
	end
	exp:finish()
	local page = read_file(exp.dir .. "report.html")
	check(page:find("^<!DOCTYPE html>"), "an HTML document")
	for _, id in ipairs{"summary", "config", "metrics", "confusion", "gradients", "rows"} do
		eq(count(page, '<section id="' .. id .. '">'), 1, "section " .. id)
	end
	-- train_loss and test_loss on one chart, titled by the quantity
	local loss = element(page, '<figure class="plot" data-metric="loss">', "</figure>")
	check(loss, "a chart for loss")
	eq(count(loss, "<polyline"), 2, "two lines on it")
	check(loss:find(">train</text>", 1, true) and loss:find(">test</text>", 1, true), "a legend: train, test")
	check(loss:find(">loss (page)</text>", 1, true), "its title")
	local accuracy = element(page, '<figure class="plot" data-metric="test_accuracy">', "</figure>")
	eq(count(accuracy, "<polyline"), 1, "test_accuracy alone")
	eq(count(page, '<figure class="plot"'), 2, "no chart for epoch or the string column")
	-- the confusion matrix: names escaped, a row per class plus precision
	local cm = element(page, '<table id="confusion-matrix"', "</table>")
	eq(count(cm, "<tr>"), 5, "header, 3 classes, precision")
	check(cm:find(">bird&lt;&amp;&gt;</th>", 1, true), "class names escaped")
	check(cm:find('title="true dog, predicted cat: 1"', 1, true), "a cell's title")
	local pairs_ = element(page, '<ol id="confused-pairs">', "</ol>")
	eq(count(pairs_, "<li>"), 2, "the two confused pairs")
	check(pairs_:find("<li><b>dog</b> taken for <b>cat</b>: 1 times (33.3% of dog)</li>", 1, true), pairs_)
	-- gradients: |delta| by depth and one chart per layer, with both norms where there are parameters
	check(page:find('<figure class="depth-chart" id="depth-chart">', 1, true), "the depth chart")
	eq(count(page, '<figure class="layer-chart"'), 3, "a chart per layer")
	local tanh = element(page, '<figure class="layer-chart" data-layer="2">', "</figure>")
	check(tanh:find(">2  Tanh</text>", 1, true), "titled by the layer")
	eq(count(tanh, "<polyline"), 1, "Tanh: |delta| only")
	eq(count(element(page, '<figure class="layer-chart" data-layer="1">', "</figure>"), "<polyline"), 2,
		"Linear: |delta| and |grad|")
	-- the rows, escaped
	eq(count(element(page, '<table id="rows-table"', "</table>"), "<tr>"), 4, "header and 3 rows")
	check(page:find(">a&lt;b</td>", 1, true), "strings escaped")
	-- nothing fetched: no external reference, no script or style loaded from elsewhere
	local stripped = page:gsub('xmlns="http://www.w3.org/2000/svg"', "")
	check(not stripped:find("https?://"), "no URL in the page")
	check(not page:find("<script src", 1, true) and not page:find("<link", 1, true) and
		not page:find("<img", 1, true) and not page:find("@import", 1, true), "nothing loaded")
end)

test("a failed run's page shows the error; the status says failed", function()
	local dir
	local ok = pcall(function()
		local exp <close> = new("boom")
		dir = exp.dir
		exp:log{epoch = 1, loss = 1}
		error("out of <data>")
	end)
	check(not ok, "failed")
	local page = read_file(dir .. "report.html")
	check(page:find('class="status status-failed">failed<', 1, true), "status failed")
	check(page:find('<pre class="error">', 1, true) and page:find("out of &lt;data&gt;", 1, true), "the error")
	check(read_file(dir .. "status.lua"):find('status = "failed"', 1, true), "status.lua")
	eq(sys.locked(dir .. "lock"), false, "not held")
end)

test("report.metric_groups and report.confused_pairs", function()
	local rows = {{epoch = 1, train_loss = 1, val_loss = 2, acc_train = 0.1, acc_val = 0.2, lr = 0.1, x = "s"},
		{epoch = 2, train_loss = 0.5, val_loss = 1, acc_train = 0.3, acc_val = 0.4, lr = 0.1, x = "t"}}
	local groups = report.metric_groups({"epoch", "acc_train", "acc_val", "lr", "train_loss", "val_loss", "x"}, rows)
	local got = {}
	for i, g in ipairs(groups) do
		local labels = {}
		for j, m in ipairs(g.members) do labels[j] = m.key .. ":" .. tostring(m.label) end
		got[i] = g.title .. "=" .. table.concat(labels, "+")
	end
	eq(table.concat(got, " "), "acc=acc_train:train+acc_val:val lr=lr:nil loss=train_loss:train+val_loss:val",
		"grouped by quantity")
	local top = report.confused_pairs({{5, 1, 3}, {3, 4, 0}, {0, 0, 9}}, 2)
	eq(#top, 2, "two asked")
	check(top[1].true_class == 1 and top[1].predicted == 3 and top[1].count == 3, "largest first")
	check(top[2].true_class == 2 and top[2].predicted == 1, "ties by true class")
	near(top[1].fraction, 3 / 9, 1e-12, "of the true class")
end)

os.execute("rm -rf '" .. DIR .. "'")
h.done()
