"""report.py -- turns the raw lines of one benchmark run into markdown.

    /usr/bin/python3 experiments/bench/report.py RAW_FILE > results/DATE.md

RAW_FILE holds the lines `run` collected: "FACT key=value" lines about
the machine and "RESULT side=... workload=... threads=... rep=..." lines,
one per process (see lunet_bench.lua and torch_bench.py).  Every figure
in the tables comes from those lines; nothing is measured here.
"""
import statistics
import sys

WORKLOADS = ["tiny", "mlp64", "mlp256", "cnn"]
DESCRIPTION = {
    "tiny": "2-8-1 tanh, sigmoid+BCE, XOR, batch 4, Adam: 10,000 steps",
    "mlp64": "784-256-128-10 ReLU, cross-entropy, SGD momentum 0.9, batch 64: one epoch",
    "mlp256": "784-256-128-10 ReLU, cross-entropy, SGD momentum 0.9, batch 256: one epoch",
    "cnn": "conv 1-16 3x3 pad 1, ReLU, maxpool 2, conv 16-32 3x3 pad 1, ReLU, maxpool 2, linear 1568-10, cross-entropy, SGD momentum 0.9, batch 64: 200 steps",
}


def parse(path):
    facts, results = {}, []
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("FACT "):
                key, _, value = line[5:].partition("=")
                facts[key] = value
            elif line.startswith("RESULT "):
                r = {}
                for field in line[7:].split():
                    k, _, v = field.partition("=")
                    try:
                        r[k] = float(v) if k not in ("side", "workload") else v
                    except ValueError:
                        r[k] = v
                results.append(r)
    return facts, results


def fmt(x, digits=3):
    if x is None:
        return "-"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def main():
    facts, results = parse(sys.argv[1])
    groups = {}
    for r in results:
        groups.setdefault((r["workload"], int(r["threads"]), r["side"]), []).append(r)
    threads = sorted({int(r["threads"]) for r in results})
    present = [w for w in WORKLOADS if any(k[0] == w for k in groups)]

    out = []
    w = out.append
    w(f"# lunet against PyTorch, {facts.get('date', '?')}")
    w("")
    w("Produced by `experiments/bench/run` (see experiments/bench/README.md for the")
    w("method). Every figure is measured in this one run, lunet and PyTorch interleaved;")
    w("times exclude data loading and a few warm-up steps.")
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
                "torch", "numpy", "lunet", "lunet_gemm", "commit", "reps", "OMP_WAIT_POLICY",
                "extra_env", "load_before", "load_after",
                "wall_s"]:
        if key in facts:
            w(f"| {key} | {facts[key]} |")
    w("")
    w("## Speed")
    w("")
    w("Seconds for the timed steps (min and median over the repetitions), samples/s at")
    w("the median, and **lunet/torch speed** = torch median time / lunet median time")
    w("(> 1: lunet is faster).")
    w("")
    w("| workload | threads | steps | lunet min s | lunet median s | torch min s | torch median s"
      " | lunet samples/s | torch samples/s | lunet/torch speed |")
    w("|---|---|---|---|---|---|---|---|---|---|")
    for wl in present:
        for t in threads:
            lu, to = groups.get((wl, t, "lunet"), []), groups.get((wl, t, "torch"), [])
            if not lu or not to:
                continue
            ls = [r["seconds"] for r in lu]
            ts = [r["seconds"] for r in to]
            lmed, tmed = statistics.median(ls), statistics.median(ts)
            samples = lu[0]["samples"]
            w(f"| {wl} | {t} | {int(lu[0]['steps'])} | {fmt(min(ls))} | {fmt(lmed)} | {fmt(min(ts))}"
              f" | {fmt(tmed)} | {fmt(samples / lmed)} | {fmt(samples / tmed)} | **{tmed / lmed:.2f}** |")
    w("")
    for wl in present:
        w(f"- {wl}: {DESCRIPTION[wl]}")
    w("")
    w("## Fraction of the limit")
    w("")
    w("FLOPs per training step count 2·m·n·k for every matrix product lunet makes (forward,")
    w("and both backward products of every layer, the first layer's input gradient")
    w("included). The GEMM-only times are those products alone, on exactly those shapes,")
    w("measured with `lunet.bench_gemm` in the same lunet process right after its timed")
    w("steps: through OpenBLAS's `cblas_sgemm` (what PyTorch's Linear layers call), and")
    w("through `ln_gemm` as the layers call it (lunet's own kernels where the CPU has them;")
    w("`gemm_impl` in the raw lines). **fraction** = GEMM-only time /")
    w("step time: the step's speed as a share of the speed its products alone would allow")
    w("(above 1 against cblas means lunet's step beats cblas's products alone). All times are")
    w("the best (minimum) over the repetitions: interference from other processes only adds")
    w("time, so minima are the steadier estimate. PyTorch does less work per step for the")
    w("MLPs (it skips the first layer's input gradient, 28% of their FLOPs).")
    w("")
    w("| workload | threads | MFLOP/step | cblas ms/step | cblas GFLOP/s | ln_gemm ms/step"
      " | ln_gemm GFLOP/s | lunet ms/step | lunet GFLOP/s | **fraction vs cblas** | fraction vs ln_gemm"
      " | torch ms/step |")
    w("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for wl in present:
        for t in threads:
            lu, to = groups.get((wl, t, "lunet"), []), groups.get((wl, t, "torch"), [])
            if not lu:
                continue
            flops = lu[0]["flops_per_step"]
            own = min(r["gemm_s_per_step"] for r in lu)
            blas = min(r.get("blas_s_per_step", float("nan")) for r in lu)
            lstep = min(r["seconds"] / r["steps"] for r in lu)
            tstep = min(r["seconds"] / r["steps"] for r in to) if to else None
            w(f"| {wl} | {t} | {fmt(flops / 1e6)} | {fmt(blas * 1e3)} | {fmt(flops / blas / 1e9)}"
              f" | {fmt(own * 1e3)} | {fmt(flops / own / 1e9)} | {fmt(lstep * 1e3)}"
              f" | {fmt(flops / lstep / 1e9)} | **{blas / lstep:.2f}** | {own / lstep:.2f}"
              f" | {fmt(tstep * 1e3 if tstep else None)} |")
    w("")
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
    for wl in present:
        for t in threads:
            lu, to = groups.get((wl, t, "lunet"), []), groups.get((wl, t, "torch"), [])
            if not lu:
                continue
            allocs = max(r["allocs_per_step"] for r in lu)
            lrss = max(r["peak_rss_kb"] for r in lu) / 1024
            trss = max(r["peak_rss_kb"] for r in to) / 1024 if to else None
            lloss = statistics.median(r["loss"] for r in lu) if "loss" in lu[0] else None
            tloss = statistics.median(r["loss"] for r in to) if to and "loss" in to[0] else None
            w(f"| {wl} | {t} | {allocs:g} | {lrss:.0f} | {fmt(trss)} | {fmt(lloss)} | {fmt(tloss)} |")
    w("")
    w("## Raw results")
    w("")
    w("```")
    with open(sys.argv[1]) as f:
        for line in f:
            if line.startswith("RESULT "):
                w(line.rstrip("\n"))
    w("```")
    print("\n".join(out))


if __name__ == "__main__":
    main()
