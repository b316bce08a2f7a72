/*
 * The profiler's data and the text table.  The executor (run.c) fills one
 * slot of a ring per successful step; everything here reads it afterwards,
 * so a step pays for two or three clock reads per node and thread, and a
 * plan without a profile pays nothing.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

stg_status stgX_profile_new(stg_plan *p, int keep)
{
    stg_profile *pf = calloc(1, sizeof *pf);
    if (!pf)
        return STG_NOMEM;
    p->prof = pf;
    pf->keep = keep;
    size_t cells = (size_t)keep * (size_t)(p->nsched ? p->nsched : 1) * (size_t)p->threads;
    pf->start = calloc(cells, sizeof *pf->start);
    pf->busy = calloc(cells, sizeof *pf->busy);
    pf->wait = calloc(cells, sizeof *pf->wait);
    pf->step = calloc((size_t)keep, sizeof *pf->step);
    pf->at = calloc((size_t)keep, sizeof *pf->at);
    pf->scratch = calloc((size_t)keep, sizeof *pf->scratch);
    if (!pf->start || !pf->busy || !pf->wait || !pf->step || !pf->at || !pf->scratch)
        return STG_NOMEM; /* the plan frees what was made */
    return STG_OK;
}

void stgX_profile_free(stg_profile *pf)
{
    if (!pf)
        return;
    free(pf->start);
    free(pf->busy);
    free(pf->wait);
    free(pf->step);
    free(pf->at);
    free(pf->scratch);
    free(pf);
}

int stgX_kept(const stg_profile *pf)
{
    return pf->recorded < pf->keep ? (int)pf->recorded : pf->keep;
}

int stgX_slot(const stg_profile *pf, int k)
{
    int64_t first = pf->recorded - stgX_kept(pf);
    return (int)((first + k) % pf->keep);
}

STG_API const char *stg_phase_name(stg_phase ph)
{
    static const char *const names[] = {"forward", "backward", "optimizer"};
    return ph >= STG_PHASE_FORWARD && ph <= STG_PHASE_OPTIMIZER ? names[ph] : "unknown";
}

stg_phase stgX_phase(const stg_plan *p, int32_t id)
{
    if (id < p->nfwd)
        return STG_PHASE_FORWARD;
    return id >= p->nopt ? STG_PHASE_OPTIMIZER : STG_PHASE_BACKWARD;
}

/* The parameter a node updates or reads (through views), else the first leaf
 * it reads: what a reader needs to tell two matmuls apart. */
static const char *about(const stg_plan *p, const stg_node *n)
{
    const char *leaf = "";
    for (int j = 0; j < n->nin; j++) {
        const stg_node *in = &p->g->nodes[p->g->nodes[n->in[j]].base];
        if (in->name && in->role == STG_ROLE_PARAM)
            return in->name;
        if (in->name && !*leaf && in->role != STG_ROLE_STATE)
            leaf = in->name;
    }
    return leaf;
}

