/*
 * Optimizers, clipping and learning-rate schedules against PyTorch: each case
 * of tests/data/optim_ref.txt (written by tools/gen_reference.py) trains
 * a linear layer with an mse loss for a few steps from the same initial
 * values, and records the loss of every step and the parameters after it.
 * Tolerance: |got - want| <= 1e-5 + 1e-4 |want|.  Also: a step whose loss is
 * not finite changes nothing and says why.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "testutil.h"

#define ATOL 1e-5
#define RTOL 1e-4

typedef struct layer {
    stg_graph *g;
    stg_tensor x, t, w, b, loss;
} layer;

static layer make_layer(void)
{
    layer l = {.g = stg_graph_new()};
    int64_t xd[2] = {5, 4}, td[2] = {5, 3}, wd[2] = {4, 3}, bd[1] = {3};
    l.x = stg_input(l.g, "x", 2, xd);
    l.t = stg_input(l.g, "t", 2, td);
    l.w = stg_param(l.g, "w", 2, wd);
    l.b = stg_param(l.g, "b", 1, bd);
    l.loss = stg_mse_loss(l.g, stg_add(l.g, stg_matmul(l.g, l.x, l.w), l.b), l.t);
    assert_int_equal(stg_graph_status(l.g), STG_OK);
    return l;
}

static void check_case(const tu_case *c, int threads)
{
    const double *a = c->attr;
    stg_plan_options o;
    stg_plan_options_init(&o);
    o.threads = threads;
    o.optimizer = !strcmp(c->op, "sgd") ? STG_OPTIM_SGD
                  : !strcmp(c->op, "adam") ? STG_OPTIM_ADAM : STG_OPTIM_ADAMW;
    o.lr = (float)a[0], o.momentum = (float)a[1], o.nesterov = (int)a[2];
    o.weight_decay = (float)a[3], o.beta1 = (float)a[4], o.beta2 = (float)a[5];
    o.eps = (float)a[6], o.clip_norm = (float)a[7], o.clip_value = (float)a[8];
    stg_schedule sc = {(stg_schedule_kind)a[9], (int64_t)a[10], (float)a[11], (int64_t)a[12],
                       (float)a[13]};
    layer l = make_layer();
    stg_plan *p = tu_plan_with(l.g, l.loss, &o);
    assert_int_equal(stg_plan_set_schedule(p, &sc), STG_OK);
    const char *roles[4] = {"x", "t", "w", "b"};
    stg_tensor ts[4] = {l.x, l.t, l.w, l.b};
    for (int i = 0; i < 4; i++) {
        const tu_tensor *v = tu_find(c, roles[i]);
        assert_int_equal(stg_plan_set(p, ts[i], v->v, v->n), STG_OK);
    }
    const tu_tensor *losses = tu_find(c, "loss");
    for (int step = 1; step <= losses->n; step++) {
        assert_int_equal(stg_plan_step(p), STG_OK);
        float loss = stg_plan_loss(p);
        if (tu_err(&loss, &losses->v[step - 1], 1, ATOL, RTOL) > 1.0)
            fail_msg("%s step %d: loss %.9g, PyTorch %.9g", c->name, step, loss,
                     losses->v[step - 1]);
        for (int k = 2; k < 4; k++) {
            char role[16];
            snprintf(role, sizeof role, "%s%d", roles[k], step);
            const tu_tensor *want = tu_find(c, role);
            double e = tu_err(stg_plan_data(p, ts[k]), want->v, want->n, ATOL, RTOL);
            if (e > 1.0)
                fail_msg("%s (%d threads): %s after step %d is %.3g tolerances from PyTorch",
                         c->name, threads, roles[k], step, e);
        }
    }
    assert_int_equal(stg_plan_steps(p), losses->n);
    stg_plan_free(p);
    stg_graph_free(l.g);
}

static void test_optimizers_match_pytorch(void **state)
{
    (void)state;
    FILE *f = tu_open_data("optim_ref.txt");
    tu_case c;
    int n = 0;
    while (tu_read_case(f, &c)) {
        check_case(&c, 1);
        check_case(&c, 2);
        tu_free_case(&c);
        n++;
    }
    fclose(f);
    assert_true(n >= 12);
    print_message("%d optimizer cases match PyTorch\n", n);
}

/* A NaN in the data: the step reports it and leaves every parameter, every
 * optimizer state and the step count as they were; without an optimizer
 * too (STG_NUMERIC, as the header promises, and the step is not counted). */
