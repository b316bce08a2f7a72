/*
 * The MPI adapter (include/stgrad_mpi.h): a bucket's sum as an all-to-all
 * of its segments, a sum in rank order by each segment's owner, and an
 * all-gather of the summed segments, all non-blocking.
 *
 * Non-blocking collectives must be posted in the same order on every
 * process of a communicator.  The all-to-alls go on one communicator in
 * bucket order (the plan starts buckets in order); the all-gathers on a
 * second one, also in bucket order: a bucket's is posted once its
 * all-to-all is complete and every earlier bucket's all-gather is posted.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "stgrad_mpi.h"

/* One bucket's exchange. */
typedef struct bucket {
    float *data;       /* the plan's bucket, during a step */
    int64_t floats;
    float *recv;       /* size segments of this process's share, one per sender */
    int *cnt, *dsp;    /* per process: its segment's floats and start in 'data' */
    int *rcnt, *rdsp;  /* per sender: floats received and where in 'recv' */
    MPI_Request req;
    int phase;         /* 0 idle, 1 all-to-all in flight, 2 all-gather in flight */
    double t0;         /* when it started */
} bucket;

struct stg_mpi {
    MPI_Comm comm, comm2; /* all-to-alls, all-gathers */
    int next2;            /* the next bucket whose all-gather is to be posted */
    int size, rank;
    bucket *b;
    int nb;
    stg_mpi_times times;
};

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void free_buckets(stg_mpi *m)
{
    for (int i = 0; i < m->nb; i++) {
        free(m->b[i].recv);
        free(m->b[i].cnt);
    }
    free(m->b);
    m->b = NULL;
    m->nb = 0;
}

STG_API stg_status stg_mpi_new(MPI_Comm comm, stg_mpi **out)
{
    if (!out)
        return STG_INVALID;
    *out = NULL;
    stg_mpi *m = calloc(1, sizeof *m);
    if (!m)
        return STG_NOMEM;
    if (MPI_Comm_dup(comm, &m->comm) != MPI_SUCCESS) {
        free(m);
        return STG_COMM;
    }
    if (MPI_Comm_dup(comm, &m->comm2) != MPI_SUCCESS) {
        MPI_Comm_free(&m->comm);
        free(m);
        return STG_COMM;
    }
    MPI_Comm_size(m->comm, &m->size);
    MPI_Comm_rank(m->comm, &m->rank);
    *out = m;
    return STG_OK;
}

STG_API void stg_mpi_free(stg_mpi *m)
{
    if (!m)
        return;
    for (int i = 0; i < m->nb; i++)
        if (m->b[i].phase)
            MPI_Wait(&m->b[i].req, MPI_STATUS_IGNORE);
    free_buckets(m);
    MPI_Comm_free(&m->comm);
    MPI_Comm_free(&m->comm2);
    free(m);
}

/* The second half of a bucket's sum: add the segments in rank order, then
 * share the result. */
static int second_phase(stg_mpi *m, bucket *b)
{
    int me = m->rank, n = b->cnt[me];
    float *mine = b->data + b->dsp[me];
    if (n > 0) {
        memcpy(mine, b->recv, (size_t)n * sizeof *mine);
        for (int r = 1; r < m->size; r++) {
            const float *x = b->recv + b->rdsp[r];
            for (int i = 0; i < n; i++)
                mine[i] += x[i];
        }
    }
    b->phase = 2;
    m->next2++;
    return MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, b->data, b->cnt, b->dsp, MPI_FLOAT,
                           m->comm2, &b->req);
}

/* Posts the all-gathers that are due, in bucket order: up to bucket
 * 'upto' whatever it takes (waiting), then as long as all-to-alls are found
 * complete. */
static int progress(stg_mpi *m, int upto)
{
    while (m->next2 < m->nb) {
        bucket *b = &m->b[m->next2];
        int done = 0;
        if (b->phase != 1)
            return 0;
        int e = m->next2 <= upto ? (done = 1, MPI_Wait(&b->req, MPI_STATUS_IGNORE))
                                 : MPI_Test(&b->req, &done, MPI_STATUS_IGNORE);
        if (e != MPI_SUCCESS)
            return 1;
        if (!done)
            return 0;
        if (second_phase(m, b) != MPI_SUCCESS)
            return 1;
    }
    return 0;
}

