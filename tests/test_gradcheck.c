/*
 * Gradients against central finite differences, for every op that has a
 * backward rule.  Each case builds loss = sum(f(inputs) * seed) with a random
 * seed, takes the plan's gradients, then perturbs each input element by +-h
 * and re-runs the forward pass: d loss / d x ~ (L(x+h) - L(x-h)) / 2h.
 * A registry walk fails the suite when some op that computes anything (a
 * kernel or a backward rule) is not exercised by any case.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "internal.h"
#include "testutil.h"

#define H 1e-2f
#define ATOL 2e-3
#define RTOL 2e-2
#define MAXIN 5

typedef struct fd_case {
    const char *name;
    int nin;
    int nd[MAXIN];
    int64_t d[MAXIN][STG_MAX_DIMS];
    /* builds f(inputs); may add extra nodes */
    stg_tensor (*f)(stg_graph *g, const stg_tensor *x);
    float lo, hi; /* input range (division needs |x| away from 0) */
} fd_case;

static bool covered[128];

static stg_tensor f_matmul(stg_graph *g, const stg_tensor *x) { return stg_matmul(g, x[0], x[1]); }
static stg_tensor f_outer(stg_graph *g, const stg_tensor *x) { return stg_outer(g, x[0], x[1]); }
static stg_tensor f_add(stg_graph *g, const stg_tensor *x) { return stg_add(g, x[0], x[1]); }
static stg_tensor f_sub(stg_graph *g, const stg_tensor *x) { return stg_sub(g, x[0], x[1]); }
static stg_tensor f_mul(stg_graph *g, const stg_tensor *x) { return stg_mul(g, x[0], x[1]); }
static stg_tensor f_div(stg_graph *g, const stg_tensor *x) { return stg_div(g, x[0], x[1]); }
static stg_tensor f_neg(stg_graph *g, const stg_tensor *x) { return stg_neg(g, x[0]); }
static stg_tensor f_scale(stg_graph *g, const stg_tensor *x) { return stg_scale(g, x[0], -2.5f); }
static stg_tensor f_mse(stg_graph *g, const stg_tensor *x) { return stg_mse_loss(g, x[0], x[1]); }

static stg_tensor f_conv2d(stg_graph *g, const stg_tensor *x)
{
    stg_conv_params p = {{2, 1}, {1, 0}, {1, 2}, 1};
    return stg_conv2d(g, x[0], x[1], x[2], &p);
}

static stg_tensor f_conv2d_groups(stg_graph *g, const stg_tensor *x)
{
    stg_conv_params p = {{1, 1}, {1, 1}, {1, 1}, 2};
    return stg_conv2d(g, x[0], x[1], (stg_tensor){-1}, &p);
}

/* 1x1, stride 1, no padding: the product reads x directly */
static stg_tensor f_conv2d_1x1(stg_graph *g, const stg_tensor *x)
{
    return stg_conv2d(g, x[0], x[1], (stg_tensor){-1}, NULL);
}

static stg_tensor f_conv1d(stg_graph *g, const stg_tensor *x)
{
    stg_conv_params p = {{2}, {1}, {1}, 1};
    return stg_conv1d(g, x[0], x[1], x[2], &p);
}

static stg_tensor f_max_pool2d(stg_graph *g, const stg_tensor *x)
{
    stg_pool_params p = {{3, 3}, {2, 2}, {1, 1}};
    return stg_max_pool2d(g, x[0], &p);
}

static stg_tensor f_avg_pool2d(stg_graph *g, const stg_tensor *x)
{
    stg_pool_params p = {{2, 3}, {1, 2}, {1, 1}};
    return stg_avg_pool2d(g, x[0], &p);
}

static stg_tensor f_max_pool1d(stg_graph *g, const stg_tensor *x)
{
    stg_pool_params p = {{2}, {0}, {0}};
    return stg_max_pool1d(g, x[0], &p);
}

static stg_tensor f_avg_pool1d(stg_graph *g, const stg_tensor *x)
{
    stg_pool_params p = {{3}, {1}, {1}};
    return stg_avg_pool1d(g, x[0], &p);
}

