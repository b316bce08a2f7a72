#!/usr/bin/python3
"""stgrad against PyTorch at its best on the BENCH.md cases, interleaved.

Run it from the build directory (where stg-bench is) with /usr/bin/python3,
the interpreter with Debian's torch.  --cases takes names from dot mv
mv_batched vm mm_square mm_batched mm_bcast_right mm_bcast_both mlp_layer
conv2 mlp lenet lstm charlm (default: all); the matmul and conv2 cases run in modes 'fwd' and 'fwd+bwd', mlp
runs its training 'step' at each of --batches.

PyTorch at its best (BENCH.md): Debian's torch does its GEMMs through
libblas.so.3, and which BLAS that is matters more than anything else.  So the
PyTorch side runs twice, once with BLIS and once with OpenBLAS, each chosen
for its own worker process by putting its directory first in that worker's
LD_LIBRARY_PATH (--blis-dir, default /usr/lib/x86_64-linux-gnu/blis-openmp;
--openblas-dir, default /usr/lib/x86_64-linux-gnu/openblas-openmp).  When a
directory has no libblas.so.3 the script says which package to install
(libopenblas0-openmp for OpenBLAS) and runs with the other BLAS alone.  Each
worker runs with BLIS_NUM_THREADS, OMP_NUM_THREADS and OPENBLAS_NUM_THREADS
set to its thread count and with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset,
in its own environment only (tools/torch_peer.py explains why).

Each worker reports which BLAS it really loaded, read from its own
/proc/self/maps: the resolved path of every libblas.so.3, libopenblas* and
libblis* mapped into it, and the file holding the sgemm_ that torch calls
(under BLIS, OpenBLAS may be mapped too, through the system's liblapack.so.3).
The script prints this before the table and warns when a worker's sgemm_ is
not in the directory asked for.

Each round runs every configuration once: ./stg-bench (all cases, all thread
counts, --no-blis), then a PyTorch+BLIS worker per thread count, then a
PyTorch+OpenBLAS worker per thread count.  BENCH.md asks for this
interleaving because these shared machines drift by up to ~1.8x over a few
seconds: only figures from the same round are compared with each other.

The table has one row per (case, mode, batch, threads): stgrad's time,
PyTorch+BLIS's and PyTorch+OpenBLAS's (each the median over rounds of that
round's median, in microseconds), which BLAS made PyTorch faster and by how
much (the median over rounds of the same-round ratio of the two), and
stg_speedup: the faster BLAS's time / stgrad's time, the median over rounds
of that round's ratio.  Higher stg_speedup means stgrad is faster; above 1,
stgrad beats PyTorch at its best.

Exit status: 0 on success, 2 on bad options, 1 when stg-bench or a worker
fails or when neither BLAS is there.
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
# convolution cases, timed like the products: (x, w), conv2d with padding 1
CONV_CASES = {"conv2": ((64, 16, 14, 14), (32, 16, 3, 3))}
MATMUL_CASES.update(CONV_CASES)
ALL_CASES = list(MATMUL_CASES) + ["mlp", "lenet", "lstm", "charlm"]
MATMUL_MODES = ("fwd", "fwd+bwd")
SEED = 0

# The BLASes PyTorch runs with, in the order each round runs them:
# name -> (default directory of its libblas.so.3, Debian package that has it).
BLASES = {
    "blis": ("/usr/lib/x86_64-linux-gnu/blis-openmp", "libblis4-openmp"),
    "openblas": ("/usr/lib/x86_64-linux-gnu/openblas-openmp", "libopenblas0-openmp"),
}
# Mapped files whose name starts with one of these count as a BLAS.
BLAS_FILE_PREFIXES = ("libblas.so", "libopenblas", "libblis")


# ---------------------------------------------------------------- worker side
# torch is imported by the worker only:
# BLIS reads its thread count when torch loads, and only the worker runs in
# the environment (and with the libblas.so.3) set for that.

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
    import torch.nn.functional as F

    torch.manual_seed(SEED)
    sa, sb = MATMUL_CASES[case]
    a = torch.rand(sa, dtype=torch.float32) * 2 - 1
    b = torch.rand(sb, dtype=torch.float32) * 2 - 1
    op = (lambda x, w: F.conv2d(x, w, padding=1)) if case in CONV_CASES else torch.matmul
    if mode == "fwd":
        def fwd():
            with torch.no_grad():
                op(a, b)
        return fwd
    a.requires_grad_(True)
    b.requires_grad_(True)
    with torch.no_grad():
        gout = torch.rand(op(a, b).shape, dtype=torch.float32) * 2 - 1

    def fwd_bwd():
        a.grad = b.grad = None
        c = op(a, b)
        c.backward(gout)
    return fwd_bwd


def training_step_fn(model_fn, input_shape):
    """A BENCH.md training step: forward, cross-entropy, backward, SGD lr 0.05
    momentum 0.9, on random inputs of input_shape (batch first)."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(SEED)
    model = model_fn()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x = torch.rand(*input_shape, dtype=torch.float32)
    y = torch.randint(0, 10, (input_shape[0],), dtype=torch.int64)

    def step():
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return step


