/*
 * Pooling, as PyTorch's max_pool1d/2d and avg_pool1d/2d (ceil_mode off,
 * avg with count_include_pad on), over (N, C, H, W) planes (the 1-d forms
 * with H = 1):
 *
 *   y = max_pool(x)   dx = max_pool_grad(g, x): g added at each window's arg-max
 *   y = avg_pool(x)   dx = avg_pool_grad(g):    g / window size added over the window
 *
 * The arg-max is found again in the backward pass, by the same scan as the
 * forward one, rather than kept: an index tensor would cost more arena than
 * the rescan costs time.  Both gradients give each thread whole (n, c)
 * planes of dx and add in one fixed order, so they are deterministic.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../op.h"

/* The window of output (oh, ow), clipped to the plane: rows [h0, h1),
 * columns [w0, w1); and its size before clipping to the plane but after
 * clipping to the padded plane, which is avg_pool's divisor. */
typedef struct span {
    int64_t h0, h1, w0, w1, size;
} span;

static span window_at(const window_attr *a, int64_t oh, int64_t ow)
{
    int64_t h0 = oh * a->sh - a->ph, w0 = ow * a->sw - a->pw;
    int64_t h1 = h0 + a->kh, w1 = w0 + a->kw;
    int64_t hp = h1 < a->h + a->ph ? h1 : a->h + a->ph, wp = w1 < a->w + a->pw ? w1 : a->w + a->pw;
    span s = {h0 < 0 ? 0 : h0, h1 < a->h ? h1 : a->h, w0 < 0 ? 0 : w0, w1 < a->w ? w1 : a->w,
              (hp - h0) * (wp - w0)};
    return s;
}

/* The arg-max of one window of plane x (row stride xs2, column stride xs3)
 * as PyTorch's CPU kernel finds it: the first greatest value in row-major
 * order, or the last NaN; the window's first element if all are -inf.
 * Written with selects and masks, not branches: which value wins is as
 * random as the data, and mispredicted branches cost more than the loads. */
static inline int64_t argmax(const float *x, int64_t xs2, int64_t xs3, int64_t w, span s,
                             float *max)
{
    if (s.h1 - s.h0 == 2 && s.w1 - s.w0 == 2) { /* the common window, unrolled */
        const float *p = x + s.h0 * xs2 + s.w0 * xs3;
        float v[4] = {p[0], p[xs3], p[xs2], p[xs2 + xs3]}, m = v[0];
        int k = 0;
        for (int i = 1; i < 4; i++) {
            k = v[i] > m ? i : k;
            m = v[i] > m ? v[i] : m;
        }
        int nan = v[3] != v[3] ? 3 : v[2] != v[2] ? 2 : v[1] != v[1] ? 1 : v[0] != v[0] ? 0 : -1;
        *max = nan >= 0 ? NAN : m;
        k = nan >= 0 ? nan : k;
        return (s.h0 + k / 2) * w + s.w0 + k % 2;
    }
    int64_t best = s.h0 * w + s.w0, nan_at = 0, any_nan = 0;
    float m = -INFINITY;
    for (int64_t h = s.h0; h < s.h1; h++)
        for (int64_t c = s.w0; c < s.w1; c++) {
            float v = x[h * xs2 + c * xs3];
            int64_t idx = h * w + c, more = -(int64_t)(v > m), nan = -(int64_t)(v != v);
            m = v > m ? v : m;
            best = (best & ~more) | (idx & more);
            nan_at = (nan_at & ~nan) | (idx & nan);
            any_nan |= nan;
        }
    *max = any_nan ? NAN : m;
    return any_nan ? nan_at : best;
}

