"""roundtrip.py -- the PyTorch side of the safetensors round trip with lunet.

    roundtrip.py torch DIR   trains the models a few steps in PyTorch and writes
                             DIR/<model>_torch.safetensors (the state_dict) and
                             DIR/io_torch.safetensors (inputs and eval outputs)
    roundtrip.py check DIR   loads DIR/<model>_lunet.safetensors, written by
                             lunet, into the same architectures (strict) and
                             compares their outputs with DIR/io_lunet.safetensors

Files are read and written with the standard library and numpy only (the
safetensors package is not used).  The models are those of
tests/torch/roundtrip.lua: an MLP, the Fashion-MNIST CNN of
experiments/fashion_cnn.lua (two conv blocks with BatchNorm, then
Linear-BatchNorm-ReLU-Dropout-Linear), and three models of sequences
{N,T,6} -> {N,T,5} trained on a label per token: a 2-layer LSTM (dropout
between its layers) and a 2-layer GRU, each under a Linear, and causal
self-attention between Linear-LayerNorm and GELU-Linear.
"""
import json
import struct
import sys

import numpy as np
import torch
from torch import nn

TOL = 1e-5
DTYPES = {"F32": "<f4", "F64": "<f8", "F16": "<f2", "I64": "<i8"}
NAMES = {np.dtype("float32"): "F32", np.dtype("float64"): "F64", np.dtype("float16"): "F16",
         np.dtype("int64"): "I64"}


def write_safetensors(path, tensors, metadata=None):
    """Writes {name: ndarray} in the safetensors layout: 8-byte little-endian
    header length, JSON header (padded with spaces to 8 bytes), data."""
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name in sorted(tensors):
        a = np.asarray(tensors[name], order="C")  # (ascontiguousarray makes scalars 1-D)
        raw = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": NAMES[a.dtype], "shape": list(a.shape),
                        "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for raw in blobs:
            f.write(raw)


def read_safetensors(path):
    """{name: ndarray}, metadata of a safetensors file."""
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {})
    base, out, end = 8 + n, {}, 8 + n
    for name, info in header.items():
        b, e = info["data_offsets"]
        out[name] = np.frombuffer(data[base + b:base + e], dtype=DTYPES[info["dtype"]]).reshape(
            info["shape"])
        end = max(end, base + e)
    assert end == len(data), f"{path}: {len(data) - end} bytes after the last tensor"
    return out, meta


def mlp():
    return nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 16), nn.Tanh(),
                         nn.Linear(16, 5))


def cnn(c1=16, c2=32, hidden=128):
    return nn.Sequential(
        nn.Conv2d(1, c1, 3, padding=1), nn.BatchNorm2d(c1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 3, padding=1), nn.BatchNorm2d(c2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(c2 * 7 * 7, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Dropout(0.2),
        nn.Linear(hidden, 10))


# The recurrent layers and attention as they sit in a Sequential in lunet:
# {N,T,features} in, the sequence of outputs alone out (PyTorch's return
# the final state or the attention weights too).  Subclasses, so that the
# state_dict keys stay the layer's own (0.weight_ih_l0, 0.out_proj.weight).
class LSTM(nn.LSTM):
    def forward(self, x):
        return super().forward(x)[0]


class GRU(nn.GRU):
    def forward(self, x):
        return super().forward(x)[0]


class CausalSelfAttention(nn.MultiheadAttention):
    def forward(self, x):
        t = x.shape[1]
        mask = torch.triu(torch.ones(t, t, dtype=torch.bool), diagonal=1)
        return super().forward(x, x, x, attn_mask=mask, need_weights=False)[0]


def lstm():
    return nn.Sequential(LSTM(6, 16, num_layers=2, dropout=0.1, batch_first=True),
                         nn.Linear(16, 5))


def gru():
    return nn.Sequential(GRU(6, 16, num_layers=2, batch_first=True), nn.Linear(16, 5))


def attention():
    return nn.Sequential(nn.Linear(6, 16), nn.LayerNorm(16),
                         CausalSelfAttention(16, 4, dropout=0.1, batch_first=True),
                         nn.GELU(), nn.Linear(16, 5))


# name: (builder, shape of one sample, classes); a 2-D shape is a sequence
# {T, features} with a label per token
MODELS = {"mlp": (mlp, (20,), 5), "cnn": (cnn, (1, 28, 28), 10), "lstm": (lstm, (7, 6), 5),
          "gru": (gru, (7, 6), 5), "attention": (attention, (7, 6), 5)}


def train_torch(model, shape, classes, steps=5, batch=16):
    """A few SGD steps on random data, so that weights and BatchNorm's
    running statistics move away from their initial values."""
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loss = nn.CrossEntropyLoss()
    model.train()
    seq = len(shape) == 2
    for _ in range(steps):
        x = torch.randn(batch, *shape)
        y = torch.randint(0, classes, (batch, shape[0]) if seq else (batch,))
        opt.zero_grad()
        loss(model(x).reshape(-1, classes), y.reshape(-1)).backward()
        opt.step()


def cmd_torch(d):
    torch.manual_seed(17)
    io = {}
    for name, (build, shape, classes) in MODELS.items():
        model = build()
        train_torch(model, shape, classes)
        model.eval()
        x = torch.randn(8, *shape)
        with torch.no_grad():
            y = model(x)
        sd = {k: v.detach().numpy() for k, v in model.state_dict().items()}
        write_safetensors(f"{d}/{name}_torch.safetensors", sd, {"format": "pt"})
        io[f"{name}.x"] = x.numpy()
        io[f"{name}.y"] = y.numpy()
        print(f"torch: {name} trained 5 steps, {len(sd)} state entries written")
    write_safetensors(f"{d}/io_torch.safetensors", io)


def cmd_check(d):
    io, _ = read_safetensors(f"{d}/io_lunet.safetensors")
    worst = 0.0
    for name, (build, _, _) in MODELS.items():
        sd, meta = read_safetensors(f"{d}/{name}_lunet.safetensors")
        assert meta.get("format") == "pt", meta
        model = build()
        # strict: every key present with its shape, no extra key
        model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in sd.items()}, strict=True)
        for k, v in model.state_dict().items():
            if k.endswith("num_batches_tracked"):
                assert v.dtype == torch.int64 and int(v) == io[f"{name}.steps"], (k, v)
        model.eval()
        with torch.no_grad():
            y = model(torch.from_numpy(io[f"{name}.x"].copy())).numpy()
        want = io[f"{name}.y"]
        assert y.shape == want.shape, (y.shape, want.shape)
        diff = float(np.max(np.abs(y - want)))
        worst = max(worst, diff)
        print(f"lunet -> torch: {name}: largest |output difference| {diff:.3g} "
              f"(outputs up to {float(np.max(np.abs(want))):.3g})")
        if not diff <= TOL:
            sys.exit(f"lunet -> torch: {name}: outputs differ by {diff:.3g} > {TOL}")
    return worst


if __name__ == "__main__":
    torch.set_num_threads(1)
    if len(sys.argv) != 3 or sys.argv[1] not in ("torch", "check"):
        sys.exit("usage: roundtrip.py torch|check DIR")
    (cmd_torch if sys.argv[1] == "torch" else cmd_check)(sys.argv[2])
