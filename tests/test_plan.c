/*
 * The planner: arena reuse, the plan checker, caller-provided arenas, and
 * allocation failure at every point of plan creation (each must return
 * STG_NOMEM and leak nothing; allochook.c fails allocations on request and
 * counts live blocks, and sanitizer builds skip that part).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "allochook.h"
#include "tmpdir.h"
#include "internal.h"
#include "testutil.h"

/* A 4-layer MLP (matmul + bias), mse loss. */
static stg_graph *mlp_batch(int64_t batch, stg_tensor *loss)
{
    stg_graph *g = stg_graph_new();
    int64_t sizes[5] = {784, 512, 256, 128, 10};
    int64_t xd[2] = {batch, 784}, td[2] = {batch, 10};
    stg_tensor h = stg_input(g, "x", 2, xd), t = stg_input(g, "t", 2, td);
    for (int l = 0; l < 4; l++) {
        int64_t wd[2] = {sizes[l], sizes[l + 1]}, bd[1] = {sizes[l + 1]};
        /* one call per statement: argument order is up to the compiler, node ids are not */
        stg_tensor w = stg_param(g, "w", 2, wd), b = stg_param(g, "b", 1, bd);
        h = stg_add(g, stg_matmul(g, h, w), b);
    }
    *loss = stg_mse_loss(g, h, t);
    assert_int_equal(stg_graph_status(g), STG_OK);
    return g;
}

static stg_graph *mlp(stg_tensor *loss)
{
    return mlp_batch(64, loss);
}

static void test_arena_reuse(void **state)
{
    (void)state;
    stg_tensor loss;
    stg_graph *g = mlp_batch(1024, &loss);
    stg_plan *p = tu_plan(g, loss, 1, STG_OPTIM_SGD);
    stg_memory_report r;
    assert_int_equal(stg_plan_memory(p, &r), STG_OK);
    assert_int_equal(r.arena_bytes, stg_plan_arena_bytes(p));
    assert_int_equal(r.buffer_bytes, r.persistent_bytes + r.transient_bytes);
    double total = (double)r.arena_bytes / (double)r.buffer_bytes;
    double transient = (double)(r.arena_bytes - r.persistent_bytes) / (double)r.transient_bytes;
    print_message("4-layer MLP, batch 1024: arena %zu bytes, buffers %zu bytes: ratio %.3f; "
                  "transient buffers %zu bytes in %zu: ratio %.3f\n",
                  r.arena_bytes, r.buffer_bytes, total, r.transient_bytes,
                  r.arena_bytes - r.persistent_bytes, transient);
    /* Parameters, their gradients and the input batch cannot share; the
     * activations and backward temporaries must. */
    assert_true(total < 0.8);
    assert_true(transient < 0.6);
    stg_plan_free(p);
    stg_graph_free(g);
}

static void test_caller_arena(void **state)
{
    (void)state;
    stg_tensor loss;
    stg_graph *g = mlp(&loss);
    stg_plan_options o;
    stg_plan_options_init(&o);
    size_t need = 0;
    assert_int_equal(stg_plan_arena_size(g, loss, &o, &need), STG_OK);
    unsigned char *mem = aligned_alloc(64, need + 64);
    stg_plan *p = (stg_plan *)&o; /* must be reset to NULL on failure */

    o.arena = mem, o.arena_bytes = need - 1;
    assert_int_equal(stg_plan_create(g, loss, &o, &p), STG_SMALL_ARENA);
    assert_null(p);
    assert_non_null(strstr(stg_plan_last_message(), "arena"));

    o.arena = mem + 4, o.arena_bytes = need;
    assert_int_equal(stg_plan_create(g, loss, &o, &p), STG_SMALL_ARENA);

    o.arena = mem, o.arena_bytes = need;
    assert_int_equal(stg_plan_create(g, loss, &o, &p), STG_OK);
    assert_int_equal(stg_plan_arena_bytes(p), need);
    float *x = stg_plan_data(p, (stg_tensor){0});
    assert_true((unsigned char *)x >= mem && (unsigned char *)x < mem + need);
    char msg[256];
    assert_int_equal(stg_plan_check(p, msg, sizeof msg), STG_OK);
    assert_int_equal(stg_plan_step(p), STG_OK);
    stg_plan_free(p); /* does not free the caller's memory */
    free(mem);
    stg_graph_free(g);
}

