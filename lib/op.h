/*
 * The op contract: what an op declares (its descriptor), what its kernels
 * are given at plan time and in a step, and the helpers op files share:
 * autodiff, vector loops, thread shares, copies.  lib/ops/ includes only
 * this header.
 */
#ifndef STG_OP_H
#define STG_OP_H

#include <stdatomic.h>

#include "gemm.h"
#include "graph.h"

/* ---- ops ------------------------------------------------------------- */

struct stg_plan;
struct stg_pnode;
struct stg_ad;

enum {
    STG_OPF_VIEW = 1 << 0,        /* no kernel: data is a view of input 0 */
    STG_OPF_ELEMENTWISE = 1 << 1, /* out[i] depends on inputs at i only */
    STG_OPF_LEAF = 1 << 3,        /* input, param, constant */
    STG_OPF_INPLACE = 1 << 4,     /* may write over an input of its own shape that dies here */
    STG_OPF_UPDATE = 1 << 5,      /* runs after the guard and writes input 0 (a parameter or
                                     running statistic) and inputs 2.. (its state) in
                                     place: optimizer updates, commits of forward state */
    STG_OPF_EFFECT = 1 << 6,      /* always scheduled: acts on the step, not through an output */
    STG_OPF_SERIAL = 1 << 7,      /* its kernel always runs on thread 0 alone */
    STG_OPF_CHAIN = 1 << 8,       /* its output is always input 0's buffer, updated in place:
                                     a new version of a buffer that the old version's
                                     only reader builds up step by step (a recurrence's
                                     states); input 0 is a node of the same shape that
                                     is not a view */
    STG_OPF_COLLECTIVE = 1 << 9,  /* talks to the other processes (the gradient sums): it
                                     runs in every step, a failed one included, since the
                                     other processes wait for it (run.c) */
    STG_OPF_EARLY = 1 << 10       /* scheduled as soon as its inputs are written (after
                                     the forward pass), not in the order of ids */
};

/* The attributes of the gradient sums' nodes (ops/collective.c). */
typedef struct stg_coll_attr {
    int32_t bucket, buckets; /* this bucket, of how many (the last: the failure flags) */
    int32_t size, rank;
    int64_t floats; /* the bucket's, the padding between gradients included */
} stg_coll_attr;

/* What 'prepare' is given (plan.c): the plan's fixed facts, and the means
 * to ask for op data and scratch.  Nothing in it points into the arena,
 * which is placed after every node is prepared. */
