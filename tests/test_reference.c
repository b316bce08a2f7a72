/*
 * Values and gradients against PyTorch.  the reference files in tests/data are written by
 * tools/gen_reference.py from float32 inputs with float64 arithmetic; each
 * case builds loss = sum(op(inputs) * seed), so grad_i is the vector-Jacobian
 * product with a random seed.  Tolerance: |got - want| <= 2e-5 + 1e-4 |want|.
 * Every case runs at 1 and 2 threads (results must be bitwise equal), and
 * matmul cases run a second time with each matrix operand given as a
 * transposed view of column-major data.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "testutil.h"

#define ATOL 2e-5
#define RTOL 1e-4

static stg_tensor build_op(stg_graph *g, const tu_case *c, const stg_tensor *in)
{
    const char *op = c->op;
    const double *a = c->attr;
    static const struct {
        const char *name;
        stg_tensor (*fn)(stg_graph *, stg_tensor);
    } unary[] = {{"neg", stg_neg},         {"exp", stg_exp},   {"log", stg_log},
                 {"sqrt", stg_sqrt},       {"abs", stg_abs},   {"sin", stg_sin},
                 {"cos", stg_cos},         {"tanh", stg_tanh}, {"sigmoid", stg_sigmoid},
                 {"relu", stg_relu},       {"gelu", stg_gelu}, {"softplus", stg_softplus}};
    for (size_t i = 0; i < sizeof unary / sizeof unary[0]; i++)
        if (!strcmp(op, unary[i].name))
            return unary[i].fn(g, in[0]);
    if (!strcmp(op, "pow"))
        return stg_pow(g, in[0], (float)a[0]);
    if (!strcmp(op, "leaky_relu"))
        return stg_leaky_relu(g, in[0], (float)a[0]);
    if (!strcmp(op, "elu"))
        return stg_elu(g, in[0], (float)a[0]);
    if (!strcmp(op, "clamp"))
        return stg_clamp(g, in[0], (float)a[0], (float)a[1]);
    int ax[STG_MAX_DIMS];
    int64_t dims[STG_MAX_DIMS];
    if (!strcmp(op, "matmul"))
        return stg_matmul(g, in[0], in[1]);
    if (!strcmp(op, "outer"))
        return stg_outer(g, in[0], in[1]);
    if (!strcmp(op, "add"))
        return stg_add(g, in[0], in[1]);
    if (!strcmp(op, "sub"))
        return stg_sub(g, in[0], in[1]);
    if (!strcmp(op, "mul"))
        return stg_mul(g, in[0], in[1]);
    if (!strcmp(op, "div"))
        return stg_div(g, in[0], in[1]);
    if (!strcmp(op, "mse"))
        return stg_mse_loss(g, in[0], in[1]);
    if (!strcmp(op, "l1"))
        return stg_l1_loss(g, in[0], in[1]);
    if (!strcmp(op, "bce_with_logits"))
        return stg_bce_with_logits(g, in[0], in[1]);
    if (!strcmp(op, "softmax"))
        return stg_softmax(g, in[0], (int)a[0]);
    if (!strcmp(op, "log_softmax"))
        return stg_log_softmax(g, in[0], (int)a[0]);
    if (!strcmp(op, "slice"))
        return stg_slice(g, in[0], (int)a[0], (int64_t)a[1], (int64_t)a[2], (int64_t)a[3]);
    if (!strcmp(op, "flip"))
        return stg_flip(g, in[0], (int)a[0]);
    if (!strcmp(op, "pad")) {
        int64_t before[STG_MAX_DIMS], after[STG_MAX_DIMS];
        int nd = (int)a[0];
        for (int i = 0; i < nd; i++)
            before[i] = (int64_t)a[1 + i], after[i] = (int64_t)a[1 + nd + i];
        return stg_pad(g, in[0], before, after, (float)a[1 + 2 * nd]);
    }
    if (!strcmp(op, "concat"))
        return stg_concat(g, 2, in, (int)a[0]);
    if (!strcmp(op, "stack"))
        return stg_stack(g, 2, in, (int)a[0]);
    if (!strcmp(op, "gather"))
        return stg_gather(g, in[0], (int)a[0], in[1]);
    if (!strcmp(op, "cross_entropy"))
        return stg_softmax_cross_entropy(g, in[0], in[1], (stg_reduction)a[0]);
    if (!strcmp(op, "nll"))
        return stg_nll_loss(g, in[0], in[1], (stg_reduction)a[0]);
    static const struct {
        const char *name;
        stg_tensor (*fn)(stg_graph *, stg_tensor, int, const int *, int);
    } reductions[] = {{"sum", stg_sum}, {"mean", stg_mean}, {"max", stg_max}, {"min", stg_min},
                      {"var", stg_var}, {"logsumexp", stg_logsumexp}};
    for (size_t r = 0; r < sizeof reductions / sizeof reductions[0]; r++)
        if (!strcmp(op, reductions[r].name)) {
            for (int i = 0; i < a[1]; i++)
                ax[i] = (int)a[2 + i];
            return reductions[r].fn(g, in[0], (int)a[1], ax, (int)a[0]);
        }
    if (!strcmp(op, "norm")) {
        for (int i = 0; i < a[2]; i++)
            ax[i] = (int)a[3 + i];
        return stg_norm(g, in[0], (int)a[0], (int)a[2], ax, (int)a[1]);
    }
    if (!strcmp(op, "reshape")) {
        for (int i = 0; i < a[0]; i++)
            dims[i] = a[1 + i];
        return stg_reshape(g, in[0], (int)a[0], dims);
    }
    if (!strcmp(op, "transpose")) {
        for (int i = 0; i < a[0]; i++)
            ax[i] = (int)a[1 + i];
        return stg_transpose(g, in[0], ax);
    }
    if (!strcmp(op, "swapaxes"))
        return stg_swapaxes(g, in[0], (int)a[0], (int)a[1]);
    if (!strcmp(op, "conv2d")) {
        stg_conv_params p = {{(int64_t)a[0], (int64_t)a[1]}, {(int64_t)a[2], (int64_t)a[3]},
                             {(int64_t)a[4], (int64_t)a[5]}, (int64_t)a[6]};
        return stg_conv2d(g, in[0], in[1], a[7] ? in[2] : (stg_tensor){-1}, &p);
    }
    if (!strcmp(op, "conv1d")) {
        stg_conv_params p = {{(int64_t)a[0]}, {(int64_t)a[1]}, {(int64_t)a[2]}, (int64_t)a[3]};
        return stg_conv1d(g, in[0], in[1], a[4] ? in[2] : (stg_tensor){-1}, &p);
    }
    static const struct {
        const char *name;
        stg_tensor (*fn)(stg_graph *, stg_tensor, const stg_pool_params *);
        int dims;
    } pools[] = {{"max_pool2d", stg_max_pool2d, 2}, {"avg_pool2d", stg_avg_pool2d, 2},
                 {"max_pool1d", stg_max_pool1d, 1}, {"avg_pool1d", stg_avg_pool1d, 1}};
    for (size_t k = 0; k < sizeof pools / sizeof pools[0]; k++)
        if (!strcmp(op, pools[k].name)) {
            int n = pools[k].dims;
            stg_pool_params p = {0};
            for (int d = 0; d < n; d++) {
                p.kernel[d] = (int64_t)a[d];
                p.stride[d] = (int64_t)a[n + d];
                p.padding[d] = (int64_t)a[2 * n + d];
            }
            return pools[k].fn(g, in[0], &p);
        }
    if (!strcmp(op, "global_avg_pool"))
        return stg_global_avg_pool(g, in[0]);
    if (!strcmp(op, "embedding"))
        return stg_embedding(g, in[0], in[1], (int64_t)a[0]);
    if (!strcmp(op, "layer_norm")) { /* naxes, eps, has weight, has bias */
        stg_tensor w = a[2] ? in[1] : (stg_tensor){-1}, b = a[3] ? in[1 + (a[2] != 0)]
                                                                 : (stg_tensor){-1};
        return stg_layer_norm(g, in[0], (int)a[0], w, b, (float)a[1]);
    }
    if (!strcmp(op, "batch_norm")) { /* eps, momentum, has weight, has bias */
        int64_t ch = stg_tensor_shape(g, in[0], dims) >= 2 ? dims[1] : 1;
        stg_batch_norm_params p = {(float)a[0], (float)a[1]};
        stg_tensor w = a[2] ? in[1] : (stg_tensor){-1}, b = a[3] ? in[1 + (a[2] != 0)]
                                                                 : (stg_tensor){-1};
        return stg_batch_norm(g, in[0], w, b, stg_stat(g, "running_mean", 1, &ch, 0.0f),
                              stg_stat(g, "running_var", 1, &ch, 1.0f), &p);
    }
    fail_msg("%s: unknown op %s in reference file", c->name, op);
    return (stg_tensor){-1};
}

