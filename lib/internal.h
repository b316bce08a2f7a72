/*
 * Internal structures shared by the modules of lib/.  Module prefixes:
 * stgG_ graph, stgS_ shapes, stgD_ autodiff, stgA_ arena, stgP_ plan,
 * stgR_ run (executor), stgB_ BLIS, stgK_ kernels shared by op families and
 * the GEMM micro-kernels (gemm.h),
 * stgV_ vector loops, stgO_ op registry.
 */
#ifndef STG_INTERNAL_H
#define STG_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "gemm.h"
#include "stgrad.h"

#define STG_MAX_INPUTS 8
#define STG_ALIGN 64 /* bytes; every arena buffer starts on a cache line */

typedef struct stg_shape {
    int nd;
    int64_t d[STG_MAX_DIMS];
} stg_shape;

/* A strided view of 'shape' elements inside some buffer. */
typedef struct stg_layout {
    int64_t st[STG_MAX_DIMS]; /* element strides; 0 along broadcast dims */
    int64_t off;              /* element offset from the buffer's start */
} stg_layout;

typedef enum stg_role {
    STG_ROLE_COMPUTE = 0, /* produced by an op every step */
    STG_ROLE_INPUT,
    STG_ROLE_PARAM,
    STG_ROLE_CONST,
    STG_ROLE_STATE /* optimizer state: zero at creation, persistent, checkpointed */
} stg_role;

struct stg_op;

/*
 * A node.  Invariants (checked by stgG_check in debug builds and by the plan
 * checker): every in[i] < the node's own id; 'base' is the node whose buffer
 * holds the data (the node itself unless it is a view) and base <= id; a
 * node that is not a view has a contiguous layout with off == 0.
 */
typedef struct stg_node {
    const struct stg_op *op;
    int nin;
    int32_t in[STG_MAX_INPUTS];
    stg_shape shape;
    stg_layout lay;
    int32_t base;
    stg_role role;
    bool keep;      /* value must stay readable after a step */
    bool want_grad; /* gradient requested by the user */
    bool is_int;    /* int32 data (labels, indices); views of it are int too */
    void *attr;     /* the op's attributes (op->attr_size bytes, owned), or NULL */
    char *name;   /* leaves only; owned */
    float *data;  /* constants only; owned */
} stg_node;

struct stg_graph {
    stg_node *nodes;
    int32_t n, cap;
    stg_status status;
    char msg[512];
};

/* ---- ops ------------------------------------------------------------- */

struct stg_plan;
struct stg_pnode;
struct stg_ad;

enum {
    STG_OPF_VIEW = 1 << 0,        /* no kernel: data is a view of input 0 */
    STG_OPF_ELEMENTWISE = 1 << 1, /* out[i] depends on inputs at i only */
    STG_OPF_LEAF = 1 << 3,        /* input, param, constant */
    STG_OPF_INPLACE = 1 << 4,     /* may write over an input of its own shape that dies here */
    STG_OPF_UPDATE = 1 << 5,      /* optimizer update: writes input 0 (the parameter)
                                     and inputs 2.. (its state) in place */
    STG_OPF_EFFECT = 1 << 6,      /* always scheduled: acts on the step, not through an output */
    STG_OPF_SERIAL = 1 << 7       /* its kernel always runs on thread 0 alone */
};

/* What 'prepare' is given (plan.c): the plan's fixed facts, and the means
 * to ask for op data and scratch.  Nothing in it points into the arena,
 * which is placed after every node is prepared. */
typedef struct stg_prep {
    int threads;               /* threads of the plan's steps */
    const stg_plan_options *opt; /* the plan's options (optimizer hyper-parameters) */
    const stgK_kernel *kern;   /* the GEMM micro-kernel and its blocks */
} stg_prep;

/* Where a kernel reports bad data found in a step (the first report wins;
 * the step stops at the next barrier). */
