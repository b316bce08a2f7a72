/*
 * The executor's promises: a training step allocates nothing after a
 * warm-up step, results are bitwise reproducible and identical for 1, 2 and
 * 3 threads however products are cut into blocks, and the SGD update does
 * what it says.
 *
 * Allocator calls are counted process-wide by allochook.c; sanitizer builds
 * replace the allocator themselves, so there the counting test is skipped.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>

#include <cmocka.h>

#include "allochook.h"
#include "testutil.h"

/* An MLP-shaped linear network with broadcast bias adds, an mse loss and a
 * few vector-shaped products, big enough that every kernel splits its work. */
typedef struct net {
    stg_graph *g;
    stg_tensor x, t, w[3], b[3], v, loss;
} net;

static net make_net(int batch)
{
    net n = {.g = stg_graph_new()};
    int64_t sizes[4] = {784, 256, 128, 10};
    int64_t xd[2] = {batch, sizes[0]}, td[2] = {batch, sizes[3]}, vd[1] = {sizes[3]};
    n.x = stg_input(n.g, "x", 2, xd);
    n.t = stg_input(n.g, "t", 2, td);
    stg_tensor h = n.x;
    for (int l = 0; l < 3; l++) {
        int64_t wd[2] = {sizes[l], sizes[l + 1]}, bd[1] = {sizes[l + 1]};
        n.w[l] = stg_param(n.g, "w", 2, wd);
        n.b[l] = stg_param(n.g, "b", 1, bd);
        h = stg_add(n.g, stg_matmul(n.g, h, n.w[l]), n.b[l]);
        if (l < 2)
            h = stg_scale(n.g, h, 0.5f);
    }
    /* a matrix-vector product and a dot in the loss, so those kernels run too */
    n.v = stg_param(n.g, "v", 1, vd);
    stg_tensor mv = stg_matmul(n.g, h, n.v);
    stg_tensor reg = stg_scale(n.g, stg_matmul(n.g, n.v, n.v), 1e-3f);
    n.loss = stg_add(n.g, stg_add(n.g, stg_mse_loss(n.g, h, n.t), reg),
                     stg_scale(n.g, stg_mean(n.g, mv, 0, NULL, 0), 1e-3f));
    assert_int_equal(stg_graph_status(n.g), STG_OK);
    return n;
}

static void fill_net(stg_plan *p, const net *n)
{
    tu_fill(stg_plan_data(p, n->x), stg_tensor_numel(n->g, n->x), 1, 0, 1);
    tu_fill(stg_plan_data(p, n->t), stg_tensor_numel(n->g, n->t), 2, 0, 1);
    for (int l = 0; l < 3; l++) {
        tu_fill(stg_plan_data(p, n->w[l]), stg_tensor_numel(n->g, n->w[l]), 10 + l, -0.05f, 0.05f);
        tu_fill(stg_plan_data(p, n->b[l]), stg_tensor_numel(n->g, n->b[l]), 20 + l, -0.1f, 0.1f);
    }
    tu_fill(stg_plan_data(p, n->v), stg_tensor_numel(n->g, n->v), 30, -1, 1);
}

static void test_steps_allocate_nothing(void **state)
{
    (void)state;
    if (!allochook_works()) {
        print_message("the allocator is replaced (sanitizers or valgrind): not counted\n");
        skip();
    }
    for (int threads = 1; threads <= 2; threads++) {
        net n = make_net(64);
        long at_start = allochook_calls();
        stg_plan *p = tu_plan(n.g, n.loss, threads, STG_OPTIM_SGD);
        assert_true(allochook_calls() > at_start); /* the hook sees plan creation */
        fill_net(p, &n);
        assert_int_equal(stg_plan_step(p), STG_OK); /* warm-up: BLIS and OpenMP set up */
        long before = allochook_calls();
        for (int i = 0; i < 100; i++)
            stg_plan_step(p);
        stg_plan_forward(p);
        long calls = allochook_calls() - before;
        print_message("%d thread(s): %ld allocator calls in 100 steps + 1 forward\n", threads,
                      calls);
        assert_int_equal(calls, 0);
        assert_true(stg_plan_loss(p) == stg_plan_loss(p)); /* not NaN */
        stg_plan_free(p);
        stg_graph_free(n.g);
    }
}

/* Parameters and loss after 'steps' SGD steps, as one buffer. */
static float *train(int threads, int steps, size_t *len)
{
    net n = make_net(256);
    stg_plan *p = tu_plan(n.g, n.loss, threads, STG_OPTIM_SGD);
    fill_net(p, &n);
    for (int i = 0; i < steps; i++)
        assert_int_equal(stg_plan_step(p), STG_OK);
    size_t total = 1;
    stg_tensor params[7] = {n.w[0], n.w[1], n.w[2], n.b[0], n.b[1], n.b[2], n.v};
    for (int i = 0; i < 7; i++)
        total += (size_t)stg_tensor_numel(n.g, params[i]);
    float *out = malloc(total * sizeof(float)), *q = out;
    *q++ = stg_plan_loss(p);
    for (int i = 0; i < 7; i++) {
        int64_t k = stg_tensor_numel(n.g, params[i]);
        memcpy(q, stg_plan_data(p, params[i]), (size_t)k * sizeof(float));
        q += k;
    }
    *len = total;
    stg_plan_free(p);
    stg_graph_free(n.g);
    return out;
}

/* BENCH.md's lenet at a small batch: conv 16 3x3 pad 1 -> max pool 2 ->
 * relu -> conv 32 3x3 pad 1 -> max pool 2 -> relu -> 1568-128 -> relu -> 10. */
typedef struct lenet {
    stg_graph *g;
    stg_tensor x, y, w[4], b[4], loss;
} lenet;

