/*
 * Optimizer updates, run as the last nodes of a step.  An update node writes
 * its parameter in place (input 0) from the parameter's gradient (input 1);
 * the schedule puts it after every read of the parameter.
 *
 *   sgd:  p -= lr * g      (lr is read from the plan at run time)
 */
#include "internal.h"

#define UPDATE_GRAIN 16384

static void run_sgd(const stg_pnode *pn, int tid, int nt)
{
    int64_t total = stgS_numel(&pn->node->shape), lo = 0, hi = total;
    if (total >= UPDATE_GRAIN)
        stgR_split(total, tid, nt, &lo, &hi);
    else if (tid != 0)
        return;
    float *p = pn->out, lr = pn->plan->lr;
    const float *g = pn->in[1];
    for (int64_t i = lo; i < hi; i++)
        p[i] -= lr * g[i];
}

static double flops_sgd(const stg_graph *g, const stg_node *n)
{
    (void)g;
    return 2.0 * (double)stgS_numel(&n->shape);
}

const stg_op stg_op_sgd = {"sgd", STG_OPF_WRITES_IN0, NULL, run_sgd, NULL, flops_sgd};
