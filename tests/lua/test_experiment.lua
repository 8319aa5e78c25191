-- test_experiment.lua -- lunet.experiment: run
-- directories under a temporary root, command-line overrides and their
-- errors, config.lua, metrics.csv, progress output with a fake clock (no
-- timing), SVG plots, <close>, and checkpoint/resume round trips.
local lunet = lunet or require "lunet"
local nn, optim = lunet.nn, lunet.optim

local SEED = 20261127
local harness = dofile((arg[0]:match("^(.*)/") or ".") .. "/harness.lua")
local h = harness.new{seed = SEED}
-- raises(want, fn, ...): fn(...) must fail with a message containing `want`.
local test, check, raises = h.test, h.check, h.raises

-- Quotes both values (%q), as the strings compared here hold newlines.
local function eq(got, want, what)
	if got ~= want then
		error(string.format("%s: expected %q, got %q", what or "value", tostring(want),
			tostring(got)), 2)
	end
end

-- pcall(fn, ...) must fail with exactly the message `want`.
local function raises_exactly(want, fn, ...)
	local ok, err = pcall(fn, ...)
	if ok then error("expected an error: " .. want, 2) end
	if tostring(err) ~= want then
		error(string.format("expected error %q, got %q", want, tostring(err)), 2)
	end
end

local function read(path)
	local f = assert(io.open(path, "r"))
	local s = f:read("a")
	f:close()
	return s
end

local function exists(path)
	local f = io.open(path, "r")
	if f then f:close() end
	return f ~= nil
end

local function shell_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- A fresh directory for the runs of this test file.
local ROOT = os.tmpname()
os.remove(ROOT)
lunet.sys.mkdir(ROOT)

-- A sink for progress and summaries, so the test's output stays readable.
local function sink()
	local path = os.tmpname()
	return assert(io.open(path, "w+")), path
end

local function new(opts)
	opts.root = opts.root or ROOT
	opts.args = opts.args or {}
	opts.output = opts.output or sink()
	return lunet.experiment(opts)
end

-- A clock that moves only when told to.
local function fake_clock()
	local c = {t = 0}
	c.fn = function() return c.t end
	return c
end

-- ---- lunet.sys ------------------------------------------------------------------------------------

test("sys.mkdir creates parents, reports whether it created, names the failing path", function()
	local d = ROOT .. "/sys/a/b/c"
	eq(lunet.sys.mkdir(d), true, "first mkdir")
	eq(lunet.sys.mkdir(d .. "/"), false, "second mkdir of the same directory")
	local f = assert(io.open(ROOT .. "/sys/file", "w"))
	f:close()
	raises_exactly("lunet.sys.mkdir: cannot create '" .. ROOT .. "/sys/file': Not a directory",
		lunet.sys.mkdir, ROOT .. "/sys/file/x")
	raises_exactly("lunet.sys.mkdir: empty path", lunet.sys.mkdir, "")
	-- a file is not a tty; the names of the standard streams are accepted
	local fh = sink()
	eq(lunet.sys.isatty(fh), false, "isatty(file)")
	eq(lunet.sys.term_width(fh), nil, "term_width(file)")
	eq(type(lunet.sys.isatty("stdout")), "boolean", "isatty('stdout')")
	raises("bad argument #1", lunet.sys.isatty, "stdfoo")
end)

