/*
 * The matmul family.  stg_matmul and stg_outer lower to one op, 'matmul'
 * (a batched product whose operands are at least 2-D views):
 *
 *   C[b] = sum over the batch positions that C lacks of A[b] B[b]
 *   dA = matmul(g, swapaxes(B), shape of A)   dB = matmul(swapaxes(A), g, shape of B)
 *
 * The output's batch dims may be a reduction of the broadcast batch dims of A
 * and B: that is how the gradient of a broadcast operand is a sum without a
 * broadcast-shaped temporary.  Vectors become 1-row or 1-column views, and
 * transposes are strides, so the backward graph is made of the same op.
 *
 * At plan time every batch dim is classified (see prepare_matmul): folded
 * into M, N or K of one product where the strides allow, else looped over;
 * loops along which C does not vary accumulate with beta = 1 in a fixed
 * order.  Work is split into units (batch position x row block) whose size
 * depends only on the shapes, so results do not depend on the thread count;
 * a thread runs its adjacent units of one product as one call.
 */
#include <string.h>

#include "../op.h"

/* ---- builders ----------------------------------------------------------- */

/* The batched product of 2-D-or-more views with the given output shape. */
/* Any strides work, stride 0 included: the GEMM driver packs its operands
 * and the vector kernels take strides, so views are never copied here. */
static stg_tensor bmm(stg_graph *g, stg_tensor a, stg_tensor b, const stg_shape *out)
{
    if (a.id < 0 || b.id < 0)
        return stgG_t(-1);
    int32_t in[2] = {a.id, b.id};
    return stgG_add(g, &stg_op_matmul, 2, in, out, NULL);
}

stg_tensor stgK_matmul_sum(stg_graph *g, stg_tensor a, stg_tensor b, const stg_shape *out)
{
    return bmm(g, a, b, out);
}

static stg_tensor as_matrix(stg_graph *g, stg_tensor v, bool row)
{
    int64_t k = stgG_node(g, v)->shape.d[0];
    int64_t dims[2] = {row ? 1 : k, row ? k : 1};
    return stg_reshape(g, v, 2, dims);
}

STG_API stg_tensor stg_matmul(stg_graph *g, stg_tensor a, stg_tensor b)
{
    if (!stgG_ok(g) || !stgG_check_tensor(g, "matmul", a) || !stgG_check_tensor(g, "matmul", b))
        return stgG_t(-1);
    const stg_shape sa = stgG_node(g, a)->shape, sb = stgG_node(g, b)->shape;
    char ba[96], bb[96];
    stgS_str(&sa, ba, sizeof ba);
    stgS_str(&sb, bb, sizeof bb);
    if (sa.nd == 0 || sb.nd == 0)
        return stgG_fail(g, STG_SHAPE,
                         "matmul: a %s and b %s: both operands need at least 1 dim (use mul "
                         "for a scalar)", ba, bb);
    int kb_axis = sb.nd == 1 ? -1 : -2;
    int64_t ka = sa.d[sa.nd - 1], kb = sb.d[sb.nd + kb_axis];
    if (ka != kb)
        return stgG_fail(g, STG_SHAPE, "matmul: a %s and b %s: a's dim -1 (%lld) != b's dim %d (%lld)",
                         ba, bb, (long long)ka, kb_axis, (long long)kb);
    /* Broadcast the batch dims (all but the last two of each matrix operand). */
    stg_shape batch_a = {.nd = sa.nd > 2 ? sa.nd - 2 : 0}, batch_b = {.nd = sb.nd > 2 ? sb.nd - 2 : 0};
    memcpy(batch_a.d, sa.d, (size_t)batch_a.nd * sizeof(int64_t));
    memcpy(batch_b.d, sb.d, (size_t)batch_b.nd * sizeof(int64_t));
    stg_shape out;
    if (!stgS_broadcast(&batch_a, &batch_b, &out)) {
        for (int i = 1; i <= out.nd; i++) {
            int64_t da = i <= batch_a.nd ? batch_a.d[batch_a.nd - i] : 1;
            int64_t db = i <= batch_b.nd ? batch_b.d[batch_b.nd - i] : 1;
            if (da != db && da != 1 && db != 1)
                return stgG_fail(g, STG_SHAPE,
                                 "matmul: a %s and b %s: batch dims do not broadcast: dim %d is "
                                 "%lld in a and %lld in b (sizes must match or one must be 1)",
                                 ba, bb, -2 - i, (long long)da, (long long)db);
        }
    }
    int64_t m = sa.nd >= 2 ? sa.d[sa.nd - 2] : 1, n = sb.nd >= 2 ? sb.d[sb.nd - 1] : 1;
    stg_shape full = out;
    full.d[full.nd++] = m;
    full.d[full.nd++] = n;
    if (!stgS_numel_ok(&full)) {
        char bf[96];
        return stgG_fail(g, STG_SHAPE, "matmul: a %s and b %s: the result %s has more than 2^40 "
                         "elements", ba, bb, stgS_str(&full, bf, sizeof bf));
    }
    stg_tensor a2 = sa.nd == 1 ? as_matrix(g, a, true) : a;
    stg_tensor b2 = sb.nd == 1 ? as_matrix(g, b, false) : b;
    stg_tensor c = bmm(g, a2, b2, &full);
    if (sa.nd > 1 && sb.nd > 1)
        return c;
    /* Drop the dims that the vector operands contributed. */
    stg_shape res = out;
    if (sa.nd != 1)
        res.d[res.nd++] = m;
    if (sb.nd != 1)
        res.d[res.nd++] = n;
    return stg_reshape(g, c, res.nd, res.d);
}

