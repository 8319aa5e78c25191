"""report.py -- turns the raw lines of one benchmark run into markdown.

    /usr/bin/python3 experiments/bench/report.py RAW_FILE > results/DATE.md

RAW_FILE holds the lines `run` collected: "FACT key=value" lines about
the machine (fma_peak.lua's among them), "CALIB ..." lines of the core-type
calibration (torch_bench.py --calibrate), "CHOICE workload=... threads=...
coretype=..." lines saying which core type each reference ran with, and
"RESULT side=... workload=... threads=... rep=..." lines, one per process
(see lunet_bench.lua and torch_bench.py); PyTorch's carry role=best (the
chosen core type) or role=default.  Every figure in the tables comes from
those lines; nothing is measured here.
"""
import statistics
import sys

WORKLOADS = ["tiny", "mlp64", "mlp256", "cnn", "lstm", "transformer", "resnet"]
DESCRIPTION = {
    "tiny": "2-8-1 tanh, sigmoid+BCE, XOR, batch 4, Adam: 10,000 steps",
    "mlp64": "784-256-128-10 ReLU, cross-entropy, SGD momentum 0.9, batch 64: one epoch",
    "mlp256": "784-256-128-10 ReLU, cross-entropy, SGD momentum 0.9, batch 256: one epoch",
    "cnn": "conv 1-16 3x3 pad 1, ReLU, maxpool 2, conv 16-32 3x3 pad 1, ReLU, maxpool 2, linear 1568-10, cross-entropy, SGD momentum 0.9, batch 64: 200 steps",
    "lstm": "the char-LSTM of experiments/char_lstm.lua (sizes and batch in experiments/char_models.lua), cross-entropy of the next byte, Adam, gradient norm clipped, on the fortunes corpus: 60 steps; samples are tokens (bytes)",
    "transformer": "the causal transformer of experiments/char_transformer.lua (sizes and batch in experiments/char_models.lua), cross-entropy of the next byte, AdamW, gradient norm clipped, on the fortunes corpus: 30 steps; samples are tokens (bytes)",
    "resnet": "the residual network of experiments/resnet_fashion.lua (experiments/resnet_model.lua: conv 1-16, BatchNorm, a basic block per stage at 16/32/64 channels with 1x1 projections, global average pooling, linear 64-10; an nn.Graph), cross-entropy, SGD momentum 0.9, batch 128, no augmentation: 30 steps",
}
STRINGS = ("side", "workload", "coretype", "asked", "blas_core", "role", "gemm_impl")


def fields(text):
    """{key: value} of "key=value" words, numbers as floats."""
    r = {}
    for field in text.split():
        k, _, v = field.partition("=")
        try:
            r[k] = v if k in STRINGS else float(v)
        except ValueError:
            r[k] = v
    return r


def parse(path):
    facts, results, calib, choice = {}, [], [], {}
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("FACT "):
                key, _, value = line[5:].partition("=")
                facts[key] = value
            elif line.startswith("RESULT "):
                results.append(fields(line[7:]))
            elif line.startswith("CALIB "):
                calib.append(fields(line[6:]))
            elif line.startswith("CHOICE "):
                c = fields(line[7:])
                choice[(c["workload"], int(c["threads"]))] = c["coretype"]
    return facts, results, calib, choice


def fmt(x, digits=3):
    if x is None:
        return "-"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def same_core(asked, ran, default_core):
    """Whether kernels `ran` are those OPENBLAS_CORETYPE=`asked` selects."""
    want = default_core if asked == "default" else asked
    return want.lower() == ran.lower()


def fma_peak(facts):
    """(GFLOP/s of one core, instruction set) for the widest vector FMA the
    machine ran, or None when the run measured none."""
    for isa, label in (("avx512", "AVX-512"), ("avx2", "AVX2")):
        try:
            return float(facts[f"fma_{isa}_gflops"]), label
        except (KeyError, ValueError):
            continue
    return None


