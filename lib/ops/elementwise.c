/*
 * Elementwise ops.  Binary arithmetic broadcasts like NumPy:
 *
 *   z = x + y   dx = sum_to(g)        dy = sum_to(g)
 *   z = x - y   dx = sum_to(g)        dy = -sum_to(g)
 *   z = x * y   dx = sum_to(g*y)      dy = sum_to(g*x)
 *   z = x / y   dx = sum_to(g/y)      dy = -sum_to(g*z/y)
 *
 * sum_to sums a gradient over the dims its operand was broadcast along.
 * Unary ops are one line each in ops.def: y = f(x), and dx = g * f'(x, y)
 * computed by one generated '<name>_grad' node that reads only what f'
 * needs (so relu's input, say, dies at relu and relu runs in place).
 *
 * Kernels walk a coalesced strided loop (built at plan time), so broadcast
 * inputs and transposed views are read in place, never copied.
 */
#include <math.h>
#include <stdio.h>

#include "../op.h"

/* Marks a unit-stride loop as free of dependencies between iterations.  The
 * compiler cannot prove it: the output may be an input (in-place ops), but
 * then it is the very same element, read before it is written. */
#define STG_SIMD _Pragma("omp simd")

/* The attributes of a unary op: 'a' and 'b' in ops.def. */
typedef struct unary_attr {
    float a, b;
} unary_attr;

static void print_unary(const void *attr, char *buf, size_t len)
{
    const unary_attr *at = attr;
    if (at->b != 0.0f)
        snprintf(buf, len, "a=%g b=%g", (double)at->a, (double)at->b);
    else if (at->a != 0.0f)
        snprintf(buf, len, "a=%g", (double)at->a);
    else
        buf[0] = '\0';
}

/* Runs over n elements of an innermost segment; in[j] steps by st[j]. */
typedef void (*seg_fn)(float *o, const float *const *in, const int64_t *st, int64_t n,
                       const unary_attr *at);

/* Runs 'fn' over the innermost segments of flat range [lo, hi). */
static void walk(const stg_loop *L, int64_t lo, int64_t hi, float *o, const float *const *in,
                 int nin, seg_fn fn, const unary_attr *at)
{
    int k = L->nd - 1;
    while (lo < hi) {
        int64_t off[STG_LOOP_OPS], st[STG_MAX_INPUTS] = {0}, n = 1;
        const float *p[STG_MAX_INPUTS] = {NULL};
        stgS_loop_offsets(L, lo, off);
        if (k >= 0) {
            n = L->d[k] - lo % L->d[k];
            for (int j = 0; j < nin; j++)
                st[j] = L->st[j + 1][k];
        }
        if (n > hi - lo)
            n = hi - lo;
        for (int j = 0; j < nin; j++)
            p[j] = in[j] + off[j + 1];
        fn(o + off[0], p, st, n, at);
        lo += n;
    }
}

