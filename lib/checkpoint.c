/*
 * Checkpoints: parameters, optimizer state and the step count, in the format
 * that README.md describes under "Checkpoint format".  Every number is
 * written byte by byte, little-endian, whatever the host, and the file ends
 * with a zlib CRC-32 of everything before it.
 *
 * Saving goes through stgW_write_atomic, so a failure at any point leaves an
 * earlier checkpoint intact.  Loading reads the whole file into memory and
 * checks all of it against the plan before it copies anything, so a bad file
 * never leaves a plan half-restored.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "internal.h"

/* Failures are reported in the plan's message (stg_plan_message). */
#define fail stgP_message

#define CK_MAGIC "STGRADCK"
#define CK_VERSION 1u
#define CK_HEADER 24u      /* magic, version, tensor count, step count */
#define CK_CRC 4u          /* the trailing CRC-32 */
#define CK_ENTRY 20u       /* a table entry without its name and dims */
#define CK_DTYPE_F32 0u
#define CK_NAME_MAX 65535u /* a name's length is a u16 */
#define CK_SLACK ((uint64_t)1 << 20) /* load refuses files this much bigger than expected */

/* One tensor of the plan that a checkpoint holds. */
typedef struct ck_tensor {
    char *name; /* owned */
    size_t len;
    const stg_shape *shape;
    float *data;
    uint64_t bytes;
    uint64_t src; /* load: where its data starts in the file; 0 until found */
} ck_tensor;

typedef struct ck_set {
    ck_tensor *t;
    size_t n;
} ck_set;

/* One table entry as it lies in a file (pointers into the file's bytes). */
typedef struct ck_entry {
    const unsigned char *name, *dims;
    size_t len;
    unsigned dtype, nd;
    uint64_t off, bytes;
} ck_entry;

/* ---- little-endian bytes ------------------------------------------------ */

static void le16(unsigned char *b, uint16_t v)
{
    b[0] = (unsigned char)v, b[1] = (unsigned char)(v >> 8);
}

static void le32(unsigned char *b, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        b[i] = (unsigned char)(v >> (8 * i));
}

static void le64(unsigned char *b, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(v >> (8 * i));
}

static uint16_t get16(const unsigned char *b)
{
    return (uint16_t)(b[0] | (unsigned)b[1] << 8);
}