/* Ops whose second input is int32 labels or indices. */
static bool int_second_input(const char *op)
{
    return !strcmp(op, "gather") || !strcmp(op, "cross_entropy") || !strcmp(op, "nll") ||
           !strcmp(op, "embedding");
}

/* Column-major copy of the last two dims of 't' (for the transposed-view variant). */
static float *transposed_copy(const tu_tensor *t)
{
    int64_t r = t->d[t->nd - 2], cdim = t->d[t->nd - 1], mat = r * cdim;
    float *v = malloc((size_t)t->n * sizeof(float));
    for (int64_t b = 0; b < t->n / mat; b++)
        for (int64_t i = 0; i < r; i++)
            for (int64_t j = 0; j < cdim; j++)
                v[b * mat + j * r + i] = t->v[b * mat + i * cdim + j];
    return v;
}

#define MAX_IN 3 /* conv2d: x, w, bias */

typedef struct result {
    float *out, *grad[MAX_IN];
} result;

/* Builds and runs one case; returns the output and input gradients. */
static result run_case(const tu_case *c, int threads, bool views, bool nonfinite)
{
    stg_graph *g = stg_graph_new();
    const tu_tensor *seed = tu_find(c, "seed"), *out = tu_find(c, "out");
    assert_non_null(seed);
    assert_non_null(out);
    stg_tensor leaf[MAX_IN], in[MAX_IN];
    float *data[MAX_IN];
    static const char *const role[MAX_IN] = {"in0", "in1", "in2"};
    int nin = 0;
    for (const tu_tensor *t; nin < MAX_IN && (t = tu_find(c, role[nin])); nin++) {
        bool tr = views && t->nd >= 2;
        int64_t d[STG_MAX_DIMS];
        memcpy(d, t->d, sizeof d);
        if (tr) { /* declare the column-major shape, then view it transposed */
            d[t->nd - 2] = t->d[t->nd - 1];
            d[t->nd - 1] = t->d[t->nd - 2];
        }
        bool labels = nin == 1 && int_second_input(c->op);
        leaf[nin] = labels ? stg_input_i32(g, t->role, t->nd, d) : stg_input(g, t->role, t->nd, d);
        if (!labels)
            stg_graph_require_grad(g, leaf[nin]);
        in[nin] = tr ? stg_swapaxes(g, leaf[nin], -1, -2) : leaf[nin];
        data[nin] = tr ? transposed_copy(t) : t->v;
    }
    stg_tensor y = build_op(g, c, in);
    stg_graph_keep(g, y);
    stg_tensor s = stg_input(g, "seed", seed->nd, seed->d);
    stg_tensor loss = stg_sum(g, stg_mul(g, y, s), 0, NULL, 0);
    if (stg_graph_status(g) != STG_OK)
        fail_msg("%s: %s", c->name, stg_graph_message(g));
    stg_plan *p = tu_plan(g, loss, threads, STG_OPTIM_NONE);
    for (int i = 0; i < nin; i++) {
        int64_t n = stg_tensor_numel(g, leaf[i]);
        if (i == 1 && int_second_input(c->op)) {
            int32_t *lab = stg_plan_data_i32(p, leaf[i]);
            for (int64_t k = 0; k < n; k++)
                lab[k] = (int32_t)data[i][k];
        } else {
            assert_int_equal(stg_plan_set(p, leaf[i], data[i], n), STG_OK);
        }
    }
    assert_int_equal(stg_plan_set(p, s, seed->v, seed->n), STG_OK);
    /* with a NaN or an infinity in the inputs the loss is not finite: the
     * step reports it after computing every value and gradient */
    stg_status step = stg_plan_step(p);
    if (step != STG_OK && !(nonfinite && step == STG_NUMERIC))
        fail_msg("%s: step: %s: %s", c->name, stg_status_name(step), stg_plan_message(p));

    result r = {0};
    r.out = malloc((size_t)out->n * sizeof(float));
    stg_status st = stg_plan_get(p, y, r.out, out->n);
    if (st != STG_OK)
        fail_msg("%s: reading the output: %s", c->name, stg_status_name(st));
    for (int i = 0; i < nin && !(i == 1 && int_second_input(c->op)); i++) {
        int64_t n = stg_tensor_numel(g, leaf[i]);
        const float *gr = stg_plan_grad(p, leaf[i]);
        assert_non_null(gr);
        r.grad[i] = malloc((size_t)n * sizeof(float));
        if (views && c->t[i].nd >= 2) { /* gradient of the column-major leaf: transpose back */
            tu_tensor tt = c->t[i];
            int64_t rr = tt.d[tt.nd - 1], cc = tt.d[tt.nd - 2];
            tt.d[tt.nd - 2] = rr, tt.d[tt.nd - 1] = cc, tt.v = (float *)gr;
            float *back = transposed_copy(&tt);
            memcpy(r.grad[i], back, (size_t)n * sizeof(float));
            free(back);
        } else {
            memcpy(r.grad[i], gr, (size_t)n * sizeof(float));
        }
        if (data[i] != c->t[i].v)
            free(data[i]);
    }
    stg_plan_free(p);
    stg_graph_free(g);
    return r;
}

