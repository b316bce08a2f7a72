/*
 * Convolutions, as PyTorch's conv1d/conv2d (NCHW; weights (O, C/groups,
 * KH, KW)), lowered to a product:
 *
 *   col = im2col(x)                  (N, C*KH*KW, OH*OW): row (c, kh, kw) holds the
 *                                    input each output position sees through that tap
 *   y   = w (G, O/G, C/G*KH*KW) @ col (N, G, C/G*KH*KW, OH*OW)  -> (N, O, OH, OW)
 *   dcol = w^T @ g, dw = sum over n of g @ col^T   (matmul's own backward)
 *   dx  = col2im(dcol)               every tap's value added back where it was read
 *
 * so the weight and input gradients are ordinary graph nodes, and the
 * product runs through the same GEMM driver, thread split and arena as any
 * matmul.  A 1x1 convolution with stride 1 and no padding needs no im2col:
 * x itself, reshaped, is the column matrix.  conv1d is conv2d with H = 1.
 *
 * col2im gives each thread whole (n, c) planes of dx and adds into each
 * element in one fixed order (kh, kw, oh, ow), so it is deterministic for
 * any thread count.
 */
#include <stdio.h>
#include <string.h>

#include "../op.h"

void stgK_print_window(const void *attr, char *buf, size_t len)
{
    const window_attr *a = attr;
    snprintf(buf, len, "kernel=%lldx%lld stride=%lld,%lld pad=%lld,%lld dilation=%lld,%lld",
             (long long)a->kh, (long long)a->kw, (long long)a->sh, (long long)a->sw,
             (long long)a->ph, (long long)a->pw, (long long)a->dh, (long long)a->dw);
}

/* ---- im2col ---------------------------------------------------------------- */

/* The output columns [*lo, *hi) of a row of 'ow' whose tap (offset 'at'
 * from the window's start, stride 's') lands inside [0, w): the others read
 * padding. */
static inline void inside(int64_t ow, int64_t s, int64_t at, int64_t w, int64_t *lo, int64_t *hi)
{
    /* iw = o s + at in [0, w)  <=>  o in [ceil(-at / s), ceil((w - at) / s)) */
    int64_t a = at >= 0 ? 0 : (-at + s - 1) / s, b = w - at <= 0 ? 0 : (w - at + s - 1) / s;
    *lo = a < ow ? a : ow;
    *hi = b < ow ? b : ow;
    if (*hi < *lo)
        *hi = *lo;
}

/* Thread shares are rows (n, c, kh, kw) of col; x may be a strided view. */
static void run_im2col(const stg_pnode *pn, const stg_step *sx, int tid, int nt)
{
    const window_attr *a = pn->node->attr;
    const int64_t *xs = pn->innode[0]->lay.st;
    int64_t rows_per_n = a->c * a->kh * a->kw, plane = a->oh * a->ow, lo, hi;
    (void)sx;
    stgR_share(pn, pn->node->shape.d[0] * rows_per_n, tid, nt, &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        int64_t n = r / rows_per_n, k = r % rows_per_n;
        int64_t c = k / (a->kh * a->kw), i = k / a->kw % a->kh, j = k % a->kw;
        const float *x = pn->in[0] + n * xs[0] + c * xs[1];
        float *out = pn->out + r * plane;
        int64_t at = j * a->dw - a->pw, o0, o1;
        inside(a->ow, a->sw, at, a->w, &o0, &o1);
        for (int64_t oh = 0; oh < a->oh; oh++) {
            int64_t ih = oh * a->sh - a->ph + i * a->dh;
            float *o = out + oh * a->ow;
            if (ih < 0 || ih >= a->h) {
                memset(o, 0, (size_t)a->ow * sizeof(float));
                continue;
            }
            const float *xr = x + ih * xs[2] + at * xs[3];
            int64_t step = a->sw * xs[3];
            for (int64_t ow = 0; ow < o0; ow++)
                o[ow] = 0.0f;
            if (step == 1)
                memcpy(o + o0, xr + o0, (size_t)(o1 - o0) * sizeof(float));
            else
                for (int64_t ow = o0; ow < o1; ow++)
                    o[ow] = xr[ow * step];
            for (int64_t ow = o1; ow < a->ow; ow++)
                o[ow] = 0.0f;
        }
    }
}

