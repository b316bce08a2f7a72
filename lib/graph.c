/*
 * The graph: a growing array of nodes, each input id below its own, and the
 * sticky first error that builder calls record instead of failing loudly.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static const char *const status_names[] = {
#define STG_STATUS_NAME(name, msg) "STG_" #name,
    STG_STATUS_MAP(STG_STATUS_NAME)
#undef STG_STATUS_NAME
};
static const char *const status_msgs[] = {
#define STG_STATUS_MSG(name, msg) msg,
    STG_STATUS_MAP(STG_STATUS_MSG)
#undef STG_STATUS_MSG
};
#define NSTATUS ((int)(sizeof status_names / sizeof status_names[0]))

STG_API const char *stg_status_name(stg_status s)
{
    return (int)s >= 0 && (int)s < NSTATUS ? status_names[s] : "STG_UNKNOWN";
}

STG_API const char *stg_status_message(stg_status s)
{
    return (int)s >= 0 && (int)s < NSTATUS ? status_msgs[s] : "unknown status";
}

STG_API stg_graph *stg_graph_new(void)
{
    return calloc(1, sizeof(stg_graph));
}

STG_API void stg_graph_free(stg_graph *g)
{
    if (!g)
        return;
    for (int32_t i = 0; i < g->n; i++) {
        free(g->nodes[i].name);
        free(g->nodes[i].data);
        free(g->nodes[i].attr);
    }
    free(g->nodes);
    free(g);
}

STG_API stg_status stg_graph_status(const stg_graph *g)
{
    return g ? g->status : STG_INVALID;
}

STG_API const char *stg_graph_message(const stg_graph *g)
{
    return g ? g->msg : "no graph (NULL)";
}

stg_tensor stgG_fail(stg_graph *g, stg_status s, const char *fmt, ...)
{
    if (g && g->status == STG_OK) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(g->msg, sizeof g->msg, fmt, ap);
        va_end(ap);
        g->status = s;
    }
    return stgG_t(-1);
}

bool stgG_ok(const stg_graph *g)
{
    return g && g->status == STG_OK;
}

STG_API int stg_tensor_valid(const stg_graph *g, stg_tensor t)
{
    return g && t.id >= 0 && t.id < g->n;
}

static bool check(stg_graph *g, const char *op, stg_tensor t, bool want_int)
{
    if (!stg_tensor_valid(g, t)) {
        stgG_fail(g, STG_INVALID, "%s: argument is not a tensor of this graph (id %d)", op,
                  (int)t.id);
        return false;
    }
    if (g->nodes[t.id].is_int != want_int) {
        stgG_fail(g, STG_INVALID,
                  want_int ? "%s: labels/indices must be an int32 tensor (stg_input_i32)"
                           : "%s: argument is an int32 tensor (labels or indices); only gather "
                             "and the classification losses take those",
                  op);
        return false;
    }
    return true;
}

bool stgG_check_tensor(stg_graph *g, const char *op, stg_tensor t)
{
    return check(g, op, t, false);
}

bool stgG_check_index(stg_graph *g, const char *op, stg_tensor t)
{
    return check(g, op, t, true);
}

STG_API int stg_tensor_ndim(const stg_graph *g, stg_tensor t)
{
    return stg_tensor_valid(g, t) ? g->nodes[t.id].shape.nd : -1;
}

STG_API int stg_tensor_shape(const stg_graph *g, stg_tensor t, int64_t *dims)
{
    if (!stg_tensor_valid(g, t))
        return -1;
    const stg_shape *s = &g->nodes[t.id].shape;
    if (dims)
        memcpy(dims, s->d, (size_t)s->nd * sizeof(int64_t));
    return s->nd;
}

STG_API int64_t stg_tensor_numel(const stg_graph *g, stg_tensor t)
{
    return stg_tensor_valid(g, t) ? stgS_numel(&g->nodes[t.id].shape) : 0;
}

static stg_node *append(stg_graph *g)
{
    if (g->n == g->cap) {
        int32_t cap = g->cap ? g->cap * 2 : 64;
        stg_node *nodes = realloc(g->nodes, (size_t)cap * sizeof *nodes);
        if (!nodes) {
            stgG_fail(g, STG_NOMEM, "graph: out of memory growing to %d nodes", (int)cap);
            return NULL;
        }
        g->nodes = nodes;
        g->cap = cap;
    }
    stg_node *n = &g->nodes[g->n];
    memset(n, 0, sizeof *n);
    n->base = g->n;
    return n;
}

stg_tensor stgG_add(stg_graph *g, const stg_op *op, int nin, const int32_t *in,
                    const stg_shape *shape, const void *attr)
{
    if (!stgG_ok(g))
        return stgG_t(-1);
    /* Callers may pass pointers into g->nodes, which append() can move. */
    stg_shape s = *shape;
    int32_t ins[STG_MAX_INPUTS];
    for (int i = 0; i < nin; i++)
        ins[i] = in[i];
    void *a = NULL;
    if (op->attr_size) {
        if (!(a = calloc(1, op->attr_size)))
            return stgG_fail(g, STG_NOMEM, "%s: out of memory for the node's attributes",
                             op->name);
        if (attr)
            memcpy(a, attr, op->attr_size);
    }
    stg_node *n = append(g);
    if (!n) {
        free(a);
        return stgG_t(-1);
    }
    n->op = op;
    n->nin = nin;
    for (int i = 0; i < nin; i++)
        n->in[i] = ins[i];
    n->shape = s;
    stgS_contiguous(&s, &n->lay);
    n->attr = a;
    return stgG_t(g->n++);
}

