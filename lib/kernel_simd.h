/*
 * The body of stgrad's vector micro-kernels, included once per instruction
 * set (kernel_avx512.c, kernel_avx2.c; the tests include it once more with
 * vectors emulated in plain C, which gives the same bits).  The includer
 * defines:
 *
 *   SIMD_V            the vector type, SIMD_W floats
 *   SIMD_MR           rows per tile (columns per tile are two vectors)
 *   SIMD_TILE         the name of the tile function to define
 *   SIMD_TARGET       a function attribute naming the instruction set
 *   SIMD_ZERO()       a vector of zeros
 *   SIMD_LOAD(p)      SIMD_W floats from p (any alignment)
 *   SIMD_STORE(p, v)  and back
 *   SIMD_BCAST(p)     *p in every lane
 *   SIMD_FMA(a, b, c) a * b + c with one rounding
 *   SIMD_ADD(a, b)    a + b
 * and SIMD_NO_UNROLL where unrolling would only cost compile time (the
 * emulated vectors, which are arrays in memory anyway); SIMD_INIT, SIMD_ID
 * and SIMD_NAME to define the kernel's init function (gemm.h) too.
 *
 * A tile is SIMD_MR rows by 2*SIMD_W columns: a row of C is two vectors,
 * so each k step loads two vectors of the B panel and multiplies them by
 * each of the MR values of the A panel, broadcast.  The accumulators are
 * 2 * MR registers: 24 of AVX-512's 32 for 12x32, 12 of AVX2's 16 for 6x16,
 * leaving room for the two B vectors and a broadcast.  Rows of C in vectors
 * suit the row-major products of a training step: each C tile row is
 * contiguous, and the B block the driver packs is read in whole rows.
 *
 * Every element's sum starts at zero and adds a * b for k in order with
 * one rounding each; C's old value (beta 1) is added last.  Edge tiles and
 * strided C go through a local tile with exactly the same arithmetic.
 */
#define SIMD_NR (2 * SIMD_W)

/* Loops over the tile unroll fully (the accumulators must be registers,
 * not an array in memory).  The k loop unrolls by four and prefetches the
 * A panel eleven steps ahead: measured with the 6x16 kernel on Zen 3,
 * in-process against BLIS's own kernel over the same packed panels, the
 * rolled loop ran at 0.80-0.89 of BLIS's speed, this one at 0.98-1.0. */
#if defined(SIMD_NO_UNROLL) /* emulated vectors: the loops are the vectors */
#define SIMD_UNROLL
#define SIMD_UNROLL_K
#elif defined(__clang__)
#define SIMD_UNROLL _Pragma("unroll")
#define SIMD_UNROLL_K _Pragma("unroll 4")
#else
#define SIMD_UNROLL _Pragma("GCC unroll 16")
#define SIMD_UNROLL_K _Pragma("GCC unroll 4")
#endif

#define SIMD_JOIN2(a, b) a##_##b
#define SIMD_JOIN(a, b) SIMD_JOIN2(a, b)
#define SIMD_ROWS SIMD_JOIN(SIMD_TILE, rows)

/* A tile of the first 'rows' rows of an MR-tall A panel (a constant once
 * inlined, so every loop over rows unrolls). */
SIMD_TARGET static inline __attribute__((always_inline)) void
SIMD_ROWS(int rows, int64_t m, int64_t n, int64_t k, const float *ap, const float *bp, float beta,
          float *c, int64_t rsc, int64_t csc)
{
    SIMD_V acc[SIMD_MR][2];
    SIMD_UNROLL
    for (int i = 0; i < rows; i++) {
        acc[i][0] = SIMD_ZERO();
        acc[i][1] = SIMD_ZERO();
    }
    bool direct = m == rows && n == SIMD_NR && csc == 1;
    if (direct)
        SIMD_UNROLL
        for (int i = 0; i < rows; i++) /* C is wanted again at the end of the loop */
            __builtin_prefetch(c + i * rsc), __builtin_prefetch(c + i * rsc + SIMD_NR - 1);
    SIMD_UNROLL_K
    for (int64_t p = 0; p < k; p++, ap += SIMD_MR, bp += SIMD_NR) {
        __builtin_prefetch(ap + 11 * SIMD_MR);
        SIMD_V b0 = SIMD_LOAD(bp), b1 = SIMD_LOAD(bp + SIMD_W);
        SIMD_UNROLL
        for (int i = 0; i < rows; i++) {
            SIMD_V a = SIMD_BCAST(ap + i);
            acc[i][0] = SIMD_FMA(a, b0, acc[i][0]);
            acc[i][1] = SIMD_FMA(a, b1, acc[i][1]);
        }
    }
    if (direct) {
        SIMD_UNROLL
        for (int i = 0; i < rows; i++) {
            float *ci = c + i * rsc;
            if (beta != 0.0f) {
                acc[i][0] = SIMD_ADD(SIMD_LOAD(ci), acc[i][0]);
                acc[i][1] = SIMD_ADD(SIMD_LOAD(ci + SIMD_W), acc[i][1]);
            }
            SIMD_STORE(ci, acc[i][0]);
            SIMD_STORE(ci + SIMD_W, acc[i][1]);
        }
        return;
    }
    float t[SIMD_MR][SIMD_NR];
    SIMD_UNROLL
    for (int i = 0; i < rows; i++) {
        SIMD_STORE(t[i], acc[i][0]);
        SIMD_STORE(t[i] + SIMD_W, acc[i][1]);
    }
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            float *e = c + i * rsc + j * csc;
            *e = beta == 0.0f ? t[i][j] : *e + t[i][j];
        }
}

/* The last row tile of a product whose M is not a multiple of MR computes
 * only about the rows it has (4 or 8 of them), not all MR: at a batch of 64
 * the 12-row kernel would otherwise compute 72 rows for 64.  Each element
 * gets the same arithmetic whichever variant computes it. */
SIMD_TARGET static void SIMD_TILE(const stgK_kernel *kr, int64_t m, int64_t n, int64_t k,
                                  const float *ap, const float *bp, float beta, float *c,
                                  int64_t rsc, int64_t csc, const float *next_a,
                                  const float *next_b)
{
    (void)kr, (void)next_a, (void)next_b;
    if (SIMD_MR > 4 && m <= 4)
        SIMD_ROWS(4, m, n, k, ap, bp, beta, c, rsc, csc);
    else if (SIMD_MR > 8 && m <= 8)
        SIMD_ROWS(8, m, n, k, ap, bp, beta, c, rsc, csc);
    else
        SIMD_ROWS(SIMD_MR, m, n, k, ap, bp, beta, c, rsc, csc);
}

#undef SIMD_ROWS
#undef SIMD_JOIN
#undef SIMD_JOIN2

#ifdef SIMD_INIT
void SIMD_INIT(stgK_kernel *kr)
{
    kr->id = SIMD_ID;
    kr->name = SIMD_NAME;
    kr->mr = SIMD_MR;
    kr->nr = SIMD_NR;
    kr->prefers_rows = true;
    kr->pack = stgK_pack_avx2;
    kr->tile = SIMD_TILE;
}
#endif
#undef SIMD_NR
#undef SIMD_UNROLL
#undef SIMD_UNROLL_K
