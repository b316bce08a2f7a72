#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "testutil.h"

static bool read_tensor(FILE *f, tu_tensor *t)
{
    if (fscanf(f, " tensor %47s %d", t->role, &t->nd) != 2 || t->nd < 0 || t->nd > STG_MAX_DIMS)
        return false;
    t->n = 1;
    for (int i = 0; i < t->nd; i++) {
        long long d;
        if (fscanf(f, "%lld", &d) != 1 || d < 1)
            return false;
        t->d[i] = d;
        t->n *= d;
    }
    t->v = malloc((size_t)t->n * sizeof(float));
    if (!t->v)
        return false;
    for (int64_t i = 0; i < t->n; i++)
        if (fscanf(f, "%f", &t->v[i]) != 1)
            return false;
    return true;
}

bool tu_read_case(FILE *f, tu_case *c)
{
    char line[512];
    memset(c, 0, sizeof *c);
    int ch;
    while ((ch = fgetc(f)) == '#' || ch == '\n' || ch == ' ')
        if (ch == '#' && !fgets(line, sizeof line, f))
            return false;
    if (ch == EOF)
        return false;
    ungetc(ch, f);
    int used = 0;
    if (!fgets(line, sizeof line, f) ||
        sscanf(line, "case %127s %31s%n", c->name, c->op, &used) != 2)
        fail_msg("malformed reference file near: %s", line);
    /* attributes follow the op name on the same line */
    char *p = line + used;
    char *end;
    for (double v = strtod(p, &end); end != p; v = strtod(p, &end)) {
        assert_true(c->nattr < 32);
        c->attr[c->nattr++] = v;
        p = end;
    }
    for (;;) {
        char word[16];
        long pos = ftell(f);
        if (fscanf(f, " %15s", word) != 1)
            fail_msg("%s: reference file ends inside a case", c->name);
        if (strcmp(word, "end") == 0)
            break;
        fseek(f, pos, SEEK_SET);
        assert_true(c->nt < TU_MAX_TENSORS);
        if (!read_tensor(f, &c->t[c->nt++]))
            fail_msg("%s: malformed tensor", c->name);
    }
    return true;
}

void tu_free_case(tu_case *c)
{
    for (int i = 0; i < c->nt; i++)
        free(c->t[i].v);
    memset(c, 0, sizeof *c);
}

const tu_tensor *tu_find(const tu_case *c, const char *role)
{
    for (int i = 0; i < c->nt; i++)
        if (strcmp(c->t[i].role, role) == 0)
            return &c->t[i];
    return NULL;
}

stg_plan *tu_plan_with(const stg_graph *g, stg_tensor loss, const stg_plan_options *o)
{
    if (stg_graph_status(g) != STG_OK)
        fail_msg("graph error: %s", stg_graph_message(g));
    stg_plan *p = NULL;
    stg_status s = stg_plan_create(g, loss, o, &p);
    if (s != STG_OK)
        fail_msg("stg_plan_create: %s: %s", stg_status_name(s), stg_plan_last_message());
    char msg[512];
    if (stg_plan_check(p, msg, sizeof msg) != STG_OK)
        fail_msg("plan check: %s", msg);
    return p;
}

stg_plan *tu_plan(stg_graph *g, stg_tensor loss, int threads, stg_optimizer opt)
{
    stg_plan_options o;
    stg_plan_options_init(&o);
    o.threads = threads;
    o.optimizer = opt;
    return tu_plan_with(g, loss, &o);
}

double tu_err(const float *got, const float *want, int64_t n, double atol, double rtol)
{
    double worst = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double d = got[i] - (double)want[i];
        double e = (d < 0 ? -d : d) / (atol + rtol * (want[i] < 0 ? -want[i] : want[i]));
        if (!(e <= worst)) /* NaN counts as the worst */
            worst = e != e ? 1e30 : e;
    }
    return worst;
}

void tu_fill(float *x, int64_t n, uint64_t seed, float lo, float hi)
{
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (int64_t i = 0; i < n; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17; /* xorshift64 */
        x[i] = lo + (hi - lo) * (float)((s >> 40) / (double)(1ull << 24));
    }
}

FILE *tu_open_data(const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", STG_TEST_DATA, name);
    FILE *f = fopen(path, "r");
    if (!f)
        fail_msg("cannot open %s", path);
    return f;
}
