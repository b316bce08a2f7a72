/*
 * What the arena holds: sizes by kind of buffer, and the table of every
 * buffer with its place, its lifetime and the node it was made for.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

typedef enum kind {
    K_PARAM, K_GRAD, K_STATE, K_INPUT, K_ACTIVATION, K_TEMP, K_SCRATCH, K_COUNT
} kind;
static const char *const kind_name[K_COUNT] = {"parameter",  "gradient",  "optimizer state",
                                               "input",      "activation", "temporary",
                                               "scratch"};

/* is_grad[id]: node id holds the gradient the plan returns for some tensor. */
static bool *grad_nodes(const stg_plan *p)
{
    bool *is_grad = calloc((size_t)p->g->n + 1, sizeof *is_grad);
    for (int32_t i = 0; is_grad && i < p->nuser; i++)
        if (p->grad[i] >= 0)
            is_grad[p->g->nodes[p->grad[i]].base] = true;
    return is_grad;
}

static kind kind_of(const stg_plan *p, const bool *is_grad, int32_t b)
{
    int32_t id = p->bufs[b].owner;
    if (p->bufs[b].scratch)
        return K_SCRATCH;
    switch (p->g->nodes[id].role) {
    case STG_ROLE_PARAM:
    case STG_ROLE_STAT: return K_PARAM;
    case STG_ROLE_STATE: return K_STATE;
    case STG_ROLE_INPUT:
    case STG_ROLE_CONST: return K_INPUT;
    default: break;
    }
    if (is_grad[id] || p->bufs[b].in_region) /* the gradient region: gradients, flags */
        return K_GRAD;
    return id < p->nfwd ? K_ACTIVATION : K_TEMP;
}

STG_API stg_status stg_plan_memory(const stg_plan *p, stg_memory_report *r)
{
    if (!p || !r)
        return STG_INVALID;
    bool *is_grad = grad_nodes(p);
    if (!is_grad)
        return STG_NOMEM;
    memset(r, 0, sizeof *r);
    r->arena_bytes = p->arena_bytes;
    r->buffer_bytes = p->buffer_bytes;
    size_t by[K_COUNT] = {0};
    for (int32_t b = 0; b < p->nbufs; b++) {
        if (p->bufs[b].in_region && p->g->nodes[p->bufs[b].owner].op == &stg_op_grad_sum_wait)
            continue; /* a bucket: the bytes of its gradients */
        if (p->bufs[b].persistent)
            r->persistent_bytes += p->bufs[b].bytes;
        by[kind_of(p, is_grad, b)] += p->bufs[b].bytes;
    }
    /* in-place outputs count as transient buffers of their own */
    r->transient_bytes = r->buffer_bytes - r->persistent_bytes;
    size_t listed = 0;
    for (int k = 0; k < K_COUNT; k++)
        listed += by[k];
    by[K_TEMP] += r->buffer_bytes - listed; /* in-place outputs after the forward pass */
    r->param_bytes = by[K_PARAM];
    r->grad_bytes = by[K_GRAD];
    r->state_bytes = by[K_STATE];
    r->input_bytes = by[K_INPUT];
    r->activation_bytes = by[K_ACTIVATION];
    r->temp_bytes = by[K_TEMP];
    r->scratch_bytes = by[K_SCRATCH];
    free(is_grad);
    return STG_OK;
}

static int by_offset(const void *a, const void *b, void *ctx)
{
    const stg_buffer *bufs = ctx;
    size_t x = bufs[*(const int32_t *)a].offset, y = bufs[*(const int32_t *)b].offset;
    return (x > y) - (x < y);
}

/* qsort_r with the plan's buffers as context, for a stable report order. */
static void sort_buffers(const stg_plan *p, int32_t *order)
{
    for (int32_t b = 0; b < p->nbufs; b++)
        order[b] = b;
    qsort_r(order, (size_t)p->nbufs, sizeof *order, by_offset, p->bufs);
}

static double mib(size_t b)
{
    return (double)b / (1024.0 * 1024.0);
}

STG_API stg_status stg_plan_write_memory(const stg_plan *p, FILE *f)
{
    if (!p || !f)
        return STG_INVALID;
    stg_memory_report r;
    bool *is_grad = grad_nodes(p);
    int32_t *order = malloc(((size_t)p->nbufs + 1) * sizeof *order);
    if (!is_grad || !order || stg_plan_memory(p, &r) != STG_OK) {
        free(is_grad);
        free(order);
        return STG_NOMEM;
    }
    fprintf(f, "arena: %zu bytes (%.2f MiB) holding %d buffers of %zu bytes (%.2f MiB) in all: "
               "reuse ratio %.3f\n",
            r.arena_bytes, mib(r.arena_bytes), (int)p->nbufs, r.buffer_bytes,
            mib(r.buffer_bytes), r.buffer_bytes ? (double)r.arena_bytes / r.buffer_bytes : 1.0);
    fprintf(f, "persistent %zu bytes, transient %zu bytes in the remaining %zu\n",
            r.persistent_bytes, r.transient_bytes, r.arena_bytes - r.persistent_bytes);
    fprintf(f, "by kind: parameters %zu, gradients %zu, optimizer state %zu, inputs %zu, "
               "activations %zu, temporaries %zu, scratch %zu\n\n",
            r.param_bytes, r.grad_bytes, r.state_bytes, r.input_bytes, r.activation_bytes,
            r.temp_bytes, r.scratch_bytes);
    fprintf(f, "%12s %12s  %-13s %-16s %s\n", "offset", "bytes", "lifetime", "kind",
            "made for");
    sort_buffers(p, order);
    for (int32_t k = 0; k < p->nbufs; k++) {
        const stg_buffer *b = &p->bufs[order[k]];
        const stg_node *n = &p->g->nodes[b->owner];
        char life[32], shape[96];
        if (b->persistent)
            snprintf(life, sizeof life, "persistent");
        else
            snprintf(life, sizeof life, "%d..%d", (int)b->first, (int)b->last);
        stgS_str(&n->shape, shape, sizeof shape);
        fprintf(f, "%12zu %12zu  %-13s %-16s #%d %s%s%s %s\n", b->offset, b->bytes, life,
                kind_name[kind_of(p, is_grad, order[k])], (int)b->owner, n->op->name,
                n->name ? " " : "", n->name ? n->name : "", shape);
    }
    free(is_grad);
    free(order);
    return ferror(f) ? STG_IO : STG_OK;
}
