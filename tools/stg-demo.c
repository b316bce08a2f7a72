/*
 * stg-demo: fits a two-layer linear model y = (x W1) W2 + b to data made by
 * a hidden linear map, with stgrad's SGD, and prints the loss at every step.
 *
 *   stg-demo [--steps N] [--threads T] [--lr LR] [--wait yield|spin|passive]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "stgrad.h"

enum { BATCH = 64, IN = 16, HIDDEN = 32, OUT = 4 };

/* Small deterministic generator so the demo prints the same run each time. */
static float uniform(unsigned long long *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((*s >> 40) / (double)(1ull << 24)) * 2.0f - 1.0f;
}

static void fill(float *x, int n, float scale, unsigned long long *s)
{
    for (int i = 0; i < n; i++)
        x[i] = scale * uniform(s);
}

static int usage(void)
{
    fprintf(stderr,
            "usage: stg-demo [--steps N] [--threads T] [--lr LR] [--wait yield|spin|passive]\n");
    return 2;
}

int main(int argc, char **argv)
{
    int steps = 100, threads = 1;
    stg_wait wait = STG_WAIT_SPIN_YIELD;
    float lr = 0.1f;
    for (int i = 1; i < argc; i++) {
        if (i + 1 < argc && !strcmp(argv[i], "--steps"))
            steps = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--threads"))
            threads = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--wait")) {
            if (!cli_wait(argv[++i], &wait))
                return usage();
        } else if (i + 1 < argc && !strcmp(argv[i], "--lr"))
            lr = (float)atof(argv[++i]);
        else
            return usage();
    }
    if (steps < 1 || threads < 1)
        return usage();

    stg_graph *g = stg_graph_new();
    if (!g)
        return 1;
    int64_t xd[] = {BATCH, IN}, w1d[] = {IN, HIDDEN}, w2d[] = {HIDDEN, OUT}, bd[] = {OUT},
            td[] = {BATCH, OUT};
    stg_tensor x = stg_input(g, "x", 2, xd), t = stg_input(g, "target", 2, td);
    stg_tensor w1 = stg_param(g, "w1", 2, w1d), w2 = stg_param(g, "w2", 2, w2d);
    stg_tensor b = stg_param(g, "b", 1, bd);
    stg_tensor y = stg_add(g, stg_matmul(g, stg_matmul(g, x, w1), w2), b);
    stg_tensor loss = stg_mse_loss(g, y, t);
    if (stg_graph_status(g) != STG_OK) {
        fprintf(stderr, "stg-demo: %s\n", stg_graph_message(g));
        return 1;
    }

    stg_plan_options opts;
    stg_plan_options_init(&opts);
    opts.threads = threads;
    opts.wait = wait;
    opts.lr = lr;
    stg_plan *p;
    stg_status s = stg_plan_create(g, loss, &opts, &p);
    if (s != STG_OK) {
        fprintf(stderr, "stg-demo: %s: %s\n", stg_status_name(s), stg_plan_last_message());
        return 1;
    }

    /* Data from a hidden linear map; the model starts small and random. */
    unsigned long long seed = 42;
    static float truth[IN * OUT];
    fill(truth, IN * OUT, 1.0f, &seed);
    float *xv = stg_plan_data(p, x), *tv = stg_plan_data(p, t);
    fill(xv, BATCH * IN, 1.0f, &seed);
    for (int r = 0; r < BATCH; r++)
        for (int c = 0; c < OUT; c++) {
            float acc = 0.5f;
            for (int k = 0; k < IN; k++)
                acc += xv[r * IN + k] * truth[k * OUT + c];
            tv[r * OUT + c] = acc;
        }
    fill(stg_plan_data(p, w1), IN * HIDDEN, 0.25f, &seed);
    fill(stg_plan_data(p, w2), HIDDEN * OUT, 0.25f, &seed);

    printf("stg-demo: y = (x W1) W2 + b, x (%d,%d), %d threads, arena %zu bytes "
           "(%zu without reuse)\n",
           BATCH, IN, stg_plan_threads(p), stg_plan_arena_bytes(p), stg_plan_buffer_bytes(p));
    for (int i = 1; i <= steps; i++) {
        if ((s = stg_plan_step(p)) != STG_OK) {
            fprintf(stderr, "stg-demo: step %d: %s\n", i, stg_status_name(s));
            return 1;
        }
        printf("step %3d  loss %.6f\n", i, (double)stg_plan_loss(p));
    }
    stg_plan_free(p);
    stg_graph_free(g);
    return 0;
}
