/*
 * The planner: from a graph and a loss to everything a step needs.
 *
 *   1. copy the graph, differentiate it, append the optimizer's update nodes;
 *   2. keep the nodes the roots (loss, gradients, updates, kept tensors) need
 *      and schedule them in id order (a topological order by construction);
 *   3. let each op prepare its nodes: loop layouts into op data, and the
 *      scratch its kernel needs;
 *   4. give every node that owns data a buffer with a lifetime, letting an
 *      elementwise node write over an input that dies there, and every
 *      node's scratch one that lives while the node runs;
 *   5. place the buffers in one arena (arena.c), resolve every pointer, and
 *      mark the nodes that need a barrier before them.
 *
 * A data-parallel plan (opts.collective) also gets its gradient sums in
 * step 1 (collective.c): their start nodes are scheduled early, right after
 * the gradients they sum, and the gradients are placed in one region after
 * the rest of the arena, bucket by bucket.
 *
 * Invariants (stg_plan_check): a scheduled node's inputs have smaller ids
 * and are written before it; every buffer lies inside the arena; buffers
 * whose bytes overlap have disjoint lifetimes, but for a bucket of the
 * gradient region and its gradients.  Leaves, gradients of parameters, the loss and kept
 * tensors are persistent: their lifetime is the whole step.
 */
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static _Thread_local char last_message[512];

STG_API const char *stg_plan_last_message(void)
{
    return last_message;
}

static stg_status fail(stg_status s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static stg_status fail(stg_status s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_message, sizeof last_message, fmt, ap);
    va_end(ap);
    return s;
}

STG_API void stg_plan_options_init(stg_plan_options *opts)
{
    memset(opts, 0, sizeof *opts);
    opts->threads = 1;
    opts->optimizer = STG_OPTIM_SGD;
    opts->lr = 0.01f;
    opts->beta1 = 0.9f;
    opts->beta2 = 0.999f;
    opts->eps = 1e-8f;
}

/* calloc/malloc count for a node count (never 0, never negative). */
static size_t count_of(int32_t n)
{
    return n > 0 ? (size_t)n : 1;
}

/* Per-node facts the planner works out; freed when planning ends. */
typedef struct scratch {
    bool *needed, *persistent;
    int32_t *pos;  /* schedule position, -1 if not scheduled */
    int32_t *last; /* last schedule position that reads the node's data */
} scratch;

float *stgP_ptr(const stg_plan *p, int32_t id)
{
    const stg_node *n = &p->g->nodes[id];
    const stg_buffer *b = &p->bufs[p->bufof[n->base]];
    return (b->external ? b->external : (float *)(p->arena + b->offset)) + n->lay.off;
}

void *stgP_opdata(stg_prep *cx, stg_pnode *pn, size_t bytes)
{
    (void)cx;
    free(pn->desc);
    pn->desc = calloc(1, bytes ? bytes : 1);
    return pn->desc;
}

stg_status stgP_message(stg_plan *p, stg_status s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->step_msg, sizeof p->step_msg, fmt, ap);
    va_end(ap);
    return s;
}

stg_status stgP_fail(stg_prep *cx, stg_status s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cx->msg, sizeof cx->msg, fmt, ap);
    va_end(ap);
    return s;
}

void stgP_scratch(stg_prep *cx, stg_pnode *pn, size_t bytes, bool per_thread)
{
    (void)cx;
    pn->scratch_bytes = bytes;
    pn->scratch_per_thread = per_thread;
}

/* Bytes of a node's scratch buffer: one cache-line-aligned block per thread
 * if it asked for them, else one. */
static size_t scratch_total(const stg_pnode *pn, int threads)
{
    size_t block = (pn->scratch_bytes + STG_ALIGN - 1) / STG_ALIGN * STG_ALIGN;
    return pn->scratch_per_thread ? block * (size_t)threads : block;
}

/* A readable, contiguous version of 'id' for a gradient or kept value. */
static int32_t materialize(stg_graph *g, int32_t id)
{
    const stg_node *n = &g->nodes[id];
    if (stgS_is_contiguous(&n->shape, &n->lay))
        return id;
    return stgG_add(g, &stg_op_copy, 1, &id, &n->shape, NULL).id;
}

/* Step 1: copies of kept values (part of the forward pass), then backward
 * and update nodes; fills p->value and p->grad. */
