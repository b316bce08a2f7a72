/*
 * Dropout, as torch.nn.functional.dropout in training:
 *
 *   y = x * m / (1 - p)    dx = g * m / (1 - p),   m_i = (u_i >= p)
 *
 * where u_i is value i of a counter-based stream keyed by (the plan's seed,
 * the step number, the dropout node): the mask is a pure function of where
 * and when it is drawn, so it is the same at any thread count, the gradient
 * node draws it again instead of keeping it, and a resumed run draws the
 * masks the straight run drew.  In an inference plan dropout is the
 * identity.  PyTorch's own generator is not reproduced: the masks differ
 * from PyTorch's, their law does not.
 */
#include <stdio.h>
#include <string.h>

#include "../op.h"

/* The drop probability, and the node whose mask this is (the forward
 * node, for it and for its gradient). */
typedef struct dropout_attr {
    float p;
    int32_t key;
} dropout_attr;

static void print_dropout(const void *attr, char *buf, size_t len)
{
    snprintf(buf, len, "p=%g", (double)((const dropout_attr *)attr)->p);
}

typedef struct dropout_desc {
    stg_loop loop;  /* ops: out (contiguous), in */
    bool identity;  /* an inference plan */
} dropout_desc;

static stg_status prepare_dropout(stg_prep *cx, stg_pnode *pn)
{
    dropout_desc *d = stgP_opdata(cx, pn, sizeof *d);
    if (!d)
        return STG_NOMEM;
    const stg_node *n = pn->node, *x = pn->innode[0];
    int64_t st[STG_LOOP_OPS][STG_MAX_DIMS] = {{0}};
    stg_layout out;
    stgS_contiguous(&n->shape, &out);
    memcpy(st[0], out.st, sizeof out.st);
    memcpy(st[1], x->lay.st, sizeof x->lay.st);
    stgS_loop_init(&d->loop, &n->shape, 2, st);
    d->identity = cx->inference;
    return STG_OK;
}

/* y_i = x_i * m_i / (1 - p) over this thread's share, x read through its layout. */
static void run_dropout(const stg_pnode *pn, const stg_step *sx, int tid, int nt)
{
    const dropout_desc *d = pn->desc;
    const dropout_attr *a = pn->node->attr;
    int64_t lo, hi;
    stgR_share(pn, d->loop.total, tid, nt, &lo, &hi);
    uint64_t stream = stgK_mix(stgK_mix(sx->seed ^ stgK_mix((uint64_t)sx->number)) ^
                               (uint64_t)(uint32_t)a->key);
    float scale = a->p < 1.0f ? 1.0f / (1.0f - a->p) : 0.0f;
    int k = d->loop.nd - 1;
    for (int64_t i = lo; i < hi;) {
        int64_t off[STG_LOOP_OPS], n = k < 0 ? 1 : d->loop.d[k] - i % d->loop.d[k];
        stgS_loop_offsets(&d->loop, i, off);
        int64_t sx1 = k < 0 ? 0 : d->loop.st[1][k];
        if (n > hi - i)
            n = hi - i;
        const float *x = pn->in[0] + off[1];
        float *y = pn->out + i;
        if (d->identity) {
            for (int64_t j = 0; j < n; j++)
                y[j] = x[j * sx1];
        } else { /* x times 0 where dropped, as PyTorch multiplies by the mask:
                  * a NaN or an infinity dropped is still a NaN */
            for (int64_t j = 0; j < n; j++)
                y[j] = x[j * sx1] *
                       (stgK_unit(stream, (uint64_t)(i + j)) >= a->p ? scale : 0.0f);
        }
        i += n;
    }
}

static void backward_dropout(stg_ad *ad, int32_t id, stg_tensor gout)
{
    const stg_node *n = &ad->g->nodes[id];
    int32_t x = n->in[0];
    dropout_attr a = *(const dropout_attr *)n->attr;
    if (!stgD_needs(ad, x) || gout.id < 0)
        return;
    stg_shape s = n->shape;
    /* the same op on the gradient, with the forward node's key: the same mask */
    stgD_accumulate(ad, x, stgG_add(ad->g, &stg_op_dropout, 1, &gout.id, &s, &a));
}

static double flops_dropout(const stg_graph *g, const stg_node *n)
{
    (void)g;
    return (double)stgS_numel(&n->shape);
}

STG_API stg_tensor stg_dropout(stg_graph *g, stg_tensor x, float p)
{
    if (!stgG_ok(g) || !stgG_check_tensor(g, "dropout", x))
        return stgG_t(-1);
    if (!(p >= 0.0f && p <= 1.0f))
        return stgG_fail(g, STG_INVALID, "dropout: p = %g (need 0 <= p <= 1)", (double)p);
    dropout_attr a = {p, 0};
    stg_shape s = stgG_node(g, x)->shape;
    stg_tensor y = stgG_add(g, &stg_op_dropout, 1, &x.id, &s, &a);
    if (y.id >= 0)
        ((dropout_attr *)g->nodes[y.id].attr)->key = y.id;
    return y;
}

const stg_op stg_op_dropout = {
    .name = "dropout",
    .attr_size = sizeof(dropout_attr),
    .print_attr = print_dropout,
    .prepare = prepare_dropout,
    .run = run_dropout,
    .backward = backward_dropout,
    .flops = flops_dropout,
};
