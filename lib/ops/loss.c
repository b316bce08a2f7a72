/*
 * Losses built from other ops, so their gradients come from those ops' rules.
 *
 *   mse(p, t)  = mean((p - t)^2)
 *   l1(p, t)   = mean(|p - t|)
 *   bce(x, t)  = mean(bce_logits(x, t))       (a fused, stable elementwise op)
 *   nll(lp, y) = -mean(gather(lp, -1, y))    (or -sum)
 *   xent(x, y) = nll(log_softmax(x, -1), y)
 */
#include <stdio.h>

#include "../op.h"

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

static bool same_shape(stg_graph *g, const char *op, stg_tensor a, stg_tensor b)
{
    if (!stgG_ok(g) || !stgG_check_tensor(g, op, a) || !stgG_check_tensor(g, op, b))
        return false;
    const stg_shape *sa = &stgG_node(g, a)->shape, *sb = &stgG_node(g, b)->shape;
    char ba[96], bb[96];
    if (stgS_equal(sa, sb))
        return true;
    stgG_fail(g, STG_SHAPE, "%s: a %s and b %s must have the same shape", op,
              stgS_str(sa, ba, sizeof ba), stgS_str(sb, bb, sizeof bb));
    return false;
}

STG_API stg_tensor stg_l1_loss(stg_graph *g, stg_tensor pred, stg_tensor target)
{
    if (!same_shape(g, "l1_loss", pred, target))
        return stgG_t(-1);
    return stg_mean(g, stg_abs(g, stg_sub(g, pred, target)), 0, NULL, 0);
}

STG_API stg_tensor stg_bce_with_logits(stg_graph *g, stg_tensor logits, stg_tensor target)
{
    if (!same_shape(g, "bce_with_logits", logits, target))
        return stgG_t(-1);
    return stg_mean(g, stg_bce_logits(g, logits, target), 0, NULL, 0);
}

/* -reduce(logp[..., labels[...]]), the labels checked against logp's shape. */
static stg_tensor nll(stg_graph *g, const char *op, stg_tensor logp, stg_tensor labels,
                      stg_reduction reduction, const char *what)
{
    if (!stgG_ok(g) || !stgG_check_tensor(g, op, logp) || !stgG_check_index(g, op, labels))
        return stgG_t(-1);
    const stg_shape *sl = &stgG_node(g, logp)->shape, *sy = &stgG_node(g, labels)->shape;
    char bl[96], by[96];
    stg_shape rows = *sl;
    rows.nd = sl->nd > 0 ? sl->nd - 1 : 0;
    if (sl->nd == 0 || !stgS_equal(&rows, sy)) {
        char br[96];
        return stgG_fail(g, STG_SHAPE, "%s: logits %s and labels %s: labels must have shape %s "
                         "(classes along the last axis)", op, stgS_str(sl, bl, sizeof bl),
                         stgS_str(sy, by, sizeof by), stgS_str(&rows, br, sizeof br));
    }
    if (reduction != STG_REDUCE_MEAN && reduction != STG_REDUCE_SUM)
        return stgG_fail(g, STG_INVALID, "%s: unknown reduction %d", op, (int)reduction);
    stg_shape col = *sy;
    col.d[col.nd++] = 1;
    stg_layout lay;
    stgS_contiguous(&col, &lay);
    lay.off = stgG_node(g, labels)->lay.off;
    stg_tensor y = stgG_add_view(g, &stg_op_reshape, labels.id, &col, &lay, NULL);
    stg_tensor picked = stgK_gather_labelled(g, logp, -1, y, what);
    stg_tensor total = reduction == STG_REDUCE_MEAN ? stg_mean(g, picked, 0, NULL, 0)
                                                    : stg_sum(g, picked, 0, NULL, 0);
    return stg_neg(g, total);
}

STG_API stg_tensor stg_nll_loss(stg_graph *g, stg_tensor logp, stg_tensor labels,
                                stg_reduction reduction)
{
    return nll(g, "nll_loss", logp, labels, reduction, "nll_loss: label");
}

STG_API stg_tensor stg_softmax_cross_entropy(stg_graph *g, stg_tensor logits, stg_tensor labels,
                                             stg_reduction reduction)
{
    const char *op = "softmax_cross_entropy";
    if (!stgG_ok(g) || !stgG_check_tensor(g, op, logits) || !stgG_check_index(g, op, labels))
        return stgG_t(-1);
    if (stgG_node(g, logits)->shape.nd == 0) {
        char bl[96];
        return stgG_fail(g, STG_SHAPE, "%s: logits %s need a class axis", op,
                         stgS_str(&stgG_node(g, logits)->shape, bl, sizeof bl));
    }
    return nll(g, op, stg_log_softmax(g, logits, -1), labels, reduction,
               "softmax_cross_entropy: label");
}
