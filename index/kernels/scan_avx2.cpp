// AVX2 + FMA kernel. Compiled with -mavx2 -mfma for this file only; used only when the CPU
// reports both (kernels() checks at first use).
#include <immintrin.h>

#include <type_traits>
#include <vector>

#include "index/kernels/coeffs.h"
#include "index/kernels/scan.h"

namespace pslerp::kernels {

namespace {

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

// Eight lanes of coeffs.h group_cosine().
inline __m256 group_cosine8(__m256 c, __m256 t, __m256 qe, __m256 qmk, __m256 qqm, __m256 ke, __m256 kmk) {
    const __m256 one = _mm256_set1_ps(1.0f);
    c = _mm256_min_ps(_mm256_max_ps(c, _mm256_set1_ps(kAntipodalCosF)), one);
    const __m256 theta = poly_acos8(c);
    const __m256 u = _mm256_sub_ps(one, t);
    const __m256 a = _mm256_mul_ps(u, poly_sinc8(_mm256_mul_ps(u, theta)));
    const __m256 b = _mm256_mul_ps(t, poly_sinc8(_mm256_mul_ps(t, theta)));
    const __m256 ab = _mm256_mul_ps(a, b);
    __m256 den2 = _mm256_mul_ps(_mm256_mul_ps(b, b), kmk);
    den2 = _mm256_fmadd_ps(_mm256_add_ps(ab, ab), qmk, den2);
    den2 = _mm256_fmadd_ps(_mm256_mul_ps(a, a), qqm, den2);
    den2 = _mm256_max_ps(den2, _mm256_set1_ps(1e-30f));
    const __m256 num = _mm256_fmadd_ps(a, qe, _mm256_mul_ps(b, ke));
    // 1/sqrt by the hardware estimate and one Newton step (relative error about 1e-7).
    const __m256 r = _mm256_rsqrt_ps(den2);
    const __m256 half_d_r2 = _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), den2), _mm256_mul_ps(r, r));
    const __m256 refined = _mm256_mul_ps(r, _mm256_sub_ps(_mm256_set1_ps(1.5f), half_d_r2));
    return _mm256_mul_ps(num, refined);
}

inline float hsum8(__m256 v) {
    const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    const __m128 h = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(h, _mm_shuffle_ps(h, h, 1)));
}

// One entry with its mask applied once: M*e, M*k and M as floats, reused by every query.
struct Expanded {
    std::vector<float> me, mk, mf;
    explicit Expanded(size_t n) : me(n), mk(n), mf(n) {}
};

template <bool kShared>
void expand(const Entries& E, int64_t j, Expanded& x) {
    const Layout& L = E.layout;
    const int d = L.group_dim;
    const float* tm = E.templates + j * E.template_stride;
    const float* ky = E.keys + j * E.key_stride;
    const uint8_t* mb = E.masks + j * E.mask_stride;
    const __m256i sel = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    const __m256 one = _mm256_set1_ps(1.0f);
    for (size_t bi = 0; bi < L.mask_bytes(); ++bi) {
        const size_t o = bi * kLanes;
        const __m256 m = _mm256_castsi256_ps(
                _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32(mb[bi]), sel), sel));
        const __m256 k = kShared ? _mm256_set1_ps(ky[bi % d]) : _mm256_loadu_ps(ky + o);
        _mm256_storeu_ps(x.me.data() + o, _mm256_and_ps(m, _mm256_loadu_ps(tm + o)));
        _mm256_storeu_ps(x.mk.data() + o, _mm256_and_ps(m, k));
        _mm256_storeu_ps(x.mf.data() + o, _mm256_and_ps(m, one));
    }
}

