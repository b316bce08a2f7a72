/*
 * Elementwise arithmetic with NumPy broadcasting.
 *
 *   z = x + y   dx = sum_to(g)        dy = sum_to(g)
 *   z = x - y   dx = sum_to(g)        dy = -sum_to(g)
 *   z = x * y   dx = sum_to(g*y)      dy = sum_to(g*x)
 *   z = x / y   dx = sum_to(g/y)      dy = -sum_to(g*z/y)
 *   y = -x      dx = -g
 *   y = f*x     dx = f*g
 *
 * sum_to sums a gradient over the dims its operand was broadcast along.
 * Kernels walk a coalesced strided loop (built at plan time), so broadcast
 * inputs and transposed views are read in place, never copied.
 */
#include "../internal.h"

/* Below this many elements one thread does the whole node. */
#define ELEMWISE_GRAIN 16384

typedef void (*seg_fn)(float *o, const float *a, const float *b, int64_t n, int64_t sa,
                       int64_t sb, float f);

/* Runs 'fn' over the innermost segments of flat range [lo, hi). */
static void walk(const stg_loop *L, int64_t lo, int64_t hi, float *o, const float *a,
                 const float *b, seg_fn fn, float f)
{
    int k = L->nd - 1;
    if (k < 0) {
        if (lo < hi)
            fn(o, a, b, 1, 0, 0, f);
        return;
    }
    while (lo < hi) {
        int64_t off[STG_LOOP_OPS];
        stgS_loop_offsets(L, lo, off);
        int64_t pos = lo % L->d[k];
        int64_t n = L->d[k] - pos;
        if (n > hi - lo)
            n = hi - lo;
        fn(o + off[0], a + off[1], b ? b + off[2] : NULL, n, L->st[1][k], L->st[2][k], f);
        lo += n;
    }
}

static stg_status prepare_elementwise(stg_plan *p, stg_pnode *pn)
{
    const stg_node *n = pn->node;
    stg_loop *L = stgP_desc(p, pn, sizeof *L);
    if (!L)
        return STG_NOMEM;
    int64_t st[STG_LOOP_OPS][STG_MAX_DIMS] = {{0}};
    stg_layout out;
    stgS_contiguous(&n->shape, &out);
    for (int i = 0; i < n->shape.nd; i++)
        st[0][i] = out.st[i];
    for (int j = 0; j < n->nin; j++)
        stgS_broadcast_strides(&pn->innode[j]->shape, &pn->innode[j]->lay, &n->shape, st[j + 1]);
    stgS_loop_init(L, &n->shape, 1 + n->nin, st);
    return STG_OK;
}

static void run_elementwise(const stg_pnode *pn, int tid, int nt, seg_fn fn, float f)
{
    const stg_loop *L = pn->desc;
    int64_t lo = 0, hi = L->total;
    if (L->total >= ELEMWISE_GRAIN)
        stgR_split(L->total, tid, nt, &lo, &hi);
    else if (tid != 0)
        return;
    walk(L, lo, hi, pn->out, pn->in[0], pn->node->nin > 1 ? pn->in[1] : NULL, fn, f);
}

static double flops_elementwise(const stg_graph *g, const stg_node *n)
{
    (void)g;
    return (double)stgS_numel(&n->shape);
}

/* ---- builders ---------------------------------------------------------- */

static stg_tensor binary(stg_graph *g, const stg_op *op, stg_tensor a, stg_tensor b)
{
    if (!stgG_ok(g) || !stgG_check_tensor(g, op->name, a) || !stgG_check_tensor(g, op->name, b))
        return stgG_t(-1);
    const stg_shape *sa = &stgG_node(g, a)->shape, *sb = &stgG_node(g, b)->shape;
    stg_shape out;
    if (!stgS_broadcast(sa, sb, &out)) {
        char ba[96], bb[96];
        int nd = sa->nd > sb->nd ? sa->nd : sb->nd;
        for (int i = 1; i <= nd; i++) {
            int64_t da = i <= sa->nd ? sa->d[sa->nd - i] : 1, db = i <= sb->nd ? sb->d[sb->nd - i] : 1;
            if (da != db && da != 1 && db != 1)
                return stgG_fail(g, STG_SHAPE,
                                 "%s: a %s and b %s do not broadcast: dim -%d is %lld in a and "
                                 "%lld in b (sizes must match or one must be 1)",
                                 op->name, stgS_str(sa, ba, sizeof ba), stgS_str(sb, bb, sizeof bb),
                                 i, (long long)da, (long long)db);
        }
    }
    int32_t in[2] = {a.id, b.id};
    return stgG_add(g, op, 2, in, &out, NULL);
}