static lenet make_lenet(int batch)
{
    lenet n = {.g = stg_graph_new()};
    stg_graph *g = n.g;
    n.x = stg_input(g, "x", 4, (int64_t[]){batch, 1, 28, 28});
    n.y = stg_input_i32(g, "y", 1, (int64_t[]){batch});
    n.w[0] = stg_param(g, "c1", 4, (int64_t[]){16, 1, 3, 3});
    n.w[1] = stg_param(g, "c2", 4, (int64_t[]){32, 16, 3, 3});
    n.w[2] = stg_param(g, "f1", 2, (int64_t[]){1568, 128});
    n.w[3] = stg_param(g, "f2", 2, (int64_t[]){128, 10});
    int64_t bd[4] = {16, 32, 128, 10};
    for (int l = 0; l < 4; l++)
        n.b[l] = stg_param(g, "b", 1, &bd[l]);
    stg_conv_params same = {.padding = {1, 1}};
    stg_pool_params two = {{2, 2}, {0, 0}, {0, 0}};
    stg_tensor h = stg_relu(g, stg_max_pool2d(g, stg_conv2d(g, n.x, n.w[0], n.b[0], &same), &two));
    h = stg_relu(g, stg_max_pool2d(g, stg_conv2d(g, h, n.w[1], n.b[1], &same), &two));
    h = stg_reshape(g, h, 2, (int64_t[]){batch, 1568});
    h = stg_relu(g, stg_add(g, stg_matmul(g, h, n.w[2]), n.b[2]));
    h = stg_add(g, stg_matmul(g, h, n.w[3]), n.b[3]);
    n.loss = stg_softmax_cross_entropy(g, h, n.y, STG_REDUCE_MEAN);
    assert_int_equal(stg_graph_status(g), STG_OK);
    return n;
}

static void fill_lenet(stg_plan *p, const lenet *n, int batch)
{
    tu_fill(stg_plan_data(p, n->x), (int64_t)batch * 784, 1, 0, 1);
    int32_t *y = stg_plan_data_i32(p, n->y);
    for (int i = 0; i < batch; i++)
        y[i] = (i * 7) % 10;
    for (int l = 0; l < 4; l++) {
        tu_fill(stg_plan_data(p, n->w[l]), stg_tensor_numel(n->g, n->w[l]), 40 + l, -0.1f, 0.1f);
        tu_fill(stg_plan_data(p, n->b[l]), stg_tensor_numel(n->g, n->b[l]), 50 + l, -0.1f, 0.1f);
    }
}

/* Convolution steps allocate nothing and give the same bits at 1 and 2
 * threads, as the MLP's do. */
static void test_lenet_steps(void **state)
{
    (void)state;
    float *params[2] = {NULL, NULL};
    size_t bytes = 0;
    for (int threads = 1; threads <= 2; threads++) {
        lenet n = make_lenet(8);
        stg_plan *p = tu_plan(n.g, n.loss, threads, STG_OPTIM_SGD);
        fill_lenet(p, &n, 8);
        assert_int_equal(stg_plan_step(p), STG_OK);
        long before = allochook_calls();
        for (int i = 0; i < 5; i++)
            assert_int_equal(stg_plan_step(p), STG_OK);
        long calls = allochook_calls() - before;
        if (allochook_works()) {
            print_message("lenet, %d thread(s): %ld allocator calls in 5 steps\n", threads, calls);
            assert_int_equal(calls, 0);
        }
        bytes = (size_t)stg_tensor_numel(n.g, n.w[1]) * sizeof(float);
        params[threads - 1] = malloc(bytes + sizeof(float));
        memcpy(params[threads - 1], stg_plan_data(p, n.w[1]), bytes);
        params[threads - 1][bytes / sizeof(float)] = stg_plan_loss(p);
        assert_true(stg_plan_loss(p) > 0 && stg_plan_loss(p) < 5);
        stg_plan_free(p);
        stg_graph_free(n.g);
    }
    assert_memory_equal(params[0], params[1], bytes + sizeof(float));
    free(params[0]);
    free(params[1]);
}

/* A convolution, batch norm and ReLU, then a linear classifier: enough
 * channels and positions that every batch-norm kernel splits its work. */
typedef struct bn_net {
    stg_graph *g;
    stg_tensor x, y, conv, gamma, beta, fc, mean, var, loss, logits;
} bn_net;

static bn_net make_bn_net(int batch)
{
    bn_net n = {.g = stg_graph_new()};
    stg_graph *g = n.g;
    int64_t c = 8;
    n.x = stg_input(g, "x", 4, (int64_t[]){batch, 2, 12, 12});
    n.y = stg_input_i32(g, "y", 1, (int64_t[]){batch});
    n.conv = stg_param(g, "conv.weight", 4, (int64_t[]){c, 2, 3, 3});
    n.gamma = stg_param(g, "bn.weight", 1, &c);
    n.beta = stg_param(g, "bn.bias", 1, &c);
    n.mean = stg_stat(g, "bn.running_mean", 1, &c, 0.0f);
    n.var = stg_stat(g, "bn.running_var", 1, &c, 1.0f);
    n.fc = stg_param(g, "fc.weight", 2, (int64_t[]){c * 144, 10});
    stg_conv_params same = {.padding = {1, 1}};
    stg_tensor h = stg_conv2d(g, n.x, n.conv, (stg_tensor){-1}, &same);
    h = stg_relu(g, stg_batch_norm(g, h, n.gamma, n.beta, n.mean, n.var, NULL));
    n.logits = stg_matmul(g, stg_reshape(g, h, 2, (int64_t[]){batch, c * 144}), n.fc);
    n.loss = stg_softmax_cross_entropy(g, n.logits, n.y, STG_REDUCE_MEAN);
    assert_int_equal(stg_graph_status(g), STG_OK);
    return n;
}

static void fill_bn_net(stg_plan *p, const bn_net *n, int batch, uint64_t seed)
{
    tu_fill(stg_plan_data(p, n->x), stg_tensor_numel(n->g, n->x), seed, -1, 3);
    int32_t *y = stg_plan_data_i32(p, n->y);
    for (int i = 0; i < batch; i++)
        y[i] = (int32_t)((i * 7 + seed) % 10);
}

/* What a step may change, in one block for comparisons. */
typedef struct bn_state {
    float conv[8 * 18], gamma[8], beta[8], mean[8], var[8], fc[8 * 144 * 10];
} bn_state;

