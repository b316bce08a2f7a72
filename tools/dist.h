/* The processes of a data-parallel run of a tool: MPI where the tool was
 * built with it (STG_HAVE_MPI), one process otherwise. */
#ifndef STG_TOOLS_DIST_H
#define STG_TOOLS_DIST_H

#include <stddef.h>

#include "stgrad.h"

/* Whether this build can run over MPI. */
int dist_available(void);
/* Starts MPI; 0, or -1 with a message. */
int dist_start(int *argc, char ***argv, char *err, size_t len);
/* Processes and this one's rank (1 and 0 before dist_start). */
int dist_size(void);
int dist_rank(void);
/* v[i] = the sum of every process's v[i] (in place). */
void dist_sum(double *v, int n);
/* The collective hook for plans, then its buffers sized for plan p. */
int dist_hook(stg_collective *hook, char *err, size_t len);
int dist_prepare(const stg_plan *p, char *err, size_t len);
/* Seconds of gradient exchange since the start, and of it blocked in waits. */
void dist_times(double *exchange, double *blocked);
void dist_times_reset(void);
/* Ends MPI; dist_abort ends every process of the run. */
void dist_finish(void);
_Noreturn void dist_abort(int status);

#endif