static int start_sum(void *ctx, int bucket_id, float *data, int64_t count)
{
    stg_mpi *m = ctx;
    if (bucket_id < 0 || bucket_id >= m->nb || m->b[bucket_id].floats != count)
        return 2; /* stg_mpi_prepare was not called with this plan */
    bucket *b = &m->b[bucket_id];
    if (b->phase)
        return 3;
    b->data = data;
    b->t0 = now();
    b->phase = 1;
    if (MPI_Ialltoallv(data, b->cnt, b->dsp, MPI_FLOAT, b->recv, b->rcnt, b->rdsp, MPI_FLOAT,
                       m->comm, &b->req) != MPI_SUCCESS) {
        b->phase = 0;
        return 1;
    }
    int e = progress(m, -1);
    m->times.blocked += now() - b->t0; /* the step waits for these calls too */
    return e;
}

static int wait_sum(void *ctx, int bucket_id)
{
    stg_mpi *m = ctx;
    if (bucket_id < 0 || bucket_id >= m->nb)
        return 2;
    bucket *b = &m->b[bucket_id];
    if (!b->phase)
        return 3; /* its start failed */
    double t = now();
    int e = progress(m, bucket_id) ? MPI_ERR_OTHER : MPI_SUCCESS;
    int done = MPI_Wait(&b->req, MPI_STATUS_IGNORE); /* nothing left in flight */
    if (b->phase == 1) /* its all-gather was never posted: an earlier start failed */
        e = MPI_ERR_OTHER;
    else if (e == MPI_SUCCESS)
        e = done;
    b->phase = 0;
    if (bucket_id == m->nb - 1)
        m->next2 = 0; /* the step's last bucket: the next step starts over */
    double end = now();
    m->times.exchange += end - b->t0;
    m->times.blocked += end - t;
    m->times.buckets++;
    return e == MPI_SUCCESS ? 0 : 1;
}

STG_API void stg_mpi_hook(stg_mpi *m, stg_collective *hook)
{
    if (!hook)
        return;
    memset(hook, 0, sizeof *hook);
    if (!m)
        return;
    hook->size = m->size;
    hook->rank = m->rank;
    hook->start_sum = start_sum;
    hook->wait_sum = wait_sum;
    hook->ctx = m;
}

STG_API stg_status stg_mpi_prepare(stg_mpi *m, const stg_plan *p)
{
    int nb = stg_plan_buckets(p);
    if (!m || nb <= 0)
        return STG_INVALID;
    for (int i = 0; i < m->nb; i++)
        if (m->b[i].phase)
            return STG_STATE;
    free_buckets(m);
    if (!(m->b = calloc((size_t)nb, sizeof *m->b)))
        return STG_NOMEM;
    m->nb = nb;
    int n = m->size;
    for (int i = 0; i < nb; i++) {
        bucket *b = &m->b[i];
        b->floats = stg_plan_bucket_floats(p, i);
        if (b->floats / n >= (int64_t)1 << 30) /* MPI counts are ints */
            return free_buckets(m), STG_INVALID;
        b->cnt = malloc(4 * (size_t)n * sizeof *b->cnt);
        if (!b->cnt)
            return free_buckets(m), STG_NOMEM;
        b->dsp = b->cnt + n, b->rcnt = b->cnt + 2 * n, b->rdsp = b->cnt + 3 * n;
        for (int r = 0; r < n; r++) {
            int64_t lo = b->floats * r / n, hi = b->floats * (r + 1) / n;
            b->cnt[r] = (int)(hi - lo);
            b->dsp[r] = (int)lo;
        }
        int mine = b->cnt[m->rank];
        for (int r = 0; r < n; r++) {
            b->rcnt[r] = mine;
            b->rdsp[r] = r * mine;
        }
        b->recv = malloc((size_t)(mine > 0 ? mine : 1) * (size_t)n * sizeof *b->recv);
        if (!b->recv)
            return free_buckets(m), STG_NOMEM;
    }
    return STG_OK;
}

STG_API void stg_mpi_times_get(const stg_mpi *m, stg_mpi_times *t)
{
    if (t)
        *t = m ? m->times : (stg_mpi_times){0};
}

STG_API void stg_mpi_times_reset(stg_mpi *m)
{
    if (m)
        memset(&m->times, 0, sizeof m->times);
}
