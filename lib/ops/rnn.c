/*
 * Recurrent layers (torch.nn.RNN, LSTM, GRU), unrolled over a fixed length
 * T.  One layer is:
 *
 *   P    = x W_ih^T + b                     (T, N, G H): every step's input projection, one
 *                                           GEMM; b = b_ih + b_hh (a GRU's: b_ih)
 *   S    = rnn_init(P, W_hh, b_hh, h0, c0)  (T + 1, N, W): row 0 holds the initial state
 *   S    = rnn_cell(S, P, W_hh, b_hh)       step t: row t + 1 from row t, in place (CHAIN)
 *   out  = S[1:, :, 0:H]                    a view: h of every step
 *
 * Each row of S holds, per batch element, h, then c (LSTM), then the
 * gates after their nonlinearities (LSTM i f g o; GRU r z n, then W_hn h +
 * b_hn; RNN: a spare block), which is what the backward pass needs.  A
 * step is one product h W_hh^T and one fused pass over the gates; threads
 * split the hidden units, so a step needs no barrier inside it.
 *
 * The backward pass runs the chain the other way on a gradient buffer dS
 * of S's layout: rnn_cell_grad turns row t + 1's dh (and dc) into the
 * gradient of the step's pre-activations, stored in row t + 1's gate block,
 * and adds the direct paths into row t; rnn_hgrad adds dh_{t-1} = dA W_hh
 * into row t.  When the chain reaches rnn_init, dS holds every step's
 * gate gradient in one strided (T, N, G H) block: that block is dP, and the
 * recurrent weight's gradient is one GEMM over all T N rows (K = T N), its
 * bias's one sum, with no temporary per step.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../op.h"

typedef struct rnn_attr {
    int mode;                    /* stg_rnn_mode */
    int has_bias, has_h0, has_c0;
    int64_t t;                   /* cells: the step */
    int64_t steps, batch, hidden; /* T, N, H */
    int32_t last;                /* rnn_init: the last cell (the final S) */
} rnn_attr;

static void print_rnn(const void *attr, char *buf, size_t len)
{
    static const char *const names[] = {"rnn_tanh", "rnn_relu", "lstm", "gru"};
    const rnn_attr *a = attr;
    snprintf(buf, len, "%s t=%lld", names[a->mode], (long long)a->t);
}

/* The step a cell, a cell gradient or an hgrad node belongs to. */
static int64_t step_of(const void *attr)
{
    return ((const rnn_attr *)attr)->t;
}

/* ---- the row layout ---------------------------------------------------------- */

static int gates_of(int mode);

static int gates_of(int mode)
{
    return mode == STG_LSTM ? 4 : mode == STG_GRU ? 3 : 1;
}

/* Floats per batch element of a row, and where each block starts. */
typedef struct rnn_geom {
    int64_t n, h, g, width; /* N, H, G, the row's floats per batch element */
    int64_t oc, oa, ohn;    /* c (LSTM), the gates, W_hn h + b_hn (GRU) */
} rnn_geom;

static rnn_geom geom_of(const rnn_attr *a)
{
    int64_t h = a->hidden;
    rnn_geom s = {.n = a->batch, .h = h, .g = gates_of(a->mode), .oc = h};
    s.oa = a->mode == STG_LSTM ? 2 * h : h;
    s.ohn = 4 * h;
    s.width = a->mode == STG_LSTM ? 6 * h : a->mode == STG_GRU ? 5 * h : 2 * h;
    return s;
}

/* Float offset of batch element n of row r. */
static inline int64_t at(const rnn_geom *s, int64_t r, int64_t n)
{
    return (r * s->n + n) * s->width;
}

/* What one step's node moves: two rows of the state buffer, a step's
 * projections or gate gradients, and the recurrent weight (not the whole
 * buffers its inputs are). */
static void traffic_step(const stg_graph *g, const stg_node *n, double *read, double *written)
{
    (void)g;
    rnn_geom s = geom_of(n->attr);
    double row = 4.0 * (double)(s.n * s.width);
    *read = 2.0 * row + 4.0 * (double)(s.g * s.h * s.h);
    *written = row;
}

/* ---- op data: shares of the hidden units, GEMM scratch ------------------------ */

typedef struct cell_desc {
    rnn_geom s;
    const stgK_kernel *kern;
    int64_t block;  /* hidden units are shared in blocks of this many: the kernel's NR */
    int64_t blocks; /* ... and there are this many */
    int64_t packed[4]; /* where each packed W_hh piece starts in rnn_pack's output */
} cell_desc;

/* A share of the hidden units (or of H columns): whole blocks. */
static void hidden_share(const stg_pnode *pn, const cell_desc *d, int tid, int nt, int64_t *lo,
                         int64_t *hi)
{
    int64_t blo, bhi;
    stgR_share(pn, d->blocks, tid, nt, &blo, &bhi);
    *lo = blo * d->block < d->s.h ? blo * d->block : d->s.h;
    *hi = bhi * d->block < d->s.h ? bhi * d->block : d->s.h;
}

/* ---- W_hh packed once per step ---------------------------------------------- */

/* Columns of the cells' packed B: every gate's hidden units padded to
 * whole NR-wide panels. */
