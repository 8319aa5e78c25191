-- xor.lua -- a 2-8-1 network learns XOR.
--
--   lunet experiments/xor.lua [steps]
local lunet = lunet or require "lunet"
local nn, optim = lunet.nn, lunet.optim

lunet.seed(1)
local steps = tonumber(arg and arg[1]) or 2000
local x = lunet.tensor{{0, 0}, {0, 1}, {1, 0}, {1, 1}}
local y = lunet.tensor{{0}, {1}, {1}, {0}}

local model = nn.Sequential{nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1)}
model.input_grad = false   -- nobody reads the gradient with respect to x
local head = nn.OutputLoss("sigmoid", "bce")
local opt = optim.Adam(model, {lr = 0.05})
print(model)

local loss
for step = 1, steps do
	opt:zero_grad()
	local z = model:forward(x)
	loss = head:forward(z, y)
	model:backward(x, head:backward(z, y))
	opt:step()
	if step % (steps // 10) == 0 then
		print(string.format("step %5d  loss %.6f", step, loss))
	end
end

local p = head.output
local correct = 0
for i = 1, 4 do
	local want = y:get(i, 1)
	local got = p:get(i, 1)
	correct = correct + (((got > 0.5) == (want > 0.5)) and 1 or 0)
	print(string.format("%g xor %g = %g   predicted %.4f", x:get(i, 1), x:get(i, 2), want, got))
end
print(string.format("%d of 4 correct, final loss %.6f", correct, loss))
if correct < 4 then
	os.exit(1)
end
