-- test_tensor_ops.lua -- the tensor operations of the second part of the
-- contract: broadcasting, negative dimensions, views (unsqueeze, squeeze,
-- permute, transpose, expand, select), index, max/min with indices, sort,
-- topk, clamp, pow, the comparisons, lunet.cat/stack/where, batched
-- matmul, multinomial, and copy's broadcasting rule.  Every expected
-- value is written out by hand or computed here with plain loops.
local lunet = lunet or require "lunet"

local SEED = 8128
local harness = dofile((arg[0]:match("^(.*)/") or ".") .. "/harness.lua")
local h = harness.new{seed = SEED, reseed = true}
local test, eq, near, truthy = h.test, h.eq, h.near, h.truthy
local raises = h.check_error

local NAN = 0 / 0

local same = h.same

local function shape_of(t) return table.concat(t:shape(), ",") end

-- ---------------------------------------------------------------------------
-- Broadcasting
-- ---------------------------------------------------------------------------

test("broadcasting arithmetic", function()
	local m = lunet.tensor{{1, 2, 3}, {4, 5, 6}}
	local row = lunet.tensor{10, 20, 30}
	local col = lunet.tensor{{100}, {200}}
	same((m + row):totable(), {{11, 22, 33}, {14, 25, 36}})
	same((row + m):totable(), {{11, 22, 33}, {14, 25, 36}})
	same((m - row):totable(), {{-9, -18, -27}, {-6, -15, -24}})
	same((col - m):totable(), {{99, 98, 97}, {196, 195, 194}})
	same((m * col):totable(), {{100, 200, 300}, {800, 1000, 1200}})
	same((row / m):totable(), {{10, 10, 10}, {2.5, 4, 5}})
	-- both sides stretch: {2,1} with {3} gives {2,3}
	same((col + row):totable(), {{110, 120, 130}, {210, 220, 230}})
	-- leading dimensions are added: {3} with {2,1,1} gives {2,1,3}
	local r = row + lunet.tensor{{{1}}, {{2}}}
	eq(shape_of(r), "2,1,3")
	same(r:totable(), {{{11, 21, 31}}, {{12, 22, 32}}})
	-- a {1} behaves as a scalar; tables broadcast like tensors
	same((m * lunet.tensor{2}):totable(), {{2, 4, 6}, {8, 10, 12}})
	same((m + {1, 0, -1}):totable(), {{2, 2, 2}, {5, 5, 5}})
	-- methods too
	same(m:add(row):totable(), (m + row):totable())
	same(m:mul(col):totable(), (m * col):totable())
	-- through a strided view: the middle column of m, {2,1}, times row
	local mid = m:narrow(2, 2, 1)
	same((mid * row):totable(), {{20, 40, 60}, {50, 100, 150}})
	raises(function() return m + lunet.zeros(2) end,
		"Tensor:__add: shapes {2,3} and {2} do not broadcast: dimension -1 has sizes 3 and 2")
	raises(function() return lunet.zeros(3, 2) * lunet.zeros(2, 2) end,
		"Tensor:__mul: shapes {3,2} and {2,2} do not broadcast: dimension -2 has sizes 3 and 2")
end)

test("in-place operations broadcast into the tensor's shape", function()
	local m = lunet.tensor{{1, 2, 3}, {4, 5, 6}}
	eq(m:add_(lunet.tensor{10, 20, 30}), m, "add_ returns the tensor")
	same(m:totable(), {{11, 22, 33}, {14, 25, 36}})
	m:sub_{{1}, {4}}
	same(m:totable(), {{10, 21, 32}, {10, 21, 32}})
	m:div_(lunet.tensor{{2}, {1}})
	same(m:totable(), {{5, 10.5, 16}, {10, 21, 32}})
	m:mul_(2)
	same(m:totable(), {{10, 21, 32}, {20, 42, 64}})
	-- the operand may be a part of the tensor itself: read before writing
	local a = lunet.tensor{{1, 2}, {3, 4}}
	a:add_(a[1])
	same(a:totable(), {{2, 4}, {4, 6}})
	local s = lunet.tensor{{1, 2}, {3, 4}}
	s:sub_(s:transpose(1, 2))
	same(s:totable(), {{0, -1}, {1, 0}})
	-- the tensor's shape cannot grow
	raises(function() lunet.zeros(3):add_(lunet.zeros(2, 3)) end,
		"Tensor:add_: operand {2,3} does not broadcast to {3}, the shape of the tensor written in place")
	raises(function() lunet.zeros(2, 3):mul_(lunet.zeros(2)) end,
		"Tensor:mul_: operand {2} does not broadcast to {2,3}")
end)