static void get_bn_state(stg_plan *p, const bn_net *n, bn_state *s)
{
    assert_int_equal(stg_plan_get(p, n->conv, s->conv, 8 * 18), STG_OK);
    assert_int_equal(stg_plan_get(p, n->gamma, s->gamma, 8), STG_OK);
    assert_int_equal(stg_plan_get(p, n->beta, s->beta, 8), STG_OK);
    assert_int_equal(stg_plan_get(p, n->mean, s->mean, 8), STG_OK);
    assert_int_equal(stg_plan_get(p, n->var, s->var, 8), STG_OK);
    assert_int_equal(stg_plan_get(p, n->fc, s->fc, 8 * 144 * 10), STG_OK);
}

/* 'steps' Adam steps from fixed parameters (after loading 'load' if given;
 * saving 'save' after step 2 if given). */
static void run_bn_net(int threads, int steps, const char *save, const char *load, bn_state *out)
{
    const int batch = 16;
    bn_net n = make_bn_net(batch);
    stg_plan *p = tu_plan(n.g, n.loss, threads, STG_OPTIM_ADAM);
    tu_fill(stg_plan_data(p, n.conv), 8 * 18, 61, -0.3f, 0.3f);
    tu_fill(stg_plan_data(p, n.fc), 8 * 144 * 10, 62, -0.05f, 0.05f);
    assert_int_equal(stg_plan_init(p, n.gamma, STG_INIT_ONES, 0, 0, 0), STG_OK);
    if (load)
        assert_int_equal(stg_plan_load(p, load), STG_OK);
    for (int k = 0; k < steps; k++) {
        fill_bn_net(p, &n, batch, (uint64_t)(stg_plan_steps(p) + 1));
        long before = allochook_calls();
        assert_int_equal(stg_plan_step(p), STG_OK);
        long calls = allochook_calls() - before;
        if (k > 0 && allochook_works() && calls != 0)
            fail_msg("%d thread(s), step %d: %ld allocator calls", threads, k, calls);
        if (save && stg_plan_steps(p) == 2)
            assert_int_equal(stg_plan_save(p, save), STG_OK);
    }
    get_bn_state(p, &n, out);
    stg_plan_free(p);
    stg_graph_free(n.g);
}

/* Batch norm in training: running statistics move, and are the same bits
 * at 1 and 2 threads and after a resume; a failed step (a NaN input, a bad
 * label) leaves them and every parameter unchanged; the inference plan
 * needs no gradient or optimizer state and allocates nothing. */
static void test_batch_norm_training(void **state)
{
    (void)state;
    static bn_state one, two, resumed, before, after;
    char dir[] = "/tmp/stg_bn_XXXXXX", ck[64];
    assert_non_null(mkdtemp(dir));
    snprintf(ck, sizeof ck, "%s/after2.ck", dir);
    run_bn_net(1, 5, ck, NULL, &one);
    run_bn_net(2, 5, NULL, NULL, &two);
    assert_memory_equal(&one, &two, sizeof one);
    run_bn_net(2, 3, NULL, ck, &resumed);
    assert_memory_equal(&one, &resumed, sizeof one);
    assert_true(one.var[0] != 1.0f && one.mean[0] != 0.0f);
    remove(ck);
    rmdir(dir);

    const int batch = 16;
    bn_net n = make_bn_net(batch);
    stg_plan *p = tu_plan(n.g, n.loss, 2, STG_OPTIM_SGD);
    tu_fill(stg_plan_data(p, n.fc), 8 * 144 * 10, 62, -0.05f, 0.05f);
    tu_fill(stg_plan_data(p, n.conv), 8 * 18, 61, -0.3f, 0.3f);
    fill_bn_net(p, &n, batch, 1);
    assert_int_equal(stg_plan_step(p), STG_OK);
    get_bn_state(p, &n, &before);
    stg_plan_data(p, n.x)[5] = NAN;
    assert_int_equal(stg_plan_step(p), STG_NUMERIC);
    get_bn_state(p, &n, &after);
    assert_memory_equal(&before, &after, sizeof before);
    fill_bn_net(p, &n, batch, 1);
    stg_plan_data_i32(p, n.y)[3] = 10;
    assert_int_not_equal(stg_plan_step(p), STG_OK);
    get_bn_state(p, &n, &after);
    assert_memory_equal(&before, &after, sizeof before);
    assert_int_equal(stg_plan_steps(p), 1);

    /* inference: the running statistics, no gradients, no optimizer state */
    stg_graph_keep(n.g, n.logits);
    stg_plan_options o;
    stg_plan_options_init(&o);
    o.inference = 1;
    o.threads = 2;
    stg_plan *ip = tu_plan_with(n.g, (stg_tensor){-1}, &o);
    stg_memory_report tr, ir;
    assert_int_equal(stg_plan_memory(p, &tr), STG_OK);
    assert_int_equal(stg_plan_memory(ip, &ir), STG_OK);
    print_message("batch norm net: training arena %zu bytes, inference %zu (gradients %zu, "
                  "optimizer state %zu)\n", tr.arena_bytes, ir.arena_bytes, tr.grad_bytes,
                  tr.state_bytes);
    assert_true(ir.arena_bytes + tr.grad_bytes + tr.state_bytes <= tr.arena_bytes);
    assert_int_equal(ir.grad_bytes + ir.state_bytes, 0);
    assert_int_equal(stg_plan_init(ip, n.gamma, STG_INIT_ONES, 0, 0, 0), STG_OK);
    tu_fill(stg_plan_data(ip, n.fc), 8 * 144 * 10, 62, -0.05f, 0.05f);
    tu_fill(stg_plan_data(ip, n.conv), 8 * 18, 61, -0.3f, 0.3f);
    float *rm = stg_plan_data(ip, n.mean);
    for (int k = 0; k < 8; k++)
        rm[k] = 1e3f; /* a mean far from the data: the output must follow it */
    fill_bn_net(ip, &n, batch, 1);
    assert_int_equal(stg_plan_forward(ip), STG_OK);
    long calls = allochook_calls();
    assert_int_equal(stg_plan_forward(ip), STG_OK);
    calls = allochook_calls() - calls;
    if (allochook_works())
        assert_int_equal(calls, 0);
    const float *lg = stg_plan_data(ip, n.logits);
    float ref[10];
    memcpy(ref, lg, sizeof ref);
    for (int k = 0; k < 8; k++)
        rm[k] = 0.0f;
    assert_int_equal(stg_plan_forward(ip), STG_OK);
    assert_true(memcmp(ref, lg, sizeof ref) != 0);
    stg_plan_free(ip);
    stg_plan_free(p);
    stg_graph_free(n.g);
}

