// One query against entries read straight from storage (score_range with one query, score_list:
// search and verify of a single probe), sixteen lanes: the same block of eight groups of two
// entries per register, block after block. Compiled with -mavx512f
// -mfma -mf16c for this file only; nothing here runs unless the CPU reports AVX-512F (scan.cpp
// avx512_kernels() checks first).
//
// Every lane computes what its lane of the AVX2 kernel (scan_avx2.cpp score_entry) computes, in
// the same order: the masked products as masked FMAs (a dropped coordinate adds nothing there,
// and adds q * 0 = 0 in AVX2), the closed form by the same templates (coeffs.h, batch_pass.h;
// Avx512::rsqrt is AVX2's estimate), the weighted sum over blocks in eight lanes in block order.
// So a single probe scores an entry bit for bit as the several-probe paths (AVX2) do, and verify
// equals search.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "index/kernels/batch_pass.h"
#include "index/kernels/coeffs.h"
#include "index/kernels/scan.h"
#include "index/kernels/simd_avx512.h"

namespace pslerp::kernels {

namespace {

using avx512::Avx512;
using V = __m512;

inline V load16(const float* a, const float* b) { return Avx512::join(_mm256_loadu_ps(a), _mm256_loadu_ps(b)); }
inline V load16(const uint16_t* a, const uint16_t* b) {
    const __m128i lo = _mm_loadu_si128(reinterpret_cast<const __m128i*>(a));
    const __m128i hi = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b));
    return _mm512_cvtph_ps(_mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1));
}
// Eight floats into both halves.
inline V both(const float* p) { return _mm512_castpd_ps(_mm512_broadcast_f64x4(_mm256_loadu_pd(reinterpret_cast<const double*>(p)))); }
inline float load1(const float* p) { return *p; }
inline float load1(const uint16_t* p) { return _cvtsh_ss(*p); }

// The AVX2 kernel's horizontal sum (simd_avx2.h hsum8), operation for operation.
inline float sum8(__m256 v) {
    const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    const __m128 h = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(h, _mm_shuffle_ps(h, h, 1)));
}

// Per-lane t (the query's slerp weights) or the ratio form, as scan_avx2.cpp PerLaneT / ByRatio.
struct PerLaneT16 {
    V operator()(const float* t, V c, V qe, V qmk, V qqm, V ke, V kmk) const {
        return group_cosine_v<Avx512>(c, both(t), qe, qmk, qqm, ke, kmk);
    }
};
template <int kN>
struct ByRatio16 {
    RatioCosine<Avx512, kN> ratio;
    V operator()(const float*, V c, V qe, V qmk, V qqm, V ke, V kmk) const {
        return ratio(clamp_cos_v<Avx512>(c), 0, qe, qmk, qqm, ke, kmk);
    }
};

