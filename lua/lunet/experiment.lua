-- experiment.lua -- lunet.experiment: configuration with command-line
-- overrides, a run directory, metrics.csv, a progress bar, resumable
-- checkpoints and SVG plots of the metrics.  Called with the lunet table.
--
--   local exp <close> = lunet.experiment{name = "mnist", config = {lr = 0.1, epochs = 5, seed = 1}}
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
-- Options of lunet.experiment{...}:
--   name        run name (default: the script's file name without .lua)
--   config      table of defaults: numbers, integers, booleans, strings
--   args        command-line arguments to parse (default: the global `arg`)
--   root        base directory of runs (default: $LUNET_RUNS, else "runs")
--   resume      run directory to continue (also --resume=DIR)
--   description one line shown by --help
--   output      file for progress and summaries (default io.stdout)
--   tty         force (true) or suppress (false) the terminal progress bar
--   progress_every  seconds between progress lines when not on a terminal (10)
--   clock       function returning seconds (default lunet.clock)
--
-- Command line: --key=value for each key of config, converted to the type
-- of its default (an integer default takes integers only; booleans take
-- true/false, and a bare --key means true); --weight-decay is weight_decay.
-- --help lists the keys with their defaults and exits; --resume=DIR
-- continues a run.  Anything else is an error naming the known keys.
--
-- The run directory <root>/<name>/<YYYYmmdd-HHMMSS>/ (with -2, -3... if
-- taken) holds:
--   config.lua        `return {...}` of the final configuration, with the
--                     command line(s) in its leading comments
--   metrics.csv       one row per exp:log, flushed at once
--   checkpoint.lunet  the last exp:checkpoint (written atomically by lunet.save)
--   <metric>.svg      one plot per numeric metric, written by exp:finish
--
-- metrics.csv columns: epoch and step first (when logged), then the other
-- keys sorted.  A row may leave out keys (empty cells).  A row bringing a
-- key not seen before widens the table: the file is rewritten from the rows
-- kept in memory with the new header (atomically), and earlier rows get
-- empty cells for it.
local lunet = ...
local sys = lunet.sys

local Experiment = {}
Experiment.__index = Experiment
Experiment.__name = "lunet.Experiment"

local FN = "lunet.experiment"
local RESERVED = {help = true, resume = true}
local KNOWN_OPTIONS = {
	name = true, config = true, args = true, root = true, resume = true, description = true,
	output = true, tty = true, progress_every = true, clock = true,
}

-- ---- small helpers -------------------------------------------------------------

local function sorted_keys(t)
	local keys = {}
	for k in pairs(t) do keys[#keys + 1] = k end
	table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
	return keys
end

-- Shortest decimal that reads back as the same float; integral floats keep
-- a ".0" so they read back as floats.
local function float_str(v)
	if v ~= v then return "0/0" end
	if v == math.huge then return "1/0" end
	if v == -math.huge then return "-1/0" end
	for digits = 15, 17 do
		local s = string.format("%." .. digits .. "g", v)
		if tonumber(s) == v then
			if not s:find("[%.eEn]") then s = s .. ".0" end
			return s
		end
	end
	return string.format("%.17g", v)
end

-- A Lua literal for a config value (number, boolean or string).
local function literal(v)
	if math.type(v) == "integer" then return string.format("%d", v) end
	if math.type(v) == "float" then return float_str(v) end
	if type(v) == "string" then return string.format("%q", v) end
	return tostring(v)
end

-- A value as shown to a person (help text, summaries, progress), with
-- `digits` significant digits for floats.
local function show(v, digits)
	if math.type(v) == "float" then
		if v ~= v then return "nan" end
		return string.format("%." .. (digits or 6) .. "g", v)
	end
	if type(v) == "string" then return v == "" and '""' or v end
	return tostring(v)
end

-- Quotes a word for a POSIX shell when it needs it.
local function shell_quote(s)
	if s ~= "" and not s:find("[^%w%./_%-=:,+@%%]") then return s end
	return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- Writes text to path atomically: a temporary file renamed over it.
local function write_atomic(path, text)
	local tmp = path .. ".tmp"
	local f, err = io.open(tmp, "w")
	if not f then error(string.format("%s: cannot write %s: %s", FN, tmp, err), 0) end
	local ok, werr = f:write(text)
	local cok, cerr = f:close()
	if not ok or not cok then
		os.remove(tmp)
		error(string.format("%s: cannot write %s: %s", FN, tmp, tostring(werr or cerr)), 0)
	end
	local rok, rerr = os.rename(tmp, path)
	if not rok then
		os.remove(tmp)
		error(string.format("%s: cannot rename %s to %s: %s", FN, tmp, path, rerr), 0)
	end
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

-- The command line that started the script, as one shell line.
local function command_line(args)
	local words = {}
	if args == _G.arg and type(args) == "table" then
		local lo = 0
		while args[lo - 1] ~= nil do lo = lo - 1 end
		for i = lo, 0 do words[#words + 1] = shell_quote(tostring(args[i])) end
	end
	for _, a in ipairs(args or {}) do words[#words + 1] = shell_quote(tostring(a)) end
	return table.concat(words, " ")
end

-- The script's name without directory and .lua, from arg[0].
local function script_name()
	local a = rawget(_G, "arg")
	local s = type(a) == "table" and a[0]
	if type(s) ~= "string" then return nil end
	s = s:match("([^/]+)$") or s
	s = s:gsub("%.lua$", "")
	if s == "" or s:find("[^%w_%.%-]") then return nil end
	return s
end

-- ---- configuration ---------------------------------------------------------------

local function known_list(defaults)
	local keys = sorted_keys(defaults)
	return table.concat(keys, ", ")
end

local function type_name(v)
	if math.type(v) == "integer" then return "integer" end
	if type(v) == "number" then return "number" end
	return type(v)
end

-- Converts the text s to the type of default, or returns nil and what was
-- expected.
local function convert(s, default)
	local mt = math.type(default)
	if mt == "integer" then
		local v = math.tointeger(tonumber(s))
		if v == nil then return nil, "an integer" end
		return v
	elseif mt == "float" then
		local v = tonumber(s)
		if v == nil then return nil, "a number" end
		return v + 0.0
	elseif type(default) == "boolean" then
		if s == "true" then return true end
		if s == "false" then return false end
		return nil, "true or false"
	end
	return s
end

-- Prints the --help text and exits.
local function print_help(script, description, defaults, out)
	local lines = {}
	lines[#lines + 1] = string.format("usage: lunet %s [--key=value ...]", script)
	if description then lines[#lines + 1] = description end
	lines[#lines + 1] = "options (defaults):"
	local width = 0
	local items = {}
	for _, k in ipairs(sorted_keys(defaults)) do
		local left = string.format("--%s=%s", k, show(defaults[k]))
		items[#items + 1] = {left, type_name(defaults[k])}
		width = math.max(width, #left)
	end
	items[#items + 1] = {"--resume=DIR", "continue the run in DIR from its checkpoint"}
	items[#items + 1] = {"--help", "show this text"}
	for _, it in ipairs(items) do width = math.max(width, #it[1]) end
	for _, it in ipairs(items) do
		lines[#lines + 1] = string.format("  %-" .. width .. "s  %s", it[1], it[2])
	end
	out:write(table.concat(lines, "\n"), "\n")
	out:flush()
	os.exit(0)
end

-- Parses args (a list of strings) against defaults.  Returns the table of
-- overrides and the resume directory (or nil).  --help prints and exits.
local function parse_args(args, defaults, script, description, out)
	local overrides, resume = {}, nil
	local function fail(fmt, ...)
		local msg = string.format(fmt, ...)
		error(string.format("%s: %s (known: %s)", FN, msg, known_list(defaults)), 0)
	end
	for _, a in ipairs(args) do
		if type(a) ~= "string" then
			error(string.format("%s: arguments must be strings, got %s", FN, type(a)), 0)
		end
		if a == "--help" or a == "-h" then print_help(script, description, defaults, out) end
		local k, v = a:match("^%-%-([%w_%-]+)=(.*)$")
		if not k then k = a:match("^%-%-([%w_%-]+)$") end
		if not k then fail("unexpected argument '%s': options are --key=value", a) end
		k = k:gsub("%-", "_")
		if k == "resume" then
			if v == nil or v == "" then fail("--resume needs a directory: --resume=DIR") end
			resume = v
		else
			local default = defaults[k]
			if default == nil then fail("unknown option --%s", k) end
			if v == nil then
				if type(default) ~= "boolean" then
					fail("option --%s needs a value: --%s=%s", k, k, show(default))
				end
				v = "true"
			end
			local value, expected = convert(v, default)
			if value == nil then
				fail("bad value --%s=%s: expected %s", k, v, expected)
			end
			overrides[k] = value
		end
	end
	return overrides, resume
end

-- Checks the config table of defaults: string keys, scalar values.
local function check_config(config)
	if type(config) ~= "table" then
		error(string.format("%s: config must be a table, got %s", FN, type(config)), 3)
	end
	local copy = {}
	for k, v in pairs(config) do
		if type(k) ~= "string" or not k:find("^[%a_][%w_]*$") then
			error(string.format("%s: config keys must be identifiers, got %s", FN,
				type(k) == "string" and string.format("%q", k) or tostring(k)), 3)
		end
		if RESERVED[k] then
			error(string.format("%s: config key '%s' is reserved (--%s is an option of every experiment)",
				FN, k, k), 3)
		end
		local t = type(v)
		if t ~= "number" and t ~= "boolean" and t ~= "string" then
			error(string.format("%s: config.%s must be a number, boolean or string, got %s",
				FN, k, t), 3)
		end
		copy[k] = v
	end
	return copy
end

-- A config table that raises on reading a key it does not have, so that a
-- typo in a script (cfg.lrr) does not pass silently as nil.
local function strict_config(values)
	return setmetatable(values, {
		__index = function(t, k)
			error(string.format("%s: config has no key '%s' (known: %s)", FN, tostring(k),
				known_list(t)), 2)
		end,
	})
end

-- The config as the text of config.lua.
local function config_text(config, header)
	local lines = {}
	for _, h in ipairs(header) do lines[#lines + 1] = "-- " .. h end
	lines[#lines + 1] = "return {"
	for _, k in ipairs(sorted_keys(config)) do
		lines[#lines + 1] = string.format("\t%s = %s,", k, literal(rawget(config, k)))
	end
	lines[#lines + 1] = "}"
	return table.concat(lines, "\n") .. "\n"
end

-- The leading comment lines of an existing config.lua, without "-- ".
local function config_header(path)
	local header = {}
	local f = io.open(path, "r")
	if not f then return header end
	for line in f:lines() do
		local h = line:match("^%-%- (.*)$")
		if not h then break end
		header[#header + 1] = h
	end
	f:close()
	return header
end

-- ---- metrics.csv -----------------------------------------------------------------

-- Column order: epoch, step, then the other keys sorted.
local FIRST = {epoch = 1, step = 2}
local function column_less(a, b)
	local fa, fb = FIRST[a], FIRST[b]
	if fa or fb then
		if fa and fb then return fa < fb end
		return fa ~= nil
	end
	return a < b
end

local function csv_field(v)
	if v == nil then return "" end
	if math.type(v) == "integer" then return string.format("%d", v) end
	if type(v) == "number" then
		if v ~= v then return "nan" end
		if v == math.huge then return "inf" end
		if v == -math.huge then return "-inf" end
		return string.format("%.10g", v)
	end
	local s = tostring(v)
	if s:find('[,"\r\n]') or s:find("^%s") or s:find("%s$") then
		s = '"' .. s:gsub('"', '""') .. '"'
	end
	return s
end

local function csv_line(columns, row)
	local cells = {}
	for i, c in ipairs(columns) do cells[i] = csv_field(row[c]) end
	return table.concat(cells, ",") .. "\n"
end

-- Splits one CSV record (no embedded newlines) into fields.
local function csv_split(line)
	local fields, i, n = {}, 1, #line
	while true do
		if line:sub(i, i) == '"' then
			local buf, j = {}, i + 1
			while true do
				local q = line:find('"', j, true)
				if not q then return nil end
				buf[#buf + 1] = line:sub(j, q - 1)
				if line:sub(q + 1, q + 1) == '"' then
					buf[#buf + 1] = '"'
					j = q + 2
				else
					i = q + 1
					break
				end
			end
			fields[#fields + 1] = table.concat(buf)
		else
			local c = line:find(",", i, true) or n + 1
			fields[#fields + 1] = line:sub(i, c - 1)
			i = c
		end
		if i > n then break end
		if line:sub(i, i) ~= "," then return nil end
		i = i + 1
		if i > n then fields[#fields + 1] = "" break end
	end
	return fields
end

local SPECIAL = {nan = 0 / 0, ["-nan"] = 0 / 0, inf = math.huge, ["-inf"] = -math.huge}

-- Reads metrics.csv back (for a resumed run): the columns and the rows.
local function read_metrics(path)
	local f = io.open(path, "r")
	if not f then return nil end
	local columns, rows, lineno = nil, {}, 0
	for line in f:lines() do
		lineno = lineno + 1
		line = line:gsub("\r$", "")
		local fields = csv_split(line)
		if not fields then
			f:close()
			error(string.format("%s: %s:%d: malformed CSV line", FN, path, lineno), 0)
		end
		if not columns then
			columns = fields
		elseif line ~= "" then
			local row = {}
			for i, c in ipairs(columns) do
				local s = fields[i]
				if s ~= nil and s ~= "" then
					row[c] = math.tointeger(tonumber(s)) or tonumber(s) or SPECIAL[s] or s
				end
			end
			rows[#rows + 1] = row
		end
	end
	f:close()
	return columns or {}, rows
end

-- ---- the experiment ----------------------------------------------------------------

-- lunet.experiment{name=, config=, ...} -> a new experiment (see the top).
local function new_experiment(opts)
	if opts == nil then opts = {} end
	if type(opts) ~= "table" then
		error(string.format("%s: expected a table of options, got %s", FN, type(opts)), 2)
	end
	for k in pairs(opts) do
		if not KNOWN_OPTIONS[k] then
			error(string.format("%s: unknown option '%s' (options: %s)", FN, tostring(k),
				table.concat(sorted_keys(KNOWN_OPTIONS), ", ")), 2)
		end
	end
	local name = opts.name or script_name() or "experiment"
	if type(name) ~= "string" or not name:find("^[%w_%.%-]+$") or name == "." or name == ".." then
		error(string.format("%s: name must be letters, digits, '_', '-' or '.', got %s", FN,
			type(name) == "string" and string.format("%q", name) or type(name)), 2)
	end
	local defaults = check_config(opts.config or {})
	local args = opts.args
	if args == nil then args = rawget(_G, "arg") or {} end
	if type(args) ~= "table" then
		error(string.format("%s: args must be a list of strings, got %s", FN, type(args)), 2)
	end
	local out = opts.output or io.stdout
	if io.type(out) ~= "file" then
		error(string.format("%s: output must be an open file, got %s", FN, tostring(out)), 2)
	end
	local clock = opts.clock or lunet.clock
	if type(clock) ~= "function" then
		error(string.format("%s: clock must be a function, got %s", FN, type(clock)), 2)
	end
	local every = opts.progress_every or 10
	if type(every) ~= "number" or every < 0 then
		error(string.format("%s: progress_every must be a number >= 0, got %s", FN,
			tostring(every)), 2)
	end
	if opts.tty ~= nil and type(opts.tty) ~= "boolean" then
		error(string.format("%s: tty must be a boolean, got %s", FN, type(opts.tty)), 2)
	end
	for _, k in ipairs{"root", "resume", "description"} do
		if opts[k] ~= nil and type(opts[k]) ~= "string" then
			error(string.format("%s: %s must be a string, got %s", FN, k, type(opts[k])), 2)
		end
	end

	local a = rawget(_G, "arg")
	local script = args == a and type(a[0]) == "string" and a[0] or name .. ".lua"
	local overrides, resume = parse_args(args, defaults, script, opts.description, out)
	resume = resume or opts.resume

	local self = setmetatable({
		name = name,
		defaults = defaults,
		metrics = {},       -- the logged rows, in order
		columns = {},       -- the header of metrics.csv
		out = out,
		clock = clock,
		progress_every = every,
		tty = opts.tty,
		command = command_line(args),
		started = clock(),
		finished = false,
	}, Experiment)
	if self.tty == nil then self.tty = sys.isatty(out) end

	local config = {}
	for k, v in pairs(defaults) do config[k] = v end
	local header
	if resume then
		-- Continue in the run directory of the checkpoint.
		local dir = as_dir(resume)
		local path = dir .. "checkpoint.lunet"
		if not file_exists(path) then
			error(string.format("%s: cannot resume from %s: no checkpoint.lunet there", FN, dir), 0)
		end
		if not lunet.load then
			error(string.format("%s: cannot resume: this build of lunet has no lunet.load", FN), 0)
		end
		local ok, ck = pcall(lunet.load, path)
		if not ok then
			error(string.format("%s: cannot resume from %s: %s", FN, path, tostring(ck)), 0)
		end
		if type(ck) ~= "table" or type(ck.config) ~= "table" then
			error(string.format("%s: cannot resume from %s: not a checkpoint of lunet.experiment",
				FN, path), 0)
		end
		-- Saved values for keys the script still knows; the script's type wins.
		for k, v in pairs(ck.config) do
			if defaults[k] ~= nil and type(v) == type(defaults[k]) then
				config[k] = math.type(defaults[k]) == "float" and v + 0.0 or v
			end
		end
		self.resumed = ck
		self.dir = dir
		if type(ck.name) == "string" then self.name = ck.name end
		header = config_header(dir .. "config.lua")
		header[#header + 1] = string.format("resumed %s at epoch %s, step %s: %s",
			os.date("%Y-%m-%d %H:%M:%S"), tostring(ck.epoch or "-"), tostring(ck.step or "-"),
			self.command)
		-- Rows logged after the checkpoint are dropped: they are logged again.
		local columns, rows = read_metrics(dir .. "metrics.csv")
		if columns then
			local keep = math.tointeger(ck.metrics_rows) or #rows
			for i = 1, math.min(keep, #rows) do self.metrics[i] = rows[i] end
			self.columns = columns
			self:_rewrite_csv()
		end
	else
		local root = opts.root or os.getenv("LUNET_RUNS")
		if root == nil or root == "" then root = "runs" end
		local base = as_dir(root) .. name .. "/" .. os.date("%Y%m%d-%H%M%S")
		sys.mkdir(as_dir(root) .. name)
		local dir, n = base, 1
		while not sys.mkdir(dir) do
			n = n + 1
			if n > 1000 then
				error(string.format("%s: cannot find a free run directory %s-N", FN, base), 0)
			end
			dir = base .. "-" .. n
		end
		self.dir = dir .. "/"
		header = {
			string.format("lunet experiment '%s', started %s", name, os.date("%Y-%m-%d %H:%M:%S")),
			"command: " .. self.command,
		}
	end
	for k, v in pairs(overrides) do config[k] = v end
	self.config = strict_config(config)
	write_atomic(self.dir .. "config.lua", config_text(config, header))
	return self
end

-- exp:path(file) -> the path of file inside the run directory.
function Experiment:path(file)
	return self.dir .. file
end

-- Rewrites metrics.csv from the rows in memory (atomically) and reopens it
-- for appending.
function Experiment:_rewrite_csv()
	if self.csv then self.csv:close() self.csv = nil end
	local parts = {}
	if #self.columns > 0 then
		parts[1] = csv_line(self.columns, setmetatable({}, {__index = function(_, k) return k end}))
		for _, row in ipairs(self.metrics) do parts[#parts + 1] = csv_line(self.columns, row) end
	end
	write_atomic(self.dir .. "metrics.csv", table.concat(parts))
end

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
		return
	end
	if not self.csv then
		local f, err = io.open(self.dir .. "metrics.csv", "a")
		if not f then
			error(string.format("exp:log: cannot open %smetrics.csv: %s", self.dir, err), 2)
		end
		self.csv = f
	end
	self.csv:write(csv_line(self.columns, copy))
	self.csv:flush()
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
			self.out:write("\r\27[K")
			self.out:flush()
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
	else
		self.out:write(string.format("%s %s %s\n", self.name, pct, stats))
	end
	self.out:flush()
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
		time = os.date("%Y-%m-%d %H:%M:%S"),
	}
	if opt ~= nil then
		if type(opt) ~= "userdata" and type(opt) ~= "table" or not opt.state then
			error(string.format("exp:checkpoint: opt must be an optimizer, got %s", type(opt)), 2)
		end
		ck.opt = opt
	end
	for k, v in pairs(extra or {}) do ck[k] = v end
	lunet.save(self.dir .. "checkpoint.lunet", ck)
	self.checkpoints = (self.checkpoints or 0) + 1
end

-- Copies the parameters (and BatchNorm running statistics) of module src
-- into dst, which must have the same architecture.
local BUFFERS = {"running_mean", "running_var"}
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
	-- Buffers are not parameters: walk both trees for them.
	local function walk(d, s)
		local ok, nd = pcall(function() return #d end)
		local ok2, ns = pcall(function() return #s end)
		if ok and ok2 and math.type(nd) == "integer" and nd > 0 and nd == ns and d.get then
			for i = 1, nd do walk(d:get(i), s:get(i)) end
			return
		end
		for _, b in ipairs(BUFFERS) do
			local okd, bd = pcall(function() return d[b] end)
			local oks, bs = pcall(function() return s[b] end)
			if okd and oks and bd ~= nil and bs ~= nil and bd.copy then bd:copy(bs) end
		end
	end
	walk(dst, src)
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

-- ---- plots -------------------------------------------------------------------------

local function xml_escape(s)
	return (tostring(s):gsub("[&<>\"]", {["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;",
		['"'] = "&quot;"}))
end

-- Tick positions for [lo, hi]: about `count` steps of 1, 2 or 5 times a
-- power of ten (at least 1 when integer_only), covering the range.
local function nice_ticks(lo, hi, count, integer_only)
	if hi - lo < 1e-12 * math.max(math.abs(lo), math.abs(hi), 1e-300) then
		local d = lo == 0 and 1 or math.abs(lo) * 0.1
		if integer_only then d = math.max(1, math.ceil(d)) end
		lo, hi = lo - d, hi + d
	end
	local raw = (hi - lo) / count
	local step = 10 ^ math.floor(math.log(raw, 10))
	local r = raw / step
	if r >= 7.5 then step = step * 10 elseif r >= 3.5 then step = step * 5
	elseif r >= 1.5 then step = step * 2 end
	if integer_only and step < 1 then step = 1 end
	local first, last = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
	local ticks = {}
	for k = first, last do ticks[#ticks + 1] = k * step end
	return ticks, first * step, last * step
end

local function tick_label(v)
	if math.abs(v) < 1e-12 then return "0" end
	return (string.format("%.6g", v))
end

local function fmt(v) return string.format("%.2f", v) end

-- The SVG text of one line plot.  xs, ys: equal-length lists of finite
-- numbers.  Returns the text.
local function svg_plot(title, xlabel, ylabel, xs, ys, integer_x)
	local W, H = 640, 400
	local L, R, T, B = 72, 24, 40, 56   -- margins
	local xmin, xmax, ymin, ymax = math.huge, -math.huge, math.huge, -math.huge
	for i = 1, #xs do
		xmin, xmax = math.min(xmin, xs[i]), math.max(xmax, xs[i])
		ymin, ymax = math.min(ymin, ys[i]), math.max(ymax, ys[i])
	end
	local xt, x0, x1 = nice_ticks(xmin, xmax, 6, integer_x)
	local yt, y0, y1 = nice_ticks(ymin, ymax, 5, false)
	local function px(x) return L + (x - x0) / (x1 - x0) * (W - L - R) end
	local function py(y) return H - B - (y - y0) / (y1 - y0) * (H - T - B) end
	local o = {}
	o[#o + 1] = '<?xml version="1.0" encoding="UTF-8"?>'
	o[#o + 1] = string.format('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
		.. 'viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">', W, H, W, H)
	o[#o + 1] = string.format('<rect x="0" y="0" width="%d" height="%d" fill="white"/>', W, H)
	o[#o + 1] = string.format('<text x="%d" y="%d" text-anchor="middle" font-size="16">%s</text>',
		W // 2, 24, xml_escape(title))
	-- Grid and tick labels.
	o[#o + 1] = '<g stroke="#e0e0e0" stroke-width="1">'
	for _, v in ipairs(xt) do
		o[#o + 1] = string.format('<line x1="%s" y1="%d" x2="%s" y2="%d"/>', fmt(px(v)), T,
			fmt(px(v)), H - B)
	end
	for _, v in ipairs(yt) do
		o[#o + 1] = string.format('<line x1="%d" y1="%s" x2="%d" y2="%s"/>', L, fmt(py(v)),
			W - R, fmt(py(v)))
	end
	o[#o + 1] = '</g>'
	o[#o + 1] = string.format('<g stroke="black" stroke-width="1"><line x1="%d" y1="%d" x2="%d" y2="%d"/>'
		.. '<line x1="%d" y1="%d" x2="%d" y2="%d"/></g>', L, H - B, W - R, H - B, L, T, L, H - B)
	o[#o + 1] = '<g text-anchor="middle">'
	for _, v in ipairs(xt) do
		o[#o + 1] = string.format('<text x="%s" y="%d">%s</text>', fmt(px(v)), H - B + 16,
			tick_label(v))
	end
	o[#o + 1] = '</g>'
	o[#o + 1] = '<g text-anchor="end">'
	for _, v in ipairs(yt) do
		o[#o + 1] = string.format('<text x="%d" y="%s">%s</text>', L - 6, fmt(py(v) + 4),
			tick_label(v))
	end
	o[#o + 1] = '</g>'
	o[#o + 1] = string.format('<text x="%s" y="%d" text-anchor="middle">%s</text>',
		fmt(L + (W - L - R) / 2), H - 14, xml_escape(xlabel))
	o[#o + 1] = string.format('<text x="16" y="%s" text-anchor="middle" transform="rotate(-90 16 %s)">%s</text>',
		fmt(T + (H - T - B) / 2), fmt(T + (H - T - B) / 2), xml_escape(ylabel))
	-- The data.
	local pts = {}
	for i = 1, #xs do pts[i] = fmt(px(xs[i])) .. "," .. fmt(py(ys[i])) end
	o[#o + 1] = string.format('<polyline fill="none" stroke="#1f77b4" stroke-width="2" points="%s"/>',
		table.concat(pts, " "))
	if #xs <= 50 then
		o[#o + 1] = '<g fill="#1f77b4">'
		for i = 1, #xs do
			o[#o + 1] = string.format('<circle cx="%s" cy="%s" r="3"/>', fmt(px(xs[i])), fmt(py(ys[i])))
		end
		o[#o + 1] = '</g>'
	end
	o[#o + 1] = '</svg>'
	return table.concat(o, "\n") .. "\n"
end

-- exp:plot() -> list of the SVG files written: one per numeric metric,
-- plotted against step (if every row with the metric has one), else
-- epoch, else the row number.
function Experiment:plot()
	local files = {}
	for _, col in ipairs(self.columns) do
		if not FIRST[col] then
			local rows = {}
			local numeric = false
			for _, r in ipairs(self.metrics) do
				local v = r[col]
				if v ~= nil then
					rows[#rows + 1] = r
					if type(v) == "number" then numeric = true end
				end
			end
			if numeric then
				local xkey
				for _, k in ipairs{"step", "epoch"} do
					local all = true
					for _, r in ipairs(rows) do
						if type(r[k]) ~= "number" then all = false break end
					end
					if all then xkey = k break end
				end
				local xs, ys = {}, {}
				local integer_x = true
				for i, r in ipairs(rows) do
					local x = xkey and r[xkey] or i
					local y = r[col]
					if type(y) == "number" and y == y and math.abs(y) ~= math.huge
						and x == x and math.abs(x) ~= math.huge then
						xs[#xs + 1], ys[#ys + 1] = x, y
						if math.type(x) ~= "integer" and x ~= math.floor(x) then integer_x = false end
					end
				end
				if #xs > 0 then
					local file = col:gsub("[^%w_%.%-]", "_") .. ".svg"
					local title = string.format("%s (%s)", col, self.name)
					write_atomic(self.dir .. file,
						svg_plot(title, xkey or "row", col, xs, ys, integer_x))
					files[#files + 1] = file
				end
			end
		end
	end
	return files
end

-- ---- finishing -----------------------------------------------------------------------

-- exp:finish(): closes metrics.csv, writes the plots and prints a summary
-- (the last value of each metric and the run directory).  A second call
-- does nothing.  Returns the list of plot files.
function Experiment:finish()
	if self.finished then return self.plots end
	self.finished = true
	if self.csv then self.csv:close() self.csv = nil end
	self.plots = self:plot()
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
	end
	if #self.metrics > 0 then
		o:write(string.format("%s: %d rows in %smetrics.csv", self.name, #self.metrics, self.dir))
	else
		o:write(string.format("%s: no metrics logged in %s", self.name, self.dir))
	end
	if #self.plots > 0 then
		o:write(string.format(", plots %s", table.concat(self.plots, " ")))
	end
	o:write(string.format(" (%s)\n", duration(self.clock() - self.started)))
	o:flush()
	return self.plots
end

-- `local exp <close> = lunet.experiment{...}` finishes at the end of the
-- scope; when leaving on an error, the plots are still written and an
-- error while writing them does not hide the first one.
function Experiment:__close(err)
	if err == nil then
		self:finish()
	else
		pcall(self.finish, self)
	end
end

function Experiment:__tostring()
	return string.format("lunet.Experiment %s (%s, %d rows)", self.name, self.dir, #self.metrics)
end

lunet.experiment = new_experiment
