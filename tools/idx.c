/*
 * IDX reader (see idx.h for the format).  Files are read with read(2) and,
 * when they start with the gzip magic, inflated with zlib's inflate() here
 * rather than through its gz* calls: those accept a gzip member whose
 * trailer (CRC and length) was cut off, as long as the data itself is
 * complete.  Reading a member to its end makes inflate() check the trailer.
 * Every check of a header happens before the data buffer is allocated, and
 * the buffer grows only as data really arrives, so a header that lies about
 * the size costs no more memory than the file holds.
 */
#include "idx.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

/* Input is read 128 KiB at a time (zlib's own default of 8 KiB took the 26 MB
 * gzip of Fashion-MNIST's training images from 165 to 180 ms). */
#define IDX_INBUF (128u * 1024u)

/* The data buffer starts at 1 MiB and doubles as data arrives. */
#define IDX_FIRST_ALLOC ((int64_t)1 << 20)

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

/* An open file, plain or gzip.  'error' holds why a read stopped early (a
 * read error or corrupt gzip data), empty when it simply reached the end. */
typedef struct idx_file {
    int fd;
    const char *path;
    bool gzip, zinit;
    bool raw_eof;    /* read(2) has returned 0 */
    bool member_end; /* inflate() has checked the gzip trailer */
    z_stream z;
    uint8_t *in;     /* IDX_INBUF bytes of raw input */
    size_t in_pos, in_len;
    char error[160];
} idx_file;

/* More raw input into f->in (what is left is kept); false on a read error. */
static bool refill(idx_file *f)
{
    if (f->in_pos > 0) {
        memmove(f->in, f->in + f->in_pos, f->in_len - f->in_pos);
        f->in_len -= f->in_pos;
        f->in_pos = 0;
    }
    while (!f->raw_eof && f->in_len < IDX_INBUF) {
        ssize_t r = read(f->fd, f->in + f->in_len, IDX_INBUF - f->in_len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            snprintf(f->error, sizeof f->error, "read error: %s", strerror(errno));
            return false;
        }
        if (r == 0)
            f->raw_eof = true;
        f->in_len += (size_t)r;
        if (r > 0)
            break;
    }
    return true;
}

static void file_close(idx_file *f)
{
    if (f->zinit)
        inflateEnd(&f->z);
    if (f->fd >= 0)
        close(f->fd);
    free(f->in);
    f->fd = -1, f->zinit = false, f->in = NULL;
}

/* Opens 'path' without blocking on anything that is not a regular file (a
 * FIFO would wait for a writer forever), and looks at its first bytes to
 * tell gzip from plain. */