/* Embedding (many repeated indices) into layer norm, at sizes where every
 * kernel splits its work: the same bits at 1 and 2 threads, and steps that
 * allocate nothing. */
static void run_embed_ln(int threads, float *dw, float *dlw)
{
    enum { V = 50, D = 128, T = 300 };
    stg_graph *g = stg_graph_new();
    stg_tensor w = stg_param(g, "emb", 2, (int64_t[]){V, D});
    stg_tensor lw = stg_param(g, "ln.weight", 1, (int64_t[]){D});
    stg_tensor lb = stg_param(g, "ln.bias", 1, (int64_t[]){D});
    stg_tensor idx = stg_input_i32(g, "idx", 2, (int64_t[]){T / 20, 20});
    stg_tensor h = stg_layer_norm(g, stg_embedding(g, w, idx, 3), 1, lw, lb, 1e-5f);
    stg_tensor loss = stg_sum(g, stg_mul(g, h, stg_tanh(g, h)), 0, NULL, 0);
    assert_int_equal(stg_graph_status(g), STG_OK);
    stg_plan *p = tu_plan(g, loss, threads, STG_OPTIM_NONE);
    tu_fill(stg_plan_data(p, w), V * D, 81, -1, 1);
    tu_fill(stg_plan_data(p, lw), D, 82, 0.5f, 1.5f);
    int32_t *iv = stg_plan_data_i32(p, idx);
    for (int i = 0; i < T; i++)
        iv[i] = (int32_t)((i * i + 7 * i) % V);
    assert_int_equal(stg_plan_step(p), STG_OK);
    long before = allochook_calls();
    for (int i = 0; i < 3; i++)
        assert_int_equal(stg_plan_step(p), STG_OK);
    long calls = allochook_calls() - before;
    if (allochook_works())
        assert_int_equal(calls, 0);
    memcpy(dw, stg_plan_grad(p, w), sizeof(float) * V * D);
    memcpy(dlw, stg_plan_grad(p, lw), sizeof(float) * D);
    for (int c = 0; c < D; c++)
        assert_true(dw[3 * D + c] == 0.0f); /* the padding row */
    stg_plan_free(p);
    stg_graph_free(g);
}

static void test_embedding_layer_norm_threads(void **state)
{
    (void)state;
    static float dw[2][50 * 128], dlw[2][128];
    run_embed_ln(1, dw[0], dlw[0]);
    run_embed_ln(2, dw[1], dlw[1]);
    assert_memory_equal(dw[0], dw[1], sizeof dw[0]);
    assert_memory_equal(dlw[0], dlw[1], sizeof dlw[0]);
}

/* A two-layer LSTM and a GRU trained with Adam: steps allocate nothing,
 * and the parameters are the same bits at 1 and 2 threads. */
static void run_recurrent(int threads, stg_rnn_mode mode, float *params, int64_t *count)
{
    enum { T = 10, N = 16, I = 8, H = 64 };
    stg_graph *g = stg_graph_new();
    stg_tensor x = stg_input(g, "x", 3, (int64_t[]){N, T, I});
    stg_tensor y = stg_input_i32(g, "y", 1, (int64_t[]){N});
    stg_rnn r = {.mode = mode, .input_size = I, .hidden_size = H, .num_layers = 2,
                 .batch_first = 1};
    assert_int_equal(stg_rnn_params(g, &r, "rnn"), STG_OK);
    stg_tensor hn, out = stg_rnn_apply(g, &r, x, (stg_tensor){-1}, (stg_tensor){-1}, &hn, NULL);
    stg_tensor last = stg_reshape(g, stg_slice(g, out, 1, T - 1, T, 1), 2, (int64_t[]){N, H});
    stg_tensor fc = stg_param(g, "fc", 2, (int64_t[]){H, 10});
    stg_tensor loss = stg_softmax_cross_entropy(g, stg_matmul(g, last, fc), y, STG_REDUCE_MEAN);
    loss = stg_add(g, loss, stg_scale(g, stg_sum(g, stg_mul(g, hn, hn), 0, NULL, 0), 1e-3f));
    assert_int_equal(stg_graph_status(g), STG_OK);
    stg_plan *p = tu_plan(g, loss, threads, STG_OPTIM_ADAM);
    stg_tensor all[9] = {fc};
    int n = 1;
    for (int l = 0; l < 2; l++) {
        all[n++] = r.weight_ih[l], all[n++] = r.weight_hh[l];
        all[n++] = r.bias_ih[l], all[n++] = r.bias_hh[l];
    }
    for (int k = 0; k < n; k++)
        assert_int_equal(stg_plan_init(p, all[k], STG_INIT_UNIFORM, -0.125f, 0.125f, 90 + k),
                         STG_OK);
    tu_fill(stg_plan_data(p, x), N * T * I, 91, -1, 1);
    int32_t *yv = stg_plan_data_i32(p, y);
    for (int i = 0; i < N; i++)
        yv[i] = (i * 3) % 10;
    assert_int_equal(stg_plan_step(p), STG_OK);
    float first = stg_plan_loss(p);
    long before = allochook_calls();
    for (int i = 0; i < 5; i++)
        assert_int_equal(stg_plan_step(p), STG_OK);
    long calls = allochook_calls() - before;
    if (allochook_works())
        assert_int_equal(calls, 0);
    assert_true(stg_plan_loss(p) < first);
    *count = 0;
    for (int k = 0; k < n; k++) {
        int64_t m = stg_tensor_numel(g, all[k]);
        memcpy(params + *count, stg_plan_data(p, all[k]), (size_t)m * sizeof(float));
        *count += m;
    }
    stg_plan_free(p);
    stg_graph_free(g);
}

static void test_recurrent_steps(void **state)
{
    (void)state;
    static float a[200000], b[200000];
    for (int mode = STG_LSTM; mode <= STG_GRU; mode++) {
        int64_t na, nb;
        run_recurrent(1, (stg_rnn_mode)mode, a, &na);
        run_recurrent(2, (stg_rnn_mode)mode, b, &nb);
        assert_int_equal(na, nb);
        assert_memory_equal(a, b, (size_t)na * sizeof(float));
    }
}