static stg_tensor unary(stg_graph *g, const stg_op *op, stg_tensor a, float f)
{
    if (!stgG_ok(g) || !stgG_check_tensor(g, op->name, a))
        return stgG_t(-1);
    stg_attr attr = {.f = f};
    return stgG_add(g, op, 1, &a.id, &stgG_node(g, a)->shape, &attr);
}

STG_API stg_tensor stg_scale(stg_graph *g, stg_tensor a, float factor)
{
    return unary(g, &stg_op_scale, a, factor);
}

/* ---- backward rules ----------------------------------------------------- */

static const stg_shape *shape_of(stg_ad *ad, int32_t id) { return &ad->g->nodes[id].shape; }
static stg_tensor in_t(stg_ad *ad, int32_t id, int i) { return stgG_t(ad->g->nodes[id].in[i]); }

static void accumulate_to(stg_ad *ad, int32_t id, int i, stg_tensor contrib)
{
    int32_t x = ad->g->nodes[id].in[i];
    if (stgD_needs(ad, x))
        stgD_accumulate(ad, x, stgD_sum_to(ad->g, contrib, shape_of(ad, x)));
}

static void backward_add(stg_ad *ad, int32_t id, stg_tensor g)
{
    accumulate_to(ad, id, 0, g);
    accumulate_to(ad, id, 1, g);
}

static void backward_sub(stg_ad *ad, int32_t id, stg_tensor g)
{
    accumulate_to(ad, id, 0, g);
    int32_t y = ad->g->nodes[id].in[1];
    if (stgD_needs(ad, y))
        stgD_accumulate(ad, y, stg_neg(ad->g, stgD_sum_to(ad->g, g, shape_of(ad, y))));
}

static void backward_mul(stg_ad *ad, int32_t id, stg_tensor g)
{
    if (stgD_needs(ad, in_t(ad, id, 0).id))
        accumulate_to(ad, id, 0, stg_mul(ad->g, g, in_t(ad, id, 1)));
    if (stgD_needs(ad, in_t(ad, id, 1).id))
        accumulate_to(ad, id, 1, stg_mul(ad->g, g, in_t(ad, id, 0)));
}

static void backward_div(stg_ad *ad, int32_t id, stg_tensor g)
{
    stg_tensor y = in_t(ad, id, 1);
    if (stgD_needs(ad, in_t(ad, id, 0).id))
        accumulate_to(ad, id, 0, stg_div(ad->g, g, y));
    if (stgD_needs(ad, y.id)) {
        stg_tensor t = stg_div(ad->g, stg_mul(ad->g, g, stgG_t(id)), y);
        stgD_accumulate(ad, y.id, stg_neg(ad->g, stgD_sum_to(ad->g, t, shape_of(ad, y.id))));
    }
}

static void backward_neg(stg_ad *ad, int32_t id, stg_tensor g)
{
    stgD_accumulate(ad, in_t(ad, id, 0).id, stg_neg(ad->g, g));
}

static void backward_scale(stg_ad *ad, int32_t id, stg_tensor g)
{
    stgD_accumulate(ad, in_t(ad, id, 0).id, stg_scale(ad->g, g, ad->g->nodes[id].attr.f));
}

/* ---- kernels and descriptors, generated from ops.def -------------------- */