STG_API stg_tensor stg_outer(stg_graph *g, stg_tensor a, stg_tensor b)
{
    if (!stgG_ok(g) || !stgG_check_tensor(g, "outer", a) || !stgG_check_tensor(g, "outer", b))
        return stgG_t(-1);
    const stg_shape *sa = &stgG_node(g, a)->shape, *sb = &stgG_node(g, b)->shape;
    char ba[96], bb[96];
    if (sa->nd != 1 || sb->nd != 1)
        return stgG_fail(g, STG_SHAPE, "outer: a %s and b %s: both operands must be vectors (1 dim)",
                         stgS_str(sa, ba, sizeof ba), stgS_str(sb, bb, sizeof bb));
    stg_shape out = {.nd = 2, .d = {sa->d[0], sb->d[0]}};
    return bmm(g, as_matrix(g, a, false), as_matrix(g, b, true), &out);
}

/* dB first: in a layer x W, the weight gradient is the last reader of x, so
 * x's buffer is free again before dx needs one. */
static void backward_matmul(stg_ad *ad, int32_t id, stg_tensor gout)
{
    const stg_node *n = &ad->g->nodes[id];
    stg_tensor a = stgG_t(n->in[0]), b = stgG_t(n->in[1]);
    if (stgD_needs(ad, b.id)) {
        stg_shape s = ad->g->nodes[b.id].shape;
        stgD_accumulate(ad, b.id, bmm(ad->g, stg_swapaxes(ad->g, a, -1, -2), gout, &s));
    }
    if (stgD_needs(ad, a.id)) {
        stg_shape s = ad->g->nodes[a.id].shape;
        stgD_accumulate(ad, a.id, bmm(ad->g, gout, stg_swapaxes(ad->g, b, -1, -2), &s));
    }
}

static double flops_matmul(const stg_graph *g, const stg_node *n)
{
    const stg_node *a = &g->nodes[n->in[0]], *b = &g->nodes[n->in[1]];
    stg_shape ba = a->shape, bb = b->shape, bc = n->shape, t;
    ba.nd -= 2, bb.nd -= 2, bc.nd -= 2;
    stgS_broadcast(&ba, &bb, &t);
    stgS_broadcast(&t, &bc, &ba);
    double m = (double)a->shape.d[a->shape.nd - 2], k = (double)a->shape.d[a->shape.nd - 1];
    double nn = (double)b->shape.d[b->shape.nd - 1];
    return 2.0 * m * nn * k * (double)stgS_numel(&ba);
}