/* col2im: dx planes (n, c), each summed in a fixed order. */
static void run_col2im(const stg_pnode *pn, const stg_step *sx, int tid, int nt)
{
    const window_attr *a = pn->node->attr;
    const int64_t *gs = pn->innode[0]->lay.st; /* dcol (N, C*KH*KW, OH*OW), maybe a view */
    int64_t planes = pn->node->shape.d[0] * a->c, lo, hi;
    (void)sx;
    stgR_share(pn, planes, tid, nt, &lo, &hi);
    for (int64_t q = lo; q < hi; q++) {
        int64_t n = q / a->c, c = q % a->c;
        float *dx = pn->out + q * a->h * a->w;
        memset(dx, 0, (size_t)(a->h * a->w) * sizeof(float));
        for (int64_t i = 0; i < a->kh; i++)
            for (int64_t j = 0; j < a->kw; j++) {
                int64_t row = (c * a->kh + i) * a->kw + j, at = j * a->dw - a->pw, o0, o1;
                const float *g = pn->in[0] + n * gs[0] + row * gs[1];
                inside(a->ow, a->sw, at, a->w, &o0, &o1);
                for (int64_t oh = 0; oh < a->oh; oh++) {
                    int64_t ih = oh * a->sh - a->ph + i * a->dh;
                    if (ih < 0 || ih >= a->h)
                        continue;
                    float *d = dx + ih * a->w + at;
                    const float *gr = g + oh * a->ow * gs[2];
                    if (a->sw == 1 && gs[2] == 1)
                        for (int64_t ow = o0; ow < o1; ow++)
                            d[ow] += gr[ow];
                    else
                        for (int64_t ow = o0; ow < o1; ow++)
                            d[ow * a->sw] += gr[ow * gs[2]];
                }
            }
    }
}

static stg_tensor im2col(stg_graph *g, stg_tensor x, const window_attr *a)
{
    stg_shape s = {3, {stgG_node(g, x)->shape.d[0], a->c * a->kh * a->kw, a->oh * a->ow}};
    return stgG_add(g, &stg_op_im2col, 1, &x.id, &s, a);
}

static stg_tensor col2im(stg_graph *g, stg_tensor col, const window_attr *a)
{
    stg_shape s = {4, {stgG_node(g, col)->shape.d[0], a->c, a->h, a->w}};
    return stgG_add(g, &stg_op_col2im, 1, &col.id, &s, a);
}

static void backward_im2col(stg_ad *ad, int32_t id, stg_tensor gout)
{
    const stg_node *n = &ad->g->nodes[id];
    int32_t x = n->in[0];
    window_attr a = *(const window_attr *)n->attr;
    if (stgD_needs(ad, x) && gout.id >= 0) {
        stg_tensor dx = col2im(ad->g, gout, &a);
        const stg_shape *xs = &ad->g->nodes[x].shape; /* conv1d's x is 3-d */
        stgD_accumulate(ad, x, stg_reshape(ad->g, dx, xs->nd, xs->d));
    }
}

/* col2im is linear; its adjoint is im2col (for a gradient of a gradient). */
static void backward_col2im(stg_ad *ad, int32_t id, stg_tensor gout)
{
    const stg_node *n = &ad->g->nodes[id];
    int32_t col = n->in[0];
    window_attr a = *(const window_attr *)n->attr;
    if (stgD_needs(ad, col) && gout.id >= 0)
        stgD_accumulate(ad, col, im2col(ad->g, gout, &a));
}

static double flops_col2im(const stg_graph *g, const stg_node *n)
{
    return (double)stgS_numel(&g->nodes[n->in[0]].shape); /* one add per tap */
}

/* ---- builders -------------------------------------------------------------- */

