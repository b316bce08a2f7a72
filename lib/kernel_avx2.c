/*
 * stgrad's AVX2 + FMA micro-kernel: 6x16 tiles in ymm registers (the body
 * is kernel_simd.h).  Built on every x86-64 with AVX2 code for this
 * function alone; kernel_select.c runs it only on CPUs that have AVX2 and
 * FMA.
 */
#include "gemm.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define SIMD_V __m256
#define SIMD_W 8
#define SIMD_MR 6
#define SIMD_TILE tile_avx2
#define SIMD_TARGET __attribute__((target("avx2,fma")))
#define SIMD_ZERO() _mm256_setzero_ps()
#define SIMD_LOAD(p) _mm256_loadu_ps(p)
#define SIMD_STORE(p, v) _mm256_storeu_ps(p, v)
#define SIMD_BCAST(p) _mm256_broadcast_ss(p)
#define SIMD_FMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define SIMD_ADD(a, b) _mm256_add_ps(a, b)
#define SIMD_INIT stgK_avx2_init
#define SIMD_ID STG_GEMM_AVX2
#define SIMD_NAME "avx2"
#include "kernel_simd.h"
#else
void stgK_avx2_init(stgK_kernel *kr) { stgK_portable_init(kr); } /* never chosen off x86-64 */
#endif
