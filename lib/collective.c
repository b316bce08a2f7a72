/*
 * The gradient region of a data-parallel plan: which gradients go into
 * which bucket, and the nodes that sum them (ops/collective.c).
 *
 * Parameter gradients are taken in the order of their nodes' ids, which is
 * the order the backward pass writes them, and packed into buckets of
 * about opts.collective->bucket_bytes, each gradient starting on a 64-byte
 * boundary (the padding is zero, and stays zero through the sums).  A
 * bucket's start node is scheduled right after its last gradient
 * (STG_OPF_EARLY); the wait nodes come after the whole backward pass, where
 * clipping, the guard and the updates read the summed gradients through
 * views of the buckets.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define BUCKET_MEMBERS (STG_MAX_INPUTS - 1) /* a wait node reads its start and the gradients */
#define DEFAULT_BUCKET_BYTES ((size_t)1 << 20)

static int64_t padded(int64_t floats)
{
    return (floats + STG_ALIGN / 4 - 1) / (STG_ALIGN / 4) * (STG_ALIGN / 4);
}

/* Whether the hook may sum gradient node 'id' where it is: its own buffer,
 * written by it alone, read by no later node, not another gradient's too. */
static bool summable(const stg_graph *g, int32_t id, const int32_t *taken, int ntaken)
{
    const stg_node *n = &g->nodes[id];
    if (n->base != id || n->role != STG_ROLE_COMPUTE ||
        (n->op->flags & (STG_OPF_VIEW | STG_OPF_LEAF | STG_OPF_CHAIN | STG_OPF_UPDATE)))
        return false;
    for (int k = 0; k < ntaken; k++)
        if (taken[k] == id)
            return false;
    for (int32_t i = id + 1; i < g->n; i++) /* a view reads nothing; its readers do */
        for (int j = 0; !(g->nodes[i].op->flags & STG_OPF_VIEW) && j < g->nodes[i].nin; j++)
            if (g->nodes[g->nodes[i].in[j]].base == id)
                return false;
    return true;
}

static int by_node(const void *a, const void *b)
{
    const int32_t *x = a, *y = b; /* pairs (gradient node, parameter) */
    return (x[0] > y[0]) - (x[0] < y[0]);
}

static void add_part(stg_region *r, int32_t node, int64_t at)
{
    r->parts[r->nparts++] = (stg_region_part){node, at};
}

