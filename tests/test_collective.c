/*
 * Data-parallel plans: the collective hook, driven by an in-process
 * loopback group whose "processes" are threads, each with its own plan and
 * its share of the batch.  The loopback sums in rank order, so its results
 * are the same bits on every rank and in every run.
 */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "allochook.h"
#include "internal.h"
#include "testutil.h"
#include "tiny_model.h"

#define MAXR 4
#define MAXB 64
#define STEPS 20 /* a run's steps, at most */

/* ---- the loopback group --------------------------------------------------- */

typedef struct lb_group {
    int size;
    pthread_barrier_t bar;
    float *data[MAXR][MAXB];
    int64_t count[MAXR][MAXB];
    float *sum[MAXR];
    int start_error; /* nonzero: every start returns it */
    long starts, waits;
} lb_group;

typedef struct lb_rank {
    lb_group *g;
    int rank;
} lb_rank;

static int lb_start(void *ctx, int bucket, float *data, int64_t count)
{
    lb_rank *m = ctx;
    assert_true(bucket >= 0 && bucket < MAXB);
    m->g->data[m->rank][bucket] = data;
    m->g->count[m->rank][bucket] = count;
    if (m->rank == 0)
        m->g->starts++;
    return m->g->start_error;
}

static int lb_wait(void *ctx, int bucket)
{
    lb_rank *m = ctx;
    lb_group *g = m->g;
    int64_t n = g->count[m->rank][bucket];
    pthread_barrier_wait(&g->bar);
    for (int r = 0; r < g->size; r++)
        assert_int_equal(g->count[r][bucket], n);
    for (int64_t i = 0; i < n; i++) {
        float s = g->data[0][bucket][i];
        for (int r = 1; r < g->size; r++)
            s += g->data[r][bucket][i];
        g->sum[m->rank][i] = s;
    }
    pthread_barrier_wait(&g->bar);
    memcpy(g->data[m->rank][bucket], g->sum[m->rank], (size_t)n * sizeof(float));
    if (m->rank == 0)
        g->waits++;
    return 0;
}

static void lb_init(lb_group *g, int size)
{
    memset(g, 0, sizeof *g);
    g->size = size;
    pthread_barrier_init(&g->bar, NULL, (unsigned)size);
    for (int r = 0; r < size; r++)
        g->sum[r] = malloc(1 << 20);
}

static void lb_free(lb_group *g)
{
    pthread_barrier_destroy(&g->bar);
    for (int r = 0; r < g->size; r++)
        free(g->sum[r]);
}

/* A group of one, and the hook of its only rank. */
typedef struct lb_alone {
    lb_group g;
    lb_rank me;
    stg_collective hook;
} lb_alone;

static void lb_alone_init(lb_alone *a, size_t bucket_bytes)
{
    lb_init(&a->g, 1);
    a->me = (lb_rank){&a->g, 0};
    a->hook = (stg_collective){.size = 1, .rank = 0, .start_sum = lb_start,
                               .wait_sum = lb_wait, .ctx = &a->me,
                               .bucket_bytes = bucket_bytes};
}

/* ---- ranks as threads ------------------------------------------------------ */

typedef struct job {
    lb_group *g;
    int rank, size, from, steps;
    int threads; /* per rank (0: 1) */
    size_t bucket_bytes;
    const char *resume, *save; /* checkpoints (rank 0 saves) */
    int bad_step, bad_rank;    /* a NaN input at step bad_step on bad_rank (-1: none) */
    int label_step, label_rank; /* an out-of-range label */
    stg_status status[STEPS];
    char msg[STEPS][256];
    float params[NPARAM_FLOATS];
    float before[NPARAM_FLOATS], after[NPARAM_FLOATS];
    int changed_on_failure; /* failed steps after which the parameters differed */
    long allocs; /* allocator calls during the steps (rank 0) */
} job;

