-- char_lstm.lua -- a character-level language model in the manner of
-- char-rnn: byte embedding, a 2-layer LSTM, a linear read-out of the next
-- byte, trained on the fortunes corpus (data.fortunes: the text of
-- Debian's fortunes package, the last 5 % held out) with Adam, a cosine
-- decay of the learning rate and the gradient norm clipped.  After every
-- epoch: the validation loss in bits per byte, and texts generated at a
-- temperature.
--
--   lunet experiments/char_lstm.lua [--epochs=3] [--hidden=128] [--lr=0.002] [--text=FILE]
--   lunet experiments/char_lstm.lua --help
--   lunet experiments/char_lstm.lua --resume=runs/char_lstm/<timestamp>
--
-- Sizes, training and sampling are in char_models.lua, shared with the
-- benchmark and the PyTorch twin
-- (/usr/bin/python3 experiments/bench/char_torch.py lstm), which trains
-- the same model the same number of steps.  Each run gets a directory
-- runs/char_lstm/<timestamp>/ (config.lua, metrics.csv, checkpoint, plots).
local models = dofile((arg and arg[0] and arg[0]:match("^(.*)/") or ".") .. "/char_models.lua")

models.main("lstm", "char_lstm",
	"A 2-layer LSTM language model of bytes on the fortunes corpus (Adam).")
