-- sweep.lua -- `lunet sweep SCRIPT --key=v1,v2 --key2=lo..hi ...`: runs a
-- script built on lunet.experiment once per combination of the values, each
-- combination a run of its own in <runs>/<name>/<run>/, N at a time, and
-- keeps sweep.csv, sweep.md and report.html in <runs>/<name>/ up to date.
-- Or, with --emit, writes a Slurm array job (sweep.sbatch) or a GNU parallel
-- command list (sweep.parallel) that runs the same configurations.
--
-- How it goes:
--   1. The command line is parsed (parse) and the grid expanded (expand):
--      the cross product of the keys' values, the first key outermost.  A
--      run's name is its key=value pairs, keys sorted ("lr=0.1,seed=2").
--   2. The script is asked, once, whether it takes every value given
--      (LUNET_SWEEP_CHECK, see experiment.lua): an unknown key or a value
--      of the wrong type stops the sweep before any run starts.
--   3. Each configuration is looked at (runs.load): finished runs are
--      skipped; runs that another process holds (lock) are left to it; runs
--      with a checkpoint are resumed (--resume=DIR); the others start
--      afresh (LUNET_RUN_DIR=DIR).  The children are `lunet SCRIPT
--      --key=value...`, each in a process group of its own (a Ctrl-C at the
--      terminal reaches the sweep alone), stdout and stderr appended to
--      stdout.log and stderr.log in the run directory.
--   4. When a child ends, its status is settled: exit 0 is finished; else
--      the status.lua the child wrote (interrupted, failed) or, if it died
--      without writing one, failed (interrupted when the sweep stopped it),
--      with the last lines of its stderr kept in status.lua (stderr) and
--      shown.  The other runs go on.
--   5. Ctrl-C: each running child gets one SIGINT, writes its summary and
--      status "interrupted" and exits; the sweep waits for them (30 s, then
--      SIGTERM, SIGKILL), writes the sweep's files and ends with one line.
--      Running the same command again resumes them.
-- With --task=I only configuration I runs (what the emitted jobs do); the
-- sweep's files are rewritten under a lock (.sweep.lock), so tasks ending
-- together on a cluster do not lose each other's rows.
local lunet, import = ...
local sys = lunet.sys
local csv, cmdline, report, runs = import("csv"), import("cmdline"), import("report"), import("runs")
local show, shell_quote = cmdline.show, cmdline.shell_quote

local M = {}
local FN = "lunet sweep"

local USAGE = [[
usage: lunet sweep SCRIPT --key=v1,v2 --key2=lo..hi ... [options]
Runs SCRIPT (a script built on lunet.experiment) once for every combination
of the values given, each as a run of its own in RUNS/NAME/<key=value,...>/,
where RUNS is $LUNET_RUNS, else runs/.  Values: --key=a,b,c (a list),
--key=lo..hi (the integers lo to hi), or both: --seed=1..3,10.  A key given
one value is passed to every run.
  -j N, --jobs=N      runs at a time (default 1)
  --name=NAME         the sweep's directory RUNS/NAME (default: the script's
                      name and the keys with several values, fashion_mlp-lr-seed)
  --sort=METRIC       sweep.md lists the largest final METRIC first;
  --sort=-METRIC      the smallest first
  --emit=slurm        write RUNS/NAME/sweep.sbatch, a Slurm array job with a task
                      per configuration, instead of running (-j N: at most N at once)
  --emit=parallel     write RUNS/NAME/sweep.parallel, a command per line for
                      GNU parallel, instead of running
  --task=I            run configuration I alone (0-based: what the emitted jobs run)
  --help              this text
RUNS/NAME gets sweep.csv (a row per run: its values, status, epochs and final
metrics), sweep.md (the same, sorted) and report.html (the runs compared).
Running the same command again skips finished runs and resumes the others
from their checkpoints.  Ctrl-C stops every run cleanly.
]]

local function fail(fmt, ...)
	cmdline.raise(string.format("%s: " .. fmt, FN, ...))
end

local as_dir, exists = runs.as_dir, runs.exists

local function now_text() return os.date("%Y-%m-%d %H:%M:%S") end

-- ---- the command line -------------------------------------------------------------

-- Options of the sweep itself, which are therefore not keys of the grid.
local OWN = {jobs = true, j = true, name = true, sort = true, emit = true, task = true, help = true,
	resume = true}

