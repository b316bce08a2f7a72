/*
 * Batch normalisation, as torch.nn.functional.batch_norm, over x viewed as
 * (N, C, S) (S = the product of the axes after the channel, 1 for (N, C)):
 *
 *   stats = bn_stats(x, running_mean, running_var)     (2, C): mean, biased variance
 *   y     = x a + (b - mean a),  a = w / sqrt(var + eps)   (PyTorch's own order)
 *
 * In a training plan the statistics are the batch's; in an inference plan
 * they are a copy of the running ones.  The running statistics are never
 * written in the forward pass: the plan adds a bn_commit node after the
 * guard (op 'commit' below), so a failed step leaves them as they were,
 *
 *   running_mean = m mean + (1 - m) running_mean
 *   running_var  = m var n / (n - 1) + (1 - m) running_var      (n = N S)
 *
 * The backward pass is two nodes, with r0 = sum g and r1 = sum g (x - mean)
 * inv over each channel (inv = 1 / sqrt(var + eps)):
 *
 *   r  = bn_grad_reduce(g, x, stats)       (2, C): db = r0, dw = r1
 *   dx = bn_grad_x(g, x, stats, r, w)      w inv (g - r0 / n - (x - mean) inv r1 / n)
 *
 * which carries the gradient through the batch statistics, so bn_stats has
 * no backward rule of its own.  Every per-channel sum runs over its channel
 * in one fixed order, in double, so results do not depend on the thread
 * count.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../op.h"

/* x seen as (N, C, S): the extents every kernel loops over. */
typedef struct bn_dims {
    int64_t n, c, s;
} bn_dims;

static bn_dims dims_of(const stg_node *x3)
{
    return (bn_dims){x3->shape.d[0], x3->shape.d[1], x3->shape.d[2]};
}

/* 1 / sqrt(var + eps) of channel c, from a (2, C) stats node. */
static inline float inv_std(const float *stats, int64_t channels, int64_t c, float eps)
{
    return 1.0f / sqrtf(stats[channels + c] + eps);
}

/* Channels split among threads, or (N, C) planes; serial below the grain. */
static void mark_serial(stg_pnode *pn, const stg_node *x3)
{
    pn->serial = stgS_numel(&x3->shape) < STG_GRAIN;
}

/* ---- bn_stats: (x [, running_mean, running_var]) -> (2, C) ----------------- */

typedef struct stats_desc {
    bn_dims d;
    bool batch; /* the batch's statistics (training, or no running ones) */
} stats_desc;

static stg_status prepare_stats(stg_prep *cx, stg_pnode *pn)
{
    stats_desc *d = stgP_opdata(cx, pn, sizeof *d);
    if (!d)
        return STG_NOMEM;
    d->d = dims_of(pn->innode[0]);
    d->batch = !cx->inference || pn->node->nin == 1;
    if (d->batch && d->d.n * d->d.s < 2)
        return stgP_fail(cx, STG_SHAPE, "batch_norm: x has 1 value per channel (batch 1, 1 "
                         "position); batch statistics need more than 1 (an inference plan "
                         "uses the running ones)");
    mark_serial(pn, pn->innode[0]);
    return STG_OK;
}

/* The mean and biased variance of one channel: two passes, in double. */
static void channel_stats(const float *x, bn_dims d, int64_t c, float *mean, float *var)
{
    const float *xc = x + c * d.s;
    double sum = 0.0;
    for (int64_t i = 0; i < d.n; i++)
        sum += stgV_sum(d.s, xc + i * d.c * d.s);
    double n = (double)(d.n * d.s), mu = sum / n, sq = 0.0;
    for (int64_t i = 0; i < d.n; i++) {
        const float *row = xc + i * d.c * d.s;
        for (int64_t j = 0; j < d.s; j++) {
            double e = (double)row[j] - mu;
            sq += e * e;
        }
    }
    *mean = (float)mu;
    *var = (float)(sq / n);
}