static stg_status extend(stg_plan *p)
{
    stg_graph *g = p->g;
    for (int32_t i = 0; i < p->nuser; i++)
        if (g->nodes[i].keep && g->nodes[i].role == STG_ROLE_COMPUTE)
            p->value[i] = materialize(g, i);
    p->nfwd = g->n;
    if (!(p->grad = malloc(count_of(p->nfwd) * sizeof *p->grad)))
        return fail(STG_NOMEM, "plan: out of memory");
    for (int32_t i = 0; i < p->nfwd; i++)
        p->grad[i] = -1;
    if (p->loss >= 0 && g->status == STG_OK) {
        stg_status s = stgD_differentiate(g, p->loss, p->seed, p->grad);
        if (s != STG_OK)
            return fail(s, "plan: differentiating the graph failed: %s", g->msg);
    }
    for (int32_t i = 0; i < p->nfwd; i++) {
        const stg_node *n = &g->nodes[i];
        if (i < p->nuser && p->grad[i] >= 0 && (n->role == STG_ROLE_PARAM || n->want_grad))
            p->grad[i] = materialize(g, p->grad[i]);
        else
            p->grad[i] = -1;
    }
    if (g->status == STG_OK && stgC_add_collectives(p) == STG_NOMEM && g->status == STG_OK)
        return fail(STG_NOMEM, "plan: out of memory adding the gradient sums");
    p->nopt = g->n;
    if (g->status == STG_OK && stgO_add_updates(p) == STG_NOMEM && g->status == STG_OK)
        return fail(STG_NOMEM, "plan: out of memory adding optimizer updates");
    return g->status == STG_OK ? STG_OK : fail(g->status, "plan: %s", g->msg);
}

/* A root whose data must survive the whole step: its buffer is persistent. */
static void root(const stg_graph *g, scratch *s, int32_t id)
{
    s->needed[id] = true;
    s->persistent[g->nodes[id].base] = s->persistent[id] = true;
}

/* Whether every input of node e that a scheduled node writes is written
 * by then: by nodes up to id 'upto' or by early nodes already placed. */
static bool inputs_written(const stg_graph *g, const scratch *s, int32_t e, int32_t upto)
{
    for (int j = 0; j < g->nodes[e].nin; j++) {
        int32_t b = g->nodes[g->nodes[e].in[j]].base;
        bool scheduled = !(g->nodes[b].op->flags & STG_OPF_LEAF);
        if (scheduled && b > upto && s->pos[b] < 0)
            return false;
    }
    return true;
}

/* Step 2: what the roots need, and the schedule. */
static stg_status schedule(stg_plan *p, scratch *s)
{
    stg_graph *g = p->g;
    for (int32_t i = 0; i < p->nuser; i++) {
        if (p->grad[i] >= 0)
            root(g, s, p->grad[i]);
        if (p->value[i] >= 0)
            root(g, s, p->value[i]);
    }
    for (int32_t i = 0; i < g->n; i++)
        if (g->nodes[i].role != STG_ROLE_COMPUTE)
            root(g, s, i);
    if (p->loss >= 0)
        root(g, s, p->loss);
    for (int32_t i = p->nfwd; i < g->n; i++)
        if (g->nodes[i].op->flags & STG_OPF_EFFECT)
            s->needed[i] = true;
    int32_t count = 0;
    for (int32_t i = g->n - 1; i >= 0; i--)
        if (s->needed[i])
            for (int j = 0; j < g->nodes[i].nin; j++)
                s->needed[g->nodes[i].in[j]] = true;
    /* in the order of ids, but an early node right after the last node that
     * writes one of its inputs (and after the forward pass) */
    int32_t nearly = 0;
    for (int32_t i = 0; i < g->n; i++) {
        s->pos[i] = -1;
        if (s->needed[i] && (g->nodes[i].op->flags & STG_OPF_EARLY))
            s->last[nearly++] = i; /* 'last' is free until last_uses */
    }
    for (int32_t i = 0; i < g->n; i++) {
        const stg_op *op = g->nodes[i].op;
        if (!s->needed[i] || (op->flags & (STG_OPF_VIEW | STG_OPF_LEAF | STG_OPF_EARLY)))
            continue;
        if (i < p->nfwd)
            p->nsched_fwd = count + 1;
        s->pos[i] = count++;
        for (int32_t k = 0; i >= p->nfwd - 1 && k < nearly; k++)
            if (s->pos[s->last[k]] < 0 && inputs_written(g, s, s->last[k], i))
                s->pos[s->last[k]] = count++;
    }
    for (int32_t k = 0; k < nearly; k++)
        if (s->pos[s->last[k]] < 0)
            s->pos[s->last[k]] = count++;
    p->nsched = count;
    p->sched = calloc(count_of(count), sizeof *p->sched);
    if (!p->sched)
        return fail(STG_NOMEM, "plan: out of memory for the schedule");
    for (int32_t i = 0; i < g->n; i++)
        if (s->pos[i] >= 0) {
            p->sched[s->pos[i]].id = i;
            p->sched[s->pos[i]].node = &g->nodes[i];
        }
    return STG_OK;
}

