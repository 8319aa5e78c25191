-- show.lua -- lunet.show(v): a readable rendering of any value, the way
-- the REPL prints the values of expressions.  Called with the lunet table.
--
--   lunet.show(x:shape())          --> {2, 3}
--   lunet.show{lr = 0.1, betas = {0.9, 0.999}}
--                                  --> {betas = {0.9, 0.999}, lr = 0.1}
--   lunet.show(m:parameters())     --> the tensors by their tostring, one per line
--
-- Tables list their sequence (1..n) first, then the other keys sorted
-- (numbers, then strings, then the rest).  A value with __tostring
-- (tensors, modules) is shown by it.  Abridged: at most MAX_ITEMS entries
-- per table (the rest counted), tables nested deeper than MAX_DEPTH (or
-- met again inside themselves) as {...}.  A table fits on one line up to
-- WIDTH characters; beyond that, or when an entry spans several lines,
-- it takes one entry per line, indented.  Nothing here calls a
-- metamethod other than __tostring.
local lunet = ...

local MAX_DEPTH = 3
local MAX_ITEMS = 10
local WIDTH = 72
local INDENT = "  "

-- tostring that survives a failing __tostring.
local function safe_tostring(v)
	local ok, s = pcall(tostring, v)
	if ok and type(s) == "string" then return s end
	return string.format("<%s: __tostring failed>", type(v))
end

local function show_scalar(v)
	local t = type(v)
	if t == "string" then
		return (string.format("%q", v):gsub("\\\n", "\\n"))
	elseif t == "number" and math.type(v) == "float" and v == math.floor(v)
		and math.abs(v) < 1e15 then
		return string.format("%.0f", v)  -- as the REPL prints a float holding an integer
	end
	return safe_tostring(v)
end

local function is_identifier(k)
	return type(k) == "string" and k:match("^[%a_][%w_]*$") ~= nil
end

-- Order of the keys beyond the sequence: numbers, strings, the rest.
local RANK = {number = 1, string = 2}
local function key_before(a, b)
	local ra, rb = RANK[type(a)] or 3, RANK[type(b)] or 3
	if ra ~= rb then return ra < rb end
	if ra < 3 then return a < b end
	return safe_tostring(a) < safe_tostring(b)
end

local show

-- The entries of table t as strings ("v" or "k = v"), and the count left out.
local function entries(t, depth, seen)
	local n = rawlen(t)
	local keys = {}
	for k in next, t do
		if not (math.type(k) == "integer" and k >= 1 and k <= n) then
			keys[#keys + 1] = k
		end
	end
	table.sort(keys, key_before)
	local out, total = {}, n + #keys
	local shown = math.min(total, MAX_ITEMS)
	for i = 1, shown do
		if i <= n then
			out[i] = show(rawget(t, i), depth + 1, seen)
		else
			local k = keys[i - n]
			local ks = is_identifier(k) and k or "[" .. show(k, depth + 1, seen) .. "]"
			out[i] = ks .. " = " .. show(rawget(t, k), depth + 1, seen)
		end
	end
	return out, total - shown
end

function show(v, depth, seen)
	local mt = getmetatable(v)
	if type(v) ~= "table" or (type(mt) == "table" and rawget(mt, "__tostring")) then
		return show_scalar(v)
	end
	if depth > MAX_DEPTH or seen[v] then
		return "{...}"
	end
	if next(v) == nil then
		return "{}"
	end
	seen[v] = true
	local items, more = entries(v, depth, seen)
	seen[v] = nil
	if more > 0 then
		items[#items + 1] = string.format("... (%d more)", more)
	end
	local line = "{" .. table.concat(items, ", ") .. "}"
	if #line <= WIDTH and not line:find("\n", 1, true) then
		return line
	end
	local lines = {"{"}
	for _, item in ipairs(items) do
		lines[#lines + 1] = INDENT .. item:gsub("\n", "\n" .. INDENT) .. ","
	end
	lines[#lines + 1] = "}"
	return table.concat(lines, "\n")
end

-- lunet.show(v) -> string
function lunet.show(v)
	return show(v, 1, {})
end