/* p = 0: every mask keeps every element, so finite differences (which run
 * at other step numbers than the gradient) see the same function; masks at
 * p > 0 are checked against the gradient's identity in test_run */
static stg_tensor f_dropout0(stg_graph *g, const stg_tensor *x)
{
    return stg_dropout(g, stg_mul(g, x[0], x[0]), 0.0f);
}

/* Training batch norm: the gradient runs through the batch statistics. */
static stg_tensor f_batch_norm(stg_graph *g, const stg_tensor *x)
{
    int64_t c = 3;
    return stg_batch_norm(g, x[0], x[1], x[2], stg_stat(g, "rm", 1, &c, 0.0f),
                          stg_stat(g, "rv", 1, &c, 1.0f), NULL);
}

/* (N, C), no affine, no running statistics, and x used twice */
static stg_tensor f_batch_norm_plain(stg_graph *g, const stg_tensor *x)
{
    stg_batch_norm_params p = {1e-3f, 0.5f};
    stg_tensor y = stg_batch_norm(g, x[0], (stg_tensor){-1}, (stg_tensor){-1}, (stg_tensor){-1},
                                  (stg_tensor){-1}, &p);
    return stg_mul(g, y, x[0]);
}

static stg_tensor f_global_avg_pool(stg_graph *g, const stg_tensor *x)
{
    return stg_global_avg_pool(g, x[0]);
}

static stg_tensor f_sum_axes(stg_graph *g, const stg_tensor *x)
{
    int ax[2] = {0, -1};
    return stg_sum(g, x[0], 2, ax, 1);
}

static stg_tensor f_mean_mid(stg_graph *g, const stg_tensor *x)
{
    int ax[1] = {1};
    return stg_mean(g, x[0], 1, ax, 0);
}

static stg_tensor f_transpose(stg_graph *g, const stg_tensor *x)
{
    int perm[3] = {2, 0, 1};
    return stg_mul(g, stg_transpose(g, x[0], perm), x[1]);
}

/* reshape of a transposed (non-contiguous) view goes through a copy */
static stg_tensor f_reshape_copy(stg_graph *g, const stg_tensor *x)
{
    int64_t d[1] = {12};
    return stg_reshape(g, stg_swapaxes(g, x[0], 0, 1), 1, d);
}

/* a broadcast (stride-0) operand is copied before the product */
static stg_tensor f_matmul_bcast_view(stg_graph *g, const stg_tensor *x)
{
    int64_t d[2] = {4, 3};
    return stg_matmul(g, stg_broadcast_to(g, x[0], 2, d), x[1]);
}

static stg_tensor f_matmul_tview(stg_graph *g, const stg_tensor *x)
{
    return stg_matmul(g, stg_swapaxes(g, x[0], -1, -2), x[1]);
}

/* fan-out: x is used three times, its gradients accumulate */
static stg_tensor f_fanout(stg_graph *g, const stg_tensor *x)
{
    return stg_add(g, stg_mul(g, x[0], x[0]), stg_matmul(g, x[0], x[1]));
}

static stg_tensor f_linear_chain(stg_graph *g, const stg_tensor *x)
{
    stg_tensor h = stg_add(g, stg_matmul(g, x[0], x[1]), x[2]);
    return stg_mean(g, stg_mul(g, h, h), 0, NULL, 0);
}

/* Unary ops: one builder each. */
#define U(name, call) \
    static stg_tensor f_##name(stg_graph *g, const stg_tensor *x) { return call; }