static int64_t cell_cols(const stgK_kernel *kr, const rnn_attr *a)
{
    return gates_of(a->mode) * ((a->hidden + kr->nr - 1) / kr->nr * kr->nr);
}

/* rnn_pack's pieces, in order: W_hh^T for the cells (H x G H), then W_hh as
 * the hgrad products' B (G H x H; a GRU's as its 2H rows and its last H
 * rows).  The cells' B has its panels in the order (block of NR hidden
 * units, gate): a share of whole blocks is one run of columns, so a step's
 * share of all gates is one product.  Offsets in floats; returns the total. */
static int64_t pack_layout(const stgK_kernel *kr, const rnn_attr *a, int64_t *off)
{
    off[0] = 0;
    return (int64_t)stgK_packed_b_floats(kr, a->hidden, cell_cols(kr, a));
}

/* Floats rnn_pack's output needs with any kernel (NR up to 64, MR up to 32):
 * the graph is built before the plan chooses one. */
static int64_t pack_bound(const rnn_attr *a)
{
    int64_t H = a->hidden, G = gates_of(a->mode);
    int64_t one = ((H + 63) * H + 128 + 15) / 16 * 16;
    return G * one + 64;
}

/* The hgrad products' B pieces: W_hh itself (its rows are the K of dA
 * W_hh), packed per KC block; a GRU's in two parts. */
static int64_t hpack_layout(const stgK_kernel *kr, const rnn_attr *a, int64_t at, int64_t *off)
{
    int64_t H = a->hidden, G = gates_of(a->mode);
    off[0] = at;
    if (a->mode == STG_GRU) {
        at += (int64_t)stgK_packed_b_floats(kr, 2 * H, H);
        off[1] = at;
        return at + (int64_t)stgK_packed_b_floats(kr, H, H);
    }
    return at + (int64_t)stgK_packed_b_floats(kr, G * H, H);
}

static int64_t hpack_bound(const rnn_attr *a)
{
    int64_t H = a->hidden, G = gates_of(a->mode);
    return 2 * (((H + 63) * G * H + 128 + 15) / 16 * 16) + 64;
}

typedef struct pack_desc {
    const stgK_kernel *kern;
    int64_t off[4], hoff[2];
} pack_desc;

static stg_status prepare_pack(stg_prep *cx, stg_pnode *pn)
{
    pack_desc *d = stgP_opdata(cx, pn, sizeof *d);
    if (!d)
        return STG_NOMEM;
    const rnn_attr *a = pn->node->attr;
    d->kern = cx->kern;
    int64_t end = hpack_layout(cx->kern, a, pack_layout(cx->kern, a, d->off), d->hoff);
    if (end > stgS_numel(&pn->node->shape))
        return stgP_fail(cx, STG_STATE, "rnn_pack: %lld floats of packed weights do not fit the "
                         "%lld planned", (long long)end, (long long)stgS_numel(&pn->node->shape));
    return STG_OK;
}

/* Each thread packs whole pieces: the cells' panels, then hgrad's B. */
static void run_pack(const stg_pnode *pn, const stg_step *sx, int tid, int nt)
{
    const pack_desc *d = pn->desc;
    const rnn_attr *a = pn->node->attr;
    const float *W = pn->in[0];
    int64_t H = a->hidden, G = gates_of(a->mode), nr = d->kern->nr, blocks = (H + nr - 1) / nr;
    int64_t panels = G * blocks, pieces = panels + (a->mode == STG_GRU ? 2 : 1);
    (void)sx;
    for (int64_t q = tid; q < pieces; q += nt) {
        int64_t blk = q / G, g = q % G, cols = H - blk * nr < nr ? H - blk * nr : nr;
        if (q < panels) /* block blk of gate g's W_hh^T: B[k][j] = W[(g H + blk NR + j) H + k] */
            stgK_pack_b_cols(d->kern, H, cell_cols(d->kern, a), q * nr, cols,
                             W + (g * H + blk * nr) * H, 1, H, pn->out + d->off[0]);
        else if (a->mode == STG_GRU) /* rows [0, 2H), then [2H, 3H) */
            stgK_pack_b(d->kern, q == panels ? 2 * H : H, H, W + (q == panels ? 0 : 2 * H * H),
                        H, 1, pn->out + d->hoff[q - panels]);
        else
            stgK_pack_b(d->kern, G * H, H, W, H, 1, pn->out + d->hoff[0]);
    }
}

/* Per-thread scratch: a GEMM workspace for an (N x cols_per share x k)
 * product, and 'extra' floats per hidden unit of the share and row. */
static stg_status prepare_shares(stg_prep *cx, stg_pnode *pn, int64_t k, int64_t cols_per,
                                 int64_t extra_per_col)
{
    cell_desc *d = stgP_opdata(cx, pn, sizeof *d);
    if (!d)
        return STG_NOMEM;
    d->s = geom_of(pn->node->attr);
    d->kern = cx->kern;
    d->block = cx->kern->nr;
    d->blocks = (d->s.h + d->block - 1) / d->block;
    int64_t hoff[2] = {0, 0};
    hpack_layout(cx->kern, pn->node->attr, pack_layout(cx->kern, pn->node->attr, d->packed), hoff);
    if (pn->node->op == &stg_op_rnn_hgrad)
        d->packed[0] = hoff[0], d->packed[1] = hoff[1];
    /* a share's hidden units, in whole blocks */
    int64_t per = (d->blocks + cx->threads - 1) / cx->threads * d->block;
    pn->serial = 2.0 * (double)d->s.n * (double)d->s.h * (double)k < 2e5;
    if (pn->serial)
        per = d->blocks * d->block;
    size_t work = stgK_gemm_workspace(d->kern, d->s.n, cols_per * per, k);
    size_t more = (size_t)(d->s.n * per * extra_per_col) * sizeof(float);
    stgP_scratch(cx, pn, (work + STG_ALIGN - 1) / STG_ALIGN * STG_ALIGN + more, true);
    return STG_OK;
}