static void run_stats(const stg_pnode *pn, const stg_step *sx, int tid, int nt)
{
    const stats_desc *d = pn->desc;
    int64_t lo, hi, c = d->d.c;
    (void)sx;
    stgR_share(pn, c, tid, nt, &lo, &hi);
    for (int64_t k = lo; k < hi; k++) {
        if (d->batch) {
            channel_stats(pn->in[0], d->d, k, &pn->out[k], &pn->out[c + k]);
        } else {
            pn->out[k] = pn->in[1][k];
            pn->out[c + k] = pn->in[2][k];
        }
    }
}

static double flops_stats(const stg_graph *g, const stg_node *n)
{
    return 4.0 * (double)stgS_numel(&g->nodes[n->in[0]].shape);
}

/* ---- bn_commit: (running_mean, stats, running_var), after the guard ----- */

typedef struct commit_attr {
    float momentum;
    int64_t count; /* values per channel: N S */
} commit_attr;

static void print_commit(const void *attr, char *buf, size_t len)
{
    const commit_attr *a = attr;
    snprintf(buf, len, "momentum=%g n=%lld", (double)a->momentum, (long long)a->count);
}

static void run_commit(const stg_pnode *pn, const stg_step *sx, int tid, int nt)
{
    const commit_attr *a = pn->node->attr;
    int64_t lo, hi, c = pn->node->shape.d[0];
    float m = a->momentum, keep = 1.0f - m, *rm = pn->out, *rv = (float *)pn->in[2];
    const float *mean = pn->in[1], *var = pn->in[1] + c;
    double unbias = (double)a->count / (double)(a->count - 1);
    (void)sx;
    stgR_share(pn, c, tid, nt, &lo, &hi);
    for (int64_t k = lo; k < hi; k++) {
        rm[k] = m * mean[k] + keep * rm[k];
        rv[k] = m * (float)(var[k] * unbias) + keep * rv[k];
    }
}

/* The commit of a bn_stats node that has running statistics. */
static void commit_stats(stg_graph *g, int32_t id, float momentum)
{
    const stg_node *n = &g->nodes[id];
    if (n->nin < 3)
        return;
    const stg_node *x3 = &g->nodes[n->in[0]];
    commit_attr a = {momentum, x3->shape.d[0] * x3->shape.d[2]};
    int32_t in[3] = {n->in[1], id, n->in[2]};
    stg_shape s = g->nodes[n->in[1]].shape;
    stgG_add(g, &stg_op_bn_commit, 3, in, &s, &a);
}

/* ---- batch_norm: (x, stats [, w] [, b]) -> (N, C, S) ---------------------- */

typedef struct bn_attr {
    float eps, momentum;
    int has_w, has_b;
} bn_attr;

static void print_bn(const void *attr, char *buf, size_t len)
{
    const bn_attr *a = attr;
    snprintf(buf, len, "eps=%g momentum=%g%s", (double)a->eps, (double)a->momentum,
             a->has_w || a->has_b ? " affine" : "");
}

static stg_status prepare_planes(stg_prep *cx, stg_pnode *pn)
{
    bn_dims *d = stgP_opdata(cx, pn, sizeof *d);
    if (!d)
        return STG_NOMEM;
    *d = dims_of(pn->node);
    mark_serial(pn, pn->node);
    return STG_OK;
}

STG_CLONES static void affine(int64_t n, const float *restrict x, float a, float b,
                              float *restrict y)
{
    for (int64_t j = 0; j < n; j++)
        y[j] = x[j] * a + b;
}

/* Each thread normalises whole (n, c) planes. */
static void run_bn(const stg_pnode *pn, const stg_step *sx, int tid, int nt)
{
    const bn_dims *d = pn->desc;
    const bn_attr *at = pn->node->attr;
    const float *stats = pn->in[1], *w = at->has_w ? pn->in[2] : NULL;
    const float *b = at->has_b ? pn->in[2 + at->has_w] : NULL;
    int64_t lo, hi;
    (void)sx;
    stgR_share(pn, d->n * d->c, tid, nt, &lo, &hi);
    for (int64_t q = lo; q < hi; q++) {
        int64_t c = q % d->c;
        float inv = inv_std(stats, d->c, c, at->eps);
        float a = w ? w[c] * inv : inv;
        float shift = (b ? b[c] : 0.0f) - stats[c] * a;
        affine(d->s, pn->in[0] + q * d->s, a, shift, pn->out + q * d->s);
    }
}

