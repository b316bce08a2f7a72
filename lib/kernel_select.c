/*
 * Which GEMM micro-kernel a plan runs on.  Decided once per process, from
 * the CPU's features and what the installed BLIS says of itself, never by
 * timing: kernels round differently, and the same program on the same
 * machine must give the same bits every run.
 *
 * The default: BLIS's own micro-kernel where BLIS has one written for this
 * CPU (it knows the CPU best); else the widest of stgrad's that the CPU
 * runs.  STG_GEMM_KERNEL or the plan options force one.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gemm.h"

#define NKERNELS (STG_GEMM_PORTABLE + 1)

static const char *const names[NKERNELS] = {"auto", "blis", "avx512", "avx2", "portable"};

STG_API const char *stg_gemm_kernel_name(stg_gemm_kernel k)
{
    return k >= STG_GEMM_AUTO && k <= STG_GEMM_PORTABLE ? names[k] : NULL;
}

/* What the CPU must have for each kernel, for messages. */
static const char *const needs[NKERNELS] = {"", "a build with BLIS", "AVX-512F", "AVX2 and FMA",
                                            ""};

static bool cpu_runs(stg_gemm_kernel id)
{
    switch (id) {
    case STG_GEMM_BLIS:
#ifdef STG_HAVE_BLIS
        return true;
#else
        return false;
#endif
#if defined(__x86_64__)
    case STG_GEMM_AVX512:
        return __builtin_cpu_supports("avx512f");
    case STG_GEMM_AVX2:
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    case STG_GEMM_PORTABLE:
        return true;
    default:
        return false;
    }
}

/* A cache's size as the C library reports it (from CPUID on x86-64), or
 * 'fallback' where it reports none. */
static long cache_bytes(int name, long fallback)
{
    long v = sysconf(name);
    return v > 0 ? v : fallback;
}

static int64_t clamp_down(int64_t v, int64_t lo, int64_t hi, int64_t multiple)
{
    v = v < lo ? lo : v > hi ? hi : v;
    v -= v % multiple;
    return v > 0 ? v : multiple;
}

/*
 * Cache blocks of stgrad's kernels, from the caches the CPU reports (the
 * analytical model of Low et al., "Analytical modeling is enough for
 * high-performance BLIS", 2016, simplified):
 *  - KC: the micro-kernel streams MR x KC panels of A past one KC x NR panel
 *    of B, which stays in L1; give that panel half of L1 (the rest holds the
 *    A panels passing through).  48 KiB L1, NR 32: 192; 32 KiB, NR 16: 256
 *    (BLIS's own choice for its 6x16 Haswell kernel).
 *  - MC: an MC x KC block of A is read again for every B panel, from L2;
 *    give it half of L2.  1 MiB L2, KC 192: 672.
 *  - NC: a KC x NC block of B is read again for every A block, from L3,
 *    which other cores share; give it a quarter, at most 4096 columns (the
 *    L3 that virtual machines report is often the whole socket's).
 */
void stgK_block_sizes(stgK_kernel *kr)
{
    long l1 = cache_bytes(_SC_LEVEL1_DCACHE_SIZE, 32 << 10);
    long l2 = cache_bytes(_SC_LEVEL2_CACHE_SIZE, 512 << 10);
    long l3 = cache_bytes(_SC_LEVEL3_CACHE_SIZE, 8 << 20);
    int64_t f = (int64_t)sizeof(float);
    kr->kc = clamp_down(l1 / 2 / (kr->nr * f), 64, 1024, 8);
    kr->mc = clamp_down(l2 / 2 / (kr->kc * f), kr->mr, 4096, kr->mr);
    kr->nc = clamp_down(l3 / 4 / (kr->kc * f), kr->nr, 4096, kr->nr);
}

/* Everything decided once per process; read-only afterwards. */
static struct {
    stgK_kernel kernel[NKERNELS]; /* filled where cpu_runs */
    bool runs[NKERNELS];
    stg_gemm_kernel auto_id;     /* the default */
    stg_gemm_kernel env_id;      /* STG_GEMM_KERNEL, AUTO if unset */
    bool env_bad;                /* STG_GEMM_KERNEL names no kernel */
    char env[32];                /* its value, for messages */
    char blis[96];               /* "BLIS 0.9.0 chose 'zen3'", or that there is none */
    bool blis_native;
} proc;
static pthread_once_t proc_once = PTHREAD_ONCE_INIT;

