/*
 * The tools' models (see models.h).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models.h"

static const matmul_case cases[] = {
    {"dot", 1, 1, {4096}, {4096}, -1},
    {"mv", 2, 1, {512, 1024}, {1024}, -1},
    {"mv_batched", 3, 1, {32, 256, 512}, {512}, -1},
    {"vm", 1, 2, {1024}, {1024, 512}, -1},
    {"mm_square", 2, 2, {512, 512}, {512, 512}, -1},
    {"mm_batched", 3, 3, {64, 128, 64}, {64, 64, 128}, -1},
    {"mm_bcast_right", 3, 2, {32, 128, 256}, {256, 256}, -1},
    {"mm_bcast_both", 4, 4, {8, 1, 64, 128}, {1, 16, 128, 64}, -1},
    {"mlp_layer", 2, 2, {256, 784}, {784, 512}, -1},
    /* BENCH.md's "more cases": lenet's second convolution alone */
    {"conv2", 4, 4, {64, 16, 14, 14}, {32, 16, 3, 3}, 1},
};

const matmul_case *matmul_cases(int *count)
{
    *count = (int)(sizeof cases / sizeof cases[0]);
    return cases;
}

const matmul_case *matmul_case_find(const char *name)
{
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (!strcmp(cases[i].name, name))
            return &cases[i];
    return NULL;
}

bool mlp_parse(const char *s, mlp_spec *spec, char *err, size_t errlen)
{
    spec->n = 0;
    const char *p = s;
    while (*p) {
        char *end;
        long long v = strtoll(p, &end, 10);
        if (end == p || v < 1 || v > 1000000 || (*end && *end != ',') ||
            spec->n == MODEL_MAX_LAYERS + 1) {
            snprintf(err, errlen, "layer sizes '%s': expected 2 to %d sizes from 1 to 1000000, "
                     "separated by commas (e.g. 784,512,256,10)", s, MODEL_MAX_LAYERS + 1);
            return false;
        }
        spec->sizes[spec->n++] = v;
        p = *end ? end + 1 : end;
    }
    if (spec->n < 2) {
        snprintf(err, errlen, "layer sizes '%s': need at least an input and an output size", s);
        return false;
    }
    return true;
}

static stg_plan *fail(stg_graph *g, char *err, size_t errlen)
{
    snprintf(err, errlen, "%s", stg_graph_status(g) != STG_OK ? stg_graph_message(g)
                                                                : stg_plan_last_message());
    stg_graph_free(g);
    return NULL;
}

/* The plan of a BENCH.md training step: SGD lr 0.05 momentum 0.9. */
static stg_plan *training_plan(stg_graph *g, stg_tensor loss, stg_plan_options *opts)
{
    opts->optimizer = STG_OPTIM_SGD;
    opts->lr = 0.05f;
    opts->momentum = 0.9f;
    stg_plan *p = NULL;
    if (stg_graph_status(g) != STG_OK || stg_plan_create(g, loss, opts, &p) != STG_OK)
        return NULL;
    return p;
}

stg_plan *lenet_plan(int batch, stg_plan_options *opts, char *err, size_t errlen)
{
    stg_graph *g = stg_graph_new();
    if (!g) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    stg_tensor x = stg_input(g, "x", 4, (int64_t[]){batch, 1, 28, 28});
    stg_tensor y = stg_input_i32(g, "y", 1, (int64_t[]){batch});
    static const char *const names[4][2] = {{"conv1.w", "conv1.b"}, {"conv2.w", "conv2.b"},
                                            {"fc1.w", "fc1.b"}, {"fc2.w", "fc2.b"}};
    static const int64_t wd[4][4] = {{16, 1, 3, 3}, {32, 16, 3, 3}, {1568, 128}, {128, 10}};
    static const int wnd[4] = {4, 4, 2, 2};
    /* PyTorch's default init: kaiming_uniform(a = sqrt(5)) of fan_in, and a
     * bias uniform in +-1/sqrt(fan_in) */
    static const double fan_in[4] = {9, 144, 1568, 128};
    stg_tensor w[4], b[4];
    for (int l = 0; l < 4; l++) {
        w[l] = stg_param(g, names[l][0], wnd[l], wd[l]);
        b[l] = stg_param(g, names[l][1], 1, (int64_t[]){l < 2 ? wd[l][0] : wd[l][1]});
    }
    stg_conv_params same = {.padding = {1, 1}};
    stg_pool_params two = {{2, 2}, {0, 0}, {0, 0}};
    stg_tensor h = stg_relu(g, stg_max_pool2d(g, stg_conv2d(g, x, w[0], b[0], &same), &two));
    h = stg_relu(g, stg_max_pool2d(g, stg_conv2d(g, h, w[1], b[1], &same), &two));
    h = stg_reshape(g, h, 2, (int64_t[]){batch, 1568});
    h = stg_relu(g, stg_add(g, stg_matmul(g, h, w[2]), b[2]));
    h = stg_add(g, stg_matmul(g, h, w[3]), b[3]);
    stg_tensor loss = stg_softmax_cross_entropy(g, h, y, STG_REDUCE_MEAN);
    stg_plan *p = training_plan(g, loss, opts);
    if (!p)
        return fail(g, err, errlen);
    for (int l = 0; l < 4; l++) {
        float bound = (float)(1.0 / sqrt(fan_in[l]));
        stg_plan_init(p, w[l], STG_INIT_UNIFORM, -bound, bound, 10 + (uint64_t)l);
        stg_plan_init(p, b[l], STG_INIT_UNIFORM, -bound, bound, 20 + (uint64_t)l);
    }
    stg_plan_init(p, x, STG_INIT_UNIFORM, 0.0f, 1.0f, 1);
    int32_t *labels = stg_plan_data_i32(p, y);
    for (int i = 0; i < batch; i++)
        labels[i] = (int32_t)((i * 7) % 10);
    stg_graph_free(g);
    return p;
}

