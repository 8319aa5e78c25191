-- test_show.lua -- lunet.show, the rendering the REPL uses for tables:
-- sequences, sorted keys, quoting, abridging by count and depth, cycles,
-- values with __tostring (tensors, modules) inside, the switch to one
-- entry per line, and values whose __tostring fails.
local lunet = lunet or require "lunet"
local nn = lunet.nn

local harness = dofile((arg[0]:match("^(.*)/") or ".") .. "/harness.lua")
local h = harness.new{seed = 77}
local test, eq = h.test, h.eq
local show = lunet.show

test("scalars and flat tables", function()
	eq(show({2, 3}), "{2, 3}")
	eq(show(lunet.zeros(4, 5):shape()), "{4, 5}")
	eq(show({}), "{}")
	eq(show({1.5, 2.0, -0.25}), "{1.5, 2, -0.25}")
	eq(show({"a", 'b"c', "x\ny"}), '{"a", "b\\"c", "x\\ny"}')
	eq(show({true, false}), "{true, false}")
	eq(show(3), "3")
	eq(show("s"), '"s"')
end)

test("keys: sequence first, then numbers, strings, others", function()
	eq(show({10, 20, z = 1, a = 2, [7] = 3, [-1] = 4, ["not id"] = 5}),
		'{10, 20, [-1] = 4, [7] = 3, a = 2, ["not id"] = 5, z = 1}')
	eq(show({[true] = 1}), "{[true] = 1}")
end)

test("abridged by count and by depth; cycles", function()
	local big = {}
	for i = 1, 12 do big[i] = i end
	eq(show(big), "{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, ... (2 more)}")
	local keys = {}
	for i = 1, 11 do keys["k" .. string.format("%02d", i)] = i end
	-- wider than a line: one entry per line, the count last
	eq(show(keys), "{\n  k01 = 1,\n  k02 = 2,\n  k03 = 3,\n  k04 = 4,\n  k05 = 5,\n  k06 = 6,\n"
		.. "  k07 = 7,\n  k08 = 8,\n  k09 = 9,\n  k10 = 10,\n  ... (1 more),\n}")
	eq(show({{{{{}}}}}), "{{{{...}}}}")
	local t = {1}
	t.me = t
	eq(show(t), "{1, me = {...}}")
	local shared = {5}
	eq(show({shared, shared}), "{{5}, {5}}", "a table seen twice, not inside itself, is shown twice")
end)

test("values with __tostring inside, one entry per line", function()
	local obj = setmetatable({}, {__tostring = function() return "OBJ" end})
	eq(show({obj, 1}), "{OBJ, 1}")
	eq(show(obj), "OBJ", "a table with __tostring is shown by it")
	eq(show({nn.ReLU()}), "{ReLU}")
	eq(show({lunet.tensor{1, 2}}), "{\n  1  2\n  [lunet.Tensor of shape {2}],\n}")
	eq(show({w = lunet.tensor{{1}}}), "{\n  w = 1\n  [lunet.Tensor of shape {1,1}],\n}")
	-- nested multi-line entries are indented once more per level
	eq(show({{lunet.tensor{3}}}), "{\n  {\n    3\n    [lunet.Tensor of shape {1}],\n  },\n}")
	-- too wide for one line
	local wide = {}
	for i = 1, 8 do wide[i] = string.rep("x", 8) end
	local s = show(wide)
	eq(select(2, s:gsub("\n", "")), 9, "one line per entry, and the braces")
	eq(s:sub(1, 15), '{\n  "xxxxxxxx",')
end)

test("a failing __tostring does not stop the rendering", function()
	local bad = setmetatable({}, {__tostring = function() error("no") end})
	eq(show({bad}), "{<table: __tostring failed>}")
	local protected = setmetatable({1}, {__metatable = "locked"})
	eq(show(protected), "{1}")
end)

h.done()
