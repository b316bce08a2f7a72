/*
 * Command-line parsing shared by the tools.
 */
#ifndef STG_TOOLS_CLI_H
#define STG_TOOLS_CLI_H

/* The whole number in [lo, hi] that 'v' gives option 'opt' of program 'prog';
 * prints what was expected and exits with status 2 otherwise. */
long cli_number(const char *prog, const char *opt, const char *v, long lo, long hi);

/* The wait policy named 'v' (yield, spin or passive); false if none is. */
#include <stdbool.h>
#include "stgrad.h"
bool cli_wait(const char *v, stg_wait *out);

#endif