test("comparisons", function()
	local t = lunet.tensor{{1, 5, 3}, {NAN, 2, 3}}
	same(t:gt(2):totable(), {{0, 1, 1}, {0, 0, 1}})
	same(t:lt(3):totable(), {{1, 0, 0}, {0, 1, 0}})
	same(t:ge(3):totable(), {{0, 1, 1}, {0, 0, 1}})
	same(t:le(2):totable(), {{1, 0, 0}, {0, 1, 0}})
	same(t:eq(3):totable(), {{0, 0, 1}, {0, 0, 1}})
	same(t:ne(3):totable(), {{1, 1, 0}, {1, 1, 0}}, 0, "NaN is not equal to anything")
	-- against a tensor, broadcast
	local lim = lunet.tensor{2, 2, 4}
	same(t:gt(lim):totable(), {{0, 1, 0}, {0, 0, 0}})
	same(t:eq({{1}, {2}}):totable(), {{1, 0, 0}, {0, 1, 0}})
	same(t:le(lunet.tensor{{3}, {0}}):totable(), {{1, 0, 1}, {0, 0, 0}})
	raises(function() t:gt("x") end, "Tensor:gt: expected a lunet.Tensor or a number, got string")
	raises(function() t:eq(lunet.zeros(4)) end, "Tensor:eq: shapes {2,3} and {4} do not broadcast")
end)

test("pow and ^", function()
	local t = lunet.tensor{1, 2, 3}
	same(t:pow(2):totable(), {1, 4, 9})
	same((t ^ 3):totable(), {1, 8, 27})
	same((2 ^ t):totable(), {2, 4, 8})
	same(t:pow(0.5):totable(), {1, math.sqrt(2), math.sqrt(3)}, 1e-7)
	same(t:pow(lunet.tensor{{0}, {-1}}):totable(), {{1, 1, 1}, {1, 0.5, 1 / 3}}, 1e-7)
	same(lunet.tensor{-8}:pow(1 / 3):totable(), {NAN}, 0, "a negative base to a fraction is NaN")
	raises(function() t:pow() end, "Tensor:pow: expected a lunet.Tensor or a number, got no value")
end)

test("clamp", function()
	local t = lunet.tensor{-2, 0.5, 3, NAN}
	same(t:clamp(0, 1):totable(), {0, 0.5, 1, NAN})
	same(t:clamp(0):totable(), {0, 0.5, 3, NAN})
	same(t:clamp(nil, 1):totable(), {-2, 0.5, 1, NAN})
	same(t:clamp(1, 1):totable(), {1, 1, 1, NAN})
	same(lunet.tensor{{5, -5}}:clamp(-1, 1):totable(), {{1, -1}})
	raises(function() t:clamp() end, "Tensor:clamp: expected a lower bound, an upper bound or both, got none")
	raises(function() t:clamp(2, 1) end, "Tensor:clamp: lower bound 2 is above upper bound 1")
	raises(function() t:clamp(NAN, 1) end, "Tensor:clamp: bounds must not be NaN")
	raises(function() t:clamp("0") end, "Tensor:clamp: expected the lower bound to be a number or nil, got string")
end)

-- ---------------------------------------------------------------------------
-- Negative dimensions
-- ---------------------------------------------------------------------------

