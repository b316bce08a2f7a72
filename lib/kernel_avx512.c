/*
 * stgrad's AVX-512F micro-kernel: 12x32 tiles in zmm registers (the body
 * is kernel_simd.h).  Built on every x86-64 with AVX-512 code for this
 * function alone (the x86-64-v4 clones of internal.h are the only other);
 * kernel_select.c runs it only on CPUs that have AVX-512F.
 */
#include "gemm.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define SIMD_V __m512
#define SIMD_W 16
#define SIMD_MR 12
#define SIMD_TILE tile_avx512
#define SIMD_TARGET __attribute__((target("avx512f")))
#define SIMD_ZERO() _mm512_setzero_ps()
#define SIMD_LOAD(p) _mm512_loadu_ps(p)
#define SIMD_STORE(p, v) _mm512_storeu_ps(p, v)
#define SIMD_BCAST(p) _mm512_set1_ps(*(p))
#define SIMD_FMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define SIMD_ADD(a, b) _mm512_add_ps(a, b)
#define SIMD_INIT stgK_avx512_init
#define SIMD_ID STG_GEMM_AVX512
#define SIMD_NAME "avx512"
#include "kernel_simd.h"
#else
void stgK_avx512_init(stgK_kernel *kr) { stgK_portable_init(kr); } /* never chosen off x86-64 */
#endif
