/*
 * The BLIS-alone baseline (see blis_baseline.h).  A job is a list of BLIS
 * calls on buffers it owns, built once, so that timing it measures BLIS and
 * nothing else.
 */
#include <stdint.h>
#include <stdlib.h>

#include <blis.h>

#include "blis_baseline.h"

typedef enum { CALL_GEMM, CALL_GEMV, CALL_OUTER, CALL_DOT, CALL_SCAL2 } call_kind;

/* A strided matrix view: transposes are strides, not copies. */
typedef struct mat {
    float *p;
    inc_t rs, cs;
} mat;

typedef struct call {
    call_kind kind;
    dim_t m, n, k;
    mat a, b, c; /* GEMM c = a b + beta c; GEMV c = a b + beta c (b, c vectors);
                    OUTER c = a b^T (a, b vectors); DOT c = a . b; SCAL2 c = a[0] b */
    float beta;
} call;

struct blis_job {
    call *calls;
    int ncalls, cap;
    float *bufs[16];
    int nbufs;
};

static mat rowmajor(float *p, dim_t cols) { return (mat){p, cols, 1}; }
static mat transposed(float *p, dim_t cols) { return (mat){p, 1, cols}; }
static mat vec(float *p) { return (mat){p, 1, 1}; }

static bool add(blis_job *j, call c)
{
    if (j->ncalls == j->cap) {
        int cap = j->cap ? 2 * j->cap : 16;
        call *n = realloc(j->calls, sizeof *n * (size_t)cap);
        if (!n)
            return false;
        j->calls = n;
        j->cap = cap;
    }
    j->calls[j->ncalls++] = c;
    return true;
}

/* A buffer of 'n' floats filled with values in [-1, 1), owned by the job. */
static float *buffer(blis_job *j, int64_t n)
{
    if (j->nbufs == (int)(sizeof j->bufs / sizeof j->bufs[0]))
        return NULL;
    float *p = aligned_alloc(64, ((size_t)n * sizeof(float) + 63) / 64 * 64);
    if (!p)
        return NULL;
    uint32_t s = 0x9e3779b9u ^ (uint32_t)j->nbufs;
    for (int64_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        p[i] = (float)(s >> 8) / 8388608.0f - 1.0f;
    }
    j->bufs[j->nbufs++] = p;
    return p;
}

static bool gemm(blis_job *j, dim_t m, dim_t n, dim_t k, mat a, mat b, float beta, mat c)
{
    return add(j, (call){CALL_GEMM, m, n, k, a, b, c, beta});
}

static int64_t prod(const int64_t *d, int n)
{
    int64_t p = 1;
    for (int i = 0; i < n; i++)
        p *= d[i];
    return p;
}

/* a (..., M, K) times b (K, N): the batch folds into M, one GEMM per product. */
static bool folded(blis_job *j, const matmul_case *mc, bool backward)
{
    dim_t m = prod(mc->a, mc->nda - 1), k = mc->a[mc->nda - 1], n = mc->b[1];
    float *a = buffer(j, m * k), *b = buffer(j, k * n), *c = buffer(j, m * n);
    if (!a || !b || !c || !gemm(j, m, n, k, rowmajor(a, k), rowmajor(b, n), 0, rowmajor(c, n)))
        return false;
    if (!backward)
        return true;
    float *g = buffer(j, m * n), *ga = buffer(j, m * k), *gb = buffer(j, k * n);
    return g && ga && gb &&
           gemm(j, m, k, n, rowmajor(g, n), transposed(b, n), 0, rowmajor(ga, k)) &&
           gemm(j, k, n, m, transposed(a, k), rowmajor(g, n), 0, rowmajor(gb, n));
}

/* a (..., M, K) times the vector b (K): one GEMV; its gradients are an outer
 * product (a scaled copy of the vector per row: BLIS's GER only adds) and a
 * transposed GEMV. */
