/*
 * The baseline stg-bench compares against: the same products as a stgrad
 * case, written by hand as direct BLIS calls (level 3 for matrix products,
 * level 1 and 2 for the vector-shaped ones) with BLIS's own threading (BLIS
 * threads only level 3: the level-1 and level-2 calls run on one thread).  It
 * is what a careful C programmer would write without stgrad.
 */
#ifndef STG_TOOLS_BLIS_BASELINE_H
#define STG_TOOLS_BLIS_BASELINE_H

#include <stdbool.h>

#include "models.h"

typedef struct blis_job blis_job;

/* The products of a matmul case: c = a b, and with 'backward' the gradients
 * of a and b for an upstream gradient of c's shape; for a convolution case
 * (pad >= 0) its GEMMs alone, per image, without im2col and col2im.  NULL
 * if out of memory. */
blis_job *blis_matmul_job(const matmul_case *mc, bool backward);
/* The products of an MLP training step: every layer's forward product, every
 * weight gradient, and every input gradient but the first layer's. */
blis_job *blis_mlp_job(const mlp_spec *spec);
/* Runs the job once with 'threads' BLIS threads. */
void blis_job_run(blis_job *job, int threads);
void blis_job_free(blis_job *job);

/* False in a build without BLIS: then every job is NULL. */
bool blis_baseline_available(void);

#endif