-- The values of --key=text: a comma-separated list whose items are values
-- or integer ranges lo..hi.  An item of digits, dots and signs holding ".."
-- must be a valid range (so "1.." is an error, while "../data" is a value).
local function parse_values(key, text)
	local what = string.format("--%s=%s", key, text)
	if text == "" then fail("%s: no value (give --%s=v1,v2 or --%s=lo..hi)", what, key, key) end
	local values, seen = {}, {}
	local function add(v)
		if seen[v] then fail("%s: the value %s is given twice", what, v) end
		seen[v] = true
		values[#values + 1] = v
	end
	for item in (text .. ","):gmatch("([^,]*),") do
		if item == "" then fail("%s: an empty value between commas", what) end
		if item:find("..", 1, true) and item:find("^[%d%.%-+eE ]+$") then
			local lo, hi = item:match("^%s*([%-+]?%d+)%.%.([%-+]?%d+)%s*$")
			lo, hi = math.tointeger(tonumber(lo)), math.tointeger(tonumber(hi))
			if not lo or not hi then
				fail("%s: bad range '%s' (a range is lo..hi with integers lo <= hi; list other values: 0.1,0.2)",
					what, item)
			end
			if lo > hi then fail("%s: empty range '%s' (lo > hi)", what, item) end
			if hi - lo >= 100000 then fail("%s: range '%s' is too long", what, item) end
			for v = lo, hi do add(string.format("%d", v)) end
		else
			add(item)
		end
	end
	return values
end

-- sweep.parse(args) -> spec = {script=, keys = {in order}, values = {key =
-- {text...}}, jobs=, name=, sort = {key=, descending=}, emit=, task=, help=,
-- args = {the grid's words, for the emitted commands}}.  A mistake is a
-- one-line error naming the key or option.
function M.parse(args)
	local spec = {keys = {}, values = {}, jobs = 1, grid_args = {}, args = args}
	local i = 1
	local function value_of(a, opt)
		local v = a:match("^%-%-" .. opt .. "=(.*)$")
		if v then return v end
		i = i + 1
		if args[i] == nil then fail("%s needs a value", a) end
		return args[i]
	end
	while i <= #args do
		local a = args[i]
		if type(a) ~= "string" then fail("arguments must be strings, got %s", type(a)) end
		if a == "--help" or a == "-h" then
			spec.help = true
		elseif a == "-j" or a:find("^%-j%d") or a == "--jobs" or a:find("^%-%-jobs=") then
			local v
			if a:find("^%-j%d") then v = a:sub(3) else v = value_of(a, "jobs") end
			local n = math.tointeger(tonumber(v))
			if not n or n < 1 then fail("-j expects an integer >= 1, got '%s'", v) end
			spec.jobs = n
		elseif a == "--name" or a:find("^%-%-name=") then
			local v = value_of(a, "name")
			if not v:find("^[%w_%.%-=,+]+$") or v == "." or v == ".." then
				fail("--name=%s: a name is letters, digits and _ . - = , + (no /)", v)
			end
			spec.name = v
		elseif a == "--sort" or a:find("^%-%-sort=") then
			local v = value_of(a, "sort")
			local desc = true
			if v:sub(1, 1) == "-" then desc, v = false, v:sub(2) end
			if v == "" then fail("--sort needs a metric: --sort=accuracy or --sort=-loss") end
			spec.sort = {key = v, descending = desc}
		elseif a == "--emit" or a:find("^%-%-emit=") then
			local v = value_of(a, "emit")
			if v ~= "slurm" and v ~= "parallel" then
				fail("--emit=%s: expected --emit=slurm or --emit=parallel", v)
			end
			spec.emit = v
		elseif a == "--task" or a:find("^%-%-task=") then
			local v = value_of(a, "task")
			local n = math.tointeger(tonumber(v))
			if not n or n < 0 then fail("--task expects an integer >= 0, got '%s'", v) end
			spec.task = n
		elseif a:sub(1, 2) == "--" then
			local k, v = a:match("^%-%-([^=]*)=(.*)$")
			if not k then k, v = a:sub(3), "true" end
			local key = k:gsub("%-", "_")
			if not key:find("^[%a_][%w_]*$") then fail("bad option '%s': keys are --key=values", a) end
			if OWN[key] then fail("--%s is an option of lunet sweep, not a key to sweep over", k) end
			if spec.values[key] then fail("--%s is given twice (list its values once: --%s=a,b)", k, k) end
			if not spec.script then fail("--%s comes before the script: lunet sweep SCRIPT --key=values", k) end
			spec.keys[#spec.keys + 1] = key
			spec.values[key] = parse_values(key, v)
			spec.grid_args[#spec.grid_args + 1] = a
		elseif a:sub(1, 1) == "-" then
			fail("unknown option '%s' (lunet sweep --help)", a)
		elseif spec.script then
			fail("unexpected argument '%s' (one script; keys are --key=values)", a)
		else
			spec.script = a
		end
		i = i + 1
	end
	if spec.help then return spec end
	if not spec.script then fail("no script given (lunet sweep SCRIPT --key=values; lunet sweep --help)") end
	if sys.file_type(spec.script) ~= "file" then fail("cannot read the script '%s'", spec.script) end
	if #spec.keys == 0 then fail("no key to sweep over (give --key=v1,v2 after the script)") end
	if not spec.name then
		local base = spec.script:match("([^/]+)$"):gsub("%.lua$", "")
		base = base:gsub("[^%w_%.%-]", "_")
		local varying = {}
		for _, k in ipairs(spec.keys) do
			if #spec.values[k] > 1 then varying[#varying + 1] = k end
		end
		spec.name = base .. "-" .. (#varying > 0 and table.concat(varying, "-") or "sweep")
	end
	return spec
end

-- A short stable hash of s (FNV-1a, 32 bits) as 8 hex digits.
local function hash8(s)
	local h = 2166136261
	for i = 1, #s do
		h = ((h ~ s:byte(i)) * 16777619) & 0xffffffff
	end
	return string.format("%08x", h)
end

-- A value as it appears in a run's name: characters other than letters,
-- digits and . - + _ become _, and a long value is cut and hashed.
local function name_part(v)
	local s = v:gsub("[^%w%.%-+_]", "_")
	if #s > 40 then s = s:sub(1, 24) .. "~" .. hash8(v) end
	return s
end

-- sweep.expand(spec) -> the configurations, in order (task I is entry
-- I + 1): {index = 0-based, values = {key = text}, args = {"--key=value",
-- ...} (in the order of the keys), name = "a=1,b=x"}.
function M.expand(spec)
	local configs = {{}}
	for _, k in ipairs(spec.keys) do
		local next_configs = {}
		for _, c in ipairs(configs) do
			for _, v in ipairs(spec.values[k]) do
				local copy = {}
				for kk, vv in pairs(c) do copy[kk] = vv end
				copy[k] = v
				next_configs[#next_configs + 1] = copy
			end
		end
		configs = next_configs
	end
	local sorted = {}
	for i, k in ipairs(spec.keys) do sorted[i] = k end
	table.sort(sorted)
	local out, names = {}, {}
	for i, values in ipairs(configs) do
		local a, n = {}, {}
		for _, k in ipairs(spec.keys) do a[#a + 1] = string.format("--%s=%s", k, values[k]) end
		for _, k in ipairs(sorted) do n[#n + 1] = k .. "=" .. name_part(values[k]) end
		local name = table.concat(n, ",")
		out[i] = {index = i - 1, values = values, args = a, name = name, full = table.concat(a, " ")}
		names[name] = (names[name] or 0) + 1
	end
	-- Names that came out the same after their values were cleaned: told
	-- apart by a hash of the values themselves.
	for _, c in ipairs(out) do
		if names[c.name] > 1 then c.name = c.name .. "~" .. hash8(c.full) end
	end
	return out
end

-- The sweep's directory.
local function sweep_dir(spec)
	local root = os.getenv("LUNET_RUNS")
	if root == nil or root == "" then root = "runs" end
	return as_dir(root) .. spec.name .. "/", root
end

-- The lunet runner that runs the children.
local function lunet_path()
	local exe = sys.exe_path()
	if not exe or not exe:match("([^/]+)$"):find("^lunet") then
		fail("the sweep runs its scripts with the lunet runner; start it as `lunet sweep ...`")
	end
	return exe
end

-- The command that started the sweep, as one shell line; without --task,
-- so that from a task of an emitted job it is the command that runs (or
-- resumes) the whole sweep.
local function command_text(spec)
	local words = {"lunet", "sweep"}
	local i = 1
	while i <= #spec.args do
		local a = spec.args[i]
		if a == "--task" then
			i = i + 1
		elseif not a:find("^%-%-task=") then
			words[#words + 1] = shell_quote(a)
		end
		i = i + 1
	end
	return table.concat(words, " ")
end

-- ---- files ---------------------------------------------------------------------------

local function read_file(path)
	local f = io.open(path, "rb")
	if not f then return nil end
	local s = f:read("a")
	f:close()
	return s
end

-- The last n lines of the file at path after byte offset (nil if none).
local function tail(path, offset, n)
	local s = read_file(path)
	if not s then return nil end
	s = s:sub((offset or 0) + 1)
	local lines = {}
	for line in s:gmatch("[^\n]*") do
		if line ~= "" then lines[#lines + 1] = line end
	end
	if #lines == 0 then return nil end
	local from = math.max(1, #lines - n + 1)
	return table.concat(lines, "\n", from)
end

local function file_size(path)
	local f = io.open(path, "rb")
	if not f then return 0 end
	local n = f:seek("end")
	f:close()
	return n or 0
end

-- The files lunet.experiment writes in a run directory: removed before a
-- run starts again from scratch (the logs stay, appended to).
local RUN_FILES = {"config.lua", "status.lua", "metrics.csv", "report.html", "gradients.csv",
	"confusion.csv", "checkpoint.lunet", "lock"}

local function clear_run(dir)
	for _, f in ipairs(RUN_FILES) do os.remove(dir .. f) end
	for _, f in ipairs(sys.list_dir(dir) or {}) do
		if f:find("%.svg$") then os.remove(dir .. f) end
	end
end

-- ---- asking the script ----------------------------------------------------------------

local CHECK_MARK = "-- lunet sweep check"

-- Runs the script with LUNET_SWEEP_CHECK=1 and every value given, so that
-- lunet.experiment converts each --key=value and exits.  Returns the
-- script's defaults.  A refusal is a one-line error with the script's own
-- message; a script that does not stop within `limit` seconds (one that
-- does not use lunet.experiment and trains) is stopped.
local function check_script(spec, exe, limit)
	local argv = {exe, spec.script}
	for _, k in ipairs(spec.keys) do
		for _, v in ipairs(spec.values[k]) do argv[#argv + 1] = string.format("--%s=%s", k, v) end
	end
	local out, err = os.tmpname(), os.tmpname()
	local pid = sys.spawn(argv, {stdout = out, stderr = err, group = true,
		env = {LUNET_SWEEP_CHECK = "1", LUNET_RUN_DIR = false}})
	local start = lunet.clock()
	local how, code
	local ok, e = pcall(function()
		while true do
			local p, h, c = sys.wait(pid, true)
			if p then how, code = h, c return end
			if lunet.clock() - start > limit then
				fail("%s did not reach lunet.experiment within %d s (a sweep needs a script built on " ..
					"lunet.experiment)", spec.script, limit)
			end
			sys.sleep(0.02)
		end
	end)
	if not ok then  -- too slow, or a Ctrl-C: the check goes too
		sys.kill(-pid, "KILL")
		sys.wait(pid)
		os.remove(out) os.remove(err)
		error(e, 0)
	end
	local text, errors = read_file(out) or "", read_file(err) or ""
	os.remove(out) os.remove(err)
	if how ~= "exit" or code ~= 0 then
		local last = tail(err, 0, 1) or errors:match("([^\n]+)\n?$") or
			(how == "signal" and "killed by signal " .. code or "exit status " .. code)
		last = last:gsub("^lunet: ", "")
		fail("%s does not take these values: %s", spec.script, last)
	end
	local at = text:find(CHECK_MARK, 1, true)
	if not at then
		fail("%s ended without calling lunet.experiment (a sweep needs a script built on it)", spec.script)
	end
	local defaults = cmdline.read_config(text:sub(text:find("\n", at) + 1))
	return defaults or {}
end

-- ---- the sweep's files -------------------------------------------------------------------

-- The rows of the sweep: one per configuration, read from its directory.
local function collect(spec, configs, dir)
	local rows = {}
	for _, c in ipairs(configs) do
		local run = runs.load(dir .. c.name)
		local row = {config = c, name = c.name, values = c.values, status = "pending", epochs = "",
			final = {}, columns = {}, metrics = {}}
		if run then
			row.status, row.final, row.columns, row.metrics = run.status, run.final, run.columns, run.metrics
			row.epochs = runs.epochs_text(run)
			row.error = run.status == "failed" and (run.stderr or run.error) or nil
		end
		row.report = exists(dir .. c.name .. "/report.html") and c.name .. "/report.html" or nil
		rows[#rows + 1] = row
	end
	return rows
end

-- The rows sorted for sweep.md: by spec.sort (rows without the metric
-- last), else in the order of the grid.
local function sorted_rows(spec, rows)
	local list = {}
	for i, r in ipairs(rows) do list[i] = r end
	if not spec.sort then return list end
	local key, desc = spec.sort.key, spec.sort.descending
	table.sort(list, function(a, b)
		local va, vb = a.final[key], b.final[key]
		va = type(va) == "number" and va == va and va or nil
		vb = type(vb) == "number" and vb == vb and vb or nil
		if va and vb and va ~= vb then
			if desc then return va > vb end
			return va < vb
		end
		if (va == nil) ~= (vb == nil) then return va ~= nil end
		return a.config.index < b.config.index
	end)
	return list
end

local function md_cell(v)
	if v == nil then return "" end
	local s = type(v) == "number" and show(v, 4) or tostring(v)
	return (s:gsub("|", "\\|"):gsub("\n", " "))
end

-- The column of each key in sweep.csv, sweep.md and report.html: the key,
-- or config.<key> when a column of the sweep has that name already (a key
-- named epochs).
local function key_columns(keys, metrics)
	local taken = {run = true, status = true, epochs = true, error = true}
	for _, m in ipairs(metrics) do taken[m] = true end
	local col = {}
	for _, k in ipairs(keys) do col[k] = taken[k] and "config." .. k or k end
	return col
end

local function markdown(spec, rows, dir, metrics, keycol)
	local out = {
		"# Sweep " .. spec.name, "",
		"`" .. command_text(spec) .. "`", "",
		string.format("%d runs: %s.%s Directory %s (sweep.csv, report.html).", #rows,
			runs.count_text(rows),
			spec.sort and string.format(" Sorted by %s, %s first.", spec.sort.key,
				spec.sort.descending and "largest" or "smallest") or "", dir),
		"",
	}
	local head, rule = {"run"}, {"---"}
	for _, k in ipairs(spec.keys) do head[#head + 1] = keycol[k] rule[#rule + 1] = "--:" end
	head[#head + 1] = "status" rule[#rule + 1] = "---"
	head[#head + 1] = "epochs" rule[#rule + 1] = "--:"
	for _, m in ipairs(metrics) do head[#head + 1] = m rule[#rule + 1] = "--:" end
	out[#out + 1] = "| " .. table.concat(head, " | ") .. " |"
	out[#out + 1] = "|" .. table.concat(rule, "|") .. "|"
	for _, r in ipairs(sorted_rows(spec, rows)) do
		local cells = {md_cell(r.name)}
		for _, k in ipairs(spec.keys) do cells[#cells + 1] = md_cell(r.values[k]) end
		cells[#cells + 1] = r.status
		cells[#cells + 1] = md_cell(r.epochs)
		for _, m in ipairs(metrics) do cells[#cells + 1] = md_cell(r.final[m]) end
		out[#out + 1] = "| " .. table.concat(cells, " | ") .. " |"
	end
	local failed = {}
	for _, r in ipairs(rows) do
		if r.status == "failed" then
			failed[#failed + 1] = "### " .. r.name
			failed[#failed + 1] = ""
			failed[#failed + 1] = "```"
			failed[#failed + 1] = r.error or "(no message)"
			failed[#failed + 1] = "```"
			failed[#failed + 1] = ""
		end
	end
	if #failed > 0 then
		out[#out + 1] = ""
		out[#out + 1] = "## Failed runs"
		out[#out + 1] = ""
		for _, l in ipairs(failed) do out[#out + 1] = l end
	end
	return table.concat(out, "\n") .. "\n"
end

-- sweep.write_files(spec, configs, dir): sweep.csv, sweep.md and
-- report.html from the run directories, under the sweep's lock.
function M.write_files(spec, configs, dir)
	local lock = sys.lock(dir .. ".sweep.lock", {wait = true})
	local rows
	local ok, err = pcall(function()
		rows = collect(spec, configs, dir)
		local loaded = {}
		for i, r in ipairs(rows) do loaded[i] = {columns = r.columns} end
		local metrics = runs.metric_columns(loaded)
		local keycol = key_columns(spec.keys, metrics)
		local columns = {"run"}
		for _, k in ipairs(spec.keys) do columns[#columns + 1] = keycol[k] end
		columns[#columns + 1] = "status"
		columns[#columns + 1] = "epochs"
		for _, m in ipairs(metrics) do columns[#columns + 1] = m end
		columns[#columns + 1] = "error"
		local csv_rows = {}
		for i, r in ipairs(rows) do
			local row = {run = r.name, status = r.status, epochs = r.epochs, error = r.error}
			for _, k in ipairs(spec.keys) do row[keycol[k]] = r.values[k] end
			for _, m in ipairs(metrics) do row[m] = r.final[m] end
			csv_rows[i] = row
		end
		sys.write_atomic(dir .. "sweep.csv", csv.text(columns, csv_rows))
		sys.write_atomic(dir .. "sweep.md", markdown(spec, rows, dir, metrics, keycol))
		sys.write_atomic(dir .. "report.html", report.sweep_page{
			name = spec.name, dir = dir, command = command_text(spec), keys = spec.keys, key_labels = keycol,
			sort = spec.sort, runs = sorted_rows(spec, rows),
		})
	end)
	lock:unlock()
	if not ok then error(err, 0) end
	return rows
end

-- ---- running -----------------------------------------------------------------------------

local function duration(s)
	s = math.floor(s + 0.5)
	if s >= 3600 then return string.format("%d:%02d:%02d", s // 3600, s % 3600 // 60, s % 60) end
	return string.format("%d:%02d", s // 60, s % 60)
end

-- A line for the terminal about a finished run: its final metrics.
local function finals_text(dir)
	local run = runs.load(dir)
	if not run then return "" end
	local parts = {}
	for _, c in ipairs(run.columns) do
		local v = run.final[c]
		if type(v) == "number" then parts[#parts + 1] = string.format("%s %s", c, show(v, 4)) end
	end
	return table.concat(parts, "  ")
end

-- What a configuration needs now: "skip" (finished), "busy" (another
-- process runs it), "resume" (it has a checkpoint) or "fresh".
local function plan(dir)
	local run = runs.load(dir)
	if not run then return "fresh" end
	if run.status == "finished" then return "skip", run end
	if run.status == "running" then return "busy", run end
	if exists(dir .. "checkpoint.lunet") then return "resume", run end
	return "fresh", run
end

-- Settles the status of a child that ended (see the top, step 4) and
-- returns it with the tail of its stderr.
local function settle(job, how, code, stopping)
	local dir = job.dir
	local st = cmdline.read_config_file(dir .. "status.lua")
	if how == "exit" and code == 0 then
		if st and st.status ~= "finished" then
			st.status, st.updated = "finished", now_text()
			sys.write_atomic(dir .. "status.lua", cmdline.config_text(st, {"lunet run status (settled by lunet sweep)"}))
		end
		return "finished"
	end
	local status
	if st and (st.status == "interrupted" or st.status == "failed") then
		status = st.status
	elseif stopping or (how == "signal" and (code == 2 or code == 15)) then
		status = "interrupted"
	else
		status = "failed"
	end
	local lines = tail(dir .. "stderr.log", job.offset, 12)
	local exit = how == "exit" and string.format("exit status %d", code) or
		string.format("killed by signal %d", code)
	st = st or {started = job.started_text}
	st.status, st.updated, st.exit = status, now_text(), exit
	st.stderr = lines
	if status == "failed" and not st.error then st.error = lines or exit end
	-- The run may have left no directory (it failed before its first row
	-- and removed it): status.lua then has nowhere to go.
	if sys.file_type(dir) == "directory" then
		sys.write_atomic(dir .. "status.lua", cmdline.config_text(st, {"lunet run status (settled by lunet sweep)"}))
	end
	return status, lines, exit
end

-- Stops the running children (one SIGINT each to their process groups,
-- then SIGTERM after `grace` seconds and SIGKILL after 5 more) and settles
-- them.  Returns how many were stopped.
local function stop_all(running, settle_one, grace)
	local pids = sys.children()
	for _, pid in ipairs(pids) do sys.kill(-pid, "INT") end
	local start, stage = lunet.clock(), 0
	local left = #pids
	while left > 0 do
		local pid, how, code = sys.wait(nil, true)
		if pid then
			left = left - 1
			if running[pid] then settle_one(running[pid], how, code, true) running[pid] = nil end
		elseif how == "no child" then
			break
		else
			local t = lunet.clock() - start
			if stage == 0 and t > grace then
				stage = 1
				for _, p in ipairs(sys.children()) do sys.kill(-p, "TERM") end
			elseif stage == 1 and t > grace + 5 then
				stage = 2
				for _, p in ipairs(sys.children()) do sys.kill(-p, "KILL") end
			end
			sys.sleep(0.02)
		end
	end
	return #pids
end

-- Runs the configurations `todo` (of `configs`), spec.jobs at a time.
-- Returns the counts of the runs by how they ended.
local function run_all(spec, configs, todo, dir, exe, out)
	local n = #configs
	local queue, counts = {}, {finished = 0, failed = 0, interrupted = 0, skipped = 0, busy = 0}
	local function say(fmt, ...)
		out:write(string.format(fmt, ...), "\n")
		out:flush()
	end
	for _, c in ipairs(todo) do
		local rdir = dir .. c.name .. "/"
		local what, run = plan(rdir)
		local tag = string.format("[%d/%d] %s", c.index + 1, n, c.name)
		if what == "skip" then
			counts.skipped = counts.skipped + 1
			say("%s: finished already", tag)
		elseif what == "busy" then
			counts.busy = counts.busy + 1
			say("%s: running already (process %s), left to it", tag, run.holder or "?")
		else
			queue[#queue + 1] = {config = c, dir = rdir, mode = what, tag = tag,
				epochs = run and runs.epochs_text(run)}
		end
	end
	local env = {LUNET_SWEEP_CHECK = false}
	if not os.getenv("OPENBLAS_NUM_THREADS") and not os.getenv("OMP_NUM_THREADS") then
		env.OPENBLAS_NUM_THREADS = tostring(math.max(1, sys.ncpu() // math.min(spec.jobs, math.max(1, #queue))))
	end
	local running, active = {}, 0

	local function start(job)
		sys.mkdir(job.dir)
		if job.mode == "fresh" then clear_run(job.dir) end
		local argv = {exe, spec.script}
		for _, a in ipairs(job.config.args) do argv[#argv + 1] = a end
		if job.mode == "resume" then argv[#argv + 1] = "--resume=" .. job.dir end
		local words = {}
		for i, w in ipairs(argv) do words[i] = shell_quote(w) end
		job.started_text = now_text()
		local note = string.format("---- lunet sweep, %s: %s\n", job.started_text, table.concat(words, " "))
		for _, log in ipairs{"stdout.log", "stderr.log"} do
			local f = io.open(job.dir .. log, "a")
			if f then f:write(note) f:close() end
		end
		job.offset = file_size(job.dir .. "stderr.log")
		env.LUNET_RUN_DIR = job.mode == "fresh" and job.dir or false
		local pid = sys.spawn(argv, {stdout = job.dir .. "stdout.log", stderr = job.dir .. "stderr.log",
			append = true, group = true, env = env})
		job.t0 = lunet.clock()
		running[pid] = job
		active = active + 1
		say("%s: %s (process %d)", job.tag, job.mode == "resume" and
			string.format("resumed at epoch %s", job.epochs or "?") or "started", pid)
	end

	local function ended(job, how, code, stopping)
		active = active - 1
		local status, lines, exit = settle(job, how, code, stopping)
		counts[status] = (counts[status] or 0) + 1
		local took = duration(lunet.clock() - job.t0)
		if status == "finished" then
			say("%s: finished in %s  %s", job.tag, took, finals_text(job.dir))
		elseif status == "interrupted" then
			say("%s: interrupted after %s (%s); its checkpoint is kept", job.tag, took, exit)
		else
			say("%s: FAILED after %s (%s); the end of %sstderr.log:", job.tag, took, exit, job.dir)
			for line in (lines or "(empty)"):gmatch("[^\n]+") do say("    %s", line) end
		end
		pcall(M.write_files, spec, configs, dir)
	end

	local ok, err = pcall(function()
		while #queue > 0 or active > 0 do
			while #queue > 0 and active < spec.jobs do start(table.remove(queue, 1)) end
			local pid, how, code = sys.wait()
			if pid and running[pid] then
				local job = running[pid]
				running[pid] = nil
				ended(job, how, code, false)
			elseif pid == nil and how == "no child" then
				break
			end
		end
	end)
	if not ok then
		local stopped = stop_all(running, ended, 30)
		pcall(M.write_files, spec, configs, dir)
		if sys.is_interrupt(err) then
			fail("interrupted; %d run(s) stopped, their checkpoints kept: run the same command again to go on",
				stopped)
		end
		error(err, 0)
	end
	return counts
end

-- ---- emitting jobs ------------------------------------------------------------------------

-- absolute(path): path made absolute against the current directory, as the
-- shell's pwd names it ($PWD when it is the current directory, a path
-- through symbolic links included; $PWD alone may be stale, left by a
-- parent that changed directory without a shell).
local function absolute(path)
	if path:sub(1, 1) == "/" then return path end
	local p = io.popen("pwd")
	local cwd = p and p:read("l")
	if p then p:close() end
	if not cwd or cwd:sub(1, 1) ~= "/" then
		fail("cannot tell the current directory, which the emitted commands need")
	end
	cwd = cwd:gsub("/+$", "")
	if path == "." or path == "./" then return cwd == "" and "/" or cwd end
	return cwd .. "/" .. path:gsub("^%./", "")
end

-- The words of `lunet sweep` that run task I (absolute paths).
local function task_command(spec, exe)
	local words = {shell_quote(exe), "sweep", shell_quote(absolute(spec.script))}
	for _, a in ipairs(spec.grid_args) do words[#words + 1] = shell_quote(a) end
	words[#words + 1] = shell_quote("--name=" .. spec.name)
	if spec.sort then
		words[#words + 1] = shell_quote("--sort=" .. (spec.sort.descending and "" or "-") .. spec.sort.key)
	end
	return table.concat(words, " ")
end

local function emit(spec, configs, dir, root, exe, out)
	local adir, aroot, cwd = absolute(dir), absolute(root), absolute(".")
	local cmd = task_command(spec, exe)
	local K = #configs - 1
	if spec.emit == "slurm" then
		sys.mkdir(dir .. "slurm")
		local lines = {
			"#!/bin/bash",
			string.format("# Slurm array job of the lunet sweep %s: one task per configuration.", spec.name),
			string.format("# Submit with: sbatch %ssweep.sbatch  (options given to sbatch win over these).", dir),
			"# Task I runs configuration I through `lunet sweep ... --task=I`: a finished run is",
			"# skipped, an interrupted or failed one resumed from its checkpoint, and sweep.csv,",
			"# sweep.md and report.html are brought up to date as each task ends.",
			string.format("#SBATCH --job-name=%s", spec.name),
			string.format("#SBATCH --array=0-%d%s", K, spec.jobs > 1 and "%" .. spec.jobs or ""),
			"#SBATCH --ntasks=1",
			string.format("#SBATCH --output=%s/slurm/%%A_%%a.out", (adir:gsub("/$", ""))),
			"",
		}
		for _, c in ipairs(configs) do
			lines[#lines + 1] = string.format("# task %d: %s", c.index, c.full)
		end
		lines[#lines + 1] = ""
		lines[#lines + 1] = "cd " .. shell_quote(cwd) .. " || exit 1"
		lines[#lines + 1] = "export LUNET_RUNS=" .. shell_quote(aroot)
		lines[#lines + 1] = 'export OPENBLAS_NUM_THREADS="${SLURM_CPUS_PER_TASK:-1}"'
		lines[#lines + 1] = "exec " .. cmd .. ' --task="$SLURM_ARRAY_TASK_ID"'
		sys.write_atomic(dir .. "sweep.sbatch", table.concat(lines, "\n") .. "\n")
		out:write(string.format("%s: wrote %ssweep.sbatch, an array of %d tasks; submit it with:\n" ..
			"  sbatch %ssweep.sbatch\n", FN, dir, #configs, dir))
	else
		local lines = {}
		for _, c in ipairs(configs) do
			lines[#lines + 1] = string.format("cd %s && LUNET_RUNS=%s %s --task=%d", shell_quote(cwd),
				shell_quote(aroot), cmd, c.index)
		end
		sys.write_atomic(dir .. "sweep.parallel", table.concat(lines, "\n") .. "\n")
		out:write(string.format("%s: wrote %ssweep.parallel, %d commands; run them with:\n" ..
			"  parallel -j %d < %ssweep.parallel\n", FN, dir, #configs, spec.jobs, dir))
	end
end

-- ---- the command ---------------------------------------------------------------------------

-- sweep.main(args[, out]) -> exit status of `lunet sweep args...`: 0 when
-- every run asked for is finished (or emitted), 1 otherwise.
function M.main(args, out)
	out = out or io.stdout
	local spec = M.parse(args)
	if spec.help then
		out:write(USAGE)
		return 0
	end
	local configs = M.expand(spec)
	if spec.task and spec.task >= #configs then
		fail("--task=%d: the sweep has %d configurations (tasks 0..%d)", spec.task, #configs, #configs - 1)
	end
	local dir, root = sweep_dir(spec)
	local exe = lunet_path()
	-- A sweep directory belongs to one script (the runs' names do not say which).
	local script_name = spec.script:match("([^/]+)$")
	local owner = read_file(dir .. ".script")
	if owner and owner ~= script_name .. "\n" then
		fail("%s holds a sweep of %s, not of %s: give this one another --name", dir,
			(owner:gsub("%s+$", "")), script_name)
	end
	if spec.task == nil then check_script(spec, exe, 120) end
	sys.mkdir(dir)
	if not owner then sys.write_atomic(dir .. ".script", script_name .. "\n") end
	if spec.emit then
		emit(spec, configs, dir, root, exe, out)
		M.write_files(spec, configs, dir)
		return 0
	end
	local todo = spec.task and {configs[spec.task + 1]} or configs
	if spec.task == nil then
		out:write(string.format("%s %s: %d runs, %d at a time, in %s\n", FN, spec.name, #configs,
			spec.jobs, dir))
	end
	local counts = run_all(spec, configs, todo, dir, exe, out)
	local rows = M.write_files(spec, configs, dir)
	local done = counts.finished + counts.skipped
	-- A task reports its own run, then the sweep as its files now show it.
	local whole = spec.task and string.format(" (task %d; the sweep: %s)", spec.task, runs.count_text(rows)) or ""
	out:write(string.format("%s %s: %d finished%s%s%s%s; %ssweep.csv, sweep.md, report.html\n", FN,
		spec.name, done, counts.failed > 0 and string.format(", %d failed", counts.failed) or "",
		counts.interrupted > 0 and string.format(", %d interrupted", counts.interrupted) or "",
		counts.busy > 0 and string.format(", %d running elsewhere", counts.busy) or "", whole, dir))
	out:flush()
	return done == #todo and 0 or 1
end

lunet._sweep = M
lunet._commands = lunet._commands or {}
lunet._commands.sweep = M.main
lunet._commands.runs = runs.main
return M
