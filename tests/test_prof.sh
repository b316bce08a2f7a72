#!/bin/sh
# stg-prof end to end: option errors (status and message), an unwritable
# trace path, and short runs of an MLP, lenet and a matmul case that print the
# table and write a trace and a DOT file.
set -u
tool=${PROF:-./stg-prof}
. "$(dirname "$0")/expect.sh"

expect 0 "usage: stg-prof" -- --help
expect 2 "unknown option '--bogus'" -- --bogus
expect 2 "unknown model 'resnet'" -- --model resnet
expect 2 "layer sizes '784,,10'" -- --layers 784,,10
expect 2 "layer sizes '5'" -- --layers 5
expect 2 "--batch" -- --batch 0
expect 2 "--threads" -- --threads many
expect 2 "--mode" -- --model mm_square --mode sideways
expect 2 "--trace needs a value" -- --trace
expect 1 "$tmp/nowhere/t.json" -- --layers 20,10,3 --batch 4 --steps 3 --trace "$tmp/nowhere/t.json"

small="--layers 20,10,3 --batch 4 --steps 5 --warmup 1"
expect 0 "step time: median" -- $small --threads 2 --memory --trace "$tmp/t.json" --dot "$tmp/g.dot"
for word in "mlp 20-10-3, batch 4" "matmul (w1)" "sgd (w2)" "barrier waits" "reuse ratio" \
            "optimizer state"; do
    grep -q -- "$word" "$tmp/out" || { echo "FAIL: no '$word' in the output"; fails=$((fails + 1)); }
done
expect 0 "lenet, batch 2" -- --model lenet --batch 2 --steps 2 --warmup 1 --threads 2
for word in "im2col (x)" "matmul (conv2.w)" "max_pool_grad" "col2im" "sgd (fc1.w)"; do
    grep -q -- "$word" "$tmp/out" || { echo "FAIL: no '$word' in the lenet profile"; fails=$((fails + 1)); }
done
head -c 40 "$tmp/t.json" | grep -q '^{"displayTimeUnit":"ns","traceEvents":\[' ||
    { echo "FAIL: $tmp/t.json is not a trace"; fails=$((fails + 1)); }
head -n 1 "$tmp/g.dot" | grep -q '^digraph stgrad {$' ||
    { echo "FAIL: $tmp/g.dot is not a DOT graph"; fails=$((fails + 1)); }
if command -v dot >/dev/null 2>&1; then
    dot -Tsvg "$tmp/g.dot" -o "$tmp/g.svg" || { echo "FAIL: dot rejects $tmp/g.dot"; fails=$((fails + 1)); }
fi
expect 0 "mm_square fwd, 268.4 MFLOP" -- --model mm_square --mode fwd --steps 2 --warmup 0 --threads 1
expect 0 "dot fwd+bwd" -- --model dot --steps 2 --warmup 0

[ $fails -eq 0 ] || exit 1