stg_tensor stgG_add_view(stg_graph *g, const stg_op *op, int32_t in, const stg_shape *shape,
                         const stg_layout *lay, const void *attr)
{
    stg_layout l = *lay;
    stg_tensor t = stgG_add(g, op, 1, &in, shape, attr);
    if (t.id >= 0) {
        stg_node *n = &g->nodes[t.id];
        n->lay = l;
        n->base = g->nodes[in].base;
        n->is_int = g->nodes[in].is_int;
    }
    return t;
}

/* A deep copy; the plan differentiates and extends its own copy. */
stg_graph *stgG_clone(const stg_graph *src)
{
    stg_graph *g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    g->cap = src->n + 64;
    g->nodes = calloc((size_t)g->cap, sizeof *g->nodes);
    if (!g->nodes) {
        free(g);
        return NULL;
    }
    for (int32_t i = 0; i < src->n; i++) {
        stg_node *d = &g->nodes[i];
        const stg_node *s = &src->nodes[i];
        *d = *s;
        d->name = NULL;
        d->data = NULL;
        d->attr = NULL;
        g->n = i + 1;
        if (s->attr && !(d->attr = malloc(s->op->attr_size)))
            goto fail;
        if (s->attr)
            memcpy(d->attr, s->attr, s->op->attr_size);
        if (s->name && !(d->name = strdup(s->name)))
            goto fail;
        if (s->data) {
            size_t bytes = (size_t)stgS_numel(&s->shape) * sizeof(float);
            if (!(d->data = malloc(bytes)))
                goto fail;
            memcpy(d->data, s->data, bytes);
        }
    }
    return g;
fail:
    stg_graph_free(g);
    return NULL;
}

bool stgG_dims(stg_graph *g, const char *what, int ndim, const int64_t *dims, stg_shape *s)
{
    if (ndim < 0 || ndim > STG_MAX_DIMS) {
        stgG_fail(g, STG_SHAPE, "%s: %d dims (a tensor has 0 to %d)", what, ndim, STG_MAX_DIMS);
        return false;
    }
    if (ndim > 0 && !dims) {
        stgG_fail(g, STG_INVALID, "%s: dims is NULL for %d dims", what, ndim);
        return false;
    }
    s->nd = ndim;
    int64_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (dims[i] < 1) {
            stgG_fail(g, STG_SHAPE, "%s: dim %d is %lld (every dim must be at least 1)", what, i,
                      (long long)dims[i]);
            return false;
        }
        if (numel > STG_MAX_NUMEL / dims[i]) {
            stgG_fail(g, STG_SHAPE, "%s: more than 2^40 elements (dim %d is %lld)", what, i,
                      (long long)dims[i]);
            return false;
        }
        numel *= dims[i];
        s->d[i] = dims[i];
    }
    return true;
}

/* A failed call leaves the graph unchanged: no sticky error is recorded. */
static stg_status mark(stg_graph *g, stg_tensor t, bool grad)
{
    if (!g)
        return STG_INVALID;
    if (g->status != STG_OK)
        return g->status;
    if (!stg_tensor_valid(g, t) || (grad && g->nodes[t.id].is_int))
        return STG_INVALID;
    if (grad)
        g->nodes[t.id].want_grad = true;
    else
        g->nodes[t.id].keep = true;
    return STG_OK;
}

STG_API stg_status stg_graph_require_grad(stg_graph *g, stg_tensor t)
{
    return mark(g, t, true);
}

STG_API stg_status stg_graph_keep(stg_graph *g, stg_tensor t)
{
    return mark(g, t, false);
}