bool stgK_window(stg_graph *g, const char *op, const stg_shape *shown, int dims,
                 const stg_shape *xs, const int64_t k[2], const int64_t stride[2],
                 const int64_t pad[2], const int64_t dil[2], window_attr *a)
{
    char bx[96];
    stgS_str(shown, bx, sizeof bx);
    *a = (window_attr){.c = xs->d[1], .h = xs->d[2], .w = xs->d[3], .kh = k[0], .kw = k[1],
                       .sh = stride[0], .sw = stride[1], .ph = pad[0], .pw = pad[1],
                       .dh = dil[0], .dw = dil[1]};
    const char *axis[2] = {"H", dims == 1 ? "L" : "W"};
    int64_t in[2] = {a->h, a->w}, out[2];
    for (int d = 2 - dims; d < 2; d++) {
        if (k[d] < 1 || stride[d] < 1 || dil[d] < 1 || pad[d] < 0 || k[d] > STG_MAX_NUMEL ||
            stride[d] > STG_MAX_NUMEL || dil[d] > STG_MAX_NUMEL || pad[d] > STG_MAX_NUMEL) {
            stgG_fail(g, STG_INVALID, "%s: x %s: kernel %lld, stride %lld, padding %lld and "
                      "dilation %lld along %s (kernel, stride and dilation must be >= 1, "
                      "padding >= 0)", op, bx, (long long)k[d], (long long)stride[d],
                      (long long)pad[d], (long long)dil[d], axis[d]);
            return false;
        }
        int64_t reach = dil[d] * (k[d] - 1) + 1, padded = in[d] + 2 * pad[d];
        if (reach > padded) {
            stgG_fail(g, STG_SHAPE, "%s: x %s: the kernel reaches %lld along %s (dilation %lld "
                      "x (kernel %lld - 1) + 1) but the padded input is %lld (%lld + 2 x %lld)",
                      op, bx, (long long)reach, axis[d], (long long)dil[d], (long long)k[d],
                      (long long)padded, (long long)in[d], (long long)pad[d]);
            return false;
        }
        out[d] = (padded - reach) / stride[d] + 1;
    }
    if (dims == 1)
        out[0] = 1;
    a->oh = out[0];
    a->ow = out[1];
    return true;
}

/* The (h, w) pairs of conv2d from 'p' (NULL or 0 entries: defaults). */
static void conv_pairs(const stg_conv_params *p, int dims, int64_t stride[2], int64_t pad[2],
                       int64_t dil[2], int64_t *groups)
{
    for (int d = 0; d < 2; d++) {
        int from = dims == 1 ? 0 : d; /* conv1d: element 0 is its one axis, W */
        bool used = dims == 2 || d == 1;
        stride[d] = used && p && p->stride[from] ? p->stride[from] : 1;
        pad[d] = used && p ? p->padding[from] : 0;
        dil[d] = used && p && p->dilation[from] ? p->dilation[from] : 1;
    }
    *groups = p && p->groups ? p->groups : 1;
}