def mlp_step_fn(batch):
    """The BENCH.md mlp training step."""
    from torch_peer import make_model
    return training_step_fn(make_model, (batch, 784))


def lenet_step_fn(batch):
    """The BENCH.md lenet training step (oneDNN does the convolutions)."""
    from torch_peer import make_lenet
    return training_step_fn(make_lenet, (batch, 1, 28, 28))


def lstm_step_fn(batch):
    """The BENCH.md lstm training step: Adam lr 0.001, as stg-bench's."""
    import torch
    import torch.nn.functional as F
    from torch_peer import make_lstm

    torch.manual_seed(SEED)
    model = make_lstm()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.rand(batch, 784, dtype=torch.float32)
    y = torch.randint(0, 10, (batch,), dtype=torch.int64)

    def step():
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return step


def charlm_step_fn(batch, steps=64, vocab=256):
    """The BENCH.md charlm training step: 64 steps of bytes, embedding 64,
    LSTM 256, linear, cross-entropy at every step, Adam lr 0.002."""
    import torch
    import torch.nn.functional as F
    from torch_peer import make_charlm

    torch.manual_seed(SEED)
    model = make_charlm(vocab)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    x = torch.randint(0, vocab, (batch, steps), dtype=torch.int64)
    y = torch.randint(0, vocab, (batch, steps), dtype=torch.int64)

    def step():
        opt.zero_grad()
        logits, _ = model(x)
        F.cross_entropy(logits.reshape(-1, vocab), y.reshape(-1)).backward()
        opt.step()
    return step


def mapped_files():
    """(start, end, path) of every file mapped into this process."""
    out = []
    with open("/proc/self/maps") as f:
        for line in f:
            fields = line.split(None, 5)
            if len(fields) == 6 and fields[5].startswith("/"):
                lo, hi = (int(x, 16) for x in fields[0].split("-"))
                out.append((lo, hi, fields[5].rstrip("\n")))
    return out


def sgemm_file(maps):
    """The resolved path of the file holding the sgemm_ torch calls, or None.

    The dynamic linker bound torch's references in the global scope first
    (the program, LD_PRELOAD, RTLD_GLOBAL libraries: dlsym on CDLL(None)),
    then in torch._C's own, its dependencies breadth first (dlsym on its
    handle); asking in that order finds the BLAS torch uses even when two
    are mapped.
    """
    import ctypes
    import torch

    addr = None
    for lib in (None, torch._C.__file__):
        try:
            addr = ctypes.cast(ctypes.CDLL(lib).sgemm_, ctypes.c_void_p).value
            break
        except (OSError, AttributeError):
            continue
    if addr is None:
        return None
    for lo, hi, path in maps:
        if lo <= addr < hi:
            return os.path.realpath(path)
    return None


def loaded_blas():
    """What this process really loaded, from /proc/self/maps (after importing torch)."""
    maps = mapped_files()
    libs = sorted({os.path.realpath(path) for _, _, path in maps
                   if os.path.basename(path).startswith(BLAS_FILE_PREFIXES)})
    return {"libs": libs, "sgemm": sgemm_file(maps)}


def worker(args):
    """Times every requested case at one thread count; prints one JSON line
    naming the BLAS loaded, then one JSON line per result."""
    import torch
    from torch_peer import check_env

    check_env(args.worker)
    torch.set_num_threads(args.worker)
    print(json.dumps({"loaded": loaded_blas()}), flush=True)
    for case in args.cases:
        if case == "mlp":
            jobs = [("step", b, mlp_step_fn(b)) for b in args.batches]
        elif case == "lenet":
            jobs = [("step", 64, lenet_step_fn(64))]    # BENCH.md: batch 64 only
        elif case == "lstm":
            jobs = [("step", 64, lstm_step_fn(64))]
        elif case == "charlm":
            jobs = [("step", 32, charlm_step_fn(32))]
        else:
            jobs = [(m, 0, matmul_fn(case, m)) for m in MATMUL_MODES]
        for mode, batch, fn in jobs:
            r = time_loop(fn, args.min_time)
            r.update(case=case, mode=mode, batch=batch, threads=args.worker)
            print(json.dumps(r), flush=True)


