-- experiment.lua -- lunet.experiment: configuration with command-line
-- overrides, a run directory, metrics.csv, a progress bar, resumable
-- checkpoints and SVG plots of the metrics.
--
--   local exp <close> = lunet.experiment{name = "mnist", config = {lr = 0.1, epochs = 5, seed = 1},
--                                        help = {lr = "learning rate", ...}}
--   local cfg = exp.config                      -- lunet mnist.lua --lr=0.05 --epochs=10
--   lunet.seed(cfg.seed)
--   local model = nn.Sequential{...}
--   local opt = optim.SGD(model, {lr = cfg.lr})
--   local done = exp:restore(model, opt)        -- 0, or the epoch the checkpoint was taken at
--   for epoch = done + 1, cfg.epochs do
--     for i = 1, nbatches do
--       ... train on batch i ...
--       exp:progress(i, nbatches, {loss = loss})
--     end
--     exp:log{epoch = epoch, loss = train_loss, accuracy = acc}
--     exp:checkpoint(model, opt)
--   end
--   -- leaving the scope of `exp` calls exp:finish(): plots and a summary
--
-- Continue an interrupted run with `lunet mnist.lua --resume=runs/mnist/20261127-214501`
-- (or lunet.experiment{..., resume = dir}): the run goes on in the same
-- directory, with the configuration saved in its checkpoint (command-line
-- overrides still apply, e.g. --epochs=20 to train longer), and
-- exp:restore copies the saved parameters, optimiser state and random
-- state into the live objects, so the run continues as if never stopped
-- (bit for bit, given the same data order).  exp.resumed is the loaded
-- checkpoint table (nil on a fresh run); rows of metrics.csv logged after
-- the checkpoint was taken are dropped, to be logged again.  Reading a key
-- that exp.config lacks is an error (a typo is not a silent nil).
--
-- Options of lunet.experiment{...} (an unknown key, or a value of the wrong
-- type, is an error naming the key and listing the options):
--   name        run name (default: the script's file name without .lua)
--   config      table of defaults: numbers, integers, booleans, strings
--   help        table: a line saying what each key of config means (--help)
--   one_of      table: for a key of config, the list of values it may take
--               (one_of = {optim = {"sgd", "adam"}})
--   at_least    table: for a numeric key of config, its smallest value
--               (at_least = {batch = 1, epochs = 1})
--   args        command-line arguments to parse (default: the global `arg`)
--   root        base directory of runs (default: $LUNET_RUNS, else "runs")
--   resume      run directory to continue (also --resume=DIR)
--   description one line shown by --help
--   output      file for progress and summaries (default io.stdout)
--   tty         force (true) or suppress (false) the terminal progress bar
--   progress_every  seconds between progress lines when not on a terminal (10)
--   clock       function returning seconds (default lunet.clock)
--
-- Command line (cmdline.lua): --key=value for each key of config, converted
-- to the type of its default (an integer default takes integers only;
-- booleans take true/false, and a bare --key means true); --weight-decay
-- is weight_decay.  --help lists the keys with their defaults, types and
-- help lines, and exits; --resume=DIR continues a run.  A mistake is one
-- line naming the known keys, without a traceback.
--
-- The run directory <root>/<name>/<YYYYmmdd-HHMMSS>/ (with -2, -3... if
-- taken) holds:
--   config.lua        `return {...}` of the final configuration, with the
--                     command line(s) in its leading comments
--   metrics.csv       one row per exp:log, flushed at once (csv.lua)
--   checkpoint.lunet  the last exp:checkpoint (written atomically by lunet.save)
--   <metric>.svg      one plot per numeric metric, written by exp:finish (plot.lua)
--   status.lua        `return {status = "running", started = ..., host = ..., pid = ...}`:
--                     running, then finished, failed (with the error) or
--                     interrupted when the run ends (read by `lunet runs`)
--   lock              held (lunet.sys.lock) by the process running the run,
--                     holding "pid@host"; deleted when the run ends.  A
--                     status "running" whose lock nobody holds is a run
--                     whose process died.
--   report.html       a self-contained page (report.lua): the config, the
--                     metric plots, the logged rows, the confusion matrix
--                     and the per-layer gradient norms; written at each new
--                     epoch logged (at most every 10 s otherwise) and at
--                     the end
--   gradients.csv     with exp:watch(model): per logged row and layer, the
--                     norm of the layer's delta (grad_input) and of its
--                     parameter gradients
--   confusion.csv     the last exp:confusion: counts, true class by row,
--                     predicted class by column
-- Every file is written atomically (lunet.sys.write_atomic), except the
-- rows appended to metrics.csv and gradients.csv.  All writing goes through
-- the methods of the section "the files of a run" and exp:checkpoint.
--
-- Environment: LUNET_RUN_DIR=DIR makes a fresh run use exactly DIR (created
-- if missing; one holding a config.lua already is refused) instead of
-- <root>/<name>/<timestamp>/; `lunet sweep` gives each of its runs its
-- directory this way.  LUNET_SWEEP_CHECK=1 makes lunet.experiment check the
-- command line, print the script's defaults as a config.lua after the line
-- "-- lunet sweep check" and exit: `lunet sweep` asks so before it starts
-- runs (every --key=value given is converted, so a bad one is an error).
--
-- Watching the gradients and the classes:
--   exp:watch(model[, {samples = 16}])  records, at each exp:log, per layer
--       of model:trace(), the norm of its delta and of its parameter
--       gradients, averaged over `samples` batches spread over the loop
--       that exp:progress reports (call exp:progress after the optimiser
--       step, while the gradients are there), or taken at the exp:log when
--       exp:progress was not called since the last one.
--   exp:confusion(model, x, y[, classes | {classes=, loss=, batch=}])
--       -> accuracy, matrix[, loss]: the predictions (arg-max of the
--       output, evaluate mode, `batch` rows at a time) of the rows of x
--       against the labels y (1-based), as a confusion matrix (matrix[t][p]:
--       the rows of class t predicted p); kept for the report and written
--       to confusion.csv.  With loss (a criterion), also its mean over x.
--
-- metrics.csv columns: epoch and step first (when logged), then the other
-- keys sorted.  A row may leave out keys (empty cells).  A row bringing a
-- key not seen before widens the table: the file is rewritten from the rows
-- kept in memory with the new header, and earlier rows get empty cells.
--
-- Data parallelism (README, "On a cluster"): a script whose config has a
-- boolean `dist` key runs on the ranks of an MPI job when given --dist, or
-- by itself when mpirun or srun started it (lunet.dist.launched()):
-- lunet.experiment calls lunet.dist.init() and sets config.dist to true,
-- exp.rank and exp.size (0 and 1 otherwise).  Rank 0 alone makes the run
-- directory, writes every file (config.lua, metrics.csv, checkpoints,
-- plots) and prints progress and summaries, after a first line
-- "<name>: data parallel on N ranks"; the other ranks know its directory
-- (exp.dir) and keep the logged rows in memory, silently.  exp:print(...)
-- is print on rank 0 only, for the script's own lines.  On
-- --resume every rank loads the checkpoint (the directory must be one all
-- ranks see) and exp:restore gives them all the same state.
--
-- How a run ends, with `local exp <close>`:
--   - normally: exp:finish() writes the plots and prints a summary;
--   - on an error, after rows were logged: the same, and the error goes on;
--   - on an error before the first row is logged or a checkpoint taken:
--     the run directory is removed (it would hold only config.lua), and
--     the error goes on;
--   - on Ctrl-C under the lunet runner (lunet.sys.is_interrupt): the
--     progress bar is erased, the summary printed as above, and the error
--     becomes one line, "interrupted at epoch E, step S; resume with
--     --resume=DIR" (E: the epoch after the last one logged; S: the
--     progress position in the current loop), an error object with fields
--     interrupted = true, epoch, step and dir.
local lunet, import = ...
local sys = lunet.sys
local csv, plot, cmdline, report = import("csv"), import("plot"), import("cmdline"), import("report")
local sorted_keys, show = cmdline.sorted_keys, cmdline.show

