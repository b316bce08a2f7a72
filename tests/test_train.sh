#!/bin/sh
# stg-train end to end: option and data errors (status and message), a short
# run on the real Fashion-MNIST files, and save + resume giving a checkpoint
# identical to a straight run.  Skips (77) when the dataset is not installed.
set -u
tool=${TRAIN:-./stg-train}
data=/usr/share/datasets/fashion-mnist
. "$(dirname "$0")/expect.sh"

expect 2 "unknown option '--bogus'" -- --bogus
expect 2 "--lr" -- --lr abc
expect 2 "--momentum" -- --momentum 2
expect 2 "--layers" -- --layers 512,,256
expect 2 "--nesterov" -- --optimizer adam --nesterov
expect 1 "cannot open" -- --data "$tmp/nowhere"
expect 1 "cannot open" -- --eval "$tmp/missing.ck"
printf 'not a checkpoint at all' >"$tmp/junk.ck"
expect 1 "STGRADCK" -- --eval "$tmp/junk.ck"

if [ ! -f "$data/train-images-idx3-ubyte.gz" ]; then
    echo "SKIP: $data not installed (Debian package dataset-fashion-mnist)"
    [ $fails -eq 0 ] && exit 77 || exit 1
fi

# a corrupt copy of the data is named in the error
mkdir "$tmp/bad" && cp "$data"/*.gz "$tmp/bad/" && printf 'xx' | \
    dd of="$tmp/bad/t10k-labels-idx1-ubyte.gz" bs=1 seek=20 conv=notrunc 2>/dev/null
expect 1 "t10k-labels-idx1-ubyte.gz" -- --data "$tmp/bad" --epochs 1 --quiet

# two epochs straight vs one + save + resume: the same checkpoint, byte for byte
small="--layers 64 --epochs 2 --threads 2 --quiet"
"$tool" $small --save "$tmp/full.ck" >"$tmp/full.out" || fails=$((fails + 1))
"$tool" $small --stop-after 1 --save "$tmp/part.ck" >/dev/null || fails=$((fails + 1))
"$tool" $small --resume "$tmp/part.ck" --save "$tmp/part.ck" >"$tmp/resumed.out" ||
    fails=$((fails + 1))
if ! cmp -s "$tmp/full.ck" "$tmp/part.ck"; then
    echo "FAIL: resumed checkpoint differs from the straight run's"
    fails=$((fails + 1))
fi
grep -q "epoch 2/2 .*test_acc" "$tmp/full.out" || { echo "FAIL: no epoch line"; fails=$((fails + 1)); }
acc=$(sed -n 's/.*epoch 2\/2 .*test_acc \([0-9.]*\)%.*/\1/p' "$tmp/full.out")
if [ -z "$acc" ] || ! awk -v a="$acc" 'BEGIN { exit !(a > 80) }'; then
    echo "FAIL: 2 epochs reached test accuracy '$acc', expected above 80%"
    fails=$((fails + 1))
fi
"$tool" --layers 64 --eval "$tmp/full.ck" >"$tmp/eval.out" 2>&1 || fails=$((fails + 1))
grep -q "test_acc $acc%" "$tmp/eval.out" ||
    { echo "FAIL: --eval gave '$(cat "$tmp/eval.out")', training said $acc%"; fails=$((fails + 1)); }

echo "stg-train: $fails failure(s)"
[ $fails -eq 0 ]
