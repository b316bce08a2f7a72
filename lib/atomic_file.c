/*
 * Files written all or nothing: the content goes to a temporary file beside
 * the destination, which replaces the destination only when every byte has
 * reached the disk.  A failure at any point (a full disk shows up in fwrite,
 * fflush, fsync or fclose) leaves what was there before intact.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

/* Failures are reported in the plan's message (stg_plan_message). */
#define fail stgP_message

/* Creates "<path>.tmp.<pid>" (or ".<pid>.<n>" when a stale one is in the
 * way) with O_EXCL, so the permissions follow the umask as for any new file. */
static int open_temp(const char *path, char *tmp, size_t cap)
{
    int fd = -1;
    for (int n = 0; n < 100 && fd < 0; n++) {
        if (n == 0)
            snprintf(tmp, cap, "%s.tmp.%ld", path, (long)getpid());
        else
            snprintf(tmp, cap, "%s.tmp.%ld.%d", path, (long)getpid(), n);
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd < 0 && errno != EEXIST)
            break;
    }
    return fd;
}

/* Makes the rename itself durable; a failure here is ignored, since the file
 * is complete either way. */
static void sync_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir = slash ? malloc((size_t)(slash - path) + 2) : NULL;
    if (slash && !dir)
        return;
    if (dir) {
        size_t n = slash == path ? 1 : (size_t)(slash - path);
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    int fd = open(dir ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
    free(dir);
}

stg_status stgW_write_atomic(stg_plan *p, const char *what, const char *path,
                             int (*body)(FILE *f, void *ctx), void *ctx)
{
    if (!path || !*path)
        return fail(p, STG_INVALID, "%s: no path given", what);
    size_t cap = strlen(path) + 64;
    char *tmp = malloc(cap);
    if (!tmp)
        return fail(p, STG_NOMEM, "%s: out of memory", what);
    int fd = open_temp(path, tmp, cap);
    if (fd < 0) {
        stg_status s = fail(p, STG_IO, "%s: cannot create '%s': %s", what, tmp, strerror(errno));
        free(tmp);
        return s;
    }
    int err = 0;
    errno = 0;
    FILE *f = fdopen(fd, "wb");
    if (!f) {
        err = errno ? errno : ENOMEM; /* a failed fdopen is a failed malloc, in glibc */
        close(fd);
    } else {
        err = body(f, ctx);
        errno = 0;
        if (!err && (ferror(f) || fflush(f) != 0))
            err = errno ? errno : EIO;
        if (!err && fsync(fileno(f)) != 0)
            err = errno;
        errno = 0;
        if (fclose(f) != 0 && !err)
            err = errno ? errno : EIO;
    }
    stg_status s = STG_OK;
    if (err)
        s = fail(p, STG_IO, "%s: writing '%s' failed: %s", what, tmp, strerror(err));
    else if (rename(tmp, path) != 0)
        s = fail(p, STG_IO, "%s: cannot rename '%s' to '%s': %s", what, tmp, path,
                 strerror(errno));
    if (s != STG_OK)
        (void)unlink(tmp);
    else
        sync_dir(path);
    free(tmp);
    return s;
}
