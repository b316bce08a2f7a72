/* Helpers shared by the test programs. */
#ifndef STG_TESTUTIL_H
#define STG_TESTUTIL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "stgrad.h"

#define TU_MAX_TENSORS 32

typedef struct tu_tensor {
    char role[48];
    int nd;
    int64_t d[STG_MAX_DIMS];
    int64_t n;
    float *v;
} tu_tensor;

/* One case of a reference file (see tools/gen_reference.py for the format). */
typedef struct tu_case {
    char name[128], op[32];
    int nattr;
    double attr[32]; /* numbers after the op name */
    int nt;
    tu_tensor t[TU_MAX_TENSORS];
} tu_case;

/* Reads the next case; returns false at the end of the file (and fails the
 * test on a malformed file). */
bool tu_read_case(FILE *f, tu_case *c);
void tu_free_case(tu_case *c);
const tu_tensor *tu_find(const tu_case *c, const char *role);

/* Creates a plan, checks its invariants with stg_plan_check, and fails the
 * test if either goes wrong. */
stg_plan *tu_plan(stg_graph *g, stg_tensor loss, int threads, stg_optimizer opt);
/* The same with every option given. */
stg_plan *tu_plan_with(const stg_graph *g, stg_tensor loss, const stg_plan_options *o);

/* Largest |got - want| / (atol + rtol*|want|) over n values; <= 1 passes. */
double tu_err(const float *got, const float *want, int64_t n, double atol, double rtol);

/* Deterministic pseudo-random floats in [lo, hi). */
void tu_fill(float *x, int64_t n, uint64_t seed, float lo, float hi);

/* Opens a file under STG_TEST_DATA. */
FILE *tu_open_data(const char *name);

#endif
