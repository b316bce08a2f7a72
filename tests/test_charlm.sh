#!/bin/sh
# stg-charlm end to end on two files of the fortunes text (tiny model):
# option and data errors, training with validation, save + resume giving the
# straight run's checkpoint byte for byte, and sampling that the seed fixes.
# Skips (77) when Debian's fortunes are not installed.
set -u
tool=${CHARLM:-./stg-charlm}
fortunes=/usr/share/games/fortunes
. "$(dirname "$0")/expect.sh"

expect 2 "unknown option '--bogus'" -- --bogus 1
expect 2 "--lr" -- --lr abc
expect 2 "--stop-after: 3 is more than --epochs 2" -- --epochs 2 --stop-after 3
expect 2 "--prime" -- --prime ""
expect 1 "$tmp/nowhere" -- --data "$tmp/nowhere"
mkdir "$tmp/tiny" && printf 'too short' >"$tmp/tiny/a"
expect 1 "too few" -- --data "$tmp/tiny"
expect 1 "cannot open" -- --sample "$tmp/missing.ck"

if [ ! -f "$fortunes/art" ] || [ ! -f "$fortunes/computers" ]; then
    echo "SKIP: $fortunes not installed (Debian package fortunes)"
    [ $fails -eq 0 ] && exit 77 || exit 1
fi
mkdir "$tmp/text" && cp "$fortunes/art" "$fortunes/computers" "$tmp/text/" &&
    cp "$fortunes/art" "$tmp/text/art.dat" # indexes are skipped
small="--data $tmp/text --epochs 2 --batch 8 --steps 16 --embed 8 --hidden 32 --threads 2"
"$tool" $small --save "$tmp/full.ck" --csv "$tmp/c.csv" >"$tmp/full.out" 2>&1 ||
    { echo "FAIL: training: $(cat "$tmp/full.out")"; fails=$((fails + 1)); }
"$tool" $small --stop-after 1 --save "$tmp/part.ck" >/dev/null 2>&1 || fails=$((fails + 1))
"$tool" $small --resume "$tmp/part.ck" --save "$tmp/part.ck" >/dev/null 2>&1 ||
    fails=$((fails + 1))
cmp -s "$tmp/full.ck" "$tmp/part.ck" ||
    { echo "FAIL: the resumed checkpoint differs from the straight run's"; fails=$((fails + 1)); }
grep -q "323308 bytes of text" "$tmp/full.out" ||
    { echo "FAIL: the text is not the two files: $(head -1 "$tmp/full.out")"; fails=$((fails + 1)); }
bpc=$(sed -n 's/^epoch 2\/2 .*val_bpc \([0-9.]*\).*/\1/p' "$tmp/full.out")
if [ -z "$bpc" ] || ! awk -v b="$bpc" 'BEGIN { exit !(b > 1 && b < 6) }'; then
    echo "FAIL: validation bits per character '$bpc' (want between 1 and 6)"
    fails=$((fails + 1))
fi
[ "$(grep -c '^[12],[0-9.]*,[0-9.]*,[0-9.]*,[0-9.]*$' "$tmp/c.csv")" = 2 ] ||
    { echo "FAIL: --csv wrote '$(cat "$tmp/c.csv")'"; fails=$((fails + 1)); }

sample="--embed 8 --hidden 32 --sample $tmp/full.ck --length 200 --prime The"
"$tool" $sample --seed 5 >"$tmp/s1" 2>&1 && "$tool" $sample --seed 5 >"$tmp/s2" 2>&1 &&
    "$tool" $sample --seed 6 >"$tmp/s3" 2>&1 || { echo "FAIL: sampling"; fails=$((fails + 1)); }
cmp -s "$tmp/s1" "$tmp/s2" || { echo "FAIL: the same seed sampled different text"; fails=$((fails + 1)); }
cmp -s "$tmp/s1" "$tmp/s3" && { echo "FAIL: two seeds sampled the same text"; fails=$((fails + 1)); }
[ "$(head -c 3 "$tmp/s1")" = "The" ] && [ "$(wc -c <"$tmp/s1")" -eq 204 ] ||
    { echo "FAIL: the sample is not the prime and 200 bytes: $(cat "$tmp/s1")"; fails=$((fails + 1)); }
expect 1 "hidden" -- --hidden 16 --embed 8 --sample "$tmp/full.ck"

echo "stg-charlm: $fails failure(s)"
[ $fails -eq 0 ]