/* tu_err for references with NaN and infinities: a NaN is matched only by a
 * NaN, an infinity only by itself, a finite value within the tolerance.
 * '*at' gets the index of the worst element. */
static double nonfinite_err(const float *got, const float *want, int64_t n, int64_t *at)
{
    double worst = 0;
    *at = 0;
    for (int64_t i = 0; i < n; i++) {
        double e;
        if (isnan(want[i]))
            e = isnan(got[i]) ? 0 : INFINITY;
        else if (isinf(want[i]))
            e = got[i] == want[i] ? 0 : INFINITY;
        else
            e = isfinite(got[i]) ? fabs((double)got[i] - want[i]) / (ATOL + RTOL * fabs(want[i]))
                                 : INFINITY;
        if (e > worst)
            worst = e, *at = i;
    }
    return worst;
}

static double err_of(bool nonfinite, const float *got, const float *want, int64_t n,
                     const char *name, const char *what)
{
    if (!nonfinite)
        return tu_err(got, want, n, ATOL, RTOL);
    int64_t at;
    double e = nonfinite_err(got, want, n, &at);
    if (e > 1.0)
        print_message("%s: %s[%lld] = %g, PyTorch %g\n", name, what, (long long)at,
                      (double)got[at], (double)want[at]);
    return e;
}