class Run:
    """The lines of one run, grouped: lunet's and PyTorch's results per
    workload and thread count (PyTorch's by role)."""

    def __init__(self, path):
        self.facts, results, self.calib, self.choice = parse(path)
        self.groups = {}
        for r in results:
            side = r["side"] if r["side"] == "lunet" else "torch_" + r.get("role", "best")
            self.groups.setdefault((r["workload"], int(r["threads"]), side), []).append(r)
        self.threads = sorted({int(r["threads"]) for r in results})
        self.present = [w for w in WORKLOADS if any(k[0] == w for k in self.groups)]
        self.default_core = self.facts.get("openblas_default_core", "?")

    def get(self, wl, t, side):
        return self.groups.get((wl, t, side), [])

    def torch_default(self, wl, t):
        """PyTorch's runs with the default core type: its own role=default
        runs, or the best ones when the default was chosen."""
        if self.choice.get((wl, t), "default") == "default":
            return self.get(wl, t, "torch_best")
        return self.get(wl, t, "torch_default")

    def reference(self, wl, t):
        """(core type, runs) of the reference the ratios are taken against:
        of the types PyTorch ran in full -- the calibration's choice, and
        the default when that differs -- the one with the least median
        time.  A calibration misled by a burst of load on a shared machine
        cannot leave the reference slower than its default."""
        chosen = self.choice.get((wl, t), "default")
        best = (chosen, self.get(wl, t, "torch_best"))
        other = ("default", self.torch_default(wl, t))
        if chosen != "default" and other[1] and best[1] and median_s(other[1]) < median_s(best[1]):
            return other
        return best

    def pairs(self):
        for wl in self.present:
            for t in self.threads:
                yield wl, t


def median_s(rs):
    return statistics.median(r["seconds"] for r in rs) if rs else None


def min_step(rs):
    return min(r["seconds"] / r["steps"] for r in rs) if rs else None


def best_times(run, wl, t):
    """The figures both limit tables use for a workload and thread count,
    best (least) times over the repetitions: FLOPs per step (made, and
    needed), seconds per step of ln_gemm's and cblas's products, of lunet's
    step and of the reference's; None without lunet runs."""
    lu = run.get(wl, t, "lunet")
    if not lu:
        return None
    flops = lu[0]["flops_per_step"]
    return {
        "flops": flops,
        "needed": lu[0].get("needed_flops_per_step", flops),
        "own": min(r["gemm_s_per_step"] for r in lu),
        "blas": min(r.get("blas_s_per_step", float("nan")) for r in lu),
        "lstep": min_step(lu),
        "tstep": min_step(run.reference(wl, t)[1]),
    }


def header(run, w):
    facts = run.facts
    w(f"# lunet against PyTorch, {facts.get('date', '?')}")
    w("")
    w("Produced by `experiments/bench/run` (see experiments/bench/README.md for the")
    w("method). Every figure is measured in this one run, lunet and PyTorch interleaved;")
    w("times exclude data loading and a few warm-up steps.")
    w("")
    if facts.get("quick") == "1":
        w("**Quick run** (`--quick`): a few steps per workload, one calibration round, one")
        w("repetition unless `--reps` said more. It shows that everything runs; its figures")
        w("are not for quoting.")
        w("")
    try:
        busy = float(facts.get("load_before", "0").split()[0]) >= 0.5 * float(facts.get("nproc", "1"))
    except ValueError:
        busy = False
    if busy:
        w(f"**The machine was busy** (load average {facts['load_before']} before the run on")
        w(f"{facts['nproc']} CPUs): other processes competed for the cores, so absolute figures are")
        w("low and noisy, the 2-thread ones most of all; the ratios, measured side by side, hold")
        w("up better. PyTorch's OpenMP threads spin-wait between parallel regions, so its")
        w("2-thread figures suffer most when another process holds a core (`--env")
        w("OMP_WAIT_POLICY=PASSIVE` avoids that; see extra_env below).")
        w("")
    w("## Machine")
    w("")
    w("| fact | value |")
    w("|---|---|")
    for key in ["cpu", "nproc", "kernel", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "openblas",
                "openblas_default_core", "coretype_candidates", "coretype_search",
                "fma_avx512_gflops", "fma_avx2_gflops", "torch", "numpy", "lunet", "lunet_gemm",
                "commit", "reps", "quick", "OMP_WAIT_POLICY", "extra_env", "load_before",
                "load_after", "calibration_s", "wall_s"]:
        if key in facts:
            w(f"| {key} | {facts[key]} |")
    w("")


