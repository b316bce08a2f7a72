/*
 * Leaves: inputs (data supplied before each step), parameters (trained) and
 * constants (data copied into the graph).  They have no kernel and no
 * backward rule; the plan gives each a buffer that lives as long as the plan.
 */
#include <stdlib.h>
#include <string.h>

#include "../internal.h"

/* Largest element count a tensor may have (keeps byte sizes far from overflow). */
#define MAX_NUMEL ((int64_t)1 << 40)

static bool shape_from_dims(stg_graph *g, const char *op, const char *name, int ndim,
                            const int64_t *dims, stg_shape *s)
{
    const char *q = name ? "'" : "", *nm = name ? name : "";
    if (ndim < 0 || ndim > STG_MAX_DIMS) {
        stgG_fail(g, STG_SHAPE, "%s %s%s%s: %d dims (a tensor has 0 to %d)", op, q, nm, q, ndim,
                  STG_MAX_DIMS);
        return false;
    }
    if (ndim > 0 && !dims) {
        stgG_fail(g, STG_INVALID, "%s %s%s%s: dims is NULL for %d dims", op, q, nm, q, ndim);
        return false;
    }
    s->nd = ndim;
    int64_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (dims[i] < 1 || dims[i] > MAX_NUMEL) {
            stgG_fail(g, STG_SHAPE, "%s %s%s%s: dim %d is %lld (every dim must be at least 1)", op,
                      q, nm, q, i, (long long)dims[i]);
            return false;
        }
        s->d[i] = dims[i];
        numel *= dims[i];
        if (numel > MAX_NUMEL) {
            stgG_fail(g, STG_SHAPE, "%s %s%s%s: more than 2^40 elements", op, q, nm, q);
            return false;
        }
    }
    return true;
}

static stg_tensor leaf(stg_graph *g, const stg_op *op, stg_role role, const char *name, int ndim,
                       const int64_t *dims, const float *data)
{
    stg_shape s;
    if (!stgG_ok(g) || !shape_from_dims(g, op->name, name, ndim, dims, &s))
        return stgG_t(-1);
    if (role == STG_ROLE_CONST && !data)
        return stgG_fail(g, STG_INVALID, "constant: data is NULL");
    char *nm = NULL;
    float *copy = NULL;
    if (name && !(nm = strdup(name)))
        return stgG_fail(g, STG_NOMEM, "%s: out of memory copying the name", op->name);
    if (data) {
        size_t bytes = (size_t)stgS_numel(&s) * sizeof(float);
        if (!(copy = malloc(bytes))) {
            free(nm);
            return stgG_fail(g, STG_NOMEM, "%s: out of memory copying %zu bytes", op->name, bytes);
        }
        memcpy(copy, data, bytes);
    }
    stg_tensor t = stgG_add(g, op, 0, NULL, &s, NULL);
    if (t.id < 0) {
        free(nm);
        free(copy);
        return t;
    }
    stg_node *n = stgG_node(g, t);
    n->role = role;
    n->name = nm;
    n->data = copy;
    return t;
}

STG_API stg_tensor stg_input(stg_graph *g, const char *name, int ndim, const int64_t *dims)
{
    return leaf(g, &stg_op_input, STG_ROLE_INPUT, name, ndim, dims, NULL);
}

STG_API stg_tensor stg_param(stg_graph *g, const char *name, int ndim, const int64_t *dims)
{
    return leaf(g, &stg_op_param, STG_ROLE_PARAM, name, ndim, dims, NULL);
}

STG_API stg_tensor stg_constant(stg_graph *g, int ndim, const int64_t *dims, const float *data)
{
    return leaf(g, &stg_op_constant, STG_ROLE_CONST, NULL, ndim, dims, data);
}

STG_API stg_tensor stg_scalar(stg_graph *g, float value)
{
    return leaf(g, &stg_op_constant, STG_ROLE_CONST, NULL, 0, NULL, &value);
}

static double no_flops(const stg_graph *g, const stg_node *n)
{
    (void)g, (void)n;
    return 0.0;
}

const stg_op stg_op_input = {"input", STG_OPF_LEAF, NULL, NULL, NULL, no_flops};
const stg_op stg_op_param = {"param", STG_OPF_LEAF, NULL, NULL, NULL, no_flops};
const stg_op stg_op_constant = {"constant", STG_OPF_LEAF, NULL, NULL, NULL, no_flops};
