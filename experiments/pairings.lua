-- pairings.lua -- every output activation x loss: is it defined, is it
-- canonical, and how far is N*dL/dz from (y_hat - y)?
--
-- For the canonical pairings -- (identity, mse), (sigmoid, bce),
-- (softmax, cross_entropy) -- the gradient at the pre-activation is exactly
-- the "error signal" (y_hat - y)/N, so the last column is zero up to
-- rounding.  For every other pairing it is the chain rule, and the column
-- shows how far the error signal is from the true gradient.
--
--   lunet experiments/pairings.lua [seed]
local lunet = lunet or require "lunet"
local nn = lunet.nn

local seed = tonumber(arg and arg[1]) or 1
lunet.seed(seed)
local N, C = 16, 5
local activations = {"identity", "sigmoid", "tanh", "relu", "softmax"}
local losses = {"mse", "bce", "cross_entropy"}

-- Targets suited to each loss, as the matrix y the formula compares with.
local function target_for(loss)
	if loss == "cross_entropy" then
		local y = lunet.zeros(N, C)
		for i = 1, N do
			y:set(i, (i - 1) % C + 1, 1)
		end
		return y
	elseif loss == "bce" then
		return lunet.rand(N, C)
	else
		return lunet.randn(N, C)
	end
end

print(string.format("%-10s %-14s %-8s %-10s %s", "activation", "loss", "defined", "canonical",
                    "max |N*dL/dz - (y_hat - y)|"))
for _, act in ipairs(activations) do
	for _, loss in ipairs(losses) do
		local ok, head = pcall(nn.OutputLoss, act, loss)
		if not ok then
			local why = tostring(head):gsub("^.-OutputLoss: ", "")
			print(string.format("%-10s %-14s %-8s %-10s %s", act, loss, "no", "-", why))
		else
			local z = lunet.randn(N, C) * 2
			local y = target_for(loss)
			head:forward(z, y)
			local dz = head:backward(z, y)
			local diff = (dz * N - (head.output - y)):abs():max()
			print(string.format("%-10s %-14s %-8s %-10s %.3e", act, loss, "yes",
			                    tostring(head.canonical), diff))
		end
	end
end