// Scores NQ queries (1 or 2) against one expanded entry; the entry's loads serve them all.
// *outs[n] gets the weighted sum plus the entry's offset, or with kPerGroup outs[n][0 ..
// group_floats) the unweighted cosines (padded lanes 0).
template <bool kShared, int NQ, bool kPerGroup = false>
int64_t score_entry(const Entries& E, int64_t j, const Expanded& x, const float* const* qs, float* const* outs) {
    const Layout& L = E.layout;
    const int d = L.group_dim;
    const float* ky = E.keys + j * E.key_stride;
    const size_t V = L.vec_floats();
    const size_t gj = j * E.group_stride;
    __m256 score[NQ];
    int64_t clamped = 0;
    for (int n = 0; n < NQ; ++n) score[n] = _mm256_setzero_ps();
    for (int b = 0; b < L.blocks(); ++b) {
        __m256 c[NQ], qe[NQ], qmk[NQ], qqm[NQ];
        for (int n = 0; n < NQ; ++n) c[n] = qe[n] = qmk[n] = qqm[n] = _mm256_setzero_ps();
        for (int i = 0; i < d; ++i) {
            const size_t o = (static_cast<size_t>(b) * d + i) * kLanes;
            const __m256 k = kShared ? _mm256_set1_ps(ky[i]) : _mm256_loadu_ps(ky + o);
            const __m256 me = _mm256_loadu_ps(x.me.data() + o);
            const __m256 mk = _mm256_loadu_ps(x.mk.data() + o);
            const __m256 mf = _mm256_loadu_ps(x.mf.data() + o);
            for (int n = 0; n < NQ; ++n) {
                const __m256 q = _mm256_loadu_ps(qs[n] + o);
                c[n] = _mm256_fmadd_ps(q, k, c[n]);
                qe[n] = _mm256_fmadd_ps(q, me, qe[n]);
                qmk[n] = _mm256_fmadd_ps(q, mk, qmk[n]);
                qqm[n] = _mm256_fmadd_ps(_mm256_loadu_ps(qs[n] + V + o), mf, qqm[n]);
            }
        }
        const __m256 ke = _mm256_loadu_ps(E.ke + gj + b * kLanes);
        const __m256 kmk = _mm256_loadu_ps(E.kmk + gj + b * kLanes);
        const __m256 w = _mm256_loadu_ps(E.weights + gj + b * kLanes);
        // Lanes that count: weighted groups, or with kPerGroup every real group.
        __m256 used;
        if constexpr (kPerGroup) {
            const __m256i lane = _mm256_add_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(b * kLanes));
            used = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(L.groups), lane));
        } else {
            used = _mm256_cmp_ps(w, _mm256_setzero_ps(), _CMP_NEQ_OQ);
        }
        for (int n = 0; n < NQ; ++n) {
            const __m256 t = _mm256_loadu_ps(qs[n] + 2 * V + b * kLanes);
            const __m256 cs = _mm256_and_ps(used, group_cosine8(c[n], t, qe[n], qmk[n], qqm[n], ke, kmk));
            if constexpr (kPerGroup) {
                _mm256_storeu_ps(outs[n] + b * kLanes, cs);
            } else {
                score[n] = _mm256_fmadd_ps(w, cs, score[n]);
            }
            const __m256 low = _mm256_and_ps(used, _mm256_cmp_ps(c[n], _mm256_set1_ps(kAntipodalCosF), _CMP_LT_OQ));
            clamped += __builtin_popcount(static_cast<unsigned>(_mm256_movemask_ps(low)));
        }
    }
    if constexpr (!kPerGroup) {
        const float offset = E.offsets[j * E.offset_stride];
        for (int n = 0; n < NQ; ++n) *outs[n] = hsum8(score[n]) + offset;
    }
    return clamped;
}

// Calls f(qi, std::integral_constant<int, NQ>) for queries [0, nq): two at a time, then the
// odd one.
template <class F>
int64_t by_query_pairs(int64_t nq, const F& f) {
    int64_t clamped = 0, qi = 0;
    for (; qi + 2 <= nq; qi += 2) clamped += f(qi, std::integral_constant<int, 2>());
    if (qi < nq) clamped += f(qi, std::integral_constant<int, 1>());
    return clamped;
}

template <bool kShared>
int64_t score_range_t(const Entries& E, const float* queries, int64_t nq, int64_t j0, int64_t j1, float* out,
                      int64_t ld) {
    const size_t qsz = E.layout.query_floats();
    Expanded x(E.layout.vec_floats());
    int64_t clamped = 0;
    for (int64_t j = j0; j < j1; ++j) {
        expand<kShared>(E, j, x);
        clamped += by_query_pairs(nq, [&](int64_t qi, auto pair) {
            constexpr int NQ = decltype(pair)::value;
            const float* qs[NQ];
            float* outs[NQ];
            for (int n = 0; n < NQ; ++n) qs[n] = queries + (qi + n) * qsz, outs[n] = out + (qi + n) * ld + (j - j0);
            return score_entry<kShared, NQ>(E, j, x, qs, outs);
        });
    }
    return clamped;
}

int64_t score_range(const Entries& E, const float* queries, int64_t nq, int64_t j0, int64_t j1, float* out,
                    int64_t ld) {
    return E.layout.shared_key ? score_range_t<true>(E, queries, nq, j0, j1, out, ld)
                               : score_range_t<false>(E, queries, nq, j0, j1, out, ld);
}

int64_t score_list(const Entries& E, const float* query, const int64_t* pos, int64_t n, float* out) {
    Expanded x(E.layout.vec_floats());
    int64_t clamped = 0;
    for (int64_t i = 0; i < n; ++i) {
        const float* qs[1] = {query};
        float* outs[1] = {out + i};
        if (E.layout.shared_key) {
            expand<true>(E, pos[i], x);
            clamped += score_entry<true, 1>(E, pos[i], x, qs, outs);
        } else {
            expand<false>(E, pos[i], x);
            clamped += score_entry<false, 1>(E, pos[i], x, qs, outs);
        }
    }
    return clamped;
}

template <bool kShared>
int64_t group_cosines_t(const Entries& E, const float* queries, int64_t nq, int64_t j, float* out) {
    const size_t qsz = E.layout.query_floats(), gs = E.layout.group_floats();
    Expanded x(E.layout.vec_floats());
    expand<kShared>(E, j, x);
    return by_query_pairs(nq, [&](int64_t qi, auto pair) {
        constexpr int NQ = decltype(pair)::value;
        const float* qs[NQ];
        float* outs[NQ];
        for (int n = 0; n < NQ; ++n) qs[n] = queries + (qi + n) * qsz, outs[n] = out + (qi + n) * gs;
        return score_entry<kShared, NQ, true>(E, j, x, qs, outs);
    });
}

int64_t group_cosines(const Entries& E, const float* queries, int64_t nq, int64_t j, float* out) {
    return E.layout.shared_key ? group_cosines_t<true>(E, queries, nq, j, out)
                               : group_cosines_t<false>(E, queries, nq, j, out);
}

}  // namespace

const KernelTable* avx2_kernels() {
    static const KernelTable table{"avx2", &score_range, &score_list, &group_cosines};
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return nullptr;
    return &table;
}

}  // namespace pslerp::kernels