/* ---- rnn_init: (P, W_hh [, b_hh] [, h0] [, c0]) -> S with row 0 set --------- */

static void run_init(const stg_pnode *pn, const stg_step *sx, int tid, int nt)
{
    const rnn_attr *a = pn->node->attr;
    rnn_geom s = geom_of(a);
    (void)sx, (void)nt;
    if (tid != 0)
        return;
    int j = 2 + a->has_bias;
    const float *h0 = a->has_h0 ? pn->in[j++] : NULL, *c0 = a->has_c0 ? pn->in[j] : NULL;
    for (int64_t n = 0; n < s.n; n++) {
        float *row = pn->out + at(&s, 0, n);
        memset(row, 0, (size_t)s.width * sizeof *row);
        if (h0)
            memcpy(row, h0 + n * s.h, (size_t)s.h * sizeof *row);
        if (c0)
            memcpy(row + s.oc, c0 + n * s.h, (size_t)s.h * sizeof *row);
    }
}

/* ---- rnn_cell: (S, P, W_hh [, b_hh]) -> S with row t + 1 ---------------------- */

static stg_status prepare_cell(stg_prep *cx, stg_pnode *pn)
{
    const rnn_attr *a = pn->node->attr;
    /* the recurrent product of a share of every gate, its result, and one
     * row of the share for tanh(c) */
    int64_t G = gates_of(a->mode);
    return prepare_shares(cx, pn, a->hidden, G, G + 1);
}

/* y = p + r (+ b) for one gate's share of a row; r in the product's
 * layout: runs of NR for this gate, G NR apart; p may be NULL */
STG_CLONES static void preact(int64_t n, int64_t nr, int64_t G, const float *restrict p,
                              const float *restrict r, const float *restrict b,
                              float *restrict y)
{
    for (int64_t j0 = 0; j0 < n; j0 += nr, r += G * nr) {
        int64_t m = n - j0 < nr ? n - j0 : nr;
        for (int64_t j = 0; j < m; j++)
            y[j0 + j] = (p ? p[j0 + j] : 0.0f) + r[j] + (b ? b[j0 + j] : 0.0f);
    }
}

/* LSTM: c = f c_prev + i g; tc = c (tanh taken after) */
STG_CLONES static void lstm_c(int64_t n, const float *restrict i, const float *restrict f,
                              const float *restrict g, const float *restrict cprev,
                              float *restrict c)
{
    for (int64_t j = 0; j < n; j++)
        c[j] = f[j] * cprev[j] + i[j] * g[j];
}

STG_CLONES static void mul(int64_t n, const float *restrict x, const float *restrict y,
                           float *restrict z)
{
    for (int64_t j = 0; j < n; j++)
        z[j] = x[j] * y[j];
}