test("negative dimensions everywhere", function()
	local t = lunet.tensor{{1, 2, 3}, {4, 5, 6}}
	eq(t:size(-1), 3)
	eq(t:size(-2), 2)
	eq(t:stride(-1), 1)
	same(t:narrow(-1, 2, 2):totable(), {{2, 3}, {5, 6}})
	same(t:sum(-1):totable(), {{6}, {15}})
	same(t:mean(-2):totable(), {{2.5, 3.5, 4.5}})
	same(t:argmax(-1):totable(), {{3}, {3}})
	same((t:min(-2)):totable(), {{1, 2, 3}})
	same(t:select(-1, 1):totable(), {1, 4})
	same(t:index(-1, {3}):totable(), {{3}, {6}})
	same(t:transpose(-1, -2):totable(), {{1, 4}, {2, 5}, {3, 6}})
	eq(shape_of(t:unsqueeze(-1)), "2,3,1")
	eq(shape_of(t:permute(-1, -2)), "3,2")
	same(lunet.cat({t, t}, -1):totable(), {{1, 2, 3, 1, 2, 3}, {4, 5, 6, 4, 5, 6}})
	for _, d in ipairs{0, 3, -3} do
		raises(function() t:sum(d) end, "Tensor:sum: dimension " .. d ..
			" out of range for a tensor of shape {2,3} (expected 1..2 or -2..-1)")
	end
end)

-- ---------------------------------------------------------------------------
-- Views
-- ---------------------------------------------------------------------------

test("unsqueeze and squeeze", function()
	local t = lunet.tensor{1, 2, 3}
	local u = t:unsqueeze(1)
	eq(shape_of(u), "1,3")
	same(u:totable(), {{1, 2, 3}})
	eq(shape_of(t:unsqueeze(2)), "3,1")
	eq(shape_of(t:unsqueeze(-1)), "3,1")
	eq(shape_of(t:unsqueeze(-2)), "1,3")
	u[1][2] = 20  -- a view
	eq(t[2], 20)
	local z = lunet.zeros(1, 3, 1, 2)
	eq(shape_of(z:squeeze()), "3,2")
	eq(shape_of(z:squeeze(1)), "3,1,2")
	eq(shape_of(z:squeeze(-2)), "1,3,2")
	eq(shape_of(z:squeeze(2)), "1,3,1,2", "a size other than 1 stays")
	eq(shape_of(lunet.zeros(1, 1):squeeze()), "1", "one dimension is kept")
	local s = z:squeeze()
	s[2][1] = 7
	eq(z:get(1, 2, 1, 1), 7, "squeeze is a view")
	raises(function() t:unsqueeze(3) end,
		"Tensor:unsqueeze: position 3 out of range for a new dimension of a 1-D tensor (expected 1..2 or -2..-1)")
	raises(function() t:unsqueeze() end, "Tensor:unsqueeze: expected an integer dimension, got no value")
	raises(function() lunet.zeros(1, 1, 1, 1, 1, 1, 1, 1):unsqueeze(1) end,
		"Tensor:unsqueeze: cannot add a dimension to {1,1,1,1,1,1,1,1}: tensors have at most 8")
	raises(function() z:squeeze(5) end, "Tensor:squeeze: dimension 5 out of range for a tensor of shape {1,3,1,2}")
end)

test("permute and transpose", function()
	local t = lunet.arange(24):reshape(2, 3, 4)
	local p = t:permute(3, 1, 2)
	eq(shape_of(p), "4,2,3")
	for i = 1, 4 do
		for j = 1, 2 do
			for k = 1, 3 do
				eq(p:get(i, j, k), t:get(j, k, i), "p[" .. i .. "," .. j .. "," .. k .. "]")
			end
		end
	end
	eq(shape_of(t:permute{2, 3, 1}), "3,4,2")
	p:set(4, 2, 3, -1)
	eq(t:get(2, 3, 4), -1, "permute is a view")
	local q = t:transpose(1, 3)
	eq(shape_of(q), "4,3,2")
	eq(q:get(2, 3, 1), t:get(1, 3, 2))
	truthy(not q:is_contiguous(), "a transposed view is strided")
	-- the 2-D transpose with no arguments is still a copy
	local m = lunet.tensor{{1, 2, 3}, {4, 5, 6}}
	local c = m:transpose()
	same(c:totable(), {{1, 4}, {2, 5}, {3, 6}})
	c[1][1] = 100
	eq(m:get(1, 1), 1, "transpose() copies")
	truthy(c:is_contiguous(), "transpose() is contiguous")
	same(m:t():totable(), {{1, 4}, {2, 5}, {3, 6}})
	local v = m:transpose(1, 2)
	v[1][1] = 100
	eq(m:get(1, 1), 100, "transpose(1, 2) is a view")
	raises(function() t:permute(1, 2) end,
		"Tensor:permute: expected 3 dimensions (one per dimension of {2,3,4}), got 2")
	raises(function() t:permute(1, 1, 2) end, "Tensor:permute: dimension 1 appears twice in the permutation")
	raises(function() t:permute(1, 2, 4) end, "Tensor:permute: dimension 4 out of range for a tensor of shape {2,3,4}")
	raises(function() t:permute(1, 2, "3") end, "Tensor:permute: expected integer dimensions, got string at position 3")
	raises(function() t:transpose(1) end, "Tensor:transpose: expected two dimensions (or none, for the 2-D copy), got 1 argument")
	raises(function() t:transpose() end, "Tensor:transpose: expected a 2-D tensor, got shape {2,3,4}")
	raises(function() t:transpose(1, 4) end, "Tensor:transpose: dimension 4 out of range")
end)

