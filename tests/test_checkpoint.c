/*
 * Checkpoints (lib/checkpoint.c): round trips of parameters, optimizer state
 * and step count into fresh plans; training resumed from a checkpoint is
 * bitwise the training that never stopped (SGD with momentum and Adam, at 1
 * and 2 threads); every malformed or mismatched file fails with the right
 * status and message and leaves the plan bitwise unchanged; saving is atomic.
 * Files go to a fresh mkdtemp directory that the group teardown removes.
 *
 * The model: x (8,5) -> relu(x W1 + b1) W2 [+ b2], mse loss against t (8,3).
 */
#include <dirent.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cmocka.h>

#include "tmpdir.h"

#include "testutil.h"
#include "internal.h" /* white box: optimizer state and the step count */

static char tmpdir[64];

/* A path inside the test directory, in a caller's buffer. */
static const char *tpath(char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, "%s/%s", tmpdir, name);
    return buf;
}

/* ---- the model ------------------------------------------------------------ */

typedef struct model {
    stg_graph *g;
    stg_tensor x, t, w1, b1, w2, b2, loss;
} model;

typedef enum optim { PLAIN_SGD, MOMENTUM_SGD, ADAM } optim;

/* 'names' (may be NULL) names W1, b1, W2 (entries may be NULL). */
static model make_model(int hidden, bool with_b2, const char *const *names)
{
    model m = {.g = stg_graph_new(), .b2 = {-1}};
    int64_t xd[2] = {8, 5}, td[2] = {8, 3}, w1d[2] = {5, hidden}, b1d[1] = {hidden},
            w2d[2] = {hidden, 3}, b2d[1] = {3};
    m.x = stg_input(m.g, "x", 2, xd);
    m.t = stg_input(m.g, "target", 2, td);
    m.w1 = stg_param(m.g, names ? names[0] : "W1", 2, w1d);
    m.b1 = stg_param(m.g, names ? names[1] : "b1", 1, b1d);
    m.w2 = stg_param(m.g, names ? names[2] : "W2", 2, w2d);
    stg_tensor h = stg_relu(m.g, stg_add(m.g, stg_matmul(m.g, m.x, m.w1), m.b1));
    stg_tensor y = stg_matmul(m.g, h, m.w2);
    if (with_b2) {
        m.b2 = stg_param(m.g, "b2", 1, b2d);
        y = stg_add(m.g, y, m.b2);
    }
    m.loss = stg_mse_loss(m.g, y, m.t);
    assert_int_equal(stg_graph_status(m.g), STG_OK);
    return m;
}

static stg_plan *make_plan(const model *m, optim o, int threads)
{
    stg_plan_options opts;
    stg_plan_options_init(&opts);
    opts.threads = threads;
    opts.optimizer = o == ADAM ? STG_OPTIM_ADAM : STG_OPTIM_SGD;
    opts.lr = o == ADAM ? 0.01f : 0.05f;
    opts.momentum = o == MOMENTUM_SGD ? 0.9f : 0.0f;
    return tu_plan_with(m->g, m->loss, &opts);
}

static void init_params(stg_plan *p, const model *m, uint64_t seed)
{
    assert_int_equal(stg_plan_init(p, m->w1, STG_INIT_XAVIER_UNIFORM, 0, 0, seed), STG_OK);
    assert_int_equal(stg_plan_init(p, m->b1, STG_INIT_UNIFORM, -0.1f, 0.1f, seed + 1), STG_OK);
    assert_int_equal(stg_plan_init(p, m->w2, STG_INIT_XAVIER_UNIFORM, 0, 0, seed + 2), STG_OK);
    if (m->b2.id >= 0)
        assert_int_equal(stg_plan_init(p, m->b2, STG_INIT_ZEROS, 0, 0, seed), STG_OK);
}

/* Trains 'n' steps; the batch of each step depends on the step count, so a
 * resumed run only matches when the count was restored. */
static void train(stg_plan *p, const model *m, int n)
{
    for (int i = 0; i < n; i++) {
        uint64_t step = (uint64_t)stg_plan_steps(p);
        tu_fill(stg_plan_data(p, m->x), 40, 2 * step + 11, -1.0f, 1.0f);
        tu_fill(stg_plan_data(p, m->t), 24, 2 * step + 12, -1.0f, 1.0f);
        assert_int_equal(stg_plan_step(p), STG_OK);
    }
}

static model trained(int hidden, bool with_b2, optim o, stg_plan **p, int steps)
{
    model m = make_model(hidden, with_b2, NULL);
    *p = make_plan(&m, o, 1);
    init_params(*p, &m, 7);
    train(*p, &m, steps);
    return m;
}

/* ---- snapshots: every parameter and state value, and the step count ----- */

typedef struct snap {
    float *v;
    size_t n;
    int64_t steps;
} snap;

static snap take(const stg_plan *p)
{
    snap s = {NULL, 0, stg_plan_steps(p)};
    for (int pass = 0; pass < 2; pass++) {
        size_t k = 0;
        for (int32_t i = 0; i < p->g->n; i++) {
            const stg_node *n = &p->g->nodes[i];
            if (!((n->role == STG_ROLE_PARAM && i < p->nuser) || n->role == STG_ROLE_STATE))
                continue;
            size_t numel = (size_t)stgS_numel(&n->shape);
            if (pass == 1)
                memcpy(s.v + k, stgP_ptr(p, i), numel * sizeof(float));
            k += numel;
        }
        if (pass == 0) {
            s.n = k;
            s.v = malloc((k ? k : 1) * sizeof(float));
            assert_non_null(s.v);
        }
    }
    return s;
}