/* The greatest value of one window, NaN if it holds one. */
static inline float window_max(const float *x, int64_t xs2, int64_t xs3, span s)
{
    if (s.h1 - s.h0 == 2 && s.w1 - s.w0 == 2) { /* the common window, unrolled */
        const float *p = x + s.h0 * xs2 + s.w0 * xs3;
        float v0 = p[0], v1 = p[xs3], v2 = p[xs2], v3 = p[xs2 + xs3];
        float m01 = v1 > v0 ? v1 : v0, m23 = v3 > v2 ? v3 : v2, m = m23 > m01 ? m23 : m01;
        return ((v0 != v0) | (v1 != v1) | (v2 != v2) | (v3 != v3)) ? NAN : m;
    }
    float m = -INFINITY;
    int any_nan = 0;
    for (int64_t h = s.h0; h < s.h1; h++)
        for (int64_t c = s.w0; c < s.w1; c++) {
            float v = x[h * xs2 + c * xs3];
            m = v > m ? v : m;
            any_nan |= v != v;
        }
    return any_nan ? NAN : m;
}

/* One (n, c) plane of a pooling kernel: in[j] is input j's plane, read
 * with its row and column strides st[j][0], st[j][1]; out is the node's
 * (contiguous) plane. */
typedef void plane_fn(const window_attr *a, const float *const *in, const int64_t (*st)[2],
                      float *out);

/* Runs 'fn' on this thread's share of the node's (n, c) planes; inputs may
 * be strided views. */
static void each_plane(const stg_pnode *pn, int tid, int nt, plane_fn *fn)
{
    const window_attr *a = pn->node->attr;
    int nin = pn->node->nin;
    int64_t st[2][2], plane = pn->node->shape.d[2] * pn->node->shape.d[3], lo, hi;
    for (int j = 0; j < nin; j++) {
        st[j][0] = pn->innode[j]->lay.st[2];
        st[j][1] = pn->innode[j]->lay.st[3];
    }
    stgR_share(pn, pn->node->shape.d[0] * a->c, tid, nt, &lo, &hi);
    for (int64_t q = lo; q < hi; q++) {
        const float *in[2];
        for (int j = 0; j < nin; j++)
            in[j] = pn->in[j] + q / a->c * pn->innode[j]->lay.st[0] +
                    q % a->c * pn->innode[j]->lay.st[1];
        fn(a, in, (const int64_t(*)[2])st, pn->out + q * plane);
    }
}

static void max_plane(const window_attr *a, const float *const *in, const int64_t (*st)[2],
                      float *y)
{
    for (int64_t oh = 0; oh < a->oh; oh++)
        for (int64_t ow = 0; ow < a->ow; ow++)
            y[oh * a->ow + ow] = window_max(in[0], st[0][0], st[0][1], window_at(a, oh, ow));
}

/* inputs: g (the output's gradient), x */
static void max_grad_plane(const window_attr *a, const float *const *in, const int64_t (*st)[2],
                           float *dx)
{
    float m;
    memset(dx, 0, (size_t)(a->h * a->w) * sizeof(float));
    for (int64_t oh = 0; oh < a->oh; oh++)
        for (int64_t ow = 0; ow < a->ow; ow++)
            dx[argmax(in[1], st[1][0], st[1][1], a->w, window_at(a, oh, ow), &m)] +=
                in[0][oh * st[0][0] + ow * st[0][1]];
}

static void avg_plane(const window_attr *a, const float *const *in, const int64_t (*st)[2],
                      float *y)
{
    for (int64_t oh = 0; oh < a->oh; oh++)
        for (int64_t ow = 0; ow < a->ow; ow++) {
            span s = window_at(a, oh, ow);
            float sum = 0.0f;
            for (int64_t h = s.h0; h < s.h1; h++)
                for (int64_t w = s.w0; w < s.w1; w++)
                    sum += in[0][h * st[0][0] + w * st[0][1]];
            y[oh * a->ow + ow] = sum / (float)s.size;
        }
}