test("expand", function()
	local c = lunet.tensor{{1}, {2}}
	local e = c:expand(2, 3)
	eq(shape_of(e), "2,3")
	same(e:totable(), {{1, 1, 1}, {2, 2, 2}})
	same(c:expand(-1, 2):totable(), {{1, 1}, {2, 2}})
	local e3 = lunet.tensor{5, 6}:expand(2, 3, 2)
	eq(shape_of(e3), "2,3,2")
	eq(e3:sum(), 66)
	same(e3:stride(), {0, 0, 1})
	-- it shares memory: a write to c shows everywhere
	c[1][1] = 9
	same(e:totable(), {{9, 9, 9}, {2, 2, 2}})
	same((e + 1):totable(), {{10, 10, 10}, {3, 3, 3}}, 0, "reads are fine")
	same(e:clone():add_(1):totable(), {{10, 10, 10}, {3, 3, 3}}, 0, "a clone can be written")
	-- writing into it element by element is refused
	raises(function() e:add_(1) end,
		"Tensor:add_: cannot write into {2,3}: several of its elements share one memory location (an expanded view); clone it first")
	raises(function() e:copy(lunet.zeros(2, 3)) end, "Tensor:copy: cannot write into {2,3}")
	raises(function() c:expand(3, 3) end,
		"Tensor:expand: cannot expand {2,1} to {3,3}: dimension 1 has size 2, only a size of 1 can stretch")
	raises(function() c:expand(3) end, "Tensor:expand: cannot expand {2,1} to 1 dimensions")
	raises(function() c:expand(-1, 2, 2) end, "Tensor:expand: size -1 for the new dimension 1")
	raises(function() c:expand(2, 0) end, "Tensor:expand: size 0 for dimension 2")
	raises(function() c:expand() end, "Tensor:expand: expected sizes, got none")
end)

test("select", function()
	local t = lunet.arange(24):reshape(2, 3, 4)
	local s = t:select(2, 3)
	eq(shape_of(s), "2,4")
	same(s:totable(), {{9, 10, 11, 12}, {21, 22, 23, 24}})
	same(t:select(1, 2):select(2, 1):totable(), {13, 17, 21})
	s:set(2, 4, 0)
	eq(t:get(2, 3, 4), 0, "select is a view")
	eq(lunet.tensor{7, 8, 9}:select(1, 2), 8, "1-D: the number")
	raises(function() t:select(2, 4) end,
		"Tensor:select: index 4 out of range for dimension 2 of {2,3,4} (expected 1..3)")
	raises(function() t:select(4, 1) end, "Tensor:select: dimension 4 out of range")
	raises(function() t:select(1, 1.5) end, "Tensor:select: expected an integer index, got 1.5")
end)

-- ---------------------------------------------------------------------------
-- Indexing and sorting
-- ---------------------------------------------------------------------------

