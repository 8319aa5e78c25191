-- test_data.lua -- lunet.data from Lua: randperm,
-- mini-batches (every sample once per epoch, seeded order, short last
-- batch, buffer reuse), load_idx and csv on files written here, and
-- Fashion-MNIST when Debian's dataset-fashion-mnist is installed.
--
-- Runs under the `lunet` runner or the stock interpreter:
--   lua5.4 -e 'package.cpath="BUILD/?.so;"..package.cpath' test_data.lua
local lunet = lunet or require "lunet"
local data = lunet.data

local SEED = 9001
local harness = dofile((arg[0]:match("^(.*)/") or ".") .. "/harness.lua")
local h = harness.new{seed = SEED}
-- raises(want, fn, ...): fn(...) must fail with a message containing `want`.
local test, eq, truthy, raises = h.test, h.eq, h.truthy, h.raises

-- Temporary files, removed at the end.
local tmpbase = os.tmpname()
local tmpfiles = {tmpbase}
local function tmpfile(suffix, content)
	local path = tmpbase .. suffix
	local f = assert(io.open(path, "wb"))
	f:write(content)
	f:close()
	tmpfiles[#tmpfiles + 1] = path
	return path
end

-- A data set whose rows say who they are: x[i] = {i, -i, 10*i}, y[i] = i.
local function numbered(n)
	local rows, labels = {}, {}
	for i = 1, n do rows[i] = {i, -i, 10 * i}; labels[i] = i end
	return lunet.tensor(rows), lunet.tensor(labels)
end

-- Runs one epoch, checks each batch's rows against its labels, and returns
-- the list of sample ids in visiting order and the list of batch sizes.
local function epoch(x, y, n, opts)
	local order, sizes = {}, {}
	for xb, yb in data.batches(x, y, n, opts) do
		sizes[#sizes + 1] = xb:size(1)
		eq(yb:size(1), xb:size(1), "batch sizes of x and y")
		eq(xb:size(2), 3, "row width")
		for i = 1, xb:size(1) do
			local id = yb[i]
			eq(xb:get(i, 1), id, "x row matches its label")
			eq(xb:get(i, 3), 10 * id, "x row matches its label")
			order[#order + 1] = id
		end
	end
	return order, sizes
end

-- ---------------------------------------------------------------------------
-- randperm and batches
-- ---------------------------------------------------------------------------

test("randperm is a seeded permutation", function()
	lunet.seed(1)
	local p = lunet.randperm(1000)
	eq(p:dim(), 1, "dim")
	eq(p:size(1), 1000, "size")
	local seen, moved = {}, 0
	for i = 1, 1000 do
		local v = p[i]
		truthy(v >= 1 and v <= 1000 and v == math.floor(v), "value in 1..n")
		truthy(not seen[v], "no repeats")
		seen[v] = true
		if v ~= i then moved = moved + 1 end
	end
	truthy(moved > 900, "actually shuffled")
	lunet.seed(1)
	local q = lunet.randperm(1000)
	for i = 1, 1000 do eq(q[i], p[i], "same seed, same permutation") end
	eq(lunet.randperm(1)[1], 1, "randperm(1)")
	raises("lunet.randperm: n must be in 1..16777216, got 0", lunet.randperm, 0)
end)

test("batches without shuffle: views in order, last batch short", function()
	local x, y = numbered(10)
	local order, sizes = epoch(x, y, 4)
	eq(table.concat(sizes, ","), "4,4,2", "batch sizes")
	for i = 1, 10 do eq(order[i], i, "in order") end
	-- views: writing into a batch writes into x
	local it = data.batches(x, y, 4)
	local xb = it()
	xb:set(1, 2, 99)
	eq(x:get(1, 2), 99, "batch is a view of x")
end)

test("batches with shuffle: every sample exactly once, short last batch", function()
	local x, y = numbered(103)
	for _, n in ipairs{1, 10, 64, 103, 500} do
		local order, sizes = epoch(x, y, n, {shuffle = true})
		eq(#order, 103, "samples per epoch (batch " .. n .. ")")
		local seen = {}
		for _, id in ipairs(order) do
			truthy(not seen[id], "sample " .. id .. " seen twice")
			seen[id] = true
		end
		local full = 103 // n
		for i = 1, full do eq(sizes[i], n, "full batch") end
		if 103 % n ~= 0 then
			eq(#sizes, full + 1, "number of batches")
			eq(sizes[#sizes], 103 % n, "last batch short")
		else
			eq(#sizes, full, "number of batches")
		end
	end
end)

test("shuffled order: same seed same order, next epoch different", function()
	local x, y = numbered(50)
	lunet.seed(42)
	local a = epoch(x, y, 8, {shuffle = true})
	local b = epoch(x, y, 8, {shuffle = true})
	lunet.seed(42)
	local c = epoch(x, y, 8, {shuffle = true})
	eq(table.concat(a, ","), table.concat(c, ","), "same seed, same order")
	truthy(table.concat(a, ",") ~= table.concat(b, ","), "a new epoch gives a new order")
	local inorder = 0
	for i = 1, 50 do if a[i] == i then inorder = inorder + 1 end end
	truthy(inorder < 25, "shuffled")
end)

test("shuffled batches reuse one buffer; x and y stay untouched", function()
	local x, y = numbered(20)
	local first, same = nil, true
	for xb in data.batches(x, y, 5, {shuffle = true}) do
		first = first or xb
		same = same and rawequal(first, xb)
	end
	truthy(same, "the same buffer for every full batch")
	for i = 1, 20 do eq(x:get(i, 1), i, "x untouched"); eq(y[i], i, "y untouched") end
end)

test("batches of x alone, drop_last, {n,C,H,W} rows", function()
	local x = lunet.arange(12):reshape(3, 2, 2)
	local count, total = 0, 0
	for xb, yb in data.batches(x, 2, {shuffle = true}) do
		eq(yb, nil, "no y")
		eq(xb:dim(), 3, "rows keep their shape")
		count = count + 1
		total = total + xb:sum()
	end
	eq(count, 2, "batches")
	eq(total, 78, "every value once")
	local x2, y2 = numbered(10)
	local _, sizes = epoch(x2, y2, 4, {shuffle = true, drop_last = true})
	eq(table.concat(sizes, ","), "4,4", "drop_last")
end)

test("batches errors", function()
	local x, y = numbered(10)
	raises("data.batches: x has 10 samples but y has 9", data.batches, x, y:narrow(1, 1, 9), 4)
	raises("data.batches: batch size must be an integer >= 1, got 0", data.batches, x, y, 0)
	raises("data.batches: batch size must be an integer >= 1, got 2.5", data.batches, x, y, 2.5)
	raises("data.batches: x must be a tensor, got table", data.batches, {1, 2}, y, 4)
	raises("data.batches: unknown option 'shufle' (options: shuffle, drop_last, shard)", data.batches, x,
		y, 4, {shufle = true})
end)

test("gather errors", function()
	local x = numbered(5)
	local dst = lunet.zeros(2, 3)
	raises("data.gather: index[2] = 6 is not a row of the source (1..5)", data.gather, dst, x,
		lunet.tensor{1, 6})
	raises("data.gather: index[1] = 1.5 is not a row of the source", data.gather, dst, x,
		lunet.tensor{1.5, 2})
	raises("data.gather: rows 2..3 of the index requested, it has 2", data.gather, dst, x,
		lunet.tensor{1, 2}, 2)
	raises("data.gather: destination {2,4} and source {5,3} differ beyond dimension 1",
		data.gather, lunet.zeros(2, 4), x, lunet.tensor{1, 2})
	data.gather(dst, x, lunet.tensor{5, 2, 3}, 2)
	eq(dst:get(1, 1), 2, "gathered row")
	eq(dst:get(2, 2), -3, "gathered row")
end)

-- ---------------------------------------------------------------------------
-- load_idx and csv
-- ---------------------------------------------------------------------------

-- IDX bytes: magic, dims, data.
local function idx(type_code, dims, payload)
	local parts = {string.char(0, 0, type_code, #dims)}
	for _, d in ipairs(dims) do parts[#parts + 1] = string.pack(">I4", d) end
	parts[#parts + 1] = payload
	return table.concat(parts)
end

test("load_idx reads ubyte and float files", function()
	local p = tmpfile(".u8.idx", idx(0x08, {2, 3}, string.char(0, 1, 2, 128, 254, 255)))
	local t = data.load_idx(p)
	eq(t:dim(), 2, "dim")
	eq(t:size(1), 2, "size 1")
	eq(t:size(2), 3, "size 2")
	eq(t:get(2, 3), 255, "value")
	eq(t:get(2, 1), 128, "value")
	local f = tmpfile(".f32.idx", idx(0x0D, {2}, string.pack(">f>f", 1.5, -2.25)))
	local u = data.load_idx(f)
	eq(u[1], 1.5, "float")
	eq(u[2], -2.25, "float")
end)

test("load_idx errors name the file and the problem", function()
	local missing = tmpbase .. ".none"
	raises("data.load_idx: " .. missing .. ": cannot open: No such file or directory",
		data.load_idx, missing)
	local trunc = tmpfile(".trunc.idx", idx(0x08, {60000, 28, 28}, string.rep("\0", 1000)))
	raises("data.load_idx: " .. trunc .. ": truncated: expected 47040000 bytes of data, got 1000",
		data.load_idx, trunc)
	local magic = tmpfile(".magic.idx", "\1\0\8\1" .. string.pack(">I4", 1) .. "x")
	raises("not an IDX file: magic number starts with 0x01 0x00, expected 0x00 0x00",
		data.load_idx, magic)
	local typ = tmpfile(".type.idx", idx(0x07, {1}, "x"))
	raises("unknown IDX data type code 0x07", data.load_idx, typ)
	local huge = tmpfile(".huge.idx", idx(0x0D, {2147483648, 2147483648}, ""))
	raises("IDX shape {2147483648,2147483648} is too large (its size overflows)", data.load_idx, huge)
	local trail = tmpfile(".trail.idx", idx(0x08, {2}, "abc"))
	raises("unexpected data after the 2 bytes declared by the header (shape {2})",
		data.load_idx, trail)
	raises("bad argument #1", data.load_idx)
	raises("string expected, got no value", data.load_idx)
end)

test("csv with a label column", function()
	local p = tmpfile(".iris.csv", "sepal,petal,species\n5.1,3.5,1\n4.9,3.0,2\n6.2,2.9,3\n")
	local ds = data.csv(p, {header = true, label = "species"})
	eq(ds.x:size(1), 3, "rows")
	eq(ds.x:size(2), 2, "feature columns")
	eq(ds.y:size(1), 3, "labels")
	eq(ds.y[3], 3, "label")
	truthy(math.abs(ds.x:get(2, 1) - 4.9) < 1e-6, "value")
	eq(table.concat(ds.columns, ","), "sepal,petal", "columns")
	eq(ds.label, "species", "label")
	-- label by (1-based) index, no header
	local q = tmpfile(".nohdr.csv", "1,10,2\n3,20,4\n")
	local d2 = data.csv(q, {header = false, label = 2})
	eq(d2.y[2], 20, "label by index")
	eq(d2.x:get(2, 2), 4, "features around the label")
	eq(d2.columns, nil, "no names without a header")
	-- no label: everything in x
	local d3 = data.csv(p)
	eq(d3.x:size(2), 3, "all columns")
	eq(d3.y, nil, "no y")
end)

test("csv errors", function()
	local ragged = tmpfile(".ragged.csv", "a,b,c,d\n1,2,3,4\n1,2,3,4\n1,2,3,4\n1,2,3\n")
	raises("data.csv: " .. ragged .. ": line 5 has 3 fields, expected 4", data.csv, ragged)
	local bad = tmpfile(".bad.csv", "sepal,b\n1,2\n1,2\n1,2\n1,2\n1,2\nabc,2\n")
	raises("line 7, column 'sepal': 'abc' is not a number", data.csv, bad)
	local ok = tmpfile(".ok.csv", "a,b\n1,2\n")
	raises("no column named 'species' (columns: 'a', 'b')", data.csv, ok, {label = "species"})
	raises("label column 3 out of range: the file has 2 columns", data.csv, ok, {label = 3})
	raises("data.csv: unknown option 'labels' (options: header, label, sep)", data.csv, ok,
		{labels = "a"})
	local empty = tmpfile(".empty.csv", "")
	raises("data.csv: " .. empty .. ": empty file", data.csv, empty)
	raises("cannot open: No such file or directory", data.csv, tmpbase .. ".nope.csv")
end)

-- ---------------------------------------------------------------------------
-- Fashion-MNIST
-- ---------------------------------------------------------------------------

test("fashion_mnist: a missing directory says what to install", function()
	raises("install the Debian package dataset-fashion-mnist", data.fashion_mnist,
		tmpbase .. ".nodir")
	raises("data.fashion_mnist: dir must be a string, got number", data.fashion_mnist, 5)
end)

local FASHION = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"
local have_fashion = io.open(FASHION, "rb")
if have_fashion then
	have_fashion:close()
	test("fashion_mnist loads 60000/10000 with the right ranges", function()
		local ds = data.fashion_mnist()
		eq(ds.train.x:size(1), 60000, "train images")
		eq(ds.train.x:size(2), 784, "pixels")
		eq(ds.train.y:size(1), 60000, "train labels")
		eq(ds.test.x:size(1), 10000, "test images")
		eq(ds.test.y:size(1), 10000, "test labels")
		for _, split in ipairs{ds.train, ds.test} do
			eq(split.x:min(), 0, "min pixel")
			eq(split.x:max(), 1, "max pixel")
			eq(split.y:min(), 1, "min class")
			eq(split.y:max(), 10, "max class")
		end
		-- the test set is balanced: 1000 images per class
		local counts = {}
		for i = 1, 10000 do
			local c = ds.test.y[i]
			truthy(c == math.floor(c), "integer class")
			counts[c] = (counts[c] or 0) + 1
		end
		for c = 1, 10 do eq(counts[c], 1000, "images of class " .. c) end
		-- a pixel is value/255
		local raw = data.load_idx("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")
		local v = raw:get(1, 15, 15)
		truthy(math.abs(ds.test.x:get(1, 14 * 28 + 15) - v / 255) < 1e-7, "pixel scaling")
	end)
else
	h.skip("fashion_mnist", FASHION .. " not installed")
end

for _, p in ipairs(tmpfiles) do os.remove(p) end
h.done()