static void avg_grad_plane(const window_attr *a, const float *const *in, const int64_t (*st)[2],
                           float *dx)
{
    memset(dx, 0, (size_t)(a->h * a->w) * sizeof(float));
    for (int64_t oh = 0; oh < a->oh; oh++)
        for (int64_t ow = 0; ow < a->ow; ow++) {
            span s = window_at(a, oh, ow);
            float share = in[0][oh * st[0][0] + ow * st[0][1]] / (float)s.size;
            for (int64_t h = s.h0; h < s.h1; h++)
                for (int64_t w = s.w0; w < s.w1; w++)
                    dx[h * a->w + w] += share;
        }
}

static void run_max_pool(const stg_pnode *pn, const stg_step *sx, int tid, int nt)
{
    (void)sx;
    each_plane(pn, tid, nt, max_plane);
}

static void run_max_pool_grad(const stg_pnode *pn, const stg_step *sx, int tid, int nt)
{
    (void)sx;
    each_plane(pn, tid, nt, max_grad_plane);
}

static void run_avg_pool(const stg_pnode *pn, const stg_step *sx, int tid, int nt)
{
    (void)sx;
    each_plane(pn, tid, nt, avg_plane);
}

static void run_avg_pool_grad(const stg_pnode *pn, const stg_step *sx, int tid, int nt)
{
    (void)sx;
    each_plane(pn, tid, nt, avg_grad_plane);
}

/* ---- backward rules and builders ------------------------------------------ */

static stg_shape plane_shape(const stg_graph *g, int32_t x, const window_attr *a)
{
    return (stg_shape){4, {g->nodes[x].shape.d[0], a->c, a->h, a->w}};
}

static void backward_max_pool(stg_ad *ad, int32_t id, stg_tensor gout)
{
    const stg_node *n = &ad->g->nodes[id];
    int32_t x = n->in[0], in[2] = {gout.id, x};
    window_attr a = *(const window_attr *)n->attr;
    if (!stgD_needs(ad, x) || gout.id < 0)
        return;
    stg_shape s = plane_shape(ad->g, x, &a);
    stgD_accumulate(ad, x, stgG_add(ad->g, &stg_op_max_pool_grad, 2, in, &s, &a));
}

static void backward_avg_pool(stg_ad *ad, int32_t id, stg_tensor gout)
{
    const stg_node *n = &ad->g->nodes[id];
    int32_t x = n->in[0];
    window_attr a = *(const window_attr *)n->attr;
    if (!stgD_needs(ad, x) || gout.id < 0)
        return;
    stg_shape s = plane_shape(ad->g, x, &a);
    stgD_accumulate(ad, x, stgG_add(ad->g, &stg_op_avg_pool_grad, 1, &gout.id, &s, &a));
}

static double flops_window(const stg_graph *g, const stg_node *n)
{
    const window_attr *a = n->attr;
    (void)g; /* one operation per tap of every window */
    return (double)(n->shape.d[0] * a->c) * (double)(a->oh * a->ow) * (double)(a->kh * a->kw);
}