stg_status stgC_add_collectives(stg_plan *p)
{
    const stg_collective *h = p->opt.collective;
    if (!h)
        return STG_OK;
    stg_graph *g = p->g;
    stg_region *r = calloc(1, sizeof *r);
    int32_t(*pair)[2] = malloc(sizeof *pair * (size_t)(p->nuser + 1));
    int32_t *taken = malloc(sizeof *taken * (size_t)(p->nuser + 1));
    if (r)
        p->region = r;
    if (!r || !pair || !taken) {
        free(pair);
        free(taken);
        return STG_NOMEM;
    }
    r->hook = *h;
    p->opt.collective = &r->hook;
    int n = 0;
    for (int32_t i = 0; i < p->nuser && stgG_ok(g); i++) {
        if (g->nodes[i].role != STG_ROLE_PARAM || p->grad[i] < 0)
            continue;
        int32_t gid = p->grad[i];
        /* a gradient that is all of its base's data in order (a bias's,
         * reshaped from a sum) is summed as that base */
        const stg_node *gn = &g->nodes[gid];
        if (gn->base != gid && gn->lay.off == 0 && stgS_is_contiguous(&gn->shape, &gn->lay) &&
            stgS_numel(&gn->shape) == stgS_numel(&g->nodes[gn->base].shape))
            gid = gn->base;
        if (!summable(g, gid, taken, n)) {
            stg_shape s = g->nodes[gid].shape;
            gid = stgG_add(g, &stg_op_copy, 1, &gid, &s, NULL).id;
        }
        taken[n] = gid;
        pair[n][0] = gid, pair[n][1] = i;
        n++;
    }
    if (!stgG_ok(g)) { /* a copy could not be added */
        free(pair), free(taken);
        return g->status;
    }
    qsort(pair, (size_t)n, sizeof *pair, by_node);

    /* buckets: [first, end) of the pairs each, and the flags bucket last */
    size_t cap = h->bucket_bytes ? h->bucket_bytes : DEFAULT_BUCKET_BYTES;
    int nb = 0;
    int *first = malloc(sizeof *first * (size_t)(n + 2));
    r->bucket_floats = calloc((size_t)n + 2, sizeof *r->bucket_floats);
    r->parts = calloc((size_t)(2 * n + 4), sizeof *r->parts);
    if (!first || !r->bucket_floats || !r->parts) {
        free(pair), free(taken), free(first);
        return STG_NOMEM;
    }
    for (int k = 0; k < n; k++) {
        int64_t f = padded(stgS_numel(&g->nodes[pair[k][0]].shape));
        /* a new bucket where this gradient would take the current one past
         * the size (a gradient larger than the size has a bucket alone) */
        if (k == 0 || k - first[nb - 1] == BUCKET_MEMBERS ||
            (size_t)(r->bucket_floats[nb - 1] + f) * sizeof(float) > cap)
            first[nb++] = k;
        r->bucket_floats[nb - 1] += f;
    }
    first[nb] = first[nb + 1] = n; /* the flags bucket holds no gradient */
    r->nbuckets = nb + 1;
    r->bucket_floats[nb] = padded(h->size);

    stg_coll_attr at = {.buckets = r->nbuckets, .size = h->size, .rank = h->rank};
    int32_t *starts = malloc(sizeof *starts * (size_t)(nb + 1));
    if (!starts) {
        free(pair), free(taken), free(first);
        return STG_NOMEM;
    }
    int64_t base = 0;
    for (int b = 0; b < nb && stgG_ok(g); b++) {
        int32_t in[STG_MAX_INPUTS];
        int k = 0;
        for (int m = first[b]; m < first[b + 1]; m++) {
            in[k++] = pair[m][0];
            add_part(r, pair[m][0], base);
            base += padded(stgS_numel(&g->nodes[pair[m][0]].shape));
        }
        at.bucket = b, at.floats = r->bucket_floats[b];
        starts[b] = stgG_add(g, &stg_op_grad_sum_start, k, in, &(stg_shape){0}, &at).id;
    }
    /* the failure flags: written after the whole backward pass, so that they
     * say whether anything in it failed */
    at.bucket = nb, at.floats = r->bucket_floats[nb];
    bool reads_loss = p->loss >= 0 && p->seed < 0;
    stg_shape fs = {1, {h->size}};
    int32_t flags = stgG_add(g, &stg_op_grad_status, reads_loss, &p->loss, &fs, &at).id;
    add_part(r, flags, base);
    if (stgG_ok(g))
        starts[nb] = stgG_add(g, &stg_op_grad_sum_start, 1, &flags, &(stg_shape){0}, &at).id;

    int64_t bucket_at = 0;
    for (int b = 0; b <= nb && stgG_ok(g); b++) {
        int32_t in[STG_MAX_INPUTS] = {starts[b]};
        int k = 1;
        if (b == nb)
            in[k++] = flags;
        for (int m = first[b]; m < first[b + 1]; m++)
            in[k++] = pair[m][0];
        at.bucket = b, at.floats = r->bucket_floats[b];
        stg_shape ws = {1, {r->bucket_floats[b]}};
        int32_t wait = stgG_add(g, &stg_op_grad_sum_wait, k, in, &ws, &at).id;
        if (wait < 0)
            break;
        add_part(r, wait, bucket_at);
        int64_t off = 0;
        for (int m = first[b]; m < first[b + 1]; m++) {
            stg_shape s = g->nodes[pair[m][1]].shape; /* the parameter's */
            stg_layout lay;
            stgS_contiguous(&s, &lay);
            lay.off = off;
            off += padded(stgS_numel(&s));
            p->grad[pair[m][1]] = stgG_add_view(g, &stg_op_grad_part, wait, &s, &lay, NULL).id;
        }
        bucket_at += r->bucket_floats[b];
    }
    r->floats = bucket_at;
    free(pair), free(taken), free(first), free(starts);
    return g->status;
}

void stgC_free(stg_region *r)
{
    if (!r)
        return;
    free(r->bucket_floats);
    free(r->parts);
    free(r);
}

STG_API int stg_plan_buckets(const stg_plan *p)
{
    return p && p->region ? p->region->nbuckets : 0;
}

STG_API int64_t stg_plan_bucket_floats(const stg_plan *p, int b)
{
    if (!p || !p->region || b < 0 || b >= p->region->nbuckets)
        return 0;
    return p->region->bucket_floats[b];
}