static void run_cell(const stg_pnode *pn, const stg_step *sx, int tid, int nt)
{
    const cell_desc *d = pn->desc;
    const rnn_attr *a = pn->node->attr;
    const rnn_geom *s = &d->s;
    int64_t blo, bhi, t = a->t;
    (void)sx;
    stgR_share(pn, d->blocks, tid, nt, &blo, &bhi);
    int64_t nr = d->block, G = s->g, N = s->n, H = s->h;
    int64_t lo = blo * nr, hi = bhi * nr < H ? bhi * nr : H, len = hi - lo;
    if (len <= 0)
        return;
    /* R (N x G (bhi - blo) NR) = h_{t} (the previous state) times the
     * share's columns of W_hh^T, gates interleaved by blocks as rnn_pack
     * laid them out: one product for every gate */
    int64_t wide = G * (bhi - blo) * nr;
    float *S = pn->out, *work = stgR_scratch(pn, tid);
    size_t wbytes = stgK_gemm_workspace(d->kern, N, wide, H);
    float *R = work + (wbytes + STG_ALIGN - 1) / STG_ALIGN * STG_ALIGN / sizeof(float);
    float *tmp = R + N * wide;
    const float *P = pn->in[1] + t * N * G * H, *W = pn->in[2], *packed = pn->in[3];
    const float *b = a->has_bias ? pn->in[4] : NULL, *h = S + at(s, t, 0);
    if (!stgK_gemm_packed_b(d->kern, work, N, wide, H, h, s->width, 1, packed + d->packed[0],
                            G * lo, cell_cols(d->kern, a), 0.0f, R, wide, 1))
        for (int64_t q = 0; q < G * (bhi - blo); q++) {
            int64_t blk = blo + q / G, g = q % G, cols = H - blk * nr < nr ? H - blk * nr : nr;
            stgK_gemm(d->kern, work, N, cols, H, h, s->width, 1, W + (g * H + blk * nr) * H, 1,
                      H, 0.0f, R + q * nr, wide, 1);
        }
    /* then the gates, a whole share of a row at a time so the
     * nonlinearities run as vector loops */
    for (int64_t n = 0; n < N; n++) {
        const float *prev = S + at(s, t, n) + lo, *p = P + n * G * H + lo;
        float *row = S + at(s, t + 1, n) + lo, *ga = row + s->oa;
#define RG(g) (R + n * wide + (g) * nr)
#define BG(g) (b ? b + (g) * H + lo : NULL)
        if (a->mode == STG_LSTM) {
            for (int64_t g = 0; g < 4; g++)
                preact(len, nr, G, p + g * H, RG(g), BG(g), ga + g * H);
            stgV_sigmoid(len, ga, ga);
            stgV_sigmoid(len, ga + H, ga + H);
            stgV_tanh(len, ga + 2 * H, ga + 2 * H);
            stgV_sigmoid(len, ga + 3 * H, ga + 3 * H);
            lstm_c(len, ga, ga + H, ga + 2 * H, prev + s->oc, row + s->oc);
            stgV_tanh(len, row + s->oc, tmp);
            mul(len, ga + 3 * H, tmp, row);
        } else if (a->mode == STG_GRU) {
            for (int64_t g = 0; g < 2; g++)
                preact(len, nr, G, p + g * H, RG(g), BG(g), ga + g * H);
            stgV_sigmoid(len, ga, ga);
            stgV_sigmoid(len, ga + H, ga + H);
            float *hn = row + s->ohn, *nn = ga + 2 * H;
            const float *pn_ = p + 2 * H, *rr = ga, *z = ga + H;
            preact(len, nr, G, NULL, RG(2), BG(2), hn);
            for (int64_t j = 0; j < len; j++)
                nn[j] = pn_[j] + rr[j] * hn[j];
            stgV_tanh(len, nn, nn);
            for (int64_t j = 0; j < len; j++)
                row[j] = (1.0f - z[j]) * nn[j] + z[j] * prev[j];
        } else {
            preact(len, nr, G, p, RG(0), BG(0), row);
            if (a->mode == STG_RNN_TANH)
                stgV_tanh(len, row, row);
            else
                for (int64_t j = 0; j < len; j++)
                    row[j] = row[j] <= 0.0f ? 0.0f : row[j];
            memset(ga, 0, (size_t)len * sizeof *ga);
        }
#undef RG
#undef BG
    }
}

static double flops_cell(const stg_graph *g, const stg_node *n)
{
    (void)g;
    const rnn_attr *a = n->attr;
    double gh = (double)(gates_of(a->mode) * a->hidden);
    return 2.0 * (double)a->batch * gh * (double)a->hidden + 8.0 * (double)a->batch * gh;
}

/* ---- rnn_cell_grad: (dS, S) -> dS with row t + 1's gate gradients ------------ */

static stg_status prepare_cell_grad(stg_prep *cx, stg_pnode *pn)
{
    cell_desc *d = stgP_opdata(cx, pn, sizeof *d);
    if (!d)
        return STG_NOMEM;
    d->s = geom_of(pn->node->attr);
    d->block = 16;
    d->blocks = (d->s.h + 15) / 16;
    pn->serial = d->s.n * d->s.h * d->s.g < STG_GRAIN;
    int64_t per = (d->blocks + cx->threads - 1) / cx->threads * 16;
    stgP_scratch(cx, pn, (size_t)(pn->serial || per > d->s.h ? d->s.h : per) * sizeof(float),
                 true); /* tanh(c) of one row's share */
    return STG_OK;
}

/* One LSTM row's share: the gate gradients from dh, dc and the saved gates;
 * dc_prev += dc f.  tc = tanh(c). */
STG_CLONES static void lstm_back(int64_t n, int64_t H, const float *restrict ga,
                                 const float *restrict tc, const float *restrict cprev,
                                 const float *restrict dh, const float *restrict dcin,
                                 float *restrict da, float *restrict dcprev)
{
    const float *i = ga, *f = ga + H, *g = ga + 2 * H, *o = ga + 3 * H;
    for (int64_t j = 0; j < n; j++) {
        float dc = dcin[j] + dh[j] * o[j] * (1.0f - tc[j] * tc[j]);
        da[j] = dc * g[j] * i[j] * (1.0f - i[j]);
        da[H + j] = dc * cprev[j] * f[j] * (1.0f - f[j]);
        da[2 * H + j] = dc * i[j] * (1.0f - g[j] * g[j]);
        da[3 * H + j] = dh[j] * tc[j] * o[j] * (1.0f - o[j]);
        dcprev[j] += dc * f[j];
    }
}

