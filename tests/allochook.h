/*
 * Replaces the C allocator of the test program (malloc, calloc, realloc,
 * posix_memalign, aligned_alloc, memalign, free) to count calls made
 * anywhere in the process, BLIS and libgomp included, to count live blocks,
 * and to fail an allocation on request.  Sanitizer builds (address,
 * thread) replace the allocator themselves: there ALLOCHOOK_ACTIVE is 0
 * and nothing is counted.
 * Valgrind replaces it at run time: allochook_works() tells.
 */
#ifndef STG_ALLOCHOOK_H
#define STG_ALLOCHOOK_H

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define ALLOCHOOK_ACTIVE 0
#else
#define ALLOCHOOK_ACTIVE 1
#endif

/* Whether this process's allocations really go through the hook: false in
 * sanitizer builds and under valgrind, which replace the allocator. */
int allochook_works(void);
/* Allocation calls so far (successful or not). */
long allochook_calls(void);
/* Blocks allocated and not yet freed. */
long allochook_live(void);
/* Makes the n-th allocation from now (0 = the next) fail; -1 disables. */
void allochook_fail_after(long n);

#endif
