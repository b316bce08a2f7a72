#!/usr/bin/env python3
"""Two stgrad configurations side by side, in interleaved rounds.

    tools/bench_ab.py [--rounds N] --a NAME=COMMAND --b NAME=COMMAND [-- STG-BENCH OPTIONS]

Each COMMAND is an stg-bench invocation, optionally preceded by environment
assignments, for example

    --a blis="./stg-bench" --b avx2="STG_GEMM_KERNEL=avx2 ./stg-bench"
    --a before="/tmp/old/stg-bench" --b after="./stg-bench"

Every round runs A once and B once (one stg-bench round each, in that order,
alternating which goes first), with the options after '--' (default: every
case, --no-blis).  For each case it prints both medians over rounds and the
median over rounds of the same-round ratio time_A / time_B: above 1 means B
is faster.  The machines this project runs on drift in phases lasting
seconds (BENCH.md), so only same-round ratios are worth quoting.
"""
import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile


def split_command(spec):
    """'NAME=VAR=x ./prog args' -> (NAME, env changes, argv)."""
    name, _, command = spec.partition("=")
    if not name or not command:
        sys.exit(f"bench_ab: '{spec}' is not NAME=COMMAND")
    words = shlex.split(command)
    env = {}
    while words and "=" in words[0] and not words[0].startswith(("/", ".")):
        key, _, value = words.pop(0).partition("=")
        env[key] = value
    if not words:
        sys.exit(f"bench_ab: '{spec}' names no program")
    return name, env, words


def run_once(env_changes, argv, options, path):
    env = dict(os.environ, **env_changes)
    cmd = argv + ["--rounds", "1", "--json", path] + options
    done = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)
    if done.returncode != 0:
        sys.exit(f"bench_ab: {' '.join(cmd)} failed:\n{done.stdout}")
    with open(path) as f:
        data = json.load(f)
    rows = {}
    for r in data["results"]:
        key = (r["case"], r["mode"], r["batch"] if r["batch"] is not None else "-", r["threads"])
        rows[key] = r["median_us"]
    return data.get("gemm", ""), rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--a", required=True, help="NAME=COMMAND, the reference")
    ap.add_argument("--b", required=True, help="NAME=COMMAND, the one compared with it")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("options", nargs="*", help="stg-bench options (after --)")
    args = ap.parse_args()
    options = args.options or ["--no-blis"]
    sides = [split_command(args.a), split_command(args.b)]
    times = [{}, {}]
    ratios = {}
    gemm = ["", ""]
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            order = (0, 1) if r % 2 == 0 else (1, 0)
            got = {}
            for s in order:
                name, env, argv = sides[s]
                gemm[s], got[s] = run_once(env, argv, options, os.path.join(tmp, f"{s}.json"))
                for key, t in got[s].items():
                    times[s].setdefault(key, []).append(t)
            for key in got[0].keys() & got[1].keys():
                ratios.setdefault(key, []).append(got[0][key] / got[1][key])
            print(f"bench_ab: round {r + 1} of {args.rounds} done", file=sys.stderr)
    for s in (0, 1):
        print(f"{sides[s][0]}: {gemm[s]}")
    a, b = sides[0][0], sides[1][0]
    print(f"{'case':<15} {'mode':<8} {'batch':>5} {'thr':>3} {a + '_us':>12} {b + '_us':>12} "
          f"{a + '/' + b:>12}")
    for key in sorted(ratios, key=lambda k: (k[0], k[1], str(k[2]), k[3])):
        case, mode, batch, thr = key
        print(f"{case:<15} {mode:<8} {batch!s:>5} {thr:>3} "
              f"{statistics.median(times[0][key]):12.1f} {statistics.median(times[1][key]):12.1f} "
              f"{statistics.median(ratios[key]):12.3f}")
    print(f"Times: medians over {args.rounds} rounds; {a}/{b}: the median over rounds of the "
          f"same-round ratio (above 1: {b} is faster).")


if __name__ == "__main__":
    main()