test("sys.rng_state/set_rng_state replay the random source", function()
	local s = lunet.sys.rng_state()
	eq(#s, 4, "state words")
	local a = lunet.randn(5):totable()
	lunet.sys.set_rng_state(s)
	local b = lunet.randn(5):totable()
	for i = 1, 5 do eq(b[i], a[i], "replayed draw " .. i) end
	raises_exactly("lunet.sys.set_rng_state: the all-zero state is not a valid state",
		lunet.sys.set_rng_state, {0, 0, 0, 0})
	raises_exactly("lunet.sys.set_rng_state: expected a table of 4 integers, got 3 entries",
		lunet.sys.set_rng_state, {1, 2, 3})
	raises_exactly("lunet.sys.set_rng_state: entry 2 must be an integer, got number",
		lunet.sys.set_rng_state, {1, 2.5, 3, 4})
end)

-- ---- run directories ---------------------------------------------------------------------------

test("run directory: <root>/<name>/<timestamp>/ with config.lua", function()
	local exp = new{name = "dirs", config = {lr = 0.1}}
	local ts = exp.dir:match("^" .. ROOT:gsub("%p", "%%%0") .. "/dirs/(%d%d%d%d%d%d%d%d%-%d%d%d%d%d%d[%-%d]*)/$")
	check(ts, "dir has the form root/name/YYYYmmdd-HHMMSS/: " .. exp.dir)
	check(exists(exp.dir .. "config.lua"), "config.lua written")
	eq(exp:path("x.txt"), exp.dir .. "x.txt", "exp:path")
end)

test("a taken timestamp gets a -2 suffix; runs never share a directory", function()
	for _ = 1, 3 do   -- retried if the second changes between the two steps
		local ts = os.date("%Y%m%d-%H%M%S")
		lunet.sys.mkdir(ROOT .. "/taken/" .. ts)
		local exp = new{name = "taken"}
		if os.date("%Y%m%d-%H%M%S") == ts then
			eq(exp.dir, ROOT .. "/taken/" .. ts .. "-2/", "suffixed dir")
			local exp3 = new{name = "taken"}
			eq(exp3.dir, ROOT .. "/taken/" .. ts .. "-3/", "second suffixed dir")
			return
		end
	end
	error("the clock kept changing second")
end)

test("name defaults to the script name; bad names and options are errors", function()
	local exp = new{}
	local script = arg and arg[0] and arg[0]:match("([^/]+)%.lua$")
	eq(exp.name, script or "experiment", "default name")
	raises_exactly('lunet.experiment: name must be letters, digits, \'_\', \'-\' or \'.\', got "a/b"',
		new, {name = "a/b"})
	raises("lunet.experiment: unknown option 'nmae' (options: args, at_least, clock, config",
		new, {nmae = "x"})
	raises_exactly("lunet.experiment: config.layers must be a number, boolean or string, got table",
		new, {name = "x", config = {layers = {1, 2}}})
	raises_exactly("lunet.experiment: config key 'resume' is reserved (--resume is an option of every experiment)",
		new, {name = "x", config = {resume = "no"}})
end)

local OPTIONS = "(options: args, at_least, clock, config, description, help, name, one_of, output, " ..
	"progress_every, resume, root, tty)"

test("the options table: wrong types are errors naming the option and listing them all", function()
	raises_exactly("lunet.experiment: option 'tty' must be a boolean, got string " .. OPTIONS,
		new, {name = "x", tty = "yes"})
	raises_exactly("lunet.experiment: option 'progress_every' must be a number, got string " .. OPTIONS,
		new, {name = "x", progress_every = "10"})
	raises_exactly("lunet.experiment: option 'name' must be a string, got number " .. OPTIONS,
		new, {name = 3})
	raises_exactly("lunet.experiment: option 'config' must be a table, got string " .. OPTIONS,
		new, {name = "x", config = "lr=0.1"})
	raises_exactly("lunet.experiment: option 'clock' must be a function, got number " .. OPTIONS,
		new, {name = "x", clock = 0})
	raises_exactly("lunet.experiment: option 'output' must be an open file, got string " .. OPTIONS,
		new, {name = "x", output = "log.txt"})
	local closed = sink()
	closed:close()
	raises_exactly("lunet.experiment: option 'output' must be an open file, got closed file " .. OPTIONS,
		new, {name = "x", output = closed})
	raises_exactly("lunet.experiment: unknown option 'choices' " .. OPTIONS,
		new, {name = "x", choices = {}})
	raises_exactly("lunet.experiment: progress_every must be a number >= 0, got -1",
		new, {name = "x", progress_every = -1})
end)

test("help and one_of name keys of config, of the right types", function()
	raises_exactly("lunet.experiment: help.lrr: no such key in config (known: epochs, lr)",
		new, {name = "x", config = {lr = 0.1, epochs = 2}, help = {lrr = "learning rate"}})
	raises_exactly("lunet.experiment: help.lr must be a string of one line, got table",
		new, {name = "x", config = {lr = 0.1}, help = {lr = {}}})
	raises_exactly('lunet.experiment: help.lr must be a string of one line, got "a\\\nb"',
		new, {name = "x", config = {lr = 0.1}, help = {lr = "a\nb"}})
	raises_exactly("lunet.experiment: one_of.opt: no such key in config (known: lr)",
		new, {name = "x", config = {lr = 0.1}, one_of = {opt = {"sgd"}}})
	raises_exactly("lunet.experiment: one_of.opt must be a non-empty list, got string",
		new, {name = "x", config = {opt = "sgd"}, one_of = {opt = "sgd"}})
	raises_exactly("lunet.experiment: one_of.opt must be a non-empty list, got table",
		new, {name = "x", config = {opt = "sgd"}, one_of = {opt = {}}})
	raises_exactly("lunet.experiment: one_of.n[2] must be of the default's type (integer), got number",
		new, {name = "x", config = {n = 1}, one_of = {n = {1, 2.5}}})
	raises_exactly("lunet.experiment: one_of.opt does not hold the default sgd",
		new, {name = "x", config = {opt = "sgd"}, one_of = {opt = {"adam", "rmsprop"}}})
end)

test("one_of: an override outside the list is an error listing it", function()
	local function run(args)
		return new{name = "oneof", config = {opt = "sgd", n = 2}, args = args,
			one_of = {opt = {"sgd", "adam"}, n = {1, 2, 4}}}
	end
	eq(run{"--opt=adam", "--n=4"}.config.opt, "adam", "allowed value")
	raises_exactly("lunet.experiment: bad value --opt=rmsprop: expected one of sgd|adam (known: n, opt)",
		run, {"--opt=rmsprop"})
	raises_exactly("lunet.experiment: bad value --n=3: expected one of 1|2|4 (known: n, opt)",
		run, {"--n=3"})
end)

test("at_least: numeric keys, the default not below; an override below is an error", function()
	raises_exactly("lunet.experiment: at_least.batch: no such key in config (known: lr)",
		new, {name = "x", config = {lr = 0.1}, at_least = {batch = 1}})
	raises_exactly("lunet.experiment: at_least.opt: needs a numeric key and a number, got a string key and integer",
		new, {name = "x", config = {opt = "sgd"}, at_least = {opt = 1}})
	raises_exactly("lunet.experiment: at_least.n: needs a numeric key and a number, got a integer key and string",
		new, {name = "x", config = {n = 1}, at_least = {n = "1"}})
	raises_exactly("lunet.experiment: at_least.n is 2, above the default 1",
		new, {name = "x", config = {n = 1}, at_least = {n = 2}})
	local function run(args)
		return new{name = "atleast", config = {batch = 8, lr = 0.1}, args = args,
			at_least = {batch = 1, lr = 0}}
	end
	eq(run{"--batch=1", "--lr=0"}.config.batch, 1, "the bound itself is allowed")
	raises_exactly("lunet.experiment: bad value --batch=0: expected integer >= 1 (known: batch, lr)",
		run, {"--batch=0"})
	raises_exactly("lunet.experiment: bad value --lr=-0.5: expected number >= 0 (known: batch, lr)",
		run, {"--lr=-0.5"})
end)

test("a command-line mistake is an error object that prints as its one line", function()
	local ok, err = pcall(new, {name = "x", config = {lr = 0.1}, args = {"--lr=fast"}})
	eq(ok, false, "pcall")
	eq(type(err), "table", "error object")
	eq(err.message, "lunet.experiment: bad value --lr=fast: expected a number (known: lr)", "message")
	eq(tostring(err), err.message, "tostring")
	-- a string that reads like a Ctrl-C is not one: interrupts are known by identity
	eq(lunet.sys.is_interrupt("interrupted!"), false, "is_interrupt of a look-alike")
	eq(lunet.sys.is_interrupt(err), false, "is_interrupt of another error")
end)

-- ---- command-line overrides ----------------------------------------------------------------------

local DEFAULTS = {lr = 0.1, epochs = 5, shuffle = true, optimizer = "sgd", weight_decay = 0.0}
local KNOWN = "(known: epochs, lr, optimizer, shuffle, weight_decay)"

local function with_args(args)
	return new{name = "args", config = DEFAULTS, args = args}
end

test("overrides are converted to the type of the default", function()
	local exp = with_args{"--lr=1", "--epochs=12", "--shuffle=false", "--optimizer=adam",
		"--weight-decay=1e-4"}
	local c = exp.config
	eq(math.type(c.lr), "float", "lr stays a float")
	eq(c.lr, 1.0, "lr")
	eq(math.type(c.epochs), "integer", "epochs stays an integer")
	eq(c.epochs, 12, "epochs")
	eq(c.shuffle, false, "shuffle")
	eq(c.optimizer, "adam", "optimizer")
	eq(c.weight_decay, 1e-4, "weight-decay spelt with a dash")
	-- untouched keys keep their defaults; a bare boolean flag means true
	local exp2 = with_args{"--shuffle=false", "--shuffle"}
	eq(exp2.config.shuffle, true, "bare flag after =false")
	eq(exp2.config.lr, 0.1, "default lr")
	eq(exp2.config.epochs, 5, "default epochs")
	-- reading a key the config does not have is an error, not nil
	raises("lunet.experiment: config has no key 'lrr' " .. KNOWN, function() return exp.config.lrr end)
end)

test("unknown options and bad values are errors naming the known keys", function()
	raises_exactly("lunet.experiment: unknown option --lrr " .. KNOWN, with_args, {"--lrr=0.1"})
	raises_exactly("lunet.experiment: bad value --epochs=2.5: expected an integer " .. KNOWN,
		with_args, {"--epochs=2.5"})
	raises_exactly("lunet.experiment: bad value --epochs=ten: expected an integer " .. KNOWN,
		with_args, {"--epochs=ten"})
	raises_exactly("lunet.experiment: bad value --lr=fast: expected a number " .. KNOWN,
		with_args, {"--lr=fast"})
	raises_exactly("lunet.experiment: bad value --shuffle=yes: expected true or false " .. KNOWN,
		with_args, {"--shuffle=yes"})
	raises_exactly("lunet.experiment: option --lr needs a value: --lr=0.1 " .. KNOWN,
		with_args, {"--lr"})
	raises_exactly("lunet.experiment: unexpected argument 'data.csv': options are --key=value " .. KNOWN,
		with_args, {"data.csv"})
	raises_exactly("lunet.experiment: unexpected argument '-lr=1': options are --key=value " .. KNOWN,
		with_args, {"-lr=1"})
	raises_exactly("lunet.experiment: --resume needs a directory: --resume=DIR " .. KNOWN,
		with_args, {"--resume="})
	raises_exactly("lunet.experiment: cannot resume from " .. ROOT .. "/nothing/: no checkpoint.lunet there",
		with_args, {"--resume=" .. ROOT .. "/nothing"})
end)

test("config.lua holds the final config and the command line", function()
	local exp = with_args{"--lr=0.05", "--optimizer=it's"}
	local text = read(exp.dir .. "config.lua")
	check(text:find("-- command: --lr=0.05 '--optimizer=it'\\''s'\n", 1, true),
		"command line recorded, shell-quoted: " .. text)
	local saved = assert(load(text))()
	eq(saved.lr, 0.05, "saved lr")
	eq(math.type(saved.lr), "float", "saved lr is a float")
	eq(saved.epochs, 5, "saved epochs")
	eq(math.type(saved.epochs), "integer", "saved epochs is an integer")
	eq(saved.shuffle, true, "saved shuffle")
	eq(saved.optimizer, "it's", "saved optimizer")
	eq(saved.weight_decay, 0.0, "saved weight_decay")
	eq(math.type(saved.weight_decay), "float", "0.0 stays a float")
end)

test("config.lua of keys that are Lua keywords loads back (found by fuzz_cmdline)", function()
	local exp = new{name = "keywords", config = {["end"] = 1, ["false"] = "x", lr = 0.5},
		args = {"--end=2"}}
	local saved = assert(load(read(exp.dir .. "config.lua"), "config.lua", "t", {}))()
	eq(saved["end"], 2, "saved end")
	eq(saved["false"], "x", "saved false")
	eq(saved.lr, 0.5, "saved lr")
	exp:finish()
end)

-- The lunet executable running this test (arg[-1], as lua.c sets it).
local EXE = os.getenv("LUNET_EXE") or (arg and arg[-1])
if EXE and EXE:find("/", 1, true) and EXE:sub(1, 1) ~= "/" then
	EXE = (os.getenv("PWD") or ".") .. "/" .. EXE   -- children run in ROOT
end

-- Runs a script in a child lunet; returns its output and exit status.
local function run_child(code, args, env)
	local path = os.tmpname()
	local f = assert(io.open(path, "w"))
	f:write(code)
	f:close()
	local p = assert(io.popen(string.format("cd %s && %s%s %s %s 2>&1", shell_quote(ROOT), env or "",
		shell_quote(EXE), shell_quote(path), args or "")))
	local out = p:read("a")
	local _, _, status = p:close()
	os.remove(path)
	return out, status
end

local CHILD = [[
	local exp = lunet.experiment{name = "child", config = {lr = 0.1, epochs = 5, tag = "x"},
		description = "A test experiment."}
	print("dir=" .. exp.dir)
	print("lr=" .. exp.config.lr .. " epochs=" .. exp.config.epochs)
]]

test("the global arg is parsed; --help lists the keys and exits 0", function()
	if not EXE then error("no lunet executable (arg[-1] / LUNET_EXE)") end
	local out, status = run_child(CHILD, "--lr=0.5 --epochs=2")
	eq(status, 0, "exit status: " .. out)
	check(out:find("lr=0.5 epochs=2", 1, true), out)
	check(out:find("dir=runs/child/", 1, true), "default root is ./runs: " .. out)
	local dir = out:match("dir=(%S+)")
	check(read(ROOT .. "/" .. dir .. "config.lua"):find("--lr=0.5 --epochs=2", 1, true),
		"the command line includes the arguments")

	out, status = run_child(CHILD, "--help")
	eq(status, 0, "--help exit status: " .. out)
	check(out:find("A test experiment.", 1, true), "--help shows the description: " .. out)
	check(out:find("--epochs=5", 1, true) and out:find("integer", 1, true), out)
	check(out:find("--lr=0.1", 1, true) and out:find("--tag=x", 1, true), out)
	check(out:find("--resume=DIR", 1, true), out)
	check(not out:find("dir=", 1, true), "--help exits before the script goes on: " .. out)

	out, status = run_child(CHILD, "--lrr=1")
	check(status ~= 0, "an unknown option fails the script")
	check(out:find("lunet.experiment: unknown option --lrr (known: epochs, lr, tag)", 1, true), out)
end)

test("--help with a default string holding a NUL byte (found by fuzz_cmdline)", function()
	if not EXE then error("no lunet executable (arg[-1] / LUNET_EXE)") end
	local out, status = run_child([[
		lunet.experiment{name = "child", config = {tag = "a\0b", lr = 0.1}}
		print("not reached")
	]], "--help")
	eq(status, 0, "--help exit status: " .. out)
	check(out:find("--tag=a\0b", 1, true), "the default as it is: " .. out)
	check(out:find("--lr=0.1", 1, true) and not out:find("not reached", 1, true), out)
end)

test("--help shows each key's type or choices and its help line; a mistake is one line", function()
	if not EXE then error("no lunet executable (arg[-1] / LUNET_EXE)") end
	local code = [[
		local exp = lunet.experiment{name = "child", config = {lr = 0.1, opt = "sgd", layers = 2},
			help = {lr = "learning rate", opt = "the optimiser"}, one_of = {opt = {"sgd", "adam"}},
			at_least = {layers = 1}}
		print("dir=" .. exp.dir)
	]]
	local out, status = run_child(code, "--help")
	eq(status, 0, "--help exit status: " .. out)
	check(out:find("\n  %-%-lr=0%.1%s+number%s+learning rate\n"), "lr line: " .. out)
	check(out:find("\n  %-%-opt=sgd%s+sgd|adam%s+the optimiser\n"), "opt line: " .. out)
	check(out:find("\n  %-%-layers=2%s+integer >= 1\n"), "a key without help shows its type and bound: " .. out)
	out, status = run_child(code, "--opt=rmsprop")
	check(status ~= 0, "a bad choice fails the script")
	eq(out, "lunet: lunet.experiment: bad value --opt=rmsprop: expected one of sgd|adam " ..
		"(known: layers, lr, opt)\n", "the whole output")
	out, status = run_child(code, "--layers=two")
	check(status ~= 0, "a bad type fails the script")
	eq(out, "lunet: lunet.experiment: bad value --layers=two: expected an integer " ..
		"(known: layers, lr, opt)\n", "the whole output")
	out, status = run_child(code, "--resume=" .. ROOT .. "/no_run")
	check(status ~= 0, "a bad --resume fails the script")
	eq(out, "lunet: lunet.experiment: cannot resume from " .. ROOT .. "/no_run/: no checkpoint.lunet there\n",
		"the whole output")
end)

test("LUNET_RUNS sets the root; the root option wins over it", function()
	if not EXE then error("no lunet executable (arg[-1] / LUNET_EXE)") end
	local out, status = run_child(CHILD, "", "LUNET_RUNS=" .. shell_quote(ROOT .. "/envroot") .. " ")
	eq(status, 0, "exit status: " .. out)
	check(out:find("dir=" .. ROOT .. "/envroot/child/", 1, true), out)
	local out2 = run_child([[
		local exp = lunet.experiment{name = "child", root = "]] .. ROOT .. [[/optroot"}
		print("dir=" .. exp.dir)
	]], "", "LUNET_RUNS=" .. shell_quote(ROOT .. "/envroot") .. " ")
	check(out2:find("dir=" .. ROOT .. "/optroot/child/", 1, true), out2)
end)

-- ---- metrics.csv -----------------------------------------------------------------------------------

test("metrics.csv: epoch and step first, other keys sorted, one line per log", function()
	local exp = new{name = "csv"}
	exp:log{loss = 0.5, epoch = 1, accuracy = 0.75, step = 100}
	-- each row is on disk as soon as it is logged
	eq(read(exp.dir .. "metrics.csv"), "epoch,step,accuracy,loss\n1,100,0.75,0.5\n", "after one row")
	exp:log{epoch = 2, step = 200, loss = 0.25, accuracy = 0.875}
	exp:log{epoch = 3, step = 300, loss = 1 / 3}   -- accuracy left out: empty cell
	eq(read(exp.dir .. "metrics.csv"),
		"epoch,step,accuracy,loss\n1,100,0.75,0.5\n2,200,0.875,0.25\n3,300,,0.3333333333\n",
		"three rows")
	eq(#exp.metrics, 3, "rows kept in memory")
	eq(exp.metrics[2].accuracy, 0.875, "row 2 in memory")
end)

test("metrics.csv: a new key rewrites the file with a wider header", function()
	local exp = new{name = "csvwide"}
	exp:log{epoch = 1, loss = 2}
	exp:log{epoch = 2, loss = 1, lr = 0.1, note = 'a,"b"'}
	exp:log{epoch = 3, loss = 0.5}
	eq(read(exp.dir .. "metrics.csv"),
		'epoch,loss,lr,note\n1,2,,\n2,1,0.1,"a,""b"""\n3,0.5,,\n', "widened file")
	check(not exists(exp.dir .. "metrics.csv.tmp"), "no temporary file left")
end)

test("exp:log errors", function()
	local exp = new{name = "logerr"}
	raises_exactly("exp:log: expected a table of metrics, got number", exp.log, exp, 3)
	raises_exactly("exp:log: expected at least one metric", exp.log, exp, {})
	raises_exactly("exp:log: metric 'w' must be a number, boolean or string, got table",
		exp.log, exp, {w = {}})
	raises_exactly("exp:log: metric names must be non-empty strings, got 1", exp.log, exp, {5})
	eq(#exp.metrics, 0, "nothing logged by failed calls")
end)

-- ---- progress ----------------------------------------------------------------------------------------

test("progress when not a terminal: a line per tenth, no carriage returns", function()
	local clock = fake_clock()
	local out, path = sink()
	local exp = new{name = "prog", output = out, clock = clock.fn, progress_every = 0}
	for i = 1, 20 do
		clock.t = clock.t + 0.5   -- 2 items per second
		exp:progress(i, 20, {loss = 1 / i})
	end
	out:flush()
	local text = read(path)
	check(not text:find("\r", 1, true), "no \\r when not a terminal")
	local lines = {}
	for l in text:gmatch("[^\n]+") do lines[#lines + 1] = l end
	eq(#lines, 10, "one line per tenth: " .. text)
	-- i=2: 1 item in 0.5 s since the first call => 2.0 it/s, 18 left => 9 s
	eq(lines[1], "prog  10% 2/20  2.0 it/s  ETA 0:09  loss 0.5", "first line")
	eq(lines[10], "prog 100% 20/20  2.0 it/s  ETA 0:00  loss 0.05", "last line")
end)

test("progress when not a terminal is throttled to progress_every seconds", function()
	local clock = fake_clock()
	local out, path = sink()
	local exp = new{name = "prog", output = out, clock = clock.fn}   -- default: 10 s
	for i = 1, 100 do
		clock.t = clock.t + 1
		exp:progress(i, 100)
	end
	-- a tenth passes every 10 s; the first 10 s are counted from the first
	-- call (at i = 1), so 10% comes too early and lines are at 20% ... 100%
	out:flush()
	local text = read(path)
	local _, n = text:gsub("\n", "")
	eq(n, 9, "lines for a 100 s loop: " .. text)
	check(text:find("^prog  20%% 20/100  1.0 it/s  ETA 1:20\n"), text)
	-- a short loop (1 s in all) prints nothing
	local out2, path2 = sink()
	local exp2 = new{name = "prog", output = out2, clock = clock.fn}
	for i = 1, 100 do
		clock.t = clock.t + 0.01
		exp2:progress(i, 100)
	end
	out2:flush()
	eq(read(path2), "", "a short loop stays quiet")
end)

test("progress on a terminal: redrawn in place at most 10 times a second, erased at the end", function()
	local clock = fake_clock()
	local out, path = sink()
	local exp = new{name = "bar", output = out, clock = clock.fn, tty = true}
	for i = 1, 50 do
		clock.t = clock.t + 1 / 32   -- 32 items per second (exact in binary)
		exp:progress(i, 50, {loss = 0.25})
	end
	out:flush()
	local text = read(path)
	local _, draws = text:gsub("\r", "")
	-- drawn at i = 1, then once 0.1 s has passed (every 4th item: 1, 5, ..., 49),
	-- then erased at i = 50
	eq(draws, 13 + 1, "number of redraws")
	check(text:find("\r 50%% %[=+>%s+%] 25/50  32.0 it/s  ETA 0:01  loss 0.25\27%[K"), text)
	check(text:sub(-4) == "\r\27[K", "the bar is erased after the last item")
	check(not text:find("\n", 1, true), "no newlines")
	-- a new loop (i starts again) restarts the rate
	exp:progress(1, 10)
	raises_exactly("exp:progress: i must be an integer in 0..10, got 11", exp.progress, exp, 11, 10)
	raises_exactly("exp:progress: n must be an integer >= 1, got 0", exp.progress, exp, 0, 0)
end)

-- ---- plots --------------------------------------------------------------------------------------------

-- A minimal XML well-formedness check: every tag closes in order,
-- attributes are quoted, text holds no raw '<' or '&'.
local function well_formed(s)
	local stack, pos = {}, 1
	s = s:gsub("^<%?xml[^>]*%?>%s*", "")
	while true do
		local lt = s:find("<", pos, true)
		local text = s:sub(pos, (lt or #s + 1) - 1)
		if text:gsub("&%a+;", ""):find("&", 1, true) then
			return false, "raw & in text"
		end
		if not lt then break end
		local gt = s:find(">", lt, true)
		if not gt then return false, "unclosed tag" end
		local tag = s:sub(lt + 1, gt - 1)
		if tag:sub(1, 1) == "/" then
			local name = tag:sub(2)
			if stack[#stack] ~= name then return false, "mismatched </" .. name .. ">" end
			stack[#stack] = nil
		else
			local selfclose = tag:sub(-1) == "/"
			if selfclose then tag = tag:sub(1, -2) end
			local name, attrs = tag:match("^([%w:_%-]+)(.*)$")
			if not name then return false, "bad tag <" .. tag .. ">" end
			local rest = attrs:gsub('%s+[%w:_%-]+="[^"<]*"', "")
			if rest:find("%S") then return false, "bad attributes in <" .. tag .. ">" end
			if not selfclose then stack[#stack + 1] = name end
		end
		pos = gt + 1
	end
	if #stack > 0 then return false, "unclosed <" .. stack[#stack] .. ">" end
	return true
end

local function polyline_points(svg)
	local pts = svg:match('<polyline[^>]-points="([^"]*)"')
	if not pts then return nil end
	local n = 0
	for x, y in pts:gmatch("(%S+),(%S+)") do
		check(tonumber(x) and tonumber(y), "numeric point " .. x .. "," .. y)
		n = n + 1
	end
	return n
end

test("finish writes one well-formed SVG per numeric metric", function()
	local out, path = sink()
	local exp = new{name = "plots", output = out}
	for e = 1, 7 do
		exp:log{epoch = e, loss = 1 / e, accuracy = 0.5 + e / 20, phase = "train"}
	end
	exp:log{epoch = 8, loss = 0 / 0}   -- not finite: left out of the plot
	local files = exp:finish()
	table.sort(files)
	eq(table.concat(files, " "), "accuracy.svg loss.svg", "plot files (not for epoch or strings)")
	for _, f in ipairs(files) do
		local svg = read(exp.dir .. f)
		check(svg:find("<svg", 1, true) and svg:find("</svg>", 1, true), f .. " is an svg")
		local ok, why = well_formed(svg)
		check(ok, f .. " well-formed: " .. tostring(why))
		eq(polyline_points(svg), 7, f .. " points")
		check(svg:find(">epoch</text>", 1, true), f .. " x label")
		local metric = f:gsub("%.svg$", "")
		check(svg:find(">" .. metric .. "</text>", 1, true), f .. " y label")
		check(svg:find(">" .. metric .. " (plots)</text>", 1, true), f .. " title")
	end
	-- x ticks are the epochs, y ticks bracket the data
	local acc = read(exp.dir .. "accuracy.svg")
	for _, t in ipairs{"1", "2", "7"} do
		check(acc:find(">" .. t .. "</text>", 1, true), "x tick " .. t)
	end
	out:flush()
	local summary = read(path)
	check(summary:find("plots: final epoch 8  accuracy 0.85  loss nan  phase train", 1, true), summary)
	check(summary:find("8 rows in " .. exp.dir .. "metrics.csv, plots accuracy.svg loss.svg", 1, true),
		summary)
	-- a second finish does nothing
	exp:finish()
	out:flush()
	eq(read(path), summary, "second finish prints nothing")
end)

test("plots use step when every row has one; markup in names is escaped", function()
	local exp = new{name = "steps"}
	for s = 1, 120 do exp:log{step = s * 10, ["a<b&c"] = math.sin(s / 10)} end
	local files = exp:finish()
	eq(files[1], "a_b_c.svg", "file name")
	local svg = read(exp.dir .. files[1])
	local ok, why = well_formed(svg)
	check(ok, "well-formed: " .. tostring(why))
	check(svg:find(">a&lt;b&amp;c</text>", 1, true), "escaped label")
	check(svg:find(">step</text>", 1, true), "x axis is step")
	eq(polyline_points(svg), 120, "points")
end)

test("<close> finishes the experiment", function()
	local dir
	do
		local exp <close> = new{name = "closing"}
		exp:log{epoch = 1, loss = 1}
		exp:log{epoch = 2, loss = 0.5}
		dir = exp.dir
	end
	check(exists(dir .. "loss.svg"), "loss.svg written on leaving the scope")
	-- also when the scope is left by an error (the error goes on)
	local ok, err = pcall(function()
		local exp <close> = new{name = "closing"}
		exp:log{epoch = 1, loss = 1}
		dir = exp.dir
		error("boom", 0)
	end)
	eq(ok, false, "the error propagates")
	eq(err, "boom", "the original error")
	check(exists(dir .. "loss.svg"), "plots written on error too")
end)

-- Names in dir (ls -A), sorted, as one string.
local function listing(dir)
	local p = assert(io.popen("ls -A " .. shell_quote(dir) .. " 2>/dev/null"))
	local names = {}
	for name in p:lines() do names[#names + 1] = name end
	p:close()
	table.sort(names)
	return table.concat(names, " ")
end

test("a run that fails before its first logged row leaves no run directory", function()
	local root = ROOT .. "/failing"
	local out, path = sink()
	local dir
	local ok, err = pcall(function()
		local exp <close> = new{name = "early", root = root, output = out}
		dir = exp.dir
		check(exists(dir .. "config.lua"), "config.lua written at the start")
		error("no data", 0)
	end)
	eq(ok, false, "the error propagates")
	eq(err, "no data", "the original error")
	check(not exists(dir .. "config.lua"), "config.lua removed")
	eq(listing(root), "", "neither the run directory nor <root>/early/ is left")
	out:flush()
	eq(read(path), "early: nothing logged; run directory " .. dir .. " removed\n", "the note")
	-- <root>/<name>/ made by another run stays; so does a run that logged a row
	lunet.sys.mkdir(root .. "/early/other")
	local kept
	pcall(function()
		local exp <close> = new{name = "early", root = root}
		exp:log{epoch = 1, loss = 1}
		kept = exp.dir
		error("after a row", 0)
	end)
	check(exists(kept .. "metrics.csv") and exists(kept .. "loss.svg"), "a run with a row is kept")
	pcall(function()
		local exp <close> = new{name = "early", root = root}
		dir = exp.dir
		error("again", 0)
	end)
	check(not exists(dir .. "config.lua"), "the second empty run is removed")
	local rest = listing(root .. "/early")
	eq(rest, kept:match("([^/]+)/$") .. " other", "<root>/early/ holds the other runs")
end)

test("an empty run with a checkpoint, or with the script's own files, is kept", function()
	local root = ROOT .. "/failing2"
	local dir
	pcall(function()
		local exp <close> = new{name = "own", root = root}
		dir = exp.dir
		local f = assert(io.open(exp:path("notes.txt"), "w"))
		f:write("mine")
		f:close()
		error("late", 0)
	end)
	eq(read(dir .. "notes.txt"), "mine", "the script's file is kept")
	check(read(dir .. "config.lua"):find("return {", 1, true), "config.lua written back")
	if lunet.save then
		pcall(function()
			local exp <close> = new{name = "ck", root = root}
			dir = exp.dir
			exp:checkpoint(nn.Linear(2, 2))
			error("after a checkpoint", 0)
		end)
		check(exists(dir .. "checkpoint.lunet") and exists(dir .. "config.lua"), "a checkpointed run is kept")
	end
	-- a run that ends normally with nothing logged is kept too
	local exp = new{name = "quiet", root = root}
	exp:finish()
	check(exists(exp.dir .. "config.lua"), "an empty run that did not fail is kept")
end)

test("the run's files are written atomically: no temporary files are left", function()
	local exp = new{name = "atomic"}
	for e = 1, 3 do exp:log{epoch = e, loss = 1 / e} end
	exp:log{epoch = 4, loss = 0.2, lr = 0.1}   -- widens: metrics.csv rewritten
	exp:finish()
	eq(listing(exp.dir), "config.lua loss.svg lr.svg metrics.csv report.html status.lua", "files of the run")
end)

-- ---- checkpoints -------------------------------------------------------------------------------------

-- BatchNorm brings buffers (running statistics) that are not parameters.
local function mlp()
	return nn.Sequential{nn.Linear(4, 8), nn.BatchNorm(8), nn.ReLU(), nn.Linear(8, 3)}
end

local function train_step(model, opt, x, y)
	local ce = nn.CrossEntropyLoss()
	opt:zero_grad()
	local z = model:forward(x)
	local loss = ce:forward(z, y)
	model:backward(x, ce:backward(z, y))
	opt:step()
	return loss
end

-- What the kernel does when a run's process dies: its lock goes (the
-- tests resume runs in the process that made them).
local function crash(exp)
	exp._lock:unlock()
end

local function same_tensors(a, b, what)
	eq(#a, #b, what .. " count")
	for i = 1, #a do
		local ta, tb = a[i]:reshape(-1):totable(), b[i]:reshape(-1):totable()
		eq(#ta, #tb, what .. " " .. i .. " size")
		for j = 1, #ta do
			if ta[j] ~= tb[j] then
				error(string.format("%s %d differs at %d: %.9g vs %.9g", what, i, j, ta[j], tb[j]), 2)
			end
		end
	end
end

if lunet.save and lunet.load then
	test("checkpoint and resume: parameters, optimiser state, rng, config and metrics", function()
		lunet.seed(SEED)
		local x, y = lunet.randn(6, 4), {1, 2, 3, 1, 2, 3}
		local exp = new{name = "resume", config = {lr = 0.1, epochs = 3}, args = {"--lr=0.05"}}
		local model = mlp()
		local opt = optim.SGD(model, {lr = exp.config.lr, momentum = 0.9})
		eq(exp:restore(model, opt), 0, "restore on a fresh run")
		for _ = 1, 3 do train_step(model, opt, x, y) end
		exp:log{epoch = 1, loss = 1.5}
		exp:checkpoint(model, opt, {best = 0.5})
		check(exists(exp.dir .. "checkpoint.lunet"), "checkpoint.lunet written")
		local draw = lunet.rand(4):totable()          -- what the random source gives next
		exp:log{epoch = 2, loss = 1.0}                -- logged after the checkpoint
		local loss_next = train_step(model, opt, x, y)
		local after = model:parameters()

		-- while the run's process lives, nobody else may resume it
		raises_exactly("lunet.experiment: the run in " .. exp.dir .. " is running already (process " ..
			lunet.sys.getpid() .. "@" .. lunet.sys.hostname() .. "); wait for it to end",
			new, {name = "ignored", args = {"--resume=" .. exp.dir}})
		eq(read(exp.dir .. "metrics.csv"), "epoch,loss\n1,1.5\n2,1\n", "metrics.csv untouched")
		-- a new process would build a fresh model from another seed
		crash(exp)
		lunet.seed(SEED + 1)
		local exp2 = new{name = "ignored", config = {lr = 0.1, epochs = 3},
			args = {"--resume=" .. exp.dir, "--epochs=4"}}
		eq(exp2.dir, exp.dir, "resumed in the same directory")
		eq(exp2.config.lr, 0.05, "lr from the checkpoint's config")
		eq(exp2.config.epochs, 4, "command line overrides the saved config")
		local model2 = mlp()
		local opt2 = optim.SGD(model2, {lr = exp2.config.lr, momentum = 0.9})
		local epoch, ck = exp2:restore(model2, opt2)
		eq(epoch, 1, "epoch of the checkpoint")
		eq(ck.best, 0.5, "extra field kept")
		eq(exp2.resumed, ck, "exp.resumed is the checkpoint")
		local draw2 = lunet.rand(4):totable()
		for i = 1, 4 do eq(draw2[i], draw[i], "random draw " .. i .. " after restore") end
		-- the metrics logged after the checkpoint are dropped
		eq(#exp2.metrics, 1, "rows kept")
		eq(read(exp.dir .. "metrics.csv"), "epoch,loss\n1,1.5\n", "metrics.csv cut back")
		-- the next step (which uses the momentum buffers) matches bit for bit
		eq(train_step(model2, opt2, x, y), loss_next, "loss of the next step")
		same_tensors(model2:parameters(), after, "parameter")
		same_tensors({model2:get(2).running_mean, model2:get(2).running_var},
			{model:get(2).running_mean, model:get(2).running_var}, "BatchNorm running statistic")
		model:evaluate()
		model2:evaluate()
		same_tensors({model2:forward(x)}, {model:forward(x)}, "output in evaluate mode")
		-- the checkpoint loaded by hand is a model and an optimiser over it
		local raw = lunet.load(exp.dir .. "checkpoint.lunet")
		check(nn.is_module(raw.model), "checkpoint.model is a module")
		eq(raw.opt.steps, 3, "checkpoint.opt is an optimiser after 3 steps")
		exp2:log{epoch = 2, loss = 0.9}
		eq(read(exp.dir .. "metrics.csv"), "epoch,loss\n1,1.5\n2,0.9\n", "metrics continue")
		check(read(exp.dir .. "config.lua"):find("-- resumed ", 1, true), "resume recorded")
		exp2:finish()
	end)

	test("resume reads back strings with commas, quotes and line breaks; a bad metrics.csv is named", function()
		local exp = new{name = "resume3"}
		exp:log{epoch = 1, note = 'two\nlines, "quoted"', loss = 0.5}
		exp:log{epoch = 2, note = " padded ", loss = 0 / 0}
		exp:checkpoint(mlp())
		crash(exp)
		local exp2 = new{name = "resume3", resume = exp.dir}
		eq(#exp2.metrics, 2, "rows read back")
		eq(exp2.metrics[1].note, 'two\nlines, "quoted"', "string with a line break, comma and quotes")
		eq(exp2.metrics[2].note, " padded ", "string with outer spaces")
		eq(math.type(exp2.metrics[1].epoch), "integer", "epoch as an integer")
		check(exp2.metrics[2].loss ~= exp2.metrics[2].loss, "nan read back as nan")
		crash(exp2)
		local f = assert(io.open(exp.dir .. "metrics.csv", "w"))
		f:write('epoch,loss\n1,0.5\n2,"0.25\n')
		f:close()
		raises_exactly("lunet.experiment: cannot resume from " .. exp.dir .. ": " .. exp.dir ..
			"metrics.csv:3: unclosed quote", new, {name = "resume3", resume = exp.dir})
		f = assert(io.open(exp.dir .. "metrics.csv", "w"))
		f:write("epoch,loss\n1,0.5,7\n")
		f:close()
		raises_exactly("lunet.experiment: cannot resume from " .. exp.dir .. ": " .. exp.dir ..
			"metrics.csv:2: 3 cells under a header of 2", new, {name = "resume3", resume = exp.dir})
	end)

	test("restore into a model of another shape is an error", function()
		local exp = new{name = "resume2"}
		local model = mlp()
		exp:checkpoint(model)
		crash(exp)
		local exp2 = new{name = "resume2", resume = exp.dir}
		local other = nn.Sequential{nn.Linear(4, 8), nn.BatchNorm(8), nn.ReLU(), nn.Linear(8, 2)}
		raises("exp:restore: parameter 5 of the model has shape {2,8}, the checkpoint's has {3,8}",
			exp2.restore, exp2, other)
	end)
else
	print("skipped: checkpoint and resume (this build has no lunet.save/lunet.load)")
	test("checkpoint without lunet.save is an error that says so", function()
		local exp = new{name = "nosave"}
		raises_exactly("exp:checkpoint: this build of lunet has no lunet.save", exp.checkpoint, exp, mlp())
	end)
end

os.execute("rm -rf " .. shell_quote(ROOT))
h.done()
