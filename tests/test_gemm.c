/*
 * The GEMM micro-kernels and the driver (lib/gemm.c), each kernel on its
 * own: every kernel this CPU runs, and the vector kernels' logic with
 * emulated vectors on any CPU, against a double-precision reference.
 * Sizes run from 1 to past two register blocks and past each cache block
 * (with the blocks shrunk, and with the real ones); operands row-major,
 * transposed and strided; beta 0 over NaN and beta 1; K over several KC
 * blocks.  A kernel this CPU cannot run is skipped by name.
 */
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "internal.h"
#include "kernel_emulated.h"
#include "testutil.h"

/* A matrix of rows x cols inside a buffer, at any strides. */
typedef struct mat {
    int64_t rows, cols, rs, cs, len;
    float *v;
} mat;

/* Layouts: 0 row-major, 1 column-major (a transposed view), 2 row-major
 * with padded rows, 3 both strides > 1 (every other column of a wider row). */
static mat mat_new(int64_t rows, int64_t cols, int layout)
{
    mat x = {rows, cols, cols, 1, 0, NULL};
    if (layout == 1)
        x.rs = 1, x.cs = rows;
    else if (layout == 2)
        x.rs = cols + 5;
    else if (layout == 3)
        x.rs = 2 * cols + 3, x.cs = 2;
    x.len = rows && cols ? (rows - 1) * x.rs + (cols - 1) * x.cs + 1 : 1;
    x.v = malloc(sizeof(float) * (size_t)x.len);
    assert_non_null(x.v);
    return x;
}

static float *at(const mat *x, int64_t i, int64_t j) { return x->v + i * x->rs + j * x->cs; }

/* C = A B + beta C through stgK_gemm, checked element by element against a
 * double-precision sum, with the rounding of k float operations allowed;
 * with beta 0, C starts as NaN (the kernel must not read it); bytes of C's
 * buffer outside the matrix, and past the workspace stgK_gemm_workspace
 * asked for, must not change. */
static void check_product(const stgK_kernel *kr, int64_t m, int64_t n, int64_t k, int la, int lb,
                          int lc, float beta, uint64_t seed)
{
    mat a = mat_new(m, k, la), b = mat_new(k, n, lb), c = mat_new(m, n, lc);
    tu_fill(a.v, a.len, seed, -1, 1);
    tu_fill(b.v, b.len, seed + 1, -1, 1);
    tu_fill(c.v, c.len, seed + 2, -1, 1);
    float *before = malloc(sizeof(float) * (size_t)c.len);
    assert_non_null(before);
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++)
            if (beta == 0.0f)
                *at(&c, i, j) = NAN;
    memcpy(before, c.v, sizeof(float) * (size_t)c.len);
    size_t ws = stgK_gemm_workspace(kr, m, n, k), guard = 256;
    unsigned char *work = aligned_alloc(STG_ALIGN, (ws + guard + STG_ALIGN - 1) / STG_ALIGN * STG_ALIGN);
    assert_non_null(work);
    memset(work + ws, 0x5a, guard);
    stgK_gemm(kr, (float *)work, m, n, k, a.v, a.rs, a.cs, b.v, b.rs, b.cs, beta, c.v, c.rs, c.cs);
    for (size_t i = ws; i < ws + guard; i++)
        if (work[i] != 0x5a)
            fail_msg("%s: %ldx%ldx%ld: wrote %zu bytes past the %zu-byte workspace", kr->name,
                     (long)m, (long)n, (long)k, i - ws + 1, ws);
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double s = 0, mag = 0;
            for (int64_t p = 0; p < k; p++) {
                double t = (double)*at(&a, i, p) * *at(&b, p, j);
                s += t;
                mag += fabs(t);
            }
            float old = before[(at(&c, i, j) - c.v)];
            if (beta != 0.0f)
                s += old, mag += fabs(old);
            double got = *at(&c, i, j), tol = (double)(k + 2) * FLT_EPSILON * mag + 1e-30;
            if (!(fabs(got - s) <= tol))
                fail_msg("%s: %ldx%ldx%ld, layouts %d%d%d, beta %g: C[%ld,%ld] = %.9g, want %.9g",
                         kr->name, (long)m, (long)n, (long)k, la, lb, lc, (double)beta,
                         (long)i, (long)j, got, s);
            before[(at(&c, i, j) - c.v)] = *at(&c, i, j); /* for the comparison below */
        }
    if (memcmp(before, c.v, sizeof(float) * (size_t)c.len))
        fail_msg("%s: %ldx%ldx%ld, layouts %d%d%d: wrote outside C", kr->name, (long)m,
                 (long)n, (long)k, la, lb, lc);
    free(work);
    free(before);
    free(a.v), free(b.v), free(c.v);
}

