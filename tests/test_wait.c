/*
 * The wait policies of a plan's threads: every policy gives the same bits
 * at any thread count; workers that fell asleep between steps are woken by
 * the next one; and with STG_WAIT_SPIN a warm step makes no system call at
 * all, proved in a child process that a seccomp filter kills on any system
 * call but exit_group.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#ifdef __linux__
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#endif

#include "allochook.h"
#include "testutil.h"

static const stg_wait policies[] = {STG_WAIT_SPIN_YIELD, STG_WAIT_SPIN, STG_WAIT_PASSIVE};
static const char *const policy_names[] = {"spin-yield", "spin", "passive"};

/* A two-layer network whose products and elementwise nodes are big enough
 * to be shared between threads, so steps meet at barriers. */
typedef struct net {
    stg_graph *g;
    stg_tensor x, t, w1, b1, w2, loss;
} net;

static net make_net(void)
{
    net n = {.g = stg_graph_new()};
    int64_t xd[2] = {64, 256}, td[2] = {64, 32}, w1d[2] = {256, 128}, b1d[1] = {128},
            w2d[2] = {128, 32};
    n.x = stg_input(n.g, "x", 2, xd);
    n.t = stg_input(n.g, "t", 2, td);
    n.w1 = stg_param(n.g, "w1", 2, w1d);
    n.b1 = stg_param(n.g, "b1", 1, b1d);
    n.w2 = stg_param(n.g, "w2", 2, w2d);
    stg_tensor h = stg_relu(n.g, stg_add(n.g, stg_matmul(n.g, n.x, n.w1), n.b1));
    n.loss = stg_mse_loss(n.g, stg_matmul(n.g, h, n.w2), n.t);
    return n;
}

static stg_plan *make_plan(const net *n, int threads, stg_wait wait)
{
    stg_plan_options o;
    stg_plan_options_init(&o);
    o.threads = threads;
    o.wait = wait;
    o.lr = 0.05f;
    stg_plan *p = NULL;
    if (stg_plan_create(n->g, n->loss, &o, &p) != STG_OK)
        return NULL;
    tu_fill(stg_plan_data(p, n->x), 64 * 256, 1, -1, 1);
    tu_fill(stg_plan_data(p, n->t), 64 * 32, 2, -1, 1);
    tu_fill(stg_plan_data(p, n->w1), 256 * 128, 3, -0.1f, 0.1f);
    tu_fill(stg_plan_data(p, n->b1), 128, 4, -0.1f, 0.1f);
    tu_fill(stg_plan_data(p, n->w2), 128 * 32, 5, -0.1f, 0.1f);
    return p;
}

/* The loss and the first layer's weights after the steps, as bytes. */
typedef struct outcome {
    float loss;
    float w1[256 * 128];
} outcome;

static void record(stg_plan *p, const net *n, outcome *o)
{
    o->loss = stg_plan_loss(p);
    memcpy(o->w1, stg_plan_data(p, n->w1), sizeof o->w1);
}

static void sleep_ms(long ms)
{
    struct timespec t = {ms / 1000, ms % 1000 * 1000000};
    while (nanosleep(&t, &t) && errno == EINTR)
        ;
}

static int usable_cpus(void)
{
    cpu_set_t set;
    return sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 1;
}

static void test_policies_give_the_same_bits(void **state)
{
    (void)state;
    net n = make_net();
    static outcome want, got;
    stg_plan *p = make_plan(&n, 1, STG_WAIT_SPIN_YIELD);
    assert_non_null(p);
    for (int s = 0; s < 6; s++)
        assert_int_equal(stg_plan_step(p), STG_OK);
    record(p, &n, &want);
    stg_plan_free(p);
    assert_true(want.loss > 0);
    for (size_t k = 0; k < sizeof policies / sizeof policies[0]; k++)
        for (int threads = 1; threads <= 3; threads++) {
            if (policies[k] == STG_WAIT_SPIN && threads > usable_cpus())
                continue; /* refused: see test_spin_needs_a_cpu_per_thread */
            p = make_plan(&n, threads, policies[k]);
            assert_non_null(p);
            for (int s = 0; s < 6; s++) {
                assert_int_equal(stg_plan_step(p), STG_OK);
                /* long enough for an idle spin-yield worker to go to sleep,
                 * so the next step has to wake it */
                if (s == 2)
                    sleep_ms(10);
            }
            record(p, &n, &got);
            print_message("%s, %d thread(s): loss %.9g\n", policy_names[k], threads,
                          (double)got.loss);
            assert_memory_equal(&got, &want, sizeof got);
            stg_plan_free(p);
        }
    stg_graph_free(n.g);
}