static void run_cell_grad(const stg_pnode *pn, const stg_step *sx, int tid, int nt)
{
    const cell_desc *d = pn->desc;
    const rnn_attr *a = pn->node->attr;
    const rnn_geom *s = &d->s;
    int64_t lo, hi, t = a->t, H = s->h;
    (void)sx;
    hidden_share(pn, d, tid, nt, &lo, &hi);
    float *dS = pn->out, *tc = stgR_scratch(pn, tid);
    const float *S = pn->in[1];
    for (int64_t n = 0; n < s->n; n++) {
        const float *row = S + at(s, t + 1, n), *prev = S + at(s, t, n);
        float *drow = dS + at(s, t + 1, n), *dprev = dS + at(s, t, n);
        if (a->mode == STG_LSTM && hi > lo) {
            stgV_tanh(hi - lo, row + s->oc + lo, tc);
            lstm_back(hi - lo, H, row + s->oa + lo, tc, prev + s->oc + lo, drow + lo,
                      drow + s->oc + lo, drow + s->oa + lo, dprev + s->oc + lo);
            continue;
        }
        for (int64_t j = lo; j < hi; j++) {
            float dh = drow[j];
            if (a->mode == STG_GRU) {
                float rr = row[s->oa + j], z = row[s->oa + H + j], nn = row[s->oa + 2 * H + j];
                float dn = dh * (1.0f - z) * (1.0f - nn * nn);
                drow[s->oa + j] = dn * row[s->ohn + j] * rr * (1.0f - rr);
                drow[s->oa + H + j] = dh * (prev[j] - nn) * z * (1.0f - z);
                drow[s->oa + 2 * H + j] = dn;
                drow[s->ohn + j] = dn * rr;
                dprev[j] += dh * z;
            } else {
                float h = row[j];
                drow[s->oa + j] = a->mode == STG_RNN_RELU ? (h <= 0.0f ? 0.0f : dh)
                                                          : dh * (1.0f - h * h);
            }
        }
    }
}

/* ---- rnn_hgrad: (dS, W_hh) -> dS with dh_{t} += dA W_hh in row t ------------- */

static stg_status prepare_hgrad(stg_prep *cx, stg_pnode *pn)
{
    const rnn_attr *a = pn->node->attr;
    return prepare_shares(cx, pn, gates_of(a->mode) * a->hidden, 1, 0);
}

static void run_hgrad(const stg_pnode *pn, const stg_step *sx, int tid, int nt)
{
    const cell_desc *d = pn->desc;
    const rnn_attr *a = pn->node->attr;
    const rnn_geom *s = &d->s;
    int64_t lo, hi, t = a->t, H = s->h, N = s->n;
    (void)sx;
    hidden_share(pn, d, tid, nt, &lo, &hi);
    if (hi <= lo)
        return;
    float *dS = pn->out, *work = stgR_scratch(pn, tid);
    const float *W = pn->in[1], *packed = pn->in[2];
    float *c = dS + at(s, t, 0) + lo;
    const float *da = dS + at(s, t + 1, 0) + s->oa;
    /* r and z from the gate block and, for a GRU, n from W_hn h's gradient */
    int parts = a->mode == STG_GRU ? 2 : 1;
    for (int k = 0; k < parts; k++) {
        int64_t kk = a->mode == STG_GRU ? (k ? H : 2 * H) : s->g * H;
        const float *ak = k ? dS + at(s, t + 1, 0) + s->ohn : da;
        const float *wk = W + (k ? 2 * H * H : 0) + lo;
        if (!stgK_gemm_packed_b(d->kern, work, N, hi - lo, kk, ak, s->width, 1,
                                packed + d->packed[k], lo, H, 1.0f, c, s->width, 1))
            stgK_gemm(d->kern, work, N, hi - lo, kk, ak, s->width, 1, wk, H, 1, 1.0f, c, s->width,
                      1);
    }
}

static double flops_hgrad(const stg_graph *g, const stg_node *n)
{
    (void)g;
    const rnn_attr *a = n->attr;
    return 2.0 * (double)a->batch * (double)(gates_of(a->mode) * a->hidden) * (double)a->hidden;
}

/* ---- backward rules -------------------------------------------------------------- */

/* A base, contiguous version of t that nothing else reads: a chain may
 * write it in place. */
static stg_tensor fresh(stg_graph *g, stg_tensor t)
{
    const stg_node *n = stgG_node(g, t);
    if (n->base == t.id && stgS_is_contiguous(&n->shape, &n->lay) && n->role == STG_ROLE_COMPUTE &&
        (n->op == &stg_op_embed || n->op == &stg_op_add || n->op == &stg_op_rnn_hgrad))
        return t;
    stg_shape s = n->shape;
    return stgG_add(g, &stg_op_copy, 1, &t.id, &s, NULL);
}

static void backward_cell(stg_ad *ad, int32_t id, stg_tensor gout)
{
    stg_graph *g = ad->g;
    const stg_node *n = &g->nodes[id];
    rnn_attr a = *(const rnn_attr *)n->attr;
    int32_t prev = n->in[0], w = n->in[2], pack = n->in[3];
    if (gout.id < 0 || !stgD_needs(ad, prev))
        return;
    stg_shape s = n->shape;
    stg_tensor d = fresh(g, gout);
    if (d.id < 0)
        return;
    int32_t in1[2] = {d.id, id};
    stg_tensor d1 = stgG_add(g, &stg_op_rnn_cell_grad, 2, in1, &s, &a);
    if (d1.id < 0)
        return;
    int32_t in2[3] = {d1.id, w, pack};
    stgD_accumulate(ad, prev, stgG_add(g, &stg_op_rnn_hgrad, 3, in2, &s, &a));
}

