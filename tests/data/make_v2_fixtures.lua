-- make_v2_fixtures.lua -- wrote the files of format version 2 in this
-- directory, which tests/lua/test_save.lua loads to prove that files of
-- that version (module records without wiring) still load.
--
-- It was run once, by a lunet whose lunet.save wrote format version 2:
--   build/lunet tests/data/make_v2_fixtures.lua tests/data
-- Do not run it again with a newer lunet (the test checks that the files
-- are still of version 2).
--
-- The model nests containers (a Sequential in a Sequential), the one kind
-- of container version 2 knew; v2_model_io.lunet holds an input and the
-- output the model gave.
local lunet = lunet or require "lunet"
local nn = lunet.nn

local dir = assert(arg[1], "usage: make_v2_fixtures.lua DIR")

lunet.seed(303)
local model = nn.Sequential{
	nn.Conv2d(1, 2, 3, {padding = 1}), nn.BatchNorm(2), nn.ReLU(), nn.MaxPool2d(2),
	nn.Sequential{nn.Flatten(), nn.Linear(2 * 4 * 4, 4), nn.Tanh()},
	nn.Linear(4, 3),
}
for _ = 1, 2 do model:forward(lunet.randn(4, 1, 8, 8)) end
model:evaluate()
lunet.save(dir .. "/v2_model.lunet", model)
local x = lunet.randn(5, 1, 8, 8)
lunet.save(dir .. "/v2_model_io.lunet", {x = x, y = model:forward(x):clone()})