/* Dropout: y = x m / (1 - p) with P(m = 0) = p, its gradient g m / (1 - p)
 * (checked as g y / x), the same masks at 1 and 2 threads and after a
 * resume, new masks each step, the identity in an inference plan. */
typedef struct drop_run {
    float y[2][20000], dx[20000];
} drop_run;

static void run_dropout(int threads, drop_run *r, const char *save, const char *load)
{
    const int64_t n = 20000;
    const float p = 0.3f;
    stg_graph *g = stg_graph_new();
    stg_tensor x = stg_input(g, "x", 1, &n), s = stg_input(g, "s", 1, &n);
    stg_graph_require_grad(g, x);
    stg_tensor y = stg_dropout(g, x, p);
    stg_graph_keep(g, y);
    stg_tensor loss = stg_sum(g, stg_mul(g, y, s), 0, NULL, 0);
    stg_plan_options o;
    stg_plan_options_init(&o);
    o.threads = threads;
    o.optimizer = STG_OPTIM_NONE;
    o.seed = 42;
    stg_plan *pl = tu_plan_with(g, loss, &o);
    tu_fill(stg_plan_data(pl, x), n, 1, 0.5f, 1.5f); /* away from 0: y / x is the mask */
    tu_fill(stg_plan_data(pl, s), n, 2, -1, 1);
    if (load)
        assert_int_equal(stg_plan_load(pl, load), STG_OK);
    for (int k = 0; k < 2; k++) {
        assert_int_equal(stg_plan_step(pl), STG_OK);
        assert_int_equal(stg_plan_get(pl, y, r->y[k], n), STG_OK);
        if (k == 0 && save)
            assert_int_equal(stg_plan_save(pl, save), STG_OK);
    }
    memcpy(r->dx, stg_plan_grad(pl, x), sizeof r->dx);
    const float *xv = stg_plan_data(pl, x), *sv = stg_plan_data(pl, s);
    int64_t zeros = 0;
    for (int64_t i = 0; i < n; i++) {
        double want = r->y[1][i] == 0.0f ? 0.0 : (double)xv[i] / (1.0 - p);
        assert_true(fabs(r->y[1][i] - want) <= 1e-6 * fabs(want));
        double dwant = r->y[1][i] == 0.0f ? 0.0 : (double)sv[i] / (1.0 - p);
        assert_true(fabs(r->dx[i] - dwant) <= 1e-6 * fabs(dwant) + 1e-12);
        zeros += r->y[1][i] == 0.0f;
    }
    /* a binomial count: 5 standard deviations (about 325) either side of 6000 */
    assert_true(llabs(zeros - 6000) < 5 * 65);
    stg_plan_free(pl);
    stg_graph_free(g);
}

static void test_dropout(void **state)
{
    (void)state;
    static drop_run one, two, resumed;
    char dir[] = "/tmp/stg_dropout_XXXXXX", ck[64];
    assert_non_null(mkdtemp(dir));
    snprintf(ck, sizeof ck, "%s/after1.ck", dir);
    run_dropout(1, &one, ck, NULL);
    run_dropout(2, &two, NULL, NULL);
    assert_memory_equal(&one, &two, sizeof one); /* any thread count */
    assert_true(memcmp(one.y[0], one.y[1], sizeof one.y[0]) != 0); /* a new mask each step */
    /* resumed after step 1: its first step is step 2 of the straight run */
    run_dropout(1, &resumed, NULL, ck);
    assert_memory_equal(resumed.y[0], one.y[1], sizeof one.y[1]);
    remove(ck);
    rmdir(dir);

    /* an inference plan: the identity */
    const int64_t n = 100;
    stg_graph *g = stg_graph_new();
    stg_tensor x = stg_input(g, "x", 1, &n);
    stg_tensor y = stg_dropout(g, x, 0.5f);
    stg_graph_keep(g, y);
    stg_plan_options o;
    stg_plan_options_init(&o);
    o.inference = 1;
    stg_plan *pl = tu_plan_with(g, (stg_tensor){-1}, &o);
    tu_fill(stg_plan_data(pl, x), n, 3, -1, 1);
    assert_int_equal(stg_plan_forward(pl), STG_OK);
    float out[100];
    assert_int_equal(stg_plan_get(pl, y, out, n), STG_OK);
    assert_memory_equal(out, stg_plan_data(pl, x), sizeof out);
    stg_plan_free(pl);
    /* in training, a NaN stays a NaN whether dropped or kept (PyTorch
     * multiplies by the mask) */
    stg_plan_options_init(&o);
    pl = tu_plan_with(g, (stg_tensor){-1}, &o);
    float *xv = stg_plan_data(pl, x);
    for (int64_t i = 0; i < n; i++)
        xv[i] = NAN;
    assert_int_equal(stg_plan_forward(pl), STG_OK);
    assert_int_equal(stg_plan_get(pl, y, out, n), STG_OK);
    for (int64_t i = 0; i < n; i++)
        assert_true(isnan(out[i]));
    stg_plan_free(pl);
    /* an inference plan with a loss is refused; p outside [0, 1] too */
    stg_tensor l = stg_sum(g, y, 0, NULL, 0);
    stg_plan *bad = NULL;
    o.inference = 1;
    assert_int_equal(stg_plan_create(g, l, &o, &bad), STG_INVALID);
    assert_non_null(strstr(stg_plan_last_message(), "inference plan has no loss"));
    stg_tensor z = stg_dropout(g, x, 1.5f);
    assert_true(z.id < 0);
    assert_non_null(strstr(stg_graph_message(g), "dropout: p = 1.5"));
    stg_graph_free(g);
}

/* An inference plan that reads a training plan's parameters: no copy, a
 * smaller arena, the training plan's forward values bit for bit, also after
 * a step changed the parameters; mismatches and misuse refused. */