U(exp, stg_exp(g, x[0]))
U(log, stg_log(g, x[0]))
U(sqrt, stg_sqrt(g, x[0]))
U(pow, stg_pow(g, x[0], 2.5f))
U(pow_int, stg_pow(g, x[0], 3.0f))
U(abs, stg_abs(g, x[0]))
U(sin, stg_sin(g, x[0]))
U(cos, stg_cos(g, x[0]))
U(tanh, stg_tanh(g, x[0]))
U(sigmoid, stg_sigmoid(g, x[0]))
U(relu, stg_relu(g, x[0]))
U(leaky_relu, stg_leaky_relu(g, x[0], 0.1f))
U(elu, stg_elu(g, x[0], 0.7f))
U(softplus, stg_softplus(g, x[0]))
U(gelu, stg_gelu(g, x[0]))
U(clamp, stg_clamp(g, x[0], -0.5f, 0.4f))
U(softmax, stg_softmax(g, x[0], 1))
U(log_softmax, stg_log_softmax(g, x[0], -1))
U(bce, stg_bce_with_logits(g, x[0], x[1]))
U(l1, stg_l1_loss(g, x[0], x[1]))
U(max_axes, stg_max(g, x[0], 2, (const int[]){0, 2}, 1))
U(min_all, stg_min(g, x[0], 0, NULL, 0))
U(var_axis, stg_var(g, x[0], 1, (const int[]){1}, 0))
U(logsumexp_axis, stg_logsumexp(g, x[0], 1, (const int[]){-1}, 0))
U(norm1, stg_norm(g, x[0], 1, 1, (const int[]){0}, 0))
U(norm2, stg_norm(g, x[0], 2, 1, (const int[]){1}, 1))
U(slice_step, stg_slice(g, x[0], 1, -4, 5, 2))
U(flip, stg_mul(g, stg_flip(g, x[0], 0), x[1]))
U(matmul_flipped, stg_matmul(g, stg_flip(g, x[0], 1), stg_flip(g, x[1], 0)))
U(pad, stg_pad(g, x[0], (const int64_t[]){1, 0}, (const int64_t[]){2, 3}, 0.5f))
U(concat3, stg_concat(g, 3, (const stg_tensor[]){x[0], x[1], x[0]}, 1))
U(stack, stg_stack(g, 2, (const stg_tensor[]){x[0], x[1]}, -1))
#undef U

static stg_tensor f_split(stg_graph *g, const stg_tensor *x)
{
    stg_tensor parts[3];
    stg_split(g, x[0], 0, 3, (const int64_t[]){1, 2, 2}, parts);
    return stg_add(g, stg_mul(g, parts[1], parts[1]), parts[2]);
}

/* Cases with labels declare them here; the harness fills every int32 input
 * with in-range values (i * 7 + 3) mod 4 (all class axes have size 4). */
static stg_tensor f_gather(stg_graph *g, const stg_tensor *x)
{
    int64_t d[2] = {3, 2};
    return stg_gather(g, x[0], 1, stg_input_i32(g, "idx", 2, d));
}

static stg_tensor f_xent(stg_graph *g, const stg_tensor *x)
{
    int64_t d[1] = {5};
    return stg_softmax_cross_entropy(g, x[0], stg_input_i32(g, "labels", 1, d), STG_REDUCE_MEAN);
}

static stg_tensor f_nll_sum(stg_graph *g, const stg_tensor *x)
{
    int64_t d[2] = {2, 3};
    return stg_nll_loss(g, x[0], stg_input_i32(g, "labels", 2, d), STG_REDUCE_SUM);
}

/* repeated indices (values 3, 2, 1, 0, 3, 2); no padding row, whose zero
 * gradient finite differences would contradict (PyTorch's references
 * check it) */
static stg_tensor f_embedding(stg_graph *g, const stg_tensor *x)
{
    int64_t d[2] = {2, 3};
    stg_tensor e = stg_embedding(g, x[0], stg_input_i32(g, "idx", 2, d), -1);
    return stg_mul(g, e, e);
}

static stg_tensor f_layer_norm(stg_graph *g, const stg_tensor *x)
{
    return stg_layer_norm(g, x[0], 2, x[1], x[2], 1e-5f);
}

/* a recurrent layer whose weights are the inputs x[1..4]: x (T 3, N 2, 3),
 * hidden 2; the outputs and the final state both reach the loss */
