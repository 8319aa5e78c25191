-- test_tensor.lua -- the Lua surface of lunet tensors:
-- constructors, queries, element access, views, arithmetic, reductions,
-- printing, lifetime, and every documented error with its message.
--
-- Runs under the `lunet` runner or the stock interpreter:
--   lua5.4 -e 'package.cpath="BUILD/?.so;"..package.cpath' test_tensor.lua
local lunet = lunet or require "lunet"

local SEED = 20240611
local harness = dofile((arg[0]:match("^(.*)/") or ".") .. "/harness.lua")
local h = harness.new{seed = SEED}
local test, eq, near, truthy = h.test, h.eq, h.near, h.truthy

-- raises(fn, ...): fn() must raise an error containing every string in the
-- list (plain find); the harness's check_error, under this file's name.
local raises = h.check_error

local same = h.same

local function shape_of(t) return table.concat(t:shape(), ",") end

-- float32 rounding of a Lua number, for exact comparisons.
local function f32(x) return (string.unpack("f", string.pack("f", x))) end

-- ---------------------------------------------------------------------------
-- Constructors
-- ---------------------------------------------------------------------------

test("tensor from nested tables", function()
	local t = lunet.tensor{{1, 2, 3}, {4, 5, 6}}
	eq(shape_of(t), "2,3", "shape")
	same(t:totable(), {{1, 2, 3}, {4, 5, 6}})
	local v = lunet.tensor{1.5, -2, 0.25}
	eq(shape_of(v), "3", "1-D shape")
	same(v:totable(), {1.5, -2, 0.25})
	local c = lunet.tensor{{{1, 2}, {3, 4}}, {{5, 6}, {7, 8}}, {{9, 10}, {11, 12}}}
	eq(shape_of(c), "3,2,2", "3-D shape")
	eq(c:get(3, 1, 2), 10, "c[3][1][2]")
	local single = lunet.tensor{42}
	eq(shape_of(single), "1", "one element")
	eq(single[1], 42)
	-- float32 storage
	eq(lunet.tensor{0.1}[1], f32(0.1), "0.1 rounds to float32")
	-- NaN and infinities are values like any other
	local special = lunet.tensor{0 / 0, math.huge, -math.huge}
	truthy(special[1] ~= special[1], "nan kept")
	eq(special[2], math.huge)
	eq(special[3], -math.huge)
end)

test("tensor from a tensor copies", function()
	local a = lunet.tensor{{1, 2}, {3, 4}}
	local b = lunet.tensor(a)
	b:set(1, 1, 100)
	eq(a:get(1, 1), 1, "original untouched")
	eq(b:get(1, 1), 100)
	eq(shape_of(b), "2,2")
end)

test("tensor errors", function()
	raises(function() lunet.tensor{{1, 2}, {3}} end,
		"lunet.tensor: ragged table: expected 2 elements at [2], got 1")
	raises(function() lunet.tensor{{1, 2, 3}, {4, 5}} end, "ragged", "expected 3 elements at [2], got 2")
	raises(function() lunet.tensor{{1, 2}, {3, "x"}} end,
		"lunet.tensor: expected a number at [2][2], got string")
	raises(function() lunet.tensor{1, true} end, "lunet.tensor: expected a number at [2], got boolean")
	raises(function() lunet.tensor{{1, 2}, {3, {4}}} end, "expected a number at [2][2], got table")
	raises(function() lunet.tensor{{1, 2}, 3} end, "lunet.tensor: expected a table at [2], got number")
	raises(function() lunet.tensor{{{1}, {2}}, {{3}, 4}} end, "expected a table at [2][2], got number")
	raises(function() lunet.tensor{} end, "lunet.tensor: expected a non-empty table, got an empty table")
	raises(function() lunet.tensor{{1}, {}} end, "ragged", "expected 1 elements at [2], got 0")
	raises(function() lunet.tensor{{}} end, "expected a non-empty table at [1], got an empty table")
	raises(function() lunet.tensor(3) end,
		"lunet.tensor: expected a table of numbers or a lunet.Tensor, got number")
	raises(function() lunet.tensor() end, "lunet.tensor: expected", "got no value")
	raises(function() lunet.tensor("1,2") end, "got string")
	local deep = {1}
	for _ = 1, 9 do deep = {deep} end  -- 10 levels
	raises(function() lunet.tensor(deep) end, "lunet.tensor: expected at most 8 nested tables")
	-- strings that look like numbers are not numbers
	raises(function() lunet.tensor{1, "2"} end, "expected a number at [2], got string")
end)

test("zeros ones full", function()
	local z = lunet.zeros(2, 3)
	eq(shape_of(z), "2,3")
	same(z:totable(), {{0, 0, 0}, {0, 0, 0}})
	local o = lunet.ones{3, 1}
	eq(shape_of(o), "3,1")
	same(o:totable(), {{1}, {1}, {1}})
	local f = lunet.full({2, 2}, 7)
	same(f:totable(), {{7, 7}, {7, 7}})
	local g = lunet.full(3, -1.5)
	same(g:totable(), {-1.5, -1.5, -1.5})
	local h = lunet.full(2, 1, 2, 0.5)
	eq(shape_of(h), "2,1,2")
	eq(h:sum(), 2)
	local n = lunet.full({2}, 0 / 0)
	truthy(n[1] ~= n[1], "full with nan")
	eq(shape_of(lunet.zeros(2.0, 3.0)), "2,3", "integral floats are sizes")
	eq(shape_of(lunet.zeros(1, 1, 1, 1, 1, 1, 1, 2)), "1,1,1,1,1,1,1,2", "8 dims")
end)