static double flops_bn(const stg_graph *g, const stg_node *n)
{
    (void)g;
    return 2.0 * (double)stgS_numel(&n->shape);
}

/* ---- the backward nodes ---------------------------------------------------- */

/* bn_grad_reduce: (g, x, stats) -> (2, C): sum g, sum g (x - mean) inv. */
static stg_status prepare_reduce(stg_prep *cx, stg_pnode *pn)
{
    bn_dims *d = stgP_opdata(cx, pn, sizeof *d);
    if (!d)
        return STG_NOMEM;
    *d = dims_of(pn->innode[1]);
    mark_serial(pn, pn->innode[1]);
    return STG_OK;
}

STG_CLONES static float centred_dot(int64_t n, const float *restrict g, const float *restrict x,
                                    float mean)
{
    float acc[16] = {0};
    int64_t j = 0;
    for (; j + 16 <= n; j += 16)
        for (int l = 0; l < 16; l++)
            acc[l] += g[j + l] * (x[j + l] - mean);
    float s = 0.0f;
    for (; j < n; j++)
        s += g[j] * (x[j] - mean);
    for (int l = 0; l < 16; l++)
        s += acc[l];
    return s;
}

static void run_reduce(const stg_pnode *pn, const stg_step *sx, int tid, int nt)
{
    const bn_dims *d = pn->desc;
    const float eps = ((const bn_attr *)pn->node->attr)->eps;
    const float *g = pn->in[0], *x = pn->in[1], *stats = pn->in[2];
    int64_t lo, hi;
    (void)sx;
    stgR_share(pn, d->c, tid, nt, &lo, &hi);
    for (int64_t c = lo; c < hi; c++) {
        double sg = 0.0, sgx = 0.0;
        for (int64_t i = 0; i < d->n; i++) {
            int64_t at = (i * d->c + c) * d->s;
            sg += stgV_sum(d->s, g + at);
            sgx += centred_dot(d->s, g + at, x + at, stats[c]);
        }
        pn->out[c] = (float)sg;
        pn->out[d->c + c] = (float)sgx * inv_std(stats, d->c, c, eps);
    }
}

static double flops_reduce(const stg_graph *g, const stg_node *n)
{
    return 4.0 * (double)stgS_numel(&g->nodes[n->in[0]].shape);
}

STG_CLONES static void grad_x(int64_t n, const float *restrict g, const float *restrict x,
                              float mean, float k, float c1, float c2, float *restrict dx)
{
    for (int64_t j = 0; j < n; j++)
        dx[j] = (g[j] - c1 - (x[j] - mean) * c2) * k;
}

/* bn_grad_x: (g, x, stats, r [, w]) -> dx, whole (n, c) planes per thread. */
static void run_grad_x(const stg_pnode *pn, const stg_step *sx, int tid, int nt)
{
    const bn_dims *d = pn->desc;
    const bn_attr *at = pn->node->attr;
    const float *g = pn->in[0], *x = pn->in[1], *stats = pn->in[2], *r = pn->in[3];
    const float *w = at->has_w ? pn->in[4] : NULL;
    float count = (float)(d->n * d->s);
    int64_t lo, hi;
    (void)sx;
    stgR_share(pn, d->n * d->c, tid, nt, &lo, &hi);
    for (int64_t q = lo; q < hi; q++) {
        int64_t c = q % d->c;
        float inv = inv_std(stats, d->c, c, at->eps);
        float k = w ? w[c] * inv : inv;
        grad_x(d->s, g + q * d->s, x + q * d->s, stats[c], k, r[c] / count,
               r[d->c + c] * inv / count, pn->out + q * d->s);
    }
}

