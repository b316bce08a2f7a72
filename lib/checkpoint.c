/* Checkpoint I/O (being written): both calls fail cleanly for now. */
#include "internal.h"

STG_API stg_status stg_plan_save(stg_plan *p, const char *path)
{
    (void)p, (void)path;
    return STG_IO;
}

STG_API stg_status stg_plan_load(stg_plan *p, const char *path)
{
    (void)p, (void)path;
    return STG_IO;
}