/* Last schedule position reading each node's data; a view's readers read its base. */
static void last_uses(const stg_plan *p, scratch *s)
{
    const stg_graph *g = p->g;
    for (int32_t i = 0; i < g->n; i++)
        s->last[i] = s->persistent[i] ? p->nsched : s->pos[i];
    for (int32_t i = g->n - 1; i >= 0; i--) {
        if (!s->needed[i])
            continue;
        const stg_node *n = &g->nodes[i];
        int32_t use = (n->op->flags & STG_OPF_VIEW) ? s->last[i] : s->pos[i];
        for (int j = 0; j < n->nin; j++)
            if (s->last[n->in[j]] < use)
                s->last[n->in[j]] = use;
    }
}

/* Whether elementwise node 'n' may write over input 'x' (which dies at n). */
static bool can_share(const stg_plan *p, const stg_node *n, int32_t x, int32_t pos)
{
    const stg_node *xn = &p->g->nodes[x];
    int32_t b = p->bufof[x];
    if (xn->base != x || b < 0 || p->bufs[b].persistent || p->bufs[b].last != pos ||
        !stgS_equal(&xn->shape, &n->shape))
        return false;
    for (int j = 0; j < n->nin; j++)
        if (n->in[j] != x && p->bufof[p->g->nodes[n->in[j]].base] == b)
            return false;
    return true;
}

/* A parameter or running statistic read from opts.share_params: matched by
 * id, role, name and shape. */
static stg_status share_param(stg_plan *p, int32_t id, stg_buffer *b)
{
    const stg_plan *o = p->opt.share_params;
    const stg_node *n = &p->g->nodes[id];
    const stg_node *m = id < o->nuser ? &o->g->nodes[id] : NULL;
    const char *kind = n->role == STG_ROLE_PARAM ? "parameter" : "running statistic";
    char bn[96], bm[96];
    if (!m || m->role != n->role || !stgS_equal(&m->shape, &n->shape) ||
        (n->name == NULL) != (m->name == NULL) || (n->name && strcmp(n->name, m->name)))
        return fail(STG_INVALID, "plan: share_params: %s %d ('%s' %s) has no twin in the "
                    "other plan (%s there)", kind, (int)id, n->name ? n->name : "",
                    stgS_str(&n->shape, bn, sizeof bn), m ? (m->role == n->role ?
                    stgS_str(&m->shape, bm, sizeof bm) : "another kind of node") : "no such node");
    *b = (stg_buffer){.persistent = true, .first = 0, .last = p->nsched, .owner = id,
                      .external = stgP_ptr(o, id)};
    return STG_OK;
}

