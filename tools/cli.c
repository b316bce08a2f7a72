/*
 * Command-line parsing shared by the tools (see cli.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

long cli_number(const char *prog, const char *opt, const char *v, long lo, long hi)
{
    char *end;
    errno = 0;
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || end == v || *end || errno || x < lo || x > hi) {
        fprintf(stderr, "%s: %s needs a whole number from %ld to %ld (got '%s')\n", prog, opt, lo,
                hi, v ? v : "nothing");
        exit(2);
    }
    return x;
}

bool cli_wait(const char *v, stg_wait *out)
{
    static const struct {
        const char *name;
        stg_wait wait;
    } names[] = {{"yield", STG_WAIT_SPIN_YIELD}, {"spin", STG_WAIT_SPIN},
                 {"passive", STG_WAIT_PASSIVE}};
    for (size_t i = 0; v && i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(v, names[i].name)) {
            *out = names[i].wait;
            return true;
        }
    return false;
}
