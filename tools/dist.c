/*
 * dist.h over MPI and stgrad-mpi, or over nothing: a build without MPI
 * still links, and says so when asked for --mpi.
 */
#include <stdio.h>
#include <stdlib.h>

#include "dist.h"

#ifdef STG_HAVE_MPI
#include "stgrad_mpi.h"

static int started, size = 1, rank;
static stg_mpi *adapter;

int dist_available(void) { return 1; }

int dist_start(int *argc, char ***argv, char *err, size_t len)
{
    int provided = 0;
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
        snprintf(err, len, "MPI_Init_thread failed");
        return -1;
    }
    started = 1;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (provided < MPI_THREAD_FUNNELED) {
        snprintf(err, len, "MPI gives thread level %d; stgrad needs MPI_THREAD_FUNNELED",
                 provided);
        return -1;
    }
    return 0;
}

int dist_size(void) { return size; }
int dist_rank(void) { return rank; }

void dist_sum(double *v, int n)
{
    if (started && size > 1)
        MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
}

int dist_hook(stg_collective *hook, char *err, size_t len)
{
    stg_status s = adapter ? STG_OK : stg_mpi_new(MPI_COMM_WORLD, &adapter);
    if (s != STG_OK) {
        snprintf(err, len, "the MPI adapter: %s", stg_status_message(s));
        return -1;
    }
    stg_mpi_hook(adapter, hook);
    return 0;
}

int dist_prepare(const stg_plan *p, char *err, size_t len)
{
    stg_status s = stg_mpi_prepare(adapter, p);
    if (s != STG_OK) {
        snprintf(err, len, "sizing the MPI adapter's buffers: %s", stg_status_message(s));
        return -1;
    }
    return 0;
}

void dist_times(double *exchange, double *blocked)
{
    stg_mpi_times t = {0};
    stg_mpi_times_get(adapter, &t);
    *exchange = t.exchange;
    *blocked = t.blocked;
}

void dist_times_reset(void)
{
    stg_mpi_times_reset(adapter);
}

void dist_finish(void)
{
    stg_mpi_free(adapter);
    adapter = NULL;
    if (started)
        MPI_Finalize();
    started = 0;
}

_Noreturn void dist_abort(int status)
{
    if (started && size > 1) {
        fflush(stdout);
        fflush(stderr);
        MPI_Abort(MPI_COMM_WORLD, status);
    }
    exit(status);
}

#else

int dist_available(void) { return 0; }

int dist_start(int *argc, char ***argv, char *err, size_t len)
{
    (void)argc, (void)argv;
    snprintf(err, len, "this build has no MPI (install libopenmpi-dev and openmpi-bin, then "
             "configure again)");
    return -1;
}

int dist_size(void) { return 1; }
int dist_rank(void) { return 0; }
void dist_sum(double *v, int n) { (void)v, (void)n; }

int dist_hook(stg_collective *hook, char *err, size_t len)
{
    (void)hook;
    snprintf(err, len, "this build has no MPI");
    return -1;
}

int dist_prepare(const stg_plan *p, char *err, size_t len)
{
    (void)p;
    snprintf(err, len, "this build has no MPI");
    return -1;
}

void dist_times(double *exchange, double *blocked) { *exchange = *blocked = 0.0; }
void dist_times_reset(void) {}
void dist_finish(void) {}
_Noreturn void dist_abort(int status) { exit(status); }

#endif