static void test_inference_plan_shares_parameters(void **state)
{
    (void)state;
    net n = make_net(16);
    stg_plan *tp = tu_plan(n.g, n.loss, 2, STG_OPTIM_SGD);
    fill_net(tp, &n);
    assert_int_equal(stg_plan_step(tp), STG_OK);
    stg_graph_keep(n.g, n.loss);
    stg_plan_options o;
    stg_plan_options_init(&o);
    o.inference = 1;
    o.threads = 2;
    stg_plan *own = tu_plan_with(n.g, (stg_tensor){-1}, &o);
    o.share_params = tp;
    stg_plan *shared = tu_plan_with(n.g, (stg_tensor){-1}, &o);
    size_t params = 0;
    for (int l = 0; l < 3; l++)
        params += (size_t)(stg_tensor_numel(n.g, n.w[l]) + stg_tensor_numel(n.g, n.b[l]));
    params += (size_t)stg_tensor_numel(n.g, n.v);
    print_message("arena: %zu bytes with its own parameters, %zu sharing them (parameters %zu)\n",
                  stg_plan_arena_bytes(own), stg_plan_arena_bytes(shared), params * 4);
    assert_true(stg_plan_arena_bytes(shared) + params * 4 <= stg_plan_arena_bytes(own) + 64 * 8);
    assert_true(stg_plan_data(shared, n.w[0]) == stg_plan_data(tp, n.w[0])); /* no copy */
    char msg[256];
    assert_int_equal(stg_plan_check(shared, msg, sizeof msg), STG_OK);
    for (int k = 0; k < 2; k++) {
        tu_fill(stg_plan_data(tp, n.x), stg_tensor_numel(n.g, n.x), 5 + k, 0, 1);
        tu_fill(stg_plan_data(shared, n.x), stg_tensor_numel(n.g, n.x), 5 + k, 0, 1);
        tu_fill(stg_plan_data(tp, n.t), stg_tensor_numel(n.g, n.t), 6 + k, 0, 1);
        tu_fill(stg_plan_data(shared, n.t), stg_tensor_numel(n.g, n.t), 6 + k, 0, 1);
        assert_int_equal(stg_plan_forward(tp), STG_OK);
        assert_int_equal(stg_plan_forward(shared), STG_OK);
        float a = stg_plan_loss(tp), b;
        assert_int_equal(stg_plan_get(shared, n.loss, &b, 1), STG_OK);
        assert_memory_equal(&a, &b, sizeof a);
        assert_int_equal(stg_plan_step(tp), STG_OK); /* new parameters, seen without a copy */
    }
    assert_int_equal(stg_plan_load(shared, "/nonexistent.ck"), STG_INVALID);
    assert_non_null(strstr(stg_plan_message(shared), "share_params"));
    stg_plan_free(shared);
    stg_plan_free(own);

    /* a graph whose parameters differ; share_params without inference */
    net other = make_net(16);
    stg_graph *g2 = stg_graph_new();
    stg_tensor x2 = stg_input(g2, "x", 2, (int64_t[]){16, 784});
    stg_tensor w2 = stg_param(g2, "w", 2, (int64_t[]){784, 10});
    stg_graph_keep(g2, stg_matmul(g2, x2, w2));
    stg_plan *bad = NULL;
    assert_int_equal(stg_plan_create(g2, (stg_tensor){-1}, &o, &bad), STG_INVALID);
    assert_non_null(strstr(stg_plan_last_message(), "no twin in the other plan"));
    o.inference = 0;
    assert_int_equal(stg_plan_create(other.g, (stg_tensor){-1}, &o, &bad), STG_INVALID);
    assert_non_null(strstr(stg_plan_last_message(), "share_params is for inference plans"));
    stg_graph_free(g2);
    stg_graph_free(other.g);
    stg_plan_free(tp);
    stg_graph_free(n.g);
}

static void test_bitwise_reproducible(void **state)
{
    (void)state;
    size_t la, lb, lc;
    float *a = train(1, 5, &la), *b = train(1, 5, &lb), *c = train(2, 5, &lc);
    assert_int_equal(la, lb);
    assert_int_equal(la, lc);
    assert_memory_equal(a, b, la * sizeof(float));
    assert_memory_equal(a, c, la * sizeof(float)); /* 1 thread == 2 threads */
    free(a);
    free(b);
    free(c);
}

static void test_loss_falls(void **state)
{
    (void)state;
    net n = make_net(32);
    stg_plan *p = tu_plan(n.g, n.loss, 2, STG_OPTIM_SGD);
    fill_net(p, &n);
    stg_plan_set_lr(p, 0.05f);
    stg_plan_step(p);
    float first = stg_plan_loss(p);
    for (int i = 0; i < 50; i++)
        stg_plan_step(p);
    float last = stg_plan_loss(p);
    print_message("loss %g -> %g after 50 steps\n", first, last);
    assert_true(last < 0.5f * first);
    stg_plan_free(p);
    stg_graph_free(n.g);
}

/* p_new = p_old - lr * grad, with the gradient the step computed; gradients
 * stay readable and unchanged by later forward-only runs. */
static void test_sgd_update_and_grad_persistence(void **state)
{
    (void)state;
    net n = make_net(8);
    stg_plan *p = tu_plan(n.g, n.loss, 1, STG_OPTIM_SGD);
    fill_net(p, &n);
    const float lr = 0.125f;
    stg_plan_set_lr(p, lr);
    int64_t k = stg_tensor_numel(n.g, n.w[1]);
    float *before = malloc((size_t)k * sizeof(float)), *grad = malloc((size_t)k * sizeof(float));
    memcpy(before, stg_plan_data(p, n.w[1]), (size_t)k * sizeof(float));
    stg_plan_step(p);
    memcpy(grad, stg_plan_grad(p, n.w[1]), (size_t)k * sizeof(float));
    const float *after = stg_plan_data(p, n.w[1]);
    double nonzero = 0;
    for (int64_t i = 0; i < k; i++) {
        float want = before[i] - lr * grad[i];
        assert_true(after[i] == want);
        nonzero += grad[i] != 0.0f;
    }
    assert_true(nonzero > k / 2);
    stg_plan_forward(p);
    assert_memory_equal(grad, stg_plan_grad(p, n.w[1]), (size_t)k * sizeof(float));
    free(before);
    free(grad);
    stg_plan_free(p);
    stg_graph_free(n.g);
}

/* Kept values are part of the forward pass: a forward-only run fills them,
 * and a step shows them as the forward pass saw them, before the update. */
/* A reshape or broadcast_to that changes nothing is still a view of its
 * own: the gradient asked for on it is the gradient through it, as
 * PyTorch's retain_grad on the view gives.  z = 2 y + x with y a view of x:
 * dz/dy = 2, dz/dx = 3. */
