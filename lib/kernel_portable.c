/*
 * stgrad's portable micro-kernel: 4x8 tiles in plain C, for CPUs that
 * neither BLIS nor stgrad's vector kernels know.  On x86-64's baseline
 * (SSE2, 16 registers) GCC keeps the 32 sums in 8 registers of 4 floats,
 * a row of C in two;
 * elsewhere it is as good as the compiler's vectoriser.  Products and sums
 * are rounded separately (the library is built with -ffp-contract=off), so
 * its bits differ from the FMA kernels' and not between compilers.
 */
#include "gemm.h"

#define MR 4
#define NR 8

static void tile_portable(const stgK_kernel *kr, int64_t m, int64_t n, int64_t k,
                          const float *ap, const float *bp, float beta, float *c, int64_t rsc,
                          int64_t csc, const float *next_a, const float *next_b)
{
    (void)kr, (void)next_a, (void)next_b;
    float t[MR][NR] = {{0}};
    for (int64_t p = 0; p < k; p++, ap += MR, bp += NR)
        for (int i = 0; i < MR; i++)
            for (int j = 0; j < NR; j++)
                t[i][j] += ap[i] * bp[j];
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            float *e = c + i * rsc + j * csc;
            *e = beta == 0.0f ? t[i][j] : *e + t[i][j];
        }
}

void stgK_portable_init(stgK_kernel *kr)
{
    kr->id = STG_GEMM_PORTABLE;
    kr->name = "portable";
    kr->mr = MR;
    kr->nr = NR;
    kr->prefers_rows = true;
    kr->pack = stgK_pack_panel;
    kr->tile = tile_portable;
}