static void check_case(const tu_case *c, bool views, bool nonfinite)
{
    result r1 = run_case(c, 1, views, nonfinite), r2 = run_case(c, 2, views, nonfinite);
    const tu_tensor *out = tu_find(c, "out");
    double e = err_of(nonfinite, r1.out, out->v, out->n, c->name, "out");
    if (e > 1.0)
        fail_msg("%s%s: output off by %.3g tolerances", c->name, views ? " (views)" : "", e);
    if (memcmp(r1.out, r2.out, (size_t)out->n * sizeof(float)) != 0)
        fail_msg("%s: output differs between 1 and 2 threads", c->name);
    static const char *const grad[MAX_IN] = {"grad0", "grad1", "grad2"};
    for (int i = 0; i < MAX_IN; i++) {
        const tu_tensor *gt = tu_find(c, grad[i]);
        if (!gt)
            continue;
        e = err_of(nonfinite, r1.grad[i], gt->v, gt->n, c->name, grad[i]);
        if (e > 1.0)
            fail_msg("%s%s: grad of input %d off by %.3g tolerances", c->name,
                     views ? " (views)" : "", i, e);
        if (memcmp(r1.grad[i], r2.grad[i], (size_t)gt->n * sizeof(float)) != 0)
            fail_msg("%s: grad %d differs between 1 and 2 threads", c->name, i);
        free(r1.grad[i]);
        free(r2.grad[i]);
    }
    free(r1.out);
    free(r2.out);
}

static int run_file(const char *name, bool views)
{
    bool nonfinite = strstr(name, "nonfinite") != NULL;
    FILE *f = tu_open_data(name);
    tu_case c;
    int n = 0;
    while (tu_read_case(f, &c)) {
        if (!views || !strcmp(c.op, "matmul"))
            check_case(&c, views, nonfinite);
        tu_free_case(&c);
        n++;
    }
    fclose(f);
    return n;
}

