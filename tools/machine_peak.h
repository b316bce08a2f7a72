/*
 * What the machine can do, measured on the spot so that stg-bench can print
 * every case as a share of it: the fused multiply-add peak and the read
 * bandwidth from cache and from memory.
 */
#ifndef STG_TOOLS_MACHINE_PEAK_H
#define STG_TOOLS_MACHINE_PEAK_H

#include <stddef.h>

/* Single-precision GFLOP/s of independent FMA chains on 'threads' threads
 * (the widest vectors the CPU has); 0 where no kernel is built for it. */
double fma_peak_gflops(int threads);
/* GB/s summing a 'bytes' array on 'threads' threads, best of a few passes;
 * 0 if the memory cannot be had. */
double read_bandwidth_gbs(size_t bytes, int threads);

#endif
