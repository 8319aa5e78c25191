-- make_fixtures.lua DIR -- the files the C and C++ hosts of
-- tests/sh/test_host_api.sh load through lunet.h, with the outputs lunet
-- itself gives for them (raw little-endian float32, row-major):
--
--   mlp.lunet            Linear(4,16) ReLU Dropout Linear(16,10), saved whole
--   ckpt.lunet           {model = that MLP, opt = ..., epoch = 3}
--   mlp_x.f32 mlp_y.f32  an input {3,4} and the MLP's output {3,10} (evaluate mode)
--   cnn_arch.lunet       Conv2d(1,4,3,pad 1) BatchNorm ReLU MaxPool2d(2) Flatten
--                        Linear(784,10), with weights of its own
--   cnn.safetensors      the weights of a trained CNN of that architecture
--   cnn_x.f32 cnn_y.f32  an input {2,1,28,28} and that CNN's output {2,10}
--   cnn_other.safetensors  weights of a CNN with 5 channels (do not fit)
--   nomodel.lunet        a table without a model
--   truncated.lunet      mlp.lunet cut short
local lunet = lunet or require "lunet"
local nn, optim = lunet.nn, lunet.optim
local dir = assert(arg[1], "usage: make_fixtures.lua DIR")

local function write(name, s)
	local f = assert(io.open(dir .. "/" .. name, "wb"))
	f:write(s)
	f:close()
end

local function raw(t)
	local flat = t:reshape(-1):totable()
	return string.pack("<" .. string.rep("f", #flat), table.unpack(flat))
end

lunet.seed(5)
local mlp = nn.Sequential{nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 10)}
lunet.save(dir .. "/mlp.lunet", mlp)
lunet.save(dir .. "/ckpt.lunet", {model = mlp, opt = optim.SGD(mlp, {lr = 0.1}), epoch = 3})
mlp:evaluate()
local x = lunet.randn(3, 4)
write("mlp_x.f32", raw(x))
write("mlp_y.f32", raw(mlp:forward(x)))

local function cnn(c)
	return nn.Sequential{nn.Conv2d(1, c, 3, {padding = 1}), nn.BatchNorm(c), nn.ReLU(),
	                     nn.MaxPool2d(2), nn.Flatten(), nn.Linear(c * 14 * 14, 10)}
end
local trained = cnn(4)
for _ = 1, 3 do trained:forward(lunet.randn(8, 1, 28, 28)) end  -- BatchNorm's statistics move
trained:evaluate()
lunet.save_safetensors(dir .. "/cnn.safetensors", trained)
x = lunet.randn(2, 1, 28, 28)
write("cnn_x.f32", raw(x))
write("cnn_y.f32", raw(trained:forward(x)))
lunet.save(dir .. "/cnn_arch.lunet", cnn(4))
lunet.save_safetensors(dir .. "/cnn_other.safetensors", cnn(5))

lunet.save(dir .. "/nomodel.lunet", {a = 1})
local f = assert(io.open(dir .. "/mlp.lunet", "rb"))
local s = f:read("a")
f:close()
write("truncated.lunet", s:sub(1, #s // 2))
