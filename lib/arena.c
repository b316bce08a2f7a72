/*
 * Arena placement: a pure function from buffer sizes and lifetimes to byte
 * offsets.  Buffers are placed largest first, each at the lowest offset that
 * no already-placed, time-overlapping buffer occupies (greedy by size, the
 * usual heuristic for this offline interval-colouring problem).
 */
#include <stdlib.h>

#include "internal.h"

static size_t align_up(size_t x)
{
    return (x + STG_ALIGN - 1) / STG_ALIGN * STG_ALIGN;
}

static bool overlap_in_time(const stg_interval *a, const stg_interval *b)
{
    return a->first <= b->last && b->first <= a->last;
}

/* Insertion sorts: the lists are short and these keep the code obvious. */
static void sort_by_size(stg_interval *iv, int32_t *order, int32_t n)
{
    for (int32_t i = 1; i < n; i++) {
        int32_t x = order[i], j = i;
        while (j > 0 && (iv[order[j - 1]].bytes < iv[x].bytes ||
                         (iv[order[j - 1]].bytes == iv[x].bytes && order[j - 1] > x))) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = x;
    }
}

size_t stgA_place(stg_interval *iv, int32_t n, int32_t *order)
{
    size_t top = 0;
    for (int32_t i = 0; i < n; i++)
        order[i] = i;
    sort_by_size(iv, order, n);
    for (int32_t i = 0; i < n; i++) {
        stg_interval *b = &iv[order[i]];
        size_t need = align_up(b->bytes), off = 0;
        /* Raise 'off' past every conflicting placed buffer until a pass
         * finds none in the way; each raise moves strictly upward. */
        bool moved = true;
        while (moved) {
            moved = false;
            for (int32_t j = 0; j < i; j++) {
                const stg_interval *o = &iv[order[j]];
                size_t oend = o->offset + align_up(o->bytes);
                if (overlap_in_time(b, o) && off < oend && o->offset < off + need) {
                    off = oend;
                    moved = true;
                }
            }
        }
        b->offset = off;
        if (off + need > top)
            top = off + need;
    }
    return top;
}
