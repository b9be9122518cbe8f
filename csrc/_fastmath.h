/* Vectorizable float32 transcendental functions, the one place they are written.
 *
 * libm's tanhf/expf are called one element at a time and block vectorization; these are plain
 * arithmetic that gcc vectorizes. Used for float32 only: float64 (gradient checks) keeps libm.
 */
#ifndef CYDNN_FASTMATH_H
#define CYDNN_FASTMATH_H

/* tanh for float32 as a rational function (the approximation of Eigen's
   generic_fast_tanh_float): |error| < 4e-7 and, unlike libm's tanh, it vectorizes.
   Beyond +-7.905 tanh is +-1 to float precision (the rational function is not). */
static inline float cydnn_fast_tanhf(float x) {
    float x2 = x * x;
    float p = x2 * -2.76076847742355e-16f + 2.00018790482477e-13f;
    p = x2 * p + -8.60467152213735e-11f;
    p = x2 * p + 5.12229709037114e-08f;
    p = x2 * p + 1.48572235717979e-05f;
    p = x2 * p + 6.37261928875436e-04f;
    p = x2 * p + 4.89352455891786e-03f;
    float q = x2 * 1.19825839466702e-06f + 1.18534705686654e-04f;
    q = x2 * q + 2.26843463243900e-03f;
    q = x2 * q + 4.89352518554385e-03f;
    float y = x * p / q;
    y = x > 7.90531110763549805f ? 1.0f : y;
    y = x < -7.90531110763549805f ? -1.0f : y;
    return y;
}

/* exp for float32 (Cephes' expf: range reduction by ln 2, degree-6 polynomial, 2^n from the
   exponent bits): within 2 ulp for x >= -87, 0 below (where expf is 1.6e-38 or less); it
   vectorizes, libm's exp does not. */
static inline float cydnn_fast_expf(float x) {
    float xc = x < -87.0f ? -87.0f : x;
    xc = xc > 88.0f ? 88.0f : xc;
    float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  /* round(x / ln 2) */
    float r = xc - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float y = 1.9875691500e-4f;
    y = y * r + 1.3981999507e-3f;
    y = y * r + 8.3334519073e-3f;
    y = y * r + 4.1665795894e-2f;
    y = y * r + 1.6666665459e-1f;
    y = y * r + 5.0000001201e-1f;
    y = y * (r * r) + r + 1.0f;
    union { int i; float f; } scale;
    scale.i = ((int)n + 127) << 23;
    y = y * scale.f;
    y = x < -87.0f ? 0.0f : y;
    return y;
}

/* logistic sigmoid on the fast exp: relative error within a few ulp; exp's clamping keeps it
   finite (0 < sigmoid < 1) for every input. */
static inline float cydnn_fast_sigmoidf(float x) {
    return 1.0f / (1.0f + cydnn_fast_expf(-x));
}

#endif
