"""char_torch.py -- the PyTorch twins of experiments/char_lstm.lua and
experiments/char_transformer.lua: the same models, data split, sizes,
steps, optimiser and schedule, for comparing validation bits per byte.

    /usr/bin/python3 experiments/bench/char_torch.py lstm|transformer [--lunet=PATH]
        [--threads=N] [--key=value ...]

The configuration is lunet's: the defaults come from
experiments/char_models.lua (read through the lunet executable, PATH,
default build/lunet at the top of the project), and --key=value overrides
them as in the lunet scripts (--epochs=1, --text=FILE).  So does the
corpus: data.fortunes() names the files and the split, and this script
reads the same files in the same order, builds the same byte vocabulary
(the distinct bytes, in byte order) and checks that the sizes agree.

Each epoch trains on the windows of the training text in a random order
(full batches), then prints one line

    epoch 1  train_loss 1.9836  valid_bpb 2.3410  seconds 61.2  (steps 1149, 19238 tokens/s)

and the generated samples.  The module also gives torch_bench.py its lstm
and transformer workloads (build_model, train_step).
"""
import math
import os
import subprocess
import sys
import time

import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
MODELS_LUA = os.path.join(ROOT, "experiments", "char_models.lua")


# ---- what lunet says ----------------------------------------------------------------

def lunet_lines(lunet, code):
    """The lines a Lua chunk prints when run by the lunet executable."""
    try:
        out = subprocess.run([lunet, "-e", code], check=True, capture_output=True, text=True)
    except FileNotFoundError:
        sys.exit(f"char_torch.py: {lunet} not found: build lunet first (cmake --build build), "
                 "or pass --lunet=PATH")
    except subprocess.CalledProcessError as e:
        sys.exit(f"char_torch.py: {lunet} failed:\n{e.stderr}")
    return out.stdout.splitlines()


def lunet_config(lunet, model):
    """The default configuration of `model` in char_models.lua, typed."""
    code = (f"local m = dofile({MODELS_LUA!r}) "
            f"for k, v in pairs(m.config.{model}) do "
            "print(k, math.type(v) or type(v), tostring(v)) end")
    config = {}
    for line in lunet_lines(lunet, code):
        key, kind, value = line.split("\t")
        config[key] = {"integer": int, "float": float, "string": str,
                       "boolean": lambda s: s == "true"}[kind](value)
    return config


def corpus(lunet, text):
    """(train ids, valid ids, vocabulary size, vocabulary bytes): the
    corpus data.fortunes() assembles, read here from the files it names."""
    arg = f"{{files = {{{text!r}}}}}" if text else ""
    code = (f"local c = lunet.data.fortunes({arg}) "
            "print(c.train:size(1), c.valid:size(1), #c.vocab) "
            "for _, f in ipairs(c.files) do print(f) end")
    lines = lunet_lines(lunet, code)
    ntrain, nvalid, nvocab = (int(v) for v in lines[0].split("\t"))
    raw = b"".join(open(f, "rb").read() for f in lines[1:])
    if len(raw) != ntrain + nvalid:
        sys.exit(f"char_torch.py: the files hold {len(raw)} bytes, lunet read {ntrain + nvalid}")
    vocab = sorted(set(raw))
    if len(vocab) != nvocab:
        sys.exit(f"char_torch.py: {len(vocab)} distinct bytes here, {nvocab} in lunet")
    table = torch.zeros(256, dtype=torch.long)
    table[torch.tensor(vocab)] = torch.arange(len(vocab))
    ids = table[torch.frombuffer(bytearray(raw), dtype=torch.uint8).long()]
    return ids[:ntrain], ids[ntrain:], len(vocab), bytes(vocab)


def parse_args(argv):
    """(model, lunet path, threads, {key: raw value})."""
    if not argv or argv[0] not in ("lstm", "transformer"):
        sys.exit(__doc__.split("\n\n")[1])
    model, lunet, threads, over = argv[0], os.path.join(ROOT, "build", "lunet"), None, {}
    for a in argv[1:]:
        if not a.startswith("--") or "=" not in a:
            sys.exit(f"char_torch.py: expected --key=value, got {a!r}")
        key, value = a[2:].split("=", 1)
        key = key.replace("-", "_")
        if key == "lunet":
            lunet = value
        elif key == "threads":
            threads = int(value)
        else:
            over[key] = value
    return model, lunet, threads, over