/* The checker catches broken plans, not just passes good ones: each
 * invariant is broken by hand in a good plan, checked, and restored. */
static void test_checker_rejects_broken_plans(void **state)
{
    (void)state;
    stg_tensor loss;
    stg_graph *g = mlp(&loss);
    stg_plan *p = tu_plan(g, loss, 1, STG_OPTIM_SGD);
    char msg[512];
    assert_int_equal(stg_plan_check(p, msg, sizeof msg), STG_OK);
    assert_string_equal(msg, "");
    assert_int_equal(stg_plan_check(NULL, msg, sizeof msg), STG_STATE);

    /* a buffer outside the arena */
    stg_buffer *b = &p->bufs[p->nbufs - 1], saved = *b;
    b->offset = p->arena_bytes;
    assert_int_equal(stg_plan_check(p, msg, sizeof msg), STG_STATE);
    assert_non_null(strstr(msg, "inside"));
    *b = saved;

    /* two buffers that are live together put on the same bytes */
    int32_t x = -1, y = -1;
    for (int32_t i = 0; i < p->nbufs && y < 0; i++)
        for (int32_t j = i + 1; j < p->nbufs && y < 0; j++)
            if (p->bufs[i].first <= p->bufs[j].last && p->bufs[j].first <= p->bufs[i].last &&
                p->bufs[j].bytes <= p->bufs[i].bytes)
                x = i, y = j;
    assert_true(y >= 0);
    saved = p->bufs[y];
    p->bufs[y].offset = p->bufs[x].offset;
    assert_int_equal(stg_plan_check(p, msg, sizeof msg), STG_STATE);
    assert_non_null(strstr(msg, "share bytes"));
    p->bufs[y] = saved;

    /* two nodes swapped in the schedule */
    stg_pnode first = p->sched[0];
    p->sched[0] = p->sched[1], p->sched[1] = first;
    assert_int_equal(stg_plan_check(p, msg, sizeof msg), STG_STATE);
    assert_non_null(strstr(msg, "out of order"));
    p->sched[1] = p->sched[0], p->sched[0] = first;

    assert_int_equal(stg_plan_check(p, msg, sizeof msg), STG_OK);
    stg_plan_free(p);
    stg_graph_free(g);
}

static void test_plan_queries(void **state)
{
    (void)state;
    stg_tensor loss;
    stg_graph *g = mlp(&loss);
    stg_plan *p = tu_plan(g, loss, 2, STG_OPTIM_NONE);
    assert_int_equal(stg_plan_threads(p), 2);
    assert_true(stg_plan_node_count(p) > 10);
    stg_tensor x = {0}, w0 = {2};
    float buf[4];
    assert_int_equal(stg_plan_set(p, x, buf, 4), STG_SHAPE);
    assert_int_equal(stg_plan_get(p, x, NULL, 4), STG_INVALID);
    assert_int_equal(stg_plan_set(p, (stg_tensor){9999}, buf, 4), STG_NOT_FOUND);
    assert_null(stg_plan_grad(p, x)); /* inputs get a gradient only on request */
    assert_non_null(stg_plan_grad(p, w0));
    assert_null(stg_plan_data(p, (stg_tensor){4})); /* an intermediate, not kept */
    assert_int_equal(stg_plan_set_lr(NULL, 0.1f), STG_INVALID);
    /* a NULL plan is a misuse, not a tensor it lacks */
    assert_int_equal(stg_plan_set(NULL, x, buf, 4), STG_INVALID);
    assert_int_equal(stg_plan_get(NULL, x, buf, 4), STG_INVALID);
    int32_t ibuf[4] = {0};
    assert_int_equal(stg_plan_set_i32(NULL, x, ibuf, 4), STG_INVALID);
    stg_plan_free(p);
    stg_graph_free(g);
}

static void test_allocation_failures(void **state)
{
    (void)state;
    if (!allochook_works()) {
        print_message("the allocator is replaced (sanitizers or valgrind): no injection\n");
        skip();
    }
    stg_tensor loss;
    stg_graph *g = mlp(&loss);
    stg_plan *p = NULL;
    /* BLIS sets itself up once per process on first use: do that first. */
    assert_int_equal(stg_plan_create(g, loss, NULL, &p), STG_OK);
    stg_plan_free(p);
    int failures = 0;
    for (long n = 0;; n++) {
        long before = allochook_live();
        allochook_fail_after(n);
        stg_status s = stg_plan_create(g, loss, NULL, &p);
        allochook_fail_after(-1);
        if (s == STG_OK) {
            stg_plan_free(p);
            assert_int_equal(allochook_live(), before);
            break;
        }
        if (s != STG_NOMEM)
            fail_msg("allocation %ld failing gave %s, not STG_NOMEM", n, stg_status_name(s));
        assert_null(p);
        if (allochook_live() != before)
            fail_msg("allocation %ld failing leaked %ld blocks", n, allochook_live() - before);
        failures++;
    }
    print_message("plan creation failed cleanly at each of its %d allocations\n", failures);
    assert_true(failures > 10);
    stg_graph_free(g);
}

