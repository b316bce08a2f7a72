/*
 * The models the command-line tools build: the BENCH.md 'mlp' training step
 * (or any MLP by layer sizes) and the BENCH.md matmul cases, forward only or
 * forward + backward.  Shared by stg-prof and stg-bench so that both measure
 * exactly the same graphs.
 */
#ifndef STG_TOOLS_MODELS_H
#define STG_TOOLS_MODELS_H

#include <stdbool.h>
#include <stddef.h>

#include "stgrad.h"

#define MODEL_MAX_LAYERS 16

/* One BENCH.md matmul case: operand shapes.  A convolution case ('pad' >=
 * 0) is conv2d of a = x (N, C, H, W) by b = w (O, C, KH, KW) with that
 * padding on both axes, stride 1, no bias. */
typedef struct matmul_case {
    const char *name;
    int nda, ndb;
    int64_t a[4], b[4];
    int pad; /* -1: a product */
} matmul_case;

/* The BENCH.md matmul family, in its order; 'count' gets the number. */
const matmul_case *matmul_cases(int *count);
const matmul_case *matmul_case_find(const char *name);

/* An MLP: sizes[0] inputs, sizes[n-1] classes, ReLU between layers, softmax
 * cross-entropy, SGD lr 0.05 momentum 0.9 (the BENCH.md 'mlp' step with
 * sizes 784,512,256,10), random inputs and labels. */
typedef struct mlp_spec {
    int n;
    int64_t sizes[MODEL_MAX_LAYERS + 1];
    int batch;
} mlp_spec;

/* Parses "784,512,256,10" into 'spec'; false (and a message in err) if it is
 * not 2 to MODEL_MAX_LAYERS+1 sizes from 1 to 1000000. */
bool mlp_parse(const char *s, mlp_spec *spec, char *err, size_t errlen);

/* Builds and initialises a plan; NULL with a message in err on failure.
 * 'opts' gives threads and profiling; the optimizer fields are set here. */
stg_plan *mlp_plan(const mlp_spec *spec, stg_plan_options *opts, char *err, size_t errlen);

/* A matmul case as a plan: 'backward' false builds c = a b and times
 * stg_plan_forward; true builds the vector-Jacobian product (gradients of
 * a and b for an upstream gradient of c's shape) and times stg_plan_step. */
stg_plan *matmul_plan(const matmul_case *mc, bool backward, stg_plan_options *opts, char *err,
                      size_t errlen);

/* FLOPs of one step: 2 M N K per product, three for forward + backward; for
 * an MLP, the products of its step (the first layer's input gradient is not
 * computed). */
double matmul_case_flops(const matmul_case *mc, bool backward);
/* Bytes the products move if each reads its operands and writes its result
 * once: a, b and c, three times over for forward + backward. */
double matmul_case_bytes(const matmul_case *mc, bool backward);
double mlp_flops(const mlp_spec *spec);

/* BENCH.md's lenet training step at 'batch' (1x28x28 -> conv 16 3x3 pad 1 ->
 * max pool 2 -> relu -> conv 32 3x3 pad 1 -> max pool 2 -> relu -> 1568-128 ->
 * relu -> 128-10, softmax cross-entropy, SGD lr 0.05 momentum 0.9), random
 * inputs and labels; errors as mlp_plan. */
stg_plan *lenet_plan(int batch, stg_plan_options *opts, char *err, size_t errlen);
/* FLOPs of the lenet step's convolutions and products (2 per multiply-add;
 * forward, both gradients, but not the first convolution's input gradient). */
double lenet_flops(int batch);

/* BENCH.md's model steps: lenet, lstm (28 steps of 28 inputs, LSTM 128,
 * linear 128-10 on the last state, Adam) and charlm (int32 characters of a
 * CHARLM_VOCAB-letter alphabet, embedding 64 -> LSTM 256 -> linear ->
 * cross-entropy at each of 64 steps, Adam), random inputs and labels; each
 * with its default batch and its FLOPs per step (products only, forward and
 * backward). */
typedef struct model_step {
    const char *name;
    int batch;
    stg_plan *(*plan)(int batch, stg_plan_options *opts, char *err, size_t errlen);
    double (*flops)(int batch);
} model_step;
#define CHARLM_VOCAB 256 /* bytes, as stg-charlm */
const model_step *model_steps(int *count);
const model_step *model_step_find(const char *name);

#endif
