/* The BLIS-alone baseline in a build without BLIS: there is none. */
#include <stddef.h>

#include "blis_baseline.h"

blis_job *blis_matmul_job(const matmul_case *mc, bool backward)
{
    (void)mc, (void)backward;
    return NULL;
}

blis_job *blis_mlp_job(const mlp_spec *spec)
{
    (void)spec;
    return NULL;
}

void blis_job_run(blis_job *job, int threads) { (void)job, (void)threads; }

void blis_job_free(blis_job *job) { (void)job; }

bool blis_baseline_available(void) { return false; }
