-- runs.lua -- `lunet runs [DIR]` and `lunet runs --compare RUN1 RUN2`: what
-- the run directories of lunet.experiment say about themselves, read back
-- from their files (config.lua, status.lua, the lock, metrics.csv).  Also
-- the reader that `lunet sweep` uses for its own runs.  Nothing in a run
-- directory is run as code: config.lua and status.lua are read by
-- cmdline.read_config.
--
--   runs.load(dir)            -> a run (below), or nil and why
--   runs.scan(root)           -> the runs under root (any depth), oldest first
--   runs.list_text(list, root)    -> the table `lunet runs` prints
--   runs.compare_text(a, b)   -> the side-by-side table of --compare
--   runs.main(args)           -> exit status of `lunet runs args...`
--
-- A run = {dir=, config = {...}, status=, holder= ("pid@host" of a running
-- run), started=, updated=, error=, stderr=, columns=, metrics=, epochs=
-- (the last epoch logged, or the number of rows), epochs_total=
-- (config.epochs when it is an integer), final = {metric = last value}}.
--
-- Its status: "running" while a process holds its lock (lunet.sys.lock,
-- released by the kernel however the process ends); otherwise what
-- status.lua says, except that a status.lua still saying "running" means the
-- process died without a word (killed, out of memory, a node lost):
-- "interrupted", like a Ctrl-C, since it can be resumed from its checkpoint.
-- On a file system without locks, a "running" run whose process is alive on
-- this machine is running.  A run written before status.lua existed is
-- "finished" when it has its plots, else "interrupted".
local lunet, import = ...
local sys = lunet.sys
local csv, cmdline = import("csv"), import("cmdline")
local show = cmdline.show

local M = {}
local FN = "lunet runs"

local AXES = {epoch = true, step = true}

-- runs.as_dir(d): d with exactly one trailing slash.
local function as_dir(d)
	return (d:gsub("/+$", "")) .. "/"
end
M.as_dir = as_dir

-- runs.exists(path): whether anything is at path.
local function exists(path)
	return sys.file_type(path) ~= nil
end
M.exists = exists

