#!/usr/bin/python3
"""PyTorch timing of the BENCH.md `mlp` training step.

Model 784-512-256-10 with ReLU, softmax cross-entropy (F.cross_entropy on the
logits, mean reduction), SGD lr 0.05 momentum 0.9, float32, random data drawn
once from a fixed seed.  For each batch size the script runs --warmup untimed
steps, then --steps timed steps, each timed with time.perf_counter_ns() around
zero_grad + forward + loss + backward + optimizer step, and prints one line:

    torch mlp batch=B threads=T median_us=... p10_us=... p99_us=...

(or one JSON object per line with --json).

Run it as BENCH.md says PyTorch runs at its best (tools/torch_peer.py
explains), e.g.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE BLIS_NUM_THREADS=2 \\
        OMP_NUM_THREADS=2 /usr/bin/python3 tools/torch_mlp_step.py --threads 2

The script warns on stderr when BLIS_NUM_THREADS differs from --threads or when
either OPENBLAS variable is set.  Use /usr/bin/python3 (the interpreter with
Debian's torch and numpy).
"""

import argparse
import json
import os
import sys
import time

from torch_peer import check_env, make_model

import torch
import torch.nn as nn
import torch.nn.functional as F

ALL_BATCHES = (1, 16, 64, 256)






def percentile(sorted_vals, q):
    """Nearest-rank style percentile with linear interpolation."""
    n = len(sorted_vals)
    if n == 1:
        return float(sorted_vals[0])
    pos = (n - 1) * q
    lo = int(pos)
    hi = min(lo + 1, n - 1)
    frac = pos - lo
    return sorted_vals[lo] * (1.0 - frac) + sorted_vals[hi] * frac


def bench_batch(batch, steps, warmup, seed):
    torch.manual_seed(seed)
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x = torch.rand(batch, 784, dtype=torch.float32)
    y = torch.randint(0, 10, (batch,), dtype=torch.int64)

    def step():
        opt.zero_grad()
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        loss.backward()
        opt.step()
        return loss

    for _ in range(warmup):
        step()

    times = [0] * steps
    clock = time.perf_counter_ns
    for i in range(steps):
        t0 = clock()
        step()
        times[i] = clock() - t0
    times.sort()
    us = [t / 1000.0 for t in times]
    return {
        "median_us": percentile(us, 0.5),
        "p10_us": percentile(us, 0.10),
        "p99_us": percentile(us, 0.99),
        "min_us": us[0],
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", default=",".join(str(b) for b in ALL_BATCHES),
                    help="comma-separated batch sizes (default 1,16,64,256)")
    ap.add_argument("--steps", type=int, default=None,
                    help="timed steps per batch size (default 2000 for "
                         "batch <= 16, 500 otherwise)")
    ap.add_argument("--warmup", type=int, default=50,
                    help="untimed warm-up steps per batch size (default 50)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch.set_num_threads(T); also set BLIS_NUM_THREADS "
                         "and OMP_NUM_THREADS to T in the environment")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true",
                    help="print one JSON object per line")
    args = ap.parse_args()

    batches = [int(b) for b in args.batch.split(",") if b.strip()]
    if not batches or any(b < 1 for b in batches):
        ap.error("--batch needs positive integers")
    if args.threads < 1:
        ap.error("--threads must be >= 1")
    if args.steps is not None and args.steps < 1:
        ap.error("--steps must be >= 1")

    env_ok = check_env(args.threads)
    torch.set_num_threads(args.threads)

    for b in batches:
        steps = args.steps if args.steps is not None else (
            2000 if b <= 16 else 500)
        r = bench_batch(b, steps, args.warmup, args.seed)
        if args.json:
            rec = {
                "engine": "torch", "case": "mlp", "batch": b,
                "threads": args.threads, "steps": steps,
                "warmup": args.warmup,
                "median_us": round(r["median_us"], 3),
                "p10_us": round(r["p10_us"], 3),
                "p99_us": round(r["p99_us"], 3),
                "min_us": round(r["min_us"], 3),
                "p99_over_p50": round(r["p99_us"] / r["median_us"], 3),
                "torch": torch.__version__,
                "blis_num_threads": os.environ.get("BLIS_NUM_THREADS"),
                "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
                "env_ok": env_ok,
            }
            print(json.dumps(rec), flush=True)
        else:
            print("torch mlp batch=%d threads=%d median_us=%.1f p10_us=%.1f "
                  "p99_us=%.1f" % (b, args.threads, r["median_us"],
                                   r["p10_us"], r["p99_us"]), flush=True)


if __name__ == "__main__":
    main()