/* ---- plan-time lowering -------------------------------------------------- */

enum gemm_kind { K_GEMM, K_GEMV, K_GEVM, K_GER, K_DOT };

typedef struct gemm_desc {
    enum gemm_kind kind;
    const stgK_kernel *kern; /* the plan's GEMM kernel */
    int64_t m, n, k;
    int64_t rsa, csa, rsb, csb, rsc, csc;
    stg_loop outer; /* batch loops along which C varies (ops: c, a, b) */
    stg_loop red;   /* batch loops summed into C (ops: c unused, a, b) */
    bool split_n;   /* units cut N (columns) rather than M (rows) */
    int64_t pdim;   /* the dim cut into blocks: n if split_n, else m */
    int64_t align, nblk, units; /* blocks of pdim: see block_start */
    bool serial;    /* too little work to share */
} gemm_desc;

/* One batch dim of the iteration space, with each operand's stride. */
typedef struct bdim {
    int64_t e, sa, sb, sc;
} bdim;

static int64_t batch_stride(const stg_node *x, int L, int i, int64_t *ext)
{
    int lx = x->shape.nd - 2, j = i - (L - lx);
    if (j < 0 || x->shape.d[j] == 1)
        return 0;
    *ext = x->shape.d[j];
    return x->lay.st[j];
}

/* Folds batch dim 'b' into M, N or K of the product when the strides make
 * the combined index walk memory the same way; false if it cannot. */
static bool fold(gemm_desc *d, const bdim *b)
{
    if (b->sb == 0 && b->sc != 0 &&
        (d->m == 1 || (b->sa == d->m * d->rsa && b->sc == d->m * d->rsc))) {
        if (d->m == 1)
            d->rsa = b->sa, d->rsc = b->sc;
        d->m *= b->e;
        return true;
    }
    if (b->sa == 0 && b->sc != 0 &&
        (d->n == 1 || (b->sb == d->n * d->csb && b->sc == d->n * d->csc))) {
        if (d->n == 1)
            d->csb = b->sb, d->csc = b->sc;
        d->n *= b->e;
        return true;
    }
    if (b->sc == 0 && (d->k == 1 || (b->sa == d->k * d->csa && b->sb == d->k * d->rsb))) {
        if (d->k == 1)
            d->csa = b->sa, d->rsb = b->sb;
        d->k *= b->e;
        return true;
    }
    return false;
}

/*
 * Work units: batch positions x blocks of one dim of each product.  A GEMM
 * is cut along N when N > M, else along M: every unit packs its own part of
 * one operand and all of the other, so the cut goes through the larger one
 * and blocks stay wide (about MIN_COLS columns or MIN_ROWS rows at least)
 * to keep that repeated packing small.  A product has a power of two of
 * blocks, of equal size give or take the alignment, so that 2, 4, 8 or 16
 * threads get equal shares.  Vector-shaped products (gemv, gevm, ger)
 * pack nothing and are bound by memory bandwidth, which two cores have more
 * of than one, so they are cut from a smaller size on.  A lone product (no
 * batch loop of outputs to share instead, such as a linear layer's forward
 * pass or a convolution's weight gradient summed over the batch) takes
 * blocks down to four tiles wide: packing the shared operand once more
 * costs far less than leaving threads idle.  The cut depends only
 * on the shapes (never on the thread count), so results do not depend on
 * the thread count.
 */
#define MAX_UNITS 16
#define MIN_ROWS 96
#define MIN_COLS 128

