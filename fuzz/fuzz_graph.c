/*
 * libFuzzer harness for the graph builder, the planner and the executor.
 * The input is a program: a few leaves with shapes from its first bytes,
 * then ops chosen, wired and given attributes by the bytes that follow,
 * shapes that do not fit included.  Then:
 *  - a graph with an error must carry a message and build no plan;
 *  - otherwise the sum of the last tensor is the loss, and the plan (1 or
 *    2 threads) must pass stg_plan_check and run steps; after a warm-up
 *    step, two steps must call no allocator (counted through the
 *    sanitizer's allocation hooks);
 *  - for one input in two, the plan is a data-parallel one with a hook of
 *    one process (the sum is the identity): every bucket is started and
 *    waited for once a step, and its parameters must be the same bits as
 *    those of the plan without the hook after the same steps.
 * A crash, a leak or a sanitizer report is a finding.
 */
#include <sanitizer/allocator_interface.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

#include "stgrad.h"

typedef struct program {
    const uint8_t *p;
    size_t n;
} program;

/* The next byte, 0 once the input is used up. */
static unsigned byte(program *r)
{
    if (!r->n)
        return 0;
    r->n--;
    return *r->p++;
}

static int small(program *r, int lo, int hi) { return lo + (int)(byte(r) % (unsigned)(hi - lo + 1)); }

/* A hook of one process: the sum is the identity; it checks the order of
 * its calls and counts the steps they complete. */
typedef struct alone {
    int buckets, next_start, next_wait, steps;
} alone;

static int alone_start(void *ctx, int bucket, float *data, int64_t count)
{
    alone *a = ctx;
    (void)data;
    if (bucket != a->next_start || bucket >= a->buckets || count <= 0)
        abort(); /* buckets start in order, each once a step */
    a->next_start++;
    return 0;
}

static int alone_wait(void *ctx, int bucket)
{
    alone *a = ctx;
    if (bucket != a->next_wait || bucket >= a->next_start)
        abort(); /* waited for in order, after their start */
    if (++a->next_wait == a->buckets)
        a->next_start = a->next_wait = 0, a->steps++;
    return 0;
}

static volatile long allocations;
static void count_malloc(const volatile void *p, size_t n)
{
    (void)p, (void)n;
    allocations++;
}
static void count_free(const volatile void *p) { (void)p; }

enum { MAX_T = 48 };

/* One op on tensors of the program; returns an invalid tensor when the
 * shapes do not fit (the graph then holds the error). */