static void test_nonfinite_loss_changes_nothing(void **state)
{
    (void)state;
    for (int run = 0; run < 4; run++) {
        int threads = 1 + run % 2;
        layer l = make_layer();
        stg_plan *p = tu_plan(l.g, l.loss, threads, run < 2 ? STG_OPTIM_ADAM : STG_OPTIM_NONE);
        tu_fill(stg_plan_data(p, l.x), 20, 1, -1, 1);
        tu_fill(stg_plan_data(p, l.t), 15, 2, -1, 1);
        tu_fill(stg_plan_data(p, l.w), 12, 3, -1, 1);
        assert_int_equal(stg_plan_step(p), STG_OK);
        float w[12], b[3];
        memcpy(w, stg_plan_data(p, l.w), sizeof w);
        memcpy(b, stg_plan_data(p, l.b), sizeof b);
        stg_plan_data(p, l.x)[7] = NAN;
        assert_int_equal(stg_plan_step(p), STG_NUMERIC);
        assert_non_null(strstr(stg_plan_message(p), "loss is nan"));
        assert_non_null(strstr(stg_plan_message(p), "unchanged"));
        assert_memory_equal(w, stg_plan_data(p, l.w), sizeof w);
        assert_memory_equal(b, stg_plan_data(p, l.b), sizeof b);
        assert_int_equal(stg_plan_steps(p), 1);
        /* the next good step continues as if the bad one never happened */
        stg_plan_data(p, l.x)[7] = 0.5f;
        assert_int_equal(stg_plan_step(p), STG_OK);
        assert_string_equal(stg_plan_message(p), "");
        assert_int_equal(stg_plan_steps(p), 2);
        stg_plan_free(p);
        stg_graph_free(l.g);
    }
}

/* A gradient that is not finite under a finite loss: sum(sqrt(w)) with a
 * zero in w has the gradient 0.5 / sqrt(0) = inf there.  The default guard
 * fails the step, names the parameter, the element and the first node whose
 * output was not finite, the same at 1 and 2 threads, and changes nothing;
 * STG_GUARD_LOSS lets the step through (its documented trade). */
static void test_nonfinite_gradient_changes_nothing(void **state)
{
    (void)state;
    char first_msg[512] = "";
    for (int threads = 1; threads <= 2; threads++) {
        stg_graph *g = stg_graph_new();
        int64_t d[1] = {5};
        stg_tensor w = stg_param(g, "w", 1, d);
        stg_tensor loss = stg_sum(g, stg_sqrt(g, w), 0, NULL, 0);
        stg_plan_options o;
        stg_plan_options_init(&o);
        o.threads = threads;
        o.momentum = 0.9f;
        stg_plan *p = tu_plan_with(g, loss, &o);
        float w0[5] = {1.0f, 4.0f, 0.0f, 9.0f, 2.0f};
        assert_int_equal(stg_plan_set(p, w, w0, 5), STG_OK);
        assert_int_equal(stg_plan_step(p), STG_NUMERIC);
        const char *msg = stg_plan_message(p);
        if (!strstr(msg, "the gradient of 'w' is inf at element 2") || !strstr(msg, "sqrt_grad") ||
            !strstr(msg, "unchanged"))
            fail_msg("message: %s", msg);
        if (threads == 1)
            snprintf(first_msg, sizeof first_msg, "%s", msg);
        else
            assert_string_equal(msg, first_msg);
        assert_memory_equal(stg_plan_data(p, w), w0, sizeof w0);
        assert_int_equal(stg_plan_steps(p), 0);
        stg_plan_free(p);

        o.guard = STG_GUARD_LOSS;
        p = tu_plan_with(g, loss, &o);
        assert_int_equal(stg_plan_set(p, w, w0, 5), STG_OK);
        assert_int_equal(stg_plan_step(p), STG_OK);
        assert_false(isfinite(stg_plan_data(p, w)[2]));
        stg_plan_free(p);
        stg_graph_free(g);
    }
}

