/* The table of all ops, generated from ops.def. */
#include <stdio.h>
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

void stgO_print_axis(const void *attr, char *buf, size_t len)
{
    snprintf(buf, len, "axis=%d", ((const stg_axis_attr *)attr)->axis);
}

bool stgO_attr_equal(const stg_op *op, const void *a, const void *b)
{
    if (!op->attr_size)
        return true;
    return op->attr_equal ? op->attr_equal(a, b) : memcmp(a, b, op->attr_size) == 0;
}

const char *stgO_attr_str(const stg_op *op, const void *attr, char *buf, size_t len)
{
    buf[0] = '\0';
    if (op->attr_size && op->print_attr && attr)
        op->print_attr(attr, buf, len);
    return buf;
}
