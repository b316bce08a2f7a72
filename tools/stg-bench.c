/*
 * stg-bench: the BENCH.md cases, timed.  Every matmul case forward and
 * forward + backward, and the mlp training step at each batch size, at each
 * thread count; in the same rounds the same products called directly through
 * BLIS, and the machine's FMA peak, so each figure comes with the two
 * yardsticks it should be judged by.  Rounds interleave every configuration,
 * as BENCH.md asks on machines whose speed drifts.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "blis_baseline.h"
#include "cli.h"
#include "machine_peak.h"
#include "models.h"
#include "stgrad.h"

enum { MAX_LIST = 16, MAX_CONFIGS = 256, MAX_SAMPLES = 1 << 17, MAX_ROUNDS = 100 };

typedef enum { MODE_FWD, MODE_FWDBWD, MODE_STEP } bench_mode;
static const char *const mode_names[] = {"fwd", "fwd+bwd", "step"};

/* One timed configuration and what its rounds measured. */
typedef struct config {
    const matmul_case *mc; /* NULL for the training steps */
    const model_step *ms;  /* a model's step (lenet, lstm, charlm) rather than the mlp's */
    bench_mode mode;
    int batch, threads;
    stg_guard guard;           /* what a step checks (--guard-loss) */
    stg_wait wait;             /* how the threads wait (--wait) */
    double flops, bytes, peak; /* peak: the FMA peak at its thread count */
    stg_plan *plan;
    blis_job *blis;
    double med[MAX_ROUNDS], p10[MAX_ROUNDS], p99[MAX_ROUNDS], blis_med[MAX_ROUNDS];
} config;

typedef struct latency {
    int threads;
    double p50, p99, max;
} latency;

static double now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec * 1e-3;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double quantile(double *v, int n, double q)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return v[(int)(q * (n - 1) + 0.5)];
}

static void usage(FILE *f)
{
    int n;
    const matmul_case *mc = matmul_cases(&n);
    fprintf(f, "usage: stg-bench [options]\n"
               "  --cases LIST      cases to run (default: all):");
    for (int i = 0; i < n; i++)
        fprintf(f, " %s", mc[i].name);
    fprintf(f,
            " mlp lenet lstm charlm\n"
            "  --modes LIST      matmul modes: fwd,fwd+bwd (default both)\n"
            "  --batches LIST    mlp batch sizes (default 1,16,64,256)\n"
            "  --threads LIST    thread counts (default 1,2)\n"
            "  --rounds N        rounds; each runs every configuration once (default 3)\n"
            "  --min-time S      seconds each configuration runs per round (default 0.2)\n"
            "  --latency N       also time N mlp steps at batch 64 per thread count and\n"
            "                    print p50/p99/max (BENCH.md asks for 10000)\n"
            "  --no-blis         skip the BLIS-alone baseline\n"
            "  --guard-loss      training steps check the loss alone, not the gradients\n"
            "                    (stg_plan_options.guard; for the cost of the check)\n"
            "  --wait POLICY     how threads wait: yield (default), spin or passive\n"
            "                    (stg_plan_options.wait)\n"
            "  --json FILE       also write the results as JSON (written atomically)\n"
            "  --steps-only CASE run exactly --steps N steps of one case (with --mode,\n"
            "                    --batch, --threads, --warmup) and print nothing else:\n"
            "                    for instruction counting under valgrind\n"
            "  --help            this text\n"
            "Times are per step in microseconds: the median over rounds of each round's\n"
            "median, the best p10, the median p99.  blis/stg is the BLIS-alone time over\n"
            "stgrad's (1 = as fast as BLIS alone, higher is faster); step/gemm is the mlp\n"
            "step's time over its products' time in BLIS alone.\n");
}

/* A usage error: the message, a pointer to --help, status 2. */
__attribute__((format(printf, 1, 2), noreturn)) static void die_usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "stg-bench: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (see stg-bench --help)\n");
    va_end(ap);
    exit(2);
}

/* "1,16,64" into out[]; exits on anything else. */
static int number_list(const char *opt, const char *v, int *out, long lo, long hi)
{
    int n = 0;
    char buf[256];
    if (!v || strlen(v) >= sizeof buf)
        die_usage("%s needs a comma-separated list", opt);
    strcpy(buf, v);
    for (char *s = strtok(buf, ","); s; s = strtok(NULL, ",")) {
        if (n == MAX_LIST)
            die_usage("%s: too many values in '%s'", opt, v);
        out[n++] = (int)cli_number("stg-bench", opt, s, lo, hi);
    }
    if (n == 0)
        die_usage("%s needs a comma-separated list", opt);
    return n;
}