static void split_work(gemm_desc *d, const stgK_kernel *kr)
{
    d->split_n = d->kind == K_GEVM || (d->kind == K_GEMM && d->n > d->m);
    d->pdim = d->kind == K_DOT ? 1 : d->split_n ? d->n : d->m;
    double unit_flops = 2.0 * (double)d->m * (double)d->n * (double)d->k * (double)d->red.total;
    int64_t min_blk = d->split_n ? MIN_COLS : MIN_ROWS;
    /* blocks of a GEMM in whole micro-kernel tiles (an edge tile computes a
     * whole tile for part of one), whichever way the driver orients C; the
     * vector loops want whole vectors of columns, and rows in eights (the
     * matrix-vector loops take four at a time) */
    if (d->kind == K_GEMM) {
        bool t = stgK_gemm_transposes(kr, d->rsc, d->csc);
        d->align = d->split_n != t ? kr->nr : kr->mr;
    } else {
        d->align = d->split_n ? 16 : 8;
    }
    if (d->kind == K_GEMM && d->outer.total == 1)
        min_blk = 4 * d->align;
    d->nblk = 1;
    double cut_from = d->kind == K_GEMM ? 1e6 : 1.28e5;
    if (d->outer.total < MAX_UNITS && unit_flops > cut_from) {
        int64_t want = (MAX_UNITS + d->outer.total - 1) / d->outer.total, most = d->pdim / min_blk;
        while (2 * d->nblk <= want && 2 * d->nblk <= most)
            d->nblk *= 2;
    }
    d->units = d->outer.total * d->nblk;
    d->serial = unit_flops * (double)d->outer.total < 64e3;
}

/* Where block b of the cut dim starts: equal shares rounded down to the
 * alignment (whole vectors of columns; rows in fours for the matrix-vector
 * loops), the last block ending at pdim.  Blocks are at least MIN_ROWS or
 * MIN_COLS long, so none is empty. */
static int64_t block_start(const gemm_desc *d, int64_t b)
{
    return b >= d->nblk ? d->pdim : b * d->pdim / d->nblk / d->align * d->align;
}

static stg_status prepare_matmul(stg_prep *cx, stg_pnode *pn)
{
    const stg_node *c = pn->node, *a = pn->innode[0], *b = pn->innode[1];
    gemm_desc *d = stgP_opdata(cx, pn, sizeof *d);
    if (!d)
        return STG_NOMEM;
    int na = a->shape.nd, nb = b->shape.nd, nc = c->shape.nd;
    d->m = a->shape.d[na - 2], d->k = a->shape.d[na - 1], d->n = b->shape.d[nb - 1];
    d->rsa = a->lay.st[na - 2], d->csa = a->lay.st[na - 1];
    d->rsb = b->lay.st[nb - 2], d->csb = b->lay.st[nb - 1];
    d->rsc = c->lay.st[nc - 2], d->csc = c->lay.st[nc - 1];

    int L = (na > nb ? na : nb) - 2;
    if (nc - 2 > L)
        L = nc - 2;
    bdim dims[STG_MAX_DIMS];
    int nd = 0;
    for (int i = L - 1; i >= 0; i--) { /* innermost first: folds extend M, N, K outward */
        bdim bd = {1, 0, 0, 0};
        bd.sa = batch_stride(a, L, i, &bd.e);
        bd.sb = batch_stride(b, L, i, &bd.e);
        bd.sc = batch_stride(c, L, i, &bd.e);
        if (bd.e > 1 && !fold(d, &bd))
            dims[nd++] = bd;
    }
    /* What is left becomes two loops, outermost dim first. */
    stg_shape os = {0}, rs = {0};
    int64_t ost[STG_LOOP_OPS][STG_MAX_DIMS] = {{0}}, rst[STG_LOOP_OPS][STG_MAX_DIMS] = {{0}};
    for (int i = nd - 1; i >= 0; i--) {
        stg_shape *s = dims[i].sc ? &os : &rs;
        int64_t(*st)[STG_MAX_DIMS] = dims[i].sc ? ost : rst;
        st[0][s->nd] = dims[i].sc, st[1][s->nd] = dims[i].sa, st[2][s->nd] = dims[i].sb;
        s->d[s->nd++] = dims[i].e;
    }
    stgS_loop_init(&d->outer, &os, 3, ost);
    stgS_loop_init(&d->red, &rs, 3, rst);

    if (d->m == 1 && d->n == 1)
        d->kind = K_DOT;
    else if (d->k == 1)
        d->kind = K_GER;
    else if (d->n == 1)
        d->kind = K_GEMV;
    else if (d->m == 1)
        d->kind = K_GEVM;
    else
        d->kind = K_GEMM;
    d->kern = cx->kern;
    split_work(d, d->kern);
    pn->serial = d->serial;
    if (d->kind == K_GEMM) /* packing, for a call that covers every block (see run_matmul) */
        stgP_scratch(cx, pn, stgK_gemm_workspace(d->kern, d->m, d->n, d->k), true);
    return STG_OK;
}