/* More parameters than one guard node takes (STG_MAX_INPUTS inputs each):
 * a non-finite gradient of the ninth is found too. */
static void test_guard_covers_every_parameter(void **state)
{
    (void)state;
    stg_graph *g = stg_graph_new();
    int64_t d[1] = {3};
    stg_tensor ps[9], loss = {-1};
    for (int i = 0; i < 9; i++) {
        char name[8];
        snprintf(name, sizeof name, "p%d", i);
        ps[i] = stg_param(g, name, 1, d);
        stg_tensor s = stg_sum(g, stg_sqrt(g, ps[i]), 0, NULL, 0);
        loss = i ? stg_add(g, loss, s) : s;
    }
    stg_plan *p = tu_plan(g, loss, 2, STG_OPTIM_SGD);
    float ones[3] = {1, 1, 1}, hole[3] = {1, 0, 1};
    for (int i = 0; i < 9; i++)
        assert_int_equal(stg_plan_set(p, ps[i], i == 8 ? hole : ones, 3), STG_OK);
    assert_int_equal(stg_plan_step(p), STG_NUMERIC);
    if (!strstr(stg_plan_message(p), "the gradient of 'p8' is inf at element 1"))
        fail_msg("message: %s", stg_plan_message(p));
    assert_memory_equal(stg_plan_data(p, ps[0]), ones, sizeof ones);
    stg_plan_free(p);
    stg_graph_free(g);
}

/* The probe's case: a NaN in x through matmul, relu (which passes it on, as
 * PyTorch's does), matmul and softmax cross-entropy.  The step fails on the
 * loss and names the first matmul as the first node with a NaN. */
static void test_nan_input_named_at_its_first_node(void **state)
{
    (void)state;
    stg_graph *g = stg_graph_new();
    int64_t xd[2] = {2, 3}, w1d[2] = {3, 4}, w2d[2] = {4, 2}, yd[1] = {2};
    stg_tensor x = stg_input(g, "x", 2, xd), y = stg_input_i32(g, "y", 1, yd);
    stg_tensor w1 = stg_param(g, "w1", 2, w1d), w2 = stg_param(g, "w2", 2, w2d);
    stg_tensor h = stg_relu(g, stg_matmul(g, x, w1));
    stg_tensor loss = stg_softmax_cross_entropy(g, stg_matmul(g, h, w2), y, STG_REDUCE_MEAN);
    stg_plan *p = tu_plan(g, loss, 1, STG_OPTIM_SGD);
    tu_fill(stg_plan_data(p, x), 6, 1, -1, 1);
    tu_fill(stg_plan_data(p, w1), 12, 2, -1, 1);
    tu_fill(stg_plan_data(p, w2), 8, 3, -1, 1);
    int32_t labels[2] = {0, 1};
    assert_int_equal(stg_plan_set_i32(p, y, labels, 2), STG_OK);
    stg_plan_data(p, x)[4] = NAN;
    float before[12];
    memcpy(before, stg_plan_data(p, w1), sizeof before);
    assert_int_equal(stg_plan_step(p), STG_NUMERIC);
    const char *msg = stg_plan_message(p);
    if (!strstr(msg, "the loss is nan") || !strstr(msg, "node 0: forward matmul (w1)"))
        fail_msg("message: %s", msg);
    assert_memory_equal(stg_plan_data(p, w1), before, sizeof before);
    stg_plan_free(p);
    stg_graph_free(g);
}

/* A label out of range is an error of the step, not a wrong number: the step
 * stops before any update, names the op, the label and the range. */