/* A whole cycle of a user's program: build a graph, plan (profiling, two
 * threads, momentum), two steps, save, load, the profile, memory report,
 * trace and DOT exports, free.  Run once with the allocator healthy, then
 * once with each of its allocations failing in turn: every call must report
 * it (STG_NOMEM, or STG_IO for a file), a failed load must leave the
 * parameters as they were, a failed save must leave the earlier checkpoint,
 * and nothing may leak.  Returns the number of calls that failed. */
static int whole_cycle(const char *dir, const float *w_init)
{
    int failed = 0;
    stg_graph *g = stg_graph_new();
    if (!g)
        return 1;
    int64_t xd[2] = {8, 6}, wd[2] = {6, 4}, td[2] = {8, 4};
    stg_tensor x = stg_input(g, "x", 2, xd), t = stg_input(g, "t", 2, td);
    stg_tensor w = stg_param(g, "w", 2, wd);
    stg_tensor loss = stg_mse_loss(g, stg_relu(g, stg_matmul(g, x, w)), t);
    if (stg_graph_status(g) != STG_OK) {
        assert_int_equal(stg_graph_status(g), STG_NOMEM);
        stg_graph_free(g);
        return 1;
    }
    stg_plan_options o;
    stg_plan_options_init(&o);
    o.threads = 2, o.momentum = 0.9f, o.profile = 4;
    stg_plan *p = NULL;
    stg_status s = stg_plan_create(g, loss, &o, &p);
    if (s != STG_OK) {
        assert_int_equal(s, STG_NOMEM);
        assert_null(p);
        stg_graph_free(g);
        return 1;
    }
    tu_fill(stg_plan_data(p, x), 48, 1, -1, 1);
    tu_fill(stg_plan_data(p, t), 32, 2, -1, 1);
    memcpy(stg_plan_data(p, w), w_init, 24 * sizeof(float));
    for (int i = 0; i < 2; i++)
        assert_int_equal(stg_plan_step(p), STG_OK); /* a step allocates nothing */
    char path[512];
    snprintf(path, sizeof path, "%s/cycle.ck", dir);
    if ((s = stg_plan_save(p, path)) != STG_OK) {
        if (s != STG_NOMEM && s != STG_IO)
            fail_msg("save: %s", stg_status_name(s));
        failed++;
    }
    float before[24];
    memcpy(before, stg_plan_data(p, w), sizeof before);
    if ((s = stg_plan_load(p, path)) != STG_OK) {
        if (s != STG_NOMEM && s != STG_IO)
            fail_msg("load: %s: %s", stg_status_name(s), stg_plan_message(p));
        failed++;
    }
    assert_memory_equal(before, stg_plan_data(p, w), sizeof before); /* loaded or untouched */
    FILE *f = fopen("/dev/null", "w");
    if (f) {
        failed += stg_plan_write_profile(p, f) != STG_OK;
        failed += stg_plan_write_memory(p, f) != STG_OK;
        fclose(f);
    } else {
        failed++;
    }
    snprintf(path, sizeof path, "%s/cycle.json", dir);
    failed += stg_plan_write_trace(p, path) != STG_OK;
    snprintf(path, sizeof path, "%s/cycle.dot", dir);
    failed += stg_plan_write_dot(p, path) != STG_OK;
    stg_plan_free(p);
    stg_graph_free(g);
    return failed;
}