static stg_tensor one_op(stg_graph *g, program *r, const stg_tensor *t, int nt)
{
    stg_tensor a = t[byte(r) % (unsigned)nt], b = t[byte(r) % (unsigned)nt];
    int nd = stg_tensor_ndim(g, a);
    int axes[8] = {small(r, -3, 3), small(r, -3, 3)}, naxes = small(r, 0, 2), keep = byte(r) & 1;
    float f = (float)small(r, -8, 8) / 4.0f;
    switch (byte(r) % 42) { /* 41: pad */
    case 0: return stg_add(g, a, b);
    case 1: return stg_sub(g, a, b);
    case 2: return stg_mul(g, a, b);
    case 3: return stg_div(g, a, b);
    case 4: return stg_matmul(g, a, b);
    case 5: return stg_outer(g, a, b);
    case 6: return stg_relu(g, a);
    case 7: return stg_exp(g, a);
    case 8: return stg_log(g, a);
    case 9: return stg_sqrt(g, a);
    case 10: return stg_tanh(g, a);
    case 11: return stg_sigmoid(g, a);
    case 12: return stg_gelu(g, a);
    case 13: return stg_softplus(g, a);
    case 14: return stg_clamp(g, a, -f, f);
    case 15: return stg_leaky_relu(g, a, f);
    case 16: return stg_elu(g, a, f);
    case 17: return stg_pow(g, a, f);
    case 18: return stg_scale(g, a, f);
    case 19: return stg_sum(g, a, naxes, axes, keep);
    case 20: return stg_mean(g, a, naxes, axes, keep);
    case 21: return stg_max(g, a, naxes, axes, keep);
    case 22: return stg_var(g, a, naxes, axes, keep);
    case 23: return stg_logsumexp(g, a, naxes, axes, keep);
    case 24: return stg_norm(g, a, small(r, 0, 3), naxes, axes, keep);
    case 25: {
        int64_t n = stg_tensor_numel(g, a), d[2] = {small(r, 1, 4), 0};
        d[1] = n > 0 && n % d[0] == 0 ? n / d[0] : small(r, 1, 9);
        return stg_reshape(g, a, 2, d);
    }
    case 26: {
        int perm[8];
        for (int i = 0; i < 8; i++)
            perm[i] = nd > 0 ? (i + small(r, 0, 3)) % (nd > 0 ? nd : 1) : 0;
        return stg_transpose(g, a, perm);
    }
    case 27: return stg_swapaxes(g, a, axes[0], axes[1]);
    case 28: {
        int64_t d[4] = {small(r, 1, 3), 0, 0, 0};
        int64_t sh[8];
        int k = stg_tensor_shape(g, a, sh);
        for (int i = 0; i < k && i < 3; i++)
            d[i + 1] = sh[i] == 1 ? small(r, 1, 3) : sh[i];
        return stg_broadcast_to(g, a, k < 3 ? k + 1 : 4, d);
    }
    case 29:
        return stg_slice(g, a, axes[0], small(r, -4, 4), small(r, -4, 6), small(r, 0, 3));
    case 30: return stg_flip(g, a, axes[0]);
    case 31: {
        stg_tensor xs[2] = {a, b};
        return (byte(r) & 1) ? stg_concat(g, 2, xs, axes[0]) : stg_stack(g, 2, xs, axes[0]);
    }
    case 32: return (byte(r) & 1) ? stg_softmax(g, a, axes[0]) : stg_log_softmax(g, a, axes[0]);
    case 33:
    case 34: {
        stg_conv_params cp = {{small(r, 0, 2), small(r, 0, 2)}, {small(r, 0, 1), small(r, 0, 1)},
                              {small(r, 0, 2), small(r, 0, 2)}, small(r, 0, 2)};
        stg_tensor bias = (byte(r) & 1) ? t[byte(r) % (unsigned)nt] : (stg_tensor){-1};
        return (byte(r) & 1) ? stg_conv2d(g, a, b, bias, &cp) : stg_conv1d(g, a, b, bias, &cp);
    }
    case 35: {
        stg_pool_params pp = {{small(r, 1, 3), small(r, 1, 3)}, {small(r, 0, 2), small(r, 0, 2)},
                              {small(r, 0, 1), small(r, 0, 1)}};
        switch (byte(r) % 4) {
        case 0: return stg_max_pool2d(g, a, &pp);
        case 1: return stg_avg_pool2d(g, a, &pp);
        case 2: return stg_max_pool1d(g, a, &pp);
        default: return stg_avg_pool1d(g, a, &pp);
        }
    }
    case 36: return stg_dropout(g, a, (float)small(r, 0, 4) / 4.0f);
    case 37: return stg_global_avg_pool(g, a);
    case 38: { /* channels from a's shape when it has them; weight and bias any tensor */
        int64_t dims[8], c = stg_tensor_shape(g, a, dims) >= 2 ? dims[1] : small(r, 1, 3);
        unsigned pick = byte(r);
        stg_tensor rm = (pick & 1) ? stg_stat(g, "rm", 1, &c, 0.0f) : (stg_tensor){-1};
        stg_tensor rv = (pick & 1) ? stg_stat(g, "rv", 1, &c, 1.0f) : (stg_tensor){-1};
        stg_batch_norm_params bp = {(float)small(r, 0, 2) * 1e-3f, (float)small(r, 0, 4) / 4.0f};
        return stg_batch_norm(g, a, (pick & 2) ? b : (stg_tensor){-1},
                              (pick & 4) ? t[byte(r) % (unsigned)nt] : (stg_tensor){-1}, rm, rv,
                              &bp);
    }
    case 39:
        return stg_layer_norm(g, a, small(r, 0, 3), (byte(r) & 1) ? b : (stg_tensor){-1},
                              (byte(r) & 1) ? t[byte(r) % (unsigned)nt] : (stg_tensor){-1},
                              (float)small(r, 0, 2) * 1e-5f);
    case 40: { /* int32 indices, zero in the step (the harness fills float leaves only) */
        int64_t d[2] = {small(r, 1, 4), small(r, 1, 3)};
        stg_tensor idx = stg_input_i32(g, "idx", small(r, 0, 2), d);
        return stg_embedding(g, a, idx, small(r, -1, 2));
    }
    default: {
        int64_t before[8] = {0}, after[8] = {0};
        for (int i = 0; i < nd && i < 8; i++)
            before[i] = small(r, 0, 2), after[i] = small(r, 0, 1);
        return stg_pad(g, a, before, after, f);
    }
    }
}

