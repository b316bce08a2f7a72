/*
 * Sums over axes (mean is a sum followed by a scale).
 *
 *   y = sum(x, axes)   dx = broadcast_to(reshape(g, keepdims shape), shape(x))
 *
 * The gradient is a stride-0 view: consumers read it in place.  The kernel
 * adds the reduced elements of each output in one fixed order (lexicographic
 * over the reduced axes, starting from 0), whatever the thread count.
 */
#include <string.h>

#include "../internal.h"

#define REDUCE_GRAIN 16384 /* input elements below which one thread does it all */

typedef struct reduce_desc {
    stg_loop keep;   /* op 0: output (contiguous), op 1: input strides of kept dims */
    stg_loop red;    /* op 0: input strides of reduced dims */
    bool red_outer;  /* walk reduced positions outermost (kept dims are unit-stride) */
} reduce_desc;

static stg_tensor reduce(stg_graph *g, const char *opname, stg_tensor a, int naxes,
                         const int *axes, int keepdims, bool mean)
{
    if (!stgG_ok(g) || !stgG_check_tensor(g, opname, a))
        return stgG_t(-1);
    const stg_node *x = stgG_node(g, a);
    int nd = x->shape.nd;
    char bx[96];
    uint32_t mask = 0;
    if (naxes > 0 && !axes)
        return stgG_fail(g, STG_INVALID, "%s: a %s: axes is NULL for %d axes", opname,
                         stgS_str(&x->shape, bx, sizeof bx), naxes);
    if (naxes < 0 || naxes > nd)
        return stgG_fail(g, STG_SHAPE, "%s: a %s: %d axes (need 0 to %d; 0 means all)", opname,
                         stgS_str(&x->shape, bx, sizeof bx), naxes, nd);
    for (int i = 0; i < naxes; i++) {
        int ax = stgS_axis(axes[i], nd);
        if (ax < 0)
            return stgG_fail(g, STG_SHAPE, "%s: a %s: axis %d out of range [%d, %d]", opname,
                             stgS_str(&x->shape, bx, sizeof bx), axes[i], -nd, nd - 1);
        if (mask & (1u << ax))
            return stgG_fail(g, STG_SHAPE, "%s: a %s: axis %d given twice", opname,
                             stgS_str(&x->shape, bx, sizeof bx), axes[i]);
        mask |= 1u << ax;
    }
    if (naxes == 0)
        mask = (1u << nd) - 1;
    stg_shape s = {0};
    int64_t count = 1;
    for (int i = 0; i < nd; i++) {
        if (mask & (1u << i)) {
            count *= x->shape.d[i];
            if (keepdims)
                s.d[s.nd++] = 1;
        } else {
            s.d[s.nd++] = x->shape.d[i];
        }
    }
    stg_attr attr = {.axes = mask, .keepdims = keepdims != 0};
    stg_tensor y = stgG_add(g, &stg_op_sum, 1, &a.id, &s, &attr);
    return mean ? stg_scale(g, y, 1.0f / (float)count) : y;
}

STG_API stg_tensor stg_sum(stg_graph *g, stg_tensor a, int naxes, const int *axes, int keepdims)
{
    return reduce(g, "sum", a, naxes, axes, keepdims, false);
}

STG_API stg_tensor stg_mean(stg_graph *g, stg_tensor a, int naxes, const int *axes, int keepdims)
{
    return reduce(g, "mean", a, naxes, axes, keepdims, true);
}

static void backward_sum(stg_ad *ad, int32_t id, stg_tensor gout)
{
    const stg_node *n = &ad->g->nodes[id];
    const stg_shape xs = ad->g->nodes[n->in[0]].shape;
    stg_shape kept = xs;
    for (int i = 0; i < xs.nd; i++)
        if (n->attr.axes & (1u << i))
            kept.d[i] = 1;
    int32_t x = n->in[0];
    stg_tensor r = stg_reshape(ad->g, gout, kept.nd, kept.d);
    stgD_accumulate(ad, x, stg_broadcast_to(ad->g, r, xs.nd, xs.d));
}

