#include "index/storage.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <type_traits>

#include "absl/strings/str_format.h"
#include "index/kernels/half.h"

namespace pslerp {

namespace {

size_t interleaved(const kernels::Layout& L, int g, int i) {
    return (static_cast<size_t>(g / kernels::kLanes) * L.group_dim + i) * kernels::kLanes + g % kernels::kLanes;
}

}  // namespace

kernels::Layout layout_of(const Params& p) {
    kernels::Layout L;
    L.groups = p.groups;
    L.group_dim = p.group_dim;
    L.shared_key = p.key_mode == KeyMode::kShared;
    L.half = p.storage == Storage::kFp16;
    L.zero_fill = p.fill == Fill::kZero;
    return L;
}

void encode_entry(const Params& p, const kernels::Layout& L, const Protected& pr, int64_t i, float* te, float* tk,
                  uint8_t* tm, float* ke, float* kmk, float* w, float* offset) {
    const int G = p.groups, d = p.group_dim, D = p.dim(), KD = p.key_dim();
    const float* e = pr.templates.data() + i * D;
    const float* k = pr.keys.data() + i * KD;
    const uint8_t* m = pr.masks.data() + i * D;
    std::fill(te, te + L.vec_floats(), 0.0f);
    std::fill(tk, tk + L.key_floats(), 0.0f);
    std::fill(tm, tm + L.mask_bytes(), uint8_t{0});
    std::fill(ke, ke + L.group_floats(), 0.0f);
    std::fill(kmk, kmk + L.group_floats(), 1.0f);
    std::fill(w, w + L.group_floats(), 0.0f);
    *offset = 0.0f;
    if (L.shared_key) std::copy(k, k + d, tk);
    for (int g = 0; g < G; ++g) {
        const float* kg = L.shared_key ? k : k + g * d;
        double sum_ke = 0, sum_kmk = 0;
        for (int j = 0; j < d; ++j) {
            const size_t o = interleaved(L, g, j);
            te[o] = e[g * d + j];
            if (!L.shared_key) tk[o] = kg[j];
            if (m[g * d + j]) {
                tm[(g / kernels::kLanes) * d + j] |= static_cast<uint8_t>(1u << (g % kernels::kLanes));
                sum_ke += static_cast<double>(kg[j]) * e[g * d + j];
                sum_kmk += static_cast<double>(kg[j]) * kg[j];
            }
        }
        ke[g] = static_cast<float>(sum_ke);
        kmk[g] = static_cast<float>(sum_kmk);
        w[g] = pr.weights[i * G + g];
    }
}

void encode_entry_half(const Params& p, const kernels::Layout& L, const Protected& pr, int64_t i, uint16_t* te,
                       uint16_t* tk, uint8_t* tm, float* w, float* offset) {
    std::vector<float> te32(L.vec_floats()), tk32(L.key_floats()), ke(L.group_floats()), kmk(L.group_floats());
    encode_entry(p, L, pr, i, te32.data(), tk32.data(), tm, ke.data(), kmk.data(), w, offset);
    std::transform(te32.begin(), te32.end(), te, kernels::float_to_half);
    std::transform(tk32.begin(), tk32.end(), tk, kernels::float_to_half);
}

void encode_code(const Params& p, const kernels::Layout& L, const Protected& pr, int64_t i, uint8_t* code) {
    const kernels::CodeLayout c = kernels::code_layout(L);
    std::fill(code, code + c.code_size, uint8_t{0});
    float* f = reinterpret_cast<float*>(code);
    if (L.half) {
        encode_entry_half(p, L, pr, i, reinterpret_cast<uint16_t*>(f + c.template_offset),
                          reinterpret_cast<uint16_t*>(f + c.key_offset), code + c.mask_offset, f + c.weights_offset,
                          f + c.score_offset);
        return;
    }
    encode_entry(p, L, pr, i, f + c.template_offset, f + c.key_offset, code + c.mask_offset, f + c.ke_offset,
                 f + c.kmk_offset, f + c.weights_offset, f + c.score_offset);
}

namespace {

inline double value(const float* p, size_t i) { return p[i]; }
inline double value(const uint16_t* p, size_t i) { return kernels::half_to_float(p[i]); }

// check_entry() for templates and keys of element type T (float, or half with no ke and kmk).
template <class T>
absl::Status check_entry(const Params& p, const kernels::Entries& e, int64_t j, const T* te, const T* tk) {
    // Tolerances: values are float, their sums double; a stored entry matches exactly, these
    // leave room for another summation order. Halves are within 2^-11 relative of the unit-norm
    // floats, so norms stay within 5e-4 of 1.
    constexpr double kNormTol = 1e-3, kDotTol = 1e-4, kWeightTol = 1e-3;
    constexpr bool kHalf = std::is_same_v<T, uint16_t>;
    const kernels::Layout& L = e.layout;
    const int G = L.groups, d = L.group_dim, lanes = kernels::kLanes;
    const uint8_t* tm = e.masks + j * e.mask_stride;
    const float* ke = kHalf ? nullptr : e.ke + j * e.group_stride;
    const float* kmk = kHalf ? nullptr : e.kmk + j * e.group_stride;
    const float* w = e.weights + j * e.group_stride;
    const float offset = e.offsets[j * e.offset_stride];
    const bool cohort = p.norm == Norm::kCohort;
    auto invalid = [](const std::string& why) { return absl::InvalidArgumentError(why); };
    double weight_sum = 0;
    for (int g = 0; g < L.blocks() * lanes; ++g) {
        const int b = g / lanes, l = g % lanes;
        const bool padded = g >= G;
        double kept_tt = 0, kk = 0, sum_ke = 0, sum_kmk = 0;
        int kept = 0, dropped_nonzero = -1;
        for (int i = 0; i < d; ++i) {
            const size_t o = (static_cast<size_t>(b) * d + i) * lanes + l;
            const double t = value(te, o);
            const double k = value(tk, L.shared_key ? size_t(i) : o);
            const bool m = (tm[b * d + i] >> l) & 1;
            if (!std::isfinite(t)) return invalid(absl::StrFormat("template: group %d coordinate %d is %g", g, i, t));
            if (!std::isfinite(k)) return invalid(absl::StrFormat("key: group %d coordinate %d is %g", g, i, k));
            if (padded) {
                if (t != 0) return invalid(absl::StrFormat("template: padded lane %d holds %g, expected 0", g, t));
                if (!L.shared_key && k != 0) {
                    return invalid(absl::StrFormat("key: padded lane %d holds %g, expected 0", g, k));
                }
                if (m) return invalid(absl::StrFormat("mask: bit for group %d, beyond the %d groups", g, G));
                continue;
            }
            kk += k * k;
            if (m) {
                ++kept;
                kept_tt += t * t;
                sum_ke += k * t;
                sum_kmk += k * k;
            } else if (t != 0 && dropped_nonzero < 0) {
                dropped_nonzero = i;
            }
        }
        if (padded && kHalf) {
            if (w[g] != 0) return invalid(absl::StrFormat("weights: padded lane %d holds %g, expected 0", g, w[g]));
            continue;
        }
        if (padded) {
            if (ke[g] != 0 || kmk[g] != 1 || w[g] != 0) {
                return invalid(absl::StrFormat("ke, kmk or weights: padded lane %d holds %g, %g, %g, expected 0, 1, 0",
                                               g, ke[g], kmk[g], w[g]));
            }
            continue;
        }
        if (kept == 0) return invalid(absl::StrFormat("mask: group %d keeps no coordinate", g));
        if (p.fill == Fill::kZero && dropped_nonzero >= 0) {
            return invalid(absl::StrFormat("template: group %d coordinate %d is dropped but not zero (fill is zero)", g,
                                           dropped_nonzero));
        }
        if ((!L.shared_key || g == 0) && !(std::abs(std::sqrt(kk) - 1.0) <= kNormTol)) {
            return invalid(absl::StrFormat("key: group %d has norm %g, expected 1", g, std::sqrt(kk)));
        }
        const double norm = std::sqrt(kept_tt);
        if (norm != 0 && !(std::abs(norm - 1.0) <= kNormTol)) {
            return invalid(
                    absl::StrFormat("template: group %d has norm %g over its kept coordinates, expected 1", g, norm));
        }
        if constexpr (!kHalf) {
            if (!(std::abs(ke[g] - sum_ke) <= kDotTol)) {
                return invalid(
                        absl::StrFormat("ke (<k, M e>) of group %d is %g, the entry gives %g", g, ke[g], sum_ke));
            }
            if (!(std::abs(kmk[g] - sum_kmk) <= kDotTol)) {
                return invalid(
                        absl::StrFormat("kmk (<k, M k>) of group %d is %g, the entry gives %g", g, kmk[g], sum_kmk));
            }
        }
        const double max_weight = cohort ? kMaxCohortGain : 1.0 + kWeightTol;
        if (!(w[g] >= 0.0f && w[g] <= max_weight)) {
            return invalid(absl::StrFormat("weights: group %d has %g, outside [0, %g]", g, w[g], max_weight));
        }
        weight_sum += w[g];
    }
    if (cohort) {
        if (!(weight_sum > 0 && weight_sum <= kMaxCohortGain)) {
            return invalid(absl::StrFormat("cohort-normalised weights sum to %g, outside (0, %g]", weight_sum,
                                           kMaxCohortGain));
        }
        if (!(std::abs(double(offset)) <= weight_sum * (1.0 + kWeightTol))) {
            return invalid(absl::StrFormat("offset %g exceeds the weights' sum %g", offset, weight_sum));
        }
        return absl::OkStatus();
    }
    if (!(std::abs(weight_sum - 1.0) <= kWeightTol)) {
        return invalid(absl::StrFormat("weights sum to %g, expected 1", weight_sum));
    }
    if (offset != 0.0f) return invalid(absl::StrFormat("offset is %g, expected 0 (norm is none)", offset));
    return absl::OkStatus();
}

}  // namespace

absl::Status check_entry(const Params& p, const kernels::Entries& e, int64_t j) {
    if (e.layout.half) {
        return check_entry(p, e, j, e.templates_h + j * e.template_stride, e.keys_h + j * e.key_stride);
    }
    return check_entry(p, e, j, e.templates + j * e.template_stride, e.keys + j * e.key_stride);
}

std::pair<int64_t, absl::Status> first_bad_entry(const Params& p, const kernels::Entries& e, int64_t n) {
    std::atomic<int64_t> first{n};
#pragma omp parallel for schedule(static) if (n > 1024)
    for (int64_t j = 0; j < n; ++j) {
        if (j >= first.load(std::memory_order_relaxed) || check_entry(p, e, j).ok()) continue;
        for (int64_t seen = first.load(); j < seen && !first.compare_exchange_weak(seen, j);) {
        }
    }
    const int64_t j = first.load();
    return {j, j < n ? check_entry(p, e, j) : absl::OkStatus()};
}

EntryStorage::EntryStorage(const Params& p) : layout(layout_of(p)) {}

template <class Self, class F>
void EntryStorage::each_array(Self& s, F&& f) {
    const kernels::Layout& L = s.layout;
    const size_t h = L.half ? 1 : 0, full = 1 - h;
    f(s.templates, full * L.vec_floats());
    f(s.keys, full * L.key_floats());
    f(s.templates_h, h * L.vec_floats());
    f(s.keys_h, h * L.key_floats());
    f(s.masks, L.mask_bytes());
    f(s.ke, full * L.group_floats());
    f(s.kmk, full * L.group_floats());
    f(s.weights, L.group_floats());
    f(s.offsets, 1);
    f(s.ids, 1);
    f(s.removed, 1);
}

void EntryStorage::append(const Params& p, const Protected& pr, const int64_t* new_ids) {
    const kernels::Layout& L = layout;
    const int64_t r0 = rows(), n = pr.n;
    each_array(*this, [&](auto& v, size_t width) { v.resize((r0 + n) * width); });
    std::copy_n(new_ids, n, ids.begin() + r0);
    const size_t vf = L.vec_floats(), kf = L.key_floats(), mb = L.mask_bytes(), gf = L.group_floats();
#pragma omp parallel for if (n > 1024)
    for (int64_t i = 0; i < n; ++i) {
        const int64_t r = r0 + i;
        if (L.half) {
            encode_entry_half(p, L, pr, i, templates_h.data() + r * vf, keys_h.data() + r * kf, masks.data() + r * mb,
                              weights.data() + r * gf, offsets.data() + r);
        } else {
            encode_entry(p, L, pr, i, templates.data() + r * vf, keys.data() + r * kf, masks.data() + r * mb,
                         ke.data() + r * gf, kmk.data() + r * gf, weights.data() + r * gf, offsets.data() + r);
        }
    }
}

void EntryStorage::template_row(const Params& p, int64_t r, float* out) const {
    const size_t base = r * layout.vec_floats();
    for (int g = 0; g < p.groups; ++g) {
        for (int j = 0; j < p.group_dim; ++j) {
            const size_t o = base + interleaved(layout, g, j);
            out[g * p.group_dim + j] = layout.half ? kernels::half_to_float(templates_h[o]) : templates[o];
        }
    }
}

void EntryStorage::key_row(const Params& p, int64_t r, float* out) const {
    const size_t base = r * layout.key_floats();
    auto at = [&](size_t o) { return layout.half ? kernels::half_to_float(keys_h[base + o]) : keys[base + o]; };
    if (layout.shared_key) {
        for (int j = 0; j < p.group_dim; ++j) out[j] = at(j);
        return;
    }
    for (int g = 0; g < p.groups; ++g) {
        for (int j = 0; j < p.group_dim; ++j) out[g * p.group_dim + j] = at(interleaved(layout, g, j));
    }
}

void EntryStorage::mask_row(const Params& p, int64_t r, uint8_t* out) const {
    const uint8_t* tm = masks.data() + r * layout.mask_bytes();
    for (int g = 0; g < p.groups; ++g) {
        for (int j = 0; j < p.group_dim; ++j) {
            out[g * p.group_dim + j] = (tm[(g / kernels::kLanes) * p.group_dim + j] >> (g % kernels::kLanes)) & 1;
        }
    }
}

void EntryStorage::weight_row(const Params& p, int64_t r, float* out) const {
    std::copy_n(weights.data() + r * layout.group_floats(), p.groups, out);
}

std::vector<int64_t> EntryStorage::compact() {
    std::vector<int64_t> kept;
    for (int64_t r = 0; r < rows(); ++r) {
        if (removed[r]) continue;
        const int64_t to = static_cast<int64_t>(kept.size());
        if (to != r) {
            each_array(*this, [&](auto& v, size_t width) {
                std::copy_n(v.begin() + r * width, width, v.begin() + to * width);
            });
        }
        kept.push_back(r);
    }
    truncate(static_cast<int64_t>(kept.size()));
    removed.assign(kept.size(), 0);
    return kept;
}

void EntryStorage::truncate(int64_t r) {
    each_array(*this, [&](auto& v, size_t width) { v.resize(r * width); });
}

void EntryStorage::clear() {
    each_array(*this, [](auto& v, size_t) { v.clear(); });
}

size_t EntryStorage::bytes_per_row() const {
    size_t bytes = 0;
    each_array(*this, [&](const auto& v, size_t width) { bytes += width * sizeof(v[0]); });
    return bytes;
}

bool EntryStorage::consistent() const {
    const size_t n = ids.size();
    bool ok = true;
    each_array(*this, [&](const auto& v, size_t width) { ok = ok && v.size() == n * width; });
    return ok;
}

kernels::Entries EntryStorage::view_from(int64_t r0) const {
    const kernels::Layout& L = layout;
    kernels::Entries e;
    e.layout = L;
    e.template_stride = L.vec_floats();
    e.key_stride = L.key_floats();
    e.mask_stride = L.mask_bytes();
    e.group_stride = L.group_floats();
    e.offset_stride = 1;
    if (L.half) {
        e.templates_h = templates_h.data() + r0 * e.template_stride;
        e.keys_h = keys_h.data() + r0 * e.key_stride;
    } else {
        e.templates = templates.data() + r0 * e.template_stride;
        e.keys = keys.data() + r0 * e.key_stride;
        e.ke = ke.data() + r0 * e.group_stride;
        e.kmk = kmk.data() + r0 * e.group_stride;
    }
    e.masks = masks.data() + r0 * e.mask_stride;
    e.weights = weights.data() + r0 * e.group_stride;
    e.offsets = offsets.data() + r0;
    return e;
}

}  // namespace pslerp