def coretype_section(run, w):
    if not run.choice:
        return
    w("## The reference's OpenBLAS core type")
    w("")
    w(f"OpenBLAS picks the **{run.default_core}** kernels on this machine by itself (\"default\").")
    w(f"Candidates: {run.facts.get('coretype_candidates', '?')}; search:")
    w(f"{run.facts.get('coretype_search', '?')}. Calibration: the best time per step over tries and")
    w("rounds of a few of the workload's own training steps, in PyTorch, under each type;")
    w("the reference then runs with the fastest (**chosen**), and with the default as well")
    w("when that is another type. *kernels run* is what the OpenBLAS inside PyTorch reported")
    w("(`openblas_get_corename`) in every timed process of the chosen type; **default /")
    w("chosen** is PyTorch's median time with the default type over its median time with")
    w("the chosen one, both measured in full in this run (> 1: the default makes PyTorch")
    w("slower). The **reference** the ratios below are taken against is the faster of the")
    w("two by median: the chosen type, unless a noisy calibration picked the slower.")
    w("")
    # a CALIB line's type is the one `run` asked for: "default" or a name
    types = []
    for c in run.calib:
        if c["asked"] not in types:
            types.append(c["asked"])
    best = {}
    for c in run.calib:
        key = (c["workload"], int(c["threads"]), c["asked"])
        s = c["seconds"] / c["steps"]
        best[key] = min(best.get(key, s), s)
    labels = [f"{t} ({run.default_core})" if t == "default" else t for t in types]
    w("| workload | threads | " + "".join(f"calibration ms/step {lb} | " for lb in labels)
      + "chosen | kernels run | torch median s, chosen | torch median s, default"
      " | default / chosen | **reference** |")
    w("|---|---|" + "---|" * len(types) + "---|---|---|---|---|---|")
    for wl, t in run.pairs():
        if (wl, t) not in run.choice:
            continue
        chosen = run.choice[(wl, t)]
        cells = []
        for ct in types:
            v = best.get((wl, t, ct))
            cell = fmt(v * 1e3 if v is not None else None)
            cells.append(f"**{cell}**" if ct == chosen and v is not None else cell)
        tb = run.get(wl, t, "torch_best")
        ran = sorted({r.get("blas_core", "?") for r in tb})
        bad = [k for k in ran if not same_core(chosen, k, run.default_core)]
        kernels = ", ".join(ran) if ran else "-"
        if bad:
            kernels = f"**{kernels}: not the kernels asked for**"
        bmed, dmed = median_s(tb), median_s(run.torch_default(wl, t))
        ratio = f"{dmed / bmed:.2f}" if bmed and dmed else "-"
        w(f"| {wl} | {t} | " + "".join(c + " | " for c in cells)
          + f"{chosen} | {kernels} | {fmt(bmed)} | {fmt(dmed)} | {ratio}"
          f" | **{run.reference(wl, t)[0]}** |")
    w("")
    torch_runs = [r for (_, _, side), rs in run.groups.items() if side != "lunet" for r in rs]
    wrong = sorted({(r.get("asked", r["coretype"]), r.get("blas_core", "?"))
                    for r in run.calib + torch_runs
                    if not same_core(r.get("asked", r["coretype"]), r.get("blas_core", "?"),
                                     run.default_core)})
    if wrong:
        w("**Warning:** in some PyTorch processes OpenBLAS ran other kernels than asked for: "
          + "; ".join(f"{asked} ran {ran}" for asked, ran in wrong) + ".")
        w("")


