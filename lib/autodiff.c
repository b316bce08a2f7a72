/*
 * Reverse-mode differentiation as a graph transformation: walking the forward
 * nodes from the loss down, each op's backward rule appends ordinary nodes
 * that compute its inputs' gradients; contributions from several consumers
 * are summed with add nodes.  Nothing here computes a number.
 */
#include <stdlib.h>

#include "internal.h"

bool stgD_needs(const stg_ad *ad, int32_t id)
{
    return id >= 0 && id < ad->nfwd && ad->needs[id];
}

void stgD_accumulate(stg_ad *ad, int32_t id, stg_tensor contrib)
{
    if (!stgD_needs(ad, id) || contrib.id < 0)
        return;
    if (ad->grad[id] < 0)
        ad->grad[id] = contrib.id;
    else
        ad->grad[id] = stg_add(ad->g, stgG_t(ad->grad[id]), contrib).id;
}

/* Sums over the leading dims 'shape' lacks and the dims where it has size 1. */
stg_tensor stgD_sum_to(stg_graph *g, stg_tensor gout, const stg_shape *target)
{
    if (gout.id < 0)
        return gout;
    const stg_shape copy = *target, *shape = &copy; /* 'target' may point into g->nodes */
    const stg_shape *gs = &g->nodes[gout.id].shape;
    if (stgS_equal(gs, shape))
        return gout;
    int lead = gs->nd - shape->nd, axes[STG_MAX_DIMS], naxes = 0;
    for (int i = 0; i < gs->nd; i++)
        if (i < lead || (shape->d[i - lead] == 1 && gs->d[i] != 1))
            axes[naxes++] = i;
    stg_tensor s = gout;
    if (naxes > 0)
        s = stg_sum(g, gout, naxes, axes, 1);
    return stg_reshape(g, s, shape->nd, shape->d);
}

stg_status stgD_differentiate(stg_graph *g, int32_t loss, int32_t seed, int32_t *grad)
{
    stg_ad ad = {.g = g, .nfwd = g->n, .grad = grad, .needs = calloc((size_t)g->n, sizeof(bool))};
    if (!ad.needs)
        return STG_NOMEM;
    for (int32_t i = 0; i < g->n; i++) {
        const stg_node *n = &g->nodes[i];
        grad[i] = -1;
        ad.needs[i] = n->role == STG_ROLE_PARAM || n->want_grad;
        for (int j = 0; j < n->nin && n->role != STG_ROLE_CONST; j++)
            ad.needs[i] = ad.needs[i] || ad.needs[n->in[j]];
    }
    if (ad.needs[loss]) {
        grad[loss] = seed >= 0 ? seed : stg_scalar(g, 1.0f).id;
        for (int32_t i = loss; i >= 0 && stgG_ok(g); i--)
            if (grad[i] >= 0 && g->nodes[i].op->backward)
                g->nodes[i].op->backward(&ad, i, stgG_t(grad[i]));
    }
    free(ad.needs);
    return g->status;
}