/* One step of a configuration's plan. */
static stg_status run_step(const config *c)
{
    return c->mode == MODE_FWD ? stg_plan_forward(c->plan) : stg_plan_step(c->plan);
}

/* The BENCH.md mlp at this batch size. */
static mlp_spec bench_mlp(int batch)
{
    mlp_spec spec;
    char err[256];
    mlp_parse("784,512,256,10", &spec, err, sizeof err);
    spec.batch = batch;
    return spec;
}

static const char *case_name(const config *c)
{
    return c->mc ? c->mc->name : c->ms ? c->ms->name : "mlp";
}

static stg_plan *build_plan(config *c)
{
    char err[512];
    stg_plan_options o;
    stg_plan_options_init(&o);
    o.threads = c->threads;
    o.guard = c->guard;
    o.wait = c->wait;
    stg_plan *p;
    if (c->mc) {
        p = matmul_plan(c->mc, c->mode == MODE_FWDBWD, &o, err, sizeof err);
    } else if (c->ms) {
        p = c->ms->plan(c->batch, &o, err, sizeof err);
    } else {
        mlp_spec spec = bench_mlp(c->batch);
        p = mlp_plan(&spec, &o, err, sizeof err);
    }
    if (!p)
        fprintf(stderr, "stg-bench: %s: %s\n", case_name(c), err);
    return p;
}

/* Times 'step' until min_us has passed (at least 5 runs) after a short
 * warm-up; the per-run times go to t[], their count is returned. */
static int time_runs(const config *c, bool blis, double min_us, double *t)
{
    int n = 0;
    double start = now_us();
    for (int i = 0; i < 3 || now_us() - start < min_us / 10; i++) {
        if (blis)
            blis_job_run(c->blis, c->threads);
        else if (run_step(c) != STG_OK)
            return -1;
    }
    start = now_us();
    while (n < MAX_SAMPLES && (n < 5 || now_us() - start < min_us)) {
        double t0 = now_us();
        if (blis)
            blis_job_run(c->blis, c->threads);
        else if (run_step(c) != STG_OK)
            return -1;
        t[n++] = now_us() - t0;
    }
    return n;
}

static double median_of(const double *v, int n)
{
    double tmp[MAX_ROUNDS];
    memcpy(tmp, v, sizeof(double) * (size_t)n);
    return quantile(tmp, n, 0.5);
}

static double min_of(const double *v, int n)
{
    double m = v[0];
    for (int i = 1; i < n; i++)
        m = v[i] < m ? v[i] : m;
    return m;
}

/* The same case at one thread, for the scaling column. */
static const config *one_thread(const config *cs, int n, const config *c)
{
    for (int i = 0; i < n; i++)
        if (cs[i].threads == 1 && cs[i].mc == c->mc && cs[i].mode == c->mode &&
            cs[i].batch == c->batch && cs[i].ms == c->ms)
            return &cs[i];
    return NULL;
}

static void print_tables(const config *cs, int n, int rounds, bool blis)
{
    for (int pass = 0; pass < 2; pass++) {
        bool header = false;
        for (int i = 0; i < n; i++) {
            const config *c = &cs[i];
            if ((pass == 0) != (c->mc != NULL))
                continue;
            if (!header) {
                printf("\n%-15s %-7s %5s %3s %10s %10s %8s %6s %7s %10s %9s %6s\n",
                       pass == 0 ? "matmul" : "training step", "mode", "batch", "thr", "median_us",
                       "p99_us", "GFLOP/s", "%peak", "GB/s", blis ? "blis_us" : "",
                       blis ? (pass == 0 ? "blis/stg" : "step/gemm") : "", "vs_1t");
                header = true;
            }
            double med = median_of(c->med, rounds), p99 = median_of(c->p99, rounds);
            double gf = c->flops / med * 1e-3;
            char batch[16] = "-", bl[32] = "", ratio[32] = "", vs1[32] = "", gbs[32] = "-";
            if (!c->mc)
                snprintf(batch, sizeof batch, "%d", c->batch);
            else
                snprintf(gbs, sizeof gbs, "%.1f", c->bytes / med * 1e-3);
            if (blis && c->blis) {
                double b = median_of(c->blis_med, rounds);
                snprintf(bl, sizeof bl, "%.1f", b);
                snprintf(ratio, sizeof ratio, "%.3f", c->mc ? b / med : med / b);
            }
            const config *o = one_thread(cs, n, c);
            if (o && o != c)
                snprintf(vs1, sizeof vs1, "%.2fx", median_of(o->med, rounds) / med);
            printf("%-15s %-7s %5s %3d %10.1f %10.1f %8.2f %5.1f%% %7s %10s %9s %6s\n",
                   case_name(c), mode_names[c->mode], batch, c->threads, med, p99, gf,
                   c->peak > 0 ? 100 * gf / c->peak : 0.0, gbs, bl, ratio, vs1);
        }
    }
}

