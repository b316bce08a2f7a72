/*
 * Loading parameters from a safetensors file (the format of Hugging Face's
 * safetensors, which tools/export_state_dict.py writes from a PyTorch
 * state_dict):
 *
 *   8 bytes    N, the header's length, little-endian
 *   N bytes    a JSON object: name -> {"dtype": "F32", "shape": [d0, ...],
 *              "data_offsets": [begin, end]}, and an optional
 *              "__metadata__" object
 *   the data   each tensor's little-endian bytes at [begin, end) from here
 *
 * Every parameter and running statistic of the plan is matched by name; the
 * whole file is checked (JSON, names, dtypes, shapes, offsets, nothing
 * missing or unexpected) before anything is copied, so a bad file leaves
 * the plan as it was.  BatchNorm's num_batches_tracked, which stgrad does
 * not keep, is ignored.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "internal.h"

/* Failures are reported in the plan's message (stg_plan_message). */
#define fail stgP_message

#define ST_HEADER_MAX ((uint64_t)64 << 20)
#define ST_NAME_MAX 512

typedef struct st_entry {
    char name[ST_NAME_MAX];
    char dtype[16];
    int nd;
    int64_t d[STG_MAX_DIMS];
    uint64_t begin, end;
    bool used;
} st_entry;

typedef struct st_parse {
    const char *s, *end, *start;
    const char *path;
    stg_plan *p;
    stg_status status;
} st_parse;

/* ---- a small JSON reader --------------------------------------------------- */

static bool bad(st_parse *j, const char *what)
{
    if (j->status == STG_OK)
        j->status = fail(j->p, STG_FORMAT, "safetensors: '%s': the header is not valid JSON "
                         "(%s at byte %lld of it)", j->path, what, (long long)(j->s - j->start));
    return false;
}

static void ws(st_parse *j)
{
    while (j->s < j->end && (*j->s == ' ' || *j->s == '\t' || *j->s == '\n' || *j->s == '\r'))
        j->s++;
}

static bool lit(st_parse *j, char c)
{
    ws(j);
    if (j->s < j->end && *j->s == c) {
        j->s++;
        return true;
    }
    return false;
}

/* A string into out (at most cap - 1 bytes, else an error); \u escapes
 * become UTF-8. */
static bool string(st_parse *j, char *out, size_t cap)
{
    size_t n = 0;
    if (!lit(j, '"'))
        return bad(j, "a string expected");
    while (j->s < j->end && *j->s != '"') {
        unsigned c = (unsigned char)*j->s++;
        if (c == '\\') {
            if (j->s >= j->end)
                return bad(j, "a cut escape");
            c = (unsigned char)*j->s++;
            static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
            const char *k = strchr(from, (int)c);
            if (c == 'u') {
                unsigned v = 0;
                for (int i = 0; i < 4; i++) {
                    if (j->s >= j->end)
                        return bad(j, "a cut \\u escape");
                    char h = *j->s++;
                    v = v * 16 + (unsigned)(h >= '0' && h <= '9' ? h - '0'
                                            : h >= 'a' && h <= 'f' ? h - 'a' + 10
                                            : h >= 'A' && h <= 'F' ? h - 'A' + 10 : 99);
                    if (v >= 0x10000)
                        return bad(j, "a bad \\u escape");
                }
                unsigned char u[3];
                int len = v < 0x80 ? 1 : v < 0x800 ? 2 : 3;
                if (len == 1)
                    u[0] = (unsigned char)v;
                else if (len == 2)
                    u[0] = (unsigned char)(0xc0 | v >> 6), u[1] = (unsigned char)(0x80 | (v & 63));
                else
                    u[0] = (unsigned char)(0xe0 | v >> 12),
                    u[1] = (unsigned char)(0x80 | (v >> 6 & 63)),
                    u[2] = (unsigned char)(0x80 | (v & 63));
                for (int i = 0; i < len; i++) {
                    if (n + 1 >= cap)
                        return bad(j, "a string too long");
                    out[n++] = (char)u[i];
                }
                continue;
            }
            if (!k || !*k)
                return bad(j, "a bad escape");
            c = (unsigned char)to[k - from];
        } else if (c < 0x20) {
            return bad(j, "a control character in a string");
        }
        if (n + 1 >= cap)
            return bad(j, "a string too long");
        out[n++] = (char)c;
    }
    if (j->s >= j->end)
        return bad(j, "an unterminated string");
    j->s++;
    out[n] = '\0';
    return true;
}

