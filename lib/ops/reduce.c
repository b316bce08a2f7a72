/*
 * Reductions over axes: sum (mean is a sum and a scale), max, min, the
 * 2-norm; var and logsumexp are built from them.
 *
 *   y = sum(x, axes)   dx = spread(g), spread(t) = broadcast_to(reshape(t, keepdims shape), shape(x))
 *   y = max(x, axes)   dx = spread(g) * m / sum(m, axes), m = (x == spread(y))   (min alike)
 *   y = ||x||, axes    dx = spread(g) * (x / spread(y), 0 where y is 0)
 *
 * The gradient is a stride-0 view: consumers read it in place.  The kernel
 * adds the reduced elements of each output in one fixed order (lexicographic
 * over the reduced axes, starting from 0), whatever the thread count.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../op.h"

/* Reduced input axes (bit i: axis i), and whether they stay as size 1. */
typedef struct reduce_attr {
    uint32_t axes;
    bool keepdims;
} reduce_attr;

static void print_reduce(const void *attr, char *buf, size_t len)
{
    const reduce_attr *at = attr;
    size_t used = (size_t)snprintf(buf, len, "axes=");
    for (int i = 0, first = 1; i < STG_MAX_DIMS && used < len; i++)
        if (at->axes & (1u << i)) {
            used += (size_t)snprintf(buf + used, len - used, "%s%d", first ? "" : ",", i);
            first = 0;
        }
    if (at->keepdims && used < len)
        snprintf(buf + used, len - used, " keepdims");
}

typedef struct reduce_desc {
    stg_loop keep;   /* op 0: output (contiguous), op 1: input strides of kept dims */
    stg_loop red;    /* op 0: input strides of reduced dims */
    bool red_outer;  /* walk reduced positions outermost (kept dims are unit-stride) */
} reduce_desc;

static stg_tensor reduce(stg_graph *g, const stg_op *op, const char *opname, stg_tensor a,
                         int naxes, const int *axes, int keepdims, bool mean)
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
    reduce_attr attr = {.axes = mask, .keepdims = keepdims != 0};
    stg_tensor y = stgG_add(g, op, 1, &a.id, &s, &attr);
    return mean ? stg_scale(g, y, 1.0f / (float)count) : y;
}

STG_API stg_tensor stg_sum(stg_graph *g, stg_tensor a, int naxes, const int *axes, int keepdims)
{
    return reduce(g, &stg_op_sum, "sum", a, naxes, axes, keepdims, false);
}

STG_API stg_tensor stg_mean(stg_graph *g, stg_tensor a, int naxes, const int *axes, int keepdims)
{
    return reduce(g, &stg_op_sum, "mean", a, naxes, axes, keepdims, true);
}

STG_API stg_tensor stg_max(stg_graph *g, stg_tensor a, int naxes, const int *axes, int keepdims)
{
    return reduce(g, &stg_op_amax, "max", a, naxes, axes, keepdims, false);
}

STG_API stg_tensor stg_min(stg_graph *g, stg_tensor a, int naxes, const int *axes, int keepdims)
{
    return reduce(g, &stg_op_amin, "min", a, naxes, axes, keepdims, false);
}

STG_API stg_tensor stg_norm(stg_graph *g, stg_tensor a, int p, int naxes, const int *axes,
                            int keepdims)
{
    if (stgG_ok(g) && p != 1 && p != 2)
        return stgG_fail(g, STG_INVALID, "norm: p = %d (1 or 2 are supported)", p);
    if (p == 1) {
        if (!stgG_ok(g) || !stgG_check_tensor(g, "norm", a))
            return stgG_t(-1);
        return reduce(g, &stg_op_sum, "norm", stg_abs(g, a), naxes, axes, keepdims, false);
    }
    return reduce(g, &stg_op_norm2, "norm", a, naxes, axes, keepdims, false);
}

/* Unbiased (n - 1), like torch.var's default. */
STG_API stg_tensor stg_var(stg_graph *g, stg_tensor a, int naxes, const int *axes, int keepdims)
{
    stg_tensor m = reduce(g, &stg_op_sum, "var", a, naxes, axes, 1, true);
    if (m.id < 0)
        return m;
    int64_t n = stgS_numel(&stgG_node(g, a)->shape) / stgS_numel(&stgG_node(g, m)->shape);
    stg_tensor d = stg_sub(g, a, m);
    stg_tensor ss = reduce(g, &stg_op_sum, "var", stg_mul(g, d, d), naxes, axes, keepdims, false);
    return stg_scale(g, ss, n > 1 ? 1.0f / (float)(n - 1) : NAN);
}

/* log(sum(exp(x))) with the maximum taken out first (and held constant for
 * the gradient, which is then exactly softmax(x)). */
