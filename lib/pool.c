/*
 * The plan's threads: the caller of a step is thread 0, and threads-1
 * workers, started with the plan and joined when it is freed, wait for the
 * next step.  A step's only synchronisation is a counter and a generation
 * word per barrier, so whether a step enters the kernel is the wait policy's
 * choice alone:
 *
 *   STG_WAIT_SPIN        pause loops, nothing else: no system call in a step
 *                        or between steps; each worker holds its core while
 *                        the plan lives.
 *   STG_WAIT_SPIN_YIELD  a short pause loop, then sched_yield until
 *                        YIELD_NS have passed, then sleep in the kernel; a
 *                        waker makes a system call only when someone sleeps.
 *   STG_WAIT_PASSIVE     sleep in the kernel at once.
 *
 * Sleeping is a futex on the word being waited for (Linux); elsewhere it
 * is a loop of 50-microsecond sleeps.  A waiter counts itself into 'sleepers' before it
 * rereads the word, and a waker bumps the word before it reads 'sleepers';
 * both sequentially consistent, so one of them sees the other and no wake-up
 * is lost.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef __linux__
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
/* 32-bit ABIs born with 64-bit time (riscv32) only have futex_time64; with
 * no timeout the two are the same call. */
#if defined(SYS_futex)
#define STG_FUTEX SYS_futex
#elif defined(SYS_futex_time64)
#define STG_FUTEX SYS_futex_time64
#endif
#endif

#include "internal.h"

/* Pauses before yielding: long enough to cover a short node on a free core,
 * short enough that more threads than cores degrade to yields, not burn. */
#define SPIN_LIMIT 200
/* How long a yielding waiter keeps its core before it sleeps: longer than
 * the gap a training loop leaves between steps to fill its inputs, short
 * enough that a paused program stops using the cores soon. */
#define YIELD_NS 2000000

typedef struct signal_word {
    _Alignas(64) atomic_uint word;
    atomic_int sleepers;
} signal_word;

struct stg_pool {
    signal_word start;   /* bumped to start a job */
    signal_word gen;     /* a barrier generation */
    _Alignas(64) atomic_int count; /* threads arrived at the barrier */
    atomic_int failed;   /* the step's failure flag, as the barrier's last arrival saw it */
    atomic_bool quit;
    atomic_int ready;    /* workers that reached their first wait */
    atomic_int wait;     /* an stg_wait */
    int threads, started;
    unsigned forks;      /* fork_count when the workers were started */
    void (*on_start)(int worker, void *arg);
    void *on_start_arg;
    stgR_job *job;       /* written before 'start' is bumped */
    void *ctx;
    pthread_t *workers;
    struct worker_arg *args;
};

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static int64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t); /* the vDSO on most machines: no system call */
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static void sleep_while(atomic_uint *w, unsigned seen)
{
#ifdef STG_FUTEX
    syscall(STG_FUTEX, w, FUTEX_WAIT_PRIVATE, seen, NULL, NULL, 0);
#else
    /* no futex: short sleeps, so an idle plan costs little CPU time, at up
     * to 50 microseconds of lateness per wake-up */
    (void)w, (void)seen;
    struct timespec t = {0, 50000};
    nanosleep(&t, NULL);
#endif
}

