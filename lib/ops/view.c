/*
 * Views and copies.  A view has no kernel: it reads its input's buffer
 * through a different shape and strides, fixed when the graph is built.
 *
 *   y = reshape(x, s)        dx = reshape(g, shape(x))
 *   y = transpose(x, p)      dx = transpose(g, inverse(p))
 *   y = broadcast_to(x, s)   dx = sum_to(g, shape(x))
 *   y = copy(x)              dx = g        (materialises a strided view)
 */
#include <stdio.h>
#include <string.h>

#include "../op.h"

static stg_tensor copy(stg_graph *g, stg_tensor a)
{
    return stgG_add(g, &stg_op_copy, 1, &a.id, &stgG_node(g, a)->shape, NULL);
}

stg_tensor stgK_contiguous(stg_graph *g, stg_tensor t)
{
    const stg_node *n = stgG_node(g, t);
    if (stgS_is_contiguous(&n->shape, &n->lay))
        return t;
    return copy(g, t);
}

STG_API stg_tensor stg_reshape(stg_graph *g, stg_tensor a, int ndim, const int64_t *dims)
{
    if (!stgG_ok(g) || !stgG_check_tensor(g, "reshape", a))
        return stgG_t(-1);
    const stg_node *x = stgG_node(g, a);
    char bx[96], bt[96], what[128];
    snprintf(what, sizeof what, "reshape: a %s to target", stgS_str(&x->shape, bx, sizeof bx));
    stg_shape s;
    if (!stgG_dims(g, what, ndim, dims, &s))
        return stgG_t(-1);
    if (stgS_numel(&s) != stgS_numel(&x->shape))
        return stgG_fail(g, STG_SHAPE,
                         "reshape: a %s has %lld elements but the target %s has %lld",
                         stgS_str(&x->shape, bx, sizeof bx), (long long)stgS_numel(&x->shape),
                         stgS_str(&s, bt, sizeof bt), (long long)stgS_numel(&s));
    /* A view is a node of its own even when nothing changes, so that a
     * gradient asked for on it is the gradient through it (retain_grad). */
    if (stgS_equal(&s, &x->shape))
        return stgG_add_view(g, &stg_op_reshape, a.id, &s, &x->lay, NULL);
    if (!stgS_is_contiguous(&x->shape, &x->lay)) {
        a = copy(g, a);
        if (a.id < 0)
            return a;
        x = stgG_node(g, a);
    }
    stg_layout lay;
    stgS_contiguous(&s, &lay);
    lay.off = x->lay.off;
    return stgG_add_view(g, &stg_op_reshape, a.id, &s, &lay, NULL);
}

STG_API stg_tensor stg_flatten(stg_graph *g, stg_tensor a, int start, int end)
{
    if (!stgG_ok(g) || !stgG_check_tensor(g, "flatten", a))
        return stgG_t(-1);
    const stg_shape *s = &stgG_node(g, a)->shape;
    if (s->nd == 0) /* as PyTorch: a scalar becomes one element */
        return stg_reshape(g, a, 1, (int64_t[]){1});
    int lo = stgS_axis(start, s->nd), hi = stgS_axis(end, s->nd);
    char bx[96];
    if (lo < 0 || hi < 0 || lo > hi)
        return stgG_fail(g, STG_SHAPE, "flatten: a %s: start %d and end %d must be axes with "
                         "start <= end (after counting negatives from the end)",
                         stgS_str(s, bx, sizeof bx), start, end);
    int64_t d[STG_MAX_DIMS];
    int nd = 0;
    for (int i = 0; i < s->nd; i++) {
        if (i <= lo || i > hi)
            d[nd++] = s->d[i];
        else
            d[nd - 1] *= s->d[i];
    }
    return stg_reshape(g, a, nd, d);
}

/* The input axis each output axis reads. */
typedef struct transpose_attr {
    int nd;
    int perm[STG_MAX_DIMS];
} transpose_attr;

static void print_transpose(const void *attr, char *buf, size_t len)
{
    const transpose_attr *at = attr;
    size_t used = (size_t)snprintf(buf, len, "perm=");
    for (int i = 0; i < at->nd && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, "%s%d", i ? "," : "", at->perm[i]);
}

