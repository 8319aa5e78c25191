-- help.lua -- lunet.help(x): the entry of the manual (docs/*.md, compiled
-- into the library by cmake/embed_lua.cmake) for a function, a module, a
-- class of objects or a name; the REPL's help().  Called with the lunet
-- table.
--
--   lunet.help(nn.Linear)        the entry of nn.Linear
--   lunet.help("optim.SGD")      the same by name ("SGD" too, if unique)
--   lunet.help(t.reshape)        a method, through its function
--   lunet.help(model)            an object: its class's entry (nn.Sequential)
--   lunet.help("tensors")        a page: its sections and entries
--   lunet.help()                 the list of pages
--
-- The manual's conventions (docs/README.md says them for its writers):
-- a page opens with a level-1 title; level-2 headings are sections; a
-- level-3 heading starts an entry, which runs to the next heading of level
-- 3 or less.  The names an entry documents are the code spans of its
-- heading that begin with a name: `nn.Linear(nin, nout[, opts])` names
-- nn.Linear, `Tensor:reshape(...)` names Tensor:reshape.  A name counts
-- when it is qualified (has a '.' or ':'), or has a '_' and is followed
-- by '(' (the C API's lunet_model_load(...)); `tostring(t)` or `m(x)`
-- name nothing.  The namespaces nn, optim, data, dist and
-- sys are written without "lunet." (as scripts write them), methods as
-- Class:method, with the classes of CLASSES below.
--
-- lunet._manual (internal) gives the same index to the tests:
-- pages(), entries(), find(query), public_names() -- every public name of
-- the lunet table, which test_manual.lua checks against the manual.
local lunet = ...

local M = {}

-- Namespaces written without "lunet." in the manual.
local SHORT = {nn = true, optim = true, data = true, dist = true, sys = true}

-- ---- the public names --------------------------------------------------------------------

-- The table of methods a C binding keeps as a table upvalue of its
-- metatable's __index (as the REPL's completion finds them), or the
-- __index table itself.
local function methods_of_metatable(mt)
	if type(mt) ~= "table" then return nil end
	local index = rawget(mt, "__index")
	if type(index) == "table" then return index end
	if type(index) ~= "function" or not debug then return nil end
	for i = 1, 8 do
		local name, v = debug.getupvalue(index, i)
		if name == nil then break end
		if type(v) == "table" then return v end
	end
	return nil
end

local function registry_methods(name)
	if not debug then return nil end
	return methods_of_metatable(debug.getregistry()[name])
end

-- The upvalue called `name` of the Lua function f.
local function upvalue(f, name)
	if type(f) ~= "function" or not debug then return nil end
	for i = 1, 255 do
		local n, v = debug.getupvalue(f, i)
		if n == nil then return nil end
		if n == name then return v end
	end
end

-- The classes of objects whose methods the manual documents as
-- Class:method, and where their method tables are.  A new kind of object
-- with methods of its own is added here (and its methods to the manual).
local CLASSES = {
	{"Tensor", function() return rawget(lunet, "Tensor") end},
	{"Module", function() return lunet.nn and lunet.nn._module_methods end},
	{"Loss", function() return lunet.nn and lunet.nn._loss_methods end},
	{"Optimizer", function() return registry_methods("lunet.optim.SGD") end},
	{"Experiment", function() return upvalue(lunet.experiment, "Experiment") end},
	{"Request", function() return registry_methods("lunet.dist.Request") end},
}
M.CLASSES = CLASSES

-- The method table of each class, by name ({} for one not found; the
-- tests check that none is missing).
function M.classes()
	local out = {}
	for _, c in ipairs(CLASSES) do
		out[c[1]] = c[2]() or {}
	end
	return out
end

local function sorted_keys(t)
	local keys = {}
	for k in pairs(t) do
		if type(k) == "string" then keys[#keys + 1] = k end
	end
	table.sort(keys)
	return keys
end

-- public_names() -> list of {name =, value =}, sorted by name: every value
-- in the lunet table and its sub-tables (nn.init, optim.schedules...) and
-- every method of CLASSES, except names that begin with '_' (internal)
-- and metamethods.  Sub-tables themselves are not listed (they are
-- namespaces, not entries).
function M.public_names()
	local out, seen = {}, {}
	local function walk(prefix, t)
		seen[t] = true
		for _, k in ipairs(sorted_keys(t)) do
			local v = t[k]
			if not k:find("^_") and not (t == lunet and k == "Tensor") then
				if type(v) == "table" and getmetatable(v) == nil then
					if not seen[v] then
						local p = (t == lunet and SHORT[k]) and k .. "." or prefix .. k .. "."
						walk(p, v)
					end
				else
					out[#out + 1] = {name = prefix .. k, value = v}
				end
			end
		end
	end
	walk("lunet.", lunet)
	local classes = M.classes()
	for _, c in ipairs(CLASSES) do
		local methods = classes[c[1]]
		for _, k in ipairs(sorted_keys(methods)) do
			if not k:find("^_") and type(methods[k]) == "function" then
				out[#out + 1] = {name = c[1] .. ":" .. k, value = methods[k]}
			end
		end
	end
	table.sort(out, function(a, b) return a.name < b.name end)
	return out
end

-- ---- the pages ----------------------------------------------------------------------------

-- A name as the manual writes it: lunet.nn.Linear -> nn.Linear.
local function normalize(name)
	local ns, rest = name:match("^lunet%.([%a_][%w_]*)%.(.+)$")
	if ns and SHORT[ns] then return ns .. "." .. rest end
	local m = name:match("^lunet%.Tensor[.:]([%a_][%w_]*)$")
	if m then return "Tensor:" .. m end
	return name
end

-- The key names are compared by: normalized, ':' as '.'.
local function canon(name)
	return (normalize(name):gsub(":", "."))
end

-- The names a heading documents (see the top).
local function heading_names(heading)
	local names, seen = {}, {}
	for span in heading:gmatch("`([^`]+)`") do
		local name = span:match("^[%a_][%w_]*")
		if name then
			local rest = span:sub(#name + 1)
			while true do
				local part = rest:match("^[.:][%a_][%w_]*")
				if not part then break end
				name, rest = name .. part, rest:sub(#part + 1)
			end
			name = normalize(name)
			if (name:find("[.:]") or (name:find("_") and rest:find("^%("))) and not seen[name] then
				names[#names + 1] = name
				seen[name] = true
			end
		end
	end
	return names
end
M.heading_names = heading_names

local function lines_of(text)
	local lines = {}
	for line in (text:gsub("\r\n", "\n") .. "\n"):gmatch("([^\n]*)\n") do
		lines[#lines + 1] = line
	end
	return lines
end

-- parse(name, text) -> page: {name, title, intro = {lines}, sections =
-- {{title, entries = {...}}}, entries = {entry...}} where an entry is
-- {page, section, heading, names, lines, line (of its heading)}.
local function parse(name, text)
	local page = {name = name, title = name, intro = {}, sections = {}, entries = {}}
	local fence            -- the opening fence while inside a code block
	local cur              -- the entry being read
	local section = {title = "", entries = {}}
	local in_intro = true
	page.sections[1] = section
	for i, line in ipairs(lines_of(text)) do
		local level, title
		if fence then
			if line:match("^%s*(`+)%s*$") and #line:match("`+") >= #fence then fence = nil end
		else
			local f = line:match("^%s?%s?%s?(```+)")
			if f then
				fence = f
			else
				local hashes, t = line:match("^(#+)%s+(.-)%s*$")
				if hashes then level, title = #hashes, t end
			end
		end
		if level == 1 then
			page.title = title
		elseif level == 2 or level == 3 then
			in_intro = false
			cur = nil
			if level == 2 then
				section = {title = title, entries = {}}
				page.sections[#page.sections + 1] = section
			else
				cur = {page = page, section = section.title, heading = title,
				       names = heading_names(title), lines = {line}, line = i}
				section.entries[#section.entries + 1] = cur
				page.entries[#page.entries + 1] = cur
			end
		elseif cur then
			cur.lines[#cur.lines + 1] = line
		elseif in_intro and level == nil then
			page.intro[#page.intro + 1] = line
		end
	end
	if #page.sections[1].entries == 0 then table.remove(page.sections, 1) end
	return page
end

local cache  -- {pages = {...}, by_name = {name -> page}, index = {canon key -> entry}}

local function manual()
	if cache then return cache end
	local pages, by_name, index = {}, {}, {}
	for _, d in ipairs(lunet._docs()) do
		local page = parse(d.name, d.text)
		pages[#pages + 1] = page
		by_name[page.name] = page
		for _, e in ipairs(page.entries) do
			for _, n in ipairs(e.names) do
				local k = canon(n)
				if index[k] == nil then index[k] = e end
			end
		end
	end
	cache = {pages = pages, by_name = by_name, index = index}
	return cache
end

-- pages() -> the parsed pages, in order of name.
function M.pages() return manual().pages end

-- entries() -> {name -> entry}: every name the manual documents (as
-- written in the headings, normalized).
function M.entries()
	local out = {}
	for _, page in ipairs(manual().pages) do
		for _, e in ipairs(page.entries) do
			for _, n in ipairs(e.names) do
				if out[n] == nil then out[n] = e end
			end
		end
	end
	return out
end

-- ---- finding an entry ------------------------------------------------------------------------

local function trim(s)
	return (s:gsub("^%s+", ""):gsub("%s+$", ""))
end

-- find(query) -> kind, value: "entry", entry | "page", page | "prefix",
-- {names} (a namespace: the names under it) | "many", {names} (an
-- ambiguous short name) | nil, {suggestions}.
function M.find(query)
	local man = manual()
	local q = trim(query):gsub("%(.*$", "")
	if q == "" then return nil, {} end
	local k = canon(q)
	if man.index[k] then return "entry", man.index[k] end
	if man.by_name[q] then return "page", man.by_name[q] end
	local lk = k:lower()
	local exact_ci, suffix, prefix, similar = {}, {}, {}, {}
	local names = sorted_keys(M.entries())
	for _, n in ipairs(names) do
		local c = canon(n)
		local lc = c:lower()
		if lc == lk then exact_ci[#exact_ci + 1] = n end
		if lc:sub(-#lk - 1) == "." .. lk then suffix[#suffix + 1] = n end
		if lc:sub(1, #lk + 1) == lk .. "." then prefix[#prefix + 1] = n end
		if lc:find(lk, 1, true) then similar[#similar + 1] = n end
	end
	for _, page in ipairs(man.pages) do
		if page.name:lower() == q:lower() then return "page", page end
	end
	if #exact_ci == 1 then return "entry", man.index[canon(exact_ci[1])] end
	if #suffix == 1 then return "entry", man.index[canon(suffix[1])] end
	if #suffix > 1 then return "many", suffix end
	if #prefix > 0 then return "prefix", prefix end
	return nil, similar
end

-- The name of v in the public API, by identity (functions and tables).
local reverse
local function name_of(v)
	if reverse == nil then
		reverse = {}
		local documented = M.entries()
		for _, p in ipairs(M.public_names()) do
			local t = type(p.value)
			if t == "function" or t == "table" then
				-- a function under several names (an alias) keeps a documented one
				if reverse[p.value] == nil or documented[p.name] then reverse[p.value] = p.name end
			end
		end
		reverse[lunet] = "lunet"
		for k, v in pairs(lunet) do
			if type(v) == "table" and SHORT[k] then reverse[v] = k end
		end
		if rawget(lunet, "Tensor") then reverse[lunet.Tensor] = "tensors" end
		if lunet.nn and lunet.nn.init then reverse[lunet.nn.init] = "nn.init" end
		if lunet.optim and lunet.optim.schedules then reverse[lunet.optim.schedules] = "optim.schedules" end
	end
	return reverse[v]
end

-- The query for an object: the entry of its class.
local function object_query(v)
	if lunet.is_tensor(v) then return "tensors" end
	local nn = lunet.nn
	if nn and nn.is_module(v) then return "nn." .. v.name end
	local mt = getmetatable(v)
	local cls = type(mt) == "table" and rawget(mt, "__name")
	if type(cls) == "string" then
		if cls == "lunet.Experiment" then return "lunet.experiment" end
		local short = cls:match("^lunet%.(.+)$")
		if short then
			local ns, rest = short:match("^(%a+)%.(.+)$")
			if ns == "nn" or ns == "optim" then return ns .. "." .. rest end
			if ns == "dist" then return rest end
			return short
		end
	end
	return nil
end

-- ---- printing ------------------------------------------------------------------------------

-- Markdown as read on a terminal: no '#' or backticks, links as their
-- text, code blocks indented (an output block under an "output:" line).
local function render(lines)
	local out, fence = {}, nil
	for _, line in ipairs(lines) do
		if fence then
			if line:match("^%s*(`+)%s*$") and #line:match("`+") >= #fence.marks then
				fence = nil
			else
				out[#out + 1] = (fence.output and "      " or "    ") .. line
			end
		else
			local marks, info = line:match("^%s?%s?%s?(```+)%s*(.-)%s*$")
			if marks then
				local lang = info:match("^(%S+)") or ""
				fence = {marks = marks, output = lang == "output"}
				if fence.output then out[#out + 1] = "    output:" end
			else
				local hashes, title = line:match("^(#+)%s+(.-)%s*$")
				if hashes then line = title end
				line = line:gsub("%[([^%]]+)%]%([^%)]+%)", "%1"):gsub("`", "")
				out[#out + 1] = line
			end
		end
	end
	while out[#out] == "" do out[#out] = nil end
	return table.concat(out, "\n")
end

local function entry_text(e)
	local where = e.page.name .. ".md"
	if e.section ~= "" then where = where .. ", " .. e.section:gsub("`", "") end
	return render(e.lines) .. "\n\n(manual: docs/" .. where .. ")\n"
end

local function page_text(page)
	local out = {render({"# " .. page.title}), ""}
	local intro = render(page.intro)
	intro = intro:gsub("^\n+", "")
	if intro ~= "" then out[#out + 1] = intro .. "\n" end
	for _, s in ipairs(page.sections) do
		if #s.entries > 0 then
			out[#out + 1] = s.title ~= "" and render({s.title}) .. ":" or "Entries:"
			for _, e in ipairs(s.entries) do
				out[#out + 1] = "  " .. render({e.heading})
			end
			out[#out + 1] = ""
		end
	end
	out[#out + 1] = string.format('(manual: docs/%s.md; help("name") prints an entry)', page.name)
	return table.concat(out, "\n") .. "\n"
end

local function index_text()
	local out = {"The lunet manual.  help(x) prints the entry of a function, module or object,",
		'or of a name: help(nn.Linear), help(t.reshape), help("optim.SGD").',
		'help("page") lists a page\'s entries.  The pages:', ""}
	local w = 0
	for _, p in ipairs(manual().pages) do w = math.max(w, #p.name) end
	for _, p in ipairs(manual().pages) do
		out[#out + 1] = string.format("  %-" .. w .. "s  %s", p.name, render({p.title}))
	end
	return table.concat(out, "\n") .. "\n"
end

local function list_text(head, names)
	local out = {head}
	for i, n in ipairs(names) do
		if i > 20 then
			out[#out + 1] = string.format("  ... (%d more)", #names - 20)
			break
		end
		out[#out + 1] = "  " .. n
	end
	return table.concat(out, "\n") .. "\n"
end

local function text_for_query(q, shown)
	local kind, v = M.find(q)
	if kind == "entry" then return entry_text(v) end
	if kind == "page" then return page_text(v) end
	if kind == "many" then return list_text(string.format("'%s' is in several entries; help(\"name\") one of:", shown), v) end
	if kind == "prefix" then return list_text(string.format("%s: help(\"name\") one of:", shown), v) end
	if #v > 0 then
		return list_text(string.format("no manual entry for '%s'; names like it:", shown), v)
	end
	return string.format("no manual entry for '%s'; help() lists the pages\n", shown)
end

-- text(...) -> what lunet.help(...) prints.
function M.text(...)
	local n = select("#", ...)
	local x = ...
	if n == 0 then return index_text() end
	local t = type(x)
	if t == "string" then return text_for_query(x, x) end
	if x == nil then
		return "help: got nil (a misspelt name, say nn.Linaer?); help() lists the pages\n"
	end
	local name = name_of(x)
	if name == "lunet" then return index_text() end
	if name then return text_for_query(name, name) end
	local q = (t == "userdata" or t == "table") and object_query(x)
	if q then return text_for_query(q, q) end
	return string.format("no manual entry for this %s; help() lists the pages\n", t)
end

-- lunet.help([x]): prints the manual's entry for x (see the top).
function lunet.help(...)
	io.write(M.text(...))
	io.flush()
end

lunet._manual = M
