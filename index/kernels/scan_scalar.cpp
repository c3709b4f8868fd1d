// Scalar reference kernel: the same layout and arithmetic as the SIMD kernels, lane by lane.
#include <type_traits>
#include <vector>

#include "index/kernels/coeffs.h"
#include "index/kernels/half.h"
#include "index/kernels/scan.h"

namespace pslerp::kernels {

namespace {

inline float load(const float* p, size_t i) { return p[i]; }
inline float load(const uint16_t* p, size_t i) { return half_to_float(p[i]); }

// Scores one query against entry j, whose template and key are tm and ky (floats, or halves
// whose ke and kmk are recomputed here): the weighted sum plus the offset into *out, or with
// kPerGroup the unweighted cosines into out[0 .. group_floats).
template <bool kPerGroup, class T>
int64_t score_entry(const Entries& E, const T* tm, const T* ky, int64_t j, const float* query, float* out) {
    constexpr bool kHalf = std::is_same_v<T, uint16_t>;
    const Layout& L = E.layout;
    const int d = L.group_dim;
    const uint8_t* mk = E.masks + j * E.mask_stride;
    const size_t gj = j * E.group_stride;
    const float* q = query;
    const float* q2 = query + L.vec_floats();
    const float* t = query + 2 * L.vec_floats();
    int64_t clamped = 0;
    float score = 0.0f;
    for (int b = 0; b < L.blocks(); ++b) {
        float c[kLanes] = {}, qe[kLanes] = {}, qmk[kLanes] = {}, qqm[kLanes] = {}, ke[kLanes] = {}, kmk[kLanes] = {};
        for (int i = 0; i < d; ++i) {
            const size_t o = (static_cast<size_t>(b) * d + i) * kLanes;
            const uint8_t bits = mk[b * d + i];
            for (int l = 0; l < kLanes; ++l) {
                const float k = L.shared_key ? load(ky, i) : load(ky, o + l);
                const float m = (bits >> l) & 1 ? 1.0f : 0.0f;
                const float e = load(tm, o + l);
                c[l] += q[o + l] * k;
                qe[l] += q[o + l] * e * m;
                qmk[l] += q[o + l] * k * m;
                qqm[l] += q2[o + l] * m;
                if constexpr (kHalf) {
                    ke[l] += k * e * m;
                    kmk[l] += k * k * m;
                }
            }
        }
        for (int l = 0; l < kLanes; ++l) {
            const size_t g = gj + b * kLanes + l;
            if constexpr (!kHalf) ke[l] = E.ke[g], kmk[l] = E.kmk[g];
            if constexpr (kPerGroup) {
                const bool real = b * kLanes + l < L.groups;
                clamped += real && c[l] < kAntipodalCosF;
                out[b * kLanes + l] =
                        real ? group_cosine(c[l], t[b * kLanes + l], qe[l], qmk[l], qqm[l], ke[l], kmk[l]) : 0.0f;
                continue;
            }
            if (E.weights[g] == 0.0f) continue;  // padded lane or weightless group
            clamped += c[l] < kAntipodalCosF;
            score += E.weights[g] * group_cosine(c[l], t[b * kLanes + l], qe[l], qmk[l], qqm[l], ke[l], kmk[l]);
        }
    }
    if constexpr (!kPerGroup) *out = score + E.offsets[j * E.offset_stride];
    return clamped;
}

template <bool kPerGroup>
int64_t score_entry(const Entries& E, int64_t j, const float* query, float* out) {
    if (E.layout.half) {
        return score_entry<kPerGroup>(E, E.templates_h + j * E.template_stride, E.keys_h + j * E.key_stride, j, query,
                                      out);
    }
    return score_entry<kPerGroup>(E, E.templates + j * E.template_stride, E.keys + j * E.key_stride, j, query, out);
}

int64_t score_range(const Entries& E, const float* queries, int64_t nq, int64_t j0, int64_t j1, float* out,
                    int64_t ld) {
    int64_t clamped = 0;
    const size_t qs = E.layout.query_floats();
    for (int64_t j = j0; j < j1; ++j) {
        for (int64_t qi = 0; qi < nq; ++qi) {
            clamped += score_entry<false>(E, j, queries + qi * qs, out + qi * ld + (j - j0));
        }
    }
    return clamped;
}

int64_t score_list(const Entries& E, const float* query, const int64_t* pos, int64_t n, float* out) {
    int64_t clamped = 0;
    for (int64_t i = 0; i < n; ++i) clamped += score_entry<false>(E, pos[i], query, out + i);
    return clamped;
}

int64_t group_cosines(const Entries& E, const float* queries, int64_t nq, int64_t j, float* out) {
    int64_t clamped = 0;
    const size_t qs = E.layout.query_floats(), gs = E.layout.group_floats();
    for (int64_t qi = 0; qi < nq; ++qi) clamped += score_entry<true>(E, j, queries + qi * qs, out + qi * gs);
    return clamped;
}

}  // namespace

const KernelTable& scalar_kernels() {
    static const KernelTable table{"scalar", &score_range, &score_list, &group_cosines};
    return table;
}

}  // namespace pslerp::kernels