static stg_status prepare_elementwise(stg_prep *cx, stg_pnode *pn)
{
    const stg_node *n = pn->node;
    stg_loop *L = stgP_opdata(cx, pn, sizeof *L);
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

static void run_elementwise(const stg_pnode *pn, int tid, int nt, seg_fn fn)
{
    const stg_loop *L = pn->desc;
    int64_t lo, hi;
    stgR_share(pn, L->total, tid, nt, &lo, &hi);
    walk(L, lo, hi, pn->out, pn->in, pn->node->nin, fn, pn->node->attr);
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
    if (!stgS_numel_ok(&out)) {
        char ba[96], bb[96];
        return stgG_fail(g, STG_SHAPE, "%s: a %s and b %s broadcast to more than 2^40 elements",
                         op->name, stgS_str(sa, ba, sizeof ba), stgS_str(sb, bb, sizeof bb));
    }
    int32_t in[2] = {a.id, b.id};
    return stgG_add(g, op, 2, in, &out, NULL);
}

static stg_tensor unary(stg_graph *g, const stg_op *op, stg_tensor a, float fa, float fb)
{
    if (!stgG_ok(g) || !stgG_check_tensor(g, op->name, a))
        return stgG_t(-1);
    unary_attr attr = {fa, fb};
    return stgG_add(g, op, 1, &a.id, &stgG_node(g, a)->shape, &attr);
}

/* Unary ops with attributes; the others are generated below. */
STG_API stg_tensor stg_scale(stg_graph *g, stg_tensor a, float factor)
{
    return unary(g, &stg_op_scale, a, factor, 0.0f);
}

STG_API stg_tensor stg_pow(stg_graph *g, stg_tensor a, float exponent)
{
    return unary(g, &stg_op_pow, a, exponent, 0.0f);
}

STG_API stg_tensor stg_leaky_relu(stg_graph *g, stg_tensor a, float slope)
{
    return unary(g, &stg_op_leaky_relu, a, slope, 0.0f);
}

STG_API stg_tensor stg_elu(stg_graph *g, stg_tensor a, float alpha)
{
    return unary(g, &stg_op_elu, a, alpha, 0.0f);
}

STG_API stg_tensor stg_clamp(stg_graph *g, stg_tensor a, float lo, float hi)
{
    if (stgG_ok(g) && !(lo <= hi))
        return stgG_fail(g, STG_INVALID, "clamp: lo %g must not exceed hi %g", (double)lo,
                         (double)hi);
    return unary(g, &stg_op_clamp, a, lo, hi);
}

float stgK_sigmoid(float x)
{
    if (x >= 0.0f)
        return 1.0f / (1.0f + expf(-x));
    float e = expf(x);
    return e / (1.0f + e);
}

/* d/dx of x * Phi(x): Phi(x) + x * phi(x). */
float stgK_gelu_deriv(float x)
{
    return 0.5f * (1.0f + erff(x * 0.70710678f)) + x * 0.39894228f * expf(-0.5f * x * x);
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

/* A comparison is flat: no gradient flows through it. */
static void backward_eq(stg_ad *ad, int32_t id, stg_tensor g)
{
    (void)ad, (void)id, (void)g;
}

/* As div where y != 0; zero where the forward value was forced to 0. */
static void backward_div_or_zero(stg_ad *ad, int32_t id, stg_tensor g)
{
    stg_tensor y = in_t(ad, id, 1);
    stg_tensor gy = stg_div_or_zero(ad->g, g, y);
    if (stgD_needs(ad, in_t(ad, id, 0).id))
        accumulate_to(ad, id, 0, gy);
    if (stgD_needs(ad, y.id))
        stgD_accumulate(ad, y.id, stg_neg(ad->g, stgD_sum_to(ad->g, stg_mul(ad->g, gy, stgG_t(id)),
                                                             shape_of(ad, y.id))));
}

/* d/dx = sigmoid(x) - y and d/dy = -x, as PyTorch's fused op (no kinks at 0). */
static void backward_bce_logits(stg_ad *ad, int32_t id, stg_tensor g)
{
    stg_tensor x = in_t(ad, id, 0), y = in_t(ad, id, 1);
    if (stgD_needs(ad, x.id))
        accumulate_to(ad, id, 0, stg_mul(ad->g, g, stg_sub(ad->g, stg_sigmoid(ad->g, x), y)));
    if (stgD_needs(ad, y.id))
        accumulate_to(ad, id, 1, stg_mul(ad->g, g, stg_neg(ad->g, x)));
}

/* ---- kernels and descriptors, generated from ops.def -------------------- */

/* The unit-stride branches are the ones that matter; the compiler vectorises them. */
#define STG_BINARY(op_, expr)                                                                 \
    STG_CLONES                                                                                \
    static void seg_##op_(float *o, const float *const *in, const int64_t *st, int64_t n,     \
                           const unary_attr *at)                                              \
    {                                                                                         \
        const float *pa = in[0], *pb = in[1];                                                 \
        int64_t sa = st[0], sb = st[1];                                                       \
        (void)at;                                                                             \
        if (sa == 1 && sb == 1) {                                                             \
            STG_SIMD for (int64_t i = 0; i < n; i++) {                                        \
                float x = pa[i], y = pb[i];                                                   \
                o[i] = (expr);                                                                \
            }                                                                                 \
        } else if (sa == 1 && sb == 0) {                                                      \
            float y = pb[0];                                                                  \
            STG_SIMD for (int64_t i = 0; i < n; i++) {                                        \
                float x = pa[i];                                                              \
                o[i] = (expr);                                                                \
            }                                                                                 \
        } else if (sa == 0 && sb == 1) {                                                      \
            float x = pa[0];                                                                  \
            STG_SIMD for (int64_t i = 0; i < n; i++) {                                        \
                float y = pb[i];                                                              \
                o[i] = (expr);                                                                \
            }                                                                                 \
        } else {                                                                              \
            for (int64_t i = 0; i < n; i++) {                                                 \
                float x = pa[i * sa], y = pb[i * sb];                                         \
                o[i] = (expr);                                                                \
            }                                                                                 \
        }                                                                                     \
    }                                                                                         \
    static void run_##op_(const stg_pnode *pn, const stg_step *sx, int tid, int nt)           \
    {                                                                                         \
        (void)sx;                                                                             \
        run_elementwise(pn, tid, nt, seg_##op_);                                              \
    }                                                                                         \
    STG_API stg_tensor stg_##op_(stg_graph *g, stg_tensor a, stg_tensor b)                    \
    {                                                                                         \
        return binary(g, &stg_op_##op_, a, b);                                                \
    }                                                                                         \
    const stg_op stg_op_##op_ = {                                                             \
        .name = #op_,                                                                         \
        .flags = STG_OPF_ELEMENTWISE | STG_OPF_INPLACE,                                       \
        .prepare = prepare_elementwise,                                                       \
        .run = run_##op_,                                                                     \
        .backward = backward_##op_,                                                           \
        .flops = flops_elementwise,                                                           \
    };
#define STG_UNARY(op_, expr, deriv, reads)
#define STG_OP(name)
#include "../ops.def"
#undef STG_BINARY
#undef STG_UNARY

/* What each unary derivative reads, besides the incoming gradient. */
#define READS_X_NONE 0
#define READS_Y_NONE 0
#define READS_X_X 1
#define READS_Y_X 0
#define READS_X_Y 0
#define READS_Y_Y 1
#define READS_X_XY 1
#define READS_Y_XY 1

/* The gradient node of a unary op: inputs g, then x and/or y as 'reads' says. */
static void backward_unary(stg_ad *ad, int32_t id, stg_tensor gout, const stg_op *grad_op,
                           bool reads_x, bool reads_y)
{
    const stg_node *n = &ad->g->nodes[id];
    int32_t x = n->in[0], in[3] = {gout.id}, nin = 1;
    if (!stgD_needs(ad, x) || gout.id < 0)
        return;
    if (reads_x)
        in[nin++] = x;
    if (reads_y)
        in[nin++] = id;
    unary_attr attr = *(const unary_attr *)n->attr;
    stg_shape s = n->shape;
    stgD_accumulate(ad, x, stgG_add(ad->g, grad_op, nin, in, &s, &attr));
}

static double flops_unary_grad(const stg_graph *g, const stg_node *n)
{
    (void)g;
    return 2.0 * (double)stgS_numel(&n->shape);
}

#define STG_UNARY(op_, expr, deriv, reads)                                                    \
    STG_CLONES                                                                                \
    static void seg_##op_(float *o, const float *const *in, const int64_t *st, int64_t n,     \
                           const unary_attr *at)                                              \
    {                                                                                         \
        const float *px = in[0], a = at->a, b = at->b;                                        \
        (void)a, (void)b;                                                                     \
        if (st[0] == 1) {                                                                     \
            STG_SIMD for (int64_t i = 0; i < n; i++) {                                        \
                float x = px[i];                                                              \
                o[i] = (expr);                                                                \
            }                                                                                 \
        } else {                                                                              \
            for (int64_t i = 0; i < n; i++) {                                                 \
                float x = px[i * st[0]];                                                      \
                o[i] = (expr);                                                                \
            }                                                                                 \
        }                                                                                     \
    }                                                                                         \
    static void run_##op_(const stg_pnode *pn, const stg_step *sx, int tid, int nt)           \
    {                                                                                         \
        (void)sx;                                                                             \
        run_elementwise(pn, tid, nt, seg_##op_);                                              \
    }                                                                                         \
    /* g * deriv: x is input READS_X, y the next one (strides likewise). */                   \
    STG_CLONES                                                                                \
    static void seg_##op_##_grad(float *o, const float *const *in, const int64_t *st,         \
                                  int64_t n, const unary_attr *at)                            \
    {                                                                                         \
        const float *pg = in[0], *px = in[READS_X_##reads ? 1 : 0];                           \
        const float *py = in[READS_X_##reads ? 2 : 1];                                        \
        int64_t sg = st[0], sx = st[READS_X_##reads ? 1 : 0], sy = st[READS_X_##reads ? 2 : 1]; \
        float a = at->a, b = at->b;                                                           \
        (void)a, (void)b, (void)px, (void)py, (void)sx, (void)sy;                             \
        bool unit = sg == 1 && (!READS_X_##reads || sx == 1) && (!READS_Y_##reads || sy == 1); \
        if (unit) {                                                                           \
            STG_SIMD for (int64_t i = 0; i < n; i++) {                                        \
                float x = READS_X_##reads ? px[i] : 0.0f;                                     \
                float y = READS_Y_##reads ? py[i] : 0.0f;                                     \
                (void)x, (void)y;                                                             \
                o[i] = pg[i] * (deriv);                                                       \
            }                                                                                 \
        } else {                                                                              \
            for (int64_t i = 0; i < n; i++) {                                                 \
                float x = READS_X_##reads ? px[i * sx] : 0.0f;                                \
                float y = READS_Y_##reads ? py[i * sy] : 0.0f;                                \
                (void)x, (void)y;                                                             \
                o[i] = pg[i * sg] * (deriv);                                                  \
            }                                                                                 \
        }                                                                                     \
    }                                                                                         \
    static void run_##op_##_grad(const stg_pnode *pn, const stg_step *sx, int tid, int nt)    \
    {                                                                                         \
        (void)sx;                                                                             \
        run_elementwise(pn, tid, nt, seg_##op_##_grad);                                       \
    }                                                                                         \
    static void backward_##op_(stg_ad *ad, int32_t id, stg_tensor g)                          \
    {                                                                                         \
        backward_unary(ad, id, g, &stg_op_##op_##_grad, READS_X_##reads, READS_Y_##reads);    \
    }                                                                                         \
    const stg_op stg_op_##op_ = {                                                             \
        .name = #op_,                                                                         \
        .flags = STG_OPF_ELEMENTWISE | STG_OPF_INPLACE,                                       \
        .attr_size = sizeof(unary_attr),                                                      \
        .print_attr = print_unary,                                                            \
        .prepare = prepare_elementwise,                                                       \
        .run = run_##op_,                                                                     \
        .backward = backward_##op_,                                                           \
        .flops = flops_elementwise,                                                           \
    };                                                                                        \
    const stg_op stg_op_##op_##_grad = {                                                      \
        .name = #op_ "_grad",                                                                 \
        .flags = STG_OPF_ELEMENTWISE | STG_OPF_INPLACE,                                       \
        .attr_size = sizeof(unary_attr),                                                      \
        .print_attr = print_unary,                                                            \
        .prepare = prepare_elementwise,                                                       \
        .run = run_##op_##_grad,                                                              \
        .flops = flops_unary_grad,                                                            \
    };
#define STG_BINARY(op_, expr)
#include "../ops.def"
#undef STG_OP
#undef STG_UNARY
#undef STG_BINARY

/* Public builders of the unary ops without attributes. */
#define UNARY_BUILDER(name)                                                                   \
    STG_API stg_tensor stg_##name(stg_graph *g, stg_tensor a)                                 \
    {                                                                                         \
        return unary(g, &stg_op_##name, a, 0.0f, 0.0f);                                       \
    }
UNARY_BUILDER(neg)
UNARY_BUILDER(exp)
UNARY_BUILDER(log)
UNARY_BUILDER(sqrt)
UNARY_BUILDER(abs)
UNARY_BUILDER(sin)
UNARY_BUILDER(cos)
UNARY_BUILDER(tanh)
UNARY_BUILDER(sigmoid)
UNARY_BUILDER(relu)
UNARY_BUILDER(softplus)
UNARY_BUILDER(gelu)
