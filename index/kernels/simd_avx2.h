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

inline __m256 clamp_cos8(__m256 c) { return clamp_cos_v<Avx2>(c); }

// Eight lanes of coeffs.h group_cosine().
inline __m256 group_cosine8(__m256 c, __m256 t, __m256 qe, __m256 qmk, __m256 qqm, __m256 ke, __m256 kmk) {
    return group_cosine_v<Avx2>(c, t, qe, qmk, qqm, ke, kmk);
}

inline float hsum8(__m256 v) {
    const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    const __m128 h = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(h, _mm_shuffle_ps(h, h, 1)));
}

}  // namespace pslerp::kernels::avx2