/* ---- kernels --------------------------------------------------------------- */

/* Vector-shaped products are memory-bound: BLIS sgemm runs them at a few
 * percent of peak, so they use the loops of vector_kernels.c where the
 * strides are unit ones, and plain loops otherwise. */

static float dot(int64_t k, const float *x, int64_t sx, const float *y, int64_t sy)
{
    if (sx == 1 && sy == 1)
        return stgV_dot(k, x, y);
    float s = 0.0f;
    for (int64_t i = 0; i < k; i++)
        s += x[i * sx] * y[i * sy];
    return s;
}

/* y[0..len) (stride sy) = sum_k M[., k] x[k], added to y when beta is 1
 * (beta is 0 or 1); M's rows at stride 'rs' and columns at stride 'cs'. */
static void matvec(int64_t len, int64_t k, const float *M, int64_t rs, int64_t cs,
                   const float *x, int64_t sx, float beta, float *y, int64_t sy)
{
    if (rs == 1 && cs != 1 && sy == 1) { /* columns are contiguous: add four at a time */
        if (beta == 0.0f)
            memset(y, 0, sizeof(float) * (size_t)len);
        int64_t j = 0;
        for (; j + 4 <= k; j += 4) {
            float c[4] = {x[j * sx], x[(j + 1) * sx], x[(j + 2) * sx], x[(j + 3) * sx]};
            stgV_axpy4(len, c, M + j * cs, cs, y);
        }
        for (; j < k; j++)
            stgV_axpy(len, x[j * sx], M + j * cs, y);
        return;
    }
    int64_t i = 0;
    if (cs == 1 && sx == 1) /* rows are contiguous: four dots share each load of x */
        for (; i + 4 <= len; i += 4) {
            float v[4];
            stgV_dot4(k, M + i * rs, rs, x, v);
            for (int j = 0; j < 4; j++)
                y[(i + j) * sy] = beta == 0.0f ? v[j] : y[(i + j) * sy] + v[j];
        }
    for (; i < len; i++) {
        float v = dot(k, M + i * rs, cs, x, sx);
        y[i * sy] = beta == 0.0f ? v : y[i * sy] + v;
    }
}

/* C[lo..hi, :] = a b^T (+ C when beta is 1): the outer products of K = 1. */
static void ger(const gemm_desc *d, const float *a, const float *b, float beta, float *c,
                int64_t lo, int64_t hi)
{
    if (d->n == 1 && d->rsa == 1 && d->rsc == 1) { /* one column: a scaled copy of a */
        if (beta == 0.0f)
            stgV_scale(hi - lo, b[0], a + lo, c + lo);
        else
            stgV_axpy(hi - lo, b[0], a + lo, c + lo);
        return;
    }
    for (int64_t i = lo; i < hi; i++) {
        float ai = a[i * d->rsa];
        float *ci = c + i * d->rsc;
        if (d->csc == 1 && d->csb == 1) {
            if (beta == 0.0f)
                stgV_scale(d->n, ai, b, ci);
            else
                stgV_axpy(d->n, ai, b, ci);
        } else {
            for (int64_t j = 0; j < d->n; j++) {
                float v = ai * b[j * d->csb];
                ci[j * d->csc] = beta == 0.0f ? v : ci[j * d->csc] + v;
            }
        }
    }
}

