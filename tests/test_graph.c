/*
 * The graph builder: every shape or argument error of every builder call
 * (status and message), sticky first errors, NULL graphs, the shapes that
 * valid calls produce (the full NumPy matmul table, broadcasting, reductions,
 * views), status names, require_grad/keep on bad tensors, and the argument
 * errors of stg_plan_create.  Public API only.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "stgrad.h"

/* ---- helpers ------------------------------------------------------------- */

/* A dims array literal and its length: D(2, 3, 4), ND(2, 3, 4) == 3. */
#define D(...) ((const int64_t[]){__VA_ARGS__})
#define ND(...) ((int)(sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t)))
/* An input named "x" with the given dims (at least one). */
#define INPUT(g, ...) stg_input((g), "x", ND(__VA_ARGS__), D(__VA_ARGS__))
#define SCALAR_INPUT(g) stg_input((g), "s", 0, NULL)

#define BAD_ID ((stg_tensor){12345})
#define NEG_ID ((stg_tensor){-1})

/* Fails the test at file:line unless 't' is invalid, the graph's status is
 * 'want' and its message contains every string of the NULL-terminated list. */
static void expect_error_at(const char *file, int line, const stg_graph *g, stg_tensor t,
                            stg_status want, const char *const *needles)
{
    const char *msg = stg_graph_message(g);
    if (t.id >= 0) {
        print_error("%s:%d: expected an invalid tensor, got id %d (message \"%s\")\n", file, line,
                    (int)t.id, msg);
        _fail(file, line);
        return;
    }
    if (stg_graph_status(g) != want) {
        print_error("%s:%d: status %s, expected %s (message \"%s\")\n", file, line,
                    stg_status_name(stg_graph_status(g)), stg_status_name(want), msg);
        _fail(file, line);
        return;
    }
    if (!msg) {
        print_error("%s:%d: stg_graph_message returned NULL\n", file, line);
        _fail(file, line);
        return;
    }
    for (; *needles; needles++) {
        if (!strstr(msg, *needles)) {
            print_error("%s:%d: message \"%s\" lacks \"%s\"\n", file, line, msg, *needles);
            _fail(file, line);
            return;
        }
    }
}
#define EXPECT_ERROR(g, t, st, ...)                                                          \
    expect_error_at(__FILE__, __LINE__, (g), (t), (st), (const char *const[]){__VA_ARGS__, NULL})

/* Fails the test unless 't' is a valid tensor of shape dims[0..nd) (graph OK). */
static void expect_shape_at(const char *file, int line, const stg_graph *g, stg_tensor t, int nd,
                            const int64_t *dims)
{
    int64_t got[STG_MAX_DIMS];
    int64_t numel = 1;
    if (stg_graph_status(g) != STG_OK || !stg_tensor_valid(g, t)) {
        print_error("%s:%d: tensor id %d invalid; graph status %s: \"%s\"\n", file, line,
                    (int)t.id, stg_status_name(stg_graph_status(g)), stg_graph_message(g));
        _fail(file, line);
        return;
    }
    int gnd = stg_tensor_shape(g, t, got);
    if (gnd != nd || stg_tensor_ndim(g, t) != nd) {
        print_error("%s:%d: ndim %d (ndim() %d), expected %d\n", file, line, gnd,
                    stg_tensor_ndim(g, t), nd);
        _fail(file, line);
        return;
    }
    for (int i = 0; i < nd; i++) {
        if (got[i] != dims[i]) {
            print_error("%s:%d: dim %d is %lld, expected %lld\n", file, line, i,
                        (long long)got[i], (long long)dims[i]);
            _fail(file, line);
            return;
        }
        numel *= dims[i];
    }
    if (stg_tensor_numel(g, t) != numel) {
        print_error("%s:%d: numel %lld, expected %lld\n", file, line,
                    (long long)stg_tensor_numel(g, t), (long long)numel);
        _fail(file, line);
    }
}
#define EXPECT_SHAPE(g, t, ...)                                                              \
    expect_shape_at(__FILE__, __LINE__, (g), (t), ND(__VA_ARGS__), D(__VA_ARGS__))
#define EXPECT_SCALAR(g, t) expect_shape_at(__FILE__, __LINE__, (g), (t), 0, NULL)

typedef stg_tensor (*binop_fn)(stg_graph *, stg_tensor, stg_tensor);

static const struct {
    const char *name;
    binop_fn fn;
} binops[] = {{"add", stg_add}, {"sub", stg_sub}, {"mul", stg_mul}, {"div", stg_div}};
#define NBINOPS ((int)(sizeof binops / sizeof binops[0]))

/* ---- status names -------------------------------------------------------- */

static void test_status_names(void **state)
{
    (void)state;
    static const struct {
        stg_status s;
        const char *name;
    } all[] = {{STG_OK, "STG_OK"},         {STG_NOMEM, "STG_NOMEM"},
               {STG_SHAPE, "STG_SHAPE"},   {STG_INVALID, "STG_INVALID"},
               {STG_STATE, "STG_STATE"},   {STG_SMALL_ARENA, "STG_SMALL_ARENA"},
               {STG_NOT_FOUND, "STG_NOT_FOUND"}, {STG_NUMERIC, "STG_NUMERIC"},
               {STG_INDEX, "STG_INDEX"},   {STG_IO, "STG_IO"},
               {STG_FORMAT, "STG_FORMAT"}, {STG_PEER, "STG_PEER"},
               {STG_COMM, "STG_COMM"}};
    int n = (int)(sizeof all / sizeof all[0]);
    for (int i = 0; i < n; i++) {
        const char *name = stg_status_name(all[i].s), *msg = stg_status_message(all[i].s);
        assert_non_null(name);
        assert_non_null(msg);
        assert_int_equal(strncmp(name, "STG_", 4), 0);
        assert_string_equal(name, all[i].name);
        assert_true(strlen(msg) > 0);
        assert_string_not_equal(name, "STG_UNKNOWN");
        for (int j = 0; j < i; j++) {
            assert_string_not_equal(name, stg_status_name(all[j].s));
            assert_string_not_equal(msg, stg_status_message(all[j].s));
        }
    }
    /* The enum has exactly these values: the next one is out of range. */
    assert_int_equal((int)STG_COMM, n - 1);
    const stg_status bad[] = {(stg_status)n, (stg_status)-1, (stg_status)1000};
    for (int i = 0; i < 3; i++) {
        assert_string_equal(stg_status_name(bad[i]), "STG_UNKNOWN");
        assert_non_null(stg_status_message(bad[i]));
        assert_true(strlen(stg_status_message(bad[i])) > 0);
    }
}

/* ---- a fresh graph --------------------------------------------------------- */

static void test_new_graph_is_ok(void **state)
{
    (void)state;
    stg_graph *g = stg_graph_new();
    assert_non_null(g);
    assert_int_equal(stg_graph_status(g), STG_OK);
    assert_string_equal(stg_graph_message(g), "");
    assert_false(stg_tensor_valid(g, (stg_tensor){0}));
    assert_int_equal(stg_tensor_ndim(g, (stg_tensor){0}), -1);
    stg_graph_free(g);
}

static void test_tensor_queries_on_invalid(void **state)
{
    (void)state;
    stg_graph *g = stg_graph_new();
    stg_tensor a = INPUT(g, 2, 3);
    int64_t dims[STG_MAX_DIMS];
    const stg_tensor bad[] = {BAD_ID, NEG_ID, {a.id + 1}, {INT32_MIN}};
    for (int i = 0; i < 4; i++) {
        assert_false(stg_tensor_valid(g, bad[i]));
        assert_int_equal(stg_tensor_ndim(g, bad[i]), -1);
        assert_int_equal(stg_tensor_shape(g, bad[i], dims), -1);
        assert_int_equal(stg_tensor_numel(g, bad[i]), 0);
    }
    /* Queries do not record errors. */
    assert_int_equal(stg_graph_status(g), STG_OK);
    /* NULL dims is allowed for the count. */
    assert_int_equal(stg_tensor_shape(g, a, NULL), 2);
    stg_graph_free(g);
}

/* ---- leaves ---------------------------------------------------------------- */

static void test_leaf_shapes(void **state)
{
    (void)state;
    stg_graph *g = stg_graph_new();
    const float data[6] = {1, 2, 3, 4, 5, 6};
    stg_tensor s = SCALAR_INPUT(g);
    stg_tensor v = stg_input(g, NULL, 1, D(5));
    stg_tensor p = stg_param(g, "w", 2, D(2, 3));
    stg_tensor c = stg_constant(g, 2, D(3, 2), data);
    stg_tensor c0 = stg_constant(g, 0, NULL, data);
    stg_tensor k = stg_scalar(g, 2.5f);
    stg_tensor big = stg_param(g, "big", 8, D(1, 2, 1, 2, 1, 2, 1, 2));
    EXPECT_SCALAR(g, s);
    EXPECT_SHAPE(g, v, 5);
    EXPECT_SHAPE(g, p, 2, 3);
    EXPECT_SHAPE(g, c, 3, 2);
    EXPECT_SCALAR(g, c0);
    EXPECT_SCALAR(g, k);
    EXPECT_SHAPE(g, big, 1, 2, 1, 2, 1, 2, 1, 2);
    assert_int_equal(stg_tensor_numel(g, s), 1);
    assert_int_equal(stg_tensor_numel(g, big), 16);
    /* Ids are dense, in creation order. */
    assert_int_equal(s.id, 0);
    assert_int_equal(big.id, 6);
    assert_false(stg_tensor_valid(g, (stg_tensor){7}));
    stg_graph_free(g);
}

static void test_leaf_ndim_negative(void **state)
{
    (void)state;
    stg_graph *g = stg_graph_new();
    stg_tensor t = stg_input(g, "x", -1, D(2));
    EXPECT_ERROR(g, t, STG_SHAPE, "input", "'x'", "-1 dims", "0 to 8");
    stg_graph_free(g);

    g = stg_graph_new();
    t = stg_param(g, "w", -3, NULL);
    EXPECT_ERROR(g, t, STG_SHAPE, "param", "'w'", "-3 dims", "0 to 8");
    stg_graph_free(g);

    g = stg_graph_new();
    const float data[1] = {0};
    t = stg_constant(g, -1, D(1), data);
    EXPECT_ERROR(g, t, STG_SHAPE, "constant", "-1 dims", "0 to 8");
    stg_graph_free(g);
}

