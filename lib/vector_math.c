/*
 * exp-based activations over arrays, for the gate passes of the recurrent
 * layers: sigmoid and tanh from one vectorisable expm1.  libm's tanhf and
 * expf are calls the compiler cannot vectorise, and an LSTM step spends
 * five of them per hidden unit; these loops run several times faster.
 *
 * expm1(x): x = k ln2 + r with |r| <= ln2 / 2 (Cody-Waite, k from the
 * magic-number rounding, so no float-to-int conversion that a NaN would
 * make undefined), e^r - 1 = r + r^2 p(r) with Cephes' expf polynomial,
 * then 2^k (e^r - 1) + (2^k - 1).  Relative error a few ulp; a NaN in
 * gives a NaN out, as PyTorch's functions do.  Then
 *
 *   sigmoid(x) = 1 / (2 + expm1(-x))      tanh(x) = expm1(2x) / (expm1(2x) + 2)
 *
 * exp itself is 2^k (1 + (e^r - 1)) from the same reduction: adding 1
 * after the scaling would cancel for a negative x.  Softmax rows spend one
 * exp per element and use it.
 */
#include <math.h>
#include <string.h>

#include "internal.h"

/* e^r - 1 for x = k ln2 + r, and 2^k: x already clamped to [-87, 88] */
static inline float reduce_exp(float x, float *scale)
{
    const float magic = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
    float kf = x * 1.44269504088896341f + magic;
    uint32_t kb;
    memcpy(&kb, &kf, sizeof kb);
    kf -= magic;
    float r = x - kf * 0.693359375f;
    r = r - kf * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    /* 2^k from the low bits of the rounded value, which hold k + 2^22 + 2^23 */
    uint32_t eb = (kb - 0x4b400000u + 127u) << 23;
    memcpy(scale, &eb, sizeof *scale);
    return p * r * r + r; /* e^r - 1 */
}

static inline float expm1_approx(float x)
{
    x = x < -87.0f ? -87.0f : x; /* comparisons false for a NaN: it passes through */
    x = x > 88.0f ? 88.0f : x;
    float scale, em1 = reduce_exp(x, &scale);
    return scale * em1 + (scale - 1.0f);
}

STG_CLONES void stgV_exp(int64_t n, const float *x, float *y)
{
    for (int64_t i = 0; i < n; i++) {
        /* 2^k must stay a normal float (k <= 127): above 88, e^(v - ln2) is
         * doubled */
        float v = x[i], big = v > 88.0f ? 1.0f : 0.0f, c = v - big * 0.693147182f;
        c = c < -87.0f ? -87.0f : c;
        c = c > 88.3f ? 88.3f : c; /* k = 127 up to 127.5 ln2 = 88.37 */
        float scale, em1 = reduce_exp(c, &scale);
        float e = (scale + scale * em1) * (1.0f + big);
        /* below -87 (e^-87 is near the smallest normal float) 0, past the
         * largest float infinity; a NaN fails both tests and stays one */
        y[i] = v < -87.0f ? 0.0f : v > 88.7228394f ? INFINITY : e;
    }
}

STG_CLONES void stgV_sigmoid(int64_t n, const float *x, float *y)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = 1.0f / (2.0f + expm1_approx(-x[i]));
}

STG_CLONES void stgV_tanh(int64_t n, const float *x, float *y)
{
    for (int64_t i = 0; i < n; i++) {
        float e = expm1_approx(2.0f * x[i]);
        y[i] = e / (e + 2.0f);
    }
}
