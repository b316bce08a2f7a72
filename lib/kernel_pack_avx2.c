/*
 * Packing for the AVX2 and AVX-512 kernels, with AVX2 loads, stores and
 * shuffles (every CPU with AVX-512F has AVX2).  Only copies, so it gives
 * the same panels as stgK_pack_panel, faster:
 *  - a panel whose k steps are contiguous runs (B of a row-major product,
 *    A of a transposed one) is copied in vectors, masked at the edges;
 *  - a panel gathered from rows that are contiguous along k (A of a
 *    row-major product) is read eight k steps of eight rows at a time and
 *    transposed in registers, where one value at a time was measured at a
 *    third of the speed on Zen 3.
 * Everything else goes to stgK_pack_panel.
 */
#include "gemm.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define AVX2 __attribute__((target("avx2")))

/* r[i] = row i of an 8x8 block in, column i out. */
AVX2 static inline void transpose8(__m256 r[8])
{
    __m256 t[8], s[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        s[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
        s[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
        s[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        s[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    for (int i = 0; i < 4; i++) {
        r[i] = _mm256_permute2f128_ps(s[i], s[i + 4], 0x20);
        r[i + 4] = _mm256_permute2f128_ps(s[i], s[i + 4], 0x31);
    }
}

/* The first g (1 to 8) lanes of v to d, and nothing past them. */
AVX2 static inline void store_lanes(float *d, __m256 v, int64_t g)
{
    if (g == 8) {
        _mm256_storeu_ps(d, v);
        return;
    }
    __m128 x = _mm256_castps256_ps128(v);
    if (g >= 4) {
        _mm_storeu_ps(d, x);
        x = _mm256_extractf128_ps(v, 1);
        d += 4, g -= 4;
    }
    if (g >= 2) {
        _mm_storel_pi((__m64 *)d, x);
        x = _mm_movehl_ps(x, x);
        d += 2, g -= 2;
    }
    if (g)
        _mm_store_ss(d, x);
}

/* The first n (0 to 4) floats from p, the rest of the lanes zero; nothing
 * past them is read.  Masked loads (vmaskmovps) were measured at a quarter
 * of this speed on Zen 3. */
AVX2 static inline __m128 load4(const float *p, int64_t n)
{
    switch (n) {
    case 0:
        return _mm_setzero_ps();
    case 1:
        return _mm_load_ss(p);
    case 2:
        return _mm_loadl_pi(_mm_setzero_ps(), (const __m64 *)p);
    case 3:
        return _mm_movelh_ps(_mm_loadl_pi(_mm_setzero_ps(), (const __m64 *)p), _mm_load_ss(p + 2));
    default:
        return _mm_loadu_ps(p);
    }
}

/* The first n lanes from p (fewer than 8: the rest zero, and not read). */
AVX2 static inline __m256 load_lanes(const float *p, int64_t n)
{
    if (n >= 8)
        return _mm256_loadu_ps(p);
    if (n <= 4)
        return _mm256_castps128_ps256(load4(p, n < 0 ? 0 : n));
    return _mm256_set_m128(load4(p + 4, n - 4), _mm_loadu_ps(p));
}

/* Rows [r0, r0 + g) of the panel (of which those below 'dim' exist, each
 * contiguous along k at stride 'inc' from the next), k steps [0, k8). */
AVX2 static void gather_rows(int64_t w, int64_t dim, int64_t r0, int64_t g, int64_t k8,
                             const float *src, int64_t inc, float *dst)
{
    int64_t real = dim - r0 < g ? dim - r0 : g;
    for (int64_t q = 0; q < k8; q += 8) {
        __m256 r[8];
        for (int64_t i = 0; i < 8; i++)
            r[i] = i < real ? _mm256_loadu_ps(src + (r0 + i) * inc + q) : _mm256_setzero_ps();
        transpose8(r);
        for (int64_t j = 0; j < 8; j++)
            store_lanes(dst + (q + j) * w + r0, r[j], g);
    }
}

AVX2 void stgK_pack_avx2(const stgK_kernel *kr, bool rows, int64_t dim, int64_t k,
                         const float *src, int64_t inc, int64_t ld, float *dst)
{
    int64_t w = rows ? kr->mr : kr->nr;
    if (inc == 1 && dim == w && w >= 4) { /* a whole panel: vectors of 8 and of 4, the
                                               last one overlapping the one before */
        for (int64_t q = 0; q < k; q++) {
            const float *sq = src + q * ld;
            float *dq = dst + q * w;
            int64_t i = 0;
            for (; i + 8 <= w; i += 8)
                _mm256_storeu_ps(dq + i, _mm256_loadu_ps(sq + i));
            for (; i + 4 <= w; i += 4)
                _mm_storeu_ps(dq + i, _mm_loadu_ps(sq + i));
            if (i < w)
                _mm_storeu_ps(dq + w - 4, _mm_loadu_ps(sq + w - 4));
        }
        return;
    }
    if (inc == 1) {
        for (int64_t q = 0; q < k; q++)
            for (int64_t i = 0; i < w; i += 8)
                store_lanes(dst + q * w + i, load_lanes(src + q * ld + i, dim - i),
                            w - i < 8 ? w - i : 8);
        return;
    }
    if (ld != 1 || k < 8) {
        stgK_pack_panel(kr, rows, dim, k, src, inc, ld, dst);
        return;
    }
    int64_t k8 = k - k % 8;
    for (int64_t r0 = 0; r0 < w; r0 += 8)
        gather_rows(w, dim, r0, w - r0 < 8 ? w - r0 : 8, k8, src, inc, dst);
    if (k8 < k) /* the last k steps, one value at a time */
        stgK_pack_panel(kr, rows, dim, k - k8, src + k8, inc, ld, dst + k8 * w);
}
#else
void stgK_pack_avx2(const stgK_kernel *kr, bool rows, int64_t dim, int64_t k, const float *src,
                    int64_t inc, int64_t ld, float *dst)
{
    stgK_pack_panel(kr, rows, dim, k, src, inc, ld, dst);
}
#endif