static void test_bad_label_changes_nothing(void **state)
{
    (void)state;
    for (int threads = 1; threads <= 2; threads++) {
        stg_graph *g = stg_graph_new();
        int64_t xd[2] = {4, 3}, wd[2] = {3, 5}, yd[1] = {4};
        stg_tensor x = stg_input(g, "x", 2, xd), w = stg_param(g, "w", 2, wd);
        stg_tensor y = stg_input_i32(g, "y", 1, yd);
        stg_tensor loss = stg_softmax_cross_entropy(g, stg_matmul(g, x, w), y, STG_REDUCE_MEAN);
        stg_plan *p = tu_plan(g, loss, threads, STG_OPTIM_SGD);
        tu_fill(stg_plan_data(p, x), 12, 1, -1, 1);
        tu_fill(stg_plan_data(p, w), 15, 2, -1, 1);
        const int32_t good[4] = {0, 4, 2, 1}, bad[4] = {0, 4, 5, 1}, neg[4] = {-1, 0, 0, 0};
        assert_int_equal(stg_plan_set_i32(p, y, good, 4), STG_OK);
        assert_int_equal(stg_plan_step(p), STG_OK);
        float before[15];
        memcpy(before, stg_plan_data(p, w), sizeof before);
        assert_int_equal(stg_plan_set_i32(p, y, bad, 4), STG_OK);
        assert_int_equal(stg_plan_step(p), STG_INDEX);
        const char *m = stg_plan_message(p);
        if (!strstr(m, "softmax_cross_entropy: label 5") || !strstr(m, "position 2") ||
            !strstr(m, "[0, 5)"))
            fail_msg("unexpected message: %s", m);
        assert_memory_equal(before, stg_plan_data(p, w), sizeof before);
        assert_int_equal(stg_plan_steps(p), 1);
        assert_int_equal(stg_plan_set_i32(p, y, neg, 4), STG_OK);
        assert_int_equal(stg_plan_forward(p), STG_INDEX);
        assert_non_null(strstr(stg_plan_message(p), "label -1"));
        assert_int_equal(stg_plan_set_i32(p, y, good, 4), STG_OK);
        assert_int_equal(stg_plan_step(p), STG_OK);
        assert_int_equal(stg_plan_steps(p), 2);
        /* int32 data is reached only through the _i32 calls, and floats not through them */
        assert_null(stg_plan_data(p, y));
        assert_null(stg_plan_data_i32(p, x));
        assert_int_equal(stg_plan_set(p, y, before, 4), STG_NOT_FOUND);
        stg_plan_free(p);
        stg_graph_free(g);
    }
}

/* A small ReLU MLP fits fixed synthetic data (the class is the index of the
 * largest of the first 4 features): loss below 0.05 within 300 Adam steps,
 * from ln 4 = 1.386 at the start. */
static void test_mlp_fits_synthetic_data(void **state)
{
    (void)state;
    stg_graph *g = stg_graph_new();
    int64_t xd[2] = {64, 8}, w1d[2] = {8, 32}, b1d[1] = {32}, w2d[2] = {32, 4}, b2d[1] = {4},
            yd[1] = {64};
    stg_tensor x = stg_input(g, "x", 2, xd), y = stg_input_i32(g, "y", 1, yd);
    stg_tensor w1 = stg_param(g, "w1", 2, w1d), b1 = stg_param(g, "b1", 1, b1d);
    stg_tensor w2 = stg_param(g, "w2", 2, w2d), b2 = stg_param(g, "b2", 1, b2d);
    stg_tensor h = stg_relu(g, stg_add(g, stg_matmul(g, x, w1), b1));
    stg_tensor loss = stg_softmax_cross_entropy(g, stg_add(g, stg_matmul(g, h, w2), b2), y,
                                                STG_REDUCE_MEAN);
    stg_plan_options o;
    stg_plan_options_init(&o);
    o.optimizer = STG_OPTIM_ADAM;
    o.threads = 2;
    stg_plan *p = NULL;
    assert_int_equal(stg_plan_create(g, loss, &o, &p), STG_OK);
    stg_plan_init(p, x, STG_INIT_UNIFORM, -1, 1, 1);
    stg_plan_init(p, w1, STG_INIT_KAIMING_UNIFORM, 0, 0, 2);
    stg_plan_init(p, w2, STG_INIT_XAVIER_UNIFORM, 0, 0, 3);
    const float *xv = stg_plan_data(p, x);
    int32_t *labels = stg_plan_data_i32(p, y);
    for (int i = 0; i < 64; i++) {
        labels[i] = 0;
        for (int c = 1; c < 4; c++)
            if (xv[i * 8 + c] > xv[i * 8 + labels[i]])
                labels[i] = c;
    }
    assert_int_equal(stg_plan_step(p), STG_OK);
    float first = stg_plan_loss(p);
    for (int i = 1; i < 300; i++)
        assert_int_equal(stg_plan_step(p), STG_OK);
    float last = stg_plan_loss(p);
    print_message("synthetic MLP: loss %.4f -> %.4f in 300 steps\n", first, last);
    assert_true(first > 1.2f);
    assert_true(last < 0.05f);
    stg_plan_free(p);
    stg_graph_free(g);
}

