/*
 * stgrad's vector micro-kernels with their vectors emulated in plain C
 * (kernel_simd.h instantiated with arrays and fmaf), so that the AVX-512
 * kernel's logic -- 12x32 tiles, edges, strides, beta -- is tested on every
 * machine, not only on CPUs with AVX-512.  fmaf rounds once, as the FMA
 * instructions do, so an emulated kernel gives the same bits as the real
 * one; test_gemm checks that wherever the real one runs.
 */
#include <math.h>
#include <string.h>

#include "kernel_emulated.h"

#define EMULATED_VECTOR(W)                                                                   \
    typedef struct v##W {                                                                    \
        float f[W];                                                                          \
    } v##W;                                                                                  \
    static inline v##W v##W##_zero(void)                                                     \
    {                                                                                        \
        v##W v;                                                                              \
        memset(&v, 0, sizeof v);                                                             \
        return v;                                                                            \
    }                                                                                        \
    static inline v##W v##W##_load(const float *p)                                           \
    {                                                                                        \
        v##W v;                                                                              \
        memcpy(v.f, p, sizeof v.f);                                                          \
        return v;                                                                            \
    }                                                                                        \
    static inline void v##W##_store(float *p, v##W v) { memcpy(p, v.f, sizeof v.f); }        \
    static inline v##W v##W##_bcast(const float *p)                                          \
    {                                                                                        \
        v##W v;                                                                              \
        for (int i = 0; i < W; i++)                                                          \
            v.f[i] = *p;                                                                     \
        return v;                                                                            \
    }                                                                                        \
    static inline v##W v##W##_fma(v##W a, v##W b, v##W c)                                    \
    {                                                                                        \
        for (int i = 0; i < W; i++)                                                          \
            c.f[i] = fmaf(a.f[i], b.f[i], c.f[i]);                                           \
        return c;                                                                            \
    }                                                                                        \
    static inline v##W v##W##_add(v##W a, v##W b)                                            \
    {                                                                                        \
        for (int i = 0; i < W; i++)                                                          \
            a.f[i] += b.f[i];                                                                \
        return a;                                                                            \
    }

EMULATED_VECTOR(16)
EMULATED_VECTOR(8)

#define SIMD_TARGET
#define SIMD_NO_UNROLL
#define SIMD_V v16
#define SIMD_W 16
#define SIMD_MR 12
#define SIMD_TILE tile_emulated_avx512
#define SIMD_ZERO() v16_zero()
#define SIMD_LOAD(p) v16_load(p)
#define SIMD_STORE(p, v) v16_store(p, v)
#define SIMD_BCAST(p) v16_bcast(p)
#define SIMD_FMA(a, b, c) v16_fma(a, b, c)
#define SIMD_ADD(a, b) v16_add(a, b)
#include "kernel_simd.h"
#undef SIMD_V
#undef SIMD_W
#undef SIMD_MR
#undef SIMD_TILE
#undef SIMD_ZERO
#undef SIMD_LOAD
#undef SIMD_STORE
#undef SIMD_BCAST
#undef SIMD_FMA
#undef SIMD_ADD

#define SIMD_V v8
#define SIMD_W 8
#define SIMD_MR 6
#define SIMD_TILE tile_emulated_avx2
#define SIMD_ZERO() v8_zero()
#define SIMD_LOAD(p) v8_load(p)
#define SIMD_STORE(p, v) v8_store(p, v)
#define SIMD_BCAST(p) v8_bcast(p)
#define SIMD_FMA(a, b, c) v8_fma(a, b, c)
#define SIMD_ADD(a, b) v8_add(a, b)
#include "kernel_simd.h"

/* Our tile function with the real kernel's register and cache blocks. */
static void emulate(stgK_tile_fn tile, int64_t mr, int64_t nr, stgK_kernel *kr)
{
    memset(kr, 0, sizeof *kr);
    kr->mr = mr, kr->nr = nr;
    stgK_block_sizes(kr);
    kr->prefers_rows = true;
    /* the packing the real kernels use, where this CPU runs it */
    kr->pack = stgK_kernel_runs(STG_GEMM_AVX2) ? stgK_pack_avx2 : stgK_pack_panel;
    kr->tile = tile;
}

void te_emulated_avx512(stgK_kernel *kr)
{
    emulate(tile_emulated_avx512, 12, 32, kr);
    kr->id = STG_GEMM_AVX512;
    kr->name = "avx512 (emulated)";
}

void te_emulated_avx2(stgK_kernel *kr)
{
    emulate(tile_emulated_avx2, 6, 16, kr);
    kr->id = STG_GEMM_AVX2;
    kr->name = "avx2 (emulated)";
}