static void test_allocation_failures_whole_cycle(void **state)
{
    (void)state;
    if (!allochook_works()) {
        print_message("the allocator is replaced (sanitizers or valgrind): no injection\n");
        skip();
    }
    char dir[64];
    assert_int_equal(tmpdir_make(dir, sizeof dir, "test_plan"), 0);
    float w_init[24];
    tu_fill(w_init, 24, 3, -1, 1);
    /* once healthy: BLIS and libgomp set themselves up for good here (both
     * abort the process when memory runs out in that setup) */
    assert_int_equal(whole_cycle(dir, w_init), 0);
    int failing_points = 0;
    for (long n = 0;; n++) {
        long before = allochook_live();
        allochook_fail_after(n);
        int failed = whole_cycle(dir, w_init);
        allochook_fail_after(-1);
        if (allochook_live() != before)
            fail_msg("allocation %ld failing leaked %ld blocks", n, allochook_live() - before);
        if (failed == 0)
            break;
        failing_points++;
    }
    print_message("a whole cycle failed cleanly at each of its %d allocations\n", failing_points);
    assert_true(failing_points > 20);
    assert_int_equal(tmpdir_remove(dir), 0);
}

/* A vjp plan's gradients of c = a b (batched, b broadcast) for an upstream
 * gradient G, against naive loops: dA = G B^T, dB = sum over the batch of A^T G. */
static void test_vjp(void **state)
{
    (void)state;
    enum { NB = 3, M = 5, K = 4, N = 6 };
    for (int threads = 1; threads <= 2; threads++) {
        stg_graph *g = stg_graph_new();
        stg_tensor a = stg_input(g, "a", 3, (int64_t[]){NB, M, K});
        stg_tensor b = stg_input(g, "b", 2, (int64_t[]){K, N});
        stg_tensor gout = stg_input(g, "g", 3, (int64_t[]){NB, M, N});
        stg_graph_require_grad(g, a);
        stg_graph_require_grad(g, b);
        stg_tensor c = stg_matmul(g, a, b);
        stg_plan_options o;
        stg_plan_options_init(&o);
        o.threads = threads;
        o.optimizer = STG_OPTIM_NONE;
        stg_plan *p = NULL;
        assert_int_equal(stg_plan_create_vjp(g, c, gout, &o, &p), STG_OK);
        assert_int_equal(stg_plan_check(p, NULL, 0), STG_OK);
        float *A = stg_plan_data(p, a), *B = stg_plan_data(p, b), *G = stg_plan_data(p, gout);
        tu_fill(A, NB * M * K, 1, -1, 1);
        tu_fill(B, K * N, 2, -1, 1);
        tu_fill(G, NB * M * N, 3, -1, 1);
        assert_int_equal(stg_plan_step(p), STG_OK);
        float da[NB * M * K] = {0}, db[K * N] = {0};
        for (int t = 0; t < NB; t++)
            for (int i = 0; i < M; i++)
                for (int j = 0; j < N; j++)
                    for (int k = 0; k < K; k++) {
                        float gij = G[(t * M + i) * N + j];
                        da[(t * M + i) * K + k] += gij * B[k * N + j];
                        db[k * N + j] += A[(t * M + i) * K + k] * gij;
                    }
        assert_true(tu_err(stg_plan_grad(p, a), da, NB * M * K, 1e-5, 1e-5) <= 1.0);
        assert_true(tu_err(stg_plan_grad(p, b), db, K * N, 1e-5, 1e-5) <= 1.0);
        assert_true(stg_plan_loss(p) == 0.0f);
        stg_plan_free(p);

        /* Misuse: wrong shape, an int32 gradient, an invalid tensor. */
        stg_tensor bad = stg_input(g, "bad", 2, (int64_t[]){M, N});
        stg_tensor lab = stg_input_i32(g, "lab", 3, (int64_t[]){NB, M, N});
        assert_int_equal(stg_plan_create_vjp(g, c, bad, &o, &p), STG_INVALID);
        assert_non_null(strstr(stg_plan_last_message(), "(5,6)"));
        assert_non_null(strstr(stg_plan_last_message(), "(3,5,6)"));
        assert_int_equal(stg_plan_create_vjp(g, c, lab, &o, &p), STG_INVALID);
        assert_int_equal(stg_plan_create_vjp(g, c, (stg_tensor){-1}, &o, &p), STG_INVALID);
        assert_null(p);
        stg_graph_free(g);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_arena_reuse),
        cmocka_unit_test(test_caller_arena),
        cmocka_unit_test(test_checker_rejects_broken_plans),
        cmocka_unit_test(test_plan_queries),
        cmocka_unit_test(test_allocation_failures),
        cmocka_unit_test(test_allocation_failures_whole_cycle),
        cmocka_unit_test(test_vjp),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
