/*
 * The one file that talks to BLIS.  Each executor thread owns a BLIS runtime
 * object asking for one thread: BLIS's own threading allocates inside
 * steady-state calls, single-threaded calls made from our threads do not.
 * Shapes and strides are validated by the planner before they get here.
 */
#include <stdlib.h>

#include <blis.h>

#include "internal.h"

void *stgB_ctx_new(void)
{
    rntm_t *r = malloc(sizeof *r);
    if (!r)
        return NULL;
    bli_rntm_init(r);
    bli_rntm_set_num_threads(1, r);
    return r;
}

void stgB_ctx_free(void *ctx)
{
    free(ctx);
}

void stgB_sgemm(void *ctx, int64_t m, int64_t n, int64_t k, const float *a, int64_t rsa,
                int64_t csa, const float *b, int64_t rsb, int64_t csb, float beta, float *c,
                int64_t rsc, int64_t csc)
{
    float one = 1.0f;
    bli_sgemm_ex(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, (dim_t)m, (dim_t)n, (dim_t)k, &one,
                 (float *)a, (inc_t)rsa, (inc_t)csa, (float *)b, (inc_t)rsb, (inc_t)csb, &beta, c,
                 (inc_t)rsc, (inc_t)csc, NULL, (rntm_t *)ctx);
}
