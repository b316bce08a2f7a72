/* stgrad's vector micro-kernels with emulated vectors (kernel_emulated.c). */
#ifndef STG_KERNEL_EMULATED_H
#define STG_KERNEL_EMULATED_H

#include "gemm.h"

/* The AVX-512 (12x32) and AVX2 (6x16) kernels' logic on any CPU, with the
 * real kernel's block sizes where it runs. */
void te_emulated_avx512(stgK_kernel *kr);
void te_emulated_avx2(stgK_kernel *kr);

#endif
