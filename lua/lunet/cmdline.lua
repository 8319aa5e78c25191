-- cmdline.lua -- the configuration of an experiment and its command line:
-- the table of defaults and what goes with it (a help line and the values
-- allowed per key), --key=value overrides converted to the type of each
-- default, the --help text, and the text of a run's config.lua.  A helper
-- of experiment.lua (`local cmdline = import("cmdline")`); it adds nothing
-- to the lunet table.
--
-- A mistake on the command line (an unknown key, a value of the wrong
-- type or outside its choices) is raised as an error object: a table whose
-- tostring is one line, "lunet.experiment: <what> (known: <keys>)", with
-- the line in its field `message`.  The lunet runner (like lua.c) prints
-- such an object as that line alone, without a traceback, since the fault
-- is in the command, not in any code.
local M = {}

local FN = "lunet.experiment"
local RESERVED = {help = true, resume = true}

-- ---- values as text -----------------------------------------------------------------

function M.sorted_keys(t)
	local keys = {}
	for k in pairs(t) do keys[#keys + 1] = k end
	table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
	return keys
end

-- A value as shown to a person (help text, summaries, progress), with
-- `digits` significant digits for floats.
function M.show(v, digits)
	if math.type(v) == "float" then
		if v ~= v then return "nan" end
		return string.format("%." .. (digits or 6) .. "g", v)
	end
	if type(v) == "string" then return v == "" and '""' or v end
	return tostring(v)
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

-- cmdline.shell_quote(s): s quoted for a POSIX shell when it needs it.
local function shell_quote(s)
	if s ~= "" and not s:find("[^%w%./_%-=:,+@%%]") then return s end
	return "'" .. s:gsub("'", "'\\''") .. "'"
end
M.shell_quote = shell_quote

-- The command line that started the script, as one shell line: the
-- interpreter and script too when args is the global `arg`.
function M.command_line(args)
	local words = {}
	if args == rawget(_G, "arg") and type(args) == "table" then
		local lo = 0
		while args[lo - 1] ~= nil do lo = lo - 1 end
		for i = lo, 0 do words[#words + 1] = shell_quote(tostring(args[i])) end
	end
	for _, a in ipairs(args or {}) do words[#words + 1] = shell_quote(tostring(a)) end
	return table.concat(words, " ")
end

-- The script's name without directory and .lua, from arg[0] (nil if none).
function M.script_name()
	local a = rawget(_G, "arg")
	local s = type(a) == "table" and a[0]
	if type(s) ~= "string" then return nil end
	s = s:match("([^/]+)$") or s
	s = s:gsub("%.lua$", "")
	if s == "" or s:find("[^%w_%.%-]") then return nil end
	return s
end

-- ---- errors that are one line -------------------------------------------------------

local Message = {__name = "lunet.experiment.Error"}
Message.__index = Message
function Message.__tostring(e) return e.message end

-- cmdline.raise(message[, fields]): raises an error object that prints as
-- message alone (no position, no traceback); fields (a table, taken over)
-- add what a caller catching it may want to read.
function M.raise(message, fields)
	local e = fields or {}
	e.message = message
	error(setmetatable(e, Message), 0)
end

-- ---- the specification: defaults, help lines, choices -------------------------------

local function type_name(v)
	if math.type(v) == "integer" then return "integer" end
	if type(v) == "number" then return "number" end
	return type(v)
end

local function quoted(k)
	return type(k) == "string" and string.format("%q", k) or tostring(k)
end

-- cmdline.spec{config=, help=, one_of=, at_least=, description=, script=}
-- -> spec, or nil and what is wrong.  config is the table of defaults
-- (identifier keys; numbers, booleans and strings); help maps keys of
-- config to one line each; one_of maps keys of config to the list of
-- values allowed (each of the default's type; the default among them);
-- at_least maps numeric keys of config to their smallest allowed value
-- (the default not below it).  The tables are copied.
function M.spec(o)
	local config = o.config or {}
	if type(config) ~= "table" then
		return nil, string.format("config must be a table, got %s", type(config))
	end
	local defaults = {}
	for k, v in pairs(config) do
		if type(k) ~= "string" or not k:find("^[%a_][%w_]*$") then
			return nil, string.format("config keys must be identifiers, got %s", quoted(k))
		end
		if RESERVED[k] then
			return nil, string.format("config key '%s' is reserved (--%s is an option of every experiment)",
				k, k)
		end
		local t = type(v)
		if t ~= "number" and t ~= "boolean" and t ~= "string" then
			return nil, string.format("config.%s must be a number, boolean or string, got %s", k, t)
		end
		defaults[k] = v
	end
	local known = table.concat(M.sorted_keys(defaults), ", ")
	local help = {}
	for k, v in pairs(o.help or {}) do
		if defaults[k] == nil then
			return nil, string.format("help.%s: no such key in config (known: %s)", tostring(k), known)
		end
		if type(v) ~= "string" or v:find("[\r\n]") then
			return nil, string.format("help.%s must be a string of one line, got %s", k,
				type(v) == "string" and string.format("%q", v) or type(v))
		end
		help[k] = v
	end
	local choices = {}
	for k, list in pairs(o.one_of or {}) do
		local default = defaults[k]
		if default == nil then
			return nil, string.format("one_of.%s: no such key in config (known: %s)", tostring(k), known)
		end
		if type(list) ~= "table" or #list == 0 then
			return nil, string.format("one_of.%s must be a non-empty list, got %s", k, type(list))
		end
		local copy, found = {}, false
		for i, v in ipairs(list) do
			if type_name(v) ~= type_name(default) then
				return nil, string.format("one_of.%s[%d] must be of the default's type (%s), got %s",
					k, i, type_name(default), type_name(v))
			end
			if v == default then found = true end
			copy[i] = v
		end
		if not found then
			return nil, string.format("one_of.%s does not hold the default %s", k, M.show(default))
		end
		choices[k] = copy
	end
	local bounds = {}
	for k, bound in pairs(o.at_least or {}) do
		local default = defaults[k]
		if default == nil then
			return nil, string.format("at_least.%s: no such key in config (known: %s)", tostring(k), known)
		end
		if type(default) ~= "number" or type(bound) ~= "number" or bound ~= bound then
			return nil, string.format("at_least.%s: needs a numeric key and a number, got a %s key and %s",
				k, type_name(default), type_name(bound))
		end
		if default < bound then
			return nil, string.format("at_least.%s is %s, above the default %s", k, M.show(bound),
				M.show(default))
		end
		bounds[k] = bound
	end
	return {defaults = defaults, help = help, choices = choices, bounds = bounds, known = known,
		description = o.description, script = o.script}
end

-- ---- parsing ---------------------------------------------------------------------------

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

local function allowed(list, v)
	for _, c in ipairs(list) do
		if c == v then return true end
	end
	return false
end

local function choice_list(list)
	local words = {}
	for i, v in ipairs(list) do words[i] = M.show(v) end
	return table.concat(words, "|")
end

-- cmdline.help_text(spec) -> the text --help prints: usage, description,
-- and one line per option: --key=default, its type (or its choices), its
-- help line.
function M.help_text(spec)
	local lines = {string.format("usage: lunet %s [--key=value ...]", spec.script or "script.lua")}
	if spec.description then lines[#lines + 1] = spec.description end
	lines[#lines + 1] = "options (defaults):"
	local items = {}
	for _, k in ipairs(M.sorted_keys(spec.defaults)) do
		local d = spec.defaults[k]
		local kind = spec.choices[k] and choice_list(spec.choices[k]) or type_name(d)
		if spec.bounds[k] then kind = kind .. " >= " .. M.show(spec.bounds[k]) end
		items[#items + 1] = {string.format("--%s=%s", k, M.show(d)), kind, spec.help[k] or ""}
	end
	items[#items + 1] = {"--resume=DIR", "", "continue the run in DIR from its checkpoint"}
	items[#items + 1] = {"--help", "", "show this text"}
	local w1, w2 = 0, 0
	for _, it in ipairs(items) do w1, w2 = math.max(w1, #it[1]), math.max(w2, #it[2]) end
	-- padded by hand: string.format's %-Ns refuses strings holding a NUL byte
	local function pad(s, w) return s .. string.rep(" ", w - #s) end
	for _, it in ipairs(items) do
		local line = "  " .. pad(it[1], w1) .. "  " .. pad(it[2], w2) .. "  " .. it[3]
		lines[#lines + 1] = (line:gsub("%s+$", ""))
	end
	return table.concat(lines, "\n") .. "\n"
end

-- cmdline.parse(spec, args, out) -> overrides, resume.  args is a list of
-- strings; overrides maps keys to values of their default's type; resume
-- is the directory of --resume=DIR or nil.  --help (or -h) writes the help
-- text to out and exits the process with status 0.  A mistake is raised
-- as a one-line error object (see the top).
function M.parse(spec, args, out)
	local overrides, resume = {}, nil
	local defaults = spec.defaults
	local function fail(fmt, ...)
		M.raise(string.format("%s: %s (known: %s)", FN, string.format(fmt, ...), spec.known))
	end
	for _, a in ipairs(args) do
		if type(a) ~= "string" then
			M.raise(string.format("%s: arguments must be strings, got %s", FN, type(a)))
		end
		if a == "--help" or a == "-h" then
			out:write(M.help_text(spec))
			out:flush()
			os.exit(0)
		end
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
					fail("option --%s needs a value: --%s=%s", k, k, M.show(default))
				end
				v = "true"
			end
			local value, expected = convert(v, default)
			if value == nil then
				fail("bad value --%s=%s: expected %s", k, v, expected)
			end
			local list = spec.choices[k]
			if list and not allowed(list, value) then
				fail("bad value --%s=%s: expected one of %s", k, v, choice_list(list))
			end
			local bound = spec.bounds[k]
			if bound and not (value >= bound) then
				fail("bad value --%s=%s: expected %s >= %s", k, v, type_name(default), M.show(bound))
			end
			overrides[k] = value
		end
	end
	return overrides, resume
end

-- cmdline.saved_value(spec, k, v) -> v as the script's default for k would
-- have it (a float for a float default), or nil when the script no longer
-- has k, or v is of another type or not among k's choices.  For the values
-- a resumed run finds in its checkpoint.
function M.saved_value(spec, k, v)
	local default = spec.defaults[k]
	if default == nil or type(v) ~= type(default) then return nil end
	if math.type(default) == "float" then v = v + 0.0 end
	local list = spec.choices[k]
	if list and not allowed(list, v) then return nil end
	return v
end

-- A config table that raises on reading a key it does not have, so that a
-- typo in a script (cfg.lrr) does not pass silently as nil.
function M.strict(values)
	return setmetatable(values, {
		__index = function(t, k)
			error(string.format("%s: config has no key '%s' (known: %s)", FN, tostring(k),
				table.concat(M.sorted_keys(t), ", ")), 2)
		end,
	})
end

-- ---- config.lua ------------------------------------------------------------------------

-- Lua's reserved words: valid config keys, but not names in a constructor.
local KEYWORDS = {}
for w in ([[and break do else elseif end false for function goto if in local nil not or
	repeat return then true until while]]):gmatch("%a+") do KEYWORDS[w] = true end

-- A key as written in a table constructor: `lr`, or `["end"]`.
local function table_key(k)
	if KEYWORDS[k] then return string.format("[%q]", k) end
	return k
end

-- The config as the text of config.lua: the header lines as comments, then
-- `return {...}` with the keys sorted.
function M.config_text(config, header)
	local lines = {}
	for _, h in ipairs(header) do lines[#lines + 1] = "-- " .. h end
	lines[#lines + 1] = "return {"
	for _, k in ipairs(M.sorted_keys(config)) do
		lines[#lines + 1] = string.format("\t%s = %s,", table_key(k), literal(rawget(config, k)))
	end
	lines[#lines + 1] = "}"
	return table.concat(lines, "\n") .. "\n"
end

-- Reads a quoted string in the form string.format("%q") writes, starting
-- at the quote at position i of s.  Returns the string and the position
-- after the closing quote, or nil.
local ESCAPES = {a = "\a", b = "\b", f = "\f", n = "\n", r = "\r", t = "\t", v = "\v",
	["\\"] = "\\", ['"'] = '"', ["'"] = "'", ["\n"] = "\n"}
local function read_quoted(s, i)
	local parts = {}
	i = i + 1
	while true do
		local j = s:find('[\\"]', i)
		if not j then return nil end
		parts[#parts + 1] = s:sub(i, j - 1)
		if s:sub(j, j) == '"' then return table.concat(parts), j + 1 end
		local c = s:sub(j + 1, j + 1)
		local digits = s:match("^%d%d?%d?", j + 1)
		if digits then
			local code = tonumber(digits)
			if code > 255 then return nil end
			parts[#parts + 1] = string.char(code)
			i = j + 1 + #digits
		elseif ESCAPES[c] then
			parts[#parts + 1] = ESCAPES[c]
			i = j + 2
		else
			return nil
		end
	end
end

local SPECIAL_NUMBERS = {["0/0"] = 0 / 0, ["1/0"] = math.huge, ["-1/0"] = -math.huge}

-- cmdline.read_config(text) -> the table of a config.lua that config_text
-- wrote (leading comments, then `return {key = literal, ...}`), or nil and
-- what is wrong.  It reads the literals itself: nothing in the file is run,
-- so a config.lua (or a run's status.lua) from anywhere is safe to list.
function M.read_config(text)
	local i = 1
	while text:find("^%-%-[^\n]*\n", i) do i = text:find("\n", i) + 1 end
	local open = text:match("^return%s*{()", i)
	if not open then return nil, "expected `return {` after the comments" end
	local t, pos = {}, open
	while true do
		pos = text:match("^%s*()", pos)
		if text:find("^}%s*$", pos) then return t end
		local key, after = text:match("^([%a_][%w_]*)%s*=%s*()", pos)
		if not key then return nil, string.format("expected `key = value` at byte %d", pos) end
		local v, next_pos
		if text:sub(after, after) == '"' then
			v, next_pos = read_quoted(text, after)
			if v == nil then return nil, string.format("bad string for %s", key) end
		else
			local word = text:match("^[^,%s}]+", after)
			if word == "true" or word == "false" then
				v = word == "true"
			elseif word and SPECIAL_NUMBERS[word] then
				v = SPECIAL_NUMBERS[word]
			elseif word and word:find("^%-?[%d%.]") then
				v = tonumber(word)
			end
			if v == nil then return nil, string.format("bad value for %s: %s", key, tostring(word)) end
			next_pos = after + #word
		end
		t[key] = v
		pos = text:match("^%s*,?()", next_pos)
	end
end

-- cmdline.read_config_file(path) -> the table, or nil and "path: what is wrong".
function M.read_config_file(path)
	local f, err = io.open(path, "rb")
	if not f then return nil, err end
	local text = f:read("a")
	f:close()
	local t, why = M.read_config(text)
	if not t then return nil, path .. ": " .. why end
	return t
end

-- The leading comment lines of an existing config.lua, without "-- ".
function M.config_header(path)
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

return M
