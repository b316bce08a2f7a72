/*
 * Leaves: inputs (data supplied before each step), parameters (trained),
 * constants (data copied into the graph) and running statistics.  They
 * have no kernel and no backward rule; the plan gives each a buffer that
 * lives as long as the plan.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../op.h"

static stg_tensor leaf(stg_graph *g, const stg_op *op, stg_role role, const char *name, int ndim,
                       const int64_t *dims, const float *data)
{
    stg_shape s;
    char what[96];
    if (name)
        snprintf(what, sizeof what, "%s '%s'", op->name, name);
    else
        snprintf(what, sizeof what, "%s", op->name);
    if (!stgG_ok(g) || !stgG_dims(g, what, ndim, dims, &s))
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

STG_API stg_tensor stg_input_i32(stg_graph *g, const char *name, int ndim, const int64_t *dims)
{
    stg_tensor t = leaf(g, &stg_op_input, STG_ROLE_INPUT, name, ndim, dims, NULL);
    if (t.id >= 0)
        stgG_node(g, t)->is_int = true;
    return t;
}

STG_API stg_tensor stg_param(stg_graph *g, const char *name, int ndim, const int64_t *dims)
{
    return leaf(g, &stg_op_param, STG_ROLE_PARAM, name, ndim, dims, NULL);
}

STG_API stg_tensor stg_stat(stg_graph *g, const char *name, int ndim, const int64_t *dims,
                            float value)
{
    stg_shape s;
    if (!stgG_ok(g) || !stgG_dims(g, "stat", ndim, dims, &s))
        return stgG_t(-1);
    if (!isfinite(value))
        return stgG_fail(g, STG_INVALID, "stat '%s': the initial value %g is not finite",
                         name ? name : "", (double)value);
    int64_t n = stgS_numel(&s);
    float *fill = malloc((size_t)n * sizeof *fill);
    if (!fill)
        return stgG_fail(g, STG_NOMEM, "stat: out of memory for %lld values", (long long)n);
    for (int64_t i = 0; i < n; i++)
        fill[i] = value;
    stg_tensor t = leaf(g, &stg_op_stat, STG_ROLE_STAT, name, ndim, dims, fill);
    free(fill);
    return t;
}

STG_API stg_tensor stg_constant(stg_graph *g, int ndim, const int64_t *dims, const float *data)
{
    return leaf(g, &stg_op_constant, STG_ROLE_CONST, NULL, ndim, dims, data);
}

STG_API stg_tensor stg_scalar(stg_graph *g, float value)
{
    return leaf(g, &stg_op_constant, STG_ROLE_CONST, NULL, 0, NULL, &value);
}

const stg_op stg_op_input = {
    .name = "input",
    .flags = STG_OPF_LEAF,
};
const stg_op stg_op_param = {
    .name = "param",
    .flags = STG_OPF_LEAF,
};
const stg_op stg_op_constant = {
    .name = "constant",
    .flags = STG_OPF_LEAF,
};
/* A running statistic: its initial values in 'data', written by commit
 * nodes after the guard. */
const stg_op stg_op_stat = {
    .name = "stat",
    .flags = STG_OPF_LEAF,
};
/* Optimizer state (created by optim.c, not by users). */
const stg_op stg_op_state = {
    .name = "state",
    .flags = STG_OPF_LEAF,
};
