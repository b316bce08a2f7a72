#!/usr/bin/python3
"""Side-by-side timing of the BENCH.md 'mlp' training step: stgrad vs PyTorch.

Runs ./stg-mlp-bench and tools/torch_mlp_step.py in interleaved rounds (every
configuration once per round, as BENCH.md asks on these noisy machines),
then prints, per batch size and thread count, the median over rounds of each
round's median step time, the best p10, and the ratio against PyTorch at its
best (the faster of its 1- and 2-thread runs in the same rounds).

PyTorch runs with BLIS_NUM_THREADS/OMP_NUM_THREADS set to its thread count
and OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE unset, in its own command only.

    /usr/bin/python3 tools/bench_mlp.py [--rounds 3] [--batch 1,16,64,256] [--threads 1,2]

Run from the build directory (where stg-mlp-bench is).
"""
import argparse
import os
import re
import statistics
import subprocess
import sys

LINE = re.compile(r"^(stgrad|torch) mlp batch=(\d+) threads=(\d+) median_us=([\d.]+) "
                  r"p10_us=([\d.]+) p99_us=([\d.]+)")


def run(cmd, env=None):
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    rows = []
    for line in out.splitlines():
        m = LINE.match(line)
        if m:
            rows.append((m.group(1), int(m.group(2)), int(m.group(3)), float(m.group(4)),
                         float(m.group(5))))
    return rows


def torch_env(threads):
    env = dict(os.environ)
    env.pop("OPENBLAS_CORETYPE", None)
    env.pop("OPENBLAS_L2_SIZE", None)
    env["BLIS_NUM_THREADS"] = env["OMP_NUM_THREADS"] = str(threads)
    return env


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", default="1,16,64,256")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--bench", default="./stg-mlp-bench")
    args = ap.parse_args()
    here = os.path.dirname(os.path.abspath(__file__))
    threads = [int(t) for t in args.threads.split(",")]
    samples = {}  # (engine, batch, threads) -> [(median, p10)]
    for r in range(args.rounds):
        rows = run([args.bench, "--batch", args.batch, "--threads", args.threads])
        for t in threads:
            rows += run([sys.executable, os.path.join(here, "torch_mlp_step.py"),
                         "--batch", args.batch, "--threads", str(t)], env=torch_env(t))
        for eng, b, t, med, p10 in rows:
            samples.setdefault((eng, b, t), []).append((med, p10))
        print("round %d/%d done" % (r + 1, args.rounds), file=sys.stderr)

    def summary(key):
        v = samples.get(key)
        if not v:
            return None
        return statistics.median(m for m, _ in v), min(p for _, p in v)

    print("%-6s %-7s %14s %10s %14s %10s %8s %14s %8s" % (
        "batch", "threads", "stgrad_med_us", "p10_us", "torch_best_us", "p10_us", "speedup",
        "torch_same_us", "speedup"))
    for b in [int(x) for x in args.batch.split(",")]:
        best = min((summary(("torch", b, t)) for t in threads if summary(("torch", b, t))),
                   key=lambda s: s[0])
        for t in threads:
            s, same = summary(("stgrad", b, t)), summary(("torch", b, t))
            print("%-6d %-7d %14.1f %10.1f %14.1f %10.1f %7.2fx %14.1f %7.2fx" % (
                b, t, s[0], s[1], best[0], best[1], best[0] / s[0], same[0], same[0] / s[0]))


if __name__ == "__main__":
    main()
