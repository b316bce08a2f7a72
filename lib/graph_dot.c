/*
 * Graphviz DOT of what a plan runs: the nodes of the forward pass, the
 * backward pass and the update in one cluster each, the leaves and views
 * they read, every edge, and where each output lies in the arena.
 */
#include <stdio.h>
#include <stdlib.h>

#include "internal.h"

typedef struct dot_job {
    const stg_plan *p;
    const bool *shown;
} dot_job;

static const char *leaf_style(stg_role r)
{
    switch (r) {
    case STG_ROLE_PARAM: return "shape=ellipse,style=filled,fillcolor=\"#cfe3ff\"";
    case STG_ROLE_STATE: return "shape=ellipse,style=filled,fillcolor=\"#ffe2c4\"";
    case STG_ROLE_STAT: return "shape=ellipse,style=filled,fillcolor=\"#e2f0d9\"";
    case STG_ROLE_INPUT: return "shape=ellipse,style=filled,fillcolor=\"#e6e6e6\"";
    default: return "shape=ellipse";
    }
}

static const char *role_name(stg_role r)
{
    switch (r) {
    case STG_ROLE_PARAM: return "param";
    case STG_ROLE_STATE: return "state";
    case STG_ROLE_STAT: return "stat";
    case STG_ROLE_INPUT: return "input";
    case STG_ROLE_CONST: return "constant";
    default: return "";
    }
}

/* A node's label: "#id op name", the shape, and its bytes in the arena. */
static void label(FILE *f, const stg_plan *p, int32_t id)
{
    const stg_node *n = &p->g->nodes[id];
    char shape[96];
    stgS_str(&n->shape, shape, sizeof shape);
    fprintf(f, "label=\"#%d %s", (int)id,
            n->op->flags & STG_OPF_LEAF ? role_name(n->role) : n->op->name);
    if (n->name) {
        fputc(' ', f);
        for (const char *c = n->name; *c; c++) /* escaped for a DOT string */
            fprintf(f, *c == '"' || *c == '\\' ? "\\%c" : "%c", *c);
    }
    char attrs[80];
    if (*stgO_attr_str(n->op, n->attr, attrs, sizeof attrs))
        fprintf(f, " [%s]", attrs); /* attributes print no quotes or backslashes */
    fprintf(f, "\\n%s%s", shape, n->is_int ? " int32" : "");
    int32_t b = p->bufof[n->base];
    if (b >= 0) {
        size_t at = p->bufs[b].offset + (size_t)n->lay.off * sizeof(float);
        if (n->base != id)
            fprintf(f, "\\nview of #%d at %zu", (int)n->base, at);
        else
            fprintf(f, "\\n@%zu +%zu B", at, p->bufs[b].bytes);
    }
    fputc('"', f);
}

static int write_body(FILE *f, void *ctx)
{
    const dot_job *job = ctx;
    const stg_plan *p = job->p;
    const stg_graph *g = p->g;
    fprintf(f, "digraph stgrad {\n  rankdir=TB;\n  node [shape=box,fontname=\"monospace\","
               "fontsize=10];\n  edge [color=\"#555555\"];\n");
    static const char *const color[] = {"#f4fbf4", "#fbf4f4", "#f4f4fb"};
    for (int ph = STG_PHASE_FORWARD; ph <= STG_PHASE_OPTIMIZER; ph++) {
        fprintf(f, "  subgraph cluster_%s {\n    label=\"%s\";\n    style=filled;\n"
                   "    color=\"%s\";\n", stg_phase_name(ph), stg_phase_name(ph), color[ph]);
        for (int32_t i = 0; i < g->n; i++) {
            const stg_node *n = &g->nodes[i];
            if (!job->shown[i] || (n->op->flags & STG_OPF_LEAF) || (int)stgX_phase(p, i) != ph)
                continue;
            fprintf(f, "    n%d [", (int)i);
            label(f, p, i);
            fprintf(f, "%s];\n", n->op->flags & STG_OPF_VIEW ? ",style=dashed" : "");
        }
        fprintf(f, "  }\n");
    }
    for (int32_t i = 0; i < g->n; i++)
        if (job->shown[i] && (g->nodes[i].op->flags & STG_OPF_LEAF)) {
            fprintf(f, "  n%d [", (int)i);
            label(f, p, i);
            fprintf(f, ",%s];\n", leaf_style(g->nodes[i].role));
        }
    for (int32_t i = 0; i < g->n; i++)
        for (int j = 0; job->shown[i] && j < g->nodes[i].nin; j++)
            fprintf(f, "  n%d -> n%d;\n", (int)g->nodes[i].in[j], (int)i);
    fprintf(f, "}\n");
    return 0;
}

STG_API stg_status stg_plan_write_dot(stg_plan *p, const char *path)
{
    if (!p)
        return STG_INVALID;
    /* what the schedule runs, and the leaves and views it reads */
    bool *shown = calloc((size_t)p->g->n + 1, sizeof *shown);
    if (!shown) {
        snprintf(p->step_msg, sizeof p->step_msg, "dot: out of memory");
        return STG_NOMEM;
    }
    for (int32_t i = 0; i < p->nsched; i++)
        shown[p->sched[i].id] = true;
    for (int32_t i = p->g->n - 1; i >= 0; i--)
        for (int j = 0; shown[i] && j < p->g->nodes[i].nin; j++)
            shown[p->g->nodes[i].in[j]] = true;
    stg_status s = stgW_write_atomic(p, "dot", path, write_body, &(dot_job){p, shown});
    free(shown);
    return s;
}
