/* Prints the GEMM kernels this CPU and build run, one per line, the
 * default first (for tests/test_kernels.sh). */
#include <stdio.h>

#include "gemm.h"

int main(void)
{
    stgK_kernel kr;
    char why[256];
    if (!stgK_kernel_choose(STG_GEMM_AUTO, &kr, why, sizeof why)) {
        fprintf(stderr, "kernels: %s\n", why);
        return 1;
    }
    printf("%s\n", kr.name);
    for (int id = STG_GEMM_BLIS; id <= STG_GEMM_PORTABLE; id++)
        if (id != (int)kr.id && stgK_kernel_runs(id))
            printf("%s\n", stg_gemm_kernel_name(id));
    return 0;
}
