-- deltas.lua -- the delta recursion of backpropagation, by hand, against
-- the engine.
--
-- A 3-layer sigmoid network z1 = x W1' + b1, a1 = sigma(z1), ...,
-- z3 = a2 W3' + b3, with the canonical sigmoid + binary cross-entropy head
-- on z3.  By hand, with rows as samples:
--     delta3  = (y_hat - y) / N                              (from the loss)
--     delta_l = (delta_{l+1} W_{l+1}) .* sigma'(z_l),  sigma'(z_l) = a_l (1 - a_l)
--     grad W_l = delta_l' a_{l-1},   grad b_l = column sums of delta_l
-- The engine's delta of layer l is dL/dz_l: the grad_input of the Sigmoid
-- that follows Linear l (for the last layer, what the head's backward
-- returns); its weight gradient is that Linear's grad_weight.
--
--   lunet experiments/deltas.lua
local lunet = lunet or require "lunet"
local nn = lunet.nn

lunet.seed(7)
local N, sizes = 8, {4, 6, 5, 3}
local model = nn.Sequential{
	nn.Linear(sizes[1], sizes[2]), nn.Sigmoid(),
	nn.Linear(sizes[2], sizes[3]), nn.Sigmoid(),
	nn.Linear(sizes[3], sizes[4]),
}
local head = nn.OutputLoss("sigmoid", "bce")
local x = lunet.randn(N, sizes[1])
local y = lunet.rand(N, sizes[4])

-- The engine: one forward and backward pass.
local z3 = model:forward(x)
local loss = head:forward(z3, y)
local dz3 = head:backward(z3, y):clone()
model:zero_grad()
model:backward(x, dz3)

local linears = {model:get(1), model:get(3), model:get(5)}
local acts = {x, model:get(2).output, model:get(4).output}  -- a0, a1, a2
local engine_delta = {model:get(2).grad_input, model:get(4).grad_input, dz3}

-- By hand, from the top layer down.
local delta = {}
delta[3] = (head.output - y) / N
for l = 2, 1, -1 do
	local a = acts[l + 1]
	delta[l] = delta[l + 1]:matmul(linears[l + 1].weight) * a * (1 - a)
end

print(string.format("loss %.6f", loss))
print(string.format("%-6s %-10s %-26s %-26s %s", "layer", "shape", "max |delta hand - engine|",
                    "max |dW hand - engine|", "max |db hand - engine|"))
local worst = 0
for l = 1, 3 do
	local gw = delta[l]:transpose():matmul(acts[l])
	local gb = delta[l]:sum(1):reshape(-1)
	local dd = (delta[l] - engine_delta[l]):abs():max()
	local dw = (gw - linears[l].grad_weight):abs():max()
	local db = (gb - linears[l].grad_bias):abs():max()
	worst = math.max(worst, dd, dw, db)
	print(string.format("%-6d %-10s %-26.3e %-26.3e %.3e", l,
	                    "{" .. table.concat(delta[l]:shape(), ",") .. "}", dd, dw, db))
end
print(string.format("largest difference %.3e (%s)", worst, worst <= 1e-6 and "equal" or "DIFFERENT"))
if worst > 1e-6 then
	os.exit(1)
end
