/*
 * stg-mlp-bench: times the 'mlp' training step of BENCH.md in stgrad:
 * 784-512-256-10, ReLU, softmax cross-entropy, SGD lr 0.05 momentum 0.9,
 * random data, one step = forward + loss + backward + update.
 *
 *   stg-mlp-bench [--batch 1,16,64,256] [--threads 1,2] [--steps N] [--warmup N]
 *
 * Prints one line per (batch, threads):
 *   stgrad mlp batch=B threads=T median_us=... p10_us=... p99_us=...
 * tools/bench_mlp.sh runs it side by side with tools/torch_mlp_step.py.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "stgrad.h"

static double now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec * 1e-3;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int parse_list(const char *s, int *out, int max)
{
    int n = 0;
    while (*s && n < max) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 1)
            return -1;
        out[n++] = (int)v;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',')
            return -1;
    }
    return n;
}

/* Builds the model for one batch size; returns the plan or NULL. */
static stg_plan *build(int batch, int threads, stg_tensor *x, stg_tensor *y)
{
    stg_graph *g = stg_graph_new();
    int64_t sizes[4] = {784, 512, 256, 10};
    int64_t xd[2] = {batch, 784}, yd[1] = {batch};
    *x = stg_input(g, "x", 2, xd);
    *y = stg_input_i32(g, "y", 1, yd);
    stg_tensor h = *x, w[3], b[3];
    for (int l = 0; l < 3; l++) {
        int64_t wd[2] = {sizes[l], sizes[l + 1]}, bd[1] = {sizes[l + 1]};
        w[l] = stg_param(g, NULL, 2, wd);
        b[l] = stg_param(g, NULL, 1, bd);
        h = stg_add(g, stg_matmul(g, h, w[l]), b[l]);
        if (l < 2)
            h = stg_relu(g, h);
    }
    stg_tensor loss = stg_softmax_cross_entropy(g, h, *y, STG_REDUCE_MEAN);
    stg_plan_options o;
    stg_plan_options_init(&o);
    o.threads = threads;
    o.lr = 0.05f;
    o.momentum = 0.9f;
    stg_plan *p = NULL;
    if (stg_graph_status(g) != STG_OK || stg_plan_create(g, loss, &o, &p) != STG_OK) {
        fprintf(stderr, "stg-mlp-bench: %s%s\n", stg_graph_message(g), stg_plan_last_message());
        stg_graph_free(g);
        return NULL;
    }
    for (int l = 0; l < 3; l++) {
        stg_plan_init(p, w[l], STG_INIT_KAIMING_UNIFORM, 2.236068f, 0, 10 + (uint64_t)l);
        stg_plan_init(p, b[l], STG_INIT_UNIFORM, -0.04f, 0.04f, 20 + (uint64_t)l);
    }
    stg_plan_init(p, *x, STG_INIT_UNIFORM, 0.0f, 1.0f, 1);
    int32_t *labels = stg_plan_data_i32(p, *y);
    for (int i = 0; i < batch; i++)
        labels[i] = (i * 7) % 10;
    stg_graph_free(g);
    return p;
}

int main(int argc, char **argv)
{
    int batches[16] = {1, 16, 64, 256}, nb = 4, threads[16] = {1, 2}, nt = 2;
    int steps = 0, warmup = 50;
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(argv[i], "--batch") && v)
            nb = parse_list(argv[++i], batches, 16);
        else if (!strcmp(argv[i], "--threads") && v)
            nt = parse_list(argv[++i], threads, 16);
        else if (!strcmp(argv[i], "--steps") && v)
            steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--warmup") && v)
            warmup = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: stg-mlp-bench [--batch 1,16,64,256] [--threads 1,2] "
                            "[--steps N] [--warmup N]\n");
            return 2;
        }
        if (nb < 1 || nt < 1 || steps < 0 || warmup < 0) {
            fprintf(stderr, "stg-mlp-bench: bad value for %s\n", argv[i - 1]);
            return 2;
        }
    }
    for (int bi = 0; bi < nb; bi++)
        for (int ti = 0; ti < nt; ti++) {
            int batch = batches[bi], n = steps ? steps : batch <= 16 ? 2000 : 500;
            stg_tensor x, y;
            stg_plan *p = build(batch, threads[ti], &x, &y);
            if (!p)
                return 1;
            double *t = malloc(sizeof(double) * (size_t)n);
            if (!t)
                return 1;
            for (int i = 0; i < warmup; i++)
                stg_plan_step(p);
            for (int i = 0; i < n; i++) {
                double t0 = now_us();
                stg_status s = stg_plan_step(p);
                t[i] = now_us() - t0;
                if (s != STG_OK) {
                    fprintf(stderr, "stg-mlp-bench: %s\n", stg_plan_message(p));
                    return 1;
                }
            }
            qsort(t, (size_t)n, sizeof *t, cmp_double);
            printf("stgrad mlp batch=%d threads=%d median_us=%.1f p10_us=%.1f p99_us=%.1f\n",
                   batch, threads[ti], t[n / 2], t[n / 10], t[n * 99 / 100]);
            fflush(stdout);
            free(t);
            stg_plan_free(p);
        }
    return 0;
}
