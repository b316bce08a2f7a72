#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "allochook.h"

#if ALLOCHOOK_ACTIVE
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);
void *memalign(size_t align, size_t n);

static atomic_long calls, live, countdown = -1;

long allochook_calls(void) { return atomic_load(&calls); }

/* Allocates from inside libc, as the library and BLIS do: a call from this
 * file could be bound to the hook directly even where it is not in force. */
int allochook_works(void)
{
    long before = allochook_calls();
    char *volatile probe = strdup("probe"); /* volatile: clang elides a bare strdup + free */
    free(probe);
    return allochook_calls() > before;
}
long allochook_live(void) { return atomic_load(&live); }
void allochook_fail_after(long n) { atomic_store(&countdown, n); }

/* Counts a call; true if this one must fail (with errno ENOMEM, as the C
 * library's allocator sets it). */
static int enter(void)
{
    atomic_fetch_add_explicit(&calls, 1, memory_order_relaxed);
    long c = atomic_load_explicit(&countdown, memory_order_relaxed);
    if (c >= 0 && atomic_fetch_sub(&countdown, 1) == 0) {
        errno = ENOMEM;
        return 1;
    }
    return 0;
}

static void *track(void *p)
{
    if (p)
        atomic_fetch_add_explicit(&live, 1, memory_order_relaxed);
    return p;
}

void *malloc(size_t n)
{
    return enter() ? NULL : track(__libc_malloc(n));
}

void *calloc(size_t n, size_t size)
{
    return enter() ? NULL : track(__libc_calloc(n, size));
}

void *realloc(void *old, size_t n)
{
    if (enter())
        return NULL;
    void *p = __libc_realloc(old, n);
    return old ? p : track(p);
}

void *memalign(size_t align, size_t n)
{
    return enter() ? NULL : track(__libc_memalign(align, n));
}

void *aligned_alloc(size_t align, size_t n)
{
    return memalign(align, n);
}

int posix_memalign(void **out, size_t align, size_t n)
{
    void *p = memalign(align, n);
    if (!p)
        return ENOMEM;
    *out = p;
    return 0;
}

void free(void *p)
{
    if (p)
        atomic_fetch_sub_explicit(&live, 1, memory_order_relaxed);
    __libc_free(p);
}
#else
int allochook_works(void) { return 0; }
long allochook_calls(void) { return 0; }
long allochook_live(void) { return 0; }
void allochook_fail_after(long n) { (void)n; }
#endif