static void *run_rank(void *arg)
{
    job *j = arg;
    lb_rank me = {j->g, j->rank};
    stg_collective c = {.size = j->size, .rank = j->rank, .start_sum = lb_start,
                        .wait_sum = lb_wait, .ctx = &me, .bucket_bytes = j->bucket_bytes};
    model m = build(GLOBAL / j->size);
    assert_int_equal(stg_graph_status(m.g), STG_OK);
    stg_plan_options o;
    options(&o, &c);
    o.threads = j->threads ? j->threads : 1;
    stg_plan *p = tu_plan_with(m.g, m.loss, &o);
    assert_int_equal(init_params(p, &m), STG_OK);
    if (j->resume)
        assert_int_equal(stg_plan_load(p, j->resume), STG_OK);
    pthread_barrier_wait(&j->g->bar);
    long calls = allochook_calls();
    for (int s = j->from; s < j->from + j->steps; s++) {
        load_share(p, &m, s, j->rank, j->size);
        if (s == j->bad_step && j->rank == j->bad_rank)
            stg_plan_data(p, m.x)[3] = NAN;
        if (s == j->label_step && j->rank == j->label_rank)
            stg_plan_data_i32(p, m.y)[0] = OUT + 4;
        params_of(p, &m, j->before);
        int k = s - j->from;
        j->status[k] = stg_plan_step(p);
        snprintf(j->msg[k], sizeof j->msg[k], "%s", stg_plan_message(p));
        params_of(p, &m, j->after);
        if (j->status[k] != STG_OK && memcmp(j->before, j->after, sizeof j->before))
            j->changed_on_failure++;
    }
    pthread_barrier_wait(&j->g->bar);
    j->allocs = allochook_calls() - calls;
    params_of(p, &m, j->params);
    if (j->save && j->rank == 0)
        assert_int_equal(stg_plan_save(p, j->save), STG_OK);
    stg_plan_free(p);
    stg_graph_free(m.g);
    return NULL;
}

/* Runs 'size' ranks for steps [from, from + steps); fills jobs[0 .. size). */
static void run_group(job *jobs, int size, int from, int steps, const job *like)
{
    lb_group g;
    lb_init(&g, size);
    pthread_t t[MAXR];
    for (int r = 0; r < size; r++) {
        jobs[r] = like ? *like : (job){.bad_step = -1, .label_step = -1};
        jobs[r].g = &g, jobs[r].rank = r, jobs[r].size = size;
        jobs[r].from = from, jobs[r].steps = steps;
        assert_int_equal(pthread_create(&t[r], NULL, run_rank, &jobs[r]), 0);
    }
    for (int r = 0; r < size; r++)
        pthread_join(t[r], NULL);
    lb_free(&g);
}

/* One process on the whole batch, for steps [0, steps). */
static void run_single(int steps, float *params)
{
    model m = build(GLOBAL);
    assert_int_equal(stg_graph_status(m.g), STG_OK);
    stg_plan_options o;
    options(&o, NULL);
    stg_plan *p = tu_plan_with(m.g, m.loss, &o);
    assert_int_equal(init_params(p, &m), STG_OK);
    for (int s = 0; s < steps; s++) {
        load_share(p, &m, s, 0, 1);
        assert_int_equal(stg_plan_step(p), STG_OK);
    }
    params_of(p, &m, params);
    stg_plan_free(p);
    stg_graph_free(m.g);
}

/* ---- tests ------------------------------------------------------------------ */

/* 1, 2 and 3 ranks: every rank holds the same bits, a second run the same
 * bits again, and the parameters are the single process's on the whole
 * batch within the rounding of the other order of summation. */
static void test_ranks_match_one_process(void **state)
{
    (void)state;
    float single[NPARAM_FLOATS];
    run_single(STEPS, single);
    for (int size = 1; size <= 3; size++) {
        job a[MAXR], b[MAXR];
        run_group(a, size, 0, STEPS, NULL);
        run_group(b, size, 0, STEPS, NULL);
        for (int r = 0; r < size; r++) {
            for (int k = 0; k < STEPS; k++)
                assert_int_equal(a[r].status[k], STG_OK);
            assert_memory_equal(a[r].params, a[0].params, sizeof a[0].params);
            assert_memory_equal(b[r].params, a[0].params, sizeof a[0].params);
        }
        double err = tu_err(a[0].params, single, NPARAM_FLOATS, 1e-6, 1e-5);
        if (err > 1.0)
            fail_msg("%d ranks: parameters off the one-process run by %.3g tolerances", size,
                     err);
        /* with one rank the sum is the identity and / 1 exact: the same bits */
        if (size == 1)
            assert_memory_equal(a[0].params, single, sizeof single);
    }
}

/* Buckets of one gradient each (bucket_bytes tiny), and ranks of two
 * threads, give the same bits. */
static void test_small_buckets_and_threads(void **state)
{
    (void)state;
    job small = {.bad_step = -1, .label_step = -1, .bucket_bytes = 4};
    job two = {.bad_step = -1, .label_step = -1, .threads = 2};
    job a[MAXR], b[MAXR], c[MAXR];
    run_group(a, 2, 0, STEPS, NULL);
    run_group(b, 2, 0, STEPS, &small);
    run_group(c, 2, 0, STEPS, &two);
    for (int r = 0; r < 2; r++) {
        assert_memory_equal(b[r].params, a[0].params, sizeof a[0].params);
        assert_memory_equal(c[r].params, a[0].params, sizeof a[0].params);
    }
}