# ---------------------------------------------------------------- driver side

def blas_dirs(args):
    """{name: directory of its libblas.so.3} as the options say, in BLASES' order."""
    return {name: getattr(args, name + "_dir") for name in BLASES}


def available_blases(args):
    """{name: directory} of the BLASes whose libblas.so.3 is there, in BLASES'
    order; tells the user what to install for each one that is not, and exits
    1 when none is."""
    dirs = blas_dirs(args)
    found = {n: dirs[n] for n in BLASES if os.path.isfile(os.path.join(dirs[n], "libblas.so.3"))}
    missing = [n for n in BLASES if n not in found]
    for name in missing:
        print("torch_bench: no %s/libblas.so.3, so no PyTorch+%s: install it with "
              "`apt-get install %s` to compare against it as well"
              % (dirs[name], name, BLASES[name][1]), file=sys.stderr)
    if missing and len(found) == 1:
        print("torch_bench: running PyTorch with %s alone" % list(found)[0], file=sys.stderr)
    if not found:
        print("torch_bench: no BLAS to run PyTorch with", file=sys.stderr)
        sys.exit(1)
    return found


def run_stg_bench(args, json_path):
    """stg-bench's medians keyed by (case, mode, batch, threads); exits 1 on failure."""
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
        return {(r["case"], r["mode"], r["batch"] or 0, r["threads"]): r["median_us"]
                for r in doc["results"]}
    except (OSError, ValueError, KeyError, TypeError) as e:
        print("torch_bench: unreadable JSON from %s: %s\n%s" % (args.stg_bench, e,
                                                               p.stderr.rstrip()),
              file=sys.stderr)
        sys.exit(1)


def run_worker(args, blas, blas_dir, threads):
    """The PyTorch side with one BLAS at one thread count, in its own process
    and environment: (medians keyed like run_stg_bench's, what it loaded)."""
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", str(threads),
           "--min-time", str(args.min_time), "--cases", ",".join(args.cases),
           "--batches", ",".join(map(str, args.batches))]
    # stderr passes through, so check_env's warnings reach the user.
    p = subprocess.run(cmd, env=torch_env(threads, blas_dir), stdout=subprocess.PIPE, text=True)
    if p.returncode != 0:
        print("torch_bench: the PyTorch+%s worker at %d thread(s) failed (exit %d)"
              % (blas, threads, p.returncode), file=sys.stderr)
        sys.exit(1)
    medians, loaded = {}, None
    for line in p.stdout.splitlines():
        if line.startswith("{"):
            r = json.loads(line)
            if "loaded" in r:
                loaded = r["loaded"]
            else:
                medians[(r["case"], r["mode"], r["batch"], r["threads"])] = r["median_us"]
    return medians, loaded


def check_loaded(blas, blas_dir, threads, loaded):
    """Warns when a worker's GEMMs do not come from the libblas.so.3 asked for
    (LD_PRELOAD, say, or a torch built against another BLAS): its column would
    then be mislabelled."""
    want = os.path.realpath(os.path.join(blas_dir, "libblas.so.3"))
    got = loaded["sgemm"]
    if got is None:  # no sgemm_ found: judge by the libblas.so.3 mapped instead
        got = next((f for f in loaded["libs"] if os.path.basename(f) == "libblas.so.3"), None)
    if got != want:
        print("torch_bench: warning: the PyTorch+%s worker at %d thread(s) uses %s, not %s"
              % (blas, threads, got or "no libblas.so.3", want), file=sys.stderr)


def note_loaded(loaded, blas, blas_dir, threads, rep):
    """Adds a worker's report of what it loaded to loaded[(blas, threads)],
    checking each one not seen before (the same worker in a later round
    normally loads the same files)."""
    seen = loaded.setdefault((blas, threads), [])
    text = json.dumps(rep, sort_keys=True)
    if text not in seen:
        check_loaded(blas, blas_dir, threads, rep)
        seen.append(text)


def print_loaded(args, blases, loaded):
    """Which BLAS each worker really loaded; loaded maps (blas, threads) to the
    distinct reports of that worker over the rounds (one, unless it changed)."""
    print("BLAS loaded by each PyTorch worker (its /proc/self/maps):")
    for name, blas_dir in blas_dirs(args).items():
        if name not in blases:
            print("  torch+%s: not run, no %s/libblas.so.3 (apt-get install %s)"
                  % (name, blas_dir, BLASES[name][1]))
            continue
        for threads in args.threads:
            for text in loaded.get((name, threads), []):
                rep = json.loads(text)
                print("  torch+%s, %d thread(s): sgemm_ in %s"
                      % (name, threads, rep["sgemm"] or "(not found)"))
                print("      BLAS files mapped: %s" % (", ".join(rep["libs"]) or "(none)"))
    print()


