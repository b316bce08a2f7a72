/*
 * Embeddings, as torch.nn.functional.embedding:
 *
 *   y = embedding(w (V, D), idx (...))   (..., D): row idx[i] of w for each index
 *   dw = embedding_grad(g, idx)          (V, D): zeros, g's row i added to row idx[i]
 *
 * The gradient is a scatter-add.  Each thread owns a range of the D
 * columns and adds the rows in index order, so every element sums the
 * same values in the same order at any thread count, repeated indices
 * included.  The row of padding_idx gets no gradient, as in PyTorch; an
 * index out of range fails the step (STG_INDEX) and reads nothing.
 */
#include <stdio.h>
#include <string.h>

#include "../op.h"

typedef struct embed_attr {
    int64_t padding_idx; /* -1: none */
} embed_attr;

static void print_embed(const void *attr, char *buf, size_t len)
{
    int64_t p = ((const embed_attr *)attr)->padding_idx;
    if (p >= 0)
        snprintf(buf, len, "padding_idx=%lld", (long long)p);
    else if (len)
        buf[0] = '\0';
}

/* The indices' layout (a view's strides) as a loop over their positions. */
typedef struct embed_desc {
    stg_loop idx;
    int64_t rows, dim; /* V and D */
} embed_desc;

static stg_status prepare_common(stg_prep *cx, stg_pnode *pn, const stg_node *idx, int64_t rows,
                                 int64_t dim)
{
    embed_desc *d = stgP_opdata(cx, pn, sizeof *d);
    if (!d)
        return STG_NOMEM;
    int64_t st[STG_LOOP_OPS][STG_MAX_DIMS] = {{0}};
    memcpy(st[0], idx->lay.st, sizeof idx->lay.st);
    stgS_loop_init(&d->idx, &idx->shape, 1, st);
    d->rows = rows;
    d->dim = dim;
    return STG_OK;
}

static stg_status prepare_embed(stg_prep *cx, stg_pnode *pn)
{
    const stg_node *w = pn->innode[0];
    return prepare_common(cx, pn, pn->innode[1], w->shape.d[0], w->shape.d[1]);
}

static stg_status prepare_embed_grad(stg_prep *cx, stg_pnode *pn)
{
    const stg_node *n = pn->node;
    stg_status s = prepare_common(cx, pn, pn->innode[1], n->shape.d[0], n->shape.d[1]);
    /* threads split the columns: worth it only for wide rows */
    pn->serial = s == STG_OK && (n->shape.d[1] < 64 ||
                                 stgS_numel(&pn->innode[0]->shape) < STG_GRAIN);
    return s;
}

static int32_t index_at(const embed_desc *d, const int32_t *idx, int64_t i)
{
    int64_t off[STG_LOOP_OPS];
    stgS_loop_offsets(&d->idx, i, off);
    return idx[off[0]];
}

static void run_embed(const stg_pnode *pn, const stg_step *sx, int tid, int nt)
{
    const embed_desc *d = pn->desc;
    const int32_t *idx = (const int32_t *)pn->in[1];
    int64_t lo, hi;
    stgR_share(pn, d->idx.total, tid, nt, &lo, &hi);
    for (int64_t i = lo; i < hi; i++) {
        int32_t j = index_at(d, idx, i);
        float *y = pn->out + i * d->dim;
        if (j < 0 || j >= d->rows) {
            stgR_fail(sx, STG_INDEX, "embedding: index %d at position %lld is out of range "
                      "[0, %lld)", (int)j, (long long)i, (long long)d->rows);
            memset(y, 0, (size_t)d->dim * sizeof *y);
            continue;
        }
        memcpy(y, pn->in[0] + j * d->dim, (size_t)d->dim * sizeof *y);
    }
}

