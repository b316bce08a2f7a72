/*
 * The body of stgrad's vector micro-kernels, included once per instruction
 * set (kernel_avx512.c, kernel_avx2.c; the tests include it once more with
 * vectors emulated in plain C, which gives the same bits).  The includer
 * defines:
 *
 *   SIMD_V            the vector type, SIMD_W floats
 *   SIMD_NR           columns per tile (rows per tile are two vectors)
 *   SIMD_TILE         the name of the tile function to define
 *   SIMD_TARGET       a function attribute naming the instruction set
 *   SIMD_ZERO()       a vector of zeros
 *   SIMD_LOAD(p)      SIMD_W floats from p (any alignment)
 *   SIMD_STORE(p, v)  and back
 *   SIMD_BCAST(p)     *p in every lane
 *   SIMD_FMA(a, b, c) a * b + c with one rounding
 *   SIMD_ADD(a, b)    a + b
 *
 * A tile is 2*SIMD_W rows by SIMD_NR columns: a column of C is two vectors,
 * so each k step loads two vectors of the A panel and multiplies them by
 * each of the NR values of the B panel, broadcast.  The accumulators are
 * 2 * NR registers: 24 of AVX-512's 32 for 32x12, 12 of AVX2's 16 for 16x6,
 * leaving room for the two A vectors and a broadcast.
 *
 * Every element's sum starts at zero and adds a * b for k in order with
 * one rounding each; C's old value (beta 1) is added last.  Edge tiles and
 * strided C go through a local tile with exactly the same arithmetic.
 */
#define SIMD_MR (2 * SIMD_W)

#if defined(__clang__)
#define SIMD_UNROLL _Pragma("unroll")
#else
#define SIMD_UNROLL _Pragma("GCC unroll 16")
#endif

SIMD_TARGET static void SIMD_TILE(const stgK_kernel *kr, int64_t m, int64_t n, int64_t k,
                                  const float *ap, const float *bp, float beta, float *c,
                                  int64_t rsc, int64_t csc, const float *next_a,
                                  const float *next_b)
{
    (void)kr, (void)next_a, (void)next_b;
    SIMD_V acc[SIMD_NR][2];
    SIMD_UNROLL
    for (int j = 0; j < SIMD_NR; j++) {
        acc[j][0] = SIMD_ZERO();
        acc[j][1] = SIMD_ZERO();
    }
    bool direct = m == SIMD_MR && n == SIMD_NR && rsc == 1;
    if (direct)
        SIMD_UNROLL
        for (int j = 0; j < SIMD_NR; j++) /* C is wanted again at the end of the loop */
            __builtin_prefetch(c + j * csc), __builtin_prefetch(c + j * csc + SIMD_MR - 1);
    for (int64_t p = 0; p < k; p++, ap += SIMD_MR, bp += SIMD_NR) {
        SIMD_V a0 = SIMD_LOAD(ap), a1 = SIMD_LOAD(ap + SIMD_W);
        SIMD_UNROLL
        for (int j = 0; j < SIMD_NR; j++) {
            SIMD_V b = SIMD_BCAST(bp + j);
            acc[j][0] = SIMD_FMA(a0, b, acc[j][0]);
            acc[j][1] = SIMD_FMA(a1, b, acc[j][1]);
        }
    }
    if (direct) {
        SIMD_UNROLL
        for (int j = 0; j < SIMD_NR; j++) {
            float *cj = c + j * csc;
            if (beta != 0.0f) {
                acc[j][0] = SIMD_ADD(SIMD_LOAD(cj), acc[j][0]);
                acc[j][1] = SIMD_ADD(SIMD_LOAD(cj + SIMD_W), acc[j][1]);
            }
            SIMD_STORE(cj, acc[j][0]);
            SIMD_STORE(cj + SIMD_W, acc[j][1]);
        }
        return;
    }
    float t[SIMD_NR][SIMD_MR];
    SIMD_UNROLL
    for (int j = 0; j < SIMD_NR; j++) {
        SIMD_STORE(t[j], acc[j][0]);
        SIMD_STORE(t[j] + SIMD_W, acc[j][1]);
    }
    for (int64_t j = 0; j < n; j++)
        for (int64_t i = 0; i < m; i++) {
            float *e = c + i * rsc + j * csc;
            *e = beta == 0.0f ? t[j][i] : *e + t[j][i];
        }
}

#undef SIMD_MR
#undef SIMD_UNROLL
