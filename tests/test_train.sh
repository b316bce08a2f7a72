#!/bin/sh
# stg-train end to end: option and data errors (status and message), a short
# run on the real Fashion-MNIST files, save + resume giving a checkpoint
# identical to a straight run, and --mpi where the build has MPI.  Skips (77)
# when the dataset is not installed.
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

# the gzip trailer cut off the images, bytes after the member: refused
mkdir "$tmp/cut" && cp "$data"/*.gz "$tmp/cut/"
f="$tmp/cut/train-images-idx3-ubyte.gz"
head -c $(($(wc -c <"$f") - 4)) "$data/train-images-idx3-ubyte.gz" >"$f"
expect 1 "train-images-idx3-ubyte.gz: truncated or corrupt gzip stream" -- --data "$tmp/cut" \
    --epochs 1 --quiet
cp "$data/train-images-idx3-ubyte.gz" "$f" && printf 'junk' >>"$f"
expect 1 "after the gzip member" -- --data "$tmp/cut" --epochs 1 --quiet

# a FIFO instead of a file is refused, not waited on
mkdir "$tmp/fifo" && cp "$data"/*.gz "$tmp/fifo/" && rm "$tmp/fifo/t10k-images-idx3-ubyte.gz" &&
    mkfifo "$tmp/fifo/t10k-images-idx3-ubyte.gz"
expect 1 "not a regular file" -- --data "$tmp/fifo" --epochs 1 --quiet

# a label of 200 in 10 classes is named with its file and position; --classes
# takes other data sets
mkdir "$tmp/lab" && cp "$data"/*.gz "$tmp/lab/"
gzip -dc "$data/t10k-labels-idx1-ubyte.gz" >"$tmp/labels" &&
    printf '\310' | dd of="$tmp/labels" bs=1 seek=$((8 + 1234)) conv=notrunc 2>/dev/null &&
    gzip -c "$tmp/labels" >"$tmp/lab/t10k-labels-idx1-ubyte.gz" ||
    { echo "FAIL: could not write a bad label file"; fails=$((fails + 1)); }
expect 1 "label 200 at position 1234 is not below the class count 10" -- --data "$tmp/lab" \
    --epochs 1 --quiet
expect 2 "--classes" -- --classes 1
expect 2 "--layers and --activation apply to --model mlp only" -- --model lenet --layers 64
expect 2 "--model" -- --model resnet

# lenet on the first 640 training and 200 test images (an IDX file's count is
# a big-endian 32-bit number after the 4-byte magic)
be32() {
    for shift in 24 16 8 0; do
        printf "\\$(printf '%03o' $(($1 >> shift & 255)))"
    done
}
subset() { # source, destination, count, header bytes, bytes per record
    gzip -dc "$1" >"$tmp/raw" &&
        { head -c 4 "$tmp/raw"; be32 "$3"; tail -c +9 "$tmp/raw" | head -c $(($4 - 8));
          tail -c +$(($4 + 1)) "$tmp/raw" | head -c $(($3 * $5)); } | gzip -c >"$2"
}
mkdir "$tmp/small"
subset "$data/train-images-idx3-ubyte.gz" "$tmp/small/train-images-idx3-ubyte.gz" 640 16 784 &&
subset "$data/train-labels-idx1-ubyte.gz" "$tmp/small/train-labels-idx1-ubyte.gz" 640 8 1 &&
subset "$data/t10k-images-idx3-ubyte.gz" "$tmp/small/t10k-images-idx3-ubyte.gz" 200 16 784 &&
subset "$data/t10k-labels-idx1-ubyte.gz" "$tmp/small/t10k-labels-idx1-ubyte.gz" 200 8 1 ||
    { echo "FAIL: could not write the small data set"; fails=$((fails + 1)); }
lenet="--model lenet --data $tmp/small --epochs 2 --threads 2 --quiet"
"$tool" $lenet --save "$tmp/lenet.ck" --csv "$tmp/lenet.csv" >"$tmp/lenet.out" 2>&1 ||
    fails=$((fails + 1))
"$tool" $lenet --stop-after 1 --save "$tmp/lenet1.ck" >/dev/null 2>&1 || fails=$((fails + 1))
"$tool" $lenet --resume "$tmp/lenet1.ck" --save "$tmp/lenet1.ck" >/dev/null 2>&1 ||
    fails=$((fails + 1))
grep -q "epoch 2/2 .*test_acc" "$tmp/lenet.out" ||
    { echo "FAIL: lenet: no epoch line in '$(cat "$tmp/lenet.out")'"; fails=$((fails + 1)); }
[ "$(head -n 1 "$tmp/lenet.csv")" = "epoch,train_loss,test_loss,test_acc,seconds,steps_per_s" ] &&
    [ "$(grep -c '^[12],[0-9.]*,[0-9.]*,[0-9.]*,[0-9.]*,[0-9.]*$' "$tmp/lenet.csv")" = 2 ] ||
    { echo "FAIL: --csv wrote '$(cat "$tmp/lenet.csv")'"; fails=$((fails + 1)); }
expect 1 "--csv: cannot create '$tmp/nowhere/x.csv'" -- $lenet --csv "$tmp/nowhere/x.csv"
cmp -s "$tmp/lenet.ck" "$tmp/lenet1.ck" ||
    { echo "FAIL: lenet: the resumed checkpoint differs from the straight run's"; fails=$((fails + 1)); }

# with batch norm and dropout: running statistics and dropout masks resume
# to the same bytes; --eval of the checkpoint gives what training reported
bn="--model lenet --data $tmp/small --epochs 2 --threads 2 --quiet --batch-norm --dropout 0.25"
"$tool" $bn --save "$tmp/bn.ck" >"$tmp/bn.out" 2>&1 || fails=$((fails + 1))
"$tool" $bn --stop-after 1 --save "$tmp/bn1.ck" >/dev/null 2>&1 || fails=$((fails + 1))
"$tool" $bn --resume "$tmp/bn1.ck" --save "$tmp/bn1.ck" >/dev/null 2>&1 || fails=$((fails + 1))
cmp -s "$tmp/bn.ck" "$tmp/bn1.ck" ||
    { echo "FAIL: lenet --batch-norm: the resumed checkpoint differs"; fails=$((fails + 1)); }
grep -aq "bn2.running_var" "$tmp/bn.ck" ||
    { echo "FAIL: lenet --batch-norm: no running statistics in the checkpoint"; fails=$((fails + 1)); }
bnacc=$(sed -n 's/.*epoch 2\/2 .*test_acc \([0-9.]*\)%.*/\1/p' "$tmp/bn.out")
"$tool" $bn --eval "$tmp/bn.ck" >"$tmp/bneval.out" 2>&1 || fails=$((fails + 1))
[ -n "$bnacc" ] && grep -q "test_acc $bnacc%" "$tmp/bneval.out" ||
    { echo "FAIL: lenet --batch-norm --eval gave '$(cat "$tmp/bneval.out")', training said" \
           "'$bnacc'"; fails=$((fails + 1)); }