/* A NaN on one rank, then a bad label on another: every rank fails that
 * step and keeps its parameters; the steps after succeed and agree. */
static void test_failure_on_one_rank(void **state)
{
    (void)state;
    job like = {.bad_step = 2, .bad_rank = 1, .label_step = 4, .label_rank = 0};
    job a[MAXR];
    run_group(a, 3, 0, 6, &like);
    for (int r = 0; r < 3; r++) {
        for (int k = 0; k < 6; k++) {
            if (k != 2 && k != 4)
                assert_int_equal(a[r].status[k], STG_OK);
        }
        /* the NaN: its own rank's guard says so; the others hear of it */
        assert_int_equal(a[r].status[2], r == 1 ? STG_NUMERIC : STG_PEER);
        if (r != 1)
            assert_non_null(strstr(a[r].msg[2], "rank 1"));
        /* the bad label: STG_INDEX where it was, STG_PEER elsewhere */
        assert_int_equal(a[r].status[4], r == 0 ? STG_INDEX : STG_PEER);
        if (r != 0)
            assert_non_null(strstr(a[r].msg[4], "rank 0"));
        assert_memory_equal(a[r].params, a[0].params, sizeof a[0].params);
        assert_int_equal(a[r].changed_on_failure, 0);
    }
}

/* Failed steps change nothing: compare with a run that never had them. */
static void test_failed_steps_change_nothing(void **state)
{
    (void)state;
    /* a run of 3 steps where step 1 fails on rank 2, against a run of 2
     * steps over the same batches but step 1: the failed step's batch is
     * skipped, so steps 0 and 2 are all that count */
    job like = {.bad_step = 1, .bad_rank = 2, .label_step = -1};
    job a[MAXR];
    run_group(a, 3, 0, 3, &like);
    for (int r = 0; r < 3; r++)
        assert_int_equal(a[r].status[1], r == 2 ? STG_NUMERIC : STG_PEER);

    /* the same updates by hand: steps 0 and 2 on a plan of one process per
     * rank share would be another summation order, so compare against the
     * 3-rank group itself: run step 0, then step 2 */
    job b0[MAXR], b2[MAXR];
    const char *ck = "test_collective_fail.ckpt";
    job save = {.bad_step = -1, .label_step = -1, .save = ck};
    run_group(b0, 3, 0, 1, &save);
    job resume = {.bad_step = -1, .label_step = -1, .resume = ck};
    run_group(b2, 3, 2, 1, &resume);
    unlink(ck);
    for (int r = 0; r < 3; r++)
        assert_memory_equal(a[r].params, b2[0].params, sizeof b2[0].params);
}

/* A checkpoint of a 3-rank run resumes bitwise with 3 ranks, and with 2
 * ranks and 1 close to the single-process run. */
static void test_resume_with_another_count(void **state)
{
    (void)state;
    const char *ck = "test_collective_resume.ckpt";
    job a[MAXR], straight[MAXR], again[MAXR];
    job save = {.bad_step = -1, .label_step = -1, .save = ck};
    run_group(a, 3, 0, 4, &save);
    run_group(straight, 3, 0, STEPS, NULL);
    job resume = {.bad_step = -1, .label_step = -1, .resume = ck};
    run_group(again, 3, 4, STEPS - 4, &resume);
    assert_memory_equal(again[0].params, straight[0].params, sizeof straight[0].params);
    float single[NPARAM_FLOATS];
    run_single(STEPS, single);
    for (int size = 1; size <= 2; size++) {
        job b[MAXR];
        run_group(b, size, 4, STEPS - 4, &resume);
        for (int r = 0; r < size; r++) {
            for (int k = 0; k < STEPS - 4; k++)
                assert_int_equal(b[r].status[k], STG_OK);
            assert_memory_equal(b[r].params, b[0].params, sizeof b[0].params);
        }
        double err = tu_err(b[0].params, single, NPARAM_FLOATS, 1e-6, 1e-5);
        if (err > 1.0)
            fail_msg("resumed on %d ranks: off the one-process run by %.3g tolerances", size, err);
    }
    unlink(ck);
}

/* Steps with the hook allocate nothing (the loopback allocates nothing). */
static void test_no_allocations(void **state)
{
    (void)state;
    if (!allochook_works())
        skip();
    job a[MAXR];
    run_group(a, 2, 0, STEPS, NULL);
    assert_int_equal(a[0].allocs, 0);
}