double lenet_flops(int batch)
{
    /* per sample: conv1 16x9 taps over 28x28, conv2 32x144 over 14x14, fc
     * 1568x128 and 128x10; three products each (forward, weight and input
     * gradients) but conv1's input gradient */
    double conv1 = 2.0 * 16 * 9 * 784, conv2 = 2.0 * 32 * 144 * 196, fc = 2.0 * (1568 * 128 + 128 * 10);
    return (double)batch * (2 * conv1 + 3 * conv2 + 3 * fc);
}

stg_plan *mlp_plan(const mlp_spec *spec, stg_plan_options *opts, char *err, size_t errlen)
{
    stg_graph *g = stg_graph_new();
    if (!g) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    int64_t xd[2] = {spec->batch, spec->sizes[0]}, yd[1] = {spec->batch};
    stg_tensor x = stg_input(g, "x", 2, xd), y = stg_input_i32(g, "y", 1, yd);
    stg_tensor h = x, w[MODEL_MAX_LAYERS], b[MODEL_MAX_LAYERS];
    int layers = spec->n - 1;
    for (int l = 0; l < layers; l++) {
        char wn[16], bn[16];
        snprintf(wn, sizeof wn, "w%d", l + 1);
        snprintf(bn, sizeof bn, "b%d", l + 1);
        int64_t wd[2] = {spec->sizes[l], spec->sizes[l + 1]}, bd[1] = {spec->sizes[l + 1]};
        w[l] = stg_param(g, wn, 2, wd);
        b[l] = stg_param(g, bn, 1, bd);
        h = stg_add(g, stg_matmul(g, h, w[l]), b[l]);
        if (l + 1 < layers)
            h = stg_relu(g, h);
    }
    stg_tensor loss = stg_softmax_cross_entropy(g, h, y, STG_REDUCE_MEAN);
    stg_plan *p = training_plan(g, loss, opts);
    if (!p)
        return fail(g, err, errlen);
    for (int l = 0; l < layers; l++) {
        stg_plan_init(p, w[l], STG_INIT_KAIMING_UNIFORM, 2.236068f, 0, 10 + (uint64_t)l);
        stg_plan_init(p, b[l], STG_INIT_UNIFORM, -0.04f, 0.04f, 20 + (uint64_t)l);
    }
    stg_plan_init(p, x, STG_INIT_UNIFORM, 0.0f, 1.0f, 1);
    int32_t *labels = stg_plan_data_i32(p, y);
    for (int i = 0; i < spec->batch; i++)
        labels[i] = (int32_t)((i * 7) % spec->sizes[spec->n - 1]);
    stg_graph_free(g);
    return p;
}

