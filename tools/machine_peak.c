/*
 * The machine's limits (see machine_peak.h).  The FMA loop keeps more
 * independent accumulators than the FMA units' latency times their count,
 * so it runs at the issue rate and nothing else.
 */
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "machine_peak.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define HAVE_FMA_KERNELS 1
#endif

enum { CHAINS = 12, ITERS = 4000000 };

static double seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

#ifdef HAVE_FMA_KERNELS
/* Each returns the FLOPs it did; the sum keeps the chains alive. */
__attribute__((target("avx2,fma"))) static double fma256(float *sink)
{
    __m256 acc[CHAINS], x = _mm256_set1_ps(0.999999f), y = _mm256_set1_ps(1e-7f);
    for (int c = 0; c < CHAINS; c++)
        acc[c] = _mm256_set1_ps((float)c);
    for (long i = 0; i < ITERS; i++)
        for (int c = 0; c < CHAINS; c++)
            acc[c] = _mm256_fmadd_ps(acc[c], x, y);
    __m256 s = acc[0];
    for (int c = 1; c < CHAINS; c++)
        s = _mm256_add_ps(s, acc[c]);
    *sink += _mm256_cvtss_f32(s);
    return 2.0 * 8 * CHAINS * (double)ITERS;
}

__attribute__((target("avx512f"))) static double fma512(float *sink)
{
    __m512 acc[CHAINS], x = _mm512_set1_ps(0.999999f), y = _mm512_set1_ps(1e-7f);
    for (int c = 0; c < CHAINS; c++)
        acc[c] = _mm512_set1_ps((float)c);
    for (long i = 0; i < ITERS / 2; i++)
        for (int c = 0; c < CHAINS; c++)
            acc[c] = _mm512_fmadd_ps(acc[c], x, y);
    __m512 s = acc[0];
    for (int c = 1; c < CHAINS; c++)
        s = _mm512_add_ps(s, acc[c]);
    *sink += _mm512_reduce_add_ps(s);
    return 2.0 * 16 * CHAINS * (double)(ITERS / 2);
}

static double run_fma(double (*kernel)(float *), int threads)
{
    double best = 0;
    volatile float sink = 0;
    for (int rep = 0; rep < 3; rep++) {
        double flops = 0, t0 = seconds();
#pragma omp parallel num_threads(threads) reduction(+ : flops)
        {
            float s = 0;
            flops += kernel(&s);
            sink += s; /* racy on purpose: only keeps the result alive */
        }
        double g = flops / (seconds() - t0) * 1e-9;
        best = g > best ? g : best;
    }
    return best;
}
#endif

double fma_peak_gflops(int threads)
{
#ifdef HAVE_FMA_KERNELS
    __builtin_cpu_init();
    double best = 0;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        best = run_fma(fma256, threads);
    if (__builtin_cpu_supports("avx512f")) {
        double g = run_fma(fma512, threads);
        best = g > best ? g : best;
    }
    return best;
#else
    (void)threads;
    return 0;
#endif
}

typedef float v8 __attribute__((vector_size(32)));
#pragma GCC diagnostic ignored "-Wpsabi" /* v8 only crosses static inlined helpers */

/* Four independent vector sums: one would wait on the adder's latency and
 * measure that instead of the memory. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("arch=x86-64-v3", "default")))
#endif
static float sum(const float *a, size_t n)
{
    v8 s0 = {0}, s1 = {0}, s2 = {0}, s3 = {0};
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        v8 x0, x1, x2, x3;
        memcpy(&x0, a + i, sizeof x0);
        memcpy(&x1, a + i + 8, sizeof x1);
        memcpy(&x2, a + i + 16, sizeof x2);
        memcpy(&x3, a + i + 24, sizeof x3);
        s0 += x0, s1 += x1, s2 += x2, s3 += x3;
    }
    v8 s = (s0 + s1) + (s2 + s3);
    float r = s[0] + s[1] + s[2] + s[3] + s[4] + s[5] + s[6] + s[7];
    for (; i < n; i++)
        r += a[i];
    return r;
}

double read_bandwidth_gbs(size_t bytes, int threads)
{
    size_t n = bytes / sizeof(float);
    float *a = aligned_alloc(64, n * sizeof(float));
    if (!a)
        return 0;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (size_t i = 0; i < n; i++) /* the same threads touch what they will read */
        a[i] = 1.0f;
    double best = 0;
    volatile float sink = 0;
    for (int rep = 0; rep < 5; rep++) {
        float s = 0;
        double t0 = seconds();
#pragma omp parallel num_threads(threads) reduction(+ : s)
        {
            size_t t = (size_t)omp_get_thread_num(), nt = (size_t)omp_get_num_threads();
            size_t lo = n * t / nt, hi = n * (t + 1) / nt;
            s += sum(a + lo, hi - lo);
        }
        double g = (double)(n * sizeof(float)) / (seconds() - t0) * 1e-9;
        sink += s;
        best = g > best ? g : best;
    }
    (void)sink;
    free(a);
    return best;
}