static void test_policies_allocate_nothing(void **state)
{
    (void)state;
    if (!allochook_works()) {
        print_message("the allocator is replaced (sanitizers or valgrind): not counted\n");
        skip();
    }
    net n = make_net();
    for (size_t k = 0; k < sizeof policies / sizeof policies[0]; k++) {
        int threads = policies[k] == STG_WAIT_SPIN && usable_cpus() < 2 ? 1 : 2;
        stg_plan *p = make_plan(&n, threads, policies[k]);
        assert_non_null(p);
        assert_int_equal(stg_plan_step(p), STG_OK);
        long before = allochook_calls();
        for (int s = 0; s < 50; s++)
            assert_int_equal(stg_plan_step(p), STG_OK);
        sleep_ms(10);
        assert_int_equal(stg_plan_step(p), STG_OK);
        assert_int_equal(allochook_calls() - before, 0);
        stg_plan_free(p);
    }
    stg_graph_free(n.g);
}

static void test_unknown_policy_is_refused(void **state)
{
    (void)state;
    net n = make_net();
    stg_plan_options o;
    stg_plan_options_init(&o);
    o.threads = 2;
    o.wait = (stg_wait)7;
    stg_plan *p = (stg_plan *)&o; /* must be reset to NULL */
    assert_int_equal(stg_plan_create(n.g, n.loss, &o, &p), STG_INVALID);
    assert_null(p);
    assert_non_null(strstr(stg_plan_last_message(), "wait policy 7"));
    stg_graph_free(n.g);
}

/* Spinning threads that share a CPU wait out each other's time slices (a
 * step of 8 spinning threads on 2 CPUs took 66 ms instead of 0.2 ms), so
 * SPIN with more threads than CPUs is refused, at creation and later. */
static void test_spin_needs_a_cpu_per_thread(void **state)
{
    (void)state;
    int cpus = usable_cpus();
    net n = make_net();
    stg_plan_options o;
    stg_plan_options_init(&o);
    o.threads = cpus + 1;
    o.wait = STG_WAIT_SPIN;
    stg_plan *p = NULL;
    assert_int_equal(stg_plan_create(n.g, n.loss, &o, &p), STG_INVALID);
    assert_null(p);
    print_message("%s\n", stg_plan_last_message());
    char want[96];
    snprintf(want, sizeof want, "%d threads, %d CPUs available", cpus + 1, cpus);
    assert_non_null(strstr(stg_plan_last_message(), want));
    assert_non_null(strstr(stg_plan_last_message(), "SPIN"));

    o.wait = STG_WAIT_PASSIVE;
    assert_int_equal(stg_plan_create(n.g, n.loss, &o, &p), STG_OK);
    assert_int_equal(stg_plan_set_wait(p, STG_WAIT_SPIN), STG_INVALID);
    assert_int_equal(stg_plan_step(p), STG_OK); /* still passive, still working */
    stg_plan_free(p);

    o.threads = cpus;
    o.wait = STG_WAIT_SPIN;
    assert_int_equal(stg_plan_create(n.g, n.loss, &o, &p), STG_OK);
    stg_plan_free(p);
    stg_graph_free(n.g);
}

/* CPU time the whole process used while its calling thread slept 'ms'. */
static double cpu_ms_while_sleeping(long ms)
{
    struct timespec a, b;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &a);
    sleep_ms(ms);
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &b);
    return (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6;
}

/* An idle plan's workers: spinning ones use their core; after
 * stg_plan_set_wait(PASSIVE) they sleep; back at SPIN the plan still
 * steps to the same bits. */