/* The gradients lie in one region, bucket after bucket in the order the
 * backward pass writes them, and a bucket's sum starts before the backward
 * pass is over. */
static void test_region_and_schedule(void **state)
{
    (void)state;
    lb_alone one;
    lb_alone_init(&one, 4);
    model m = build(4);
    stg_plan_options o;
    options(&o, &one.hook);
    stg_plan *p = tu_plan_with(m.g, m.loss, &o);
    /* one gradient per bucket, then the flags */
    assert_int_equal(stg_plan_buckets(p), 5);
    stg_tensor ps[4] = {m.w1, m.b1, m.w2, m.b2};
    const float *grad[4];
    int64_t n[4] = {IN * HID, HID, HID * OUT, OUT};
    int32_t written[4] = {-1, -1, -1, -1}; /* schedule position of each gradient's writer */
    for (int k = 0; k < 4; k++) {
        grad[k] = stg_plan_grad(p, ps[k]);
        for (int32_t i = 0; i < p->nsched; i++)
            if (stgP_ptr(p, p->sched[i].id) == grad[k] &&
                p->sched[i].node->op != &stg_op_grad_sum_wait)
                written[k] = i;
        assert_true(written[k] >= 0);
    }
    /* in the region, in the order they are written, each padded to 16 floats */
    int order[4] = {0, 1, 2, 3};
    for (int a = 0; a < 4; a++)
        for (int b = a + 1; b < 4; b++)
            if (written[order[b]] < written[order[a]]) {
                int t = order[a];
                order[a] = order[b], order[b] = t;
            }
    int64_t at = 0;
    const float *region = grad[order[0]];
    for (int k = 0; k < 4; k++) {
        int64_t padded = (n[order[k]] + 15) / 16 * 16;
        if (grad[order[k]] != region + at)
            fail_msg("the gradient written %d-th is not at float %lld of the region", k,
                     (long long)at);
        assert_int_equal(stg_plan_bucket_floats(p, k), padded);
        at += padded;
    }
    assert_int_equal(stg_plan_bucket_floats(p, 4), 16); /* one flag per process, padded */
    assert_int_equal(stg_plan_bucket_floats(p, 5), 0);
    /* a bucket's sum starts right after its gradient: before the last one
     * is written */
    int32_t first_start = -1;
    for (int32_t i = 0; i < p->nsched && first_start < 0; i++)
        if (p->sched[i].node->op == &stg_op_grad_sum_start)
            first_start = i;
    assert_int_equal(first_start, written[order[0]] + 1);
    assert_true(first_start < written[order[3]]);
    /* the memory report counts each gradient once, as a gradient */
    stg_memory_report mr;
    assert_int_equal(stg_plan_memory(p, &mr), STG_OK);
    assert_int_equal(mr.grad_bytes, (size_t)(NPARAM_FLOATS + 1) * sizeof(float)); /* + 1 flag */
    assert_true(mr.persistent_bytes <= mr.buffer_bytes);
    assert_int_equal(mr.param_bytes + mr.grad_bytes + mr.state_bytes + mr.input_bytes +
                         mr.activation_bytes + mr.temp_bytes + mr.scratch_bytes,
                     mr.buffer_bytes);
    /* a step: five starts and five waits */
    for (int64_t i = 0; i < 4 * IN; i++)
        stg_plan_data(p, m.x)[i] = 0.1f * (float)i;
    for (int i = 0; i < 4; i++)
        stg_plan_data_i32(p, m.y)[i] = i % OUT;
    assert_int_equal(stg_plan_step(p), STG_OK);
    assert_int_equal(one.g.starts, 5);
    assert_int_equal(one.g.waits, 5);
    stg_plan_free(p);
    stg_graph_free(m.g);
    lb_free(&one.g);
}

static int refuse_start(void *ctx, int bucket, float *data, int64_t count)
{
    (void)ctx, (void)bucket, (void)data, (void)count;
    return 42;
}

static int fine_wait(void *ctx, int bucket)
{
    (void)ctx, (void)bucket;
    return 0;
}

static int refuse_wait(void *ctx, int bucket)
{
    (void)ctx, (void)bucket;
    return 7;
}

/* Bad hooks and misuse: refused at plan creation with a message, or a step
 * that fails with STG_COMM and changes nothing. */