static void test_bad_options_and_schedules(void **state)
{
    (void)state;
    layer l = make_layer();
    stg_plan_options o;
    stg_plan *p = NULL;
    stg_plan_options_init(&o);
    o.nesterov = 1;
    assert_int_equal(stg_plan_create(l.g, l.loss, &o, &p), STG_INVALID);
    assert_non_null(strstr(stg_plan_last_message(), "Nesterov"));
    stg_plan_options_init(&o);
    o.beta2 = 1.0f;
    assert_int_equal(stg_plan_create(l.g, l.loss, &o, &p), STG_INVALID);
    assert_non_null(strstr(stg_plan_last_message(), "beta2"));
    stg_plan_options_init(&o);
    o.lr = -1.0f;
    assert_int_equal(stg_plan_create(l.g, l.loss, &o, &p), STG_INVALID);
    o.lr = NAN;
    assert_int_equal(stg_plan_create(l.g, l.loss, &o, &p), STG_INVALID);
    stg_plan_options_init(&o);
    o.optimizer = (stg_optimizer)42;
    assert_int_equal(stg_plan_create(l.g, l.loss, &o, &p), STG_INVALID);
    assert_null(p);

    p = tu_plan(l.g, l.loss, 1, STG_OPTIM_SGD);
    stg_schedule s = {STG_SCHED_STEP, 0, 0.5f, 0, 0};
    assert_int_equal(stg_plan_set_schedule(p, &s), STG_INVALID);
    s = (stg_schedule){STG_SCHED_COSINE, 0, 0, 0, 0.0f};
    assert_int_equal(stg_plan_set_schedule(p, &s), STG_INVALID);
    s = (stg_schedule){(stg_schedule_kind)9, 1, 1, 1, 0};
    assert_int_equal(stg_plan_set_schedule(p, &s), STG_INVALID);
    s = (stg_schedule){STG_SCHED_STEP, 10, INFINITY, 0, 0};
    assert_int_equal(stg_plan_set_schedule(p, &s), STG_INVALID);
    s = (stg_schedule){STG_SCHED_COSINE, 0, 0, 10, INFINITY};
    assert_int_equal(stg_plan_set_schedule(p, &s), STG_INVALID);
    assert_int_equal(stg_plan_set_lr(p, -0.1f), STG_INVALID);
    assert_true(stg_plan_lr(p) == 0.01f); /* unchanged by the failed calls */
    s = (stg_schedule){STG_SCHED_COSINE, 0, 0, 10, 0.001f};
    assert_int_equal(stg_plan_set_schedule(p, &s), STG_OK);
    assert_true(stg_plan_lr(p) == 0.01f);
    stg_plan_free(p);
    stg_graph_free(l.g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_optimizers_match_pytorch),
        cmocka_unit_test(test_nonfinite_loss_changes_nothing),
        cmocka_unit_test(test_nonfinite_gradient_changes_nothing),
        cmocka_unit_test(test_nan_input_named_at_its_first_node),
        cmocka_unit_test(test_guard_covers_every_parameter),
        cmocka_unit_test(test_bad_label_changes_nothing),
        cmocka_unit_test(test_mlp_fits_synthetic_data),
        cmocka_unit_test(test_bad_options_and_schedules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