test("index", function()
	local t = lunet.tensor{{1, 2, 3}, {4, 5, 6}}
	same(t:index(2, {3, 1}):totable(), {{3, 1}, {6, 4}})
	same(t:index(1, {2, 2, 1}):totable(), {{4, 5, 6}, {4, 5, 6}, {1, 2, 3}})
	same(t:index(2, lunet.tensor{2}):totable(), {{2}, {5}})
	local r = t:index(1, {1})
	r[1][1] = 100
	eq(t:get(1, 1), 1, "index copies")
	-- indices from argmax, through a strided view
	local am = lunet.tensor{{1, 9}, {8, 2}}:argmax(2):reshape(-1)
	same(t:index(2, am):totable(), {{2, 1}, {5, 4}})
	same(t:transpose(1, 2):index(1, {3}):totable(), {{3, 6}})
	raises(function() t:index(2, {4}) end,
		"Tensor:index: index 4 at position 1 is out of range for dimension 2 of {2,3} (expected 1..3)")
	raises(function() t:index(2, {1, 0}) end, "Tensor:index: index 0 at position 2 is out of range")
	raises(function() t:index(2, {1.5}) end, "Tensor:index: expected integer indices, got 1.5 at position 1")
	raises(function() t:index(2, {1, "2"}) end, "Tensor:index: expected integer indices, got string at position 2")
	raises(function() t:index(2, lunet.tensor{NAN}) end, "Tensor:index: expected integer indices, got nan at position 1")
	raises(function() t:index(2, {}) end, "Tensor:index: expected at least one index, got an empty table")
	raises(function() t:index(2, lunet.ones(1, 1)) end, "Tensor:index: expected a 1-D tensor of indices, got shape {1,1}")
	raises(function() t:index(2, 1) end, "Tensor:index: expected indices as a table or a 1-D lunet.Tensor, got number")
	raises(function() t:index(3, {1}) end, "Tensor:index: dimension 3 out of range")
end)

test("max and min along a dimension give values and indices", function()
	local t = lunet.tensor{{3, 7, 7}, {9, -1, 4}}
	local v, i = t:max(2)
	same(v:totable(), {{7}, {9}})
	same(i:totable(), {{2}, {1}}, 0, "the first maximum")
	v, i = t:min(1)
	same(v:totable(), {{3, -1, 4}})
	same(i:totable(), {{1, 2, 2}})
	v, i = t:min(-1)
	same(v:totable(), {{3}, {-1}})
	same(i:totable(), {{1}, {2}})
	-- NaN is the extreme, and its index goes with it
	v, i = lunet.tensor{{1, NAN, 5}}:max(2)
	same(v:totable(), {{NAN}})
	same(i:totable(), {{2}})
	-- no dimension: still one number
	eq(t:max(), 9)
	eq(t:min(), -1)
	eq(select("#", t:max()), 1, "one result without a dimension")
	eq(select("#", t:max(1)), 2, "two results with one")
end)

test("sort", function()
	local t = lunet.tensor{{3, 1, 2, 1}, {0, NAN, -5, 8}}
	local v, i = t:sort()
	same(v:totable(), {{1, 1, 2, 3}, {-5, 0, 8, NAN}})
	same(i:totable(), {{2, 4, 3, 1}, {3, 1, 4, 2}}, 0, "stable, NaN last")
	v, i = t:sort(2, true)
	same(v:totable(), {{3, 2, 1, 1}, {NAN, 8, 0, -5}})
	same(i:totable(), {{1, 3, 2, 4}, {2, 4, 1, 3}}, 0, "descending: stable, NaN first")
	v, i = t:sort(1)
	same(v:totable(), {{0, 1, -5, 1}, {3, NAN, 2, 8}})
	same(i:totable(), {{2, 1, 2, 1}, {1, 2, 1, 2}})
	-- sorting v by the indices gives back the values
	local row = lunet.tensor{0.5, -2, 7, 3}
	local sv, si = row:sort(1, true)
	same(row:index(1, si):totable(), sv:totable())
	raises(function() t:sort(3) end, "Tensor:sort: dimension 3 out of range")
	raises(function() t:sort(1, "yes") end, "Tensor:sort: expected descending to be a boolean, got string")
end)