static stg_tensor rnn_of(stg_graph *g, const stg_tensor *x, stg_rnn_mode mode)
{
    stg_rnn r = {.mode = mode, .input_size = 3, .hidden_size = 2};
    r.weight_ih[0] = x[1], r.weight_hh[0] = x[2], r.bias_ih[0] = x[3], r.bias_hh[0] = x[4];
    stg_tensor hn, cn, out = stg_rnn_apply(g, &r, x[0], (stg_tensor){-1}, (stg_tensor){-1}, &hn, &cn);
    stg_tensor y = stg_add(g, stg_sum(g, out, 0, NULL, 0), stg_sum(g, stg_mul(g, hn, hn), 0, NULL, 0));
    return mode == STG_LSTM ? stg_add(g, y, stg_sum(g, cn, 0, NULL, 0)) : y;
}

static stg_tensor f_lstm(stg_graph *g, const stg_tensor *x) { return rnn_of(g, x, STG_LSTM); }
static stg_tensor f_gru(stg_graph *g, const stg_tensor *x) { return rnn_of(g, x, STG_GRU); }
static stg_tensor f_rnn_tanh(stg_graph *g, const stg_tensor *x)
{
    return rnn_of(g, x, STG_RNN_TANH);
}

#define D(...) {__VA_ARGS__}
static const fd_case cases[] = {
    {"matmul_mm", 2, {2, 2}, {D(2, 3), D(3, 4)}, f_matmul, -1, 1},
    {"matmul_bcast", 2, {4, 3}, {D(2, 1, 2, 3), D(3, 3, 2)}, f_matmul, -1, 1},
    {"matmul_vm", 2, {1, 2}, {D(3), D(3, 4)}, f_matmul, -1, 1},
    {"matmul_mv_batched", 2, {3, 1}, {D(2, 2, 3), D(3)}, f_matmul, -1, 1},
    {"matmul_dot", 2, {1, 1}, {D(5), D(5)}, f_matmul, -1, 1},
    {"matmul_vec_batched_right", 2, {1, 3}, {D(3), D(2, 3, 2)}, f_matmul, -1, 1},
    {"matmul_transposed_view", 2, {3, 2}, {D(2, 3, 2), D(3, 4)}, f_matmul_tview, -1, 1},
    {"matmul_broadcast_view", 2, {1, 2}, {D(3), D(3, 2)}, f_matmul_bcast_view, -1, 1},
    {"outer", 2, {1, 1}, {D(3), D(4)}, f_outer, -1, 1},
    {"add_bcast", 2, {3, 2}, {D(2, 1, 3), D(4, 1)}, f_add, -1, 1},
    {"sub_bcast", 2, {1, 2}, {D(3), D(2, 3)}, f_sub, -1, 1},
    {"mul_bcast", 2, {2, 0}, {D(2, 3), D(0)}, f_mul, -1, 1},
    {"div_bcast", 2, {2, 2}, {D(2, 3), D(1, 3)}, f_div, 0.5f, 2},
    {"neg", 1, {2}, {D(3, 2)}, f_neg, -1, 1},
    {"scale", 1, {1}, {D(4)}, f_scale, -1, 1},
    {"sum_axes_keepdims", 1, {3}, {D(2, 3, 2)}, f_sum_axes, -1, 1},
    {"mean_axis", 1, {3}, {D(2, 3, 2)}, f_mean_mid, -1, 1},
    {"transpose", 2, {3, 3}, {D(2, 3, 2), D(2, 2, 3)}, f_transpose, -1, 1},
    {"reshape_copy", 1, {2}, {D(3, 4)}, f_reshape_copy, -1, 1},
    {"mse", 2, {2, 2}, {D(3, 2), D(3, 2)}, f_mse, -1, 1},
    {"fanout", 2, {2, 2}, {D(3, 3), D(3, 3)}, f_fanout, -1, 1},
    {"exp", 1, {2}, {D(3, 4)}, f_exp, -2, 2},
    {"log", 1, {2}, {D(3, 4)}, f_log, 0.3f, 3},
    {"sqrt", 1, {2}, {D(3, 4)}, f_sqrt, 0.3f, 3},
    {"pow", 1, {2}, {D(3, 4)}, f_pow, 0.3f, 2},
    {"pow_int", 1, {2}, {D(3, 4)}, f_pow_int, -2, 2},
    {"abs", 1, {2}, {D(3, 4)}, f_abs, -1, 1},
    {"sin", 1, {2}, {D(3, 4)}, f_sin, -3, 3},
    {"cos", 1, {2}, {D(3, 4)}, f_cos, -3, 3},
    {"tanh", 1, {2}, {D(3, 4)}, f_tanh, -2, 2},
    {"sigmoid", 1, {2}, {D(3, 4)}, f_sigmoid, -4, 4},
    {"relu", 1, {2}, {D(3, 4)}, f_relu, -1, 1},
    {"leaky_relu", 1, {2}, {D(3, 4)}, f_leaky_relu, -1, 1},
    {"elu", 1, {2}, {D(3, 4)}, f_elu, -2, 2},
    {"softplus", 1, {2}, {D(3, 4)}, f_softplus, -4, 4},
    {"gelu", 1, {2}, {D(3, 4)}, f_gelu, -3, 3},
    {"clamp", 1, {2}, {D(3, 4)}, f_clamp, -1, 1},
    {"softmax", 1, {3}, {D(2, 4, 3)}, f_softmax, -2, 2},
    {"log_softmax", 1, {2}, {D(3, 4)}, f_log_softmax, -2, 2},
    {"gather", 1, {2}, {D(3, 4)}, f_gather, -1, 1},
    {"softmax_cross_entropy", 1, {2}, {D(5, 4)}, f_xent, -2, 2},
    {"nll_loss_sum", 1, {3}, {D(2, 3, 4)}, f_nll_sum, -2, 0},
    {"bce_with_logits", 2, {2, 2}, {D(3, 4), D(3, 4)}, f_bce, -2, 2},
    {"l1_loss", 2, {2, 2}, {D(3, 4), D(3, 4)}, f_l1, -1, 1},
    {"max_axes", 1, {3}, {D(2, 3, 2)}, f_max_axes, -1, 1},
    {"min_all", 1, {2}, {D(3, 4)}, f_min_all, -1, 1},
    {"var_axis", 1, {3}, {D(2, 4, 3)}, f_var_axis, -1, 1},
    {"logsumexp_axis", 1, {2}, {D(3, 5)}, f_logsumexp_axis, -3, 3},
    {"norm1", 1, {2}, {D(4, 3)}, f_norm1, -1, 1},
    {"norm2", 1, {2}, {D(4, 3)}, f_norm2, -1, 1},
    {"slice_step", 1, {2}, {D(2, 5)}, f_slice_step, -1, 1},
    {"flip", 2, {2, 2}, {D(3, 2), D(3, 2)}, f_flip, -1, 1},
    {"matmul_flipped", 2, {2, 2}, {D(2, 3), D(3, 2)}, f_matmul_flipped, -1, 1},
    {"pad", 1, {2}, {D(2, 3)}, f_pad, -1, 1},
    {"concat3", 2, {2, 2}, {D(2, 3), D(2, 1)}, f_concat3, -1, 1},
    {"stack", 2, {2, 2}, {D(2, 3), D(2, 3)}, f_stack, -1, 1},
    {"split", 1, {2}, {D(5, 2)}, f_split, -1, 1},
    {"linear_chain", 3, {2, 2, 1}, {D(4, 3), D(3, 2), D(2)}, f_linear_chain, -1, 1},
    {"conv2d", 3, {4, 4, 1}, {D(2, 2, 5, 5), D(3, 2, 3, 2), D(3)}, f_conv2d, -1, 1},
    {"conv2d_groups", 2, {4, 4}, {D(1, 4, 4, 4), D(4, 2, 2, 2)}, f_conv2d_groups, -1, 1},
    {"conv2d_1x1", 2, {4, 4}, {D(2, 3, 3, 3), D(2, 3, 1, 1)}, f_conv2d_1x1, -1, 1},
    {"conv1d", 3, {3, 3, 1}, {D(2, 2, 7), D(3, 2, 3), D(3)}, f_conv1d, -1, 1},
    /* wide range: no two values of a window within the step of each other */
    {"max_pool2d", 1, {4}, {D(1, 2, 5, 5)}, f_max_pool2d, -10, 10},
    {"avg_pool2d", 1, {4}, {D(2, 1, 5, 4)}, f_avg_pool2d, -1, 1},
    {"max_pool1d", 1, {3}, {D(2, 2, 6)}, f_max_pool1d, -10, 10},
    {"avg_pool1d", 1, {3}, {D(1, 2, 5)}, f_avg_pool1d, -1, 1},
    {"global_avg_pool", 1, {4}, {D(2, 3, 2, 2)}, f_global_avg_pool, -1, 1},
    {"dropout_p0", 1, {2}, {D(3, 5)}, f_dropout0, -1, 1},
    {"batch_norm", 3, {4, 1, 1}, {D(2, 3, 2, 3), D(3), D(3)}, f_batch_norm, -1, 1},
    {"batch_norm_plain", 1, {2}, {D(5, 4)}, f_batch_norm_plain, -1, 1},
    {"embedding", 1, {2}, {D(4, 3)}, f_embedding, -1, 1},
    {"lstm", 5, {3, 2, 2, 1, 1}, {D(3, 2, 3), D(8, 3), D(8, 2), D(8), D(8)}, f_lstm, -1, 1},
    {"gru", 5, {3, 2, 2, 1, 1}, {D(3, 2, 3), D(6, 3), D(6, 2), D(6), D(6)}, f_gru, -1, 1},
    {"rnn_tanh", 5, {3, 2, 2, 1, 1}, {D(3, 2, 3), D(2, 3), D(2, 2), D(2), D(2)}, f_rnn_tanh, -1, 1},
    {"layer_norm", 3, {3, 2, 2}, {D(2, 3, 4), D(3, 4), D(3, 4)}, f_layer_norm, -1, 1},
};
#define NCASES ((int)(sizeof cases / sizeof cases[0]))