STG_API stg_tensor stg_logsumexp(stg_graph *g, stg_tensor a, int naxes, const int *axes,
                                 int keepdims)
{
    stg_tensor m = reduce(g, &stg_op_amax, "logsumexp", a, naxes, axes, 1, false);
    if (m.id < 0)
        return m;
    uint32_t mask = ((const reduce_attr *)stgG_node(g, m)->attr)->axes;
    m = stg_detach(g, m);
    stg_tensor s = reduce(g, &stg_op_sum, "logsumexp", stg_exp(g, stg_sub(g, a, m)), naxes, axes,
                          1, false);
    stg_tensor lse = stg_add(g, stg_log(g, s), m);
    if (keepdims || lse.id < 0)
        return lse;
    stg_shape out = {0}, kept = stgG_node(g, lse)->shape;
    for (int i = 0; i < kept.nd; i++)
        if (!(mask & (1u << i)))
            out.d[out.nd++] = kept.d[i];
    return stg_reshape(g, lse, out.nd, out.d);
}

/* The incoming gradient brought back to x's shape (a stride-0 view). */
static stg_tensor spread(stg_ad *ad, int32_t id, stg_tensor t)
{
    const stg_node *n = &ad->g->nodes[id];
    const stg_shape xs = ad->g->nodes[n->in[0]].shape;
    stg_shape kept = xs;
    for (int i = 0; i < xs.nd; i++)
        if (((const reduce_attr *)n->attr)->axes & (1u << i))
            kept.d[i] = 1;
    stg_tensor r = stg_reshape(ad->g, t, kept.nd, kept.d);
    return stg_broadcast_to(ad->g, r, xs.nd, xs.d);
}

static void backward_sum(stg_ad *ad, int32_t id, stg_tensor gout)
{
    stgD_accumulate(ad, ad->g->nodes[id].in[0], spread(ad, id, gout));
}

/* max/min: the gradient is shared evenly between the elements equal to the
 * result (PyTorch's amax/amin and full max/min). */
static void backward_extreme(stg_ad *ad, int32_t id, stg_tensor gout)
{
    stg_graph *g = ad->g;
    int32_t x = g->nodes[id].in[0];
    uint32_t axes = ((const reduce_attr *)g->nodes[id].attr)->axes;
    int ax[STG_MAX_DIMS], nax = 0;
    for (int i = 0; i < g->nodes[x].shape.nd; i++)
        if (axes & (1u << i))
            ax[nax++] = i;
    stg_tensor mask = stg_eq(g, stgG_t(x), spread(ad, id, stgG_t(id)));
    stg_tensor count = stg_sum(g, mask, nax, ax, 1);
    stg_tensor share = stg_div(g, mask, count);
    stgD_accumulate(ad, x, stg_mul(g, share, spread(ad, id, gout)));
}

/* ||x||: dx = g x / ||x||, and 0 where ||x|| is 0 (as PyTorch). */
static void backward_norm2(stg_ad *ad, int32_t id, stg_tensor gout)
{
    stg_graph *g = ad->g;
    int32_t x = g->nodes[id].in[0];
    stg_tensor unit = stg_div_or_zero(g, stgG_t(x), spread(ad, id, stgG_t(id)));
    stgD_accumulate(ad, x, stg_mul(g, unit, spread(ad, id, gout)));
}