test("topk", function()
	local t = lunet.tensor{{4, 9, 1, 9, 3}, {2, 2, 8, 0, 5}}
	local v, i = t:topk(3)
	same(v:totable(), {{9, 9, 4}, {8, 5, 2}})
	same(i:totable(), {{2, 4, 1}, {3, 5, 1}}, 0, "largest first, ties in index order")
	v, i = t:topk(1, 1)
	same(v:totable(), {{4, 9, 8, 9, 5}})
	same(i:totable(), {{1, 1, 2, 1, 2}})
	v, i = lunet.tensor{1, NAN, 3}:topk(2)
	same(v:totable(), {NAN, 3})
	same(i:totable(), {2, 3})
	raises(function() t:topk(6) end, "Tensor:topk: k must be in 1..5 (the size of dimension 2 of {2,5}), got 6")
	raises(function() t:topk(0) end, "Tensor:topk: k must be in 1..5")
	raises(function() t:topk(1.5) end, "Tensor:topk: expected an integer k, got 1.5")
	raises(function() t:topk(2, 3) end, "Tensor:topk: dimension 3 out of range")
end)

-- ---------------------------------------------------------------------------
-- cat, stack, where
-- ---------------------------------------------------------------------------

test("cat", function()
	local a = lunet.tensor{{1, 2}, {3, 4}}
	local b = lunet.tensor{{5, 6}}
	same(lunet.cat{a, b}:totable(), {{1, 2}, {3, 4}, {5, 6}})
	same(lunet.cat({a, b:transpose(1, 2)}, 2):totable(), {{1, 2, 5}, {3, 4, 6}})
	same(lunet.cat({lunet.tensor{1}, lunet.tensor{2, 3}, lunet.tensor{4}}):totable(), {1, 2, 3, 4})
	same(lunet.cat({a}):totable(), a:totable(), 0, "one tensor: a copy")
	raises(function() lunet.cat({a, b}, 2) end,
		"lunet.cat: tensor 2 has shape {1,2}, tensor 1 has {2,2}; all must have the same sizes apart from dimension 2")
	raises(function() lunet.cat({a, lunet.zeros(2)}) end, "lunet.cat: tensor 2 has shape {2}")
	raises(function() lunet.cat({}) end, "lunet.cat: expected a non-empty table of tensors, got an empty table")
	raises(function() lunet.cat(a) end, "lunet.cat: expected a table of tensors, got lunet.Tensor")
	raises(function() lunet.cat({a, {1, 2}}) end, "lunet.cat: expected a lunet.Tensor at position 2, got table")
	raises(function() lunet.cat({a}, 3) end, "lunet.cat: dimension 3 out of range for a tensor of shape {2,2}")
end)

test("stack", function()
	local a, b = lunet.tensor{1, 2, 3}, lunet.tensor{4, 5, 6}
	local s = lunet.stack{a, b}
	eq(shape_of(s), "2,3")
	same(s:totable(), {{1, 2, 3}, {4, 5, 6}})
	same(lunet.stack({a, b}, 2):totable(), {{1, 4}, {2, 5}, {3, 6}})
	same(lunet.stack({a, b}, -1):totable(), {{1, 4}, {2, 5}, {3, 6}})
	local m = lunet.tensor{{1, 2}, {3, 4}}
	local s3 = lunet.stack({m, m * 10}, 2)
	eq(shape_of(s3), "2,2,2")
	same(s3:totable(), {{{1, 2}, {10, 20}}, {{3, 4}, {30, 40}}})
	raises(function() lunet.stack({a, lunet.zeros(4)}) end,
		"lunet.stack: tensor 2 has shape {4}, tensor 1 has {3}; all must have the same shape")
	raises(function() lunet.stack({a, b}, 3) end,
		"lunet.stack: position 3 out of range for a new dimension of a 1-D tensor (expected 1..2 or -2..-1)")
end)