typedef struct stg_prep {
    int threads;               /* threads of the plan's steps */
    const stg_plan_options *opt; /* the plan's options (optimizer hyper-parameters) */
    bool inference;            /* an inference plan (opts.inference) */
    const stgK_kernel *kern;   /* the GEMM micro-kernel and its blocks */
    char msg[256];             /* why 'prepare' refused the node (stgP_fail) */
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
    uint64_t seed;        /* opts.seed: the key of random masks */
    uint64_t call;        /* the plan's runs so far, this one included: a failed step's
                             retry has the same number but not the same call */
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
 * for any other input), for checkpoints; 'commit', for a forward node
 * that stages state (batch norm's running statistics), adds the UPDATE
 * nodes that write it, which a training plan runs after the guard so that
 * a failed step changes nothing; 'step', for the nodes of a recurrence,
 * the time step a node belongs to (profiles group them by it).
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
    void (*commit)(stg_graph *g, int32_t id);
    int64_t (*step)(const void *attr);
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
/* x[0] + ... + x[n-1], in sixteen lanes summed in a fixed tree: the order
 * depends on n alone */
float stgV_sum(int64_t n, const float *x);
/* out[j] = the dot of x with row j of m (rows at stride rs), j < 4 */
void stgV_dot4(int64_t n, const float *m, int64_t rs, const float *x, float out[4]);
/* y += c x */
void stgV_axpy(int64_t n, float c, const float *x, float *y);
/* y += c[0] x + c[1] (x + cs) + c[2] (x + 2 cs) + c[3] (x + 3 cs), in that order */
void stgV_axpy4(int64_t n, const float c[4], const float *x, int64_t cs, float *y);
/* y = c x */
void stgV_scale(int64_t n, float c, const float *x, float *y);
/* y = sigmoid(x), y = tanh(x), within a few ulp, vectorised (vector_math.c);
 * y may be x */
void stgV_sigmoid(int64_t n, const float *x, float *y);
void stgV_tanh(int64_t n, const float *x, float *y);
/* y = e^x within a few ulp: 0 below -87, infinity past the largest float */
void stgV_exp(int64_t n, const float *x, float *y);

/* ---- planned nodes ----------------------------------------------------- */

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

/* For 'prepare': zeroed op data of 'bytes' for the node, owned by the plan
 * (freed with it) and reachable as pn->desc; NULL when out of memory. */
void *stgP_opdata(stg_prep *cx, stg_pnode *pn, size_t bytes);
/* For 'prepare': 'bytes' of arena scratch that the node's kernel may use
 * while it runs (and only then: the bytes are other buffers' before and
 * after), one block per thread if 'per_thread', else one for all.  Each
 * block starts on a cache line. */
void stgP_scratch(stg_prep *cx, stg_pnode *pn, size_t bytes, bool per_thread);
/* For 'prepare': refuses the node with status 's' and a message naming
 * the op, the shapes and the rule (it becomes the plan's message). */
stg_status stgP_fail(stg_prep *cx, stg_status s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Thread tid's scratch block of a node (the only block if not per
 * thread); NULL for a node that asked for none. */
static inline void *stgR_scratch(const stg_pnode *pn, int tid)
{
    if (!pn->scratch)
        return NULL;
    size_t stride = (pn->scratch_bytes + STG_ALIGN - 1) / STG_ALIGN * STG_ALIGN;
    return pn->scratch + (pn->scratch_per_thread ? (size_t)tid * stride : 0);
}

/* Called by a kernel that finds bad data in a step (thread-safe; the first
 * call wins): the step stops at the next barrier and returns 's'. */
void stgR_fail(const stg_step *sx, stg_status s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

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

/* t itself when its layout is contiguous (a view with an offset
 * included), else a contiguous copy of it: for kernels that read plain
 * rows. */
stg_tensor stgK_contiguous(stg_graph *g, stg_tensor t);

/* The batched product a b with the output shape 'out', whose batch dims
 * may lack or be 1 where a's and b's are not: those are summed, as in the
 * gradient of a weight shared across a batch (one GEMM when the strides
 * fold the batch into K). */
stg_tensor stgK_matmul_sum(stg_graph *g, stg_tensor a, stg_tensor b, const stg_shape *out);

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

/* The counter-based generator of init.c: a SplitMix64 finaliser, and
 * uniform value i (24 bits, in [0, 1)) of stream 'seed'. */
uint64_t stgK_mix(uint64_t z);
float stgK_unit(uint64_t seed, uint64_t i);

/* The geometry of one convolution or pooling window over an H x W plane
 * (conv1d and the 1-d pools use H = 1). */
typedef struct window_attr {
    int64_t c, h, w; /* input channels and plane */
    int64_t kh, kw;  /* kernel */
    int64_t sh, sw;  /* stride */
    int64_t ph, pw;  /* padding */
    int64_t dh, dw;  /* dilation */
    int64_t oh, ow;  /* output plane */
} window_attr;
/* The window of a convolution or pooling of x4 (N, C, H, W) by k, given as
 * (h, w) pairs; false after recording a message naming 'op' and the user's
 * x (shown, of 'dims' spatial axes: a 1-d one is called L) when a value is
 * out of range or the kernel reaches past the padded input. */
bool stgK_window(stg_graph *g, const char *op, const stg_shape *shown, int dims,
                 const stg_shape *x4, const int64_t k[2], const int64_t stride[2],
                 const int64_t pad[2], const int64_t dil[2], window_attr *a);
void stgK_print_window(const void *attr, char *buf, size_t len);

#endif /* STG_OP_H */