-- runs.count_text(list) -> "4 finished, 2 failed": how many of the runs
-- (tables with a status) have each status, in the order first met.
function M.count_text(list)
	local counts, order = {}, {}
	for _, r in ipairs(list) do
		if not counts[r.status] then order[#order + 1] = r.status end
		counts[r.status] = (counts[r.status] or 0) + 1
	end
	local parts = {}
	for _, st in ipairs(order) do parts[#parts + 1] = string.format("%d %s", counts[st], st) end
	return table.concat(parts, ", "), counts
end

-- The status of the run in dir whose status.lua says st (nil if none), and
-- the holder of its lock when running.
local function run_status(dir, st)
	local held, text = sys.locked(dir .. "lock")
	if held then return "running", (text:gsub("%s+$", "")) end
	if st == nil or type(st.status) ~= "string" then
		for _, f in ipairs(sys.list_dir(dir) or {}) do
			if f:find("%.svg$") or f == "report.html" then return "finished" end
		end
		return "interrupted"
	end
	if st.status == "running" then
		-- Without locks (held == nil): the process, if it is on this machine.
		if held == nil and st.host == sys.hostname() and math.type(st.pid) == "integer" and
			st.pid > 0 and sys.kill(st.pid, 0) then
			return "running", string.format("%d@%s", st.pid, st.host)
		end
		return "interrupted"
	end
	return st.status
end
M.run_status = run_status

-- runs.load(dir) -> the run in dir, or nil and why (no config.lua or
-- status.lua there, or a config.lua that is not lunet's).
function M.load(dir)
	dir = as_dir(dir)
	local st = exists(dir .. "status.lua") and cmdline.read_config_file(dir .. "status.lua") or nil
	local config, err = cmdline.read_config_file(dir .. "config.lua")
	-- A run that died before lunet.experiment wrote its config.lua has only
	-- the status.lua that `lunet sweep` gave it.
	if not config and st then config = {} end
	if not config then return nil, err end
	local run = {dir = dir, config = config, columns = {}, metrics = {}, final = {}}
	run.status, run.holder = run_status(dir, st)
	if st then
		run.started, run.updated, run.error, run.stderr = st.started, st.updated, st.error, st.stderr
	end
	if run.started == nil then
		-- Before status.lua: the first line of config.lua says when.
		local header = cmdline.config_header(dir .. "config.lua")[1] or ""
		run.started = header:match("started (%d+%-%d+%-%d+ %d+:%d+:%d+)")
	end
	local columns, rows = csv.read(dir .. "metrics.csv")
	if columns then run.columns, run.metrics = columns, rows end
	for _, c in ipairs(run.columns) do
		for i = #run.metrics, 1, -1 do
			local v = run.metrics[i][c]
			if v ~= nil then
				if not AXES[c] then run.final[c] = v end
				break
			end
		end
	end
	local last_epoch
	for i = #run.metrics, 1, -1 do
		last_epoch = math.tointeger(run.metrics[i].epoch)
		if last_epoch then break end
	end
	run.epochs = last_epoch or #run.metrics
	run.epochs_total = math.tointeger(config.epochs)
	return run
end

-- "3/5", "3", or "0/5".
function M.epochs_text(run)
	if run.epochs_total then return string.format("%d/%d", run.epochs, run.epochs_total) end
	return tostring(run.epochs)
end

-- runs.scan(root) -> the runs in the directories under root (root itself
-- included), sorted by start time, then directory.  Each gets name = its
-- directory relative to root.  Hidden directories are not visited; a run
-- directory is not looked into further.
function M.scan(root)
	root = as_dir(root)
	local found = {}
	local function visit(dir, rel, depth)
		if exists(dir .. "config.lua") then
			local run = M.load(dir)
			if run then
				run.name = rel ~= "" and rel or (dir:gsub("/$", ""):match("[^/]+$") or dir)
				found[#found + 1] = run
				return
			end
		end
		if depth >= 8 then return end
		local names = sys.list_dir(dir)
		if not names then return end
		table.sort(names)
		for _, n in ipairs(names) do
			if n:sub(1, 1) ~= "." and sys.file_type(dir .. n) == "directory" then
				visit(dir .. n .. "/", rel == "" and n or rel .. "/" .. n, depth + 1)
			end
		end
	end
	visit(root, "", 0)
	table.sort(found, function(a, b)
		local sa, sb = a.started or "", b.started or ""
		if sa ~= sb then return sa < sb end
		return a.name < b.name
	end)
	return found
end

-- ---- text tables ------------------------------------------------------------------------

-- Lays out rows (lists of strings) under headers, columns separated by two
-- spaces; columns listed in right are right-aligned.
local function layout(headers, rows, right)
	local w = {}
	for i, h in ipairs(headers) do w[i] = utf8.len(h) or #h end
	for _, r in ipairs(rows) do
		for i = 1, #headers do w[i] = math.max(w[i], utf8.len(r[i] or "") or #(r[i] or "")) end
	end
	local function line(r)
		local cells = {}
		for i = 1, #headers do
			local s = r[i] or ""
			local pad = string.rep(" ", w[i] - (utf8.len(s) or #s))
			cells[i] = right[i] and pad .. s or s .. pad
		end
		return (table.concat(cells, "  "):gsub("%s+$", ""))
	end
	local out = {line(headers)}
	for _, r in ipairs(rows) do out[#out + 1] = line(r) end
	return table.concat(out, "\n") .. "\n"
end

-- A value in a text table: on one line (a line break shows as \n).
local function value_text(v)
	if v == nil then return "" end
	return (show(v, 4):gsub("[\r\n\t]", {["\r"] = "\\r", ["\n"] = "\\n", ["\t"] = "\\t"}))
end

-- The config keys whose values are not all the same across the runs.
function M.differing_keys(list)
	local keys, seen = {}, {}
	for _, r in ipairs(list) do
		for k in pairs(r.config) do
			if not seen[k] then seen[k] = true keys[#keys + 1] = k end
		end
	end
	table.sort(keys)
	local out = {}
	for _, k in ipairs(keys) do
		local first = cmdline.show(list[1].config[k])
		for i = 2, #list do
			if cmdline.show(list[i].config[k]) ~= first or (list[i].config[k] == nil) ~= (list[1].config[k] == nil) then
				out[#out + 1] = k
				break
			end
		end
	end
	return out
end

-- The metric columns of the runs, in order of first appearance.
function M.metric_columns(list)
	local cols, seen = {}, {}
	for _, r in ipairs(list) do
		for _, c in ipairs(r.columns) do
			if not AXES[c] and not seen[c] then seen[c] = true cols[#cols + 1] = c end
		end
	end
	return cols
end

-- runs.list_text(list) -> the table of `lunet runs`: name, start, status,
-- epochs, final metrics, then the config values that differ between runs.
function M.list_text(list)
	local metrics = M.metric_columns(list)
	local keys = #list > 1 and M.differing_keys(list) or {}
	local headers, right = {"run", "started", "status", "epochs"}, {[4] = true}
	for _, c in ipairs(metrics) do headers[#headers + 1] = c right[#headers] = true end
	for _, k in ipairs(keys) do headers[#headers + 1] = k right[#headers] = true end
	local rows = {}
	for _, r in ipairs(list) do
		local row = {r.name, r.started or "?", r.status, M.epochs_text(r)}
		for _, c in ipairs(metrics) do row[#row + 1] = value_text(r.final[c]) end
		for _, k in ipairs(keys) do row[#row + 1] = value_text(r.config[k]) end
		rows[#rows + 1] = row
	end
	return layout(headers, rows, right)
end

-- runs.compare_text(a, b) -> both runs side by side: status, times, epochs,
-- every config key (a * marks the ones that differ), the final metrics.
function M.compare_text(a, b)
	local rows = {}
	local function add(label, va, vb, mark)
		rows[#rows + 1] = {(mark and "* " or "  ") .. label, va or "", vb or ""}
	end
	add("status", a.status, b.status, a.status ~= b.status)
	add("started", a.started, b.started)
	add("epochs", M.epochs_text(a), M.epochs_text(b), M.epochs_text(a) ~= M.epochs_text(b))
	rows[#rows + 1] = {"config", "", ""}
	local keys, seen = {}, {}
	for _, r in ipairs{a, b} do
		for k in pairs(r.config) do
			if not seen[k] then seen[k] = true keys[#keys + 1] = k end
		end
	end
	table.sort(keys)
	for _, k in ipairs(keys) do
		local va, vb = a.config[k], b.config[k]
		add("  " .. k, value_text(va), value_text(vb), value_text(va) ~= value_text(vb))
	end
	rows[#rows + 1] = {"final metrics", "", ""}
	for _, c in ipairs(M.metric_columns{a, b}) do
		add("  " .. c, value_text(a.final[c]), value_text(b.final[c]))
	end
	return layout({"", a.name, b.name}, rows, {})
end

-- ---- the command ---------------------------------------------------------------------------

local USAGE = [[
usage: lunet runs [DIR]                    every run under DIR (default $LUNET_RUNS, else runs/)
       lunet runs [DIR] --compare RUN1 RUN2  two runs side by side
Lists each run directory of lunet.experiment: its name (the path under DIR),
start time, status (running, finished, interrupted or failed), epochs done,
final metrics and the config values that differ between the runs.  RUN is a
run's directory, or its name as listed, or the end of it from a / or a ,
(lr=0.1,seed=2 for sweep/epochs=2,lr=0.1,seed=2).
]]

local function fail(fmt, ...)
	cmdline.raise(string.format("%s: " .. fmt, FN, ...))
end

-- Finds RUN (a directory, or a name among the runs under root).
local function resolve(name, root, list)
	if exists(as_dir(name) .. "config.lua") then
		local run = assert(M.load(name))
		run.name = name
		return run
	end
	local matches = {}
	for _, r in ipairs(list()) do
		if r.name == name then return r end
		-- the end of a name, from a / or a , on: "lr=0.1,seed=2" for ".../epochs=2,lr=0.1,seed=2"
		local before = r.name:sub(-#name - 1, -#name - 1)
		if r.name:sub(-#name) == name and (before == "/" or before == ",") then matches[#matches + 1] = r end
	end
	if #matches == 1 then return matches[1] end
	if #matches > 1 then
		local names = {}
		for i, r in ipairs(matches) do names[i] = r.name end
		fail("'%s' names %d runs under %s: %s", name, #matches, root, table.concat(names, ", "))
	end
	fail("no run '%s' under %s (and no run directory of that name)", name, root)
end

function M.main(args, out)
	out = out or io.stdout
	local root, compare
	local i = 1
	while i <= #args do
		local a = args[i]
		if a == "--help" or a == "-h" then
			out:write(USAGE)
			return 0
		elseif a == "--compare" then
			if not args[i + 1] or not args[i + 2] then fail("--compare needs two runs: --compare RUN1 RUN2") end
			compare = {args[i + 1], args[i + 2]}
			i = i + 2
		elseif a:sub(1, 1) == "-" then
			fail("unknown option '%s' (lunet runs --help)", a)
		elseif root then
			fail("unexpected argument '%s': one directory at most (lunet runs --help)", a)
		else
			root = a
		end
		i = i + 1
	end
	local env = os.getenv("LUNET_RUNS")
	root = root or (env and env ~= "" and env) or "runs"
	local cached
	local function list()
		if sys.file_type(root) ~= "directory" then
			fail("no directory %s (give the directory of the runs: lunet runs DIR)", root)
		end
		cached = cached or M.scan(root)
		return cached
	end
	if compare then
		local a, b = resolve(compare[1], root, list), resolve(compare[2], root, list)
		out:write(M.compare_text(a, b))
		return 0
	end
	local found = list()
	if #found == 0 then
		out:write(string.format("no runs under %s\n", root))
		return 0
	end
	out:write(M.list_text(found))
	return 0
end

lunet._runs = M
return M
