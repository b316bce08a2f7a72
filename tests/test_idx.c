/*
 * The IDX reader (tools/idx.c): a good images/labels pair, gzip'ed and plain,
 * then one file per error the reader must catch, each checked for a nonzero
 * status and a message that names the file and the problem.  The files are
 * written into a fresh mkdtemp directory that the group teardown removes.
 * When the real Fashion-MNIST files are installed, both splits are loaded too.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "tmpdir.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "idx.h"

#define FASHION_DIR "/usr/share/datasets/fashion-mnist"

static char tmpdir[64];

/* Full path of 'name' inside the temporary directory (a static buffer). */
static const char *tpath(const char *name)
{
    static char buf[sizeof tmpdir + 256 + 2]; /* a d_name is at most 255 */
    snprintf(buf, sizeof buf, "%s/%s", tmpdir, name);
    return buf;
}

/* Writes bytes to 'name', gzip'ed or plain. */
static void write_file(const char *name, int gz, const uint8_t *b, size_t n)
{
    const char *p = tpath(name);
    if (gz) {
        gzFile f = gzopen(p, "wb");
        assert_non_null(f);
        if (n)
            assert_int_equal(gzwrite(f, b, (unsigned)n), (int)n);
        assert_int_equal(gzclose(f), Z_OK);
    } else {
        FILE *f = fopen(p, "wb");
        assert_non_null(f);
        if (n)
            assert_int_equal(fwrite(b, 1, n, f), n);
        assert_int_equal(fclose(f), 0);
    }
}

/* An IDX header (magic 0 0 type ndim, big-endian dims) into b; returns its length. */
static size_t header(uint8_t *b, int type, int ndim, const uint32_t *dims)
{
    b[0] = 0;
    b[1] = 0;
    b[2] = (uint8_t)type;
    b[3] = (uint8_t)ndim;
    for (int i = 0; i < ndim; i++) {
        b[4 + 4 * i] = (uint8_t)(dims[i] >> 24);
        b[5 + 4 * i] = (uint8_t)(dims[i] >> 16);
        b[6 + 4 * i] = (uint8_t)(dims[i] >> 8);
        b[7 + 4 * i] = (uint8_t)dims[i];
    }
    return 4 + 4 * (size_t)ndim;
}

/* Writes an IDX file: the header, then 'n' payload bytes (which may differ
 * from what the header declares, to make bad files). */
static void write_idx(const char *name, int gz, int type, int ndim, const uint32_t *dims,
                      const uint8_t *payload, size_t n)
{
    uint8_t *b = malloc(4 + 4 * 255 + n);
    assert_non_null(b);
    size_t h = header(b, type, ndim, dims);
    if (n)
        memcpy(b + h, payload, n);
    write_file(name, gz, b, h + n);
    free(b);
}

/* Asserts that reading 'name' fails with a message naming it and 'word'. */
static void expect_read_error(const char *name, const char *word)
{
    idx_data d = {.ndim = -7}; /* a failed read must leave this alone */
    char msg[256] = "";
    assert_int_not_equal(idx_read(tpath(name), &d, msg, sizeof msg), 0);
    assert_int_equal(d.ndim, -7);
    assert_null(d.data);
    if (!strstr(msg, name) || !strstr(msg, word))
        fail_msg("message for %s lacks the file or '%s': %s", name, word, msg);
}

/* Same for a split: 'name' is the file the message must point at. */
static void expect_split_error(const char *prefix, const char *name, const char *word)
{
    idx_split s = {.n = -7};
    char msg[512] = "";
    assert_int_not_equal(idx_load_split(tmpdir, prefix, 0, &s, msg, sizeof msg), 0);
    assert_int_equal(s.n, -7);
    assert_null(s.images);
    if (!strstr(msg, name) || !strstr(msg, word))
        fail_msg("message for %s lacks the file or '%s': %s", name, word, msg);
}

static const uint8_t pixels[12] = {0, 51, 255, 1, 2, 3, 4, 5, 6, 7, 128, 254};

