/*
 * How the planner lowers the matmul family (DESIGN.md, "what precomputing
 * the broadcast reduction axes should mean"): for each canonical benchmark
 * case, the forward product and both gradients are checked for the kernel
 * kind, the folded M, N, K, and how many products and reduction steps
 * remain.  The products are in schedule order: forward, dB, dA.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "internal.h"
#include "testutil.h"

typedef struct expect {
    const char *kind;
    int64_t m, n, k, products, reduced;
} expect;

typedef struct lowering_case {
    const char *name;
    int na, nb;
    int64_t a[4], b[4];
    expect e[3]; /* forward, dB, dA */
} lowering_case;

static const lowering_case cases[] = {
    {"dot", 1, 1, {4096}, {4096},
     {{"dot", 1, 1, 4096, 1, 1}, {"ger", 4096, 1, 1, 1, 1}, {"ger", 1, 4096, 1, 1, 1}}},
    {"mv", 2, 1, {512, 1024}, {1024},
     {{"gemv", 512, 1, 1024, 1, 1}, {"gemv", 1024, 1, 512, 1, 1}, {"ger", 512, 1024, 1, 1, 1}}},
    /* batch folded into M forward, and into K for the vector's gradient */
    {"mv_batched", 3, 1, {32, 256, 512}, {512},
     {{"gemv", 8192, 1, 512, 1, 1}, {"gemv", 512, 1, 8192, 1, 1}, {"ger", 8192, 512, 1, 1, 1}}},
    {"vm", 1, 2, {1024}, {1024, 512},
     {{"gevm", 1, 512, 1024, 1, 1}, {"ger", 1024, 512, 1, 1, 1}, {"gevm", 1, 1024, 512, 1, 1}}},
    {"mm_square", 2, 2, {512, 512}, {512, 512},
     {{"gemm", 512, 512, 512, 1, 1}, {"gemm", 512, 512, 512, 1, 1}, {"gemm", 512, 512, 512, 1, 1}}},
    {"mm_batched", 3, 3, {64, 128, 64}, {64, 64, 128},
     {{"gemm", 128, 128, 64, 64, 1}, {"gemm", 64, 128, 128, 64, 1}, {"gemm", 128, 64, 128, 64, 1}}},
    /* x(B,T,K) @ W(K,N): one GEMM forward (B folded into M), dW one GEMM with
     * the batch folded into K, dx one GEMM (B folded into M) */
    {"mm_bcast_right", 3, 2, {32, 128, 256}, {256, 256},
     {{"gemm", 4096, 256, 256, 1, 1}, {"gemm", 256, 256, 4096, 1, 1}, {"gemm", 4096, 256, 256, 1, 1}}},
    /* both sides broadcast: 8 x 16 products; each gradient sums 16 (dA) or
     * 8 (dB) of them in place with beta = 1 */
    {"mm_bcast_both", 4, 4, {8, 1, 64, 128}, {1, 16, 128, 64},
     {{"gemm", 64, 64, 128, 128, 1}, {"gemm", 128, 64, 64, 128, 8}, {"gemm", 64, 128, 64, 128, 16}}},
    {"mlp_layer", 2, 2, {256, 784}, {784, 512},
     {{"gemm", 256, 512, 784, 1, 1}, {"gemm", 784, 512, 256, 1, 1}, {"gemm", 256, 784, 512, 1, 1}}},
};

static void check(const lowering_case *c)
{
    stg_graph *g = stg_graph_new();
    stg_tensor a = stg_param(g, "a", c->na, c->a), b = stg_param(g, "b", c->nb, c->b);
    /* a contiguous upstream gradient, as a real loss gives (sum alone would
     * hand back a stride-0 broadcast, which folds differently) */
    stg_tensor y = stg_matmul(g, a, b);
    int64_t yd[STG_MAX_DIMS];
    int ynd = stg_tensor_shape(g, y, yd);
    stg_tensor loss = stg_sum(g, stg_mul(g, y, stg_input(g, "seed", ynd, yd)), 0, NULL, 0);
    stg_plan *p = tu_plan(g, loss, 2, STG_OPTIM_NONE);
    int found = 0;
    for (int32_t i = 0; i < p->nsched; i++) {
        stg_matmul_info info;
        if (!stgK_matmul_info(&p->sched[i], &info))
            continue;
        assert_true(found < 3);
        const expect *e = &c->e[found++];
        if (strcmp(info.kind, e->kind) || info.m != e->m || info.n != e->n || info.k != e->k ||
            info.products != e->products || info.reduced != e->reduced)
            fail_msg("%s product %d: got %s m=%lld n=%lld k=%lld products=%lld reduced=%lld, "
                     "want %s m=%lld n=%lld k=%lld products=%lld reduced=%lld",
                     c->name, found - 1, info.kind, (long long)info.m, (long long)info.n,
                     (long long)info.k, (long long)info.products, (long long)info.reduced,
                     e->kind, (long long)e->m, (long long)e->n, (long long)e->k,
                     (long long)e->products, (long long)e->reduced);
        assert_true(info.units >= 1);
    }
    assert_int_equal(found, 3);
    stg_plan_free(p);
    stg_graph_free(g);
}

static void test_benchmark_cases_lowering(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check(&cases[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_benchmark_cases_lowering),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
