/*
 * Ops that cut, join and rearrange tensors.
 *
 *   y = slice(x, axis, start, stop, step)   a view      dx = embed(g)  (zeros, g at the slice)
 *   (an embed of an embed is one embed: a slice of a slice, as the
 *   recurrent layers take a block of their state, scatters its gradient once)
 *   y = flip(x, axis)                       a view      dx = flip(g)
 *   y = pad(x, before, after, value)        a copy      dx = the slice of g where x went
 *   y = concat(x_0 .. x_n-1, axis)          a copy      dx_i = the slice of g where x_i went
 *   stack = concat of inputs given a new size-1 axis; split = slices
 *
 * The copies write through strided views of their output (stgK_copy).
 */
#include <stdio.h>
#include <string.h>

#include "../op.h"

#define MAX_CONCAT STG_MAX_INPUTS /* wider concats are built as trees */

/* slice: where along 'axis' the slice lies. */
typedef struct slice_attr {
    int axis;
    int64_t start, step;
} slice_attr;

static void print_slice(const void *attr, char *buf, size_t len)
{
    const slice_attr *at = attr;
    snprintf(buf, len, "axis=%d start=%lld step=%lld", at->axis, (long long)at->start,
             (long long)at->step);
}

/* embed: where g lies in the output, along every axis (slices of slices
 * compose into one box) */
typedef struct embed_attr {
    int64_t start[STG_MAX_DIMS], step[STG_MAX_DIMS];
} embed_attr;

static void print_embed(const void *attr, char *buf, size_t len)
{
    const embed_attr *at = attr;
    int used = snprintf(buf, len, "start=(");
    for (int i = 0; i < STG_MAX_DIMS && used > 0 && (size_t)used < len; i++)
        used += snprintf(buf + used, len - (size_t)used, "%s%lld", i ? "," : "",
                         (long long)at->start[i]);
    for (int i = 0; i < STG_MAX_DIMS && used > 0 && (size_t)used < len; i++)
        used += snprintf(buf + used, len - (size_t)used, "%s%lld", i ? "," : ") step=(",
                         (long long)at->step[i]);
    if (used > 0 && (size_t)used < len)
        snprintf(buf + used, len - (size_t)used, ")");
}

/* pad: the fill value, and where x goes in the result. */
typedef struct pad_attr {
    float value;
    int64_t origin[STG_MAX_DIMS];
} pad_attr;

static void print_pad(const void *attr, char *buf, size_t len)
{
    snprintf(buf, len, "value=%g", (double)((const pad_attr *)attr)->value);
}

/* ---- slice and flip (views) ---------------------------------------------- */

STG_API stg_tensor stg_slice(stg_graph *g, stg_tensor a, int axis, int64_t start, int64_t stop,
                             int64_t step)
{
    if (!stgG_ok(g) || !stgG_check_tensor(g, "slice", a))
        return stgG_t(-1);
    const stg_node *x = stgG_node(g, a);
    char b[96];
    stgS_str(&x->shape, b, sizeof b);
    int ax = stgS_axis(axis, x->shape.nd);
    if (ax < 0)
        return stgG_fail(g, STG_SHAPE, "slice: a %s: axis %d out of range [%d, %d]", b, axis,
                         -x->shape.nd, x->shape.nd - 1);
    int64_t d = x->shape.d[ax];
    if (start < 0)
        start += d;
    if (stop < 0)
        stop += d;
    if (step < 1 || start < 0 || stop > d || start >= stop)
        return stgG_fail(g, STG_SHAPE,
                         "slice: a %s along axis %d (size %lld): [%lld:%lld:%lld] is empty or "
                         "out of range (need 0 <= start < stop <= size, step >= 1)",
                         b, axis, (long long)d, (long long)start, (long long)stop, (long long)step);
    stg_shape s = x->shape;
    s.d[ax] = (stop - start - 1) / step + 1; /* never overflows, whatever the step */
    stg_layout lay = x->lay;
    lay.off += start * x->lay.st[ax];
    if (s.d[ax] > 1) /* then step < size, so the product stays small */
        lay.st[ax] *= step;
    slice_attr attr = {ax, start, step};
    return stgG_add_view(g, &stg_op_slice, a.id, &s, &lay, &attr);
}

