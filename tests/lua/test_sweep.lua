-- test_sweep.lua -- the grid of `lunet sweep` (lunet._sweep.parse and
-- expand): lists, integer ranges, names of runs and of the sweep, and a
-- mistake in the syntax as a one-line error naming the key; and `lunet runs`
-- (lunet._runs): the status of a run from its files and lock, the table and
-- --compare.  The sweep itself (processes, resume, Ctrl-C, --emit) is
-- tests/sh/test_sweep.sh.
local lunet = lunet or require "lunet"
local sys = lunet.sys
local S, R = lunet._sweep, lunet._runs

local harness = dofile((arg[0]:match("^(.*)/") or ".") .. "/harness.lua")
local h = harness.new{}
local test, check, eq = h.test, h.check, h.eq
local write_file, read_file = h.write_file, h.read_file

local DIR, path = h.tempdir()
local SCRIPT = path("train.lua")
write_file(SCRIPT, "-- a script\n")

-- parse(words...) with the script first.
local function parse(...)
	return S.parse{SCRIPT, ...}
end

-- The error of f(...) must be exactly want (one line: an error object whose
-- tostring is the message).
local function fails(want, f, ...)
	local ok, err = pcall(f, ...)
	if ok then error("expected an error: " .. want, 2) end
	if tostring(err) ~= want then
		error(string.format("expected error %q, got %q", want, tostring(err)), 2)
	end
end

local function names(configs)
	local t = {}
	for i, c in ipairs(configs) do t[i] = c.name end
	return table.concat(t, " ")
end

-- ---- the grid ---------------------------------------------------------------------------

