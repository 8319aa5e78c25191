-- data.lua -- the pure-Lua part of lunet.data: Fashion-MNIST and mini-batches.
-- Called with the lunet table; extends lunet.data (load_idx, csv and gather
-- come from C, in src/lua/ldata.c).
local lunet = ...
local data = lunet.data

local DEFAULT_FASHION_DIR = "/usr/share/datasets/fashion-mnist"
local FASHION_FILES = {
	train = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte"},
	test = {"t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"},
}

-- Loads dir/name.gz, or dir/name when only the uncompressed file is there.
-- A missing file is an error that says how to get it.
local function load_fashion_file(dir, name)
	local ok, t = pcall(data.load_idx, dir .. "/" .. name .. ".gz")
	if ok then return t end
	if not tostring(t):find("cannot open", 1, true) then error(t, 0) end
	local ok2, t2 = pcall(data.load_idx, dir .. "/" .. name)
	if ok2 then return t2 end
	if not tostring(t2):find("cannot open", 1, true) then error(t2, 0) end
	error(string.format("data.fashion_mnist: cannot find %s/%s.gz (%s); install the Debian " ..
		"package dataset-fashion-mnist (apt install dataset-fashion-mnist) or pass the " ..
		"directory that holds the Fashion-MNIST files", dir, name, t), 0)
end

-- The names of the ten Fashion-MNIST classes, in the order of their labels.
local FASHION_CLASSES = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
	"Sneaker", "Bag", "Ankle boot"}

-- data.fashion_mnist([dir]) -> {train={x=,y=}, test={x=,y=}, classes={...}}
-- x is {n,784} with pixels scaled to [0,1]; y is {n} with classes 1..10
-- (the file's labels 0..9 plus one, as Lua counts); classes[c] is the
-- name of class c ("T-shirt/top", ..., "Ankle boot").
function data.fashion_mnist(dir)
	if dir ~= nil and type(dir) ~= "string" then
		error("data.fashion_mnist: dir must be a string, got " .. type(dir), 2)
	end
	dir = dir or DEFAULT_FASHION_DIR
	local out = {}
	for split, files in pairs(FASHION_FILES) do
		local images = load_fashion_file(dir, files[1])
		local labels = load_fashion_file(dir, files[2])
		local shape = images:shape()
		if #shape ~= 3 or shape[2] ~= 28 or shape[3] ~= 28 then
			error(string.format("data.fashion_mnist: %s: expected images of shape {n,28,28}, got {%s}",
				files[1], table.concat(shape, ",")), 0)
		end
		local n = shape[1]
		if labels:dim() ~= 1 or labels:size(1) ~= n then
			error(string.format("data.fashion_mnist: %s has %d images but %s has shape {%s}",
				files[1], n, files[2], table.concat(labels:shape(), ",")), 0)
		end
		if images:min() < 0 or images:max() > 255 then
			error("data.fashion_mnist: " .. files[1] .. ": pixel values outside 0..255", 0)
		end
		if labels:min() < 0 or labels:max() > 9 then
			error("data.fashion_mnist: " .. files[2] .. ": labels outside 0..9", 0)
		end
		local x = images:reshape(n, 784)
		x:div_(255)
		labels:add_(1)
		out[split] = {x = x, y = labels}
	end
	out.classes = {table.unpack(FASHION_CLASSES)}
	return out
end

local function is_tensor(v)
	return lunet.is_tensor(v)
end

-- Raises "data.batches: <what> is closed" when the tensor t was closed
-- (before the call, or by the loop body between two batches).
local function check_open(t, what, level)
	if t ~= nil and not pcall(t.dim, t) then
		error("data.batches: " .. what .. " is closed", level + 1)
	end
end

-- The share of a batch of `len` samples that rank `rank` of `size`
-- takes: positions first .. first+count-1 of the batch (1-based).  The
-- batch is cut into size contiguous pieces whose lengths differ by at most
-- one, the longer ones to the lower ranks.
local function shard_of(len, rank, size)
	local q, r = len // size, len % size
	local count = q + (rank < r and 1 or 0)
	local first = 1 + rank * q + math.min(rank, r)
	return first, count
end

-- The rank and size for shard=true, checking that the job is up and that
-- every rank holds as many samples.
local function shard_setup(count)
	local dist = lunet.dist
	if not dist.initialized() then
		if not dist.available then
			error("data.batches: shard=true needs lunet.dist, but this lunet was built " ..
				"without MPI (configure it with cmake -DLUNET_MPI=ON)", 3)
		end
		error("data.batches: shard=true needs lunet.dist.init() first", 3)
	end
	local counts = lunet.tensor{count, -count}
	dist.allreduce(counts, "max")
	if counts[1] ~= count or -counts[2] ~= count then
		error(string.format("data.batches: shard=true needs the same samples on every " ..
			"rank, but x has from %d to %d samples across ranks", -counts[2], counts[1]), 3)
	end
	return dist.rank(), dist.size()
end

-- data.batches(x, y, n[, {shuffle=false, drop_last=false, shard=false}]) -> iterator
-- data.batches(x, n[, opts])                                 -> iterator of x only
--
--   for xb, yb in data.batches(x, y, 64, {shuffle=true}) do ... end
--
-- Visits every sample (row along dimension 1) exactly once, n at a time;
-- the last batch is shorter when n does not divide the sample count
-- (unless drop_last).  With shuffle, the order is a fresh permutation from
-- lunet's seeded generator (lunet.seed) for each call; rows are gathered
-- into two buffers made once per call and reused for every batch.
-- Without shuffle, batches are views of x and y.
--
-- Either way a batch is only valid until the next iteration, which may
-- overwrite it (shuffle) - clone() a batch to keep it - and writing into a
-- batch without shuffle writes into x/y.  No copy of the whole data set is
-- made.
--
-- shard=true (under lunet.dist, every rank holding the same x and y):
-- n is the global batch, and each rank takes its own contiguous piece of
-- every batch of n, of n // size or n // size + 1 samples (the longer
-- pieces go to the lower ranks).  Every rank draws the permutation (as one
-- process would, so the random streams stay in step) and then takes rank
-- 0's, so all ranks cut the same order.  The batches of all ranks together
-- are exactly the batches one process would make, and
-- dist.average_gradients, which weights each rank's gradient by the size
-- of its piece, gives the gradient one process would compute on the whole
-- batch.  A last batch with fewer samples than ranks is skipped by every
-- rank (a rank cannot take an empty piece).
local BATCHES_OPTIONS = {{"shuffle", "boolean"}, {"drop_last", "boolean"}, {"shard", "boolean"}}

