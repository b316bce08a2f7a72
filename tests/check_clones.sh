#!/bin/sh
# The copies of a cloned loop (STG_CLONES: default, x86-64-v3, x86-64-v4)
# must give the same bits.  They can differ only if the compiler fused a
# multiply and an add in one of them (-ffp-contract=off forbids it, nothing here
# asks for it) or reordered a sum (only -ffast-math allows it), so look
# for fused instructions in every copy.  Skipped where there are no copies
# (clang, other CPUs) or no objdump; on x86-64 with GCC (CC from make
# check) a build without copies fails.
set -u
lib=${CORE:-.libs/libstgrad_core.a}
command -v objdump >/dev/null 2>&1 || { echo "no objdump: skipped"; exit 77; }
[ -f "$lib" ] || { echo "no $lib: skipped"; exit 77; }
expect=no
if [ "$(uname -m)" = x86_64 ] && [ -n "${CC:-}" ] &&
    ! $CC -dM -E - </dev/null 2>/dev/null | grep -q __clang__ &&
    $CC -dM -E - </dev/null 2>/dev/null | grep -q __GNUC__; then
    expect=yes
fi
objdump -d --no-show-raw-insn "$lib" | awk -v expect=$expect '
    /^[0-9a-f]+ <[^>]*>:$/ { name = $2; clone = name ~ /\.(arch_x86_64_v[34]|default)>/; if (clone) copies++ }
    clone && /\tv?f(n?m(add|sub)|madd|msub)[0-9a-z]*/ { print "FAIL: fused multiply-add in " name ": " $0; bad++ }
    END {
        if (copies == 0 && expect == "yes") { print "FAIL: no cloned loops in a GCC build for x86-64"; exit 1 }
        if (copies == 0) { print "no cloned loops in this build: skipped"; exit 77 }
        printf "%d cloned copies, %d with fused multiply-adds\n", copies, bad + 0
        exit bad > 0
    }'
