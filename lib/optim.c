/*
 * Optimizers, run as the last nodes of a step, with PyTorch's formulas:
 *
 *   SGD    g += wd p;  b = mu b + g;  g = nesterov ? g + mu b : b;  p -= lr g
 *          (b starts at 0, so the first b is g, as in PyTorch; no momentum: p -= lr g)
 *   Adam   g += wd p;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
 *          p -= (lr / (1-b1^t)) m / (sqrt(v) / sqrt(1-b2^t) + eps)
 *   AdamW  p *= 1 - lr wd, then Adam without the wd term
 *
 * An update node writes its parameter (input 0) and its state (inputs 2..)
 * in place from the parameter's gradient (input 1); the plan puts a barrier
 * before the first update, after the guards that check the loss and the
 * gradients, so a step that fails never touches a parameter.  Gradient clipping is made of
 * ordinary nodes placed between the gradients and the updates.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static void share(const stg_pnode *pn, int tid, int nt, int64_t *lo, int64_t *hi)
{
    stgR_share(pn, stgS_numel(&pn->node->shape), tid, nt, lo, hi);
}

/* One loop per case, branch-free and with restrict pointers, so each
 * vectorises; every case does the same arithmetic per element. */
STG_CLONES static void sgd_plain(int64_t n, float *restrict p, const float *restrict g, float lr,
                                 float wd)
{
    if (wd == 0.0f)
        for (int64_t i = 0; i < n; i++)
            p[i] -= lr * g[i];
    else
        for (int64_t i = 0; i < n; i++)
            p[i] -= lr * (g[i] + wd * p[i]);
}

STG_CLONES static void sgd_momentum(int64_t n, float *restrict p, const float *restrict g,
                                    float *restrict b, float lr, float wd, float mu, bool nesterov)
{
    for (int64_t i = 0; i < n; i++) {
        float d = wd == 0.0f ? g[i] : g[i] + wd * p[i];
        b[i] = mu * b[i] + d;
        p[i] -= lr * (nesterov ? d + mu * b[i] : b[i]);
    }
}

/* An update's hyper-parameters, copied from the plan's options at plan
 * time; the learning rate and bias corrections come with each step. */
typedef struct update_desc {
    float momentum, weight_decay, beta1, beta2, eps;
    bool nesterov, decoupled;
} update_desc;

static stg_status prepare_update(stg_prep *cx, stg_pnode *pn)
{
    update_desc *d = stgP_opdata(cx, pn, sizeof *d);
    if (!d)
        return STG_NOMEM;
    const stg_plan_options *o = cx->opt;
    *d = (update_desc){o->momentum, o->weight_decay, o->beta1, o->beta2, o->eps,
                       o->nesterov != 0, o->optimizer == STG_OPTIM_ADAMW};
    return STG_OK;
}

static void run_sgd(const stg_pnode *pn, const stg_step *sx, int tid, int nt)
{
    const update_desc *d = pn->desc;
    int64_t lo, hi;
    share(pn, tid, nt, &lo, &hi);
    if (hi <= lo)
        return;
    float *p = pn->out + lo;
    const float *g = pn->in[1] + lo;
    if (pn->node->nin > 2)
        sgd_momentum(hi - lo, p, g, (float *)pn->in[2] + lo, sx->lr, d->weight_decay,
                     d->momentum, d->nesterov);
    else
        sgd_plain(hi - lo, p, g, sx->lr, d->weight_decay);
}

STG_CLONES static void adam(int64_t n, float *restrict p, const float *restrict g,
                            float *restrict m, float *restrict v, const update_desc *h,
                            const stg_step *sx)
{
    bool decoupled = h->decoupled;
    float b1 = h->beta1, b2 = h->beta2, eps = h->eps, wd = h->weight_decay;
    float step = sx->lr / sx->bias1, root2 = sqrtf(sx->bias2), shrink = 1.0f - sx->lr * wd;
    for (int64_t i = 0; i < n; i++) {
        float d = g[i];
        if (decoupled)
            p[i] *= shrink;
        else if (wd != 0.0f)
            d += wd * p[i];
        m[i] = m[i] * b1 + d * (1.0f - b1);
        v[i] = v[i] * b2 + d * d * (1.0f - b2);
        p[i] -= step * m[i] / (sqrtf(v[i]) / root2 + eps);
    }
}

