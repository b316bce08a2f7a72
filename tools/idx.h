/*
 * Reader for the IDX files of MNIST and Fashion-MNIST, for the trainer tool.
 * IDX is a 4-byte magic (0, 0, type, number of dims), one big-endian uint32
 * per dim, then the elements in row-major order.  Only unsigned bytes (type
 * 0x08) are read, which is all the MNIST family uses.  Files may be gzip'ed
 * or plain.
 *
 * Nothing here prints or aborts: each fallible call returns nonzero and
 * writes a one-line message that starts with the file's path.  A failed call
 * leaves its output struct unchanged.  The functions keep no shared state, so
 * threads may load different files into different structs at once (the
 * messages of unreadable files come from strerror, which glibc makes
 * thread-safe).
 */
#ifndef STG_TOOLS_IDX_H
#define STG_TOOLS_IDX_H

#include <stddef.h>
#include <stdint.h>

typedef struct idx_data {
    int ndim;        /* 1 to 4 */
    int64_t dims[4]; /* dims[ndim..3] are 0 */
    uint8_t *data;   /* the elements, row-major; owned by the caller */
    int64_t count;   /* total bytes: the product of the dims, at most 2^31 */
} idx_data;

/* Reads the IDX file at 'path' (gzip'ed or plain) of unsigned bytes (type
 * 0x08) with 1 to 4 dims, none of them 0, and at most 2^31 bytes of data.
 * Missing, unreadable, bad-magic, wrong-type and truncated files, anything
 * but a regular file (checked without blocking: a FIFO is refused, not
 * waited on), files with bytes after the declared data or after the gzip
 * member, gzip members without their trailer and corrupt gzip streams are
 * errors.  The data buffer grows with the data actually read, so a header
 * that claims more than the file holds costs no more than the file.
 * Returns 0 and fills *d on success; the caller then owns d->data and frees
 * it with idx_free.  On failure returns nonzero, leaves *d as it was and
 * writes a message naming the file into 'msg' (at most 'msglen' bytes, always
 * terminated; 'msg' may be NULL when 'msglen' is 0). */
int idx_read(const char *path, idx_data *d, char *msg, size_t msglen);

/* Frees d->data and zeroes *d; safe on a zeroed or already freed struct. */
void idx_free(idx_data *d);

/* One split of an image classification data set, ready to train on. */
typedef struct idx_split {
    int64_t n, features; /* images, and pixels per image (rows * cols) */
    int64_t rows, cols;
    float *images;       /* n x features, row-major, scaled to [0, 1] */
    int32_t *labels;     /* n labels, each 0..255 */
} idx_split;

/* Loads "<dir>/<prefix>-images-idx3-ubyte.gz" (3 dims: N, rows, cols) and
 * "<dir>/<prefix>-labels-idx1-ubyte.gz" (1 dim: N), e.g. prefix "train" or
 * "t10k".  Pixels become byte / 255.0f.  Both headers are read and checked
 * before any data: besides idx_read's errors, a file with the wrong number
 * of dims and two files that disagree on N are errors, and so is a label
 * not below 'classes' (0: labels are not checked), named with its
 * position.  Returns 0 and fills *s (owned by the caller, freed with
 * idx_split_free) or returns nonzero, leaves *s as it was and writes a
 * message naming the file into 'msg' as idx_read does. */
int idx_load_split(const char *dir, const char *prefix, int classes, idx_split *s, char *msg,
                   size_t msglen);

/* The same checks of the two headers as idx_load_split, and nothing else:
 * fills s->n, s->rows, s->cols and s->features (no arrays), so that a caller
 * can compare splits before it reads any data.  Returns as idx_load_split. */
int idx_peek_split(const char *dir, const char *prefix, idx_split *s, char *msg, size_t msglen);

/* Frees the arrays of *s and zeroes it; safe on a zeroed struct. */
void idx_split_free(idx_split *s);

#endif