static void test_matmul_reference(void **state)
{
    (void)state;
    int n = run_file("matmul_ref.txt", false);
    assert_true(n >= 100);
    print_message("%d matmul cases match PyTorch\n", n);
}

static void test_matmul_reference_transposed_views(void **state)
{
    (void)state;
    assert_true(run_file("matmul_ref.txt", true) >= 100);
}

static void test_ops_reference(void **state)
{
    (void)state;
    int n = run_file("ops_ref.txt", false);
    assert_true(n >= 100);
    print_message("%d op cases match PyTorch\n", n);
}

static void test_seq_reference(void **state)
{
    (void)state;
    int n = run_file("seq_ref.txt", false);
    assert_true(n >= 10);
    print_message("%d embedding and layer norm cases match PyTorch\n", n);
}

static void test_conv_reference(void **state)
{
    (void)state;
    int n = run_file("conv_ref.txt", false);
    assert_true(n >= 20);
    print_message("%d convolution, pooling and batch norm cases match PyTorch\n", n);
}

static void check_close(const char *what, const char *name, const float *got, const tu_tensor *want)
{
    double e = tu_err(got, want->v, want->n, ATOL, RTOL);
    if (e > 1.0)
        fail_msg("%s: %s differs from PyTorch (error %g of the tolerance)", name, what, e);
}

/* Batch norm's running statistics after several training steps, then an
 * inference plan that reads them in place (opts.share_params), against
 * torch.nn.BatchNorm in train() and eval(); the statistics are the same
 * bits at 1 and 2 threads. */
static void test_batch_norm_running_reference(void **state)
{
    (void)state;
    FILE *f = tu_open_data("bn_running_ref.txt");
    tu_case c;
    int cases = 0;
    while (tu_read_case(f, &c)) {
        const tu_tensor *xs = tu_find(&c, "xs"), *w = tu_find(&c, "w"), *b = tu_find(&c, "b");
        const tu_tensor *rm = tu_find(&c, "running_mean"), *rv = tu_find(&c, "running_var");
        const tu_tensor *xe = tu_find(&c, "x_eval"), *ye = tu_find(&c, "y_eval");
        assert_true(xs && w && b && rm && rv && xe && ye);
        int steps = (int)c.attr[2];
        int64_t ch = w->n, per = xe->n;
        float stats[2][2][64] = {{{0}}};
        assert_true(ch <= 64);
        for (int threads = 1; threads <= 2; threads++) {
            stg_graph *g = stg_graph_new();
            stg_tensor x = stg_input(g, "x", xe->nd, xe->d);
            stg_tensor tw = stg_param(g, "bn.weight", 1, &ch), tb = stg_param(g, "bn.bias", 1, &ch);
            stg_tensor trm = stg_stat(g, "bn.running_mean", 1, &ch, 0.0f);
            stg_tensor trv = stg_stat(g, "bn.running_var", 1, &ch, 1.0f);
            stg_batch_norm_params bp = {(float)c.attr[0], (float)c.attr[1]};
            stg_tensor y = stg_batch_norm(g, x, tw, tb, trm, trv, &bp);
            stg_graph_keep(g, y);
            stg_tensor loss = stg_sum(g, stg_mul(g, y, y), 0, NULL, 0);
            if (stg_graph_status(g) != STG_OK)
                fail_msg("%s: %s", c.name, stg_graph_message(g));
            stg_plan *tp = tu_plan(g, loss, threads, STG_OPTIM_NONE);
            assert_int_equal(stg_plan_set(tp, tw, w->v, ch), STG_OK);
            assert_int_equal(stg_plan_set(tp, tb, b->v, ch), STG_OK);
            for (int t = 0; t < steps; t++) {
                assert_int_equal(stg_plan_set(tp, x, xs->v + t * per, per), STG_OK);
                assert_int_equal(stg_plan_step(tp), STG_OK);
            }
            assert_int_equal(stg_plan_get(tp, trm, stats[threads - 1][0], ch), STG_OK);
            assert_int_equal(stg_plan_get(tp, trv, stats[threads - 1][1], ch), STG_OK);
            check_close("running_mean", c.name, stats[threads - 1][0], rm);
            check_close("running_var", c.name, stats[threads - 1][1], rv);

            stg_plan_options o;
            stg_plan_options_init(&o);
            o.inference = 1;
            o.threads = threads;
            o.share_params = tp;
            stg_plan *ip = tu_plan_with(g, (stg_tensor){-1}, &o);
            assert_true(stg_plan_data(ip, trv) == stg_plan_data(tp, trv)); /* no copy */
            assert_int_equal(stg_plan_set(ip, x, xe->v, per), STG_OK);
            assert_int_equal(stg_plan_forward(ip), STG_OK);
            check_close("the inference output", c.name, stg_plan_data(ip, y), ye);
            stg_plan_free(ip);
            stg_plan_free(tp);
            stg_graph_free(g);
        }
        assert_memory_equal(stats[0], stats[1], sizeof stats[0]);
        tu_free_case(&c);
        cases++;
    }
    fclose(f);
    assert_int_equal(cases, 2);
}

