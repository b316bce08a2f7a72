/* The table of all ops, generated from ops.def. */
#include <string.h>

#include "internal.h"

#define STG_OP(name) &stg_op_##name,
#define STG_UNARY(name, expr, deriv, reads) STG_OP(name) STG_OP(name##_grad)
#define STG_BINARY(name, expr) STG_OP(name)
static const stg_op *const all_ops[] = {
#include "ops.def"
};
#undef STG_OP
#undef STG_UNARY
#undef STG_BINARY

const stg_op *const *stgO_all(int *count)
{
    *count = (int)(sizeof all_ops / sizeof all_ops[0]);
    return all_ops;
}

const stg_op *stgO_find(const char *name)
{
    for (size_t i = 0; i < sizeof all_ops / sizeof all_ops[0]; i++)
        if (strcmp(all_ops[i]->name, name) == 0)
            return all_ops[i];
    return NULL;
}