stg_plan *matmul_plan(const matmul_case *mc, bool backward, stg_plan_options *opts, char *err,
                      size_t errlen)
{
    stg_graph *g = stg_graph_new();
    if (!g) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    stg_tensor a = stg_input(g, "a", mc->nda, mc->a), b = stg_input(g, "b", mc->ndb, mc->b);
    stg_conv_params same = {.padding = {mc->pad, mc->pad}};
    stg_tensor c = mc->pad >= 0 ? stg_conv2d(g, a, b, (stg_tensor){-1}, &same)
                                : stg_matmul(g, a, b),
               gout = {-1};
    opts->optimizer = STG_OPTIM_NONE;
    stg_plan *p = NULL;
    stg_status s;
    if (backward) {
        int64_t d[STG_MAX_DIMS];
        int nd = stg_tensor_shape(g, c, d);
        gout = stg_input(g, "gout", nd, d);
        stg_graph_require_grad(g, a);
        stg_graph_require_grad(g, b);
        s = stg_graph_status(g) == STG_OK ? stg_plan_create_vjp(g, c, gout, opts, &p)
                                           : STG_INVALID;
    } else {
        stg_graph_keep(g, c);
        s = stg_graph_status(g) == STG_OK ? stg_plan_create(g, (stg_tensor){-1}, opts, &p)
                                           : STG_INVALID;
    }
    if (s != STG_OK)
        return fail(g, err, errlen);
    stg_plan_init(p, a, STG_INIT_UNIFORM, -1.0f, 1.0f, 1);
    stg_plan_init(p, b, STG_INIT_UNIFORM, -1.0f, 1.0f, 2);
    if (backward)
        stg_plan_init(p, gout, STG_INIT_UNIFORM, -1.0f, 1.0f, 3);
    stg_graph_free(g);
    return p;
}

/* The output plane of a convolution case along one axis. */
static double conv_out(const matmul_case *mc, int axis)
{
    return (double)(mc->a[axis] + 2 * mc->pad - mc->b[axis] + 1);
}

double matmul_case_flops(const matmul_case *mc, bool backward)
{
    if (mc->pad >= 0) /* 2 N O C KH KW OH OW */
        return 2.0 * (double)(mc->a[0] * mc->b[0] * mc->b[1] * mc->b[2] * mc->b[3]) *
               conv_out(mc, 2) * conv_out(mc, 3) * (backward ? 3.0 : 1.0);
    /* 2 M N K per product, times the broadcast batch */
    double m = mc->nda >= 2 ? (double)mc->a[mc->nda - 2] : 1.0;
    double n = mc->ndb >= 2 ? (double)mc->b[mc->ndb - 1] : 1.0;
    double k = (double)mc->a[mc->nda - 1], batch = 1.0;
    int ba = mc->nda > 2 ? mc->nda - 2 : 0, bb = mc->ndb > 2 ? mc->ndb - 2 : 0;
    for (int i = 0; i < (ba > bb ? ba : bb); i++) { /* batch dims, right-aligned */
        int64_t da = i < ba ? mc->a[ba - 1 - i] : 1, db = i < bb ? mc->b[bb - 1 - i] : 1;
        batch *= (double)(da > db ? da : db);
    }
    return 2.0 * batch * m * n * k * (backward ? 3.0 : 1.0);
}

double matmul_case_bytes(const matmul_case *mc, bool backward)
{
    double na = 1, nb = 1;
    for (int d = 0; d < mc->nda; d++)
        na *= (double)mc->a[d];
    for (int d = 0; d < mc->ndb; d++)
        nb *= (double)mc->b[d];
    double nc = mc->pad >= 0 ? (double)(mc->a[0] * mc->b[0]) * conv_out(mc, 2) * conv_out(mc, 3)
                             : matmul_case_flops(mc, false) / (2.0 * (double)mc->a[mc->nda - 1]);
    return 4.0 * (na + nb + nc) * (backward ? 3.0 : 1.0);
}

double mlp_flops(const mlp_spec *spec)
{
    double f = 0.0;
    for (int l = 0; l + 1 < spec->n; l++) {
        double mnk = 2.0 * spec->batch * (double)spec->sizes[l] * (double)spec->sizes[l + 1];
        f += l == 0 ? 2.0 * mnk : 3.0 * mnk;
    }
    return f;
}

/* One recurrent layer's products per step: forward, and the two gradients
 * (the first layer's input gradient included). */
static double lstm_layer_flops(int batch, int64_t steps, int64_t in, int64_t hidden)
{
    return 3.0 * (double)steps * 2.0 * batch * (double)(in + hidden) * 4.0 * (double)hidden;
}

