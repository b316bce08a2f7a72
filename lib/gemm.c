/*
 * The GEMM driver: C = A B + beta C for any row and column strides,
 * single-threaded, packing into a caller-owned workspace, over the
 * micro-kernel of gemm.h.
 *
 * Loop nest (the usual Goto/BLIS one): columns in NC blocks, K in KC blocks
 * (B block packed into NR-wide panels), rows in MC blocks (A block packed
 * into MR-tall panels), then MR x NR tiles for the micro-kernel.  Each C
 * element sums its K in KC-blocks in order, so the result depends only on
 * K's blocking, never on how the planner splits rows between threads.
 */

#include "gemm.h"

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t round_up(int64_t x, int64_t to) { return (x + to - 1) / to * to; }

/* BLIS's micro-kernels load one k step of each panel ahead (measured under
 * valgrind: the 6x16 Haswell kernel reads 16 floats past its last B panel),
 * so each packed block gets that much slack behind it. */
static int64_t slack(const stgK_kernel *kr)
{
    return round_up(2 * (kr->mr > kr->nr ? kr->mr : kr->nr), 16);
}

/* Floats of A's packed block, which B's block follows. */
static int64_t a_block(const stgK_kernel *kr, int64_t m, int64_t kc)
{
    return round_up(round_up(min64(m, kr->mc), kr->mr) * kc, 16) + slack(kr);
}

static size_t workspace(const stgK_kernel *kr, int64_t m, int64_t n, int64_t k)
{
    int64_t kc = min64(k, kr->kc);
    int64_t b = round_up(min64(n, kr->nc), kr->nr) * kc;
    return (size_t)(a_block(kr, m, kc) + b + slack(kr)) * sizeof(float);
}

/* Either orientation: stgK_gemm may compute the transposed product. */
size_t stgK_gemm_workspace(const stgK_kernel *kr, int64_t m, int64_t n, int64_t k)
{
    size_t w = workspace(kr, m, n, k), t = workspace(kr, n, m, k);
    return w > t ? w : t;
}

/* A[0:mc, 0:kc] into MR-row panels: panel p holds, for each k, MR values. */
static void pack_a(const stgK_kernel *kr, int64_t mc, int64_t kc, const float *a, int64_t rs,
                   int64_t cs, float *dst)
{
    for (int64_t p = 0; p < mc; p += kr->mr, dst += kr->mr * kc)
        kr->pack(kr, true, min64(kr->mr, mc - p), kc, a + p * rs, rs, cs, dst);
}

/* B[0:kc, 0:nc] into NR-column panels: panel p holds, for each k, NR values. */
static void pack_b(const stgK_kernel *kr, int64_t kc, int64_t nc, const float *b, int64_t rs,
                   int64_t cs, float *dst)
{
    for (int64_t p = 0; p < nc; p += kr->nr, dst += kr->nr * kc)
        kr->pack(kr, false, min64(kr->nr, nc - p), kc, b + p * cs, cs, rs, dst);
}

/* C = beta C for an empty K (the loop nest below never runs). */
static void scale_c(int64_t m, int64_t n, float beta, float *c, int64_t rsc, int64_t csc)
{
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++)
            c[i * rsc + j * csc] = beta == 0.0f ? 0.0f : c[i * rsc + j * csc];
}

/* C[0:m, 0:n] = A[0:m, 0:kc] times one packed block of B (plus C when bt
 * is 1): A packed MC rows at a time into 'ap', then MR x NR tiles. */
static void block_product(const stgK_kernel *kr, float *ap, int64_t m, int64_t n, int64_t kc,
                          const float *a, int64_t rsa, int64_t csa, const float *bp, float bt,
                          float *c, int64_t rsc, int64_t csc)
{
    for (int64_t ic = 0; ic < m; ic += kr->mc) {
        int64_t mc = min64(kr->mc, m - ic);
        pack_a(kr, mc, kc, a + ic * rsa, rsa, csa, ap);
        for (int64_t jr = 0; jr < n; jr += kr->nr) {
            const float *bpan = bp + jr * kc;
            for (int64_t ir = 0; ir < mc; ir += kr->mr) {
                const float *apan = ap + ir * kc;
                kr->tile(kr, min64(kr->mr, mc - ir), min64(kr->nr, n - jr), kc, apan, bpan, bt,
                         c + (ic + ir) * rsc + jr * csc, rsc, csc, apan + kr->mr * kc, bpan);
            }
        }
    }
}