test("lists and ranges, crossed with the first key outermost", function()
	local spec = parse("--lr=0.1,0.01", "--seed=1..3", "-j", "2")
	eq(table.concat(spec.keys, " "), "lr seed", "keys in order")
	eq(table.concat(spec.values.seed, " "), "1 2 3", "1..3")
	eq(spec.jobs, 2, "-j 2")
	local configs = S.expand(spec)
	eq(#configs, 6, "2 x 3 runs")
	eq(names(configs), "lr=0.1,seed=1 lr=0.1,seed=2 lr=0.1,seed=3 lr=0.01,seed=1 lr=0.01,seed=2 " ..
		"lr=0.01,seed=3", "names and order")
	eq(table.concat(configs[4].args, " "), "--lr=0.01 --seed=1", "arguments of a run")
	eq(configs[4].index, 3, "0-based index (the Slurm task)")
	eq(spec.name, "train-lr-seed", "default sweep name: the script and the keys that vary")
end)

test("ranges and values mixed; one value passed to every run; a bare --flag is true", function()
	local spec = parse("--seed=-1..1,7", "--epochs=2", "--verbose", "--data=../x/y")
	eq(table.concat(spec.values.seed, " "), "-1 0 1 7", "range then value")
	eq(table.concat(spec.values.data, " "), "../x/y", "a path with .. is a value")
	eq(table.concat(spec.values.verbose, " "), "true", "--verbose")
	local configs = S.expand(spec)
	eq(#configs, 4, "4 runs")
	eq(configs[1].name, "data=.._x_y,epochs=2,seed=-1,verbose=true", "every key in the name, sorted")
	eq(spec.name, "train-seed", "only seed varies")
	eq(parse("--epochs=2").name, "train-sweep", "nothing varies")
	eq(parse("--epochs=2", "--name=mine").name, "mine", "--name")
	eq(parse("--batch-size=1,2").keys[1], "batch_size", "--batch-size is batch_size")
end)

test("names of runs: cleaned, long values cut and hashed, clashes told apart", function()
	local long = string.rep("x", 60)
	local configs = S.expand(parse("--a=p/q,p_q", "--b=" .. long))
	local n1, n2 = configs[1].name, configs[2].name
	check(n1 ~= n2, "p/q and p_q differ: " .. n1 .. " vs " .. n2)
	check(n1:find("^a=p_q,b=x+~%x+~%x+$"), n1)
	check(#n1 < 80, "a long value is cut")
	for _, c in ipairs(configs) do check(not c.name:find("/"), "no / in a name") end
	eq(S.expand(parse("--a=p/q,p_q", "--b=" .. long))[1].name, n1, "the same every time")
end)

test("options of the sweep", function()
	local spec = parse("--x=1,2", "--jobs=3", "--sort=-loss", "--emit", "slurm", "--task=1")
	eq(spec.jobs, 3, "--jobs=3")
	check(spec.sort.key == "loss" and spec.sort.descending == false, "--sort=-loss: smallest first")
	eq(spec.emit, "slurm", "--emit slurm")
	eq(spec.task, 1, "--task")
	spec = parse("--x=1", "-j4", "--sort=accuracy", "--emit=parallel")
	check(spec.jobs == 4 and spec.sort.descending and spec.emit == "parallel", "-j4, --sort=accuracy")
	check(S.parse{"--help"}.help, "--help")
end)

test("mistakes are one line naming the key or the option", function()
	local P = "lunet sweep: "
	fails(P .. "--seed=1..: bad range '1..' (a range is lo..hi with integers lo <= hi; list other " ..
		"values: 0.1,0.2)", parse, "--seed=1..")
	fails(P .. "--lr=0.1..0.5: bad range '0.1..0.5' (a range is lo..hi with integers lo <= hi; list " ..
		"other values: 0.1,0.2)", parse, "--lr=0.1..0.5")
	fails(P .. "--seed=3..1: empty range '3..1' (lo > hi)", parse, "--seed=3..1")
	fails(P .. "--lr=: no value (give --lr=v1,v2 or --lr=lo..hi)", parse, "--lr=")
	fails(P .. "--lr=0.1,,0.2: an empty value between commas", parse, "--lr=0.1,,0.2")
	fails(P .. "--lr=0.1,: an empty value between commas", parse, "--lr=0.1,")
	fails(P .. "--seed=1..3,2: the value 2 is given twice", parse, "--seed=1..3,2")
	fails(P .. "--lr is given twice (list its values once: --lr=a,b)", parse, "--lr=1", "--lr=2")
	fails(P .. "bad option '--2x=1': keys are --key=values", parse, "--2x=1")
	fails(P .. "--resume is an option of lunet sweep, not a key to sweep over", parse, "--resume=x")
	fails(P .. "-j expects an integer >= 1, got '0'", parse, "--x=1", "-j", "0")
	fails(P .. "-j expects an integer >= 1, got 'two'", parse, "--x=1", "--jobs=two")
	fails(P .. "-j needs a value", parse, "--x=1", "-j")
	fails(P .. "--emit=sge: expected --emit=slurm or --emit=parallel", parse, "--x=1", "--emit=sge")
	fails(P .. "--name=a/b: a name is letters, digits and _ . - = , + (no /)", parse, "--x=1", "--name=a/b")
	fails(P .. "--task expects an integer >= 0, got '-1'", parse, "--x=1", "--task=-1")
	fails(P .. "--sort needs a metric: --sort=accuracy or --sort=-loss", parse, "--x=1", "--sort=-")
	fails(P .. "unknown option '-x' (lunet sweep --help)", parse, "-x")
	fails(P .. "unexpected argument 'more.lua' (one script; keys are --key=values)", parse, "more.lua")
	fails(P .. "--lr comes before the script: lunet sweep SCRIPT --key=values", S.parse, {"--lr=1", SCRIPT})
	fails(P .. "no script given (lunet sweep SCRIPT --key=values; lunet sweep --help)", S.parse, {"-j", "2"})
	fails(P .. "cannot read the script '" .. path("none.lua") .. "'", S.parse, {path("none.lua"), "--a=1"})
	fails(P .. "no key to sweep over (give --key=v1,v2 after the script)", S.parse, {SCRIPT})
end)

-- ---- lunet runs ---------------------------------------------------------------------------

local RUNS = path("runs")

-- A run directory written by lunet.experiment, in this process.
local function make_run(name, config, rows, finish)
	local exp = lunet.experiment{name = name, root = RUNS, args = {}, config = config,
		output = assert(io.open(path("sink"), "w"))}
	for _, r in ipairs(rows) do exp:log(r) end
	if finish then exp:finish() end
	return exp
end

test("runs.load: status from status.lua and the lock", function()
	local done = make_run("a", {lr = 0.1, epochs = 3, tag = 'say "hi",\nthere'},
		{{epoch = 1, loss = 0.5}, {epoch = 2, loss = 0.25}}, true)
	local r = assert(R.load(done.dir))
	eq(r.status, "finished", "finished")
	eq(r.epochs, 2, "epochs done")
	eq(R.epochs_text(r), "2/3", "of config.epochs")
	eq(r.final.loss, 0.25, "final loss")
	eq(r.config.tag, 'say "hi",\nthere', "config.lua read back without running it")
	eq(r.config.lr, 0.1, "a float")
	eq(math.type(r.config.epochs), "integer", "an integer")

	local live = make_run("b", {lr = 0.2, epochs = 3}, {{epoch = 1, loss = 0.7}}, false)
	r = R.load(live.dir)
	eq(r.status, "running", "held by this process: running")
	eq(r.holder, sys.getpid() .. "@" .. sys.hostname(), "who holds it")
	live._lock:unlock()  -- as the kernel does when a process dies
	eq(R.load(live.dir).status, "interrupted", "status.lua says running, nobody holds the lock")

	local ok = pcall(function()
		local exp <close> = make_run("c", {lr = 0.3, epochs = 3}, {{epoch = 1, loss = 0.9}}, false)
		error("the data ran out")
	end)
	check(not ok, "the run failed")
	r = R.load(path("runs/c/") .. sys.list_dir(path("runs/c"))[1])
	eq(r.status, "failed", "failed")
	check(r.error:find("the data ran out", 1, true), "its error: " .. tostring(r.error))

	-- A run from before status.lua: finished if it has plots.
	local old = path("runs/old/1")
	sys.mkdir(old)
	write_file(old .. "/config.lua", "-- lunet experiment 'old', started 2020-01-02 03:04:05\nreturn {\n\tlr = 1,\n}\n")
	write_file(old .. "/metrics.csv", "epoch,loss\n1,2\n")
	eq(R.load(old).status, "interrupted", "no plots")
	write_file(old .. "/loss.svg", "<svg/>")
	r = R.load(old)
	eq(r.status, "finished", "plots")
	eq(r.started, "2020-01-02 03:04:05", "start time from config.lua")

	local bad = path("runs/bad/1")
	sys.mkdir(bad)
	write_file(bad .. "/config.lua", "os.exit(3)\n")
	local none, why = R.load(bad)
	check(none == nil and why:find("expected `return {`", 1, true), "a config.lua not lunet's: " .. tostring(why))
end)

test("lunet runs: the table, differing config values, --compare", function()
	local out = path("runs.txt")
	local f = assert(io.open(out, "w"))
	eq(R.main({RUNS}, f), 0, "exit status")
	f:close()
	local text = read_file(out)
	local lines = {}
	for l in text:gmatch("[^\n]+") do lines[#lines + 1] = l end
	eq(#lines, 5, "a header and 4 runs (the unreadable one left out):\n" .. text)
	check(lines[1]:find("^run +started +status +epochs +loss +epochs +lr +tag$"),
		"header: metrics, then the config keys that differ: " .. lines[1])
	check(lines[2]:find("^old/1 +2020%-01%-02 03:04:05 +finished +1 +2 +1$"), lines[2])
	check(text:find('\na/%S+ +%S+ %S+ +finished +2/3 +0.25 +3 +0.1 +say "hi",\\nthere\n'), text)
	check(text:find("\nb/%S+ +%S+ %S+ +interrupted +1/3 +0.7 +3 +0.2\n"), text)
	check(text:find("\nc/%S+ +%S+ %S+ +failed +1/3 +0.9 +3 +0.3\n"), text)

	f = assert(io.open(out, "w"))
	local a = "a/" .. sys.list_dir(path("runs/a"))[1]
	R.main({RUNS, "--compare", a, path("runs/b/") .. sys.list_dir(path("runs/b"))[1]}, f)
	f:close()
	text = read_file(out)
	check(text:find("\n%* status +finished +interrupted\n"), text)
	check(text:find("\n%*   lr +0.1 +0.2\n"), text)
	check(text:find("\n    epochs +3 +3\n"), text)
	check(text:find("\n    loss +0.25 +0.7\n"), text)
	check(text:find('\n%*   tag +say "hi",\\nthere\n'), text)

	fails("lunet runs: no run 'zzz' under " .. RUNS .. " (and no run directory of that name)",
		R.main, {RUNS, "--compare", "zzz", a})
	fails("lunet runs: no directory " .. path("nothing") .. " (give the directory of the runs: lunet runs DIR)",
		R.main, {path("nothing")})
	fails("lunet runs: --compare needs two runs: --compare RUN1 RUN2", R.main, {"--compare", "x"})
	fails("lunet runs: unknown option '--all' (lunet runs --help)", R.main, {"--all"})
end)

os.execute("rm -rf '" .. DIR .. "'")
h.done()