static void wake_all(atomic_uint *w)
{
#ifdef STG_FUTEX
    syscall(STG_FUTEX, w, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
#else
    (void)w;
#endif
}

static inline bool changed(signal_word *s, unsigned seen)
{
    return atomic_load_explicit(&s->word, memory_order_acquire) != seen;
}

/* How often a spinning waiter rereads the policy, which stg_plan_set_wait
 * may change while it waits. */
#define POLICY_EVERY 1024

/* Returns once s->word is no longer 'seen'. */
static void await_change(signal_word *s, unsigned seen, const atomic_int *policy)
{
    stg_wait wait = (stg_wait)atomic_load_explicit(policy, memory_order_relaxed);
    if (wait == STG_WAIT_SPIN) {
        for (unsigned k = 1; !changed(s, seen); k++) {
            cpu_relax();
            if (k % POLICY_EVERY == 0 &&
                atomic_load_explicit(policy, memory_order_relaxed) != STG_WAIT_SPIN) {
                wait = STG_WAIT_PASSIVE;
                break;
            }
        }
        if (wait == STG_WAIT_SPIN)
            return;
    }
    if (wait == STG_WAIT_SPIN_YIELD) {
        for (int spin = 0; spin < SPIN_LIMIT; spin++) {
            if (changed(s, seen))
                return;
            cpu_relax();
        }
        int64_t t0 = now_ns();
        for (unsigned k = 1;; k++) {
            if (changed(s, seen))
                return;
            sched_yield();
            if (k % 16 == 0 && now_ns() - t0 > YIELD_NS)
                break;
        }
    }
    /* sleepers that a policy of spinning should now wake are woken by the
     * next bump, which sees them counted */
    atomic_fetch_add(&s->sleepers, 1);
    while (atomic_load(&s->word) == seen)
        sleep_while(&s->word, seen);
    atomic_fetch_sub(&s->sleepers, 1);
}

static void bump(signal_word *s)
{
    atomic_fetch_add(&s->word, 1);
    if (atomic_load(&s->sleepers) > 0)
        wake_all(&s->word);
}

/*
 * Generation barrier: the last thread to arrive resets the count and opens
 * the next generation; the others wait for the generation to change.
 *
 * It also carries the step's failure flag: the last arrival copies the flag
 * before opening the generation, so every thread leaving this barrier sees
 * the same value and they all stop at the same node (a thread that read the
 * live flag could see a later write and leave the others waiting).
 */
/* Not inlined, and named, so that instruction counts (callgrind
 * --toggle-collect=stgR_pool_barrier) can leave the waiting out. */
__attribute__((noinline)) bool stgR_pool_barrier(struct stg_pool *pool, const atomic_int *failed)
{
    unsigned gen = atomic_load_explicit(&pool->gen.word, memory_order_acquire);
    if (atomic_fetch_add_explicit(&pool->count, 1, memory_order_acq_rel) == pool->threads - 1) {
        atomic_store_explicit(&pool->failed, failed ? atomic_load(failed) : 0,
                              memory_order_relaxed);
        atomic_store_explicit(&pool->count, 0, memory_order_relaxed);
        bump(&pool->gen);
        return atomic_load_explicit(&pool->failed, memory_order_relaxed);
    }
    await_change(&pool->gen, gen, &pool->wait);
    return atomic_load_explicit(&pool->failed, memory_order_relaxed);
}

typedef struct worker_arg {
    struct stg_pool *pool;
    int tid;
} worker_arg;

/* A worker's wait for the next job: named and not inlined for the same
 * reason as the barrier. */
__attribute__((noinline)) void stgR_pool_idle(struct stg_pool *pool, unsigned seen)
{
    await_change(&pool->start, seen, &pool->wait);
}

static void *worker(void *arg)
{
    struct stg_pool *pool = ((worker_arg *)arg)->pool;
    int tid = ((worker_arg *)arg)->tid;
    if (pool->on_start)
        pool->on_start(tid, pool->on_start_arg);
    atomic_fetch_add(&pool->ready, 1);
    for (unsigned seen = 0;; seen++) {
        /* 'start' moves once per job, and not again before this thread has
         * passed the job's closing barrier, so it is exactly seen + 1 here */
        stgR_pool_idle(pool, seen);
        if (atomic_load(&pool->quit))
            return NULL;
        pool->job(pool->ctx, tid, pool->threads);
        stgR_pool_barrier(pool, NULL);
    }
}

/* Forks since the process started: a child's copy of a pool has no
 * workers, and must neither wait for them nor join them. */
static atomic_uint fork_count;
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

static void count_fork(void)
{
    atomic_fetch_add(&fork_count, 1);
}

static void watch_forks(void)
{
    pthread_atfork(NULL, NULL, count_fork);
}

bool stgR_pool_orphaned(const struct stg_pool *pool)
{
    return pool->started > 0 && atomic_load_explicit(&fork_count, memory_order_relaxed) !=
                                    pool->forks;
}

void stgR_pool_run(struct stg_pool *pool, stgR_job *job, void *ctx)
{
    pool->job = job;
    pool->ctx = ctx;
    bump(&pool->start);
    job(ctx, 0, pool->threads);
    stgR_pool_barrier(pool, NULL);
}

int stgR_usable_cpus(void)
{
#ifdef __linux__
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0)
        return CPU_COUNT(&set);
    /* more than 1024 CPUs: a set large enough for the machine (the kernel
     * refuses a small one); if even that fails, the caller cannot check */
    for (int n = 2048; n <= (1 << 20); n *= 2) {
        cpu_set_t *big = CPU_ALLOC(n);
        if (!big)
            break;
        size_t size = CPU_ALLOC_SIZE(n);
        int count = sched_getaffinity(0, size, big) == 0 ? CPU_COUNT_S(size, big) : -1;
        CPU_FREE(big);
        if (count >= 0)
            return count;
        if (errno != EINVAL)
            break;
    }
#endif
    return INT_MAX;
}

