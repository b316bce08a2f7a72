/*
 * Shape rules shared by the op families: element counts, row-major layouts,
 * NumPy broadcasting, axis normalisation, and the coalesced strided loop that
 * elementwise and reduction kernels run over.
 */
#include <stdio.h>
#include <string.h>

#include "internal.h"

int64_t stgS_numel(const stg_shape *s)
{
    int64_t n = 1;
    for (int i = 0; i < s->nd; i++)
        n *= s->d[i];
    return n;
}

bool stgS_numel_ok(const stg_shape *s)
{
    int64_t n = 1;
    for (int i = 0; i < s->nd; i++) {
        if (n > STG_MAX_NUMEL / s->d[i])
            return false;
        n *= s->d[i];
    }
    return true;
}

void stgS_contiguous(const stg_shape *s, stg_layout *lay)
{
    int64_t st = 1;
    memset(lay, 0, sizeof *lay);
    for (int i = s->nd - 1; i >= 0; i--) {
        lay->st[i] = st;
        st *= s->d[i];
    }
}

/* Strides along size-1 dims never matter, so they are ignored. */
bool stgS_is_contiguous(const stg_shape *s, const stg_layout *lay)
{
    int64_t st = 1;
    for (int i = s->nd - 1; i >= 0; i--) {
        if (s->d[i] != 1 && lay->st[i] != st)
            return false;
        st *= s->d[i];
    }
    return true;
}

bool stgS_equal(const stg_shape *a, const stg_shape *b)
{
    return a->nd == b->nd && memcmp(a->d, b->d, (size_t)a->nd * sizeof a->d[0]) == 0;
}

bool stgS_broadcast(const stg_shape *a, const stg_shape *b, stg_shape *out)
{
    int nd = a->nd > b->nd ? a->nd : b->nd;
    out->nd = nd;
    for (int i = 0; i < nd; i++) {
        int ia = a->nd - nd + i, ib = b->nd - nd + i;
        int64_t da = ia >= 0 ? a->d[ia] : 1, db = ib >= 0 ? b->d[ib] : 1;
        if (da != db && da != 1 && db != 1)
            return false;
        out->d[i] = da == 1 ? db : da;
    }
    return true;
}

void stgS_broadcast_strides(const stg_shape *in, const stg_layout *lay, const stg_shape *out,
                            int64_t *st)
{
    for (int i = 0; i < out->nd; i++) {
        int j = in->nd - out->nd + i;
        st[i] = (j >= 0 && in->d[j] == out->d[i]) ? lay->st[j] : 0;
    }
}

int stgS_axis(int axis, int nd)
{
    if (axis < 0)
        axis += nd;
    return axis >= 0 && axis < nd ? axis : -1;
}

const char *stgS_str(const stg_shape *s, char *buf, size_t len)
{
    size_t k = 0;
    k += (size_t)snprintf(buf + k, len - k, "(");
    for (int i = 0; i < s->nd && k < len; i++)
        k += (size_t)snprintf(buf + k, len - k, i ? ",%lld" : "%lld", (long long)s->d[i]);
    if (k < len)
        snprintf(buf + k, len - k, s->nd == 1 ? ",)" : ")");
    return buf;
}

/*
 * Drops size-1 dims and merges neighbours that every operand walks as one
 * (outer stride == inner stride * inner size), so a contiguous elementwise
 * op becomes a single flat loop whatever its rank.
 */
void stgS_loop_init(stg_loop *L, const stg_shape *s, int nops, int64_t (*st)[STG_MAX_DIMS])
{
    memset(L, 0, sizeof *L);
    for (int i = 0; i < s->nd; i++) {
        if (s->d[i] == 1)
            continue;
        int k = L->nd;
        if (k > 0) {
            bool merge = true;
            for (int o = 0; o < nops; o++)
                if (L->st[o][k - 1] != st[o][i] * s->d[i])
                    merge = false;
            if (merge) {
                L->d[k - 1] *= s->d[i];
                for (int o = 0; o < nops; o++)
                    L->st[o][k - 1] = st[o][i];
                continue;
            }
        }
        L->d[k] = s->d[i];
        for (int o = 0; o < nops; o++)
            L->st[o][k] = st[o][i];
        L->nd++;
    }
    L->total = stgS_numel(s);
}

void stgS_loop_offsets(const stg_loop *L, int64_t i, int64_t *off)
{
    for (int o = 0; o < STG_LOOP_OPS; o++)
        off[o] = 0;
    for (int k = L->nd - 1; k >= 0; k--) {
        int64_t idx = i % L->d[k];
        i /= L->d[k];
        for (int o = 0; o < STG_LOOP_OPS; o++)
            off[o] += idx * L->st[o][k];
    }
}