test("where", function()
	local mask = lunet.tensor{{1, 0, 1}, {0, 0, 1}}
	local a = lunet.tensor{{1, 2, 3}, {4, 5, 6}}
	same(lunet.where(mask, a, -a):totable(), {{1, -2, 3}, {-4, -5, 6}})
	same(lunet.where(mask, a, 0):totable(), {{1, 0, 3}, {0, 0, 6}})
	same(lunet.where(mask, 7, a):totable(), {{7, 2, 7}, {4, 5, 7}})
	-- the three broadcast: mask {2,1}, a {3}, b a number
	same(lunet.where({{1}, {0}}, lunet.tensor{1, 2, 3}, 9):totable(), {{1, 2, 3}, {9, 9, 9}})
	-- with a comparison, as a ReLU
	local x = lunet.tensor{-1, 0.5, 2}
	same(lunet.where(x:gt(0), x, 0):totable(), {0, 0.5, 2})
	raises(function() lunet.where(mask, a, lunet.zeros(4)) end, "lunet.where: shapes {2,3} and {4} do not broadcast")
	raises(function() lunet.where(1, a, a) end, "lunet.where: expected a lunet.Tensor or a table of numbers, got number")
	raises(function() lunet.where(mask, "a", a) end, "lunet.where: expected a lunet.Tensor or a number, got string")
end)

-- ---------------------------------------------------------------------------
-- Batched matmul
-- ---------------------------------------------------------------------------

-- c[b][i][j] = sum_k a[b][i][k] * bb[b][k][j] with plain loops; a or bb
-- may be 2-D (shared by every batch entry).
local function bmm_naive(a, bb)
	local A, B = a:totable(), bb:totable()
	local nb = a:dim() == 3 and #A or #B
	local out = {}
	for q = 1, nb do
		local x = a:dim() == 3 and A[q] or A
		local y = bb:dim() == 3 and B[q] or B
		out[q] = {}
		for i = 1, #x do
			out[q][i] = {}
			for j = 1, #y[1] do
				local s = 0
				for k = 1, #y do s = s + x[i][k] * y[k][j] end
				out[q][i][j] = s
			end
		end
	end
	return out
end

test("batched matmul", function()
	-- by hand: {{1,2},{3,4}} x {{5},{6}} = {{17},{39}}; {{0,1},{1,0}} x {{7},{8}} = {{8},{7}}
	local a = lunet.tensor{{{1, 2}, {3, 4}}, {{0, 1}, {1, 0}}}
	local b = lunet.tensor{{{5}, {6}}, {{7}, {8}}}
	local c = a:matmul(b)
	eq(shape_of(c), "2,2,1")
	same(c:totable(), {{{17}, {39}}, {{8}, {7}}})
	-- {B,M,K} x {K,N}: {{1,0},{0,2}} scales the columns
	same(a:matmul(lunet.tensor{{1, 0}, {0, 2}}):totable(), {{{1, 4}, {3, 8}}, {{0, 2}, {1, 0}}})
	-- random shapes against the loops, with transposed views as operands
	local x, y, w = lunet.randn(3, 4, 5), lunet.randn(3, 5, 2), lunet.randn(5, 2)
	same(x:matmul(y):totable(), bmm_naive(x, y), 1e-5)
	same(x:matmul(w):totable(), bmm_naive(x, w), 1e-5)
	local xt = lunet.randn(3, 5, 4):transpose(2, 3)
	local yt = lunet.randn(3, 2, 5):transpose(-1, -2)
	same(xt:matmul(yt):totable(), bmm_naive(xt, yt), 1e-5)
	same(xt:matmul(w):totable(), bmm_naive(xt, w), 1e-5)
	-- a shared left matrix, and a batch of one broadcast
	local m = lunet.randn(4, 5)
	same(m:matmul(y):totable(), bmm_naive(m, y), 1e-5)
	same(x:matmul(y:narrow(1, 2, 1)):totable(), bmm_naive(x, y:narrow(1, 2, 1):expand(3, 5, 2)), 1e-5)
	raises(function() x:matmul(lunet.randn(2, 5, 2)) end,
		"Tensor:matmul: batch dimensions of {3,4,5} and {2,5,2} do not broadcast")
	raises(function() x:matmul(x) end, "Tensor:matmul: expected shapes {...,m,k} and {...,k,n}, got {3,4,5} and {3,4,5}")
end)

-- ---------------------------------------------------------------------------
-- multinomial
-- ---------------------------------------------------------------------------

