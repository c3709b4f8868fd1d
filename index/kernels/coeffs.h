// Polynomial slerp coefficients shared by the kernels: theta = acos(c) by Abramowitz-Stegun
// 4.4.46 (|error| <= 2e-8), sinc(x) = sin(x)/x by its Taylor series in x^2 up to x^18 (error
// below 2e-10 on [0, pi]). slerp's a = sin((1-t) theta)/sin(theta) and b = sin(t theta)/sin(theta)
// share the factor theta/sin(theta), and the group cosine does not change when a and b are
// scaled together, so the kernels use a' = (1-t) sinc((1-t) theta) and b' = t sinc(t theta):
// bounded, smooth through theta -> 0, and with no division by sin(theta) near theta = pi.
#pragma once

#include <algorithm>
#include <cmath>

namespace pslerp::kernels {

inline constexpr float kPi = 3.14159265358979f;
inline constexpr float kAntipodalCosF = -0.99f;  // matches plugin/scheme.h kAntipodalCos
inline constexpr float kAcos[8] = {1.5707963050f,  -0.2145988016f, 0.0889789874f,  -0.0501743046f,
                                   0.0308918810f,  -0.0170881256f, 0.0066700901f,  -0.0012624911f};
inline constexpr float kSinc[10] = {1.0f,
                                    -1.0f / 6.0f,
                                    1.0f / 120.0f,
                                    -1.0f / 5040.0f,
                                    1.0f / 362880.0f,
                                    -1.0f / 39916800.0f,
                                    1.0f / 6227020800.0f,
                                    -1.0f / 1307674368000.0f,
                                    1.0f / 355687428096000.0f,
                                    -1.0f / 121645100408832000.0f};

inline float poly_acos(float c) {
    const float x = std::fabs(c);
    float p = kAcos[7];
    for (int i = 6; i >= 0; --i) p = p * x + kAcos[i];
    const float r = std::sqrt(1.0f - x) * p;
    return c < 0 ? kPi - r : r;
}

inline float poly_sinc(float x) {
    const float u = x * x;
    float p = kSinc[9];
    for (int i = 8; i >= 0; --i) p = p * u + kSinc[i];
    return p;
}

/// Cosine of the transformed probe group with the stored group, from the four dot products.
inline float group_cosine(float c, float t, float qe, float qmk, float qqm, float ke, float kmk) {
    c = std::min(std::max(c, kAntipodalCosF), 1.0f);
    const float theta = poly_acos(c);
    const float a = (1.0f - t) * poly_sinc((1.0f - t) * theta);
    const float b = t * poly_sinc(t * theta);
    const float den2 = a * a * qqm + 2.0f * a * b * qmk + b * b * kmk;
    return (a * qe + b * ke) / std::sqrt(std::max(den2, 1e-30f));
}

}  // namespace pslerp::kernels
