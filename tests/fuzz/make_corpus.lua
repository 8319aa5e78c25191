-- make_corpus.lua -- writes the seed corpora of the fuzz targets: valid
-- files of every kind each reader takes, made by lunet itself where it
-- writes the format.  Run from the source directory:
--
--   build/lunet tests/fuzz/make_corpus.lua
--
-- It rewrites tests/fuzz/corpus/<target>/seed-* (the inputs that fuzzing
-- added, under other names, are left alone).  The seeds are deterministic
-- (lunet.seed), so running it again changes nothing unless the formats did.
local nn, optim = lunet.nn, lunet.optim
local DIR = (arg[0]:match("^(.*)/") or ".") .. "/corpus/"
lunet.seed(7)
lunet.warnings(false)

local function write(target, name, bytes)
	os.execute("mkdir -p " .. DIR .. target)
	local f = assert(io.open(DIR .. target .. "/seed-" .. name, "wb"))
	f:write(bytes)
	f:close()
end

local function slurp(path)
	local f = assert(io.open(path, "rb"))
	local s = f:read("a")
	f:close()
	return s
end

local TMP = os.tmpname()

-- ---- load: one control byte (1: fix length and checksum), then a file ----------

local function saved(v)
	lunet.save(TMP, v)
	return slurp(TMP)
end

local function trained(model, opt, x)
	local y = model:forward(x)
	model:backward(x, y:clone():fill(0.5))
	opt:step()
	return model
end

local mlp = nn.Sequential{nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2), nn.LogSoftmax()}
local adam = optim.Adam(mlp, {lr = 0.01})
trained(mlp, adam, lunet.rand(2, 3))
local cnn = nn.Sequential{nn.Conv2d(1, 2, 3, {padding = 1}), nn.BatchNorm(2), nn.ReLU(),
	nn.MaxPool2d(2), nn.AvgPool2d(1), nn.Flatten(), nn.Dropout(0.25), nn.Linear(8, 3),
	nn.Sigmoid()}
local sgd = optim.SGD(cnn, {lr = 0.1, momentum = 0.9, nesterov = true, weight_decay = 1e-4})
trained(cnn, sgd, lunet.rand(2, 1, 4, 4))
local small = nn.Sequential{nn.Linear(2, 2, {bias = false}), nn.Tanh(), nn.LeakyReLU(0.1),
	nn.Identity(), nn.Softmax(), nn.BatchNorm(2)}
small:evaluate()
local rms = optim.RMSprop(small, {lr = 0.01, centered = true})
trained(small, rms, lunet.rand(3, 2))
local shared = lunet.rand(2, 2)

local load_seeds = {
	nil_value = saved(nil),
	atoms = saved({true, false, 1, -7, 2.5, 0 / 0, 1 / 0, "text", "a\0b", math.mininteger}),
	tensor = saved(lunet.tensor{{1, 2, 3}, {4, 5, 6}}),
	tensor_4d = saved(lunet.rand(1, 2, 1, 3)),
	nested = saved({a = {b = {c = {1, 2, {d = "deep"}}}}, [1.5] = true, [false] = 0}),
	shared = saved({x = shared, y = shared, list = {shared}}),
	mlp = saved(mlp),
	checkpoint = saved({model = mlp, opt = adam, epoch = 3, name = "mlp"}),
	cnn = saved({model = cnn, opt = sgd}),
	small = saved({model = small, opt = rms}),
	optim_alone = saved(adam),
	two_models = saved({mlp, small, mlp}),
}
for name, bytes in pairs(load_seeds) do write("load", name, "\1" .. bytes) end
write("load", "raw_checkpoint", "\0" .. load_seeds.checkpoint)
local data_dir = (arg[0]:match("^(.*)/tests/fuzz/") or ".") .. "/tests/data/"
for _, v1 in ipairs{"v1_model", "v1_adam", "v1_sgd", "v1_model_io"} do
	write("load", v1, "\1" .. slurp(data_dir .. v1 .. ".lunet"))
end

-- ---- safetensors: the file itself ------------------------------------------------

lunet.save_safetensors(TMP, cnn)
write("safetensors", "cnn", slurp(TMP))
lunet.save_safetensors(TMP, {w = lunet.rand(2, 3), n = 5, x = 0.25})
write("safetensors", "dict_scalars", slurp(TMP))