typedef struct stg_fault {
    atomic_int failed;
    stg_status status;
    char msg[512];
} stg_fault;

/* What 'run' is given besides its node: the facts of the step being run,
 * the same for every node and thread. */
typedef struct stg_step {
    int64_t number;       /* 1 for the plan's first training step */
    float lr;             /* learning rate of this step (schedule applied) */
    float bias1, bias2;   /* Adam's 1 - beta1^t and 1 - beta2^t */
    stg_fault *fault;
} stg_step;

/*
 * One descriptor per op, written with designated initializers.  'prepare'
 * runs once at plan time, before the arena is placed: it computes the
 * node's loop layouts into op data (stgP_opdata) and asks for scratch
 * (stgP_scratch).  'run' executes the share of the node's work that belongs
 * to thread 'tid' of 'nt'; 'backward' adds gradient nodes to the graph
 * being differentiated; 'flops' counts floating-point operations per step
 * (none if NULL);
 * 'state' names input i of an update node that is optimizer state (NULL
 * for any other input), for checkpoints.
 *
 * An op with attributes declares their struct's size, a printer (for
 * profiles, traces and DOT files) and, where bitwise equality of the
 * structs is not what equal means, an equality; 'traffic', where the
 * default (each input read once, the output written once) is wrong, the
 * bytes a node moves per step.
 */
typedef struct stg_op {
    const char *name;
    unsigned flags;
    size_t attr_size;
    void (*print_attr)(const void *attr, char *buf, size_t len);
    bool (*attr_equal)(const void *a, const void *b);
    void (*traffic)(const stg_graph *g, const stg_node *n, double *read, double *written);
    stg_status (*prepare)(stg_prep *cx, struct stg_pnode *pn);
    void (*run)(const struct stg_pnode *pn, const stg_step *sx, int tid, int nt);
    void (*backward)(struct stg_ad *ad, int32_t id, stg_tensor gout);
    double (*flops)(const stg_graph *g, const stg_node *n);
    const char *(*state)(int input);
} stg_op;

#define STG_OP(name) extern const stg_op stg_op_##name;
#define STG_UNARY(name, expr, deriv, reads) STG_OP(name) STG_OP(name##_grad)
#define STG_BINARY(name, expr) STG_OP(name)
#include "ops.def"
#undef STG_OP
#undef STG_UNARY
#undef STG_BINARY

/* Attributes shared by the ops that act along one axis (softmax, concat,
 * flip, ...). */
typedef struct stg_axis_attr {
    int axis;
} stg_axis_attr;
void stgO_print_axis(const void *attr, char *buf, size_t len);
/* Whether two nodes of 'op' have equal attributes (the op's equality, or
 * their bytes). */
bool stgO_attr_equal(const stg_op *op, const void *a, const void *b);
/* "axis=1" and the like; "" for an op without attributes. */
const char *stgO_attr_str(const stg_op *op, const void *attr, char *buf, size_t len);

/* Registry: every op, in ops.def order, for lookups by name and for tests. */
const stg_op *const *stgO_all(int *count);
const stg_op *stgO_find(const char *name);

/* ---- graph (graph.c) ------------------------------------------------- */

