"""torch_bench.py -- PyTorch's side of the benchmark, the reference.

    OPENBLAS_NUM_THREADS=1 /usr/bin/python3 experiments/bench/torch_bench.py WORKLOAD THREADS [STEPS]
    OPENBLAS_NUM_THREADS=1 /usr/bin/python3 experiments/bench/torch_bench.py \
        --calibrate THREADS [--tries N] WORKLOAD...

Mirrors lunet_bench.lua: the same data (Fashion-MNIST read from the IDX
files of Debian's dataset-fashion-mnist with gzip + numpy, pre-loaded,
batches by slicing, in order, last partial batch dropped), the same
shapes, the same initialisation (He normal, zero biases), the same
optimiser and hyper-parameters, the same warm-up and timed steps.  The
character-level workloads (lstm, transformer) take their models,
configuration and corpus from char_torch.py, the PyTorch twin of the
experiments, which asks the lunet executable ($LUNET_EXE, default
build/lunet) for them.  The last line printed is

    RESULT side=torch workload=... threads=... coretype=... blas_core=... steps=...
           samples=... seconds=... samples_per_s=... peak_rss_kb=... loss=...

loss is that of the last timed step, to compare with lunet's.  coretype
is OPENBLAS_CORETYPE as this process got it ("default" when unset), and
blas_core the kernel set the OpenBLAS that PyTorch loaded says it runs
(openblas_get_corename), which shows that the setting took effect.

--calibrate is the short measurement `run` uses to pick the fastest core
type: in one process, each WORKLOAD in turn is built and warmed up as
below, then CALIB_STEPS of its training steps are timed TRIES times (5 by
default); one line per workload gives the best:

    CALIB side=torch workload=... threads=... coretype=... blas_core=...
          steps=... tries=... seconds=...
"""
import ctypes
import functools
import gzip
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn

FASHION_DIR = "/usr/share/datasets/fashion-mnist"
WORKLOADS = ("tiny", "mlp64", "mlp256", "cnn", "lstm", "transformer", "resnet")
# timed steps of a calibration try: 0.05-0.15 s with OpenBLAS's slowest
# kernels on the machines measured; many short tries rather than a few
# long ones, so that the best of them is likely one no other process
# interrupted
CALIB_STEPS = {"tiny": 200, "mlp64": 40, "mlp256": 10, "cnn": 6, "lstm": 4, "transformer": 3, "resnet": 1}


def load_idx(path):
    """An IDX file (gzip-compressed) as a numpy array of its stored type."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    shape = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


@functools.lru_cache(maxsize=None)
def fashion_tensors():
    """The training set, images as floats in [0,1] (60000, 784) and labels;
    read once per process (calibration builds several workloads)."""
    x = load_idx(os.path.join(FASHION_DIR, "train-images-idx3-ubyte.gz"))
    y = load_idx(os.path.join(FASHION_DIR, "train-labels-idx1-ubyte.gz"))
    return (torch.from_numpy(x.astype(np.float32) / 255.0).reshape(60000, 784),
            torch.from_numpy(y.astype(np.int64)))


def fashion(batch, shape):
    """Pre-loaded training set as lists of batch views (slices)."""
    x, y = fashion_tensors()
    x = x.reshape(shape)
    nb = x.shape[0] // batch
    return ([x[i * batch:(i + 1) * batch] for i in range(nb)],
            [y[i * batch:(i + 1) * batch] for i in range(nb)])


def he_init(model):
    """lunet's default: weights N(0, 2/fan_in), biases 0."""
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
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


class BasicBlock(nn.Module):
    """resnet_model.lua's basic block: ReLU(x' + BN(conv(ReLU(BN(conv(x)))))),
    x' a 1x1 convolution with stride and a BatchNorm where the block changes
    the channel count or the size; convolutions without bias."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.proj = None
        if cin != cout or stride != 1:
            self.proj = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False),
                                      nn.BatchNorm2d(cout))

    def forward(self, x):
        h = torch.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        return torch.relu(h + (x if self.proj is None else self.proj(x)))


def resnet():
    """The resnet workload: experiments/resnet_model.lua at its defaults
    (c1 16, c2 32, c3 64, one block per stage), batch 128."""
    batch = 128
    xs, ys = fashion(batch, (60000, 1, 28, 28))
    c1, c2, c3 = 16, 32, 64
    layers = [nn.Conv2d(1, c1, 3, padding=1, bias=False), nn.BatchNorm2d(c1), nn.ReLU()]
    cin = c1
    for stage, cout in enumerate((c1, c2, c3)):
        layers.append(BasicBlock(cin, cout, 2 if stage > 0 else 1))
        cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, 10)]
    model = he_init(nn.Sequential(*layers))
    step, _ = classifier(model, xs, ys)
    return step, 30, batch, 3


@functools.lru_cache(maxsize=None)
def char_corpus(lunet):
    """The fortunes corpus's training ids, read once per process."""
    import char_torch
    train, _, V, _ = char_torch.corpus(lunet, "")
    return train, V


