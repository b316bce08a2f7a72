/*
 * The profiler and the exports: what a plan without a profile refuses, the
 * ring of kept steps, timings that fit inside their step, failed steps left
 * out, no allocation in a profiled step, the static facts of each node
 * against figures computed here from the shapes, the memory breakdown, and
 * the trace and DOT files (written all or nothing).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "allochook.h"
#include "internal.h"
#include "testutil.h"
#include "tmpdir.h"

enum { B = 8, IN = 12, HID = 6, OUT = 3 };

typedef struct mlp {
    stg_graph *g;
    stg_tensor x, y, w1, b1, w2, loss;
} mlp;

/* x (B, IN) -> linear -> relu -> linear -> softmax cross-entropy. */
static mlp build(void)
{
    mlp m;
    m.g = stg_graph_new();
    m.x = stg_input(m.g, "x", 2, (int64_t[]){B, IN});
    m.y = stg_input_i32(m.g, "y", 1, (int64_t[]){B});
    m.w1 = stg_param(m.g, "w1", 2, (int64_t[]){IN, HID});
    m.b1 = stg_param(m.g, "b1", 1, (int64_t[]){HID});
    m.w2 = stg_param(m.g, "w2", 2, (int64_t[]){HID, OUT});
    stg_tensor h = stg_relu(m.g, stg_add(m.g, stg_matmul(m.g, m.x, m.w1), m.b1));
    m.loss = stg_softmax_cross_entropy(m.g, stg_matmul(m.g, h, m.w2), m.y, STG_REDUCE_MEAN);
    assert_int_equal(stg_graph_status(m.g), STG_OK);
    return m;
}

static stg_plan *plan(const mlp *m, int threads, int profile)
{
    stg_plan_options o;
    stg_plan_options_init(&o);
    o.threads = threads;
    o.momentum = 0.9f;
    o.profile = profile;
    stg_plan *p = tu_plan_with(m->g, m->loss, &o);
    tu_fill(stg_plan_data(p, m->x), B * IN, 1, -1, 1);
    tu_fill(stg_plan_data(p, m->w1), IN * HID, 2, -1, 1);
    tu_fill(stg_plan_data(p, m->w2), HID * OUT, 3, -1, 1);
    int32_t *y = stg_plan_data_i32(p, m->y);
    for (int i = 0; i < B; i++)
        y[i] = i % OUT;
    return p;
}

static void test_off_by_default(void **state)
{
    (void)state;
    mlp m = build();
    stg_plan *p = plan(&m, 1, 0);
    assert_int_equal(stg_plan_step(p), STG_OK);
    stg_step_profile sp;
    double busy;
    assert_int_equal(stg_plan_step_profile(p, &sp), STG_STATE);
    assert_int_equal(stg_plan_profile_reset(p), STG_STATE);
    assert_int_equal(stg_plan_node_thread(p, 0, 0, &busy, NULL), STG_STATE);
    assert_int_equal(stg_plan_write_profile(p, stdout), STG_STATE);
    assert_int_equal(stg_plan_write_trace(p, "/tmp/never-written.json"), STG_STATE);
    assert_non_null(strstr(stg_plan_message(p), "profile"));
    assert_null(p->prof);
    /* node facts need no profile; timings stay 0 */
    stg_node_info in;
    assert_int_equal(stg_plan_node_info(p, 0, &in), STG_OK);
    assert_true(in.time_ns == 0.0);
    assert_int_equal(stg_plan_node_info(p, stg_plan_node_count(p), &in), STG_INVALID);
    assert_int_equal(stg_plan_node_info(p, -1, &in), STG_INVALID);

    stg_plan_options o;
    stg_plan_options_init(&o);
    o.profile = -1;
    stg_plan *bad = NULL;
    assert_int_equal(stg_plan_create(m.g, m.loss, &o, &bad), STG_INVALID);
    assert_non_null(strstr(stg_plan_last_message(), "profile"));
    stg_plan_free(p);
    stg_graph_free(m.g);
}

