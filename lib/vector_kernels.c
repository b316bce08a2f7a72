/*
 * The loops of the vector-shaped products (dot, matrix-vector, outer
 * product), which are bound by memory bandwidth rather than arithmetic.
 *
 * They are written with GCC vector types, eight floats wide, so that the
 * order of every sum is fixed by the length alone (not by what the compiler
 * chooses), and each is compiled for two instruction sets (STG_CLONES).
 * Matrix-vector loops take four rows (or columns) at a time so that each
 * load of the vector serves four of them.
 */
#include <string.h>

#include "internal.h"

typedef float v8 __attribute__((vector_size(32)));

/* GCC warns that passing such vectors without AVX differs in ABI; the
 * helpers below are static and inlined, so no call ever passes one. */
#pragma GCC diagnostic ignored "-Wpsabi"

static inline v8 load(const float *p)
{
    v8 v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void store(float *p, v8 v) { memcpy(p, &v, sizeof v); }

/* The lanes summed pairwise: a fixed tree. */
static inline float hsum(v8 v)
{
    return ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7]));
}

/* The same sums as one row of stgV_dot4, so that a row's result does not
 * depend on whether it was computed alone or with three others. */
STG_CLONES float stgV_dot(int64_t n, const float *x, const float *y)
{
    v8 a = {0}, b = {0};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a += load(x + i) * load(y + i);
        b += load(x + i + 8) * load(y + i + 8);
    }
    for (; i + 8 <= n; i += 8)
        a += load(x + i) * load(y + i);
    float s = hsum(a + b);
    for (; i < n; i++)
        s += x[i] * y[i];
    return s;
}

STG_CLONES void stgV_dot4(int64_t n, const float *m, int64_t rs, const float *x, float out[4])
{
    const float *r0 = m, *r1 = m + rs, *r2 = m + 2 * rs, *r3 = m + 3 * rs;
    v8 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, b0 = {0}, b1 = {0}, b2 = {0}, b3 = {0};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        v8 xa = load(x + i), xb = load(x + i + 8);
        a0 += load(r0 + i) * xa, b0 += load(r0 + i + 8) * xb;
        a1 += load(r1 + i) * xa, b1 += load(r1 + i + 8) * xb;
        a2 += load(r2 + i) * xa, b2 += load(r2 + i + 8) * xb;
        a3 += load(r3 + i) * xa, b3 += load(r3 + i + 8) * xb;
    }
    for (; i + 8 <= n; i += 8) {
        v8 xa = load(x + i);
        a0 += load(r0 + i) * xa, a1 += load(r1 + i) * xa;
        a2 += load(r2 + i) * xa, a3 += load(r3 + i) * xa;
    }
    out[0] = hsum(a0 + b0), out[1] = hsum(a1 + b1);
    out[2] = hsum(a2 + b2), out[3] = hsum(a3 + b3);
    for (; i < n; i++) {
        out[0] += r0[i] * x[i], out[1] += r1[i] * x[i];
        out[2] += r2[i] * x[i], out[3] += r3[i] * x[i];
    }
}

STG_CLONES void stgV_axpy(int64_t n, float c, const float *x, float *y)
{
    v8 cv = {c, c, c, c, c, c, c, c};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        store(y + i, load(y + i) + load(x + i) * cv);
    for (; i < n; i++)
        y[i] += x[i] * c;
}

/* y += c0 x0 + c1 x1 + c2 x2 + c3 x3, added in that order, xj = x + j cs:
 * y is loaded and stored once for four vectors. */
STG_CLONES void stgV_axpy4(int64_t n, const float c[4], const float *x, int64_t cs, float *y)
{
    const float *x0 = x, *x1 = x + cs, *x2 = x + 2 * cs, *x3 = x + 3 * cs;
    v8 c0 = {0}, c1 = {0}, c2 = {0}, c3 = {0};
    c0 += c[0], c1 += c[1], c2 += c[2], c3 += c[3];
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        v8 v = load(y + i);
        v += load(x0 + i) * c0;
        v += load(x1 + i) * c1;
        v += load(x2 + i) * c2;
        v += load(x3 + i) * c3;
        store(y + i, v);
    }
    for (; i < n; i++) {
        float v = y[i];
        v += x0[i] * c[0];
        v += x1[i] * c[1];
        v += x2[i] * c[2];
        v += x3[i] * c[3];
        y[i] = v;
    }
}

STG_CLONES void stgV_scale(int64_t n, float c, const float *x, float *y)
{
    v8 cv = {0};
    cv += c;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        store(y + i, load(x + i) * cv);
    for (; i < n; i++)
        y[i] = x[i] * c;
}