static void run_embed_grad(const stg_pnode *pn, const stg_step *sx, int tid, int nt)
{
    const embed_desc *d = pn->desc;
    const int64_t pad = ((const embed_attr *)pn->node->attr)->padding_idx;
    const int32_t *idx = (const int32_t *)pn->in[1];
    const float *g = pn->in[0];
    int64_t lo, hi;
    (void)sx;
    stgR_share(pn, d->dim, tid, nt, &lo, &hi);
    if (hi <= lo)
        return;
    for (int64_t r = 0; r < d->rows; r++)
        memset(pn->out + r * d->dim + lo, 0, (size_t)(hi - lo) * sizeof(float));
    for (int64_t i = 0; i < d->idx.total; i++) {
        int32_t j = index_at(d, idx, i);
        if (j < 0 || j >= d->rows || j == pad) /* the forward pass reported bad ones */
            continue;
        float *dw = pn->out + j * d->dim;
        const float *gi = g + i * d->dim;
        for (int64_t c = lo; c < hi; c++)
            dw[c] += gi[c];
    }
}

static double flops_embed_grad(const stg_graph *g, const stg_node *n)
{
    return (double)stgS_numel(&g->nodes[n->in[0]].shape);
}

static void backward_embed(stg_ad *ad, int32_t id, stg_tensor gout)
{
    stg_graph *g = ad->g;
    const stg_node *n = &g->nodes[id];
    int32_t w = n->in[0];
    if (!stgD_needs(ad, w) || gout.id < 0)
        return;
    embed_attr a = *(const embed_attr *)n->attr;
    int32_t idx = n->in[1]; /* 'n' moves as the graph grows */
    stg_tensor gc = stgK_contiguous(g, gout);
    if (gc.id < 0)
        return;
    int32_t in[2] = {gc.id, idx};
    stg_shape s = g->nodes[w].shape;
    stgD_accumulate(ad, w, stgG_add(g, &stg_op_embedding_grad, 2, in, &s, &a));
}

STG_API stg_tensor stg_embedding(stg_graph *g, stg_tensor w, stg_tensor idx, int64_t padding_idx)
{
    if (!stgG_ok(g) || !stgG_check_tensor(g, "embedding", w) ||
        !stgG_check_index(g, "embedding", idx))
        return stgG_t(-1);
    const stg_shape *ws = &stgG_node(g, w)->shape, *is = &stgG_node(g, idx)->shape;
    char bw[96], bi[96];
    if (ws->nd != 2)
        return stgG_fail(g, STG_SHAPE, "embedding: weight %s must be (num_embeddings, dim)",
                         stgS_str(ws, bw, sizeof bw));
    if (is->nd >= STG_MAX_DIMS)
        return stgG_fail(g, STG_SHAPE, "embedding: idx %s has %d dims; the output adds one, and "
                         "a tensor has at most %d", stgS_str(is, bi, sizeof bi), is->nd,
                         STG_MAX_DIMS);
    if (padding_idx < -1 || padding_idx >= ws->d[0])
        return stgG_fail(g, STG_INVALID, "embedding: padding_idx %lld with weight %s (need -1 "
                         "for none, or 0 <= padding_idx < %lld)", (long long)padding_idx,
                         stgS_str(ws, bw, sizeof bw), (long long)ws->d[0]);
    stg_shape out = *is;
    out.d[out.nd++] = ws->d[1];
    if (!stgS_numel_ok(&out))
        return stgG_fail(g, STG_SHAPE, "embedding: idx %s times dim %lld is too many elements",
                         stgS_str(is, bi, sizeof bi), (long long)ws->d[1]);
    stg_tensor wc = stgK_contiguous(g, w);
    if (wc.id < 0)
        return wc;
    embed_attr a = {padding_idx};
    int32_t in[2] = {wc.id, idx.id};
    return stgG_add(g, &stg_op_embedding, 2, in, &out, &a);
}

const stg_op stg_op_embedding = {
    .name = "embedding",
    .attr_size = sizeof(embed_attr),
    .print_attr = print_embed,
    .prepare = prepare_embed,
    .run = run_embed,
    .backward = backward_embed,
};
const stg_op stg_op_embedding_grad = {
    .name = "embedding_grad",
    .attr_size = sizeof(embed_attr),
    .print_attr = print_embed,
    .prepare = prepare_embed_grad,
    .run = run_embed_grad,
    .flops = flops_embed_grad,
};
