/*
 * The loops of the vector-shaped products (dot, matrix-vector, outer
 * product), which are bound by memory bandwidth rather than arithmetic.
 *
 * They are written with GCC vector types, eight floats wide, so that the
 * order of every sum is fixed by the length alone (not by what the compiler
 * chooses), and each is compiled for three instruction sets (STG_CLONES).
 * Matrix-vector loops take four rows (or columns) at a time so that each
 * load of the vector serves four of them.
 */

#include "internal.h"

/* Eight floats at any 4-byte-aligned address, which may alias float data.
 * Loads, stores and the horizontal sum are macros rather than functions:
 * passing such a vector by value without AVX changes the ABI, which clang
 * refuses outright in the copy compiled for plain x86-64. */
typedef float v8 __attribute__((vector_size(32), aligned(4), may_alias));
#define LOAD(p) (*(const v8 *)(p))
#define STORE(p, v) (*(v8 *)(p) = (v))
/* the lanes of 'v' (a variable) summed pairwise: a fixed tree */
#define HSUM(v) ((((v)[0] + (v)[1]) + ((v)[2] + (v)[3])) + (((v)[4] + (v)[5]) + ((v)[6] + (v)[7])))
#define SPLAT(c) ((v8){(c), (c), (c), (c), (c), (c), (c), (c)})

/* The same sums as one row of stgV_dot4, so that a row's result does not
 * depend on whether it was computed alone or with three others. */
STG_CLONES float stgV_dot(int64_t n, const float *x, const float *y)
{
    v8 a = {0}, b = {0};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a += LOAD(x + i) * LOAD(y + i);
        b += LOAD(x + i + 8) * LOAD(y + i + 8);
    }
    for (; i + 8 <= n; i += 8)
        a += LOAD(x + i) * LOAD(y + i);
    v8 t = a + b;
    float s = HSUM(t);
    for (; i < n; i++)
        s += x[i] * y[i];
    return s;
}

STG_CLONES float stgV_sum(int64_t n, const float *x)
{
    v8 a = {0}, b = {0};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a += LOAD(x + i);
        b += LOAD(x + i + 8);
    }
    for (; i + 8 <= n; i += 8)
        a += LOAD(x + i);
    v8 t = a + b;
    float s = HSUM(t);
    for (; i < n; i++)
        s += x[i];
    return s;
}

STG_CLONES void stgV_dot4(int64_t n, const float *m, int64_t rs, const float *x, float out[4])
{
    const float *r0 = m, *r1 = m + rs, *r2 = m + 2 * rs, *r3 = m + 3 * rs;
    v8 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, b0 = {0}, b1 = {0}, b2 = {0}, b3 = {0};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        v8 xa = LOAD(x + i), xb = LOAD(x + i + 8);
        a0 += LOAD(r0 + i) * xa, b0 += LOAD(r0 + i + 8) * xb;
        a1 += LOAD(r1 + i) * xa, b1 += LOAD(r1 + i + 8) * xb;
        a2 += LOAD(r2 + i) * xa, b2 += LOAD(r2 + i + 8) * xb;
        a3 += LOAD(r3 + i) * xa, b3 += LOAD(r3 + i + 8) * xb;
    }
    for (; i + 8 <= n; i += 8) {
        v8 xa = LOAD(x + i);
        a0 += LOAD(r0 + i) * xa, a1 += LOAD(r1 + i) * xa;
        a2 += LOAD(r2 + i) * xa, a3 += LOAD(r3 + i) * xa;
    }
    v8 t0 = a0 + b0, t1 = a1 + b1, t2 = a2 + b2, t3 = a3 + b3;
    out[0] = HSUM(t0), out[1] = HSUM(t1), out[2] = HSUM(t2), out[3] = HSUM(t3);
    for (; i < n; i++) {
        out[0] += r0[i] * x[i], out[1] += r1[i] * x[i];
        out[2] += r2[i] * x[i], out[3] += r3[i] * x[i];
    }
}

STG_CLONES void stgV_axpy(int64_t n, float c, const float *x, float *y)
{
    v8 cv = SPLAT(c);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        STORE(y + i, LOAD(y + i) + LOAD(x + i) * cv);
    for (; i < n; i++)
        y[i] += x[i] * c;
}

/* y += c0 x0 + c1 x1 + c2 x2 + c3 x3, added in that order, xj = x + j cs:
 * y is loaded and stored once for four vectors. */
STG_CLONES void stgV_axpy4(int64_t n, const float c[4], const float *x, int64_t cs, float *y)
{
    const float *x0 = x, *x1 = x + cs, *x2 = x + 2 * cs, *x3 = x + 3 * cs;
    v8 c0 = SPLAT(c[0]), c1 = SPLAT(c[1]), c2 = SPLAT(c[2]), c3 = SPLAT(c[3]);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        v8 v = LOAD(y + i);
        v += LOAD(x0 + i) * c0;
        v += LOAD(x1 + i) * c1;
        v += LOAD(x2 + i) * c2;
        v += LOAD(x3 + i) * c3;
        STORE(y + i, v);
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
    v8 cv = SPLAT(c);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        STORE(y + i, LOAD(x + i) * cv);
    for (; i < n; i++)
        y[i] = x[i] * c;
}
