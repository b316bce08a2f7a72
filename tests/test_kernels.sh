#!/bin/sh
# The suite once more on every GEMM kernel this CPU runs besides the default
# (the plain run covers that one): each CMocka program that plans products,
# with STG_GEMM_KERNEL forcing the kernel, so golden files, gradient checks,
# bitwise thread-count checks and the zero-allocation step hold for every
# kernel.  Kernels the CPU cannot run are named as skipped.  Then the tools
# name the kernel in use, and a bad STG_GEMM_KERNEL is refused.
set -u
tool=${BENCH:-./stg-bench}
. "$(dirname "$0")/expect.sh"

kernels=$(./tests/kernels) || { echo "FAIL: tests/kernels"; exit 1; }
default=$(echo "$kernels" | head -n 1)
echo "default kernel: $default; runnable: $(echo $kernels)"
for k in blis avx512 avx2 portable; do
    echo "$kernels" | grep -qx "$k" || echo "kernel $k: skipped, this CPU or build cannot run it"
done

programs="test_graph test_reference test_gradcheck test_plan test_run test_lowering
          test_optim test_checkpoint test_init test_profile"
for k in $(echo "$kernels" | tail -n +2); do
    before=$fails
    for t in $programs; do
        if ! STG_GEMM_KERNEL=$k "./tests/$t" >"$tmp/log" 2>&1; then
            echo "FAIL: tests/$t with STG_GEMM_KERNEL=$k"
            grep -E "FAILED|ERROR|Failure|error" "$tmp/log" | head -n 20
            fails=$((fails + 1))
        fi
    done
    [ $fails -eq $before ] && echo "kernel $k: the suite passes"
    line="gemm: stgrad $k"
    [ "$k" = blis ] && line="gemm: BLIS micro-kernel"
    STG_GEMM_KERNEL=$k expect 0 "$line" -- --cases dot --modes fwd --threads 1 \
        --rounds 1 --min-time 0.001 --no-blis
done

expect 0 "gemm: " -- --cases dot --modes fwd --threads 1 --rounds 1 --min-time 0.001 --no-blis
STG_GEMM_KERNEL=bogus expect 1 "STG_GEMM_KERNEL='bogus' names no GEMM kernel" -- --cases dot \
    --modes fwd --threads 1 --rounds 1 --min-time 0.001
tool=./stg-prof
STG_GEMM_KERNEL=portable expect 0 "gemm: stgrad portable 4x8" -- --layers 20,10,3 --batch 4 \
    --steps 2 --warmup 0

[ $fails -eq 0 ] || exit 1