STG_API stg_tensor stg_flip(stg_graph *g, stg_tensor a, int axis)
{
    if (!stgG_ok(g) || !stgG_check_tensor(g, "flip", a))
        return stgG_t(-1);
    const stg_node *x = stgG_node(g, a);
    char b[96];
    int ax = stgS_axis(axis, x->shape.nd);
    if (ax < 0)
        return stgG_fail(g, STG_SHAPE, "flip: a %s: axis %d out of range [%d, %d]",
                         stgS_str(&x->shape, b, sizeof b), axis, -x->shape.nd, x->shape.nd - 1);
    stg_layout lay = x->lay;
    lay.off += (x->shape.d[ax] - 1) * lay.st[ax];
    lay.st[ax] = -lay.st[ax];
    stg_axis_attr attr = {ax};
    stg_shape s = x->shape;
    return stgG_add_view(g, &stg_op_flip, a.id, &s, &lay, &attr);
}

static void backward_flip(stg_ad *ad, int32_t id, stg_tensor gout)
{
    const stg_node *n = &ad->g->nodes[id];
    int32_t x = n->in[0];
    int axis = ((const stg_axis_attr *)n->attr)->axis;
    stgD_accumulate(ad, x, stg_flip(ad->g, gout, axis));
}

static void backward_slice(stg_ad *ad, int32_t id, stg_tensor gout)
{
    stg_graph *g = ad->g;
    const stg_node *n = &g->nodes[id];
    int32_t x = n->in[0];
    if (!stgD_needs(ad, x) || gout.id < 0)
        return;
    const slice_attr *sl = n->attr;
    embed_attr attr;
    for (int i = 0; i < STG_MAX_DIMS; i++)
        attr.start[i] = 0, attr.step[i] = 1;
    int32_t src = gout.id;
    /* gout an embed (made by the backward of the slice this node feeds, and
     * the whole gradient: another contribution would have made it an add):
     * embed its source straight into x's input, composing the two boxes */
    const stg_node *gn = stgG_node(g, gout);
    if (gn->op == &stg_op_embed) {
        attr = *(const embed_attr *)gn->attr;
        src = gn->in[0];
    }
    attr.start[sl->axis] = sl->start + attr.start[sl->axis] * sl->step;
    attr.step[sl->axis] *= sl->step;
    stg_shape s = g->nodes[x].shape;
    stgD_accumulate(ad, x, stgG_add(g, &stg_op_embed, 1, &src, &s, &attr));
}

/* Where a box of a contiguous 'shape' lies, as a view. */
static stg_layout embed_view(const stg_shape *shape, const embed_attr *at)
{
    stg_layout lay;
    stgS_contiguous(shape, &lay);
    lay.off = 0;
    for (int i = 0; i < shape->nd; i++) {
        lay.off += at->start[i] * lay.st[i];
        lay.st[i] *= at->step[i];
    }
    return lay;
}

static stg_status prepare_embed(stg_prep *cx, stg_pnode *pn)
{
    stg_copy *c = stgP_opdata(cx, pn, sizeof *c);
    if (!c)
        return STG_NOMEM;
    const stg_node *gn = pn->innode[0];
    stg_layout dst = embed_view(&pn->node->shape, pn->node->attr), src = gn->lay;
    src.off = 0;
    stgK_copy_init(c, &dst, &src, &gn->shape);
    return STG_OK;
}

/* The first of g's elements whose place in the output is at or past 'at'
 * (places grow with the index: a slice keeps the order). */
