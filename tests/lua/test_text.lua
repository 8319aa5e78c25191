-- test_text.lua -- byte-level text for language models: data.text (the
-- vocabulary, ids, encode and decode, worked out by hand), data.sequences
-- (windows and next-byte targets by hand, the stream order, drop_last,
-- shuffles reproducible with a seed, buffers reused with nothing allocated
-- per batch, every documented error), lunet.randperm's seed, and
-- data.fortunes (the split, and the corpus of Debian's fortunes package).
local lunet = lunet or require "lunet"
local data = lunet.data

local SEED = 2024
local harness = dofile((arg[0]:match("^(.*)/") or ".") .. "/harness.lua")
local h = harness.new{seed = SEED, reseed = true}
local test, check, eq, same, raises = h.test, h.check, h.eq, h.same, h.raises

local dir, path = h.tempdir()

-- The batches of an iteration, each cloned, as tables: {{x, y}, ...}.
local function collect(...)
	local out = {}
	for x, y in data.sequences(...) do
		out[#out + 1] = {x:totable(), y:totable()}
	end
	return out
end

-- ---- data.text ------------------------------------------------------------------

test("data.text: vocabulary and ids by hand", function()
	h.write_file(path("baab"), "baab\n")
	local txt = data.text(path("baab"))
	eq(table.concat(txt.vocab, "|"), "\n|a|b", "vocabulary")
	eq(#txt.vocab, 3, "vocabulary size")
	same(txt.ids:totable(), {3, 2, 2, 3, 1})
	eq(txt.decode(txt.ids), "baab\n", "decode of the ids")
	same(txt.encode("ab\nba"):totable(), {2, 3, 1, 3, 2})
end)

test("data.text: a list of files is joined in order", function()
	h.write_file(path("p1"), "xy")
	h.write_file(path("p2"), "zx")
	local txt = data.text{path("p2"), path("p1")}
	eq(table.concat(txt.vocab, "|"), "x|y|z", "vocabulary")
	same(txt.ids:totable(), {3, 1, 1, 2})
	same(data.text{path("p1")}.ids:totable(), data.text(path("p1")).ids:totable())
end)

test("data.text: every byte value, encode and decode round trip", function()
	local bytes = {}
	for b = 255, 0, -1 do bytes[#bytes + 1] = string.char(b) end
	local s = table.concat(bytes)
	h.write_file(path("all"), s)
	local txt = data.text(path("all"))
	eq(#txt.vocab, 256, "vocabulary size")
	eq(txt.vocab[1], "\0", "first byte")
	eq(txt.vocab[256], "\255", "last byte")
	eq(txt.ids[1], 256, "id of byte 255")
	eq(txt.ids[256], 1, "id of byte 0")
	eq(txt.decode(txt.ids), s, "decode(ids)")
	eq(txt.decode(txt.encode(s)), s, "decode(encode(s))")
end)

test("data.text: encode and decode as methods, tables, any shape", function()
	h.write_file(path("abc"), "abc")
	local txt = data.text(path("abc"))
	same(txt:encode("cab"):totable(), {3, 1, 2})
	eq(txt:decode({3, 1, 2}), "cab", "method form with a table")
	eq(txt.decode(lunet.tensor{{1, 2}, {3, 1}}), "abca", "a 2-D tensor, row-major")
	eq(txt.decode(lunet.tensor{{1, 2}, {3, 1}}:transpose()), "acba", "a transposed view")
	eq(txt.decode({}), "", "an empty table")
end)

test("data.text: errors name the function and the value", function()
	h.write_file(path("abc"), "abc")
	h.write_file(path("empty"), "")
	local txt = data.text(path("abc"))
	raises("data.text: " .. path("nowhere") .. ": cannot open: No such file or directory", data.text,
		path("nowhere"))
	raises("data.text: " .. path("empty") .. " is empty", data.text, path("empty"))
	raises("data.text: " .. path("empty") .. " is empty", data.text, {path("abc"), path("empty")})
	raises("data.text: " .. dir .. ": is a directory", data.text, dir)
	raises("data.text: the list of files is empty", data.text, {})
	raises("data.text: file 2 is a number, expected a path", data.text, {path("abc"), 7})
	raises("data.text: path contains a NUL byte", data.text, path("abc") .. "\0x")
	raises("data.text: expected a path or a table of paths, got number", data.text, 5)
	raises("data.text: expected at most 1 argument, got 2", data.text, path("abc"), {})
	raises("encode: byte 'd' (0x64) at position 3 is not in the vocabulary of 3 bytes",
		txt.encode, "abd")
	raises("encode: byte 0xe2 at position 1 is not in the vocabulary of 3 bytes", txt.encode,
		"\xe2\x82\xac")
	raises("encode: empty string", txt.encode, "")
	raises("decode: id 4 at position 2 is not in 1..3", txt.decode, {1, 4})
	raises("decode: id 0 at position 1 is not in 1..3", txt.decode, lunet.tensor{0, 1})
	raises("decode: id 1.5 at position 1 is not in 1..3", txt.decode, {1.5})
	raises("decode: id nan at position 2 is not in 1..3", txt.decode, lunet.tensor{1, 0 / 0})
	raises("decode: id -inf at position 1", txt.decode, {-1 / 0})
	raises("decode: entry 2 is a string, expected an id", txt.decode, {1, "b"})
	raises("decode: expected a tensor or a table of ids, got string", txt.decode, "abc")
	local t = lunet.tensor{1, 2}
	t:close()
	raises("closed", txt.decode, t)
end)

-- ---- lunet.randperm's seed --------------------------------------------------------

test("lunet.randperm(n, seed): same seed, same order; lunet's generator untouched", function()
	lunet.seed(7)
	local a = lunet.randperm(50):totable()
	lunet.seed(7)
	local p1 = lunet.randperm(50, 99):totable()
	local b = lunet.randperm(50):totable()
	same(b, a, 0)  -- the seeded call did not draw from lunet's generator
	same(lunet.randperm(50, 99):totable(), p1, 0)
	local p2 = lunet.randperm(50, 100):totable()
	check(table.concat(p1, ",") ~= table.concat(p2, ","), "seeds 99 and 100 give different orders")
	local seen = {}
	for _, v in ipairs(p1) do seen[v] = (seen[v] or 0) + 1 end
	for i = 1, 50 do eq(seen[i], 1, "count of " .. i) end
	raises("lunet.randperm: seed must be an integer, got 1.5", lunet.randperm, 5, 1.5)
	raises("lunet.randperm: seed must be an integer, got string", lunet.randperm, 5, "x")
end)

-- ---- data.sequences -----------------------------------------------------------------

-- ids 1..23 with T = 3: W = (23-1)//3 = 7 windows {1,2,3} {4,5,6} ... {19,20,21};
-- their targets {2,3,4} ... {20,21,22}; id 23 is only ever a target of
-- nothing (the last window's next id is 22).
local ids23 = lunet.arange(23)

test("data.sequences: streams by hand (batch 3, T 3)", function()
	-- nb = 7 // 3 = 2 windows per stream: streams {1,2}, {3,4}, {5,6};
	-- batch 1 takes windows 1, 3, 5, batch 2 windows 2, 4, 6, then the
	-- leftover window 7 alone
	local got = collect(ids23, 3, 3)
	same(got, {
		{{{1, 2, 3}, {7, 8, 9}, {13, 14, 15}}, {{2, 3, 4}, {8, 9, 10}, {14, 15, 16}}},
		{{{4, 5, 6}, {10, 11, 12}, {16, 17, 18}}, {{5, 6, 7}, {11, 12, 13}, {17, 18, 19}}},
		{{{19, 20, 21}}, {{20, 21, 22}}},
	}, 0)
	got = collect(ids23, 3, 3, {drop_last = true})
	eq(#got, 2, "batches with drop_last")
	same(got[2][1], {{4, 5, 6}, {10, 11, 12}, {16, 17, 18}}, 0)
end)

test("data.sequences: y is x shifted by one, on real text", function()
	h.write_file(path("hello"), "hello, world\n")
	local txt = data.text(path("hello"))
	local n = 0
	for x, y in data.sequences(txt.ids, 2, 4) do
		n = n + 1
		-- (13-1)//4 = 3 windows; streams of 1: batch 1 = windows 1, 2, batch 2 = window 3
		local want = n == 1 and {"hell", "o, w"} or {"orld"}
		local wanty = n == 1 and {"ello", ", wo"} or {"rld\n"}
		for r = 1, #want do
			eq(txt.decode(x[r]), want[r], "x row " .. r)
			eq(txt.decode(y[r]), wanty[r], "y row " .. r)
		end
	end
	eq(n, 2, "batches")
end)

test("data.sequences: fewer windows than a batch, T = 1, a batch of 1", function()
	same(collect(lunet.tensor{5, 6, 7}, 4, 1), {{{{5}, {6}}, {{6}, {7}}}}, 0)
	same(collect(lunet.tensor{5, 6, 7, 8}, 1, 2), {{{{5, 6}}, {{6, 7}}}}, 0)
	same(collect(lunet.tensor{5, 6, 7, 8, 9}, 1, 2),
		{{{{5, 6}}, {{6, 7}}}, {{{7, 8}}, {{8, 9}}}}, 0)
end)

test("data.sequences: a strided view of ids", function()
	local m = lunet.tensor{{1, 10}, {2, 20}, {3, 30}, {4, 40}, {5, 50}}
	same(collect(m:select(2, 2), 2, 2), {{{{10, 20}, {30, 40}}, {{20, 30}, {40, 50}}}}, 0)
end)

-- Every window of ids 1..L (T = 3) as its first id, over one iteration.
local function firsts(batches)
	local out = {}
	for _, b in ipairs(batches) do
		for _, row in ipairs(b[1]) do out[#out + 1] = row[1] end
	end
	return out
end

test("data.sequences: shuffle visits every window once; seeds reproduce", function()
	local ids = lunet.arange(301)  -- 100 windows of 3
	local a = collect(ids, 8, 3, {shuffle = true, seed = 5})
	local b = collect(ids, 8, 3, {shuffle = true, seed = 5})
	local c = collect(ids, 8, 3, {shuffle = true, seed = 6})
	same(b, a, 0)
	local fa, fc = firsts(a), firsts(c)
	eq(#fa, 100, "windows visited")
	eq(#a, 13, "batches: 12 of 8 and one of 4")
	eq(#a[13][1], 4, "rows of the last batch")
	check(table.concat(fa, ",") ~= table.concat(fc, ","), "seeds 5 and 6 give different orders")
	local seen = {}
	for _, v in ipairs(fa) do seen[v] = (seen[v] or 0) + 1 end
	for w = 1, 100 do eq(seen[3 * w - 2], 1, "window " .. w) end
	for _, batch in ipairs(a) do
		for r, row in ipairs(batch[1]) do
			same(batch[2][r], {row[1] + 1, row[2] + 1, row[3] + 1}, 0)
		end
	end
	eq(#collect(ids, 8, 3, {shuffle = true, seed = 5, drop_last = true}), 12, "drop_last")
end)

test("data.sequences: shuffle without a seed follows lunet.seed", function()
	local ids = lunet.arange(301)
	lunet.seed(11)
	local a = firsts(collect(ids, 8, 3, {shuffle = true}))
	local a2 = firsts(collect(ids, 8, 3, {shuffle = true}))
	lunet.seed(11)
	local b = firsts(collect(ids, 8, 3, {shuffle = true}))
	same(b, a, 0)
	check(table.concat(a, ",") ~= table.concat(a2, ","), "the next epoch is another order")
end)

test("data.sequences: the same two buffers every batch, nothing allocated", function()
	local ids = lunet.arange(10001)
	for _, opts in ipairs{{}, {shuffle = true}, {shuffle = true, seed = 3, drop_last = true}} do
		local bx, by, nb = nil, nil, 0
		local a0, heap0, a1, heap1
		collectgarbage()
		collectgarbage("stop")
		for x, y in data.sequences(ids, 16, 25, opts) do
			nb = nb + 1
			if nb == 1 then
				bx, by = x, y
				a0, heap0 = lunet.alloc_stats().allocs, collectgarbage("count")
			elseif nb < 25 then  -- the full batches (the 26th is the shorter last one)
				if not (rawequal(x, bx) and rawequal(y, by)) then
					error("batch " .. nb .. " is a new tensor")
				end
			end
			if nb == 25 then  -- the heap before alloc_stats makes its table
				heap1 = collectgarbage("count")
				a1 = lunet.alloc_stats().allocs
			end
		end
		collectgarbage("restart")
		eq(nb, 25, "batches")  -- 400 windows = 25 batches of 16
		eq(a1 - a0, 0, "engine allocations over 24 batches")
		eq(heap1 - heap0, 0, "Lua heap growth over 24 batches (KiB)")
	end
	-- with a shorter last batch: its view is made before the loop too
	local seen, n = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 0  -- sized beforehand: it must not grow
	collectgarbage()
	collectgarbage("stop")
	local a0, heap0
	for x in data.sequences(ids, 48, 25) do  -- 400 windows: 8 of 48, then 16
		if not a0 then a0, heap0 = lunet.alloc_stats().allocs, collectgarbage("count") end
		n = n + 1
		seen[n] = x:size(1)
	end
	local heap1 = collectgarbage("count")
	local a1 = lunet.alloc_stats().allocs
	collectgarbage("restart")
	eq(n, 9, "batches")
	seen[10] = nil
	same(seen, {48, 48, 48, 48, 48, 48, 48, 48, 16}, 0)
	eq(a1 - a0, 0, "engine allocations, shorter last batch included")
	eq(heap1 - heap0, 0, "Lua heap growth, shorter last batch included")
end)

test("data.sequences: changing ids during the loop changes the batches to come", function()
	local ids = lunet.arange(9)
	local got = {}
	for x in data.sequences(ids, 1, 2) do
		got[#got + 1] = x[1][1]
		ids[5] = 50
	end
	same(got, {1, 3, 50, 7}, 0)
end)

test("data.sequences: errors name the function and the value", function()
	local ids = lunet.arange(10)
	raises("data.sequences: ids must be a tensor, got table", data.sequences, {1, 2, 3}, 1, 1)
	raises("data.sequences: ids must be 1-D {L}, got shape {2,5}", data.sequences,
		ids:reshape(2, 5), 1, 1)
	raises("data.sequences: batch must be an integer >= 1, got 0", data.sequences, ids, 0, 2)
	raises("data.sequences: batch must be an integer >= 1, got 1.5", data.sequences, ids, 1.5, 2)
	raises("data.sequences: T must be an integer >= 1, got nil", data.sequences, ids, 2)
	raises("data.sequences: ids holds 10 ids; a window of T=10 inputs and its next id needs " ..
		"at least 11", data.sequences, ids, 1, 10)
	raises("data.sequences: unknown option 'shufle' (options: shuffle, seed, drop_last)",
		data.sequences, ids, 2, 2, {shufle = true})
	raises("data.sequences: option 'shuffle' must be a boolean, got number", data.sequences, ids,
		2, 2, {shuffle = 1})
	raises("data.sequences: option 'seed' must be an integer, got 0.5", data.sequences, ids, 2, 2,
		{shuffle = true, seed = 0.5})
	raises("data.sequences: option 'seed' orders a shuffle; give shuffle=true with it",
		data.sequences, ids, 2, 2, {seed = 1})
	raises("data.sequences: drop_last=true and only 4 window(s) of T=2, fewer than a batch of 5",
		data.sequences, ids, 5, 2, {drop_last = true})
	raises("data.sequences: options must be a table, got string", data.sequences, ids, 2, 2, "x")
	raises("data.sequences: expected at most 4 arguments, got 5", data.sequences, ids, 2, 2, {}, 1)
	local c = lunet.arange(10)
	c:close()
	raises("data.sequences: ids is closed", data.sequences, c, 2, 2)
	raises("data.sequences: a batch was closed inside the loop", function()
		for x in data.sequences(ids, 1, 2) do x:close() end
	end)
end)

-- ---- data.fortunes --------------------------------------------------------------------

test("data.fortunes{files=}: the last 5 % held out, the vocabulary of the whole", function()
	local body = {}
	for i = 1, 30 do body[i] = string.format("line %02d\n", i) end  -- 30 * 8 = 240 bytes
	h.write_file(path("f1"), table.concat(body, "", 1, 15))
	h.write_file(path("f2"), table.concat(body, "", 16, 30) .. "~")  -- 241 bytes in all
	local c = data.fortunes{files = {path("f1"), path("f2")}}
	eq(c.ids:size(1), 241, "bytes")
	eq(c.valid:size(1), 12, "held out: 241 // 20")
	eq(c.train:size(1), 229, "kept for training")
	eq(c.decode(c.valid), "29\nline 30\n~", "the held-out text is the end")
	eq(c.decode(c.train) .. c.decode(c.valid), table.concat(body) .. "~", "train .. valid")
	check(c.vocab[#c.vocab] == "~", "the vocabulary covers the held-out bytes")
	eq(table.concat(c.files, "|"), path("f1") .. "|" .. path("f2"), "files")
	raises("data.fortunes: " .. path("nope") .. ": cannot open", data.fortunes,
		{files = {path("nope")}})
	h.write_file(path("small"), string.rep("x", 39))
	raises("data.fortunes: the text holds 39 bytes; holding out 5 % for validation needs at " ..
		"least 40", data.fortunes, {files = {path("small")}})
	raises("data.fortunes: option 'files' is an empty list", data.fortunes, {files = {}})
	raises("data.fortunes: unknown option 'dir' (options: files)", data.fortunes, {dir = "/"})
	raises("data.fortunes: expected at most 1 argument, got 2", data.fortunes, nil, 1)
end)

local FORTUNES = "/usr/share/games/fortunes"
if io.open(FORTUNES .. "/art") then
	test("data.fortunes(): the fortunes package's text files in name order", function()
		local c = data.fortunes()
		eq(#c.files, 40, "files")
		local total = 0
		for i, f in ipairs(c.files) do
			check(f:sub(1, #FORTUNES + 1) == FORTUNES .. "/", f .. " is in " .. FORTUNES)
			check(not f:find("%.dat$") and not f:find("%.u8$"), f .. " is a text file")
			if i > 1 then check(c.files[i - 1] < f, "name order at " .. f) end
			total = total + #h.read_file(f)
		end
		eq(c.ids:size(1), total, "bytes of the corpus")
		eq(c.valid:size(1), total // 20, "held out")
		eq(c.train:size(1) + c.valid:size(1), total, "train + valid")
		eq(c.decode(c.train:narrow(1, 1, 100)), h.read_file(c.files[1]):sub(1, 100), "its start")
		local last = h.read_file(c.files[#c.files])
		eq(c.decode(c.valid:narrow(1, c.valid:size(1) - 99, 100)), last:sub(-100), "its end")
	end)
else
	h.skip("data.fortunes()", FORTUNES .. " is missing (apt-get install fortunes)")
end

os.execute("rm -rf '" .. dir .. "'")
h.done()