int fuzz_graph(const uint8_t *data, size_t size)
{
    static int hooked;
    if (!hooked)
        hooked = 1, __sanitizer_install_malloc_and_free_hooks(count_malloc, count_free);
    program r = {data, size};
    stg_graph *g = stg_graph_new();
    if (!g)
        return 0;
    stg_tensor t[MAX_T];
    int nt = 0, leaves = small(&r, 1, 3);
    for (int i = 0; i < leaves; i++) {
        int64_t d[3] = {small(&r, 1, 5), small(&r, 1, 5), small(&r, 1, 5)};
        int ndim = small(&r, 0, 3);
        char name[8];
        snprintf(name, sizeof name, "l%d", i);
        t[nt++] = (byte(&r) & 1) ? stg_param(g, name, ndim, d) : stg_input(g, name, ndim, d);
    }
    while (r.n && nt < MAX_T && stg_graph_status(g) == STG_OK) {
        stg_tensor y = one_op(g, &r, t, nt);
        if (stg_tensor_valid(g, y))
            t[nt++] = y;
    }
    stg_tensor loss = stg_sum(g, t[nt - 1], 0, NULL, 0);
    if (stg_graph_status(g) != STG_OK) {
        if (!*stg_graph_message(g))
            abort(); /* an error always says what went wrong */
        stg_graph_free(g);
        return 0;
    }
    stg_plan_options o;
    stg_plan_options_init(&o);
    o.threads = 1 + (int)(size & 1);
    alone hook_state = {0};
    stg_collective hook = {.size = 1, .rank = 0, .start_sum = alone_start,
                           .wait_sum = alone_wait, .ctx = &hook_state, .bucket_bytes = 256};
    stg_plan *p = NULL, *twin = NULL;
    if (size & 2) { /* data parallel: the same plan without the hook is the reference */
        if (stg_plan_create(g, loss, &o, &twin) != STG_OK)
            twin = NULL;
        o.collective = &hook;
    }
    stg_status s = stg_plan_create(g, loss, &o, &p);
    if (s == STG_OK && (size & 2) && !twin)
        abort(); /* the hook made a plan possible that was not without it */
    hook_state.buckets = s == STG_OK ? stg_plan_buckets(p) : 0;
    if (s == STG_OK) {
        char msg[256];
        if (stg_plan_check(p, msg, sizeof msg) != STG_OK) {
            fprintf(stderr, "plan check: %s\n", msg);
            abort();
        }
        for (int i = 0; i < leaves; i++) {
            float *d = stg_plan_data(p, t[i]), *e = twin ? stg_plan_data(twin, t[i]) : NULL;
            int64_t n = stg_tensor_numel(g, t[i]);
            for (int64_t k = 0; d && k < n; k++)
                d[k] = (float)((k * 7 + i) % 11) / 8.0f - 0.6f;
            if (e && d)
                memcpy(e, d, (size_t)n * sizeof *d);
        }
        stg_plan_step(p); /* warm-up */
        long before = allocations;
        for (int i = 0; i < 2; i++) {
            s = stg_plan_step(p);
            if (s != STG_OK && s != STG_NUMERIC)
                abort(); /* nothing else can fail in a step of these ops */
        }
        if (allocations != before) {
            fprintf(stderr, "a step allocated %ld times\n", allocations - before);
            abort();
        }
        if (twin) {
            if (hook_state.steps != 3 || hook_state.next_start || hook_state.next_wait)
                abort(); /* three steps, each with every bucket */
            for (int i = 0; i < 3; i++)
                stg_plan_step(twin);
            for (int i = 0; i < leaves; i++) {
                const float *d = stg_plan_data(p, t[i]), *e = stg_plan_data(twin, t[i]);
                size_t bytes = (size_t)stg_tensor_numel(g, t[i]) * sizeof *d;
                if (d && e && memcmp(d, e, bytes)) {
                    fprintf(stderr, "leaf %d differs with a one-process hook\n", i);
                    abort();
                }
            }
        }
        stg_plan_free(p);
    } else if (s != STG_NOMEM && s != STG_INVALID && s != STG_SHAPE) {
        abort();
    }
    stg_plan_free(twin);
    stg_graph_free(g);
    return 0;
}