/* Step 4: buffers and lifetimes, with in-place sharing. */
static stg_status assign_buffers(stg_plan *p, scratch *s)
{
    stg_graph *g = p->g;
    p->bufs = calloc(count_of(g->n) + count_of(p->nsched), sizeof *p->bufs);
    if (!p->bufs)
        return fail(STG_NOMEM, "plan: out of memory for buffers");
    for (int32_t i = 0; i < g->n; i++) {
        const stg_node *n = &g->nodes[i];
        p->bufof[i] = -1;
        if (!s->needed[i] || n->base != i)
            continue;
        int32_t pos = s->pos[i] < 0 ? 0 : s->pos[i];
        if (n->op->flags & STG_OPF_UPDATE) {
            p->bufof[i] = p->bufof[n->in[0]];
            continue;
        }
        if (n->op->flags & STG_OPF_CHAIN) { /* the same buffer, alive as long as any version */
            int32_t b = p->bufof[n->in[0]];
            p->bufof[i] = b;
            if (p->bufs[b].last < s->last[i])
                p->bufs[b].last = s->last[i];
            if (s->persistent[i])
                p->bufs[b].persistent = true, p->bufs[b].first = 0;
            continue;
        }
        if ((n->op->flags & STG_OPF_INPLACE) && !s->persistent[i]) {
            for (int j = 0; j < n->nin && p->bufof[i] < 0; j++)
                if (can_share(p, n, n->in[j], pos)) {
                    int32_t b = p->bufof[n->in[j]];
                    p->bufof[i] = b;
                    p->bufs[b].last = s->last[i];
                    p->buffer_bytes += p->bufs[b].bytes; /* counted as if not shared */
                }
            if (p->bufof[i] >= 0)
                continue;
        }
        stg_buffer *b = &p->bufs[p->nbufs];
        if ((n->role == STG_ROLE_PARAM || n->role == STG_ROLE_STAT) && p->opt.share_params) {
            stg_status st = share_param(p, i, b);
            if (st != STG_OK)
                return st;
            p->bufof[i] = p->nbufs++;
            continue;
        }
        b->bytes = (size_t)stgS_numel(&n->shape) * sizeof(float);
        b->persistent = s->persistent[i];
        b->first = b->persistent ? 0 : pos;
        b->last = s->last[i];
        b->owner = i;
        p->buffer_bytes += b->bytes;
        p->bufof[i] = p->nbufs++;
    }
    /* the gradient region: gradients, and buckets over them */
    for (int32_t k = 0; p->region && k < p->region->nparts; k++) {
        const stg_region_part *part = &p->region->parts[k];
        if (p->bufof[part->node] < 0)
            return fail(STG_STATE, "plan: gradient-region node %d has no buffer",
                        (int)part->node);
        stg_buffer *b = &p->bufs[p->bufof[part->node]];
        if (g->nodes[part->node].op == &stg_op_grad_sum_wait)
            p->buffer_bytes -= b->bytes; /* its gradients' bytes */
        b->in_region = true;
        b->region_at = part->at;
        b->persistent = true;
        b->first = 0;
        b->last = p->nsched;
    }
    /* scratch lives while its node runs, and only then */
    for (int32_t k = 0; k < p->nsched; k++) {
        stg_pnode *pn = &p->sched[k];
        pn->scratch_buf = -1;
        if (!pn->scratch_bytes)
            continue;
        stg_buffer *b = &p->bufs[p->nbufs];
        *b = (stg_buffer){.bytes = scratch_total(pn, p->threads), .first = k, .last = k,
                          .owner = pn->id, .scratch = true};
        p->buffer_bytes += b->bytes;
        pn->scratch_buf = p->nbufs++;
    }
    return STG_OK;
}

static stg_status place(stg_plan *p)
{
    stg_interval *iv = calloc(count_of(p->nbufs), sizeof *iv);
    int32_t *order = calloc(count_of(p->nbufs), sizeof *order);
    if (!iv || !order) {
        free(iv);
        free(order);
        return fail(STG_NOMEM, "plan: out of memory placing buffers");
    }
    for (int32_t i = 0; i < p->nbufs; i++)
        iv[i] = (stg_interval){p->bufs[i].in_region ? 0 : p->bufs[i].bytes, p->bufs[i].first,
                               p->bufs[i].last, 0};
    p->arena_bytes = stgA_place(iv, p->nbufs, order);
    /* the gradient region after the rest, in one piece */
    size_t region = (p->arena_bytes + STG_ALIGN - 1) / STG_ALIGN * STG_ALIGN;
    if (p->region)
        p->arena_bytes = region + (size_t)p->region->floats * sizeof(float);
    for (int32_t i = 0; i < p->nbufs; i++)
        p->bufs[i].offset = p->bufs[i].in_region
                                ? region + (size_t)p->bufs[i].region_at * sizeof(float)
                                : iv[i].offset;
    free(iv);
    free(order);
    return STG_OK;
}

/* Byte range of a node's whole buffer. */
typedef struct range {
    size_t lo, hi;
} range;

static range buf_range(const stg_plan *p, int32_t id)
{
    const stg_buffer *b = &p->bufs[p->bufof[p->g->nodes[id].base]];
    return (range){b->offset, b->offset + b->bytes};
}

