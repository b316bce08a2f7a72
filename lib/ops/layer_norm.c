/*
 * Layer normalisation, as torch.nn.functional.layer_norm over the last
 * 'naxes' axes of x, seen as R rows of D values:
 *
 *   stats = ln_stats(x)                 (R, 2): each row's mean and 1 / sqrt(var + eps)
 *   y     = (x - mean) rstd w + b       w, b of the normalised shape, optional
 *
 *   dx    = ln_grad_x(g, x, stats, w)   rstd (gw - mean(gw) - x^ mean(gw x^)),  gw = g w
 *   dw,db = ln_grad_wb(g, x, stats)     (2, D): sum over rows of g x^, and of g
 *
 * (x^ = (x - mean) rstd).  Rows are independent, so the forward pass and
 * dx split rows among threads; the column sums of dw and db split columns,
 * each summed over the rows in order: the same bits at any thread count.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../op.h"

typedef struct ln_attr {
    float eps;
    int has_w, has_b;
} ln_attr;

static void print_ln(const void *attr, char *buf, size_t len)
{
    const ln_attr *a = attr;
    snprintf(buf, len, "eps=%g%s", (double)a->eps, a->has_w || a->has_b ? " affine" : "");
}

/* R rows of D: the extents every kernel loops over. */
typedef struct ln_dims {
    int64_t rows, dim;
} ln_dims;

static stg_status prepare_rows(stg_prep *cx, stg_pnode *pn, const stg_node *x2, bool by_column)
{
    ln_dims *d = stgP_opdata(cx, pn, sizeof *d);
    if (!d)
        return STG_NOMEM;
    *d = (ln_dims){x2->shape.d[0], x2->shape.d[1]};
    pn->serial = stgS_numel(&x2->shape) < STG_GRAIN || (by_column && d->dim < 64);
    return STG_OK;
}

static stg_status prepare_stats(stg_prep *cx, stg_pnode *pn)
{
    return prepare_rows(cx, pn, pn->innode[0], false);
}

static stg_status prepare_ln(stg_prep *cx, stg_pnode *pn)
{
    return prepare_rows(cx, pn, pn->node, false);
}

static stg_status prepare_wb(stg_prep *cx, stg_pnode *pn)
{
    return prepare_rows(cx, pn, pn->innode[1], true);
}

/* ---- kernels ------------------------------------------------------------- */

static void run_stats(const stg_pnode *pn, const stg_step *sx, int tid, int nt)
{
    const ln_dims *d = pn->desc;
    const float eps = ((const ln_attr *)pn->node->attr)->eps;
    int64_t lo, hi;
    (void)sx;
    stgR_share(pn, d->rows, tid, nt, &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        const float *x = pn->in[0] + r * d->dim;
        double mu = (double)stgV_sum(d->dim, x) / (double)d->dim, sq = 0.0;
        for (int64_t j = 0; j < d->dim; j++) {
            double e = (double)x[j] - mu;
            sq += e * e;
        }
        pn->out[2 * r] = (float)mu;
        pn->out[2 * r + 1] = (float)(1.0 / sqrt(sq / (double)d->dim + (double)eps));
    }
}

STG_CLONES static void normalise(int64_t n, const float *restrict x, float mean, float rstd,
                                 const float *restrict w, const float *restrict b,
                                 float *restrict y)
{
    for (int64_t j = 0; j < n; j++) {
        float v = (x[j] - mean) * rstd;
        y[j] = v * (w ? w[j] : 1.0f) + (b ? b[j] : 0.0f);
    }
}

static void run_ln(const stg_pnode *pn, const stg_step *sx, int tid, int nt)
{
    const ln_dims *d = pn->desc;
    const ln_attr *a = pn->node->attr;
    const float *stats = pn->in[1], *w = a->has_w ? pn->in[2] : NULL;
    const float *b = a->has_b ? pn->in[2 + a->has_w] : NULL;
    int64_t lo, hi;
    (void)sx;
    stgR_share(pn, d->rows, tid, nt, &lo, &hi);
    for (int64_t r = lo; r < hi; r++)
        normalise(d->dim, pn->in[0] + r * d->dim, stats[2 * r], stats[2 * r + 1], w, b,
                  pn->out + r * d->dim);
}

