#!/usr/bin/python3
"""stgrad against PyTorch on the BENCH.md cases, interleaved, from one command.

    /usr/bin/python3 tools/torch_bench.py [--rounds 3] [--cases LIST]
        [--batches 1,16,64,256] [--threads 1,2] [--stg-bench ./stg-bench]
        [--min-time 0.2]

Run from the build directory (where stg-bench is).  --cases takes names from
dot mv mv_batched vm mm_square mm_batched mm_bcast_right mm_bcast_both
mlp_layer mlp (default: all); the matmul cases run in modes 'fwd' and
'fwd+bwd', mlp runs its training 'step' at each of --batches.

Each round runs ./stg-bench once (all cases, all thread counts, --no-blis),
then this script once per thread count as a PyTorch worker, with
BLIS_NUM_THREADS and OMP_NUM_THREADS set to that count and OPENBLAS_CORETYPE
and OPENBLAS_L2_SIZE unset in the worker's environment only (BENCH.md,
"PyTorch at its best"; tools/torch_peer.py explains why).  BENCH.md asks for
this interleaving because these shared machines drift by up to ~1.8x over a
few seconds: only figures from the same round are compared with each other.

The table shows, per (case, mode, batch, threads), the median over rounds of
each side's per-round median, and two ratios, each the median over rounds of
that round's ratio: PyTorch at the same thread count / stgrad, and PyTorch at
its best (its faster thread count in that round) / stgrad.  Above 1 means
stgrad is faster.

Exit status: 0 on success, 2 on bad options, 1 when stg-bench or a worker
fails.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from torch_peer import percentile, torch_env

# BENCH.md "Matmul family": name -> (shape of a, shape of b).
MATMUL_CASES = {
    "dot": ((4096,), (4096,)),
    "mv": ((512, 1024), (1024,)),
    "mv_batched": ((32, 256, 512), (512,)),
    "vm": ((1024,), (1024, 512)),
    "mm_square": ((512, 512), (512, 512)),
    "mm_batched": ((64, 128, 64), (64, 64, 128)),
    "mm_bcast_right": ((32, 128, 256), (256, 256)),
    "mm_bcast_both": ((8, 1, 64, 128), (1, 16, 128, 64)),
    "mlp_layer": ((256, 784), (784, 512)),
}
ALL_CASES = list(MATMUL_CASES) + ["mlp"]
MATMUL_MODES = ("fwd", "fwd+bwd")
SEED = 0


# ---------------------------------------------------------------- worker side
# torch is imported by the worker only:
# BLIS reads its thread count when torch loads, and only the worker runs in
# the environment set for that.

def time_loop(fn, min_time):
    """Median and p10 in microseconds of fn() timed one call at a time.

    Warms up first (at least 3 calls and 10% of min_time: the first calls pay
    for allocator growth and BLIS's thread start-up), then times calls until
    min_time seconds have passed, and at least 5 calls.
    """
    clock = time.perf_counter
    t_end = clock() + 0.1 * min_time
    n = 0
    while n < 3 or clock() < t_end:
        fn()
        n += 1
    times = []
    t_end = clock() + min_time
    while len(times) < 5 or clock() < t_end:
        t0 = clock()
        fn()
        times.append(clock() - t0)
    times.sort()
    us = [t * 1e6 for t in times]
    return {"median_us": percentile(us, 0.5), "p10_us": percentile(us, 0.10),
            "iters": len(us)}


def matmul_fn(case, mode):
    import torch

    torch.manual_seed(SEED)
    sa, sb = MATMUL_CASES[case]
    a = torch.rand(sa, dtype=torch.float32) * 2 - 1
    b = torch.rand(sb, dtype=torch.float32) * 2 - 1
    if mode == "fwd":
        def fwd():
            with torch.no_grad():
                torch.matmul(a, b)
        return fwd
    a.requires_grad_(True)
    b.requires_grad_(True)
    with torch.no_grad():
        gout = torch.rand(torch.matmul(a, b).shape, dtype=torch.float32) * 2 - 1

    def fwd_bwd():
        a.grad = b.grad = None
        c = torch.matmul(a, b)
        c.backward(gout)
    return fwd_bwd


def mlp_step_fn(batch):
    """The BENCH.md mlp training step: forward, cross-entropy, backward, SGD."""
    import torch
    import torch.nn.functional as F
    from torch_peer import make_model

    torch.manual_seed(SEED)
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x = torch.rand(batch, 784, dtype=torch.float32)
    y = torch.randint(0, 10, (batch,), dtype=torch.int64)

    def step():
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return step


def worker(args):
    """Times every requested case at one thread count; one JSON line each."""
    import torch
    from torch_peer import check_env

    check_env(args.worker)
    torch.set_num_threads(args.worker)
    for case in args.cases:
        if case == "mlp":
            jobs = [("step", b, mlp_step_fn(b)) for b in args.batches]
        else:
            jobs = [(m, 0, matmul_fn(case, m)) for m in MATMUL_MODES]
        for mode, batch, fn in jobs:
            r = time_loop(fn, args.min_time)
            r.update(case=case, mode=mode, batch=batch, threads=args.worker)
            print(json.dumps(r), flush=True)


# ---------------------------------------------------------------- driver side

def run_stg_bench(args, json_path):
    """stg-bench's results keyed by (case, mode, batch, threads); exits 1 on failure."""
    cmd = [args.stg_bench, "--rounds", "1", "--no-blis", "--min-time", str(args.min_time),
           "--cases", ",".join(args.cases), "--batches", ",".join(map(str, args.batches)),
           "--threads", ",".join(map(str, args.threads)), "--json", json_path]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as e:
        print("torch_bench: cannot run %s: %s" % (args.stg_bench, e.strerror), file=sys.stderr)
        sys.exit(1)
    if p.returncode != 0:
        print("torch_bench: %s failed (exit %d):\n%s" % (" ".join(cmd), p.returncode,
                                                         p.stderr.rstrip()), file=sys.stderr)
        sys.exit(1)
    try:
        with open(json_path) as f:
            doc = json.load(f)
        # stg-bench writes a null batch for the matmul cases; 0 here, as the worker
        return {(r["case"], r["mode"], r["batch"] or 0, r["threads"]):
                (r["median_us"], r["p10_us"]) for r in doc["results"]}
    except (OSError, ValueError, KeyError, TypeError) as e:
        print("torch_bench: unreadable JSON from %s: %s\n%s" % (args.stg_bench, e,
                                                               p.stderr.rstrip()),
              file=sys.stderr)
        sys.exit(1)


def run_worker(args, threads):
    """The PyTorch side at one thread count, in its own process and environment."""
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", str(threads),
           "--min-time", str(args.min_time), "--cases", ",".join(args.cases),
           "--batches", ",".join(map(str, args.batches))]
    # stderr passes through, so check_env's warnings reach the user.
    p = subprocess.run(cmd, env=torch_env(threads), stdout=subprocess.PIPE, text=True)
    if p.returncode != 0:
        print("torch_bench: the PyTorch worker at %d thread(s) failed (exit %d)"
              % (threads, p.returncode), file=sys.stderr)
        sys.exit(1)
    out = {}
    for line in p.stdout.splitlines():
        if line.startswith("{"):
            r = json.loads(line)
            out[(r["case"], r["mode"], r["batch"], r["threads"])] = (r["median_us"], r["p10_us"])
    return out


