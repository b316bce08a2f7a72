#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tmpdir.h"

int tmpdir_make(char *buf, size_t len, const char *name)
{
    const char *base = getenv("TMPDIR");
    if (base == NULL || strlen(base) > 40)
        base = "/tmp";
    if ((size_t)snprintf(buf, len, "%s/%s.XXXXXX", base, name) >= len)
        return -1;
    return mkdtemp(buf) ? 0 : -1;
}

static int remove_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st, (void)type, (void)ftw;
    return remove(path);
}

int tmpdir_remove(const char *dir)
{
    return nftw(dir, remove_one, 16, FTW_DEPTH | FTW_PHYS) == 0 ? 0 : -1;
}
