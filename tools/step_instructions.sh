#!/bin/bash
# Proves that every mlp training step executes the same number of
# instructions: a static plan has no data-dependent control flow beyond
# relu's gradient, so any spread points at hidden work (allocation, lazy
# initialisation, spinning) inside the step.
#
#   bash tools/step_instructions.sh [--threads 1,2] [--steps 20] [--batch 64]
#
# Run from the build directory (where stg-bench and libtool are).  For each
# thread count, runs
#   ./stg-bench --steps-only mlp --batch B --threads T --steps N --warmup 2
# under callgrind, takes one instruction count (Ir) per step, skips the
# warm-up steps and prints min, median and max per step and the spread
# (max - min) / median, which must stay within 0.1%.
#
# How a step is counted:
# - --dump-after=stg_plan_step writes one profile each time a step returns and
#   zeroes the counters, so each dump holds exactly one step.  Collection is on
#   for the whole program and callgrind adds up all threads into one profile
#   (--separate-threads=no), so the plan's worker threads' share of the step,
#   which runs outside stg_plan_step's call stack, is in the dump too.  The
#   caller only returns after the step's closing barrier, so none of the
#   workers' step work leaks into the next dump.
# - Waiting takes a number of instructions that depends on how the threads
#   happen to be scheduled, so the barrier (stgR_pool_barrier) and a worker's
#   wait for the next step (stgR_pool_idle), both non-inlined for this
#   purpose, are left out with --toggle-collect.  That option also switches
#   off collection at start, and the options are applied in order, so
#   --collect-atstart=yes must come after them; the other way round, only the
#   waits would be counted.  Multi-thread runs also use --wait passive, so a
#   waiting thread sleeps instead of spinning while valgrind runs the other.
#
# Exit status: 0 if every thread count passes, 1 if one fails or a run
# fails, 2 on bad options or when valgrind is missing.

set -u

threads=1,2
steps=20
batch=64
warmup=2
limit=0.1 # percent

usage() {
    sed -n '/^#   bash/s/^#   //p' "$0"
}

whole() { # whole OPTION VALUE: a positive whole number, or exit 2
    if ! [[ $2 =~ ^[1-9][0-9]*$ ]]; then
        echo "step_instructions: $1 needs a positive whole number (got '$2')" >&2
        exit 2
    fi
}

while [ $# -gt 0 ]; do
    case $1 in
    --threads | --steps | --batch)
        if [ $# -lt 2 ]; then
            echo "step_instructions: $1 needs a value" >&2
            exit 2
        fi
        case $1 in
        --threads)
            for t in ${2//,/ }; do whole --threads "$t"; done
            [ -n "${2//,/}" ] || whole --threads "$2"
            threads=$2
            ;;
        --steps) whole --steps "$2" && steps=$2 ;;
        --batch) whole --batch "$2" && batch=$2 ;;
        esac
        shift 2
        ;;
    -h | --help)
        usage
        exit 0
        ;;
    *)
        echo "step_instructions: unknown option '$1'" >&2
        usage >&2
        exit 2
        ;;
    esac
done

if ! command -v valgrind >/dev/null; then
    echo "step_instructions: valgrind is not installed (Debian: apt-get install valgrind)" >&2
    exit 2
fi
for f in ./stg-bench ./libtool; do
    if [ ! -x $f ]; then
        echo "step_instructions: no $f here; run from the build directory after make" >&2
        exit 1
    fi
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/step_instructions.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT

# Runs one thread count under callgrind; its dumps land in $tmp/T/cg.out.N.
profile() {
    local t=$1 dir=$tmp/$1
    mkdir -p "$dir"
    ./libtool --mode=execute valgrind --tool=callgrind \
        --callgrind-out-file="$dir/cg.out" --dump-after=stg_plan_step \
        --toggle-collect=stgR_pool_barrier --toggle-collect=stgR_pool_idle \
        --collect-atstart=yes \
        ./stg-bench --steps-only mlp --batch "$batch" --threads "$t" --wait passive \
        --steps "$steps" --warmup "$warmup" >"$dir/log" 2>&1
}

# valgrind runs a program on one core whatever its thread count, so the
# thread counts run side by side; instruction counts do not depend on timing.
echo "mlp step, batch $batch: $steps steps after $warmup warm-up, each thread count under callgrind (several minutes)..." >&2
declare -A pid
for t in ${threads//,/ }; do
    profile "$t" &
    pid[$t]=$!
done

status=0
printf '%-7s %5s %12s %12s %12s %9s  %s\n' threads steps min median max spread result
for t in ${threads//,/ }; do
    if ! wait "${pid[$t]}"; then
        echo "step_instructions: the run at $t thread(s) failed:" >&2
        cat "$tmp/$t/log" >&2
        status=1
        continue
    fi
    # One "part summary" line per step dump, in step order; the dump at
    # program termination (teardown) is not a step.
    counts=$(for f in "$tmp/$t"/cg.out.*; do
        awk '/^part:/ { p = $2 } /^desc: Trigger: --dump-after/ { s = 1 }
             /^summary:/ { n = $2 } END { if (s) print p, n }' "$f"
    done | sort -n | awk -v w="$warmup" 'NR > w { print $2 }')
    got=$(printf '%s\n' "$counts" | grep -c .)
    if [ "$got" -ne "$steps" ]; then
        echo "step_instructions: expected $steps step dumps at $t thread(s), found $got" >&2
        status=1
        continue
    fi
    note=""
    [ "$t" -gt 1 ] && note="  (--wait passive)"
    line=$(printf '%s\n' "$counts" | sort -n | awk -v t="$t" -v lim="$limit" -v note="$note" '
        { v[NR] = $1 }
        END {
            med = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
            spread = 100 * (v[NR] - v[1]) / med
            printf "%-7d %5d %12d %12.0f %12d %8.4f%%  %s%s\n", t, NR, v[1], med, v[NR],
                   spread, spread <= lim ? "PASS" : "FAIL", note
        }')
    echo "$line"
    [[ $line == *FAIL* ]] && status=1
done
echo "Instructions per step (callgrind Ir, all threads, waits excluded);" \
    "spread = (max - min) / median, PASS within ${limit}%."
exit $status
