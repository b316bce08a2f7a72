/* A scratch directory for tests that write files. */
#ifndef STG_TMPDIR_H
#define STG_TMPDIR_H

#include <stddef.h>

/* Creates $TMPDIR/<name>.XXXXXX (or under /tmp) and writes its path into
 * buf; 0 on success, -1 on failure. */
int tmpdir_make(char *buf, size_t len, const char *name);
/* Removes 'dir' and everything below it; 0 on success, -1 on failure. */
int tmpdir_remove(const char *dir);

#endif