/* One recurrent case at 'threads': checks every output and gradient
 * against PyTorch and returns them, concatenated, for the thread check. */
static float *run_rnn_case(const tu_case *c, int threads, int64_t *total)
{
    stg_rnn r = {.mode = (stg_rnn_mode)c->attr[0], .input_size = (int64_t)c->attr[1],
                 .hidden_size = (int64_t)c->attr[2], .num_layers = (int)c->attr[3],
                 .batch_first = (int)c->attr[4], .no_bias = !c->attr[5]};
    stg_graph *g = stg_graph_new();
    const tu_tensor *tx = tu_find(c, "x"), *th0 = tu_find(c, "h0"), *tc0 = tu_find(c, "c0");
    stg_tensor x = stg_input(g, "x", tx->nd, tx->d);
    stg_graph_require_grad(g, x);
    stg_tensor h0 = th0 ? stg_input(g, "h0", th0->nd, th0->d) : (stg_tensor){-1};
    stg_tensor c0 = tc0 ? stg_input(g, "c0", tc0->nd, tc0->d) : (stg_tensor){-1};
    if (th0)
        stg_graph_require_grad(g, h0);
    if (tc0)
        stg_graph_require_grad(g, c0);
    assert_int_equal(stg_rnn_params(g, &r, NULL), STG_OK);
    stg_tensor hn, cn, out = stg_rnn_apply(g, &r, x, h0, c0, &hn, &cn);
    const tu_tensor *so = tu_find(c, "seed_out"), *sh = tu_find(c, "seed_hn");
    const tu_tensor *sc = tu_find(c, "seed_cn");
    stg_tensor seed[3] = {stg_input(g, "seed_out", so->nd, so->d),
                          stg_input(g, "seed_hn", sh->nd, sh->d),
                          sc ? stg_input(g, "seed_cn", sc->nd, sc->d) : (stg_tensor){-1}};
    stg_tensor outs[3] = {out, hn, cn}, loss = {-1};
    for (int k = 0; k < 3; k++)
        if (seed[k].id >= 0) {
            stg_graph_keep(g, outs[k]);
            stg_tensor term = stg_sum(g, stg_mul(g, outs[k], seed[k]), 0, NULL, 0);
            loss = k ? stg_add(g, loss, term) : term;
        }
    if (stg_graph_status(g) != STG_OK)
        fail_msg("%s: %s", c->name, stg_graph_message(g));
    stg_plan *p = tu_plan(g, loss, threads, STG_OPTIM_NONE);
    assert_int_equal(stg_plan_set(p, x, tx->v, tx->n), STG_OK);
    if (th0)
        assert_int_equal(stg_plan_set(p, h0, th0->v, th0->n), STG_OK);
    if (tc0)
        assert_int_equal(stg_plan_set(p, c0, tc0->v, tc0->n), STG_OK);
    const tu_tensor *st[3] = {so, sh, sc};
    for (int k = 0; k < 3; k++)
        if (st[k])
            assert_int_equal(stg_plan_set(p, seed[k], st[k]->v, st[k]->n), STG_OK);
    /* every parameter by its PyTorch name */
    struct { stg_tensor t; char name[24]; } prm[4 * STG_RNN_MAX_LAYERS];
    int np = 0;
    for (int l = 0; l < (r.num_layers ? r.num_layers : 1); l++) {
        stg_tensor ts[4] = {r.weight_ih[l], r.weight_hh[l], r.bias_ih[l], r.bias_hh[l]};
        static const char *const kind[4] = {"weight_ih", "weight_hh", "bias_ih", "bias_hh"};
        for (int k = 0; k < (r.no_bias ? 2 : 4); k++) {
            prm[np].t = ts[k];
            snprintf(prm[np].name, sizeof prm[np].name, "%s_l%d", kind[k], l);
            const tu_tensor *v = tu_find(c, prm[np].name);
            assert_non_null(v);
            assert_int_equal(stg_plan_set(p, ts[k], v->v, v->n), STG_OK);
            np++;
        }
    }
    stg_status s = stg_plan_step(p);
    if (s != STG_OK)
        fail_msg("%s: step: %s: %s", c->name, stg_status_name(s), stg_plan_message(p));
    /* what to compare: outputs, then gradients */
    typedef struct rnn_cmp {
        const float *got;
        const tu_tensor *want;
        const char *what;
    } rnn_cmp;
    rnn_cmp cmp[64];
    int nc = 0;
    static const char *const oname[3] = {"out", "h_n", "c_n"};
    for (int k = 0; k < 3; k++)
        if (st[k])
            cmp[nc++] = (rnn_cmp){stg_plan_data(p, outs[k]), tu_find(c, oname[k]), oname[k]};
    cmp[nc++] = (rnn_cmp){stg_plan_grad(p, x), tu_find(c, "g_x"), "g_x"};
    if (th0)
        cmp[nc++] = (rnn_cmp){stg_plan_grad(p, h0), tu_find(c, "g_h0"), "g_h0"};
    if (tc0)
        cmp[nc++] = (rnn_cmp){stg_plan_grad(p, c0), tu_find(c, "g_c0"), "g_c0"};
    static char gname[4 * STG_RNN_MAX_LAYERS][28];
    for (int k = 0; k < np; k++) {
        snprintf(gname[k], sizeof gname[k], "g_%s", prm[k].name);
        cmp[nc++] = (rnn_cmp){stg_plan_grad(p, prm[k].t), tu_find(c, gname[k]), gname[k]};
    }
    *total = 0;
    for (int k = 0; k < nc; k++) {
        assert_non_null(cmp[k].got);
        assert_non_null(cmp[k].want);
        *total += cmp[k].want->n;
    }
    float *all = malloc((size_t)*total * sizeof(float)), *at = all;
    for (int k = 0; k < nc; k++) {
        double e = tu_err(cmp[k].got, cmp[k].want->v, cmp[k].want->n, ATOL, RTOL);
        if (e > 1.0)
            fail_msg("%s (%d threads): %s differs from PyTorch (error %g of the tolerance)",
                     c->name, threads, cmp[k].what, e);
        memcpy(at, cmp[k].got, (size_t)cmp[k].want->n * sizeof(float));
        at += cmp[k].want->n;
    }
    stg_plan_free(p);
    stg_graph_free(g);
    return all;
}

