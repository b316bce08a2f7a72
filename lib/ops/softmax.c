/*
 * softmax and log_softmax along one axis, stable (the row's maximum is
 * subtracted before exponentiating):
 *
 *   y = softmax(x)       dx = y * (g - sum(g * y, axis))
 *   y = log_softmax(x)   dx = g - exp(y) * sum(g, axis)
 *
 * Both gradients are ordinary nodes.  Rows are independent, so they are
 * split between threads without changing any row's arithmetic.
 */
#include <math.h>
#include <string.h>

#include "../op.h"

#define ROWS_GRAIN 4096 /* elements below which one thread does it all (exp is costly) */

typedef struct softmax_desc {
    stg_loop rows;       /* over the shape with the axis at 1; ops: out, in */
    int64_t len, sin, sout; /* row length and strides along the axis */
} softmax_desc;

static stg_tensor build(stg_graph *g, const stg_op *op, stg_tensor a, int axis)
{
    if (!stgG_ok(g) || !stgG_check_tensor(g, op->name, a))
        return stgG_t(-1);
    const stg_shape *s = &stgG_node(g, a)->shape;
    int ax = stgS_axis(axis, s->nd);
    char b[96];
    if (ax < 0)
        return stgG_fail(g, STG_SHAPE, "%s: a %s: axis %d out of range [%d, %d]%s", op->name,
                         stgS_str(s, b, sizeof b), axis, -s->nd, s->nd - 1,
                         s->nd == 0 ? " (a scalar has no axis)" : "");
    stg_axis_attr attr = {ax};
    stg_shape out = *s;
    return stgG_add(g, op, 1, &a.id, &out, &attr);
}

STG_API stg_tensor stg_softmax(stg_graph *g, stg_tensor a, int axis)
{
    return build(g, &stg_op_softmax, a, axis);
}

STG_API stg_tensor stg_log_softmax(stg_graph *g, stg_tensor a, int axis)
{
    return build(g, &stg_op_log_softmax, a, axis);
}

static void backward_softmax(stg_ad *ad, int32_t id, stg_tensor gout)
{
    stg_graph *g = ad->g;
    int32_t x = g->nodes[id].in[0];
    int axis = ((const stg_axis_attr *)g->nodes[id].attr)->axis;
    stg_tensor y = stgG_t(id);
    stg_tensor s = stg_sum(g, stg_mul(g, gout, y), 1, &axis, 1);
    stgD_accumulate(ad, x, stg_mul(g, y, stg_sub(g, gout, s)));
}

static void backward_log_softmax(stg_ad *ad, int32_t id, stg_tensor gout)
{
    stg_graph *g = ad->g;
    int32_t x = g->nodes[id].in[0];
    int axis = ((const stg_axis_attr *)g->nodes[id].attr)->axis;
    stg_tensor s = stg_sum(g, gout, 1, &axis, 1);
    stgD_accumulate(ad, x, stg_sub(g, gout, stg_mul(g, stg_exp(g, stgG_t(id)), s)));
}

static stg_status prepare_softmax(stg_prep *cx, stg_pnode *pn)
{
    softmax_desc *d = stgP_opdata(cx, pn, sizeof *d);
    if (!d)
        return STG_NOMEM;
    const stg_node *n = pn->node, *x = pn->innode[0];
    int ax = ((const stg_axis_attr *)n->attr)->axis;
    stg_shape rs = n->shape;
    rs.d[ax] = 1;
    stg_layout out;
    stgS_contiguous(&n->shape, &out);
    int64_t st[STG_LOOP_OPS][STG_MAX_DIMS] = {{0}};
    memcpy(st[0], out.st, sizeof out.st);
    memcpy(st[1], x->lay.st, sizeof x->lay.st);
    stgS_loop_init(&d->rows, &rs, 2, st);
    d->len = n->shape.d[ax];
    d->sout = out.st[ax];
    d->sin = x->lay.st[ax];
    pn->serial = stgS_numel(&n->shape) < ROWS_GRAIN;
    return STG_OK;
}

static void run_rows(const stg_pnode *pn, int tid, int nt, bool log_form)
{
    const softmax_desc *d = pn->desc;
    int64_t lo, hi;
    stgR_share(pn, d->rows.total, tid, nt, &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        int64_t off[STG_LOOP_OPS];
        stgS_loop_offsets(&d->rows, r, off);
        const float *x = pn->in[0] + off[1];
        float *y = pn->out + off[0];
        float m = -INFINITY, sum = 0.0f;
        for (int64_t i = 0; i < d->len; i++)
            m = fmaxf(m, x[i * d->sin]);
        for (int64_t i = 0; i < d->len; i++)
            sum += expf(x[i * d->sin] - m);
        if (log_form) {
            float lse = m + logf(sum);
            for (int64_t i = 0; i < d->len; i++)
                y[i * d->sout] = x[i * d->sin] - lse;
        } else {
            float inv = 1.0f / sum;
            for (int64_t i = 0; i < d->len; i++)
                y[i * d->sout] = expf(x[i * d->sin] - m) * inv;
        }
    }
}

static void run_softmax(const stg_pnode *pn, const stg_step *sx, int tid, int nt)
{
    (void)sx;
    run_rows(pn, tid, nt, false);
}

static void run_log_softmax(const stg_pnode *pn, const stg_step *sx, int tid, int nt)
{
    (void)sx;
    run_rows(pn, tid, nt, true);
}

static double flops_softmax(const stg_graph *g, const stg_node *n)
{
    (void)g;
    return 4.0 * (double)stgS_numel(&n->shape);
}

const stg_op stg_op_softmax = {
    .name = "softmax",
    .attr_size = sizeof(stg_axis_attr),
    .print_attr = stgO_print_axis,
    .prepare = prepare_softmax,
    .run = run_softmax,
    .backward = backward_softmax,
    .flops = flops_softmax,
};
const stg_op stg_op_log_softmax = {
    .name = "log_softmax",
    .attr_size = sizeof(stg_axis_attr),
    .print_attr = stgO_print_axis,
    .prepare = prepare_softmax,
    .run = run_log_softmax,
    .backward = backward_log_softmax,
    .flops = flops_softmax,
};