function data.batches(x, y, n, opts, ...)
	local extra = select("#", ...)
	if type(y) == "number" then
		if opts ~= nil then extra = extra + 1 end
		y, n, opts = nil, y, n
	end
	if extra > 0 then
		error("data.batches: expected nothing after the options, got " .. extra .. " more argument(s)", 2)
	end
	if not is_tensor(x) then
		error("data.batches: x must be a tensor, got " .. type(x), 2)
	end
	if y ~= nil and not is_tensor(y) then
		error("data.batches: y must be a tensor, got " .. type(y), 2)
	end
	if math.type(n) ~= "integer" or n < 1 then
		error("data.batches: batch size must be an integer >= 1, got " .. tostring(n), 2)
	end
	local bad = lunet._optionerror("data.batches", BATCHES_OPTIONS, opts)
	if bad then error(bad, 2) end
	opts = opts or {}
	check_open(x, "x", 2)
	check_open(y, "y", 2)
	local count = x:size(1)
	if y and y:size(1) ~= count then
		error(string.format("data.batches: x has %d samples but y has %d", count, y:size(1)), 2)
	end
	local rank, size = 0, 1
	if opts.shard then rank, size = shard_setup(count) end
	local set_share = opts.shard and lunet.dist._set_share
	local last = count
	if opts.drop_last then last = count - count % n end
	local i = 1

	-- the next batch as (first sample position, length) of this rank's
	-- piece, or nil at the end; advances i past the whole batch
	local function next_piece()
		if i > last then return nil end
		local len = math.min(n, last - i + 1)
		if len < size then return nil end  -- fewer samples than ranks: skipped by all
		local first, piece = shard_of(len, rank, size)
		first = i + first - 1
		i = i + len
		if set_share then set_share(piece) end
		return first, piece
	end

	if not opts.shuffle then
		return function()
			local first, len = next_piece()
			if not first then return nil end
			check_open(x, "x", 2)
			check_open(y, "y", 2)
			local xb = x:narrow(1, first, len)
			local yb = y and y:narrow(1, first, len)
			return xb, yb
		end
	end

	local perm = lunet.randperm(count)
	if size > 1 then lunet.dist.broadcast(perm, 0) end
	local size_b = math.min(n, count)
	size_b = size_b // size + (size_b % size > 0 and 1 or 0)
	local function buffer(t)
		local shape = t:shape()
		shape[1] = size_b
		return lunet.zeros(shape)
	end
	local xbuf = buffer(x)
	local ybuf = y and buffer(y)
	return function()
		local first, len = next_piece()
		if not first then return nil end
		check_open(x, "x", 2)
		check_open(y, "y", 2)
		local xb, yb = xbuf, ybuf
		if not pcall(xb.dim, xb) or (yb and not pcall(yb.dim, yb)) then
			-- the loop body closed the batch it was given: make a new one
			xbuf, ybuf = buffer(x), y and buffer(y)
			xb, yb = xbuf, ybuf
		end
		if len < size_b then
			xb = xbuf:narrow(1, 1, len)
			yb = ybuf and ybuf:narrow(1, 1, len)
		end
		data.gather(xb, x, perm, first)
		if yb then data.gather(yb, y, perm, first) end
		return xb, yb
	end
