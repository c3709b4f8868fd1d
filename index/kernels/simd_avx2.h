// AVX2 + FMA building blocks shared by the scoring kernels (scan_avx2.cpp, batch_avx2.cpp):
// eight lanes of coeffs.h. Include only from files compiled with -mavx2 -mfma.
#pragma once

#include <immintrin.h>

#include "index/kernels/coeffs.h"

namespace pslerp::kernels::avx2 {

// The vector operations of the batched closed form (batch_pass.h), eight lanes.
struct Avx2 {
    using V = __m256;
    static constexpr int kW = 8;
    static V load(const float* p) { return _mm256_loadu_ps(p); }
    static void store(float* p, V v) { _mm256_storeu_ps(p, v); }
    static V set1(float x) { return _mm256_set1_ps(x); }
    static V add(V a, V b) { return _mm256_add_ps(a, b); }
    static V sub(V a, V b) { return _mm256_sub_ps(a, b); }
    static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
    static V fmadd(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
    static V fnmadd(V a, V b, V c) { return _mm256_fnmadd_ps(a, b, c); }
    static V min(V a, V b) { return _mm256_min_ps(a, b); }
    static V max(V a, V b) { return _mm256_max_ps(a, b); }
    static V sqrt(V a) { return _mm256_sqrt_ps(a); }
    static V rsqrt(V a) { return _mm256_rsqrt_ps(a); }
    static V abs(V a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a); }
    /// if_neg where c < 0, else v.
    static V select_negative(V c, V v, V if_neg) {
        return _mm256_blendv_ps(v, if_neg, _mm256_cmp_ps(c, _mm256_setzero_ps(), _CMP_LT_OQ));
    }
    /// Lanes with a < b.
    static int count_less(V a, V b) { return __builtin_popcount(unsigned(_mm256_movemask_ps(_mm256_cmp_ps(a, b, _CMP_LT_OQ)))); }
};

inline __m256 poly_acos8(__m256 c) { return poly_acos_v<Avx2>(c); }

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
    return _mm256_mul_ps(num, rsqrt_refined<Avx2>(den2));
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