test("multinomial", function()
	-- certain rows: one category with all the weight
	local p = lunet.tensor{{0, 1, 0}, {0, 0, 0.25}}
	same(p:multinomial(3, true):totable(), {{2, 2, 2}, {3, 3, 3}})
	-- without replacement (the default) k = C gives a permutation per row
	local q = lunet.tensor{{0.1, 0.2, 0.3, 0.4}, {4, 3, 2, 1}}
	local s = q:multinomial(4)
	eq(shape_of(s), "2,4")
	for r = 1, 2 do
		local seen = {}
		for k = 1, 4 do
			local c = s:get(r, k)
			truthy(math.type(c) == "float" and c == math.floor(c) and c >= 1 and c <= 4, "an index")
			truthy(not seen[c], "drawn once")
			seen[c] = true
		end
	end
	-- zero weights are never drawn
	local z = lunet.tensor{{1, 0, 1, 0}}:multinomial(2)
	same(z:sort():totable(), {{1, 3}})
	-- 1-D weights give {k}
	eq(shape_of(lunet.tensor{1, 1}:multinomial(5, true)), "5")
	-- seeded: the same seed, the same draws
	lunet.seed(99)
	local d1 = q:multinomial(3)
	lunet.seed(99)
	same(q:multinomial(3):totable(), d1:totable())
	-- frequencies: weights {1,3} give category 2 three times in four
	lunet.seed(5)
	local n = 20000
	local twos = lunet.tensor{1, 3}:multinomial(n, true):eq(2):sum()
	truthy(math.abs(twos / n - 0.75) < 4 * math.sqrt(0.75 * 0.25 / n),
		string.format("P(2) = %.4f, expected 0.75", twos / n))
	raises(function() lunet.tensor{{0.5, 0.5}, {1, -1}}:multinomial(1) end,
		"Tensor:multinomial: weight -1 at row 2, column 2 is negative; probabilities must be >= 0")
	raises(function() lunet.tensor{{0, 0}}:multinomial(1) end,
		"Tensor:multinomial: row 1 has no positive weight (all 2 are 0)")
	raises(function() lunet.tensor{NAN, 1}:multinomial(1) end,
		"Tensor:multinomial: weight nan at row 1, column 1 is not a finite number")
	raises(function() lunet.tensor{{1, 0, 1}}:multinomial(3) end,
		"Tensor:multinomial: cannot draw 3 samples without replacement from row 1, which has 2 non-zero weights")
	raises(function() lunet.tensor{1, 1}:multinomial(0) end, "Tensor:multinomial: number of samples must be >= 1, got 0")
	raises(function() lunet.tensor{1, 1}:multinomial(1, "no") end,
		"Tensor:multinomial: expected replacement to be a boolean, got string")
	raises(function() lunet.zeros(1, 1, 2):multinomial(1) end,
		"Tensor:multinomial: expected probabilities of shape {N,C} or {C}, got {1,1,2}")
end)

-- ---------------------------------------------------------------------------
-- copy and row assignment broadcast; they do not reshape
-- ---------------------------------------------------------------------------

test("copy broadcasts the source to the destination's shape", function()
	local t = lunet.zeros(2, 3)
	t:copy(lunet.tensor{1, 2, 3})
	same(t:totable(), {{1, 2, 3}, {1, 2, 3}})
	t:copy{{7}, {8}}
	same(t:totable(), {{7, 7, 7}, {8, 8, 8}})
	t:copy(lunet.tensor{5})
	same(t:totable(), {{5, 5, 5}, {5, 5, 5}})
	-- a square matrix copied from its own transposed view
	local s = lunet.tensor{{1, 2}, {3, 4}}
	s:copy(s:transpose(1, 2))
	same(s:totable(), {{1, 3}, {2, 4}})
	-- row assignment broadcasts too
	local r = lunet.zeros(2, 2, 2)
	r[2] = {1, 2}
	same(r:totable(), {{{0, 0}, {0, 0}}, {{1, 2}, {1, 2}}})
	raises(function() t:copy(lunet.arange(6)) end,
		"Tensor:copy: cannot copy {6} into {2,3}: the source must have the destination's shape or broadcast to it")
	raises(function() t:copy(lunet.zeros(3, 2)) end, "Tensor:copy: cannot copy {3,2} into {2,3}")
	raises(function() r[1] = lunet.zeros(4) end, "Tensor:__newindex: cannot copy {4} into {2,2}")
end)

h.done()
