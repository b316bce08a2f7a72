/*
 * IDX reader (see idx.h for the format).  The file goes through zlib's gz*
 * calls, which decompress gzip and pass plain files through unchanged, so
 * one code path serves both.  Every check happens before the data buffer is
 * allocated, except the ones that need the data itself (truncation, trailing
 * bytes, the gzip CRC), so a bad header never costs a large allocation.
 */
#include "idx.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#if defined(__GNUC__)
#define IDX_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define IDX_PRINTF(f, a)
#endif

enum { IDX_UBYTE = 0x08, IDX_MAX_DIMS = 4 };

/* Larger files are refused: MNIST needs 47 MB, and the limit keeps the float
 * copy made by idx_load_split within 8 GiB and every product of dims far
 * from int64 overflow. */
#define IDX_MAX_BYTES ((int64_t)1 << 31)

/* gzread takes an unsigned count and returns an int, so reads of up to 2^31
 * bytes go in pieces that fit both. */
#define IDX_CHUNK ((int64_t)1 << 30)

/* zlib's input buffer is 8 KiB by default; 128 KiB took the 26 MB gzip of
 * Fashion-MNIST's training images from about 180 to 165 ms. */
#define IDX_GZBUF (128u * 1024u)

/* Writes "<path>: <message>" into msg and returns the error status. */
IDX_PRINTF(4, 5)
static int fail(char *msg, size_t msglen, const char *path, const char *fmt, ...)
{
    if (msg == NULL || msglen == 0)
        return -1;
    int n = snprintf(msg, msglen, "%s: ", path ? path : "(null)");
    if (n >= 0 && (size_t)n < msglen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg + n, msglen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* An open file: zlib names it "<fd:N>" in its messages because gzdopen
 * never sees the path; 'prefix' is that name so it can be dropped. */
typedef struct idx_file {
    gzFile gz;
    const char *path;
    char prefix[32];
} idx_file;

/* zlib's message without its "<fd:N>: " prefix: ours names the real file. */
static const char *gz_message(const idx_file *f, int *err)
{
    const char *s = gzerror(f->gz, err);
    size_t n = strlen(f->prefix);
    if (s && strncmp(s, f->prefix, n) == 0)
        s += n;
    return s ? s : "unknown zlib error";
}

/* open(2) and then gzdopen rather than gzopen, so that errno is certainly
 * the one of the failed open and not of some later call inside zlib. */
static int file_open(idx_file *f, const char *path, char *msg, size_t msglen)
{
    f->path = path;
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return fail(msg, msglen, path, "cannot open: %s", strerror(errno));
    snprintf(f->prefix, sizeof f->prefix, "<fd:%d>: ", fd);
    f->gz = gzdopen(fd, "rb");
    if (f->gz == NULL) {
        close(fd);
        return fail(msg, msglen, path, "cannot open: out of memory in zlib");
    }
    gzbuffer(f->gz, IDX_GZBUF); /* a hint: on failure the default stays */
    return 0;
}

/* Reads up to n bytes; returns how many it got (short only at the end of the
 * data) or -1 when zlib reports an error. */
static int64_t read_full(gzFile gz, uint8_t *buf, int64_t n)
{
    int64_t got = 0;
    while (got < n) {
        int64_t want = n - got < IDX_CHUNK ? n - got : IDX_CHUNK;
        int r = gzread(gz, buf + got, (unsigned)want);
        if (r < 0)
            return -1;
        if (r == 0)
            break;
        got += r;
    }
    return got;
}

/* Explains why 'what' came up short (got of want bytes): a zlib error other
 * than "unexpected end of file" means a corrupt or unreadable stream, and is
 * named as such; otherwise the file is simply too short. */
static int short_read(const idx_file *f, const char *what, int64_t got, int64_t want,
                      char *msg, size_t msglen)
{
    int err;
    const char *zmsg = gz_message(f, &err);
    if (err == Z_ERRNO)
        return fail(msg, msglen, f->path, "read error: %s", zmsg);
    if (err != Z_OK && err != Z_BUF_ERROR)
        return fail(msg, msglen, f->path, "corrupt gzip data: %s", zmsg);
    if (got < 0)
        got = 0;
    if (err == Z_BUF_ERROR)
        return fail(msg, msglen, f->path,
                    "truncated %s: %lld of %lld bytes (gzip: %s)", what,
                    (long long)got, (long long)want, zmsg);
    return fail(msg, msglen, f->path, "truncated %s: %lld of %lld bytes", what,
                (long long)got, (long long)want);
}

/* "a x b x c" into buf (64 bytes hold four 10-digit dims). */
static void format_dims(char *buf, size_t len, int ndim, const int64_t *dims)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < ndim && used < len; i++) {
        int n = snprintf(buf + used, len - used, i ? " x %lld" : "%lld",
                         (long long)dims[i]);
        if (n < 0)
            break;
        used += (size_t)n;
    }
}