const char *stgX_input_shapes(const stg_plan *p, int32_t id, char *buf, size_t len)
{
    const stg_node *n = &p->g->nodes[id];
    size_t used = 0;
    buf[0] = '\0';
    for (int j = 0; j < n->nin && used + 1 < len; j++) {
        char s[128];
        stgS_str(&p->g->nodes[n->in[j]].shape, s, sizeof s);
        int w = snprintf(buf + used, len - used, "%s%s", j ? "x" : "", s);
        if (w < 0)
            break;
        used += (size_t)w;
    }
    return buf;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Quantile q of v[0..n) (sorts v); 0 for n = 0. */
static double quantile(double *v, int n, double q)
{
    if (n == 0)
        return 0.0;
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    int i = (int)ceil(q * n) - 1;
    return v[i < 0 ? 0 : i >= n ? n - 1 : i];
}

/* A quantity of one kept step, for medians over steps. */
typedef struct per_step {
    double (*of)(const stg_plan *p, int slot, const struct per_step *q);
    int32_t pos;
    int thread;
} per_step;

static double median_steps(const stg_plan *p, per_step q)
{
    stg_profile *pf = p->prof;
    int n = stgX_kept(pf);
    for (int k = 0; k < n; k++)
        pf->scratch[k] = q.of(p, stgX_slot(pf, k), &q);
    return quantile(pf->scratch, n, 0.5);
}

static size_t cell(const stg_plan *p, int slot, int32_t pos, int t)
{
    return ((size_t)slot * (size_t)p->nsched + (size_t)pos) * (size_t)p->threads + (size_t)t;
}

static double slowest(const stg_plan *p, int slot, const per_step *q)
{
    int64_t m = 0;
    for (int t = 0; t < p->threads; t++)
        if (p->prof->busy[cell(p, slot, q->pos, t)] > m)
            m = p->prof->busy[cell(p, slot, q->pos, t)];
    return (double)m;
}

static double mean_wait(const stg_plan *p, int slot, const per_step *q)
{
    if (!p->sched[q->pos].barrier_before)
        return 0.0;
    double sum = 0.0;
    for (int t = 0; t < p->threads; t++)
        sum += (double)p->prof->wait[cell(p, slot, q->pos, t)];
    return sum / p->threads;
}

static double busy_of(const stg_plan *p, int slot, const per_step *q)
{
    return (double)p->prof->busy[cell(p, slot, q->pos, q->thread)];
}

static double wait_of(const stg_plan *p, int slot, const per_step *q)
{
    return (double)p->prof->wait[cell(p, slot, q->pos, q->thread)];
}

/* One thread's total wait at barriers in a step. */
static double thread_wait_of(const stg_plan *p, int slot, const per_step *q)
{
    double w = 0.0;
    for (int32_t i = 0; i < p->nsched; i++)
        if (p->sched[i].barrier_before)
            w += (double)p->prof->wait[cell(p, slot, i, q->thread)];
    return w;
}

void stgX_node_info(const stg_plan *p, int32_t pos, stg_node_info *info)
{
    const stg_pnode *pn = &p->sched[pos];
    const stg_node *n = pn->node;
    memset(info, 0, sizeof *info);
    info->op = n->op->name;
    info->about = about(p, n);
    info->phase = stgX_phase(p, pn->id);
    info->serial = pn->serial;
    info->ndim = n->shape.nd;
    memcpy(info->dims, n->shape.d, sizeof n->shape.d);
    info->flops = n->op->flops ? n->op->flops(p->g, n) : 0.0;
    if (n->op->traffic) {
        n->op->traffic(p->g, n, &info->bytes_read, &info->bytes_written);
    } else {
        for (int j = 0; j < n->nin; j++)
            info->bytes_read += 4.0 * (double)stgS_numel(&p->g->nodes[n->in[j]].shape);
        info->bytes_written = 4.0 * (double)stgS_numel(&n->shape);
    }
    stgO_attr_str(n->op, n->attr, info->attrs, sizeof info->attrs);
    info->step = n->op->step ? n->op->step(n->attr) : -1;
    int32_t b = p->bufof[n->base];
    info->offset = b >= 0 ? (int64_t)p->bufs[b].offset : -1;
    info->bytes = b >= 0 ? (int64_t)p->bufs[b].bytes : 0;
    if (p->prof && p->prof->recorded > 0) {
        info->time_ns = median_steps(p, (per_step){slowest, pos, 0});
        info->wait_ns = median_steps(p, (per_step){mean_wait, pos, 0});
    }
}

STG_API stg_status stg_plan_node_info(const stg_plan *p, int pos, stg_node_info *info)
{
    if (!p || !info || pos < 0 || pos >= p->nsched)
        return STG_INVALID;
    stgX_node_info(p, pos, info);
    return STG_OK;
}

STG_API stg_status stg_plan_node_thread(const stg_plan *p, int pos, int thread, double *busy_ns,
                                        double *wait_ns)
{
    if (!p || pos < 0 || pos >= p->nsched || thread < 0 || thread >= p->threads)
        return STG_INVALID;
    if (!p->prof || p->prof->recorded == 0)
        return STG_STATE;
    if (busy_ns)
        *busy_ns = median_steps(p, (per_step){busy_of, pos, thread});
    if (wait_ns)
        *wait_ns = p->sched[pos].barrier_before ? median_steps(p, (per_step){wait_of, pos, thread})
                                                : 0.0;
    return STG_OK;
}

STG_API stg_status stg_plan_step_profile(const stg_plan *p, stg_step_profile *out)
{
    if (!p || !out)
        return STG_INVALID;
    if (!p->prof)
        return STG_STATE;
    stg_profile *pf = p->prof;
    memset(out, 0, sizeof *out);
    out->recorded = pf->recorded;
    out->kept = stgX_kept(pf);
    for (int k = 0; k < out->kept; k++)
        pf->scratch[k] = (double)pf->step[stgX_slot(pf, k)];
    if (out->kept > 0) {
        out->p50_ns = quantile(pf->scratch, out->kept, 0.5);
        out->p99_ns = quantile(pf->scratch, out->kept, 0.99);
        out->min_ns = pf->scratch[0];
        out->max_ns = pf->scratch[out->kept - 1];
    }
    return STG_OK;
}

STG_API stg_status stg_plan_profile_reset(stg_plan *p)
{
    if (!p)
        return STG_INVALID;
    if (!p->prof)
        return STG_STATE;
    p->prof->recorded = 0;
    return STG_OK;
}

/* ---- the table ------------------------------------------------------------ */

static void write_threads(const stg_plan *p, FILE *f, int32_t pos)
{
    if (p->threads <= 4) {
        for (int t = 0; t < p->threads; t++) {
            double busy = 0.0;
            stg_plan_node_thread(p, pos, t, &busy, NULL);
            fprintf(f, "%s%.1f", t ? "/" : "  ", busy / 1e3);
        }
        return;
    }
    double lo = INFINITY, hi = 0.0;
    for (int t = 0; t < p->threads; t++) {
        double busy = 0.0;
        stg_plan_node_thread(p, pos, t, &busy, NULL);
        lo = busy < lo ? busy : lo;
        hi = busy > hi ? busy : hi;
    }
    fprintf(f, "  %.1f..%.1f", lo / 1e3, hi / 1e3);
}

STG_API stg_status stg_plan_write_profile(const stg_plan *p, FILE *f)
{
    if (!p || !f)
        return STG_INVALID;
    if (!p->prof || p->prof->recorded == 0)
        return STG_STATE;
    stg_step_profile sp;
    stg_plan_step_profile(p, &sp);
    fprintf(f, "step: %d nodes, %d thread%s, %lld steps timed, medians over the last %d\n",
            (int)p->nsched, p->threads, p->threads == 1 ? "" : "s", (long long)sp.recorded,
            sp.kept);
    fprintf(f, "step time: median %.1f us, p99 %.1f us, min %.1f us, max %.1f us\n\n",
            sp.p50_ns / 1e3, sp.p99_ns / 1e3, sp.min_ns / 1e3, sp.max_ns / 1e3);
    fprintf(f, "%4s %-3s %-22s %-36s %8s %6s %8s %7s %7s %6s %8s  %s\n", "pos", "ph", "op (about)",
            "inputs -> output", "time_us", "share", "MFLOP", "GFLOP/s", "MB", "GB/s", "wait_us",
            p->threads <= 4 ? "busy_us per thread" : "busy_us min..max");
    double phase_ns[3] = {0}, flops_total = 0.0;
    for (int32_t i = 0; i < p->nsched; i++) {
        stg_node_info in;
        stgX_node_info(p, i, &in);
        char what[96], shapes[160], out[96], io[260], step[32] = "";
        if (in.step >= 0)
            snprintf(step, sizeof step, " t=%lld", (long long)in.step);
        snprintf(what, sizeof what, "%s%s%s%s%s%s", in.op, step, *in.about ? " (" : "", in.about,
                 *in.about ? ")" : "", in.serial && p->threads > 1 ? " *" : "");
        stgX_input_shapes(p, p->sched[i].id, shapes, sizeof shapes);
        stgS_str(&p->sched[i].node->shape, out, sizeof out);
        snprintf(io, sizeof io, "%s -> %s", shapes, out);
        double bytes = in.bytes_read + in.bytes_written, t = in.time_ns;
        phase_ns[in.phase] += t;
        flops_total += in.flops;
        static const char *const ph[] = {"fwd", "bwd", "opt"};
        fprintf(f, "%4d %-3s %-22s %-36s %8.1f %5.1f%% %8.3f %7.1f %7.3f %6.1f", (int)i,
                ph[in.phase], what, io, t / 1e3, sp.p50_ns > 0 ? 100.0 * t / sp.p50_ns : 0.0,
                in.flops / 1e6, t > 0 ? in.flops / t : 0.0, bytes / 1e6, t > 0 ? bytes / t : 0.0);
        if (p->sched[i].barrier_before && p->threads > 1)
            fprintf(f, " %8.1f", in.wait_ns / 1e3);
        else
            fprintf(f, " %8s", "-");
        write_threads(p, f, i);
        fputc('\n', f);
    }
    fprintf(f, "\nby phase: forward %.1f us, backward %.1f us, optimizer %.1f us "
               "(sum of node medians; the step median is %.1f us)\n",
            phase_ns[0] / 1e3, phase_ns[1] / 1e3, phase_ns[2] / 1e3, sp.p50_ns / 1e3);
    double kernels = phase_ns[0] + phase_ns[1] + phase_ns[2], outside = sp.p50_ns - kernels;
    fprintf(f, "outside the kernels (the step median minus the node medians): %.1f us, "
               "%.2f us per node\n",
            outside / 1e3, p->nsched ? outside / 1e3 / p->nsched : 0.0);
    fprintf(f, "work: %.3f MFLOP per step, %.1f GFLOP/s at the median step\n", flops_total / 1e6,
            sp.p50_ns > 0 ? flops_total / sp.p50_ns : 0.0);
    if (p->threads > 1) {
        fprintf(f, "barrier waits per step (median):");
        for (int t = 0; t < p->threads; t++)
            fprintf(f, " thread %d %.1f us%s", t, median_steps(p, (per_step){thread_wait_of, 0, t}) / 1e3,
                    t + 1 < p->threads ? "," : "\n");
        fprintf(f, "* runs on thread 0 alone (too little work to share)\n");
    }
    return ferror(f) ? STG_IO : STG_OK;
}

void stgX_json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}
