/*
 * stgrad-mpi: data-parallel training over MPI.  An adapter that implements
 * stgrad's collective hook (stg_collective, stgrad.h) with non-blocking MPI
 * calls, so that a plan's gradient sums overlap its backward pass.
 *
 *   stg_mpi *m;
 *   stg_mpi_new(MPI_COMM_WORLD, &m);
 *   stg_collective hook;
 *   stg_mpi_hook(m, &hook);
 *   opts.collective = &hook;
 *   stg_plan_create(g, loss, &opts, &plan);
 *   stg_mpi_prepare(m, plan);        buffers for the plan's buckets
 *   ... stg_plan_step(plan) on every process, each with its share ...
 *   stg_plan_free(plan); stg_mpi_free(m);
 *
 * The sum is the same bits on every process and in every run, whatever
 * algorithms the MPI library picks: each bucket is cut into one segment per
 * process; an all-to-all exchange brings every process's copy of segment r
 * to process r, which adds them in rank order (0, 1, ..., size - 1); an
 * all-gather then gives every process every summed segment.  Each process
 * sends and receives 2 (size - 1) / size of a bucket, as a ring all-reduce
 * does.  The second exchange of a bucket starts when its first is found
 * complete: when a later bucket starts, or at its wait.
 *
 * MPI must be initialised (MPI_THREAD_FUNNELED is enough: only the thread
 * that calls stg_plan_step calls MPI through the hook).
 */
#ifndef STGRAD_MPI_H
#define STGRAD_MPI_H

#include <mpi.h>

#include "stgrad.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct stg_mpi stg_mpi;

/* An adapter over a duplicate of 'comm' (the caller keeps 'comm').
 * STG_NOMEM, or STG_COMM when MPI refuses the duplicate. */
STG_API stg_status stg_mpi_new(MPI_Comm comm, stg_mpi **out);
/* Frees the adapter (NULL is fine); the plans that use it must be freed
 * first. */
STG_API void stg_mpi_free(stg_mpi *m);
/* Fills 'hook' with the adapter's table: size, rank, the two functions, the
 * context; bucket_bytes 0 (stgrad's default).  The adapter must outlive
 * the plans that use it. */
STG_API void stg_mpi_hook(stg_mpi *m, stg_collective *hook);
/* Sizes the adapter's buffers for plan p's buckets (stg_plan_buckets),
 * before its first step: steps then allocate nothing in stgrad's code.
 * Every process must call it with the same plan.  STG_NOMEM, STG_INVALID
 * for a plan without the hook. */
STG_API stg_status stg_mpi_prepare(stg_mpi *m, const stg_plan *p);

/* Where the time of the exchanges went, summed over the buckets of every
 * step since the last reset, in seconds: 'exchange' from each start to the
 * end of its wait, 'blocked' inside the hook's calls (starts and waits).  1 - blocked / exchange is the
 * share of the exchange hidden behind the backward pass. */
typedef struct stg_mpi_times {
    double exchange, blocked;
    int64_t buckets;
} stg_mpi_times;
STG_API void stg_mpi_times_get(const stg_mpi *m, stg_mpi_times *t);
STG_API void stg_mpi_times_reset(stg_mpi *m);

#ifdef __cplusplus
}
#endif

#endif /* STGRAD_MPI_H */
