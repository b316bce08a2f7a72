/*
 * The gradient sums of a data-parallel plan (the graph around them is built
 * by collective.c):
 *
 *   token = grad_sum_start(g_1 .. g_k)     the hook starts summing the bucket
 *   bucket = grad_sum_wait(token, g_1 ..)  the hook's wait, then / size
 *   flags = grad_status(loss)              1 at this rank if its step failed
 *
 * A bucket's gradients lie one after the other in the plan's gradient
 * region, and the wait node's output is that same memory, so each summed
 * gradient is a view of it.  All three run on thread 0: the hook is called
 * from one thread.  They are collective: the executor runs those a failed
 * step has not reached yet (run.c), since the other processes cannot
 * finish theirs without them.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../op.h"

typedef stg_coll_attr coll_attr;

static void print_coll(const void *attr, char *buf, size_t len)
{
    const coll_attr *a = attr;
    snprintf(buf, len, "bucket=%d/%d processes=%d rank=%d", (int)a->bucket + 1,
             (int)a->buckets, (int)a->size, (int)a->rank);
}

/* What a collective node keeps: the hook, and the run of the schedule it
 * last ran in (so that a failed step runs each one once). */
typedef struct coll_desc {
    const stg_collective *hook;
    uint64_t ran;
} coll_desc;

static stg_status prepare_coll(stg_prep *cx, stg_pnode *pn)
{
    coll_desc *d = stgP_opdata(cx, pn, sizeof *d);
    if (!d)
        return STG_NOMEM;
    d->hook = cx->opt->collective;
    if (!d->hook)
        return stgP_fail(cx, STG_STATE, "%s: the plan has no collective hook",
                         pn->node->op->name);
    d->ran = 0;
    return STG_OK;
}

/* Once per run, on thread 0. */
static bool first_run(const stg_pnode *pn, const stg_step *sx, int tid)
{
    coll_desc *d = pn->desc;
    if (tid != 0 || d->ran == sx->call)
        return false;
    d->ran = sx->call;
    return true;
}

static void run_start(const stg_pnode *pn, const stg_step *sx, int tid, int nt)
{
    (void)nt;
    if (!first_run(pn, sx, tid))
        return;
    const coll_desc *d = pn->desc;
    const coll_attr *a = pn->node->attr;
    /* the bucket starts at its first gradient */
    int e = d->hook->start_sum(d->hook->ctx, a->bucket, (float *)pn->in[0], a->floats);
    if (e != 0)
        stgR_fail(sx, STG_COMM, "grad_sum_start: the hook could not start bucket %d of %d "
                  "(%lld floats): error %d", (int)a->bucket + 1, (int)a->buckets,
                  (long long)a->floats, e);
}

static void run_wait(const stg_pnode *pn, const stg_step *sx, int tid, int nt)
{
    (void)nt;
    if (!first_run(pn, sx, tid))
        return;
    const coll_desc *d = pn->desc;
    const coll_attr *a = pn->node->attr;
    int e = d->hook->wait_sum(d->hook->ctx, a->bucket);
    if (e != 0) {
        stgR_fail(sx, STG_COMM, "grad_sum_wait: the hook could not finish bucket %d of %d: "
                  "error %d", (int)a->bucket + 1, (int)a->buckets, e);
        return;
    }
    float *x = pn->out, size = (float)a->size;
    int64_t n = stgS_numel(&pn->node->shape);
    if (a->bucket < a->buckets - 1) {
        for (int64_t i = 0; i < n; i++)
            x[i] /= size;
        return;
    }
    /* the flags: which other processes failed (this one's own failure is
     * the step's already, or the guard's next, with its own message) */
    int failed = 0, first = -1;
    for (int r = 0; r < a->size; r++)
        if (r != a->rank && x[r] != 0.0f) {
            failed++;
            first = first < 0 ? r : first;
        }
    if (failed)
        stgR_fail(sx, STG_PEER, "step: the step failed on %d other process%s of %d (rank %d "
                  "first); no process changes its parameters, optimizer state or step count",
                  failed, failed > 1 ? "es" : "", (int)a->size, first);
}

static void run_status(const stg_pnode *pn, const stg_step *sx, int tid, int nt)
{
    (void)nt;
    if (!first_run(pn, sx, tid))
        return;
    const coll_attr *a = pn->node->attr;
    bool bad = atomic_load(&sx->fault->failed) != 0 ||
               (pn->node->nin > 0 && !isfinite(pn->in[0][0]));
    memset(pn->out, 0, (size_t)a->size * sizeof *pn->out);
    pn->out[a->rank] = bad ? 1.0f : 0.0f;
}

const stg_op stg_op_grad_sum_start = {
    .name = "grad_sum_start",
    .flags = STG_OPF_SERIAL | STG_OPF_EFFECT | STG_OPF_COLLECTIVE | STG_OPF_EARLY,
    .attr_size = sizeof(coll_attr),
    .print_attr = print_coll,
    .prepare = prepare_coll,
    .run = run_start,
};
const stg_op stg_op_grad_sum_wait = {
    .name = "grad_sum_wait",
    .flags = STG_OPF_SERIAL | STG_OPF_EFFECT | STG_OPF_COLLECTIVE, /* the flags' is read by none */
    .attr_size = sizeof(coll_attr),
    .print_attr = print_coll,
    .prepare = prepare_coll,
    .run = run_wait,
};
const stg_op stg_op_grad_status = {
    .name = "grad_status",
    .flags = STG_OPF_SERIAL | STG_OPF_COLLECTIVE,
    .attr_size = sizeof(coll_attr),
    .print_attr = print_coll,
    .prepare = prepare_coll,
    .run = run_status,
};
/* a summed gradient: a view of its bucket */
const stg_op stg_op_grad_part = {
    .name = "grad_part",
    .flags = STG_OPF_VIEW,
};