static void run_adam(const stg_pnode *pn, const stg_step *sx, int tid, int nt)
{
    int64_t lo, hi;
    share(pn, tid, nt, &lo, &hi);
    if (hi > lo)
        adam(hi - lo, pn->out + lo, pn->in[1] + lo, (float *)pn->in[2] + lo,
             (float *)pn->in[3] + lo, pn->desc, sx);
}

/* An update reads its inputs once and writes the parameter and its state
 * in place. */
static void traffic_update(const stg_graph *g, const stg_node *n, double *read, double *written)
{
    *read = *written = 0.0;
    for (int j = 0; j < n->nin; j++) {
        double bytes = 4.0 * (double)stgS_numel(&g->nodes[n->in[j]].shape);
        *read += bytes;
        if (j != 1)
            *written += bytes;
    }
}

static double flops_sgd(const stg_graph *g, const stg_node *n)
{
    (void)g;
    return 4.0 * (double)stgS_numel(&n->shape);
}

static double flops_adam(const stg_graph *g, const stg_node *n)
{
    (void)g;
    return 12.0 * (double)stgS_numel(&n->shape);
}

/* Checkpoint names of the state inputs, as PyTorch's optimizers call them. */
static const char *state_sgd(int input)
{
    return input == 2 ? "momentum_buffer" : NULL;
}

static const char *state_adam(int input)
{
    return input == 2 ? "exp_avg" : input == 3 ? "exp_avg_sq" : NULL;
}

/*
 * The guard: a step whose loss, or (STG_GUARD_GRADIENTS) any parameter's
 * gradient, is not finite stops before any update.  A guard node reads the
 * loss (the first guard node only) and up to STG_MAX_INPUTS gradients; the
 * threads share the gradients' elements.  It only raises the failure: the
 * message, which must not depend on which thread saw what first, is written
 * after the step (run.c).
 */
/* Whether input 0 is the loss (the first guard node only). */
typedef struct guard_attr {
    int reads_loss;
} guard_attr;

static void print_guard(const void *attr, char *buf, size_t len)
{
    snprintf(buf, len, "%s", ((const guard_attr *)attr)->reads_loss ? "loss" : "");
}

typedef struct guard_desc {
    int first;                         /* first gradient input: 1 after the loss, else 0 */
    int64_t start[STG_MAX_INPUTS + 1]; /* where each gradient starts in the shared range */
} guard_desc;

static stg_status prepare_guard(stg_prep *cx, stg_pnode *pn)
{
    guard_desc *d = stgP_opdata(cx, pn, sizeof *d);
    if (!d)
        return STG_NOMEM;
    const stg_node *n = pn->node;
    d->first = ((const guard_attr *)n->attr)->reads_loss;
    for (int j = d->first; j < n->nin; j++)
        d->start[j - d->first + 1] = d->start[j - d->first] + stgS_numel(&pn->innode[j]->shape);
    pn->serial = d->start[n->nin - d->first] < STG_GRAIN;
    return STG_OK;
}

/* Whether x[0..n) is all finite: an infinity or a NaN has every exponent
 * bit set.  Integer tests OR-ed together vectorise with no chain of
 * floating-point adds (a sum of x * 0 ran at half the speed on Zen 3). */
STG_CLONES static bool all_finite(int64_t n, const float *x)
{
    uint32_t bad = 0;
    for (int64_t i = 0; i < n; i++) {
        uint32_t v;
        memcpy(&v, &x[i], sizeof v);
        bad |= (v & 0x7f800000u) == 0x7f800000u;
    }
    return bad == 0;
}