static void test_misuse(void **state)
{
    (void)state;
    model m = build(4);
    stg_plan_options o;
    stg_plan *p = NULL;
    stg_collective ok = {.size = 2, .rank = 1, .start_sum = refuse_start, .wait_sum = fine_wait};
    const stg_collective bad[] = {
        {.size = 0, .rank = 0, .start_sum = refuse_start, .wait_sum = fine_wait},
        {.size = 2, .rank = 2, .start_sum = refuse_start, .wait_sum = fine_wait},
        {.size = 2, .rank = -1, .start_sum = refuse_start, .wait_sum = fine_wait},
        {.size = 2, .rank = 0, .start_sum = NULL, .wait_sum = fine_wait},
        {.size = 2, .rank = 0, .start_sum = refuse_start, .wait_sum = NULL},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        options(&o, &bad[k]);
        assert_int_equal(stg_plan_create(m.g, m.loss, &o, &p), STG_INVALID);
        assert_null(p);
        assert_non_null(strstr(stg_plan_last_message(), "collective"));
    }
    options(&o, &ok);
    o.optimizer = STG_OPTIM_NONE;
    o.inference = 1;
    assert_int_equal(stg_plan_create(m.g, (stg_tensor){-1}, &o, &p), STG_INVALID);
    assert_non_null(strstr(stg_plan_last_message(), "inference"));
    o.inference = 0;
    assert_int_equal(stg_plan_create(m.g, (stg_tensor){-1}, &o, &p), STG_INVALID);
    assert_non_null(strstr(stg_plan_last_message(), "forward-only"));
    assert_int_equal(stg_plan_buckets(NULL), 0);
    assert_int_equal(stg_plan_bucket_floats(NULL, 0), 0);

    /* a hook that cannot start or finish a sum: STG_COMM, nothing changes */
    stg_collective refusing[2] = {
        {.size = 1, .rank = 0, .start_sum = refuse_start, .wait_sum = fine_wait},
        {.size = 1, .rank = 0, .start_sum = lb_start, .wait_sum = refuse_wait},
    };
    lb_alone one;
    lb_alone_init(&one, 0);
    refusing[1].ctx = &one.me;
    for (int k = 0; k < 2; k++) {
        options(&o, &refusing[k]);
        p = tu_plan_with(m.g, m.loss, &o);
        assert_int_equal(stg_plan_buckets(p), 2); /* four small gradients in one, the flags */
        assert_int_equal(init_params(p, &m), STG_OK);
        float before[NPARAM_FLOATS], after[NPARAM_FLOATS];
        params_of(p, &m, before);
        assert_int_equal(stg_plan_step(p), STG_COMM);
        assert_non_null(strstr(stg_plan_message(p), k == 0 ? "start" : "finish"));
        assert_non_null(strstr(stg_plan_message(p), k == 0 ? "error 42" : "error 7"));
        params_of(p, &m, after);
        assert_memory_equal(before, after, sizeof before);
        assert_int_equal(stg_plan_steps(p), 0);
        stg_plan_free(p);
    }
    lb_free(&one.g);
    stg_graph_free(m.g);
}

/* Creating a data-parallel plan with each of its allocations failing in
 * turn: STG_NOMEM every time, nothing leaked. */
static void test_allocation_failures(void **state)
{
    (void)state;
    if (!allochook_works())
        skip();
    lb_alone one;
    lb_alone_init(&one, 64);
    model m = build(4);
    stg_plan_options o;
    options(&o, &one.hook);
    stg_plan *p = NULL;
    assert_int_equal(stg_plan_create(m.g, m.loss, &o, &p), STG_OK); /* kernels chosen first */
    stg_plan_free(p);
    int failures = 0;
    for (long n = 0;; n++) {
        long before = allochook_live();
        allochook_fail_after(n);
        stg_status st = stg_plan_create(m.g, m.loss, &o, &p);
        allochook_fail_after(-1);
        if (st == STG_OK) {
            stg_plan_free(p);
            assert_int_equal(allochook_live(), before);
            break;
        }
        if (st != STG_NOMEM)
            fail_msg("allocation %ld failing gave %s, not STG_NOMEM", n, stg_status_name(st));
        assert_null(p);
        if (allochook_live() != before)
            fail_msg("allocation %ld failing leaked %ld blocks", n, allochook_live() - before);
        failures++;
    }
    assert_true(failures > 10);
    stg_graph_free(m.g);
    lb_free(&one.g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ranks_match_one_process),
        cmocka_unit_test(test_small_buckets_and_threads),
        cmocka_unit_test(test_failure_on_one_rank),
        cmocka_unit_test(test_failed_steps_change_nothing),
        cmocka_unit_test(test_resume_with_another_count),
        cmocka_unit_test(test_no_allocations),
        cmocka_unit_test(test_region_and_schedule),
        cmocka_unit_test(test_misuse),
        cmocka_unit_test(test_allocation_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
