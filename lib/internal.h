/*
 * Internal structures shared by the modules of lib/.  Module prefixes:
 * stgG_ graph, stgS_ shapes, stgD_ autodiff, stgA_ arena, stgP_ plan,
 * stgR_ run (executor), stgB_ BLIS, stgK_ kernels shared by op families and
 * the GEMM micro-kernels (gemm.h),
 * stgV_ vector loops, stgO_ op registry.
 *
 * Headers: graph.h (graph and shapes), op.h (the op contract, which
 * lib/ops/ includes alone), plan.h (the plan, executor, threads, profiler,
 * files, optimizers); this one includes them all.
 */
#ifndef STG_INTERNAL_H
#define STG_INTERNAL_H

#include "plan.h"

#endif /* STG_INTERNAL_H */