static void run_guard(const stg_pnode *pn, const stg_step *sx, int tid, int nt)
{
    const guard_desc *d = pn->desc;
    const stg_node *n = pn->node;
    if (d->first && tid == 0 && !isfinite(pn->in[0][0])) {
        stgR_fail(sx, STG_NUMERIC, "step: the loss is not finite");
        return;
    }
    int64_t lo, hi;
    stgR_share(pn, d->start[n->nin - d->first], tid, nt, &lo, &hi);
    for (int j = d->first; j < n->nin; j++) {
        int64_t a = d->start[j - d->first], b = d->start[j - d->first + 1];
        int64_t from = lo > a ? lo : a, to = hi < b ? hi : b;
        if (from < to && !all_finite(to - from, pn->in[j] + (from - a))) {
            stgR_fail(sx, STG_NUMERIC, "step: a gradient is not finite");
            return;
        }
    }
}

const stg_op stg_op_sgd = {
    .name = "sgd",
    .flags = STG_OPF_UPDATE | STG_OPF_EFFECT,
    .prepare = prepare_update,
    .traffic = traffic_update,
    .run = run_sgd,
    .flops = flops_sgd,
    .state = state_sgd,
};
const stg_op stg_op_adam = {
    .name = "adam",
    .flags = STG_OPF_UPDATE | STG_OPF_EFFECT,
    .prepare = prepare_update,
    .traffic = traffic_update,
    .run = run_adam,
    .flops = flops_adam,
    .state = state_adam,
};
const stg_op stg_op_guard = {
    .name = "guard",
    .flags = STG_OPF_EFFECT,
    .attr_size = sizeof(guard_attr),
    .print_attr = print_guard,
    .prepare = prepare_guard,
    .run = run_guard,
};

/* ---- explaining a failed guard --------------------------------------------- */

/* A value for a message: "nan" whatever the NaN's sign bit. */
static const char *number(float v, char *buf, size_t len)
{
    if (isnan(v))
        return "nan";
    snprintf(buf, len, "%g", (double)v);
    return buf;
}

/* The first non-finite element of n values, or -1. */
static int64_t first_nonfinite(const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return i;
    return -1;
}

/* The parameter whose gradient (or clipped gradient) node 'id' is. */
static const char *gradient_of(const stg_plan *p, int32_t id)
{
    int32_t param = -1;
    for (int32_t i = 0; i < p->nuser && param < 0; i++)
        if (p->grad[i] == id)
            param = i;
    for (int32_t i = 0; i < p->nsched && param < 0; i++) {
        const stg_node *n = p->sched[i].node;
        if ((n->op->flags & STG_OPF_UPDATE) && n->in[1] == id)
            param = n->in[0];
    }
    return param >= 0 && p->g->nodes[param].name ? p->g->nodes[param].name : "(unnamed)";
}

/* The first guarded gradient (in the guards' order) that is not finite,
 * described into 'what'; false if there is none. */
static bool first_bad_gradient(const stg_plan *p, int32_t guard, char *what, size_t len)
{
    char nb[32];
    for (int32_t i = guard; i < p->nsched; i++) {
        const stg_node *n = p->sched[i].node;
        for (int j = 0; n->op == &stg_op_guard && j < n->nin; j++) {
            const float *x = stgP_ptr(p, n->in[j]);
            int64_t e = first_nonfinite(x, stgS_numel(&p->g->nodes[n->in[j]].shape));
            if (n->in[j] != p->loss && e >= 0) {
                snprintf(what, len, "the gradient of '%s' is %s at element %lld",
                         gradient_of(p, n->in[j]), number(x[e], nb, sizeof nb), (long long)e);
                return true;
            }
        }
    }
    return false;
}

/* What a guard found, said the same way whichever thread found it: the
 * loss, or the first gradient that is not finite; then the first node of
 * the step whose output is not finite, found by running the nodes before
 * the guards again one at a time on this thread and checking each output
 * (no update ran, so the leaves are as they were; nothing is allocated). */