static bool hits(range r, const range *set, int32_t n)
{
    for (int32_t i = 0; i < n; i++)
        if (r.lo < set[i].hi && set[i].lo < r.hi)
            return true;
    return false;
}

/* Step 5: a barrier goes before a node that reads what was written since the
 * last barrier, or writes what was read or written since then. */
static stg_status mark_barriers(stg_plan *p)
{
    size_t cap = 2 * count_of(p->nsched) * (2 * STG_MAX_INPUTS + 2); /* all + parallel */
    range *rd = malloc(cap * sizeof *rd), *wr = malloc(cap * sizeof *wr);
    if (!rd || !wr) {
        free(rd);
        free(wr);
        return fail(STG_NOMEM, "plan: out of memory marking barriers");
    }
    /* Ranges touched since the last barrier by parallel nodes (all threads)
     * and by serial nodes (thread 0 only, in program order with each other). */
    int32_t nrd = 0, nwr = 0, nrd_par = 0, nwr_par = 0;
    range *rd_par = rd + cap / 2, *wr_par = wr + cap / 2;
    bool updating = false;
    for (int32_t i = 0; i < p->nsched; i++) {
        stg_pnode *pn = &p->sched[i];
        const stg_node *n = pn->node;
        bool update = (n->op->flags & STG_OPF_UPDATE) != 0;
        int nw = 0;
        range w[STG_MAX_INPUTS + 2];
        w[nw++] = buf_range(p, pn->id);
        if (pn->scratch_buf >= 0) {
            const stg_buffer *sb = &p->bufs[pn->scratch_buf];
            w[nw++] = (range){sb->offset, sb->offset + sb->bytes};
        }
        for (int j = 2; update && j < n->nin; j++)
            w[nw++] = buf_range(p, n->in[j]);
        /* the first update waits for everything, and for the failure check */
        bool need = update && !updating;
        updating = updating || update;
        /* a serial node conflicts only with what other threads may touch */
        const range *r_set = pn->serial ? rd_par : rd, *w_set = pn->serial ? wr_par : wr;
        int32_t r_n = pn->serial ? nrd_par : nrd, w_n = pn->serial ? nwr_par : nwr;
        for (int k = 0; k < nw; k++)
            need = need || hits(w[k], r_set, r_n) || hits(w[k], w_set, w_n);
        for (int j = 0; j < n->nin; j++)
            need = need || hits(buf_range(p, n->in[j]), w_set, w_n);
        if (need)
            nrd = nwr = nrd_par = nwr_par = 0;
        pn->barrier_before = need;
        for (int k = 0; k < nw; k++) {
            wr[nwr++] = w[k];
            if (!pn->serial)
                wr_par[nwr_par++] = w[k];
        }
        for (int j = 0; j < n->nin; j++) {
            rd[nrd++] = buf_range(p, n->in[j]);
            if (!pn->serial)
                rd_par[nrd_par++] = buf_range(p, n->in[j]);
        }
    }
    free(rd);
    free(wr);
    return STG_OK;
}

/* Step 3: each op prepares its nodes (layouts, op data, scratch) before
 * buffers are assigned, so that scratch is placed like any buffer. */
static stg_status prepare_nodes(stg_plan *p)
{
    stg_prep cx = {.threads = p->threads, .opt = &p->opt, .kern = &p->kern,
                   .inference = p->opt.inference != 0};
    for (int32_t i = 0; i < p->nsched; i++) {
        stg_pnode *pn = &p->sched[i];
        for (int j = 0; j < pn->node->nin; j++)
            pn->innode[j] = &p->g->nodes[pn->node->in[j]];
        /* serial below the grain unless 'prepare' knows better; always for
         * the ops whose kernels run on thread 0 alone */
        pn->serial = stgS_numel(&pn->node->shape) < STG_GRAIN;
        if (pn->node->op->prepare) {
            cx.msg[0] = '\0';
            stg_status s = pn->node->op->prepare(&cx, pn);
            if (s != STG_OK && cx.msg[0])
                return fail(s, "plan: %s", cx.msg);
            if (s != STG_OK)
                return fail(s, "plan: preparing node %d (%s) failed", (int)pn->id,
                            pn->node->op->name);
        }
        if (pn->node->op->flags & STG_OPF_SERIAL)
            pn->serial = true;
    }
    for (p->first_shared = 0; p->first_shared < p->nsched; p->first_shared++)
        if (!p->sched[p->first_shared].serial)
            break;
    return STG_OK;
}