local Experiment = {}
Experiment.__index = Experiment
Experiment.__name = "lunet.Experiment"

local FN = "lunet.experiment"

-- The options of lunet.experiment{...} and the type each takes ("file": an
-- open Lua file).
local OPTIONS = {
	name = "string", config = "table", help = "table", one_of = "table", at_least = "table",
	args = "table",
	root = "string", resume = "string", description = "string", output = "file",
	tty = "boolean", progress_every = "number", clock = "function",
}
local OPTION_LIST = table.concat(sorted_keys(OPTIONS), ", ")

-- The columns of gradients.csv.
local GRAD_COLUMNS = {"epoch", "step", "layer", "name", "delta", "grad"}

-- The line before the defaults that LUNET_SWEEP_CHECK prints.
local CHECK_MARK = "-- lunet sweep check"

local function now_text() return os.date("%Y-%m-%d %H:%M:%S") end

-- metrics.csv puts these columns first, in this order; they are not
-- plotted but used as the x axis of the plots (step before epoch).
local FIRST = {epoch = 1, step = 2}
local PLOT_X = {"step", "epoch"}

local function column_less(a, b)
	local fa, fb = FIRST[a], FIRST[b]
	if fa or fb then
		if fa and fb then return fa < fb end
		return fa ~= nil
	end
	return a < b
end

local function file_exists(path)
	local f = io.open(path, "r")
	if f then f:close() return true end
	return false
end

-- The directory with exactly one trailing slash.
local function as_dir(d)
	return (d:gsub("/+$", "")) .. "/"
end

-- ---- lunet.experiment{...} -------------------------------------------------------------

-- Checks opts against OPTIONS: raises, at the caller of lunet.experiment,
-- for an unknown key or a value of the wrong type.
local function check_options(opts)
	for k, v in pairs(opts) do
		local want = OPTIONS[k]
		if want == nil then
			error(string.format("%s: unknown option '%s' (options: %s)", FN, tostring(k),
				OPTION_LIST), 3)
		end
		local got = want == "file" and io.type(v) or type(v)
		if got ~= want then
			error(string.format("%s: option '%s' must be %s, got %s (options: %s)", FN, k,
				want == "file" and "an open file" or "a " .. want, got or type(v), OPTION_LIST), 3)
		end
	end
end

-- Opens the checkpoint of the run in dir for --resume.  Returns the
-- checkpoint table.  A missing or unreadable checkpoint is a one-line
-- error: the directory came from the command line.
local function load_checkpoint(dir)
	local path = dir .. "checkpoint.lunet"
	if not file_exists(path) then
		cmdline.raise(string.format("%s: cannot resume from %s: no checkpoint.lunet there", FN, dir))
	end
	if not lunet.load then
		cmdline.raise(string.format("%s: cannot resume: this build of lunet has no lunet.load", FN))
	end
	local ok, ck = pcall(lunet.load, path)
	if not ok then
		cmdline.raise(string.format("%s: cannot resume from %s: %s", FN, path, tostring(ck)))
	end
	if type(ck) ~= "table" or type(ck.config) ~= "table" then
		cmdline.raise(string.format("%s: cannot resume from %s: not a checkpoint of lunet.experiment",
			FN, path))
	end
	return ck
end

-- Starts data parallelism when the script's config has a boolean `dist`
-- and --dist asks for it or a launcher started the process (see the top);
-- sets overrides.dist to the outcome.  Returns rank, size (0, 1 without).
local function start_dist(spec, overrides)
	if type(spec.defaults.dist) ~= "boolean" then return 0, 1 end
	local dist = lunet.dist
	local asked = overrides.dist
	local want = asked
	if want == nil then want = spec.defaults.dist or dist.launched() end
	overrides.dist = want
	if not want then return 0, 1 end
	if not dist.available then
		cmdline.raise(string.format("%s: %s, but this lunet was built without MPI (configure it " ..
			"with cmake -DLUNET_MPI=ON)", FN, asked and "--dist needs lunet.dist" or
			"started by mpirun or srun"))
	end
	return dist.init()
end