static stg_status prepare_sum(stg_prep *cx, stg_pnode *pn)
{
    const stg_node *n = pn->node, *x = pn->innode[0];
    reduce_desc *d = stgP_opdata(cx, pn, sizeof *d);
    if (!d)
        return STG_NOMEM;
    stg_shape ks = {0}, rs = {0};
    int64_t kst[STG_LOOP_OPS][STG_MAX_DIMS] = {{0}}, rst[STG_LOOP_OPS][STG_MAX_DIMS] = {{0}};
    for (int i = 0; i < x->shape.nd; i++) {
        if (((const reduce_attr *)n->attr)->axes & (1u << i)) {
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
    pn->serial = d->keep.total * d->red.total < STG_GRAIN; /* counted in input elements */
    return STG_OK;
}

/*
 * One kernel per reduction, from one template: 'acc' starts at INIT, takes
 * each reduced element v with STEP in the fixed order, and the output is
 * POST(acc).  Max and min let a NaN through, as PyTorch's do.
 */
/* UNIT(n, p): the fold of a unit-stride run of n values at p, added to acc;
 * NULL to fold them one by one with STEP.  ROW(n, src, y): y[i] = STEP of
 * y[i] and src[i] over a run of outputs, vectorised; NULL for the loop. */
#define REDUCE_KERNEL(op_, INIT, STEP, POST, UNIT, ROW)                                      \
    static float op_##_reduced(const reduce_desc *d, const float *x)                        \
    {                                                                                         \
        float acc = (INIT);                                                                   \
        int k = d->red.nd - 1;                                                                \
        if (k < 0) {                                                                          \
            float v = x[0];                                                                   \
            STEP;                                                                             \
            return POST;                                                                      \
        }                                                                                     \
        int64_t sk = d->red.st[0][k];                                                         \
        for (int64_t r = 0; r < d->red.total; r += d->red.d[k]) {                             \
            int64_t off[STG_LOOP_OPS];                                                        \
            stgS_loop_offsets(&d->red, r, off);                                               \
            float (*unit)(int64_t, const float *) = UNIT;                                     \
            if (sk == 1 && unit) {                                                            \
                acc += unit(d->red.d[k], x + off[0]);                                         \
                continue;                                                                     \
            }                                                                                 \
            for (int64_t i = 0; i < d->red.d[k]; i++) {                                       \
                float v = x[off[0] + i * sk];                                                 \
                STEP;                                                                         \
            }                                                                                 \
        }                                                                                     \
        return POST;                                                                          \
    }                                                                                         \
    static void run_##op_(const stg_pnode *pn, const stg_step *sx, int tid, int nt)           \
    {                                                                                         \
        const reduce_desc *d = pn->desc;                                                      \
        int64_t lo, hi;                                                                       \
        (void)sx;                                                                             \
        stgR_share(pn, d->keep.total, tid, nt, &lo, &hi);                                     \
        float *y = pn->out;                                                                   \
        const float *x = pn->in[0];                                                           \
        if (!d->red_outer) {                                                                  \
            for (int64_t o = lo; o < hi; o++) {                                               \
                int64_t off[STG_LOOP_OPS];                                                    \
                stgS_loop_offsets(&d->keep, o, off);                                          \
                y[o] = op_##_reduced(d, x + off[1]);                                         \
            }                                                                                 \
            return;                                                                           \
        }                                                                                     \
        /* Kept dims are unit-stride: update whole rows, one reduced position at a time;     \
         * each output still sees its elements in the same order. */                         \
        int k = d->keep.nd - 1;                                                               \
        for (int64_t o = lo; o < hi; o++)                                                     \
            y[o] = (INIT);                                                                    \
        for (int64_t r = 0; r < d->red.total; r++) {                                          \
            int64_t roff[STG_LOOP_OPS];                                                       \
            stgS_loop_offsets(&d->red, r, roff);                                              \
            for (int64_t o = lo; o < hi;) {                                                   \
                int64_t off[STG_LOOP_OPS];                                                    \
                stgS_loop_offsets(&d->keep, o, off);                                          \
                int64_t len = d->keep.d[k] - o % d->keep.d[k];                                \
                if (len > hi - o)                                                             \
                    len = hi - o;                                                             \
                const float *src = x + roff[0] + off[1];                                      \
                void (*row)(int64_t, const float *, float *) = ROW;                           \
                if (row) {                                                                    \
                    row(len, src, y + o);                                                     \
                    o += len;                                                                 \
                    continue;                                                                 \
                }                                                                             \
                for (int64_t i = 0; i < len; i++) {                                           \
                    float acc = y[o + i], v = src[i];                                         \
                    STEP;                                                                     \
                    y[o + i] = acc;                                                           \
                }                                                                             \
                o += len;                                                                     \
            }                                                                                 \
        }                                                                                     \
        for (int64_t o = lo; o < hi; o++) {                                                   \
            float acc = y[o];                                                                 \
            y[o] = POST;                                                                      \
        }                                                                                     \
    }

/* y += x as the cloned y += 1 x: 1 x is exact, so the bits are acc += v's */
static void add_row(int64_t n, const float *x, float *y)
{
    stgV_axpy(n, 1.0f, x, y);
}

/* a sum's unit-stride runs go through sixteen lanes: a chain of dependent
 * adds ran the bias gradients of a convolution at a third of the speed;
 * rows added into the outputs (a bias gradient over a layer's rows) go
 * through the vector loop */
REDUCE_KERNEL(sum, 0.0f, acc += v, acc, stgV_sum, add_row)
REDUCE_KERNEL(amax, -INFINITY, acc = (v > acc || v != v || acc != acc) ? (acc != acc ? acc : v) : acc, acc, NULL, NULL)
REDUCE_KERNEL(amin, INFINITY, acc = (v < acc || v != v || acc != acc) ? (acc != acc ? acc : v) : acc, acc, NULL, NULL)
REDUCE_KERNEL(norm2, 0.0f, acc += v * v, sqrtf(acc), NULL, NULL)

static double flops_sum(const stg_graph *g, const stg_node *n)
{
    return (double)stgS_numel(&g->nodes[n->in[0]].shape);
}

const stg_op stg_op_sum = {
    .name = "sum",
    .attr_size = sizeof(reduce_attr),
    .print_attr = print_reduce,
    .prepare = prepare_sum,
    .run = run_sum,
    .backward = backward_sum,
    .flops = flops_sum,
};
const stg_op stg_op_amax = {
    .name = "max",
    .attr_size = sizeof(reduce_attr),
    .print_attr = print_reduce,
    .prepare = prepare_sum,
    .run = run_amax,
    .backward = backward_extreme,
    .flops = flops_sum,
};
const stg_op stg_op_amin = {
    .name = "min",
    .attr_size = sizeof(reduce_attr),
    .print_attr = print_reduce,
    .prepare = prepare_sum,
    .run = run_amin,
    .backward = backward_extreme,
    .flops = flops_sum,
};
const stg_op stg_op_norm2 = {
    .name = "norm2",
    .attr_size = sizeof(reduce_attr),
    .print_attr = print_reduce,
    .prepare = prepare_sum,
    .run = run_norm2,
    .backward = backward_norm2,
    .flops = flops_sum,
};