stg_graph *stgG_clone(const stg_graph *g);
bool stgG_ok(const stg_graph *g);
/* Whether 't' is a float tensor of 'g'; records an error naming 'op' if not. */
bool stgG_check_tensor(stg_graph *g, const char *op, stg_tensor t);
/* The same for an int32 tensor (labels, indices). */
bool stgG_check_index(stg_graph *g, const char *op, stg_tensor t);
/* Records the first error (printf-style message) and returns an invalid tensor. */
stg_tensor stgG_fail(stg_graph *g, stg_status s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Largest element count a tensor may have (keeps byte sizes far from overflow). */
#define STG_MAX_NUMEL ((int64_t)1 << 40)
/* Validates user-given dims into 's'; records an error naming 'what' and
 * returns false if they are not 0..8 dims, each >= 1, at most 2^40 elements. */
bool stgG_dims(stg_graph *g, const char *what, int ndim, const int64_t *dims, stg_shape *s);
/* Appends a computed node with a fresh contiguous layout; copies
 * op->attr_size bytes of 'attr' (zeros if it is NULL). */
stg_tensor stgG_add(stg_graph *g, const stg_op *op, int nin, const int32_t *in,
                    const stg_shape *shape, const void *attr);
/* Appends a view of input 0 with the given shape and layout (relative to the
 * input's base buffer). */
stg_tensor stgG_add_view(stg_graph *g, const stg_op *op, int32_t in, const stg_shape *shape,
                         const stg_layout *lay, const void *attr);
static inline stg_node *stgG_node(const stg_graph *g, stg_tensor t) { return &g->nodes[t.id]; }
static inline stg_tensor stgG_t(int32_t id) { return (stg_tensor){id}; }
/* "(2,3,4)" into buf; returns buf. */
const char *stgS_str(const stg_shape *s, char *buf, size_t len);

/* ---- shapes (shape.c) ------------------------------------------------ */

int64_t stgS_numel(const stg_shape *s);
/* Whether the element count is at most STG_MAX_NUMEL (checked without overflow). */
bool stgS_numel_ok(const stg_shape *s);
void stgS_contiguous(const stg_shape *s, stg_layout *lay);
bool stgS_is_contiguous(const stg_shape *s, const stg_layout *lay);
bool stgS_equal(const stg_shape *a, const stg_shape *b);
/* NumPy broadcast of a and b into out; false if they do not broadcast. */
bool stgS_broadcast(const stg_shape *a, const stg_shape *b, stg_shape *out);
/* Strides that read 'in' (layout 'lay') as if broadcast to 'out': 0 along
 * missing or size-1 dims that out expands. */
void stgS_broadcast_strides(const stg_shape *in, const stg_layout *lay, const stg_shape *out,
                            int64_t *st);
/* Normalises an axis (negative counts from the end); -1 if out of range. */
int stgS_axis(int axis, int nd);

/* A strided loop over up to three operands sharing one index space, with dims
 * coalesced at plan time.  Operand 0 is the output. */
#define STG_LOOP_OPS 4
typedef struct stg_loop {
    int nd;
    int64_t d[STG_MAX_DIMS];
    int64_t st[STG_LOOP_OPS][STG_MAX_DIMS];
    int64_t total;
} stg_loop;
void stgS_loop_init(stg_loop *L, const stg_shape *s, int nops, int64_t (*st)[STG_MAX_DIMS]);
/* Element offsets of each operand at flat index 'i'. */
void stgS_loop_offsets(const stg_loop *L, int64_t i, int64_t *off);

/* ---- autodiff (autodiff.c) ------------------------------------------- */

typedef struct stg_ad {
    stg_graph *g;
    int32_t nfwd;  /* nodes below this id are the graph being differentiated */
    int32_t *grad; /* per forward node: accumulated gradient node, or -1 */
    bool *needs;   /* per forward node: depends on something that wants a gradient */
} stg_ad;
/* Whether forward node 'id' needs a gradient; backward rules skip work otherwise. */
bool stgD_needs(const stg_ad *ad, int32_t id);
/* Adds 'contrib' to the gradient of node 'id' (a new add node if one exists). */
void stgD_accumulate(stg_ad *ad, int32_t id, stg_tensor contrib);
/* The gradient 'gout' (shape of a broadcast result) summed down to 'shape'. */
stg_tensor stgD_sum_to(stg_graph *g, stg_tensor gout, const stg_shape *shape);
/* Differentiates 'loss' starting from the gradient 'seed' (a node of the
 * loss's shape; -1 for a scalar loss: a constant 1); 'grad' gets one entry
 * per node. */
stg_status stgD_differentiate(stg_graph *g, int32_t loss, int32_t seed, int32_t *grad);

/* ---- arena (arena.c) ------------------------------------------------- */

typedef struct stg_interval {
    size_t bytes;
    int32_t first, last; /* schedule positions, inclusive */
    size_t offset;       /* output */
} stg_interval;
/* Places the intervals so that any two that overlap in time get disjoint
 * bytes; returns the arena size.  Pure: depends only on its input. */
size_t stgA_place(stg_interval *iv, int32_t n, int32_t *scratch);

/* ---- vector loops (vector_kernels.c): unit strides, any length --------- */

/* A hot loop compiled three times, for any x86-64, for x86-64-v3 (AVX2)
 * and for x86-64-v4 (AVX-512), the copy chosen once when the library is
 * loaded: the default build must run on every x86-64, yet bandwidth-bound
 * loops run up to twice as fast on wider vectors.  -ffp-contract=off
 * keeps a * b + c as two roundings in every copy and GCC never reorders a sum
 * without -ffast-math, so they give the same bits (tests/check_clones.sh
 * checks the copies for fused multiply-adds).  GCC only: clang 14 leaves
 * the dispatcher of a hidden, cloned function undefined at link time. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && \
    !defined(__SANITIZE_THREAD__) /* ThreadSanitizer instruments the resolvers, which run
                                      before it is set up */
#define STG_CLONES \
    __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define STG_CLONES
#endif

float stgV_dot(int64_t n, const float *x, const float *y);
/* out[j] = the dot of x with row j of m (rows at stride rs), j < 4 */
void stgV_dot4(int64_t n, const float *m, int64_t rs, const float *x, float out[4]);
/* y += c x */
void stgV_axpy(int64_t n, float c, const float *x, float *y);
/* y += c[0] x + c[1] (x + cs) + c[2] (x + 2 cs) + c[3] (x + 3 cs), in that order */
void stgV_axpy4(int64_t n, const float c[4], const float *x, int64_t cs, float *y);
/* y = c x */
void stgV_scale(int64_t n, float c, const float *x, float *y);

/* ---- plan (plan.c) --------------------------------------------------- */

/* A planned node: everything its kernel needs, resolved at plan time. */
typedef struct stg_pnode {
    const stg_node *node;
    int32_t id;
    float *out;                      /* base address of the node's data */
    const float *in[STG_MAX_INPUTS]; /* inputs' data (view layouts applied by the kernel) */
    const stg_node *innode[STG_MAX_INPUTS];
    void *desc;                     /* op data from stgP_opdata (owned by the plan) */
    unsigned char *scratch;         /* stgP_scratch's bytes in the arena, or NULL */
    int32_t scratch_buf;            /* their buffer, or -1 */
    size_t scratch_bytes;           /* per thread if scratch_per_thread, else in all */
    bool scratch_per_thread;
    bool serial;                    /* thread 0 alone runs it (too little work to share) */
    bool barrier_before;
} stg_pnode;

typedef struct stg_buffer {
    size_t bytes, offset;
    int32_t first, last;
    int32_t owner; /* the node it was made for (later in-place nodes share it) */
    bool persistent;
    bool scratch;  /* the owner's scratch (stgP_scratch), not its output */
} stg_buffer;

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
    stg_fault fault;        /* what the first kernel that failed in a step said */
    char step_msg[512];     /* stg_plan_message: the last step's or call's message */
    stgK_kernel kern;   /* GEMM micro-kernel and block sizes */
    char kern_why[256]; /* which kernel and why, for people */
    struct stg_profile *prof; /* NULL unless opts.profile > 0 */
};