static void test_leaf_ndim_too_many(void **state)
{
    (void)state;
    const int64_t nine[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    const float data[1] = {0};
    stg_graph *g = stg_graph_new();
    stg_tensor t = stg_input(g, "x", STG_MAX_DIMS + 1, nine);
    EXPECT_ERROR(g, t, STG_SHAPE, "input", "'x'", "9 dims", "0 to 8");
    stg_graph_free(g);

    g = stg_graph_new();
    t = stg_param(g, "w", 9, nine);
    EXPECT_ERROR(g, t, STG_SHAPE, "param", "'w'", "9 dims", "0 to 8");
    stg_graph_free(g);

    g = stg_graph_new();
    t = stg_constant(g, 9, nine, data);
    EXPECT_ERROR(g, t, STG_SHAPE, "constant", "9 dims", "0 to 8");
    stg_graph_free(g);
}

static void test_leaf_dim_zero_or_negative(void **state)
{
    (void)state;
    const float data[8] = {0};
    stg_graph *g = stg_graph_new();
    stg_tensor t = stg_input(g, "x", 2, D(2, 0));
    EXPECT_ERROR(g, t, STG_SHAPE, "input", "'x'", "dim 1 is 0", "at least 1");
    stg_graph_free(g);

    g = stg_graph_new();
    t = stg_param(g, "w", 1, D(-3));
    EXPECT_ERROR(g, t, STG_SHAPE, "param", "'w'", "dim 0 is -3", "at least 1");
    stg_graph_free(g);

    g = stg_graph_new();
    t = stg_constant(g, 3, D(2, 2, 0), data);
    EXPECT_ERROR(g, t, STG_SHAPE, "constant", "dim 2 is 0", "at least 1");
    stg_graph_free(g);

    /* Two negative dims whose product is positive are still rejected. */
    g = stg_graph_new();
    t = stg_input(g, "x", 2, D(-2, -3));
    EXPECT_ERROR(g, t, STG_SHAPE, "input", "dim 0 is -2");
    stg_graph_free(g);
}

static void test_leaf_too_large(void **state)
{
    (void)state;
    stg_graph *g = stg_graph_new();
    stg_tensor t = stg_input(g, "x", 2, D((int64_t)1 << 20, (int64_t)1 << 21));
    EXPECT_ERROR(g, t, STG_SHAPE, "input", "'x'", "2^40");
    stg_graph_free(g);

    g = stg_graph_new();
    t = stg_param(g, "w", 1, D((int64_t)1 << 41));
    EXPECT_ERROR(g, t, STG_SHAPE, "param", "'w'", "dim 0");
    stg_graph_free(g);
}

static void test_leaf_null_dims(void **state)
{
    (void)state;
    const float data[4] = {0};
    stg_graph *g = stg_graph_new();
    stg_tensor t = stg_input(g, "x", 2, NULL);
    EXPECT_ERROR(g, t, STG_INVALID, "input", "'x'", "dims is NULL", "2 dims");
    stg_graph_free(g);

    g = stg_graph_new();
    t = stg_param(g, "w", 1, NULL);
    EXPECT_ERROR(g, t, STG_INVALID, "param", "'w'", "dims is NULL", "1 dims");
    stg_graph_free(g);

    g = stg_graph_new();
    t = stg_constant(g, 3, NULL, data);
    EXPECT_ERROR(g, t, STG_INVALID, "constant", "dims is NULL", "3 dims");
    stg_graph_free(g);
}

static void test_constant_null_data(void **state)
{
    (void)state;
    stg_graph *g = stg_graph_new();
    stg_tensor t = stg_constant(g, 2, D(2, 2), NULL);
    EXPECT_ERROR(g, t, STG_INVALID, "constant", "data is NULL");
    stg_graph_free(g);

    g = stg_graph_new();
    t = stg_constant(g, 0, NULL, NULL);
    EXPECT_ERROR(g, t, STG_INVALID, "constant", "data is NULL");
    stg_graph_free(g);
}

/* ---- matmul / outer errors --------------------------------------------------- */

static void test_matmul_k_mismatch(void **state)
{
    (void)state;
    stg_graph *g = stg_graph_new();
    stg_tensor a = INPUT(g, 2, 3, 4), b = INPUT(g, 5, 6);
    stg_tensor c = stg_matmul(g, a, b);
    EXPECT_ERROR(g, c, STG_SHAPE, "matmul", "(2,3,4)", "(5,6)", "a's dim -1 (4) != b's dim -2 (5)");
    stg_graph_free(g);

    /* Same K in the wrong place: b's dim -1 equals a's dim -1, dim -2 does not. */
    g = stg_graph_new();
    a = INPUT(g, 3, 4);
    b = INPUT(g, 3, 4);
    c = stg_matmul(g, a, b);
    EXPECT_ERROR(g, c, STG_SHAPE, "matmul", "(3,4)", "a's dim -1 (4) != b's dim -2 (3)");
    stg_graph_free(g);
}

static void test_matmul_vector_vector_mismatch(void **state)
{
    (void)state;
    stg_graph *g = stg_graph_new();
    stg_tensor a = INPUT(g, 3), b = INPUT(g, 4);
    stg_tensor c = stg_matmul(g, a, b);
    EXPECT_ERROR(g, c, STG_SHAPE, "matmul", "(3,)", "(4,)", "a's dim -1 (3) != b's dim -1 (4)");
    stg_graph_free(g);
}

static void test_matmul_matrix_vector_mismatch(void **state)
{
    (void)state;
    stg_graph *g = stg_graph_new();
    stg_tensor a = INPUT(g, 2, 3), b = INPUT(g, 4);
    stg_tensor c = stg_matmul(g, a, b);
    EXPECT_ERROR(g, c, STG_SHAPE, "matmul", "(2,3)", "(4,)", "a's dim -1 (3) != b's dim -1 (4)");
    stg_graph_free(g);

    /* Batched matrix times vector. */
    g = stg_graph_new();
    a = INPUT(g, 5, 2, 3);
    b = INPUT(g, 2);
    c = stg_matmul(g, a, b);
    EXPECT_ERROR(g, c, STG_SHAPE, "matmul", "(5,2,3)", "(2,)", "a's dim -1 (3) != b's dim -1 (2)");
    stg_graph_free(g);
}

static void test_matmul_vector_matrix_mismatch(void **state)
{
    (void)state;
    stg_graph *g = stg_graph_new();
    stg_tensor a = INPUT(g, 3), b = INPUT(g, 4, 3);
    stg_tensor c = stg_matmul(g, a, b);
    EXPECT_ERROR(g, c, STG_SHAPE, "matmul", "(3,)", "(4,3)", "a's dim -1 (3) != b's dim -2 (4)");
    stg_graph_free(g);

    g = stg_graph_new();
    a = INPUT(g, 3);
    b = INPUT(g, 7, 4, 3);
    c = stg_matmul(g, a, b);
    EXPECT_ERROR(g, c, STG_SHAPE, "matmul", "(3,)", "(7,4,3)", "a's dim -1 (3) != b's dim -2 (4)");
    stg_graph_free(g);
}

static void test_matmul_batch_mismatch(void **state)
{
    (void)state;
    stg_graph *g = stg_graph_new();
    stg_tensor a = INPUT(g, 2, 3, 4), b = INPUT(g, 5, 4, 6);
    stg_tensor c = stg_matmul(g, a, b);
    EXPECT_ERROR(g, c, STG_SHAPE, "matmul", "(2,3,4)", "(5,4,6)", "batch dims do not broadcast",
                 "dim -3 is 2 in a and 5 in b");
    stg_graph_free(g);

    /* The innermost batch dim matches; the next one does not. */
    g = stg_graph_new();
    a = INPUT(g, 7, 2, 3, 4);
    b = INPUT(g, 3, 2, 4, 5);
    c = stg_matmul(g, a, b);
    EXPECT_ERROR(g, c, STG_SHAPE, "matmul", "(7,2,3,4)", "(3,2,4,5)", "batch dims do not broadcast",
                 "dim -4 is 7 in a and 3 in b");
    stg_graph_free(g);

    /* Different batch ranks: a's batch (2,3) against b's batch (4). */
    g = stg_graph_new();
    a = INPUT(g, 2, 3, 5, 6);
    b = INPUT(g, 4, 6, 2);
    c = stg_matmul(g, a, b);
    EXPECT_ERROR(g, c, STG_SHAPE, "matmul", "(2,3,5,6)", "(4,6,2)", "batch dims do not broadcast",
                 "dim -3 is 3 in a and 4 in b");
    stg_graph_free(g);
}

static void test_matmul_scalar_operand(void **state)
{
    (void)state;
    stg_graph *g = stg_graph_new();
    stg_tensor s = SCALAR_INPUT(g), v = INPUT(g, 3);
    stg_tensor c = stg_matmul(g, s, v);
    EXPECT_ERROR(g, c, STG_SHAPE, "matmul", "()", "(3,)", "at least 1 dim");
    stg_graph_free(g);

    g = stg_graph_new();
    v = INPUT(g, 2, 3);
    s = stg_scalar(g, 1.0f);
    c = stg_matmul(g, v, s);
    EXPECT_ERROR(g, c, STG_SHAPE, "matmul", "(2,3)", "()", "at least 1 dim");
    stg_graph_free(g);

    g = stg_graph_new();
    s = SCALAR_INPUT(g);
    c = stg_matmul(g, s, s);
    EXPECT_ERROR(g, c, STG_SHAPE, "matmul", "a () and b ()", "at least 1 dim");
    stg_graph_free(g);
}

static void test_outer_non_vectors(void **state)
{
    (void)state;
    stg_graph *g = stg_graph_new();
    stg_tensor a = INPUT(g, 2, 3), b = INPUT(g, 3);
    stg_tensor c = stg_outer(g, a, b);
    EXPECT_ERROR(g, c, STG_SHAPE, "outer", "(2,3)", "(3,)", "vectors");
    stg_graph_free(g);

    g = stg_graph_new();
    a = INPUT(g, 3);
    b = SCALAR_INPUT(g);
    c = stg_outer(g, a, b);
    EXPECT_ERROR(g, c, STG_SHAPE, "outer", "(3,)", "()", "vectors");
    stg_graph_free(g);

    g = stg_graph_new();
    a = INPUT(g, 1, 3);
    b = INPUT(g, 1, 4);
    c = stg_outer(g, a, b);
    EXPECT_ERROR(g, c, STG_SHAPE, "outer", "(1,3)", "(1,4)", "vectors");
    stg_graph_free(g);
}

/* ---- elementwise errors ---------------------------------------------------- */

static void test_binary_no_broadcast(void **state)
{
    (void)state;
    for (int i = 0; i < NBINOPS; i++) {
        stg_graph *g = stg_graph_new();
        stg_tensor a = INPUT(g, 2, 3), b = INPUT(g, 4);
        stg_tensor c = binops[i].fn(g, a, b);
        EXPECT_ERROR(g, c, STG_SHAPE, binops[i].name, "(2,3)", "(4,)", "do not broadcast",
                     "dim -1 is 3 in a and 4 in b");
        stg_graph_free(g);

        /* The mismatch is in an outer dim; the message names that dim. */
        g = stg_graph_new();
        a = INPUT(g, 2, 3, 4);
        b = INPUT(g, 5, 1, 4);
        c = binops[i].fn(g, a, b);
        EXPECT_ERROR(g, c, STG_SHAPE, binops[i].name, "(2,3,4)", "(5,1,4)", "do not broadcast",
                     "dim -3 is 2 in a and 5 in b");
        stg_graph_free(g);

        /* b has more dims than a. */
        g = stg_graph_new();
        a = INPUT(g, 3);
        b = INPUT(g, 2, 2);
        c = binops[i].fn(g, a, b);
        EXPECT_ERROR(g, c, STG_SHAPE, binops[i].name, "(3,)", "(2,2)", "do not broadcast",
                     "dim -1 is 3 in a and 2 in b");
        stg_graph_free(g);
    }
}

/* ---- reduction errors --------------------------------------------------------- */

static void test_reduce_axis_out_of_range(void **state)
{
    (void)state;
    static const char *const names[2] = {"sum", "mean"};
    for (int m = 0; m < 2; m++) {
        stg_tensor (*fn)(stg_graph *, stg_tensor, int, const int *, int) = m ? stg_mean : stg_sum;
        stg_graph *g = stg_graph_new();
        stg_tensor a = INPUT(g, 2, 3, 4);
        stg_tensor r = fn(g, a, 1, (const int[]){3}, 0);
        EXPECT_ERROR(g, r, STG_SHAPE, names[m], "(2,3,4)", "axis 3 out of range [-3, 2]");
        stg_graph_free(g);

        g = stg_graph_new();
        a = INPUT(g, 2, 3, 4);
        r = fn(g, a, 2, (const int[]){0, -4}, 1);
        EXPECT_ERROR(g, r, STG_SHAPE, names[m], "(2,3,4)", "axis -4 out of range [-3, 2]");
        stg_graph_free(g);

        /* A scalar has no axis at all. */
        g = stg_graph_new();
        a = SCALAR_INPUT(g);
        r = fn(g, a, 1, (const int[]){0}, 0);
        EXPECT_ERROR(g, r, STG_SHAPE, names[m], "()");
        stg_graph_free(g);
    }
}

static void test_reduce_axis_repeated(void **state)
{
    (void)state;
    stg_graph *g = stg_graph_new();
    stg_tensor a = INPUT(g, 2, 3, 4);
    stg_tensor r = stg_sum(g, a, 2, (const int[]){1, 1}, 0);
    EXPECT_ERROR(g, r, STG_SHAPE, "sum", "(2,3,4)", "axis 1 given twice");
    stg_graph_free(g);

    /* -1 and 2 name the same axis of a 3-dim tensor. */
    g = stg_graph_new();
    a = INPUT(g, 2, 3, 4);
    r = stg_sum(g, a, 2, (const int[]){-1, 2}, 1);
    EXPECT_ERROR(g, r, STG_SHAPE, "sum", "(2,3,4)", "axis 2 given twice");
    stg_graph_free(g);

    g = stg_graph_new();
    a = INPUT(g, 2, 3, 4);
    r = stg_mean(g, a, 3, (const int[]){0, 2, -1}, 0);
    EXPECT_ERROR(g, r, STG_SHAPE, "mean", "(2,3,4)", "axis -1 given twice");
    stg_graph_free(g);

    g = stg_graph_new();
    a = INPUT(g, 2, 3, 4);
    r = stg_mean(g, a, 2, (const int[]){-3, 0}, 0);
    EXPECT_ERROR(g, r, STG_SHAPE, "mean", "(2,3,4)", "axis 0 given twice");
    stg_graph_free(g);
}

static void test_reduce_too_many_axes(void **state)
{
    (void)state;
    stg_graph *g = stg_graph_new();
    stg_tensor a = INPUT(g, 2, 3, 4);
    stg_tensor r = stg_sum(g, a, 4, (const int[]){0, 1, 2, 0}, 0);
    EXPECT_ERROR(g, r, STG_SHAPE, "sum", "(2,3,4)", "4 axes", "need 0 to 3");
    stg_graph_free(g);

    g = stg_graph_new();
    a = INPUT(g, 2, 3);
    r = stg_mean(g, a, -1, (const int[]){0}, 0);
    EXPECT_ERROR(g, r, STG_SHAPE, "mean", "(2,3)", "-1 axes", "need 0 to 2");
    stg_graph_free(g);

    /* naxes > 0 with a NULL axes array. */
    g = stg_graph_new();
    a = INPUT(g, 2, 3);
    r = stg_sum(g, a, 1, NULL, 0);
    EXPECT_ERROR(g, r, STG_INVALID, "sum", "(2,3)", "axes is NULL");
    stg_graph_free(g);

    g = stg_graph_new();
    a = SCALAR_INPUT(g);
    r = stg_sum(g, a, 1, (const int[]){0}, 0);
    EXPECT_ERROR(g, r, STG_SHAPE, "sum", "()", "need 0 to 0");
    stg_graph_free(g);
}

/* ---- view errors ---------------------------------------------------------------- */

/* embedding and layer_norm: shapes, refusals naming what was expected, and
 * an index out of range failing the step with the parameters unchanged */
static void test_embedding_and_layer_norm(void **state)
{
    (void)state;
    stg_graph *g = stg_graph_new();
    stg_tensor w = stg_param(g, "w", 2, (int64_t[]){10, 4});
    stg_tensor idx = stg_input_i32(g, "idx", 2, (int64_t[]){3, 5});
    EXPECT_SHAPE(g, stg_embedding(g, w, idx, -1), 3, 5, 4);
    stg_tensor x = stg_input(g, "x", 3, (int64_t[]){2, 3, 4});
    stg_tensor lw = stg_param(g, "lw", 2, (int64_t[]){3, 4});
    EXPECT_SHAPE(g, stg_layer_norm(g, x, 2, lw, NEG_ID, 1e-5f), 2, 3, 4);
    EXPECT_ERROR(g, stg_embedding(g, x, idx, -1), STG_SHAPE, "embedding", "weight (2,3,4)",
                 "(num_embeddings, dim)");
    stg_graph_free(g);
    g = stg_graph_new();
    w = stg_param(g, "w", 2, (int64_t[]){10, 4});
    idx = stg_input_i32(g, "idx", 1, (int64_t[]){3});
    EXPECT_ERROR(g, stg_embedding(g, w, idx, 10), STG_INVALID, "embedding", "padding_idx 10",
                 "0 <= padding_idx < 10");
    stg_graph_free(g);
    g = stg_graph_new();
    w = stg_param(g, "w", 2, (int64_t[]){10, 4});
    EXPECT_ERROR(g, stg_embedding(g, w, w, -1), STG_INVALID, "embedding");
    stg_graph_free(g);
    g = stg_graph_new();
    x = stg_input(g, "x", 3, (int64_t[]){2, 3, 4});
    lw = stg_param(g, "lw", 1, (int64_t[]){3});
    EXPECT_ERROR(g, stg_layer_norm(g, x, 1, lw, NEG_ID, 1e-5f), STG_SHAPE, "layer_norm",
                 "x (2,3,4)", "last 1 axes (4,)", "weight is (3,)");
    stg_graph_free(g);
    g = stg_graph_new();
    x = stg_input(g, "x", 2, (int64_t[]){2, 3});
    EXPECT_ERROR(g, stg_layer_norm(g, x, 3, NEG_ID, NEG_ID, 1e-5f), STG_SHAPE, "naxes 3",
                 "1 to 2");
    stg_graph_free(g);
    g = stg_graph_new();
    x = stg_input(g, "x", 2, (int64_t[]){2, 3});
    EXPECT_ERROR(g, stg_layer_norm(g, x, 1, NEG_ID, NEG_ID, 0.0f), STG_INVALID, "eps = 0");
    stg_graph_free(g);

    /* an index out of range: STG_INDEX, the message, nothing updated */
    g = stg_graph_new();
    w = stg_param(g, "w", 2, (int64_t[]){5, 3});
    idx = stg_input_i32(g, "idx", 1, (int64_t[]){4});
    stg_tensor loss = stg_sum(g, stg_embedding(g, w, idx, -1), 0, NULL, 0);
    stg_plan *p = NULL;
    assert_int_equal(stg_plan_create(g, loss, NULL, &p), STG_OK);
    float *wv = stg_plan_data(p, w), before[15];
    for (int i = 0; i < 15; i++)
        wv[i] = (float)i;
    memcpy(before, wv, sizeof before);
    int32_t bad[4] = {0, 4, 5, 1};
    assert_int_equal(stg_plan_set_i32(p, idx, bad, 4), STG_OK);
    assert_int_equal(stg_plan_step(p), STG_INDEX);
    assert_non_null(strstr(stg_plan_message(p), "embedding: index 5 at position 2"));
    assert_memory_equal(before, wv, sizeof before);
    stg_plan_free(p);
    stg_graph_free(g);
}

/* Recurrent layers: shapes of the output and states, PyTorch's parameter
 * names and shapes, and each misuse refused with what was expected. */
static void test_rnn_shapes(void **state)
{
    (void)state;
    stg_graph *g = stg_graph_new();
    stg_rnn r = {.mode = STG_LSTM, .input_size = 5, .hidden_size = 7, .num_layers = 2,
                 .batch_first = 1};
    assert_int_equal(stg_rnn_params(g, &r, "lstm"), STG_OK);
    int64_t d[3];
    assert_int_equal(stg_tensor_shape(g, r.weight_ih[0], d), 2);
    assert_true(d[0] == 28 && d[1] == 5);
    assert_int_equal(stg_tensor_shape(g, r.weight_hh[1], d), 2);
    assert_true(d[0] == 28 && d[1] == 7);
    stg_tensor x = stg_input(g, "x", 3, (int64_t[]){4, 9, 5}); /* N 4, T 9 */
    stg_tensor hn, cn;
    EXPECT_SHAPE(g, stg_rnn_apply(g, &r, x, NEG_ID, NEG_ID, &hn, &cn), 4, 9, 7);
    EXPECT_SHAPE(g, hn, 2, 4, 7);
    EXPECT_SHAPE(g, cn, 2, 4, 7);
    stg_tensor h0 = stg_input(g, "h0", 3, (int64_t[]){1, 4, 7});
    EXPECT_ERROR(g, stg_rnn_apply(g, &r, x, h0, NEG_ID, NULL, NULL), STG_SHAPE, "lstm",
                 "h0 is (1,4,7)", "expected (2,4,7)");
    stg_graph_free(g);

    g = stg_graph_new();
    r = (stg_rnn){.mode = STG_GRU, .input_size = 5, .hidden_size = 7};
    assert_int_equal(stg_rnn_params(g, &r, NULL), STG_OK);
    x = stg_input(g, "x", 3, (int64_t[]){9, 4, 6});
    EXPECT_ERROR(g, stg_rnn_apply(g, &r, x, NEG_ID, NEG_ID, NULL, NULL), STG_SHAPE, "gru",
                 "x (9,4,6)", "(T, N, input_size 5)");
    stg_graph_free(g);
    g = stg_graph_new();
    assert_int_equal(stg_rnn_params(g, &r, NULL), STG_OK);
    x = stg_input(g, "x", 3, (int64_t[]){9, 4, 5});
    stg_tensor c0 = stg_input(g, "c0", 3, (int64_t[]){1, 4, 7});
    EXPECT_ERROR(g, stg_rnn_apply(g, &r, x, NEG_ID, c0, NULL, NULL), STG_INVALID, "gru",
                 "c0 is for an LSTM only");
    stg_graph_free(g);
    g = stg_graph_new();
    assert_int_equal(stg_rnn_params(g, &r, NULL), STG_OK);
    r.weight_hh[0] = stg_param(g, "w", 2, (int64_t[]){21, 6});
    x = stg_input(g, "x", 3, (int64_t[]){9, 4, 5});
    EXPECT_ERROR(g, stg_rnn_apply(g, &r, x, NEG_ID, NEG_ID, NULL, NULL), STG_SHAPE, "gru",
                 "weight_hh_l0 is (21,6)", "expected (21,7)");
    stg_graph_free(g);
    g = stg_graph_new();
    r = (stg_rnn){.mode = STG_RNN_TANH, .input_size = 5, .hidden_size = 7, .num_layers = 9};
    assert_int_equal(stg_rnn_params(g, &r, NULL), STG_INVALID);
    assert_non_null(strstr(stg_graph_message(g), "num_layers 9"));
    stg_graph_free(g);
    g = stg_graph_new();
    r = (stg_rnn){.mode = (stg_rnn_mode)7, .input_size = 5, .hidden_size = 7};
    assert_int_equal(stg_rnn_params(g, &r, NULL), STG_INVALID);
    assert_non_null(strstr(stg_graph_message(g), "unknown mode 7"));
    stg_graph_free(g);
}

/* torch.flatten's shapes, and a start after the end refused */
static void test_flatten(void **state)
{
    (void)state;
    stg_graph *g = stg_graph_new();
    stg_tensor x = stg_input(g, "x", 4, (int64_t[]){2, 3, 4, 5});
    EXPECT_SHAPE(g, stg_flatten(g, x, 1, -1), 2, 60);
    EXPECT_SHAPE(g, stg_flatten(g, x, 1, 2), 2, 12, 5);
    EXPECT_SHAPE(g, stg_flatten(g, x, -3, -2), 2, 12, 5);
    EXPECT_SHAPE(g, stg_flatten(g, x, 0, -1), 120);
    EXPECT_SHAPE(g, stg_flatten(g, x, 2, 2), 2, 3, 4, 5);
    EXPECT_SHAPE(g, stg_flatten(g, stg_scalar(g, 1.0f), 0, -1), 1);
    EXPECT_ERROR(g, stg_flatten(g, x, 3, 1), STG_SHAPE, "flatten", "a (2,3,4,5)", "start 3",
                 "end 1");
    stg_graph_free(g);
    g = stg_graph_new();
    x = stg_input(g, "x", 2, (int64_t[]){2, 3});
    EXPECT_ERROR(g, stg_flatten(g, x, 0, 2), STG_SHAPE, "flatten", "end 2");
    stg_graph_free(g);
}

static void test_reshape_count_mismatch(void **state)
{
    (void)state;
    stg_graph *g = stg_graph_new();
    stg_tensor a = INPUT(g, 2, 3);
    stg_tensor r = stg_reshape(g, a, 2, D(4, 2));
    EXPECT_ERROR(g, r, STG_SHAPE, "reshape", "(2,3)", "(4,2)", "6 elements", "has 8");
    stg_graph_free(g);

    g = stg_graph_new();
    a = INPUT(g, 2, 3);
    r = stg_reshape(g, a, 0, NULL);
    EXPECT_ERROR(g, r, STG_SHAPE, "reshape", "(2,3)", "()", "6 elements", "has 1");
    stg_graph_free(g);

    g = stg_graph_new();
    a = INPUT(g, 7);
    r = stg_reshape(g, a, 1, D(8));
    EXPECT_ERROR(g, r, STG_SHAPE, "reshape", "(7,)", "(8,)", "7 elements", "has 8");
    stg_graph_free(g);
}

static void test_reshape_bad_dim(void **state)
{
    (void)state;
    stg_graph *g = stg_graph_new();
    stg_tensor a = INPUT(g, 2, 3);
    stg_tensor r = stg_reshape(g, a, 2, D(6, 0));
    EXPECT_ERROR(g, r, STG_SHAPE, "reshape", "(2,3)", "target: dim 1 is 0", "at least 1");
    stg_graph_free(g);

    /* Negative dims whose product equals the element count: still wrong
     * (and there is no -1 wildcard). */
    g = stg_graph_new();
    a = INPUT(g, 2, 3);
    r = stg_reshape(g, a, 2, D(-2, -3));
    EXPECT_ERROR(g, r, STG_SHAPE, "reshape", "(2,3)", "target: dim 0 is -2");
    stg_graph_free(g);

    g = stg_graph_new();
    a = INPUT(g, 2, 3);
    r = stg_reshape(g, a, 2, D(-1, 6));
    EXPECT_ERROR(g, r, STG_SHAPE, "reshape", "(2,3)", "target: dim 0 is -1");
    stg_graph_free(g);
}

static void test_reshape_bad_ndim(void **state)
{
    (void)state;
    stg_graph *g = stg_graph_new();
    stg_tensor a = INPUT(g, 2, 3);
    stg_tensor r = stg_reshape(g, a, 9, D(1, 1, 1, 1, 1, 1, 1, 2, 3));
    EXPECT_ERROR(g, r, STG_SHAPE, "reshape", "(2,3)", "9 dims", "0 to 8");
    stg_graph_free(g);

    g = stg_graph_new();
    a = INPUT(g, 2, 3);
    r = stg_reshape(g, a, -1, D(6));
    EXPECT_ERROR(g, r, STG_SHAPE, "reshape", "(2,3)", "-1 dims", "0 to 8");
    stg_graph_free(g);

    g = stg_graph_new();
    a = INPUT(g, 2, 3);
    r = stg_reshape(g, a, 2, NULL);
    EXPECT_ERROR(g, r, STG_INVALID, "reshape", "(2,3)", "dims is NULL");
    stg_graph_free(g);

    /* dims whose product overflows int64 must not wrap around to a match */
    g = stg_graph_new();
    a = INPUT(g, 4);
    r = stg_reshape(g, a, 2, D(((int64_t)1 << 62) + 1, 4));
    EXPECT_ERROR(g, r, STG_SHAPE, "reshape", "(4,)", "2^40 elements");
    stg_graph_free(g);
}

static void test_transpose_bad_perm(void **state)
{
    (void)state;
    stg_graph *g = stg_graph_new();
    stg_tensor a = INPUT(g, 2, 3, 4);
    stg_tensor r = stg_transpose(g, a, (const int[]){0, 1, 3});
    EXPECT_ERROR(g, r, STG_SHAPE, "transpose", "(2,3,4)", "perm[2] = 3", "each of 0..2 once");
    stg_graph_free(g);

    g = stg_graph_new();
    a = INPUT(g, 2, 3, 4);
    r = stg_transpose(g, a, (const int[]){0, -1, 2});
    EXPECT_ERROR(g, r, STG_SHAPE, "transpose", "(2,3,4)", "perm[1] = -1", "each of 0..2 once");
    stg_graph_free(g);

    g = stg_graph_new();
    a = INPUT(g, 2, 3, 4);
    r = stg_transpose(g, a, (const int[]){1, 1, 0});
    EXPECT_ERROR(g, r, STG_SHAPE, "transpose", "(2,3,4)", "perm[1] = 1", "each of 0..2 once");
    stg_graph_free(g);

    g = stg_graph_new();
    a = INPUT(g, 2, 3, 4);
    r = stg_transpose(g, a, (const int[]){2, 0, 2});
    EXPECT_ERROR(g, r, STG_SHAPE, "transpose", "(2,3,4)", "perm[2] = 2");
    stg_graph_free(g);

    g = stg_graph_new();
    a = INPUT(g, 2, 3);
    r = stg_transpose(g, a, NULL);
    EXPECT_ERROR(g, r, STG_INVALID, "transpose", "perm is NULL");
    stg_graph_free(g);
}

static void test_swapaxes_out_of_range(void **state)
{
    (void)state;
    stg_graph *g = stg_graph_new();
    stg_tensor a = INPUT(g, 2, 3, 4);
    stg_tensor r = stg_swapaxes(g, a, 0, 3);
    EXPECT_ERROR(g, r, STG_SHAPE, "swapaxes", "(2,3,4)", "axes 0 and 3", "[-3, 2]");
    stg_graph_free(g);

    g = stg_graph_new();
    a = INPUT(g, 2, 3, 4);
    r = stg_swapaxes(g, a, -4, 1);
    EXPECT_ERROR(g, r, STG_SHAPE, "swapaxes", "(2,3,4)", "axes -4 and 1", "[-3, 2]");
    stg_graph_free(g);

    g = stg_graph_new();
    a = SCALAR_INPUT(g);
    r = stg_swapaxes(g, a, 0, 0);
    EXPECT_ERROR(g, r, STG_SHAPE, "swapaxes", "()", "axes 0 and 0");
    stg_graph_free(g);
}

static void test_broadcast_to_incompatible(void **state)
{
    (void)state;
    stg_graph *g = stg_graph_new();
    stg_tensor a = INPUT(g, 3, 2);
    stg_tensor r = stg_broadcast_to(g, a, 2, D(3, 4));
    EXPECT_ERROR(g, r, STG_SHAPE, "broadcast_to", "(3,2)", "cannot broadcast to (3,4)");
    stg_graph_free(g);

    /* A size-2 dim cannot grow to 4 even though the other dim is 1. */
    g = stg_graph_new();
    a = INPUT(g, 2, 1);
    r = stg_broadcast_to(g, a, 3, D(5, 4, 1));
    EXPECT_ERROR(g, r, STG_SHAPE, "broadcast_to", "(2,1)", "cannot broadcast to (5,4,1)");
    stg_graph_free(g);

    /* A dim of the target smaller than a's (shrinking is not broadcasting). */
    g = stg_graph_new();
    a = INPUT(g, 4);
    r = stg_broadcast_to(g, a, 2, D(3, 1));
    EXPECT_ERROR(g, r, STG_SHAPE, "broadcast_to", "(4,)", "cannot broadcast to (3,1)");
    stg_graph_free(g);
}

static void test_broadcast_to_fewer_dims(void **state)
{
    (void)state;
    stg_graph *g = stg_graph_new();
    stg_tensor a = INPUT(g, 2, 3);
    stg_tensor r = stg_broadcast_to(g, a, 1, D(3));
    EXPECT_ERROR(g, r, STG_SHAPE, "broadcast_to", "(2,3)", "to 1 dims", "need at least 2");
    stg_graph_free(g);

    g = stg_graph_new();
    a = INPUT(g, 1);
    r = stg_broadcast_to(g, a, 0, NULL);
    EXPECT_ERROR(g, r, STG_SHAPE, "broadcast_to", "(1,)", "to 0 dims", "need at least 1");
    stg_graph_free(g);

    /* target dims are validated like any shape: >= 1, at most 2^40 elements */
    g = stg_graph_new();
    a = INPUT(g, 1);
    r = stg_broadcast_to(g, a, 1, D(0));
    EXPECT_ERROR(g, r, STG_SHAPE, "broadcast_to", "(1,)", "dim 0 is 0", "at least 1");
    stg_graph_free(g);

    g = stg_graph_new();
    a = INPUT(g, 1, 1);
    r = stg_broadcast_to(g, a, 2, D((int64_t)1 << 40, (int64_t)1 << 40));
    EXPECT_ERROR(g, r, STG_SHAPE, "broadcast_to", "(1,1)", "2^40 elements");
    stg_graph_free(g);

    g = stg_graph_new();
    a = INPUT(g, 2);
    r = stg_broadcast_to(g, a, 9, D(1, 1, 1, 1, 1, 1, 1, 1, 2));
    EXPECT_ERROR(g, r, STG_SHAPE, "broadcast_to", "(2,)", "9 dims", "0 to 8");
    stg_graph_free(g);
}

static void test_mse_shape_mismatch(void **state)
{
    (void)state;
    stg_graph *g = stg_graph_new();
    stg_tensor p = INPUT(g, 2, 3), t = INPUT(g, 3, 2);
    stg_tensor l = stg_mse_loss(g, p, t);
    EXPECT_ERROR(g, l, STG_SHAPE, "mse_loss", "pred (2,3)", "target (3,2)", "same shape");
    stg_graph_free(g);

    /* Shapes that broadcast are still an error: they must be equal. */
    g = stg_graph_new();
    p = INPUT(g, 3);
    t = INPUT(g, 1, 3);
    l = stg_mse_loss(g, p, t);
    EXPECT_ERROR(g, l, STG_SHAPE, "mse_loss", "pred (3,)", "target (1,3)", "same shape");
    stg_graph_free(g);

    g = stg_graph_new();
    p = INPUT(g, 4);
    t = SCALAR_INPUT(g);
    l = stg_mse_loss(g, p, t);
    EXPECT_ERROR(g, l, STG_SHAPE, "mse_loss", "pred (4,)", "target ()", "same shape");
    stg_graph_free(g);
}

/* ---- tensors that are not part of the graph ------------------------------------ */

enum { OP_MATMUL, OP_OUTER, OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_NEG, OP_SCALE, OP_SUM, OP_MEAN,
       OP_RESHAPE, OP_TRANSPOSE, OP_SWAPAXES, OP_BROADCAST_TO, OP_MSE, NOPS };

static const char *const op_names[NOPS] = {
    "matmul", "outer", "add", "sub", "mul", "div", "neg", "scale", "sum", "mean",
    "reshape", "transpose", "swapaxes", "broadcast_to", "mse_loss"};

static int op_is_binary(int op)
{
    return op <= OP_DIV || op == OP_MSE;
}

/* Calls builder 'op' with shapes that fit a (2,2) 'a' and (2,2) 'b'. */
static stg_tensor call_op(stg_graph *g, int op, stg_tensor a, stg_tensor b)
{
    switch (op) {
    case OP_MATMUL: return stg_matmul(g, a, b);
    case OP_OUTER: return stg_outer(g, a, b);
    case OP_ADD: return stg_add(g, a, b);
    case OP_SUB: return stg_sub(g, a, b);
    case OP_MUL: return stg_mul(g, a, b);
    case OP_DIV: return stg_div(g, a, b);
    case OP_NEG: return stg_neg(g, a);
    case OP_SCALE: return stg_scale(g, a, 2.0f);
    case OP_SUM: return stg_sum(g, a, 0, NULL, 0);
    case OP_MEAN: return stg_mean(g, a, 1, (const int[]){0}, 1);
    case OP_RESHAPE: return stg_reshape(g, a, 1, D(4));
    case OP_TRANSPOSE: return stg_transpose(g, a, (const int[]){1, 0});
    case OP_SWAPAXES: return stg_swapaxes(g, a, 0, 1);
    case OP_BROADCAST_TO: return stg_broadcast_to(g, a, 3, D(3, 2, 2));
    case OP_MSE: return stg_mse_loss(g, a, b);
    default: return NEG_ID;
    }
}

static void test_foreign_tensor_ids(void **state)
{
    (void)state;
    const stg_tensor bad[3] = {BAD_ID, NEG_ID, {2}};
    const char *const bad_str[3] = {"id 12345", "id -1", "id 2"};
    for (int op = 0; op < NOPS; op++) {
        for (int k = 0; k < 3; k++) {
            for (int pos = 0; pos < (op_is_binary(op) ? 2 : 1); pos++) {
                stg_graph *g = stg_graph_new();
                stg_tensor a = INPUT(g, 2, 2), b = INPUT(g, 2, 2); /* ids 0 and 1 */
                if (op == OP_OUTER) {                             /* outer needs vectors */
                    a = stg_reshape(g, a, 1, D(4));
                    b = stg_reshape(g, b, 1, D(4));
                }
                assert_int_equal(stg_graph_status(g), STG_OK);
                int32_t next = op == OP_OUTER ? 4 : 2;
                stg_tensor x = pos == 0 ? bad[k] : a, y = pos == 1 ? bad[k] : b;
                if (k == 2 && pos == 0) /* the first id this graph has not used */
                    x.id = next;
                else if (k == 2)
                    y.id = next;
                stg_tensor r = call_op(g, op, x, y);
                char opc[32];
                strcpy(opc, op_names[op]);
                strcat(opc, ":");
                const char *idstr = k == 2 && op == OP_OUTER ? "id 4" : bad_str[k];
                EXPECT_ERROR(g, r, STG_INVALID, opc, "not a tensor of this graph", idstr);
                /* Nothing was added. */
                assert_false(stg_tensor_valid(g, (stg_tensor){next}));
                stg_graph_free(g);
            }
        }
    }
}

static void test_foreign_tensor_from_other_graph(void **state)
{
    (void)state;
    stg_graph *g1 = stg_graph_new(), *g2 = stg_graph_new();
    stg_tensor a = INPUT(g1, 3);
    for (int i = 0; i < 5; i++)
        (void)INPUT(g2, 3);
    stg_tensor far = INPUT(g2, 3); /* id 5: no such node in g1 */
    assert_int_equal(far.id, 5);
    stg_tensor r = stg_add(g1, a, far);
    EXPECT_ERROR(g1, r, STG_INVALID, "add:", "id 5");
    assert_int_equal(stg_graph_status(g2), STG_OK);
    stg_graph_free(g1);
    stg_graph_free(g2);
}

/* ---- sticky errors ------------------------------------------------------------------ */

static void test_sticky_first_error(void **state)
{
    (void)state;
    stg_graph *g = stg_graph_new();
    stg_tensor a = INPUT(g, 2, 3, 4), b = INPUT(g, 5, 6), v = INPUT(g, 4);
    stg_tensor ok = stg_neg(g, a);
    EXPECT_SHAPE(g, ok, 2, 3, 4);
    int32_t next = ok.id + 1;

    stg_tensor bad = stg_matmul(g, a, b);
    EXPECT_ERROR(g, bad, STG_SHAPE, "matmul", "(2,3,4)", "(5,6)");
    char first[512];
    strncpy(first, stg_graph_message(g), sizeof first - 1);
    first[sizeof first - 1] = '\0';

    /* A second, different error changes nothing. */
    stg_tensor r = stg_add(g, a, b);
    assert_true(r.id < 0);
    r = stg_add(g, a, BAD_ID);
    assert_true(r.id < 0);
    assert_int_equal(stg_graph_status(g), STG_SHAPE);
    assert_string_equal(stg_graph_message(g), first);

    /* Calls that would be valid do nothing either. */
    const float one = 1.0f;
    const stg_tensor calls[] = {
        INPUT(g, 2),
        stg_param(g, "w", 2, D(4, 2)),
        stg_constant(g, 0, NULL, &one),
        stg_scalar(g, 3.0f),
        stg_matmul(g, a, v),
        stg_outer(g, v, v),
        stg_add(g, a, v),
        stg_sub(g, a, v),
        stg_mul(g, a, v),
        stg_div(g, a, v),
        stg_neg(g, a),
        stg_scale(g, a, 2.0f),
        stg_sum(g, a, 0, NULL, 0),
        stg_mean(g, a, 1, (const int[]){1}, 1),
        stg_reshape(g, a, 1, D(24)),
        stg_reshape(g, a, 3, D(2, 3, 4)), /* same shape: would return 'a' */
        stg_transpose(g, a, (const int[]){2, 1, 0}),
        stg_swapaxes(g, a, 0, 2),
        stg_broadcast_to(g, v, 2, D(3, 4)),
        stg_broadcast_to(g, a, 3, D(2, 3, 4)), /* same shape: would return 'a' */
        stg_mse_loss(g, a, a),
    };
    for (size_t i = 0; i < sizeof calls / sizeof calls[0]; i++) {
        if (calls[i].id >= 0)
            fail_msg("call %d returned id %d after an error", (int)i, (int)calls[i].id);
    }
    assert_false(stg_tensor_valid(g, (stg_tensor){next}));
    assert_int_equal(stg_graph_status(g), STG_SHAPE);
    assert_string_equal(stg_graph_message(g), first);

    /* require_grad and keep report the recorded error and change nothing. */
    assert_int_equal(stg_graph_require_grad(g, a), STG_SHAPE);
    assert_int_equal(stg_graph_keep(g, ok), STG_SHAPE);
    assert_int_not_equal(stg_graph_require_grad(g, BAD_ID), STG_OK);
    assert_string_equal(stg_graph_message(g), first);

    /* Tensors built before the error stay queryable. */
    int64_t dims[STG_MAX_DIMS];
    assert_true(stg_tensor_valid(g, ok));
    assert_int_equal(stg_tensor_shape(g, ok, dims), 3);
    assert_int_equal(dims[2], 4);
    assert_int_equal(stg_tensor_numel(g, b), 30);
    stg_graph_free(g);
}

static void test_sticky_invalid_then_shape(void **state)
{
    (void)state;
    stg_graph *g = stg_graph_new();
    stg_tensor a = INPUT(g, 2, 3), b = INPUT(g, 4);
    stg_tensor r = stg_neg(g, BAD_ID);
    EXPECT_ERROR(g, r, STG_INVALID, "neg:", "id 12345");
    char first[512];
    strncpy(first, stg_graph_message(g), sizeof first - 1);
    first[sizeof first - 1] = '\0';
    r = stg_add(g, a, b); /* a shape error, not recorded */
    assert_true(r.id < 0);
    r = stg_input(g, "y", -1, NULL); /* a leaf error, not recorded */
    assert_true(r.id < 0);
    assert_int_equal(stg_graph_status(g), STG_INVALID);
    assert_string_equal(stg_graph_message(g), first);
    assert_false(stg_tensor_valid(g, (stg_tensor){2}));
    stg_graph_free(g);
}

static void test_sticky_leaf_error(void **state)
{
    (void)state;
    stg_graph *g = stg_graph_new();
    stg_tensor a = INPUT(g, 2, 3);
    stg_tensor r = stg_param(g, "w", 2, D(3, 0));
    EXPECT_ERROR(g, r, STG_SHAPE, "param 'w'", "dim 1 is 0");
    r = stg_neg(g, a);
    assert_true(r.id < 0);
    r = stg_scalar(g, 1.0f);
    assert_true(r.id < 0);
    EXPECT_ERROR(g, r, STG_SHAPE, "param 'w'", "dim 1 is 0");
    assert_false(stg_tensor_valid(g, (stg_tensor){1}));
    stg_graph_free(g);
}

/* ---- NULL graph ------------------------------------------------------------------- */

static void test_null_graph(void **state)
{
    (void)state;
    const float one = 1.0f;
    const stg_tensor t0 = {0}, t1 = {1};
    int64_t dims[STG_MAX_DIMS];
    const stg_tensor calls[] = {
        stg_input(NULL, "x", 1, D(2)),
        stg_input(NULL, NULL, 0, NULL),
        stg_param(NULL, "w", 2, D(2, 2)),
        stg_constant(NULL, 0, NULL, &one),
        stg_scalar(NULL, 1.0f),
        stg_matmul(NULL, t0, t1),
        stg_outer(NULL, t0, t1),
        stg_add(NULL, t0, t1),
        stg_sub(NULL, t0, t1),
        stg_mul(NULL, t0, t1),
        stg_div(NULL, t0, t1),
        stg_neg(NULL, t0),
        stg_scale(NULL, t0, 2.0f),
        stg_sum(NULL, t0, 0, NULL, 0),
        stg_mean(NULL, t0, 1, (const int[]){0}, 0),
        stg_reshape(NULL, t0, 1, D(4)),
        stg_transpose(NULL, t0, (const int[]){1, 0}),
        stg_swapaxes(NULL, t0, 0, 1),
        stg_broadcast_to(NULL, t0, 2, D(2, 2)),
        stg_mse_loss(NULL, t0, t1),
    };
    for (size_t i = 0; i < sizeof calls / sizeof calls[0]; i++) {
        if (calls[i].id >= 0)
            fail_msg("call %d on a NULL graph returned id %d", (int)i, (int)calls[i].id);
    }
    assert_int_equal(stg_graph_status(NULL), STG_INVALID);
    assert_non_null(stg_graph_message(NULL));
    assert_false(stg_tensor_valid(NULL, t0));
    assert_int_equal(stg_tensor_ndim(NULL, t0), -1);
    assert_int_equal(stg_tensor_shape(NULL, t0, dims), -1);
    assert_int_equal(stg_tensor_numel(NULL, t0), 0);
    assert_int_equal(stg_graph_require_grad(NULL, t0), STG_INVALID);
    assert_int_equal(stg_graph_keep(NULL, t0), STG_INVALID);
    stg_graph_free(NULL);
}

/* ---- shapes of valid calls ------------------------------------------------------------ */

typedef struct shape_case {
    int na;
    int64_t a[STG_MAX_DIMS];
    int nb;
    int64_t b[STG_MAX_DIMS];
    int nc;
    int64_t c[STG_MAX_DIMS];
} shape_case;

static void test_matmul_shapes(void **state)
{
    (void)state;
    static const shape_case cases[] = {
        {1, {4}, 1, {4}, 0, {0}},                                   /* (K)·(K) -> () */
        {2, {3, 4}, 1, {4}, 1, {3}},                                /* (M,K)·(K) -> (M) */
        {1, {4}, 2, {4, 5}, 1, {5}},                                /* (K)·(K,N) -> (N) */
        {2, {3, 4}, 2, {4, 5}, 2, {3, 5}},                          /* (M,K)·(K,N) */
        {3, {2, 3, 4}, 1, {4}, 2, {2, 3}},                          /* (B,M,K)·(K) -> (B,M) */
        {1, {4}, 3, {2, 4, 5}, 2, {2, 5}},                          /* (K)·(B,K,N) -> (B,N) */
        {3, {2, 3, 4}, 3, {2, 4, 5}, 3, {2, 3, 5}},                 /* same batch */
        {3, {2, 3, 4}, 2, {4, 5}, 3, {2, 3, 5}},                    /* batch from a */
        {2, {3, 4}, 3, {2, 4, 5}, 3, {2, 3, 5}},                    /* batch from b */
        {4, {2, 1, 3, 4}, 3, {5, 4, 6}, 4, {2, 5, 3, 6}},           /* broadcast batch */
        {4, {1, 5, 3, 4}, 4, {2, 1, 4, 6}, 4, {2, 5, 3, 6}},        /* both broadcast */
        {2, {1, 4}, 2, {4, 1}, 2, {1, 1}},                          /* 1x1 result */
        {2, {3, 1}, 2, {1, 5}, 2, {3, 5}},                          /* K = 1 */
        {1, {1}, 1, {1}, 0, {0}},                                   /* K = 1 dot */
        {4, {2, 3, 5, 4}, 1, {4}, 3, {2, 3, 5}},                    /* (...,M,K)·(K) */
        {1, {4}, 4, {2, 3, 4, 5}, 3, {2, 3, 5}},                    /* (K)·(...,K,N) */
        {1, {4}, 8, {1, 1, 1, 1, 1, 2, 4, 5}, 7, {1, 1, 1, 1, 1, 2, 5}},
        {8, {2, 1, 1, 1, 1, 1, 3, 4}, 8, {1, 1, 1, 1, 1, 2, 4, 5}, 8, {2, 1, 1, 1, 1, 2, 3, 5}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const shape_case *c = &cases[i];
        stg_graph *g = stg_graph_new();
        stg_tensor a = stg_input(g, "a", c->na, c->a), b = stg_param(g, "b", c->nb, c->b);
        stg_tensor r = stg_matmul(g, a, b);
        if (r.id < 0)
            fail_msg("matmul case %d failed: %s", (int)i, stg_graph_message(g));
        int64_t got[STG_MAX_DIMS];
        int nd = stg_tensor_shape(g, r, got);
        if (nd != c->nc)
            fail_msg("matmul case %d: ndim %d, expected %d", (int)i, nd, c->nc);
        int64_t numel = 1;
        for (int k = 0; k < nd; k++) {
            if (got[k] != c->c[k])
                fail_msg("matmul case %d: dim %d is %lld, expected %lld", (int)i, k,
                         (long long)got[k], (long long)c->c[k]);
            numel *= c->c[k];
        }
        assert_int_equal(stg_tensor_ndim(g, r), c->nc);
        assert_int_equal(stg_tensor_numel(g, r), numel);
        assert_int_equal(stg_graph_status(g), STG_OK);
        stg_graph_free(g);
    }
}

static void test_matmul_shapes_of_views(void **state)
{
    (void)state;
    stg_graph *g = stg_graph_new();
    /* Transposed and broadcast operands (strided views) give the same shapes. */
    stg_tensor a = INPUT(g, 4, 3), b = INPUT(g, 5, 4), v = INPUT(g, 1, 4);
    stg_tensor at = stg_swapaxes(g, a, 0, 1);                   /* (3,4) */
    stg_tensor bt = stg_transpose(g, b, (const int[]){1, 0});   /* (4,5) */
    EXPECT_SHAPE(g, stg_matmul(g, at, bt), 3, 5);
    stg_tensor vb = stg_broadcast_to(g, v, 2, D(6, 4));          /* (6,4), stride 0 */
    EXPECT_SHAPE(g, stg_matmul(g, vb, bt), 6, 5);
    stg_tensor vr = stg_reshape(g, v, 1, D(4));
    EXPECT_SHAPE(g, stg_matmul(g, at, vr), 3);
    EXPECT_SHAPE(g, stg_matmul(g, vr, bt), 5);
    EXPECT_SCALAR(g, stg_matmul(g, vr, vr));
    stg_graph_free(g);
}

static void test_outer_shape(void **state)
{
    (void)state;
    stg_graph *g = stg_graph_new();
    stg_tensor a = INPUT(g, 3), b = INPUT(g, 4), one = INPUT(g, 1);
    EXPECT_SHAPE(g, stg_outer(g, a, b), 3, 4);
    EXPECT_SHAPE(g, stg_outer(g, b, a), 4, 3);
    EXPECT_SHAPE(g, stg_outer(g, one, one), 1, 1);
    assert_int_equal(stg_tensor_numel(g, stg_outer(g, a, b)), 12);
    stg_graph_free(g);
}

static void test_elementwise_shapes(void **state)
{
    (void)state;
    for (int i = 0; i < NBINOPS; i++) {
        stg_graph *g = stg_graph_new();
        stg_tensor a = INPUT(g, 2, 1, 4), b = INPUT(g, 3, 1), s = SCALAR_INPUT(g);
        stg_tensor c = INPUT(g, 5), d = INPUT(g, 3, 2), e = INPUT(g, 1);
        EXPECT_SHAPE(g, binops[i].fn(g, a, b), 2, 3, 4);
        EXPECT_SHAPE(g, binops[i].fn(g, b, a), 2, 3, 4);
        EXPECT_SHAPE(g, binops[i].fn(g, a, s), 2, 1, 4);
        EXPECT_SHAPE(g, binops[i].fn(g, s, d), 3, 2);
        EXPECT_SCALAR(g, binops[i].fn(g, s, s));
        EXPECT_SHAPE(g, binops[i].fn(g, c, c), 5);
        EXPECT_SHAPE(g, binops[i].fn(g, e, d), 3, 2);
        EXPECT_SHAPE(g, binops[i].fn(g, e, s), 1);
        stg_graph_free(g);
    }
    stg_graph *g = stg_graph_new();
    stg_tensor a = INPUT(g, 2, 3, 4), s = SCALAR_INPUT(g);
    EXPECT_SHAPE(g, stg_neg(g, a), 2, 3, 4);
    EXPECT_SHAPE(g, stg_scale(g, a, 0.5f), 2, 3, 4);
    EXPECT_SCALAR(g, stg_neg(g, s));
    EXPECT_SCALAR(g, stg_scale(g, s, -1.0f));
    stg_graph_free(g);
}

static void test_reduce_shapes(void **state)
{
    (void)state;
    stg_tensor (*const fns[2])(stg_graph *, stg_tensor, int, const int *, int) = {stg_sum,
                                                                                   stg_mean};
    for (int m = 0; m < 2; m++) {
        stg_graph *g = stg_graph_new();
        stg_tensor a = INPUT(g, 2, 3, 4), s = SCALAR_INPUT(g), v = INPUT(g, 5);
        EXPECT_SHAPE(g, fns[m](g, a, 1, (const int[]){1}, 0), 2, 4);
        EXPECT_SHAPE(g, fns[m](g, a, 1, (const int[]){1}, 1), 2, 1, 4);
        EXPECT_SHAPE(g, fns[m](g, a, 1, (const int[]){-1}, 0), 2, 3);
        EXPECT_SHAPE(g, fns[m](g, a, 2, (const int[]){0, -1}, 0), 3);
        EXPECT_SHAPE(g, fns[m](g, a, 2, (const int[]){-1, 0}, 1), 1, 3, 1);
        EXPECT_SCALAR(g, fns[m](g, a, 3, (const int[]){2, 0, 1}, 0));
        EXPECT_SHAPE(g, fns[m](g, a, 3, (const int[]){2, 0, 1}, 1), 1, 1, 1);
        EXPECT_SCALAR(g, fns[m](g, a, 0, NULL, 0));          /* all axes */
        EXPECT_SHAPE(g, fns[m](g, a, 0, NULL, 1), 1, 1, 1);  /* all axes, keepdims */
        EXPECT_SHAPE(g, fns[m](g, a, 0, NULL, 7), 1, 1, 1);  /* any nonzero keepdims */
        EXPECT_SCALAR(g, fns[m](g, s, 0, NULL, 0));
        EXPECT_SCALAR(g, fns[m](g, s, 0, NULL, 1));
        EXPECT_SCALAR(g, fns[m](g, v, 1, (const int[]){0}, 0));
        EXPECT_SHAPE(g, fns[m](g, v, 1, (const int[]){-1}, 1), 1);
        stg_graph_free(g);
    }
}

static void test_view_shapes(void **state)
{
    (void)state;
    stg_graph *g = stg_graph_new();
    stg_tensor a = INPUT(g, 2, 3, 4), one = INPUT(g, 1, 1), col = INPUT(g, 3, 1);
    stg_tensor s = SCALAR_INPUT(g);

    EXPECT_SHAPE(g, stg_reshape(g, a, 2, D(6, 4)), 6, 4);
    EXPECT_SHAPE(g, stg_reshape(g, a, 1, D(24)), 24);
    EXPECT_SHAPE(g, stg_reshape(g, a, 4, D(1, 4, 3, 2)), 1, 4, 3, 2);
    EXPECT_SCALAR(g, stg_reshape(g, one, 0, NULL));
    EXPECT_SHAPE(g, stg_reshape(g, s, 3, D(1, 1, 1)), 1, 1, 1);
    /* Reshaping to the same shape gives a view of its own (its gradient is
     * the gradient through it; test_run checks that). */
    stg_tensor same = stg_reshape(g, a, 3, D(2, 3, 4));
    assert_int_not_equal(same.id, a.id);
    EXPECT_SHAPE(g, same, 2, 3, 4);

    stg_tensor t = stg_transpose(g, a, (const int[]){2, 0, 1});
    EXPECT_SHAPE(g, t, 4, 2, 3);
    EXPECT_SHAPE(g, stg_transpose(g, a, (const int[]){0, 1, 2}), 2, 3, 4);
    EXPECT_SCALAR(g, stg_transpose(g, s, NULL)); /* 0 dims: perm may be NULL */
    /* Reshape of a non-contiguous view (a copy is made) still has the right shape. */
    EXPECT_SHAPE(g, stg_reshape(g, t, 2, D(8, 3)), 8, 3);
    EXPECT_SHAPE(g, stg_reshape(g, t, 1, D(24)), 24);

    EXPECT_SHAPE(g, stg_swapaxes(g, a, 0, 2), 4, 3, 2);
    EXPECT_SHAPE(g, stg_swapaxes(g, a, -1, 0), 4, 3, 2);
    EXPECT_SHAPE(g, stg_swapaxes(g, a, -2, -1), 2, 4, 3);
    EXPECT_SHAPE(g, stg_swapaxes(g, a, 1, 1), 2, 3, 4);
    EXPECT_SHAPE(g, stg_swapaxes(g, t, 0, 1), 2, 4, 3);

    EXPECT_SHAPE(g, stg_broadcast_to(g, col, 3, D(2, 3, 4)), 2, 3, 4);
    EXPECT_SHAPE(g, stg_broadcast_to(g, s, 2, D(2, 2)), 2, 2);
    EXPECT_SHAPE(g, stg_broadcast_to(g, one, 2, D(5, 1)), 5, 1);
    EXPECT_SHAPE(g, stg_broadcast_to(g, a, 4, D(5, 2, 3, 4)), 5, 2, 3, 4);
    EXPECT_SHAPE(g, stg_broadcast_to(g, t, 4, D(2, 4, 2, 3)), 2, 4, 2, 3);
    stg_tensor same_b = stg_broadcast_to(g, a, 3, D(2, 3, 4)); /* a view of its own */
    assert_int_not_equal(same_b.id, a.id);
    EXPECT_SHAPE(g, same_b, 2, 3, 4);
    assert_int_equal(stg_tensor_numel(g, stg_broadcast_to(g, col, 3, D(2, 3, 4))), 24);
    assert_int_equal(stg_graph_status(g), STG_OK);
    stg_graph_free(g);
}

static void test_mse_shape(void **state)
{
    (void)state;
    stg_graph *g = stg_graph_new();
    stg_tensor p = INPUT(g, 2, 3), t = INPUT(g, 2, 3), s = SCALAR_INPUT(g);
    EXPECT_SCALAR(g, stg_mse_loss(g, p, t));
    EXPECT_SCALAR(g, stg_mse_loss(g, p, p));
    EXPECT_SCALAR(g, stg_mse_loss(g, s, s));
    stg_graph_free(g);
}

/* Many nodes: the node array grows, ids stay dense and every node stays valid. */
static void test_graph_growth(void **state)
{
    (void)state;
    stg_graph *g = stg_graph_new();
    stg_tensor x = INPUT(g, 3, 4), b = INPUT(g, 4);
    stg_tensor cur = x;
    for (int i = 0; i < 300; i++) {
        cur = stg_add(g, cur, b);
        assert_int_equal(cur.id, i + 2);
    }
    EXPECT_SHAPE(g, cur, 3, 4);
    for (int32_t id = 0; id <= cur.id; id++)
        assert_true(stg_tensor_valid(g, (stg_tensor){id}));
    assert_false(stg_tensor_valid(g, (stg_tensor){cur.id + 1}));
    stg_graph_free(g);
}

/* Broadcasting can multiply element counts past any buffer: an error, not a
 * wrapped-around size. */
static void test_broadcast_result_too_large(void **state)
{
    (void)state;
    stg_graph *g = stg_graph_new();
    stg_tensor a = stg_broadcast_to(g, INPUT(g, 65536, 1, 1, 1), 4, D(65536, 65536, 1, 1));
    stg_tensor b = stg_broadcast_to(g, INPUT(g, 1, 1, 1, 32768), 4, D(1, 1, 32768, 32768));
    assert_int_equal(stg_graph_status(g), STG_OK);
    stg_tensor r = stg_add(g, a, b);
    EXPECT_ERROR(g, r, STG_SHAPE, "add", "(65536,65536,1,1)", "(1,1,32768,32768)", "2^40");
    stg_graph_free(g);

    g = stg_graph_new();
    r = stg_matmul(g, INPUT(g, 4096, 1, 1024, 2), INPUT(g, 1, 4096, 2, 1024));
    EXPECT_ERROR(g, r, STG_SHAPE, "matmul", "(4096,4096,1024,1024)", "2^40");
    stg_graph_free(g);
}

/* Builders that pass an existing node's shape to the node they append must
 * not read it after the node array moves (run under valgrind/ASan). */
static void test_graph_growth_self_shaped(void **state)
{
    (void)state;
    stg_graph *g = stg_graph_new();
    stg_tensor cur = INPUT(g, 3, 4);
    for (int i = 0; i < 300; i++) {
        cur = (i % 3 == 0) ? stg_neg(g, cur) : (i % 3 == 1) ? stg_scale(g, cur, 0.5f)
                                                              : stg_swapaxes(g, cur, 0, 1);
        assert_true(cur.id >= 0);
    }
    /* a reshape of a transposed view appends a copy node first */
    for (int i = 0; i < 100; i++)
        cur = stg_reshape(g, stg_swapaxes(g, cur, 0, 1), 2, D(4, 3));
    EXPECT_SHAPE(g, cur, 4, 3);
    assert_int_equal(stg_graph_status(g), STG_OK);
    stg_graph_free(g);
}

/* ---- require_grad / keep ------------------------------------------------------------ */

static void test_require_grad_keep_ok(void **state)
{
    (void)state;
    stg_graph *g = stg_graph_new();
    stg_tensor a = INPUT(g, 2), y = stg_neg(g, a);
    assert_int_equal(stg_graph_require_grad(g, a), STG_OK);
    assert_int_equal(stg_graph_require_grad(g, y), STG_OK);
    assert_int_equal(stg_graph_keep(g, y), STG_OK);
    assert_int_equal(stg_graph_keep(g, y), STG_OK); /* twice is fine */
    assert_int_equal(stg_graph_status(g), STG_OK);
    assert_string_equal(stg_graph_message(g), "");
    stg_graph_free(g);
}

/* A failed require_grad/keep returns a status and leaves the graph as it
 * was: no sticky error, later calls still work. */
static void test_require_grad_bad_tensor(void **state)
{
    (void)state;
    stg_graph *g = stg_graph_new();
    stg_tensor a = INPUT(g, 2);
    assert_int_equal(stg_graph_require_grad(g, BAD_ID), STG_INVALID);
    assert_int_equal(stg_graph_require_grad(g, NEG_ID), STG_INVALID);
    assert_int_equal(stg_graph_require_grad(g, (stg_tensor){a.id + 1}), STG_INVALID);
    assert_int_equal(stg_graph_status(g), STG_OK);
    assert_string_equal(stg_graph_message(g), "");
    assert_true(stg_neg(g, a).id >= 0);
    assert_int_equal(stg_graph_require_grad(g, a), STG_OK);
    stg_graph_free(g);
    assert_int_equal(stg_graph_require_grad(NULL, a), STG_INVALID);
}

static void test_keep_bad_tensor(void **state)
{
    (void)state;
    stg_graph *g = stg_graph_new();
    stg_tensor a = INPUT(g, 2);
    assert_int_equal(stg_graph_keep(g, NEG_ID), STG_INVALID);
    assert_int_equal(stg_graph_keep(g, BAD_ID), STG_INVALID);
    assert_int_equal(stg_graph_status(g), STG_OK);
    assert_true(stg_scale(g, a, 2.0f).id >= 0);
    assert_int_equal(stg_graph_keep(g, a), STG_OK);
    stg_graph_free(g);

    /* on a graph that already has an error, they report that error */
    g = stg_graph_new();
    a = INPUT(g, 2);
    (void)stg_matmul(g, a, INPUT(g, 3));
    assert_int_equal(stg_graph_keep(g, a), STG_SHAPE);
    assert_int_equal(stg_graph_require_grad(g, a), STG_SHAPE);
    stg_graph_free(g);
}

/* ---- plan creation errors ------------------------------------------------------------ */

/* A non-NULL value that stg_plan_create must overwrite with NULL on failure. */
static stg_plan *sentinel(void)
{
    static char dummy;
    return (stg_plan *)(void *)&dummy;
}

static void expect_plan_fail_at(const char *file, int line, const stg_graph *g, stg_tensor loss,
                                const stg_plan_options *opts, stg_status want,
                                const char *const *needles)
{
    stg_plan *p = sentinel();
    stg_status st = stg_plan_create(g, loss, opts, &p);
    const char *msg = stg_plan_last_message();
    if (st != want) {
        print_error("%s:%d: stg_plan_create returned %s, expected %s (message \"%s\")\n", file,
                    line, stg_status_name(st), stg_status_name(want), msg);
        if (st == STG_OK)
            stg_plan_free(p);
        _fail(file, line);
        return;
    }
    if (p != NULL) {
        print_error("%s:%d: *out not set to NULL on failure\n", file, line);
        _fail(file, line);
        return;
    }
    if (!msg) {
        print_error("%s:%d: stg_plan_last_message returned NULL\n", file, line);
        _fail(file, line);
        return;
    }
    for (; *needles; needles++) {
        if (!strstr(msg, *needles)) {
            print_error("%s:%d: plan message \"%s\" lacks \"%s\"\n", file, line, msg, *needles);
            _fail(file, line);
            return;
        }
    }
}
#define EXPECT_PLAN_FAIL(g, loss, opts, st, ...)                                             \
    expect_plan_fail_at(__FILE__, __LINE__, (g), (loss), (opts), (st),                     \
                        (const char *const[]){__VA_ARGS__, NULL})

/* x (2,3) · w (3,) -> (2,), mse against t (2,): a small valid graph. */
static stg_graph *small_graph(stg_tensor *loss, stg_tensor *pred)
{
    stg_graph *g = stg_graph_new();
    stg_tensor x = stg_input(g, "x", 2, D(2, 3)), w = stg_param(g, "w", 1, D(3));
    stg_tensor t = stg_input(g, "t", 1, D(2));
    *pred = stg_matmul(g, x, w);
    *loss = stg_mse_loss(g, *pred, t);
    return g;
}

static void test_plan_graph_with_error(void **state)
{
    (void)state;
    stg_tensor loss, pred;
    stg_graph *g = small_graph(&loss, &pred);
    stg_tensor bad = stg_add(g, pred, stg_input(g, "z", 1, D(3))); /* (2,) + (3,) */
    assert_true(bad.id < 0);
    assert_int_equal(stg_graph_status(g), STG_SHAPE);
    const char *gmsg = stg_graph_message(g);
    EXPECT_PLAN_FAIL(g, loss, NULL, STG_INVALID, gmsg, "error");
    stg_plan_options o;
    stg_plan_options_init(&o);
    EXPECT_PLAN_FAIL(g, loss, &o, STG_INVALID, gmsg);
    /* Even a forward-only plan is refused. */
    EXPECT_PLAN_FAIL(g, NEG_ID, &o, STG_INVALID, gmsg);
    /* The graph is unchanged. */
    assert_int_equal(stg_graph_status(g), STG_SHAPE);
    stg_graph_free(g);
}

static void test_plan_null_graph(void **state)
{
    (void)state;
    EXPECT_PLAN_FAIL(NULL, NEG_ID, NULL, STG_INVALID, "NULL");
    EXPECT_PLAN_FAIL(NULL, (stg_tensor){0}, NULL, STG_INVALID, "NULL");
}

static void test_plan_non_scalar_loss(void **state)
{
    (void)state;
    stg_tensor loss, pred;
    stg_graph *g = small_graph(&loss, &pred);
    EXPECT_PLAN_FAIL(g, pred, NULL, STG_INVALID, "scalar", "(2,)");
    EXPECT_PLAN_FAIL(g, (stg_tensor){0}, NULL, STG_INVALID, "scalar", "(2,3)");
    assert_int_equal(stg_graph_status(g), STG_OK);
    stg_graph_free(g);
}

static void test_plan_loss_out_of_range(void **state)
{
    (void)state;
    stg_tensor loss, pred;
    stg_graph *g = small_graph(&loss, &pred);
    EXPECT_PLAN_FAIL(g, BAD_ID, NULL, STG_INVALID, "loss", "id 12345");
    EXPECT_PLAN_FAIL(g, ((stg_tensor){loss.id + 1}), NULL, STG_INVALID, "loss");
    assert_int_equal(stg_graph_status(g), STG_OK);
    stg_graph_free(g);
}

static void test_plan_bad_options(void **state)
{
    (void)state;
    stg_tensor loss, pred;
    stg_graph *g = small_graph(&loss, &pred);
    stg_plan_options o;
    stg_plan_options_init(&o);
    o.threads = -1;
    EXPECT_PLAN_FAIL(g, loss, &o, STG_INVALID, "threads", "-1");
    o.threads = 1025;
    EXPECT_PLAN_FAIL(g, loss, &o, STG_INVALID, "threads", "1025");
    stg_plan_options_init(&o);
    o.optimizer = (stg_optimizer)7;
    EXPECT_PLAN_FAIL(g, loss, &o, STG_INVALID, "optimizer", "7");
    /* infinities are refused as stg_plan_set_lr refuses them */
    float *fields[] = {&o.lr, &o.momentum, &o.weight_decay, &o.clip_norm, &o.clip_value, &o.eps};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        stg_plan_options_init(&o);
        *fields[i] = INFINITY;
        EXPECT_PLAN_FAIL(g, loss, &o, STG_INVALID, "inf", "finite");
    }
    stg_graph_free(g);
}

/* An int32 tensor is no loss, even a scalar one. */
static void test_plan_int_loss(void **state)
{
    (void)state;
    stg_graph *g = stg_graph_new();
    stg_tensor y = stg_input_i32(g, "y", 0, NULL);
    EXPECT_PLAN_FAIL(g, y, NULL, STG_INVALID, "int32", "float scalar");
    stg_graph_free(g);
}

/* A step as large as int64_t allows takes one element, without overflow. */
static void test_slice_huge_step(void **state)
{
    (void)state;
    stg_graph *g = stg_graph_new();
    stg_tensor x = stg_input(g, "x", 1, D(4));
    stg_tensor s = stg_slice(g, x, 0, 0, 4, INT64_MAX);
    assert_int_equal(stg_graph_status(g), STG_OK);
    int64_t d[STG_MAX_DIMS];
    assert_int_equal(stg_tensor_shape(g, s, d), 1);
    assert_int_equal(d[0], 1);
    stg_tensor s2 = stg_slice(g, x, 0, 1, 4, INT64_MAX - 1);
    assert_int_equal(stg_tensor_shape(g, s2, d), 1);
    assert_int_equal(d[0], 1);
    stg_tensor s3 = stg_slice(g, x, 0, INT64_MIN, 4, 1);
    assert_int_equal(s3.id, -1);
    assert_int_equal(stg_graph_status(g), STG_SHAPE);
    stg_graph_free(g);
}

static void test_plan_null_out(void **state)
{
    (void)state;
    stg_tensor loss, pred;
    stg_graph *g = small_graph(&loss, &pred);
    assert_int_equal(stg_plan_create(g, loss, NULL, NULL), STG_INVALID);
    assert_non_null(strstr(stg_plan_last_message(), "out"));
    stg_graph_free(g);
}

/* A valid plan after failures: succeeds and clears the last message. */
static void test_plan_ok_after_failure(void **state)
{
    (void)state;
    stg_tensor loss, pred;
    stg_graph *g = small_graph(&loss, &pred);
    EXPECT_PLAN_FAIL(g, pred, NULL, STG_INVALID, "scalar");
    assert_true(strlen(stg_plan_last_message()) > 0);
    stg_plan_options o;
    stg_plan_options_init(&o);
    o.threads = 1;
    stg_plan *p = sentinel();
    assert_int_equal(stg_plan_create(g, loss, &o, &p), STG_OK);
    assert_non_null(p);
    assert_true(p != sentinel());
    assert_string_equal(stg_plan_last_message(), "");
    stg_plan_free(p);
    /* The graph may be freed before or after its plans; it is unchanged. */
    assert_int_equal(stg_graph_status(g), STG_OK);
    stg_graph_free(g);
}

/* A fresh graph with x of the given shape and w of the given shape. */
static stg_graph *conv_graph(int nx, const int64_t *xd, int nw, const int64_t *wd, stg_tensor *x,
                             stg_tensor *w)
{
    stg_graph *g = stg_graph_new();
    *x = stg_input(g, "x", nx, xd);
    *w = stg_param(g, "w", nw, wd);
    return g;
}

/* batch_norm's arguments, each refused with what was expected; batch
 * statistics of one value per channel refused by a training plan only. */
static void test_batch_norm_shapes(void **state)
{
    (void)state;
    int64_t c = 3, four = 4;
    stg_graph *g = stg_graph_new();
    stg_tensor x = stg_input(g, "x", 4, (int64_t[]){2, 3, 4, 5});
    stg_tensor w = stg_param(g, "w", 1, &c), rm = stg_stat(g, "rm", 1, &c, 0.0f);
    stg_tensor rv = stg_stat(g, "rv", 1, &c, 1.0f);
    EXPECT_SHAPE(g, stg_batch_norm(g, x, w, w, rm, rv, NULL), 2, 3, 4, 5);
    stg_graph_free(g);
    struct {
        int xnd;
        int64_t xd[4];
        int wrong; /* 0: x, 1: w's shape, 2: a param as running_var, 3: momentum, 4: same stat */
        stg_status st;
        const char *want[3];
    } bad[] = {
        {1, {3}, 0, STG_SHAPE, {"batch_norm", "x (3,)", "(N, C)"}},
        {3, {2, 3, 7}, 1, STG_SHAPE, {"x (2,3,7) has 3 channels", "weight is (4,)", "(3,)"}},
        {2, {2, 3}, 2, STG_INVALID, {"batch_norm", "running_var", "stg_stat"}},
        {2, {2, 3}, 3, STG_INVALID, {"batch_norm", "momentum = 2", "0 < momentum <= 1"}},
        {2, {2, 3}, 4, STG_INVALID, {"batch_norm", "the same tensor", NULL}},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        g = stg_graph_new();
        x = stg_input(g, "x", bad[i].xnd, bad[i].xd);
        w = stg_param(g, "w", 1, bad[i].wrong == 1 ? &four : &c);
        rm = stg_stat(g, "rm", 1, &c, 0.0f);
        rv = bad[i].wrong == 2 ? stg_param(g, "rv", 1, &c)
             : bad[i].wrong == 4 ? rm : stg_stat(g, "rv", 1, &c, 1.0f);
        stg_batch_norm_params p = {0, bad[i].wrong == 3 ? 2.0f : 0.0f};
        stg_tensor y = stg_batch_norm(g, x, w, (stg_tensor){-1}, rm, rv, &p);
        if (bad[i].want[2])
            EXPECT_ERROR(g, y, bad[i].st, bad[i].want[0], bad[i].want[1], bad[i].want[2]);
        else
            EXPECT_ERROR(g, y, bad[i].st, bad[i].want[0], bad[i].want[1]);
        stg_graph_free(g);
    }
    g = stg_graph_new();
    EXPECT_ERROR(g, stg_stat(g, "s", 1, &c, NAN), STG_INVALID, "stat 's'", "not finite");
    stg_graph_free(g);

    /* (1, C): fine for inference, refused by a training plan */
    g = stg_graph_new();
    x = stg_input(g, "x", 2, (int64_t[]){1, 3});
    rm = stg_stat(g, "rm", 1, &c, 0.0f);
    rv = stg_stat(g, "rv", 1, &c, 1.0f);
    stg_tensor y = stg_batch_norm(g, x, (stg_tensor){-1}, (stg_tensor){-1}, rm, rv, NULL);
    stg_graph_keep(g, y);
    stg_plan_options o;
    stg_plan_options_init(&o);
    o.inference = 1;
    stg_plan *p = NULL;
    assert_int_equal(stg_plan_create(g, (stg_tensor){-1}, &o, &p), STG_OK);
    stg_plan_free(p);
    stg_tensor loss = stg_sum(g, y, 0, NULL, 0);
    assert_int_equal(stg_plan_create(g, loss, NULL, &p), STG_SHAPE);
    assert_non_null(strstr(stg_plan_last_message(), "batch_norm: x has 1 value per channel"));
    stg_graph_free(g);
}

static void test_conv_and_pool_shapes(void **state)
{
    (void)state;
    stg_tensor x, w;
    /* results: PyTorch's output sizes */
    stg_graph *g = conv_graph(4, (int64_t[]){2, 4, 9, 8}, 4, (int64_t[]){6, 2, 3, 2}, &x, &w);
    stg_conv_params p = {{2, 1}, {1, 0}, {1, 2}, 2};
    EXPECT_SHAPE(g, stg_conv2d(g, x, w, NEG_ID, &p), 2, 6, 5, 6);
    stg_pool_params pp = {{3, 2}, {2, 1}, {1, 1}};
    EXPECT_SHAPE(g, stg_max_pool2d(g, x, &pp), 2, 4, 5, 9);
    EXPECT_SHAPE(g, stg_global_avg_pool(g, x), 2, 4, 1, 1);
    stg_graph_free(g);

    /* the kernel reaches past the padded input */
    g = conv_graph(4, (int64_t[]){1, 3, 4, 4}, 4, (int64_t[]){8, 3, 5, 5}, &x, &w);
    EXPECT_ERROR(g, stg_conv2d(g, x, w, NEG_ID, NULL), STG_SHAPE, "conv2d", "x (1,3,4,4)",
                 "reaches 5 along H", "padded input is 4");
    stg_graph_free(g);
    g = conv_graph(4, (int64_t[]){1, 3, 4, 4}, 4, (int64_t[]){8, 3, 3, 3}, &x, &w);
    stg_conv_params dil = {{1, 1}, {0, 0}, {1, 2}, 1};
    EXPECT_ERROR(g, stg_conv2d(g, x, w, NEG_ID, &dil), STG_SHAPE, "conv2d", "reaches 5 along W");
    stg_graph_free(g);
    /* channels and groups */
    g = conv_graph(4, (int64_t[]){1, 3, 4, 4}, 4, (int64_t[]){8, 2, 3, 3}, &x, &w);
    EXPECT_ERROR(g, stg_conv2d(g, x, w, NEG_ID, NULL), STG_SHAPE, "conv2d", "w (8,2,3,3)",
                 "groups 1", "channels / groups");
    stg_graph_free(g);
    g = conv_graph(4, (int64_t[]){1, 4, 4, 4}, 4, (int64_t[]){6, 1, 3, 3}, &x, &w);
    stg_conv_params four = {.groups = 4};
    EXPECT_ERROR(g, stg_conv2d(g, x, w, NEG_ID, &four), STG_SHAPE, "conv2d", "groups 4",
                 "must divide by groups");
    stg_graph_free(g);
    /* ranks, bias, negative values */
    g = conv_graph(3, (int64_t[]){1, 3, 4}, 4, (int64_t[]){8, 3, 3, 3}, &x, &w);
    EXPECT_ERROR(g, stg_conv2d(g, x, w, NEG_ID, NULL), STG_SHAPE, "conv2d", "x (1,3,4)",
                 "must both have 4 dims");
    stg_graph_free(g);
    g = conv_graph(4, (int64_t[]){1, 3, 4, 4}, 4, (int64_t[]){8, 3, 3, 3}, &x, &w);
    stg_tensor b = stg_param(g, "b", 1, (int64_t[]){7});
    EXPECT_ERROR(g, stg_conv2d(g, x, w, b, NULL), STG_SHAPE, "conv2d", "bias (7,)", "(8,)");
    stg_graph_free(g);
    g = conv_graph(4, (int64_t[]){1, 3, 4, 4}, 4, (int64_t[]){8, 3, 3, 3}, &x, &w);
    stg_conv_params neg = {.padding = {-1, 0}};
    EXPECT_ERROR(g, stg_conv2d(g, x, w, NEG_ID, &neg), STG_INVALID, "conv2d", "padding -1",
                 "along H");
    stg_graph_free(g);
    g = conv_graph(3, (int64_t[]){2, 3, 4}, 3, (int64_t[]){5, 3, 6}, &x, &w);
    EXPECT_ERROR(g, stg_conv1d(g, x, w, NEG_ID, NULL), STG_SHAPE, "conv1d", "x (2,3,4)",
                 "reaches 6 along L");
    stg_graph_free(g);
    /* pooling */
    g = conv_graph(4, (int64_t[]){1, 3, 4, 4}, 1, (int64_t[]){1}, &x, &w);
    EXPECT_ERROR(g, stg_max_pool2d(g, x, NULL), STG_INVALID, "max_pool2d", "NULL");
    stg_graph_free(g);
    g = conv_graph(4, (int64_t[]){1, 3, 4, 4}, 1, (int64_t[]){1}, &x, &w);
    stg_pool_params half = {{2, 2}, {0, 0}, {2, 0}};
    EXPECT_ERROR(g, stg_avg_pool2d(g, x, &half), STG_INVALID, "avg_pool2d", "padding 2",
                 "half the kernel 2");
    stg_graph_free(g);
    g = conv_graph(4, (int64_t[]){1, 3, 4, 4}, 1, (int64_t[]){1}, &x, &w);
    stg_pool_params big = {{5, 1}, {0, 0}, {0, 0}};
    EXPECT_ERROR(g, stg_max_pool2d(g, x, &big), STG_SHAPE, "max_pool2d", "reaches 5 along H");
    stg_graph_free(g);
    g = conv_graph(2, (int64_t[]){3, 4}, 1, (int64_t[]){1}, &x, &w);
    EXPECT_ERROR(g, stg_max_pool1d(g, x, &big), STG_SHAPE, "max_pool1d", "x (3,4)",
                 "must have 3 dims");
    stg_graph_free(g);
    g = conv_graph(2, (int64_t[]){3, 4}, 1, (int64_t[]){1}, &x, &w);
    EXPECT_ERROR(g, stg_global_avg_pool(g, x), STG_SHAPE, "global_avg_pool", "x (3,4)",
                 "at least 3 dims");
    stg_graph_free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_names),
        cmocka_unit_test(test_new_graph_is_ok),
        cmocka_unit_test(test_tensor_queries_on_invalid),
        cmocka_unit_test(test_leaf_shapes),
        cmocka_unit_test(test_leaf_ndim_negative),
        cmocka_unit_test(test_leaf_ndim_too_many),
        cmocka_unit_test(test_leaf_dim_zero_or_negative),
        cmocka_unit_test(test_leaf_too_large),
        cmocka_unit_test(test_leaf_null_dims),
        cmocka_unit_test(test_constant_null_data),
        cmocka_unit_test(test_matmul_k_mismatch),
        cmocka_unit_test(test_matmul_vector_vector_mismatch),
        cmocka_unit_test(test_matmul_matrix_vector_mismatch),
        cmocka_unit_test(test_matmul_vector_matrix_mismatch),
        cmocka_unit_test(test_matmul_batch_mismatch),
        cmocka_unit_test(test_matmul_scalar_operand),
        cmocka_unit_test(test_outer_non_vectors),
        cmocka_unit_test(test_binary_no_broadcast),
        cmocka_unit_test(test_reduce_axis_out_of_range),
        cmocka_unit_test(test_reduce_axis_repeated),
        cmocka_unit_test(test_reduce_too_many_axes),
        cmocka_unit_test(test_reshape_count_mismatch),
        cmocka_unit_test(test_reshape_bad_dim),
        cmocka_unit_test(test_reshape_bad_ndim),
        cmocka_unit_test(test_transpose_bad_perm),
        cmocka_unit_test(test_swapaxes_out_of_range),
        cmocka_unit_test(test_broadcast_to_incompatible),
        cmocka_unit_test(test_broadcast_to_fewer_dims),
        cmocka_unit_test(test_mse_shape_mismatch),
        cmocka_unit_test(test_foreign_tensor_ids),
        cmocka_unit_test(test_foreign_tensor_from_other_graph),
        cmocka_unit_test(test_sticky_first_error),
        cmocka_unit_test(test_sticky_invalid_then_shape),
        cmocka_unit_test(test_sticky_leaf_error),
        cmocka_unit_test(test_null_graph),
        cmocka_unit_test(test_matmul_shapes),
        cmocka_unit_test(test_matmul_shapes_of_views),
        cmocka_unit_test(test_outer_shape),
        cmocka_unit_test(test_elementwise_shapes),
        cmocka_unit_test(test_reduce_shapes),
        cmocka_unit_test(test_view_shapes),
        cmocka_unit_test(test_mse_shape),
        cmocka_unit_test(test_graph_growth),
        cmocka_unit_test(test_graph_growth_self_shaped),
        cmocka_unit_test(test_broadcast_result_too_large),
        cmocka_unit_test(test_require_grad_keep_ok),
        cmocka_unit_test(test_require_grad_bad_tensor),
        cmocka_unit_test(test_keep_bad_tensor),
        cmocka_unit_test(test_plan_graph_with_error),
        cmocka_unit_test(test_plan_null_graph),
        cmocka_unit_test(test_plan_non_scalar_loss),
        cmocka_unit_test(test_plan_loss_out_of_range),
        cmocka_unit_test(test_plan_bad_options),
        cmocka_unit_test(test_plan_int_loss),
        cmocka_unit_test(test_slice_huge_step),
        cmocka_unit_test(test_plan_null_out),
        cmocka_unit_test(test_plan_ok_after_failure),
        cmocka_unit_test(test_conv_and_pool_shapes),
        cmocka_unit_test(test_batch_norm_shapes),
        cmocka_unit_test(test_flatten),
        cmocka_unit_test(test_embedding_and_layer_norm),
        cmocka_unit_test(test_rnn_shapes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
