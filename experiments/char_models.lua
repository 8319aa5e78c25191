-- char_models.lua -- what the character-level experiments share: their
-- configurations, their two models, the validation measure, sampling and
-- the training loop.  Used by experiments/char_lstm.lua,
-- experiments/char_transformer.lua and the benchmark
-- (experiments/bench/lunet_bench.lua, workloads lstm and transformer); the
-- PyTorch twins (experiments/bench/char_torch.py) read the configurations
-- from here too, through
--
--   lunet -e 'for k, v in pairs(dofile("experiments/char_models.lua").config.lstm) do print(k, v) end'
--
-- so that both sides train the same sizes for the same steps.
--
--   local models = dofile(dir .. "/char_models.lua")
--   local model, feed = models.lstm(cfg, #corpus.vocab)
--   local bpb = models.bits_per_byte(model, feed, corpus.valid, cfg)
--   local texts = models.sample(model, feed, corpus, cfg, 3, 200)
local lunet = lunet or require "lunet"
local nn, optim, data = lunet.nn, lunet.optim, lunet.data

local M = {}

-- Defaults of each experiment (and of the benchmark's workloads).  Both
-- train on windows of seq_len bytes in a random order (data.sequences with
-- shuffle, seeded by seed + epoch, the last partial batch dropped), from a
-- zero state at every window, with the gradient norm clipped to clip.
M.config = {
	-- a 2-layer LSTM (char-rnn's size: 128 units), Adam, cosine decay to 0
	lstm = {
		epochs = 3, batch = 32, seq_len = 64, embed = 64, hidden = 128, layers = 2,
		lr = 2e-3, clip = 5.0, seed = 1, steps = 0,
		samples = 3, sample_len = 300, temperature = 0.8, text = "",
	},
	-- a causal transformer, pre-LayerNorm blocks, AdamW, warm-up then cosine
	transformer = {
		epochs = 2, batch = 32, seq_len = 64, d = 128, heads = 4, layers = 2,
		lr = 1e-3, lr_min = 1e-4, warmup = 100, weight_decay = 0.1, beta2 = 0.99, clip = 1.0,
		seed = 1, steps = 0, samples = 3, sample_len = 300, temperature = 0.8, text = "",
	},
}

-- The meaning of each key (--help).
M.help = {
	epochs = "passes over the training text",
	batch = "windows per training step",
	seq_len = "bytes per window (the length of the sequences trained on)",
	embed = "size of the byte embedding",
	hidden = "units of each LSTM layer",
	layers = "layers (LSTM layers, or transformer blocks)",
	d = "width of the transformer (embedding and attention)",
	heads = "attention heads",
	lr = "learning rate (at the start of the cosine decay, after the warm-up if any)",
	lr_min = "learning rate at the end of the cosine decay",
	warmup = "steps of linear warm-up",
	weight_decay = "AdamW's decoupled weight decay, on every parameter",
	beta2 = "AdamW's second-moment decay",
	clip = "largest gradient norm (optim.clip_grad_norm)",
	seed = "seed of the random source (weights, window order, samples)",
	steps = "training steps per epoch, at most (0: every full batch of the training text)",
	samples = "texts generated after each epoch",
	sample_len = "bytes per generated text",
	temperature = "sampling temperature (< 1: safer, > 1: wilder)",
	text = "a text file to train on instead of the fortunes corpus (\"\": data.fortunes())",
}

-- The corpus of a configuration: data.fortunes(), or cfg.text assembled
-- the same way (its last 5 % held out).
function M.corpus(cfg)
	if cfg.text ~= "" then return data.fortunes{files = {cfg.text}} end
	return data.fortunes()
end

-- Training steps per epoch: the full batches of windows of the training
-- text, or the first cfg.steps of them (in the epoch's shuffled order)
-- when cfg.steps is positive and fewer.
function M.steps_per_epoch(corpus, cfg)
	local full = ((corpus.train:size(1) - 1) // cfg.seq_len) // cfg.batch
	if cfg.steps > 0 and cfg.steps < full then return cfg.steps end
	return full
end

-- ---- the models -----------------------------------------------------------------

-- Each builder returns the model and feed, the function that makes the
-- model's input from a batch x {N,T} of byte ids (the argument of forward
-- and backward).

-- Embedding(V, embed) -> LSTM(embed, hidden, {layers}) -> Linear(hidden, V):
-- {N,T} byte ids to {N,T,V} logits of the next byte.  Default
-- initialisation (Embedding N(0,1); LSTM uniform in +-1/sqrt(hidden), as
-- PyTorch; Linear He normal with zero bias; the twin sets the same).
function M.lstm(cfg, V)
	local model = nn.Sequential{
		nn.Embedding(V, cfg.embed),
		nn.LSTM(cfg.embed, cfg.hidden, {layers = cfg.layers}),
		nn.Linear(cfg.hidden, V),
	}
	model.input_grad = false  -- byte ids have no gradient
	return model, function(x) return x end
end

-- A causal transformer over windows of up to seq_len bytes (GPT's shape):
--   h = Embedding(V, d)(ids) + Embedding(seq_len, d)(positions)
--   layers x [ h = h + MultiheadAttention(LayerNorm(h)) (causal)
--              h = h + Linear(4d, d)(GELU(Linear(d, 4d)(LayerNorm(h)))) ]
--   logits = Linear(d, V)(LayerNorm(h))
-- an nn.Graph of two inputs, the ids and their positions 1..T (feed makes
-- the positions, once per batch shape), the joins nn.Residual blocks.
-- GPT-2's initialisation: every matrix N(0, 0.02); biases 0, LayerNorm
-- weights 1 (the layers' defaults).
function M.transformer(cfg, V)
	local d, H = cfg.d, cfg.heads
	local ids, pos = nn.Input(), nn.Input()
	local h = nn.Add()(nn.Embedding(V, d)(ids), nn.Embedding(cfg.seq_len, d)(pos))
	local attention = {}
	for l = 1, cfg.layers do
		attention[l] = nn.MultiheadAttention(d, H, {causal = true})
		h = nn.Residual(nn.Sequential{nn.LayerNorm(d), attention[l]})(h)
		h = nn.Residual(nn.Sequential{
			nn.LayerNorm(d), nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d),
		})(h)
	end
	local model = nn.Graph({ids, pos}, nn.Linear(d, V)(nn.LayerNorm(d)(h)))
	for _, p in ipairs(model:parameters()) do
		if p:dim() == 2 then nn.init.normal(p, 0, 0.02) end
	end
	for _, attn in ipairs(attention) do
		attn.in_proj_bias:zero()
		attn.out_proj_bias:zero()
	end
	model.input_grad = false
	-- inputs[n][t]: the table {x, positions {n,t}} given to the graph, kept
	-- per batch shape so that a training step makes nothing new
	local inputs = {}
	local function feed(x)
		local n, t = x:size(1), x:size(2)
		inputs[n] = inputs[n] or {}
		local input = inputs[n][t]
		if not input then
			local positions = lunet.arange(t):reshape(1, t):expand(n, t):contiguous()
			input = {x, positions}
			inputs[n][t] = input
		end
		input[1] = x
		return input
	end
	return model, feed
end

-- The optimiser of each experiment: Adam for the LSTM; AdamW with
-- decoupled weight decay on every parameter for the transformer.  The
-- learning rate is set by the schedule at every step.
function M.optimiser(kind, model, cfg)
	if kind == "lstm" then return optim.Adam(model, {lr = cfg.lr}) end
	return optim.AdamW(model, {lr = cfg.lr, betas = {0.9, cfg.beta2},
		weight_decay = cfg.weight_decay})
end

-- ---- measures -------------------------------------------------------------------

-- Validation loss in bits per byte: the mean cross-entropy (nats) of the
-- next byte over every window of ids (in order, the last batch shorter),
-- over log 2.  The model is put in evaluate mode and back in train mode.
function M.bits_per_byte(model, feed, ids, cfg)
	local crit = nn.CrossEntropyLoss()
	local total, count = 0, 0
	model:evaluate()
	for x, y in data.sequences(ids, cfg.batch, cfg.seq_len) do
		local n = x:numel()
		total = total + crit:forward(model:forward(feed(x)), y) * n
		count = count + n
	end
	model:train()
	return total / count / math.log(2)
end

-- n texts of len bytes each, drawn from the model at cfg.temperature,
-- each starting after a newline (after the vocabulary's first byte if
-- the text has none).  At every step the model reads the last
-- seq_len bytes (at most) from a zero state, as it was trained, and the
-- next byte is drawn from softmax(logits / temperature) of the last
-- position (probs:multinomial).  Returns a list of strings.
function M.sample(model, feed, corpus, cfg, n, len)
	local ok, nl = pcall(corpus.encode, "\n")
	local start = ok and nl[1] or 1
	local ctx = {}
	for i = 1, n do ctx[i] = {start} end
	model:evaluate()
	for _ = 1, len do
		local t = math.min(#ctx[1], cfg.seq_len)
		local rows = {}
		for i = 1, n do rows[i] = table.move(ctx[i], #ctx[i] - t + 1, #ctx[i], 1, {}) end
		local logits = model:forward(feed(lunet.tensor(rows))):select(2, t) / cfg.temperature  -- {n,V}
		local z = logits - logits:max(2)
		local p = z:exp()
		local next_ids = (p / p:sum(2)):multinomial(1)
		for i = 1, n do ctx[i][#ctx[i] + 1] = next_ids[i][1] end
	end
	model:train()
	local texts = {}
	for i = 1, n do texts[i] = corpus.decode(table.move(ctx[i], 2, #ctx[i], 1, {})) end
	return texts
end

-- ---- the training loop of both experiments --------------------------------------------

-- The number of values in the parameters of model.
function M.count_parameters(model)
	local n = 0
	for _, p in ipairs(model:parameters()) do n = n + p:numel() end
	return n
end

-- The smallest value of each numeric key (lunet.experiment{at_least = ...}).
M.at_least = {
	epochs = 1, batch = 1, seq_len = 1, embed = 1, hidden = 1, layers = 1, lr = 0, clip = 0,
	steps = 0, samples = 0, sample_len = 0, temperature = 0,
	d = 1, heads = 1, lr_min = 0, warmup = 1, weight_decay = 0, beta2 = 0,
}

-- The help lines and lower bounds of the keys of cfg (a configuration of
-- M.config), for lunet.experiment{help = ..., at_least = ...}.
function M.options(cfg)
	local help, at_least = {}, {}
	for k in pairs(cfg) do help[k], at_least[k] = M.help[k], M.at_least[k] end
	return help, at_least
end

-- What the bounds cannot say: a temperature above 0 (the logits are
-- divided by it); for the transformer, a width that the heads divide and
-- beta2 below 1.  kind is "lstm" or "transformer".  Raises an error
-- naming the options.
function M.check(kind, cfg)
	if not (cfg.temperature > 0) then
		error(string.format("bad value --temperature=%g: expected a number > 0", cfg.temperature), 0)
	end
	if kind ~= "transformer" then return end
	if cfg.d % cfg.heads ~= 0 then
		error(string.format("bad value --d=%d: expected a multiple of --heads=%d", cfg.d, cfg.heads), 0)
	end
	if not (cfg.beta2 < 1) then
		error(string.format("bad value --beta2=%g: expected a number < 1", cfg.beta2), 0)
	end
end

-- Trains model through the run exp (lunet.experiment) on corpus.train,
-- epochs cfg.epochs, with optimiser opt whose learning rate follows
-- schedule(step) (step 0, 1, ... over the whole run).  A step is a
-- batch of cfg.batch shuffled windows (seed cfg.seed + epoch, the last
-- partial batch dropped): forward, the mean cross-entropy of the next
-- byte over the batch's tokens, backward, the gradient norm clipped to
-- cfg.clip, opt:step().  After each epoch: the validation bits per byte,
-- cfg.samples texts at cfg.temperature, a row of metrics.csv (epoch,
-- train_loss, valid_bpb, seconds) and a checkpoint.  Continues a resumed
-- run after its last epoch.  Returns the last validation bits per byte.
function M.train(exp, model, feed, opt, schedule, corpus, cfg)
	local crit = nn.CrossEntropyLoss()
	local steps = M.steps_per_epoch(corpus, cfg)
	exp:print(string.format("%d bytes (%d held out for validation), vocabulary of %d bytes; " ..
		"%d parameters; %d steps per epoch of %d x %d bytes", corpus.ids:size(1),
		corpus.valid:size(1), #corpus.vocab, M.count_parameters(model), steps, cfg.batch,
		cfg.seq_len))
	if steps < 1 then
		error(string.format("the training text (%d bytes) holds fewer than one batch of %d " ..
			"windows of %d bytes", corpus.train:size(1), cfg.batch, cfg.seq_len), 0)
	end
	exp:print("run directory " .. exp.dir)
	local done = exp:restore(model, opt)
	if done > 0 then exp:print(string.format("resumed after epoch %d", done)) end
	local bpb
	for epoch = done + 1, cfg.epochs do
		local start, total, k = lunet.clock(), 0, 0
		local order = {shuffle = true, seed = cfg.seed + epoch, drop_last = true}
		for x, y in data.sequences(corpus.train, cfg.batch, cfg.seq_len, order) do
			opt.lr = schedule((epoch - 1) * steps + k)
			opt:zero_grad()
			local input = feed(x)
			local z = model:forward(input)
			total = total + crit:forward(z, y)
			model:backward(input, crit:backward(z, y))
			optim.clip_grad_norm(model, cfg.clip)
			opt:step()
			k = k + 1
			exp:progress(k, steps, {loss = total / k})
			if k == steps then break end
		end
		local seconds = lunet.clock() - start
		bpb = M.bits_per_byte(model, feed, corpus.valid, cfg)
		exp:print(string.format("epoch %d  train_loss %.4f  valid_bpb %.4f  seconds %.1f  " ..
			"(%d steps, %.0f tokens/s)", epoch, total / k, bpb, seconds, k,
			k * cfg.batch * cfg.seq_len / seconds))
		local texts = cfg.samples > 0 and M.sample(model, feed, corpus, cfg, cfg.samples,
			cfg.sample_len) or {}
		for i, text in ipairs(texts) do
			exp:print(string.format("--- sample %d (temperature %g):\n%s", i, cfg.temperature, text))
		end
		exp:log{epoch = epoch, train_loss = total / k, valid_bpb = bpb, seconds = seconds}
		exp:checkpoint(model, opt)
	end
	return bpb
end

-- The learning-rate schedule of each experiment over total steps: for the
-- LSTM a cosine decay from lr to 0; for the transformer a linear warm-up
-- over the first cfg.warmup steps, then a cosine decay from lr to lr_min.
function M.schedule(kind, cfg, total)
	local schedules = optim.schedules
	if kind == "lstm" then return schedules.cosine(cfg.lr, total) end
	return schedules.warmup(cfg.lr, cfg.warmup,
		schedules.cosine(cfg.lr, math.max(1, total - cfg.warmup), cfg.lr_min))
end

-- An experiment script: the run (lunet.experiment{name=, description=}
-- with the configuration of kind, its help and bounds, overridden from
-- the command line), the corpus, the model of kind, its optimiser and
-- schedule, then M.train and the final line.  kind is "lstm" or
-- "transformer".
function M.main(kind, name, description)
	local defaults = M.config[kind]
	local help, at_least = M.options(defaults)
	local exp <close> = lunet.experiment{name = name, description = description,
		config = defaults, help = help, at_least = at_least}
	local cfg = exp.config
	M.check(kind, cfg)
	lunet.seed(cfg.seed)
	local corpus = M.corpus(cfg)
	local model, feed = M[kind](cfg, #corpus.vocab)
	local opt = M.optimiser(kind, model, cfg)
	local schedule = M.schedule(kind, cfg, cfg.epochs * math.max(1, M.steps_per_epoch(corpus, cfg)))
	exp:print(model)
	local bpb = M.train(exp, model, feed, opt, schedule, corpus, cfg)
	if bpb then
		exp:print(string.format("final validation %.4f bits per byte after %d epochs", bpb, cfg.epochs))
	end
end

return M