/* 1, 2, around one register block, and past two. */
static int sizes(int64_t r, int64_t *out)
{
    int64_t cand[] = {1, 2, r - 1, r, r + 1, 2 * r + 3};
    int n = 0;
    for (size_t i = 0; i < sizeof cand / sizeof cand[0]; i++) {
        bool dup = cand[i] < 1;
        for (int j = 0; j < n && !dup; j++)
            dup = out[j] == cand[i];
        if (!dup)
            out[n++] = cand[i];
    }
    return n;
}

static void check_kernel(const stgK_kernel *real)
{
    uint64_t seed = 1;
    int64_t ms[8], ns[8];
    int nm = sizes(real->mr, ms), nn = sizes(real->nr, ns);
    static const int64_t ks[] = {1, 7, 33};
    /* register blocks: every edge, every layout of C, both betas */
    for (int im = 0; im < nm; im++)
        for (int in = 0; in < nn; in++)
            for (int ik = 0; ik < 3; ik++)
                for (int lc = 0; lc < 4; lc++)
                    check_product(real, ms[im], ns[in], ks[ik], (im + ik) % 4, (in + lc) % 4, lc,
                                  (im + in + ik) % 2 ? 1.0f : 0.0f, seed++);
    /* cache blocks shrunk so that every loop of the driver turns several
     * times with a remainder: M past MC, N past NC, K past KC */
    stgK_kernel small = *real;
    small.mc = 2 * real->mr, small.kc = 16, small.nc = 2 * real->nr;
    for (int la = 0; la < 4; la++)
        for (int lb = 0; lb < 4; lb++)
            check_product(&small, 2 * small.mc + 3, 2 * small.nc + 1, 3 * small.kc + 5, la, lb,
                          (la + lb) % 4, (la + lb) % 2 ? 1.0f : 0.0f, seed++);
    /* the real cache blocks, one at a time, with C by rows and by columns
     * (the driver transposes one of the two, swapping M and N) */
    int64_t mc = real->mc + real->mr + 1, nc = real->nc + real->nr + 1;
    check_product(real, real->mr + 1, real->nr + 1, 2 * real->kc + 3, 0, 1, 0, 1.0f, seed++);
    for (int lc = 0; lc < 2; lc++) {
        check_product(real, mc, 3, 5, 1, 0, lc, 0.0f, seed++);
        check_product(real, 3, mc, 5, 0, 1, lc, 1.0f, seed++);
        check_product(real, 3, nc, 5, 0, 0, lc, 1.0f, seed++);
        check_product(real, nc, 3, 5, 1, 0, lc, 0.0f, seed++);
    }
    /* an empty K: C = beta C */
    check_product(real, 5, 7, 0, 0, 0, 0, 0.0f, seed++);
    check_product(real, 5, 7, 0, 0, 0, 3, 1.0f, seed++);
}

static bool runnable(stg_gemm_kernel id, stgK_kernel *kr)
{
    if (!stgK_kernel_runs(id)) {
        print_message("kernel %s: skipped, this CPU or build cannot run it\n",
                      stg_gemm_kernel_name(id));
        return false;
    }
    stgK_kernel_get(id, kr);
    return true;
}

#define KERNEL_TEST(id, label)                                                                 \
    static void test_##label##_products(void **state)                                         \
    {                                                                                          \
        (void)state;                                                                           \
        stgK_kernel kr;                                                                        \
        if (!runnable(id, &kr))                                                                \
            skip();                                                                            \
        check_kernel(&kr);                                                                     \
    }