static stg_plan *lstm_step_plan(int batch, stg_plan_options *opts, char *err, size_t errlen)
{
    stg_graph *g = stg_graph_new();
    if (!g) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    stg_tensor x = stg_input(g, "x", 3, (int64_t[]){batch, 28, 28});
    stg_tensor y = stg_input_i32(g, "y", 1, (int64_t[]){batch});
    stg_rnn r = {.mode = STG_LSTM, .input_size = 28, .hidden_size = 128, .batch_first = 1};
    stg_rnn_params(g, &r, "lstm");
    stg_tensor fc = stg_param(g, "fc1.weight", 2, (int64_t[]){128, 10});
    stg_tensor fb = stg_param(g, "fc1.bias", 1, (int64_t[]){10});
    stg_tensor out = stg_rnn_apply(g, &r, x, (stg_tensor){-1}, (stg_tensor){-1}, NULL, NULL);
    stg_tensor last = stg_reshape(g, stg_slice(g, out, 1, 27, 28, 1), 2, (int64_t[]){batch, 128});
    stg_tensor logits = stg_add(g, stg_matmul(g, last, fc), fb);
    stg_tensor loss = stg_softmax_cross_entropy(g, logits, y, STG_REDUCE_MEAN);
    opts->optimizer = STG_OPTIM_ADAM;
    opts->lr = 1e-3f;
    stg_plan *p = NULL;
    if (stg_graph_status(g) != STG_OK || stg_plan_create(g, loss, opts, &p) != STG_OK)
        return fail(g, err, errlen);
    stg_tensor ps[6] = {r.weight_ih[0], r.weight_hh[0], r.bias_ih[0], r.bias_hh[0], fc, fb};
    for (int k = 0; k < 6; k++)
        stg_plan_init(p, ps[k], STG_INIT_UNIFORM, -0.088f, 0.088f, 30 + (uint64_t)k);
    stg_plan_init(p, x, STG_INIT_UNIFORM, 0.0f, 1.0f, 1);
    int32_t *labels = stg_plan_data_i32(p, y);
    for (int i = 0; i < batch; i++)
        labels[i] = (int32_t)((i * 7) % 10);
    stg_graph_free(g);
    return p;
}

static double lstm_step_flops(int batch)
{
    return lstm_layer_flops(batch, 28, 28, 128) + 3.0 * 2.0 * batch * 128 * 10;
}

enum { CHARLM_STEPS = 64, CHARLM_EMBED = 64, CHARLM_HIDDEN = 256 };

static stg_plan *charlm_step_plan(int batch, stg_plan_options *opts, char *err, size_t errlen)
{
    stg_graph *g = stg_graph_new();
    if (!g) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    int64_t T = CHARLM_STEPS, V = CHARLM_VOCAB, E = CHARLM_EMBED, H = CHARLM_HIDDEN;
    stg_tensor x = stg_input_i32(g, "chars", 2, (int64_t[]){batch, T});
    stg_tensor y = stg_input_i32(g, "next", 2, (int64_t[]){batch, T});
    stg_tensor emb = stg_param(g, "embed.weight", 2, (int64_t[]){V, E});
    stg_rnn r = {.mode = STG_LSTM, .input_size = E, .hidden_size = H, .batch_first = 1};
    stg_rnn_params(g, &r, "lstm");
    stg_tensor fc = stg_param(g, "fc.weight", 2, (int64_t[]){H, V});
    stg_tensor fb = stg_param(g, "fc.bias", 1, &V);
    stg_tensor out = stg_rnn_apply(g, &r, stg_embedding(g, emb, x, -1), (stg_tensor){-1},
                                   (stg_tensor){-1}, NULL, NULL);
    stg_tensor logits = stg_add(g, stg_matmul(g, out, fc), fb);
    stg_tensor loss = stg_softmax_cross_entropy(g, logits, y, STG_REDUCE_MEAN);
    opts->optimizer = STG_OPTIM_ADAM;
    opts->lr = 2e-3f;
    stg_plan *p = NULL;
    if (stg_graph_status(g) != STG_OK || stg_plan_create(g, loss, opts, &p) != STG_OK)
        return fail(g, err, errlen);
    stg_tensor ps[7] = {emb, r.weight_ih[0], r.weight_hh[0], r.bias_ih[0], r.bias_hh[0], fc, fb};
    for (int k = 0; k < 7; k++)
        stg_plan_init(p, ps[k], STG_INIT_UNIFORM, -0.0625f, 0.0625f, 40 + (uint64_t)k);
    int32_t *xv = stg_plan_data_i32(p, x), *yv = stg_plan_data_i32(p, y);
    for (int64_t i = 0; i < batch * T; i++) {
        xv[i] = (int32_t)((i * 31 + 7) % V);
        yv[i] = (int32_t)((i * 17 + 3) % V);
    }
    stg_graph_free(g);
    return p;
}

static double charlm_step_flops(int batch)
{
    return lstm_layer_flops(batch, CHARLM_STEPS, CHARLM_EMBED, CHARLM_HIDDEN) +
           3.0 * 2.0 * batch * CHARLM_STEPS * CHARLM_HIDDEN * (double)CHARLM_VOCAB;
}

static const model_step steps[] = {
    {"lenet", 64, lenet_plan, lenet_flops},
    {"lstm", 64, lstm_step_plan, lstm_step_flops},
    {"charlm", 32, charlm_step_plan, charlm_step_flops},
};

const model_step *model_steps(int *count)
{
    *count = (int)(sizeof steps / sizeof steps[0]);
    return steps;
}

const model_step *model_step_find(const char *name)
{
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++)
        if (!strcmp(steps[i].name, name))
            return &steps[i];
    return NULL;
}
