/*
 * softmax and log_softmax along one axis, stable (the row's maximum is
 * subtracted before exponentiating):
 *
 *   y = softmax(x)       dx = y * (g - sum(g * y, axis))
 *   y = log_softmax(x)   dx = g - exp(y) * sum(g, axis)
 *
 * softmax's gradient is ordinary nodes; log_softmax's, the one every
 * cross-entropy takes, is one pass (log_softmax_grad) instead of four
 * nodes that each read a tensor of the logits' size.  Rows are
 * independent, so they are split between threads without changing any
 * row's arithmetic.  A row contiguous along the axis takes its exps from
 * the vectorised stgV_exp and its sums from stgV_sum.
 */
#include <math.h>
#include <string.h>

#include "../op.h"

#define ROWS_GRAIN 4096 /* elements below which one thread does it all (exp is costly) */

typedef struct softmax_desc {
    stg_loop rows;       /* over the shape with the axis at 1; ops: out, in */
    int64_t len, sout;   /* row length, the output's stride along the axis */
    int64_t sin[2];      /* the inputs' strides along it */
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
    if (gout.id < 0 || !stgD_needs(ad, x))
        return;
    stg_axis_attr attr = *(const stg_axis_attr *)g->nodes[id].attr;
    stg_shape s = g->nodes[id].shape;
    int32_t in[2] = {gout.id, id};
    stgD_accumulate(ad, x, stgG_add(g, &stg_op_log_softmax_grad, 2, in, &s, &attr));
}

static stg_status prepare_softmax(stg_prep *cx, stg_pnode *pn)
{
    softmax_desc *d = stgP_opdata(cx, pn, sizeof *d);
    if (!d)
        return STG_NOMEM;
    const stg_node *n = pn->node;
    int ax = ((const stg_axis_attr *)n->attr)->axis;
    stg_shape rs = n->shape;
    rs.d[ax] = 1;
    stg_layout out;
    stgS_contiguous(&n->shape, &out);
    int64_t st[STG_LOOP_OPS][STG_MAX_DIMS] = {{0}};
    memcpy(st[0], out.st, sizeof out.st);
    d->sout = out.st[ax];
    for (int k = 0; k < pn->node->nin; k++) {
        memcpy(st[1 + k], pn->innode[k]->lay.st, sizeof out.st);
        d->sin[k] = pn->innode[k]->lay.st[ax];
    }
    stgS_loop_init(&d->rows, &rs, 1 + pn->node->nin, st);
    d->len = n->shape.d[ax];
    pn->serial = stgS_numel(&n->shape) < ROWS_GRAIN;
    return STG_OK;
}

/* the row's maximum; a NaN is passed over here and makes the sum NaN */
static float row_max(const float *x, int64_t len, int64_t st)
{
    float m = -INFINITY;
    for (int64_t i = 0; i < len; i++)
        m = x[i * st] > m ? x[i * st] : m;
    return m;
}

static void run_rows(const stg_pnode *pn, int tid, int nt, bool log_form)
{
    const softmax_desc *d = pn->desc;
    int64_t lo, hi, len = d->len, si = d->sin[0], so = d->sout;
    stgR_share(pn, d->rows.total, tid, nt, &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        int64_t off[STG_LOOP_OPS];
        stgS_loop_offsets(&d->rows, r, off);
        const float *x = pn->in[0] + off[1];
        float *y = pn->out + off[0];
        float m = row_max(x, len, si), sum = 0.0f;
        if (si == 1 && so == 1) {
            for (int64_t i = 0; i < len; i++)
                y[i] = x[i] - m;
            stgV_exp(len, y, y);
            sum = stgV_sum(len, y);
            if (log_form) {
                float lse = m + logf(sum);
                for (int64_t i = 0; i < len; i++)
                    y[i] = x[i] - lse;
            } else {
                stgV_scale(len, 1.0f / sum, y, y);
            }
            continue;
        }
        for (int64_t i = 0; i < len; i++)
            sum += expf(x[i * si] - m);
        if (log_form) {
            float lse = m + logf(sum);
            for (int64_t i = 0; i < len; i++)
                y[i * so] = x[i * si] - lse;
        } else {
            float inv = 1.0f / sum;
            for (int64_t i = 0; i < len; i++)
                y[i * so] = expf(x[i * si] - m) * inv;
        }
    }
}

/* dx = g - exp(y) sum(g), row by row: inputs g, y */
static void run_log_softmax_grad(const stg_pnode *pn, const stg_step *sx, int tid, int nt)
{
    const softmax_desc *d = pn->desc;
    int64_t lo, hi, len = d->len, sg = d->sin[0], sy = d->sin[1], so = d->sout;
    (void)sx;
    stgR_share(pn, d->rows.total, tid, nt, &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        int64_t off[STG_LOOP_OPS];
        stgS_loop_offsets(&d->rows, r, off);
        const float *gr = pn->in[0] + off[1], *y = pn->in[1] + off[2];
        float *dx = pn->out + off[0];
        if (sg == 1 && sy == 1 && so == 1) {
            float s = stgV_sum(len, gr);
            stgV_exp(len, y, dx);
            for (int64_t i = 0; i < len; i++)
                dx[i] = gr[i] - dx[i] * s;
            continue;
        }
        float s = 0.0f;
        for (int64_t i = 0; i < len; i++)
            s += gr[i * sg];
        for (int64_t i = 0; i < len; i++)
            dx[i * so] = gr[i * sg] - expf(y[i * sy]) * s;
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
const stg_op stg_op_log_softmax_grad = {
    .name = "log_softmax_grad",
    .attr_size = sizeof(stg_axis_attr),
    .print_attr = stgO_print_axis,
    .prepare = prepare_softmax,
    .run = run_log_softmax_grad,
    .flops = flops_softmax,
};
