/*
 * stg-prof: the anatomy of one training step.  Builds a BENCH.md model (or
 * any MLP given by layer sizes), runs steps with the plan's profiler on and
 * prints where the time goes, node by node; optionally the arena's layout,
 * a Chrome trace of the steps and a Graphviz drawing of the graph.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "dist.h"
#include "models.h"
#include "stgrad.h"

static void usage(FILE *f)
{
    int n;
    const matmul_case *mc = matmul_cases(&n);
    fprintf(f,
            "usage: stg-prof [options]\n"
            "  --model NAME      mlp (BENCH.md: 784,512,256,10; the default), a model step\n"
            "                    (lenet, lstm, charlm) or a matmul case:\n"
            "                   ");
    for (int i = 0; i < n; i++)
        fprintf(f, " %s", mc[i].name);
    fprintf(f, "\n"
               "  --layers LIST     an MLP with these layer sizes instead (e.g. 784,300,100,10)\n"
               "  --batch N         batch size of an MLP or a model step (default 64; 32\n"
               "                    for charlm)\n"
               "  --mode M          matmul cases: fwd or fwd+bwd (default fwd+bwd)\n"
               "  --threads N       threads per step (default 2)\n"
               "  --steps N         steps timed; the table shows medians (default 200)\n"
               "  --warmup N        steps run first and not timed (default 20)\n"
               "  --memory          also print the arena: every buffer and the breakdown\n"
               "  --trace FILE      write a Chrome trace of the timed steps (Perfetto,\n"
               "                    chrome://tracing): the last --steps steps\n"
               "  --dot FILE        write the graph in Graphviz DOT (dot -Tsvg FILE)\n"
               "  --mpi             data-parallel over the processes of an MPI run\n"
               "                    (mpirun -np N stg-prof --mpi ...): --batch is the\n"
               "                    global batch; rank 0 prints its own step, the\n"
               "                    gradient sums' nodes included\n"
               "  --help            this text\n");
}

int main(int argc, char **argv)
{
    const char *model = "mlp", *layers = NULL, *mode = "fwd+bwd", *trace = NULL, *dot = NULL;
    long batch = 64, threads = 2, steps = 200, warmup = 20;
    bool batch_set = false;
    int memory = 0, mpi = 0;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(o, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(o, "--memory")) {
            memory = 1;
            continue;
        } else if (!strcmp(o, "--mpi")) {
            mpi = 1;
            continue;
        }
        static const char *const valued[] = {"--model", "--layers",  "--mode",  "--trace",
                                             "--dot",   "--batch",   "--threads", "--steps",
                                             "--warmup"};
        bool known = false;
        for (size_t k = 0; k < sizeof valued / sizeof *valued; k++)
            known = known || !strcmp(o, valued[k]);
        if (!known) {
            fprintf(stderr, "stg-prof: unknown option '%s' (see --help)\n", o);
            return 2;
        }
        if (!v) {
            fprintf(stderr, "stg-prof: %s needs a value (see --help)\n", o);
            return 2;
        }
        i++;
        if (!strcmp(o, "--model"))
            model = v;
        else if (!strcmp(o, "--layers"))
            layers = v;
        else if (!strcmp(o, "--mode"))
            mode = v;
        else if (!strcmp(o, "--trace"))
            trace = v;
        else if (!strcmp(o, "--dot"))
            dot = v;
        else if (!strcmp(o, "--batch"))
            batch = cli_number("stg-prof", o, v, 1, 1 << 20), batch_set = true;
        else if (!strcmp(o, "--threads"))
            threads = cli_number("stg-prof", o, v, 1, 1024);
        else if (!strcmp(o, "--steps"))
            steps = cli_number("stg-prof", o, v, 1, 1000000);
        else
            warmup = cli_number("stg-prof", o, v, 0, 1000000);
    }
    if (strcmp(mode, "fwd") && strcmp(mode, "fwd+bwd")) {
        fprintf(stderr, "stg-prof: --mode must be fwd or fwd+bwd (got '%s')\n", mode);
        return 2;
    }

    char err[600], title[200];
    stg_plan_options o;
    stg_plan_options_init(&o);
    o.threads = (int)threads;
    o.profile = (int)steps;
    stg_collective hook;
    long global = batch;
    if (mpi) {
        if (!dist_available()) {
            fprintf(stderr, "stg-prof: --mpi: this build has no MPI\n");
            return 2;
        }
        if (dist_start(&argc, &argv, err, sizeof err) || dist_hook(&hook, err, sizeof err)) {
            fprintf(stderr, "stg-prof: --mpi: %s\n", err);
            dist_abort(1);
        }
        if (!batch_set || batch % dist_size()) {
            fprintf(stderr, "stg-prof: --mpi needs a --batch that the %d processes divide\n",
                    dist_size());
            dist_abort(2);
        }
        batch /= dist_size(); /* this process's share */
        o.collective = &hook;
        if (dist_rank() != 0) /* the others time their steps and print nothing */
            trace = dot = NULL, memory = 0;
    }
    stg_plan *p = NULL;
    bool is_step = true;
    if (layers || !strcmp(model, "mlp")) {
        mlp_spec spec;
        if (!mlp_parse(layers ? layers : "784,512,256,10", &spec, err, sizeof err)) {
            fprintf(stderr, "stg-prof: %s\n", err);
            return 2;
        }
        spec.batch = (int)batch;
        int w = snprintf(title, sizeof title, "mlp");
        for (int l = 0; l < spec.n && w > 0 && (size_t)w < sizeof title; l++)
            w += snprintf(title + w, sizeof title - (size_t)w, "%c%lld", l ? '-' : ' ',
                          (long long)spec.sizes[l]);
        snprintf(title + w, sizeof title - (size_t)w, ", batch %ld, %.1f MFLOP of products",
                 batch, mlp_flops(&spec) / 1e6);
        if (mpi) {
            size_t used = strlen(title);
            snprintf(title + used, sizeof title - used, " (of a global batch of %ld over %d "
                     "processes)", global, dist_size());
        }
        p = mlp_plan(&spec, &o, err, sizeof err);
    } else {
        const matmul_case *mc = matmul_case_find(model);
        const model_step *ms = mc ? NULL : model_step_find(model);
        if (ms) {
            if (!batch_set)
                batch = ms->batch;
            snprintf(title, sizeof title, "%s, batch %ld, %.1f MFLOP of products", ms->name,
                     batch, ms->flops((int)batch) / 1e6);
            p = ms->plan((int)batch, &o, err, sizeof err);
        } else if (!mc) {
            fprintf(stderr, "stg-prof: unknown model '%s' (mlp or a matmul case; see --help)\n",
                    model);
            return 2;
        } else {
            bool backward = !strcmp(mode, "fwd+bwd");
            is_step = backward;
            snprintf(title, sizeof title, "%s %s, %.1f MFLOP", mc->name, mode,
                     matmul_case_flops(mc, backward) / 1e6);
            p = matmul_plan(mc, backward, &o, err, sizeof err);
        }
    }
    if (!p) {
        fprintf(stderr, "stg-prof: building the plan failed: %s\n", err);
        dist_abort(1);
    }
    if (mpi && dist_prepare(p, err, sizeof err)) {
        fprintf(stderr, "stg-prof: --mpi: %s\n", err);
        dist_abort(1);
    }
    FILE *out = stdout;
    if (dist_rank() != 0 && !(out = fopen("/dev/null", "w"))) {
        fprintf(stderr, "stg-prof: cannot open /dev/null\n");
        dist_abort(1);
    }
    stg_gemm_info gi;
    stg_plan_gemm_info(p, &gi);
    fprintf(out, "stg-prof: %s; %ld thread%s, %ld steps timed after %ld warm-up steps\n%s\n\n", title,
           threads, threads == 1 ? "" : "s", steps, warmup, gi.why);
    int rc = 0;
    for (long i = 0; i < warmup + steps && rc == 0; i++) {
        if (i == warmup) {
            stg_plan_profile_reset(p);
            dist_times_reset();
        }
        if ((is_step ? stg_plan_step(p) : stg_plan_forward(p)) != STG_OK) {
            fprintf(stderr, "stg-prof: step %ld failed: %s\n", i, stg_plan_message(p));
            dist_abort(1);
        }
    }
    if (rc == 0 && stg_plan_write_profile(p, out) != STG_OK)
        rc = 1;
    if (rc == 0 && mpi) {
        double exchange, blocked;
        dist_times(&exchange, &blocked);
        fprintf(out, "gradient sums (rank 0): %.1f us per step from the starts to the ends of "
                "the waits, %.1f us of it blocked in waits: %.0f%% hidden behind the backward "
                "pass\n", 1e6 * exchange / (double)steps, 1e6 * blocked / (double)steps,
                exchange > 0 ? 100.0 * (1.0 - blocked / exchange) : 0.0);
    }
    if (rc == 0 && memory) {
        putchar('\n');
        if (stg_plan_write_memory(p, stdout) != STG_OK)
            rc = 1;
    }
    if (rc == 0 && trace) {
        if (stg_plan_write_trace(p, trace) != STG_OK) {
            fprintf(stderr, "stg-prof: %s\n", stg_plan_message(p));
            rc = 1;
        } else {
            printf("\ntrace: %s (open it in https://ui.perfetto.dev or chrome://tracing)\n", trace);
        }
    }
    if (rc == 0 && dot) {
        if (stg_plan_write_dot(p, dot) != STG_OK) {
            fprintf(stderr, "stg-prof: %s\n", stg_plan_message(p));
            rc = 1;
        } else {
            printf("graph: %s (render it with: dot -Tsvg %s -o graph.svg)\n", dot, dot);
        }
    }
    stg_plan_free(p);
    if (out != stdout)
        fclose(out);
    dist_finish();
    return rc;
}