/* Reads and checks the magic and the dims; fills ndim, dims and count. */
static int read_header(const idx_file *f, idx_data *d, char *msg, size_t msglen)
{
    uint8_t m[4];
    int64_t got = read_full(f->gz, m, 4);
    if (got != 4)
        return short_read(f, "header", got, 4, msg, msglen);
    if (m[0] != 0 || m[1] != 0)
        return fail(msg, msglen, f->path,
                    "bad magic 0x%02x%02x%02x%02x: not an IDX file, plain or gzip'ed",
                    m[0], m[1], m[2], m[3]);
    if (m[2] != IDX_UBYTE)
        return fail(msg, msglen, f->path,
                    "data type 0x%02x is not supported: only unsigned bytes (0x08)", m[2]);
    if (m[3] < 1 || m[3] > IDX_MAX_DIMS)
        return fail(msg, msglen, f->path, "%d dims: only 1 to %d dims are supported",
                    m[3], IDX_MAX_DIMS);
    d->ndim = m[3];

    uint8_t b[4 * IDX_MAX_DIMS];
    int64_t want = 4 * (int64_t)d->ndim;
    got = read_full(f->gz, b, want);
    if (got != want)
        return short_read(f, "header dims", got, want, msg, msglen);
    int zero = 0;
    for (int i = 0; i < d->ndim; i++) {
        const uint8_t *p = b + 4 * i;
        d->dims[i] = (int64_t)((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
                               (uint32_t)p[2] << 8 | (uint32_t)p[3]);
        zero |= d->dims[i] == 0;
    }
    /* Each dim is below 2^32 and the running product stays at most 2^31
     * before each multiply, so it never exceeds 2^63. */
    int64_t count = 1;
    for (int i = 0; i < d->ndim && !zero && count <= IDX_MAX_BYTES; i++)
        count *= d->dims[i];
    if (zero || count > IDX_MAX_BYTES) {
        char shape[64];
        format_dims(shape, sizeof shape, d->ndim, d->dims);
        return fail(msg, msglen, f->path,
                    zero ? "a dim is zero: dims %s"
                         : "declared size is too large: dims %s exceed 2^31 bytes",
                    shape);
    }
    d->count = count;
    return 0;
}

/* Reads what is left and returns how many bytes that was.  Normally that
 * is one call returning 0; bytes past the data are drained rather than just
 * noticed because a corrupt deflate stream can inflate to too many bytes,
 * and only at its end does zlib's CRC check name the real problem. */
static int64_t count_rest(gzFile gz)
{
    uint8_t buf[4096];
    int64_t n = 0;
    int r;
    while ((r = gzread(gz, buf, sizeof buf)) > 0)
        n += r;
    return n;
}

/* Reads the data the header declares, then makes sure nothing follows it.
 * Reading on to the end also makes zlib reach the gzip trailer and check its
 * CRC and length, which it would not do if we stopped at the last data byte;
 * a stream error found there outranks the trailing bytes. */
static int read_body(const idx_file *f, idx_data *d, char *msg, size_t msglen)
{
    d->data = malloc((size_t)d->count);
    if (d->data == NULL)
        return fail(msg, msglen, f->path, "out of memory for %lld bytes of data",
                    (long long)d->count);
    int64_t got = read_full(f->gz, d->data, d->count);
    if (got != d->count)
        return short_read(f, "data", got, d->count, msg, msglen);

    int64_t extra = count_rest(f->gz);
    int err;
    const char *zmsg = gz_message(f, &err);
    if (err == Z_BUF_ERROR)
        return fail(msg, msglen, f->path, "truncated or corrupt gzip stream: %s", zmsg);
    if (err == Z_ERRNO)
        return fail(msg, msglen, f->path, "read error: %s", zmsg);
    if (err != Z_OK)
        return fail(msg, msglen, f->path, "corrupt gzip data: %s", zmsg);
    if (extra > 0)
        return fail(msg, msglen, f->path,
                    "trailing garbage: %lld byte(s) after the %lld data bytes the header "
                    "declares", (long long)extra, (long long)d->count);
    return 0;
}

int idx_read(const char *path, idx_data *d, char *msg, size_t msglen)
{
    if (path == NULL || d == NULL)
        return fail(msg, msglen, path, "idx_read needs a path and an output struct");
    idx_file f;
    if (file_open(&f, path, msg, msglen))
        return -1;
    idx_data t = {0};
    int rc = read_header(&f, &t, msg, msglen);
    if (rc == 0)
        rc = read_body(&f, &t, msg, msglen);
    /* On success read_body has checked zlib's status at the end of the
     * stream, and on failure msg already says why: gzclose adds nothing. */
    gzclose(f.gz);
    if (rc) {
        idx_free(&t);
        return rc;
    }
    *d = t;
    return 0;
}

void idx_free(idx_data *d)
{
    if (d == NULL)
        return;
    free(d->data);
    memset(d, 0, sizeof *d);
}

/* "<dir>/<prefix>-<kind>-ubyte.gz" into buf; fails rather than truncate. */
static int split_path(char *buf, size_t len, const char *dir, const char *prefix,
                      const char *kind, char *msg, size_t msglen)
{
    int n = snprintf(buf, len, "%s/%s-%s-ubyte.gz", dir, prefix, kind);
    if (n < 0 || (size_t)n >= len)
        return fail(msg, msglen, dir, "path of the %s file of '%s' is too long", kind,
                    prefix);
    return 0;
}

/* Checks the dims that idx_read cannot know about: images are (N, rows,
 * cols), labels (N), and both files hold the same N. */
static int check_pair(const idx_data *im, const char *ipath, const idx_data *lb,
                      const char *lpath, char *msg, size_t msglen)
{
    if (im->ndim != 3)
        return fail(msg, msglen, ipath,
                    "%d dims: an images file needs 3 (count, rows, cols)", im->ndim);
    if (lb->ndim != 1)
        return fail(msg, msglen, lpath, "%d dims: a labels file needs 1 (count)",
                    lb->ndim);
    if (im->dims[0] != lb->dims[0])
        return fail(msg, msglen, ipath, "count mismatch: %lld images but %s has %lld labels",
                    (long long)im->dims[0], lpath, (long long)lb->dims[0]);
    return 0;
}

int idx_load_split(const char *dir, const char *prefix, idx_split *s, char *msg,
                   size_t msglen)
{
    if (dir == NULL || prefix == NULL || s == NULL)
        return fail(msg, msglen, dir, "idx_load_split needs a dir, a prefix and an output");
    char ipath[4096], lpath[4096];
    if (split_path(ipath, sizeof ipath, dir, prefix, "images-idx3", msg, msglen) ||
        split_path(lpath, sizeof lpath, dir, prefix, "labels-idx1", msg, msglen))
        return -1;

    idx_data im = {0}, lb = {0};
    idx_split t = {0};
    int rc = idx_read(ipath, &im, msg, msglen);
    if (rc == 0)
        rc = idx_read(lpath, &lb, msg, msglen);
    if (rc == 0)
        rc = check_pair(&im, ipath, &lb, lpath, msg, msglen);
    if (rc == 0) {
        t.n = im.dims[0];
        t.features = im.dims[1] * im.dims[2];
        /* im.count <= 2^31, so the float size only overflows a 32-bit size_t */
        if ((uint64_t)im.count > SIZE_MAX / sizeof(float))
            rc = fail(msg, msglen, ipath, "too large for this machine's address space");
    }
    if (rc == 0) {
        t.images = malloc((size_t)im.count * sizeof(float));
        t.labels = malloc((size_t)t.n * sizeof(int32_t));
        if (t.images == NULL || t.labels == NULL)
            rc = fail(msg, msglen, ipath, "out of memory for %lld images as floats",
                      (long long)t.n);
    }
    if (rc == 0) {
        /* A table gives each byte exactly byte / 255.0f, as a division would,
         * for one load per pixel. */
        float scale[256];
        for (int i = 0; i < 256; i++)
            scale[i] = (float)i / 255.0f;
        for (int64_t i = 0; i < im.count; i++)
            t.images[i] = scale[im.data[i]];
        /* Bytes are below 256 by their type; the class count is the caller's. */
        for (int64_t i = 0; i < t.n; i++)
            t.labels[i] = lb.data[i];
    }
    idx_free(&im);
    idx_free(&lb);
    if (rc) {
        idx_split_free(&t);
        return rc;
    }
    *s = t;
    return 0;
}

void idx_split_free(idx_split *s)
{
    if (s == NULL)
        return;
    free(s->images);
    free(s->labels);
    memset(s, 0, sizeof *s);
}