/* Runs rows [lo, hi) of one product, or columns when the units cut N. */
static void product(float *work, const gemm_desc *d, const float *a, const float *b,
                    float *c, float beta, int64_t lo, int64_t hi)
{
    int64_t len = hi - lo;
    switch (d->kind) {
    case K_GEMM:
        if (d->split_n)
            stgK_gemm(d->kern, work, d->m, len, d->k, a, d->rsa, d->csa, b + lo * d->csb, d->rsb,
                      d->csb, beta, c + lo * d->csc, d->rsc, d->csc);
        else
            stgK_gemm(d->kern, work, len, d->n, d->k, a + lo * d->rsa, d->rsa, d->csa, b, d->rsb,
                      d->csb, beta, c + lo * d->rsc, d->rsc, d->csc);
        break;
    case K_GEMV:
        matvec(len, d->k, a + lo * d->rsa, d->rsa, d->csa, b, d->rsb, beta, c + lo * d->rsc, d->rsc);
        break;
    case K_GEVM: /* c[j] = sum_k a[k] B[k, j]: B's columns play the rows */
        matvec(len, d->k, b + lo * d->csb, d->csb, d->rsb, a, d->csa, beta, c + lo * d->csc, d->csc);
        break;
    case K_GER:
        ger(d, a, b, beta, c, lo, hi);
        break;
    case K_DOT: {
        float v = dot(d->k, a, d->csa, b, d->rsb);
        c[0] = beta == 0.0f ? v : c[0] + v;
        break;
    }
    }
}

static void run_matmul(const stg_pnode *pn, const stg_step *sx, int tid, int nt)
{
    const gemm_desc *d = pn->desc;
    int64_t lo, hi;
    stgR_share(pn, d->units, tid, nt, &lo, &hi);
    float *work = stgR_scratch(pn, tid);
    (void)sx;
    /* The thread's consecutive blocks of one product run as one call, so the
     * operand that every block needs is packed once, not once per block.
     * Each element's sum is the same whatever rows or columns a call covers. */
    for (int64_t u = lo, next; u < hi; u = next) {
        int64_t o = u / d->nblk, end = (o + 1) * d->nblk;
        next = end < hi ? end : hi;
        int64_t r0 = block_start(d, u % d->nblk), r1 = block_start(d, next - o * d->nblk);
        int64_t oo[STG_LOOP_OPS];
        stgS_loop_offsets(&d->outer, o, oo);
        float *c = pn->out + oo[0];
        for (int64_t r = 0; r < d->red.total; r++) {
            int64_t ro[STG_LOOP_OPS];
            stgS_loop_offsets(&d->red, r, ro);
            product(work, d, pn->in[0] + oo[1] + ro[1], pn->in[1] + oo[2] + ro[2], c,
                    r == 0 ? 0.0f : 1.0f, r0, r1);
        }
    }
}

bool stgK_matmul_info(const stg_pnode *pn, stg_matmul_info *info)
{
    static const char *const kinds[] = {"gemm", "gemv", "gevm", "ger", "dot"};
    const gemm_desc *d = pn->desc;
    if (pn->node->op != &stg_op_matmul || !d)
        return false;
    info->kind = kinds[d->kind];
    info->m = d->m, info->n = d->n, info->k = d->k;
    info->reduced = d->red.total;
    info->products = d->outer.total * d->red.total;
    info->units = d->units;
    return true;
}

const stg_op stg_op_matmul = {
    .name = "matmul",
    .prepare = prepare_matmul,
    .run = run_matmul,
    .backward = backward_matmul,
    .flops = flops_matmul,
};
