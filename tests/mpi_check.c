/*
 * mpi_check: the data-parallel checks that need real processes, run by
 * tests/test_mpi.sh under mpirun.  Every process trains the tiny model on
 * its share of each global batch through libstgrad-mpi; then
 *
 *   - every process holds the same parameter bits as rank 0;
 *   - a second run from the start gives the same bits again;
 *   - rank 0's parameters are within rounding of one process training on
 *     the whole batch (a plan without the hook, on rank 0);
 *   - a step given a NaN on one rank or a bad label on another fails on
 *     every rank (STG_NUMERIC or STG_INDEX where it happened, STG_PEER
 *     elsewhere) and changes no parameter anywhere;
 *   - stgrad allocates nothing in a step outside the hook's calls (what
 *     Open MPI allocates inside them is counted and printed).
 *
 *   mpi_check [--steps N] [--from S] [--save F] [--resume F] [--out F]
 *             [--expect F --tol T] [--faults]
 *
 * --out writes rank 0's parameters; --expect compares them with a file
 * written before (T = 0: bitwise).  Exit status 0 when every check holds.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "allochook.h"
#include "stgrad_mpi.h"
#include "tiny_model.h"

static int rank, size, failures;

#define CHECK(cond, ...)                                                                      \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            fprintf(stderr, "mpi_check rank %d: ", rank);                                     \
            fprintf(stderr, __VA_ARGS__);                                                     \
            fputc('\n', stderr);                                                              \
            failures++;                                                                       \
        }                                                                                     \
    } while (0)

/* The hook, wrapped to count the allocations made inside its calls. */
static stg_collective inner;
static long inside;

static int counted_start(void *ctx, int b, float *data, int64_t n)
{
    long before = allochook_calls();
    int e = inner.start_sum(ctx, b, data, n);
    inside += allochook_calls() - before;
    return e;
}

static int counted_wait(void *ctx, int b)
{
    long before = allochook_calls();
    int e = inner.wait_sum(ctx, b);
    inside += allochook_calls() - before;
    return e;
}

typedef struct run_opts {
    int from, steps;
    const char *save, *resume;
    int bad_step, bad_rank, label_step, label_rank;
} run_opts;

