#!/bin/sh
# Data-parallel training over MPI (tests/mpi_check.c under mpirun): 1, 2 and
# 3 processes agree with each other, with a second run and with one process
# on the whole batch; failures on one rank fail the step everywhere; a
# checkpoint of a 3-process run resumes bitwise with 3 processes and within
# rounding with 2.  Skipped in a build without MPI.
set -u
if [ "${HAVE_MPI:-no}" != yes ] || [ -z "${MPIRUN:-}" ]; then
    echo "SKIP: this build has no MPI (Debian libopenmpi-dev, openmpi-bin)"
    exit 77
fi
# Open MPI keeps memory to the end of the process: under AddressSanitizer
# (make distcheck) the leak report would be all Open MPI's.  stgrad's own
# leaks are checked by the other tests, test_collective's data-parallel
# plans included.
ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
# Containers often forbid the cross-process reads Open MPI's shared-memory
# transport uses by default; copying through shared memory works anywhere.
OMPI_MCA_btl_vader_single_copy_mechanism=none
export ASAN_OPTIONS OMPI_MCA_btl_vader_single_copy_mechanism
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
status=0
run() {
    np=$1
    shift
    # --oversubscribe: more processes than cores is the point on a small
    # machine; --allow-run-as-root: CI runs as root
    if ! "$MPIRUN" --allow-run-as-root --oversubscribe -np "$np" ./tests/mpi_check "$@" \
        >"$tmp/log" 2>&1; then
        echo "FAIL: mpirun -np $np mpi_check $*"
        cat "$tmp/log"
        status=1
    else
        grep "mpi_check:" "$tmp/log"
    fi
}
for np in 1 2 3; do
    run "$np" --faults
done
run 1 --steps 8 --out "$tmp/alone"
run 3 --steps 4 --save "$tmp/ck"
run 3 --steps 8 --out "$tmp/three"
run 3 --from 4 --steps 4 --resume "$tmp/ck" --expect "$tmp/three"
run 2 --from 4 --steps 4 --resume "$tmp/ck" --expect "$tmp/alone" --tol 1e-5
run 1 --from 4 --steps 4 --resume "$tmp/ck" --expect "$tmp/alone" --tol 1e-5
exit $status