static uint32_t get32(const unsigned char *b)
{
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static uint64_t get64(const unsigned char *b)
{
    return (uint64_t)get32(b) | (uint64_t)get32(b + 4) << 32;
}

/* zlib's crc32 takes a 32-bit length: feed it in pieces. */
static uLong crc_bytes(uLong crc, const unsigned char *b, size_t n)
{
    while (n > 0) {
        uInt k = n > (1u << 30) ? (1u << 30) : (uInt)n;
        crc = crc32(crc, b, k);
        b += k, n -= k;
    }
    return crc;
}

/* ---- the plan's tensors and their names --------------------------------- */

static void release(ck_set *set)
{
    for (size_t i = 0; set->t && i < set->n; i++)
        free(set->t[i].name);
    free(set->t);
    set->t = NULL, set->n = 0;
}

static bool is_param(const stg_plan *p, int32_t id)
{
    return id >= 0 && id < p->nuser && p->g->nodes[id].role == STG_ROLE_PARAM;
}

/* A leaf a checkpoint holds: a parameter or a running statistic. */
static bool is_saved(const stg_plan *p, int32_t id)
{
    return is_param(p, id) || (id >= 0 && id < p->nuser && p->g->nodes[id].role == STG_ROLE_STAT);
}

/* A saved leaf's own name when it has one that no other saved leaf has,
 * else "param<k>" or "stat<k>" (k counting that kind from 0). */
static char *param_name(const stg_plan *p, int32_t id, int k)
{
    const char *own = p->g->nodes[id].name;
    for (int32_t j = 0; own && j < p->nuser; j++)
        if (j != id && is_saved(p, j) && p->g->nodes[j].name && !strcmp(p->g->nodes[j].name, own))
            own = NULL;
    char gen[32];
    if (!own)
        snprintf(gen, sizeof gen, "%s%d", is_param(p, id) ? "param" : "stat", k);
    const char *s = own ? own : gen;
    char *out = malloc(strlen(s) + 1);
    return out ? strcpy(out, s) : NULL;
}

static char *state_name(const char *param, const char *suffix)
{
    size_t a = strlen(param), b = strlen(suffix);
    char *out = malloc(a + b + 2);
    if (out) {
        memcpy(out, param, a);
        out[a] = '/';
        memcpy(out + a + 1, suffix, b + 1);
    }
    return out;
}

static int by_name(const void *a, const void *b)
{
    return strcmp((*(const ck_tensor *const *)a)->name, (*(const ck_tensor *const *)b)->name);
}

/* Every name fits a u16 length and no two are equal (a user's name can
 * coincide with a generated "param<k>" or "<name>/<state>"). */
static stg_status check_names(stg_plan *p, const ck_set *set)
{
    for (size_t i = 0; i < set->n; i++)
        if (set->t[i].len > CK_NAME_MAX)
            return fail(p, STG_INVALID, "checkpoint: tensor name '%.40s...' is %zu bytes (at most %u)",
                        set->t[i].name, set->t[i].len, CK_NAME_MAX);
    const ck_tensor **s = malloc((set->n ? set->n : 1) * sizeof *s);
    if (!s)
        return fail(p, STG_NOMEM, "checkpoint: out of memory");
    for (size_t i = 0; i < set->n; i++)
        s[i] = &set->t[i];
    qsort(s, set->n, sizeof *s, by_name);
    stg_status st = STG_OK;
    for (size_t i = 1; i < set->n && st == STG_OK; i++)
        if (!strcmp(s[i - 1]->name, s[i]->name))
            st = fail(p, STG_INVALID,
                      "checkpoint: two tensors of the plan would both be named '%s'; rename a "
                      "parameter", s[i]->name);
    free(s);
    return st;
}

/* Parameters and running statistics in id order, then optimizer state in the order of the update
 * nodes and their inputs. */
static stg_status collect(stg_plan *p, ck_set *set)
{
    const stg_graph *g = p->g;
    size_t n = 0;
    for (int32_t i = 0; i < g->n; i++) {
        const stg_node *nd = &g->nodes[i];
        n += is_saved(p, i);
        for (int j = 2; (nd->op->flags & STG_OPF_UPDATE) && j < nd->nin; j++)
            n += (nd->op->state ? nd->op->state(j) : NULL) != NULL;
    }
    set->n = 0;
    set->t = calloc(n ? n : 1, sizeof *set->t);
    int32_t *slot = malloc(((size_t)p->nuser + 1) * sizeof *slot);
    if (!set->t || !slot)
        goto nomem;
    int kp = 0, ks = 0;
    for (int32_t i = 0; i < p->nuser; i++) {
        slot[i] = -1;
        if (!is_saved(p, i))
            continue;
        ck_tensor *t = &set->t[set->n++];
        slot[i] = (int32_t)(set->n - 1);
        if (!(t->name = param_name(p, i, is_param(p, i) ? kp++ : ks++)))
            goto nomem;
        t->shape = &g->nodes[i].shape;
        t->data = stgP_ptr(p, i);
    }
    for (int32_t i = 0; i < g->n; i++) {
        const stg_node *nd = &g->nodes[i];
        if (!(nd->op->flags & STG_OPF_UPDATE) || !is_param(p, nd->in[0]))
            continue;
        for (int j = 2; j < nd->nin; j++) {
            const char *suffix = (nd->op->state ? nd->op->state(j) : NULL);
            if (!suffix)
                continue;
            ck_tensor *t = &set->t[set->n++];
            if (!(t->name = state_name(set->t[slot[nd->in[0]]].name, suffix)))
                goto nomem;
            t->shape = &g->nodes[nd->in[j]].shape;
            t->data = stgP_ptr(p, nd->in[j]);
        }
    }
    free(slot);
    for (size_t i = 0; i < set->n; i++) {
        set->t[i].len = strlen(set->t[i].name);
        set->t[i].bytes = (uint64_t)stgS_numel(set->t[i].shape) * sizeof(float);
    }
    stg_status s = check_names(p, set);
    if (s != STG_OK)
        release(set);
    return s;
nomem:
    free(slot);
    release(set);
    return fail(p, STG_NOMEM, "checkpoint: out of memory");
}

static uint64_t table_bytes(const ck_set *set)
{
    uint64_t n = 0;
    for (size_t i = 0; i < set->n; i++)
        n += CK_ENTRY + set->t[i].len + 8u * (uint64_t)set->t[i].shape->nd;
    return n;
}

static uint64_t file_bytes(const ck_set *set)
{
    uint64_t n = CK_HEADER + table_bytes(set) + CK_CRC;
    for (size_t i = 0; i < set->n; i++)
        n += set->t[i].bytes;
    return n;
}

/* ---- saving --------------------------------------------------------------- */

typedef struct ck_writer {
    FILE *f;
    uLong crc;
    int err; /* errno of the first failed write; 0 while all is well */
} ck_writer;

static void put(ck_writer *w, const void *b, size_t n)
{
    if (w->err || n == 0)
        return;
    w->crc = crc_bytes(w->crc, b, n);
    errno = 0;
    if (fwrite(b, 1, n, w->f) != n)
        w->err = errno ? errno : EIO;
}

static void put_floats(ck_writer *w, const float *x, uint64_t n)
{
    unsigned char buf[16384];
    while (n > 0 && !w->err) {
        size_t k = n < sizeof buf / 4 ? (size_t)n : sizeof buf / 4;
        for (size_t i = 0; i < k; i++) {
            uint32_t u;
            memcpy(&u, &x[i], sizeof u);
            le32(buf + 4 * i, u);
        }
        put(w, buf, 4 * k);
        x += k, n -= k;
    }
}

static void put_all(ck_writer *w, const stg_plan *p, const ck_set *set)
{
    unsigned char b[CK_HEADER];
    memcpy(b, CK_MAGIC, 8);
    le32(b + 8, CK_VERSION);
    le32(b + 12, (uint32_t)set->n);
    le64(b + 16, (uint64_t)p->steps);
    put(w, b, CK_HEADER);
    uint64_t off = CK_HEADER + table_bytes(set);
    for (size_t i = 0; i < set->n; i++) {
        const ck_tensor *t = &set->t[i];
        le16(b, (uint16_t)t->len);
        put(w, b, 2);
        put(w, t->name, t->len);
        b[0] = CK_DTYPE_F32, b[1] = (unsigned char)t->shape->nd;
        put(w, b, 2);
        for (int d = 0; d < t->shape->nd; d++) {
            le64(b, (uint64_t)t->shape->d[d]);
            put(w, b, 8);
        }
        le64(b, off);
        le64(b + 8, t->bytes);
        put(w, b, 16);
        off += t->bytes;
    }
    for (size_t i = 0; i < set->n; i++)
        put_floats(w, set->t[i].data, set->t[i].bytes / sizeof(float));
    le32(b, (uint32_t)w->crc);
    put(w, b, CK_CRC);
}

typedef struct ck_job {
    const stg_plan *p;
    const ck_set *set;
} ck_job;

static int write_body(FILE *f, void *ctx)
{
    const ck_job *job = ctx;
    ck_writer w = {f, 0, 0};
    put_all(&w, job->p, job->set);
    return w.err;
}

STG_API stg_status stg_plan_save(stg_plan *p, const char *path)
{
    if (!p)
        return STG_INVALID;
    ck_set set = {0};
    stg_status s = collect(p, &set);
    if (s != STG_OK)
        return s;
    if (set.n > UINT32_MAX)
        s = fail(p, STG_INVALID, "checkpoint: %zu tensors, more than a checkpoint holds", set.n);
    else
        s = stgW_write_atomic(p, "checkpoint", path, write_body, &(ck_job){p, &set});
    release(&set);
    if (s == STG_OK)
        p->step_msg[0] = '\0';
    return s;
}

/* ---- loading ------------------------------------------------------------- */

/* A name from a file, printable and short enough for a message. */
static const char *shown(const unsigned char *s, size_t len, char *out, size_t cap)
{
    size_t k = 0, max = cap - 4;
    for (size_t i = 0; i < len && k < max; i++)
        out[k++] = s[i] < 0x20 || s[i] == 0x7f ? '?' : (char)s[i];
    if (len > max)
        memcpy(out + k, "...", 3), k += 3;
    out[k] = '\0';
    return out;
}

/* Reads the table entry at '*pos'; false if it does not end by 'end'. */
static bool parse_entry(const unsigned char *buf, size_t end, size_t *pos, ck_entry *e)
{
    size_t at = *pos;
    if (end - at < 2)
        return false;
    e->len = get16(buf + at);
    at += 2;
    if (end - at < e->len + 2)
        return false;
    e->name = buf + at;
    at += e->len;
    e->dtype = buf[at], e->nd = buf[at + 1];
    at += 2;
    if (end - at < 8u * e->nd + 16u)
        return false;
    e->dims = buf + at;
    at += 8u * e->nd;
    e->off = get64(buf + at), e->bytes = get64(buf + at + 8);
    *pos = at + 16;
    return true;
}

/* Walks 'count' entries from the header on; false if they run past 'end'.
 * '*total' gets the file size the table describes (saturating). */
static bool walk_table(const unsigned char *buf, size_t end, uint32_t count, size_t *table_end,
                       uint64_t *total)
{
    size_t pos = CK_HEADER;
    uint64_t sum = 0;
    for (uint32_t i = 0; i < count; i++) {
        ck_entry e;
        if (!parse_entry(buf, end, &pos, &e))
            return false;
        sum = e.bytes > UINT64_MAX - sum ? UINT64_MAX : sum + e.bytes;
    }
    *table_end = pos;
    *total = sum > UINT64_MAX - pos - CK_CRC ? UINT64_MAX : sum + pos + CK_CRC;
    return true;
}

/* The checksum does not match: say whether the file looks cut short. */
static stg_status damaged(stg_plan *p, const char *path, const unsigned char *buf, size_t size,
                          uint32_t stored, uint32_t computed)
{
    size_t table_end;
    uint64_t total;
    if (!walk_table(buf, size, get32(buf + 12), &table_end, &total))
        return fail(p, STG_FORMAT,
                    "checkpoint: '%s' is truncated or damaged: its tensor table (%u tensors) runs "
                    "past the end of the file (%zu bytes)", path, get32(buf + 12), size);
    if (total > size)
        return fail(p, STG_FORMAT,
                    "checkpoint: '%s' is truncated: %zu bytes, but its table describes %llu",
                    path, size, (unsigned long long)total);
    return fail(p, STG_FORMAT,
                "checkpoint: '%s' is damaged: checksum mismatch (stored %08x, computed %08x)",
                path, (unsigned)stored, (unsigned)computed);
}

static ck_tensor *find(const ck_set *set, const ck_entry *e)
{
    for (size_t i = 0; i < set->n; i++)
        if (set->t[i].len == e->len && !memcmp(set->t[i].name, e->name, e->len))
            return &set->t[i];
    return NULL;
}

/* Whether an entry is optimizer state ("<param>/<suffix>" with a suffix some
 * optimizer's update declares) of a parameter of the plan: what an
 * inference plan, which has no optimizer, skips in a training checkpoint. */
static bool optimizer_state_of(const ck_set *set, const ck_entry *e)
{
    int nops;
    const stg_op *const *ops = stgO_all(&nops);
    for (size_t i = 0; i < set->n; i++) {
        size_t len = set->t[i].len;
        if (e->len <= len + 1 || memcmp(e->name, set->t[i].name, len) || e->name[len] != '/')
            continue;
        for (int k = 0; k < nops; k++)
            for (int j = 0; ops[k]->state && j < STG_MAX_INPUTS; j++) {
                const char *suffix = ops[k]->state(j);
                if (suffix && strlen(suffix) == e->len - len - 1 &&
                    !memcmp(e->name + len + 1, suffix, e->len - len - 1))
                    return true;
            }
    }
    return false;
}

/* One entry against the plan's tensor of the same name; 'data' is where its
 * data must start (blocks follow the table in table order, back to back). */
static stg_status check_entry(stg_plan *p, const char *path, const ck_set *set, const ck_entry *e,
                              uint64_t data, uint64_t data_end)
{
    char nm[64], fs[160], ps[160];
    ck_tensor *t = find(set, e);
    if (!t && p->opt.inference && optimizer_state_of(set, e)) {
        if (e->off != data || e->bytes > data_end - data)
            return fail(p, STG_FORMAT, "checkpoint: '%s': the data of tensor '%s' is not where "
                        "the table says", path, shown(e->name, e->len, nm, sizeof nm));
        return STG_OK; /* an inference plan has no optimizer state to load */
    }
    if (!t)
        return fail(p, STG_FORMAT, "checkpoint: '%s' has tensor '%s', which this plan does not have",
                    path, shown(e->name, e->len, nm, sizeof nm));
    if (t->src)
        return fail(p, STG_FORMAT, "checkpoint: '%s' has tensor '%s' twice", path, t->name);
    if (e->dtype != CK_DTYPE_F32)
        return fail(p, STG_FORMAT,
                    "checkpoint: '%s': tensor '%s' has dtype %u (only 0, float32, is known)", path,
                    t->name, e->dtype);
    bool same = (int)e->nd == t->shape->nd;
    for (int d = 0; same && d < t->shape->nd; d++)
        same = get64(e->dims + 8 * d) == (uint64_t)t->shape->d[d];
    if (!same && e->nd > STG_MAX_DIMS)
        return fail(p, STG_FORMAT, "checkpoint: '%s': tensor '%s' has %u dims in the file, shape %s "
                    "in the plan", path, t->name, e->nd, stgS_str(t->shape, ps, sizeof ps));
    if (!same) {
        stg_shape f = {.nd = (int)e->nd};
        for (unsigned d = 0; d < e->nd; d++)
            f.d[d] = (int64_t)get64(e->dims + 8 * d);
        return fail(p, STG_FORMAT, "checkpoint: '%s': tensor '%s' has shape %s in the file, %s in "
                    "the plan", path, t->name, stgS_str(&f, fs, sizeof fs),
                    stgS_str(t->shape, ps, sizeof ps));
    }
    if (e->bytes != t->bytes)
        return fail(p, STG_FORMAT,
                    "checkpoint: '%s': tensor '%s' has %llu data bytes, its shape needs %llu", path,
                    t->name, (unsigned long long)e->bytes, (unsigned long long)t->bytes);
    if (e->off != data)
        return fail(p, STG_FORMAT,
                    "checkpoint: '%s': tensor '%s' has its data at offset %llu, expected %llu",
                    path, t->name, (unsigned long long)e->off, (unsigned long long)data);
    if (e->bytes > data_end - data)
        return fail(p, STG_FORMAT, "checkpoint: '%s': the data of tensor '%s' runs into the checksum",
                    path, t->name);
    t->src = e->off;
    return STG_OK;
}

/* Checks the whole file against the plan; on success every tensor's 'src'
 * is set and '*steps' holds the step count. */
static stg_status check_file(stg_plan *p, const char *path, const ck_set *set,
                             const unsigned char *buf, size_t size, int64_t *steps)
{
    if (size < 8 || memcmp(buf, CK_MAGIC, 8) != 0) {
        if (size > 0 && size < 8 && memcmp(buf, CK_MAGIC, size) == 0)
            return fail(p, STG_FORMAT, "checkpoint: '%s' is truncated: %zu bytes, the header "
                        "alone is %u", path, size, CK_HEADER);
        return fail(p, STG_FORMAT, "checkpoint: '%s' is not a stgrad checkpoint (%s)", path,
                    size ? "it does not start with \"" CK_MAGIC "\"" : "it is empty");
    }
    if (size < CK_HEADER + CK_CRC)
        return fail(p, STG_FORMAT, "checkpoint: '%s' is truncated: %zu bytes, the header and "
                    "checksum alone are %u", path, size, CK_HEADER + CK_CRC);
    uint32_t version = get32(buf + 8);
    if (version != CK_VERSION)
        return fail(p, STG_FORMAT, "checkpoint: '%s' has format version %u; this library reads "
                    "version %u", path, (unsigned)version, CK_VERSION);
    uint32_t stored = get32(buf + size - CK_CRC);
    uint32_t computed = (uint32_t)crc_bytes(0, buf, size - CK_CRC);
    if (stored != computed)
        return damaged(p, path, buf, size, stored, computed);
    uint32_t count = get32(buf + 12);
    *steps = (int64_t)get64(buf + 16);
    if (*steps < 0)
        return fail(p, STG_FORMAT, "checkpoint: '%s' has a negative step count (%lld)", path,
                    (long long)*steps);
    size_t data_end = size - CK_CRC, table_end, pos = CK_HEADER;
    uint64_t total;
    if (!walk_table(buf, data_end, count, &table_end, &total))
        return fail(p, STG_FORMAT, "checkpoint: '%s': the tensor table (%u tensors) runs past the "
                    "end of the file", path, (unsigned)count);
    uint64_t data = table_end;
    for (uint32_t i = 0; i < count; i++) {
        ck_entry e;
        parse_entry(buf, data_end, &pos, &e);
        stg_status s = check_entry(p, path, set, &e, data, data_end);
        if (s != STG_OK)
            return s;
        data += e.bytes;
    }
    for (size_t i = 0; i < set->n; i++)
        if (!set->t[i].src)
            return fail(p, STG_FORMAT, "checkpoint: '%s' has no tensor '%s' (the plan has %zu "
                        "tensors, the file %u)", path, set->t[i].name, set->n, (unsigned)count);
    if (data != data_end)
        return fail(p, STG_FORMAT, "checkpoint: '%s' has %llu stray bytes before its checksum",
                    path, (unsigned long long)(data_end - data));
    return STG_OK;
}

/* Reads all of 'path' into '*buf' (owned by the caller), refusing files
 * bigger than 'limit'. */
static stg_status read_file(stg_plan *p, const char *path, uint64_t limit, unsigned char **buf,
                            size_t *size)
{
    *buf = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return fail(p, STG_IO, "checkpoint: cannot open '%s': %s", path, strerror(errno));
    struct stat st;
    stg_status s = STG_OK;
    if (fstat(fileno(f), &st) != 0)
        s = fail(p, STG_IO, "checkpoint: cannot read '%s': %s", path, strerror(errno));
    else if (!S_ISREG(st.st_mode))
        s = fail(p, STG_IO, "checkpoint: cannot read '%s': not a regular file", path);
    else if ((uint64_t)st.st_size > limit) {
        unsigned char magic[8];
        bool ours = fread(magic, 1, 8, f) == 8 && !memcmp(magic, CK_MAGIC, 8);
        s = ours ? fail(p, STG_FORMAT, "checkpoint: '%s' is %lld bytes, far more than the %llu "
                        "bytes of a checkpoint of this plan", path, (long long)st.st_size,
                        (unsigned long long)(limit - CK_SLACK))
                 : fail(p, STG_FORMAT, "checkpoint: '%s' is not a stgrad checkpoint (it does not "
                        "start with \"" CK_MAGIC "\")", path);
    } else if (!(*buf = malloc(st.st_size ? (size_t)st.st_size : 1)))
        s = fail(p, STG_NOMEM, "checkpoint: out of memory reading '%s'", path);
    else {
        *size = fread(*buf, 1, (size_t)st.st_size, f);
        if (ferror(f))
            s = fail(p, STG_IO, "checkpoint: cannot read '%s': %s", path, strerror(errno));
        else if (*size != (size_t)st.st_size)
            s = fail(p, STG_IO, "checkpoint: cannot read '%s': it shrank while being read", path);
    }
    fclose(f);
    if (s != STG_OK) {
        free(*buf);
        *buf = NULL;
    }
    return s;
}

static void get_floats(float *x, const unsigned char *b, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++) {
        uint32_t u = get32(b + 4 * i);
        memcpy(&x[i], &u, sizeof u);
    }
}

STG_API stg_status stg_plan_load(stg_plan *p, const char *path)
{
    if (!p)
        return STG_INVALID;
    if (!path || !*path)
        return fail(p, STG_INVALID, "checkpoint: load: no path given");
    if (p->opt.share_params)
        return fail(p, STG_INVALID, "checkpoint: load: this plan reads its parameters from "
                    "another plan (share_params); load '%s' into that one", path);
    ck_set set = {0};
    stg_status s = collect(p, &set);
    if (s != STG_OK)
        return s;
    unsigned char *buf = NULL;
    size_t size = 0;
    int64_t steps = 0;
    /* an inference plan reads training checkpoints: Adam keeps two tensors
     * of state per parameter */
    uint64_t expect = file_bytes(&set) * (p->opt.inference ? 3 : 1);
    s = read_file(p, path, expect + CK_SLACK, &buf, &size);
    if (s == STG_OK)
        s = check_file(p, path, &set, buf, size, &steps);
    if (s == STG_OK) {
        for (size_t i = 0; i < set.n; i++)
            get_floats(set.t[i].data, buf + set.t[i].src, set.t[i].bytes / sizeof(float));
        p->steps = steps;
        p->step_msg[0] = '\0';
    }
    free(buf);
    release(&set);
    return s;
}