/* Columns [from, from + len) of rows [r0, r1) of a (T + 1, N, W) tensor. */
static stg_tensor block(stg_graph *g, stg_tensor t, int64_t r0, int64_t r1, int64_t from,
                        int64_t len)
{
    return stg_slice(g, stg_slice(g, t, 0, r0, r1, 1), 2, from, from + len, 1);
}

/* sum over t, n of a[t, n, :]^T b[t, n, :]: (cols of a) x (cols of b), one GEMM */
static stg_tensor outer_sum(stg_graph *g, stg_tensor a3, stg_tensor b3)
{
    const stg_shape *as = &stgG_node(g, a3)->shape, *bs = &stgG_node(g, b3)->shape;
    stg_shape out = {2, {as->d[2], bs->d[2]}};
    return stgK_matmul_sum(g, stg_swapaxes(g, a3, -1, -2), b3, &out);
}

/* At the start of the chain dS is complete: dP, the recurrent weight's and
 * bias's gradients, and the initial state's. */
static void backward_init(stg_ad *ad, int32_t id, stg_tensor gout)
{
    stg_graph *g = ad->g;
    const stg_node *n = &g->nodes[id];
    rnn_attr a = *(const rnn_attr *)n->attr;
    rnn_geom s = geom_of(&a);
    int64_t T = a.steps, H = s.h;
    if (gout.id < 0)
        return;
    int32_t P = n->in[0], W = n->in[1], b = a.has_bias ? n->in[2] : -1;
    int j = 2 + a.has_bias;
    int32_t h0 = a.has_h0 ? n->in[j++] : -1, c0 = a.has_c0 ? n->in[j] : -1;
    stg_tensor dA = block(g, gout, 1, T + 1, s.oa, s.g * H);
    stgD_accumulate(ad, P, dA);
    bool dw = stgD_needs(ad, W), db = b >= 0 && stgD_needs(ad, b);
    if (dw || db) {
        /* the recurrent product's gradient: the gate block, but for a GRU's
         * n gate the gradient of W_hn h (which r scales) */
        stg_tensor dR[2] = {dA, {-1}};
        if (a.mode == STG_GRU) {
            dR[0] = block(g, gout, 1, T + 1, s.oa, 2 * H);
            dR[1] = block(g, gout, 1, T + 1, s.ohn, H);
        }
        int parts = a.mode == STG_GRU ? 2 : 1;
        if (dw) {
            stg_tensor hprev = block(g, stgG_t(a.last), 0, T, 0, H);
            stg_tensor p[2];
            for (int k = 0; k < parts; k++)
                p[k] = outer_sum(g, dR[k], hprev);
            stgD_accumulate(ad, W, parts == 1 ? p[0] : stg_concat(g, 2, p, 0));
        }
        if (db) {
            stg_tensor p[2];
            for (int k = 0; k < parts; k++)
                p[k] = stg_sum(g, dR[k], 2, (int[]){0, 1}, 0);
            stgD_accumulate(ad, b, parts == 1 ? p[0] : stg_concat(g, 2, p, 0));
        }
    }
    int32_t state[2] = {h0, c0};
    int64_t off[2] = {0, s.oc};
    for (int k = 0; k < 2; k++)
        if (state[k] >= 0 && stgD_needs(ad, state[k])) {
            stg_shape ss = g->nodes[state[k]].shape; /* a copy: nodes move as the graph grows */
            stgD_accumulate(ad, state[k], stg_reshape(g, block(g, gout, 0, 1, off[k], H), ss.nd,
                                                      ss.d));
        }
}

/* ---- the builder --------------------------------------------------------------- */

static const char *mode_name(stg_rnn_mode m)
{
    static const char *const names[] = {"rnn_tanh", "rnn_relu", "lstm", "gru"};
    return (unsigned)m < 4 ? names[m] : "rnn";
}

static int layers_of(const stg_rnn *r)
{
    return r->num_layers == 0 ? 1 : r->num_layers;
}

static bool check_config(stg_graph *g, const stg_rnn *r)
{
    if ((unsigned)r->mode > STG_GRU) {
        stgG_fail(g, STG_INVALID, "rnn: unknown mode %d", (int)r->mode);
        return false;
    }
    int L = layers_of(r);
    if (r->input_size < 1 || r->hidden_size < 1 || r->input_size > STG_MAX_NUMEL ||
        r->hidden_size > ((int64_t)1 << 24) || L < 1 || L > STG_RNN_MAX_LAYERS) {
        stgG_fail(g, STG_INVALID, "%s: input_size %lld, hidden_size %lld, num_layers %d (need "
                  "sizes >= 1, hidden_size <= 2^24, 1 to %d layers)", mode_name(r->mode),
                  (long long)r->input_size, (long long)r->hidden_size, L, STG_RNN_MAX_LAYERS);
        return false;
    }
    return true;
}