static bool same(const snap *a, const snap *b)
{
    return a->n == b->n && a->steps == b->steps && !memcmp(a->v, b->v, a->n * sizeof(float));
}

/* ---- files ---------------------------------------------------------------- */

static unsigned char *slurp(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    assert_true(n >= 0);
    rewind(f);
    unsigned char *b = malloc((size_t)n + 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *size = (size_t)n;
    return b;
}

static void spill(const char *path, const unsigned char *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static uint64_t rd64(const unsigned char *b)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | b[i];
    return v;
}

static void wr32(unsigned char *b, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        b[i] = (unsigned char)(v >> (8 * i));
}

static void wr64(unsigned char *b, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(v >> (8 * i));
}

/* Recomputes the trailing CRC-32, for files edited on purpose. */
static void fix_crc(unsigned char *b, size_t n)
{
    wr32(b + n - 4, (uint32_t)crc32(0, b, (uInt)(n - 4)));
}

/* Position of table entry 'k' (entries start after the 24-byte header). */
static size_t entry_pos(const unsigned char *b, int k)
{
    size_t pos = 24;
    for (int i = 0; i < k; i++) {
        size_t len = (size_t)(b[pos] | b[pos + 1] << 8);
        pos += 2 + len + 2 + 8u * b[pos + 2 + len + 1] + 16;
    }
    return pos;
}

static size_t name_len(const unsigned char *b, size_t pos)
{
    return (size_t)(b[pos] | b[pos + 1] << 8);
}

/* Offsets of an entry's dtype byte and data offset field. */
static size_t dtype_at(const unsigned char *b, size_t pos)
{
    return pos + 2 + name_len(b, pos);
}

static size_t offset_at(const unsigned char *b, size_t pos)
{
    return dtype_at(b, pos) + 2 + 8u * b[dtype_at(b, pos) + 1];
}

static int count_tmp_files(void)
{
    DIR *d = opendir(tmpdir);
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        n += strstr(e->d_name, ".tmp") != NULL;
    closedir(d);
    return n;
}

static int count_files(void)
{
    DIR *d = opendir(tmpdir);
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    return n;
}

static void expect_save(stg_plan *p, const char *path)
{
    stg_status s = stg_plan_save(p, path);
    if (s != STG_OK)
        fail_msg("save %s: %s: %s", path, stg_status_name(s), stg_plan_message(p));
    assert_string_equal(stg_plan_message(p), "");
}

static void expect_load(stg_plan *p, const char *path)
{
    stg_status s = stg_plan_load(p, path);
    if (s != STG_OK)
        fail_msg("load %s: %s: %s", path, stg_status_name(s), stg_plan_message(p));
    assert_string_equal(stg_plan_message(p), "");
}

static void expect_message(const stg_plan *p, const char *a, const char *b)
{
    const char *msg = stg_plan_message(p);
    if (!strstr(msg, a) || (b && !strstr(msg, b)))
        fail_msg("message \"%s\" lacks \"%s\"%s%s", msg, a, b ? " or " : "", b ? b : "");
}

/* A load that must fail with 'want', a message containing 'a' and 'b' (may
 * be NULL), and every parameter, state value and the step count unchanged. */
static void expect_load_fail(stg_plan *p, const char *path, stg_status want, const char *a,
                             const char *b)
{
    snap before = take(p);
    stg_status s = stg_plan_load(p, path);
    if (s != want)
        fail_msg("load %s: %s (%s), wanted %s", path, stg_status_name(s), stg_plan_message(p),
                 stg_status_name(want));
    expect_message(p, a, b);
    snap after = take(p);
    assert_true(same(&before, &after));
    free(before.v);
    free(after.v);
}

/* ---- round trips ------------------------------------------------------------- */

static void round_trip(optim o)
{
    char path[256];
    tpath(path, sizeof path, o == ADAM ? "adam.ck" : "sgd.ck");
    stg_plan *p;
    model m = trained(6, false, o, &p, 5);
    expect_save(p, path);
    snap want = take(p);
    assert_int_equal(want.steps, 5);

    stg_plan *q = make_plan(&m, o, 1);
    init_params(q, &m, 99);
    snap fresh = take(q);
    assert_false(same(&want, &fresh));
    expect_load(q, path);
    snap got = take(q);
    assert_true(same(&want, &got));
    assert_int_equal(stg_plan_steps(q), 5);

    /* Saving the restored plan gives the same bytes. */
    char again[256];
    tpath(again, sizeof again, "again.ck");
    expect_save(q, again);
    size_t n1, n2;
    unsigned char *f1 = slurp(path, &n1), *f2 = slurp(again, &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(f1, f2, n1);
    free(f1), free(f2);
    free(want.v), free(fresh.v), free(got.v);
    stg_plan_free(p);
    stg_plan_free(q);
    stg_graph_free(m.g);
}

static void test_round_trip_sgd_momentum(void **state)
{
    (void)state;
    round_trip(MOMENTUM_SGD);
}

static void test_round_trip_adam(void **state)
{
    (void)state;
    round_trip(ADAM);
}

/* The layout README.md documents, byte by byte, on a known plan. */
static void test_file_layout(void **state)
{
    (void)state;
    char path[256];
    tpath(path, sizeof path, "layout.ck");
    stg_plan *p;
    model m = trained(6, false, MOMENTUM_SGD, &p, 3);
    expect_save(p, path);
    size_t n;
    unsigned char *b = slurp(path, &n);
    const char *names[6] = {"W1", "b1", "W2", "W1/momentum_buffer", "b1/momentum_buffer",
                            "W2/momentum_buffer"};
    const int64_t dims[6][2] = {{5, 6}, {6, 0}, {6, 3}, {5, 6}, {6, 0}, {6, 3}};
    const int nd[6] = {2, 1, 2, 2, 1, 2};
    assert_memory_equal(b, "STGRADCK", 8);
    assert_int_equal(b[8] | b[9] << 8 | b[10] << 16 | (uint32_t)b[11] << 24, 1);
    assert_int_equal(b[12], 6);
    assert_int_equal(rd64(b + 16), 3);
    size_t table_end = entry_pos(b, 6), data = table_end;
    for (int k = 0; k < 6; k++) {
        size_t pos = entry_pos(b, k), len = name_len(b, pos);
        assert_int_equal(len, strlen(names[k]));
        assert_memory_equal(b + pos + 2, names[k], len);
        assert_int_equal(b[dtype_at(b, pos)], 0);
        assert_int_equal(b[dtype_at(b, pos) + 1], nd[k]);
        int64_t numel = 1;
        for (int d = 0; d < nd[k]; d++) {
            assert_int_equal(rd64(b + dtype_at(b, pos) + 2 + 8 * d), dims[k][d]);
            numel *= dims[k][d];
        }
        assert_int_equal(rd64(b + offset_at(b, pos)), data);
        assert_int_equal(rd64(b + offset_at(b, pos) + 8), 4 * numel);
        data += (size_t)(4 * numel);
    }
    assert_int_equal(data + 4, n);
    uint32_t crc = (uint32_t)crc32(0, b, (uInt)(n - 4));
    unsigned char want[4];
    wr32(want, crc);
    assert_memory_equal(b + n - 4, want, 4);
    /* W1's first value, little-endian float32. */
    uint32_t u;
    float w0 = stg_plan_data(p, m.w1)[0];
    memcpy(&u, &w0, 4);
    wr32(want, u);
    assert_memory_equal(b + table_end, want, 4);
    free(b);
    stg_plan_free(p);
    stg_graph_free(m.g);
}

/* ---- exact resume -------------------------------------------------------------- */

static void resume(optim o, int threads)
{
    char path[256];
    tpath(path, sizeof path, "resume.ck");
    model m = make_model(6, false, NULL);

    stg_plan *straight = make_plan(&m, o, threads);
    init_params(straight, &m, 3);
    train(straight, &m, 20);
    snap want = take(straight);

    stg_plan *first = make_plan(&m, o, threads);
    init_params(first, &m, 3);
    train(first, &m, 10);
    expect_save(first, path);
    stg_plan_free(first);

    stg_plan *second = make_plan(&m, o, threads);
    init_params(second, &m, 1234);
    expect_load(second, path);
    assert_int_equal(stg_plan_steps(second), 10);
    train(second, &m, 10);
    snap got = take(second);
    assert_int_equal(got.steps, 20);
    assert_true(same(&want, &got));
    assert_true(stg_plan_loss(second) == stg_plan_loss(straight));

    /* The test can tell: resuming with the step count lost (Adam's bias
     * correction, the batch order) does not give the same parameters. */
    stg_plan *lost = make_plan(&m, o, threads);
    expect_load(lost, path);
    lost->steps = 0;
    for (int i = 0; i < 10; i++) {
        uint64_t step = (uint64_t)i + 10; /* the same batches as above */
        tu_fill(stg_plan_data(lost, m.x), 40, 2 * step + 11, -1.0f, 1.0f);
        tu_fill(stg_plan_data(lost, m.t), 24, 2 * step + 12, -1.0f, 1.0f);
        assert_int_equal(stg_plan_step(lost), STG_OK);
    }
    snap wrong = take(lost);
    wrong.steps = want.steps;
    if (o == ADAM)
        assert_false(same(&want, &wrong));
    else
        assert_true(same(&want, &wrong)); /* SGD does not depend on the count */

    free(want.v), free(got.v), free(wrong.v);
    stg_plan_free(straight);
    stg_plan_free(second);
    stg_plan_free(lost);
    stg_graph_free(m.g);
}

static void test_resume_is_exact(void **state)
{
    (void)state;
    for (int threads = 1; threads <= 2; threads++) {
        resume(MOMENTUM_SGD, threads);
        resume(ADAM, threads);
    }
}

/* ---- errors ---------------------------------------------------------------------- */

static void test_missing_file_and_directory(void **state)
{
    (void)state;
    char path[256];
    stg_plan *p;
    model m = trained(6, false, ADAM, &p, 2);
    tpath(path, sizeof path, "no-such.ck");
    expect_load_fail(p, path, STG_IO, "cannot open", "No such file or directory");
    expect_message(p, path, NULL);
    expect_load_fail(p, tmpdir, STG_IO, "not a regular file", tmpdir);
    assert_int_equal(stg_plan_load(p, NULL), STG_INVALID);
    assert_int_equal(stg_plan_save(p, NULL), STG_INVALID);
    assert_int_equal(stg_plan_load(NULL, path), STG_INVALID);
    assert_int_equal(stg_plan_save(NULL, path), STG_INVALID);
    stg_plan_free(p);
    stg_graph_free(m.g);
}

static void test_bad_header_and_truncation(void **state)
{
    (void)state;
    char good[256], bad[256];
    tpath(good, sizeof good, "good.ck");
    tpath(bad, sizeof bad, "bad.ck");
    stg_plan *p;
    model m = trained(6, false, MOMENTUM_SGD, &p, 4);
    expect_save(p, good);
    size_t n;
    unsigned char *b = slurp(good, &n);

    b[0] = 'X';
    spill(bad, b, n);
    expect_load_fail(p, bad, STG_FORMAT, "not a stgrad checkpoint", bad);
    b[0] = 'S';

    wr32(b + 8, 2);
    spill(bad, b, n);
    expect_load_fail(p, bad, STG_FORMAT, "version 2", "reads version 1");
    wr32(b + 8, 1);

    /* An empty file is no checkpoint at all, not a truncated one. */
    spill(bad, b, 0);
    expect_load_fail(p, bad, STG_FORMAT, "not a stgrad checkpoint", "it is empty");

    /* Cut inside the magic, the header, the table, the data and the CRC. */
    size_t table = entry_pos(b, 0), data = entry_pos(b, 6);
    size_t cuts[] = {5, 8, 20, 27, table + 1, table + 10, data - 3, data + 1,
                     data + 50, n - 5, n - 4, n - 2, n - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        spill(bad, b, cuts[i]);
        expect_load_fail(p, bad, STG_FORMAT, "truncated", bad);
    }

    /* A flipped bit in the data. */
    b[n - 10] ^= 0x04;
    spill(bad, b, n);
    expect_load_fail(p, bad, STG_FORMAT, "checksum mismatch", bad);
    b[n - 10] ^= 0x04;

    /* The unchanged bytes still load. */
    spill(bad, b, n);
    snap want = take(p);
    train(p, &m, 1);
    expect_load(p, bad);
    snap got = take(p);
    assert_true(same(&want, &got));

    /* A file far bigger than a checkpoint of this plan is not read. */
    unsigned char *big = calloc(1, (size_t)3 << 20);
    assert_non_null(big);
    memcpy(big, b, n);
    spill(bad, big, (size_t)3 << 20);
    expect_load_fail(p, bad, STG_FORMAT, "far more than", NULL);
    memcpy(big, "not-ours", 8);
    spill(bad, big, (size_t)3 << 20);
    expect_load_fail(p, bad, STG_FORMAT, "not a stgrad checkpoint", NULL);
    free(big);

    free(b), free(want.v), free(got.v);
    stg_plan_free(p);
    stg_graph_free(m.g);
}

/* Edits that keep a valid checksum: only the content checks can catch them. */
static void test_bad_table(void **state)
{
    (void)state;
    char good[256], bad[256];
    tpath(good, sizeof good, "table.ck");
    tpath(bad, sizeof bad, "bad.ck");
    stg_plan *p;
    model m = trained(6, false, MOMENTUM_SGD, &p, 4);
    expect_save(p, good);
    train(p, &m, 1); /* so a load that wrongly succeeded would show */
    size_t n;
    unsigned char *b = slurp(good, &n), *c = malloc(n + 8);
    assert_non_null(c);
    size_t e0 = entry_pos(b, 0), e1 = entry_pos(b, 1);

    memcpy(c, b, n);
    c[dtype_at(c, e0)] = 1;
    fix_crc(c, n);
    spill(bad, c, n);
    expect_load_fail(p, bad, STG_FORMAT, "'W1' has dtype 1", NULL);

    memcpy(c, b, n); /* "b1" -> "W1": the same name twice */
    c[e1 + 2] = 'W';
    fix_crc(c, n);
    spill(bad, c, n);
    expect_load_fail(p, bad, STG_FORMAT, "'W1' twice", NULL);

    memcpy(c, b, n);
    wr64(c + offset_at(c, e1), rd64(c + offset_at(c, e1)) + 4);
    fix_crc(c, n);
    spill(bad, c, n);
    expect_load_fail(p, bad, STG_FORMAT, "'b1' has its data at offset", NULL);

    memcpy(c, b, n);
    wr64(c + offset_at(c, e1) + 8, 20);
    fix_crc(c, n);
    spill(bad, c, n);
    expect_load_fail(p, bad, STG_FORMAT, "'b1' has 20 data bytes, its shape needs 24", NULL);

    memcpy(c, b, n);
    wr64(c + 16, (uint64_t)-5);
    fix_crc(c, n);
    spill(bad, c, n);
    expect_load_fail(p, bad, STG_FORMAT, "negative step count", NULL);

    memcpy(c, b, n);
    wr32(c + 12, 7);
    fix_crc(c, n);
    spill(bad, c, n);
    expect_load_fail(p, bad, STG_FORMAT, "tensor table (7 tensors) runs past", NULL);

    memcpy(c, b, n);
    wr32(c + 12, 5);
    fix_crc(c, n);
    spill(bad, c, n);
    expect_load_fail(p, bad, STG_FORMAT, "'W1' has its data at offset", NULL);

    memcpy(c, b, n - 4); /* eight stray bytes before the checksum */
    memset(c + n - 4, 0, 8);
    fix_crc(c, n + 8);
    spill(bad, c, n + 8);
    expect_load_fail(p, bad, STG_FORMAT, "8 stray bytes", NULL);

    free(b), free(c);
    stg_plan_free(p);
    stg_graph_free(m.g);
}

static void test_shape_mismatch(void **state)
{
    (void)state;
    char path[256];
    tpath(path, sizeof path, "wide.ck");
    stg_plan *wide, *narrow;
    model mw = trained(7, false, MOMENTUM_SGD, &wide, 2);
    model mn = trained(6, false, MOMENTUM_SGD, &narrow, 3);
    expect_save(wide, path);
    expect_load_fail(narrow, path, STG_FORMAT, "'W1' has shape (5,7) in the file, (5,6) in the plan",
                     path);
    stg_plan_free(wide);
    stg_plan_free(narrow);
    stg_graph_free(mw.g);
    stg_graph_free(mn.g);
}

static void test_missing_and_extra_tensors(void **state)
{
    (void)state;
    char sgd[256], adam[256], plain[256], small[256], big[256];
    tpath(sgd, sizeof sgd, "momentum.ck");
    tpath(adam, sizeof adam, "adam.ck");
    tpath(plain, sizeof plain, "plain.ck");
    tpath(small, sizeof small, "small.ck");
    tpath(big, sizeof big, "big.ck");
    stg_plan *ps, *pa, *pp, *pb;
    model ms = trained(6, false, MOMENTUM_SGD, &ps, 2);
    model ma = trained(6, false, ADAM, &pa, 3);
    model mp = trained(6, false, PLAIN_SGD, &pp, 4);
    model mb = trained(6, true, MOMENTUM_SGD, &pb, 5);
    expect_save(ps, sgd);
    expect_save(pa, adam);
    expect_save(pp, plain);
    expect_save(pb, big);

    expect_load_fail(ps, adam, STG_FORMAT, "has tensor 'W1/exp_avg', which this plan does not have",
                     NULL);
    expect_load_fail(pa, sgd, STG_FORMAT, "'W1/momentum_buffer', which this plan does not have",
                     NULL);
    expect_load_fail(ps, plain, STG_FORMAT, "has no tensor 'W1/momentum_buffer'", NULL);
    expect_load_fail(pp, sgd, STG_FORMAT, "'W1/momentum_buffer', which this plan does not have",
                     NULL);
    expect_load_fail(ps, big, STG_FORMAT, "has tensor 'b2', which this plan does not have", NULL);
    expect_save(ps, small);
    expect_load_fail(pb, small, STG_FORMAT, "has no tensor 'b2'", "the plan has 8 tensors, the file 6");

    stg_plan_free(ps), stg_plan_free(pa), stg_plan_free(pp), stg_plan_free(pb);
    stg_graph_free(ms.g), stg_graph_free(ma.g), stg_graph_free(mp.g), stg_graph_free(mb.g);
}

static void test_duplicate_and_missing_names(void **state)
{
    (void)state;
    char path[256];
    tpath(path, sizeof path, "dup.ck");
    const char *names[3] = {"w", NULL, "w"};
    model m = make_model(6, false, names);
    stg_plan *p = make_plan(&m, ADAM, 2);
    init_params(p, &m, 5);
    train(p, &m, 3);
    expect_save(p, path);
    size_t n;
    unsigned char *b = slurp(path, &n);
    const char *want[3] = {"param0", "param1", "param2"};
    for (int k = 0; k < 3; k++) {
        size_t pos = entry_pos(b, k);
        assert_int_equal(name_len(b, pos), strlen(want[k]));
        assert_memory_equal(b + pos + 2, want[k], strlen(want[k]));
    }
    size_t pos = entry_pos(b, 8); /* the last state tensor */
    assert_memory_equal(b + pos + 2, "param2/exp_avg_sq", 17);
    free(b);
    snap s0 = take(p);
    stg_plan *q = make_plan(&m, ADAM, 1);
    expect_load(q, path);
    snap s1 = take(q);
    assert_true(same(&s0, &s1));
    free(s0.v), free(s1.v);
    stg_plan_free(p), stg_plan_free(q);
    stg_graph_free(m.g);

    /* Names that would collide: a user's "param2" and the third (unnamed)
     * parameter's generated one; a user's "b1/momentum_buffer" and b1's
     * state.  Neither call writes or changes anything. */
    const char *clash[2][3] = {{"param2", "b1", NULL}, {"b1/momentum_buffer", "b1", "W2"}};
    const char *what[2] = {"'param2'", "'b1/momentum_buffer'"};
    for (int k = 0; k < 2; k++) {
        m = make_model(6, false, clash[k]);
        p = make_plan(&m, MOMENTUM_SGD, 1);
        int before = count_files();
        tpath(path, sizeof path, "clash.ck");
        assert_int_equal(stg_plan_save(p, path), STG_INVALID);
        expect_message(p, what[k], "rename a parameter");
        assert_int_equal(count_files(), before);
        expect_load_fail(p, path, STG_INVALID, what[k], NULL);
        stg_plan_free(p);
        stg_graph_free(m.g);
    }
}

/* ---- atomic saves ---------------------------------------------------------------- */

static void test_atomic_save(void **state)
{
    (void)state;
    char path[256], nodir[256];
    tpath(path, sizeof path, "atomic.ck");
    tpath(nodir, sizeof nodir, "no-such-dir/x.ck");
    stg_plan *p;
    model m = trained(6, false, ADAM, &p, 2);
    int before = count_files();

    assert_int_equal(stg_plan_save(p, nodir), STG_IO);
    expect_message(p, "no-such-dir/x.ck", "No such file or directory");
    assert_int_equal(count_files(), before);

    /* Over an existing checkpoint: replaced completely. */
    expect_save(p, path);
    size_t n1;
    unsigned char *first = slurp(path, &n1);
    train(p, &m, 3);
    expect_save(p, path);
    snap want = take(p);
    stg_plan *q = make_plan(&m, ADAM, 1);
    expect_load(q, path);
    snap got = take(q);
    assert_true(same(&want, &got));
    size_t n2;
    unsigned char *second = slurp(path, &n2);
    assert_int_equal(n1, n2);
    assert_memory_not_equal(first, second, n1);
    assert_int_equal(count_tmp_files(), 0);

    /* A write that fails half way (the file size limit stands in for a full
     * disk) leaves the old checkpoint byte for byte and no temporary file. */
    train(p, &m, 1);
    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    lim.rlim_cur = 100;
    void (*handler)(int) = signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    stg_status s = stg_plan_save(p, path);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, handler);
    assert_int_equal(s, STG_IO);
    expect_message(p, "failed", "File too large");
    size_t n3;
    unsigned char *third = slurp(path, &n3);
    assert_int_equal(n3, n2);
    assert_memory_equal(third, second, n2);
    assert_int_equal(count_tmp_files(), 0);

    /* A rename that fails (the destination is a directory): the temporary
     * file is removed and the directory is untouched. */
    char sub[256];
    tpath(sub, sizeof sub, "subdir");
    assert_int_equal(mkdir(sub, 0700), 0);
    assert_int_equal(stg_plan_save(p, sub), STG_IO);
    expect_message(p, "cannot rename", "subdir");
    struct stat st;
    assert_int_equal(stat(sub, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(count_tmp_files(), 0);
    assert_int_equal(rmdir(sub), 0);

    free(first), free(second), free(third), free(want.v), free(got.v);
    stg_plan_free(p), stg_plan_free(q);
    stg_graph_free(m.g);
}

/* A plan with no parameters still saves and loads its step count. */
/* An inference plan of the same graph loads a training checkpoint (SGD
 * momentum or Adam state skipped) and computes what the training plan's
 * forward pass computes, bit for bit; a forward-only training-mode plan
 * still refuses the optimizer state, and any other extra tensor is refused. */
static void test_inference_plan_loads_training_checkpoint(void **state)
{
    (void)state;
    for (optim o = MOMENTUM_SGD; o <= ADAM; o++) {
        stg_plan *tp;
        model m = trained(6, true, o, &tp, 3);
        char path[128];
        tpath(path, sizeof path, "train.ck");
        expect_save(tp, path);
        /* the training plan's forward pass on fresh inputs */
        tu_fill(stg_plan_data(tp, m.x), 40, 99, -1.0f, 1.0f);
        tu_fill(stg_plan_data(tp, m.t), 24, 98, -1.0f, 1.0f);
        assert_int_equal(stg_plan_forward(tp), STG_OK);
        float want = stg_plan_loss(tp);

        stg_graph_keep(m.g, m.loss);
        stg_plan_options opts;
        stg_plan_options_init(&opts);
        opts.inference = 1;
        stg_plan *ip = tu_plan_with(m.g, (stg_tensor){-1}, &opts);
        expect_load(ip, path);
        tu_fill(stg_plan_data(ip, m.x), 40, 99, -1.0f, 1.0f);
        tu_fill(stg_plan_data(ip, m.t), 24, 98, -1.0f, 1.0f);
        assert_int_equal(stg_plan_forward(ip), STG_OK);
        float got;
        assert_int_equal(stg_plan_get(ip, m.loss, &got, 1), STG_OK);
        assert_memory_equal(&got, &want, sizeof got);
        stg_plan_free(ip);

        /* a forward-only plan that is not an inference plan: refused */
        stg_plan_options_init(&opts);
        stg_plan *fp = tu_plan_with(m.g, (stg_tensor){-1}, &opts);
        expect_load_fail(fp, path, STG_FORMAT, "which this plan does not have",
                         o == ADAM ? "exp_avg" : "momentum_buffer");
        stg_plan_free(fp);
        stg_plan_free(tp);
        stg_graph_free(m.g);
    }
    /* an extra tensor that is not optimizer state: refused by an inference plan too */
    stg_plan *tp;
    model big = trained(6, true, MOMENTUM_SGD, &tp, 1);
    char path[128];
    tpath(path, sizeof path, "big.ck");
    expect_save(tp, path);
    stg_plan_free(tp);
    stg_graph_free(big.g);
    model small = make_model(6, false, NULL);
    stg_graph_keep(small.g, small.loss);
    stg_plan_options opts;
    stg_plan_options_init(&opts);
    opts.inference = 1;
    stg_plan *ip = tu_plan_with(small.g, (stg_tensor){-1}, &opts);
    expect_load_fail(ip, path, STG_FORMAT, "'b2'", "which this plan does not have");
    stg_plan_free(ip);
    stg_graph_free(small.g);
}

static void test_no_parameters(void **state)
{
    (void)state;
    char path[256];
    tpath(path, sizeof path, "empty.ck");
    stg_graph *g = stg_graph_new();
    int64_t d[1] = {4};
    stg_tensor a = stg_input(g, "a", 1, d), b = stg_input(g, "b", 1, d);
    stg_tensor loss = stg_mse_loss(g, a, b);
    stg_plan *p = tu_plan(g, loss, 1, STG_OPTIM_SGD);
    assert_int_equal(stg_plan_step(p), STG_OK);
    expect_save(p, path);
    stg_plan *q = tu_plan(g, loss, 1, STG_OPTIM_SGD);
    expect_load(q, path);
    assert_int_equal(stg_plan_steps(q), 1);
    size_t n;
    unsigned char *bytes = slurp(path, &n);
    assert_int_equal(n, 28);
    free(bytes);
    stg_plan_free(p), stg_plan_free(q);
    stg_graph_free(g);
}

/* ---- fixture ---------------------------------------------------------------------- */

static int make_tmpdir(void **state)
{
    (void)state;
    return tmpdir_make(tmpdir, sizeof tmpdir, "test_checkpoint");
}

static int remove_tmpdir(void **state)
{
    (void)state;
    return tmpdir_remove(tmpdir);
}

/* ---- safetensors from PyTorch ----------------------------------------------- */

/* tools/gen_reference.py's small model, built with PyTorch's names. */
typedef struct small_model {
    stg_graph *g;
    stg_tensor x, y;
    stg_plan *p;
} small_model;

static small_model small_build(void)
{
    small_model m = {.g = stg_graph_new()};
    stg_graph *g = m.g;
    int64_t five = 5, three = 3;
    m.x = stg_input_i32(g, "x", 2, (int64_t[]){2, 3});
    stg_tensor emb = stg_param(g, "emb.weight", 2, (int64_t[]){10, 4});
    stg_rnn r = {.mode = STG_LSTM, .input_size = 4, .hidden_size = 5, .num_layers = 2,
                 .batch_first = 1};
    assert_int_equal(stg_rnn_params(g, &r, "lstm"), STG_OK);
    stg_tensor out = stg_rnn_apply(g, &r, stg_embedding(g, emb, m.x, -1), (stg_tensor){-1},
                                   (stg_tensor){-1}, NULL, NULL);
    stg_tensor h = stg_reshape(g, stg_slice(g, out, 1, 2, 3, 1), 2, (int64_t[]){2, 5});
    h = stg_layer_norm(g, h, 1, stg_param(g, "ln.weight", 1, &five),
                       stg_param(g, "ln.bias", 1, &five), 1e-5f);
    h = stg_batch_norm(g, h, stg_param(g, "bn.weight", 1, &five), stg_param(g, "bn.bias", 1, &five),
                       stg_stat(g, "bn.running_mean", 1, &five, 0.0f),
                       stg_stat(g, "bn.running_var", 1, &five, 1.0f), NULL);
    stg_tensor fc = stg_param(g, "fc.weight", 2, (int64_t[]){3, 5});
    m.y = stg_add(g, stg_matmul(g, h, stg_transpose(g, fc, (int[]){1, 0})),
                  stg_param(g, "fc.bias", 1, &three));
    stg_graph_keep(g, m.y);
    assert_int_equal(stg_graph_status(g), STG_OK);
    stg_plan_options o;
    stg_plan_options_init(&o);
    o.inference = 1;
    assert_int_equal(stg_plan_create(g, (stg_tensor){-1}, &o, &m.p), STG_OK);
    return m;
}

static void spit(const char *path, const unsigned char *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, n, f), n);
    fclose(f);
}

/* Replaces the first 'from' in the header with 'to' (same length). */
static void edit(unsigned char *b, size_t n, const char *from, const char *to)
{
    size_t len = strlen(from);
    for (size_t i = 8; i + len <= n; i++)
        if (!memcmp(b + i, from, len)) {
            memcpy(b + i, to, len);
            return;
        }
    fail_msg("'%s' is not in the file", from);
}

/* A PyTorch state_dict (Embedding, 2-layer LSTM, LayerNorm, BatchNorm with
 * its running statistics, Linear) loads by name: every tensor is
 * PyTorch's, and the model gives PyTorch's eval-mode output.  Then damaged
 * copies: each refused with its message, the plan unchanged. */
static void test_load_safetensors(void **state)
{
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/state_dict.safetensors", STG_TEST_DATA);
    FILE *rf = tu_open_data("state_dict_ref.txt");
    tu_case c;
    assert_true(tu_read_case(rf, &c));
    fclose(rf);
    small_model m = small_build();
    assert_int_equal(stg_plan_load_safetensors(m.p, path), STG_OK);
    int checked = 0;
    for (int i = 0; i < c.nt; i++) {
        if (!strcmp(c.t[i].role, "x") || !strcmp(c.t[i].role, "y"))
            continue;
        int32_t id = -1;
        for (int32_t k = 0; k < m.g->n; k++)
            if (m.g->nodes[k].name && !strcmp(m.g->nodes[k].name, c.t[i].role))
                id = k;
        if (id < 0)
            fail_msg("the model has no tensor '%s'", c.t[i].role);
        float got[256];
        assert_true(c.t[i].n <= 256);
        assert_int_equal(stg_plan_get(m.p, (stg_tensor){id}, got, c.t[i].n), STG_OK);
        for (int64_t k = 0; k < c.t[i].n; k++)
            assert_true(got[k] == c.t[i].v[k]); /* F32 in the file, F32 here: exact */
        checked++;
    }
    assert_int_equal(checked, 17); /* emb 1, lstm 8, ln 2, bn 4, fc 2: all but num_batches_tracked */
    const tu_tensor *x = tu_find(&c, "x"), *y = tu_find(&c, "y");
    int32_t *xv = stg_plan_data_i32(m.p, m.x);
    for (int k = 0; k < 6; k++)
        xv[k] = (int32_t)x->v[k];
    assert_int_equal(stg_plan_forward(m.p), STG_OK);
    assert_true(tu_err(stg_plan_data(m.p, m.y), y->v, 6, 2e-5, 1e-4) <= 1.0);

    /* damaged copies */
    char dir[256], bad[300];
    assert_int_equal(tmpdir_make(dir, sizeof dir, "stg_safetensors"), 0);
    snprintf(bad, sizeof bad, "%s/bad.safetensors", dir);
    size_t n;
    unsigned char *orig = slurp(path, &n), *work = malloc(n);
    assert_non_null(work);
    stg_tensor fcb = {-1};
    for (int32_t k = 0; k < m.g->n; k++)
        if (m.g->nodes[k].name && !strcmp(m.g->nodes[k].name, "fc.bias"))
            fcb.id = k;
    float keep[3];
    assert_int_equal(stg_plan_get(m.p, fcb, keep, 3), STG_OK);
    struct {
        const char *from, *to;
        stg_status st;
        const char *want;
    } cases[] = {
        {"\"fc.bias\":{\"dtype\":\"F32\"", "\"fc.bias\":{\"dtype\":\"F64\"", STG_FORMAT,
         "tensor 'fc.bias' has dtype F64"},
        {"\"fc.bias\"", "\"fc.biaz\"", STG_FORMAT, "has no tensor 'fc.bias'"},
        {"\"fc.bias\":{\"dtype\":\"F32\",\"shape\":[3]",
         "\"fc.bias\":{\"dtype\":\"F32\",\"shape\":[4]", STG_FORMAT,
         "tensor 'fc.bias' has shape (4,) in the file, (3,) in the plan"},
        {"\"emb.weight\":{", "\"emb.weight\":[", STG_FORMAT, "not valid JSON"},
        {"num_batches_tracked", "num_batches_trackeX", STG_FORMAT,
         "has tensor 'bn.num_batches_trackeX', which the plan lacks"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memcpy(work, orig, n);
        edit(work, n, cases[i].from, cases[i].to);
        /* change the values too: a refused file must change nothing */
        for (size_t k = n - 12; k < n; k++)
            work[k] ^= 0x5a;
        spit(bad, work, n);
        assert_int_equal(stg_plan_load_safetensors(m.p, bad), cases[i].st);
        if (!strstr(stg_plan_message(m.p), cases[i].want))
            fail_msg("case %zu: message '%s' lacks '%s'", i, stg_plan_message(m.p), cases[i].want);
        float now[3];
        assert_int_equal(stg_plan_get(m.p, fcb, now, 3), STG_OK);
        assert_memory_equal(now, keep, sizeof keep);
    }
    spit(bad, orig, n - 5); /* cut: the last tensor's data is not all there */
    assert_int_equal(stg_plan_load_safetensors(m.p, bad), STG_FORMAT);
    assert_non_null(strstr(stg_plan_message(m.p), "data_offsets"));
    memcpy(work, orig, n);
    work[7] = 0x7f; /* a header length beyond the file */
    spit(bad, work, n);
    assert_int_equal(stg_plan_load_safetensors(m.p, bad), STG_FORMAT);
    assert_non_null(strstr(stg_plan_message(m.p), "its header claims"));
    spit(bad, orig, 5);
    assert_int_equal(stg_plan_load_safetensors(m.p, bad), STG_FORMAT);
    assert_int_equal(stg_plan_load_safetensors(m.p, "/nonexistent/x.safetensors"), STG_IO);
    assert_int_equal(stg_plan_load_safetensors(NULL, path), STG_INVALID);
    float now[3];
    assert_int_equal(stg_plan_get(m.p, fcb, now, 3), STG_OK);
    assert_memory_equal(now, keep, sizeof keep);
    tmpdir_remove(dir);
    free(orig);
    free(work);
    tu_free_case(&c);
    stg_plan_free(m.p);
    stg_graph_free(m.g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_sgd_momentum),
        cmocka_unit_test(test_round_trip_adam),
        cmocka_unit_test(test_file_layout),
        cmocka_unit_test(test_resume_is_exact),
        cmocka_unit_test(test_missing_file_and_directory),
        cmocka_unit_test(test_bad_header_and_truncation),
        cmocka_unit_test(test_bad_table),
        cmocka_unit_test(test_shape_mismatch),
        cmocka_unit_test(test_missing_and_extra_tensors),
        cmocka_unit_test(test_duplicate_and_missing_names),
        cmocka_unit_test(test_atomic_save),
        cmocka_unit_test(test_no_parameters),
        cmocka_unit_test(test_inference_plan_loads_training_checkpoint),
        cmocka_unit_test(test_load_safetensors),
    };
    return cmocka_run_group_tests(tests, make_tmpdir, remove_tmpdir);
}