/* Each node's static facts against the shapes: the first product is x w1. */
static void test_node_facts(void **state)
{
    (void)state;
    mlp m = build();
    stg_plan *p = plan(&m, 1, 0);
    int n = stg_plan_node_count(p), matmuls = 0, updates = 0;
    stg_node_info first, last;
    assert_int_equal(stg_plan_node_info(p, 0, &first), STG_OK);
    assert_string_equal(first.op, "matmul");
    assert_string_equal(first.about, "w1");
    assert_int_equal(first.phase, STG_PHASE_FORWARD);
    assert_int_equal(first.ndim, 2);
    assert_true(first.dims[0] == B && first.dims[1] == HID);
    assert_true(first.flops == 2.0 * B * IN * HID);
    assert_true(first.bytes_read == 4.0 * (B * IN + IN * HID));
    assert_true(first.bytes_written == 4.0 * B * HID);
    assert_true(first.offset >= 0 && first.bytes == 4 * B * HID);
    assert_true((size_t)(first.offset + first.bytes) <= stg_plan_arena_bytes(p));
    assert_int_equal(stg_plan_node_info(p, n - 1, &last), STG_OK);
    assert_int_equal(last.phase, STG_PHASE_OPTIMIZER);
    stg_phase prev = STG_PHASE_FORWARD;
    for (int i = 0; i < n; i++) {
        stg_node_info in;
        assert_int_equal(stg_plan_node_info(p, i, &in), STG_OK);
        assert_true(in.phase >= prev); /* forward, then backward, then the update */
        prev = in.phase;
        matmuls += !strcmp(in.op, "matmul");
        if (!strcmp(in.op, "sgd")) {
            updates++;
            assert_int_equal(in.phase, STG_PHASE_OPTIMIZER);
        }
    }
    /* x w1, h w2, and the backward products: dW2, dH, dW1 (no dX: x is an input) */
    assert_int_equal(matmuls, 5);
    assert_int_equal(updates, 3);
    assert_string_equal(stg_phase_name(STG_PHASE_BACKWARD), "backward");
    stg_plan_free(p);
    stg_graph_free(m.g);
}

static void test_ring_and_timings(void **state)
{
    (void)state;
    mlp m = build();
    for (int threads = 1; threads <= 2; threads++) {
        stg_plan *p = plan(&m, threads, 5);
        stg_step_profile sp;
        assert_int_equal(stg_plan_step_profile(p, &sp), STG_OK);
        assert_int_equal(sp.recorded, 0);
        assert_int_equal(stg_plan_write_profile(p, stdout), STG_STATE); /* nothing yet */
        for (int i = 0; i < 8; i++)
            assert_int_equal(stg_plan_step(p), STG_OK);
        assert_int_equal(stg_plan_step_profile(p, &sp), STG_OK);
        assert_int_equal(sp.recorded, 8);
        assert_int_equal(sp.kept, 5);
        assert_true(sp.min_ns > 0 && sp.min_ns <= sp.p50_ns && sp.p50_ns <= sp.p99_ns &&
                    sp.p99_ns <= sp.max_ns);
        /* every thread's kernels and waits fit inside its step */
        const stg_profile *pf = p->prof;
        for (int k = 0; k < sp.kept; k++) {
            int slot = stgX_slot(pf, k);
            for (int t = 0; t < threads; t++) {
                int64_t sum = 0;
                for (int32_t i = 0; i < p->nsched; i++) {
                    size_t c = ((size_t)slot * p->nsched + i) * threads + t;
                    assert_true(pf->busy[c] >= 0 && pf->wait[c] >= 0 && pf->start[c] >= 0);
                    assert_true(pf->start[c] + pf->busy[c] <= pf->step[slot]);
                    sum += pf->busy[c] + (p->sched[i].barrier_before ? pf->wait[c] : 0);
                }
                assert_true(sum <= pf->step[slot]);
            }
        }
        double busy = -1, wait = -1;
        assert_int_equal(stg_plan_node_thread(p, 0, threads - 1, &busy, &wait), STG_OK);
        assert_true(busy >= 0 && wait >= 0);
        assert_int_equal(stg_plan_node_thread(p, 0, threads, &busy, &wait), STG_INVALID);
        assert_int_equal(stg_plan_write_profile(p, stdout), STG_OK);
        assert_int_equal(stg_plan_write_memory(p, stdout), STG_OK);

        /* a failed step is not recorded */
        stg_plan_data_i32(p, m.y)[0] = OUT;
        assert_int_equal(stg_plan_step(p), STG_INDEX);
        assert_int_equal(stg_plan_step_profile(p, &sp), STG_OK);
        assert_int_equal(sp.recorded, 8);
        stg_plan_data_i32(p, m.y)[0] = 0;

        assert_int_equal(stg_plan_profile_reset(p), STG_OK);
        assert_int_equal(stg_plan_step_profile(p, &sp), STG_OK);
        assert_int_equal(sp.recorded, 0);
        assert_int_equal(sp.kept, 0);
        stg_plan_free(p);
    }
    stg_graph_free(m.g);
}