test("shape errors", function()
	raises(function() lunet.zeros(2, 0) end,
		"lunet.zeros: expected sizes that are integers >= 1, got 0 for dimension 2")
	raises(function() lunet.ones(-3) end, "lunet.ones: expected sizes that are integers >= 1, got -3 for dimension 1")
	raises(function() lunet.zeros(2.5) end, "lunet.zeros: expected sizes that are integers >= 1, got 2.5 for dimension 1")
	raises(function() lunet.zeros(0 / 0) end, "got nan for dimension 1")
	raises(function() lunet.zeros(math.huge) end, "got inf for dimension 1")
	raises(function() lunet.zeros(2, "3") end, "got string for dimension 2")
	raises(function() lunet.zeros{2, 0} end, "got 0 for dimension 2")
	raises(function() lunet.zeros() end, "lunet.zeros: expected a shape (sizes or a table of sizes), got no value")
	raises(function() lunet.zeros{} end, "lunet.zeros: expected a non-empty table of sizes, got an empty table")
	raises(function() lunet.zeros(1, 1, 1, 1, 1, 1, 1, 1, 1) end, "lunet.zeros: expected at most 8 dimensions, got 9")
	raises(function() lunet.zeros{1, 1, 1, 1, 1, 1, 1, 1, 1} end, "expected at most 8 dimensions, got 9")
	raises(function() lunet.zeros({2, 3}, 4) end, "lunet.zeros: expected nothing after the shape table, got number")
	raises(function() lunet.full({2, 3}) end, "lunet.full: expected a shape and a value, got 1 argument")
	raises(function() lunet.full({2, 3}, "7") end, "lunet.full: expected a number, got string")
	raises(function() lunet.full(2, 0, 1) end, "lunet.full: expected sizes that are integers >= 1, got 0 for dimension 2")
	raises(function() lunet.rand(0) end, "lunet.rand: expected sizes that are integers >= 1, got 0")
	raises(function() lunet.randn(2, -1) end, "lunet.randn: expected sizes that are integers >= 1, got -1 for dimension 2")
	-- too large: refused cleanly, not a crash
	raises(function() lunet.zeros(100000, 100000, 100000) end, "lunet.zeros: ")
	raises(function() lunet.ones(2^31, 2^31, 2^31, 2^31) end, "lunet.ones: ")
end)

test("rand and randn are seeded and distributed", function()
	lunet.seed(7)
	local a = lunet.rand(1000)
	lunet.seed(7)
	local b = lunet.rand(1000)
	truthy(a:allclose(b, 0, 0), "same seed, same rand")
	local c = lunet.rand(1000)
	truthy(not a:allclose(c, 0, 0), "next draw differs")
	lunet.seed(SEED)
	local u = lunet.rand(100, 100)
	truthy(u:min() >= 0, "rand >= 0")
	truthy(u:max() < 1, "rand < 1")
	near(u:mean(), 0.5, 0.02, "rand mean")
	lunet.seed(11)
	local n = lunet.randn{200, 100}
	eq(shape_of(n), "200,100")
	near(n:mean(), 0, 0.03, "randn mean")
	local var = (n * n):mean() - n:mean() ^ 2
	near(var, 1, 0.05, "randn variance")
	lunet.seed(11)
	truthy(lunet.randn(200, 100):allclose(n, 0, 0), "same seed, same randn")
	lunet.seed(SEED)
end)

test("arange", function()
	same(lunet.arange(5):totable(), {1, 2, 3, 4, 5})
	same(lunet.arange(1):totable(), {1})
	same(lunet.arange(2, 5):totable(), {2, 3, 4, 5})
	same(lunet.arange(5, 1, -2):totable(), {5, 3, 1})
	same(lunet.arange(0, 1, 0.25):totable(), {0, 0.25, 0.5, 0.75, 1})
	same(lunet.arange(0, 0.9, 0.5):totable(), {0, 0.5})
	eq(lunet.arange(1000):sum(), 500500, "sum 1..1000")
	raises(function() lunet.arange(0) end, "lunet.arange: expected a number of elements >= 1, got 0")
	raises(function() lunet.arange(2.5) end, "lunet.arange: expected an integer number of elements, got 2.5")
	raises(function() lunet.arange() end, "lunet.arange: expected a number of elements, got no value")
	raises(function() lunet.arange(1, 5, 0) end, "lunet.arange: expected a non-zero step, got 0")
	raises(function() lunet.arange(5, 1) end, "lunet.arange: expected a non-empty range, got 5 to 1 step 1")
	raises(function() lunet.arange(1, 0 / 0) end, "lunet.arange: expected finite numbers")
	raises(function() lunet.arange("3") end, "lunet.arange: expected numbers, got string for argument 1")
	raises(function() lunet.arange(1, 2, 3, 4) end, "lunet.arange: expected at most 3 arguments")
end)

test("is_tensor", function()
	eq(lunet.is_tensor(lunet.zeros(1)), true)
	eq(lunet.is_tensor({1}), false)
	eq(lunet.is_tensor(3), false)
	eq(lunet.is_tensor(nil), false)
	eq(lunet.is_tensor(io.stdout), false)
end)

-- ---------------------------------------------------------------------------
-- Queries
-- ---------------------------------------------------------------------------