def char(kind):
    """A training step of the model of experiments/char_<kind>.lua, as
    char_torch.py trains it (without the learning-rate schedule): the
    batches in data.sequences' order without shuffle (batch k holds window
    r * nb + k of each stream r), from the start of the training text."""
    import char_torch
    lunet = os.environ.get("LUNET_EXE") or os.path.join(char_torch.ROOT, "build", "lunet")
    cfg = char_torch.lunet_config(lunet, kind)
    train, V = char_corpus(lunet)
    B, T = cfg["batch"], cfg["seq_len"]
    xs, ys = char_torch.windows(train, T)
    nb = xs.shape[0] // B
    xs, ys = xs[:B * nb].view(B, nb, T), ys[:B * nb].view(B, nb, T)
    cfg["_total_steps"] = 1
    model, opt, _ = char_torch.build_model(kind, V, cfg)
    crit = nn.CrossEntropyLoss()

    def step(i):
        k = (i - 1) % nb
        return char_torch.train_step(model, opt, crit, xs[:, k], ys[:, k], cfg["clip"])
    return step, (60 if kind == "lstm" else 30), B * T, 3


def blas_core():
    """The kernel set of the OpenBLAS loaded in this process, as it reports
    it ("Haswell", "SkylakeX", "Prescott"...), or "unknown"."""
    with open("/proc/self/maps") as f:
        paths = {line.split()[-1] for line in f if "libopenblas" in line}
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
            lib.openblas_get_corename.restype = ctypes.c_char_p
            return lib.openblas_get_corename().decode()
        except (OSError, AttributeError):
            continue
    return "unknown"


def coretype():
    """OPENBLAS_CORETYPE as this process got it, "default" when unset."""
    return os.environ.get("OPENBLAS_CORETYPE") or "default"


def build(workload):
    """(step, timed steps, samples per step, warm-up steps) of a workload,
    from the same seed every time."""
    torch.manual_seed(1)
    if workload == "tiny":
        return tiny()
    if workload == "cnn":
        return cnn()
    if workload in ("lstm", "transformer"):
        return char(workload)
    if workload == "resnet":
        return resnet()
    return mlp(64 if workload == "mlp64" else 256)


def calibrate(threads, tries, workloads):
    """CALIB lines: the best of `tries` timings of CALIB_STEPS steps of each
    workload, after its warm-up."""
    core = blas_core()
    for workload in workloads:
        step, _, _, warmup = build(workload)
        for i in range(1, warmup + 1):
            step(i)
        n, i, best = CALIB_STEPS[workload], warmup, float("inf")
        for _ in range(tries):
            t0 = time.perf_counter()
            for _ in range(n):
                i += 1
                step(i)
            best = min(best, time.perf_counter() - t0)
        print(f"CALIB side=torch workload={workload} threads={threads} coretype={coretype()} "
              f"blas_core={core} steps={n} tries={tries} seconds={best:.6f}", flush=True)


def usage():
    sys.stderr.write("usage: torch_bench.py tiny|mlp64|mlp256|cnn|lstm|transformer|resnet THREADS [STEPS]\n"
                     "       torch_bench.py --calibrate THREADS [--tries N] WORKLOAD...\n")
    return 2


def positive(text):
    """int(text) when it is a positive integer, else None."""
    return int(text) if text.isdigit() and int(text) > 0 else None


def peak_rss_kb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return -1


def main():
    args = sys.argv[1:]
    if args[:1] == ["--calibrate"]:
        if len(args) < 3 or positive(args[1]) is None:
            return usage()
        threads, rest, tries = positive(args[1]), args[2:], 5
        if rest[:1] == ["--tries"]:
            if len(rest) < 3 or positive(rest[1]) is None:
                return usage()
            tries, rest = positive(rest[1]), rest[2:]
        if not rest or any(w not in WORKLOADS for w in rest):
            return usage()
        torch.set_num_threads(threads)
        calibrate(threads, tries, rest)
        return 0
    if not 2 <= len(args) <= 3 or args[0] not in WORKLOADS or positive(args[1]) is None \
            or (len(args) == 3 and positive(args[2]) is None):
        return usage()
    workload, threads = args[0], positive(args[1])
    torch.set_num_threads(threads)
    step, nsteps, per_step, warmup = build(workload)
    if len(args) == 3:
        nsteps = positive(args[2])

    for i in range(1, warmup + 1):
        step(i)
    t0 = time.perf_counter()
    for i in range(1, nsteps + 1):
        loss = step(i)
    seconds = time.perf_counter() - t0

    print(f"RESULT side=torch workload={workload} threads={threads} "
          f"torch_threads={torch.get_num_threads()} coretype={coretype()} blas_core={blas_core()} "
          f"steps={nsteps} samples={nsteps * per_step} "
          f"seconds={seconds:.6f} samples_per_s={nsteps * per_step / seconds:.1f} "
          f"peak_rss_kb={peak_rss_kb()} loss={loss:.4g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
