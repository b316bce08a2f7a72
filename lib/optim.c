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

static void run_sgd(const stg_pnode *pn, int tid, int nt)
{
    const stg_plan *pl = pn->plan;
    const stg_plan_options *o = &pl->opt;
    int64_t lo, hi;
    share(pn, tid, nt, &lo, &hi);
    if (hi <= lo)
        return;
    float *p = pn->out + lo;
    const float *g = pn->in[1] + lo;
    if (pn->node->nin > 2)
        sgd_momentum(hi - lo, p, g, (float *)pn->in[2] + lo, pl->lr_now, o->weight_decay,
                     o->momentum, o->nesterov != 0);
    else
        sgd_plain(hi - lo, p, g, pl->lr_now, o->weight_decay);
}

STG_CLONES static void adam(int64_t n, float *restrict p, const float *restrict g,
                            float *restrict m, float *restrict v, const stg_plan *pl)
{
    const stg_plan_options *o = &pl->opt;
    bool decoupled = o->optimizer == STG_OPTIM_ADAMW;
    float b1 = o->beta1, b2 = o->beta2, eps = o->eps, wd = o->weight_decay;
    float step = pl->lr_now / pl->bias1, root2 = sqrtf(pl->bias2), shrink = 1.0f - pl->lr_now * wd;
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

static void run_adam(const stg_pnode *pn, int tid, int nt)
{
    int64_t lo, hi;
    share(pn, tid, nt, &lo, &hi);
    if (hi > lo)
        adam(hi - lo, pn->out + lo, pn->in[1] + lo, (float *)pn->in[2] + lo,
             (float *)pn->in[3] + lo, pn->plan);
}

static double flops_update(const stg_graph *g, const stg_node *n)
{
    (void)g;
    return (n->op == &stg_op_adam ? 12.0 : 4.0) * (double)stgS_numel(&n->shape);
}

/*
 * The guard: a step whose loss, or (STG_GUARD_GRADIENTS) any parameter's
 * gradient, is not finite stops before any update.  A guard node reads the
 * loss (the first guard node only) and up to STG_MAX_INPUTS gradients; the
 * threads share the gradients' elements.  It only raises the failure: the
 * message, which must not depend on which thread saw what first, is written
 * after the step (run.c).
 */
typedef struct guard_desc {
    int first;                         /* first gradient input: 1 after the loss, else 0 */
    int64_t start[STG_MAX_INPUTS + 1]; /* where each gradient starts in the shared range */
} guard_desc;

static stg_status prepare_guard(stg_plan *p, stg_pnode *pn)
{
    guard_desc *d = stgP_desc(pn, sizeof *d);
    if (!d)
        return STG_NOMEM;
    const stg_node *n = pn->node;
    d->first = n->in[0] == p->loss ? 1 : 0;
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

static void run_guard(const stg_pnode *pn, int tid, int nt)
{
    const guard_desc *d = pn->desc;
    const stg_node *n = pn->node;
    if (d->first && tid == 0 && !isfinite(pn->in[0][0])) {
        stgR_fail(pn->plan, STG_NUMERIC, "step: the loss is not finite");
        return;
    }
    int64_t lo, hi;
    stgR_share(pn, d->start[n->nin - d->first], tid, nt, &lo, &hi);
    for (int j = d->first; j < n->nin; j++) {
        int64_t a = d->start[j - d->first], b = d->start[j - d->first + 1];
        int64_t from = lo > a ? lo : a, to = hi < b ? hi : b;
        if (from < to && !all_finite(to - from, pn->in[j] + (from - a))) {
            stgR_fail(pn->plan, STG_NUMERIC, "step: a gradient is not finite");
            return;
        }
    }
}

const stg_op stg_op_sgd = {"sgd", STG_OPF_UPDATE | STG_OPF_EFFECT, NULL, run_sgd, NULL, flops_update};
const stg_op stg_op_adam = {"adam", STG_OPF_UPDATE | STG_OPF_EFFECT, NULL, run_adam, NULL, flops_update};
const stg_op stg_op_guard = {"guard", STG_OPF_EFFECT, prepare_guard, run_guard, NULL,
                             stgO_no_flops};

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
        for (int i = 0; o->guard == STG_GUARD_GRADIENTS && i < n; i++) {
            if (nin == STG_MAX_INPUTS) {
                stgG_add(g, &stg_op_guard, nin, in, &(stg_shape){0}, NULL);
                nin = 0;
            }
            in[nin++] = grads[i];
        }
        stgG_add(g, &stg_op_guard, nin, in, &(stg_shape){0}, NULL);
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

const char *stgO_state_name(const stg_op *update, int input)
{
    if (update == &stg_op_sgd && input == 2)
        return "momentum_buffer";
    if (update == &stg_op_adam && (input == 2 || input == 3))
        return input == 2 ? "exp_avg" : "exp_avg_sq";
    return NULL;
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

void stgO_begin_step(stg_plan *p)
{
    double t = (double)(p->steps + 1);
    p->lr_now = (float)scheduled_lr(p);
    p->bias1 = (float)(1.0 - pow(p->opt.beta1, t));
    p->bias2 = (float)(1.0 - pow(p->opt.beta2, t));
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
