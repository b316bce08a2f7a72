/*
 * Initialisers: bounds and moments of each distribution (statistical checks
 * over 200,000 values, with tolerances many standard errors wide), exact
 * constants, reproducibility from the seed, and bad arguments.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "testutil.h"

#define FAN_IN 400
#define FAN_OUT 500 /* a (400, 500) matrix: 200,000 values */

typedef struct fixture {
    stg_graph *g;
    stg_plan *p;
    stg_tensor w, v;
} fixture;

static fixture make(void)
{
    fixture f = {.g = stg_graph_new()};
    int64_t wd[2] = {FAN_IN, FAN_OUT}, vd[1] = {7};
    f.w = stg_param(f.g, "w", 2, wd);
    f.v = stg_param(f.g, "v", 1, vd);
    stg_tensor loss = stg_add(f.g, stg_sum(f.g, f.w, 0, NULL, 0), stg_sum(f.g, f.v, 0, NULL, 0));
    f.p = tu_plan(f.g, loss, 1, STG_OPTIM_NONE);
    return f;
}

static void moments(const float *x, int64_t n, double *mean, double *sd, double *lo, double *hi)
{
    double s = 0, s2 = 0;
    *lo = INFINITY, *hi = -INFINITY;
    for (int64_t i = 0; i < n; i++) {
        s += x[i];
        s2 += (double)x[i] * x[i];
        *lo = fmin(*lo, x[i]);
        *hi = fmax(*hi, x[i]);
    }
    *mean = s / (double)n;
    *sd = sqrt(s2 / (double)n - *mean * *mean);
}

static void check_uniform(const float *x, double a, double b)
{
    double mean, sd, lo, hi, n = (double)FAN_IN * FAN_OUT;
    moments(x, FAN_IN * FAN_OUT, &mean, &sd, &lo, &hi);
    double want_sd = (b - a) / sqrt(12.0);
    assert_true(lo >= a && hi < b);
    assert_true(lo < a + (b - a) * 1e-3 && hi > b - (b - a) * 1e-3); /* the range is covered */
    assert_true(fabs(mean - (a + b) / 2) < 6 * want_sd / sqrt(n));
    assert_true(fabs(sd - want_sd) < 0.01 * want_sd);
}

static void check_normal(const float *x, double mean_want, double sd_want)
{
    double mean, sd, lo, hi, n = (double)FAN_IN * FAN_OUT;
    moments(x, FAN_IN * FAN_OUT, &mean, &sd, &lo, &hi);
    assert_true(fabs(mean - mean_want) < 6 * sd_want / sqrt(n));
    assert_true(fabs(sd - sd_want) < 0.01 * sd_want);
    assert_true(lo < mean_want - 3.5 * sd_want && hi > mean_want + 3.5 * sd_want); /* tails */
}

static void test_distributions(void **state)
{
    (void)state;
    fixture f = make();
    const float *w = stg_plan_data(f.p, f.w);
    assert_int_equal(stg_plan_init(f.p, f.w, STG_INIT_UNIFORM, -0.5f, 2.0f, 1), STG_OK);
    check_uniform(w, -0.5, 2.0);
    assert_int_equal(stg_plan_init(f.p, f.w, STG_INIT_NORMAL, 1.0f, 0.25f, 2), STG_OK);
    check_normal(w, 1.0, 0.25);
    double xb = sqrt(6.0 / (FAN_IN + FAN_OUT));
    assert_int_equal(stg_plan_init(f.p, f.w, STG_INIT_XAVIER_UNIFORM, 0, 0, 3), STG_OK);
    check_uniform(w, -xb, xb);
    assert_int_equal(stg_plan_init(f.p, f.w, STG_INIT_XAVIER_NORMAL, 2.0f, 0, 4), STG_OK);
    check_normal(w, 0.0, 2.0 * sqrt(2.0 / (FAN_IN + FAN_OUT)));
    double kb = sqrt(2.0) * sqrt(3.0 / FAN_IN); /* relu gain sqrt(2) */
    assert_int_equal(stg_plan_init(f.p, f.w, STG_INIT_KAIMING_UNIFORM, 0, 0, 5), STG_OK);
    check_uniform(w, -kb, kb);
    /* a = sqrt(5): PyTorch's nn.Linear default, bound 1/sqrt(fan_in) */
    assert_int_equal(stg_plan_init(f.p, f.w, STG_INIT_KAIMING_UNIFORM, sqrtf(5.0f), 0, 6), STG_OK);
    check_uniform(w, -1.0 / sqrt(FAN_IN), 1.0 / sqrt(FAN_IN));
    assert_int_equal(stg_plan_init(f.p, f.w, STG_INIT_KAIMING_NORMAL, 0.1f, 0, 7), STG_OK);
    check_normal(w, 0.0, sqrt(2.0 / 1.01) / sqrt(FAN_IN));
    stg_plan_free(f.p);
    stg_graph_free(f.g);
}