static double flops_grad_x(const stg_graph *g, const stg_node *n)
{
    (void)g;
    return 5.0 * (double)stgS_numel(&n->shape);
}

/* A contiguous (N, C, S) version of t (a view when it already is one). */
static stg_tensor as_ncs(stg_graph *g, stg_tensor t, int64_t n, int64_t c, int64_t s)
{
    stg_tensor r = stg_reshape(g, t, 3, (int64_t[]){n, c, s});
    if (r.id < 0 || stgS_is_contiguous(&g->nodes[r.id].shape, &g->nodes[r.id].lay))
        return r;
    return stgG_add(g, &stg_op_copy, 1, &r.id, &g->nodes[r.id].shape, NULL);
}

/* The row of a (2, C) node as a (C) tensor. */
static stg_tensor row(stg_graph *g, stg_tensor r, int64_t k)
{
    int64_t c = g->nodes[r.id].shape.d[1];
    return stg_reshape(g, stg_slice(g, r, 0, k, k + 1, 1), 1, &c);
}

static void backward_bn(stg_ad *ad, int32_t id, stg_tensor gout)
{
    stg_graph *g = ad->g;
    const stg_node *n = &g->nodes[id];
    bn_attr a = *(const bn_attr *)n->attr;
    int32_t x = n->in[0], stats = n->in[1];
    int32_t w = a.has_w ? n->in[2] : -1, b = a.has_b ? n->in[2 + a.has_w] : -1;
    bool dx = stgD_needs(ad, x), dw = w >= 0 && stgD_needs(ad, w), db = b >= 0 &&
                                                                        stgD_needs(ad, b);
    if (gout.id < 0 || !(dx || dw || db))
        return;
    bn_dims d = dims_of(&g->nodes[x]);
    stg_tensor g3 = as_ncs(g, gout, d.n, d.c, d.s);
    if (g3.id < 0)
        return;
    int32_t rin[3] = {g3.id, x, stats};
    stg_tensor r = stgG_add(g, &stg_op_bn_grad_reduce, 3, rin, &(stg_shape){2, {2, d.c}}, &a);
    if (r.id < 0)
        return;
    if (db)
        stgD_accumulate(ad, b, row(g, r, 0));
    if (dw)
        stgD_accumulate(ad, w, row(g, r, 1));
    if (dx) {
        int32_t in[5] = {g3.id, x, stats, r.id, w};
        stg_shape s = g->nodes[x].shape;
        stgD_accumulate(ad, x, stgG_add(g, &stg_op_bn_grad_x, a.has_w ? 5 : 4, in, &s, &a));
    }
}

/* After the guard: fold the batch's statistics into the running ones. */
static void commit_bn(stg_graph *g, int32_t id)
{
    const stg_node *n = &g->nodes[id];
    commit_stats(g, n->in[1], ((const bn_attr *)n->attr)->momentum);
}

/* ---- builders -------------------------------------------------------------- */

/* A (C) tensor of the right kind, or a message naming it and what it must be. */
static bool channel_vector(stg_graph *g, const char *what, stg_tensor t, int64_t c,
                           const stg_shape *xs, bool stat)
{
    char bx[96], bt[96];
    if (!stgG_check_tensor(g, "batch_norm", t))
        return false;
    const stg_node *n = stgG_node(g, t);
    if (n->shape.nd != 1 || n->shape.d[0] != c) {
        stgG_fail(g, STG_SHAPE, "batch_norm: x %s has %lld channels but %s is %s (must be "
                  "(%lld,))", stgS_str(xs, bx, sizeof bx), (long long)c, what,
                  stgS_str(&n->shape, bt, sizeof bt), (long long)c);
        return false;
    }
    if (stat && n->role != STG_ROLE_STAT) {
        stgG_fail(g, STG_INVALID, "batch_norm: %s must be a running statistic made by stg_stat",
                  what);
        return false;
    }
    return true;
}