/* Element pointer of node 'id' (its base buffer + layout offset). */
float *stgP_ptr(const struct stg_plan *p, int32_t id);
/* For 'prepare': zeroed op data of 'bytes' for the node, owned by the plan
 * (freed with it) and reachable as pn->desc; NULL when out of memory. */
void *stgP_opdata(stg_prep *cx, stg_pnode *pn, size_t bytes);
/* For 'prepare': 'bytes' of arena scratch that the node's kernel may use
 * while it runs (and only then: the bytes are other buffers' before and
 * after), one block per thread if 'per_thread', else one for all.  Each
 * block starts on a cache line. */
void stgP_scratch(stg_prep *cx, stg_pnode *pn, size_t bytes, bool per_thread);
/* Thread tid's scratch block of a node (the only block if not per
 * thread); NULL for a node that asked for none. */
static inline void *stgR_scratch(const stg_pnode *pn, int tid)
{
    if (!pn->scratch)
        return NULL;
    size_t stride = (pn->scratch_bytes + STG_ALIGN - 1) / STG_ALIGN * STG_ALIGN;
    return pn->scratch + (pn->scratch_per_thread ? (size_t)tid * stride : 0);
}

/* ---- run (run.c) ----------------------------------------------------- */

/* Called by a kernel that finds bad data in a step (thread-safe; the first
 * call wins): the step stops at the next barrier and returns 's'. */