/* 's' as a JSON string: quoted, with quotes, backslashes and control
 * characters escaped. */
static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fprintf(f, "\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            fprintf(f, "\\u%04x", (unsigned)(unsigned char)*s);
        else
            fputc(*s, f);
    }
    fputc('"', f);
}

static bool write_json(const char *path, const stg_gemm_info *gemm, const config *cs, int n,
                       int rounds, const double *peak, const int *threads, int nthreads, bool blis,
                       const latency *lat, int nlat)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp) {
        errno = ENAMETOOLONG;
        return false;
    }
    FILE *f = fopen(tmp, "w");
    if (!f)
        return false;
    fprintf(f, "{\"tool\": \"stg-bench\", \"gemm_kernel\": \"%s\", \"gemm\": ", gemm->name);
    json_string(f, gemm->why);
    fprintf(f, ", \"threads\": [");
    for (int t = 0; t < nthreads; t++)
        fprintf(f, "%s%d", t ? ", " : "", threads[t]);
    fprintf(f, "], \"rounds\": %d,\n \"peak_gflops\": {", rounds);
    for (int t = 0; t < nthreads; t++)
        fprintf(f, "%s\"%d\": %.2f", t ? ", " : "", threads[t], peak[t]);
    fprintf(f, "},\n \"results\": [");
    for (int i = 0; i < n; i++) {
        const config *c = &cs[i];
        double med = median_of(c->med, rounds);
        char batch[16] = "null", gbs[32] = "null"; /* what a matmul or a step does not have */
        if (c->mc)
            snprintf(gbs, sizeof gbs, "%.3f", c->bytes / med * 1e-3);
        else
            snprintf(batch, sizeof batch, "%d", c->batch);
        fprintf(f,
                "%s\n  {\"case\": \"%s\", \"mode\": \"%s\", \"batch\": %s, \"threads\": %d, "
                "\"flops\": %.0f, \"median_us\": %.3f, \"p10_us\": %.3f, \"p99_us\": %.3f, "
                "\"gflops\": %.3f, \"peak_share\": %.4f, \"gbs\": %s, ",
                i ? "," : "", case_name(c), mode_names[c->mode], batch, c->threads, c->flops,
                med, min_of(c->p10, rounds), median_of(c->p99, rounds), c->flops / med * 1e-3,
                c->peak > 0 ? c->flops / med * 1e-3 / c->peak : 0.0, gbs);
        if (blis && c->blis) {
            double b = median_of(c->blis_med, rounds);
            fprintf(f, "\"blis_us\": %.3f, \"%s\": %.4f}", b, c->mc ? "blis_ratio" : "overhead",
                    c->mc ? b / med : med / b);
        } else {
            fprintf(f, "\"blis_us\": null, \"%s\": null}", c->mc ? "blis_ratio" : "overhead");
        }
    }
    fprintf(f, "\n ],\n \"latency\": [");
    for (int i = 0; i < nlat; i++)
        fprintf(f,
                "%s\n  {\"case\": \"mlp\", \"batch\": 64, \"threads\": %d, \"p50_us\": %.3f, "
                "\"p99_us\": %.3f, \"max_us\": %.3f}",
                i ? "," : "", lat[i].threads, lat[i].p50, lat[i].p99, lat[i].max);
    fprintf(f, "%s]}\n", nlat ? "\n " : "");
    bool ok = fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        remove(tmp);
        return false;
    }
    return true;
}

