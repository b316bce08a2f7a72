/*
 * The step API: what a caller runs.  It assembles the step's context (its
 * number and the optimizer's scalars), hands the schedule to the executor
 * (run.c), and turns what a kernel reported into the plan's message.
 */
#include <stdio.h>
#include <string.h>

#include "internal.h"

static stg_status run(stg_plan *p, int32_t to, bool training)
{
    if (stgR_pool_orphaned(p->pool)) {
        snprintf(p->step_msg, sizeof p->step_msg,
                 "step: this plan's %d threads were started by the parent of this process "
                 "(fork); a child creates its own plans", p->threads);
        return STG_INVALID;
    }
    stg_step sx = {.number = p->steps + 1, .seed = p->opt.seed, .call = ++p->calls,
                   .fault = &p->fault};
    if (training)
        stgO_step_scalars(p, &sx);
    p->step_msg[0] = '\0';
    stg_status s = stgR_run(p, to, &sx);
    if (s == STG_OK)
        return STG_OK;
    if (s == STG_NUMERIC)
        stgO_explain_nonfinite(p, &sx);
    snprintf(p->step_msg, sizeof p->step_msg, "%s", p->fault.msg);
    return s;
}

STG_API stg_status stg_plan_step(stg_plan *p)
{
    if (!p)
        return STG_INVALID;
    stg_status s = run(p, p->nsched, true);
    if (s == STG_OK)
        p->steps++;
    return s;
}

STG_API stg_status stg_plan_forward(stg_plan *p)
{
    if (!p)
        return STG_INVALID;
    return run(p, p->nsched_fwd, false);
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
