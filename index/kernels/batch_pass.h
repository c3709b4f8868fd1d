// The closed form of the batched kernel (batch_avx2.cpp) over one group of a block of entries,
// written once for any vector width: batch_avx2.cpp instantiates it for AVX2 (8 lanes),
// batch_avx512.cpp for AVX-512 (16 lanes). Everything here is a template on the vector traits S
// (simd_avx2.h Avx2, simd_avx512.h Avx512), so that each instantiation lives only in the file
// compiled for its instruction set.
//
// When every query of a pass has the same t_g, the slerp coefficients enter only through their
// ratio r = b'/a' = sin(t theta) / sin((1-t) theta) (the group cosine does not change when a'
// and b' are scaled together), a polynomial in s = sqrt(1 + c) (SlerpRatio). Then
//   cos_g = (<q,M T> + r <k,M T>) / sqrt(<q^2,M> + 2 r <q,M k> + r^2 <k,M k>).
#pragma once

#include <cstdint>
#include <type_traits>

#include "index/kernels/coeffs.h"

namespace pslerp::kernels {

/// Queries per pass are padded to a multiple of this (the widest vector).
inline constexpr int64_t kBatchQueryAlign = 16;

/// One group's data for entries [lo, hi) of a loaded block of `sub` entries, `nqp` queries
/// (a multiple of kBatchQueryAlign). Per (group, entry) slot gj = g * sub + jj: weight, ke, kmk, the number of
/// dropped coordinates and up to d of them (row of qt, key and template value there), and whether
/// a dropped template value is non-zero (random fill).
struct GroupBlock {
    int g, d, lo, hi, sub;
    int64_t nqp;
    float* c;            ///< sgemm output: rows jj (<q,k>) and sub + jj (<q,T>), nqp each; zeroed as read
    const float* qt;     ///< queries transposed: D x nqp
    const float* qsq;    ///< |q_g|^2 of this group, nqp
    const float* weight; ///< per slot
    const float* ke;
    const float* kmk;
    const int32_t* drop_count;
    const int32_t* drop_row;  ///< slot * d + r
    const float* drop_k;
    const float* drop_t;
    const uint8_t* filled;
    float* s;  ///< scores: sub x nqp (written by the first group, added to by later ones)
};

/// The group cosine by the ratio form, kN coefficients of a SlerpRatio (every query of the
/// pass has the same t_g).
template <class S, int kN>
struct RatioCosine {
    using V = typename S::V;
    V coef[kN];
    explicit RatioCosine(const SlerpRatio& ratio) {
        for (int k = 0; k < kN; ++k) coef[k] = S::set1(ratio.r[k]);
    }
    /// c clamped to [kAntipodalCosF, 1]; q: the first query of the vector (unused here).
    V operator()(V c, int64_t /*q*/, V qe, V qmk, V qqm, V ke, V kmk) const {
        const V s = S::sqrt(S::add(c, S::set1(1.0f)));
        V r = coef[kN - 1];
        for (int k = kN - 2; k >= 0; --k) r = S::fmadd(r, s, coef[k]);
        const V num = S::fmadd(r, ke, qe);
        V den = S::fmadd(r, kmk, S::add(qmk, qmk));
        den = S::max(S::fmadd(r, den, qqm), S::set1(1e-30f));
        return S::mul(num, rsqrt_refined<S>(den));
    }
};

/// Adds the weighted group cosines of group b.g to b.s (kFirst: writes them), each from
/// `cosine` (RatioCosine, or batch_avx2.cpp's per-lane closed form). Returns the clamped
/// (query, group) pairs of real queries.
template <class S, bool kFirst, class Cosine>
int64_t group_pass(const GroupBlock& b, const Cosine& cosine) {
    using V = typename S::V;
    // Vectors in flight per step: four with AVX-512's 32 registers (two: 1.5% slower at 32x16);
    // one with AVX2's 16 (two spill: 19.5 against 15.9 ns per pair at 8x16, bench_kernels).
    constexpr int W = S::kW, kUnroll = S::kW == 8 ? 1 : 4;
    const V antipodal = S::set1(kAntipodalCosF), one = S::set1(1.0f);
    int64_t clamped = 0;
    for (int jj = b.lo; jj < b.hi; ++jj) {
        const int64_t gj = int64_t(b.g) * b.sub + jj;
        float* s = b.s + int64_t(jj) * b.nqp;
        const float weight = b.weight[gj];
        float* ck = b.c + int64_t(jj) * b.nqp;
        float* ct = b.c + int64_t(b.sub + jj) * b.nqp;
        const V zero = S::set1(0.0f);
        if (weight == 0.0f) {  // padded or weightless group: neither scored nor counted
            for (int64_t q = 0; q < b.nqp; q += W) {
                if (kFirst) S::store(s + q, zero);
                S::store(ck + q, zero), S::store(ct + q, zero);
            }
            continue;
        }
        const V wv = S::set1(weight), ke = S::set1(b.ke[gj]), kmk = S::set1(b.kmk[gj]);
        const int32_t r0 = int32_t(gj) * b.d, r1 = r0 + b.drop_count[gj];
        const bool filled = b.filled[gj];
        // kU vectors of W queries from q on.
        auto step = [&](int64_t q, auto unroll) {
            constexpr int kU = decltype(unroll)::value;
            V c[kU], qe[kU], qmk[kU], qqm[kU];
            for (int u = 0; u < kU; ++u) {
                c[u] = S::load(ck + q + u * W);
                qe[u] = S::load(ct + q + u * W);
                S::store(ck + q + u * W, zero), S::store(ct + q + u * W, zero);
                qmk[u] = c[u];
                qqm[u] = S::load(b.qsq + q + u * W);
            }
            for (int32_t r = r0; r < r1; ++r) {
                const float* row = b.qt + int64_t(b.drop_row[r]) * b.nqp + q;
                const V kv = S::set1(b.drop_k[r]), tv = S::set1(b.drop_t[r]);
                for (int u = 0; u < kU; ++u) {
                    const V qv = S::load(row + u * W);
                    qmk[u] = S::fnmadd(qv, kv, qmk[u]);
                    qqm[u] = S::fnmadd(qv, qv, qqm[u]);
                    if (filled) qe[u] = S::fnmadd(qv, tv, qe[u]);
                }
            }
            for (int u = 0; u < kU; ++u) {
                const V clamped_c = S::min(S::max(c[u], antipodal), one);
                const V cs = cosine(clamped_c, q + u * W, qe[u], qmk[u], qqm[u], ke, kmk);
                float* out = s + q + u * W;
                S::store(out, kFirst ? S::mul(wv, cs) : S::fmadd(wv, cs, S::load(out)));
                clamped += S::count_less(c[u], antipodal);
            }
        };
        int64_t q = 0;
        for (; q + kUnroll * W <= b.nqp; q += kUnroll * W) step(q, std::integral_constant<int, kUnroll>());
        for (; q < b.nqp; q += W) step(q, std::integral_constant<int, 1>());
    }
    return clamped;
}

template <class S, int kN, bool kFirst>
int64_t ratio_pass(const GroupBlock& b, const SlerpRatio& ratio) {
    return group_pass<S, kFirst>(b, RatioCosine<S, kN>(ratio));
}

/// The ratio passes of one instruction set: [4, 8 or 12 terms][first group or not].
using RatioPassFn = int64_t (*)(const GroupBlock&, const SlerpRatio&);
struct RatioPasses {
    RatioPassFn fn[3][2];
};

template <class S>
inline constexpr RatioPasses ratio_passes_for() {
    return {{{&ratio_pass<S, 4, true>, &ratio_pass<S, 4, false>},
             {&ratio_pass<S, 8, true>, &ratio_pass<S, 8, false>},
             {&ratio_pass<S, 12, true>, &ratio_pass<S, 12, false>}}};
}

/// The AVX-512 passes (batch_avx512.cpp), nullptr when the CPU lacks AVX-512F (scan.cpp).
const RatioPasses* avx512_ratio_passes();
/// The same without the check (batch_avx512.cpp): call only where the CPU has AVX-512F.
const RatioPasses* avx512_ratio_passes_unchecked();

}  // namespace pslerp::kernels
