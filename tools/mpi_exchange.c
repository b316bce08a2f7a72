/*
 * mpi-exchange: what summing a buffer of floats over the processes of an
 * MPI run costs by itself, back to back: MPI_Allreduce, and the two phases
 * the MPI adapter uses (an all-to-all of segments, then an all-gather), as
 * non-blocking calls waited for at once.  The figure the README's cost
 * model starts from.
 *
 *   mpirun -np 2 ./tools/mpi-exchange [FLOATS [ROUNDS]]   (default 535824: the
 *                                                        mlp's gradients; 3)
 *
 * Each round times 100 sums of each kind; rank 0 prints microseconds per sum.
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank, n;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &n);
    long floats = argc > 1 ? atol(argv[1]) : 535824;
    int rounds = argc > 2 ? atoi(argv[2]) : 3;
    if (floats < n || floats > (1L << 30) || rounds < 1) {
        if (rank == 0)
            fprintf(stderr, "mpi-exchange: FLOATS in [processes, 2^30], ROUNDS >= 1\n");
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    float *a = calloc((size_t)floats, sizeof *a), *b = calloc((size_t)floats, sizeof *b);
    int *cnt = malloc(4 * (size_t)n * sizeof *cnt);
    if (!a || !b || !cnt)
        MPI_Abort(MPI_COMM_WORLD, 1);
    int *dsp = cnt + n, *rcnt = cnt + 2 * n, *rdsp = cnt + 3 * n;
    for (int r = 0; r < n; r++) {
        dsp[r] = (int)(floats * r / n);
        cnt[r] = (int)(floats * (r + 1) / n) - dsp[r];
    }
    for (int r = 0; r < n; r++)
        rcnt[r] = cnt[rank], rdsp[r] = r * cnt[rank];
    if (rank == 0)
        printf("mpi-exchange: %ld floats over %d processes, us per sum (100 each)\n", floats, n);
    for (int k = 0; k < rounds; k++) {
        double t0 = now();
        for (int i = 0; i < 100; i++)
            MPI_Allreduce(MPI_IN_PLACE, a, (int)floats, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        double t1 = now();
        for (int i = 0; i < 100; i++) {
            MPI_Request q;
            MPI_Ialltoallv(a, cnt, dsp, MPI_FLOAT, b, rcnt, rdsp, MPI_FLOAT, MPI_COMM_WORLD, &q);
            MPI_Wait(&q, MPI_STATUS_IGNORE);
            MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, a, cnt, dsp, MPI_FLOAT,
                            MPI_COMM_WORLD, &q);
            MPI_Wait(&q, MPI_STATUS_IGNORE);
        }
        double t2 = now();
        if (rank == 0)
            printf("round %d: MPI_Allreduce %.0f  all-to-all + all-gather %.0f\n", k + 1,
                   (t1 - t0) * 1e4, (t2 - t1) * 1e4);
    }
    free(a), free(b), free(cnt);
    MPI_Finalize();
    return 0;
}