static void mark_ops(const stg_graph *g)
{
    int nops;
    const stg_op *const *all = stgO_all(&nops);
    for (int32_t i = 0; i < g->n; i++)
        for (int k = 0; k < nops; k++)
            if (g->nodes[i].op == all[k])
                covered[k] = true;
}

static void check_case(const fd_case *c, int threads)
{
    stg_graph *g = stg_graph_new();
    stg_tensor x[MAXIN];
    for (int i = 0; i < c->nin; i++) {
        x[i] = stg_input(g, "x", c->nd[i], c->d[i]);
        stg_graph_require_grad(g, x[i]);
    }
    stg_tensor y = c->f(g, x);
    int64_t yd[STG_MAX_DIMS];
    int ynd = stg_tensor_shape(g, y, yd);
    stg_tensor seed = stg_input(g, "seed", ynd < 0 ? 0 : ynd, yd);
    stg_tensor loss = stg_sum(g, stg_mul(g, y, seed), 0, NULL, 0);
    stg_plan *p = tu_plan(g, loss, threads, STG_OPTIM_NONE);
    /* the plan's copy holds the backward nodes too */
    const stg_graph *pg = p->g;
    mark_ops(pg);

    tu_fill(stg_plan_data(p, seed), stg_tensor_numel(g, seed), 99, -1, 1);
    for (int32_t id = 0; id < g->n; id++)
        if (g->nodes[id].is_int) {
            int32_t *lab = stg_plan_data_i32(p, (stg_tensor){id});
            for (int64_t k = 0; k < stg_tensor_numel(g, (stg_tensor){id}); k++)
                lab[k] = (int32_t)((k * 7 + 3) % 4);
        }
    for (int i = 0; i < c->nin; i++)
        tu_fill(stg_plan_data(p, x[i]), stg_tensor_numel(g, x[i]), (uint64_t)i + 7, c->lo, c->hi);
    assert_int_equal(stg_plan_step(p), STG_OK);
    for (int i = 0; i < c->nin; i++) {
        int64_t n = stg_tensor_numel(g, x[i]);
        float *an = malloc((size_t)n * sizeof(float)), *fd = malloc((size_t)n * sizeof(float));
        memcpy(an, stg_plan_grad(p, x[i]), (size_t)n * sizeof(float));
        float *v = stg_plan_data(p, x[i]);
        for (int64_t k = 0; k < n; k++) {
            float keep = v[k];
            v[k] = keep + H;
            stg_plan_forward(p);
            double up = stg_plan_loss(p);
            v[k] = keep - H;
            stg_plan_forward(p);
            double down = stg_plan_loss(p);
            v[k] = keep;
            fd[k] = (float)((up - down) / (2.0 * H));
        }
        double e = tu_err(an, fd, n, ATOL, RTOL);
        if (e > 1.0)
            fail_msg("%s (%d threads): gradient of input %d is %.3g tolerances from finite "
                     "differences", c->name, threads, i, e);
        free(an);
        free(fd);
    }
    stg_plan_free(p);
    stg_graph_free(g);
}

