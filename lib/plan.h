/*
 * The plan and the modules around it: arena placement, the executor and
 * its threads, the profiler, files, optimizers.
 */
#ifndef STG_PLAN_H
#define STG_PLAN_H

#include <stdio.h>

#include "op.h"

/* ---- arena (arena.c) ------------------------------------------------- */

typedef struct stg_interval {
    size_t bytes;
    int32_t first, last; /* schedule positions, inclusive */
    size_t offset;       /* output */
} stg_interval;
/* Places the intervals so that any two that overlap in time get disjoint
 * bytes; returns the arena size.  Pure: depends only on its input. */
size_t stgA_place(stg_interval *iv, int32_t n, int32_t *scratch);

/* ---- plan (plan.c) --------------------------------------------------- */

typedef struct stg_buffer {
    size_t bytes, offset;
    int32_t first, last;
    int32_t owner; /* the node it was made for (later in-place nodes share it) */
    bool persistent;
    bool scratch;  /* the owner's scratch (stgP_scratch), not its output */
    float *external; /* a parameter read from opts.share_params's storage
                        (0 bytes here), or NULL */
    bool in_region;    /* placed in the gradient region, not by stgA_place: */
    int64_t region_at; /* floats from the region's start */
} stg_buffer;

/* The gradient region of a plan with a collective hook (collective.c):
 * what lies where, in floats from the region's start. */
typedef struct stg_region_part {
    int32_t node; /* a gradient, a bucket (a sum's wait node), the failure flags */
    int64_t at;
} stg_region_part;

typedef struct stg_region {
    stg_collective hook;   /* the caller's table, copied */
    int nbuckets;
    int64_t *bucket_floats;
    stg_region_part *parts;
    int32_t nparts;
    int64_t floats;        /* the whole region */
} stg_region;

/* Adds the gradient sums to a training plan's graph (between the backward
 * pass and the optimizer) when opts.collective is set: the buckets, their
 * start and wait nodes, the failure flags, and p->grad replaced by views of
 * the summed buckets. */
stg_status stgC_add_collectives(struct stg_plan *p);
void stgC_free(stg_region *r);

struct stg_pool;

struct stg_plan {
    stg_graph *g;      /* private copy: user graph + backward + update nodes */
    int32_t nuser;     /* node ids below this are the user's graph (valid handles) */
    int32_t nfwd;      /* ... below this, the forward pass (user graph + kept-value copies) */
    int32_t nopt;      /* ... from this up, the optimizer (clipping, guard, updates) */
    int32_t loss;
    int32_t seed;      /* upstream gradient of 'loss' (stg_plan_create_vjp), or -1 */
    int32_t *grad;     /* per forward node: gradient node or -1 */
    int32_t *value;    /* per forward node: node holding its kept value, or -1 */
    int32_t *bufof;    /* per node id: buffer index or -1 */
    stg_buffer *bufs;
    int32_t nbufs;
    stg_pnode *sched;  /* executed nodes in order */
    int32_t nsched, nsched_fwd;
    int32_t first_shared; /* position of the first node that is not serial (nsched if none) */
    unsigned char *arena;
    size_t arena_bytes, buffer_bytes;
    bool own_arena;
    int threads;
    struct stg_pool *pool;  /* the step's threads (pool.c) */
    stg_plan_options opt;   /* optimizer hyper-parameters (arena fields unused) */
    stg_schedule sched_lr;  /* learning-rate schedule */
    int64_t steps;          /* steps completed */
    uint64_t calls;         /* runs of the schedule (steps, failed ones included, and
                               forward passes) */
    stg_fault fault;        /* what the first kernel that failed in a step said */
    char step_msg[512];     /* stg_plan_message: the last step's or call's message */
    stgK_kernel kern;   /* GEMM micro-kernel and block sizes */
    char kern_why[256]; /* which kernel and why, for people */
    struct stg_profile *prof; /* NULL unless opts.profile > 0 */
    stg_region *region;       /* NULL unless opts.collective */
};

/* Element pointer of node 'id' (its base buffer + layout offset). */
float *stgP_ptr(const struct stg_plan *p, int32_t id);

/* ---- run (run.c) ----------------------------------------------------- */

/* Runs schedule positions [0, to) as one step with context 'sx' (recorded
 * when the plan profiles and 'to' is the whole schedule); returns STG_OK or
 * the status a kernel reported, with the message in sx->fault, whose flag
 * is cleared again. */
stg_status stgR_run(struct stg_plan *p, int32_t to, const stg_step *sx);


/* ---- threads (pool.c) ------------------------------------------------ */