/* A non-negative integer below 2^62. */
static bool count(st_parse *j, uint64_t *v)
{
    ws(j);
    const char *start = j->s;
    *v = 0;
    while (j->s < j->end && *j->s >= '0' && *j->s <= '9') {
        if (*v > ((uint64_t)1 << 58))
            return bad(j, "a number too large");
        *v = *v * 10 + (uint64_t)(*j->s++ - '0');
    }
    return j->s > start || bad(j, "a non-negative integer expected");
}

/* Skips any value (depth-limited). */
static bool skip(st_parse *j, int depth)
{
    char tmp[ST_NAME_MAX];
    ws(j);
    if (depth > 32 || j->s >= j->end)
        return bad(j, depth > 32 ? "nesting too deep" : "a value expected");
    char c = *j->s;
    if (c == '"')
        return string(j, tmp, sizeof tmp);
    if (c == '{' || c == '[') {
        j->s++;
        char close = c == '{' ? '}' : ']';
        if (lit(j, close))
            return true;
        do {
            if (c == '{' && (!string(j, tmp, sizeof tmp) || !lit(j, ':')))
                return j->status == STG_OK ? bad(j, "':' expected") : false;
            if (!skip(j, depth + 1))
                return false;
        } while (lit(j, ','));
        return lit(j, close) || bad(j, "',' or a closing bracket expected");
    }
    const char *start = j->s;
    while (j->s < j->end && strchr("-+.eE0123456789truefalsn", *j->s))
        j->s++;
    return j->s > start || bad(j, "a value expected");
}

/* One tensor's description. */
static bool entry(st_parse *j, st_entry *e)
{
    bool dtype = false, shape = false, offsets = false;
    if (!lit(j, '{'))
        return bad(j, "a tensor's object expected");
    do {
        char key[64];
        if (!string(j, key, sizeof key) || !lit(j, ':'))
            return j->status == STG_OK ? bad(j, "':' expected") : false;
        if (!strcmp(key, "dtype")) {
            if (!string(j, e->dtype, sizeof e->dtype))
                return false;
            dtype = true;
        } else if (!strcmp(key, "shape")) {
            if (!lit(j, '['))
                return bad(j, "a shape array expected");
            e->nd = 0;
            if (!lit(j, ']')) {
                do {
                    uint64_t v;
                    if (e->nd == STG_MAX_DIMS)
                        return bad(j, "a shape of more than 8 dims");
                    if (!count(j, &v))
                        return false;
                    e->d[e->nd++] = (int64_t)v;
                } while (lit(j, ','));
                if (!lit(j, ']'))
                    return bad(j, "',' or ']' expected in a shape");
            }
            shape = true;
        } else if (!strcmp(key, "data_offsets")) {
            if (!lit(j, '[') || !count(j, &e->begin) || !lit(j, ',') || !count(j, &e->end) ||
                !lit(j, ']'))
                return j->status == STG_OK ? bad(j, "data_offsets must be [begin, end]") : false;
            offsets = true;
        } else if (!skip(j, 1)) {
            return false;
        }
    } while (lit(j, ','));
    if (!lit(j, '}'))
        return bad(j, "',' or '}' expected");
    if (!dtype || !shape || !offsets)
        return bad(j, "a tensor without dtype, shape or data_offsets");
    return true;
}

