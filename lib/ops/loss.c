/*
 * Losses built from other ops, so their gradients come from those ops' rules.
 *
 *   mse(p, t) = mean((p - t)^2)     dp = 2 (p - t) g / n,  dt = -dp
 */
#include "../internal.h"

STG_API stg_tensor stg_mse_loss(stg_graph *g, stg_tensor pred, stg_tensor target)
{
    if (!stgG_ok(g) || !stgG_check_tensor(g, "mse_loss", pred) ||
        !stgG_check_tensor(g, "mse_loss", target))
        return stgG_t(-1);
    const stg_shape *sp = &stgG_node(g, pred)->shape, *st = &stgG_node(g, target)->shape;
    char bp[96], bt[96];
    if (!stgS_equal(sp, st))
        return stgG_fail(g, STG_SHAPE, "mse_loss: pred %s and target %s must have the same shape",
                         stgS_str(sp, bp, sizeof bp), stgS_str(st, bt, sizeof bt));
    stg_tensor d = stg_sub(g, pred, target);
    return stg_mean(g, stg_mul(g, d, d), 0, NULL, 0);
}
