/*
 * The executor: the only owner of an OpenMP parallel region.  A step is one
 * region; every thread walks the whole schedule, runs its share of each node
 * and meets the others at a barrier only where the plan says a node depends
 * on (or overwrites) what another thread may have touched since the last one.
 */
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

#include <omp.h>

#include "internal.h"

/* Spins before yielding: long enough to cover a short node on a free core,
 * short enough that more threads than cores degrade to yields, not burn. */
#define SPIN_LIMIT 200

struct stg_barrier {
    _Alignas(64) atomic_int count;
    _Alignas(64) atomic_uint gen;
};

struct stg_barrier *stgR_barrier_new(void)
{
    struct stg_barrier *b = aligned_alloc(64, sizeof *b);
    if (b) {
        atomic_init(&b->count, 0);
        atomic_init(&b->gen, 0);
    }
    return b;
}

void stgR_barrier_free(struct stg_barrier *b)
{
    free(b);
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* Generation barrier: the last thread to arrive resets the count and opens
 * the next generation; the others wait for the generation to change. */
static void barrier_wait(struct stg_barrier *b, int n)
{
    unsigned gen = atomic_load_explicit(&b->gen, memory_order_acquire);
    if (atomic_fetch_add_explicit(&b->count, 1, memory_order_acq_rel) == n - 1) {
        atomic_store_explicit(&b->count, 0, memory_order_relaxed);
        atomic_fetch_add_explicit(&b->gen, 1, memory_order_release);
        return;
    }
    for (int spin = 0; atomic_load_explicit(&b->gen, memory_order_acquire) == gen; spin++) {
        if (spin < SPIN_LIMIT)
            cpu_relax();
        else
            sched_yield();
    }
}

static void run_range(stg_plan *p, int32_t from, int32_t to)
{
    if (p->threads == 1) {
        for (int32_t i = from; i < to; i++)
            p->sched[i].node->op->run(&p->sched[i], 0, 1);
        return;
    }
#pragma omp parallel num_threads(p->threads)
    {
        int tid = omp_get_thread_num(), nt = omp_get_num_threads();
        for (int32_t i = from; i < to; i++) {
            if (i > from && p->sched[i].barrier_before)
                barrier_wait(p->barrier, nt);
            p->sched[i].node->op->run(&p->sched[i], tid, nt);
        }
    }
}

STG_API stg_status stg_plan_step(stg_plan *p)
{
    if (!p)
        return STG_INVALID;
    run_range(p, 0, p->nsched);
    return STG_OK;
}

STG_API stg_status stg_plan_forward(stg_plan *p)
{
    if (!p)
        return STG_INVALID;
    run_range(p, 0, p->nsched_fwd);
    return STG_OK;
}