expect 1 "saved with --batch-norm, or without it?" -- $lenet --eval "$tmp/bn.ck"

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

# --mpi: processes sharing each global batch.  A checkpoint resumes bitwise
# with the same process count, and with another within rounding of the
# one-process run; evaluation, reduced over the processes, is what --eval
# of the checkpoint gives on one process.
if [ "${HAVE_MPI:-no}" = yes ] && [ -n "${MPIRUN:-}" ]; then
    mpi() { # Open MPI's memory would be all of a sanitizer build's leak report
        np=$1
        shift
        # (and containers often forbid the cross-process reads of Open
        # MPI's default shared-memory copies)
        ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" \
            OMPI_MCA_btl_vader_single_copy_mechanism=none \
            "$MPIRUN" --allow-run-as-root --oversubscribe -np "$np" "$tool" --mpi "$@"
    }
    dp="--layers 64 --data $tmp/small --batch 48 --epochs 2 --threads 1 --quiet"
    "$tool" $dp --save "$tmp/one.ck" >"$tmp/one.out" 2>&1 || fails=$((fails + 1))
    mpi 2 $dp --save "$tmp/two.ck" >"$tmp/two.out" 2>&1 || fails=$((fails + 1))
    mpi 2 $dp --stop-after 1 --save "$tmp/two1.ck" >/dev/null 2>&1 || fails=$((fails + 1))
    mpi 2 $dp --resume "$tmp/two1.ck" --save "$tmp/two1.ck" >/dev/null 2>&1 ||
        fails=$((fails + 1))
    cmp -s "$tmp/two.ck" "$tmp/two1.ck" ||
        { echo "FAIL: --mpi: 2 processes resumed differ from 2 straight"; fails=$((fails + 1)); }
    mpi 2 $dp --threads 2 --save "$tmp/two2t.ck" >/dev/null 2>&1 || fails=$((fails + 1))
    cmp -s "$tmp/two.ck" "$tmp/two2t.ck" ||
        { echo "FAIL: --mpi: 2 processes of 2 threads differ from 1 thread"; fails=$((fails + 1)); }
    mpi 3 $dp --stop-after 1 --save "$tmp/three1.ck" >/dev/null 2>&1 || fails=$((fails + 1))
    mpi 2 $dp --resume "$tmp/three1.ck" >"$tmp/three2.out" 2>&1 || fails=$((fails + 1))
    loss() { sed -n 's/.*epoch 2\/2 .*test_loss \([0-9.]*\) .*/\1/p' "$1"; }
    for run in two three2; do
        a=$(loss "$tmp/one.out") b=$(loss "$tmp/$run.out")
        if [ -z "$a" ] || [ -z "$b" ] || ! awk -v a="$a" -v b="$b" \
            'BEGIN { d = a - b; exit !(d < 0.002 && d > -0.002) }'; then
            echo "FAIL: --mpi ($run): test loss '$b', one process '$a'"
            fails=$((fails + 1))
        fi
    done
    acc=$(sed -n 's/.*epoch 2\/2 .*test_acc \([0-9.]*\)%.*/\1/p' "$tmp/two.out")
    "$tool" --layers 64 --data "$tmp/small" --eval "$tmp/two.ck" >"$tmp/twoeval.out" 2>&1 ||
        fails=$((fails + 1))
    [ -n "$acc" ] && grep -q "test_acc $acc%" "$tmp/twoeval.out" ||
        { echo "FAIL: --mpi: --eval gave '$(cat "$tmp/twoeval.out")', training said '$acc'"
          fails=$((fails + 1)); }
    mpi 3 --layers 64 --data "$tmp/small" --epochs 1 --quiet >"$tmp/out" 2>"$tmp/err"
    [ $? = 2 ] && grep -q "64 is not a multiple of the 3 processes" "$tmp/err" ||
        { echo "FAIL: --mpi with 3 processes and --batch 64: $(cat "$tmp/err")"
          fails=$((fails + 1)); }
    expect 2 "--mpi cannot be combined" -- --mpi --batch-norm
fi

echo "stg-train: $fails failure(s)"
[ $fails -eq 0 ]