static int64_t first_at(const stg_copy *c, int64_t at)
{
    int64_t lo = 0, hi = c->loop.total;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2, off[STG_LOOP_OPS];
        stgS_loop_offsets(&c->loop, mid, off);
        if (c->dst_off + off[0] < at)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* embed: zeros of x's shape with g written where the slice was.  Each
 * thread owns a range of the output: it zeroes it, then writes the
 * elements of g that land in it. */
static void run_embed(const stg_pnode *pn, const stg_step *sx, int tid, int nt)
{
    const stg_copy *c = pn->desc;
    int64_t lo, hi;
    (void)sx;
    stgR_share(pn, stgS_numel(&pn->node->shape), tid, nt, &lo, &hi);
    if (hi <= lo)
        return;
    memset(pn->out + lo, 0, (size_t)(hi - lo) * sizeof(float));
    stgK_copy(c, pn->out, pn->in[0], first_at(c, lo), first_at(c, hi));
}

/* ---- pad ------------------------------------------------------------------ */

STG_API stg_tensor stg_pad(stg_graph *g, stg_tensor a, const int64_t *before,
                           const int64_t *after, float value)
{
    if (!stgG_ok(g) || !stgG_check_tensor(g, "pad", a))
        return stgG_t(-1);
    const stg_node *x = stgG_node(g, a);
    char b[96];
    stgS_str(&x->shape, b, sizeof b);
    if (x->shape.nd > 0 && (!before || !after))
        return stgG_fail(g, STG_INVALID, "pad: a %s: 'before' and 'after' must not be NULL", b);
    stg_shape s = x->shape;
    pad_attr attr = {.value = value};
    for (int i = 0; i < s.nd; i++) {
        if (before[i] < 0 || after[i] < 0 || before[i] > STG_MAX_NUMEL || after[i] > STG_MAX_NUMEL)
            return stgG_fail(g, STG_SHAPE, "pad: a %s: axis %d pads (%lld, %lld); pads must be "
                             ">= 0", b, i, (long long)before[i], (long long)after[i]);
        s.d[i] += before[i] + after[i];
        attr.origin[i] = before[i]; /* where x goes */
    }
    if (!stgS_numel_ok(&s))
        return stgG_fail(g, STG_SHAPE, "pad: a %s: the result has more than 2^40 elements", b);
    return stgG_add(g, &stg_op_pad, 1, &a.id, &s, &attr);
}

static void backward_pad(stg_ad *ad, int32_t id, stg_tensor gout)
{
    const stg_node *n = &ad->g->nodes[id];
    int32_t x = n->in[0];
    stg_shape xs = ad->g->nodes[x].shape;
    int64_t origin[STG_MAX_DIMS];
    memcpy(origin, ((const pad_attr *)n->attr)->origin, sizeof origin);
    stg_tensor t = gout;
    for (int i = 0; i < xs.nd; i++)
        if (ad->g->nodes[id].shape.d[i] != xs.d[i])
            t = stg_slice(ad->g, t, i, origin[i], origin[i] + xs.d[i], 1);
    stgD_accumulate(ad, x, t);
}

static stg_status prepare_pad(stg_prep *cx, stg_pnode *pn)
{
    stg_copy *c = stgP_opdata(cx, pn, sizeof *c);
    if (!c)
        return STG_NOMEM;
    const stg_node *n = pn->node, *x = pn->innode[0];
    stg_layout dst, src = x->lay;
    stgS_contiguous(&n->shape, &dst);
    for (int i = 0; i < n->shape.nd; i++)
        dst.off += ((const pad_attr *)n->attr)->origin[i] * dst.st[i];
    src.off = 0;
    stgK_copy_init(c, &dst, &src, &x->shape);
    return STG_OK;
}

static void run_pad(const stg_pnode *pn, const stg_step *sx, int tid, int nt)
{
    const stg_copy *c = pn->desc;
    (void)sx, (void)nt;
    if (tid != 0)
        return;
    int64_t total = stgS_numel(&pn->node->shape);
    float value = ((const pad_attr *)pn->node->attr)->value;
    for (int64_t i = 0; i < total; i++)
        pn->out[i] = value;
    stgK_copy(c, pn->out, pn->in[0], 0, c->loop.total);
}

/* ---- concat, stack, split -------------------------------------------------- */

static stg_tensor concat_group(stg_graph *g, int n, const stg_tensor *xs, int ax)
{
    stg_shape s = stgG_node(g, xs[0])->shape;
    int32_t in[MAX_CONCAT];
    s.d[ax] = 0;
    for (int i = 0; i < n; i++) {
        in[i] = xs[i].id;
        s.d[ax] += stgG_node(g, xs[i])->shape.d[ax];
    }
    stg_axis_attr attr = {ax};
    return stgG_add(g, &stg_op_concat, n, in, &s, &attr);
}

STG_API stg_tensor stg_concat(stg_graph *g, int n, const stg_tensor *xs, int axis)
{
    if (!stgG_ok(g))
        return stgG_t(-1);
    if (n < 1 || !xs)
        return stgG_fail(g, STG_INVALID, "concat: %d tensors given (need at least 1)", n);
    for (int i = 0; i < n; i++)
        if (!stgG_check_tensor(g, "concat", xs[i]))
            return stgG_t(-1);
    const stg_shape s0 = stgG_node(g, xs[0])->shape;
    char b0[96], bi[96];
    int ax = stgS_axis(axis, s0.nd);
    if (ax < 0)
        return stgG_fail(g, STG_SHAPE, "concat: x0 %s: axis %d out of range [%d, %d]",
                         stgS_str(&s0, b0, sizeof b0), axis, -s0.nd, s0.nd - 1);
    for (int i = 1; i < n; i++) {
        stg_shape si = stgG_node(g, xs[i])->shape, a = s0;
        a.d[ax] = si.nd == s0.nd ? si.d[ax] : a.d[ax];
        if (!stgS_equal(&a, &si))
            return stgG_fail(g, STG_SHAPE,
                             "concat: x0 %s and x%d %s must match in every dim but axis %d", 
                             stgS_str(&s0, b0, sizeof b0), i, stgS_str(&si, bi, sizeof bi), ax);
    }
    if (n == 1)
        return xs[0];
    if (n <= MAX_CONCAT)
        return concat_group(g, n, xs, ax);
    /* more inputs than a node takes: concatenate groups, then the groups */
    stg_tensor parts[MAX_CONCAT];
    int groups = 0, per = (n + MAX_CONCAT - 1) / MAX_CONCAT;
    for (int i = 0; i < n; i += per)
        parts[groups++] = stg_concat(g, n - i < per ? n - i : per, xs + i, ax);
    return stg_concat(g, groups, parts, ax);
}

static void backward_concat(stg_ad *ad, int32_t id, stg_tensor gout)
{
    const stg_node *n = &ad->g->nodes[id];
    int ax = ((const stg_axis_attr *)n->attr)->axis, nin = n->nin;
    int32_t in[MAX_CONCAT];
    memcpy(in, n->in, sizeof(int32_t) * (size_t)nin);
    int64_t at = 0;
    for (int i = 0; i < nin; i++) {
        int64_t d = ad->g->nodes[in[i]].shape.d[ax];
        if (stgD_needs(ad, in[i]))
            stgD_accumulate(ad, in[i], stg_slice(ad->g, gout, ax, at, at + d, 1));
        at += d;
    }
}

static stg_status prepare_concat(stg_prep *cx, stg_pnode *pn)
{
    const stg_node *n = pn->node;
    stg_copy *c = stgP_opdata(cx, pn, sizeof *c * (size_t)n->nin);
    if (!c)
        return STG_NOMEM;
    stg_layout dst;
    stgS_contiguous(&n->shape, &dst);
    int ax = ((const stg_axis_attr *)n->attr)->axis;
    int64_t at = 0;
    for (int i = 0; i < n->nin; i++) {
        const stg_node *x = pn->innode[i];
        stg_layout d = dst, src = x->lay;
        d.off = at * dst.st[ax];
        src.off = 0;
        stgK_copy_init(&c[i], &d, &src, &x->shape);
        at += x->shape.d[ax];
    }
    return STG_OK;
}

/* Each input is copied into its slot; threads split every input's elements. */
static void run_concat(const stg_pnode *pn, const stg_step *sx, int tid, int nt)
{
    const stg_copy *c = pn->desc;
    (void)sx;
    for (int i = 0; i < pn->node->nin; i++) {
        int64_t lo, hi;
        stgR_share(pn, c[i].loop.total, tid, nt, &lo, &hi);
        stgK_copy(&c[i], pn->out, pn->in[i], lo, hi);
    }
}

STG_API stg_tensor stg_stack(stg_graph *g, int n, const stg_tensor *xs, int axis)
{
    if (!stgG_ok(g))
        return stgG_t(-1);
    if (n < 1 || !xs || n > 4096)
        return stgG_fail(g, STG_INVALID, "stack: %d tensors given (need 1 to 4096)", n);
    if (!stgG_check_tensor(g, "stack", xs[0]))
        return stgG_t(-1);
    stg_shape s = stgG_node(g, xs[0])->shape;
    int ax = stgS_axis(axis, s.nd + 1);
    char b[96];
    if (ax < 0 || s.nd == STG_MAX_DIMS)
        return stgG_fail(g, STG_SHAPE, "stack: x0 %s: axis %d out of range [%d, %d]",
                         stgS_str(&s, b, sizeof b), axis, -s.nd - 1, s.nd);
    stg_shape u = s;
    for (int i = u.nd; i > ax; i--)
        u.d[i] = u.d[i - 1];
    u.d[ax] = 1;
    u.nd++;
    stg_tensor parts[4096];
    for (int i = 0; i < n; i++) {
        if (!stgG_check_tensor(g, "stack", xs[i]))
            return stgG_t(-1);
        if (!stgS_equal(&stgG_node(g, xs[i])->shape, &s)) {
            char bi[96];
            return stgG_fail(g, STG_SHAPE, "stack: x0 %s and x%d %s must have the same shape",
                             stgS_str(&s, b, sizeof b), i,
                             stgS_str(&stgG_node(g, xs[i])->shape, bi, sizeof bi));
        }
        parts[i] = stg_reshape(g, xs[i], u.nd, u.d);
    }
    return stg_concat(g, n, parts, ax);
}

STG_API stg_status stg_split(stg_graph *g, stg_tensor a, int axis, int n, const int64_t *sizes,
                             stg_tensor *out)
{
    for (int i = 0; out && i < n; i++)
        out[i] = stgG_t(-1);
    if (!stgG_ok(g))
        return g ? g->status : STG_INVALID;
    if (n < 1 || !sizes || !out) {
        stgG_fail(g, STG_INVALID, "split: %d parts, sizes %p, out %p", n, (const void *)sizes,
                  (void *)out);
        return g->status;
    }
    if (!stgG_check_tensor(g, "split", a))
        return g->status;
    const stg_node *x = stgG_node(g, a);
    int ax = stgS_axis(axis, x->shape.nd);
    int64_t total = 0;
    char b[96];
    stgS_str(&x->shape, b, sizeof b);
    for (int i = 0; i < n && ax >= 0; i++)
        total += sizes[i] > 0 ? sizes[i] : -STG_MAX_NUMEL;
    if (ax < 0 || total != x->shape.d[ax]) {
        stgG_fail(g, STG_SHAPE, "split: a %s along axis %d: the %d sizes must be >= 1 and add "
                  "up to the axis' size", b, axis, n);
        return g->status;
    }
    int64_t at = 0;
    for (int i = 0; i < n; i++) {
        out[i] = stg_slice(g, a, ax, at, at + sizes[i], 1);
        at += sizes[i];
    }
    return g->status;
}

const stg_op stg_op_slice = {
    .name = "slice",
    .flags = STG_OPF_VIEW,
    .attr_size = sizeof(slice_attr),
    .print_attr = print_slice,
    .backward = backward_slice,
};
const stg_op stg_op_flip = {
    .name = "flip",
    .flags = STG_OPF_VIEW,
    .attr_size = sizeof(stg_axis_attr),
    .print_attr = stgO_print_axis,
    .backward = backward_flip,
};
const stg_op stg_op_embed = {
    .name = "embed",
    .attr_size = sizeof(embed_attr),
    .print_attr = print_embed,
    .prepare = prepare_embed,
    .run = run_embed,
};
const stg_op stg_op_pad = {
    .name = "pad",
    .flags = STG_OPF_SERIAL,
    .attr_size = sizeof(pad_attr),
    .print_attr = print_pad,
    .prepare = prepare_pad,
    .run = run_pad,
    .backward = backward_pad,
};
const stg_op stg_op_concat = {
    .name = "concat",
    .attr_size = sizeof(stg_axis_attr),
    .print_attr = stgO_print_axis,
    .prepare = prepare_concat,
    .run = run_concat,
    .backward = backward_concat,
};