static stg_tensor conv(stg_graph *g, const char *op, int dims, stg_tensor x, stg_tensor w,
                       stg_tensor b, const stg_conv_params *p)
{
    if (!stgG_ok(g) || !stgG_check_tensor(g, op, x) || !stgG_check_tensor(g, op, w) ||
        (b.id >= 0 && !stgG_check_tensor(g, op, b)))
        return stgG_t(-1);
    stg_shape xs = stgG_node(g, x)->shape, ws = stgG_node(g, w)->shape;
    char bx[96], bw[96], bb[96];
    stgS_str(&xs, bx, sizeof bx);
    stgS_str(&ws, bw, sizeof bw);
    if (xs.nd != dims + 2 || ws.nd != dims + 2)
        return stgG_fail(g, STG_SHAPE, "%s: x %s and w %s must both have %d dims (x: N, C, %s; "
                         "w: O, C/groups, %s)", op, bx, bw, dims + 2, dims == 2 ? "H, W" : "L",
                         dims == 2 ? "KH, KW" : "K");
    int64_t stride[2], pad[2], dil[2], groups;
    conv_pairs(p, dims, stride, pad, dil, &groups);
    int64_t n = xs.d[0], c = xs.d[1], o = ws.d[0];
    if (groups < 1 || c % groups || o % groups || ws.d[1] * groups != c)
        return stgG_fail(g, STG_SHAPE, "%s: x %s, w %s, groups %lld: the channels (%lld) and the "
                         "filters (%lld) must divide by groups, and w's dim 1 (%lld) must be "
                         "channels / groups", op, bx, bw, (long long)groups, (long long)c,
                         (long long)o, (long long)ws.d[1]);
    if (b.id >= 0) {
        const stg_shape *bs = &stgG_node(g, b)->shape;
        if (bs->nd != 1 || bs->d[0] != o)
            return stgG_fail(g, STG_SHAPE, "%s: bias %s must be (%lld,), one per filter of w %s",
                             op, stgS_str(bs, bb, sizeof bb), (long long)o, bw);
    }
    /* as 2-d: (N, C, 1, L) and (O, C/G, 1, K) */
    stg_shape x4 = xs, w4 = ws;
    if (dims == 1) {
        x4 = (stg_shape){4, {n, c, 1, xs.d[2]}};
        w4 = (stg_shape){4, {o, ws.d[1], 1, ws.d[2]}};
    }
    int64_t k[2] = {w4.d[2], w4.d[3]};
    window_attr a;
    if (!stgK_window(g, op, &xs, dims, &x4, k, stride, pad, dil, &a))
        return stgG_t(-1);
    int64_t taps = c / groups * k[0] * k[1], plane = a.oh * a.ow;
    if (!stgS_numel_ok(&(stg_shape){3, {n, c * k[0] * k[1], plane}}))
        return stgG_fail(g, STG_SHAPE, "%s: x %s, w %s: the column matrix would have more than "
                         "2^40 elements", op, bx, bw);
    stg_tensor col;
    bool direct = k[0] == 1 && k[1] == 1 && stride[0] == 1 && stride[1] == 1 && pad[0] == 0 &&
                  pad[1] == 0;
    if (direct) { /* x is its own column matrix */
        col = stg_reshape(g, x, 3, (int64_t[]){n, c, plane});
    } else {
        stg_tensor x4t = dims == 1 ? stg_reshape(g, x, 4, x4.d) : x;
        col = im2col(g, x4t, &a);
    }
    stg_tensor colg = stg_reshape(g, col, 4, (int64_t[]){n, groups, taps, plane});
    stg_tensor wg = stg_reshape(g, w, 3, (int64_t[]){groups, o / groups, taps});
    stg_tensor y = stg_matmul(g, wg, colg); /* (N, G, O/G, OH*OW) */
    y = dims == 2 ? stg_reshape(g, y, 4, (int64_t[]){n, o, a.oh, a.ow})
                  : stg_reshape(g, y, 3, (int64_t[]){n, o, a.ow});
    if (b.id >= 0)
        y = stg_add(g, y, dims == 2 ? stg_reshape(g, b, 3, (int64_t[]){o, 1, 1})
                                    : stg_reshape(g, b, 2, (int64_t[]){o, 1}));
    return y;
}

STG_API stg_tensor stg_conv2d(stg_graph *g, stg_tensor x, stg_tensor w, stg_tensor b,
                              const stg_conv_params *p)
{
    return conv(g, "conv2d", 2, x, w, b, p);
}

STG_API stg_tensor stg_conv1d(stg_graph *g, stg_tensor x, stg_tensor w, stg_tensor b,
                              const stg_conv_params *p)
{
    return conv(g, "conv1d", 1, x, w, b, p);
}

const stg_op stg_op_im2col = {
    .name = "im2col",
    .attr_size = sizeof(window_attr),
    .print_attr = stgK_print_window,
    .run = run_im2col,
    .backward = backward_im2col,
};
const stg_op stg_op_col2im = {
    .name = "col2im",
    .attr_size = sizeof(window_attr),
    .print_attr = stgK_print_window,
    .run = run_col2im,
    .backward = backward_col2im,
    .flops = flops_col2im,
};