-- A file by hand: header JSON padded to a multiple of 8, then the data.
local function st_file(header, data)
	header = header .. string.rep(" ", (8 - #header % 8) % 8)
	return string.pack("<I8", #header) .. header .. data
end
write("safetensors", "dtypes", st_file(
	'{"__metadata__":{"format":"pt","note":"x"},' ..
	'"a":{"dtype":"F16","shape":[2],"data_offsets":[0,4]},' ..
	'"b":{"dtype":"BF16","shape":[1,2],"data_offsets":[4,8]},' ..
	'"c":{"dtype":"F64","shape":[],"data_offsets":[8,16]},' ..
	'"d":{"dtype":"I64","shape":[1],"data_offsets":[16,24]},' ..
	'"e":{"dtype":"F32","shape":[0,3],"data_offsets":[24,24]}}',
	string.pack("<I2I2I2I2dI8", 0x3c00, 0x7c00, 0x3f80, 0xff80, 0.5, 42)))
write("safetensors", "empty", st_file("{}", ""))

-- ---- idx: raw files of every type, and one gzip'd ---------------------------------

local function idx(code, dims, fmt, values)
	local s = string.pack("BBBB", 0, 0, code, #dims)
	for _, d in ipairs(dims) do s = s .. string.pack(">I4", d) end
	for _, v in ipairs(values) do s = s .. string.pack(fmt, v) end
	return s
end
local idx_seeds = {
	u8 = idx(0x08, {2, 3}, "B", {0, 1, 2, 253, 254, 255}),
	i8 = idx(0x09, {4}, "b", {-128, -1, 0, 127}),
	i16 = idx(0x0B, {2, 1}, ">i2", {-32768, 32767}),
	i32 = idx(0x0C, {1, 1, 2}, ">i4", {-2147483648, 2147483647}),
	f32 = idx(0x0D, {3}, ">f", {1.5, -0.0, 1 / 0}),
	f64 = idx(0x0E, {2}, ">d", {1e300, 0 / 0}),
}
for name, bytes in pairs(idx_seeds) do write("idx", name, bytes) end
local f = assert(io.open(TMP, "wb"))
f:write(idx_seeds.u8)
f:close()
os.execute("gzip -n -c " .. TMP .. " > " .. DIR .. "idx/seed-u8_gz")

-- ---- csv: one control byte (see fuzz_csv.c), then the file ------------------------

local function ctl(header, label_mode, label_col, sep)
	local seps = {[","] = 0, [";"] = 1, ["\t"] = 2, [" "] = 3}
	return string.char((header and 1 or 0) | label_mode << 1 | label_col << 3 | seps[sep] << 5)
end
write("csv", "header_label", ctl(true, 2, 0, ",") .. "a,b,label\n1,2,0\n3.5,-4e3,1\n")
write("csv", "no_header", ctl(false, 1, 1, ",") .. "1,2,3\n4,5,6\r\n\n7,8,9")
write("csv", "quoted", ctl(true, 3, 0, ";") .. '\239\187\191"x ""1""";y\n" 1 ";2\n  3 ; "4"\n')
write("csv", "tabs", ctl(false, 0, 0, "\t") .. "1\t2\n3\t4\n")
write("csv", "spaces", ctl(true, 1, 3, " ") .. "p q r s\n0x10 1e-3 -0 5\n")

-- ---- text: two control bytes (see fuzz_text.c), then the file -------------------

local function text_ctl(copies, T, batch, shuffle, drop_last, own_seed)
	return string.char((copies - 1) | (T - 1) << 2,
		(batch - 1) | (shuffle and 16 or 0) | (drop_last and 32 or 0) | (own_seed and 64 or 0))
end
write("text", "ascii", text_ctl(1, 4, 3, false, false, false) .. "hello world\nthe quick brown fox\n")
write("text", "twice", text_ctl(2, 2, 2, false, true, false) .. "abcabcabd")
write("text", "shuffled", text_ctl(1, 3, 4, true, false, false) .. "0123456789abcdefghijklmnop")
write("text", "own_seed", text_ctl(3, 1, 5, true, true, true) .. "xyzzy")
write("text", "utf8", text_ctl(1, 2, 1, false, false, false) .. "na\195\175ve caf\195\169 \226\130\172")
write("text", "all_bytes", text_ctl(1, 16, 2, false, false, false) .. (function()
	local t = {}
	for b = 0, 255 do t[#t + 1] = string.char(b) end
	return table.concat(t)
end)())
write("text", "one_byte", text_ctl(1, 1, 1, false, false, false) .. "a")
write("text", "too_short", text_ctl(1, 8, 1, false, false, false) .. "abc")
write("text", "empty", text_ctl(2, 1, 1, false, false, false))

-- ---- tensor_literal: the grammar of fuzz_tensor_literal.c -------------------------

local literals = {
	vector = "{1, 2, 3}",
	matrix = "{{1, 2}, {3, 4}, {5, 6}}",
	cube = "{{{1}, {2}}, {{3}, {4}}}",
	deep = "{{{{{{{{1}}}}}}}}",
	special = "{nan, inf, -inf, 0x10, 1e39, -0.0, 9223372036854775807, 3.4028235e38}",
	ragged = "{{1, 2}, {3}}",
	keys = '{1, 2, [3] = 3, x = 4, ["y"] = {5}}',
	mixed = '{1, "2", true, nil, T, C, {}}',
	shared = "{{1, 2}, @2}",
	cycle = "{@1}",
	empty = "{}",
}
for name, s in pairs(literals) do write("tensor_literal", name, s) end

-- ---- cmdline: a line of extra config, then one argument per line --------------------

local cmd = {
	overrides = "\n--lr=0.05\n--epochs=3\n--optim=adam\n--verbose\n--name=x y",
	extra_keys = "depth=3 rate=0.5 flag=true tag=abc\n--depth=4\n--rate=1e-3\n--flag=false\n--tag=",
	resume = "\n--resume=runs/x/1\n--batch=128",
	help = "\n--lr=1\n--help",
	bad = "\n--lr=fast\n--nope=1\nstray",
	floats = "\n--scale=nan\n--scale=-inf\n--lr=0x1p-3\n--big=9007199254740993",
	dashes = "\n--batch-size=3\n--epochs=1e2",
}
for name, s in pairs(cmd) do write("cmdline", name, s) end

-- ---- dictionaries ------------------------------------------------------------------

-- An entry per line, as libFuzzer reads them: "bytes" with \xNN escapes.
local function dict_entry(bytes)
	local hex = function(c) return string.format("\\x%02x", c:byte()) end
	return '"' .. bytes:gsub('["\\]', hex):gsub('[^%w%p ]', hex) .. '"'
end
local function write_dict(name, entries)
	local f = assert(io.open((arg[0]:match("^(.*)/") or ".") .. "/" .. name .. ".dict", "wb"))
	f:write("# " .. name .. ".dict -- written by make_corpus.lua\n")
	for _, e in ipairs(entries) do f:write(dict_entry(e), "\n") end
	f:close()
end

-- lunet's format: the magic and versions, tags, and every name a file
-- holds (classes, config, parameters, buffers, optimizers, their
-- hyper-parameters and state), raw and as a str (u64 length, bytes).
local names = {"Linear", "Conv2d", "BatchNorm", "Sequential", "MaxPool2d", "AvgPool2d",
	"Dropout", "ReLU", "Sigmoid", "Tanh", "Identity", "Softmax", "LogSoftmax", "LeakyReLU",
	"Flatten", "SGD", "Adam", "RMSprop", "weight", "bias", "running_mean", "running_var", "k",
	"stride", "padding", "n", "eps", "momentum", "p", "nin", "nout", "cin", "cout", "slope",
	"lr", "alpha", "beta1", "beta2", "centered", "decoupled", "nesterov", "weight_decay",
	"exp_avg", "exp_avg_sq", "grad_avg", "square_avg", "momentum_buffer"}
local load_dict = {"LUNET\0", "LUNET\0\1\0", "LUNET\0\2\0", string.pack("<I8", 0),
	string.pack("<I8", 1), string.pack("<I8", 0xffffffffffffffff), string.pack("<d", 0 / 0)}
for tag = 0, 10 do load_dict[#load_dict + 1] = string.char(tag) end
for _, n in ipairs(names) do
	load_dict[#load_dict + 1] = n
	load_dict[#load_dict + 1] = string.pack("<s8", n)
end
write_dict("load", load_dict)

write_dict("safetensors", {'"dtype"', '"shape"', '"data_offsets"', '"__metadata__"', '"F32"',
	'"F16"', '"BF16"', '"F64"', '"I64"', '"I32"', '"format"', '"pt"', "[]", "[0]",
	"18446744073709551615", "9223372036854775807", "{}", ":", ",", "\\u0000",
	string.pack("<I8", 0), string.pack("<I8", 0xffffffffffffffff)})

write_dict("idx", {"\0\0\8\1", "\0\0\9\2", "\0\0\11\1", "\0\0\12\3", "\0\0\13\1",
	"\0\0\14\8", "\31\139\8\0", "\0\0\0\0", "\255\255\255\255", "\0\1\0\0"})

write_dict("csv", {",", ";", '"', '""', "\r\n", "\239\187\191", "label", "y", "nan", "inf",
	"-inf", "1e39", "0x1p3", "3.4028235e38", "1e-46", "  "})

write_dict("tensor_literal", {"{", "}", "{{", "}}", ",", ";", "nil", "true", "false", "nan",
	"inf", "-inf", "T", "C", "@1", "@2", '""', "[1]=", "x=", "0x", "1e308", "9223372036854775807",
	"-9223372036854775808", "3.4028236e38"})

write_dict("cmdline", {"--", "=", "--resume=", "--help", "-h", "true", "false", "nan", "inf",
	"0x", "1e", "--lr=", "--epochs=", "--optim=", "--verbose", "--name=", "--scale=", "--big=",
	"--batch=", "9223372036854775807", "9007199254740993", "\n"})

os.remove(TMP)
print("seed corpora written under " .. DIR)
