-- make_fashion.lua DIR NTRAIN NTEST: the four Fashion-MNIST IDX files (not
-- yet gzip'd) with random pixels and labels, the same bytes every time: a
-- tiny stand-in for the real data set, for tests/sh/test_experiment_scripts.sh
-- and tests/mpi/test_experiment.sh.
local dir, ntrain, ntest = arg[1], tonumber(arg[2]), tonumber(arg[3])
local state = 12345
local function byte()
	state = (state * 1103515245 + 12345) % 2147483648
	return state // 65536 % 256
end
local function write(name, magic, dims, count, mod)
	local f = assert(io.open(dir .. "/" .. name, "wb"))
	f:write(string.pack(">I4", magic))
	for _, d in ipairs(dims) do f:write(string.pack(">I4", d)) end
	local bytes = {}
	for i = 1, count do bytes[i] = string.char(byte() % mod) end
	f:write(table.concat(bytes))
	f:close()
end
for _, split in ipairs{{"train", ntrain}, {"t10k", ntest}} do
	local name, n = split[1], split[2]
	write(name .. "-images-idx3-ubyte", 0x803, {n, 28, 28}, n * 784, 256)
	write(name .. "-labels-idx1-ubyte", 0x801, {n}, n, 10)
end