KERNEL_TEST(STG_GEMM_BLIS, blis)
KERNEL_TEST(STG_GEMM_AVX512, avx512)
KERNEL_TEST(STG_GEMM_AVX2, avx2)
KERNEL_TEST(STG_GEMM_PORTABLE, portable)

static void test_emulated_avx512_products(void **state)
{
    (void)state;
    stgK_kernel kr;
    te_emulated_avx512(&kr);
    check_kernel(&kr);
}

static void test_emulated_avx2_products(void **state)
{
    (void)state;
    stgK_kernel kr;
    te_emulated_avx2(&kr);
    check_kernel(&kr);
}

/* The emulated kernel and the real one give the same bits, which is what
 * makes the emulated tests stand for the real kernel on other CPUs. */
static void same_bits(stg_gemm_kernel id, void (*emulated)(stgK_kernel *))
{
    stgK_kernel real, emu;
    if (!runnable(id, &real))
        skip();
    emulated(&emu);
    assert_int_equal(emu.mr, real.mr);
    assert_int_equal(emu.nr, real.nr);
    assert_int_equal(emu.kc, real.kc);
    int64_t m = 2 * real.mr + 5, n = 3 * real.nr + 1, k = real.kc + 37;
    for (int lc = 0; lc < 4; lc++) {
        mat a = mat_new(m, k, 0), b = mat_new(k, n, 1), c1 = mat_new(m, n, lc),
            c2 = mat_new(m, n, lc);
        tu_fill(a.v, a.len, 7, -1, 1);
        tu_fill(b.v, b.len, 8, -1, 1);
        tu_fill(c1.v, c1.len, 9, -1, 1);
        memcpy(c2.v, c1.v, sizeof(float) * (size_t)c1.len);
        size_t ws = stgK_gemm_workspace(&real, m, n, k);
        float *work = aligned_alloc(STG_ALIGN, (ws + STG_ALIGN - 1) / STG_ALIGN * STG_ALIGN);
        assert_non_null(work);
        stgK_gemm(&real, work, m, n, k, a.v, a.rs, a.cs, b.v, b.rs, b.cs, 1.0f, c1.v, c1.rs,
                  c1.cs);
        stgK_gemm(&emu, work, m, n, k, a.v, a.rs, a.cs, b.v, b.rs, b.cs, 1.0f, c2.v, c2.rs,
                  c2.cs);
        assert_memory_equal(c1.v, c2.v, sizeof(float) * (size_t)c1.len);
        free(work);
        free(a.v), free(b.v), free(c1.v), free(c2.v);
    }
}

static void test_emulated_avx512_same_bits(void **state)
{
    (void)state;
    same_bits(STG_GEMM_AVX512, te_emulated_avx512);
}

static void test_emulated_avx2_same_bits(void **state)
{
    (void)state;
    same_bits(STG_GEMM_AVX2, te_emulated_avx2);
}

/* A product and both gradients through a plan forced onto each kernel, at
 * 1, 2 and 3 threads: the same bits at every thread count. */
static void test_any_threads_same_bits(void **state)
{
    (void)state;
    int64_t ad[2] = {301, 77}, bd[2] = {77, 203};
    for (int id = STG_GEMM_BLIS; id <= STG_GEMM_PORTABLE; id++) {
        if (!stgK_kernel_runs(id)) {
            print_message("kernel %s: skipped, this CPU or build cannot run it\n",
                          stg_gemm_kernel_name(id));
            continue;
        }
        float *first[3] = {NULL};
        for (int threads = 1; threads <= 3; threads++) {
            stg_graph *g = stg_graph_new();
            stg_tensor a = stg_input(g, "a", 2, ad), b = stg_input(g, "b", 2, bd);
            stg_tensor c = stg_matmul(g, a, b);
            stg_graph_require_grad(g, a);
            stg_graph_require_grad(g, b);
            stg_tensor loss = stg_sum(g, stg_mul(g, c, c), 0, NULL, 0);
            stg_graph_keep(g, c);
            stg_plan_options o;
            stg_plan_options_init(&o);
            o.threads = threads;
            o.optimizer = STG_OPTIM_NONE;
            o.gemm_kernel = id;
            stg_plan *p = tu_plan_with(g, loss, &o);
            stg_gemm_info gi;
            assert_int_equal(stg_plan_gemm_info(p, &gi), STG_OK);
            assert_int_equal(gi.kernel, id);
            assert_string_equal(gi.name, stg_gemm_kernel_name(id));
            tu_fill(stg_plan_data(p, a), 301 * 77, 11, -1, 1);
            tu_fill(stg_plan_data(p, b), 77 * 203, 12, -1, 1);
            assert_int_equal(stg_plan_step(p), STG_OK);
            const float *r[3] = {stg_plan_data(p, c), stg_plan_grad(p, a), stg_plan_grad(p, b)};
            size_t len[3] = {301 * 203, 301 * 77, 77 * 203};
            for (int i = 0; i < 3; i++) {
                if (threads == 1) {
                    first[i] = malloc(len[i] * sizeof(float));
                    assert_non_null(first[i]);
                    memcpy(first[i], r[i], len[i] * sizeof(float));
                } else if (memcmp(first[i], r[i], len[i] * sizeof(float))) {
                    fail_msg("kernel %s: result %d differs at %d threads", gi.name, i, threads);
                }
            }
            stg_plan_free(p);
            stg_graph_free(g);
        }
        for (int i = 0; i < 3; i++)
            free(first[i]);
    }
}

