/*
 * What a user reads from and writes into a plan, and the plan checker.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static bool known(const stg_plan *p, stg_tensor t)
{
    return p && t.id >= 0 && t.id < p->nuser;
}

STG_API float *stg_plan_data(stg_plan *p, stg_tensor t)
{
    if (!known(p, t) || p->g->nodes[t.id].is_int)
        return NULL;
    if (p->g->nodes[t.id].role != STG_ROLE_COMPUTE)
        return stgP_ptr(p, t.id);
    if (t.id == p->loss)
        return stgP_ptr(p, t.id);
    return p->value[t.id] >= 0 ? stgP_ptr(p, p->value[t.id]) : NULL;
}

STG_API const float *stg_plan_grad(stg_plan *p, stg_tensor t)
{
    if (!known(p, t) || p->grad[t.id] < 0)
        return NULL;
    return stgP_ptr(p, p->grad[t.id]);
}

STG_API int32_t *stg_plan_data_i32(stg_plan *p, stg_tensor t)
{
    if (!known(p, t) || !p->g->nodes[t.id].is_int)
        return NULL;
    return (int32_t *)stgP_ptr(p, t.id); /* int32 and float share size and alignment */
}

STG_API stg_status stg_plan_set_i32(stg_plan *p, stg_tensor t, const int32_t *src, int64_t n)
{
    int32_t *d = stg_plan_data_i32(p, t);
    if (!p || !src)
        return STG_INVALID;
    if (!d)
        return STG_NOT_FOUND;
    if (n != stgS_numel(&p->g->nodes[t.id].shape))
        return STG_SHAPE;
    memcpy(d, src, (size_t)n * sizeof(int32_t));
    return STG_OK;
}

/* The data of 't' if it holds exactly 'n' floats. */
static stg_status sized_data(stg_plan *p, stg_tensor t, int64_t n, float **data)
{
    if (!p)
        return STG_INVALID;
    if (!(*data = stg_plan_data(p, t)))
        return STG_NOT_FOUND;
    return n == stgS_numel(&p->g->nodes[t.id].shape) ? STG_OK : STG_SHAPE;
}

STG_API stg_status stg_plan_set(stg_plan *p, stg_tensor t, const float *src, int64_t n)
{
    float *d;
    stg_status s = src ? sized_data(p, t, n, &d) : STG_INVALID;
    if (s == STG_OK)
        memcpy(d, src, (size_t)n * sizeof(float));
    return s;
}

STG_API stg_status stg_plan_get(stg_plan *p, stg_tensor t, float *dst, int64_t n)
{
    float *d;
    stg_status s = dst ? sized_data(p, t, n, &d) : STG_INVALID;
    if (s == STG_OK)
        memcpy(dst, d, (size_t)n * sizeof(float));
    return s;
}

STG_API float stg_plan_loss(const stg_plan *p)
{
    return p && p->loss >= 0 && p->seed < 0 ? *stgP_ptr(p, p->loss) : 0.0f;
}

STG_API size_t stg_plan_arena_bytes(const stg_plan *p) { return p ? p->arena_bytes : 0; }
STG_API size_t stg_plan_buffer_bytes(const stg_plan *p) { return p ? p->buffer_bytes : 0; }
STG_API int stg_plan_threads(const stg_plan *p) { return p ? p->threads : 0; }
STG_API int stg_plan_node_count(const stg_plan *p) { return p ? (int)p->nsched : 0; }

/* The element offsets a view reaches: [lowest, highest]; strides may be
 * negative (flip). */
static void extent(const stg_node *n, int64_t *lowest, int64_t *highest)
{
    *lowest = *highest = n->lay.off;
    for (int i = 0; i < n->shape.nd; i++) {
        int64_t span = (n->shape.d[i] - 1) * n->lay.st[i];
        *(span < 0 ? lowest : highest) += span;
    }
}

