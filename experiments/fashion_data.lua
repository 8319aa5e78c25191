-- fashion_data.lua -- the start the Fashion-MNIST scripts (fashion_mlp.lua,
-- fashion_cnn.lua, resnet_fashion.lua) share: the thread count, the seed,
-- the data set, the cut to --limit and the line that reports the load.
--
--   local fashion = dofile(dir .. "/fashion_data.lua")
--   local ds, train, test = fashion.load(exp)
--
-- fashion.load(exp) reads exp.config: threads (when present and > 0, the
-- threads of the matrix products), seed (lunet.seed), data (the directory
-- of the .gz files, "" for the system's copy) and limit (when present and
-- > 0, train on the first `limit` training images only).  It returns the
-- data set as data.fashion_mnist gives it (ds.classes and all), the
-- training set {x=, y=} after the cut, and the test set, and prints
--   Fashion-MNIST: <n> training and <m> test images (loaded in <t> s)
-- through exp:print.
--
-- fashion.end_epoch(exp, model, opt, e) closes an epoch the same way in the
-- three scripts: it prints
--   epoch <e.epoch>  train loss <..>  test accuracy <..>%  <s> s (<n> samples/s)
-- (samples/s from e.samples, the training images of an epoch), logs
-- epoch, train_loss, test_loss, test_accuracy and seconds to metrics.csv,
-- and saves the checkpoint.  fashion.finish(exp, acc, epochs) prints the
-- last line, "final test accuracy ...", when an epoch ran.
local lunet = lunet or require "lunet"

local M = {}

function M.load(exp)
	local config = exp.config
	-- threads and limit are options of some scripts only (rawget: reading a
	-- key a config does not have is an error)
	local threads, limit = rawget(config, "threads") or 0, rawget(config, "limit") or 0
	if threads > 0 then lunet.gemm_threads(threads) end
	lunet.seed(config.seed)
	local t0 = lunet.clock()
	local ds = lunet.data.fashion_mnist(config.data ~= "" and config.data or nil)
	local train, test = ds.train, ds.test
	if limit > 0 and limit < train.x:size(1) then
		train = {x = train.x:narrow(1, 1, limit), y = train.y:narrow(1, 1, limit)}
	end
	exp:print(string.format("Fashion-MNIST: %d training and %d test images (loaded in %.1f s)",
	                        train.x:size(1), test.x:size(1), lunet.clock() - t0))
	return ds, train, test
end

function M.end_epoch(exp, model, opt, e)
	exp:print(string.format("epoch %2d  train loss %.4f  test accuracy %.2f%%  %.1f s "
	                        .. "(%.0f samples/s)", e.epoch, e.train_loss, 100 * e.test_accuracy,
	                        e.seconds, e.samples / e.seconds))
	exp:log{epoch = e.epoch, train_loss = e.train_loss, test_loss = e.test_loss,
	        test_accuracy = e.test_accuracy, seconds = e.seconds}
	exp:checkpoint(model, opt)
end

function M.finish(exp, acc, epochs)
	if acc then
		exp:print(string.format("final test accuracy %.2f%% after %d epochs", 100 * acc, epochs))
	end
end

return M