/* Step 5: pointers into the placed arena, and barriers. */
static stg_status bind_nodes(stg_plan *p)
{
    for (int32_t i = 0; i < p->nsched; i++) {
        stg_pnode *pn = &p->sched[i];
        pn->out = stgP_ptr(p, pn->id);
        for (int j = 0; j < pn->node->nin; j++)
            pn->in[j] = stgP_ptr(p, pn->node->in[j]);
        pn->scratch = pn->scratch_buf >= 0 ? p->arena + p->bufs[pn->scratch_buf].offset : NULL;
    }
    return mark_barriers(p);
}

static bool finite_nonneg(float x) { return isfinite(x) && x >= 0.0f; }

static stg_status validate(const stg_graph *g, stg_tensor loss, stg_tensor seed,
                           const stg_plan_options *o)
{
    char b[96], c[96];
    if (!g)
        return fail(STG_INVALID, "plan: graph is NULL");
    if (g->status != STG_OK)
        return fail(STG_INVALID, "plan: the graph has an error: %s", g->msg);
    if (loss.id >= g->n)
        return fail(STG_INVALID, "plan: loss is not a tensor of this graph (id %d)", (int)loss.id);
    if (seed.id >= 0) {
        if (loss.id < 0 || seed.id >= g->n)
            return fail(STG_INVALID, "plan: vjp needs an output and an upstream gradient of "
                        "this graph (ids %d and %d)", (int)loss.id, (int)seed.id);
        const stg_node *o_ = &g->nodes[loss.id], *s_ = &g->nodes[seed.id];
        if (s_->is_int || o_->is_int || !stgS_equal(&o_->shape, &s_->shape))
            return fail(STG_INVALID, "plan: vjp: upstream gradient %s%s must be a float tensor "
                        "of the output's shape %s", stgS_str(&s_->shape, b, sizeof b),
                        s_->is_int ? " (int32)" : "", stgS_str(&o_->shape, c, sizeof c));
    } else if (loss.id >= 0 && g->nodes[loss.id].is_int) {
        return fail(STG_INVALID, "plan: loss %s is an int32 tensor; it must be a float scalar",
                    stgS_str(&g->nodes[loss.id].shape, b, sizeof b));
    } else if (loss.id >= 0 && g->nodes[loss.id].shape.nd != 0)
        return fail(STG_INVALID, "plan: loss %s must be a scalar (0 dims)",
                    stgS_str(&g->nodes[loss.id].shape, b, sizeof b));
    if (o->share_params && !o->inference)
        return fail(STG_INVALID, "plan: share_params is for inference plans (opts.inference)");
    if (o->inference && loss.id >= 0)
        return fail(STG_INVALID, "plan: an inference plan has no loss (pass an invalid tensor, "
                    "{-1}, and keep the tensors to read with stg_graph_keep)");
    const stg_collective *hook = o->collective;
    if (hook && (o->inference || (loss.id < 0 && seed.id < 0)))
        return fail(STG_INVALID, "plan: a collective hook is for training plans (a loss or a "
                    "vjp), not for %s", o->inference ? "inference plans" : "forward-only plans");
    if (hook && (hook->size < 1 || hook->rank < 0 || hook->rank >= hook->size || !hook->start_sum ||
              !hook->wait_sum))
        return fail(STG_INVALID, "plan: collective: size %d and rank %d (need size >= 1 and 0 <= "
                    "rank < size) and start_sum %s, wait_sum %s (both needed)", hook->size, hook->rank,
                    hook->start_sum ? "set" : "NULL", hook->wait_sum ? "set" : "NULL");
    if (o->threads < 0 || o->threads > 1024)
        return fail(STG_INVALID, "plan: threads = %d (need 0 to 1024)", o->threads);
    if (o->profile < 0 || o->profile > 1000000)
        return fail(STG_INVALID, "plan: profile = %d steps (need 0 to 1000000)", o->profile);
    if (o->wait != STG_WAIT_SPIN_YIELD && o->wait != STG_WAIT_SPIN && o->wait != STG_WAIT_PASSIVE)
        return fail(STG_INVALID, "plan: unknown wait policy %d", (int)o->wait);
    int cpus = o->wait == STG_WAIT_SPIN ? stgR_usable_cpus() : INT_MAX;
    if (o->threads > cpus)
        return fail(STG_INVALID, "plan: wait policy SPIN needs a CPU for each thread: %d threads, "
                    "%d CPUs available to this process (spinning threads that share a CPU wait "
                    "for each other's time slices)", o->threads, cpus);
    if (o->guard != STG_GUARD_GRADIENTS && o->guard != STG_GUARD_LOSS)
        return fail(STG_INVALID, "plan: unknown guard %d", (int)o->guard);
    if (o->optimizer < STG_OPTIM_NONE || o->optimizer > STG_OPTIM_ADAMW)
        return fail(STG_INVALID, "plan: unknown optimizer %d", (int)o->optimizer);
    if (!finite_nonneg(o->lr) || !finite_nonneg(o->momentum) ||
        !finite_nonneg(o->weight_decay) || !finite_nonneg(o->clip_norm) ||
        !finite_nonneg(o->clip_value))
        return fail(STG_INVALID, "plan: lr %g, momentum %g, weight_decay %g, clip_norm %g and "
                    "clip_value %g must all be finite and >= 0", (double)o->lr, (double)o->momentum,
                    (double)o->weight_decay, (double)o->clip_norm, (double)o->clip_value);
    if (!stg_gemm_kernel_name(o->gemm_kernel))
        return fail(STG_INVALID, "plan: unknown gemm_kernel %d", (int)o->gemm_kernel);
    if (o->nesterov && !(o->momentum > 0.0f))
        return fail(STG_INVALID, "plan: Nesterov momentum needs momentum > 0");
    if (!(o->beta1 >= 0.0f && o->beta1 < 1.0f) || !(o->beta2 >= 0.0f && o->beta2 < 1.0f) ||
        !(o->eps > 0.0f) || !isfinite(o->eps))
        return fail(STG_INVALID, "plan: beta1 %g and beta2 %g must be in [0, 1) and eps %g finite "
                    "and > 0",
                    (double)o->beta1, (double)o->beta2, (double)o->eps);
    return STG_OK;
}