/* Trains steps [from, from + steps) on this process's share; params out. */
static void train(stg_mpi *mpi, const run_opts *r, float *params, long *outside)
{
    stg_collective hook;
    stg_mpi_hook(mpi, &hook);
    inner = hook;
    hook.start_sum = counted_start;
    hook.wait_sum = counted_wait;
    model m = build(GLOBAL / size);
    stg_plan_options o;
    options(&o, &hook);
    stg_plan *p = NULL;
    CHECK(stg_graph_status(m.g) == STG_OK, "graph: %s", stg_graph_message(m.g));
    stg_status s = stg_plan_create(m.g, m.loss, &o, &p);
    if (s != STG_OK) {
        fprintf(stderr, "mpi_check rank %d: plan: %s\n", rank, stg_plan_last_message());
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    CHECK(init_params(p, &m) == STG_OK, "init");
    CHECK(stg_mpi_prepare(mpi, p) == STG_OK, "stg_mpi_prepare");
    if (r->resume)
        CHECK(stg_plan_load(p, r->resume) == STG_OK, "resume: %s", stg_plan_message(p));
    float before[NPARAM_FLOATS], after[NPARAM_FLOATS];
    long calls = 0;
    inside = 0;
    for (int st = r->from; st < r->from + r->steps; st++) {
        load_share(p, &m, st, rank, size);
        if (st == r->bad_step && rank == r->bad_rank)
            stg_plan_data(p, m.x)[1] = NAN;
        if (st == r->label_step && rank == r->label_rank)
            stg_plan_data_i32(p, m.y)[0] = OUT + 2;
        params_of(p, &m, before);
        long c0 = allochook_calls();
        s = stg_plan_step(p);
        calls += allochook_calls() - c0;
        params_of(p, &m, after);
        stg_status want = STG_OK;
        int culprit = -1;
        if (st == r->bad_step)
            want = rank == r->bad_rank ? STG_NUMERIC : STG_PEER, culprit = r->bad_rank;
        if (st == r->label_step)
            want = rank == r->label_rank ? STG_INDEX : STG_PEER, culprit = r->label_rank;
        if (size == 1 && want == STG_PEER)
            want = STG_OK;
        CHECK(s == want, "step %d: %s (%s), expected %s", st, stg_status_name(s),
              stg_plan_message(p), stg_status_name(want));
        if (s == STG_PEER) {
            char who[32];
            snprintf(who, sizeof who, "rank %d", culprit);
            CHECK(strstr(stg_plan_message(p), who) != NULL, "step %d: '%s' does not name %s", st,
                  stg_plan_message(p), who);
        }
        if (s != STG_OK)
            CHECK(!memcmp(before, after, sizeof before), "step %d failed and changed parameters",
                  st);
    }
    *outside = calls - inside;
    params_of(p, &m, params);
    if (r->save && rank == 0)
        CHECK(stg_plan_save(p, r->save) == STG_OK, "save: %s", stg_plan_message(p));
    MPI_Barrier(MPI_COMM_WORLD); /* the checkpoint is written before anyone reads it */
    stg_plan_free(p);
    stg_graph_free(m.g);
}

/* One process on the whole batch, no hook: the reference. */
static void train_alone(int steps, float *params)
{
    model m = build(GLOBAL);
    stg_plan_options o;
    options(&o, NULL);
    stg_plan *p = NULL;
    CHECK(stg_plan_create(m.g, m.loss, &o, &p) == STG_OK, "reference plan");
    CHECK(init_params(p, &m) == STG_OK, "init");
    for (int st = 0; st < steps; st++) {
        load_share(p, &m, st, 0, 1);
        CHECK(stg_plan_step(p) == STG_OK, "reference step %d", st);
    }
    params_of(p, &m, params);
    stg_plan_free(p);
    stg_graph_free(m.g);
}

static double max_err(const float *a, const float *b, double atol, double rtol)
{
    double worst = 0.0;
    for (int i = 0; i < NPARAM_FLOATS; i++) {
        double e = fabs((double)a[i] - (double)b[i]) / (atol + rtol * fabs((double)b[i]));
        worst = e > worst ? e : worst;
    }
    return worst;
}

int main(int argc, char **argv)
{
    int provided;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    run_opts r = {.steps = 20, .bad_step = -1, .label_step = -1};
    const char *out = NULL, *expect = NULL;
    double tol = 0.0;
    int faults = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";
        if (!strcmp(a, "--steps"))
            r.steps = atoi(v), i++;
        else if (!strcmp(a, "--from"))
            r.from = atoi(v), i++;
        else if (!strcmp(a, "--save"))
            r.save = v, i++;
        else if (!strcmp(a, "--resume"))
            r.resume = v, i++;
        else if (!strcmp(a, "--out"))
            out = v, i++;
        else if (!strcmp(a, "--expect"))
            expect = v, i++;
        else if (!strcmp(a, "--tol"))
            tol = atof(v), i++;
        else if (!strcmp(a, "--faults"))
            faults = 1;
        else {
            fprintf(stderr, "mpi_check: unknown option %s\n", a);
            MPI_Abort(MPI_COMM_WORLD, 2);
        }
    }
    if (GLOBAL % size) {
        fprintf(stderr, "mpi_check: %d processes do not divide the batch of %d\n", size, GLOBAL);
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    stg_mpi *mpi = NULL;
    CHECK(stg_mpi_new(MPI_COMM_WORLD, &mpi) == STG_OK, "stg_mpi_new");

    float a[NPARAM_FLOATS], b[NPARAM_FLOATS], all[4 * NPARAM_FLOATS];
    long outside = 0;
    train(mpi, &r, a, &outside);
    /* the same bits on every process */
    MPI_Gather(a, NPARAM_FLOATS, MPI_FLOAT, all, NPARAM_FLOATS, MPI_FLOAT, 0, MPI_COMM_WORLD);
    for (int q = 1; rank == 0 && q < size && q < 4; q++)
        CHECK(!memcmp(all + q * NPARAM_FLOATS, a, sizeof a), "rank %d's parameters differ", q);
    /* and again from the start */
    long outside2 = 0;
    train(mpi, &r, b, &outside2);
    CHECK(!memcmp(a, b, sizeof a), "a second run gave other bits");
    if (allochook_works()) {
        CHECK(outside == 0 && outside2 == 0,
              "%ld allocator calls in steps outside the hook's MPI calls", outside);
        if (rank == 0)
            printf("mpi_check: %d processes: stgrad allocated nothing in %d steps; %ld "
                   "allocator calls inside MPI's calls\n", size, r.steps, inside);
    }
    /* within rounding of one process on the whole batch */
    if (rank == 0 && !r.resume && r.from == 0) {
        float ref[NPARAM_FLOATS];
        train_alone(r.steps, ref);
        double e = max_err(a, ref, 1e-6, 1e-5);
        CHECK(e <= 1.0, "%.3g tolerances off the one-process run", e);
    }
    if (faults) {
        run_opts f = {.steps = 6, .bad_step = 2, .bad_rank = size - 1, .label_step = 4,
                      .label_rank = 0};
        float c[NPARAM_FLOATS];
        train(mpi, &f, c, &outside);
    }
    if (rank == 0 && out) {
        FILE *fo = fopen(out, "wb");
        CHECK(fo && fwrite(a, sizeof a, 1, fo) == 1 && fclose(fo) == 0, "writing %s", out);
    }
    if (rank == 0 && expect) {
        FILE *fe = fopen(expect, "rb");
        float e[NPARAM_FLOATS];
        CHECK(fe && fread(e, sizeof e, 1, fe) == 1, "reading %s", expect);
        if (fe)
            fclose(fe);
        double err = tol > 0 ? max_err(a, e, tol / 10, tol) : (memcmp(a, e, sizeof a) ? 2 : 0);
        CHECK(err <= 1.0, "parameters off %s (tolerance %g): %.3g", expect, tol, err);
    }
    stg_mpi_free(mpi);
    int total = 0;
    MPI_Allreduce(&failures, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    MPI_Finalize();
    if (rank == 0 && total == 0)
        printf("mpi_check: %d processes: all checks hold\n", size);
    return total ? 1 : 0;
}