STG_API stg_status stg_rnn_params(stg_graph *g, stg_rnn *r, const char *prefix)
{
    if (!stgG_ok(g))
        return g ? g->status : STG_INVALID;
    if (!r) {
        stgG_fail(g, STG_INVALID, "rnn_params: the layer is NULL");
        return g->status;
    }
    if (!check_config(g, r))
        return g->status;
    int64_t gh = gates_of(r->mode) * r->hidden_size;
    const char *pre = prefix && *prefix ? prefix : "", *dot = prefix && *prefix ? "." : "";
    for (int l = 0; l < layers_of(r); l++) {
        int64_t in = l == 0 ? r->input_size : r->hidden_size;
        char name[256];
        snprintf(name, sizeof name, "%s%sweight_ih_l%d", pre, dot, l);
        r->weight_ih[l] = stg_param(g, name, 2, (int64_t[]){gh, in});
        snprintf(name, sizeof name, "%s%sweight_hh_l%d", pre, dot, l);
        r->weight_hh[l] = stg_param(g, name, 2, (int64_t[]){gh, r->hidden_size});
        r->bias_ih[l] = r->bias_hh[l] = stgG_t(-1);
        if (!r->no_bias) {
            snprintf(name, sizeof name, "%s%sbias_ih_l%d", pre, dot, l);
            r->bias_ih[l] = stg_param(g, name, 1, &gh);
            snprintf(name, sizeof name, "%s%sbias_hh_l%d", pre, dot, l);
            r->bias_hh[l] = stg_param(g, name, 1, &gh);
        }
    }
    return g->status;
}

/* Whether t is a float tensor of exactly 'shape'; a message naming 'what'
 * if not. */
static bool shaped(stg_graph *g, const char *op, const char *what, stg_tensor t,
                   const stg_shape *shape)
{
    if (!stgG_check_tensor(g, op, t))
        return false;
    const stg_shape *s = &stgG_node(g, t)->shape;
    if (stgS_equal(s, shape))
        return true;
    char bs[96], bw[96];
    stgG_fail(g, STG_SHAPE, "%s: %s is %s, expected %s", op, what, stgS_str(s, bs, sizeof bs),
              stgS_str(shape, bw, sizeof bw));
    return false;
}

/* One layer over X (T, N, in): the final S. */
static stg_tensor layer(stg_graph *g, const stg_rnn *r, int l, stg_tensor X, stg_tensor h0,
                        stg_tensor c0)
{
    const stg_shape *xs = &stgG_node(g, X)->shape;
    int64_t T = xs->d[0], N = xs->d[1], H = r->hidden_size;
    /* An LSTM's or an RNN's two biases are added to the same pre-activations:
     * one sum of both goes into P, and their gradients are one sum of dP.
     * A GRU's b_hn is scaled by r inside the step, so it stays there. */
    bool fold = !r->no_bias && r->mode != STG_GRU;
    stg_tensor P = stg_matmul(g, X, stg_swapaxes(g, r->weight_ih[l], 0, 1));
    if (!r->no_bias)
        P = stg_add(g, P, fold ? stg_add(g, r->bias_ih[l], r->bias_hh[l]) : r->bias_ih[l]);
    if (!stgG_ok(g))
        return stgG_t(-1);
    P = stgK_contiguous(g, P);
    stg_tensor W = stgK_contiguous(g, r->weight_hh[l]);
    stg_tensor b = r->no_bias || fold ? stgG_t(-1) : stgK_contiguous(g, r->bias_hh[l]);
    rnn_attr a = {.mode = r->mode, .has_bias = b.id >= 0, .steps = T, .batch = N, .hidden = H};
    int32_t in[5] = {P.id, W.id}, nin = 2;
    if (a.has_bias)
        in[nin++] = b.id;
    stg_tensor st[2] = {h0, c0};
    for (int k = 0; k < 2; k++)
        if (st[k].id >= 0) {
            stg_tensor v = stg_reshape(g, stg_slice(g, st[k], 0, l, l + 1, 1), 2,
                                       (int64_t[]){N, H});
            if (v.id < 0)
                return v;
            in[nin++] = stgK_contiguous(g, v).id;
            *(k ? &a.has_c0 : &a.has_h0) = 1;
        }
    rnn_geom s = geom_of(&a);
    stg_shape ss = {3, {T + 1, N, s.width}}, ps = {1, {pack_bound(&a) + hpack_bound(&a)}};
    stg_tensor pack = stgG_add(g, &stg_op_rnn_pack, 1, &W.id, &ps, &a);
    stg_tensor S = stgG_add(g, &stg_op_rnn_init, nin, in, &ss, &a);
    stg_tensor init = S;
    for (int64_t t = 0; t < T && S.id >= 0 && pack.id >= 0; t++) {
        a.t = t;
        int32_t cin[5] = {S.id, P.id, W.id, pack.id, b.id};
        S = stgG_add(g, &stg_op_rnn_cell, a.has_bias ? 5 : 4, cin, &ss, &a);
    }
    if (S.id >= 0)
        ((rnn_attr *)stgG_node(g, init)->attr)->last = S.id;
    return S;
}

