// AVX-512 (F) building blocks for the closed form (coeffs.h, batch_pass.h): sixteen lanes, each
// computed as its AVX2 lane would be. Include only from files compiled with -mavx512f -mfma.
#pragma once

#include <immintrin.h>

namespace pslerp::kernels::avx512 {

struct Avx512 {
    using V = __m512;
    static constexpr int kW = 16;
    static V load(const float* p) { return _mm512_loadu_ps(p); }
    static void store(float* p, V v) { _mm512_storeu_ps(p, v); }
    static V set1(float x) { return _mm512_set1_ps(x); }
    static V add(V a, V b) { return _mm512_add_ps(a, b); }
    static V sub(V a, V b) { return _mm512_sub_ps(a, b); }
    static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
    static V fmadd(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
    static V fnmadd(V a, V b, V c) { return _mm512_fnmadd_ps(a, b, c); }
    static V min(V a, V b) { return _mm512_min_ps(a, b); }
    static V max(V a, V b) { return _mm512_max_ps(a, b); }
    static V sqrt(V a) { return _mm512_sqrt_ps(a); }
    static __m512 join(__m256 lo, __m256 hi) {
        return _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castpd256_pd512(_mm256_castps_pd(lo)), _mm256_castps_pd(hi), 1));
    }
    static __m256 low(V v) { return _mm512_castps512_ps256(v); }
    static __m256 high(V v) { return _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)); }
    /// AVX2's estimate on each half (not AVX-512's rsqrt14): a lane's cosine then does not depend
    /// on the vector width (batch_avx2_kernels() and batch_kernels() give the same bits).
    static V rsqrt(V a) { return join(_mm256_rsqrt_ps(low(a)), _mm256_rsqrt_ps(high(a))); }
    static V abs(V a) { return _mm512_abs_ps(a); }
    static V select_negative(V c, V v, V if_neg) {
        return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(c, _mm512_setzero_ps(), _CMP_LT_OQ), v, if_neg);
    }
    static int count_less(V a, V b) { return __builtin_popcount(unsigned(_mm512_cmp_ps_mask(a, b, _CMP_LT_OQ))); }
};

}  // namespace pslerp::kernels::avx512
