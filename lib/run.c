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

static stg_status finish(stg_plan *p);

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
static inline __attribute__((always_inline)) void walk(stg_plan *p, int32_t from, int32_t to,
                                                       int tid, int nt, const slot_rec *rec)
{
    for (int32_t i = from; i < to; i++) {
        const stg_pnode *pn = &p->sched[i];
        int64_t t = rec ? now_ns() : 0;
        if (pn->barrier_before) {
            bool stop = nt == 1 ? atomic_load(&p->failed)
                                : i > from && stgR_pool_barrier(p->pool, &p->failed);
            if (stop)
                return;
        }
        if (rec) {
            size_t k = (size_t)i * (size_t)p->threads + (size_t)tid;
            int64_t t1 = now_ns();
            rec->wait[k] = t1 - t;
            rec->start[k] = t1 - rec->t0;
            pn->node->op->run(pn, tid, nt);
            rec->busy[k] = now_ns() - t1;
        } else {
            pn->node->op->run(pn, tid, nt);
        }
    }
}

typedef struct range_job {
    stg_plan *p;
    int32_t from, to;
    const slot_rec *rec;
} range_job;

static void walk_job(void *ctx, int tid, int nt)
{
    const range_job *j = ctx;
    walk(j->p, j->from, j->to, tid, nt, NULL);
}

static void walk_recorded_job(void *ctx, int tid, int nt)
{
    const range_job *j = ctx;
    walk(j->p, j->from, j->to, tid, nt, j->rec);
}

static void run_range(stg_plan *p, int32_t from, int32_t to, const slot_rec *rec)
{
    /* A range of serial nodes only runs on this thread: starting the team
     * would cost more than the whole range (about a microsecond). */
    if (p->threads == 1 || to <= p->first_shared) {
        if (rec)
            walk(p, from, to, 0, 1, rec);
        else
            walk(p, from, to, 0, 1, NULL);
        return;
    }
    range_job j = {p, from, to, rec};
    stgR_pool_run(p->pool, rec ? walk_recorded_job : walk_job, &j);
}

/* Runs [0, to) as one recorded step when the plan profiles. */
static stg_status run_step(stg_plan *p, int32_t to, bool is_step)
{
    stg_profile *pf = to == p->nsched ? p->prof : NULL;
    if (!pf) {
        if (is_step)
            stgO_begin_step(p);
        run_range(p, 0, to, NULL);
        return finish(p);
    }
    size_t slot = (size_t)(pf->recorded % pf->keep), cells = (size_t)p->nsched * (size_t)p->threads;
    slot_rec rec = {pf->start + slot * cells, pf->busy + slot * cells, pf->wait + slot * cells,
                    now_ns()};
    if (is_step)
        stgO_begin_step(p);
    run_range(p, 0, to, &rec);
    stg_status s = finish(p);
    if (s == STG_OK) {
        pf->step[slot] = now_ns() - rec.t0;
        pf->at[slot] = rec.t0;
        pf->recorded++;
    }
    return s;
}

void stgR_fail(const stg_plan *cp, stg_status s, const char *fmt, ...)
{
    stg_plan *p = (stg_plan *)cp; /* kernels see the plan as const; this is its one mutable part */
    int expected = 0;
    if (!atomic_compare_exchange_strong(&p->failed, &expected, 1))
        return; /* the first failure is the one reported */
    p->step_status = s;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->step_msg, sizeof p->step_msg, fmt, ap);
    va_end(ap);
}

/* A value for a message: "nan" whatever the NaN's sign bit. */
static const char *number(float v, char *buf, size_t len)
{
    if (isnan(v))
        return "nan";
    snprintf(buf, len, "%g", (double)v);
    return buf;
}

/* The first non-finite element of n values, or -1. */
static int64_t first_nonfinite(const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return i;
    return -1;
}

/* The parameter whose gradient (or clipped gradient) node 'id' is. */
static const char *gradient_of(const stg_plan *p, int32_t id)
{
    int32_t param = -1;
    for (int32_t i = 0; i < p->nuser && param < 0; i++)
        if (p->grad[i] == id)
            param = i;
    for (int32_t i = 0; i < p->nsched && param < 0; i++) {
        const stg_node *n = p->sched[i].node;
        if ((n->op->flags & STG_OPF_UPDATE) && n->in[1] == id)
            param = n->in[0];
    }
    return param >= 0 && p->g->nodes[param].name ? p->g->nodes[param].name : "(unnamed)";
}