/* inputs: g, x, stats [, w] */
static void run_grad_x(const stg_pnode *pn, const stg_step *sx, int tid, int nt)
{
    const ln_dims *d = pn->desc;
    const ln_attr *a = pn->node->attr;
    const float *stats = pn->in[2], *w = a->has_w ? pn->in[3] : NULL;
    int64_t lo, hi;
    (void)sx;
    stgR_share(pn, d->rows, tid, nt, &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        const float *g = pn->in[0] + r * d->dim, *x = pn->in[1] + r * d->dim;
        float mean = stats[2 * r], rstd = stats[2 * r + 1], *dx = pn->out + r * d->dim;
        double s1 = 0.0, s2 = 0.0;
        for (int64_t j = 0; j < d->dim; j++) {
            float gw = w ? g[j] * w[j] : g[j];
            s1 += gw;
            s2 += (double)gw * (double)((x[j] - mean) * rstd);
        }
        float m1 = (float)(s1 / (double)d->dim), m2 = (float)(s2 / (double)d->dim);
        for (int64_t j = 0; j < d->dim; j++) {
            float gw = w ? g[j] * w[j] : g[j];
            dx[j] = rstd * (gw - m1 - (x[j] - mean) * rstd * m2);
        }
    }
}

/* inputs: g, x, stats; out (2, D): row 0 sum g (db), row 1 sum g x^ (dw) */
static void run_grad_wb(const stg_pnode *pn, const stg_step *sx, int tid, int nt)
{
    const ln_dims *d = pn->desc;
    const float *stats = pn->in[2];
    float *db = pn->out, *dw = pn->out + d->dim;
    int64_t lo, hi;
    (void)sx;
    stgR_share(pn, d->dim, tid, nt, &lo, &hi);
    if (hi <= lo)
        return;
    memset(db + lo, 0, (size_t)(hi - lo) * sizeof(float));
    memset(dw + lo, 0, (size_t)(hi - lo) * sizeof(float));
    for (int64_t r = 0; r < d->rows; r++) {
        const float *g = pn->in[0] + r * d->dim, *x = pn->in[1] + r * d->dim;
        float mean = stats[2 * r], rstd = stats[2 * r + 1];
        for (int64_t j = lo; j < hi; j++) {
            db[j] += g[j];
            dw[j] += g[j] * ((x[j] - mean) * rstd);
        }
    }
}

static double flops_rows(const stg_graph *g, const stg_node *n)
{
    return 4.0 * (double)stgS_numel(&g->nodes[n->in[0]].shape);
}

static double flops_ln(const stg_graph *g, const stg_node *n)
{
    (void)g;
    return 4.0 * (double)stgS_numel(&n->shape);
}

static double flops_grad_x(const stg_graph *g, const stg_node *n)
{
    (void)g;
    return 10.0 * (double)stgS_numel(&n->shape);
}

/* ---- graph building --------------------------------------------------------- */

/* A contiguous (R, D) version of t (a view when it already is one). */
static stg_tensor as_rows(stg_graph *g, stg_tensor t, int64_t rows, int64_t dim)
{
    stg_tensor r = stg_reshape(g, t, 2, (int64_t[]){rows, dim});
    if (r.id < 0 || stgS_is_contiguous(&g->nodes[r.id].shape, &g->nodes[r.id].lay))
        return r;
    return stgG_add(g, &stg_op_copy, 1, &r.id, &g->nodes[r.id].shape, NULL);
}

static void backward_ln(stg_ad *ad, int32_t id, stg_tensor gout)
{
    stg_graph *g = ad->g;
    const stg_node *n = &g->nodes[id];
    ln_attr a = *(const ln_attr *)n->attr;
    int32_t x = n->in[0], stats = n->in[1];
    int32_t w = a.has_w ? n->in[2] : -1, b = a.has_b ? n->in[2 + a.has_w] : -1;
    bool dw = w >= 0 && stgD_needs(ad, w), db = b >= 0 && stgD_needs(ad, b);
    if (gout.id < 0)
        return;
    int64_t rows = n->shape.d[0], dim = n->shape.d[1];
    stg_shape s = n->shape; /* 'n' moves as the graph grows */
    stg_tensor g2 = as_rows(g, gout, rows, dim);
    if (g2.id < 0)
        return;
    if (stgD_needs(ad, x)) {
        int32_t in[4] = {g2.id, x, stats, w};
        stgD_accumulate(ad, x, stgG_add(g, &stg_op_ln_grad_x, a.has_w ? 4 : 3, in, &s, &a));
    }
    if (dw || db) {
        int32_t in[3] = {g2.id, x, stats};
        stg_tensor r = stgG_add(g, &stg_op_ln_grad_wb, 3, in, &(stg_shape){2, {2, dim}}, &a);
        for (int k = 0; k < 2 && r.id >= 0; k++) {
            int32_t leaf = k == 0 ? b : w;
            if (leaf < 0 || !(k == 0 ? db : dw))
                continue;
            stg_shape ls = g->nodes[leaf].shape;
            stg_tensor rowk = stg_slice(g, r, 0, k, k + 1, 1);
            stgD_accumulate(ad, leaf, stg_reshape(g, rowk, ls.nd, ls.d));
        }
    }
}

