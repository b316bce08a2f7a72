#!/usr/bin/env python3
"""The mlp_dp case of BENCH.md: the mlp step as N MPI processes x 1 thread
against 1 process x N threads, at the same global batch, in interleaved
rounds.

    tools/mpi_bench.py [--processes N] [--batches 64,256] [--rounds R] [--steps S]

Each round runs, for every batch, stg-prof on one process with N threads and
stg-prof --mpi under mpirun -np N with 1 thread each (in alternating order),
and reads their step medians (rank 0's step for the MPI run) and the share
of the gradient exchange hidden behind the backward pass.  It prints the
medians over rounds and the median over rounds of the same-round ratio
mpi / threads: below 1.15 meets BENCH.md's target.
"""
import argparse
import re
import shutil
import statistics
import subprocess
import sys


def run(cmd):
    done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if done.returncode != 0:
        sys.exit(f"mpi_bench: {' '.join(cmd)} failed:\n{done.stdout}")
    step = re.search(r"step time: median ([0-9.]+) us", done.stdout)
    hidden = re.search(r"us of it blocked in waits: (-?[0-9]+)% hidden", done.stdout)
    if not step:
        sys.exit(f"mpi_bench: no step time in the output of {' '.join(cmd)}:\n{done.stdout}")
    return float(step.group(1)), int(hidden.group(1)) if hidden else None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--batches", default="64,256")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--prof", default="./stg-prof")
    a = ap.parse_args()
    mpirun = shutil.which("mpirun")
    if not mpirun:
        sys.exit("mpi_bench: no mpirun (Debian openmpi-bin)")
    n = a.processes
    batches = [int(b) for b in a.batches.split(",")]
    common = ["--steps", str(a.steps), "--warmup", "30"]
    threads, mpi, ratio, hidden = ({b: [] for b in batches} for _ in range(4))
    for r in range(a.rounds):
        for b in batches:
            one = [a.prof, "--batch", str(b), "--threads", str(n)] + common
            many = [mpirun, "--allow-run-as-root", "--oversubscribe", "--bind-to", "core",
                    "-np", str(n), a.prof, "--mpi", "--batch", str(b), "--threads", "1"] + common
            order = [one, many] if r % 2 == 0 else [many, one]
            got = {}
            for cmd in order:
                got[cmd is many] = run(cmd)
            threads[b].append(got[False][0])
            mpi[b].append(got[True][0])
            hidden[b].append(got[True][1])
            ratio[b].append(got[True][0] / got[False][0])
        print(f"round {r + 1}/{a.rounds} done", file=sys.stderr)
    med = statistics.median
    print(f"mlp 784-512-256-10 step, {n} MPI processes x 1 thread against 1 process x {n} "
          f"threads; medians over {a.rounds} rounds of {a.steps} steps")
    print(f"{'batch':>6} {'threads_us':>11} {'mpi_us':>9} {'mpi/threads':>12} {'hidden':>7}")
    for b in batches:
        print(f"{b:>6} {med(threads[b]):>11.1f} {med(mpi[b]):>9.1f} {med(ratio[b]):>12.3f} "
              f"{med(hidden[b]):>6}%")


if __name__ == "__main__":
    main()
