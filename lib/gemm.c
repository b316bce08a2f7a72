/*
 * A GEMM driver around BLIS's micro-kernel: C = A B + beta C for any row and
 * column strides, single-threaded, packing into a caller-owned workspace.
 *
 * Loop nest (the usual Goto/BLIS one): columns in NC blocks, K in KC blocks
 * (B block packed into NR-wide panels), rows in MC blocks (A block packed
 * into MR-tall panels), then MR x NR tiles for the micro-kernel.  Each C
 * element sums its K in KC-blocks in order, so the result depends only on
 * K's blocking, never on how the planner splits rows between threads.
 */

#include "internal.h"

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t round_up(int64_t x, int64_t to) { return (x + to - 1) / to * to; }

/* The micro-kernel loads one k step of each panel ahead (measured under
 * valgrind: the 6x16 Haswell kernel reads 16 floats past its last B panel),
 * so each packed block gets that much slack behind it. */
static int64_t slack(const stgB_info *bi)
{
    return round_up(2 * (bi->mr > bi->nr ? bi->mr : bi->nr), 16);
}

size_t stgK_gemm_workspace(const stgB_info *bi, int64_t m, int64_t n, int64_t k)
{
    int64_t kc = min64(k, bi->kc);
    int64_t a = round_up(min64(m, bi->mc), bi->mr) * kc;
    int64_t b = round_up(min64(n, bi->nc), bi->nr) * kc;
    return (size_t)(round_up(a, 16) + slack(bi) + b + slack(bi)) * sizeof(float);
}

/* A[0:mc, 0:kc] into MR-row panels: panel p holds, for each k, MR values. */
static void pack_a(const stgB_info *bi, int64_t mc, int64_t kc, const float *a, int64_t rs,
                   int64_t cs, float *dst)
{
    for (int64_t p = 0; p < mc; p += bi->mr, dst += bi->mr * kc)
        stgB_pack(bi, true, min64(bi->mr, mc - p), kc, a + p * rs, rs, cs, dst);
}

/* B[0:kc, 0:nc] into NR-column panels: panel p holds, for each k, NR values. */
static void pack_b(const stgB_info *bi, int64_t kc, int64_t nc, const float *b, int64_t rs,
                   int64_t cs, float *dst)
{
    for (int64_t p = 0; p < nc; p += bi->nr, dst += bi->nr * kc)
        stgB_pack(bi, false, min64(bi->nr, nc - p), kc, b + p * cs, cs, rs, dst);
}

void stgK_gemm(const stgB_info *bi, float *work, int64_t m, int64_t n, int64_t k,
               const float *a, int64_t rsa, int64_t csa, const float *b, int64_t rsb,
               int64_t csb, float beta, float *c, int64_t rsc, int64_t csc)
{
    int64_t kcmax = min64(k, bi->kc);
    float *ap = work;
    float *bp = work + round_up(round_up(min64(m, bi->mc), bi->mr) * kcmax, 16) + slack(bi);
    for (int64_t jc = 0; jc < n; jc += bi->nc) {
        int64_t nc = min64(bi->nc, n - jc);
        for (int64_t pc = 0; pc < k; pc += bi->kc) {
            int64_t kc = min64(bi->kc, k - pc);
            float bt = pc == 0 ? beta : 1.0f;
            pack_b(bi, kc, nc, b + pc * rsb + jc * csb, rsb, csb, bp);
            for (int64_t ic = 0; ic < m; ic += bi->mc) {
                int64_t mc = min64(bi->mc, m - ic);
                pack_a(bi, mc, kc, a + ic * rsa + pc * csa, rsa, csa, ap);
                for (int64_t jr = 0; jr < nc; jr += bi->nr) {
                    const float *bpan = bp + jr * kc;
                    for (int64_t ir = 0; ir < mc; ir += bi->mr) {
                        const float *apan = ap + ir * kc;
                        float *ct = c + (ic + ir) * rsc + (jc + jr) * csc;
                        stgB_kernel(bi, min64(bi->mr, mc - ir), min64(bi->nr, nc - jr), kc, apan,
                                    bpan, bt, ct, rsc, csc, apan + bi->mr * kc, bpan);
                    }
                }
            }
        }
    }
}