static stg_tensor pool(stg_graph *g, const stg_op *op, const char *name, int dims, stg_tensor x,
                       const stg_pool_params *p)
{
    if (!stgG_ok(g) || !stgG_check_tensor(g, name, x))
        return stgG_t(-1);
    const stg_shape xs = stgG_node(g, x)->shape;
    char bx[96];
    stgS_str(&xs, bx, sizeof bx);
    if (!p)
        return stgG_fail(g, STG_INVALID, "%s: x %s: the parameters are NULL (a kernel size is "
                         "needed)", name, bx);
    if (xs.nd != dims + 2)
        return stgG_fail(g, STG_SHAPE, "%s: x %s must have %d dims (N, C, %s)", name, bx,
                         dims + 2, dims == 2 ? "H, W" : "L");
    int64_t k[2], stride[2], pad[2], dil[2] = {1, 1};
    for (int d = 0; d < 2; d++) {
        int from = dims == 1 ? 0 : d;
        bool used = dims == 2 || d == 1;
        k[d] = used ? p->kernel[from] : 1;
        stride[d] = used ? (p->stride[from] ? p->stride[from] : k[d]) : 1;
        pad[d] = used ? p->padding[from] : 0;
        if (used && k[d] >= 1 && pad[d] > k[d] / 2)
            return stgG_fail(g, STG_INVALID, "%s: x %s: padding %lld is more than half the kernel "
                             "%lld", name, bx, (long long)pad[d], (long long)k[d]);
    }
    stg_shape x4 = dims == 2 ? xs : (stg_shape){4, {xs.d[0], xs.d[1], 1, xs.d[2]}};
    window_attr a;
    if (!stgK_window(g, name, &xs, dims, &x4, k, stride, pad, dil, &a))
        return stgG_t(-1);
    stg_tensor x4t = dims == 2 ? x : stg_reshape(g, x, 4, x4.d);
    stg_shape ys = {4, {xs.d[0], xs.d[1], a.oh, a.ow}};
    stg_tensor y = stgG_add(g, op, 1, &x4t.id, &ys, &a);
    return dims == 2 ? y : stg_reshape(g, y, 3, (int64_t[]){xs.d[0], xs.d[1], a.ow});
}

STG_API stg_tensor stg_max_pool2d(stg_graph *g, stg_tensor x, const stg_pool_params *p)
{
    return pool(g, &stg_op_max_pool, "max_pool2d", 2, x, p);
}

STG_API stg_tensor stg_avg_pool2d(stg_graph *g, stg_tensor x, const stg_pool_params *p)
{
    return pool(g, &stg_op_avg_pool, "avg_pool2d", 2, x, p);
}

STG_API stg_tensor stg_max_pool1d(stg_graph *g, stg_tensor x, const stg_pool_params *p)
{
    return pool(g, &stg_op_max_pool, "max_pool1d", 1, x, p);
}

STG_API stg_tensor stg_avg_pool1d(stg_graph *g, stg_tensor x, const stg_pool_params *p)
{
    return pool(g, &stg_op_avg_pool, "avg_pool1d", 1, x, p);
}

STG_API stg_tensor stg_global_avg_pool(stg_graph *g, stg_tensor x)
{
    if (!stgG_ok(g) || !stgG_check_tensor(g, "global_avg_pool", x))
        return stgG_t(-1);
    const stg_shape *xs = &stgG_node(g, x)->shape;
    if (xs->nd < 3) {
        char bx[96];
        return stgG_fail(g, STG_SHAPE, "global_avg_pool: x %s must have at least 3 dims (N, C, "
                         "then the axes averaged)", stgS_str(xs, bx, sizeof bx));
    }
    int axes[STG_MAX_DIMS], n = 0;
    for (int i = 2; i < xs->nd; i++)
        axes[n++] = i;
    return stg_mean(g, x, n, axes, 1);
}

const stg_op stg_op_max_pool = {
    .name = "max_pool",
    .attr_size = sizeof(window_attr),
    .print_attr = stgK_print_window,
    .run = run_max_pool,
    .backward = backward_max_pool,
    .flops = flops_window,
};
const stg_op stg_op_max_pool_grad = {
    .name = "max_pool_grad",
    .attr_size = sizeof(window_attr),
    .print_attr = stgK_print_window,
    .run = run_max_pool_grad,
    .flops = flops_window,
};
const stg_op stg_op_avg_pool = {
    .name = "avg_pool",
    .attr_size = sizeof(window_attr),
    .print_attr = stgK_print_window,
    .run = run_avg_pool,
    .backward = backward_avg_pool,
    .flops = flops_window,
};
const stg_op stg_op_avg_pool_grad = {
    .name = "avg_pool_grad",
    .attr_size = sizeof(window_attr),
    .print_attr = stgK_print_window,
    .run = run_avg_pool_grad,
    .flops = flops_window,
};