def same_round_ratios(rounds, num, den, key):
    """num's time / den's time for key, one per round that has both."""
    return [r[num][key] / r[den][key] for r in rounds
            if key in r.get(num, {}) and key in r.get(den, {}) and r[den][key] > 0]


def faster_blas(rounds, blases, key):
    """(name, how many times faster than the other BLAS or None) for key.

    One BLAS is named for the whole row, by the median over rounds of the
    same-round ratio of the two, so that stg_speedup compares stgrad with one
    PyTorch configuration rather than with the luckier of two in each round.
    """
    ran = [n for n in blases if any(key in r.get(n, {}) for r in rounds)]
    if not ran:
        return None, None
    if len(ran) == 1:
        return ran[0], None
    a, b = ran
    ratios = same_round_ratios(rounds, a, b, key)
    if not ratios:
        return a, None
    r = statistics.median(ratios)  # a's time / b's time: above 1, b is faster
    return (b, r) if r > 1 else (a, 1 / r)


def report(blases, rounds):
    """The table; rounds holds one dict per round mapping 'stgrad' and each
    BLAS name to that side's medians keyed by (case, mode, batch, threads)."""
    def row_order(key):
        case, mode, batch, threads = key
        return (ALL_CASES.index(case) if case in ALL_CASES else len(ALL_CASES), case,
                mode, batch, threads)

    def med(vals):
        return "%.1f" % statistics.median(vals) if vals else "-"

    def ratio(vals):
        if not vals:
            return "-"
        r = statistics.median(vals)
        return "%.2f" % r if r >= 0.1 else "%.2g" % r

    keys = sorted({k for r in rounds for side in r.values() for k in side}, key=row_order)
    print("stg_speedup = the faster PyTorch's time / stgrad's time: higher = stgrad faster, "
          "above 1 = stgrad beats PyTorch at its best.")
    fmt = "%-14s %-7s %5s %3s %10s %13s %17s %-15s %11s"
    print(fmt % ("case", "mode", "batch", "thr", "stgrad_us", "torch+blis_us",
                 "torch+openblas_us", "faster", "stg_speedup"))
    for key in keys:
        case, mode, batch, t = key
        us = {side: [r[side][key] for r in rounds if key in r.get(side, {})]
              for side in ["stgrad"] + list(BLASES)}
        best, by = faster_blas(rounds, blases, key)
        faster = "-" if best is None else best if by is None else "%s %.2fx" % (best, by)
        speedup = same_round_ratios(rounds, best, "stgrad", key) if best else []
        print(fmt % (case, mode, batch if batch else "-", t, med(us["stgrad"]),
                     med(us["blis"]), med(us["openblas"]), faster, ratio(speedup)))
    print("\nTimes in us, each the median over %d round(s) of that round's median.  faster: "
          "the BLAS PyTorch was faster with, and by how much (the median over rounds of the "
          "same-round ratio).  stg_speedup: that BLAS's time / stgrad's time, the median over "
          "rounds of the same-round ratio; higher = stgrad faster." % len(rounds))


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


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
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
    for name, (default, package) in BLASES.items():
        ap.add_argument("--%s-dir" % name, default=default, metavar="DIR",
                        help="directory of the %s libblas.so.3 (default %s, from %s)"
                        % (name, default, package))
    ap.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")
    if not args.min_time > 0:
        ap.error("--min-time must be positive")
    if args.worker is not None and args.worker < 1:
        ap.error("--worker must be at least 1")
    return args


def main():
    args = parse_args()
    if args.worker is not None:
        worker(args)
        return

    blases = available_blases(args)
    rounds = []
    loaded = {}  # (blas, threads) -> the distinct reports of that worker, as JSON
    with tempfile.TemporaryDirectory(prefix="torch_bench.") as tmp:
        for i in range(args.rounds):
            rnd = {"stgrad": run_stg_bench(args, os.path.join(tmp, "stg-bench.json"))}
            for blas, blas_dir in blases.items():
                rnd[blas] = {}
                for t in args.threads:
                    medians, rep = run_worker(args, blas, blas_dir, t)
                    rnd[blas].update(medians)
                    if rep is not None:
                        note_loaded(loaded, blas, blas_dir, t, rep)
            rounds.append(rnd)
            print("round %d/%d done" % (i + 1, args.rounds), file=sys.stderr)
    print_loaded(args, blases, loaded)
    report(blases, rounds)


if __name__ == "__main__":
    main()