STG_API stg_tensor stg_transpose(stg_graph *g, stg_tensor a, const int *perm)
{
    if (!stgG_ok(g) || !stgG_check_tensor(g, "transpose", a))
        return stgG_t(-1);
    const stg_node *x = stgG_node(g, a);
    int nd = x->shape.nd;
    unsigned seen = 0;
    char bx[96];
    if (nd > 0 && !perm)
        return stgG_fail(g, STG_INVALID, "transpose: perm is NULL");
    for (int i = 0; i < nd; i++) {
        if (perm[i] < 0 || perm[i] >= nd || (seen & (1u << perm[i])))
            return stgG_fail(g, STG_SHAPE,
                             "transpose: a %s: perm[%d] = %d (perm must list each of 0..%d once)",
                             stgS_str(&x->shape, bx, sizeof bx), i, perm[i], nd - 1);
        seen |= 1u << perm[i];
    }
    stg_shape s = {.nd = nd};
    stg_layout lay = {.off = x->lay.off};
    transpose_attr attr = {.nd = nd};
    for (int i = 0; i < nd; i++) {
        s.d[i] = x->shape.d[perm[i]];
        lay.st[i] = x->lay.st[perm[i]];
        attr.perm[i] = perm[i];
    }
    return stgG_add_view(g, &stg_op_transpose, a.id, &s, &lay, &attr);
}

STG_API stg_tensor stg_swapaxes(stg_graph *g, stg_tensor a, int axis1, int axis2)
{
    if (!stgG_ok(g) || !stgG_check_tensor(g, "swapaxes", a))
        return stgG_t(-1);
    const stg_node *x = stgG_node(g, a);
    int nd = x->shape.nd, i = stgS_axis(axis1, nd), j = stgS_axis(axis2, nd);
    char bx[96];
    if (i < 0 || j < 0)
        return stgG_fail(g, STG_SHAPE, "swapaxes: a %s: axes %d and %d (each must be in [%d, %d])",
                         stgS_str(&x->shape, bx, sizeof bx), axis1, axis2, -nd, nd - 1);
    int perm[STG_MAX_DIMS];
    for (int k = 0; k < nd; k++)
        perm[k] = k;
    perm[i] = j;
    perm[j] = i;
    return stg_transpose(g, a, perm);
}

STG_API stg_tensor stg_broadcast_to(stg_graph *g, stg_tensor a, int ndim, const int64_t *dims)
{
    if (!stgG_ok(g) || !stgG_check_tensor(g, "broadcast_to", a))
        return stgG_t(-1);
    const stg_node *x = stgG_node(g, a);
    char bx[96], bt[96], what[128];
    snprintf(what, sizeof what, "broadcast_to: a %s to target", stgS_str(&x->shape, bx, sizeof bx));
    stg_shape s, b;
    if (!stgG_dims(g, what, ndim, dims, &s))
        return stgG_t(-1);
    if (ndim < x->shape.nd)
        return stgG_fail(g, STG_SHAPE, "broadcast_to: a %s to %d dims (need at least %d)",
                         bx, ndim, x->shape.nd);
    if (!stgS_broadcast(&x->shape, &s, &b) || !stgS_equal(&b, &s))
        return stgG_fail(g, STG_SHAPE,
                         "broadcast_to: a %s cannot broadcast to %s (each dim of a must be 1 or "
                         "equal the target's, aligned from the right)",
                         stgS_str(&x->shape, bx, sizeof bx), stgS_str(&s, bt, sizeof bt));
    stg_layout lay = {.off = x->lay.off};
    stgS_broadcast_strides(&x->shape, &x->lay, &s, lay.st);
    return stgG_add_view(g, &stg_op_broadcast_to, a.id, &s, &lay, NULL);
}

/* The same data with no gradient flowing back (a view without a backward rule). */
STG_API stg_tensor stg_detach(stg_graph *g, stg_tensor a)
{
    if (!stgG_ok(g) || !stgG_check_tensor(g, "detach", a))
        return stgG_t(-1);
    const stg_node *x = stgG_node(g, a);
    stg_layout lay = x->lay;
    stg_shape s = x->shape;
    return stgG_add_view(g, &stg_op_detach, a.id, &s, &lay, NULL);
}

/* ---- backward rules ----------------------------------------------------- */