static void test_same_shape_view_has_its_own_gradient(void **state)
{
    (void)state;
    int64_t d[2] = {2, 3};
    for (int kind = 0; kind < 2; kind++) {
        stg_graph *g = stg_graph_new();
        stg_tensor x = stg_param(g, "x", 2, d);
        stg_tensor y = kind ? stg_broadcast_to(g, x, 2, d) : stg_reshape(g, x, 2, d);
        assert_int_not_equal(y.id, x.id);
        stg_graph_require_grad(g, y);
        stg_tensor loss = stg_sum(g, stg_add(g, stg_scale(g, y, 2.0f), x), 0, NULL, 0);
        stg_plan *p = tu_plan(g, loss, 1, STG_OPTIM_NONE);
        tu_fill(stg_plan_data(p, x), 6, 5, -1, 1);
        assert_int_equal(stg_plan_step(p), STG_OK);
        const float *gy = stg_plan_grad(p, y), *gx = stg_plan_grad(p, x);
        assert_non_null(gy);
        assert_non_null(gx);
        for (int i = 0; i < 6; i++) {
            assert_true(gy[i] == 2.0f);
            assert_true(gx[i] == 3.0f);
        }
        stg_plan_free(p);
        stg_graph_free(g);
    }
}

static void test_kept_values_are_forward_values(void **state)
{
    (void)state;
    stg_graph *g = stg_graph_new();
    int64_t xd[2] = {2, 3};
    stg_tensor x = stg_input(g, "x", 2, xd), w = stg_param(g, "w", 2, xd);
    stg_tensor xt = stg_transpose(g, stg_scale(g, x, 2.0f), (const int[]){1, 0});
    stg_tensor wt = stg_swapaxes(g, w, 0, 1); /* a strided view: kept through a copy */
    stg_graph_keep(g, xt);
    stg_graph_keep(g, wt);
    stg_tensor loss = stg_sum(g, stg_mul(g, stg_mul(g, x, w), w), 0, NULL, 0);
    stg_plan *p = tu_plan(g, loss, 1, STG_OPTIM_SGD);
    const float xv[6] = {1, 2, 3, 4, 5, 6}, wv[6] = {0.5f, -1, 2, 1, 0.25f, -2};
    stg_plan_set(p, x, xv, 6);
    stg_plan_set(p, w, wv, 6);
    assert_int_equal(stg_plan_forward(p), STG_OK);
    const float want_xt[6] = {2, 8, 4, 10, 6, 12}, want_wt[6] = {0.5f, 1, -1, 0.25f, 2, -2};
    assert_memory_equal(stg_plan_data(p, xt), want_xt, sizeof want_xt);
    assert_memory_equal(stg_plan_data(p, wt), want_wt, sizeof want_wt);
    assert_int_equal(stg_plan_step(p), STG_OK);
    assert_memory_equal(stg_plan_data(p, wt), want_wt, sizeof want_wt); /* not the updated w */
    assert_memory_not_equal(stg_plan_data(p, w), wv, sizeof wv);
    stg_plan_free(p);
    stg_graph_free(g);
}

/* Products cut into blocks, with lengths that are not multiples of the
 * vector width, at 1, 2 and 3 threads (3 makes a thread's blocks cross from
 * one product to the next): each result against a plain double-precision
 * loop, and bitwise the same at every thread count. */
typedef struct mm_case {
    int nda, ndb;
    int64_t a[3], b[3];
} mm_case;

/* c = a b with at most one batch dim, broadcast, vectors as 1-row/column
 * matrices; ga, gb the gradients for the upstream gradient g. */
static void mm_reference(const mm_case *mc, const float *a, const float *b, const float *g,
                         double *c, double *ga, double *gb)
{
    int64_t m = mc->nda >= 2 ? mc->a[mc->nda - 2] : 1, k = mc->a[mc->nda - 1];
    int64_t n = mc->ndb >= 2 ? mc->b[mc->ndb - 1] : 1;
    int64_t nba = mc->nda == 3 ? mc->a[0] : 1, nbb = mc->ndb == 3 ? mc->b[0] : 1;
    int64_t nb = nba > nbb ? nba : nbb;
    memset(ga, 0, sizeof(double) * (size_t)(nba * m * k));
    memset(gb, 0, sizeof(double) * (size_t)(nbb * k * n));
    for (int64_t t = 0; t < nb; t++) {
        const float *at = a + (nba > 1 ? t : 0) * m * k, *bt = b + (nbb > 1 ? t : 0) * k * n;
        const float *gt = g + t * m * n;
        double *gat = ga + (nba > 1 ? t : 0) * m * k, *gbt = gb + (nbb > 1 ? t : 0) * k * n;
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) {
                double s = 0;
                for (int64_t l = 0; l < k; l++) {
                    s += (double)at[i * k + l] * bt[l * n + j];
                    gat[i * k + l] += (double)gt[i * n + j] * bt[l * n + j];
                    gbt[l * n + j] += (double)at[i * k + l] * gt[i * n + j];
                }
                c[t * m * n + i * n + j] = s;
            }
    }
}