/* Steps 1-4 without the arena: enough to know its size. */
static stg_status build(const stg_graph *g, stg_tensor loss, stg_tensor seed,
                        const stg_plan_options *o, stg_plan **out)
{
    stg_status st = validate(g, loss, seed, o);
    if (st != STG_OK)
        return st;
    stg_plan *p = calloc(1, sizeof *p);
    if (!p || !(p->g = stgG_clone(g))) {
        free(p);
        return fail(STG_NOMEM, "plan: out of memory copying the graph");
    }
    *out = p;
    if (!stgK_kernel_choose(o->gemm_kernel, &p->kern, p->kern_why, sizeof p->kern_why))
        return fail(STG_INVALID, "plan: %s", p->kern_why);
    p->nuser = g->n;
    p->loss = loss.id;
    p->seed = seed.id;
    p->threads = o->threads ? o->threads : 1;
    p->opt = *o;
    p->opt.arena = NULL;
    p->opt.arena_bytes = 0;
    if (!(p->value = malloc(count_of(g->n) * sizeof *p->value)))
        return fail(STG_NOMEM, "plan: out of memory");
    for (int32_t i = 0; i < g->n; i++)
        p->value[i] = -1;
    if ((st = extend(p)) != STG_OK)
        return st;
    int32_t n = p->g->n;
    scratch s = {calloc(count_of(n), sizeof(bool)), calloc(count_of(n), sizeof(bool)),
                 calloc(count_of(n), sizeof(int32_t)), calloc(count_of(n), sizeof(int32_t))};
    p->bufof = calloc(count_of(n), sizeof *p->bufof);
    if (!s.needed || !s.persistent || !s.pos || !s.last || !p->bufof)
        st = fail(STG_NOMEM, "plan: out of memory");
    if (st == STG_OK)
        st = schedule(p, &s);
    if (st == STG_OK)
        st = prepare_nodes(p);
    if (st == STG_OK) {
        last_uses(p, &s);
        st = assign_buffers(p, &s);
    }
    if (st == STG_OK)
        st = place(p);
    free(s.needed);
    free(s.persistent);
    free(s.pos);
    free(s.last);
    return st;
}

