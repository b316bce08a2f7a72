/*
 * Chrome trace event JSON of the kept steps (the "JSON object format" that
 * Perfetto and chrome://tracing open): one track per thread, a slice per
 * step with a slice per node inside it, and the waits at barriers as slices
 * of their own, so idle threads show up as such.
 */
#include <stdio.h>

#include "internal.h"

typedef struct trace_job {
    const stg_plan *p;
} trace_job;

static void slice(FILE *f, const char *name, const char *cat, int tid, double ts_us, double dur_us)
{
    fprintf(f, ",\n{\"name\":");
    stgX_json_string(f, name);
    fprintf(f, ",\"cat\":\"%s\",\"ph\":\"X\",\"pid\":1,\"tid\":%d,\"ts\":%.3f,\"dur\":%.3f", cat,
            tid, ts_us, dur_us);
}

static int write_body(FILE *f, void *ctx)
{
    const stg_plan *p = ((const trace_job *)ctx)->p;
    const stg_profile *pf = p->prof;
    int kept = stgX_kept(pf);
    int64_t origin = kept ? pf->at[stgX_slot(pf, 0)] : 0;
    fprintf(f, "{\"displayTimeUnit\":\"ns\",\"traceEvents\":[\n"
               "{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":1,\"args\":{\"name\":"
               "\"stgrad plan, %d threads\"}}", p->threads);
    for (int t = 0; t < p->threads; t++)
        fprintf(f, ",\n{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":1,\"tid\":%d,"
                   "\"args\":{\"name\":\"thread %d\"}}", t, t);
    /* a step of serial nodes only runs on thread 0, without the team */
    int nt = p->first_shared >= p->nsched ? 1 : p->threads;
    for (int k = 0; k < kept; k++) {
        int slot = stgX_slot(pf, k);
        double t0 = (double)(pf->at[slot] - origin) / 1e3;
        char name[64];
        snprintf(name, sizeof name, "step %lld", (long long)(pf->recorded - kept + k));
        for (int t = 0; t < nt; t++) {
            slice(f, name, "step", t, t0, (double)pf->step[slot] / 1e3);
            fputc('}', f);
        }
        size_t cells = (size_t)p->nsched * (size_t)p->threads;
        const int64_t *start = pf->start + (size_t)slot * cells;
        const int64_t *busy = pf->busy + (size_t)slot * cells;
        const int64_t *wait = pf->wait + (size_t)slot * cells;
        for (int32_t i = 0; i < p->nsched; i++) {
            stg_node_info in;
            stgX_node_info(p, i, &in); /* static facts only: no medians */
            char out[96], shapes[160];
            stgS_str(&p->sched[i].node->shape, out, sizeof out);
            stgX_input_shapes(p, p->sched[i].id, shapes, sizeof shapes);
            for (int t = 0; t < nt; t++) {
                size_t c = (size_t)i * (size_t)p->threads + (size_t)t;
                double ts = t0 + (double)start[c] / 1e3;
                if (p->sched[i].barrier_before && wait[c] > 0 && nt > 1) {
                    slice(f, "barrier wait", "wait", t, ts - (double)wait[c] / 1e3,
                          (double)wait[c] / 1e3);
                    fputc('}', f);
                }
                if (p->sched[i].serial && t > 0)
                    continue; /* nothing to see: only thread 0 works on it */
                slice(f, in.op, stg_phase_name(in.phase), t, ts, (double)busy[c] / 1e3);
                fprintf(f, ",\"args\":{\"pos\":%d,\"about\":", (int)i);
                stgX_json_string(f, in.about);
                fprintf(f, ",\"attrs\":");
                stgX_json_string(f, in.attrs);
                fprintf(f, ",\"inputs\":\"%s\",\"output\":\"%s\",\"flops\":%.0f,"
                           "\"bytes\":%.0f,\"serial\":%s}}",
                        shapes, out, in.flops, in.bytes_read + in.bytes_written,
                        p->sched[i].serial ? "true" : "false");
            }
        }
    }
    fprintf(f, "\n]}\n");
    return 0;
}

STG_API stg_status stg_plan_write_trace(stg_plan *p, const char *path)
{
    if (!p)
        return STG_INVALID;
    if (!p->prof || p->prof->recorded == 0) {
        snprintf(p->step_msg, sizeof p->step_msg,
                 "trace: no timed steps (create the plan with opts.profile > 0 and run a step)");
        return STG_STATE;
    }
    return stgW_write_atomic(p, "trace", path, write_body, &(trace_job){p});
}
