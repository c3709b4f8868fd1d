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

/// poly_acos over the lanes of a vector, for vector traits S (simd_avx2.h Avx2, simd_avx512.h
/// Avx512); instantiated only in the file compiled for S's instruction set.
template <class S>
inline typename S::V poly_acos_v(typename S::V c) {
    using V = typename S::V;
    const V x = S::abs(c);
    V p = S::set1(kAcos[7]);
    for (int i = 6; i >= 0; --i) p = S::fmadd(p, x, S::set1(kAcos[i]));
    const V r = S::mul(S::sqrt(S::sub(S::set1(1.0f), x)), p);
    return S::select_negative(c, r, S::sub(S::set1(kPi), r));
}

/// 1 / sqrt(x) by the hardware estimate and one Newton step.
template <class S>
inline typename S::V rsqrt_refined(typename S::V x) {
    using V = typename S::V;
    const V r = S::rsqrt(x);
    const V half_x_r2 = S::mul(S::mul(S::set1(0.5f), x), S::mul(r, r));
    return S::mul(r, S::sub(S::set1(1.5f), half_x_r2));
}

template <class S>
inline typename S::V poly_sinc_v(typename S::V x) {
    using V = typename S::V;
    const V u = S::mul(x, x);
    V p = S::set1(kSinc[9]);
    for (int i = 8; i >= 0; --i) p = S::fmadd(p, u, S::set1(kSinc[i]));
    return p;
}

template <class S>
inline typename S::V clamp_cos_v(typename S::V c) {
    return S::min(S::max(c, S::set1(kAntipodalCosF)), S::set1(1.0f));
}

/// The group cosine from the (scaled) slerp coefficients a and b: (a qe + b ke) / sqrt(a^2 qqm +
/// 2 a b qmk + b^2 kmk), by the hardware reciprocal square root and one Newton step (relative
/// error about 1e-7).
template <class S>
inline typename S::V cosine_from_ab_v(typename S::V a, typename S::V b, typename S::V qe, typename S::V qmk,
                                      typename S::V qqm, typename S::V ke, typename S::V kmk) {
    using V = typename S::V;
    const V ab = S::mul(a, b);
    V den2 = S::mul(S::mul(b, b), kmk);
    den2 = S::fmadd(S::add(ab, ab), qmk, den2);
    den2 = S::fmadd(S::mul(a, a), qqm, den2);
    den2 = S::max(den2, S::set1(1e-30f));
    const V num = S::fmadd(a, qe, S::mul(b, ke));
    return S::mul(num, rsqrt_refined<S>(den2));
}

/// The lanes of group_cosine() below: per-lane t.
template <class S>
inline typename S::V group_cosine_v(typename S::V c, typename S::V t, typename S::V qe, typename S::V qmk,
                                    typename S::V qqm, typename S::V ke, typename S::V kmk) {
    using V = typename S::V;
    const V theta = poly_acos_v<S>(clamp_cos_v<S>(c));
    const V u = S::sub(S::set1(1.0f), t);
    const V a = S::mul(u, poly_sinc_v<S>(S::mul(u, theta)));
    const V b = S::mul(t, poly_sinc_v<S>(S::mul(t, theta)));
    return cosine_from_ab_v<S>(a, b, qe, qmk, qqm, ke, kmk);
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

/// The ratio r = b' / a' = sin(t theta) / sin((1-t) theta) of one t as a polynomial in
/// s = sqrt(1 + c) (c = cos theta, clamped), cut to `terms` coefficients (4, 8 or 12: the
/// kernels' unrolled Horner loops), or `ok` false when 12 do not reach a relative error of 1e-6
/// over c in [kAntipodalCosF, 1] (t below about 0.35, or t = 1); then the kernels take the
/// per-lane closed form. In s, r has no singularity on that range (acos's branch point at
/// c = -1 is s = 0, where r is analytic in s), so one square root and a short polynomial
/// replace acos and the sines: 8 terms for most t, 4 at t = 0.5 (r = 1) and t = 0.75
/// (r = 1 + sqrt(2) s). The group cosine depends on a' and b' only through r (they scale
/// together):
///   cos_g = (<q,M T> + r <k,M T>) / sqrt(<q^2,M> + 2 r <q,M k> + r^2 <k,M k>).
/// Defined in scan.cpp.
struct SlerpRatio {
    float t = 0.0f;
    float r[12] = {};
    int terms = 0;
    bool ok = false;
    explicit SlerpRatio(float t);
};

/// SlerpRatio(t) from a small per-thread cache (making one takes a few thousand sines).
SlerpRatio cached_slerp_ratio(float t);

}  // namespace pslerp::kernels