-- Rank 0's string s, on every rank (s is ignored elsewhere).
local function from_rank0(s, rank)
	local dist = lunet.dist
	local n = lunet.tensor{rank == 0 and #s or 0}
	dist.broadcast(n, 0)
	local len = math.tointeger(n[1])
	local bytes = lunet.zeros(math.max(1, len))
	if rank == 0 then
		for i = 1, len do bytes[i] = s:byte(i) end
	end
	dist.broadcast(bytes, 0)
	local chars = {}
	for i = 1, len do chars[i] = string.char(math.tointeger(bytes[i])) end
	return table.concat(chars)
end

-- Where the ranks other than 0 write: nowhere.
local SILENT = {write = function(self) return self end, flush = function() end}

-- lunet.experiment{name=, config=, ...} -> a new experiment (see the top).
local function new_experiment(opts)
	if opts == nil then opts = {} end
	if type(opts) ~= "table" then
		error(string.format("%s: expected a table of options, got %s", FN, type(opts)), 2)
	end
	check_options(opts)
	local name = opts.name or cmdline.script_name() or "experiment"
	if not name:find("^[%w_%.%-]+$") or name == "." or name == ".." then
		error(string.format("%s: name must be letters, digits, '_', '-' or '.', got %q", FN, name), 2)
	end
	local every = opts.progress_every or 10
	if every < 0 or every ~= every then
		error(string.format("%s: progress_every must be a number >= 0, got %s", FN, tostring(every)), 2)
	end
	local args = opts.args
	if args == nil then args = rawget(_G, "arg") or {} end
	local a = rawget(_G, "arg")
	local script = args == a and type(a[0]) == "string" and a[0] or name .. ".lua"
	local spec, err = cmdline.spec{config = opts.config, help = opts.help, one_of = opts.one_of,
		at_least = opts.at_least, description = opts.description, script = script}
	if not spec then error(FN .. ": " .. err, 2) end
	local out = opts.output or io.stdout
	local overrides, resume = cmdline.parse(spec, args, out)
	if os.getenv("LUNET_SWEEP_CHECK") == "1" then
		io.stdout:write(CHECK_MARK, "\n", cmdline.config_text(spec.defaults, {}))
		io.stdout:flush()
		os.exit(0)
	end
	resume = resume or opts.resume
	local rank, size = start_dist(spec, overrides)
	if rank ~= 0 then out = SILENT end

	local clock = opts.clock or lunet.clock
	local self = setmetatable({
		name = name,
		defaults = spec.defaults,
		metrics = {},       -- the logged rows, in order
		columns = {},       -- the header of metrics.csv
		gradients = {},     -- the rows of gradients.csv (exp:watch)
		out = out,
		clock = clock,
		progress_every = every,
		tty = opts.tty,
		command = cmdline.command_line(args),
		started = clock(),
		finished = false,
		rank = rank,
		size = size,
		silent = rank ~= 0,
	}, Experiment)
	if self.silent then self.tty = false end
	if self.tty == nil then self.tty = sys.isatty(out) end

	local config = {}
	for k, v in pairs(spec.defaults) do config[k] = v end
	local header
	if resume then
		-- Continue in the run directory of the checkpoint.
		local dir = as_dir(resume)
		local ck = load_checkpoint(dir)
		self.dir = dir
		if rank == 0 then self:_take_lock() end
		-- Saved values for keys the script still knows; the script's type wins.
		for k, v in pairs(ck.config) do
			local saved = cmdline.saved_value(spec, k, v)
			if saved ~= nil then config[k] = saved end
		end
		self.resumed = ck
		self.dir = dir
		if type(ck.name) == "string" then self.name = ck.name end
		header = cmdline.config_header(dir .. "config.lua")
		header[#header + 1] = string.format("resumed %s at epoch %s, step %s: %s",
			os.date("%Y-%m-%d %H:%M:%S"), tostring(ck.epoch or "-"), tostring(ck.step or "-"),
			self.command)
		-- Rows logged after the checkpoint are dropped: they are logged again.
		if file_exists(dir .. "metrics.csv") then
			local columns, rows = csv.read(dir .. "metrics.csv")
			if not columns then
				self:_release_lock()
				cmdline.raise(string.format("%s: cannot resume from %s: %s", FN, dir, rows))
			end
			local keep = math.tointeger(ck.metrics_rows) or #rows
			for i = 1, math.min(keep, #rows) do self.metrics[i] = rows[i] end
			self.columns = columns
			if rank == 0 then self:_rewrite_csv() end
		end
		self:_resume_extras(ck)
	else
		if rank == 0 then
			self:_make_dir(opts.root)
			self:_take_lock()
		end
		if size > 1 then self.dir = from_rank0(self.dir, rank) end
		header = {
			string.format("lunet experiment '%s', started %s", name, os.date("%Y-%m-%d %H:%M:%S")),
			"command: " .. self.command,
		}
	end
	for k, v in pairs(overrides) do config[k] = v end
	self.config = cmdline.strict(config)
	if size > 1 then
		out:write(string.format("%s: data parallel on %d ranks\n", self.name, size))
		out:flush()
	end
	self._config_text = cmdline.config_text(config, header)
	local ok, werr = pcall(self._write, self, "config.lua", self._config_text)
	if ok and not self.silent then ok, werr = pcall(self._begin_status, self) end
	if not ok then
		if self._fresh then self:_discard() else self:_release_lock() end
		error(werr, 0)
	end
	return self
end

-- ---- the files of a run ------------------------------------------------------------------

-- Creates a fresh run directory <root>/<name>/<timestamp>[-N]/ and sets
-- self.dir.  mkdir is the reservation: two runs started in the same
-- second get different directories.
function Experiment:_make_dir(root)
	local given = os.getenv("LUNET_RUN_DIR")
	if given and given ~= "" then
		local dir = as_dir(given)
		local ok, err = pcall(sys.mkdir, dir)
		if not ok then cmdline.raise(string.format("%s: LUNET_RUN_DIR: %s", FN, err)) end
		if file_exists(dir .. "config.lua") then
			cmdline.raise(string.format("%s: LUNET_RUN_DIR=%s holds a run already (config.lua); " ..
				"continue it with --resume=%s", FN, given, given))
		end
		self.dir = dir
		self._fresh = true
		return
	end
	root = root or os.getenv("LUNET_RUNS")
	if root == nil or root == "" then root = "runs" end
	local parent = as_dir(root) .. self.name
	local base = parent .. "/" .. os.date("%Y%m%d-%H%M%S")
	self._made_parent = sys.mkdir(parent) and parent or nil
	local dir, n = base, 1
	while not sys.mkdir(dir) do
		n = n + 1
		if n > 1000 then
			error(string.format("%s: cannot find a free run directory %s-N", FN, base), 0)
		end
		dir = base .. "-" .. n
	end
	self.dir = dir .. "/"
	self._fresh = true
end

-- Writes text to the file of that name in the run directory, atomically
-- (rank 0 only: the other ranks write nothing).
function Experiment:_write(file, text)
	if self.silent then return end
	sys.write_atomic(self.dir .. file, text)
end

-- Rewrites metrics.csv from the rows in memory; the next row appended
-- reopens it.
function Experiment:_rewrite_csv()
	if self.csv then self.csv:close() self.csv = nil end
	self:_write("metrics.csv", csv.text(self.columns, self.metrics))
end

-- Appends one row to metrics.csv and flushes it.
function Experiment:_append_row(row)
	if self.silent then return end
	if not self.csv then
		local f, err = io.open(self.dir .. "metrics.csv", "a")
		if not f then
			error(string.format("exp:log: cannot open %smetrics.csv: %s", self.dir, err), 3)
		end
		self.csv = f
	end
	self.csv:write(csv.line(self.columns, row))
	self.csv:flush()
end

-- Whether the run ending now should leave no directory: a fresh run that
-- logged no row and took no checkpoint.
function Experiment:_empty()
	return self._fresh == true and #self.metrics == 0 and not self.checkpoints
end

-- Removes the run directory of an empty run: config.lua, then the
-- directory if nothing else is in it (files the script put there stay,
-- and config.lua is then written back), then <root>/<name>/ if this run
-- created it and it is empty.  Returns true if the directory went.
function Experiment:_discard()
	if self.csv then self.csv:close() self.csv = nil end
	if self._grad_csv then self._grad_csv:close() self._grad_csv = nil end
	for _, f in ipairs{"config.lua", "status.lua", "report.html", "gradients.csv", "confusion.csv"} do
		os.remove(self.dir .. f)
	end
	self:_release_lock()
	if not os.remove((self.dir:gsub("/+$", ""))) then
		pcall(self._write, self, "config.lua", self._config_text)
		return false
	end
	if self._made_parent then os.remove(self._made_parent) end
	return true
end

-- Takes the run's lock (see the top), or raises in one line when another
-- process holds it.  A file system that refuses locks leaves the run
-- without one: status.lua alone then says it is running.
function Experiment:_take_lock()
	local text = string.format("%d@%s\n", sys.getpid(), sys.hostname())
	local ok, lock, holder = pcall(sys.lock, self.dir .. "lock", {text = text})
	if ok and lock == false then
		cmdline.raise(string.format("%s: the run in %s is running already (process %s); " ..
			"wait for it to end", FN, self.dir, (holder:gsub("%s+$", ""))))
	end
	if ok then self._lock = lock end
end

-- Deletes and releases the lock (the run no longer runs here).
function Experiment:_release_lock()
	if self._lock then
		self._lock:unlock(true)
		self._lock = nil
	end
end

-- Writes status.lua for a run that starts (or resumes) now.
function Experiment:_begin_status()
	local prev = self.resumed and cmdline.read_config_file(self.dir .. "status.lua")
	self._status = {
		status = "running",
		started = prev and type(prev.started) == "string" and prev.started or now_text(),
		host = sys.hostname(),
		pid = sys.getpid(),
		resumed = self.resumed and now_text() or nil,
	}
	self:_set_status("running")
end

-- Rewrites status.lua with the status given (and the error of a failed
-- run).
function Experiment:_set_status(status, message)
	local st = self._status
	if st == nil then return end
	st.status, st.error, st.updated = status, message, now_text()
	self:_write("status.lua", cmdline.config_text(st,
		{"lunet run status: running, finished, interrupted or failed"}))
end

-- exp:print(...): print(...) on rank 0, nothing on the other ranks (see
-- the top); print(...) without data parallelism.
function Experiment:print(...)
	if not self.silent then print(...) end
end

-- exp:path(file) -> the path of file inside the run directory.
function Experiment:path(file)
	return self.dir .. file
end

-- ---- logging ----------------------------------------------------------------------------

-- exp:log{epoch=1, loss=0.43, accuracy=0.85}: appends a row to metrics.csv
-- (written and flushed at once) and keeps it for the plots.  Values are
-- numbers, booleans or strings; keys are strings.
function Experiment:log(row)
	if type(row) ~= "table" then
		error(string.format("exp:log: expected a table of metrics, got %s", type(row)), 2)
	end
	local copy, new = {}, {}
	local seen = {}
	for _, c in ipairs(self.columns) do seen[c] = true end
	for k, v in pairs(row) do
		if type(k) ~= "string" or k == "" then
			error(string.format("exp:log: metric names must be non-empty strings, got %s",
				tostring(k)), 2)
		end
		local t = type(v)
		if t ~= "number" and t ~= "boolean" and t ~= "string" then
			error(string.format("exp:log: metric '%s' must be a number, boolean or string, got %s",
				k, t), 2)
		end
		copy[k] = v
		if not seen[k] then new[#new + 1] = k end
	end
	if next(copy) == nil then error("exp:log: expected at least one metric", 2) end
	self.metrics[#self.metrics + 1] = copy
	if #new > 0 then
		-- A new column: the whole file is rewritten with the wider header.
		for _, k in ipairs(new) do self.columns[#self.columns + 1] = k end
		table.sort(self.columns, column_less)
		self:_rewrite_csv()
	else
		self:_append_row(copy)
	end
	if self._watch then self:_watch_record(copy) end
	self:_maybe_report(copy)
end

-- Rewrites report.html after a row that brings a new epoch, or when the
-- last report is 10 s old (runs that log every step).
function Experiment:_maybe_report(row)
	if self.silent then return end
	local now = self.clock()
	local epoch = row.epoch
	if (epoch ~= nil and epoch ~= self._report_epoch) or now - (self._report_time or -math.huge) >= 10 then
		self._report_epoch, self._report_time = epoch, now
		self:_write_report()
	end
end

-- What report.run_page draws: the run as it stands.
function Experiment:_report_data()
	local config = {}
	for k, v in pairs(self.config) do config[k] = v end
	local st = self._status or {}
	return {
		name = self.name, dir = self.dir, command = self.command, config = config,
		status = st.status or (self.finished and "finished" or "running"),
		started = st.started, updated = st.updated, host = st.host, error = st.error,
		columns = self.columns, metrics = self.metrics, gradients = self.gradients,
		confusion = self._confusion, version = lunet.version,
	}
end

function Experiment:_write_report()
	self:_write("report.html", report.run_page(self:_report_data()))
end

-- ---- gradients and classes ------------------------------------------------------------

local WATCH_OPTIONS = {{"samples", "number"}}

-- exp:watch(model[, {samples = 16}]): see the top.
function Experiment:watch(model, opts)
	local mt = type(model)
	if (mt ~= "table" and mt ~= "userdata") or type(model.trace) ~= "function" then
		error(string.format("exp:watch: expected a model with a trace method (a module or container), got %s",
			mt == "table" and "a table without trace" or mt), 2)
	end
	local bad = lunet._optionerror("exp:watch", WATCH_OPTIONS, opts)
	if bad then error(bad, 2) end
	local samples = opts and opts.samples or 16
	if math.type(samples) ~= "integer" or samples < 1 then
		error(string.format("exp:watch: samples must be an integer >= 1, got %s", tostring(samples)), 2)
	end
	self._watch = {model = model, samples = samples}
	self:_watch_reset()
end

function Experiment:_watch_reset()
	local w = self._watch
	w.delta, w.grad, w.nd, w.ng, w.names, w.count = {}, {}, {}, {}, {}, 0
end

local function finite(v)
	return type(v) == "number" and v == v and v ~= math.huge and v ~= -math.huge
end

-- Adds the norms of the model's trace now to the sums of the watch.
function Experiment:_watch_sample()
	local w = self._watch
	local ok, rows = pcall(w.model.trace, w.model)
	if not ok then
		if not w.warned then
			w.warned = true
			io.stderr:write(string.format("%s: exp:watch: cannot trace the model: %s\n", self.name,
				tostring(rows)))
		end
		return
	end
	for k, r in ipairs(rows) do
		w.names[k] = r.layer
		if finite(r.delta) then w.delta[k], w.nd[k] = (w.delta[k] or 0) + r.delta, (w.nd[k] or 0) + 1 end
		if finite(r.grad) then w.grad[k], w.ng[k] = (w.grad[k] or 0) + r.grad, (w.ng[k] or 0) + 1 end
	end
	w.count = w.count + 1
end

-- At exp:log: one row of gradients.csv per layer, the means of the samples
-- taken since the last one (or a sample now).
function Experiment:_watch_record(row)
	local w = self._watch
	if self.silent then return end  -- rank 0 alone records (and writes)
	if w.count == 0 then self:_watch_sample() end
	if w.count == 0 then return end
	local recs = {}
	for k = 1, #w.names do
		recs[k] = {
			epoch = type(row.epoch) == "number" and row.epoch or nil,
			step = type(row.step) == "number" and row.step or nil,
			layer = k, name = w.names[k],
			delta = w.nd[k] and w.delta[k] / w.nd[k] or nil,
			grad = w.ng[k] and w.grad[k] / w.ng[k] or nil,
		}
		self.gradients[#self.gradients + 1] = recs[k]
	end
	self:_watch_reset()
	self:_append_gradients(recs)
end

-- Appends rows to gradients.csv (the first time, writes the whole file).
function Experiment:_append_gradients(recs)
	if self.silent then return end
	if not self._grad_csv then
		self:_write("gradients.csv", csv.text(GRAD_COLUMNS, self.gradients))
		local f, err = io.open(self.dir .. "gradients.csv", "a")
		if not f then
			error(string.format("exp:log: cannot open %sgradients.csv: %s", self.dir, err), 4)
		end
		self._grad_csv = f
		return
	end
	for _, r in ipairs(recs) do self._grad_csv:write(csv.line(GRAD_COLUMNS, r)) end
	self._grad_csv:flush()
end

local CONFUSION_OPTIONS = {{"classes", "table"}, {"loss", "any"}, {"batch", "number"}}

-- The label of row i of y (a tensor or a table), checked to be a class
-- index in 1..k.
local function class_label(y, i, k)
	local v = y[i]
	local c = math.tointeger(v)
	if c == nil or c < 1 or c > k then
		error(string.format("exp:confusion: label %s of row %d is not a class in 1..%d", tostring(v), i, k), 0)
	end
	return c
end

-- exp:confusion(model, x, y[, classes | opts]) -> accuracy, matrix[, loss]:
-- see the top.
function Experiment:confusion(model, x, y, opts)
	local F = "exp:confusion"
	local mt = type(model)
	if (mt ~= "table" and mt ~= "userdata") or type(model.forward) ~= "function" then
		error(string.format("%s: expected a model, got %s", F, mt), 2)
	end
	if not lunet.is_tensor(x) or x:dim() < 2 then
		error(string.format("%s: expected an input tensor {N,...}, got %s", F,
			lunet.is_tensor(x) and "a tensor of shape {" .. table.concat(x:shape(), ",") .. "}" or type(x)), 2)
	end
	local n = x:size(1)
	if lunet.is_tensor(y) then
		if y:dim() ~= 1 or y:size(1) ~= n then
			error(string.format("%s: expected labels of shape {%d}, got {%s}", F, n,
				table.concat(y:shape(), ",")), 2)
		end
	elseif type(y) == "table" then
		if #y ~= n then error(string.format("%s: expected %d labels, got %d", F, n, #y), 2) end
	else
		error(string.format("%s: expected labels (a tensor or a table), got %s", F, type(y)), 2)
	end
	if type(opts) == "table" and opts[1] ~= nil then opts = {classes = opts} end
	local bad = lunet._optionerror(F, CONFUSION_OPTIONS, opts)
	if bad then error(bad, 2) end
	opts = opts or {}
	local classes, loss, batch = opts.classes, opts.loss, opts.batch or 1000
	if classes then
		for i, c in ipairs(classes) do
			if type(c) ~= "string" then
				error(string.format("%s: class names must be strings, got %s at %d", F, type(c), i), 2)
			end
		end
	end
	if math.type(batch) ~= "integer" or batch < 1 then
		error(string.format("%s: batch must be an integer >= 1, got %s", F, tostring(batch)), 2)
	end
	if loss ~= nil and (type(loss) ~= "table" and type(loss) ~= "userdata" or type(loss.forward) ~= "function") then
		error(string.format("%s: loss must be a criterion, got %s", F, type(loss)), 2)
	end
	-- Evaluate mode for the passes, then the mode the model was in (a
	-- plain Lua model may have neither method).
	local was_training = model.training ~= false
	if type(model.evaluate) == "function" then model:evaluate() end
	local matrix, k
	local correct, total = 0, 0
	local ok, err = pcall(function()
		for start = 1, n, batch do
			local len = math.min(batch, n - start + 1)
			local z = model:forward(x:narrow(1, start, len))
			if not lunet.is_tensor(z) or z:dim() ~= 2 then
				error(string.format("%s: expected the model's output to be {N,classes}, got %s", F,
					lunet.is_tensor(z) and "{" .. table.concat(z:shape(), ",") .. "}" or type(z)), 0)
			end
			if matrix == nil then
				k = z:size(2)
				if classes and #classes ~= k then
					error(string.format("%s: %d class names for %d outputs", F, #classes, k), 0)
				end
				matrix = {}
				for t = 1, k do
					matrix[t] = {}
					for p = 1, k do matrix[t][p] = 0 end
				end
			end
			if loss ~= nil then
				local yb = lunet.is_tensor(y) and y:narrow(1, start, len) or {table.unpack(y, start, start + len - 1)}
				total = total + loss:forward(z, yb) * len
			end
			local pred = z:argmax(2):reshape(-1)
			for i = 1, len do
				local t = class_label(y, start + i - 1, k)
				local p = math.tointeger(pred[i])
				matrix[t][p] = matrix[t][p] + 1
				if t == p then correct = correct + 1 end
			end
		end
	end)
	if was_training and type(model.train) == "function" then model:train() end
	if not ok then error(err, 2) end
	local names = {}
	for c = 1, k do names[c] = classes and classes[c] or tostring(c) end
	self._confusion = {matrix = matrix, classes = names, rows = #self.metrics}
	if not self.silent then
		local columns, rows = {"class"}, {}
		for c = 1, k do columns[c + 1] = names[c] end
		for t = 1, k do
			local row = {class = names[t]}
			for p = 1, k do row[names[p]] = matrix[t][p] end
			rows[t] = row
		end
		-- Class names may repeat or clash with "class": then numbers head the columns.
		local seen, clash = {class = true}, false
		for c = 1, k do
			if seen[names[c]] then clash = true end
			seen[names[c]] = true
		end
		if clash then
			for c = 1, k do columns[c + 1] = tostring(c) end
			for t = 1, k do
				local row = {class = names[t]}
				for p = 1, k do row[tostring(p)] = matrix[t][p] end
				rows[t] = row
			end
		end
		self:_write("confusion.csv", csv.text(columns, rows))
	end
	if loss ~= nil then return correct / n, matrix, total / n end
	return correct / n, matrix
end

-- On --resume: the gradients rows up to the checkpoint, and the last
-- confusion matrix, from the run's files.
function Experiment:_resume_extras(ck)
	local dir = self.dir
	if file_exists(dir .. "gradients.csv") then
		local _, rows = csv.read(dir .. "gradients.csv")
		if type(rows) == "table" then
			local keep = math.tointeger(ck.gradient_rows) or #rows
			for i = 1, math.min(keep, #rows) do self.gradients[i] = rows[i] end
			if self.rank == 0 then self:_write("gradients.csv", csv.text(GRAD_COLUMNS, self.gradients)) end
		end
	end
	if file_exists(dir .. "confusion.csv") then
		local columns, rows = csv.read(dir .. "confusion.csv")
		if columns and #columns == #rows + 1 then
			local names, matrix = {}, {}
			for t, row in ipairs(rows) do
				names[t] = tostring(row.class)
				matrix[t] = {}
				for p = 1, #rows do matrix[t][p] = math.tointeger(row[columns[p + 1]]) or 0 end
			end
			self._confusion = {matrix = matrix, classes = names, rows = #self.metrics}
		end
	end
end

-- ---- progress ----------------------------------------------------------------------

local function duration(s)
	if s ~= s or s == math.huge then return "?" end
	s = math.floor(s + 0.5)
	if s >= 3600 then
		return string.format("%d:%02d:%02d", s // 3600, s % 3600 // 60, s % 60)
	end
	return string.format("%d:%02d", s // 60, s % 60)
end

local function extras_text(extra)
	if extra == nil then return "" end
	local parts = {}
	for _, k in ipairs(sorted_keys(extra)) do
		local v = extra[k]
		parts[#parts + 1] = string.format("%s %s", tostring(k), show(v, 4))
	end
	return table.concat(parts, "  ")
end

-- exp:progress(i, n[, extra]): reports that item i of n is done.  On a
-- terminal, a bar redrawn in place (at most 10 times a second, and on the
-- last item, when it is erased so that the script's own lines follow):
--   42% [==========>              ] 197/469  210.3 it/s  ETA 0:01  loss 0.5123
-- Elsewhere (a log file, a pipe), a line at each tenth of the way, at most
-- one every `progress_every` seconds (option, default 10), so that short
-- loops stay quiet.  A sequence starts again when i does not grow.
function Experiment:progress(i, n, extra)
	if math.type(n) ~= "integer" or n < 1 then
		error(string.format("exp:progress: n must be an integer >= 1, got %s", tostring(n)), 2)
	end
	if math.type(i) ~= "integer" or i < 0 or i > n then
		error(string.format("exp:progress: i must be an integer in 0..%d, got %s", n, tostring(i)), 2)
	end
	if extra ~= nil and type(extra) ~= "table" then
		error(string.format("exp:progress: extra must be a table, got %s", type(extra)), 2)
	end
	local w = self._watch
	if w and not self.silent and i > 0 and i % math.max(1, n // w.samples) == 0 and (i < n or n == 1) then
		self:_watch_sample()
	end
	local now = self.clock()
	local p = self._progress
	if p == nil or i <= p.i or n ~= p.n then
		p = {i0 = i, t0 = now, i = i, n = n, drawn = -math.huge, line_t = now, tenth = i * 10 // n}
		self._progress = p
	end
	p.i = i
	-- Decide first whether anything is shown: most calls show nothing.
	local tenth = i * 10 // n
	if self.tty then
		if i < n and now - p.drawn < 0.1 then return end
		p.drawn = now
		if i == n then
			self:_clear_bar()
			return
		end
	else
		if tenth <= p.tenth then return end
		p.tenth = tenth
		if now - p.line_t < self.progress_every and not (i == n and p.printed) then return end
		p.line_t = now
		p.printed = true
	end
	local elapsed = now - p.t0
	local rate = elapsed > 0 and (i - p.i0) / elapsed or 0
	local eta = rate > 0 and (n - i) / rate or 0 / 0
	local stats = string.format("%d/%d  %s it/s  ETA %s", i, n,
		rate > 0 and string.format("%.1f", rate) or "?", duration(eta))
	local ex = extras_text(extra)
	if ex ~= "" then stats = stats .. "  " .. ex end
	local pct = string.format("%3d%%", i * 100 // n)
	if self.tty then
		local width = sys.term_width(self.out) or 80
		local barw = math.max(10, math.min(30, width - 60))
		local fill = i * barw // n
		local bar = string.rep("=", fill) .. (fill < barw and ">" or "")
		bar = bar .. string.rep(" ", barw - #bar)
		local line = string.format("%s [%s] %s", pct, bar, stats)
		if #line > width - 1 then line = line:sub(1, width - 1) end
		self.out:write("\r", line, "\27[K")
		p.visible = true
	else
		self.out:write(string.format("%s %s %s\n", self.name, pct, stats))
	end
	self.out:flush()
end

-- Erases the progress bar if one is on the terminal, so that what is
-- written next starts on a clean line.
function Experiment:_clear_bar()
	local p = self._progress
	if p and p.visible then
		self.out:write("\r\27[K")
		self.out:flush()
		p.visible = false
	end
end

-- ---- checkpoints -------------------------------------------------------------------

local function rng_hex()
	local s = sys.rng_state()
	return string.format("%016x%016x%016x%016x", s[1], s[2], s[3], s[4])
end

local function set_rng_hex(h)
	if type(h) ~= "string" or not h:find("^%x+$") or #h ~= 64 then
		error("exp:restore: the checkpoint's rng state is not 64 hex digits", 3)
	end
	local s = {}
	for i = 1, 4 do s[i] = math.tointeger(tonumber(h:sub(16 * i - 15, 16 * i), 16)) end
	sys.set_rng_state(s)
end

-- The last value logged for key, or nil.
function Experiment:_last(key)
	for i = #self.metrics, 1, -1 do
		local v = self.metrics[i][key]
		if v ~= nil then return v end
	end
	return nil
end

-- exp:checkpoint(model[, opt[, extra]]): saves to checkpoint.lunet in the
-- run directory (atomically, through lunet.save) a table
--   {model=, opt=, epoch=, step=, rng=, config=, metrics_rows=, name=,
--    time=, ...extra}
-- where epoch and step are the last ones logged (extra may set them, and
-- any other numbers, strings, booleans or tensors to keep).  Loaded by
-- hand, lunet.load(dir .. "checkpoint.lunet") gives the model and an
-- optimiser over that model's parameters, ready to go on.
function Experiment:checkpoint(model, opt, extra)
	if not lunet.save then
		error("exp:checkpoint: this build of lunet has no lunet.save", 2)
	end
	if model == nil then error("exp:checkpoint: expected a model, got nil", 2) end
	if extra ~= nil and type(extra) ~= "table" then
		error(string.format("exp:checkpoint: extra must be a table, got %s", type(extra)), 2)
	end
	local config = {}
	for k, v in pairs(self.config) do config[k] = v end
	local ck = {
		name = self.name,
		model = model,
		epoch = self:_last("epoch"),
		step = self:_last("step"),
		rng = rng_hex(),
		config = config,
		metrics_rows = #self.metrics,
		gradient_rows = #self.gradients,
		time = os.date("%Y-%m-%d %H:%M:%S"),
	}
	if opt ~= nil then
		if type(opt) ~= "userdata" and type(opt) ~= "table" or not opt.state then
			error(string.format("exp:checkpoint: opt must be an optimizer, got %s", type(opt)), 2)
		end
		ck.opt = opt
	end
	for k, v in pairs(extra or {}) do ck[k] = v end
	if not self.silent then lunet.save(self.dir .. "checkpoint.lunet", ck) end
	self.checkpoints = (self.checkpoints or 0) + 1
end

-- Copies the parameters and buffers (BatchNorm's running statistics) of
-- module src into dst, which must have the same architecture.
local function copy_module(dst, src, where)
	local dp = dst:parameters()
	local sp = src:parameters()
	if #dp ~= #sp then
		error(string.format("exp:restore: the model has %d parameter tensors, the checkpoint's %s has %d",
			#dp, where, #sp), 4)
	end
	for i = 1, #dp do
		local a, b = table.concat(dp[i]:shape(), ","), table.concat(sp[i]:shape(), ",")
		if a ~= b then
			error(string.format("exp:restore: parameter %d of the model has shape {%s}, the checkpoint's has {%s}",
				i, a, b), 4)
		end
	end
	for i = 1, #dp do dp[i]:copy(sp[i]) end
	-- Buffers are not parameters: the modules name theirs (m:buffers()).
	local db = type(dst.buffers) == "function" and dst:buffers() or {}
	local sb = type(src.buffers) == "function" and src:buffers() or {}
	for name, b in pairs(db) do
		if sb[name] ~= nil then b:copy(sb[name]) end
	end
end

-- exp:restore(model[, opt]) -> epoch, checkpoint
-- On a resumed run, copies the checkpoint's parameters into model, its
-- optimiser state into opt and its random state into lunet's random
-- source, then returns the epoch it was taken at (0 if none was logged)
-- and the checkpoint table.  On a fresh run it changes nothing and
-- returns 0, nil.  Call it after building model and opt, before training.
function Experiment:restore(model, opt)
	local ck = self.resumed
	if ck == nil then return 0, nil end
	if ck.model ~= nil then
		if model == nil then error("exp:restore: expected the model to restore into", 2) end
		copy_module(model, ck.model, "model")
	end
	if ck.opt ~= nil and opt ~= nil then
		local st = ck.opt
		if type(st) == "userdata" and st.state then st = st:state() end
		opt:load_state(st)
	end
	if ck.rng ~= nil then set_rng_hex(ck.rng) end
	return math.tointeger(ck.epoch) or 0, ck
end


-- ---- plots ---------------------------------------------------------------------------------

-- exp:plot() -> list of the SVG files written: one per numeric metric,
-- plotted against step (if every row with the metric has one), else
-- epoch, else the row number.
function Experiment:plot()
	local files = {}
	for _, col in ipairs(self.columns) do
		local s = not FIRST[col] and plot.series(self.metrics, col, PLOT_X)
		if s then
			local file = plot.file_name(col)
			self:_write(file, plot.svg_document{title = string.format("%s (%s)", col, self.name),
				xlabel = s.xkey, ylabel = col, x = s.x, y = s.y, integer_x = s.integer_x})
			files[#files + 1] = file
		end
	end
	return files
end

-- ---- the end of a run ------------------------------------------------------------------------

-- exp:finish(): closes metrics.csv, writes the plots and prints a summary
-- (the last value of each metric and the run directory).  A second call
-- does nothing.  Returns the list of plot files.
function Experiment:finish()
	if self.finished then return self.plots end
	self.finished = true
	self:_clear_bar()
	if self.csv then self.csv:close() self.csv = nil end
	if self._grad_csv then self._grad_csv:close() self._grad_csv = nil end
	if self.silent then
		self.plots = {}
		return self.plots
	end
	self.plots = self:plot()
	local ending = self._ending or {"finished"}
	self:_set_status(ending[1], ending[2])
	self:_write_report()
	self:_release_lock()
	local o = self.out
	if #self.metrics > 0 then
		local parts = {}
		for _, c in ipairs(self.columns) do
			local v = self:_last(c)
			if v ~= nil then
				parts[#parts + 1] = string.format("%s %s", c, show(v, 4))
			end
		end
		o:write(string.format("%s: final %s\n", self.name, table.concat(parts, "  ")))
		o:write(string.format("%s: %d rows in %smetrics.csv", self.name, #self.metrics, self.dir))
	else
		o:write(string.format("%s: no metrics logged in %s", self.name, self.dir))
	end
	if #self.plots > 0 then
		o:write(string.format(", plots %s", table.concat(self.plots, " ")))
	end
	o:write(", report.html")
	o:write(string.format(" (%s)\n", duration(self.clock() - self.started)))
	o:flush()
	return self.plots
end

-- Ends a run that an error cut short (see "How a run ends" at the top).
-- Returns whether the run directory was removed.
function Experiment:_fail(err)
	if self.finished then return false end
	if self.silent then
		self.finished, self.plots = true, {}
		return false
	end
	if sys.is_interrupt(err) then
		self._ending = {"interrupted"}
	else
		local message = type(err) == "string" and err or tostring(err)
		if #message > 2000 then message = message:sub(1, 2000) .. " ..." end
		self._ending = {"failed", message}
	end
	if not self:_empty() then
		pcall(self.finish, self)
		return false
	end
	self.finished = true
	self.plots = {}
	self:_clear_bar()
	local removed = self:_discard()
	if not removed then pcall(self._set_status, self, self._ending[1], self._ending[2]) end
	self.out:write(string.format("%s: nothing logged; run directory %s %s\n", self.name, self.dir,
		removed and "removed" or "kept (it holds other files)"))
	self.out:flush()
	return removed
end

-- Where a Ctrl-C stopped the run: the epoch after the last one logged
-- (when rows have an integer epoch, or none was logged yet) and the
-- progress position in the current loop; either may be nil.
function Experiment:_stopped_at()
	local last = self:_last("epoch")
	local epoch
	if math.type(last) == "integer" then epoch = last + 1
	elseif #self.metrics == 0 then epoch = 1 end
	return epoch, self._progress and self._progress.i
end

-- The one line that replaces the error of a Ctrl-C.
function Experiment:_interrupted_message(removed)
	local epoch, step = self:_stopped_at()
	local at = {}
	if epoch then at[#at + 1] = string.format("epoch %d", epoch) end
	if step then at[#at + 1] = string.format("step %d", step) end
	local msg = "interrupted" .. (#at > 0 and " at " .. table.concat(at, ", ") or "")
	local dir = self.dir:gsub("/+$", "")
	if self.checkpoints or self.resumed then
		return string.format("%s; resume with --resume=%s", msg, dir)
	elseif removed then
		return msg .. "; nothing was logged, so the run directory was removed"
	end
	return string.format("%s; no checkpoint to resume from (the run is in %s)", msg, dir)
end

-- `local exp <close> = lunet.experiment{...}` ends the run at the end of
-- the scope: finish on a normal exit; on an error, see "How a run ends" at
-- the top.  An error while ending does not hide the first one.
function Experiment:__close(err)
	if err == nil then
		self:finish()
		return
	end
	local open = not self.finished
	local removed = self:_fail(err)
	if open and sys.is_interrupt(err) then
		local epoch, step = self:_stopped_at()
		cmdline.raise(self:_interrupted_message(removed),
			{interrupted = true, epoch = epoch, step = step, dir = self.dir})
	end
end

function Experiment:__tostring()
	return string.format("lunet.Experiment %s (%s, %d rows)", self.name, self.dir, #self.metrics)
end

lunet.experiment = new_experiment
