/*
 * libFuzzer harness for the safetensors loader (lib/safetensors.c).  One
 * plan (two named parameters and a running statistic) lives for the whole
 * run; every input is written to a file and loaded into it.  A load that
 * fails must leave every tensor byte for byte as it was, and say why; any
 * other outcome than STG_OK or STG_FORMAT, or a crash or sanitizer report,
 * is a finding.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz.h"

#include "stgrad.h"

static stg_plan *plan;
static stg_tensor leaves[3];
static const int64_t sizes[3] = {6, 2, 2};
static char in_path[64];

static void remove_file(void)
{
    unlink(in_path);
}

static void setup(void)
{
    stg_graph *g = stg_graph_new();
    int64_t xd[2] = {4, 3}, wd[2] = {3, 2}, bd[1] = {2};
    stg_tensor x = stg_input(g, "x", 2, xd);
    leaves[0] = stg_param(g, "w", 2, wd);
    leaves[1] = stg_param(g, "b", 1, bd);
    leaves[2] = stg_stat(g, "s", 1, bd, 1.0f);
    stg_tensor y = stg_add(g, stg_add(g, stg_matmul(g, x, leaves[0]), leaves[1]), leaves[2]);
    stg_graph_keep(g, y);
    stg_plan_options o;
    stg_plan_options_init(&o);
    o.inference = 1;
    if (stg_plan_create(g, (stg_tensor){-1}, &o, &plan) != STG_OK)
        abort();
    stg_graph_free(g);
    for (int k = 0; k < 3; k++) {
        float *d = stg_plan_data(plan, leaves[k]);
        for (int64_t i = 0; i < sizes[k]; i++)
            d[i] = (float)(k * 10 + i) / 7.0f;
    }
    snprintf(in_path, sizeof in_path, "%s/fuzz_st_in.%ld", fuzz_dir(), (long)getpid());
    atexit(remove_file);
}

int fuzz_safetensors(const uint8_t *data, size_t size)
{
    if (!plan)
        setup();
    FILE *f = fopen(in_path, "wb");
    if (!f || fwrite(data, 1, size, f) != size)
        abort();
    fclose(f);
    float before[10], after[10];
    for (int k = 0, at = 0; k < 3; at += (int)sizes[k], k++)
        memcpy(before + at, stg_plan_data(plan, leaves[k]), sizeof(float) * (size_t)sizes[k]);
    stg_status s = stg_plan_load_safetensors(plan, in_path);
    if (s != STG_OK && s != STG_FORMAT)
        abort();
    if (s == STG_FORMAT) {
        if (!*stg_plan_message(plan))
            abort();
        for (int k = 0, at = 0; k < 3; at += (int)sizes[k], k++)
            memcpy(after + at, stg_plan_data(plan, leaves[k]), sizeof(float) * (size_t)sizes[k]);
        if (memcmp(before, after, sizeof before))
            abort(); /* a refused file changed the plan */
    }
    return 0;
}
