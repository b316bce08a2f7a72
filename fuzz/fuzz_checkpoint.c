/*
 * libFuzzer harness for the checkpoint loader (lib/checkpoint.c).  One plan
 * (two parameters with SGD momentum state, a few steps taken) lives for the
 * whole run; every input is written to a file and loaded into it.
 *  - A load that fails must leave the plan byte for byte as it was:
 *    parameters, optimizer state and step count.
 *  - A load that succeeds must save back to the very same bytes.
 * Any other outcome, or a crash or sanitizer report, is a finding.  Inputs
 * of even length get their trailing CRC-32 recomputed before the load: the
 * checksum covers the whole file, so mutated files would otherwise all stop
 * at it and the checks behind it (the table, names, shapes, offsets) would
 * never see them.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz.h"

#include <zlib.h>

#include "stgrad.h"

static stg_plan *plan;
static stg_tensor w, b;
static char in_path[64], out_path[64];

static void remove_files(void)
{
    unlink(in_path);
    unlink(out_path);
}

static void setup(void)
{
    stg_graph *g = stg_graph_new();
    int64_t xd[2] = {4, 3}, wd[2] = {3, 2}, bd[1] = {2}, td[2] = {4, 2};
    stg_tensor x = stg_input(g, "x", 2, xd), t = stg_input(g, "t", 2, td);
    w = stg_param(g, "w", 2, wd);
    b = stg_param(g, "b", 1, bd);
    stg_tensor loss = stg_mse_loss(g, stg_add(g, stg_matmul(g, x, w), b), t);
    stg_plan_options o;
    stg_plan_options_init(&o);
    o.momentum = 0.9f;
    if (stg_plan_create(g, loss, &o, &plan) != STG_OK)
        abort();
    stg_graph_free(g);
    float *d = stg_plan_data(plan, x);
    for (int i = 0; i < 12; i++)
        d[i] = (float)i / 12.0f - 0.5f;
    for (int i = 0; i < 3; i++)
        stg_plan_step(plan);
    snprintf(in_path, sizeof in_path, "%s/fuzz_ck_in.%ld", fuzz_dir(), (long)getpid());
    snprintf(out_path, sizeof out_path, "%s/fuzz_ck_out.%ld", fuzz_dir(), (long)getpid());
    atexit(remove_files);
}

/* The whole state a load may change, as the plan would save it. */
static unsigned char *state_bytes(size_t *n)
{
    if (stg_plan_save(plan, out_path) != STG_OK)
        abort();
    FILE *f = fopen(out_path, "rb");
    if (!f)
        abort();
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    rewind(f);
    unsigned char *buf = malloc((size_t)len + 1);
    if (!buf || fread(buf, 1, (size_t)len, f) != (size_t)len)
        abort();
    fclose(f);
    *n = (size_t)len;
    return buf;
}

int fuzz_checkpoint(const uint8_t *data, size_t size)
{
    if (!plan)
        setup();
    uint8_t *file = malloc(size + 1);
    if (!file)
        abort();
    if (size)
        memcpy(file, data, size);
    if (size >= 8 && size % 2 == 0) {
        uint32_t crc = (uint32_t)crc32(0, file, (uInt)(size - 4));
        for (int i = 0; i < 4; i++)
            file[size - 4 + i] = (uint8_t)(crc >> (8 * i));
    }
    FILE *f = fopen(in_path, "wb");
    if (!f || (size && fwrite(file, 1, size, f) != size) || fclose(f) != 0)
        abort();
    size_t n0;
    unsigned char *before = state_bytes(&n0);
    stg_status s = stg_plan_load(plan, in_path);
    size_t n1;
    unsigned char *after = state_bytes(&n1);
    if (s != STG_OK && (n0 != n1 || memcmp(before, after, n0) != 0)) {
        fprintf(stderr, "a failed load (%s: %s) changed the plan\n", stg_status_name(s),
                stg_plan_message(plan));
        abort();
    }
    if (s == STG_OK && (n1 != size || memcmp(after, file, size) != 0)) {
        fprintf(stderr, "an accepted checkpoint did not save back to the same bytes\n");
        abort();
    }
    free(before);
    free(after);
    free(file);
    return 0;
}
