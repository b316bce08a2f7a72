/*
 * Packing for stgrad's own micro-kernels: a panel of width w (MR for rows of
 * A, NR for columns of B) holds, for each k, w consecutive values, zero
 * past the 'dim' real ones.  Only copies, so it gives the same bits in any
 * build; it is compiled for AVX2 and AVX-512 too because a product of
 * small matrices spends much of its time here.
 */
#include "gemm.h"
#include "internal.h"

STG_CLONES void stgK_pack_panel(const stgK_kernel *kr, bool rows, int64_t dim, int64_t k,
                                const float *src, int64_t inc, int64_t ld, float *dst)
{
    int64_t w = rows ? kr->mr : kr->nr;
    /* One k step at a time, so the panel is written in order.  Where each of
     * the 'dim' vectors is contiguous along k (ld 1), the reads run along w
     * streams at once, each reusing its cache line for 16 steps; writing one
     * vector at a time instead was measured 10x slower on Zen 3 (stores 24
     * bytes apart stall the loads behind them). */
    for (int64_t q = 0; q < k; q++) {
        const float *s = src + q * ld;
        float *d = dst + q * w;
        if (inc == 1)
            for (int64_t i = 0; i < dim; i++)
                d[i] = s[i];
        else
            for (int64_t i = 0; i < dim; i++)
                d[i] = s[i * inc];
        for (int64_t i = dim; i < w; i++)
            d[i] = 0.0f;
    }
}