static void test_set_wait_releases_the_cores(void **state)
{
    (void)state;
    net n = make_net();
    static outcome want, got;
    stg_plan *p = make_plan(&n, 1, STG_WAIT_SPIN_YIELD);
    assert_non_null(p);
    for (int s = 0; s < 4; s++)
        assert_int_equal(stg_plan_step(p), STG_OK);
    record(p, &n, &want);
    stg_plan_free(p);

    if (usable_cpus() < 2) {
        print_message("one CPU: a spinning plan of 2 threads is refused; skipped\n");
        stg_graph_free(n.g);
        skip();
    }
    p = make_plan(&n, 2, STG_WAIT_SPIN);
    assert_non_null(p);
    assert_int_equal(stg_plan_step(p), STG_OK);
    assert_int_equal(stg_plan_step(p), STG_OK);
    double spinning = cpu_ms_while_sleeping(100);
    assert_int_equal(stg_plan_set_wait(p, STG_WAIT_PASSIVE), STG_OK);
    sleep_ms(5);
    double resting = cpu_ms_while_sleeping(100);
    print_message("CPU time while the caller slept 100 ms: %.1f ms spinning, %.1f ms after "
                  "set_wait(PASSIVE)\n", spinning, resting);
    assert_true(spinning > 20); /* a worker spins on a core the caller left free */
    assert_true(resting < 10);
    assert_int_equal(stg_plan_set_wait(p, STG_WAIT_SPIN), STG_OK);
    assert_int_equal(stg_plan_step(p), STG_OK);
    assert_int_equal(stg_plan_step(p), STG_OK);
    record(p, &n, &got);
    assert_memory_equal(&got, &want, sizeof got);

    assert_int_equal(stg_plan_set_wait(p, (stg_wait)-1), STG_INVALID);
    assert_int_equal(stg_plan_set_wait(p, (stg_wait)3), STG_INVALID);
    assert_int_equal(stg_plan_set_wait(NULL, STG_WAIT_SPIN), STG_INVALID);
    stg_plan_free(p);
    stg_graph_free(n.g);
}

/* What worker_start saw, per worker. */
typedef struct started {
    int calls[8];
    bool other_thread[8], faults_open[8], int_blocked[8];
    pthread_t caller;
} started;

static void on_worker_start(int worker, void *arg)
{
    started *st = arg;
    if (worker < 0 || worker >= 8)
        return;
    st->calls[worker]++;
    st->other_thread[worker] = !pthread_equal(pthread_self(), st->caller);
    sigset_t cur;
    pthread_sigmask(SIG_BLOCK, NULL, &cur);
    st->faults_open[worker] = !sigismember(&cur, SIGSEGV) && !sigismember(&cur, SIGFPE) &&
                              !sigismember(&cur, SIGBUS) && !sigismember(&cur, SIGILL);
    st->int_blocked[worker] = sigismember(&cur, SIGINT) && sigismember(&cur, SIGTERM);
}

/* Each worker calls worker_start once, on its own thread, before plan
 * creation returns; workers block the caller's signals but not the faults
 * a kernel may raise. */
static void test_worker_start(void **state)
{
    (void)state;
    net n = make_net();
    static started st;
    memset(&st, 0, sizeof st);
    st.caller = pthread_self();
    stg_plan_options o;
    stg_plan_options_init(&o);
    o.threads = 3;
    o.worker_start = on_worker_start;
    o.worker_arg = &st;
    stg_plan *p = NULL;
    assert_int_equal(stg_plan_create(n.g, n.loss, &o, &p), STG_OK);
    assert_int_equal(st.calls[0], 0);
    for (int w = 1; w < 3; w++) {
        assert_int_equal(st.calls[w], 1);
        assert_true(st.other_thread[w]);
        assert_true(st.faults_open[w]);
        assert_true(st.int_blocked[w]);
    }
    assert_int_equal(stg_plan_step(p), STG_OK);
    assert_int_equal(st.calls[1] + st.calls[2], 2); /* once, not per step */
    stg_plan_free(p);
    stg_graph_free(n.g);
}

#ifdef __linux__
/* A child after fork: a plan with workers (they stayed in the parent)
 * refuses to step instead of waiting for them forever, and frees without
 * joining them; a one-thread plan and a plan the child makes itself work. */
static void test_fork_child_refuses_parent_workers(void **state)
{
    (void)state;
    net n = make_net();
    stg_plan *two = make_plan(&n, 2, STG_WAIT_SPIN_YIELD), *one = make_plan(&n, 1, 0);
    assert_non_null(two);
    assert_non_null(one);
    assert_int_equal(stg_plan_step(two), STG_OK);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int code = 0;
        if (stg_plan_step(two) != STG_INVALID || !strstr(stg_plan_message(two), "fork"))
            code = 3;
        else if (stg_plan_step(one) != STG_OK)
            code = 4;
        stg_plan_free(two);
        stg_plan_free(one);
        stg_plan *fresh = make_plan(&n, 2, STG_WAIT_PASSIVE);
        if (!code && (!fresh || stg_plan_step(fresh) != STG_OK))
            code = 5;
        stg_plan_free(fresh);
        _exit(code);
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    assert_int_equal(stg_plan_step(two), STG_OK); /* the parent's plan is untouched */
    stg_plan_free(two);
    stg_plan_free(one);
    stg_graph_free(n.g);
}
#else
static void test_fork_child_refuses_parent_workers(void **state)
{
    (void)state;
    print_message("fork is tested on Linux: skipped\n");
    skip();
}
#endif