static void loops(const stgK_kernel *kr, float *work, int64_t m, int64_t n, int64_t k,
                  const float *a, int64_t rsa, int64_t csa, const float *b, int64_t rsb,
                  int64_t csb, float beta, float *c, int64_t rsc, int64_t csc)
{
    float *ap = work;
    float *bp = work + a_block(kr, m, min64(k, kr->kc));
    for (int64_t jc = 0; jc < n; jc += kr->nc) {
        int64_t nc = min64(kr->nc, n - jc);
        for (int64_t pc = 0; pc < k; pc += kr->kc) {
            int64_t kc = min64(kr->kc, k - pc);
            pack_b(kr, kc, nc, b + pc * rsb + jc * csb, rsb, csb, bp);
            block_product(kr, ap, m, nc, kc, a + pc * csa, rsa, csa, bp, pc == 0 ? beta : 1.0f,
                          c + jc * csc, rsc, csc);
        }
    }
}

/* A kernel that keeps columns of a tile in vectors wants C's columns
 * contiguous, and one that keeps rows wants rows; for a C laid out the other
 * way it computes C^T = B^T A^T, whose elements are the same sums in the
 * same order (products commute), so the bits do not change. */
bool stgK_gemm_transposes(const stgK_kernel *kr, int64_t rsc, int64_t csc)
{
    bool rows = csc == 1 && rsc != 1, cols = rsc == 1 && csc != 1;
    return kr->prefers_rows ? cols : rows;
}

void stgK_gemm(const stgK_kernel *kr, float *work, int64_t m, int64_t n, int64_t k,
               const float *a, int64_t rsa, int64_t csa, const float *b, int64_t rsb,
               int64_t csb, float beta, float *c, int64_t rsc, int64_t csc)
{
    if (k == 0) {
        scale_c(m, n, beta, c, rsc, csc);
        return;
    }
    if (stgK_gemm_transposes(kr, rsc, csc))
        loops(kr, work, n, m, k, b, csb, rsb, a, csa, rsa, beta, c, csc, rsc);
    else
        loops(kr, work, m, n, k, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc);
}

/* ---- B packed ahead of time -------------------------------------------- */

size_t stgK_packed_b_floats(const stgK_kernel *kr, int64_t k, int64_t n)
{
    return (size_t)round_up(round_up(n, kr->nr) * k + slack(kr), 16);
}

void stgK_pack_b_cols(const stgK_kernel *kr, int64_t k, int64_t n_all, int64_t col0, int64_t n,
                      const float *b, int64_t rsb, int64_t csb, float *bp)
{
    int64_t width = round_up(n_all, kr->nr);
    for (int64_t pc = 0; pc < k; pc += kr->kc) {
        int64_t kc = min64(kr->kc, k - pc);
        pack_b(kr, kc, n, b + pc * rsb, rsb, csb, bp + width * pc + col0 * kc);
    }
}

void stgK_pack_b(const stgK_kernel *kr, int64_t k, int64_t n, const float *b, int64_t rsb,
                 int64_t csb, float *bp)
{
    stgK_pack_b_cols(kr, k, n, 0, n, b, rsb, csb, bp);
}

bool stgK_gemm_packed_b(const stgK_kernel *kr, float *work, int64_t m, int64_t n, int64_t k,
                        const float *a, int64_t rsa, int64_t csa, const float *bp, int64_t col0,
                        int64_t n_all, float beta, float *c, int64_t rsc, int64_t csc)
{
    if (stgK_gemm_transposes(kr, rsc, csc) || col0 % kr->nr != 0)
        return false;
    if (k == 0) {
        scale_c(m, n, beta, c, rsc, csc);
        return true;
    }
    int64_t width = round_up(n_all, kr->nr);
    /* the same loop nest as 'loops', B's blocks already packed (KC blocks
     * in the same order, so every element sums in the same order) */
    for (int64_t pc = 0; pc < k; pc += kr->kc) {
        int64_t kc = min64(kr->kc, k - pc);
        block_product(kr, work, m, n, kc, a + pc * csa, rsa, csa, bp + width * pc + col0 * kc,
                      pc == 0 ? beta : 1.0f, c, rsc, csc);
    }
    return true;
}
