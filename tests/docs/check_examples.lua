-- check_examples.lua BUILD_DIR SOURCE_DIR PAGE.md... -- runs every example of
-- the manual's pages and checks the output they show; exits non-zero when
-- one fails, naming the page, the line and what differed.  Run by lunet
-- (CTest: docs_<page>, one test per page; docs/README.md says how to write
-- examples).
--
-- A fenced code block is an example.  Its info string is a language and
-- flags: ```lua, ```sh, ```c, ```repl, ```lua norun ...
--   lua     runs through BUILD_DIR/lunet as a script, in a fresh process
--   sh      runs with bash -e (lunet on PATH is BUILD_DIR/lunet)
--   c       is compiled against the build (src/lunet.h, liblunet) and run;
--           a block without main() holds declarations, compiled after
--           #include <lunet.h> (so they must agree with the header)
--   repl    a REPL session: the lines after "> " (and ">> ") are fed to
--           lunet's REPL; the other lines are what it prints (stdout and
--           stderr together), checked exactly
--   output  the stdout of the example just above it (only blank lines
--           between), checked exactly (trailing blanks aside)
-- Any other language (cmake, text, ...) is not run.  Flags: `norun` shows
-- code that must not run here (it says why in the text); `mpi` runs the
-- example under `mpirun -np 2` in a build with MPI and skips it in others.
--
-- In a lua example, a line `CODE --> TEXT` (CODE an expression) checks
-- that CODE gives TEXT, its values shown as the REPL shows them (tables as
-- lunet.show does, integral floats without ".0", values separated by ", ");
-- `CODE --> error: TEXT` checks that CODE (an expression or a statement)
-- raises an error whose message contains TEXT.  A full-line comment is
-- never a check.
--
-- Every page gets a fresh temporary directory, the working directory of
-- all its examples in order: an example may use a file an earlier one of
-- the same page wrote.
--
-- Also usable on any Markdown file (tests/lua/test_manual.lua runs it on
-- stale examples and expects it to fail).

local BUILD, SRC = arg[1], arg[2]
if not BUILD or not SRC or not arg[3] then
	io.stderr:write("usage: lunet check_examples.lua BUILD_DIR SOURCE_DIR PAGE.md...\n")
	os.exit(2)
end

local function absolute(dir)
	local p = io.popen("cd '" .. dir:gsub("'", "'\\''") .. "' && pwd")
	local abs = p:read("l")
	p:close()
	return abs or dir
end
BUILD, SRC = absolute(BUILD), absolute(SRC)
local LUNET = BUILD .. "/lunet"
local TIMEOUT = "timeout 300 "

local function shell_quote(s)
	return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local harness = dofile(SRC .. "/tests/lua/harness.lua")
local write_file = harness.write_file

-- The bytes of the file at path, or nil when it cannot be read.
local function read_file(path)
	local ok, s = pcall(harness.read_file, path)
	return ok and s or nil
end

-- Runs a shell command; returns whether it exited 0.
local function sh(cmd)
	local ok = os.execute(cmd)
	return ok == true
end

local function capture(cmd)
	local p = assert(io.popen(cmd))
	local s = p:read("a")
	p:close()
	return s
end

local function trim_lines(s)
	local lines = {}
	for line in (s .. "\n"):gmatch("([^\n]*)\n") do
		lines[#lines + 1] = (line:gsub("%s+$", ""))
	end
	while #lines > 0 and lines[#lines] == "" do lines[#lines] = nil end
	while #lines > 0 and lines[1] == "" do table.remove(lines, 1) end
	return table.concat(lines, "\n")
end

-- ---- the build ------------------------------------------------------------------------------

local cache = read_file(BUILD .. "/CMakeCache.txt") or ""
local SANITIZE = cache:find("LUNET_SANITIZE:BOOL=ON", 1, true) ~= nil
local HAS_MPI = capture(shell_quote(LUNET) .. " -e 'io.write(tostring(lunet.dist.available))'") == "true"
local MPIRUN = HAS_MPI and trim_lines(capture("command -v mpirun mpiexec 2>/dev/null | head -n 1")) or ""

-- ---- reading the examples --------------------------------------------------------------------

-- examples(text) -> list of {lang, flags = {set}, code = {lines}, line,
-- output = {lines} | nil, output_line}, or nil and an error.
local function examples(text)
	local blocks, cur = {}, nil
	local last_end = nil    -- the line after the last closed block
	local lines = {}
	for line in (text:gsub("\r\n", "\n") .. "\n"):gmatch("([^\n]*)\n") do lines[#lines + 1] = line end
	for i, line in ipairs(lines) do
		if cur then
			if line:match("^%s*(`+)%s*$") and #line:match("`+") >= #cur.marks then
				blocks[#blocks + 1] = cur
				cur.last = i
				cur = nil
			else
				cur.code[#cur.code + 1] = line
			end
		else
			local marks, info = line:match("^%s?%s?%s?(```+)%s*(.-)%s*$")
			if marks then
				local words = {}
				for w in info:gmatch("%S+") do words[#words + 1] = w end
				local flags = {}
				for j = 2, #words do flags[words[j]] = true end
				cur = {lang = words[1] or "", flags = flags, code = {}, line = i, marks = marks}
			end
		end
	end
	if cur then return nil, string.format("line %d: code block never closed", cur.line) end
	-- attach output blocks to the example before them
	local out = {}
	for _, b in ipairs(blocks) do
		if b.lang == "output" then
			local prev = out[#out]
			local gap_blank = prev ~= nil
			if prev then
				for j = prev.last + 1, b.line - 1 do
					if lines[j]:match("%S") then gap_blank = false end
				end
			end
			if not gap_blank or prev.output then
				return nil, string.format("line %d: an output block must follow an example directly", b.line)
			end
			prev.output, prev.output_line = b.code, b.line
		else
			out[#out + 1] = b
		end
	end
	return out
end

-- ---- lua examples: the --> checks ---------------------------------------------------------

local PRELUDE = [[
local function shown(v)
	if type(v) == "table" then return lunet.show(v) end
	if math.type(v) == "float" and v == math.floor(v) and math.abs(v) < 1e15 then
		return string.format("%.0f", v)
	end
	return tostring(v)
end
function __doc_check(line, want, f)
	local res = table.pack(pcall(f))
	local got
	if not res[1] then
		local msg = tostring(res[2])
		local needle = want:match("^error:%s*(.*)$")
		if needle and msg:find(needle, 1, true) then return end
		got = "error: " .. msg
	else
		if want:match("^error:") then
			got = "no error"
		else
			local parts = {}
			for i = 2, res.n do parts[#parts + 1] = shown(res[i]) end
			got = table.concat(parts, ", ")
			if got == want then return end
		end
	end
	io.stdout:flush()
	-- an error object prints without a traceback
	local msg = string.format("line %d: --> expected %s\n  got %s", line, want, got)
	error(setmetatable({}, {__tostring = function() return msg end}), 0)
end
]]

-- The lua example with each `CODE --> TEXT` line made a check that names
-- its line in the page (the example starts after line `first`); nil and
-- an error when CODE is not an expression.
local function transform_lua(code, first)
	local out = {}
	for i, line in ipairs(code) do
		local body, want = nil, nil
		if not line:match("^%s*%-%-") then
			body, want = line:match("^(.-%S)%s+%-%->%s*(.-)%s*$")
		end
		if body then
			local indent = body:match("^%s*")
			local expr = body:sub(#indent + 1)
			local body = "return " .. expr
			if not load(body, "=check") then
				-- a statement may only be checked for an error
				if not (want:match("^error:") and load(expr, "=check")) then
					return nil, string.format("line %d: '%s' before --> is not an expression",
						first + i, expr)
				end
				body = expr
			end
			out[i] = string.format("%s__doc_check(%d, %q, function() %s end)", indent,
				first + i, want, body)
		else
			out[i] = line
		end
	end
	return table.concat(out, "\n") .. "\n"
end

-- ---- running --------------------------------------------------------------------------------

local C_FLAGS = capture("pkg-config --cflags lua5.4"):gsub("%s+$", "")
local C_LIBS = capture("pkg-config --libs lua5.4"):gsub("%s+$", "")

-- Runs example b (number n) in dir; returns ok, what went wrong.
local function run(b, n, dir)
	local base = string.format("%s/example%d", dir, n)
	local cd = "cd " .. shell_quote(dir) .. " && "
	local redirect = string.format(" >%s.out 2>%s.err", shell_quote(base), shell_quote(base))
	local cmd
	if b.lang == "lua" then
		local code, err = transform_lua(b.code, b.line)
		if not code then return false, err end
		write_file(base .. ".lua", code)
		write_file(dir .. "/.doc_prelude.lua", PRELUDE)
		local runner = shell_quote(LUNET)
		if b.flags.mpi then
			runner = shell_quote(MPIRUN) .. " --oversubscribe -np 2 " .. runner
		end
		cmd = cd .. TIMEOUT .. runner .. " -e 'dofile(\".doc_prelude.lua\")' " ..
			shell_quote(base .. ".lua") .. " </dev/null" .. redirect
	elseif b.lang == "sh" then
		write_file(base .. ".sh", table.concat(b.code, "\n") .. "\n")
		cmd = cd .. "PATH=" .. shell_quote(BUILD) .. ":\"$PATH\" " .. TIMEOUT .. "bash -e " ..
			shell_quote(base .. ".sh") .. " </dev/null" .. redirect
	elseif b.lang == "c" then
		local code = table.concat(b.code, "\n") .. "\n"
		if not code:find("main%s*%(") then
			-- declarations: they must agree with the header's
			write_file(base .. ".c", "#include <lunet.h>\n" .. code)
			local check = string.format("cc -fsyntax-only -Wall -I%s %s %s", shell_quote(SRC .. "/src"),
				C_FLAGS, shell_quote(base .. ".c"))
			if not sh(cd .. check .. redirect) then
				return false, "does not agree with lunet.h:\n" .. (read_file(base .. ".err") or "")
			end
			return true
		end
		write_file(base .. ".c", code)
		local san = SANITIZE and "-fsanitize=address,undefined -fno-omit-frame-pointer " or ""
		local compile = string.format("cc %s-Wall -I%s %s %s -o %s -L%s -Wl,-rpath,%s -llunet %s -lm",
			san, shell_quote(SRC .. "/src"), C_FLAGS, shell_quote(base .. ".c"), shell_quote(base),
			shell_quote(BUILD), shell_quote(BUILD), C_LIBS)
		if not sh(cd .. compile .. redirect) then
			return false, "does not compile:\n" .. (read_file(base .. ".err") or "")
		end
		cmd = cd .. TIMEOUT .. shell_quote(base) .. " </dev/null" .. redirect
	elseif b.lang == "repl" then
		local input, want = {}, {}
		for _, line in ipairs(b.code) do
			local code = line:match("^>>? (.*)$") or line:match("^>>?$") and ""
			if code then input[#input + 1] = code else want[#want + 1] = line end
		end
		write_file(base .. ".in", table.concat(input, "\n") .. "\n")
		cmd = cd .. TIMEOUT .. shell_quote(LUNET) .. " <" .. shell_quote(base .. ".in") ..
			" >" .. shell_quote(base .. ".out") .. " 2>&1"
		b.output = want
	end
	local ok = sh(cmd)
	local out = read_file(base .. ".out") or ""
	local err = read_file(base .. ".err") or ""
	local function details()
		local s = ""
		if out ~= "" then s = s .. "\n  --- stdout:\n" .. out:gsub("\n?$", "") end
		if err ~= "" then s = s .. "\n  --- stderr:\n" .. err:gsub("\n?$", "") end
		return s
	end
	if SANITIZE and (err:find("Sanitizer", 1, true) or err:find("runtime error:", 1, true)) then
		return false, "sanitizer report" .. details()
	end
	if not ok then return false, "failed" .. details() end
	if b.output then
		local want, got = trim_lines(table.concat(b.output, "\n")), trim_lines(out)
		if want ~= got then
			return false, string.format("output differs (line %s)\n  --- expected:\n%s%s",
				b.output_line or b.line, want, details())
		end
	end
	return true
end

-- ---- the pages --------------------------------------------------------------------------------

local RUN = {lua = true, sh = true, c = true, repl = true}
local failures, total, skipped = 0, 0, {}
for i = 3, #arg do
	local path = arg[i]
	local name = path:match("([^/]+)$")
	local text = read_file(path)
	if not text then
		print("FAIL " .. path .. ": cannot read it")
		failures = failures + 1
		goto next_page
	end
	do
		local blocks, err = examples(text)
		if not blocks then
			print(string.format("FAIL %s:%s", name, err))
			failures = failures + 1
			goto next_page
		end
		local dir = trim_lines(capture("mktemp -d"))
		local n = 0
		for _, b in ipairs(blocks) do
			if RUN[b.lang] then
				n = n + 1
				local where = string.format("%s:%d (%s)", name, b.line, b.lang)
				if b.flags.norun then
					skipped[#skipped + 1] = where .. " norun"
				elseif b.flags.mpi and not HAS_MPI then
					skipped[#skipped + 1] = where .. " mpi (this build has no MPI)"
				else
					total = total + 1
					local ok, why = run(b, n, dir)
					if ok then
						print("ok   " .. where)
					else
						failures = failures + 1
						print("FAIL " .. where .. ": " .. why)
					end
				end
			end
		end
		sh("rm -rf " .. shell_quote(dir))
	end
	::next_page::
end
for _, s in ipairs(skipped) do print("skip " .. s) end
print(string.format("%d examples run, %d failed, %d not run", total, failures, #skipped))
os.exit(failures == 0 and 0 or 1)