// The weighted group cosines of block b of entries ja (low lanes) and jb (high lanes) against
// `query`: w and cs (cs zero in lanes of weightless groups, as in AVX2). Adds the clamped lanes
// among `count` (a 16-bit lane mask: the high half is left out when jb only pads ja).
template <bool kShared, class T, bool kZeroFill, int kD, class Cos>
void unit_pair(const Entries& E, const T* templates, const T* keys, const float* query, int64_t ja, int64_t jb, int b,
               const Cos& cosine, unsigned count, V& w, V& cs, int64_t& clamped) {
    constexpr bool kHalf = std::is_same_v<T, uint16_t>;
    const Layout& L = E.layout;
    const int d = kD ? kD : L.group_dim;
    const size_t Vf = L.vec_floats(), blk = size_t(b) * d * kLanes;
    const T* ta = templates + ja * E.template_stride + blk;
    const T* tb = templates + jb * E.template_stride + blk;
    const T* ka = keys + ja * E.key_stride + (kShared ? 0 : blk);
    const T* kb = keys + jb * E.key_stride + (kShared ? 0 : blk);
    const uint8_t* ma = E.masks + ja * E.mask_stride + size_t(b) * d;
    const uint8_t* mb = E.masks + jb * E.mask_stride + size_t(b) * d;
    const float* qb = query + blk;  // both halves: the same block of the query
    const V zero = _mm512_setzero_ps();
    V c = zero, qe = zero, qmk = zero, qqm = zero, ke = zero, kmk = zero;
#pragma GCC unroll 16
    for (int i = 0; i < d; ++i) {
        const size_t o = size_t(i) * kLanes;
        const __mmask16 m = __mmask16(unsigned(ma[i]) | (unsigned(mb[i]) << 8));
        const V k = kShared ? Avx512::join(_mm256_set1_ps(load1(ka + i)), _mm256_set1_ps(load1(kb + i)))
                            : load16(ka + o, kb + o);
        const V t = load16(ta + o, tb + o);
        const V me = kZeroFill ? t : _mm512_maskz_mov_ps(m, t);
        if constexpr (kHalf) {
            ke = _mm512_mask3_fmadd_ps(k, me, ke, m);
            kmk = _mm512_mask3_fmadd_ps(k, k, kmk, m);
        }
        const V q = both(qb + o);
        c = _mm512_fmadd_ps(q, k, c);
        qe = _mm512_fmadd_ps(q, me, qe);
        qmk = _mm512_mask3_fmadd_ps(q, k, qmk, m);
        qqm = _mm512_mask_add_ps(qqm, m, qqm, both(qb + Vf + o));
    }
    if constexpr (!kHalf) {
        ke = load16(E.ke + ja * E.group_stride + b * kLanes, E.ke + jb * E.group_stride + b * kLanes);
        kmk = load16(E.kmk + ja * E.group_stride + b * kLanes, E.kmk + jb * E.group_stride + b * kLanes);
    }
    w = load16(E.weights + ja * E.group_stride + b * kLanes, E.weights + jb * E.group_stride + b * kLanes);
    const __mmask16 used = _mm512_cmp_ps_mask(w, zero, _CMP_NEQ_OQ);
    cs = _mm512_maskz_mov_ps(used, cosine(query + 2 * Vf + b * kLanes, c, qe, qmk, qqm, ke, kmk));
    const __mmask16 low = used & _mm512_cmp_ps_mask(c, _mm512_set1_ps(kAntipodalCosF), _CMP_LT_OQ);
    clamped += __builtin_popcount(unsigned(low) & count);
}

constexpr int64_t kAhead = 4;  // entries

inline void prefetch(const char* p, size_t bytes) {
    for (size_t o = 0; o < bytes; o += 64) _mm_prefetch(p + o, _MM_HINT_T0);
}

// Scores entries at(0 .. n) into out[0, n): the weighted sum of the group cosines plus the
// entry's offset. Two entries per register (the last alone when n is odd), block by block.
template <bool kShared, class T, bool kZeroFill, int kD, class Cos, class At>
int64_t score_entries(const Entries& E, const T* templates, const T* keys, const float* query, int64_t n, const At& at,
                      float* out, const Cos& cosine) {
    const int blocks = E.layout.blocks();
    int64_t clamped = 0;
    V w, cs;
    const Layout& L = E.layout;
    const size_t row_bytes = L.vec_floats() * sizeof(T), key_bytes = L.key_floats() * sizeof(T);
    for (int64_t i = 0; i < n; i += 2) {
        const bool pair = i + 1 < n;
        const int64_t ja = at(i), jb = pair ? at(i + 1) : ja;
        // The pair after next, ahead of its use: two entries at a time interleave the rows of two
        // entries, which the hardware prefetchers do not follow as they follow one entry's.
        for (int64_t ahead = i + kAhead; ahead < std::min(n, i + kAhead + 2); ++ahead) {
            const int64_t jp = at(ahead);
            prefetch(reinterpret_cast<const char*>(templates + jp * E.template_stride), row_bytes);
            prefetch(reinterpret_cast<const char*>(keys + jp * E.key_stride), key_bytes);
        }
        __m256 sa = _mm256_setzero_ps(), sb = _mm256_setzero_ps();
        for (int b = 0; b < blocks; ++b) {
            unit_pair<kShared, T, kZeroFill, kD>(E, templates, keys, query, ja, jb, b, cosine,
                                                 pair ? 0xffffu : 0x00ffu, w, cs, clamped);
            sa = _mm256_fmadd_ps(Avx512::low(w), Avx512::low(cs), sa);
            sb = _mm256_fmadd_ps(Avx512::high(w), Avx512::high(cs), sb);
        }
        out[i] = sum8(sa) + E.offsets[ja * E.offset_stride];
        if (pair) out[i + 1] = sum8(sb) + E.offsets[jb * E.offset_stride];
    }
    return clamped;
}