/* Bytes of a file after reading it whole; caller frees. */
static uint8_t *slurp(const char *name, size_t *n)
{
    FILE *f = fopen(tpath(name), "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long len = ftell(f);
    assert_true(len > 0);
    rewind(f);
    uint8_t *b = malloc((size_t)len);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return b;
}

static void test_good_pair(void **state)
{
    (void)state;
    uint32_t idims[3] = {3, 2, 2}, ldims[1] = {3};
    uint8_t labels[3] = {7, 0, 200}; /* 200: classes 0 checks no label */
    write_idx("good-images-idx3-ubyte.gz", 1, 0x08, 3, idims, pixels, 12);
    write_idx("good-labels-idx1-ubyte.gz", 1, 0x08, 1, ldims, labels, 3);

    idx_split s = {0};
    char msg[256] = "";
    assert_int_equal(idx_load_split(tmpdir, "good", 0, &s, msg, sizeof msg), 0);
    assert_int_equal(s.n, 3);
    assert_int_equal(s.features, 4);
    assert_true(s.images[0] == 0.0f);
    assert_true(s.images[1] == 51 / 255.0f);
    assert_true(s.images[1] == 0.2f);
    assert_true(s.images[2] == 1.0f);
    for (int i = 0; i < 12; i++)
        assert_true(s.images[i] == (float)pixels[i] / 255.0f);
    assert_int_equal(s.labels[0], 7);
    assert_int_equal(s.labels[1], 0);
    assert_int_equal(s.labels[2], 200);
    idx_split_free(&s);
    assert_null(s.images);
    idx_split_free(&s); /* a second free is harmless */
}

/* Plain files are read too, under any name, and 1 to 4 dims are fine. */
static void test_plain_and_dims(void **state)
{
    (void)state;
    uint32_t idims[3] = {3, 2, 2}, ldims[1] = {3};
    uint8_t labels[3] = {1, 2, 3};
    write_idx("plain-images-idx3-ubyte.gz", 0, 0x08, 3, idims, pixels, 12);
    write_idx("plain-labels-idx1-ubyte.gz", 0, 0x08, 1, ldims, labels, 3);
    idx_split s = {0};
    char msg[256] = "";
    assert_int_equal(idx_load_split(tmpdir, "plain", 10, &s, msg, sizeof msg), 0);
    assert_int_equal(s.n, 3);
    assert_true(s.images[2] == 1.0f);
    assert_int_equal(s.labels[2], 3);
    idx_split_free(&s);

    uint32_t d4[4] = {1, 2, 3, 2};
    write_idx("four.idx", 0, 0x08, 4, d4, pixels, 12);
    idx_data d = {0};
    assert_int_equal(idx_read(tpath("four.idx"), &d, msg, sizeof msg), 0);
    assert_int_equal(d.ndim, 4);
    assert_int_equal(d.dims[3], 2);
    assert_int_equal(d.count, 12);
    assert_memory_equal(d.data, pixels, 12);
    idx_free(&d);
    assert_null(d.data);
}

static void test_missing(void **state)
{
    (void)state;
    expect_read_error("nothere.gz", strerror(ENOENT));
    assert_int_equal(mkdir(tpath("adir"), 0700), 0);
    expect_read_error("adir", "adir"); /* opens, then fails to read */
    uint32_t d[1] = {3};
    write_idx("only-labels-idx1-ubyte.gz", 1, 0x08, 1, d, pixels, 3);
    expect_split_error("only", "only-images-idx3-ubyte.gz", strerror(ENOENT));
}

static void test_bad_magic(void **state)
{
    (void)state;
    const char *text = "hello, this is not an IDX file\n";
    write_file("text.gz", 0, (const uint8_t *)text, strlen(text));
    expect_read_error("text.gz", "magic");
    write_file("textz.gz", 1, (const uint8_t *)text, strlen(text));
    expect_read_error("textz.gz", "magic");
    write_file("empty.gz", 0, NULL, 0);
    expect_read_error("empty.gz", "truncated");
}

static void test_bad_header(void **state)
{
    (void)state;
    uint32_t d3[3] = {3, 2, 2};
    write_idx("float.gz", 1, 0x0D, 3, d3, pixels, 12);
    expect_read_error("float.gz", "type");
    write_idx("nodims.gz", 1, 0x08, 0, NULL, NULL, 0);
    expect_read_error("nodims.gz", "dims");
    uint32_t d5[5] = {1, 1, 1, 1, 1};
    write_idx("fivedims.gz", 1, 0x08, 5, d5, pixels, 1);
    expect_read_error("fivedims.gz", "dims");
    uint32_t dz[3] = {3, 0, 2};
    write_idx("zerodim.gz", 1, 0x08, 3, dz, NULL, 0);
    expect_read_error("zerodim.gz", "zero");
    uint32_t big[3] = {65536, 65536, 1}; /* 2^32 bytes: refused before allocating */
    write_idx("big.gz", 1, 0x08, 3, big, pixels, 12);
    expect_read_error("big.gz", "too large");
    uint32_t huge[4] = {0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu};
    write_idx("huge.gz", 0, 0x08, 4, huge, pixels, 12);
    expect_read_error("huge.gz", "too large");
    uint8_t cut[16];
    header(cut, 0x08, 3, d3);
    write_file("cuthead.gz", 1, cut, 6); /* 2 of 12 dim bytes */
    expect_read_error("cuthead.gz", "truncated");
}

static void test_bad_length(void **state)
{
    (void)state;
    uint32_t d3[3] = {3, 2, 2};
    write_idx("short.gz", 1, 0x08, 3, d3, pixels, 11);
    expect_read_error("short.gz", "truncated");
    write_idx("short.idx", 0, 0x08, 3, d3, pixels, 5);
    expect_read_error("short.idx", "truncated");
    uint8_t more[13];
    memcpy(more, pixels, 12);
    more[12] = 9;
    write_idx("long.gz", 1, 0x08, 3, d3, more, 13);
    expect_read_error("long.gz", "trailing");
    write_idx("long.idx", 0, 0x08, 3, d3, more, 13);
    expect_read_error("long.idx", "trailing");
}

/* Payload for the gzip tests: 'random' is incompressible, so zlib stores it
 * verbatim and a flipped byte is only caught by the CRC at the end; the
 * other is compressible, so a flip breaks the deflate stream itself. */
static void write_gz_payload(const char *name, int random)
{
    enum { N = 64, R = 32, C = 32 };
    uint8_t *p = malloc(N * R * C);
    assert_non_null(p);
    uint32_t x = 12345;
    for (int i = 0; i < N * R * C; i++) {
        x = x * 1664525u + 1013904223u;
        p[i] = random ? (uint8_t)(x >> 24) : (uint8_t)((i / 7) % 13);
    }
    uint32_t d[3] = {N, R, C};
    write_idx(name, 1, 0x08, 3, d, p, N * R * C);
    free(p);
}

static void test_corrupt_gzip(void **state)
{
    (void)state;
    const char *names[2] = {"flip-text.gz", "flip-random.gz"};
    for (int k = 0; k < 2; k++) {
        write_gz_payload(names[k], k);
        size_t n;
        uint8_t *b = slurp(names[k], &n);
        for (size_t i = n / 2; i < n / 2 + 4; i++)
            b[i] ^= 0x5a;
        write_file(names[k], 0, b, n);
        free(b);
        expect_read_error(names[k], "gzip");
    }

    write_gz_payload("cut.gz", 0);
    size_t n;
    uint8_t *b = slurp("cut.gz", &n);
    write_file("cut.gz", 0, b, n / 2);
    expect_read_error("cut.gz", "truncated");
    /* cut inside the 8-byte trailer: all data arrives, the CRC does not */
    write_file("cut.gz", 0, b, n - 3);
    expect_read_error("cut.gz", "truncated");
    free(b);
}

/* The gzip trailer of a large member: zlib's gz* calls let a cut one pass
 * when the data is read in one large piece; the reader checks it always.
 * Bytes after the member are refused too. */
static void test_gzip_trailer_and_trailing_data(void **state)
{
    (void)state;
    uint32_t dims[3] = {1024, 32, 32};
    size_t count = 1024 * 32 * 32;
    uint8_t *p = malloc(count);
    assert_non_null(p);
    for (size_t i = 0; i < count; i++)
        p[i] = (uint8_t)(i * 2654435761u >> 13);
    write_idx("big.gz", 1, 0x08, 3, dims, p, count);
    free(p);
    size_t n;
    uint8_t *b = slurp("big.gz", &n);
    for (size_t cut = 1; cut <= 8; cut += 3) {
        write_file("big-cut.gz", 0, b, n - cut);
        expect_read_error("big-cut.gz", "trailer");
    }
    uint8_t *t = malloc(n + 5);
    assert_non_null(t);
    memcpy(t, b, n);
    memcpy(t + n, "junk\n", 5);
    write_file("big-junk.gz", 0, t, n + 5);
    expect_read_error("big-junk.gz", "after the gzip member");
    free(t);
    free(b);
    idx_data d = {0};
    char msg[256];
    assert_int_equal(idx_read(tpath("big.gz"), &d, msg, sizeof msg), 0);
    assert_int_equal(d.count, (int64_t)count);
    idx_free(&d);
}

/* A FIFO (or anything but a regular file) is refused at once: opening it to
 * read would otherwise wait for a writer forever.  The alarm turns a hang
 * into a failure. */
static void test_not_a_regular_file(void **state)
{
    (void)state;
    assert_int_equal(mkfifo(tpath("fifo"), 0600), 0);
    alarm(20);
    expect_read_error("fifo", "not a regular file");
    expect_read_error(".", "not a regular file");
    alarm(0);
}

/* A header that claims 2^31 - 1 bytes in a file of a few hundred: the
 * reader fails on the truncated data without first allocating what the
 * header claims.  Checked in a child limited to 512 MiB of address space,
 * where a 2 GiB allocation fails ("out of memory" instead of "truncated");
 * skipped under the sanitizers, which reserve far more than that. */
static void test_lying_header_costs_little(void **state)
{
    (void)state;
#if defined(__SANITIZE_ADDRESS__)
    skip();
#endif
    uint32_t dims[1] = {0x7fffffffu};
    write_idx("liar.gz", 1, 0x08, 1, dims, pixels, 12);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct rlimit r = {512u << 20, 512u << 20};
        if (setrlimit(RLIMIT_AS, &r) != 0)
            _exit(3);
        idx_data d = {0};
        char msg[256] = "";
        int rc = idx_read(tpath("liar.gz"), &d, msg, sizeof msg);
        _exit(rc != 0 && strstr(msg, "truncated data") ? 0 : (fprintf(stderr, "%s\n", msg), 1));
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* A label not below the class count, named with its file and position. */
static void test_labels_against_classes(void **state)
{
    (void)state;
    uint32_t idims[3] = {3, 2, 2}, ldims[1] = {3};
    uint8_t labels[3] = {7, 0, 200};
    write_idx("cls-images-idx3-ubyte.gz", 1, 0x08, 3, idims, pixels, 12);
    write_idx("cls-labels-idx1-ubyte.gz", 1, 0x08, 1, ldims, labels, 3);
    idx_split s = {.n = -7};
    char msg[512] = "";
    assert_int_not_equal(idx_load_split(tmpdir, "cls", 10, &s, msg, sizeof msg), 0);
    assert_int_equal(s.n, -7);
    if (!strstr(msg, "cls-labels-idx1-ubyte.gz") || !strstr(msg, "label 200 at position 2") ||
        !strstr(msg, "class count 10"))
        fail_msg("message lacks the file, the label or the count: %s", msg);
    assert_int_equal(idx_load_split(tmpdir, "cls", 201, &s, msg, sizeof msg), 0);
    idx_split_free(&s);
    /* the headers alone */
    idx_split h = {0};
    assert_int_equal(idx_peek_split(tmpdir, "cls", &h, msg, sizeof msg), 0);
    assert_int_equal(h.n, 3);
    assert_int_equal(h.rows, 2);
    assert_int_equal(h.cols, 2);
    assert_null(h.images);
}

static void test_split_shapes(void **state)
{
    (void)state;
    uint32_t d3[3] = {3, 2, 2}, d2[2] = {3, 4}, d1[1] = {3}, d1b[1] = {4};
    write_idx("flat-images-idx3-ubyte.gz", 1, 0x08, 2, d2, pixels, 12);
    write_idx("flat-labels-idx1-ubyte.gz", 1, 0x08, 1, d1, pixels, 3);
    expect_split_error("flat", "flat-images-idx3-ubyte.gz", "dims");

    write_idx("lab2-images-idx3-ubyte.gz", 1, 0x08, 3, d3, pixels, 12);
    write_idx("lab2-labels-idx1-ubyte.gz", 1, 0x08, 2, d2, pixels, 12);
    expect_split_error("lab2", "lab2-labels-idx1-ubyte.gz", "dims");

    write_idx("odd-images-idx3-ubyte.gz", 1, 0x08, 3, d3, pixels, 12);
    write_idx("odd-labels-idx1-ubyte.gz", 1, 0x08, 1, d1b, pixels, 4);
    expect_split_error("odd", "odd-labels-idx1-ubyte.gz", "mismatch");
    expect_split_error("odd", "odd-images-idx3-ubyte.gz", "count");
}

/* Messages are cut to msglen and always terminated; no buffer is fine too. */
static void test_message_buffer(void **state)
{
    (void)state;
    char small[8];
    memset(small, 'x', sizeof small);
    idx_data d = {0};
    assert_int_not_equal(idx_read(tpath("nothere.gz"), &d, small, sizeof small), 0);
    assert_int_equal(strlen(small), sizeof small - 1);
    assert_int_not_equal(idx_read(tpath("nothere.gz"), &d, NULL, 0), 0);
    idx_split s = {0};
    assert_int_not_equal(idx_load_split(tmpdir, "nothere", 10, &s, NULL, 0), 0);
}

static void check_fashion(const char *prefix, int64_t n)
{
    idx_split s = {0};
    char msg[512] = "";
    if (idx_load_split(FASHION_DIR, prefix, 10, &s, msg, sizeof msg))
        fail_msg("%s", msg);
    assert_int_equal(s.n, n);
    assert_int_equal(s.features, 784);
    int64_t seen[10] = {0};
    for (int64_t i = 0; i < s.n; i++) {
        assert_in_range(s.labels[i], 0, 9);
        seen[s.labels[i]]++;
    }
    for (int c = 0; c < 10; c++)
        assert_int_equal(seen[c], n / 10); /* Fashion-MNIST is balanced */
    float lo = 1.0f, hi = 0.0f;
    for (int64_t i = 0; i < s.n * s.features; i++) {
        lo = s.images[i] < lo ? s.images[i] : lo;
        hi = s.images[i] > hi ? s.images[i] : hi;
    }
    assert_true(lo == 0.0f);
    assert_true(hi == 1.0f);
    idx_split_free(&s);
}

static void test_fashion_mnist(void **state)
{
    (void)state;
    struct stat st;
    if (stat(FASHION_DIR, &st) != 0 || !S_ISDIR(st.st_mode))
        skip();
    check_fashion("train", 60000);
    check_fashion("t10k", 10000);
}

static int make_tmpdir(void **state)
{
    (void)state;
    return tmpdir_make(tmpdir, sizeof tmpdir, "test_idx");
}

static int remove_tmpdir(void **state)
{
    (void)state;
    return tmpdir_remove(tmpdir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_pair),      cmocka_unit_test(test_plain_and_dims),
        cmocka_unit_test(test_missing),        cmocka_unit_test(test_bad_magic),
        cmocka_unit_test(test_bad_header),     cmocka_unit_test(test_bad_length),
        cmocka_unit_test(test_corrupt_gzip),   cmocka_unit_test(test_split_shapes),
        cmocka_unit_test(test_message_buffer), cmocka_unit_test(test_fashion_mnist),
        cmocka_unit_test(test_gzip_trailer_and_trailing_data),
        cmocka_unit_test(test_not_a_regular_file),
        cmocka_unit_test(test_lying_header_costs_little),
        cmocka_unit_test(test_labels_against_classes),
    };
    return cmocka_run_group_tests(tests, make_tmpdir, remove_tmpdir);
}