static void backward_reshape(stg_ad *ad, int32_t id, stg_tensor g)
{
    const stg_node *x = &ad->g->nodes[ad->g->nodes[id].in[0]];
    stgD_accumulate(ad, ad->g->nodes[id].in[0], stg_reshape(ad->g, g, x->shape.nd, x->shape.d));
}

static void backward_transpose(stg_ad *ad, int32_t id, stg_tensor g)
{
    const stg_node *n = &ad->g->nodes[id];
    int inv[STG_MAX_DIMS];
    int32_t x = n->in[0];
    for (int i = 0; i < n->shape.nd; i++)
        inv[((const transpose_attr *)n->attr)->perm[i]] = i;
    stgD_accumulate(ad, x, stg_transpose(ad->g, g, inv));
}

static void backward_broadcast_to(stg_ad *ad, int32_t id, stg_tensor g)
{
    int32_t x = ad->g->nodes[id].in[0];
    stgD_accumulate(ad, x, stgD_sum_to(ad->g, g, &ad->g->nodes[x].shape));
}

static void backward_copy(stg_ad *ad, int32_t id, stg_tensor g)
{
    stgD_accumulate(ad, ad->g->nodes[id].in[0], g);
}

/* ---- the copy kernel ---------------------------------------------------- */

void stgK_copy_init(stg_copy *c, const stg_layout *dlay, const stg_layout *slay,
                    const stg_shape *s)
{
    int64_t st[STG_LOOP_OPS][STG_MAX_DIMS] = {{0}};
    memcpy(st[0], dlay->st, sizeof dlay->st);
    memcpy(st[1], slay->st, sizeof slay->st);
    stgS_loop_init(&c->loop, s, 2, st);
    c->dst_off = dlay->off;
    c->src_off = slay->off;
}

void stgK_copy(const stg_copy *c, float *dst, const float *src, int64_t lo, int64_t hi)
{
    const stg_loop *L = &c->loop;
    dst += c->dst_off;
    src += c->src_off;
    int k = L->nd - 1;
    while (lo < hi) {
        int64_t off[STG_LOOP_OPS];
        stgS_loop_offsets(L, lo, off);
        int64_t n = k < 0 ? 1 : L->d[k] - lo % L->d[k];
        int64_t sd = k < 0 ? 0 : L->st[0][k], sx = k < 0 ? 0 : L->st[1][k];
        if (n > hi - lo)
            n = hi - lo;
        if (sd == 1 && sx == 1)
            memcpy(dst + off[0], src + off[1], (size_t)n * sizeof(float));
        else
            for (int64_t i = 0; i < n; i++)
                dst[off[0] + i * sd] = src[off[1] + i * sx];
        lo += n;
    }
}

static stg_status prepare_copy(stg_prep *cx, stg_pnode *pn)
{
    stg_copy *c = stgP_opdata(cx, pn, sizeof *c);
    if (!c)
        return STG_NOMEM;
    const stg_node *x = pn->innode[0];
    stg_layout lay = x->lay, out;
    lay.off = 0; /* pn->in[0] already points at the view's first element */
    stgS_contiguous(&x->shape, &out);
    stgK_copy_init(c, &out, &lay, &x->shape);
    return STG_OK;
}

static void run_copy(const stg_pnode *pn, const stg_step *sx, int tid, int nt)
{
    const stg_copy *c = pn->desc;
    int64_t lo, hi;
    (void)sx;
    stgR_share(pn, c->loop.total, tid, nt, &lo, &hi);
    stgK_copy(c, pn->out, pn->in[0], lo, hi);
}

const stg_op stg_op_detach = {
    .name = "detach",
    .flags = STG_OPF_VIEW,
};
const stg_op stg_op_reshape = {
    .name = "reshape",
    .flags = STG_OPF_VIEW,
    .backward = backward_reshape,
};
const stg_op stg_op_transpose = {
    .name = "transpose",
    .flags = STG_OPF_VIEW,
    .attr_size = sizeof(transpose_attr),
    .print_attr = print_transpose,
    .backward = backward_transpose,
};
const stg_op stg_op_broadcast_to = {
    .name = "broadcast_to",
    .flags = STG_OPF_VIEW,
    .backward = backward_broadcast_to,
};
const stg_op stg_op_copy = {
    .name = "copy",
    .prepare = prepare_copy,
    .run = run_copy,
    .backward = backward_copy,
};