static void test_profiled_step_allocates_nothing(void **state)
{
    (void)state;
    if (!allochook_works()) {
        print_message("allocator hook inactive (sanitizers or valgrind): skipped\n");
        return;
    }
    mlp m = build();
    for (int threads = 1; threads <= 2; threads++) {
        stg_plan *p = plan(&m, threads, 10);
        for (int i = 0; i < 3; i++)
            stg_plan_step(p);
        long before = allochook_calls();
        for (int i = 0; i < 50; i++)
            assert_int_equal(stg_plan_step(p), STG_OK);
        print_message("%d threads: %ld allocator calls in 50 profiled steps\n", threads,
                      allochook_calls() - before);
        assert_int_equal(allochook_calls() - before, 0);
        stg_plan_free(p);
    }
    stg_graph_free(m.g);
}

static void test_memory_breakdown(void **state)
{
    (void)state;
    mlp m = build();
    stg_plan *p = plan(&m, 1, 0);
    stg_memory_report r;
    assert_int_equal(stg_plan_memory(p, &r), STG_OK);
    size_t params = 4 * (IN * HID + HID + HID * OUT);
    assert_int_equal(r.param_bytes, params);
    assert_int_equal(r.grad_bytes, params);  /* one gradient per parameter */
    assert_int_equal(r.state_bytes, params); /* one momentum buffer per parameter */
    assert_true(r.input_bytes >= 4 * (B * IN + B));
    assert_int_equal(r.param_bytes + r.grad_bytes + r.state_bytes + r.input_bytes +
                         r.activation_bytes + r.temp_bytes + r.scratch_bytes,
                     r.buffer_bytes);
    assert_true(r.activation_bytes >= 4 * B * HID);
    stg_plan_free(p);
    stg_graph_free(m.g);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static int count(const char *s, const char *what)
{
    int n = 0;
    for (const char *q = strstr(s, what); q; q = strstr(q + 1, what))
        n++;
    return n;
}

static void test_trace_and_dot_files(void **state)
{
    (void)state;
    char dir[512], path[600], sub[600];
    assert_int_equal(tmpdir_make(dir, sizeof dir, "stg-profile"), 0);
    mlp m = build();
    stg_plan *p = plan(&m, 2, 4);
    for (int i = 0; i < 6; i++)
        assert_int_equal(stg_plan_step(p), STG_OK);

    snprintf(path, sizeof path, "%s/trace.json", dir);
    assert_int_equal(stg_plan_write_trace(p, path), STG_OK);
    char *s = slurp(path);
    assert_non_null(s);
    assert_true(strncmp(s, "{\"displayTimeUnit\":\"ns\",\"traceEvents\":[", 38) == 0);
    assert_non_null(strstr(s, "]}"));
    assert_int_equal(count(s, "\"thread_name\""), 2);
    /* a step made only of serial nodes runs on thread 0 alone */
    int nt = p->first_shared >= p->nsched ? 1 : 2;
    assert_int_equal(count(s, "\"cat\":\"step\""), 4 * nt); /* kept steps x threads */
    int slices = 0; /* node slices: every thread of a shared node, thread 0 of a serial one */
    for (int32_t i = 0; i < p->nsched; i++)
        slices += p->sched[i].serial ? 1 : nt;
    assert_int_equal(count(s, "\"cat\":\"forward\"") + count(s, "\"cat\":\"backward\"") +
                         count(s, "\"cat\":\"optimizer\""),
                     4 * slices);
    assert_int_equal(count(s, "{"), count(s, "}"));
    assert_true(count(s, "\"about\":\"w1\"") >= 4); /* x w1 in each step at least */

    /* A node big enough to share: every thread gets a track with its slices. */
    stg_graph *g2 = stg_graph_new();
    int64_t xd[2] = {2, 20000};
    stg_tensor x2 = stg_input(g2, "x", 2, xd);
    stg_graph_keep(g2, stg_relu(g2, x2));
    stg_plan_options o2;
    stg_plan_options_init(&o2);
    o2.threads = 2;
    o2.profile = 3;
    o2.optimizer = STG_OPTIM_NONE;
    stg_plan *p2 = tu_plan_with(g2, (stg_tensor){-1}, &o2);
    assert_true(p2->first_shared < p2->nsched);
    for (int i = 0; i < 3; i++)
        assert_int_equal(stg_plan_forward(p2), STG_OK);
    snprintf(path, sizeof path, "%s/trace2.json", dir);
    assert_int_equal(stg_plan_write_trace(p2, path), STG_OK);
    s = slurp(path);
    assert_non_null(s);
    assert_int_equal(count(s, "\"cat\":\"step\""), 3 * 2);
    assert_int_equal(count(s, "\"cat\":\"forward\""), 3 * 2);
    stg_plan_free(p2);
    stg_graph_free(g2);

    snprintf(path, sizeof path, "%s/graph.dot", dir);
    assert_int_equal(stg_plan_write_dot(p, path), STG_OK);
    s = slurp(path);
    assert_non_null(s);
    assert_true(strncmp(s, "digraph stgrad {", 16) == 0);
    assert_non_null(strstr(s, "cluster_backward"));
    for (int32_t i = 0; i < p->nsched; i++) {
        char node[32];
        snprintf(node, sizeof node, "  n%d [", (int)p->sched[i].id);
        assert_non_null(strstr(s, node));
    }
    assert_non_null(strstr(s, "param w1"));

    /* Failures: a directory that does not exist; a rename over a directory
     * (the write itself succeeds) leaves the directory and no temporary file. */
    snprintf(path, sizeof path, "%s/missing/trace.json", dir);
    assert_int_equal(stg_plan_write_trace(p, path), STG_IO);
    assert_non_null(strstr(stg_plan_message(p), "missing/trace.json"));
    snprintf(sub, sizeof sub, "%s/taken", dir);
    assert_int_equal(mkdir(sub, 0755), 0);
    snprintf(path, sizeof path, "%s/taken/keep", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fclose(f);
    assert_int_equal(stg_plan_write_dot(p, sub), STG_IO);
    assert_non_null(strstr(stg_plan_message(p), "taken"));
    struct stat st;
    assert_int_equal(stat(path, &st), 0); /* what was there is still there */
    assert_int_equal(stg_plan_write_trace(p, sub), STG_IO);
    assert_int_equal(stg_plan_write_dot(p, ""), STG_INVALID);
    stg_plan_free(p);
    stg_graph_free(m.g);
    /* only what the test made is left: trace.json, trace2.json, graph.dot, taken/ */
    assert_int_equal(tmpdir_remove(dir), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_off_by_default),
        cmocka_unit_test(test_node_facts),
        cmocka_unit_test(test_ring_and_timings),
        cmocka_unit_test(test_profiled_step_allocates_nothing),
        cmocka_unit_test(test_memory_breakdown),
        cmocka_unit_test(test_trace_and_dot_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
