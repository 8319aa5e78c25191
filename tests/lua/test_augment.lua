-- test_augment.lua -- data.random_crop and data.hflip: in place on the
-- batch buffer, the same from the same seed, the shifts and flips they
-- make, their errors, and no allocation.
local lunet = lunet or require "lunet"
local data = lunet.data

local harness = dofile((arg[0]:match("^(.*)/") or ".") .. "/harness.lua")
local h = harness.new{seed = 77, reseed = true}
local test, check, eq, check_error = h.test, h.check, h.eq, h.check_error

-- n images 1 x s x s, each with the single pixel (r, c) lit.
local function dots(n, s, r, c)
	local x = lunet.zeros(n, 1, s, s)
	for i = 1, n do x:set(i, 1, r, c, 1) end
	return x
end

-- Where the lit pixel of image i is, as row, column (nil when gone).
local function dot(x, i)
	local s = x:size(3)
	for r = 1, s do
		for c = 1, s do
			if x:get(i, 1, r, c) == 1 then return r, c end
		end
	end
end

test("random_crop shifts each image by at most pad, zero-filled, in place", function()
	local x = dots(300, 9, 5, 5)
	local same = data.random_crop(x, 3)
	check(rawequal(same, x), "returns x itself")
	local seen = {}
	for i = 1, 300 do
		local r, c = dot(x, i)
		check(r and math.abs(r - 5) <= 3 and math.abs(c - 5) <= 3, "shift within pad")
		seen[(r - 5) .. "," .. (c - 5)] = true
		eq(x[i]:sum(), 1, "one pixel lit, the rest zero")
	end
	local n = 0
	for _ in pairs(seen) do n = n + 1 end
	eq(n, 49, "every shift in -3..3 x -3..3 drawn")
	-- by hand: a 3x3 image shifted out of the frame keeps zeros only
	local y = lunet.arange(9):reshape(1, 1, 3, 3)
	data.random_crop(y, 0)
	h.same(y:totable(), {{{{1, 2, 3}, {4, 5, 6}, {7, 8, 9}}}}, 0, "pad 0: unchanged")
end)

test("hflip mirrors images with probability p", function()
	local x = lunet.arange(12):reshape(2, 1, 2, 3)
	data.hflip(x, 1)
	h.same(x:totable(), {{{{3, 2, 1}, {6, 5, 4}}}, {{{9, 8, 7}, {12, 11, 10}}}}, 0, "p = 1")
	data.hflip(x, 0)
	h.same(x[1]:totable(), {{{3, 2, 1}, {6, 5, 4}}}, 0, "p = 0")
	local b = dots(400, 5, 2, 1)
	data.hflip(b)
	local flipped = 0
	for i = 1, 400 do
		local _, c = dot(b, i)
		check(c == 1 or c == 5, "left or mirrored")
		if c == 5 then flipped = flipped + 1 end
	end
	check(flipped > 140 and flipped < 260, "about half flipped by default: " .. flipped)
end)

test("the same seed gives the same augmented batch", function()
	local base = lunet.rand(32, 1, 8, 8)
	local function run()
		lunet.seed(123)
		local x = base:clone()
		data.random_crop(x, 2)
		data.hflip(x)
		return x
	end
	local a, b = run(), run()
	check(a:eq(b):min() == 1, "identical")
	check(a:ne(base):max() == 1, "and changed")
end)

test("errors name the function and the value", function()
	check_error(function() data.random_crop(lunet.zeros(4, 784), 2) end,
	            "data.random_crop: expected a tensor of shape {N,C,H,W}, got {4,784} (reshape")
	check_error(function() data.random_crop(lunet.zeros(4, 3, 2), 2) end,
	            "data.random_crop: expected a contiguous tensor of shape {N,C,H,W}, got {4,3,2}")
	check_error(function() data.random_crop(lunet.zeros(2, 1, 3, 3), -1) end,
	            "data.random_crop: expected a padding in 0..2^30, got -1")
	check_error(function() data.random_crop(lunet.zeros(2, 1, 3, 3), 1.5) end,
	            "data.random_crop: pad must be an integer, got number")
	check_error(function() data.hflip(lunet.zeros(2, 1, 3, 3), 2) end,
	            "data.hflip: expected a probability p in [0,1], got 2")
	check_error(function() data.hflip(lunet.zeros(2, 1, 3, 3), "x") end,
	            "data.hflip: p must be a number, got string")
	check_error(function() data.hflip(lunet.zeros(2, 1, 3, 3), 0.5, 1) end,
	            "data.hflip: expected at most 2 arguments")
	local t = lunet.zeros(2, 1, 4, 4):transpose(3, 4)
	check_error(function() data.hflip(t) end, "(not contiguous)")
end)

test("augmenting a batch allocates nothing", function()
	local x = lunet.rand(64, 1, 28, 28)
	data.random_crop(x, 4)
	collectgarbage("stop")
	local before = lunet.alloc_stats().allocs
	data.random_crop(x, 4)
	data.hflip(x)
	local after = lunet.alloc_stats().allocs
	collectgarbage("restart")
	eq(after - before, 0, "allocations")
end)

h.done()