/* nn.RNN, nn.LSTM and nn.GRU: outputs, final states and every gradient
 * against PyTorch, the same bits at 1 and 2 threads. */
static void test_rnn_reference(void **state)
{
    (void)state;
    FILE *f = tu_open_data("rnn_ref.txt");
    tu_case c;
    int n = 0;
    while (tu_read_case(f, &c)) {
        int64_t n1, n2;
        float *one = run_rnn_case(&c, 1, &n1), *two = run_rnn_case(&c, 2, &n2);
        assert_int_equal(n1, n2);
        if (memcmp(one, two, (size_t)n1 * sizeof(float)))
            fail_msg("%s: results differ between 1 and 2 threads", c.name);
        free(one);
        free(two);
        tu_free_case(&c);
        n++;
    }
    fclose(f);
    assert_true(n >= 8);
    print_message("%d recurrent cases match PyTorch\n", n);
}

/* NaN, +inf and -inf through every op, forward and backward, as PyTorch
 * gives them: a NaN in stays a NaN out (relu, clamp and max included). */
static void test_nonfinite_reference(void **state)
{
    (void)state;
    int n = run_file("nonfinite_ref.txt", false);
    assert_true(n >= 40);
    print_message("%d cases with NaN and infinities match PyTorch\n", n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matmul_reference),
        cmocka_unit_test(test_matmul_reference_transposed_views),
        cmocka_unit_test(test_ops_reference),
        cmocka_unit_test(test_conv_reference),
        cmocka_unit_test(test_batch_norm_running_reference),
        cmocka_unit_test(test_seq_reference),
        cmocka_unit_test(test_rnn_reference),
        cmocka_unit_test(test_nonfinite_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