STG_API stg_status stg_plan_check(const stg_plan *p, char *msg, size_t len)
{
    char dummy[1];
    if (!msg)
        msg = dummy, len = sizeof dummy;
#define BAD(...) return snprintf(msg, len, __VA_ARGS__), STG_STATE
    if (!p)
        BAD("plan is NULL");
    const stg_graph *g = p->g;
    int32_t *pos = calloc((size_t)g->n + 1, sizeof *pos);
    if (!pos)
        BAD("out of memory checking the plan");
    for (int32_t i = 0; i < g->n; i++)
        pos[i] = -1;
    for (int32_t i = 0, prev = -1; i < p->nsched; i++) {
        const stg_pnode *pn = &p->sched[i];
        pos[pn->id] = i;
        if (pn->node->op->flags & STG_OPF_EARLY)
            continue;
        if (pn->id <= prev) {
            free(pos);
            BAD("node %d (%s) is scheduled out of order", (int)pn->id, pn->node->op->name);
        }
        prev = pn->id;
    }
    for (int32_t i = 0; i < p->nsched; i++) {
        const stg_pnode *pn = &p->sched[i];
        for (int j = 0; j < pn->node->nin; j++) {
            int32_t in = pn->node->in[j], b = g->nodes[in].base;
            if (in >= pn->id || (pos[b] >= i && b != pn->id)) {
                free(pos);
                BAD("node %d (%s) reads node %d, which does not come before it", (int)pn->id,
                    pn->node->op->name, (int)in);
            }
        }
    }
    free(pos);
    for (int32_t b = 0; b < p->nbufs; b++) {
        const stg_buffer *x = &p->bufs[b];
        if (x->offset % STG_ALIGN || x->offset + x->bytes > p->arena_bytes)
            BAD("buffer %d [%zu, %zu) is not an aligned range inside the %zu-byte arena", (int)b,
                x->offset, x->offset + x->bytes, p->arena_bytes);
        if (x->first > x->last)
            BAD("buffer %d has lifetime [%d, %d]", (int)b, (int)x->first, (int)x->last);
        for (int32_t c = b + 1; c < p->nbufs; c++) {
            const stg_buffer *y = &p->bufs[c];
            bool bytes = x->offset < y->offset + y->bytes && y->offset < x->offset + x->bytes;
            bool times = x->first <= y->last && y->first <= x->last;
            /* a bucket of the gradient region is its gradients' bytes */
            bool nested = x->in_region && y->in_region &&
                          ((x->offset <= y->offset && y->offset + y->bytes <= x->offset + x->bytes) ||
                           (y->offset <= x->offset && x->offset + x->bytes <= y->offset + y->bytes));
            if (bytes && times && !nested)
                BAD("buffers %d [%zu, %zu) live [%d, %d] and %d [%zu, %zu) live [%d, %d] share "
                    "bytes while both are live",
                    (int)b, x->offset, x->offset + x->bytes, (int)x->first, (int)x->last, (int)c,
                    y->offset, y->offset + y->bytes, (int)y->first, (int)y->last);
        }
    }
    for (int32_t i = 0; i < g->n; i++) {
        const stg_node *n = &g->nodes[i];
        int32_t b = p->bufof[n->base];
        if (b < 0)
            continue;
        int64_t lowest, highest;
        extent(n, &lowest, &highest);
        /* a parameter read from another plan: its size there */
        size_t bytes = p->bufs[b].external
                           ? (size_t)stgS_numel(&g->nodes[p->bufs[b].owner].shape) * sizeof(float)
                           : p->bufs[b].bytes;
        if (lowest < 0 || (size_t)(highest + 1) * sizeof(float) > bytes)
            BAD("node %d (%s) reaches outside its buffer", (int)i, n->op->name);
    }
    /* Every buffer a node touches is live at the node's position. */
    for (int32_t i = 0; i < p->nsched; i++) {
        const stg_node *n = p->sched[i].node;
        for (int j = -1; j < n->nin; j++) {
            int32_t id = j < 0 ? p->sched[i].id : n->in[j];
            const stg_buffer *x = &p->bufs[p->bufof[g->nodes[id].base]];
            if (x->first > i || x->last < i)
                BAD("node %d (%s) at step position %d touches node %d's buffer, live only "
                    "[%d, %d]",
                    (int)p->sched[i].id, n->op->name, (int)i, (int)id, (int)x->first,
                    (int)x->last);
        }
    }
#undef BAD
    if (len)
        msg[0] = '\0';
    return STG_OK;
}

STG_API stg_status stg_plan_gemm_info(const stg_plan *p, stg_gemm_info *info)
{
    if (!p || !info)
        return STG_INVALID;
    const stgK_kernel *kr = &p->kern;
    *info = (stg_gemm_info){kr->id, kr->name, (int)kr->mr, (int)kr->nr, (int)kr->mc,
                            (int)kr->kc, (int)kr->nc, p->kern_why};
    return STG_OK;
}
