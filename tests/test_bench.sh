#!/bin/sh
# stg-bench end to end: option errors (status and message), an unwritable
# JSON path, a short run whose table and JSON hold every configuration asked
# for, and --steps-only.
set -u
tool=${BENCH:-./stg-bench}
. "$(dirname "$0")/expect.sh"

expect 0 "usage: stg-bench" -- --help
expect 2 "unknown option '--bogus'" -- --bogus
expect 2 "unknown case 'resnet'" -- --cases dot,resnet
expect 2 "--threads needs a whole number" -- --threads 1,0
expect 2 "--batches needs a whole number" -- --batches 64,x
expect 2 "--rounds" -- --rounds 0
expect 2 "--min-time" -- --min-time -1
expect 2 "--modes" -- --modes sideways
expect 2 "--json needs a value" -- --json
expect 2 "--steps-only needs --steps" -- --steps-only mlp
expect 2 "unknown case 'resnet'" -- --steps-only resnet --steps 2
quick="--rounds 1 --min-time 0.002"
expect 2 "--json needs a value" -- --json --help
expect 2 "go with --steps-only" -- --steps 3
expect 1 "cannot write '$tmp/nowhere/b.json'" -- $quick --cases dot --threads 1 \
    --json "$tmp/nowhere/b.json"
# a directory in the way: the temporary file is written, the rename fails
mkdir "$tmp/taken"
expect 1 "cannot write '$tmp/taken'" -- $quick --cases dot --threads 1 --json "$tmp/taken"
ls "$tmp" | grep -q 'taken\.tmp' && { echo "FAIL: a temporary file was left behind"; fails=$((fails + 1)); }

# a build without BLIS (HAVE_BLIS=no, from make check) has no BLIS-alone
# baseline, and says so
blis=${HAVE_BLIS:-yes} baseline="blis/stg"
[ "$blis" = no ] && baseline="no BLIS-alone baseline"
expect 0 "gemm: " -- $quick --cases dot,mm_batched,mlp,lenet --batches 2,3 --threads 1,2 \
    --latency 20 --json "$tmp/b.json"
for word in "FMA peak" "$baseline" "p99/p50"; do
    grep -q -- "$word" "$tmp/out" || { echo "FAIL: no '$word' in the output"; fails=$((fails + 1)); }
done
# 2 matmul cases x 2 modes x 2 thread counts, and the mlp at 2 batches x 2
[ "$(grep -c -E '^(dot|mm_batched) ' "$tmp/out")" = 8 ] ||
    { echo "FAIL: expected 8 matmul rows"; cat "$tmp/out"; fails=$((fails + 1)); }
[ "$(grep -c -E '^mlp ' "$tmp/out")" = 4 ] ||
    { echo "FAIL: expected 4 mlp rows"; cat "$tmp/out"; fails=$((fails + 1)); }
# lenet at its one batch (64) x 2 thread counts
[ "$(grep -c -E '^lenet +step +64 ' "$tmp/out")" = 2 ] ||
    { echo "FAIL: expected 2 lenet rows"; cat "$tmp/out"; fails=$((fails + 1)); }
if command -v python3 >/dev/null 2>&1; then
    python3 - "$tmp/b.json" "$blis" <<'PY' || fails=$((fails + 1))
import json, sys
d = json.load(open(sys.argv[1]))
blis = sys.argv[2] == "yes"
assert d["gemm"].startswith("gemm: ") and d["gemm_kernel"] in ("blis", "avx512", "avx2", "portable"), d
rows = d["results"]
assert len(rows) == 14, len(rows)
assert len(d["latency"]) == 2 and all(r["p50_us"] <= r["p99_us"] <= r["max_us"] for r in d["latency"])
for r in rows:
    assert 0 < r["p10_us"] <= r["median_us"] <= r["p99_us"], r
    assert r["flops"] > 0, r
    step = r["case"] in ("mlp", "lenet")
    assert (r["blis_us"] > 0) if blis and r["case"] != "lenet" else (r["blis_us"] is None), r
    assert ("blis_ratio" in r) == (not step), r
    assert (r["batch"] is None) == (not step), r
    assert (r["gbs"] is None) == step, r
assert set(d["peak_gflops"]) == {"1", "2"}
PY
fi
for args in "mm_square --mode fwd --steps 2 --threads 2" "mlp --batch 3 --steps 2 --warmup 1"; do
    "$tool" --steps-only $args >"$tmp/out" 2>&1 && [ ! -s "$tmp/out" ] ||
        { echo "FAIL: stg-bench --steps-only $args"; cat "$tmp/out"; fails=$((fails + 1)); }
done

[ $fails -eq 0 ] || exit 1