/* The header's entries (malloc'ed into *out). */
static stg_status parse_header(st_parse *j, st_entry **out, size_t *n)
{
    size_t cap = 16;
    st_entry *e = malloc(cap * sizeof *e);
    *out = NULL, *n = 0;
    if (!e)
        return fail(j->p, STG_NOMEM, "safetensors: out of memory");
    if (!lit(j, '{')) {
        bad(j, "the header must be an object");
    } else if (!lit(j, '}')) {
        do {
            char name[ST_NAME_MAX];
            if (!string(j, name, sizeof name) || !lit(j, ':')) {
                if (j->status == STG_OK)
                    bad(j, "':' expected");
                break;
            }
            if (!strcmp(name, "__metadata__")) {
                if (!skip(j, 1))
                    break;
                continue;
            }
            if (*n == cap) {
                st_entry *m = realloc(e, 2 * cap * sizeof *e);
                if (!m) {
                    free(e);
                    return fail(j->p, STG_NOMEM, "safetensors: out of memory");
                }
                e = m, cap *= 2;
            }
            st_entry *x = &e[*n];
            memset(x, 0, sizeof *x);
            memcpy(x->name, name, sizeof name);
            if (!entry(j, x))
                break;
            for (size_t i = 0; i < *n; i++)
                if (!strcmp(e[i].name, name)) {
                    j->status = fail(j->p, STG_FORMAT, "safetensors: '%s' names tensor '%s' "
                                     "twice", j->path, name);
                    break;
                }
            (*n)++;
        } while (j->status == STG_OK && lit(j, ','));
        if (j->status == STG_OK && !lit(j, '}'))
            bad(j, "',' or '}' expected");
    }
    ws(j);
    if (j->status == STG_OK && j->s != j->end)
        bad(j, "bytes after the header's object");
    if (j->status != STG_OK) {
        free(e);
        *n = 0;
        return j->status;
    }
    *out = e;
    return STG_OK;
}

/* ---- matching and loading --------------------------------------------------- */

static bool loadable(const stg_node *n)
{
    return n->role == STG_ROLE_PARAM || n->role == STG_ROLE_STAT;
}

static const char *ends_with(const char *s, const char *tail)
{
    size_t a = strlen(s), b = strlen(tail);
    return a >= b && !strcmp(s + a - b, tail) ? s + a - b : NULL;
}

/* Every loadable tensor of the plan has an F32 entry of its shape that lies
 * inside the data; every entry is some tensor's (or num_batches_tracked). */
static stg_status match(stg_plan *p, const char *path, st_entry *e, size_t n, uint64_t data,
                        int32_t *which)
{
    const stg_graph *g = p->g;
    char bs[96], bf[96];
    for (int32_t i = 0; i < p->nuser; i++) {
        const stg_node *nd = &g->nodes[i];
        which[i] = -1;
        if (!loadable(nd))
            continue;
        if (!nd->name)
            return fail(p, STG_INVALID, "safetensors: the plan's %s %d has no name to look up",
                        nd->role == STG_ROLE_PARAM ? "parameter" : "running statistic", (int)i);
        size_t k = 0;
        while (k < n && strcmp(e[k].name, nd->name))
            k++;
        stgS_str(&nd->shape, bs, sizeof bs);
        if (k == n)
            return fail(p, STG_FORMAT, "safetensors: '%s' has no tensor '%s' (the plan's %s %s)",
                        path, nd->name, nd->role == STG_ROLE_PARAM ? "parameter" : "statistic",
                        bs);
        if (e[k].used)
            return fail(p, STG_INVALID, "safetensors: two tensors of the plan are named '%s'",
                        nd->name);
        stg_shape fs = {e[k].nd, {0}};
        memcpy(fs.d, e[k].d, sizeof fs.d);
        stgS_str(&fs, bf, sizeof bf);
        if (strcmp(e[k].dtype, "F32"))
            return fail(p, STG_FORMAT, "safetensors: '%s': tensor '%s' has dtype %s; stgrad "
                        "reads F32 (export it with .float())", path, nd->name, e[k].dtype);
        if (!stgS_equal(&fs, &nd->shape))
            return fail(p, STG_FORMAT, "safetensors: '%s': tensor '%s' has shape %s in the file, "
                        "%s in the plan", path, nd->name, bf, bs);
        uint64_t bytes = (uint64_t)stgS_numel(&nd->shape) * 4u;
        if (e[k].end < e[k].begin || e[k].end - e[k].begin != bytes || e[k].end > data)
            return fail(p, STG_FORMAT, "safetensors: '%s': tensor '%s' has data_offsets [%llu, "
                        "%llu], which do not hold %llu bytes inside the %llu of data", path,
                        nd->name, (unsigned long long)e[k].begin, (unsigned long long)e[k].end,
                        (unsigned long long)bytes, (unsigned long long)data);
        e[k].used = true;
        which[i] = (int32_t)k;
    }
    for (size_t k = 0; k < n; k++)
        if (!e[k].used && !ends_with(e[k].name, "num_batches_tracked"))
            return fail(p, STG_FORMAT, "safetensors: '%s' has tensor '%s', which the plan lacks",
                        path, e[k].name);
    return STG_OK;
}