def speed_section(run, w):
    w("## Speed")
    w("")
    w("Seconds for the timed steps (min and median over the repetitions), samples/s at")
    w("the median, and **lunet/torch speed** = torch median time / lunet median time")
    w("(> 1: lunet is faster), against PyTorch at its best: with the reference OpenBLAS")
    w("core type of the section above. The last column is the same ratio against PyTorch")
    w("with the default core type, for comparison only.")
    w("")
    w("| workload | threads | steps | lunet min s | lunet median s | torch min s | torch median s"
      " | torch core type | lunet samples/s | torch samples/s | **lunet/torch speed**"
      " | vs torch, default type |")
    w("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for wl, t in run.pairs():
        lu, (ref, to) = run.get(wl, t, "lunet"), run.reference(wl, t)
        if not lu or not to:
            continue
        ls = [r["seconds"] for r in lu]
        ts = [r["seconds"] for r in to]
        lmed, tmed = statistics.median(ls), statistics.median(ts)
        dmed = median_s(run.torch_default(wl, t))
        samples = lu[0]["samples"]
        w(f"| {wl} | {t} | {int(lu[0]['steps'])} | {fmt(min(ls))} | {fmt(lmed)} | {fmt(min(ts))}"
          f" | {fmt(tmed)} | {ref}"
          f" | {fmt(samples / lmed)} | {fmt(samples / tmed)} | **{tmed / lmed:.2f}**"
          f" | {f'{dmed / lmed:.2f}' if dmed else '-'} |")
    w("")
    for wl in run.present:
        w(f"- {wl}: {DESCRIPTION[wl]}")
    w("")


def limit_section(run, w):
    w("## Fraction of the limit")
    w("")
    w("FLOPs per training step count 2·m·n·k for every matrix product lunet makes (forward,")
    w("and both backward products of every layer but the first, whose input gradient")
    w("nobody reads: the bench sets `input_grad = false`, and PyTorch skips it too).")
    w("The GEMM-only times are those products alone, on exactly those shapes,")
    w("measured with `lunet.bench_gemm` in the same lunet process right after its timed")
    w("steps: through OpenBLAS's `cblas_sgemm` (what PyTorch's Linear layers call; in")
    w(f"lunet's process, whose core type is never set, with the default {run.default_core}")
    w("kernels), and through `ln_gemm` as the layers call it (lunet's own kernels where the")
    w("CPU has them; `gemm_impl` in the raw lines). **fraction** = GEMM-only time /")
    w("step time: the step's speed as a share of the speed its products alone would allow")
    w("(above 1 against cblas means lunet's step beats cblas's products alone). All times are")
    w("the best (minimum) over the repetitions: interference from other processes only adds")
    w("time, so minima are the steadier estimate.")
    w("")
    w("| workload | threads | MFLOP/step | cblas ms/step | cblas GFLOP/s | ln_gemm ms/step"
      " | ln_gemm GFLOP/s | lunet ms/step | lunet GFLOP/s | **fraction vs cblas** | fraction vs ln_gemm"
      " | torch ms/step |")
    w("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for wl, t in run.pairs():
        b = best_times(run, wl, t)
        if b is None:
            continue
        flops, own, blas, lstep, tstep = b["flops"], b["own"], b["blas"], b["lstep"], b["tstep"]
        w(f"| {wl} | {t} | {fmt(flops / 1e6)} | {fmt(blas * 1e3)} | {fmt(flops / blas / 1e9)}"
          f" | {fmt(own * 1e3)} | {fmt(flops / own / 1e9)} | {fmt(lstep * 1e3)}"
          f" | {fmt(flops / lstep / 1e9)} | **{blas / lstep:.2f}** | {own / lstep:.2f}"
          f" | {fmt(tstep * 1e3 if tstep else None)} |")
    w("")


def peak_section(run, w):
    peak = fma_peak(run.facts)
    if peak is None:
        return
    one, isa = peak
    w("## Fraction of the FMA peak")
    w("")
    w(f"The peak is measured on this machine: one core's single-precision {isa} fused")
    w(f"multiply-adds, **{fmt(one)} GFLOP/s** (`fma_peak.lua`: `lunet.bench_fma`, twelve")
    w("independent FMA chains in registers, best of a few tries; the Machine table gives")
    w("every instruction set measured). At t threads the peak is t times one core's.")
    w("The products' GFLOP/s count the FLOPs of the products lunet makes (as in the table")
    w("above); the steps' count only the **needed** FLOPs, without the first layer's input")
    w("gradient that nobody reads (neither side computes it: the same work, and the same")
    w("count as the products'). Best times over the repetitions.")
    w("")
    w("| workload | threads | peak GFLOP/s | needed MFLOP/step | ln_gemm products GFLOP/s"
      " | **ln_gemm / peak** | cblas products GFLOP/s | cblas / peak | lunet step GFLOP/s"
      " | **lunet step / peak** | torch step GFLOP/s | torch step / peak |")
    w("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for wl, t in run.pairs():
        b = best_times(run, wl, t)
        if b is None:
            continue
        p, needed = one * t, b["needed"]
        own = b["flops"] / b["own"] / 1e9
        blas = b["flops"] / b["blas"] / 1e9
        lstep = needed / b["lstep"] / 1e9
        tstep = needed / b["tstep"] / 1e9 if b["tstep"] else None
        w(f"| {wl} | {t} | {fmt(p)} | {fmt(needed / 1e6)} | {fmt(own)} | **{own / p:.2f}**"
          f" | {fmt(blas)} | {blas / p:.2f} | {fmt(lstep)} | **{lstep / p:.2f}**"
          f" | {fmt(tstep)} | {f'{tstep / p:.2f}' if tstep else '-'} |")
    w("")


def memory_section(run, w):
    w("## Memory")
    w("")
    w("Allocations per steady-state step are lunet's allocator calls (`ln_malloc`, counted by")
    w("`lunet.alloc_stats()`) during the timed steps divided by their number, worst")
    w("repetition; the goal is 0. Peak RSS is VmHWM of the process (largest repetition),")
    w("data set included. The loss of the last timed step (median over repetitions) is a")
    w("check that both sides train the same network on the same data.")
    w("")
    w("| workload | threads | lunet allocs/step | lunet peak RSS MB | torch peak RSS MB"
      " | last loss lunet | last loss torch |")
    w("|---|---|---|---|---|---|---|")
    for wl, t in run.pairs():
        lu, to = run.get(wl, t, "lunet"), run.reference(wl, t)[1]
        if not lu:
            continue
        allocs = max(r["allocs_per_step"] for r in lu)
        lrss = max(r["peak_rss_kb"] for r in lu) / 1024
        trss = max(r["peak_rss_kb"] for r in to) / 1024 if to else None
        lloss = statistics.median(r["loss"] for r in lu) if "loss" in lu[0] else None
        tloss = statistics.median(r["loss"] for r in to) if to and "loss" in to[0] else None
        w(f"| {wl} | {t} | {allocs:g} | {lrss:.0f} | {fmt(trss)} | {fmt(lloss)} | {fmt(tloss)} |")
    w("")


def main():
    if len(sys.argv) != 2:
        sys.stderr.write("usage: report.py RAW_FILE\n")
        return 2
    run = Run(sys.argv[1])
    out = []
    w = out.append
    header(run, w)
    coretype_section(run, w)
    speed_section(run, w)
    limit_section(run, w)
    peak_section(run, w)
    memory_section(run, w)
    w("## Raw results")
    w("")
    w("```")
    with open(sys.argv[1]) as f:
        for line in f:
            if line.startswith(("RESULT ", "CALIB ", "CHOICE ")):
                w(line.rstrip("\n"))
    w("```")
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
