/*
 * Indexing by an int32 tensor (the building block of NLL and embeddings).
 *
 *   y = gather(x, axis, idx)   y[i] = x[i with its 'axis' coordinate replaced by idx[i]]
 *   dx = gather_grad(g, idx)   zeros of x's shape, g[i] added at the same places
 *
 * An index out of range fails the step (STG_INDEX) and reads nothing; the
 * gradient adds in one fixed order (thread 0), so it is deterministic.
 */
#include <stdio.h>
#include <string.h>

#include "../op.h"

/* The axis indexed, and what an index is, for messages (a static string,
 * e.g. "softmax_cross_entropy: label"). */
typedef struct gather_attr {
    int axis;
    const char *what;
} gather_attr;

static void print_gather(const void *attr, char *buf, size_t len)
{
    snprintf(buf, len, "axis=%d", ((const gather_attr *)attr)->axis);
}

/* Strides of 'x' over idx's index space, with 'axis' left out (0). */
typedef struct gather_desc {
    stg_loop loop;      /* ops: out (contiguous), x without axis, idx */
    int64_t axis_stride; /* x's stride along 'axis' */
    int64_t axis_size;
    stg_loop grad;      /* gather_grad: the incoming gradient, which may be a view */
} gather_desc;

STG_API stg_tensor stg_gather(stg_graph *g, stg_tensor a, int axis, stg_tensor idx)
{
    if (!stgG_ok(g) || !stgG_check_tensor(g, "gather", a) || !stgG_check_index(g, "gather", idx))
        return stgG_t(-1);
    const stg_shape *sa = &stgG_node(g, a)->shape, *si = &stgG_node(g, idx)->shape;
    char ba[96], bi[96];
    stgS_str(sa, ba, sizeof ba);
    stgS_str(si, bi, sizeof bi);
    int ax = stgS_axis(axis, sa->nd);
    if (ax < 0)
        return stgG_fail(g, STG_SHAPE, "gather: a %s: axis %d out of range [%d, %d]", ba, axis,
                         -sa->nd, sa->nd - 1);
    if (si->nd != sa->nd)
        return stgG_fail(g, STG_SHAPE, "gather: a %s and idx %s must have the same number of dims",
                         ba, bi);
    for (int i = 0; i < sa->nd; i++)
        if (i != ax && si->d[i] > sa->d[i])
            return stgG_fail(g, STG_SHAPE,
                             "gather: a %s and idx %s: idx's dim %d (%lld) exceeds a's (%lld)", ba,
                             bi, i, (long long)si->d[i], (long long)sa->d[i]);
    int32_t in[2] = {a.id, idx.id};
    gather_attr attr = {ax, "gather: index"};
    stg_shape out = *si;
    return stgG_add(g, &stg_op_gather, 2, in, &out, &attr);
}

/* gather with a message naming what the indices are ("softmax_cross_entropy: label"). */
stg_tensor stgK_gather_labelled(stg_graph *g, stg_tensor a, int axis, stg_tensor idx,
                                const char *what)
{
    stg_tensor t = stg_gather(g, a, axis, idx);
    if (t.id >= 0)
        ((gather_attr *)stgG_node(g, t)->attr)->what = what;
    return t;
}

static void backward_gather(stg_ad *ad, int32_t id, stg_tensor gout)
{
    const stg_node *n = &ad->g->nodes[id];
    int32_t x = n->in[0], in[2] = {gout.id, n->in[1]};
    if (!stgD_needs(ad, x) || gout.id < 0)
        return;
    gather_attr attr = *(const gather_attr *)n->attr;
    stg_shape s = ad->g->nodes[x].shape;
    stgD_accumulate(ad, x, stgG_add(ad->g, &stg_op_gather_grad, 2, in, &s, &attr));
}

/* Both kernels walk idx's index space; 'x' is the gathered-from tensor,
 * whose layout (a view's strides) the descriptor follows. */
