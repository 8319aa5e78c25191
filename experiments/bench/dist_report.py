#!/usr/bin/env python3
"""dist_report.py RAW_FILE [LOAD_BEFORE LOAD_AFTER] -- the markdown table
of the data-parallel benchmark (experiments/bench/dist) from the RESULT
lines that dist_bench.lua printed, one per line in RAW_FILE.

For each workload and mode: the median time of the one-process runs
(ranks=1) and of the runs on several ranks, the speedup (the first over
the second), the share of the ranks' step spent in dist.average_gradients
(or waiting for the request, mode overlap), and one allreduce alone."""
import os
import statistics
import sys


def parse(path):
    rows = []
    for line in open(path):
        if line.startswith("RESULT "):
            rows.append(dict(kv.split("=", 1) for kv in line.split()[1:]))
    return rows


def table(rows, load_before="?", load_after="?"):
    out = ["| workload | mode | ranks | steps | 1 process s | ranks s | speedup | "
           "allreduce share of the step | one allreduce alone, ms |",
           "|---|---|---|---|---|---|---|---|---|"]
    runs = 0
    for wl in dict.fromkeys(r["workload"] for r in rows):
        one = [float(r["seconds"]) for r in rows if r["workload"] == wl and r["ranks"] == "1"]
        if not one:
            raise ValueError(f"no one-process run of {wl}")
        runs = len(one)
        modes = dict.fromkeys(r["mode"] for r in rows if r["workload"] == wl and r["ranks"] != "1")
        for mode in modes:
            d = [r for r in rows if r["workload"] == wl and r["ranks"] != "1" and r["mode"] == mode]
            t = statistics.median(float(r["seconds"]) for r in d)
            ar = statistics.median(float(r["allreduce_s"]) for r in d)
            alone = statistics.median(float(r["allreduce_alone_s"]) for r in d)
            t1 = statistics.median(one)
            out.append(f"| {wl} | {mode} | {d[0]['ranks']} | {d[0]['steps']} | {t1:.3f} | {t:.3f} | "
                       f"**{t1 / t:.2f}x** | {ar / t:.1%} | {alone * 1e3:.3f} |")
    out.append("")
    out.append(f"Medians of {runs} runs each; 1 thread per process; load average {load_before} "
               f"before, {load_after} after, on {os.cpu_count()} CPUs.")
    return "\n".join(out)


def main():
    if len(sys.argv) not in (2, 4):
        sys.stderr.write("usage: dist_report.py RAW_FILE [LOAD_BEFORE LOAD_AFTER]\n")
        sys.exit(2)
    try:
        rows = parse(sys.argv[1])
    except OSError as e:
        sys.stderr.write(f"dist_report.py: cannot read {sys.argv[1]}: {e.strerror}\n")
        sys.exit(2)
    if not rows:
        sys.stderr.write(f"dist_report.py: no RESULT lines in {sys.argv[1]}\n")
        sys.exit(2)
    print(table(rows, *sys.argv[2:]))


if __name__ == "__main__":
    main()