end

-- ---- text: next-byte windows and the fortunes corpus ---------------------------------

-- data.sequences(ids, batch, T[, {shuffle=false, seed=, drop_last=false}]) -> iterator
--
--   for x, y in data.sequences(txt.ids, 32, 64, {shuffle = true}) do ... end
--
-- Cuts the text ids {L} into W = (L-1) // T disjoint windows of T ids
-- (window w, 1-based: ids (w-1)*T+1 .. w*T) and yields them batch at a
-- time as x {batch,T}; y {batch,T} holds the next id of every position of
-- x (the window shifted by one: ids (w-1)*T+2 .. w*T+1).  Each call is one
-- epoch: every window once; the last few ids (up to T) are never an input.
--
-- Order of the windows:
--   - without shuffle, in `batch` streams: the windows are split into
--     batch runs of nb = W // batch consecutive windows, and batch k takes
--     window k of every run, so that row r of batch k+1 continues row r of
--     batch k in the text (what a stateful recurrent layer, carrying its
--     state from batch to batch, needs).  The W - batch*nb windows left
--     over (at the end of the text) make a last, shorter batch.
--   - with shuffle, in a random order: a permutation of the windows drawn
--     from lunet's generator (lunet.seed), or, given seed (an integer),
--     from a generator of its own seeded with it, leaving lunet's alone:
--     the same seed gives the same order (pass seed + epoch for a new
--     order each epoch).  The last batch is shorter when batch does not
--     divide W.
-- drop_last leaves the shorter last batch out (every batch is then full).
--
-- x and y are two buffers made once per call (and a narrowed view of each
-- for the shorter last batch): every batch overwrites them, and nothing is
-- allocated per batch.  clone() a batch to keep it; closing one inside the
-- loop is an error at the next batch.  Changing ids during the loop
-- changes the batches still to come.
-- A value as an error message shows it (NaN as "nan", whatever its sign).
local function shown(v)
	if v ~= v then return "nan" end
	return tostring(v)
end

local SEQUENCES_OPTIONS = {{"shuffle", "boolean"}, {"seed", "number"}, {"drop_last", "boolean"}}
local MAX_WINDOWS = 1 << 24  -- a float tensor holds the window indices exactly up to here

function data.sequences(ids, batch, T, opts, ...)
	local fn = "data.sequences"
	if select("#", ...) > 0 then
		error(string.format("%s: expected at most 4 arguments, got %d", fn, 4 + select("#", ...)), 2)
	end
	if not is_tensor(ids) then
		error(fn .. ": ids must be a tensor, got " .. type(ids), 2)
	end
	if not pcall(ids.dim, ids) then error(fn .. ": ids is closed", 2) end
	if ids:dim() ~= 1 then
		error(string.format("%s: ids must be 1-D {L}, got shape {%s}", fn,
			table.concat(ids:shape(), ",")), 2)
	end
	if math.type(batch) ~= "integer" or batch < 1 then
		error(fn .. ": batch must be an integer >= 1, got " .. shown(batch), 2)
	end
	if math.type(T) ~= "integer" or T < 1 then
		error(fn .. ": T must be an integer >= 1, got " .. shown(T), 2)
	end
	local bad = lunet._optionerror(fn, SEQUENCES_OPTIONS, opts)
	if bad then error(bad, 2) end
	opts = opts or {}
	if opts.seed ~= nil then
		if math.type(opts.seed) ~= "integer" then
			error(fn .. ": option 'seed' must be an integer, got " .. shown(opts.seed), 2)
		end
		if not opts.shuffle then
			error(fn .. ": option 'seed' orders a shuffle; give shuffle=true with it", 2)
		end
	end
	local L = ids:size(1)
	local W = (L - 1) // T
	if W < 1 then
		error(string.format("%s: ids holds %d ids; a window of T=%d inputs and its next id " ..
			"needs at least %.0f", fn, L, T, T + 1.0), 2)
	end
	if W > MAX_WINDOWS then
		error(string.format("%s: %d windows of T=%d, at most %d (a larger T makes fewer)", fn, W,
			T, MAX_WINDOWS), 2)
	end
	local nfull, rest = W // batch, W % batch
	if opts.drop_last then rest = 0 end
	if nfull == 0 and rest == 0 then
		error(string.format("%s: drop_last=true and only %d window(s) of T=%d, fewer than a " ..
			"batch of %d", fn, W, T, batch), 2)
	end

	local src = ids:contiguous()
	local xs = src:narrow(1, 1, W * T):reshape(W, T)
	local ys = src:narrow(1, 2, W * T):reshape(W, T)
	local order
	if opts.shuffle then
		order = lunet.randperm(W, opts.seed)
	elseif nfull == 0 then
		order = lunet.arange(W)
	else
		-- entry k*batch + r (0-based) is window r*nfull + k + 1: batch k, row r
		local runs = ((lunet.arange(batch) - 1) * nfull):reshape(1, batch)
		local streams = (runs + (lunet.arange(nfull) - 1):reshape(nfull, 1) + 1):reshape(nfull * batch)
		order = streams
		if W > nfull * batch then
			order = lunet.cat({streams, lunet.arange(W):narrow(1, nfull * batch + 1,
				W - nfull * batch)}, 1)
		end
	end

	local rows = math.min(batch, W)
	local xbuf, ybuf = lunet.zeros(rows, T), lunet.zeros(rows, T)
	local xlast, ylast = xbuf, ybuf
	if rest > 0 and nfull > 0 then
		xlast, ylast = xbuf:narrow(1, 1, rest), ybuf:narrow(1, 1, rest)
	end
	local nbatches = nfull + (rest > 0 and 1 or 0)
	local k = 0
	return function()
		if k >= nbatches then return nil end
		local xb, yb = xbuf, ybuf
		if k == nfull then xb, yb = xlast, ylast end
		if not pcall(xb.dim, xb) or not pcall(yb.dim, yb) then
			error(fn .. ": a batch was closed inside the loop; its buffer is reused by the next " ..
				"batch (clone() a batch to keep it)", 2)
		end
		data.gather(xb, xs, order, k * batch + 1)
		data.gather(yb, ys, order, k * batch + 1)
		k = k + 1
		return xb, yb
	end
