// AVX2 + FMA building blocks shared by the scoring kernels (scan_avx2.cpp, batch_avx2.cpp):
// eight lanes of coeffs.h. Include only from files compiled with -mavx2 -mfma.
#pragma once

#include <immintrin.h>

#include "index/kernels/coeffs.h"

namespace pslerp::kernels::avx2 {

inline __m256 poly_acos8(__m256 c) {
    const __m256 x = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), c);
    __m256 p = _mm256_set1_ps(kAcos[7]);
    for (int i = 6; i >= 0; --i) p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(kAcos[i]));
    const __m256 r = _mm256_mul_ps(_mm256_sqrt_ps(_mm256_sub_ps(_mm256_set1_ps(1.0f), x)), p);
    const __m256 negative = _mm256_cmp_ps(c, _mm256_setzero_ps(), _CMP_LT_OQ);
    return _mm256_blendv_ps(r, _mm256_sub_ps(_mm256_set1_ps(kPi), r), negative);
}

inline __m256 poly_sinc8(__m256 x) {
    const __m256 u = _mm256_mul_ps(x, x);
    __m256 p = _mm256_set1_ps(kSinc[9]);
    for (int i = 8; i >= 0; --i) p = _mm256_fmadd_ps(p, u, _mm256_set1_ps(kSinc[i]));
    return p;
}

// The group cosine from the (scaled) slerp coefficients a and b: (a qe + b ke) / sqrt(a^2 qqm +
// 2 a b qmk + b^2 kmk), by the hardware reciprocal square root and one Newton step (relative
// error about 1e-7).
inline __m256 cosine_from_ab8(__m256 a, __m256 b, __m256 qe, __m256 qmk, __m256 qqm, __m256 ke, __m256 kmk) {
    const __m256 ab = _mm256_mul_ps(a, b);
    __m256 den2 = _mm256_mul_ps(_mm256_mul_ps(b, b), kmk);
    den2 = _mm256_fmadd_ps(_mm256_add_ps(ab, ab), qmk, den2);
    den2 = _mm256_fmadd_ps(_mm256_mul_ps(a, a), qqm, den2);
    den2 = _mm256_max_ps(den2, _mm256_set1_ps(1e-30f));
    const __m256 num = _mm256_fmadd_ps(a, qe, _mm256_mul_ps(b, ke));
    const __m256 r = _mm256_rsqrt_ps(den2);
    const __m256 half_d_r2 = _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), den2), _mm256_mul_ps(r, r));
    const __m256 refined = _mm256_mul_ps(r, _mm256_sub_ps(_mm256_set1_ps(1.5f), half_d_r2));
    return _mm256_mul_ps(num, refined);
}

inline __m256 clamp_cos8(__m256 c) {
    return _mm256_min_ps(_mm256_max_ps(c, _mm256_set1_ps(kAntipodalCosF)), _mm256_set1_ps(1.0f));
}

// Eight lanes of coeffs.h group_cosine().
inline __m256 group_cosine8(__m256 c, __m256 t, __m256 qe, __m256 qmk, __m256 qqm, __m256 ke, __m256 kmk) {
    const __m256 theta = poly_acos8(clamp_cos8(c));
    const __m256 u = _mm256_sub_ps(_mm256_set1_ps(1.0f), t);
    const __m256 a = _mm256_mul_ps(u, poly_sinc8(_mm256_mul_ps(u, theta)));
    const __m256 b = _mm256_mul_ps(t, poly_sinc8(_mm256_mul_ps(t, theta)));
    return cosine_from_ab8(a, b, qe, qmk, qqm, ke, kmk);
}

inline float hsum8(__m256 v) {
    const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    const __m128 h = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(h, _mm_shuffle_ps(h, h, 1)));
}

}  // namespace pslerp::kernels::avx2