// Calls f(cosine): the ratio form when every group of the query has one t with a SlerpRatio,
// else per-lane t (scan_avx2.cpp by_cosine chooses alike).
template <class F>
int64_t with_cosine(const Layout& L, const float* query, const F& f) {
    const float* t = query + 2 * L.vec_floats();
    for (int g = 1; g < L.groups; ++g) {
        if (t[g] != t[0]) return f(PerLaneT16());
    }
    const SlerpRatio R = cached_slerp_ratio(t[0]);
    if (!R.ok) return f(PerLaneT16());
    if (R.terms == 4) return f(ByRatio16<4>{RatioCosine<Avx512, 4>(R)});
    if (R.terms == 8) return f(ByRatio16<8>{RatioCosine<Avx512, 8>(R)});
    return f(ByRatio16<12>{RatioCosine<Avx512, 12>(R)});
}

// score_entries with the entries' storage, key mode, fill and group dimension as compile-time
// types (as scan_avx2.cpp by_layout and by_shape).
template <class At>
int64_t dispatch(const Entries& E, const float* query, int64_t n, const At& at, float* out) {
    const Layout& L = E.layout;
    auto go = [&](auto shared, auto templates, auto keys) {
        constexpr bool kShared = decltype(shared)::value;
        using T = std::remove_const_t<std::remove_pointer_t<decltype(templates)>>;
        auto shape = [&](auto dim, auto zero_fill) {
            return with_cosine(L, query, [&](const auto& cosine) {
                return score_entries<kShared, T, decltype(zero_fill)::value, decltype(dim)::value>(
                        E, templates, keys, query, n, at, out, cosine);
            });
        };
        auto fill = [&](auto dim) {
            return L.zero_fill ? shape(dim, std::true_type()) : shape(dim, std::false_type());
        };
        return L.group_dim == 16 ? fill(std::integral_constant<int, 16>()) : fill(std::integral_constant<int, 0>());
    };
    if (L.half) {
        return L.shared_key ? go(std::true_type(), E.templates_h, E.keys_h) : go(std::false_type(), E.templates_h, E.keys_h);
    }
    return L.shared_key ? go(std::true_type(), E.templates, E.keys) : go(std::false_type(), E.templates, E.keys);
}

const KernelTable* avx2_table = nullptr;

int64_t score_range(const Entries& E, const float* queries, int64_t nq, int64_t j0, int64_t j1, float* out,
                    int64_t ld) {
    if (nq != 1) return avx2_table->score_range(E, queries, nq, j0, j1, out, ld);
    return dispatch(E, queries, j1 - j0, [j0](int64_t i) { return j0 + i; }, out);
}

int64_t score_list(const Entries& E, const float* query, const int64_t* pos, int64_t n, float* out) {
    return dispatch(E, query, n, [pos](int64_t i) { return pos[i]; }, out);
}

}  // namespace

const KernelTable* avx512_kernels_unchecked(const KernelTable& avx2) {
    avx2_table = &avx2;
    static const KernelTable table{"avx512", &score_range, &score_list, avx2.group_cosines};
    return &table;
}

}  // namespace pslerp::kernels