STG_API void stg_plan_free(stg_plan *p)
{
    if (!p)
        return;
    for (int32_t i = 0; p->sched && i < p->nsched; i++)
        free(p->sched[i].desc);
    stgR_pool_free(p->pool);
    stgX_profile_free(p->prof);
    if (p->own_arena)
        free(p->arena);
    free(p->sched);
    free(p->bufs);
    free(p->bufof);
    free(p->grad);
    free(p->value);
    stgC_free(p->region);
    stg_graph_free(p->g);
    free(p);
}

STG_API stg_status stg_plan_arena_size(const stg_graph *g, stg_tensor loss,
                                       const stg_plan_options *opts, size_t *bytes)
{
    stg_plan_options def;
    if (!opts)
        stg_plan_options_init(&def), opts = &def;
    if (!bytes)
        return fail(STG_INVALID, "plan: 'bytes' is NULL");
    stg_plan *p = NULL;
    stg_status st = build(g, loss, stgG_t(-1), opts, &p);
    if (st == STG_OK) {
        *bytes = p->arena_bytes;
        last_message[0] = '\0';
    }
    stg_plan_free(p);
    return st;
}

static stg_status attach_arena(stg_plan *p, const stg_plan_options *o)
{
    if (o->arena) {
        if ((uintptr_t)o->arena % STG_ALIGN != 0 || o->arena_bytes < p->arena_bytes)
            return fail(STG_SMALL_ARENA,
                        "plan: the arena given (%zu bytes at %p) must hold %zu bytes and be "
                        "aligned to %d bytes",
                        o->arena_bytes, o->arena, p->arena_bytes, STG_ALIGN);
        p->arena = o->arena;
    } else {
        p->arena = aligned_alloc(STG_ALIGN, p->arena_bytes ? p->arena_bytes : STG_ALIGN);
        if (!p->arena)
            return fail(STG_NOMEM, "plan: out of memory for a %zu-byte arena", p->arena_bytes);
        p->own_arena = true;
    }
    memset(p->arena, 0, p->arena_bytes);
    for (int32_t i = 0; i < p->g->n; i++) {
        const stg_node *n = &p->g->nodes[i];
        if ((n->role == STG_ROLE_CONST || n->role == STG_ROLE_STAT) &&
            !p->bufs[p->bufof[i]].external)
            memcpy(stgP_ptr(p, i), n->data, (size_t)stgS_numel(&n->shape) * sizeof(float));
    }
    return STG_OK;
}

static stg_status start_threads(stg_plan *p)
{
    char msg[160];
    if (stgR_pool_new(p->threads, p->opt.wait, p->opt.worker_start, p->opt.worker_arg, &p->pool,
                      msg, sizeof msg) != STG_OK)
        return fail(STG_NOMEM, "%s", msg);
    return STG_OK;
}

static stg_status create(const stg_graph *g, stg_tensor loss, stg_tensor seed,
                         const stg_plan_options *opts, stg_plan **out)
{
    stg_plan_options def;
    if (!opts)
        stg_plan_options_init(&def), opts = &def;
    if (!out)
        return fail(STG_INVALID, "plan: 'out' is NULL");
    *out = NULL;
    stg_plan *p = NULL;
    stg_status st = build(g, loss, seed, opts, &p);
    if (st == STG_OK)
        st = attach_arena(p, opts);
    if (st == STG_OK)
        st = bind_nodes(p);
    if (st == STG_OK)
        st = start_threads(p);
    if (st == STG_OK && opts->profile > 0 && stgX_profile_new(p, opts->profile) != STG_OK)
        st = fail(STG_NOMEM, "plan: out of memory for the timings of %d steps", opts->profile);
    if (st != STG_OK) {
        stg_plan_free(p);
        return st;
    }
    last_message[0] = '\0';
    *out = p;
    return STG_OK;
}

STG_API stg_status stg_plan_create(const stg_graph *g, stg_tensor loss,
                                   const stg_plan_options *opts, stg_plan **out)
{
    return create(g, loss, stgG_t(-1), opts, out);
}

STG_API stg_status stg_plan_create_vjp(const stg_graph *g, stg_tensor out, stg_tensor gout,
                                       const stg_plan_options *opts, stg_plan **plan)
{
    if (gout.id < 0) {
        if (plan)
            *plan = NULL;
        return fail(STG_INVALID, "plan: vjp: the upstream gradient is not a valid tensor");
    }
    return create(g, out, gout, opts, plan);
}