def report(args, rounds):
    """The table; rounds holds one (stgrad, torch) pair of dicts per round, each
    mapping (case, mode, batch, threads) to (median_us, p10_us)."""
    def row_order(key):
        case, mode, batch, threads = key
        return (ALL_CASES.index(case) if case in ALL_CASES else len(ALL_CASES), case,
                mode, batch, threads)

    keys = sorted({k for stg, tor in rounds for k in list(stg) + list(tor)}, key=row_order)
    fmt = "%-14s %-7s %5s %3s %10s %10s %10s %10s %9s %10s %8s"
    print(fmt % ("case", "mode", "batch", "thr", "stgrad_us", "stg_p10", "torch_us",
                 "torch_p10", "torch/stg", "best_us", "best/stg"))

    def med(vals):
        return "%.1f" % statistics.median(vals) if vals else "-"

    def low(vals):
        return "%.1f" % min(vals) if vals else "-"

    def ratio(vals):
        if not vals:
            return "-"
        r = statistics.median(vals)
        return "%.2f" % r if r >= 0.1 else "%.2g" % r

    for key in keys:
        case, mode, batch, t = key
        stg_us, stg_p10, tor_us, tor_p10, best_us, same, best = ([] for _ in range(7))
        for stg, tor in rounds:
            s, o = stg.get(key), tor.get(key)
            # PyTorch's best in this round: its faster thread count for this case.
            peers = [tor[(case, mode, batch, u)][0] for u in args.threads
                     if (case, mode, batch, u) in tor]
            b = min(peers) if peers else None
            if s is not None:
                stg_us.append(s[0])
                stg_p10.append(s[1])
            if o is not None:
                tor_us.append(o[0])
                tor_p10.append(o[1])
            if b is not None:
                best_us.append(b)
            if s is not None and s[0] > 0:
                if o is not None:
                    same.append(o[0] / s[0])
                if b is not None:
                    best.append(b / s[0])
        print(fmt % (case, mode, batch if batch else "-", t, med(stg_us), low(stg_p10),
                     med(tor_us), low(tor_p10), ratio(same), med(best_us), ratio(best)))
    print("\nTimes in us: *_us the median over %d round(s) of each round's median, *_p10 the "
          "best p10; torch/stg = PyTorch at the same thread count / stgrad, best/stg = PyTorch "
          "at its faster thread count in the round / stgrad, each the median over rounds of "
          "that round's ratio; above 1 means stgrad is faster." % len(rounds))