#if defined(__linux__) && (defined(__x86_64__) || defined(__aarch64__))
#if defined(__x86_64__)
#define THIS_AUDIT_ARCH AUDIT_ARCH_X86_64
#else
#define THIS_AUDIT_ARCH AUDIT_ARCH_AARCH64
#endif

/* From now on, for every thread of the process: any system call but
 * exit_group kills the process with SIGSYS.  Returns false (errno set) if
 * the kernel refuses the filter. */
static bool forbid_system_calls(void)
{
    struct sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, THIS_AUDIT_ARCH, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_exit_group, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
    };
    struct sock_fprog prog = {sizeof code / sizeof code[0], code};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
        return false;
    return syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &prog) == 0;
}

/* Exit codes of the child, besides 0 (all steps ran, no system call). */
enum { CHILD_NO_PLAN = 3, CHILD_NO_FILTER = 4, CHILD_STEP_FAILED = 5, CHILD_CONTROL_LIVED = 6 };

/* In a child: a plan of 'threads' threads waiting by 'wait', two warm-up
 * steps, then the filter and 'steps' steps and a forward pass.  With
 * 'control', a getpid() after the filter shows that the filter kills. */
static int in_child(int threads, stg_wait wait, int steps, bool control)
{
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    net n = make_net();
    stg_plan *p = make_plan(&n, threads, wait);
    if (!p)
        syscall(SYS_exit_group, CHILD_NO_PLAN);
    stg_plan_step(p);
    stg_plan_step(p);
    if (!forbid_system_calls())
        syscall(SYS_exit_group, CHILD_NO_FILTER);
    if (control) {
        (void)syscall(SYS_getpid);
        syscall(SYS_exit_group, CHILD_CONTROL_LIVED);
    }
    int bad = 0;
    for (int s = 0; s < steps; s++)
        bad |= stg_plan_step(p) != STG_OK;
    bad |= stg_plan_forward(p) != STG_OK;
    bad |= !(stg_plan_loss(p) > 0);
    syscall(SYS_exit_group, bad ? CHILD_STEP_FAILED : 0);
    return -1; /* not reached */
}

static int child_status(pid_t pid)
{
    assert_true(pid > 0);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    return st;
}

static bool under_valgrind(void)
{
    const char *pre = getenv("LD_PRELOAD");
    return pre && strstr(pre, "vgpreload");
}

static void test_spin_step_makes_no_system_call(void **state)
{
    (void)state;
    if (under_valgrind()) {
        print_message("valgrind carries out the program's system calls itself: skipped\n");
        skip();
    }
#if defined(__SANITIZE_THREAD__)
    print_message("ThreadSanitizer's runtime makes system calls of its own: skipped\n");
    skip();
#endif
    fflush(NULL); /* nothing buffered for the child to write twice */
    /* the control: the same child dies of SIGSYS at its first system call */
    int st = child_status(in_child(1, STG_WAIT_SPIN, 0, true));
    if (WIFEXITED(st) && WEXITSTATUS(st) == CHILD_NO_FILTER) {
        print_message("this kernel refuses seccomp filters: skipped\n");
        skip();
    }
    assert_true(WIFSIGNALED(st));
    assert_int_equal(WTERMSIG(st), SIGSYS);
    for (int threads = 1; threads <= 2; threads++) {
        if (threads > usable_cpus()) {
            print_message("spin, %d threads: more than this process's CPUs; skipped\n", threads);
            continue;
        }
        st = child_status(in_child(threads, STG_WAIT_SPIN, 200, false));
        print_message("spin, %d thread(s), 200 steps + 1 forward under the filter: %s %d\n",
                      threads, WIFSIGNALED(st) ? "killed by signal" : "exit status",
                      WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
        assert_true(WIFEXITED(st));
        assert_int_equal(WEXITSTATUS(st), 0);
    }
}
#else
static void test_spin_step_makes_no_system_call(void **state)
{
    (void)state;
    print_message("seccomp filters are tested on Linux x86-64 and arm64 only: skipped\n");
    skip();
}
#endif

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_policies_give_the_same_bits),
        cmocka_unit_test(test_policies_allocate_nothing),
        cmocka_unit_test(test_unknown_policy_is_refused),
        cmocka_unit_test(test_spin_needs_a_cpu_per_thread),
        cmocka_unit_test(test_set_wait_releases_the_cores),
        cmocka_unit_test(test_worker_start),
        cmocka_unit_test(test_fork_child_refuses_parent_workers),
        cmocka_unit_test(test_spin_step_makes_no_system_call),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