/* The unit-stride branches are the ones that matter; the compiler vectorises them. */
#define STG_BINARY(name, expr)                                                              \
    static void seg_##name(float *o, const float *pa, const float *pb, int64_t n, int64_t sa, \
                           int64_t sb, float f)                                             \
    {                                                                                       \
        (void)f;                                                                            \
        if (sa == 1 && sb == 1) {                                                           \
            for (int64_t i = 0; i < n; i++) {                                               \
                float x = pa[i], y = pb[i];                                                 \
                o[i] = (expr);                                                              \
            }                                                                               \
        } else if (sa == 1 && sb == 0) {                                                    \
            float y = pb[0];                                                                \
            for (int64_t i = 0; i < n; i++) {                                               \
                float x = pa[i];                                                            \
                o[i] = (expr);                                                              \
            }                                                                               \
        } else if (sa == 0 && sb == 1) {                                                    \
            float x = pa[0];                                                                \
            for (int64_t i = 0; i < n; i++) {                                               \
                float y = pb[i];                                                            \
                o[i] = (expr);                                                              \
            }                                                                               \
        } else {                                                                            \
            for (int64_t i = 0; i < n; i++) {                                               \
                float x = pa[i * sa], y = pb[i * sb];                                       \
                o[i] = (expr);                                                              \
            }                                                                               \
        }                                                                                   \
    }                                                                                       \
    static void run_##name(const stg_pnode *pn, int tid, int nt)                            \
    {                                                                                       \
        run_elementwise(pn, tid, nt, seg_##name, 0.0f);                                     \
    }                                                                                       \
    STG_API stg_tensor stg_##name(stg_graph *g, stg_tensor a, stg_tensor b)                 \
    {                                                                                       \
        return binary(g, &stg_op_##name, a, b);                                             \
    }                                                                                       \
    const stg_op stg_op_##name = {#name, STG_OPF_ELEMENTWISE, prepare_elementwise,          \
                                  run_##name, backward_##name, flops_elementwise};

#define STG_UNARY(name, expr)                                                               \
    static void seg_##name(float *o, const float *pa, const float *pb, int64_t n, int64_t sa, \
                           int64_t sb, float f)                                             \
    {                                                                                       \
        (void)pb, (void)sb, (void)f;                                                        \
        if (sa == 1) {                                                                      \
            for (int64_t i = 0; i < n; i++) {                                               \
                float x = pa[i];                                                            \
                o[i] = (expr);                                                              \
            }                                                                               \
        } else {                                                                            \
            for (int64_t i = 0; i < n; i++) {                                               \
                float x = pa[i * sa];                                                       \
                o[i] = (expr);                                                              \
            }                                                                               \
        }                                                                                   \
    }                                                                                       \
    static void run_##name(const stg_pnode *pn, int tid, int nt)                            \
    {                                                                                       \
        run_elementwise(pn, tid, nt, seg_##name, 0.0f);                                     \
    }                                                                                       \
    STG_API stg_tensor stg_##name(stg_graph *g, stg_tensor a)                               \
    {                                                                                       \
        return unary(g, &stg_op_##name, a, 0.0f);                                           \
    }                                                                                       \
    const stg_op stg_op_##name = {#name, STG_OPF_ELEMENTWISE, prepare_elementwise,          \
                                  run_##name, backward_##name, flops_elementwise};

#define STG_OP(name)
#include "../ops.def"
#undef STG_OP
#undef STG_UNARY
#undef STG_BINARY

/* y = f*x: an elementwise op whose scalar function has a parameter. */
static void seg_scale(float *o, const float *pa, const float *pb, int64_t n, int64_t sa,
                      int64_t sb, float f)
{
    (void)pb, (void)sb;
    for (int64_t i = 0; i < n; i++)
        o[i] = f * pa[i * sa];
}

static void run_scale(const stg_pnode *pn, int tid, int nt)
{
    run_elementwise(pn, tid, nt, seg_scale, pn->node->attr.f);
}

const stg_op stg_op_scale = {"scale", STG_OPF_ELEMENTWISE, prepare_elementwise, run_scale,
                             backward_scale, flops_elementwise};