static int file_open(idx_file *f, const char *path, char *msg, size_t msglen)
{
    memset(f, 0, sizeof *f);
    f->path = path;
    f->fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (f->fd < 0)
        return fail(msg, msglen, path, "cannot open: %s", strerror(errno));
    struct stat st;
    if (fstat(f->fd, &st) != 0) {
        int e = errno;
        file_close(f);
        return fail(msg, msglen, path, "cannot read: %s", strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        file_close(f);
        return fail(msg, msglen, path, "cannot read: not a regular file");
    }
    f->in = malloc(IDX_INBUF);
    if (f->in == NULL) {
        file_close(f);
        return fail(msg, msglen, path, "cannot open: out of memory");
    }
    while (!f->raw_eof && f->in_len < 2 && refill(f))
        ;
    if (f->error[0]) {
        int rc = fail(msg, msglen, path, "%s", f->error);
        file_close(f);
        return rc;
    }
    f->gzip = f->in_len >= 2 && f->in[0] == 0x1f && f->in[1] == 0x8b;
    if (f->gzip) {
        /* 16 + 15: a gzip stream only, with the largest window */
        if (inflateInit2(&f->z, 16 + MAX_WBITS) != Z_OK) {
            file_close(f);
            return fail(msg, msglen, path, "cannot open: out of memory in zlib");
        }
        f->zinit = true;
    }
    return 0;
}

/* Up to n bytes of the file's content (inflated when it is gzip); returns how
 * many, short at the end of the content or on an error (then f->error says
 * which). */
static int64_t file_read(idx_file *f, uint8_t *buf, int64_t n)
{
    int64_t got = 0;
    while (got < n && !f->error[0]) {
        if (f->in_pos == f->in_len) {
            if (f->raw_eof || !refill(f) || f->in_pos == f->in_len)
                break;
        }
        if (!f->gzip) {
            size_t take = f->in_len - f->in_pos;
            if ((int64_t)take > n - got)
                take = (size_t)(n - got);
            memcpy(buf + got, f->in + f->in_pos, take);
            f->in_pos += take, got += (int64_t)take;
            continue;
        }
        if (f->member_end)
            break;
        int64_t want = n - got < (int64_t)1 << 30 ? n - got : (int64_t)1 << 30;
        f->z.next_in = f->in + f->in_pos;
        f->z.avail_in = (uInt)(f->in_len - f->in_pos);
        f->z.next_out = buf + got;
        f->z.avail_out = (uInt)want;
        int r = inflate(&f->z, Z_NO_FLUSH);
        f->in_pos = f->in_len - f->z.avail_in;
        got += want - f->z.avail_out;
        if (r == Z_STREAM_END)
            f->member_end = true;
        else if (r != Z_OK && r != Z_BUF_ERROR)
            snprintf(f->error, sizeof f->error, "corrupt gzip data: %s",
                     f->z.msg ? f->z.msg : "inflate failed");
    }
    return got;
}

/* After the declared content: the gzip member ends here, with a good trailer,
 * and nothing at all follows it (nor, in a plain file, the content). */
static int file_finish(idx_file *f, int64_t declared, char *msg, size_t msglen)
{
    uint8_t extra[4096];
    int64_t more = 0, r;
    while ((r = file_read(f, extra, sizeof extra)) > 0)
        more += r;
    /* a stream error, or a member cut short, outranks the bytes too many: a
     * corrupt deflate stream can inflate to more than it held */
    if (f->error[0])
        return fail(msg, msglen, f->path, "%s", f->error);
    if (f->gzip && !f->member_end)
        return fail(msg, msglen, f->path, "truncated or corrupt gzip stream: it ends before "
                    "its trailer (CRC and length)");
    if (more > 0)
        return fail(msg, msglen, f->path,
                    "trailing data: %lld byte(s) after the %lld content bytes the header "
                    "declares", (long long)more, (long long)declared);
    if (f->gzip) {
        size_t after = f->in_len - f->in_pos;
        while (!f->raw_eof && refill(f))
            after = f->in_len - f->in_pos;
        if (f->error[0])
            return fail(msg, msglen, f->path, "%s", f->error);
        if (after > 0)
            return fail(msg, msglen, f->path,
                        "trailing data: %zu byte(s) after the gzip member", after);
    }
    return 0;
}

/* Explains why 'what' came up short (got of want bytes). */
static int short_read(const idx_file *f, const char *what, int64_t got, int64_t want,
                      char *msg, size_t msglen)
{
    if (f->error[0])
        return fail(msg, msglen, f->path, "%s", f->error);
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
static int read_header(idx_file *f, idx_data *d, char *msg, size_t msglen)
{
    uint8_t m[4];
    int64_t got = file_read(f, m, 4);
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
    got = file_read(f, b, want);
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

/* Reads the content the header declares into a buffer that grows as the
 * data arrives, then checks the end of the file. */
static int read_body(idx_file *f, idx_data *d, char *msg, size_t msglen)
{
    int64_t cap = 0, got = 0;
    while (got < d->count) {
        if (got == cap) {
            int64_t next = cap ? 2 * cap : IDX_FIRST_ALLOC;
            if (next > d->count)
                next = d->count;
            uint8_t *p = realloc(d->data, (size_t)next);
            if (p == NULL)
                return fail(msg, msglen, f->path, "out of memory for %lld bytes of data",
                            (long long)next);
            d->data = p;
            cap = next;
        }
        int64_t r = file_read(f, d->data + got, cap - got);
        got += r;
        if (got < cap) /* the end of the content, or an error */
            break;
    }
    if (got != d->count)
        return short_read(f, "data", got, d->count, msg, msglen);
    return file_finish(f, d->count, msg, msglen);
}

/* Opens 'path' and reads its header into *d (zeroed first); on failure the
 * file is closed again. */
static int open_header(idx_file *f, const char *path, idx_data *d, char *msg, size_t msglen)
{
    memset(d, 0, sizeof *d);
    if (file_open(f, path, msg, msglen))
        return -1;
    int rc = read_header(f, d, msg, msglen);
    if (rc)
        file_close(f);
    return rc;
}

int idx_read(const char *path, idx_data *d, char *msg, size_t msglen)
{
    if (path == NULL || d == NULL)
        return fail(msg, msglen, path, "idx_read needs a path and an output struct");
    idx_file f;
    idx_data t;
    if (open_header(&f, path, &t, msg, msglen))
        return -1;
    int rc = read_body(&f, &t, msg, msglen);
    file_close(&f);
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

/* The first label that is not below 'classes' (0: no check), named with
 * its file and position. */
static int check_labels(const idx_data *lb, const char *lpath, int classes, char *msg,
                        size_t msglen)
{
    for (int64_t i = 0; classes > 0 && i < lb->count; i++)
        if (lb->data[i] >= classes)
            return fail(msg, msglen, lpath,
                        "label %u at position %lld is not below the class count %d",
                        (unsigned)lb->data[i], (long long)i, classes);
    return 0;
}

/* Both headers, then the pair check, then both bodies: a bad header or a
 * disagreement costs no data buffer. */
static int read_pair(const char *ipath, idx_data *im, const char *lpath, idx_data *lb,
                     char *msg, size_t msglen)
{
    idx_file fi, fl;
    if (open_header(&fi, ipath, im, msg, msglen))
        return -1;
    int rc = open_header(&fl, lpath, lb, msg, msglen);
    if (rc) {
        file_close(&fi);
        return rc;
    }
    rc = check_pair(im, ipath, lb, lpath, msg, msglen);
    if (rc == 0)
        rc = read_body(&fi, im, msg, msglen);
    if (rc == 0)
        rc = read_body(&fl, lb, msg, msglen);
    file_close(&fi);
    file_close(&fl);
    return rc;
}

int idx_load_split(const char *dir, const char *prefix, int classes, idx_split *s, char *msg,
                   size_t msglen)
{
    if (dir == NULL || prefix == NULL || s == NULL || classes < 0)
        return fail(msg, msglen, dir,
                    "idx_load_split needs a dir, a prefix, a class count >= 0 and an output");
    char ipath[4096], lpath[4096];
    if (split_path(ipath, sizeof ipath, dir, prefix, "images-idx3", msg, msglen) ||
        split_path(lpath, sizeof lpath, dir, prefix, "labels-idx1", msg, msglen))
        return -1;

    idx_data im = {0}, lb = {0};
    idx_split t = {0};
    int rc = read_pair(ipath, &im, lpath, &lb, msg, msglen);
    if (rc == 0)
        rc = check_labels(&lb, lpath, classes, msg, msglen);
    if (rc == 0) {
        t.n = im.dims[0];
        t.rows = im.dims[1], t.cols = im.dims[2];
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

int idx_peek_split(const char *dir, const char *prefix, idx_split *s, char *msg, size_t msglen)
{
    if (dir == NULL || prefix == NULL || s == NULL)
        return fail(msg, msglen, dir, "idx_peek_split needs a dir, a prefix and an output");
    char ipath[4096], lpath[4096];
    if (split_path(ipath, sizeof ipath, dir, prefix, "images-idx3", msg, msglen) ||
        split_path(lpath, sizeof lpath, dir, prefix, "labels-idx1", msg, msglen))
        return -1;
    idx_file fi, fl;
    idx_data im, lb;
    if (open_header(&fi, ipath, &im, msg, msglen))
        return -1;
    int rc = open_header(&fl, lpath, &lb, msg, msglen);
    if (rc == 0) {
        rc = check_pair(&im, ipath, &lb, lpath, msg, msglen);
        file_close(&fl);
    }
    file_close(&fi);
    if (rc == 0)
        *s = (idx_split){.n = im.dims[0], .features = im.dims[1] * im.dims[2],
                         .rows = im.dims[1], .cols = im.dims[2]};
    return rc;
}

void idx_split_free(idx_split *s)
{
    if (s == NULL)
        return;
    free(s->images);
    free(s->labels);
    memset(s, 0, sizeof *s);
}