def apply_overrides(config, over):
    for key, value in over.items():
        if key not in config:
            sys.exit(f"char_torch.py: unknown option --{key} (known: {', '.join(sorted(config))})")
        kind = type(config[key])
        config[key] = (value == "true") if kind is bool else kind(value)
    return config


# ---- the models, initialised as lunet's ------------------------------------------------

class CharLSTM(nn.Module):
    """Embedding -> LSTM (batch first) -> Linear: {N,T} ids to {N,T,V} logits."""

    def __init__(self, V, cfg):
        super().__init__()
        self.embed = nn.Embedding(V, cfg["embed"])            # N(0,1), as lunet
        self.lstm = nn.LSTM(cfg["embed"], cfg["hidden"], cfg["layers"], batch_first=True)
        self.head = nn.Linear(cfg["hidden"], V)
        nn.init.kaiming_normal_(self.head.weight, mode="fan_in", nonlinearity="relu")
        nn.init.zeros_(self.head.bias)                         # lunet's Linear default

    def forward(self, x):
        return self.head(self.lstm(self.embed(x))[0])


class Block(nn.Module):
    """Pre-LayerNorm block: x + attn(ln1(x)), then x + mlp(ln2(x))."""

    def __init__(self, d, heads):
        super().__init__()
        self.ln1 = nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.ln2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x, mask):
        h = self.ln1(x)
        x = x + self.attn(h, h, h, attn_mask=mask, need_weights=False)[0]
        return x + self.mlp(self.ln2(x))


class CharTransformer(nn.Module):
    """Token + learned position embeddings, pre-LN blocks, LayerNorm, Linear.
    Every weight N(0, 0.02), biases 0, LayerNorm 1 and 0 (set alike in
    char_models.lua)."""

    def __init__(self, V, cfg):
        super().__init__()
        d, T = cfg["d"], cfg["seq_len"]
        self.tok = nn.Embedding(V, d)
        self.pos = nn.Embedding(T, d)
        self.blocks = nn.ModuleList(Block(d, cfg["heads"]) for _ in range(cfg["layers"]))
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, V)
        self.register_buffer("mask", torch.triu(torch.full((T, T), float("-inf")), 1))
        for name, p in self.named_parameters():
            if p.dim() == 2:
                nn.init.normal_(p, 0.0, 0.02)
            elif not name.endswith(("ln1.weight", "ln2.weight", "ln.weight")):
                nn.init.zeros_(p)

    def forward(self, x):
        t = x.shape[1]
        h = self.tok(x) + self.pos(torch.arange(t))
        for b in self.blocks:
            h = b(h, self.mask[:t, :t])
        return self.head(self.ln(h))


def build_model(kind, V, cfg):
    """(model, optimiser, schedule: step -> lr) as the lunet script makes them."""
    if kind == "lstm":
        model = CharLSTM(V, cfg)
        opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"])
        total = cfg["_total_steps"]

        def schedule(step):   # optim.schedules.cosine(lr, total)
            s = min(step, total)
            return cfg["lr"] * (1 + math.cos(math.pi * s / total)) / 2
    else:
        model = CharTransformer(V, cfg)
        opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], betas=(0.9, cfg["beta2"]),
                                weight_decay=cfg["weight_decay"])
        warm, total, lr0, lr_min = cfg["warmup"], cfg["_total_steps"], cfg["lr"], cfg["lr_min"]

        def schedule(step):   # optim.schedules.warmup(lr, warmup, cosine(lr, total - warmup, lr_min))
            if step < warm:
                return lr0 * (step + 1) / warm
            s = min(step - warm, max(total - warm, 1))
            return lr_min + (lr0 - lr_min) * (1 + math.cos(math.pi * s / max(total - warm, 1))) / 2
    return model, opt, schedule