def int_list(text):
    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError("needs comma-separated whole numbers: %r" % text)
    if not vals or any(v < 1 for v in vals):
        raise argparse.ArgumentTypeError("needs positive whole numbers: %r" % text)
    return vals


def case_list(text):
    vals = [v.strip() for v in text.split(",") if v.strip()]
    bad = [v for v in vals if v not in ALL_CASES]
    if not vals or bad:
        raise argparse.ArgumentTypeError("unknown case(s) %s; choose from %s"
                                         % (",".join(bad) or "(none)", " ".join(ALL_CASES)))
    return vals


def main():
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="cases: " + " ".join(ALL_CASES))
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    ap.add_argument("--cases", type=case_list, default=list(ALL_CASES),
                    help="comma-separated cases (default: all)")
    ap.add_argument("--batches", type=int_list, default=[1, 16, 64, 256],
                    help="mlp batch sizes (default 1,16,64,256)")
    ap.add_argument("--threads", type=int_list, default=[1, 2],
                    help="thread counts (default 1,2)")
    ap.add_argument("--stg-bench", default="./stg-bench",
                    help="the stg-bench program (default ./stg-bench)")
    ap.add_argument("--min-time", type=float, default=0.2,
                    help="seconds of timed iterations per case, each side (default 0.2)")
    ap.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")
    if not args.min_time > 0:
        ap.error("--min-time must be positive")

    if args.worker is not None:
        if args.worker < 1:
            ap.error("--worker must be at least 1")
        worker(args)
        return

    rounds = []
    with tempfile.TemporaryDirectory(prefix="torch_bench.") as tmp:
        for r in range(args.rounds):
            stg = run_stg_bench(args, os.path.join(tmp, "stg-bench.json"))
            tor = {}
            for t in args.threads:
                tor.update(run_worker(args, t))
            rounds.append((stg, tor))
            print("round %d/%d done" % (r + 1, args.rounds), file=sys.stderr)
    report(args, rounds)


if __name__ == "__main__":
    main()