test("shape dim numel size len", function()
	local t = lunet.zeros(2, 3, 4)
	local s = t:shape()
	same(s, {2, 3, 4})
	s[1] = 99  -- a fresh table each time
	eq(t:shape()[1], 2, "shape table is a copy")
	eq(t:dim(), 3)
	eq(t:numel(), 24)
	eq(t:nelement(), 24)
	eq(t:size(1), 2)
	eq(t:size(3), 4)
	same(t:size(), {2, 3, 4})
	eq(#t, 2)
	eq(#lunet.zeros(7), 7)
	eq(math.type(t:numel()), "integer")
	eq(math.type(t:size(2)), "integer")
	raises(function() t:size(0) end, "Tensor:size: dimension 0 out of range for a tensor of shape {2,3,4}")
	raises(function() t:size(4) end, "Tensor:size: dimension 4 out of range for a tensor of shape {2,3,4}")
	raises(function() t:size(1.5) end, "Tensor:size: expected an integer dimension, got 1.5")
	raises(function() t:size("x") end, "Tensor:size: expected an integer dimension, got string")
end)

test("stride contiguous", function()
	local t = lunet.zeros(2, 3)
	same(t:stride(), {3, 1})
	eq(t:stride(1), 3)
	eq(t:is_contiguous(), true)
	local n = t:narrow(2, 2, 2)
	eq(n:is_contiguous(), false)
	eq(t:contiguous(), t, "contiguous tensor returned as is")
	local c = n:contiguous()
	eq(c:is_contiguous(), true)
	truthy(c ~= n, "a copy")
	c:fill(5)
	eq(t:sum(), 0, "copy does not alias")
end)

test("methods on wrong values", function()
	raises(function() lunet.Tensor.sum(5) end, "Tensor:sum: expected a lunet.Tensor, got number")
	raises(function() lunet.Tensor.shape({}) end, "Tensor:shape: expected a lunet.Tensor, got table")
	raises(function() lunet.Tensor.clone(io.stdout) end, "Tensor:clone: expected a lunet.Tensor, got FILE*")
	eq(lunet.zeros(1).nosuchmethod, nil, "unknown method is nil")
	eq(lunet.zeros(1)[true], nil, "boolean key is nil")
end)

-- ---------------------------------------------------------------------------
-- Element access
-- ---------------------------------------------------------------------------

test("index 1-D and N-D", function()
	local v = lunet.tensor{10, 20, 30}
	eq(v[1], 10)
	eq(v[3], 30)
	eq(v[2.0], 20, "integral float index")
	v[2] = -5
	eq(v[2], -5)
	eq(v:get(2), -5)
	local t = lunet.tensor{{1, 2, 3}, {4, 5, 6}}
	local row = t[2]
	truthy(lunet.is_tensor(row), "row is a tensor")
	eq(shape_of(row), "3")
	same(row:totable(), {4, 5, 6})
	eq(t[2][3], 6)
	row[1] = 40  -- a view: writes go through
	eq(t:get(2, 1), 40)
	t[1][2] = 20
	eq(t:get(1, 2), 20)
	t[1] = 9  -- fill row 1
	same(t:totable(), {{9, 9, 9}, {40, 5, 6}})
	t[2] = {7, 8, 9}  -- copy a table into row 2
	same(t[2]:totable(), {7, 8, 9})
	t[2] = lunet.tensor{1, 1, 2}
	same(t:totable(), {{9, 9, 9}, {1, 1, 2}})
	local c = lunet.zeros(2, 2, 2)
	c[2][1] = 3
	same(c:totable(), {{{0, 0}, {0, 0}}, {{3, 3}, {0, 0}}})
	c[1] = lunet.tensor{{1, 2}, {3, 4}}
	eq(c:get(1, 2, 2), 4)
end)

test("index errors", function()
	local v = lunet.tensor{10, 20}
	local t = lunet.zeros(2, 3)
	raises(function() return v[3] end, "Tensor:__index: index 3 out of range for dimension 1 of size 2")
	raises(function() return v[0] end, "Tensor:__index: index 0 out of range for dimension 1 of size 2")
	raises(function() return t[-1] end, "Tensor:__index: index -1 out of range for dimension 1 of size 2")
	raises(function() return v[1.5] end, "Tensor:__index: expected an integer index, got 1.5")
	raises(function() v[3] = 1 end, "Tensor:__newindex: index 3 out of range for dimension 1 of size 2")
	raises(function() v[1] = "a" end, "Tensor:__newindex: expected a number, got string")
	raises(function() v.x = 1 end, "Tensor:__newindex: expected an integer index, got string")
	raises(function() t[1] = {1, 2} end,
		"Tensor:__newindex: cannot copy {2} into {3}: the source must have the destination's shape or broadcast to it")
	raises(function() t[1] = true end, "Tensor:__newindex: expected a number or a lunet.Tensor, got boolean")
	raises(function() t[3] = 0 end, "Tensor:__newindex: index 3 out of range for dimension 1 of size 2")
end)

test("get set item", function()
	local t = lunet.zeros(2, 3, 4)
	eq(t:set(2, 3, 4, 7.5), t, "set returns the tensor")
	eq(t:get(2, 3, 4), 7.5)
	eq(t:sum(), 7.5)
	t:set(1, 1, 1, -1)
	eq(t:get(1, 1, 1), -1)
	same(t[2][3]:totable(), {0, 0, 0, 7.5})
	raises(function() t:get(1, 2) end, "Tensor:get: expected 3 indices for a tensor of shape {2,3,4}, got 2")
	raises(function() t:get(1, 4, 1) end, "Tensor:get: index 4 out of range for dimension 2 of size 3")
	raises(function() t:get(3, 1, 1) end, "Tensor:get: index 3 out of range for dimension 1 of size 2")
	raises(function() t:get(1, 1, 0) end, "Tensor:get: index 0 out of range for dimension 3 of size 4")
	raises(function() t:get(1, 1, "2") end, "Tensor:get: expected an integer index, got string")
	raises(function() t:set(1, 1, 5, 0) end, "Tensor:set: index 5 out of range for dimension 3 of size 4")
	raises(function() t:set(1, 1, 1) end,
		"Tensor:set: expected 3 indices and a value for a tensor of shape {2,3,4}, got 3 arguments")
	raises(function() t:set(1, 1, 1, "x") end, "Tensor:set: expected a number, got string")
	local v = lunet.tensor{3, 4}
	raises(function() v:get(3) end, "Tensor:get: index 3 out of range for dimension 1 of size 2")
	eq(lunet.tensor{{5}}:item(), 5)
	raises(function() v:item() end, "Tensor:item: expected a tensor of one element, got shape {2}")
end)

test("totable", function()
	local t = lunet.arange(24):reshape(2, 3, 4)
	local tt = t:totable()
	eq(#tt, 2)
	eq(#tt[1], 3)
	eq(#tt[1][1], 4)
	eq(tt[2][3][4], 24)
	eq(tt[1][2][1], 5)
	-- of a strided view
	same(t:narrow(3, 2, 2):totable(), {{{2, 3}, {6, 7}, {10, 11}}, {{14, 15}, {18, 19}, {22, 23}}})
end)

test("pairs", function()
	local v = lunet.tensor{5, 6, 7}
	local seen = {}
	for i, x in pairs(v) do seen[#seen + 1] = i * 10 + x end
	same(seen, {15, 26, 37})
	local t = lunet.tensor{{1, 2}, {3, 4}}
	local sums = {}
	for i, row in pairs(t) do sums[i] = row:sum() end
	same(sums, {3, 7})
end)

-- ---------------------------------------------------------------------------
-- Copies, fills, views
-- ---------------------------------------------------------------------------

test("clone copy fill zero", function()
	local a = lunet.tensor{{1, 2}, {3, 4}}
	local b = a:clone()
	b[1][1] = 50
	eq(a:get(1, 1), 1, "clone is independent")
	local c = lunet.zeros(4)
	eq(c:copy(a:reshape(4)), c, "copy returns the tensor")
	same(c:totable(), {1, 2, 3, 4}, 0)
	c:copy{9, 8, 7, 6}
	same(c:totable(), {9, 8, 7, 6})
	a:copy(lunet.tensor{{0, 1}, {1, 0}})
	same(a:totable(), {{0, 1}, {1, 0}})
	eq(a:fill(3), a, "fill returns the tensor")
	same(a:totable(), {{3, 3}, {3, 3}})
	eq(a:zero(), a, "zero returns the tensor")
	eq(a:sum(), 0)
	-- fill through a view
	local t = lunet.zeros(3, 3)
	t:narrow(2, 2, 1):fill(1)
	same(t:totable(), {{0, 1, 0}, {0, 1, 0}, {0, 1, 0}})
	-- copy into a strided view
	t:narrow(1, 1, 2):narrow(2, 1, 2):copy{{1, 2}, {3, 4}}
	same(t:totable(), {{1, 2, 0}, {3, 4, 0}, {0, 1, 0}})
	t:fill(0 / 0)
	truthy(t:sum() ~= t:sum(), "fill with nan is allowed")
	raises(function() c:copy(lunet.zeros(3)) end, "Tensor:copy: cannot copy {3} into {4}: the source must have the destination's shape or broadcast to it")
	-- the same number of elements in another shape is refused, not reshaped
	raises(function() c:copy(a) end, "Tensor:copy: cannot copy {2,2} into {4}")
	raises(function() lunet.zeros(2, 3):copy(lunet.arange(6)) end, "Tensor:copy: cannot copy {6} into {2,3}")
	raises(function() c:copy("x") end, "Tensor:copy: expected a lunet.Tensor or a table of numbers, got string")
	raises(function() c:copy{1, {2}} end, "Tensor:copy: expected a number at [2], got table")
	raises(function() c:fill("x") end, "Tensor:fill: expected a number, got string")
	raises(function() c:fill() end, "Tensor:fill: expected a number, got no value")
end)

test("reshape and view", function()
	local t = lunet.arange(6)
	local r = t:reshape(2, 3)
	eq(shape_of(r), "2,3")
	same(r:totable(), {{1, 2, 3}, {4, 5, 6}})
	r[2][1] = 40  -- a view of contiguous t
	eq(t[4], 40)
	eq(shape_of(t:reshape{3, 2}), "3,2")
	eq(shape_of(t:reshape(-1, 2)), "3,2")
	eq(shape_of(t:reshape(3, -1)), "3,2")
	eq(shape_of(t:reshape{1, -1, 1}), "1,6,1")
	eq(shape_of(t:view(6)), "6")
	eq(shape_of(r:reshape(-1)), "6")
	-- non-contiguous: a copy with the right values
	local m = lunet.arange(12):reshape(3, 4)
	local n = m:narrow(2, 2, 2)
	local flat = n:reshape(6)
	same(flat:totable(), {2, 3, 6, 7, 10, 11})
	flat[1] = 100
	eq(m:get(1, 2), 2, "reshape of a non-contiguous tensor copies")
	raises(function() t:reshape(4, 2) end,
		"Tensor:reshape: expected a shape with 6 elements (as {6}), got {4,2}")
	raises(function() r:reshape{4, 2} end, "Tensor:reshape: expected a shape with 6 elements (as {2,3}), got {4,2}")
	raises(function() t:reshape(-1, -1) end,
		"Tensor:reshape: expected at most one -1 in the shape, got -1 for dimensions 1 and 2")
	raises(function() t:reshape(4, -1) end, "Tensor:reshape: cannot infer the -1 size: 6 elements of shape {6} do not divide by 4")
	raises(function() t:reshape(0, 6) end,
		"Tensor:reshape: expected sizes that are integers >= 1 (or one -1), got 0 for dimension 1")
	raises(function() t:reshape(-2, 3) end, "got -2 for dimension 1")
	raises(function() t:reshape(2.5) end, "got 2.5 for dimension 1")
	raises(function() t:reshape("6") end, "got string for dimension 1")
	raises(function() t:reshape() end, "Tensor:reshape: expected a shape (sizes or a table of sizes), got no value")
	raises(function() t:reshape{} end, "Tensor:reshape: expected a non-empty table of sizes, got an empty table")
	raises(function() t:reshape({6}, 1) end, "Tensor:reshape: expected nothing after the shape table, got number")
	raises(function() t:reshape(1, 1, 1, 1, 1, 1, 1, 1, 6) end, "Tensor:reshape: expected at most 8 dimensions, got 9")
	raises(function() t:view(5) end, "Tensor:reshape: expected a shape with 6 elements")
end)

test("narrow", function()
	local t = lunet.arange(12):reshape(3, 4)
	local n = t:narrow(1, 2, 2)
	same(n:totable(), {{5, 6, 7, 8}, {9, 10, 11, 12}})
	local c = t:narrow(2, 3, 2)
	same(c:totable(), {{3, 4}, {7, 8}, {11, 12}})
	c[1][1] = -3  -- a view
	eq(t:get(1, 3), -3)
	same(t:narrow(2, 4, 1):totable(), {{4}, {8}, {12}})
	same(lunet.arange(5):narrow(1, 5, 1):totable(), {5})
	raises(function() t:narrow(3, 1, 1) end, "Tensor:narrow: dimension 3 out of range for a tensor of shape {3,4}")
	raises(function() t:narrow(0, 1, 1) end, "Tensor:narrow: dimension 0 out of range for a tensor of shape {3,4}")
	raises(function() t:narrow(2, 5, 1) end, "Tensor:narrow: start 5 out of range for dimension 2 of size 4")
	raises(function() t:narrow(2, 0, 1) end, "Tensor:narrow: start 0 out of range for dimension 2 of size 4")
	raises(function() t:narrow(2, 3, 3) end,
		"Tensor:narrow: expected a length between 1 and 2 (start 3 in dimension 2 of size 4), got 3")
	raises(function() t:narrow(1, 1, 0) end, "Tensor:narrow: expected a length between 1 and 3")
	raises(function() t:narrow(1, 1) end, "Tensor:narrow: expected an integer length, got no value")
	raises(function() t:narrow(1, 1.5, 1) end, "Tensor:narrow: expected an integer start, got 1.5")
end)

test("transpose", function()
	local t = lunet.tensor{{1, 2, 3}, {4, 5, 6}}
	local tt = t:transpose()
	eq(shape_of(tt), "3,2")
	same(tt:totable(), {{1, 4}, {2, 5}, {3, 6}})
	tt[1][1] = 100
	eq(t:get(1, 1), 1, "transpose is a copy")
	same(t:t():totable(), {{1, 4}, {2, 5}, {3, 6}}, 0, "t() is transpose()")
	-- of a strided view
	same(lunet.arange(12):reshape(3, 4):narrow(2, 2, 2):transpose():totable(), {{2, 6, 10}, {3, 7, 11}})
	raises(function() lunet.zeros(3):transpose() end, "Tensor:transpose: expected a 2-D tensor, got shape {3}")
	raises(function() lunet.zeros(2, 2, 2):transpose() end, "Tensor:transpose: expected a 2-D tensor, got shape {2,2,2}")
end)

-- ---------------------------------------------------------------------------
-- Arithmetic
-- ---------------------------------------------------------------------------

test("elementwise operators", function()
	local A = {{1, 2, 3}, {4, 5, 6}}
	local B = {{0.5, -1, 2}, {8, 0.25, -3}}
	local a, b = lunet.tensor(A), lunet.tensor(B)
	local function ew(f)
		local r = {}
		for i = 1, 2 do
			r[i] = {}
			for j = 1, 3 do r[i][j] = f(A[i][j], B[i][j]) end
		end
		return r
	end
	same((a + b):totable(), ew(function(x, y) return x + y end), 1e-6)
	same((a - b):totable(), ew(function(x, y) return x - y end), 1e-6)
	same((a * b):totable(), ew(function(x, y) return x * y end), 1e-6)
	same((a / b):totable(), ew(function(x, y) return x / y end), 1e-6)
	same((a + 1):totable(), ew(function(x) return x + 1 end))
	same((1 + a):totable(), ew(function(x) return 1 + x end))
	same((a - 1):totable(), ew(function(x) return x - 1 end))
	same((10 - a):totable(), ew(function(x) return 10 - x end))
	same((a * 2):totable(), ew(function(x) return x * 2 end))
	same((3 * a):totable(), ew(function(x) return 3 * x end))
	same((a / 4):totable(), ew(function(x) return x / 4 end))
	same((12 / a):totable(), ew(function(x) return 12 / x end), 1e-6)
	same((-a):totable(), ew(function(x) return -x end))
	same(a:neg():totable(), ew(function(x) return -x end))
	-- results are new tensors
	local s = a + b
	s:fill(0)
	eq(a:get(1, 1), 1, "operands untouched")
	-- division by zero gives infinities, not errors
	eq((lunet.tensor{1, -1} / 0)[1], math.huge)
	eq((lunet.tensor{1, -1} / 0)[2], -math.huge)
	-- with a strided operand
	local n = lunet.arange(12):reshape(3, 4):narrow(2, 2, 2)
	same((n + n):totable(), {{4, 6}, {12, 14}, {20, 22}})
	-- with a nested table on either side
	same((a + {{1, 1, 1}, {1, 1, 1}}):totable(), (a + 1):totable())
	same(({{1, 1, 1}, {1, 1, 1}} - a):totable(), (1 - a):totable())
end)

test("elementwise methods and in-place", function()
	local a = lunet.tensor{1, 2, 3}
	same(a:add(a):totable(), {2, 4, 6})
	same(a:sub(1):totable(), {0, 1, 2})
	same(a:mul{2, 2, 2}:totable(), {2, 4, 6})
	same(a:div(2):totable(), {0.5, 1, 1.5})
	local b = a:clone()
	eq(b:add_(1), b, "add_ returns the tensor")
	same(b:totable(), {2, 3, 4})
	b:mul_(2)
	same(b:totable(), {4, 6, 8})
	b:sub_(a)
	same(b:totable(), {3, 4, 5})
	b:div_{3, 4, 5}
	same(b:totable(), {1, 1, 1})
	-- in place through a view
	local m = lunet.ones(2, 3)
	m:narrow(2, 2, 2):mul_(5)
	same(m:totable(), {{1, 5, 5}, {1, 5, 5}})
	m[2]:add_(lunet.tensor{1, 2, 3})
	same(m:totable(), {{1, 5, 5}, {2, 7, 8}})
	raises(function() b:add_(lunet.zeros(2)) end, "Tensor:add_: operand {2} does not broadcast to {3}, the shape of the tensor written in place")
	raises(function() b:mul_("x") end, "Tensor:mul_: expected a lunet.Tensor or a number, got string")
	raises(function() a:add(lunet.zeros(2, 2)) end, "Tensor:add: shapes {3} and {2,2} do not broadcast: dimension -1 has sizes 3 and 2")
	raises(function() a:div(true) end, "Tensor:div: expected a lunet.Tensor or a number, got boolean")
end)

test("arithmetic errors", function()
	local a, b = lunet.zeros(2, 3), lunet.zeros(3, 2)
	raises(function() return a + b end, "Tensor:__add: shapes {2,3} and {3,2} do not broadcast: dimension -1 has sizes 3 and 2")
	raises(function() return a - b end, "Tensor:__sub: shapes {2,3} and {3,2} do not broadcast")
	raises(function() return b * a end, "Tensor:__mul: shapes {3,2} and {2,3} do not broadcast: dimension -1 has sizes 2 and 3")
	raises(function() return a / lunet.zeros(6) end, "Tensor:__div: shapes {2,3} and {6} do not broadcast: dimension -1 has sizes 3 and 6")
	raises(function() return a + "x" end, "Tensor:__add: expected a lunet.Tensor or a number, got string")
	raises(function() return "1" + a end, "Tensor:__add: expected a lunet.Tensor or a number, got string")
	raises(function() return a * true end, "Tensor:__mul: expected a lunet.Tensor or a number, got boolean")
	raises(function() return a + {1, 2} end, "Tensor:__add: shapes {2,3} and {2} do not broadcast: dimension -1 has sizes 3 and 2")
	raises(function() return a + {1, "2"} end, "Tensor:__add: expected a number at [2], got string")
	raises(function() return lunet.Tensor.add(1, 2) end, "Tensor:add: expected at least one lunet.Tensor, got two numbers")
end)

test("matmul", function()
	local A = {{1, 2, 3}, {4, 5, 6}}
	local B = {{7, 8}, {9, 10}, {11, 12}}
	local want = {}
	for i = 1, 2 do
		want[i] = {}
		for j = 1, 2 do
			local s = 0
			for k = 1, 3 do s = s + A[i][k] * B[k][j] end
			want[i][j] = s
		end
	end
	local c = lunet.tensor(A):matmul(lunet.tensor(B))
	eq(shape_of(c), "2,2")
	same(c:totable(), want)
	same(lunet.tensor(A):matmul(B):totable(), want, 0, "table operand")
	-- random sizes against a plain triple loop
	lunet.seed(3)
	local x, y = lunet.randn(5, 7), lunet.randn(7, 4)
	local z = x:matmul(y)
	for i = 1, 5 do
		for j = 1, 4 do
			local s = 0
			for k = 1, 7 do s = s + x:get(i, k) * y:get(k, j) end
			near(z:get(i, j), s, 1e-5, "z[" .. i .. "][" .. j .. "]")
		end
	end
	-- with a transposed/strided operand
	local m = lunet.arange(12):reshape(3, 4)
	local n = m:narrow(2, 1, 2)  -- {3,2}, strided
	same(lunet.tensor{{1, 0, 0}, {0, 0, 1}}:matmul(n):totable(), {{1, 2}, {9, 10}})
	lunet.seed(SEED)
	raises(function() lunet.zeros(2, 3):matmul(lunet.zeros(2, 3)) end,
		"Tensor:matmul: expected shapes {...,m,k} and {...,k,n}, got {2,3} and {2,3}")
	raises(function() lunet.zeros(3):matmul(lunet.zeros(3, 1)) end,
		"Tensor:matmul: expected shapes {...,m,k} and {...,k,n}, got {3} and {3,1}")
	raises(function() lunet.zeros(2, 2):matmul(lunet.zeros(2, 3, 1)) end, "got {2,2} and {2,3,1}")
	raises(function() lunet.zeros(2, 2):matmul(3) end, "Tensor:matmul: expected a lunet.Tensor or a table of numbers, got number")
	raises(function() lunet.zeros(2, 2):matmul() end, "Tensor:matmul: expected a lunet.Tensor or a table of numbers, got no value")
end)

-- ---------------------------------------------------------------------------
-- Reductions
-- ---------------------------------------------------------------------------

test("full reductions", function()
	local t = lunet.tensor{{1, -2, 3}, {4, 5, -6}}
	eq(t:sum(), 5)
	near(t:mean(), 5 / 6, 1e-12)
	eq(t:max(), 5)
	eq(t:min(), -6)
	eq(math.type(t:sum()), "float")
	-- in double: many small values do not lose precision
	local big = lunet.full({1000000}, 0.1)
	near(big:sum(), 1000000 * f32(0.1), 1e-9, "sum accumulated in double")
	-- NaN propagates through max/min
	local withnan = lunet.tensor{1, 0 / 0, 3}
	truthy(withnan:max() ~= withnan:max(), "max with nan is nan")
	truthy(withnan:min() ~= withnan:min(), "min with nan is nan")
	-- of a strided view
	local n = lunet.arange(12):reshape(3, 4):narrow(2, 2, 2)
	eq(n:sum(), 2 + 3 + 6 + 7 + 10 + 11)
	eq(n:max(), 11)
	eq(n:min(), 2)
end)

test("reductions along a dimension", function()
	local t = lunet.tensor{{1, -2, 3}, {4, 5, -6}}
	local s1 = t:sum(1)
	eq(shape_of(s1), "1,3", "dim kept")
	same(s1:totable(), {{5, 3, -3}})
	local s2 = t:sum(2)
	eq(shape_of(s2), "2,1")
	same(s2:totable(), {{2}, {3}})
	same(t:mean(2):totable(), {{2 / 3}, {1}}, 1e-6)
	same(t:mean(1):totable(), {{2.5, 1.5, -1.5}})
	same(t:max(1):totable(), {{4, 5, 3}})
	same(t:max(2):totable(), {{3}, {5}})
	same(t:min(2):totable(), {{-2}, {-6}})
	local c = lunet.arange(24):reshape(2, 3, 4)
	local s = c:sum(2)
	eq(shape_of(s), "2,1,4")
	same(s:totable(), {{{15, 18, 21, 24}}, {{51, 54, 57, 60}}})
	-- negative dimensions count from the end
	same(t:sum(-1):totable(), {{2}, {3}})
	same(t:mean(-2):totable(), {{2.5, 1.5, -1.5}})
	same(t:max(-1):totable(), {{3}, {5}})
	raises(function() t:sum(3) end, "Tensor:sum: dimension 3 out of range for a tensor of shape {2,3} (expected 1..2 or -2..-1)")
	raises(function() t:mean(0) end, "Tensor:mean: dimension 0 out of range for a tensor of shape {2,3}")
	raises(function() t:max(-3) end, "Tensor:max: dimension -3 out of range for a tensor of shape {2,3} (expected 1..2 or -2..-1)")
	raises(function() t:min(1.5) end, "Tensor:min: expected an integer dimension, got 1.5")
	raises(function() t:sum("x") end, "Tensor:sum: expected an integer dimension, got string")
end)

test("argmax", function()
	local t = lunet.tensor{{1, 9, 3}, {7, 5, 7}}
	local a2 = t:argmax(2)
	eq(shape_of(a2), "2,1")
	same(a2:totable(), {{2}, {1}}, 0, "first maximum, 1-based")
	same(t:argmax(1):totable(), {{2, 1, 2}})
	eq(t:argmax(), 2, "flat 1-based position")
	eq(lunet.tensor{3, 1, 3}:argmax(), 1, "first of ties")
	eq(lunet.tensor{{0, 0}, {0, 4}}:argmax(), 4)
	eq(lunet.arange(12):reshape(3, 4):narrow(2, 1, 2):argmax(), 6, "of a strided view")
	raises(function() t:argmax(3) end, "Tensor:argmax: dimension 3 out of range for a tensor of shape {2,3}")
	raises(function() t:argmax(true) end, "Tensor:argmax: expected an integer dimension, got boolean")
end)

test("unary functions", function()
	local xs = {-2, -0.5, 0, 0.5, 3}
	local t = lunet.tensor(xs)
	local function map(f)
		local r = {}
		for i, x in ipairs(xs) do r[i] = f(x) end
		return r
	end
	same(t:exp():totable(), map(math.exp), 1e-6)
	same(t:abs():totable(), map(math.abs))
	same(t:tanh():totable(), map(function(x) return (math.exp(2 * x) - 1) / (math.exp(2 * x) + 1) end), 1e-6)
	same(t:sigmoid():totable(), map(function(x) return 1 / (1 + math.exp(-x)) end), 1e-6)
	local p = lunet.tensor{0.25, 1, 4, 100}
	same(p:log():totable(), {math.log(0.25), 0, math.log(4), math.log(100)}, 1e-6)
	same(p:sqrt():totable(), {0.5, 1, 2, 10}, 1e-7)
	-- outside the domain: IEEE values, not errors
	eq(lunet.tensor{0}:log()[1], -math.huge)
	local s = lunet.tensor{-1}:sqrt()[1]
	truthy(s ~= s, "sqrt(-1) is nan")
	-- sigmoid saturates without overflow
	same(lunet.tensor{-1000, 1000}:sigmoid():totable(), {0, 1})
	-- new tensors, input untouched
	local e = t:exp()
	e:fill(0)
	eq(t[5], 3)
	-- strided input
	same(lunet.arange(12):reshape(3, 4):narrow(2, 2, 1):abs():totable(), {{2}, {6}, {10}})
end)

test("allclose", function()
	local a = lunet.tensor{1, 2, 3}
	eq(a:allclose(lunet.tensor{1, 2, 3}), true)
	eq(a:allclose(a + 1e-7), true, "within default tolerance")
	eq(a:allclose(a + 1e-3), false, "outside default tolerance")
	eq(a:allclose(a + 1e-3, 1e-3), true, "rtol")
	eq(a:allclose(a + 1e-3, 0, 2e-3), true, "atol")
	eq(a:allclose(a + 1e-3, 0, 0), false)
	eq(a:allclose({1, 2, 3}), true, "table operand")
	eq(a:allclose(lunet.tensor{{1, 2, 3}}), false, "different shapes")
	eq(lunet.tensor{0 / 0}:allclose(lunet.tensor{0 / 0}), false, "nan is never close")
	raises(function() a:allclose(a, -1) end, "Tensor:allclose: expected rtol to be a number >= 0, got -1")
	raises(function() a:allclose(a, 0, 0 / 0) end, "Tensor:allclose: expected atol to be a number >= 0, got nan")
	raises(function() a:allclose(a, "x") end, "Tensor:allclose: expected rtol to be a number >= 0, got string")
	raises(function() a:allclose(5) end, "Tensor:allclose: expected a lunet.Tensor or a table of numbers, got number")
end)

-- ---------------------------------------------------------------------------
-- Printing
-- ---------------------------------------------------------------------------

local function count(s, pat)
	local n = 0
	for _ in s:gmatch(pat) do n = n + 1 end
	return n
end

test("tostring small", function()
	eq(tostring(lunet.tensor{{1, 2, 3}, {4, 5, 6}}), "1  2  3\n4  5  6\n[lunet.Tensor of shape {2,3}]")
	eq(tostring(lunet.tensor{-1, 10}), "-1  10\n[lunet.Tensor of shape {2}]")
	eq(tostring(lunet.tensor{0.5, -0.25}), " 0.5000  -0.2500\n[lunet.Tensor of shape {2}]")
	eq(tostring(lunet.tensor{1e-6, 1}), "1.0000e-06  1.0000e+00\n[lunet.Tensor of shape {2}]")
	eq(tostring(lunet.tensor{0 / 0, math.huge, -1}), "nan  inf   -1\n[lunet.Tensor of shape {3}]")
	local s = tostring(lunet.arange(8):reshape(2, 2, 2))
	truthy(s:find("(1,.,.) =\n1  2\n3  4\n", 1, true), "first slice: " .. s)
	truthy(s:find("(2,.,.) =\n5  6\n7  8\n", 1, true), "second slice: " .. s)
	truthy(s:find("[lunet.Tensor of shape {2,2,2}]", 1, true), "footer")
	-- strided view prints its own elements
	eq(tostring(lunet.arange(6):reshape(2, 3):narrow(2, 2, 2)), "2  3\n5  6\n[lunet.Tensor of shape {2,2}]")
end)

test("tostring abridged", function()
	local t = lunet.arange(10000):reshape(100, 100)
	local s = tostring(t)
	eq(count(s, "\n"), 7 + 1 - 1, "3 rows, ..., 3 rows, footer")
	truthy(s:find("^ +1  +2  +3  ...  +98  +99  +100\n"), "first row abridged: " .. s:sub(1, 80))
	truthy(s:find("\n...\n", 1, true), "row gap")
	truthy(s:find("\n 9901 +9902 +9903  ...  +9998 +9999 +10000\n"), "last row")
	truthy(not s:find("5050", 1, true), "middle not printed")
	truthy(s:find("[lunet.Tensor of shape {100,100}]", 1, true), "footer")
	local v = tostring(lunet.arange(5000))
	truthy(v:find("^   1     2     3  ...  4998  4999  5000\n"), "1-D abridged: " .. v)
	local c = tostring(lunet.zeros(10, 10, 20))
	eq(count(c, "%(%d+,%.,%.%) ="), 6, "6 slices shown")
	truthy(c:find("(10,.,.) =", 1, true), "last slice shown")
	truthy(not c:find("(4,.,.) =", 1, true), "middle slice hidden")
	-- not abridged at 1000 elements or fewer
	local full = tostring(lunet.arange(1000))
	truthy(full:find(" 500 ", 1, true), "all of 1000 elements shown")
end)

-- ---------------------------------------------------------------------------
-- Lifetime
-- ---------------------------------------------------------------------------

test("close and gc", function()
	local keep
	do
		local t <close> = lunet.ones(2, 2)
		keep = t
		eq(t:sum(), 4)
	end
	eq(tostring(keep), "[lunet.Tensor (closed)]")
	eq(lunet.is_tensor(keep), true)
	raises(function() keep:sum() end, "Tensor:sum: tensor is closed")
	raises(function() return keep[1] end, "Tensor:__index: tensor is closed")
	raises(function() keep[1] = 0 end, "Tensor:__newindex: tensor is closed")
	raises(function() return #keep end, "Tensor:__len: tensor is closed")
	raises(function() return keep + 1 end, "Tensor:__add: tensor is closed")
	raises(function() return 1 - keep end, "Tensor:__sub: tensor is closed")
	raises(function() return -keep end, "Tensor:__unm: tensor is closed")
	raises(function() keep:shape() end, "Tensor:shape: tensor is closed")
	raises(function() lunet.ones(2, 2):matmul(keep) end, "Tensor:matmul: tensor is closed")
	raises(function() lunet.ones(2, 2):copy(keep) end, "Tensor:copy: tensor is closed")
	raises(function() lunet.tensor(keep) end, "lunet.tensor: tensor is closed")
	-- closing again, and the collector's __gc afterwards, are harmless
	keep:close()
	getmetatable(keep).__gc(keep)
	getmetatable(keep).__close(keep)
	-- a view outlives its closed parent: storage is shared and refcounted
	local parent = lunet.tensor{{1, 2}, {3, 4}}
	local row = parent[2]
	local view = parent:reshape(4)
	parent:close()
	same(row:totable(), {3, 4})
	same(view:totable(), {1, 2, 3, 4})
	row[1] = 30
	eq(view[3], 30, "views still share storage")
	view:close()
	eq(row:sum(), 34)
end)

test("temporaries are collected (storage reported to the GC)", function()
	-- Storage lives outside the Lua heap; unless it is reported, the
	-- collector sees only small userdata and, with a large Lua heap (whose
	-- size sets the next collection), lets 200 MiB of temporaries pile up.
	local ballast = {}
	for i = 1, 500000 do ballast[i] = i end
	collectgarbage()
	local alive = setmetatable({}, {__mode = "v"})
	for i = 1, 200 do
		alive[i] = lunet.zeros(256, 1024)  -- 1 MiB each
	end
	local n = 0
	for _ in pairs(alive) do n = n + 1 end
	truthy(n < 50, "at most 50 of 200 temporaries uncollected, got " .. n)
	eq(#ballast, 500000)
end)

h.done()