static stg_status prepare_sum(stg_plan *p, stg_pnode *pn)
{
    (void)p; /* the descriptor is all this op needs */
    const stg_node *n = pn->node, *x = pn->innode[0];
    reduce_desc *d = stgP_desc(pn, sizeof *d);
    if (!d)
        return STG_NOMEM;
    stg_shape ks = {0}, rs = {0};
    int64_t kst[STG_LOOP_OPS][STG_MAX_DIMS] = {{0}}, rst[STG_LOOP_OPS][STG_MAX_DIMS] = {{0}};
    for (int i = 0; i < x->shape.nd; i++) {
        if (n->attr.axes & (1u << i)) {
            rst[0][rs.nd] = x->lay.st[i];
            rs.d[rs.nd++] = x->shape.d[i];
        } else {
            kst[1][ks.nd] = x->lay.st[i];
            ks.d[ks.nd++] = x->shape.d[i];
        }
    }
    stg_layout out;
    stgS_contiguous(&ks, &out);
    memcpy(kst[0], out.st, sizeof out.st);
    stgS_loop_init(&d->keep, &ks, 2, kst);
    stgS_loop_init(&d->red, &rs, 1, rst);
    d->red_outer = d->keep.nd > 0 && d->keep.st[1][d->keep.nd - 1] == 1;
    return STG_OK;
}

static float sum_reduced(const reduce_desc *d, const float *x)
{
    float acc = 0.0f;
    int k = d->red.nd - 1;
    if (k < 0)
        return acc + x[0];
    int64_t r = 0, sk = d->red.st[0][k];
    while (r < d->red.total) {
        int64_t off[STG_LOOP_OPS];
        stgS_loop_offsets(&d->red, r, off);
        for (int64_t i = 0; i < d->red.d[k]; i++)
            acc += x[off[0] + i * sk];
        r += d->red.d[k];
    }
    return acc;
}

static void run_sum(const stg_pnode *pn, int tid, int nt)
{
    const reduce_desc *d = pn->desc;
    int64_t lo = 0, hi = d->keep.total;
    if (d->keep.total * d->red.total >= REDUCE_GRAIN)
        stgR_split(d->keep.total, tid, nt, &lo, &hi);
    else if (tid != 0)
        return;
    float *y = pn->out;
    const float *x = pn->in[0];
    if (!d->red_outer) {
        for (int64_t o = lo; o < hi; o++) {
            int64_t off[STG_LOOP_OPS];
            stgS_loop_offsets(&d->keep, o, off);
            y[o] = sum_reduced(d, x + off[1]);
        }
        return;
    }
    /* Kept dims are unit-stride: add whole rows, one reduced position at a time. */
    int k = d->keep.nd - 1;
    for (int64_t o = lo; o < hi; o++)
        y[o] = 0.0f;
    for (int64_t r = 0; r < d->red.total; r++) {
        int64_t roff[STG_LOOP_OPS];
        stgS_loop_offsets(&d->red, r, roff);
        for (int64_t o = lo; o < hi;) {
            int64_t off[STG_LOOP_OPS];
            stgS_loop_offsets(&d->keep, o, off);
            int64_t len = d->keep.d[k] - o % d->keep.d[k];
            if (len > hi - o)
                len = hi - o;
            const float *src = x + roff[0] + off[1];
            for (int64_t i = 0; i < len; i++)
                y[o + i] += src[i];
            o += len;
        }
    }
}

static double flops_sum(const stg_graph *g, const stg_node *n)
{
    return (double)stgS_numel(&g->nodes[n->in[0]].shape);
}

const stg_op stg_op_sum = {"sum", 0, prepare_sum, run_sum, backward_sum, flops_sum};
