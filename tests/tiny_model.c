/* The data-parallel tests' model (tiny_model.h). */
#include <string.h>

#include "tiny_model.h"

model build(int batch)
{
    model m = {.g = stg_graph_new()};
    int64_t xd[2] = {batch, IN}, w1d[2] = {IN, HID}, w2d[2] = {HID, OUT}, h = HID, o = OUT;
    m.x = stg_input(m.g, "x", 2, xd);
    m.y = stg_input_i32(m.g, "y", 1, (int64_t[]){batch});
    m.w1 = stg_param(m.g, "w1", 2, w1d);
    m.b1 = stg_param(m.g, "b1", 1, &h);
    m.w2 = stg_param(m.g, "w2", 2, w2d);
    m.b2 = stg_param(m.g, "b2", 1, &o);
    stg_tensor hid = stg_tanh(m.g, stg_add(m.g, stg_matmul(m.g, m.x, m.w1), m.b1));
    stg_tensor logits = stg_add(m.g, stg_matmul(m.g, hid, m.w2), m.b2);
    m.loss = stg_softmax_cross_entropy(m.g, logits, m.y, STG_REDUCE_MEAN);
    return m;
}

void options(stg_plan_options *o, const stg_collective *c)
{
    stg_plan_options_init(o);
    o->optimizer = STG_OPTIM_ADAM;
    o->lr = 0.05f;
    o->clip_norm = 0.5f; /* small enough to clip: it must see the global norm */
    o->collective = c;
}

stg_status init_params(stg_plan *p, const model *m)
{
    stg_tensor ps[4] = {m->w1, m->b1, m->w2, m->b2};
    stg_status s = STG_OK;
    for (int k = 0; k < 4 && s == STG_OK; k++)
        s = stg_plan_init(p, ps[k], STG_INIT_UNIFORM, -0.5f, 0.5f, 7 + (uint64_t)k);
    return s;
}

/* Inputs in [-2, 2) from a 64-bit LCG of (step, element); labels cycle. */
static void global_batch(int s, float *x, int32_t *y)
{
    uint64_t state = 0x9e3779b97f4a7c15ull * (uint64_t)(s + 1);
    for (int i = 0; i < GLOBAL * IN; i++) {
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = -2.0f + 4.0f * (float)(state >> 40) / (float)(1 << 24);
    }
    for (int i = 0; i < GLOBAL; i++)
        y[i] = (i * 7 + s * 5) % OUT;
}

void load_share(stg_plan *p, const model *m, int s, int rank, int size)
{
    float x[GLOBAL * IN];
    int32_t y[GLOBAL];
    global_batch(s, x, y);
    int per = GLOBAL / size;
    memcpy(stg_plan_data(p, m->x), x + rank * per * IN, sizeof(float) * (size_t)(per * IN));
    memcpy(stg_plan_data_i32(p, m->y), y + rank * per, sizeof(int32_t) * (size_t)per);
}

void params_of(stg_plan *p, const model *m, float *out)
{
    stg_tensor ps[4] = {m->w1, m->b1, m->w2, m->b2};
    int64_t n[4] = {IN * HID, HID, HID * OUT, OUT};
    for (int k = 0; k < 4; k++) {
        memcpy(out, stg_plan_data(p, ps[k]), sizeof(float) * (size_t)n[k]);
        out += n[k];
    }
}