static stg_status prepare(stg_prep *cx, stg_pnode *pn, const stg_node *x, const stg_node *idx,
                          bool x_is_out)
{
    gather_desc *d = stgP_opdata(cx, pn, sizeof *d);
    if (!d)
        return STG_NOMEM;
    int ax = ((const gather_attr *)pn->node->attr)->axis;
    int64_t st[STG_LOOP_OPS][STG_MAX_DIMS] = {{0}};
    stg_layout out, xl = x->lay;
    stgS_contiguous(x_is_out ? &x->shape : &idx->shape, &out);
    if (x_is_out)
        xl = out;
    for (int i = 0; i < idx->shape.nd; i++) {
        st[0][i] = x_is_out ? 0 : out.st[i];
        st[1][i] = i == ax ? 0 : xl.st[i];
        st[2][i] = idx->lay.st[i];
    }
    if (!x_is_out) { /* the output is idx-shaped and contiguous */
        stg_layout o;
        stgS_contiguous(&idx->shape, &o);
        memcpy(st[0], o.st, sizeof o.st);
    }
    stgS_loop_init(&d->loop, &idx->shape, 3, st);
    d->axis_stride = xl.st[ax];
    d->axis_size = x->shape.d[ax];
    return STG_OK;
}

static stg_status prepare_gather(stg_prep *cx, stg_pnode *pn)
{
    return prepare(cx, pn, pn->innode[0], pn->innode[1], false);
}

static stg_status prepare_gather_grad(stg_prep *cx, stg_pnode *pn)
{
    stg_status s = prepare(cx, pn, pn->node, pn->innode[1], true);
    if (s != STG_OK)
        return s;
    gather_desc *d = pn->desc;
    const stg_node *gn = pn->innode[0];
    int64_t st[STG_LOOP_OPS][STG_MAX_DIMS] = {{0}};
    memcpy(st[0], gn->lay.st, sizeof gn->lay.st);
    stgS_loop_init(&d->grad, &gn->shape, 1, st); /* the incoming gradient may be a view */
    return STG_OK;
}

static void bad_index(const stg_pnode *pn, const stg_step *sx, int32_t j, int64_t at,
                      int64_t size)
{
    stgR_fail(sx, STG_INDEX, "%s %d at position %lld is out of range [0, %lld)",
              ((const gather_attr *)pn->node->attr)->what, (int)j, (long long)at,
              (long long)size);
}

static void run_gather(const stg_pnode *pn, const stg_step *sx, int tid, int nt)
{
    const gather_desc *d = pn->desc;
    const float *x = pn->in[0];
    const int32_t *idx = (const int32_t *)pn->in[1];
    int64_t lo, hi;
    stgR_share(pn, d->loop.total, tid, nt, &lo, &hi);
    for (int64_t i = lo; i < hi; i++) {
        int64_t off[STG_LOOP_OPS];
        stgS_loop_offsets(&d->loop, i, off);
        int32_t j = idx[off[2]];
        if (j < 0 || j >= d->axis_size) {
            bad_index(pn, sx, j, i, d->axis_size);
            pn->out[i] = 0.0f;
            continue;
        }
        pn->out[i] = x[off[1] + j * d->axis_stride];
    }
}

static void run_gather_grad(const stg_pnode *pn, const stg_step *sx, int tid, int nt)
{
    const gather_desc *d = pn->desc;
    const float *g = pn->in[0];
    const int32_t *idx = (const int32_t *)pn->in[1];
    const stg_loop *gl = &d->grad;
    (void)sx, (void)nt;
    if (tid != 0)
        return;
    memset(pn->out, 0, (size_t)stgS_numel(&pn->node->shape) * sizeof(float));
    for (int64_t i = 0; i < d->loop.total; i++) {
        int64_t off[STG_LOOP_OPS], goff[STG_LOOP_OPS];
        stgS_loop_offsets(&d->loop, i, off);
        stgS_loop_offsets(gl, i, goff);
        int32_t j = idx[off[2]];
        if (j >= 0 && j < d->axis_size) /* the forward pass reported bad ones */
            pn->out[off[1] + j * d->axis_stride] += g[goff[0]];
    }
}

static double flops_gather_grad(const stg_graph *g, const stg_node *n)
{
    return (double)stgS_numel(&g->nodes[n->in[1]].shape);
}

const stg_op stg_op_gather = {
    .name = "gather",
    .attr_size = sizeof(gather_attr),
    .print_attr = print_gather,
    .prepare = prepare_gather,
    .run = run_gather,
    .backward = backward_gather,
};
const stg_op stg_op_gather_grad = {
    .name = "gather_grad",
    .flags = STG_OPF_SERIAL,
    .attr_size = sizeof(gather_attr),
    .print_attr = print_gather,
    .prepare = prepare_gather_grad,
    .run = run_gather_grad,
    .flops = flops_gather_grad,
};
