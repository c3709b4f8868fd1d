// AVX2 + FMA kernel (F16C for half storage). Compiled with -mavx2 -mfma -mf16c for this file
// only; used only when the CPU reports all three (kernels() checks at first use).
#include <cpuid.h>
#include <immintrin.h>

#include <type_traits>
#include <vector>

#include "index/kernels/batch_pass.h"
#include "index/kernels/coeffs.h"
#include "index/kernels/half.h"
#include "index/kernels/scan.h"
#include "index/kernels/simd_avx2.h"

namespace pslerp::kernels {

namespace {

using namespace avx2;

inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 load8(const uint16_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
inline float load1(const float* p) { return *p; }
inline float load1(const uint16_t* p) { return _cvtsh_ss(*p); }

// Every mask byte as eight lanes, all ones where bit l (group 8 * block + l) is set: one load
// per mask byte in the kernels' innermost loop (8 KiB, stays in L1).
struct MaskTable {
    alignas(32) uint32_t lanes[256][kLanes];
    constexpr MaskTable() : lanes{} {
        for (int bits = 0; bits < 256; ++bits) {
            for (int l = 0; l < kLanes; ++l) lanes[bits][l] = (bits >> l) & 1 ? 0xffffffffu : 0u;
        }
    }
};
constexpr MaskTable kMaskTable;

inline __m256 mask8(uint8_t bits) {
    return _mm256_load_ps(reinterpret_cast<const float*>(kMaskTable.lanes[bits]));
}

// An entry as score_entry reads it, straight from storage (floats or halves): at(bi, i) gives
// the key k, M*e, M*k and M at mask byte bi (coordinate i of block bi / d). The reader sums ke
// and kmk from these values as it goes (kSumsConstants; in registers: kept in this struct they
// would go through memory at every coordinate), with half storage because they are not stored,
// with fp32 because a single query's scan is bound by memory and two multiply-adds per
// coordinate cost less than reading the 64 stored bytes per entry. One query reads an entry
// this way; several share an Expanded copy.
template <bool kShared, class T, bool kZeroFill>
struct Direct {
    static constexpr bool kSumsConstants = true;
    const T* tm;
    const T* ky;
    const uint8_t* mb;

    Direct(const Entries& E, const T* templates, const T* keys, int64_t j)
            : tm(templates + j * E.template_stride), ky(keys + j * E.key_stride), mb(E.masks + j * E.mask_stride) {}

    void at(size_t bi, int i, __m256& k, __m256& me, __m256& mk, __m256& mf) const {
        const __m256 m = mask8(mb[bi]);
        k = kShared ? _mm256_set1_ps(load1(ky + i)) : load8(ky + bi * kLanes);
        me = kZeroFill ? load8(tm + bi * kLanes) : _mm256_and_ps(m, load8(tm + bi * kLanes));
        mk = _mm256_and_ps(m, k);
        mf = _mm256_and_ps(m, _mm256_set1_ps(1.0f));
    }
};

// ke and kmk summed coordinate by coordinate, or nothing.
template <bool kSum>
struct ConstantSums {
    __m256 ke = _mm256_setzero_ps(), kmk = _mm256_setzero_ps();
    void add(__m256 me, __m256 mk) {
        if constexpr (kSum) {
            ke = _mm256_fmadd_ps(mk, me, ke);
            kmk = _mm256_fmadd_ps(mk, mk, kmk);
        }
    }
};

// One entry with its mask applied once (M*e, M*k and M as floats), and ke and kmk summed as
// Direct sums them (the same bits), reused by every query; for half storage also the key as
// floats.
struct Expanded {
    std::vector<float> me, mk, mf, k, ke, kmk;
    const float* key = nullptr;  // the key as floats: stored (fp32) or k
    explicit Expanded(const Layout& L)
            : me(L.vec_floats()), mk(L.vec_floats()), mf(L.vec_floats()), k(L.half ? L.key_floats() : 0),
              ke(L.group_floats()), kmk(L.group_floats()) {}
};

template <bool kShared, class T>
void expand(const Entries& E, const T* templates, const T* keys, int64_t j, Expanded& x) {
    constexpr bool kHalf = std::is_same_v<T, uint16_t>;
    const int d = E.layout.group_dim;
    const Direct<kShared, T, false> src(E, templates, keys, j);
    for (int b = 0; b < E.layout.blocks(); ++b) {
        ConstantSums<true> sums;
        for (int i = 0; i < d; ++i) {
            const size_t bi = static_cast<size_t>(b) * d + i, o = bi * kLanes;
            __m256 k, me, mk, mf;
            src.at(bi, i, k, me, mk, mf);
            sums.add(me, mk);
            _mm256_storeu_ps(x.me.data() + o, me);
            _mm256_storeu_ps(x.mk.data() + o, mk);
            _mm256_storeu_ps(x.mf.data() + o, mf);
            if constexpr (kHalf && !kShared) _mm256_storeu_ps(x.k.data() + o, k);
        }
        _mm256_storeu_ps(x.ke.data() + b * kLanes, sums.ke);
        _mm256_storeu_ps(x.kmk.data() + b * kLanes, sums.kmk);
    }
    if constexpr (kHalf) {
        if constexpr (kShared) {
            for (int i = 0; i < d; ++i) x.k[i] = load1(src.ky + i);
        }
        x.key = x.k.data();
    } else {
        x.key = src.ky;
    }
}

// score_entry's reading of an Expanded entry (the same values as Direct gives).
template <bool kShared>
struct FromExpanded {
    static constexpr bool kSumsConstants = false;
    const Expanded& x;
    void at(size_t bi, int i, __m256& k, __m256& me, __m256& mk, __m256& mf) const {
        const size_t o = bi * kLanes;
        k = kShared ? _mm256_set1_ps(x.key[i]) : _mm256_loadu_ps(x.key + o);
        me = _mm256_loadu_ps(x.me.data() + o);
        mk = _mm256_loadu_ps(x.mk.data() + o);
        mf = _mm256_loadu_ps(x.mf.data() + o);
    }
    void constants(int b, __m256& ke, __m256& kmk) const {
        ke = _mm256_loadu_ps(x.ke.data() + b * kLanes);
        kmk = _mm256_loadu_ps(x.kmk.data() + b * kLanes);
    }
};

// The group cosines of a block of eight groups, from the slerp weights t of the query (per lane).
struct PerLaneT {
    __m256 operator()(const float* t, __m256 c, __m256 qe, __m256 qmk, __m256 qqm, __m256 ke, __m256 kmk) const {
        return group_cosine8(c, _mm256_loadu_ps(t), qe, qmk, qqm, ke, kmk);
    }
};

// The same by the ratio form (coeffs.h SlerpRatio), when every group of the query has one t.
template <int kN>
struct ByRatio {
    RatioCosine<Avx2, kN> ratio;
    __m256 operator()(const float*, __m256 c, __m256 qe, __m256 qmk, __m256 qqm, __m256 ke, __m256 kmk) const {
        return ratio(clamp_cos8(c), 0, qe, qmk, qqm, ke, kmk);
    }
};

// Scores NQ queries (1 or 2) against entry j, read through `src` (Direct or FromExpanded); the
// entry's loads serve them all. *outs[n] gets the weighted sum plus the entry's offset, or with
// kPerGroup outs[n][0 .. group_floats) the unweighted cosines (padded lanes 0).
// kD: the group dimension when known at compile time (the innermost loop then unrolls), else 0.
// Cos: PerLaneT, or ByRatio for a single query whose groups share one t.
// Inlined into its loops: as a call per entry it cost a tenth more (8x16, one query, in cache:
// fp32 37.3 against 33.3 ns, fp16 34.5 against 31.0; bench_kernels).
template <int NQ, bool kPerGroup = false, int kD = 0, class Src, class Cos = PerLaneT>
[[gnu::always_inline]] inline int64_t score_entry(const Entries& E, int64_t j, const Src& src, const float* const* qs,
                                                  float* const* outs, const Cos& cosine = Cos()) {
    const Layout& L = E.layout;
    const int d = kD ? kD : L.group_dim;
    const size_t V = L.vec_floats();
    const size_t gj = j * E.group_stride;
    __m256 score[NQ];
    int64_t clamped = 0;
    for (int n = 0; n < NQ; ++n) score[n] = _mm256_setzero_ps();
    for (int b = 0; b < L.blocks(); ++b) {
        __m256 c[NQ], qe[NQ], qmk[NQ], qqm[NQ];
        for (int n = 0; n < NQ; ++n) c[n] = qe[n] = qmk[n] = qqm[n] = _mm256_setzero_ps();
        ConstantSums<Src::kSumsConstants> sums;
#pragma GCC unroll 16
        for (int i = 0; i < d; ++i) {
            const size_t bi = static_cast<size_t>(b) * d + i, o = bi * kLanes;
            __m256 k, me, mk, mf;
            src.at(bi, i, k, me, mk, mf);
            sums.add(me, mk);
            for (int n = 0; n < NQ; ++n) {
                const __m256 q = _mm256_loadu_ps(qs[n] + o);
                c[n] = _mm256_fmadd_ps(q, k, c[n]);
                qe[n] = _mm256_fmadd_ps(q, me, qe[n]);
                qmk[n] = _mm256_fmadd_ps(q, mk, qmk[n]);
                qqm[n] = _mm256_fmadd_ps(_mm256_loadu_ps(qs[n] + V + o), mf, qqm[n]);
            }
        }
        __m256 ke = sums.ke, kmk = sums.kmk;
        if constexpr (!Src::kSumsConstants) src.constants(b, ke, kmk);
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
            const __m256 cs = _mm256_and_ps(used, cosine(qs[n] + 2 * V + b * kLanes, c[n], qe[n], qmk[n], qqm[n], ke, kmk));
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

// Calls f(std::bool_constant<shared key>, templates, keys) with the entries' key mode and
// element type (float or half) as compile-time types.
template <class F>
int64_t by_layout(const Entries& E, const F& f) {
    if (E.layout.half) {
        return E.layout.shared_key ? f(std::true_type(), E.templates_h, E.keys_h)
                                   : f(std::false_type(), E.templates_h, E.keys_h);
    }
    return E.layout.shared_key ? f(std::true_type(), E.templates, E.keys) : f(std::false_type(), E.templates, E.keys);
}

// Calls f(std::integral_constant<int, d>, std::bool_constant<zero fill>) with the group
// dimension d as a compile-time constant where it is the default (16), else with 0 (read at
// run time), and Layout::zero_fill as a compile-time constant.
template <class F>
int64_t by_shape(const Entries& E, const F& f) {
    auto with_fill = [&](auto dim) {
        return E.layout.zero_fill ? f(dim, std::true_type()) : f(dim, std::false_type());
    };
    if (E.layout.group_dim == 16) return with_fill(std::integral_constant<int, 16>());
    return with_fill(std::integral_constant<int, 0>());
}

// Calls f(cosine) with ByRatio<terms> when every group of the nq prepared queries has the same t
// and it has a SlerpRatio, else with PerLaneT: so that one query (verify, score_list) and several
// (search) score an entry alike, bit for bit.
template <class F>
int64_t by_cosine(const Layout& L, const float* queries, int64_t nq, const F& f) {
    const size_t qf = L.query_floats(), V = L.vec_floats();
    const float t0 = queries[2 * V];
    for (int64_t i = 0; i < nq; ++i) {
        const float* t = queries + i * qf + 2 * V;
        for (int g = 0; g < L.groups; ++g) {
            if (t[g] != t0) return f(PerLaneT());
        }
    }
    const SlerpRatio R = cached_slerp_ratio(t0);
    if (!R.ok) return f(PerLaneT());
    if (R.terms == 4) return f(ByRatio<4>{RatioCosine<Avx2, 4>(R)});
    if (R.terms == 8) return f(ByRatio<8>{RatioCosine<Avx2, 8>(R)});
    return f(ByRatio<12>{RatioCosine<Avx2, 12>(R)});
}

template <class P>
using Element = std::remove_const_t<std::remove_pointer_t<P>>;

int64_t score_range(const Entries& E, const float* queries, int64_t nq, int64_t j0, int64_t j1, float* out,
                    int64_t ld) {
    return by_layout(E, [&](auto shared, auto templates, auto keys) {
        constexpr bool kShared = decltype(shared)::value;
        using T = Element<decltype(templates)>;
        if (nq == 1) {  // nothing to reuse: each entry straight from storage
            return by_shape(E, [&](auto dim, auto zero_fill) {
                using Src = Direct<kShared, T, decltype(zero_fill)::value>;
                return by_cosine(E.layout, queries, 1, [&](const auto& cosine) {
                    int64_t n_clamped = 0;
                    for (int64_t j = j0; j < j1; ++j) {
                        float* outs[1] = {out + (j - j0)};
                        n_clamped += score_entry<1, false, dim.value>(E, j, Src(E, templates, keys, j), &queries, outs,
                                                                      cosine);
                    }
                    return n_clamped;
                });
            });
        }
        const size_t qsz = E.layout.query_floats();
        Expanded x(E.layout);
        return by_cosine(E.layout, queries, nq, [&](const auto& cosine) {
            int64_t clamped = 0;
            for (int64_t j = j0; j < j1; ++j) {
                expand<kShared>(E, templates, keys, j, x);
                clamped += by_query_pairs(nq, [&](int64_t qi, auto pair) {
                    constexpr int NQ = decltype(pair)::value;
                    const float* qs[NQ];
                    float* outs[NQ];
                    for (int n = 0; n < NQ; ++n) qs[n] = queries + (qi + n) * qsz, outs[n] = out + (qi + n) * ld + (j - j0);
                    return score_entry<NQ, false, 0>(E, j, FromExpanded<kShared>{x}, qs, outs, cosine);
                });
            }
            return clamped;
        });
    });
}

int64_t score_list(const Entries& E, const float* query, const int64_t* pos, int64_t n, float* out) {
    return by_layout(E, [&](auto shared, auto templates, auto keys) {
        constexpr bool kShared = decltype(shared)::value;
        using T = Element<decltype(templates)>;
        return by_shape(E, [&](auto dim, auto zero_fill) {
            using Src = Direct<kShared, T, decltype(zero_fill)::value>;
            return by_cosine(E.layout, query, 1, [&](const auto& cosine) {
                int64_t clamped = 0;
                for (int64_t i = 0; i < n; ++i) {
                    float* outs[1] = {out + i};
                    clamped += score_entry<1, false, dim.value>(E, pos[i], Src(E, templates, keys, pos[i]), &query,
                                                                outs, cosine);
                }
                return clamped;
            });
        });
    });
}

int64_t group_cosines(const Entries& E, const float* queries, int64_t nq, int64_t j, float* out) {
    return by_layout(E, [&](auto shared, auto templates, auto keys) {
        constexpr bool kShared = decltype(shared)::value;
        const size_t qsz = E.layout.query_floats(), gs = E.layout.group_floats();
        Expanded x(E.layout);
        expand<kShared>(E, templates, keys, j, x);
        return by_query_pairs(nq, [&](int64_t qi, auto pair) {
            constexpr int NQ = decltype(pair)::value;
            const float* qs[NQ];
            float* outs[NQ];
            for (int n = 0; n < NQ; ++n) qs[n] = queries + (qi + n) * qsz, outs[n] = out + (qi + n) * gs;
            return score_entry<NQ, true>(E, j, FromExpanded<kShared>{x}, qs, outs);
        });
    });
}

// F16C from CPUID leaf 1 (ECX bit 29): clang 14's __builtin_cpu_supports does not know "f16c".
bool cpu_has_f16c() {
    unsigned a = 0, b = 0, c = 0, d = 0;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C) != 0;
}

}  // namespace

const KernelTable* avx2_kernels() {
    static const KernelTable table{"avx2", &score_range, &score_list, &group_cosines};
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma") || !cpu_has_f16c()) return nullptr;
    return &table;
}

}  // namespace pslerp::kernels