static void test_matmul_blocks_any_threads(void **state)
{
    (void)state;
    static const mm_case cases[] = {
        {1, 1, {4099}, {4099}},                 /* dot */
        {2, 1, {301, 1001}, {1001}},            /* gemv, rows in blocks */
        {2, 1, {3001, 77}, {77}},               /* gemv, 16 blocks */
        {1, 2, {1001}, {1001, 2049}},           /* gevm, columns in blocks */
        {2, 2, {2049, 1}, {1, 301}},            /* outer product (K = 1) */
        {2, 2, {201, 301}, {301, 1537}},        /* gemm cut along N */
        {2, 2, {1001, 77}, {77, 33}},           /* gemm cut along M */
        {3, 2, {3, 33, 17}, {17, 19}},          /* batch folded into M */
        {3, 3, {5, 37, 13}, {1, 13, 203}},      /* batched, b broadcast */
        {3, 3, {5, 37, 13}, {5, 13, 203}},      /* batched: one product per unit */
        {3, 3, {4, 150, 13}, {4, 13, 300}},     /* batched, each product in 2 blocks */
    };
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const mm_case *mc = &cases[ci];
        float *got[3][3] = {{NULL}};
        int64_t na = 0, nbv = 0, nc = 0;
        for (int ti = 0; ti < 3; ti++) {
            stg_graph *g = stg_graph_new();
            stg_tensor a = stg_input(g, "a", mc->nda, mc->a), b = stg_input(g, "b", mc->ndb, mc->b);
            stg_tensor c = stg_matmul(g, a, b);
            int64_t cd[STG_MAX_DIMS];
            int ndc = stg_tensor_shape(g, c, cd);
            stg_tensor gout = stg_input(g, "gout", ndc, cd);
            stg_graph_require_grad(g, a);
            stg_graph_require_grad(g, b);
            stg_graph_keep(g, c);
            stg_plan_options o;
            stg_plan_options_init(&o);
            o.threads = ti + 1;
            o.optimizer = STG_OPTIM_NONE;
            stg_plan *p = NULL;
            assert_int_equal(stg_plan_create_vjp(g, c, gout, &o, &p), STG_OK);
            na = stg_tensor_numel(g, a), nbv = stg_tensor_numel(g, b), nc = stg_tensor_numel(g, c);
            tu_fill(stg_plan_data(p, a), na, 1 + ci, -1, 1);
            tu_fill(stg_plan_data(p, b), nbv, 100 + ci, -1, 1);
            tu_fill(stg_plan_data(p, gout), nc, 200 + ci, -1, 1);
            assert_int_equal(stg_plan_step(p), STG_OK);
            const float *src[3] = {stg_plan_data(p, c), stg_plan_grad(p, a), stg_plan_grad(p, b)};
            int64_t len[3] = {nc, na, nbv};
            for (int r = 0; r < 3; r++) {
                got[ti][r] = malloc(sizeof(float) * (size_t)len[r]);
                assert_non_null(got[ti][r]);
                memcpy(got[ti][r], src[r], sizeof(float) * (size_t)len[r]);
            }
            if (ti == 0) { /* against the reference */
                float *in[3] = {malloc(sizeof(float) * (size_t)na), malloc(sizeof(float) * (size_t)nbv),
                                malloc(sizeof(float) * (size_t)nc)};
                double *want[3] = {malloc(sizeof(double) * (size_t)nc), malloc(sizeof(double) * (size_t)na),
                                   malloc(sizeof(double) * (size_t)nbv)};
                float *wantf = malloc(sizeof(float) * (size_t)(na + nbv + nc));
                assert_true(in[0] && in[1] && in[2] && want[0] && want[1] && want[2] && wantf);
                memcpy(in[0], stg_plan_data(p, a), sizeof(float) * (size_t)na);
                memcpy(in[1], stg_plan_data(p, b), sizeof(float) * (size_t)nbv);
                memcpy(in[2], stg_plan_data(p, gout), sizeof(float) * (size_t)nc);
                mm_reference(mc, in[0], in[1], in[2], want[0], want[1], want[2]);
                for (int r = 0; r < 3; r++) {
                    for (int64_t i = 0; i < len[r]; i++)
                        wantf[i] = (float)want[r][i];
                    double e = tu_err(got[0][r], wantf, len[r], 1e-3, 1e-4);
                    if (e > 1)
                        fail_msg("case %zu, result %d: error %.2f of the tolerance", ci, r, e);
                }
                for (int r = 0; r < 3; r++) {
                    free(in[r]);
                    free(want[r]);
                }
                free(wantf);
            }
            stg_plan_free(p);
            stg_graph_free(g);
        }
        int64_t len[3] = {nc, na, nbv};
        for (int ti = 1; ti < 3; ti++)
            for (int r = 0; r < 3; r++)
                if (memcmp(got[0][r], got[ti][r], sizeof(float) * (size_t)len[r]))
                    fail_msg("case %zu, result %d: %d threads differ from 1", ci, r, ti + 1);
        for (int ti = 0; ti < 3; ti++)
            for (int r = 0; r < 3; r++)
                free(got[ti][r]);
    }
}

/* -0.0 keeps its sign through the vector loops, as in PyTorch: 1 * -0 = -0. */
static void test_outer_keeps_negative_zero(void **state)
{
    (void)state;
    for (int64_t n = 1; n <= 17; n += 16) { /* one column (a scaled copy), then rows */
        stg_graph *g = stg_graph_new();
        int64_t ad[1] = {19}, bd[1] = {n};
        stg_tensor a = stg_input(g, "a", 1, ad), b = stg_input(g, "b", 1, bd);
        stg_tensor c = stg_outer(g, a, b);
        stg_graph_keep(g, c);
        stg_plan *p = tu_plan(g, (stg_tensor){-1}, 1, STG_OPTIM_NONE);
        float *av = stg_plan_data(p, a), *bv = stg_plan_data(p, b);
        for (int i = 0; i < 19; i++)
            av[i] = 1.0f;
        for (int64_t j = 0; j < n; j++)
            bv[j] = -0.0f;
        assert_int_equal(stg_plan_forward(p), STG_OK);
        const float *cv = stg_plan_data(p, c);
        for (int64_t i = 0; i < 19 * n; i++)
            if (cv[i] != 0.0f || !signbit(cv[i]))
                fail_msg("n %lld: element %lld is %g, not -0", (long long)n, (long long)i,
                         (double)cv[i]);
        stg_plan_free(p);
        stg_graph_free(g);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_steps_allocate_nothing),
        cmocka_unit_test(test_bitwise_reproducible),
        cmocka_unit_test(test_lenet_steps),
        cmocka_unit_test(test_dropout),
        cmocka_unit_test(test_batch_norm_training),
        cmocka_unit_test(test_embedding_layer_norm_threads),
        cmocka_unit_test(test_recurrent_steps),
        cmocka_unit_test(test_inference_plan_shares_parameters),
        cmocka_unit_test(test_loss_falls),
        cmocka_unit_test(test_sgd_update_and_grad_persistence),
        cmocka_unit_test(test_kept_values_are_forward_values),
        cmocka_unit_test(test_same_shape_view_has_its_own_gradient),
        cmocka_unit_test(test_matmul_blocks_any_threads),
        cmocka_unit_test(test_outer_keeps_negative_zero),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