/* A convolution's weight (O, C, KH, KW) has PyTorch's fans: fan_in = C KH KW
 * (400 here), fan_out = O KH KW (5000), not those of a (O C KH, KW) matrix. */
static void test_conv_weight_fans(void **state)
{
    (void)state;
    stg_graph *g = stg_graph_new();
    stg_tensor w4 = stg_param(g, "w", 4, (int64_t[]){500, 40, 10, 1});
    stg_tensor loss = stg_sum(g, w4, 0, NULL, 0);
    stg_plan *p = tu_plan(g, loss, 1, STG_OPTIM_NONE);
    const float *w = stg_plan_data(p, w4);
    assert_int_equal(stg_plan_init(p, w4, STG_INIT_KAIMING_UNIFORM, sqrtf(5.0f), 0, 8), STG_OK);
    check_uniform(w, -1.0 / sqrt(400.0), 1.0 / sqrt(400.0));
    assert_int_equal(stg_plan_init(p, w4, STG_INIT_XAVIER_UNIFORM, 0, 0, 9), STG_OK);
    check_uniform(w, -sqrt(6.0 / 5400.0), sqrt(6.0 / 5400.0));
    stg_plan_free(p);
    stg_graph_free(g);
}

static void test_constants_and_seeds(void **state)
{
    (void)state;
    fixture f = make();
    const float *v = stg_plan_data(f.p, f.v);
    assert_int_equal(stg_plan_init(f.p, f.v, STG_INIT_ONES, 0, 0, 0), STG_OK);
    for (int i = 0; i < 7; i++)
        assert_true(v[i] == 1.0f);
    assert_int_equal(stg_plan_init(f.p, f.v, STG_INIT_CONSTANT, -3.5f, 0, 0), STG_OK);
    for (int i = 0; i < 7; i++)
        assert_true(v[i] == -3.5f);
    assert_int_equal(stg_plan_init(f.p, f.v, STG_INIT_ZEROS, 0, 0, 0), STG_OK);
    for (int i = 0; i < 7; i++)
        assert_true(v[i] == 0.0f);

    float a[7], b[7];
    stg_plan_init(f.p, f.v, STG_INIT_NORMAL, 0, 1, 42);
    memcpy(a, v, sizeof a);
    stg_plan_init(f.p, f.w, STG_INIT_NORMAL, 0, 1, 43); /* another tensor in between */
    stg_plan_init(f.p, f.v, STG_INIT_NORMAL, 0, 1, 42);
    assert_memory_equal(a, v, sizeof a);
    stg_plan_init(f.p, f.v, STG_INIT_NORMAL, 0, 1, 41);
    memcpy(b, v, sizeof b);
    assert_memory_not_equal(a, b, sizeof a);
    /* value i depends on (seed, i) only: the first 7 values of a bigger tensor match */
    stg_plan_init(f.p, f.w, STG_INIT_NORMAL, 0, 1, 42);
    assert_memory_equal(a, stg_plan_data(f.p, f.w), sizeof a);

    assert_int_equal(stg_plan_init(f.p, f.v, STG_INIT_UNIFORM, 1.0f, 1.0f, 0), STG_INVALID);
    assert_int_equal(stg_plan_init(f.p, f.v, STG_INIT_NORMAL, 0.0f, -1.0f, 0), STG_INVALID);
    assert_int_equal(stg_plan_init(f.p, f.v, STG_INIT_CONSTANT, NAN, 0, 0), STG_INVALID);
    assert_int_equal(stg_plan_init(f.p, f.v, (stg_init_kind)99, 0, 0, 0), STG_INVALID);
    assert_int_equal(stg_plan_init(f.p, (stg_tensor){999}, STG_INIT_ZEROS, 0, 0, 0), STG_INVALID);
    for (int i = 0; i < 7; i++) /* the failed calls changed nothing */
        assert_memory_equal(b, v, sizeof b);
    stg_plan_free(f.p);
    stg_graph_free(f.g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_distributions),
        cmocka_unit_test(test_constants_and_seeds),
        cmocka_unit_test(test_conv_weight_fans),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