STG_API stg_tensor stg_batch_norm(stg_graph *g, stg_tensor x, stg_tensor w, stg_tensor b,
                                  stg_tensor running_mean, stg_tensor running_var,
                                  const stg_batch_norm_params *p)
{
    if (!stgG_ok(g) || !stgG_check_tensor(g, "batch_norm", x))
        return stgG_t(-1);
    stg_batch_norm_params def = {0};
    p = p ? p : &def;
    float eps = p->eps == 0.0f ? 1e-5f : p->eps;
    float momentum = p->momentum == 0.0f ? 0.1f : p->momentum;
    const stg_shape xs = stgG_node(g, x)->shape;
    char bx[96];
    if (xs.nd < 2)
        return stgG_fail(g, STG_SHAPE, "batch_norm: x %s must be (N, C) or (N, C, ...)",
                         stgS_str(&xs, bx, sizeof bx));
    if (!(eps > 0.0f) || !isfinite(eps) || !(momentum > 0.0f && momentum <= 1.0f))
        return stgG_fail(g, STG_INVALID, "batch_norm: eps = %g, momentum = %g (need eps > 0, 0 "
                         "< momentum <= 1)", (double)eps, (double)momentum);
    int64_t n = xs.d[0], c = xs.d[1], s = stgS_numel(&xs) / (n * c);
    bool tracked = running_mean.id >= 0 || running_var.id >= 0;
    if ((w.id >= 0 && !channel_vector(g, "weight", w, c, &xs, false)) ||
        (b.id >= 0 && !channel_vector(g, "bias", b, c, &xs, false)) ||
        (tracked && (!channel_vector(g, "running_mean", running_mean, c, &xs, true) ||
                     !channel_vector(g, "running_var", running_var, c, &xs, true))))
        return stgG_t(-1);
    if (tracked && running_mean.id == running_var.id)
        return stgG_fail(g, STG_INVALID, "batch_norm: running_mean and running_var are the same "
                         "tensor");
    stg_tensor x3 = as_ncs(g, x, n, c, s);
    if (x3.id < 0)
        return x3;
    int32_t sin[3] = {x3.id, running_mean.id, running_var.id};
    stg_tensor stats = stgG_add(g, &stg_op_bn_stats, tracked ? 3 : 1, sin,
                                &(stg_shape){2, {2, c}}, NULL);
    if (stats.id < 0)
        return stats;
    bn_attr a = {eps, momentum, w.id >= 0, b.id >= 0};
    int32_t in[4] = {x3.id, stats.id}, nin = 2;
    if (a.has_w)
        in[nin++] = w.id;
    if (a.has_b)
        in[nin++] = b.id;
    stg_tensor y = stgG_add(g, &stg_op_batch_norm, nin, in, &stgG_node(g, x3)->shape, &a);
    return y.id < 0 ? y : stg_reshape(g, y, xs.nd, xs.d);
}

const stg_op stg_op_bn_stats = {
    .name = "bn_stats",
    .prepare = prepare_stats,
    .run = run_stats,
    .flops = flops_stats,
};
const stg_op stg_op_batch_norm = {
    .name = "batch_norm",
    .attr_size = sizeof(bn_attr),
    .print_attr = print_bn,
    .prepare = prepare_planes,
    .run = run_bn,
    .backward = backward_bn,
    .flops = flops_bn,
    .commit = commit_bn,
};
const stg_op stg_op_bn_grad_reduce = {
    .name = "bn_grad_reduce",
    .attr_size = sizeof(bn_attr),
    .print_attr = print_bn,
    .prepare = prepare_reduce,
    .run = run_reduce,
    .flops = flops_reduce,
};
const stg_op stg_op_bn_grad_x = {
    .name = "bn_grad_x",
    .attr_size = sizeof(bn_attr),
    .print_attr = print_bn,
    .prepare = prepare_planes,
    .run = run_grad_x,
    .flops = flops_grad_x,
};
const stg_op stg_op_bn_commit = {
    .name = "bn_commit",
    .flags = STG_OPF_UPDATE | STG_OPF_EFFECT,
    .attr_size = sizeof(commit_attr),
    .print_attr = print_commit,
    .run = run_commit,
};