static uint64_t le64(const unsigned char *b)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | b[i];
    return v;
}

STG_API stg_status stg_plan_load_safetensors(stg_plan *p, const char *path)
{
    if (!p)
        return STG_INVALID;
    if (!path || !*path)
        return fail(p, STG_INVALID, "safetensors: no path given");
    if (p->opt.share_params)
        return fail(p, STG_INVALID, "safetensors: this plan reads its parameters from another "
                    "plan (share_params); load '%s' into that one", path);
    uint64_t want = 0;
    for (int32_t i = 0; i < p->nuser; i++)
        if (loadable(&p->g->nodes[i]))
            want += (uint64_t)stgS_numel(&p->g->nodes[i].shape) * 4u;
    FILE *f = fopen(path, "rb");
    if (!f)
        return fail(p, STG_IO, "safetensors: cannot open '%s': %s", path, strerror(errno));
    struct stat st;
    unsigned char *buf = NULL;
    stg_status s = STG_OK;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode))
        s = fail(p, STG_IO, "safetensors: cannot read '%s': not a regular file", path);
    else if ((uint64_t)st.st_size > 8 + ST_HEADER_MAX + 2 * want + ((uint64_t)1 << 20))
        s = fail(p, STG_FORMAT, "safetensors: '%s' is %lld bytes, far more than the %llu bytes "
                 "of this plan's parameters", path, (long long)st.st_size,
                 (unsigned long long)want);
    else if (st.st_size < 8)
        s = fail(p, STG_FORMAT, "safetensors: '%s' is %lld bytes, too short for a header", path,
                 (long long)st.st_size);
    else if (!(buf = malloc((size_t)st.st_size)))
        s = fail(p, STG_NOMEM, "safetensors: out of memory reading '%s'", path);
    else if (fread(buf, 1, (size_t)st.st_size, f) != (size_t)st.st_size)
        s = fail(p, STG_IO, "safetensors: cannot read '%s'", path);
    fclose(f);
    uint64_t size = (uint64_t)st.st_size, hlen = s == STG_OK ? le64(buf) : 0;
    if (s == STG_OK && (hlen > ST_HEADER_MAX || hlen > size - 8))
        s = fail(p, STG_FORMAT, "safetensors: '%s': its header claims %llu bytes, the file has "
                 "%llu after the length", path, (unsigned long long)hlen,
                 (unsigned long long)(size - 8));
    st_entry *e = NULL;
    size_t n = 0;
    int32_t *which = NULL;
    if (s == STG_OK) {
        const char *h = (const char *)buf + 8;
        st_parse j = {h, h + hlen, h, path, p, STG_OK};
        s = parse_header(&j, &e, &n);
    }
    if (s == STG_OK && !(which = malloc(((size_t)p->nuser + 1) * sizeof *which)))
        s = fail(p, STG_NOMEM, "safetensors: out of memory");
    if (s == STG_OK)
        s = match(p, path, e, n, size - 8 - hlen, which);
    if (s == STG_OK) {
        const unsigned char *data = buf + 8 + hlen;
        for (int32_t i = 0; i < p->nuser; i++) {
            if (which[i] < 0)
                continue;
            float *dst = stgP_ptr(p, i);
            const unsigned char *src = data + e[which[i]].begin;
            for (int64_t k = 0; k < stgS_numel(&p->g->nodes[i].shape); k++, src += 4) {
                uint32_t v = (uint32_t)src[0] | (uint32_t)src[1] << 8 | (uint32_t)src[2] << 16 |
                             (uint32_t)src[3] << 24;
                memcpy(&dst[k], &v, sizeof v);
            }
        }
        p->step_msg[0] = '\0';
    }
    free(which);
    free(e);
    free(buf);
    return s;
}