static bool matvec(blis_job *j, const matmul_case *mc, bool backward)
{
    dim_t m = prod(mc->a, mc->nda - 1), k = mc->a[mc->nda - 1];
    float *a = buffer(j, m * k), *x = buffer(j, k), *y = buffer(j, m);
    if (!a || !x || !y || !add(j, (call){CALL_GEMV, m, k, 0, rowmajor(a, k), vec(x), vec(y), 0}))
        return false;
    if (!backward)
        return true;
    float *g = buffer(j, m), *ga = buffer(j, m * k), *gx = buffer(j, k);
    return g && ga && gx && add(j, (call){CALL_OUTER, m, k, 0, vec(g), vec(x), rowmajor(ga, k), 0}) &&
           add(j, (call){CALL_GEMV, k, m, 0, transposed(a, k), vec(g), vec(gx), 0});
}

/* the vector a (K) times b (K, N): a GEMV with b transposed. */
static bool vecmat(blis_job *j, const matmul_case *mc, bool backward)
{
    dim_t k = mc->b[0], n = mc->b[1];
    float *x = buffer(j, k), *b = buffer(j, k * n), *y = buffer(j, n);
    if (!x || !b || !y || !add(j, (call){CALL_GEMV, n, k, 0, transposed(b, n), vec(x), vec(y), 0}))
        return false;
    if (!backward)
        return true;
    float *g = buffer(j, n), *gx = buffer(j, k), *gb = buffer(j, k * n);
    return g && gx && gb && add(j, (call){CALL_GEMV, k, n, 0, rowmajor(b, n), vec(g), vec(gx), 0}) &&
           add(j, (call){CALL_OUTER, k, n, 0, vec(x), vec(g), rowmajor(gb, n), 0});
}

static bool dot(blis_job *j, const matmul_case *mc, bool backward)
{
    dim_t n = mc->a[0];
    float *a = buffer(j, n), *b = buffer(j, n), *c = buffer(j, 1);
    if (!a || !b || !c || !add(j, (call){CALL_DOT, n, 0, 0, vec(a), vec(b), vec(c), 0}))
        return false;
    if (!backward)
        return true;
    float *g = buffer(j, 1), *ga = buffer(j, n), *gb = buffer(j, n);
    return g && ga && gb && add(j, (call){CALL_SCAL2, n, 0, 0, vec(g), vec(b), vec(ga), 0}) &&
           add(j, (call){CALL_SCAL2, n, 0, 0, vec(g), vec(a), vec(gb), 0});
}

/* Batched products with broadcasting: one GEMM per output matrix, and each
 * operand's gradient accumulates (beta 1) over the matrices it was broadcast
 * to, as a hand-written loop would. */