STG_API stg_tensor stg_layer_norm(stg_graph *g, stg_tensor x, int naxes, stg_tensor w,
                                  stg_tensor b, float eps)
{
    if (!stgG_ok(g) || !stgG_check_tensor(g, "layer_norm", x))
        return stgG_t(-1);
    const stg_shape xs = stgG_node(g, x)->shape;
    char bx[96], bt[96], bs[96];
    stgS_str(&xs, bx, sizeof bx);
    if (naxes < 1 || naxes > xs.nd)
        return stgG_fail(g, STG_SHAPE, "layer_norm: x %s: naxes %d must be 1 to %d (the trailing "
                         "axes normalised)", bx, naxes, xs.nd);
    if (!(eps > 0.0f) || !isfinite(eps))
        return stgG_fail(g, STG_INVALID, "layer_norm: eps = %g (need eps > 0; PyTorch's "
                         "default is 1e-5)", (double)eps);
    stg_shape ns = {naxes, {0}};
    memcpy(ns.d, xs.d + xs.nd - naxes, sizeof(int64_t) * (size_t)naxes);
    stg_tensor affine[2] = {w, b};
    static const char *const what[2] = {"weight", "bias"};
    for (int k = 0; k < 2; k++) {
        if (affine[k].id < 0)
            continue;
        if (!stgG_check_tensor(g, "layer_norm", affine[k]))
            return stgG_t(-1);
        const stg_shape *s = &stgG_node(g, affine[k])->shape;
        if (!stgS_equal(s, &ns))
            return stgG_fail(g, STG_SHAPE, "layer_norm: x %s normalised over its last %d axes "
                             "%s, but %s is %s", bx, naxes, stgS_str(&ns, bt, sizeof bt),
                             what[k], stgS_str(s, bs, sizeof bs));
    }
    int64_t dim = stgS_numel(&ns), rows = stgS_numel(&xs) / dim;
    stg_tensor x2 = as_rows(g, x, rows, dim);
    if (x2.id < 0)
        return x2;
    ln_attr a = {eps, w.id >= 0, b.id >= 0};
    stg_tensor stats = stgG_add(g, &stg_op_ln_stats, 1, &x2.id, &(stg_shape){2, {rows, 2}}, &a);
    if (stats.id < 0)
        return stats;
    int32_t in[4] = {x2.id, stats.id}, nin = 2;
    for (int k = 0; k < 2; k++)
        if (affine[k].id >= 0) {
            stg_tensor c = as_rows(g, affine[k], 1, dim); /* contiguous (D) data */
            if (c.id < 0)
                return c;
            in[nin++] = c.id;
        }
    stg_tensor y = stgG_add(g, &stg_op_layer_norm, nin, in, &stgG_node(g, x2)->shape, &a);
    return y.id < 0 ? y : stg_reshape(g, y, xs.nd, xs.d);
}

const stg_op stg_op_ln_stats = {
    .name = "ln_stats",
    .attr_size = sizeof(ln_attr),
    .print_attr = print_ln,
    .prepare = prepare_stats,
    .run = run_stats,
    .flops = flops_rows,
};
const stg_op stg_op_layer_norm = {
    .name = "layer_norm",
    .attr_size = sizeof(ln_attr),
    .print_attr = print_ln,
    .prepare = prepare_ln,
    .run = run_ln,
    .backward = backward_ln,
    .flops = flops_ln,
};
const stg_op stg_op_ln_grad_x = {
    .name = "ln_grad_x",
    .attr_size = sizeof(ln_attr),
    .print_attr = print_ln,
    .prepare = prepare_ln,
    .run = run_grad_x,
    .flops = flops_grad_x,
};
const stg_op stg_op_ln_grad_wb = {
    .name = "ln_grad_wb",
    .attr_size = sizeof(ln_attr),
    .print_attr = print_ln,
    .prepare = prepare_wb,
    .run = run_grad_wb,
    .flops = flops_rows,
};
