/*
 * The graph as the library sees it: shapes, strided layouts, nodes, and the
 * functions that build and inspect graphs (graph.c, shape.c).
 */
#ifndef STG_GRAPH_H
#define STG_GRAPH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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
    STG_ROLE_STATE, /* optimizer state: zero at creation, persistent, checkpointed */
    STG_ROLE_STAT   /* a running statistic (stg_stat): 'data' at creation, persistent,
                       checkpointed, written only by commit nodes after the guard */
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
stg_tensor stgG_add(stg_graph *g, const struct stg_op *op, int nin, const int32_t *in,
                    const stg_shape *shape, const void *attr);
/* Appends a view of input 0 with the given shape and layout (relative to the
 * input's base buffer). */
stg_tensor stgG_add_view(stg_graph *g, const struct stg_op *op, int32_t in, const stg_shape *shape,
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

#endif /* STG_GRAPH_H */
