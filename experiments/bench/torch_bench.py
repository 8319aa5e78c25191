"""torch_bench.py -- PyTorch's side of the benchmark, the reference.

    OPENBLAS_NUM_THREADS=1 /usr/bin/python3 experiments/bench/torch_bench.py WORKLOAD THREADS [STEPS]

Mirrors lunet_bench.lua: the same data (Fashion-MNIST read from the IDX
files of Debian's dataset-fashion-mnist with gzip + numpy, pre-loaded,
batches by slicing, in order, last partial batch dropped), the same
shapes, the same initialisation (He normal, zero biases), the same
optimiser and hyper-parameters, the same warm-up and timed steps.  The
last line printed is

    RESULT side=torch workload=... threads=... steps=... samples=... seconds=...
           samples_per_s=... peak_rss_kb=... loss=...

loss is that of the last timed step, to compare with lunet's.
"""
import gzip
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn

FASHION_DIR = "/usr/share/datasets/fashion-mnist"


def load_idx(path):
    """An IDX file (gzip-compressed) as a numpy array of its stored type."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    shape = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def fashion(batch, shape):
    """Pre-loaded training set as lists of batch views (slices)."""
    x = load_idx(os.path.join(FASHION_DIR, "train-images-idx3-ubyte.gz"))
    y = load_idx(os.path.join(FASHION_DIR, "train-labels-idx1-ubyte.gz"))
    x = torch.from_numpy(x.astype(np.float32) / 255.0).reshape(shape)
    y = torch.from_numpy(y.astype(np.int64))
    nb = x.shape[0] // batch
    return ([x[i * batch:(i + 1) * batch] for i in range(nb)],
            [y[i * batch:(i + 1) * batch] for i in range(nb)])


def he_init(model):
    """lunet's default: weights N(0, 2/fan_in), biases 0."""
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            nn.init.zeros_(m.bias)
    return model


def classifier(model, xs, ys):
    crit = nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    nb = len(xs)

    def step(i):
        xb, yb = xs[(i - 1) % nb], ys[(i - 1) % nb]
        opt.zero_grad()
        out = model(xb)
        loss = crit(out, yb)
        loss.backward()
        opt.step()
        return loss.item()
    return step, nb


def tiny():
    x = torch.tensor([[0., 0.], [0., 1.], [1., 0.], [1., 1.]])
    y = torch.tensor([[0.], [1.], [1.], [0.]])
    model = he_init(nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1), nn.Sigmoid()))
    crit = nn.BCELoss()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)

    def step(i):
        opt.zero_grad()
        out = model(x)
        loss = crit(out, y)
        loss.backward()
        opt.step()
        return loss.item()
    return step, 10000, 4, 100


def mlp(batch):
    xs, ys = fashion(batch, (60000, 784))
    model = he_init(nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
                                  nn.Linear(128, 10)))
    step, nb = classifier(model, xs, ys)
    return step, nb, batch, 5


def cnn():
    batch = 64
    xs, ys = fashion(batch, (60000, 1, 28, 28))
    model = he_init(nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(1568, 10)))
    step, _ = classifier(model, xs, ys)
    return step, 200, batch, 3


def peak_rss_kb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return -1


def main():
    if len(sys.argv) < 3 or sys.argv[1] not in ("tiny", "mlp64", "mlp256", "cnn"):
        sys.stderr.write("usage: torch_bench.py tiny|mlp64|mlp256|cnn THREADS [STEPS]\n")
        return 2
    workload, threads = sys.argv[1], int(sys.argv[2])
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    if workload == "tiny":
        step, nsteps, per_step, warmup = tiny()
    elif workload == "cnn":
        step, nsteps, per_step, warmup = cnn()
    else:
        step, nsteps, per_step, warmup = mlp(64 if workload == "mlp64" else 256)
    if len(sys.argv) > 3:
        nsteps = int(sys.argv[3])

    for i in range(1, warmup + 1):
        step(i)
    t0 = time.perf_counter()
    for i in range(1, nsteps + 1):
        loss = step(i)
    seconds = time.perf_counter() - t0

    print(f"RESULT side=torch workload={workload} threads={threads} "
          f"torch_threads={torch.get_num_threads()} steps={nsteps} samples={nsteps * per_step} "
          f"seconds={seconds:.6f} samples_per_s={nsteps * per_step / seconds:.1f} "
          f"peak_rss_kb={peak_rss_kb()} loss={loss:.4g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