STG_API stg_tensor stg_rnn_apply(stg_graph *g, const stg_rnn *r, stg_tensor x, stg_tensor h0,
                                 stg_tensor c0, stg_tensor *h_n, stg_tensor *c_n)
{
    if (h_n)
        *h_n = stgG_t(-1);
    if (c_n)
        *c_n = stgG_t(-1);
    if (!stgG_ok(g))
        return stgG_t(-1);
    if (!r)
        return stgG_fail(g, STG_INVALID, "rnn: the layer is NULL");
    if (!check_config(g, r))
        return stgG_t(-1);
    const char *op = mode_name(r->mode);
    if (!stgG_check_tensor(g, op, x))
        return stgG_t(-1);
    const stg_shape xs = stgG_node(g, x)->shape;
    char bx[96];
    if (xs.nd != 3 || xs.d[2] != r->input_size)
        return stgG_fail(g, STG_SHAPE, "%s: x %s must be (%s, %s, input_size %lld)", op,
                         stgS_str(&xs, bx, sizeof bx), r->batch_first ? "N" : "T",
                         r->batch_first ? "T" : "N", (long long)r->input_size);
    int L = layers_of(r);
    int64_t T = xs.d[r->batch_first ? 1 : 0], N = xs.d[r->batch_first ? 0 : 1], H = r->hidden_size;
    stg_shape state = {3, {L, N, H}};
    if ((h0.id >= 0 && !shaped(g, op, "h0", h0, &state)) ||
        (c0.id >= 0 && !shaped(g, op, "c0", c0, &state)))
        return stgG_t(-1);
    if (c0.id >= 0 && r->mode != STG_LSTM)
        return stgG_fail(g, STG_INVALID, "%s: c0 is for an LSTM only", op);
    for (int l = 0; l < L; l++) {
        int64_t in = l == 0 ? r->input_size : H, gh = gates_of(r->mode) * H;
        stg_shape wi = {2, {gh, in}}, wh = {2, {gh, H}}, bs = {1, {gh}};
        char what[4][32];
        snprintf(what[0], sizeof what[0], "weight_ih_l%d", l);
        snprintf(what[1], sizeof what[1], "weight_hh_l%d", l);
        snprintf(what[2], sizeof what[2], "bias_ih_l%d", l);
        snprintf(what[3], sizeof what[3], "bias_hh_l%d", l);
        if (!shaped(g, op, what[0], r->weight_ih[l], &wi) ||
            !shaped(g, op, what[1], r->weight_hh[l], &wh) ||
            (!r->no_bias && (!shaped(g, op, what[2], r->bias_ih[l], &bs) ||
                             !shaped(g, op, what[3], r->bias_hh[l], &bs))))
            return stgG_t(-1);
    }
    /* Batch-first data is made time-major once, both ways: then the input
     * projection, its gradients and whatever reads the output are single
     * GEMMs instead of T products of N rows. */
    stg_tensor X = r->batch_first ? stgK_contiguous(g, stg_swapaxes(g, x, 0, 1)) : x;
    stg_tensor hn[STG_RNN_MAX_LAYERS], cn[STG_RNN_MAX_LAYERS];
    for (int l = 0; l < L && stgG_ok(g); l++) {
        stg_tensor S = layer(g, r, l, X, h0, c0);
        if (S.id < 0)
            return S;
        rnn_geom s = geom_of(stgG_node(g, S)->attr);
        X = block(g, S, 1, T + 1, 0, H);
        hn[l] = block(g, S, T, T + 1, 0, H);
        cn[l] = r->mode == STG_LSTM ? block(g, S, T, T + 1, s.oc, H) : stgG_t(-1);
    }
    if (h_n)
        *h_n = L == 1 ? stg_reshape(g, hn[0], 3, state.d) : stg_concat(g, L, hn, 0);
    if (c_n && r->mode == STG_LSTM)
        *c_n = L == 1 ? stg_reshape(g, cn[0], 3, state.d) : stg_concat(g, L, cn, 0);
    return r->batch_first ? stgK_contiguous(g, stg_swapaxes(g, X, 0, 1)) : X;
}

const stg_op stg_op_rnn_pack = {
    .name = "rnn_pack",
    .attr_size = sizeof(rnn_attr),
    .print_attr = print_rnn,
    .prepare = prepare_pack,
    .run = run_pack,
};
const stg_op stg_op_rnn_init = {
    .name = "rnn_init",
    .flags = STG_OPF_SERIAL,
    .attr_size = sizeof(rnn_attr),
    .print_attr = print_rnn,
    .run = run_init,
    .backward = backward_init,
};
const stg_op stg_op_rnn_cell = {
    .name = "rnn_cell",
    .flags = STG_OPF_CHAIN,
    .attr_size = sizeof(rnn_attr),
    .print_attr = print_rnn,
    .prepare = prepare_cell,
    .run = run_cell,
    .backward = backward_cell,
    .flops = flops_cell,
    .step = step_of,
    .traffic = traffic_step,
};
const stg_op stg_op_rnn_cell_grad = {
    .name = "rnn_cell_grad",
    .flags = STG_OPF_CHAIN,
    .attr_size = sizeof(rnn_attr),
    .print_attr = print_rnn,
    .prepare = prepare_cell_grad,
    .run = run_cell_grad,
    .step = step_of,
    .traffic = traffic_step,
};
const stg_op stg_op_rnn_hgrad = {
    .name = "rnn_hgrad",
    .flags = STG_OPF_CHAIN,
    .attr_size = sizeof(rnn_attr),
    .print_attr = print_rnn,
    .prepare = prepare_hgrad,
    .run = run_hgrad,
    .flops = flops_hgrad,
    .step = step_of,
    .traffic = traffic_step,
};