def train_step(model, opt, crit, x, y, clip):
    """One step: forward, the mean cross-entropy over the N*T tokens,
    backward, gradient norm clipped to clip, the optimiser's step."""
    opt.zero_grad()
    logits = model(x)
    loss = crit(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), clip)
    opt.step()
    return loss.item()


# ---- data and measures, as char_models.lua ---------------------------------------------

def windows(ids, T):
    """x and y {W,T}: the W = (L-1)//T disjoint windows and their next bytes."""
    W = (ids.shape[0] - 1) // T
    return ids[:W * T].view(W, T), ids[1:W * T + 1].view(W, T)


@torch.no_grad()
def bits_per_byte(model, ids, cfg):
    model.eval()
    xs, ys = windows(ids, cfg["seq_len"])
    total, count = 0.0, 0
    for i in range(0, xs.shape[0], cfg["batch"]):
        x, y = xs[i:i + cfg["batch"]], ys[i:i + cfg["batch"]]
        logits = model(x)
        total += nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                             y.reshape(-1), reduction="sum").item()
        count += y.numel()
    model.train()
    return total / count / math.log(2)


@torch.no_grad()
def sample(model, vocab, cfg, n, length):
    model.eval()
    start = vocab.index(ord("\n")) if ord("\n") in vocab else 0
    ctx = torch.full((n, 1), start, dtype=torch.long)
    for _ in range(length):
        logits = model(ctx[:, -cfg["seq_len"]:])[:, -1] / cfg["temperature"]
        nxt = torch.multinomial(torch.softmax(logits, -1), 1)
        ctx = torch.cat([ctx, nxt], 1)
    model.train()
    return [bytes(vocab[i] for i in row[1:].tolist()).decode("utf-8", "replace") for row in ctx]


def main():
    kind, lunet, threads, over = parse_args(sys.argv[1:])
    if threads:
        torch.set_num_threads(threads)
    cfg = apply_overrides(lunet_config(lunet, kind), over)
    torch.manual_seed(cfg["seed"])
    t0 = time.perf_counter()
    train, valid, V, vocab = corpus(lunet, cfg["text"])
    T, B = cfg["seq_len"], cfg["batch"]
    xs, ys = windows(train, T)
    steps = xs.shape[0] // B
    if cfg["steps"] < 0:
        sys.exit(f"char_torch.py: --steps={cfg['steps']}: expected 0 (whole epochs) or more")
    if 0 < cfg["steps"] < steps:
        steps = cfg["steps"]
    cfg["_total_steps"] = cfg["epochs"] * steps
    model, opt, schedule = build_model(kind, V, cfg)
    crit = nn.CrossEntropyLoss()
    nparams = sum(p.numel() for p in model.parameters())
    print(f"char_{kind} (PyTorch {torch.__version__}, {torch.get_num_threads()} threads): "
          f"{train.shape[0] + valid.shape[0]} bytes, {valid.shape[0]} held out, vocabulary {V}; "
          f"{nparams} parameters; {steps} steps per epoch (loaded in {time.perf_counter() - t0:.1f} s)")
    print("config " + " ".join(f"{k}={v}" for k, v in sorted(cfg.items()) if not k.startswith("_")))
    step = 0
    for epoch in range(1, cfg["epochs"] + 1):
        perm = torch.randperm(xs.shape[0], generator=torch.Generator().manual_seed(cfg["seed"] + epoch))
        start, total = time.perf_counter(), 0.0
        for k in range(steps):
            idx = perm[k * B:(k + 1) * B]
            for g in opt.param_groups:
                g["lr"] = schedule(step)
            total += train_step(model, opt, crit, xs[idx], ys[idx], cfg["clip"])
            step += 1
        seconds = time.perf_counter() - start
        bpb = bits_per_byte(model, valid, cfg)
        print(f"epoch {epoch}  train_loss {total / steps:.4f}  valid_bpb {bpb:.4f}  "
              f"seconds {seconds:.1f}  (steps {steps}, {steps * B * T / seconds:.0f} tokens/s)",
              flush=True)
        for i, text in enumerate(sample(model, list(vocab), cfg, cfg["samples"], cfg["sample_len"])):
            print(f"--- sample {i + 1} (temperature {cfg['temperature']:g}):\n{text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