void stgO_explain_nonfinite(stg_plan *p, const stg_step *sx)
{
    int32_t guard = 0;
    while (guard < p->nsched && p->sched[guard].node->op != &stg_op_guard)
        guard++;
    if (guard == p->nsched)
        return;
    char what[200], nb[32];
    float loss = stgP_ptr(p, p->loss)[0];
    if (isfinite(loss) && !first_bad_gradient(p, guard, what, sizeof what))
        return; /* the guard saw what is no longer there: keep its message */
    if (!isfinite(loss))
        snprintf(what, sizeof what, "the loss is %s", number(loss, nb, sizeof nb));
    char first[240] = "";
    for (int32_t i = 0; i < guard; i++) {
        const stg_pnode *pn = &p->sched[i];
        if (pn->node->op->flags & STG_OPF_COLLECTIVE)
            continue; /* the other processes are not running this again */
        pn->node->op->run(pn, sx, 0, 1);
        if (pn->node->is_int || (pn->node->op->flags & STG_OPF_EFFECT))
            continue;
        int64_t e = first_nonfinite(pn->out, stgS_numel(&pn->node->shape));
        if (e < 0)
            continue;
        stg_node_info info;
        stgX_node_info(p, i, &info);
        char shape[96];
        snprintf(first, sizeof first, "; the first non-finite value, %s, is element %lld of node "
                 "%d: %s %s%s%s%s", number(pn->out[e], nb, sizeof nb), (long long)e, (int)i,
                 stg_phase_name(info.phase), info.op, *info.about ? " (" : "", info.about,
                 *info.about ? ")" : "");
        size_t used = strlen(first);
        snprintf(first + used, sizeof first - used, " %s",
                 stgS_str(&pn->node->shape, shape, sizeof shape));
        break;
    }
    if (!first[0] && p->region)
        snprintf(first, sizeof first, "; this process's own values are finite: the sum over "
                 "processes brought it from another");
    snprintf(sx->fault->msg, sizeof sx->fault->msg,
             "step: %s%s; parameters, optimizer state and step count are unchanged", what, first);
}

/* ---- building the update nodes ------------------------------------------- */

static stg_tensor state_leaf(stg_graph *g, int32_t param)
{
    stg_shape s = g->nodes[param].shape;
    stg_tensor t = stgG_add(g, &stg_op_state, 0, NULL, &s, NULL);
    if (t.id >= 0)
        g->nodes[t.id].role = STG_ROLE_STATE;
    return t;
}

/* clip_grad_norm_: every gradient times min(1, max / (||all gradients|| + 1e-6)). */
static void clip_by_norm(stg_graph *g, int32_t *grads, int n, float max_norm)
{
    stg_tensor total = {-1};
    for (int i = 0; i < n; i++) {
        stg_tensor gi = stgG_t(grads[i]);
        stg_tensor sq = stg_sum(g, stg_mul(g, gi, gi), 0, NULL, 0);
        total = total.id < 0 ? sq : stg_add(g, total, sq);
    }
    stg_tensor norm = stg_add(g, stg_sqrt(g, total), stg_scalar(g, 1e-6f));
    stg_tensor coef = stg_clamp(g, stg_div(g, stg_scalar(g, max_norm), norm), 0.0f, 1.0f);
    for (int i = 0; i < n; i++)
        grads[i] = stg_mul(g, stgG_t(grads[i]), coef).id;
}