end

-- The text files of Debian's fortunes package (1:1.99.1-7.3, Debian 12),
-- in name order (byte order): not their .dat indexes and .u8 links, nor
-- the files of fortunes-min (fortunes, literature, riddles), which shares
-- the directory.
local FORTUNES_DIR = "/usr/share/games/fortunes"
local FORTUNES_FILES = {
	"art", "ascii-art", "computers", "cookie", "debian", "definitions", "disclaimer", "drugs",
	"education", "ethnic", "food", "goedel", "humorists", "kids", "knghtbrd", "law", "linux",
	"linuxcookie", "love", "magic", "medicine", "men-women", "miscellaneous", "news",
	"paradoxum", "people", "perl", "pets", "platitudes", "politics", "pratchett", "science",
	"songs-poems", "sports", "startrek", "tao", "translate-me", "wisdom", "work", "zippy",
}

-- data.fortunes([{files = {paths...}}]) -> corpus
--
-- The character-level corpus of the experiments (char_lstm, char_transformer
-- and their PyTorch twins, which ask this function for the files and the
-- split): the text files of Debian's fortunes package joined in name order,
-- as data.text reads them, with the last 5 % (L // 20 bytes) held out for
-- validation.  corpus is data.text's table (ids {L}, vocab, encode, decode;
-- the vocabulary is that of the whole text) plus
--   train   view of ids: the first L - L // 20 ids
--   valid   view of ids: the last L // 20 ids
--   files   the paths read, in order
-- files = {...} assembles other files the same way (the tests use a small
-- one).  A missing file is an error that says how to install the package.
local FORTUNES_OPTIONS = {{"files", "table"}}

function data.fortunes(opts, ...)
	local fn = "data.fortunes"
	if select("#", ...) > 0 then
		error(string.format("%s: expected at most 1 argument, got %d", fn, 1 + select("#", ...)), 2)
	end
	local bad = lunet._optionerror(fn, FORTUNES_OPTIONS, opts)
	if bad then error(bad, 2) end
	local files = {}
	if opts and opts.files then
		for i, f in ipairs(opts.files) do files[i] = f end
		if #files == 0 then error(fn .. ": option 'files' is an empty list", 2) end
	else
		for i, name in ipairs(FORTUNES_FILES) do files[i] = FORTUNES_DIR .. "/" .. name end
	end
	local ok, txt = pcall(data.text, files)
	if not ok then
		local msg = tostring(txt):gsub("^data%.text: ", "")
		if not (opts and opts.files) and msg:find("cannot open", 1, true) then
			msg = msg .. "; install Debian's fortunes package (apt-get install fortunes)"
		end
		error(fn .. ": " .. msg, 2)
	end
	local L = txt.ids:size(1)
	local nvalid = L // 20
	if nvalid < 2 then
		error(string.format("%s: the text holds %d bytes; holding out 5 %% for validation " ..
			"needs at least 40", fn, L), 2)
	end
	txt.train = txt.ids:narrow(1, 1, L - nvalid)
	txt.valid = txt.ids:narrow(1, L - nvalid + 1, nvalid)
	txt.files = files
	return txt
end