static bool batched(blis_job *j, const matmul_case *mc, bool backward)
{
    int ba = mc->nda - 2, bb = mc->ndb - 2, nb = ba > bb ? ba : bb;
    int64_t da[4], db[4], dc[4];
    for (int i = 0; i < nb; i++) { /* right-aligned batch dims */
        da[i] = i - (nb - ba) >= 0 ? mc->a[i - (nb - ba)] : 1;
        db[i] = i - (nb - bb) >= 0 ? mc->b[i - (nb - bb)] : 1;
        dc[i] = da[i] > db[i] ? da[i] : db[i];
    }
    dim_t m = mc->a[mc->nda - 2], k = mc->a[mc->nda - 1], n = mc->b[mc->ndb - 1];
    int64_t na = prod(da, nb), nbm = prod(db, nb), nc = prod(dc, nb);
    float *a = buffer(j, na * m * k), *b = buffer(j, nbm * k * n), *c = buffer(j, nc * m * n);
    float *g = backward ? buffer(j, nc * m * n) : NULL, *ga = backward ? buffer(j, na * m * k) : NULL;
    float *gb = backward ? buffer(j, nbm * k * n) : NULL;
    bool *seen = calloc((size_t)(na + nbm), sizeof *seen);
    if (!a || !b || !c || !seen || (backward && (!g || !ga || !gb))) {
        free(seen);
        return false;
    }
    bool ok = true;
    for (int pass = 0; pass < (backward ? 3 : 1) && ok; pass++)
        for (int64_t o = 0; o < nc && ok; o++) {
            int64_t ia = 0, ib = 0, rest = o;
            for (int i = nb - 1, sa = 1, sb = 1; i >= 0; i--) {
                int64_t idx = rest % dc[i];
                rest /= dc[i];
                ia += (da[i] > 1 ? idx : 0) * sa;
                ib += (db[i] > 1 ? idx : 0) * sb;
                sa *= (int)da[i];
                sb *= (int)db[i];
            }
            float *am = a + ia * m * k, *bm = b + ib * k * n, *cm = c + o * m * n;
            if (pass == 0) {
                ok = gemm(j, m, n, k, rowmajor(am, k), rowmajor(bm, n), 0, rowmajor(cm, n));
            } else if (pass == 1) {
                float beta = seen[ia] ? 1.0f : 0.0f;
                seen[ia] = true;
                ok = gemm(j, m, k, n, rowmajor(g + o * m * n, n), transposed(bm, n), beta,
                          rowmajor(ga + ia * m * k, k));
            } else {
                float beta = seen[na + ib] ? 1.0f : 0.0f;
                seen[na + ib] = true;
                ok = gemm(j, k, n, m, transposed(am, k), rowmajor(g + o * m * n, n), beta,
                          rowmajor(gb + ib * k * n, n));
            }
        }
    free(seen);
    return ok;
}

/* A convolution's products, one image at a time, on column matrices that
 * are already made (im2col and col2im are not timed): y_n = W col_n,
 * dcol_n = W^T dy_n, dW = sum over n of dy_n col_n^T.  The ceiling of the
 * GEMM lowering with BLIS doing every product. */
static bool conv_gemms(blis_job *j, const matmul_case *mc, bool backward)
{
    const int64_t *x = mc->a, *w = mc->b;
    dim_t nimg = x[0], o = w[0], kk = w[1] * w[2] * w[3];
    dim_t p = (x[2] + 2 * mc->pad - w[2] + 1) * (x[3] + 2 * mc->pad - w[3] + 1);
    float *wt = buffer(j, o * kk), *col = buffer(j, nimg * kk * p), *y = buffer(j, nimg * o * p);
    bool ok = wt && col && y;
    for (dim_t n = 0; ok && n < nimg; n++)
        ok = gemm(j, o, p, kk, rowmajor(wt, kk), rowmajor(col + n * kk * p, p), 0,
                  rowmajor(y + n * o * p, p));
    if (!backward || !ok)
        return ok;
    float *gy = buffer(j, nimg * o * p), *gcol = buffer(j, nimg * kk * p), *gw = buffer(j, o * kk);
    ok = gy && gcol && gw;
    for (dim_t n = 0; ok && n < nimg; n++)
        ok = gemm(j, kk, p, o, transposed(wt, kk), rowmajor(gy + n * o * p, p), 0,
                  rowmajor(gcol + n * kk * p, p)) &&
             gemm(j, o, kk, p, rowmajor(gy + n * o * p, p), transposed(col + n * kk * p, p),
                  n ? 1.0f : 0.0f, rowmajor(gw, kk));
    return ok;
}

blis_job *blis_matmul_job(const matmul_case *mc, bool backward)
{
    blis_job *j = calloc(1, sizeof *j);
    if (!j)
        return NULL;
    bool ok = mc->pad >= 0 ? conv_gemms(j, mc, backward)
              : mc->nda == 1 && mc->ndb == 1   ? dot(j, mc, backward)
              : mc->ndb == 1                 ? matvec(j, mc, backward)
              : mc->nda == 1 && mc->ndb == 2 ? vecmat(j, mc, backward)
              : mc->ndb == 2                 ? folded(j, mc, backward)
              : mc->nda >= 2                 ? batched(j, mc, backward)
                                             : false;
    if (!ok) {
        blis_job_free(j);
        return NULL;
    }
    return j;
}