stg_status stgO_add_updates(stg_plan *p)
{
    stg_graph *g = p->g;
    const stg_plan_options *o = &p->opt;
    int n = 0;
    int32_t *params = malloc(sizeof(int32_t) * (size_t)(p->nuser + 1));
    int32_t *grads = malloc(sizeof(int32_t) * (size_t)(p->nuser + 1));
    if (!params || !grads) {
        free(params);
        free(grads);
        return STG_NOMEM;
    }
    for (int32_t i = 0; i < p->nuser; i++)
        if (g->nodes[i].role == STG_ROLE_PARAM && p->grad[i] >= 0) {
            params[n] = i;
            grads[n++] = p->grad[i];
        }
    if (o->optimizer != STG_OPTIM_NONE && n > 0) {
        for (int i = 0; o->clip_value > 0.0f && i < n; i++)
            grads[i] = stg_clamp(g, stgG_t(grads[i]), -o->clip_value, o->clip_value).id;
        if (o->clip_norm > 0.0f)
            clip_by_norm(g, grads, n, o->clip_norm);
    }
    /* every training step with a loss fails on a non-finite one, updates or
     * not (the header promises STG_NUMERIC with STG_OPTIM_NONE too), and by
     * default on a non-finite gradient; STG_MAX_INPUTS inputs per guard */
    if (p->loss >= 0 && p->seed < 0) {
        int32_t in[STG_MAX_INPUTS] = {p->loss};
        int nin = 1;
        guard_attr reads_loss = {1}, no_loss = {0};
        const guard_attr *at = &reads_loss;
        for (int i = 0; o->guard == STG_GUARD_GRADIENTS && i < n; i++) {
            if (nin == STG_MAX_INPUTS) {
                stgG_add(g, &stg_op_guard, nin, in, &(stg_shape){0}, at);
                nin = 0;
                at = &no_loss;
            }
            in[nin++] = grads[i];
        }
        stgG_add(g, &stg_op_guard, nin, in, &(stg_shape){0}, at);
        /* state the forward pass staged is written after the guard too */
        for (int32_t i = 0; i < p->nfwd && stgG_ok(g); i++)
            if (g->nodes[i].op->commit)
                g->nodes[i].op->commit(g, i);
    }
    for (int i = 0; o->optimizer != STG_OPTIM_NONE && i < n && stgG_ok(g); i++) {
        int32_t in[STG_MAX_INPUTS] = {params[i], grads[i]}, nin = 2;
        bool adam = o->optimizer == STG_OPTIM_ADAM || o->optimizer == STG_OPTIM_ADAMW;
        int nstate = adam ? 2 : o->momentum != 0.0f ? 1 : 0;
        for (int k = 0; k < nstate; k++)
            in[nin++] = state_leaf(g, params[i]).id;
        stg_shape s = g->nodes[params[i]].shape;
        stgG_add(g, adam ? &stg_op_adam : &stg_op_sgd, nin, in, &s, NULL);
    }
    free(params);
    free(grads);
    return g->status;
}

/* ---- per-step values ----------------------------------------------------- */

static double scheduled_lr(const stg_plan *p)
{
    const stg_schedule *s = &p->sched_lr;
    double lr = p->opt.lr, t = (double)p->steps;
    switch (s->kind) {
    case STG_SCHED_STEP:
        return lr * pow(s->gamma, floor(t / (double)s->step_size));
    case STG_SCHED_COSINE: /* past t_max it climbs back, as PyTorch's does */
        return s->lr_min + (lr - s->lr_min) * (1.0 + cos(M_PI * t / (double)s->t_max)) / 2.0;
    case STG_SCHED_CONSTANT:
    default:
        return lr;
    }
}

void stgO_step_scalars(const stg_plan *p, stg_step *sx)
{
    double t = (double)(p->steps + 1);
    sx->lr = (float)scheduled_lr(p);
    sx->bias1 = (float)(1.0 - pow(p->opt.beta1, t));
    sx->bias2 = (float)(1.0 - pow(p->opt.beta2, t));
}

STG_API stg_status stg_plan_set_schedule(stg_plan *p, const stg_schedule *s)
{
    if (!p || !s)
        return STG_INVALID;
    bool ok = (s->kind == STG_SCHED_CONSTANT) ||
              (s->kind == STG_SCHED_STEP && s->step_size > 0 && s->gamma > 0.0f &&
               isfinite(s->gamma)) ||
              (s->kind == STG_SCHED_COSINE && s->t_max > 0 && s->lr_min >= 0.0f &&
               isfinite(s->lr_min));
    if (!ok)
        return STG_INVALID;
    p->sched_lr = *s;
    return STG_OK;
}

STG_API float stg_plan_lr(const stg_plan *p)
{
    return p ? (float)scheduled_lr(p) : 0.0f;
}

STG_API int64_t stg_plan_steps(const stg_plan *p)
{
    return p ? p->steps : 0;
}

STG_API stg_status stg_plan_set_lr(stg_plan *p, float lr)
{
    if (!p || !(lr >= 0.0f) || !isfinite(lr))
        return STG_INVALID;
    p->opt.lr = lr;
    return STG_OK;
}