static void decide(void)
{
    static void (*const init[NKERNELS])(stgK_kernel *) = {
        NULL, NULL, stgK_avx512_init, stgK_avx2_init, stgK_portable_init};
    for (int id = STG_GEMM_BLIS; id < NKERNELS; id++) {
        if (!(proc.runs[id] = cpu_runs(id)))
            continue;
#ifdef STG_HAVE_BLIS
        if (id == STG_GEMM_BLIS) {
            stgB_kernel_init(&proc.kernel[id]);
            continue;
        }
#endif
        init[id](&proc.kernel[id]);
        stgK_block_sizes(&proc.kernel[id]);
    }
    snprintf(proc.blis, sizeof proc.blis, "this build has no BLIS");
#ifdef STG_HAVE_BLIS
    stgB_about about;
    stgB_about_query(&about);
    proc.blis_native = about.native;
    snprintf(proc.blis, sizeof proc.blis, "BLIS %s chose '%s'", about.version, about.arch);
#endif
    proc.auto_id = proc.blis_native              ? STG_GEMM_BLIS
                   : proc.runs[STG_GEMM_AVX512] ? STG_GEMM_AVX512
                   : proc.runs[STG_GEMM_AVX2]   ? STG_GEMM_AVX2
                                                : STG_GEMM_PORTABLE;
    const char *env = getenv("STG_GEMM_KERNEL");
    proc.env_id = STG_GEMM_AUTO;
    if (env && *env) {
        snprintf(proc.env, sizeof proc.env, "%s", env);
        proc.env_bad = true;
        for (int id = STG_GEMM_AUTO; id < NKERNELS; id++)
            if (!strcmp(env, names[id]))
                proc.env_id = id, proc.env_bad = false;
    }
}

bool stgK_kernel_runs(stg_gemm_kernel id)
{
    pthread_once(&proc_once, decide);
    return id > STG_GEMM_AUTO && id < NKERNELS && proc.runs[id];
}

void stgK_kernel_get(stg_gemm_kernel id, stgK_kernel *kr)
{
    pthread_once(&proc_once, decide);
    *kr = proc.kernel[id];
}

bool stgK_kernel_choose(stg_gemm_kernel want, stgK_kernel *kr, char *why, size_t len)
{
    pthread_once(&proc_once, decide);
    const char *by = "the plan options";
    if (want == STG_GEMM_AUTO) {
        if (proc.env_bad) {
            snprintf(why, len, "STG_GEMM_KERNEL='%s' names no GEMM kernel (blis, avx512, avx2, "
                     "portable or auto)", proc.env);
            return false;
        }
        want = proc.env_id, by = "STG_GEMM_KERNEL";
    }
    if (want != STG_GEMM_AUTO && !proc.runs[want]) {
        snprintf(why, len, "GEMM kernel '%s' (asked for by %s) needs %s, which this %s lacks",
                 names[want], by, needs[want], want == STG_GEMM_BLIS ? "build" : "CPU");
        return false;
    }
    char reason[160];
    if (want != STG_GEMM_AUTO)
        snprintf(reason, sizeof reason, "forced by %s; %s", by, proc.blis);
    else if (proc.blis_native)
        snprintf(reason, sizeof reason, "%s, which has a kernel for this CPU", proc.blis);
    else if (proc.runs[STG_GEMM_BLIS])
        snprintf(reason, sizeof reason, "%s for this CPU, whose sgemm kernel is its reference one",
                 proc.blis);
    else
        snprintf(reason, sizeof reason, "%s", proc.blis);
    *kr = proc.kernel[want == STG_GEMM_AUTO ? proc.auto_id : want];
    snprintf(why, len, "gemm: %s %s %" PRId64 "x%" PRId64 " (MC %" PRId64 ", KC %" PRId64
             ", NC %" PRId64 "); %s", kr->id == STG_GEMM_BLIS ? "BLIS" : "stgrad",
             kr->id == STG_GEMM_BLIS ? "micro-kernel" : kr->name, kr->mr, kr->nr, kr->mc, kr->kc,
             kr->nc, reason);
    return true;
}
