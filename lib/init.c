/*
 * Initialisers and the generator behind them.  Value i of a tensor is a pure
 * function of (seed, i): a SplitMix64 finaliser applied to seed and i gives
 * 64 random bits, so no state is carried from one value to the next and the
 * result cannot depend on threads or on the order of calls.  Uniform values
 * take the top 24 bits (exact in float); normal values come from the
 * Box-Muller transform of the uniforms at counters 2i and 2i + 1.
 */
#include <math.h>

#include "internal.h"

uint64_t stgK_mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

float stgK_unit(uint64_t seed, uint64_t i)
{
    uint64_t bits = stgK_mix(stgK_mix(seed + 0x9E3779B97F4A7C15ull) ^
                             (i * 0xD1B54A32D192ED03ull + 1));
    return (float)(bits >> 40) / (float)(1ull << 24);
}

static double unit(uint64_t seed, uint64_t i)
{
    return (double)stgK_unit(seed, i);
}

static double normal(uint64_t seed, uint64_t i)
{
    double u1 = 1.0 - unit(seed, 2 * i), u2 = unit(seed, 2 * i + 1); /* u1 in (0, 1] */
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

static void fans(const stg_shape *s, double *fan_in, double *fan_out)
{
    if (s->nd == 0) {
        *fan_in = *fan_out = 1.0;
        return;
    }
    if (s->nd >= 3) { /* a convolution's weight (out, in/groups, kernel...), as PyTorch reads it */
        double field = (double)stgS_numel(s) / (double)(s->d[0] * s->d[1]);
        *fan_in = (double)s->d[1] * field;
        *fan_out = (double)s->d[0] * field;
        return;
    }
    *fan_out = (double)s->d[s->nd - 1];
    *fan_in = s->nd == 1 ? *fan_out : (double)stgS_numel(s) / *fan_out;
}

STG_API stg_status stg_plan_init(stg_plan *p, stg_tensor t, stg_init_kind kind, float a, float b,
                                 uint64_t seed)
{
    float *x = stg_plan_data(p, t);
    if (!x || !isfinite(a) || !isfinite(b))
        return STG_INVALID;
    const stg_shape *s = &p->g->nodes[t.id].shape;
    int64_t n = stgS_numel(s);
    double fan_in, fan_out, lo = 0, hi = 0, mean = 0, std = -1, value = 0;
    fans(s, &fan_in, &fan_out);
    double gain_x = a != 0.0f ? a : 1.0, gain_k = sqrt(2.0 / (1.0 + (double)a * a));
    switch (kind) {
    case STG_INIT_ZEROS: value = 0; break;
    case STG_INIT_ONES: value = 1; break;
    case STG_INIT_CONSTANT: value = a; break;
    case STG_INIT_UNIFORM:
        if (!(b > a))
            return STG_INVALID;
        lo = a, hi = b;
        break;
    case STG_INIT_NORMAL:
        if (!(b >= 0))
            return STG_INVALID;
        mean = a, std = b;
        break;
    case STG_INIT_XAVIER_UNIFORM:
        hi = gain_x * sqrt(6.0 / (fan_in + fan_out)), lo = -hi;
        break;
    case STG_INIT_XAVIER_NORMAL: std = gain_x * sqrt(2.0 / (fan_in + fan_out)); break;
    case STG_INIT_KAIMING_UNIFORM: hi = gain_k * sqrt(3.0 / fan_in), lo = -hi; break;
    case STG_INIT_KAIMING_NORMAL: std = gain_k / sqrt(fan_in); break;
    default: return STG_INVALID;
    }
    for (int64_t i = 0; i < n; i++) {
        if (hi > lo)
            x[i] = (float)(lo + (hi - lo) * unit(seed, (uint64_t)i));
        else if (std >= 0)
            x[i] = (float)(mean + std * normal(seed, (uint64_t)i));
        else
            x[i] = (float)value;
    }
    return STG_OK;
}