/* --steps-only: N steps and nothing else, so that an instruction counter
 * sees only the plan's work. */
static int steps_only(config *c, long warmup, long steps)
{
    c->plan = build_plan(c);
    if (!c->plan)
        return 1;
    for (long i = 0; i < warmup + steps; i++)
        if (run_step(c) != STG_OK) {
            fprintf(stderr, "stg-bench: %s\n", stg_plan_message(c->plan));
            return 1;
        }
    stg_plan_free(c->plan);
    return 0;
}

int main(int argc, char **argv)
{
    static config cs[MAX_CONFIGS];
    int ncases = 0, nmc;
    const matmul_case *mcs = matmul_cases(&nmc);
    const char *cases[32], *json = NULL, *only = NULL;
    int batches[MAX_LIST] = {1, 16, 64, 256}, nbatches = 4, threads[MAX_LIST] = {1, 2};
    int nthreads = 2, rounds = 3;
    bool modes[2] = {true, true}, blis = true, one_batch_set = false,
         one_mode_set = false;
    double min_time = 0.2;
    long lat_steps = 0, steps = 0, warmup = 0, one_batch = 64;
    stg_guard guard = STG_GUARD_GRADIENTS;
    stg_wait wait = STG_WAIT_SPIN_YIELD;
    bench_mode one_mode = MODE_FWDBWD;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(o, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(o, "--no-blis")) {
            blis = false;
            continue;
        } else if (!strcmp(o, "--guard-loss")) {
            guard = STG_GUARD_LOSS;
            continue;
        }
        static const char *const valued[] = {"--cases", "--modes", "--batches", "--threads",
                                             "--rounds", "--min-time", "--latency", "--json",
                                             "--steps-only", "--steps", "--warmup", "--batch",
                                             "--mode", "--wait"};
        bool known = false;
        for (size_t k = 0; k < sizeof valued / sizeof valued[0]; k++)
            known |= !strcmp(o, valued[k]);
        if (!known)
            die_usage("unknown option '%s'", o);
        if (!v || !strncmp(v, "--", 2))
            die_usage("%s needs a value", o);
        i++;
        if (!strcmp(o, "--cases")) {
            static char buf[1024];
            if (strlen(v) >= sizeof buf)
                die_usage("--cases: list too long");
            strcpy(buf, v);
            ncases = 0;
            for (char *s = strtok(buf, ","); s; s = strtok(NULL, ",")) {
                if (strcmp(s, "mlp") && !model_step_find(s) && !matmul_case_find(s))
                    die_usage("unknown case '%s'", s);
                if (ncases == 32)
                    die_usage("--cases: too many cases");
                cases[ncases++] = s;
            }
            if (ncases == 0)
                die_usage("--cases needs a comma-separated list of cases");
        } else if (!strcmp(o, "--modes")) {
            modes[0] = modes[1] = false;
            char buf[64];
            if (strlen(v) >= sizeof buf)
                die_usage("--modes: expected fwd, fwd+bwd or both (got '%s')", v);
            strcpy(buf, v);
            for (char *s = strtok(buf, ","); s; s = strtok(NULL, ","))
                if (!strcmp(s, "fwd"))
                    modes[0] = true;
                else if (!strcmp(s, "fwd+bwd"))
                    modes[1] = true;
                else
                    die_usage("--modes: expected fwd, fwd+bwd or both (got '%s')", v);
        } else if (!strcmp(o, "--batches")) {
            nbatches = number_list(o, v, batches, 1, 100000);
        } else if (!strcmp(o, "--threads")) {
            nthreads = number_list(o, v, threads, 1, 1024);
        } else if (!strcmp(o, "--rounds")) {
            rounds = (int)cli_number("stg-bench", o, v, 1, MAX_ROUNDS);
        } else if (!strcmp(o, "--min-time")) {
            char *end;
            min_time = strtod(v, &end);
            if (end == v || *end || !(min_time > 0 && min_time <= 600))
                die_usage("--min-time needs seconds from 0 to 600 (got '%s')", v);
        } else if (!strcmp(o, "--latency")) {
            lat_steps = cli_number("stg-bench", o, v, 1, 10000000);
        } else if (!strcmp(o, "--json")) {
            json = v;
        } else if (!strcmp(o, "--steps-only")) {
            if (strcmp(v, "mlp") && !matmul_case_find(v))
                die_usage("--steps-only: unknown case '%s'", v);
            only = v;
        } else if (!strcmp(o, "--steps")) {
            steps = cli_number("stg-bench", o, v, 1, 100000000);
        } else if (!strcmp(o, "--warmup")) {
            warmup = cli_number("stg-bench", o, v, 0, 100000000);
        } else if (!strcmp(o, "--batch")) {
            one_batch = cli_number("stg-bench", o, v, 1, 100000);
            one_batch_set = true;
        } else if (!strcmp(o, "--wait")) {
            if (!cli_wait(v, &wait))
                die_usage("--wait: expected yield, spin or passive (got '%s')", v);
        } else if (!strcmp(o, "--mode")) {
            if (strcmp(v, "fwd") && strcmp(v, "fwd+bwd"))
                die_usage("--mode: expected fwd or fwd+bwd (got '%s')", v);
            one_mode = strcmp(v, "fwd") ? MODE_FWDBWD : MODE_FWD;
            one_mode_set = true;
        }
    }
    if (!only && (steps || warmup || one_batch_set || one_mode_set))
        die_usage("--steps, --warmup, --batch and --mode go with --steps-only");
    if (only) {
        if (!steps)
            die_usage("--steps-only needs --steps N");
        config c = {.mc = matmul_case_find(only),
                    .mode = strcmp(only, "mlp") ? one_mode : MODE_STEP,
                    .batch = (int)one_batch,
                    .threads = threads[0],
                    .guard = guard,
                    .wait = wait};
        return steps_only(&c, warmup, steps);
    }
    if (!modes[0] && !modes[1])
        die_usage("--modes: nothing to run");

    /* the configurations, in the order of BENCH.md */
    int n = 0;
    int nms;
    const model_step *mss = model_steps(&nms);
    for (int k = 0; k < nmc + 1 + nms; k++) {
        const char *name = k < nmc ? mcs[k].name : k == nmc ? "mlp" : mss[k - nmc - 1].name;
        bool wanted = ncases == 0;
        for (int i = 0; i < ncases; i++)
            wanted |= !strcmp(cases[i], name);
        if (!wanted)
            continue;
        for (int t = 0; t < nthreads; t++) {
            int variants = k < nmc ? 2 : k == nmc ? nbatches : 1;
            for (int v = 0; v < variants; v++) {
                if (k < nmc && !modes[v])
                    continue;
                if (n == MAX_CONFIGS)
                    die_usage("too many configurations");
                config *c = &cs[n++];
                c->threads = threads[t];
                c->guard = guard;
                c->wait = wait;
                if (k < nmc) {
                    const matmul_case *mc = &mcs[k];
                    c->mc = mc;
                    c->mode = v ? MODE_FWDBWD : MODE_FWD;
                    c->flops = matmul_case_flops(mc, v == 1);
                    c->bytes = matmul_case_bytes(mc, v == 1);
                } else if (k > nmc) { /* BENCH.md's model steps, at their batch */
                    c->ms = &mss[k - nmc - 1];
                    c->mode = MODE_STEP;
                    c->batch = c->ms->batch;
                    c->flops = c->ms->flops(c->batch);
                } else {
                    mlp_spec spec = bench_mlp(batches[v]);
                    c->mode = MODE_STEP;
                    c->batch = batches[v];
                    c->flops = mlp_flops(&spec);
                }
            }
        }
    }

    double peak[MAX_LIST];
    stg_gemm_info gemm;
    if (blis && !blis_baseline_available()) {
        printf("stg-bench: this build has no BLIS: no BLIS-alone baseline\n");
        blis = false;
    }
    printf("stg-bench: %d round%s, %.2f s per configuration per round\n", rounds,
           rounds > 1 ? "s" : "", min_time);
    for (int t = 0; t < nthreads; t++) {
        peak[t] = fma_peak_gflops(threads[t]);
        printf("machine, %d thread%s: FMA peak %.1f GFLOP/s; read bandwidth %.1f GB/s from an "
               "8 MiB array (cache), %.1f GB/s from 256 MiB (memory)\n",
               threads[t], threads[t] > 1 ? "s" : "", peak[t],
               read_bandwidth_gbs((size_t)8 << 20, threads[t]),
               read_bandwidth_gbs((size_t)256 << 20, threads[t]));
    }
    for (int i = 0; i < n; i++)
        for (int t = 0; t < nthreads; t++)
            if (threads[t] == cs[i].threads)
                cs[i].peak = peak[t];
    fflush(stdout);

    for (int i = 0; i < n; i++) {
        cs[i].plan = build_plan(&cs[i]);
        if (!cs[i].plan)
            return 1;
        if (i == 0) { /* every plan of a process gets the same kernel */
            stg_plan_gemm_info(cs[0].plan, &gemm);
            printf("%s\n", gemm.why);
            fflush(stdout);
        }
        /* no BLIS-alone baseline for the model steps; a convolution's is its GEMMs alone */
        if (blis && !cs[i].ms) {
            if (cs[i].mc) {
                cs[i].blis = blis_matmul_job(cs[i].mc, cs[i].mode == MODE_FWDBWD);
            } else {
                mlp_spec spec = bench_mlp(cs[i].batch);
                cs[i].blis = blis_mlp_job(&spec);
            }
            if (!cs[i].blis) {
                fprintf(stderr, "stg-bench: out of memory for the BLIS baseline\n");
                return 1;
            }
        }
    }
    double *t = malloc(sizeof(double) * MAX_SAMPLES);
    if (!t) {
        fprintf(stderr, "stg-bench: out of memory\n");
        return 1;
    }
    for (int r = 0; r < rounds; r++) {
        for (int i = 0; i < n; i++) {
            config *c = &cs[i];
            int k = time_runs(c, false, min_time * 1e6, t);
            if (k < 0) {
                fprintf(stderr, "stg-bench: %s: %s\n", case_name(c), stg_plan_message(c->plan));
                return 1;
            }
            c->med[r] = quantile(t, k, 0.5);
            c->p10[r] = quantile(t, k, 0.1);
            c->p99[r] = quantile(t, k, 0.99);
            if (c->blis) {
                k = time_runs(c, true, min_time * 1e6, t);
                c->blis_med[r] = quantile(t, k, 0.5);
            }
        }
        fprintf(stderr, "stg-bench: round %d of %d done\n", r + 1, rounds);
    }
    print_tables(cs, n, rounds, blis);

    latency lat[MAX_LIST];
    int nlat = 0;
    if (lat_steps) {
        double *l = malloc(sizeof(double) * (size_t)lat_steps);
        if (!l) {
            fprintf(stderr, "stg-bench: out of memory\n");
            return 1;
        }
        printf("\nstep latency, mlp batch 64, %ld steps after 100 of warm-up:\n", lat_steps);
        for (int ti = 0; ti < nthreads; ti++) {
            config c = {.mode = MODE_STEP, .batch = 64, .threads = threads[ti], .guard = guard,
                        .wait = wait};
            c.plan = build_plan(&c);
            if (!c.plan)
                return 1;
            for (int i = 0; i < 100; i++)
                stg_plan_step(c.plan);
            for (long i = 0; i < lat_steps; i++) {
                double t0 = now_us();
                if (stg_plan_step(c.plan) != STG_OK) {
                    fprintf(stderr, "stg-bench: mlp: %s\n", stg_plan_message(c.plan));
                    return 1;
                }
                l[i] = now_us() - t0;
            }
            latency *x = &lat[nlat++];
            x->threads = threads[ti];
            x->p50 = quantile(l, (int)lat_steps, 0.5);
            x->p99 = quantile(l, (int)lat_steps, 0.99);
            x->max = l[lat_steps - 1];
            printf("  %d thread%s: p50 %.1f us, p99 %.1f us, max %.1f us, p99/p50 %.2f\n",
                   x->threads, x->threads > 1 ? "s" : " ", x->p50, x->p99, x->max,
                   x->p99 / x->p50);
            stg_plan_free(c.plan);
        }
        free(l);
    }
    int rc = 0;
    if (json && !write_json(json, &gemm, cs, n, rounds, peak, threads, nthreads, blis, lat, nlat)) {
        fprintf(stderr, "stg-bench: cannot write '%s': %s\n", json, strerror(errno));
        rc = 1;
    }
    for (int i = 0; i < n; i++) {
        stg_plan_free(cs[i].plan);
        blis_job_free(cs[i].blis);
    }
    free(t);
    return rc;
}