/* The first guarded gradient (in the guards' order) that is not finite,
 * described into 'what'; false if there is none. */
static bool first_bad_gradient(const stg_plan *p, int32_t guard, char *what, size_t len)
{
    char nb[32];
    for (int32_t i = guard; i < p->nsched; i++) {
        const stg_node *n = p->sched[i].node;
        for (int j = 0; n->op == &stg_op_guard && j < n->nin; j++) {
            const float *x = stgP_ptr(p, n->in[j]);
            int64_t e = first_nonfinite(x, stgS_numel(&p->g->nodes[n->in[j]].shape));
            if (n->in[j] != p->loss && e >= 0) {
                snprintf(what, len, "the gradient of '%s' is %s at element %lld",
                         gradient_of(p, n->in[j]), number(x[e], nb, sizeof nb), (long long)e);
                return true;
            }
        }
    }
    return false;
}

/* What a guard found, said the same way whichever thread found it: the
 * loss, or the first gradient that is not finite; then the first node of
 * the step whose output is not finite, found by running the nodes before
 * the guards again one at a time on this thread and checking each output
 * (no update ran, so the leaves are as they were; nothing is allocated). */
static void explain_nonfinite(stg_plan *p)
{
    int32_t guard = 0;
    while (guard < p->nsched && p->sched[guard].node->op != &stg_op_guard)
        guard++;
    if (guard == p->nsched)
        return;
    char what[200], nb[32];
    float loss = stgP_ptr(p, p->loss)[0];
    if (isfinite(loss) && !first_bad_gradient(p, guard, what, sizeof what))
        return; /* the guard saw what is no longer there: keep its message */
    if (!isfinite(loss))
        snprintf(what, sizeof what, "the loss is %s", number(loss, nb, sizeof nb));
    char first[240] = "";
    for (int32_t i = 0; i < guard; i++) {
        const stg_pnode *pn = &p->sched[i];
        pn->node->op->run(pn, 0, 1);
        if (pn->node->is_int || (pn->node->op->flags & STG_OPF_EFFECT))
            continue;
        int64_t e = first_nonfinite(pn->out, stgS_numel(&pn->node->shape));
        if (e < 0)
            continue;
        stg_node_info info;
        stgX_node_info(p, i, &info);
        char shape[96];
        snprintf(first, sizeof first, "; the first non-finite value, %s, is element %lld of node "
                 "%d: %s %s%s%s%s", number(pn->out[e], nb, sizeof nb), (long long)e, (int)i,
                 stg_phase_name(info.phase), info.op, *info.about ? " (" : "", info.about,
                 *info.about ? ")" : "");
        size_t used = strlen(first);
        snprintf(first + used, sizeof first - used, " %s",
                 stgS_str(&pn->node->shape, shape, sizeof shape));
        break;
    }
    snprintf(p->step_msg, sizeof p->step_msg,
             "step: %s%s; parameters, optimizer state and step count are unchanged", what, first);
}

static stg_status finish(stg_plan *p)
{
    if (!atomic_load(&p->failed))
        return STG_OK;
    if (p->step_status == STG_NUMERIC)
        explain_nonfinite(p);
    atomic_store(&p->failed, 0);
    return p->step_status;
}

STG_API stg_status stg_plan_step(stg_plan *p)
{
    if (!p)
        return STG_INVALID;
    p->step_msg[0] = '\0';
    stg_status s = run_step(p, p->nsched, true);
    if (s == STG_OK)
        p->steps++;
    return s;
}

STG_API stg_status stg_plan_forward(stg_plan *p)
{
    if (!p)
        return STG_INVALID;
    p->step_msg[0] = '\0';
    return run_step(p, p->nsched_fwd, false);
}

STG_API stg_status stg_plan_set_wait(stg_plan *p, stg_wait wait)
{
    if (!p || (wait != STG_WAIT_SPIN_YIELD && wait != STG_WAIT_SPIN && wait != STG_WAIT_PASSIVE))
        return STG_INVALID;
    if (wait == STG_WAIT_SPIN && p->threads > stgR_usable_cpus())
        return STG_INVALID;
    p->opt.wait = wait;
    stgR_pool_set_wait(p->pool, wait);
    return STG_OK;
}

STG_API const char *stg_plan_message(const stg_plan *p)
{
    return p ? p->step_msg : "no plan (NULL)";
}