/* What each thread of a pool runs: thread tid of nt (the caller is 0). */
typedef void stgR_job(void *ctx, int tid, int nt);
/* Starts threads-1 workers that wait as 'wait' says, each calling
 * on_start (if not NULL) first; returns once all are waiting.  On failure
 * writes a message into msg and returns STG_NOMEM. */
stg_status stgR_pool_new(int threads, stg_wait wait, void (*on_start)(int, void *),
                         void *on_start_arg, struct stg_pool **out, char *msg, size_t len);
/* Whether this is a child process's copy of a pool with workers (which
 * stayed in the parent). */
bool stgR_pool_orphaned(const struct stg_pool *pool);
/* Stops and joins the workers (NULL is fine). */
void stgR_pool_free(struct stg_pool *pool);
/* Runs job on every thread of the pool, the caller as thread 0; returns when
 * all have finished. */
void stgR_pool_run(struct stg_pool *pool, stgR_job *job, void *ctx);
/* CPUs this process may run on (its affinity mask); INT_MAX when the
 * system cannot say. */
int stgR_usable_cpus(void);
/* Changes the policy: see stg_plan_set_wait for when waiting workers follow. */
void stgR_pool_set_wait(struct stg_pool *pool, stg_wait wait);
/* Waits for every thread of the pool; returns *failed as the last thread to
 * arrive saw it (false for a NULL 'failed'), so all leave with one answer. */
bool stgR_pool_barrier(struct stg_pool *pool, const atomic_int *failed);
/* A worker waiting for the next job (exported for callgrind's --toggle-collect). */
void stgR_pool_idle(struct stg_pool *pool, unsigned seen);

/* ---- profiler (profile.c) ---------------------------------------------- */

/* Timings of the last 'keep' successful steps, in a ring of slots; index
 * [slot][pos][thread] in start, busy and wait.  All in nanoseconds. */
typedef struct stg_profile {
    int keep;
    int64_t recorded; /* steps recorded since creation or reset */
    int64_t *start;   /* kernel start, from the step's start */
    int64_t *busy;    /* time in the kernel */
    int64_t *wait;    /* time at the barrier before the node */
    int64_t *step;    /* [slot]: the whole step */
    int64_t *at;      /* [slot]: the step's start on CLOCK_MONOTONIC */
    double *scratch;  /* 'keep' values, for medians */
} stg_profile;
stg_status stgX_profile_new(stg_plan *p, int keep);
void stgX_profile_free(stg_profile *pf);
/* Steps whose timings are kept (<= keep). */
int stgX_kept(const stg_profile *pf);
/* Slot of the k-th oldest kept step. */
int stgX_slot(const stg_profile *pf, int k);
stg_phase stgX_phase(const stg_plan *p, int32_t id);
/* Static facts and timings of schedule position 'pos' (no checks). */
void stgX_node_info(const stg_plan *p, int32_t pos, stg_node_info *info);
/* "(2,3)x(3,4)": the shapes of a node's float inputs. */
const char *stgX_input_shapes(const stg_plan *p, int32_t id, char *buf, size_t len);
/* Writes 's' as a JSON string (quoted, escaped). */
void stgX_json_string(FILE *f, const char *s);

/* ---- files (atomic_file.c) --------------------------------------------- */

/* Writes 'path' all or nothing: 'body' writes into a temporary file beside it
 * (returning 0 or an errno value), which is flushed, synced and renamed over
 * 'path'.  On failure the temporary file is removed, 'path' is untouched and
 * the plan's message names 'what' and the file. */
/* Writes the plan's message (stg_plan_message) and returns 's': for the
 * calls that report into it (save, load). */
stg_status stgP_message(stg_plan *p, stg_status s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
stg_status stgW_write_atomic(stg_plan *p, const char *what, const char *path,
                             int (*body)(FILE *f, void *ctx), void *ctx);

/* ---- optimizers (optim.c) ------------------------------------------- */

/* Adds gradient clipping, optimizer state and one update node per trained
 * parameter to the plan's graph (plan.c, after differentiation). */
stg_status stgO_add_updates(struct stg_plan *p);
/* The optimizer's scalars for the plan's next step: lr, bias corrections. */
void stgO_step_scalars(const struct stg_plan *p, stg_step *sx);
/* After a guard failed: says in sx->fault->msg what was not finite and the
 * first node of the step whose output was not (running the nodes before the
 * guards again, one at a time on this thread). */
void stgO_explain_nonfinite(struct stg_plan *p, const stg_step *sx);

#endif /* STG_PLAN_H */