void stgR_fail(const stg_step *sx, stg_status s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
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
int stgR_pool_threads(const struct stg_pool *pool);
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
/* Below this many elements of work a node runs on thread 0 alone: the
 * plan's default for pnode.serial, which 'prepare' may refine. */
#define STG_GRAIN 16384

/* Splits [0, n) into nt nearly equal contiguous ranges; thread tid's is [*lo, *hi). */
static inline void stgR_split(int64_t n, int tid, int nt, int64_t *lo, int64_t *hi)
{
    *lo = n * tid / nt;
    *hi = n * (tid + 1) / nt;
}

/* Thread tid's share of a node's n items: everything on thread 0 when the
 * node is serial (the barrier plan relies on it), else an even split. */
static inline void stgR_share(const stg_pnode *pn, int64_t n, int tid, int nt, int64_t *lo,
                              int64_t *hi)
{
    if (pn->serial) {
        *lo = 0;
        *hi = tid == 0 ? n : 0;
    } else {
        stgR_split(n, tid, nt, lo, hi);
    }
}

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

/* ---- matmul lowering (ops/matmul.c) ----------------------------------- */

/* How the planner lowered one matmul node, for tests and profiles. */
typedef struct stg_matmul_info {
    const char *kind; /* "gemm", "gemv", "gevm", "ger" or "dot" */
    int64_t m, n, k;  /* of each product, after folding batch dims */
    int64_t products; /* outer loop positions x reduction loop positions */
    int64_t reduced;  /* reduction loop positions (accumulated with beta = 1) */
    int64_t units;    /* work units shared among threads */
} stg_matmul_info;
bool stgK_matmul_info(const stg_pnode *pn, stg_matmul_info *info);

/* ---- shared kernels --------------------------------------------------- */

/* stg_gather whose out-of-range message names what the indices are
 * (e.g. "softmax_cross_entropy: label"; a static string). */
stg_tensor stgK_gather_labelled(stg_graph *g, stg_tensor a, int axis, stg_tensor idx,
                                const char *what);

/* Scalar functions used in ops.def expressions. */
float stgK_sigmoid(float x);
float stgK_gelu_deriv(float x);

/* A copy of one strided view of shape s into another, laid out at plan
 * time (the layouts' offsets included). */
typedef struct stg_copy {
    stg_loop loop; /* ops: dst, src */
    int64_t dst_off, src_off;
} stg_copy;
void stgK_copy_init(stg_copy *c, const stg_layout *dlay, const stg_layout *slay,
                    const stg_shape *s);
/* Copies elements [lo, hi) (row-major order over the shape). */
void stgK_copy(const stg_copy *c, float *dst, const float *src, int64_t lo, int64_t hi);

#endif /* STG_INTERNAL_H */