static void test_finite_differences(void **state)
{
    (void)state;
    for (int i = 0; i < NCASES; i++) {
        check_case(&cases[i], 1);
        check_case(&cases[i], 2);
    }
}

/* Every registered op with a kernel or a backward rule appears in some case
 * above (gradient nodes appear in the plans of the ops they differentiate);
 * optimizer updates and the guard are checked in test_run and test_optim. */
static void test_every_op_is_covered(void **state)
{
    (void)state;
    int nops;
    const stg_op *const *all = stgO_all(&nops);
    assert_true(nops <= 128);
    for (int k = 0; k < nops; k++)
        /* the gradient sums move gradients between processes (test_collective) */
        if ((all[k]->backward || all[k]->run) &&
            !(all[k]->flags & (STG_OPF_EFFECT | STG_OPF_COLLECTIVE)) &&
            !covered[k])
            fail_msg("op '%s' appears in no finite-difference case", all[k]->name);
}

/* Typed attributes: every op that has them can print them; a clone of a
 * graph owns equal copies; the printed forms of a few. */
static void test_attributes(void **state)
{
    (void)state;
    int nops;
    const stg_op *const *all = stgO_all(&nops);
    for (int k = 0; k < nops; k++)
        if (all[k]->attr_size && !all[k]->print_attr)
            fail_msg("op '%s' has attributes and no printer", all[k]->name);

    stg_graph *g = stg_graph_new();
    int64_t d[3] = {2, 3, 4}, pads[3] = {0, 1, 0};
    stg_tensor x = stg_input(g, "x", 3, d);
    int axes[2] = {0, 2}, perm[3] = {2, 0, 1};
    stg_tensor s = stg_sum(g, x, 2, axes, 1);
    stg_tensor t = stg_transpose(g, x, perm);
    stg_tensor sl = stg_slice(g, x, 1, 1, 3, 2);
    stg_tensor sc = stg_scale(g, x, 0.5f);
    stg_tensor sm = stg_softmax(g, x, -1);
    stg_tensor pd = stg_pad(g, x, pads, pads, 3.0f);
    stg_tensor ad = stg_add(g, x, x);
    assert_int_equal(stg_graph_status(g), STG_OK);
    struct {
        stg_tensor t;
        const char *want;
    } printed[] = {{s, "axes=0,2 keepdims"}, {t, "perm=2,0,1"},
                   {sl, "axis=1 start=1 step=2"}, {sc, "a=0.5"}, {sm, "axis=2"},
                   {pd, "value=3"}, {ad, ""}};
    stg_graph *c = stgG_clone(g);
    assert_non_null(c);
    for (size_t i = 0; i < sizeof printed / sizeof printed[0]; i++) {
        const stg_node *n = &g->nodes[printed[i].t.id], *m = &c->nodes[printed[i].t.id];
        char buf[80];
        assert_string_equal(stgO_attr_str(n->op, n->attr, buf, sizeof buf), printed[i].want);
        assert_true(n->op->attr_size == 0 || (m->attr && m->attr != n->attr));
        assert_true(stgO_attr_equal(n->op, n->attr, m->attr));
    }
    /* slices that differ in start only are not equal */
    stg_tensor sl2 = stg_slice(g, x, 1, 0, 3, 2);
    assert_false(stgO_attr_equal(g->nodes[sl.id].op, g->nodes[sl.id].attr,
                                 g->nodes[sl2.id].attr));
    stg_graph_free(c);
    stg_graph_free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_finite_differences),
        cmocka_unit_test(test_every_op_is_covered),
        cmocka_unit_test(test_attributes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
