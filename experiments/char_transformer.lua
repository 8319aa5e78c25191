-- char_transformer.lua -- a small causal transformer over bytes: token and
-- learned position embeddings, pre-LayerNorm blocks of causal self-attention
-- and a GELU MLP joined by residual connections (nn.Graph, nn.Residual),
-- trained on the fortunes corpus (data.fortunes: the text of Debian's
-- fortunes package, the last 5 % held out) with AdamW (decoupled weight
-- decay), a linear warm-up then a cosine decay of the learning rate, and
-- the gradient norm clipped.  After every epoch: the validation loss in
-- bits per byte, and texts generated at a temperature.
--
--   lunet experiments/char_transformer.lua [--epochs=2] [--d=128] [--layers=2] [--text=FILE]
--   lunet experiments/char_transformer.lua --help
--   lunet experiments/char_transformer.lua --resume=runs/char_transformer/<timestamp>
--
-- Sizes, training and sampling are in char_models.lua, shared with
-- char_lstm.lua, the benchmark and the PyTorch twin
-- (/usr/bin/python3 experiments/bench/char_torch.py transformer), which
-- trains the same model the same number of steps.  Each run gets a
-- directory runs/char_transformer/<timestamp>/.
local models = dofile((arg and arg[0] and arg[0]:match("^(.*)/") or ".") .. "/char_models.lua")

models.main("transformer", "char_transformer",
	"A causal transformer language model of bytes on the fortunes corpus (AdamW).")
