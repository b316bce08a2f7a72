/* A two-layer perceptron and its data, for the data-parallel tests (the
 * loopback group in test_collective.c, MPI in mpi_check.c). */
#ifndef STG_TINY_MODEL_H
#define STG_TINY_MODEL_H

#include "stgrad.h"

#define GLOBAL 12 /* the global batch: 1, 2, 3 and 4 processes get equal shares */
#define IN 6
#define HID 8
#define OUT 3
#define NPARAM_FLOATS (IN * HID + HID + HID * OUT + OUT)

typedef struct model {
    stg_graph *g;
    stg_tensor x, y, w1, b1, w2, b2, loss;
} model;

/* The graph for a share of 'batch' rows (check stg_graph_status). */
model build(int batch);
/* Adam with global-norm clipping small enough to clip, and the hook. */
void options(stg_plan_options *o, const stg_collective *c);
/* The same initial parameters on every process. */
stg_status init_params(stg_plan *p, const model *m);
/* Rows [rank, rank + 1) * GLOBAL / size of the global batch of step s. */
void load_share(stg_plan *p, const model *m, int s, int rank, int size);
/* The parameters, one after the other, into NPARAM_FLOATS floats. */
void params_of(stg_plan *p, const model *m, float *out);

#endif
