/*
 * The executor.  A step is one job of the plan's thread pool (pool.c);
 * every thread walks the whole schedule, runs its share of each node and
 * meets the others at a barrier only where the plan says a node depends on
 * (or overwrites) what another thread may have touched since the last one.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

static inline int64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* Where a profiled step records its timings (one slot of the profile ring). */
typedef struct slot_rec {
    int64_t *start, *busy, *wait;
    int64_t t0; /* the step's start */
} slot_rec;

/* One thread's walk over schedule positions [from, to); stops early (at a
 * barrier) when a node reports a failure.  The plan forces a barrier before
 * the first update, so a failure in the forward or backward pass never
 * reaches the parameters.  Inlined into two copies: with 'rec' NULL (the
 * normal step) the timing code is gone, not skipped. */
static inline __attribute__((always_inline)) void walk(stg_plan *p, const stg_step *sx,
                                                       int32_t from, int32_t to, int tid, int nt,
                                                       const slot_rec *rec)
{
    atomic_int *failed = &sx->fault->failed;
    for (int32_t i = from; i < to; i++) {
        const stg_pnode *pn = &p->sched[i];
        int64_t t = rec ? now_ns() : 0;
        if (pn->barrier_before) {
            bool stop = nt == 1 ? atomic_load(failed)
                                : i > from && stgR_pool_barrier(p->pool, failed);
            if (stop)
                return;
        }
        if (rec) {
            size_t k = (size_t)i * (size_t)p->threads + (size_t)tid;
            int64_t t1 = now_ns();
            rec->wait[k] = t1 - t;
            rec->start[k] = t1 - rec->t0;
            pn->node->op->run(pn, sx, tid, nt);
            rec->busy[k] = now_ns() - t1;
        } else {
            pn->node->op->run(pn, sx, tid, nt);
        }
    }
}

typedef struct range_job {
    stg_plan *p;
    const stg_step *sx;
    int32_t from, to;
    const slot_rec *rec;
} range_job;

static void walk_job(void *ctx, int tid, int nt)
{
    const range_job *j = ctx;
    walk(j->p, j->sx, j->from, j->to, tid, nt, NULL);
}

static void walk_recorded_job(void *ctx, int tid, int nt)
{
    const range_job *j = ctx;
    walk(j->p, j->sx, j->from, j->to, tid, nt, j->rec);
}

static void run_range(stg_plan *p, const stg_step *sx, int32_t from, int32_t to,
                      const slot_rec *rec)
{
    /* A range of serial nodes only runs on this thread: waking the workers
     * would cost more than the whole range. */
    if (p->threads == 1 || to <= p->first_shared) {
        if (rec)
            walk(p, sx, from, to, 0, 1, rec);
        else
            walk(p, sx, from, to, 0, 1, NULL);
        return;
    }
    range_job j = {p, sx, from, to, rec};
    stgR_pool_run(p->pool, rec ? walk_recorded_job : walk_job, &j);
}

/* The status of a step whose kernels have all returned; clears the flag. */
static stg_status outcome(stg_fault *f)
{
    if (!atomic_load(&f->failed))
        return STG_OK;
    atomic_store(&f->failed, 0);
    return f->status;
}

/* A step that failed stopped at a barrier; the other processes of a
 * collective run still wait for its gradient sums and failure flags, so
 * the collective nodes it did not reach run now, in order, on this thread
 * (each runs once per step: it knows whether it already has). */
static void finish_collectives(stg_plan *p, const stg_step *sx, int32_t to)
{
    if (!p->region || !atomic_load(&sx->fault->failed))
        return;
    for (int32_t i = 0; i < to; i++)
        if (p->sched[i].node->op->flags & STG_OPF_COLLECTIVE)
            p->sched[i].node->op->run(&p->sched[i], sx, 0, 1);
}

stg_status stgR_run(stg_plan *p, int32_t to, const stg_step *sx)
{
    stg_profile *pf = to == p->nsched ? p->prof : NULL;
    if (!pf) {
        run_range(p, sx, 0, to, NULL);
        finish_collectives(p, sx, to);
        return outcome(sx->fault);
    }
    size_t slot = (size_t)(pf->recorded % pf->keep), cells = (size_t)p->nsched * (size_t)p->threads;
    slot_rec rec = {pf->start + slot * cells, pf->busy + slot * cells, pf->wait + slot * cells,
                    now_ns()};
    run_range(p, sx, 0, to, &rec);
    finish_collectives(p, sx, to);
    stg_status s = outcome(sx->fault);
    if (s == STG_OK) {
        pf->step[slot] = now_ns() - rec.t0;
        pf->at[slot] = rec.t0;
        pf->recorded++;
    }
    return s;
}

void stgR_fail(const stg_step *sx, stg_status s, const char *fmt, ...)
{
    stg_fault *f = sx->fault;
    int expected = 0;
    if (!atomic_compare_exchange_strong(&f->failed, &expected, 1))
        return; /* the first failure is the one reported */
    f->status = s;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->msg, sizeof f->msg, fmt, ap);
    va_end(ap);
}