blis_job *blis_mlp_job(const mlp_spec *spec)
{
    blis_job *j = calloc(1, sizeof *j);
    if (!j)
        return NULL;
    /* one buffer each for activations, gradients and weights, laid end to end */
    int64_t acts = 0, weights = 0;
    for (int l = 0; l < spec->n; l++)
        acts += spec->batch * spec->sizes[l];
    for (int l = 0; l + 1 < spec->n; l++)
        weights += spec->sizes[l] * spec->sizes[l + 1];
    float *h = buffer(j, acts), *gh = buffer(j, acts), *w = buffer(j, weights),
          *gw = buffer(j, weights);
    bool ok = h && gh && w && gw;
    dim_t bt = spec->batch;
    float *hl = h, *wl = w;
    for (int l = 0; ok && l + 1 < spec->n; l++) { /* forward */
        dim_t in = spec->sizes[l], out = spec->sizes[l + 1];
        ok = gemm(j, bt, out, in, rowmajor(hl, in), rowmajor(wl, out), 0,
                  rowmajor(hl + bt * in, out));
        hl += bt * in;
        wl += in * out;
    }
    float *ghl = gh + (hl - h), *gwl = gw + (wl - w);
    for (int l = spec->n - 2; ok && l >= 0; l--) { /* backward, last layer first */
        dim_t in = spec->sizes[l], out = spec->sizes[l + 1];
        hl -= bt * in;
        wl -= in * out;
        gwl -= in * out;
        ok = gemm(j, in, out, bt, transposed(hl, in), rowmajor(ghl, out), 0, rowmajor(gwl, out));
        if (ok && l > 0)
            ok = gemm(j, bt, in, out, rowmajor(ghl, out), transposed(wl, out), 0,
                      rowmajor(ghl - bt * in, in));
        ghl -= bt * in;
    }
    if (!ok) {
        blis_job_free(j);
        return NULL;
    }
    return j;
}

void blis_job_run(blis_job *job, int threads)
{
    bli_thread_set_num_threads(threads);
    float one = 1.0f;
    for (int i = 0; i < job->ncalls; i++) {
        call *c = &job->calls[i];
        switch (c->kind) {
        case CALL_GEMM:
            bli_sgemm(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, c->m, c->n, c->k, &one, c->a.p,
                      c->a.rs, c->a.cs, c->b.p, c->b.rs, c->b.cs, &c->beta, c->c.p, c->c.rs,
                      c->c.cs);
            break;
        case CALL_GEMV:
            bli_sgemv(BLIS_NO_TRANSPOSE, BLIS_NO_CONJUGATE, c->m, c->n, &one, c->a.p, c->a.rs,
                      c->a.cs, c->b.p, 1, &c->beta, c->c.p, 1);
            break;
        case CALL_OUTER:
            for (dim_t r = 0; r < c->m; r++)
                bli_sscal2v(BLIS_NO_CONJUGATE, c->n, c->a.p + r, c->b.p, 1, c->c.p + r * c->c.rs,
                            c->c.cs);
            break;
        case CALL_DOT:
            bli_sdotv(BLIS_NO_CONJUGATE, BLIS_NO_CONJUGATE, c->m, c->a.p, 1, c->b.p, 1, c->c.p);
            break;
        case CALL_SCAL2:
            bli_sscal2v(BLIS_NO_CONJUGATE, c->m, c->a.p, c->b.p, 1, c->c.p, 1);
            break;
        }
    }
}

void blis_job_free(blis_job *job)
{
    if (!job)
        return;
    for (int i = 0; i < job->nbufs; i++)
        free(job->bufs[i]);
    free(job->calls);
    free(job);
}

bool blis_baseline_available(void) { return true; }
