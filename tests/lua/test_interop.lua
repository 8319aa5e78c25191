-- test_interop.lua -- model:state_dict() under PyTorch's names,
-- model:load_state_dict with its checks (strict and not), custom Lua
-- modules inside containers, and lunet.save_safetensors /
-- lunet.load_safetensors, with every documented error and its message.
-- (The round trip with PyTorch itself is tests/sh/test_torch_roundtrip.sh.)
local lunet = lunet or require "lunet"
local nn, optim = lunet.nn, lunet.optim

local SEED = 4242
local harness = dofile((arg[0]:match("^(.*)/") or ".") .. "/harness.lua")
local h = harness.new{seed = SEED, reseed = true}
local test, check, eq, raises = h.test, h.check, h.eq, h.raises

local dir, path = h.tempdir()
local read_file, write_file = h.read_file, h.write_file

local function sorted_keys(t)
	local keys = {}
	for k in pairs(t) do keys[#keys + 1] = k end
	table.sort(keys)
	return table.concat(keys, " ")
end

local function shape(t) return table.concat(t:shape(), "x") end

local function same(a, b) return a:allclose(b, 0, 0) end

-- the layout of experiments/fashion_cnn.lua
local function fashion_cnn()
	return nn.Sequential{
		nn.Conv2d(1, 16, 3, {padding = 1}), nn.BatchNorm(16), nn.ReLU(), nn.MaxPool2d(2),
		nn.Conv2d(16, 32, 3, {padding = 1}), nn.BatchNorm(32), nn.ReLU(), nn.MaxPool2d(2),
		nn.Flatten(),
		nn.Linear(32 * 7 * 7, 128), nn.BatchNorm(128), nn.ReLU(), nn.Dropout(0.2),
		nn.Linear(128, 10),
	}
end

-- A hand-written safetensors file: header JSON and raw data bytes.
local function safetensors_bytes(header, data)
	return string.pack("<I8", #header) .. header .. (data or "")
end

-- ---- state_dict --------------------------------------------------------------------

test("state_dict: the keys torch.nn.Sequential gives the Fashion CNN", function()
	local sd = fashion_cnn():state_dict()
	-- torch: [k for k in model.state_dict()] of the same nn.Sequential
	local want = {}
	for _, i in ipairs{0, 4, 9, 13} do
		want[#want + 1] = i .. ".weight"
		want[#want + 1] = i .. ".bias"
	end
	for _, i in ipairs{1, 5, 10} do
		for _, n in ipairs{"weight", "bias", "running_mean", "running_var", "num_batches_tracked"} do
			want[#want + 1] = i .. "." .. n
		end
	end
	table.sort(want)
	eq(sorted_keys(sd), table.concat(want, " "), "keys")
	eq(shape(sd["0.weight"]), "16x1x3x3", "0.weight")
	eq(shape(sd["9.weight"]), "128x1568", "9.weight")
	eq(shape(sd["10.running_var"]), "128", "10.running_var")
	eq(math.type(sd["10.num_batches_tracked"]), "integer", "num_batches_tracked is an integer")
	eq(sd["10.num_batches_tracked"], 0, "num_batches_tracked")
end)

test("state_dict: nested containers, a bare layer, layers without state", function()
	local inner = nn.Sequential{nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2, {bias = false})}
	local m = nn.Sequential{nn.Linear(5, 4), nn.ReLU(), inner}
	eq(sorted_keys(m:state_dict()), "0.bias 0.weight 2.0.bias 2.0.weight 2.2.weight", "nested")
	eq(sorted_keys(inner:state_dict()), "0.bias 0.weight 2.weight", "inner alone")
	eq(sorted_keys(nn.Linear(2, 2):state_dict()), "bias weight", "a bare Linear")
	eq(sorted_keys(nn.ReLU():state_dict()), "", "ReLU has no state")
	eq(sorted_keys(nn.Sequential():state_dict()), "", "an empty Sequential")
end)

test("state_dict: views of the model's own tensors", function()
	local m = nn.Sequential{nn.Linear(3, 2)}
	local sd = m:state_dict()
	check(same(sd["0.weight"], m:get(1).weight), "same values")
	sd["0.weight"]:fill(0.5)
	eq(m:get(1).weight:get(2, 3), 0.5, "writing the view writes the model")
end)

test("state_dict: num_batches_tracked counts training forwards only", function()
	local bn = nn.BatchNorm(3)
	local x = lunet.randn(4, 3)
	for _ = 1, 3 do bn:forward(x) end
	eq(bn:state_dict().num_batches_tracked, 3, "after 3 training forwards")
	bn:evaluate()
	bn:forward(x)
	eq(bn:state_dict().num_batches_tracked, 3, "evaluate mode does not count")
end)

test("state_dict: errors", function()
	raises("module:state_dict: got table instead of the module: call methods with a colon, "
		.. "m:state_dict(), not m.state_dict()", nn.Linear(1, 1).state_dict, {})
	raises("Linear:state_dict: takes no arguments, got 1", function()
		return nn.Linear(1, 1):state_dict(1)
	end)
	local m = nn.Linear(2, 2)
	getmetatable(m).__close(m)
	raises("Linear:state_dict: module is closed", function() return m:state_dict() end)
end)

-- ---- load_state_dict -------------------------------------------------------------------

test("load_state_dict: same outputs, buffers and counters too", function()
	local a, b = fashion_cnn(), fashion_cnn()
	local x = lunet.randn(6, 1, 28, 28)
	for _ = 1, 2 do a:forward(x) end  -- move the running statistics
	local missing, unexpected = b:load_state_dict(a:state_dict())
	eq(#missing + #unexpected, 0, "nothing missing or unexpected")
	eq(b:state_dict()["5.num_batches_tracked"], 2, "counter loaded")
	a:evaluate()
	b:evaluate()
	check(same(a:forward(x):clone(), b:forward(x)), "identical outputs")
	check(same(a:state_dict()["10.running_mean"], b:state_dict()["10.running_mean"]), "buffers")
end)

test("load_state_dict: strict lists every problem and changes nothing", function()
	local m = nn.Sequential{nn.Linear(3, 2), nn.BatchNorm(2)}
	local before = m:get(1).weight:clone()
	local d = {
		["0.weight"] = lunet.ones(3, 2),        -- transposed
		["1.weight"] = lunet.ones(2),
		["1.bias"] = "zero",                    -- not a tensor
		["1.running_mean"] = lunet.zeros(2),
		["1.running_var"] = lunet.ones(2),
		["1.num_batches_tracked"] = 2.5,        -- not an integer
		["2.weight"] = lunet.ones(1),           -- unexpected
		extra = 1,
		[7] = lunet.ones(1),                    -- not even a string key
	}
	local err = raises("Sequential:load_state_dict: 1 missing key (0.bias); 3 unexpected keys "
		.. "(2.weight, 7, extra); 3 mismatches (", m.load_state_dict, m, d)
	check(err:find("0.weight: shape {2,3} in the model, {3,2} in the dict", 1, true), err)
	check(err:find("1.bias: expected a tensor of shape {2}, got a string", 1, true), err)
	check(err:find("1.num_batches_tracked: expected an integer, got 2.5", 1, true), err)
	check(same(m:get(1).weight, before), "the model is unchanged")
	-- strict=false still refuses a mismatch (as PyTorch does)
	raises("3 mismatches", m.load_state_dict, m, d, {strict = false})
end)

test("load_state_dict: strict=false loads what matches, returns the rest", function()
	local src = nn.Sequential{nn.Linear(3, 2), nn.Linear(2, 2)}
	local dst = nn.Sequential{nn.Linear(3, 2), nn.Linear(2, 2)}
	local d = src:state_dict()
	d["1.bias"] = nil
	d["2.weight"] = lunet.ones(2, 2)
	local err = raises("1 missing key (1.bias); 1 unexpected key (2.weight) (strict=false loads the "
		.. "keys that match)", dst.load_state_dict, dst, d)
	check(not err:find("mismatch"), err)
	local before = dst:get(2).bias:clone()
	local missing, unexpected = dst:load_state_dict(d, {strict = false})
	eq(table.concat(missing, ","), "1.bias", "missing")
	eq(table.concat(unexpected, ","), "2.weight", "unexpected")
	check(same(dst:get(1).weight, src:get(1).weight), "0.weight loaded")
	check(same(dst:get(2).weight, src:get(2).weight), "1.weight loaded")
	check(same(dst:get(2).bias, before), "1.bias untouched")
	local m2, u2 = dst:load_state_dict(src:state_dict(), {strict = true})
	eq(#m2 + #u2, 0, "strict=true returns empty lists")
end)

test("load_state_dict: integer entries take integral numbers and one-element tensors", function()
	local bn = nn.BatchNorm(2)
	local d = bn:state_dict()
	d.num_batches_tracked = 7.0
	bn:load_state_dict(d)
	eq(bn:state_dict().num_batches_tracked, 7, "from 7.0")
	d.num_batches_tracked = lunet.tensor{9}
	bn:load_state_dict(d)
	eq(bn:state_dict().num_batches_tracked, 9, "from a {1} tensor (PyTorch accepts it)")
	d.num_batches_tracked = lunet.tensor{1, 2}
	raises("num_batches_tracked: expected an integer, got a tensor of shape {2}",
		bn.load_state_dict, bn, d)
	d.num_batches_tracked = "3"
	raises("num_batches_tracked: expected an integer, got string", bn.load_state_dict, bn, d)
end)

test("load_state_dict: argument and option errors", function()
	local m = nn.Linear(2, 2)
	local d = m:state_dict()
	raises("Linear:load_state_dict: expected a table of tensors (a state dict), got no value",
		m.load_state_dict, m)
	raises("Linear:load_state_dict: expected a table of tensors (a state dict), got a module",
		m.load_state_dict, m, nn.Linear(2, 2))
	raises("Linear:load_state_dict: options must be a table, got boolean", m.load_state_dict, m,
		d, true)
	raises("Linear:load_state_dict: unknown option 'strikt' (options: strict)", m.load_state_dict,
		m, d, {strikt = false})
	raises("Linear:load_state_dict: option 'strict' must be a boolean, got number",
		m.load_state_dict, m, d, {strict = 0})
	local closed = lunet.ones(2)
	getmetatable(closed).__close(closed)
	d.bias = closed
	raises("bias: the tensor is closed", m.load_state_dict, m, d)
end)

-- ---- custom modules written in Lua ---------------------------------------------------------

-- A Lua module y = x * scale (scale {n}) with its state under "scale".
local function Scale(n, with_load)
	local s = {scale = lunet.ones(n), loaded = 0}
	function s:forward(x) return x * self.scale end
	function s:backward(x, gy) return gy * self.scale end
	function s:parameters() return {self.scale}, {lunet.zeros(n)} end
	function s:state_dict() return {scale = self.scale, ["sub.count"] = self.loaded} end
	if with_load then
		function s:load_state_dict(d)
			self.scale:copy(d.scale)
			self.loaded = d["sub.count"]
		end
	end
	return s
end

test("custom modules: their state_dict under their position", function()
	local s = Scale(3)
	local m = nn.Sequential{nn.Linear(3, 3), s}
	local sd = m:state_dict()
	eq(sorted_keys(sd), "0.bias 0.weight 1.scale 1.sub.count", "keys")
	check(rawequal(sd["1.scale"], s.scale), "the module's own tensor")
end)

test("custom modules: loaded through load_state_dict, or into their tensors", function()
	local with = Scale(2, true)
	local m = nn.Sequential{with}
	m:load_state_dict{["0.scale"] = lunet.tensor{2, 3}, ["0.sub.count"] = 5}
	eq(with.scale:get(2), 3, "scale set by its load_state_dict")
	eq(with.loaded, 5, "integer given to its load_state_dict")
	-- values other than tensors are its own to check; a missing one is missing
	m:load_state_dict{["0.scale"] = lunet.tensor{2, 3}, ["0.sub.count"] = 0.5}
	eq(with.loaded, 0.5, "any value given to its load_state_dict")
	raises("1 missing key (0.sub.count)", m.load_state_dict, m, {["0.scale"] = lunet.tensor{2, 3}})

	local without = Scale(2, false)
	local m2 = nn.Sequential{nn.Sequential{without}}
	-- without load_state_dict a number cannot be put back
	raises("0.0.sub.count: the custom module at '0.0' has no load_state_dict method to set this "
		.. "number", m2.load_state_dict, m2, {["0.0.scale"] = lunet.tensor{4, 5},
		["0.0.sub.count"] = 1})
	without.state_dict = function(self) return {scale = self.scale} end
	m2:load_state_dict{["0.0.scale"] = lunet.tensor{4, 5}}
	eq(without.scale:get(1), 4, "copied into the tensor its state_dict returned")
	raises("0.0.scale: shape {2} in the model, {3} in the dict", m2.load_state_dict, m2,
		{["0.0.scale"] = lunet.ones(3)})
end)

test("custom modules: parameters without state_dict is an error", function()
	local s = Scale(2)
	s.state_dict = nil
	local m = nn.Sequential{nn.Linear(2, 2), s}
	raises("Sequential:state_dict: the custom module at '1' has parameters but no state_dict "
		.. "method", m.state_dict, m)
	raises("Sequential:load_state_dict: the custom module at '1' has parameters but no "
		.. "state_dict method", m.load_state_dict, m, {})
	-- one without parameters has no state
	local plain = {forward = function(_, x) return x end, backward = function(_, _, g) return g end}
	eq(sorted_keys(nn.Sequential{plain, nn.Linear(1, 1)}:state_dict()), "1.bias 1.weight", "keys")
	local bad = Scale(1)
	bad.state_dict = function() return 3 end
	raises("the custom module at '0': state_dict returned number, expected a table",
		nn.Sequential{bad}.state_dict, nn.Sequential{bad})
	bad.state_dict = function() return {[1] = lunet.ones(1)} end
	raises("the custom module at '0' has a state_dict key that is a number, not a string",
		nn.Sequential{bad}.state_dict, nn.Sequential{bad})
end)

test("custom modules: closing the model from inside does not free it under the walk", function()
	local m
	local s = Scale(2)
	function s:state_dict()
		getmetatable(m).__close(m)
		collectgarbage()
		return {scale = self.scale}
	end
	m = nn.Sequential{nn.Linear(2, 2), s, nn.Linear(2, 2)}
	local sd = m:state_dict()
	eq(sorted_keys(sd), "0.bias 0.weight 1.scale 2.bias 2.weight", "walk completed")
	collectgarbage()
	eq(shape(sd["2.weight"]), "2x2", "views still valid")
end)

-- ---- safetensors files ---------------------------------------------------------------------

test("safetensors: a model saved and loaded gives identical outputs", function()
	local a, b = fashion_cnn(), fashion_cnn()
	local x = lunet.randn(3, 1, 28, 28)
	a:forward(x)
	lunet.save_safetensors(path("cnn.safetensors"), a)
	local d, meta = lunet.load_safetensors(path("cnn.safetensors"))
	eq(meta.format, "pt", "default metadata")
	eq(d["1.num_batches_tracked"], 1, "counter")
	eq(math.type(d["1.num_batches_tracked"]), "integer", "an integer")
	b:load_state_dict(d)
	a:evaluate()
	b:evaluate()
	check(same(a:forward(x):clone(), b:forward(x)), "identical outputs")
end)

test("safetensors: the file's layout", function()
	lunet.save_safetensors(path("d.safetensors"), {b = lunet.tensor{{1, 2}}, a = 3, c = 0.5},
		{note = "hi"})
	local s = read_file(path("d.safetensors"))
	local n = string.unpack("<I8", s)
	eq((8 + n) % 8, 0, "data starts at a multiple of 8")
	eq(#s, 8 + n + 8 + 8 + 4, "I64 a, F32 b {1,2}, F32 c")
	local header = s:sub(9, 8 + n)
	check(header:find('"a":{"dtype":"I64","shape":[],"data_offsets":[0,8]}', 1, true), header)
	check(header:find('"b":{"dtype":"F32","shape":[1,2],"data_offsets":[8,16]}', 1, true), header)
	check(header:find('"c":{"dtype":"F32","shape":[],"data_offsets":[16,20]}', 1, true), header)
	check(header:find('"__metadata__":{"note":"hi","format":"pt"}', 1, true), header)
	eq(string.unpack("<i8", s, 9 + n), 3, "a's bytes")
	eq(string.unpack("<f", s, 9 + n + 12), 2.0, "b[2]'s bytes")
	local d, meta = lunet.load_safetensors(path("d.safetensors"))
	eq(d.a, 3, "a")
	eq(math.type(d.a), "integer", "a stays an integer")
	eq(d.c, 0.5, "c")
	eq(math.type(d.c), "float", "c is a float")
	eq(shape(d.b), "1x2", "b")
	eq(meta.note, "hi", "metadata")
	-- a given format is kept
	lunet.save_safetensors(path("e.safetensors"), {}, {format = "np"})
	local _, m2 = lunet.load_safetensors(path("e.safetensors"))
	eq(m2.format, "np", "format given")
end)

test("safetensors: other dtypes read as float32, views and transposes written row-major", function()
	local f64 = string.pack("<dd", 0.1, -2)
	local i64 = string.pack("<i8<i8", 5, -(1 << 40))
	local header = '{"x":{"dtype":"F64","shape":[2],"data_offsets":[0,16]},'
		.. '"n":{"dtype":"I64","shape":[2],"data_offsets":[16,32]},'
		.. '"h":{"dtype":"F16","shape":[1],"data_offsets":[32,34]},'
		.. '"b":{"dtype":"BF16","shape":[],"data_offsets":[34,36]}}'
	write_file(path("dt.safetensors"), safetensors_bytes(header, f64 .. i64 .. "\x00\x3c\x00\xc0"))
	local d = lunet.load_safetensors(path("dt.safetensors"))
	eq(d.x[1], string.unpack("<f", string.pack("<f", 0.1)), "F64 rounded to float")
	eq(d.n[2], -(1 << 40) + 0.0, "I64 tensor as float")
	eq(d.h[1], 1.0, "F16")
	eq(d.b, -2.0, "a BF16 scalar is a number")

	local t = lunet.tensor{{1, 2, 3}, {4, 5, 6}}
	lunet.save_safetensors(path("v.safetensors"), {col = t:narrow(2, 2, 1), tt = t:transpose()})
	local v = lunet.load_safetensors(path("v.safetensors"))
	check(same(v.col, lunet.tensor{{2}, {5}}), "a strided view")
	check(same(v.tt, lunet.tensor{{1, 4}, {2, 5}, {3, 6}}), "a transpose")
end)

test("safetensors: errors when saving", function()
	local p = path("bad.safetensors")
	raises("lunet.save_safetensors: expected a module or a table of tensors, got number",
		lunet.save_safetensors, p, 5)
	raises("lunet.save_safetensors: state dict keys must be strings, got number 1",
		lunet.save_safetensors, p, {lunet.ones(1)})
	raises("lunet.save_safetensors: state dict key 'a...' contains a NUL byte",
		lunet.save_safetensors, p, {["a\0b"] = lunet.ones(1)})
	raises("lunet.save_safetensors: 'w' is a boolean, expected a tensor or a number",
		lunet.save_safetensors, p, {w = true})
	local closed = lunet.ones(1)
	getmetatable(closed).__close(closed)
	raises("lunet.save_safetensors: 'w' is a closed tensor", lunet.save_safetensors, p,
		{w = closed})
	raises("lunet.save_safetensors: tensor name 'x\xff' is not UTF-8 text",
		lunet.save_safetensors, p, {["x\xff"] = 1})
	raises("lunet.save_safetensors: '__metadata__' cannot be a tensor name",
		lunet.save_safetensors, p, {__metadata__ = 1})
	raises("lunet.save_safetensors: metadata must be a table of strings, got string",
		lunet.save_safetensors, p, {}, "x")
	raises("lunet.save_safetensors: metadata 'k' must be a string without NUL bytes, got number",
		lunet.save_safetensors, p, {}, {k = 1})
	raises("lunet.save_safetensors: path contains a NUL byte", lunet.save_safetensors,
		"a\0b", {})
	raises("lunet.save_safetensors: " .. dir .. "/no/such/dir/x.safetensors",
		lunet.save_safetensors, dir .. "/no/such/dir/x.safetensors", {})
	local f = io.open(p, "rb")
	check(f == nil, "nothing written")
end)

test("safetensors: errors when loading name the file and what is wrong", function()
	raises("lunet.load_safetensors: " .. path("missing") .. ": cannot open",
		lunet.load_safetensors, path("missing"))
	write_file(path("short"), "abc")
	raises("lunet.load_safetensors: " .. path("short") .. ": truncated: 3 bytes",
		lunet.load_safetensors, path("short"))
	write_file(path("gap"), safetensors_bytes(
		'{"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', "12345678"))
	raises(path("gap") .. ": bytes [0, 4) of the data belong to no tensor",
		lunet.load_safetensors, path("gap"))
	write_file(path("empty"), safetensors_bytes(
		'{"w":{"dtype":"F32","shape":[2,0],"data_offsets":[0,0]}}'))
	raises(path("empty") .. ": tensor 'w' has shape {2,0}: lunet tensors cannot be empty",
		lunet.load_safetensors, path("empty"))
	lunet.save_safetensors(path("good"), {w = lunet.ones(4)})
	local s = read_file(path("good"))
	write_file(path("cut"), s:sub(1, #s - 1))
	raises(path("cut") .. ": tensor 'w': data_offsets [0, 16] run past the end of the data (15 bytes)",
		lunet.load_safetensors, path("cut"))
	raises("lunet.load_safetensors: path contains a NUL byte", lunet.load_safetensors, "a\0b")
end)

h.done()
os.execute("rm -rf '" .. dir .. "'")