void stgR_pool_set_wait(struct stg_pool *pool, stg_wait wait)
{
    atomic_store(&pool->wait, (int)wait);
}

static void stop_workers(struct stg_pool *pool)
{
    if (stgR_pool_orphaned(pool))
        return; /* in a child after fork: the workers are the parent's */
    atomic_store(&pool->quit, true);
    bump(&pool->start);
    wake_all(&pool->start.word); /* a sleeper counted after the bump is woken by it anyway */
    for (int t = 0; t < pool->started; t++)
        pthread_join(pool->workers[t], NULL);
    pool->started = 0;
}

stg_status stgR_pool_new(int threads, stg_wait wait, void (*on_start)(int, void *),
                         void *on_start_arg, struct stg_pool **out, char *msg, size_t len)
{
    *out = NULL;
    pthread_once(&fork_once, watch_forks);
    struct stg_pool *pool = aligned_alloc(64, sizeof *pool);
    if (!pool) {
        snprintf(msg, len, "plan: out of memory for thread state");
        return STG_NOMEM;
    }
    memset(pool, 0, sizeof *pool);
    atomic_init(&pool->start.word, 0);
    atomic_init(&pool->start.sleepers, 0);
    atomic_init(&pool->gen.word, 0);
    atomic_init(&pool->gen.sleepers, 0);
    atomic_init(&pool->count, 0);
    atomic_init(&pool->failed, 0);
    atomic_init(&pool->quit, false);
    atomic_init(&pool->wait, (int)wait);
    pool->threads = threads;
    pool->on_start = on_start;
    pool->on_start_arg = on_start_arg;
    pool->forks = atomic_load(&fork_count);
    atomic_init(&pool->ready, 0);
    if (threads > 1 && (!(pool->workers = calloc((size_t)threads - 1, sizeof *pool->workers)) ||
                        !(pool->args = calloc((size_t)threads - 1, sizeof *pool->args)))) {
        free(pool->workers);
        free(pool);
        snprintf(msg, len, "plan: out of memory for thread state");
        return STG_NOMEM;
    }
    /* Signals are the caller's business: workers block them all, so a
     * handler never runs on (or interrupts) a thread the caller did not
     * make; all but the faults a kernel itself may raise, whose handlers
     * (crash reporters, sanitizers) must still run. */
    sigset_t all, old;
    sigfillset(&all);
    static const int faults[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS, SIGABRT};
    for (size_t k = 0; k < sizeof faults / sizeof faults[0]; k++)
        sigdelset(&all, faults[k]);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int err = 0;
    for (int t = 1; t < threads && !err; t++) {
        pool->args[t - 1] = (worker_arg){pool, t};
        err = pthread_create(&pool->workers[t - 1], NULL, worker, &pool->args[t - 1]);
        if (!err)
            pool->started++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    /* A thread's start-up (the C library's, a sanitizer's) may allocate:
     * let it happen here, not during the first step. */
    while (atomic_load(&pool->ready) < pool->started)
        sched_yield();
    if (err) {
        snprintf(msg, len, "plan: cannot start worker thread %d of %d: %s", pool->started + 1,
                 threads - 1, strerror(err));
        stgR_pool_free(pool);
        return STG_NOMEM;
    }
    *out = pool;
    return STG_OK;
}

void stgR_pool_free(struct stg_pool *pool)
{
    if (!pool)
        return;
    stop_workers(pool);
    free(pool->workers);
    free(pool->args);
    free(pool);
}