/* Forcing a kernel: reported back; one the CPU cannot run, or a value that
 * names none, fails plan creation with STG_INVALID and says why. */
static void test_forcing_a_kernel(void **state)
{
    (void)state;
    stg_graph *g = stg_graph_new();
    int64_t d[2] = {4, 4};
    stg_tensor a = stg_param(g, "a", 2, d), b = stg_input(g, "b", 2, d);
    stg_tensor loss = stg_sum(g, stg_matmul(g, a, b), 0, NULL, 0);
    stg_plan_options o;
    stg_plan_options_init(&o);
    stg_plan *p = NULL;
    o.gemm_kernel = (stg_gemm_kernel)99;
    assert_int_equal(stg_plan_create(g, loss, &o, &p), STG_INVALID);
    assert_null(p);
    assert_non_null(strstr(stg_plan_last_message(), "gemm_kernel 99"));
    assert_null(stg_gemm_kernel_name((stg_gemm_kernel)99));
    int refused = 0;
    for (int id = STG_GEMM_BLIS; id <= STG_GEMM_PORTABLE; id++) {
        o.gemm_kernel = id;
        stg_status st = stg_plan_create(g, loss, &o, &p);
        if (stgK_kernel_runs(id)) {
            assert_int_equal(st, STG_OK);
            stg_gemm_info gi;
            assert_int_equal(stg_plan_gemm_info(p, &gi), STG_OK);
            assert_int_equal(gi.kernel, id);
            assert_non_null(strstr(gi.why, "forced by the plan options"));
            stg_plan_free(p);
        } else {
            refused++;
            assert_int_equal(st, STG_INVALID);
            assert_null(p);
            const char *msg = stg_plan_last_message();
            assert_non_null(strstr(msg, stg_gemm_kernel_name(id)));
            assert_non_null(strstr(msg, "lacks"));
            print_message("refused as expected: %s\n", msg);
        }
    }
    if (!refused)
        print_message("every kernel runs here: the refusal is not exercised\n");
    stg_gemm_info gi;
    assert_int_equal(stg_plan_gemm_info(NULL, &gi), STG_INVALID);
    o.gemm_kernel = STG_GEMM_AUTO;
    assert_int_equal(stg_plan_create(g, loss, &o, &p), STG_OK);
    assert_int_equal(stg_plan_gemm_info(p, NULL), STG_INVALID);
    stg_plan_free(p);
    stg_graph_free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_blis_products),
        cmocka_unit_test(test_avx512_products),
        cmocka_unit_test(test_avx2_products),
        cmocka_unit_test(test_portable_products),
        cmocka_unit_test(test_emulated_avx512_products),
        cmocka_unit_test(test_emulated_avx2_products),
        cmocka_unit_test(test_emulated_avx512_same_bits),
        cmocka_unit_test(test_emulated_avx2_same_bits),
        cmocka_unit_test(test_any_threads_same_bits),
        cmocka_unit_test(test_forcing_a_kernel),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
